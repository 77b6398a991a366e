/*
 * gateway — what an edge gateway tells the server and hears from it,
 * besides uploads (PROTOCOL.md section 8a): study.expect (how many
 * instances of a study are coming), gateway.status (its queue, kept with
 * a last-seen time and listed at GET /api/gateways) and study.priority
 * (the priority of the studies it holds, and nothing else about cases).
 *
 * Threads: the lws thread only (the main store handle).
 */
#ifndef HASHI_GATEWAY_H
#define HASHI_GATEWAY_H

#include <jansson.h>

#include "../proto/msg.h"
#include "auth.h"
#include "http.h"
#include "server.h"

/* study.expect by who: *result (new reference) {"study": {study_uid,
 * expected, received}}.  ERR_FORBIDDEN for specialists, ERR_NOTFOUND for
 * another clinic's study. */
int gateway_expect(struct server *srv, const struct principal *who,
                   const struct msg_study_expect *x, json_t **result,
                   struct err *e);
/* gateway.status by who (a gateway token, else ERR_FORBIDDEN): kept with
 * the time it came. */
int gateway_status(struct server *srv, const struct principal *who,
                   const struct msg_gateway_status *g, struct err *e);
/* study.priority by who (a gateway token, else ERR_FORBIDDEN): *result
 * (new reference) {"studies": [{study_uid, priority}]}, for each asked
 * study that an open case of who's clinic names, the most urgent of
 * their priorities; the others are left out. */
int gateway_priority(struct server *srv, const struct principal *who,
                     const struct msg_study_priority *q, json_t **result,
                     struct err *e);
/* GET /api/gateways (http.c's route table). */
void gateway_api_list(struct http_req *r);

#endif
