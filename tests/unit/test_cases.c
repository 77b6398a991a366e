/*
 * test_cases — the consult workflow (server/cases.c) over a real store:
 * idempotent create, the claim race, who hears of a new case, offline
 * delivery in order and across a restart, escalation, visibility (404 for
 * what one may not see, also for studies through store.c's scope), the
 * answer/close/reopen rules, the chat thread and its receipts.
 *
 * Users cost an scrypt each (~0.4 s), so they are made once in a template
 * data directory; every test starts from a fresh copy of it.
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

#include "../../proto/log.h"
#include "../../proto/msg.h"
#include "../../server/access.h"
#include "../../server/auth.h"
#include "../../server/cases.h"
#include "../../server/outbox.h"
#include "../../server/server.h"
#include "../../server/store.h"
#include "testutil.h"

/* Live push: cases.c calls srv.events_committed after each COMMIT (NULL
 * here but in test_events_committed_hook): the events wait in the
 * outboxes, which is what is checked. */

static char tmpl[256];      /* data dir with clinics and users */
static char dir[256];       /* this test's copy */
static struct server srv;

enum { REQ_A, REQ_B, N1, N2, N3, CARDIO, ADMIN, NUSERS };
static const char *const logins[NUSERS] = {
    "req-a", "req-b", "neuro1", "neuro2", "neuro3", "cardio1", "admin1",
};
static struct principal who[NUSERS];

static void sh(const char *fmt, const char *a, const char *b)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    assert_int_equal(system(cmd), 0);
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_WARN);
    strcpy(tmpl, "/tmp/hashi-test-cases-tmpl-XXXXXX");
    if (!mkdtemp(tmpl))
        return -1;
    struct err e = {0};
    struct store *s = store_open(tmpl, &e);
    if (!s) {
        fprintf(stderr, "store_open: %s\n", e.msg);
        return -1;
    }
    int64_t id;
    if (auth_clinic_add(s, "Clinic A", "rural", NULL, &id, &e) ||
        auth_clinic_add(s, "Clinic B", "rural", NULL, &id, &e) ||
        auth_clinic_add(s, "City", "city", NULL, &id, &e) ||
        auth_user_add(s, "req-a", "Clinic A", "requester", NULL, "pw", &id,
                      &e) ||
        auth_user_add(s, "req-b", "Clinic B", "requester", NULL, "pw", &id,
                      &e) ||
        auth_user_add(s, "neuro1", "City", "specialist", "neurology", "pw",
                      &id, &e) ||
        auth_user_add(s, "neuro2", "City", "specialist", "neurology", "pw",
                      &id, &e) ||
        auth_user_add(s, "neuro3", "City", "specialist",
                      "neurology,radiology", "pw", &id, &e) ||
        auth_user_add(s, "cardio1", "City", "specialist", "cardiology", "pw",
                      &id, &e) ||
        auth_user_add(s, "admin1", "City", "admin", NULL, "pw", &id, &e)) {
        fprintf(stderr, "setup: %s\n", e.msg);
        store_close(s);
        return -1;
    }
    store_close(s);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    assert_int_equal(tu_rm_rf(tmpl), 0);
    return 0;
}

/* The caller as auth.c would make it, read back from the users table. */
static void load_principal(struct principal *p, const char *login)
{
    sqlite3_stmt *st;
    memset(p, 0, sizeof *p);
    assert_int_equal(
        sqlite3_prepare_v2(
            store_db(srv.store),
            "SELECT u.id, u.role, u.clinic_id, c.name,"
            " COALESCE((SELECT group_concat(specialty) FROM"
            "  user_specialties WHERE user_id = u.id), '')"
            " FROM users u JOIN clinics c ON c.id = u.clinic_id"
            " WHERE u.login = ?1", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    p->user_id = sqlite3_column_int64(st, 0);
    strlcpy_h(p->login, login, sizeof p->login);
    strlcpy_h(p->role, (const char *)sqlite3_column_text(st, 1),
              sizeof p->role);
    p->clinic_id = sqlite3_column_int64(st, 2);
    strlcpy_h(p->clinic, (const char *)sqlite3_column_text(st, 3),
              sizeof p->clinic);
    strlcpy_h(p->specialties, (const char *)sqlite3_column_text(st, 4),
              sizeof p->specialties);
    sqlite3_finalize(st);
}

static void open_server(void)
{
    struct err e = {0};
    srv.store = store_open(dir, &e);
    assert_non_null(srv.store);
    srv.audit = audit_open(dir, &e);
    assert_non_null(srv.audit);
    if (cases_init(&srv, &e))
        fail_msg("cases_init: %s", e.msg);
    assert_non_null(srv.outbox);
    for (int i = 0; i < NUSERS; i++)
        load_principal(&who[i], logins[i]);
}

static void close_server(void)
{
    cases_free(&srv);
    assert_null(srv.outbox);
    audit_close(srv.audit);
    srv.audit = NULL;
    store_close(srv.store);
    srv.store = NULL;
}

static int setup(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof srv);
    strcpy(dir, "/tmp/hashi-test-cases-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    sh("cp -a '%s'/. '%s'/", tmpl, dir);
    strlcpy_h(srv.cfg.data_dir, dir, sizeof srv.cfg.data_dir);
    open_server();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close_server();
    assert_int_equal(tu_rm_rf(dir), 0);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

/* cases.c takes typed requests, as the codec makes them of a hashi.v1
 * frame or a REST body: the t_* helpers take the JSON object a client
 * sends (borrowed), run it through msg_from_json and call cases.c.  A
 * request the codec refuses is ERR_INVALID with its message. */
static int typed(json_t *obj, enum msg_type t, struct msg *m, struct err *e)
{
    struct msg_error me;
    if (!msg_from_json(obj, t, m, &me))
        return 0;
    msg_free(m);
    return err_set(e, ERR_INVALID, "%s", me.message);
}

static int t_create(struct server *s, const struct principal *p,
                    json_t *req, json_t **out, int *created, struct err *e)
{
    struct msg m;
    *out = NULL;
    int rc = typed(req, MSG_CASE_CREATE, &m, e);
    if (!rc)
        rc = cases_create(s, p, &m.case_create, out, created, e);
    msg_free(&m);
    return rc;
}

static int t_message(struct server *s, const struct principal *p,
                     json_t *req, json_t **out, struct err *e)
{
    struct msg m;
    *out = NULL;
    int rc = typed(req, MSG_MESSAGE_SEND, &m, e);
    if (!rc)
        rc = cases_message(s, p, &m.message_send, out, e);
    msg_free(&m);
    return rc;
}

static int t_answer(struct server *s, const struct principal *p,
                    const char *case_id, json_t *ans, json_t **out,
                    struct err *e)
{
    struct msg m;
    json_t *req = json_deep_copy(ans);
    *out = NULL;
    json_object_set_new(req, "case_id", json_string(case_id));
    int rc = typed(req, MSG_CASE_ANSWER, &m, e);
    json_decref(req);
    if (!rc)
        rc = cases_answer(s, p, &m.case_answer, out, e);
    msg_free(&m);
    return rc;
}

/* case.list of status (NULL: any) and limit (0: the default) after the
 * cursor before (NULL: the first page): *out = the page object. */
static int t_page(struct server *s, const struct principal *p,
                  const char *status, int limit, const char *before,
                  json_t **out, struct err *e)
{
    struct msg m;
    json_t *req = json_object();
    *out = NULL;
    if (status)
        json_object_set_new(req, "status", json_string(status));
    if (limit)
        json_object_set_new(req, "limit", json_integer(limit));
    if (before)
        json_object_set_new(req, "before", json_string(before));
    int rc = typed(req, MSG_CASE_LIST, &m, e);
    json_decref(req);
    if (!rc)
        rc = cases_list_page(s, p, &m.case_list, out, e);
    msg_free(&m);
    return rc;
}

/* The first page's cases, as a new array. */
static int t_list(struct server *s, const struct principal *p,
                  const char *status, int limit, json_t **out, struct err *e)
{
    json_t *page = NULL;
    int rc = t_page(s, p, status, limit, NULL, &page, e);
    *out = rc ? NULL : json_incref(json_object_get(page, "cases"));
    json_decref(page);
    return rc;
}

static json_t *create_req(const char *case_id, const char *priority,
                          const char *specialty, const char *specialist)
{
    json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:{s:i, s:s}, s:[s]}",
                          "case_id", case_id, "question", "Bleed?",
                          "history", "Fell, GCS 13", "priority", priority,
                          "patient", "age", 71, "sex", "F",
                          "study_uids", "1.2.826.0.1.3680043.8.498.1");
    if (specialty)
        json_object_set_new(r, "specialty", json_string(specialty));
    if (specialist)
        json_object_set_new(r, "specialist", json_string(specialist));
    return r;
}

static void create_case(int as, const char *case_id, const char *priority,
                        const char *specialty, const char *specialist)
{
    struct err e = {0};
    json_t *req = create_req(case_id, priority, specialty, specialist);
    json_t *out = NULL;
    int created = -1;
    if (t_create(&srv, &who[as], req, &out, &created, &e))
        fail_msg("create %s: %s", case_id, e.msg);
    assert_int_equal(created, 1);
    assert_string_equal(json_string_value(json_object_get(out, "case_id")),
                        case_id);
    json_decref(out);
    json_decref(req);
}

static void send_msg(int as, const char *case_id, const char *mid,
                     const char *text)
{
    struct err e = {0};
    json_t *req = json_pack("{s:s, s:s, s:s}", "case_id", case_id,
                            "message_id", mid, "text", text);
    json_t *out = NULL;
    if (t_message(&srv, &who[as], req, &out, &e))
        fail_msg("message %s: %s", mid, e.msg);
    assert_string_equal(json_string_value(json_object_get(out, "text")),
                        text);
    json_decref(out);
    json_decref(req);
}

static json_t *events_of_id(int64_t user_id)
{
    json_t *ev = NULL;
    struct err e = {0};
    assert_int_equal(outbox_fetch(srv.outbox, user_id, 0, 1000, &ev, &e), 0);
    return ev;
}

static json_t *events_of(int u)
{
    return events_of_id(who[u].user_id);
}

/* The kinds of a user's events for one case, space-separated. */
static void kinds_of_id(int64_t user_id, const char *case_id, char *out,
                        size_t n)
{
    json_t *ev = events_of_id(user_id);
    size_t i;
    json_t *x;
    out[0] = '\0';
    json_array_foreach(ev, i, x) {
        const char *cid = json_string_value(json_object_get(x, "case_id"));
        if (case_id && (!cid || strcmp(cid, case_id)))
            continue;
        if (out[0])
            strncat(out, " ", n - strlen(out) - 1);
        strncat(out, json_string_value(json_object_get(x, "kind")),
                n - strlen(out) - 1);
    }
    json_decref(ev);
}

static void kinds_of(int u, const char *case_id, char *out, size_t n)
{
    kinds_of_id(who[u].user_id, case_id, out, n);
}

/* Fails the test unless u's events (of case_id, or all if NULL) are
 * exactly the kinds in want, space-separated, in order. */
static void expect_kinds(int u, const char *case_id, const char *want)
{
    char k[256];
    kinds_of(u, case_id, k, sizeof k);
    if (strcmp(k, want))
        fail_msg("events of %s for %s: \"%s\", expected \"%s\"",
                 logins[u], case_id ? case_id : "any case", k, want);
}

static const char *status_of(const char *case_id)
{
    static char buf[32];
    json_t *c = NULL;
    struct err e = {0};
    assert_int_equal(cases_get(&srv, &who[ADMIN], case_id, &c, &e), 0);
    strlcpy_h(buf, json_string_value(json_object_get(c, "status")),
              sizeof buf);
    json_decref(c);
    return buf;
}

static int64_t count_rows(const char *sql)
{
    return tu_sql_int(store_db(srv.store), sql);
}

static void exec_sql(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(store_db(srv.store), sql, NULL, NULL, &msg))
        fail_msg("%s: %s", sql, msg);
}

