/*
 * upload — the server side of hashi.v1's resumable uploads (PROTOCOL.md
 * sections 7 and 8): upload.begin -> upload.at, binary chunks,
 * upload.end -> upload.done, and the study previews they can carry
 * (GET /api/studies/{study_uid}/preview).
 *
 * A partial upload is a file DATA/uploads/<row>.part plus a row of the
 * `uploads` table keyed by (principal, upload_id).  The row's `durable`
 * is the number of bytes fdatasync'd into the file: the only offset ever
 * reported, so a restart (or kill -9) loses no acknowledged byte; an
 * upload.begin after it truncates the file to `durable` and answers it.
 * Chunks are collected in memory on the lws thread and written + synced
 * on the worker pool (srv->jobs); upload.end's hash check and ingest run
 * there too, through store_put_file — the same validation, conflict
 * rules and audit as C-STORE and STOW-RS — and are answered from the
 * job's done callback.  Rows finished or untouched for
 * cfg.upload_max_age seconds are removed with their files (upload_tick).
 *
 * Threads: everything here runs on the lws thread, except the job work
 * functions (static), which touch only their upload's job fields and
 * their worker's own store handle.
 *
 * Sessions are ws.c's: upload.c knows them only as opaque pointers and
 * answers through the send function given to upload_init.  A session
 * that closes must call upload_detach first.
 */
#ifndef HASHI_UPLOAD_H
#define HASHI_UPLOAD_H

#include "../proto/msg.h"
#include "auth.h"
#include "http.h"
#include "server.h"

struct upload_hub;

/* Queue m (built and validated here) on session sess. */
typedef void (*upload_send_fn)(void *sess, const struct msg *m);

/* Creates DATA/uploads and DATA/previews and srv->uploads. */
int upload_init(struct server *srv, upload_send_fn send, struct err *e);
/* After jobs_stop (no job is left in flight).  NULL-safe. */
void upload_free(struct server *srv);

/* upload.begin or upload.end from who on sess: answered (now or later)
 * with upload.at / upload.done / a reply ok:false through send.  Not
 * kept as replies: an upload is idempotent by its upload_id. */
void upload_request(struct server *srv, void *sess,
                    const struct principal *who, const char *remote,
                    const struct msg *m);
/* One parsed chunk from who on sess. */
void upload_chunk(struct server *srv, void *sess,
                  const struct principal *who, const struct msg_chunk *c);
/* sess is closing: its uploads keep what they received (flushed on the
 * pool) and wait for an upload.begin on another connection. */
void upload_detach(struct server *srv, void *sess);
/* Once a second: flushes what waits in memory, removes expired rows. */
void upload_tick(struct server *srv);

/* GET /api/studies/{study_uid}/preview (http.c's route table). */
void upload_api_studies(struct http_req *r);

#endif
