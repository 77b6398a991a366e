// The specialist's open case page while the images are still on their
// way: the study's preview appears once it is uploaded — before any
// instance — and "N of M instances received" follows the images.arrived
// events live: 0 of 5, 3 of 5, 5 of 5 (study.expect announced 5).  The
// inbox row of the case says 5/5 images.  Uploads and study.expect go
// over hashi.v1 (uplink.py) as the requester's clinic would send them.

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test, check, eq, until, seen, study, log } from './lib.mjs';

test(async (t) => {
    const srv = await t.server();
    const req = await srv.login('demo-requester');
    const st = study('browser-nofm5', 5, ['--size', '128', '--seed', '55']);
    const jpeg = path.join(t.tmp, 'preview.jpg');
    execFileSync('dcmj2pnm', ['+oj', '+Wi', '1', st.files[2], jpeg]);

    const c = await srv.createCase(req, {
        case_id: 'preview-nofm-1', question: 'Bleed? Images on the way.',
        priority: 'stat', specialty: 'neurology', study_uids: [st.uid],
    });
    srv.v1(req, [{ type: 'study.expect', study_uid: st.uid, instances: 5,
                   priority: 'stat' }]);

    const ctx = await t.context();
    const page = await t.page(ctx, srv, 'demo-neuro');
    await page.goto(`${srv.url}/#/case/${c.case_id}`);
    const count = page.locator('.images-count');
    await seen(count, 'the images line');
    await until(async () => (await count.textContent()) ===
                '0 of 5 instances received', 'the count before anything');
    check(await page.locator('figure.preview').isHidden(),
          'no preview shown before one exists');

    // the preview, before any instance: it appears on the open page
    const up = srv.v1(req, [{ upload: jpeg, kind: 'preview',
                              study_uid: st.uid }]);
    eq('stored', up[0].status, 'preview upload');
    await until(() => page.evaluate(() => {
        const img = document.querySelector('figure.preview img');
        return !img.closest('figure').hidden && img.complete &&
            img.naturalWidth > 0;
    }), 'the preview shown on the open page', 15000);
    eq('0 of 5 instances received', await count.textContent(),
       'still no instance');

    // three instances, then the last two: the count follows live
    srv.v1(req, st.files.slice(0, 3).map((f) => ({ upload: f })));
    await until(async () => (await count.textContent()) ===
                '3 of 5 instances received', '3 of 5 live');
    check(await page.locator('figure.preview').isVisible(),
          'the preview stays while images are missing');
    srv.v1(req, st.files.slice(3).map((f) => ({ upload: f })));
    await until(async () => (await count.textContent()) ===
                '5 of 5 instances received', '5 of 5 live');

    await page.goto(`${srv.url}/#/inbox`);
    const row = page.locator(`li[data-case-id="${c.case_id}"] .images-n`);
    await seen(row, 'the inbox row');
    eq('5/5 images', await row.textContent(), 'the inbox row count');
    log('preview before the instances, 0 → 3 → 5 of 5 live');
});
