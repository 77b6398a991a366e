/*
 * test_store — the store: durable put (stored, duplicate, conflict,
 * invalid, too big), the blob layout, recovery after a crash, QIDO-RS
 * filters and paging as DICOM JSON, clinic scoping, and the WAL
 * checkpoint thread.
 *
 * Test files come from tests/tools/gen_study.py (HASHI_TOOLS), made
 * once per run in a scratch dir under HASHI_TESTDATA (or /tmp); each test
 * gets a fresh data dir.
 */
#define _XOPEN_SOURCE 700       /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../proto/dicom.h"
#include "../../proto/log.h"
#include "../../proto/util.h"
#include "../../server/access.h"
#include "../../server/schema.h"
#include "../../server/store.h"
#include "testutil.h"

/* Generated once: study A (2 CT slices + 1 MR instance in a second
 * series, clinic 1), study B (1 CT, clinic 1), study C (1 CT, clinic 2). */
static char g_scratch[1024];
static char g_a[3][4096];     /* A: CT1, CT2, MR1 */
static char g_b[4096], g_c[4096];
static char g_bad_uid[4096], g_no_uid[4096];   /* invalid variants of B */
static char g_a_uid[65], g_b_uid[65], g_c_uid[65];
static char g_a_ct_series[65], g_a_mr_series[65];

struct fx {
    char dir[4096];
    struct store *s;
};

/* ---- helpers ------------------------------------------------------------ */

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

static void first_file(const char *dir, char *out)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    char best[256] = "";
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".dcm") &&
            (!*best || strcmp(de->d_name, best) < 0))
            strlcpy_h(best, de->d_name, sizeof best);
    closedir(d);
    assert_true(*best);
    path_join(out, 4096, dir, best);
}

static void nth_file(const char *dir, int n, char *out)
{
    char name[64];
    snprintf(name, sizeof name, "CT%05d.dcm", n);
    path_join(out, 4096, dir, name);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int nfiles;

static int count_file(const char *p, const struct stat *st, int type,
                      struct FTW *ftw)
{
    (void)p;
    (void)st;
    (void)ftw;
    if (type == FTW_F)
        nfiles++;
    return 0;
}

/* Regular files anywhere under dir. */
static int count_files(const char *dir)
{
    nfiles = 0;
    assert_int_equal(nftw(dir, count_file, 16, FTW_PHYS), 0);
    return nfiles;
}

/* Copy src into a new temp file of the store; path receives its name. */
static void to_tmp(struct store *s, const char *src, char *path)
{
    int fd;
    assert_int_equal(store_tmp_file(s, path, &fd, NULL), 0);
    unsigned char *buf;
    size_t len;
    assert_int_equal(read_file(src, 1 << 30, &buf, &len, NULL), 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(buf);
}

static int put(struct store *s, const char *src, int64_t clinic,
               struct store_result *res, struct err *e)
{
    char tmp[4096];
    to_tmp(s, src, tmp);
    struct store_source from = {"upload", NULL, "tester", "127.0.0.1",
                                clinic};
    int rc = store_put_file(s, tmp, &from, res, e);
    struct stat st;
    assert_int_not_equal(stat(tmp, &st), 0);     /* always taken over */
    return rc;
}

static void put_ok(struct store *s, const char *src, int64_t clinic)
{
    struct store_result r;
    struct err e = {0};
    int rc = put(s, src, clinic, &r, &e);
    if (rc)
        fail_msg("put %s: %s", src, e.msg);
    assert_int_equal(r.outcome, STORE_STORED);
}

static int64_t q_int(struct store *s, const char *sql)
{
    return tu_sql_int(store_db(s), sql);
}

static void q_text(struct store *s, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL),
                     SQLITE_OK);
    *out = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        strlcpy_h(out, (const char *)sqlite3_column_text(st, 0), n);
    sqlite3_finalize(st);
}

static void uid_of(const char *path, char *study, char *series)
{
    struct dcm_info in;
    struct err e = {0};
    if (dicom_parse_file(path, &in, &e))
        fail_msg("parse %s: %s", path, e.msg);
    if (study)
        strlcpy_h(study, in.study_uid, 65);
    if (series)
        strlcpy_h(series, in.series_uid, 65);
}

/* The first Value of attribute tag of a DICOM JSON object, as a string
 * (numbers printed), or "" if absent. */
static const char *jv(json_t *o, const char *tag, char *buf)
{
    json_t *v = json_array_get(json_object_get(json_object_get(o, tag),
                                               "Value"), 0);
    if (json_is_string(v))
        strlcpy_h(buf, json_string_value(v), 128);
    else if (json_is_integer(v))
        snprintf(buf, 128, "%lld", (long long)json_integer_value(v));
    else if (json_is_object(v) && json_object_get(v, "Alphabetic"))
        strlcpy_h(buf, json_string_value(json_object_get(v, "Alphabetic")),
                  128);
    else
        buf[0] = 0;
    return buf;
}

/* The scope access.c gives a caller of this role and clinic. */
static struct store_scope scope_of(const char *role, int64_t clinic)
{
    struct principal p = {0};
    struct store_scope sc;
    strlcpy_h(p.role, role, sizeof p.role);
    p.clinic_id = clinic;
    p.user_id = 5;
    access_scope(&p, &sc);
    return sc;
}

static struct store_scope ADMIN;    /* scope_of("admin", 0), at setup */

/* ---- group setup: generate the studies ---------------------------------- */

static int gen(const char *tools, const char *out, const char *args)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/gen_study.py' --size 64 %s '%s' "
             ">/dev/null",
             tools, args, out);
    return run(cmd);
}

