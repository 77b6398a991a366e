// live — the page's hashi.v1 connection (proto/PROTOCOL.md): one
// WebSocket to wss://HOST/ws, authenticated by the session cookie the
// upgrade carries (hello without a token), then replay + live events.
//
// Delivery is at-least-once: events are handed to the app once per
// event_id, then acknowledged (cumulative, at most every 200 ms).  The
// highest processed seq is kept in localStorage per login so a reload
// resumes where the page was.  A 4401 close means the session is gone:
// the app shows the login page.
//
// Honest link state: "live" only while frames flow.  After PING_MS
// without a frame the page sends a hashi.v1 ping; no frame PONG_MS after
// that and the link is taken for dead (a link that drops bytes silently
// never closes the socket), so the page is not live within
// PING_MS + PONG_MS (+ one tick) of the last frame.  The browser's
// "offline" event ends the session at once; "online" tries at once.
// While not live, attempts follow each other RETRY_MIN_MS doubling to
// RETRY_MAX_MS apart.  An attempt whose WebSocket has not opened after
// max(OPEN_MIN_MS, 3 x the last handshake's time, 4 x the round trip the
// page's requests see) is abandoned and the next one starts at once: on
// a dead link the TLS handshake hangs forever, and browsers open one
// WebSocket to a host at a time, so a hung attempt would hold back the
// one that would succeed.  So the page is live again within about
// OPEN_MIN_MS of the link's return.
//
// Emits on the Live object (an EventTarget):
//   "event"  detail = the event message {seq, event_id, kind, case_id, body}
//   "state"  detail = 'connecting' | 'live' | 'offline'
//   "welcome" detail = the welcome message (the app reloads its lists)
//   "unauthorized"
//   "frame"  detail = any other message (reply, upload.at, upload.done,
//            error): for upload.js, which sends requests and chunks
//            through send() and sendBinary() once welcomed
// lastSync: when a frame last came (ms), for "last synced HH:MM".

const ACK_DELAY_MS = 200;
const SEEN_MAX = 2000;
export const PING_MS = 4000;
const PONG_MS = 3000;
const TICK_MS = 500;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 1000;
const OPEN_MIN_MS = 1500;

// The link's round trip as the page's last requests saw it (request to
// first byte; the least of the last five), 0 if none: a WebSocket's TLS
// and upgrade take about two, over 1.6 s on a 400 ms link.
function rttMs() {
    const t = performance.getEntriesByType('resource').slice(-5)
        .map((x) => x.responseStart - x.requestStart).filter((x) => x > 0);
    return t.length ? Math.min(...t) : 0;
}

// Closes a socket that is no longer wanted, without hearing from it again.
function shut(ws, why) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
        ws.close(4000, why);
    } catch (err) {
        // a socket still connecting may refuse a reason; it goes anyway
        ws.close();
    }
}

export class Live extends EventTarget {
    constructor(login) {
        super();
        this.login = login;
        this.key = `hashi.seq.${login}`;
        this.lastSeq = Number(localStorage.getItem(this.key) || 0) || 0;
        this.acked = 0;
        this.seen = new Set();
        this.ws = null;             // the welcomed session
        this.trying = null;         // the attempt under way: {ws, timer}
        this.handshakeMs = 0;       // the last attempt's time to open
        this.backoff = RETRY_MIN_MS;
        this.timer = null;
        this.ackTimer = null;
        this.tick = null;
        this.stopped = false;
        this.state = null;
        this.lastFrame = 0;
        this.lastPing = 0;
        this.lastSync = 0;
        this.pingN = 0;
    }

    // The seq to start from when the page has no memory: the server's
    // last seq now (what happened before is in the REST lists).
    async init(fetchLastSeq) {
        if (!localStorage.getItem(this.key)) {
            try {
                this.lastSeq = await fetchLastSeq();
            } catch (err) {
                this.lastSeq = 0;
            }
        }
    }

    setState(s) {
        if (s === this.state)
            return;
        this.state = s;
        this.dispatchEvent(new CustomEvent('state', { detail: s }));
    }

    start() {
        this.stopped = false;
        this.onOnline = () => {
            // The link is back: do not wait for the next attempt.
            if (!this.stopped && !this.ws) {
                this.backoff = RETRY_MIN_MS;
                this.abandon();
                this.connect();
            }
        };
        this.onOffline = () => this.dead('the browser is offline');
        window.addEventListener('online', this.onOnline);
        window.addEventListener('offline', this.onOffline);
        this.tick = setInterval(() => this.watch(), TICK_MS);
        this.connect();
    }

    stop() {
        this.stopped = true;
        window.removeEventListener('online', this.onOnline);
        window.removeEventListener('offline', this.onOffline);
        clearInterval(this.tick);
        clearTimeout(this.timer);
        clearTimeout(this.ackTimer);
        this.abandon();
        if (this.ws) {
            this.ws.onclose = null;
            this.ws.close(1000, 'bye');
            this.ws = null;
        }
        this.setState('offline');
    }

    // Every tick while live: ping when quiet, give up when still quiet.
    watch() {
        if (!this.ws)
            return;
        const now = Date.now();
        const quiet = now - this.lastFrame;
        if (quiet > PING_MS + PONG_MS) {
            this.dead('no frame');
            return;
        }
        if (quiet >= PING_MS && now - this.lastPing >= PING_MS) {
            this.lastPing = now;
            this.send({ type: 'ping', id: `p${++this.pingN}` });
        }
    }

