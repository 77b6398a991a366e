// The requester's inbox says how the clinic's edge gateway is doing: after
// a gateway.status, "Gateway gw1 last seen … , 12 waiting" (and its last
// error, shown as text); a status over a minute old is marked stale.  A
// specialist's inbox has no gateway line (the route is the clinic's).

import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { test, check, until, seen, log } from './lib.mjs';

test(async (t) => {
    const srv = await t.server();
    const gw = srv.gatewayAdd('Demo Rural Clinic', 'gw1');
    srv.v1(gw, [{ type: 'gateway.status', waiting: 12, in_flight: 1,
                  done: 340, failed: 0, bytes_waiting: 6291456,
                  rate_bps: 262144, last_error: '<b>link</b> down' }]);

    const ctx = await t.context({ viewport: { width: 360, height: 740 } });
    const page = await t.page(ctx, srv, 'demo-requester');
    const line = page.locator('ul.gateways li.gateway');
    await seen(line, 'the gateway line');
    const text = await line.textContent();
    check(/^Gateway gw1 last seen \d\d:\d\d \(just now\), 12 waiting, 1 sending · last error: <b>link<\/b> down$/
          .test(text), `the gateway line: ${JSON.stringify(text)}`);
    check(!(await line.getAttribute('class')).includes('stale'),
          'a fresh status is not stale');
    check(await page.evaluate(() =>
        document.documentElement.scrollWidth <= window.innerWidth),
          'no horizontal scrolling at 360 px');

    // over a minute old: stale
    execFileSync('sqlite3', [path.join(srv.data, 'hashi.db'),
        'UPDATE gateway_status SET last_seen = last_seen - 120000']);
    await page.reload();
    await until(async () => (await line.textContent())
                .includes('stale: not heard from for over a minute'),
                'the stale line');
    check((await line.getAttribute('class')).includes('stale'),
          'the stale class');

    const neuro = await t.page(await t.context(), srv, 'demo-neuro');
    await seen(neuro.locator('h1'), 'the specialist inbox');
    check(await neuro.locator('ul.gateways li').count() === 0,
          'no gateway line for a specialist');
    log('gateway line, stale after a minute');
});
