/*
 * cases — the consult workflow: cases, their chat thread, the answer, the
 * on-call lists, escalation, and who may see what.
 *
 * Every operation checks access first (a case the caller may not see is
 * ERR_NOTFOUND, never "forbidden"), then makes its change and appends the
 * resulting events to the outboxes of everyone who should hear of it, in
 * ONE SQLite transaction; after COMMIT it calls srv->events_committed
 * (registered by the WebSocket layer) for live delivery.  Results are
 * JSON objects shared by the REST twin, hashi.v1 and the CLI (shapes in
 * proto/PROTOCOL.md).
 *
 * Requests come typed, as the structs of proto/msg.h that the codec
 * filled and validated (msg_parse for hashi.v1, msg_from_json for REST):
 * the syntax, length and range rules are checked there, once; cases.c
 * checks only what needs the database or the meaning (blank text, who
 * may do what, the case's status).  Ids passed as strings come from such
 * requests too.  Requests are borrowed.
 *
 * Visibility is access.h's rule: admin — everything; requester — cases
 * of their clinic; specialist — cases for one of their specialties, named
 * to them, claimed by them, or escalated to them; gateway — the cases it
 * created (read only: no claim, answer, close, reopen or message).
 *
 * Status: new -> claimed -> answered -> closed; the requester may reopen
 * (answered|closed -> reopened, which behaves as claimed by the same
 * specialist).  Claim is one UPDATE ... WHERE status='new' (or escalated),
 * so exactly one specialist wins.
 *
 * Escalation: a case not claimed by due_at goes to the next specialist of
 * the specialty's on-call list, then to every specialist of the specialty;
 * each step notifies the new recipients and the requester and sets the
 * next due_at.  Deadlines live in the database, so they survive restarts.
 *
 * Lws thread only.
 */
#ifndef HASHI_CASES_H
#define HASHI_CASES_H

#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "../proto/msg.h"
#include "auth.h"

struct outbox_rcpt;

struct server;

/* Default escalation deadlines, in seconds (config may override). */
#define CASES_DUE_STAT 600
#define CASES_DUE_URGENT 3600
#define CASES_DUE_ROUTINE 86400

/* Opens the outboxes (srv->outbox) over the store's database, whose
 * tables schema.c's migrations made; cases_free closes them. */
int cases_init(struct server *srv, struct err *e);
void cases_free(struct server *srv);

/* case.create.  Same case_id from the same clinic again -> the existing
 * case (idempotent), *created = 0.  *out = the case. */
int cases_create(struct server *srv, const struct principal *who,
                 const struct msg_case_create *req, json_t **out,
                 int *created, struct err *e);
/* case.get: the case with its messages, answer and timeline; a
 * specialist's first case.get is the case's "opened" step. */
int cases_get(struct server *srv, const struct principal *who,
              const char *case_id, json_t **out, struct err *e);
/* case.list, as PROTOCOL.md has it: *out = {"cases": [...], "next":
 * cursor} ("next" only when there may be more), the most recently
 * updated first; req->before is the "next" of a previous page, or "".
 * req->limit: 1..MSG_LIST_MAX (the one limit), 0 for MSG_LIST_DEFAULT. */
int cases_list_page(struct server *srv, const struct principal *who,
                    const struct msg_case_list *req, json_t **out,
                    struct err *e);
/* case.claim: ERR_CONFLICT ("already claimed by X") if someone else won;
 * ERR_FORBIDDEN if the caller is no specialist of the case. */
int cases_claim(struct server *srv, const struct principal *who,
                const char *case_id, json_t **out, struct err *e);
/* case.answer: by the claimer. */
int cases_answer(struct server *srv, const struct principal *who,
                 const struct msg_case_answer *req, json_t **out,
                 struct err *e);
/* case.amend: the answer's author replaces the answer of an answered or
 * closed case; the one replaced is kept (Case answer.revisions). */
int cases_amend(struct server *srv, const struct principal *who,
                const struct msg_case_answer *req, json_t **out,
                struct err *e);
int cases_close(struct server *srv, const struct principal *who,
                const char *case_id, json_t **out, struct err *e);
int cases_reopen(struct server *srv, const struct principal *who,
                 const char *case_id, json_t **out, struct err *e);
/* message.send: idempotent on message_id. */
int cases_message(struct server *srv, const struct principal *who,
                  const struct msg_message_send *req, json_t **out,
                  struct err *e);
/* message.read {case_id, message_id}: read receipt to the author. */
int cases_message_read(struct server *srv, const struct principal *who,
                       const char *case_id, const char *message_id,
                       struct err *e);

/* The case names study_uid too (after the ones it names), once; on db,
 * the caller's connection and transaction (any thread's). */
int cases_name_study(sqlite3 *db, const char *case_id,
                     const char *study_uid, struct err *e);

/* case.link (hand-over): the receiving team's specialist (or an admin)
 * links its own clinic's study to a pre-arrival case; repeated, the
 * same case; ERR_CONFLICT for another study or no pre-arrival case,
 * ERR_NOTFOUND for a study not the caller's clinic's. */
int cases_link(struct server *srv, const struct principal *who,
               const struct msg_case_link *req, json_t **out,
               struct err *e);

/* GET /api/cases/{id}/link: what case.link may take, for the team's
 * button: {"studies": [{study_uid, description, modalities, date, time,
 * instances, received_at}...]}, the caller's clinic's studies received
 * since an hour before the case, newest first (at most 10).  Who may
 * link, else ERR_FORBIDDEN; a case not seen: ERR_NOTFOUND. */
int cases_link_candidates(struct server *srv, const struct principal *who,
                          const char *case_id, json_t **out, struct err *e);

/* The user has every event up to seq (a hashi.v1 ack, POST
 * /api/events/ack): moves the outbox cursor (outbox_ack's rules and
 * errors) and marks the chat messages of the newly acknowledged events
 * delivered to the user.  Inside the caller's transaction if any. */
int cases_ack(struct server *srv, int64_t user_id, int64_t seq,
              struct err *e);

/* The acks of many users at once (ws.c's flush at every tick), with the
 * same effects as cases_ack for each, in a few statements for all; acks
 * at or below a user's previous one or beyond its last event are skipped
 * (the caller checked them).  acks[i].seq is the user's new ack. */
int cases_ack_many(struct server *srv, const struct outbox_rcpt *acks,
                   size_t n, struct err *e);

/* Images for a study arrived (called after store_put_file on the lws
 * thread): emits images.arrived to the participants of cases that name
 * the study. */
int cases_images_arrived(struct server *srv, const char *study_uid,
                         struct err *e);

/* Escalate every case whose due_at <= now_ms.  Returns the number
 * escalated; *next_due_ms receives the earliest remaining due_at (0 if
 * none), for the caller's timer. */
int cases_escalate_due(struct server *srv, int64_t now_ms,
                       int64_t *next_due_ms, struct err *e);

/* On-call list of a specialty, in order (admin subcommand). */
int cases_oncall_set(struct server *srv, const char *specialty,
                     const char **logins, int n, struct err *e);

#endif
