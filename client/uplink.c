/*
 * uplink — the gateway's uploader (see uplink.h).
 *
 * One thread, one blocking connection, one loop: admit spool rows into
 * slots (upload.begin sent, not waited for), send one chunk of the best
 * slot when the rate cap allows, read whatever the server said, repeat.
 * The server's answers are small, so blocking writes cannot deadlock
 * against them.  Every slot is forgotten on a cut: the next session
 * begins each upload again and resumes from the server's offset.
 */
#include "uplink.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "../proto/msg.h"
#include "conn.h"

#define SLOTS 16
#define CHUNK_MAX (64 << 10)        /* small: priority and rate act often */
#define CONFLICT_TRIES 3            /* sha256 mismatches before failed */
#define FIGURES_MS 2000
#define STATUS_MS 10000             /* gateway.status while connected */
#define ANNOUNCE_MS 500             /* look for quiet studies */
#define EXPECTS 8                   /* study.expect awaiting replies */
#define PRIO_MS 2000                /* ask the priority of held studies */
#define PREVIEW_PX 512
#define PING_MS 20000               /* silence before we ping */
#define DEAD_MS 60000               /* silence that means the link died */

enum { P_BEGIN, P_SEND, P_END };

struct slot {
    int used;
    int preview;                    /* a study's JPEG preview, not a row:
                                       enum spool_preview, what it is */
    struct spool_item it;
    char path[1200];                /* what is sent: original or send/ */
    char sha[65];
    int64_t size;
    char upload_id[MSG_ID_MAX + 1];
    char req[MSG_ID_MAX + 1];       /* the begin or end awaiting answer */
    int phase;
    double asked_at;                /* when req went (now_mono) */
    int64_t off;                    /* next byte to send */
    int fd;
};

struct uplink {
    struct spool *spool;
    char server[512], token[300], cacert[1024];
    double max_rate;
    int retry_max_s;

    pthread_t thread;
    pthread_mutex_t lock;           /* guards stop, ended */
    pthread_cond_t cond;
    int stop, ended;

    struct conn *conn;
    int connected;
    struct slot slots[SLOTS];
    double tokens, tokens_at;       /* the rate cap's bucket */
    int backoff_n;
    double next_try;
    int64_t wire_bytes;             /* since the last figures */
    double figures_at, rate;
    char last_error[256];
    int64_t quiet_ms;
    double announce_at, status_at, pinged_at, prio_at;
    char prio_req[MSG_ID_MAX + 1];  /* study.priority awaiting its reply */
    char prio_uids[MSG_PRIORITIES_MAX][MSG_UID_MAX + 1];
    struct {                        /* study.expect sent, not answered */
        char req[MSG_ID_MAX + 1];
        char study_uid[65];
        int64_t count;
    } expects[EXPECTS];
};

/* ---- rate cap -------------------------------------------------------- */

int uplink_parse_rate(const char *s, double *bps)
{
    static const struct { const char *suf; double mul; } units[] = {
        { "gbit", 1e9 / 8 }, { "mbit", 1e6 / 8 }, { "kbit", 1e3 / 8 },
        { "bit", 1.0 / 8 }, { "g", 1073741824.0 }, { "m", 1048576.0 },
        { "k", 1024.0 }, { "", 1.0 },
    };
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0))
        return ERR_INVALID;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcasecmp(end, units[i].suf)) {
            *bps = v * units[i].mul;
            return *bps >= 1 ? 0 : ERR_INVALID;
        }
    return ERR_INVALID;
}

/* Seconds to wait before n more bytes may go (0: now). */
static double rate_wait(struct uplink *u, size_t n)
{
    if (u->max_rate <= 0)
        return 0;
    double now = now_mono();
    u->tokens += (now - u->tokens_at) * u->max_rate;
    u->tokens_at = now;
    /* A quarter second of burst at most: the clinic's other users feel
     * the cap as a steady share, not as alternating floods. */
    double burst = u->max_rate / 4 > CHUNK_MAX ? u->max_rate / 4 : CHUNK_MAX;
    if (u->tokens > burst)
        u->tokens = burst;
    if (u->tokens >= (double)n)
        return 0;
    return ((double)n - u->tokens) / u->max_rate;
}

static size_t chunk_size(const struct uplink *u)
{
    if (u->max_rate <= 0)
        return CHUNK_MAX;
    size_t c = (size_t)(u->max_rate / 8);   /* ~8 chunks a second */
    return c < 4096 ? 4096 : c > CHUNK_MAX ? CHUNK_MAX : c;
}

/* ---- slots ----------------------------------------------------------- */

static void slot_free(struct slot *sl)
{
    if (sl->used && sl->fd >= 0)
        close(sl->fd);
    memset(sl, 0, sizeof *sl);
    sl->fd = -1;
}

static void drop_slots(struct uplink *u)
{
    for (int i = 0; i < SLOTS; i++)
        slot_free(&u->slots[i]);
}

