/*
 * mkjpeg — writes a colour JPEG like a phone camera's (baseline, YCbCr,
 * 4:2:0, JFIF), for the photo tests: mkjpeg OUT WIDTH HEIGHT SEED
 * [--progressive | --grey].  The picture is a seeded gradient with a
 * band, so two seeds give two different files.  Exit 0, or 1 with a
 * message.  (Debian ships no cjpeg and the tests have no PIL.)
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <jpeglib.h>

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: mkjpeg OUT WIDTH HEIGHT SEED "
                        "[--progressive|--grey]\n");
        return 1;
    }
    int w = atoi(argv[2]), h = atoi(argv[3]), seed = atoi(argv[4]);
    bool prog = argc > 5 && !strcmp(argv[5], "--progressive");
    bool grey = argc > 5 && !strcmp(argv[5], "--grey");
    if (w < 1 || h < 1 || w > 8192 || h > 8192) {
        fprintf(stderr, "mkjpeg: bad size\n");
        return 1;
    }
    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    jpeg_compress_struct c;
    jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = grey ? 1 : 3;
    c.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 85, TRUE);
    if (prog)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    std::vector<unsigned char> row((size_t)w * 3);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < w; x++) {
            int band = ((y + seed * 7) / 16) % 2;
            unsigned char *p = &row[(size_t)x * c.input_components];
            p[0] = (unsigned char)((x * 255 / w + seed * 40) & 0xff);
            if (!grey) {
                p[1] = (unsigned char)(y * 255 / h);
                p[2] = band ? 200 : (unsigned char)(seed * 60);
            }
        }
        JSAMPROW r = row.data();
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) ? 1 : 0;
}
