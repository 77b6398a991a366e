/*
 * multipart — see multipart.h.
 *
 * The body is a preamble, then parts separated by the delimiter
 * CRLF "--" boundary, the last one followed by "--" (then an epilogue).
 * The first delimiter may open the body without a CRLF before it, so the
 * parser starts as if a CRLF had just been seen.
 *
 * Finding the delimiter needs no general string search: it starts with CR
 * and the boundary alphabet has no CR, so after a mismatch no suffix of
 * the bytes held back can begin another match; they are data, and the
 * scan starts afresh at the current byte.  Between matches memchr skips
 * to the next CR.
 */
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum state {
    ST_PREAMBLE,    /* before the first delimiter: discarded */
    ST_AFTER,       /* just after a delimiter: "--", padding or CRLF */
    ST_AFTER_DASH,  /* saw one '-' after the delimiter */
    ST_PAD,         /* transport padding before the CRLF */
    ST_PAD_CR,      /* saw the CR of the delimiter line */
    ST_HEADERS,     /* a part's header block */
    ST_DATA,        /* a part's content */
    ST_EPILOGUE,    /* after the close delimiter: discarded */
    ST_FAILED,
};

struct multipart {
    struct multipart_cb cb;
    void *arg;
    enum state st;
    int failed_code;
    char failed_msg[256];
    unsigned char delim[4 + MULTIPART_MAX_BOUNDARY];  /* CRLF "--" b */
    size_t dlen;
    size_t matched;        /* delimiter bytes matched so far */
    int parts;             /* parts begun */
    size_t hlen;
    char hbuf[MULTIPART_MAX_HEADER + 1];
};

static int boundary_char(int c)
{
    return isalnum(c) || (c && strchr("'()+_,-./:=? ", c));
}

static int boundary_valid(const char *b)
{
    size_t n = strlen(b);

    if (n < 1 || n > MULTIPART_MAX_BOUNDARY || b[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!boundary_char((unsigned char)b[i]))
            return 0;
    return 1;
}

/* ---- Content-Type ------------------------------------------------------ */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static int token_char(int c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* A token or quoted-string value at *pp into out (n bytes). */
static int ctype_value(const char **pp, char *out, size_t n, struct err *e)
{
    const char *p = *pp;
    size_t k = 0;

    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            if (k + 1 >= n)
                return err_set(e, ERR_INVALID,
                               "Content-Type parameter value too long");
            out[k++] = *p++;
        }
        if (*p != '"')
            return err_set(e, ERR_INVALID,
                           "unterminated quoted string in Content-Type");
        p++;
    } else {
        /* Tolerate boundary characters outside the token set (':', '/',
         * '?', '=') that some clients send unquoted. */
        while (*p && *p != ';' && *p != ' ' && *p != '\t') {
            if (k + 1 >= n)
                return err_set(e, ERR_INVALID,
                               "Content-Type parameter value too long");
            out[k++] = *p++;
        }
    }
    out[k] = '\0';
    *pp = p;
    return 0;
}

int multipart_parse_ctype(const char *value, struct multipart_ctype *out,
                          struct err *e)
{
    const char *p;
    size_t k = 0;
    char name[64];
    char val[256];

    memset(out, 0, sizeof(*out));
    if (!value)
        return err_set(e, ERR_INVALID, "no Content-Type");
    p = skip_ws(value);
    while (*p && *p != ';' && *p != ' ' && *p != '\t') {
        if (k + 1 >= sizeof(out->media))
            return err_set(e, ERR_INVALID, "Content-Type too long");
        out->media[k++] = (char)tolower((unsigned char)*p++);
    }
    out->media[k] = '\0';
    if (!k || !strchr(out->media, '/'))
        return err_set(e, ERR_INVALID, "malformed Content-Type");
    for (;;) {
        p = skip_ws(p);
        if (!*p)
            break;
        if (*p != ';')
            return err_set(e, ERR_INVALID, "malformed Content-Type");
        p = skip_ws(p + 1);
        if (!*p)
            break;          /* a trailing ';' is harmless */
        k = 0;
        while (token_char((unsigned char)*p)) {
            if (k + 1 >= sizeof(name))
                return err_set(e, ERR_INVALID,
                               "Content-Type parameter name too long");
            name[k++] = *p++;
        }
        name[k] = '\0';
        p = skip_ws(p);
        if (!k || *p != '=')
            return err_set(e, ERR_INVALID,
                           "malformed Content-Type parameter");
        p = skip_ws(p + 1);
        if (ctype_value(&p, val, sizeof(val), e) < 0)
            return e ? e->code : ERR_INVALID;
        if (!strcasecmp(name, "boundary")) {
            if (!boundary_valid(val))
                return err_set(e, ERR_INVALID,
                               "invalid multipart boundary \"%.80s\"", val);
            strlcpy_h(out->boundary, val, sizeof(out->boundary));
        } else if (!strcasecmp(name, "type")) {
            for (char *c = val; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            strlcpy_h(out->type, val, sizeof(out->type));
        }
    }
    return 0;
}

const char *multipart_part_header(const struct multipart_part *p,
                                  const char *name)
{
    for (size_t i = 0; i < p->nheaders; i++)
        if (!strcasecmp(p->headers[i].name, name))
            return p->headers[i].value;
    return NULL;
}

/* ---- the parser -------------------------------------------------------- */

struct multipart *multipart_new(const char *boundary,
                                const struct multipart_cb *cb, void *arg,
                                struct err *e)
{
    struct multipart *m;
    size_t n;

