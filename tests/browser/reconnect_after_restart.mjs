// reconnect_after_restart — the page survives a broken link: when the
// server goes away the neurologist's page says so ("Offline"), reconnects
// by itself when the server is back, and shows what happened meanwhile
// (a new case, a message) without a reload.  And scoping: a cardiologist
// sees none of it, and a neurology case's page tells them only that it
// does not exist for them.  Images that come after the case appear in the
// open viewer as they arrive (images.arrived), without a reload.

import { test, check, eq, until, seen, ct12 } from './lib.mjs';

const connText = (page) => page.textContent('#conn');

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    const st = ct12();
    await srv.createCase(req, {
        case_id: 'rc-case-a', question: 'Seizure, first episode: CT needed?',
        priority: 'urgent', specialty: 'neurology', study_uids: [st.uid],
    });

    // Scoping: the cardiologist sees no neurology case.
    const cCtx = await t.context();
    const cardio = await t.page(cCtx, srv, 'demo-cardio');
    await until(async () => (await cardio.textContent('main'))
                .includes('No cases for you right now'),
                'cardiologist inbox says it is empty');
    eq(0, await cardio.locator('li[data-case-id]').count(),
       'cardiologist inbox items');
    await cardio.goto(`${srv.url}/#/case/rc-case-a`);
    await until(async () => (await cardio.textContent('main'))
                .includes('does not exist, or you may not see it'),
                'another specialty gets "does not exist"');
    check(!(await cardio.textContent('main')).includes('Seizure'),
          'nothing of the case leaks to the cardiologist');
    await cCtx.close();

    const nCtx = await t.context();
    const neuro = await t.page(nCtx, srv, 'demo-neuro');
    await seen(neuro.locator('li[data-case-id="rc-case-a"]'),
               'case A in the inbox');
    await neuro.evaluate(() => { window.__noReload = 1; });

    await srv.stop();
    await until(async () => (await connText(neuro)).startsWith('Offline'),
                'the page shows it is offline', 10000);

    await srv.spawn();      // same ports, same data
    await srv.createCase(req, {
        case_id: 'rc-case-b', question: 'Created while the page was away',
        priority: 'stat', specialty: 'neurology',
    });
    await srv.post(req, '/api/cases/rc-case-a/messages', {
        message_id: 'rc-msg-1', text: 'Second seizure at 14:20.' });

    await until(async () => (await connText(neuro)) === 'Live',
                'the page reconnects by itself', 15000);
    const b = neuro.locator('li[data-case-id="rc-case-b"]');
    await seen(b, 'the case created during the break shows');
    check((await b.textContent()).includes('Created while the page was away'),
          'the case created during the break is in the inbox');
    eq(['rc-case-b', 'rc-case-a'],
       await neuro.$$eval('li[data-case-id]',
                          (l) => l.map((x) => x.dataset.caseId)),
       'the new STAT case is first');
    await neuro.click('li[data-case-id="rc-case-a"] a');
    const msg = neuro.locator('.thread li.msg .text');
    await seen(msg, 'the message written during the break shows');
    eq('Second seizure at 14:20.', await msg.first().textContent(),
       'the message written during the break');
    await until(async () => (await neuro.textContent('.viewer'))
                .includes('Images not received yet'),
                'the viewer says the images have not come yet');

    // The study arrives (STOW); the open viewer shows it.
    await srv.stow(req, st.files);
    await until(() => neuro.evaluate(() => {
        const i = document.querySelector('.viewer img.slice');
        return i && i.naturalWidth > 0;
    }), 'the arriving images show in the open viewer', 15000);
    await until(async () => / of 12$/.test(
        await neuro.textContent('.viewer .slice-count')),
                'all 12 slices are there');
    eq(1, await neuro.evaluate(() => window.__noReload),
       'no reload happened');
});
