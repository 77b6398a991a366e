/*
 * test_outbox — the per-user event queues (server/outbox.c) on a bare
 * SQLite file: per-user seqs 1, 2, 3..., unique event ids, fetch after a
 * seq with a limit, cumulative acks and their rules, the dirty set, a
 * rolled-back transaction leaving no trace, and everything surviving a
 * close and reopen of the database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "../../server/outbox.h"
#include "../../server/schema.h"
#include "testutil.h"

static char dir[256];
static char path[512];
static sqlite3 *db;
static struct outbox *ob;

static void open_db(void)
{
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL;"
                                      "PRAGMA synchronous = FULL;",
                                  NULL, NULL, NULL), SQLITE_OK);
    struct err e = {0};
    if (schema_migrate(db, &e))
        fail_msg("schema_migrate: %s", e.msg);
    ob = outbox_open(db, &e);
    if (!ob)
        fail_msg("outbox_open: %s", e.msg);
}

static void close_db(void)
{
    outbox_close(ob);
    ob = NULL;
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    db = NULL;
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/hashi-test-outbox-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/hashi.db", dir);
    open_db();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (ob)
        close_db();
    return tu_rm_rf(dir);
}

static int64_t append(int64_t user, const char *kind, const char *case_id,
                      int n)
{
    struct err e = {0};
    json_t *body = json_pack("{s:i, s:s}", "n", n, "note", "x\"y\\z");
    int64_t seq = -1;
    if (outbox_append(ob, user, kind, case_id, body, &seq, &e))
        fail_msg("append: %s", e.msg);
    json_decref(body);
    return seq;
}

static json_t *fetch(int64_t user, int64_t after, int limit)
{
    struct err e = {0};
    json_t *ev = NULL;
    assert_int_equal(outbox_fetch(ob, user, after, limit, &ev, &e), 0);
    assert_true(json_is_array(ev));
    return ev;
}

static void test_seq_per_user(void **state)
{
    (void)state;
    assert_int_equal(append(7, "case.new", "c1", 0), 1);
    assert_int_equal(append(7, "message.new", "c1", 1), 2);
    assert_int_equal(append(9, "case.new", "c1", 2), 1);
    assert_int_equal(append(7, "case.claimed", NULL, 3), 3);
    assert_int_equal(outbox_last_seq(ob, 7), 3);
    assert_int_equal(outbox_last_seq(ob, 9), 1);
    assert_int_equal(outbox_last_seq(ob, 42), 0);

    json_t *ev = fetch(7, 0, 100);
    assert_int_equal(json_array_size(ev), 3);
    static const char *const kinds[] = {
        "case.new", "message.new", "case.claimed",
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(ev, i);
        assert_string_equal(json_string_value(json_object_get(x, "type")),
                            "event");
        assert_int_equal(json_integer_value(json_object_get(x, "seq")),
                         (json_int_t)i + 1);
        assert_string_equal(json_string_value(json_object_get(x, "kind")),
                            kinds[i]);
        const char *id = json_string_value(json_object_get(x, "event_id"));
        assert_int_equal(strlen(id), 32);
        assert_int_equal(strspn(id, "0123456789abcdef"), 32);
        assert_true(json_integer_value(json_object_get(x, "at")) > 0);
        json_t *b = json_object_get(x, "body");
        assert_int_equal(json_integer_value(json_object_get(b, "n")),
                         i == 2 ? 3 : (json_int_t)i);
        assert_string_equal(json_string_value(json_object_get(b, "note")),
                            "x\"y\\z");
    }
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(ev, 0), "case_id")), "c1");
    assert_true(json_is_null(json_object_get(json_array_get(ev, 2),
                                             "case_id")));
    const char *a = json_string_value(json_object_get(json_array_get(ev, 0),
                                                      "event_id"));
    const char *b = json_string_value(json_object_get(json_array_get(ev, 1),
                                                      "event_id"));
    assert_string_not_equal(a, b);
    json_decref(ev);

    /* After a seq, and with a limit. */
    ev = fetch(7, 1, 1);
    assert_int_equal(json_array_size(ev), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(ev, 0), "seq")), 2);
    json_decref(ev);
    ev = fetch(7, 3, 100);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    ev = fetch(9, 0, 100);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
}

