/*
 * store — the blob files and the SQLite index of every accepted instance
 * (see store.h).  QIDO-RS lives beside it in qido.c, the schema in
 * schema.c.
 *
 * Layout of a data directory:
 *   hashi.db                    the one database (WAL, synchronous=FULL)
 *   blobs/ab/cd/<sha256>        instance files, named by their content
 *   conflicts/<sha256>          a second, different copy of a known UID
 *   tmp/                        files being received (wiped at start)
 *
 * The order of a store is what makes it safe: the file is fsync'd, then
 * renamed into blobs/, the directory fsync'd, and only then is the index
 * row committed.  So an indexed instance always has a complete blob; a
 * crash in between leaves at most a blob nobody points at, which is
 * harmless (content-addressed: the same bytes arriving again reuse it).
 * The budget per new instance is one file sync, one directory sync and
 * one WAL commit.
 *
 * Scoping: every read of the index goes through the scope clause of
 * store_scope_sql()/store_scope_bind(), the only place that decides which
 * studies a caller may see.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/log.h"
#include "schema.h"
#include "store_int.h"

#define STORE_DEFAULT_MAX (2ULL << 30)
#define STORE_BUSY_MS 10000

/* Present once the consult workflow (cases.c) is linked in: widens the
 * scope to studies attached to cases the user may see. */
const char *cases_study_visible_sql(void) __attribute__((weak));

/* ---- statements --------------------------------------------------------- */

sqlite3_stmt *store_stmt(struct store *s, const char *sql, struct err *e)
{
    for (int i = 0; i < s->ncache; i++) {
        if (!strcmp(s->cache[i].sql, sql)) {
            sqlite3_stmt *st = s->cache[i].st;
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return st;
        }
    }
    if (s->ncache == STORE_MAX_STMTS) {
        err_set(e, ERR_INTERNAL, "statement cache full");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL)) {
        err_set(e, ERR_DB, "prepare: %s", sqlite3_errmsg(s->db));
        return NULL;
    }
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(st);
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->cache[s->ncache].sql = copy;
    s->cache[s->ncache].st = st;
    s->ncache++;
    return st;
}

static int exec(struct store *s, const char *sql, struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, sql, e);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return err_set(e, ERR_DB, "%s: %s", sql, sqlite3_errmsg(s->db));
    return 0;
}

static void rollback(struct store *s)
{
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Bind a string, NULL for NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    strlcpy_h(dst, v ? (const char *)v : "", n);
}

/* ---- scope -------------------------------------------------------------- */

/* Whether the consult workflow's tables exist in this database: its
 * clause names them, and without them no case can widen anything.  Once
 * seen they stay (tables are never dropped). */
static int cases_ready(struct store *s)
{
    if (s->have_cases || !cases_study_visible_sql)
        return s->have_cases;
    sqlite3_stmt *st = store_stmt(
        s,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('cases', 'case_studies')",
        NULL);
    if (st && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_int(st, 0) == 2)
        s->have_cases = 1;
    if (st)
        sqlite3_reset(st);
    return s->have_cases;
}

int store_scope_sql(struct store *s, const struct store_scope *sc,
                    char *out, size_t n)
{
    int w;
    if (sc->all)
        w = snprintf(out, n, "1");
    else if (sc->user_id > 0 && cases_ready(s) && cases_study_visible_sql())
        w = snprintf(out, n,
                     "((studies.clinic_id = :scope_clinic"
                     " AND studies.clinic_id <> 0) OR (%s))",
                     cases_study_visible_sql());
    else
        w = snprintf(out, n,
                     "(studies.clinic_id = :scope_clinic"
                     " AND studies.clinic_id <> 0)");
    return (w < 0 || (size_t)w >= n) ? ERR_TOOBIG : 0;
}

int store_scope_bind(sqlite3_stmt *st, const struct store_scope *sc)
{
    static const char *const user_names[] = {
        ":uid", ":user_id", "@uid", "$uid", ":scope_user",
    };
    if (sc->all)
        return 0;
    int i = sqlite3_bind_parameter_index(st, ":scope_clinic");
    if (i > 0)
        sqlite3_bind_int64(st, i, sc->clinic_id);
    for (size_t k = 0; k < sizeof user_names / sizeof user_names[0]; k++) {
        i = sqlite3_bind_parameter_index(st, user_names[k]);
        if (i > 0)
            sqlite3_bind_int64(st, i, sc->user_id);
    }
    /* Every parameter of the store's own SQL is named, so a nameless one
     * can only come from the consult workflow's clause: the user id. */
    int np = sqlite3_bind_parameter_count(st);
    for (i = 1; i <= np; i++)
        if (!sqlite3_bind_parameter_name(st, i))
            sqlite3_bind_int64(st, i, sc->user_id);
    return 0;
}

