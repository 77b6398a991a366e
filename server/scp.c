/*
 * scp — the DICOM listener glue: proto/dicom.h's listener calls us once
 * per association (open, close), once per received instance (store); we
 * map the calling AE to a clinic, put the file into the store, audit it,
 * count it, and answer a DIMSE status.  It also asks us what a C-FIND
 * matches, what a C-GET or C-MOVE sends and where, and which instances a
 * Storage Commitment request may be told are committed: a calling AE sees
 * exactly what a requester of its clinic sees (access_scope), nothing
 * else exists for it.
 *
 * Threads: the listener runs every association on a thread of its own, so
 * the callbacks run concurrently.  Each association holds a store handle
 * (an SQLite connection) from a small pool for its lifetime and looks its
 * clinic up once; the pool and the queue of what the lws thread needs to
 * hear (study UIDs that got new instances, then http_wake()) share one
 * mutex.  audit and metrics are thread-safe on their own.
 *
 * Peer-provided text (AE titles, addresses) goes to the log through
 * log_msg, which escapes control bytes.
 */
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "access.h"
#include "auth.h"
#include "config.h"

#define SCP_ARRIVED_MAX 64

struct scp_state {
    struct server *srv;
    pthread_mutex_t lock;       /* guards arrived[], narrived, idle[], nidle */
    char arrived[SCP_ARRIVED_MAX][65];
    int narrived;
    struct store **idle;        /* store handles no association holds */
    int nidle, maxidle;
};

/* One association: what its callbacks need, used only on its thread. */
struct scp_assoc {
    struct scp_state *st;
    struct store *store;        /* taken from the pool for its lifetime */
    int64_t clinic_id;          /* of the calling AE (0 = none) */
    struct store_scope scope;   /* what it may see: its clinic's studies */
    char ae[17], peer[64];
    char retrieving[256];       /* the last retrieve's UIDs, for audit */
};

/* A store handle for one association: an idle one, else a new one. */
static struct store *store_take(struct scp_state *st, struct err *e)
{
    struct store *s = NULL;
    pthread_mutex_lock(&st->lock);
    if (st->nidle)
        s = st->idle[--st->nidle];
    pthread_mutex_unlock(&st->lock);
    if (!s) {
        s = store_open(st->srv->cfg.data_dir, e);
        if (s)
            store_set_max_instance(s, st->srv->cfg.max_instance);
    }
    return s;
}

