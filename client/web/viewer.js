// viewer — the image viewer of the case page: the case's studies and
// their series (QIDO-RS), one slice at a time as a JPEG the server renders
// (WADO-RS rendered, loaded by <img> with the session cookie), window
// presets, and scrolling through the slices by wheel, keys, buttons, the
// slider, or a sideways swipe (a vertical swipe still scrolls the page).
//
// The next image is loaded off-screen and swapped in when complete, so
// the picture never flickers or goes blank while scrolling fast; the
// neighbours are fetched ahead (the server lets the browser cache them).
// The overlay describes the image on screen, never the one asked for: it
// changes with the swap.  Images are fetched (not set as <img src>) so a
// failure has a reason to show (no connection, not received yet, not
// renderable); a failed load is tried again 1 s doubling to 16 s later,
// and at once when retry() is called (the page calls it when its link
// is back).
//
// Tools, as OHIF / Weasis users expect them, still on rendered JPEGs: a
// mode (Scroll, W/L, Pan, Measure, Probe) decides what a one-finger or
// left-button drag does; pinch and Ctrl+wheel zoom about the fingers or
// the cursor; the middle button pans, the right button drags the window.
// A W/L drag asks the server for the new window (at most one request in
// flight, the newest value next), so the overlay's numbers are those of
// the pixels shown.  Length (mm) and the HU probe use the series'
// geometry (.../series/{se}/geometry: PixelSpacing, orientation,
// position) and the server's value probe (.../probe?x=&y=), both in image
// pixels, so zoom and pan change nothing of them.  Orientation letters
// (from ImageOrientationPatient) and the slice position (SliceLocation,
// else ImagePositionPatient along the normal) change with the swap, like
// the overlay.  Cine steps at the chosen rate, never faster than the
// images arrive.
//
// On a slow link the first image must not wait for three QIDO round
// trips: the case answer names it (first_image: series, SOP, its index
// among the slices), so it is asked at once as a draft (half the size,
// JPEG quality DRAFT_QUALITY) and replaced by the full-quality one once
// the series' slices are known; the overlay line and alt text say so.
//
// createViewer(studyUids, first) -> { el, refresh(), current(),
// show(image), retry(), destroy() }.  first: the case's first_image, or
// null.  current() is what a chat message can point at.

import { h, fill, qido, dv, api } from './util.js';

export const PRESETS = [
    { name: 'brain', label: 'Brain', center: 40, width: 80 },
    { name: 'subdural', label: 'Subdural', center: 75, width: 215 },
    { name: 'stroke', label: 'Stroke', center: 40, width: 40 },
    { name: 'bone', label: 'Bone', center: 500, width: 2000 },
    { name: 'lung', label: 'Lung', center: -600, width: 1500 },
    { name: 'abdomen', label: 'Abdomen', center: 60, width: 400 },
];

const WHEEL_STEP = 60;      // pixels of wheel per slice
const SWIPE_STEP = 18;      // pixels of sideways drag per slice
const AHEAD = 2;            // neighbours fetched ahead on each side
const RETRY_MS = 1000;      // a failed load: again after 1 s, doubling
const RETRY_MAX_MS = 16000;
const ZOOM_MIN = 0.5, ZOOM_MAX = 16;
// A W/L drag: window units per screen pixel, relative to the width the
// drag started from (OHIF-like), never below WL_MIN_STEP.
const WL_PER_PX = 1 / 256, WL_MIN_STEP = 0.5;
const FPS = [2, 5, 10, 15, 20];
// The first image before its series is known: a quarter of the pixels at
// a lower JPEG quality (bench/phone.mjs: 56 KiB at full quality).
const DRAFT_QUALITY = 50, DRAFT_SCALE = 0.5;
const MODES = [
    { name: 'scroll', label: 'Scroll', key: 's' },
    { name: 'wl', label: 'W/L', key: 'w' },
    { name: 'pan', label: 'Pan', key: 'p' },
    { name: 'measure', label: 'Length', key: 'm' },
    { name: 'probe', label: 'HU', key: 'v' },
];

// Why an image did not come, in words, and whether trying again helps.
function failure(status) {
    if (!status)
        return { text: 'No connection to the server', again: true };
    if (status === 404)
        return { text: 'This image has not been received yet', again: true };
    if (status === 401 || status === 403)
        return { text: 'You may not see this image', again: false };
    if (status >= 500 || status === 429)
        return { text: `The server could not render it (${status})`,
                 again: true };
    return { text: `This image cannot be shown (${status})`, again: false };
}

function enc(s) {
    return encodeURIComponent(s);
}

// Slices of a series: each frame of each instance, by InstanceNumber.
function slicesOf(instances) {
    const list = instances.map((o) => ({
        sop: dv(o, '00080018'),
        num: Number(dv(o, '00200013')) || 0,
        frames: Number(dv(o, '00280008')) || 1,
    })).filter((x) => x.sop);
    list.sort((a, b) => a.num - b.num || (a.sop < b.sop ? -1 : 1));
    const out = [];
    for (const x of list)
        for (let f = 1; f <= x.frames; f++)
            out.push({ sop: x.sop, frame: f, multi: x.frames > 1 });
    return out;
}