static void test_ack_rules(void **state)
{
    (void)state;
    struct err e = {0};
    for (int i = 0; i < 5; i++)
        append(3, "message.new", "c", i);
    assert_int_equal(outbox_acked_seq(ob, 3), 0);
    assert_int_equal(outbox_ack(ob, 3, 6, NULL, &e), ERR_INVALID);
    assert_int_equal(outbox_ack(ob, 3, -1, NULL, &e), ERR_INVALID);
    assert_int_equal(outbox_ack(ob, 4, 1, NULL, &e),
                     ERR_INVALID);                   /* no events */
    assert_int_equal(outbox_ack(ob, 4, 0, NULL, &e), 0);
    /* The newly acknowledged range is reported: (from, seq]. */
    int64_t from = -1;
    assert_int_equal(outbox_ack(ob, 3, 4, &from, &e), 0);
    assert_int_equal(from, 0);
    assert_int_equal(outbox_acked_seq(ob, 3), 4);
    /* Lower acks are ignored: nothing new. */
    assert_int_equal(outbox_ack(ob, 3, 2, &from, &e), 0);
    assert_int_equal(from, 2);
    assert_int_equal(outbox_acked_seq(ob, 3), 4);
    /* Recent acknowledged events are kept (a client may reconnect with an
     * older last_seq); what is after the ack is there. */
    json_t *ev = fetch(3, 4, 100);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    assert_int_equal(outbox_ack(ob, 3, 5, &from, &e), 0);
    assert_int_equal(from, 4);
    assert_int_equal(outbox_acked_seq(ob, 3), 5);
    ev = fetch(3, 5, 100);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
}

/* Acknowledged events are kept OUTBOX_KEEP_MS (30 days, PROTOCOL.md
 * section 10) after they were appended: one millisecond older is pruned,
 * exactly that old is kept; unacknowledged ones are never pruned. */
static void test_prune_old_acked(void **state)
{
    (void)state;
    struct err e = {0};
    const int64_t now = 2000000000000LL;
    char sql[400];
    for (int i = 0; i < 4; i++)
        append(5, "case.new", "c", i);
    /* seq 1: past the keep time; 2: at it; 3: past it but unacked; 4:
     * new and unacked. */
    snprintf(sql, sizeof sql, "UPDATE outbox_events SET at = CASE"
             " (SELECT seq FROM outbox_all o WHERE o.event = outbox_events.id"
             "  AND o.user_id = 5)"
             " WHEN 1 THEN %lld WHEN 2 THEN %lld WHEN 3 THEN %lld"
             " ELSE at END",
             (long long)(now - OUTBOX_KEEP_MS - 1),
             (long long)(now - OUTBOX_KEEP_MS),
             (long long)(now - OUTBOX_KEEP_MS - 1));
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(OUTBOX_KEEP_MS, 30LL * 24 * 3600 * 1000);
    assert_int_equal(outbox_ack(ob, 5, 2, NULL, &e), 0);
    /* Acking prunes nothing by itself. */
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox_all"
                                    " WHERE user_id = 5"), 4);
    assert_int_equal(outbox_prune(ob, now, &e), 1);
    /* ...and the event row nobody refers to any more. */
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox_events"),
                     3);
    json_t *ev = fetch(5, 0, 100);
    assert_int_equal(json_array_size(ev), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(ev, 0), "seq")), 2);
    json_decref(ev);
    /* A day later seq 2 goes too; 3 stays until acknowledged. */
    assert_int_equal(outbox_prune(ob, now + 86400000, &e), 1);
    assert_int_equal(outbox_ack(ob, 5, 3, NULL, &e), 0);
    assert_int_equal(outbox_prune(ob, now + 86400000, &e), 1);
    ev = fetch(5, 0, 100);
    assert_int_equal(json_array_size(ev), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(ev, 0), "seq")), 4);
    json_decref(ev);
    /* Seqs keep counting from the cursor, not from what is left. */
    assert_int_equal(append(5, "case.new", "c", 9), 5);
}

/* The frame fetch_frames gives for (user, seq), malloc'd. */
static int keep_frame(void *arg, int64_t seq, const char *frame, size_t len)
{
    (void)seq;
    *(char **)arg = strndup(frame, len);
    return 1;
}

static char *replay_frame(int64_t user, int64_t seq)
{
    struct err e = {0};
    char *f = NULL;
    assert_int_equal(outbox_fetch_frames(ob, user, seq - 1, 1, keep_frame,
                                         &f, &e), 1);
    return f;
}

