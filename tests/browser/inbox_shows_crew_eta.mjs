// inbox_shows_crew_eta — a stroke neurologist's inbox on a 360×740 phone
// shows, on the row of an ambulance crew's pre-arrival case (eta_min 6),
// "ETA HH:MM · in 6 min" (the crew's ETA in local time, minutes rounded
// up; 5 if a minute boundary passes); a crew case with eta_min 0 says
// "due now"; a clinic's routine case has no ETA.  Once the team links the
// patient's study (case.link: arrived) the row's ETA goes, live.

import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { test, check, eq, until, study, ROOT } from './lib.mjs';

const BUILD = process.env.HASHI_BUILD || path.join(ROOT, 'build');

function admin(srv, args, input) {
    return execFileSync(path.join(BUILD, 'hashi-server'),
                        [...args, '--data', srv.data],
                        { input, encoding: 'utf8' });
}

test(async (t) => {
    const srv = await t.server();
    admin(srv, ['clinic', 'add', '--name', 'North EMS', '--kind', 'ems']);
    admin(srv, ['user', 'add', '--login', 'crew-n1', '--clinic',
                'North EMS', '--role', 'crew'], 'demo-password\n');
    const crewTok = await srv.login('crew-n1');
    const reqTok = await srv.login('demo-requester');
    const pre = (eta) => ({
        last_known_well: Date.now() - 40 * 60000, lams: 4,
        vitals: { bp_sys: 182, bp_dia: 96 }, eta_min: eta,
        destination: 'City Hospital Stroke Unit',
    });
    const stroke = await srv.createCase(crewTok, {
        case_id: 'crew-eta-6', question: 'Right arm drift, aphasia.',
        priority: 'stat', specialty: 'neurology', prearrival: pre(6),
    });
    await srv.createCase(crewTok, {
        case_id: 'crew-eta-0', question: 'At the door.',
        priority: 'urgent', specialty: 'neurology', prearrival: pre(0),
    });
    await srv.createCase(reqTok, {
        case_id: 'routine-1', question: 'Old lacune?',
        priority: 'routine', specialty: 'neurology',
    });
    const eta = stroke.prearrival.eta;
    eq(stroke.created_at + 6 * 60000, eta, 'the Case\'s eta');

    const phone = await t.context({ viewport: { width: 360, height: 740 },
                                    isMobile: true, hasTouch: true });
    const neuro = await t.page(phone, srv, 'demo-neuro');
    const row = (id) => neuro.locator(`li[data-case-id="${id}"]`);
    await until(async () => (await row('routine-1').count()) === 1,
                'the three cases in the inbox');

    // the ETA as the browser's local clock says it
    const hhmm = await neuro.evaluate((ms) => {
        const d = new Date(ms);
        return [d.getHours(), d.getMinutes()]
            .map((n) => String(n).padStart(2, '0')).join(':');
    }, eta);
    const text = await row('crew-eta-6').textContent();
    check(new RegExp(`ETA ${hhmm} · in [56] min`).test(text),
          `the crew's row says "ETA ${hhmm} · in 6 min" (${text})`);
    eq(1, await row('crew-eta-6').locator('.eta').count(),
       'one ETA line on the row');
    check(/ETA \d\d:\d\d · due now/.test(
        await row('crew-eta-0').textContent()),
          'an ETA already reached says "due now"');
    const routine = await row('routine-1').textContent();
    check(!/ETA/.test(routine), `no ETA on the routine row (${routine})`);
    eq(0, await row('routine-1').locator('.eta').count(),
       'no ETA element on the routine row');
    check(await neuro.evaluate(() =>
        document.documentElement.scrollWidth <= window.innerWidth),
          'the inbox fits 360 px');

    // hand-over: the patient's study linked, the ETA leaves the row live
    const ct = study('browser-crew-ct', 3, ['--seed', '33']);
    await srv.stow(await srv.login('demo-admin'), ct.files);
    await srv.post(await srv.login('demo-neuro'),
                   '/api/cases/crew-eta-6/link', { study_uid: ct.uid });
    await until(async () => (await row('crew-eta-6').locator('.eta')
        .count()) === 0, 'no ETA once the patient has arrived', 10000);
    check(!/ETA/.test(await row('crew-eta-6').textContent()),
          'the arrived row says no ETA');
});
