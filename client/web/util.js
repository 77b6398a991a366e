// util — the small helpers every view uses: building DOM nodes (always
// with text, never with HTML: whatever a user or a DICOM file wrote is
// shown as the characters it is), the JSON fetch wrapper for /api and
// /dicomweb, client-generated ids, and time formatting.

// h('p', {class: 'x', onclick: f}, 'text', child...): an element.
// Attributes: "class", "for", "aria-*", "data-*" and other plain names are
// set as attributes; names starting with "on" add listeners; "hidden",
// "disabled", "checked", "value", "required" are set as properties.
// Children: strings and numbers become text nodes; null/false are skipped;
// arrays are flattened.
export function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false)
            continue;
        if (k.startsWith('on') && typeof v === 'function')
            e.addEventListener(k.slice(2), v);
        else if (['hidden', 'disabled', 'checked', 'value', 'required',
                  'selected', 'multiple'].includes(k))
            e[k] = v;
        else
            e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, children);
    return e;
}

function append(e, children) {
    for (const c of children) {
        if (c === null || c === undefined || c === false)
            continue;
        if (Array.isArray(c))
            append(e, c);
        else if (c instanceof Node)
            e.appendChild(c);
        else
            e.appendChild(document.createTextNode(String(c)));
    }
}

// Replaces every child of e with children.
export function fill(e, ...children) {
    e.replaceChildren();
    append(e, children);
    return e;
}

// ---- HTTP ------------------------------------------------------------------

export class ApiError extends Error {
    constructor(status, code, message) {
        super(message || code || `HTTP ${status}`);
        this.status = status;
        this.code = code || '';
    }
}

// api('GET', '/api/cases') -> parsed JSON.  Throws ApiError; a 401 also
// fires "hashi:unauthorized" on window (the app shows the login again).
// The session travels in the HttpOnly cookie.
export async function api(method, path, body, accept) {
    const opt = {
        method,
        credentials: 'same-origin',
        headers: { Accept: accept || 'application/json' },
    };
    if (body !== undefined) {
        opt.headers['Content-Type'] = 'application/json';
        opt.body = JSON.stringify(body);
    }
    let res;
    try {
        res = await fetch(path, opt);
    } catch (err) {
        throw new ApiError(0, 'network', 'No connection to the server');
    }
    if (res.status === 204)
        return null;
    let data = null;
    const text = await res.text();
    if (text) {
        try {
            data = JSON.parse(text);
        } catch (err) {
            data = null;
        }
    }
    if (!res.ok) {
        const e = data && data.error ? data.error : {};
        if (res.status === 401 && !path.startsWith('/api/login'))
            window.dispatchEvent(new Event('hashi:unauthorized'));
        throw new ApiError(res.status, e.code, e.message ||
                           `${res.status} ${res.statusText}`);
    }
    return data;
}

// QIDO-RS: an array of DICOM JSON objects ([] for 204).
export async function qido(path) {
    const d = await api('GET', path, undefined, 'application/dicom+json');
    return Array.isArray(d) ? d : [];
}

// The first value of a DICOM JSON attribute, as a string ('' if none).
// Person names are shown in their DICOM form: groups joined by "=",
// components by "^" shown as spaces.
export function dv(obj, tag) {
    const a = obj && obj[tag];
    if (!a || !Array.isArray(a.Value) || !a.Value.length)
        return '';
    const v = a.Value[0];
    if (a.vr === 'PN' && v && typeof v === 'object') {
        return ['Alphabetic', 'Ideographic', 'Phonetic']
            .map((g) => v[g] || '')
            .join('=').replace(/=+$/, '').replace(/\^/g, ' ').trim();
    }
    return v === null || v === undefined ? '' : String(v);
}

export function dvAll(obj, tag) {
    const a = obj && obj[tag];
    return a && Array.isArray(a.Value) ? a.Value.map(String) : [];
}

// ---- ids and times ----------------------------------------------------------

const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

