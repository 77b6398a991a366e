// newcase — the requester's "new case" form: the question, priority,
// specialty (or a named specialist), the patient's age and sex, history,
// and the studies to attach: picked from the clinic's studies (QIDO-RS;
// those already attached to a case say so), or files and folders of this
// computer, uploaded by upload.js as soon as they are chosen, with
// progress per file and overall.
//
// Sending: files the page could not read as DICOM are waited for (the
// server's verdict is shown next to each); if any file was refused
// nothing is created.  Otherwise each uploaded study is announced
// (study.expect, its count of instances) and the case created naming it,
// both over hashi.v1 (resent after a cut, run once), so the case shows
// "N of M" while the rest of the files go; the page opens the case when
// every file is in.  The case id is made here once per form, so pressing
// "Send" again after a cut creates the case once.

import { h, fill, qido, dv, dvAll, ulid, STATUS_TEXT } from './util.js';
import { prepare, uploadFiles, request } from './upload.js';

const SPECIALTIES = ['neurology', 'cardiology', 'radiology', 'stroke',
                     'orthopaedics', 'paediatrics', 'surgery'];

// Age in whole years from a DICOM date (YYYYMMDD), or null.
function ageFrom(birth) {
    const m = /^(\d{4})(\d{2})(\d{2})$/.exec(birth || '');
    if (!m)
        return null;
    const b = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
    const now = new Date();
    let a = now.getFullYear() - b.getFullYear();
    if (now < new Date(now.getFullYear(), b.getMonth(), b.getDate()))
        a--;
    return a >= 0 && a <= 150 ? a : null;
}

