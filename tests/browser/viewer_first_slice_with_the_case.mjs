// viewer_first_slice_with_the_case — issue 9: on a slow link the first
// image must not wait for the series' QIDO round trips.  The case answer
// names the first image (first_image), so through a link with 300 ms each
// way the first slice's rendered request leaves before the series'
// instance list is answered, at draft quality; the full-quality image of
// the same slice then replaces it, and the overlay describes each.
import { test, check, eq, until, ct12Case, requestLog, log } from
    './lib.mjs';

test(async (t) => {
    const { srv, st } = await ct12Case(t, {
        case_id: 'first-1', question: 'Bleed?', priority: 'stat',
        specialty: 'neurology',
    });
    const link = await t.link(srv, ['--delay', '300ms']);
    const ctx = await t.context();
    const seen = requestLog(ctx);
    const page = await t.page(ctx, { url: link.url }, 'demo-neuro', 30000);
    // every image the viewer puts on screen: [index, quality, overlay]
    await page.evaluate(() => {
        window.shownLog = [];
        new MutationObserver(() => {
            const img = document.querySelector('.viewer img.slice');
            const ov = document.querySelector('.viewer .overlay');
            if (img && img.getAttribute('src'))
                window.shownLog.push([img.dataset.index,
                                      img.dataset.quality,
                                      ov && ov.textContent,
                                      img.dataset.url]);
        }).observe(document.body, { childList: true, subtree: true,
                                    characterData: true });
    });
    await page.click('li[data-case-id="first-1"] a');
    await until(() => page.evaluate(() => {
        const img = document.querySelector('.viewer img.slice');
        return img && img.getAttribute('src') &&
            img.dataset.quality === 'full';
    }), 'the full-quality slice shows', 30000);

    const instQ = `/dicomweb/studies/${st.uid}/series/`;
    const at = (what, test) => seen.findIndex(([w, u]) => w === what &&
                                              test(u));
    const isInst = (u) => u.includes(instQ) && u.endsWith('/instances');
    const isSlice = (u) => u.includes('/rendered?');
    log('order: slice start', at('start', isSlice), 'instances end',
        at('end', isInst));
    check(at('start', isSlice) >= 0 && at('end', isInst) >= 0,
          'the viewer asked for a slice and the instance list');
    check(at('start', isSlice) < at('end', isInst),
          'the first slice left before the instance list was answered');
    const first = seen.find(([w, u]) => w === 'start' && isSlice(u))[1];
    check(/[?&]quality=50(&|$)/.test(first), 'the first slice is a draft');

    const shown = await page.evaluate(() => window.shownLog);
    log('shown:', JSON.stringify(shown.map((x) => x.slice(0, 3))));
    const draft = shown.find((x) => x[1] === '50');
    check(draft, 'the draft was on screen before the full-quality image');
    eq(['7', '50', '7/12 · Default window'], draft.slice(0, 3),
       'the draft: the middle slice, and the overlay says so');
    const full = shown[shown.length - 1];
    eq(['7', 'full', '7/12 · Default window'], full.slice(0, 3),
       'then the same slice at full quality');
    const sop = (u) => u.split('/instances/')[1].split('/')[0];
    eq(sop(draft[3]), sop(full[3]), 'the draft was the same instance');
    eq('Slice 7 of 12', await page.textContent('.viewer .slice-count'),
       'the slider is on the middle slice');
    eq('', await page.textContent('.viewer .overlay-pos').then(
        (x) => x.includes('Low quality') ? x : ''),
       'the low-quality note went with the draft');
});
