// ohif_views_hashi_study: the prebuilt OHIF Viewer v3 (npm @ohif/app,
// its dist/, pinned in package.json), served from a second loopback
// origin by a tiny static server here, with an app-config.js written by
// this test that points its DICOMweb data source at Hashi (WADO-RS image
// loading).  Hashi is started with that origin (--origin), so CORS lets
// the viewer in; OHIF authenticates with a bearer token through its user
// authentication service (the viewer URL's token=).  In headless
// Chromium it opens a Hashi study and draws its first image — the
// canvas is sampled and must not be blank — and its study list lists the
// study.
import fs from 'node:fs';
import path from 'node:path';
import { test, check, study, until, log, OHIF_DIST, ohifServer,
         ohifConfig, ohifCanvasLit } from './lib.mjs';

test(async (t) => {
    check(fs.existsSync(path.join(OHIF_DIST, 'index.html')),
          `${OHIF_DIST} missing: run sh scripts/deps.sh --test`);
    // The viewer's origin first: Hashi must know it when it starts.
    let config = '';
    const st = await ohifServer(() => config);
    const url = `http://127.0.0.1:${st.address().port}`;
    const srv = await t.server(['--origin', url]);
    const root = `${srv.url}/dicomweb`;
    config = ohifConfig(root);

    const s = study('ohif-ct', 3, ['--size', '256', '--seed', '33',
                                   '--patient-id', 'OHIF-1',
                                   '--patient-name', 'Ohif^Viewer']);
    const tok = await srv.login('demo-admin');
    await srv.stow(tok, s.files);

    const ctx = await t.context();
    const page = await ctx.newPage();
    const seen = { frames: 0, metadata: 0, cors: 0 };
    page.on('console', (m) => {
        if (m.type() === 'error')
            log('console:', m.text().slice(0, 300));
    });
    page.on('response', (r) => {
        if (!r.url().startsWith(root))
            return;
        if (r.headers()['access-control-allow-origin'] === url)
            seen.cors++;
        if (r.url().includes('/frames/') && r.status() === 200)
            seen.frames++;
        if (r.url().endsWith('/metadata') && r.status() === 200)
            seen.metadata++;
    });

    await page.goto(`${url}/viewer?StudyInstanceUIDs=${s.uid}&token=${tok}`);
    // The first image drawn: a canvas of the viewport with real pixels.
    const stats = await until(() => page.evaluate(ohifCanvasLit),
        'OHIF draws the first image (a canvas with real pixels)', 60000);
    log('canvas', JSON.stringify(stats), JSON.stringify(seen));
    check(seen.metadata > 0, 'OHIF read the series metadata from Hashi');
    check(seen.frames > 0, 'OHIF read frames from Hashi');
    check(seen.cors > 0, 'Hashi answered OHIF with Allow-Origin');

    // The study list, in the same session (the token is OHIF's now).
    await page.evaluate(() => {
        window.history.pushState({}, '', '/');
        window.dispatchEvent(new PopStateEvent('popstate'));
    });
    // OHIF formats the name "Family, Given".
    await until(() => page.evaluate(() => {
        const t = document.body.innerText;
        return t.includes('Ohif, Viewer') &&
            t.includes('CT HEAD WO CONTRAST (synthetic)');
    }), 'the study list lists the Hashi study', 30000);
    st.close();
});