// A ULID (26 characters of Crockford base32: time, then 80 random bits):
// the client-generated ids of hashi.v1 (case_id, message_id).
export function ulid() {
    let t = Date.now();
    let s = '';
    for (let i = 0; i < 10; i++) {
        s = B32[t % 32] + s;
        t = Math.floor(t / 32);
    }
    const r = crypto.getRandomValues(new Uint8Array(16));
    for (let i = 0; i < 16; i++)
        s += B32[r[i] % 32];
    return s;
}

const pad = (n) => String(n).padStart(2, '0');

// "14:05" today, "Mon 3 Mar 14:05" otherwise.
export function fmtTime(ms) {
    if (!ms)
        return '';
    const d = new Date(ms), now = new Date();
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (d.toDateString() === now.toDateString())
        return hm;
    return d.toLocaleDateString(undefined, {
        weekday: 'short', day: 'numeric', month: 'short',
    }) + ' ' + hm;
}

// "3 min ago" (for "how long has this STAT been waiting").
export function ago(ms) {
    if (!ms)
        return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60)
        return 'just now';
    if (s < 3600)
        return `${Math.floor(s / 60)} min ago`;
    if (s < 86400)
        return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
}

// A case's images: "3 of 5" (sep " of ") or "3/5" (sep "/") once the
// expected count is known, else "3"; its {received, expected} may be
// missing (0).
export function imagesCount(images, sep) {
    const n = images && typeof images.received === 'number'
        ? images.received : 0;
    const m = images && typeof images.expected === 'number'
        ? images.expected : null;
    return m === null ? String(n) : `${n}${sep}${m}`;
}

// "67 F", "F", "67", or "age/sex unknown".
export function patientLine(p) {
    const sex = { F: 'female', M: 'male', O: 'other' };
    const parts = [];
    if (p && p.age !== null && p.age !== undefined)
        parts.push(`${p.age} y`);
    if (p && p.sex)
        parts.push(sex[p.sex] || p.sex);
    return parts.length ? parts.join(', ') : 'age/sex not given';
}

export const STATUS_TEXT = {
    new: 'New — unclaimed',
    claimed: 'Claimed',
    answered: 'Answered',
    closed: 'Closed',
    reopened: 'Reopened',
};

export const PRIORITY_TEXT = { stat: 'STAT', urgent: 'Urgent',
                               routine: 'Routine' };

// When an unclaimed case became overdue (ms), or 0: its first deadline
// passed (the server's overdue_since, its first escalation), or due_at
// has passed and the escalation has not come yet.
export function overdueSince(c, now = Date.now()) {
    if (!c || c.status !== 'new')
        return 0;
    if (c.overdue_since)
        return c.overdue_since;
    return c.due_at && c.due_at <= now ? c.due_at : 0;
}

// A priority badge and a status badge, as spans; "Overdue since HH:MM"
// for an unclaimed case past its deadline.
export function badges(c) {
    const od = overdueSince(c);
    return [
        h('span', { class: `badge prio-${c.priority}` },
          PRIORITY_TEXT[c.priority] || c.priority),
        h('span', { class: `badge st-${c.status}` },
          STATUS_TEXT[c.status] || c.status),
        od ? h('span', { class: 'badge overdue', 'data-since': od },
               `Overdue since ${fmtTime(od)}`) : null,
    ];
}

// Time left until ms, for a live countdown: "4:07" under an hour, else
// "2 h 05 min"; "0:00" once passed.
export function countdown(ms, now = Date.now()) {
    const s = Math.max(0, Math.ceil((ms - now) / 1000));
    if (s < 3600)
        return `${Math.floor(s / 60)}:${pad(s % 60)}`;
    return `${Math.floor(s / 3600)} h ${pad(Math.floor(s % 3600 / 60))} min`;
}

// Live countdowns: every element of root with data-due (ms) shows
// countdown(data-due); onDue() when one reaches its time.  Returns the
// interval to clear.
export function tickCountdowns(root, onDue) {
    return setInterval(() => {
        const now = Date.now();
        let due = false;
        for (const el of root.querySelectorAll('[data-due]')) {
            const at = Number(el.dataset.due);
            el.textContent = countdown(at, now);
            due = due || at <= now;
        }
        if (due && onDue)
            onDue();
    }, 1000);
}