static struct slot *slot_by_upload(struct uplink *u, const char *upload_id)
{
    for (int i = 0; i < SLOTS; i++)
        if (u->slots[i].used && !strcmp(u->slots[i].upload_id, upload_id))
            return &u->slots[i];
    return NULL;
}

static struct slot *slot_by_req(struct uplink *u, const char *id)
{
    for (int i = 0; i < SLOTS; i++)
        if (u->slots[i].used && !strcmp(u->slots[i].req, id))
            return &u->slots[i];
    return NULL;
}

static void set_error(struct uplink *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(struct uplink *u, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->last_error, sizeof u->last_error, fmt, ap);
    va_end(ap);
}

/* The file to send for it: a JPEG-LS copy when the image is uncompressed,
 * the copy is smaller and its decoded pixels hash as the original's;
 * otherwise the original.  The choice is kept in the row ("-": original)
 * so a restart does not transcode again. */
static int choose_file(struct uplink *u, struct slot *sl, struct err *e)
{
    struct spool_item *it = &sl->it;
    char sha[65], tmp[1300];
    int64_t size;
    int rc;

    strlcpy_h(sl->path, it->path, sizeof sl->path);
    strlcpy_h(sl->sha, it->sha256, sizeof sl->sha);
    sl->size = it->size;
    if (!it->has_pixels || (strcmp(it->transfer_syntax, DICOM_TS_IMPLICIT_LE)
                            && strcmp(it->transfer_syntax,
                                      DICOM_TS_EXPLICIT_LE)))
        return 0;
    if ((rc = spool_send_get(u->spool, it->id, sha, &size, e)))
        return rc;
    char send[1200];
    spool_send_path(u->spool, it, send, sizeof send);
    if (!strcmp(sha, "-"))
        return 0;
    if (sha[0] && !access(send, R_OK)) {
        strlcpy_h(sl->path, send, sizeof sl->path);
        strlcpy_h(sl->sha, sha, sizeof sl->sha);
        sl->size = size;
        return 0;
    }

    char a[65], b[65];
    uint64_t n = 0;
    struct err te = { 0, "" };
    snprintf(tmp, sizeof tmp, "%s.tmp", send);
    if (dicom_transcode_jpegls(it->path, tmp, &te) ||
        dicom_pixel_sha256(it->path, a, &te) ||
        dicom_pixel_sha256(tmp, b, &te) || strcmp(a, b) ||
        sha256_file(tmp, sha, &n, &te) || (int64_t)n >= it->size) {
        if (te.code)
            log_info("gateway: %s sent as is: %s", it->sop_uid, te.msg);
        else if (strcmp(a, b))
            log_warn("gateway: %s: JPEG-LS changed the pixels; sent as is",
                     it->sop_uid);
        unlink(tmp);
        return spool_send_set(u->spool, it->id, "-", 0, e);
    }
    /* Not fsync'd: a torn copy after a crash fails the server's sha256
     * check (conflict) and is made again. */
    if (rename(tmp, send)) {
        unlink(tmp);
        return spool_send_set(u->spool, it->id, "-", 0, e);
    }
    if ((rc = spool_send_set(u->spool, it->id, sha, (int64_t)n, e)))
        return rc;
    log_debug("gateway: %s as JPEG-LS: %lld -> %llu bytes", it->sop_uid,
              (long long)it->size, (unsigned long long)n);
    strlcpy_h(sl->path, send, sizeof sl->path);
    strlcpy_h(sl->sha, sha, sizeof sl->sha);
    sl->size = (int64_t)n;
    return 0;
}

/* Sends m (built, or its build failed with me) for sl, which then waits
 * in phase for the answer to m's id. */
static int send_for(struct uplink *u, struct slot *sl, struct msg *m,
                    int built, const struct msg_error *me, int phase,
                    struct err *e)
{
    int rc = built ? err_set(e, ERR_INVALID, "%s: %s",
                             msg_type_name(m->type), me->message)
                   : conn_v1_send(u->conn, m, e);
    strlcpy_h(sl->req, m->id, sizeof sl->req);
    msg_free(m);
    sl->phase = phase;
    sl->asked_at = now_mono();
    return rc;
}

static int send_begin(struct uplink *u, struct slot *sl, struct err *e)
{
    struct msg m;
    struct msg_error me;
    char rid[33];
    conn_random_id(rid);
    int rc = sl->preview
        ? msg_build_upload_begin_preview(&m, rid, sl->upload_id, sl->sha,
                                         sl->size, sl->it.study_uid, &me)
        : msg_build_upload_begin(&m, rid, sl->upload_id, sl->sha, sl->size,
                                 NULL, &me);
    return send_for(u, sl, &m, rc, &me, P_BEGIN, e);
}

static int send_end(struct uplink *u, struct slot *sl, struct err *e)
{
    struct msg m;
    struct msg_error me;
    char rid[33];
    conn_random_id(rid);
    int rc = msg_build_upload_end(&m, rid, sl->upload_id, &me);
    return send_for(u, sl, &m, rc, &me, P_END, e);
}

