/*
 * uploader — resumable uploads for `hashi send` (see uploader.h).
 *
 * One loop: keep up to UPLOADER_AHEAD upload.begin requests out, stream
 * the lowest file whose begin was answered while the bytes beyond the
 * server's durable offsets stay under the window, send its upload.end
 * when its last byte is out, and between chunks take in whatever the
 * server said (upload.at, upload.done, replies).  Each file remembers
 * the id of the request whose answer it waits for; answers to older
 * requests (a begin sent again after a resend) are ignored.
 */
#include "uploader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../proto/msg.h"

#define UP_RETRIES 3                    /* not_ready / internal per file */
#define UP_SILENT_MS 60000              /* waiting, nothing came: cut */

static int finished(const struct up_file *f)
{
    return f->state == UP_DONE || f->state == UP_FAILED;
}

static void fail_file(struct up_file *f, const char *fmt, const char *a,
                      const char *b)
{
    snprintf(f->error, sizeof f->error, fmt, a, b);
    f->state = UP_FAILED;
    f->rid[0] = 0;
}

/* Acknowledged bytes changed, or a file got its final answer.  Only
 * bytes beyond the best seen so far count as progress: a link that lets
 * begins through but never a chunk must still end. */
static void report(struct uploader *u, int final)
{
    uint64_t acked = 0;
    for (size_t i = 0; i < u->n; i++)
        acked += u->f[i].acked;
    if (acked > u->best || final) {
        u->best = acked > u->best ? acked : u->best;
        u->progressed = 1;
    }
    if (u->progress)
        u->progress(u->arg, acked);
}

static struct up_file *by_rid(struct uploader *u, const char *rid)
{
    if (!*rid)
        return NULL;
    for (size_t i = 0; i < u->n; i++)
        if (!strcmp(u->f[i].rid, rid))
            return &u->f[i];
    return NULL;
}

static struct up_file *by_upload(struct uploader *u, const char *upload_id)
{
    for (size_t i = 0; i < u->n; i++)
        if (!finished(&u->f[i]) && u->f[i].state != UP_NEW &&
            !strcmp(u->f[i].sha256, upload_id))
            return &u->f[i];
    return NULL;
}

/* Sends a built request m (or fails f when building failed: rc), and
 * waits for its answer in state. */
static int send_req(struct conn *c, struct up_file *f, struct msg *m,
                    int rc, const struct msg_error *me, int state,
                    struct err *e)
{
    if (rc) {
        fail_file(f, "%s%s", me->message, "");
        return 0;
    }
    rc = conn_v1_send(c, m, e);
    strlcpy_h(f->rid, m->id, sizeof f->rid);
    msg_free(m);
    f->state = state;
    return rc;
}

static int send_begin(struct conn *c, struct up_file *f, struct err *e)
{
    struct msg m;
    struct msg_error me;
    char id[33];
    conn_random_id(id);
    int rc = f->study_uid[0]
        ? msg_build_upload_begin_preview(&m, id, f->sha256, f->sha256,
                                         (int64_t)f->size, f->study_uid, &me)
        : msg_build_upload_begin(&m, id, f->sha256, f->sha256,
                                 (int64_t)f->size, NULL, &me);
    return send_req(c, f, &m, rc, &me, UP_BEGUN, e);
}

static int send_end(struct conn *c, struct up_file *f, struct err *e)
{
    struct msg m;
    struct msg_error me;
    char id[33];
    conn_random_id(id);
    int rc = msg_build_upload_end(&m, id, f->sha256, &me);
    return send_req(c, f, &m, rc, &me, UP_ENDED, e);
}

/* The next chunk of f from f->sent, read through *fd (opened on first
 * use, for the file at index *fd_of). */
