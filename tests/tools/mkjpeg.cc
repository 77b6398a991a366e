/*
 * mkjpeg — writes a colour JPEG like a phone camera's (baseline, YCbCr,
 * 4:2:0, JFIF), for the photo tests: mkjpeg OUT WIDTH HEIGHT SEED
 * [--progressive | --grey].  The picture is a seeded gradient with a
 * band, so two seeds give two different files.  Exit 0, or 1 with a
 * message.  (Debian ships no cjpeg and the tests have no PIL.)  The
 * encode is the unit tests' (tests/unit/testjpeg.h).
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../unit/testjpeg.h"

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
    int comps = grey ? 1 : 3;
    std::vector<unsigned char> pix((size_t)w * h * comps);
    for (int y = 0; y < h; y++) {
        int band = ((y + seed * 7) / 16) % 2;
        for (int x = 0; x < w; x++) {
            unsigned char *p = &pix[((size_t)y * w + x) * comps];
            p[0] = (unsigned char)((x * 255 / w + seed * 40) & 0xff);
            if (!grey) {
                p[1] = (unsigned char)(y * 255 / h);
                p[2] = band ? 200 : (unsigned char)(seed * 60);
            }
        }
    }
    size_t len;
    unsigned char *jpeg = tj_encode(pix.data(), w, h, comps, 85, prog, NULL,
                                    0, &len);
    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        free(jpeg);
        return 1;
    }
    size_t put = fwrite(jpeg, 1, len, f);
    free(jpeg);
    return fclose(f) || put != len ? 1 : 0;
}
