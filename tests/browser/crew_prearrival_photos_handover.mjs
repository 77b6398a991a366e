// crew_prearrival_photos_handover — a crew user on a 360×740 phone
// creates a pre-arrival STAT case (vitals, LAMS, ETA, destination) with
// two photos chosen one by one through the form's camera input, over a
// 1 Mbit/s link cut once while the first photo goes up; with no user
// action the page finishes and opens the case.  The stroke team's page
// (demo-neuro) shows the case live, with the ETA counting down, and both
// photos as images in the viewer; the stored pixel data of each is the
// JPEG sent, byte for byte, and dciodvfy reports no error.  The
// hospital's CT (STOW by its admin) is linked with the team's button; the
// crew's page shows "Arrived" live.  Bad input: SpO2 out of range and an
// ETA in the past are refused on the form (no case); a file that is not
// a JPEG is refused by the server, named next to the photo, nothing made.

import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { test, check, eq, until, study, log, ROOT } from './lib.mjs';

const BUILD = process.env.HASHI_BUILD || path.join(ROOT, 'build');
const conn = (page) => page.textContent('#conn');

function admin(srv, args, input) {
    return execFileSync(path.join(BUILD, 'hashi-server'),
                        [...args, '--data', srv.data],
                        { input, encoding: 'utf8' });
}

// The stored objects of the case's photo study, checked in Python:
// [{sop, fragment_equals: name of the sent JPEG or null, dciodvfy}].
function storedPhotos(srv, jpegs) {
    const code = `
import json, sqlite3, subprocess, sys
import pydicom
from pydicom.encaps import decode_data_sequence
data, jpegs = sys.argv[1], sys.argv[2:]
db = sqlite3.connect("file:%s/hashi.db?mode=ro" % data, uri=True)
rows = db.execute("SELECT i.sop_uid, i.sha256 FROM instances i"
                  " JOIN series se ON se.id = i.series_ref"
                  " WHERE se.modality = 'XC' ORDER BY i.sop_uid").fetchall()
sent = {p: open(p, "rb").read() for p in jpegs}
out = []
for sop, sha in rows:
    blob = "%s/blobs/%s/%s/%s" % (data, sha[:2], sha[2:4], sha)
    ds = pydicom.dcmread(blob)
    frag = decode_data_sequence(ds.PixelData)
    same = [p for p, b in sent.items()
            if len(frag) == 1 and frag[0] == b + b"\\0" * (len(b) % 2)]
    v = subprocess.run(["dciodvfy", blob], capture_output=True, text=True)
    txt = v.stdout + v.stderr
    out.append({"sop": sop, "same": same[0] if same else None,
                "ts": str(ds.file_meta.TransferSyntaxUID),
                "pi": ds.PhotometricInterpretation,
                "errors": [l for l in txt.splitlines()
                           if l.startswith("Error")],
                "checked": "VLPhotographicImage" in txt})
print(json.dumps(out))
`;
    return JSON.parse(execFileSync('/usr/bin/python3',
                                   ['-c', code, srv.data, ...jpegs],
                                   { encoding: 'utf8' }));
}

async function fillVitals(page, v) {
    for (const [id, x] of Object.entries(v))
        await page.fill(`#cr-${id}`, String(x));
}

