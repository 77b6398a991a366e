/*
 * upload — resumable uploads and study previews (see upload.h).
 *
 * An upload in memory (struct upload) exists while a session is bound to
 * it or a job of it is in flight; otherwise it lives only as its row and
 * its part file, and the next upload.begin loads it again.  Its bytes go
 * through three stages: received (`recv`), handed to a flush job, and
 * durable (`durable`, also in the row).  At most one job per upload runs
 * at a time, so flushes are written in order and upload.end's ingest sees
 * the whole file.  Anything that has to wait for the upload to be idle
 * (an upload.begin answering the durable offset, an upload.end, the
 * upload.at owed after a dropped chunk) is remembered and done from the
 * job's done callback (upload_settle).
 *
 * upload.at: the answer to upload.begin (with its id); after each flush,
 * unsolicited with reason "progress" (the client keeps sending); after a
 * dropped chunk, once what came before it is durable, with reason
 * "resend" (the client goes back to offset).
 */
#include "upload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../proto/log.h"
#include "access.h"
#include "jobs.h"
#include "photo.h"

#define UP_FLUSH_AT (2u << 20)      /* bytes collected: write them out */
#define UP_HELD_MAX (16u << 20)     /* collected + flushing: drop above */
#define UP_EXPIRE_EVERY_MS 1000

enum { UP_INSTANCE = 1, UP_PREVIEW = 2, UP_PHOTO = 3 };
enum { JOB_NONE = 0, JOB_FLUSH, JOB_INGEST };

struct upload {
    struct upload *next;
    struct upload_hub *hub;
    int64_t row;                    /* uploads.id */
    char principal[64];             /* login, or gateway:<name> */
    char upload_id[MSG_ID_MAX + 1];
    int64_t clinic_id;
    char remote[64];
    int kind;                       /* UP_INSTANCE, UP_PREVIEW, UP_PHOTO */
    char study_uid[MSG_UID_MAX + 1];
    char case_id[MSG_ID_MAX + 1];   /* "" if none */
    int64_t created;                /* ms: a photo's acquisition time */
    char sha256[65];
    int64_t size;
    int64_t durable;                /* synced (and in the row) */
    int64_t recv;                   /* received: durable + held */
    int fd;
    char path[4096];
    unsigned char *buf;             /* received, not yet handed over */
    size_t blen, bcap;
    void *sess;                     /* bound session, or NULL */
    char begin_id[MSG_ID_MAX + 1];  /* answers owed once idle */
    char end_id[MSG_ID_MAX + 1];
    int resend;                     /* a gap: upload.at resend owed */
    int64_t resent_at;              /* ... sent at this offset; -1 */
    /* the job in flight (one at a time) */
    struct job job;
    int job_kind;
    unsigned char *jbuf;            /* JOB_FLUSH: bytes and where */
    size_t jlen;
    int64_t joff;
    int rc;                         /* the job's result */
    struct err e;
    int status;                     /* JOB_INGEST: enum msg_upload_status */
    char done_uid[MSG_UID_MAX + 1];
    struct dcm_info info;
};

struct upload_hub {
    struct server *srv;
    upload_send_fn send;
    char dir[4096];                 /* DATA/uploads */
    char previews[4096];            /* DATA/previews */
    struct upload *all;
    int64_t expired_at;
};

/* ---- helpers ------------------------------------------------------------ */

static sqlite3 *db_of(struct upload_hub *h)
{
    return store_db(h->srv->store);
}

static void send_msg(struct upload *u, struct msg *m)
{
    if (u->sess)
        u->hub->send(u->sess, m);
    msg_free(m);
}

static void send_at(struct upload *u, const char *id, int reason)
{
    struct msg m;
    struct msg_error me;
    if (msg_build_upload_at(&m, id && *id ? id : NULL, u->upload_id,
                            u->durable, &me) == 0) {
        m.upload_at.reason = reason;
        send_msg(u, &m);
    }
}

static void send_reply_err(struct upload_hub *h, void *sess, const char *id,
                           enum msg_code code, const char *text)
{
    struct msg m;
    struct msg_error me;
    if (msg_build_reply_err(&m, id, code, text, &me) == 0 && sess)
        h->send(sess, &m);
    msg_free(&m);
}

static void send_error(struct upload_hub *h, void *sess, enum msg_code code,
                       const char *text)
{
    struct msg m;
    struct msg_error me;
    if (msg_build_error(&m, code, text, &me) == 0 && sess)
        h->send(sess, &m);
    msg_free(&m);
}

static void send_done(struct upload_hub *h, void *sess, const char *id,
                      const char *upload_id, int kind, const char *uid,
                      int status)
{
    struct msg m;
    struct msg_error me;
    int rc = kind == UP_PREVIEW
             ? msg_build_upload_done_preview(&m, id, upload_id, uid, status,
                                             &me)
             : msg_build_upload_done(&m, id, upload_id, uid, status, &me);
    if (rc == 0 && sess)
        h->send(sess, &m);
    else if (rc)
        log_error("upload: upload.done of %s: %s", upload_id, me.message);
    msg_free(&m);
}

