// live — the page's hashi.v1 connection (proto/PROTOCOL.md): one
// WebSocket to wss://HOST/ws, authenticated by the session cookie the
// upgrade carries (hello without a token), then replay + live events.
//
// Delivery is at-least-once: events are handed to the app once per
// event_id, then acknowledged (cumulative, at most every 200 ms).  The
// highest processed seq is kept in localStorage per login so a reload
// resumes where the page was; after a broken link it reconnects with
// backoff (1 s doubling to 60 s, with jitter).  A 4401 close means the
// session is gone: the app shows the login page.
//
// Emits on the Live object (an EventTarget):
//   "event"  detail = the event message {seq, event_id, kind, case_id, body}
//   "state"  detail = 'connecting' | 'live' | 'offline'
//   "welcome" detail = the welcome message (the app reloads its lists)
//   "unauthorized"

const ACK_DELAY_MS = 200;
const SEEN_MAX = 2000;

export class Live extends EventTarget {
    constructor(login) {
        super();
        this.login = login;
        this.key = `hashi.seq.${login}`;
        this.lastSeq = Number(localStorage.getItem(this.key) || 0) || 0;
        this.acked = 0;
        this.seen = new Set();
        this.ws = null;
        this.backoff = 1000;
        this.timer = null;
        this.ackTimer = null;
        this.stopped = false;
        this.state = 'offline';
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
        this.state = s;
        this.dispatchEvent(new CustomEvent('state', { detail: s }));
    }

    start() {
        this.stopped = false;
        this.onOnline = () => {
            // The link is back: do not wait for the backoff.
            if (!this.stopped && !this.ws) {
                this.backoff = 1000;
                this.connect();
            }
        };
        window.addEventListener('online', this.onOnline);
        this.connect();
    }

    stop() {
        this.stopped = true;
        window.removeEventListener('online', this.onOnline);
        clearTimeout(this.timer);
        clearTimeout(this.ackTimer);
        if (this.ws) {
            this.ws.onclose = null;
            this.ws.close(1000, 'bye');
            this.ws = null;
        }
        this.setState('offline');
    }

    connect() {
        clearTimeout(this.timer);
        this.setState('connecting');
        let ws;
        try {
            ws = new WebSocket(`wss://${location.host}/ws`, 'hashi.v1');
        } catch (err) {
            this.retry();
            return;
        }
        this.ws = ws;
        ws.onopen = () => {
            this.send({
                type: 'hello',
                last_seq: this.lastSeq,
                client: { name: 'hashi-web', version: '0.1.0' },
            });
        };
        ws.onmessage = (m) => this.onMessage(m.data);
        ws.onclose = (c) => {
            this.ws = null;
            if (this.stopped)
                return;
            if (c.code === 4401) {
                this.stopped = true;
                this.setState('offline');
                this.dispatchEvent(new Event('unauthorized'));
                return;
            }
            this.setState('offline');
            this.retry();
        };
    }

    retry() {
        if (this.stopped)
            return;
        const wait = this.backoff * (0.75 + Math.random() / 2);
        this.backoff = Math.min(this.backoff * 2, 60000);
        this.timer = setTimeout(() => this.connect(), wait);
    }

    send(obj) {
        if (this.ws && this.ws.readyState === WebSocket.OPEN)
            this.ws.send(JSON.stringify(obj));
    }

    onMessage(data) {
        if (typeof data !== 'string')
            return;
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
            this.backoff = 1000;
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
        default:
            break;   // pong, error, reply: nothing to do here
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
