/*
 * outbox — per-user, ordered, durable event queues in the store's SQLite
 * database (see outbox.h for the contract).
 *
 * Two tables (schema.c makes them): outbox holds the events, keyed
 * (user_id, seq); outbox_cursor holds, per user, the last seq handed out
 * and the highest cumulative ack.
 * The seq comes from the cursor row, bumped by an UPSERT inside the
 * caller's transaction, so a rolled-back change leaves no gap and two
 * changes can never get the same seq.  Acknowledged events are kept
 * OUTBOX_KEEP_MS (PROTOCOL.md's 30 days), then outbox_prune drops them.
 *
 * The "dirty" set lives in memory only: it tells the WebSocket layer whom
 * to push to after a COMMIT.  A user missed because of a crash loses
 * nothing — the events are in the table and are replayed at the next
 * hello.
 */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "../proto/log.h"

struct outbox {
    sqlite3 *db;
    sqlite3_stmt *bump;     /* cursor upsert, RETURNING last_seq */
    sqlite3_stmt *insert;
    sqlite3_stmt *fetch;
    int64_t *dirty;
    size_t ndirty, capdirty;
};

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st,
                   struct err *e)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return err_set(e, ERR_DB, "outbox: prepare: %s", sqlite3_errmsg(db));
    return 0;
}

