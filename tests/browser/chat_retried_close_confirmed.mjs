// chat_retried_close_confirmed — a fresh load of the page (no session)
// logs no console error (GET /api/me answers {"user": null}, not 401); a
// chat message written while the link is down stays in the thread marked
// not sent, with a retry, and once the link is back it is sent again by
// itself and shown once (the server holds it once); "Close case" asks
// first: cancelling keeps the case open, confirming closes it.

import { test, check, eq, until, PASSWORD } from './lib.mjs';

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    await srv.createCase(req, {
        case_id: 'cr-1', question: 'Stroke?', priority: 'urgent',
        specialty: 'neurology',
    });

    // A fresh load, as a browser with no session: not one console error.
    const ctx = await t.context();
    const page = await ctx.newPage();
    const errors = [];
    page.on('console', (m) => {
        if (m.type() === 'error')
            errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    const me = page.waitForResponse((r) => r.url().endsWith('/api/me'));
    await page.goto(`${srv.url}/`);
    eq(200, (await me).status(), 'GET /api/me without a session');
    await page.waitForSelector('#login');
    eq([], errors, 'console errors on a fresh load');
    await page.fill('#login', 'demo-requester');
    await page.fill('#password', PASSWORD);
    await page.click('form.login button[type=submit]');
    await until(() => page.evaluate(() =>
        document.getElementById('conn').textContent === 'Live'), 'live');
    // (Logged in, push.js registers the service worker; Chromium may
    // refuse the worker script over the self-signed test certificate —
    // the certificate's doing, not the page's.)
    eq([], errors.filter((e) => !e.startsWith('An SSL certificate error ' +
                                              'occurred when fetching the ' +
                                              'script')),
       'console errors after logging in');

    await page.click('li[data-case-id="cr-1"] a');
    await page.waitForSelector('#chat-text');

    // Written during a cut: kept, marked, retried when the link is back.
    await ctx.setOffline(true);
    await page.fill('#chat-text', 'Onset 08:40, on apixaban.');
    await page.click('form.chat-form button[type=submit]');
    await page.waitForSelector('li.msg.pending.failed button.retry');
    check((await page.textContent('li.msg.pending')).includes(
        'Onset 08:40'), 'the unsent message stays in the thread');
    eq(0, (await srv.req('GET', '/api/cases/cr-1', { token: req }))
        .json.case.messages.length, 'nothing reached the server');
    await ctx.setOffline(false);
    await until(async () => (await page.locator('li.msg.pending').count())
                === 0, 'sent once the link is back, without a click');
    const mine = page.locator('ol.thread li.msg', { hasText: 'Onset 08:40' });
    eq(1, await mine.count(), 'the message shown once');
    const r = await srv.req('GET', '/api/cases/cr-1', { token: req });
    eq(['Onset 08:40, on apixaban.'],
       r.json.case.messages.map((m) => m.text), 'the server holds it once');

    // Close asks first.
    const status = async () => (await srv.req('GET', '/api/cases/cr-1',
                                              { token: req })).json.case.status;
    await page.click('#close');
    check(await page.isVisible('#close-confirm'), 'close asks to confirm');
    await page.click('#close-cancel');
    check(await page.isVisible('#close') &&
          !(await page.isVisible('#close-confirm')), 'cancel: asked no more');
    eq('new', await status(), 'cancelled: still open');
    await page.click('#close');
    await page.click('#close-confirm');
    await until(async () => (await status()) === 'closed', 'closed');
    await until(async () => (await page.textContent('.case-head .badges'))
                .includes('Closed'), 'the page says closed');
});
