/*
 * ws — the hashi.v1 WebSocket protocol of hashi-server (proto/PROTOCOL.md):
 * sessions, the Origin check, replay and live push of the outboxes,
 * requests and their kept answers.
 *
 * Life of a session (lws thread only):
 *   1. FILTER_PROTOCOL_CONNECTION: the upgrade's Origin must be absent,
 *      the server's own origin or a configured one; else it is refused
 *      (and audited) before the upgrade completes.  This callback, not
 *      HTTP_CONFIRM_UPGRADE, because of CVE-2025-11677 in lws 4.1.6.
 *   2. ESTABLISHED: the session joins the hub; it has 10 s for `hello`.
 *   3. hello -> welcome; the session is filed under its user id, and the
 *      outbox after replay_from is replayed, at most 256 unacknowledged
 *      events in flight, a batch fetched whenever the send queue runs dry
 *      (outbox_fetch_frames: no JSON round trip).
 *   4. Requests run synchronously (cases.c) and get exactly one reply;
 *      the reply text is kept in SQLite (request_replies) so a retry of
 *      the same (user, id) gets the same bytes, across reconnects and
 *      restarts.
 *   5. push_events(), which cases.c calls after each COMMIT through
 *      srv->events_committed, queues each new event to the live sessions
 *      of its recipients from memory: one shared frame tail per event,
 *      a reference per session, the outbox not read back.  A session
 *      still replaying, or missing a seq, is left to its replay (in
 *      order, once).  The sessions ask for WRITEABLE one loop later, so
 *      the request's own reply is written first; each WRITEABLE writes
 *      one frame (a pending keep-alive ping first).
 *   6. Acks move the session's window at once; they are written to the
 *      outbox together (cases_ack), at every tick, at a close and before
 *      REST reads the cursor (one commit instead of one per ack per
 *      client).
 *   7. A session ends with 4401 when its token does: at the expiry time,
 *      or when it is revoked (logout) or its user disabled, by this
 *      process or another (auth_epoch).
 *
 * ws_tick, main.c's tick calling, writes the acks (when some came),
 * closes sessions silent past the hello timeout (4408), pings those
 * silent for --ws-ping and closes them after 1.5 times that (4408 "ping
 * timeout"), ends the sessions whose token ended (4401), sends the
 * images.arrived held back by the per-study throttle (ws_images_arrived)
 * and prunes kept replies older than 25 h.  No session has a timer of
 * its own: one walk over all of them, a few times per ping interval.
 *
 * Memory: a session is its lws per-session struct (about 1 KB) plus
 * lws's and OpenSSL's (about 20 KB measured, bench/push --idle); frames
 * are queued only while they wait for the socket (a live event as a
 * reference to its shared frame).  A session whose queue holds a quarter
 * of --ws-queue-max (at most WS_QUEUE_HIGH) stops reading its socket and
 * replaying its outbox until the queue drains; one whose queue exceeds
 * --ws-queue-max is a slow reader, dropped with 4429 (its events wait in
 * the outbox).  Its kernel send buffer is fixed at WS_SNDBUF.  A message
 * in several fragments is collected in a buffer freed as soon as it is
 * complete.
 *
 * The hub reaches the callback through the `user` pointer of its
 * lws_protocols entry (hub->proto, which http.c copies).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <libwebsockets.h>
#include <sqlite3.h>

#include "../proto/log.h"
#include "../proto/msg.h"
#include "auth.h"
#include "cases.h"
#include "gateway.h"
#include "http.h"
#include "outbox.h"
#include "server.h"
#include "upload.h"

#define WS_BUCKETS 256              /* sessions filed by user id */
#define WS_BATCH 32                 /* events fetched at once */
#define WS_INFLIGHT_MAX 256         /* unacknowledged events per session */
#define WS_QUEUE_HIGH (256 * 1024)  /* bytes queued: stop reading */
#define WS_QUEUE_LOW (64 * 1024)    /* ... until below this */
#define WS_SNDBUF (64 * 1024)       /* the socket's kernel send buffer */
#define WS_CLOSE_S 5                /* a close not sent within: dropped */
#define WS_BAD_MAX 10               /* consecutive bad frames -> 4400 */
#define WS_HELLO_MS 10000           /* no hello within -> 4408 */
#define WS_KEEP_REPLIES_MS (25LL * 3600 * 1000)
#define WS_PRUNE_EVERY_MS (3600LL * 1000)
#define WS_ARRIVED_SLOTS 64         /* studies throttled at once */
#define WS_ARRIVED_GAP_MS 1000      /* images.arrived per study at most */

enum { WS_NEW = 0, WS_LIVE, WS_CLOSING };

/* A queued frame: its own bytes, or a live event shared by every
 * session it goes to (ev: outbox_frame_head(seq) + ev->tail, composed in
 * the hub's scratch buffer at write time). */
struct ws_frame {
    struct ws_frame *next;
    size_t len;
    int binary;
    struct outbox_event *ev;        /* NULL: buf holds the frame */
    int64_t seq;
    unsigned char buf[];            /* LWS_PRE + len, when !ev */
};

struct ws_sess {
    struct lws *wsi;
    struct ws_hub *hub;
    struct ws_sess *prev, *next;    /* hub->all */
    struct ws_sess *bnext;          /* hub->bucket[], once live */
    int state;
    int in_hub, in_bucket;
    int64_t opened_ms;
    struct principal who;
    int64_t sent_seq;               /* highest event seq queued */
    int64_t acked_seq;              /* highest ack on this connection */
    int64_t ack_db;                 /* ... of which written to the outbox */
    int pending;                    /* the outbox may hold more */
    struct ws_frame *qhead, *qtail;
    size_t qbytes;                  /* frame bytes waiting for the socket */
    int64_t rx_ms;                  /* last frame (or pong) received */
    int ping_due, ping_out;         /* a ping to send / sent, unanswered */
    int killed;                     /* closing without waiting for the
                                       socket (kill_session) */
    int defer_write;                /* queue_frame: leave the WRITEABLE
                                       to wake_timer */
    int rx_paused;
    unsigned char *rx;              /* a message in fragments */
    size_t rx_len;
    int rx_over;                    /* over its limit: skip to its end */
    int bad;                        /* consecutive bad frames */
    int close_code;
    char close_reason[64];
    char cookie_token[AUTH_TOKEN_HEX + 1];
    char remote[48];
};

/* images.arrived throttle: a study told at sent_ms; waiting = more came
 * since, to be told when the gap has passed. */
struct ws_arrived {
    char uid[MSG_UID_MAX + 1];
    int64_t sent_ms;
    int waiting;
};

