/*
 * dicom — the DCMTK adapter behind proto/dicom.h (parse, validate, render,
 * transcode, C-STORE listener).  The only C++ in Hashi.
 *
 * Untrusted bytes never reach DCMTK unchecked: a small pre-scanner of our
 * own walks the file element by element first (preamble, group 0002 meta,
 * then the dataset in implicit LE, explicit LE or explicit BE) and rejects
 * declared lengths that run past the data (DCMTK allocates the declared
 * length before reading it) and sequence nesting deeper than
 * DICOM_MAX_DEPTH (DCMTK 3.6.7 recurses once per level and overflows the
 * stack at ~50,000 levels).  The transfer syntax the scanner decided on is
 * then handed to DCMTK explicitly, so both read the bytes the same way.
 * Deflated datasets are inflated into memory for the scan, at most
 * DEFLATE_MAX bytes (DCMTK holds them in memory anyway).
 *
 * Files are mapped for the scan and loaded by DCMTK with a small
 * maxReadLength, so large values (pixel data) stay on disk until needed;
 * rendering decodes one frame (CIF_UsePartialAccessToPixelData).
 *
 * Every extern "C" function catches every exception.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcspchrs.h"
#include "dcmtk/dcmimage/diregist.h"
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmjpls/djencode.h"
#include "dcmtk/dcmjpls/djrparam.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/scpthrd.h"
#include "dcmtk/oflog/oflog.h"

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cmath>
#include <mutex>
#include <new>
#include <type_traits>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <arpa/inet.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* libjpeg-turbo, for the rendered JPEGs: DCMTK's own IJG 6b encoder
 * (DiJPEGPlugin) took 4.5 ms for a 512x512 slice, turbo well under 1 ms.
 * Its symbols do not clash with DCMTK's (prefixed jpeg8_ etc.). */
#include <jpeglib.h>
#include <jerror.h>

#include "util.h"
extern "C" {
#include "log.h"      /* has no C++ guard of its own */
}
#include "dicom.h"

/* Values above this stay on disk when DCMTK loads a file. */
#define LAZY_READ_LEN 4096u
/* A deflated dataset may inflate to at most this many bytes. */
#define DEFLATE_MAX (256u << 20)
/* Decoded pixels we are willing to hold: one frame to render, all frames
 * to transcode or hash.  A few bytes of JPEG-LS can declare gigabytes. */
#define FRAME_BYTES_MAX (256ull << 20)
#define PIXEL_BYTES_MAX (1ull << 30)

/* ---- small helpers ---------------------------------------------------- */


/* Printable, bounded copy of untrusted text for error messages. */
static void shown(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; *s && o + 1 < n; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = 0;
}

/* ---- pre-scanner ------------------------------------------------------ */

enum { SC_OK = 0, SC_BAD = 1, SC_DEEP = 2 };

struct fast_attrs;

struct scanner {
    const uint8_t *p;    /* the dataset bytes (file, or inflated copy) */
    size_t len;
    size_t base;         /* offset of p in the file, for messages */
    struct fast_attrs *fa;   /* top-level attributes to note, or NULL */
    char msg[200];
};

/* What the render fast path needs of the top-level dataset, noted by the
 * pre-scanner as it walks (see render_fast). */
enum {
    FA_SPP, FA_PHOTO, FA_FRAMES, FA_ROWS, FA_COLS, FA_BALLOC, FA_BSTORED,
    FA_HIGHBIT, FA_PIXREP, FA_WC, FA_WW, FA_RI, FA_RS, FA_VOIFN, FA_PIXELS,
    FA_N
};

struct fast_el {
    const uint8_t *v;    /* the value, NULL if absent */
    uint32_t len;
    uint8_t vr[2];       /* explicit VR, or 0 0 for implicit */
    int seen;
};

struct fast_attrs {
    struct fast_el el[FA_N];
    const char *other;   /* an attribute we do not replicate, or NULL */
};

static const struct {
    uint16_t g, e;
} fa_tags[FA_N] = {
    {0x0028, 0x0002}, {0x0028, 0x0004}, {0x0028, 0x0008}, {0x0028, 0x0010},
    {0x0028, 0x0011}, {0x0028, 0x0100}, {0x0028, 0x0101}, {0x0028, 0x0102},
    {0x0028, 0x0103}, {0x0028, 0x1050}, {0x0028, 0x1051}, {0x0028, 0x1052},
    {0x0028, 0x1053}, {0x0028, 0x1056}, {0x7FE0, 0x0010},
};

/* Note a top-level element for the fast path.  len is 0xFFFFFFFF for an
 * undefined length. */
static void fa_note(struct fast_attrs *fa, uint16_t g, uint16_t el,
                    const uint8_t *vr, const uint8_t *v, uint32_t len)
{
    if (g >= 0x6000 && g <= 0x60FF && !(g & 1)) {
        fa->other = "overlay";
        return;
    }
    if (g == 0x0028 && el == 0x3000)
        fa->other = "modality LUT";
    else if (g == 0x0028 && el == 0x3010)
        fa->other = "VOI LUT";
    else if (g == 0x2050 && el == 0x0020)
        fa->other = "presentation LUT shape";
    if (g != 0x0028 && g != 0x7FE0)
        return;
    for (int i = 0; i < FA_N; i++) {
        if (fa_tags[i].g != g || fa_tags[i].e != el)
            continue;
        struct fast_el *f = &fa->el[i];
        if (f->seen++) {
            fa->other = "a repeated attribute";
            return;
        }
        f->v = v;
        f->len = len;
        f->vr[0] = vr ? vr[0] : 0;
        f->vr[1] = vr ? vr[1] : 0;
        return;
    }
}

struct scan_result {
    E_TransferSyntax xfer;   /* what DCMTK must read the dataset as */
    char ts[65];             /* (0002,0010), "" if absent */
};

static uint16_t rd16(const uint8_t *q, int be)
{
    return be ? (uint16_t)(q[0] << 8 | q[1]) : (uint16_t)(q[1] << 8 | q[0]);
}

static uint32_t rd32(const uint8_t *q, int be)
{
    if (be)
        return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
               (uint32_t)q[2] << 8 | q[3];
    return (uint32_t)q[3] << 24 | (uint32_t)q[2] << 16 |
           (uint32_t)q[1] << 8 | q[0];
}

static int sc_bad(struct scanner *sc, size_t at, const char *what,
                  uint16_t g, uint16_t el)
{
    snprintf(sc->msg, sizeof sc->msg, "%s at (%04X,%04X), offset %zu",
             what, g, el, sc->base + at);
    return SC_BAD;
}

static int vr_is(const uint8_t *v, const char *s)
{
    return v[0] == (uint8_t)s[0] && v[1] == (uint8_t)s[1];
}

/* VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2). */
static int vr_long(const uint8_t *v)
{
    static const char *const l[] = {"OB", "OD", "OF", "OL", "OV", "OW",
                                    "SQ", "SV", "UC", "UN", "UR", "UT",
                                    "UV"};
    for (size_t i = 0; i < sizeof l / sizeof *l; i++)
        if (vr_is(v, l[i]))
            return 1;
    return 0;
}

static int vr_known(const uint8_t *v)
{
    static const char *const s[] = {"AE", "AS", "AT", "CS", "DA", "DS",
                                    "DT", "FL", "FD", "IS", "LO", "LT",
                                    "PN", "SH", "SL", "SS", "ST", "TM",
                                    "UI", "UL", "US"};
    if (vr_long(v))
        return 1;
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        if (vr_is(v, s[i]))
            return 1;
    return 0;
}

static int is_upper(uint8_t c) { return c >= 'A' && c <= 'Z'; }

static int scan_elements(struct scanner *sc, size_t *pos, size_t end,
                         int depth, int implicit, int be, int undef_item,
                         int top);

/* Items of a sequence from *pos; end bounds it (defined length) or is the
 * bound of the enclosing container (undefined: ends at (FFFE,E0DD)). */
static int scan_sequence(struct scanner *sc, size_t *pos, size_t end,
                         int undefined, int depth, int implicit, int be)
{
    if (depth > DICOM_MAX_DEPTH) {
        snprintf(sc->msg, sizeof sc->msg,
                 "sequences nested deeper than %d levels, offset %zu",
                 DICOM_MAX_DEPTH, sc->base + *pos);
        return SC_DEEP;
    }
    size_t p = *pos;
    for (;;) {
        if (!undefined && p == end)
            break;
        if (end - p < 8)
            return sc_bad(sc, p, "sequence runs past the end of the data",
                          0, 0);
        uint16_t g = rd16(sc->p + p, be), el = rd16(sc->p + p + 2, be);
        uint32_t len = rd32(sc->p + p + 4, be);
        p += 8;
        if (g == 0xFFFE && el == 0xE0DD) {
            if (!undefined)
                return sc_bad(sc, p - 8, "sequence delimiter in a sequence "
                              "of defined length", g, el);
            break;
        }
        if (g != 0xFFFE || el != 0xE000)
            return sc_bad(sc, p - 8, "expected an item in a sequence",
                          g, el);
        int r;
        if (len == 0xFFFFFFFFu) {
            r = scan_elements(sc, &p, end, depth, implicit, be, 1, 0);
        } else {
            if (len > end - p)
                return sc_bad(sc, p - 8, "item length runs past the end of "
                              "its container", g, el);
            size_t q = p;
            r = scan_elements(sc, &q, p + len, depth, implicit, be, 0, 0);
            p += len;
        }
        if (r != SC_OK)
            return r;
    }
    *pos = p;
    return SC_OK;
}

/* Encapsulated pixel data: items of defined length up to (FFFE,E0DD). */
static int scan_fragments(struct scanner *sc, size_t *pos, size_t end,
                          int be)
{
    size_t p = *pos;
    for (;;) {
        if (end - p < 8)
            return sc_bad(sc, p, "encapsulated pixel data runs past the end "
                          "of the data", 0x7FE0, 0x0010);
        uint16_t g = rd16(sc->p + p, be), el = rd16(sc->p + p + 2, be);
        uint32_t len = rd32(sc->p + p + 4, be);
        p += 8;
        if (g == 0xFFFE && el == 0xE0DD)
            break;
        if (g != 0xFFFE || el != 0xE000)
            return sc_bad(sc, p - 8, "expected a fragment item", g, el);
        if (len == 0xFFFFFFFFu || len > end - p)
            return sc_bad(sc, p - 8, "fragment length runs past the end of "
                          "the data", g, el);
        p += len;
    }
    *pos = p;
    return SC_OK;
}

/* A value of defined length that may hide a sequence (implicit VR, where
 * only the dictionary knows, or explicit UN): if it parses as items, its
 * nesting counts; if not, it is opaque bytes. */
static int sniff_sequence(struct scanner *sc, size_t p, uint32_t len,
                          int depth, int be)
{
    if (len < 8 || rd16(sc->p + p, be) != 0xFFFE ||
        rd16(sc->p + p + 2, be) != 0xE000)
        return SC_OK;
    size_t q = p;
    int r = scan_sequence(sc, &q, p + len, 0, depth + 1, 1, be);
    return r == SC_DEEP ? SC_DEEP : SC_OK;
}

/* Elements of a dataset or item from *pos up to end (or, for an item of
 * undefined length, up to its (FFFE,E00D)). */
static int scan_elements(struct scanner *sc, size_t *pos, size_t end,
                         int depth, int implicit, int be, int undef_item,
                         int top)
{
    size_t p = *pos;
    for (;;) {
        if (p == end) {
            if (undef_item)
                return sc_bad(sc, p, "item without a delimiter", 0, 0);
            break;
        }
        if (end - p < 8) {
            /* a few zero bytes of padding after the last element */
            int zero = top;
            for (size_t i = p; zero && i < end; i++)
                zero = sc->p[i] == 0;
            if (zero)
                break;
            return sc_bad(sc, p, "element header runs past the end of the "
                          "data", 0, 0);
        }
        const uint8_t *h = sc->p + p;
        uint16_t g = rd16(h, be), el = rd16(h + 2, be);
        if (g == 0xFFFE) {
            if (el == 0xE00D && undef_item) {
                p += 8;
                break;
            }
            return sc_bad(sc, p, "unexpected delimiter or item", g, el);
        }
        uint32_t len;
        const uint8_t *vr = NULL;
        if (implicit) {
            len = rd32(h + 4, be);
            p += 8;
        } else {
            vr = h + 4;
            /* DCMTK reads an unknown upper-case VR with a 4-byte length,
             * anything else unknown with a 2-byte one; so do we */
            if (vr_long(vr) ||
                (!vr_known(vr) && is_upper(vr[0]) && is_upper(vr[1]))) {
                if (end - p < 12)
                    return sc_bad(sc, p, "element header runs past the end "
                                  "of the data", g, el);
                len = rd32(h + 8, be);
                p += 12;
            } else {
                len = rd16(h + 6, be);
                p += 8;
            }
        }
        if (sc->fa && top)
            fa_note(sc->fa, g, el, vr, sc->p + p, len);
        int r = SC_OK;
        if (len == 0xFFFFFFFFu) {
            int pixels = (g == 0x7FE0 && el == 0x0010);
            if ((implicit && pixels) ||
                (!implicit && (vr_is(vr, "OB") || vr_is(vr, "OW"))))
                r = scan_fragments(sc, &p, end, be);
            else if (implicit || vr_is(vr, "SQ"))
                r = scan_sequence(sc, &p, end, 1, depth + 1, implicit, be);
            else if (vr_is(vr, "UN"))   /* PS3.5 6.2.2: implicit LE inside */
                r = scan_sequence(sc, &p, end, 1, depth + 1, 1, 0);
            else
                return sc_bad(sc, p, "undefined length on a VR that cannot "
                              "have one", g, el);
            if (r != SC_OK)
                return r;
            continue;
        }
        if (len > end - p) {
            char what[96];
            snprintf(what, sizeof what, "declared length %u exceeds the %zu "
                     "bytes left", len, end - p);
            return sc_bad(sc, p, what, g, el);
        }
        if (!implicit && vr_is(vr, "SQ")) {
            size_t q = p;
            r = scan_sequence(sc, &q, p + len, 0, depth + 1, 0, be);
        } else if (implicit || vr_is(vr, "UN")) {
            r = sniff_sequence(sc, p, len, depth, implicit ? be : 0);
        }
        if (r != SC_OK)
            return r;
        p += len;
    }
    *pos = p;
    return SC_OK;
}

/* Inflate a deflated dataset (raw deflate, PS3.5 A.5) through DCMTK's own
 * zlib filter, at most DEFLATE_MAX bytes.  *out is malloc'd. */
static int inflate_all(const uint8_t *p, size_t len, uint8_t **out,
                       size_t *outlen, struct err *e)
{
    DcmInputBufferStream is;
    is.setBuffer(p, (offile_off_t)len);
    is.setEos();
    if (is.installCompressionFilter(ESC_zlib).bad())
        return err_set(e, ERR_UNSUPPORTED, "deflated dataset: no zlib support");
    size_t cap = len < DEFLATE_MAX / 4 ? len * 4 + 4096 : DEFLATE_MAX, n = 0;
    uint8_t *buf = (uint8_t *)malloc(cap);
    if (!buf)
        return err_set(e, ERR_INTERNAL, "out of memory");
    for (;;) {
        if (n == cap) {
            if (cap >= DEFLATE_MAX) {
                free(buf);
                return err_set(e, ERR_INVALID, "deflated dataset inflates to "
                            "more than %u MiB", DEFLATE_MAX >> 20);
            }
            size_t nc = cap * 2 > DEFLATE_MAX ? DEFLATE_MAX : cap * 2;
            uint8_t *nb = (uint8_t *)realloc(buf, nc);
            if (!nb) {
                free(buf);
                return err_set(e, ERR_INTERNAL, "out of memory");
            }
            buf = nb;
            cap = nc;
        }
        offile_off_t got = is.read(buf + n, (offile_off_t)(cap - n));
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    if (!is.good()) {
        free(buf);
        return err_set(e, ERR_INVALID, "deflated dataset: %s",
                    is.status().text());
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* Guess the encoding of a dataset with no usable meta header from its
 * first element, as DCMTK does: a known VR after the tag means explicit;
 * a group whose first byte is 0 is big endian. */
static E_TransferSyntax guess_xfer(const uint8_t *p, size_t len)
{
    if (len < 8)
        return EXS_LittleEndianImplicit;
    int be = (p[0] == 0 && p[1] != 0);
    if (vr_known(p + 4))
        return be ? EXS_BigEndianExplicit : EXS_LittleEndianExplicit;
    return be ? EXS_BigEndianImplicit : EXS_LittleEndianImplicit;
}

/* The whole pre-scan.  r receives the transfer syntax DCMTK must use.
 * fa, if not NULL, receives the top-level attributes the render fast path
 * wants (only for little endian native syntaxes; zeroed otherwise). */
static int prescan(const uint8_t *p, size_t len, struct scan_result *r,
                   struct fast_attrs *fa, struct err *e)
{
    if (fa)
        memset(fa, 0, sizeof *fa);
    memset(r, 0, sizeof *r);
    if (len == 0)
        return err_set(e, ERR_INVALID, "empty file");
    size_t off = 0;
    if (len >= 132 && memcmp(p + 128, "DICM", 4) == 0)
        off = 132;
    else if (len >= 128 && len < 132 && memcmp(p, "\0\0\0\0", 4) == 0)
        return err_set(e, ERR_INVALID, "truncated: file ends in the preamble");

    /* File meta information: explicit VR little endian, group 0002. */
    size_t meta_after_gl = 0;
    long long group_len = -1;
    int have_meta = 0;
    while (len - off >= 8 && rd16(p + off, 0) == 0x0002) {
        const uint8_t *h = p + off;
        uint16_t el = rd16(h + 2, 0);
        if (!is_upper(h[4]) || !is_upper(h[5]))
            return err_set(e, ERR_INVALID, "file meta information is not "
                        "explicit VR (offset %zu)", off);
        size_t hdr = 8;
        uint32_t vlen;
        if (vr_long(h + 4)) {
            if (len - off < 12)
                return err_set(e, ERR_INVALID, "truncated file meta "
                            "information");
            vlen = rd32(h + 8, 0);
            hdr = 12;
        } else {
            vlen = rd16(h + 6, 0);
        }
        if (vlen > len - off - hdr)
            return err_set(e, ERR_INVALID, "file meta element (0002,%04X) "
                        "declares %u bytes, only %zu left", el, vlen,
                        len - off - hdr);
        const uint8_t *v = h + hdr;
        if (el == 0x0000 && vlen == 4) {
            group_len = rd32(v, 0);
            meta_after_gl = off + hdr + vlen;
        } else if (el == 0x0010) {
            size_t n = vlen;
            while (n > 0 && (v[n - 1] == 0 || v[n - 1] == ' '))
                n--;
            if (n >= sizeof r->ts)
                return err_set(e, ERR_INVALID, "transfer syntax UID longer "
                            "than 64 characters");
            memcpy(r->ts, v, n);
            r->ts[n] = 0;
        }
        off += hdr + vlen;
        have_meta = 1;
    }
    if (off == 132 && !have_meta && len == 132)
        return err_set(e, ERR_INVALID, "no data after the DICM marker");
    /* DCMTK trusts the group length; the scan must agree with it. */
    if (group_len >= 0 && (size_t)group_len != off - meta_after_gl)
        return err_set(e, ERR_INVALID, "file meta group length %lld does not "
                    "match its elements (%zu bytes)", group_len,
                    off - meta_after_gl);

    E_TransferSyntax xfer = EXS_Unknown;
    if (r->ts[0]) {
        if (!dicom_uid_valid(r->ts)) {
            char s[80];
            shown(s, sizeof s, r->ts);
            return err_set(e, ERR_INVALID, "malformed transfer syntax UID "
                        "\"%s\"", s);
        }
        xfer = DcmXfer(r->ts).getXfer();
        if (xfer == EXS_Unknown) {
            char s[80];
            shown(s, sizeof s, r->ts);
            return err_set(e, ERR_UNSUPPORTED, "unknown transfer syntax %s", s);
        }
    }
    if (xfer == EXS_Unknown)
        xfer = guess_xfer(p + off, len - off);

    struct scanner sc;
    memset(&sc, 0, sizeof sc);
    uint8_t *inflated = NULL;
    if (xfer == EXS_DeflatedLittleEndianExplicit) {
        size_t n = 0;
        int rc = inflate_all(p + off, len - off, &inflated, &n, e);
        if (rc)
            return rc;
        sc.p = inflated;
        sc.len = n;
        sc.base = 0;
    } else {
        sc.p = p + off;
        sc.len = len - off;
        sc.base = off;
    }
    if (sc.len == 0 && !have_meta) {
        free(inflated);
        return err_set(e, ERR_INVALID, "no DICOM data");
    }
    DcmXfer x(xfer);
    int be = x.isBigEndian();
    int implicit = x.isImplicitVR();
    if (fa && (xfer == EXS_LittleEndianImplicit ||
               xfer == EXS_LittleEndianExplicit))
        sc.fa = fa;
    size_t pos = 0;
    int rc = scan_elements(&sc, &pos, sc.len, 0, implicit, be, 0, 1);
    free(inflated);
    if (rc != SC_OK)
        return err_set(e, ERR_INVALID, "%s%s",
                    xfer == EXS_DeflatedLittleEndianExplicit ?
                    "inflated dataset: " : "", sc.msg);
    r->xfer = xfer;
    return 0;
}

/* A read-only mapping of a whole file, unmapped when it goes out of scope
 * (also when an exception passes). */
struct mapping {
    const uint8_t *p = NULL;
    size_t len = 0;
    mapping() = default;
    mapping(const mapping &) = delete;
    mapping &operator=(const mapping &) = delete;
    ~mapping()
    {
        if (p)
            munmap((void *)p, len);
    }
};

static int map_file(const char *path, mapping &m, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO,
                    "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return err_set(e, ERR_INVALID, "empty file");
    }
    void *v = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (v == MAP_FAILED)
        return err_set(e, ERR_IO, "mmap %s: %s", path, strerror(errno));
    m.p = (const uint8_t *)v;
    m.len = (size_t)st.st_size;
    return 0;
}

/* Map the file and pre-scan it. */
static int prescan_file(const char *path, struct scan_result *r,
                        struct err *e)
{
    mapping m;
    int rc = map_file(path, m, e);
    return rc ? rc : prescan(m.p, m.len, r, NULL, e);
}

/* Pre-scan, then have DCMTK load the file with large values left on disk
 * until they are needed. */
static int load_file(const char *path, DcmFileFormat &ff, struct err *e)
{
    struct scan_result r;
    int rc = prescan_file(path, &r, e);
    if (rc)
        return rc;
    OFCondition c = ff.loadFile(path, r.xfer, EGL_noChange, LAZY_READ_LEN,
                                ERM_autoDetect);
    if (c.bad())
        return err_set(e, ERR_INVALID, "DICOM parse: %s", c.text());
    return 0;
}

/* ---- dcm_info --------------------------------------------------------- */

/* Copy s into dst (n bytes) as valid UTF-8: trimmed of padding, invalid
 * sequences and control bytes replaced by U+FFFD, cut only at a character
 * boundary. */
static void put_utf8(char *dst, size_t n, const char *s, size_t slen)
{
    while (slen > 0 && (s[slen - 1] == ' ' || s[slen - 1] == 0))
        slen--;
    while (slen > 0 && s[0] == ' ') {
        s++;
        slen--;
    }
    size_t o = 0;
    for (size_t i = 0; i < slen;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                 : (c >> 3) == 30 ? 4 : 0;
        int ok = k > 0 && i + k <= slen;
        for (size_t j = 1; ok && j < k; j++)
            ok = ((unsigned char)s[i + j] >> 6) == 2;
        if (ok && k == 2 && c < 0xC2)
            ok = 0;                                   /* overlong */
        if (ok && k == 3) {
            unsigned c1 = (unsigned char)s[i + 1];
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))
                ok = 0;                               /* overlong, UTF-16 */
        }
        if (ok && k == 4) {
            unsigned c1 = (unsigned char)s[i + 1];
            if ((c == 0xF0 && c1 < 0x90) || c > 0xF4 ||
                (c == 0xF4 && c1 >= 0x90))
                ok = 0;
        }
        if (ok && c == 0)
            break;
        if (c < 0x20 || c == 0x7f)      /* control bytes, ISO 2022 escapes */
            ok = 0;
        const char *src = ok ? s + i : "\xEF\xBF\xBD";
        size_t w = ok ? k : 3;
        if (o + w >= n)
            break;
        memcpy(dst + o, src, w);
        o += w;
        i += ok ? k : 1;
    }
    dst[o] = 0;
}

/* Anything beyond ASCII, or an ISO 2022 escape sequence? */
static int needs_conversion(const OFString &s)
{
    for (size_t i = 0; i < s.length(); i++)
        if ((unsigned char)s[i] >= 0x80 || s[i] == 0x1b)
            return 1;
    return 0;
}

/* A text attribute, converted from the dataset's character set to UTF-8
 * when DCMTK can, then sanitised. */
static void get_text(DcmItem *ds, const DcmTagKey &tag, const OFString &cs,
                     char *dst, size_t n)
{
    OFString v;
    dst[0] = 0;
    if (ds->findAndGetOFString(tag, v).bad())
        return;
    if (needs_conversion(v) && !cs.empty() && cs != "ISO_IR 192") {
        DcmSpecificCharacterSet conv;
        OFString out;
        if (conv.selectCharacterSet(cs).good() &&
            conv.convertString(v, out).good())
            v = out;
    }
    put_utf8(dst, n, v.c_str(), v.length());
}

static int get_int(DcmItem *ds, const DcmTagKey &tag)
{
    Sint32 v = 0;
    if (ds->findAndGetSint32(tag, v).good())
        return (int)v;
    Uint16 u = 0;
    if (ds->findAndGetUint16(tag, u).good())
        return (int)u;
    return 0;
}

static const struct {
    size_t off;
    const char *name;
    DcmTagKey tag;
} required_uids[] = {
    {offsetof(struct dcm_info, study_uid), "Study Instance UID (0020,000D)",
     DCM_StudyInstanceUID},
    {offsetof(struct dcm_info, series_uid), "Series Instance UID (0020,000E)",
     DCM_SeriesInstanceUID},
    {offsetof(struct dcm_info, sop_uid), "SOP Instance UID (0008,0018)",
     DCM_SOPInstanceUID},
    {offsetof(struct dcm_info, sop_class_uid), "SOP Class UID (0008,0016)",
     DCM_SOPClassUID},
};

