/*
 * test_photo — proto/dicom.cc's photo encapsulation: a phone's JPEG
 * becomes a VL Photographic Image Storage instance whose pixel data is
 * the JPEG, byte for byte (padded to even length), with the Image Pixel
 * module read from the JPEG's header; dciodvfy (dicom3tools) finds no
 * error in it; what is not a baseline JPEG is refused and writes nothing.
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
#include "testjpeg.h"
#include "testutil.h"

static char tmp[64];

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
    struct err e = { 0, "" };
    snprintf(tmp, sizeof tmp, "/tmp/hashi-test-photo-XXXXXX");
    return !mkdtemp(tmp) || dicom_init(&e) ? -1 : 0;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_photo_bytes_unchanged),
        cmocka_unit_test(test_photo_grey),
        cmocka_unit_test(test_photo_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