static int status_of(const char *s)
{
    return !s ? 0 : !strcmp(s, "stored") ? MSG_UP_STORED
           : !strcmp(s, "duplicate") ? MSG_UP_DUPLICATE
           : !strcmp(s, "conflict") ? MSG_UP_CONFLICT : 0;
}

static const char *status_name(int st)
{
    return st == MSG_UP_DUPLICATE ? "duplicate"
           : st == MSG_UP_CONFLICT ? "conflict" : "stored";
}

static void col_copy(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    strlcpy_h(dst, t ? t : "", n);
}

/* The clinic owning study_uid's instances: 1 and *clinic, 0 if no
 * instance of it is stored, or ERR_DB. */
static int study_clinic(struct store *s, const char *study_uid,
                        int64_t *clinic, struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s, "SELECT clinic_id FROM studies WHERE study_uid = ?1", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *clinic = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "upload: study owner: %s",
                       sqlite3_errmsg(store_db(s)));
    return rc == SQLITE_ROW;
}

static void audit(struct upload *u, const char *action, const char *object,
                  const char *outcome, const char *detail)
{
    struct audit_entry a = {
        .actor = u->principal, .action = action, .object = object,
        .outcome = outcome, .remote = u->remote, .detail = detail,
    };
    if (u->hub->srv->audit)
        audit_write(u->hub->srv->audit, &a);
}

/* ---- the uploads table ---------------------------------------------------- */

static int row_delete(struct store *s, int64_t row)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(s, "DELETE FROM uploads WHERE id = ?1",
                                  &e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, row);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : ERR_DB;
}

static int row_done(struct store *s, int64_t row, int status,
                    const char *uid)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(
        s, "UPDATE uploads SET done_status = ?2, done_uid = ?3,"
           " touched = ?4 WHERE id = ?1", &e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, row);
    sqlite3_bind_text(st, 2, status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, uid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : ERR_DB;
}

static void part_path(struct upload_hub *h, int64_t row, char *out,
                      size_t n)
{
    char name[32];
    snprintf(name, sizeof name, "%lld.part", (long long)row);
    path_join(out, n, h->dir, name);
}

static void preview_path(struct upload_hub *h, const char *study_uid,
                         char *out, size_t n)
{
    char name[MSG_UID_MAX + 8];
    snprintf(name, sizeof name, "%s.jpg", study_uid);
    path_join(out, n, h->previews, name);
}

/* ---- memory ----------------------------------------------------------- */

static struct upload *find(struct upload_hub *h, const char *principal,
                           const char *upload_id)
{
    for (struct upload *u = h->all; u; u = u->next)
        if (!strcmp(u->principal, principal) &&
            !strcmp(u->upload_id, upload_id))
            return u;
    return NULL;
}

static void forget(struct upload *u)
{
    struct upload **pp = &u->hub->all;
    while (*pp && *pp != u)
        pp = &(*pp)->next;
    if (*pp)
        *pp = u->next;
    if (u->fd >= 0)
        close(u->fd);
    free(u->buf);
    free(u->jbuf);
    free(u);
}

static int busy(const struct upload *u)
{
    return u->job_kind != JOB_NONE;
}

/* ---- jobs ------------------------------------------------------------- */

static void job_done(void *arg);

/* Worker: write the held bytes, sync them, then record them as durable
 * (the row is what a restart believes). */