static int group_setup(void **state)
{
    (void)state;
    const char *tools;
    if (tu_dicom_group_setup("test_store", g_scratch, sizeof g_scratch,
                             &tools))
        return -1;
    char a[4096], b[4096], c[4096];
    snprintf(a, sizeof a, "%s/a", g_scratch);
    snprintf(b, sizeof b, "%s/b", g_scratch);
    snprintf(c, sizeof c, "%s/c", g_scratch);
    /* Dates: gen_study uses 2024-01-01 09:00 + (seed % 100000) minutes:
     * A 2024-01-01, B 2024-02-10, C 2024-03-09. */
    if (gen(tools, a, "--slices 2 --seed 1 --patient-id PA "
                      "--patient-name 'DOE^JANE'") ||
        gen(tools, b, "--slices 1 --seed 57600 --patient-id PB "
                      "--patient-name 'ROE^RICHARD'") ||
        gen(tools, c, "--slices 1 --seed 99000 --patient-id PX-7 "
                      "--patient-name 'SMITH^ANNA'"))
        return -1;
    nth_file(a, 1, g_a[0]);
    nth_file(a, 2, g_a[1]);
    first_file(b, g_b);
    first_file(c, g_c);
    /* A second series in study A: an MR instance (pydicom). */
    snprintf(g_a[2], sizeof g_a[2], "%s/a/MR00001.dcm", g_scratch);
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import pydicom,sys;"
             "d=pydicom.dcmread(sys.argv[1]);"
             "d.Modality='MR';d.SeriesNumber=3;"
             "d.SeriesInstanceUID=d.SeriesInstanceUID+'.9';"
             "d.SOPInstanceUID=d.SOPInstanceUID+'.9';"
             "d.file_meta.MediaStorageSOPInstanceUID=d.SOPInstanceUID;"
             "d.save_as(sys.argv[2])\" '%s' '%s'",
             g_a[0], g_a[2]);
    if (run(cmd))
        return -1;
    /* B with a SOP Instance UID that is a path, and without one. */
    snprintf(g_bad_uid, sizeof g_bad_uid, "%s/b/baduid.dcm", g_scratch);
    snprintf(g_no_uid, sizeof g_no_uid, "%s/b/nouid.dcm", g_scratch);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import pydicom,sys;"
             "d=pydicom.dcmread(sys.argv[1]);"
             "d.SOPInstanceUID='1.2.3/../../etc';"
             "d.save_as(sys.argv[2]);"
             "del d.SOPInstanceUID;"
             "d.save_as(sys.argv[3])\" '%s' '%s' '%s' 2>/dev/null",
             g_b, g_bad_uid, g_no_uid);
    if (run(cmd))
        return -1;
    uid_of(g_a[0], g_a_uid, g_a_ct_series);
    uid_of(g_a[2], NULL, g_a_mr_series);
    uid_of(g_b, g_b_uid, NULL);
    uid_of(g_c, g_c_uid, NULL);
    ADMIN = scope_of("admin", 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return tu_dicom_group_teardown(g_scratch);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/data.XXXXXX", g_scratch);
    assert_non_null(mkdtemp(f->dir));
    struct err e = {0};
    f->s = store_open(f->dir, &e);
    if (!f->s)
        fail_msg("store_open: %s", e.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static void sub(const struct fx *f, const char *name, char *out)
{
    path_join(out, 4096, f->dir, name);
}

/* ---- tests: the database ------------------------------------------------ */

static void test_schema_and_pragmas(void **state)
{
    struct fx *f = *state;
    assert_int_equal(q_int(f->s, "PRAGMA user_version"), schema_version());
    assert_true(schema_version() >= 1);
    char mode[32];
    q_text(f->s, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "wal");
    assert_int_equal(q_int(f->s, "PRAGMA synchronous"), 2);   /* FULL */
    assert_int_equal(q_int(f->s, "PRAGMA foreign_keys"), 1);
    /* Re-opening migrates nothing and keeps the version. */
    struct err e = {0};
    struct store *again = store_open(f->dir, &e);
    assert_non_null(again);
    assert_int_equal(q_int(again, "PRAGMA user_version"), schema_version());
    store_close(again);
    /* A database from the future is refused, not damaged. */
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d",
             schema_version() + 1);
    assert_int_equal(sqlite3_exec(store_db(f->s), sql, 0, 0, 0), SQLITE_OK);
    assert_null(store_open(f->dir, &e));
    assert_int_equal(e.code, ERR_UNSUPPORTED);
}

/* Every table is made by schema.c's migrations: a store just opened has
 * the consult tables (cases, outboxes, kept replies) without any module
 * having run; a database of version 4 whose cases/outbox tables an older
 * hashi-server made itself is brought up to date with its rows kept. */
static void test_schema_makes_every_table(void **state)
{
    struct fx *f = *state;
    static const char *const tables[] = {
        "cases", "case_studies", "case_participants", "messages",
        "message_receipts", "answers", "oncall", "outbox", "outbox_cursor",
        "request_replies",
    };
    char sql[160];
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM sqlite_master"
                 " WHERE type = 'table' AND name = '%s'", tables[i]);
        if (q_int(f->s, sql) != 1)
            fail_msg("no table %s after store_open", tables[i]);
    }

    char path[4096];
    sub(f, "old.db", path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    struct err e = {0};
    /* Version 4 with the tables as cases.c and outbox.c used to make
     * them, with a row each. */
    assert_int_equal(schema_migrate_to(db, 4, &e), 0);
    assert_int_equal(sqlite3_exec(
        db, "CREATE TABLE cases (case_id TEXT PRIMARY KEY, clinic_id INTEGER"
        " NOT NULL, requester_id INTEGER, patient_age INTEGER, patient_sex"
        " TEXT, history TEXT NOT NULL DEFAULT '', question TEXT NOT NULL,"
        " priority TEXT NOT NULL, specialty TEXT, specialist_id INTEGER,"
        " status TEXT NOT NULL, claimed_by INTEGER, created_at INTEGER NOT"
        " NULL, updated_at INTEGER NOT NULL, due_at INTEGER NOT NULL"
        " DEFAULT 0, escalation_level INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO cases (case_id, clinic_id, question, priority, status,"
        " created_at, updated_at) VALUES ('old', 1, 'q', 'stat', 'new', 1,"
        " 1);"
        "CREATE TABLE outbox (user_id INTEGER NOT NULL, seq INTEGER NOT"
        " NULL, event_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, case_id"
        " TEXT, at INTEGER NOT NULL, body TEXT NOT NULL,"
        " PRIMARY KEY (user_id, seq));"
        "CREATE TABLE outbox_cursor (user_id INTEGER PRIMARY KEY, last_seq"
        " INTEGER NOT NULL DEFAULT 0, acked_seq INTEGER NOT NULL DEFAULT"
        " 0);"
        "INSERT INTO outbox_cursor VALUES (7, 3, 2);", 0, 0, 0),
        SQLITE_OK);
    assert_int_equal(schema_migrate(db, &e), 0);
    assert_int_equal(tu_sql_int(db, "PRAGMA user_version"),
                     schema_version());
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM cases"
                                    " WHERE case_id = 'old'"), 1);
    assert_int_equal(tu_sql_int(db, "SELECT last_seq FROM outbox_cursor"
                                    " WHERE user_id = 7"), 3);
    assert_int_equal(tu_sql_int(db, "SELECT COUNT(*) FROM sqlite_master"
                                    " WHERE name = 'request_replies'"), 1);
    sqlite3_close(db);
}

/* ---- tests: put --------------------------------------------------------- */

static void test_put_stores_blob_and_index(void **state)
{
    struct fx *f = *state;
    struct store_result r;
    struct err e = {0};
    assert_int_equal(put(f->s, g_a[0], 1, &r, &e), 0);
    assert_int_equal(r.outcome, STORE_STORED);

    char want[65];
    uint64_t size;
    assert_int_equal(sha256_file(g_a[0], want, &size, NULL), 0);
    assert_string_equal(r.sha256, want);
    assert_int_equal(r.size, size);
    assert_string_equal(r.info.study_uid, g_a_uid);

    /* blobs/ab/cd/<sha>, byte-identical */
    char blob[4096], rel[128], got[65];
    snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", want, want + 2, want);
    sub(f, rel, blob);
    uint64_t bsize;
    assert_int_equal(sha256_file(blob, got, &bsize, NULL), 0);
    assert_string_equal(got, want);
    assert_int_equal(bsize, size);

    /* index rows */
    char sql[512], text[128];
    snprintf(sql, sizeof sql,
             "SELECT sha256 FROM instances WHERE sop_uid = '%s'",
             r.info.sop_uid);
    q_text(f->s, sql, text, sizeof text);
    assert_string_equal(text, want);
    snprintf(sql, sizeof sql,
             "SELECT size FROM instances WHERE sop_uid = '%s'",
             r.info.sop_uid);
    assert_int_equal(q_int(f->s, sql), (int64_t)size);
    q_text(f->s, "SELECT via || '/' || user || '/' || remote "
                 "FROM instances", text, sizeof text);
    assert_string_equal(text, "upload/tester/127.0.0.1");
    assert_int_equal(q_int(f->s, "SELECT clinic_id FROM studies"), 1);
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM studies"), 1);
    assert_int_equal(q_int(f->s, "SELECT num_series FROM studies"), 1);
    q_text(f->s, "SELECT modalities FROM studies", text, sizeof text);
    assert_string_equal(text, "CT");
    q_text(f->s, "SELECT name FROM patients", text, sizeof text);
    assert_string_equal(text, "DOE^JANE");
    assert_int_equal(q_int(f->s, "SELECT rows FROM instances"), 64);

    /* second slice and an MR series: counts and modalities follow */
    put_ok(f->s, g_a[1], 1);
    put_ok(f->s, g_a[2], 1);
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM studies"), 3);
    assert_int_equal(q_int(f->s, "SELECT num_series FROM studies"), 2);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM patients"), 1);
    q_text(f->s, "SELECT modalities FROM studies", text, sizeof text);
    assert_string_equal(text, "CT\\MR");
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM series "
                                 "WHERE modality = 'CT'"), 2);

    char tmp[4096];
    sub(f, "tmp", tmp);
    assert_int_equal(count_entries(tmp), 0);
}

