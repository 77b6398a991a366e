/*
 * test_spool — the gateway's spool: a put is one row and one whole file
 * named by its sha256; the same dataset again (even under another file
 * meta header) is the same row; a non-DICOM file is refused and removed;
 * below the reserve nothing is taken and nothing old is lost; instances
 * wait for their study's announcement and leave by study priority; done
 * removes the file; quiet studies are listed once per change; and the
 * uploader's --max-rate parser.
 *
 * Test files come from tests/tools/gen_study.py (HASHI_TOOLS), made
 * once per run in a scratch dir under HASHI_TESTDATA (or /tmp).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../client/spool.h"
#include "../../client/uplink.h"
#include "../../proto/dicom.h"
#include "../../proto/log.h"
#include "../../proto/util.h"
#include "testutil.h"

static char g_scratch[1024];
static char g_a[2][1200];       /* study A, routine: two slices */
static char g_b[1200];          /* study B: one slice */
static char g_meta[1200];       /* A's first slice, another meta header */

struct fx {
    char dir[1200];
    struct spool *s;
};

static int group_setup(void **state)
{
    (void)state;
    const char *tools;
    if (tu_dicom_group_setup("test_spool", g_scratch, sizeof g_scratch,
                             &tools))
        return -1;
    if (tu_run("/usr/bin/python3 '%s/gen_study.py' --size 32 --slices 2 "
               "--seed 5 '%s/a' >/dev/null && "
               "/usr/bin/python3 '%s/gen_study.py' --size 32 --slices 1 "
               "--seed 6 '%s/b' >/dev/null && "
               "/usr/bin/python3 -c \"import pydicom,sys;"
               "d=pydicom.dcmread(sys.argv[1]);"
               "d.file_meta.SourceApplicationEntityTitle='OTHER_AE';"
               "d.save_as(sys.argv[2])\" '%s/a/CT00001.dcm' '%s/meta.dcm'",
               tools, g_scratch, tools, g_scratch, g_scratch, g_scratch))
        return -1;
    snprintf(g_a[0], sizeof g_a[0], "%s/a/CT00001.dcm", g_scratch);
    snprintf(g_a[1], sizeof g_a[1], "%s/a/CT00002.dcm", g_scratch);
    snprintf(g_b, sizeof g_b, "%s/b/CT00001.dcm", g_scratch);
    snprintf(g_meta, sizeof g_meta, "%s/meta.dcm", g_scratch);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return tu_dicom_group_teardown(g_scratch);
}

