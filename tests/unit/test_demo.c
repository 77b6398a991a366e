/*
 * test_demo — the clinician demo's data (server/demo.c through
 * admin_demo): after init + demo on a fresh data dir, demo-neuro's inbox
 * opens on the STAT case with 30 of 30 images and a running deadline; the
 * middle slice rendered in the brain window shows the bleed against
 * brain, and differs from the bone window; the answered routine case has
 * its chat (a key image on the lacune's slice) and read receipts; a second
 * demo changes no row of any table.  The live study: 24 valid slices of
 * one fresh study.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../proto/dicom.h"
#include "../../server/access.h"
#include "../../server/admin.h"
#include "../../server/auth.h"
#include "../../server/cases.h"
#include "../../server/config.h"
#include "../../server/demo.h"
#include "../../server/server.h"
#include "../../server/store.h"
#include "testutil.h"

static char tmp[256], data[300];
static struct server srv;

/* One fresh demo data dir for the whole suite: seeding takes seconds. */
static int setup(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    strcpy(tmp, "/tmp/hashi-test-demo-XXXXXX");
    if (!mkdtemp(tmp) || dicom_init(&e))
        return -1;
    snprintf(data, sizeof data, "%s/data", tmp);
    FILE *devnull = fopen("/dev/null", "w");
    if (admin_init(data, NULL, NULL, &e) ||
        admin_demo(data, 1, devnull, &e)) {
        fprintf(stderr, "demo: %s\n", e.msg);
        return -1;
    }
    fclose(devnull);
    config_defaults(&srv.cfg);
    srv.store = store_open(data, &e);
    if (!srv.store || cases_init(&srv, &e))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cases_free(&srv);
    store_close(srv.store);
    dicom_cleanup();
    return tu_rm_rf(tmp);
}

static void as(const char *login, struct principal *who)
{
    struct err e = { 0, "" };
    assert_int_equal(auth_user_principal(srv.store, login, who, &e), 0);
}