test(async (t) => {
    const srv = await t.server();
    admin(srv, ['clinic', 'add', '--name', 'North EMS', '--kind', 'ems']);
    admin(srv, ['user', 'add', '--login', 'crew-n1', '--clinic',
                'North EMS', '--role', 'crew'], 'demo-password\n');
    const mk = path.join(BUILD, 'tests/mkjpeg');
    const a = path.join(t.tmp, 'scene.jpg');
    const b = path.join(t.tmp, 'ecg-strip.jpg');
    const gif = path.join(t.tmp, 'not-a-photo.jpg');
    execFileSync(mk, [a, '2400', '1800', '1']);
    execFileSync(mk, [b, '1200', '1600', '2']);    // portrait
    fs.writeFileSync(gif, 'GIF89a this is not a JPEG');
    const down = path.join(t.tmp, 'link.down');
    const link = await t.link(srv, ['--rate', '1mbit', '--down-file', down]);

    const team = await t.page(await t.context(), srv, 'demo-neuro');
    const phone = await t.context({ viewport: { width: 360, height: 740 },
                                    isMobile: true, hasTouch: true });
    const crew = await t.page(phone, { url: link.url }, 'crew-n1');

    // -- bad input on the form: refused there, nothing sent
    await crew.click('#nav-new');
    await crew.waitForSelector('form.crew-form');
    check(await crew.isChecked('input[name=cr-priority][value=stat]'),
          'STAT by default');
    eq('image/*', await crew.getAttribute('#cr-photos', 'accept'),
       'the camera input takes images');
    check(await crew.getAttribute('#cr-photos', 'capture') !== null,
          'the camera input opens the camera');
    await fillVitals(crew, { 'spo2': 120 });
    await crew.click('form.crew-form button[type=submit]');
    await until(async () => /SpO₂ must be 50–100/.test(
        await crew.textContent('#cr-error')), 'SpO2 120 refused on the form');
    await fillVitals(crew, { 'spo2': 95 });
    await crew.fill('#cr-eta', '-5');
    await crew.click('form.crew-form button[type=submit]');
    await until(async () => /ETA is in the past/.test(
        await crew.textContent('#cr-error')), 'an ETA in the past refused');
    const crewTok = await srv.login('crew-n1');
    eq(0, (await srv.req('GET', '/api/cases', { token: crewTok }))
        .json.cases.length, 'no case from refused forms');

    // -- the real one: two photos through the camera input, a cut
    await crew.fill('#cr-age', '72');
    await crew.selectOption('#cr-sex', 'M');
    await fillVitals(crew, { 'bp-sys': 182, 'bp-dia': 96, 'heart-rate': 88,
                             'spo2': 95, 'glucose': 130, 'gcs': 14 });
    await crew.selectOption('#cr-lams-face', '1');
    await crew.selectOption('#cr-lams-arm', '2');
    await crew.selectOption('#cr-lams-grip', '1');
    await crew.fill('#cr-text', 'Right arm drift, aphasia since 09:10.');
    await crew.fill('#cr-eta', '18');
    await crew.setInputFiles('#cr-photos', a);
    await crew.setInputFiles('#cr-photos', b);
    eq(2, await crew.locator('#cr-photo-list li').count(), 'two photos');
    const noOverflow = await crew.evaluate(() =>
        document.documentElement.scrollWidth <= window.innerWidth);
    check(noOverflow, 'the form fits 360 px');
    await crew.click('form.crew-form button[type=submit]');

    // the team hears of it live, with the ETA
    await until(async () => (await team.locator('a[href^="#/case/"]')
        .count()) > 0, 'the case in the team\'s inbox, live', 15000);
    await until(async () => {
        const s = await crew.locator('#cr-photo-list li').first()
            .textContent();
        const m = /(\d+) %/.exec(s || '');
        return m && Number(m[1]) >= 15;
    }, 'the first photo partly sent', 20000);
    fs.writeFileSync(down, '');
    await until(async () => (await conn(crew)) !== 'Live',
                'the crew page sees the cut', 8000);
    const beforeDone = await crew.locator(
        '#cr-photo-list li[data-state=done]').count();
    check(beforeDone < 2, 'the cut came during the upload');
    await new Promise((r) => setTimeout(r, 1500));
    fs.unlinkSync(down);
    await until(async () => /^#\/case\//.test(
        await crew.evaluate(() => location.hash)),
                'the crew page opens the case when both photos are in',
                60000);
    const id = (await crew.evaluate(() => location.hash)).split('/')[2];
    log(`case ${id}`);

    // the team's page: the ETA counting down, two photos as images
    await team.click(`a[href="#/case/${id}"]`);
    const eta1 = await team.textContent('#pa-eta');
    check(/ETA 1[0-8]:\d\d/.test(eta1), `the ETA counts down (${eta1})`);
    await until(async () => (await team.textContent('#pa-eta')) !== eta1,
                'the ETA countdown moves', 3000);
    check(/LAMS 4/.test(await team.textContent('.prearrival')),
          'LAMS 4 on the card');
    // the viewer opens on the middle image; the other is one key away
    await until(async () => /^[12]\/2/.test(
        await team.textContent('.overlay').catch(() => '')),
                'the viewer shows a photo of 2', 20000);
    const first = (await team.textContent('.overlay'))[0];
    const size = () => team.evaluate(() => {
        const i = document.querySelector('img.slice');
        return [i.naturalWidth, i.naturalHeight];
    });
    const s1 = await size();
    await team.focus('.stage');
    await team.keyboard.press(first === '1' ? 'ArrowRight' : 'ArrowLeft');
    const other = first === '1' ? '2' : '1';
    await until(async () => (await team.textContent('.overlay'))
        .startsWith(`${other}/2`), 'the viewer shows the other photo', 20000);
    const s2 = await size();
    check(s1[0] > 0 && s2[0] > 0 && (s1[0] > s1[1]) !== (s2[0] > s2[1]),
          `both photos rendered as images (${s1}, ${s2}: one landscape, ` +
          'one portrait)');

    // the server: each photo's pixel data is the JPEG sent, dciodvfy clean
    const stored = storedPhotos(srv, [a, b]);
    eq(2, stored.length, 'two photo instances');
    eq([a, b].sort(), stored.map((s) => s.same).sort(),
       'each fragment is a JPEG sent, byte for byte');
    for (const s of stored) {
        eq('1.2.840.10008.1.2.4.50', s.ts, 'JPEG Baseline');
        eq('YBR_FULL_422', s.pi, 'photometric');
        check(s.checked, 'dciodvfy read it as a VL Photographic Image');
        eq([], s.errors, `dciodvfy errors of ${s.sop}`);
    }

    // hand-over: the hospital's CT, linked with the team's button
    const ct = study('browser-crew-ct', 3, ['--seed', '33']);
    await srv.stow(await srv.login('demo-admin'), ct.files);
    await team.click('#pa-link-open');
    await team.click(`button.link-study[data-study="${ct.uid}"]`);
    await until(async () => /Arrived/.test(
        await team.textContent('.prearrival')), 'arrived on the team page');
    await until(async () => /Arrived/.test(
        await crew.textContent('#pa-arrived').catch(() => '')),
                'the crew\'s page shows "Arrived" live', 10000);
    await until(async () => /Arrived, study linked by demo-neuro/.test(
        await team.textContent('.timeline li[data-step=arrived]')
            .catch(() => '')), 'the arrival in the team\'s timeline', 15000);
    check(await team.locator('.timeline li[data-step=eta]').count() === 1,
          'the ETA in the same timeline');
    const c = await srv.req('GET', `/api/cases/${id}`, { token: crewTok });
    eq(ct.uid, c.json.case.prearrival.arrived_study, 'the CT linked');
    check(c.json.case.timeline.some((s) => s.step === 'arrived'),
          'the arrival in the case timeline');

    // a file that is not a JPEG: the server's refusal, next to it
    await crew.click('#nav-new');
    await crew.waitForSelector('form.crew-form');
    await crew.setInputFiles('#cr-photos', gif);
    await crew.click('form.crew-form button[type=submit]');
    await until(async () => /not a JPEG/.test(await crew.textContent(
        '#cr-photo-list li[data-state=failed]').catch(() => '')),
                'the server\'s refusal shown next to the photo', 20000);
    eq(2, storedPhotos(srv, []).length, 'nothing made of it');
});