static int setup(void **state)
{
    static int n;
    struct fx *f = calloc(1, sizeof *f);
    struct err e = { 0, "" };
    snprintf(f->dir, sizeof f->dir, "%s/spool%d", g_scratch, ++n);
    f->s = spool_open(f->dir, 0, &e);
    assert_non_null(f->s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    spool_close(f->s);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

/* Copies src into the spool's tmp/ (as the listener would) and puts it. */
static int put(struct fx *f, const char *src, struct spool_item *it,
               int *fresh, struct err *e)
{
    char tmp[1300];
    static int n;
    snprintf(tmp, sizeof tmp, "%s/in-%d", spool_tmp_dir(f->s), ++n);
    assert_int_equal(tu_run("cp '%s' '%s'", src, tmp), 0);
    return spool_put(f->s, tmp, it, fresh, e);
}

/* Files in the spool's subdirectory sub. */
static int entries(struct fx *f, const char *sub)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", f->dir, sub);
    DIR *d = opendir(p);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static sqlite3 *db_of(struct fx *f)
{
    char p[1300];
    sqlite3 *db;
    snprintf(p, sizeof p, "%s/spool.db", f->dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    return db;
}

static void test_put_once(void **state)
{
    struct fx *f = *state;
    struct spool_item it, again;
    struct err e = { 0, "" };
    int fresh = 0;
    char sha[65];

    assert_int_equal(put(f, g_a[0], &it, &fresh, &e), 0);
    assert_int_equal(fresh, 1);
    assert_int_equal(sha256_file(it.path, sha, NULL, &e), 0);
    assert_string_equal(sha, it.sha256);
    /* The same dataset under another meta header: the same row. */
    assert_int_equal(put(f, g_meta, &again, &fresh, &e), 0);
    assert_int_equal(fresh, 0);
    assert_int_equal(again.id, it.id);
    assert_string_equal(again.sha256, it.sha256);
    sqlite3 *db = db_of(f);
    assert_int_equal(tu_sql_int(db, "SELECT count(*) FROM instances"), 1);
    sqlite3_close(db);
    assert_int_equal(entries(f, "files"), 1);
}

static void test_refuses_non_dicom(void **state)
{
    struct fx *f = *state;
    struct spool_item it;
    struct err e = { 0, "" };
    int fresh = 0;
    char junk[1300];
    snprintf(junk, sizeof junk, "%s/junk", g_scratch);
    assert_int_equal(write_file_durable(junk, "not dicom at all", 16, 0600,
                                        &e), 0);
    assert_int_equal(put(f, junk, &it, &fresh, &e), ERR_INVALID);
    assert_int_equal(entries(f, "tmp"), 0);
    assert_int_equal(entries(f, "files"), 0);
}

static void test_reserve_keeps_old(void **state)
{
    struct fx *f = *state;
    struct spool_item it;
    struct err e = { 0, "" };
    int fresh = 0;
    assert_int_equal(put(f, g_a[0], &it, &fresh, &e), 0);
    spool_close(f->s);
    f->s = spool_open(f->dir, 1LL << 60, &e);      /* "disk full" */
    assert_non_null(f->s);
    assert_int_equal(put(f, g_b, &it, &fresh, &e), ERR_TOOBIG);
    sqlite3 *db = db_of(f);
    assert_int_equal(tu_sql_int(db, "SELECT count(*) FROM instances"), 1);
    sqlite3_close(db);
}

static int count_study(void *arg, const struct spool_study *y)
{
    (void)y;
    (*(int *)arg)++;
    return 0;
}

/* Counts the listed studies that are settled (tens) and not (ones). */
static int count_settled(void *arg, const struct spool_study *y)
{
    *(int *)arg += y->settled ? 10 : 1;
    return 0;
}

static void test_order_and_announce(void **state)
{
    struct fx *f = *state;
    struct spool_item a0, a1, b, it;
    struct err e = { 0, "" };
    int fresh = 0, n = 0;
    assert_int_equal(put(f, g_a[0], &a0, &fresh, &e), 0);
    assert_int_equal(put(f, g_a[1], &a1, &fresh, &e), 0);
    assert_int_equal(put(f, g_b, &b, &fresh, &e), 0);

    /* Nothing leaves before its study is announced. */
    assert_int_equal(spool_next(f->s, NULL, 0, &it, &e), ERR_NOTFOUND);
    /* Not quiet yet: listed unsettled, for their early previews, and
     * no more once those are made. */
    assert_int_equal(spool_each_study(f->s, 3600000, count_settled, &n,
                                      &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(spool_set_preview(f->s, a0.study_uid,
                                       SPOOL_PREVIEW_EARLY, &e), 0);
    assert_int_equal(spool_set_preview(f->s, b.study_uid,
                                       SPOOL_PREVIEW_EARLY, &e), 0);
    n = 0;
    assert_int_equal(spool_each_study(f->s, 3600000, count_study, &n, &e),
                     0);
    assert_int_equal(n, 0);
    /* Settled: listed for their count and final previews. */
    assert_int_equal(spool_each_study(f->s, 0, count_settled, &n, &e), 0);
    assert_int_equal(n, 20);
    assert_int_equal(spool_set_expected(f->s, a0.study_uid, 2, &e), 0);
    assert_int_equal(spool_set_expected(f->s, b.study_uid, 1, &e), 0);
    n = 0;
    assert_int_equal(spool_each_study(f->s, 0, count_study, &n, &e), 0);
    assert_int_equal(n, 2);             /* the final previews */
    assert_int_equal(spool_set_preview(f->s, a0.study_uid,
                                       SPOOL_PREVIEW_FINAL, &e), 0);
    assert_int_equal(spool_set_preview(f->s, b.study_uid,
                                       SPOOL_PREVIEW_FINAL, &e), 0);
    n = 0;
    assert_int_equal(spool_each_study(f->s, 0, count_study, &n, &e), 0);
    assert_int_equal(n, 0);

    /* Arrival order, until B is made stat. */
    assert_int_equal(spool_next(f->s, NULL, 0, &it, &e), 0);
    assert_int_equal(it.id, a0.id);
    char uids[4][65];
    assert_int_equal(spool_pending_studies(f->s, uids, 4, &e), 2);
    assert_int_equal(spool_set_priority(f->s, b.study_uid, SPOOL_STAT, &e),
                     1);
    assert_int_equal(spool_set_priority(f->s, b.study_uid, SPOOL_STAT, &e),
                     0);                        /* no change: not news */
    /* A stat study is asked about no more: it cannot rise. */
    assert_int_equal(spool_pending_studies(f->s, uids, 4, &e), 1);
    assert_string_equal(uids[0], a0.study_uid);
    assert_int_equal(spool_next(f->s, NULL, 0, &it, &e), 0);
    assert_int_equal(it.id, b.id);
    assert_int_equal(it.priority, SPOOL_STAT);
    int64_t skip[1] = { b.id };
    assert_int_equal(spool_next(f->s, skip, 1, &it, &e), 0);
    assert_int_equal(it.id, a0.id);

    /* Done: gone from the queue, its file removed; failed: kept. */
    assert_int_equal(spool_done(f->s, b.id, &e), 0);
    assert_int_equal(access(b.path, F_OK), -1);
    assert_int_equal(spool_set_state(f->s, a0.id, SPOOL_FAILED,
                                     "too_big: over the cap", &e), 0);
    assert_int_equal(access(a0.path, F_OK), 0);
    assert_int_equal(spool_next(f->s, NULL, 0, &it, &e), 0);
    assert_int_equal(it.id, a1.id);
    struct spool_counts c;
    assert_int_equal(spool_counts(f->s, &c, &e), 0);
    assert_int_equal(c.waiting, 1);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.bytes_waiting, a1.size);
}

static void test_parse_rate(void **state)
{
    (void)state;
    double r = 0;
    assert_int_equal(uplink_parse_rate("256kbit", &r), 0);
    assert_true(r == 32000.0);
    assert_int_equal(uplink_parse_rate("2mbit", &r), 0);
    assert_true(r == 250000.0);
    assert_int_equal(uplink_parse_rate("300k", &r), 0);
    assert_true(r == 307200.0);
    assert_int_equal(uplink_parse_rate("5000", &r), 0);
    assert_true(r == 5000.0);
    assert_int_equal(uplink_parse_rate("fast", &r), ERR_INVALID);
    assert_int_equal(uplink_parse_rate("-1mbit", &r), ERR_INVALID);
    assert_int_equal(uplink_parse_rate("2 mbit", &r), ERR_INVALID);
    assert_int_equal(uplink_parse_rate("", &r), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_non_dicom, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reserve_keeps_old, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order_and_announce, setup,
                                        teardown),
        cmocka_unit_test(test_parse_rate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
