// upload_non_dicom_refused — a file that is not DICOM, chosen in the
// new-case form beside a DICOM file, shows the server's refusal next to
// it ("not acceptable DICOM: ...") while the other is stored; "Send case"
// then creates nothing (no case, no upload row or part file of the
// refused one, no instance of it) and says why.  Removed from the list,
// the case goes: its study attached, "1 of 1" announced; the study picker
// of the next form marks the study as attached to it.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, seen, study } from './lib.mjs';

const BAD = Buffer.from('Patient notes, typed on the ward.\n');

test(async (t) => {
    const st = study('browser-up1', 1, ['--seed', '21', '--size', '64',
                                        '--patient-id', 'UP-1']);
    const srv = await t.server();
    const tok = await srv.login('demo-requester');
    const page = await t.page(await t.context(), srv, 'demo-requester');
    const sql = (q) => execFileSync('sqlite3', [path.join(srv.data,
                                                          'hashi.db'), q],
                                    { encoding: 'utf8' }).trim();

    await page.click('#nav-new');
    await page.fill('#nc-question', 'Is this a bleed?');
    await page.setInputFiles('#nc-files', [
        { name: 'notes.txt', mimeType: 'text/plain', buffer: BAD },
        { name: 'CT00001.dcm', mimeType: 'application/dicom',
          buffer: fs.readFileSync(st.files[0]) },
    ]);
    const bad = page.locator('#nc-file-list li', { hasText: 'notes.txt' });
    const good = page.locator('#nc-file-list li', { hasText: 'CT00001.dcm' });
    await seen(bad.locator('.file-state .error'), 'the refusal shown');
    // the parser's own words once, after the prefix (upload.c wrote the
    // message over itself: "...DICOM: not acceptable DICOM: st the end")
    const why = await bad.locator('.file-state .error').textContent();
    check(/^Refused: not acceptable DICOM: (?!.*DICOM:)[a-z].* offset \d+$/
        .test(why), `the server's reason next to the file: ${why}`);
    await until(async () => (await good.locator('.file-state')
                             .textContent()) === 'Stored',
                'the DICOM file stored');

    await page.click('form.new-case button[type=submit]');
    await until(async () => /^Not sent: 1 file\(s\) refused/.test(
        await page.textContent('form.new-case p.error')),
                'sending says a file was refused');
    const none = await srv.req('GET', '/api/cases', { token: tok });
    eq([], none.json.cases, 'no case created');
    eq('0', sql('SELECT count(*) FROM uploads WHERE done_status IS NULL'),
       'no partial upload row left');
    eq([], fs.readdirSync(path.join(srv.data, 'uploads')),
       'no part file left');
    eq('1', sql('SELECT count(*) FROM instances'), 'only the DICOM stored');

    // Without it, the case goes.
    await bad.locator('button', { hasText: 'Remove' }).click();
    eq(0, await bad.count(), 'the refused file removed from the list');
    await page.click('form.new-case button[type=submit]');
    await until(async () => /^#\/case\//.test(
        await page.evaluate(() => location.hash)), 'the case opens');
    await until(async () => (await page.textContent('.images-count')) ===
                '1 of 1 instances received', 'the case says 1 of 1');
    const id = (await page.evaluate(() => location.hash)).split('/')[2];
    const c = await srv.req('GET', `/api/cases/${id}`, { token: tok });
    eq([st.uid], c.json.case.study_uids, 'the study attached');
    eq({ received: 1, expected: 1 }, c.json.case.images, 'its images');

    // The next form's picker says the study is attached.
    await page.click('#nav-new');
    const li = page.locator(`#nc-studies li[data-study-uid="${st.uid}"]`);
    await seen(li.locator('.attached'), 'the study marked as attached');
    eq('Attached to “Is this a bleed?” (new — unclaimed)',
       await li.locator('.attached').textContent(), 'the mark');
});
