/*
 * dicomweb — STOW-RS, QIDO-RS, WADO-RS and rendered images (PS3.18) over
 * the store, for http.c's "/dicomweb" route.  See dicomweb.h.
 *
 * STOW-RS streams: each part of the multipart/related body goes into a
 * temp file in the store's tmp/ as it arrives (multipart.c), and is handed
 * to a worker thread (srv->jobs) that stores it (hash, fsync, SQLite)
 * while the next part arrives; the body is paused when the workers fall
 * behind, so memory and disk stay bounded whatever the size of the
 * request.  The response follows the last part's durable store.
 *
 * STOW-RS response (PS3.18 10.5.3): a DICOM JSON object with
 *   00081190 RetrieveURL          the study (when one study was sent)
 *   00081199 ReferencedSOPSequence  stored (or already there, same bytes):
 *            00081150 SOP Class, 00081155 SOP Instance, 00081190 its URL
 *   00081198 FailedSOPSequence    00081150, 00081155 (when known),
 *            00081197 FailureReason: 0xC000 (49152) not valid DICOM,
 *            0x0111 (273) same SOP Instance UID with other bytes,
 *            0x0124 (292) refused: the study, series or instance is
 *            another clinic's (ErrorComment "refused", nothing more),
 *            0xA900 (43264) Study Instance UID not the one in the URL or
 *            part not application/dicom, 0xA700 (42752) out of resources
 *            (over the size limit, disk), 0x0110 (272) processing failure;
 *            and 00000902 ErrorComment (LO) with the reason in words —
 *            the attribute DIMSE uses for the same purpose, so the
 *            response stays plain DICOM JSON without private tags.
 * HTTP status: 200 all stored; 202 some stored, some failed; 409 none
 * stored (conflicts or invalid instances: the request was well formed);
 * 400 malformed body (no parts, wrong boundary, cut short); 415 not
 * multipart/related; type="application/dicom".
 *
 * WADO-RS answers multipart/related; type="application/dicom" with each
 * stored blob's exact bytes, read from the file a chunk at a time; the
 * Content-Length is known beforehand (blobs are immutable).
 */
#include "dicomweb.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "access.h"
#include "cases.h"
#include "imageinfo.h"
#include "jobs.h"
#include "multipart.h"
#include "render.h"
#include "server.h"
#include "wado_meta.h"

#define FAIL_PROCESSING 0x0110
#define FAIL_REFUSED 0x0124     /* Refused: Not Authorized */
#define FAIL_DUPLICATE_SOP 0x0111
#define FAIL_OUT_OF_RESOURCES 0xA700
#define FAIL_MISMATCH 0xA900
#define FAIL_CANNOT_UNDERSTAND 0xC000

#define MAX_SEGS 10
#define STOW_MAX_STUDIES 16     /* distinct studies noted for the cases */
#define STOW_WBUF (256 * 1024)  /* part bytes gathered per write() */

static void audit(struct http_req *r, const char *action, const char *object,
                  const char *outcome, const char *detail)
{
    struct audit_entry a = {
        .actor = r->who.login,
        .action = action,
        .object = object,
        .outcome = outcome,
        .remote = r->remote,
        .detail = detail,
    };

    audit_write(r->srv->audit, &a);
}

void dicomweb_audit(struct http_req *r, const char *action,
                    const char *object, const char *outcome,
                    const char *detail)
{
    audit(r, action, object, outcome, detail);
}

int dicomweb_frame_number(struct http_req *r, const char *seg, int *n)
{
    char *end;
    long f = strtol(seg, &end, 10);

    if (*end || end == seg || f < 1 || f > 1000000) {
        http_respond_error(r, 400, "invalid", "frame numbers start at 1");
        return -1;
    }
    *n = (int)f;
    return 0;
}

int dicomweb_instances(struct http_req *r, const char *action,
                       const char *object, const char *study,
                       const char *series, const char *sop,
                       struct store_instance **list, size_t *n)
{
    struct store_scope scope;
    struct err e = { 0 };
    int rc;

    *list = NULL;
    *n = 0;
    access_scope(&r->who, &scope);
    if (sop) {
        *list = calloc(1, sizeof(**list));
        rc = *list ? store_find_instance(r->srv->store, &scope, study,
                                         series, sop, *list, &e)
                   : err_set(&e, ERR_INTERNAL, "out of memory");
        *n = rc == 0;
    } else {
        rc = store_list_instances(r->srv->store, &scope, study, series,
                                  list, n, &e);
    }
    if (rc == 0 && *n == 0)
        rc = err_set(&e, ERR_NOTFOUND, "no such study or series");
    if (rc == 0)
        return 0;
    free(*list);
    *list = NULL;
    *n = 0;
    audit(r, action, object, rc == ERR_NOTFOUND ? "not_found" : "error",
          e.msg);
    if (rc == ERR_NOTFOUND)
        http_respond_error(r, 404, "not_found", "%s", e.msg);
    else
        http_respond_err(r, &e);
    return -1;
}

/* DICOM JSON attribute {"vr": vr, "Value": [v]}. */
static json_t *attr_str(const char *vr, const char *v)
{
    return json_pack("{s:s,s:[s]}", "vr", vr, "Value", v);
}

static json_t *attr_us(unsigned v)
{
    return json_pack("{s:s,s:[i]}", "vr", "US", "Value", (int)v);
}

/* ---- STOW-RS ------------------------------------------------------------ */

/*
 * The lws thread parses the multipart body and writes each part into a
 * temp file; when a part ends it is handed to the worker pool (srv->jobs,
 * each worker with its own store handle), which validates, hashes and
 * stores it durably while the lws thread goes on receiving the next part.
 * Finished parts come back through jobs_reap (http.c, on the lws thread),
 * are reported in the order they were sent, and the response is sent
 * once the body has ended and every part handed over is back — so it is
 * never sent before what it reports as stored is durable.
 *
 * At most STOW_QUEUE parts of a request are between "ended" and
 * "reported"; beyond that the body is paused (http_body_pause) until the
 * workers catch up, so the disk and memory a request holds stay bounded
 * whatever its size.
 *
 * If the connection drops meanwhile, http.c frees the request; the stow
 * state stays, detached, until its last part is back (the part is stored
 * and audited all the same), and is freed then.
 */