/* Takes it into sl and sends its upload.begin.  A row whose file cannot
 * be read is marked failed (0); < 0 only when the link failed. */
static int admit(struct uplink *u, struct slot *sl,
                 const struct spool_item *it, struct err *e)
{
    struct err fe = { 0, "" };
    int rc;
    sl->it = *it;
    sl->fd = -1;
    sl->used = 1;
    if (choose_file(u, sl, &fe))
        goto failed;
    /* Named after the bytes: a begin after any restart resumes it. */
    memcpy(sl->upload_id, "gw-", 3);
    memcpy(sl->upload_id + 3, sl->sha, 48);
    sl->upload_id[51] = 0;
    sl->fd = open(sl->path, O_RDONLY | O_CLOEXEC);
    if (sl->fd < 0) {
        err_set(&fe, ERR_IO, "spool: open %s: %s", sl->path,
                strerror(errno));
        goto failed;
    }
    if (spool_set_state(u->spool, it->id, SPOOL_IN_FLIGHT, NULL, &fe) ||
        spool_attempt(u->spool, it->id, 0, &fe) < 0)
        goto failed;
    return send_begin(u, sl, e);
failed:
    rc = spool_set_state(u->spool, it->id, SPOOL_FAILED, fe.msg, e);
    log_error("gateway: %s: %s", it->sop_uid, fe.msg);
    slot_free(sl);
    return rc ? err_set(e, ERR_IO, "spool: %s", e->msg) : 0;
}

/* Bytes sent and not yet answered by upload.done, of slots at least as
 * urgent as prio. */
static int64_t unanswered(const struct uplink *u, int prio)
{
    int64_t n = 0;
    for (int i = 0; i < SLOTS; i++) {
        const struct slot *sl = &u->slots[i];
        if (sl->used && sl->it.priority <= prio)
            n += sl->phase == P_BEGIN ? 0 : sl->off;
    }
    return n;
}

/* Frees the slot of the least urgent upload if it is less urgent than
 * prio (the server keeps its bytes; it resumes later): its index, or -1.
 * This is how a stat study overtakes a routine one at the next chunk. */
static int evict_for(struct uplink *u, int prio)
{
    int worst = -1;
    for (int i = 0; i < SLOTS; i++) {
        struct slot *sl = &u->slots[i];
        if (sl->used && !sl->preview && sl->it.priority > prio &&
            (worst < 0 || sl->it.priority > u->slots[worst].it.priority ||
             (sl->it.priority == u->slots[worst].it.priority &&
              sl->it.id > u->slots[worst].it.id)))
            worst = i;
    }
    if (worst >= 0) {
        log_debug("gateway: %s waits for a more urgent study",
                  u->slots[worst].it.sop_uid);
        slot_free(&u->slots[worst]);
    }
    return worst;
}

/* Fills free slots from the spool, best priority first. */
static int fill_slots(struct uplink *u, struct err *e)
{
    for (;;) {
        int64_t skip[SLOTS];
        int nskip = 0, free_i = -1;
        for (int i = 0; i < SLOTS; i++) {
            if (u->slots[i].used)
                skip[nskip++] = u->slots[i].it.id;
            else if (free_i < 0)
                free_i = i;
        }
        struct spool_item it;
        int rc = spool_next(u->spool, skip, nskip, &it, e);
        if (rc == ERR_NOTFOUND)
            return 0;
        if (rc)
            return rc;
        if (free_i < 0 && (free_i = evict_for(u, it.priority)) < 0)
            return 0;
        if (unanswered(u, it.priority) >= UPLINK_WINDOW)
            return 0;
        if ((rc = admit(u, &u->slots[free_i], &it, e)))
            return rc;
    }
}

/* The slot whose next chunk goes first: best priority, then oldest. */
static struct slot *next_sender(struct uplink *u)
{
    struct slot *best = NULL;
    for (int i = 0; i < SLOTS; i++) {
        struct slot *sl = &u->slots[i];
        if (!sl->used || sl->phase != P_SEND)
            continue;
        if (!best || sl->it.priority < best->it.priority ||
            (sl->it.priority == best->it.priority && sl->it.id < best->it.id))
            best = sl;
    }
    return best;
}

/* Sends the next chunk of sl (or its end).  *wait: seconds the rate cap
 * asks to wait first (nothing sent then). */
static int send_chunk(struct uplink *u, struct slot *sl, double *wait,
                      struct err *e)
{
    unsigned char hdr[MSG_CHUNK_HDR];
    static __thread unsigned char buf[CHUNK_MAX];
    struct msg_error me;

