// The README's quick tour on the demo data `make run` seeds (hashi-server
// demo): demo-neuro's inbox opens on the STAT case demo-stat-head-ct with
// 30/30 images; its page says when it escalates and opens the viewer on
// the middle slice, 16 of 30;
// the answered routine case shows its answer, its three messages with
// "Read by" receipts, and "Show the image this points at" takes the
// viewer to slice 17 of 30 in the brain window (W 80 L 40), a real
// rendered slice.

import { test, check, eq, until, seen } from './lib.mjs';

test(async (t) => {
    const srv = await t.server({ demo: true });
    const page = await t.page(await t.context(), srv, 'demo-neuro');

    // Step 2: the inbox, STAT on top.
    const first = page.locator('ul.cases li.case-item').first();
    await seen(first, 'the first inbox row');
    eq('demo-stat-head-ct', await first.getAttribute('data-case-id'),
       'the case on top of the inbox');
    eq('30/30 images', await first.locator('.images-n').textContent(),
       'its images');
    await first.locator('a.case-link').click();
    await until(async () => (await page.textContent('main'))
                .includes('if unclaimed'), 'the escalation deadline shown');
    const overlay = page.locator('.overlay');
    await until(async () => (await overlay.textContent())
                .startsWith('16/30'), 'the viewer on the middle slice');

    // Step 3: the answered routine case, its chat and key image.
    await page.goto(`${srv.url}/#/case/demo-routine-headache`);
    await until(async () => (await page.textContent('main'))
                .includes('Small chronic lacunar infarct'), 'the answer');
    const msgs = page.locator('li[data-message-id]');
    await until(async () => (await msgs.count()) === 3, 'three messages');
    eq('Read by demo-requester', await page.locator(
        'li[data-message-id="demo-msg-1"] .receipt').textContent(),
       "the receipt of demo-neuro's key-image message");
    await page.locator('li[data-message-id="demo-msg-1"] button',
                       { hasText: 'Show the image this points at' }).click();
    await until(async () => (await overlay.textContent())
                .startsWith('17/30') && (await overlay.textContent())
                .includes('W 80 L 40'), 'the key image: slice 17, brain');
    const pic = page.locator('img.slice');
    await until(async () => (await pic.evaluate((i) => i.complete &&
                i.naturalWidth)) > 0 &&
                (await pic.getAttribute('data-window')) === 'brain',
                'the key slice rendered in the brain window');
    check((await pic.evaluate((i) => i.naturalWidth)) >= 256,
          'a rendered slice, not an icon');
});
