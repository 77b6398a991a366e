// overdue_marked_in_both_inboxes — a STAT case nobody claims by its
// deadline (--due-stat 2) is marked "Overdue since HH:MM" in the
// requester's and in the specialist's inbox, live, with the time of the
// server's overdue_since (the first escalation, 2 s after it was sent);
// the case page says so too and no longer says "escalates at" a time that
// has passed.  Claiming it removes the marker.

import { test, check, eq, until, log } from './lib.mjs';

const pad = (n) => String(n).padStart(2, '0');
const hhmm = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
};

const badge = (page, id) => page.evaluate((id) => {
    const b = document.querySelector(`li[data-case-id="${id}"] .overdue`);
    return b ? b.textContent : null;
}, id);

test(async (t) => {
    const srv = await t.server(['--due-stat', '2']);
    const req = await srv.login('demo-requester');
    const rPage = await t.page(await t.context(), srv, 'demo-requester');
    const nPage = await t.page(await t.context(), srv, 'demo-neuro');
    const c = await srv.createCase(req, {
        case_id: 'od-stat', question: 'Basilar occlusion?',
        priority: 'stat', specialty: 'neurology',
    });
    for (const p of [rPage, nPage])
        await until(async () => (await p.locator(
            'li[data-case-id="od-stat"]').count()) === 1, 'case listed');
    eq(null, await badge(nPage, 'od-stat'), 'not overdue before 2 s');

    const since = await until(async () => {
        const r = await srv.req('GET', '/api/cases/od-stat', { token: req });
        return r.json.case.overdue_since;
    }, 'the server marks the case overdue', 10000);
    const late = since - c.created_at;
    check(late >= 2000 && late < 5000,
          `overdue_since 2 s after creation: ${late} ms`);
    const want = `Overdue since ${hhmm(since)}`;
    for (const [who, p] of [['requester', rPage], ['specialist', nPage]]) {
        await until(async () => (await badge(p, 'od-stat')) === want,
                    `${who}'s inbox says "${want}"`, 10000);
        log(`${who}: ${await badge(p, 'od-stat')}`);
    }
    await nPage.click('li[data-case-id="od-stat"] a');
    await until(async () => (await nPage.textContent('.case-head'))
                .includes(`overdue since ${hhmm(since)}`),
                'the case page says overdue since');
    const head = await nPage.textContent('.case-head');
    const m = head.match(/escalates(?: again)? at (\d\d:\d\d)/);
    check(!m || m[1] >= hhmm(Date.now()),
          `no deadline in the past: ${head}`);
    await nPage.click('#claim');
    await until(async () => (await nPage.locator('.case-head .overdue')
                             .count()) === 0, 'claimed: no longer overdue');
    await rPage.bringToFront();
    await until(async () => (await badge(rPage, 'od-stat')) === null,
                'the requester\'s inbox drops the marker once claimed');
});