    *wait = 0;
    if (sl->off >= sl->size)
        return send_end(u, sl, e);
    size_t n = chunk_size(u);
    if ((int64_t)n > sl->size - sl->off)
        n = (size_t)(sl->size - sl->off);
    if ((*wait = rate_wait(u, n + MSG_CHUNK_HDR)) > 0)
        return 0;
    ssize_t got = pread(sl->fd, buf, n, sl->off);
    if (got != (ssize_t)n)
        return err_set(e, ERR_IO, "read %s: %s", sl->path,
                       got < 0 ? strerror(errno) : "file shrank");
    if (msg_chunk_build(hdr, sl->upload_id, (uint64_t)sl->off, (uint32_t)n,
                        &me))
        return err_set(e, ERR_INVALID, "chunk: %s", me.message);
    int rc = conn_ws_send(u->conn, CONN_WS_BINARY, hdr, sizeof hdr, buf, n,
                          e);
    if (rc)
        return rc;
    u->tokens -= (double)(n + MSG_CHUNK_HDR);
    u->wire_bytes += (int64_t)(n + MSG_CHUNK_HDR);
    sl->off += (int64_t)n;
    if (sl->off >= sl->size)
        return send_end(u, sl, e);
    return 0;
}

/* ---- answers --------------------------------------------------------- */

/* With no upload left in a slot the queue has likely drained: the
 * server hears so at the next step, not up to STATUS_MS later. */
static void status_soon_if_idle(struct uplink *u)
{
    for (int i = 0; i < SLOTS; i++)
        if (u->slots[i].used)
            return;
    u->status_at = 0;
}

/* A preview is best effort: done or given up, it is not tried again
 * (an early one is followed by the final one). */
static void preview_over(struct uplink *u, struct slot *sl, const char *why)
{
    struct err e = { 0, "" };
    if (why)
        log_warn("gateway: preview of %s not sent: %s", sl->it.study_uid,
                 why);
    else
        log_info("gateway: preview of %s delivered", sl->it.study_uid);
    if (spool_set_preview(u->spool, sl->it.study_uid, sl->preview, &e))
        log_error("gateway: %s", e.msg);
    unlink(sl->path);
    slot_free(sl);
}

static void mark_failed(struct uplink *u, struct slot *sl, const char *why)
{
    struct err e = { 0, "" };
    if (sl->preview) {
        preview_over(u, sl, why);
        return;
    }
    log_warn("gateway: %s failed at the server: %s", sl->it.sop_uid, why);
    if (spool_set_state(u->spool, sl->it.id, SPOOL_FAILED, why, &e))
        log_error("gateway: %s", e.msg);
    set_error(u, "%s: %s", sl->it.sop_uid, why);
    slot_free(sl);
    status_soon_if_idle(u);
}

static void mark_done(struct uplink *u, struct slot *sl, int status)
{
    struct err e = { 0, "" };
    if (sl->preview) {
        preview_over(u, sl, NULL);
        return;
    }
    if (status == MSG_UP_CONFLICT) {
        mark_failed(u, sl, "conflict: the server holds this SOP Instance "
                    "UID with other bytes (this copy kept aside there)");
        return;
    }
    if (spool_done(u->spool, sl->it.id, &e))
        log_error("gateway: %s", e.msg);
    log_info("gateway: %s delivered (%s, %lld bytes)", sl->it.sop_uid,
             status == MSG_UP_DUPLICATE ? "duplicate" : "stored",
             (long long)sl->size);
    u->backoff_n = 0;
    slot_free(sl);
    status_soon_if_idle(u);
}

/* A failed reply to sl's begin or end.  Returns < 0 when the session
 * should be dropped and retried later (the server is not ready). */
static int on_refusal(struct uplink *u, struct slot *sl,
                      const struct msg_errinfo *ei, struct err *e)
{
    char why[600];
    snprintf(why, sizeof why, "%s: %s", msg_code_name(ei->code),
             ei->message);
    int transient = ei->code == MSG_E_NOT_READY ||
                    ei->code == MSG_E_INTERNAL ||
                    ei->code == MSG_E_RATE_LIMITED;
    if (sl->preview && !transient) {
        mark_failed(u, sl, why);
        return 0;
    }
    switch (ei->code) {
    case MSG_E_NOT_READY:
        if (sl->phase == P_END) {   /* bytes missing: ask where to go on */
            return send_begin(u, sl, e);
        }
        /* fall through */
    case MSG_E_INTERNAL:
    case MSG_E_RATE_LIMITED:
        set_error(u, "%s: %s", sl->it.sop_uid, why);
        return err_set(e, ERR_IO, "server: %s", why);
    case MSG_E_CONFLICT:
        if (sl->phase == P_END) {   /* sha256 mismatch: from 0 again */
            int n = spool_attempt(u->spool, sl->it.id, 1, e);
            if (n >= 0 && n <= CONFLICT_TRIES) {
                char send[1200];
                spool_send_path(u->spool, &sl->it, send, sizeof send);
                log_warn("gateway: %s: %s; sending again", sl->it.sop_uid,
                         why);
                if (!strcmp(sl->path, send)) {  /* remade next time */
                    unlink(send);
                    spool_send_set(u->spool, sl->it.id, "", 0, e);
                    slot_free(sl);
                    return 0;
                }
                return send_begin(u, sl, e);
            }
        }
        /* fall through */
    default:
        mark_failed(u, sl, why);
        return 0;
    }
}