/* Every append is kept in memory for the live fan-out, oldest first:
 * its recipients with their seqs, and a frame tail that, after
 * outbox_frame_head(seq), is byte for byte the frame replay sends. */
static void test_live_events(void **state)
{
    (void)state;
    struct err e = {0};
    struct outbox_event *ev = NULL;
    outbox_take_events(ob, &ev);
    assert_null(ev);
    append(1, "k", NULL, 0);
    int64_t users[3] = { 40, 2, 40 };       /* 40 twice: once */
    json_t *body = json_pack("{s:s}", "note", "caf\u00e9 \"q\"");
    assert_int_equal(outbox_append_many(ob, users, 3, "case.new", "c9",
                                        body, &e), 0);
    json_decref(body);
    outbox_take_events(ob, &ev);
    assert_non_null(ev);
    assert_int_equal(ev->n, 1);
    assert_int_equal(ev->rcpt[0].user_id, 1);
    struct outbox_event *two = ev->next;
    assert_non_null(two);
    assert_null(two->next);
    assert_int_equal(two->n, 2);
    assert_int_equal(two->rcpt[0].user_id, 2);
    assert_int_equal(two->rcpt[0].seq, 1);
    assert_int_equal(two->rcpt[1].user_id, 40);
    assert_int_equal(two->rcpt[1].seq, 1);
    assert_int_equal(outbox_last_seq(ob, 40), 1);
    for (size_t i = 0; i < two->n; i++) {
        char head[OUTBOX_HEAD_MAX], live[4096];
        size_t n = outbox_frame_head(head, two->rcpt[i].seq);
        assert_true(n + two->tail_len < sizeof live);
        memcpy(live, head, n);
        memcpy(live + n, two->tail, two->tail_len);
        live[n + two->tail_len] = 0;
        char *replayed = replay_frame(two->rcpt[i].user_id,
                                      two->rcpt[i].seq);
        assert_string_equal(live, replayed);
        free(replayed);
    }
    outbox_event_free(ev);
    outbox_event_free(two);
    outbox_take_events(ob, &ev);
    assert_null(ev);
    append(3, "k", NULL, 0);
    outbox_clear_events(ob);
    outbox_take_events(ob, &ev);
    assert_null(ev);
}

/* The seqs user u gets from outbox_fetch after 0, as "1 2 3". */
static void seqs_of(int64_t u, char *out, size_t n)
{
    json_t *ev = fetch(u, 0, 100);
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(ev); i++) {
        char one[24];
        snprintf(one, sizeof one, "%s%lld", i ? " " : "",
                 (long long)json_integer_value(json_object_get(
                     json_array_get(ev, i), "seq")));
        strncat(out, one, n - strlen(out) - 1);
    }
    json_decref(ev);
}

/* New rows wait in outbox_hot; outbox_settle moves them to outbox in key
 * order, a sweep over the users across calls; replay reads both tables,
 * in seq order, before, during and after. */
static void test_settle_moves_rows(void **state)
{
    (void)state;
    struct err e = {0};
    char got[128];
    int64_t users[50];
    for (int i = 0; i < 50; i++)
        users[i] = 1 + i;
    for (int k = 0; k < 3; k++) {
        json_t *body = json_pack("{s:i}", "k", k);
        assert_int_equal(outbox_append_many(ob, users, 50, "case.new", "c",
                                            body, &e), 0);
        json_decref(body);
    }
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox_hot"), 150);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox"), 0);
    assert_int_equal(outbox_hot_rows(ob), 150);
    /* Below its threshold: nothing. */
    assert_int_equal(outbox_settle(ob, 151, 40, &e), 0);
    /* 40 rows in key order: users 1..13 whole, and user 14's seq 1. */
    assert_int_equal(outbox_settle(ob, 1, 40, &e), 40);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox"), 40);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox"
                                    " WHERE user_id = 14"), 1);
    assert_int_equal(tu_sql_int(db, "SELECT MAX(user_id) FROM outbox"), 14);
    seqs_of(14, got, sizeof got);
    assert_string_equal(got, "1 2 3");
    /* A new event meanwhile; the sweep goes on from user 14. */
    assert_int_equal(outbox_append_many(ob, users, 50, "case.new", "c",
                                        NULL, &e), 0);
    assert_int_equal(outbox_settle(ob, 1, 40, &e), 40);
    assert_int_equal(tu_sql_int(db, "SELECT MIN(user_id) FROM outbox_hot"
                                    " WHERE seq < 4"), 24);
    seqs_of(1, got, sizeof got);
    assert_string_equal(got, "1 2 3 4");
    int moved, rounds = 0;
    while ((moved = outbox_settle(ob, 1, 40, &e)) > 0)
        rounds++;
    assert_int_equal(moved, 0);
    assert_true(rounds >= 3 && rounds <= 6);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox_hot"), 0);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox"), 200);
    assert_int_equal(outbox_hot_rows(ob), 0);
    for (int u = 1; u <= 50; u += 7) {
        seqs_of(u, got, sizeof got);
        assert_string_equal(got, "1 2 3 4");
    }
    /* Reopened: the estimate is read back (none left). */
    close_db();
    open_db();
    assert_int_equal(outbox_hot_rows(ob), 0);
}

