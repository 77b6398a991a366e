/*
 * uplink — the gateway's uploader: drains the spool to hashi-server over
 * one hashi.v1 session (proto/PROTOCOL.md §7-8), on a thread of its own.
 *
 * Several instances are in flight at once (begin, chunks, end pipelined,
 * at most UPLINK_WINDOW bytes unanswered) so a long, slow link stays
 * full; chunks go in order of study priority, so a stat study overtakes a
 * routine one at the next chunk boundary.  After any cut, and across
 * restarts of either side, every upload is begun again and the server's
 * offset says where to go on.  An uncompressed image is sent as JPEG-LS
 * lossless when that is smaller, after checking that its decoded pixels
 * hash the same as the original's.  Attempts are spaced by exponential
 * backoff with jitter (1 s up to retry_max_s), reset by each success.  A
 * row becomes done only on upload.done; a server refusal marks it failed
 * with the server's reason and it is not tried again.
 */
#ifndef HASHI_UPLINK_H
#define HASHI_UPLINK_H

#include "../proto/util.h"
#include "spool.h"

#define UPLINK_WINDOW (8 << 20)     /* bytes unanswered (PROTOCOL §7) */

struct uplink_cfg {
    const char *server;             /* https://host:port; copied */
    const char *token;              /* the gateway's API token; copied */
    const char *cacert;             /* NULL: the system CAs; copied */
    double max_rate;                /* bytes/s on the wire; 0: no cap */
    int retry_max_s;                /* backoff cap; 0: 300 */
    int quiet_ms;                   /* a study without news for that long
                                       is announced (study.expect, then
                                       its preview, then its instances);
                                       0: 5000 */
};

struct uplink;

/* Starts the uploader on its own thread (signals blocked there).  The
 * spool is borrowed and must outlive uplink_stop. */
struct uplink *uplink_start(struct spool *s, const struct uplink_cfg *cfg,
                            struct err *e);
/* Asks the thread to stop and waits up to wait_ms for it; frees it when
 * it ended (a thread still blocked in I/O is left to process exit). */
void uplink_stop(struct uplink *u, int wait_ms);

/* "256kbit", "2mbit", "1gbit" (bits/s) or bytes/s with an optional k, m,
 * g (x1024) suffix: 0 and *bps, or ERR_INVALID. */
int uplink_parse_rate(const char *s, double *bps);

#endif
