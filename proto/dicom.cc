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
#include "dcmtk/dcmnet/scp.h"
#include "dcmtk/oflog/oflog.h"

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <mutex>
#include <new>

#include <arpa/inet.h>
#include <dirent.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

#include "util.h"
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

static int fail(struct err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

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

struct scanner {
    const uint8_t *p;    /* the dataset bytes (file, or inflated copy) */
    size_t len;
    size_t base;         /* offset of p in the file, for messages */
    char msg[200];
};

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
        return fail(e, ERR_UNSUPPORTED, "deflated dataset: no zlib support");
    size_t cap = len < DEFLATE_MAX / 4 ? len * 4 + 4096 : DEFLATE_MAX, n = 0;
    uint8_t *buf = (uint8_t *)malloc(cap);
    if (!buf)
        return fail(e, ERR_INTERNAL, "out of memory");
    for (;;) {
        if (n == cap) {
            if (cap >= DEFLATE_MAX) {
                free(buf);
                return fail(e, ERR_INVALID, "deflated dataset inflates to "
                            "more than %u MiB", DEFLATE_MAX >> 20);
            }
            size_t nc = cap * 2 > DEFLATE_MAX ? DEFLATE_MAX : cap * 2;
            uint8_t *nb = (uint8_t *)realloc(buf, nc);
            if (!nb) {
                free(buf);
                return fail(e, ERR_INTERNAL, "out of memory");
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
        return fail(e, ERR_INVALID, "deflated dataset: %s",
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

/* The whole pre-scan.  r receives the transfer syntax DCMTK must use. */
static int prescan(const uint8_t *p, size_t len, struct scan_result *r,
                   struct err *e)
{
    memset(r, 0, sizeof *r);
    if (len == 0)
        return fail(e, ERR_INVALID, "empty file");
    size_t off = 0;
    if (len >= 132 && memcmp(p + 128, "DICM", 4) == 0)
        off = 132;
    else if (len >= 128 && len < 132 && memcmp(p, "\0\0\0\0", 4) == 0)
        return fail(e, ERR_INVALID, "truncated: file ends in the preamble");

    /* File meta information: explicit VR little endian, group 0002. */
    size_t meta_after_gl = 0;
    long long group_len = -1;
    int have_meta = 0;
    while (len - off >= 8 && rd16(p + off, 0) == 0x0002) {
        const uint8_t *h = p + off;
        uint16_t el = rd16(h + 2, 0);
        if (!is_upper(h[4]) || !is_upper(h[5]))
            return fail(e, ERR_INVALID, "file meta information is not "
                        "explicit VR (offset %zu)", off);
        size_t hdr = 8;
        uint32_t vlen;
        if (vr_long(h + 4)) {
            if (len - off < 12)
                return fail(e, ERR_INVALID, "truncated file meta "
                            "information");
            vlen = rd32(h + 8, 0);
            hdr = 12;
        } else {
            vlen = rd16(h + 6, 0);
        }
        if (vlen > len - off - hdr)
            return fail(e, ERR_INVALID, "file meta element (0002,%04X) "
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
                return fail(e, ERR_INVALID, "transfer syntax UID longer "
                            "than 64 characters");
            memcpy(r->ts, v, n);
            r->ts[n] = 0;
        }
        off += hdr + vlen;
        have_meta = 1;
    }
    if (off == 132 && !have_meta && len == 132)
        return fail(e, ERR_INVALID, "no data after the DICM marker");
    /* DCMTK trusts the group length; the scan must agree with it. */
    if (group_len >= 0 && (size_t)group_len != off - meta_after_gl)
        return fail(e, ERR_INVALID, "file meta group length %lld does not "
                    "match its elements (%zu bytes)", group_len,
                    off - meta_after_gl);

    E_TransferSyntax xfer = EXS_Unknown;
    if (r->ts[0]) {
        if (!dicom_uid_valid(r->ts)) {
            char s[80];
            shown(s, sizeof s, r->ts);
            return fail(e, ERR_INVALID, "malformed transfer syntax UID "
                        "\"%s\"", s);
        }
        xfer = DcmXfer(r->ts).getXfer();
        if (xfer == EXS_Unknown) {
            char s[80];
            shown(s, sizeof s, r->ts);
            return fail(e, ERR_UNSUPPORTED, "unknown transfer syntax %s", s);
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
        return fail(e, ERR_INVALID, "no DICOM data");
    }
    DcmXfer x(xfer);
    int be = x.isBigEndian();
    int implicit = x.isImplicitVR();
    size_t pos = 0;
    int rc = scan_elements(&sc, &pos, sc.len, 0, implicit, be, 0, 1);
    free(inflated);
    if (rc != SC_OK)
        return fail(e, ERR_INVALID, "%s%s",
                    xfer == EXS_DeflatedLittleEndianExplicit ?
                    "inflated dataset: " : "", sc.msg);
    r->xfer = xfer;
    return 0;
}

/* Map the file and pre-scan it. */
static int prescan_file(const char *path, struct scan_result *r,
                        struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO,
                    "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(e, ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return fail(e, ERR_INVALID, "empty file");
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return fail(e, ERR_IO, "mmap %s: %s", path, strerror(errno));
    int rc = prescan((const uint8_t *)m, (size_t)st.st_size, r, e);
    munmap(m, (size_t)st.st_size);
    return rc;
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
        return fail(e, ERR_INVALID, "DICOM parse: %s", c.text());
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
            return fail(e, ERR_INVALID, "missing %s", required_uids[i].name);
        if (!dicom_uid_valid(v.c_str())) {
            char s[80];
            shown(s, sizeof s, v.c_str());
            return fail(e, ERR_INVALID, "malformed %s \"%s\"",
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

extern "C" int dicom_init(struct err *e)
{
    try {
        if (g_inited)
            return 0;
        OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
        if (!dcmDataDict.isDictionaryLoaded())
            return fail(e, ERR_INTERNAL, "DICOM data dictionary not loaded "
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
        return fail(e, ERR_INTERNAL, "dicom_init: exception");
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
        g_inited = 0;
    } catch (...) {
    }
}

/* ---- parse ------------------------------------------------------------ */

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
    try {
        struct scan_result r;
        int rc = prescan_file(path, &r, e);
        if (rc)
            return rc;
        DcmFileFormat ff;
        OFCondition c = ff.loadFile(path, r.xfer, EGL_noChange,
                                    LAZY_READ_LEN, ERM_autoDetect);
        if (c.bad())
            return fail(e, ERR_INVALID, "DICOM parse: %s", c.text());
        return fill_info(ff, r.ts, out, e);
    } catch (const std::bad_alloc &) {
        return fail(e, ERR_TOOBIG, "out of memory parsing %s", path);
    } catch (...) {
        return fail(e, ERR_INTERNAL, "exception parsing %s", path);
    }
}

extern "C" int dicom_parse_mem(const void *buf, size_t len,
                               struct dcm_info *out, struct err *e)
{
    try {
        struct scan_result r;
        int rc = prescan((const uint8_t *)buf, len, &r, e);
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
            return fail(e, ERR_INVALID, "DICOM parse: %s", c.text());
        return fill_info(ff, r.ts, out, e);
    } catch (const std::bad_alloc &) {
        return fail(e, ERR_TOOBIG, "out of memory parsing a buffer");
    } catch (...) {
        return fail(e, ERR_INTERNAL, "exception parsing a buffer");
    }
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

struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    unsigned char *out;        /* libjpeg's output buffer, kept current */
    unsigned long len;
};

static void jpeg_fail_exit(j_common_ptr c)
{
    longjmp(((struct jpeg_fail *)c->err)->jb, 1);
}

/* 8-bit grey (comps 1) or interleaved RGB (comps 3) to a JPEG in a
 * malloc'd buffer.  Plain C inside: libjpeg reports errors by longjmp,
 * and the buffer's address lives in jf, which libjpeg updates. */
static int encode_jpeg(const unsigned char *pix, unsigned w, unsigned h,
                       int comps, int quality, unsigned char **out,
                       size_t *outlen)
{
    struct jpeg_compress_struct c;
    struct jpeg_fail jf;
    memset(&c, 0, sizeof c);
    memset(&jf, 0, sizeof jf);
    c.err = jpeg_std_error(&jf.mgr);
    jf.mgr.error_exit = jpeg_fail_exit;
    if (setjmp(jf.jb)) {
        jpeg_destroy_compress(&c);
        free(jf.out);
        return -1;
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &jf.out, &jf.len);
    c.image_width = w;
    c.image_height = h;
    c.input_components = comps;
    c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    for (int i = 0; i < c.num_components; i++)   /* no chroma subsampling */
        c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    jpeg_start_compress(&c, TRUE);
    size_t stride = (size_t)w * (size_t)comps;
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + stride * c.next_scanline);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *out = jf.out;
    *outlen = jf.len;
    return 0;
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
        return fail(e, ERR_TOOBIG, "a %ux%u frame of %u samples and %u bits "
                    "is too large", cols, rows, spp, bits);
    if (all_frames && frame * (unsigned long long)nf > PIXEL_BYTES_MAX)
        return fail(e, ERR_TOOBIG, "%d frames of %llu bytes are too large",
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
        return fail(e, ERR_INVALID, "no pixel data");
    DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
    E_TransferSyntax xfer = EXS_Unknown;
    const DcmRepresentationParameter *rp = NULL;
    DcmPixelSequence *seq = NULL;
    pd->getOriginalRepresentationKey(xfer, rp);
    if (pd->getEncapsulatedRepresentation(xfer, rp, seq).bad() || !seq)
        return fail(e, ERR_INVALID, "RLE: no pixel sequence");
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
        return fail(e, ERR_INVALID, "RLE: %lu segments of %zu bytes",
                    nseg, plane);
    if (seq->card() != (unsigned long)nf + 1)
        return fail(e, ERR_INVALID, "RLE: %lu fragments for %d frames",
                    seq->card() - 1, (int)nf);
    long first = frame < 0 ? 0 : frame, last = frame < 0 ? nf - 1 : frame;
    for (long f = first; f <= last; f++) {
        DcmPixelItem *it = NULL;
        Uint8 *frag = NULL;
        if (seq->getItem(it, (unsigned long)f + 1).bad() || !it ||
            it->getUint8Array(frag).bad())
            return fail(e, ERR_INVALID, "RLE: frame %ld unreadable", f);
        size_t len = it->getLength();
        if (len < 64 || !frag)
            return fail(e, ERR_INVALID, "RLE: frame %ld too short", f);
        Uint32 off[16];
        for (int i = 0; i < 16; i++)
            off[i] = rd32(frag + 4 * i, 0);
        if (off[0] != nseg)
            return fail(e, ERR_INVALID, "RLE: frame %ld has %u segments, "
                        "expected %lu", f, off[0], nseg);
        for (unsigned long s = 1; s <= nseg; s++) {
            size_t end = s < nseg ? off[s + 1] : len;
            if (off[s] < 64 || off[s] > end || end > len ||
                !rle_segment_ok(frag + off[s], end - off[s], plane))
                return fail(e, ERR_INVALID, "RLE: frame %ld segment %lu is "
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
        return fail(e, ERR_UNSUPPORTED, "no decoder for %s (%s)",
                    x.getXferName(), x.getXferID());
    return 0;
}

extern "C" int dicom_render_jpeg(const char *path,
                                 const struct dcm_render_opts *opt,
                                 unsigned char **jpeg, size_t *len, int *w,
                                 int *h, struct err *e)
{
    DicomImage *img = NULL, *scaled = NULL;
    unsigned char *buf = NULL;
    try {
        *jpeg = NULL;
        *len = 0;
        struct dcm_render_opts o = {};
        if (opt)
            o = *opt;
        if (o.frame < 0)
            return fail(e, ERR_NOTFOUND, "frame %d out of range", o.frame);
        if (o.window_mode == DCM_WINDOW_EXPLICIT && !(o.width >= 1.0))
            return fail(e, ERR_INVALID, "window width must be at least 1");
        if (o.max_width < 0 || o.max_height < 0 || o.quality < 0 ||
            o.quality > 100)
            return fail(e, ERR_INVALID, "bad render size or quality");

        DcmFileFormat ff;
        int rc = load_file(path, ff, e);
        if (rc)
            return rc;
        DcmDataset *ds = ff.getDataset();
        if (!ds->tagExists(DCM_PixelData))
            return fail(e, ERR_INVALID, "no pixel data");
        E_TransferSyntax xfer = ds->getOriginalXfer();
        if ((rc = check_decodable(xfer, e)) || (rc = check_size(ds, 0, e)))
            return rc;
        Sint32 nf = 1;
        if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
            nf = 1;
        if (o.frame >= nf)
            return fail(e, ERR_NOTFOUND, "frame %d out of range (%d frames)",
                        o.frame, (int)nf);
        if (xfer == EXS_RLELossless && (rc = check_rle(ds, o.frame, e)))
            return rc;

        img = new DicomImage(&ff, xfer, CIF_UsePartialAccessToPixelData,
                             (unsigned long)o.frame, 1);
        if (img->getStatus() != EIS_Normal) {
            int code = img->getStatus() == EIS_NotSupportedValue ?
                       ERR_UNSUPPORTED : ERR_INVALID;
            rc = fail(e, code, "cannot decode image: %s",
                      DicomImage::getString(img->getStatus()));
            delete img;
            return rc;
        }
        if (img->isMonochrome()) {
            int ok;
            if (o.window_mode == DCM_WINDOW_EXPLICIT)
                ok = img->setWindow(o.center, o.width);
            else if (o.window_mode == DCM_WINDOW_DEFAULT &&
                     img->getWindowCount() > 0)
                ok = img->setWindow(0);
            else
                ok = img->setMinMaxWindow(0);
            (void)ok;   /* a flat image keeps DCMTK's default mapping */
        }
        DicomImage *out = img;
        unsigned long iw = img->getWidth(), ih = img->getHeight();
        double s = 1.0;
        if (o.max_width > 0 && iw > (unsigned long)o.max_width)
            s = (double)o.max_width / (double)iw;
        if (o.max_height > 0 && ih > (unsigned long)o.max_height &&
            (double)o.max_height / (double)ih < s)
            s = (double)o.max_height / (double)ih;
        if (s < 1.0) {
            unsigned long sw = (unsigned long)(iw * s + 0.5);
            unsigned long sh = (unsigned long)(ih * s + 0.5);
            if (sw < 1)
                sw = 1;
            if (sh < 1)
                sh = 1;
            if (o.max_width > 0 && sw > (unsigned long)o.max_width)
                sw = (unsigned long)o.max_width;
            if (o.max_height > 0 && sh > (unsigned long)o.max_height)
                sh = (unsigned long)o.max_height;
            scaled = img->createScaledImage(sw, sh, 1, 0);
            if (!scaled || scaled->getStatus() != EIS_Normal) {
                delete scaled;
                delete img;
                return fail(e, ERR_INTERNAL, "cannot scale the image");
            }
            out = scaled;
        }

        int comps = out->isMonochrome() ? 1 : 3;
        unsigned ow = (unsigned)out->getWidth();
        unsigned oh = (unsigned)out->getHeight();
        const unsigned char *pix =
            (const unsigned char *)out->getOutputData(8, 0, 0);
        size_t sz = 0;
        int bad = !pix || encode_jpeg(pix, ow, oh, comps,
                                      o.quality ? o.quality : 90,
                                      &buf, &sz) != 0;
        delete scaled;
        delete img;
        scaled = img = NULL;
        if (bad)
            return fail(e, ERR_INTERNAL, "JPEG encoding failed");
        *jpeg = buf;
        *len = sz;
        if (w)
            *w = (int)ow;
        if (h)
            *h = (int)oh;
        return 0;
    } catch (const std::bad_alloc &) {
        delete scaled;
        delete img;
        return fail(e, ERR_TOOBIG, "out of memory rendering %s", path);
    } catch (...) {
        delete scaled;
        delete img;
        return fail(e, ERR_INTERNAL, "exception rendering %s", path);
    }
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
        return fail(e, ERR_UNSUPPORTED, "no pixel data to transcode");
    E_TransferSyntax from = ds->getOriginalXfer();
    if ((rc = check_decodable(from, e)) || (rc = check_size(ds, 1, e)))
        return rc;
    if (from == EXS_RLELossless && (rc = check_rle(ds, -1, e)))
        return rc;
    OFCondition c = ff.loadAllDataIntoMemory();
    if (c.bad())
        return fail(e, ERR_INVALID, "DICOM parse: %s", c.text());
    if (to == EXS_JPEGLSLossless) {
        Uint16 bits = 0;
        ds->findAndGetUint16(DCM_BitsAllocated, bits);
        if (bits > 16)
            return fail(e, ERR_UNSUPPORTED, "JPEG-LS cannot hold %u-bit "
                        "pixels", bits);
        DJLSRepresentationParameter rp(0, OFTrue);
        c = ds->chooseRepresentation(to, &rp);
    } else {
        c = ds->chooseRepresentation(to, NULL);
    }
    if (c.bad())
        return fail(e, ERR_UNSUPPORTED, "cannot transcode to %s: %s",
                    DcmXfer(to).getXferName(), c.text());
    if (!ds->canWriteXfer(to))
        return fail(e, ERR_UNSUPPORTED, "cannot write %s for this object",
                    DcmXfer(to).getXferName());
    c = ff.saveFile(out_path, to);
    if (c.bad()) {
        unlink(out_path);
        return fail(e, ERR_IO, "write %s: %s", out_path, c.text());
    }
    return 0;
}

extern "C" int dicom_transcode_jpegls(const char *in_path,
                                      const char *out_path, struct err *e)
{
    try {
        return transcode(in_path, out_path, EXS_JPEGLSLossless, e);
    } catch (const std::bad_alloc &) {
        return fail(e, ERR_TOOBIG, "out of memory transcoding %s", in_path);
    } catch (...) {
        return fail(e, ERR_INTERNAL, "exception transcoding %s", in_path);
    }
}

extern "C" int dicom_transcode_explicit_le(const char *in_path,
                                           const char *out_path,
                                           struct err *e)
{
    try {
        return transcode(in_path, out_path, EXS_LittleEndianExplicit, e);
    } catch (const std::bad_alloc &) {
        return fail(e, ERR_TOOBIG, "out of memory transcoding %s", in_path);
    } catch (...) {
        return fail(e, ERR_INTERNAL, "exception transcoding %s", in_path);
    }
}

extern "C" int dicom_pixel_sha256(const char *path, char out[65],
                                  struct err *e)
{
    try {
        DcmFileFormat ff;
        int rc = load_file(path, ff, e);
        if (rc)
            return rc;
        DcmDataset *ds = ff.getDataset();
        if (!ds->tagExists(DCM_PixelData))
            return fail(e, ERR_INVALID, "no pixel data");
        E_TransferSyntax xfer = ds->getOriginalXfer();
        if ((rc = check_decodable(xfer, e)) || (rc = check_size(ds, 1, e)))
            return rc;
        if (xfer == EXS_RLELossless && (rc = check_rle(ds, -1, e)))
            return rc;
        if (ff.loadAllDataIntoMemory().bad())
            return fail(e, ERR_INVALID, "cannot load pixel data");
        if (DcmXfer(xfer).isEncapsulated()) {
            OFCondition c = ds->chooseRepresentation(EXS_LittleEndianExplicit,
                                                     NULL);
            if (c.bad())
                return fail(e, ERR_UNSUPPORTED, "cannot decode pixels: %s",
                            c.text());
        }
        DcmElement *px = NULL;
        if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px)
            return fail(e, ERR_INVALID, "no pixel data");
        const void *data = NULL;
        size_t n = px->getLength();
        if (px->getVR() == EVR_OW) {
            Uint16 *w16 = NULL;
            if (px->getUint16Array(w16).bad())
                return fail(e, ERR_INVALID, "cannot read pixel data");
            data = w16;   /* host order; Hashi runs on little-endian hosts */
        } else {
            Uint8 *b = NULL;
            if (px->getUint8Array(b).bad())
                return fail(e, ERR_INVALID, "cannot read pixel data");
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
            return fail(e, ERR_INVALID, "cannot read pixel data");
        sha256_hex(data ? data : "", n, out);
        return 0;
    } catch (const std::bad_alloc &) {
        return fail(e, ERR_TOOBIG, "out of memory hashing %s", path);
    } catch (...) {
        return fail(e, ERR_INTERNAL, "exception hashing %s", path);
    }
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

static int sock_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/* DcmSCP does not expose the accepted socket.  Find it: the connected
 * socket of this process whose local port is our listening port (there is
 * one association at a time).  Returns a duplicate of it (the caller
 * closes that), checked after duplicating, so a descriptor number reused
 * meanwhile cannot be mistaken for it; -1 if none. */
static int find_conn_fd(int port)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd == dirfd(d))
            continue;
        int dup = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0)
            continue;
        struct stat st;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (fstat(dup, &st) == 0 && S_ISSOCK(st.st_mode) &&
            getsockname(dup, (struct sockaddr *)&ss, &sl) == 0 &&
            sock_port(&ss) == port) {
            sl = sizeof ss;
            if (getpeername(dup, (struct sockaddr *)&ss, &sl) == 0)
                found = dup;          /* not the listening socket */
        }
        if (found != dup)
            close(dup);
    }
    closedir(d);
    return found;
}

class HashiSCP : public DcmSCP {
public:
    std::atomic<int> stopping{0};
    std::mutex fd_mu;
    int conn_fd = -1;
    int port = 0;
    OFString tmp_dir;
    dicom_accept_fn accept_fn = NULL;
    dicom_store_fn store_fn = NULL;
    void *arg = NULL;
    int loopback_only = 0;

    /* shutdown() the current connection's socket, if any: also one that
     * was accepted but has not yet sent its association request (the
     * listener thread is then stuck for up to the ACSE timeout). */
    void cut()
    {
        std::lock_guard<std::mutex> lk(fd_mu);
        if (conn_fd >= 0) {
            shutdown(conn_fd, SHUT_RDWR);
            return;
        }
        int fd = find_conn_fd(port);
        if (fd >= 0) {
            shutdown(fd, SHUT_RDWR);
            close(fd);
        }
    }

protected:
    OFBool stopAfterConnectionTimeout() override
    {
        return stopping.load() ? OFTrue : OFFalse;
    }

    OFBool stopAfterCurrentAssociation() override
    {
        return stopping.load() ? OFTrue : OFFalse;
    }

    /* Called once the association request has been read: remember (a
     * duplicate of) its socket for cut(), and turn Nagle off on it. */
    void notifyAssociationRequest(const T_ASC_Parameters &,
                                  DcmSCPActionType &action) override
    {
        int fd = find_conn_fd(port);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        {
            std::lock_guard<std::mutex> lk(fd_mu);
            if (conn_fd >= 0)
                close(conn_fd);
            conn_fd = fd;
        }
        if (stopping.load())
            action = DCMSCP_ACTION_REFUSE_ASSOCIATION;
    }

    /* Before DCMTK closes the socket: drop our duplicate, or the
     * connection would outlive the association. */
    void notifyAssociationTermination() override
    {
        std::lock_guard<std::mutex> lk(fd_mu);
        if (conn_fd >= 0)
            close(conn_fd);
        conn_fd = -1;
    }

    OFBool checkCallingHostAccepted(const OFString &) override
    {
        if (!loopback_only)
            return OFTrue;
        return is_loopback(getPeerIP().c_str()) ? OFTrue : OFFalse;
    }

    OFBool checkCallingAETitleAccepted(const OFString &ae) override
    {
        if (!accept_fn)
            return OFTrue;
        try {
            return accept_fn(arg, ae.c_str(), getPeerIP().c_str()) ?
                   OFTrue : OFFalse;
        } catch (...) {
            return OFFalse;
        }
    }

    OFCondition handleIncomingCommand(T_DIMSE_Message *msg,
                                      const DcmPresentationContextInfo &pc)
        override
    {
        if (stopping.load())
            return makeOFCondition(OFM_dcmnet, 0xff0, OF_error,
                                   "listener stopping");
        if (msg->CommandField != DIMSE_C_STORE_RQ)
            return DcmSCP::handleIncomingCommand(msg, pc);
        return handle_store(msg->msg.CStoreRQ, pc.presentationContextID);
    }

private:
    OFCondition handle_store(T_DIMSE_C_StoreRQ &rq,
                             T_ASC_PresentationContextID pres)
    {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/scp-XXXXXX",
                         tmp_dir.c_str());
        int fd = (n > 0 && (size_t)n < sizeof path) ? mkstemp(path) : -1;
        if (fd < 0)
            return sendSTOREResponse(pres, rq.MessageID,
                                     rq.AffectedSOPClassUID,
                                     rq.AffectedSOPInstanceUID,
                                     DICOM_STATUS_OUT_OF_RESOURCES, NULL);
        close(fd);
        OFCondition c = receiveSTORERequest(rq, pres, OFString(path));
        if (c.bad()) {
            unlink(path);
            return c;
        }
        char comment[64] = "";
        unsigned status;
        try {
            status = store_fn(arg, path, getPeerAETitle().c_str(),
                              getPeerIP().c_str(), comment);
        } catch (...) {
            unlink(path);
            status = DICOM_STATUS_OUT_OF_RESOURCES;
        }
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
};

struct dicom_scp {
    HashiSCP *scp;
    pthread_t thread;
};

static void *scp_thread(void *p)
{
    HashiSCP *scp = (HashiSCP *)p;
    try {
        scp->acceptAssociations();
    } catch (...) {
    }
    return NULL;
}

extern "C" struct dicom_scp *dicom_scp_start(const struct dicom_scp_cfg *cfg,
                                             struct err *e)
{
    HashiSCP *scp = NULL;
    try {
        if (!cfg || !cfg->store || !cfg->tmp_dir || !cfg->ae_title ||
            cfg->port <= 0 || cfg->port > 65535) {
            fail(e, ERR_INVALID, "dicom_scp_start: bad configuration");
            return NULL;
        }
        scp = new HashiSCP();
        scp->port = cfg->port;
        scp->tmp_dir = cfg->tmp_dir;
        scp->accept_fn = cfg->accept;
        scp->store_fn = cfg->store;
        scp->arg = cfg->arg;
        scp->loopback_only = cfg->loopback_only;
        scp->setPort((Uint16)cfg->port);
        scp->setAETitle(cfg->ae_title);
        scp->setMaxReceivePDULength(ASC_MAXIMUMPDUSIZE);
        scp->setConnectionBlockingMode(DUL_NOBLOCK);
        scp->setConnectionTimeout(1);
        scp->setDIMSEBlockingMode(DIMSE_NONBLOCKING);
        scp->setDIMSETimeout(cfg->dimse_timeout > 0 ?
                             (Uint32)cfg->dimse_timeout : 30);
        /* a peer that connects and stays silent holds the (single)
         * listener this long */
        scp->setACSETimeout(10);

        OFList<OFString> xfers;
        for (size_t i = 0; i < sizeof store_xfers / sizeof *store_xfers; i++)
            xfers.push_back(store_xfers[i]);
        OFCondition c = scp->setEnableVerification();
        for (int i = 0; c.good() && i < numberOfDcmLongSCUStorageSOPClassUIDs;
             i++)
            c = scp->addPresentationContext(dcmLongSCUStorageSOPClassUIDs[i],
                                            xfers);
        if (c.bad()) {
            fail(e, ERR_INTERNAL, "presentation contexts: %s", c.text());
            delete scp;
            return NULL;
        }
        c = scp->openListenPort();
        if (c.bad()) {
            fail(e, ERR_IO, "cannot listen on port %d: %s", cfg->port,
                 c.text());
            delete scp;
            return NULL;
        }
        struct dicom_scp *h = (struct dicom_scp *)calloc(1, sizeof *h);
        if (!h) {
            fail(e, ERR_INTERNAL, "out of memory");
            delete scp;
            return NULL;
        }
        h->scp = scp;
        /* the thread inherits a mask without the process signals */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        int rc = pthread_create(&h->thread, NULL, scp_thread, scp);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            fail(e, ERR_INTERNAL, "pthread_create: %s", strerror(rc));
            delete scp;
            free(h);
            return NULL;
        }
        return h;
    } catch (...) {
        delete scp;
        fail(e, ERR_INTERNAL, "exception starting the DICOM listener");
        return NULL;
    }
}

extern "C" void dicom_scp_stop(struct dicom_scp *h)
{
    if (!h)
        return;
    try {
        h->scp->stopping.store(1);
        h->scp->cut();
        pthread_join(h->thread, NULL);
        delete h->scp;
    } catch (...) {
    }
    free(h);
}