static int fill_info(DcmFileFormat &ff, const char *ts,
                     struct dcm_info *out, struct err *e)
{
    DcmDataset *ds = ff.getDataset();
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof required_uids / sizeof *required_uids;
         i++) {
        OFString v;
        if (ds->findAndGetOFString(required_uids[i].tag, v).bad() ||
            v.empty())
            return err_set(e, ERR_INVALID, "missing %s", required_uids[i].name);
        if (!dicom_uid_valid(v.c_str())) {
            char s[80];
            shown(s, sizeof s, v.c_str());
            return err_set(e, ERR_INVALID, "malformed %s \"%s\"",
                        required_uids[i].name, s);
        }
        strlcpy_h((char *)out + required_uids[i].off, v.c_str(), 65);
    }
    if (ts && ts[0])
        strlcpy_h(out->transfer_syntax, ts, sizeof out->transfer_syntax);
    else
        strlcpy_h(out->transfer_syntax,
                  DcmXfer(ds->getOriginalXfer()).getXferID(),
                  sizeof out->transfer_syntax);

    OFString cs;   /* all values: ISO 2022 code extensions need them */
    ds->findAndGetOFStringArray(DCM_SpecificCharacterSet, cs);
    get_text(ds, DCM_PatientID, cs, out->patient_id, sizeof out->patient_id);
    get_text(ds, DCM_PatientName, cs, out->patient_name,
             sizeof out->patient_name);
    get_text(ds, DCM_PatientBirthDate, cs, out->birth_date,
             sizeof out->birth_date);
    get_text(ds, DCM_PatientSex, cs, out->sex, sizeof out->sex);
    get_text(ds, DCM_StudyDate, cs, out->study_date, sizeof out->study_date);
    get_text(ds, DCM_StudyTime, cs, out->study_time, sizeof out->study_time);
    get_text(ds, DCM_StudyDescription, cs, out->study_description,
             sizeof out->study_description);
    get_text(ds, DCM_AccessionNumber, cs, out->accession,
             sizeof out->accession);
    get_text(ds, DCM_Modality, cs, out->modality, sizeof out->modality);
    get_text(ds, DCM_SeriesDescription, cs, out->series_description,
             sizeof out->series_description);
    out->series_number = get_int(ds, DCM_SeriesNumber);
    out->instance_number = get_int(ds, DCM_InstanceNumber);
    out->rows = get_int(ds, DCM_Rows);
    out->columns = get_int(ds, DCM_Columns);
    out->has_pixels = ds->tagExists(DCM_PixelData) ? 1 : 0;
    if (out->has_pixels) {
        int f = get_int(ds, DCM_NumberOfFrames);
        out->frames = f > 0 ? f : 1;
    }
    Float64 c = 0, w = 0;
    if (ds->findAndGetFloat64(DCM_WindowCenter, c).good() &&
        ds->findAndGetFloat64(DCM_WindowWidth, w).good()) {
        out->has_window = 1;
        out->window_center = c;
        out->window_width = w;
    }
    return 0;
}

/* ---- init ------------------------------------------------------------- */

static int g_inited;
static void strips_stop(void);

extern "C" int dicom_init(struct err *e)
{
    try {
        if (g_inited)
            return 0;
        OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
        if (!dcmDataDict.isDictionaryLoaded())
            return err_set(e, ERR_INTERNAL, "DICOM data dictionary not loaded "
                        "(install libdcmtk17 or set DCMDICTPATH)");
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        /* raw (not "cooked") JPEG-LS encoder: API-NOTES pitfall 1 */
        DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, OFFalse);
        DcmRLEDecoderRegistration::registerCodecs();
        /* DcmSCP::openListenPort() turns this off for the whole process;
         * turn it off from the start so parsing never depends on whether
         * a listener was started. */
        dcmEnableAutomaticInputDataCorrection.set(OFFalse);
        /* peer addresses as IPs, and no reverse DNS per association */
        dcmDisableGethostbyaddr.set(OFTrue);
        /* Debian's DCMTK leaves Nagle on (API-NOTES pitfall 6) */
        setenv("TCP_NODELAY", "1", 1);
        g_inited = 1;
        return 0;
    } catch (...) {
        return err_set(e, ERR_INTERNAL, "dicom_init: exception");
    }
}

extern "C" void dicom_cleanup(void)
{
    try {
        if (!g_inited)
            return;
        DJDecoderRegistration::cleanup();
        DJLSDecoderRegistration::cleanup();
        DJLSEncoderRegistration::cleanup();
        DcmRLEDecoderRegistration::cleanup();
        strips_stop();
        g_inited = 0;
    } catch (...) {
    }
}

/* ---- parse ------------------------------------------------------------ */

/* Run f behind the C boundary: no exception escapes into C.  Running out
 * of memory is ERR_TOOBIG, any other exception ERR_INTERNAL, each message
 * saying what was being done ("parsing") to what (a path).  Every entry
 * point that calls into DCMTK goes through here. */
template <typename F>
static int guarded(struct err *e, const char *doing, const char *what, F f)
{
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return err_set(e, ERR_TOOBIG, "out of memory %s %s", doing, what);
    } catch (...) {
        return err_set(e, ERR_INTERNAL, "exception %s %s", doing, what);
    }
}

extern "C" int dicom_uid_valid(const char *uid)
{
    if (!uid)
        return 0;
    size_t n = strlen(uid);
    if (n == 0 || n > 64)
        return 0;
    const char *c = uid;
    for (;;) {
        if (*c < '0' || *c > '9')
            return 0;                     /* empty component or not a digit */
        if (*c == '0' && c[1] >= '0' && c[1] <= '9')
            return 0;                     /* leading zero */
        while (*c >= '0' && *c <= '9')
            c++;
        if (*c == 0)
            return 1;
        if (*c != '.')
            return 0;
        c++;
    }
}

extern "C" int dicom_parse_file(const char *path, struct dcm_info *out,
                                struct err *e)
{
    return guarded(e, "parsing", path, [&]() -> int {
        struct scan_result r;
        int rc = prescan_file(path, &r, e);
        if (rc)
            return rc;
        DcmFileFormat ff;
        OFCondition c = ff.loadFile(path, r.xfer, EGL_noChange,
                                    LAZY_READ_LEN, ERM_autoDetect);
        if (c.bad())
            return err_set(e, ERR_INVALID, "DICOM parse: %s", c.text());
        return fill_info(ff, r.ts, out, e);
    });
}

extern "C" int dicom_parse_mem(const void *buf, size_t len,
                               struct dcm_info *out, struct err *e)
{
    return guarded(e, "parsing", "a buffer", [&]() -> int {
        struct scan_result r;
        int rc = prescan((const uint8_t *)buf, len, &r, NULL, e);
        if (rc)
            return rc;
        DcmInputBufferStream is;
        is.setBuffer(buf, (offile_off_t)len);
        is.setEos();
        DcmFileFormat ff;
        ff.transferInit();
        OFCondition c = ff.read(is, r.xfer, EGL_noChange);
        ff.transferEnd();
        is.releaseBuffer();
        if (c.bad())
            return err_set(e, ERR_INVALID, "DICOM parse: %s", c.text());
        return fill_info(ff, r.ts, out, e);
    });
}

/* ---- render ----------------------------------------------------------- */

extern "C" int dicom_window_preset(const char *name, double *center,
                                   double *width)
{
    static const struct {
        const char *name;
        double c, w;
    } p[] = {
        {"brain", 40, 80},   {"subdural", 75, 215}, {"stroke", 40, 40},
        {"bone", 500, 2000}, {"lung", -600, 1500},  {"abdomen", 60, 400},
    };
    if (!name)
        return ERR_NOTFOUND;
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (strcmp(name, p[i].name) == 0) {
            *center = p[i].c;
            *width = p[i].w;
            return 0;
        }
    return ERR_NOTFOUND;
}

/* Our libjpeg destination: one malloc'd buffer, sized from the image at
 * the start and doubled when full, so a typical image needs no regrowth
 * (libjpeg's memory destination starts at 4 kB and copies at every
 * doubling).  On error the buffer is still ours to free. */
struct jpeg_out {
    struct jpeg_destination_mgr pub;
    unsigned char *buf;
    size_t cap;
};

static void jout_init(j_compress_ptr c)
{
    struct jpeg_out *d = (struct jpeg_out *)c->dest;
    d->pub.next_output_byte = d->buf;
    d->pub.free_in_buffer = d->cap;
}

static boolean jout_empty(j_compress_ptr c)
{
    struct jpeg_out *d = (struct jpeg_out *)c->dest;
    unsigned char *nb = (unsigned char *)realloc(d->buf, d->cap * 2);
    if (!nb) {
        c->err->msg_code = JERR_OUT_OF_MEMORY;
        c->err->error_exit((j_common_ptr)c);
    }
    d->buf = nb;
    d->pub.next_output_byte = nb + d->cap;
    d->pub.free_in_buffer = d->cap;
    d->cap *= 2;
    return TRUE;
}

static void jout_term(j_compress_ptr)
{
}

/* One compressor per thread, kept: creating and destroying one per image
 * (per strip, below) costs more than resetting it. */
struct jpeg_enc {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    struct jpeg_out dest;
    int ready;
    ~jpeg_enc()
    {
        if (ready)
            jpeg_destroy_compress(&c);
    }
};

static thread_local jpeg_enc tls_jpeg;

static void jpeg_fail_exit(j_common_ptr c)
{
    longjmp(((jpeg_enc *)c->client_data)->jb, 1);
}

static int jpeg_enc_open(jpeg_enc *j)
{
    j_compress_ptr c = &j->c;
    memset(c, 0, sizeof *c);
    c->err = jpeg_std_error(&j->mgr);
    j->mgr.error_exit = jpeg_fail_exit;
    c->client_data = j;
    if (setjmp(j->jb))
        return -1;
    jpeg_create_compress(c);
    j->dest.pub.init_destination = jout_init;
    j->dest.pub.empty_output_buffer = jout_empty;
    j->dest.pub.term_destination = jout_term;
    c->dest = &j->dest.pub;
    j->ready = 1;
    return 0;
}

static void encode_rows(j_compress_ptr c, const unsigned char *pix,
                        unsigned w, unsigned h, int comps, int quality,
                        unsigned restart_rows)
{
    c->image_width = w;
    c->image_height = h;
    c->input_components = comps;
    c->in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(c);
    jpeg_set_quality(c, quality, TRUE);
    for (int i = 0; i < c->num_components; i++)  /* no chroma subsampling */
        c->comp_info[i].h_samp_factor = c->comp_info[i].v_samp_factor = 1;
    int raw = comps == 1 && w % DCTSIZE == 0;
    c->raw_data_in = raw ? TRUE : FALSE;
    /* one MCU is one 8x8 block here (no subsampling) */
    c->restart_interval = restart_rows / DCTSIZE * ((w + DCTSIZE - 1) /
                                                   DCTSIZE);
    jpeg_start_compress(c, TRUE);
    size_t stride = (size_t)w * (size_t)comps;
    JSAMPROW rows[DCTSIZE];
    while (c->next_scanline < c->image_height) {
        unsigned y = c->next_scanline, k = 0;
        if (raw) {
            JSAMPARRAY planes[1] = {rows};
            for (; k < DCTSIZE; k++)
                rows[k] = (JSAMPROW)(pix + stride * (y + k < h ? y + k :
                                                     h - 1));
            jpeg_write_raw_data(c, planes, DCTSIZE);
        } else {
            for (; k < DCTSIZE && y + k < h; k++)
                rows[k] = (JSAMPROW)(pix + stride * (y + k));
            jpeg_write_scanlines(c, rows, k);
        }
    }
    jpeg_finish_compress(c);
}

/* 8-bit grey (comps 1) or interleaved RGB (comps 3) to a JPEG in a
 * malloc'd buffer.  Plain C inside: libjpeg reports errors by longjmp;
 * the thread's compressor is reset after one (jpeg_abort_compress).
 *
 * Grey images whose width is a multiple of 8 go in as raw data (8 rows of
 * one component per call): that skips libjpeg's per-sample colour
 * "conversion" copy and its row buffering, a fifth of the encoding time,
 * and gives the same bytes (the bottom edge is padded by repeating the
 * last row, as libjpeg's own preprocessing does).  restart_rows (a
 * multiple of 8, or 0 for none) sets a restart interval of that many
 * rows. */
static int encode_jpeg(const unsigned char *pix, unsigned w, unsigned h,
                       int comps, int quality, unsigned restart_rows,
                       unsigned char **out, size_t *outlen)
{
    if (!tls_jpeg.ready && jpeg_enc_open(&tls_jpeg))
        return -1;
    /* a quarter of the raw size holds a quality 90 image of all but the
     * noisiest content */
    tls_jpeg.dest.cap = (size_t)w * h * (size_t)comps / 4 + 1024;
    tls_jpeg.dest.buf = (unsigned char *)malloc(tls_jpeg.dest.cap);
    if (!tls_jpeg.dest.buf)
        return -1;
    if (setjmp(tls_jpeg.jb)) {
        jpeg_abort_compress(&tls_jpeg.c);
        free(tls_jpeg.dest.buf);
        tls_jpeg.dest.buf = NULL;
        return -1;
    }
    encode_rows(&tls_jpeg.c, pix, w, h, comps, quality, restart_rows);
    *out = tls_jpeg.dest.buf;
    *outlen = tls_jpeg.dest.cap - tls_jpeg.dest.pub.free_in_buffer;
    tls_jpeg.dest.buf = NULL;
    return 0;
}

/* ---- JPEG in strips, on two cores ------------------------------------- */

/* Encoding dominates a fast-path render, and one request waits for it
 * while the other core idles.  So a large grey image is cut into
 * horizontal strips (a multiple of 8 rows each) that are encoded as
 * separate JPEGs by the caller and one helper thread, then spliced into
 * one baseline JPEG with restart markers: a restart interval of exactly
 * one strip resets the DC predictors and byte-aligns the entropy code,
 * which is what a fresh encode of the strip gives, so the strips' entropy
 * segments can follow one another with RSTn markers between them.  The
 * decoded pixels are the same as from a single encode.
 *
 * The caller never depends on the helper: strips are taken from a shared
 * counter by whoever gets there first, and a caller that finds the helper
 * busy (another render, say from the DICOM listener's thread) or asleep
 * simply encodes every strip itself. */
#define STRIPS 4                /* strips per image */
#define STRIP_MIN_ROWS 64       /* images of fewer rows per strip: one JPEG */
#define STRIPS_SPIN_NS 200000LL /* a caller spins this long for the helper */
#define STRIPS_MISS_NS 1000000LL       /* a wait this long: it was preempted */
#define STRIPS_BACKOFF_NS 100000000LL  /* then one encode for 0.1 s */

struct strip_job {
    /* in */
    const uint8_t *pix;         /* w x h grey, row by row */
    unsigned w, h, rows;        /* rows per strip, a multiple of 8 */
    int n;                      /* strips */
    int quality;
    void (*fill)(void *arg, unsigned y0, unsigned y1);  /* rows y0..y1-1 */
    void *fill_arg;             /*   of pix, before encoding; or NULL */
    /* out: one complete JPEG per strip, malloc'd */
    unsigned char *out[STRIPS];
    size_t len[STRIPS];
    std::atomic<int> next, bad;
    std::atomic<int> released;  /* the helper has let go of the job */
};

/* The helper.  Plain pthread objects with static initialisers: they have
 * no destructors, so a process that exits without dicom_cleanup() does
 * not wait at exit for the helper asleep on them. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* for the helper: a job, or stop */
    pthread_cond_t done;        /* for callers: a job was let go of */
    pthread_t th;
    int started;                /* 1 running, -1 could not start */
    int stop;
    struct strip_job *job;      /* offered to the helper, or NULL */
    int busy;                   /* the helper is working on job */
} g_strips = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
              PTHREAD_COND_INITIALIZER, pthread_t(), 0, 0, NULL, 0};

/* Until when (CLOCK_MONOTONIC, ns) images are encoded in one go: set when
 * the helper made a caller wait for a strip it was slow to finish
 * (preempted: the machine is busy, and the second core is not ours to
 * count on).  Waiting then costs more than the helper gives, so for a
 * while a render is one encode (with the same restart intervals, so the
 * same bytes).  A helper that merely woke too late to take a strip costs
 * little (the caller encodes them all) and does not count. */
static std::atomic<long long> g_strips_whole_until(0);

/* HASHI_RENDER_STRIPS (for tests and trouble): "0" no strips, a plain
 * JPEG; "1" strips encoded apart and spliced even when the helper is not
 * keeping up; "one" strips as restart intervals of one encode, never the
 * helper; anything else: apart when the helper keeps up, else in one. */
enum { STRIPS_NONE, STRIPS_APART, STRIPS_ONE, STRIPS_AUTO };

static int strips_mode(void)
{
    const char *v = getenv("HASHI_RENDER_STRIPS");
    if (!v)
        return STRIPS_AUTO;
    return !strcmp(v, "0") ? STRIPS_NONE : !strcmp(v, "1") ? STRIPS_APART :
           !strcmp(v, "one") ? STRIPS_ONE : STRIPS_AUTO;
}

static long long mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void strips_work(struct strip_job *j)
{
    for (;;) {
        int i = j->next.fetch_add(1);
        if (i >= j->n)
            return;
        unsigned y0 = (unsigned)i * j->rows;
        unsigned y1 = y0 + j->rows < j->h ? y0 + j->rows : j->h;
        if (j->fill)
            j->fill(j->fill_arg, y0, y1);
        if (encode_jpeg(j->pix + (size_t)y0 * j->w, j->w, y1 - y0, 1,
                        j->quality, 0, &j->out[i], &j->len[i]))
            j->bad.store(1);
    }
}

static void *strips_helper(void *)
{
    pthread_mutex_lock(&g_strips.mu);
    for (;;) {
        while (!g_strips.stop && !(g_strips.job && !g_strips.busy))
            pthread_cond_wait(&g_strips.wake, &g_strips.mu);
        if (g_strips.stop)
            break;
        struct strip_job *j = g_strips.job;
        g_strips.busy = 1;
        pthread_mutex_unlock(&g_strips.mu);
        strips_work(j);
        pthread_mutex_lock(&g_strips.mu);
        g_strips.busy = 0;
        g_strips.job = NULL;    /* taken once: the caller does the rest */
        j->released.store(1);   /* the last touch of *j */
        pthread_cond_broadcast(&g_strips.done);
    }
    pthread_mutex_unlock(&g_strips.mu);
    return NULL;
}

/* Start the helper (once, and only with a second core); 0 if it runs. */
static int strips_start(void)
{
    pthread_mutex_lock(&g_strips.mu);
    if (!g_strips.started && sysconf(_SC_NPROCESSORS_ONLN) < 2)
        g_strips.started = -1;              /* no second core to use */
    if (!g_strips.started) {
        /* the helper must not take the process's signals */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&g_strips.th, NULL, strips_helper, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        g_strips.started = rc ? -1 : 1;
    }
    int ok = g_strips.started > 0;
    pthread_mutex_unlock(&g_strips.mu);
    return ok ? 0 : -1;
}

static void strips_stop(void)
{
    pthread_mutex_lock(&g_strips.mu);
    int running = g_strips.started > 0;
    g_strips.stop = 1;
    pthread_cond_broadcast(&g_strips.wake);
    pthread_mutex_unlock(&g_strips.mu);
    if (running)
        pthread_join(g_strips.th, NULL);
    pthread_mutex_lock(&g_strips.mu);
    g_strips.started = 0;
    g_strips.stop = 0;
    pthread_mutex_unlock(&g_strips.mu);
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Big-endian 16-bit at p. */
static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Where strip JPEG j's entropy-coded data starts (just after its SOS
 * segment) and where its SOS marker is; 0 if it has no SOS. */
static int jpeg_scan_at(const unsigned char *j, size_t len, size_t *sos,
                        size_t *data)
{
    size_t p = 2;
    while (p + 4 <= len && j[p] == 0xFF) {
        unsigned m = j[p + 1], l = be16(j + p + 2);
        if (m == 0xDA) {
            *sos = p;
            *data = p + 2 + l;
            return *data <= len - 2;
        }
        p += 2 + l;
    }
    return 0;
}

/* One JPEG from the strips: strip 0's headers with the full height in
 * SOF0 and a DRI of one strip's MCUs, then every strip's entropy-coded
 * data, RST0..7 in turn between them, then EOI.  Frees the strips. */
static int strips_splice(struct strip_job *j, unsigned char **out,
                         size_t *outlen)
{
    size_t sos[STRIPS] = {}, data[STRIPS] = {}, total = 16;
    int ok = 1;
    for (int i = 0; i < j->n; i++) {
        ok = ok && j->out[i] && jpeg_scan_at(j->out[i], j->len[i], &sos[i],
                                             &data[i]);
        if (ok)
            total += j->len[i] - data[i] + 2;
    }
    unsigned char *b = ok ? (unsigned char *)malloc(total + sos[0] +
                                                    (data[0] - sos[0]))
                          : NULL;
    if (b) {
        size_t o = 0;
        memcpy(b, j->out[0], sos[0]);
        /* the frame header's height: the whole image */
        for (size_t p = 2; p + 9 <= sos[0] && b[p] == 0xFF;
             p += 2 + be16(b + p + 2))
            if (b[p + 1] >= 0xC0 && b[p + 1] <= 0xC2) {   /* SOF0..2 */
                b[p + 5] = (unsigned char)(j->h >> 8);
                b[p + 6] = (unsigned char)j->h;
            }
        o = sos[0];
        unsigned interval = ((j->w + 7) / 8) * (j->rows / 8);
        const unsigned char dri[6] = {0xFF, 0xDD, 0, 4,
                                      (unsigned char)(interval >> 8),
                                      (unsigned char)interval};
        memcpy(b + o, dri, sizeof dri);
        o += sizeof dri;
        memcpy(b + o, j->out[0] + sos[0], data[0] - sos[0]);
        o += data[0] - sos[0];
        for (int i = 0; i < j->n; i++) {
            size_t n = j->len[i] - 2 - data[i];
            memcpy(b + o, j->out[i] + data[i], n);
            o += n;
            b[o++] = 0xFF;
            b[o++] = i + 1 < j->n ? (unsigned char)(0xD0 + (i & 7)) : 0xD9;
        }
        *out = b;
        *outlen = o;
    }
    for (int i = 0; i < j->n; i++)
        free(j->out[i]);
    return b ? 0 : -1;
}

/* Encode w x h grey at pix (rows filled by fill first, if given) as one
 * JPEG, in strips on two threads when it is tall enough.  *out is
 * malloc'd.  0 or -1. */
static int encode_grey_strips(const uint8_t *pix, unsigned w, unsigned h,
                              int quality,
                              void (*fill)(void *, unsigned, unsigned),
                              void *fill_arg, unsigned char **out,
                              size_t *outlen)
{
    unsigned rows = ((h + STRIPS - 1) / STRIPS + 7) / 8 * 8;
    unsigned mcus = (w + 7) / 8;
    while (rows > 8 && mcus * (rows / 8) > 65535)   /* DRI is 16 bits */
        rows -= 8;
    int mode = strips_mode();
    if (w % 8 || rows < STRIP_MIN_ROWS || (h + rows - 1) / rows > STRIPS ||
        mode == STRIPS_NONE) {
        if (fill)
            fill(fill_arg, 0, h);
        return encode_jpeg(pix, w, h, 1, quality, 0, out, outlen);
    }
    /* The same bytes either way: strips encoded apart and spliced, or
     * one encode with a restart interval of a strip (the bytes must not
     * depend on how busy the machine was: the ETag names them). */
    if (mode == STRIPS_ONE ||
        (mode == STRIPS_AUTO && mono_ns() < g_strips_whole_until.load()) ||
        strips_start()) {
        if (fill)
            fill(fill_arg, 0, h);
        return encode_jpeg(pix, w, h, 1, quality, rows, out, outlen);
    }
    struct strip_job j;
    j.pix = pix;
    j.w = w;
    j.h = h;
    j.rows = rows;
    j.n = (int)((h + rows - 1) / rows);
    j.quality = quality;
    j.fill = fill;
    j.fill_arg = fill_arg;
    for (int i = 0; i < STRIPS; i++) {
        j.out[i] = NULL;
        j.len[i] = 0;
    }
    j.next.store(0);
    j.bad.store(0);
    j.released.store(0);
    int offered = 0;
    pthread_mutex_lock(&g_strips.mu);
    if (!g_strips.job && !g_strips.busy) {
        g_strips.job = &j;
        offered = 1;
        pthread_cond_signal(&g_strips.wake);
    }
    pthread_mutex_unlock(&g_strips.mu);
    strips_work(&j);
    if (offered) {
        /* the helper either never got to the job (withdraw it) or took
         * it: then wait, spinning, until it lets go (it is working on a
         * strip on the other core, a fraction of a millisecond; sleeping
         * instead would add a wake-up to every render) */
        pthread_mutex_lock(&g_strips.mu);
        int taken = g_strips.job == &j && g_strips.busy;
        if (g_strips.job == &j && !taken)
            g_strips.job = NULL;
        pthread_mutex_unlock(&g_strips.mu);
        int missed = 0;
        if (taken) {
            /* spin a while: the helper is most likely finishing a strip
             * on the other core (well under STRIPS_SPIN_NS), and sleeping
             * would add a wake-up; then sleep (it may have been
             * preempted, or share our core).
             * Taking the lock after the helper set released holding it
             * also orders its writes of the strips before our reads for
             * tools that do not follow atomics (helgrind). */
            long long t0 = mono_ns();
            for (int k = 0; !j.released.load(); k++) {
                cpu_pause();
                if (k % 64 == 63 && mono_ns() - t0 > STRIPS_SPIN_NS)
                    break;
            }
            pthread_mutex_lock(&g_strips.mu);
            while (!j.released.load())
                pthread_cond_wait(&g_strips.done, &g_strips.mu);
            pthread_mutex_unlock(&g_strips.mu);
            missed = mono_ns() - t0 > STRIPS_MISS_NS;
        }
        if (missed)
            g_strips_whole_until.store(mono_ns() + STRIPS_BACKOFF_NS);
    }
    if (j.bad.load()) {
        for (int i = 0; i < j.n; i++)
            free(j.out[i]);
        return -1;
    }
    return strips_splice(&j, out, outlen);
}

/* ERR_TOOBIG if decoding one frame (all_frames: every frame) would need
 * more memory than we allow. */
static int check_size(DcmDataset *ds, int all_frames, struct err *e)
{
    Uint16 rows = 0, cols = 0, spp = 1, bits = 0;
    Sint32 nf = 1;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
    ds->findAndGetUint16(DCM_BitsAllocated, bits);
    if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
        nf = 1;
    unsigned long long frame = (unsigned long long)rows * cols *
                               (spp ? spp : 1) * ((bits + 7u) / 8u);
    if (frame > FRAME_BYTES_MAX)
        return err_set(e, ERR_TOOBIG, "a %ux%u frame of %u samples and %u bits "
                    "is too large", cols, rows, spp, bits);
    if (all_frames && frame * (unsigned long long)nf > PIXEL_BYTES_MAX)
        return err_set(e, ERR_TOOBIG, "%d frames of %llu bytes are too large",
                    (int)nf, frame);
    return 0;
}

/* One RLE segment (PackBits, PS3.5 G.3.1) must expand to exactly want
 * bytes without reading past its end. */
static int rle_segment_ok(const Uint8 *p, size_t len, size_t want)
{
    size_t i = 0, out = 0;
    while (out < want) {
        if (i >= len)
            return 0;
        int n = (Sint8)p[i++];
        if (n >= 0) {
            if ((size_t)n + 1 > len - i)
                return 0;
            i += (size_t)n + 1;
            out += (size_t)n + 1;
        } else if (n != -128) {
            if (i >= len)
                return 0;
            i++;
            out += (size_t)(1 - n);
        }
    }
    return out == want;
}

/* DCMTK 3.6.7's RLE decoder trusts the segment offsets of the RLE header
 * and writes past its buffers on a corrupt one (found by fuzzing).  So
 * RLE frames are checked first: one fragment per frame (PS3.5 A.4.2), a
 * header of the right number of segments with ascending offsets inside
 * the fragment, every segment expanding to exactly one plane.  Checks
 * frame `frame`, or every frame if frame < 0. */
