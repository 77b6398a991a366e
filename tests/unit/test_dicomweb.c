/*
 * test_dicomweb — the DCMTK adapter's functions for WADO-RS viewers
 * (proto/dicom.h: dicom_frame_get, dicom_bulk_get, dicom_write_json), on
 * pydicom's test files: the same pixels in every encoding (decoded frames
 * hash like dicom_pixel_sha256), stored frames as their fragments,
 * frames out of range, native frames located in their file
 * (dicom_frame_span), bulk data by path, DICOM JSON with BulkDataURIs.
 * valgrind_clean.sh runs it under valgrind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../proto/dicom.h"
#include "../../proto/util.h"
#include "testutil.h"

#define FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

static int setup(void **state)
{
    struct err e = {0};
    (void)state;
    return dicom_init(&e) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    dicom_cleanup();
    return 0;
}

/* SHA-256 of every frame of path, decoded, one after another. */
static void frames_sha(const char *path, int nframes, char out[65])
{
    unsigned char *all = NULL;
    size_t total = 0;
    for (int f = 0; f < nframes; f++) {
        unsigned char *d = NULL;
        size_t n = 0;
        char ts[65];
        struct err e = {0};
        if (dicom_frame_get(path, f, 1, &d, &n, ts, &e))
            fail_msg("%s frame %d: %s", path, f + 1, e.msg);
        assert_string_equal(ts, DICOM_TS_EXPLICIT_LE);
        all = realloc(all, total + n);
        assert_non_null(all);
        memcpy(all + total, d, n);
        total += n;
        free(d);
    }
    sha256_hex(all, total, out);
    free(all);
}

static void test_decoded_frames_equal_pixels(void **state)
{
    static const struct {
        const char *name;
        int frames;
    } files[] = {
        {"MR_small.dcm", 1}, {"MR_small_RLE.dcm", 1},
        {"MR_small_jpeg_ls_lossless.dcm", 1}, {"MR_small_bigendian.dcm", 1},
        {"MR_small_implicit.dcm", 1}, {"SC_rgb_rle_2frame.dcm", 2},
        {"SC_rgb_rle_16bit_2frame.dcm", 2},
    };
    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char want[65], got[65];
        struct err e = {0};
        const char *p = tu_path(FILES, files[i].name);
        if (dicom_pixel_sha256(p, want, &e))
            fail_msg("%s: %s", files[i].name, e.msg);
        frames_sha(p, files[i].frames, got);
        if (strcmp(want, got))
            fail_msg("%s: decoded frames differ from its pixels",
                     files[i].name);
    }
}

static void test_stored_frames(void **state)
{
    unsigned char *d = NULL;
    size_t n = 0;
    char ts[65];
    struct err e = {0};
    (void)state;
    /* JPEG-LS: the one fragment, as stored, labelled JPEG-LS */
    assert_int_equal(dicom_frame_get(tu_path(FILES,
                                     "MR_small_jpeg_ls_lossless.dcm"), 0, 0,
                                     &d, &n, ts, &e), 0);
    assert_string_equal(ts, DICOM_TS_JPEGLS_LOSSLESS);
    assert_true(n > 4 && d[0] == 0xFF && d[1] == 0xD8);   /* SOI */
    free(d);
    /* RLE, frame 2 of 2: its own fragment (an RLE header of 3 segments) */
    assert_int_equal(dicom_frame_get(tu_path(FILES, "SC_rgb_rle_2frame.dcm"),
                                     1, 0, &d, &n, ts, &e), 0);
    assert_string_equal(ts, "1.2.840.10008.1.2.5");
    assert_true(n >= 64 && d[0] == 3 && d[1] == 0 && d[2] == 0 && d[3] == 0);
    free(d);
    /* native: the bytes of the frame, labelled with the stored syntax */
    assert_int_equal(dicom_frame_get(tu_path(FILES, "MR_small_implicit.dcm"),
                                     0, 0, &d, &n, ts, &e), 0);
    assert_string_equal(ts, DICOM_TS_IMPLICIT_LE);
    assert_int_equal(n, 64 * 64 * 2);
    free(d);
    /* out of range, no pixels */
    assert_int_equal(dicom_frame_get(tu_path(FILES, "MR_small.dcm"), 1, 1,
                                     &d, &n, ts, &e), ERR_NOTFOUND);
    assert_null(d);
    assert_int_equal(dicom_frame_get(tu_path(FILES, "SC_rgb_rle_2frame.dcm"),
                                     2, 0, &d, &n, ts, &e), ERR_NOTFOUND);
    assert_int_equal(dicom_frame_get(tu_path(FILES, "rtplan.dcm"), 0, 1,
                                     &d, &n, ts, &e), ERR_NOTFOUND);
}

/* The span's bytes in the file are dicom_frame_get's, under the same
 * transfer syntax label. */
