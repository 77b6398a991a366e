// crew — the ambulance crew's page (issue 12): a pre-arrival STAT case in
// a few taps on a phone (age and sex, last known well, vitals, the Los
// Angeles Motor Scale, free text, ETA and destination), photos from the
// camera sent with the resumable upload (upload.js: a cut on the road
// resumes), and the pre-arrival card the case page shows everyone: the
// live ETA countdown, the vitals, "arrived" once the receiving team has
// linked the patient's study, and for that team the link button.
//
// The ranges are the server's (PROTOCOL.md case.create, "Pre-arrival"):
// checked here first so a gloved hand gets the message at once, and
// again by the server, whose refusal is shown as it says it.  The case id
// is made once per form, so "Send" again after a cut creates the case
// once; a photo's upload id is its sha256, so it goes once too.

import { api, h, fill, ulid, fmtTime, countdown } from './util.js';
import { request, uploadFiles } from './upload.js';

const VITALS = [
    // field, label, unit, lo, hi
    ['bp_sys', 'BP systolic', 'mmHg', 40, 300],
    ['bp_dia', 'BP diastolic', 'mmHg', 20, 200],
    ['heart_rate', 'Heart rate', '/min', 20, 250],
    ['spo2', 'SpO₂', '%', 50, 100],
    ['glucose', 'Glucose', 'mg/dL', 10, 1000],
    ['gcs', 'GCS', '', 3, 15],
];
// LAMS: facial droop 0-1, arm drift 0-2, grip strength 0-2 (sum 0-5).
const LAMS = [
    ['face', 'Facial droop', ['absent', 'present']],
    ['arm', 'Arm drift', ['absent', 'drifts down', 'falls rapidly']],
    ['grip', 'Grip', ['normal', 'weak', 'none']],
];
const DESTINATIONS = ['City Hospital Stroke Unit', 'Demo City Hospital'];

function field(label, input, unit) {
    return h('label', { class: 'field' }, h('span', {}, label), input,
             unit ? h('span', { class: 'unit' }, unit) : null);
}

function num(id, lo, hi) {
    return h('input', { id, type: 'number', inputmode: 'numeric',
                        min: String(lo), max: String(hi), step: '1' });
}

// "HH:MM" today (yesterday if that is still ahead of now) as ms.
function timeToday(hhmm, now = Date.now()) {
    const m = /^(\d{2}):(\d{2})$/.exec(hhmm || '');
    if (!m)
        return null;
    const d = new Date(now);
    d.setHours(Number(m[1]), Number(m[2]), 0, 0);
    if (d.getTime() > now + 5 * 60000)
        d.setDate(d.getDate() - 1);
    return d.getTime();
}

