/*
 * test_dicom — the DCMTK adapter (proto/dicom.cc): parsing and validation
 * of good, broken and hostile files, pydicom's odd test files, rendering,
 * lossless transcoding, and the C-STORE/C-ECHO listener driven by DCMTK's
 * own echoscu and storescu.
 *
 * Fixtures are generated at test time by tests/unit/dicom_fixtures.py
 * (which runs $HASHI_TOOLS/gen_study.py) into $HASHI_TESTDATA/dicom-unit;
 * the deeply nested sequences are built here in C.
 * DICOM_TEST_FILTER=pattern runs only the matching tests (for valgrind).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jpeglib.h>

#include "../../proto/dicom.h"
#include "../../proto/util.h"
#include "testjpeg.h"
#include "testutil.h"

#define PYDICOM_DATA "/usr/lib/python3/dist-packages/pydicom/data"
#define PYDICOM_FILES PYDICOM_DATA "/test_files"
#define PYDICOM_CHARSETS PYDICOM_DATA "/charset_files"

static char fx[1024];           /* generated fixtures */
static char tmp[1024];          /* scratch for this run */
static char expected[16][2][128];

/* ---- helpers ---------------------------------------------------------- */

#define P(dir, name) tu_path(dir, name)
#define run(...) tu_run(__VA_ARGS__)

/* P() into a caller's buffer, for paths that must outlive 8 more P()s */
static char *keep(char *out, const char *dir, const char *name)
{
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        fail_msg("path too long");
    return out;
}

static const char *ct(int n)
{
    static char s[4][PATH_MAX];
    if (snprintf(s[n % 4], PATH_MAX, "%s/ct/CT%05d.dcm", fx, n) >= PATH_MAX)
        fail_msg("path too long");
    return s[n % 4];
}

static const char *want(const char *key)
{
    for (int i = 0; i < 16; i++)
        if (strcmp(expected[i][0], key) == 0)
            return expected[i][1];
    fail_msg("no expected value for %s", key);
    return "";
}

static void load_expected(void)
{
    FILE *f = fopen(P(fx, "expected.txt"), "r");
    assert_non_null(f);
    char line[300];
    int n = 0;
    while (n < 16 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        if (snprintf(expected[n][0], 128, "%s", line) >= 128)
            fail_msg("expected key too long");
        if (snprintf(expected[n][1], 128, "%s", eq + 1) >= 128)
            fail_msg("expected value too long");
        n++;
    }
    fclose(f);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    unsigned char *b = NULL;
    struct err e = {0};
    assert_int_equal(read_file(path, 1 << 30, &b, len, &e), 0);
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Size from a JPEG's SOF marker; also checks SOI first and EOI last. */
static void jpeg_size(const unsigned char *j, size_t n, int *w, int *h)
{
    assert_true(n > 4);
    assert_int_equal(j[0], 0xFF);
    assert_int_equal(j[1], 0xD8);
    assert_int_equal(j[n - 2], 0xFF);
    assert_int_equal(j[n - 1], 0xD9);
    size_t p = 2;
    while (p + 9 < n) {
        assert_int_equal(j[p], 0xFF);
        unsigned m = j[p + 1];
        size_t seg = (size_t)j[p + 2] << 8 | j[p + 3];
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            *h = j[p + 5] << 8 | j[p + 6];
            *w = j[p + 7] << 8 | j[p + 8];
            return;
        }
        p += 2 + seg;
    }
    fail_msg("no SOF marker");
}

static void sha_of(const char *path, char out[65]);
static unsigned char *render(const char *path, int mode, double c, double w,
                             int mw, int mh, size_t *len, int *ow, int *oh);

/* ---- setup ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    struct err e = {0};
    if (dicom_init(&e) != 0) {
        fprintf(stderr, "dicom_init: %s\n", e.msg);
        return -1;
    }
    const char *root = getenv("HASHI_ROOT");
    const char *tools = getenv("HASHI_TOOLS");
    const char *data = getenv("HASHI_TESTDATA");
    char tbuf[PATH_MAX], dbuf[PATH_MAX];
    if (!tools) {
        snprintf(tbuf, sizeof tbuf, "%s/tests/tools", root ? root : ".");
        tools = tbuf;
    }
    if (!data) {
        snprintf(dbuf, sizeof dbuf, "%s/tests/data", root ? root : ".");
        data = dbuf;
    }
    if (snprintf(fx, sizeof fx, "%s/dicom-unit", data) >= (int)sizeof fx)
        return -1;
    const char *script = root ? P(root, "tests/unit/dicom_fixtures.py")
                              : "tests/unit/dicom_fixtures.py";
    if (run("mkdir -p '%s' && /usr/bin/python3 '%s' '%s' '%s'", fx, script,
            fx, tools) != 0) {
        fprintf(stderr, "fixture generation failed\n");
        return -1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/hashi-test-dicom-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    load_expected();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    run("rm -rf '%s'", tmp);
    dicom_cleanup();
    return 0;
}

/* ---- UIDs ------------------------------------------------------------- */

static void test_uid_valid(void **state)
{
    (void)state;
    char max[65], over[66];
    memset(max, '1', 64);
    max[64] = 0;
    memset(over, '1', 65);
    over[65] = 0;
    max[1] = over[1] = '.';
    const char *good[] = {"1.2.840.10008.1.2", "0", "2.25.0", "1.0.3",
                          "2.25.242646156441350714083877698630721976636",
                          max};
    const char *bad[] = {"", "1..2", ".1", "1.", "1.02", "01.2", "1.2.a",
                         "../1", "1.2.3/../../etc", "1.2 ", " 1.2", "1,2",
                         "1.2.840.abc", over, "-1.2"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(dicom_uid_valid(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (dicom_uid_valid(bad[i]))
            fail_msg("accepted bad UID \"%s\"", bad[i]);
    assert_false(dicom_uid_valid(NULL));
}

/* ---- parse ------------------------------------------------------------ */

static void check_ct_info(const struct dcm_info *d)
{
    assert_string_equal(d->study_uid, want("study_uid"));
    assert_string_equal(d->series_uid, want("series_uid"));
    assert_string_equal(d->sop_uid, want("sop_uid"));
    assert_string_equal(d->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(d->transfer_syntax, DICOM_TS_EXPLICIT_LE);
    assert_string_equal(d->patient_id, "HASHI-T1");
    assert_string_equal(d->patient_name, "SYNTHETIC^PATIENT");
    assert_string_equal(d->birth_date, "19700101");
    assert_string_equal(d->sex, "O");
    assert_string_equal(d->study_date, want("study_date"));
    assert_string_equal(d->study_time, want("study_time"));
    assert_string_equal(d->study_description,
                        "CT HEAD WO CONTRAST (synthetic)");
    assert_string_equal(d->accession, want("accession"));
    assert_string_equal(d->modality, "CT");
    assert_int_equal(d->series_number, 2);
    assert_string_equal(d->series_description,
                        "AXIAL HEAD 1.0 (synthetic phantom)");
    assert_int_equal(d->instance_number, 1);
    assert_int_equal(d->rows, 512);
    assert_int_equal(d->columns, 512);
    assert_int_equal(d->frames, 1);
    assert_int_equal(d->has_pixels, 1);
    assert_int_equal(d->has_window, 1);
    assert_true(d->window_center == 40.0);
    assert_true(d->window_width == 80.0);
}

static void test_parse_ct(void **state)
{
    (void)state;
    struct dcm_info a, b;
    struct err e = {0};
    int rc = dicom_parse_file(ct(1), &a, &e);
    if (rc)
        fail_msg("parse: %s", e.msg);
    check_ct_info(&a);

    size_t n;
    unsigned char *buf = slurp(ct(1), &n);
    rc = dicom_parse_mem(buf, n, &b, &e);
    free(buf);
    if (rc)
        fail_msg("parse_mem: %s", e.msg);
    assert_memory_equal(&a, &b, sizeof a);
}

/* The same slice without preamble, in implicit VR, and as a bare
 * implicit VR dataset with no meta header. */
static void test_parse_variants(void **state)
{
    (void)state;
    static const struct {
        const char *file, *ts;
    } v[] = {
        {"no_preamble.dcm", DICOM_TS_EXPLICIT_LE},
        {"implicit.dcm", DICOM_TS_IMPLICIT_LE},
        {"bare_implicit.dcm", DICOM_TS_IMPLICIT_LE},
    };
    char var[PATH_MAX], s0[65], s[65];
    keep(var, fx, "var");
    sha_of(ct(1), s0);
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        struct dcm_info d;
        struct err e = {0};
        const char *path = P(var, v[i].file);
        if (dicom_parse_file(path, &d, &e) != 0)
            fail_msg("%s: %s", v[i].file, e.msg);
        assert_string_equal(d.sop_uid, want("sop_uid"));
        assert_string_equal(d.transfer_syntax, v[i].ts);
        assert_int_equal(d.rows, 512);
        sha_of(path, s);
        assert_string_equal(s, s0);
        size_t n;
        int w, h;
        free(render(path, DCM_WINDOW_DEFAULT, 0, 0, 64, 64, &n, &w, &h));
        assert_int_equal(w, 64);
    }
}

static void test_parse_series(void **state)
{
    (void)state;
    struct dcm_info d[3];
    struct err e = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dicom_parse_file(ct(i + 1), &d[i], &e), 0);
        assert_int_equal(d[i].instance_number, i + 1);
        assert_string_equal(d[i].study_uid, d[0].study_uid);
        assert_string_equal(d[i].series_uid, d[0].series_uid);
    }
    assert_string_not_equal(d[0].sop_uid, d[1].sop_uid);
    assert_string_not_equal(d[1].sop_uid, d[2].sop_uid);
}

static void expect_invalid(const char *path, int code, const char *needle)
{
    struct dcm_info d;
    struct err e = {0};
    int rc = dicom_parse_file(path, &d, &e);
    if (rc != code)
        fail_msg("%s: rc %d (%s), want %d", path, rc, e.msg, code);
    if (needle && !strstr(e.msg, needle))
        fail_msg("%s: message \"%s\" lacks \"%s\"", path, e.msg, needle);
    /* the same bytes from memory */
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    memset(&e, 0, sizeof e);
    rc = dicom_parse_mem(b, n, &d, &e);
    free(b);
    if (rc != code)
        fail_msg("%s (mem): rc %d (%s), want %d", path, rc, e.msg, code);
    if (needle && !strstr(e.msg, needle))
        fail_msg("%s (mem): message \"%s\" lacks \"%s\"", path, e.msg,
                 needle);
}

static void test_parse_bad(void **state)
{
    (void)state;
    char bad[PATH_MAX];
    snprintf(bad, sizeof bad, "%s/bad", fx);
    /* cut inside the pixel data: its declared length runs past the end */
    expect_invalid(P(bad, "truncated.dcm"), ERR_INVALID, "exceeds");
    expect_invalid(P(bad, "random.bin"), ERR_INVALID, NULL);
    expect_invalid(P(bad, "empty.dcm"), ERR_INVALID, "empty");
    expect_invalid(P(bad, "huge_length.dcm"), ERR_INVALID,
                   "declared length 4294967280 exceeds");
    expect_invalid(P(bad, "no_sop_uid.dcm"), ERR_INVALID,
                   "missing SOP Instance UID");
    expect_invalid(P(bad, "uid_dotdot.dcm"), ERR_INVALID,
                   "\"1.2.3/../../etc\"");
    expect_invalid(P(bad, "uid_letters.dcm"), ERR_INVALID,
                   "malformed Study Instance UID");
    expect_invalid(P(bad, "uid_leading0.dcm"), ERR_INVALID,
                   "malformed Series Instance UID");

    struct dcm_info d;
    struct err e = {0};
    assert_int_equal(dicom_parse_file(P(tmp, "does-not-exist.dcm"), &d, &e),
                     ERR_NOTFOUND);
    /* a JSON body and a gzip header are not DICOM either */
    static const char json[] = "{\"hello\": \"world\", \"n\": [1,2,3]}";
    assert_int_equal(dicom_parse_mem(json, sizeof json - 1, &d, &e),
                     ERR_INVALID);
    static const unsigned char gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3,
                                       0x4b, 0x4c, 0x4a, 6, 0, 0xc2, 0x41,
                                       0x24, 0x35, 3, 0, 0, 0};
    assert_int_equal(dicom_parse_mem(gz, sizeof gz, &d, &e), ERR_INVALID);
    assert_int_equal(dicom_parse_mem("", 0, &d, &e), ERR_INVALID);
}