    if (!boundary || !boundary_valid(boundary)) {
        err_set(e, ERR_INVALID, "invalid multipart boundary");
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    if (cb)
        m->cb = *cb;
    m->arg = arg;
    n = strlen(boundary);
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, boundary, n);
    m->dlen = 4 + n;
    m->st = ST_PREAMBLE;
    m->matched = 2;          /* as if the body began after a CRLF */
    return m;
}

void multipart_free(struct multipart *m)
{
    free(m);
}

int multipart_parts(const struct multipart *m)
{
    return m->parts;
}

static int fail(struct multipart *m, struct err *e, int code,
                const char *msg)
{
    m->st = ST_FAILED;
    m->failed_code = code;
    strlcpy_h(m->failed_msg, msg, sizeof(m->failed_msg));
    return err_set(e, code, "%s", msg);
}

/* A callback said stop: keep its code, and its message if it set one. */
static int fail_cb(struct multipart *m, struct err *e, int rc)
{
    m->st = ST_FAILED;
    m->failed_code = rc;
    if (e && e->code == rc && e->msg[0])
        strlcpy_h(m->failed_msg, e->msg, sizeof(m->failed_msg));
    else
        strlcpy_h(m->failed_msg, "stopped by the receiver",
                  sizeof(m->failed_msg));
    return err_set(e, rc, "%s", m->failed_msg);
}

static int emit(struct multipart *m, const unsigned char *p, size_t n)
{
    if (!n || !m->cb.part_data)
        return 0;
    return m->cb.part_data(m->arg, p, n);
}

/* Split the finished header block into fields and start the part. */
static int headers_done(struct multipart *m, struct err *e)
{
    struct multipart_part part;
    char *p = m->hbuf, *end;
    char msg[160];

    memset(&part, 0, sizeof(part));
    part.index = m->parts;
    m->hbuf[m->hlen] = '\0';
    /* Unfold: a line break followed by a space or tab continues the line. */
    for (char *q = p; *q; q++) {
        if (*q == '\n' && (q[1] == ' ' || q[1] == '\t')) {
            *q = ' ';
            if (q > p && q[-1] == '\r')
                q[-1] = ' ';
        }
    }
    while (*p) {
        char *colon, *v, *t;

        end = strchr(p, '\n');
        if (!end)
            break;
        *end = '\0';
        if (end > p && end[-1] == '\r')
            end[-1] = '\0';
        if (!*p)
            break;           /* the empty line ending the block */
        colon = strchr(p, ':');
        if (!colon || colon == p) {
            snprintf(msg, sizeof(msg), "malformed header in part %d",
                     m->parts + 1);
            return fail(m, e, ERR_INVALID, msg);
        }
        *colon = '\0';
        for (t = p; *t; t++)
            if (!token_char((unsigned char)*t)) {
                snprintf(msg, sizeof(msg),
                         "malformed header name in part %d", m->parts + 1);
                return fail(m, e, ERR_INVALID, msg);
            }
        v = (char *)skip_ws(colon + 1);
        t = v + strlen(v);
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            *--t = '\0';
        if (part.nheaders == MULTIPART_MAX_HEADERS) {
            snprintf(msg, sizeof(msg), "too many headers in part %d",
                     m->parts + 1);
            return fail(m, e, ERR_INVALID, msg);
        }
        part.headers[part.nheaders].name = p;
        part.headers[part.nheaders].value = v;
        part.nheaders++;
        p = end + 1;
    }
    m->parts++;
    m->hlen = 0;
    m->st = ST_DATA;
    m->matched = 0;
    if (m->cb.part_begin) {
        int rc = m->cb.part_begin(m->arg, &part);
        if (rc < 0)
            return fail_cb(m, e, rc);
    }
    return 0;
}

/* Is the header block complete?  An empty line ends it (CRLF CRLF, or a
 * bare LF LF from lax writers); a block that is only an empty line means
 * a part without headers. */
static int headers_complete(const struct multipart *m)
{
    const char *h = m->hbuf;
    size_t n = m->hlen;

    if ((n == 2 && h[0] == '\r' && h[1] == '\n') || (n == 1 && h[0] == '\n'))
        return 1;
    if (n >= 4 && !memcmp(h + n - 4, "\r\n\r\n", 4))
        return 1;
    return n >= 2 && h[n - 2] == '\n' && h[n - 1] == '\n';
}

int multipart_feed(struct multipart *m, const void *data, size_t len,
                   struct err *e)
{
    const unsigned char *p = data;
    size_t i = 0;
    int rc;