static void flush_work(void *ctx, void *arg)
{
    struct upload *u = arg;
    struct store *s = ctx;
    size_t off = 0;

    u->rc = 0;
    while (off < u->jlen) {
        ssize_t n = pwrite(u->fd, u->jbuf + off, u->jlen - off,
                           (off_t)(u->joff + (int64_t)off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            u->rc = err_set(&u->e, ERR_IO, "write %s: %s", u->path,
                            strerror(errno));
            return;
        }
        off += (size_t)n;
    }
    if (fdatasync(u->fd)) {
        u->rc = err_set(&u->e, ERR_IO, "fdatasync %s: %s", u->path,
                        strerror(errno));
        return;
    }
    /* The file's name must be durable before any offset in it is. */
    if (u->joff == 0 && fsync_dir(u->hub->dir)) {
        u->rc = err_set(&u->e, ERR_IO, "fsync %s", u->hub->dir);
        return;
    }
    sqlite3_stmt *st = s ? store_stmt(
        s, "UPDATE uploads SET durable = ?2, touched = ?3 WHERE id = ?1",
        &u->e) : NULL;
    if (!st) {
        u->rc = err_set(&u->e, ERR_DB, "upload: no store on the worker");
        return;
    }
    sqlite3_bind_int64(st, 1, u->row);
    sqlite3_bind_int64(st, 2, u->joff + (int64_t)u->jlen);
    sqlite3_bind_int64(st, 3, now_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        u->rc = err_set(&u->e, ERR_DB, "upload: durable: %s",
                        sqlite3_errmsg(store_db(s)));
    sqlite3_reset(st);
}

/* Hand the held bytes to a flush job (the caller checked !busy). */
static void flush_start(struct upload *u)
{
    u->jbuf = u->buf;
    u->jlen = u->blen;
    u->joff = u->durable;
    u->buf = NULL;
    u->blen = u->bcap = 0;
    u->job_kind = JOB_FLUSH;
    jobs_submit(u->hub->srv->jobs, &u->job, flush_work, job_done, u);
}

/* Is sha the preview s holds for study_uid?  (s: the lws thread's store
 * at upload.begin, a worker's at upload.end.) */
static int same_preview(struct store *s, const char *study_uid,
                        const char *sha)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(
        s, "SELECT 1 FROM study_previews WHERE study_uid = ?1"
           " AND sha256 = ?2", &e);
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sha, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

/* Worker: the preview's part of upload.end. */
static int ingest_preview(struct upload *u, struct store *s)
{
    unsigned char head[3] = { 0 };
    int64_t owner;
    int rc;

    if (pread(u->fd, head, 3, 0) != 3 || head[0] != 0xff ||
        head[1] != 0xd8 || head[2] != 0xff)
        return err_set(&u->e, ERR_INVALID, "not a JPEG file");
    if ((rc = study_clinic(s, u->study_uid, &owner, &u->e)) < 0)
        return rc;
    if (rc == 1 && owner != u->clinic_id)
        return err_set(&u->e, ERR_FORBIDDEN, "refused: study %s",
                       u->study_uid);
    strlcpy_h(u->done_uid, u->study_uid, sizeof u->done_uid);
    if (same_preview(s, u->study_uid, u->sha256)) {
        u->status = MSG_UP_DUPLICATE;
        unlink(u->path);
        return 0;
    }
    char dst[4096];
    preview_path(u->hub, u->study_uid, dst, sizeof dst);
    if (rename(u->path, dst) || fsync_dir(u->hub->previews))
        return err_set(&u->e, ERR_IO, "preview %s: %s", dst,
                       strerror(errno));
    sqlite3_stmt *st = store_stmt(
        s, "INSERT INTO study_previews (study_uid, clinic_id, sha256, size,"
           " at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (study_uid) DO"
           " UPDATE SET clinic_id = ?2, sha256 = ?3, size = ?4, at = ?5",
        &u->e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, u->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, u->clinic_id);
    sqlite3_bind_text(st, 3, u->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, u->size);
    sqlite3_bind_int64(st, 5, now_ms());
    rc = sqlite3_step(st) == SQLITE_DONE ? 0
         : err_set(&u->e, ERR_DB, "preview row: %s",
                   sqlite3_errmsg(store_db(s)));
    sqlite3_reset(st);
    u->status = MSG_UP_STORED;
    return rc;
}

static int put_instance(struct upload *u, struct store *s, const char *tmp);

/* Worker: an instance's part of upload.end, through the store's put
 * (which takes the file over whatever happens). */
static int ingest_instance(struct upload *u, struct store *s)
{
    char tmp[4096];

    if (dicom_parse_file(u->path, &u->info, &u->e))
        return err_set(&u->e, ERR_INVALID, "not acceptable DICOM: %.200s",
                       u->e.msg);
    if (u->study_uid[0] && strcmp(u->info.study_uid, u->study_uid))
        return err_set(&u->e, ERR_INVALID, "Study Instance UID %s is not "
                       "the study_uid %s of upload.begin",
                       u->info.study_uid, u->study_uid);
    /* Another clinic's study: store_put_file refuses (ERR_FORBIDDEN). */
    snprintf(tmp, sizeof tmp, "%s/upload-%lld", store_tmp_dir(s),
             (long long)u->row);
    if (rename(u->path, tmp))
        return err_set(&u->e, ERR_IO, "rename %s: %s", u->path,
                       strerror(errno));
    return put_instance(u, s, tmp);
}

/* Worker: store the instance at tmp (the store takes it over). */
static int put_instance(struct upload *u, struct store *s, const char *tmp)
{
    struct store_source src = {
        .via = "upload", .calling_ae = NULL, .user = u->principal,
        .remote = u->remote, .clinic_id = u->clinic_id,
    };
    struct store_result res;
    int rc = store_put_file(s, tmp, &src, &res, &u->e);
    if (rc)
        return rc;
    u->info = res.info;
    strlcpy_h(u->done_uid, res.info.sop_uid, sizeof u->done_uid);
    u->status = res.outcome == STORE_DUPLICATE ? MSG_UP_DUPLICATE
                : res.outcome == STORE_CONFLICT ? MSG_UP_CONFLICT
                : MSG_UP_STORED;
    return 0;
}

/* Worker: a photo's part of upload.end: the JPEG wrapped as a DICOM
 * image of its case (photo.c), which then names the photo study, and
 * stored like any instance.  Not a JPEG: refused, nothing made. */
static int ingest_photo(struct upload *u, struct store *s)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/photo-%lld", store_tmp_dir(s),
             (long long)u->row);
    int rc = photo_make(s, u->case_id, u->path, u->sha256, u->created, tmp,
                        &u->e);
    if (!rc)
        rc = photo_attach(s, u->case_id, &u->e);
    if (rc) {
        unlink(tmp);
        return rc;
    }
    unlink(u->path);
    return put_instance(u, s, tmp);
}