static void test_put_duplicate_is_noop(void **state)
{
    struct fx *f = *state;
    struct store_result r;
    struct err e = {0};
    put_ok(f->s, g_b, 1);
    assert_int_equal(put(f->s, g_b, 1, &r, &e), 0);
    assert_int_equal(r.outcome, STORE_DUPLICATE);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 1);
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM studies"), 1);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM conflicts"), 0);
    char tmp[4096];
    sub(f, "tmp", tmp);
    assert_int_equal(count_entries(tmp), 0);
}

static void test_put_conflict_keeps_original(void **state)
{
    struct fx *f = *state;
    struct store_result r;
    struct err e = {0};
    put_ok(f->s, g_b, 1);
    char orig_sha[65];
    assert_int_equal(sha256_file(g_b, orig_sha, NULL, NULL), 0);

    /* Same UIDs, one pixel changed: flip the last byte of pixel data. */
    char changed[4096];
    sub(f, "changed.dcm", changed);
    unsigned char *buf;
    size_t len;
    assert_int_equal(read_file(g_b, 1 << 30, &buf, &len, NULL), 0);
    buf[len - 1] ^= 0x01;
    assert_int_equal(write_file_durable(changed, buf, len, 0600, NULL), 0);
    free(buf);
    char new_sha[65];
    assert_int_equal(sha256_file(changed, new_sha, NULL, NULL), 0);
    assert_string_not_equal(new_sha, orig_sha);

    assert_int_equal(put(f->s, changed, 1, &r, &e), 0);
    assert_int_equal(r.outcome, STORE_CONFLICT);
    assert_string_equal(r.sha256, new_sha);

    /* the index and the blob still hold the original */
    char text[4400], blob[4096], rel[128], got[65];
    q_text(f->s, "SELECT sha256 FROM instances", text, sizeof text);
    assert_string_equal(text, orig_sha);
    snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", orig_sha, orig_sha + 2,
             orig_sha);
    sub(f, rel, blob);
    assert_int_equal(sha256_file(blob, got, NULL, NULL), 0);
    assert_string_equal(got, orig_sha);
    /* the new copy is kept aside, and recorded */
    snprintf(rel, sizeof rel, "conflicts/%s", new_sha);
    sub(f, rel, blob);
    assert_int_equal(sha256_file(blob, got, NULL, NULL), 0);
    assert_string_equal(got, new_sha);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM conflicts"), 1);
    q_text(f->s, "SELECT existing_sha256 || ' ' || new_sha256 || ' ' || path"
                 " FROM conflicts", text, sizeof text);
    char want[4400];
    snprintf(want, sizeof want, "%s %s %s", orig_sha, new_sha, blob);
    assert_string_equal(text, want);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 1);
    /* no blob was written for the conflicting copy */
    char rel2[128];
    snprintf(rel2, sizeof rel2, "blobs/%.2s/%.2s/%s", new_sha, new_sha + 2,
             new_sha);
    sub(f, rel2, blob);
    struct stat st;
    assert_int_not_equal(stat(blob, &st), 0);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    assert_int_equal(write_file_durable(path, p, n, 0600, NULL), 0);
}

static void test_put_invalid_rejected(void **state)
{
    struct fx *f = *state;
    struct store_result r;
    struct err e = {0};
    char bad[4096];
    sub(f, "bad.dcm", bad);

    /* truncated inside the header */
    unsigned char *buf;
    size_t len;
    assert_int_equal(read_file(g_b, 1 << 30, &buf, &len, NULL), 0);
    write_bytes(bad, buf, 300);
    memset(&e, 0, sizeof e);
    assert_int_equal(put(f->s, bad, 1, &r, &e), ERR_INVALID);
    assert_true(e.msg[0] != 0);

    /* random bytes */
    for (size_t i = 0; i < 4096; i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    write_bytes(bad, buf, 4096);
    assert_int_equal(put(f->s, bad, 1, &r, &e), ERR_INVALID);

    /* empty */
    write_bytes(bad, "", 0);
    assert_int_equal(put(f->s, bad, 1, &r, &e), ERR_INVALID);
    free(buf);

    /* a UID that is a path; no SOP Instance UID at all */
    assert_int_equal(put(f->s, g_bad_uid, 1, &r, &e), ERR_INVALID);
    assert_int_equal(e.code, ERR_INVALID);
    assert_int_equal(put(f->s, g_no_uid, 1, &r, &e), ERR_INVALID);

    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 0);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM studies"), 0);
    char d[4096];
    sub(f, "tmp", d);
    assert_int_equal(count_entries(d), 0);
    sub(f, "blobs", d);
    assert_int_equal(count_files(d), 0);
}

static void test_put_too_big(void **state)
{
    struct fx *f = *state;
    struct store_result r;
    struct err e = {0};
    store_set_max_instance(f->s, 1000);
    assert_int_equal(put(f->s, g_b, 1, &r, &e), ERR_TOOBIG);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 0);
    store_set_max_instance(f->s, 0);        /* back to the default */
    put_ok(f->s, g_b, 1);
}

static void test_put_reuses_orphan_blob(void **state)
{
    struct fx *f = *state;
    /* A blob left by a crash before its index commit: same bytes again
     * are indexed against it. */
    char sha[65], rel[128], blob[4096], dir[4096];
    assert_int_equal(sha256_file(g_b, sha, NULL, NULL), 0);
    snprintf(rel, sizeof rel, "blobs/%.2s/%.2s", sha, sha + 2);
    sub(f, rel, dir);
    assert_int_equal(mkdir_p(dir, 0700), 0);
    snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", sha, sha + 2, sha);
    sub(f, rel, blob);
    unsigned char *buf;
    size_t len;
    assert_int_equal(read_file(g_b, 1 << 30, &buf, &len, NULL), 0);
    write_bytes(blob, buf, len);
    free(buf);
    put_ok(f->s, g_b, 1);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 1);
    char got[65];
    assert_int_equal(sha256_file(blob, got, NULL, NULL), 0);
    assert_string_equal(got, sha);
}

/* ---- tests: two writers at once ----------------------------------------- */

struct racer {
    char dir[4096];
    const char *file;
    int64_t clinic;             /* the writer's */
    pthread_barrier_t *go;
    int rc;
    struct store_result res;
};