    if (m->st == ST_FAILED)
        return err_set(e, m->failed_code, "%s", m->failed_msg);
    while (i < len) {
        unsigned char c;

        switch (m->st) {
        case ST_PREAMBLE:
        case ST_DATA:
            if (m->matched == 0) {
                /* Skip CRs that visibly start no delimiter, so data goes
                 * out in runs as long as the input piece. */
                size_t j = i, k = len, cmp;

                for (;;) {
                    const unsigned char *cr = memchr(p + j, '\r', len - j);
                    if (!cr)
                        break;
                    k = (size_t)(cr - p);
                    cmp = len - k < m->dlen ? len - k : m->dlen;
                    if (!memcmp(p + k, m->delim, cmp))
                        break;
                    j = k + 1;
                    k = len;
                }
                if (m->st == ST_DATA && (rc = emit(m, p + i, k - i)) < 0)
                    return fail_cb(m, e, rc);
                i = k;
                if (k == len)
                    break;
                m->matched = 1;
                i++;
                continue;
            }
            c = p[i];
            if (c == m->delim[m->matched]) {
                i++;
                if (++m->matched == m->dlen) {
                    m->matched = 0;
                    if (m->st == ST_DATA && m->cb.part_end &&
                        (rc = m->cb.part_end(m->arg)) < 0)
                        return fail_cb(m, e, rc);
                    m->st = ST_AFTER;
                }
                continue;
            }
            /* Mismatch: what was held back is data; rescan this byte. */
            if (m->st == ST_DATA &&
                (rc = emit(m, m->delim, m->matched)) < 0)
                return fail_cb(m, e, rc);
            m->matched = 0;
            continue;
        case ST_AFTER:
            c = p[i++];
            if (c == '-')
                m->st = ST_AFTER_DASH;
            else if (c == ' ' || c == '\t')
                m->st = ST_PAD;
            else if (c == '\r')
                m->st = ST_PAD_CR;
            else if (c == '\n')
                m->st = ST_HEADERS;
            else
                return fail(m, e, ERR_INVALID,
                            "boundary string found inside part data or "
                            "followed by junk");
            continue;
        case ST_AFTER_DASH:
            c = p[i++];
            if (c != '-')
                return fail(m, e, ERR_INVALID,
                             "malformed close delimiter");
            m->st = ST_EPILOGUE;
            continue;
        case ST_PAD:
            c = p[i++];
            if (c == '\r')
                m->st = ST_PAD_CR;
            else if (c == '\n')
                m->st = ST_HEADERS;
            else if (c != ' ' && c != '\t')
                return fail(m, e, ERR_INVALID,
                            "junk after a multipart boundary");
            continue;
        case ST_PAD_CR:
            c = p[i++];
            if (c != '\n')
                return fail(m, e, ERR_INVALID,
                            "CR without LF after a multipart boundary");
            m->st = ST_HEADERS;
            continue;
        case ST_HEADERS:
            if (m->hlen == MULTIPART_MAX_HEADER)
                return fail(m, e, ERR_INVALID,
                            "part header block too large");
            m->hbuf[m->hlen++] = (char)p[i++];
            if (headers_complete(m) && (rc = headers_done(m, e)) < 0)
                return rc;
            continue;
        case ST_EPILOGUE:
            i = len;
            continue;
        case ST_FAILED:
            return err_set(e, m->failed_code, "%s", m->failed_msg);
        }
        break;
    }
    return 0;
}

int multipart_finish(struct multipart *m, struct err *e)
{
    switch (m->st) {
    case ST_EPILOGUE:
        return 0;
    case ST_FAILED:
        return err_set(e, m->failed_code, "%s", m->failed_msg);
    case ST_PREAMBLE:
        return fail(m, e, ERR_INVALID,
                    "no multipart boundary found in the body");
    default:
        return fail(m, e, ERR_INVALID,
                    "missing final multipart boundary (body cut short)");
    }
}