/* Worker: upload.end — size and sha256, then the ingest.  A failure
 * discards the upload (row and file): the client begins again. */
static void ingest_work(void *ctx, void *arg)
{
    struct upload *u = arg;
    struct store *s = ctx;
    char sha[65];
    uint64_t size = 0;

    u->status = 0;
    if (!s) {
        u->rc = err_set(&u->e, ERR_INTERNAL, "upload: no store on the "
                        "worker");
        return;
    }
    u->rc = sha256_file(u->path, sha, &size, &u->e);
    if (!u->rc && (size != (uint64_t)u->size || strcmp(sha, u->sha256)))
        u->rc = err_set(&u->e, ERR_CONFLICT, "the file's sha256 is %s (%llu "
                        "bytes), not the %s of upload.begin; discarded, "
                        "begin again", sha, (unsigned long long)size,
                        u->sha256);
    if (!u->rc)
        u->rc = u->kind == UP_PREVIEW ? ingest_preview(u, s)
                : u->kind == UP_PHOTO ? ingest_photo(u, s)
                                      : ingest_instance(u, s);
    if (!u->rc) {
        if (row_done(s, u->row, u->status, u->done_uid))
            log_warn("upload: recording %s/%s as done: %s", u->principal,
                     u->upload_id, sqlite3_errmsg(store_db(s)));
    } else {
        /* discarded whatever failed: the put may have taken the file */
        unlink(u->path);
        row_delete(s, u->row);
    }
}

static void settle(struct upload *u);

/* Lws thread (jobs_reap). */
static void job_done(void *arg)
{
    struct upload *u = arg;
    struct server *srv = u->hub->srv;
    int kind = u->job_kind;

    u->job_kind = JOB_NONE;
    if (kind == JOB_FLUSH) {
        free(u->jbuf);
        u->jbuf = NULL;
        if (u->rc) {
            /* What was held is lost; the client resends from durable. */
            log_error("upload %s/%s: %s", u->principal, u->upload_id,
                      u->e.msg);
            u->recv = u->durable;
            free(u->buf);
            u->buf = NULL;
            u->blen = u->bcap = 0;
            u->resend = 1;
        } else {
            u->durable = u->joff + (int64_t)u->jlen;
            if (!u->begin_id[0] && !u->resend)
                send_at(u, NULL, MSG_UA_PROGRESS);
        }
        u->jlen = 0;
        settle(u);
        return;
    }

    /* JOB_INGEST: answer upload.end, report like STOW-RS does. */
    const char *id = u->end_id;
    enum msg_code code = MSG_E_NONE;
    if (u->rc == 0) {
        if (u->kind == UP_PREVIEW) {
            audit(u, "preview", u->study_uid, status_name(u->status) , NULL);
        } else {
            metrics_stored(&srv->metrics,
                           u->status == MSG_UP_DUPLICATE ? STORE_DUPLICATE
                           : u->status == MSG_UP_CONFLICT ? STORE_CONFLICT
                           : STORE_STORED, (uint64_t)u->size);
            if (u->status == MSG_UP_CONFLICT)
                audit(u, "conflict", u->done_uid, "conflict",
                      "same SOP Instance UID, other bytes: kept aside");
            else
                audit(u, "store", u->done_uid,
                      u->status == MSG_UP_DUPLICATE ? "duplicate" : "ok",
                      NULL);
            if (u->status == MSG_UP_STORED)
                ws_images_arrived(srv, u->info.study_uid);
        }
        send_done(u->hub, u->sess, id, u->upload_id, u->kind, u->done_uid,
                  u->status);
        if (u->begin_id[0])     /* a begin that came during the ingest */
            send_done(u->hub, u->sess, u->begin_id, u->upload_id, u->kind,
                      u->done_uid, u->status);
    } else {
        code = u->rc == ERR_CONFLICT ? MSG_E_CONFLICT
               : u->rc == ERR_INVALID ? MSG_E_BAD_FIELD
               : u->rc == ERR_FORBIDDEN ? MSG_E_FORBIDDEN
               : u->rc == ERR_TOOBIG ? MSG_E_TOO_BIG : MSG_E_INTERNAL;
        if (u->kind != UP_PREVIEW)
            metrics_stored(&srv->metrics, -1, 0);
        audit(u, "reject", u->info.sop_uid[0] ? u->info.sop_uid
                                              : u->upload_id,
              code == MSG_E_FORBIDDEN ? "denied" : "error", u->e.msg);
        if (code == MSG_E_INTERNAL)
            log_error("upload %s/%s: %s", u->principal, u->upload_id,
                      u->e.msg);
        /* the store's refusal names a study: the peer learns no more */
        const char *text = code == MSG_E_FORBIDDEN
                           ? "refused: not your clinic's study"
                           : code == MSG_E_INTERNAL
                           ? "internal error; begin again" : u->e.msg;
        send_reply_err(u->hub, u->sess, id, code, text);
        if (u->begin_id[0])
            send_reply_err(u->hub, u->sess, u->begin_id, code, text);
    }
    forget(u);      /* done, or discarded: the row says which */
}

