// sw.js — Hashi's service worker: the offline shell and Web Push.
//
// Offline shell: the page's own files are served network-first and kept
// in a cache as they pass, so the app opens without the network and
// shows what it last knew: the last answers of /api/me, the inbox list
// (/api/cases?...) and the events cursor are kept too (network-first,
// cache only when the network fails).  A 401, or a logout passing
// through, empties the kept API answers: a device that was logged out
// shows no patient data offline.  Images and DICOMweb are never kept.
//
// Push: the server's payload is {kind, case_id, priority} (no patient
// data, server/webpush.c); it becomes a notification tagged by case, which
// opens (or focuses) the case page when tapped.  STAT ones ask to stay
// until seen.

const SHELL = 'hashi-shell-v1';
const API = 'hashi-api-v1';
const PRECACHE = ['/', '/index.html', '/style.css', '/app.js', '/util.js',
                  '/live.js', '/login.js', '/inbox.js', '/case.js',
                  '/newcase.js', '/upload.js', '/crew.js', '/viewer.js',
                  '/push.js',
                  '/manifest.webmanifest', '/icon.svg'];

self.addEventListener('install', (ev) => {
    ev.waitUntil((async () => {
        const c = await caches.open(SHELL);
        // One by one: a file another version of the page no longer has
        // must not fail the whole install.
        await Promise.allSettled(PRECACHE.map((u) => c.add(u)));
        await self.skipWaiting();
    })());
});

self.addEventListener('activate', (ev) => {
    ev.waitUntil((async () => {
        for (const k of await caches.keys())
            if (k !== SHELL && k !== API)
                await caches.delete(k);
        await self.clients.claim();
    })());
});

// The API answers worth showing offline: who I am, the inbox list, the
// events cursor the page starts its connection with.
function keptApi(url) {
    return url.pathname === '/api/me' || url.pathname === '/api/cases' ||
        (url.pathname === '/api/events' &&
         url.searchParams.get('after') === '0');
}

async function networkFirst(req, cacheName) {
    try {
        const res = await fetch(req);
        if (res.ok)
            await (await caches.open(cacheName)).put(req, res.clone());
        else if (res.status === 401)
            await caches.delete(API);
        return res;
    } catch (err) {
        const hit = await (await caches.open(cacheName)).match(req);
        if (hit)
            return hit;
        if (req.mode === 'navigate') {
            const shell = await (await caches.open(SHELL)).match('/');
            if (shell)
                return shell;
        }
        throw err;
    }
}

self.addEventListener('fetch', (ev) => {
    const req = ev.request;
    const url = new URL(req.url);
    if (url.origin !== self.location.origin)
        return;
    if (req.method === 'POST' && url.pathname === '/api/logout') {
        ev.respondWith(caches.delete(API).then(() => fetch(req)));
        return;
    }
    if (req.method !== 'GET')
        return;
    if (url.pathname.startsWith('/api/')) {
        if (keptApi(url))
            ev.respondWith(networkFirst(req, API));
        return;
    }
    if (url.pathname.startsWith('/dicomweb') || url.pathname === '/ws' ||
        url.pathname === '/healthz' || url.pathname === '/metrics')
        return;
    ev.respondWith(networkFirst(req, SHELL));
});

const KIND_TEXT = {
    'case.new': 'New case',
    'case.escalated': 'Case escalated to you',
    'message.new': 'New message',
};
const PRIORITY_TEXT = { stat: 'STAT', urgent: 'Urgent', routine: 'Routine' };

self.addEventListener('push', (ev) => {
    let d = {};
    try {
        d = ev.data ? ev.data.json() : {};
    } catch (err) {
        d = {};
    }
    const prio = PRIORITY_TEXT[d.priority] || '';
    const title = `${prio ? prio + ' · ' : ''}` +
        `${KIND_TEXT[d.kind] || 'Hashi'}`;
    const body = d.case_id ? `Case ${d.case_id}` : 'Open Hashi';
    ev.waitUntil(self.registration.showNotification(title, {
        body,
        tag: d.case_id ? `case-${d.case_id}` : 'hashi',
        renotify: true,
        requireInteraction: d.priority === 'stat',
        icon: '/icon.svg',
        data: { case_id: d.case_id || null, kind: d.kind || null,
                priority: d.priority || null },
    }));
});

self.addEventListener('notificationclick', (ev) => {
    ev.notification.close();
    const id = ev.notification.data && ev.notification.data.case_id;
    const target = id ? `/#/case/${encodeURIComponent(id)}` : '/#/inbox';
    ev.waitUntil((async () => {
        const all = await self.clients.matchAll({ type: 'window' });
        for (const c of all) {
            if (new URL(c.url).origin === self.location.origin) {
                await c.focus();
                return c.navigate(target);
            }
        }
        return self.clients.openWindow(target);
    })());
});
