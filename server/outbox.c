/*
 * outbox — per-user, ordered, durable event queues in the store's SQLite
 * database (see outbox.h for the contract).
 *
 * Four tables (schema.c makes them): outbox_events holds each event once
 * (id, event_id, kind, case_id, at, body); outbox holds, per recipient,
 * only (user_id, seq, event), WITHOUT ROWID, keyed (user_id, seq) — what
 * replay reads in order; outbox_hot, the same columns, holds the rows of
 * the last seconds; outbox_cursor holds, per user, the last seq handed
 * out and the highest cumulative ack.
 *
 * An append is the event row; one UPSERT over json_each(the user ids)
 * bumping every cursor, RETURNING the seqs; then one prepared INSERT of
 * three integers stepped per recipient, into outbox_hot.  Why two tables:
 * keyed by user, one event for 1,000 users lands on 1,000 different pages
 * of a large table, and every one of them goes to the WAL at COMMIT (4 MB
 * for a case; half of a create's time).  outbox_hot stays a few dozen
 * pages; outbox_settle moves its rows over in key order, a batch of many
 * events touching each user's page once.  Readers take both tables
 * (OUTBOX_ROWS_OF in outbox.h).
 * The seqs come from the cursor rows inside the caller's transaction, so
 * a rolled-back change leaves no gap and two changes can never get the
 * same seq.  Acknowledged events are kept OUTBOX_KEEP_MS (PROTOCOL.md's
 * 30 days), then outbox_prune drops the recipient rows, and the event
 * rows nobody refers to any more.
 *
 * The events of the current transaction are also kept in memory (frame
 * tail + seqs) for the live fan-out after COMMIT; a user missed because
 * of a crash loses nothing — the rows are replayed at the next hello.
 */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/log.h"

struct outbox {
    sqlite3 *db;
    sqlite3_stmt *event;    /* the event row */
    sqlite3_stmt *bump;     /* cursor upsert, RETURNING user_id, last_seq */
    sqlite3_stmt *insert;   /* the recipient rows */
    sqlite3_stmt *fetch;
    sqlite3_stmt *cursor;   /* last_seq, acked_seq of a user */
    sqlite3_stmt *ack;      /* acked_seqs moved up, from a JSON list */
    struct outbox_event *head, *tail;   /* appended, not taken yet */
    int64_t *dirty;                     /* outbox_dirty's answer */
    size_t capdirty;
    int64_t hot;            /* rows in outbox_hot, estimated */
    int64_t sweep;          /* outbox_settle goes on from this user id */
    sqlite3_stmt *hot_bound, *hot_move, *hot_drop;
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
                "INSERT INTO outbox_events (event_id, kind, case_id, at,"
                " body) VALUES (?1, ?2, ?3, ?4, ?5)",
                &o->event, e) ||
        prepare(db,
                "INSERT INTO outbox_cursor (user_id, last_seq, acked_seq)"
                " SELECT value, 1, 0 FROM json_each(?1) WHERE true"
                " ON CONFLICT (user_id) DO UPDATE"
                " SET last_seq = last_seq + 1 RETURNING user_id, last_seq",
                &o->bump, e) ||
        prepare(db,
                "INSERT INTO outbox_hot (user_id, seq, event)"
                " VALUES (?1, ?2, ?3)",
                &o->insert, e) ||
        prepare(db,
                "SELECT o.seq, e.event_id, e.kind, e.case_id, e.at, e.body"
                " FROM " OUTBOX_ROWS_OF("?1", "?2", "?3") " o"
                " JOIN outbox_events e ON e.id = o.event"
                " ORDER BY o.seq LIMIT ?3",
                &o->fetch, e) ||
        /* Acks come from every session every second: prepared once. */
        prepare(db,
                "SELECT last_seq, acked_seq FROM outbox_cursor"
                " WHERE user_id = ?1",
                &o->cursor, e) ||
        prepare(db,
                "WITH j(u, s) AS (SELECT json_extract(value, '$[0]'),"
                "  MAX(json_extract(value, '$[1]')) FROM json_each(?1)"
                "  GROUP BY 1)"
                " UPDATE outbox_cursor SET acked_seq = j.s FROM j"
                " WHERE user_id = j.u AND acked_seq < j.s"
                " AND j.s <= last_seq",
                &o->ack, e) ||
        prepare(db,
                "SELECT user_id, seq FROM outbox_hot WHERE user_id >= ?1"
                " ORDER BY user_id, seq LIMIT 1 OFFSET ?2",
                &o->hot_bound, e) ||
        prepare(db,
                "INSERT INTO outbox (user_id, seq, event)"
                " SELECT user_id, seq, event FROM outbox_hot"
                " WHERE user_id >= ?1 AND (user_id, seq) <= (?2, ?3)"
                " ORDER BY user_id, seq",
                &o->hot_move, e) ||
        prepare(db,
                "DELETE FROM outbox_hot"
                " WHERE user_id >= ?1 AND (user_id, seq) <= (?2, ?3)",
                &o->hot_drop, e)) {
        outbox_close(o);
        return NULL;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM outbox_hot", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        o->hot = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return o;
}