/* The upload has no job in flight: start the next thing it owes. */
static void settle(struct upload *u)
{
    if (busy(u))
        return;
    if (!u->hub->srv->jobs) {   /* the pool has stopped: nothing to flush */
        if (!u->sess)
            forget(u);
        return;
    }
    int want_flush = u->blen && (u->blen >= UP_FLUSH_AT || u->begin_id[0] ||
                                 u->end_id[0] || u->resend || !u->sess ||
                                 u->recv == u->size);
    if (want_flush) {
        flush_start(u);
        return;
    }
    if (u->begin_id[0]) {
        /* what the old connection sent is durable now */
        u->recv = u->durable;
        free(u->buf);
        u->buf = NULL;
        u->blen = u->bcap = 0;
        send_at(u, u->begin_id, 0);
        u->begin_id[0] = 0;
        u->resend = 0;
    }
    if (u->resend && !u->blen) {
        send_at(u, NULL, MSG_UA_RESEND);
        u->resend = 0;
        u->resent_at = u->durable;
    }
    if (u->end_id[0]) {
        if (u->durable < u->size) {
            char text[160];
            snprintf(text, sizeof text, "bytes missing: the server has "
                     "%lld of %lld; send from %lld", (long long)u->durable,
                     (long long)u->size, (long long)u->durable);
            send_reply_err(u->hub, u->sess, u->end_id, MSG_E_NOT_READY,
                           text);
            u->end_id[0] = 0;
        } else {
            u->rc = 0;
            u->job_kind = JOB_INGEST;
            jobs_submit(u->hub->srv->jobs, &u->job, ingest_work, job_done,
                        u);
            return;
        }
    }
    if (!u->sess && !u->blen)
        forget(u);
}

/* ---- requests ----------------------------------------------------------- */

static int may_upload(const struct principal *who)
{
    return !strcmp(who->role, "requester") || !strcmp(who->role, "admin") ||
           !strcmp(who->role, "crew") ||
           !strcmp(who->role, "gateway");
}

/* Load (principal, upload_id) from its row into memory: 1 and *out, 0
 * if there is no row, or an error.  A finished upload is answered
 * (upload.done) and not loaded: *out stays NULL with 1. */
static int load(struct upload_hub *h, void *sess, const struct principal *who,
                const char *id, const char *upload_id, struct upload **out,
                struct err *e)
{
    struct store *s = h->srv->store;
    sqlite3_stmt *st = store_stmt(
        s, "SELECT id, kind, study_uid, sha256, size, durable, done_status,"
           " done_uid, clinic_id, case_id, created FROM uploads"
           " WHERE principal = ?1 AND upload_id = ?2", e);
    *out = NULL;
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, who->login, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, upload_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return 0;
    }
    struct upload *u = calloc(1, sizeof *u);
    if (!u) {
        sqlite3_reset(st);
        return err_set(e, ERR_INTERNAL, "out of memory");
    }
    u->hub = h;
    u->fd = -1;
    u->row = sqlite3_column_int64(st, 0);
    const char *kind = (const char *)sqlite3_column_text(st, 1);
    u->kind = !strcmp(kind, "preview") ? UP_PREVIEW
              : !strcmp(kind, "photo") ? UP_PHOTO : UP_INSTANCE;
    col_copy(u->study_uid, sizeof u->study_uid, st, 2);
    col_copy(u->sha256, sizeof u->sha256, st, 3);
    u->size = sqlite3_column_int64(st, 4);
    u->durable = sqlite3_column_int64(st, 5);
    char done[16], uid[MSG_UID_MAX + 1];
    col_copy(done, sizeof done, st, 6);
    col_copy(uid, sizeof uid, st, 7);
    u->clinic_id = sqlite3_column_int64(st, 8);
    col_copy(u->case_id, sizeof u->case_id, st, 9);
    u->created = sqlite3_column_int64(st, 10);
    sqlite3_reset(st);
    strlcpy_h(u->principal, who->login, sizeof u->principal);
    strlcpy_h(u->upload_id, upload_id, sizeof u->upload_id);
    if (done[0]) {
        send_done(h, sess, id, upload_id, u->kind, uid, status_of(done));
        free(u);
        return 1;
    }
    part_path(h, u->row, u->path, sizeof u->path);
    u->fd = open(u->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    /* Bytes past `durable` were never acknowledged: drop them. */
    if (u->fd < 0 || ftruncate(u->fd, (off_t)u->durable)) {
        err_set(e, ERR_IO, "upload: %s: %s", u->path, strerror(errno));
        if (u->fd >= 0)
            close(u->fd);
        free(u);
        return ERR_IO;
    }
    u->recv = u->durable;
    u->resent_at = -1;
    u->next = h->all;
    h->all = u;
    *out = u;
    return 1;
}