#define STOW_QUEUE 8            /* parts in flight before pausing */
#define STOW_QUEUE_LOW 4        /* resume reading at this many */

struct stow;

/* One part on its way: filled on the lws thread, stored by a worker,
 * reported on the lws thread. */
struct stow_part {
    struct job job;
    struct stow *st;
    int index;                  /* 1-based */
    int queued;                 /* handed to a worker, not yet back */
    int back;                   /* result known */
    char tmp[4096];
    /* result */
    int rc;                     /* store_put_file's, or 0 */
    unsigned reason;            /* FailureReason when failed here */
    char msg[300];
    struct err e;
    struct store_result res;
    struct stow_part *next;
};

struct stow {
    struct http_req *r;         /* NULL once detached */
    struct server *srv;
    struct multipart *mp;
    char study[65];             /* from the URL, or "" */
    char base[320];             /* https://host */
    /* who, copied: the request may go before its parts are back */
    char login[64];
    char remote[64];
    int64_t clinic_id;
    /* the part being received */
    int fd;
    char tmp[4096];
    uint64_t size;
    unsigned char *wbuf;        /* STOW_WBUF bytes */
    size_t wlen;
    int part_failed;
    unsigned part_reason;
    char part_msg[300];
    /* parts ended, in order, not yet reported */
    struct stow_part *head, *tail;
    int nqueue;                 /* parts in that list */
    int inflight;               /* of them, at a worker */
    int paused;
    int ended;                  /* the body is complete */
    int bad_status;             /* 400 etc. to answer at the end, or 0 */
    char bad_msg[400];
    /* results */
    json_t *ok;                 /* ReferencedSOPSequence items */
    json_t *failed;             /* FailedSOPSequence items */
    int nstored, nfailed;
    char studies[STOW_MAX_STUDIES][65];
    int nstudies;               /* distinct studies of stored instances */
    int study_mixed;
};

static void stow_audit(struct stow *st, const char *action,
                       const char *object, const char *outcome,
                       const char *detail)
{
    struct audit_entry a = {
        .actor = st->login,
        .action = action,
        .object = object,
        .outcome = outcome,
        .remote = st->remote,
        .detail = detail,
    };

    audit_write(st->srv->audit, &a);
}

static void part_cleanup(struct stow *st)
{
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
    if (st->tmp[0])
        unlink(st->tmp);
    st->tmp[0] = '\0';
    st->wlen = 0;
}

static void stow_destroy(struct stow *st)
{
    while (st->head) {
        struct stow_part *p = st->head;
        st->head = p->next;
        if (p->tmp[0])
            unlink(p->tmp);
        free(p);
    }
    part_cleanup(st);
    multipart_free(st->mp);
    json_decref(st->ok);
    json_decref(st->failed);
    free(st->wbuf);
    free(st);
}

/* http.c is done with the request (answered, or the connection went). */
static void stow_free(void *p)
{
    struct stow *st = p;

    if (st->inflight) {
        /* Parts are still at a worker: they finish, are audited, and
         * the last one back frees the rest (stow_part_done). */
        st->r = NULL;
        part_cleanup(st);
        return;
    }
    stow_destroy(st);
}

