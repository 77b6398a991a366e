/*
 * uploader — the CLI's sender of files as hashi.v1 resumable uploads
 * (proto/PROTOCOL.md sections 7 and 8) over one open session.
 *
 * Files go one after the other, in order, in chunks; the upload.begin of
 * the next few go out while the current one streams, so a slow link does
 * not idle for a round trip per file.  At most UPLOADER_WINDOW bytes are
 * sent beyond what the server has reported durable (upload.at), and a
 * file counts as sent only on its upload.done.
 *
 * uploader_run is one pass over one session.  When the link breaks it
 * returns ERR_IO and keeps what it learnt; the caller connects again and
 * calls it once more: every file not done is begun again and the
 * server's answer (its durable offset) says where to go on, so only the
 * rest is sent.  Upload ids are the files' sha256, so another process
 * sending the same file (the same command run again) resumes it, and a
 * file the server already holds is answered `duplicate` at once.
 */
#ifndef HASHI_UPLOADER_H
#define HASHI_UPLOADER_H

#include <stddef.h>
#include <stdint.h>

#include "../proto/util.h"
#include "conn.h"

#define UPLOADER_CHUNK (64u << 10)      /* a cut loses at most one */
#define UPLOADER_WINDOW (4u << 20)      /* > the server's 2 MiB flushes */
#define UPLOADER_AHEAD 4                /* begins sent before their turn */

enum up_state { UP_NEW = 0, UP_BEGUN, UP_SENDING, UP_ENDED, UP_DONE,
                UP_FAILED };

struct up_file {
    /* the caller's */
    const char *path;               /* borrowed; NULL when data is set */
    const unsigned char *data;      /* borrowed: a preview in memory */
    uint64_t size;
    char sha256[65];                /* also the upload id */
    char study_uid[65];             /* a preview's study; "" instance */
    /* uploader_run's; zero them before the first run */
    int state;                      /* enum up_state */
    uint64_t sent, acked;           /* bytes sent; durable at the server */
    char rid[33];                   /* the request whose answer is owed */
    int retries;                    /* not_ready / internal answers */
    int status;                     /* enum msg_upload_status once done */
    char sop_uid[65];               /* what upload.done named */
    char error[600];                /* why it failed (UP_FAILED) */
};

struct uploader {
    struct up_file *f;              /* borrowed, n of them */
    size_t n;
    /* called whenever acknowledged bytes grow (may be NULL) */
    void (*progress)(void *arg, uint64_t acked);
    void *arg;
    int64_t max_seq;                /* highest event seq seen: the next
                                       hello's last_seq (events are not
                                       for the uploader; never acked) */
    int progressed;                 /* set when a run got bytes beyond
                                       u->best acknowledged, or a file
                                       its final answer */
    uint64_t best;                  /* most bytes acknowledged so far */
};

/* Sends every file not yet done or failed over c (a hashi.v1 session).
 * 0 when each has its answer (UP_DONE, or UP_FAILED with the server's
 * refusal in error); ERR_IO when the link broke or went silent (call it
 * again on a new session); ERR_AUTH when the session was refused. */
int uploader_run(struct uploader *u, struct conn *c, struct err *e);

#endif
