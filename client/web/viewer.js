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
// createViewer(studyUids) -> { el, refresh(), current(), show(image),
// retry(), destroy() }.  current() is what a chat message can point at.

import { h, fill, qido, dv } from './util.js';

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

export function createViewer(studyUids) {
    const st = {
        series: [],         // {study, uid, modality, desc, number, count}
        cur: null,          // the shown series
        slices: [],
        idx: 0,
        win: null,          // null = the file's own window; else preset/custom
        load: 0,            // the newest load wins
        cache: new Map(),   // series uid -> slices
        wheel: 0,
        dead: false,
        retryMs: RETRY_MS,
        retryTimer: null,
        url: null,          // object URL of the image on screen
    };

    const info = h('div', { class: 'study-info' });
    const seriesBox = h('div', { class: 'series-list', role: 'group',
                                 'aria-label': 'Series' });
    let img = h('img', { class: 'slice', alt: '' });
    const msg = h('p', { class: 'stage-msg', role: 'status' },
                  'Loading images…');
    const overlay = h('div', { class: 'overlay', 'aria-hidden': 'true' });
    const stage = h('div', { class: 'stage', tabindex: '0',
                             'aria-label': 'Image. Arrow keys or swipe ' +
                             'sideways change the slice; keys 0 to 6 ' +
                             'the window.' },
                    img, overlay, msg);
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
    const fullBtn = h('button', { type: 'button', class: 'link-btn full',
                                  onclick: () => fullscreen() },
                      'Full screen');
    const hint = h('p', { class: 'hint muted' },
                   'Slices: wheel, arrow keys, swipe sideways. ' +
                   'Windows: keys 0–6.');
    const el = h('section', { class: 'viewer', 'aria-label': 'Images' },
                 info, seriesBox, stage,
                 h('div', { class: 'slice-row' }, count, fullBtn),
                 sliceBar, presets, hint);

    function say(text) {
        msg.textContent = text;
        msg.hidden = !text;
    }

    function viewport() {
        const w = Math.max(stage.clientWidth, 256) *
            (window.devicePixelRatio || 1);
        const s = Math.min(1024, Math.ceil(w / 128) * 128);
        return `${s},${s}`;
    }

    function urlOf(s) {
        const se = st.cur;
        let u = `/dicomweb/studies/${enc(se.study)}/series/${enc(se.uid)}` +
            `/instances/${enc(s.sop)}`;
        if (s.multi)
            u += `/frames/${s.frame}`;
        u += '/rendered?';
        if (st.win)
            u += `window=${st.win.name ? enc(st.win.name)
                                       : `${st.win.center},${st.win.width}`}&`;
        return u + `viewport=${viewport()}`;
    }

    function controls() {
        const n = st.slices.length;
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

    // Loads the slice asked for and swaps it in; the overlay follows the
    // swap.  keep: a retry (the backoff goes on growing).
    async function show(keep) {
        controls();
        const s = st.slices[st.idx];
        if (!s)
            return;
        clearTimeout(st.retryTimer);
        st.retryTimer = null;
        if (!keep)
            st.retryMs = RETRY_MS;
        const n = st.slices.length, idx = st.idx, win = st.win;
        const my = ++st.load;
        const asked = urlOf(s);
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
            return;
        }
        const url = URL.createObjectURL(blob);
        const pic = new Image();
        pic.className = 'slice';
        pic.alt = `Slice ${idx + 1} of ${n}, ${windowText(win)}`;
        pic.dataset.sop = s.sop;
        pic.dataset.frame = String(s.frame);
        pic.dataset.index = String(idx + 1);
        pic.dataset.url = asked;  // the rendered URL (src is a blob:)
        pic.dataset.window = win
            ? (win.name || `${win.center},${win.width}`) : 'default';
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
            overlay.textContent = `${idx + 1}/${n} · ${windowText(win)}`;
            say('');
            ahead();
        };
        pic.onerror = () => {
            URL.revokeObjectURL(url);
            if (my === st.load)
                say(`Slice ${idx + 1}: ${failure(415).text}.`);
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

    async function slicesFor(se) {
        if (!st.cache.has(se.uid)) {
            const inst = await qido(`/dicomweb/studies/${enc(se.study)}` +
                                    `/series/${enc(se.uid)}/instances`);
            st.cache.set(se.uid, slicesOf(inst));
        }
        return st.cache.get(se.uid);
    }

    async function pick(se, keepSop) {
        st.cur = se;
        st.cache.delete(se.uid);
        const slices = await slicesFor(se);
        if (st.dead || st.cur !== se)
            return;
        const old = keepSop && st.slices[st.idx];
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

    // (Re)reads studies and series; keeps the shown series and slice.
    async function refresh() {
        if (!studyUids.length) {
            fill(el, h('p', { class: 'muted' },
                       'No images are attached to this case.'));
            return;
        }
        const series = [];
        const infos = [];
        for (const study of studyUids) {
            try {
                const s = await qido(`/dicomweb/studies?StudyInstanceUID=` +
                                     `${enc(study)}`);
                if (s[0])
                    infos.push(studyInfo(s[0]));
                for (const o of await qido(`/dicomweb/studies/${enc(study)}` +
                                           '/series'))
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
        fill(seriesBox, st.series.map((s) => h('button', {
            type: 'button', class: 'series', 'data-uid': s.uid,
            'aria-pressed': 'false', onclick: () => pick(s, false),
        }, `${s.modality || '?'} ${s.desc || 'series ' + (s.number || '')}`
           .trim(), h('span', { class: 'muted' }, ` (${s.count})`))));
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
        }
        if (d) {
            e.preventDefault();
            go(st.idx + d);
        }
    });
    let drag = null;
    stage.addEventListener('pointerdown', (e) => {
        if (e.button !== 0)
            return;
        drag = { x: e.clientX, idx: st.idx, id: e.pointerId };
    });
    stage.addEventListener('pointermove', (e) => {
        if (!drag || e.pointerId !== drag.id)
            return;
        const steps = Math.trunc((e.clientX - drag.x) / SWIPE_STEP);
        if (steps) {
            if (!stage.hasPointerCapture(e.pointerId))
                stage.setPointerCapture(e.pointerId);
            go(drag.idx + steps);
        }
    });
    const end = () => { drag = null; };
    stage.addEventListener('pointerup', end);
    stage.addEventListener('pointercancel', end);
    stage.addEventListener('dragstart', (e) => e.preventDefault());

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
            window.removeEventListener('online', retry);
            if (st.url)
                URL.revokeObjectURL(st.url);
        },
    };
}