/* ---- hand-built datasets: deep nesting -------------------------------- */

struct buf {
    unsigned char *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put16(struct buf *b, unsigned v)
{
    unsigned char x[2] = {v & 0xff, v >> 8 & 0xff};
    put(b, x, 2);
}

static void put32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {v & 0xff, v >> 8 & 0xff, v >> 16 & 0xff, v >> 24};
    put(b, x, 4);
}

/* explicit VR LE element with a short (2-byte) length */
static void put_ui(struct buf *b, unsigned g, unsigned el, const char *uid)
{
    size_t n = strlen(uid);
    put16(b, g);
    put16(b, el);
    put(b, "UI", 2);
    put16(b, (unsigned)(n + (n & 1)));
    put(b, uid, n);
    if (n & 1)
        put(b, "", 1);
}

static void put_meta(struct buf *b, const char *ts)
{
    static const unsigned char zero[128];
    put(b, zero, 128);
    put(b, "DICM", 4);
    put_ui(b, 0x0002, 0x0010, ts);
}

static void put_uids(struct buf *b)
{
    put_ui(b, 0x0008, 0x0016, "1.2.840.10008.5.1.4.1.1.7");
    put_ui(b, 0x0008, 0x0018, "1.2.3.4.5.6.7");
}

static void put_study_series(struct buf *b)
{
    put_ui(b, 0x0020, 0x000D, "1.2.3.4.5");
    put_ui(b, 0x0020, 0x000E, "1.2.3.4.5.6");
}

/* (0008,1115) SQ nested depth times, undefined lengths, explicit LE */
static void put_nested_undef(struct buf *b, int depth)
{
    for (int i = 0; i < depth; i++) {
        put16(b, 0x0008);
        put16(b, 0x1115);
        put(b, "SQ\0\0", 4);
        put32(b, 0xFFFFFFFF);
        put16(b, 0xFFFE);
        put16(b, 0xE000);
        put32(b, 0xFFFFFFFF);
    }
    for (int i = 0; i < depth; i++) {
        put16(b, 0xFFFE);
        put16(b, 0xE00D);
        put32(b, 0);
        put16(b, 0xFFFE);
        put16(b, 0xE0DD);
        put32(b, 0);
    }
}

/* implicit VR LE, defined lengths: each level is SQ header + item header */
static void put_nested_defined_implicit(struct buf *b, int depth)
{
    size_t total = (size_t)depth * 16;
    for (int i = 0; i < depth; i++) {
        put16(b, 0x0008);
        put16(b, 0x1115);
        put32(b, (uint32_t)(total - (size_t)i * 16 - 8));
        put16(b, 0xFFFE);
        put16(b, 0xE000);
        put32(b, (uint32_t)(total - (size_t)i * 16 - 16));
    }
}

static int parse_buf(struct buf *b, struct err *e)
{
    struct dcm_info d;
    int rc = dicom_parse_mem(b->p, b->n, &d, e);
    char path[PATH_MAX];
    keep(path, tmp, "built.dcm");
    spit(path, b->p, b->n);
    struct err e2 = {0};
    int rc2 = dicom_parse_file(path, &d, &e2);
    assert_int_equal(rc, rc2);
    return rc;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    struct err e = {0};
    for (int depth = DICOM_MAX_DEPTH; depth <= DICOM_MAX_DEPTH + 1;
         depth++) {
        struct buf b = {0};
        put_meta(&b, DICOM_TS_EXPLICIT_LE);
        put_uids(&b);
        put_nested_undef(&b, depth);
        put_study_series(&b);
        int rc = parse_buf(&b, &e);
        if (depth <= DICOM_MAX_DEPTH && rc != 0)
            fail_msg("depth %d refused: %s", depth, e.msg);
        if (depth > DICOM_MAX_DEPTH) {
            assert_int_equal(rc, ERR_INVALID);
            assert_non_null(strstr(e.msg, "nested deeper than 32"));
        }
        free(b.p);
    }
}

static void test_nesting_50000(void **state)
{
    (void)state;
    struct err e = {0};
    double t0 = now_mono();

    /* Part-10, explicit LE, undefined lengths */
    struct buf b = {0};
    put_meta(&b, DICOM_TS_EXPLICIT_LE);
    put_uids(&b);
    put_nested_undef(&b, 50000);
    put_study_series(&b);
    assert_int_equal(parse_buf(&b, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "nested deeper"));
    free(b.p);

    /* bare implicit LE dataset, defined lengths: only the item structure
     * tells that these are sequences */
    memset(&b, 0, sizeof b);
    put16(&b, 0x0008);
    put16(&b, 0x0016);
    put32(&b, 26);
    put(&b, "1.2.840.10008.5.1.4.1.1.7", 26);
    put_nested_defined_implicit(&b, 50000);
    assert_int_equal(parse_buf(&b, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "nested deeper"));
    free(b.p);

    /* the same inside an explicit UN of undefined length */
    memset(&b, 0, sizeof b);
    put_meta(&b, DICOM_TS_EXPLICIT_LE);
    put_uids(&b);
    put16(&b, 0x0009);
    put16(&b, 0x1001);
    put(&b, "UN\0\0", 4);
    put32(&b, 0xFFFFFFFF);
    put16(&b, 0xFFFE);
    put16(&b, 0xE000);
    put32(&b, 0xFFFFFFFF);
    put_nested_defined_implicit(&b, 50000);
    assert_int_equal(parse_buf(&b, &e), ERR_INVALID);
    free(b.p);

    assert_true(now_mono() - t0 < 2.0);
}

/* Lengths of items and sequences must fit their containers. */
static void test_bad_structure(void **state)
{
    (void)state;
    struct err e = {0};
    struct buf b = {0};
    put_meta(&b, DICOM_TS_EXPLICIT_LE);
    put_uids(&b);
    put16(&b, 0x0008);           /* SQ of 16 bytes holding a 1 GB item */
    put16(&b, 0x1115);
    put(&b, "SQ\0\0", 4);
    put32(&b, 16);
    put16(&b, 0xFFFE);
    put16(&b, 0xE000);
    put32(&b, 1u << 30);
    put32(&b, 0);
    put32(&b, 0);
    put_study_series(&b);
    assert_int_equal(parse_buf(&b, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "item length"));
    free(b.p);

    memset(&b, 0, sizeof b);     /* item never delimited */
    put_meta(&b, DICOM_TS_EXPLICIT_LE);
    put_uids(&b);
    put16(&b, 0x0008);
    put16(&b, 0x1115);
    put(&b, "SQ\0\0", 4);
    put32(&b, 0xFFFFFFFF);
    put16(&b, 0xFFFE);
    put16(&b, 0xE000);
    put32(&b, 0xFFFFFFFF);
    put_study_series(&b);
    assert_int_equal(parse_buf(&b, &e), ERR_INVALID);
    free(b.p);

    memset(&b, 0, sizeof b);     /* a deflated dataset that is not zlib */
    put_meta(&b, "1.2.840.10008.1.2.1.99");
    put(&b, "this is not deflate data at all, not at all", 43);
    assert_int_equal(parse_buf(&b, &e), ERR_INVALID);
    free(b.p);
}

