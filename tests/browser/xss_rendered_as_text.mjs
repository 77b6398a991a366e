// xss_rendered_as_text — what users and DICOM files write is shown as the
// characters it is, never run: a PatientName "<script>…</script>" (in the
// viewer and in the new-case study picker), a question with an <img
// onerror>, and a chat message "<img src=x onerror=…>" sent from one
// browser and received live by the other appear as literal text, and the
// globals they would set stay undefined.

import { test, check, eq, until, seen, study } from './lib.mjs';

const PN = '<script>window.__x=1</script>';
const CHAT = '<img src=x onerror=window.__y=1>';
const QUESTION = 'Bleed? <img src=x onerror=window.__z=1> <b>bold?</b>';

async function noneRan(page, who) {
    const g = await page.evaluate(() => [typeof window.__x,
                                         typeof window.__y,
                                         typeof window.__z]);
    eq(['undefined', 'undefined', 'undefined'], g,
       `${who}: typeof window.__x/__y/__z`);
    eq(0, await page.locator('main img[src="x"], main script, main b')
       .count(), `${who}: no element made from user text`);
}

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    const st = study('browser-xss', 3, ['--seed', '31', '--patient-id',
                                        'XSS-1', '--patient-name', PN]);
    await srv.stow(req, st.files);
    await srv.createCase(req, {
        case_id: 'xss-case', question: QUESTION, priority: 'stat',
        specialty: 'neurology', history: '<i>history</i>',
        study_uids: [st.uid],
    });

    // The requester's study picker shows the name literally.
    const rqCtx = await t.context();
    const rq = await t.page(rqCtx, srv, 'demo-requester');
    await rq.click('a.button[href="#/new"]');
    const pick = rq.locator('#nc-studies .pt-name');
    await seen(pick, 'a study in the picker');
    eq(PN, await pick.first().textContent(), 'study picker patient name');
    await noneRan(rq, 'requester, new-case form');

    // The specialist: inbox, case page, viewer.
    const nCtx = await t.context();
    const neuro = await t.page(nCtx, srv, 'demo-neuro');
    const item = neuro.locator('li[data-case-id="xss-case"]');
    await seen(item, 'the case in the inbox');
    eq(QUESTION, await item.locator('.question').textContent(),
       'inbox question as text');
    await item.locator('a').click();
    await neuro.waitForSelector('.case-head h1');
    eq(QUESTION, await neuro.textContent('.case-head h1'),
       'case page question as text');
    check((await neuro.textContent('.case-main')).includes('<i>history</i>'),
          'history as text');
    const name = neuro.locator('.viewer .study-line .pt-name');
    await seen(name, 'the patient name in the viewer');
    eq(PN, await name.textContent(), 'viewer patient name');
    await until(() => neuro.evaluate(() => {
        const i = document.querySelector('.viewer img.slice');
        return i && i.naturalWidth > 0;
    }), 'the slice renders');

    // A chat message from the requester, live to the specialist.
    await rq.goto(`${srv.url}/#/case/xss-case`);
    await rq.waitForSelector('#chat-text');
    await rq.fill('#chat-text', CHAT);
    await rq.click('.chat-form button[type=submit]');
    await rq.waitForSelector('.thread li.msg.mine');
    const got = neuro.locator('.thread li.msg .text');
    await seen(got, 'the chat message reaches the specialist');
    eq(CHAT, await got.first().textContent(), 'chat message as text');
    eq(CHAT, await rq.textContent('.thread li.msg.mine .text'),
       'own chat message as text');

    const r = await srv.req('GET', '/api/cases/xss-case/messages',
                            { token: req });
    eq(CHAT, r.json.messages[0].text, 'the server stored the text as sent');

    await new Promise((res) => setTimeout(res, 300));  // any onerror fires
    await noneRan(neuro, 'specialist');
    await noneRan(rq, 'requester');
});