export function mount(main, ctx) {
    const caseId = ulid();
    let dead = false;
    let sending = false;
    let created = false;

    const age = num('cr-age', 0, 150);
    const sex = h('select', { id: 'cr-sex' },
        h('option', { value: '' }, '—'), h('option', { value: 'F' }, 'F'),
        h('option', { value: 'M' }, 'M'), h('option', { value: 'O' }, 'other'));
    const lkw = h('input', { id: 'cr-lkw', type: 'time',
                             value: fmtTime(Date.now()) });   // HH:MM
    const vit = {};
    for (const [f, , , lo, hi] of VITALS)
        vit[f] = num(`cr-${f.replace('_', '-')}`, lo, hi);
    const lams = {};
    for (const [k, , opts] of LAMS)
        lams[k] = h('select', { id: `cr-lams-${k}` },
                    opts.map((o, i) => h('option', { value: String(i) },
                                         `${i} ${o}`)));
    const lamsSum = h('output', { id: 'cr-lams-sum' }, 'LAMS 0');
    const text = h('textarea', { id: 'cr-text', rows: '2', maxlength: '2000',
                                 placeholder: 'What you see (one line)' });
    const eta = h('input', { id: 'cr-eta', type: 'number', inputmode:
                             'numeric', min: '0', max: '1440', value: '15' });
    const dest = h('input', { id: 'cr-dest', type: 'text', list: 'cr-dests',
                              value: DESTINATIONS[0], maxlength: '128' });
    const prio = ['stat', 'urgent'].map((p, i) => h('label',
        { class: `radio prio-${p}` },
        h('input', { type: 'radio', name: 'cr-priority', value: p,
                     checked: i === 0 }),
        ` ${p === 'stat' ? 'STAT' : 'Urgent'}`));
    const camera = h('input', { id: 'cr-photos', type: 'file',
                                accept: 'image/*', capture: 'environment',
                                multiple: true });
    const photoList = h('ul', { id: 'cr-photo-list', class: 'files' });
    const errorBox = h('p', { id: 'cr-error', class: 'error', role: 'alert',
                              hidden: true });
    const status = h('p', { id: 'cr-status', role: 'status' });
    const send = h('button', { type: 'submit', class: 'primary big' },
                   'Send to the stroke team');
    let photos = [];            // File objects, in the order taken

    const form = h('form', { class: 'crew-form', novalidate: true },
        h('h1', {}, 'Pre-arrival'),
        h('fieldset', {}, h('legend', {}, 'Patient'),
          field('Age', age, 'y'), field('Sex', sex),
          field('Last known well', lkw)),
        h('fieldset', {}, h('legend', {}, 'Vitals'),
          VITALS.map(([f, label, unit]) => field(label, vit[f], unit))),
        h('fieldset', {}, h('legend', {}, 'LAMS'),
          LAMS.map(([k, label]) => field(label, lams[k])), lamsSum),
        field('Notes', text),
        h('fieldset', {}, h('legend', {}, 'Arrival'),
          field('ETA', eta, 'min'), field('To', dest),
          h('datalist', { id: 'cr-dests' },
            DESTINATIONS.map((d) => h('option', { value: d }))),
          h('div', { class: 'radios' }, prio)),
        h('fieldset', {}, h('legend', {}, 'Photos, ECG strip'),
          h('label', { class: 'button camera' }, '📷 Take photo', camera),
          photoList),
        errorBox, send, status);

    function lamsTotal() {
        return LAMS.reduce((n, [k]) => n + Number(lams[k].value), 0);
    }
    for (const k in lams)
        lams[k].addEventListener('change', () => {
            lamsSum.textContent = `LAMS ${lamsTotal()}`;
        });

    function showPhotos(report) {
        fill(photoList, photos.map((f, i) => {
            const r = report && report.files[i];
            const state = r ? r.state : 'chosen';
            return h('li', { 'data-state': state },
                     h('span', { class: 'name' }, f.name || `photo ${i + 1}`),
                     ' ', h('span', { class: 'state' },
                            r && r.state === 'failed' ? `refused: ${r.error}`
                            : r && r.state === 'done' ? 'sent'
                            : r ? `${Math.round(100 * (r.acked || 0) /
                                                Math.max(1, r.size))} %`
                            : `${Math.round(f.size / 1024)} kB`));
        }));
    }
    camera.addEventListener('change', () => {
        photos = photos.concat([...camera.files]);
        camera.value = '';
        showPhotos(null);
    });

    // The request, or a message naming the first bad field.
    function build() {
        const v = {};
        for (const [f, label, unit, lo, hi] of VITALS) {
            if (vit[f].value === '')
                continue;
            const x = Number(vit[f].value);
            if (!Number.isInteger(x) || x < lo || x > hi) {
                vit[f].focus();
                return `${label} must be ${lo}–${hi}${unit ? ' ' + unit : ''}`;
            }
            v[f] = x;
        }
        if (v.bp_sys !== undefined && v.bp_dia !== undefined &&
            v.bp_dia >= v.bp_sys)
            return 'BP diastolic must be below systolic';
        const e = Number(eta.value);
        if (eta.value === '' || !Number.isInteger(e))
            return 'ETA: minutes from now';
        if (e < 0)
            return 'The ETA is in the past: minutes from now, 0 or more';
        const a = age.value === '' ? null : Number(age.value);
        if (a !== null && (!Number.isInteger(a) || a < 0 || a > 150))
            return 'Age must be 0–150';
        const known = timeToday(lkw.value);
        if (known === null)
            return 'Last known well: a time';
        const lamsN = lamsTotal();
        const req = {
            type: 'case.create', case_id: caseId,
            question: text.value.trim() ||
                `Pre-arrival stroke alert, LAMS ${lamsN}`,
            priority: form.querySelector('input[name=cr-priority]:checked')
                .value,
            specialty: 'neurology',
            prearrival: { last_known_well: known, vitals: v, lams: lamsN,
                          eta_min: e, destination: dest.value.trim() ||
                              DESTINATIONS[0] },
        };
        if (a !== null || sex.value) {
            req.patient = {};
            if (a !== null)
                req.patient.age = a;
            if (sex.value)
                req.patient.sex = sex.value;
        }
        return req;
    }

    form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        if (sending)
            return;
        errorBox.hidden = true;
        const req = build();
        if (typeof req === 'string') {
            errorBox.textContent = req;
            errorBox.hidden = false;
            return;
        }
        sending = true;
        send.disabled = true;
        try {
            if (!created) {
                status.textContent = 'Sending the case…';
                await request(ctx.live, req);
                created = true;
            }
            if (photos.length) {
                status.textContent = 'Case sent; sending photos…';
                const r = await uploadFiles(ctx.live, photos, {
                    kind: 'photo', case_id: caseId,
                    onProgress: (p) => !dead && showPhotos(p),
                });
                if (dead)
                    return;
                showPhotos(r);
                if (r.failed) {
                    status.textContent = '';
                    errorBox.textContent = `Case sent; ${r.failed} photo(s) ` +
                        'refused (see above). Remove them or take another.';
                    errorBox.hidden = false;
                    photos = photos.filter((f, i) =>
                        r.files[i].state !== 'done');
                    return;
                }
            }
            ctx.go(`#/case/${caseId}`);
        } catch (err) {
            errorBox.textContent = String(err.message || err);
            errorBox.hidden = false;
            status.textContent = '';
        } finally {
            sending = false;
            send.disabled = false;
        }
    });

    fill(main, form);
    return () => { dead = true; };
}

