// push_notification_page_closed — the specialist's phone, end to end but
// for the real push service: the page registers its service worker and a
// Web Push subscription whose keys the test holds (push_emulator.py's:
// headless Chromium cannot reach a real push service), pointed at the
// emulator; the app opens offline and shows the inbox it last knew; the
// page is closed; a STAT case makes hashi-server push a message that the
// emulator decrypts (case id, priority stat, Urgency high, valid VAPID);
// handed to the service worker with DevTools' ServiceWorker.
// deliverPushMessage, it becomes a notification for that case.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test, eq, until, log, ROOT, CHROMIUM_ARGS, freePort }
    from './lib.mjs';

// Chromium refuses a service worker script from an origin whose
// certificate it does not trust, whatever the context's ignoreHTTPSErrors
// says: this test's browser trusts the test server's self-signed one.
CHROMIUM_ARGS.push('--ignore-certificate-errors');

// The emulator over TLS on loopback, its own certificate for 127.0.0.1.
async function emulator(tmp) {
    const dir = path.join(tmp, 'push');
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
        'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj',
        '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
        '-keyout', path.join(dir, 'key.pem'), '-out',
        path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const port = await freePort();
    const e = {
        url: `https://127.0.0.1:${port}`,
        ca: path.join(dir, 'cert.pem'),
        log: path.join(dir, 'received.jsonl'),
        keysFile: path.join(dir, 'keys.json'),
    };
    fs.writeFileSync(e.log, '');
    const out = fs.openSync(path.join(dir, 'emulator.log'), 'a');
    e.proc = spawn('/usr/bin/python3', [
        path.join(ROOT, 'tests/integration/push_emulator.py'), '--port',
        String(port), '--cert', e.ca, '--key', path.join(dir, 'key.pem'),
        '--keys', e.keysFile, '--log', e.log], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    await until(() => fs.readFileSync(path.join(dir, 'emulator.log'), 'utf8')
        .includes('push emulator on'), 'push emulator started');
    e.keys = JSON.parse(fs.readFileSync(e.keysFile, 'utf8'));
    e.received = () => fs.readFileSync(e.log, 'utf8').split('\n')
        .filter((l) => l.trim()).map((l) => JSON.parse(l));
    return e;
}

test(async (t) => {
    const emu = await emulator(t.tmp);
    try {
        const srv = await t.server(['--push-ca', emu.ca,
                                    '--push-allow', '127.0.0.1']);
        const req = await srv.login('demo-requester');
        const ctx = await t.context();
        await ctx.grantPermissions(['notifications'], { origin: srv.url });
        const page = await t.page(ctx, srv, 'demo-neuro');

        // Installable: the manifest is linked and served; the worker runs.
        const man = await page.evaluate(async () => {
            const l = document.querySelector('link[rel=manifest]');
            const r = await fetch(l.href);
            return { status: r.status, json: await r.json() };
        });
        eq(200, man.status, 'manifest status');
        eq(['standalone', '/#/inbox'], [man.json.display, man.json.start_url],
           'manifest display and start_url');
        await until(() => page.evaluate(async () =>
            !!(await navigator.serviceWorker.ready).active &&
            !!navigator.serviceWorker.controller),
                    'service worker active and controlling the page');

        // The device's subscription: the emulator's keys, its endpoint.
        const endpoint = `${emu.url}/push/neuro-phone`;
        const st = await page.evaluate(async (sub) => {
            const r = await fetch('/api/push/subscriptions', {
                method: 'POST', body: JSON.stringify(sub),
                headers: { 'Content-Type': 'application/json' } });
            return r.status;
        }, { endpoint, keys: { p256dh: emu.keys.p256dh,
                               auth: emu.keys.auth } });
        eq(201, st, 'subscription stored');

        // The offline shell shows the inbox it last knew.
        const known = await srv.createCase(req, {
            case_id: 'known-before-offline', question: 'Seen before?',
            priority: 'routine', specialty: 'neurology' });
        await until(() => page.locator(
            `a[href="#/case/${known.case_id}"]`).count(),
                    'the routine case in the live inbox');
        await page.reload();                     // the worker keeps the answers
        await until(() => page.locator(
            `a[href="#/case/${known.case_id}"]`).count(), 'inbox after reload');
        // No network at all: the browser offline and the server stopped
        // (so nothing can come from it, whatever the worker's network).
        await ctx.setOffline(true);
        await srv.stop();
        await until(() => srv.exited, 'server stopped');
        await page.reload();
        await until(() => page.locator(
            `a[href="#/case/${known.case_id}"]`).count(),
                    'offline: the app opens and lists the case it knew');
        await page.close();
        await ctx.setOffline(false);
        await srv.spawn();

        // A STAT case with the page closed: the push service gets it.
        const c = await srv.createCase(req, {
            case_id: 'stat-page-closed', question: 'Bleed?',
            priority: 'stat', specialty: 'neurology' });
        const got = await until(() => emu.received().find((m) =>
            (m.payload || '').includes(c.case_id)), 'push at the emulator');
        eq([true, null, 'high', endpoint.slice(emu.url.length)],
           [got.vapid_ok, got.decrypt_error, got.urgency, got.path],
           'VAPID valid, decrypted, urgent, to the device\'s endpoint');
        eq({ kind: 'case.new', case_id: c.case_id, priority: 'stat' },
           JSON.parse(got.payload), 'decrypted payload');

        // The message reaches the worker (DevTools) and is shown.
        const p2 = await ctx.newPage();
        const cdp = await ctx.newCDPSession(p2);
        const regs = [];
        cdp.on('ServiceWorker.workerRegistrationUpdated',
               (e) => regs.push(...e.registrations));
        await cdp.send('ServiceWorker.enable');
        const reg = await until(() => regs.find((r) => !r.isDeleted &&
            r.scopeURL.startsWith(srv.url)), 'the worker\'s registration');
        await cdp.send('ServiceWorker.deliverPushMessage', {
            origin: srv.url, registrationId: reg.registrationId,
            data: got.payload });
        await p2.goto(`${srv.url}/`);
        const shown = await until(() => p2.evaluate(async (id) => {
            const r = await navigator.serviceWorker.ready;
            const ns = await r.getNotifications({ tag: `case-${id}` });
            return ns.length ? ns.map((n) => ({ title: n.title, body: n.body,
                                                data: n.data })) : null;
        }, c.case_id), 'a notification for the STAT case');
        eq([{ title: 'STAT · New case', body: `Case ${c.case_id}`,
              data: { case_id: c.case_id, kind: 'case.new',
                      priority: 'stat' } }], shown, 'the notification');
        log('push decrypted by the emulator and shown by the worker');
    } finally {
        emu.proc.kill('SIGTERM');
    }
});