function fmtDate(d) {
    return d.length === 8 ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`
                          : d;
}

export function mount(main, ctx) {
    const caseId = ulid();
    let dead = false;
    const studies = new Map();   // uid -> QIDO object
    const rows = new Map();      // sha256 -> {item, f, li, bar, state}
    const waiters = [];          // {pred, resolve}: see settled()
    let reading = Promise.resolve();
    let sentCase = null;         // the case, once created

    const question = h('textarea', { id: 'nc-question', rows: '3',
                                     maxlength: '2000', required: true });
    const prio = ['stat', 'urgent', 'routine'].map((p, i) => h('label',
        { class: `radio prio-${p}` },
        h('input', { type: 'radio', name: 'priority', value: p,
                     checked: i === 1 }),
        ` ${p === 'stat' ? 'STAT' : p[0].toUpperCase() + p.slice(1)}`));
    const specialty = h('input', { id: 'nc-specialty', type: 'text',
                                   list: 'nc-specialties',
                                   autocapitalize: 'none',
                                   pattern: '[a-z0-9_-]{1,64}',
                                   value: 'neurology' });
    const specList = h('datalist', { id: 'nc-specialties' },
                       SPECIALTIES.map((s) => h('option', { value: s })));
    const specialist = h('input', { id: 'nc-specialist', type: 'text',
                                    autocapitalize: 'none',
                                    placeholder: 'login, optional' });
    const age = h('input', { id: 'nc-age', type: 'number', min: '0',
                             max: '150', inputmode: 'numeric' });
    const sex = h('select', { id: 'nc-sex' },
        h('option', { value: '' }, 'not given'),
        h('option', { value: 'F' }, 'female'),
        h('option', { value: 'M' }, 'male'),
        h('option', { value: 'O' }, 'other'));
    const history = h('textarea', { id: 'nc-history', rows: '3',
                                    maxlength: '8000' });
    const studyList = h('ul', { class: 'studies', id: 'nc-studies' },
                        h('li', { class: 'muted' }, 'Loading studies…'));
    const pickFiles = h('input', { type: 'file', id: 'nc-files',
                                   multiple: true });
    const pickFolder = h('input', { type: 'file', id: 'nc-folder',
                                    multiple: true, webkitdirectory: true });
    const fileList = h('ul', { class: 'files', id: 'nc-file-list' });
    const overall = h('progress', { id: 'nc-progress', max: '1', value: '0',
                                    hidden: true });
    const overallText = h('p', { class: 'meta', id: 'nc-progress-text',
                                 role: 'status' });
    const err = h('p', { class: 'error', role: 'alert', hidden: true });
    const send = h('button', { type: 'submit', class: 'primary big' },
                   'Send case');

    const form = h('form', { class: 'card new-case', novalidate: true,
                             'aria-labelledby': 'h-new' },
        h('h1', { id: 'h-new' }, 'New case'),
        h('label', { for: 'nc-question' }, 'Question for the specialist'),
        question,
        h('fieldset', { class: 'prio' }, h('legend', {}, 'Priority'), prio),
        h('div', { class: 'two' },
          h('div', {}, h('label', { for: 'nc-specialty' }, 'Specialty'),
            specialty, specList),
          h('div', {}, h('label', { for: 'nc-specialist' },
                         'Named specialist'), specialist)),
        h('div', { class: 'two' },
          h('div', {}, h('label', { for: 'nc-age' }, 'Patient age (years)'),
            age),
          h('div', {}, h('label', { for: 'nc-sex' }, 'Patient sex'), sex)),
        h('label', { for: 'nc-history' }, 'Clinical history'), history,
        h('fieldset', {},
          h('legend', {}, 'Studies to attach'), studyList),
        h('fieldset', { class: 'upload' },
          h('legend', {}, 'Images from this device'),
          h('div', { class: 'pick' },
            h('label', { class: 'button file-pick' }, 'Choose files',
              pickFiles),
            h('label', { class: 'button file-pick' }, 'Choose a folder',
              pickFolder)),
          overall, overallText, fileList),
        err, send);

    function studyItem(o) {
        const uid = dv(o, '0020000D');
        const id = `st-${studies.size}`;
        studies.set(uid, o);
        const box = h('input', { type: 'checkbox', id, value: uid });
        box.addEventListener('change', () => {
            if (!box.checked)
                return;
            // Fill in age and sex from the study when not typed in.
            const s = dv(o, '00100040');
            if (!sex.value && ['F', 'M', 'O'].includes(s))
                sex.value = s;
            const a = ageFrom(dv(o, '00100030'));
            if (age.value === '' && a !== null)
                age.value = String(a);
        });
        const n = dv(o, '00201208');
        return h('li', { 'data-study-uid': uid }, box,
            h('label', { for: id },
              h('span', { class: 'pt-name' }, dv(o, '00100010') || 'No name'),
              h('span', { class: 'meta' },
                [fmtDate(dv(o, '00080020')), dvAll(o, '00080061').join('/'),
                 dv(o, '00081030'), n ? `${n} images` : '',
                 dv(o, '00100020') ? `ID ${dv(o, '00100020')}` : '']
                    .filter(Boolean).join(' · ')),
              h('span', { class: 'attached', hidden: true })));
    }

    // "Attached to: <question> (status)" under each study some case of
    // the user's already names (the store holds the cases they see).
    function markAttached() {
        const by = new Map();
        for (const c of ctx.store.cases.values()) {
            for (const u of c.study_uids || []) {
                if (!by.has(u))
                    by.set(u, []);
                by.get(u).push(c);
            }
        }
        for (const li of studyList.querySelectorAll('li[data-study-uid]')) {
            const cs = by.get(li.dataset.studyUid) || [];
            const el = li.querySelector('.attached');
            el.hidden = !cs.length;
            li.classList.toggle('is-attached', cs.length > 0);
            el.textContent = cs.length ? 'Attached to ' + cs.map((c) =>
                `“${c.question.length > 60 ? c.question.slice(0, 57) + '…'
                                            : c.question}” (${
                    (STATUS_TEXT[c.status] || c.status).toLowerCase()})`)
                .join(', ') : '';
        }
    }
    const onCases = () => markAttached();
    ctx.store.addEventListener('cases', onCases);

    // ---- files: chosen, read, uploaded -----------------------------------

    const size = (n) => n < 1048576 ? `${Math.ceil(n / 1024)} kB`
        : `${(n / 1048576).toFixed(n < 10485760 ? 1 : 0)} MB`;
    const finished = (r) => r.f && (r.f.state === 'done' ||
                                    r.f.state === 'failed');

    function fileRow(item) {
        const r = { item, f: null };
        r.bar = h('progress', { max: String(item.size), value: '0' });
        r.state = h('span', { class: 'file-state' }, 'Waiting');
        r.li = h('li', { 'data-sha256': item.sha256 },
            h('span', { class: 'file-name' }, item.name),
            h('span', { class: 'meta' }, size(item.size)),
            r.bar, r.state);
        return r;
    }

    function showRow(r) {
        const f = r.f;
        // a change of one file reports them all: touch only what moved
        if (!f || r.shown === `${f.state} ${f.acked} ${!!sentCase}`)
            return;
        r.shown = `${f.state} ${f.acked} ${!!sentCase}`;
        r.bar.value = f.acked;
        r.li.dataset.state = f.state;
        if (f.state === 'failed') {
            r.li.classList.add('failed');
            fill(r.state, h('span', { class: 'error' },
                            `Refused: ${f.error}`), ' ',
                 sentCase ? null : h('button', {
                     type: 'button', class: 'link-btn',
                     onclick: () => {
                         rows.delete(f.sha256);
                         r.li.remove();
                         render();
                     } }, 'Remove'));
        } else {
            r.state.textContent = f.state === 'done'
                ? (f.status === 'duplicate' ? 'Already on the server'
                                            : 'Stored')
                : f.state === 'sending'
                ? `${Math.floor(100 * f.acked / f.size)} %` : 'Waiting';
        }
    }

    function render() {
        let acked = 0, total = 0, done = 0, failed = 0;
        for (const r of rows.values()) {
            total += r.item.size;
            acked += r.f ? r.f.acked : 0;
            done += r.f && r.f.state === 'done' ? 1 : 0;
            failed += r.f && r.f.state === 'failed' ? 1 : 0;
        }
        overall.hidden = !rows.size;
        overall.max = total || 1;
        overall.value = acked;
        overallText.textContent = rows.size
            ? `${done} of ${rows.size} files uploaded · ${size(acked)} of ` +
              `${size(total)}` + (failed ? ` · ${failed} refused` : '')
            : '';
        for (let i = waiters.length - 1; i >= 0; i--) {
            if ([...rows.values()].every(waiters[i].pred)) {
                waiters[i].resolve();
                waiters.splice(i, 1);
            }
        }
    }

    // Resolves once every file satisfies pred (checked on each change).
    function settled(pred) {
        return new Promise((resolve) => {
            waiters.push({ pred, resolve });
            render();
        });
    }

    async function addFiles(files) {
        overallText.textContent = `Reading ${files.length} file(s)…`;
        let items;
        try {
            items = await prepare(files);
        } catch (e) {
            err.textContent = `Could not read the files: ${e.message}`;
            err.hidden = false;
            render();
            return;
        }
        // new bytes only; those not read as DICOM first, so the server's
        // verdict on them comes before the rest
        const fresh = items.filter((it) => !rows.has(it.sha256) &&
                                   rows.set(it.sha256, fileRow(it)))
            .sort((a, b) => !!a.study_uid - !!b.study_uid);
        for (const it of fresh)
            fileList.appendChild(rows.get(it.sha256).li);
        render();
        if (!fresh.length)
            return;
        uploadFiles(ctx.live, fresh, { onProgress: (p) => {
            for (const f of p.files) {
                const r = rows.get(f.sha256);
                if (r) {
                    r.f = f;
                    showRow(r);
                }
            }
            render();
        } }).catch((e) => {
            err.textContent = `Upload stopped: ${e.message}`;
            err.hidden = false;
        });
    }

    // A folder brings its hidden files (.DS_Store) and DICOMDIR, which
    // are no images: left out.
    const extra = (f) => /(^|\/)(\.[^/]*|DICOMDIR)$/i
        .test(f.webkitRelativePath || f.name);
    for (const input of [pickFiles, pickFolder]) {
        input.addEventListener('change', () => {
            const files = [...input.files].filter((f) => input === pickFiles ||
                                                   !extra(f));
            input.value = '';
            if (files.length)
                reading = reading.then(() => addFiles(files));
        });
    }

    qido('/dicomweb/studies?limit=50').then((list) => {
        if (dead)
            return;
        fill(studyList, list.length ? list.map(studyItem)
            : h('li', { class: 'muted' },
                'No studies of your clinic yet. You can send the case now; ' +
                'images sent later are not attached.'));
        markAttached();
    }).catch((e) => {
        if (!dead)
            fill(studyList, h('li', { class: 'error' },
                              `Could not list studies: ${e.message}`));
    });

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const q = question.value.trim();
        if (!q) {
            err.textContent = 'Write the question.';
            err.hidden = false;
            question.focus();
            return;
        }
        const body = {
            case_id: caseId,
            question: q,
            priority: form.querySelector('input[name=priority]:checked').value,
        };
        if (specialty.value.trim())
            body.specialty = specialty.value.trim().toLowerCase();
        if (specialist.value.trim())
            body.specialist = specialist.value.trim();
        if (!body.specialty && !body.specialist) {
            err.textContent = 'Choose a specialty or a specialist.';
            err.hidden = false;
            specialty.focus();
            return;
        }
        const patient = {};
        if (age.value !== '')
            patient.age = Number(age.value);
        if (sex.value)
            patient.sex = sex.value;
        if (Object.keys(patient).length)
            body.patient = patient;
        if (history.value.trim())
            body.history = history.value.trim();
        const uids = new Set([...studyList.querySelectorAll('input:checked')]
            .map((b) => b.value));
        err.hidden = true;
        send.disabled = true;
        try {
            send.textContent = 'Reading files…';
            await reading;
            // what the page could not read as DICOM: the server says
            send.textContent = 'Checking files…';
            await settled((r) => r.item.study_uid || finished(r));
            const refused = [...rows.values()].filter((r) => r.f &&
                                                      r.f.state === 'failed');
            if (refused.length) {
                throw new Error(`${refused.length} file(s) refused, see ` +
                                'the list: remove them to send the case');
            }
            send.textContent = ctx.live.state === 'live' ? 'Sending…'
                : 'Sending… (waiting for the connection)';
            // each uploaded study announced with its count: "N of M"
            const sops = new Map();
            for (const r of rows.values()) {
                if (!r.item.study_uid)
                    continue;   // stored, but its study unread here
                if (!sops.has(r.item.study_uid))
                    sops.set(r.item.study_uid, new Set());
                sops.get(r.item.study_uid).add(r.item.sop_uid);
            }
            for (const [study, set] of sops) {
                await request(ctx.live, {
                    type: 'study.expect', study_uid: study,
                    instances: set.size, priority: body.priority,
                });
                uids.add(study);
            }
            if (uids.size)
                body.study_uids = [...uids];
            const d = await request(ctx.live,
                                    Object.assign({ type: 'case.create' },
                                                  body));
            sentCase = d.case;
            ctx.store.put(d.case);
            for (const r of rows.values())
                showRow(r);
            // open the case once every file has its answer
            send.textContent = 'Case sent — uploading the images…';
            await settled(finished);
            if (dead)
                return;
            if ([...rows.values()].some((r) => r.f.state === 'failed')) {
                fill(err, 'The case was sent, but some files were refused ' +
                     '(see the list). ',
                     h('a', { href: `#/case/${sentCase.case_id}` },
                       'Open the case'));
                err.hidden = false;
                send.textContent = 'Case sent';
                return;
            }
            ctx.go(`#/case/${sentCase.case_id}`);
        } catch (ex) {
            err.textContent = `Not sent: ${ex.message}`;
            err.hidden = false;
            send.disabled = false;
            send.textContent = 'Send case';
        }
    });

    fill(main, h('a', { href: '#/inbox', class: 'back' }, '‹ Inbox'), form);
    document.title = 'New case — Hashi';
    question.focus();
    return () => {
        dead = true;
        ctx.store.removeEventListener('cases', onCases);
    };
}