static void oncall(const char *specialty, const char *a, const char *b)
{
    const char *l[2] = { a, b };
    struct err e = {0};
    if (cases_oncall_set(&srv, specialty, l, b ? 2 : (a ? 1 : 0), &e))
        fail_msg("oncall: %s", e.msg);
}

/* ---- tests ------------------------------------------------------------ */

static void test_create_twice_is_one_case(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *req = create_req("case-1", "stat", "neurology", NULL);
    json_t *out = NULL;
    int created = -1;
    assert_int_equal(t_create(&srv, &who[REQ_A], req, &out, &created,
                                  &e), 0);
    assert_int_equal(created, 1);
    json_t *c = json_object_get(out, "patient");
    assert_int_equal(json_integer_value(json_object_get(c, "age")), 71);
    assert_string_equal(json_string_value(json_object_get(c, "sex")), "F");
    assert_string_equal(json_string_value(json_object_get(out, "status")),
                        "new");
    assert_string_equal(json_string_value(json_object_get(out, "clinic")),
                        "Clinic A");
    assert_string_equal(json_string_value(json_object_get(out, "requester")),
                        "req-a");
    assert_true(json_is_null(json_object_get(out, "claimed_by")));
    assert_true(json_is_null(json_object_get(out, "answer")));
    assert_int_equal(json_array_size(json_object_get(out, "study_uids")), 1);
    int64_t due = json_integer_value(json_object_get(out, "due_at"));
    int64_t made = json_integer_value(json_object_get(out, "created_at"));
    assert_int_equal(due - made, CASES_DUE_STAT * 1000LL);
    json_decref(out);

    /* The retry after a cut carries a changed question: still the same
     * case, unchanged, and no second case.new. */
    json_object_set_new(req, "question", json_string("Changed?"));
    assert_int_equal(t_create(&srv, &who[REQ_A], req, &out, &created,
                                  &e), 0);
    assert_int_equal(created, 0);
    assert_string_equal(json_string_value(json_object_get(out, "question")),
                        "Bleed?");
    json_decref(out);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cases"), 1);
    expect_kinds(N1, "case-1", "case.new");

    /* The same id from another clinic is someone else's case. */
    assert_int_equal(t_create(&srv, &who[REQ_B], req, &out, &created,
                                  &e), ERR_CONFLICT);
    assert_null(out);
    json_decref(req);
}

static void test_create_rejects_bad_input(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    static const struct {
        const char *key;
        const char *json;
    } bad[] = {
        { "priority", "\"soon\"" },
        { "question", "\"  \"" },
        { "patient", "{\"age\": 151}" },
        { "patient", "{\"age\": -1}" },
        { "patient", "{\"sex\": \"X\"}" },
        { "case_id", "\"has space\"" },
        { "case_id", "\"\"" },
        { "specialty", "\"dermatology\"" },   /* nobody has it */
        { "specialist", "\"req-b\"" },        /* not a specialist */
        { "study_uids", "[\"1.2.x\"]" },
        { "study_uids", "[\"1..2\"]" },     /* an empty component */
        { "study_uids", "[\"1.02\"]" },     /* a leading zero */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *req = create_req("case-bad", "stat", "neurology", NULL);
        json_object_set_new(req, bad[i].key,
                            json_loads(bad[i].json, JSON_DECODE_ANY, NULL));
        int rc = t_create(&srv, &who[REQ_A], req, &out, NULL, &e);
        if (rc != ERR_INVALID)
            fail_msg("%s=%s: got %d", bad[i].key, bad[i].json, rc);
        assert_true(strlen(e.msg) > 0);
        json_decref(req);
    }
    /* Neither a specialty nor a specialist. */
    json_t *req = create_req("case-bad", "stat", NULL, NULL);
    assert_int_equal(t_create(&srv, &who[REQ_A], req, &out, NULL, &e),
                     ERR_INVALID);
    json_decref(req);
    /* Specialists do not send cases. */
    req = create_req("case-bad", "stat", "neurology", NULL);
    assert_int_equal(t_create(&srv, &who[N1], req, &out, NULL, &e),
                     ERR_FORBIDDEN);
    json_decref(req);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cases"), 0);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM outbox_all"), 0);
}