/* One body per event however many recipients; each recipient row is
 * only (user_id, seq, event). */
static void test_body_stored_once(void **state)
{
    (void)state;
    struct err e = {0};
    int64_t users[500];
    for (int i = 0; i < 500; i++)
        users[i] = 1 + i;
    json_t *body = json_pack("{s:s}", "case", "c1");
    for (int k = 0; k < 3; k++)
        assert_int_equal(outbox_append_many(ob, users, 500, "case.new",
                                            "c1", body, &e), 0);
    json_decref(body);
    outbox_clear_events(ob);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox_events"),
                     3);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM outbox_all"),
                     1500);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM"
                                    " pragma_table_info('outbox')"), 3);
    assert_int_equal(outbox_last_seq(ob, 500), 3);
}

static void test_rollback_leaves_nothing(void **state)
{
    (void)state;
    append(8, "case.new", "c", 0);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(append(8, "case.new", "c", 1), 2);
    assert_int_equal(append(8, "case.new", "c", 2), 3);
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    outbox_clear_events(ob);
    assert_int_equal(outbox_last_seq(ob, 8), 1);
    assert_int_equal(append(8, "case.new", "c", 3), 2);
    json_t *ev = fetch(8, 0, 100);
    assert_int_equal(json_array_size(ev), 2);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(ev, 1), "body"),
                         "n")), 3);
    json_decref(ev);
}

static void test_survives_reopen(void **state)
{
    (void)state;
    struct err e = {0};
    char ids[3][33];
    for (int i = 0; i < 3; i++)
        append(11, "case.new", "c", i);
    assert_int_equal(outbox_ack(ob, 11, 1, NULL, &e), 0);
    json_t *ev = fetch(11, 0, 100);
    for (int i = 0; i < 3; i++)
        strlcpy_h(ids[i], json_string_value(json_object_get(
                              json_array_get(ev, i), "event_id")), 33);
    json_decref(ev);

    close_db();
    open_db();
    assert_int_equal(outbox_last_seq(ob, 11), 3);
    assert_int_equal(outbox_acked_seq(ob, 11), 1);
    ev = fetch(11, 1, 100);
    assert_int_equal(json_array_size(ev), 2);
    /* Same events, same ids: a client drops what it already had. */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(ev, 0), "event_id")), ids[1]);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(ev, 1), "event_id")), ids[2]);
    json_decref(ev);
    assert_int_equal(append(11, "case.new", "c", 4), 4);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct err e = {0};
    assert_int_equal(outbox_append(ob, 0, "k", NULL, NULL, NULL, &e),
                     ERR_INVALID);
    assert_int_equal(outbox_append(ob, 1, "", NULL, NULL, NULL, &e),
                     ERR_INVALID);
    /* A NULL body is stored as null. */
    assert_int_equal(outbox_append(ob, 1, "k", NULL, NULL, NULL, &e), 0);
    json_t *ev = fetch(1, 0, 0);
    assert_int_equal(json_array_size(ev), 1);
    assert_true(json_is_null(json_object_get(json_array_get(ev, 0),
                                             "body")));
    json_decref(ev);
}