static void *race_put(void *arg)
{
    struct racer *r = arg;
    struct err e = {0};
    struct store *s = store_open(r->dir, &e);     /* one per thread */
    if (!s) {
        r->rc = e.code ? e.code : -100;
        return NULL;
    }
    char tmp[4096];
    to_tmp(s, r->file, tmp);
    pthread_barrier_wait(r->go);
    struct store_source from = {"dimse", "RACE", NULL, NULL, r->clinic};
    r->rc = store_put_file(s, tmp, &from, &r->res, &e);
    store_close(s);
    return NULL;
}

/* Put files[i] as clinics[i] from two threads (a store handle each) at
 * the same moment into the store in dir; results in r.  Returns a third
 * handle on that store, opened (and so created) before the race, for the
 * caller's checks; the caller closes it. */
static struct store *race_two(const char *dir, const char *files[2],
                              const int64_t clinics[2], struct racer r[2])
{
    pthread_barrier_t go;
    pthread_t th[2];
    pthread_barrier_init(&go, NULL, 2);
    for (int i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        strlcpy_h(r[i].dir, dir, sizeof r[i].dir);
        r[i].file = files[i];
        r[i].clinic = clinics[i];
        r[i].go = &go;
    }
    struct err e = {0};
    struct store *s = store_open(dir, &e);
    assert_non_null(s);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_put, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    return s;
}

/* The same SOP Instance UID from two threads at the same moment, with the
 * same bytes and with different bytes: exactly one copy is indexed, the
 * other is a duplicate or a recorded conflict, whoever wins. */
static void test_concurrent_same_uid(void **state)
{
    struct fx *f = *state;
    char changed[4096];
    sub(f, "changed.dcm", changed);
    unsigned char *buf;
    size_t len;
    assert_int_equal(read_file(g_b, 1 << 30, &buf, &len, NULL), 0);
    buf[len - 1] ^= 0x01;
    write_bytes(changed, buf, len);
    free(buf);

    for (int round = 0; round < 8; round++) {
        int same = round % 2 == 0;
        char dir[4096], name[32];
        snprintf(name, sizeof name, "race%d", round);
        sub(f, name, dir);
        struct racer r[2];
        const char *files[2] = { g_b, same ? g_b : changed };
        const int64_t clinics[2] = { 1, 1 };
        struct store *s = race_two(dir, files, clinics, r);
        assert_int_equal(r[0].rc, 0);
        assert_int_equal(r[1].rc, 0);
        int stored = (r[0].res.outcome == STORE_STORED) +
                     (r[1].res.outcome == STORE_STORED);
        assert_int_equal(stored, 1);
        struct store_result *win = r[0].res.outcome == STORE_STORED
                                       ? &r[0].res : &r[1].res;
        struct store_result *lose = win == &r[0].res ? &r[1].res : &r[0].res;
        assert_int_equal(lose->outcome,
                         same ? STORE_DUPLICATE : STORE_CONFLICT);
        char text[128];
        q_text(s, "SELECT sha256 FROM instances", text, sizeof text);
        assert_string_equal(text, win->sha256);
        assert_int_equal(q_int(s, "SELECT count(*) FROM instances"), 1);
        assert_int_equal(q_int(s, "SELECT num_instances FROM studies"), 1);
        assert_int_equal(q_int(s, "SELECT count(*) FROM conflicts"),
                         same ? 0 : 1);
        /* the winner's blob is intact; the loser's bytes are not in
         * blobs/ but in conflicts/ */
        char path[4096], rel[160], got[65];
        snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", win->sha256,
                 win->sha256 + 2, win->sha256);
        path_join(path, sizeof path, dir, rel);
        assert_int_equal(sha256_file(path, got, NULL, NULL), 0);
        assert_string_equal(got, win->sha256);
        if (!same) {
            struct stat st;
            snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", lose->sha256,
                     lose->sha256 + 2, lose->sha256);
            path_join(path, sizeof path, dir, rel);
            assert_int_not_equal(stat(path, &st), 0);
            snprintf(rel, sizeof rel, "conflicts/%s", lose->sha256);
            path_join(path, sizeof path, dir, rel);
            assert_int_equal(sha256_file(path, got, NULL, NULL), 0);
            assert_string_equal(got, lose->sha256);
        }
        store_close(s);
    }
}

/* An instance whose study, series or SOP Instance UID is another
 * clinic's is refused (ERR_FORBIDDEN, "refused..."), whatever the bytes,
 * and changes nothing: no row, no count, no blob, no conflict.  Clinic 0
 * ("none", unmapped AEs) is a clinic of its own either way.  The owner
 * still adds to its study. */
static void test_put_other_clinic_refused(void **state)
{
    struct fx *f = *state;
    struct store_result r;
    struct err e = {0};
    char blobs[4096], tmp[4096];
    sub(f, "blobs", blobs);
    sub(f, "tmp", tmp);

    put_ok(f->s, g_a[0], 1);
    int nblobs = count_files(blobs);
    struct {
        const char *file;       /* what clinic `clinic` sends */
        int64_t clinic;
    } tries[] = {
        { g_a[1], 2 },          /* A's study and series */
        { g_a[2], 2 },          /* a new series in A's study */
        { g_a[0], 2 },          /* A's very file (its SOP UID) */
        { g_a[1], 0 },          /* an unmapped AE */
    };
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        e = (struct err){0};
        assert_int_equal(put(f->s, tries[i].file, tries[i].clinic, &r, &e),
                         ERR_FORBIDDEN);
        assert_true(!strncmp(e.msg, "refused", 7));
        assert_string_equal(r.info.study_uid, g_a_uid);
    }
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 1);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM series"), 1);
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM studies"), 1);
    assert_int_equal(q_int(f->s, "SELECT clinic_id FROM studies"), 1);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM conflicts"), 0);
    assert_int_equal(count_files(blobs), nblobs);
    assert_int_equal(count_entries(tmp), 0);

    /* clinic 0's study is no clinic's to add to, and 0 adds to it */
    put_ok(f->s, g_c, 0);
    assert_int_equal(put(f->s, g_c, 2, &r, &e), ERR_FORBIDDEN);
    assert_int_equal(put(f->s, g_c, 0, &r, &e), 0);
    assert_int_equal(r.outcome, STORE_DUPLICATE);

    /* the owner goes on */
    put_ok(f->s, g_a[1], 1);
    put_ok(f->s, g_a[2], 1);
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM studies"
                                 " WHERE clinic_id = 1"), 3);
}

/* Two clinics start the same new study at the same moment, from two
 * store handles: the check and the insert are one transaction, so exactly
 * one clinic owns the study and only its instance is in it. */
static void test_concurrent_other_clinic(void **state)
{
    struct fx *f = *state;
    for (int round = 0; round < 8; round++) {
        char dir[4096], name[32];
        snprintf(name, sizeof name, "xrace%d", round);
        sub(f, name, dir);
        struct racer r[2];
        const char *files[2] = { g_a[0], g_a[1] };  /* same study, series */
        const int64_t clinics[2] = { 1, 2 };
        struct store *s = race_two(dir, files, clinics, r);
        int win = r[0].rc == 0 ? 0 : 1;
        assert_int_equal(r[win].rc, 0);
        assert_int_equal(r[win].res.outcome, STORE_STORED);
        assert_int_equal(r[!win].rc, ERR_FORBIDDEN);
        assert_int_equal(q_int(s, "SELECT count(*) FROM instances"), 1);
        assert_int_equal(q_int(s, "SELECT num_instances FROM studies"), 1);
        assert_int_equal(q_int(s, "SELECT clinic_id FROM studies"),
                         r[win].clinic);
        assert_int_equal(q_int(s, "SELECT clinic_id FROM instances"),
                         r[win].clinic);
        store_close(s);
    }
}