static void test_claim_race(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    create_case(REQ_A, "race", "stat", "neurology", NULL);
    assert_int_equal(cases_claim(&srv, &who[N2], "race", &out, &e), 0);
    assert_string_equal(json_string_value(json_object_get(out, "claimed_by")),
                        "neuro2");
    assert_int_equal(json_integer_value(json_object_get(out, "due_at")), 0);
    json_decref(out);

    assert_int_equal(cases_claim(&srv, &who[N1], "race", &out, &e),
                     ERR_CONFLICT);
    assert_null(out);
    assert_non_null(strstr(e.msg, "already claimed by neuro2"));
    /* The winner claiming again (a retry) is fine and changes nothing. */
    assert_int_equal(cases_claim(&srv, &who[N2], "race", &out, &e), 0);
    json_decref(out);
    /* A requester may see it but not claim; another specialty cannot
     * even see it. */
    assert_int_equal(cases_claim(&srv, &who[REQ_A], "race", &out, &e),
                     ERR_FORBIDDEN);
    assert_int_equal(cases_claim(&srv, &who[CARDIO], "race", &out, &e),
                     ERR_NOTFOUND);
    assert_string_equal(status_of("race"), "claimed");
    assert_int_equal(count_rows("SELECT COUNT(*) FROM outbox_all o"
                                " JOIN outbox_events ev ON ev.id = o.event"
                                " WHERE ev.kind = 'case.claimed'"),
                     /* req-a, neuro1..3 (no on-call list), and neuro2 is
                      * already one of them */
                     4);
}

static void test_recipients_of_new_case(void **state)
{
    (void)state;
    /* No on-call list: the whole specialty, and the requesting clinic. */
    create_case(REQ_A, "c-all", "urgent", "neurology", NULL);
    expect_kinds(N1, "c-all", "case.new");
    expect_kinds(N2, "c-all", "case.new");
    expect_kinds(N3, "c-all", "case.new");
    expect_kinds(REQ_A, "c-all", "case.new");
    expect_kinds(CARDIO, NULL, "");
    expect_kinds(REQ_B, NULL, "");

    /* With an on-call list: only its first. */
    oncall("neurology", "neuro2", "neuro1");
    create_case(REQ_A, "c-oncall", "stat", "neurology", NULL);
    expect_kinds(N2, "c-oncall", "case.new");
    expect_kinds(N1, "c-oncall", "");
    expect_kinds(N3, "c-oncall", "");

    /* A named specialist: only them. */
    create_case(REQ_A, "c-named", "routine", "neurology", "neuro3");
    expect_kinds(N3, "c-named", "case.new");
    expect_kinds(N2, "c-named", "");
    json_t *c = NULL;
    struct err e = {0};
    assert_int_equal(cases_get(&srv, &who[N3], "c-named", &c, &e), 0);
    assert_string_equal(json_string_value(json_object_get(c, "specialist")),
                        "neuro3");
    json_decref(c);

    /* The body carries the case summary. */
    json_t *ev = events_of(N3);
    assert_int_equal(json_array_size(ev), 2);
    json_t *x = json_array_get(ev, 1);
    assert_string_equal(json_string_value(json_object_get(x, "type")),
                        "event");
    assert_int_equal(json_integer_value(json_object_get(x, "seq")), 2);
    json_t *body = json_object_get(json_object_get(x, "body"), "case");
    assert_string_equal(json_string_value(json_object_get(body, "case_id")),
                        "c-named");
    assert_string_equal(json_string_value(json_object_get(body, "priority")),
                        "routine");
    json_decref(ev);
}

static void test_offline_delivery_in_order(void **state)
{
    (void)state;
    struct err e = {0};
    char id[32], text[32];
    oncall("neurology", "neuro1", NULL);
    for (int c = 0; c < 3; c++) {
        snprintf(id, sizeof id, "off-%d", c);
        create_case(REQ_A, id, "stat", "neurology", NULL);
    }
    for (int m = 0; m < 10; m++) {
        snprintf(id, sizeof id, "off-%d", m % 3);
        char mid[32];
        snprintf(mid, sizeof mid, "m-%d", m);
        snprintf(text, sizeof text, "note %d", m);
        send_msg(REQ_A, id, mid, text);
        if (m == 4) {           /* a server restart in between */
            close_server();
            open_server();
        }
    }
    json_t *ev = events_of(N1);
    assert_int_equal(json_array_size(ev), 13);
    size_t i;
    json_t *x;
    json_array_foreach(ev, i, x) {
        assert_int_equal(json_integer_value(json_object_get(x, "seq")),
                         (json_int_t)i + 1);
        const char *kind = json_string_value(json_object_get(x, "kind"));
        assert_string_equal(kind, i < 3 ? "case.new" : "message.new");
        const char *eid = json_string_value(json_object_get(x, "event_id"));
        assert_int_equal(strlen(eid), 32);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(
                eid, json_string_value(json_object_get(
                         json_array_get(ev, j), "event_id")));
        if (i >= 3) {
            json_t *m = json_object_get(json_object_get(x, "body"),
                                        "message");
            snprintf(text, sizeof text, "note %d", (int)i - 3);
            assert_string_equal(json_string_value(json_object_get(m, "text")),
                                text);
            assert_string_equal(
                json_string_value(json_object_get(m, "author")), "req-a");
        }
    }
    json_decref(ev);

    assert_int_equal(cases_ack(&srv, who[N1].user_id, 13, &e), 0);
    json_t *rest = NULL;
    assert_int_equal(outbox_fetch(srv.outbox, who[N1].user_id, 13, 100,
                                  &rest, &e), 0);
    assert_int_equal(json_array_size(rest), 0);
    json_decref(rest);

    /* Acks and seqs survive a restart too. */
    close_server();
    open_server();
    assert_int_equal(outbox_acked_seq(srv.outbox, who[N1].user_id), 13);
    assert_int_equal(outbox_last_seq(srv.outbox, who[N1].user_id), 13);
    send_msg(REQ_A, "off-0", "m-after", "after restart");
    assert_int_equal(outbox_fetch(srv.outbox, who[N1].user_id, 13, 100,
                                  &rest, &e), 0);
    assert_int_equal(json_array_size(rest), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(rest, 0), "seq")), 14);
    json_decref(rest);
    /* Delivered receipts follow the acks. */
    json_t *c = NULL;
    assert_int_equal(cases_get(&srv, &who[REQ_A], "off-0", &c, &e), 0);
    json_t *m0 = json_array_get(json_object_get(c, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "message_id")),
                        "m-0");
    json_t *dl = json_object_get(m0, "delivered_to");
    assert_int_equal(json_array_size(dl), 1);
    assert_string_equal(json_string_value(json_array_get(dl, 0)), "neuro1");
    json_decref(c);
}

static json_t *last_event(int u, const char *kind)
{
    json_t *ev = events_of(u), *found = NULL;
    size_t i;
    json_t *x;
    json_array_foreach(ev, i, x)
        if (!strcmp(json_string_value(json_object_get(x, "kind")), kind))
            found = x;
    if (found)
        json_incref(found);
    json_decref(ev);
    return found;
}