/* ---- pydicom's odd files ---------------------------------------------- */

#define MR_SOP "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"

static const struct {
    const char *file;
    int rc;                  /* what dicom_parse_file returns */
    const char *why;
} odd[] = {
    /* TIFF header in the preamble (dual DICOM/TIFF), then cut inside the
     * pixel data: PixelData declares 8192 bytes with fewer left. */
    {"MR_truncated.dcm", ERR_INVALID, "exceeds"},
    /* "badVR" is an RT Dose whose NumberOfFrames is "1A" (bad IS value);
     * the structure and UIDs are fine, so it parses; frames falls back
     * to 1. */
    {"badVR.dcm", 0, NULL},
    /* meta lacks (0002,0010); the dataset is implicit LE (guessed, as
     * DCMTK does), nested private SQs parse, but there is no Study,
     * Series or SOP Instance UID: rejected. */
    {"meta_missing_tsyntax.dcm", ERR_INVALID, "missing"},
    /* no preamble, no meta, explicit VR big endian: the encoding is
     * guessed from the first element; an RT Ion Plan with every UID;
     * parses (no pixels). */
    {"ExplVR_BigEndNoMeta.dcm", 0, NULL},
    /* deflated explicit LE: inflated for the scan, then parsed; has a
     * Study and Series UID; parses. */
    {"image_dfl.dcm", 0, NULL},
    /* JPEG 2000: parses and may be stored; render/transcode give
     * ERR_UNSUPPORTED (no JPEG 2000 codec in DCMTK). */
    {"JPEG2000.dcm", 0, NULL},
    {"MR_small_jp2klossless.dcm", 0, NULL},
    /* the MR_small family: one SOP Instance UID, six encodings; all
     * parse, all have the same pixels (checked below). */
    {"MR_small.dcm", 0, NULL},
    {"MR_small_jpeg_ls_lossless.dcm", 0, NULL},
    {"MR_small_RLE.dcm", 0, NULL},
    {"MR_small_bigendian.dcm", 0, NULL},
    {"MR_small_expb.dcm", 0, NULL},
    {"MR_small_implicit.dcm", 0, NULL},
    {"MR_small_padded.dcm", 0, NULL},
};

static void test_pydicom_odd_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        struct dcm_info d;
        struct err e = {0};
        const char *path = P(PYDICOM_FILES, odd[i].file);
        int rc = dicom_parse_file(path, &d, &e);
        if (rc != odd[i].rc)
            fail_msg("%s: rc %d (%s), want %d", odd[i].file, rc, e.msg,
                     odd[i].rc);
        if (odd[i].why && !strstr(e.msg, odd[i].why))
            fail_msg("%s: message \"%s\"", odd[i].file, e.msg);
        if (rc == 0 && strncmp(odd[i].file, "MR_small", 8) == 0) {
            assert_string_equal(d.sop_uid, MR_SOP);
            assert_int_equal(d.rows, 64);
            assert_int_equal(d.columns, 64);
            assert_int_equal(d.frames, 1);
        }
        /* the in-memory parse agrees */
        size_t n;
        unsigned char *b = slurp(path, &n);
        struct dcm_info d2;
        int rc2 = dicom_parse_mem(b, n, &d2, &e);
        free(b);
        assert_int_equal(rc, rc2);
        if (rc == 0)
            assert_memory_equal(&d, &d2, sizeof d);
    }

    struct dcm_info d;
    struct err e = {0};
    assert_int_equal(dicom_parse_file(P(PYDICOM_FILES, "badVR.dcm"), &d, &e),
                     0);
    assert_int_equal(d.frames, 1);
    assert_string_equal(d.modality, "RTDOSE");
    assert_int_equal(dicom_parse_file(P(PYDICOM_FILES,
                                        "ExplVR_BigEndNoMeta.dcm"), &d, &e),
                     0);
    assert_string_equal(d.transfer_syntax, "1.2.840.10008.1.2.2");
    assert_string_equal(d.sop_uid, "1.2.333.4444.5.6.7.8");
    assert_int_equal(d.has_pixels, 0);
    assert_int_equal(d.frames, 0);
    assert_int_equal(dicom_parse_file(P(PYDICOM_FILES, "image_dfl.dcm"), &d,
                                      &e), 0);
    assert_string_equal(d.transfer_syntax, "1.2.840.10008.1.2.1.99");
    assert_int_equal(d.rows, 512);
    assert_int_equal(dicom_parse_file(P(PYDICOM_FILES, "JPEG2000.dcm"), &d,
                                      &e), 0);
    assert_string_equal(d.transfer_syntax, "1.2.840.10008.1.2.4.91");
}

/* Every other pydicom file: whatever the verdict, no crash, and file and
 * memory parse agree. */
static void test_pydicom_all_files(void **state)
{
    (void)state;
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "ls %s/*.dcm", PYDICOM_FILES);
    FILE *ls = popen(cmd, "r");
    assert_non_null(ls);
    char path[PATH_MAX];
    int n = 0, ok = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        struct dcm_info d, d2;
        struct err e = {0}, e2 = {0};
        int rc = dicom_parse_file(path, &d, &e);
        size_t len;
        unsigned char *b = slurp(path, &len);
        int rc2 = dicom_parse_mem(b, len, &d2, &e2);
        free(b);
        if (rc != rc2)
            fail_msg("%s: file %d (%s) vs mem %d (%s)", path, rc, e.msg, rc2,
                     e2.msg);
        assert_true(rc == 0 || rc == ERR_INVALID || rc == ERR_UNSUPPORTED);
        n++;
        ok += rc == 0;
    }
    pclose(ls);
    assert_true(n > 50);
    assert_true(ok > 30);
}

/* Names come back as UTF-8, converted from the file's character set. */
static void test_charsets(void **state)
{
    (void)state;
    static const struct {
        const char *file, *name;
    } cs[] = {
        {"chrFren.dcm", "Buc^J\u00e9r\u00f4me"},           /* ISO_IR 100 */
        {"chrGerm.dcm", "\u00c4neas^R\u00fcdiger"},        /* ISO_IR 100 */
        {"chrGreek.dcm", "\u0394\u03b9\u03bf\u03bd\u03c5\u03c3\u03b9"
                         "\u03bf\u03c2"},                /* ISO_IR 126 */
        {"chrX1.dcm", "Wang^XiaoDong=\u738b^\u5c0f\u6771="}, /* IR 192 */
        {"chrI2.dcm", "Hong^Gildong=\u6d2a^\u5409\u6d1e=\ud64d^\uae38"
                      "\ub3d9"},                      /* ISO 2022 IR 149 */
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        struct dcm_info d;
        struct err e = {0};
        const char *path = P(PYDICOM_CHARSETS, cs[i].file);
        if (dicom_parse_file(path, &d, &e) != 0)
            fail_msg("%s: %s", cs[i].file, e.msg);
        assert_string_equal(d.patient_name, cs[i].name);
    }
    /* ISO 2022 IR 87 (Japanese) is beyond glibc iconv in DCMTK: the name
     * comes back with its escape bytes replaced, still valid UTF-8. */
    struct dcm_info d;
    struct err e = {0};
    assert_int_equal(dicom_parse_file(P(PYDICOM_CHARSETS, "chrH31.dcm"), &d,
                                      &e), 0);
    assert_non_null(strstr(d.patient_name, "Yamada^Tarou="));
    assert_null(strchr(d.patient_name, 0x1b));
}

/* ---- render ----------------------------------------------------------- */

static unsigned char *render(const char *path, int mode, double c, double w,
                             int mw, int mh, size_t *len, int *ow, int *oh)
{
    struct dcm_render_opts o = {0};
    o.window_mode = mode;
    o.center = c;
    o.width = w;
    o.max_width = mw;
    o.max_height = mh;
    unsigned char *j = NULL;
    struct err e = {0};
    int rc = dicom_render_jpeg(path, &o, &j, len, ow, oh, &e);
    if (rc)
        fail_msg("render %s: %d %s", path, rc, e.msg);
    int sw = 0, sh = 0;
    jpeg_size(j, *len, &sw, &sh);
    assert_int_equal(sw, *ow);
    assert_int_equal(sh, *oh);
    return j;
}

static void test_render_ct(void **state)
{
    (void)state;
    size_t n1, n2, n3;
    int w, h;
    unsigned char *a = render(ct(2), DCM_WINDOW_DEFAULT, 0, 0, 0, 0, &n1, &w,
                              &h);
    assert_int_equal(w, 512);
    assert_int_equal(h, 512);
    /* a flat 512x512 JPEG is a few kB; the phantom with noise is not */
    assert_true(n1 > 20000);

    unsigned char *b = render(ct(2), DCM_WINDOW_EXPLICIT, 500, 2000, 0, 0,
                              &n2, &w, &h);
    assert_true(n2 > 5000);
    assert_true(n1 != n2 || memcmp(a, b, n1) != 0);

    /* the file's default window is its first one: brain 40/80 */
    unsigned char *c = render(ct(2), DCM_WINDOW_EXPLICIT, 40, 80, 0, 0, &n3,
                              &w, &h);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, c, n1);
    free(a);
    free(b);
    free(c);

    a = render(ct(2), DCM_WINDOW_MINMAX, 0, 0, 256, 256, &n1, &w, &h);
    assert_int_equal(w, 256);
    assert_int_equal(h, 256);
    free(a);
    a = render(ct(2), DCM_WINDOW_DEFAULT, 0, 0, 100, 50, &n1, &w, &h);
    assert_int_equal(w, 50);
    assert_int_equal(h, 50);
    free(a);
    a = render(ct(2), DCM_WINDOW_DEFAULT, 0, 0, 300, 0, &n1, &w, &h);
    assert_int_equal(w, 300);
    assert_int_equal(h, 300);
    free(a);
    /* never scaled up */
    a = render(ct(2), DCM_WINDOW_DEFAULT, 0, 0, 4096, 4096, &n1, &w, &h);
    assert_int_equal(w, 512);
    free(a);

    /* scaling keeps the window: two windows still differ when scaled */
    a = render(ct(2), DCM_WINDOW_EXPLICIT, 40, 80, 128, 128, &n1, &w, &h);
    b = render(ct(2), DCM_WINDOW_EXPLICIT, -600, 1500, 128, 128, &n2, &w,
               &h);
    assert_true(n1 != n2 || memcmp(a, b, n1) != 0);
    free(a);
    free(b);
}

