// upload_20_files_across_cut — a requester's new case with 20 DICOM files
// chosen as a folder in the form, sent over a 4 Mbit/s link that breaks
// (linkemu.py --down-file: open connections reset, new ones refused)
// while they go, just as the server reports part of a file durable.  With no user action after "Send case" the page
// reconnects and finishes: the case is created once, announced 20
// (study.expect), and the page opens it at "20 of 20 instances
// received"; the server holds the 20 instances once each (QIDO; audit: 20
// stores, no duplicate, no conflict).  Watching the page's WebSocket
// frames: a file stored before the cut sends no chunk after it, each
// upload goes on from the offset the server answered its new
// upload.begin with (never below what was durable at the cut), and the
// bytes sent again are at most those in flight (sent, not yet durable)
// at the cut.

import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, study, log } from './lib.mjs';

const conn = (page) => page.textContent('#conn');

// What the page sends and hears about each upload (PROTOCOL.md 7-8).
// onMidFile, when set, is called once when the server reports part of a
// file durable: the moment to cut, so that an upload has to resume from
// past 0.
function watchUploads(page) {
    const up = new Map();   // upload_id -> {chunks, durable, done, ...}
    const get = (id) => {
        if (!up.has(id))
            up.set(id, { chunks: [], durable: 0, done: false, resumeAt: [],
                         size: 0 });
        return up.get(id);
    };
    const w = { up, onMidFile: null };
    const rids = new Map();         // upload.begin request id -> upload_id
    let epoch = 0;                  // 1 after the cut
    page.on('websocket', (ws) => {
        ws.on('framesent', ({ payload }) => {
            if (typeof payload !== 'string') {
                const b = Buffer.from(payload);
                const id = b.subarray(4, 4 + b[3]).toString('latin1');
                get(id).chunks.push({ off: Number(b.readBigUInt64BE(68)),
                                      len: b.readUInt32BE(76), epoch });
                return;
            }
            const m = JSON.parse(payload);
            if (m.type === 'upload.begin') {
                rids.set(m.id, m.upload_id);
                get(m.upload_id).size = m.size;
            }
        });
        ws.on('framereceived', ({ payload }) => {
            if (typeof payload !== 'string')
                return;
            const m = JSON.parse(payload);
            if (m.type === 'upload.at') {
                const u = get(m.upload_id);
                u.durable = Math.max(u.durable, m.offset);
                if (m.id && rids.has(m.id))
                    u.resumeAt.push({ off: m.offset, epoch,
                                      at: u.chunks.length });
                if (m.reason === 'progress' && m.offset < u.size &&
                    w.onMidFile) {
                    w.onMidFile();
                    w.onMidFile = null;
                }
            } else if (m.type === 'upload.done') {
                get(m.upload_id).done = true;
            }
        });
    });
    w.cut = () => {
        epoch = 1;
        let inFlight = 0;
        const done = [], durable = new Map();
        for (const [id, u] of up) {
            if (u.done) {
                done.push(id);
                continue;
            }
            const end = Math.max(0, ...u.chunks.map((c) => c.off + c.len));
            inFlight += Math.max(0, end - u.durable);
            durable.set(id, u.durable);
        }
        return { inFlight, done, durable };
    };
    return w;
}