static void expect_span_is_frame(const char *path, int f, int decode)
{
    unsigned char *d = NULL, *got;
    uint64_t off = 0;
    size_t n = 0, len = 0;
    char ts[65], ts_get[65];
    struct err e = {0};
    int fd;

    if (dicom_frame_span(path, f, decode, &off, &len, ts, &e) != 1)
        fail_msg("%s frame %d: no span (%s)", path, f + 1, e.msg);
    assert_int_equal(dicom_frame_get(path, f, decode, &d, &n, ts_get, &e), 0);
    assert_int_equal(len, n);
    assert_string_equal(ts, ts_get);
    got = malloc(len);
    assert_non_null(got);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, len, (off_t)off), (ssize_t)len);
    close(fd);
    assert_memory_equal(got, d, len);
    free(got);
    free(d);
}

static void test_frame_span(void **state)
{
    char dir[] = "/tmp/test_dicomweb.XXXXXX", path[64];
    uint64_t off = 1;
    size_t n = 1;
    char ts[65];
    struct err e = {0};
    (void)state;
    expect_span_is_frame(tu_path(FILES, "MR_small.dcm"), 0, 0);
    expect_span_is_frame(tu_path(FILES, "MR_small.dcm"), 0, 1);
    expect_span_is_frame(tu_path(FILES, "MR_small_implicit.dcm"), 0, 0);
    expect_span_is_frame(tu_path(FILES, "MR_small_implicit.dcm"), 0, 1);
    /* Frame 2 of 2, native: the offset counts the frame before it. */
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/2frame.dcm", dir);
    assert_int_equal(dicom_transcode_explicit_le(
        tu_path(FILES, "SC_rgb_rle_2frame.dcm"), path, &e), 0);
    expect_span_is_frame(path, 1, 0);
    /* Not the file's bytes: compressed, big endian.  Then out of range. */
    assert_int_equal(dicom_frame_span(tu_path(FILES,
        "MR_small_jpeg_ls_lossless.dcm"), 0, 0, &off, &n, ts, &e), 0);
    assert_int_equal(dicom_frame_span(tu_path(FILES, "SC_rgb_rle_2frame.dcm"),
                                      0, 1, &off, &n, ts, &e), 0);
    assert_int_equal(dicom_frame_span(tu_path(FILES,
        "MR_small_bigendian.dcm"), 0, 1, &off, &n, ts, &e), 0);
    assert_int_equal(dicom_frame_span(path, 2, 0, &off, &n, ts, &e),
                     ERR_NOTFOUND);
    assert_int_equal(dicom_frame_span("/no/such/file.dcm", 0, 0, &off, &n,
                                      ts, &e), ERR_NOTFOUND);
    tu_rm_rf(dir);
}

static void test_bulk_data(void **state)
{
    unsigned char *d = NULL;
    size_t n = 0;
    char want[65], got[65];
    struct err e = {0};
    const char *p = tu_path(FILES, "MR_small.dcm");
    (void)state;
    assert_int_equal(dicom_bulk_get(p, "7FE00010", &d, &n, &e), 0);
    assert_int_equal(dicom_pixel_sha256(p, want, &e), 0);
    sha256_hex(d, n, got);
    assert_string_equal(got, want);
    free(d);
    /* big endian file: the value comes little endian all the same */
    p = tu_path(FILES, "MR_small_bigendian.dcm");
    assert_int_equal(dicom_bulk_get(p, "7FE00010", &d, &n, &e), 0);
    sha256_hex(d, n, got);
    assert_string_equal(got, want);
    free(d);
    /* not bulk data, absent, malformed, compressed */
    assert_int_equal(dicom_bulk_get(p, "00100010", &d, &n, &e),
                     ERR_NOTFOUND);
    assert_int_equal(dicom_bulk_get(p, "00091001", &d, &n, &e),
                     ERR_NOTFOUND);
    assert_int_equal(dicom_bulk_get(p, "7FE00010.1", &d, &n, &e),
                     ERR_NOTFOUND);
    assert_int_equal(dicom_bulk_get(p, "xyz", &d, &n, &e), ERR_NOTFOUND);
    assert_int_equal(dicom_bulk_get(tu_path(FILES, "MR_small_RLE.dcm"),
                                    "7FE00010", &d, &n, &e),
                     ERR_UNSUPPORTED);
    assert_null(d);
}

static void test_json(void **state)
{
    static const char *const names[] = {"MR_small.dcm", "MR_small_RLE.dcm",
                                        "rtplan.dcm", "SC_rgb_rle_2frame.dcm"};
    (void)state;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *text = NULL;
        size_t len = 0;
        struct err e = {0};
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        if (dicom_write_json(tu_path(FILES, names[i]), "https://h/b", f, &e))
            fail_msg("%s: %s", names[i], e.msg);
        fclose(f);
        json_error_t je;
        json_t *j = json_loadb(text, len, 0, &je);
        if (!j)
            fail_msg("%s: not JSON: %s", names[i], je.text);
        assert_non_null(json_object_get(j, "00080018"));
        json_t *px = json_object_get(j, "7FE00010");
        if (strcmp(names[i], "rtplan.dcm")) {
            assert_non_null(px);
            assert_string_equal(json_string_value(json_object_get(
                px, "BulkDataURI")), "https://h/b/7FE00010");
            assert_null(json_object_get(px, "InlineBinary"));
        }
        json_decref(j);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoded_frames_equal_pixels),
        cmocka_unit_test(test_stored_frames),
        cmocka_unit_test(test_frame_span),
        cmocka_unit_test(test_bulk_data),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
