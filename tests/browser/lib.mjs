// lib.mjs — what every browser test imports: a private hashi-server
// (fresh data dir with the demo clinics and users and a neurology on-call
// list, free ports — as tests/integration/lib.sh does it), REST and STOW
// helpers over HTTPS with the server's own certificate, a cached
// generated study, Chromium through playwright-core, and assertions that
// say what was expected and what came.
//
//   import { test, check, eq } from './lib.mjs';
//   test(async (t) => {
//       const srv = await t.server();
//       const tok = await srv.login('demo-requester');
//       const page = await t.page(await t.context(), srv, 'demo-neuro');
//       ...
//   });
//
// test() gives the whole test a time limit, stops the server and the
// browser at the end, removes the scratch directory unless the test failed
// (then it prints where it is, with the last lines of the server log), and
// exits 0 on success, 1 on failure (tests/run.sh counts exit 0 as a pass).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = process.env.HASHI_ROOT || path.resolve(HERE, '../..');
const BUILD = process.env.HASHI_BUILD || path.join(ROOT, 'build');
const TOOLS = process.env.HASHI_TOOLS || path.join(ROOT, 'tests/tools');
const TESTDATA = process.env.HASHI_TESTDATA || path.join(ROOT, 'tests/data');
const SERVER = path.join(BUILD, 'hashi-server');
const PY = '/usr/bin/python3';
export const PASSWORD = 'demo-password';
const NAME = path.basename(process.argv[1] || 'browser', '.mjs');

export const CHROMIUM_ARGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
];

export function log(...a) {
    console.log(`[${NAME}]`, ...a);
}

// The three screens the layout is tested at (a phone, the phone turned, a
// desktop), and where their screenshots are kept.
export const SCREENS = [
    { name: '360x740', viewport: { width: 360, height: 740 }, touch: true },
    { name: '740x360', viewport: { width: 740, height: 360 }, touch: true },
    { name: '1280x800', viewport: { width: 1280, height: 800 } },
];
export const SHOTS = path.join(BUILD, 'test-logs', 'browser');

// ---- assertions ------------------------------------------------------------

export class Failure extends Error {}

export function check(cond, what) {
    if (!cond)
        throw new Failure(what);
}

export function eq(want, got, what) {
    if (JSON.stringify(want) !== JSON.stringify(got))
        throw new Failure(`${what}: expected ${JSON.stringify(want)}, ` +
                          `got ${JSON.stringify(got)}`);
}

// Polls fn until it returns a truthy value; fails with what after ms (a
// guard against a hang, not a speed limit: tests run three at a time on
// two cores, and Chromium under that load can take seconds to paint).
export async function until(fn, what, ms = 30000) {
    const end = Date.now() + ms;
    let last;
    for (;;) {
        try {
            last = await fn();
            if (last)
                return last;
        } catch (err) {
            last = err.message;
        }
        if (Date.now() > end)
            throw new Failure(`${what} (not within ${ms} ms; last: ` +
                              `${JSON.stringify(last)})`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

// Waits until locator (a Playwright locator) is visible; fails with what.
export async function seen(locator, what, ms = 10000) {
    try {
        await locator.first().waitFor({ timeout: ms });
    } catch (err) {
        throw new Failure(`${what} (not within ${ms} ms)`);
    }
    return locator;
}

// ---- the server ----------------------------------------------------------

export function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.listen(0, '127.0.0.1', () => {
            const p = s.address().port;
            s.close(() => resolve(p));
        });
        s.on('error', reject);
    });
}