static int prio_of(int msg_priority)
{
    return msg_priority == MSG_PRIO_STAT ? SPOOL_STAT
           : msg_priority == MSG_PRIO_URGENT ? SPOOL_URGENT : SPOOL_ROUTINE;
}

/* The answer to our study.priority: {"studies": [{study_uid,
 * priority}]}, the asked studies that an open case names. */
static void on_priority_reply(struct uplink *u, const struct msg *m)
{
    struct err e = { 0, "" };
    size_t i;
    json_t *y;
    u->prio_req[0] = 0;
    if (!m->reply.ok) {
        log_warn("gateway: study.priority refused: %s: %s",
                 msg_code_name(m->reply.error.code),
                 m->reply.error.message);
        return;
    }
    json_array_foreach(json_object_get(m->reply.result, "studies"), i, y) {
        const char *uid = json_string_value(json_object_get(y,
                                                            "study_uid"));
        const char *name = json_string_value(json_object_get(y,
                                                             "priority"));
        int p = MSG_PRIO_STAT;
        while (p < MSG_PRIO_COUNT && name && strcmp(name,
                                                    msg_priority_name(p)))
            p++;
        if (!uid || p == MSG_PRIO_COUNT)
            continue;
        int rc = spool_set_priority(u->spool, uid, prio_of(p), &e);
        if (rc < 0)
            log_error("gateway: %s", e.msg);
        if (rc <= 0)
            continue;
        for (int k = 0; k < SLOTS; k++)
            if (u->slots[k].used && !strcmp(u->slots[k].it.study_uid, uid))
                u->slots[k].it.priority = prio_of(p);
        log_info("gateway: study %s is %s", uid, name);
    }
}

/* Every PRIO_MS, the priority of the studies still to send that are not
 * stat yet: a case created meanwhile moves them up.  The server answers
 * about those alone, so a gateway learns nothing else of its clinic's
 * cases (PROTOCOL.md 8a). */
static int ask_priorities(struct uplink *u, struct err *e)
{
    double now = now_mono();
    if (u->prio_req[0] || now - u->prio_at < PRIO_MS / 1000.0)
        return 0;
    u->prio_at = now;
    struct err se = { 0, "" };
    int n = spool_pending_studies(u->spool, u->prio_uids,
                                  MSG_PRIORITIES_MAX, &se);
    if (n < 0)
        log_warn("gateway: %s", se.msg);
    if (n <= 0)
        return 0;
    struct msg m;
    struct msg_error me;
    char rid[33];
    conn_random_id(rid);
    if (msg_build_study_priority(&m, rid, (const char (*)[MSG_UID_MAX + 1])
                                 u->prio_uids, n, &me)) {
        log_error("gateway: study.priority: %s", me.message);
        return 0;
    }
    int rc = conn_v1_send(u->conn, &m, e);
    if (!rc)
        strlcpy_h(u->prio_req, m.id, sizeof u->prio_req);
    msg_free(&m);
    return rc;
}

/* The answer to a study.expect: its instances may go now.  A refusal is
 * logged and the instances go anyway: the server judges each of them. */
static void on_expect_reply(struct uplink *u, const struct msg *m)
{
    struct err e = { 0, "" };
    for (int i = 0; i < EXPECTS; i++) {
        if (!u->expects[i].req[0] || strcmp(u->expects[i].req, m->id))
            continue;
        if (!m->reply.ok)
            log_warn("gateway: study.expect %s refused: %s: %s",
                     u->expects[i].study_uid,
                     msg_code_name(m->reply.error.code),
                     m->reply.error.message);
        else
            log_info("gateway: study %s: the server expects %lld",
                     u->expects[i].study_uid,
                     (long long)u->expects[i].count);
        if (spool_set_expected(u->spool, u->expects[i].study_uid,
                               u->expects[i].count, &e))
            log_error("gateway: %s", e.msg);
        u->expects[i].req[0] = 0;
        return;
    }
}

static int on_message(struct uplink *u, struct msg *m, struct err *e)
{
    struct slot *sl;
    switch (m->type) {
    case MSG_UPLOAD_AT:
        sl = slot_by_upload(u, m->upload_at.upload_id);
        /* "progress" only says what is durable: we go on where we are
         * (rewinding would send bytes twice, and a second upload.end). */
        if (!sl || (!m->id[0] && m->upload_at.reason == MSG_UA_PROGRESS))
            return 0;
        if (m->id[0] && strcmp(m->id, sl->req))
            return 0;           /* the answer to an earlier begin */
        /* The answer to our begin, or "resend": go on from the server's
         * offset; an upload.end already sent is void (its refusal is
         * ignored: no request of ours carries its id any more). */
        sl->off = m->upload_at.offset;
        if (sl->off > sl->size)
            sl->off = sl->size;
        sl->phase = P_SEND;
        sl->req[0] = 0;
        return 0;
    case MSG_UPLOAD_DONE:
        sl = slot_by_upload(u, m->upload_done.upload_id);
        if (sl)
            mark_done(u, sl, m->upload_done.status);
        return 0;
    case MSG_REPLY:
        sl = slot_by_req(u, m->id);
        if (sl && !m->reply.ok)
            return on_refusal(u, sl, &m->reply.error, e);
        if (!sl && u->prio_req[0] && !strcmp(m->id, u->prio_req))
            on_priority_reply(u, m);
        else if (!sl)
            on_expect_reply(u, m);
        return 0;
    case MSG_EVENT:
        return conn_v1_ack(u->conn, m->event.seq, e);
    case MSG_ERROR:
        log_warn("gateway: the server said %s: %s",
                 msg_code_name(m->error.error.code),
                 m->error.error.message);
        if (m->error.error.code == MSG_E_NOT_FOUND)
            return err_set(e, ERR_IO, "server lost our uploads");
        return 0;
    default:
        return 0;
    }
}