struct outbox *outbox_open(sqlite3 *db, struct err *e)
{
    struct outbox *o = calloc(1, sizeof *o);
    if (!o) {
        err_set(e, ERR_INTERNAL, "outbox: out of memory");
        return NULL;
    }
    o->db = db;
    if (prepare(db,
                "INSERT INTO outbox_cursor (user_id, last_seq, acked_seq)"
                " VALUES (?1, 1, 0) ON CONFLICT (user_id) DO UPDATE"
                " SET last_seq = last_seq + 1 RETURNING last_seq",
                &o->bump, e) ||
        prepare(db,
                "INSERT INTO outbox (user_id, seq, event_id, kind, case_id,"
                " at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &o->insert, e) ||
        prepare(db,
                "SELECT seq, event_id, kind, case_id, at, body FROM outbox"
                " WHERE user_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                &o->fetch, e)) {
        outbox_close(o);
        return NULL;
    }
    return o;
}

void outbox_close(struct outbox *o)
{
    if (!o)
        return;
    sqlite3_finalize(o->bump);
    sqlite3_finalize(o->insert);
    sqlite3_finalize(o->fetch);
    free(o->dirty);
    free(o);
}

static void mark_dirty(struct outbox *o, int64_t user_id)
{
    for (size_t i = 0; i < o->ndirty; i++)
        if (o->dirty[i] == user_id)
            return;
    if (o->ndirty == o->capdirty) {
        size_t cap = o->capdirty ? o->capdirty * 2 : 16;
        int64_t *p = realloc(o->dirty, cap * sizeof *p);
        if (!p) {
            /* The event is durable; the user gets it at the next hello. */
            log_warn("outbox: dirty set: out of memory");
            return;
        }
        o->dirty = p;
        o->capdirty = cap;
    }
    o->dirty[o->ndirty++] = user_id;
}

/* One event row for one user; the caller holds the savepoint. */
static int append_text(struct outbox *o, int64_t user_id, const char *kind,
                       const char *case_id, const char *text, int64_t now,
                       const char *event_id, int64_t *seq, struct err *e)
{
    int64_t s = 0;
    sqlite3_bind_int64(o->bump, 1, user_id);
    if (sqlite3_step(o->bump) == SQLITE_ROW)
        s = sqlite3_column_int64(o->bump, 0);
    /* Drain the RETURNING statement so the upsert is complete. */
    while (sqlite3_step(o->bump) == SQLITE_ROW)
        ;
    if (sqlite3_reset(o->bump) != SQLITE_OK || s <= 0)
        return err_set(e, ERR_DB, "outbox: seq: %s", sqlite3_errmsg(o->db));
    sqlite3_bind_int64(o->insert, 1, user_id);
    sqlite3_bind_int64(o->insert, 2, s);
    sqlite3_bind_text(o->insert, 3, event_id, 32, SQLITE_STATIC);
    sqlite3_bind_text(o->insert, 4, kind, -1, SQLITE_STATIC);
    if (case_id)
        sqlite3_bind_text(o->insert, 5, case_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(o->insert, 5);
    sqlite3_bind_int64(o->insert, 6, now);
    sqlite3_bind_text(o->insert, 7, text, -1, SQLITE_STATIC);
    int step = sqlite3_step(o->insert);
    sqlite3_reset(o->insert);
    sqlite3_clear_bindings(o->insert);
    if (step != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: insert: %s",
                       sqlite3_errmsg(o->db));
    if (seq)
        *seq = s;
    return 0;
}

/* The one event for users[0..n-1] (n > 0, checked by the caller): the body
 * serialised once, all rows or none under a savepoint, which makes them
 * one unit both inside the caller's transaction and, should someone call
 * us outside one, on their own.  *seq (may be NULL): the last row's. */
static int append_users(struct outbox *o, const int64_t *users, size_t n,
                        const char *kind, const char *case_id, json_t *body,
                        int64_t *seq, struct err *e)
{
    char *text = json_dumps(body ? body : json_null(),
                            JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return err_set(e, ERR_INTERNAL, "outbox: cannot serialise body");
    if (sqlite3_exec(o->db, "SAVEPOINT outbox_append", NULL, NULL, NULL)) {
        free(text);
        return err_set(e, ERR_DB, "outbox: savepoint: %s",
                       sqlite3_errmsg(o->db));
    }
    /* Event ids: 16 random bytes each, drawn eight at a time (random_hex
     * gives at most 128 bytes; each chunk's NUL is overwritten by the
     * next). */
    char *ids = malloc(32 * n + 1);
    int rc = 0;
    if (!ids)
        rc = err_set(e, ERR_INTERNAL, "outbox: out of memory");
    for (size_t i = 0; !rc && i < n; i += 8)
        if (random_hex(ids + 32 * i, 16 * (n - i < 8 ? n - i : 8)))
            rc = err_set(e, ERR_INTERNAL, "outbox: no randomness");
    int64_t now = now_ms();
    for (size_t i = 0; !rc && i < n; i++)
        rc = append_text(o, users[i], kind, case_id, text, now, ids + 32 * i,
                         i + 1 == n ? seq : NULL, e);
    free(ids);
    if (rc)
        sqlite3_exec(o->db, "ROLLBACK TO outbox_append", NULL, NULL, NULL);
    sqlite3_exec(o->db, "RELEASE outbox_append", NULL, NULL, NULL);
    free(text);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        mark_dirty(o, users[i]);
    return 0;
}

int outbox_append_many(struct outbox *o, const int64_t *users, size_t n,
                       const char *kind, const char *case_id, json_t *body,
                       struct err *e)
{
    if (!kind || !*kind)
        return err_set(e, ERR_INVALID, "outbox: bad kind");
    for (size_t i = 0; i < n; i++)
        if (users[i] <= 0)
            return err_set(e, ERR_INVALID, "outbox: bad user id");
    if (!n)
        return 0;
    return append_users(o, users, n, kind, case_id, body, NULL, e);
}

int outbox_append(struct outbox *o, int64_t user_id, const char *kind,
                  const char *case_id, json_t *body, int64_t *seq,
                  struct err *e)
{
    if (user_id <= 0 || !kind || !*kind)
        return err_set(e, ERR_INVALID, "outbox: bad user or kind");
    return append_users(o, &user_id, 1, kind, case_id, body, seq, e);
}

int outbox_fetch(struct outbox *o, int64_t user_id, int64_t after, int limit,
                 json_t **events, struct err *e)
{
    *events = NULL;
    if (limit <= 0)
        limit = 1000;
    json_t *arr = json_array();
    if (!arr)
        return err_set(e, ERR_INTERNAL, "outbox: out of memory");
    sqlite3_bind_int64(o->fetch, 1, user_id);
    sqlite3_bind_int64(o->fetch, 2, after < 0 ? 0 : after);
    sqlite3_bind_int(o->fetch, 3, limit);
    int rc, bad = 0;
    while ((rc = sqlite3_step(o->fetch)) == SQLITE_ROW) {
        const char *body = (const char *)sqlite3_column_text(o->fetch, 5);
        json_error_t je;
        json_t *b = json_loads(body ? body : "null", JSON_DECODE_ANY, &je);
        if (!b) {
            /* Written by us from a json_t: cannot happen unless the
             * database was edited.  Deliver the event with a null body
             * rather than stall the queue. */
            log_warn("outbox: user %lld seq %lld: bad body: %s",
                     (long long)user_id,
                     (long long)sqlite3_column_int64(o->fetch, 0), je.text);
            b = json_null();
        }
        const char *cid = (const char *)sqlite3_column_text(o->fetch, 3);
        json_t *ev = json_pack(
            "{s:s, s:I, s:s, s:s, s:o, s:I, s:o}",
            "type", "event",
            "seq", (json_int_t)sqlite3_column_int64(o->fetch, 0),
            "event_id", (const char *)sqlite3_column_text(o->fetch, 1),
            "kind", (const char *)sqlite3_column_text(o->fetch, 2),
            "case_id", cid ? json_string(cid) : json_null(),
            "at", (json_int_t)sqlite3_column_int64(o->fetch, 4),
            "body", b);
        if (!ev || json_array_append_new(arr, ev)) {
            bad = 1;
            break;
        }
    }
    sqlite3_reset(o->fetch);
    sqlite3_clear_bindings(o->fetch);
    if (bad) {
        json_decref(arr);
        return err_set(e, ERR_INTERNAL, "outbox: out of memory");
    }
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return err_set(e, ERR_DB, "outbox: fetch: %s", sqlite3_errmsg(o->db));
    }
    *events = arr;
    return 0;
}

/* 1 if s can go between JSON quotes as it is (ids, kinds: always). */
static int json_plain(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

/* outbox_fetch_frames through outbox_fetch: for rows whose strings would
 * need escaping (not written by us: an edited database). */
static int frames_slow(struct outbox *o, int64_t user_id, int64_t after,
                       int limit, outbox_frame_fn fn, void *arg,
                       struct err *e)
{
    json_t *arr = NULL;
    int rc = outbox_fetch(o, user_id, after, limit, &arr, e);
    if (rc)
        return rc;
    int n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *ev = json_array_get(arr, i);
        char *t = json_dumps(ev, JSON_COMPACT);
        if (!t) {
            json_decref(arr);
            return err_set(e, ERR_INTERNAL, "outbox: out of memory");
        }
        n++;
        int stop = fn(arg, json_integer_value(json_object_get(ev, "seq")),
                      t, strlen(t));
        free(t);
        if (stop)
            break;
    }
    json_decref(arr);
    return n;
}

int outbox_fetch_frames(struct outbox *o, int64_t user_id, int64_t after,
                        int limit, outbox_frame_fn fn, void *arg,
                        struct err *e)
{
    char *buf = NULL;
    size_t cap = 0;
    int n = 0, rc = SQLITE_DONE, stop = 0;

    if (limit <= 0)
        limit = 1000;
    sqlite3_bind_int64(o->fetch, 1, user_id);
    sqlite3_bind_int64(o->fetch, 2, after < 0 ? 0 : after);
    sqlite3_bind_int(o->fetch, 3, limit);
    while (!stop && (rc = sqlite3_step(o->fetch)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(o->fetch, 0);
        const char *eid = (const char *)sqlite3_column_text(o->fetch, 1);
        const char *kind = (const char *)sqlite3_column_text(o->fetch, 2);
        const char *cid = (const char *)sqlite3_column_text(o->fetch, 3);
        const char *body = (const char *)sqlite3_column_text(o->fetch, 5);
        if (!eid || !kind || !body || !json_plain(eid) || !json_plain(kind) ||
            (cid && !json_plain(cid))) {
            sqlite3_reset(o->fetch);
            sqlite3_clear_bindings(o->fetch);
            free(buf);
            int more = frames_slow(o, user_id, seq - 1, limit - n, fn, arg,
                                   e);
            return more < 0 ? more : n + more;
        }
        size_t need = strlen(eid) + strlen(kind) + (cid ? strlen(cid) : 4) +
                      strlen(body) + 128;
        if (need > cap) {
            char *p = realloc(buf, need);
            if (!p) {
                sqlite3_reset(o->fetch);
                sqlite3_clear_bindings(o->fetch);
                free(buf);
                return err_set(e, ERR_INTERNAL, "outbox: out of memory");
            }
            buf = p;
            cap = need;
        }
        int len = snprintf(buf, cap,
                           "{\"type\":\"event\",\"seq\":%lld,\"event_id\":"
                           "\"%s\",\"kind\":\"%s\",\"case_id\":%s%s%s,"
                           "\"at\":%lld,\"body\":%s}",
                           (long long)seq, eid, kind, cid ? "\"" : "",
                           cid ? cid : "null", cid ? "\"" : "",
                           (long long)sqlite3_column_int64(o->fetch, 4), body);
        n++;
        stop = fn(arg, seq, buf, (size_t)len);
    }
    sqlite3_reset(o->fetch);
    sqlite3_clear_bindings(o->fetch);
    free(buf);
    if (!stop && rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: fetch: %s", sqlite3_errmsg(o->db));
    return n;
}

static int64_t cursor_col(struct outbox *o, int64_t user_id, int col)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(o->db,
                           "SELECT last_seq, acked_seq FROM outbox_cursor"
                           " WHERE user_id = ?1", -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, user_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, col);
    sqlite3_finalize(st);
    return v;
}

int64_t outbox_last_seq(struct outbox *o, int64_t user_id)
{
    return cursor_col(o, user_id, 0);
}

int64_t outbox_acked_seq(struct outbox *o, int64_t user_id)
{
    return cursor_col(o, user_id, 1);
}

int outbox_ack(struct outbox *o, int64_t user_id, int64_t seq,
               int64_t *from, struct err *e)
{
    if (seq < 0)
        return err_set(e, ERR_INVALID, "ack: negative seq");
    int64_t last = 0, acked = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(o->db,
                           "SELECT last_seq, acked_seq FROM outbox_cursor"
                           " WHERE user_id = ?1", -1, &st, NULL) != SQLITE_OK)
        return err_set(e, ERR_DB, "outbox: ack: %s", sqlite3_errmsg(o->db));
    sqlite3_bind_int64(st, 1, user_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        last = sqlite3_column_int64(st, 0);
        acked = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: ack: %s", sqlite3_errmsg(o->db));
    if (seq > last)
        return err_set(e, ERR_INVALID,
                       "ack %lld is beyond the last event (%lld)",
                       (long long)seq, (long long)last);
    if (from)
        *from = seq > acked ? acked : seq;
    if (seq <= acked)
        return 0;

    if (sqlite3_prepare_v2(o->db,
                           "UPDATE outbox_cursor SET acked_seq = ?2"
                           " WHERE user_id = ?1 AND acked_seq < ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return err_set(e, ERR_DB, "outbox: ack: %s", sqlite3_errmsg(o->db));
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, seq);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: ack: %s", sqlite3_errmsg(o->db));
    return 0;
}

int outbox_prune(struct outbox *o, int64_t now, struct err *e)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(o->db,
                           "DELETE FROM outbox WHERE at < ?1 AND seq <="
                           " (SELECT acked_seq FROM outbox_cursor c"
                           "  WHERE c.user_id = outbox.user_id)",
                           -1, &st, NULL) != SQLITE_OK)
        return err_set(e, ERR_DB, "outbox: prune: %s", sqlite3_errmsg(o->db));
    sqlite3_bind_int64(st, 1, now - OUTBOX_KEEP_MS);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: prune: %s", sqlite3_errmsg(o->db));
    return sqlite3_changes(o->db);
}

int outbox_take_dirty(struct outbox *o, int64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!o->ndirty)
        return 0;
    *ids = o->dirty;
    *n = o->ndirty;
    o->dirty = NULL;
    o->ndirty = o->capdirty = 0;
    return 0;
}

void outbox_clear_dirty(struct outbox *o)
{
    o->ndirty = 0;
}

const int64_t *outbox_dirty(const struct outbox *o, size_t *n)
{
    *n = o->ndirty;
    return o->dirty;
}
