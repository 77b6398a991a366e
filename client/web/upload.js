// upload — files from the page to the server as hashi.v1 resumable
// uploads (proto/PROTOCOL.md sections 7 and 8) over the page's session
// (live.js), the browser's twin of the CLI's client/uploader.c.
//
//   const items = await prepare(fileList);      // sha256, DICOM UIDs
//   const r = await uploadFiles(ctx.live, items, { onProgress });
//   r.files[i].state: 'done' (status 'stored' | 'duplicate') or 'failed'
//   (error: the server's reason, shown as it says it)
//
// A file's upload id is its sha256 (as the CLI's; for an upload bound to
// a case, a digest of the case id and the sha256), so the server answers
// a file it holds `duplicate` at once, and a file another tab or the CLI
// began resumes.  Files go in order, in chunks; the next files'
// upload.begin go out while the current one streams, at most WINDOW bytes
// beyond what the server reported durable (upload.at).  When the session
// breaks, live.js reconnects by itself; on its "welcome" every file not
// finished is begun again and the server's answer (its durable offset)
// says where to go on, so only what the server does not hold is sent
// again and a finished file never is.  A file counts as done only on its
// upload.done.
//
// The engine owns the file objects it reports (read them, do not change
// them).  uploadFiles resolves once every file has its final answer,
// however long the link is down; it rejects only when the session is
// refused (401) or opts.signal aborts.

import { ulid, ApiError } from './util.js';

const CHUNK = 32 << 10;         // a chunk arrives within seconds even at
                                // 100 kbit/s, so frames keep coming
const WINDOW = 4 << 20;         // > the server's 2 MiB flushes
const BUFFERED_MAX = 1 << 20;   // what the socket may hold unsent
const AHEAD = 4;                // begins sent before their turn
const RETRIES = 3;              // not_ready / internal answers per file
const STALL_MS = 60000;         // owed an answer that long: the link is dead
const HDR = 80;                 // chunk header (PROTOCOL.md section 8)

// ---- reading files ----------------------------------------------------------

const LONG_VR = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV',
                         'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xFFFFFFFF;
const MAX_DEPTH = 32;

function ascii(dv, p, n) {
    let s = '';
    for (let i = 0; i < n && p + i < dv.byteLength; i++)
        s += String.fromCharCode(dv.getUint8(p + i));
    return s;
}

// One element at p, little endian: {tag, start, end} or null.
function element(dv, p, explicit, depth) {
    if (p + 8 > dv.byteLength)
        return null;
    const group = dv.getUint16(p, true);
    const tag = ((group << 16) | dv.getUint16(p + 2, true)) >>> 0;
    let len, start, vr = '';
    if (explicit && group !== 0xFFFE) {
        vr = ascii(dv, p + 4, 2);
        if (LONG_VR.has(vr)) {
            if (p + 12 > dv.byteLength)
                return null;
            len = dv.getUint32(p + 8, true);
            start = p + 12;
        } else {
            len = dv.getUint16(p + 6, true);
            start = p + 8;
        }
    } else {
        len = dv.getUint32(p + 4, true);
        start = p + 8;
    }
    // an undefined length UN holds implicit VR (PS3.5 6.2.2)
    const end = len === UNDEFINED
        ? items(dv, start, explicit && vr !== 'UN', depth + 1)
        : start + len;
    return end < 0 || end > dv.byteLength ? null : { tag, start, end };
}

// Skips the items of an undefined-length value from p (a sequence, or
// encapsulated pixel data) to after its delimiter; -1 if malformed.
function items(dv, p, explicit, depth) {
    if (depth > MAX_DEPTH)
        return -1;
    for (;;) {
        if (p + 8 > dv.byteLength || dv.getUint16(p, true) !== 0xFFFE)
            return -1;
        const el = dv.getUint16(p + 2, true);
        const len = dv.getUint32(p + 4, true);
        if (el === 0xE0DD)
            return p + 8;
        if (el !== 0xE000)
            return -1;
        if (len !== UNDEFINED) {
            p += 8 + len;
            continue;
        }
        p += 8;
        while (!(dv.getUint16(p, true) === 0xFFFE &&
                 dv.getUint16(p + 2, true) === 0xE00D)) {
            const e = element(dv, p, explicit, depth);
            if (!e)
                return -1;
            p = e.end;
            if (p + 4 > dv.byteLength)
                return -1;
        }
        p += 8;
    }
}

function uid(dv, e) {
    return ascii(dv, e.start, e.end - e.start).replace(/[\0 ]+$/, '');
}

// The Study and SOP Instance UIDs of a DICOM Part 10 file (its bytes), or
// null when they cannot be read here (not DICOM, big endian, deflated):
// enough to announce a study (study.expect) before its files go.  The
// server's parse is the one that decides; this one only reads.
export function dicomIds(buf) {
    try {
        return readIds(new DataView(buf));
    } catch (err) {
        return null;        // ran past the end: malformed
    }
}