static void test_escalation(void **state)
{
    (void)state;
    struct err e = {0};
    int64_t next = -1;
    oncall("neurology", "neuro1", "neuro2");
    srv.cfg.due_stat = 2;
    create_case(REQ_A, "esc", "stat", "neurology", NULL);
    int64_t t0 = now_ms();

    /* Nothing is due yet. */
    assert_int_equal(cases_escalate_due(&srv, t0, &next, &e), 0);
    assert_true(next > t0 && next <= t0 + 2000);

    /* Past the deadline, after a restart: the second on-call hears. */
    close_server();
    open_server();
    assert_int_equal(cases_escalate_due(&srv, t0 + 2500, &next, &e), 1);
    assert_true(next >= t0 + 4500);
    expect_kinds(N2, "esc", "case.escalated");
    expect_kinds(REQ_A, "esc", "case.new case.escalated");
    expect_kinds(N1, "esc", "case.new case.escalated");
    expect_kinds(N3, "esc", "");
    json_t *x = last_event(REQ_A, "case.escalated");
    assert_non_null(x);
    json_t *esc = json_object_get(json_object_get(x, "body"), "escalation");
    assert_int_equal(json_integer_value(json_object_get(esc, "level")), 1);
    assert_string_equal(json_string_value(json_object_get(esc, "scope")),
                        "oncall");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(esc, "to"), 0)), "neuro2");
    json_decref(x);
    /* neuro2 may now claim... but not yet: it escalates again. */

    /* The list is used up: the whole specialty (neuro3). */
    assert_int_equal(cases_escalate_due(&srv, next, &next, &e), 1);
    assert_int_equal(next, 0);
    expect_kinds(N3, "esc", "case.escalated");
    x = last_event(REQ_A, "case.escalated");
    esc = json_object_get(json_object_get(x, "body"), "escalation");
    assert_int_equal(json_integer_value(json_object_get(esc, "level")), 2);
    assert_string_equal(json_string_value(json_object_get(esc, "scope")),
                        "specialty");
    assert_int_equal(json_array_size(json_object_get(esc, "to")), 1);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(esc, "to"), 0)), "neuro3");
    json_t *c = json_object_get(json_object_get(x, "body"), "case");
    assert_int_equal(json_integer_value(json_object_get(c, "due_at")), 0);
    assert_int_equal(json_integer_value(json_object_get(c,
                                                        "escalation_level")),
                     2);
    json_decref(x);

    /* No more steps; the cardiologist never heard. */
    assert_int_equal(cases_escalate_due(&srv, t0 + 3600000, &next, &e), 0);
    expect_kinds(CARDIO, NULL, "");

    /* A claimed case does not escalate. */
    create_case(REQ_A, "esc2", "stat", "neurology", NULL);
    json_t *out = NULL;
    assert_int_equal(cases_claim(&srv, &who[N1], "esc2", &out, &e), 0);
    json_decref(out);
    assert_int_equal(cases_escalate_due(&srv, now_ms() + 10000, &next, &e),
                     0);
    assert_int_equal(next, 0);
}