static void test_append_many(void **state)
{
    (void)state;
    struct err e = {0};
    int64_t users[20];
    for (int i = 0; i < 20; i++)
        users[i] = 1000 + i;
    append(1005, "case.new", "c0", 0);      /* one user is ahead */
    json_t *body = json_pack("{s:s}", "case", "c1");
    assert_int_equal(outbox_append_many(ob, users, 20, "case.claimed", "c1",
                                        body, &e), 0);
    char seen[20][33];
    for (int i = 0; i < 20; i++) {
        json_t *ev = fetch(users[i], 0, 100);
        assert_int_equal(json_array_size(ev), i == 5 ? 2 : 1);
        json_t *x = json_array_get(ev, json_array_size(ev) - 1);
        assert_int_equal(json_integer_value(json_object_get(x, "seq")),
                         i == 5 ? 2 : 1);
        assert_string_equal(json_string_value(json_object_get(x, "kind")),
                            "case.claimed");
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(x, "body"), "case")), "c1");
        /* One event: one id, whoever gets it. */
        const char *id = json_string_value(json_object_get(x, "event_id"));
        assert_int_equal(strlen(id), 32);
        assert_int_equal(strspn(id, "0123456789abcdef"), 32);
        if (i)
            assert_string_equal(id, seen[0]);
        strlcpy_h(seen[i], id, sizeof seen[i]);
        json_decref(ev);
    }
    struct outbox_event *live = NULL;
    outbox_take_events(ob, &live);
    assert_non_null(live->next);
    assert_int_equal(live->next->n, 20);
    outbox_event_free(live->next);
    outbox_event_free(live);
    /* All or nothing: a bad id anywhere refuses the lot. */
    users[7] = 0;
    assert_int_equal(outbox_append_many(ob, users, 20, "k", NULL, body, &e),
                     ERR_INVALID);
    assert_int_equal(outbox_last_seq(ob, 1000), 1);
    assert_int_equal(outbox_append_many(ob, users, 0, "k", NULL, body, &e),
                     0);
    json_decref(body);
}

/* Migration 7 moves an existing outbox (one full row per recipient) to
 * the event table plus (user, seq, event) rows: same seqs, event ids,
 * bodies, acks; the next append goes on from the cursor. */
static void test_migrates_old_outbox(void **state)
{
    (void)state;
    struct err e = {0};
    char old[600];
    sqlite3 *odb;
    snprintf(old, sizeof old, "%s/old.db", dir);
    assert_int_equal(sqlite3_open(old, &odb), SQLITE_OK);
    if (schema_migrate_to(odb, 6, &e))
        fail_msg("schema 6: %s", e.msg);
    assert_int_equal(sqlite3_exec(odb,
        "INSERT INTO outbox VALUES (7, 1, 'aaaa', 'case.new', 'c1', 10,"
        " '{\"n\":1}');"
        "INSERT INTO outbox VALUES (7, 2, 'bbbb', 'message.new', 'c1', 20,"
        " '{\"n\":2}');"
        "INSERT INTO outbox VALUES (8, 1, 'cccc', 'case.new', 'c1', 10,"
        " '{\"n\":1}');"
        "INSERT INTO outbox_cursor VALUES (7, 2, 1), (8, 1, 0);",
        NULL, NULL, NULL), SQLITE_OK);
    if (schema_migrate(odb, &e))
        fail_msg("migrate: %s", e.msg);
    struct outbox *o = outbox_open(odb, &e);
    assert_non_null(o);
    json_t *ev = NULL;
    assert_int_equal(outbox_fetch(o, 7, 0, 10, &ev, &e), 0);
    assert_int_equal(json_array_size(ev), 2);
    json_t *x = json_array_get(ev, 1);
    assert_int_equal(json_integer_value(json_object_get(x, "seq")), 2);
    assert_string_equal(json_string_value(json_object_get(x, "event_id")),
                        "bbbb");
    assert_string_equal(json_string_value(json_object_get(x, "kind")),
                        "message.new");
    assert_int_equal(json_integer_value(json_object_get(x, "at")), 20);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(x, "body"), "n")), 2);
    json_decref(ev);
    assert_int_equal(outbox_acked_seq(o, 7), 1);
    json_t *b = json_pack("{}");
    int64_t seq = 0;
    assert_int_equal(outbox_append(o, 8, "k", NULL, b, &seq, &e), 0);
    assert_int_equal(seq, 2);
    json_decref(b);
    outbox_close(o);
    assert_int_equal(sqlite3_close(odb), SQLITE_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seq_per_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_old_acked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_live_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_old_outbox, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_stored_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rollback_leaves_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_moves_rows, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