static int check_rle(DcmDataset *ds, long frame, struct err *e)
{
    DcmElement *el = NULL;
    if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el ||
        el->ident() != EVR_PixelData)
        return err_set(e, ERR_INVALID, "no pixel data");
    DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
    E_TransferSyntax xfer = EXS_Unknown;
    const DcmRepresentationParameter *rp = NULL;
    DcmPixelSequence *seq = NULL;
    pd->getOriginalRepresentationKey(xfer, rp);
    if (pd->getEncapsulatedRepresentation(xfer, rp, seq).bad() || !seq)
        return err_set(e, ERR_INVALID, "RLE: no pixel sequence");
    Uint16 rows = 0, cols = 0, spp = 1, bits = 0;
    Sint32 nf = 1;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
    ds->findAndGetUint16(DCM_BitsAllocated, bits);
    if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
        nf = 1;
    unsigned long nseg = (unsigned long)(spp ? spp : 1) * ((bits + 7u) / 8u);
    size_t plane = (size_t)rows * cols;
    if (nseg < 1 || nseg > 15 || plane == 0)
        return err_set(e, ERR_INVALID, "RLE: %lu segments of %zu bytes",
                    nseg, plane);
    if (seq->card() != (unsigned long)nf + 1)
        return err_set(e, ERR_INVALID, "RLE: %lu fragments for %d frames",
                    seq->card() - 1, (int)nf);
    long first = frame < 0 ? 0 : frame, last = frame < 0 ? nf - 1 : frame;
    for (long f = first; f <= last; f++) {
        DcmPixelItem *it = NULL;
        Uint8 *frag = NULL;
        if (seq->getItem(it, (unsigned long)f + 1).bad() || !it ||
            it->getUint8Array(frag).bad())
            return err_set(e, ERR_INVALID, "RLE: frame %ld unreadable", f);
        size_t len = it->getLength();
        if (len < 64 || !frag)
            return err_set(e, ERR_INVALID, "RLE: frame %ld too short", f);
        Uint32 off[16];
        for (int i = 0; i < 16; i++)
            off[i] = rd32(frag + 4 * i, 0);
        if (off[0] != nseg)
            return err_set(e, ERR_INVALID, "RLE: frame %ld has %u segments, "
                        "expected %lu", f, off[0], nseg);
        for (unsigned long s = 1; s <= nseg; s++) {
            size_t end = s < nseg ? off[s + 1] : len;
            if (off[s] < 64 || off[s] > end || end > len ||
                !rle_segment_ok(frag + off[s], end - off[s], plane))
                return err_set(e, ERR_INVALID, "RLE: frame %ld segment %lu is "
                            "corrupt", f, s);
        }
    }
    return 0;
}

/* ERR_UNSUPPORTED unless DCMTK can decode this transfer syntax here. */
static int check_decodable(E_TransferSyntax xfer, struct err *e)
{
    DcmXfer x(xfer);
    if (x.isEncapsulated() &&
        !DcmCodecList::canChangeCoding(xfer, EXS_LittleEndianExplicit))
        return err_set(e, ERR_UNSUPPORTED, "no decoder for %s (%s)",
                    x.getXferName(), x.getXferID());
    return 0;
}

/* Where a rendered frame goes: encoded as JPEG, or copied out as pixels
 * (dicom_render_pixels).  out is malloc'd and handed to the caller. */
struct render_sink {
    int jpeg;
    int quality;
    unsigned char *out;
    size_t len;
    unsigned w, h;
    int comps;
};

static int sink_put(struct render_sink *s, const unsigned char *pix,
                    unsigned w, unsigned h, int comps)
{
    if (s->jpeg) {
        int bad = comps == 1 ?
            encode_grey_strips(pix, w, h, s->quality, NULL, NULL, &s->out,
                               &s->len) :
            encode_jpeg(pix, w, h, comps, s->quality, 0, &s->out, &s->len);
        if (bad)
            return -1;
    } else {
        size_t n = (size_t)w * h * (size_t)comps;
        s->out = (unsigned char *)malloc(n ? n : 1);
        if (!s->out)
            return -1;
        memcpy(s->out, pix, n);
        s->len = n;
    }
    s->w = w;
    s->h = h;
    s->comps = comps;
    return 0;
}

/* The output size for an iw x ih image under the options' maximum size:
 * scaled down (never up) to fit, keeping the aspect.  1 if it must be
 * scaled. */
static int fit_size(unsigned long iw, unsigned long ih,
                    const struct dcm_render_opts *o, unsigned long *sw,
                    unsigned long *sh)
{
    double s = 1.0;
    *sw = iw;
    *sh = ih;
    if (o->max_width > 0 && iw > (unsigned long)o->max_width)
        s = (double)o->max_width / (double)iw;
    if (o->max_height > 0 && ih > (unsigned long)o->max_height &&
        (double)o->max_height / (double)ih < s)
        s = (double)o->max_height / (double)ih;
    if (s >= 1.0)
        return 0;
    *sw = (unsigned long)(iw * s + 0.5);
    *sh = (unsigned long)(ih * s + 0.5);
    if (*sw < 1)
        *sw = 1;
    if (*sh < 1)
        *sh = 1;
    if (o->max_width > 0 && *sw > (unsigned long)o->max_width)
        *sw = (unsigned long)o->max_width;
    if (o->max_height > 0 && *sh > (unsigned long)o->max_height)
        *sh = (unsigned long)o->max_height;
    return 1;
}

/* ---- render: fast path ------------------------------------------------ */

/* Per-thread working memory of the fast path, kept between calls so a
 * render touches no fresh pages (DCMTK's fresh multi-hundred-kB buffers
 * per image cost more in page faults than the arithmetic).  Slots larger
 * than SCRATCH_KEEP are given back after each call. */
#define SCRATCH_KEEP (8u << 20)
enum { SCR_FRAME, SCR_LUT, SCR_TMP, SCR_SCALED, SCR_N };

struct scratch {
    void *buf[SCR_N] = {};
    size_t cap[SCR_N] = {};
    ~scratch()
    {
        for (int i = 0; i < SCR_N; i++)
            free(buf[i]);
    }
};

static thread_local scratch tls_scratch;

static void *scratch_get(int slot, size_t n)
{
    scratch &s = tls_scratch;
    if (s.cap[slot] < n) {
        free(s.buf[slot]);
        s.buf[slot] = malloc(n);
        s.cap[slot] = s.buf[slot] ? n : 0;
    }
    return s.buf[slot];
}

static void scratch_trim(void)
{
    scratch &s = tls_scratch;
    for (int i = 0; i < SCR_N; i++)
        if (s.cap[i] > SCRATCH_KEEP) {
            free(s.buf[i]);
            s.buf[i] = NULL;
            s.cap[i] = 0;
        }
}

enum { FAST_DECLINED = 1 };

/* US value of VM 1, as DCMTK would read it; 0 if absent or odd. */
static int fa_us(const struct fast_el *f, unsigned *out)
{
    if (!f->v || f->len != 2)
        return 0;
    if (f->vr[0] && !vr_is(f->vr, "US"))
        return 0;
    *out = (unsigned)f->v[0] | (unsigned)f->v[1] << 8;
    return 1;
}

/* The first value of a text attribute (VR vr when explicit), trimmed, in
 * out: 1; 0 absent or empty; -1 there but unusable. */
static int fa_str(const struct fast_el *f, const char *vr, char *out,
                  size_t n)
{
    if (!f->v || f->len == 0)
        return 0;
    if (f->len == 0xFFFFFFFFu || (f->vr[0] && !vr_is(f->vr, vr)))
        return -1;
    size_t b = 0, end = 0;
    while (end < f->len && f->v[end] != '\\')
        end++;
    while (b < end && f->v[b] == ' ')
        b++;
    while (end > b && (f->v[end - 1] == ' ' || f->v[end - 1] == 0))
        end--;
    if (end == b)
        return 0;
    if (end - b >= n)
        return -1;
    memcpy(out, f->v + b, end - b);
    out[end - b] = 0;
    return 1;
}

/* The first value of a DS or IS: 1 and *out; 0 absent; -1 unparsable. */
static int fa_num(const struct fast_el *f, const char *vr, double *out)
{
    char s[64];
    int rc = fa_str(f, vr, s, sizeof s);
    if (rc <= 0)
        return rc;
    /* only what a DS or IS may hold: no hex, no inf/nan (strtod would
     * read them, DCMTK would not) */
    if (strspn(s, "0123456789+-.eE") != strlen(s))
        return -1;
    char *end;
    double d = strtod(s, &end);
    if (*end || end == s || !(d == d) || d > 1e300 || d < -1e300)
        return -1;
    *out = d;
    return 1;
}

/* One frame's geometry and grey-level transforms, from the attributes. */
struct fast_img {
    unsigned rows, cols, balloc, bstored, hibit;
    int is_signed, mono1, frames;
    int rescale;
    double slope, intercept;
    const uint8_t *pix;      /* the requested frame's first byte */
};

/* Stored value of a raw sample: the BitsStored bits ending at HighBit,
 * sign-extended for PixelRepresentation 1 (sign = the top stored bit, or
 * 0 when unsigned). */
static inline int32_t stored_value(uint32_t raw, unsigned shift,
                                   uint32_t mask, uint32_t sign)
{
    uint32_t v = (raw >> shift) & mask;
    return (int32_t)((v ^ sign) - sign);
}

/* Smallest and largest stored value of n samples.  The common layout
 * (all allocated bits stored, from bit 0) of 16-bit samples goes eight at
 * a time with SSE2 (unsigned ones biased by 0x8000 into signed order);
 * the rest sample by sample. */