/* A new upload: its row and its empty part file. */
static int create(struct upload_hub *h, const struct principal *who,
                  const struct msg_upload_begin *b, struct err *e)
{
    struct store *s = h->srv->store;
    int64_t now = now_ms();
    sqlite3_stmt *st = store_stmt(
        s, "INSERT INTO uploads (principal, upload_id, clinic_id, kind,"
           " study_uid, case_id, sha256, size, durable, created, touched)"
           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?9)", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, who->login, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b->upload_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, who->clinic_id);
    sqlite3_bind_text(st, 4, b->kind == MSG_UK_PREVIEW ? "preview"
                             : b->kind == MSG_UK_PHOTO ? "photo"
                                                       : "instance",
                      -1, SQLITE_STATIC);
    if (b->study_uid[0])
        sqlite3_bind_text(st, 5, b->study_uid, -1, SQLITE_STATIC);
    if (b->case_id[0])
        sqlite3_bind_text(st, 6, b->case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, b->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, b->size);
    sqlite3_bind_int64(st, 9, now);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "upload: insert: %s",
                       sqlite3_errmsg(db_of(h)));
    return 0;
}

/* An instance already stored (same sha256, the uploader's clinic): its
 * SOP Instance UID into uid, 1; 0 if none. */
static int stored_sha(struct upload_hub *h, const struct principal *who,
                      const char *sha, char *uid, size_t n)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(
        h->srv->store,
        "SELECT i.sop_uid FROM instances i"
        " JOIN series se ON se.id = i.series_ref"
        " JOIN studies st ON st.id = se.study_ref"
        " WHERE i.sha256 = ?1 AND st.clinic_id = ?2 LIMIT 1", &e);
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, who->clinic_id);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        col_copy(uid, n, st, 0);
    sqlite3_reset(st);
    return found;
}

static void begin(struct upload_hub *h, void *sess,
                  const struct principal *who, const char *remote,
                  const struct msg *m)
{
    const struct msg_upload_begin *b = &m->upload_begin;
    int kind = b->kind == MSG_UK_PREVIEW ? UP_PREVIEW
               : b->kind == MSG_UK_PHOTO ? UP_PHOTO : UP_INSTANCE;
    struct server *srv = h->srv;
    struct err e = { 0, "" };
    char text[200];
    int64_t owner;

    if ((uint64_t)b->size > srv->cfg.max_instance ||
        (kind == UP_PREVIEW && b->size > MSG_PREVIEW_MAX)) {
        snprintf(text, sizeof text, "size: %lld bytes is over the "
                 "server's limit of %llu", (long long)b->size,
                 kind == UP_PREVIEW ? (unsigned long long)MSG_PREVIEW_MAX
                 : (unsigned long long)srv->cfg.max_instance);
        send_reply_err(h, sess, m->id, MSG_E_TOO_BIG, text);
        return;
    }
    struct upload *u = find(h, who->login, b->upload_id);
    if (!u) {
        int rc = load(h, sess, who, m->id, b->upload_id, &u, &e);
        if (rc < 0) {
            log_error("upload: begin %s: %s", b->upload_id, e.msg);
            send_reply_err(h, sess, m->id, MSG_E_INTERNAL, "internal error");
            return;
        }
        if (rc == 1 && !u)
            return;                     /* finished: upload.done sent */
    }
    if (u) {
        if (strcmp(u->sha256, b->sha256) || u->size != b->size ||
            u->kind != kind || (kind == UP_PREVIEW &&
                                strcmp(u->study_uid, b->study_uid)) ||
            (kind == UP_PHOTO && strcmp(u->case_id, b->case_id))) {
            send_reply_err(h, sess, m->id, MSG_E_CONFLICT, "upload_id: "
                           "taken by an upload of another file");
            settle(u);                  /* may free it if unbound */
            return;
        }
        u->sess = sess;
        strlcpy_h(u->remote, remote ? remote : "", sizeof u->remote);
        strlcpy_h(u->begin_id, m->id, sizeof u->begin_id);
        if (u->job_kind == JOB_INGEST)
            return;             /* answered with the upload.end */
        u->end_id[0] = 0;
        u->resend = 0;
        settle(u);
        return;
    }

    /* A new upload. */
    if (kind == UP_PREVIEW) {
        int rc = study_clinic(srv->store, b->study_uid, &owner, &e);
        if (rc == 1 && owner != who->clinic_id) {
            send_reply_err(h, sess, m->id, MSG_E_FORBIDDEN, "study_uid: "
                           "refused: not your clinic's study");
            return;
        }
        if (same_preview(srv->store, b->study_uid, b->sha256)) {
            send_done(h, sess, m->id, b->upload_id, kind, b->study_uid,
                      MSG_UP_DUPLICATE);
            return;
        }
    } else if (kind == UP_PHOTO) {
        char uid[65];
        if (photo_case_check(srv->store, who, b->case_id, &e)) {
            send_reply_err(h, sess, m->id, e.code == ERR_NOTFOUND
                           ? MSG_E_NOT_FOUND : MSG_E_INTERNAL, e.msg);
            return;
        }
        if (photo_stored(srv->store, b->case_id, b->sha256, uid)) {
            send_done(h, sess, m->id, b->upload_id, kind, uid,
                      MSG_UP_DUPLICATE);
            return;
        }
    } else {
        char uid[MSG_UID_MAX + 1];
        if (stored_sha(h, who, b->sha256, uid, sizeof uid)) {
            send_done(h, sess, m->id, b->upload_id, kind, uid,
                      MSG_UP_DUPLICATE);
            return;
        }
    }
    if (create(h, who, b, &e) == 0 &&
        load(h, sess, who, m->id, b->upload_id, &u, &e) == 1 && u) {
        u->sess = sess;
        strlcpy_h(u->remote, remote ? remote : "", sizeof u->remote);
        send_at(u, m->id, 0);
        return;
    }
    log_error("upload: begin %s by %s: %s", b->upload_id, who->login, e.msg);
    send_reply_err(h, sess, m->id, MSG_E_INTERNAL, "internal error");
}