/* Reads what the server sent: waits up to timeout_ms for the first. */
static int pump(struct uplink *u, int timeout_ms, struct err *e)
{
    for (;;) {
        struct msg m;
        int rc = conn_v1_next(u->conn, timeout_ms, &m, e);
        if (rc == CONN_TIMEOUT)
            return 0;
        if (rc)
            return rc;
        rc = on_message(u, &m, e);
        msg_free(&m);
        if (rc)
            return rc;
        timeout_ms = 0;
    }
}

/* ---- the loop -------------------------------------------------------- */

static int stopping(struct uplink *u)
{
    pthread_mutex_lock(&u->lock);
    int s = u->stop;
    pthread_mutex_unlock(&u->lock);
    return s;
}

static void figures(struct uplink *u, int force)
{
    double now = now_mono();
    if (!force && now - u->figures_at < FIGURES_MS / 1000.0)
        return;
    double dt = now - u->figures_at;
    double inst = dt > 0 ? (double)u->wire_bytes / dt : 0;
    u->rate = u->rate > 0 ? 0.5 * u->rate + 0.5 * inst : inst;
    u->wire_bytes = 0;
    u->figures_at = now;
    struct err e = { 0, "" };
    if (spool_set_figures(u->spool, u->rate, u->last_error, &e))
        log_warn("gateway: %s", e.msg);
}