static void test_render_quality(void **state)
{
    (void)state;
    struct dcm_render_opts o = {0};
    unsigned char *lo = NULL, *hi = NULL;
    size_t nlo, nhi;
    struct err e = {0};
    o.quality = 20;
    assert_int_equal(dicom_render_jpeg(ct(1), &o, &lo, &nlo, NULL, NULL, &e),
                     0);
    o.quality = 98;
    assert_int_equal(dicom_render_jpeg(ct(1), &o, &hi, &nhi, NULL, NULL, &e),
                     0);
    assert_true(nlo * 2 < nhi);
    free(lo);
    free(hi);
}

static void test_presets(void **state)
{
    (void)state;
    const char *names[] = {"brain", "subdural", "stroke", "bone", "lung",
                           "abdomen"};
    const double cw[][2] = {{40, 80}, {75, 215}, {40, 40}, {500, 2000},
                            {-600, 1500}, {60, 400}};
    size_t sizes[6];
    for (int i = 0; i < 6; i++) {
        double c = 0, w = 0;
        assert_int_equal(dicom_window_preset(names[i], &c, &w), 0);
        assert_true(c == cw[i][0] && w == cw[i][1]);
        int ow, oh;
        unsigned char *j = render(ct(2), DCM_WINDOW_EXPLICIT, c, w, 0, 0,
                                  &sizes[i], &ow, &oh);
        free(j);
    }
    assert_true(sizes[0] != sizes[3]);   /* brain vs bone */
    assert_true(sizes[3] != sizes[4]);   /* bone vs lung */
    double c, w;
    assert_int_equal(dicom_window_preset("liver", &c, &w), ERR_NOTFOUND);
    assert_int_equal(dicom_window_preset("", &c, &w), ERR_NOTFOUND);
    assert_int_equal(dicom_window_preset(NULL, &c, &w), ERR_NOTFOUND);
}

static void test_render_variety(void **state)
{
    (void)state;
    const char *files[] = {"MR_small.dcm", "MR_small_RLE.dcm",
                           "MR_small_jpeg_ls_lossless.dcm",
                           "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                           "image_dfl.dcm", "JPEG-lossy.dcm",
                           "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm",
                           "SC_rgb_small_odd.dcm", "CT_small.dcm",
                           "rtdose.dcm", "SC_rgb_rle_2frame.dcm"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        struct dcm_info d;
        struct err e = {0};
        const char *path = P(PYDICOM_FILES, files[i]);
        if (dicom_parse_file(path, &d, &e) != 0)
            fail_msg("%s: %s", files[i], e.msg);
        size_t n;
        int w, h;
        unsigned char *j = render(path, DCM_WINDOW_DEFAULT, 0, 0, 0, 0, &n,
                                  &w, &h);
        assert_int_equal(w, d.columns);
        assert_int_equal(h, d.rows);
        free(j);
    }
    /* the second frame of a two-frame file, and no third */
    size_t n;
    int w, h;
    struct dcm_render_opts o = {0};
    o.frame = 1;
    unsigned char *j = NULL;
    struct err e = {0};
    char two[PATH_MAX];
    keep(two, PYDICOM_FILES, "SC_rgb_rle_2frame.dcm");
    assert_int_equal(dicom_render_jpeg(two, &o, &j, &n, &w, &h, &e), 0);
    free(j);
    o.frame = 2;
    assert_int_equal(dicom_render_jpeg(two, &o, &j, &n, &w, &h, &e),
                     ERR_NOTFOUND);
}

static void test_render_errors(void **state)
{
    (void)state;
    struct dcm_render_opts o = {0};
    unsigned char *j = NULL;
    size_t n = 0;
    struct err e = {0};
    o.frame = 1;
    assert_int_equal(dicom_render_jpeg(ct(1), &o, &j, &n, NULL, NULL, &e),
                     ERR_NOTFOUND);
    o.frame = -1;
    assert_int_equal(dicom_render_jpeg(ct(1), &o, &j, &n, NULL, NULL, &e),
                     ERR_NOTFOUND);
    o.frame = 0;
    o.window_mode = DCM_WINDOW_EXPLICIT;
    o.width = 0;
    assert_int_equal(dicom_render_jpeg(ct(1), &o, &j, &n, NULL, NULL, &e),
                     ERR_INVALID);
    o.window_mode = DCM_WINDOW_DEFAULT;
    assert_int_equal(dicom_render_jpeg(P(PYDICOM_FILES, "JPEG2000.dcm"), &o,
                                       &j, &n, NULL, NULL, &e),
                     ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "JPEG 2000"));
    assert_int_equal(dicom_render_jpeg(P(PYDICOM_FILES, "rtplan.dcm"), &o,
                                       &j, &n, NULL, NULL, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "no pixel data"));
    char bad[PATH_MAX];
    snprintf(bad, sizeof bad, "%s/bad", fx);
    assert_int_equal(dicom_render_jpeg(P(bad, "huge_length.dcm"), &o, &j, &n,
                                       NULL, NULL, &e), ERR_INVALID);
    assert_int_equal(dicom_render_jpeg(P(bad, "truncated.dcm"), &o, &j, &n,
                                       NULL, NULL, &e), ERR_INVALID);
    /* a frame too large to decode is refused before anything is decoded
     * (a few bytes of JPEG-LS could claim as much) */
    assert_int_equal(dicom_render_jpeg(P(bad, "huge_frame.dcm"), &o, &j, &n,
                                       NULL, NULL, &e), ERR_TOOBIG);
    assert_null(j);
}

/* ---- render: fast path against DCMTK ----------------------------------- */

/* The fast path (dicom.h, DCM_RENDER_FAST) must give the 8-bit values
 * DCMTK gives.  Tolerance: at most 1 grey level per pixel, in at most
 * 0.1% of the pixels.  Both compute the same double-precision expressions
 * (rescale truncated to an integer, then the linear VOI function) and
 * agree exactly today; one level is the most a different rounding of the
 * same arithmetic could move a value, so a larger difference is a real
 * disagreement, and more than a few pixels off by one would be a shifted
 * formula rather than rounding. */

static char rfx[PATH_MAX];      /* render_fixtures.py's output */

static const char *R(const char *name)
{
    if (!rfx[0]) {
        const char *root = getenv("HASHI_ROOT");
        char script[PATH_MAX];
        snprintf(rfx, sizeof rfx, "%s/render", fx);
        keep(script, root ? root : ".", "tests/unit/render_fixtures.py");
        if (run("/usr/bin/python3 '%s' '%s'", script, rfx) != 0)
            fail_msg("render_fixtures.py failed");
    }
    return P(rfx, name);
}

struct pix {
    unsigned char *p;
    int w, h, c;
};

static int pixels(const char *path, struct dcm_render_opts o, int engine,
                  struct pix *px, struct err *e)
{
    o.engine = engine;
    memset(px, 0, sizeof *px);
    return dicom_render_pixels(path, &o, &px->p, &px->w, &px->h, &px->c, e);
}

static struct dcm_render_opts ropts(int mode, double c, double w, int frame)
{
    struct dcm_render_opts o = {0};
    o.window_mode = mode;
    o.center = c;
    o.width = w;
    o.frame = frame;
    return o;
}

/* Fast and DCMTK renders of path under o agree within the tolerance;
 * when exactly equal, their JPEGs are byte for byte the same too. */
static void expect_same_as_dcmtk(const char *path, struct dcm_render_opts o)
{
    struct pix a, b;
    struct err e = {0};
    if (pixels(path, o, DCM_RENDER_FAST, &a, &e))
        fail_msg("%s (window %d %g/%g, frame %d): fast path: %s", path,
                 o.window_mode, o.center, o.width, o.frame, e.msg);
    if (pixels(path, o, DCM_RENDER_DCMTK, &b, &e))
        fail_msg("%s: DCMTK: %s", path, e.msg);
    assert_int_equal(a.w, b.w);
    assert_int_equal(a.h, b.h);
    assert_int_equal(a.c, 1);
    assert_int_equal(b.c, 1);
    size_t n = (size_t)a.w * a.h, off = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(a.p[i] - b.p[i]);
        if (d > 1)
            fail_msg("%s (window %d %g/%g, frame %d): pixel %zu is %d, "
                     "DCMTK %d", path, o.window_mode, o.center, o.width,
                     o.frame, i, a.p[i], b.p[i]);
        off += d;
    }
    if (off * 1000 > n)
        fail_msg("%s: %zu of %zu pixels off by one", path, off, n);
    if (off == 0) {
        unsigned char *ja, *jb;
        size_t na, nb;
        o.engine = DCM_RENDER_AUTO;
        assert_int_equal(dicom_render_jpeg(path, &o, &ja, &na, NULL, NULL,
                                           &e), 0);
        o.engine = DCM_RENDER_DCMTK;
        assert_int_equal(dicom_render_jpeg(path, &o, &jb, &nb, NULL, NULL,
                                           &e), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(ja, jb, na);
        free(ja);
        free(jb);
    }
    free(a.p);
    free(b.p);
}

