// inbox — the live list of the cases the user sees (a requester: the
// clinic's; a specialist: those routed to them or their specialty).
// Open cases first, STAT before urgent before routine, then the most
// recently changed; answered and closed cases below.  New cases arrive
// through hashi.v1 events (app.js's store) without a reload, are
// highlighted and announced to screen readers.

import { api, h, fill, ago, fmtTime, patientLine, badges, imagesCount,
         PRIORITY_TEXT } from './util.js';

const PRIO = { stat: 0, urgent: 1, routine: 2 };
const OPEN = new Set(['new', 'claimed', 'reopened']);

function order(a, b) {
    return (PRIO[a.priority] ?? 3) - (PRIO[b.priority] ?? 3) ||
        (b.updated_at || 0) - (a.updated_at || 0);
}

function caseItem(c, me, fresh) {
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
    return h('li', { class: `case-item prio-${c.priority}` +
                            (fresh ? ' fresh' : ''),
                     'data-case-id': c.case_id },
        h('a', { href: `#/case/${c.case_id}`, class: 'case-link' },
            h('span', { class: 'badges' }, badges(c),
              c.escalation_level > 0
                  ? h('span', { class: 'badge escalated' }, 'Escalated')
                  : null),
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
    const doneList = h('ul', { class: 'cases', 'aria-labelledby': 'h-done' });
    const openHead = h('h2', { id: 'h-open' }, 'Open');
    const doneHead = h('h2', { id: 'h-done' }, 'Answered and closed');
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
        const done = all.filter((c) => !OPEN.has(c.status))
            .sort((a, b) => (b.updated_at || 0) - (a.updated_at || 0));
        fill(openList, open.map((c) => caseItem(c, me, fresh.has(c.case_id))));
        fill(doneList, done.map((c) => caseItem(c, me, false)));
        openHead.textContent = `Open (${open.length})`;
        doneHead.textContent = `Answered and closed (${done.length})`;
        doneHead.hidden = doneList.hidden = !done.length;
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

    store.addEventListener('cases', onCases);
    store.addEventListener('arrived', render);
    // "x min ago" and overdue markers follow the clock, not the events.
    const tick = setInterval(render, 15000);
    const gwTick = seesGateways ? setInterval(loadGateways, 30000) : null;
    fill(main, top, gateways, announce, empty, openHead, openList, doneHead,
         doneList);
    render();
    if (seesGateways)
        loadGateways();
    return () => {
        store.removeEventListener('cases', onCases);
        store.removeEventListener('arrived', render);
        clearInterval(tick);
        clearTimeout(dueTimer);
        clearInterval(gwTick);
    };
}