/* Two store handles (two threads, as the DICOM listener and a STOW-RS
 * worker) putting the same five instances at once, in opposite orders:
 * each instance is stored once and reported a duplicate once, whoever
 * wins; the index counts are right; every file under blobs/ has the
 * bytes its name says; tmp/ is empty.  Each put runs its fsyncs on its
 * store's helper threads, so this also exercises those side by side. */
struct many {
    char dir[4096];
    const char *files[5];
    int reverse;
    pthread_barrier_t *go;
    int rc[5];                  /* by file index */
    int outcome[5];
    char err[320];
};

static void *many_put(void *arg)
{
    struct many *m = arg;
    struct err e = {0};
    struct store *s = store_open(m->dir, &e);
    char tmp[5][4096];

    for (int i = 0; i < 5; i++)
        m->rc[i] = -100;
    if (!s) {
        snprintf(m->err, sizeof m->err, "open: %s", e.msg);
        pthread_barrier_wait(m->go);
        return NULL;
    }
    for (int i = 0; i < 5; i++) {       /* no asserts off the test thread */
        unsigned char *buf;
        size_t len;
        int fd;
        if (store_tmp_file(s, tmp[i], &fd, &e) ||
            read_file(m->files[i], 1 << 30, &buf, &len, &e)) {
            snprintf(m->err, sizeof m->err, "tmp: %.256s", e.msg);
            break;
        }
        if (write(fd, buf, len) != (ssize_t)len)
            snprintf(m->err, sizeof m->err, "write failed");
        close(fd);
        free(buf);
    }
    pthread_barrier_wait(m->go);
    for (int k = 0; k < 5 && !m->err[0]; k++) {
        int i = m->reverse ? 4 - k : k;
        struct store_source from = {"stow", NULL, "racer", NULL, 1};
        struct store_result res;
        m->rc[i] = store_put_file(s, tmp[i], &from, &res, &e);
        m->outcome[i] = res.outcome;
        if (m->rc[i])
            snprintf(m->err, sizeof m->err, "put %d: %.256s", i, e.msg);
    }
    store_close(s);
    return NULL;
}

/* Every file under dir/blobs/ab/cd/ is named by the SHA-256 of its bytes
 * and sits in the right fan-out directories; returns how many. */
static int check_blobs_named_by_content(const char *dir)
{
    char blobs[4096];
    int n = 0;
    path_join(blobs, sizeof blobs, dir, "blobs");
    DIR *d1 = opendir(blobs);
    assert_non_null(d1);
    struct dirent *a;
    while ((a = readdir(d1))) {
        if (a->d_name[0] == '.')
            continue;
        char p1[4096];
        path_join(p1, sizeof p1, blobs, a->d_name);
        DIR *d2 = opendir(p1);
        assert_non_null(d2);
        struct dirent *b;
        while ((b = readdir(d2))) {
            if (b->d_name[0] == '.')
                continue;
            char p2[4096];
            path_join(p2, sizeof p2, p1, b->d_name);
            DIR *d3 = opendir(p2);
            assert_non_null(d3);
            struct dirent *c;
            while ((c = readdir(d3))) {
                if (c->d_name[0] == '.')
                    continue;
                char p3[4096], got[65];
                path_join(p3, sizeof p3, p2, c->d_name);
                assert_int_equal(sha256_file(p3, got, NULL, NULL), 0);
                assert_string_equal(got, c->d_name);
                assert_memory_equal(got, a->d_name, 2);
                assert_memory_equal(got + 2, b->d_name, 2);
                n++;
            }
            closedir(d3);
        }
        closedir(d2);
    }
    closedir(d1);
    return n;
}

static void test_concurrent_distinct(void **state)
{
    struct fx *f = *state;
    const char *files[5] = {g_a[0], g_a[1], g_a[2], g_b, g_c};

    for (int round = 0; round < 4; round++) {
        char dir[4096], name[32];
        snprintf(name, sizeof name, "many%d", round);
        sub(f, name, dir);
        struct err e = {0};
        struct store *s = store_open(dir, &e);
        assert_non_null(s);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct many m[2];
        pthread_t th[2];
        for (int t = 0; t < 2; t++) {
            memset(&m[t], 0, sizeof m[t]);
            strlcpy_h(m[t].dir, dir, sizeof m[t].dir);
            memcpy(m[t].files, files, sizeof files);
            m[t].reverse = t;
            m[t].go = &go;
            assert_int_equal(pthread_create(&th[t], NULL, many_put, &m[t]),
                             0);
        }
        for (int t = 0; t < 2; t++)
            pthread_join(th[t], NULL);
        pthread_barrier_destroy(&go);
        for (int t = 0; t < 2; t++)
            if (m[t].err[0])
                fail_msg("thread %d: %s", t, m[t].err);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(m[0].rc[i], 0);
            assert_int_equal(m[1].rc[i], 0);
            int stored = (m[0].outcome[i] == STORE_STORED) +
                         (m[1].outcome[i] == STORE_STORED);
            int dup = (m[0].outcome[i] == STORE_DUPLICATE) +
                      (m[1].outcome[i] == STORE_DUPLICATE);
            assert_int_equal(stored, 1);
            assert_int_equal(dup, 1);
        }
        assert_int_equal(q_int(s, "SELECT count(*) FROM instances"), 5);
        assert_int_equal(q_int(s, "SELECT count(*) FROM studies"), 3);
        assert_int_equal(q_int(s, "SELECT sum(num_instances) FROM studies"),
                         5);
        assert_int_equal(q_int(s, "SELECT sum(num_instances) FROM series"),
                         5);
        assert_int_equal(q_int(s, "SELECT count(*) FROM conflicts"), 0);
        assert_int_equal(check_blobs_named_by_content(dir), 5);
        char tmp[4096];
        path_join(tmp, sizeof tmp, dir, "tmp");
        assert_int_equal(count_entries(tmp), 0);
        store_close(s);
    }
}

/* ---- tests: recovery ---------------------------------------------------- */

static void test_recover(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        put_ok(f->s, g_a[i], 1);
    put_ok(f->s, g_b, 1);

    /* leftovers of a crash: two temp files */
    char p[4096];
    int fd;
    assert_int_equal(store_tmp_file(f->s, p, &fd, NULL), 0);
    assert_int_equal(write(fd, "partial", 7), 7);
    close(fd);
    assert_int_equal(store_tmp_file(f->s, p, &fd, NULL), 0);
    close(fd);

    /* a lost blob: the MR instance (the only one of its series) */
    char sha[65], rel[128], blob[4096];
    assert_int_equal(sha256_file(g_a[2], sha, NULL, NULL), 0);
    snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", sha, sha + 2, sha);
    sub(f, rel, blob);
    assert_int_equal(unlink(blob), 0);
    /* and one of the wrong size: study B's only instance */
    assert_int_equal(sha256_file(g_b, sha, NULL, NULL), 0);
    snprintf(rel, sizeof rel, "blobs/%.2s/%.2s/%s", sha, sha + 2, sha);
    sub(f, rel, blob);
    assert_int_equal(truncate(blob, 100), 0);

    store_close(f->s);
    int fixed = -1;
    struct err e = {0};
    assert_int_equal(store_recover(f->dir, &fixed, &e), 0);
    assert_int_equal(fixed, 4);
    f->s = store_open(f->dir, &e);
    assert_non_null(f->s);

    sub(f, "tmp", p);
    assert_int_equal(count_entries(p), 0);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM instances"), 2);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM series"), 1);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM studies"), 1);
    assert_int_equal(q_int(f->s, "SELECT num_instances FROM studies"), 2);
    assert_int_equal(q_int(f->s, "SELECT num_series FROM studies"), 1);
    char text[64];
    q_text(f->s, "SELECT modalities FROM studies", text, sizeof text);
    assert_string_equal(text, "CT");

    /* a second run finds nothing to do */
    store_close(f->s);
    assert_int_equal(store_recover(f->dir, &fixed, &e), 0);
    assert_int_equal(fixed, 0);
    f->s = store_open(f->dir, &e);
    assert_non_null(f->s);
    /* and the lost instance can be sent again */
    put_ok(f->s, g_a[2], 1);
}

