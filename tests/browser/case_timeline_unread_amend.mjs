// case_timeline_unread_amend — the case page's timeline shows each step
// with its time as it happens (sent, delivered to the specialist's page,
// opened, claimed, answered, amended), the same steps and times as the
// server's case.get; the specialist's inbox marks the new case unread
// with a running countdown to its escalation, clears the marker once the
// case was opened and marks it again when the requester writes; the
// specialist amends the answer and the requester sees "amended at" with
// the previous answer, live.

import { test, check, eq, until, log } from './lib.mjs';

const pad = (n) => String(n).padStart(2, '0');
const hhmm = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
};

// The timeline as the page shows it: [[step, time text]...].
const shown = (page) => page.evaluate(() =>
    [...document.querySelectorAll('ol.timeline li')].map((li) =>
        [li.dataset.step, li.querySelector('time').textContent]));
const steps = async (page) => (await shown(page)).map((s) => s[0]);
const unread = (page, id) => page.evaluate((id) => !!document.querySelector(
    `li[data-case-id="${id}"] .unread-dot`), id);

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    const rq = await t.page(await t.context(), srv, 'demo-requester');
    const neuro = await t.page(await t.context(), srv, 'demo-neuro');
    await srv.createCase(req, {
        case_id: 'tl-1', question: 'Bleed?', priority: 'stat',
        specialty: 'neurology',
    });

    // The specialist's inbox: unread, counting down.
    await until(() => unread(neuro, 'tl-1'), 'new case unread in the inbox');
    const due = () => neuro.textContent('li[data-case-id="tl-1"] .badge.due');
    const d0 = await due();
    check(/escalates in \d+:\d\d/.test(d0), `countdown shown: ${d0}`);
    await until(async () => (await due()) !== d0, 'the countdown runs');

    await rq.click('li[data-case-id="tl-1"] a');
    await until(async () => (await steps(rq)).join() === 'sent,delivered',
                'requester: sent, then delivered to the neurologist\'s page',
                15000);
    check((await rq.textContent('ol.timeline')).includes(
        'Delivered to demo-neuro'), 'delivered names the specialist');

    await neuro.click('li[data-case-id="tl-1"] a');
    await neuro.waitForSelector('#claim');
    await until(async () => (await steps(rq)).join() ===
                'sent,delivered,opened', 'requester sees "opened"', 15000);
    await neuro.click('#claim');
    await until(async () => (await steps(rq)).join() ===
                'sent,delivered,opened,claimed', 'claimed, live');
    await neuro.fill('#ans-impression', 'No bleed.');
    await neuro.click('form.answer-form button[type=submit]');
    await until(async () => (await steps(rq)).join() ===
                'sent,delivered,opened,claimed,answered', 'answered, live');

    // Amended: kept and shown.
    await neuro.click('#amend');
    await neuro.fill('#ans-impression', 'Small right frontal bleed.');
    await neuro.click('form.answer-form button[type=submit]');
    await until(async () => (await steps(rq)).join() ===
                'sent,delivered,opened,claimed,answered,amended',
                'amended, live');
    const ans = await rq.textContent('section.answer');
    check(ans.includes('Small right frontal bleed.') &&
          ans.includes('amended at'), `the amended answer: ${ans}`);
    await rq.click('section.answer details.revisions summary');
    check((await rq.textContent('section.answer details.revisions'))
          .includes('No bleed.'), 'the previous answer is visible');

    // The same steps and times as the server's.
    const r = await srv.req('GET', '/api/cases/tl-1', { token: req });
    const want = r.json.case.timeline.map((s) => [s.step, hhmm(s.at)]);
    eq(want, await shown(rq), 'the page\'s timeline = the server\'s');
    eq('No bleed.', r.json.case.answer.revisions[0].impression,
       'the server kept the first answer');
    log(JSON.stringify(r.json.case.timeline));

    // Opened: no longer unread; the requester writes: unread again.
    await neuro.click('a.back');
    await until(async () => (await neuro.locator(
        'li[data-case-id="tl-1"]').count()) === 1, 'back in the inbox');
    check(!(await unread(neuro, 'tl-1')), 'opened: not unread');
    check(await neuro.isVisible('#h-done') &&
          (await neuro.textContent('#h-done')).startsWith('Answered'),
          'listed under Answered');
    await srv.post(req, '/api/cases/tl-1/messages',
                   { message_id: 'tl-m1', text: 'Thanks — and the CTA?' });
    await until(() => unread(neuro, 'tl-1'), 'a new message: unread again');
});