/* ---- open / close ------------------------------------------------------- */

static int open_db(struct store *s, struct err *e)
{
    char path[4096];
    if (path_join(path, sizeof path, s->data_dir, "hashi.db"))
        return err_set(e, ERR_TOOBIG, "data dir path too long");
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc) {
        err_set(e, ERR_DB, "open %s: %s", path,
                s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return ERR_DB;
    }
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    sqlite3_extended_result_codes(s->db, 1);
    char *msg = NULL;
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = FULL;"
                     "PRAGMA foreign_keys = ON;"
                     "PRAGMA journal_size_limit = 67108864;",
                     NULL, NULL, &msg)) {
        err_set(e, ERR_DB, "%s: pragmas: %s", path,
                msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return ERR_DB;
    }
    return schema_migrate(s->db, e);
}

/* The 256 first-level fan-out directories, made once, so that a store
 * rarely has to sync blobs/ for a new one.  (The 65536 second-level ones
 * would cost 256 MB of directory blocks; they come on demand.) */
static int make_level1(struct store *s)
{
    char p[4096];
    if (path_join(p, sizeof p, s->blobs, "ff"))
        return ERR_TOOBIG;
    struct stat st;
    if (stat(p, &st) == 0)
        return 0;
    for (int i = 0; i < 256; i++) {
        char name[3];
        snprintf(name, sizeof name, "%02x", i);
        if (path_join(p, sizeof p, s->blobs, name) ||
            (mkdir(p, 0700) && errno != EEXIST))
            return ERR_IO;
    }
    return fsync_dir(s->blobs);
}

struct store *store_open(const char *data_dir, struct err *e)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->max_instance = STORE_DEFAULT_MAX;
    if (strlcpy_h(s->data_dir, data_dir, sizeof s->data_dir) >=
            sizeof s->data_dir ||
        path_join(s->blobs, sizeof s->blobs, data_dir, "blobs") ||
        path_join(s->tmp, sizeof s->tmp, data_dir, "tmp") ||
        path_join(s->conflicts, sizeof s->conflicts, data_dir, "conflicts")) {
        err_set(e, ERR_TOOBIG, "data dir path too long");
        free(s);
        return NULL;
    }
    const char *dirs[] = {s->data_dir, s->blobs, s->tmp, s->conflicts};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (mkdir_p(dirs[i], 0700)) {
            err_set(e, ERR_IO, "mkdir %s: %s", dirs[i], strerror(errno));
            free(s);
            return NULL;
        }
    }
    if (fsync_dir(s->data_dir) || make_level1(s)) {
        err_set(e, ERR_IO, "setting up %s: %s", s->data_dir,
                strerror(errno));
        free(s);
        return NULL;
    }
    if (open_db(s, e)) {
        store_close(s);
        return NULL;
    }
    return s;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->ncache; i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    if (s->db)
        sqlite3_close(s->db);
    free(s);
}

sqlite3 *store_db(struct store *s)
{
    return s->db;
}

const char *store_data_dir(const struct store *s)
{
    return s->data_dir;
}

const char *store_tmp_dir(const struct store *s)
{
    return s->tmp;
}

void store_set_max_instance(struct store *s, uint64_t bytes)
{
    s->max_instance = bytes ? bytes : STORE_DEFAULT_MAX;
}

int store_tmp_file(struct store *s, char *path, int *fd, struct err *e)
{
    if (path_join(path, 4096, s->tmp, "in-XXXXXX"))
        return err_set(e, ERR_TOOBIG, "tmp path too long");
    int f = mkstemp(path);
    if (f < 0)
        return err_set(e, ERR_IO, "mkstemp %s: %s", path, strerror(errno));
    fcntl(f, F_SETFD, FD_CLOEXEC);
    *fd = f;
    return 0;
}

