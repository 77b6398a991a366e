// viewer_controls_fit_three_screens — the viewer with its tools at
// 360x740 (phone), 740x360 (phone turned) and 1280x800 (desktop): every
// viewer control (slice buttons and slider, presets, modes, reset, cine,
// speed, full screen, series) is at least 44x44 px by its bounding box;
// nothing scrolls sideways; when a case opens, the image is in the first
// screen everywhere, in landscape the slice bar too, and at 1280x800 the
// image, slice bar, presets and tools are all above the fold.  A
// screenshot per size, with a length drawn, is kept in
// build/test-logs/browser/viewer-tools-SIZE.png.

import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, ct12Case, log, SCREENS as SIZES,
         SHOTS } from './lib.mjs';

const PARTS = ['.stage', '.slice-bar', '.presets', '.tools', '.slice-row'];

function measure(page, parts) {
    return page.evaluate((parts) => {
        const v = document.querySelector('.viewer');
        const small = [];
        let n = 0;
        for (const e of v.querySelectorAll('button, input, select, a')) {
            const r = e.getBoundingClientRect();
            if (!r.width || !r.height || e.closest('[hidden]'))
                continue;
            n++;
            if (r.width < 43.5 || r.height < 43.5)
                small.push(`${e.outerHTML.slice(0, 60)} ` +
                           `${Math.round(r.width)}x${Math.round(r.height)}`);
        }
        const box = {};
        for (const p of parts) {
            const r = v.querySelector(p).getBoundingClientRect();
            box[p] = { top: Math.round(r.top), bottom: Math.round(r.bottom),
                       height: Math.round(r.height) };
        }
        return { small, n, box, h: window.innerHeight, y: window.scrollY,
                 scroll: document.documentElement.scrollWidth,
                 inner: window.innerWidth };
    }, parts);
}

test(async (t) => {
    const { srv } = await ct12Case(t, {
        case_id: 'fit-case', question: 'Bleed?', priority: 'stat',
        specialty: 'neurology',
    });
    fs.mkdirSync(SHOTS, { recursive: true });
    for (const size of SIZES) {
        const ctx = await t.context({ viewport: size.viewport,
                                      isMobile: !!size.touch,
                                      hasTouch: !!size.touch });
        const page = await t.page(ctx, srv, 'demo-neuro');
        await page.click('li[data-case-id="fit-case"] a');
        await until(() => page.evaluate(() => document.querySelector(
            '.viewer .overlay-pos').textContent !== ''),
                    `${size.name}: the image and its geometry load`);
        const m = await measure(page, PARTS);
        log(size.name, JSON.stringify(m.box));
        eq([], m.small, `${size.name}: viewer controls under 44x44 px`);
        check(m.n >= 20, `${size.name}: ${m.n} viewer controls measured`);
        check(m.scroll <= m.inner, `${size.name}: no horizontal overflow`);
        eq(0, m.y, `${size.name}: the case opens at its top`);
        const st = m.box['.stage'];
        const seen = Math.min(st.bottom, m.h) - Math.max(st.top, 0);
        check(seen >= 150 && seen >= Math.min(st.height, m.h) * 0.5,
              `${size.name}: the image is in the first screen (${seen} px)`);
        if (size.name === '740x360')
            check(m.box['.slice-bar'].bottom <= m.h,
                  `740x360: the slice bar is in the first screen too ` +
                  `${JSON.stringify(m.box['.slice-bar'])}`);
        if (size.name === '1280x800')
            for (const p of PARTS)
                check(m.box[p].bottom <= m.h,
                      `1280x800: ${p} above the fold ` +
                      `${JSON.stringify(m.box[p])}`);

        // a length drawn, for the screenshot (and it must show)
        await page.click('.viewer button[data-mode="measure"]');
        await page.evaluate(() => document.querySelector('.viewer .stage')
            .scrollIntoView({ block: 'start' }));
        const b = await page.evaluate(() => {
            const r = document.querySelector('.viewer .stage')
                .getBoundingClientRect();
            return { x: r.left, y: r.top, w: r.width, h: r.height };
        });
        await page.mouse.move(b.x + b.w * 0.3, b.y + b.h * 0.5);
        await page.mouse.down();
        await page.mouse.move(b.x + b.w * 0.7, b.y + b.h * 0.5,
                              { steps: 4 });
        await page.mouse.up();
        const len = await page.textContent('.viewer .readout');
        check(/^Length \d+\.\d mm$/.test(len),
              `${size.name}: the length is shown (${JSON.stringify(len)})`);
        eq(3, await page.locator('.viewer svg.marks .len').count(),
           `${size.name}: the length's line and ends are drawn`);
        await page.screenshot({ path: path.join(
            SHOTS, `viewer-tools-${size.name}.png`) });
        await ctx.close();
    }
});