static void test_render_fast_equals_dcmtk(void **state)
{
    (void)state;
    /* the file's window (or min/max), min/max, presets and odd ones: a
     * window of width 1, a fractional one, one far from every value */
    const double win[][3] = {
        {DCM_WINDOW_DEFAULT, 0, 0}, {DCM_WINDOW_MINMAX, 0, 0},
        {DCM_WINDOW_EXPLICIT, 40, 80}, {DCM_WINDOW_EXPLICIT, 500, 2000},
        {DCM_WINDOW_EXPLICIT, -600, 1500}, {DCM_WINDOW_EXPLICIT, 0.5, 1},
        {DCM_WINDOW_EXPLICIT, 100.3, 7.7}, {DCM_WINDOW_EXPLICIT, 1e6, 10},
    };
    const int nwin = (int)(sizeof win / sizeof *win);
    char files[16][PATH_MAX];
    int frames[16], nf = 0;
    for (int i = 1; i <= 3; i++) {
        frames[nf] = 1;
        keep(files[nf++], fx, ct(i) + strlen(fx) + 1);
    }
    const char *pyd[] = {"CT_small.dcm", "MR_small.dcm",
                         "MR_small_implicit.dcm", "MR_small_padded.dcm"};
    for (size_t i = 0; i < sizeof pyd / sizeof *pyd; i++) {
        frames[nf] = 1;
        keep(files[nf++], PYDICOM_FILES, pyd[i]);
    }
    const struct {
        const char *name;
        int frames;
    } gen[] = {{"mono1_u12.dcm", 1}, {"s12_hb15_impl.dcm", 1},
               {"u8_odd.dcm", 1}, {"s8_mono1_mf.dcm", 3}, {"u16_mf.dcm", 4},
               {"flat.dcm", 1}, {"tall.dcm", 1}};
    for (size_t i = 0; i < sizeof gen / sizeof *gen; i++) {
        frames[nf] = gen[i].frames;
        snprintf(files[nf++], PATH_MAX, "%s", R(gen[i].name));
    }
    for (int f = 0; f < nf; f++)
        for (int fr = 0; fr < frames[f]; fr++)
            for (int k = 0; k < nwin; k++) {
                /* every window on the first frame, two on the others */
                if (fr > 0 && k > 1)
                    break;
                expect_same_as_dcmtk(files[f], ropts((int)win[k][0],
                                                     win[k][1], win[k][2],
                                                     fr));
            }
}

/* Images the fast path does not render like DCMTK: it says why, and the
 * default engine hands them to DCMTK (same pixels as DCMTK alone). */
static void test_render_fast_declines(void **state)
{
    (void)state;
    const struct {
        const char *file;
        const char *why;
    } cases[] = {
        {"sigmoid.dcm", "VOI LUT function"}, {"modlut.dcm", "modality LUT"},
        {"slope_only.dcm", "rescale"}, {"width_half.dcm", "window"},
        {"overlay.dcm", "overlay"}, {"presshape.dcm", "presentation LUT"},
        {"frac_rescale.dcm", "non-integer"},
        {"huge_slope.dcm", "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = R(cases[i].file);
        struct pix a, b;
        struct err e = {0};
        struct dcm_render_opts o = ropts(DCM_WINDOW_DEFAULT, 0, 0, 0);
        assert_int_equal(pixels(path, o, DCM_RENDER_FAST, &a, &e),
                         ERR_UNSUPPORTED);
        assert_null(a.p);
        if (!strstr(e.msg, cases[i].why))
            fail_msg("%s: \"%s\"", cases[i].file, e.msg);
        assert_int_equal(pixels(path, o, DCM_RENDER_AUTO, &a, &e), 0);
        assert_int_equal(pixels(path, o, DCM_RENDER_DCMTK, &b, &e), 0);
        assert_int_equal(a.w * a.h, b.w * b.h);
        assert_memory_equal(a.p, b.p, (size_t)a.w * a.h);
        free(a.p);
        free(b.p);
    }
    /* a width under 1 in the file only matters for the file's window */
    expect_same_as_dcmtk(R("width_half.dcm"),
                         ropts(DCM_WINDOW_EXPLICIT, 100, 50, 0));
    /* compressed, big endian, colour, 1 and 32 bits: DCMTK's */
    const char *other[] = {"MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                           "MR_small_bigendian.dcm", "SC_rgb_small_odd.dcm",
                           "liver_1frame.dcm", "rtdose_1frame.dcm",
                           "image_dfl.dcm"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        struct pix a;
        struct err e = {0};
        assert_int_equal(pixels(P(PYDICOM_FILES, other[i]),
                                ropts(DCM_WINDOW_DEFAULT, 0, 0, 0),
                                DCM_RENDER_FAST, &a, &e), ERR_UNSUPPORTED);
        assert_int_equal(pixels(P(PYDICOM_FILES, other[i]),
                                ropts(DCM_WINDOW_DEFAULT, 0, 0, 0),
                                DCM_RENDER_AUTO, &a, &e), 0);
        free(a.p);
    }
    /* errors are the same whichever engine: frame out of range, a bad
     * engine */
    struct pix a;
    struct err e = {0};
    assert_int_equal(pixels(R("u16_mf.dcm"), ropts(0, 0, 0, 4),
                            DCM_RENDER_FAST, &a, &e), ERR_NOTFOUND);
    assert_int_equal(pixels(R("u16_mf.dcm"), ropts(0, 0, 0, 4),
                            DCM_RENDER_DCMTK, &a, &e), ERR_NOTFOUND);
    assert_int_equal(pixels(R("u16_mf.dcm"), ropts(0, 0, 0, 0), 7, &a, &e),
                     ERR_INVALID);
    assert_int_equal(pixels(R("u16_mf.dcm"),
                            ropts(DCM_WINDOW_EXPLICIT, 0.0 / 0.0, 10, 0),
                            DCM_RENDER_FAST, &a, &e), ERR_INVALID);
}

/* Scaled down.  The fast path averages areas of the windowed 8-bit image;
 * DCMTK scales before windowing.  With the min/max window (linear over
 * every value) the two orders agree within a grey level; with a narrow
 * window they differ at edges (clamping before or after averaging), so
 * only the size and a small mean difference are checked there. */
static void test_render_fast_scaled(void **state)
{
    (void)state;
    const int vp[][2] = {{256, 256}, {100, 50}, {300, 0}, {496, 496}};
    for (size_t i = 0; i < sizeof vp / sizeof *vp; i++)
        for (int narrow = 0; narrow < 2; narrow++) {
            struct dcm_render_opts o = narrow ?
                ropts(DCM_WINDOW_EXPLICIT, 40, 80, 0) :
                ropts(DCM_WINDOW_MINMAX, 0, 0, 0);
            o.max_width = vp[i][0];
            o.max_height = vp[i][1];
            struct pix a, b;
            struct err e = {0};
            assert_int_equal(pixels(ct(2), o, DCM_RENDER_FAST, &a, &e), 0);
            assert_int_equal(pixels(ct(2), o, DCM_RENDER_DCMTK, &b, &e), 0);
            assert_int_equal(a.w, b.w);
            assert_int_equal(a.h, b.h);
            size_t n = (size_t)a.w * a.h;
            double sum = 0;
            for (size_t k = 0; k < n; k++) {
                int d = abs(a.p[k] - b.p[k]);
                if (!narrow && d > 1)
                    fail_msg("%dx%d: pixel %zu is %d, DCMTK %d", a.w, a.h,
                             k, a.p[k], b.p[k]);
                sum += d;
            }
            if (sum / n > (narrow ? 8.0 : 0.5))
                fail_msg("%dx%d: mean difference %.2f", a.w, a.h, sum / n);
            free(a.p);
            free(b.p);
        }
}

/* Decode a JPEG with libjpeg; fails the test on any libjpeg warning
 * (a corrupt restart marker is one). */
static unsigned char *jpeg_decode(const unsigned char *j, size_t n, int *w,
                                  int *h)
{
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr em;
    d.err = jpeg_std_error(&em);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, j, (unsigned long)n);
    assert_int_equal(jpeg_read_header(&d, TRUE), JPEG_HEADER_OK);
    jpeg_start_decompress(&d);
    assert_int_equal(d.output_components, 1);
    *w = (int)d.output_width;
    *h = (int)d.output_height;
    unsigned char *p = malloc((size_t)*w * *h);
    assert_non_null(p);
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = p + (size_t)d.output_scanline * *w;
        jpeg_read_scanlines(&d, &r, 1);
    }
    jpeg_finish_decompress(&d);
    assert_int_equal(em.num_warnings, 0);
    jpeg_destroy_decompress(&d);
    return p;
}

/* One plain JPEG of the same pixels, as a reference. */
static unsigned char *jpeg_plain(const unsigned char *pix, int w, int h,
                                 size_t *len)
{
    return tj_encode(pix, w, h, 1, 90, 0, NULL, 0, len);
}

static int has_marker(const unsigned char *j, size_t n, unsigned m)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (j[i] == 0xFF && j[i + 1] == m)
            return 1;
    return 0;
}

/* Tall grey JPEGs are encoded in strips on two threads and spliced with
 * restart markers, or, when the helper thread is not keeping up, in one
 * encode with the same restart interval: byte for byte the same JPEG
 * (its ETag names the bytes), which decodes, without a warning, to
 * exactly what one plain encode of the same pixels decodes to. */
static unsigned char *jpeg_with(const char *mode, const char *path,
                                size_t *n)
{
    struct dcm_render_opts o = ropts(DCM_WINDOW_DEFAULT, 0, 0, 0);
    struct err e = {0};
    unsigned char *j = NULL;
    int w, h;
    setenv("HASHI_RENDER_STRIPS", mode, 1);
    if (dicom_render_jpeg(path, &o, &j, n, &w, &h, &e))
        fail_msg("%s (strips %s): %s", path, mode, e.msg);
    unsetenv("HASHI_RENDER_STRIPS");
    return j;
}

