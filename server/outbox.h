/*
 * outbox — the store-and-forward core: per-user, ordered, durable event
 * queues (Mosquitto's queued messages for persistent sessions, in SQLite).
 *
 * Every change a user should hear about appends an event to that user's
 * outbox in the same transaction as the change (outbox_append inside the
 * caller's BEGIN ... COMMIT).  Each user's events carry a strictly
 * increasing seq (1, 2, 3, ...); an event has one event_id, the same for
 * all its recipients and on every redelivery.  A client says which seq it
 * has (hello.last_seq, ack.seq, cumulative); everything after it is
 * (re)sent.  Acknowledged events are pruned after 30 days.
 *
 * Live push: every append is also kept in memory, as the tail of its
 * hashi.v1 frame and its recipients' seqs; after COMMIT the caller hands
 * them to the WebSocket layer (outbox_take_events), which fans the same
 * bytes out to the connected sessions without reading the table back.
 * The table is read only for replay (outbox_fetch_frames).
 * Used from the lws thread only (the SCP thread queues its work there).
 */
#ifndef HASHI_OUTBOX_H
#define HASHI_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "../proto/util.h"

struct outbox;

/* Over db, whose tables (outbox_events, outbox, outbox_cursor)
 * schema.c's migrations made.  The caller keeps db open until outbox_close. */
struct outbox *outbox_open(sqlite3 *db, struct err *e);
void outbox_close(struct outbox *o);

/* Append one event for user_id inside the caller's transaction.  body is
 * borrowed (serialised here).  *seq (may be NULL) receives its seq. */
int outbox_append(struct outbox *o, int64_t user_id, const char *kind,
                  const char *case_id, json_t *body, int64_t *seq,
                  struct err *e);

/* The same event for several users (a case's recipients): one event row,
 * one cursor UPSERT for all, and one small (user, seq, event) row per
 * user from one prepared statement; all rows or none.  users[i] > 0; a user
 * named twice gets the event once. */
int outbox_append_many(struct outbox *o, const int64_t *users, size_t n,
                       const char *kind, const char *case_id, json_t *body,
                       struct err *e);

/* Events of user_id with seq > after, oldest first, at most limit, as a
 * JSON array of hashi.v1 event objects {type:"event", seq, event_id, kind,
 * case_id, at, body}.  New reference; caller decrefs. */
int outbox_fetch(struct outbox *o, int64_t user_id, int64_t after, int limit,
                 json_t **events, struct err *e);

/* The same events as ready hashi.v1 frames, for the WebSocket push path
 * (no JSON parse and re-serialisation per event): calls fn once per event,
 * oldest first, at most limit, with the frame's compact JSON text (the
 * members and their order as outbox_fetch's objects, the body as stored);
 * the text is valid during the call only.  fn returns 0 to go on, non-zero
 * to stop.  Returns the number of events passed to fn, or a negative
 * ERR_*. */
typedef int (*outbox_frame_fn)(void *arg, int64_t seq, const char *frame,
                               size_t len);
int outbox_fetch_frames(struct outbox *o, int64_t user_id, int64_t after,
                        int limit, outbox_frame_fn fn, void *arg,
                        struct err *e);

/* Highest seq ever assigned to user_id (0 if none). */
int64_t outbox_last_seq(struct outbox *o, int64_t user_id);

/* Cumulative acknowledgement: the user has everything up to seq.  Acks
 * above the last assigned seq are ERR_INVALID; lower than a previous ack
 * are ignored.  *from (may be NULL) receives the previous ack, so the
 * events newly acknowledged are those with from < seq' <= seq (none when
 * *from == seq): what they mean to their writer (cases.c's delivered
 * receipts) is the caller's business. */
int outbox_ack(struct outbox *o, int64_t user_id, int64_t seq,
               int64_t *from, struct err *e);

/* Many users' cumulative acks in one statement: acks is the JSON text
 * [[user_id, seq], ...] (a user named twice: the highest seq counts).
 * Unlike outbox_ack, acks at or below a user's previous one and acks
 * beyond its last event are skipped silently: the caller checked them
 * (ws.c: against what it sent).  Inside the caller's transaction. */
