// consult_live — a whole consult in two browsers, live both ways.
//
// The neurologist's inbox shows a STAT case and, without a reload, a
// second one created by REST; the case page's viewer shows a rendered
// slice, a window preset changes the pixels, and wheel, keys, buttons and
// a sideways drag change the slice.  The neurologist claims, writes (with
// a key image) and answers; the requester's page, open on the same case,
// sees the claim, the message and the answer arrive without a reload, and
// its read receipt and its "close" reach the neurologist the same way.

import { test, check, eq, until, seen, ct12, log } from './lib.mjs';

// A 48x48 grey-level thumbnail of the shown slice (same-origin image, so
// the canvas is readable), plus what the <img> says it shows.
async function slicePixels(page) {
    return page.evaluate(() => {
        const img = document.querySelector('.viewer img.slice');
        if (!img || !img.complete || !img.naturalWidth)
            return null;
        const c = document.createElement('canvas');
        c.width = c.height = 48;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0, 48, 48);
        const d = g.getImageData(0, 0, 48, 48).data;
        const px = [];
        for (let i = 0; i < d.length; i += 4)
            px.push(d[i]);
        return { px, src: img.dataset.url, w: img.naturalWidth,
                 sop: img.dataset.sop, win: img.dataset.window };
    });
}

function meanDiff(a, b) {
    let s = 0;
    for (let i = 0; i < a.length; i++)
        s += Math.abs(a[i] - b[i]);
    return s / a.length;
}