template <typename T, typename S>
static void plain_minmax(const uint8_t *src, size_t n, int32_t *mn,
                         int32_t *mx)
{
    S lo, hi;
    size_t i = 0;
    memcpy(&lo, src, sizeof lo);
    hi = lo;
#ifdef __SSE2__
    if (sizeof(S) == 2 && n >= 8) {
        const __m128i bias = _mm_set1_epi16(
            (short)(std::is_signed<S>::value ? 0 : 0x8000));
        __m128i vlo = _mm_set1_epi16(0x7FFF), vhi = _mm_set1_epi16(-0x8000);
        for (; i + 8 <= n; i += 8) {
            __m128i v = _mm_xor_si128(
                _mm_loadu_si128((const __m128i *)(src + 2 * i)), bias);
            vlo = _mm_min_epi16(vlo, v);
            vhi = _mm_max_epi16(vhi, v);
        }
        int16_t l8[8], h8[8];
        _mm_storeu_si128((__m128i *)l8, _mm_xor_si128(vlo, bias));
        _mm_storeu_si128((__m128i *)h8, _mm_xor_si128(vhi, bias));
        for (int k = 0; k < 8; k++) {
            S a, b;
            memcpy(&a, &l8[k], sizeof a);
            memcpy(&b, &h8[k], sizeof b);
            lo = a < lo ? a : lo;
            hi = b > hi ? b : hi;
        }
    }
#endif
    for (; i < n; i++) {
        S v;
        memcpy(&v, src + i * sizeof(S), sizeof v);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *mn = lo;
    *mx = hi;
}

template <typename T>
static void stored_minmax(const uint8_t *src, size_t n, unsigned shift,
                          uint32_t mask, uint32_t sign, int plain,
                          int32_t *mn, int32_t *mx)
{
    if (plain && sign) {
        if (sizeof(T) == 1)
            plain_minmax<T, int8_t>(src, n, mn, mx);
        else
            plain_minmax<T, int16_t>(src, n, mn, mx);
        return;
    }
    if (plain) {
        plain_minmax<T, T>(src, n, mn, mx);
        return;
    }
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    for (size_t i = 0; i < n; i++) {
        T raw;
        memcpy(&raw, src + i * sizeof(T), sizeof(T));
        int32_t v = stored_value(raw, shift, mask, sign);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *mn = lo;
    *mx = hi;
}

/* out[i] = lut0[stored value of sample i]; lut0 is indexed by stored
 * value (it may point before its allocation's start by the smallest). */
template <typename T>
static void apply_lut(const uint8_t *__restrict src, size_t n,
                      unsigned shift, uint32_t mask, uint32_t sign, int plain,
                      const uint8_t *__restrict lut, int32_t lut_first,
                      uint8_t *__restrict out)
{
    if (plain && sign) {
        typedef typename std::conditional<sizeof(T) == 1, int8_t,
                                          int16_t>::type S;
        for (size_t i = 0; i < n; i++) {
            S v;
            memcpy(&v, src + i * sizeof(S), sizeof v);
            out[i] = lut[(int32_t)v - lut_first];
        }
        return;
    }
    if (plain) {
        for (size_t i = 0; i < n; i++) {
            T v;
            memcpy(&v, src + i * sizeof(T), sizeof v);
            out[i] = lut[(int32_t)v - lut_first];
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        T raw;
        memcpy(&raw, src + i * sizeof(T), sizeof(T));
        out[i] = lut[stored_value(raw, shift, mask, sign) - lut_first];
    }
}

/* The modality value of stored value v: rescaled and truncated to an
 * integer, in the order of operations DCMTK uses (dimoipxt.h), so both
 * give the same integers. */
static double modality(const struct fast_img *im, int32_t v)
{
    if (!im->rescale)
        return (double)v;
    double d;
    if (im->slope == 1.0)
        d = (double)v + im->intercept;
    else if (im->intercept == 0.0)
        d = (double)v * im->slope;
    else
        d = (double)v * im->slope + im->intercept;
    if (!(d > -9e18 && d < 9e18))
        return d;       /* out of any integer range: the caller declines */
    return (double)(long long)d;
}

/* The first v in [lo, hi] where pred(v) holds, or hi + 1 if none; pred
 * must be false up to some v and true from there on. */
template <typename P>
static int32_t first_where(int32_t lo, int32_t hi, P pred)
{
    int64_t l = lo, h = (int64_t)hi + 1;
    while (l < h) {
        int64_t mid = l + (h - l) / 2;
        if (pred((int32_t)mid))
            h = mid;
        else
            l = mid + 1;
    }
    return (int32_t)l;
}

/* Area-average downscale of 8-bit grey: every output pixel is the mean of
 * the source area it covers, partly covered pixels weighted by how much. */
static void area_scale(const uint8_t *src, unsigned iw, unsigned ih,
                       uint8_t *dst, unsigned sw, unsigned sh, float *tmp)
{
    const double fx = (double)iw / sw, fy = (double)ih / sh;
    for (unsigned ox = 0; ox < sw; ox++) {
        double x0 = ox * fx, x1 = (ox + 1) * fx;
        unsigned a = (unsigned)x0, b = (unsigned)x1;
        if (b >= iw)
            b = iw - 1;
        for (unsigned y = 0; y < ih; y++) {
            const uint8_t *row = src + (size_t)y * iw;
            double acc = 0;
            for (unsigned x = a; x <= b; x++) {
                double l = x > x0 ? x : x0, r = x + 1.0 < x1 ? x + 1.0 : x1;
                if (r > l)
                    acc += (r - l) * row[x];
            }
            tmp[(size_t)y * sw + ox] = (float)(acc / fx);
        }
    }
    for (unsigned oy = 0; oy < sh; oy++) {
        double y0 = oy * fy, y1 = (oy + 1) * fy;
        unsigned a = (unsigned)y0, b = (unsigned)y1;
        if (b >= ih)
            b = ih - 1;
        for (unsigned ox = 0; ox < sw; ox++) {
            double acc = 0;
            for (unsigned y = a; y <= b; y++) {
                double t = y > y0 ? y : y0, u = y + 1.0 < y1 ? y + 1.0 : y1;
                if (u > t)
                    acc += (u - t) * tmp[(size_t)y * sw + ox];
            }
            double v = acc / fy + 0.5;
            dst[(size_t)oy * sw + ox] = v >= 255 ? 255 : v <= 0 ? 0 :
                                        (uint8_t)v;
        }
    }
}

/* Read what the fast path needs from the attributes; FAST_DECLINED with
 * *why when the image is not one it renders like DCMTK. */
static int fast_setup(const struct fast_attrs *fa,
                      const struct dcm_render_opts *o, struct fast_img *im,
                      double *center, double *width, int *minmax,
                      const char **why, struct err *e)
{
    char s[32];
    unsigned spp = 1;
    double d;
    memset(im, 0, sizeof *im);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    *why = "big-endian host";
    return FAST_DECLINED;
#endif
    if (fa->other) {
        *why = fa->other;
        return FAST_DECLINED;
    }
    const struct fast_el *px = &fa->el[FA_PIXELS];
    if (!px->v || px->len == 0xFFFFFFFFu ||
        (px->vr[0] && !vr_is(px->vr, "OW") && !vr_is(px->vr, "OB"))) {
        *why = "no native pixel data";
        return FAST_DECLINED;
    }
    if (fa->el[FA_SPP].v && (!fa_us(&fa->el[FA_SPP], &spp) || spp != 1)) {
        *why = "samples per pixel";
        return FAST_DECLINED;
    }
    if (fa_str(&fa->el[FA_PHOTO], "CS", s, sizeof s) != 1 ||
        (strcmp(s, "MONOCHROME1") && strcmp(s, "MONOCHROME2"))) {
        *why = "photometric interpretation";
        return FAST_DECLINED;
    }
    im->mono1 = !strcmp(s, "MONOCHROME1");
    unsigned pixrep;
    if (!fa_us(&fa->el[FA_ROWS], &im->rows) ||
        !fa_us(&fa->el[FA_COLS], &im->cols) ||
        !fa_us(&fa->el[FA_BALLOC], &im->balloc) ||
        !fa_us(&fa->el[FA_BSTORED], &im->bstored) ||
        !fa_us(&fa->el[FA_HIGHBIT], &im->hibit) ||
        !fa_us(&fa->el[FA_PIXREP], &pixrep) || pixrep > 1 ||
        im->rows == 0 || im->cols == 0 ||
        (im->balloc != 8 && im->balloc != 16) || im->bstored < 1 ||
        im->bstored > im->balloc || im->hibit + 1 < im->bstored ||
        im->hibit >= im->balloc) {
        *why = "image pixel attributes";
        return FAST_DECLINED;
    }
    im->is_signed = (int)pixrep;
    im->frames = 1;
    int rc = fa_num(&fa->el[FA_FRAMES], "IS", &d);
    if (rc < 0 || (rc == 1 && (d != (double)(long)d || d > 1e9))) {
        *why = "number of frames";
        return FAST_DECLINED;
    }
    if (rc == 1 && d >= 1)
        im->frames = (int)d;
    if (o->frame >= im->frames)
        return err_set(e, ERR_NOTFOUND, "frame %d out of range (%d frames)",
                    o->frame, im->frames);
    size_t fbytes = (size_t)im->rows * im->cols * (im->balloc / 8);
    if (fbytes > FRAME_BYTES_MAX)
        return err_set(e, ERR_TOOBIG, "a %ux%u frame of %u samples and %u bits "
                    "is too large", im->cols, im->rows, 1u, im->balloc);
    if ((unsigned long long)fbytes * ((unsigned)o->frame + 1) > px->len) {
        *why = "pixel data shorter than its frames";
        return FAST_DECLINED;
    }
    im->pix = px->v + fbytes * (size_t)o->frame;
    if ((rc = fa_str(&fa->el[FA_VOIFN], "CS", s, sizeof s)) != 0 &&
        (rc < 0 || strcmp(s, "LINEAR"))) {
        *why = "VOI LUT function";
        return FAST_DECLINED;
    }
    /* DCMTK rescales only when both are there; a zero or negative slope
     * takes branches of its own */
    int ri = fa_num(&fa->el[FA_RI], "DS", &im->intercept);
    int rs = fa_num(&fa->el[FA_RS], "DS", &im->slope);
    if (ri < 0 || rs < 0 || ri != rs || (rs == 1 && !(im->slope > 0))) {
        *why = "rescale";
        return FAST_DECLINED;
    }
    im->rescale = rs == 1;
    /* DCMTK's windowing table starts at the rescaled absolute minimum
     * (dimoopxt.h: value = i + absmin, looked up at i = m - (int)absmin):
     * when that is not an integer, it windows every value shifted by its
     * fraction.  Leave those to DCMTK, so both engines agree. */
    if (im->rescale) {
        double absmin = pixrep ? -(double)(1u << (im->bstored - 1)) : 0.0;
        double a = absmin * im->slope + im->intercept;
        if (a != floor(a)) {
            *why = "rescale to a non-integer minimum";
            return FAST_DECLINED;
        }
    }
    *minmax = 0;
    if (o->window_mode == DCM_WINDOW_EXPLICIT) {
        *center = o->center;
        *width = o->width;
    } else if (o->window_mode == DCM_WINDOW_DEFAULT) {
        int wc = fa_num(&fa->el[FA_WC], "DS", center);
        int ww = fa_num(&fa->el[FA_WW], "DS", width);
        if (wc < 0 || ww < 0 || (wc == 1 && ww == 1 && !(*width >= 1.0))) {
            *why = "the file's window";
            return FAST_DECLINED;
        }
        *minmax = !(wc == 1 && ww == 1);
    } else {
        *minmax = 1;
    }
    return 0;
}

/* The table pass over some rows of the frame (a strip_job fill). */
struct lut_pass {
    const struct fast_img *im;
    unsigned shift;
    uint32_t mask, sign;
    int plain;
    const uint8_t *lut;
    int32_t first;
    uint8_t *frame;
};

static void lut_rows(void *arg, unsigned y0, unsigned y1)
{
    const struct lut_pass *p = (const struct lut_pass *)arg;
    size_t at = (size_t)y0 * p->im->cols, n = (size_t)(y1 - y0) *
                                              p->im->cols;
    if (p->im->balloc == 8)
        apply_lut<uint8_t>(p->im->pix + at, n, p->shift, p->mask, p->sign,
                           p->plain, p->lut, p->first, p->frame + at);
    else
        apply_lut<uint16_t>(p->im->pix + 2 * at, n, p->shift, p->mask,
                            p->sign, p->plain, p->lut, p->first,
                            p->frame + at);
}

static int render_fast(const struct fast_attrs *fa,
                       const struct dcm_render_opts *o,
                       struct render_sink *sink, const char **why,
                       struct err *e)
{
    struct fast_img im;
    double c = 0, w = 0;
    int minmax = 0;
    int rc = fast_setup(fa, o, &im, &c, &w, &minmax, why, e);
    if (rc)
        return rc;

    size_t n = (size_t)im.rows * im.cols;
    unsigned shift = im.hibit + 1 - im.bstored;
    uint32_t mask = (uint32_t)((1ull << im.bstored) - 1);
    uint32_t sign = im.is_signed ? 1u << (im.bstored - 1) : 0;
    int plain = shift == 0 && im.bstored == im.balloc;
    /* The table covers every stored value the frame may hold, or, for a
     * min/max window, the ones it does hold. */
    int32_t first = im.is_signed ? -(int32_t)sign : 0;
    int32_t last = (int32_t)(mask + first);
    if (minmax) {
        if (im.balloc == 8)
            stored_minmax<uint8_t>(im.pix, n, shift, mask, sign, plain,
                                   &first, &last);
        else
            stored_minmax<uint16_t>(im.pix, n, shift, mask, sign, plain,
                                    &first, &last);
    }
    double mlo = modality(&im, first), mhi = modality(&im, last);
    if (mlo < -2147483648.0 || mhi > 2147483647.0) {
        *why = "rescaled values out of range";
        return FAST_DECLINED;
    }
    if (minmax) {
        /* DCMTK's min/max window (dimopxt.h getMinMaxWindow) */
        c = (mlo + mhi + 1) / 2;
        w = mhi - mlo + 1;
    }
    /* The linear VOI function (PS3.3 C.11.2.1.2.1) exactly as DCMTK
     * computes it for an 8-bit output (dimoopxt.h window(), no display or
     * presentation LUT); MONOCHROME1 maps from white to black. */
    const double low = im.mono1 ? 255 : 0, high = im.mono1 ? 0 : 255;
    const double w1 = w - 1;
    const double left = c - 0.5 - w1 / 2, right = c - 0.5 + w1 / 2;
    const double outrange = high - low;
    const double offset = w1 == 0 ? 0 : high - ((c - 0.5) / w1 + 0.5) *
                                                  outrange;
    const double gradient = w1 == 0 ? 0 : outrange / w1;

    size_t nlut = (size_t)((int64_t)last - first + 1);
    uint8_t *lut = (uint8_t *)scratch_get(SCR_LUT, nlut);
    uint8_t *frame = (uint8_t *)scratch_get(SCR_FRAME, n);
    if (!lut || !frame)
        return err_set(e, ERR_TOOBIG, "out of memory rendering");
    /* The modality value grows with the stored value (slope > 0), so the
     * values below the window, in it and above it are three runs: find
     * the two borders by bisection and compute only the middle. */
    int32_t a = first_where(first, last, [&](int32_t v) {
        return !(modality(&im, v) <= left);
    });
    int32_t b = first_where(a, last, [&](int32_t v) {
        return modality(&im, v) > right;
    });
    memset(lut, (int)low, (size_t)((int64_t)a - first));
    for (int32_t v = a; v < b; v++)
        lut[v - first] = (uint8_t)(int)(offset + modality(&im, v) *
                                             gradient);
    memset(lut + ((int64_t)b - first), (int)high,
           (size_t)((int64_t)last + 1 - b));
    struct lut_pass lp = {&im, shift, mask, sign, plain, lut, first, frame};
    unsigned long sw, sh;
    if (!fit_size(im.cols, im.rows, o, &sw, &sh) && sink->jpeg) {
        /* the table is applied strip by strip, on both threads */
        if (encode_grey_strips(frame, im.cols, im.rows, sink->quality,
                               lut_rows, &lp, &sink->out, &sink->len))
            return err_set(e, ERR_INTERNAL, "JPEG encoding failed");
        sink->w = im.cols;
        sink->h = im.rows;
        sink->comps = 1;
        return 0;
    }
    lut_rows(&lp, 0, im.rows);
    uint8_t *out = frame;
    if (sw != im.cols || sh != im.rows) {
        float *tmp = (float *)scratch_get(SCR_TMP, (size_t)im.rows * sw *
                                                   sizeof(float));
        uint8_t *dst = (uint8_t *)scratch_get(SCR_SCALED, (size_t)sw * sh);
        if (!tmp || !dst)
            return err_set(e, ERR_TOOBIG, "out of memory rendering");
        area_scale(frame, im.cols, im.rows, dst, (unsigned)sw, (unsigned)sh,
                   tmp);
        out = dst;
    }
    if (sink_put(sink, out, (unsigned)sw, (unsigned)sh, 1))
        return err_set(e, ERR_INTERNAL, "JPEG encoding failed");
    return 0;
}

/* ---- render: DCMTK ---------------------------------------------------- */

/* Everything the fast path leaves: DCMTK decodes (any codec registered),
 * windows, scales and hands over 8-bit grey or RGB.  The file has been
 * pre-scanned; xfer is what the scan decided. */
static int render_dcmtk(const char *path, E_TransferSyntax xfer0,
                        const struct dcm_render_opts *o,
                        struct render_sink *sink, struct err *e)
{
    DcmFileFormat ff;
    OFCondition cond = ff.loadFile(path, xfer0, EGL_noChange, LAZY_READ_LEN,
                                   ERM_autoDetect);
    if (cond.bad())
        return err_set(e, ERR_INVALID, "DICOM parse: %s", cond.text());
    DcmDataset *ds = ff.getDataset();
    if (!ds->tagExists(DCM_PixelData))
        return err_set(e, ERR_INVALID, "no pixel data");
    E_TransferSyntax xfer = ds->getOriginalXfer();
    int rc;
    if ((rc = check_decodable(xfer, e)) || (rc = check_size(ds, 0, e)))
        return rc;
    Sint32 nf = 1;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
        nf = 1;
    if (o->frame >= nf)
        return err_set(e, ERR_NOTFOUND, "frame %d out of range (%d frames)",
                    o->frame, (int)nf);
    if (xfer == EXS_RLELossless && (rc = check_rle(ds, o->frame, e)))
        return rc;

    /* owned here until the end, also when an exception passes */
    struct owned {
        DicomImage *img = NULL, *scaled = NULL;
        ~owned()
        {
            delete scaled;
            delete img;
        }
    } own;
    own.img = new DicomImage(&ff, xfer, CIF_UsePartialAccessToPixelData,
                             (unsigned long)o->frame, 1);
    DicomImage *img = own.img;
    if (img->getStatus() != EIS_Normal) {
        int code = img->getStatus() == EIS_NotSupportedValue ?
                   ERR_UNSUPPORTED : ERR_INVALID;
        return err_set(e, code, "cannot decode image: %s",
                    DicomImage::getString(img->getStatus()));
    }
    if (img->isMonochrome()) {
        int ok;
        if (o->window_mode == DCM_WINDOW_EXPLICIT)
            ok = img->setWindow(o->center, o->width);
        else if (o->window_mode == DCM_WINDOW_DEFAULT &&
                 img->getWindowCount() > 0)
            ok = img->setWindow(0);
        else
            ok = img->setMinMaxWindow(0);
        (void)ok;   /* a flat image keeps DCMTK's default mapping */
    }
    DicomImage *out = img;
    unsigned long sw, sh;
    if (fit_size(img->getWidth(), img->getHeight(), o, &sw, &sh)) {
        own.scaled = img->createScaledImage(sw, sh, 1, 0);
        if (!own.scaled || own.scaled->getStatus() != EIS_Normal)
            return err_set(e, ERR_INTERNAL, "cannot scale the image");
        out = own.scaled;
    }
    int comps = out->isMonochrome() ? 1 : 3;
    const unsigned char *pix =
        (const unsigned char *)out->getOutputData(8, 0, 0);
    if (!pix || sink_put(sink, pix, (unsigned)out->getWidth(),
                         (unsigned)out->getHeight(), comps))
        return err_set(e, ERR_INTERNAL, "JPEG encoding failed");
    return 0;
}

/* Check the options, map and pre-scan the file, then the fast path or
 * DCMTK. */
static int render_any(const char *path, const struct dcm_render_opts *opt,
                      struct render_sink *sink, struct err *e)
{
    struct dcm_render_opts o = {};
    if (opt)
        o = *opt;
    if (o.frame < 0)
        return err_set(e, ERR_NOTFOUND, "frame %d out of range", o.frame);
    if (o.window_mode == DCM_WINDOW_EXPLICIT &&
        (!(o.width >= 1.0) || !(o.width < 1e300) ||
         !(o.center > -1e300 && o.center < 1e300)))
        return err_set(e, ERR_INVALID, "window width must be at least 1 "
                    "(and both finite)");
    if (o.max_width < 0 || o.max_height < 0 || o.quality < 0 ||
        o.quality > 100 || o.engine < DCM_RENDER_AUTO ||
        o.engine > DCM_RENDER_DCMTK)
        return err_set(e, ERR_INVALID, "bad render size, quality or engine");
    sink->quality = o.quality ? o.quality : 90;

    struct scan_result r;
    struct fast_attrs fa;
    {
        mapping m;
        int rc = map_file(path, m, e);
        if (!rc)
            rc = prescan(m.p, m.len, &r, &fa, e);
        if (rc)
            return rc;
        if (o.engine != DCM_RENDER_DCMTK) {
            const char *why = "?";
            rc = render_fast(&fa, &o, sink, &why, e);
            scratch_trim();
            if (rc != FAST_DECLINED)
                return rc;
            if (o.engine == DCM_RENDER_FAST)
                return err_set(e, ERR_UNSUPPORTED, "fast render path does not "
                            "apply: %s", why);
        }
    }
    return render_dcmtk(path, r.xfer, &o, sink, e);
}

/* render_any behind the C boundary: no exception escapes, and on failure
 * the sink's buffer is freed and sink->out left NULL. */
static int render_guarded(const char *path, const struct dcm_render_opts *opt,
                          struct render_sink *sink, struct err *e)
{
    int rc = guarded(e, "rendering", path, [&]() -> int {
        return render_any(path, opt, sink, e);
    });
    if (rc) {
        free(sink->out);
        sink->out = NULL;
    }
    return rc;
}

extern "C" int dicom_render_jpeg(const char *path,
                                 const struct dcm_render_opts *opt,
                                 unsigned char **jpeg, size_t *len, int *w,
                                 int *h, struct err *e)
{
    struct render_sink sink = {};
    sink.jpeg = 1;
    *jpeg = NULL;
    *len = 0;
    int rc = render_guarded(path, opt, &sink, e);
    if (rc)
        return rc;
    *jpeg = sink.out;
    *len = sink.len;
    if (w)
        *w = (int)sink.w;
    if (h)
        *h = (int)sink.h;
    return 0;
}

extern "C" int dicom_render_pixels(const char *path,
                                   const struct dcm_render_opts *opt,
                                   unsigned char **pix, int *w, int *h,
                                   int *comps, struct err *e)
{
    struct render_sink sink = {};
    *pix = NULL;
    int rc = render_guarded(path, opt, &sink, e);
    if (rc)
        return rc;
    *pix = sink.out;
    if (w)
        *w = (int)sink.w;
    if (h)
        *h = (int)sink.h;
    if (comps)
        *comps = sink.comps;
    return 0;
}

/* ---- transcode -------------------------------------------------------- */

static int transcode(const char *in_path, const char *out_path,
                     E_TransferSyntax to, struct err *e)
{
    DcmFileFormat ff;
    int rc = load_file(in_path, ff, e);
    if (rc)
        return rc;
    DcmDataset *ds = ff.getDataset();
    if (!ds->tagExists(DCM_PixelData))
        return err_set(e, ERR_UNSUPPORTED, "no pixel data to transcode");
    E_TransferSyntax from = ds->getOriginalXfer();
    if ((rc = check_decodable(from, e)) || (rc = check_size(ds, 1, e)))
        return rc;
    if (from == EXS_RLELossless && (rc = check_rle(ds, -1, e)))
        return rc;
    OFCondition c = ff.loadAllDataIntoMemory();
    if (c.bad())
        return err_set(e, ERR_INVALID, "DICOM parse: %s", c.text());
    if (to == EXS_JPEGLSLossless) {
        Uint16 bits = 0;
        ds->findAndGetUint16(DCM_BitsAllocated, bits);
        if (bits > 16)
            return err_set(e, ERR_UNSUPPORTED, "JPEG-LS cannot hold %u-bit "
                        "pixels", bits);
        DJLSRepresentationParameter rp(0, OFTrue);
        c = ds->chooseRepresentation(to, &rp);
    } else {
        c = ds->chooseRepresentation(to, NULL);
    }
    if (c.bad())
        return err_set(e, ERR_UNSUPPORTED, "cannot transcode to %s: %s",
                    DcmXfer(to).getXferName(), c.text());
    if (!ds->canWriteXfer(to))
        return err_set(e, ERR_UNSUPPORTED, "cannot write %s for this object",
                    DcmXfer(to).getXferName());
    c = ff.saveFile(out_path, to);
    if (c.bad()) {
        unlink(out_path);
        return err_set(e, ERR_IO, "write %s: %s", out_path, c.text());
    }
    return 0;
}

extern "C" int dicom_transcode_jpegls(const char *in_path,
                                      const char *out_path, struct err *e)
{
    return guarded(e, "transcoding", in_path, [&]() -> int {
        return transcode(in_path, out_path, EXS_JPEGLSLossless, e);
    });
}

extern "C" int dicom_transcode_explicit_le(const char *in_path,
                                           const char *out_path,
                                           struct err *e)
{
    return guarded(e, "transcoding", in_path, [&]() -> int {
        return transcode(in_path, out_path, EXS_LittleEndianExplicit, e);
    });
}

extern "C" int dicom_pixel_sha256(const char *path, char out[65],
                                  struct err *e)
{
    return guarded(e, "hashing", path, [&]() -> int {
        DcmFileFormat ff;
        int rc = load_file(path, ff, e);
        if (rc)
            return rc;
        DcmDataset *ds = ff.getDataset();
        if (!ds->tagExists(DCM_PixelData))
            return err_set(e, ERR_INVALID, "no pixel data");
        E_TransferSyntax xfer = ds->getOriginalXfer();
        if ((rc = check_decodable(xfer, e)) || (rc = check_size(ds, 1, e)))
            return rc;
        if (xfer == EXS_RLELossless && (rc = check_rle(ds, -1, e)))
            return rc;
        if (ff.loadAllDataIntoMemory().bad())
            return err_set(e, ERR_INVALID, "cannot load pixel data");
        if (DcmXfer(xfer).isEncapsulated()) {
            OFCondition c = ds->chooseRepresentation(EXS_LittleEndianExplicit,
                                                     NULL);
            if (c.bad())
                return err_set(e, ERR_UNSUPPORTED, "cannot decode pixels: %s",
                            c.text());
        }
        DcmElement *px = NULL;
        if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px)
            return err_set(e, ERR_INVALID, "no pixel data");
        const void *data = NULL;
        size_t n = px->getLength();
        if (px->getVR() == EVR_OW) {
            Uint16 *w16 = NULL;
            if (px->getUint16Array(w16).bad())
                return err_set(e, ERR_INVALID, "cannot read pixel data");
            data = w16;   /* host order; Hashi runs on little-endian hosts */
        } else {
            Uint8 *b = NULL;
            if (px->getUint8Array(b).bad())
                return err_set(e, ERR_INVALID, "cannot read pixel data");
            data = b;
        }
        /* Hash exactly the pixel bytes, not the pad byte of an odd length,
         * so a file and its lossless transcodes agree. */
        Uint16 r16 = 0, c16 = 0, spp = 1, ba = 0;
        Sint32 nf = 1;
        ds->findAndGetUint16(DCM_Rows, r16);
        ds->findAndGetUint16(DCM_Columns, c16);
        ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
        ds->findAndGetUint16(DCM_BitsAllocated, ba);
        if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
            nf = 1;
        unsigned long long want =
            ((unsigned long long)r16 * c16 * (spp ? spp : 1) * nf * ba + 7)
            / 8;
        if (want > 0 && want < n)
            n = (size_t)want;
        if (!data && n)
            return err_set(e, ERR_INVALID, "cannot read pixel data");
        sha256_hex(data ? data : "", n, out);
        return 0;
    });
}

/* ---- C-STORE / C-ECHO listener ---------------------------------------- */

/* Transfer syntaxes we accept for storage, in order of preference when an
 * SCU offers several in one presentation context: lossless first, lossy
 * only if nothing else is offered. */
static const char *const store_xfers[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
};

/* Does this address belong to 127.0.0.0/8 or ::1 (or ::ffff:127.x)? */
static int is_loopback(const char *ip)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return 0;
}

/*
 * How associations are served.  DCMTK 3.6.7's DcmSCP serves one
 * association at a time, binds every interface and hides its sockets, so
 * the listener is ours:
 *  - we own the listening socket, bound exactly to cfg->host:port, and
 *    one accept thread;
 *  - every accepted connection gets a thread that first waits (poll and
 *    recv MSG_PEEK) until the whole A-ASSOCIATE-RQ PDU is buffered, and
 *    closes the connection at the ARTIM timeout: a silent or slow peer
 *    never reaches DCMTK and holds nobody else up;
 *  - then, under g_receive_mu, DCMTK gets a duplicate of the socket
 *    through dcmExternalSocketHandle (DUL reads that process-wide global
 *    instead of calling accept()) and ASC_receiveAssociation parses the
 *    buffered request without waiting;
 *  - the association then runs on the same thread in a DcmThreadSCP
 *    (DCMTK's per-association machinery, the one DcmSCPPool drives),
 *    which owns and closes the duplicate.  We keep the original for
 *    shutdown() and close it last: no descriptor we did not open is ever
 *    closed (closing one of a file SQLite has open drops its locks).
 */

#define REQUEST_MAX (64 * 1024)   /* A-ASSOCIATE-RQ PDU, header included */
#define PDU_ASSOCIATE_RQ 0x01

/* dcmExternalSocketHandle is one global for the whole process (several
 * listeners may run in a test process). */
static std::mutex g_receive_mu;

struct scp_conn {
    struct dicom_scp *owner;
    int fd;                      /* ours; -1 once closed (owner->mu) */
    int done;                    /* thread finished: join it (owner->mu) */
    char peer[INET6_ADDRSTRLEN];
    pthread_t thread;
    struct scp_conn *next;
};

struct dicom_scp {
    OFString tmp_dir;
    int loopback_only = 0;
    unsigned max_assoc = 0, artim = 0, idle = 0;
    uint64_t max_instance = 0;
    dicom_accept_fn accept_fn = NULL;
    dicom_store_fn store_fn = NULL;
    dicom_open_fn open_fn = NULL;
    dicom_close_fn close_fn = NULL;
    dicom_find_fn find_fn = NULL;
    dicom_retrieve_fn retrieve_fn = NULL;
    dicom_move_dest_fn move_dest_fn = NULL;
    dicom_retrieved_fn retrieved_fn = NULL;
    dicom_commit_fn commit_fn = NULL;
    int move_timeout = 10;
    OFString ae_title;           /* ours, calling AE of C-MOVE's stores */
    void *arg = NULL;
    DcmSharedSCPConfig shared;   /* copied per association under mu */
    T_ASC_Network *net = NULL;
    int listen_fd = -1;
    pthread_t accept_thread;
    std::atomic<int> stopping{0};
    std::mutex mu;               /* guards what follows and each conn's
                                    fd and done */
    struct scp_conn *conns = NULL;
    unsigned npending = 0;       /* connections before their request */
    unsigned nassoc = 0;         /* associations running */
};

/* shutdown() a connection we still hold: its thread's poll or DCMTK's
 * next read returns at once. */
static void conn_cut(struct scp_conn *c)
{
    std::lock_guard<std::mutex> lk(c->owner->mu);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
}

/* ---- Query/Retrieve and Storage Commitment: helpers ------------------- */

/* The SOP classes Query/Retrieve and Storage Commitment are offered in,
 * with the uncompressed syntaxes (their messages carry no pixels). */
static const char *const qr_classes[] = {
    UID_FINDStudyRootQueryRetrieveInformationModel,
    UID_MOVEStudyRootQueryRetrieveInformationModel,
    UID_GETStudyRootQueryRetrieveInformationModel,
    UID_StorageCommitmentPushModelSOPClass,
};

/* The keys of one identifier, owning their text. */
struct qr_req {
    OFString v[8];
    struct dicom_qr_keys k;
};

/* An identifier's value at tag, trailing spaces gone; NULL when empty. */
static const char *qr_key(DcmDataset *id, const DcmTagKey &tag, OFString &v)
{
    if (id->findAndGetOFStringArray(tag, v).bad())
        return NULL;
    size_t end = v.find_last_not_of(' ');
    v.erase(end == OFString_npos ? 0 : end + 1);
    return v.empty() ? NULL : v.c_str();
}

/* Parse id into r: 0, or -1 for a missing or unknown level. */
static int qr_parse(DcmDataset *id, struct qr_req *r)
{
    memset(&r->k, 0, sizeof r->k);
    if (!id)
        return -1;
    OFString level;
    const char *lv = qr_key(id, DCM_QueryRetrieveLevel, level);
    if (!lv)
        return -1;
    if (!strcmp(lv, "STUDY"))
        r->k.level = DICOM_QR_STUDY;
    else if (!strcmp(lv, "SERIES"))
        r->k.level = DICOM_QR_SERIES;
    else if (!strcmp(lv, "IMAGE"))
        r->k.level = DICOM_QR_IMAGE;
    else
        return -1;
    r->k.patient_id = qr_key(id, DCM_PatientID, r->v[0]);
    r->k.patient_name = qr_key(id, DCM_PatientName, r->v[1]);
    r->k.study_date = qr_key(id, DCM_StudyDate, r->v[2]);
    r->k.accession = qr_key(id, DCM_AccessionNumber, r->v[3]);
    r->k.modality = qr_key(id, r->k.level == DICOM_QR_STUDY ?
                           DCM_ModalitiesInStudy : DCM_Modality, r->v[4]);
    r->k.study_uid = qr_key(id, DCM_StudyInstanceUID, r->v[5]);
    r->k.series_uid = qr_key(id, DCM_SeriesInstanceUID, r->v[6]);
    r->k.sop_uid = qr_key(id, DCM_SOPInstanceUID, r->v[7]);
    return 0;
}

/* A C-FIND response identifier: every attribute the request named, with
 * the match's value where it has one (empty otherwise). */
static DcmDataset *qr_answer(DcmDataset *req, const struct dicom_attr *a,
                             size_t n)
{
    DcmDataset *rsp = new DcmDataset();
    int utf8 = 0;
    for (unsigned long i = 0; i < req->card(); i++) {
        DcmElement *el = req->getElement(i);
        DcmTag tag = el->getTag();
        if (tag == DCM_SpecificCharacterSet)
            continue;
        if (tag == DCM_QueryRetrieveLevel) {
            rsp->insert((DcmElement *)el->clone(), OFTrue);
            continue;
        }
        uint32_t t = (uint32_t)tag.getGroup() << 16 | tag.getElement();
        const char *v = NULL;
        for (size_t j = 0; j < n && !v; j++)
            if (a[j].tag == t)
                v = a[j].value;
        if (v && *v && tag.getEVR() != EVR_SQ) {
            rsp->putAndInsertString(tag, v);
            for (const char *p = v; *p; p++)
                utf8 |= (unsigned char)*p >= 0x80;
        } else {
            rsp->insertEmptyElement(tag);
        }
    }
    if (utf8)
        rsp->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
    return rsp;
}

/* The context the peer accepted for sop_class in xfer, or 0.  (DCMTK's
 * ASC_findAcceptedPresentationContextID also returns rejected ones.) */
static T_ASC_PresentationContextID qr_context(T_ASC_Association *a,
                                              const char *sop_class,
                                              const char *xfer)
{
    int n = ASC_countPresentationContexts(a->params);
    for (int i = 0; i < n; i++) {
        T_ASC_PresentationContext pc;
        if (ASC_getPresentationContext(a->params, i, &pc).good() &&
            pc.resultReason == ASC_P_ACCEPTANCE &&
            !strcmp(pc.abstractSyntax, sop_class) &&
            !strcmp(pc.acceptedTransferSyntax, xfer))
            return pc.presentationContextID;
    }
    return 0;
}

/* Send one instance over a C-STORE sub-operation on a (C-GET's own, or
 * the one opened to a C-MOVE destination): the file unchanged in a
 * context of its own transfer syntax, else decoded (into a temporary file
 * in tmp_dir, as dicom_transcode_explicit_le does) for an uncompressed
 * context the peer accepted.  The peer's status, or a failure status with
 * the reason in why. */
static unsigned qr_send(T_ASC_Association *a, const struct dicom_qr_file *f,
                        Uint16 msg_id, const char *orig_ae, Uint16 orig_id,
                        int timeout, const char *tmp_dir, OFString &why)
{
    static const char *const plain[] = {
        UID_LittleEndianExplicitTransferSyntax,
        UID_LittleEndianImplicitTransferSyntax,
        UID_BigEndianExplicitTransferSyntax,
    };
    const char *path = f->path;
    char tmp[4096] = "";
    T_ASC_PresentationContextID pres = qr_context(a, f->sop_class, f->xfer);
    int keep = pres != 0;
    for (size_t i = 0; !pres && i < sizeof plain / sizeof *plain; i++)
        pres = qr_context(a, f->sop_class, plain[i]);
    if (!pres) {
        why = "no presentation context for ";
        why += f->sop_class;
        return DICOM_STATUS_SUBOPS_REFUSED;
    }
    if (!keep) {
        struct err e = { 0, "" };
        int n = snprintf(tmp, sizeof tmp, "%s/qr-XXXXXX", tmp_dir);
        int fd = (n > 0 && (size_t)n < sizeof tmp) ? mkstemp(tmp) : -1;
        if (fd < 0 || (close(fd),
                       dicom_transcode_explicit_le(f->path, tmp, &e))) {
            if (fd >= 0)
                unlink(tmp);
            why = fd < 0 ? "no temporary file" : e.msg;
            return DICOM_STATUS_CANNOT_UNDERSTAND;
        }
        path = tmp;
    }
    T_DIMSE_C_StoreRQ rq;
    memset(&rq, 0, sizeof rq);
    rq.MessageID = msg_id;
    OFStandard::strlcpy(rq.AffectedSOPClassUID, f->sop_class,
                        sizeof rq.AffectedSOPClassUID);
    OFStandard::strlcpy(rq.AffectedSOPInstanceUID, f->sop_uid,
                        sizeof rq.AffectedSOPInstanceUID);
    rq.DataSetType = DIMSE_DATASET_PRESENT;
    rq.Priority = DIMSE_PRIORITY_MEDIUM;
    if (orig_ae) {
        OFStandard::strlcpy(rq.MoveOriginatorApplicationEntityTitle,
                            orig_ae,
                            sizeof rq.MoveOriginatorApplicationEntityTitle);
        rq.MoveOriginatorID = orig_id;
        rq.opts = O_STORE_MOVEORIGINATORAETITLE | O_STORE_MOVEORIGINATORID;
    }
    T_DIMSE_C_StoreRSP rsp;
    memset(&rsp, 0, sizeof rsp);
    DcmDataset *detail = NULL;
    OFCondition c = DIMSE_storeUser(a, pres, &rq, path, NULL, NULL, NULL,
                                    DIMSE_NONBLOCKING, timeout, &rsp,
                                    &detail);
    delete detail;
    if (tmp[0])
        unlink(tmp);
    if (c.bad()) {
        why = c.text();
        return DICOM_STATUS_SUBOPS_REFUSED;
    }
    return rsp.DimseStatus;
}

/* An association to a C-MOVE destination proposing, for every SOP class
 * among files, its stored transfer syntaxes and the uncompressed ones.
 * NULL with why on failure. */
static T_ASC_Association *qr_connect(T_ASC_Network *net, const char *our_ae,
                                     const char *dest_ae, const char *host,
                                     int port,
                                     const struct dicom_qr_file *files,
                                     size_t n, OFString &why)
{
    T_ASC_Parameters *params = NULL;
    OFCondition c = ASC_createAssociationParameters(&params,
                                                    ASC_DEFAULTMAXPDU);
    if (c.bad()) {
        why = c.text();
        return NULL;
    }
    char peer[300];
    snprintf(peer, sizeof peer, "%s:%d", host, port);
    ASC_setAPTitles(params, our_ae, dest_ae, NULL);
    ASC_setPresentationAddresses(params, "localhost", peer);
    const char *plain[] = { UID_LittleEndianExplicitTransferSyntax,
                            UID_LittleEndianImplicitTransferSyntax };
    OFList<OFString> done;      /* "class xfer" pairs proposed */
    int id = 1;
    for (size_t i = 0; i < n && id < 255; i++) {
        OFString key = OFString(files[i].sop_class) + " " + files[i].xfer;
        OFString cls = OFString(files[i].sop_class) + " *";
        int have_key = 0, have_cls = 0;
        for (OFListIterator(OFString) it = done.begin(); it != done.end();
             ++it) {
            have_key |= *it == key;
            have_cls |= *it == cls;
        }
        const char *own[] = { files[i].xfer };
        if (!have_key && id < 255) {
            ASC_addPresentationContext(params, (T_ASC_PresentationContextID)id,
                                       files[i].sop_class, own, 1);
            id += 2;
            done.push_back(key);
        }
        if (!have_cls && id < 255) {
            ASC_addPresentationContext(params, (T_ASC_PresentationContextID)id,
                                       files[i].sop_class, plain, 2);
            id += 2;
            done.push_back(cls);
        }
    }
    /* Needs no g_receive_mu: DUL reads dcmExternalSocketHandle only when
     * accepting (and initializing an acceptor's network). */
    T_ASC_Association *a = NULL;
    c = ASC_requestAssociation(net, params, &a);
    if (c.good() && ASC_countAcceptedPresentationContexts(params) > 0)
        return a;
    why = c.bad() ? c.text() : "no presentation context accepted";
    if (a) {
        if (c.good())
            ASC_abortAssociation(a);
        ASC_dropAssociation(a);
        ASC_destroyAssociation(&a);
    } else {
        ASC_destroyAssociationParameters(&params);
    }
    return NULL;
}

/* One association, on its connection's thread. */
class HashiSCP : public DcmThreadSCP {
public:
    HashiSCP(struct dicom_scp *o, struct scp_conn *c) : owner(o), conn(c) {}
    T_ASC_Association *assoc = NULL;   /* the one given to run() */
    int over_limit = 0;
    int opened = 0;                    /* open callback accepted: close */
    void *ctx = NULL;                  /*   it with this context */

protected:
    OFCondition processAssociationRQ() override
    {
        if (over_limit) {
            log_warn("DICOM: more than %u associations at once: refused "
                     "one from %s", owner->max_assoc, conn->peer);
            refuseAssociation(DCMSCP_TOO_MANY_ASSOCIATIONS);
            return EC_Normal;
        }
        if (owner->stopping.load()) {
            refuseAssociation(DCMSCP_INTERNAL_ERROR);
            return EC_Normal;
        }
        return DcmThreadSCP::processAssociationRQ();
    }

    OFBool checkCallingHostAccepted(const OFString &) override
    {
        return !owner->loopback_only || is_loopback(conn->peer);
    }

    OFBool checkCallingAETitleAccepted(const OFString &ae) override
    {
        if (owner->open_fn) {
            opened = owner->open_fn(owner->arg, ae.c_str(), conn->peer,
                                    &ctx) != 0;
            return opened ? OFTrue : OFFalse;
        }
        if (owner->accept_fn)
            return owner->accept_fn(owner->arg, ae.c_str(), conn->peer) ?
                   OFTrue : OFFalse;
        return OFTrue;
    }

    /* DcmSCP's loop, with its own timeout for the wait between
     * messages (the DIMSE timeout stays for the PDUs within one). */
    void handleAssociation() override
    {
        OFCondition cond = EC_Normal;
        while (cond.good()) {
            T_DIMSE_Message msg;
            T_ASC_PresentationContextID pres;
            cond = receiveDIMSECommand(&pres, &msg, NULL, NULL, owner->idle);
            if (cond.good()) {
                DcmPresentationContextInfo info;
                getPresentationContextInfo(assoc, pres, info);
                cond = handleIncomingCommand(&msg, info);
            }
        }
        if (cond == DIMSE_NODATAAVAILABLE)
            log_info("DICOM: association from %s@%s idle for %u s: "
                     "aborted", getPeerAETitle().c_str(), conn->peer,
                     owner->idle);
        if (cond == DUL_PEERREQUESTEDRELEASE)
            ASC_acknowledgeRelease(assoc);
        else if (cond != DUL_PEERABORTEDASSOCIATION)
            ASC_abortAssociation(assoc);
    }

    /* The one dispatch of DIMSE commands: C-FIND, C-GET and C-MOVE get
     * their case here.  C-ECHO goes to DcmSCP; anything else is an error
     * there, which aborts the association. */
    OFCondition handleIncomingCommand(T_DIMSE_Message *msg,
                                      const DcmPresentationContextInfo &pc)
        override
    {
        if (owner->stopping.load())
            return makeOFCondition(OFM_dcmnet, 0xff0, OF_error,
                                   "listener stopping");
        switch (msg->CommandField) {
        case DIMSE_C_STORE_RQ:
            return handle_store(msg->msg.CStoreRQ, pc.presentationContextID);
        case DIMSE_C_FIND_RQ:
            return handle_find(msg->msg.CFindRQ, pc.presentationContextID);
        case DIMSE_C_GET_RQ:
            return handle_retrieve(msg, pc.presentationContextID, 0);
        case DIMSE_C_MOVE_RQ:
            return handle_retrieve(msg, pc.presentationContextID, 1);
        case DIMSE_N_ACTION_RQ:
            return handle_action(msg->msg.NActionRQ,
                                 pc.presentationContextID);
        default:
            return DcmThreadSCP::handleIncomingCommand(msg, pc);
        }
    }

    /* DCMTK cannot be told to stop a receive; cutting the connection
     * does it (the partial file is deleted by DCMTK and by us). */
    void notifyRECEIVEProgress(const unsigned long bytes) override
    {
        if (owner->max_instance && bytes > owner->max_instance &&
            !too_big) {
            too_big = 1;
            conn_cut(conn);
        }
    }

private:
    struct dicom_scp *owner;
    struct scp_conn *conn;
    int too_big = 0;

    OFCondition handle_store(T_DIMSE_C_StoreRQ &rq,
                             T_ASC_PresentationContextID pres)
    {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/scp-XXXXXX",
                         owner->tmp_dir.c_str());
        int fd = (n > 0 && (size_t)n < sizeof path) ? mkstemp(path) : -1;
        if (fd < 0)
            return sendSTOREResponse(pres, rq.MessageID,
                                     rq.AffectedSOPClassUID,
                                     rq.AffectedSOPInstanceUID,
                                     DICOM_STATUS_OUT_OF_RESOURCES, NULL);
        close(fd);
        OFCondition c = receiveSTORERequest(rq, pres, OFString(path));
        if (c.bad() || too_big) {
            unlink(path);
            if (too_big)
                log_warn("DICOM: instance from %s@%s over the %llu-byte "
                         "limit: association aborted",
                         getPeerAETitle().c_str(), conn->peer,
                         (unsigned long long)owner->max_instance);
            return c.bad() ? c : makeOFCondition(OFM_dcmnet, 0xff1,
                                                 OF_error, "too large");
        }
        char comment[64] = "";
        unsigned status = owner->store_fn(opened ? ctx : owner->arg, path,
                                          getPeerAETitle().c_str(),
                                          conn->peer, comment);
        comment[sizeof comment - 1] = 0;
        DcmDataset *detail = NULL;
        if (comment[0] && status != DICOM_STATUS_SUCCESS) {
            DcmLongString ec(DCM_ErrorComment);
            ec.putString(comment);
            addStatusDetail(&detail, &ec);
        }
        c = sendSTOREResponse(pres, rq.MessageID, rq.AffectedSOPClassUID,
                              rq.AffectedSOPInstanceUID, (Uint16)status,
                              detail);
        delete detail;
        return c;
    }

    /* Stop sending C-FIND matches: set by find_emit when the peer
     * cancels or a response cannot be sent. */
    struct find_run {
        HashiSCP *scp;
        DcmDataset *req;
        T_ASC_PresentationContextID pres;
        Uint16 msg_id;
        const char *sop_class;
        int stop;
    };

    static int find_emit(void *p, const struct dicom_attr *a, size_t n)
    {
        struct find_run *r = (struct find_run *)p;
        if (r->stop)
            return 1;
        DcmDataset *rsp = qr_answer(r->req, a, n);
        OFCondition c = r->scp->sendFINDResponse(r->pres, r->msg_id,
                                                 r->sop_class, rsp,
                                                 DICOM_STATUS_PENDING);
        delete rsp;
        if (c.bad())
            r->stop = 2;
        else if (r->scp->checkForCANCEL(r->pres, r->msg_id).good())
            r->stop = 1;
        return r->stop;
    }

    static DcmDataset *comment_detail(const char *comment)
    {
        if (!comment[0])
            return NULL;
        DcmDataset *d = new DcmDataset();
        d->putAndInsertString(DCM_ErrorComment, comment);
        return d;
    }

    OFCondition handle_find(T_DIMSE_C_FindRQ &rq,
                            T_ASC_PresentationContextID pres)
    {
        DcmDataset *id = NULL;
        OFCondition c = receiveFINDRequest(rq, pres, id);
        if (c.bad())
            return c;
        struct qr_req r;
        unsigned status = DICOM_STATUS_DATASET_MISMATCH;
        char comment[64] = "";
        struct find_run run = { this, id, pres, rq.MessageID,
                                rq.AffectedSOPClassUID, 0 };
        if (strcmp(rq.AffectedSOPClassUID,
                   UID_FINDStudyRootQueryRetrieveInformationModel) ||
            !owner->find_fn)
            snprintf(comment, sizeof comment, "only Study Root C-FIND");
        else if (qr_parse(id, &r))
            snprintf(comment, sizeof comment, "QueryRetrieveLevel must be "
                     "STUDY, SERIES or IMAGE");
        else
            status = owner->find_fn(opened ? ctx : owner->arg, &r.k,
                                    find_emit, &run, comment);
        comment[sizeof comment - 1] = 0;
        delete id;
        if (run.stop == 2)
            return makeOFCondition(OFM_dcmnet, 0xff2, OF_error,
                                   "C-FIND response not sent");
        if (run.stop == 1)
            status = 0xFE00;            /* cancelled */
        DcmDataset *detail = status ? comment_detail(comment) : NULL;
        c = sendFINDResponse(pres, rq.MessageID, rq.AffectedSOPClassUID,
                             NULL, (Uint16)status, detail);
        delete detail;
        return c;
    }

    /* A C-GET-RSP or C-MOVE-RSP; final ones carry no remaining count
     * and, after failures, the failed SOP Instance UIDs. */
    OFCondition retrieve_rsp(int move, T_ASC_PresentationContextID pres,
                             Uint16 msg_id, const char *sop_class,
                             unsigned status, unsigned remain,
                             unsigned done, unsigned failed,
                             unsigned warned, const OFString &failed_uids,
                             const char *comment)
    {
        T_DIMSE_Message m;
        memset(&m, 0, sizeof m);
        /* C-GET-RSP and C-MOVE-RSP have the same fields and options */
        T_DIMSE_C_GetRSP &r = m.msg.CGetRSP;
        static_assert(sizeof(T_DIMSE_C_GetRSP) ==
                      sizeof(T_DIMSE_C_MoveRSP), "same layout");
        m.CommandField = move ? DIMSE_C_MOVE_RSP : DIMSE_C_GET_RSP;
        r.MessageIDBeingRespondedTo = msg_id;
        OFStandard::strlcpy(r.AffectedSOPClassUID, sop_class,
                            sizeof r.AffectedSOPClassUID);
        r.DimseStatus = (Uint16)status;
        r.NumberOfRemainingSubOperations = (DIC_US)remain;
        r.NumberOfCompletedSubOperations = (DIC_US)done;
        r.NumberOfFailedSubOperations = (DIC_US)failed;
        r.NumberOfWarningSubOperations = (DIC_US)warned;
        r.opts = O_GET_AFFECTEDSOPCLASSUID |
                 O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS |
                 O_GET_NUMBEROFFAILEDSUBOPERATIONS |
                 O_GET_NUMBEROFWARNINGSUBOPERATIONS;
        if (status == DICOM_STATUS_PENDING)
            r.opts |= O_GET_NUMBEROFREMAININGSUBOPERATIONS;
        DcmDataset *ds = NULL;
        if (status != DICOM_STATUS_PENDING && !failed_uids.empty()) {
            ds = new DcmDataset();
            ds->putAndInsertOFStringArray(DCM_FailedSOPInstanceUIDList,
                                          failed_uids);
        }
        r.DataSetType = ds ? DIMSE_DATASET_PRESENT : DIMSE_DATASET_NULL;
        DcmDataset *detail = status && status != DICOM_STATUS_PENDING ?
                             comment_detail(comment) : NULL;
        OFCondition c = sendDIMSEMessage(pres, &m, ds, detail);
        delete ds;
        delete detail;
        return c;
    }

    /* C-GET (move 0: sub-operations on this association) and C-MOVE (to
     * the destination's own association). */
    OFCondition handle_retrieve(T_DIMSE_Message *msg,
                                T_ASC_PresentationContextID pres, int move)
    {
        DcmDataset *id = NULL;
        OFString dest;
        Uint16 msg_id;
        OFString cls;
        OFCondition c;
        if (move) {
            c = receiveMOVERequest(msg->msg.CMoveRQ, pres, id, dest);
            msg_id = msg->msg.CMoveRQ.MessageID;
            cls = msg->msg.CMoveRQ.AffectedSOPClassUID;
        } else {
            T_ASC_PresentationContextID dpres = pres;
            c = receiveDIMSEDataset(&dpres, &id);
            msg_id = msg->msg.CGetRQ.MessageID;
            cls = msg->msg.CGetRQ.AffectedSOPClassUID;
        }
        if (c.bad())
            return c;
        struct qr_req r;
        char comment[64] = "";
        unsigned status = DICOM_STATUS_SUCCESS;
        char host[256] = "";
        int port = 0;
        void *arg = opened ? ctx : owner->arg;
        struct dicom_qr_file *files = NULL;
        size_t n = 0;
        if (cls != (move ? UID_MOVEStudyRootQueryRetrieveInformationModel :
                    UID_GETStudyRootQueryRetrieveInformationModel) ||
            !owner->retrieve_fn || (move && !owner->move_dest_fn)) {
            status = DICOM_STATUS_DATASET_MISMATCH;
            snprintf(comment, sizeof comment, "only Study Root retrieval");
        } else if (qr_parse(id, &r)) {
            status = DICOM_STATUS_DATASET_MISMATCH;
            snprintf(comment, sizeof comment, "QueryRetrieveLevel must be "
                     "STUDY, SERIES or IMAGE");
        } else if (move && owner->move_dest_fn(arg, dest.c_str(), host,
                                               &port)) {
            status = DICOM_STATUS_MOVE_DEST_UNKNOWN;
            snprintf(comment, sizeof comment, "unknown move destination");
        } else {
            status = owner->retrieve_fn(arg, &r.k, move ? dest.c_str()
                                                        : NULL,
                                        &files, &n, comment);
        }
        delete id;
        comment[sizeof comment - 1] = 0;
        OFString failed_uids;
        unsigned done = 0, failed = 0, warned = 0;
        T_ASC_Network *net = NULL;
        T_ASC_Association *to = move ? NULL : assoc;
        if (status == DICOM_STATUS_SUCCESS && n && move) {
            OFString why;
            c = ASC_initializeNetwork(NET_REQUESTOR, 0, owner->move_timeout,
                                      &net);
            if (c.good())
                to = qr_connect(net, owner->ae_title.c_str(), dest.c_str(),
                                host, port, files, n, why);
            if (!to) {
                log_warn("DICOM: C-MOVE from %s to %s (%s:%d): %s",
                         getPeerAETitle().c_str(), dest.c_str(), host,
                         port, c.bad() ? c.text() : why.c_str());
                status = DICOM_STATUS_SUBOPS_REFUSED;
                snprintf(comment, sizeof comment,
                         "move destination unreachable");
            }
        }
        c = EC_Normal;
        for (size_t i = 0; status == DICOM_STATUS_SUCCESS && i < n; i++) {
            OFString why;
            unsigned st = qr_send(to, &files[i], (Uint16)(i + 1),
                                  move ? getPeerAETitle().c_str() : NULL,
                                  msg_id, owner->move_timeout,
                                  owner->tmp_dir.c_str(), why);
            if (st == DICOM_STATUS_SUCCESS) {
                done++;
            } else if ((st & 0xF000) == 0xB000) {
                warned++;
            } else {
                failed++;
                if (!failed_uids.empty())
                    failed_uids += "\\";
                failed_uids += files[i].sop_uid;
                log_info("DICOM: sub-operation for %s failed: %04x %s",
                         files[i].sop_uid, st, why.c_str());
            }
            if (i + 1 < n) {
                c = retrieve_rsp(move, pres, msg_id, cls.c_str(),
                                 DICOM_STATUS_PENDING,
                                 (unsigned)(n - i - 1), done, failed,
                                 warned, failed_uids, "");
                if (c.bad() || checkForCANCEL(pres, msg_id).good())
                    break;
            }
        }
        if (move && to) {
            ASC_releaseAssociation(to);
            ASC_destroyAssociation(&to);
        }
        if (net)
            ASC_dropNetwork(&net);
        if (status == DICOM_STATUS_SUCCESS) {
            if (done + warned + failed < n)
                status = 0xFE00;        /* cancelled */
            else if (failed && !done && !warned)
                status = DICOM_STATUS_SUBOPS_REFUSED;
            else if (failed || warned)
                status = DICOM_STATUS_SUBOPS_FAILED;
        }
        if (owner->retrieved_fn && status != DICOM_STATUS_MOVE_DEST_UNKNOWN)
            owner->retrieved_fn(arg, move ? dest.c_str() : NULL, done,
                                failed);
        free(files);
        if (c.bad())
            return c;
        return retrieve_rsp(move, pres, msg_id, cls.c_str(), status, 0, done,
                            failed, warned, failed_uids, comment);
    }

    /* Storage Commitment Push Model: answer the N-ACTION, then report on
     * this association which instances are committed (EventTypeID 1: all,
     * 2: some failed, listed with reason 0112 no such instance). */
    OFCondition handle_action(T_DIMSE_N_ActionRQ &rq,
                              T_ASC_PresentationContextID pres)
    {
        DcmDataset *ds = NULL;
        Uint16 type = 0;
        OFCondition c = receiveACTIONRequest(rq, pres, ds, type);
        if (c.bad())
            return c;
        OFString txn;
        DcmSequenceOfItems *refs = NULL;
        Uint16 status = 0;
        if (strcmp(rq.RequestedSOPClassUID,
                   UID_StorageCommitmentPushModelSOPClass) ||
            !owner->commit_fn)
            status = 0x0118;            /* no such SOP class */
        else if (strcmp(rq.RequestedSOPInstanceUID,
                        UID_StorageCommitmentPushModelSOPInstance))
            status = 0x0112;            /* no such SOP instance */
        else if (type != 1)
            status = 0x0123;            /* no such action */
        else if (!ds || ds->findAndGetOFString(DCM_TransactionUID,
                                               txn).bad() ||
                 txn.empty() ||
                 ds->findAndGetSequence(DCM_ReferencedSOPSequence,
                                        refs).bad() || !refs)
            status = 0x0120;            /* missing attribute */
        c = sendACTIONResponse(pres, rq.MessageID, rq.RequestedSOPClassUID,
                               rq.RequestedSOPInstanceUID, status);
        if (c.bad() || status) {
            delete ds;
            return c;
        }
        DcmDataset report;
        report.putAndInsertOFStringArray(DCM_TransactionUID, txn);
        DcmSequenceOfItems *ok = new DcmSequenceOfItems(
            DCM_ReferencedSOPSequence);
        DcmSequenceOfItems *bad = new DcmSequenceOfItems(
            DCM_FailedSOPSequence);
        void *arg = opened ? ctx : owner->arg;
        for (unsigned long i = 0; i < refs->card(); i++) {
            DcmItem *it = refs->getItem(i);
            OFString cls, uid;
            it->findAndGetOFString(DCM_ReferencedSOPClassUID, cls);
            it->findAndGetOFString(DCM_ReferencedSOPInstanceUID, uid);
            int yes = !cls.empty() && !uid.empty() &&
                      owner->commit_fn(arg, cls.c_str(), uid.c_str());
            DcmItem *out = new DcmItem();
            out->putAndInsertOFStringArray(DCM_ReferencedSOPClassUID, cls);
            out->putAndInsertOFStringArray(DCM_ReferencedSOPInstanceUID,
                                           uid);
            if (!yes)
                out->putAndInsertUint16(DCM_FailureReason,
                                        DICOM_STATUS_NO_SUCH_INSTANCE);
            (yes ? ok : bad)->insert(out);
        }
        delete ds;
        Uint16 event = bad->card() ? 2 : 1;
        if (ok->card())
            report.insert(ok);
        else
            delete ok;
        if (bad->card())
            report.insert(bad);
        else
            delete bad;
        Uint16 rsp = 0;
        c = sendEVENTREPORTRequest(pres,
                                   UID_StorageCommitmentPushModelSOPInstance,
                                   (Uint16)(rq.MessageID + 1), event,
                                   &report, rsp);
        log_info("DICOM: storage commitment %s for %s: event %u, report "
                 "%s", txn.c_str(), getPeerAETitle().c_str(), event,
                 c.good() ? "sent" : c.text());
        return c;
    }
};

