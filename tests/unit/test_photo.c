/*
 * test_photo — proto/dicom.cc's photo encapsulation: a phone's JPEG
 * becomes a VL Photographic Image Storage instance whose pixel data is
 * the JPEG, byte for byte (padded to even length), with the Image Pixel
 * module read from the JPEG's header; dciodvfy (dicom3tools) finds no
 * error in it; what is not a baseline JPEG is refused and writes nothing.
 * server/photo.c dates the image by the photo's EXIF (both byte orders,
 * its fallbacks and offset), else by the upload; a truncated or garbled
 * EXIF block is ignored, never read past.
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

#include "../../proto/dicom.h"
#include "../../proto/util.h"
#include "../../server/photo.h"
#include "../../server/store.h"
#include "testjpeg.h"
#include "testutil.h"

static char tmp[PATH_MAX];

/* A w x h JPEG in memory (malloc'd): colour 4:2:0 like a phone's, or
 * grey, or progressive; comment_len bytes of COM to steer its parity. */
static unsigned char *make_jpeg(int w, int h, int grey, int progressive,
                                int comment_len, size_t *len)
{
    int comps = grey ? 1 : 3;
    unsigned char *pix = malloc((size_t)w * h * comps);
    assert_non_null(pix);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w * comps; x++)
            pix[(size_t)y * w * comps + x] = (unsigned char)(x + y * 3);
    unsigned char *out = tj_encode(pix, w, h, comps, -1, progressive,
                                   "photo!", comment_len, len);
    free(pix);
    return out;
}

static struct dcm_photo photo_of(const unsigned char *j, size_t n)
{
    struct dcm_photo p = {
        .study_uid = "2.25.1001", .series_uid = "2.25.1002",
        .sop_uid = "2.25.1003", .patient_name = "",
        .patient_id = "ems-1", .patient_sex = "M", .patient_age = "072Y",
        .study_date = "20261203", .study_time = "130500",
        .acq_date = "20261203", .acq_time = "131012",
        .study_description = "Pre-arrival photos",
        .series_description = "Ambulance photos",
        .institution = "North EMS", .series_number = 1,
        .instance_number = 2, .jpeg = j, .jpeg_len = n,
    };
    return p;
}

static int setup(void **state)
{
    (void)state;
    const char *tools;
    return tu_dicom_group_setup("test_photo", tmp, sizeof tmp, &tools);
}

static int teardown(void **state)
{
    (void)state;
    if (!getenv("KEEP"))
        tu_rm_rf(tmp);
    dicom_cleanup();
    return 0;
}

/* Both parities: the fragment is the JPEG, plus one zero byte if odd. */
static void test_photo_bytes_unchanged(void **state)
{
    (void)state;
    for (int comment = 1; comment <= 2; comment++) {
        size_t n, got_len;
        unsigned char *j = make_jpeg(97, 61, 0, 0, comment, &n), *got;
        struct dcm_photo p = photo_of(j, n);
        struct dcm_jpeg_info ji;
        struct dcm_info info;
        struct err e = { 0, "" };
        char ts[65];
        const char *path = tu_path(tmp, comment == 1 ? "a.dcm" : "b.dcm");

        assert_int_equal(dicom_write_photo(path, &p, &ji, &e), 0);
        assert_string_equal(ji.photometric, "YBR_FULL_422");
        assert_int_equal(dicom_parse_file(path, &info, &e), 0);
        assert_string_equal(info.sop_class_uid, "1.2.840.10008.5.1.4.1.1.77.1.4");
        assert_string_equal(info.transfer_syntax, "1.2.840.10008.1.2.4.50");
        assert_string_equal(info.study_uid, "2.25.1001");
        assert_string_equal(info.patient_id, "ems-1");
        assert_string_equal(info.modality, "XC");
        assert_int_equal(info.rows, 61);
        assert_int_equal(info.columns, 97);
        assert_int_equal(dicom_frame_get(path, 0, 0, &got, &got_len, ts, &e),
                         0);
        assert_int_equal(got_len, n + (n & 1));
        assert_memory_equal(got, j, n);
        if (n & 1)
            assert_int_equal(got[n], 0);
        free(got);
        /* and it renders, as the viewer will show it */
        struct dcm_render_opts ro = { 0 };
        int rw, rh;
        if (dicom_render_jpeg(path, &ro, &got, &got_len, &rw, &rh, &e))
            fail_msg("rendering: %s", e.msg);
        assert_int_equal(rw, 97);
        assert_int_equal(rh, 61);
        free(got);
        /* dciodvfy: no "Error" line (warnings are the IOD's options) */
        assert_int_equal(tu_run("dciodvfy '%s' >'%s' 2>&1; "
                                "! grep -q '^Error' '%s'", path,
                                tu_path(tmp, "dciodvfy.out"),
                                tu_path(tmp, "dciodvfy.out")), 0);
        free(j);
    }
}