static int send_chunk(struct conn *c, struct up_file *f, int *fd,
                      size_t idx, size_t *fd_of, struct err *e)
{
    static unsigned char buf[UPLOADER_CHUNK];
    unsigned char hdr[MSG_CHUNK_HDR];
    struct msg_error me;
    uint64_t left = f->size - f->sent;
    size_t len = left < UPLOADER_CHUNK ? (size_t)left : UPLOADER_CHUNK;
    const unsigned char *p = buf;

    if (f->data) {
        p = f->data + f->sent;
    } else {
        if (*fd_of != idx) {
            if (*fd >= 0)
                close(*fd);
            *fd = open(f->path, O_RDONLY | O_CLOEXEC);
            *fd_of = *fd >= 0 ? idx : (size_t)-1;
            if (*fd < 0) {
                fail_file(f, "%s: %s", f->path, strerror(errno));
                return 0;
            }
        }
        size_t got = 0;
        while (got < len) {
            ssize_t r = pread(*fd, buf + got, len - got,
                              (off_t)(f->sent + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                fail_file(f, "%s%s changed while being sent", f->path, "");
                return 0;
            }
            got += (size_t)r;
        }
    }
    if (msg_chunk_build(hdr, f->sha256, f->sent, (uint32_t)len, &me)) {
        fail_file(f, "%s%s", me.message, "");
        return 0;
    }
    f->sent += len;
    return conn_ws_send(c, CONN_WS_BINARY, hdr, sizeof hdr, p, len, e);
}

/* A file whose upload must start over on this session: begun again. */
static void again(struct up_file *f, size_t *next_begin, size_t idx)
{
    f->state = UP_NEW;
    f->rid[0] = 0;
    if (*next_begin > idx)
        *next_begin = idx;
}

/* What the server said; ERR_AUTH when it refused the session. */
static int take(struct uploader *u, struct msg *m, size_t *next_begin,
                struct err *e)
{
    struct up_file *f;

    switch (m->type) {
    case MSG_EVENT:
        if (m->event.seq > u->max_seq)
            u->max_seq = m->event.seq;
        return 0;
    case MSG_UPLOAD_AT: {
        const struct msg_upload_at *a = &m->upload_at;
        uint64_t off = (uint64_t)a->offset;
        if (m->id[0]) {                     /* the answer to a begin */
            f = by_rid(u, m->id);
            if (!f || f->state != UP_BEGUN || off > f->size)
                return 0;
            f->sent = f->acked = off;
            f->state = UP_SENDING;
            f->rid[0] = 0;
            report(u, 0);
            return 0;
        }
        f = by_upload(u, a->upload_id);
        if (!f || (f->state != UP_SENDING && f->state != UP_ENDED))
            return 0;
        if (a->reason == MSG_UA_PROGRESS) {
            if (off > f->acked && off <= f->sent) {
                f->acked = off;
                report(u, 0);
            }
            return 0;
        }
        /* resend: nothing after off is kept; go on from there */
        if (off > f->size)
            return 0;
        f->sent = f->acked = off;
        f->state = UP_SENDING;
        f->rid[0] = 0;
        return 0;
    }
    case MSG_UPLOAD_DONE: {
        const struct msg_upload_done *d = &m->upload_done;
        f = m->id[0] ? by_rid(u, m->id) : by_upload(u, d->upload_id);
        if (!f || finished(f))
            return 0;
        f->rid[0] = 0;
        if (d->status == MSG_UP_CONFLICT) {
            fail_file(f, "the server holds other bytes under its SOP "
                      "Instance UID %s%s (this copy was kept aside)",
                      d->sop_instance_uid, "");
        } else {
            f->state = UP_DONE;
            f->status = d->status;
        }
        strlcpy_h(f->sop_uid, d->sop_instance_uid, sizeof f->sop_uid);
        f->sent = f->acked = f->size;
        report(u, 1);
        return 0;
    }
    case MSG_REPLY: {
        const struct msg_reply *r = &m->reply;
        f = by_rid(u, m->id);
        if (!f || r->ok)
            return 0;
        int code = r->error.code;
        if ((code == MSG_E_NOT_READY || code == MSG_E_INTERNAL) &&
            ++f->retries <= UP_RETRIES) {
            /* bytes missing at upload.end, or a server hiccup: begin
             * again, which answers what it has */
            again(f, next_begin, (size_t)(f - u->f));
            return 0;
        }
        fail_file(f, "%s: %s", msg_code_name(code), r->error.message);
        report(u, 1);
        return 0;
    }
    case MSG_ERROR:
        if (m->error.error.code == MSG_E_UNAUTHORIZED)
            return err_set(e, ERR_AUTH, "%s", m->error.error.message);
        fprintf(stderr, "hashi: send: the server says %s: %s\n",
                msg_code_name(m->error.error.code), m->error.error.message);
        return 0;
    default:
        return 0;
    }
}

int uploader_run(struct uploader *u, struct conn *c, struct err *e)
{
    size_t next_begin = 0, fd_of = (size_t)-1;
    int fd = -1, rc = 0;
    int64_t quiet_since = (int64_t)(now_mono() * 1000);

    u->progressed = 0;
    for (size_t i = 0; i < u->n; i++) {
        if (!finished(&u->f[i]))
            again(&u->f[i], &next_begin, i);
        u->f[i].retries = 0;
    }
    for (;;) {
        struct up_file *cur = NULL;
        uint64_t inflight = 0;
        int begun = 0, open_files = 0;

        /* A full scan each step: files revert (resend, not_ready), and
         * a few thousand compares cost nothing next to a chunk. */
        for (size_t i = 0; i < u->n; i++) {
            struct up_file *f = &u->f[i];
            open_files += !finished(f);
            if (f->state == UP_BEGUN)
                begun++;
            if (f->state == UP_SENDING || f->state == UP_ENDED)
                inflight += f->sent - f->acked;
            if (!cur && f->state == UP_SENDING)
                cur = f;
        }
        if (!open_files)
            break;
        while (begun < UPLOADER_AHEAD && next_begin < u->n) {
            struct up_file *f = &u->f[next_begin++];
            if (f->state != UP_NEW)
                continue;
            if ((rc = send_begin(c, f, e)))
                goto out;
            begun++;
        }
        if (cur && cur->sent == cur->size) {
            rc = send_end(c, cur, e);
        } else if (cur && inflight < UPLOADER_WINDOW) {
            rc = send_chunk(c, cur, &fd, (size_t)(cur - u->f), &fd_of, e);
        } else {
            /* nothing to send until the server answers */
            struct msg m;
            rc = conn_v1_next(c, 1000, &m, e);
            if (rc == CONN_TIMEOUT) {
                if ((int64_t)(now_mono() * 1000) - quiet_since >
                    UP_SILENT_MS) {
                    rc = err_set(e, ERR_IO, "no answer from the server "
                                 "for %d s", UP_SILENT_MS / 1000);
                    goto out;
                }
                continue;
            }
            if (!rc) {
                quiet_since = (int64_t)(now_mono() * 1000);
                rc = take(u, &m, &next_begin, e);
            }
            msg_free(&m);
        }
        /* whatever else has come meanwhile, without waiting */
        while (!rc) {
            struct msg m;
            rc = conn_v1_next(c, 0, &m, e);
            if (rc == CONN_TIMEOUT) {
                rc = 0;
                break;
            }
            if (!rc) {
                quiet_since = (int64_t)(now_mono() * 1000);
                rc = take(u, &m, &next_begin, e);
            }
            msg_free(&m);
        }
        if (rc)
            goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}