/* ---- tests: QIDO -------------------------------------------------------- */

static void load_all(struct store *s)
{
    for (int i = 0; i < 3; i++)
        put_ok(s, g_a[i], 1);
    put_ok(s, g_b, 1);
    put_ok(s, g_c, 2);
}


/* QIDO studies with q; returns the number of results and the study UIDs
 * joined by spaces in uids (may be NULL). */
static int studies(struct store *s, const struct store_scope *sc,
                   const struct store_query *q, char *uids)
{
    json_t *out = NULL;
    struct err e = {0};
    int rc = store_qido_studies(s, sc, q, &out, &e);
    if (rc)
        fail_msg("qido studies: %s", e.msg);
    assert_true(json_is_array(out));
    if (uids) {
        uids[0] = 0;
        size_t i;
        json_t *o;
        char buf[128];
        json_array_foreach(out, i, o) {
            strcat(uids, i ? " " : "");
            strcat(uids, jv(o, "0020000D", buf));
        }
    }
    int n = (int)json_array_size(out);
    json_decref(out);
    return n;
}

static void test_qido_studies_json(void **state)
{
    struct fx *f = *state;
    load_all(f->s);
    struct store_query q = {0};
    q.study_uid = g_a_uid;
    json_t *out = NULL;
    assert_int_equal(store_qido_studies(f->s, &ADMIN, &q, &out, NULL), 0);
    assert_int_equal(json_array_size(out), 1);
    json_t *o = json_array_get(out, 0);
    char buf[128];
    assert_string_equal(jv(o, "0020000D", buf), g_a_uid);
    assert_string_equal(jv(o, "00100010", buf), "DOE^JANE");
    assert_string_equal(jv(o, "00100020", buf), "PA");
    assert_string_equal(jv(o, "00080020", buf), "20240101");
    assert_string_equal(jv(o, "00080030", buf), "090100");
    assert_string_equal(jv(o, "00080050", buf), "ACC0000001");
    assert_string_equal(jv(o, "00201206", buf), "2");
    assert_string_equal(jv(o, "00201208", buf), "3");
    /* exact Annex F shapes */
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "00100010"),
                                          "vr")), "PN");
    json_t *mods = json_object_get(json_object_get(o, "00080061"), "Value");
    assert_int_equal(json_array_size(mods), 2);
    assert_string_equal(json_string_value(json_array_get(mods, 0)), "CT");
    assert_string_equal(json_string_value(json_array_get(mods, 1)), "MR");
    json_t *n = json_array_get(
        json_object_get(json_object_get(o, "00201208"), "Value"), 0);
    assert_true(json_is_integer(n));
    char *dump = json_dumps(json_object_get(o, "00100010"),
                            JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(dump,
                        "{\"Value\":[{\"Alphabetic\":\"DOE^JANE\"}],"
                        "\"vr\":\"PN\"}");
    free(dump);
    json_decref(out);
}

static void test_qido_study_filters(void **state)
{
    struct fx *f = *state;
    load_all(f->s);
    char uids[1024], want[1024];
    struct store_query q = {0};

    /* all, newest first */
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 3);
    snprintf(want, sizeof want, "%s %s %s", g_c_uid, g_b_uid, g_a_uid);
    assert_string_equal(uids, want);

    /* PatientID: exact, ?, * */
    q = (struct store_query){.patient_id = "PB"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_b_uid);
    q = (struct store_query){.patient_id = "P?"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 2);
    q = (struct store_query){.patient_id = "PX*"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_c_uid);
    q = (struct store_query){.patient_id = "pb"};       /* IDs: exact case */
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);
    q = (struct store_query){.patient_id = "P"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);

    /* PatientName: wildcards, case-insensitive */
    q = (struct store_query){.patient_name = "doe*"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_a_uid);
    q = (struct store_query){.patient_name = "*^RICHARD"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_b_uid);
    q = (struct store_query){.patient_name = "DOE"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);
    q = (struct store_query){.patient_name = "%"};     /* literal, not SQL */
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);

    /* StudyDate: A 20240101, B 20240210, C 20240309 */
    q = (struct store_query){.study_date = "20240101"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_a_uid);
    q = (struct store_query){.study_date = "20240101-20240301"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 2);
    q = (struct store_query){.study_date = "-20240115"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_a_uid);
    q = (struct store_query){.study_date = "20240301-"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_c_uid);
    q = (struct store_query){.study_date = "20240211-20240308"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);
    const char *bad[] = {"2024", "-", "2024010a", "20240101-2024",
                         "20240101--20240102"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *out = NULL;
        struct err e = {0};
        q = (struct store_query){.study_date = bad[i]};
        assert_int_equal(store_qido_studies(f->s, &ADMIN, &q, &out, &e),
                         ERR_INVALID);
        assert_null(out);
    }

    /* ModalitiesInStudy, AccessionNumber, UID lists */
    q = (struct store_query){.modality = "MR"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_a_uid);
    q = (struct store_query){.modality = "CT"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 3);
    q = (struct store_query){.modality = "US,MR"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 1);
    q = (struct store_query){.accession = "ACC0057600"};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_b_uid);
    char list[200];
    snprintf(list, sizeof list, "%s,%s", g_a_uid, g_c_uid);
    q = (struct store_query){.study_uid = list};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 2);
    snprintf(want, sizeof want, "%s %s", g_c_uid, g_a_uid);
    assert_string_equal(uids, want);

    /* combined */
    q = (struct store_query){.patient_id = "P*", .study_date = "20240201-"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 2);

    /* injection attempts are just values */
    q = (struct store_query){.patient_id = "' OR 1=1 --"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);
    q = (struct store_query){.patient_name = "x' OR '1'='1"};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);
}

static void test_qido_paging(void **state)
{
    struct fx *f = *state;
    load_all(f->s);
    char uids[1024];
    struct store_query q = {.limit = 1, .offset = 1};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_b_uid);
    q = (struct store_query){.limit = 2, .offset = 2};
    assert_int_equal(studies(f->s, &ADMIN, &q, uids), 1);
    assert_string_equal(uids, g_a_uid);
    q = (struct store_query){.offset = 3};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 0);
    q = (struct store_query){.limit = 5000};                /* capped */
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 3);
    q = (struct store_query){.offset = -1};
    json_t *out = NULL;
    assert_int_equal(store_qido_studies(f->s, &ADMIN, &q, &out, NULL),
                     ERR_INVALID);

    /* the default limit is 100 and the cap 1000: many fake studies */
    sqlite3 *db = store_db(f->s);
    assert_int_equal(sqlite3_exec(db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
        " WHERE i < 1200) INSERT INTO studies (study_uid, patient_ref, date,"
        " time, description, accession, clinic_id, created, updated)"
        " SELECT '9.9.' || i, (SELECT min(id) FROM patients), '20200101',"
        " '', '', '', 1, 0, 0 FROM n", 0, 0, 0), SQLITE_OK);
    q = (struct store_query){0};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 100);
    q = (struct store_query){.limit = 1000000};
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 1000);
}