static void test_photo_grey(void **state)
{
    (void)state;
    size_t n;
    unsigned char *j = make_jpeg(40, 30, 1, 0, 1, &n);
    struct dcm_jpeg_info ji;
    struct err e = { 0, "" };
    assert_int_equal(dicom_jpeg_info(j, n, &ji, &e), 0);
    assert_string_equal(ji.photometric, "MONOCHROME2");
    assert_int_equal(ji.samples, 1);
    free(j);
}

static void test_photo_refused(void **state)
{
    (void)state;
    size_t n;
    unsigned char *prog = make_jpeg(40, 30, 0, 1, 1, &n);
    static const unsigned char gif[] = "GIF89a\x01\x00\x01\x00";
    static const unsigned char cut[] = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x40,
                                         'J', 'F' };
    const struct {
        const unsigned char *j;
        size_t n;
        const char *why;
    } bad[] = {
        { gif, sizeof gif - 1, "not a JPEG" },
        { cut, sizeof cut, "runs past the end" },
        { prog, n, "not baseline" },
        { prog, 300, "not baseline" },  /* SOF2 comes early */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct dcm_photo p = photo_of(bad[i].j, bad[i].n);
        struct err e = { 0, "" };
        const char *path = tu_path(tmp, "bad.dcm");
        assert_int_equal(dicom_write_photo(path, &p, NULL, &e), ERR_INVALID);
        assert_non_null(strstr(e.msg, bad[i].why));
        assert_int_equal(access(path, F_OK), -1);
    }
    free(prog);
}

/* ---- EXIF dates (server/photo.c) ------------------------------------ */

/* 2026-12-03 12:21:07, 12:05:00, 11:58:30 UTC and the upload's start */
#define T_ORIG 1796300467000LL
#define T_DIG 1796299500000LL
#define T_DT 1796299110000LL
#define T_UPLOAD 1796302904000LL        /* 13:01:44 */
#define HOUR 3600000LL

struct exif_spec {
    int le;
    const char *dt, *orig, *dig, *off;  /* NULL: tag absent */
};

static void put16(unsigned char *p, int le, unsigned v)
{
    p[le ? 0 : 1] = (unsigned char)v;
    p[le ? 1 : 0] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, int le, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[le ? i : 3 - i] = (unsigned char)(v >> 8 * i);
}

/* One IFD entry at p: an ASCII value (with its NUL) stored at *data,
 * which advances; or, str NULL, a LONG of value. */
static void entry(unsigned char *b, unsigned char *p, int le, unsigned tag,
                  const char *str, uint32_t value, uint32_t *data)
{
    put16(p, le, tag);
    put16(p + 2, le, str ? 2 : 4);
    put32(p + 4, le, str ? (uint32_t)strlen(str) + 1 : 1);
    if (!str) {
        put32(p + 8, le, value);
        return;
    }
    put32(p + 8, le, *data);
    memcpy(b + *data, str, strlen(str) + 1);
    *data += (uint32_t)strlen(str) + 1;
}

/* A TIFF block as a camera writes it: IFD0 (DateTime, the Exif IFD
 * pointer), the Exif IFD (0x9003, 0x9004, 0x9011), then the strings, so
 * any truncation cuts a value.  Returns its length. */
static size_t exif_tiff(const struct exif_spec *x, unsigned char b[256])
{
    int le = x->le;
    unsigned n0 = 1 + !!x->dt, n1 = !!x->orig + !!x->dig + !!x->off;
    uint32_t ifd1 = 8 + 2 + 12 * n0 + 4, data = ifd1 + 2 + 12 * n1 + 4;
    unsigned char *p;
    memset(b, 0, 256);
    memcpy(b, le ? "II" : "MM", 2);
    put16(b + 2, le, 42);
    put32(b + 4, le, 8);
    put16(b + 8, le, n0);
    p = b + 10;
    if (x->dt) {
        entry(b, p, le, 0x0132, x->dt, 0, &data);
        p += 12;
    }
    entry(b, p, le, 0x8769, NULL, ifd1, &data);
    put16(b + ifd1, le, n1);
    p = b + ifd1 + 2;
    const char *v[] = { x->orig, x->dig, x->off };
    const unsigned tag[] = { 0x9003, 0x9004, 0x9011 };
    for (int i = 0; i < 3; i++)
        if (v[i]) {
            entry(b, p, le, tag[i], v[i], 0, &data);
            p += 12;
        }
    return data;
}