async function sliceCount(page) {
    return page.textContent('.viewer .slice-count');
}

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    const st = ct12();
    await srv.stow(req, st.files);
    const case1 = await srv.createCase(req, {
        case_id: 'browser-case-1', question: 'Bleed? Thrombolysis?',
        priority: 'stat', specialty: 'neurology',
        patient: { age: 67, sex: 'F' },
        history: 'Sudden aphasia at 09:10.\nOn warfarin.',
        study_uids: [st.uid],
    });
    eq('new', case1.status, 'case 1 status after create');

    // ---- (1) the neurologist's inbox, live ---------------------------
    const neuroCtx = await t.context();
    const neuro = await t.page(neuroCtx, srv, 'demo-neuro');
    const item1 = neuro.locator('li[data-case-id="browser-case-1"]');
    await seen(item1, 'case 1 in the neurologist inbox');
    const text1 = await item1.textContent();
    check(text1.includes('Bleed? Thrombolysis?'),
          `inbox item shows the question: ${text1}`);
    check(/STAT/.test(text1), `inbox item is marked STAT: ${text1}`);
    check(text1.includes('67 y') && text1.includes('female'),
          `inbox item shows age and sex: ${text1}`);
    eq('STAT', (await item1.locator('.badge.prio-stat').textContent()).trim(),
       'STAT badge');

    await neuro.evaluate(() => { window.__noReload = 1; });
    await srv.createCase(req, {
        case_id: 'browser-case-2', question: 'Second case: weakness left arm',
        priority: 'urgent', specialty: 'neurology',
    });
    const item2 = neuro.locator('li[data-case-id="browser-case-2"]');
    await seen(item2, 'case 2 appears live in the inbox');
    check((await item2.textContent()).includes('weakness left arm'),
          'the second case appears with its question');
    eq(1, await neuro.evaluate(() => window.__noReload),
       'the page was not reloaded for the second case');
    const order = await neuro.$$eval('li[data-case-id]',
                                     (l) => l.map((x) => x.dataset.caseId));
    eq(['browser-case-1', 'browser-case-2'], order,
       'STAT before urgent in the inbox');

    // ---- the case page and the viewer ----------------------------------
    await item1.locator('a').click();
    await neuro.waitForSelector('.case-head h1');
    eq('Bleed? Thrombolysis?', await neuro.textContent('.case-head h1'),
       'case page question');
    check((await neuro.textContent('.case-main')).includes('On warfarin.'),
          'case page shows the history');
    check((await neuro.textContent('.viewer .study-line'))
          .includes('Browser Twelve'), 'viewer shows the patient name');
    const a = await until(() => slicePixels(neuro),
                          'a rendered slice in the viewer', 15000);
    check(a.w > 0, 'rendered slice has naturalWidth > 0');
    check(/\/rendered\?/.test(a.src), `slice src is a rendered URL: ${a.src}`);
    eq('Slice 7 of 12', await sliceCount(neuro), 'the middle slice first');

    // Presets: the URL names the window, the pixels change.
    await neuro.click('.presets button[data-preset="brain"]');
    const brain = await until(async () => {
        const p = await slicePixels(neuro);
        return p && p.win === 'brain' ? p : null;
    }, 'slice with the brain window');
    check(/window=brain/.test(brain.src), `brain src: ${brain.src}`);
    await neuro.click('.presets button[data-preset="bone"]');
    const bone = await until(async () => {
        const p = await slicePixels(neuro);
        return p && p.win === 'bone' ? p : null;
    }, 'slice with the bone window');
    check(/window=bone/.test(bone.src) && bone.src !== brain.src,
          `bone src differs: ${bone.src}`);
    eq(brain.sop, bone.sop, 'a preset keeps the slice');
    const diff = meanDiff(brain.px, bone.px);
    log(`brain vs bone: mean pixel difference ${diff.toFixed(1)}`);
    check(diff > 8, `brain and bone windows give different pixels ` +
          `(mean difference ${diff.toFixed(1)})`);
    eq('true', await neuro.getAttribute('.presets button[data-preset="bone"]',
                                        'aria-pressed'), 'bone pressed');

    // Scrolling: wheel, keys, buttons, a sideways drag.
    const box = await neuro.locator('.viewer .stage').boundingBox();
    await neuro.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await neuro.mouse.wheel(0, 120);
    await until(async () => (await sliceCount(neuro)) === 'Slice 9 of 12',
                'wheel down 120 px (60 px a slice) -> slice 9');
    const s9 = await until(async () => {
        const p = await slicePixels(neuro);
        return p && p.sop !== bone.sop ? p : null;
    }, 'the wheel changes the shown instance');
    check(meanDiff(s9.px, bone.px) > 0.5,
          'another slice has other pixels');
    await neuro.focus('.viewer .stage');
    await neuro.keyboard.press('ArrowUp');
    eq('Slice 8 of 12', await sliceCount(neuro), 'ArrowUp -> slice 8');
    await neuro.keyboard.press('End');
    eq('Slice 12 of 12', await sliceCount(neuro), 'End -> slice 12');
    check(await neuro.isDisabled('.viewer button[aria-label="Next slice"]'),
          'Next is disabled on the last slice');
    await neuro.click('.viewer button[aria-label="Previous slice"]');
    eq('Slice 11 of 12', await sliceCount(neuro), 'Prev button -> 11');
    await neuro.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await neuro.mouse.down();
    await neuro.mouse.move(box.x + box.width / 2 - 60,
                           box.y + box.height / 2, { steps: 6 });
    await neuro.mouse.up();
    eq('Slice 8 of 12', await sliceCount(neuro),
       'a drag of 60 px to the left -> 3 slices back');
    const s8 = await until(async () => {
        const p = await slicePixels(neuro);
        return p && p.sop !== s9.sop && p.win === 'bone' ? p : null;
    }, 'slice 8 shown');

    // ---- (2) the requester watches the same case -----------------------
    const reqCtx = await t.context({ viewport: { width: 390, height: 844 } });
    const rq = await t.page(reqCtx, srv, 'demo-requester');
    await rq.locator('li[data-case-id="browser-case-1"] a').click();
    await rq.waitForSelector('.case-head h1');
    eq(0, await rq.locator('#claim').count(), 'requester has no claim button');
    await rq.evaluate(() => { window.__noReload = 1; });

    // Claim.
    await neuro.click('#claim');
    await neuro.waitForSelector('form.answer-form:not([hidden])');
    check((await neuro.textContent('.case-head')).includes('Claimed by you'),
          'neurologist sees "Claimed by you"');
    await until(async () => (await rq.textContent('.case-head'))
                .includes('Claimed by demo-neuro'),
                'requester sees the claim live');

    // Chat with a key image.
    await neuro.fill('#chat-text', 'Hyperdense MCA sign left? See this slice.');
    await neuro.check('#chat-attach');
    await neuro.click('.chat-form button[type=submit]');
    await neuro.waitForSelector('.thread li.msg.mine');
    const rqMsg = rq.locator('.thread li.msg', { hasText: 'Hyperdense MCA' });
    await seen(rqMsg, 'the message reaches the requester live');
    check((await rqMsg.textContent()).includes('demo-neuro'),
          'requester sees the author of the message');
    check(await rqMsg.locator('button', { hasText: 'Show the image' })
          .count() === 1, 'the message points at an image');
    await until(async () => (await neuro.textContent('.thread li.msg.mine'))
                .includes('Read by demo-requester'),
                'neurologist sees the read receipt live');
    // The requester jumps to the image the message points at.
    await rqMsg.locator('button', { hasText: 'Show the image' }).click();
    await until(async () => {
        const p = await slicePixels(rq);
        return p && p.sop === s8.sop && p.win === 'bone';
    }, 'the requester sees the key image (slice 8, bone window)');
    eq('Slice 8 of 12', await sliceCount(rq), 'the key image is slice 8');

    // Answer.
    await neuro.fill('#ans-impression', 'No haemorrhage. Early left MCA ' +
                     'infarct signs.');
    await neuro.fill('#ans-recommendation', 'Thrombolyse if no ' +
                     'contraindication.');
    await neuro.click('form.answer-form button[type=submit]');
    await neuro.waitForSelector('section.answer:not([hidden])');
    await until(async () => {
        const s = rq.locator('section.answer:not([hidden])');
        return (await s.count()) &&
            (await s.textContent()).includes('No haemorrhage.') &&
            (await s.textContent()).includes('Thrombolyse');
    }, 'requester sees the answer live');
    check((await rq.textContent('.case-head .badges')).includes('Answered'),
          'requester sees status Answered');
    eq(1, await rq.evaluate(() => window.__noReload),
       'the requester page was not reloaded');

    // The server agrees.
    const r = await srv.req('GET', '/api/cases/browser-case-1', { token: req });
    eq('answered', r.json.case.status, 'server status after the answer');
    eq('No haemorrhage. Early left MCA infarct signs.',
       r.json.case.answer.impression, 'server has the impression');
    eq(1, r.json.case.messages.length, 'one message on the server');
    check(r.json.case.messages[0].image &&
          r.json.case.messages[0].image.sop_uid === s8.sop,
          'the message points at the slice shown (slice 8)');

    // The requester closes; the neurologist sees it.
    await rq.click('#close');
    await rq.click('#close-confirm');
    await until(async () => (await neuro.textContent('.case-head .badges'))
                .includes('Closed'), 'neurologist sees the close live');
    check(await neuro.isHidden('form.chat-form'),
          'no chat form in a closed case');
});
