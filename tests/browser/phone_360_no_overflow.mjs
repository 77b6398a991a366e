// phone_360_no_overflow — on a 360x740 phone screen every view fits the
// width (document.documentElement.scrollWidth <= 360: no sideways
// scrolling), even with long unbroken words in the question, the history,
// a chat message and the patient name; the controls a clinician needs
// are on screen and big enough to hit.  A full-page screenshot of each
// view is kept in build/test-logs/browser/ for people to look at.

import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, seen, ct12, log, ROOT }
    from './lib.mjs';

const PHONE = { viewport: { width: 360, height: 740 }, isMobile: true,
                hasTouch: true, deviceScaleFactor: 2 };
const SHOTS = path.join(process.env.HASHI_BUILD ||
                        path.join(ROOT, 'build'), 'test-logs', 'browser');
const LONG = 'https://pacs.example.org/viewer?study=' + '1.2.840'.repeat(12);

async function fits(page, view) {
    const w = await page.evaluate(() => [
        document.documentElement.scrollWidth, document.body.scrollWidth,
        window.innerWidth]);
    log(`${view}: scrollWidth ${w[0]}, body ${w[1]}, innerWidth ${w[2]}`);
    check(w[0] <= 360 && w[1] <= 360,
          `${view}: no horizontal overflow at 360 px (documentElement ` +
          `${w[0]}, body ${w[1]})`);
    // Every visible button and link of the view is inside the screen.
    const out = await page.evaluate(() => [...document.querySelectorAll(
        'button, a, input, textarea, select')].filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width && (r.left < -1 || r.right > 361);
    }).map((e) => e.outerHTML.slice(0, 80)));
    eq([], out, `${view}: controls outside the screen`);
}

