/*
 * wado_meta — WADO-RS metadata, frames and bulk data (see wado_meta.h).
 *
 * Each request becomes one job on the worker pool (srv->jobs): the lws
 * thread checks the request and the scope, looks the instances up, and
 * hands the job over; the worker (with its own store handle, for its
 * temp file) reads the files through the DCMTK adapter and builds the
 * body; the done callback, back on the lws thread, responds.  If the
 * connection goes meanwhile, http.c frees the request and the job's done
 * callback frees what is left (as api.c's logins do).
 *
 * An answer is a list of segments, each either bytes the worker built
 * (part headers, decoded frames) or a byte range of a file (the metadata
 * temp file; a native frame inside its instance's blob), streamed from
 * the descriptor HTTP_CHUNK at a time: a viewer's frame is read once,
 * from the page cache into the write buffer, never parsed or copied
 * whole.  Metadata answers are kept in the render cache (render.h) under
 * a digest of the instances they describe (UIDs and blob SHA-256s, as
 * the index has them now) and the URL base: a new instance in the series
 * is a new digest, so a cached answer is never stale.
 */
#include "wado_meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "access.h"
#include "dicomweb.h"
#include "jobs.h"
#include "render.h"
#include "server.h"

#define FRAMES_MAX 4096                 /* frame numbers in one request */
#define BODY_MAX (512u << 20)           /* frames/bulk data in one answer */
#define META_CACHE_MAX (8u << 20)       /* larger metadata is not cached */

enum wkind { W_METADATA, W_FRAMES, W_BULK };

/* A piece of the answer: len bytes from off in w->body, or in file w->fd. */
struct seg {
    int in_file;
    uint64_t off;
    size_t len;
};

struct wjob {
    struct job job;
    struct http_req *r;         /* NULL once the request is gone */
    struct server *srv;
    int running;
    enum wkind kind;
    struct store_instance *list;
    size_t n;
    char base[1400];            /* .../instances/ URL prefix, metadata */
    /* frames */
    int *frames;
    size_t nframes;
    int decode;
    int single;                 /* one bare part, no multipart */
    /* bulk data */
    char bulk_path[256];
    /* metadata */
    struct render_key key;      /* of the answer in the cache */
    /* result */
    int rc;
    struct err e;
    int fd;                     /* the metadata temp file, or the blob */
    unsigned char *body;
    size_t len;                 /* bytes in body */
    struct seg *segs;           /* the answer, in order */
    size_t nsegs, segcap, seg_at;
    uint64_t total, seg_sent;   /* answer bytes; sent of segs[seg_at] */
    char ctype[256];
};

static void wjob_destroy(struct wjob *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->list);
    free(w->frames);
    free(w->body);
    free(w->segs);
    free(w);
}

static void wjob_free(void *p)
{
    struct wjob *w = p;

    if (w->running) {
        w->r = NULL;            /* wjob_done frees it */
        return;
    }
    wjob_destroy(w);
}

/* ---- building answers (worker thread) ----------------------------------- */

/* Append a segment; a body segment right after the last one extends it. */
static int seg_add(struct wjob *w, int in_file, uint64_t off, size_t len)
{
    struct seg *last = w->nsegs ? &w->segs[w->nsegs - 1] : NULL;

    if (w->total + len > BODY_MAX)
        return err_set(&w->e, ERR_TOOBIG, "the answer would exceed %u MiB; "
                       "ask for fewer frames", BODY_MAX >> 20);
    w->total += len;
    if (last && !in_file && !last->in_file && last->off + last->len == off) {
        last->len += len;
        return 0;
    }
    if (w->nsegs == w->segcap) {
        size_t c = w->segcap ? 2 * w->segcap : 8;
        struct seg *n = realloc(w->segs, c * sizeof(*n));
        if (!n)
            return err_set(&w->e, ERR_TOOBIG, "out of memory");
        w->segs = n;
        w->segcap = c;
    }
    w->segs[w->nsegs++] = (struct seg){in_file, off, len};
    return 0;
}

/* The finished metadata file into the cache, if small enough; it stays
 * the answer either way. */
