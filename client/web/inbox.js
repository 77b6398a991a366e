// inbox — the live list of the cases the user sees (a requester: the
// clinic's; a specialist: those routed to them or their specialty).
// Open cases first, STAT before urgent before routine, then the most
// recently changed; answered cases below, closed ones last.  New cases
// arrive through hashi.v1 events (app.js's store) without a reload, are
// highlighted and announced to screen readers.  A case changed since
// the user last had it open on this device is marked unread; an
// unclaimed one counts down to its escalation; an ambulance crew's case
// whose patient has not arrived shows the crew's ETA.

import { api, h, fill, ago, fmtTime, patientLine, badges, imagesCount,
         countdown, tickCountdowns, PRIORITY_TEXT } from './util.js';

const PRIO = { stat: 0, urgent: 1, routine: 2 };
const OPEN = new Set(['new', 'claimed', 'reopened']);

// What the user has seen, per device: case_id -> the case's updated_at
// when its page last showed it (localStorage, one entry per login).  A
// case whose updated_at is later has events the user has not seen.
function seenKey(login) {
    return `hashi.seen.${login}`;
}

function seenMap(login) {
    try {
        return JSON.parse(localStorage.getItem(seenKey(login))) || {};
    } catch (err) {
        return {};
    }
}

// seen: seenMap(login), read once per render of the list.
function isUnread(seen, c) {
    return (seen[c.case_id] || 0) < (c.updated_at || 0);
}

// The case page calls this with each version of the case it shows.
export function markSeen(login, c) {
    const m = seenMap(login);
    if ((m[c.case_id] || 0) >= (c.updated_at || 0))
        return;
    m[c.case_id] = c.updated_at || 0;
    try {
        localStorage.setItem(seenKey(login), JSON.stringify(m));
    } catch (err) {
        // storage full or refused: the marker stays, nothing breaks
    }
}

function order(a, b) {
    return (PRIO[a.priority] ?? 3) - (PRIO[b.priority] ?? 3) ||
        (b.updated_at || 0) - (a.updated_at || 0);
}

// "ETA 14:32 · in 6 min" (minutes rounded up: a patient 5 min 10 s out
// is "in 6 min"; "due now" once passed) for a crew's case whose patient
// has not arrived; null otherwise.  The case page's card says the same
// from the same fields (crew.js): arrived_at is set by case.link.  Kept
// current by the inbox's 15-second render.
function etaLine(c, now = Date.now()) {
    const p = c.prearrival;
    if (!p || !p.eta || p.arrived_at)
        return null;
    const min = Math.ceil((p.eta - now) / 60000);
    const left = min <= 0 ? 'due now'
        : min < 60 ? `in ${min} min`
        : `in ${Math.floor(min / 60)} h ${String(min % 60).padStart(2, '0')}` +
          ' min';
    return h('span', { class: 'eta' + (min <= 0 ? ' eta-now' : ''),
                       title: p.destination ? `To ${p.destination}` : null },
             `ETA ${fmtTime(p.eta)} · ${left}`);
}

function caseItem(c, me, fresh, seen) {
    const who = [];
    if (c.specialty)
        who.push(c.specialty);
    if (c.claimed_by)
        who.push(c.claimed_by === me.login ? 'claimed by you'
                                           : `claimed by ${c.claimed_by}`);
    else if (c.specialist)
        who.push(`for ${c.specialist}`);
    if (me.role !== 'requester' && c.clinic)
        who.push(c.clinic);
    const n = c.images ? c.images.received : 0;
    const count = imagesCount(c.images, '/');
    const unread = isUnread(seen, c);
    const due = c.status === 'new' && c.due_at > Date.now();
    return h('li', { class: `case-item prio-${c.priority}` +
                            (fresh ? ' fresh' : '') +
                            (unread ? ' unread' : ''),
                     'data-case-id': c.case_id },
        h('a', { href: `#/case/${c.case_id}`, class: 'case-link' },
            h('span', { class: 'badges' },
              unread ? h('span', { class: 'badge unread-dot',
                                   title: 'Changed since you last ' +
                                          'opened it' }, 'Unread')
                     : null,
              badges(c),
              c.escalation_level > 0
                  ? h('span', { class: 'badge escalated' }, 'Escalated')
                  : null,
              due ? h('span', { class: 'badge due' }, 'escalates in ',
                      h('span', { 'data-due': c.due_at },
                        countdown(c.due_at)))
                  : null),
            etaLine(c),
            h('span', { class: 'question' }, c.question || '(no question)'),
            h('span', { class: 'meta' },
              patientLine(c.patient), ' · ',
              h('span', { class: 'images-n' },
                `${count} image${n === 1 && count === '1' ? '' : 's'}`),
              ' · ',
              h('time', { datetime: new Date(c.created_at).toISOString(),
                          'data-ms': c.created_at }, ago(c.created_at))),
            who.length ? h('span', { class: 'meta' }, who.join(' · '))
                       : null));
}

// The clinic's edge gateways, one line each: when each was last heard
// from and how many files wait in its queue; a gateway silent for over a
// minute is marked stale (its link or its power may be down).
const GATEWAY_STALE_MS = 60000;

function gatewayLine(g) {
    if (!g.last_seen)
        return h('li', { class: 'gateway stale' },
                 `Gateway ${g.name}: never heard from`);
    const stale = Date.now() - g.last_seen > GATEWAY_STALE_MS;
    const st = g.status || {};
    return h('li', { class: `gateway${stale ? ' stale' : ''}` },
        `Gateway ${g.name} last seen ${fmtTime(g.last_seen)} ` +
        `(${ago(g.last_seen)}), ${st.waiting ?? 0} waiting`,
        st.in_flight ? `, ${st.in_flight} sending` : '',
        stale ? ' — stale: not heard from for over a minute' : '',
        st.last_error ? h('span', { class: 'meta' },
                          ` · last error: ${st.last_error}`) : null);
}

