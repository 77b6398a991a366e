/*
 * gateway — study.expect, gateway.status, study.priority and GET
 * /api/gateways (see gateway.h).
 *
 * An expectation belongs to the clinic that announced it: a study UID
 * whose instances, or whose announcement, are another clinic's is
 * not_found to everyone else, so naming a UID reveals nothing.  A
 * gateway's status is stored as the JSON of its gateway.status (the
 * fields as on the wire), replaced by each new one.
 */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../proto/log.h"

static int is_gateway(const struct principal *who)
{
    return !strcmp(who->role, "gateway");
}

static int db_fail(struct err *e, struct store *s, const char *what)
{
    return err_set(e, ERR_DB, "gateway: %s: %s", what,
                   sqlite3_errmsg(store_db(s)));
}

/* The clinic of study_uid's instances, else of its announcement: 1 and
 * *clinic, 0 when neither exists, or ERR_DB. */
static int study_owner(struct store *s, const char *study_uid,
                       int64_t *clinic, struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s, "SELECT COALESCE((SELECT clinic_id FROM studies"
           " WHERE study_uid = ?1), (SELECT clinic_id FROM"
           " study_expectations WHERE study_uid = ?1))", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) !=
                                        SQLITE_NULL;
    if (found)
        *clinic = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? found : db_fail(e, s, "study owner");
}

static int64_t received(struct store *s, const char *study_uid)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(
        s, "SELECT COUNT(*) FROM instances i"
           " JOIN series se ON se.id = i.series_ref"
           " JOIN studies st ON st.id = se.study_ref"
           " WHERE st.study_uid = ?1", &e);
    int64_t n = 0;
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

int gateway_expect(struct server *srv, const struct principal *who,
                   const struct msg_study_expect *x, json_t **result,
                   struct err *e)
{
    struct store *s = srv->store;
    int64_t owner = 0;
    *result = NULL;
    if (strcmp(who->role, "requester") && strcmp(who->role, "admin") &&
        !is_gateway(who))
        return err_set(e, ERR_FORBIDDEN, "only the sending clinic's "
                       "requesters, admins and gateways announce studies");
    int rc = study_owner(s, x->study_uid, &owner, e);
    if (rc < 0)
        return rc;
    if (rc == 1 && owner != who->clinic_id)
        return err_set(e, ERR_NOTFOUND, "study_uid: no such study");
    sqlite3_stmt *st = store_stmt(
        s, "INSERT INTO study_expectations (study_uid, clinic_id,"
           " instances, priority, at) VALUES (?1, ?2, ?3, ?4, ?5)"
           " ON CONFLICT (study_uid) DO UPDATE SET instances = ?3,"
           " priority = ?4, at = ?5", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, x->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, who->clinic_id);
    sqlite3_bind_int64(st, 3, x->instances);
    if (x->priority)
        sqlite3_bind_text(st, 4, msg_priority_name(x->priority), -1,
                          SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now_ms());
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(e, s, "expect");
    *result = json_pack("{s:{s:s, s:I, s:I}}", "study", "study_uid",
                        x->study_uid, "expected", (json_int_t)x->instances,
                        "received", (json_int_t)received(s, x->study_uid));
    return *result ? 0 : err_set(e, ERR_INTERNAL, "out of memory");
}

/* The gateways row of a gateway principal ("gateway:<name>"). */
static int64_t gateway_row(struct store *s, const struct principal *who)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(
        s, "SELECT id FROM gateways WHERE clinic_id = ?1 AND name = ?2",
        &e);
    int64_t id = 0;
    if (!st || strncmp(who->login, "gateway:", 8))
        return 0;
    sqlite3_bind_int64(st, 1, who->clinic_id);
    sqlite3_bind_text(st, 2, who->login + 8, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return id;
}

