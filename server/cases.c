/*
 * cases — the consult workflow (see cases.h for the contract).
 *
 * Every operation follows one pattern: BEGIN IMMEDIATE; find the case
 * through the one visibility predicate (ACCESS_CASE_VISIBLE, access.h — a
 * case the caller may not see is ERR_NOTFOUND); check the role and the
 * status; change the rows; append the events to the outboxes of the
 * case's participants; COMMIT; then srv->events_committed (live
 * delivery) and one audit line.
 *
 * Participants (case_participants) are the people who hear about a case:
 * the requester and their clinic's requesters/admins, the specialists it
 * was sent or escalated to, the claimer, and whoever wrote in its thread.
 * Visibility is wider than that: a specialist also sees every case of
 * their specialties, so that a colleague can pick one up.
 *
 * Tables live in the store's database (created by schema.c's migrations).
 */
#include "cases.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../proto/log.h"
#include "../proto/msg.h"
#include "access.h"
#include "outbox.h"
#include "server.h"

#define ID_MAX MSG_ID_MAX

/* The caller as a one-row table for ACCESS_CASE_VISIBLE (access.h, the
 * one visibility rule): binds ?1 access_who_id, ?2 role, ?3 clinic_id;
 * any further plain '?' in the statement is numbered from 4. */
#define WHO_FROM "(SELECT ?1 AS id, ?2 AS role, ?3 AS clinic_id) u"

/* ---- small SQLite helpers ------------------------------------------ */

static sqlite3 *dbof(struct server *srv)
{
    return store_db(srv->store);
}

static int db_fail(struct err *e, sqlite3 *db, const char *what)
{
    return err_set(e, ERR_DB, "cases: %s: %s", what, sqlite3_errmsg(db));
}

/* Prepared statements kept across calls, so that a create or an ack
 * flush parses none of its statements again (SQLite's parser was 12 % of
 * a loaded server's CPU).  Found by the SQL text's address and checked
 * by its content (a few texts are built in buffers); one in use by an
 * outer caller is not handed out twice: a fresh statement is made.  The
 * lws thread only, as all of cases.c; cases_free finalizes a db's. */
#define STMT_SLOTS 96

static struct stmt_slot {
    sqlite3 *db;
    const char *sql;
    sqlite3_stmt *st;
    int busy;
} stmt_slots[STMT_SLOTS];