/* blobs/ab, blobs/ab/cd or blobs/ab/cd/<sha> (levels 1, 2, 3). */
static int fanout_path(const struct store *s, const char *sha, int levels,
                       char *out)
{
    char rel[80];
    if (levels == 1)
        snprintf(rel, sizeof rel, "%.2s", sha);
    else if (levels == 2)
        snprintf(rel, sizeof rel, "%.2s/%.2s", sha, sha + 2);
    else
        snprintf(rel, sizeof rel, "%.2s/%.2s/%.64s", sha, sha + 2, sha);
    return path_join(out, 4096, s->blobs, rel);
}

int store_blob_path(const struct store *s, const char *sha, char *out)
{
    return fanout_path(s, sha, 3, out);
}

/* ---- putting a file ----------------------------------------------------- */

/* Flush a file's data (and the size that makes it readable) to disk. */
static int sync_file(const char *path, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_IO, "open %s: %s", path, strerror(errno));
    int rc = fdatasync(fd);
    int saved = errno;
    close(fd);
    if (rc)
        return err_set(e, ERR_IO, "fdatasync %s: %s", path, strerror(saved));
    return 0;
}

/* mkdir one fan-out level; if it is new, its parent's entry for it must
 * be made durable too (once, the first time). */
static int mkdir_synced(const char *dir, const char *parent, struct err *e)
{
    if (mkdir(dir, 0700) == 0) {
        if (fsync_dir(parent))
            return err_set(e, ERR_IO, "fsync %s: %s", parent,
                           strerror(errno));
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    return err_set(e, ERR_IO, "mkdir %s: %s", dir, strerror(errno));
}

static int make_fanout(struct store *s, const char *sha, struct err *e)
{
    char l1[4096], l2[4096];
    fanout_path(s, sha, 1, l1);
    fanout_path(s, sha, 2, l2);
    int rc = mkdir_synced(l1, s->blobs, e);
    return rc ? rc : mkdir_synced(l2, l1, e);
}

/* Move the temp file to its blob path durably, or drop it if the blob is
 * already there.  The temp file is gone afterwards either way. */
static int blob_place(struct store *s, const char *tmp, const char *sha,
                      uint64_t size, struct err *e)
{
    char path[4096], dir[4096];
    if (store_blob_path(s, sha, path) || fanout_path(s, sha, 2, dir)) {
        unlink(tmp);
        return err_set(e, ERR_TOOBIG, "blob path too long");
    }

    struct stat st;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size == size) {
        /* The same bytes are already there (an orphan from a crash, or
         * another thread's store of them): keep that copy, but make sure
         * its name is durable before the index points at it. */
        unlink(tmp);
        if (fsync_dir(dir))
            return err_set(e, ERR_IO, "fsync %s: %s", dir, strerror(errno));
        return 0;
    }
    int rc = sync_file(tmp, e);
    if (rc) {
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path)) {
        if (errno != ENOENT || (rc = make_fanout(s, sha, e)) ||
            rename(tmp, path)) {
            if (!rc)
                rc = err_set(e, ERR_IO, "rename %s: %s", path,
                             strerror(errno));
            unlink(tmp);
            return rc;
        }
    }
    if (fsync_dir(dir))
        return err_set(e, ERR_IO, "fsync %s: %s", dir, strerror(errno));
    return 0;
}

static const char SQL_SOP_SHA[] =
    "SELECT sha256 FROM instances WHERE sop_uid = ?1";

/* The sha256 of the indexed instance sop_uid into sha: 1 if found, 0 if
 * not, or an error. */
static int sop_lookup(struct store *s, const char *sop_uid, char sha[65],
                      struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, SQL_SOP_SHA, e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, sop_uid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_col(sha, 65, st, 0);
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "lookup %s: %s", sop_uid,
                       sqlite3_errmsg(s->db));
    return 0;
}

static const char SQL_CONFLICT_INSERT[] =
    "INSERT INTO conflicts (sop_uid, existing_sha256, new_sha256, size,"
    " received_at, via, calling_ae, user, remote, clinic_id, path)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

static int conflict_record(struct store *s, const char *existing,
                           const struct store_source *src,
                           const struct store_result *res, const char *path,
                           struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, SQL_CONFLICT_INSERT, e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, res->info.sop_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, existing, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, res->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)res->size);
    sqlite3_bind_int64(st, 5, now_ms());
    bind_text(st, 6, src && src->via ? src->via : "unknown");
    bind_text(st, 7, src ? src->calling_ae : NULL);
    bind_text(st, 8, src ? src->user : NULL);
    bind_text(st, 9, src ? src->remote : NULL);
    sqlite3_bind_int64(st, 10, src ? src->clinic_id : 0);
    sqlite3_bind_text(st, 11, path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "record conflict: %s",
                       sqlite3_errmsg(s->db));
    return 0;
}