/* jpeg with an APP1 Exif segment of tiff[0..tlen) right after SOI
 * (malloc'd). */
static unsigned char *with_exif(const unsigned char *jpeg, size_t n,
                                const unsigned char *tiff, size_t tlen,
                                size_t *len)
{
    *len = n + 2 + 2 + 6 + tlen;
    unsigned char *out = malloc(*len), *p = out;
    assert_non_null(out);
    memcpy(p, jpeg, 2);
    p += 2;
    *p++ = 0xff;
    *p++ = 0xe1;
    *p++ = (unsigned char)((2 + 6 + tlen) >> 8);
    *p++ = (unsigned char)(2 + 6 + tlen);
    memcpy(p, "Exif\0\0", 6);
    memcpy(p + 6, tiff, tlen);
    memcpy(p + 6 + tlen, jpeg + 2, n - 2);
    return out;
}

/* What a phone writes: all three dates, T_DT, T_ORIG at +02:00, T_DIG. */
static struct exif_spec phone_exif(int le)
{
    struct exif_spec x = { le, "2026:12:03 11:58:30", "2026:12:03 14:21:07",
                           "2026:12:03 12:05:00", "+02:00" };
    return x;
}

/* made_times of an image dated by its upload (T_UPLOAD) */
#define UPLOAD_TIMES "20261203 20261203130144 130144 "

static struct store *store;
static unsigned char *plain;    /* a JPEG without EXIF, plain_len bytes */
static size_t plain_len;

/* photo_make of jpeg for a case created at T_UPLOAD - 1 h, upload begun
 * at T_UPLOAD; "DA DT TM " (ContentDate, AcquisitionDateTime,
 * ContentTime) of what it wrote into out, and its JPEG checked
 * unchanged. */
static void made_times(const unsigned char *jpeg, size_t n, char out[64])
{
    struct err e = { 0, "" };
    const char *jp = tu_path(tmp, "in.jpg"), *dcm = tu_path(tmp, "p.dcm");
    FILE *f = fopen(jp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(jpeg, 1, n, f), n);
    fclose(f);
    if (photo_make(store, "ems-x", jp, "ab12", T_UPLOAD, dcm, &e))
        fail_msg("photo_make: %s", e.msg);
    unsigned char *got, *txt;
    size_t got_len, tlen;
    char ts[65];
    assert_int_equal(dicom_frame_get(dcm, 0, 0, &got, &got_len, ts, &e), 0);
    assert_memory_equal(got, jpeg, n);
    free(got);
    const char *o = tu_path(tmp, "times.txt");
    assert_int_equal(tu_run("dcmdump +P 0008,0023 +P 0008,002a "
                            "+P 0008,0033 '%s' | sed 's/^[^[]*\\[//; "
                            "s/\\].*//' | tr '\\n' ' ' >'%s'", dcm, o), 0);
    assert_int_equal(read_file(o, 64, &txt, &tlen, &e), 0);
    memcpy(out, txt, tlen);
    out[tlen] = '\0';
    free(txt);
}

/* A store in tmp/data holding case ems-x, and plain. */
static int exif_setup(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    plain = make_jpeg(48, 32, 0, 0, 1, &plain_len);
    const char *data = tu_path(tmp, "data");
    if (tu_rm_rf(data))
        return -1;
    store = store_open(data, &e);
    if (!store) {
        fprintf(stderr, "store_open: %s\n", e.msg);
        return -1;
    }
    sqlite3_stmt *st = store_stmt(
        store, "INSERT INTO cases (case_id, clinic_id, patient_age,"
               " patient_sex, question, priority, status, created_at,"
               " updated_at) VALUES ('ems-x', 1, 72, 'M', 'Wound.',"
               " 'stat', 'new', ?1, ?1)", &e);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, T_UPLOAD - HOUR);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int exif_teardown(void **state)
{
    (void)state;
    store_close(store);
    free(plain);
    return 0;
}