static void meta_cache_put(struct wjob *w, struct server *srv)
{
    unsigned char *b;

    if (!srv || !srv->render || !w->key.sha256[0] || !w->total ||
        w->total > META_CACHE_MAX)
        return;
    b = malloc((size_t)w->total);
    if (!b)
        return;
    if (pread(w->fd, b, (size_t)w->total, 0) == (ssize_t)w->total)
        render_cache_put(srv->render, &w->key, b, (size_t)w->total);
    free(b);
}

static int meta_work(struct wjob *w, struct store *store,
                     struct server *srv)
{
    char tmp[4096], prefix[1700];
    FILE *f;
    int fd, rc = 0;

    if ((rc = store_tmp_file(store, tmp, &fd, &w->e)) < 0)
        return rc;
    unlink(tmp);                /* the descriptor is all we need */
    f = fdopen(fd, "w+");
    if (!f) {
        close(fd);
        return err_set(&w->e, ERR_IO, "fdopen: %s", strerror(errno));
    }
    fputc('[', f);
    for (size_t i = 0; i < w->n && !rc; i++) {
        const struct store_instance *in = &w->list[i];
        snprintf(prefix, sizeof(prefix), "%s/studies/%s/series/%s/"
                 "instances/%s/bulkdata", w->base, in->study_uid,
                 in->series_uid, in->sop_uid);
        if (i)
            fputc(',', f);
        rc = dicom_write_json(in->path, prefix, f, &w->e);
    }
    fputc(']', f);
    if (!rc && fflush(f) != 0)
        rc = err_set(&w->e, ERR_IO, "writing metadata: %s", strerror(errno));
    if (!rc) {
        w->fd = dup(fileno(f));
        if (w->fd < 0)
            rc = err_set(&w->e, ERR_IO, "dup: %s", strerror(errno));
    }
    fclose(f);
    if (!rc) {
        struct stat sb;
        if (fstat(w->fd, &sb) < 0)
            return err_set(&w->e, ERR_IO, "fstat: %s", strerror(errno));
        rc = seg_add(w, 1, 0, (size_t)sb.st_size);
    }
    if (!rc)
        meta_cache_put(w, srv);
    return rc;
}

/* Bytes of the answer, kept in the growing body. */
static int body_add(struct wjob *w, size_t *cap, const void *p, size_t n)
{
    int rc = seg_add(w, 0, w->len, n);

    if (rc)
        return rc;
    if (w->len + n > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < w->len + n)
            c *= 2;
        unsigned char *b = realloc(w->body, c);
        if (!b)
            return err_set(&w->e, ERR_TOOBIG, "out of memory");
        w->body = b;
        *cap = c;
    }
    memcpy(w->body + w->len, p, n);
    w->len += n;
    return 0;
}

/* A part of multipart/related; type="application/octet-stream" (ts NULL:
 * no transfer-syntax parameter): n bytes from d, or (d NULL) the bytes at
 * off in the blob w->fd. */
static int part_add(struct wjob *w, size_t *cap, const char *boundary,
                    const char *ts, const unsigned char *d, uint64_t off,
                    size_t n)
{
    char h[256];
    int k = snprintf(h, sizeof(h), "--%s\r\nContent-Type: application/"
                     "octet-stream%s%s\r\nContent-Length: %zu\r\n\r\n",
                     boundary, ts ? "; transfer-syntax=" : "", ts ? ts : "",
                     n);
    int rc = body_add(w, cap, h, (size_t)k);
    if (!rc)
        rc = d ? body_add(w, cap, d, n) : seg_add(w, 1, off, n);
    if (!rc)
        rc = body_add(w, cap, "\r\n", 2);
    return rc;
}

static int part_end(struct wjob *w, size_t *cap, const char *boundary)
{
    char end[64];
    int k = snprintf(end, sizeof(end), "--%s--\r\n", boundary);

    return body_add(w, cap, end, (size_t)k);
}

/* Frame f (0-based) of instance in: when its stored bytes are the answer
 * (native little endian), their place in the blob, opened once as w->fd,
 * and *d NULL; else the frame decoded or gathered into *d (malloc'd). */