int outbox_ack_many(struct outbox *o, const char *acks, struct err *e);
int64_t outbox_acked_seq(struct outbox *o, int64_t user_id);

/* A user's recipient rows (seq, event) with seq > after, at most lim, from
 * both tables that hold them (outbox, and outbox_hot until outbox_settle
 * moves them): a FROM-clause subquery for the readers of outbox rows; u,
 * after, lim are SQL expressions (parameters).  Unordered: the caller
 * orders by seq and limits again. */
#define OUTBOX_ROWS_OF(u, after, lim)                                       \
    "(SELECT seq, event FROM (SELECT seq, event FROM outbox"                \
    "  WHERE user_id = " u " AND seq > " after                              \
    "  ORDER BY seq LIMIT " lim ")"                                         \
    " UNION ALL SELECT seq, event FROM (SELECT seq, event FROM outbox_hot"  \
    "  WHERE user_id = " u " AND seq > " after                              \
    "  ORDER BY seq LIMIT " lim "))"

/* New recipient rows wait in outbox_hot (a few dozen pages, cheap to
 * write to) until moved to outbox in key order, many events at once:
 * each user's page of the large table is then written once a batch, not
 * once an event.  Moves at most max rows, continuing a sweep over the
 * users where the last call stopped, in a transaction of its own (the
 * caller holds none); does nothing unless outbox_hot holds at least min
 * rows (an estimate kept in memory).  Returns the rows moved, or a
 * negative ERR_*.  main.c's tick calls it. */
int outbox_settle(struct outbox *o, int64_t min, int max, struct err *e);

/* The rows outbox_hot is estimated to hold. */
int64_t outbox_hot_rows(const struct outbox *o);

/* Acknowledged events are kept this long after they were appended (a
 * client may come back with an older last_seq; PROTOCOL.md section 10
 * promises 30 days), unacknowledged ones for ever. */
#define OUTBOX_KEEP_MS (30LL * 24 * 3600 * 1000)

/* Deletes the acknowledged events appended before now - OUTBOX_KEEP_MS.
 * Returns how many, or a negative ERR_*. */
int outbox_prune(struct outbox *o, int64_t now, struct err *e);

/* One recipient of a live event; also one user's ack (seq: up to
 * which), as ws.c and cases.c pass them. */
struct outbox_rcpt {
    int64_t user_id, seq;
};

/* acks[0..n-1] as outbox_ack_many's JSON text; malloc'd (caller frees),
 * NULL when out of memory. */
char *outbox_acks_json(const struct outbox_rcpt *acks, size_t n);

/* An event appended since the last outbox_take_events: the frame is
 * outbox_frame_head(seq) followed by tail, the same bytes for every
 * recipient (and those outbox_fetch_frames gives on replay). */
struct outbox_event {
    struct outbox_event *next;
    struct outbox_rcpt *rcpt;       /* n, by user id; malloc'd */
    size_t n;
    int refs;                       /* the taker's to use (ws.c counts its
                                       queued references); starts 0 */
    size_t tail_len;
    char tail[];                    /* `"event_id":...,"body":{...}}` */
};

/* The events appended since the last call, oldest first, as a list the
 * caller owns (outbox_event_free each).  Call after COMMIT; after a
 * ROLLBACK call outbox_clear_events instead.  *list may be NULL. */
void outbox_take_events(struct outbox *o, struct outbox_event **list);
void outbox_clear_events(struct outbox *o);
void outbox_event_free(struct outbox_event *ev);

/* The start of an event frame for seq, `{"type":"event","seq":N,`, into
 * buf (OUTBOX_HEAD_MAX bytes); returns its length. */
#define OUTBOX_HEAD_MAX 48
size_t outbox_frame_head(char *buf, int64_t seq);

/* The users of the events not taken yet, sorted, each once (for a hook
 * that runs before the one that takes them: webpush.c).  Owned by o,
 * valid until the next outbox call; NULL with *n = 0 if none. */
const int64_t *outbox_dirty(struct outbox *o, size_t *n);

#endif
