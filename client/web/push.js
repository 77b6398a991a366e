// push — makes the page an installable app that a push can wake: registers
// the service worker (sw.js: offline shell, notifications) and, where the
// browser has Web Push and the user allows notifications, subscribes this
// device (POST /api/push/subscriptions with the server's VAPID key).
// app.js calls pushSetup() once a user is logged in; failures are quiet
// (a browser without push still has the live page).

import { api } from './util.js';

function b64urlBytes(s) {
    const b = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

export async function pushSetup() {
    if (!('serviceWorker' in navigator))
        return null;
    let reg;
    try {
        reg = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    } catch (err) {
        console.warn('service worker:', err.message);
        return null;
    }
    if (!('PushManager' in window) || !('Notification' in window))
        return reg;
    try {
        // Asked here, once a user is logged in (not on a bare visit).
        if (Notification.permission === 'default')
            await Notification.requestPermission();
        if (Notification.permission !== 'granted')
            return reg;
        await navigator.serviceWorker.ready;
        let sub = await reg.pushManager.getSubscription();
        const { key } = await api('GET', '/api/push/vapid-public-key');
        if (!sub)
            sub = await reg.pushManager.subscribe({
                userVisibleOnly: true,
                applicationServerKey: b64urlBytes(key),
            });
        await api('POST', '/api/push/subscriptions', sub.toJSON());
    } catch (err) {
        // No push service reachable (headless, offline, blocked): the
        // page works as before.
        console.info('web push not available:', err.message);
    }
    return reg;
}