static int frame_read(struct wjob *w, const struct store_instance *in,
                      int f, unsigned char **d, uint64_t *off, size_t *n,
                      char ts[65])
{
    int rc = dicom_frame_span(in->path, f, w->decode, off, n, ts, &w->e);

    *d = NULL;
    if (rc < 0)
        return rc;
    if (rc == 0)
        return dicom_frame_get(in->path, f, w->decode, d, n, ts, &w->e);
    if (w->fd < 0 && (w->fd = open(in->path, O_RDONLY | O_CLOEXEC)) < 0)
        return err_set(&w->e, ERR_IO, "open %s: %s", in->path,
                       strerror(errno));
    /* The lws thread reads it: have the disk start now, not block it. */
    posix_fadvise(w->fd, (off_t)*off, (off_t)*n, POSIX_FADV_WILLNEED);
    return 0;
}

static int frames_work(struct wjob *w)
{
    const struct store_instance *in = &w->list[0];
    char boundary[40], ts[65] = "";
    size_t cap = 0;
    int rc = 0;

    random_hex(boundary, 16);
    for (size_t i = 0; i < w->nframes && !rc; i++) {
        unsigned char *d;
        uint64_t off = 0;
        size_t n = 0;
        char t[65];
        rc = frame_read(w, in, w->frames[i] - 1, &d, &off, &n, t);
        if (!rc && w->single)
            rc = d ? body_add(w, &cap, d, n) : seg_add(w, 1, off, n);
        else if (!rc)
            rc = part_add(w, &cap, boundary, t, d, off, n);
        free(d);
        strlcpy_h(ts, t, sizeof(ts));
    }
    if (rc)
        return rc;
    if (w->single) {
        snprintf(w->ctype, sizeof(w->ctype), "application/octet-stream; "
                 "transfer-syntax=%s", ts);
        return 0;
    }
    snprintf(w->ctype, sizeof(w->ctype), "multipart/related; "
             "type=\"application/octet-stream\"; transfer-syntax=%s; "
             "boundary=%s", ts, boundary);
    return part_end(w, &cap, boundary);
}

static int bulk_work(struct wjob *w)
{
    const struct store_instance *in = &w->list[0];
    unsigned char *d = NULL;
    size_t n = 0, cap = 0;
    char boundary[40];
    int rc = dicom_bulk_get(in->path, w->bulk_path, &d, &n, &w->e);

    if (rc == ERR_UNSUPPORTED && !strcasecmp(w->bulk_path, "7FE00010") &&
        in->frames > 0 && !w->single) {
        /* Compressed pixel data: its frames, as stored. */
        w->nframes = (size_t)in->frames;
        w->frames = calloc(w->nframes, sizeof(*w->frames));
        if (!w->frames)
            return err_set(&w->e, ERR_TOOBIG, "out of memory");
        for (size_t i = 0; i < w->nframes; i++)
            w->frames[i] = (int)i + 1;
        w->decode = 0;
        return frames_work(w);
    }
    if (rc)
        return rc;
    if (w->single) {
        w->body = d;
        w->len = n;
        snprintf(w->ctype, sizeof(w->ctype), "application/octet-stream");
        return seg_add(w, 0, 0, n);
    }
    random_hex(boundary, 16);
    rc = part_add(w, &cap, boundary, NULL, d, 0, n);
    free(d);
    if (!rc)
        rc = part_end(w, &cap, boundary);
    snprintf(w->ctype, sizeof(w->ctype), "multipart/related; "
             "type=\"application/octet-stream\"; boundary=%s", boundary);
    return rc;
}

static void wjob_work(void *ctx, void *arg)
{
    struct wjob *w = arg;

    switch (w->kind) {
    case W_METADATA:
        w->rc = ctx ? meta_work(w, ctx, w->srv) :
                err_set(&w->e, ERR_INTERNAL, "the worker has no store");
        break;
    case W_FRAMES:
        w->rc = frames_work(w);
        break;
    case W_BULK:
        w->rc = bulk_work(w);
        break;
    }
}

/* ---- answering (lws thread) --------------------------------------------- */

static const char *const kind_action[] = {"metadata", "frames", "bulkdata"};