/* Keep the file `from` (a temp file, or a blob that lost a race) aside in
 * conflicts/<sha>, durably, and record the conflict. */
static int conflict_keep(struct store *s, const char *from,
                         const char *existing, const struct store_source *src,
                         struct store_result *res, struct err *e)
{
    char path[4096];
    if (path_join(path, sizeof path, s->conflicts, res->sha256)) {
        unlink(from);
        return err_set(e, ERR_TOOBIG, "conflict path too long");
    }
    struct stat st;
    int rc;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size == res->size) {
        unlink(from);       /* the same conflicting copy came before */
    } else if ((rc = sync_file(from, e)) || rename(from, path) ||
               fsync_dir(s->conflicts)) {
        if (!rc)
            rc = err_set(e, ERR_IO, "keep conflict %s: %s", path,
                         strerror(errno));
        unlink(from);
        return rc;
    }
    rc = conflict_record(s, existing, src, res, path, e);
    if (rc)
        return rc;
    res->outcome = STORE_CONFLICT;
    log_warn("store: conflict for %s: have %.12s, got %.12s (kept in %s)",
             res->info.sop_uid, existing, res->sha256, path);
    return 0;
}

static const char SQL_STUDY_GET[] =
    "SELECT id, modalities, clinic_id FROM studies WHERE study_uid = ?1";
static const char SQL_PATIENT_UPSERT[] =
    "INSERT INTO patients (clinic_id, patient_id, name, birth_date, sex)"
    " VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (clinic_id, patient_id, name, birth_date, sex)"
    " DO UPDATE SET sex = excluded.sex RETURNING id";
static const char SQL_STUDY_INSERT[] =
    "INSERT INTO studies (study_uid, patient_ref, date, time, description,"
    " accession, modalities, clinic_id, num_series, num_instances, created,"
    " updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7, 0, 0, ?8, ?8)"
    " RETURNING id";
static const char SQL_SERIES_GET[] =
    "SELECT id, study_ref FROM series WHERE series_uid = ?1";
static const char SQL_SERIES_INSERT[] =
    "INSERT INTO series (series_uid, study_ref, modality, series_number,"
    " description, num_instances) VALUES (?1, ?2, ?3, ?4, ?5, 0)"
    " RETURNING id";
static const char SQL_INSTANCE_INSERT[] =
    "INSERT INTO instances (sop_uid, series_ref, sop_class, transfer_syntax,"
    " instance_number, rows, columns, frames, sha256, size, received_at,"
    " via, calling_ae, user, remote, clinic_id) VALUES (?1, ?2, ?3, ?4, ?5,"
    " ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
static const char SQL_SERIES_COUNT[] =
    "UPDATE series SET num_instances = num_instances + 1 WHERE id = ?1";
static const char SQL_STUDY_COUNT[] =
    "UPDATE studies SET num_instances = num_instances + 1,"
    " num_series = num_series + ?2, modalities = ?3, updated = ?4"
    " WHERE id = ?1";

/* Run a write statement to its end; *id receives the first column of
 * its first row, if it returns one (INSERT ... RETURNING id).
 * ERR_CONFLICT for a UNIQUE violation, ERR_DB for other failures. */
static int step_id(struct store *s, sqlite3_stmt *st, int64_t *id,
                   struct err *e)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
    }
    if (rc != SQLITE_DONE) {
        int ext = sqlite3_extended_errcode(s->db);
        err_set(e, ERR_DB, "index: %s", sqlite3_errmsg(s->db));
        sqlite3_reset(st);
        return ext == SQLITE_CONSTRAINT_UNIQUE ? ERR_CONFLICT : ERR_DB;
    }
    sqlite3_reset(st);
    return 0;
}

/* Add one modality to a backslash-separated list (out: 256 bytes); 1 if
 * it was new. */
static int modality_add(const char *list, const char *m, char *out)
{
    strlcpy_h(out, list, 256);
    if (!*m)
        return 0;
    size_t ml = strlen(m);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, '\\');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == ml && !memcmp(p, m, ml))
            return 0;
        if (!end)
            break;
        p = end + 1;
    }
    size_t have = strlen(out);
    if (have + (have ? 1 : 0) + ml + 1 > 256)
        return 0;
    snprintf(out + have, 256 - have, "%s%s", have ? "\\" : "", m);
    return 1;
}