static void test_qido_series_and_instances(void **state)
{
    struct fx *f = *state;
    load_all(f->s);
    json_t *out = NULL;
    char buf[128];
    struct store_query q = {.study_uid = g_a_uid};
    assert_int_equal(store_qido_series(f->s, &ADMIN, &q, &out, NULL), 0);
    assert_int_equal(json_array_size(out), 2);
    json_t *ct = json_array_get(out, 0), *mr = json_array_get(out, 1);
    assert_string_equal(jv(ct, "0020000E", buf), g_a_ct_series);
    assert_string_equal(jv(ct, "00080060", buf), "CT");
    assert_string_equal(jv(ct, "00200011", buf), "2");
    assert_string_equal(jv(ct, "00201209", buf), "2");
    assert_string_equal(jv(ct, "0008103E", buf),
                        "AXIAL HEAD 1.0 (synthetic phantom)");
    assert_string_equal(jv(mr, "0020000E", buf), g_a_mr_series);
    assert_string_equal(jv(mr, "00080060", buf), "MR");
    assert_string_equal(jv(mr, "00200011", buf), "3");
    json_decref(out);

    q.modality = "MR";
    assert_int_equal(store_qido_series(f->s, &ADMIN, &q, &out, NULL), 0);
    assert_int_equal(json_array_size(out), 1);
    json_decref(out);

    /* instances of the CT series, in instance-number order */
    q = (struct store_query){.study_uid = g_a_uid,
                             .series_uid = g_a_ct_series};
    assert_int_equal(store_qido_instances(f->s, &ADMIN, &q, &out, NULL), 0);
    assert_int_equal(json_array_size(out), 2);
    json_t *i1 = json_array_get(out, 0);
    struct dcm_info in;
    assert_int_equal(dicom_parse_file(g_a[0], &in, NULL), 0);
    assert_string_equal(jv(i1, "00080018", buf), in.sop_uid);
    assert_string_equal(jv(i1, "00080016", buf), in.sop_class_uid);
    assert_string_equal(jv(i1, "00200013", buf), "1");
    assert_string_equal(jv(i1, "00280010", buf), "64");
    assert_string_equal(jv(i1, "00280011", buf), "64");
    assert_string_equal(jv(i1, "00083002", buf), in.transfer_syntax);
    assert_string_equal(jv(json_array_get(out, 1), "00200013", buf), "2");
    json_decref(out);

    /* the whole study; limit/offset */
    q = (struct store_query){.study_uid = g_a_uid};
    assert_int_equal(store_qido_instances(f->s, &ADMIN, &q, &out, NULL), 0);
    assert_int_equal(json_array_size(out), 3);
    json_decref(out);
    q.limit = 1;
    q.offset = 2;
    assert_int_equal(store_qido_instances(f->s, &ADMIN, &q, &out, NULL), 0);
    assert_int_equal(json_array_size(out), 1);
    assert_string_equal(jv(json_array_get(out, 0), "00080060", buf), "MR");
    json_decref(out);

    /* unknown study or series: not found; a study UID is required */
    q = (struct store_query){.study_uid = "1.2.3.4"};
    assert_int_equal(store_qido_series(f->s, &ADMIN, &q, &out, NULL),
                     ERR_NOTFOUND);
    q = (struct store_query){.study_uid = g_a_uid, .series_uid = "1.2.3"};
    assert_int_equal(store_qido_instances(f->s, &ADMIN, &q, &out, NULL),
                     ERR_NOTFOUND);
    q = (struct store_query){.study_uid = g_b_uid,
                             .series_uid = g_a_ct_series};
    assert_int_equal(store_qido_instances(f->s, &ADMIN, &q, &out, NULL),
                     ERR_NOTFOUND);
    q = (struct store_query){0};
    assert_int_equal(store_qido_series(f->s, &ADMIN, &q, &out, NULL),
                     ERR_INVALID);
}

static void test_scope(void **state)
{
    struct fx *f = *state;
    load_all(f->s);
    struct store_scope c1 = scope_of("requester", 1);
    struct store_scope c2 = scope_of("requester", 2);
    struct store_scope c3 = scope_of("requester", 3);
    struct store_scope none = scope_of("gateway", 1);
    struct store_scope nobody;
    access_scope(NULL, &nobody);
    char uids[1024], want[1024];
    struct store_query q = {0};
    assert_int_equal(studies(f->s, &c1, &q, uids), 2);
    snprintf(want, sizeof want, "%s %s", g_b_uid, g_a_uid);
    assert_string_equal(uids, want);
    assert_int_equal(studies(f->s, &c2, &q, uids), 1);
    assert_string_equal(uids, g_c_uid);
    assert_int_equal(studies(f->s, &c3, &q, NULL), 0);
    assert_int_equal(studies(f->s, &none, &q, NULL), 0);
    assert_int_equal(studies(f->s, &nobody, &q, NULL), 0);
    assert_int_equal(studies(f->s, &ADMIN, &q, NULL), 3);
    /* naming another clinic's study does not reveal it */
    q.study_uid = g_a_uid;
    assert_int_equal(studies(f->s, &c2, &q, NULL), 0);

    json_t *out = NULL;
    struct err e = {0};
    assert_int_equal(store_qido_series(f->s, &c2, &q, &out, &e),
                     ERR_NOTFOUND);
    assert_null(out);
    assert_int_equal(store_qido_instances(f->s, &c2, &q, &out, &e),
                     ERR_NOTFOUND);
    assert_int_equal(store_qido_series(f->s, &c1, &q, &out, &e), 0);
    json_decref(out);

    struct dcm_info in;
    assert_int_equal(dicom_parse_file(g_a[0], &in, NULL), 0);
    struct store_instance inst;
    assert_int_equal(store_find_instance(f->s, &c2, g_a_uid, NULL,
                                         in.sop_uid, &inst, &e),
                     ERR_NOTFOUND);
    assert_int_equal(store_find_instance(f->s, &c1, g_a_uid, NULL,
                                         in.sop_uid, &inst, &e), 0);
    struct store_instance *list = NULL;
    size_t n = 99;
    assert_int_equal(store_list_instances(f->s, &c2, g_a_uid, NULL, &list,
                                          &n, &e), ERR_NOTFOUND);
    assert_null(list);
    assert_int_equal(n, 0);
}