/* The answer's segments, in order, as much as fits in buf. */
static ssize_t seg_fill(void *arg, unsigned char *buf, size_t cap)
{
    struct wjob *w = arg;
    size_t got = 0;

    while (got < cap && w->seg_at < w->nsegs) {
        const struct seg *sg = &w->segs[w->seg_at];
        size_t k = sg->len - (size_t)w->seg_sent;
        if (k > cap - got)
            k = cap - got;
        if (!sg->in_file) {
            memcpy(buf + got, w->body + sg->off + w->seg_sent, k);
        } else {
            ssize_t rd = pread(w->fd, buf + got, k,
                               (off_t)(sg->off + w->seg_sent));
            if (rd < 0 && errno == EINTR)
                continue;
            if (rd <= 0) {
                log_error("wado: %s file: %s", kind_action[w->kind],
                          rd < 0 ? strerror(errno) : "short");
                return -1;
            }
            k = (size_t)rd;
        }
        got += k;
        w->seg_sent += k;
        if (w->seg_sent == sg->len) {
            w->seg_at++;
            w->seg_sent = 0;
        }
    }
    return (ssize_t)got;
}

static void wjob_respond(struct wjob *w)
{
    struct http_req *r = w->r;
    const char *object = w->list[0].sop_uid;
    char detail[64];

    if (w->rc < 0) {
        int rc = w->rc;
        dicomweb_audit(r, "retrieve", object, rc == ERR_NOTFOUND ?
                       "not_found" : "error", w->e.msg);
        if (rc == ERR_NOTFOUND)
            http_respond_error(r, 404, "not_found", "%s", w->e.msg);
        else if (rc == ERR_UNSUPPORTED)
            http_respond_error(r, 406, "not_acceptable", "%s; ask for "
                               "transfer-syntax=* to get the stored bytes",
                               w->e.msg);
        else
            http_respond_err(r, &w->e);
        return;
    }
    http_add_header(r, "Cache-Control", "private, no-store");
    if (w->kind == W_METADATA) {
        snprintf(detail, sizeof(detail), "%s, %zu instance(s)",
                 kind_action[w->kind], w->n);
        dicomweb_audit(r, "retrieve", w->n == 1 ? object :
                       w->list[0].study_uid, "ok", detail);
    } else {
        snprintf(detail, sizeof(detail), "%s, %zu frame(s)",
                 kind_action[w->kind], w->nframes);
        dicomweb_audit(r, "retrieve", object, "ok", w->kind == W_FRAMES ?
                       detail : w->bulk_path);
    }
    /* http.c owns w from here as route state; the stream borrows it. */
    http_respond_stream(r, 200, w->ctype, w->total, seg_fill, w, NULL);
}

static void wjob_done(void *arg)
{
    struct wjob *w = arg;

    w->running = 0;
    if (!w->r) {
        wjob_destroy(w);
        return;
    }
    wjob_respond(w);
}

/* A job for r with the instances of study[/series[/sop]] in scope, or
 * NULL when r has been answered (404 and the like). */
static struct wjob *wjob_new(struct http_req *r, enum wkind kind,
                             const char *study, const char *series,
                             const char *sop)
{
    struct wjob *w = calloc(1, sizeof(*w));

    if (!w) {
        http_respond_error(r, 500, "internal", "out of memory");
        return NULL;
    }
    w->fd = -1;
    w->kind = kind;
    w->srv = r->srv;
    if (dicomweb_instances(r, "retrieve", sop ? sop : series ? series :
                           study, study, series, sop, &w->list,
                           &w->n) < 0) {
        wjob_destroy(w);
        return NULL;
    }
    return w;
}

static void wjob_submit(struct http_req *r, struct wjob *w)
{
    w->r = r;
    if (!r->srv->jobs) {
        /* No worker pool (tools serving without one): inline. */
        wjob_work(r->srv->store, w);
        http_set_state(r, w, wjob_free);
        wjob_respond(w);
        return;
    }
    w->running = 1;
    http_set_state(r, w, wjob_free);
    http_defer(r);
    jobs_submit(r->srv->jobs, &w->job, wjob_work, wjob_done, w);
}

/* The cache key of a metadata answer: a digest of everything that
 * decides its bytes (see the top of this file); frame -1 keeps it apart
 * from every rendered image.  -1 (no key, no caching) if out of memory. */
