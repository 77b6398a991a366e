// newcase — the requester's "new case" form: the question, priority,
// specialty (or a named specialist), the patient's age and sex, history,
// and the studies to attach, picked from the clinic's studies (QIDO-RS).
// The case id is made here once per form, so pressing "Send" again after
// a cut creates the case once (hashi.v1 idempotency).

import { api, h, fill, qido, dv, dvAll, ulid } from './util.js';

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
        return h('li', {}, box,
            h('label', { for: id },
              h('span', { class: 'pt-name' }, dv(o, '00100010') || 'No name'),
              h('span', { class: 'meta' },
                [fmtDate(dv(o, '00080020')), dvAll(o, '00080061').join('/'),
                 dv(o, '00081030'), n ? `${n} images` : '',
                 dv(o, '00100020') ? `ID ${dv(o, '00100020')}` : '']
                    .filter(Boolean).join(' · '))));
    }

    qido('/dicomweb/studies?limit=50').then((list) => {
        if (dead)
            return;
        fill(studyList, list.length ? list.map(studyItem)
            : h('li', { class: 'muted' },
                'No studies of your clinic yet. You can send the case now; ' +
                'images sent later are not attached.'));
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
        const uids = [...studyList.querySelectorAll('input:checked')]
            .map((b) => b.value);
        if (uids.length)
            body.study_uids = uids;
        err.hidden = true;
        send.disabled = true;
        send.textContent = 'Sending…';
        try {
            const d = await api('POST', '/api/cases', body);
            ctx.store.put(d.case);
            ctx.go(`#/case/${d.case.case_id}`);
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
    };
}
