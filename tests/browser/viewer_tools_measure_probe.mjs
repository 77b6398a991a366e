// viewer_tools_measure_probe — the viewer's tools on the 12-slice CT,
// every number checked against the DICOM files themselves (pydicom):
//  - the series button shows the series' thumbnail;
//  - orientation letters of an axial study (A top, P bottom, R left, L
//    right) and the slice position = the shown file's SliceLocation;
//  - a W/L drag by mouse, then by one finger, changes the rendered
//    window: the overlay's W and L are the request's window=L,W and move
//    by the drag's pixels x the documented sensitivity;
//  - Ctrl+wheel and a two-finger pinch zoom (a zoomed image is rendered
//    larger), a pan-mode drag moves the image, Reset brings zoom, pan and
//    window back;
//  - a length across 300 pixels of a row reads 300 x PixelSpacing mm;
//  - the HU probe on a bone pixel and on air reads stored x slope +
//    intercept of that pixel of that file;
//  - cine advances the slices by itself, and pauses.

import { execFileSync } from 'node:child_process';
import { test, check, eq, until, ct12Case, log } from './lib.mjs';

// What pydicom reads in the file with this SOP Instance UID: spacing,
// slice location, and the stored value and HU at each [x, y].
function fromFile(files, sop, points) {
    const code = [
        'import json, sys, pydicom',
        'sop, pts = sys.argv[1], json.loads(sys.argv[2])',
        'for f in sys.argv[3:]:',
        '    d = pydicom.dcmread(f)',
        '    if d.SOPInstanceUID != sop: continue',
        '    a = d.pixel_array',
        '    s, i = float(d.RescaleSlope), float(d.RescaleIntercept)',
        '    print(json.dumps({"spacing": [float(x) for x in d.PixelSpacing],',
        '        "loc": float(d.SliceLocation),',
        '        "hu": [int(a[y, x]) * s + i for x, y in pts]}))',
    ].join('\n');
    return JSON.parse(execFileSync('/usr/bin/python3',
        ['-c', code, sop, JSON.stringify(points), ...files],
        { encoding: 'utf8', env: { ...process.env,
                                   PYTHONWARNINGS: 'ignore' } }));
}

function state(page) {
    return page.evaluate(() => {
        const q = (s) => document.querySelector(s);
        const img = q('.viewer img.slice');
        return {
            overlay: q('.viewer .overlay').textContent,
            pos: q('.viewer .overlay-pos').textContent,
            ori: ['top', 'bottom', 'left', 'right'].map((e) =>
                q(`.viewer .ori-${e}`).textContent),
            index: img.dataset.index, sop: img.dataset.sop,
            url: img.dataset.url, window: img.dataset.window,
            zoom: Number(q('.viewer .stage').dataset.zoom || 1),
            transform: q('.viewer .pane').style.transform,
            readout: q('.viewer .readout').textContent,
            data: { ...q('.viewer .readout').dataset },
        };
    });
}

// Client coordinates of image pixel (x, y) (continuous: pixel i spans
// [i, i+1)) at zoom 1: the 512x512 image fills the stage's shorter side.
async function screenOf(page, x, y) {
    const b = await page.evaluate(() => {
        const s = document.querySelector('.viewer .stage');
        const r = s.getBoundingClientRect();
        return { l: r.left, t: r.top, w: s.clientWidth, h: s.clientHeight };
    });
    const k = Math.min(b.w, b.h) / 512;
    return { x: b.l + b.w / 2 + (x - 256) * k,
             y: b.t + b.h / 2 + (y - 256) * k, k };
}

async function drag(page, a, b) {
    await page.mouse.move(a.x, a.y);
    await page.mouse.down();
    await page.mouse.move(b.x, b.y, { steps: 6 });
    await page.mouse.up();
}