test(async (t) => {
    const st = study('browser-up20', 20, ['--seed', '20', '--size', '256',
                                          '--patient-id', 'UP-20']);
    const total = st.files.reduce((n, f) => n + fs.statSync(f).size, 0);
    const srv = await t.server();
    const down = path.join(t.tmp, 'link.down');
    const link = await t.link(srv, ['--rate', '4mbit', '--down-file', down]);
    const ctx = await t.context();
    let w = null;       // watching from the page's first WebSocket on
    ctx.on('page', (p) => { w = watchUploads(p); });
    const page = await t.page(ctx, { url: link.url }, 'demo-requester');

    await page.click('#nav-new');
    await page.fill('#nc-question', 'CT from the rural clinic: bleed?');
    await page.check('input[name=priority][value=stat]');
    // the folder also holds the study cache's ".complete": left out
    await page.setInputFiles('#nc-folder', st.dir);
    await until(async () => (await page.locator(
        '#nc-file-list li').count()) === 20, 'the 20 files listed');
    await page.click('form.new-case button[type=submit]');

    // Cut the link once a few files are in, as soon as part of a file is
    // durable (or after 3 s).
    await until(async () => (await page.locator(
        '#nc-file-list li[data-state=done]').count()) >= 4,
                'four files stored before the cut', 30000);
    await new Promise((r) => {
        w.onMidFile = r;
        setTimeout(r, 3000);
    });
    fs.writeFileSync(down, '');
    await until(async () => (await conn(page)) !== 'Live',
                'the page sees the cut', 5000);
    const atCut = w.cut();
    check(atCut.done.length < 20,
          `the cut came before the end (${atCut.done.length} done)`);
    log(`cut: ${atCut.done.length} files stored, ${atCut.inFlight} bytes ` +
        'in flight');
    await new Promise((r) => setTimeout(r, 1500));
    fs.unlinkSync(down);

    // No user action: the page finishes and opens the case.
    await until(async () => /^#\/case\//.test(
        await page.evaluate(() => location.hash)),
                'the page opens the case when every file is in', 60000);
    await until(async () => (await page.textContent('.images-count')) ===
                '20 of 20 instances received',
                'the case page says 20 of 20');
    const id = (await page.evaluate(() => location.hash)).split('/')[2];

    // The server: one case, the study, 20 instances stored once each.
    const tok = await srv.login('demo-requester');
    const c = await srv.req('GET', `/api/cases/${id}`, { token: tok });
    eq(200, c.status, `the server has case ${id}`);
    eq([st.uid], c.json.case.study_uids, 'the uploaded study is attached');
    eq({ received: 20, expected: 20 }, c.json.case.images,
       'the case\'s images');
    const all = await srv.req('GET', '/api/cases?limit=200', { token: tok });
    eq(1, all.json.cases.length, 'one case');
    const q = await srv.req('GET', `/dicomweb/studies/${st.uid}/instances`,
                            { token: tok, headers:
                              { Accept: 'application/dicom+json' } });
    const sops = q.json.map((o) => o['00080018'].Value[0]);
    eq(20, new Set(sops).size, 'distinct instances of the study');
    eq(20, sops.length, 'instances of the study');
    const audit = fs.readFileSync(path.join(srv.data, 'audit.log'), 'utf8')
        .split('\n').filter(Boolean).map((l) => JSON.parse(l))
        .filter((a) => a.action === 'store' || a.action === 'conflict');
    eq(20, audit.length, 'the audit\'s stores');
    eq(20, new Set(audit.map((a) => a.object)).size, 'each stored once');
    eq([], audit.filter((a) => a.outcome !== 'ok'),
       'no duplicate, no conflict');

    // The wire: nothing sent twice beyond what the cut lost.
    eq(20, w.up.size, 'uploads seen on the wire');
    let sent = 0, resumed = 0;
    for (const [uid, u] of w.up) {
        check(u.done, `upload ${uid.slice(0, 8)} done`);
        sent += u.chunks.reduce((n, ch) => n + ch.len, 0);
        if (atCut.done.includes(uid))
            eq([], u.chunks.filter((ch) => ch.epoch === 1),
               `chunks of ${uid.slice(0, 8)} (stored before the cut) after it`);
        const r = u.resumeAt.filter((x) => x.epoch === 1);
        if (r.length && u.chunks.length > r[0].at) {
            eq(r[0].off, u.chunks[r[0].at].off,
               `${uid.slice(0, 8)}: the first chunk after the reconnect ` +
               'starts at the offset the server answered');
            resumed += r[0].off > 0;
        }
        // what was durable at the cut is never asked for again
        if (r.length)
            check(r[0].off >= (atCut.durable.get(uid) || 0),
                  `${uid.slice(0, 8)} resumed at ${r[0].off}, below the ` +
                  `${atCut.durable.get(uid)} bytes durable at the cut`);
    }
    log(`${total} bytes of files, ${sent} sent; ${resumed} upload(s) ` +
        'resumed past 0');
    check(sent >= total, `every byte went (${sent} of ${total})`);
    check(sent - total <= atCut.inFlight,
          `bytes sent again (${sent - total}) are at most those in flight ` +
          `at the cut (${atCut.inFlight})`);
});