function windowText(win) {
    if (!win)
        return 'Default window';
    const p = PRESETS.find((x) => x.name === win.name);
    return `${p ? p.label + ' ' : ''}W ${win.width} L ${win.center}`;
}

// The patient direction (LPS) a vector points to: its largest
// components' letters, largest first (an oblique axis gets two).
export function directionLetters(v) {
    const names = [['L', 'R'], ['P', 'A'], ['H', 'F']];
    return [0, 1, 2].filter((i) => Math.abs(v[i]) > 0.25)
        .sort((a, b) => Math.abs(v[b]) - Math.abs(v[a]))
        .map((i) => names[i][v[i] > 0 ? 0 : 1]).join('');
}

// Letters at the image's edges from ImageOrientationPatient (row
// direction = to the right, column direction = down), or null.
function edgeLetters(o) {
    if (!o || o.length !== 6)
        return null;
    const row = o.slice(0, 3), col = o.slice(3);
    const neg = (v) => v.map((x) => -x);
    return { right: directionLetters(row), left: directionLetters(neg(row)),
             bottom: directionLetters(col), top: directionLetters(neg(col)) };
}

// Where a slice lies: SliceLocation, else ImagePositionPatient along the
// slice normal; null when the file says neither.
function slicePosition(g) {
    if (!g)
        return null;
    if (typeof g.slice_location === 'number')
        return g.slice_location;
    if (!g.position || !g.orientation)
        return null;
    const [a, b, c, d, e, f] = g.orientation;
    const n = [b * f - c * e, c * d - a * f, a * e - b * d];
    return g.position[0] * n[0] + g.position[1] * n[1] +
        g.position[2] * n[2];
}

function fmt(x, digits) {
    return (Math.round(x * 10 ** digits) / 10 ** digits).toFixed(digits);
}