static void end(struct upload_hub *h, void *sess, const struct principal *who,
                const char *remote, const struct msg *m)
{
    struct err e = { 0, "" };
    struct upload *u = find(h, who->login, m->upload_end.upload_id);
    if (!u) {
        int rc = load(h, sess, who, m->id, m->upload_end.upload_id, &u, &e);
        if (rc < 0) {
            log_error("upload: end: %s", e.msg);
            send_reply_err(h, sess, m->id, MSG_E_INTERNAL, "internal error");
            return;
        }
        if (rc == 1 && !u)
            return;                     /* finished: upload.done sent */
        if (rc == 0) {
            send_reply_err(h, sess, m->id, MSG_E_NOT_FOUND, "upload_id: "
                           "no such upload; begin it");
            return;
        }
    }
    if (u->job_kind == JOB_INGEST) {
        /* a retry while it is being stored: answered when it is */
        u->sess = sess;
        strlcpy_h(u->end_id, m->id, sizeof u->end_id);
        return;
    }
    u->sess = sess;
    strlcpy_h(u->remote, remote ? remote : "", sizeof u->remote);
    strlcpy_h(u->end_id, m->id, sizeof u->end_id);
    settle(u);
}

void upload_request(struct server *srv, void *sess,
                    const struct principal *who, const char *remote,
                    const struct msg *m)
{
    struct upload_hub *h = srv->uploads;
    if (!h)
        return;                 /* no ws layer: nobody to answer */
    if (!srv->jobs) {
        send_reply_err(h, sess, m->id, MSG_E_NOT_READY,
                       "uploads are not available");
        return;
    }
    if (!may_upload(who)) {
        send_reply_err(h, sess, m->id, MSG_E_FORBIDDEN,
                       "only requesters, admins and gateways upload");
        return;
    }
    if (m->type == MSG_UPLOAD_BEGIN)
        begin(h, sess, who, remote, m);
    else if (m->type == MSG_UPLOAD_END)
        end(h, sess, who, remote, m);
}

void upload_chunk(struct server *srv, void *sess,
                  const struct principal *who, const struct msg_chunk *c)
{
    struct upload_hub *h = srv->uploads;
    struct upload *u = h ? find(h, who->login, c->upload_id) : NULL;
    char text[160];

    if (!u || u->sess != sess || u->job_kind == JOB_INGEST) {
        send_error(h, sess, MSG_E_NOT_FOUND, "chunk.upload_id: no upload "
                   "of that id was begun on this connection");
        return;
    }
    if ((int64_t)c->offset + (int64_t)c->length > u->size) {
        snprintf(text, sizeof text, "chunk: bytes %llu..%llu are beyond "
                 "the upload's size %lld", (unsigned long long)c->offset,
                 (unsigned long long)(c->offset + c->length),
                 (long long)u->size);
        send_error(h, sess, MSG_E_BAD_FIELD, text);
        return;
    }
    if ((int64_t)c->offset < u->recv || u->begin_id[0])
        return;                 /* bytes it has, or before the answer */
    if ((int64_t)c->offset > u->recv ||
        u->blen + u->jlen + c->length > UP_HELD_MAX) {
        if (u->resent_at != u->recv) {
            u->resend = 1;              /* a gap: upload.at owed */
            settle(u);
        }
        return;
    }
    u->resent_at = -1;
    if (u->blen + c->length > u->bcap) {
        size_t cap = u->bcap ? u->bcap : 1u << 20;
        while (cap < u->blen + c->length)
            cap *= 2;
        unsigned char *p = realloc(u->buf, cap);
        if (!p) {
            u->resend = 1;
            settle(u);
            return;
        }
        u->buf = p;
        u->bcap = cap;
    }
    memcpy(u->buf + u->blen, c->data, c->length);
    u->blen += c->length;
    u->recv += c->length;
    if (u->blen >= UP_FLUSH_AT || u->recv == u->size)
        settle(u);
}

void upload_detach(struct server *srv, void *sess)
{
    struct upload_hub *h = srv->uploads;
    if (!h)
        return;
    for (struct upload *u = h->all, *next; u; u = next) {
        next = u->next;
        if (u->sess != sess)
            continue;
        u->sess = NULL;
        u->begin_id[0] = 0;
        if (u->job_kind != JOB_INGEST)
            u->end_id[0] = 0;
        u->resend = 0;
        settle(u);                      /* flushes, or forgets it */
    }
}

/* ---- expiry ----------------------------------------------------------- */