static void test_photo_exif_time(void **state)
{
    (void)state;
    size_t n = plain_len, len;
    unsigned char *j = plain, tiff[256], *x;
    char got[64];
    int64_t ms;
    for (int le = 0; le <= 1; le++) {
        /* a phone's: DateTimeOriginal with its offset, made UTC */
        struct exif_spec spec = phone_exif(le);
        x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len);
        assert_int_equal(photo_exif_taken(x, len, T_UPLOAD, &ms), 1);
        assert_int_equal(ms, T_ORIG);
        made_times(x, len, got);
        assert_string_equal(got, "20261203 20261203122107 122107 ");
        free(x);

        /* no offset: the camera's clock as written */
        spec.orig = "2026:12:03 12:21:07";
        spec.off = NULL;
        x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len);
        assert_int_equal(photo_exif_taken(x, len, T_UPLOAD, &ms), 1);
        assert_int_equal(ms, T_ORIG);
        free(x);

        /* an unset DateTimeOriginal: DateTimeDigitized; then IFD0's */
        spec.orig = "0000:00:00 00:00:00";
        x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len);
        assert_int_equal(photo_exif_taken(x, len, T_UPLOAD, &ms), 1);
        assert_int_equal(ms, T_DIG);
        free(x);
        spec.orig = spec.dig = NULL;
        x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len);
        assert_int_equal(photo_exif_taken(x, len, T_UPLOAD, &ms), 1);
        assert_int_equal(ms, T_DT);
        made_times(x, len, got);
        assert_string_equal(got, "20261203 20261203115830 115830 ");
        free(x);

        /* a leap day is a date; 29 February 2025, 31 April are not */
        spec.dt = "2024:02:29 23:59:59";
        x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len);
        assert_int_equal(photo_exif_taken(x, len, T_UPLOAD, &ms), 1);
        assert_int_equal(ms, 1709251199000LL);
        free(x);
        const char *bad[] = { "2025:02:29 10:00:00", "2026:04:31 10:00:00",
                              "2026:12:03 24:00:00", "2026-12-03 10:00:00",
                              "2026:12:03", "",
                              /* more than a day ahead of the server */
                              "2026:12:04 13:01:45" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            spec.dt = bad[i];
            x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len);
            ms = 7;
            assert_int_equal(photo_exif_taken(x, len, T_UPLOAD, &ms), 0);
            assert_int_equal(ms, 7);
            free(x);
        }
        /* photo_make asks the server's clock: the far future is not */
        spec.dt = "2099:01:01 00:00:00";
        made_times(x = with_exif(j, n, tiff, exif_tiff(&spec, tiff), &len),
                   len, got);
        assert_string_equal(got, UPLOAD_TIMES);
        free(x);
    }
    /* no EXIF at all: when the upload began, as before */
    assert_int_equal(photo_exif_taken(j, n, T_UPLOAD, &ms), 0);
    made_times(j, n, got);
    assert_string_equal(got, UPLOAD_TIMES);
}

/* Every truncation of the EXIF block (segment length kept true), every
 * cut of the JPEG inside it, and bytes garbled at random: never a read
 * outside the segment (ASan/valgrind would say), and only a time the
 * block holds, or none. */
static void test_photo_exif_malformed(void **state)
{
    (void)state;
    size_t n = plain_len, len;
    unsigned char *j = plain, tiff[256], *x;
    char got[64];
    int64_t ms;
    for (int le = 0; le <= 1; le++) {
        struct exif_spec spec = phone_exif(le);
        size_t tlen = exif_tiff(&spec, tiff);
        for (size_t cut = 0; cut < tlen; cut++) {
            /* exactly cut bytes, on the heap so a stray read shows */
            x = with_exif(j, n, tiff, cut, &len);
            ms = 0;
            if (photo_exif_taken(x, len, T_UPLOAD, &ms))
                assert_true(ms == T_ORIG || ms == T_ORIG + 2 * HOUR ||
                            ms == T_DIG || ms == T_DT);
            if (cut == tlen / 2) {
                made_times(x, len, got);    /* only IFDs: no date */
                assert_string_equal(got, UPLOAD_TIMES);
            }
            free(x);
        }
        x = with_exif(j, n, tiff, tlen, &len);
        for (size_t cut = 0; cut < 2 + 10 + tlen; cut++) {
            unsigned char *c = malloc(cut ? cut : 1);
            assert_non_null(c);
            memcpy(c, x, cut);
            assert_int_equal(photo_exif_taken(c, cut, T_UPLOAD, &ms), 0);
            free(c);
        }
        free(x);
        uint32_t r = 2463534242u;
        for (int i = 0; i < 3000; i++) {
            unsigned char g[256];
            memcpy(g, tiff, tlen);
            for (int k = 0; k < 1 + i % 4; k++) {
                r ^= r << 13, r ^= r >> 17, r ^= r << 5;
                g[r % tlen] = (unsigned char)(r >> 8);
            }
            x = with_exif(j, n, g, tlen, &len);
            photo_exif_taken(x, len, T_UPLOAD, &ms);
            free(x);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_photo_bytes_unchanged),
        cmocka_unit_test(test_photo_grey),
        cmocka_unit_test(test_photo_refused),
        cmocka_unit_test_setup_teardown(test_photo_exif_time, exif_setup,
                                        exif_teardown),
        cmocka_unit_test_setup_teardown(test_photo_exif_malformed,
                                        exif_setup, exif_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