function readIds(dv) {
    if (dv.byteLength < 140 || ascii(dv, 128, 4) !== 'DICM')
        return null;
    let p = 132, ts = '';
    while (p + 8 <= dv.byteLength && dv.getUint16(p, true) === 0x0002) {
        const e = element(dv, p, true, 0);
        if (!e)
            return null;
        if (e.tag === 0x00020010)
            ts = uid(dv, e);
        p = e.end;
    }
    if (ts === '1.2.840.10008.1.2.2' || ts === '1.2.840.10008.1.2.1.99')
        return null;
    const explicit = ts !== '1.2.840.10008.1.2';
    let sop = '';
    while (p + 8 <= dv.byteLength) {
        const e = element(dv, p, explicit, 0);
        if (!e || e.tag > 0x0020000D)
            return null;
        if (e.tag === 0x00080018)
            sop = uid(dv, e);
        if (e.tag === 0x0020000D)
            return sop ? { study_uid: uid(dv, e), sop_uid: sop } : null;
        p = e.end;
    }
    return null;
}

function hex(buf) {
    return [...new Uint8Array(buf)]
        .map((b) => b.toString(16).padStart(2, '0')).join('');
}

// Reads each file once, whole (crypto.subtle has no streaming digest, so
// a file must fit in memory): its sha256 and, for DICOM, its study and
// SOP Instance UIDs.  -> [{file, name, size, sha256,
// study_uid, sop_uid}] ('' where not read).  A File of a folder is named
// by its path in it.
export async function prepare(files) {
    const out = [];
    for (const file of files) {
        const buf = await file.arrayBuffer();
        const ids = dicomIds(buf) || { study_uid: '', sop_uid: '' };
        out.push({
            file,
            name: file.webkitRelativePath || file.name || 'file',
            size: file.size,
            sha256: hex(await crypto.subtle.digest('SHA-256', buf)),
            study_uid: ids.study_uid,
            sop_uid: ids.sop_uid,
        });
    }
    return out;
}

// ---- requests ---------------------------------------------------------------

// A hashi.v1 request (msg without id) over live: sent now if the session
// is up, and again with the same id after each reconnect until answered
// (the server answers a repeated id with the kept answer, never runs it
// twice).  -> its result; an ApiError (code, message) when refused.
export function request(live, msg) {
    const m = Object.assign({ id: ulid() }, msg);
    return new Promise((resolve, reject) => {
        const onFrame = (e) => {
            const r = e.detail;
            if (r.type !== 'reply' || r.id !== m.id)
                return;
            off();
            if (r.ok)
                resolve(r.result || {});
            else
                reject(new ApiError(0, r.error.code, r.error.message));
        };
        const onWelcome = () => live.send(m);
        const onGone = () => {
            off();
            reject(new ApiError(401, 'unauthorized', 'Logged out'));
        };
        function off() {
            live.removeEventListener('frame', onFrame);
            live.removeEventListener('welcome', onWelcome);
            live.removeEventListener('unauthorized', onGone);
        }
        live.addEventListener('frame', onFrame);
        live.addEventListener('welcome', onWelcome);
        live.addEventListener('unauthorized', onGone);
        if (live.state === 'live')
            live.send(m);
    });
}

// ---- the engine -------------------------------------------------------------

// Engine states of a file ('new' and 'begun' are reported as 'waiting').
const FINISHED = new Set(['done', 'failed']);

function chunkFrame(uploadId, offset, data) {
    const f = new Uint8Array(HDR + data.byteLength);
    const dv = new DataView(f.buffer);
    f[0] = 0x48;            // 'H'
    f[1] = 0x43;            // 'C'
    f[2] = 1;
    f[3] = uploadId.length;
    for (let i = 0; i < uploadId.length; i++)
        f[4 + i] = uploadId.charCodeAt(i);
    dv.setBigUint64(68, BigInt(offset), false);
    dv.setUint32(76, data.byteLength, false);
    f.set(new Uint8Array(data), HDR);
    return f;
}

class Engine {
    constructor(live, items, opts) {
        this.live = live;
        this.opts = opts;
        this.files = items.map((it) => ({
            name: it.name, size: it.size, sha256: it.sha256, uid: it.uid,
            study_uid: it.study_uid || '', sop_uid: it.sop_uid || '',
            file: it.file,
            state: 'waiting', st: 'new', status: '', error: '',
            sent: 0, acked: 0, wire: 0, rid: '', retries: 0,
        }));
        this.next = 0;
        this.session = 0;
        this.pumping = false;
        this.again = false;
        this.heard = Date.now();
    }

