/*
 * server — the one server context, passed explicitly to every part of
 * hashi-server (no other global mutable state).
 *
 * Threads: main runs the libwebsockets loop (http.c) and owns `store`;
 * the DICOM listener (scp.c) runs on its own thread with its own store
 * handle.  Shared between them: `metrics` (atomics) and `audit` (locked).
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
    int log_level;
    int due_stat;               /* escalation deadlines, seconds */
    int due_urgent;
    int due_routine;
    int upload_max_age;         /* seconds: partial uploads removed after */
};

struct server {
    struct server_config cfg;
    struct store *store;        /* main (lws) thread's connection */
    struct audit *audit;
    struct metrics metrics;
    struct lws_context *lws;
    struct dicom_scp *scp;
    struct scp_state *scp_state; /* scp.c's own (its thread's store) */
    struct outbox *outbox;      /* over store's db; lws thread only */
    struct ws_hub *ws;          /* connected hashi.v1 sessions (ws.c) */
    struct render_cache *render; /* rendered JPEGs (render.h); may be NULL */
    struct jobs *jobs;          /* worker pool (jobs.h), each thread with
                                   its own store handle; finished jobs are
                                   reaped on the lws thread */
    struct upload_hub *uploads; /* resumable uploads (upload.h) */
    volatile sig_atomic_t stopping;
};

/* http.c: the HTTPS/WSS listener and its routes. */
int http_start(struct server *srv, struct err *e);
/* Serve until srv->stopping is set; then returns. */
void http_run(struct server *srv);
void http_stop(struct server *srv);
/* Make http_run look at srv->stopping (and at queued work) now.  Any
 * thread may call it (lws_cancel_service); the signal thread does. */
void http_wake(struct server *srv);

/* ws.c: the hashi.v1 WebSocket protocol (see proto/PROTOCOL.md).
 * ws_protocol() is the lws protocol entry http.c puts in its list;
 * ws_push_dirty() sends newly appended outbox events to the connected
 * sessions of the users outbox_take_dirty() names (call after COMMIT). */
struct lws_protocols;
int ws_init(struct server *srv, struct err *e);
const struct lws_protocols *ws_protocol(void);
void ws_push_dirty(struct server *srv);
void ws_free(struct server *srv);
/* New instances of study_uid were stored (STOW, or the DICOM listener's
 * queue drained on the lws thread): cases_images_arrived(), at most once
 * a second per study — more arrivals within the second are told together
 * when it has passed.  Lws thread only. */
void ws_images_arrived(struct server *srv, const char *study_uid);
/* A case was created: gateway sessions of its clinic get its studies in
 * a priorities message (when it names any).  Lws thread only. */
void ws_case_created(struct server *srv, const char *case_id);
/* hashi.v1 acks are written to the outbox in batches (every 200 ms);
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