function admin(tmp, args, input) {
    try {
        return execFileSync(SERVER, args, { input, encoding: 'utf8',
                                           stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
        fs.appendFileSync(path.join(tmp, 'admin.log'),
                          `${args.join(' ')}\n${err.stderr}\n`);
        throw new Failure(`hashi-server ${args[0]} failed: ` +
                          `${String(err.stderr).trim().slice(-300)}`);
    }
}

class Server {
    constructor(tmp, args = []) {
        this.tmp = tmp;
        this.args = args;           // extra hashi-server flags
        this.data = path.join(tmp, 'data');
        this.proc = null;
    }

    // demo: seed the demo consults too (hashi-server demo, as make run).
    async start({ demo = false } = {}) {
        check(fs.existsSync(SERVER),
              `${SERVER} not built (make build/hashi-server)`);
        admin(this.tmp, ['init', '--data', this.data]);
        admin(this.tmp, ['demo', '--data', this.data,
                         ...(demo ? [] : ['--accounts-only'])]);
        admin(this.tmp, ['oncall', 'set', '--data', this.data,
                         '--specialty', 'neurology', 'demo-neuro',
                         'demo-neuro2']);
        this.ca = fs.readFileSync(path.join(this.data, 'tls/cert.pem'));
        this.port = await freePort();
        this.dport = await freePort();
        this.url = `https://127.0.0.1:${this.port}`;
        await this.spawn();
    }

    async spawn() {
        const out = fs.openSync(path.join(this.tmp, 'server.log'), 'a');
        this.proc = spawn(SERVER, ['--data', this.data, '--listen',
                                   `127.0.0.1:${this.port}`, '--dicom',
                                   `127.0.0.1:${this.dport}`, '--ae-title',
                                   'HASHI', ...this.args],
                          { stdio: ['ignore', out, out] });
        fs.closeSync(out);
        this.exited = false;
        this.proc.on('exit', () => { this.exited = true; });
        await until(async () => {
            check(!this.exited, 'hashi-server exited during start-up');
            return (await this.req('GET', '/healthz')).status === 200;
        }, 'hashi-server /healthz 200', 20000);
    }

    // Stops and starts again on the same ports and data (URLs stay valid).
    async restart() {
        await this.stop();
        await this.spawn();
    }

    async stop() {
        if (!this.proc || this.exited)
            return;
        this.proc.kill('SIGTERM');
        const t = Date.now();
        while (!this.exited && Date.now() - t < 10000)
            await new Promise((r) => setTimeout(r, 100));
        if (!this.exited)
            this.proc.kill('SIGKILL');
    }

    // req(method, path, {token, json, body, headers}) ->
    //   {status, headers, text, json}
    req(method, p, o = {}) {
        const headers = Object.assign({}, o.headers);
        let body = o.body;
        if (o.json !== undefined) {
            body = Buffer.from(JSON.stringify(o.json));
            headers['Content-Type'] = 'application/json';
        }
        if (o.token)
            headers.Authorization = `Bearer ${o.token}`;
        if (body)
            headers['Content-Length'] = String(body.length);
        return new Promise((resolve, reject) => {
            const r = https.request(`${this.url}${p}`, {
                method, headers, ca: this.ca,
                checkServerIdentity: () => undefined, timeout: 60000,
            }, (res) => {
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('end', () => {
                    const text = Buffer.concat(chunks).toString('utf8');
                    let json = null;
                    try {
                        json = JSON.parse(text);
                    } catch (err) {
                        json = null;
                    }
                    resolve({ status: res.statusCode, headers: res.headers,
                              text, json });
                });
            });
            r.on('error', reject);
            r.on('timeout', () => r.destroy(new Error('timeout')));
            if (body)
                r.write(body);
            r.end();
        });
    }

    async login(login) {
        const r = await this.req('POST', '/api/login',
                                 { json: { login, password: PASSWORD } });
        eq(200, r.status, `login ${login} (${r.text.slice(0, 200)})`);
        return r.json.token;
    }

    // STOW-RS of files (as the given user); returns the status.
    async stow(token, files) {
        const b = 'HashiBrowserTestBoundary7';
        const parts = [];
        for (const f of files) {
            parts.push(Buffer.from(`--${b}\r\nContent-Type: ` +
                                   'application/dicom\r\n\r\n'));
            parts.push(fs.readFileSync(f));
            parts.push(Buffer.from('\r\n'));
        }
        parts.push(Buffer.from(`--${b}--\r\n`));
        const r = await this.req('POST', '/dicomweb/studies', {
            token, body: Buffer.concat(parts), headers: {
                'Content-Type': 'multipart/related; ' +
                    `type="application/dicom"; boundary=${b}`,
                Accept: 'application/dicom+json',
            },
        });
        check(r.status === 200 || r.status === 202,
              `STOW of ${files.length} files: status ${r.status} ` +
              `${r.text.slice(0, 300)}`);
        return r.status;
    }

    // POST /api/cases as token's user; returns the Case.
    async createCase(token, fields) {
        const r = await this.req('POST', '/api/cases', { token, json: fields });
        check(r.status === 201 || r.status === 200,
              `create case: ${r.status} ${r.text.slice(0, 300)}`);
        return r.json.case;
    }

    // A gateway of the clinic (hashi-server gateway add); its API token.
    gatewayAdd(clinic, name) {
        return admin(this.tmp, ['gateway', 'add', '--data', this.data,
                                '--clinic', clinic, '--name', name]).trim();
    }

    // hashi.v1 requests on one session as token's user or gateway
    // (tests/integration/uplink.py); each op is a request object, or
    // {upload: FILE, kind, study_uid} for a whole upload.  Returns the
    // answers; a failed reply or upload is a Failure.
    v1(token, ops) {
        const code = [
            'import json, os, sys',
            `sys.path.insert(0, ${JSON.stringify(path.join(ROOT,
                'tests/integration'))})`,
            'from uplink import Session, upload',
            'url, ca, tok, ops = sys.argv[1:5]',
            's = Session(url, ca, tok)',
            'out = []',
            'for i, op in enumerate(json.loads(ops)):',
            '    if "upload" in op:',
            '        extra = {k: v for k, v in op.items() if k != "upload"}',
            '        m = upload(s, "bt-%d-%d" % (os.getpid(), i),',
            '                   open(op["upload"], "rb")',
            '                   .read(), **extra)',
            '    else:',
            '        m = s.req(op)',
            '    out.append(m)',
            '    if m.get("ok") is False or m.get("status") == "conflict":',
            '        sys.exit("refused: %s" % json.dumps(m))',
            'print(json.dumps(out))',
        ].join('\n');
        try {
            return JSON.parse(execFileSync(PY, ['-c', code, this.url,
                path.join(this.data, 'tls/cert.pem'), token,
                JSON.stringify(ops)], { encoding: 'utf8',
                                        stdio: ['ignore', 'pipe', 'pipe'] }));
        } catch (err) {
            throw new Failure(`hashi.v1 ${JSON.stringify(ops).slice(0, 200)}` +
                              `: ${String(err.stderr).trim().slice(-300)}`);
        }
    }

    async post(token, p, json) {
        const r = await this.req('POST', p, { token, json });
        check(r.status >= 200 && r.status < 300,
              `POST ${p}: ${r.status} ${r.text.slice(0, 300)}`);
        return r.json;
    }
}

// ---- studies ----------------------------------------------------------------

// study(name, slices, args): a generated CT study, made once and cached in
// tests/data/studies/NAME by lib.sh's study (its lock lets tests that run
// in parallel share the cache); returns its .dcm files (sorted) and its
// Study Instance UID.
export function study(name, slices, args = []) {
    let dir;
    try {
        dir = execFileSync('sh', ['-c', '. "$0"; study "$@"',
                                  path.join(ROOT, 'tests/integration/lib.sh'),
                                  name, String(slices), ...args],
                           { encoding: 'utf8',
                             stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch (err) {
        throw new Failure(`study ${name}: ${String(err.stderr).trim()}`);
    }
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.dcm'))
        .sort().map((f) => path.join(dir, f));
    check(files.length === slices, `study ${name}: ${files.length} files`);
    const uid = execFileSync(PY, ['-c', 'import sys, pydicom\n' +
        'print(pydicom.dcmread(sys.argv[1], stop_before_pixels=True)' +
        '.StudyInstanceUID)', files[0]], { encoding: 'utf8' }).trim();
    return { dir, files, uid };
}

// The 12-slice CT the consult pages are tested with: one definition, as
// the cache is by name and the name must always mean the same study.
export function ct12() {
    return study('browser-ct12', 12, ['--seed', '12', '--patient-id',
                                      'BROWSER-12', '--patient-name',
                                      'Browser^Twelve']);
}

// ---- a poor link -----------------------------------------------------------

// A linkemu.py in front of srv (args: its flags, e.g. ['--silent-file',
// F]); resolves to {port, url, stop()} once it listens.  The page reaches
// the server through it at url (same host, so the session cookie holds).
export async function linkTo(srv, args, procs) {
    const port = await freePort();
    const p = spawn(PY, [path.join(TOOLS, 'linkemu.py'), '--listen',
                         `127.0.0.1:${port}`, '--target',
                         `127.0.0.1:${srv.port}`, ...args],
                    { stdio: ['ignore', 'ignore', 'pipe'] });
    procs.push(p);
    await new Promise((resolve, reject) => {
        let err = '';
        p.stderr.on('data', (d) => {
            err += d;
            if (err.includes('listening on'))
                resolve();
        });
        p.on('exit', () => reject(new Failure(`linkemu exited: ${err}`)));
    });
    return { port, url: `https://127.0.0.1:${port}`,
             stop: () => p.kill('SIGTERM') };
}

// A server (t.server(flags)) with the 12-slice CT stored by demo-requester
// and a case naming it (fields: the rest of the case); {srv, req, st}.
export async function ct12Case(t, fields, flags) {
    const srv = await t.server(flags);
    const req = await srv.login('demo-requester');
    const st = ct12();
    await srv.stow(req, st.files);
    await srv.createCase(req, Object.assign({ study_uids: [st.uid] },
                                            fields));
    return { srv, req, st };
}

// ---- the browser ---------------------------------------------------------

// Every request of a browser context in order: ['start'|'end', url], so
// a test can prove which request left before which was answered.
export function requestLog(ctx) {
    const seen = [];
    ctx.on('request', (r) => seen.push(['start', r.url()]));
    ctx.on('requestfinished', (r) => seen.push(['end', r.url()]));
    return seen;
}

// ms: how long the login may take to be live (a slow link needs more).
export async function browserPage(context, srv, login, ms = 10000) {
    const page = await context.newPage();
    page.on('pageerror', (e) => log(`page error (${login}):`, e.message));
    page.on('console', (m) => {
        // (a failed resource load is often what a test asks for: a 404)
        if (m.type() === 'error' &&
            !m.text().startsWith('Failed to load resource'))
            log(`console (${login}):`, m.text());
    });
    await page.goto(`${srv.url}/`);
    if (login) {
        await page.fill('#login', login);
        await page.fill('#password', PASSWORD);
        await page.click('form.login button[type=submit]');
        await page.waitForSelector('#nav:not([hidden])', { timeout: ms });
        await until(() => page.evaluate(() =>
            document.getElementById('conn').textContent === 'Live'),
                    `${login}: live connection`, ms);
    }
    return page;
}

// test(fn): runs fn(t) with t.server([extra hashi-server flags], {demo}),
// t.context(opts), t.page(ctx, srv, login), t.link(srv, args), t.tmp;
// cleans up; exits 0/1.
export function test(fn, { timeoutMs = 100000 } = {}) {
    fs.mkdirSync(TESTDATA, { recursive: true });
    const tmp = fs.mkdtempSync(path.join(TESTDATA, `run-${NAME}.`));
    const servers = [];
    const procs = [];
    let browser = null;
    const t0 = Date.now();
    const t = {
        tmp,
        async server(args = [], opts = {}) {
            if (!Array.isArray(args)) { opts = args; args = []; }
            const s = new Server(tmp, args);
            servers.push(s);
            await s.start(opts);
            return s;
        },
        async browser() {
            if (!browser) {
                browser = await chromium.launch({
                    executablePath: '/usr/bin/chromium',
                    args: CHROMIUM_ARGS,
                    headless: true,
                });
            }
            return browser;
        },
        async context(opts = {}) {
            const b = await t.browser();
            return b.newContext(Object.assign({
                ignoreHTTPSErrors: true,
                viewport: { width: 1280, height: 900 },
            }, opts));
        },
        page: browserPage,
        link: (srv, args = []) => linkTo(srv, args, procs),
    };
    const timer = setTimeout(() => {
        console.error(`[${NAME}] FAIL: the test took over ${timeoutMs} ms`);
        finish(1);
    }, timeoutMs);

    let finishing = false;
    async function finish(rc) {
        if (finishing)
            return;
        finishing = true;
        clearTimeout(timer);
        try {
            if (browser)
                await browser.close();
        } catch (err) {
            // already gone
        }
        for (const s of servers)
            await s.stop();
        for (const p of procs)
            p.kill('SIGTERM');
        if (rc === 0) {
            fs.rmSync(tmp, { recursive: true, force: true });
            log(`ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
        } else {
            console.error(`[${NAME}] kept ${tmp} for inspection`);
            const sl = path.join(tmp, 'server.log');
            if (fs.existsSync(sl)) {
                console.error('---- last lines of server.log');
                console.error(fs.readFileSync(sl, 'utf8').split('\n')
                              .slice(-15).join('\n'));
            }
        }
        process.exit(rc);
    }

    fn(t).then(() => finish(0), (err) => {
        console.error(`[${NAME}] FAIL: ${err instanceof Failure
            ? err.message : err.stack || err}`);
        finish(1);
    });
}

// ---- OHIF ------------------------------------------------------------------

// The prebuilt OHIF Viewer v3 (npm @ohif/app, pinned in package.json).
export const OHIF_DIST = path.join(HERE, 'node_modules/@ohif/app/dist');

const TYPES = {
    '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
    '.json': 'application/json', '.wasm': 'application/wasm',
    '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon',
    '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf',
};

// A loopback HTTP server of OHIF's dist/ with our app-config.js
// (appConfig() gives its text); other paths are the single-page app's
// routes, answered with index.html.  Resolves to the http.Server.
export function ohifServer(appConfig) {
    const srv = http.createServer((req, res) => {
        const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
        if (p === '/app-config.js') {
            res.writeHead(200, { 'Content-Type': 'text/javascript' });
            res.end(appConfig());
            return;
        }
        let f = path.join(OHIF_DIST, path.normalize(p));
        if (!f.startsWith(OHIF_DIST) || !fs.existsSync(f) ||
            fs.statSync(f).isDirectory())
            f = path.join(OHIF_DIST, 'index.html');
        res.writeHead(200, { 'Content-Type':
            TYPES[path.extname(f)] || 'application/octet-stream' });
        fs.createReadStream(f).pipe(res);
    });
    return new Promise((resolve) => {
        srv.listen(0, '127.0.0.1', () => resolve(srv));
    });
}

// OHIF's app-config.js with its DICOMweb data source at root (Hashi's
// /dicomweb, WADO-RS image loading); extra: more top-level settings.
export function ohifConfig(root, extra = {}) {
    const cfg = Object.assign({
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
    }, extra);
    return `window.config = ${JSON.stringify(cfg, null, 1)};\n`;
}

// Runs in the page: the first OHIF canvas with real pixels (over 1000 lit,
// over 16 grey levels) as {w, h, lit, levels, sum (a checksum of its
// pixels: it changes with the image)}, or null.
export function ohifCanvasLit() {
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
        let lit = 0, sum = 0;
        const levels = new Set();
        for (let i = 0; i < d.length; i += 4) {
            const v = d[i] + d[i + 1] + d[i + 2];
            if (v > 30)
                lit++;
            sum = (sum * 31 + v) % 1000000007;
            levels.add(d[i]);
        }
        if (lit > 1000 && levels.size > 16)
            return { w: c.width, h: c.height, lit, levels: levels.size,
                     sum };
    }
    return null;
}