static void test_find_and_list(void **state)
{
    struct fx *f = *state;
    load_all(f->s);
    struct dcm_info in;
    struct err e = {0};
    assert_int_equal(dicom_parse_file(g_a[1], &in, NULL), 0);
    struct store_instance inst;
    assert_int_equal(store_find_instance(f->s, &ADMIN, g_a_uid,
                                         g_a_ct_series, in.sop_uid, &inst,
                                         &e), 0);
    char sha[65], got[65];
    uint64_t size;
    assert_int_equal(sha256_file(g_a[1], sha, &size, NULL), 0);
    assert_string_equal(inst.sha256, sha);
    assert_int_equal(inst.size, size);
    assert_string_equal(inst.sop_class_uid, in.sop_class_uid);
    assert_string_equal(inst.transfer_syntax, in.transfer_syntax);
    assert_string_equal(inst.series_uid, g_a_ct_series);
    assert_int_equal(inst.frames, in.frames);
    assert_int_equal(sha256_file(inst.path, got, NULL, NULL), 0);
    assert_string_equal(got, sha);

    /* wrong series, wrong study, unknown instance */
    assert_int_equal(store_find_instance(f->s, &ADMIN, g_a_uid,
                                         g_a_mr_series, in.sop_uid, &inst,
                                         &e), ERR_NOTFOUND);
    assert_int_equal(store_find_instance(f->s, &ADMIN, g_b_uid, NULL,
                                         in.sop_uid, &inst, &e),
                     ERR_NOTFOUND);
    assert_int_equal(store_find_instance(f->s, &ADMIN, g_a_uid, NULL,
                                         "1.2.3", &inst, &e), ERR_NOTFOUND);

    struct store_instance *list = NULL;
    size_t n = 0;
    assert_int_equal(store_list_instances(f->s, &ADMIN, g_a_uid, NULL,
                                          &list, &n, &e), 0);
    assert_int_equal(n, 3);
    /* series number 2 (CT 1, CT 2), then series 3 (MR) */
    struct dcm_info i0, i2;
    assert_int_equal(dicom_parse_file(g_a[0], &i0, NULL), 0);
    assert_int_equal(dicom_parse_file(g_a[2], &i2, NULL), 0);
    assert_string_equal(list[0].sop_uid, i0.sop_uid);
    assert_string_equal(list[1].sop_uid, in.sop_uid);
    assert_string_equal(list[2].sop_uid, i2.sop_uid);
    free(list);
    assert_int_equal(store_list_instances(f->s, &ADMIN, g_a_uid,
                                          g_a_mr_series, &list, &n, &e), 0);
    assert_int_equal(n, 1);
    free(list);
}

/* ---- tests: WAL checkpoints --------------------------------------------- */

#define CKPT_ROWS 64            /* about 200 pages: far below SQLite's 1000 */

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (int64_t)st.st_size;
}

/* CKPT_ROWS commits through the store's connection, 6,000 bytes each. */
static void commit_rows(struct store *s)
{
    sqlite3 *db = store_db(s);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE ckpt_t(n INTEGER, "
                                  "x BLOB)", NULL, NULL, NULL), SQLITE_OK);
    for (int n = 1; n <= CKPT_ROWS; n++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO ckpt_t VALUES (%d, "
                 "randomblob(6000))", n);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
}

/* Is every page of the database in hashi.db itself (the WAL copied
 * back), as the store's connection sees it? */
static int db_file_complete(struct store *s, const char *dir)
{
    int64_t want = q_int(s, "PRAGMA page_count") *
                   q_int(s, "PRAGMA page_size");
    return file_size(tu_path(dir, "hashi.db")) == want;
}

/* Until cond(s, dir) holds; a guard of 20 s against a hang, not a
 * measure of speed. */
static int wait_for(int (*cond)(struct store *, const char *),
                    struct store *s, const char *dir)
{
    for (int i = 0; i < 2000; i++) {
        if (cond(s, dir))
            return 1;
        usleep(10000);
    }
    return cond(s, dir);
}

static int wal_empty(struct store *s, const char *dir)
{
    return file_size(tu_path(dir, "hashi.db-wal")) == 0 &&
           db_file_complete(s, dir);
}

/* Every row, intact, through a fresh store. */
static void check_rows(const char *dir)
{
    struct err e = {0};
    struct store *s = store_open(dir, &e);
    if (!s)
        fail_msg("store_open: %s", e.msg);
    char ok[32];
    q_text(s, "PRAGMA integrity_check", ok, sizeof ok);
    assert_string_equal(ok, "ok");
    assert_int_equal(q_int(s, "SELECT count(*) FROM ckpt_t"), CKPT_ROWS);
    assert_int_equal(q_int(s, "SELECT sum(n) FROM ckpt_t"),
                     CKPT_ROWS * (CKPT_ROWS + 1) / 2);
    assert_int_equal(q_int(s, "SELECT sum(length(x)) FROM ckpt_t"),
                     CKPT_ROWS * 6000);
    store_close(s);
}

/* The store's commits no longer checkpoint; the thread does, once the
 * WAL passes its threshold: hashi.db grows to hold every page. */
static void test_checkpoint_thread(void **state)
{
    struct fx *f = *state;
    struct store_ckpt_cfg cfg = { .wal_pages = 32 };
    struct err e = {0};

    assert_int_equal(q_int(f->s, "PRAGMA wal_autocheckpoint"), 1000);
    assert_int_equal(store_checkpoint_start(f->s, &cfg, &e), 0);
    assert_int_equal(q_int(f->s, "PRAGMA wal_autocheckpoint"), 0);
    assert_int_equal(store_checkpoint_start(f->s, &cfg, &e), ERR_INTERNAL);
    commit_rows(f->s);
    assert_true(q_int(f->s, "PRAGMA page_count") *
                q_int(f->s, "PRAGMA page_size") > CKPT_ROWS * 6000);
    assert_true(wait_for(db_file_complete, f->s, f->dir));
    check_rows(f->dir);
}

/* A WAL past wal_max_bytes is truncated once the commits stop. */
static void test_checkpoint_truncates_when_quiet(void **state)
{
    struct fx *f = *state;
    struct store_ckpt_cfg cfg = { .wal_max_bytes = 64 << 10,
                                  .quiet_ms = 50 };
    struct err e = {0};

    assert_int_equal(store_checkpoint_start(f->s, &cfg, &e), 0);
    commit_rows(f->s);
    assert_true(wait_for(wal_empty, f->s, f->dir));
    check_rows(f->dir);
}

/* store_close stops the thread after a last checkpoint: with another
 * connection open (so closing the store's is not the last close, which
 * checkpoints by itself) the WAL is empty and hashi.db complete. */
static void test_checkpoint_on_close(void **state)
{
    struct fx *f = *state;
    struct store_ckpt_cfg cfg = { .wal_pages = 1 << 20 };
    struct err e = {0};
    sqlite3 *other;

    assert_int_equal(sqlite3_open_v2(tu_path(f->dir, "hashi.db"), &other,
                                     SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    tu_sql_int(other, "SELECT count(*) FROM sqlite_master");  /* uses WAL */
    assert_int_equal(store_checkpoint_start(f->s, &cfg, &e), 0);
    commit_rows(f->s);
    int64_t bytes = q_int(f->s, "PRAGMA page_count") *
                    q_int(f->s, "PRAGMA page_size");
    assert_true(file_size(tu_path(f->dir, "hashi.db-wal")) > 0);
    assert_true(file_size(tu_path(f->dir, "hashi.db")) < bytes);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(file_size(tu_path(f->dir, "hashi.db-wal")), 0);
    assert_int_equal(file_size(tu_path(f->dir, "hashi.db")), bytes);
    sqlite3_close(other);
    check_rows(f->dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_and_pragmas, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_schema_makes_every_table,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_stores_blob_and_index,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_duplicate_is_noop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_put_conflict_keeps_original,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_invalid_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_put_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_reuses_orphan_blob, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_uid, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_distinct, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qido_studies_json, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qido_study_filters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qido_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qido_series_and_instances,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_other_clinic_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_other_clinic, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_find_and_list, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_truncates_when_quiet,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_on_close, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
