/*
 * scp — the DICOM C-STORE/C-ECHO listener glue: proto/dicom.h's listener
 * calls us once per association (open, close) and once per received
 * instance (store); we map the calling AE to a clinic, put the file into
 * the store, audit it, count it, and answer a DIMSE status.
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

#include "../proto/dicom.h"
#include "../proto/log.h"
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
