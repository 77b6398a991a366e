/*
 * test_ws — the pieces of the hashi.v1 push path that can be checked
 * without sockets: outbox_fetch_frames() (the frames ws.c sends) gives,
 * byte for byte, the compact JSON of outbox_fetch()'s events, each a valid
 * hashi.v1 event for the codec; rows whose strings would need escaping
 * take the careful path and still come out as valid JSON; the limit and
 * the callback's stop are honoured.  Sessions, the
 * Origin check and replay run against the real server in
 * tests/integration/ws_*.sh.
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

#include "../../proto/msg.h"
#include "../../server/outbox.h"
#include "../../server/schema.h"
#include "../../server/server.h"
#include "testutil.h"

static char dir[256];
static sqlite3 *db;
static struct outbox *ob;

static int setup(void **state)
{
    (void)state;
    char path[512];
    strcpy(dir, "/tmp/hashi-test-ws-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/hashi.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    struct err e = {0};
    if (schema_migrate(db, &e))
        return -1;
    ob = outbox_open(db, &e);
    return ob ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    outbox_close(ob);
    sqlite3_close(db);
    return tu_rm_rf(dir);
}

static void append(int64_t user, const char *kind, const char *case_id,
                   json_t *body)
{
    struct err e = {0};
    if (outbox_append(ob, user, kind, case_id, body, NULL, &e))
        fail_msg("append: %s", e.msg);
    json_decref(body);
}

struct collected {
    char *frames[16];
    int64_t seqs[16];
    int n;
    int stop_after;             /* 0: never stop */
};

static int collect(void *arg, int64_t seq, const char *frame, size_t len)
{
    struct collected *c = arg;
    assert_true(c->n < 16);
    assert_int_equal(strlen(frame), len);
    c->frames[c->n] = strndup(frame, len);
    c->seqs[c->n++] = seq;
    return c->stop_after && c->n >= c->stop_after;
}

static void collected_free(struct collected *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->frames[i]);
    c->n = 0;
}

/* The frames equal json_dumps(compact) of outbox_fetch's objects. */
static void check_same(int64_t user, int64_t after, int limit, int expect)
{
    struct err e = {0};
    json_t *arr = NULL;
    struct collected c = {0};
    assert_int_equal(outbox_fetch(ob, user, after, limit, &arr, &e), 0);
    assert_int_equal(outbox_fetch_frames(ob, user, after, limit, collect,
                                         &c, &e), expect);
    assert_int_equal(json_array_size(arr), (size_t)expect);
    for (int i = 0; i < c.n; i++) {
        json_t *ev = json_array_get(arr, (size_t)i);
        char *want = json_dumps(ev, JSON_COMPACT);
        assert_string_equal(c.frames[i], want);
        assert_int_equal(c.seqs[i],
                         json_integer_value(json_object_get(ev, "seq")));
        free(want);
    }
    json_decref(arr);
    collected_free(&c);
}

static void test_frames_match_fetch(void **state)
{
    (void)state;
    append(7, "case.new", "c-1",
           json_pack("{s:{s:s, s:s, s:i}}", "case", "case_id", "c-1",
                     "question", "Bleed?\n\"quoted\" \\ back", "n", 1));
    append(7, "message.new", "c-1",
           json_pack("{s:{s:s, s:s}}", "message", "message_id", "m-1",
                     "text", "caf\xc3\xa9 \xe6\xa9\x8b"));
    append(8, "case.new", "c-2", json_pack("{s:{}}", "case"));
    append(7, "case.claimed", "c-1", json_pack("{s:{}}", "case"));

    check_same(7, 0, 100, 3);
    check_same(7, 1, 100, 2);
    check_same(7, 0, 2, 2);
    check_same(7, 3, 100, 0);
    check_same(8, 0, 100, 1);
    check_same(9, 0, 100, 0);
}

static void test_frames_are_events(void **state)
{
    (void)state;
    append(3, "case.escalated", "c-9",
           json_pack("{s:{s:s}, s:{s:i, s:s, s:[s]}}", "case", "case_id",
                     "c-9", "escalation", "level", 1, "scope", "oncall",
                     "to", "dr.b"));
    struct collected c = {0};
    struct err e = {0};
    assert_int_equal(outbox_fetch_frames(ob, 3, 0, 10, collect, &c, &e), 1);
    struct msg m;
    struct msg_error me;
    int rc = msg_parse_dir(c.frames[0], strlen(c.frames[0]),
                           MSG_FROM_SERVER, &m, &me);
    if (rc)
        fail_msg("frame rejected by the codec: %s: %s", me.message,
                 c.frames[0]);
    assert_int_equal(m.type, MSG_EVENT);
    assert_int_equal(m.event.seq, 1);
    assert_int_equal(m.event.kind, MSG_EV_CASE_ESCALATED);
    assert_string_equal(m.event.case_id, "c-9");
    assert_int_equal(strlen(m.event.event_id), 32);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(m.event.body, "escalation"),
                         "level")), 1);
    msg_free(&m);
    collected_free(&c);
}

static void test_frames_stop_and_limit(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++)
        append(4, "message.new", "c-4", json_pack("{s:i}", "i", i));
    struct collected c = {0};
    struct err e = {0};
    c.stop_after = 2;
    assert_int_equal(outbox_fetch_frames(ob, 4, 0, 10, collect, &c, &e), 2);
    assert_int_equal(c.seqs[1], 2);
    collected_free(&c);
    c.stop_after = 0;
    assert_int_equal(outbox_fetch_frames(ob, 4, 2, 2, collect, &c, &e), 2);
    assert_int_equal(c.seqs[0], 3);
    assert_int_equal(c.seqs[1], 4);
    collected_free(&c);
    /* The statement was reset: a plain fetch works right after a stop. */
    json_t *arr = NULL;
    assert_int_equal(outbox_fetch(ob, 4, 0, 10, &arr, &e), 0);
    assert_int_equal(json_array_size(arr), 5);
    json_decref(arr);
}

/* A row outbox.c would never write (edited by hand): strings that need
 * escaping go the careful way, and the frame is still valid JSON. */
static void test_frames_escape_odd_rows(void **state)
{
    (void)state;
    append(5, "case.new", "c-5", json_pack("{s:i}", "a", 1));
    append(5, "case.new", "c-6", json_pack("{s:i}", "a", 2));
    append(5, "case.new", "c-7", json_pack("{s:i}", "a", 3));
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE outbox_events SET case_id ="
                                  " 'odd\"id\\x' WHERE id = (SELECT event"
                                  " FROM outbox_all WHERE user_id = 5"
                                  " AND seq = 2)",
                                  NULL, NULL, NULL), SQLITE_OK);
    struct collected c = {0};
    struct err e = {0};
    assert_int_equal(outbox_fetch_frames(ob, 5, 0, 10, collect, &c, &e), 3);
    json_error_t je;
    json_t *j = json_loads(c.frames[1], 0, &je);
    if (!j)
        fail_msg("not JSON: %s: %s", je.text, c.frames[1]);
    assert_string_equal(json_string_value(json_object_get(j, "case_id")),
                        "odd\"id\\x");
    json_decref(j);
    assert_int_equal(c.seqs[2], 3);
    collected_free(&c);
    check_same(5, 0, 10, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_frames_match_fetch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_frames_are_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_frames_stop_and_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_frames_escape_odd_rows, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