// One or two fingers (CDP touch events: Chromium makes pointer events).
async function touch(cdp, from, to, steps = 6) {
    const at = (f) => from.map((p, i) => ({
        x: p.x + (to[i].x - p.x) * f, y: p.y + (to[i].y - p.y) * f,
        id: i + 1 }));
    await cdp.send('Input.dispatchTouchEvent',
                   { type: 'touchStart', touchPoints: at(0) });
    for (let s = 1; s <= steps; s++)
        await cdp.send('Input.dispatchTouchEvent',
                       { type: 'touchMove', touchPoints: at(s / steps) });
    await cdp.send('Input.dispatchTouchEvent',
                   { type: 'touchEnd', touchPoints: [] });
}

test(async (t) => {
    const { srv, st } = await ct12Case(t, {
        case_id: 'tools-case', question: 'Bleed?', priority: 'stat',
        specialty: 'neurology',
    });
    const ctx = await t.context({ viewport: { width: 1280, height: 800 },
                                  hasTouch: true });
    const page = await t.page(ctx, srv, 'demo-neuro');
    const cdp = await ctx.newCDPSession(page);
    await page.click('li[data-case-id="tools-case"] a');
    // (not the draft's "Low quality, loading full…": a loaded machine
    // shows it long enough to be read before the geometry is in)
    await until(async () => (await state(page)).pos.startsWith('Pos '),
                'the middle slice shows with its position');

    // ---- orientation and position of the image on screen
    let s = await state(page);
    eq('7', s.index, 'the middle slice');
    eq(['A', 'P', 'R', 'L'], s.ori, 'orientation letters top/bottom/left/' +
       'right of an axial slice');
    const file = fromFile(st.files, s.sop, [[130, 300], [2, 2]]);
    eq(`Pos ${file.loc.toFixed(1)} mm`, s.pos,
       'slice position = the file\'s SliceLocation');

    // ---- the series button carries the series' thumbnail
    const th = await until(() => page.evaluate(() => {
        const i = document.querySelector('.viewer button.series img.thumb');
        return i && i.complete && i.naturalWidth > 0 &&
            [i.naturalWidth, i.naturalHeight, new URL(i.src).pathname];
    }), 'the series thumbnail loads');
    eq([96, 96, `/dicomweb/studies/${st.uid}/series/` +
        `${s.url.split('/series/')[1].split('/')[0]}/thumbnail`], th,
       'thumbnail: the server\'s, of the series, 96 px');

    // ---- W/L by mouse: from the file's window 40/80, k = max(0.5, 80/256)
    await page.click('.viewer button[data-mode="wl"]');
    const c = await screenOf(page, 256, 256);
    await drag(page, c, { x: c.x + 100, y: c.y + 50 });
    await until(async () => (await state(page)).overlay ===
                '7/12 · W 130 L 65', 'overlay after the W/L drag');
    s = await state(page);
    check(/[?&]window=65,130&/.test(s.url),
          `the image shown was rendered with window=65,130: ${s.url}`);
    eq('65,130', s.window, 'the shown image\'s window');
    eq('false', await page.getAttribute(
        '.presets button[data-preset="default"]', 'aria-pressed'),
       'no preset is pressed for a dragged window');

    // ---- W/L by one finger, from 65/130: k = max(0.5, 130/256) = 0.5078
    await touch(cdp, [c], [{ x: c.x - 60, y: c.y - 40 }]);
    await until(async () => (await state(page)).overlay ===
                '7/12 · W 100 L 45', 'overlay after the one-finger drag');
    check(/[?&]window=45,100&/.test((await state(page)).url),
          'the touch-dragged window was rendered');

    // ---- zoom: Ctrl+wheel about the cursor, two-finger pinch, pan
    await page.mouse.move(c.x, c.y);
    await page.keyboard.down('Control');
    await page.mouse.wheel(0, -300);
    await page.keyboard.up('Control');
    const vp = (u) => Number(/viewport=(\d+),/.exec(u)[1]);
    const before = vp((await state(page)).url);
    await until(async () => (await state(page)).zoom > 1.5,
                'Ctrl+wheel zooms in');
    await until(async () => vp((await state(page)).url) > before,
                `the zoomed image is rendered larger than ${before} px`);
    await page.click('.viewer button.reset');
    await until(async () => {
        const x = await state(page);
        return x.zoom === 1 && x.window === 'default' &&
            x.overlay === '7/12 · Default window';
    }, 'Reset: zoom 1 and the default window');
    await page.click('.viewer button[data-mode="scroll"]');
    await touch(cdp, [{ x: c.x - 30, y: c.y }, { x: c.x + 30, y: c.y }],
                [{ x: c.x - 90, y: c.y }, { x: c.x + 90, y: c.y }]);
    s = await state(page);
    check(s.zoom > 2.5 && s.zoom < 3.5,
          `a pinch from 60 to 180 px zooms about 3x (zoom ${s.zoom})`);
    eq('7', s.index, 'a pinch does not change the slice');
    await page.click('.viewer button[data-mode="pan"]');
    await drag(page, c, { x: c.x + 40, y: c.y + 20 });
    s = await state(page);
    check(/translate\(40px, 20px\)/.test(s.transform),
          `a pan-mode drag moves the image by the drag: ${s.transform}`);
    await page.click('.viewer button.reset');
    s = await state(page);
    eq([1, 'translate(0px, 0px) scale(1)'], [s.zoom, s.transform],
       'Reset: zoom 1, no pan');

    // ---- length across 300 pixels of row 256
    await page.click('.viewer button[data-mode="measure"]');
    await drag(page, await screenOf(page, 100, 256),
               await screenOf(page, 400, 256));
    s = await state(page);
    log('length:', s.readout, JSON.stringify(s.data));
    const [ax, ay] = s.data.a.split(',').map(Number);
    const [bx, by] = s.data.b.split(',').map(Number);
    const k = (await screenOf(page, 0, 0)).k;
    check(Math.abs(ax - 100) <= 1 / k && Math.abs(bx - 400) <= 1 / k &&
          Math.abs(ay - 256) <= 1 / k && Math.abs(by - 256) <= 1 / k,
          `the ends are where the drag was (${s.data.a} ${s.data.b})`);
    const [rowMm, colMm] = file.spacing;
    const mm = Math.hypot((bx - ax) * colMm, (by - ay) * rowMm);
    eq(`Length ${mm.toFixed(1)} mm`, s.readout, 'the length in mm');
    check(Math.abs(mm - 300 * colMm) < 1,
          `300 pixels are ${(300 * colMm).toFixed(1)} mm (read ${mm})`);

    // ---- HU probe: bone at (130, 300), air at (2, 2)
    await page.click('.viewer button[data-mode="probe"]');
    const probes = [[130, 300], [2, 2]];
    for (const [i, [x, y]] of probes.entries()) {
        const p = await screenOf(page, x + 0.5, y + 0.5);
        await page.mouse.click(p.x, p.y);
        await until(async () => (await state(page)).data.value !== undefined
                    && !/…/.test((await state(page)).readout),
                    `the probe at ${x},${y} answers`);
        s = await state(page);
        const px = Number(s.data.x), py = Number(s.data.y);
        check(Math.abs(px - x) <= 1 && Math.abs(py - y) <= 1,
              `probed where clicked (${px},${py} for ${x},${y})`);
        const want = fromFile(st.files, s.sop, [[px, py]]).hu[0];
        log(`probe ${x},${y}:`, s.readout, 'file:', want);
        eq(String(want), s.data.value, `HU at ${px},${py}`);
        eq(`(${px}, ${py}): HU ${want}`, s.readout, 'the probe readout');
        if (i === 0)
            check(want > 500, `(130, 300) is bone: ${want} HU`);
        else
            eq(-1000, want, 'air outside the field of view');
        await page.mouse.move(0, 0);
        await page.evaluate(() => {
            delete document.querySelector('.viewer .readout').dataset.value;
        });
    }

    // ---- cine: the slices advance by themselves, then pause
    await page.selectOption('.viewer select.fps', '10');
    await page.click('.viewer button.play');
    const seen = new Set();
    await until(async () => {
        seen.add((await state(page)).index);
        return seen.size >= 4;
    }, 'cine shows four different slices', 15000);
    await page.click('.viewer button.play');
    eq('false', await page.getAttribute('.viewer button.play',
                                        'aria-pressed'), 'cine paused');
    log('cine showed slices', [...seen].join(' '));
    await ctx.close();
});