    // The session is gone (or as good as): not live, and try again.
    dead(why) {
        if (this.ws) {
            shut(this.ws, why);
            this.ws = null;
        }
        if (!navigator.onLine)
            this.abandon();
        if (this.stopped)
            return;
        this.setState('offline');
        this.retry();
    }

    // Gives up the attempt under way, if any.
    abandon() {
        if (!this.trying)
            return;
        clearTimeout(this.trying.timer);
        shut(this.trying.ws, 'gave up');
        this.trying = null;
    }

    connect() {
        clearTimeout(this.timer);
        this.timer = null;
        if (this.stopped || this.ws || this.trying)
            return;
        if (!navigator.onLine) {
            this.setState('offline');
            return;     // the "online" event tries again
        }
        if (this.state !== 'offline')
            this.setState('connecting');
        let ws;
        try {
            ws = new WebSocket(`wss://${location.host}/ws`, 'hashi.v1');
        } catch (err) {
            this.retry();
            return;
        }
        const t0 = Date.now();
        const wait = Math.max(OPEN_MIN_MS, 3 * this.handshakeMs,
                              4 * rttMs());
        // Not open in time: this one went nowhere; the next starts now.
        this.trying = { ws, timer: setTimeout(() => {
            this.abandon();
            this.connect();
        }, wait) };
        ws.onopen = () => {
            this.handshakeMs = Date.now() - t0;
            clearTimeout(this.trying.timer);
            // the welcome is a frame like any other: no frame, dead
            this.trying.timer = setTimeout(() => {
                this.abandon();
                this.connect();
            }, PING_MS + PONG_MS);
            ws.send(JSON.stringify({
                type: 'hello',
                last_seq: this.lastSeq,
                client: { name: 'hashi-web', version: '0.1.0' },
            }));
        };
        ws.onmessage = (m) => {
            if (this.ws !== ws) {
                clearTimeout(this.trying.timer);
                this.trying = null;
                this.ws = ws;
            }
            this.onMessage(m.data);
        };
        ws.onclose = (c) => {
            if (this.trying && this.trying.ws === ws) {
                clearTimeout(this.trying.timer);
                this.trying = null;
            }
            if (this.stopped)
                return;
            if (c.code === 4401) {
                this.stop();
                this.dispatchEvent(new Event('unauthorized'));
                return;
            }
            if (this.ws === ws)
                this.dead('closed');
            else
                this.retry();
        };
    }

    retry() {
        if (this.stopped || this.ws || this.trying || this.timer)
            return;
        const wait = this.backoff * (0.5 + Math.random() / 2);
        this.backoff = Math.min(this.backoff * 2, RETRY_MAX_MS);
        this.timer = setTimeout(() => {
            this.timer = null;
            this.connect();
        }, wait);
    }

    // false when there is no session to carry it
    send(obj) {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN)
            return false;
        this.ws.send(JSON.stringify(obj));
        return true;
    }

    // An upload chunk (PROTOCOL.md section 8), as send().
    sendBinary(buf) {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN)
            return false;
        this.ws.send(buf);
        return true;
    }

    // Bytes the socket holds, not yet handed to the network.
    get buffered() {
        return this.ws ? this.ws.bufferedAmount : 0;
    }

    onMessage(data) {
        if (typeof data !== 'string')
            return;
        this.lastFrame = this.lastSync = Date.now();
        let m;
        try {
            m = JSON.parse(data);
        } catch (err) {
            return;
        }
        if (!m || typeof m !== 'object')
            return;
        switch (m.type) {
        case 'welcome':
            this.backoff = RETRY_MIN_MS;
            clearTimeout(this.timer);
            this.timer = null;
            if (m.replay_from !== this.lastSeq) {
                // The server lost or pruned what we remember: start over
                // from its view, and drop repeats by event_id.
                this.lastSeq = m.replay_from;
            }
            this.acked = this.lastSeq;
            this.setState('live');
            this.dispatchEvent(new CustomEvent('welcome', { detail: m }));
            break;
        case 'event':
            this.onEvent(m);
            break;
        case 'ping':
            this.send(m.id ? { type: 'pong', id: m.id } : { type: 'pong' });
            break;
        case 'pong':
            break;   // a frame is all that counts
        default:
            this.dispatchEvent(new CustomEvent('frame', { detail: m }));
            break;
        }
    }

    onEvent(m) {
        if (!this.seen.has(m.event_id)) {
            this.seen.add(m.event_id);
            if (this.seen.size > SEEN_MAX)
                this.seen.delete(this.seen.values().next().value);
            try {
                this.dispatchEvent(new CustomEvent('event', { detail: m }));
            } catch (err) {
                console.error('event handler failed', err);
            }
        }
        if (m.seq > this.lastSeq) {
            this.lastSeq = m.seq;
            localStorage.setItem(this.key, String(m.seq));
        }
        if (!this.ackTimer)
            this.ackTimer = setTimeout(() => this.flushAck(), ACK_DELAY_MS);
    }

    flushAck() {
        this.ackTimer = null;
        if (this.lastSeq > this.acked) {
            this.send({ type: 'ack', seq: this.lastSeq });
            this.acked = this.lastSeq;
        }
    }
}