void outbox_close(struct outbox *o)
{
    if (!o)
        return;
    sqlite3_finalize(o->event);
    sqlite3_finalize(o->bump);
    sqlite3_finalize(o->insert);
    sqlite3_finalize(o->fetch);
    sqlite3_finalize(o->cursor);
    sqlite3_finalize(o->ack);
    sqlite3_finalize(o->hot_bound);
    sqlite3_finalize(o->hot_move);
    sqlite3_finalize(o->hot_drop);
    outbox_clear_events(o);
    free(o->dirty);
    free(o);
}

/* ---- frames ------------------------------------------------------------- */

size_t outbox_frame_head(char *buf, int64_t seq)
{
    int n = snprintf(buf, OUTBOX_HEAD_MAX, "{\"type\":\"event\",\"seq\":%lld,",
                     (long long)seq);
    return n < 0 ? 0 : (size_t)n;
}

/* 1 if s can go between JSON quotes as it is (ids, kinds: always). */
static int json_plain(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

/* Room frame_tail needs for these strings. */
static size_t tail_room(const char *eid, const char *kind, const char *cid,
                        const char *body)
{
    return strlen(eid) + strlen(kind) + (cid ? strlen(cid) : 4) +
           strlen(body) + 96;
}

/* An event frame's tail (what follows outbox_frame_head) into buf of cap
 * bytes (tail_room); the strings must be json_plain.  Returns its length,
 * 0 if it does not fit. */
static size_t frame_tail(char *buf, size_t cap, const char *eid,
                         const char *kind, const char *cid, int64_t at,
                         const char *body)
{
    int n = snprintf(buf, cap,
                     "\"event_id\":\"%s\",\"kind\":\"%s\",\"case_id\":"
                     "%s%s%s,\"at\":%lld,\"body\":%s}",
                     eid, kind, cid ? "\"" : "", cid ? cid : "null",
                     cid ? "\"" : "", (long long)at, body);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* ---- append ------------------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

void outbox_event_free(struct outbox_event *ev)
{
    if (!ev)
        return;
    free(ev->rcpt);
    free(ev);
}

void outbox_take_events(struct outbox *o, struct outbox_event **list)
{
    *list = o->head;
    o->head = o->tail = NULL;
}

void outbox_clear_events(struct outbox *o)
{
    while (o->head) {
        struct outbox_event *n = o->head->next;
        outbox_event_free(o->head);
        o->head = n;
    }
    o->tail = NULL;
}

/* The rows of one event for users[0..n-1] (distinct, sorted), inside the
 * caller's savepoint; *live receives its in-memory copy (NULL when it
 * cannot be made: the rows are there, replay sends them). */
static int append_rows(struct outbox *o, const int64_t *users, size_t n,
                       const char *kind, const char *case_id,
                       const char *text, struct outbox_event **live,
                       struct err *e)
{
    char eid[33];
    int64_t now = now_ms();
    *live = NULL;
    if (random_hex(eid, 16))
        return err_set(e, ERR_INTERNAL, "outbox: no randomness");
    size_t room = tail_room(eid, kind, case_id, text);
    struct outbox_event *ev = calloc(1, sizeof *ev + room);
    char *ids = malloc(21 * n + 2);
    if (ev)
        ev->rcpt = malloc(n * sizeof *ev->rcpt);
    if (!ev || !ids || !ev->rcpt) {
        free(ids);
        outbox_event_free(ev);
        return err_set(e, ERR_INTERNAL, "outbox: out of memory");
    }
    /* The user ids as one JSON array, for json_each. */
    size_t len = 0;
    ids[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(ids + len, "%s%lld", i ? "," : "",
                               (long long)users[i]);
    ids[len++] = ']';

    int rc = 0;
    sqlite3_bind_text(o->event, 1, eid, 32, SQLITE_STATIC);
    sqlite3_bind_text(o->event, 2, kind, -1, SQLITE_STATIC);
    if (case_id)
        sqlite3_bind_text(o->event, 3, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(o->event, 4, now);
    sqlite3_bind_text(o->event, 5, text, -1, SQLITE_STATIC);
    if (sqlite3_step(o->event) != SQLITE_DONE)
        rc = err_set(e, ERR_DB, "outbox: event: %s", sqlite3_errmsg(o->db));
    sqlite3_reset(o->event);
    sqlite3_clear_bindings(o->event);
    int64_t ref = sqlite3_last_insert_rowid(o->db);

    size_t got = 0;
    if (!rc) {
        int step;
        sqlite3_bind_text(o->bump, 1, ids, (int)len, SQLITE_STATIC);
        while ((step = sqlite3_step(o->bump)) == SQLITE_ROW && got < n) {
            ev->rcpt[got].user_id = sqlite3_column_int64(o->bump, 0);
            ev->rcpt[got].seq = sqlite3_column_int64(o->bump, 1);
            got++;
        }
        if (step != SQLITE_DONE || got != n)
            rc = err_set(e, ERR_DB, "outbox: seq: %s",
                         sqlite3_errmsg(o->db));
        sqlite3_reset(o->bump);
        sqlite3_clear_bindings(o->bump);
    }
    /* The recipient rows: one prepared statement stepped per row, from
     * the seqs RETURNING gave (an INSERT ... SELECT joining json_each to
     * the cursors measured 8x slower for 1,000 rows). */
    sqlite3_bind_int64(o->insert, 3, ref);
    for (size_t i = 0; !rc && i < n; i++) {
        sqlite3_bind_int64(o->insert, 1, ev->rcpt[i].user_id);
        sqlite3_bind_int64(o->insert, 2, ev->rcpt[i].seq);
        if (sqlite3_step(o->insert) != SQLITE_DONE)
            rc = err_set(e, ERR_DB, "outbox: insert: %s",
                         sqlite3_errmsg(o->db));
        sqlite3_reset(o->insert);
    }
    sqlite3_clear_bindings(o->insert);
    free(ids);
    if (!rc)
        o->hot += (int64_t)n;   /* high if the caller rolls back: harmless */
    if (rc) {
        outbox_event_free(ev);
        return rc;
    }
    /* RETURNING promises no order: by user id, as users[] is. */
    qsort(ev->rcpt, n, sizeof *ev->rcpt, cmp_id);
    ev->n = n;
    if (json_plain(kind) && (!case_id || json_plain(case_id)))
        ev->tail_len = frame_tail(ev->tail, room, eid, kind, case_id, now,
                                  text);
    if (!ev->tail_len) {
        outbox_event_free(ev);
        ev = NULL;
    }
    *live = ev;
    return 0;
}

/* The one event for users[0..n-1] (n > 0, checked by the caller): all
 * rows or none under a savepoint, which makes them one unit both inside
 * the caller's transaction and, should someone call us outside one, on
 * their own.  *seq (may be NULL): the seq users[0] got. */
static int append_users(struct outbox *o, const int64_t *users, size_t n,
                        const char *kind, const char *case_id, json_t *body,
                        int64_t *seq, struct err *e)
{
    int64_t *u = malloc(n * sizeof *u);
    char *text = json_dumps(body ? body : json_null(),
                            JSON_COMPACT | JSON_ENCODE_ANY);
    if (!u || !text) {
        free(u);
        free(text);
        return err_set(e, ERR_INTERNAL, "outbox: cannot serialise body");
    }
    memcpy(u, users, n * sizeof *u);
    qsort(u, n, sizeof *u, cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!k || u[k - 1] != u[i])
            u[k++] = u[i];
    if (sqlite3_exec(o->db, "SAVEPOINT outbox_append", NULL, NULL, NULL)) {
        free(u);
        free(text);
        return err_set(e, ERR_DB, "outbox: savepoint: %s",
                       sqlite3_errmsg(o->db));
    }
    struct outbox_event *ev = NULL;
    int rc = append_rows(o, u, k, kind, case_id, text, &ev, e);
    if (rc)
        sqlite3_exec(o->db, "ROLLBACK TO outbox_append", NULL, NULL, NULL);
    sqlite3_exec(o->db, "RELEASE outbox_append", NULL, NULL, NULL);
    free(text);
    free(u);
    if (rc)
        return rc;
    if (seq)
        *seq = outbox_last_seq(o, users[0]);
    if (ev) {
        if (o->tail)
            o->tail->next = ev;
        else
            o->head = ev;
        o->tail = ev;
    }
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
        size_t need = OUTBOX_HEAD_MAX + tail_room(eid, kind, cid, body);
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
        size_t len = outbox_frame_head(buf, seq);
        len += frame_tail(buf + len, cap - len, eid, kind, cid,
                          sqlite3_column_int64(o->fetch, 4), body);
        n++;
        stop = fn(arg, seq, buf, len);
    }
    sqlite3_reset(o->fetch);
    sqlite3_clear_bindings(o->fetch);
    free(buf);
    if (!stop && rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: fetch: %s", sqlite3_errmsg(o->db));
    return n;
}

/* The cursor of user_id: SQLITE_ROW (found), SQLITE_DONE (none: 0, 0) or
 * an error. */
static int cursor_get(struct outbox *o, int64_t user_id, int64_t *last,
                      int64_t *acked)
{
    *last = *acked = 0;
    sqlite3_bind_int64(o->cursor, 1, user_id);
    int rc = sqlite3_step(o->cursor);
    if (rc == SQLITE_ROW) {
        *last = sqlite3_column_int64(o->cursor, 0);
        *acked = sqlite3_column_int64(o->cursor, 1);
    }
    sqlite3_reset(o->cursor);
    return rc;
}

int64_t outbox_last_seq(struct outbox *o, int64_t user_id)
{
    int64_t last, acked;
    cursor_get(o, user_id, &last, &acked);
    return last;
}

int64_t outbox_acked_seq(struct outbox *o, int64_t user_id)
{
    int64_t last, acked;
    cursor_get(o, user_id, &last, &acked);
    return acked;
}

int outbox_ack(struct outbox *o, int64_t user_id, int64_t seq,
               int64_t *from, struct err *e)
{
    if (seq < 0)
        return err_set(e, ERR_INVALID, "ack: negative seq");
    int64_t last = 0, acked = 0;
    int rc = cursor_get(o, user_id, &last, &acked);
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
    struct outbox_rcpt one = { user_id, seq };
    char *text = outbox_acks_json(&one, 1);
    if (!text)
        return err_set(e, ERR_INTERNAL, "outbox: out of memory");
    rc = outbox_ack_many(o, text, e);
    free(text);
    return rc;
}

char *outbox_acks_json(const struct outbox_rcpt *acks, size_t n)
{
    char *text = malloc(n * 44 + 3);
    if (!text)
        return NULL;
    size_t len = 0;
    text[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "%s[%lld,%lld]", i ? "," : "",
                               (long long)acks[i].user_id,
                               (long long)acks[i].seq);
    text[len++] = ']';
    text[len] = '\0';
    return text;
}

int outbox_ack_many(struct outbox *o, const char *acks, struct err *e)
{
    sqlite3_bind_text(o->ack, 1, acks, -1, SQLITE_STATIC);
    int rc = sqlite3_step(o->ack);
    sqlite3_reset(o->ack);
    sqlite3_clear_bindings(o->ack);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: ack: %s", sqlite3_errmsg(o->db));
    return 0;
}

int outbox_prune(struct outbox *o, int64_t now, struct err *e)
{
    sqlite3_stmt *st;
    /* Recipient rows first (their count is the answer), then the events
     * no row refers to any more; both in one transaction.  Pruning runs
     * rarely (main.c's tick), so the NOT IN's one pass over outbox is
     * cheaper than an index on outbox.event paid at every append. */
    int64_t cutoff = now - OUTBOX_KEEP_MS;
    if (sqlite3_exec(o->db, "SAVEPOINT outbox_prune", NULL, NULL, NULL))
        return err_set(e, ERR_DB, "outbox: prune: %s", sqlite3_errmsg(o->db));
    int rc = SQLITE_DONE, n = 0;
    static const char *const sql[3] = {
        "DELETE FROM outbox WHERE event IN"
        " (SELECT id FROM outbox_events WHERE at < ?1) AND seq <="
        " (SELECT acked_seq FROM outbox_cursor c"
        "  WHERE c.user_id = outbox.user_id)",
        /* Settled long ago, normally: unless the server stopped first. */
        "DELETE FROM outbox_hot WHERE event IN"
        " (SELECT id FROM outbox_events WHERE at < ?1) AND seq <="
        " (SELECT acked_seq FROM outbox_cursor c"
        "  WHERE c.user_id = outbox_hot.user_id)",
        "DELETE FROM outbox_events WHERE at < ?1"
        " AND id NOT IN (SELECT event FROM outbox"
        "  UNION ALL SELECT event FROM outbox_hot)",
    };
    for (int i = 0; i < 3 && rc == SQLITE_DONE; i++) {
        if (sqlite3_prepare_v2(o->db, sql[i], -1, &st, NULL) != SQLITE_OK) {
            rc = SQLITE_ERROR;
            break;
        }
        sqlite3_bind_int64(st, 1, cutoff);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (i < 2)
            n += sqlite3_changes(o->db);
    }
    if (rc != SQLITE_DONE) {
        err_set(e, ERR_DB, "outbox: prune: %s", sqlite3_errmsg(o->db));
        sqlite3_exec(o->db, "ROLLBACK TO outbox_prune", NULL, NULL, NULL);
    }
    sqlite3_exec(o->db, "RELEASE outbox_prune", NULL, NULL, NULL);
    return rc != SQLITE_DONE ? ERR_DB : n;
}

const int64_t *outbox_dirty(struct outbox *o, size_t *n)
{
    size_t total = 0, k = 0;
    *n = 0;
    for (struct outbox_event *ev = o->head; ev; ev = ev->next)
        total += ev->n;
    if (total > o->capdirty) {
        int64_t *p = realloc(o->dirty, total * sizeof *p);
        if (!p) {
            log_warn("outbox: dirty set: out of memory");
            return NULL;
        }
        o->dirty = p;
        o->capdirty = total;
    }
    for (struct outbox_event *ev = o->head; ev; ev = ev->next)
        for (size_t i = 0; i < ev->n; i++)
            o->dirty[k++] = ev->rcpt[i].user_id;
    qsort(o->dirty, k, sizeof *o->dirty, cmp_id);
    for (size_t i = 0; i < k; i++)
        if (!*n || o->dirty[*n - 1] != o->dirty[i])
            o->dirty[(*n)++] = o->dirty[i];
    return o->dirty;
}

int64_t outbox_hot_rows(const struct outbox *o)
{
    return o->hot;
}

int outbox_settle(struct outbox *o, int64_t min, int max, struct err *e)
{
    if (o->hot < min || o->hot <= 0 || max <= 0)
        return 0;
    /* The batch: from the sweep's user on, max rows in key order, up to
     * (bu, bs); fewer left: the rest, and the sweep starts over. */
    int64_t bu = INT64_MAX, bs = INT64_MAX, from = o->sweep;
    sqlite3_bind_int64(o->hot_bound, 1, from);
    sqlite3_bind_int(o->hot_bound, 2, max - 1);
    int rc = sqlite3_step(o->hot_bound);
    if (rc == SQLITE_ROW) {
        bu = sqlite3_column_int64(o->hot_bound, 0);
        bs = sqlite3_column_int64(o->hot_bound, 1);
    }
    sqlite3_reset(o->hot_bound);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "outbox: settle: %s",
                       sqlite3_errmsg(o->db));
    if (sqlite3_exec(o->db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
        return err_set(e, ERR_DB, "outbox: settle: %s",
                       sqlite3_errmsg(o->db));
    int moved = 0;
    sqlite3_stmt *step[2] = { o->hot_move, o->hot_drop };
    for (int i = 0; i < 2; i++) {
        sqlite3_bind_int64(step[i], 1, from);
        sqlite3_bind_int64(step[i], 2, bu);
        sqlite3_bind_int64(step[i], 3, bs);
        rc = sqlite3_step(step[i]);
        sqlite3_reset(step[i]);
        if (rc != SQLITE_DONE)
            break;
        if (i == 0)
            moved = sqlite3_changes(o->db);
        else if (sqlite3_changes(o->db) != moved)
            rc = SQLITE_CORRUPT;    /* not the same rows: undo */
    }
    if (rc != SQLITE_DONE ||
        sqlite3_exec(o->db, "COMMIT", NULL, NULL, NULL)) {
        err_set(e, ERR_DB, "outbox: settle: %s", rc == SQLITE_CORRUPT ?
                "rows moved and dropped differ" : sqlite3_errmsg(o->db));
        sqlite3_exec(o->db, "ROLLBACK", NULL, NULL, NULL);
        return ERR_DB;
    }
    o->sweep = bu == INT64_MAX ? 0 : bu;
    if (bu == INT64_MAX && from == 0)
        o->hot = 0;             /* all of it: the estimate is exact again */
    else
        o->hot = o->hot > moved ? o->hot - moved : 0;
    return moved;
}
