/*
 * qido — QIDO-RS over the store's index: studies, series and instances as
 * DICOM JSON (PS3.18 Annex F), filtered and paged, within the caller's
 * scope.  Part of the store module (store.h); split out only for size.
 *
 * Every value from the request is a bound parameter; the SQL text is
 * built from fixed pieces only.  Matching follows PS3.4 C.2.2.2 where it
 * matters to a clinic: single value or UID list (comma or backslash
 * separated), '*' and '?' wildcards (patient ID, accession: case-sensitive;
 * patient name, study description: case-insensitive), and date ranges
 * "A-B", "-B", "A-".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_int.h"

#define QIDO_DEFAULT_LIMIT 100
#define QIDO_MAX_LIMIT 1000
#define QB_MAX_BINDS 48
#define QB_MAX_LIST 16

/* ---- a tiny SQL builder: fixed text plus named, bound parameters -------- */

struct qb {
    char sql[8192];
    size_t len;
    int bad;                    /* overflow */
    const struct store_scope *scope;    /* its clause is in sql */
    int n;
    struct {
        int is_int;
        int64_t i;
        char *s;                /* owned */
    } b[QB_MAX_BINDS];
};

static void qb_sql(struct qb *q, const char *fmt, ...)
{
    if (q->bad)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(q->sql + q->len, sizeof q->sql - q->len, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof q->sql - q->len)
        q->bad = 1;
    else
        q->len += (size_t)w;
}

/* Append a placeholder ":pN" bound to a copy of s (n bytes). */
static void qb_textn(struct qb *q, const char *s, size_t n)
{
    if (q->bad || q->n == QB_MAX_BINDS) {
        q->bad = 1;
        return;
    }
    char *c = malloc(n + 1);
    if (!c) {
        q->bad = 1;
        return;
    }
    memcpy(c, s, n);
    c[n] = 0;
    q->b[q->n].is_int = 0;
    q->b[q->n].s = c;
    q->n++;
    qb_sql(q, ":p%d", q->n);
}

static void qb_text(struct qb *q, const char *s)
{
    qb_textn(q, s, strlen(s));
}

static void qb_int(struct qb *q, int64_t v)
{
    if (q->bad || q->n == QB_MAX_BINDS) {
        q->bad = 1;
        return;
    }
    q->b[q->n].is_int = 1;
    q->b[q->n].i = v;
    q->b[q->n].s = NULL;
    q->n++;
    qb_sql(q, ":p%d", q->n);
}

static void qb_free(struct qb *q)
{
    for (int i = 0; i < q->n; i++)
        free(q->b[i].s);
    q->n = 0;
}

/* Prepare q's SQL, bind its parameters and, if it has the scope's
 * clause (qb_scope), the scope's. */
static sqlite3_stmt *qb_prepare(struct store *s, struct qb *q,
                                struct err *e)
{
    if (q->bad) {
        err_set(e, ERR_INVALID, "query too complex");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, q->sql, -1, &st, NULL)) {
        err_set(e, ERR_DB, "qido: %s", sqlite3_errmsg(s->db));
        return NULL;
    }
    for (int i = 0; i < q->n; i++) {
        char name[16];
        snprintf(name, sizeof name, ":p%d", i + 1);
        int idx = sqlite3_bind_parameter_index(st, name);
        if (idx <= 0)
            continue;
        if (q->b[i].is_int)
            sqlite3_bind_int64(st, idx, q->b[i].i);
        else
            sqlite3_bind_text(st, idx, q->b[i].s, -1, SQLITE_TRANSIENT);
    }
    if (q->scope && store_scope_bind(st, q->scope, e)) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static int qb_scope(struct qb *q, const struct store_scope *scope,
                    struct err *e)
{
    char sql[2048];
    if (!scope)
        return err_set(e, ERR_INTERNAL, "no scope given");
    if (store_scope_sql(scope, sql, sizeof sql))
        return err_set(e, ERR_INTERNAL, "scope clause too long");
    qb_sql(q, " AND %s", sql);
    q->scope = scope;
    return 0;
}

/* ---- matching ----------------------------------------------------------- */

static int has_wildcard(const char *v)
{
    return strpbrk(v, "*?") != NULL;
}

/* DICOM wildcards to a GLOB pattern: '*' and '?' keep their meaning,
 * '[' is the one other GLOB metacharacter and is made literal. */
