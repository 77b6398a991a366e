// link_state_honest — the badge says "Live" only while frames flow.
// Behind a link that silently drops every byte (linkemu.py --silent-file:
// nothing is closed, neither end is told), the page stops saying "Live"
// within 2 x its ping interval and says when it last synced; a STAT case
// created meanwhile shows exactly once within 2 s of the link's return,
// with no user action.  The browser's offline event ends "Live" at once,
// and its online event brings it back within 2 s.

import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, log } from './lib.mjs';

const PING_MS = 4000;       // client/web/live.js

const conn = (page) => page.textContent('#conn');

test(async (t) => {
    const srv = await t.server();
    const silent = path.join(t.tmp, 'link.silent');
    const link = await t.link(srv, ['--silent-file', silent]);
    const req = await srv.login('demo-requester');
    const ctx = await t.context();
    const neuro = await t.page(ctx, { url: link.url }, 'demo-neuro');
    await neuro.evaluate(() => { window.__noReload = 1; });

    // The link goes silent.
    fs.writeFileSync(silent, '');
    let t0 = Date.now();
    await until(async () => (await conn(neuro)) !== 'Live',
                '"Live" ends behind a silent link', 2 * PING_MS);
    log(`not live ${Date.now() - t0} ms after the link went silent`);
    check(/^Offline.* · last synced \d\d:\d\d$/.test(await conn(neuro)),
          `the badge says when it last synced: ${await conn(neuro)}`);

    await srv.createCase(req, {
        case_id: 'ls-stat-1', question: 'Sent while the link was dead',
        priority: 'stat', specialty: 'neurology',
    });
    await new Promise((r) => setTimeout(r, 1500));
    eq(0, await neuro.locator('li[data-case-id="ls-stat-1"]').count(),
       'the case cannot show while the link is dead');
    check((await conn(neuro)) !== 'Live', 'still not live while silent');

    // The link comes back.
    fs.unlinkSync(silent);
    t0 = Date.now();
    await until(async () => (await neuro.locator(
        'li[data-case-id="ls-stat-1"]').count()) > 0,
                'the case sent during the cut shows after the link returns',
                2000);
    log(`case shown ${Date.now() - t0} ms after the link came back`);
    eq('Live', await conn(neuro), 'live again');
    await new Promise((r) => setTimeout(r, 1000));
    eq(1, await neuro.locator('li[data-case-id="ls-stat-1"]').count(),
       'the case shows once');

    // The browser says it is offline, then online.
    await ctx.setOffline(true);
    await until(async () => (await conn(neuro)).startsWith('Offline'),
                'offline event: not live', 1000);
    await ctx.setOffline(false);
    t0 = Date.now();
    await until(async () => (await conn(neuro)) === 'Live',
                'online event: live again', 2000);
    log(`live ${Date.now() - t0} ms after the online event`);
    eq(1, await neuro.evaluate(() => window.__noReload), 'no reload');
});