/* Insert patient/study/series/instance rows for res in one transaction.
 * ERR_CONFLICT if the SOP Instance UID was indexed meanwhile. */
static int index_instance(struct store *s, const struct store_source *src,
                          const struct store_result *res, struct err *e)
{
    const struct dcm_info *in = &res->info;
    int64_t now = now_ms(), clinic = src ? src->clinic_id : 0;
    int64_t study_id = 0, series_id = 0, patient_id = 0, study_clinic = 0;
    char mods[256] = "", newmods[256];
    int rc, new_series = 0;
    sqlite3_stmt *st;

    if ((rc = exec(s, "BEGIN IMMEDIATE", e)))
        return rc;

    /* study */
    if (!(st = store_stmt(s, SQL_STUDY_GET, e)))
        goto fail;
    sqlite3_bind_text(st, 1, in->study_uid, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        study_id = sqlite3_column_int64(st, 0);
        copy_col(mods, sizeof mods, st, 1);
        study_clinic = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err_set(e, ERR_DB, "index: %s", sqlite3_errmsg(s->db));
        goto fail;
    }
    if (!study_id) {
        if (!(st = store_stmt(s, SQL_PATIENT_UPSERT, e)))
            goto fail;
        sqlite3_bind_int64(st, 1, clinic);
        sqlite3_bind_text(st, 2, in->patient_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->patient_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, in->birth_date, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, in->sex, -1, SQLITE_STATIC);
        if ((rc = step_id(s, st, &patient_id, e)))
            goto fail_rc;
        if (!(st = store_stmt(s, SQL_STUDY_INSERT, e)))
            goto fail;
        sqlite3_bind_text(st, 1, in->study_uid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, patient_id);
        sqlite3_bind_text(st, 3, in->study_date, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, in->study_time, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, in->study_description, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, in->accession, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, clinic);
        sqlite3_bind_int64(st, 8, now);
        if ((rc = step_id(s, st, &study_id, e)))
            goto fail_rc;
        study_clinic = clinic;
    } else if (study_clinic != clinic) {
        /* The study stays its first owner's; the instance row records
         * who sent this part of it. */
        log_warn("store: %s of study %s (clinic %lld) sent by clinic %lld",
                 in->sop_uid, in->study_uid, (long long)study_clinic,
                 (long long)clinic);
    }

    /* series */
    if (!(st = store_stmt(s, SQL_SERIES_GET, e)))
        goto fail;
    sqlite3_bind_text(st, 1, in->series_uid, -1, SQLITE_STATIC);
    int64_t series_study = 0;
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        series_id = sqlite3_column_int64(st, 0);
        series_study = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err_set(e, ERR_DB, "index: %s", sqlite3_errmsg(s->db));
        goto fail;
    }
    if (series_id && series_study != study_id) {
        rollback(s);
        return err_set(e, ERR_INVALID,
                       "series %s belongs to another study than %s",
                       in->series_uid, in->study_uid);
    }
    if (!series_id) {
        if (!(st = store_stmt(s, SQL_SERIES_INSERT, e)))
            goto fail;
        sqlite3_bind_text(st, 1, in->series_uid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, study_id);
        sqlite3_bind_text(st, 3, in->modality, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, in->series_number);
        sqlite3_bind_text(st, 5, in->series_description, -1, SQLITE_STATIC);
        if ((rc = step_id(s, st, &series_id, e)))
            goto fail_rc;
        new_series = 1;
    }

    /* instance */
    if (!(st = store_stmt(s, SQL_INSTANCE_INSERT, e)))
        goto fail;
    sqlite3_bind_text(st, 1, in->sop_uid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, series_id);
    sqlite3_bind_text(st, 3, in->sop_class_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, in->transfer_syntax, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, in->instance_number);
    sqlite3_bind_int(st, 6, in->rows);
    sqlite3_bind_int(st, 7, in->columns);
    sqlite3_bind_int(st, 8, in->frames);
    sqlite3_bind_text(st, 9, res->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)res->size);
    sqlite3_bind_int64(st, 11, now);
    bind_text(st, 12, src && src->via ? src->via : "unknown");
    bind_text(st, 13, src ? src->calling_ae : NULL);
    bind_text(st, 14, src ? src->user : NULL);
    bind_text(st, 15, src ? src->remote : NULL);
    sqlite3_bind_int64(st, 16, clinic);
    int64_t unused = 0;
    if ((rc = step_id(s, st, &unused, e)))
        goto fail_rc;

    /* counts */
    if (!(st = store_stmt(s, SQL_SERIES_COUNT, e)))
        goto fail;
    sqlite3_bind_int64(st, 1, series_id);
    if ((rc = step_id(s, st, &unused, e)))
        goto fail_rc;
    modality_add(mods, in->modality, newmods);
    if (!(st = store_stmt(s, SQL_STUDY_COUNT, e)))
        goto fail;
    sqlite3_bind_int64(st, 1, study_id);
    sqlite3_bind_int(st, 2, new_series);
    sqlite3_bind_text(st, 3, newmods, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    if ((rc = step_id(s, st, &unused, e)))
        goto fail_rc;

    if ((rc = exec(s, "COMMIT", e)))
        goto fail_rc;
    return 0;

fail:
    rc = ERR_DB;
fail_rc:
    rollback(s);
    return rc;
}

