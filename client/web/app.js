// app — the web client's entry point: who is logged in, the live
// connection, the shared case store, and the hash router that mounts one
// view at a time (login.js, inbox.js, case.js, newcase.js).
//
// A view module exports mount(main, ctx) and returns an unmount function.
// ctx = { me, store, live, go(hash) }.  The store holds the cases the
// user sees (without their threads) and re-emits hashi.v1 events as DOM
// events, so views only listen:
//   "cases"    the list changed (detail = the changed case, if one)
//   "message"  detail = Message (message.new)
//   "receipt"  detail = {message_id, case_id, user, read_at}
//   "arrived"  detail = {case_id, study_uid, received, images}
//   "escalated" detail = {case, escalation}

import { api, h, fill, fmtTime } from './util.js';
import { Live } from './live.js';
import * as loginView from './login.js';
import * as inboxView from './inbox.js';
import * as caseView from './case.js';
import * as newCaseView from './newcase.js';
import * as crewView from './crew.js';
import { pushSetup } from './push.js';

class Store extends EventTarget {
    constructor() {
        super();
        this.cases = new Map();
        this.loaded = false;
    }

    // Keeps the newer of two versions of a case (by updated_at).
    put(c, quiet) {
        if (!c || !c.case_id)
            return;
        const old = this.cases.get(c.case_id);
        if (old && (old.updated_at || 0) > (c.updated_at || 0))
            return;
        this.cases.set(c.case_id, Object.assign({}, old, c));
        if (!quiet)
            this.emit('cases', this.cases.get(c.case_id));
    }

    emit(name, detail) {
        this.dispatchEvent(new CustomEvent(name, { detail }));
    }

    async reload() {
        const d = await api('GET', '/api/cases?limit=200');
        for (const c of (d && d.cases) || [])
            this.put(c, true);
        this.loaded = true;
        this.emit('cases', null);
    }

    onEvent(ev) {
        const b = ev.body || {};
        switch (ev.kind) {
        case 'message.new':
            if (b.message)
                this.emit('message', b.message);
            break;
        case 'message.read':
            if (b.receipt)
                this.emit('receipt', b.receipt);
            break;
        case 'images.arrived': {
            // b.images: the case's {received, expected} (expected null
            // until the sender announced its studies with study.expect)
            const c = this.cases.get(ev.case_id);
            const n = (b.images && b.images.received) ?? b.received;
            const images = { received: n,
                             expected: b.images ? b.images.expected : null };
            if (c && typeof n === 'number')
                c.images = images;
            this.emit('arrived', { case_id: ev.case_id,
                                   study_uid: b.study_uid, received: n,
                                   images });
            break;
        }
        default:
            if (b.case)
                this.put(b.case);
            if (ev.kind === 'case.escalated')
                this.emit('escalated', b);
        }
    }
}

const main = document.getElementById('main');
const conn = document.getElementById('conn');
const nav = document.getElementById('nav');
let ctx = null;
let unmount = null;

const CONN_TEXT = { live: 'Live', connecting: 'Connecting…',
                    offline: 'Offline — retrying' };

// The link badge; when not live it says when the page last heard from
// the server ("last synced 14:05"), so what is shown can be judged.
function showConn(state) {
    const since = ctx && ctx.live.lastSync;
    conn.className = `conn conn-${state}`;
    conn.textContent = (CONN_TEXT[state] || '') +
        (state !== 'live' && since ? ` · last synced ${fmtTime(since)}` : '');
}

function route() {
    if (unmount) {
        unmount();
        unmount = null;
    }
    const hash = location.hash || '#/inbox';
    if (!ctx) {
        unmount = loginView.mount(main, { onLogin: start });
        return;
    }
    let m;
    if ((m = hash.match(/^#\/case\/([A-Za-z0-9_-]{1,64})$/)))
        unmount = caseView.mount(main, ctx, m[1]);
    else if (hash === '#/new')
        unmount = (ctx.me.role === 'crew' ? crewView : newCaseView)
            .mount(main, ctx);
    else
        unmount = inboxView.mount(main, ctx);
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
}

function go(hash) {
    if (location.hash === hash)
        route();
    else
        location.hash = hash;
}

// Logged in (me = the user object of /api/me or /api/login).
async function start(me) {
    const store = new Store();
    const live = new Live(me.login);
    ctx = { me, store, live, go };
    document.body.dataset.role = me.role;
    fill(document.getElementById('who'),
         h('span', { class: 'who-login' }, me.login),
         h('span', { class: 'who-clinic' }, me.clinic));
    document.getElementById('nav-new').hidden =
        !(me.role === 'requester' || me.role === 'admin' ||
          me.role === 'crew');
    nav.hidden = false;
    live.addEventListener('state', (e) => showConn(e.detail));
    live.addEventListener('event', (e) => {
        store.onEvent(e.detail);
        // A new STAT case buzzes a phone (where the browser allows it).
        const c = e.detail.body && e.detail.body.case;
        if (e.detail.kind === 'case.new' && c && c.priority === 'stat' &&
            navigator.vibrate)
            navigator.vibrate([200, 100, 200]);
    });
    live.addEventListener('welcome', () => {
        store.reload().catch(() => {});
    });
    live.addEventListener('unauthorized', () => stop());
    await live.init(async () => {
        const d = await api('GET', '/api/events?after=0&limit=1');
        return d.last_seq || 0;
    });
    store.reload().catch(() => {});
    live.start();
    pushSetup();
    if (!location.hash || location.hash === '#/login')
        location.hash = '#/inbox';
    route();
}

// Logged out (or the session ended): back to the login page.
function stop() {
    if (ctx)
        ctx.live.stop();
    ctx = null;
    nav.hidden = true;
    conn.textContent = '';
    conn.className = 'conn';
    delete document.body.dataset.role;
    route();
}

async function boot() {
    window.addEventListener('hashchange', route);
    window.addEventListener('hashi:unauthorized', () => {
        if (ctx)
            stop();
    });
    document.getElementById('logout').addEventListener('click', async () => {
        try {
            await api('POST', '/api/logout', {});
        } catch (err) {
            // the session is gone either way
        }
        stop();
    });
    // /api/me says {"user": null} when there is no session (no 401).
    try {
        const d = await api('GET', '/api/me');
        if (!d || !d.user)
            throw new Error('not logged in');
        await start(d.user);
    } catch (err) {
        route();
    }
}

boot();