struct ws_hub {
    struct server *srv;
    struct lws_protocols proto;     /* the entry http.c copies; user = us */
    struct outbox_rcpt *orphans;   /* acks of closed sessions, unwritten */
    size_t norphans, caporphans;
    struct ws_arrived arrived[WS_ARRIVED_SLOTS];
    struct ws_sess *all;
    struct ws_sess *bucket[WS_BUCKETS];
    int64_t pruned_at;
    int64_t auth_epoch;             /* auth_epoch() at the last check */
    int recheck;                    /* check every token at the next tick */
    int acks_pending;               /* an ack came since the last flush */
    int64_t walked_at;              /* sessions_check's last full walk */
    int nsessions;
    unsigned char *wbuf;            /* LWS_PRE + a shared event's frame */
    size_t wcap;
    /* Users given live events, whose sessions wake_timer asks for
     * WRITEABLE one loop later, so that the reply to the request that
     * caused the events goes out before the fan-out's TLS writes. */
    int64_t *wake;
    size_t nwake, capwake;
    lws_sorted_usec_list_t wake_sul;
    int wake_armed;
    sqlite3_stmt *reply_get, *reply_put;
};

static int callback_ws(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len);

const struct lws_protocols *ws_protocol(struct server *srv)
{
    return srv->ws ? &srv->ws->proto : NULL;
}

/* ---- kept replies (request-id idempotency) ------------------------------ */

/* The kept reply of (actor, id), malloc'd, or NULL. */
static char *reply_lookup(struct ws_hub *h, const char *actor, const char *id)
{
    char *text = NULL;
    sqlite3_stmt *st = h->reply_get;
    sqlite3_bind_text(st, 1, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t)
            text = strdup(t);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return text;
}