static void test_visibility(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    create_case(REQ_A, "vis", "urgent", "neurology", NULL);
    send_msg(REQ_A, "vis", "vis-m1", "hello");

    /* Clinic B's requester and a cardiologist: as if it did not exist. */
    assert_int_equal(cases_get(&srv, &who[REQ_B], "vis", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(cases_get(&srv, &who[CARDIO], "vis", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(cases_get(&srv, &who[REQ_B], "nonexistent", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(cases_claim(&srv, &who[REQ_B], "vis", &out, &e),
                     ERR_NOTFOUND);
    json_t *req = json_pack("{s:s, s:s, s:s}", "case_id", "vis",
                            "message_id", "vis-m2", "text", "sneaky");
    assert_int_equal(t_message(&srv, &who[REQ_B], req, &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(t_message(&srv, &who[CARDIO], req, &out, &e),
                     ERR_NOTFOUND);
    json_decref(req);
    assert_int_equal(cases_message_read(&srv, &who[REQ_B], "vis", "vis-m1",
                                        &e), ERR_NOTFOUND);
    assert_int_equal(cases_close(&srv, &who[REQ_B], "vis", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM messages"), 1);

    /* Lists. */
    assert_int_equal(t_list(&srv, &who[REQ_B], NULL, 0, &out, &e), 0);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    assert_int_equal(t_list(&srv, &who[CARDIO], NULL, 0, &out, &e), 0);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    assert_int_equal(t_list(&srv, &who[N3], "new", 0, &out, &e), 0);
    assert_int_equal(json_array_size(out), 1);
    json_decref(out);
    assert_int_equal(t_list(&srv, &who[REQ_A], "claimed", 0, &out, &e),
                     0);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    assert_int_equal(t_list(&srv, &who[REQ_A], "bogus", 0, &out, &e),
                     ERR_INVALID);

    /* Studies, through store.c's scope: the case's study (clinic A) is
     * visible to the neurologists, not to the cardiologist or clinic B; a
     * study of clinic B named in clinic A's case stays hidden. */
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO patients (id, clinic_id, patient_id, name,"
             " birth_date, sex) VALUES (1, %lld, 'P1', 'X^Y', '', 'F'),"
             " (2, %lld, 'P2', 'Z^W', '', 'M');"
             "INSERT INTO studies (id, study_uid, patient_ref, date, time,"
             " description, accession, clinic_id, created, updated) VALUES"
             " (1, '1.2.826.0.1.3680043.8.498.1', 1, '20260101', '', 'CT',"
             "  '', %lld, 0, 0),"
             " (2, '1.2.826.0.1.3680043.8.498.2', 2, '20260101', '', 'CT',"
             "  '', %lld, 0, 0);",
             (long long)who[REQ_A].clinic_id, (long long)who[REQ_B].clinic_id,
             (long long)who[REQ_A].clinic_id,
             (long long)who[REQ_B].clinic_id);
    exec_sql(sql);
    json_t *r2 = create_req("vis-b", "urgent", "neurology", NULL);
    json_object_set_new(r2, "study_uids",
                        json_pack("[s]", "1.2.826.0.1.3680043.8.498.2"));
    assert_int_equal(t_create(&srv, &who[REQ_A], r2, &out, NULL, &e), 0);
    json_decref(out);
    json_decref(r2);

    struct {
        int user;
        const char *uids;
    } want[] = {
        { N1, "1.2.826.0.1.3680043.8.498.1" },
        { CARDIO, "" },
        { REQ_A, "1.2.826.0.1.3680043.8.498.1" },
        { REQ_B, "1.2.826.0.1.3680043.8.498.2" },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct store_scope sc;
        access_scope(&who[want[i].user], &sc);
        struct store_query q = {0};
        json_t *res = NULL;
        if (store_qido_studies(srv.store, &sc, &q, &res, &e))
            fail_msg("qido as %s: %s", logins[want[i].user], e.msg);
        char got[256] = "";
        size_t j;
        json_t *s;
        json_array_foreach(res, j, s) {
            json_t *v = json_object_get(json_object_get(s, "0020000D"),
                                        "Value");
            strncat(got, json_string_value(json_array_get(v, 0)),
                    sizeof got - strlen(got) - 1);
        }
        json_decref(res);
        if (strcmp(got, want[i].uids))
            fail_msg("%s sees [%s], want [%s]", logins[want[i].user], got,
                     want[i].uids);
    }
}

static void test_answer_close_reopen(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    json_t *ans = json_pack("{s:s, s:s, s:s}", "impression",
                            "Acute subdural haematoma",
                            "recommendation", "Transfer to neurosurgery",
                            "text", "Left, 8 mm, mild shift.");
    create_case(REQ_A, "ans", "stat", "neurology", NULL);
    /* Not claimed yet. */
    assert_int_equal(t_answer(&srv, &who[N1], "ans", ans, &out, &e),
                     ERR_CONFLICT);
    assert_int_equal(cases_claim(&srv, &who[N1], "ans", &out, &e), 0);
    json_decref(out);
    /* Not the claimer. */
    assert_int_equal(t_answer(&srv, &who[N2], "ans", ans, &out, &e),
                     ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "neuro1"));
    assert_int_equal(t_answer(&srv, &who[REQ_A], "ans", ans, &out, &e),
                     ERR_FORBIDDEN);
    assert_int_equal(t_answer(&srv, &who[CARDIO], "ans", ans, &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(cases_reopen(&srv, &who[REQ_A], "ans", &out, &e),
                     ERR_CONFLICT);

    assert_int_equal(t_answer(&srv, &who[N1], "ans", ans, &out, &e), 0);
    json_t *a = json_object_get(out, "answer");
    assert_string_equal(json_string_value(json_object_get(a, "impression")),
                        "Acute subdural haematoma");
    assert_string_equal(json_string_value(json_object_get(a, "by")),
                        "neuro1");
    assert_string_equal(json_string_value(json_object_get(out, "status")),
                        "answered");
    json_decref(out);
    /* The same answer again is a retry; another is a conflict. */
    assert_int_equal(t_answer(&srv, &who[N1], "ans", ans, &out, &e), 0);
    json_decref(out);
    json_t *ans2 = json_pack("{s:s}", "impression", "Changed my mind");
    assert_int_equal(t_answer(&srv, &who[N1], "ans", ans2, &out, &e),
                     ERR_CONFLICT);

    /* Only the requesting side reopens. */
    assert_int_equal(cases_reopen(&srv, &who[N1], "ans", &out, &e),
                     ERR_FORBIDDEN);
    assert_int_equal(cases_reopen(&srv, &who[REQ_A], "ans", &out, &e), 0);
    assert_string_equal(json_string_value(json_object_get(out, "status")),
                        "reopened");
    assert_string_equal(json_string_value(json_object_get(out, "claimed_by")),
                        "neuro1");
    json_decref(out);
    assert_int_equal(t_answer(&srv, &who[N1], "ans", ans2, &out, &e), 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(out, "answer"), "impression")),
                        "Changed my mind");
    /* The answer it replaced is kept. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(
                            json_object_get(json_object_get(out, "answer"),
                                            "revisions"), 0),
                            "impression")), "Acute subdural haematoma");
    json_decref(out);

    /* Close: not by a bystander; by the requester; idempotent. */
    assert_int_equal(cases_close(&srv, &who[N2], "ans", &out, &e),
                     ERR_FORBIDDEN);
    assert_int_equal(cases_close(&srv, &who[REQ_A], "ans", &out, &e), 0);
    json_decref(out);
    assert_int_equal(cases_close(&srv, &who[REQ_A], "ans", &out, &e), 0);
    json_decref(out);
    assert_string_equal(status_of("ans"), "closed");
    json_t *req = json_pack("{s:s, s:s, s:s}", "case_id", "ans",
                            "message_id", "late", "text", "one more thing");
    assert_int_equal(t_message(&srv, &who[REQ_A], req, &out, &e),
                     ERR_CONFLICT);
    json_decref(req);
    assert_int_equal(cases_reopen(&srv, &who[REQ_A], "ans", &out, &e), 0);
    json_decref(out);
    assert_string_equal(status_of("ans"), "reopened");

    expect_kinds(REQ_A, "ans", "case.new case.claimed case.answered "
                               "case.reopened case.answered case.closed "
                               "case.reopened");
    json_decref(ans);
    json_decref(ans2);
}

static int t_amend(const struct principal *p, const char *case_id,
                   const char *impression, json_t **out, struct err *e)
{
    struct msg m;
    json_t *req = json_pack("{s:s, s:s}", "case_id", case_id,
                            "impression", impression);
    *out = NULL;
    int rc = typed(req, MSG_CASE_AMEND, &m, e);
    json_decref(req);
    if (!rc)
        rc = cases_amend(&srv, p, &m.case_answer, out, e);
    msg_free(&m);
    return rc;
}

/* The case's timeline as "step:by step:by ...", and the times in order. */
static void timeline_of(int as, const char *case_id, char *out, size_t n)
{
    json_t *c = NULL;
    struct err e = {0};
    assert_int_equal(cases_get(&srv, &who[as], case_id, &c, &e), 0);
    json_t *tl = json_object_get(c, "timeline");
    assert_true(json_is_array(tl));
    size_t i;
    json_t *x;
    int64_t last = 0;
    out[0] = '\0';
    json_array_foreach(tl, i, x) {
        int64_t at = json_integer_value(json_object_get(x, "at"));
        assert_true(at >= last && at > 0);
        last = at;
        const char *by = json_string_value(json_object_get(x, "by"));
        char one[96];
        snprintf(one, sizeof one, "%s%s:%s", i ? " " : "",
                 json_string_value(json_object_get(x, "step")),
                 by ? by : "-");
        strncat(out, one, n - strlen(out) - 1);
    }
    json_decref(c);
}

static void test_timeline_and_amend(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    char tl[512];
    oncall("neurology", "neuro1", NULL);
    create_case(REQ_A, "tl", "stat", "neurology", NULL);
    /* Not delivered until neuro1's device acknowledges the case.new. */
    timeline_of(REQ_A, "tl", tl, sizeof tl);
    assert_string_equal(tl, "sent:req-a");
    json_t *ev = events_of(N1);
    int64_t seq = json_integer_value(json_object_get(
        json_array_get(ev, json_array_size(ev) - 1), "seq"));
    json_decref(ev);
    assert_int_equal(cases_ack(&srv, who[N1].user_id, seq, &e), 0);
    assert_int_equal(cases_ack(&srv, who[N1].user_id, seq, &e), 0);
    /* The requester's views are no "opened"; a specialist's first is. */
    timeline_of(REQ_A, "tl", tl, sizeof tl);
    assert_string_equal(tl, "sent:req-a delivered:neuro1");
    timeline_of(N1, "tl", tl, sizeof tl);
    timeline_of(N1, "tl", tl, sizeof tl);
    assert_string_equal(tl, "sent:req-a delivered:neuro1 opened:neuro1");

    /* Nothing to amend before an answer. */
    assert_int_equal(cases_claim(&srv, &who[N1], "tl", &out, &e), 0);
    json_decref(out);
    assert_int_equal(t_amend(&who[N1], "tl", "x", &out, &e), ERR_CONFLICT);
    json_t *ans = json_pack("{s:s}", "impression", "No bleed.");
    assert_int_equal(t_answer(&srv, &who[N1], "tl", ans, &out, &e), 0);
    json_decref(out);
    json_decref(ans);

    /* Only the answer's author amends; others who see the case are
     * refused, others are told there is no such case. */
    assert_int_equal(t_amend(&who[N2], "tl", "Bleed.", &out, &e),
                     ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "neuro1"));
    assert_int_equal(t_amend(&who[REQ_A], "tl", "Bleed.", &out, &e),
                     ERR_FORBIDDEN);
    assert_int_equal(t_amend(&who[CARDIO], "tl", "Bleed.", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(t_amend(&who[REQ_B], "tl", "Bleed.", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM answer_revisions"), 0);

    assert_int_equal(t_amend(&who[N1], "tl", "Small right frontal bleed.",
                             &out, &e), 0);
    json_t *a = json_object_get(out, "answer");
    assert_string_equal(json_string_value(json_object_get(a, "impression")),
                        "Small right frontal bleed.");
    json_t *revs = json_object_get(a, "revisions");
    assert_int_equal(json_array_size(revs), 1);
    json_t *r0 = json_array_get(revs, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "impression")),
                        "No bleed.");
    assert_string_equal(json_string_value(json_object_get(r0, "by")),
                        "neuro1");
    assert_true(json_integer_value(json_object_get(r0, "replaced_at")) ==
                json_integer_value(json_object_get(a, "at")));
    assert_string_equal(json_string_value(json_object_get(out, "status")),
                        "answered");
    json_decref(out);
    /* A retry of the same amendment: no second revision, no event. */
    assert_int_equal(t_amend(&who[N1], "tl", "Small right frontal bleed.",
                             &out, &e), 0);
    json_decref(out);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM answer_revisions"), 1);

    /* The requester is told, with the previous answer in the case. */
    expect_kinds(REQ_A, "tl", "case.new case.claimed case.answered "
                              "case.answered");
    json_t *x = last_event(REQ_A, "case.answered");
    json_t *body = json_object_get(x, "body");
    assert_true(json_is_true(json_object_get(body, "amended")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(
        json_object_get(json_object_get(json_object_get(body, "case"),
                                        "answer"), "revisions"), 0),
        "impression")), "No bleed.");
    json_decref(x);

    /* Closed: still amendable by its author. */
    assert_int_equal(cases_close(&srv, &who[REQ_A], "tl", &out, &e), 0);
    json_decref(out);
    assert_int_equal(t_amend(&who[N1], "tl", "Bleed, 4 mm.", &out, &e), 0);
    assert_int_equal(json_array_size(json_object_get(
        json_object_get(out, "answer"), "revisions")), 2);
    json_decref(out);
    timeline_of(REQ_A, "tl", tl, sizeof tl);
    assert_string_equal(tl, "sent:req-a delivered:neuro1 opened:neuro1 "
                            "claimed:neuro1 answered:neuro1 "
                            "amended:neuro1 closed:req-a amended:neuro1");
}

static void test_messages_and_receipts(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    oncall("neurology", "neuro1", NULL);
    create_case(REQ_A, "chat", "urgent", "neurology", NULL);
    json_t *req = json_pack("{s:s, s:s, s:s, s:{s:s, s:i, s:{s:i, s:i}}}",
                            "case_id", "chat", "message_id", "q1",
                            "text", "See slice 12",
                            "image", "sop_uid", "1.2.3.4", "frame", 1,
                            "window", "center", 75, "width", 215);
    assert_int_equal(t_message(&srv, &who[REQ_A], req, &out, &e), 0);
    assert_true(json_number_value(json_object_get(json_object_get(
                    json_object_get(out, "image"), "window"), "width")) ==
                215.0);
    json_decref(out);
    /* A retry: the same message, no second event. */
    assert_int_equal(t_message(&srv, &who[REQ_A], req, &out, &e), 0);
    json_decref(out);
    /* The same id by someone else is refused. */
    json_object_set_new(req, "message_id", json_string("q1"));
    assert_int_equal(t_message(&srv, &who[N1], req, &out, &e),
                     ERR_CONFLICT);
    json_decref(req);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM messages"), 1);
    expect_kinds(N1, "chat", "case.new message.new");

    /* Read by neuro1: a receipt event to everyone; twice = once. */
    assert_int_equal(cases_message_read(&srv, &who[N1], "chat", "q1", &e), 0);
    assert_int_equal(cases_message_read(&srv, &who[N1], "chat", "q1", &e), 0);
    assert_int_equal(cases_message_read(&srv, &who[N1], "chat", "nope", &e),
                     ERR_NOTFOUND);
    expect_kinds(REQ_A, "chat", "case.new message.new message.read");
    json_t *x = last_event(REQ_A, "message.read");
    json_t *rc = json_object_get(json_object_get(x, "body"), "receipt");
    assert_string_equal(json_string_value(json_object_get(rc, "user")),
                        "neuro1");
    assert_string_equal(json_string_value(json_object_get(rc, "message_id")),
                        "q1");
    json_decref(x);

    /* A colleague of the specialty (not told) writes: they join. */
    send_msg(N2, "chat", "n2-1", "Agree with the bleed");
    expect_kinds(N2, "chat", "message.new");

    assert_int_equal(cases_get(&srv, &who[REQ_A], "chat", &out, &e), 0);
    json_t *msgs = json_object_get(out, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    json_t *m0 = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "author")),
                        "req-a");
    json_t *rb = json_object_get(m0, "read_by");
    assert_int_equal(json_array_size(rb), 1);
    assert_string_equal(json_string_value(json_array_get(rb, 0)), "neuro1");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(msgs, 1), "author")), "neuro2");
    json_decref(out);
}

/* The seq of u's last event. */
static int64_t last_seq_of(int u)
{
    json_t *ev = events_of(u);
    int64_t seq = json_integer_value(json_object_get(
        json_array_get(ev, json_array_size(ev) - 1), "seq"));
    json_decref(ev);
    return seq;
}

/* ws.c's flush: many users' acks in one call, each with cases_ack's
 * effects (cursor, "delivered" steps of specialists, chat receipts), the
 * stale and impossible ones skipped. */
static void test_acks_many(void **state)
{
    (void)state;
    struct err e = {0};
    char sql[256];
    create_case(REQ_A, "many", "urgent", "neurology", NULL);
    int64_t n2_case = last_seq_of(N2);
    send_msg(REQ_A, "many", "mm1", "see the bleed");
    int64_t n1_last = last_seq_of(N1), req_last = last_seq_of(REQ_A);
    assert_true(n1_last > 1 && n2_case >= 1 && req_last >= 1);
    struct outbox_rcpt acks[] = {
        { who[N1].user_id, 1 },             /* lower, then the last: max */
        { who[N1].user_id, n1_last },
        { who[N2].user_id, n2_case },       /* the case, not the message */
        { who[REQ_A].user_id, req_last + 100 },     /* beyond: skipped */
    };
    assert_int_equal(cases_ack_many(&srv, acks, 4, &e), 0);
    assert_int_equal(outbox_acked_seq(srv.outbox, who[N1].user_id), n1_last);
    assert_int_equal(outbox_acked_seq(srv.outbox, who[N2].user_id), n2_case);
    assert_int_equal(outbox_acked_seq(srv.outbox, who[REQ_A].user_id), 0);
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM case_steps WHERE case_id = 'many'"
             " AND step = 'delivered' AND user_id IN (%lld, %lld)",
             (long long)who[N1].user_id, (long long)who[N2].user_id);
    assert_int_equal(count_rows(sql), 2);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM case_steps"
                                " WHERE step = 'delivered'"), 2);
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM message_receipts WHERE message_id = 'mm1'"
             " AND delivered_at IS NOT NULL AND user_id = %lld",
             (long long)who[N1].user_id);
    assert_int_equal(count_rows(sql), 1);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM message_receipts"
                                " WHERE delivered_at IS NOT NULL"), 1);
    /* Again, and an older ack: nothing moves back or twice. */
    acks[1].seq = 1;
    assert_int_equal(cases_ack_many(&srv, acks, 4, &e), 0);
    assert_int_equal(outbox_acked_seq(srv.outbox, who[N1].user_id), n1_last);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM case_steps"
                                " WHERE step = 'delivered'"), 2);
    /* The rest of N2's events, now. */
    acks[2].seq = last_seq_of(N2);
    assert_int_equal(cases_ack_many(&srv, &acks[2], 1, &e), 0);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM message_receipts"
                                " WHERE delivered_at IS NOT NULL"), 2);
}