static void backoff(struct uplink *u)
{
    double cap = u->retry_max_s > 0 ? u->retry_max_s : 300;
    double d = 1;
    for (int i = 0; i < u->backoff_n && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    /* Between half and all of it: gateways cut by the same outage do
     * not come back in step. */
    d = d * (0.5 + 0.5 * (rand() % 1000) / 999.0);
    u->backoff_n++;
    u->next_try = now_mono() + d;
    log_info("gateway: next attempt in %.1f s", d);
}

static void disconnect(struct uplink *u, const char *why)
{
    if (u->connected)
        log_warn("gateway: link lost: %s", why);
    set_error(u, "link: %s", why);
    conn_disconnect(u->conn);
    u->connected = 0;
    drop_slots(u);
    struct err re = { 0, "" };
    if (spool_requeue(u->spool, &re))     /* nothing is in flight now */
        log_warn("gateway: %s", re.msg);
    memset(u->expects, 0, sizeof u->expects);
    u->status_at = 0;
    u->prio_req[0] = 0;
    u->prio_at = 0;
    backoff(u);
}

static int connect_session(struct uplink *u, struct err *e)
{
    struct msg welcome;
    struct conn_v1_hello h = { u->token, 0, "hashi-gateway", "0.1.0", 0 };
    int rc = conn_v1_open(u->conn, &h, &welcome, e);
    msg_free(&welcome);
    if (rc)
        return rc;
    u->connected = 1;
    log_info("gateway: connected to %s", u->server);
    return 0;
}

/* The preview of a study into a free slot: the middle image rendered
 * with its default window, at most 512 px, sent before its instances.
 * While the study still arrives, the middle of what has come (early):
 * the link is idle then, so a specialist sees something within seconds
 * of the first image; the whole study's middle replaces it once settled.
 * A study that cannot be previewed (no image, no renderer) goes without. */
static int admit_preview(struct uplink *u, const struct spool_study *y,
                         struct err *e)
{
    struct err re = { 0, "" };
    struct spool_item mid;
    struct slot *sl = NULL;
    unsigned char *jpeg = NULL;
    size_t len = 0;
    for (int i = 0; i < SLOTS && !sl; i++)
        if (!u->slots[i].used)
            sl = &u->slots[i];
    if (!sl) {
        int i = evict_for(u, y->priority - 1);
        if (i < 0)
            return 0;       /* next time */
        sl = &u->slots[i];
    }
    memset(&sl->it, 0, sizeof sl->it);
    strlcpy_h(sl->it.study_uid, y->study_uid, sizeof sl->it.study_uid);
    sl->it.priority = y->priority;
    sl->preview = y->settled ? SPOOL_PREVIEW_FINAL : SPOOL_PREVIEW_EARLY;
    sl->used = 1;
    sl->fd = -1;
    struct dcm_render_opts o = { 0, DCM_WINDOW_DEFAULT, 0, 0, PREVIEW_PX,
                                 PREVIEW_PX, 0, 0 };
    if (spool_middle(u->spool, y->study_uid, &mid, &re) ||
        dicom_render_jpeg(mid.path, &o, &jpeg, &len, NULL, NULL, &re) ||
        snprintf(sl->path, sizeof sl->path, "%s/send/preview-%s.jpg",
                 spool_dir(u->spool), y->study_uid) >= (int)sizeof sl->path
        || write_file_durable(sl->path, jpeg, len, 0600, &re)) {
        free(jpeg);
        preview_over(u, sl, re.msg[0] ? re.msg : "no image to preview");
        return 0;
    }
    sha256_hex(jpeg, len, sl->sha);
    free(jpeg);
    sl->size = (int64_t)len;
    memcpy(sl->upload_id, "pv-", 3);
    memcpy(sl->upload_id + 3, sl->sha, 48);
    sl->upload_id[51] = 0;
    sl->fd = open(sl->path, O_RDONLY | O_CLOEXEC);
    if (sl->fd < 0) {
        preview_over(u, sl, strerror(errno));
        return 0;
    }
    return send_begin(u, sl, e);
}

struct announce { struct uplink *u; struct err *e; int rc; };

/* The study's preview into a slot, unless sent or already in one: the
 * early one while it arrives, the final one once it is settled. */
static int preview_once(struct uplink *u, const struct spool_study *y,
                        struct announce *a)
{
    if (y->preview == SPOOL_PREVIEW_FINAL ||
        (!y->settled && y->preview == SPOOL_PREVIEW_EARLY))
        return 0;
    for (int i = 0; i < SLOTS; i++)
        if (u->slots[i].used && u->slots[i].preview &&
            !strcmp(u->slots[i].it.study_uid, y->study_uid))
            return 0;
    return (a->rc = admit_preview(u, y, a->e)) != 0;
}

static int announce_one(void *arg, const struct spool_study *y)
{
    struct announce *a = arg;
    struct uplink *u = a->u;
    int free_i = -1;
    if (!y->settled || y->count == y->expected)
        return preview_once(u, y, a);
    for (int i = 0; i < EXPECTS; i++) {
        if (u->expects[i].req[0] &&
            !strcmp(u->expects[i].study_uid, y->study_uid))
            return 0;       /* asked already */
        if (!u->expects[i].req[0] && free_i < 0)
            free_i = i;
    }
    if (free_i < 0)
        return 1;
    struct msg m;
    struct msg_error me;
    static const int wire[] = { 0, MSG_PRIO_STAT, MSG_PRIO_URGENT,
                                MSG_PRIO_ROUTINE };
    int p = y->priority >= SPOOL_STAT && y->priority <= SPOOL_ROUTINE
                ? wire[y->priority] : MSG_PRIO_ROUTINE;
    char rid[33];
    conn_random_id(rid);
    if (msg_build_study_expect(&m, rid, y->study_uid, y->count, p, &me)) {
        log_error("gateway: study.expect %s: %s", y->study_uid, me.message);
        return 0;
    }
    if ((a->rc = conn_v1_send(u->conn, &m, a->e))) {
        msg_free(&m);
        return 1;
    }
    log_info("gateway: study %s: %lld instances announced", y->study_uid,
             (long long)y->count);
    strlcpy_h(u->expects[free_i].req, m.id, sizeof u->expects[free_i].req);
    strlcpy_h(u->expects[free_i].study_uid, y->study_uid, 65);
    u->expects[free_i].count = y->count;
    msg_free(&m);
    return preview_once(u, y, a);
}

/* Settled studies get their study.expect (and final preview), those
 * still arriving their early preview. */
static int announce(struct uplink *u, struct err *e)
{
    double now = now_mono();
    if (now - u->announce_at < ANNOUNCE_MS / 1000.0)
        return 0;
    u->announce_at = now;
    struct announce a = { u, e, 0 };
    int rc = spool_each_study(u->spool, u->quiet_ms, announce_one, &a, e);
    return rc ? rc : a.rc;
}

static int send_status(struct uplink *u, struct err *e)
{
    double now = now_mono();
    if (u->status_at > 0 && now - u->status_at < STATUS_MS / 1000.0)
        return 0;
    u->status_at = now;
    struct spool_counts c;
    struct msg m;
    struct err se = { 0, "" };
    if (spool_counts(u->spool, &c, &se)) {
        log_warn("gateway: %s", se.msg);
        return 0;
    }
    msg_init(&m, MSG_GATEWAY_STATUS);
    conn_random_id(m.id);
    struct msg_gateway_status *g = &m.gateway_status;
    g->waiting = c.waiting;
    g->in_flight = c.in_flight;
    g->done = c.done;
    g->failed = c.failed;
    g->bytes_waiting = c.bytes_waiting;
    g->rate_bps = (int64_t)u->rate;
    g->has_eta_s = c.eta_s >= 0;
    g->eta_s = c.eta_s >= 0 ? c.eta_s : 0;
    strlcpy_h(g->last_error, u->last_error, sizeof g->last_error);
    int rc = conn_v1_send(u->conn, &m, e);
    if (rc && e->code == ERR_INVALID) {
        log_warn("gateway: gateway.status: %s", e->msg);
        rc = 0;
    }
    msg_free(&m);
    return rc;
}

/* A link can die without a word (a NAT forgets it, a cable is pulled
 * with nothing in flight): ping after PING_MS of silence, give up after
 * DEAD_MS -- also when an answer we wait for is that late. */
static int check_alive(struct uplink *u, struct err *e)
{
    /* conn_ws_last_rx_ms is on the same monotonic clock as now_mono. */
    int64_t quiet = (int64_t)(now_mono() * 1000) -
                    conn_ws_last_rx_ms(u->conn);
    if (quiet > DEAD_MS)
        return err_set(e, ERR_IO, "nothing from the server for %lld s",
                       (long long)(quiet / 1000));
    for (int i = 0; i < SLOTS; i++) {
        struct slot *sl = &u->slots[i];
        if (sl->used && sl->phase != P_SEND &&
            now_mono() - sl->asked_at > DEAD_MS / 1000.0)
            return err_set(e, ERR_IO, "no answer about %s for %d s",
                           sl->upload_id, DEAD_MS / 1000);
    }
    if (quiet > PING_MS && now_mono() - u->pinged_at > PING_MS / 1000.0) {
        u->pinged_at = now_mono();
        return conn_ws_ping(u->conn, e);
    }
    return 0;
}

static int step(struct uplink *u, struct err *e)
{
    int rc;
    if ((rc = check_alive(u, e)) || (rc = announce(u, e)) ||
        (rc = send_status(u, e)) || (rc = ask_priorities(u, e)))
        return rc;
    if ((rc = fill_slots(u, e)))
        return rc;
    struct slot *sl = next_sender(u);
    double wait = 0;
    if (sl && (rc = send_chunk(u, sl, &wait, e)))
        return rc;
    if (sl && wait <= 0)
        return pump(u, 0, e);
    /* Nothing may go now: listen until the cap allows (or 200 ms). */
    int timeout = sl && wait < 0.2 ? (int)(wait * 1000) + 1 : 200;
    return pump(u, timeout, e);
}

static void *run(void *arg)
{
    struct uplink *u = arg;
    struct err e = { 0, "" };

    u->figures_at = now_mono();
    while (!stopping(u)) {
        figures(u, 0);
        if (!u->connected) {
            if (now_mono() < u->next_try) {
                usleep(100000);
                continue;
            }
            e.code = 0;
            if (connect_session(u, &e)) {
                if (e.code == ERR_AUTH)
                    log_error("gateway: the server refused the token: %s",
                              e.msg);
                disconnect(u, e.msg);
                continue;
            }
        }
        if (step(u, &e))
            disconnect(u, e.msg);
    }
    figures(u, 1);
    pthread_mutex_lock(&u->lock);
    u->ended = 1;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->lock);
    return NULL;
}

