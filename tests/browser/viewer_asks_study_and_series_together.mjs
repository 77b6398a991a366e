// viewer_asks_study_and_series_together — on a slow link every round trip
// the case page waits for delays the first image (issue 9's benchmark,
// bench/phone.mjs: 0.8 s each at 400 ms one way), so the viewer asks for
// the study's description and its series at once: through a link with
// 300 ms each way, the series QIDO leaves before the study QIDO's answer
// has come back, and the first slice then shows.
import { test, check, until, ct12Case, requestLog, log } from './lib.mjs';

test(async (t) => {
    const { srv, st } = await ct12Case(t, {
        case_id: 'together-1', question: 'Bleed?', priority: 'stat',
        specialty: 'neurology',
    });
    const link = await t.link(srv, ['--delay', '300ms']);
    const ctx = await t.context();
    const seen = requestLog(ctx);
    const page = await t.page(ctx, { url: link.url }, 'demo-neuro', 30000);
    await page.click('li[data-case-id="together-1"] a');
    await until(() => page.evaluate(() => {
        const img = document.querySelector('.viewer img.slice');
        return img && img.getAttribute('src') && img.dataset.index === '7';
    }), 'the middle slice shows', 30000);
    const studyQ = `/dicomweb/studies?StudyInstanceUID=${st.uid}`;
    const seriesQ = `/dicomweb/studies/${st.uid}/series`;
    const at = (what, url) => seen.findIndex(([w, u]) => w === what &&
                                             u.endsWith(url));
    log('order:', at('start', studyQ), at('start', seriesQ),
        at('end', studyQ));
    check(at('start', studyQ) >= 0 && at('start', seriesQ) >= 0,
          'the viewer asked for the study and its series');
    check(at('start', seriesQ) < at('end', studyQ),
          'the series QIDO left before the study QIDO was answered');
});