/* Patient 1 and its study 1.2.826.0.1.3680043.8.498.1 (id 1), of clinic,
 * for the tests that add series and instances. */
static void seed_study(long long clinic)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO patients (id, clinic_id, patient_id, name,"
             " birth_date, sex) VALUES (1, %lld, 'P1', 'X^Y', '', 'F');"
             "INSERT INTO studies (id, study_uid, patient_ref, date, time,"
             " description, accession, clinic_id, created, updated) VALUES"
             " (1, '1.2.826.0.1.3680043.8.498.1', 1, '', '', '', '', %lld,"
             "  0, 0);", clinic, clinic);
    exec_sql(sql);
}

static void test_images_arrived(void **state)
{
    (void)state;
    struct err e = {0};
    oncall("neurology", "neuro1", NULL);
    create_case(REQ_A, "img", "stat", "neurology", NULL);
    char sql[2048];
    seed_study((long long)who[REQ_A].clinic_id);
    snprintf(sql, sizeof sql,
             "INSERT INTO series (id, series_uid, study_ref, modality,"
             " series_number, description) VALUES (1, '1.2.3.1', 1, 'CT', 1,"
             " '');"
             "INSERT INTO instances (sop_uid, series_ref, sop_class,"
             " transfer_syntax, instance_number, rows, columns, frames,"
             " sha256, size, received_at, via, clinic_id) VALUES"
             " ('1.2.3.1.1', 1, '', '', 1, 1, 1, 1, 'x', 1, 0, 'stow', %lld),"
             " ('1.2.3.1.2', 1, '', '', 2, 1, 1, 1, 'y', 1, 0, 'stow', %lld);",
             (long long)who[REQ_A].clinic_id,
             (long long)who[REQ_A].clinic_id);
    exec_sql(sql);
    assert_int_equal(cases_images_arrived(&srv, "1.2.826.0.1.3680043.8.498.1",
                                          &e), 0);
    /* A study no case names: nothing. */
    assert_int_equal(cases_images_arrived(&srv, "1.2.999", &e), 0);
    json_t *x = last_event(N1, "images.arrived");
    assert_non_null(x);
    json_t *b = json_object_get(x, "body");
    assert_string_equal(json_string_value(json_object_get(b, "study_uid")),
                        "1.2.826.0.1.3680043.8.498.1");
    assert_int_equal(json_integer_value(json_object_get(b, "received")), 2);
    assert_string_equal(json_string_value(json_object_get(x, "case_id")),
                        "img");
    json_decref(x);
    x = last_event(REQ_A, "images.arrived");
    assert_non_null(x);
    json_decref(x);
    json_t *c = NULL;
    assert_int_equal(cases_get(&srv, &who[N1], "img", &c, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(c, "images"), "received")), 2);
    json_decref(c);
}

