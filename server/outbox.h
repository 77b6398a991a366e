/*
 * outbox — the store-and-forward core: per-user, ordered, durable event
 * queues (Mosquitto's queued messages for persistent sessions, in SQLite).
 *
 * Every change a user should hear about appends an event to that user's
 * outbox in the same transaction as the change (outbox_append inside the
 * caller's BEGIN ... COMMIT).  Each user's events carry a strictly
 * increasing seq (1, 2, 3, ...) and a globally unique event_id.  A client
 * says which seq it has (hello.last_seq, ack.seq, cumulative); everything
 * after it is (re)sent.  Acknowledged events are pruned after 30 days.
 *
 * Live push: outbox_append also records the user id in the outbox's
 * "dirty" set; after COMMIT the caller hands the set to the WebSocket layer
 * (outbox_take_dirty), which sends the new events to connected sessions.
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

/* Over db, whose tables (outbox, outbox_cursor) schema.c's migrations
 * made.  The caller keeps db open until outbox_close. */
struct outbox *outbox_open(sqlite3 *db, struct err *e);
void outbox_close(struct outbox *o);

/* Append one event for user_id inside the caller's transaction.  body is
 * borrowed (serialised here).  *seq (may be NULL) receives its seq. */
int outbox_append(struct outbox *o, int64_t user_id, const char *kind,
                  const char *case_id, json_t *body, int64_t *seq,
                  struct err *e);

/* The same event for several users (a case's participants): the body is
 * serialised once; all rows or none.  users[i] > 0. */
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
int64_t outbox_acked_seq(struct outbox *o, int64_t user_id);

/* Acknowledged events are kept this long after they were appended (a
 * client may come back with an older last_seq; PROTOCOL.md section 10
 * promises 30 days), unacknowledged ones for ever. */
#define OUTBOX_KEEP_MS (30LL * 24 * 3600 * 1000)

/* Deletes the acknowledged events appended before now - OUTBOX_KEEP_MS.
 * Returns how many, or a negative ERR_*. */
int outbox_prune(struct outbox *o, int64_t now, struct err *e);

/* User ids that got events since the last call (deduplicated).  *ids is
 * malloc'd (caller frees); *n may be 0.  Call after COMMIT; after a
 * ROLLBACK call outbox_clear_dirty instead. */
int outbox_take_dirty(struct outbox *o, int64_t **ids, size_t *n);
void outbox_clear_dirty(struct outbox *o);
/* The same set without taking it (for a hook that runs before the one
 * that takes it: webpush.c).  Valid until the next outbox call. */
const int64_t *outbox_dirty(const struct outbox *o, size_t *n);

#endif