static void test_render_strips(void **state)
{
    (void)state;
    const char *files[] = {ct(1), R("tall.dcm"), R("u8_odd.dcm")};
    const int strips[] = {1, 1, 0};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s", files[i]);
        struct pix px;
        struct err e = {0};
        size_t n, n1, nref, nplain;
        int w, h, rw, rh;
        /* apart (the helper, or the caller alone, encoding strips) */
        unsigned char *j = jpeg_with("1", path, &n);
        /* one encode with restart intervals; the default */
        unsigned char *j1 = jpeg_with("one", path, &n1);
        assert_int_equal(n, n1);
        assert_memory_equal(j, j1, n);
        free(j1);
        j1 = jpeg_with("auto", path, &n1);
        assert_int_equal(n, n1);
        assert_memory_equal(j, j1, n);
        free(j1);
        assert_int_equal(has_marker(j, n, 0xDD), strips[i]);   /* DRI */
        assert_int_equal(has_marker(j, n, 0xD0), strips[i]);   /* RST0 */
        /* no strips at all: a plain JPEG, the same once decoded */
        unsigned char *plain = jpeg_with("0", path, &nplain);
        assert_int_equal(has_marker(plain, nplain, 0xDD), 0);
        assert_int_equal(pixels(path, ropts(DCM_WINDOW_DEFAULT, 0, 0, 0),
                                DCM_RENDER_AUTO, &px, &e), 0);
        unsigned char *ref = jpeg_plain(px.p, px.w, px.h, &nref);
        unsigned char *dj = jpeg_decode(j, n, &w, &h);
        unsigned char *dr = jpeg_decode(ref, nref, &rw, &rh);
        unsigned char *dp = jpeg_decode(plain, nplain, &rw, &rh);
        assert_int_equal(w, px.w);
        assert_int_equal(h, px.h);
        assert_int_equal(rw, w);
        assert_int_equal(rh, h);
        assert_memory_equal(dj, dr, (size_t)w * h);
        assert_memory_equal(dp, dr, (size_t)w * h);
        free(dj);
        free(dr);
        free(dp);
        free(ref);
        free(plain);
        free(j);
        free(px.p);
    }
}

/* Renders and parses from several threads at once give the same bytes as
 * one thread (each call uses its own DCMTK objects). */
struct thr {
    const unsigned char *ref;
    size_t ref_len;
    char one[PATH_MAX], two[PATH_MAX];  /* ct() is not thread-safe */
    int bad;
};

static void *render_worker(void *p)
{
    struct thr *t = p;
    for (int i = 0; i < 6; i++) {
        struct dcm_render_opts o = {0};
        unsigned char *j = NULL;
        size_t n = 0;
        struct err e = {0};
        struct dcm_info d;
        if (dicom_render_jpeg(t->one, &o, &j, &n, NULL, NULL, &e) != 0 ||
            n != t->ref_len || memcmp(j, t->ref, n) != 0)
            t->bad++;
        free(j);
        if (dicom_parse_file(t->two, &d, &e) != 0 || d.instance_number != 2)
            t->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    size_t n;
    int w, h;
    unsigned char *ref = render(ct(1), DCM_WINDOW_DEFAULT, 0, 0, 0, 0, &n, &w,
                                &h);
    pthread_t th[4];
    static struct thr t[4];
    for (int i = 0; i < 4; i++) {
        t[i].ref = ref;
        t[i].ref_len = n;
        t[i].bad = 0;
        if (snprintf(t[i].one, PATH_MAX, "%s", ct(1)) >= PATH_MAX ||
            snprintf(t[i].two, PATH_MAX, "%s", ct(2)) >= PATH_MAX)
            fail_msg("path too long");
        assert_int_equal(pthread_create(&th[i], NULL, render_worker, &t[i]),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].bad, 0);
    }
    free(ref);
}

/* A corrupt RLE header (segment offset past the fragment) crashed DCMTK's
 * decoder in fuzzing; it must be refused instead. */
static void test_rle_corrupt(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = slurp(P(PYDICOM_FILES, "MR_small_RLE.dcm"), &n);
    static const unsigned char hdr[] = {2, 0, 0, 0, 64, 0, 0, 0};
    unsigned char *at = NULL;
    for (size_t i = 0; !at && i + sizeof hdr <= n; i++)
        if (memcmp(b + i, hdr, sizeof hdr) == 0)
            at = b + i;
    assert_non_null(at);
    char path[PATH_MAX], out[PATH_MAX], sha[65];
    keep(path, tmp, "rle_bad.dcm");
    keep(out, tmp, "rle_bad_out.dcm");
    static const uint32_t offs[] = {0x2900079c, 0x3f, 0x100000};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        memcpy(at + 8, &offs[i], 4);           /* segment 2's offset */
        spit(path, b, n);
        struct dcm_info d;
        struct err e = {0};
        assert_int_equal(dicom_parse_file(path, &d, &e), 0);
        struct dcm_render_opts o = {0};
        unsigned char *j = NULL;
        size_t jl;
        assert_int_equal(dicom_render_jpeg(path, &o, &j, &jl, NULL, NULL,
                                           &e), ERR_INVALID);
        assert_non_null(strstr(e.msg, "RLE"));
        assert_int_equal(dicom_transcode_jpegls(path, out, &e), ERR_INVALID);
        assert_int_equal(dicom_transcode_explicit_le(path, out, &e),
                         ERR_INVALID);
        assert_int_equal(dicom_pixel_sha256(path, sha, &e), ERR_INVALID);
    }
    /* segment 1 made of literal runs that outrun it: it expands to less
     * than a plane before its end */
    memcpy(at + 8, &(uint32_t){0x0000079c}, 4);
    memset(at + 64, 0x7f, 0x79c - 64);
    spit(path, b, n);
    struct err e = {0};
    struct dcm_render_opts o = {0};
    unsigned char *j = NULL;
    size_t jl;
    assert_int_equal(dicom_render_jpeg(path, &o, &j, &jl, NULL, NULL, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "segment 1"));
    free(b);
}

/* ---- transcode -------------------------------------------------------- */