/* The case answer names the viewer's first image: the series with the
 * most instances (not the first by number), its middle slice counting
 * each frame, in InstanceNumber order; null before any instance. */
static void test_first_image(void **state)
{
    (void)state;
    struct err e = {0};
    oncall("neurology", "neuro1", NULL);
    create_case(REQ_A, "first", "stat", "neurology", NULL);
    json_t *c = NULL;
    assert_int_equal(cases_get(&srv, &who[N1], "first", &c, &e), 0);
    assert_true(json_is_null(json_object_get(c, "first_image")));
    json_decref(c);
    long long cl = (long long)who[REQ_A].clinic_id;
    char sql[2048];
    seed_study(cl);
    snprintf(sql, sizeof sql,
             "INSERT INTO series (id, series_uid, study_ref, modality,"
             " series_number, description) VALUES (1, '1.2.3.1', 1, 'CT', 1,"
             " ''), (2, '1.2.3.2', 1, 'CT', 2, '');"
             "INSERT INTO instances (sop_uid, series_ref, sop_class,"
             " transfer_syntax, instance_number, rows, columns, frames,"
             " sha256, size, received_at, via, clinic_id) VALUES"
             " ('1.2.3.1.1', 1, '', '', 1, 1, 1, 1, 'a', 1, 0, 'stow', %lld),"
             " ('1.2.3.1.2', 1, '', '', 2, 1, 1, 1, 'b', 1, 0, 'stow', %lld),"
             " ('1.2.3.2.9', 2, '', '', 3, 1, 1, 1, 'c', 1, 0, 'stow', %lld),"
             " ('1.2.3.2.5', 2, '', '', 1, 1, 1, 4, 'd', 1, 0, 'stow', %lld),"
             " ('1.2.3.2.7', 2, '', '', 2, 1, 1, 1, 'e', 1, 0, 'stow', %lld);",
             cl, cl, cl, cl, cl);
    exec_sql(sql);
    assert_int_equal(cases_get(&srv, &who[N1], "first", &c, &e), 0);
    json_t *f = json_object_get(c, "first_image");
    assert_true(json_is_object(f));
    assert_string_equal(json_string_value(json_object_get(f, "study_uid")),
                        "1.2.826.0.1.3680043.8.498.1");
    assert_string_equal(json_string_value(json_object_get(f, "series_uid")),
                        "1.2.3.2");
    /* slices: 1.2.3.2.5 frames 1-4 (0-3), .7 (4), .9 (5): the middle, 3 */
    assert_int_equal(json_integer_value(json_object_get(f, "slices")), 6);
    assert_int_equal(json_integer_value(json_object_get(f, "index")), 3);
    assert_string_equal(json_string_value(json_object_get(f, "sop_uid")),
                        "1.2.3.2.5");
    assert_int_equal(json_integer_value(json_object_get(f, "frame")), 4);
    assert_int_equal(json_integer_value(json_object_get(f, "frames")), 4);
    json_decref(c);
}

static void test_oncall_set_checks(void **state)
{
    (void)state;
    struct err e = {0};
    const char *l1[] = { "neuro1", "nobody" };
    assert_int_equal(cases_oncall_set(&srv, "neurology", l1, 2, &e),
                     ERR_NOTFOUND);
    const char *l2[] = { "req-a" };
    assert_int_equal(cases_oncall_set(&srv, "neurology", l2, 1, &e),
                     ERR_INVALID);
    const char *l3[] = { "neuro1", "neuro1" };
    assert_int_equal(cases_oncall_set(&srv, "neurology", l3, 2, &e),
                     ERR_INVALID);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM oncall"), 0);
    const char *l4[] = { "neuro3", "neuro1" };
    assert_int_equal(cases_oncall_set(&srv, "neurology", l4, 2, &e), 0);
    assert_int_equal(count_rows("SELECT user_id FROM oncall WHERE"
                                " specialty = 'neurology' AND position = 1"),
                     who[N3].user_id);
    /* Replacing the list. */
    assert_int_equal(cases_oncall_set(&srv, "neurology", l4 + 1, 1, &e), 0);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM oncall"), 1);
}

static void test_audit_lines(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    create_case(REQ_A, "aud", "routine", "neurology", NULL);
    assert_int_equal(cases_get(&srv, &who[N1], "aud", &out, &e), 0);
    json_decref(out);
    assert_int_equal(cases_get(&srv, &who[REQ_B], "aud", &out, &e),
                     ERR_NOTFOUND);
    audit_close(srv.audit);
    srv.audit = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/audit.log", dir);
    unsigned char *buf = NULL;
    size_t len = 0;
    assert_int_equal(read_file(path, 1 << 20, &buf, &len, &e), 0);
    int create = 0, view_ok = 0, view_nf = 0;
    for (char *line = strtok((char *)buf, "\n"); line;
         line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *act = json_string_value(json_object_get(j, "action"));
        const char *actor = json_string_value(json_object_get(j, "actor"));
        const char *oc = json_string_value(json_object_get(j, "outcome"));
        const char *obj = json_string_value(json_object_get(j, "object"));
        if (act && obj && !strcmp(obj, "aud")) {
            if (!strcmp(act, "case.create") && !strcmp(actor, "req-a") &&
                !strcmp(oc, "ok"))
                create++;
            if (!strcmp(act, "case.view") && !strcmp(actor, "neuro1") &&
                !strcmp(oc, "ok"))
                view_ok++;
            if (!strcmp(act, "case.view") && !strcmp(actor, "req-b") &&
                !strcmp(oc, "notfound"))
                view_nf++;
        }
        json_decref(j);
    }
    free(buf);
    assert_int_equal(create, 1);
    assert_int_equal(view_ok, 1);
    assert_int_equal(view_nf, 1);
    srv.audit = audit_open(dir, &e);
}

static json_t *jtext(const char *text)
{
    json_t *in = json_loads(text, 0, NULL);
    assert_non_null(in);
    return in;
}

/* Requests with every member (patient, study_uids, image and window)
 * reach cases.c typed, as the codec fills struct msg. */
static void test_codec_requests(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    json_t *req = jtext("{\"case_id\": \"codec-1\", \"question\": \"Stroke?\","
        " \"priority\": \"stat\", \"specialty\": \"neurology\","
        " \"patient\": {\"age\": 64, \"sex\": \"M\"},"
        " \"study_uids\": [\"1.2.3\", \"1.2.4\"]}");
    int created = 0;
    if (t_create(&srv, &who[REQ_A], req, &out, &created, &e))
        fail_msg("create: %s", e.msg);
    assert_int_equal(created, 1);
    assert_int_equal(json_array_size(json_object_get(out, "study_uids")), 2);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(out, "study_uids"), 1)), "1.2.4");
    assert_true(json_is_null(json_object_get(out, "specialist")));
    json_decref(out);
    json_decref(req);

    /* No patient at all: both members null. */
    req = jtext("{\"case_id\": \"codec-2\", \"question\": \"?\","
                        " \"priority\": \"routine\","
                        " \"specialist\": \"neuro2\"}");
    if (t_create(&srv, &who[REQ_A], req, &out, &created, &e))
        fail_msg("create: %s", e.msg);
    json_t *pt = json_object_get(out, "patient");
    assert_true(json_is_null(json_object_get(pt, "age")));
    assert_true(json_is_null(json_object_get(pt, "sex")));
    assert_true(json_is_null(json_object_get(out, "specialty")));
    assert_int_equal(json_array_size(json_object_get(out, "study_uids")), 0);
    json_decref(out);
    json_decref(req);

    req = jtext("{\"case_id\": \"codec-1\", \"message_id\": \"cm-1\","
        " \"text\": \"Look here\", \"image\": {\"sop_uid\": \"1.2.3.9\","
        " \"frame\": 3, \"window\": {\"center\": 40, \"width\": 80}}}");
    if (t_message(&srv, &who[REQ_A], req, &out, &e))
        fail_msg("message: %s", e.msg);
    json_t *img = json_object_get(out, "image");
    assert_int_equal(json_integer_value(json_object_get(img, "frame")), 3);
    json_t *w = json_object_get(img, "window");
    assert_true(json_number_value(json_object_get(w, "center")) == 40.0);
    assert_true(json_number_value(json_object_get(w, "width")) == 80.0);
    json_decref(out);
    json_decref(req);

    req = jtext("{\"case_id\": \"codec-1\", \"impression\":"
                        " \"Left MCA infarct\"}");
    assert_int_equal(cases_claim(&srv, &who[N1], "codec-1", &out, &e), 0);
    json_decref(out);
    if (t_answer(&srv, &who[N1], "codec-1", req, &out, &e))
        fail_msg("answer: %s", e.msg);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(out, "answer"), "recommendation")),
                        "");
    json_decref(out);
    json_decref(req);
}

