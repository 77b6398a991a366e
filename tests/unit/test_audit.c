/*
 * test_audit — the audit log: one valid JSON object per line with the
 * documented fields, hostile values kept on their line, appends across
 * reopen, and whole lines under concurrent writers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../proto/log.h"
#include "../../proto/util.h"
#include "../../server/audit.h"
#include "testutil.h"

struct fx {
    char dir[1024];
    char log[1200];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *base = getenv("HASHI_TESTDATA");
    if (!base || !*base)
        base = "/tmp";
    mkdir_p(base, 0755);
    snprintf(f->dir, sizeof f->dir, "%.900s/test_audit.XXXXXX", base);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->log, sizeof f->log, "%s/audit.log", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    assert_int_equal(tu_rm_rf(f->dir), 0);
    free(f);
    return 0;
}

/* The log's lines, parsed; fails the test on any line that is not a JSON
 * object.  Caller decrefs the array. */
static json_t *read_lines(const struct fx *f)
{
    unsigned char *buf;
    size_t len;
    assert_int_equal(read_file(f->log, 1 << 26, &buf, &len, NULL), 0);
    assert_true(len > 0);
    assert_int_equal(buf[len - 1], '\n');
    json_t *arr = json_array();
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(o))
            fail_msg("not a JSON object: %.80s (%s)", line, err.text);
        json_array_append_new(arr, o);
    }
    free(buf);
    return arr;
}

static const char *sget(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_fields_and_escaping(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    struct audit *a = audit_open(f->dir, &e);
    assert_non_null(a);
    struct audit_entry en = {"dr.neuro", "retrieve", "1.2.3/4.5/6.7", "ok",
                             "10.0.0.1", NULL};
    int64_t before = now_ms();
    assert_int_equal(audit_write(a, &en), 0);
    struct audit_entry evil = {
        "ae:CT1", "store", "1.2.3",
        "error", NULL,
        "line1\n{\"actor\":\"forged\"}\r\x01\x1b[31m \"<script>\" \\",
    };
    assert_int_equal(audit_write(a, &evil), 0);
    struct audit_entry bad_utf8 = {"x\xff\xfey", "login_failed", NULL,
                                   "denied", "::1", NULL};
    assert_int_equal(audit_write(a, &bad_utf8), 0);
    audit_close(a);

    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), 3);
    json_t *l0 = json_array_get(lines, 0);
    assert_string_equal(sget(l0, "actor"), "dr.neuro");
    assert_string_equal(sget(l0, "action"), "retrieve");
    assert_string_equal(sget(l0, "object"), "1.2.3/4.5/6.7");
    assert_string_equal(sget(l0, "outcome"), "ok");
    assert_string_equal(sget(l0, "remote"), "10.0.0.1");
    assert_true(json_is_null(json_object_get(l0, "detail")));
    /* time: "YYYY-MM-DDTHH:MM:SS.mmmZ", UTC, now */
    const char *t = sget(l0, "time");
    assert_non_null(t);
    assert_int_equal(strlen(t), 24);
    assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    char lo[32], hi[32];
    iso8601_ms(before, lo);
    iso8601_ms(now_ms(), hi);
    assert_true(strcmp(t, lo) >= 0 && strcmp(t, hi) <= 0);

    json_t *l1 = json_array_get(lines, 1);
    assert_string_equal(sget(l1, "detail"),
                        evil.detail);            /* intact, on one line */
    assert_string_equal(sget(l1, "actor"), "ae:CT1");
    assert_true(json_is_null(json_object_get(l1, "remote")));
    json_t *l2 = json_array_get(lines, 2);
    assert_string_equal(sget(l2, "actor"), "x??y");
    assert_string_equal(sget(l2, "action"), "login_failed");
    json_decref(lines);
}

static void test_appends_across_reopen(void **state)
{
    struct fx *f = *state;
    struct audit_entry en = {"a", "login", NULL, "ok", NULL, NULL};
    for (int round = 0; round < 2; round++) {
        struct audit *a = audit_open(f->dir, NULL);
        assert_non_null(a);
        assert_int_equal(audit_write(a, &en), 0);
        audit_close(a);
    }
    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), 2);
    json_decref(lines);
    assert_int_equal(audit_write(NULL, &en), ERR_INVALID);
    assert_null(audit_open("/nonexistent/dir/for/audit", NULL));
}

#define THREADS 4
#define PER_THREAD 300

struct worker {
    struct audit *a;
    int id;
};

static void *worker(void *arg)
{
    struct worker *w = arg;
    char actor[32], detail[600];
    snprintf(actor, sizeof actor, "t%d", w->id);
    memset(detail, 'a' + w->id, sizeof detail - 1);   /* long lines */
    detail[sizeof detail - 1] = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        char obj[32];
        snprintf(obj, sizeof obj, "%d", i);
        struct audit_entry en = {actor, "render", obj, "ok", NULL, detail};
        if (audit_write(w->a, &en))
            return (void *)1;
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct fx *f = *state;
    struct audit *a = audit_open(f->dir, NULL);
    assert_non_null(a);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){a, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    audit_close(a);
    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), THREADS * PER_THREAD);
    /* every thread's entries are all there, in its own order */
    int next[THREADS] = {0};
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o) {
        int t = sget(o, "actor")[1] - '0';
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(atoi(sget(o, "object")), next[t]);
        assert_int_equal(sget(o, "detail")[0], 'a' + t);
        next[t]++;
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(next[t], PER_THREAD);
    json_decref(lines);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fields_and_escaping, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_appends_across_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