static off_t fsize(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

static void sha_of(const char *path, char out[65])
{
    struct err e = {0};
    if (dicom_pixel_sha256(path, out, &e) != 0)
        fail_msg("pixel sha %s: %s", path, e.msg);
}

static void test_transcode_roundtrip(void **state)
{
    (void)state;
    struct err e = {0};
    char s0[65], s1[65], s2[65];
    char jls[PATH_MAX], le[PATH_MAX];
    keep(jls, tmp, "ct.jls.dcm");
    keep(le, tmp, "ct.le.dcm");
    sha_of(ct(3), s0);
    if (dicom_transcode_jpegls(ct(3), jls, &e) != 0)
        fail_msg("jpegls: %s", e.msg);
    struct dcm_info a, b;
    assert_int_equal(dicom_parse_file(ct(3), &a, &e), 0);
    assert_int_equal(dicom_parse_file(jls, &b, &e), 0);
    assert_string_equal(b.transfer_syntax, DICOM_TS_JPEGLS_LOSSLESS);
    assert_string_equal(a.sop_uid, b.sop_uid);
    assert_true(fsize(jls) < fsize(ct(3)) * 3 / 4);
    sha_of(jls, s1);
    assert_string_equal(s0, s1);

    if (dicom_transcode_explicit_le(jls, le, &e) != 0)
        fail_msg("explicit le: %s", e.msg);
    assert_int_equal(dicom_parse_file(le, &b, &e), 0);
    assert_string_equal(b.transfer_syntax, DICOM_TS_EXPLICIT_LE);
    sha_of(le, s2);
    assert_string_equal(s0, s2);
    /* the pixel bytes are the file's own: sha over the raw value */
    size_t n;
    unsigned char *raw = slurp(ct(3), &n);
    char direct[65];
    sha256_hex(raw + n - 512 * 512 * 2, 512 * 512 * 2, direct);
    free(raw);
    assert_string_equal(s0, direct);

    /* rendering the JPEG-LS copy gives the same JPEG as the original */
    size_t n1, n2;
    int w, h;
    unsigned char *j1 = render(ct(3), DCM_WINDOW_DEFAULT, 0, 0, 0, 0, &n1, &w,
                               &h);
    unsigned char *j2 = render(jls, DCM_WINDOW_DEFAULT, 0, 0, 0, 0, &n2, &w,
                               &h);
    assert_int_equal(n1, n2);
    assert_memory_equal(j1, j2, n1);
    free(j1);
    free(j2);
}

static void test_pixels_equal_across_encodings(void **state)
{
    (void)state;
    const char *fam[] = {"MR_small.dcm", "MR_small_RLE.dcm",
                         "MR_small_jpeg_ls_lossless.dcm",
                         "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                         "MR_small_implicit.dcm"};
    char s0[65], s[65];
    sha_of(P(PYDICOM_FILES, fam[0]), s0);
    for (size_t i = 1; i < sizeof fam / sizeof *fam; i++) {
        sha_of(P(PYDICOM_FILES, fam[i]), s);
        if (strcmp(s, s0) != 0)
            fail_msg("%s pixels differ from MR_small.dcm", fam[i]);
    }
    /* RLE -> JPEG-LS -> explicit LE keeps them */
    char jls[PATH_MAX], le[PATH_MAX];
    keep(jls, tmp, "mr.jls.dcm");
    keep(le, tmp, "mr.le.dcm");
    struct err e = {0};
    assert_int_equal(dicom_transcode_jpegls(P(PYDICOM_FILES,
                                              "MR_small_RLE.dcm"), jls, &e),
                     0);
    sha_of(jls, s);
    assert_string_equal(s, s0);
    assert_int_equal(dicom_transcode_explicit_le(jls, le, &e), 0);
    sha_of(le, s);
    assert_string_equal(s, s0);
    /* colour, two frames, RLE -> JPEG-LS */
    char rgb[PATH_MAX];
    keep(rgb, PYDICOM_FILES, "SC_rgb_rle_2frame.dcm");
    sha_of(rgb, s0);
    assert_int_equal(dicom_transcode_jpegls(rgb, jls, &e), 0);
    sha_of(jls, s);
    assert_string_equal(s, s0);
}

static void test_transcode_refused(void **state)
{
    (void)state;
    struct err e = {0};
    char out[PATH_MAX];
    keep(out, tmp, "refused.dcm");
    char s[65];
    assert_int_equal(dicom_transcode_jpegls(P(PYDICOM_FILES, "rtplan.dcm"),
                                            out, &e), ERR_UNSUPPORTED);
    assert_int_equal(dicom_transcode_explicit_le(P(PYDICOM_FILES,
                                                   "rtplan.dcm"), out, &e),
                     ERR_UNSUPPORTED);
    assert_int_equal(dicom_transcode_jpegls(P(PYDICOM_FILES, "JPEG2000.dcm"),
                                            out, &e), ERR_UNSUPPORTED);
    assert_int_equal(dicom_transcode_explicit_le(
                         P(PYDICOM_FILES, "MR_small_jp2klossless.dcm"), out,
                         &e), ERR_UNSUPPORTED);
    assert_int_equal(dicom_pixel_sha256(P(PYDICOM_FILES, "JPEG2000.dcm"), s,
                                        &e), ERR_UNSUPPORTED);
    /* 32-bit RT dose does not fit JPEG-LS */
    assert_int_equal(dicom_transcode_jpegls(P(PYDICOM_FILES, "rtdose.dcm"),
                                            out, &e), ERR_UNSUPPORTED);
    /* YBR_FULL_422 is refused by the JPEG-LS encoder */
    assert_int_equal(dicom_transcode_jpegls(
                         P(PYDICOM_FILES, "SC_ybr_full_422_uncompressed.dcm"),
                         out, &e), ERR_UNSUPPORTED);
    char bad[PATH_MAX];
    snprintf(bad, sizeof bad, "%s/bad", fx);
    assert_int_equal(dicom_transcode_jpegls(P(bad, "huge_length.dcm"), out,
                                            &e), ERR_INVALID);
    assert_int_equal(dicom_transcode_jpegls(P(bad, "huge_frame.dcm"), out,
                                            &e), ERR_TOOBIG);
    assert_int_equal(dicom_pixel_sha256(P(bad, "huge_frame.dcm"), s, &e),
                     ERR_TOOBIG);
    assert_int_equal(access(out, F_OK), -1);
}

/* ---- C-STORE / C-ECHO listener ---------------------------------------- */

struct received {
    pthread_mutex_t mu;
    int count;
    char sop[8][65];
    char ae[32];
    char host[64];
    unsigned status;        /* what the callback answers */
};

static unsigned on_store(void *arg, const char *path, const char *ae,
                         const char *host, char comment[64])
{
    struct received *r = arg;
    struct dcm_info d;
    struct err e = {0};
    int rc = dicom_parse_file(path, &d, &e);
    unlink(path);
    pthread_mutex_lock(&r->mu);
    unsigned st = r->status;
    if (rc == 0 && r->count < 8)
        snprintf(r->sop[r->count], 65, "%s", d.sop_uid);
    r->count++;
    snprintf(r->ae, sizeof r->ae, "%s", ae);
    snprintf(r->host, sizeof r->host, "%s", host);
    pthread_mutex_unlock(&r->mu);
    if (rc != 0) {
        snprintf(comment, 64, "%.63s", e.msg);
        return DICOM_STATUS_DATASET_MISMATCH;
    }
    if (st != DICOM_STATUS_SUCCESS)
        snprintf(comment, 64, "refused by test");
    return st;
}

static int on_accept(void *arg, const char *ae, const char *host)
{
    (void)arg;
    (void)host;
    return strcmp(ae, "BADAE") != 0;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static int count_files(const char *dir)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* A listener configuration on a free port with its own spool dir. */
static void scp_cfg(struct dicom_scp_cfg *cfg, char spool[PATH_MAX],
                    const char *name, void *arg)
{
    snprintf(spool, PATH_MAX, "%s/%s", tmp, name);
    mkdir(spool, 0700);
    memset(cfg, 0, sizeof *cfg);
    cfg->port = free_port();
    cfg->ae_title = "HASHI";
    cfg->tmp_dir = spool;
    cfg->arg = arg;
}

/* An IPv4 address of this host that is not loopback, or "". */
static void other_ip(char *ip, size_t n)
{
    ip[0] = 0;
    FILE *hp = popen("hostname -I 2>/dev/null | tr ' ' '\\n' | "
                     "grep -v : | grep -v '^127\\.' | head -1", "r");
    if (!hp)
        return;
    if (!fgets(ip, (int)n, hp))
        ip[0] = 0;
    ip[strcspn(ip, "\n")] = 0;
    pclose(hp);
}

static void test_scp(void **state)
{
    (void)state;
    struct received r = {.mu = PTHREAD_MUTEX_INITIALIZER,
                         .status = DICOM_STATUS_SUCCESS};
    char spool[PATH_MAX];
    struct dicom_scp_cfg cfg;
    scp_cfg(&cfg, spool, "scp", &r);
    cfg.loopback_only = 1;
    cfg.dimse_timeout = 10;
    cfg.accept = on_accept;
    cfg.store = on_store;
    struct err e = {0};
    struct dicom_scp *scp = dicom_scp_start(&cfg, &e);
    if (!scp)
        fail_msg("scp start: %s", e.msg);

    /* the port is bound when start returns: a second listener fails */
    struct dicom_scp *dup = dicom_scp_start(&cfg, &e);
    assert_null(dup);
    assert_int_equal(e.code, ERR_IO);

    assert_int_equal(run("TCP_NODELAY=1 echoscu -q -aet TESTSCU -aec HASHI "
                         "127.0.0.1 %d", cfg.port), 0);
    assert_int_equal(run("TCP_NODELAY=1 storescu -q -aet TESTSCU -aec HASHI "
                         "127.0.0.1 %d '%s' '%s'", cfg.port, ct(1), ct(2)),
                     0);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.sop[0], want("sop_uid"));
    assert_string_not_equal(r.sop[1], r.sop[0]);
    assert_string_equal(r.ae, "TESTSCU");
    assert_string_equal(r.host, "127.0.0.1");
    pthread_mutex_unlock(&r.mu);
    assert_int_equal(count_files(spool), 0);   /* callback took them */

    /* a compressed instance over a JPEG-LS presentation context */
    char jls[PATH_MAX];
    keep(jls, tmp, "scp.jls.dcm");
    assert_int_equal(dicom_transcode_jpegls(ct(3), jls, &e), 0);
    assert_int_equal(run("TCP_NODELAY=1 storescu -q -xt -aet TESTSCU "
                         "-aec HASHI 127.0.0.1 %d '%s'", cfg.port, jls), 0);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.count, 3);
    pthread_mutex_unlock(&r.mu);

    /* deflated, implicit VR and RLE presentation contexts */
    assert_int_equal(run("TCP_NODELAY=1 storescu -q -xd -aet TESTSCU "
                         "-aec HASHI 127.0.0.1 %d '%s'", cfg.port, ct(2)), 0);
    assert_int_equal(run("TCP_NODELAY=1 storescu -q -xi -aet TESTSCU "
                         "-aec HASHI 127.0.0.1 %d '%s'", cfg.port, ct(3)), 0);
    assert_int_equal(run("TCP_NODELAY=1 storescu -q -xr -aet TESTSCU "
                         "-aec HASHI 127.0.0.1 %d '%s'", cfg.port,
                         P(PYDICOM_FILES, "MR_small_RLE.dcm")), 0);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.count, 6);
    assert_string_equal(r.sop[5], MR_SOP);
    assert_string_equal(r.sop[3], r.sop[1]);
    pthread_mutex_unlock(&r.mu);

    /* an unknown calling AE is refused at association time */
    assert_int_not_equal(run("TCP_NODELAY=1 storescu -q -aet BADAE "
                             "-aec HASHI 127.0.0.1 %d '%s' 2>/dev/null",
                             cfg.port, ct(1)), 0);
    assert_int_not_equal(run("TCP_NODELAY=1 echoscu -q -aet BADAE -aec HASHI "
                             "127.0.0.1 %d 2>/dev/null", cfg.port), 0);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.count, 6);
    /* loopback_only: a peer on another address of this host is refused */
    char ip[64];
    other_ip(ip, sizeof ip);
    if (ip[0])
        assert_int_not_equal(run("TCP_NODELAY=1 echoscu -q -aet TESTSCU "
                                 "-aec HASHI %s %d 2>/dev/null", ip,
                                 cfg.port), 0);

    /* a failure status and comment from the callback reach the SCU */
    r.status = DICOM_STATUS_OUT_OF_RESOURCES;
    pthread_mutex_unlock(&r.mu);
    char log[PATH_MAX];
    keep(log, tmp, "storescu.log");
    run("TCP_NODELAY=1 storescu -d -aet TESTSCU -aec HASHI 127.0.0.1 %d "
        "'%s' >'%s' 2>&1", cfg.port, ct(1), log);
    assert_int_equal(run("grep -q 'DIMSE Status *: 0xa700' '%s'", log), 0);
    assert_int_equal(run("grep -q '(0000,0902) LO .refused by test' '%s'",
                         log), 0);
    assert_int_equal(count_files(spool), 0);

    /* stop is prompt, even with a peer connected that says nothing */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)cfg.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    usleep(200 * 1000);
    double t0 = now_mono();
    dicom_scp_stop(scp);
    double took = now_mono() - t0;
    close(s);
    if (took > 1.5)
        fail_msg("stop took %.2f s", took);

    /* and the port is free again */
    scp = dicom_scp_start(&cfg, &e);
    assert_non_null(scp);
    t0 = now_mono();
    dicom_scp_stop(scp);
    assert_true(now_mono() - t0 < 1.5);
    dicom_scp_stop(NULL);
}