static int meta_key(struct wjob *w)
{
    size_t cap = strlen(w->base) + 2 + w->n * 4 * 66, o;
    char *t = malloc(cap);

    memset(&w->key, 0, sizeof(w->key));
    w->key.frame = -1;
    if (!t)
        return -1;
    o = (size_t)snprintf(t, cap, "%s\n", w->base);
    for (size_t i = 0; i < w->n; i++) {
        const struct store_instance *in = &w->list[i];
        o += (size_t)snprintf(t + o, cap - o, "%s %s %s %s\n",
                              in->study_uid, in->series_uid, in->sop_uid,
                              in->sha256);
    }
    sha256_hex(t, o, w->key.sha256);
    free(t);
    return 0;
}

void wado_metadata(struct http_req *r, const char *study, const char *series,
                   const char *sop)
{
    struct wjob *w;
    char base[1024];
    unsigned char *cached;
    size_t len;

    if (!http_accepts(r, "application/dicom+json") &&
        !http_accepts(r, "application/json")) {
        http_respond_error(r, 406, "not_acceptable",
                           "metadata is application/dicom+json");
        return;
    }
    if (!(w = wjob_new(r, W_METADATA, study, series, sop)))
        return;
    http_base_url(r, base, sizeof(base));
    snprintf(w->base, sizeof(w->base), "%s/dicomweb", base);
    snprintf(w->ctype, sizeof(w->ctype), "application/dicom+json");
    if (meta_key(w) == 0 &&
        (cached = render_cache_get(r->srv->render, &w->key, &len))) {
        log_debug("wado: metadata of %zu instance(s) from the cache", w->n);
        w->body = cached;
        w->len = len;
        w->rc = seg_add(w, 0, 0, len);
        w->r = r;
        http_set_state(r, w, wjob_free);
        wjob_respond(w);
        return;
    }
    wjob_submit(r, w);
}

/* ---- negotiation -------------------------------------------------------- */

/* The value of parameter name in one media range [p, end), unquoted, into
 * out; 0 if found. */
static int range_param(const char *p, const char *end, const char *name,
                       char *out, size_t n)
{
    size_t nl = strlen(name);

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi)
            return -1;
        p = semi + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(end - p) > nl && !strncasecmp(p, name, nl) &&
            p[nl] == '=') {
            const char *v = p + nl + 1, *ve;
            if (*v == '"')
                v++;
            ve = v;
            while (ve < end && *ve != ';' && *ve != '"' && *ve != ' ')
                ve++;
            snprintf(out, n, "%.*s", (int)(ve - v), v);
            return 0;
        }
    }
    return -1;
}

/*
 * What the Accept header asks of octet-stream data: 0 with *decode and
 * *single set, or -1 if no media range can be served.  stored_ts NULL:
 * bulk data (no transfer syntax to choose).  Ranges are taken in order
 * (q values are not weighed: viewers send one range).
 */
static int negotiate(const char *accept, const char *stored_ts, int *decode,
                     int *single)
{
    const char *p = accept;

    *decode = 1;
    *single = 0;
    if (!p || !*p)
        return 0;
    while (*p) {
        const char *end, *m;
        char type[64] = "", ts[80] = "";
        size_t ml;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        /* A range ends at a comma outside quotes. */
        for (end = p; *end && *end != ','; end++)
            if (*end == '"' && (end = strchr(end + 1, '"')) == NULL) {
                end = p + strlen(p);
                break;
            }
        m = p;
        ml = strcspn(m, ";,");
        if (m + ml > end)
            ml = (size_t)(end - m);
        while (ml && (m[ml - 1] == ' ' || m[ml - 1] == '\t'))
            ml--;
        range_param(p, end, "type", type, sizeof(type));
        range_param(p, end, "transfer-syntax", ts, sizeof(ts));
        int multi = ml == 17 && !strncasecmp(m, "multipart/related", 17);
        int octet = ml == 24 && !strncasecmp(m, "application/octet-stream",
                                             24);
        int any = ml == 3 && !strncmp(m, "*/*", 3);
        if (multi && type[0] && strcasecmp(type, "application/octet-stream")
            && strcmp(type, "*/*"))
            multi = 0;
        if (any) {
            *decode = 1;
            return 0;
        }
        if (multi || octet) {
            *single = octet;
            if (!stored_ts || !ts[0] || !strcmp(ts, DICOM_TS_EXPLICIT_LE)) {
                *decode = 1;
                return 0;
            }
            if (!strcmp(ts, "*") || !strcmp(ts, stored_ts)) {
                *decode = 0;
                return 0;
            }
        }
        p = *end ? end + 1 : end;
    }
    return -1;
}

