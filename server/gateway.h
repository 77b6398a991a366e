/*
 * gateway — what an edge gateway tells the server and hears from it,
 * besides uploads (PROTOCOL.md section 8a): study.expect (how many
 * instances of a study are coming), gateway.status (its queue, kept with
 * a last-seen time and listed at GET /api/gateways) and priorities (the
 * open cases of its clinic that name studies, most urgent first).
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
/* The priorities message for clinic_id's gateways into *out (msg_init'd
 * here; no JSON inside, nothing to free): every open case naming studies,
 * or only case_id's when it is not NULL.  Returns the number of studies
 * (0: nothing to send) or ERR_DB. */
int gateway_priorities(struct server *srv, int64_t clinic_id,
                       const char *case_id, struct msg *out, struct err *e);
/* GET /api/gateways (http.c's route table). */
void gateway_api_list(struct http_req *r);

#endif