static void reply_keep(struct ws_hub *h, const char *actor, const char *id,
                       const char *text)
{
    sqlite3_stmt *st = h->reply_put;
    sqlite3_bind_text(st, 1, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        log_warn("ws: keeping the reply of %s/%s: %s", actor, id,
                 sqlite3_errmsg(store_db(h->srv->store)));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void replies_prune(struct ws_hub *h)
{
    sqlite3 *db = store_db(h->srv->store);
    sqlite3_stmt *st;
    h->pruned_at = now_ms();
    if (sqlite3_prepare_v2(db, "DELETE FROM request_replies WHERE at < ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, h->pruned_at - WS_KEEP_REPLIES_MS);
    if (sqlite3_step(st) != SQLITE_DONE)
        log_warn("ws: pruning kept replies: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
}

/* ---- images arrived, coalesced ---------------------------------------- */

static void arrived_tell(struct server *srv, struct ws_arrived *a,
                        const char *uid, int64_t now)
{
    struct err e = { 0, "" };
    if (cases_images_arrived(srv, uid, &e) < 0)
        log_warn("images arrived for %s: %s", uid, e.msg);
    if (a) {
        if (a->uid != uid)
            strlcpy_h(a->uid, uid, sizeof a->uid);
        a->sent_ms = now;
        a->waiting = 0;
    }
}

void ws_images_arrived(struct server *srv, const char *study_uid)
{
    struct ws_hub *h = srv->ws;
    int64_t now = now_ms();
    if (!h || strlen(study_uid) > MSG_UID_MAX) {
        arrived_tell(srv, NULL, study_uid, now);
        return;
    }
    struct ws_arrived *slot = NULL, *a;
    for (a = h->arrived; a < h->arrived + WS_ARRIVED_SLOTS; a++) {
        if (!strcmp(a->uid, study_uid)) {
            if (now - a->sent_ms < WS_ARRIVED_GAP_MS) {
                a->waiting = 1;
                return;
            }
            arrived_tell(srv, a, study_uid, now);
            return;
        }
        /* else the free slot, or the one told longest ago */
        if (!a->waiting && (!slot || !a->uid[0] ||
                            (slot->uid[0] && a->sent_ms < slot->sent_ms)))
            slot = a;
    }
    arrived_tell(srv, slot, study_uid, now);
}

/* Tell the studies whose gap has passed (from the hub's tick). */
static void arrived_flush(struct ws_hub *h, int64_t now)
{
    for (struct ws_arrived *a = h->arrived;
         a < h->arrived + WS_ARRIVED_SLOTS; a++)
        if (a->waiting && now - a->sent_ms >= WS_ARRIVED_GAP_MS)
            arrived_tell(h->srv, a, a->uid, now);
}

/* ---- the hub ------------------------------------------------------------ */

static unsigned bucket_of(int64_t user_id)
{
    return (unsigned)((uint64_t)user_id % WS_BUCKETS);
}

static void hub_add(struct ws_hub *h, struct ws_sess *s)
{
    s->hub = h;
    s->prev = NULL;
    s->next = h->all;
    if (h->all)
        h->all->prev = s;
    h->all = s;
    s->in_hub = 1;
    h->nsessions++;
}

static void bucket_add(struct ws_hub *h, struct ws_sess *s)
{
    if (s->who.user_id <= 0 || s->in_bucket)
        return;
    unsigned b = bucket_of(s->who.user_id);
    s->bnext = h->bucket[b];
    h->bucket[b] = s;
    s->in_bucket = 1;
}

/* A frame is done with (written or dropped); a shared event goes with
 * its last reference. */
static void frame_free(struct ws_frame *f)
{
    if (f->ev && --f->ev->refs == 0)
        outbox_event_free(f->ev);
    free(f);
}

static void frames_free(struct ws_sess *s)
{
    struct ws_frame *f = s->qhead;
    while (f) {
        struct ws_frame *n = f->next;
        frame_free(f);
        f = n;
    }
    s->qhead = s->qtail = NULL;
    s->qbytes = 0;
}

static void ack_orphan(struct ws_hub *h, struct ws_sess *s);

static void hub_remove(struct ws_sess *s)
{
    struct ws_hub *h = s->hub;
    if (h) {
        ack_orphan(h, s);
        upload_detach(h->srv, s);
    }
    if (h && s->in_bucket) {
        struct ws_sess **pp = &h->bucket[bucket_of(s->who.user_id)];
        while (*pp && *pp != s)
            pp = &(*pp)->bnext;
        if (*pp)
            *pp = s->bnext;
        s->in_bucket = 0;
    }
    if (h && s->in_hub) {
        if (s->prev)
            s->prev->next = s->next;
        else
            h->all = s->next;
        if (s->next)
            s->next->prev = s->prev;
        s->in_hub = 0;
        h->nsessions--;
    }
    frames_free(s);
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
}

/* ---- acks ------------------------------------------------------------- */

/* Acks are written to the outbox in one transaction every tick
 * (SERVER_TICK_MS), not one by one: a thousand clients acking each event
 * would otherwise cost a thousand commits per event.  An ack not written
 * yet when the server crashes only means that event is sent again
 * (at-least-once; clients drop repeats by event_id). */
static void ack_flush(struct ws_hub *h)
{
    struct server *srv = h->srv;
    sqlite3 *db = store_db(srv->store);
    struct err e = { 0, "" };

    /* Idle sessions cost no walk: only an ack since the last flush makes
     * one (10,000 quiet phones, 5 ticks a second). */
    if (!srv->outbox || (!h->acks_pending && !h->norphans))
        return;
    size_t n = h->norphans;
    for (struct ws_sess *s = h->all; s; s = s->next)
        n += s->acked_seq > s->ack_db && s->who.user_id > 0;
    struct outbox_rcpt *acks = malloc((n ? n : 1) * sizeof *acks);
    if (!acks)
        return;                 /* tried again at the next tick */
    n = 0;
    for (struct ws_sess *s = h->all; s; s = s->next)
        if (s->acked_seq > s->ack_db && s->who.user_id > 0) {
            acks[n].user_id = s->who.user_id;
            acks[n++].seq = s->acked_seq;
        }
    memcpy(acks + n, h->orphans, h->norphans * sizeof *acks);
    n += h->norphans;
    /* One transaction, a few statements for all the users (cases.c). */
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) ||
        cases_ack_many(srv, acks, n, &e) ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) {
        log_warn("ws: writing %zu ack(s): %s", n,
                 e.code ? e.msg : sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        free(acks);
        return;                 /* still pending: the next tick */
    }
    log_debug("ws: %zu ack(s) written", n);
    h->acks_pending = 0;
    h->norphans = 0;
    for (struct ws_sess *s = h->all; s; s = s->next)
        s->ack_db = s->acked_seq;
    free(acks);
}

/* A closing session's unwritten ack: written now (with every other
 * pending one), or while the server stops, kept for ws_free's last
 * flush. */
static void ack_orphan(struct ws_hub *h, struct ws_sess *s)
{
    if (s->acked_seq <= s->ack_db || s->who.user_id <= 0)
        return;
    if (!h->srv->stopping) {
        ack_flush(h);
        if (s->acked_seq <= s->ack_db)
            return;
    }
    if (h->norphans == h->caporphans) {
        size_t cap = h->caporphans ? h->caporphans * 2 : 16;
        struct outbox_rcpt *p = realloc(h->orphans, cap * sizeof *p);
        if (!p) {
            log_warn("ws: ack of %s lost (out of memory); the events "
                     "will be sent again", s->who.login);
            return;
        }
        h->orphans = p;
        h->caporphans = cap;
    }
    h->orphans[h->norphans].user_id = s->who.user_id;
    h->orphans[h->norphans].seq = s->acked_seq;
    h->norphans++;
    s->ack_db = s->acked_seq;
}

void ws_flush_acks(struct server *srv)
{
    if (srv->ws)
        ack_flush(srv->ws);
}

/* ---- sending ------------------------------------------------------------ */

static void want_write(struct ws_sess *s)
{
    if (s->wsi)
        lws_callback_on_writable(s->wsi);
}

static void wake_timer(lws_sorted_usec_list_t *sul)
{
    struct ws_hub *h = lws_container_of(sul, struct ws_hub, wake_sul);
    h->wake_armed = 0;
    for (size_t i = 0; i < h->nwake; i++)
        for (struct ws_sess *s = h->bucket[bucket_of(h->wake[i])]; s;
             s = s->bnext)
            if (s->who.user_id == h->wake[i] && s->qhead)
                want_write(s);
    h->nwake = 0;
}

/* Ask for s's WRITEABLE at the next loop, not now (hub->wake). */
static void want_write_later(struct ws_sess *s)
{
    struct ws_hub *h = s->hub;
    if (!s->wsi)
        return;
    if (h->nwake && h->wake[h->nwake - 1] == s->who.user_id)
        return;
    if (h->nwake == h->capwake) {
        size_t cap = h->capwake ? h->capwake * 2 : 64;
        int64_t *p = realloc(h->wake, cap * sizeof *p);
        if (!p) {
            want_write(s);      /* now, then */
            return;
        }
        h->wake = p;
        h->capwake = cap;
    }
    h->wake[h->nwake++] = s->who.user_id;
    if (!h->wake_armed) {
        h->wake_armed = 1;
        lws_sul_schedule(lws_get_context(s->wsi), 0, &h->wake_sul,
                         wake_timer, 1000);
    }
}

/* A session closed at once, without waiting for its socket: its queue
 * freed now, the close frame sent if the socket ever takes it. */
static void kill_session(struct ws_sess *s, int code, const char *reason)
{
    frames_free(s);
    s->state = WS_CLOSING;
    s->killed = 1;
    s->close_code = code;
    strlcpy_h(s->close_reason, reason, sizeof s->close_reason);
    if (s->wsi) {
        lws_close_reason(s->wsi, (enum lws_close_status)code,
                         (unsigned char *)reason, strlen(reason));
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND,
                        LWS_TO_KILL_ASYNC);
    }
}

/* The session cannot keep up: more than ws_queue_max bytes wait for its
 * socket.  What it was sent is dropped at once (the events wait in its
 * outbox for the next hello) and the connection is closed 4429.  A slow
 * phone costs the server a bounded amount, and the others nothing. */
static void drop_slow(struct ws_sess *s)
{
    log_warn("ws: %s (%s): over %llu bytes waiting for the socket; "
             "closing 4429", s->who.login[0] ? s->who.login : "-",
             s->remote, (unsigned long long)s->hub->srv->cfg.ws_queue_max);
    kill_session(s, 4429, "too slow");
}

/* Queued bytes at which the session's socket is no longer read (its
 * requests wait while their replies cannot go out): well below the
 * slow-reader limit, so a client sending faster than it reads is slowed
 * down, not dropped. */
static size_t rx_high(const struct ws_sess *s)
{
    uint64_t q = s->hub->srv->cfg.ws_queue_max / 4;
    return q && q < WS_QUEUE_HIGH ? (size_t)q : WS_QUEUE_HIGH;
}

/* Link f at the queue's end; 0, or ERR_TOOBIG when that made the session
 * a slow reader (dropped: f is gone). */
static int queue_frame(struct ws_sess *s, struct ws_frame *f)
{
    f->next = NULL;
    if (s->qtail)
        s->qtail->next = f;
    else
        s->qhead = f;
    s->qtail = f;
    s->qbytes += f->len;
    /* One frame over the limit alone (a big reply) is let through. */
    uint64_t max = s->hub->srv->cfg.ws_queue_max;
    if (max && s->qbytes > max && s->qhead != f) {
        drop_slow(s);
        return ERR_TOOBIG;
    }
    if (s->qbytes >= rx_high(s) && !s->rx_paused && s->wsi) {
        lws_rx_flow_control(s->wsi, 0);
        s->rx_paused = 1;
    }
    if (s->defer_write)
        want_write_later(s);
    else
        want_write(s);
    return 0;
}

/* Queue len bytes as one frame (copied).  Nothing once the session is
 * being killed. */
static int queue_bytes(struct ws_sess *s, const void *data, size_t len,
                       int binary)
{
    if (s->killed)
        return ERR_TOOBIG;
    struct ws_frame *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f) {
        log_error("ws: out of memory queueing %zu bytes", len);
        return ERR_INTERNAL;
    }
    f->len = len;
    f->ev = NULL;
    f->binary = binary;
    memcpy(f->buf + LWS_PRE, data, len);
    return queue_frame(s, f);
}

/* Queue a live event for this session: a reference, not a copy. */
static int queue_event(struct ws_sess *s, struct outbox_event *ev,
                       int64_t seq)
{
    char head[OUTBOX_HEAD_MAX];
    struct ws_frame *f = malloc(sizeof *f);
    if (!f) {
        log_error("ws: out of memory queueing an event");
        return ERR_INTERNAL;
    }
    f->len = outbox_frame_head(head, seq) + ev->tail_len;
    f->binary = 0;
    f->ev = ev;
    f->seq = seq;
    ev->refs++;
    s->defer_write = 1;
    int rc = queue_frame(s, f);
    s->defer_write = 0;
    return rc;
}

/* Serialise m (validated by the codec) and queue it; *text (may be NULL)
 * receives a copy of the frame, for keeping. */
static int queue_msg(struct ws_sess *s, const struct msg *m, char **text)
{
    char *buf = NULL;
    size_t len = 0;
    struct msg_error me;
    if (text)
        *text = NULL;
    if (msg_serialize(m, &buf, &len, &me)) {
        log_error("ws: cannot serialise a %s: %s",
                  msg_type_name(m->type) ? msg_type_name(m->type) : "?",
                  me.message);
        return ERR_INTERNAL;
    }
    int rc = queue_bytes(s, buf, len, 0);
    if (!rc && text)
        *text = buf;
    else
        free(buf);
    return rc;
}

/* An `error` message (code, text), or a reply when id is given. */
static void send_error(struct ws_sess *s, const char *id, enum msg_code code,
                       const char *text)
{
    struct msg m;
    struct msg_error me;
    int rc = id && *id ? msg_build_reply_err(&m, id, code, text, &me)
                       : msg_build_error(&m, code, text, &me);
    if (!rc)
        queue_msg(s, &m, NULL);
    else
        log_error("ws: cannot build an error (%s): %s",
                  msg_code_name(code), me.message);
    msg_free(&m);
}

/* upload.c's answers (upload_init). */
static void upload_send(void *sess, const struct msg *m)
{
    queue_msg(sess, m, NULL);
}

/* Close with code after the frames queued so far. */
static void close_after(struct ws_sess *s, int code, const char *reason)
{
    if (s->state == WS_CLOSING)
        return;
    s->state = WS_CLOSING;
    s->close_code = code;
    strlcpy_h(s->close_reason, reason, sizeof s->close_reason);
    want_write(s);
    /* A socket that never drains (a dead link, a stuck reader) is
     * dropped after WS_CLOSE_S instead of waiting for ever. */
    if (s->wsi)
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, WS_CLOSE_S);
}

static int fill_one(void *arg, int64_t seq, const char *frame, size_t len)
{
    struct ws_sess *s = arg;
    if (queue_bytes(s, frame, len, 0))
        return 1;
    s->sent_seq = seq;
    return s->qbytes >= WS_QUEUE_LOW;
}

/* Replay: the outbox is read only here, for a session behind its live
 * events (after hello, after a gap it could not take live).  Once a
 * fetch finds nothing more, the session is caught up (pending = 0) and
 * takes the following events live (push_events). */

/* Queue the next events after sent_seq, within the in-flight window and
 * the queue's byte budget. */
static void fill_events(struct ws_sess *s)
{
    struct server *srv = s->hub->srv;
    int64_t room = WS_INFLIGHT_MAX - (s->sent_seq - s->acked_seq);
    if (!srv->outbox || s->who.user_id <= 0) {
        s->pending = 0;
        return;
    }
    if (room <= 0)
        return;             /* until acks come */
    int lim = room < WS_BATCH ? (int)room : WS_BATCH;
    struct err e = { 0, "" };
    int64_t before = s->sent_seq;
    int n = outbox_fetch_frames(srv->outbox, s->who.user_id, s->sent_seq,
                                lim, fill_one, s, &e);
    if (n < 0) {
        log_error("ws: outbox of %s: %s", s->who.login, e.msg);
        return;     /* pending stays: tried again at the next push/ack */
    }
    /* Fewer than asked, all queued, and not cut short by the queue's
     * budget (fill_one): nothing after sent_seq is committed (commits
     * happen on this thread, between callbacks). */
    if (n < lim && s->sent_seq - before == n && s->qbytes < WS_QUEUE_LOW)
        s->pending = 0;
}

/* The bytes of a queued frame, LWS_PRE after the returned pointer: its
 * own, or a shared event's composed in the hub's scratch buffer. */
static unsigned char *frame_bytes(struct ws_hub *h, struct ws_frame *f)
{
    if (!f->ev)
        return f->buf;
    if (h->wcap < LWS_PRE + f->len) {
        unsigned char *p = realloc(h->wbuf, LWS_PRE + f->len);
        if (!p)
            return NULL;
        h->wbuf = p;
        h->wcap = LWS_PRE + f->len;
    }
    size_t n = outbox_frame_head((char *)h->wbuf + LWS_PRE, f->seq);
    memcpy(h->wbuf + LWS_PRE + n, f->ev->tail, f->ev->tail_len);
    return h->wbuf;
}

static int on_writeable(struct ws_sess *s)
{
    if (s->killed)
        return 0;           /* being killed (drop_slow) */
    if (s->ping_due) {      /* keep-alive first: one write per callback */
        /* A payload: lws 4.1 does not report empty pongs. */
        unsigned char ping[LWS_PRE + 5];
        memcpy(ping + LWS_PRE, "hashi", 5);
        s->ping_due = 0;
        s->ping_out = 1;
        if (lws_write(s->wsi, ping + LWS_PRE, 5, LWS_WRITE_PING) < 0)
            return -1;
        if (s->qhead || s->pending || s->state == WS_CLOSING)
            want_write(s);
        return 0;
    }
    if (!s->qhead && s->state == WS_LIVE && s->pending)
        fill_events(s);
    struct ws_frame *f = s->qhead;
    if (f) {
        unsigned char *b = frame_bytes(s->hub, f);
        int n = b ? lws_write(s->wsi, b + LWS_PRE, f->len,
                              f->binary ? LWS_WRITE_BINARY
                                        : LWS_WRITE_TEXT) : -1;
        if (!b)
            log_error("ws: out of memory writing to %s", s->who.login);
        s->qhead = f->next;
        if (!s->qhead)
            s->qtail = NULL;
        s->qbytes -= f->len;
        frame_free(f);
        if (n < 0)
            return -1;
    }
    if (s->rx_paused && s->qbytes < rx_high(s) / 4 &&
        s->state != WS_CLOSING) {
        lws_rx_flow_control(s->wsi, 1);
        s->rx_paused = 0;
    }
    if (s->qhead || (s->state == WS_LIVE && s->pending &&
                     s->sent_seq - s->acked_seq < WS_INFLIGHT_MAX)) {
        want_write(s);
        return 0;
    }
    if (s->state == WS_CLOSING) {
        lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)s->close_reason,
                         strlen(s->close_reason));
        return -1;
    }
    return 0;
}