/* Wait until the whole A-ASSOCIATE-RQ PDU is buffered on c->fd: 0, or -1
 * when the peer closes, sends something else or a request over
 * REQUEST_MAX, or has not sent it all within the ARTIM timeout. */
static int wait_request(struct dicom_scp *s, struct scp_conn *c)
{
    unsigned char *buf = (unsigned char *)malloc(REQUEST_MAX);
    if (!buf)
        return -1;
    double deadline = now_mono() + s->artim;
    size_t want = 6;
    int rc = -1;
    for (;;) {
        ssize_t n = recv(c->fd, buf, want, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            break;
        if (n >= 6 && want == 6) {
            uint32_t len = (uint32_t)buf[2] << 24 | (uint32_t)buf[3] << 16 |
                           (uint32_t)buf[4] << 8 | buf[5];
            if (buf[0] != PDU_ASSOCIATE_RQ || len > REQUEST_MAX - 6)
                break;
            want = 6 + len;
            continue;
        }
        if (n >= (ssize_t)want) {
            rc = 0;
            break;
        }
        double left = deadline - now_mono();
        if (left <= 0)
            log_debug("DICOM: no whole association request from %s in "
                      "%u s: closed", c->peer, s->artim);
        if (left <= 0 || s->stopping.load())
            break;
        /* poll would report the bytes already peeked at once: wake only
         * when more than those have come */
        int low = n > 0 ? (int)n + 1 : 1;
        setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low);
        struct pollfd pfd = { c->fd, POLLIN | POLLRDHUP, 0 };
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            break;
    }
    int one = 1;        /* DCMTK polls too: back to "any byte" */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    free(buf);
    return rc;
}

/* Hand DCMTK a duplicate of c->fd and let it read the buffered request.
 * The association (owning the duplicate) or NULL. */
static T_ASC_Association *receive_request(struct dicom_scp *s,
                                          struct scp_conn *c)
{
    struct stat mine;
    if (fstat(c->fd, &mine))
        return NULL;
    int dup = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0)
        return NULL;
    T_ASC_Association *assoc = NULL;
    OFCondition cond;
    {
        std::lock_guard<std::mutex> lk(g_receive_mu);
        dcmExternalSocketHandle.set(dup);
        cond = ASC_receiveAssociation(s->net, &assoc,
                                      ASC_MAXIMUMPDUSIZE, NULL, NULL,
                                      OFFalse, DUL_NOBLOCK, 1);
        dcmExternalSocketHandle.set(-1);
    }
    if (cond.good())
        return assoc;
    if (assoc) {
        ASC_dropAssociation(assoc);
        ASC_destroyAssociation(&assoc);
    }
    /* Whether DCMTK closed the duplicate depends on where it failed;
     * close it only if that number is still our socket. */
    struct stat now;
    if (fstat(dup, &now) == 0 && now.st_dev == mine.st_dev &&
        now.st_ino == mine.st_ino)
        close(dup);
    return NULL;
}

static void *conn_thread(void *p)
{
    struct scp_conn *c = (struct scp_conn *)p;
    struct dicom_scp *s = c->owner;
    try {
        T_ASC_Association *assoc = NULL;
        if (wait_request(s, c) == 0 && !s->stopping.load())
            assoc = receive_request(s, c);
        int over = 0;
        {
            std::lock_guard<std::mutex> lk(s->mu);
            s->npending--;
            if (assoc)
                over = s->nassoc++ >= s->max_assoc;
        }
        if (assoc) {
            HashiSCP *scp = new HashiSCP(s, c);
            {
                std::lock_guard<std::mutex> lk(s->mu);
                scp->setSharedConfig(s->shared);
            }
            scp->assoc = assoc;
            scp->over_limit = over;
            scp->run(assoc);
            if (scp->opened && s->close_fn)
                s->close_fn(s->arg, scp->ctx);
            delete scp;         /* drops the association */
            std::lock_guard<std::mutex> lk(s->mu);
            s->nassoc--;
        }
    } catch (...) {
    }
    int fd;
    {
        std::lock_guard<std::mutex> lk(s->mu);
        fd = c->fd;
        c->fd = -1;
        c->done = 1;
    }
    close(fd);
    return NULL;
}

/* Join the connection threads that have finished (all of them, waiting,
 * if all is set), and free them. */
static void reap(struct dicom_scp *s, int all)
{
    struct scp_conn *gone = NULL;
    {
        std::lock_guard<std::mutex> lk(s->mu);
        for (struct scp_conn **pp = &s->conns; *pp;) {
            struct scp_conn *c = *pp;
            if (all || c->done) {
                *pp = c->next;
                c->next = gone;
                gone = c;
            } else {
                pp = &c->next;
            }
        }
    }
    while (gone) {
        struct scp_conn *c = gone;
        gone = c->next;
        pthread_join(c->thread, NULL);
        free(c);
    }
}

static void peer_ip(const struct sockaddr_storage *ss, socklen_t len,
                    char *out, size_t n)
{
    if (getnameinfo((const struct sockaddr *)ss, len, out, (socklen_t)n,
                    NULL, 0, NI_NUMERICHOST))
        strlcpy_h(out, "?", n);
}

static void accept_one(struct dicom_scp *s)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl,
                     SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM)
            usleep(100 * 1000);   /* do not spin while out of them */
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct scp_conn *c = (struct scp_conn *)calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->owner = s;
    c->fd = fd;
    peer_ip(&ss, sl, c->peer, sizeof c->peer);
    std::lock_guard<std::mutex> lk(s->mu);
    if (s->npending >= s->max_assoc) {
        log_warn("DICOM: %u connections have not sent their association "
                 "request yet: closed a new one from %s", s->npending,
                 c->peer);
        close(fd);
        free(c);
        return;
    }
    if (pthread_create(&c->thread, NULL, conn_thread, c)) {
        log_error("DICOM: no thread for a connection from %s", c->peer);
        close(fd);
        free(c);
        return;
    }
    s->npending++;
    c->next = s->conns;
    s->conns = c;
}

/* Signals stay blocked: this thread and the connection threads it
 * creates (they inherit its mask) never take SIGINT/SIGTERM/SIGPIPE. */
static void *accept_thread(void *p)
{
    struct dicom_scp *s = (struct dicom_scp *)p;
    while (!s->stopping.load()) {
        reap(s, 0);
        struct pollfd pfd = { s->listen_fd, POLLIN, 0 };
        /* stop also shuts the socket down, which wakes the poll */
        if (poll(&pfd, 1, 250) > 0 && !s->stopping.load())
            accept_one(s);
    }
    return NULL;
}