static void append_glob(struct qb *q, const char *col, const char *v)
{
    char pat[512];
    size_t o = 0;
    for (const char *p = v; *p && o + 4 < sizeof pat; p++) {
        if (*p == '[') {
            memcpy(pat + o, "[[]", 3);
            o += 3;
        } else {
            pat[o++] = *p;
        }
    }
    pat[o] = 0;
    qb_sql(q, " AND %s GLOB ", col);
    qb_text(q, pat);
}

/* DICOM wildcards to LIKE (case-insensitive for ASCII) with '\' as the
 * escape character. */
static void append_like(struct qb *q, const char *col, const char *v)
{
    char pat[1024];
    size_t o = 0;
    for (const char *p = v; *p && o + 3 < sizeof pat; p++) {
        if (*p == '*') {
            pat[o++] = '%';
        } else if (*p == '?') {
            pat[o++] = '_';
        } else if (*p == '%' || *p == '_' || *p == '\\') {
            pat[o++] = '\\';
            pat[o++] = *p;
        } else {
            pat[o++] = *p;
        }
    }
    pat[o] = 0;
    qb_sql(q, " AND %s LIKE ", col);
    qb_text(q, pat);
    qb_sql(q, " ESCAPE '\\'");
}

/* Exact, or wildcard (GLOB) match of a string attribute. */
static void match_string(struct qb *q, const char *col, const char *v)
{
    if (!strcmp(v, "*"))
        return;                 /* matches everything, empty included */
    if (has_wildcard(v)) {
        append_glob(q, col, v);
    } else {
        qb_sql(q, " AND %s = ", col);
        qb_text(q, v);
    }
}

/* "v1,v2" or "v1\v2" -> col IN (...); a single value -> col = v; no
 * value (NULL or empty) matches everything. */