    run() {
        return new Promise((resolve, reject) => {
            this.resolve = resolve;
            this.reject = reject;
            this.onFrame = (e) => this.take(e.detail);
            this.onWelcome = () => this.restart();
            this.onGone = () => this.end(new ApiError(401, 'unauthorized',
                                                      'Logged out'));
            this.onAbort = () => this.end(new DOMException('upload aborted',
                                                           'AbortError'));
            this.live.addEventListener('frame', this.onFrame);
            this.live.addEventListener('welcome', this.onWelcome);
            this.live.addEventListener('unauthorized', this.onGone);
            if (this.opts.signal) {
                if (this.opts.signal.aborted) {
                    this.onAbort();
                    return;
                }
                this.opts.signal.addEventListener('abort', this.onAbort);
            }
            this.watch = setInterval(() => this.stalled(), 5000);
            for (const f of this.files) {
                if (!(f.size > 0))
                    this.fail(f, 'empty file');
            }
            this.report();
            if (!this.finish() && this.live.state === 'live')
                this.pump();
        });
    }

    end(err) {
        clearInterval(this.watch);
        this.live.removeEventListener('frame', this.onFrame);
        this.live.removeEventListener('welcome', this.onWelcome);
        this.live.removeEventListener('unauthorized', this.onGone);
        if (this.opts.signal)
            this.opts.signal.removeEventListener('abort', this.onAbort);
        this.ended = true;
        if (err) {
            this.reject(err);
            return;
        }
        const n = (s) => this.files.filter((f) => f.status === s).length;
        const studies = new Set(this.files.filter((f) => f.state === 'done' &&
                                                  f.study_uid)
                                .map((f) => f.study_uid));
        this.resolve({
            files: this.files, study_uids: [...studies],
            stored: n('stored'), duplicate: n('duplicate'),
            failed: this.files.filter((f) => f.state === 'failed').length,
        });
    }

    finish() {
        if (this.ended || !this.files.every((f) => FINISHED.has(f.st)))
            return false;
        this.end(null);
        return true;
    }

    report() {
        let acked = 0, total = 0, done = 0, failed = 0;
        for (const f of this.files) {
            f.state = f.st === 'new' || f.st === 'begun' ? 'waiting'
                      : f.st === 'ended' ? 'sending' : f.st;
            acked += f.acked;
            total += f.size;
            done += f.st === 'done';
            failed += f.st === 'failed';
        }
        if (this.opts.onProgress)
            this.opts.onProgress({ files: this.files, acked, total,
                                   done, failed });
    }

    fail(f, why) {
        f.st = 'failed';
        f.error = why;
        f.rid = '';
    }

    // This file must start over on the session: begun again.
    renew(f) {
        f.st = 'new';
        f.rid = '';
        this.next = Math.min(this.next, this.files.indexOf(f));
    }

    // A new session (live.js's welcome): what is not finished is begun
    // again, and its answer says from where to go on.
    restart() {
        this.session++;
        this.heard = Date.now();
        for (const f of this.files) {
            if (!FINISHED.has(f.st))
                this.renew(f);
            f.retries = 0;
        }
        this.pump();
    }

    // Owed an answer for STALL_MS on a session that says it is live: the
    // link is as good as dead; live.js connects again.
    stalled() {
        const owed = this.files.some((f) => f.st === 'begun' ||
                                     f.st === 'ended' || f.sent > f.acked);
        if (owed && this.live.state === 'live' &&
            Date.now() - this.heard > STALL_MS) {
            this.heard = Date.now();
            this.live.dead('upload stalled');
        }
    }

    byRid(id) {
        return id ? this.files.find((f) => f.rid === id) : undefined;
    }

    byUpload(uploadId) {
        return this.files.find((f) => f.uid === uploadId &&
                               (f.st === 'sending' || f.st === 'ended'));
    }

    send(f, msg, st) {
        msg.id = ulid();
        f.rid = msg.id;
        f.st = st;
        return this.live.send(msg);
    }

    begin(f) {
        const m = { type: 'upload.begin', upload_id: f.uid,
                    sha256: f.sha256, size: f.size };
        if (this.opts.case_id)
            m.case_id = this.opts.case_id;
        if (this.opts.kind)
            m.kind = this.opts.kind;
        if (this.opts.study_uid)
            m.study_uid = this.opts.study_uid;
        return this.send(f, m, 'begun');
    }

    pump() {
        if (this.pumping) {
            this.again = true;
            return;
        }
        this.pumping = true;
        const go = async () => {
            do {
                this.again = false;
                await this.step();
            } while (this.again && !this.ended);
            this.pumping = false;
        };
        go().catch((err) => {
            this.pumping = false;
            console.error('upload failed', err);
        });
    }