/* The index insert lost a race against another store of the same UID
 * (the blob of ours is already in place). */
static int put_lost_race(struct store *s, const struct store_source *src,
                         struct store_result *res, struct err *e)
{
    char existing[65];
    log_info("store: %s was indexed by another writer meanwhile",
             res->info.sop_uid);
    int rc = sop_lookup(s, res->info.sop_uid, existing, e);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return err_set(e, ERR_DB, "index: %s vanished after a conflict",
                       res->info.sop_uid);
    if (!strcmp(existing, res->sha256)) {
        res->outcome = STORE_DUPLICATE;
        return 0;
    }
    char blob[4096];
    store_blob_path(s, res->sha256, blob);
    return conflict_keep(s, blob, existing, src, res, e);
}

int store_put_file(struct store *s, const char *tmp_path,
                   const struct store_source *src, struct store_result *res,
                   struct err *e)
{
    memset(res, 0, sizeof *res);
    struct stat st;
    if (stat(tmp_path, &st))
        return err_set(e, ERR_IO, "stat %s: %s", tmp_path, strerror(errno));
    if ((uint64_t)st.st_size > s->max_instance) {
        unlink(tmp_path);
        return err_set(e, ERR_TOOBIG, "instance of %llu bytes is above the "
                       "limit of %llu", (unsigned long long)st.st_size,
                       (unsigned long long)s->max_instance);
    }
    int rc = dicom_parse_file(tmp_path, &res->info, e);
    if (rc) {
        unlink(tmp_path);
        if (rc == ERR_IO || rc == ERR_INTERNAL)
            return rc;
        if (e)
            e->code = ERR_INVALID;
        return ERR_INVALID;
    }
    /* The parser checks these too; the index relies on them. */
    const struct dcm_info *in = &res->info;
    if (!dicom_uid_valid(in->study_uid) || !dicom_uid_valid(in->series_uid) ||
        !dicom_uid_valid(in->sop_uid) || !dicom_uid_valid(in->sop_class_uid)) {
        unlink(tmp_path);
        return err_set(e, ERR_INVALID, "missing or malformed UID");
    }
    if ((rc = sha256_file(tmp_path, res->sha256, &res->size, e))) {
        unlink(tmp_path);
        return rc;
    }
    /* Checked again on the bytes hashed: the file may have grown. */
    if (res->size > s->max_instance) {
        unlink(tmp_path);
        return err_set(e, ERR_TOOBIG, "instance above the size limit");
    }

    char existing[65];
    rc = sop_lookup(s, res->info.sop_uid, existing, e);
    if (rc < 0) {
        unlink(tmp_path);
        return rc;
    }
    if (rc == 1) {
        if (!strcmp(existing, res->sha256)) {
            unlink(tmp_path);
            res->outcome = STORE_DUPLICATE;
            return 0;
        }
        return conflict_keep(s, tmp_path, existing, src, res, e);
    }

    if ((rc = blob_place(s, tmp_path, res->sha256, res->size, e)))
        return rc;
    rc = index_instance(s, src, res, e);
    if (rc == ERR_CONFLICT)
        return put_lost_race(s, src, res, e);
    if (rc)
        return rc;
    res->outcome = STORE_STORED;
    return 0;
}

/* ---- recovery ----------------------------------------------------------- */