static sqlite3_stmt *stmt_get(sqlite3 *db, const char *sql)
{
    struct stmt_slot *free_slot = NULL;
    for (int i = 0; i < STMT_SLOTS; i++) {
        struct stmt_slot *c = &stmt_slots[i];
        if (!c->st) {
            if (!free_slot)
                free_slot = c;
        } else if (c->db == db && c->sql == sql && !c->busy &&
                   !strcmp(sqlite3_sql(c->st), sql)) {
            c->busy = 1;
            return c->st;
        }
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(db, sql, -1,
                           free_slot ? SQLITE_PREPARE_PERSISTENT : 0, &st,
                           NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    if (free_slot)
        *free_slot = (struct stmt_slot){ db, sql, st, 1 };
    return st;
}

/* The end of a statement from prep (or from sqlite3_prepare): a kept one
 * is reset for its next use, any other finalized. */
static void done(sqlite3_stmt *st)
{
    if (!st)
        return;
    for (int i = 0; i < STMT_SLOTS; i++)
        if (stmt_slots[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            stmt_slots[i].busy = 0;
            return;
        }
    sqlite3_finalize(st);
}

static void stmt_forget(sqlite3 *db)
{
    for (int i = 0; i < STMT_SLOTS; i++)
        if (stmt_slots[i].st && stmt_slots[i].db == db) {
            sqlite3_finalize(stmt_slots[i].st);
            stmt_slots[i] = (struct stmt_slot){ 0 };
        }
}

/* Prepare sql and bind ?1, ?2, ... as types says: 'i' an int64_t
 * argument, 's' a const char * (NULL binds NULL).  NULL on failure (e
 * set).  The caller ends it with done(). */
static sqlite3_stmt *vprep(sqlite3 *db, struct err *e, const char *sql,
                           const char *types, va_list ap)
{
    sqlite3_stmt *st = stmt_get(db, sql);
    if (!st) {
        db_fail(e, db, "prepare");
        log_error("cases: prepare failed: %s in: %s", sqlite3_errmsg(db),
                  sql);
        return NULL;
    }
    for (int i = 0; types && types[i]; i++) {
        if (types[i] == 'i') {
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else {
            const char *s = va_arg(ap, const char *);
            if (s)
                sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i + 1);
        }
    }
    return st;
}

static sqlite3_stmt *prep(sqlite3 *db, struct err *e, const char *sql,
                          const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = vprep(db, e, sql, types, ap);
    va_end(ap);
    return st;
}

/* Run a statement that returns no rows.  *changes (may be NULL) gets
 * sqlite3_changes(). */
static int run(sqlite3 *db, struct err *e, int *changes, const char *sql,
               const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = vprep(db, e, sql, types, ap);
    va_end(ap);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE)
        return db_fail(e, db, "write");
    if (changes)
        *changes = sqlite3_changes(db);
    return 0;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static json_t *col_json_text(sqlite3_stmt *st, int i)
{
    const char *s = col_text(st, i);
    return s ? json_string(s) : json_null();
}

static json_t *col_json_int(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return json_null();
    return json_integer(sqlite3_column_int64(st, i));
}

static int tx_begin(struct server *srv, struct err *e)
{
    if (sqlite3_exec(dbof(srv), "BEGIN IMMEDIATE", NULL, NULL, NULL))
        return db_fail(e, dbof(srv), "begin");
    return 0;
}

static void tx_rollback(struct server *srv)
{
    sqlite3_exec(dbof(srv), "ROLLBACK", NULL, NULL, NULL);
    if (srv->outbox)
        outbox_clear_events(srv->outbox);
}

/* COMMIT, then hand the new events to whoever registered for them (the
 * WebSocket layer); with no one, they wait in the outboxes for the next
 * hello. */
static int tx_commit(struct server *srv, struct err *e)
{
    if (sqlite3_exec(dbof(srv), "COMMIT", NULL, NULL, NULL)) {
        db_fail(e, dbof(srv), "commit");
        tx_rollback(srv);
        return ERR_DB;
    }
    if (srv->events_committed)
        srv->events_committed(srv);
    else if (srv->outbox)
        outbox_clear_events(srv->outbox);
    return 0;
}

/* End the transaction of work that returned rc: COMMIT on 0, else
 * ROLLBACK.  Returns rc or the commit's error; on either, what the work
 * put in *out (if out) is dropped. */
static int tx_end(struct server *srv, int rc, json_t **out, struct err *e)
{
    if (rc)
        tx_rollback(srv);
    else
        rc = tx_commit(srv, e);
    if (rc && out) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- meaning checks ---------------------------------------------------
 * Requests come typed and validated by the codec (proto/msg.c: lengths,
 * syntaxes, enums, ranges); what is left here is what a syntax cannot
 * say: text that is only blanks is no question. */

/* An id inside a list cursor (the codec sees the cursor as opaque text):
 * 1..64 of [A-Za-z0-9_-], the codec's id rule. */
static int valid_id(const char *s)
{
    if (!s || !*s || strlen(s) > ID_MAX)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int blank(const char *s)
{
    if (!s)
        return 1;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 0;
    return 1;
}

static const char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t due_after(struct server *srv, const char *priority)
{
    int s;
    if (!strcmp(priority, "stat"))
        s = srv->cfg.due_stat > 0 ? srv->cfg.due_stat : CASES_DUE_STAT;
    else if (!strcmp(priority, "urgent"))
        s = srv->cfg.due_urgent > 0 ? srv->cfg.due_urgent : CASES_DUE_URGENT;
    else
        s = srv->cfg.due_routine > 0 ? srv->cfg.due_routine
                                     : CASES_DUE_ROUTINE;
    return (int64_t)s * 1000;
}

/* ---- audit ----------------------------------------------------------- */

static const char *outcome_of(int rc)
{
    switch (rc) {
    case 0: return "ok";
    case ERR_NOTFOUND: return "notfound";
    case ERR_FORBIDDEN: return "denied";
    case ERR_CONFLICT: return "conflict";
    case ERR_INVALID: return "invalid";
    default: return "error";
    }
}

static void audit_case(struct server *srv, const struct principal *who,
                       const char *action, const char *object, int rc,
                       const char *detail)
{
    if (!srv->audit)
        return;
    struct audit_entry a = {
        .actor = who->login,
        .action = action,
        .object = object,
        .outcome = outcome_of(rc),
        .remote = NULL,
        .detail = detail,
    };
    audit_write(srv->audit, &a);
}

/* ---- the case row and its JSON -------------------------------------- */

struct case_row {
    char case_id[ID_MAX + 1];
    char status[16];
    char priority[16];
    char specialty[128];
    int64_t clinic_id;
    int64_t requester_id;
    int64_t specialist_id;
    int64_t claimed_by;
    int64_t due_at;
    int escalation_level;
};

#define ROW_COLS                                                           \
    "c.case_id, c.status, c.priority, c.specialty, c.clinic_id,"           \
    " c.requester_id, c.specialist_id, c.claimed_by, c.due_at,"            \
    " c.escalation_level"

static void row_read(sqlite3_stmt *st, struct case_row *r)
{
    memset(r, 0, sizeof *r);
    strlcpy_h(r->case_id, col_text(st, 0) ? col_text(st, 0) : "",
              sizeof r->case_id);
    strlcpy_h(r->status, col_text(st, 1) ? col_text(st, 1) : "",
              sizeof r->status);
    strlcpy_h(r->priority, col_text(st, 2) ? col_text(st, 2) : "",
              sizeof r->priority);
    strlcpy_h(r->specialty, col_text(st, 3) ? col_text(st, 3) : "",
              sizeof r->specialty);
    r->clinic_id = sqlite3_column_int64(st, 4);
    r->requester_id = sqlite3_column_int64(st, 5);
    r->specialist_id = sqlite3_column_int64(st, 6);
    r->claimed_by = sqlite3_column_int64(st, 7);
    r->due_at = sqlite3_column_int64(st, 8);
    r->escalation_level = sqlite3_column_int(st, 9);
}

/* The case if `who` may see it; ERR_NOTFOUND otherwise. */
static int load_visible(struct server *srv, const struct principal *who,
                        const char *case_id, struct case_row *r,
                        struct err *e)
{
    sqlite3 *db = dbof(srv);
    sqlite3_stmt *st = prep(db, e,
                            "SELECT " ROW_COLS " FROM cases c, " WHO_FROM
                            " WHERE c.case_id = ? AND " ACCESS_CASE_VISIBLE,
                            "isis", access_who_id(who), who->role,
                            who->clinic_id, case_id);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_read(st, r);
    done(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return err_set(e, ERR_NOTFOUND, "no such case");
    return db_fail(e, db, "load case");
}

static const char *login_of(sqlite3 *db, int64_t user_id, char *buf,
                            size_t n)
{
    buf[0] = '\0';
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT login FROM users WHERE id = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return buf;
    sqlite3_bind_int64(st, 1, user_id);
    if (sqlite3_step(st) == SQLITE_ROW && col_text(st, 0))
        strlcpy_h(buf, col_text(st, 0), n);
    done(st);
    return buf;
}

/* Instances received so far of the case's studies (of its clinic). */
static int64_t images_received(sqlite3 *db, const char *case_id,
                               int64_t clinic_id, const char *study_uid)
{
    sqlite3_stmt *st;
    int64_t n = 0;
    if (sqlite3_prepare_v2(
            db,
            "SELECT COUNT(*) FROM instances i"
            " JOIN series se ON se.id = i.series_ref"
            " JOIN studies st ON st.id = se.study_ref"
            " WHERE st.clinic_id = ?1 AND st.study_uid IN"
            " (SELECT study_uid FROM case_studies WHERE case_id = ?2"
            "  AND (?3 IS NULL OR study_uid = ?3))",
            -1, &st, NULL) != SQLITE_OK) {
        log_warn("cases: images count: %s", sqlite3_errmsg(db));
        return 0;
    }
    sqlite3_bind_int64(st, 1, clinic_id);
    sqlite3_bind_text(st, 2, case_id, -1, SQLITE_STATIC);
    if (study_uid)
        sqlite3_bind_text(st, 3, study_uid, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    done(st);
    return n;
}

/* What the web viewer shows first, so it can ask for that image with the
 * case (issue 9: each round trip costs 0.8 s on a phone's link): the
 * series with the most instances (the first of the case's studies, then
 * by series number, as the viewer picks), and its middle slice, counting
 * each frame as one, in InstanceNumber then SOP UID order.  JSON null
 * before any instance has come, or on a database error (the viewer then
 * finds its way through QIDO-RS). */
static json_t *first_image_json(sqlite3 *db, const char *case_id,
                                int64_t clinic_id)
{
    struct err e = { 0 };
    sqlite3_stmt *st = prep(
        db, &e,
        "SELECT se.id, se.series_uid, s.study_uid, SUM(i.frames)"
        " FROM case_studies cs"
        " JOIN studies s ON s.study_uid = cs.study_uid AND s.clinic_id = ?2"
        " JOIN series se ON se.study_ref = s.id"
        " JOIN instances i ON i.series_ref = se.id"
        " WHERE cs.case_id = ?1 GROUP BY se.id"
        " ORDER BY COUNT(*) DESC, cs.pos, se.series_number, se.id LIMIT 1",
        "si", case_id, clinic_id);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        done(st);
        return json_null();
    }
    int64_t series_id = sqlite3_column_int64(st, 0);
    int64_t slices = sqlite3_column_int64(st, 3);
    json_t *o = json_pack("{s:o, s:o, s:I}", "study_uid",
                          col_json_text(st, 2), "series_uid",
                          col_json_text(st, 1), "slices",
                          (json_int_t)slices);
    done(st);
    st = prep(db, &e,
              "SELECT sop_uid, frames FROM instances WHERE series_ref = ?1"
              " ORDER BY instance_number, sop_uid", "i", series_id);
    int64_t want = slices / 2, at = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        int64_t frames = sqlite3_column_int64(st, 1);
        if (frames < 1)
            frames = 1;
        if (want < at + frames) {
            json_object_set_new(o, "sop_uid", col_json_text(st, 0));
            json_object_set_new(o, "frame", json_integer(want - at + 1));
            json_object_set_new(o, "frames", json_integer(frames));
            json_object_set_new(o, "index", json_integer(want));
            break;
        }
        at += frames;
    }
    done(st);
    if (!json_object_get(o, "sop_uid")) {
        json_decref(o);
        return json_null();
    }
    return o;
}

/* The instances announced (study.expect) for a case's studies, or one of
 * them: JSON null when none is announced. */
static json_t *images_expected(sqlite3 *db, const char *case_id,
                               int64_t clinic_id, const char *study_uid)
{
    sqlite3_stmt *st;
    json_t *n = json_null();
    if (sqlite3_prepare_v2(
            db,
            "SELECT SUM(x.instances) FROM study_expectations x"
            " JOIN case_studies cs ON cs.study_uid = x.study_uid"
            " WHERE cs.case_id = ?1 AND x.clinic_id = ?2"
            " AND (?3 IS NULL OR x.study_uid = ?3)",
            -1, &st, NULL) != SQLITE_OK)
        return n;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clinic_id);
    if (study_uid)
        sqlite3_bind_text(st, 3, study_uid, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        n = json_integer(sqlite3_column_int64(st, 0));
    done(st);
    return n;
}

/* The case summary JSON (no access check: callers have done it). */
/* The case's pre-arrival object, or JSON null. */
static json_t *prearrival_json(sqlite3 *db, const char *case_id,
                               struct err *e)
{
    sqlite3_stmt *st = prep(
        db, e,
        "SELECT p.last_known_well, p.bp_sys, p.bp_dia, p.heart_rate,"
        " p.spo2, p.glucose, p.gcs, p.lams, p.eta, p.destination,"
        " p.arrived_at, p.arrived_study, u.login"
        " FROM case_prearrival p LEFT JOIN users u ON u.id = p.arrived_by"
        " WHERE p.case_id = ?1", "s", case_id);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        done(st);
        return json_null();
    }
    json_t *j = json_pack(
        "{s:o, s:{s:o, s:o, s:o, s:o, s:o, s:o}, s:o, s:o, s:o, s:o, s:o,"
        " s:o}",
        "last_known_well", col_json_int(st, 0),
        "vitals", "bp_sys", col_json_int(st, 1), "bp_dia",
        col_json_int(st, 2), "heart_rate", col_json_int(st, 3), "spo2",
        col_json_int(st, 4), "glucose", col_json_int(st, 5), "gcs",
        col_json_int(st, 6),
        "lams", col_json_int(st, 7), "eta", col_json_int(st, 8),
        "destination", col_json_text(st, 9),
        "arrived_at", col_json_int(st, 10),
        "arrived_study", col_json_text(st, 11),
        "arrived_by", col_json_text(st, 12));
    done(st);
    return j;
}

static json_t *revisions_json(sqlite3 *db, const char *case_id);

static int case_json(sqlite3 *db, const char *case_id, json_t **out,
                     struct err *e)
{
    *out = NULL;
    sqlite3_stmt *st = prep(
        db, e,
        "SELECT c.case_id, c.status, c.priority, c.specialty, sp.login,"
        " cl.name, rq.login, c.patient_age, c.patient_sex, c.question,"
        " c.history, c.created_at, c.updated_at, c.due_at,"
        " c.escalation_level, cb.login, c.clinic_id,"
        /* the first escalation: when its first deadline passed unclaimed */
        " (SELECT MIN(p.since) FROM case_participants p"
        "   WHERE p.case_id = c.case_id AND p.why = 'escalated')"
        " FROM cases c"
        " LEFT JOIN users sp ON sp.id = c.specialist_id"
        " LEFT JOIN clinics cl ON cl.id = c.clinic_id"
        " LEFT JOIN users rq ON rq.id = c.requester_id"
        " LEFT JOIN users cb ON cb.id = c.claimed_by"
        " WHERE c.case_id = ?1", "s", case_id);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        done(st);
        if (rc == SQLITE_DONE)
            return err_set(e, ERR_NOTFOUND, "no such case");
        return db_fail(e, db, "case");
    }
    int64_t clinic_id = sqlite3_column_int64(st, 16);
    json_t *c = json_object();
    json_object_set_new(c, "case_id", col_json_text(st, 0));
    json_object_set_new(c, "status", col_json_text(st, 1));
    json_object_set_new(c, "priority", col_json_text(st, 2));
    json_object_set_new(c, "specialty", col_json_text(st, 3));
    json_object_set_new(c, "specialist", col_json_text(st, 4));
    json_object_set_new(c, "clinic", col_json_text(st, 5));
    json_object_set_new(c, "requester", col_json_text(st, 6));
    json_object_set_new(c, "patient",
                        json_pack("{s:o, s:o}", "age", col_json_int(st, 7),
                                  "sex", col_json_text(st, 8)));
    json_object_set_new(c, "question", col_json_text(st, 9));
    json_object_set_new(c, "history", col_json_text(st, 10));
    json_object_set_new(c, "created_at", col_json_int(st, 11));
    json_object_set_new(c, "updated_at", col_json_int(st, 12));
    json_object_set_new(c, "due_at", col_json_int(st, 13));
    json_object_set_new(c, "escalation_level", col_json_int(st, 14));
    json_object_set_new(c, "claimed_by", col_json_text(st, 15));
    json_object_set_new(c, "overdue_since", col_json_int(st, 17));
    done(st);
    json_object_set_new(c, "prearrival", prearrival_json(db, case_id, e));

    json_t *uids = json_array();
    st = prep(db, e,
              "SELECT study_uid FROM case_studies WHERE case_id = ?1"
              " ORDER BY pos", "s", case_id);
    if (!st) {
        json_decref(uids);
        json_decref(c);
        return ERR_DB;
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(uids, col_json_text(st, 0));
    done(st);
    json_object_set_new(c, "study_uids", uids);
    json_object_set_new(c, "images",
                        json_pack("{s:I, s:o}", "received",
                                  (json_int_t)images_received(
                                      db, case_id, clinic_id, NULL),
                                  "expected", images_expected(
                                      db, case_id, clinic_id, NULL)));

    st = prep(db, e,
              "SELECT a.impression, a.recommendation, a.text, u.login, a.at"
              " FROM answers a LEFT JOIN users u ON u.id = a.author_id"
              " WHERE a.case_id = ?1", "s", case_id);
    if (!st) {
        json_decref(c);
        return ERR_DB;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(
            c, "answer",
            json_pack("{s:o, s:o, s:o, s:o, s:o}",
                      "impression", col_json_text(st, 0),
                      "recommendation", col_json_text(st, 1),
                      "text", col_json_text(st, 2),
                      "by", col_json_text(st, 3),
                      "at", col_json_int(st, 4)));
    else
        json_object_set_new(c, "answer", json_null());
    done(st);
    json_t *ans = json_object_get(c, "answer");
    if (json_is_object(ans))
        json_object_set_new(ans, "revisions", revisions_json(db, case_id));
    *out = c;
    return 0;
}

/* ---- timeline and answer revisions ------------------------------------ */

/* One step of the case's timeline (case_steps); uid 0 for nobody. */
static int step_add(sqlite3 *db, const char *case_id, const char *step,
                    int64_t uid, int64_t at, struct err *e)
{
    return run(db, e, NULL,
               "INSERT INTO case_steps (case_id, step, user_id, at)"
               " VALUES (?1, ?2, NULLIF(?3, 0), ?4)", "ssii", case_id, step,
               uid, at);
}

/* A step that counts once per user (delivered, opened): the first. */
static int step_once(sqlite3 *db, const char *case_id, const char *step,
                     int64_t uid, int64_t at, struct err *e)
{
    return run(db, e, NULL,
               "INSERT INTO case_steps (case_id, step, user_id, at)"
               " SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1"
               "  FROM case_steps WHERE case_id = ?1 AND step = ?2"
               "  AND user_id = ?3)", "ssii", case_id, step, uid, at);
}

/* The answer in place is kept as the case's next revision before it is
 * replaced (an amendment, or a new answer after a reopen). */
static int answer_keep(sqlite3 *db, const char *case_id, int64_t now,
                       struct err *e)
{
    return run(db, e, NULL,
               "INSERT INTO answer_revisions (case_id, rev, impression,"
               " recommendation, text, author_id, at, replaced_at)"
               " SELECT a.case_id, (SELECT COUNT(*) + 1 FROM"
               "  answer_revisions r WHERE r.case_id = a.case_id),"
               " a.impression, a.recommendation, a.text, a.author_id, a.at,"
               " ?2 FROM answers a WHERE a.case_id = ?1", "si", case_id,
               now);
}

/* The answers replaced so far, oldest first. */
static json_t *revisions_json(sqlite3 *db, const char *case_id)
{
    struct err e = { 0 };
    json_t *arr = json_array();
    sqlite3_stmt *st = prep(db, &e,
                            "SELECT r.impression, r.recommendation, r.text,"
                            " u.login, r.at, r.replaced_at"
                            " FROM answer_revisions r"
                            " LEFT JOIN users u ON u.id = r.author_id"
                            " WHERE r.case_id = ?1 ORDER BY r.rev", "s",
                            case_id);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}",
                           "impression", col_json_text(st, 0),
                           "recommendation", col_json_text(st, 1),
                           "text", col_json_text(st, 2),
                           "by", col_json_text(st, 3),
                           "at", col_json_int(st, 4),
                           "replaced_at", col_json_int(st, 5)));
    done(st);
    return arr;
}

/* What happened to the case, in order: sent (the case row), escalated
 * (its escalation recipients, once per deadline passed), then the
 * recorded steps.  [{"step", "at", "by": login|null}...] */
static int timeline_json(sqlite3 *db, const char *case_id, json_t **out,
                         struct err *e)
{
    sqlite3_stmt *st = prep(
        db, e,
        "SELECT 'sent', u.login, c.created_at, 0, 0 FROM cases c"
        " LEFT JOIN users u ON u.id = c.requester_id WHERE c.case_id = ?1"
        " UNION ALL SELECT 'escalated', NULL, p.since, 1, 0"
        " FROM case_participants p WHERE p.case_id = ?1"
        " AND p.why = 'escalated' GROUP BY p.since"
        /* a crew's case: when it is expected (arrival is a step) */
        " UNION ALL SELECT 'eta', NULL, pa.eta, 1, 0 FROM case_prearrival pa"
        " WHERE pa.case_id = ?1"
        " UNION ALL SELECT s.step, u.login, s.at, 2, s.rowid"
        " FROM case_steps s LEFT JOIN users u ON u.id = s.user_id"
        " WHERE s.case_id = ?1"
        " ORDER BY 3, 4, 5", "s", case_id);
    if (!st)
        return ERR_DB;
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr,
                              json_pack("{s:o, s:o, s:o}",
                                        "step", col_json_text(st, 0),
                                        "at", col_json_int(st, 2),
                                        "by", col_json_text(st, 1)));
    done(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return db_fail(e, db, "timeline");
    }
    *out = arr;
    return 0;
}

/* Logins of the users with a receipt of the given kind for a message. */
static json_t *receipt_logins(sqlite3 *db, const char *message_id,
                              const char *column)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT u.login FROM message_receipts r"
             " JOIN users u ON u.id = r.user_id"
             " WHERE r.message_id = ?1 AND r.%s IS NOT NULL"
             " ORDER BY r.%s, u.login", column, column);
    json_t *arr = json_array();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return arr;
    sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, col_json_text(st, 0));
    done(st);
    return arr;
}

