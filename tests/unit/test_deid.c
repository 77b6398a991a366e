/*
 * test_deid — dicom_deidentify (proto/dicom.cc): PS3.15 Basic Profile
 * de-identification as the edge gateway's --deidentify will run it.
 *
 * Fixtures come from tests/unit/deid_fixtures.py (into
 * $HASHI_TESTDATA/deid-unit): two instances of one study and an infant's
 * study, every identifying value containing "SECRET" or being a date or a
 * UID under 1.3.6.1.4.1.99999 that is searched for in the output's bytes.
 * The same script dumps an output (pydicom) for the attribute-by-attribute
 * checks.  The UID mapping is a small table here, as the gateway's would
 * be one in its spool database.
 */
#define _GNU_SOURCE             /* memmem */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../proto/dicom.h"
#include "../../proto/util.h"
#include "testutil.h"

#define ROOT "1.3.6.1.4.1.99999."

static char fx[PATH_MAX];        /* generated fixtures */
static char tmp[PATH_MAX];       /* scratch for this run */
static char script[PATH_MAX];    /* deid_fixtures.py */

/* ---- helpers ---------------------------------------------------------- */

/* The UID mapping the gateway would keep in its spool, as a table. */
struct uid_map {
    int n;
    char orig[32][65];
    char repl[32][65];
    int fail;              /* 1: report ERR_DB; 2: give a malformed UID */
};

static int map_uid(void *arg, const char *orig, char repl[65],
                   struct err *e)
{
    struct uid_map *m = arg;
    if (m->fail == 1)
        return err_set(e, ERR_DB, "spool database is locked");
    if (m->fail == 2) {
        strcpy(repl, "2.25.abc");
        return 0;
    }
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->orig[i], orig) == 0) {
            strcpy(repl, m->repl[i]);
            return 0;
        }
    if (m->n == 32)
        return err_set(e, ERR_TOOBIG, "test map full");
    int rc = dicom_uid_new(m->repl[m->n], e);
    if (rc)
        return rc;
    strlcpy_h(m->orig[m->n], orig, 65);
    strcpy(repl, m->repl[m->n++]);
    return 0;
}

/* The original a replacement UID came from, or "". */
static const char *map_back(const struct uid_map *m, const char *repl)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->repl[i], repl) == 0)
            return m->orig[i];
    return "";
}

static int deid(const char *in, const char *out, struct uid_map *m,
                struct err *e)
{
    struct dcm_deid_opts o = {.map_uid = map_uid, .map_arg = m};
    return dicom_deidentify(in, out, &o, e);
}

static void deid_ok(const char *in, const char *out, struct uid_map *m)
{
    struct err e = {0};
    int rc = deid(in, out, m, &e);
    if (rc)
        fail_msg("dicom_deidentify %s: %s", in, e.msg);
}

static void parse_ok(const char *path, struct dcm_info *info)
{
    struct err e = {0};
    if (dicom_parse_file(path, info, &e) != 0)
        fail_msg("parse %s: %s", path, e.msg);
}

static void pixel_sha(const char *path, char out[65])
{
    struct err e = {0};
    if (dicom_pixel_sha256(path, out, &e) != 0)
        fail_msg("pixel hash %s: %s", path, e.msg);
}

/* deid_fixtures.py's dump of path: key=value lines. */
struct dump {
    int n;
    char k[80][48];
    char v[80][128];
};

static void dump_of(const char *path, struct dump *d)
{
    const char *txt = tu_path(tmp, "dump.txt");
    assert_int_equal(tu_run("/usr/bin/python3 '%s' dump '%s' > '%s'",
                            script, path, txt), 0);
    FILE *f = fopen(txt, "r");
    assert_non_null(f);
    char line[256];
    d->n = 0;
    while (d->n < 80 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        strlcpy_h(d->k[d->n], line, sizeof d->k[0]);
        strlcpy_h(d->v[d->n], eq + 1, sizeof d->v[0]);
        d->n++;
    }
    fclose(f);
}

static const char *dumped(const struct dump *d, const char *key)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->k[i], key) == 0)
            return d->v[i];
    fail_msg("the dump has no %s", key);
    return "";
}

/* No byte string s anywhere in the file at path. */
static void assert_absent(const char *path, const char *s)
{
    unsigned char *b = NULL;
    size_t n = 0;
    struct err e = {0};
    assert_int_equal(read_file(path, 1 << 26, &b, &n, &e), 0);
    const void *at = memmem(b, n, s, strlen(s));
    free(b);
    if (at)
        fail_msg("%s still holds \"%s\"", path, s);
}