/* Remove everything in tmp/: nothing there was ever acknowledged. */
static int clean_tmp(struct store *s)
{
    DIR *d = opendir(s->tmp);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4096];
        if (path_join(p, sizeof p, s->tmp, de->d_name))
            continue;
        if (unlink(p) == 0) {
            n++;
        } else if (errno == EISDIR || errno == EPERM) {
            if (rmdir(p) == 0)
                n++;
            else
                log_warn("store: cannot remove %s: %s", p, strerror(errno));
        }
    }
    closedir(d);
    if (n) {
        fsync_dir(s->tmp);
        log_info("store: removed %d leftover temp file(s)", n);
    }
    return n;
}

/* Drop index rows whose blob is missing or has the wrong size.  Only
 * existence and size are checked, not the hash: re-hashing every blob at
 * every start would make start-up time grow with the archive, and the
 * store order (sync file, rename, sync dir, then commit) already
 * guarantees that an indexed blob was complete when it was indexed. */
static int check_blobs(struct store *s, int *removed, struct err *e)
{
    int64_t *bad = NULL;
    size_t nbad = 0, cap = 0;
    *removed = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, sop_uid, sha256, size FROM instances",
                           -1, &st, NULL))
        return err_set(e, ERR_DB, "recover: %s", sqlite3_errmsg(s->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *sop = (const char *)sqlite3_column_text(st, 1);
        const char *sha = (const char *)sqlite3_column_text(st, 2);
        int64_t size = sqlite3_column_int64(st, 3);
        char path[4096];
        struct stat sb;
        if (sha && strlen(sha) == 64 && !store_blob_path(s, sha, path) &&
            stat(path, &sb) == 0 && sb.st_size == size)
            continue;
        log_warn("store: %s: blob %s missing or of the wrong size; "
                 "removing it from the index", sop ? sop : "?",
                 sha ? sha : "?");
        if (nbad == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *nb = realloc(bad, cap * sizeof *bad);
            if (!nb) {
                free(bad);
                sqlite3_finalize(st);
                return err_set(e, ERR_INTERNAL, "out of memory");
            }
            bad = nb;
        }
        bad[nbad++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(bad);
        return err_set(e, ERR_DB, "recover: %s", sqlite3_errmsg(s->db));
    }
    if (!nbad)
        return 0;

    if ((rc = exec(s, "BEGIN IMMEDIATE", e))) {
        free(bad);
        return rc;
    }
    st = store_stmt(s, "DELETE FROM instances WHERE id = ?1", e);
    for (size_t i = 0; st && i < nbad; i++) {
        sqlite3_bind_int64(st, 1, bad[i]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            st = NULL;
            break;
        }
        sqlite3_reset(st);
    }
    free(bad);
    /* Recount what lost instances; drop series and studies left empty. */
    static const char recount[] =
        "UPDATE series SET num_instances ="
        " (SELECT count(*) FROM instances WHERE series_ref = series.id);"
        "DELETE FROM series WHERE num_instances = 0;"
        "UPDATE studies SET"
        " num_series ="
        "  (SELECT count(*) FROM series WHERE study_ref = studies.id),"
        " num_instances = (SELECT coalesce(sum(num_instances), 0)"
        "  FROM series WHERE study_ref = studies.id),"
        " modalities = coalesce((SELECT group_concat(modality, '\\')"
        "  FROM (SELECT DISTINCT modality FROM series"
        "   WHERE study_ref = studies.id AND modality <> ''"
        "   ORDER BY modality)), '');"
        "DELETE FROM studies WHERE num_series = 0;";
    if (!st || sqlite3_exec(s->db, recount, NULL, NULL, NULL) ||
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) {
        err_set(e, ERR_DB, "recover: %s", sqlite3_errmsg(s->db));
        rollback(s);
        return ERR_DB;
    }
    *removed = (int)nbad;
    return 0;
}

int store_recover(const char *data_dir, int *fixed, struct err *e)
{
    struct err local;
    if (!e)
        e = &local;
    if (fixed)
        *fixed = 0;
    struct store *s = store_open(data_dir, e);
    if (!s)
        return e->code ? e->code : ERR_IO;
    int removed_tmp = clean_tmp(s);
    int removed_rows = 0;
    int rc = check_blobs(s, &removed_rows, e);
    store_close(s);
    if (removed_rows)
        log_warn("store: removed %d index row(s) without a blob",
                 removed_rows);
    if (fixed)
        *fixed = removed_tmp + removed_rows;
    return rc;
}

/* ---- one instance, a study's instances ---------------------------------- */

static const char INSTANCE_COLS[] =
    "SELECT studies.study_uid, series.series_uid, i.sop_uid, i.sop_class,"
    " i.transfer_syntax, i.sha256, i.size, i.frames"
    " FROM instances i JOIN series ON series.id = i.series_ref"
    " JOIN studies ON studies.id = series.study_ref";

static void instance_from_row(const struct store *s, sqlite3_stmt *st,
                              struct store_instance *out)
{
    memset(out, 0, sizeof *out);
    copy_col(out->study_uid, sizeof out->study_uid, st, 0);
    copy_col(out->series_uid, sizeof out->series_uid, st, 1);
    copy_col(out->sop_uid, sizeof out->sop_uid, st, 2);
    copy_col(out->sop_class_uid, sizeof out->sop_class_uid, st, 3);
    copy_col(out->transfer_syntax, sizeof out->transfer_syntax, st, 4);
    copy_col(out->sha256, sizeof out->sha256, st, 5);
    out->size = (uint64_t)sqlite3_column_int64(st, 6);
    out->frames = sqlite3_column_int(st, 7);
    store_blob_path(s, out->sha256, out->path);
}

/* A statement over INSTANCE_COLS with `where` and the scope clause. */
static sqlite3_stmt *scoped_stmt(struct store *s,
                                 const struct store_scope *scope,
                                 const char *where, const char *tail,
                                 struct err *e)
{
    char scope_sql[2048], sql[4096];
    if (!scope) {
        err_set(e, ERR_INTERNAL, "no scope given");
        return NULL;
    }
    if (store_scope_sql(s, scope, scope_sql, sizeof scope_sql) ||
        snprintf(sql, sizeof sql, "%s WHERE %s AND %s%s", INSTANCE_COLS,
                 where, scope_sql, tail) >= (int)sizeof sql) {
        err_set(e, ERR_INTERNAL, "scope clause too long");
        return NULL;
    }
    sqlite3_stmt *st = store_stmt(s, sql, e);
    if (st)
        store_scope_bind(st, scope);
    return st;
}

static void bind_named(sqlite3_stmt *st, const char *name, const char *v)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i > 0)
        bind_text(st, i, v);
}