static void part_fail(struct stow *st, unsigned reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void part_fail(struct stow *st, unsigned reason, const char *fmt, ...)
{
    va_list ap;

    if (st->part_failed)
        return;
    st->part_failed = 1;
    st->part_reason = reason;
    va_start(ap, fmt);
    vsnprintf(st->part_msg, sizeof(st->part_msg), fmt, ap);
    va_end(ap);
    part_cleanup(st);
}

static int stow_part_begin(void *arg, const struct multipart_part *p)
{
    struct stow *st = arg;
    const char *ct = multipart_part_header(p, "content-type");
    struct err e = { 0 };

    st->part_failed = 0;
    st->part_reason = 0;
    st->part_msg[0] = '\0';
    st->size = 0;
    st->wlen = 0;
    if (ct) {
        size_t n = strcspn(ct, "; \t");
        if (n != 17 || strncasecmp(ct, "application/dicom", 17)) {
            part_fail(st, FAIL_MISMATCH, "part %d is %.60s, not "
                      "application/dicom", p->index + 1, ct);
            return 0;
        }
    }
    if (store_tmp_file(st->srv->store, st->tmp, &st->fd, &e) < 0) {
        st->tmp[0] = '\0';
        st->fd = -1;
        part_fail(st, FAIL_OUT_OF_RESOURCES, "cannot store part %d: %s",
                  p->index + 1, e.msg);
    }
    return 0;
}

/* Write out what part data is gathered; on failure the part fails. */
static int flush(struct stow *st)
{
    const unsigned char *d = st->wbuf;
    size_t n = st->wlen;

    while (n) {
        ssize_t w = write(st->fd, d, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            part_fail(st, FAIL_OUT_OF_RESOURCES, "cannot write the "
                      "instance: %s", strerror(errno));
            return -1;
        }
        d += w;
        n -= (size_t)w;
    }
    st->wlen = 0;
    return 0;
}

static int stow_part_data(void *arg, const unsigned char *d, size_t n)
{
    struct stow *st = arg;
    uint64_t max = st->srv->cfg.max_instance;

    if (st->part_failed)
        return 0;
    st->size += n;
    if (max && st->size > max) {
        part_fail(st, FAIL_OUT_OF_RESOURCES, "instance larger than the "
                  "limit of %llu bytes", (unsigned long long)max);
        return 0;
    }
    while (n) {
        size_t k = STOW_WBUF - st->wlen;
        if (k > n)
            k = n;
        memcpy(st->wbuf + st->wlen, d, k);
        st->wlen += k;
        d += k;
        n -= k;
        if (st->wlen == STOW_WBUF && flush(st) < 0)
            return 0;
    }
    return 0;
}

static void note_study(struct stow *st, const char *uid)
{
    for (int i = 0; i < st->nstudies; i++)
        if (!strcmp(st->studies[i], uid))
            return;
    if (st->nstudies)
        st->study_mixed = 1;
    if (st->nstudies < STOW_MAX_STUDIES)
        strlcpy_h(st->studies[st->nstudies++], uid, 65);
}

static void add_failed(struct stow *st, const char *sop_class,
                       const char *sop, unsigned reason, const char *msg)
{
    json_t *item = json_object();

    if (sop_class && *sop_class)
        json_object_set_new(item, "00081150", attr_str("UI", sop_class));
    if (sop && *sop)
        json_object_set_new(item, "00081155", attr_str("UI", sop));
    json_object_set_new(item, "00081197", attr_us(reason));
    json_object_set_new(item, "00000902", attr_str("LO", msg));
    json_array_append_new(st->failed, item);
    st->nfailed++;
}

static void add_ok(struct stow *st, const struct dcm_info *in)
{
    char url[1024];

    snprintf(url, sizeof(url), "%s/dicomweb/studies/%s/series/%s/"
             "instances/%s", st->base, in->study_uid, in->series_uid,
             in->sop_uid);
    json_array_append_new(st->ok,
                          json_pack("{s:o,s:o,s:o}",
                                    "00081150",
                                    attr_str("UI", in->sop_class_uid),
                                    "00081155", attr_str("UI", in->sop_uid),
                                    "00081190", attr_str("UR", url)));
    st->nstored++;
    note_study(st, in->study_uid);
}

/* Worker thread: store one part (ctx is the worker's store handle).
 * Touches only the part (and st's constant fields). */
static void stow_part_work(void *ctx, void *arg)
{
    struct stow_part *p = arg;
    struct stow *st = p->st;
    struct store *store = ctx;
    struct store_source src = {
        .via = "stow",
        .calling_ae = NULL,
        .user = st->login,
        .remote = st->remote,
        .clinic_id = st->clinic_id,
    };

    if (!store) {
        p->rc = err_set(&p->e, ERR_INTERNAL, "the worker has no store");
        unlink(p->tmp);
        p->tmp[0] = '\0';
        return;
    }
    if (st->study[0]) {
        struct dcm_info in;
        struct err pe = { 0 };
        if (dicom_parse_file(p->tmp, &in, &pe) == 0 &&
            strcmp(in.study_uid, st->study)) {
            unlink(p->tmp);
            p->tmp[0] = '\0';
            p->reason = FAIL_MISMATCH;
            snprintf(p->msg, sizeof(p->msg), "Study Instance UID %s is not "
                     "the %s of the request URL", in.study_uid, st->study);
            p->res.info = in;
            return;
        }
        /* A parse failure is reported by store_put_file below. */
    }
    p->rc = store_put_file(store, p->tmp, &src, &p->res, &p->e);
    p->tmp[0] = '\0';           /* the store has taken the file over */
}

/* Report one part whose result is known: metrics, audit, response. */
static void part_report(struct stow *st, struct stow_part *p)
{
    struct server *srv = st->srv;
    const struct dcm_info *in = &p->res.info;
    char label[32], msg[300];

    snprintf(label, sizeof(label), "part %d", p->index);
    if (p->reason) {                    /* failed before the store */
        metrics_stored(&srv->metrics, -1, 0);
        stow_audit(st, "reject", in->sop_uid[0] ? in->sop_uid : label,
                   "error", p->msg);
        add_failed(st, in->sop_class_uid, in->sop_uid, p->reason, p->msg);
        return;
    }
    if (p->rc == ERR_FORBIDDEN) {       /* another clinic's study */
        metrics_stored(&srv->metrics, -1, 0);
        stow_audit(st, "reject", in->study_uid, "denied", p->e.msg);
        add_failed(st, in->sop_class_uid, in->sop_uid, FAIL_REFUSED,
                   "refused");
        return;
    }
    if (p->rc < 0) {
        int rc = p->rc;
        unsigned reason = rc == ERR_INVALID ? FAIL_CANNOT_UNDERSTAND :
                          rc == ERR_TOOBIG ? FAIL_OUT_OF_RESOURCES :
                          rc == ERR_IO ? FAIL_OUT_OF_RESOURCES :
                          FAIL_PROCESSING;
        snprintf(msg, sizeof(msg), "%s: %s",
                 rc == ERR_INVALID ? "not acceptable DICOM" :
                 "not stored", p->e.msg);
        if (rc != ERR_INVALID && rc != ERR_TOOBIG)
            log_error("stow: %s from %s: %s", label, st->login, p->e.msg);
        metrics_stored(&srv->metrics, -1, 0);
        stow_audit(st, "reject", in->sop_uid[0] ? in->sop_uid : label,
                   "error", msg);
        add_failed(st, in->sop_class_uid, in->sop_uid, reason, msg);
        return;
    }
    metrics_stored(&srv->metrics, p->res.outcome, p->res.size);
    if (p->res.outcome == STORE_CONFLICT) {
        snprintf(msg, sizeof(msg), "conflict: SOP Instance UID %s already "
                 "exists with different content; the stored original is "
                 "kept and this copy set aside", in->sop_uid);
        stow_audit(st, "conflict", in->sop_uid, "conflict", msg);
        add_failed(st, in->sop_class_uid, in->sop_uid, FAIL_DUPLICATE_SOP,
                   msg);
        return;
    }
    stow_audit(st, "store", in->sop_uid,
               p->res.outcome == STORE_DUPLICATE ? "duplicate" : "ok",
               p->res.outcome == STORE_DUPLICATE ?
               "same bytes already stored" : NULL);
    add_ok(st, in);
}

static void stow_respond(struct stow *st);

/* Report the parts at the head of the list whose results are in (in the
 * order sent); resume the body below the low mark; answer when all is
 * back and the body has ended. */
static void stow_advance(struct stow *st)
{
    while (st->head && st->head->back) {
        struct stow_part *p = st->head;
        st->head = p->next;
        if (!st->head)
            st->tail = NULL;
        st->nqueue--;
        part_report(st, p);
        free(p);
    }
    if (!st->r)
        return;
    if (st->paused && st->nqueue <= STOW_QUEUE_LOW) {
        st->paused = 0;
        http_body_pause(st->r, 0);
    }
    if (st->ended && !st->inflight && !st->head &&
        !http_responded(st->r))
        stow_respond(st);
}

/* Lws thread (jobs_reap): a part is back from its worker. */
static void stow_part_done(void *arg)
{
    struct stow_part *p = arg;
    struct stow *st = p->st;

    p->back = 1;
    p->queued = 0;
    st->inflight--;
    stow_advance(st);
    if (!st->r && !st->inflight)
        stow_destroy(st);       /* detached, and this was the last */
}

/* Append a part to the list; a failed one (reason set) is done already. */
static struct stow_part *part_new(struct stow *st)
{
    struct stow_part *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->st = st;
    p->index = multipart_parts(st->mp);
    if (st->tail)
        st->tail->next = p;
    else
        st->head = p;
    st->tail = p;
    st->nqueue++;
    return p;
}

static int stow_part_end(void *arg)
{
    struct stow *st = arg;
    struct stow_part *p;

    if (!st->part_failed)
        flush(st);
    if (!st->part_failed && close(st->fd) < 0)
        part_fail(st, FAIL_OUT_OF_RESOURCES, "cannot write the instance: "
                  "%s", strerror(errno));
    st->fd = -1;
    p = part_new(st);
    if (!p) {
        part_cleanup(st);
        return ERR_INTERNAL;
    }
    if (st->part_failed) {
        p->reason = st->part_reason;
        strlcpy_h(p->msg, st->part_msg, sizeof(p->msg));
        p->back = 1;
        stow_advance(st);
        return 0;
    }
    strlcpy_h(p->tmp, st->tmp, sizeof(p->tmp));
    st->tmp[0] = '\0';          /* the part owns the file now */
    p->queued = 1;
    st->inflight++;
    jobs_submit(st->srv->jobs, &p->job, stow_part_work, stow_part_done, p);
    if (st->nqueue >= STOW_QUEUE && !st->paused && st->r) {
        st->paused = 1;
        http_body_pause(st->r, 1);
    }
    return 0;
}

static const struct multipart_cb stow_cb = {
    stow_part_begin, stow_part_data, stow_part_end
};

/* A malformed body is answered once the parts before the fault are back
 * (they are stored, and the answer counts them). */
static void stow_bad(struct stow *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stow_bad(struct stow *st, int status, const char *fmt, ...)
{
    va_list ap;

    if (st->bad_status)
        return;
    st->bad_status = status;
    va_start(ap, fmt);
    vsnprintf(st->bad_msg, sizeof(st->bad_msg), fmt, ap);
    va_end(ap);
    part_cleanup(st);
}

static int stow_chunk(struct http_req *r, const unsigned char *d, size_t n)
{
    struct stow *st = http_state(r);
    struct err e = { 0 };
    int rc;

    if (st->bad_status)
        return 0;               /* the rest of the body is skipped */
    rc = multipart_feed(st->mp, d, n, &e);
    if (rc == ERR_INVALID)
        stow_bad(st, 400, "malformed multipart body: %s", e.msg);
    else if (rc < 0)
        stow_bad(st, 500, "failed to take the request body: %s", e.msg);
    return 0;
}

static void stow_respond(struct stow *st)
{
    struct http_req *r = st->r;
    json_t *out;
    int status;

    if (st->paused) {
        st->paused = 0;
        http_body_pause(r, 0);
    }
    if (st->bad_status == 500) {
        log_error("stow: %s", st->bad_msg);
        http_respond_error(r, 500, "internal", "%s", st->bad_msg);
        return;
    }
    if (st->bad_status) {
        http_respond_error(r, st->bad_status, "invalid", "%s (%d "
                           "instance(s) before it were stored)",
                           st->bad_msg, st->nstored);
        return;
    }
    if (multipart_parts(st->mp) == 0) {
        http_respond_error(r, 400, "invalid",
                           "the multipart body has no parts");
        return;
    }
    for (int i = 0; i < st->nstudies; i++)
        ws_images_arrived(st->srv, st->studies[i]);     /* throttled */
    out = json_object();
    if (st->nstudies == 1 && !st->study_mixed) {
        char url[512];
        snprintf(url, sizeof(url), "%s/dicomweb/studies/%s", st->base,
                 st->studies[0]);
        json_object_set_new(out, "00081190", attr_str("UR", url));
    }
    json_object_set_new(out, "00081199",
                        json_pack("{s:s,s:O}", "vr", "SQ", "Value", st->ok));
    if (st->nfailed)
        json_object_set_new(out, "00081198",
                            json_pack("{s:s,s:O}", "vr", "SQ", "Value",
                                      st->failed));
    status = !st->nfailed ? 200 : st->nstored ? 202 : 409;
    log_info("stow: %s from %s: %d stored, %d failed -> %d", st->login,
             st->remote, st->nstored, st->nfailed, status);
    http_respond_json_type(r, status, "application/dicom+json", out);
}

static void stow_end(struct http_req *r)
{
    struct stow *st = http_state(r);
    struct err e = { 0 };

    if (r->content_length <= 0) {
        http_respond_error(r, 400, "invalid", "empty request body");
        return;
    }
    if (!st->bad_status && multipart_finish(st->mp, &e) < 0)
        stow_bad(st, 400, "malformed multipart body: %s", e.msg);
    st->ended = 1;
    if (st->inflight || st->head) {
        http_defer(r);          /* answered by the last part back */
        return;
    }
    stow_respond(st);
}

static void stow_begin(struct http_req *r, const char *study)
{
    struct multipart_ctype ct;
    struct err e = { 0 };
    struct stow *st;

    if (!r->content_type) {
        http_respond_error(r, 415, "unsupported_media_type",
                           "STOW-RS needs Content-Type: multipart/related; "
                           "type=\"application/dicom\"; boundary=...");
        return;
    }
    if (multipart_parse_ctype(r->content_type, &ct, &e) < 0) {
        if (!strncasecmp(r->content_type, "multipart/related", 17))
            http_respond_error(r, 400, "invalid", "%s", e.msg);
        else
            http_respond_error(r, 415, "unsupported_media_type",
                               "%s", e.msg);
        return;
    }
    if (strcmp(ct.media, "multipart/related") ||
        (ct.type[0] && strcmp(ct.type, "application/dicom"))) {
        http_respond_error(r, 415, "unsupported_media_type",
                           "STOW-RS takes multipart/related; "
                           "type=\"application/dicom\", not %.100s",
                           r->content_type);
        return;
    }
    if (!ct.boundary[0]) {
        http_respond_error(r, 400, "invalid",
                           "no boundary parameter in the Content-Type");
        return;
    }
    if (!http_accepts(r, "application/dicom+json") &&
        !http_accepts(r, "application/json")) {
        http_respond_error(r, 406, "not_acceptable",
                           "STOW-RS answers application/dicom+json");
        return;
    }
    if (!r->srv->jobs) {
        http_respond_error(r, 503, "unavailable", "no worker to store with");
        return;
    }
    st = calloc(1, sizeof(*st));
    if (!st) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    st->r = r;
    st->srv = r->srv;
    st->fd = -1;
    st->wbuf = malloc(STOW_WBUF);
    st->ok = json_array();
    st->failed = json_array();
    strlcpy_h(st->login, r->who.login, sizeof(st->login));
    strlcpy_h(st->remote, r->remote, sizeof(st->remote));
    st->clinic_id = r->who.clinic_id;
    if (study)
        strlcpy_h(st->study, study, sizeof(st->study));
    http_base_url(r, st->base, sizeof(st->base));
    st->mp = multipart_new(ct.boundary, &stow_cb, st, &e);
    http_set_state(r, st, stow_free);
    if (!st->wbuf) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    if (!st->mp) {
        http_respond_err(r, &e);
        return;
    }
    http_body_stream(r, stow_chunk, stow_end);
}

/* ---- QIDO-RS ------------------------------------------------------------ */

/* A query parameter by keyword or by tag ("PatientID" or "00100020"). */
static const char *qparam(struct http_req *r, const char *kw,
                          const char *tag)
{
    const char *v = http_param(r, kw);

    return v ? v : http_param(r, tag);
}

static int int_param(struct http_req *r, const char *name, int *out)
{
    const char *v = http_param(r, name);
    char *end;
    long n;

    if (!v)
        return 0;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > 100000000) {
        http_respond_error(r, 400, "invalid", "%s must be a non-negative "
                           "integer, not \"%.40s\"", name, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

enum qido_level { Q_STUDIES, Q_SERIES, Q_INSTANCES };

/* One includefield value: "all", a keyword (letters and digits, starting
 * with a capital) or a tag of 8 hex digits, possibly a sequence path of
 * those joined by '.'. */
static int includefield_ok(const char *v, size_t n)
{
    size_t i = 0;

    if (n == 0)
        return 0;
    if (n == 3 && !strncmp(v, "all", 3))
        return 1;
    while (i < n) {
        size_t k = i, hex = 1;
        while (k < n && v[k] != '.') {
            if (!isalnum((unsigned char)v[k]))
                return 0;
            hex &= isxdigit((unsigned char)v[k]) != 0;
            k++;
        }
        if (k == i || !((hex && k - i == 8) ||
                        (v[i] >= 'A' && v[i] <= 'Z' && k - i <= 64)))
            return 0;
        i = k + (k < n);
        if (k < n && i == n)
            return 0;           /* a trailing '.' */
    }
    return 1;
}

/* Every value is checked for control bytes; includefield (repeatable,
 * comma-separated) and fuzzymatching are checked, then accepted: every
 * answer holds all the attributes Hashi indexes, and matching is what it
 * is.  0, or -1 when answered 400. */
static int qido_options(struct http_req *r)
{
    for (size_t i = 0; i < r->nparams; i++) {
        const char *name = r->params[i].name, *v = r->params[i].value;
        /* DICOMweb query values are UTF-8 text: a control byte is never
         * part of a value, and would only reach the index's LIKE.  (%00
         * never gets here: libwebsockets drops the connection on it.) */
        for (const unsigned char *c = (const unsigned char *)v; *c; c++)
            if (*c < 0x20 || *c == 0x7f) {
                http_respond_error(r, 400, "invalid", "%.40s: control "
                                   "characters are not allowed in a query "
                                   "value", name);
                return -1;
            }
        if (!strcmp(name, "fuzzymatching")) {
            if (strcmp(v, "true") && strcmp(v, "false")) {
                http_respond_error(r, 400, "invalid", "fuzzymatching is "
                                   "true or false, not \"%.40s\"", v);
                return -1;
            }
            continue;
        }
        if (strcmp(name, "includefield"))
            continue;
        for (const char *p = v;; p++) {
            size_t n = strcspn(p, ",");
            if (!includefield_ok(p, n)) {
                http_respond_error(r, 400, "invalid", "includefield takes "
                                   "\"all\", attribute keywords or tags "
                                   "(00100010), comma-separated; not "
                                   "\"%.60s\"", v);
                return -1;
            }
            p += n;
            if (!*p)
                break;
        }
    }
    return 0;
}

static void qido(struct http_req *r, enum qido_level level,
                 const char *study, const char *series)
{
    struct store_query q;
    struct store_scope scope;
    struct err e = { 0 };
    json_t *out = NULL;
    char object[160], detail[64];
    const char *v;
    int rc;

    if (!http_accepts(r, "application/dicom+json") &&
        !http_accepts(r, "application/json")) {
        http_respond_error(r, 406, "not_acceptable",
                           "QIDO-RS answers application/dicom+json");
        return;
    }
    if (qido_options(r) < 0)
        return;
    memset(&q, 0, sizeof(q));
    q.study_description = qparam(r, "StudyDescription", "00081030");
    q.patient_id = qparam(r, "PatientID", "00100020");
    q.patient_name = qparam(r, "PatientName", "00100010");
    q.study_date = qparam(r, "StudyDate", "00080020");
    q.accession = qparam(r, "AccessionNumber", "00080050");
    q.modality = qparam(r, "ModalitiesInStudy", "00080061");
    if (level != Q_STUDIES && (v = qparam(r, "Modality", "00080060")))
        q.modality = v;
    q.study_uid = study ? study : qparam(r, "StudyInstanceUID", "0020000D");
    q.series_uid = series ? series :
                   qparam(r, "SeriesInstanceUID", "0020000E");
    q.sop_uid = qparam(r, "SOPInstanceUID", "00080018");
    if (int_param(r, "limit", &q.limit) < 0 ||
        int_param(r, "offset", &q.offset) < 0)
        return;
    access_scope(&r->who, &scope);
    switch (level) {
    case Q_STUDIES:
        rc = store_qido_studies(r->srv->store, &scope, &q, &out, &e);
        break;
    case Q_SERIES:
        rc = store_qido_series(r->srv->store, &scope, &q, &out, &e);
        break;
    default:
        rc = store_qido_instances(r->srv->store, &scope, &q, &out, &e);
        break;
    }
    snprintf(object, sizeof(object), "%s%s%s",
             level == Q_STUDIES ? "studies" : study,
             series ? "/" : "", series ? series : "");
    if (rc < 0) {
        audit(r, "query", object, "error", e.msg);
        http_respond_err(r, &e);
        return;
    }
    snprintf(detail, sizeof(detail), "%zu result(s)", json_array_size(out));
    audit(r, "query", object, "ok", detail);
    http_respond_json_type(r, 200, "application/dicom+json", out);
}

/* ---- WADO-RS ------------------------------------------------------------ */

struct wado {
    struct store_instance *list;
    size_t n;
    char boundary[48];
    size_t idx;                 /* part being sent */
    int phase;                  /* 0 part header, 1 file, 2 closing */
    char head[512];
    size_t head_len, head_off;
    int fd;
    uint64_t left;              /* file bytes still to send */
};

static size_t part_header(const struct wado *w, size_t i, char *out,
                          size_t n)
{
    int k = snprintf(out, n, "%s--%s\r\nContent-Type: application/dicom; "
                     "transfer-syntax=%s\r\nContent-Length: %llu\r\n\r\n",
                     i ? "\r\n" : "", w->boundary,
                     w->list[i].transfer_syntax,
                     (unsigned long long)w->list[i].size);
    return k < 0 ? 0 : (size_t)k;
}

static size_t closing(const struct wado *w, char *out, size_t n)
{
    int k = snprintf(out, n, "%s--%s--\r\n", w->n ? "\r\n" : "",
                     w->boundary);
    return k < 0 ? 0 : (size_t)k;
}

static void wado_free(void *p)
{
    struct wado *w = p;

    if (w->fd >= 0)
        close(w->fd);
    free(w->list);
    free(w);
}

static ssize_t wado_fill(void *arg, unsigned char *buf, size_t cap)
{
    struct wado *w = arg;
    size_t got = 0;

    while (got < cap) {
        if (w->phase == 0 && w->head_off == w->head_len) {
            if (w->idx == w->n) {
                w->head_len = closing(w, w->head, sizeof(w->head));
                w->phase = 2;
            } else {
                w->head_len = part_header(w, w->idx, w->head,
                                          sizeof(w->head));
            }
            w->head_off = 0;
        }
        if (w->phase == 0 || w->phase == 2) {
            size_t k = w->head_len - w->head_off;
            if (k > cap - got)
                k = cap - got;
            memcpy(buf + got, w->head + w->head_off, k);
            w->head_off += k;
            got += k;
            if (w->head_off < w->head_len || w->phase == 2)
                break;
            /* header done: open the file */
            struct stat sb;
            w->fd = open(w->list[w->idx].path, O_RDONLY | O_CLOEXEC);
            if (w->fd < 0 || fstat(w->fd, &sb) < 0 ||
                (uint64_t)sb.st_size != w->list[w->idx].size) {
                log_error("wado: blob %s missing or changed",
                          w->list[w->idx].path);
                return -1;
            }
            w->left = w->list[w->idx].size;
            w->phase = 1;
        }
        if (w->phase == 1) {
            size_t k = cap - got;
            ssize_t rd;
            if (k > w->left)
                k = (size_t)w->left;
            if (k) {
                rd = read(w->fd, buf + got, k);
                if (rd < 0 && errno == EINTR)
                    continue;
                if (rd <= 0) {
                    log_error("wado: reading %s: %s", w->list[w->idx].path,
                              rd < 0 ? strerror(errno) : "short file");
                    return -1;
                }
                got += (size_t)rd;
                w->left -= (uint64_t)rd;
            }
            if (!w->left) {
                close(w->fd);
                w->fd = -1;
                w->idx++;
                w->phase = 0;
                w->head_len = w->head_off = 0;
            }
        }
    }
    return (ssize_t)got;
}

static void wado(struct http_req *r, const char *study, const char *series,
                 const char *sop)
{
    struct wado *w;
    char object[200], detail[64], ctype[160], tmp[512];
    uint64_t total = 0;

    if (!http_accepts(r, "multipart/related")) {
        http_respond_error(r, 406, "not_acceptable",
                           "WADO-RS answers multipart/related; "
                           "type=\"application/dicom\"");
        return;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    w->fd = -1;
    snprintf(object, sizeof(object), "%s%s%s%s%s", study,
             series ? "/" : "", series ? series : "", sop ? "/" : "",
             sop ? sop : "");
    if (dicomweb_instances(r, "retrieve", object, study, series, sop,
                           &w->list, &w->n) < 0) {
        wado_free(w);
        return;
    }
    random_hex(w->boundary, 16);
    for (size_t i = 0; i < w->n; i++) {
        struct stat sb;
        if (stat(w->list[i].path, &sb) < 0) {
            log_error("wado: blob %s of %s: %s", w->list[i].path,
                      w->list[i].sop_uid, strerror(errno));
            audit(r, "retrieve", object, "error", "blob missing");
            wado_free(w);
            http_respond_error(r, 500, "internal",
                               "a stored file is missing; see the log");
            return;
        }
        w->list[i].size = (uint64_t)sb.st_size;
        total += part_header(w, i, tmp, sizeof(tmp)) + w->list[i].size;
    }
    total += closing(w, tmp, sizeof(tmp));
    snprintf(ctype, sizeof(ctype), "multipart/related; "
             "type=\"application/dicom\"; boundary=%s", w->boundary);
    snprintf(detail, sizeof(detail), "%zu instance(s)", w->n);
    audit(r, "retrieve", object, "ok", detail);
    http_add_header(r, "Cache-Control", "private, no-store");
    http_respond_stream(r, 200, ctype, total, wado_fill, w, wado_free);
}

/* ---- rendered ----------------------------------------------------------- */

/* An image of a patient: never kept by a shared cache, and by the browser
 * only for a minute -- long enough for the viewer's read-ahead of the
 * neighbouring slices; after that it asks again (If-None-Match), and the
 * access check runs before the 304. */
#define RENDERED_CACHE_CONTROL "private, max-age=60"

static int parse_window(struct http_req *r, struct dcm_render_opts *o)
{
    const char *v = http_param(r, "window");
    char fn[16] = "";
    double c, w;
    int n = 0;

    o->window_mode = DCM_WINDOW_DEFAULT;
    if (!v || !*v)
        return 0;
    if (dicom_window_preset(v, &c, &w) == 0) {
        o->window_mode = DCM_WINDOW_EXPLICIT;
        o->center = c;
        o->width = w;
        return 0;
    }
    if (sscanf(v, "%lf,%lf%n", &c, &w, &n) != 2 ||
        (v[n] && (v[n] != ',' || sscanf(v + n + 1, "%15[A-Za-z_]%n", fn,
                                        &n) != 1))) {
        http_respond_error(r, 400, "invalid", "window must be "
                           "center,width[,function] or a preset name "
                           "(brain, subdural, stroke, bone, lung, abdomen)");
        return -1;
    }
    if (fn[0] && strcasecmp(fn, "linear")) {
        http_respond_error(r, 422, "unsupported", "window function \"%s\" "
                           "is not supported; only linear", fn);
        return -1;
    }
    if (!(w >= 1.0) || w > 1e7 || c < -1e7 || c > 1e7) {
        http_respond_error(r, 400, "invalid", "window width must be at "
                           "least 1 and values sane");
        return -1;
    }
    o->window_mode = DCM_WINDOW_EXPLICIT;
    o->center = c;
    o->width = w;
    return 0;
}

static int parse_viewport(struct http_req *r, struct dcm_render_opts *o)
{
    const char *v = http_param(r, "viewport");
    int w, h, n = 0;

    if (!v || !*v)
        return 0;
    if (sscanf(v, "%d,%d%n", &w, &h, &n) != 2 || v[n] || w < 1 || h < 1 ||
        w > 8192 || h > 8192) {
        http_respond_error(r, 400, "invalid", "viewport must be W,H "
                           "(1..8192 each)");
        return -1;
    }
    o->max_width = w;
    o->max_height = h;
    return 0;
}

static int etag_matches(const char *if_none_match, const char *etag)
{
    const char *p = if_none_match;

    if (!p)
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    return !strcmp(p, "*") || strstr(p, etag) != NULL;
}

/* Rendered images come from the render cache when they have been made
 * before (render.h: keyed by the blob's SHA-256 and the options, so never
 * stale), else are rendered and kept.  The strong ETag names the same
 * key, so a client holding the image gets 304 without any rendering. */
static void rendered(struct http_req *r, const char *study,
                     const char *series, const char *sop, const char *frame,
                     int thumb)
{
    struct dcm_render_opts o;
    struct render_key k;
    struct store_scope scope;
    struct store_instance in;
    struct err e = { 0 };
    unsigned char *jpeg = NULL;
    size_t len = 0;
    char etag[35], detail[64];
    int n = 1, q = 0, rc;
    double t0;

    memset(&o, 0, sizeof(o));
    if (frame && dicomweb_frame_number(r, frame, &n) < 0)
        return;
    if (!http_accepts(r, "image/jpeg")) {
        http_respond_error(r, 406, "not_acceptable",
                           "rendered images are image/jpeg");
        return;
    }
    if (parse_window(r, &o) < 0 || parse_viewport(r, &o) < 0 ||
        int_param(r, "quality", &q) < 0)
        return;
    if (thumb && !o.max_width)
        o.max_width = o.max_height = thumb;
    if (q > 100) {
        http_respond_error(r, 400, "invalid", "quality is 1..100");
        return;
    }
    o.quality = q;
    o.frame = n - 1;
    access_scope(&r->who, &scope);
    rc = store_find_instance(r->srv->store, &scope, study, series, sop, &in,
                             &e);
    if (rc < 0) {
        audit(r, "render", sop, rc == ERR_NOTFOUND ? "not_found" : "error",
              e.msg);
        if (rc == ERR_NOTFOUND)
            http_respond_error(r, 404, "not_found", "no such instance");
        else
            http_respond_err(r, &e);
        return;
    }
    if (in.frames > 0 && n > in.frames) {
        http_respond_error(r, 404, "not_found", "frame %d of %d", n,
                           in.frames);
        return;
    }
    memset(&k, 0, sizeof(k));
    strlcpy_h(k.sha256, in.sha256, sizeof(k.sha256));
    k.frame = o.frame;
    k.window_mode = o.window_mode;
    k.center = o.center;
    k.width = o.width;
    k.max_width = o.max_width;
    k.max_height = o.max_height;
    k.quality = q ? q : 90;               /* dicom.h: 0 means 90 */
    render_etag(&k, etag);
    if (etag_matches(r->if_none_match, etag)) {
        audit(r, "render", sop, "ok", "not modified");
        http_add_header(r, "ETag", etag);
        http_add_header(r, "Cache-Control", RENDERED_CACHE_CONTROL);
        http_respond_bytes(r, 304, "image/jpeg", NULL, 0);
        return;
    }
    jpeg = render_cache_get(r->srv->render, &k, &len);
    if (jpeg) {
        snprintf(detail, sizeof(detail), "frame %d, cached", n);
    } else {
        t0 = now_mono();
        rc = dicom_render_jpeg(in.path, &o, &jpeg, &len, NULL, NULL, &e);
        metrics_render(&r->srv->metrics, now_mono() - t0);
        if (rc < 0) {
            audit(r, "render", sop, "error", e.msg);
            if (rc == ERR_NOTFOUND)
                http_respond_error(r, 404, "not_found", "%s", e.msg);
            else if (rc == ERR_UNSUPPORTED || rc == ERR_INVALID)
                http_respond_error(r, 422, "unsupported", "cannot render "
                                   "this instance: %s", e.msg);
            else
                http_respond_err(r, &e);
            return;
        }
        render_cache_put(r->srv->render, &k, jpeg, len);
        snprintf(detail, sizeof(detail), "frame %d", n);
    }
    audit(r, "render", sop, "ok", detail);
    http_add_header(r, "ETag", etag);
    http_add_header(r, "Cache-Control", RENDERED_CACHE_CONTROL);
    http_respond_bytes(r, 200, "image/jpeg", jpeg, len);
}

/* A thumbnail (PS3.18 10.4.1.1.4): the rendered image, at most
 * THUMB_PX square unless a viewport is given; for a study or series, of
 * its middle instance. */
#define THUMB_PX 128

static void thumbnail(struct http_req *r, const char *study,
                      const char *series, const char *sop, const char *frame)
{
    struct store_instance *list = NULL;
    char mid[65];
    size_t n = 0;

    if (sop) {
        rendered(r, study, series, sop, frame, THUMB_PX);
        return;
    }
    if (dicomweb_instances(r, "render", series ? series : study, study,
                           series, NULL, &list, &n) < 0)
        return;
    strlcpy_h(mid, list[n / 2].sop_uid, sizeof(mid));
    series = list[n / 2].series_uid;
    rendered(r, study, series, mid, NULL, THUMB_PX);
    free(list);
}

/* ---- routing ------------------------------------------------------------ */

void dicomweb_handle(struct http_req *r)
{
    char path[1024];
    char *seg[MAX_SEGS], *p, *save = NULL;
    int n = 0, get = r->method == HTTP_GET;
    const char *st, *se, *sop;

    if (strlen(r->path) >= sizeof(path)) {
        http_respond_error(r, 404, "not_found", "no such resource");
        return;
    }
    strlcpy_h(path, r->path + strlen("/dicomweb"), sizeof(path));
    for (p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == MAX_SEGS) {
            http_respond_error(r, 404, "not_found", "no such resource");
            return;
        }
        seg[n++] = p;
    }
    if (n < 1 || strcmp(seg[0], "studies")) {
        http_respond_error(r, 404, "not_found", "no such DICOMweb resource "
                           "(supported: /dicomweb/studies...)");
        return;
    }
    /* Every UID position is checked before any lookup. */
    for (int i = 1; i < n; i++) {
        int uid_pos = i == 1 || (i == 3 && !strcmp(seg[2], "series")) ||
                      (i == 5 && !strcmp(seg[4], "instances"));
        if (uid_pos && !dicom_uid_valid(seg[i])) {
            http_respond_error(r, 400, "invalid", "\"%.70s\" is not a "
                               "valid UID", seg[i]);
            return;
        }
    }
    st = n > 1 ? seg[1] : NULL;
    if (n <= 2) {
        if (r->method == HTTP_POST)
            stow_begin(r, st);
        else if (n == 1)
            qido(r, Q_STUDIES, NULL, NULL);
        else
            wado(r, st, NULL, NULL);
        return;
    }
    if (!get) {
        http_add_header(r, "Allow", "GET");
        http_respond_error(r, 405, "method_not_allowed",
                           "only GET is allowed here");
        return;
    }
    if (n == 3 && !strcmp(seg[2], "metadata")) {
        wado_metadata(r, st, NULL, NULL);
        return;
    }
    if (n == 3 && !strcmp(seg[2], "thumbnail")) {
        thumbnail(r, st, NULL, NULL, NULL);
        return;
    }
    if (n == 3 && !strcmp(seg[2], "series")) {
        qido(r, Q_SERIES, st, NULL);
        return;
    }
    if (n == 3 && !strcmp(seg[2], "instances")) {
        qido(r, Q_INSTANCES, st, NULL);
        return;
    }
    if (strcmp(seg[2], "series")) {
        http_respond_error(r, 404, "not_found", "no such DICOMweb resource");
        return;
    }
    se = seg[3];
    if (n == 4) {
        wado(r, st, se, NULL);
        return;
    }
    if (n == 5 && !strcmp(seg[4], "metadata")) {
        wado_metadata(r, st, se, NULL);
        return;
    }
    if (n == 5 && !strcmp(seg[4], "thumbnail")) {
        thumbnail(r, st, se, NULL, NULL);
        return;
    }
    if (n == 5 && !strcmp(seg[4], "geometry")) {
        imageinfo_geometry(r, st, se);
        return;
    }
    if (strcmp(seg[4], "instances")) {
        http_respond_error(r, 404, "not_found", "no such DICOMweb resource");
        return;
    }
    if (n == 5) {
        qido(r, Q_INSTANCES, st, se);
        return;
    }
    sop = seg[5];
    if (n == 6) {
        wado(r, st, se, sop);
        return;
    }
    if (n == 7 && !strcmp(seg[6], "metadata")) {
        wado_metadata(r, st, se, sop);
        return;
    }
    if (n == 7 && !strcmp(seg[6], "thumbnail")) {
        thumbnail(r, st, se, sop, NULL);
        return;
    }
    if (n == 8 && !strcmp(seg[6], "frames")) {
        wado_frames(r, st, se, sop, seg[7]);
        return;
    }
    if (n == 8 && !strcmp(seg[6], "bulkdata")) {
        wado_bulkdata(r, st, se, sop, seg[7]);
        return;
    }
    if (n == 9 && !strcmp(seg[6], "frames") &&
        !strcmp(seg[8], "thumbnail")) {
        thumbnail(r, st, se, sop, seg[7]);
        return;
    }
    if (n == 7 && !strcmp(seg[6], "rendered")) {
        rendered(r, st, se, sop, NULL, 0);
        return;
    }
    if (n == 9 && !strcmp(seg[6], "frames") && !strcmp(seg[8], "rendered")) {
        rendered(r, st, se, sop, seg[7], 0);
        return;
    }
    if (n == 7 && !strcmp(seg[6], "probe")) {
        imageinfo_probe(r, st, se, sop, NULL);
        return;
    }
    if (n == 9 && !strcmp(seg[6], "frames") && !strcmp(seg[8], "probe")) {
        imageinfo_probe(r, st, se, sop, seg[7]);
        return;
    }
    http_respond_error(r, 404, "not_found", "no such DICOMweb resource");
}