export function mount(main, ctx) {
    const { store, me } = ctx;
    const known = new Set(store.cases.keys());
    const fresh = new Set();
    const openList = h('ul', { class: 'cases', 'aria-labelledby': 'h-open' });
    const doneList = h('ul', { class: 'cases',
                               'aria-labelledby': 'h-done' });
    const closedList = h('ul', { class: 'cases',
                                 'aria-labelledby': 'h-closed' });
    const openHead = h('h2', { id: 'h-open' }, 'Open');
    const doneHead = h('h2', { id: 'h-done' }, 'Answered');
    const closedHead = h('h2', { id: 'h-closed' }, 'Closed');
    const empty = h('p', { class: 'muted empty', hidden: true });
    const announce = h('p', { class: 'sr-only', 'aria-live': 'polite' });
    const title = me.role === 'requester'
        ? `Cases of ${me.clinic}` : 'Your inbox';
    const top = h('div', { class: 'view-head' },
        h('h1', {}, title),
        me.role === 'requester' || me.role === 'admin'
            ? h('a', { href: '#/new', class: 'button primary' }, 'New case')
            : null);

    const gateways = h('ul', { class: 'gateways', 'aria-label':
                               'Gateways of the clinic', hidden: true });
    const seesGateways = me.role === 'requester' || me.role === 'admin';
    let gwList = [];
    async function loadGateways() {
        try {
            const d = await api('GET', '/api/gateways');
            gwList = (d && d.gateways) || [];
        } catch (err) {
            return;     // shown again at the next try
        }
        renderGateways();
    }
    function renderGateways() {
        fill(gateways, gwList.map(gatewayLine));
        gateways.hidden = !gwList.length;
    }

    // Rendered again when the next unclaimed case falls due, so it is
    // marked overdue even if no event says so (the escalation goes to
    // others than the first specialist).
    let dueTimer = null;
    function watchDue(all) {
        clearTimeout(dueTimer);
        const now = Date.now();
        const next = Math.min(...all.filter((c) => c.status === 'new' &&
                                           c.due_at > now)
                                    .map((c) => c.due_at));
        if (Number.isFinite(next))
            dueTimer = setTimeout(render, next - now + 50);
    }

    function render() {
        const all = [...store.cases.values()];
        watchDue(all);
        const open = all.filter((c) => OPEN.has(c.status)).sort(order);
        const recent = (a, b) => (b.updated_at || 0) - (a.updated_at || 0);
        const done = all.filter((c) => c.status === 'answered').sort(recent);
        const closed = all.filter((c) => c.status === 'closed').sort(recent);
        const seen = seenMap(me.login);
        fill(openList, open.map((c) => caseItem(c, me, fresh.has(c.case_id),
                                                seen)));
        fill(doneList, done.map((c) => caseItem(c, me, false, seen)));
        fill(closedList, closed.map((c) => caseItem(c, me, false, seen)));
        openHead.textContent = `Open (${open.length})`;
        doneHead.textContent = `Answered (${done.length})`;
        closedHead.textContent = `Closed (${closed.length})`;
        doneHead.hidden = doneList.hidden = !done.length;
        closedHead.hidden = closedList.hidden = !closed.length;
        if (!store.loaded) {
            empty.textContent = 'Loading cases…';
            empty.hidden = false;
        } else {
            empty.textContent = me.role === 'requester'
                ? 'No cases yet. Send one with “New case”.'
                : 'No cases for you right now. New ones appear here at once.';
            empty.hidden = all.length > 0;
        }
        const stat = open.filter((c) => c.priority === 'stat' &&
                                        c.status === 'new').length;
        document.title = (stat ? `(${stat} STAT) ` : '') + 'Inbox — Hashi';
    }

    function onCases(e) {
        const c = e.detail;
        if (c && !known.has(c.case_id)) {
            known.add(c.case_id);
            if (store.loaded) {
                fresh.add(c.case_id);
                announce.textContent = `New ` +
                    `${PRIORITY_TEXT[c.priority] || ''} case: ${c.question}`;
            }
        } else if (!c) {
            for (const id of store.cases.keys())
                known.add(id);
        }
        render();
    }

    // A message changes its case (the server's updated_at is its time),
    // though the event carries no Case: unread unless it is one's own.
    function onMessage(e) {
        const m = e.detail;
        const c = m && store.cases.get(m.case_id);
        if (!c || (c.updated_at || 0) >= m.created_at)
            return;
        c.updated_at = m.created_at;
        if (m.author === me.login)
            markSeen(me.login, c);
        render();
    }

    store.addEventListener('cases', onCases);
    store.addEventListener('message', onMessage);
    store.addEventListener('arrived', render);
    // "x min ago" and overdue markers follow the clock, not the events.
    const tick = setInterval(render, 15000);
    const countdowns = tickCountdowns(main, render);
    const gwTick = seesGateways ? setInterval(loadGateways, 30000) : null;
    fill(main, top, gateways, announce, empty, openHead, openList, doneHead,
         doneList, closedHead, closedList);
    render();
    if (seesGateways)
        loadGateways();
    return () => {
        store.removeEventListener('cases', onCases);
        store.removeEventListener('message', onMessage);
        store.removeEventListener('arrived', render);
        clearInterval(tick);
        clearInterval(countdowns);
        clearTimeout(dueTimer);
        clearInterval(gwTick);
    };
}