struct uplink *uplink_start(struct spool *s, const struct uplink_cfg *cfg,
                            struct err *e)
{
    struct uplink *u = calloc(1, sizeof *u);
    if (!u) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    u->spool = s;
    strlcpy_h(u->server, cfg->server, sizeof u->server);
    strlcpy_h(u->token, cfg->token, sizeof u->token);
    if (cfg->cacert)
        strlcpy_h(u->cacert, cfg->cacert, sizeof u->cacert);
    u->max_rate = cfg->max_rate;
    u->retry_max_s = cfg->retry_max_s;
    u->quiet_ms = cfg->quiet_ms > 0 ? cfg->quiet_ms : 5000;
    u->tokens_at = now_mono();
    drop_slots(u);
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL);
    struct conn_opts o = { u->cacert[0] ? u->cacert : NULL, 0, 0, 30000 };
    u->conn = conn_new(u->server, &o, e);
    if (!u->conn)
        goto fail;
    if (spool_requeue(s, e))
        goto fail;
    srand((unsigned)(now_ms() ^ getpid()));

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&u->thread, NULL, run, u);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        err_set(e, ERR_INTERNAL, "pthread_create: %s", strerror(rc));
        goto fail;
    }
    return u;
fail:
    conn_free(u->conn);
    free(u);
    return NULL;
}

void uplink_stop(struct uplink *u, int wait_ms)
{
    if (!u)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&u->lock);
    u->stop = 1;
    while (!u->ended &&
           pthread_cond_timedwait(&u->cond, &u->lock, &until) == 0)
        ;
    int ended = u->ended;
    pthread_mutex_unlock(&u->lock);
    if (!ended) {
        log_warn("gateway: the uploader is still blocked; leaving it");
        return;
    }
    pthread_join(u->thread, NULL);
    drop_slots(u);
    conn_free(u->conn);
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->cond);
    free(u);
}