// ---- the pre-arrival card (case page) ---------------------------------------

function vitalsLine(v) {
    const out = [];
    if (v.bp_sys !== null || v.bp_dia !== null)
        out.push(`BP ${v.bp_sys ?? '?'}/${v.bp_dia ?? '?'}`);
    for (const [f, label, unit] of VITALS.slice(2))
        if (v[f] !== null && v[f] !== undefined)
            out.push(`${label} ${v[f]}${unit && unit !== '/min' ? ' ' + unit
                                                                : ''}`);
    return out.join(' · ');
}

// The card for a case with pre-arrival data (null otherwise).  ETA as a
// live countdown (an element with data-due: the case page's tick updates
// it); "Arrived" once linked; for the receiving team, the link button:
// the team's own studies received since the case, one tap each.
// onCase(case) is given the case a link returns.
export function prearrivalCard(c, ctx, onCase) {
    const p = c && c.prearrival;
    if (!p)
        return null;
    const now = Date.now();
    let arrival;
    if (p.arrived_at)
        arrival = h('p', { class: 'arrived', id: 'pa-arrived' },
                    h('strong', {}, 'Arrived'),
                    ` ${fmtTime(p.arrived_at)}` +
                    (p.arrived_by ? ` — handed over to ${p.arrived_by}` : ''));
    else if (p.eta > now)
        arrival = h('p', { class: 'eta', id: 'pa-eta' }, 'ETA ',
                    h('strong', { 'data-due': p.eta }, countdown(p.eta, now)),
                    ` (${fmtTime(p.eta)}) to ${p.destination}`);
    else
        arrival = h('p', { class: 'eta', id: 'pa-eta' },
                    `ETA passed ${fmtTime(p.eta)} — to ${p.destination}`);
    const card = h('section', { class: 'card prearrival',
                                'aria-label': 'Pre-arrival' },
        arrival,
        h('p', {}, `Last known well ${fmtTime(p.last_known_well)}`,
          p.lams !== null ? ` · LAMS ${p.lams}` : ''),
        h('p', { class: 'vitals' }, vitalsLine(p.vitals || {})));
    if (!p.arrived_at && ctx.me.role === 'specialist')
        card.append(linkControl(c, ctx, onCase));
    return card;
}

function linkControl(c, ctx, onCase) {
    const box = h('div', { class: 'link-ct' });
    const msg = h('p', { class: 'error', role: 'alert', hidden: true });
    const open = h('button', { type: 'button', id: 'pa-link-open' },
                   'Patient arrived: link their study');
    open.addEventListener('click', async () => {
        msg.hidden = true;
        open.disabled = true;
        try {
            const d = await api('GET', `/api/cases/` +
                                `${encodeURIComponent(c.case_id)}/link`);
            const list = d.studies || [];
            fill(box, list.length ? h('ul', { class: 'link-choices' },
                list.map((s) => h('li', {},
                                  linkButton(c, s, ctx, onCase, msg))))
                : h('p', { class: 'muted' }, 'No study of yours since the ' +
                    'case was sent: send the CT first.'), msg);
        } catch (err) {
            msg.textContent = String(err.message || err);
            msg.hidden = false;
            open.disabled = false;
        }
    });
    fill(box, open, msg);
    return box;
}

// One tap, one hashi.v1 case.link (retried with its id after a cut).
function linkButton(c, s, ctx, onCase, msg) {
    const b = h('button', { type: 'button', class: 'link-study',
                            'data-study': s.study_uid },
                `Link ${s.modalities || ''} ${s.description || 'study'} ` +
                `(${s.instances} images, ${fmtTime(s.received_at)})`);
    b.addEventListener('click', async () => {
        b.disabled = true;
        try {
            const d = await request(ctx.live, { type: 'case.link',
                                                case_id: c.case_id,
                                                study_uid: s.study_uid });
            onCase(d.case);
        } catch (err) {
            msg.textContent = String(err.message || err);
            msg.hidden = false;
            b.disabled = false;
        }
    });
    return b;
}