/* Nothing in dir but the names given (no output, no temporary file). */
static void assert_dir_holds_only(const char *dir, const char *const *names)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        int ok = 0;
        for (int i = 0; names[i]; i++)
            ok |= strcmp(names[i], de->d_name) == 0;
        if (!ok) {
            closedir(d);
            fail_msg("unexpected file %s/%s", dir, de->d_name);
        }
    }
    closedir(d);
}

/* ---- setup ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    struct err e = {0};
    const char *root = getenv("HASHI_ROOT") ? getenv("HASHI_ROOT") : ".";
    const char *data = getenv("HASHI_TESTDATA");
    int n = data ? snprintf(fx, sizeof fx, "%s/deid-unit", data)
                 : snprintf(fx, sizeof fx, "%s/tests/data/deid-unit", root);
    if (n >= (int)sizeof fx ||
        snprintf(script, sizeof script, "%s/tests/unit/deid_fixtures.py",
                 root) >= (int)sizeof script)
        return -1;
    if (dicom_init(&e) != 0) {
        fprintf(stderr, "dicom_init: %s\n", e.msg);
        return -1;
    }
    if (tu_run("/usr/bin/python3 '%s' '%s'", script, fx) != 0) {
        fprintf(stderr, "deid_fixtures.py failed\n");
        return -1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/hashi-test-deid-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rm_rf(tmp);
    dicom_cleanup();
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

/* Every planted identifying value is gone from the bytes; each action
 * class did what the profile says; age and sex are kept; the object says
 * it was de-identified; no private element is left at any level. */