int store_find_instance(struct store *s, const struct store_scope *scope,
                        const char *study_uid, const char *series_uid,
                        const char *sop_uid, struct store_instance *out,
                        struct err *e)
{
    if (!study_uid || !sop_uid)
        return err_set(e, ERR_INVALID, "study and instance UID needed");
    sqlite3_stmt *st = scoped_stmt(
        s, scope,
        "i.sop_uid = :sop AND studies.study_uid = :study"
        " AND (:series IS NULL OR series.series_uid = :series)",
        "", e);
    if (!st)
        return e ? e->code : ERR_DB;
    bind_named(st, ":sop", sop_uid);
    bind_named(st, ":study", study_uid);
    bind_named(st, ":series", series_uid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        instance_from_row(s, st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "find instance: %s",
                       sqlite3_errmsg(s->db));
    return err_set(e, ERR_NOTFOUND, "no such instance");
}

int store_list_instances(struct store *s, const struct store_scope *scope,
                         const char *study_uid, const char *series_uid,
                         struct store_instance **out, size_t *n,
                         struct err *e)
{
    *out = NULL;
    *n = 0;
    if (!study_uid)
        return err_set(e, ERR_INVALID, "study UID needed");
    sqlite3_stmt *st = scoped_stmt(
        s, scope,
        "studies.study_uid = :study"
        " AND (:series IS NULL OR series.series_uid = :series)",
        " ORDER BY series.series_number, series.id, i.instance_number, i.id",
        e);
    if (!st)
        return e ? e->code : ERR_DB;
    bind_named(st, ":study", study_uid);
    bind_named(st, ":series", series_uid);
    struct store_instance *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            struct store_instance *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                sqlite3_reset(st);
                return err_set(e, ERR_INTERNAL, "out of memory");
            }
            v = nv;
        }
        instance_from_row(s, st, &v[cnt++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return err_set(e, ERR_DB, "list instances: %s",
                       sqlite3_errmsg(s->db));
    }
    if (!cnt) {
        free(v);
        return err_set(e, ERR_NOTFOUND, "no such study or series");
    }
    *out = v;
    *n = cnt;
    return 0;
}