static void store_give(struct scp_state *st, struct store *s)
{
    pthread_mutex_lock(&st->lock);
    if (st->nidle < st->maxidle) {
        st->idle[st->nidle++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&st->lock);
    store_close(s);
}

static void audit_ae(struct scp_state *st, const char *ae, const char *action,
                     const char *object, const char *outcome,
                     const char *remote, const char *detail)
{
    char actor[32];
    snprintf(actor, sizeof actor, "ae:%s", ae);
    struct audit_entry a = { actor, action, object, outcome, remote, detail };
    if (st->srv->audit)
        audit_write(st->srv->audit, &a);
}

/* Which clinic does this AE send for?  0 and *clinic_id, ERR_NOTFOUND,
 * or another error (logged). */
static int clinic_of(struct scp_assoc *a, const char *ae, int64_t *clinic_id)
{
    struct err e = { 0, "" };
    int rc = auth_clinic_by_ae(a->store, ae, clinic_id, &e);
    if (rc == ERR_NOTFOUND && a->st->srv->cfg.accept_unknown_ae) {
        *clinic_id = 0;
        rc = 0;
    } else if (rc && rc != ERR_NOTFOUND) {
        log_error("DICOM: looking up calling AE '%s': %s", ae, e.msg);
    }
    return rc;
}

/* Every association request: a store handle and the clinic of the
 * calling AE, looked up once for the whole association. */
static int on_open(void *arg, const char *calling_ae, const char *peer,
                   void **assoc)
{
    struct scp_state *st = arg;
    struct err e = { 0, "" };
    struct scp_assoc *a = calloc(1, sizeof *a);
    if (a)
        a->store = store_take(st, &e);
    if (!a || !a->store) {
        log_error("DICOM association from %s@%s refused: %s", calling_ae,
                  peer, a ? e.msg : "out of memory");
        free(a);
        return 0;
    }
    a->st = st;
    int rc = clinic_of(a, calling_ae, &a->clinic_id);
    if (!rc) {
        /* A clinic's AE is one of its requesters (access.h). */
        struct principal who;
        memset(&who, 0, sizeof who);
        strlcpy_h(who.role, "requester", sizeof who.role);
        who.clinic_id = a->clinic_id;
        access_scope(&who, &a->scope);
        strlcpy_h(a->ae, calling_ae, sizeof a->ae);
        strlcpy_h(a->peer, peer, sizeof a->peer);
        log_debug("DICOM association from %s@%s (clinic %lld)", calling_ae,
                  peer, (long long)a->clinic_id);
        *assoc = a;
        return 1;
    }
    const char *why = rc == ERR_NOTFOUND
                          ? "calling AE title not mapped to a clinic"
                          : "clinic lookup failed";
    log_warn("DICOM association from %s@%s refused: %s", calling_ae, peer,
             why);
    audit_ae(st, calling_ae, "associate", NULL, "denied", peer, why);
    store_give(st, a->store);
    free(a);
    return 0;
}

static void on_close(void *arg, void *assoc)
{
    struct scp_assoc *a = assoc;
    store_give(arg, a->store);
    free(a);
}

/* Queue a study UID for the lws thread; wake it if the queue was empty.
 * A full queue drops the UID: images.arrived is a convenience event, and
 * the case still lists what is stored when it is opened. */
static void note_arrival(struct scp_state *st, const char *study_uid)
{
    int wake = 0;
    pthread_mutex_lock(&st->lock);
    int i;
    for (i = 0; i < st->narrived; i++)
        if (!strcmp(st->arrived[i], study_uid))
            break;
    if (i == st->narrived && st->narrived < SCP_ARRIVED_MAX) {
        strlcpy_h(st->arrived[st->narrived], study_uid, 65);
        wake = st->narrived++ == 0;
    }
    pthread_mutex_unlock(&st->lock);
    if (wake)
        http_wake(st->srv);
}

int scp_take_arrived(struct server *srv, char (*uids)[65], int max)
{
    struct scp_state *st = srv->scp_state;
    if (!st)
        return 0;
    pthread_mutex_lock(&st->lock);
    int n = st->narrived < max ? st->narrived : max;
    memcpy(uids, st->arrived, (size_t)n * sizeof *uids);
    memmove(st->arrived, st->arrived + n,
            (size_t)(st->narrived - n) * sizeof *st->arrived);
    st->narrived -= n;
    pthread_mutex_unlock(&st->lock);
    return n;
}

static unsigned on_store(void *arg, const char *path, const char *calling_ae,
                         const char *peer, char comment[64])
{
    struct scp_assoc *a = arg;
    struct scp_state *st = a->st;
    struct server *srv = st->srv;
    struct store_result res;
    struct err e = { 0, "" };

    memset(&res, 0, sizeof res);
    struct store_source src = { "dimse", calling_ae, NULL, peer,
                                 a->clinic_id };
    int rc = store_put_file(a->store, path, &src, &res, &e);
    if (rc) {
        unsigned status;
        if (rc == ERR_INVALID) {
            status = DICOM_STATUS_DATASET_MISMATCH;
            snprintf(comment, 64, "%.63s", e.msg);
        } else if (rc == ERR_FORBIDDEN) {
            status = DICOM_STATUS_NOT_AUTHORIZED;  /* another clinic's */
            snprintf(comment, 64, "refused");
        } else {
            status = DICOM_STATUS_OUT_OF_RESOURCES;
            snprintf(comment, 64, "%s",
                     rc == ERR_TOOBIG ? "instance too large" : "not stored");
            log_error("DICOM: storing from %s failed: %s", calling_ae,
                      e.msg);
        }
        log_info("DICOM: instance from %s@%s rejected: %s", calling_ae,
                 peer, e.msg);
        metrics_stored(&srv->metrics, -1, 0);
        audit_ae(st, calling_ae, "reject", res.info.sop_uid[0]
                 ? res.info.sop_uid : NULL, "error", peer, e.msg);
        return status;
    }

    metrics_stored(&srv->metrics, res.outcome, res.size);
    if (res.outcome == STORE_CONFLICT) {
        /* Error Comment is at most 64 characters (63 + NUL here). */
        snprintf(comment, 64, "conflict: SOP Instance UID exists with "
                 "other bytes; kept aside");
        log_warn("DICOM: conflict from %s: %s exists with other content; "
                 "the new copy is kept aside", calling_ae, res.info.sop_uid);
        audit_ae(st, calling_ae, "conflict", res.info.sop_uid, "conflict",
                 peer, res.sha256);
        return DICOM_STATUS_WARNING;
    }
    audit_ae(st, calling_ae, "store", res.info.sop_uid,
             res.outcome == STORE_DUPLICATE ? "duplicate" : "ok", peer,
             res.info.study_uid);
    if (res.outcome == STORE_STORED)
        note_arrival(st, res.info.study_uid);
    return DICOM_STATUS_SUCCESS;
}

/* ---- Query/Retrieve, Storage Commitment ------------------------------- */

/* A DICOM JSON value (qido.c's: strings, numbers, PN objects) as DICOM
 * text, several joined with a backslash, into out. */
static void json_value_text(json_t *vals, char *out, size_t n)
{
    size_t len = 0, i;
    json_t *v;
    out[0] = 0;
    json_array_foreach(vals, i, v) {
        char num[32];
        const char *t = NULL;
        if (json_is_string(v))
            t = json_string_value(v);
        else if (json_is_object(v))
            t = json_string_value(json_object_get(v, "Alphabetic"));
        else if (json_is_integer(v) &&
                 snprintf(num, sizeof num, "%lld",
                          (long long)json_integer_value(v)) > 0)
            t = num;
        if (!t)
            t = "";
        int w = snprintf(out + len, n - len, "%s%s", i ? "\\" : "", t);
        if (w < 0 || (size_t)w >= n - len)
            return;             /* truncated: the values that fit */
        len += (size_t)w;
    }
}

#define QR_ATTRS 32
#define QR_PAGE 1000            /* qido.c's largest page */

/* Emit each object of a DICOM JSON array; nonzero if emit said stop. */
static int emit_matches(json_t *arr, dicom_emit_fn emit, void *emit_arg)
{
    size_t i;
    json_t *obj;
    json_array_foreach(arr, i, obj) {
        char text[QR_ATTRS][400];
        struct dicom_attr attrs[QR_ATTRS];
        size_t n = 0;
        const char *key;
        json_t *el;
        json_object_foreach(obj, key, el) {
            if (n == QR_ATTRS)
                break;
            json_value_text(json_object_get(el, "Value"), text[n],
                            sizeof text[n]);
            attrs[n].tag = (uint32_t)strtoul(key, NULL, 16);
            attrs[n].value = text[n];
            n++;
        }
        if (emit(emit_arg, attrs, n))
            return 1;
    }
    return 0;
}

static unsigned on_find(void *arg, const struct dicom_qr_keys *k,
                        dicom_emit_fn emit, void *emit_arg,
                        char comment[64])
{
    struct scp_assoc *a = arg;
    int (*query)(struct store *, const struct store_scope *,
                 const struct store_query *, json_t **, struct err *) =
        k->level == DICOM_QR_STUDY ? store_qido_studies :
        k->level == DICOM_QR_SERIES ? store_qido_series :
        store_qido_instances;
    if (k->level != DICOM_QR_STUDY && !k->study_uid) {
        snprintf(comment, 64, "StudyInstanceUID needed below STUDY");
        return DICOM_STATUS_DATASET_MISMATCH;
    }
    struct store_query q = {
        .patient_id = k->patient_id, .patient_name = k->patient_name,
        .study_date = k->study_date, .modality = k->modality,
        .accession = k->accession, .study_uid = k->study_uid,
        .series_uid = k->series_uid, .sop_uid = k->sop_uid,
        .limit = QR_PAGE,
    };
    struct err e = { 0, "" };
    unsigned status = DICOM_STATUS_SUCCESS;
    int total = 0;
    for (;;) {
        json_t *arr = NULL;
        int rc = query(a->store, &a->scope, &q, &arr, &e);
        if (rc == ERR_NOTFOUND)
            break;              /* a study it may not see: no match */
        if (rc) {
            snprintf(comment, 64, "%.63s", e.msg);
            status = rc == ERR_INVALID ? DICOM_STATUS_DATASET_MISMATCH
                                       : DICOM_STATUS_CANNOT_UNDERSTAND;
            break;
        }
        int got = (int)json_array_size(arr);
        int stop = emit_matches(arr, emit, emit_arg);
        json_decref(arr);
        total += got;
        if (stop || got < QR_PAGE)
            break;
        q.offset += got;
    }
    char detail[48];
    snprintf(detail, sizeof detail, "C-FIND level %d: %d matches", k->level,
             total);
    audit_ae(a->st, a->ae, "query", k->study_uid, status ? "error" : "ok",
             a->peer, detail);
    return status;
}

/* Append the instances of one study, series or instance (level) named by
 * uid to *files; ERR_NOTFOUND adds none. */
static int add_files(struct scp_assoc *a, const struct dicom_qr_keys *k,
                     const char *uid, struct dicom_qr_file **files,
                     size_t *n, struct err *e)
{
    struct store_instance *list = NULL, one;
    size_t m = 0;
    int rc;
    if (k->level == DICOM_QR_IMAGE) {
        rc = store_find_instance(a->store, &a->scope, k->study_uid,
                                 k->series_uid, uid, &one, e);
        if (!rc) {
            list = &one;
            m = 1;
        }
    } else {
        rc = store_list_instances(a->store, &a->scope,
                                  k->level == DICOM_QR_STUDY ? uid
                                                             : k->study_uid,
                                  k->level == DICOM_QR_SERIES ? uid : NULL,
                                  &list, &m, e);
    }
    if (rc)
        return rc == ERR_NOTFOUND ? 0 : rc;
    struct dicom_qr_file *grown = realloc(*files, (*n + m) * sizeof **files);
    if (grown) {
        *files = grown;
        for (size_t i = 0; i < m; i++) {
            struct dicom_qr_file *f = &grown[(*n)++];
            strlcpy_h(f->path, list[i].path, sizeof f->path);
            strlcpy_h(f->sop_class, list[i].sop_class_uid,
                      sizeof f->sop_class);
            strlcpy_h(f->sop_uid, list[i].sop_uid, sizeof f->sop_uid);
            strlcpy_h(f->xfer, list[i].transfer_syntax, sizeof f->xfer);
        }
    }
    if (list != &one)
        free(list);
    return grown ? 0 : err_set(e, ERR_INTERNAL, "out of memory");
}

static unsigned on_retrieve(void *arg, const struct dicom_qr_keys *k,
                            const char *move_dest,
                            struct dicom_qr_file **files, size_t *n,
                            char comment[64])
{
    struct scp_assoc *a = arg;
    /* The unique keys of the level name what goes (PS3.4 C.4.2.2.1). */
    const char *list = k->level == DICOM_QR_STUDY ? k->study_uid :
                       k->level == DICOM_QR_SERIES ? k->series_uid :
                       k->sop_uid;
    if (!list || (k->level != DICOM_QR_STUDY && !k->study_uid)) {
        snprintf(comment, 64, "unique keys of the level needed");
        return DICOM_STATUS_DATASET_MISMATCH;
    }
    strlcpy_h(a->retrieving, list, sizeof a->retrieving);
    struct err e = { 0, "" };
    int rc = 0;
    char uid[65];
    for (const char *p = list; !rc;) {
        size_t len = strcspn(p, "\\");
        if (len && len < sizeof uid) {
            memcpy(uid, p, len);
            uid[len] = 0;
            rc = add_files(a, k, uid, files, n, &e);
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    if (!rc)
        return DICOM_STATUS_SUCCESS;
    log_error("DICOM: retrieve for %s: %s", a->ae, e.msg);
    snprintf(comment, 64, "%.63s", e.msg);
    audit_ae(a->st, a->ae, "retrieve", a->retrieving, "error", a->peer,
             move_dest);
    return DICOM_STATUS_CANNOT_UNDERSTAND;
}

static int on_move_dest(void *arg, const char *dest_ae, char host[256],
                        int *port)
{
    struct scp_assoc *a = arg;
    struct err e = { 0, "" };
    char dest[256];
    int rc = auth_move_dest(a->store, a->clinic_id, dest_ae, dest, &e);
    if (!rc)
        rc = config_parse_hostport(dest, host, 256, port, 1, &e);
    if (rc) {
        log_info("DICOM: C-MOVE from %s to '%s' refused: %s", a->ae,
                 dest_ae, e.msg);
        audit_ae(a->st, a->ae, "retrieve", NULL, "denied", a->peer, e.msg);
    }
    return rc;
}

static void on_retrieved(void *arg, const char *move_dest,
                         unsigned completed, unsigned failed)
{
    struct scp_assoc *a = arg;
    char detail[128];
    snprintf(detail, sizeof detail, "%s%s: %u sent, %u failed",
             move_dest ? "C-MOVE to " : "C-GET", move_dest ? move_dest : "",
             completed, failed);
    audit_ae(a->st, a->ae, "retrieve", a->retrieving,
             failed ? "error" : "ok", a->peer, detail);
}

/* Committed: indexed (store_put_file indexes only what is fsync'd) within
 * the AE's scope, of that SOP class, its blob present. */
static int on_commit(void *arg, const char *sop_class, const char *sop_uid)
{
    struct scp_assoc *a = arg;
    struct store_instance in;
    struct err e = { 0, "" };
    struct stat sb;
    int ok = !store_find_instance(a->store, &a->scope, NULL, NULL, sop_uid,
                                  &in, &e) &&
             !strcmp(in.sop_class_uid, sop_class) && !stat(in.path, &sb);
    audit_ae(a->st, a->ae, "commit", sop_uid, ok ? "ok" : "denied",
             a->peer, ok ? NULL : "not stored here");
    return ok;
}

static void state_free(struct scp_state *st)
{
    if (!st)
        return;
    while (st->nidle)
        store_close(st->idle[--st->nidle]);
    free(st->idle);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

int scp_start(struct server *srv, struct err *e)
{
    const struct server_config *c = &srv->cfg;
    if (c->dicom_port == 0)
        return 0;
    struct scp_state *st = calloc(1, sizeof *st);
    if (!st)
        return err_set(e, ERR_INTERNAL, "out of memory");
    st->srv = srv;
    pthread_mutex_init(&st->lock, NULL);
    st->maxidle = c->dicom_max_associations;
    st->idle = calloc((size_t)st->maxidle, sizeof *st->idle);
    /* One handle now: the pool's first, and the check that the store
     * opens before the port is taken. */
    struct store *first = st->idle ? store_take(st, e) : NULL;
    if (!first) {
        state_free(st);
        return e && e->code ? e->code : ERR_INTERNAL;
    }
    store_give(st, first);

    struct dicom_scp_cfg cfg = {
        .port = c->dicom_port,
        .loopback_only = config_host_is_loopback(c->dicom_host),
        .ae_title = c->ae_title,
        .tmp_dir = store_tmp_dir(first),
        .dimse_timeout = 0,
        .store = on_store,
        .arg = st,
        .host = c->dicom_host,
        .max_associations = c->dicom_max_associations,
        .artim_timeout = c->dicom_artim_timeout,
        .idle_timeout = c->dicom_idle_timeout,
        .max_instance = c->max_instance,
        .open = on_open,
        .close = on_close,
        .find = on_find,
        .retrieve = on_retrieve,
        .move_dest = on_move_dest,
        .retrieved = on_retrieved,
        .commit = on_commit,
    };
    /* Published before the listener starts, so the callbacks and
     * scp_take_arrived() see it. */
    srv->scp_state = st;
    srv->scp = dicom_scp_start(&cfg, e);
    if (!srv->scp) {
        srv->scp_state = NULL;
        state_free(st);
        return e && e->code ? e->code : ERR_IO;
    }
    return 0;
}

void scp_stop(struct server *srv)
{
    if (srv->scp) {
        dicom_scp_stop(srv->scp);   /* joins every listener thread */
        srv->scp = NULL;
    }
    state_free(srv->scp_state);
    srv->scp_state = NULL;
}
