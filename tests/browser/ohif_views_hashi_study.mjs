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
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, check, study, until, log } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.join(HERE, 'node_modules/@ohif/app/dist');

const TYPES = {
    '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
    '.json': 'application/json', '.wasm': 'application/wasm',
    '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon',
    '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf',
};

// OHIF's dist/ with our app-config.js (appConfig() gives its text);
// other paths are the single-page app's routes, answered with index.html.
function staticServer(appConfig) {
    const srv = http.createServer((req, res) => {
        const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
        if (p === '/app-config.js') {
            res.writeHead(200, { 'Content-Type': 'text/javascript' });
            res.end(appConfig());
            return;
        }
        let f = path.join(DIST, path.normalize(p));
        if (!f.startsWith(DIST) || !fs.existsSync(f) ||
            fs.statSync(f).isDirectory())
            f = path.join(DIST, 'index.html');
        res.writeHead(200, { 'Content-Type':
            TYPES[path.extname(f)] || 'application/octet-stream' });
        fs.createReadStream(f).pipe(res);
    });
    return new Promise((resolve) => {
        srv.listen(0, '127.0.0.1', () => resolve(srv));
    });
}

function appConfig(root) {
    const cfg = {
        routerBasename: '/',
        extensions: [],
        modes: [],
        showStudyList: true,
        maxNumberOfWebWorkers: 2,
        showWarningMessageForCrossOrigin: false,
        showCPUFallbackMessage: false,
        defaultDataSourceName: 'hashi',
        investigationalUseDialog: { option: 'never' },
        dataSources: [{
            namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
            sourceName: 'hashi',
            configuration: {
                friendlyName: 'Hashi', name: 'hashi',
                qidoRoot: root, wadoRoot: root, wadoUriRoot: root,
                imageRendering: 'wadors', thumbnailRendering: 'wadors',
                enableStudyLazyLoad: true, supportsFuzzyMatching: false,
                supportsWildcard: true, qidoSupportsIncludeField: true,
                staticWado: false, singlepart: 'bulkdata,video',
                bulkDataURI: { enabled: true },
                omitQuotationForMultipartRequest: true,
            },
        }],
    };
    return `window.config = ${JSON.stringify(cfg, null, 1)};\n`;
}

test(async (t) => {
    check(fs.existsSync(path.join(DIST, 'index.html')),
          `${DIST} missing: run sh scripts/deps.sh --test`);
    // The viewer's origin first: Hashi must know it when it starts.
    let config = '';
    const st = await staticServer(() => config);
    const url = `http://127.0.0.1:${st.address().port}`;
    const srv = await t.server(['--origin', url]);
    const root = `${srv.url}/dicomweb`;
    config = appConfig(root);

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
    const stats = await until(() => page.evaluate(() => {
        for (const c of document.querySelectorAll('canvas')) {
            if (c.width < 64 || c.height < 64)
                continue;
            let d;
            try {
                d = c.getContext('2d').getImageData(0, 0, c.width,
                                                    c.height).data;
            } catch (err) {
                continue;
            }
            let lit = 0, max = 0;
            const levels = new Set();
            for (let i = 0; i < d.length; i += 4) {
                const v = d[i] + d[i + 1] + d[i + 2];
                if (v > 30)
                    lit++;
                if (v > max)
                    max = v;
                levels.add(d[i]);
            }
            if (lit > 1000 && levels.size > 16)
                return { w: c.width, h: c.height, lit, levels: levels.size };
        }
        return null;
    }), 'OHIF draws the first image (a canvas with real pixels)', 60000);
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
