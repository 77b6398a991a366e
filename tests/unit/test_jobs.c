/*
 * test_jobs — the worker pool: waited jobs run on a worker (not the
 * caller) and are over when jobs_wait returns; reaped jobs run their done
 * callback only in jobs_reap, on the reaping thread, after the wake; each
 * worker's thread_init context reaches work; one thread runs jobs in
 * submission order; jobs_stop runs what is queued and the done callbacks
 * still owed; a bad configuration is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../server/jobs.h"

struct item {
    struct job job;
    int id;
    pthread_t ran_on;
    void *ctx_seen;
    atomic_int work_done;       /* set by work (read racily by the test) */
    int done_called;            /* set by done */
    pthread_t done_on;
    int *order;                 /* shared log of ids, by work */
    atomic_int *norder;
    int sleep_us;
};

static void work(void *ctx, void *arg)
{
    struct item *it = arg;

    if (it->sleep_us)
        usleep((useconds_t)it->sleep_us);
    it->ran_on = pthread_self();
    it->ctx_seen = ctx;
    if (it->order)
        it->order[atomic_fetch_add(it->norder, 1)] = it->id;
    it->work_done = 1;
}

static void done(void *arg)
{
    struct item *it = arg;

    assert_true(it->work_done);         /* never before its work */
    it->done_called++;
    it->done_on = pthread_self();
}

static atomic_int g_wakes;

static void wake(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_wakes, 1);
}

/* These run on the workers: they count, the test thread asserts. */
static atomic_int g_inits, g_finis, g_bad_ctx;
static int g_ctx_tag;

static void *thread_init(void *arg)
{
    if (arg != &g_ctx_tag)
        atomic_fetch_add(&g_bad_ctx, 1);
    atomic_fetch_add(&g_inits, 1);
    return &g_ctx_tag;
}

static void thread_fini(void *ctx)
{
    if (ctx != &g_ctx_tag)
        atomic_fetch_add(&g_bad_ctx, 1);
    atomic_fetch_add(&g_finis, 1);
}

static void test_waited_jobs(void **state)
{
    (void)state;
    struct jobs_cfg cfg = { .threads = 2, .name = "t" };
    struct err e = { 0, "" };
    struct jobs *j = jobs_start(&cfg, &e);
    struct item it[16];

    assert_non_null(j);
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 16; i++) {
        it[i].id = i;
        it[i].sleep_us = (i % 3) * 200;
        jobs_submit(j, &it[i].job, work, NULL, &it[i]);
    }
    for (int i = 0; i < 16; i++) {
        jobs_wait(j, &it[i].job);
        assert_true(it[i].work_done);
        assert_false(pthread_equal(it[i].ran_on, pthread_self()));
        assert_null(it[i].ctx_seen);    /* no thread_init */
    }
    jobs_stop(j);
}

static void test_reaped_jobs(void **state)
{
    (void)state;
    struct jobs_cfg cfg = {
        .threads = 3, .name = "t", .wake = wake, .wake_arg = NULL,
    };
    struct err e = { 0, "" };
    struct jobs *j;
    struct item it[20];
    int reaped = 0;

    atomic_store(&g_wakes, 0);
    j = jobs_start(&cfg, &e);
    assert_non_null(j);
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 20; i++) {
        it[i].id = i;
        it[i].sleep_us = 100 + (i % 4) * 300;
        jobs_submit(j, &it[i].job, work, done, &it[i]);
    }
    /* done() runs only inside jobs_reap, on this thread */
    for (int tries = 0; reaped < 20 && tries < 5000; tries++) {
        for (int i = 0; i < 20; i++)
            if (!it[i].work_done)
                assert_int_equal(it[i].done_called, 0);
        reaped += jobs_reap(j);
        usleep(1000);
    }
    assert_int_equal(reaped, 20);
    assert_true(atomic_load(&g_wakes) >= 1);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(it[i].done_called, 1);
        assert_true(pthread_equal(it[i].done_on, pthread_self()));
    }
    assert_int_equal(jobs_reap(j), 0);
    jobs_stop(j);
}

static void test_thread_ctx_and_order(void **state)
{
    (void)state;
    struct jobs_cfg cfg = {
        .threads = 1, .name = "t", .thread_init = thread_init,
        .thread_fini = thread_fini, .init_arg = &g_ctx_tag,
    };
    struct err e = { 0, "" };
    struct jobs *j;
    struct item it[10];
    int order[10];
    atomic_int norder = 0;

    atomic_store(&g_inits, 0);
    atomic_store(&g_finis, 0);
    j = jobs_start(&cfg, &e);
    assert_non_null(j);
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 10; i++) {
        it[i].id = i;
        it[i].order = order;
        it[i].norder = &norder;
        it[i].sleep_us = i == 0 ? 20000 : 0;    /* the rest queue up */
        jobs_submit(j, &it[i].job, work, NULL, &it[i]);
    }
    for (int i = 0; i < 10; i++)
        jobs_wait(j, &it[i].job);
    assert_int_equal(atomic_load(&norder), 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(order[i], i);  /* one thread: FIFO */
        assert_ptr_equal(it[i].ctx_seen, &g_ctx_tag);
    }
    jobs_stop(j);
    assert_int_equal(atomic_load(&g_inits), 1);
    assert_int_equal(atomic_load(&g_finis), 1);
    assert_int_equal(atomic_load(&g_bad_ctx), 0);
}

static void test_stop_runs_queue_and_owed_dones(void **state)
{
    (void)state;
    struct jobs_cfg cfg = { .threads = 1, .name = "t", .wake = wake };
    struct err e = { 0, "" };
    struct jobs *j = jobs_start(&cfg, &e);
    struct item it[6];

    assert_non_null(j);
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 6; i++) {
        it[i].id = i;
        it[i].sleep_us = 2000;
        jobs_submit(j, &it[i].job, work, done, &it[i]);
    }
    jobs_stop(j);               /* nothing reaped before */
    for (int i = 0; i < 6; i++) {
        assert_true(it[i].work_done);
        assert_int_equal(it[i].done_called, 1);
        assert_true(pthread_equal(it[i].done_on, pthread_self()));
    }
    jobs_stop(NULL);
    assert_int_equal(jobs_reap(NULL), 0);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct jobs_cfg none = { .threads = 0 };
    struct jobs_cfg many = { .threads = 1000 };
    struct err e = { 0, "" };

    assert_null(jobs_start(&none, &e));
    assert_int_equal(e.code, ERR_INVALID);
    memset(&e, 0, sizeof(e));
    assert_null(jobs_start(&many, &e));
    assert_int_equal(e.code, ERR_INVALID);
    assert_null(jobs_start(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waited_jobs),
        cmocka_unit_test(test_reaped_jobs),
        cmocka_unit_test(test_thread_ctx_and_order),
        cmocka_unit_test(test_stop_runs_queue_and_owed_dones),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