#define MSG_COLS                                                           \
    "m.message_id, m.case_id, u.login, m.text, m.image_sop,"               \
    " m.image_frame, m.image_window, m.created_at"

static json_t *message_from_row(sqlite3_stmt *st)
{
    json_t *image = json_null();
    if (col_text(st, 4)) {
        const char *w = col_text(st, 6);
        json_t *window = w ? json_loads(w, JSON_DECODE_ANY, NULL) : NULL;
        image = json_pack("{s:o, s:o}", "sop_uid", col_json_text(st, 4),
                          "frame", col_json_int(st, 5));
        if (window)
            json_object_set_new(image, "window", window);
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}",
                     "message_id", col_json_text(st, 0),
                     "case_id", col_json_text(st, 1),
                     "author", col_json_text(st, 2),
                     "text", col_json_text(st, 3),
                     "image", image,
                     "created_at", col_json_int(st, 7));
}

static int message_json(sqlite3 *db, const char *message_id, json_t **out,
                        struct err *e)
{
    sqlite3_stmt *st = prep(db, e,
                            "SELECT " MSG_COLS " FROM messages m"
                            " LEFT JOIN users u ON u.id = m.author_id"
                            " WHERE m.message_id = ?1", "s", message_id);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? message_from_row(st) : NULL;
    done(st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? err_set(e, ERR_NOTFOUND, "no such message")
                             : db_fail(e, db, "message");
}

/* The thread of a case, oldest first, with receipts. */
static int messages_json(sqlite3 *db, const char *case_id, json_t **out,
                         struct err *e)
{
    sqlite3_stmt *st = prep(db, e,
                            "SELECT " MSG_COLS " FROM messages m"
                            " LEFT JOIN users u ON u.id = m.author_id"
                            " WHERE m.case_id = ?1"
                            " ORDER BY m.created_at, m.rowid", "s", case_id);
    if (!st)
        return ERR_DB;
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *m = message_from_row(st);
        const char *id = col_text(st, 0);
        json_object_set_new(m, "delivered_to",
                            receipt_logins(db, id, "delivered_at"));
        json_object_set_new(m, "read_by", receipt_logins(db, id, "read_at"));
        json_array_append_new(arr, m);
    }
    done(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return db_fail(e, db, "messages");
    }
    *out = arr;
    return 0;
}

/* ---- participants and events ---------------------------------------- */

static int add_participant(sqlite3 *db, const char *case_id, int64_t uid,
                           const char *why, int64_t now, int *added,
                           struct err *e)
{
    int n = 0;
    if (uid <= 0) {
        if (added)
            *added = 0;
        return 0;
    }
    int rc = run(db, e, &n,
                 "INSERT OR IGNORE INTO case_participants"
                 " (case_id, user_id, why, since) VALUES (?1, ?2, ?3, ?4)",
                 "sisi", case_id, uid, why, now);
    if (added)
        *added = n;
    return rc;
}

/* Append one event to the outbox of every recipient of the case, chosen
 * now, not at create: its participants, its clinic's requesters and
 * admins, and, when it went to its whole specialty (cases.to_specialty),
 * the specialty's specialists — so a user added to the clinic or the
 * specialty later hears of the case from then on.  UNION ALL: the outbox
 * drops repeats itself, cheaper than SQLite's temporary B-tree. */
static int notify(struct server *srv, const char *case_id, const char *kind,
                  json_t *body, struct err *e)
{
    if (!srv->outbox)
        return 0;
    sqlite3 *db = dbof(srv);
    sqlite3_stmt *st = prep(db, e,
                            "SELECT user_id FROM case_participants"
                            " WHERE case_id = ?1"
                            " UNION ALL SELECT u.id FROM cases c"
                            " JOIN users u ON u.clinic_id = c.clinic_id"
                            " WHERE c.case_id = ?1 AND u.disabled = 0"
                            " AND u.role IN ('requester', 'admin')"
                            " UNION ALL SELECT u.id FROM cases c"
                            " JOIN user_specialties us"
                            "  ON us.specialty = c.specialty"
                            " JOIN users u ON u.id = us.user_id"
                            " WHERE c.case_id = ?1 AND c.to_specialty"
                            " AND u.disabled = 0 AND u.role = 'specialist'",
                            "s", case_id);
    if (!st)
        return ERR_DB;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *p = realloc(ids, cap * sizeof *p);
            if (!p) {
                rc = err_set(e, ERR_INTERNAL, "cases: out of memory");
                break;
            }
            ids = p;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    done(st);
    if (!rc && step != SQLITE_DONE)
        rc = db_fail(e, db, "participants");
    if (!rc)
        rc = outbox_append_many(srv->outbox, ids, n, kind, case_id, body, e);
    free(ids);
    return rc;
}

/* Build {"case": summary} (plus `extra`'s members) and send it. */
static int notify_case(struct server *srv, const char *case_id,
                       const char *kind, json_t *extra, json_t **summary,
                       struct err *e)
{
    json_t *c;
    int rc = case_json(dbof(srv), case_id, &c, e);
    if (rc)
        return rc;
    json_t *body = json_pack("{s:O}", "case", c);
    if (extra)
        json_object_update(body, extra);
    rc = notify(srv, case_id, kind, body, e);
    json_decref(body);
    if (!rc && summary)
        *summary = c;
    else
        json_decref(c);
    return rc;
}

static int touch(sqlite3 *db, const char *case_id, int64_t now,
                 struct err *e)
{
    return run(db, e, NULL,
               "UPDATE cases SET updated_at = ?2 WHERE case_id = ?1", "si",
               case_id, now);
}

/* ---- init, on-call ---------------------------------------------------- */

int cases_init(struct server *srv, struct err *e)
{
    if (!srv->store)
        return err_set(e, ERR_INVALID, "cases: no store");
    if (!srv->outbox) {
        srv->outbox = outbox_open(dbof(srv), e);
        if (!srv->outbox)
            return e ? e->code : ERR_DB;
    }
    return 0;
}

void cases_free(struct server *srv)
{
    if (srv->store)
        stmt_forget(dbof(srv));
    outbox_close(srv->outbox);
    srv->outbox = NULL;
}