/* Per-association contexts: open gives each association its own, the
 * store callback receives it (not cfg.arg), close comes once per opened
 * association, also for two associations running at once. */
struct assoc_ctx {
    struct received *r;
    char ae[17];
    int stores;
};

static int opens, closes, refused, ctx_stores, wrong_arg;

static int on_open(void *arg, const char *ae, const char *host, void **out)
{
    (void)host;
    struct received *r = arg;
    pthread_mutex_lock(&r->mu);
    int ok = strcmp(ae, "BADAE") != 0;
    if (ok)
        opens++;
    else
        refused++;
    pthread_mutex_unlock(&r->mu);
    if (!ok)
        return 0;
    struct assoc_ctx *c = calloc(1, sizeof *c);
    c->r = r;
    snprintf(c->ae, sizeof c->ae, "%s", ae);
    *out = c;
    return 1;
}

static unsigned on_store_ctx(void *arg, const char *path, const char *ae,
                             const char *host, char comment[64])
{
    (void)host;
    (void)comment;
    struct assoc_ctx *c = arg;
    unlink(path);
    pthread_mutex_lock(&c->r->mu);
    if (strcmp(c->ae, ae))
        wrong_arg++;
    c->stores++;
    ctx_stores++;
    pthread_mutex_unlock(&c->r->mu);
    return DICOM_STATUS_SUCCESS;
}

static void on_close(void *arg, void *assoc)
{
    struct received *r = arg;
    struct assoc_ctx *c = assoc;
    pthread_mutex_lock(&r->mu);
    closes++;
    if (c->r != r)
        wrong_arg++;
    pthread_mutex_unlock(&r->mu);
    free(c);
}

static void test_scp_contexts(void **state)
{
    (void)state;
    struct received r = {.mu = PTHREAD_MUTEX_INITIALIZER,
                         .status = DICOM_STATUS_SUCCESS};
    char spool[PATH_MAX];
    struct dicom_scp_cfg cfg;
    scp_cfg(&cfg, spool, "scp-ctx", &r);
    cfg.host = "127.0.0.1";
    cfg.store = on_store_ctx;
    cfg.open = on_open;
    cfg.close = on_close;
    struct err e = {0};
    struct dicom_scp *scp = dicom_scp_start(&cfg, &e);
    if (!scp)
        fail_msg("scp start: %s", e.msg);

    /* two associations at once, two instances each, and a refused one */
    assert_int_equal(run("TCP_NODELAY=1 storescu -q -aet ONE -aec HASHI "
                         "127.0.0.1 %d '%s' '%s' & p=$!; "
                         "TCP_NODELAY=1 storescu -q -aet TWO -aec HASHI "
                         "127.0.0.1 %d '%s' '%s'; b=$?; wait $p; "
                         "[ $? = 0 ] && [ $b = 0 ]", cfg.port, ct(1), ct(2),
                         cfg.port,
                         ct(3), ct(2)), 0);
    assert_int_not_equal(run("TCP_NODELAY=1 echoscu -q -aet BADAE -aec HASHI "
                             "127.0.0.1 %d 2>/dev/null", cfg.port), 0);
    dicom_scp_stop(scp);
    assert_int_equal(opens, 2);
    assert_int_equal(closes, 2);
    assert_int_equal(refused, 1);
    assert_int_equal(ctx_stores, 4);
    assert_int_equal(wrong_arg, 0);
    assert_int_equal(count_files(spool), 0);

    /* bound to 127.0.0.1 only: another address of this host is refused
     * at the TCP level (DcmSCP used to bind every interface) */
    char ip[64];
    other_ip(ip, sizeof ip);
    scp = dicom_scp_start(&cfg, &e);
    assert_non_null(scp);
    if (ip[0]) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)cfg.port);
        assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
        assert_int_not_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(errno, ECONNREFUSED);
        close(s);
    }
    dicom_scp_stop(scp);
}

static void test_scp_bad_config(void **state)
{
    (void)state;
    struct dicom_scp_cfg cfg = {0};
    struct err e = {0};
    assert_null(dicom_scp_start(&cfg, &e));
    assert_int_equal(e.code, ERR_INVALID);
    assert_null(dicom_scp_start(NULL, &e));
}

/* dicom_write_ct_slice: what it writes parses as CT Image Storage with
 * the given attributes, renders through both engines with HU = stored +
 * intercept in the brain window (its first window), and bad input is
 * refused.  Named test_render_* so the valgrind job runs it. */
static void test_render_ct_written(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    enum { R = 12, C = 16 };
    static const int hu[] = { -1000, 0, 20, 40, 60, 80, 1000, 3000 };
    int16_t px[R * C];
    for (int i = 0; i < R * C; i++)
        px[i] = (int16_t)(hu[i % 8] + 1024);
    char study[65], study2[65], sop[65];
    dicom_uid_from_text("test study", study);
    dicom_uid_from_text("test study", study2);
    assert_string_equal(study, study2);
    assert_true(dicom_uid_valid(study));
    assert_int_equal(strncmp(study, "2.25.", 5), 0);
    dicom_uid_from_text("test sop", sop);
    assert_string_not_equal(study, sop);
    struct dcm_ct_slice sl = {
        .study_uid = study, .series_uid = "1.2.3.4", .sop_uid = sop,
        .frame_of_ref_uid = "1.2.3.5", .patient_name = "DEMO^TEST",
        .patient_id = "DEMO-T", .patient_birth_date = "19700101",
        .patient_sex = "O", .study_date = "20260101",
        .study_time = "090000", .study_description = "CT HEAD (test)",
        .series_description = "AXIAL", .accession = "A1",
        .institution = "Test", .series_number = 2, .instance_number = 7,
        .rows = R, .columns = C, .pixel_spacing = 0.48828125,
        .slice_thickness = 5, .position = { -124.755859375, -3, 22.5 },
        .rescale_intercept = -1024, .rescale_slope = 1, .pixels = px,
    };
    const char *path = P(tmp, "written.dcm");
    assert_int_equal(dicom_write_ct_slice(path, &sl, &e), 0);
    struct dcm_info in;
    assert_int_equal(dicom_parse_file(path, &in, &e), 0);
    assert_string_equal(in.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(in.transfer_syntax, DICOM_TS_EXPLICIT_LE);
    assert_string_equal(in.study_uid, study);
    assert_string_equal(in.sop_uid, sop);
    assert_string_equal(in.modality, "CT");
    assert_string_equal(in.patient_name, "DEMO^TEST");
    assert_int_equal(in.instance_number, 7);
    assert_int_equal(in.series_number, 2);
    assert_int_equal(in.rows, R);
    assert_int_equal(in.columns, C);
    assert_true(in.has_window && in.window_center == 40 &&
                in.window_width == 80);

    /* 8-bit output in the brain window, linear (PS3.3 C.11.2.1.2):
     * HU <= 0 black, >= 80 white, strictly rising between. */
    for (int engine = DCM_RENDER_FAST; engine <= DCM_RENDER_DCMTK;
         engine++) {
        struct dcm_render_opts o = { .window_mode = DCM_WINDOW_DEFAULT,
                                     .engine = engine };
        unsigned char *pix = NULL;
        int w, h, comps;
        assert_int_equal(dicom_render_pixels(path, &o, &pix, &w, &h, &comps,
                                             &e), 0);
        assert_int_equal(w, C);
        assert_int_equal(h, R);
        assert_int_equal(pix[0], 0);
        assert_int_equal(pix[1], 0);
        assert_true(pix[1] < pix[2] && pix[2] < pix[3] && pix[3] < pix[4]);
        assert_true(abs(pix[3] - 128) <= 2);
        assert_int_equal(pix[5], 255);
        assert_int_equal(pix[6], 255);
        free(pix);
    }

    /* Refused: no pixels, a bad size, a bad UID, an unwritable path. */
    struct dcm_ct_slice bad = sl;
    bad.rows = 0;
    assert_int_equal(dicom_write_ct_slice(path, &bad, &e), ERR_INVALID);
    bad = sl;
    bad.pixels = NULL;
    assert_int_equal(dicom_write_ct_slice(path, &bad, &e), ERR_INVALID);
    bad = sl;
    bad.sop_uid = "1.02.3";
    assert_int_equal(dicom_write_ct_slice(path, &bad, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "1.02.3"));
    assert_int_equal(dicom_write_ct_slice("/proc/no/such/dir/x.dcm", &sl,
                                          &e), ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uid_valid),
        cmocka_unit_test(test_parse_ct),
        cmocka_unit_test(test_parse_variants),
        cmocka_unit_test(test_parse_series),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_nesting_50000),
        cmocka_unit_test(test_bad_structure),
        cmocka_unit_test(test_pydicom_odd_files),
        cmocka_unit_test(test_pydicom_all_files),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_render_ct),
        cmocka_unit_test(test_render_quality),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_render_variety),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_render_fast_equals_dcmtk),
        cmocka_unit_test(test_render_fast_declines),
        cmocka_unit_test(test_render_fast_scaled),
        cmocka_unit_test(test_render_strips),
        cmocka_unit_test(test_render_ct_written),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_rle_corrupt),
        cmocka_unit_test(test_transcode_roundtrip),
        cmocka_unit_test(test_pixels_equal_across_encodings),
        cmocka_unit_test(test_transcode_refused),
        cmocka_unit_test(test_scp),
        cmocka_unit_test(test_scp_contexts),
        cmocka_unit_test(test_scp_bad_config),
    };
    const char *filter = getenv("DICOM_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