static void test_deid_removes_identity(void **state)
{
    (void)state;
    struct uid_map m = {0};
    const char *out = tu_path(tmp, "im1-deid.dcm");
    deid_ok(tu_path(fx, "im1.dcm"), out, &m);

    assert_absent(out, "SECRET");
    assert_absent(out, ROOT);
    assert_absent(out, "19700312");      /* birth date */
    assert_absent(out, "20240615");      /* study, series, ... dates */

    struct dump d;
    dump_of(out, &d);
    static const char *const want[][2] = {
        {"PatientIdentityRemoved", "YES"},
        {"method_codes", "113100,113108"},
        {"private_count", "0"},
        {"meta_sop_matches", "1"},
        {"source_ae", "<absent>"},
        /* kept: the case needs age and sex; the age computed */
        {"PatientAge", "054Y"},
        {"PatientSex", "F"},
        /* Z */
        {"PatientName", "<empty>"},
        {"PatientID", "<empty>"},
        {"PatientBirthDate", "<empty>"},
        {"StudyDate", "<empty>"},
        {"StudyTime", "<empty>"},
        {"AccessionNumber", "<empty>"},
        {"StudyID", "<empty>"},
        {"ReferringPhysicianName", "<empty>"},
        /* Z/D */
        {"ContentDate", "<empty>"},
        /* X, X/Z, X/D, X/Z/D */
        {"SeriesDate", "<absent>"},
        {"AcquisitionDate", "<absent>"},
        {"InstanceCreationDate", "<absent>"},
        {"AcquisitionDateTime", "<absent>"},
        {"OtherPatientIDs", "<absent>"},
        {"OtherPatientIDsSequence", "<absent>"},
        {"PatientAddress", "<absent>"},
        {"PatientWeight", "<absent>"},
        {"PerformingPhysicianName", "<absent>"},
        {"OperatorsName", "<absent>"},
        {"InstitutionName", "<absent>"},
        {"InstitutionCodeSequence", "<absent>"},
        {"StationName", "<absent>"},
        {"DeviceSerialNumber", "<absent>"},
        {"StudyDescription", "<absent>"},
        {"SeriesDescription", "<absent>"},
        {"ProtocolName", "<absent>"},
        {"ImageComments", "<absent>"},
        {"RequestAttributesSequence", "<absent>"},
        {"overlay_comment", "<absent>"},
        {"curve_label", "<absent>"},
        /* D */
        {"ClinicalTrialSponsorName", "ANONYMIZED"},
        {"VerifyingObserverSequence", "<0 items>"},
        /* K, with the table applied inside its items */
        {"ProcedureCodeSequence", "<1 items>"},
        {"proc.CodeValue", "P1"},
        {"proc.InstitutionName", "<absent>"},
        {"Manufacturer", "ACME"},
        {"Modality", "CT"},
        {"SliceThickness", "5"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (strcmp(dumped(&d, want[i][0]), want[i][1]) != 0)
            fail_msg("%s: \"%s\", want \"%s\"", want[i][0],
                     dumped(&d, want[i][0]), want[i][1]);
    assert_non_null(strstr(dumped(&d, "DeidentificationMethod"),
                           "Basic Profile"));
}

/* Two instances of one study keep one study and series UID and their own
 * SOP UIDs, all new (2.25.*); the mapping leads back to the originals; a
 * reference from one to the other follows; the same file again gets the
 * same UIDs; another study gets other ones. */
static void test_deid_uids_consistent_in_study(void **state)
{
    (void)state;
    struct uid_map m = {0};
    struct dcm_info in1, in2, o1, o2, again, inf;
    parse_ok(tu_path(fx, "im1.dcm"), &in1);
    parse_ok(tu_path(fx, "im2.dcm"), &in2);
    deid_ok(tu_path(fx, "im1.dcm"), tu_path(tmp, "u1.dcm"), &m);
    deid_ok(tu_path(fx, "im2.dcm"), tu_path(tmp, "u2.dcm"), &m);
    parse_ok(tu_path(tmp, "u1.dcm"), &o1);
    parse_ok(tu_path(tmp, "u2.dcm"), &o2);

    assert_string_equal(o1.study_uid, o2.study_uid);
    assert_string_equal(o1.series_uid, o2.series_uid);
    assert_string_not_equal(o1.sop_uid, o2.sop_uid);
    assert_string_not_equal(o1.study_uid, in1.study_uid);
    assert_string_not_equal(o1.series_uid, in1.series_uid);
    assert_string_not_equal(o1.sop_uid, in1.sop_uid);
    assert_string_not_equal(o2.sop_uid, in2.sop_uid);
    assert_memory_equal(o1.sop_uid, "2.25.", 5);
    assert_string_equal(o1.sop_class_uid, in1.sop_class_uid);

    assert_string_equal(map_back(&m, o1.study_uid), in1.study_uid);
    assert_string_equal(map_back(&m, o1.series_uid), in1.series_uid);
    assert_string_equal(map_back(&m, o1.sop_uid), in1.sop_uid);
    assert_string_equal(map_back(&m, o2.sop_uid), in2.sop_uid);

    struct dump d;
    dump_of(tu_path(tmp, "u2.dcm"), &d);
    assert_string_equal(dumped(&d, "ref.ReferencedSOPInstanceUID"),
                        o1.sop_uid);
    assert_string_equal(dumped(&d, "ref.ReferencedSOPClassUID"),
                        in1.sop_class_uid);
    assert_string_equal(dumped(&d, "ref.OperatorsName"), "<absent>");
    assert_string_equal(dumped(&d, "PatientAge"), "054Y");    /* kept */

    deid_ok(tu_path(fx, "im1.dcm"), tu_path(tmp, "u1b.dcm"), &m);
    parse_ok(tu_path(tmp, "u1b.dcm"), &again);
    assert_string_equal(again.study_uid, o1.study_uid);
    assert_string_equal(again.sop_uid, o1.sop_uid);

    deid_ok(tu_path(fx, "infant.dcm"), tu_path(tmp, "u3.dcm"), &m);
    parse_ok(tu_path(tmp, "u3.dcm"), &inf);
    assert_string_not_equal(inf.study_uid, o1.study_uid);
    dump_of(tu_path(tmp, "u3.dcm"), &d);
    assert_string_equal(dumped(&d, "PatientAge"), "001M");
}

/* The decoded pixels are the same, uncompressed and JPEG-LS (kept in its
 * transfer syntax), and when the output replaces the input. */
static void test_deid_pixels_unchanged(void **state)
{
    (void)state;
    struct uid_map m = {0};
    struct err e = {0};
    char want[65], got[65];
    pixel_sha(tu_path(fx, "im1.dcm"), want);
    deid_ok(tu_path(fx, "im1.dcm"), tu_path(tmp, "p1.dcm"), &m);
    pixel_sha(tu_path(tmp, "p1.dcm"), got);
    assert_string_equal(got, want);

    char ls[PATH_MAX];
    assert_int_equal(path_join(ls, sizeof ls, tmp, "ls.dcm"), 0);
    assert_int_equal(dicom_transcode_jpegls(tu_path(fx, "im1.dcm"), ls, &e),
                     0);
    deid_ok(ls, tu_path(tmp, "ls-deid.dcm"), &m);
    struct dcm_info info;
    parse_ok(tu_path(tmp, "ls-deid.dcm"), &info);
    assert_string_equal(info.transfer_syntax, DICOM_TS_JPEGLS_LOSSLESS);
    pixel_sha(tu_path(tmp, "ls-deid.dcm"), got);
    assert_string_equal(got, want);

    deid_ok(ls, ls, &m);                  /* in place */
    pixel_sha(ls, got);
    assert_string_equal(got, want);
    assert_absent(ls, "SECRET");
}

/* Bad input and a failing mapping give an error with a reason, and leave
 * neither the output nor a temporary file behind. */
static void test_deid_bad_input(void **state)
{
    (void)state;
    char dir[PATH_MAX], out[PATH_MAX];
    assert_int_equal(path_join(dir, sizeof dir, tmp, "bad"), 0);
    assert_int_equal(path_join(out, sizeof out, dir, "out.dcm"), 0);
    assert_int_equal(tu_run("mkdir -p '%s'", dir), 0);
    unsigned char *b = NULL;
    size_t n = 0;
    struct err e = {0};
    assert_int_equal(read_file(tu_path(fx, "im1.dcm"), 1 << 26, &b, &n, &e),
                     0);
    FILE *f = fopen(tu_path(dir, "truncated.dcm"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n / 2, f), n / 2);
    fclose(f);
    f = fopen(tu_path(dir, "text.dcm"), "wb");
    assert_non_null(f);
    fputs("{\"not\": \"dicom\"}\n", f);
    fclose(f);
    free(b);

    struct uid_map m = {0};
    static const struct {
        const char *name;
        int code;
    } cases[] = {
        {"truncated.dcm", ERR_INVALID},
        {"text.dcm", ERR_INVALID},
        {"missing.dcm", ERR_NOTFOUND},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memset(&e, 0, sizeof e);
        assert_int_equal(deid(tu_path(dir, cases[i].name), out, &m, &e),
                         cases[i].code);
        assert_true(e.msg[0] != 0);
    }

    m.fail = 1;                           /* the spool cannot answer */
    memset(&e, 0, sizeof e);
    assert_int_equal(deid(tu_path(fx, "im1.dcm"), out, &m, &e), ERR_DB);
    assert_non_null(strstr(e.msg, "locked"));
    m.fail = 2;                           /* it answers nonsense */
    assert_int_equal(deid(tu_path(fx, "im1.dcm"), out, &m, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "malformed"));
    m.fail = 0;

    struct dcm_deid_opts none = {0};
    assert_int_equal(dicom_deidentify(tu_path(fx, "im1.dcm"), out, &none, &e),
                     ERR_INVALID);
    assert_int_equal(dicom_deidentify(tu_path(fx, "im1.dcm"), out, NULL, &e),
                     ERR_INVALID);
    assert_int_equal(deid(tu_path(fx, "im1.dcm"),
                          tu_path(tmp, "no/such/dir.dcm"), &m, &e), ERR_IO);

    static const char *const left[] = {"truncated.dcm", "text.dcm", NULL};
    assert_dir_holds_only(dir, left);
}

/* The gateway may name the patient after its case (a pseudonym). */
static void test_deid_replacement_ids(void **state)
{
    (void)state;
    struct uid_map m = {0};
    struct dcm_deid_opts o = {.map_uid = map_uid, .map_arg = &m,
                              .patient_name = "CASE^42",
                              .patient_id = "HASHI-42"};
    struct err e = {0};
    const char *out = tu_path(tmp, "named.dcm");
    assert_int_equal(dicom_deidentify(tu_path(fx, "im1.dcm"), out, &o, &e), 0);
    struct dcm_info info;
    parse_ok(out, &info);
    assert_string_equal(info.patient_name, "CASE^42");
    assert_string_equal(info.patient_id, "HASHI-42");
    assert_string_equal(info.birth_date, "");
    assert_string_equal(info.accession, "");
    assert_string_equal(info.sex, "F");
}

static void test_deid_uid_new(void **state)
{
    (void)state;
    char a[65], b[65];
    struct err e = {0};
    assert_int_equal(dicom_uid_new(a, &e), 0);
    assert_int_equal(dicom_uid_new(b, &e), 0);
    assert_true(dicom_uid_valid(a));
    assert_memory_equal(a, "2.25.", 5);
    assert_true(strlen(a) > 5 + 30 && strlen(a) <= 5 + 39);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deid_removes_identity),
        cmocka_unit_test(test_deid_uids_consistent_in_study),
        cmocka_unit_test(test_deid_pixels_unchanged),
        cmocka_unit_test(test_deid_bad_input),
        cmocka_unit_test(test_deid_replacement_ids),
        cmocka_unit_test(test_deid_uid_new),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