int cases_oncall_set(struct server *srv, const char *specialty,
                     const char **logins, int n, struct err *e)
{
    if (blank(specialty) || strlen(specialty) > 64)
        return err_set(e, ERR_INVALID, "oncall: bad specialty");
    sqlite3 *db = dbof(srv);
    int rc = tx_begin(srv, e);
    if (rc)
        return rc;
    rc = run(db, e, NULL, "DELETE FROM oncall WHERE specialty = ?1", "s",
             specialty);
    for (int i = 0; !rc && i < n; i++) {
        sqlite3_stmt *st = prep(db, e,
                                "SELECT id, role FROM users WHERE login = ?1",
                                "s", logins[i]);
        if (!st) {
            rc = ERR_DB;
            break;
        }
        int64_t uid = 0;
        char role[16] = "";
        if (sqlite3_step(st) == SQLITE_ROW) {
            uid = sqlite3_column_int64(st, 0);
            strlcpy_h(role, col_text(st, 1) ? col_text(st, 1) : "",
                      sizeof role);
        }
        done(st);
        if (!uid) {
            rc = err_set(e, ERR_NOTFOUND, "oncall: no user %s", logins[i]);
            break;
        }
        if (strcmp(role, "specialist")) {
            rc = err_set(e, ERR_INVALID, "oncall: %s is not a specialist",
                         logins[i]);
            break;
        }
        int changes = 0;
        rc = run(db, e, &changes,
                 "INSERT OR IGNORE INTO oncall (specialty, position, user_id)"
                 " VALUES (?1, ?2, ?3)", "sii", specialty, (int64_t)i + 1,
                 uid);
        if (!rc && !changes)
            rc = err_set(e, ERR_INVALID, "oncall: %s listed twice",
                         logins[i]);
    }
    rc = tx_end(srv, rc, NULL, e);
    if (!rc)
        log_info("on-call list of %s: %d specialist(s)", specialty, n);
    return rc;
}

/* ---- create ----------------------------------------------------------- */

/* The request's fields as create_tx uses them ("" -> NULL: absent). */
struct create_req {
    const char *case_id, *question, *history, *priority;
    const char *specialty, *specialist, *sex;
    int64_t age;
    int has_age;
    const struct msg_case_create *m;    /* study_uids */
};

static const char *or_null(const char *s)
{
    return s && *s ? s : NULL;
}

static const char *sex_name(int sex)
{
    switch (sex) {
    case MSG_SEX_F: return "F";
    case MSG_SEX_M: return "M";
    case MSG_SEX_O: return "O";
    default: return NULL;
    }
}

static int create_fields(const struct msg_case_create *m,
                         struct create_req *r, struct err *e)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->case_id = m->case_id;
    r->question = m->question;
    if (blank(r->question))
        return err_set(e, ERR_INVALID, "question: required");
    r->history = m->history;
    r->priority = msg_priority_name(m->priority);
    r->specialty = or_null(m->specialty);
    if (r->specialty && blank(r->specialty))
        return err_set(e, ERR_INVALID, "specialty: not only blanks");
    r->specialist = or_null(m->specialist);
    if (m->has_patient) {
        r->has_age = m->patient.has_age;
        r->age = m->patient.age;
        r->sex = sex_name(m->patient.sex);
    }
    return 0;
}

/* Clock skew tolerated on a phone's "last known well". */
#define LKW_SKEW_MS (5 * 60 * 1000)