static json_int_t jint(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void stat_case_first_in_neuro_inbox(void **state)
{
    (void)state;
    struct principal neuro;
    struct err e = { 0, "" };
    as("demo-neuro", &neuro);
    struct msg_case_list req = { .limit = 10 };
    json_t *page = NULL;
    assert_int_equal(cases_list_page(&srv, &neuro, &req, &page, &e), 0);
    json_t *cases = json_object_get(page, "cases");
    assert_int_equal(json_array_size(cases), 2);
    json_t *c = json_array_get(cases, 0);
    assert_string_equal(jstr(c, "case_id"), DEMO_STAT_CASE);
    assert_string_equal(jstr(c, "priority"), "stat");
    assert_string_equal(jstr(c, "status"), "new");
    assert_string_equal(jstr(c, "clinic"), "Demo Rural Clinic");
    assert_string_equal(jstr(c, "requester"), "demo-requester");
    assert_int_equal(jint(c, "images", "received"), DEMO_SLICES);
    assert_int_equal(jint(c, "images", "expected"), DEMO_SLICES);
    /* The escalation countdown: CASES_DUE_STAT from its creation. */
    assert_int_equal(jint(c, "due_at", NULL) - jint(c, "created_at", NULL),
                     CASES_DUE_STAT * 1000);
    json_decref(page);

    /* demo-neuro is first on call: the case was routed to them. */
    assert_int_equal(tu_sql_int(store_db(srv.store),
                                "SELECT count(*) FROM case_participants p"
                                " JOIN users u ON u.id = p.user_id"
                                " WHERE p.case_id = '" DEMO_STAT_CASE "'"
                                " AND u.login = 'demo-neuro'"), 1);
}

/* The pixels of instance `number` of the STAT study, rendered with an
 * explicit window. */
static unsigned char *render(const char *study_uid, int number,
                             double c, double w, int *width)
{
    struct principal neuro;
    struct store_scope scope;
    struct store_instance *in = NULL;
    size_t n = 0;
    struct err e = { 0, "" };
    as("demo-neuro", &neuro);
    access_scope(&neuro, &scope);
    assert_int_equal(store_list_instances(srv.store, &scope, study_uid,
                                          NULL, &in, &n, &e), 0);
    assert_int_equal(n, DEMO_SLICES);
    struct dcm_render_opts o = { .window_mode = DCM_WINDOW_EXPLICIT,
                                 .center = c, .width = w };
    unsigned char *pix = NULL;
    int h, comps;
    assert_int_equal(dicom_render_pixels(in[number - 1].path, &o, &pix,
                                         width, &h, &comps, &e), 0);
    assert_int_equal(*width, 512);
    assert_int_equal(h, 512);
    assert_int_equal(comps, 1);
    free(in);
    return pix;
}

/* Mean of the 9 x 9 pixels around (row, col). */
static double patch(const unsigned char *p, int row, int col)
{
    double sum = 0;
    for (int r = row - 4; r <= row + 4; r++)
        for (int c = col - 4; c <= col + 4; c++)
            sum += p[r * 512 + c];
    return sum / 81;
}

static void middle_slice_windows(void **state)
{
    (void)state;
    struct principal neuro;
    struct err e = { 0, "" };
    json_t *c = NULL;
    as("demo-neuro", &neuro);
    assert_int_equal(cases_get(&srv, &neuro, DEMO_STAT_CASE, &c, &e), 0);
    char study[65];
    strlcpy_h(study, json_string_value(json_array_get(
                  json_object_get(c, "study_uids"), 0)), sizeof study);
    json_decref(c);

    int w;
    double bc, bw, oc, ow;
    assert_int_equal(dicom_window_preset("brain", &bc, &bw), 0);
    assert_int_equal(dicom_window_preset("bone", &oc, &ow), 0);
    unsigned char *brain = render(study, DEMO_SLICES / 2, bc, bw, &w);
    unsigned char *bone = render(study, DEMO_SLICES / 2, oc, ow, &w);

    /* Not flat: a spread of grey levels; and the windows differ over
     * the brain (some 58,000 pixels of this slice). */
    double mean = 0, var = 0;
    int differ = 0;
    for (int i = 0; i < 512 * 512; i++)
        mean += brain[i];
    mean /= 512 * 512;
    for (int i = 0; i < 512 * 512; i++) {
        var += (brain[i] - mean) * (brain[i] - mean);
        differ += abs(brain[i] - bone[i]) > 20;
    }
    print_message("brain window: mean %.1f sd %.1f; %d pixels differ\n",
                  mean, sqrt(var / (512 * 512)), differ);
    assert_true(sqrt(var / (512 * 512)) > 30);
    assert_true(differ > 40000);

    /* Plausible HU where it matters: the bleed (68 HU, right frontal,
     * x -30 mm y -20 mm: row 214, column 194) is near white in the brain
     * window; white matter between the ventricles (30 HU, row 300,
     * column 256) mid grey; air black; and in the bone window the bleed
     * and the brain look alike while the skull (row 256, column 127) is
     * bright. */
    assert_true(patch(brain, 214, 194) > 200);
    double wm = patch(brain, 300, 256);
    assert_true(wm > 75 && wm < 120);
    assert_true(patch(brain, 20, 20) < 2);
    assert_true(fabs(patch(bone, 214, 194) - patch(bone, 300, 256)) < 10);
    assert_true(patch(bone, 256, 127) > 150);
    free(brain);
    free(bone);
}

static void routine_case_chat_and_receipts(void **state)
{
    (void)state;
    struct principal req;
    struct err e = { 0, "" };
    json_t *c = NULL;
    as("demo-requester", &req);
    assert_int_equal(cases_get(&srv, &req, DEMO_ROUTINE_CASE, &c, &e), 0);
    assert_string_equal(jstr(c, "status"), "answered");
    assert_string_equal(jstr(c, "claimed_by"), "demo-neuro");
    json_t *ans = json_object_get(c, "answer");
    assert_non_null(strstr(jstr(ans, "impression"), "lacunar"));
    assert_string_equal(jstr(ans, "by"), "demo-neuro");

    json_t *msgs = json_object_get(c, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    const char *authors[] = { "demo-neuro", "demo-requester", "demo-neuro" };
    const char *readers[] = { "demo-requester", "demo-neuro",
                              "demo-requester" };
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        assert_string_equal(jstr(m, "author"), authors[i]);
        json_t *read = json_object_get(m, "read_by");
        assert_int_equal(json_array_size(read), 1);
        assert_string_equal(json_string_value(json_array_get(read, 0)),
                            readers[i]);
    }

    /* The key image: the routine study's instance 17, brain window. */
    json_t *img = json_object_get(json_array_get(msgs, 0), "image");
    assert_true(json_is_object(img));
    assert_int_equal(jint(img, "frame", NULL), 1);
    assert_int_equal((int)json_real_value(json_object_get(
                         json_object_get(img, "window"), "width")), 80);
    struct store_scope scope;
    struct store_instance in;
    access_scope(&req, &scope);
    const char *study = json_string_value(json_array_get(
        json_object_get(c, "study_uids"), 0));
    assert_int_equal(store_find_instance(srv.store, &scope, study, NULL,
                                         jstr(img, "sop_uid"), &in, &e), 0);
    struct dcm_info info;
    assert_int_equal(dicom_parse_file(in.path, &info, &e), 0);
    assert_int_equal(info.instance_number, 17);
    assert_string_equal(info.patient_id, "DEMO-0002");
    assert_string_equal(info.modality, "CT");
    json_decref(c);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 over the sorted rows of every table (all columns as text). */
static void db_digest(char out[65])
{
    sqlite3 *db = store_db(srv.store);
    sqlite3_stmt *t, *st;
    char *all = NULL;
    size_t alen = 0;
    FILE *f = open_memstream(&all, &alen);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master"
                                        " WHERE type = 'table' ORDER BY"
                                        " name", -1, &t, NULL), SQLITE_OK);
    while (sqlite3_step(t) == SQLITE_ROW) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"",
                 (const char *)sqlite3_column_text(t, 0));
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL),
                         SQLITE_OK);
        char **rows = NULL;
        size_t n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            char *row = NULL;
            size_t rlen = 0;
            FILE *r = open_memstream(&row, &rlen);
            for (int i = 0; i < sqlite3_column_count(st); i++) {
                const unsigned char *v = sqlite3_column_text(st, i);
                fprintf(r, "%s\x1f", v ? (const char *)v : "NULL");
            }
            fclose(r);
            rows = realloc(rows, (n + 1) * sizeof *rows);
            rows[n++] = row;
        }
        sqlite3_finalize(st);
        qsort(rows, n, sizeof *rows, cmp_str);
        fprintf(f, "%s\n", sql);
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s\n", rows[i]);
            free(rows[i]);
        }
        free(rows);
    }
    sqlite3_finalize(t);
    fclose(f);
    sha256_hex(all, alen, out);
    free(all);
}