    // Sends what may go now; returns when the server must answer first.
    async step() {
        const session = this.session;
        if (this.ended || this.live.state !== 'live')
            return;
        let begun = this.files.filter((f) => f.st === 'begun').length;
        while (begun < AHEAD && this.next < this.files.length) {
            const f = this.files[this.next++];
            if (f.st !== 'new')
                continue;
            if (!this.begin(f))
                return;
            begun++;
        }
        for (;;) {
            const cur = this.files.find((f) => f.st === 'sending');
            if (!cur)
                return;
            if (cur.sent === cur.size) {
                this.send(cur, { type: 'upload.end', upload_id: cur.uid },
                          'ended');
                continue;
            }
            const inflight = this.files.reduce((n, f) =>
                n + (f.st === 'sending' || f.st === 'ended'
                     ? f.sent - f.acked : 0), 0);
            if (inflight >= WINDOW)
                return;
            if (this.live.buffered > BUFFERED_MAX) {
                setTimeout(() => this.pump(), 50);
                return;
            }
            const off = cur.sent;
            const len = Math.min(CHUNK, cur.size - off);
            let data;
            try {
                data = await cur.file.slice(off, off + len).arrayBuffer();
            } catch (err) {
                this.fail(cur, `could not read the file: ${err.message}`);
                this.report();
                this.finish();
                continue;
            }
            // the session or the offset may have moved meanwhile
            if (this.ended || session !== this.session ||
                cur.st !== 'sending' || cur.sent !== off)
                return;
            if (data.byteLength !== len) {
                this.fail(cur, 'the file changed while being sent');
                this.report();
                this.finish();
                continue;
            }
            if (!this.live.sendBinary(chunkFrame(cur.uid, off, data)))
                return;
            cur.sent += len;
            cur.wire += len;
        }
    }

    // What the server said about our uploads (other frames are ignored).
    take(m) {
        let f;
        switch (m.type) {
        case 'upload.at': {
            const off = m.offset;
            if (m.id) {                     // the answer to a begin
                f = this.byRid(m.id);
                if (!f || f.st !== 'begun' || off > f.size)
                    return;
                f.sent = f.acked = off;
                f.st = 'sending';
                f.rid = '';
            } else {
                f = this.byUpload(m.upload_id);
                if (!f)
                    return;
                if (m.reason === 'progress') {
                    if (off > f.acked && off <= f.sent)
                        f.acked = off;
                } else if (off <= f.size) {
                    // resend: nothing after off is kept; go on from there
                    f.sent = f.acked = off;
                    f.st = 'sending';
                    f.rid = '';
                }
            }
            break;
        }
        case 'upload.done':
            f = m.id ? this.byRid(m.id) : this.byUpload(m.upload_id);
            if (!f || FINISHED.has(f.st))
                return;
            f.rid = '';
            if (m.status === 'conflict') {
                this.fail(f, 'the server holds other bytes under this ' +
                          'SOP Instance UID (this copy was kept aside)');
            } else {
                f.st = 'done';
                f.status = m.status;
            }
            f.sent = f.acked = f.size;
            if (m.sop_instance_uid)
                f.sop_uid = m.sop_instance_uid;
            break;
        case 'reply':
            f = this.byRid(m.id);
            if (!f || m.ok)
                return;
            if ((m.error.code === 'not_ready' ||
                 m.error.code === 'internal') && ++f.retries <= RETRIES)
                this.renew(f);      // begin again: it answers what it has
            else
                this.fail(f, m.error.message || m.error.code);
            break;
        default:
            return;
        }
        this.heard = Date.now();
        this.report();
        if (!this.finish())
            this.pump();
    }
}

// Uploads files (File objects, or prepare()'s items; not mixed) over
// live; see the top of this file.  The same bytes twice go once (one
// upload id).  opts:
//   onProgress({files, acked, total, done, failed}) on every change;
//     files[i]: name, size, sha256, study_uid, sop_uid, state ('waiting'
//     | 'sending' | 'done' | 'failed'), status ('stored' | 'duplicate'),
//     acked (bytes the server holds durably), wire (bytes put on the
//     wire, re-sends included), error (the server's reason)
//   case_id, kind ('instance' | 'preview'), study_uid: for upload.begin
//   signal: an AbortSignal
// -> {files, study_uids (of the files done), stored, duplicate, failed}
export async function uploadFiles(live, files, opts = {}) {
    const list = [...files];
    const items = list.every((f) => f && f.sha256) ? list
                                                   : await prepare(list);
    const seen = new Set();
    const once = items.filter((it) => !seen.has(it.sha256) &&
                                      seen.add(it.sha256));
    // Bound to a case (photos), the same bytes sent to two cases are two
    // uploads: the id is derived from the case and the bytes.
    const enc = new TextEncoder();
    for (const it of once)
        it.uid = opts.case_id ? hex(await crypto.subtle.digest('SHA-256',
                     enc.encode(`${opts.case_id}:${it.sha256}`)))
                              : it.sha256;
    return new Engine(live, once, opts).run();
}
