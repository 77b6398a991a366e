/*
 * scp — the DICOM C-STORE/C-ECHO listener glue: proto/dicom.h's listener
 * runs on its own thread and calls us once per association (accept) and
 * once per received instance (store); we map the calling AE to a clinic,
 * put the file into the store, audit it, count it, and answer a DIMSE
 * status.
 *
 * Threads: the listener thread has its own store handle (opened here in
 * scp_start, used only from the callbacks, i.e. only on that thread).
 * What the lws thread needs to hear (study UIDs that got new instances)
 * goes through a small mutex-guarded queue plus http_wake().
 *
 * The per-instance path is kept short: the clinic of the calling AE is
 * looked up once per association, the store does the one durable write,
 * the audit line is one write().
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
    struct store *store;        /* listener thread only */
    char ae[17];                /* calling AE of the current association */
    int64_t clinic_id;          /*   and its clinic (0 = none) */
    int ae_known;

    pthread_mutex_t lock;       /* guards arrived[] / narrived */
    char arrived[SCP_ARRIVED_MAX][65];
    int narrived;
};

/* Which clinic does this AE send for?  0 and *clinic_id, ERR_NOTFOUND,
 * or another error (logged). */
static int clinic_of(struct scp_state *st, const char *ae, int64_t *clinic_id)
{
    if (st->ae_known && !strcmp(st->ae, ae)) {
        *clinic_id = st->clinic_id;
        return 0;
    }
    struct err e = { 0, "" };
    int rc = auth_clinic_by_ae(st->store, ae, clinic_id, &e);
    if (rc == ERR_NOTFOUND && st->srv->cfg.accept_unknown_ae) {
        *clinic_id = 0;
        rc = 0;
    } else if (rc && rc != ERR_NOTFOUND) {
        log_error("DICOM: looking up calling AE '%s': %s", ae, e.msg);
    }
    if (!rc) {
        strlcpy_h(st->ae, ae, sizeof st->ae);
        st->clinic_id = *clinic_id;
        st->ae_known = 1;
    }
    return rc;
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

static int on_accept(void *arg, const char *calling_ae, const char *peer)
{
    struct scp_state *st = arg;
    int64_t clinic_id;
    st->ae_known = 0;           /* look up afresh for every association */
    int rc = clinic_of(st, calling_ae, &clinic_id);
    if (!rc) {
        log_debug("DICOM association from %s@%s (clinic %lld)", calling_ae,
                  peer, (long long)clinic_id);
        return 1;
    }
    const char *why = rc == ERR_NOTFOUND
                          ? "calling AE title not mapped to a clinic"
                          : "clinic lookup failed";
    log_warn("DICOM association from %s@%s refused: %s", calling_ae, peer,
             why);
    audit_ae(st, calling_ae, "associate", NULL, "denied", peer, why);
    return 0;
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
    struct scp_state *st = arg;
    struct server *srv = st->srv;
    struct store_result res;
    struct err e = { 0, "" };
    int64_t clinic_id = 0;

    memset(&res, 0, sizeof res);
    if (clinic_of(st, calling_ae, &clinic_id)) {
        /* The AE was accepted a moment ago; only a DB failure or a
         * mapping removed mid-association gets here. */
        remove(path);
        snprintf(comment, 64, "calling AE not accepted");
        metrics_stored(&srv->metrics, -1, 0);
        audit_ae(st, calling_ae, "reject", NULL, "denied", peer,
                 "calling AE not mapped to a clinic");
        return DICOM_STATUS_OUT_OF_RESOURCES;
    }

    struct store_source src = { "dimse", calling_ae, NULL, peer, clinic_id };
    int rc = store_put_file(st->store, path, &src, &res, &e);
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
    store_close(st->store);
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
    st->store = store_open(c->data_dir, e);
    if (!st->store) {
        state_free(st);
        return e && e->code ? e->code : ERR_IO;
    }
    store_set_max_instance(st->store, c->max_instance);

    int loopback = config_host_is_loopback(c->dicom_host);
    if (!loopback && strcmp(c->dicom_host, "0.0.0.0")
        && strcmp(c->dicom_host, "::"))
        log_warn("DICOM listener binds every address, not only %s "
                 "(the DCMTK listener has no bind address)", c->dicom_host);
    struct dicom_scp_cfg cfg = {
        .port = c->dicom_port,
        .loopback_only = loopback,
        .ae_title = c->ae_title,
        .tmp_dir = store_tmp_dir(st->store),
        .dimse_timeout = 0,
        .accept = on_accept,
        .store = on_store,
        .arg = st,
    };
    /* Published before the thread starts, so the callbacks and
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
        dicom_scp_stop(srv->scp);   /* joins the listener thread */
        srv->scp = NULL;
    }
    state_free(srv->scp_state);
    srv->scp_state = NULL;
}