/* ---- the Origin check --------------------------------------------------- */

static char *hdr_copy(struct lws *wsi, enum lws_token_indexes t, char *buf,
                      size_t n)
{
    int len = lws_hdr_total_length(wsi, t);
    if (len <= 0 || (size_t)len >= n)
        return NULL;
    if (lws_hdr_copy(wsi, buf, (int)n, t) < 0)
        return NULL;
    return buf;
}

static int filter_connection(struct ws_hub *h, struct lws *wsi)
{
    char origin[512], host[256], remote[48] = "";
    if (!h)
        return 1;           /* ws_init was not called: no hashi.v1 */
    int has_origin = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0;
    const char *o = has_origin ? hdr_copy(wsi, WSI_TOKEN_ORIGIN, origin,
                                          sizeof origin) : NULL;
    const char *hh = hdr_copy(wsi, WSI_TOKEN_HOST, host, sizeof host);
    if (!has_origin || (o && http_origin_allowed(&h->srv->cfg, o, hh)))
        return 0;
    lws_get_peer_simple(wsi, remote, sizeof remote);
    struct audit_entry a = {
        .actor = "-", .action = "ws_origin_denied", .object = NULL,
        .outcome = "denied", .remote = remote,
        .detail = o ? o : "(over-long Origin)",
    };
    if (h->srv->audit)
        audit_write(h->srv->audit, &a);
    log_info("ws: upgrade from %s refused: Origin %s", remote,
             o ? o : "(over-long)");
    return http_refuse_upgrade(wsi, 403, "forbidden",
                               "Origin not allowed");
}