static int match_list(struct qb *q, const char *col, const char *v,
                      struct err *e)
{
    if (!v)
        return 0;
    const char *parts[QB_MAX_LIST];
    size_t lens[QB_MAX_LIST];
    int n = 0;
    for (const char *p = v;;) {
        size_t len = strcspn(p, ",\\");
        if (len) {
            if (n == QB_MAX_LIST)
                return err_set(e, ERR_INVALID, "too many values in %s", v);
            parts[n] = p;
            lens[n++] = len;
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    if (!n)
        return 0;
    qb_sql(q, " AND %s IN (", col);
    for (int i = 0; i < n; i++) {
        if (i)
            qb_sql(q, ", ");
        qb_textn(q, parts[i], lens[i]);
    }
    qb_sql(q, ")");
    return 0;
}

static int is_date(const char *p, size_t n)
{
    if (n != 8)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

static int match_date(struct qb *q, const char *col, const char *v,
                      struct err *e)
{
    const char *dash = strchr(v, '-');
    if (!dash) {
        if (!is_date(v, strlen(v)))
            return err_set(e, ERR_INVALID, "bad StudyDate '%.40s'", v);
        qb_sql(q, " AND %s = ", col);
        qb_text(q, v);
        return 0;
    }
    size_t la = (size_t)(dash - v), lb = strlen(dash + 1);
    if ((la && !is_date(v, la)) || (lb && !is_date(dash + 1, lb)) ||
        (!la && !lb))
        return err_set(e, ERR_INVALID, "bad StudyDate range '%.40s'", v);
    qb_sql(q, " AND %s <> ''", col);
    if (la) {
        qb_sql(q, " AND %s >= ", col);
        qb_textn(q, v, la);
    }
    if (lb) {
        qb_sql(q, " AND %s <= ", col);
        qb_text(q, dash + 1);
    }
    return 0;
}

static int check_len(const char *v, size_t max, const char *what,
                     struct err *e)
{
    if (v && strlen(v) > max)
        return err_set(e, ERR_INVALID, "%s is too long", what);
    return 0;
}

static int check_query(const struct store_query *q, struct err *e)
{
    if (check_len(q->patient_id, 64, "PatientID", e) ||
        check_len(q->patient_name, 324, "PatientName", e) ||
        check_len(q->study_date, 17, "StudyDate", e) ||
        check_len(q->modality, 256, "Modality", e) ||
        check_len(q->accession, 64, "AccessionNumber", e) ||
        check_len(q->study_description, 256, "StudyDescription", e) ||
        check_len(q->study_uid, 1024, "StudyInstanceUID", e) ||
        check_len(q->series_uid, 1024, "SeriesInstanceUID", e) ||
        check_len(q->sop_uid, 1024, "SOPInstanceUID", e))
        return ERR_INVALID;
    if (q->offset < 0 || q->limit < 0)
        return err_set(e, ERR_INVALID, "negative limit or offset");
    return 0;
}

static void page(struct qb *b, const struct store_query *q)
{
    int limit = q->limit ? q->limit : QIDO_DEFAULT_LIMIT;
    if (limit > QIDO_MAX_LIMIT)
        limit = QIDO_MAX_LIMIT;
    qb_sql(b, " LIMIT ");
    qb_int(b, limit);
    qb_sql(b, " OFFSET ");
    qb_int(b, q->offset);
}

/* ---- DICOM JSON --------------------------------------------------------- */

/* A JSON string of s; bytes that are not valid UTF-8 become '?', so a bad
 * value cannot make the whole response fail. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = strdup(s);
    if (!c)
        return NULL;
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    return j;
}

static json_t *attr(json_t *obj, const char *tag, const char *vr)
{
    json_t *a = json_pack("{s:s}", "vr", vr);
    json_object_set_new(obj, tag, a);
    return a;
}

static void put_str(json_t *obj, const char *tag, const char *vr,
                    const char *v)
{
    json_t *a = attr(obj, tag, vr);
    if (a && v && *v)
        json_object_set_new(a, "Value", json_pack("[o]", jstr(v)));
}

/* Backslash-separated values (CS with VM > 1). */
static void put_multi(json_t *obj, const char *tag, const char *vr,
                      const char *v)
{
    json_t *a = attr(obj, tag, vr);
    if (!a || !v || !*v)
        return;
    json_t *arr = json_array();
    for (const char *p = v;;) {
        size_t len = strcspn(p, "\\");
        if (len) {
            char buf[128];
            snprintf(buf, sizeof buf, "%.*s", (int)len, p);
            json_array_append_new(arr, jstr(buf));
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    json_object_set_new(a, "Value", arr);
}

static void put_int(json_t *obj, const char *tag, const char *vr,
                    int64_t v, int present)
{
    json_t *a = attr(obj, tag, vr);
    if (a && present)
        json_object_set_new(a, "Value", json_pack("[I]", (json_int_t)v));
}

/* PN: "alpha=ideo=phon" component groups -> {"Alphabetic", ...}. */
static void put_pn(json_t *obj, const char *tag, const char *v)
{
    static const char *const groups[] = {"Alphabetic", "Ideographic",
                                         "Phonetic"};
    json_t *a = attr(obj, tag, "PN");
    if (!a || !v || !*v)
        return;
    json_t *pn = json_object();
    const char *p = v;
    for (int g = 0; g < 3; g++) {
        size_t len = strcspn(p, "=");
        if (len) {
            char *c = strndup(p, len);
            if (c)
                json_object_set_new(pn, groups[g], jstr(c));
            free(c);
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    json_object_set_new(a, "Value", json_pack("[o]", pn));
}

static const char *col(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    return v ? (const char *)v : "";
}

/* Page b, run it and collect one object per row built by fn into *out. */
static int run_paged(struct store *s, struct qb *b,
                     const struct store_query *q,
                     json_t *(*fn)(sqlite3_stmt *), json_t **out,
                     struct err *e)
{
    page(b, q);
    sqlite3_stmt *st = qb_prepare(s, b, e);
    if (!st)
        return e ? e->code : ERR_DB;
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, fn(st));
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        rc = err_set(e, ERR_DB, "qido: %s", sqlite3_errmsg(s->db));
    } else {
        *out = arr;
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Run b, which selects at most one row: 0 with its first column in *id
 * (if id), ERR_NOTFOUND with "no such <what>", or ERR_DB. */
static int qb_first(struct store *s, struct qb *b, const char *what,
                    int64_t *id, struct err *e)
{
    sqlite3_stmt *st = qb_prepare(s, b, e);
    if (!st)
        return e ? e->code : ERR_DB;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && id)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "qido: %s", sqlite3_errmsg(s->db));
    return err_set(e, ERR_NOTFOUND, "no such %s", what);
}

/* A study that has a series matching v (a UID or value list) in col of
 * series m. */
static int match_in_series(struct qb *b, const char *col, const char *v,
                           struct err *e)
{
    if (!v || !*v)
        return 0;
    qb_sql(b, " AND EXISTS (SELECT 1 FROM series m"
              " WHERE m.study_ref = studies.id");
    int rc = match_list(b, col, v, e);
    qb_sql(b, ")");
    return rc;
}

/* ---- studies ------------------------------------------------------------ */

static json_t *study_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    put_str(o, "00080020", "DA", col(st, 5));
    put_str(o, "00080030", "TM", col(st, 6));
    put_str(o, "00080050", "SH", col(st, 8));
    put_multi(o, "00080061", "CS", col(st, 9));
    put_str(o, "00081030", "LO", col(st, 7));
    put_pn(o, "00100010", col(st, 1));
    put_str(o, "00100020", "LO", col(st, 2));
    put_str(o, "00100030", "DA", col(st, 3));
    put_str(o, "00100040", "CS", col(st, 4));
    put_str(o, "0020000D", "UI", col(st, 0));
    put_int(o, "00201206", "IS", sqlite3_column_int64(st, 10), 1);
    put_int(o, "00201208", "IS", sqlite3_column_int64(st, 11), 1);
    return o;
}

int store_qido_studies(struct store *s, const struct store_scope *scope,
                       const struct store_query *q, json_t **out,
                       struct err *e)
{
    *out = NULL;
    int rc = check_query(q, e);
    if (rc)
        return rc;
    struct qb b = {0};
    /* An exact PatientID names a few patients: start from them.  Without
     * statistics SQLite would walk the clinic's studies by date instead
     * (both are single-column equalities to it), a full scan of a large
     * clinic; CROSS JOIN fixes the order. */
    int by_patient = q->patient_id && *q->patient_id &&
                     !has_wildcard(q->patient_id);
    qb_sql(&b,
           "SELECT studies.study_uid, p.name, p.patient_id, p.birth_date,"
           " p.sex, studies.date, studies.time, studies.description,"
           " studies.accession, studies.modalities, studies.num_series,"
           " studies.num_instances FROM %s"
           " WHERE 1", by_patient ?
           "patients p CROSS JOIN studies ON p.id = studies.patient_ref" :
           "studies JOIN patients p ON p.id = studies.patient_ref");
    if ((rc = qb_scope(&b, scope, e)))
        goto out;
    if (q->patient_id && *q->patient_id)
        match_string(&b, "p.patient_id", q->patient_id);
    if (q->patient_name && *q->patient_name && strcmp(q->patient_name, "*"))
        append_like(&b, "p.name", q->patient_name);
    if (q->accession && *q->accession)
        match_string(&b, "studies.accession", q->accession);
    if (q->study_description && *q->study_description &&
        strcmp(q->study_description, "*"))
        append_like(&b, "studies.description", q->study_description);
    if (q->study_date && *q->study_date &&
        (rc = match_date(&b, "studies.date", q->study_date, e)))
        goto out;
    if ((rc = match_list(&b, "studies.study_uid", q->study_uid, e)))
        goto out;
    if ((rc = match_in_series(&b, "m.modality", q->modality, e)) ||
        (rc = match_in_series(&b, "m.series_uid", q->series_uid, e)))
        goto out;
    qb_sql(&b, " ORDER BY studies.date DESC, studies.time DESC,"
               " studies.id DESC");
    rc = run_paged(s, &b, q, study_json, out, e);
out:
    qb_free(&b);
    return rc;
}

/* The id of study_uid if the caller may see it: 0 or ERR_NOTFOUND. */
static int visible_study(struct store *s, const struct store_scope *scope,
                         const char *study_uid, int64_t *id, struct err *e)
{
    if (!study_uid || !*study_uid)
        return err_set(e, ERR_INVALID, "a StudyInstanceUID is needed");
    struct qb b = {0};
    qb_sql(&b, "SELECT studies.id FROM studies WHERE studies.study_uid = ");
    qb_text(&b, study_uid);
    int rc = qb_scope(&b, scope, e);
    if (!rc)
        rc = qb_first(s, &b, "study", id, e);
    qb_free(&b);
    return rc;
}

/* What a series or instance query starts with: *out cleared, q checked,
 * and the id of its study, which the caller must be able to see. */
static int study_level(struct store *s, const struct store_scope *scope,
                       const struct store_query *q, int64_t *study_id,
                       json_t **out, struct err *e)
{
    *out = NULL;
    int rc = check_query(q, e);
    if (rc)
        return rc;
    return visible_study(s, scope, q->study_uid, study_id, e);
}

/* ---- series ------------------------------------------------------------- */

static json_t *series_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    put_str(o, "00080060", "CS", col(st, 2));
    put_str(o, "0008103E", "LO", col(st, 4));
    put_str(o, "0020000D", "UI", col(st, 0));
    put_str(o, "0020000E", "UI", col(st, 1));
    put_int(o, "00200011", "IS", sqlite3_column_int64(st, 3), 1);
    put_int(o, "00201209", "IS", sqlite3_column_int64(st, 5), 1);
    return o;
}

int store_qido_series(struct store *s, const struct store_scope *scope,
                      const struct store_query *q, json_t **out,
                      struct err *e)
{
    int64_t study_id = 0;
    int rc = study_level(s, scope, q, &study_id, out, e);
    if (rc)
        return rc;
    struct qb b = {0};
    qb_sql(&b,
           "SELECT studies.study_uid, series.series_uid, series.modality,"
           " series.series_number, series.description, series.num_instances"
           " FROM series JOIN studies ON studies.id = series.study_ref"
           " WHERE series.study_ref = ");
    qb_int(&b, study_id);
    if ((rc = match_list(&b, "series.modality", q->modality, e)) ||
        (rc = match_list(&b, "series.series_uid", q->series_uid, e)))
        goto out;
    qb_sql(&b, " ORDER BY series.series_number, series.id");
    rc = run_paged(s, &b, q, series_json, out, e);
out:
    qb_free(&b);
    return rc;
}

/* ---- instances ---------------------------------------------------------- */

static json_t *instance_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    int rows = sqlite3_column_int(st, 6), cols = sqlite3_column_int(st, 7);
    int frames = sqlite3_column_int(st, 8);
    put_str(o, "00080016", "UI", col(st, 3));
    put_str(o, "00080018", "UI", col(st, 2));
    put_str(o, "00080060", "CS", col(st, 9));
    put_str(o, "00083002", "UI", col(st, 4));
    put_str(o, "0020000D", "UI", col(st, 0));
    put_str(o, "0020000E", "UI", col(st, 1));
    put_int(o, "00200013", "IS", sqlite3_column_int64(st, 5), 1);
    put_int(o, "00280008", "IS", frames, frames > 0);
    put_int(o, "00280010", "US", rows, rows > 0);
    put_int(o, "00280011", "US", cols, cols > 0);
    return o;
}

int store_qido_instances(struct store *s, const struct store_scope *scope,
                         const struct store_query *q, json_t **out,
                         struct err *e)
{
    int64_t study_id = 0;
    int rc = study_level(s, scope, q, &study_id, out, e);
    if (rc)
        return rc;
    struct qb b = {0};
    if (q->series_uid && *q->series_uid) {
        /* A series named in the path must exist in this study. */
        qb_sql(&b, "SELECT 1 FROM series WHERE study_ref = ");
        qb_int(&b, study_id);
        qb_sql(&b, " AND series_uid = ");
        qb_text(&b, q->series_uid);
        rc = qb_first(s, &b, "series", NULL, e);
        qb_free(&b);
        if (rc)
            return rc;
        b = (struct qb){0};
    }
    qb_sql(&b,
           "SELECT studies.study_uid, series.series_uid, i.sop_uid,"
           " i.sop_class, i.transfer_syntax, i.instance_number, i.rows,"
           " i.columns, i.frames, series.modality"
           " FROM instances i JOIN series ON series.id = i.series_ref"
           " JOIN studies ON studies.id = series.study_ref"
           " WHERE series.study_ref = ");
    qb_int(&b, study_id);
    if (q->series_uid && *q->series_uid) {
        qb_sql(&b, " AND series.series_uid = ");
        qb_text(&b, q->series_uid);
    }
    if ((rc = match_list(&b, "i.sop_uid", q->sop_uid, e)) ||
        (rc = match_list(&b, "series.modality", q->modality, e)))
        goto out;
    qb_sql(&b, " ORDER BY series.series_number, series.id,"
               " i.instance_number, i.id");
    rc = run_paged(s, &b, q, instance_json, out, e);
out:
    qb_free(&b);
    return rc;
}