static void demo_twice_changes_nothing(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    char before[65], after[65];
    db_digest(before);
    int64_t blobs = tu_run("test $(find '%s/blobs' -type f | wc -l) -eq %d",
                           data, 2 * DEMO_SLICES);
    assert_int_equal(blobs, 0);
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(admin_demo(data, 1, devnull, &e), 0);
    fclose(devnull);
    db_digest(after);
    assert_string_equal(before, after);
    assert_int_equal(tu_run("test $(find '%s/blobs' -type f | wc -l) -eq %d"
                            " && test -z \"$(ls -A '%s/conflicts')\"",
                            data, 2 * DEMO_SLICES, data), 0);
}

static void live_study_is_one_fresh_study(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    char dir[400], uid1[65], uid2[65];
    snprintf(dir, sizeof dir, "%s/live", tmp);
    assert_int_equal(demo_write_live_study(dir, uid1, &e), 0);
    char sops[DEMO_LIVE_SLICES][65];
    for (int i = 0; i < DEMO_LIVE_SLICES; i++) {
        char name[32];
        struct dcm_info info;
        snprintf(name, sizeof name, "CT%04d.dcm", i + 1);
        assert_int_equal(dicom_parse_file(tu_path(dir, name), &info, &e), 0);
        assert_string_equal(info.study_uid, uid1);
        assert_string_equal(info.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        assert_int_equal(info.instance_number, i + 1);
        assert_true(info.has_window);
        assert_true(info.window_center == 40 && info.window_width == 80);
        strcpy(sops[i], info.sop_uid);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(sops[i], sops[j]);
    }
    assert_int_equal(tu_run("test $(ls '%s' | wc -l) -eq %d", dir,
                            DEMO_LIVE_SLICES), 0);
    /* Each run is a new arrival. */
    assert_int_equal(demo_write_live_study(dir, uid2, &e), 0);
    assert_string_not_equal(uid1, uid2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stat_case_first_in_neuro_inbox),
        cmocka_unit_test(middle_slice_windows),
        cmocka_unit_test(routine_case_chat_and_receipts),
        cmocka_unit_test(demo_twice_changes_nothing),
        cmocka_unit_test(live_study_is_one_fresh_study),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