async function shot(page, name) {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`),
                            fullPage: true });
}

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    const st = ct12();
    await srv.stow(req, st.files);
    await srv.createCase(req, {
        case_id: 'phone-case-1',
        question: 'Sudden right-sided weakness and aphasia since 09:10. ' +
            'Bleed? Candidate for thrombolysis? ' + LONG,
        priority: 'stat', specialty: 'neurology',
        patient: { age: 71, sex: 'M' },
        history: 'Atrial fibrillation, on apixaban (last dose 08:00).\n' +
            'BP 185/100. GCS 13. Glucose 6.1.\n' + LONG,
        study_uids: [st.uid],
    });
    await srv.createCase(req, {
        case_id: 'phone-case-2', question: 'Headache for 3 days, CT normal?',
        priority: 'routine', specialty: 'neurology',
        patient: { age: 34, sex: 'F' },
    });
    const neuroTok = await srv.login('demo-neuro');
    await srv.post(neuroTok, '/api/cases/phone-case-2/claim', {});
    await srv.post(neuroTok, '/api/cases/phone-case-2/answer', {
        impression: 'No acute intracranial abnormality.' });
    await srv.post(neuroTok, '/api/cases/phone-case-1/messages', {
        message_id: 'phone-msg-1', text: 'Looking now. ' + LONG });

    const ctx = await t.context(PHONE);

    // The login page.
    const login = await t.page(ctx, srv, null);
    await login.waitForSelector('form.login');
    await fits(login, 'login');
    await shot(login, 'login-360');
    await login.close();

    // The specialist: inbox and case page.
    const neuro = await t.page(ctx, srv, 'demo-neuro');
    await seen(neuro.locator('li[data-case-id="phone-case-2"]'),
               'both cases in the inbox');
    await seen(neuro.locator('li[data-case-id="phone-case-1"]'),
               'both cases in the inbox');
    await fits(neuro, 'specialist inbox');
    await shot(neuro, 'inbox-360');
    await neuro.click('li[data-case-id="phone-case-1"] a');
    await neuro.waitForSelector('.case-head h1');
    await until(() => neuro.evaluate(() => {
        const i = document.querySelector('.viewer img.slice');
        return i && i.naturalWidth > 0;
    }), 'the slice renders on the phone');
    await neuro.waitForSelector('.thread li.msg');
    await fits(neuro, 'case page');
    // The claim button and the image are within reach, and big enough.
    const claim = await neuro.locator('#claim').boundingBox();
    check(claim && claim.height >= 44 && claim.width >= 300,
          `claim button size ${JSON.stringify(claim)}`);
    const stage = await neuro.locator('.viewer .stage').boundingBox();
    check(stage.width >= 320, `the image uses the width: ${stage.width}`);
    const vp = await neuro.evaluate(() =>
        document.querySelector('.viewer img.slice').dataset.url);
    check(/viewport=(512|640|768),/.test(vp),
          `the image is rendered for a 2x phone screen: ${vp}`);
    await shot(neuro, 'case-360');

    // A sideways swipe with a finger changes the slice (18 px a slice).
    eq('Slice 7 of 12', await neuro.textContent('.viewer .slice-count'),
       'the middle slice first');
    await neuro.locator('.viewer .stage').scrollIntoViewIfNeeded();
    const sb = await neuro.locator('.viewer .stage').boundingBox();
    const cdp = await ctx.newCDPSession(neuro);
    const y = sb.y + sb.height / 2;
    const x0 = sb.x + sb.width / 2;
    const touch = (type, x) => cdp.send('Input.dispatchTouchEvent', {
        type, touchPoints: type === 'touchEnd' ? [] : [{ x, y }] });
    await touch('touchStart', x0);
    for (let dx = 10; dx <= 60; dx += 10)
        await touch('touchMove', x0 - dx);
    await touch('touchEnd', x0 - 60);
    await until(async () => (await neuro.textContent('.viewer .slice-count'))
                === 'Slice 4 of 12', 'a 60 px swipe to the left -> slice 4');
    await cdp.detach();

    await neuro.click('#claim');
    await neuro.waitForSelector('form.answer-form:not([hidden])');
    await fits(neuro, 'case page with the answer form');
    await shot(neuro, 'case-claimed-360');

    // The requester: inbox, a case with an answer, the new-case form.
    const ctx2 = await t.context(PHONE);
    const rq = await t.page(ctx2, srv, 'demo-requester');
    await seen(rq.locator('li[data-case-id="phone-case-2"]'),
               'the answered case in the requester inbox');
    await fits(rq, 'requester inbox');
    await rq.click('li[data-case-id="phone-case-2"] a');
    await rq.waitForSelector('section.answer:not([hidden])');
    await fits(rq, 'answered case (requester)');
    await shot(rq, 'answered-360');
    await rq.click('a.back');
    await rq.click('a.button[href="#/new"]');
    await seen(rq.locator('#nc-studies input[type=checkbox]'),
               'a study in the picker');
    await fits(rq, 'new case form');
    await shot(rq, 'newcase-360');

    // Send a case from the phone: STAT, the study picked, age and sex
    // taken from the study (PatientSex O, born 1970-01-01).
    const q = 'Fall at home, on apixaban, GCS 14. Bleed?';
    await rq.fill('#nc-question', q);
    await rq.check('input[name=priority][value=stat]');
    await rq.check('#nc-studies input[type=checkbox]');
    eq('O', await rq.inputValue('#nc-sex'), 'sex taken from the study');
    const age = Number(await rq.inputValue('#nc-age'));
    check(age >= 55 && age <= 150, `age taken from the study: ${age}`);
    await rq.click('form.new-case button[type=submit]');
    await until(async () => (await rq.textContent('.case-head h1')) === q,
                'the new case page after sending');
    check((await rq.textContent('.case-head .badges')).includes('STAT'),
          'the new case is STAT');
    await fits(rq, 'the new case page');
    const id = (await rq.evaluate(() => location.hash)).split('/')[2];
    const got = await srv.req('GET', `/api/cases/${id}`, { token: req });
    eq(200, got.status, `the server has case ${id}`);
    eq([st.uid], got.json.case.study_uids, 'the study is attached');
    eq({ age, sex: 'O' }, got.json.case.patient, 'patient age and sex');
    eq('stat', got.json.case.priority, 'priority on the server');
    await neuro.click('a.back');
    await seen(neuro.locator(`li[data-case-id="${id}"]`),
               'the phone\'s case in the neurologist inbox');
    log(`screenshots in ${SHOTS}`);
});