export function createViewer(studyUids, firstImage) {
    const st = {
        series: [],         // {study, uid, modality, desc, number, count}
        cur: null,          // the shown series
        slices: [],
        idx: 0,
        win: null,          // null = the file's own window; else preset/custom
        load: 0,            // the newest load wins
        busy: 0,            // the load in flight (its number), 0 if none
        again: false,       // ask once more when the load in flight ends
        cache: new Map(),   // series uid -> slices
        geo: new Map(),     // series uid -> Map(sop -> geometry)
        wheel: 0,
        dead: false,
        retryMs: RETRY_MS,
        retryTimer: null,
        url: null,          // object URL of the image on screen
        onScreen: null,     // {sop, idx}: the slice of the image shown
        mode: 'scroll',
        view: { zoom: 1, x: 0, y: 0 },  // stage pixels from the centre
        measure: null,      // {a, b}: image pixels, of onScreen's slice
        probe: null,        // {x, y, text}
        cine: null,         // interval timer while playing
        sharpen: null,      // timer: a render for the new zoom
        fps: 5,
    };

    const info = h('div', { class: 'study-info' });
    const seriesBox = h('div', { class: 'series-list', role: 'group',
                                 'aria-label': 'Series' });
    let img = h('img', { class: 'slice', alt: '' });
    const pane = h('div', { class: 'pane' }, img);
    const msg = h('p', { class: 'stage-msg', role: 'status' },
                  'Loading images…');
    const overlay = h('div', { class: 'overlay', 'aria-hidden': 'true' });
    const posLine = h('div', { class: 'overlay-pos', 'aria-hidden': 'true' });
    const ori = {};
    for (const edge of ['top', 'bottom', 'left', 'right'])
        ori[edge] = h('span', { class: `ori ori-${edge}`,
                                'aria-hidden': 'true' });
    const SVG = 'http://www.w3.org/2000/svg';
    const marks = document.createElementNS(SVG, 'svg');
    marks.setAttribute('class', 'marks');
    marks.setAttribute('aria-hidden', 'true');
    const readout = h('output', { class: 'readout', 'aria-live': 'polite' });
    const stage = h('div', { class: 'stage', tabindex: '0',
                             'aria-label': 'Image. Arrow keys or swipe ' +
                             'sideways change the slice; keys 0 to 6 ' +
                             'the window.' },
                    pane, marks, overlay, posLine, ori.top, ori.bottom,
                    ori.left, ori.right, readout, msg);
    const prev = h('button', { type: 'button', class: 'nav-btn',
                               'aria-label': 'Previous slice' }, '‹ Prev');
    const next = h('button', { type: 'button', class: 'nav-btn',
                               'aria-label': 'Next slice' }, 'Next ›');
    const range = h('input', { type: 'range', min: '1', max: '1',
                               value: '1', 'aria-label': 'Slice' });
    const count = h('output', { class: 'slice-count', 'aria-live': 'off' });
    const sliceBar = h('div', { class: 'slice-bar' }, prev, range, next);
    const presetBtns = [{ name: null, label: 'Default' }, ...PRESETS]
        .map((p) => h('button', { type: 'button', class: 'preset',
                                  'data-preset': p.name || 'default',
                                  'aria-pressed': p.name ? 'false' : 'true',
                                  onclick: () => setWindow(p.name
                                      ? { name: p.name, center: p.center,
                                          width: p.width } : null) },
                      p.label));
    const presets = h('div', { class: 'presets', role: 'group',
                               'aria-label': 'Window preset' }, presetBtns);
    const modeBtns = MODES.map((m) => h('button', {
        type: 'button', class: 'tool', 'data-mode': m.name,
        'aria-pressed': String(m.name === st.mode),
        title: `${m.label} (key ${m.key})`,
        onclick: () => setMode(m.name),
    }, m.label));
    const resetBtn = h('button', { type: 'button', class: 'tool reset',
                                   title: 'Reset zoom, pan, window (key r)',
                                   onclick: () => reset() }, 'Reset');
    const playBtn = h('button', { type: 'button', class: 'tool play',
                                  'aria-pressed': 'false',
                                  onclick: () => cine(!st.cine) }, '▶ Cine');
    const fpsSel = h('select', { class: 'fps', 'aria-label': 'Cine speed' },
                     FPS.map((f) => h('option', { value: String(f),
                                                  selected: f === st.fps },
                                      `${f} fps`)));
    const tools = h('div', { class: 'tools', role: 'group',
                             'aria-label': 'Tools' }, modeBtns, resetBtn);
    const fullBtn = h('button', { type: 'button', class: 'link-btn full',
                                  'aria-label': 'Full screen',
                                  onclick: () => fullscreen() }, 'Full');
    const hint = h('p', { class: 'hint muted' },
                   'Slices: wheel, arrow keys, swipe sideways. ' +
                   'Windows: keys 0–6, or W/L and drag. Zoom: Ctrl+wheel ' +
                   'or pinch.');
    const el = h('section', { class: 'viewer', 'aria-label': 'Images' },
                 info, seriesBox, stage,
                 h('div', { class: 'slice-row' }, count, playBtn, fpsSel,
                   fullBtn),
                 sliceBar, presets, tools, hint);

    function say(text) {
        msg.textContent = text;
        msg.hidden = !text;
    }

    // The rendered size: the stage's, in device pixels, times the zoom
    // (a zoomed image is asked again sharper), times k (a draft's half),
    // in steps of 128, at most 1024.
    function viewport(k = 1) {
        const w = Math.max(stage.clientWidth, 256) * k *
            (window.devicePixelRatio || 1) * Math.max(1, st.view.zoom);
        const s = Math.min(1024, Math.ceil(w / 128) * 128);
        return `${s},${s}`;
    }

    function winParam(win) {
        return win.name ? enc(win.name)
                        : `${Math.round(win.center)},${Math.round(win.width)}`;
    }

    function instUrl(s, se = st.cur) {
        let u = `/dicomweb/studies/${enc(se.study)}/series/${enc(se.uid)}` +
            `/instances/${enc(s.sop)}`;
        if (s.multi)
            u += `/frames/${s.frame}`;
        return u;
    }

    function urlOf(s, se = st.cur, k = 1) {
        let u = instUrl(s, se) + '/rendered?';
        if (st.win)
            u += `window=${winParam(st.win)}&`;
        return u + `viewport=${viewport(k)}`;
    }

    function geoOf(sop) {
        const g = st.cur && st.geo.get(st.cur.uid);
        return (g && g.get(sop)) || null;
    }

    function controls() {
        const n = st.slices.length;
        if (!n && st.onScreen) {
            // the draft first image: its place is known, not its series'
            count.textContent = `Slice ${st.onScreen.idx + 1} of ` +
                `${st.onScreen.n}`;
            return;
        }
        range.max = String(Math.max(n, 1));
        range.value = String(st.idx + 1);
        prev.disabled = st.idx <= 0;
        next.disabled = st.idx >= n - 1;
        range.disabled = n < 2;
        const txt = n ? `Slice ${st.idx + 1} of ${n}` : 'No slices';
        count.textContent = txt;
        range.setAttribute('aria-valuetext', txt);
        const on = st.win ? st.win.name : 'default';
        for (const b of presetBtns)
            b.setAttribute('aria-pressed', String(b.dataset.preset === on));
    }

    // What the overlay says of the image on screen: its slice position
    // and orientation letters, from its own geometry.
    function describe(sop) {
        const g = geoOf(sop);
        const pos = slicePosition(g);
        posLine.textContent = pos === null ? '' : `Pos ${fmt(pos, 1)} mm`;
        const e = edgeLetters(g && g.orientation);
        for (const edge of Object.keys(ori))
            ori[edge].textContent = e ? e[edge] : '';
    }

    // The load in flight ended (swapped, failed, or overtaken).
    function settled(my) {
        if (st.busy !== my)
            return;
        st.busy = 0;
        if (st.again) {
            st.again = false;
            show();
        }
    }

    // A load for a fast-changing input (W/L drag, cine): at most one in
    // flight; the newest value goes when it ends.
    function request() {
        if (st.busy) {
            st.again = true;
            return;
        }
        show();
    }

    // Loads the slice asked for and swaps it in; the overlay follows the
    // swap.  keep: a retry (the backoff goes on growing).  draft: {s, se,
    // idx, n}, the case's first image, asked at DRAFT_QUALITY before the
    // series' slices are known; a failed draft is not tried again (the
    // full-quality load follows anyway).
    async function show(keep, draft) {
        controls();
        const s = draft ? draft.s : st.slices[st.idx];
        if (!s)
            return;
        clearTimeout(st.retryTimer);
        st.retryTimer = null;
        if (!keep)
            st.retryMs = RETRY_MS;
        const n = draft ? draft.n : st.slices.length;
        const idx = draft ? draft.idx : st.idx, win = st.win;
        const my = ++st.load;
        st.busy = my;
        st.again = false;
        const asked = draft ? urlOf(s, draft.se, DRAFT_SCALE) +
            `&quality=${DRAFT_QUALITY}` : urlOf(s);
        if (!img.getAttribute('src'))
            say('Loading image…');
        let res = null;
        try {
            res = await fetch(asked, { credentials: 'same-origin' });
        } catch (err) {
            res = null;
        }
        let blob = null;
        try {
            blob = res && res.ok ? await res.blob() : null;
        } catch (err) {
            res = null;     // cut while the body came
        }
        if (my !== st.load || st.dead)
            return;
        if (!blob && draft) {
            settled(my);
            return;
        }
        if (!blob) {
            const f = failure(res ? res.status : 0);
            const what = `Slice ${idx + 1}, ${windowText(win)}`;
            if (f.again) {
                say(`${what}: ${f.text}. Trying again in ` +
                    `${Math.round(st.retryMs / 1000)} s…`);
                st.retryTimer = setTimeout(() => show(true), st.retryMs);
                st.retryMs = Math.min(st.retryMs * 2, RETRY_MAX_MS);
            } else {
                say(`${what}: ${f.text}.`);
            }
            settled(my);
            return;
        }
        const url = URL.createObjectURL(blob);
        const pic = new Image();
        pic.className = 'slice';
        pic.alt = `Slice ${idx + 1} of ${n}, ${windowText(win)}` +
            (draft ? ', low quality' : '');
        pic.dataset.sop = s.sop;
        pic.dataset.frame = String(s.frame);
        pic.dataset.index = String(idx + 1);
        pic.dataset.url = asked;  // the rendered URL (src is a blob:)
        pic.dataset.quality = draft ? String(DRAFT_QUALITY) : 'full';
        pic.dataset.window = win
            ? (win.name || `${Math.round(win.center)},` +
               `${Math.round(win.width)}`) : 'default';
        pic.onload = () => {
            if (my !== st.load || st.dead) {
                URL.revokeObjectURL(url);
                return;
            }
            img.replaceWith(pic);
            img = pic;
            if (st.url)
                URL.revokeObjectURL(st.url);
            st.url = url;
            // (a draft's pixels are not the full image's)
            const other = !st.onScreen || st.onScreen.sop !== s.sop ||
                st.onScreen.frame !== s.frame || st.onScreen.draft;
            st.onScreen = { sop: s.sop, frame: s.frame, idx, n,
                            draft: !!draft };
            overlay.textContent = `${idx + 1}/${n} · ${windowText(win)}`;
            describe(s.sop);
            if (draft)
                posLine.textContent = 'Low quality, loading full…';
            if (other) {
                // a length or a value belongs to the slice it was read on
                st.measure = null;
                st.probe = null;
                readout.textContent = '';
            }
            marksDraw();
            say('');
            settled(my);
            if (!st.cine && !draft)
                ahead();
        };
        pic.onerror = () => {
            URL.revokeObjectURL(url);
            if (my === st.load)
                say(`Slice ${idx + 1}: ${failure(415).text}.`);
            settled(my);
        };
        pic.src = url;
    }

    // Asks the server for the neighbours (kept by the browser's cache).
    function ahead() {
        for (let d = 1; d <= AHEAD; d++)
            for (const i of [st.idx + d, st.idx - d])
                if (i >= 0 && i < st.slices.length)
                    fetch(urlOf(st.slices[i]), { credentials: 'same-origin' })
                        .then((r) => r.blob()).catch(() => {});
    }

    // The link is back: a failed load is tried now, not at its backoff.
    function retry() {
        if (st.retryTimer)
            show(false);
    }

    function go(i) {
        const n = st.slices.length;
        i = Math.max(0, Math.min(n - 1, i));
        if (i === st.idx || !n)
            return;
        st.idx = i;
        show();
    }

    function setWindow(w) {
        st.win = w;
        show();
    }

    // ---- geometry: screen <-> image pixels --------------------------------

    // The shown image's size in pixels (its Rows and Columns), else the
    // rendered JPEG's.
    function imageSize() {
        const g = st.onScreen && geoOf(st.onScreen.sop);
        if (g && g.columns && g.rows)
            return { w: g.columns, h: g.rows };
        return { w: img.naturalWidth || 1, h: img.naturalHeight || 1 };
    }

    // Stage pixels per image pixel at zoom 1 (object-fit: contain).
    function baseScale() {
        const { w, h: ht } = imageSize();
        return Math.min(stage.clientWidth / w, stage.clientHeight / ht);
    }

    function toImage(clientX, clientY) {
        const r = stage.getBoundingClientRect();
        const { w, h: ht } = imageSize();
        const s = baseScale() * st.view.zoom;
        return {
            x: (clientX - r.left - stage.clientWidth / 2 - st.view.x) / s +
                w / 2,
            y: (clientY - r.top - stage.clientHeight / 2 - st.view.y) / s +
                ht / 2,
        };
    }

    function toStage(p) {
        const { w, h: ht } = imageSize();
        const s = baseScale() * st.view.zoom;
        return { x: stage.clientWidth / 2 + st.view.x + (p.x - w / 2) * s,
                 y: stage.clientHeight / 2 + st.view.y + (p.y - ht / 2) * s };
    }

    function applyView() {
        pane.style.transform = `translate(${st.view.x}px, ${st.view.y}px) ` +
            `scale(${st.view.zoom})`;
        stage.dataset.zoom = fmt(st.view.zoom, 2);
        marksDraw();
        // once the zoom settles, a sharper render if it needs one
        clearTimeout(st.sharpen);
        st.sharpen = setTimeout(() => {
            if (st.onScreen && !img.dataset.url.includes(
                `viewport=${viewport()}`))
                request();
        }, 300);
    }

    // Zoom to z keeping the image point under (cx, cy) (client px) there.
    function zoomAt(z, cx, cy) {
        z = Math.max(ZOOM_MIN, Math.min(ZOOM_MAX, z));
        const r = stage.getBoundingClientRect();
        const qx = cx - r.left - stage.clientWidth / 2 - st.view.x;
        const qy = cy - r.top - stage.clientHeight / 2 - st.view.y;
        st.view.x += qx - qx * z / st.view.zoom;
        st.view.y += qy - qy * z / st.view.zoom;
        st.view.zoom = z;
        applyView();
    }

    // ---- length and value ---------------------------------------------------

    function lengthText(m) {
        const g = st.onScreen && geoOf(st.onScreen.sop);
        const ps = g && g.pixel_spacing;
        const dx = m.b.x - m.a.x, dy = m.b.y - m.a.y;
        if (!ps)
            return `${fmt(Math.hypot(dx, dy), 1)} px (no pixel spacing)`;
        // PixelSpacing: between rows (down), then between columns (across)
        return `${fmt(Math.hypot(dx * ps[1], dy * ps[0]), 1)} mm`;
    }

    function svg(tag, attrs) {
        const e = document.createElementNS(SVG, tag);
        for (const [k, v] of Object.entries(attrs))
            e.setAttribute(k, String(v));
        return e;
    }

    function marksDraw() {
        marks.replaceChildren();
        if (st.measure && st.measure.b) {
            const a = toStage(st.measure.a), b = toStage(st.measure.b);
            marks.append(svg('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y,
                                       class: 'len' }));
            for (const p of [a, b])
                marks.append(svg('circle', { cx: p.x, cy: p.y, r: 4,
                                             class: 'len' }));
            const t = svg('text', { x: (a.x + b.x) / 2 + 6,
                                    y: (a.y + b.y) / 2 - 6,
                                    class: 'len-text' });
            t.textContent = lengthText(st.measure);
            marks.append(t);
        }
        if (st.probe) {
            const p = toStage({ x: st.probe.x + 0.5, y: st.probe.y + 0.5 });
            marks.append(svg('circle', { cx: p.x, cy: p.y, r: 5,
                                         class: 'probe' }));
        }
    }

    function measured() {
        const m = st.measure;
        readout.dataset.kind = 'length';
        readout.dataset.a = `${fmt(m.a.x, 2)},${fmt(m.a.y, 2)}`;
        readout.dataset.b = `${fmt(m.b.x, 2)},${fmt(m.b.y, 2)}`;
        readout.textContent = `Length ${lengthText(m)}`;
    }

    async function probeAt(p) {
        const s = st.slices.find((x) => st.onScreen &&
                                 x.sop === st.onScreen.sop &&
                                 x.frame === st.onScreen.frame);
        const { w, h: ht } = imageSize();
        const x = Math.floor(p.x), y = Math.floor(p.y);
        if (!s || x < 0 || y < 0 || x >= w || y >= ht)
            return;
        const at = st.onScreen;
        st.probe = { x, y };
        marksDraw();
        readout.dataset.kind = 'probe';
        readout.textContent = `(${x}, ${y}): …`;
        let text;
        try {
            const v = await api('GET', `${instUrl(s)}/probe?x=${x}&y=${y}`);
            text = `(${x}, ${y}): ${v.unit === 'HU' ? 'HU ' : ''}` +
                `${fmt(v.value, Number.isInteger(v.value) ? 0 : 1)}` +
                (v.unit && v.unit !== 'HU' ? ` ${v.unit}` : '');
            readout.dataset.value = String(v.value);
        } catch (err) {
            text = `(${x}, ${y}): ${err.message}`;
            delete readout.dataset.value;
        }
        if (st.onScreen !== at || !st.probe || st.probe.x !== x ||
            st.probe.y !== y)
            return;                 // another slice or point meanwhile
        readout.dataset.x = String(x);
        readout.dataset.y = String(y);
        readout.textContent = text;
    }

    // ---- modes, reset, cine -----------------------------------------------

    function setMode(m) {
        st.mode = m;
        for (const b of modeBtns)
            b.setAttribute('aria-pressed', String(b.dataset.mode === m));
        stage.classList.toggle('tool-on', m !== 'scroll');
    }

    function reset() {
        st.view = { zoom: 1, x: 0, y: 0 };
        st.measure = null;
        st.probe = null;
        readout.textContent = '';
        applyView();
        if (st.win)
            setWindow(null);
    }

    function cine(on) {
        clearInterval(st.cine);
        st.cine = null;
        if (on && st.slices.length > 1) {
            st.cine = setInterval(() => {
                if (st.busy)
                    return;         // never faster than the images come
                st.idx = (st.idx + 1) % st.slices.length;
                request();
            }, 1000 / st.fps);
        }
        playBtn.setAttribute('aria-pressed', String(!!st.cine));
        playBtn.textContent = st.cine ? '❚❚ Pause' : '▶ Cine';
    }

    fpsSel.addEventListener('change', () => {
        st.fps = Number(fpsSel.value) || 5;
        if (st.cine)
            cine(true);
    });

    // ---- series ----------------------------------------------------------

    async function slicesFor(se) {
        if (!st.cache.has(se.uid)) {
            const inst = await qido(`/dicomweb/studies/${enc(se.study)}` +
                                    `/series/${enc(se.uid)}/instances`);
            st.cache.set(se.uid, slicesOf(inst));
        }
        return st.cache.get(se.uid);
    }

    // The series' geometry (sizes, spacing, orientation, position); the
    // overlay is described again once it is in.
    async function geometryFor(se) {
        try {
            const g = await api('GET', `/dicomweb/studies/${enc(se.study)}` +
                                `/series/${enc(se.uid)}/geometry`);
            st.geo.set(se.uid, new Map(g.instances.map((x) => [x.sop, x])));
        } catch (err) {
            return;                 // no letters, lengths in pixels
        }
        if (!st.dead && st.cur === se && st.onScreen) {
            describe(st.onScreen.sop);
            marksDraw();
        }
    }

    async function pick(se, keepSop) {
        st.cur = se;
        st.cache.delete(se.uid);
        geometryFor(se);
        const slices = await slicesFor(se);
        if (st.dead || st.cur !== se)
            return;
        // the draft first image on screen: stay on its slice
        const old = keepSop ? st.slices[st.idx]
                            : !st.slices.length && st.onScreen;
        st.slices = slices;
        let i = old ? slices.findIndex((s) => s.sop === old.sop &&
                                       s.frame === old.frame) : -1;
        if (i < 0)
            i = keepSop ? Math.min(st.idx, slices.length - 1)
                        : Math.floor(slices.length / 2);
        st.idx = Math.max(0, i);
        for (const b of seriesBox.children)
            b.setAttribute('aria-pressed', String(b.dataset.uid === se.uid));
        if (!slices.length)
            say('No images in this series yet.');
        show();
    }

    function studyInfo(s) {
        const name = dv(s, '00100010'), pid = dv(s, '00100020');
        const date = dv(s, '00080020'), desc = dv(s, '00081030');
        const d = date.length === 8
            ? `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6)}` : date;
        return h('p', { class: 'study-line' },
                 h('span', { class: 'pt-name' }, name || 'No name'),
                 pid ? h('span', {}, ` · ID ${pid}`) : null,
                 d ? h('span', {}, ` · ${d}`) : null,
                 desc ? h('span', {}, ` · ${desc}`) : null);
    }

    // A series button: its thumbnail (the server's, of its middle image),
    // modality, description and count.
    function seriesButton(s) {
        const thumb = h('img', {
            class: 'thumb', alt: '', loading: 'lazy', width: '48',
            height: '48', src: `/dicomweb/studies/${enc(s.study)}/series/` +
                `${enc(s.uid)}/thumbnail?viewport=96,96&n=${s.count}`,
        });
        thumb.onerror = () => thumb.remove();
        return h('button', {
            type: 'button', class: 'series', 'data-uid': s.uid,
            'aria-pressed': 'false', onclick: () => pick(s, false),
        }, thumb, h('span', {},
                    `${s.modality || '?'} ${s.desc || 'series ' +
                        (s.number || '')}`.trim(),
                    h('span', { class: 'muted' }, ` (${s.count})`)));
    }

    // (Re)reads studies and series; keeps the shown series and slice.
    async function refresh() {
        if (!studyUids.length) {
            fill(el, h('p', { class: 'muted' },
                       'No images are attached to this case.'));
            return;
        }
        const fi = firstImage;
        if (fi && fi.sop_uid && !st.onScreen && !st.cur &&
            studyUids.includes(fi.study_uid)) {
            await null;             // the page has put el in, so its size
            show(false, {
                s: { sop: fi.sop_uid, frame: fi.frame || 1,
                     multi: (fi.frames || 1) > 1 },
                se: { study: fi.study_uid, uid: fi.series_uid },
                idx: fi.index || 0, n: fi.slices || 1 });
        }
        const series = [];
        const infos = [];
        for (const study of studyUids) {
            try {
                // together: on a 400 ms link each round trip costs 0.8 s
                const [s, ser] = await Promise.all([
                    qido(`/dicomweb/studies?StudyInstanceUID=${enc(study)}`),
                    qido(`/dicomweb/studies/${enc(study)}/series`)]);
                if (s[0])
                    infos.push(studyInfo(s[0]));
                for (const o of ser)
                    series.push({
                        study,
                        uid: dv(o, '0020000E'),
                        modality: dv(o, '00080060'),
                        desc: dv(o, '0008103E'),
                        number: dv(o, '00200011'),
                        count: Number(dv(o, '00201209')) || 0,
                    });
            } catch (err) {
                if (err.status !== 404)
                    infos.push(h('p', { class: 'error' },
                                 `Study ${study}: ${err.message}`));
            }
        }
        if (st.dead)
            return;
        fill(info, infos);
        st.series = series.filter((s) => s.uid);
        fill(seriesBox, st.series.map(seriesButton));
        seriesBox.hidden = !st.series.length;
        if (!st.series.length) {
            say('Images not received yet. They appear here as they arrive.');
            return;
        }
        const same = st.cur && st.series.find((s) => s.uid === st.cur.uid);
        const first = same || st.series.reduce(
            (a, b) => (b.count > a.count ? b : a));
        await pick(first, !!same);
    }
    // Shows the image a chat message points at.
    async function showImage(im) {
        for (const se of st.series) {
            const slices = await slicesFor(se);
            const i = slices.findIndex((s) => s.sop === im.sop_uid &&
                                       s.frame === (im.frame || 1));
            if (i >= 0) {
                if (st.cur !== se)
                    await pick(se, false);
                st.idx = i;
                st.win = im.window ? { name: null, center: im.window.center,
                                       width: im.window.width } : st.win;
                if (st.win && !st.win.name) {
                    const p = PRESETS.find((x) => x.center === st.win.center &&
                                           x.width === st.win.width);
                    if (p)
                        st.win.name = p.name;
                }
                show();
                stage.scrollIntoView({ block: 'nearest' });
                stage.focus({ preventScroll: true });
                return true;
            }
        }
        return false;
    }

    function current() {
        const s = st.slices[st.idx];
        if (!s)
            return null;
        const o = { sop_uid: s.sop, frame: s.frame };
        if (st.win)
            o.window = { center: st.win.center, width: st.win.width };
        return o;
    }

    function fullscreen() {
        if (document.fullscreenElement)
            document.exitFullscreen();
        else if (el.requestFullscreen)
            el.requestFullscreen().catch(() => {});
    }

    // ---- input ----------------------------------------------------------
    prev.addEventListener('click', () => go(st.idx - 1));
    next.addEventListener('click', () => go(st.idx + 1));
    range.addEventListener('input', () => go(Number(range.value) - 1));
    stage.addEventListener('wheel', (e) => {
        if (e.ctrlKey) {            // also a trackpad's pinch
            e.preventDefault();
            zoomAt(st.view.zoom * Math.exp(-e.deltaY * 0.002), e.clientX,
                   e.clientY);
            return;
        }
        if (st.slices.length < 2)
            return;
        e.preventDefault();
        st.wheel += e.deltaY * (e.deltaMode === 1 ? 33 : 1);
        const steps = Math.trunc(st.wheel / WHEEL_STEP);
        if (steps) {
            st.wheel -= steps * WHEEL_STEP;
            go(st.idx + steps);
        } else if (Math.abs(e.deltaY) > 0 && e.deltaMode === 2) {
            go(st.idx + Math.sign(e.deltaY));
        }
    }, { passive: false });
    stage.addEventListener('keydown', (e) => {
        const k = e.key;
        let d = 0;
        if (e.ctrlKey || e.altKey || e.metaKey)
            return;
        if (k === 'ArrowDown' || k === 'ArrowRight' || k === 'j')
            d = 1;
        else if (k === 'ArrowUp' || k === 'ArrowLeft' || k === 'k')
            d = -1;
        else if (k === 'PageDown')
            d = 10;
        else if (k === 'PageUp')
            d = -10;
        else if (k === 'Home')
            d = -st.slices.length;
        else if (k === 'End')
            d = st.slices.length;
        else if (/^[0-6]$/.test(k)) {
            presetBtns[Number(k)].click();
            e.preventDefault();
            return;
        } else if (k === 'r') {
            reset();
        } else if (k === ' ') {
            e.preventDefault();
            cine(!st.cine);
        } else {
            const m = MODES.find((x) => x.key === k);
            if (m)
                setMode(m.name);
        }
        if (d) {
            e.preventDefault();
            go(st.idx + d);
        }
    });

    // Pointers: one does what the mode (or the mouse button) says, two
    // pinch and pan.  The drag's start is kept, so every move is computed
    // from it (no drift).
    const pts = new Map();          // pointerId -> {x, y}
    let drag = null;
    let pinch = null;

    function pinchStart() {
        const [a, b] = [...pts.values()];
        pinch = { d: Math.hypot(a.x - b.x, a.y - b.y) || 1,
                  mx: (a.x + b.x) / 2, my: (a.y + b.y) / 2,
                  zoom: st.view.zoom, x: st.view.x, y: st.view.y };
        drag = null;
    }

    function currentWindow() {
        if (st.win)
            return { center: st.win.center, width: st.win.width };
        const g = st.onScreen && geoOf(st.onScreen.sop);
        if (g && g.window)
            return { center: g.window[0], width: g.window[1] };
        return { center: 40, width: 400 };
    }

    stage.addEventListener('pointerdown', (e) => {
        pts.set(e.pointerId, { x: e.clientX, y: e.clientY });
        if (pts.size === 2 && e.pointerType === 'touch') {
            pinchStart();
            return;
        }
        if (pts.size > 1)
            return;
        let what = st.mode;
        if (e.button === 1)
            what = 'pan';
        else if (e.button === 2)
            what = 'wl';
        else if (e.button !== 0)
            return;
        drag = { what, x: e.clientX, y: e.clientY, id: e.pointerId,
                 idx: st.idx, view: { ...st.view }, win: currentWindow(),
                 moved: false };
        if (what === 'measure') {
            st.measure = { a: toImage(e.clientX, e.clientY), b: null };
            st.probe = null;
        }
        if (what !== 'scroll')
            stage.setPointerCapture(e.pointerId);
        if (e.button === 1)
            e.preventDefault();
    });
    stage.addEventListener('pointermove', (e) => {
        if (!pts.has(e.pointerId))
            return;
        pts.set(e.pointerId, { x: e.clientX, y: e.clientY });
        if (pinch && pts.size >= 2) {
            const [a, b] = [...pts.values()];
            const d = Math.hypot(a.x - b.x, a.y - b.y);
            const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
            st.view = { zoom: pinch.zoom, x: pinch.x, y: pinch.y };
            zoomAt(pinch.zoom * d / pinch.d, pinch.mx, pinch.my);
            st.view.x += mx - pinch.mx;
            st.view.y += my - pinch.my;
            applyView();
            return;
        }
        if (!drag || e.pointerId !== drag.id)
            return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        drag.moved = drag.moved || Math.abs(dx) + Math.abs(dy) > 3;
        if (drag.what === 'scroll') {
            const steps = Math.trunc(dx / SWIPE_STEP);
            if (steps) {
                if (!stage.hasPointerCapture(e.pointerId))
                    stage.setPointerCapture(e.pointerId);
                go(drag.idx + steps);
            }
        } else if (drag.what === 'pan') {
            st.view.x = drag.view.x + dx;
            st.view.y = drag.view.y + dy;
            applyView();
        } else if (drag.what === 'wl') {
            // right: wider, down: higher level (brighter to darker)
            const k = Math.max(WL_MIN_STEP, drag.win.width * WL_PER_PX);
            const width = Math.max(1, Math.round(drag.win.width + dx * k));
            const center = Math.round(drag.win.center + dy * k);
            if (!st.win || st.win.width !== width ||
                st.win.center !== center) {
                st.win = { name: null, center, width };
                controls();
                request();
            }
        } else if (drag.what === 'measure' && st.measure) {
            st.measure.b = toImage(e.clientX, e.clientY);
            marksDraw();
            measured();
        }
    });
    const end = (e) => {
        pts.delete(e.pointerId);
        if (pinch && pts.size < 2)
            pinch = null;
        if (!drag || e.pointerId !== drag.id)
            return;
        if (drag.what === 'probe' && !drag.moved && e.type === 'pointerup')
            probeAt(toImage(e.clientX, e.clientY));
        if (drag.what === 'measure' && st.measure && !st.measure.b)
            st.measure = null;      // a tap is no length
        drag = null;
    };
    stage.addEventListener('pointerup', end);
    stage.addEventListener('pointercancel', end);
    stage.addEventListener('dragstart', (e) => e.preventDefault());
    stage.addEventListener('contextmenu', (e) => e.preventDefault());
    const onResize = () => marksDraw();
    window.addEventListener('resize', onResize);

    window.addEventListener('online', retry);
    refresh();
    return {
        el,
        refresh,
        current,
        show: showImage,
        retry,
        destroy() {
            st.dead = true;
            clearTimeout(st.retryTimer);
            clearInterval(st.cine);
            clearTimeout(st.sharpen);
            window.removeEventListener('online', retry);
            window.removeEventListener('resize', onResize);
            if (st.url)
                URL.revokeObjectURL(st.url);
        },
    };
}