/* What the hook registered in srv->events_committed saw: its calls, and
 * the recipients of the events it took (as ws.c's push does). */
static int hook_calls;
static int64_t hook_users[16];
static size_t hook_n;

static void hook(struct server *s)
{
    struct outbox_event *ev = NULL;
    hook_calls++;
    hook_n = 0;
    outbox_take_events(s->outbox, &ev);
    while (ev) {
        struct outbox_event *next = ev->next;
        for (size_t i = 0; i < ev->n && hook_n < 16; i++)
            hook_users[hook_n++] = ev->rcpt[i].user_id;
        outbox_event_free(ev);
        ev = next;
    }
}

static int hook_saw(int u)
{
    for (size_t i = 0; i < hook_n; i++)
        if (hook_users[i] == who[u].user_id)
            return 1;
    return 0;
}

/* cases.c knows no WebSocket layer: after each COMMIT it calls whatever
 * registered in srv->events_committed, with the committed events (and
 * their recipients) to take; nothing after a refused operation; with no
 * hook, they are dropped and the events wait in the outboxes. */
static void test_events_committed_hook(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    create_case(REQ_A, "hook-0", "routine", "neurology", NULL);
    struct outbox_event *left = NULL;
    outbox_take_events(srv.outbox, &left);
    assert_null(left);                  /* no hook: nothing left behind */

    hook_calls = 0;
    srv.events_committed = hook;
    create_case(REQ_A, "hook-1", "routine", "neurology", NULL);
    assert_int_equal(hook_calls, 1);
    assert_true(hook_saw(REQ_A) && hook_saw(N1) && hook_saw(N2));
    assert_false(hook_saw(CARDIO) || hook_saw(REQ_B));
    assert_int_equal(cases_claim(&srv, &who[CARDIO], "hook-1", &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(hook_calls, 1);    /* refused: rolled back, no call */
    assert_int_equal(cases_claim(&srv, &who[N2], "hook-1", &out, &e), 0);
    json_decref(out);
    assert_int_equal(hook_calls, 2);
    assert_true(hook_saw(N2) && hook_saw(REQ_A));
    srv.events_committed = NULL;
}

/* Recipients are chosen as each event is appended, not at create: a
 * specialist who joins the specialty of a case sent to all of it, and a
 * requester who joins its clinic, get its later events (not the earlier
 * ones).  A case sitting with an on-call is not the specialty's: a new
 * member hears of it once it escalates to the whole specialty. */
static void test_recipients_at_append_time(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *out = NULL;
    int64_t late_n = 0, late_r = 0, late_oc = 0;
    char k[256];

    create_case(REQ_A, "late", "routine", "neurology", NULL);
    oncall("neurology", "neuro2", NULL);
    create_case(REQ_A, "late-oc", "stat", "neurology", NULL);
    if (auth_user_add(srv.store, "neuro-late", "City", "specialist",
                      "neurology", "pw", &late_n, &e) ||
        auth_user_add(srv.store, "req-late", "Clinic A", "requester", NULL,
                      "pw", &late_r, &e))
        fail_msg("user add: %s", e.msg);

    send_msg(REQ_A, "late", "late-m1", "Any news?");
    assert_int_equal(cases_claim(&srv, &who[N1], "late", &out, &e), 0);
    json_decref(out);
    kinds_of_id(late_n, "late", k, sizeof k);
    assert_string_equal(k, "message.new case.claimed");
    kinds_of_id(late_r, "late", k, sizeof k);
    assert_string_equal(k, "message.new case.claimed");

    /* The on-call case: the requester side hears, the new specialist
     * not... */
    send_msg(REQ_A, "late-oc", "late-m2", "Still there?");
    kinds_of_id(late_n, "late-oc", k, sizeof k);
    assert_string_equal(k, "");
    kinds_of_id(late_r, "late-oc", k, sizeof k);
    assert_string_equal(k, "message.new");
    /* ...until it escalates past the list to the whole specialty; then a
     * specialist joining even later gets what follows. */
    int64_t next = 0;
    assert_int_equal(cases_escalate_due(&srv, now_ms() + 3600000, &next, &e),
                     1);
    kinds_of_id(late_n, "late-oc", k, sizeof k);
    assert_string_equal(k, "case.escalated");
    if (auth_user_add(srv.store, "neuro-later", "City", "specialist",
                      "neurology", "pw", &late_oc, &e))
        fail_msg("user add: %s", e.msg);
    send_msg(REQ_A, "late-oc", "late-m3", "Anyone?");
    kinds_of_id(late_oc, "late-oc", k, sizeof k);
    assert_string_equal(k, "message.new");
    kinds_of_id(late_oc, "late", k, sizeof k);
    assert_string_equal(k, "");
}

static void test_list_pages(void **state)
{
    (void)state;
    struct err e = {0};
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "p%d", i);
        create_case(REQ_A, id, "routine", "neurology", NULL);
        usleep(2000);
    }
    send_msg(REQ_A, "p1", "p1-m", "bump");  /* p1 is now the latest */
    const char *want[] = { "p1", "p4", "p3", "p2", "p0" };
    int got = 0;
    char before[128] = "";
    for (int page = 0; page < 3; page++) {
        json_t *out = NULL;
        if (t_page(&srv, &who[N1], NULL, 2, before[0] ? before : NULL,
                   &out, &e))
            fail_msg("list: %s", e.msg);
        json_t *cs = json_object_get(out, "cases");
        assert_int_equal(json_array_size(cs), page < 2 ? 2 : 1);
        size_t i;
        json_t *c;
        json_array_foreach(cs, i, c)
            assert_string_equal(json_string_value(json_object_get(c,
                                                                  "case_id")),
                                want[got++]);
        json_t *next = json_object_get(out, "next");
        if (page < 2)
            strlcpy_h(before, json_string_value(next), sizeof before);
        else
            assert_null(next);
        json_decref(out);
    }
    assert_int_equal(got, 5);
    json_t *out = NULL;
    assert_int_equal(t_page(&srv, &who[N1], NULL, 2, "garbage", &out, &e),
                     ERR_INVALID);
    /* One limit, the codec's: MSG_LIST_MAX cases at most a page. */
    assert_int_equal(t_page(&srv, &who[N1], NULL, MSG_LIST_MAX, NULL, &out,
                            &e), 0);
    json_decref(out);
    assert_int_equal(t_page(&srv, &who[N1], NULL, MSG_LIST_MAX + 1, NULL,
                            &out, &e), ERR_INVALID);
    struct msg_case_list big = { .limit = MSG_LIST_MAX + 1 };
    assert_int_equal(cases_list_page(&srv, &who[N1], &big, &out, &e),
                     ERR_INVALID);
    assert_int_equal(t_list(&srv, &who[REQ_A], NULL, 0, &out, &e), 0);
    assert_int_equal(json_array_size(out), 5);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(out, 0), "case_id")), "p1");
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_twice_is_one_case, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_create_rejects_bad_input, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_claim_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recipients_of_new_case, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_offline_delivery_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_escalation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visibility, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_close_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeline_and_amend, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_acks_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_and_receipts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_images_arrived, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_first_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oncall_set_checks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_audit_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codec_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recipients_at_append_time,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_committed_hook, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