static void expire(struct upload_hub *h, int64_t now)
{
    struct server *srv = h->srv;
    int64_t cutoff = now - (int64_t)srv->cfg.upload_max_age * 1000;
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(
        srv->store, "SELECT id, principal, upload_id, done_status"
                    " FROM uploads WHERE touched < ?1 LIMIT 64", &e);
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, cutoff);
    int64_t rows[64];
    int n = 0;
    while (n < 64 && sqlite3_step(st) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 1);
        const char *id = (const char *)sqlite3_column_text(st, 2);
        if (find(h, p ? p : "", id ? id : ""))
            continue;                   /* in use: not abandoned */
        if (sqlite3_column_type(st, 3) == SQLITE_NULL)
            log_info("upload: %s/%s abandoned; removed", p, id);
        rows[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        char path[4096];
        part_path(h, rows[i], path, sizeof path);
        unlink(path);
        row_delete(srv->store, rows[i]);
    }
}

void upload_tick(struct server *srv)
{
    struct upload_hub *h = srv->uploads;
    if (!h)
        return;
    int64_t now = now_ms();
    /* Bytes a slow sender left in memory become durable within 1 s. */
    for (struct upload *u = h->all, *next; u; u = next) {
        next = u->next;
        if (u->blen && !busy(u))
            flush_start(u);
    }
    if (now - h->expired_at >= UP_EXPIRE_EVERY_MS) {
        h->expired_at = now;
        expire(h, now);
    }
}

/* ---- GET /api/studies/{study_uid}/preview --------------------------------- */

/* May who see study_uid's preview?  As its images, when they have come;
 * before, as a study of the preview's clinic. */
static int preview_visible(struct server *srv, const struct principal *who,
                           const char *study_uid, int64_t preview_clinic)
{
    struct store_scope scope;
    int64_t owner = preview_clinic;
    struct err e = { 0, "" };

    access_scope(who, &scope);
    if (study_clinic(srv->store, study_uid, &owner, &e) < 0)
        return 0;
    return store_study_visible(srv->store, &scope, study_uid, owner);
}

void upload_api_studies(struct http_req *r)
{
    struct server *srv = r->srv;
    struct upload_hub *h = srv->uploads;
    const char *p = r->path + strlen("/api/studies/");
    char uid[MSG_UID_MAX + 1], path[4096], etag[70];
    size_t n = strcspn(p, "/");
    struct err e = { 0, "" };

    if (strncmp(r->path, "/api/studies/", 13) || n == 0 || n > MSG_UID_MAX ||
        strcmp(p + n, "/preview") || !h) {
        http_respond_error(r, 404, "not_found", "no such resource");
        return;
    }
    memcpy(uid, p, n);
    uid[n] = 0;
    sqlite3_stmt *st = store_stmt(
        srv->store, "SELECT clinic_id, sha256 FROM study_previews"
                    " WHERE study_uid = ?1", &e);
    if (!st) {
        http_respond_err(r, &e);
        return;
    }
    sqlite3_bind_text(st, 1, uid, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    int64_t clinic = found ? sqlite3_column_int64(st, 0) : 0;
    if (found)
        snprintf(etag, sizeof etag, "\"%s\"", sqlite3_column_text(st, 1));
    sqlite3_reset(st);
    if (!found || !preview_visible(srv, &r->who, uid, clinic)) {
        http_respond_error(r, 404, "not_found", "no preview of that study");
        return;
    }
    unsigned char *jpeg = NULL;
    size_t len = 0;
    preview_path(h, uid, path, sizeof path);
    if (read_file(path, MSG_PREVIEW_MAX, &jpeg, &len, &e)) {
        http_respond_err(r, &e);
        return;
    }
    http_add_header(r, "ETag", etag);
    http_add_header(r, "Cache-Control", "private, no-cache");
    if (r->if_none_match && strstr(r->if_none_match, etag)) {
        free(jpeg);
        http_respond_bytes(r, 304, "image/jpeg", NULL, 0);
        return;
    }
    http_respond_bytes(r, 200, "image/jpeg", jpeg, len);
}

/* ---- start and stop --------------------------------------------------- */

int upload_init(struct server *srv, upload_send_fn send, struct err *e)
{
    struct upload_hub *h = calloc(1, sizeof *h);
    if (!h)
        return err_set(e, ERR_INTERNAL, "upload: out of memory");
    h->srv = srv;
    h->send = send;
    if (path_join(h->dir, sizeof h->dir, srv->cfg.data_dir, "uploads") ||
        path_join(h->previews, sizeof h->previews, srv->cfg.data_dir,
                  "previews") ||
        mkdir_p(h->dir, 0700) || mkdir_p(h->previews, 0700)) {
        free(h);
        return err_set(e, ERR_IO, "upload: cannot create %s/uploads and "
                       "previews", srv->cfg.data_dir);
    }
    srv->uploads = h;
    return 0;
}

void upload_free(struct server *srv)
{
    struct upload_hub *h = srv->uploads;
    if (!h)
        return;
    while (h->all)
        forget(h->all);
    srv->uploads = NULL;
    free(h);
}
