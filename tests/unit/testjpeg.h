/*
 * testjpeg.h — one libjpeg encode for the tests that link libjpeg
 * (test_dicom's reference JPEGs, test_photo's phone photos, and
 * tests/tools/mkjpeg's files for the integration tests).  Not in
 * testutil.h: most tests do not link libjpeg.
 */
#ifndef HASHI_TESTJPEG_H
#define HASHI_TESTJPEG_H

#include <stddef.h>
#include <stdio.h>

#include <jpeglib.h>

/* pix: h rows of w * components bytes (1: grey, 3: RGB).  quality < 0
 * keeps libjpeg's default; progressive: a progressive JPEG; comment (may
 * be NULL): a COM marker of its first comment_len bytes.  Returns the
 * JPEG (malloc'd by libjpeg; free()), its size in *len. */
static inline unsigned char *tj_encode(const unsigned char *pix, int w,
                                       int h, int components, int quality,
                                       int progressive, const char *comment,
                                       int comment_len, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr em;
    unsigned char *out = NULL;
    unsigned long n = 0;
    c.err = jpeg_std_error(&em);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    if (quality >= 0)
        jpeg_set_quality(&c, quality, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (comment)
        jpeg_write_marker(&c, JPEG_COM, (const JOCTET *)comment,
                          (unsigned)comment_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(pix + (size_t)c.next_scanline * w *
                                          (size_t)components);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = n;
    return out;
}

#endif