/* The listening socket, bound exactly to host:port. */
static int listen_on(const char *host, int port, struct err *e)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host && *host ? host : "0.0.0.0", ps, &hints, &res);
    if (rc) {
        err_set(e, ERR_IO, "DICOM listener %s:%d: %s", host, port,
                gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        err_set(e, ERR_IO, "cannot listen on %s:%d: %s",
                host && *host ? host : "0.0.0.0", port, strerror(err));
    return fd;
}

/* Everything but the threads; NULL and *e on failure. */
static struct dicom_scp *scp_new(const struct dicom_scp_cfg *cfg,
                                 struct err *e)
{
    struct dicom_scp *s = new struct dicom_scp();
    s->tmp_dir = cfg->tmp_dir;
    s->loopback_only = cfg->loopback_only;
    s->max_assoc = cfg->max_associations > 0 ?
                   (unsigned)cfg->max_associations :
                   DICOM_SCP_MAX_ASSOCIATIONS;
    s->artim = cfg->artim_timeout > 0 ? (unsigned)cfg->artim_timeout :
               DICOM_SCP_ARTIM_TIMEOUT;
    s->idle = cfg->idle_timeout > 0 ? (unsigned)cfg->idle_timeout :
              DICOM_SCP_IDLE_TIMEOUT;
    s->max_instance = cfg->max_instance;
    s->accept_fn = cfg->accept;
    s->store_fn = cfg->store;
    s->open_fn = cfg->open;
    s->close_fn = cfg->close;
    s->find_fn = cfg->find;
    s->retrieve_fn = cfg->retrieve;
    s->move_dest_fn = cfg->move_dest;
    s->retrieved_fn = cfg->retrieved;
    s->commit_fn = cfg->commit;
    if (cfg->move_timeout > 0)
        s->move_timeout = cfg->move_timeout;
    s->ae_title = cfg->ae_title;
    s->arg = cfg->arg;

    DcmSCPConfig &sc = *s->shared;
    sc.setAETitle(cfg->ae_title);
    sc.setMaxReceivePDULength(ASC_MAXIMUMPDUSIZE);
    sc.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    sc.setDIMSETimeout(cfg->dimse_timeout > 0 ?
                       (Uint32)cfg->dimse_timeout : 30);
    sc.setACSETimeout(s->artim);
    sc.setProgressNotificationMode(OFTrue);   /* the size cap needs it */
    OFList<OFString> echo, xfers;
    echo.push_back(UID_LittleEndianExplicitTransferSyntax);
    echo.push_back(UID_BigEndianExplicitTransferSyntax);
    echo.push_back(UID_LittleEndianImplicitTransferSyntax);
    for (size_t i = 0; i < sizeof store_xfers / sizeof *store_xfers; i++)
        xfers.push_back(store_xfers[i]);
    OFCondition c = sc.addPresentationContext(UID_VerificationSOPClass,
                                              echo, ASC_SC_ROLE_DEFAULT,
                                              "DEFAULT");
    for (size_t i = 0; c.good() && i < sizeof qr_classes / sizeof *qr_classes;
         i++)
        c = sc.addPresentationContext(qr_classes[i], echo,
                                      ASC_SC_ROLE_DEFAULT, "DEFAULT");
    for (int i = 0; c.good() && i < numberOfDcmLongSCUStorageSOPClassUIDs;
         i++)
        c = sc.addPresentationContext(dcmLongSCUStorageSOPClassUIDs[i],
                                      xfers, ASC_SC_ROLE_DEFAULT, "DEFAULT");
    if (c.bad()) {
        err_set(e, ERR_INTERNAL, "presentation contexts: %s", c.text());
        delete s;
        return NULL;
    }
    s->listen_fd = listen_on(cfg->host, cfg->port, e);
    if (s->listen_fd < 0) {
        delete s;
        return NULL;
    }
    {
        /* With the global set, DUL makes no listening socket of its own. */
        std::lock_guard<std::mutex> lk(g_receive_mu);
        dcmExternalSocketHandle.set(s->listen_fd);
        c = ASC_initializeNetwork(NET_ACCEPTOR, cfg->port, (int)s->artim,
                                  &s->net);
        dcmExternalSocketHandle.set(-1);
    }
    if (c.bad()) {
        err_set(e, ERR_INTERNAL, "DICOM network: %s", c.text());
        close(s->listen_fd);
        delete s;
        return NULL;
    }
    return s;
}

static void scp_free(struct dicom_scp *s)
{
    if (s->net)
        ASC_dropNetwork(&s->net);
    close(s->listen_fd);
    delete s;
}

extern "C" struct dicom_scp *dicom_scp_start(const struct dicom_scp_cfg *cfg,
                                             struct err *e)
{
    struct dicom_scp *s = NULL;
    try {
        if (!cfg || !cfg->store || !cfg->tmp_dir || !cfg->ae_title ||
            cfg->port <= 0 || cfg->port > 65535) {
            err_set(e, ERR_INVALID, "dicom_scp_start: bad configuration");
            return NULL;
        }
        s = scp_new(cfg, e);
        if (!s)
            return NULL;
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        int rc = pthread_create(&s->accept_thread, NULL, accept_thread, s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            err_set(e, ERR_INTERNAL, "pthread_create: %s", strerror(rc));
            scp_free(s);
            return NULL;
        }
        return s;
    } catch (...) {
        err_set(e, ERR_INTERNAL, "exception starting the DICOM listener");
        return NULL;
    }
}

extern "C" void dicom_scp_stop(struct dicom_scp *s)
{
    if (!s)
        return;
    try {
        s->stopping.store(1);
        shutdown(s->listen_fd, SHUT_RDWR);
        pthread_join(s->accept_thread, NULL);
        {
            std::lock_guard<std::mutex> lk(s->mu);
            for (struct scp_conn *c = s->conns; c; c = c->next)
                if (c->fd >= 0)
                    shutdown(c->fd, SHUT_RDWR);
        }
        reap(s, 1);
        scp_free(s);
    } catch (...) {
    }
}

/* ---- de-identification (PS3.15 Annex E) ------------------------------- */

/* The Basic Application Level Confidentiality Profile as data: PS3.15
 * Table E.1-1 (2023), basic-profile column, one row per attribute (or
 * repeating group / element range), with the standard's action code.
 * How a combined code resolves is decided in one place, deid_resolve().
 * Attributes not listed are kept (K); their sequences are still walked.
 * Rows for second-generation RT (3010,xxxx), hanging protocol selector
 * values (0072,xxxx) and a few other rare objects are not here yet. */
enum {
    DA_D,       /* dummy value */
    DA_Z,       /* zero length */
    DA_X,       /* remove */
    DA_U,       /* replace UID, consistently */
    DA_ZD, DA_XZ, DA_XD, DA_XZD,
    DA_XZU,     /* X/Z/U*: a sequence of references */
    DA_AGE,     /* X in the profile; kept, see deid_age() */
    DA_SEX,     /* Z in the profile; kept if M, F or O */
};

struct deid_row {
    uint16_t g, g_last;     /* g_last > g: a repeating group gg00-ggFF */
    uint16_t e, e_last;
    uint8_t act;
};

#define R(g, e, a) {g, g, e, e, DA_##a}
#define RE(g, e, e2, a) {g, g, e, e2, DA_##a}

static const struct deid_row deid_table[] = {
    R(0x0008, 0x0012, XD),   /* Instance Creation Date */
    R(0x0008, 0x0013, XZD),  /* Instance Creation Time */
    R(0x0008, 0x0014, U),    /* Instance Creator UID */
    R(0x0008, 0x0015, X),    /* Instance Coercion DateTime */
    R(0x0008, 0x0017, U),    /* Acquisition UID */
    R(0x0008, 0x0018, U),    /* SOP Instance UID */
    R(0x0008, 0x0019, U),    /* Pyramid UID */
    R(0x0008, 0x0020, Z),    /* Study Date */
    R(0x0008, 0x0021, XD),   /* Series Date */
    R(0x0008, 0x0022, XZ),   /* Acquisition Date */
    R(0x0008, 0x0023, ZD),   /* Content Date */
    R(0x0008, 0x0024, X),    /* Overlay Date */
    R(0x0008, 0x0025, X),    /* Curve Date */
    R(0x0008, 0x002A, XZD),  /* Acquisition DateTime */
    R(0x0008, 0x0030, Z),    /* Study Time */
    R(0x0008, 0x0031, XD),   /* Series Time */
    R(0x0008, 0x0032, XZ),   /* Acquisition Time */
    R(0x0008, 0x0033, ZD),   /* Content Time */
    R(0x0008, 0x0034, X),    /* Overlay Time */
    R(0x0008, 0x0035, X),    /* Curve Time */
    R(0x0008, 0x0050, Z),    /* Accession Number */
    R(0x0008, 0x0054, X),    /* Retrieve AE Title */
    R(0x0008, 0x0055, X),    /* Station AE Title */
    R(0x0008, 0x0058, U),    /* Failed SOP Instance UID List */
    R(0x0008, 0x0080, XZD),  /* Institution Name */
    R(0x0008, 0x0081, X),    /* Institution Address */
    R(0x0008, 0x0082, XZD),  /* Institution Code Sequence */
    R(0x0008, 0x0090, Z),    /* Referring Physician's Name */
    R(0x0008, 0x0092, X),    /* Referring Physician's Address */
    R(0x0008, 0x0094, X),    /* Referring Physician's Telephone Numbers */
    R(0x0008, 0x0096, X),    /* Referring Physician Identification Seq */
    R(0x0008, 0x009C, Z),    /* Consulting Physician's Name */
    R(0x0008, 0x009D, X),    /* Consulting Physician Identification Seq */
    R(0x0008, 0x0201, X),    /* Timezone Offset From UTC */
    R(0x0008, 0x1000, X),    /* Network ID */
    R(0x0008, 0x1010, XZD),  /* Station Name */
    R(0x0008, 0x1030, X),    /* Study Description */
    R(0x0008, 0x103E, X),    /* Series Description */
    R(0x0008, 0x1040, X),    /* Institutional Department Name */
    R(0x0008, 0x1041, X),    /* Institutional Department Type Code Seq */
    R(0x0008, 0x1048, X),    /* Physician(s) of Record */
    R(0x0008, 0x1049, X),    /* Physician(s) of Record Identification Seq */
    R(0x0008, 0x1050, X),    /* Performing Physician's Name */
    R(0x0008, 0x1052, X),    /* Performing Physician Identification Seq */
    R(0x0008, 0x1060, X),    /* Name of Physician(s) Reading Study */
    R(0x0008, 0x1062, X),    /* Physician(s) Reading Study Ident. Seq */
    R(0x0008, 0x1070, XZD),  /* Operators' Name */
    R(0x0008, 0x1072, XD),   /* Operator Identification Sequence */
    R(0x0008, 0x1080, X),    /* Admitting Diagnoses Description */
    R(0x0008, 0x1084, X),    /* Admitting Diagnoses Code Sequence */
    R(0x0008, 0x1088, X),    /* Pyramid Description */
    R(0x0008, 0x1110, XZ),   /* Referenced Study Sequence */
    R(0x0008, 0x1111, XZD),  /* Referenced Performed Procedure Step Seq */
    R(0x0008, 0x1120, X),    /* Referenced Patient Sequence */
    R(0x0008, 0x1140, XZU),  /* Referenced Image Sequence */
    R(0x0008, 0x1155, U),    /* Referenced SOP Instance UID */
    R(0x0008, 0x1195, U),    /* Transaction UID */
    R(0x0008, 0x2111, X),    /* Derivation Description */
    R(0x0008, 0x2112, XZU),  /* Source Image Sequence */
    R(0x0008, 0x3010, U),    /* Irradiation Event UID */
    R(0x0008, 0x4000, X),    /* Identifying Comments */
    R(0x0010, 0x0010, Z),    /* Patient's Name */
    R(0x0010, 0x0020, Z),    /* Patient ID */
    R(0x0010, 0x0021, X),    /* Issuer of Patient ID */
    R(0x0010, 0x0030, Z),    /* Patient's Birth Date */
    R(0x0010, 0x0032, X),    /* Patient's Birth Time */
    R(0x0010, 0x0040, SEX),  /* Patient's Sex (Z) */
    R(0x0010, 0x0050, X),    /* Patient's Insurance Plan Code Sequence */
    R(0x0010, 0x0101, X),    /* Patient's Primary Language Code Seq */
    R(0x0010, 0x0102, X),    /* ... Language Modifier Code Seq */
    R(0x0010, 0x1000, X),    /* Other Patient IDs */
    R(0x0010, 0x1001, X),    /* Other Patient Names */
    R(0x0010, 0x1002, X),    /* Other Patient IDs Sequence */
    R(0x0010, 0x1005, X),    /* Patient's Birth Name */
    R(0x0010, 0x1010, AGE),  /* Patient's Age (X) */
    R(0x0010, 0x1020, X),    /* Patient's Size */
    R(0x0010, 0x1030, X),    /* Patient's Weight */
    R(0x0010, 0x1040, X),    /* Patient's Address */
    R(0x0010, 0x1050, X),    /* Insurance Plan Identification */
    R(0x0010, 0x1060, X),    /* Patient's Mother's Birth Name */
    R(0x0010, 0x1080, X),    /* Military Rank */
    R(0x0010, 0x1081, X),    /* Branch of Service */
    R(0x0010, 0x1090, X),    /* Medical Record Locator */
    R(0x0010, 0x1100, X),    /* Referenced Patient Photo Sequence */
    R(0x0010, 0x2000, X),    /* Medical Alerts */
    R(0x0010, 0x2110, X),    /* Allergies */
    R(0x0010, 0x2150, X),    /* Country of Residence */
    R(0x0010, 0x2152, X),    /* Region of Residence */
    R(0x0010, 0x2154, X),    /* Patient's Telephone Numbers */
    R(0x0010, 0x2155, X),    /* Patient's Telecom Information */
    R(0x0010, 0x2160, X),    /* Ethnic Group */
    R(0x0010, 0x2180, X),    /* Occupation */
    R(0x0010, 0x21A0, X),    /* Smoking Status */
    R(0x0010, 0x21B0, X),    /* Additional Patient History */
    R(0x0010, 0x21C0, X),    /* Pregnancy Status */
    R(0x0010, 0x21D0, X),    /* Last Menstrual Date */
    R(0x0010, 0x21F0, X),    /* Patient's Religious Preference */
    R(0x0010, 0x2203, XZ),   /* Patient's Sex Neutered */
    R(0x0010, 0x2297, X),    /* Responsible Person */
    R(0x0010, 0x2299, X),    /* Responsible Organization */
    R(0x0010, 0x4000, X),    /* Patient Comments */
    R(0x0012, 0x0010, D),    /* Clinical Trial Sponsor Name */
    R(0x0012, 0x0020, D),    /* Clinical Trial Protocol ID */
    R(0x0012, 0x0021, Z),    /* Clinical Trial Protocol Name */
    R(0x0012, 0x0030, Z),    /* Clinical Trial Site ID */
    R(0x0012, 0x0031, Z),    /* Clinical Trial Site Name */
    R(0x0012, 0x0040, D),    /* Clinical Trial Subject ID */
    R(0x0012, 0x0042, D),    /* Clinical Trial Subject Reading ID */
    R(0x0012, 0x0050, Z),    /* Clinical Trial Time Point ID */
    R(0x0012, 0x0051, X),    /* Clinical Trial Time Point Description */
    R(0x0012, 0x0060, Z),    /* Clinical Trial Coordinating Center Name */
    R(0x0012, 0x0071, X),    /* Clinical Trial Series ID */
    R(0x0012, 0x0072, X),    /* Clinical Trial Series Description */
    R(0x0012, 0x0081, D),    /* ... Ethics Committee Name */
    R(0x0012, 0x0082, X),    /* ... Ethics Committee Approval Number */
    R(0x0012, 0x0086, X),    /* Ethics Committee Approval Start Date */
    R(0x0012, 0x0087, X),    /* Ethics Committee Approval End Date */
    R(0x0014, 0x407C, X),    /* Calibration Time */
    R(0x0014, 0x407E, X),    /* Calibration Date */
    R(0x0016, 0x002B, X),    /* Maker Note */
    R(0x0016, 0x004B, X),    /* Device Setting Description */
    R(0x0016, 0x004D, X),    /* Camera Owner Name */
    RE(0x0016, 0x004E, 0x0051, X),   /* Lens Specification .. Serial */
    RE(0x0016, 0x0070, 0x008E, X),   /* GPS Version ID .. GPS Differential */
    R(0x0018, 0x0010, ZD),   /* Contrast/Bolus Agent */
    R(0x0018, 0x0027, X),    /* Intervention Drug Stop Time */
    R(0x0018, 0x0035, X),    /* Intervention Drug Start Time */
    R(0x0018, 0x1000, XZD),  /* Device Serial Number */
    R(0x0018, 0x1002, U),    /* Device UID */
    R(0x0018, 0x1004, X),    /* Plate ID */
    R(0x0018, 0x1005, X),    /* Generator ID */
    R(0x0018, 0x1007, X),    /* Cassette ID */
    R(0x0018, 0x1008, X),    /* Gantry ID */
    R(0x0018, 0x1009, X),    /* Unique Device Identifier */
    R(0x0018, 0x100A, X),    /* UDI Sequence */
    R(0x0018, 0x100B, U),    /* Manufacturer's Device Class UID */
    R(0x0018, 0x1012, X),    /* Date of Secondary Capture */
    R(0x0018, 0x1014, X),    /* Time of Secondary Capture */
    R(0x0018, 0x1030, XD),   /* Protocol Name */
    R(0x0018, 0x1042, X),    /* Contrast/Bolus Start Time */
    R(0x0018, 0x1043, X),    /* Contrast/Bolus Stop Time */
    R(0x0018, 0x1072, X),    /* Radiopharmaceutical Start Time */
    R(0x0018, 0x1073, X),    /* Radiopharmaceutical Stop Time */
    R(0x0018, 0x1078, X),    /* Radiopharmaceutical Start DateTime */
    R(0x0018, 0x1079, X),    /* Radiopharmaceutical Stop DateTime */
    R(0x0018, 0x11BB, D),    /* Acquisition Field Of View Label */
    R(0x0018, 0x1200, X),    /* Date of Last Calibration */
    R(0x0018, 0x1201, X),    /* Time of Last Calibration */
    R(0x0018, 0x1202, X),    /* DateTime of Last Calibration */
    R(0x0018, 0x1203, Z),    /* Calibration DateTime */
    R(0x0018, 0x1204, X),    /* Date of Manufacture */
    R(0x0018, 0x1205, X),    /* Date of Installation */
    R(0x0018, 0x1400, XD),   /* Acquisition Device Processing Descr. */
    R(0x0018, 0x2042, U),    /* Target UID */
    R(0x0018, 0x4000, X),    /* Acquisition Comments */
    R(0x0018, 0x5011, X),    /* Transducer Identification Sequence */
    R(0x0018, 0x700A, XD),   /* Detector ID */
    R(0x0018, 0x700C, XD),   /* Date of Last Detector Calibration */
    R(0x0018, 0x700E, XD),   /* Time of Last Detector Calibration */
    R(0x0018, 0x9074, D),    /* Frame Acquisition DateTime */
    R(0x0018, 0x9151, D),    /* Frame Reference DateTime */
    R(0x0018, 0x9185, X),    /* Respiratory Motion Comp. Technique Descr. */
    R(0x0018, 0x9367, D),    /* X-Ray Source ID */
    R(0x0018, 0x9369, D),    /* Source Start DateTime */
    R(0x0018, 0x936A, D),    /* Source End DateTime */
    R(0x0018, 0x9371, D),    /* X-Ray Detector ID */
    R(0x0018, 0x9373, X),    /* X-Ray Detector Label */
    R(0x0018, 0x937B, X),    /* Multi-energy Acquisition Description */
    R(0x0018, 0x937F, X),    /* Decomposition Description */
    R(0x0018, 0x9424, X),    /* Acquisition Protocol Description */
    R(0x0018, 0x9516, XD),   /* Start Acquisition DateTime */
    R(0x0018, 0x9517, XD),   /* End Acquisition DateTime */
    R(0x0018, 0x9623, D),    /* Functional Sync Pulse */
    R(0x0018, 0x9701, D),    /* Decay Correction DateTime */
    R(0x0018, 0x9804, D),    /* Exclusion Start DateTime */
    R(0x0018, 0x9919, ZD),   /* Instruction Performed DateTime */
    R(0x0018, 0x9937, X),    /* Requested Series Description */
    R(0x0018, 0xA002, X),    /* Contribution DateTime */
    R(0x0018, 0xA003, X),    /* Contribution Description */
    R(0x0020, 0x000D, U),    /* Study Instance UID */
    R(0x0020, 0x000E, U),    /* Series Instance UID */
    R(0x0020, 0x0010, Z),    /* Study ID */
    R(0x0020, 0x0027, X),    /* Pyramid Label */
    R(0x0020, 0x0052, U),    /* Frame of Reference UID */
    R(0x0020, 0x0200, U),    /* Synchronization Frame of Reference UID */
    R(0x0020, 0x3401, X),    /* Modifying Device ID */
    R(0x0020, 0x3403, X),    /* Modified Image Date */
    R(0x0020, 0x3405, X),    /* Modified Image Time */
    R(0x0020, 0x3406, X),    /* Modified Image Description */
    R(0x0020, 0x4000, X),    /* Image Comments */
    R(0x0020, 0x9158, X),    /* Frame Comments */
    R(0x0020, 0x9161, U),    /* Concatenation UID */
    R(0x0020, 0x9164, U),    /* Dimension Organization UID */
    R(0x0028, 0x1199, U),    /* Palette Color Lookup Table UID */
    R(0x0028, 0x1214, U),    /* Large Palette Color Lookup Table UID */
    R(0x0028, 0x4000, X),    /* Image Presentation Comments */
    R(0x0032, 0x0012, X),    /* Study ID Issuer */
    R(0x0032, 0x0032, X),    /* Study Verified Date */
    R(0x0032, 0x0033, X),    /* Study Verified Time */
    R(0x0032, 0x0034, X),    /* Study Read Date */
    R(0x0032, 0x0035, X),    /* Study Read Time */
    R(0x0032, 0x1000, X),    /* Scheduled Study Start Date */
    R(0x0032, 0x1001, X),    /* Scheduled Study Start Time */
    R(0x0032, 0x1010, X),    /* Scheduled Study Stop Date */
    R(0x0032, 0x1011, X),    /* Scheduled Study Stop Time */
    R(0x0032, 0x1020, X),    /* Scheduled Study Location */
    R(0x0032, 0x1021, X),    /* Scheduled Study Location AE Title */
    R(0x0032, 0x1030, X),    /* Reason for Study */
    R(0x0032, 0x1032, X),    /* Requesting Physician */
    R(0x0032, 0x1033, X),    /* Requesting Service */
    R(0x0032, 0x1040, X),    /* Study Arrival Date */
    R(0x0032, 0x1041, X),    /* Study Arrival Time */
    R(0x0032, 0x1050, X),    /* Study Completion Date */
    R(0x0032, 0x1051, X),    /* Study Completion Time */
    R(0x0032, 0x1060, XZ),   /* Requested Procedure Description */
    R(0x0032, 0x1066, X),    /* Reason for Visit */
    R(0x0032, 0x1067, X),    /* Reason for Visit Code Sequence */
    R(0x0032, 0x1070, X),    /* Requested Contrast Agent */
    R(0x0032, 0x4000, X),    /* Study Comments */
    R(0x0038, 0x0004, X),    /* Referenced Patient Alias Sequence */
    R(0x0038, 0x0010, X),    /* Admission ID */
    R(0x0038, 0x0011, X),    /* Issuer of Admission ID */
    R(0x0038, 0x0014, X),    /* Issuer of Admission ID Sequence */
    RE(0x0038, 0x001A, 0x001E, X),   /* Scheduled Admission/Discharge ... */
    R(0x0038, 0x0020, X),    /* Admitting Date */
    R(0x0038, 0x0021, X),    /* Admitting Time */
    R(0x0038, 0x0030, X),    /* Discharge Date */
    R(0x0038, 0x0032, X),    /* Discharge Time */
    R(0x0038, 0x0040, X),    /* Discharge Diagnosis Description */
    R(0x0038, 0x0050, X),    /* Special Needs */
    R(0x0038, 0x0060, X),    /* Service Episode ID */
    R(0x0038, 0x0061, X),    /* Issuer of Service Episode ID */
    R(0x0038, 0x0062, X),    /* Service Episode Description */
    R(0x0038, 0x0064, X),    /* Issuer of Service Episode ID Sequence */
    R(0x0038, 0x0300, X),    /* Current Patient Location */
    R(0x0038, 0x0400, X),    /* Patient's Institution Residence */
    R(0x0038, 0x0500, X),    /* Patient State */
    R(0x0038, 0x4000, X),    /* Visit Comments */
    R(0x003A, 0x0310, U),    /* Multiplex Group UID */
    R(0x003A, 0x0314, D),    /* Impedance Measurement DateTime */
    R(0x003A, 0x0329, X),    /* Waveform Filter Description */
    R(0x003A, 0x032B, X),    /* Filter Lookup Table Description */
    RE(0x0040, 0x0001, 0x0007, X),   /* Scheduled Station AE .. SPS Descr. */
    R(0x0040, 0x0009, X),    /* Scheduled Procedure Step ID */
    RE(0x0040, 0x000B, 0x0012, X),   /* Sched. Perf. Physician Id .. Pre-Med */
    RE(0x0040, 0x0241, 0x0245, X),   /* Performed Station AE .. PPS Start */
    R(0x0040, 0x0250, X),    /* Performed Procedure Step End Date */
    R(0x0040, 0x0251, X),    /* Performed Procedure Step End Time */
    R(0x0040, 0x0253, X),    /* Performed Procedure Step ID */
    R(0x0040, 0x0254, X),    /* Performed Procedure Step Description */
    R(0x0040, 0x0275, X),    /* Request Attributes Sequence */
    R(0x0040, 0x0280, X),    /* Comments on the Performed Procedure Step */
    R(0x0040, 0x0310, X),    /* Comments on Radiation Dose */
    R(0x0040, 0x050A, X),    /* Specimen Accession Number */
    R(0x0040, 0x0512, D),    /* Container Identifier */
    R(0x0040, 0x0513, Z),    /* Issuer of the Container Identifier Seq */
    R(0x0040, 0x051A, X),    /* Container Description */
    R(0x0040, 0x0551, D),    /* Specimen Identifier */
    R(0x0040, 0x0554, U),    /* Specimen UID */
    R(0x0040, 0x0555, XZ),   /* Acquisition Context Sequence */
    R(0x0040, 0x0562, Z),    /* Issuer of the Specimen Identifier Seq */
    R(0x0040, 0x0600, X),    /* Specimen Short Description */
    R(0x0040, 0x0602, X),    /* Specimen Detailed Description */
    R(0x0040, 0x0610, Z),    /* Specimen Preparation Sequence */
    R(0x0040, 0x06FA, X),    /* Slide Identifier */
    R(0x0040, 0x1001, X),    /* Requested Procedure ID */
    R(0x0040, 0x1002, X),    /* Reason for the Requested Procedure */
    R(0x0040, 0x1004, X),    /* Patient Transport Arrangements */
    R(0x0040, 0x1005, X),    /* Requested Procedure Location */
    R(0x0040, 0x100A, X),    /* Reason for Requested Procedure Code Seq */
    R(0x0040, 0x1010, X),    /* Names of Intended Recipients of Results */
    R(0x0040, 0x1011, X),    /* Intended Recipients ... Ident. Sequence */
    R(0x0040, 0x1101, D),    /* Person Identification Code Sequence */
    R(0x0040, 0x1102, X),    /* Person's Address */
    R(0x0040, 0x1103, X),    /* Person's Telephone Numbers */
    R(0x0040, 0x1104, X),    /* Person's Telecom Information */
    R(0x0040, 0x1400, X),    /* Requested Procedure Comments */
    R(0x0040, 0x2001, X),    /* Reason for the Imaging Service Request */
    R(0x0040, 0x2004, X),    /* Issue Date of Imaging Service Request */
    R(0x0040, 0x2005, X),    /* Issue Time of Imaging Service Request */
    RE(0x0040, 0x2008, 0x2011, X),   /* Order Entered By .. Callback Telecom */
    R(0x0040, 0x2016, Z),    /* Placer Order Number / Imaging Serv. Req. */
    R(0x0040, 0x2017, Z),    /* Filler Order Number / Imaging Serv. Req. */
    R(0x0040, 0x2400, X),    /* Imaging Service Request Comments */
    R(0x0040, 0x3001, X),    /* Confidentiality Constraint ... Descr. */
    R(0x0040, 0x4005, X),    /* Scheduled Procedure Step Start DateTime */
    R(0x0040, 0x4008, X),    /* SPS Expiration DateTime */
    R(0x0040, 0x4010, X),    /* SPS Modification DateTime */
    R(0x0040, 0x4011, X),    /* Expected Completion DateTime */
    R(0x0040, 0x4023, U),    /* Ref. GP Scheduled Proc. Step Trans. UID */
    R(0x0040, 0x4025, X),    /* Scheduled Station Name Code Sequence */
    R(0x0040, 0x4027, X),    /* Sched. Station Geographic Location Seq */
    R(0x0040, 0x4028, X),    /* Performed Station Name Code Sequence */
    R(0x0040, 0x4030, X),    /* Perf. Station Geographic Location Seq */
    RE(0x0040, 0x4034, 0x4037, X),   /* Human Performers .. Performer Name */
    RE(0x0040, 0x4050, 0x4052, X),   /* PPS Start/End, Cancellation DateTime */
    R(0x0040, 0xA027, D),    /* Verifying Organization */
    R(0x0040, 0xA030, D),    /* Verification DateTime */
    R(0x0040, 0xA032, XD),   /* Observation DateTime */
    R(0x0040, 0xA033, X),    /* Observation Start DateTime */
    R(0x0040, 0xA073, D),    /* Verifying Observer Sequence */
    R(0x0040, 0xA075, D),    /* Verifying Observer Name */
    R(0x0040, 0xA078, X),    /* Author Observer Sequence */
    R(0x0040, 0xA07A, X),    /* Participant Sequence */
    R(0x0040, 0xA07C, X),    /* Custodial Organization Sequence */
    R(0x0040, 0xA082, Z),    /* Participation DateTime */
    R(0x0040, 0xA088, Z),    /* Verifying Observer Ident. Code Sequence */
    R(0x0040, 0xA110, X),    /* Date of Document ... (Trial) */
    R(0x0040, 0xA112, X),    /* Time of Document ... (Trial) */
    R(0x0040, 0xA120, D),    /* DateTime */
    R(0x0040, 0xA121, D),    /* Date */
    R(0x0040, 0xA122, D),    /* Time */
    R(0x0040, 0xA123, D),    /* Person Name */
    R(0x0040, 0xA124, U),    /* UID */
    R(0x0040, 0xA13A, D),    /* Referenced DateTime */
    R(0x0040, 0xA171, U),    /* Observation UID */
    R(0x0040, 0xA172, U),    /* Referenced Observation UID (Trial) */
    R(0x0040, 0xA192, X),    /* Observation Date (Trial) */
    R(0x0040, 0xA193, X),    /* Observation Time (Trial) */
    R(0x0040, 0xA307, X),    /* Current Observer (Trial) */
    R(0x0040, 0xA352, X),    /* Verbal Source (Trial) */
    R(0x0040, 0xA353, X),    /* Address (Trial) */
    R(0x0040, 0xA354, X),    /* Telephone Number (Trial) */
    R(0x0040, 0xA358, X),    /* Verbal Source Identifier Code Seq (Trial) */
    R(0x0040, 0xA402, U),    /* Observation Subject UID (Trial) */
    R(0x0040, 0xA730, D),    /* Content Sequence */
    R(0x0040, 0xDB06, X),    /* Template Version */
    R(0x0040, 0xDB07, X),    /* Template Local Version */
    R(0x0040, 0xDB0C, U),    /* Template Extension Organization UID */
    R(0x0040, 0xDB0D, U),    /* Template Extension Creator UID */
    R(0x0040, 0xE004, X),    /* HL7 Document Effective Time */
    R(0x0042, 0x0011, D),    /* Encapsulated Document */
    R(0x0044, 0x0004, X),    /* Approval Status DateTime */
    R(0x0044, 0x000B, X),    /* Product Expiration DateTime */
    R(0x0044, 0x0010, X),    /* Substance Administration DateTime */
    R(0x0044, 0x0104, D),    /* Assertion DateTime */
    R(0x0044, 0x0105, X),    /* Assertion Expiration DateTime */
    R(0x0050, 0x001B, X),    /* Container Component ID */
    R(0x0050, 0x0020, X),    /* Device Description */
    R(0x0050, 0x0021, X),    /* Long Device Description */
    R(0x0062, 0x0021, U),    /* Tracking UID */
    R(0x0064, 0x0003, U),    /* Source Frame of Reference UID */
    R(0x0070, 0x0001, D),    /* Graphic Annotation Sequence */
    R(0x0070, 0x0082, X),    /* Presentation Creation Date */
    R(0x0070, 0x0083, X),    /* Presentation Creation Time */
    R(0x0070, 0x0084, ZD),   /* Content Creator's Name */
    R(0x0070, 0x0086, X),    /* Content Creator's Ident. Code Sequence */
    R(0x0070, 0x031A, U),    /* Fiducial UID */
    R(0x0070, 0x1101, U),    /* Presentation Display Collection UID */
    R(0x0070, 0x1102, U),    /* Presentation Sequence Collection UID */
    R(0x0088, 0x0140, U),    /* Storage Media File-set UID */
    R(0x0088, 0x0200, X),    /* Icon Image Sequence */
    R(0x0088, 0x0904, X),    /* Topic Title */
    R(0x0088, 0x0906, X),    /* Topic Subject */
    R(0x0088, 0x0910, X),    /* Topic Author */
    R(0x0088, 0x0912, X),    /* Topic Keywords */
    R(0x0100, 0x0420, X),    /* SOP Authorization DateTime */
    R(0x0400, 0x0100, U),    /* Digital Signature UID */
    R(0x0400, 0x0105, D),    /* Digital Signature DateTime */
    R(0x0400, 0x0115, D),    /* Certificate of Signer */
    R(0x0400, 0x0310, X),    /* Certified Timestamp */
    R(0x0400, 0x0402, X),    /* Referenced Digital Signature Sequence */
    R(0x0400, 0x0403, X),    /* Referenced SOP Instance MAC Sequence */
    R(0x0400, 0x0404, X),    /* MAC */
    R(0x0400, 0x0550, X),    /* Modified Attributes Sequence */
    R(0x0400, 0x0551, X),    /* Nonconforming Modified Attributes Seq */
    R(0x0400, 0x0552, X),    /* Nonconforming Data Element Value */
    R(0x0400, 0x0561, X),    /* Original Attributes Sequence */
    R(0x0400, 0x0562, D),    /* Attribute Modification DateTime */
    R(0x0400, 0x0563, D),    /* Modifying System */
    R(0x0400, 0x0564, Z),    /* Source of Previous Values */
    R(0x0400, 0x0565, D),    /* Reason for the Attribute Modification */
    R(0x0400, 0x0600, X),    /* Instance Origin Status */
    R(0x2030, 0x0020, X),    /* Text String */
    R(0x2100, 0x0040, X),    /* Creation Date */
    R(0x2100, 0x0050, X),    /* Creation Time */
    R(0x2100, 0x0070, X),    /* Originator */
    R(0x2100, 0x0140, D),    /* Destination AE */
    R(0x2200, 0x0002, XZ),   /* Label Text */
    R(0x2200, 0x0005, XZ),   /* Barcode Value */
    R(0x3006, 0x0002, D),    /* Structure Set Label */
    R(0x3006, 0x0004, X),    /* Structure Set Name */
    R(0x3006, 0x0006, X),    /* Structure Set Description */
    R(0x3006, 0x0008, Z),    /* Structure Set Date */
    R(0x3006, 0x0009, Z),    /* Structure Set Time */
    R(0x3006, 0x0024, U),    /* Referenced Frame of Reference UID */
    R(0x3006, 0x0026, Z),    /* ROI Name */
    R(0x3006, 0x0028, X),    /* ROI Description */
    R(0x3006, 0x0038, X),    /* ROI Generation Description */
    R(0x3006, 0x0085, X),    /* ROI Observation Label */
    R(0x3006, 0x0088, X),    /* ROI Observation Description */
    R(0x3006, 0x00A6, Z),    /* ROI Interpreter */
    R(0x3006, 0x00C2, U),    /* Related Frame of Reference UID */
    R(0x3008, 0x0024, D),    /* Treatment Control Point Date */
    R(0x3008, 0x0025, D),    /* Treatment Control Point Time */
    R(0x3008, 0x0054, XD),   /* First Treatment Date */
    R(0x3008, 0x0056, XD),   /* Most Recent Treatment Date */
    R(0x3008, 0x0105, XZ),   /* Source Serial Number */
    R(0x3008, 0x0162, D),    /* Safe Position Exit Date */
    R(0x3008, 0x0164, D),    /* Safe Position Exit Time */
    R(0x3008, 0x0166, D),    /* Safe Position Return Date */
    R(0x3008, 0x0168, D),    /* Safe Position Return Time */
    R(0x3008, 0x0250, XD),   /* Treatment Date */
    R(0x3008, 0x0251, XD),   /* Treatment Time */
    R(0x300A, 0x0002, D),    /* RT Plan Label */
    R(0x300A, 0x0003, X),    /* RT Plan Name */
    R(0x300A, 0x0004, X),    /* RT Plan Description */
    R(0x300A, 0x0006, XD),   /* RT Plan Date */
    R(0x300A, 0x0007, XD),   /* RT Plan Time */
    R(0x300A, 0x000B, X),    /* Treatment Sites */
    R(0x300A, 0x000E, X),    /* Prescription Description */
    R(0x300A, 0x0013, U),    /* Dose Reference UID */
    R(0x300A, 0x0016, X),    /* Dose Reference Description */
    R(0x300A, 0x0072, X),    /* Fraction Group Description */
    R(0x300A, 0x0083, U),    /* Referenced Dose Reference UID */
    R(0x300A, 0x00B2, XZ),   /* Treatment Machine Name */
    R(0x300A, 0x00C3, X),    /* Beam Description */
    R(0x300A, 0x00DD, X),    /* Bolus Description */
    R(0x300A, 0x0196, X),    /* Fixation Device Description */
    R(0x300A, 0x01A6, X),    /* Shielding Device Description */
    R(0x300A, 0x01B2, X),    /* Setup Technique Description */
    R(0x300A, 0x0216, X),    /* Source Manufacturer */
    R(0x300A, 0x022C, D),    /* Source Strength Reference Date */
    R(0x300A, 0x022E, D),    /* Source Strength Reference Time */
    R(0x300A, 0x02EB, X),    /* Compensator Description */
    R(0x300A, 0x0650, U),    /* Patient Setup UID */
    R(0x300A, 0x0700, U),    /* Treatment Session UID */
    R(0x300E, 0x0004, Z),    /* Review Date */
    R(0x300E, 0x0005, Z),    /* Review Time */
    R(0x300E, 0x0008, XZ),   /* Reviewer Name */
    R(0x4000, 0x0010, X),    /* Arbitrary */
    R(0x4000, 0x4000, X),    /* Text Comments */
    R(0x4008, 0x0040, X),    /* Results ID */
    R(0x4008, 0x0042, X),    /* Results ID Issuer */
    RE(0x4008, 0x0100, 0x0102, X),   /* Interpretation Recorded .. Recorder */
    RE(0x4008, 0x0108, 0x010C, X),   /* Interp. Transcription .. Author */
    RE(0x4008, 0x0111, 0x0115, X),   /* Interpretation Approver .. Diagnosis */
    RE(0x4008, 0x0118, 0x011A, X),   /* Results Distribution List .. Address */
    R(0x4008, 0x0200, X),    /* Interpretation ID */
    R(0x4008, 0x0202, X),    /* Interpretation ID Issuer */
    R(0x4008, 0x0300, X),    /* Impressions */
    R(0x4008, 0x4000, X),    /* Results Comments */
    {0x5000, 0x50FF, 0x0000, 0xFFFF, DA_X},   /* Curve Data (50xx,xxxx) */
    {0x6000, 0x60FF, 0x3000, 0x3000, DA_X},   /* Overlay Data */
    {0x6000, 0x60FF, 0x4000, 0x4000, DA_X},   /* Overlay Comments */
    R(0xFFFA, 0xFFFA, X),    /* Digital Signatures Sequence */
    R(0xFFFC, 0xFFFC, X),    /* Data Set Trailing Padding */
};

#undef R
#undef RE

static int deid_action(const DcmTagKey &t)
{
    uint16_t g = t.getGroup(), el = t.getElement();
    for (size_t i = 0; i < sizeof deid_table / sizeof *deid_table; i++) {
        const struct deid_row *r = &deid_table[i];
        if (g >= r->g && g <= r->g_last && el >= r->e && el <= r->e_last)
            return r->act;
    }
    return -1;
}

/* What we do for a combined code.  Z/D keeps the attribute, empty; X/Z,
 * X/D and X/Z/D remove it (the profile allows X where the IOD does not
 * require the attribute; we cannot know every IOD's types, and removal
 * leaks nothing); X/Z/U* keeps the sequence of references, whose UIDs
 * their own rows replace. */
static int deid_resolve(int act)
{
    switch (act) {
    case DA_ZD: return DA_Z;
    case DA_XZ: case DA_XD: case DA_XZD: return DA_X;
    default: return act;
    }
}

struct deid_ctx {
    const struct dcm_deid_opts *o;
    struct err *e;
};

/* Replace every value of a UI element through the caller's mapping. */
static int deid_uids(struct deid_ctx *c, DcmElement *el)
{
    OFString v, out;
    if (el->getOFStringArray(v).bad() || v.empty())
        return 0;
    size_t at = 0;
    for (;;) {
        size_t bs = v.find('\\', at);
        OFString one = v.substr(at, bs == OFString_npos ? OFString_npos
                                                          : bs - at);
        while (!one.empty() && (one[one.length() - 1] == ' ' ||
                                one[one.length() - 1] == 0))
            one.erase(one.length() - 1);
        if (!one.empty()) {
            char repl[65] = "";
            int rc = c->o->map_uid(c->o->map_arg, one.c_str(), repl, c->e);
            if (rc)
                return rc < 0 ? rc : err_set(c->e, ERR_INTERNAL,
                                             "UID mapping failed");
            if (!dicom_uid_valid(repl))
                return err_set(c->e, ERR_INVALID, "UID mapping gave a "
                               "malformed UID for (%04X,%04X)",
                               el->getGTag(), el->getETag());
            one = repl;
        }
        out += one;
        if (bs == OFString_npos)
            break;
        out += '\\';
        at = bs + 1;
    }
    if (el->putOFStringArray(out).bad())
        return err_set(c->e, ERR_INTERNAL, "cannot replace UID in "
                       "(%04X,%04X)", el->getGTag(), el->getETag());
    return 0;
}

/* A dummy of the element's VR (D); binary and numeric VRs become empty,
 * which no reader can take for a real value either. */
static const char *deid_dummy(DcmEVR vr)
{
    switch (vr) {
    case EVR_DA: return "19000101";
    case EVR_TM: return "000000";
    case EVR_DT: return "19000101000000";
    case EVR_IS: case EVR_DS: return "0";
    case EVR_AE: case EVR_CS: case EVR_LO: case EVR_LT: case EVR_PN:
    case EVR_SH: case EVR_ST: case EVR_UC: case EVR_UT:
        return "ANONYMIZED";
    default: return NULL;
    }
}

static int deid_item(struct deid_ctx *c, DcmItem *item, int depth);

/* Apply one resolved action to el; *drop is set when it must go. */
static int deid_element(struct deid_ctx *c, DcmElement *el, int act,
                        int depth, int *drop)
{
    DcmEVR vr = el->ident();
    *drop = 0;
    if (act == DA_X) {
        *drop = 1;
        return 0;
    }
    if (vr == EVR_SQ) {
        DcmSequenceOfItems *sq = (DcmSequenceOfItems *)el;
        if (act == DA_Z || act == DA_D) {
            /* an emptied sequence: its items hold what D/Z protect */
            sq->clear();
            return 0;
        }
        if (act == DA_U) {
            *drop = 1;
            return 0;
        }
        if (depth >= DICOM_MAX_DEPTH)
            return err_set(c->e, ERR_INVALID, "sequences nested too deep");
        for (unsigned long i = 0; i < sq->card(); i++) {
            int rc = deid_item(c, sq->getItem(i), depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    switch (act) {
    case DA_U:
    case DA_D:
        if (vr == EVR_UI)
            return deid_uids(c, el);
        if (act == DA_U) {     /* a UID we cannot read (VR UN): remove */
            *drop = 1;
            return 0;
        }
        if (deid_dummy(vr)) {
            if (el->putString(deid_dummy(vr)).bad())
                *drop = 1;
            return 0;
        }
        [[fallthrough]];      /* no dummy for this VR: empty it */
    case DA_Z:
        if (el->clear().bad())
            *drop = 1;
        return 0;
    case DA_SEX: {
        OFString v;
        el->getOFString(v, 0);
        if (v != "M" && v != "F" && v != "O" && el->clear().bad())
            *drop = 1;
        return 0;
    }
    default:
        return 0;     /* kept; DA_AGE was settled by deid_age() */
    }
}

static int deid_item(struct deid_ctx *c, DcmItem *item, int depth)
{
    for (unsigned long i = 0; i < item->card();) {
        DcmElement *el = item->getElement(i);
        DcmTagKey t = el->getTag();
        int drop = 0;
        if (t.getGroup() & 1) {
            drop = 1;                      /* private: all of it goes */
        } else {
            int act = deid_action(t);
            int rc = deid_element(c, el, act < 0 ? -1 : deid_resolve(act),
                                  depth, &drop);
            if (rc)
                return rc;
        }
        if (drop)
            delete item->remove(i);
        else
            i++;
    }
    return 0;
}

/* YYYYMMDD into y, m, d; 0 if it is not a plausible date. */
static int deid_date(const char *s, int *y, int *m, int *d)
{
    if (strlen(s) != 8 || strspn(s, "0123456789") != 8)
        return 0;
    *y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
         (s[3] - '0');
    *m = (s[4] - '0') * 10 + (s[5] - '0');
    *d = (s[6] - '0') * 10 + (s[7] - '0');
    return *m >= 1 && *m <= 12 && *d >= 1 && *d <= 31;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long deid_days(int y, int m, int d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* PatientAge (AS, "nnnY", "nnnM" or "nnnD") at date ref of someone born
 * on birth; 0 if either date is unusable or ref comes first. */
static int deid_age_between(const char *birth, const char *ref,
                            char out[8])
{
    int by, bm, bd, ry, rm, rd;
    if (!deid_date(birth, &by, &bm, &bd) || !deid_date(ref, &ry, &rm, &rd))
        return 0;
    long days = deid_days(ry, rm, rd) - deid_days(by, bm, bd);
    if (days < 0)
        return 0;
    int months = (ry - by) * 12 + (rm - bm) - (rd < bd);
    if (months >= 12)
        snprintf(out, 8, "%03dY", months / 12 > 999 ? 999 : months / 12);
    else if (months >= 1)
        snprintf(out, 8, "%03dM", months);
    else
        snprintf(out, 8, "%03dD", (int)(days < 31 ? days : 31));
    return 1;
}

/* Keep a well-formed PatientAge; otherwise compute it from the birth date
 * and the first date of the study, series, acquisition or content, while
 * they are still there. */
static void deid_age(DcmDataset *ds)
{
    OFString v;
    if (ds->findAndGetOFString(DCM_PatientAge, v).good() &&
        v.length() == 4 && isdigit((unsigned char)v[0]) &&
        isdigit((unsigned char)v[1]) && isdigit((unsigned char)v[2]) &&
        strchr("DWMY", v[3]))
        return;
    ds->findAndDeleteElement(DCM_PatientAge);
    OFString birth;
    ds->findAndGetOFString(DCM_PatientBirthDate, birth);
    static const DcmTagKey refs[] = {DCM_StudyDate, DCM_SeriesDate,
                                     DCM_AcquisitionDate, DCM_ContentDate};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        OFString ref;
        char age[8];
        if (ds->findAndGetOFString(refs[i], ref).good() &&
            deid_age_between(birth.c_str(), ref.c_str(), age)) {
            ds->putAndInsertString(DCM_PatientAge, age);
            return;
        }
    }
}

/* PatientIdentityRemoved, DeidentificationMethod and its codes (CID 7050). */
static int deid_mark(DcmDataset *ds, struct err *e)
{
    static const char *const codes[][2] = {
        {"113100", "Basic Application Confidentiality Profile"},
        {"113108", "Retain Patient Characteristics Option"},
    };
    OFCondition c = ds->putAndInsertString(DCM_PatientIdentityRemoved, "YES");
    if (c.good())
        c = ds->putAndInsertString(DCM_DeidentificationMethod,
                                   "PS3.15 E.1 Basic Profile\\"
                                   "PatientAge and PatientSex retained");
    ds->findAndDeleteElement(DCM_DeidentificationMethodCodeSequence);
    for (size_t i = 0; c.good() && i < sizeof codes / sizeof *codes; i++) {
        DcmItem *it = NULL;
        c = ds->findOrCreateSequenceItem(
            DCM_DeidentificationMethodCodeSequence, it, -2);
        if (c.good())
            c = it->putAndInsertString(DCM_CodeValue, codes[i][0]);
        if (c.good())
            c = it->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
        if (c.good())
            c = it->putAndInsertString(DCM_CodeMeaning, codes[i][1]);
    }
    if (c.bad())
        return err_set(e, ERR_INTERNAL, "cannot mark as de-identified: %s",
                       c.text());
    return 0;
}

/* A temporary file beside path, removed unless kept. */
struct tmp_beside {
    char path[PATH_MAX] = "";
    bool keep = false;
    ~tmp_beside()
    {
        if (path[0] && !keep)
            unlink(path);
    }
};

static int deidentify(const char *in_path, const char *out_path,
                      const struct dcm_deid_opts *o, struct err *e)
{
    if (!o || !o->map_uid)
        return err_set(e, ERR_INVALID, "de-identify: no UID mapping given");
    DcmFileFormat ff;
    int rc = load_file(in_path, ff, e);
    if (rc)
        return rc;
    struct dcm_info info;
    if ((rc = fill_info(ff, NULL, &info, e)))
        return rc;
    DcmDataset *ds = ff.getDataset();
    deid_age(ds);
    struct deid_ctx c = {o, e};
    if ((rc = deid_item(&c, ds, 0)))
        return rc;
    if (o->patient_name && o->patient_name[0] &&
        ds->putAndInsertString(DCM_PatientName, o->patient_name).bad())
        return err_set(e, ERR_INVALID, "bad replacement patient name");
    if (o->patient_id && o->patient_id[0] &&
        ds->putAndInsertString(DCM_PatientID, o->patient_id).bad())
        return err_set(e, ERR_INVALID, "bad replacement patient ID");
    if ((rc = deid_mark(ds, e)))
        return rc;

    tmp_beside t;
    if (snprintf(t.path, sizeof t.path, "%s.deid-XXXXXX", out_path) >=
        (int)sizeof t.path)
        return err_set(e, ERR_TOOBIG, "output path too long");
    int fd = mkstemp(t.path);
    if (fd < 0) {
        t.path[0] = 0;
        return err_set(e, ERR_IO, "create %s: %s", out_path, strerror(errno));
    }
    close(fd);
    /* A new meta header (the default write mode): it takes the new SOP
     * Instance UID, and drops the sender's Source AE Title. */
    OFCondition wc = ff.saveFile(t.path, ds->getOriginalXfer());
    if (wc.bad())
        return err_set(e, ERR_IO, "write %s: %s", out_path, wc.text());
    if (rename(t.path, out_path) != 0)
        return err_set(e, ERR_IO, "rename to %s: %s", out_path,
                       strerror(errno));
    t.keep = true;
    return 0;
}

extern "C" int dicom_deidentify(const char *in_path, const char *out_path,
                                const struct dcm_deid_opts *opts,
                                struct err *e)
{
    return guarded(e, "de-identifying", in_path, [&]() -> int {
        return deidentify(in_path, out_path, opts, e);
    });
}

/* "2.25." and the decimal of 32 hex digits (a 128-bit number). */
static void uid_from_hex(const char hex[33], char out[65])
{
    unsigned __int128 v = 0;
    for (int i = 0; i < 32; i++)
        v = v << 4 | (unsigned)(hex[i] <= '9' ? hex[i] - '0'
                                              : hex[i] - 'a' + 10);
    char dig[40];
    int n = 0;
    do {
        dig[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    memcpy(out, "2.25.", 5);
    for (int i = 0; i < n; i++)
        out[5 + i] = dig[n - 1 - i];
    out[5 + n] = 0;
}

extern "C" int dicom_uid_new(char out[65], struct err *e)
{
    char hex[33];
    if (random_hex(hex, 16) != 0)
        return err_set(e, ERR_INTERNAL, "no random bytes for a UID");
    uid_from_hex(hex, out);
    return 0;
}

/* ---- DICOMweb: metadata, frames, bulk data ---------------------------- */

/*
 * Metadata is DCMTK's own JSON writer (what dcm2json prints), so Hashi's
 * DICOM JSON is DCMTK's attribute for attribute.  DCMTK asks the format,
 * element by element in document order, whether a value is bulk data,
 * knowing only the tag; so the data set is walked first in the same order
 * and each non-empty value's answer queued under its tag: the writer's
 * n-th question about a tag gets the n-th answer.  The answer names the
 * element's path ("7FE00010", "00880200.1.7FE00010": tag, item number
 * from 1, tag...), which dicom_bulk_get resolves.
 */
#include "dcmtk/dcmdata/dcjson.h"

#include <deque>
#include <map>
#include <sstream>
#include <string>

static int is_bulk_vr(DcmEVR vr)
{
    return vr == EVR_OB || vr == EVR_OW || vr == EVR_OF || vr == EVR_OD ||
           vr == EVR_OL || vr == EVR_OV || vr == EVR_UN ||
           vr == EVR_ox || vr == EVR_px || vr == EVR_pixelSQ;
}

static std::string tag_hex(const DcmTagKey &t)
{
    char b[9];
    snprintf(b, sizeof b, "%04X%04X", t.getGroup(), t.getElement());
    return b;
}

typedef std::map<Uint32, std::deque<std::string> > bulk_plan;

static void plan_item(DcmItem *item, const std::string &prefix,
                      bulk_plan &plan, int depth)
{
    if (depth > DICOM_MAX_DEPTH)
        return;
    for (unsigned long i = 0; i < item->card(); i++) {
        DcmElement *el = item->getElement(i);
        if (!el)
            continue;
        DcmTagKey t = el->getTag();
        std::string path = prefix + tag_hex(t);
        if (el->ident() == EVR_SQ) {
            DcmSequenceOfItems *sq = OFstatic_cast(DcmSequenceOfItems *, el);
            for (unsigned long k = 0; k < sq->card(); k++) {
                char n[32];
                snprintf(n, sizeof n, ".%lu.", k + 1);
                plan_item(sq->getItem(k), path + n, plan, depth + 1);
            }
            continue;
        }
        if (el->getLengthField() == 0 && el->ident() != EVR_PixelData)
            continue;
        Uint32 key = (Uint32)t.getGroup() << 16 | t.getElement();
        int bulk = t == DCM_PixelData ||
                   (is_bulk_vr(el->getVR()) &&
                    el->getLengthField() > DICOM_BULK_THRESHOLD);
        plan[key].push_back(bulk ? path : std::string());
    }
}

class BulkJsonFormat : public DcmJsonFormatCompact {
public:
    BulkJsonFormat(const char *prefix, bulk_plan &plan)
        : DcmJsonFormatCompact(OFFalse), prefix_(prefix), plan_(plan) {}
    OFBool asBulkDataURI(const DcmTagKey &tag, OFString &uri) override
    {
        Uint32 key = (Uint32)tag.getGroup() << 16 | tag.getElement();
        auto it = plan_.find(key);
        if (it == plan_.end() || it->second.empty())
            return OFFalse;
        std::string path = it->second.front();
        it->second.pop_front();
        if (path.empty())
            return OFFalse;
        uri = (prefix_ + "/" + path).c_str();
        return OFTrue;
    }
private:
    std::string prefix_;
    bulk_plan &plan_;
};

extern "C" int dicom_write_json(const char *path, const char *bulk_prefix,
                                FILE *out, struct err *e)
{
    return guarded(e, "writing JSON of", path, [&]() -> int {
        DcmFileFormat ff;
        int rc = load_file(path, ff, e);
        if (rc)
            return rc;
        /* DICOM JSON is UTF-8; dcm2json converts the same way (and so
         * says ISO_IR 192 in SpecificCharacterSet). */
        OFCondition cc = ff.convertToUTF8();
        if (cc.bad())
            return err_set(e, ERR_UNSUPPORTED, "character set: %s",
                           cc.text());
        bulk_plan plan;
        plan_item(ff.getDataset(), "", plan, 0);
        BulkJsonFormat fmt(bulk_prefix, plan);
        std::ostringstream os;
        OFCondition c = ff.getDataset()->writeJson(os, fmt);
        if (c.bad())
            return err_set(e, ERR_UNSUPPORTED, "DICOM JSON: %s", c.text());
        std::string s = os.str();
        /* DcmDataset::writeJson writes the members only; the braces are
         * the caller's (dcm2json: DcmFileFormat::writeJson). */
        if (fputc('{', out) == EOF ||
            fwrite(s.data(), 1, s.size(), out) != s.size() ||
            fputc('}', out) == EOF)
            return err_set(e, ERR_IO, "writing DICOM JSON: %s",
                           strerror(errno));
        return 0;
    });
}

/* The element at a bulk data path, or NULL. */
static DcmElement *bulk_find(DcmItem *item, const char *p, int depth)
{
    unsigned g, el;
    int n = 0;
    if (depth > DICOM_MAX_DEPTH ||
        sscanf(p, "%4x%4x%n", &g, &el, &n) != 2 || n != 8)
        return NULL;
    DcmElement *found = NULL;
    if (item->findAndGetElement(DcmTagKey((Uint16)g, (Uint16)el), found,
                                OFFalse).bad() || !found)
        return NULL;
    if (!p[8])
        return found;
    if (p[8] != '.' || found->ident() != EVR_SQ)
        return NULL;
    char *end;
    unsigned long k = strtoul(p + 9, &end, 10);
    DcmSequenceOfItems *sq = OFstatic_cast(DcmSequenceOfItems *, found);
    if (end == p + 9 || *end != '.' || k < 1 || k > sq->card())
        return NULL;
    return bulk_find(sq->getItem(k - 1), end + 1, depth + 1);
}

extern "C" int dicom_bulk_get(const char *path, const char *bulk_path,
                              unsigned char **data, size_t *len,
                              struct err *e)
{
    *data = NULL;
    *len = 0;
    int rc = guarded(e, "reading", path, [&]() -> int {
        DcmFileFormat ff;
        int rc = load_file(path, ff, e);
        if (rc)
            return rc;
        DcmElement *el = bulk_find(ff.getDataset(), bulk_path, 0);
        if (!el || !is_bulk_vr(el->getVR()))
            return err_set(e, ERR_NOTFOUND, "no bulk data %.80s", bulk_path);
        if (el->ident() == EVR_PixelData &&
            DcmXfer(ff.getDataset()->getOriginalXfer()).isEncapsulated())
            return err_set(e, ERR_UNSUPPORTED, "compressed pixel data is "
                           "retrieved by frame");
        if (el->getLengthField() > PIXEL_BYTES_MAX)
            return err_set(e, ERR_TOOBIG, "bulk data too large");
        /* Binary values go out in little endian (PS3.18 8.7.3.3.2),
         * read straight from the file, whatever its byte order. */
        Uint32 n = el->getLengthField();
        *data = (unsigned char *)malloc(n ? n : 1);
        if (!*data)
            return err_set(e, ERR_TOOBIG, "out of memory for bulk data");
        if (n && el->getPartialValue(*data, 0, n, NULL,
                                     EBO_LittleEndian).bad()) {
            free(*data);
            *data = NULL;
            return err_set(e, ERR_INVALID, "cannot read bulk data %.80s",
                           bulk_path);
        }
        *len = n;
        return 0;
    });
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

/* The bytes of frame f (0-based) of an encapsulated pixel sequence: its
 * fragments, found by the Basic Offset Table, else one fragment per
 * frame, else (one frame) all of them. */
static int encapsulated_frame(DcmDataset *ds, DcmPixelData *pd, long f,
                              long nf, unsigned char **data, size_t *len,
                              struct err *e)
{
    E_TransferSyntax xfer = EXS_Unknown;
    const DcmRepresentationParameter *rp = NULL;
    DcmPixelSequence *seq = NULL;
    pd->getOriginalRepresentationKey(xfer, rp);
    if (pd->getEncapsulatedRepresentation(xfer, rp, seq).bad() || !seq ||
        seq->card() < 2)
        return err_set(e, ERR_INVALID, "no pixel fragments");
    unsigned long nfrag = seq->card() - 1, first = 0, last = 0;
    DcmPixelItem *bot = NULL;
    Uint8 *botv = NULL;
    Uint32 botlen = 0;
    if (seq->getItem(bot, 0).good() && bot)
        botlen = bot->getLength();
    if (botlen >= 4 * (Uint32)nf && bot->getUint8Array(botv).good() &&
        botv) {
        /* Fragment offsets, each counted from the first fragment's item
         * tag: 8 bytes of item header plus its value. */
        Uint32 want = rd32(botv + 4 * f, 0);
        Uint32 next = f + 1 < nf ? rd32(botv + 4 * (f + 1), 0) : 0xFFFFFFFF;
        Uint32 at = 0;
        int found = 0;
        for (unsigned long k = 1; k <= nfrag; k++) {
            DcmPixelItem *it = NULL;
            if (seq->getItem(it, k).bad() || !it)
                return err_set(e, ERR_INVALID, "fragment %lu unreadable", k);
            if (at == want) {
                first = k;
                found = 1;
            }
            if (found && at < next)
                last = k;
            at += 8 + it->getLength();
        }
        if (!found)
            return err_set(e, ERR_INVALID, "offset table names no fragment "
                           "for frame %ld", f + 1);
    } else if (nfrag == (unsigned long)nf) {
        first = last = (unsigned long)f + 1;
    } else if (nf == 1) {
        first = 1;
        last = nfrag;
    } else {
        return err_set(e, ERR_UNSUPPORTED, "%lu fragments for %ld frames and "
                       "no offset table", nfrag, nf);
    }
    (void)ds;
    size_t total = 0;
    for (unsigned long k = first; k <= last; k++) {
        DcmPixelItem *it = NULL;
        seq->getItem(it, k);
        total += it->getLength();
    }
    if (total > FRAME_BYTES_MAX)
        return err_set(e, ERR_TOOBIG, "frame of %zu bytes", total);
    *data = (unsigned char *)malloc(total ? total : 1);
    if (!*data)
        return err_set(e, ERR_TOOBIG, "out of memory for a frame");
    size_t o = 0;
    for (unsigned long k = first; k <= last; k++) {
        DcmPixelItem *it = NULL;
        Uint8 *v = NULL;
        seq->getItem(it, k);
        if (it->getUint8Array(v).bad() || (!v && it->getLength())) {
            free(*data);
            *data = NULL;
            return err_set(e, ERR_INVALID, "fragment %lu unreadable", k);
        }
        memcpy(*data + o, v, it->getLength());
        o += it->getLength();
    }
    *len = o;
    return 0;
}

/* Where frame `frame` of native little-endian pixel data lies in the
 * mapped file: *off and *fsize, found by the pre-scan alone, without
 * DCMTK building the whole data set (a viewer asks for every frame of a
 * study).  1 found, 0 not applicable here (DCMTK's turn), or an error. */
static int native_span(const mapping &m, int frame, int decode,
                       uint64_t *off, size_t *fsize_out, char ts[65],
                       struct err *e)
{
    struct scan_result r;
    struct fast_attrs fa;
    int rc = prescan(m.p, m.len, &r, &fa, e);
    if (rc)
        return rc;
    if (r.xfer != EXS_LittleEndianImplicit &&
        r.xfer != EXS_LittleEndianExplicit)
        return 0;
    const struct fast_el *px = &fa.el[FA_PIXELS];
    unsigned rows, cols, spp = 1, balloc;
    double nf = 1;
    if (!px->v || px->len == 0xFFFFFFFFu ||
        !fa_us(&fa.el[FA_ROWS], &rows) || !fa_us(&fa.el[FA_COLS], &cols) ||
        !fa_us(&fa.el[FA_BALLOC], &balloc) || balloc % 8 ||
        (fa.el[FA_SPP].seen && !fa_us(&fa.el[FA_SPP], &spp)) ||
        (fa.el[FA_FRAMES].seen &&
         fa_num(&fa.el[FA_FRAMES], "IS", &nf) != 1))
        return 0;
    if (nf < 1)
        nf = 1;
    size_t fsize = (size_t)rows * cols * (spp ? spp : 1) * (balloc / 8);
    if (!fsize || fsize > FRAME_BYTES_MAX)
        return 0;
    if (frame < 0 || frame >= nf)
        return err_set(e, ERR_NOTFOUND, "frame %d of %.0f", frame + 1, nf);
    if ((uint64_t)(frame + 1) * fsize > px->len)
        return err_set(e, ERR_INVALID, "pixel data ends before frame %d",
                       frame + 1);
    *off = (uint64_t)(px->v - m.p) + (uint64_t)frame * fsize;
    *fsize_out = fsize;
    /* Implicit and explicit VR little endian frames are the same bytes. */
    snprintf(ts, 65, "%s", decode ? DICOM_TS_EXPLICIT_LE :
             DcmXfer(r.xfer).getXferID());
    return 1;
}

/* Native little-endian pixel data: the frame's bytes copied straight
 * from the mapped file, as the render fast path reads them. */
static int native_frame(const char *path, int frame, int decode,
                        unsigned char **data, size_t *len, char ts[65],
                        struct err *e)
{
    mapping m;
    uint64_t off;
    size_t fsize;
    int rc = map_file(path, m, e);
    if (rc || (rc = native_span(m, frame, decode, &off, &fsize, ts, e)) != 1)
        return rc;
    *data = (unsigned char *)malloc(fsize);
    if (!*data)
        return err_set(e, ERR_TOOBIG, "out of memory for a frame");
    memcpy(*data, m.p + off, fsize);
    *len = fsize;
    return 1;
}

static int frame_get(const char *path, int frame, int decode,
                     unsigned char **data, size_t *len, char ts[65],
                     struct err *e)
{
    int rc = native_frame(path, frame, decode, data, len, ts, e);
    if (rc)
        return rc < 0 ? rc : 0;
    DcmFileFormat ff;
    if ((rc = load_file(path, ff, e)))
        return rc;
    DcmDataset *ds = ff.getDataset();
    DcmElement *el = NULL;
    if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el ||
        el->ident() != EVR_PixelData)
        return err_set(e, ERR_NOTFOUND, "no pixel data");
    DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
    E_TransferSyntax xfer = ds->getOriginalXfer();
    DcmXfer x(xfer);
    Sint32 nf = 1;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
        nf = 1;
    if (frame < 0 || frame >= nf)
        return err_set(e, ERR_NOTFOUND, "frame %d of %d", frame + 1,
                       (int)nf);
    if ((rc = check_size(ds, 0, e)))
        return rc;
    if (x.isEncapsulated() && !decode) {
        snprintf(ts, 65, "%s", x.getXferID());
        return encapsulated_frame(ds, pd, frame, nf, data, len, e);
    }
    if ((rc = check_decodable(xfer, e)))
        return rc;
    if (xfer == EXS_RLELossless && (rc = check_rle(ds, frame, e)))
        return rc;
    Uint32 fsize = 0;
    if (pd->getUncompressedFrameSize(ds, fsize).bad() || !fsize)
        return err_set(e, ERR_INVALID, "cannot size a frame");
    Uint16 rows = 0, cols = 0, spp = 1, bits = 0;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
    ds->findAndGetUint16(DCM_BitsAllocated, bits);
    /* The frame exactly, not the pad byte that makes an odd one even. */
    unsigned long long exact = ((unsigned long long)rows * cols *
                                (spp ? spp : 1) * bits + 7) / 8;
    *data = (unsigned char *)malloc(fsize);
    if (!*data)
        return err_set(e, ERR_TOOBIG, "out of memory for a frame");
    Uint32 start = 0;
    OFString cm;
    OFCondition c = pd->getUncompressedFrame(ds, (Uint32)frame, start, *data,
                                             fsize, cm, NULL);
    if (c.bad()) {
        free(*data);
        *data = NULL;
        return err_set(e, ERR_UNSUPPORTED, "cannot decode frame %d: %s",
                       frame + 1, c.text());
    }
    *len = exact && exact < fsize ? (size_t)exact : fsize;
    /* Native data comes out in the host's order: little endian here. */
    snprintf(ts, 65, "%s", decode || x.isEncapsulated() || x.isBigEndian() ?
             DICOM_TS_EXPLICIT_LE : x.getXferID());
    return 0;
}

extern "C" int dicom_frame_get(const char *path, int frame, int decode,
                               unsigned char **data, size_t *len,
                               char ts[65], struct err *e)
{
    *data = NULL;
    *len = 0;
    ts[0] = 0;
    int rc = guarded(e, "reading a frame of", path, [&]() -> int {
        return frame_get(path, frame, decode, data, len, ts, e);
    });
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

extern "C" int dicom_frame_span(const char *path, int frame, int decode,
                                uint64_t *offset, size_t *len, char ts[65],
                                struct err *e)
{
    *offset = 0;
    *len = 0;
    ts[0] = 0;
    return guarded(e, "locating a frame of", path, [&]() -> int {
        mapping m;
        int rc = map_file(path, m, e);
        return rc ? rc : native_span(m, frame, decode, offset, len, ts, e);
    });
}

/* ---- synthetic CT slices (the demo) ----------------------------------- */

/* Written from scratch with DCMTK, so the server binary can make its own
 * demo study with no Python at run time.  Only attributes a CT viewer and
 * Hashi's index need, all type 1/2 ones of the CT Image IOD filled. */

extern "C" void dicom_uid_from_text(const char *text, char out[65])
{
    char sha[65];
    sha256_hex(text, strlen(text), sha);
    sha[32] = 0;
    uid_from_hex(sha, out);
}

/* A DS value: 10 significant digits fit its 16 bytes. */
static OFString ds_text(double v)
{
    char b[32];
    snprintf(b, sizeof b, "%.10g", v == 0 ? 0.0 : v);
    return OFString(b);
}

static OFCondition put_ct_attrs(DcmDataset *ds, const struct dcm_ct_slice *s)
{
    struct {
        DcmTagKey tag;
        OFString v;
    } str[] = {
        {DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL"},
        {DCM_SOPClassUID, UID_CTImageStorage},
        {DCM_SOPInstanceUID, s->sop_uid},
        {DCM_StudyDate, s->study_date},
        {DCM_SeriesDate, s->study_date},
        {DCM_ContentDate, s->study_date},
        {DCM_StudyTime, s->study_time},
        {DCM_SeriesTime, s->study_time},
        {DCM_ContentTime, s->study_time},
        {DCM_AccessionNumber, s->accession},
        {DCM_Modality, "CT"},
        {DCM_Manufacturer, "HASHI DEMO (synthetic)"},
        {DCM_InstitutionName, s->institution},
        {DCM_ReferringPhysicianName, ""},
        {DCM_StudyDescription, s->study_description},
        {DCM_SeriesDescription, s->series_description},
        {DCM_PatientName, s->patient_name},
        {DCM_PatientID, s->patient_id},
        {DCM_PatientBirthDate, s->patient_birth_date},
        {DCM_PatientSex, s->patient_sex},
        {DCM_BodyPartExamined, "HEAD"},
        {DCM_SliceThickness, ds_text(s->slice_thickness)},
        {DCM_KVP, "120"},
        {DCM_PatientPosition, "HFS"},
        {DCM_StudyInstanceUID, s->study_uid},
        {DCM_SeriesInstanceUID, s->series_uid},
        {DCM_StudyID, "1"},
        {DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0"},
        {DCM_FrameOfReferenceUID, s->frame_of_ref_uid},
        {DCM_PositionReferenceIndicator, ""},
        {DCM_PhotometricInterpretation, "MONOCHROME2"},
        {DCM_BurnedInAnnotation, "NO"},
        {DCM_WindowCenter, "40\\500"},
        {DCM_WindowWidth, "80\\2000"},
        {DCM_WindowCenterWidthExplanation, "BRAIN\\BONE"},
        {DCM_RescaleIntercept, ds_text(s->rescale_intercept)},
        {DCM_RescaleSlope, ds_text(s->rescale_slope)},
        {DCM_RescaleType, "HU"},
    };
    OFCondition c = EC_Normal;
    for (size_t i = 0; c.good() && i < sizeof str / sizeof *str; i++)
        c = ds->putAndInsertOFStringArray(str[i].tag, str[i].v);
    char num[64];
    snprintf(num, sizeof num, "%d", s->series_number);
    if (c.good())
        c = ds->putAndInsertString(DCM_SeriesNumber, num);
    snprintf(num, sizeof num, "%d", s->instance_number);
    if (c.good())
        c = ds->putAndInsertString(DCM_InstanceNumber, num);
    if (c.good())
        c = ds->putAndInsertString(DCM_AcquisitionNumber, "1");
    OFString pos = ds_text(s->position[0]) + "\\" +
                   ds_text(s->position[1]) + "\\" + ds_text(s->position[2]);
    if (c.good())
        c = ds->putAndInsertOFStringArray(DCM_ImagePositionPatient, pos);
    if (c.good())
        c = ds->putAndInsertOFStringArray(DCM_SliceLocation,
                                          ds_text(s->position[2]));
    OFString sp = ds_text(s->pixel_spacing);
    if (c.good())
        c = ds->putAndInsertOFStringArray(DCM_PixelSpacing, sp + "\\" + sp);
    if (c.good())
        c = ds->putAndInsertOFStringArray(
            DCM_ReconstructionDiameter,
            ds_text(s->pixel_spacing * s->columns));
    struct {
        DcmTagKey tag;
        Uint16 v;
    } us[] = {
        {DCM_SamplesPerPixel, 1}, {DCM_Rows, (Uint16)s->rows},
        {DCM_Columns, (Uint16)s->columns}, {DCM_BitsAllocated, 16},
        {DCM_BitsStored, 16}, {DCM_HighBit, 15},
        {DCM_PixelRepresentation, 1},
    };
    for (size_t i = 0; c.good() && i < sizeof us / sizeof *us; i++)
        c = ds->putAndInsertUint16(us[i].tag, us[i].v);
    if (c.good())
        c = ds->putAndInsertUint16Array(
            DCM_PixelData, reinterpret_cast<const Uint16 *>(s->pixels),
            (unsigned long)s->rows * (unsigned long)s->columns);
    return c;
}

/* 0 when each of uids[0..n) is a dicom_uid_valid UID, else ERR_INVALID
 * "<what>: bad UID '...'" naming the first that is not. */
static int uids_check(const char *const *uids, size_t n, const char *what,
                      struct err *e)
{
    for (size_t i = 0; i < n; i++)
        if (!uids[i] || !dicom_uid_valid(uids[i]))
            return err_set(e, ERR_INVALID, "%s: bad UID '%s'", what,
                           uids[i] ? uids[i] : "");
    return 0;
}

extern "C" int dicom_write_ct_slice(const char *path,
                                    const struct dcm_ct_slice *s,
                                    struct err *e)
{
    if (!s->pixels || s->rows < 1 || s->rows > 65535 || s->columns < 1 ||
        s->columns > 65535)
        return err_set(e, ERR_INVALID, "CT slice: bad size %dx%d",
                       s->rows, s->columns);
    const char *uids[] = {s->study_uid, s->series_uid, s->sop_uid,
                          s->frame_of_ref_uid};
    if (int rc = uids_check(uids, sizeof uids / sizeof *uids, "CT slice",
                            e))
        return rc;
    return guarded(e, "writing", path, [&]() -> int {
        DcmFileFormat ff;
        OFCondition c = put_ct_attrs(ff.getDataset(), s);
        if (c.good())
            c = ff.saveFile(path, EXS_LittleEndianExplicit);
        if (c.bad())
            return err_set(e, ERR_IO, "write CT slice %s: %s", path,
                           c.text());
        return 0;
    });
}

/* ---- photos from a phone (VL Photographic Image, encapsulated JPEG) --- */

/* A crew's photo of a patient or an ECG strip becomes a DICOM image of
 * its case without being recompressed: the JPEG goes into the pixel data
 * as its one fragment, byte for byte, so what the hospital sees is what
 * the phone took.  Only the frame header is read (our own small marker
 * walk, no decoder), to fill the Image Pixel module. */

extern "C" int dicom_jpeg_info(const unsigned char *j, size_t len,
                               struct dcm_jpeg_info *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    if (len < 4 || j[0] != 0xff || j[1] != 0xd8 || j[2] != 0xff)
        return err_set(e, ERR_INVALID, "not a JPEG file");
    int adobe_transform = -1;
    size_t pos = 2;
    for (;;) {
        while (pos < len && j[pos] == 0xff)     /* fill bytes */
            pos++;
        if (pos >= len || j[pos - 1] != 0xff)
            return err_set(e, ERR_INVALID, "JPEG: no frame header before "
                           "byte %zu", pos);
        unsigned m = j[pos++];
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd8))
            continue;                           /* no length */
        if (m == 0xd9 || m == 0xda)
            return err_set(e, ERR_INVALID, "JPEG: no frame header");
        if (pos + 2 > len || be16(j + pos) < 2 || pos + be16(j + pos) > len)
            return err_set(e, ERR_INVALID, "JPEG: a marker segment runs "
                           "past the end");
        const unsigned char *seg = j + pos + 2;
        size_t n = be16(j + pos) - 2;
        pos += n + 2;
        if (m == 0xee && n >= 12 && !memcmp(seg, "Adobe", 5))
            adobe_transform = seg[11];
        if (m < 0xc0 || m > 0xcf || m == 0xc4 || m == 0xc8 || m == 0xcc)
            continue;
        if (m != 0xc0)
            return err_set(e, ERR_INVALID, "JPEG: not baseline (SOF%u: "
                           "progressive, extended, lossless or arithmetic "
                           "coding); send the camera's baseline JPEG",
                           m - 0xc0);
        if (n < 6 || seg[0] != 8 || n < 6 + 3u * seg[5])
            return err_set(e, ERR_INVALID, "JPEG: bad frame header");
        out->rows = (int)be16(seg + 1);
        out->columns = (int)be16(seg + 3);
        out->samples = seg[5];
        if (!out->rows || !out->columns)
            return err_set(e, ERR_INVALID, "JPEG: no image size in the "
                           "frame header");
        if (out->samples == 1) {
            strcpy(out->photometric, "MONOCHROME2");
        } else if (out->samples == 3) {
            const unsigned char *c = seg + 6;
            int rgb_ids = c[0] == 'R' && c[3] == 'G' && c[6] == 'B';
            /* PS3.5 8.2.1: YBR_FULL_422 when the chroma is subsampled
             * (every phone's JFIF/Exif), YBR_FULL when it is not */
            int subsampled = c[1] != c[4] || c[1] != c[7];
            strcpy(out->photometric, adobe_transform == 0 || rgb_ids
                                     ? "RGB"
                                     : subsampled ? "YBR_FULL_422"
                                                  : "YBR_FULL");
        } else {
            return err_set(e, ERR_INVALID, "JPEG: %d components (1 or 3 "
                           "expected)", out->samples);
        }
        return 0;
    }
}

static OFCondition put_photo_attrs(DcmDataset *ds, const struct dcm_photo *p,
                                   const struct dcm_jpeg_info *ji)
{
    char num[2][16];
    snprintf(num[0], sizeof num[0], "%d", p->series_number);
    snprintf(num[1], sizeof num[1], "%d", p->instance_number);
    OFString acq_dt = OFString(p->acq_date) + p->acq_time;
    struct {
        DcmTagKey tag;
        OFString v;
    } str[] = {
        {DCM_SpecificCharacterSet, "ISO_IR 192"},
        {DCM_ImageType, "ORIGINAL\\PRIMARY"},
        {DCM_SOPClassUID, UID_VLPhotographicImageStorage},
        {DCM_SOPInstanceUID, p->sop_uid},
        {DCM_StudyDate, p->study_date},
        {DCM_ContentDate, p->acq_date},
        {DCM_AcquisitionDateTime, acq_dt},
        {DCM_StudyTime, p->study_time},
        {DCM_ContentTime, p->acq_time},
        {DCM_AccessionNumber, ""},
        {DCM_Modality, "XC"},           /* external-camera photography */
        {DCM_Manufacturer, ""},
        {DCM_InstitutionName, p->institution},
        {DCM_ReferringPhysicianName, ""},
        {DCM_StudyDescription, p->study_description},
        {DCM_SeriesDescription, p->series_description},
        {DCM_PatientName, p->patient_name},
        {DCM_PatientID, p->patient_id},
        {DCM_PatientBirthDate, ""},
        {DCM_PatientSex, p->patient_sex},
        {DCM_PatientAge, p->patient_age},
        {DCM_StudyInstanceUID, p->study_uid},
        {DCM_SeriesInstanceUID, p->series_uid},
        {DCM_StudyID, ""},
        {DCM_SeriesNumber, num[0]},
        {DCM_InstanceNumber, num[1]},
        {DCM_Laterality, ""},           /* 2C: dciodvfy wants it */
        {DCM_PatientOrientation, ""},
        {DCM_PhotometricInterpretation, ji->photometric},
        {DCM_LossyImageCompression, "01"},
        {DCM_LossyImageCompressionMethod, "ISO_10918_1"},
        {DCM_BurnedInAnnotation, "NO"},
    };
    OFCondition c = EC_Normal;
    for (size_t i = 0; c.good() && i < sizeof str / sizeof *str; i++)
        if (!str[i].v.empty() || str[i].tag != DCM_PatientAge)
            c = ds->putAndInsertOFStringArray(str[i].tag, str[i].v);
    if (c.good())   /* type 2: present, empty (no context recorded) */
        c = ds->insertEmptyElement(DCM_AcquisitionContextSequence);
    struct {
        DcmTagKey tag;
        Uint16 v;
    } us[] = {
        {DCM_SamplesPerPixel, (Uint16)ji->samples},
        {DCM_Rows, (Uint16)ji->rows}, {DCM_Columns, (Uint16)ji->columns},
        {DCM_BitsAllocated, 8}, {DCM_BitsStored, 8}, {DCM_HighBit, 7},
        {DCM_PixelRepresentation, 0},
    };
    for (size_t i = 0; c.good() && i < sizeof us / sizeof *us; i++)
        c = ds->putAndInsertUint16(us[i].tag, us[i].v);
    if (c.good() && ji->samples == 3)
        c = ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
    if (c.bad())
        return c;

    /* The encapsulated pixel data: an empty offset table, one fragment. */
    DcmPixelSequence *seq = new DcmPixelSequence(DCM_PixelSequenceTag);
    DcmPixelItem *table = new DcmPixelItem(DCM_PixelItemTag);
    DcmPixelItem *frag = new DcmPixelItem(DCM_PixelItemTag);
    seq->insert(table);
    seq->insert(frag);
    c = frag->putUint8Array(p->jpeg, (unsigned long)p->jpeg_len);
    DcmPixelData *pd = new DcmPixelData(DCM_PixelData);
    pd->putOriginalRepresentation(EXS_JPEGProcess1, NULL, seq);
    if (c.good())
        c = ds->insert(pd, OFTrue);
    else
        delete pd;
    return c;
}

extern "C" int dicom_write_photo(const char *path, const struct dcm_photo *p,
                                 struct dcm_jpeg_info *info, struct err *e)
{
    struct dcm_jpeg_info ji;
    int rc = dicom_jpeg_info(p->jpeg, p->jpeg_len, &ji, e);
    if (rc)
        return rc;
    if (info)
        *info = ji;
    if (p->jpeg_len > 0xfffffffeu)
        return err_set(e, ERR_TOOBIG, "photo: %zu bytes", p->jpeg_len);
    const char *uids[] = {p->study_uid, p->series_uid, p->sop_uid};
    if ((rc = uids_check(uids, sizeof uids / sizeof *uids, "photo", e)))
        return rc;
    return guarded(e, "writing", path, [&]() -> int {
        DcmFileFormat ff;
        OFCondition c = put_photo_attrs(ff.getDataset(), p, &ji);
        if (c.good())
            c = ff.saveFile(path, EXS_JPEGProcess1);
        if (c.bad())
            return err_set(e, ERR_IO, "write photo %s: %s", path, c.text());
        return 0;
    });
}
