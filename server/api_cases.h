/*
 * api_cases — the REST twin of hashi.v1 (proto/PROTOCOL.md) for scripts
 * and the web page.  JSON in and out, authentication required (http.c's
 * route table), bodies validated by the same codec as hashi.v1 frames
 * (msg_from_json), the work done by cases.c and outbox.c.
 *
 *   POST /api/cases                         create; 201 new, 200 existing
 *   GET  /api/cases?status=&limit=&before=  {"cases": [...], "next"?}
 *   GET  /api/cases/{id}                    {"case": Case} with messages
 *   POST /api/cases/{id}/claim              409 already_claimed on a lost race
 *   POST /api/cases/{id}/answer             {impression, recommendation, text}
 *   POST /api/cases/{id}/close|reopen       {reason?}
 *   GET  /api/cases/{id}/messages           {"messages": [Message...]}
 *   POST /api/cases/{id}/messages           {message_id, text, image?}; 201
 *   POST /api/cases/{id}/messages/{mid}/read
 *   GET  /api/events?after=SEQ&limit=N      the caller's outbox after SEQ
 *   POST /api/events/ack {"seq": N}         cumulative acknowledgement
 *
 * Errors: {"error": {"code", "message"}}; validation codes of PROTOCOL.md
 * with 400 (413 for too_big); a case the caller may not see is 404.
 */
#ifndef HASHI_API_CASES_H
#define HASHI_API_CASES_H

#include "http.h"

/* /api/cases and everything below it. */
void api_cases(struct http_req *r);
/* /api/events and /api/events/ack. */
void api_events(struct http_req *r);

#endif
