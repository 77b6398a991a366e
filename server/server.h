/*
 * server — the one server context, passed explicitly to every part of
 * hashi-server.  server/ has no other mutable state at file scope; the
 * process-wide state that exists lives in proto/, shared with the
 * clients, and is set up once: the logger's level (log.c, set before any
 * thread starts), and in the DCMTK adapter (dicom.cc) its init flag
 * (dicom_init/dicom_cleanup, main thread) and its strip-render helper
 * thread with the mutex and conditions that guard it, the mutex around
 * DCMTK's process-wide dcmExternalSocketHandle (the DICOM listener), plus
 * per-thread JPEG encoders and scratch buffers (thread_local, never
 * shared).
 *
 * Threads: main runs the libwebsockets loop (http.c) and owns `store`;
 * the DICOM listener (scp.c) runs each association on a thread of its
 * own, with a store handle of its own.  Shared between them: `metrics`
 * (atomics) and `audit` (locked).
 *
 * Layers: transport (http.c and its routes, ws.c, scp.c) -> cases.c ->
 * outbox.c / store.c.  Lower layers never call upwards: cases.c reaches
 * live delivery only through the events_committed hook ws.c registers,
 * and everything done by the clock runs from main.c's one tick.
 */
#ifndef HASHI_SERVER_H
#define HASHI_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "audit.h"
#include "metrics.h"
#include "store.h"

struct lws_context;
struct dicom_scp;
struct scp_state;
struct outbox;
struct ws_hub;
struct render_cache;
struct jobs;
struct upload_hub;
struct webpush;

struct server_config {
    char data_dir[4096];
    char listen_host[256];      /* HTTPS + WSS, default 127.0.0.1 */
    int listen_port;            /* default 8443 */
    char dicom_host[256];       /* C-STORE/C-ECHO, default 127.0.0.1 */
    int dicom_port;             /* default 11112; 0 = no DICOM listener */
    char ae_title[17];          /* default HASHI */
    char cert[4096];            /* default <data>/tls/cert.pem */
    char key[4096];             /* default <data>/tls/key.pem */
    char web_root[4096];        /* static files for the browser client */
    char origins[1024];         /* extra allowed Origins, comma-separated */
    int accept_unknown_ae;      /* 0 = reject calling AEs not mapped */
    uint64_t max_instance;      /* bytes, default 2 GiB */
    int dicom_max_associations; /* at once, default 16 */
    int dicom_artim_timeout;    /* s for the association request, 10 */
    int dicom_idle_timeout;     /* s between DIMSE messages, 60 */
    int log_level;
    int due_stat;               /* escalation deadlines, seconds */
    int due_urgent;
    int due_routine;
    int upload_max_age;         /* seconds: partial uploads removed after */
    char push_ca[4096];         /* CA file for push services; "": system */
    char push_contact[256];     /* VAPID "sub" (mailto: or https:), or "" */
    char push_allow[1024];      /* push hosts besides the public services',
                                   comma-separated (webpush.h) */
    int ws_ping;                /* seconds of silence before a WebSocket
                                   ping; none for 1.5x: closed. 0: off */
    uint64_t ws_queue_max;      /* bytes a hashi.v1 session may have
                                   waiting for its socket; over: 4429 */
};

struct server {
    struct server_config cfg;
    struct store *store;        /* main (lws) thread's connection */
    struct audit *audit;
    struct metrics metrics;
    struct lws_context *lws;
    struct dicom_scp *scp;
    struct scp_state *scp_state; /* scp.c's own (its store handles) */
    struct outbox *outbox;      /* over store's db; lws thread only */
    struct ws_hub *ws;          /* connected hashi.v1 sessions (ws.c) */
    struct render_cache *render; /* rendered JPEGs (render.h); may be NULL */
    struct jobs *jobs;          /* worker pool (jobs.h), each thread with
                                   its own store handle; finished jobs are
                                   reaped on the lws thread */
    struct upload_hub *uploads; /* resumable uploads (upload.h) */
    struct webpush *push;       /* Web Push (webpush.h); may be NULL */
    /* Called by cases.c after every COMMIT, with the committed events
     * waiting in the outbox (outbox_take_events): ws.c registers its
     * live push here (ws_init), webpush.c wraps it.  NULL: the events wait in the outboxes for the next
     * hello (admin tools, unit tests).  Lws thread only. */
    void (*events_committed)(struct server *srv);
    /* The one periodic tick (main.c), run by http.c's timer every
     * SERVER_TICK_MS on the lws thread; NULL: none.  tick_state is its
     * memory between runs. */
    void (*tick)(struct server *srv);
    struct {
        int64_t second_at, pruned_at;       /* ms */
        char err[256];                      /* last failure logged */
        int64_t err_at;
    } tick_state;
    volatile sig_atomic_t stopping;
};

/* The tick's period: also the most an acknowledgement waits before it is
 * written, and how late a session is closed after its expiry. */
#define SERVER_TICK_MS 200

/* http.c: the HTTPS/WSS listener and its routes. */
int http_start(struct server *srv, struct err *e);
/* Serve until srv->stopping is set; then returns. */
void http_run(struct server *srv);
void http_stop(struct server *srv);
/* Make http_run look at srv->stopping (and at queued work) now.  Any
 * thread may call it (lws_cancel_service); the signal thread does. */
void http_wake(struct server *srv);

/* ws.c: the hashi.v1 WebSocket protocol (see proto/PROTOCOL.md).
 * ws_init makes the hub (srv->ws) and registers srv->events_committed,
 * which takes the newly committed events (outbox_take_events) and sends
 * them from memory to the connected sessions of their recipients.  ws_protocol() is the lws
 * protocol entry http.c puts in its list (NULL before ws_init). */
struct lws_protocols;
int ws_init(struct server *srv, struct err *e);
const struct lws_protocols *ws_protocol(struct server *srv);
void ws_free(struct server *srv);
/* The hub's share of the tick: writes pending acks, closes sessions
 * silent past the hello timeout or the keep-alive's (4408: pings after
 * cfg.ws_ping s of silence) and those whose token has ended
 * (4401: expired, or revoked / user disabled — by any process, seen
 * through auth_epoch()), sends held-back images.arrived and prunes old
 * kept replies. */
void ws_tick(struct server *srv, int64_t now_ms);
/* Re-check every session's token now (after a logout in this process),
 * not at the next tick. */
void ws_check_sessions(struct server *srv);
/* New instances of study_uid were stored (STOW, or the DICOM listener's
 * queue drained on the lws thread): cases_images_arrived(), at most once
 * a second per study — more arrivals within the second are told together
 * when it has passed.  Lws thread only. */
void ws_images_arrived(struct server *srv, const char *study_uid);
/* hashi.v1 acks are written to the outbox in batches (every tick);
 * this writes the pending ones now (before reading the ack cursor). */
void ws_flush_acks(struct server *srv);

/* scp.c: the DICOM listener feeding the store. */
int scp_start(struct server *srv, struct err *e);
void scp_stop(struct server *srv);
/* Study UIDs that received new instances over DICOM since the last call,
 * for the lws thread (cases_images_arrived).  The SCP thread queues them
 * (a mutex in scp_state) and calls http_wake when the queue was empty.
 * Copies up to max UIDs into uids; returns how many (0 if none or no
 * listener). */
int scp_take_arrived(struct server *srv, char (*uids)[65], int max);

#endif