/* NULL binds as SQL NULL: an optional vital not taken. */
static void bind_opt(sqlite3_stmt *st, int i, bool has, int64_t v)
{
    if (has)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* A crew's pre-arrival data, in the create's transaction: the ranges are
 * the codec's; what needs the clock is checked here. */
static int prearrival_insert(sqlite3 *db, const char *case_id,
                             const struct msg_prearrival *p, int64_t now,
                             struct err *e)
{
    if (p->last_known_well > now + LKW_SKEW_MS)
        return err_set(e, ERR_INVALID,
                       "prearrival.last_known_well: in the future");
    const struct msg_vitals *v = &p->vitals;
    bool hv = p->has_vitals;
    sqlite3_stmt *st = prep(
        db, e,
        "INSERT INTO case_prearrival (case_id, last_known_well, bp_sys,"
        " bp_dia, heart_rate, spo2, glucose, gcs, lams, eta, destination)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        "si", case_id, p->last_known_well);
    if (!st)
        return ERR_DB;
    bind_opt(st, 3, hv && v->has_bp_sys, v->bp_sys);
    bind_opt(st, 4, hv && v->has_bp_dia, v->bp_dia);
    bind_opt(st, 5, hv && v->has_heart_rate, v->heart_rate);
    bind_opt(st, 6, hv && v->has_spo2, v->spo2);
    bind_opt(st, 7, hv && v->has_glucose, v->glucose);
    bind_opt(st, 8, hv && v->has_gcs, v->gcs);
    bind_opt(st, 9, p->has_lams, p->lams);
    sqlite3_bind_int64(st, 10, now + p->eta_min * 60000);
    sqlite3_bind_text(st, 11, p->destination, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    done(st);
    return step == SQLITE_DONE ? 0 : db_fail(e, db, "insert prearrival");
}


/* Who hears of a new case first: the named specialist; else the first of
 * the specialty's on-call list; else everyone of the specialty. */
static int add_first_recipients(sqlite3 *db, const char *case_id,
                                int64_t specialist_id, const char *specialty,
                                int64_t now, struct err *e)
{
    if (specialist_id)
        return add_participant(db, case_id, specialist_id, "notified", now,
                               NULL, e);
    int rc = run(db, e, NULL,
                 "INSERT OR IGNORE INTO case_participants"
                 " (case_id, user_id, why, since)"
                 " SELECT ?1, user_id, 'notified', ?3 FROM oncall"
                 " WHERE specialty = ?2 ORDER BY position LIMIT 1",
                 "ssi", case_id, specialty, now);
    if (rc)
        return rc;
    rc = run(db, e, NULL,
             "INSERT OR IGNORE INTO case_participants"
             " (case_id, user_id, why, since)"
             " SELECT ?1, us.user_id, 'notified', ?3"
             " FROM user_specialties us JOIN users u ON u.id = us.user_id"
             " WHERE us.specialty = ?2 AND u.role = 'specialist'"
             " AND NOT EXISTS (SELECT 1 FROM oncall WHERE specialty = ?2)",
             "ssi", case_id, specialty, now);
    if (rc)
        return rc;
    /* Sent to the whole specialty: notify() adds those who join it
     * later. */
    return run(db, e, NULL,
               "UPDATE cases SET to_specialty = 1 WHERE case_id = ?1"
               " AND NOT EXISTS (SELECT 1 FROM oncall WHERE specialty = ?2)",
               "ss", case_id, specialty);
}

static int create_tx(struct server *srv, const struct principal *who,
                     const struct create_req *r, json_t **out, int *created,
                     struct err *e)
{
    sqlite3 *db = dbof(srv);
    int64_t now = now_ms();

    /* A retry of a case already made (a cut after sending) is answered
     * with the case as it is, whatever the retry carries. */
    sqlite3_stmt *st = prep(db, e,
                            "SELECT clinic_id FROM cases WHERE case_id = ?1",
                            "s", r->case_id);
    if (!st)
        return ERR_DB;
    int step = sqlite3_step(st);
    int64_t owner = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    done(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return db_fail(e, db, "lookup");
    if (owner >= 0) {
        /* Only to a caller of its clinic who may see it (a gateway: the
         * one that created it). */
        struct case_row row;
        if (owner != who->clinic_id ||
            load_visible(srv, who, r->case_id, &row, NULL))
            return err_set(e, ERR_CONFLICT,
                           "case_id %s is taken; choose another",
                           r->case_id);
        *created = 0;
        return case_json(db, r->case_id, out, e);
    }

    int64_t specialist_id = 0;
    if (r->specialist) {
        st = prep(db, e,
                  "SELECT id FROM users WHERE login = ?1"
                  " AND role = 'specialist'", "s", r->specialist);
        if (!st)
            return ERR_DB;
        if (sqlite3_step(st) == SQLITE_ROW)
            specialist_id = sqlite3_column_int64(st, 0);
        done(st);
        if (!specialist_id)
            return err_set(e, ERR_INVALID, "no specialist %s",
                           r->specialist);
    }
    if (r->specialty) {
        st = prep(db, e,
                  "SELECT EXISTS (SELECT 1 FROM user_specialties us"
                  " JOIN users u ON u.id = us.user_id"
                  " WHERE us.specialty = ?1 AND u.role = 'specialist')"
                  " OR EXISTS (SELECT 1 FROM oncall WHERE specialty = ?1)",
                  "s", r->specialty);
        if (!st)
            return ERR_DB;
        int known = sqlite3_step(st) == SQLITE_ROW &&
                    sqlite3_column_int(st, 0);
        done(st);
        if (!known)
            return err_set(e, ERR_INVALID, "no specialist for specialty %s",
                           r->specialty);
    }


    int64_t due = now + due_after(srv, r->priority);
    st = prep(db, e,
              "INSERT INTO cases (case_id, clinic_id, requester_id,"
              " patient_age, patient_sex, history, question, priority,"
              " specialty, specialist_id, status, created_at, updated_at,"
              " due_at) VALUES (?1, ?2, NULLIF(?3, 0), ?4, ?5, ?6, ?7, ?8,"
              " ?9, NULLIF(?10, 0), 'new', ?11, ?11, ?12)",
              "siiisssssiii", r->case_id, who->clinic_id, who->user_id,
              r->age, r->sex, r->history, r->question, r->priority,
              r->specialty, specialist_id, now, due);
    if (!st)
        return ERR_DB;
    if (!r->has_age)
        sqlite3_bind_null(st, 4);
    step = sqlite3_step(st);
    done(st);
    if (step != SQLITE_DONE)
        return db_fail(e, db, "insert case");
    int rc;

    if (r->m->has_prearrival) {
        rc = prearrival_insert(db, r->case_id, &r->m->prearrival, now, e);
        if (rc)
            return rc;
    }
    if (who->gateway_id) {
        rc = run(db, e, NULL,
                 "INSERT INTO case_gateways (case_id, gateway_id)"
                 " VALUES (?1, ?2)", "si", r->case_id, who->gateway_id);
        if (rc)
            return rc;
    }
    for (int i = 0; i < r->m->n_study_uids; i++) {
        rc = run(db, e, NULL,
                 "INSERT OR IGNORE INTO case_studies"
                 " (case_id, study_uid, pos) VALUES (?1, ?2, ?3)",
                 "ssi", r->case_id, r->m->study_uids[i], (int64_t)i);
        if (rc)
            return rc;
    }

    /* The requesting side: the requester and their clinic's requesters
     * and admins. */
    rc = add_participant(db, r->case_id, who->user_id, "requester", now,
                         NULL, e);
    if (!rc)
        rc = run(db, e, NULL,
                 "INSERT OR IGNORE INTO case_participants"
                 " (case_id, user_id, why, since)"
                 " SELECT ?1, id, 'clinic', ?3 FROM users"
                 " WHERE clinic_id = ?2"
                 " AND role IN ('requester', 'crew', 'admin')",
                 "sii", r->case_id, who->clinic_id, now);
    if (!rc)
        rc = add_first_recipients(db, r->case_id, specialist_id,
                                  r->specialty, now, e);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.new", NULL, out, e);
    if (!rc)
        *created = 1;
    return rc;
}

static const char *emsg(struct err *e)
{
    return e ? e->msg : NULL;
}

int cases_create(struct server *srv, const struct principal *who,
                 const struct msg_case_create *req, json_t **out,
                 int *created, struct err *e)
{
    int dummy;
    if (!created)
        created = &dummy;
    *created = 0;
    *out = NULL;
    struct create_req r;
    int rc = create_fields(req, &r, e);
    if (!rc && strcmp(who->role, "requester") && strcmp(who->role, "admin") &&
        strcmp(who->role, "gateway") && strcmp(who->role, "crew"))
        rc = err_set(e, ERR_FORBIDDEN,
                     "only a clinic's requesters can create cases");
    if (!rc && req->has_prearrival && strcmp(who->role, "crew"))
        rc = err_set(e, ERR_INVALID,
                     "prearrival: only an ambulance crew sends one");
    if (!rc && !(rc = tx_begin(srv, e))) {
        rc = create_tx(srv, who, &r, out, created, e);
        rc = tx_end(srv, rc, out, e);
    }
    audit_case(srv, who, "case.create", r.case_id, rc,
               rc ? emsg(e) : *created ? NULL : "repeated request");
    return rc;
}

/* ---- read ------------------------------------------------------------- */

static int read_begin(struct server *srv, struct err *e)
{
    if (sqlite3_exec(dbof(srv), "BEGIN", NULL, NULL, NULL))
        return db_fail(e, dbof(srv), "begin");
    return 0;
}

static void read_end(struct server *srv)
{
    sqlite3_exec(dbof(srv), "COMMIT", NULL, NULL, NULL);
}

/* A specialist's first case.get of a case is its "opened" step: in its
 * own statement, before the read transaction (upgrading that to a write
 * could fail against another connection's commit).  Not recording it
 * must not fail the view. */
static void opened(struct server *srv, const struct principal *who,
                   const char *case_id)
{
    struct err e = { 0 };
    if (strcmp(who->role, "specialist"))
        return;
    if (step_once(dbof(srv), case_id, "opened", who->user_id, now_ms(), &e))
        log_warn("cases: %s opened %s: not recorded: %s", who->login,
                 case_id, e.msg);
}

int cases_get(struct server *srv, const struct principal *who,
              const char *case_id, json_t **out, struct err *e)
{
    *out = NULL;
    struct case_row row;
    int rc = load_visible(srv, who, case_id, &row, e);
    if (!rc)
        opened(srv, who, case_id);
    if (!rc)
        rc = read_begin(srv, e);
    json_t *c = NULL, *msgs = NULL, *steps = NULL;
    if (!rc) {
        rc = case_json(dbof(srv), case_id, &c, e);
        if (!rc)
            rc = messages_json(dbof(srv), case_id, &msgs, e);
        if (!rc)
            rc = timeline_json(dbof(srv), case_id, &steps, e);
        if (!rc)        /* case.get only: lists and events go without */
            json_object_set_new(c, "first_image", first_image_json(
                                    dbof(srv), case_id, row.clinic_id));
        read_end(srv);
    }
    if (!rc) {
        json_object_set_new(c, "messages", msgs);
        json_object_set_new(c, "timeline", steps);
        *out = c;
    } else {
        json_decref(c);
        json_decref(msgs);
    }
    audit_case(srv, who, "case.view", case_id, rc, rc ? emsg(e) : NULL);
    return rc;
}

/* One page of visible cases, the most recently updated first.  The cursor
 * ("next"/"before") is "<updated_at>.<case_id>" of the last case shown:
 * keyset paging, stable while cases are added. */
int cases_list_page(struct server *srv, const struct principal *who,
                    const struct msg_case_list *req, json_t **out,
                    struct err *e)
{
    *out = NULL;
    const char *status = req->status ? msg_status_name(req->status) : NULL;
    const char *before = req->before;
    int limit = req->limit > 0 ? (int)req->limit : MSG_LIST_DEFAULT;
    if (limit > MSG_LIST_MAX)   /* the codec's range; one limit for all */
        return err_set(e, ERR_INVALID, "limit: 1..%d", MSG_LIST_MAX);
    int64_t b_at = 0;
    const char *b_id = NULL;
    if (before[0]) {
        char *end = NULL;
        long long v = strtoll(before, &end, 10);
        if (!end || end == before || *end != '.' || v < 0 ||
            !valid_id(end + 1))
            return err_set(e, ERR_INVALID, "before: not a cursor of ours");
        b_at = v;
        b_id = end + 1;
    }
    int rc = read_begin(srv, e);
    if (rc)
        return rc;
    sqlite3 *db = dbof(srv);
    /* One row more than asked tells whether there is a next page. */
    sqlite3_stmt *st = prep(db, e,
                            "SELECT c.case_id, c.updated_at FROM cases c, "
                            WHO_FROM
                            " WHERE (?4 IS NULL OR c.status = ?4)"
                            " AND (?6 IS NULL OR c.updated_at < ?7 OR"
                            "  (c.updated_at = ?7 AND c.case_id > ?6))"
                            " AND " ACCESS_CASE_VISIBLE
                            " ORDER BY c.updated_at DESC, c.case_id"
                            " LIMIT ?5",
                            "isisisi", access_who_id(who), who->role,
                            who->clinic_id, status, (int64_t)limit + 1,
                            b_id, b_at);
    if (!st) {
        read_end(srv);
        return ERR_DB;
    }
    json_t *arr = json_array();
    char next[96] = "";
    int step, n = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            json_t *last = json_array_get(arr, n - 1);
            snprintf(next, sizeof next, "%lld.%s",
                     (long long)json_integer_value(
                         json_object_get(last, "updated_at")),
                     json_string_value(json_object_get(last, "case_id")));
            step = SQLITE_DONE;
            break;
        }
        json_t *c;
        rc = case_json(db, col_text(st, 0), &c, e);
        if (rc)
            break;
        json_array_append_new(arr, c);
        n++;
    }
    done(st);
    read_end(srv);
    if (!rc && step != SQLITE_DONE)
        rc = db_fail(e, db, "list");
    if (rc) {
        json_decref(arr);
        return rc;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%zu case(s)%s%s", json_array_size(arr),
             status ? " status=" : "", status ? status : "");
    audit_case(srv, who, "case.list", NULL, 0, detail);
    *out = json_pack("{s:o}", "cases", arr);
    if (next[0])
        json_object_set_new(*out, "next", json_string(next));
    return 0;
}

/* ---- roles on a case ---------------------------------------------------- */

/* The requesting side: the clinic's requesters (a service's crews), or
 * an admin.  Not a gateway: it creates cases and reads them, nothing
 * more. */
static int requester_side(const struct principal *who,
                          const struct case_row *r)
{
    if (!strcmp(who->role, "admin"))
        return 1;
    return (!strcmp(who->role, "requester") ||
            !strcmp(who->role, "crew")) && who->clinic_id == r->clinic_id;
}

static int may_claim(sqlite3 *db, const struct principal *who,
                     const struct case_row *r)
{
    if (strcmp(who->role, "specialist"))
        return 0;
    if (r->specialist_id == who->user_id)
        return 1;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "SELECT EXISTS (SELECT 1 FROM user_specialties"
            "  WHERE user_id = ?1 AND specialty = ?2)"
            " OR EXISTS (SELECT 1 FROM case_participants WHERE user_id = ?1"
            "  AND case_id = ?3 AND why IN ('notified', 'escalated'))",
            -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, who->user_id);
    sqlite3_bind_text(st, 2, r->specialty, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->case_id, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
    done(st);
    return ok;
}

/* The common frame of claim/answer/close/reopen: one transaction around
 * `step`, which sees the visible case and its typed request (arg, which
 * may be NULL) and may produce *out. */
typedef int (*case_step)(struct server *srv, const struct principal *who,
                         const struct case_row *r, const void *arg,
                         json_t **out, struct err *e);

static int case_action(struct server *srv, const struct principal *who,
                       const char *action, const char *case_id,
                       const void *arg, case_step step, json_t **out,
                       struct err *e)
{
    *out = NULL;
    struct case_row row;
    int rc = tx_begin(srv, e);
    if (!rc) {
        rc = load_visible(srv, who, case_id, &row, e);
        if (!rc)
            rc = step(srv, who, &row, arg, out, e);
        rc = tx_end(srv, rc, out, e);
    }
    audit_case(srv, who, action, case_id, rc, rc ? emsg(e) : NULL);
    return rc;
}

/* ---- claim -------------------------------------------------------------- */

static int claim_step(struct server *srv, const struct principal *who,
                      const struct case_row *r, const void *arg,
                      json_t **out, struct err *e)
{
    (void)arg;
    sqlite3 *db = dbof(srv);
    if (!may_claim(db, who, r)) {
        if (r->specialty[0])
            return err_set(e, ERR_FORBIDDEN,
                           "only a specialist of %s can claim this case",
                           r->specialty);
        return err_set(e, ERR_FORBIDDEN,
                       "only the named specialist can claim this case");
    }
    if (r->claimed_by == who->user_id)     /* a repeated claim */
        return case_json(db, r->case_id, out, e);
    int64_t now = now_ms();
    int changes = 0;
    int rc = run(db, e, &changes,
                 "UPDATE cases SET status = 'claimed', claimed_by = ?2,"
                 " due_at = 0, updated_at = ?3"
                 " WHERE case_id = ?1 AND status = 'new'",
                 "sii", r->case_id, who->user_id, now);
    if (rc)
        return rc;
    if (changes != 1) {
        char login[64];
        if (r->claimed_by)
            return err_set(e, ERR_CONFLICT, "already claimed by %s",
                           login_of(db, r->claimed_by, login, sizeof login));
        return err_set(e, ERR_CONFLICT, "the case is %s", r->status);
    }
    rc = add_participant(db, r->case_id, who->user_id, "claimer", now, NULL,
                         e);
    if (!rc)
        rc = step_add(db, r->case_id, "claimed", who->user_id, now, e);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.claimed", NULL, out, e);
    return rc;
}

int cases_claim(struct server *srv, const struct principal *who,
                const char *case_id, json_t **out, struct err *e)
{
    return case_action(srv, who, "case.claim", case_id, NULL, claim_step,
                       out, e);
}

/* ---- answer ------------------------------------------------------------- */

static int same_text(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static int answer_step(struct server *srv, const struct principal *who,
                       const struct case_row *r, const void *arg,
                       json_t **out, struct err *e)
{
    sqlite3 *db = dbof(srv);
    const struct msg_case_answer *a = arg;
    const char *imp = a->impression;
    const char *rec = a->recommendation;
    const char *text = a->text;
    if (blank(imp) && blank(text))
        return err_set(e, ERR_INVALID,
                       "answer: an impression or a text is required");
    if (!r->claimed_by) {
        if (strcmp(who->role, "specialist"))
            return err_set(e, ERR_FORBIDDEN,
                           "only the specialist who claimed the case can "
                           "answer");
        return err_set(e, ERR_CONFLICT, "claim the case before answering");
    }
    if (r->claimed_by != who->user_id) {
        char login[64];
        return err_set(e, ERR_FORBIDDEN,
                       "only %s, who claimed the case, can answer",
                       login_of(db, r->claimed_by, login, sizeof login));
    }
    if (!strcmp(r->status, "answered")) {
        /* The same answer again is a retry; another one is a conflict
         * (reopen first). */
        sqlite3_stmt *st = prep(db, e,
                                "SELECT impression, recommendation, text"
                                " FROM answers WHERE case_id = ?1", "s",
                                r->case_id);
        if (!st)
            return ERR_DB;
        int same = sqlite3_step(st) == SQLITE_ROW &&
                   same_text(col_text(st, 0), imp) &&
                   same_text(col_text(st, 1), rec) &&
                   same_text(col_text(st, 2), text);
        done(st);
        if (same)
            return case_json(db, r->case_id, out, e);
        return err_set(e, ERR_CONFLICT, "the case is already answered");
    }
    if (strcmp(r->status, "claimed") && strcmp(r->status, "reopened"))
        return err_set(e, ERR_CONFLICT, "the case is %s", r->status);
    int64_t now = now_ms();
    int rc = answer_keep(db, r->case_id, now, e);   /* after a reopen */
    if (!rc)
        rc = step_add(db, r->case_id, "answered", who->user_id, now, e);
    if (!rc)
        rc = run(db, e, NULL,
                 "INSERT OR REPLACE INTO answers (case_id, impression,"
                 " recommendation, text, author_id, at)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                 "ssssii", r->case_id, imp ? imp : "", rec ? rec : "",
                 text ? text : "", who->user_id, now);
    if (!rc)
        rc = run(db, e, NULL,
                 "UPDATE cases SET status = 'answered', updated_at = ?2"
                 " WHERE case_id = ?1", "si", r->case_id, now);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.answered", NULL, out, e);
    return rc;
}

int cases_answer(struct server *srv, const struct principal *who,
                 const struct msg_case_answer *req, json_t **out,
                 struct err *e)
{
    return case_action(srv, who, "case.answer", req->case_id, req,
                       answer_step, out, e);
}

/* case.amend: the answer's author replaces an answer already given (the
 * case answered or closed; its status stays).  The answer replaced is
 * kept as a revision; the participants get case.answered with
 * "amended": true.  The same text again is a retry. */
static int amend_step(struct server *srv, const struct principal *who,
                      const struct case_row *r, const void *arg,
                      json_t **out, struct err *e)
{
    sqlite3 *db = dbof(srv);
    const struct msg_case_answer *a = arg;
    if (blank(a->impression) && blank(a->text))
        return err_set(e, ERR_INVALID,
                       "answer: an impression or a text is required");
    sqlite3_stmt *st = prep(db, e,
                            "SELECT impression, recommendation, text,"
                            " author_id FROM answers WHERE case_id = ?1",
                            "s", r->case_id);
    if (!st)
        return ERR_DB;
    if (sqlite3_step(st) != SQLITE_ROW) {
        done(st);
        return err_set(e, ERR_CONFLICT, "the case has no answer to amend");
    }
    int64_t author = sqlite3_column_int64(st, 3);
    int same = same_text(col_text(st, 0), a->impression) &&
               same_text(col_text(st, 1), a->recommendation) &&
               same_text(col_text(st, 2), a->text);
    done(st);
    if (author != who->user_id) {
        char login[64];
        return err_set(e, ERR_FORBIDDEN,
                       "only %s, who wrote the answer, can amend it",
                       login_of(db, author, login, sizeof login));
    }
    if (strcmp(r->status, "answered") && strcmp(r->status, "closed"))
        return err_set(e, ERR_CONFLICT,
                       "the case is %s: answer it instead", r->status);
    if (same)
        return case_json(db, r->case_id, out, e);
    int64_t now = now_ms();
    int rc = answer_keep(db, r->case_id, now, e);
    if (!rc)
        rc = run(db, e, NULL,
                 "UPDATE answers SET impression = ?2, recommendation = ?3,"
                 " text = ?4, at = ?5 WHERE case_id = ?1", "ssssi",
                 r->case_id, a->impression, a->recommendation, a->text,
                 now);
    if (!rc)
        rc = step_add(db, r->case_id, "amended", who->user_id, now, e);
    if (!rc)
        rc = touch(db, r->case_id, now, e);
    json_t *extra = json_pack("{s:b}", "amended", 1);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.answered", extra, out, e);
    json_decref(extra);
    return rc;
}

int cases_amend(struct server *srv, const struct principal *who,
                const struct msg_case_answer *req, json_t **out,
                struct err *e)
{
    return case_action(srv, who, "case.amend", req->case_id, req,
                       amend_step, out, e);
}

/* ---- close, reopen ----------------------------------------------------- */

static int close_step(struct server *srv, const struct principal *who,
                      const struct case_row *r, const void *arg,
                      json_t **out, struct err *e)
{
    (void)arg;
    sqlite3 *db = dbof(srv);
    int claimer = r->claimed_by && r->claimed_by == who->user_id;
    if (!requester_side(who, r) && !claimer)
        return err_set(e, ERR_FORBIDDEN,
                       "only the requesting clinic or the claimer can "
                       "close the case");
    if (!strcmp(r->status, "closed"))
        return case_json(db, r->case_id, out, e);
    int64_t now = now_ms();
    int rc = run(db, e, NULL,
                 "UPDATE cases SET status = 'closed', due_at = 0,"
                 " updated_at = ?2 WHERE case_id = ?1",
                 "si", r->case_id, now);
    if (!rc)
        rc = step_add(db, r->case_id, "closed", who->user_id, now, e);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.closed", NULL, out, e);
    return rc;
}

int cases_close(struct server *srv, const struct principal *who,
                const char *case_id, json_t **out, struct err *e)
{
    return case_action(srv, who, "case.close", case_id, NULL, close_step,
                       out, e);
}

static int reopen_step(struct server *srv, const struct principal *who,
                       const struct case_row *r, const void *arg,
                      json_t **out, struct err *e)
{
    (void)arg;
    sqlite3 *db = dbof(srv);
    if (!requester_side(who, r))
        return err_set(e, ERR_FORBIDDEN,
                       "only the requesting clinic can reopen the case");
    if (!strcmp(r->status, "reopened"))
        return case_json(db, r->case_id, out, e);
    if (strcmp(r->status, "answered") && strcmp(r->status, "closed"))
        return err_set(e, ERR_CONFLICT,
                       "the case is %s; only an answered or closed case "
                       "can be reopened", r->status);
    int64_t now = now_ms();
    int rc;
    if (r->claimed_by)  /* back to the specialist who had it */
        rc = run(db, e, NULL,
                 "UPDATE cases SET status = 'reopened', updated_at = ?2"
                 " WHERE case_id = ?1", "si", r->case_id, now);
    else                /* closed before anyone claimed it: start over */
        rc = run(db, e, NULL,
                 "UPDATE cases SET status = 'new', updated_at = ?2,"
                 " due_at = ?3 WHERE case_id = ?1", "sii", r->case_id, now,
                 now + due_after(srv, r->priority));
    if (!rc)
        rc = step_add(db, r->case_id, "reopened", who->user_id, now, e);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.reopened", NULL, out, e);
    return rc;
}

int cases_reopen(struct server *srv, const struct principal *who,
                 const char *case_id, json_t **out, struct err *e)
{
    return case_action(srv, who, "case.reopen", case_id, NULL, reopen_step,
                       out, e);
}

/* ---- messages ------------------------------------------------------------ */

static int message_write(struct server *srv, const struct principal *who,
                         const struct case_row *r, const char *mid,
                         const char *text, const char *sop, int64_t frame,
                         const char *window, json_t **out, struct err *e);

static int message_step(struct server *srv, const struct principal *who,
                        const struct case_row *r, const void *arg,
                        json_t **out, struct err *e)
{
    const struct msg_message_send *m = arg;
    const char *sop = NULL;
    char *window = NULL;        /* the window as JSON text, as shown */
    int64_t frame = 1;
    if (blank(m->text))
        return err_set(e, ERR_INVALID, "text: required");
    if (m->has_image) {
        sop = m->image.sop_uid;
        frame = m->image.frame;
        if (m->image.has_window) {
            json_t *w = json_pack("{s:f, s:f}",
                                  "center", m->image.window.center,
                                  "width", m->image.window.width);
            window = json_dumps(w, JSON_COMPACT);
            json_decref(w);
        }
    }
    int rc = message_write(srv, who, r, m->message_id, m->text, sop, frame,
                           window, out, e);
    free(window);
    return rc;
}

static int message_write(struct server *srv, const struct principal *who,
                         const struct case_row *r, const char *mid,
                         const char *text, const char *sop, int64_t frame,
                         const char *window, json_t **out, struct err *e)
{
    sqlite3 *db = dbof(srv);
    if (who->user_id <= 0)
        return err_set(e, ERR_FORBIDDEN, "only users can write messages");

    /* The same message again (a retry) is answered with the stored one. */
    sqlite3_stmt *st = prep(db, e,
                            "SELECT case_id, author_id FROM messages"
                            " WHERE message_id = ?1", "s", mid);
    if (!st)
        return ERR_DB;
    int step = sqlite3_step(st);
    int same = step == SQLITE_ROW &&
               !strcmp(col_text(st, 0), r->case_id) &&
               sqlite3_column_int64(st, 1) == who->user_id;
    done(st);
    if (step == SQLITE_ROW) {
        if (!same)
            return err_set(e, ERR_CONFLICT,
                           "message_id %s is taken; choose another", mid);
        return message_json(db, mid, out, e);
    }
    if (step != SQLITE_DONE)
        return db_fail(e, db, "message lookup");
    if (!strcmp(r->status, "closed"))
        return err_set(e, ERR_CONFLICT,
                       "the case is closed; reopen it to write");

    int64_t now = now_ms();
    int rc;
    if (sop)
        rc = run(db, e, NULL,
                 "INSERT INTO messages (message_id, case_id, author_id,"
                 " text, image_sop, image_frame, image_window, created_at)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                 "ssissisi", mid, r->case_id, who->user_id, text, sop, frame,
                 window, now);
    else
        rc = run(db, e, NULL,
                 "INSERT INTO messages (message_id, case_id, author_id,"
                 " text, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                 "ssisi", mid, r->case_id, who->user_id, text, now);
    if (!rc)
        rc = add_participant(db, r->case_id, who->user_id, "author", now,
                             NULL, e);
    if (!rc)
        rc = run(db, e, NULL,
                 "INSERT OR IGNORE INTO message_receipts (message_id,"
                 " user_id) SELECT ?1, user_id FROM case_participants"
                 " WHERE case_id = ?2 AND user_id != ?3",
                 "ssi", mid, r->case_id, who->user_id);
    if (!rc)
        rc = touch(db, r->case_id, now, e);
    json_t *m = NULL;
    if (!rc)
        rc = message_json(db, mid, &m, e);
    if (!rc) {
        json_t *body = json_pack("{s:O}", "message", m);
        rc = notify(srv, r->case_id, "message.new", body, e);
        json_decref(body);
    }
    if (!rc)
        *out = m;
    else
        json_decref(m);
    return rc;
}

int cases_message(struct server *srv, const struct principal *who,
                  const struct msg_message_send *req, json_t **out,
                  struct err *e)
{
    return case_action(srv, who, "message.send", req->case_id, req,
                       message_step, out, e);
}

static int read_step(struct server *srv, const struct principal *who,
                     const struct case_row *r, const void *arg, json_t **out,
                     struct err *e)
{
    sqlite3 *db = dbof(srv);
    const char *mid = arg;
    sqlite3_stmt *st = prep(db, e,
                            "SELECT author_id FROM messages"
                            " WHERE message_id = ?1 AND case_id = ?2",
                            "ss", mid, r->case_id);
    if (!st)
        return ERR_DB;
    int step = sqlite3_step(st);
    int64_t author = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    done(st);
    if (step == SQLITE_DONE)
        return err_set(e, ERR_NOTFOUND, "no such message");
    if (step != SQLITE_ROW)
        return db_fail(e, db, "message lookup");
    if (author == who->user_id || who->user_id <= 0)
        return 0;   /* one's own message: nothing to record */
    int64_t now = now_ms();
    int changes = 0;
    int rc = run(db, e, NULL,
                 "INSERT OR IGNORE INTO message_receipts (message_id,"
                 " user_id) VALUES (?1, ?2)", "si", mid, who->user_id);
    if (!rc)
        rc = run(db, e, &changes,
                 "UPDATE message_receipts SET read_at = ?3,"
                 " delivered_at = COALESCE(delivered_at, ?3)"
                 " WHERE message_id = ?1 AND user_id = ?2"
                 " AND read_at IS NULL", "sii", mid, who->user_id, now);
    if (rc || !changes)
        return rc;      /* already read: no second receipt */
    json_t *body = json_pack("{s:{s:s, s:s, s:s, s:I}}", "receipt",
                             "message_id", mid, "case_id", r->case_id,
                             "user", who->login, "read_at", (json_int_t)now);
    rc = notify(srv, r->case_id, "message.read", body, e);
    json_decref(body);
    (void)out;
    return rc;
}

int cases_message_read(struct server *srv, const struct principal *who,
                       const char *case_id, const char *message_id,
                       struct err *e)
{
    json_t *out = NULL;
    int rc = case_action(srv, who, "message.read", case_id, message_id,
                         read_step, &out, e);
    json_decref(out);
    return rc;
}

/* ---- acknowledgements --------------------------------------------------- */

/* The events each user of the JSON list ?1 ([[user_id, seq], ...])
 * newly acknowledges: a(u, lo, hi), its seqs lo < seq <= hi, between its
 * cursor's acked seq and the new one (a user named twice: the highest);
 * ae(u, event), their outbox rows, in both tables that hold them
 * (outbox.h, OUTBOX_ROWS_OF). */
#define ACKED_RANGES                                                       \
    "WITH j(u, s) AS (SELECT json_extract(value, '$[0]'),"                 \
    "  MAX(json_extract(value, '$[1]')) FROM json_each(?1) GROUP BY 1),"   \
    " a(u, lo, hi) AS (SELECT c.user_id, c.acked_seq, j.s FROM j"          \
    "  JOIN outbox_cursor c ON c.user_id = j.u"                            \
    "  WHERE j.s > c.acked_seq AND j.s <= c.last_seq),"                    \
    " ae(u, event) AS (SELECT a.u, o.event FROM a JOIN outbox o"           \
    "  ON o.user_id = a.u AND o.seq > a.lo AND o.seq <= a.hi"              \
    "  UNION ALL SELECT a.u, o.event FROM a JOIN outbox_hot o"             \
    "  ON o.user_id = a.u AND o.seq > a.lo AND o.seq <= a.hi) "

/* What acks[0..n-1] mean, then the cursors: one statement each for all
 * the users (a flush of 1,000 phones' acks was 4,000 statements, most of
 * them parsed anew, on the event loop).  checked: the one ack of a
 * client's own request, held to outbox_ack's rules. */
static int acks_apply(struct server *srv, const struct outbox_rcpt *acks,
                      size_t n, int checked, struct err *e)
{
    sqlite3 *db = dbof(srv);
    if (!srv->outbox)
        return err_set(e, ERR_INVALID, "seq: this account has no events");
    if (!n)
        return 0;
    char *text = outbox_acks_json(acks, n);
    if (!text)
        return err_set(e, ERR_INTERNAL, "cases: out of memory");
    int64_t now = now_ms();
    if (sqlite3_exec(db, "SAVEPOINT cases_ack", NULL, NULL, NULL)) {
        free(text);
        return db_fail(e, db, "ack");
    }
    /* The chat messages of the newly acknowledged message.new events are
     * delivered to their users. */
    int rc = run(db, e, NULL,
                 ACKED_RANGES
                 "UPDATE message_receipts SET delivered_at = ?2"
                 " FROM (SELECT ae.u AS u, json_extract(ev.body,"
                 "  '$.message.message_id') AS m FROM ae"
                 "  JOIN outbox_events ev ON ev.id = ae.event"
                 "  WHERE ev.kind = 'message.new') d"
                 " WHERE message_id = d.m AND user_id = d.u"
                 " AND delivered_at IS NULL",
                 "si", text, now);
    /* A case's case.new / case.escalated acknowledged by a specialist's
     * device: the case's "delivered" step. */
    if (!rc)
        rc = run(db, e, NULL,
                 ACKED_RANGES
                 "INSERT INTO case_steps (case_id, step, user_id, at)"
                 " SELECT DISTINCT ev.case_id, 'delivered', ae.u, ?2 FROM ae"
                 " JOIN users u ON u.id = ae.u AND u.role = 'specialist'"
                 " JOIN outbox_events ev ON ev.id = ae.event"
                 " WHERE ev.kind IN ('case.new', 'case.escalated')"
                 " AND NOT EXISTS (SELECT 1 FROM case_steps s"
                 "  WHERE s.case_id = ev.case_id AND s.step = 'delivered'"
                 "  AND s.user_id = ae.u)",
                 "si", text, now);
    if (!rc)
        rc = checked ? outbox_ack(srv->outbox, acks[0].user_id, acks[0].seq,
                                  NULL, e)
                     : outbox_ack_many(srv->outbox, text, e);
    if (rc)
        sqlite3_exec(db, "ROLLBACK TO cases_ack", NULL, NULL, NULL);
    sqlite3_exec(db, "RELEASE cases_ack", NULL, NULL, NULL);
    free(text);
    return rc;
}

int cases_ack(struct server *srv, int64_t user_id, int64_t seq,
              struct err *e)
{
    struct outbox_rcpt one = { user_id, seq };
    return acks_apply(srv, &one, 1, 1, e);
}

int cases_ack_many(struct server *srv, const struct outbox_rcpt *acks,
                   size_t n, struct err *e)
{
    return acks_apply(srv, acks, n, 0, e);
}

/* ---- images ------------------------------------------------------------- */

int cases_images_arrived(struct server *srv, const char *study_uid,
                         struct err *e)
{
    sqlite3 *db = dbof(srv);
    int rc = tx_begin(srv, e);
    if (rc)
        return rc;
    sqlite3_stmt *st = prep(db, e,
                            "SELECT c.case_id, c.clinic_id FROM case_studies"
                            " cs JOIN cases c ON c.case_id = cs.case_id"
                            " WHERE cs.study_uid = ?1 ORDER BY c.case_id",
                            "s", study_uid);
    if (!st) {
        tx_rollback(srv);
        return ERR_DB;
    }
    /* Collected first: the events are written while no read is open. */
    json_t *found = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(found,
                              json_pack("{s:s, s:I}", "case_id",
                                        col_text(st, 0), "clinic_id",
                                        (json_int_t)sqlite3_column_int64(
                                            st, 1)));
    done(st);
    size_t i;
    json_t *f;
    int n = 0;
    json_array_foreach(found, i, f) {
        const char *cid = jstr(f, "case_id");
        int64_t clinic = json_integer_value(json_object_get(f, "clinic_id"));
        int64_t got = images_received(db, cid, clinic, study_uid);
        if (!got)   /* a study of another clinic under the same UID */
            continue;
        json_t *body = json_pack(
            "{s:s, s:I, s:o, s:{s:I, s:o}}", "study_uid", study_uid,
            "received", (json_int_t)got, "expected",
            images_expected(db, cid, clinic, study_uid), "images",
            "received", (json_int_t)images_received(db, cid, clinic, NULL),
            "expected", images_expected(db, cid, clinic, NULL));
        rc = touch(db, cid, now_ms(), e);
        if (!rc)
            rc = notify(srv, cid, "images.arrived", body, e);
        json_decref(body);
        if (rc)
            break;
        n++;
    }
    json_decref(found);
    rc = tx_end(srv, rc, NULL, e);
    if (!rc && n)
        log_debug("images of %s: %d case(s) told", study_uid, n);
    return rc;
}

/* ---- escalation ---------------------------------------------------------- */

static void audit_system(struct server *srv, const char *action,
                         const char *object, const char *detail)
{
    if (!srv->audit)
        return;
    struct audit_entry a = {
        .actor = "system", .action = action, .object = object,
        .outcome = "ok", .detail = detail,
    };
    audit_write(srv->audit, &a);
}

/* Tell each specialist that sql (?1 specialty, ?2 case_id) selects as
 * (user_id, login): each becomes an "escalated" participant of the case
 * and their login is appended to `to`. */
static int escalate_to(sqlite3 *db, const char *sql, const char *specialty,
                       const char *case_id, int64_t now, json_t *to,
                       struct err *e)
{
    sqlite3_stmt *st = prep(db, e, sql, "ss", specialty, case_id);
    if (!st)
        return ERR_DB;
    int rc = 0;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        json_array_append_new(to, col_json_text(st, 1));
        rc = add_participant(db, case_id, sqlite3_column_int64(st, 0),
                             "escalated", now, NULL, e);
    }
    done(st);
    return rc;
}

/* One escalation step of one case; *stepped = 1 if someone new was
 * told. */
static int escalate_one(struct server *srv, const char *case_id,
                        int64_t now, int *stepped, struct err *e)
{
    sqlite3 *db = dbof(srv);
    *stepped = 0;
    sqlite3_stmt *st = prep(db, e,
                            "SELECT " ROW_COLS " FROM cases c"
                            " WHERE c.case_id = ?1 AND c.status = 'new'"
                            " AND c.due_at > 0 AND c.due_at <= ?2",
                            "si", case_id, now);
    if (!st)
        return ERR_DB;
    struct case_row r;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        row_read(st, &r);
    done(st);
    if (step != SQLITE_ROW)     /* claimed or closed meanwhile */
        return step == SQLITE_DONE ? 0 : db_fail(e, db, "escalate");

    json_t *to = json_array();
    const char *scope = "oncall";
    /* The next of the on-call list not told yet... */
    int rc = escalate_to(db,
                         "SELECT o.user_id, u.login FROM oncall o"
                         " JOIN users u ON u.id = o.user_id"
                         " WHERE o.specialty = ?1 AND u.role = 'specialist'"
                         " AND o.user_id NOT IN (SELECT user_id"
                         "  FROM case_participants WHERE case_id = ?2)"
                         " ORDER BY o.position LIMIT 1",
                         r.specialty, case_id, now, to, e);
    /* ...and once the list is used up, the whole specialty. */
    if (!rc && !json_array_size(to)) {
        scope = "specialty";
        rc = escalate_to(db,
                         "SELECT us.user_id, u.login FROM user_specialties us"
                         " JOIN users u ON u.id = us.user_id"
                         " WHERE us.specialty = ?1 AND u.role = 'specialist'"
                         " AND us.user_id NOT IN (SELECT user_id"
                         "  FROM case_participants WHERE case_id = ?2)"
                         " ORDER BY u.login",
                         r.specialty, case_id, now, to, e);
    }
    if (rc) {
        json_decref(to);
        return rc;
    }
    if (!json_array_size(to)) {     /* nobody left to tell */
        json_decref(to);
        return run(db, e, NULL,
                   "UPDATE cases SET due_at = 0 WHERE case_id = ?1", "s",
                   case_id);
    }
    int level = r.escalation_level + 1;
    int64_t next = !strcmp(scope, "oncall") ? now + due_after(srv,
                                                              r.priority)
                                            : 0;
    /* Escalated to the whole specialty: from now on it is the case of
     * everyone in it, later members included (notify). */
    rc = run(db, e, NULL,
             "UPDATE cases SET escalation_level = ?2, due_at = ?3,"
             " updated_at = ?4, to_specialty = ?5 OR to_specialty"
             " WHERE case_id = ?1",
             "siiii", case_id, (int64_t)level, next, now,
             (int64_t)!strcmp(scope, "specialty"));
    if (!rc) {
        json_t *extra = json_pack("{s:{s:i, s:s, s:O}}", "escalation",
                                  "level", level, "scope", scope, "to", to);
        rc = notify_case(srv, case_id, "case.escalated", extra, NULL, e);
        json_decref(extra);
    }
    if (!rc) {
        char *names = json_dumps(to, JSON_COMPACT);
        char detail[256];
        snprintf(detail, sizeof detail, "level %d (%s) to %s", level, scope,
                 names ? names : "?");
        free(names);
        audit_system(srv, "case.escalate", case_id, detail);
        *stepped = 1;
    }
    json_decref(to);
    return rc;
}

int cases_escalate_due(struct server *srv, int64_t now_ms_,
                       int64_t *next_due_ms, struct err *e)
{
    sqlite3 *db = dbof(srv);
    if (next_due_ms)
        *next_due_ms = 0;
    sqlite3_stmt *st = prep(db, e,
                            "SELECT case_id FROM cases WHERE status = 'new'"
                            " AND due_at > 0 AND due_at <= ?1"
                            " ORDER BY due_at LIMIT 200", "i", now_ms_);
    if (!st)
        return ERR_DB;
    json_t *ids = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(ids, col_json_text(st, 0));
    done(st);

    int n = 0, rc = 0;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        int stepped = 0;
        if ((rc = tx_begin(srv, e)))
            break;
        rc = escalate_one(srv, json_string_value(v), now_ms_, &stepped, e);
        if (rc) {
            tx_rollback(srv);
            log_error("escalation of case %s: %s", json_string_value(v),
                      emsg(e) ? emsg(e) : "?");
            break;
        }
        if ((rc = tx_commit(srv, e)))
            break;
        n += stepped;
    }
    json_decref(ids);
    if (rc)
        return rc;

    if (next_due_ms) {
        st = prep(db, e,
                  "SELECT MIN(due_at) FROM cases WHERE status = 'new'"
                  " AND due_at > 0", NULL);
        if (!st)
            return ERR_DB;
        if (sqlite3_step(st) == SQLITE_ROW)
            *next_due_ms = sqlite3_column_int64(st, 0);
        done(st);
    }
    return n;
}

/* ---- hand-over (issue 12) ------------------------------------------------ */

/* The receiving team links the patient's study, taken on arrival, to
 * the pre-arrival case: the case names the study (so the team sees it
 * next to the crew's photos), case_prearrival records who and when, and
 * case.arrived tells everyone on the case — the crew sees "arrived".
 * The study must be the linker's own clinic's (a hospital links its own
 * CT; an admin any), else it does not exist for it. */
static int link_step(struct server *srv, const struct principal *who,
                     const struct case_row *r, const void *arg,
                     json_t **out, struct err *e)
{
    const char *study = arg;
    sqlite3 *db = dbof(srv);
    int is_admin = !strcmp(who->role, "admin");
    if (!is_admin && !may_claim(db, who, r))
        return err_set(e, ERR_FORBIDDEN, "only the receiving team (a "
                       "specialist of %s) can link the patient's study",
                       r->specialty[0] ? r->specialty : "the case");
    sqlite3_stmt *st = prep(
        db, e,
        "SELECT p.arrived_study,"
        " (SELECT 1 FROM studies s WHERE s.study_uid = ?2"
        "  AND s.clinic_id <> 0 AND (?3 OR s.clinic_id = ?4))"
        " FROM case_prearrival p WHERE p.case_id = ?1",
        "ssii", r->case_id, study, (int64_t)is_admin, who->clinic_id);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    char linked[MSG_UID_MAX + 1] = "";
    int study_ok = 0;
    if (rc == SQLITE_ROW) {
        if (col_text(st, 0))
            strlcpy_h(linked, col_text(st, 0), sizeof linked);
        study_ok = sqlite3_column_type(st, 1) != SQLITE_NULL;
    }
    done(st);
    if (rc == SQLITE_DONE)
        return err_set(e, ERR_CONFLICT, "not a pre-arrival case");
    if (rc != SQLITE_ROW)
        return db_fail(e, db, "pre-arrival");
    if (linked[0] && !strcmp(linked, study))     /* a repeated link */
        return case_json(db, r->case_id, out, e);
    if (linked[0])
        return err_set(e, ERR_CONFLICT, "already linked to study %s",
                       linked);
    if (!study_ok)
        return err_set(e, ERR_NOTFOUND, "study_uid: no such study of "
                       "yours");
    int64_t now = now_ms();
    rc = run(db, e, NULL,
             "UPDATE case_prearrival SET arrived_at = ?2, arrived_study = ?3,"
             " arrived_by = ?4 WHERE case_id = ?1",
             "sisi", r->case_id, now, study, who->user_id);
    if (!rc)
        rc = cases_name_study(db, r->case_id, study, e);
    if (!rc)
        rc = add_participant(db, r->case_id, who->user_id, "author", now,
                             NULL, e);
    if (!rc)
        rc = step_add(db, r->case_id, "arrived", who->user_id, now, e);
    if (!rc)
        rc = touch(db, r->case_id, now, e);
    if (!rc)
        rc = notify_case(srv, r->case_id, "case.arrived", NULL, out, e);
    return rc;
}

int cases_name_study(sqlite3 *db, const char *case_id,
                     const char *study_uid, struct err *e)
{
    return run(db, e, NULL,
               "INSERT OR IGNORE INTO case_studies (case_id, study_uid, pos)"
               " SELECT ?1, ?2, COALESCE(MAX(pos) + 1, 0) FROM case_studies"
               " WHERE case_id = ?1", "ss", case_id, study_uid);
}

int cases_link(struct server *srv, const struct principal *who,
               const struct msg_case_link *req, json_t **out,
               struct err *e)
{
    return case_action(srv, who, "case.link", req->case_id, req->study_uid,
                       link_step, out, e);
}

int cases_link_candidates(struct server *srv, const struct principal *who,
                          const char *case_id, json_t **out, struct err *e)
{
    sqlite3 *db = dbof(srv);
    struct case_row r;
    *out = NULL;
    int rc = read_begin(srv, e);
    if (rc)
        return rc;
    rc = load_visible(srv, who, case_id, &r, e);
    if (!rc && strcmp(who->role, "admin") && !may_claim(db, who, &r))
        rc = err_set(e, ERR_FORBIDDEN, "only the receiving team can link "
                     "the patient's study");
    sqlite3_stmt *st = rc ? NULL : prep(
        db, e,
        "SELECT s.study_uid, s.description, s.modalities, s.date, s.time,"
        " s.num_instances, s.created FROM studies s, cases c"
        " WHERE c.case_id = ?1 AND s.clinic_id = ?2 AND s.clinic_id <> 0"
        " AND s.created >= c.created_at - 3600000"
        " ORDER BY s.created DESC LIMIT 10", "si", case_id, who->clinic_id);
    if (!rc && !st)
        rc = ERR_DB;
    json_t *arr = json_array();
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, json_pack(
            "{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
            "study_uid", col_json_text(st, 0),
            "description", col_json_text(st, 1),
            "modalities", col_json_text(st, 2), "date", col_json_text(st, 3),
            "time", col_json_text(st, 4), "instances", col_json_int(st, 5),
            "received_at", col_json_int(st, 6)));
    done(st);
    read_end(srv);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "studies", arr);
    return 0;
}