/* "1,3,7" -> frame numbers; 0 or -1 (answered 400). */
static int parse_frames(struct http_req *r, const char *list, int **out,
                        size_t *n)
{
    size_t cap = 1;

    for (const char *p = list; *p; p++)
        cap += *p == ',';
    if (cap > FRAMES_MAX) {
        http_respond_error(r, 400, "invalid", "at most %d frames at once",
                           FRAMES_MAX);
        return -1;
    }
    *out = calloc(cap, sizeof(**out));
    if (!*out) {
        http_respond_error(r, 500, "internal", "out of memory");
        return -1;
    }
    *n = 0;
    for (const char *p = list;;) {
        char *end;
        long f;
        if (*p < '0' || *p > '9')
            goto bad;
        errno = 0;
        f = strtol(p, &end, 10);
        if (errno || f < 1 || f > 100000000 || (*end && *end != ','))
            goto bad;
        (*out)[(*n)++] = (int)f;
        if (!*end)
            return 0;
        p = end + 1;
    }
bad:
    free(*out);
    *out = NULL;
    http_respond_error(r, 400, "invalid", "frames must be a comma-separated "
                       "list of frame numbers from 1, not \"%.60s\"", list);
    return -1;
}

void wado_frames(struct http_req *r, const char *study, const char *series,
                 const char *sop, const char *list)
{
    struct wjob *w;
    int *frames = NULL, decode, single;
    size_t n = 0;

    if (parse_frames(r, list, &frames, &n) < 0)
        return;
    if (!(w = wjob_new(r, W_FRAMES, study, series, sop))) {
        free(frames);
        return;
    }
    w->frames = frames;
    w->nframes = n;
    for (size_t i = 0; i < n; i++) {
        if (frames[i] > w->list[0].frames) {
            if (w->list[0].frames > 0)
                http_respond_error(r, 404, "not_found", "frame %d of %d",
                                   frames[i], w->list[0].frames);
            else
                http_respond_error(r, 404, "not_found", "the instance has "
                                   "no frames");
            dicomweb_audit(r, "retrieve", sop, "not_found", "frame");
            wjob_destroy(w);
            return;
        }
    }
    if (negotiate(r->accept, w->list[0].transfer_syntax, &decode,
                  &single) < 0 || (single && n > 1)) {
        http_respond_error(r, 406, "not_acceptable", "frames are served as "
                           "multipart/related; type=\"application/"
                           "octet-stream\" with transfer-syntax %s (decoded), "
                           "* or %s (as stored)%s", DICOM_TS_EXPLICIT_LE,
                           w->list[0].transfer_syntax, single && n > 1 ?
                           "; a bare application/octet-stream holds one "
                           "frame" : "");
        wjob_destroy(w);
        return;
    }
    w->decode = decode;
    w->single = single;
    wjob_submit(r, w);
}

void wado_bulkdata(struct http_req *r, const char *study,
                   const char *series, const char *sop,
                   const char *bulk_path)
{
    struct wjob *w;
    int decode, single;

    if (strlen(bulk_path) >= sizeof(w->bulk_path)) {
        http_respond_error(r, 404, "not_found", "no such bulk data");
        return;
    }
    if (negotiate(r->accept, NULL, &decode, &single) < 0) {
        http_respond_error(r, 406, "not_acceptable", "bulk data is "
                           "multipart/related; type=\"application/"
                           "octet-stream\" or application/octet-stream");
        return;
    }
    if (!(w = wjob_new(r, W_BULK, study, series, sop)))
        return;
    strlcpy_h(w->bulk_path, bulk_path, sizeof(w->bulk_path));
    w->single = single;
    wjob_submit(r, w);
}