int gateway_status(struct server *srv, const struct principal *who,
                   const struct msg_gateway_status *g, struct err *e)
{
    struct store *s = srv->store;
    if (!is_gateway(who))
        return err_set(e, ERR_FORBIDDEN, "gateway.status is for gateway "
                       "tokens");
    int64_t gw = gateway_row(s, who);
    if (!gw)
        return err_set(e, ERR_NOTFOUND, "no such gateway");
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
                          "waiting", (json_int_t)g->waiting,
                          "in_flight", (json_int_t)g->in_flight,
                          "done", (json_int_t)g->done,
                          "failed", (json_int_t)g->failed,
                          "bytes_waiting", (json_int_t)g->bytes_waiting,
                          "rate_bps", (json_int_t)g->rate_bps);
    if (o && g->has_eta_s)
        json_object_set_new(o, "eta_s", json_integer(g->eta_s));
    if (o && g->last_error[0])
        json_object_set_new(o, "last_error", json_string(g->last_error));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return err_set(e, ERR_INTERNAL, "out of memory");
    sqlite3_stmt *st = store_stmt(
        s, "INSERT INTO gateway_status (gateway_id, status, last_seen)"
           " VALUES (?1, ?2, ?3) ON CONFLICT (gateway_id) DO UPDATE"
           " SET status = ?2, last_seen = ?3", e);
    int rc = ERR_DB;
    if (st) {
        sqlite3_bind_int64(st, 1, gw);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, now_ms());
        rc = sqlite3_step(st) == SQLITE_DONE ? 0
             : db_fail(e, s, "status");
        sqlite3_reset(st);
    }
    free(text);
    return rc;
}

/* Only the priority crosses: a gateway learns neither case ids nor
 * texts, nor which other studies its clinic's cases name. */
int gateway_priority(struct server *srv, const struct principal *who,
                     const struct msg_study_priority *q, json_t **result,
                     struct err *e)
{
    *result = NULL;
    if (!is_gateway(who))
        return err_set(e, ERR_FORBIDDEN, "study.priority is for gateway "
                       "tokens");
    sqlite3_stmt *st = store_stmt(
        srv->store,
        "SELECT min(CASE c.priority WHEN 'stat' THEN ?3"
        " WHEN 'urgent' THEN ?4 ELSE ?5 END) FROM cases c"
        " JOIN case_studies cs ON cs.case_id = c.case_id"
        " WHERE cs.study_uid = ?1 AND c.clinic_id = ?2"
        " AND c.status <> 'closed'", e);
    if (!st)
        return ERR_DB;
    json_t *list = json_array();
    for (int i = 0; list && i < q->n_study_uids; i++) {
        sqlite3_bind_text(st, 1, q->study_uids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, who->clinic_id);
        sqlite3_bind_int(st, 3, MSG_PRIO_STAT);
        sqlite3_bind_int(st, 4, MSG_PRIO_URGENT);
        sqlite3_bind_int(st, 5, MSG_PRIO_ROUTINE);
        int rc = sqlite3_step(st);
        int p = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) {
            json_decref(list);
            return db_fail(e, srv->store, "priority");
        }
        if (p)          /* min() of no case: NULL, 0 */
            json_array_append_new(list, json_pack(
                "{s:s, s:s}", "study_uid", q->study_uids[i], "priority",
                msg_priority_name(p)));
    }
    *result = list ? json_pack("{s:o}", "studies", list) : NULL;
    return *result ? 0 : err_set(e, ERR_INTERNAL, "out of memory");
}

void gateway_api_list(struct http_req *r)
{
    struct store *s = r->srv->store;
    const struct principal *who = &r->who;
    struct err e = { 0, "" };

    if (strcmp(who->role, "requester") && strcmp(who->role, "admin")) {
        http_respond_error(r, 403, "forbidden", "the clinic's requesters "
                           "and admins see its gateways");
        return;
    }
    sqlite3_stmt *st = store_stmt(
        s, "SELECT g.name, gs.last_seen, gs.status FROM gateways g"
           " LEFT JOIN gateway_status gs ON gs.gateway_id = g.id"
           " WHERE g.clinic_id = ?1 AND g.revoked = 0 ORDER BY g.name", &e);
    if (!st) {
        http_respond_err(r, &e);
        return;
    }
    sqlite3_bind_int64(st, 1, who->clinic_id);
    json_t *list = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *status = (const char *)sqlite3_column_text(st, 2);
        json_t *g = json_pack(
            "{s:s, s:o, s:o}", "name", (const char *)sqlite3_column_text(
                                           st, 0),
            "last_seen", sqlite3_column_type(st, 1) == SQLITE_NULL
                         ? json_null()
                         : json_integer(sqlite3_column_int64(st, 1)),
            "status", status ? json_loads(status, 0, NULL) : json_null());
        if (g)
            json_array_append_new(list, g);
    }
    sqlite3_reset(st);
    http_respond_json(r, 200, json_pack("{s:s, s:o}", "clinic", who->clinic,
                                        "gateways", list));
}