/* ---- session start ------------------------------------------------------ */

/* The session cookie of the upgrade request, for browsers whose hello
 * carries no token. */
static void take_cookie(struct lws *wsi, struct ws_sess *s)
{
    char buf[2048];
    const char *c = hdr_copy(wsi, WSI_TOKEN_HTTP_COOKIE, buf, sizeof buf);
    size_t nl = strlen(HTTP_COOKIE_NAME);
    while (c && *c) {
        while (*c == ' ' || *c == ';')
            c++;
        if (!strncmp(c, HTTP_COOKIE_NAME, nl) && c[nl] == '=') {
            c += nl + 1;
            size_t n = strcspn(c, "; ");
            if (n && n <= AUTH_TOKEN_HEX) {
                memcpy(s->cookie_token, c, n);
                s->cookie_token[n] = 0;
            }
            return;
        }
        c += strcspn(c, ";");
    }
}

static void on_open(struct ws_hub *h, struct lws *wsi, struct ws_sess *s)
{
    memset(s, 0, sizeof *s);
    s->wsi = wsi;
    s->opened_ms = s->rx_ms = now_ms();
    /* A fixed kernel send buffer instead of autotuning up to megabytes
     * per connection: with ws_queue_max it bounds what a slow reader
     * holds (events are small; uploads come the other way). */
    int fd = (int)lws_get_socket_fd(wsi), sz = WS_SNDBUF;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    lws_get_peer_simple(wsi, s->remote, sizeof s->remote);
    take_cookie(wsi, s);
    hub_add(h, s);
}

/* ---- the tick: timeouts and ended sessions ------------------------------ */

/* The session's token no longer admits it: say why, close 4401. */
static void end_session(struct ws_sess *s, const char *why)
{
    log_info("ws: %s: %s; closing", s->who.login, why);
    send_error(s, NULL, MSG_E_UNAUTHORIZED, why);
    close_after(s, 4401, "unauthorized");
}

/* Hello timeouts and expiries from the clock; revocations (logout, a user
 * disabled by the admin command, in any process) when auth_epoch moved or
 * a check was asked for: one cheap read per tick, the tokens themselves
 * only then. */
static void sessions_check(struct ws_hub *h, int64_t now)
{
    struct store *st = h->srv->store;
    int64_t epoch = h->nsessions ? auth_epoch(st) : h->auth_epoch;
    int recheck = h->recheck || (epoch >= 0 && epoch != h->auth_epoch);
    if (epoch < 0)
        log_warn("ws: reading the auth epoch failed; tokens not checked");
    else
        h->auth_epoch = epoch;
    /* The walk over every session runs when a token must be re-checked,
     * else a few times per ping interval (at most once a second): hello
     * timeouts, expiries and silences need no finer clock, and an idle
     * server with 10,000 sessions does not walk them 5 times a second. */
    int64_t ping = (int64_t)h->srv->cfg.ws_ping * 1000;
    int64_t every = ping && ping / 4 < 1000 ? ping / 4 : 1000;
    if (!recheck && now - h->walked_at < every)
        return;
    h->walked_at = now;
    h->recheck = 0;
    for (struct ws_sess *s = h->all; s; s = s->next) {
        /* Keep-alive, from this one walk (no timer per session): a ping
         * after ws_ping of silence; nothing at all for 1.5 times that (a
         * NAT that forgot the mapping, a dead phone): closed. */
        int64_t idle = now - s->rx_ms;
        if (s->state == WS_CLOSING) {
            continue;
        } else if (ping && idle >= ping + ping / 2) {
            log_info("ws: %s (%s): silent for %lld ms; closing 4408",
                     s->who.login[0] ? s->who.login : "-", s->remote,
                     (long long)idle);
            /* The close frame if the socket takes it (a live but stuck
             * client sees why), else gone in 2 s (a dead link). */
            close_after(s, 4408, "ping timeout");
            continue;
        } else if (ping && idle >= ping && !s->ping_out && !s->ping_due) {
            s->ping_due = 1;
            want_write(s);
        }
        if (s->state == WS_NEW && now - s->opened_ms > WS_HELLO_MS) {
            send_error(s, NULL, MSG_E_UNAUTHORIZED, "no hello within 10 s");
            close_after(s, 4408, "hello timeout");
        } else if (s->state != WS_LIVE) {
            continue;
        } else if (s->who.expires_ms && now >= s->who.expires_ms) {
            end_session(s, "session expired");
        } else if (recheck && auth_token_live(st, &s->who) == 0) {
            end_session(s, "logged out, revoked or disabled");
        }
    }
}

void ws_tick(struct server *srv, int64_t now)
{
    struct ws_hub *h = srv->ws;
    if (!h)
        return;
    ack_flush(h);
    sessions_check(h, now);
    arrived_flush(h, now);
    if (now - h->pruned_at > WS_PRUNE_EVERY_MS)
        replies_prune(h);
}

void ws_check_sessions(struct server *srv)
{
    if (!srv->ws)
        return;
    srv->ws->recheck = 1;
    sessions_check(srv->ws, now_ms());
}

/* ---- hello ------------------------------------------------------------ */

static int role_of(const char *role)
{
    for (int r = 1; r < MSG_ROLE_COUNT; r++)
        if (msg_role_name(r) && !strcmp(msg_role_name(r), role))
            return r;
    return MSG_ROLE_NONE;
}

/* A login as the welcome's login syntax allows (A-Z a-z 0-9 . _ @ -):
 * gateways are "gateway:<name>" inside the server. */
static void wire_login(const char *login, char *out, size_t n)
{
    if (!strncmp(login, "gateway:", 8))
        login += 8;
    size_t i;
    for (i = 0; login[i] && i + 1 < n && i < MSG_NAME_MAX; i++) {
        char ch = login[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || strchr("._@-", ch);
        out[i] = ok ? ch : '-';
    }
    out[i] = 0;
    if (!i)
        strlcpy_h(out, "gateway", n);
}

/* Where the replay starts (PROTOCOL.md section 3): hello.last_seq, or 0
 * when the client knows seqs this server never assigned, or just before
 * the oldest event kept when those after last_seq were pruned. */
static int64_t replay_start(struct server *srv, int64_t uid, int64_t asked,
                            int64_t last)
{
    if (asked > last)
        return 0;
    if (asked == last)
        return asked;
    json_t *arr = NULL;
    int64_t from = asked;
    if (!outbox_fetch(srv->outbox, uid, asked, 1, &arr, NULL)) {
        json_t *ev = json_array_get(arr, 0);
        if (!ev)
            from = last;                    /* all of them pruned */
        else {
            int64_t first = json_integer_value(json_object_get(ev, "seq"));
            if (first > asked + 1)
                from = first - 1;
        }
        json_decref(arr);
    }
    return from;
}

static void on_hello(struct ws_sess *s, const struct msg *m)
{
    struct server *srv = s->hub->srv;
    if (s->state != WS_NEW) {
        send_error(s, NULL, MSG_E_CONFLICT, "hello was said already");
        return;
    }
    const char *token = m->hello.token[0] ? m->hello.token : s->cookie_token;
    struct principal who;
    struct err e = { 0, "" };
    memset(&who, 0, sizeof who);
    if (!*token || auth_token_check(srv->store, token, &who, &e)) {
        struct audit_entry a = {
            .actor = "-", .action = "ws_hello_denied", .object = NULL,
            .outcome = "denied", .remote = s->remote,
            .detail = *token ? e.msg : "no token",
        };
        if (srv->audit)
            audit_write(srv->audit, &a);
        send_error(s, NULL, MSG_E_UNAUTHORIZED,
                   *token ? "invalid, expired or revoked token"
                          : "hello needs a token");
        close_after(s, 4401, "unauthorized");
        return;
    }
    explicit_bzero(s->cookie_token, sizeof s->cookie_token);
    s->who = who;

    int64_t last = 0, from = 0;
    if (who.user_id > 0 && srv->outbox) {
        last = outbox_last_seq(srv->outbox, who.user_id);
        from = replay_start(srv, who.user_id, m->hello.last_seq, last);
    }

    struct msg w;
    struct msg_error me;
    msg_init(&w, MSG_WELCOME);
    wire_login(who.login, w.welcome.user.login, sizeof w.welcome.user.login);
    w.welcome.user.role = role_of(who.role);
    strlcpy_h(w.welcome.user.clinic, who.clinic[0] ? who.clinic : "-",
              sizeof w.welcome.user.clinic);
    for (const char *p = who.specialties; *p;) {
        size_t n = strcspn(p, ",");
        if (n && n <= MSG_NAME_MAX &&
            w.welcome.user.n_specialties < MSG_SPECIALTIES_MAX) {
            char *dst = w.welcome.user.specialties[
                w.welcome.user.n_specialties++];
            memcpy(dst, p, n);
            dst[n] = 0;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    w.welcome.server_time = now_ms();
    w.welcome.last_seq = last;
    w.welcome.replay_from = from;
    if (msg_validate(&w, &me)) {
        log_error("ws: welcome for %s: %s", who.login, me.message);
        send_error(s, NULL, MSG_E_INTERNAL, "cannot welcome this user");
        close_after(s, 1011, "internal error");
        msg_free(&w);
        return;
    }
    queue_msg(s, &w, NULL);
    msg_free(&w);

    s->state = WS_LIVE;
    s->sent_seq = s->acked_seq = s->ack_db = from;
    s->pending = who.user_id > 0;
    bucket_add(s->hub, s);
    log_info("ws: %s (%s) connected from %s, %s %s, replay after %lld of "
             "%lld", who.login, who.role, s->remote, m->hello.client.name,
             m->hello.client.version, (long long)from, (long long)last);
}

/* ---- ack ---------------------------------------------------------------- */

static void on_ack(struct ws_sess *s, int64_t seq)
{
    char text[160];
    if (seq > s->sent_seq) {
        snprintf(text, sizeof text, "seq: %lld is above the highest seq "
                 "sent on this connection (%lld)", (long long)seq,
                 (long long)s->sent_seq);
        send_error(s, NULL, MSG_E_BAD_FIELD, text);
        return;
    }
    if (seq <= s->acked_seq)
        return;
    s->acked_seq = seq;         /* written by ack_flush at the tick */
    s->hub->acks_pending = 1;
    if (s->pending)
        want_write(s);
}

/* ---- requests ----------------------------------------------------------- */

/* The wire code of a cases.c failure.  A lost claim race is
 * already_claimed; every other conflict is conflict. */
static enum msg_code code_of(enum msg_type t, const struct err *e)
{
    switch (e->code) {
    case ERR_INVALID: return MSG_E_BAD_FIELD;
    case ERR_NOTFOUND: return MSG_E_NOT_FOUND;
    case ERR_FORBIDDEN: return MSG_E_FORBIDDEN;
    case ERR_AUTH: return MSG_E_UNAUTHORIZED;
    case ERR_RATELIMIT: return MSG_E_RATE_LIMITED;
    case ERR_TOOBIG: return MSG_E_TOO_BIG;
    case ERR_UNSUPPORTED: return MSG_E_BAD_FIELD;
    case ERR_CONFLICT:
        if (t == MSG_CASE_CLAIM && strstr(e->msg, "already claimed"))
            return MSG_E_ALREADY_CLAIMED;
        return MSG_E_CONFLICT;
    default: return MSG_E_INTERNAL;
    }
}

/* Answers kept for retries: not validation failures, rate_limited,
 * not_ready or internal (PROTOCOL.md section 5). */
static int keepable(enum msg_code c)
{
    switch (c) {
    case MSG_E_NONE:
    case MSG_E_UNAUTHORIZED:
    case MSG_E_FORBIDDEN:
    case MSG_E_NOT_FOUND:
    case MSG_E_CONFLICT:
    case MSG_E_ALREADY_CLAIMED:
        return 1;
    default:
        return 0;
    }
}

/* Runs one request through cases.c, handing it the typed request the
 * codec validated: 0 and *result (a new object), or a negative ERR_*
 * with e filled.  A new request type is one more case here (and its
 * reply code in on_request, if it is not a plain reply). */
static int run_request(struct server *srv, const struct principal *who,
                       const struct msg *m, json_t **result, struct err *e)
{
    json_t *out = NULL;
    const char *key = "case";
    int rc;

    *result = NULL;
    switch (m->type) {
    case MSG_CASE_CREATE:
        rc = cases_create(srv, who, &m->case_create, &out, NULL, e);
        break;
    case MSG_CASE_ANSWER:
        rc = cases_answer(srv, who, &m->case_answer, &out, e);
        break;
    case MSG_CASE_AMEND:
        rc = cases_amend(srv, who, &m->case_answer, &out, e);
        break;
    case MSG_MESSAGE_SEND:
        rc = cases_message(srv, who, &m->message_send, &out, e);
        key = "message";
        break;
    case MSG_CASE_GET:
        rc = cases_get(srv, who, m->case_ref.case_id, &out, e);
        break;
    case MSG_CASE_CLAIM:
        rc = cases_claim(srv, who, m->case_ref.case_id, &out, e);
        break;
    case MSG_CASE_CLOSE:
        rc = cases_close(srv, who, m->case_ref.case_id, &out, e);
        break;
    case MSG_CASE_REOPEN:
        rc = cases_reopen(srv, who, m->case_ref.case_id, &out, e);
        break;
    case MSG_CASE_LIST:
        return cases_list_page(srv, who, &m->case_list, result, e);
    case MSG_CASE_LINK:
        rc = cases_link(srv, who, &m->case_link, &out, e);
        break;
    case MSG_MESSAGE_READ:
        rc = cases_message_read(srv, who, m->message_read.case_id,
                                m->message_read.message_id, e);
        if (!rc)
            *result = json_object();
        return rc;
    case MSG_STUDY_EXPECT:
        return gateway_expect(srv, who, &m->study_expect, result, e);
    case MSG_GATEWAY_STATUS:
        rc = gateway_status(srv, who, &m->gateway_status, e);
        if (!rc)
            *result = json_object();
        return rc;
    case MSG_STUDY_PRIORITY:
        return gateway_priority(srv, who, &m->study_priority, result, e);
    default:
        return err_set(e, ERR_INVALID, "not a request");
    }
    if (rc)
        return rc;
    *result = json_pack("{s:o}", key, out ? out : json_null());
    return *result ? 0 : err_set(e, ERR_INTERNAL, "out of memory");
}

static void on_request(struct ws_sess *s, const struct msg *m)
{
    struct server *srv = s->hub->srv;
    if (m->type == MSG_UPLOAD_BEGIN || m->type == MSG_UPLOAD_END) {
        upload_request(srv, s, &s->who, s->remote, m);  /* not kept */
        return;
    }
    char *kept = reply_lookup(s->hub, s->who.login, m->id);
    if (kept) {
        queue_bytes(s, kept, strlen(kept), 0);
        free(kept);
        return;
    }

    json_t *result = NULL;
    struct err e = { 0, "" };
    struct msg r;
    struct msg_error me;
    enum msg_code code = MSG_E_NONE;
    int rc = run_request(srv, &s->who, m, &result, &e);
    if (rc)
        code = code_of(m->type, &e);

    if (!rc) {
        rc = msg_build_reply_ok(&r, m->id, result, &me);
        if (rc) {
            log_error("ws: reply to %s %s: %s", msg_type_name(m->type),
                      m->id, me.message);
            code = me.code == MSG_E_TOO_BIG ? MSG_E_TOO_BIG : MSG_E_INTERNAL;
            snprintf(e.msg, sizeof e.msg, "%s",
                     code == MSG_E_TOO_BIG ? "the result is over the frame "
                     "limit; use the REST API" : "internal error");
            msg_free(&r);
        }
    } else if (code == MSG_E_INTERNAL) {
        log_error("ws: %s %s by %s: %s", msg_type_name(m->type), m->id,
                  s->who.login, e.msg);
        snprintf(e.msg, sizeof e.msg, "internal error; retry with the "
                 "same id");
    }
    if (code != MSG_E_NONE &&
        msg_build_reply_err(&r, m->id, code, e.msg, &me)) {
        /* e.msg broke the text rules: answer without it. */
        msg_free(&r);
        msg_build_reply_err(&r, m->id, code, msg_code_name(code), &me);
    }
    char *text = NULL;
    if (!queue_msg(s, &r, &text) && keepable(code))
        reply_keep(s->hub, s->who.login, m->id, text);
    free(text);
    msg_free(&r);
}

/* ---- receiving ---------------------------------------------------------- */

static void bad_frame(struct ws_sess *s, const struct msg_error *me)
{
    struct msg r;
    struct msg_error me2;
    if (!msg_build_failure(&r, me, &me2))
        queue_msg(s, &r, NULL);
    else
        send_error(s, NULL, me->code, msg_code_name(me->code));
    msg_free(&r);
    if (me->code == MSG_E_TOO_BIG)
        close_after(s, 1009, "frame too big");
    else if (++s->bad >= WS_BAD_MAX)
        close_after(s, 4400, "too many bad frames");
}

static void on_text(struct ws_sess *s, const char *buf, size_t len)
{
    struct msg m;
    struct msg_error me;
    if (msg_parse_dir(buf, len, MSG_FROM_CLIENT, &m, &me)) {
        msg_free(&m);
        bad_frame(s, &me);
        return;
    }
    s->bad = 0;
    if (m.type == MSG_PING) {
        struct msg p;
        if (!msg_build_ping(&p, MSG_PONG, m.id[0] ? m.id : NULL, &me))
            queue_msg(s, &p, NULL);
        msg_free(&p);
    } else if (m.type == MSG_PONG) {
        /* an answer to nothing we asked: ignored */
    } else if (m.type == MSG_HELLO) {
        on_hello(s, &m);
    } else if (s->state != WS_LIVE) {
        send_error(s, m.id, MSG_E_UNAUTHORIZED, "say hello first");
    } else if (m.type == MSG_ACK) {
        on_ack(s, m.ack.seq);
    } else if (msg_is_request(m.type)) {
        on_request(s, &m);
    } else {
        send_error(s, m.id, MSG_E_UNKNOWN_TYPE, "not a client message");
    }
    msg_free(&m);
}

static void on_binary(struct ws_sess *s, const unsigned char *buf,
                      size_t len)
{
    struct msg_chunk c;
    struct msg_error me;
    if (msg_chunk_parse(buf, len, &c, &me)) {
        bad_frame(s, &me);
        return;
    }
    s->bad = 0;
    upload_chunk(s->hub->srv, s, &s->who, &c);
}

static void on_receive(struct ws_sess *s, const void *in, size_t len)
{
    struct lws *wsi = s->wsi;
    int binary = lws_frame_is_binary(wsi);
    int last = lws_is_final_fragment(wsi) &&
               !lws_remaining_packet_payload(wsi);
    size_t cap = binary ? MSG_CHUNK_HDR + MSG_MAX_CHUNK : MSG_MAX_FRAME;

    s->rx_ms = now_ms();
    s->ping_out = 0;
    if (s->state == WS_CLOSING)
        return;
    if (binary && s->state != WS_LIVE) {
        close_after(s, 4400, "binary frame before welcome");
        return;
    }
    if (!s->rx_over && s->rx_len + len > cap) {
        s->rx_over = 1;
        free(s->rx);
        s->rx = NULL;
        s->rx_len = 0;
    }
    if (s->rx_over) {
        if (last) {
            struct msg_error me;
            memset(&me, 0, sizeof me);
            me.code = MSG_E_TOO_BIG;
            snprintf(me.message, sizeof me.message,
                     "frame over %zu bytes", cap);
            s->rx_over = 0;
            bad_frame(s, &me);
        }
        return;
    }
    if (last && !s->rx_len) {       /* the usual case: one piece */
        if (binary)
            on_binary(s, in, len);
        else
            on_text(s, in, len);
        return;
    }
    unsigned char *p = realloc(s->rx, s->rx_len + len + 1);
    if (!p) {
        log_error("ws: out of memory collecting a frame");
        close_after(s, 1011, "out of memory");
        return;
    }
    memcpy(p + s->rx_len, in, len);
    s->rx = p;
    s->rx_len += len;
    if (!last)
        return;
    unsigned char *msg = s->rx;
    size_t n = s->rx_len;
    s->rx = NULL;
    s->rx_len = 0;
    if (binary)
        on_binary(s, msg, n);
    else
        on_text(s, (const char *)msg, n);
    free(msg);
}

/* ---- the lws callback ----------------------------------------------------- */

static int callback_ws(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);
    struct ws_hub *h = p ? p->user : NULL;
    struct ws_sess *s = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter_connection(h, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        if (!h || !s)
            return -1;
        on_open(h, wsi, s);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (s && s->in_hub)
            on_receive(s, in, len);
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (s && s->in_hub) {
            s->rx_ms = now_ms();
            s->ping_out = 0;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!s || !s->in_hub)
            return 0;
        return on_writeable(s);
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (s && s->in_hub) {
            if (s->who.login[0])
                log_info("ws: %s disconnected", s->who.login);
            hub_remove(s);
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- public --------------------------------------------------------------- */

static void push_events(struct server *srv);

int ws_init(struct server *srv, struct err *e)
{
    if (!srv->store)
        return err_set(e, ERR_INVALID, "ws: no store");
    sqlite3 *db = store_db(srv->store);
    struct ws_hub *h = calloc(1, sizeof *h);
    if (!h)
        return err_set(e, ERR_INTERNAL, "ws: out of memory");
    h->srv = srv;
    if (sqlite3_prepare_v2(db,
                           "SELECT reply FROM request_replies"
                           " WHERE actor = ?1 AND request_id = ?2",
                           -1, &h->reply_get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT OR IGNORE INTO request_replies"
                           " (actor, request_id, reply, at)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           -1, &h->reply_put, NULL) != SQLITE_OK) {
        err_set(e, ERR_DB, "ws: prepare: %s", sqlite3_errmsg(db));
        sqlite3_finalize(h->reply_get);
        sqlite3_finalize(h->reply_put);
        free(h);
        return ERR_DB;
    }
    h->proto = (struct lws_protocols){
        .name = MSG_SUBPROTOCOL,
        .callback = callback_ws,
        .per_session_data_size = sizeof(struct ws_sess),
        /* Read in small pieces: 0 would mean pt_serv_buf_size (64 KiB)
         * per connection. */
        .rx_buffer_size = 4096,
        .user = h,
    };
    h->auth_epoch = auth_epoch(srv->store);
    replies_prune(h);
    if (upload_init(srv, upload_send, e)) {
        sqlite3_finalize(h->reply_get);
        sqlite3_finalize(h->reply_put);
        free(h);
        return e->code;
    }
    srv->ws = h;
    srv->events_committed = push_events;
    return 0;
}

/* One live event for one session.  In order and once: it is queued only
 * when it is the very next seq and no replay is under way; an event the
 * replay already sent is skipped; any other (a replay in progress, or a
 * gap) leaves it to the replay, which reads it from the outbox. */
static void push_one(struct ws_sess *s, struct outbox_event *ev, int64_t seq)
{
    if (seq <= s->sent_seq || s->killed)
        return;
    if (s->pending || seq != s->sent_seq + 1) {
        s->pending = 1;
        want_write(s);
        return;
    }
    if (queue_event(s, ev, seq) == 0)
        s->sent_seq = seq;
    else if (!s->killed)
        s->pending = 1;     /* out of memory: the replay tries again */
}

/* srv->events_committed: right after COMMIT, the new events go to the
 * live sessions of their recipients from memory — each event's frame
 * tail built once (outbox.c), shared by every session's queue, the
 * outbox not read back.  The sockets are written from WRITEABLE, after
 * the request that caused the events has queued its reply. */
static void push_events(struct server *srv)
{
    struct ws_hub *h = srv->ws;
    struct outbox_event *ev = NULL;
    if (!srv->outbox)
        return;
    outbox_take_events(srv->outbox, &ev);
    while (ev) {
        struct outbox_event *next = ev->next;
        ev->refs++;                 /* ours, while we fan out */
        for (size_t i = 0; h && i < ev->n; i++) {
            int64_t uid = ev->rcpt[i].user_id;
            for (struct ws_sess *s = h->bucket[bucket_of(uid)]; s;
                 s = s->bnext)
                if (s->who.user_id == uid && s->state == WS_LIVE)
                    push_one(s, ev, ev->rcpt[i].seq);
        }
        free(ev->rcpt);             /* not needed by the queued frames */
        ev->rcpt = NULL;
        ev->n = 0;
        if (--ev->refs == 0)
            outbox_event_free(ev);
        ev = next;
    }
}

void ws_free(struct server *srv)
{
    struct ws_hub *h = srv->ws;
    if (!h)
        return;
    /* Normally empty: lws_context_destroy (http_stop) closes every
     * connection first.  Anything left is unhooked, its wsi forgotten. */
    while (h->all) {
        struct ws_sess *s = h->all;
        s->wsi = NULL;
        hub_remove(s);
    }
    ack_flush(h);
    upload_free(srv);
    free(h->orphans);
    free(h->wbuf);
    free(h->wake);
    /* wake_sul went with the lws context (http_stop, before us). */
    sqlite3_finalize(h->reply_get);
    sqlite3_finalize(h->reply_put);
    srv->events_committed = NULL;
    srv->ws = NULL;
    free(h);
}
