/*
 * spool — the gateway's durable queue (see spool.h).  The order of a put
 * is what makes "acknowledge after durable" hold across kill -9: the
 * file's bytes are flushed, it is renamed to its content name, the
 * directory is flushed, and only then the row is committed.  A crash
 * before the commit leaves at most a file no row names (removed at the
 * next open); a row never names a file that is not whole.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../proto/dicom.h"
#include "../proto/log.h"

struct spool {
    char dir[1024];
    char files[1040];
    char send[1040];
    char tmp[1040];
    int64_t reserve;
    pthread_mutex_t lock;           /* guards db */
    sqlite3 *db;
};

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS instances("
    " id INTEGER PRIMARY KEY,"
    " study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,"
    " sop_uid TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,"
    " dataset_sha256 TEXT NOT NULL,"
    " transfer_syntax TEXT NOT NULL, has_pixels INTEGER NOT NULL,"
    " instance_number INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " conflicts INTEGER NOT NULL DEFAULT 0,"   /* sha256 refused at end */
    " send_sha256 TEXT NOT NULL DEFAULT '',"
    " send_size INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE(sop_uid, dataset_sha256));"
    "CREATE INDEX IF NOT EXISTS instances_state ON instances(state);"
    "CREATE TABLE IF NOT EXISTS studies("
    " study_uid TEXT PRIMARY KEY,"
    " priority INTEGER NOT NULL DEFAULT 3,"
    " expected INTEGER NOT NULL DEFAULT 0,"   /* last count announced */
    " preview INTEGER NOT NULL DEFAULT 0,"    /* enum spool_preview */
    " ended_ms INTEGER NOT NULL DEFAULT 0);"  /* an association ended */
    "CREATE TABLE IF NOT EXISTS figures("
    " k TEXT PRIMARY KEY, v);"
    /* --deidentify: original UID -> its replacement, for good. */
    "CREATE TABLE IF NOT EXISTS uid_map("
    " orig TEXT PRIMARY KEY, repl TEXT NOT NULL UNIQUE);";

static int db_err(struct spool *s, struct err *e, const char *what)
{
    int full = sqlite3_errcode(s->db) == SQLITE_FULL;
    return err_set(e, full ? ERR_TOOBIG : ERR_DB, "spool %s: %s", what,
                   sqlite3_errmsg(s->db));
}

/* sql prepared with its parameters bound by fmt, one letter each: i
 * int64, t text (NULL: SQL NULL), d double.  The caller holds s->lock
 * and finalizes.  NULL on failure. */
static sqlite3_stmt *prep(struct spool *s, const char *sql, const char *fmt,
                          va_list ap)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
        return NULL;
    for (int i = 1; *fmt; fmt++, i++) {
        if (*fmt == 'i') {
            sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
        } else if (*fmt == 'd') {
            sqlite3_bind_double(st, i, va_arg(ap, double));
        } else {
            const char *t = va_arg(ap, const char *);
            if (t)
                sqlite3_bind_text(st, i, t, -1, SQLITE_TRANSIENT);
        }
    }
    return st;
}

/* Locks s and prepares sql (parameters as for prep): the caller steps
 * it, then calls query_end.  NULL, unlocked and e set, on failure. */
static sqlite3_stmt *query(struct spool *s, struct err *e, const char *sql,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = prep(s, sql, fmt, ap);
    va_end(ap);
    if (!st) {
        db_err(s, e, "query");
        pthread_mutex_unlock(&s->lock);
    }
    return st;
}

static void query_end(struct spool *s, sqlite3_stmt *st)
{
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
}

/* Column col of the current row as text into dst[n] ("" for NULL). */
static void col_str(sqlite3_stmt *st, int col, char *dst, size_t n)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    strlcpy_h(dst, t ? t : "", n);
}

/* Runs one statement under the lock (see prep for fmt).  If out is not
 * NULL and a row comes (RETURNING), *out is its first column. */
static int run_sql(struct spool *s, struct err *e, int64_t *out,
                   const char *sql, const char *fmt, ...)
{
    va_list ap;
    int rc = 0, step;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = prep(s, sql, fmt, ap);
    va_end(ap);
    if (!st) {
        rc = db_err(s, e, "update");
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if (out)
            *out = sqlite3_column_int64(st, 0);
    if (step != SQLITE_DONE)
        rc = db_err(s, e, "update");
    query_end(s, st);
    return rc;
}

static int db_open(struct spool *s, int ro, struct err *e)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/spool.db", s->dir);
    int flags = ro ? SQLITE_OPEN_READONLY
                   : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (ro && access(path, R_OK))
        return err_set(e, ERR_NOTFOUND, "%s: no spool there", s->dir);
    if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_FULLMUTEX, NULL)) {
        int rc = err_set(e, ERR_DB, "open %s: %s", path,
                         s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        s->db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(s->db, 10000);
    if (ro)
        return 0;
    if (sqlite3_exec(s->db, "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = FULL;", NULL, NULL, NULL) ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, NULL))
        return db_err(s, e, "schema");
    /* Spools made before ended_ms: fails harmlessly when it exists. */
    sqlite3_exec(s->db, "ALTER TABLE studies ADD COLUMN ended_ms INTEGER"
                 " NOT NULL DEFAULT 0", NULL, NULL, NULL);
    return 0;
}

/* Everything in dir whose name fn says to drop. */
static void sweep(const char *dir, int (*drop)(struct spool *, const char *),
                  struct spool *s)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[1400];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || (drop && !drop(s, de->d_name)))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

/* 1 if no row that still needs the bytes names sha (a leftover of a
 * crash between rename and commit, or between done and unlink). */
static int unreferenced(struct spool *s, const char *sha)
{
    sqlite3_stmt *st;
    int used = 1;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM instances WHERE sha256 = ?"
                           " AND state <> 2", -1, &st, NULL))
        return 0;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    used = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return !used;
}

static struct spool *spool_new(const char *dir, struct err *e)
{
    struct spool *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    if (strlcpy_h(s->dir, dir, sizeof s->dir) >= sizeof s->dir) {
        err_set(e, ERR_TOOBIG, "spool path too long");
        free(s);
        return NULL;
    }
    snprintf(s->files, sizeof s->files, "%s/files", dir);
    snprintf(s->send, sizeof s->send, "%s/send", dir);
    snprintf(s->tmp, sizeof s->tmp, "%s/tmp", dir);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

struct spool *spool_open(const char *dir, int64_t reserve, struct err *e)
{
    struct spool *s = spool_new(dir, e);
    if (!s)
        return NULL;
    s->reserve = reserve;
    if (mkdir_p(s->files, 0700) || mkdir_p(s->send, 0700) ||
        mkdir_p(s->tmp, 0700)) {
        err_set(e, ERR_IO, "create %s: %s", dir, strerror(errno));
        spool_close(s);
        return NULL;
    }
    if (db_open(s, 0, e)) {
        spool_close(s);
        return NULL;
    }
    sweep(s->tmp, NULL, s);
    sweep(s->files, unreferenced, s);
    sweep(s->send, unreferenced, s);
    return s;
}

struct spool *spool_open_ro(const char *dir, struct err *e)
{
    struct spool *s = spool_new(dir, e);
    if (s && db_open(s, 1, e)) {
        spool_close(s);
        return NULL;
    }
    return s;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *spool_dir(const struct spool *s) { return s->dir; }
const char *spool_tmp_dir(const struct spool *s) { return s->tmp; }

static int fsync_path(const char *path, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_IO, "open %s: %s", path, strerror(errno));
    if (fsync(fd)) {
        int rc = err_set(e, errno == ENOSPC ? ERR_TOOBIG : ERR_IO,
                         "fsync %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

static int room_for(struct spool *s, int64_t size, struct err *e)
{
    struct statvfs v;
    if (statvfs(s->files, &v))
        return 0;
    int64_t free_b = (int64_t)v.f_bavail * (int64_t)v.f_frsize;
    if (free_b - size < s->reserve)
        return err_set(e, ERR_TOOBIG, "spool disk full: %lld bytes free, "
                       "%lld kept in reserve", (long long)free_b,
                       (long long)s->reserve);
    return 0;
}

/* Where the dataset begins: after the preamble, "DICM" and the file
 * meta group, whose length (0002,0000) comes first; 0 if no header. */
static uint64_t dataset_offset(const char *path)
{
    unsigned char h[144];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(h, 1, sizeof h, f) : 0;
    if (f)
        fclose(f);
    if (n < sizeof h || memcmp(h + 128, "DICM", 4) ||
        memcmp(h + 132, "\2\0\0\0UL\4\0", 8))
        return 0;
    return 144 + ((uint64_t)h[140] | (uint64_t)h[141] << 8 |
                  (uint64_t)h[142] << 16 | (uint64_t)h[143] << 24);
}

/* The row of (sop, dataset): 0 and its id, state and file's sha256, or
 * ERR_NOTFOUND. */
static int find_row(struct spool *s, const char *sop, const char *dsha,
                    int64_t *id, int *state, char sha[65])
{
    sqlite3_stmt *st;
    int rc = ERR_NOTFOUND;
    if (sqlite3_prepare_v2(s->db, "SELECT id, state, sha256 FROM instances"
                           " WHERE sop_uid = ? AND dataset_sha256 = ?", -1,
                           &st, NULL))
        return ERR_DB;
    sqlite3_bind_text(st, 1, sop, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dsha, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *state = sqlite3_column_int(st, 1);
        col_str(st, 2, sha, 65);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

static int insert_row(struct spool *s, const struct dcm_info *in,
                      const char *sha, const char *dsha, int64_t size,
                      int64_t *id, struct err *e)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO instances(study_uid,"
                           " series_uid, sop_uid, sha256, size,"
                           " transfer_syntax, has_pixels, received_ms,"
                           " instance_number, dataset_sha256)"
                           " VALUES (?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL))
        return db_err(s, e, "insert");
    sqlite3_bind_text(st, 1, in->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, in->series_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, in->sop_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, size);
    sqlite3_bind_text(st, 6, in->transfer_syntax, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, in->has_pixels);
    sqlite3_bind_int64(st, 8, now_ms());
    sqlite3_bind_int(st, 9, in->instance_number);
    sqlite3_bind_text(st, 10, dsha, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_err(s, e, "insert");
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

static void fill_item(struct spool *s, const struct dcm_info *in,
                      const char *sha, int64_t size, int64_t id,
                      struct spool_item *it)
{
    memset(it, 0, sizeof *it);
    it->id = id;
    strlcpy_h(it->study_uid, in->study_uid, sizeof it->study_uid);
    strlcpy_h(it->series_uid, in->series_uid, sizeof it->series_uid);
    strlcpy_h(it->sop_uid, in->sop_uid, sizeof it->sop_uid);
    strlcpy_h(it->sha256, sha, sizeof it->sha256);
    strlcpy_h(it->transfer_syntax, in->transfer_syntax,
              sizeof it->transfer_syntax);
    it->has_pixels = in->has_pixels;
    it->size = size;
    snprintf(it->path, sizeof it->path, "%s/%s", s->files, sha);
}

int spool_put(struct spool *s, const char *path, struct spool_item *item,
              int *fresh, struct err *e)
{
    struct dcm_info in;
    char sha[65], dsha[65], old[65], dst[1200];
    uint64_t size = 0, dsize = 0;
    int rc;

    *fresh = 0;
    /* The same instance is the same dataset: the file meta header that
     * DCMTK writes names the sending AE, so a resend from another AE
     * differs there only. */
    if ((rc = dicom_parse_file(path, &in, e)) ||
        (rc = sha256_file(path, sha, &size, e)) ||
        (rc = sha256_file_from(path, dataset_offset(path), dsha, &dsize,
                               e)) ||
        (rc = room_for(s, (int64_t)size, e)) ||
        (rc = fsync_path(path, e)))
        goto out;
    snprintf(dst, sizeof dst, "%s/%s", s->files, sha);
    /* Same bytes: one file (already whole and flushed, or being made
     * whole by the thread that wins the rename; both are durable before
     * either commits, since each fsyncs its own copy first). */
    if (rename(path, dst)) {
        rc = err_set(e, ERR_IO, "rename into %s: %s", s->files,
                     strerror(errno));
        goto out;
    }
    if (fsync_dir(s->files)) {
        rc = err_set(e, ERR_IO, "fsync %s: %s", s->files, strerror(errno));
        goto out;
    }

    int64_t id = 0;
    int state = 0;
    pthread_mutex_lock(&s->lock);
    rc = find_row(s, in.sop_uid, dsha, &id, &state, old);
    if (rc == ERR_NOTFOUND) {
        rc = insert_row(s, &in, sha, dsha, (int64_t)size, &id, e);
        *fresh = !rc;
    } else if (rc) {
        rc = db_err(s, e, "lookup");
    } else if (unreferenced(s, sha)) {
        /* Kept already (or sent): this copy is not needed. */
        unlink(dst);
    }
    pthread_mutex_unlock(&s->lock);
    if (!rc)
        fill_item(s, &in, *fresh ? sha : old, (int64_t)size, id, item);
    return rc;
out:
    unlink(path);
    return rc;
}

static void row_item(struct spool *s, sqlite3_stmt *st, struct spool_item *it)
{
    memset(it, 0, sizeof *it);
    it->id = sqlite3_column_int64(st, 0);
    col_str(st, 1, it->study_uid, sizeof it->study_uid);
    col_str(st, 2, it->series_uid, sizeof it->series_uid);
    col_str(st, 3, it->sop_uid, sizeof it->sop_uid);
    col_str(st, 4, it->sha256, sizeof it->sha256);
    it->size = sqlite3_column_int64(st, 5);
    col_str(st, 6, it->transfer_syntax, sizeof it->transfer_syntax);
    it->has_pixels = sqlite3_column_int(st, 7);
    it->state = sqlite3_column_int(st, 8);
    it->attempts = sqlite3_column_int(st, 9);
    it->priority = sqlite3_column_int(st, 10);
    snprintf(it->path, sizeof it->path, "%s/%s", s->files, it->sha256);
}

#define ITEM_COLS "i.id, i.study_uid, i.series_uid, i.sop_uid, i.sha256," \
                  " i.size, i.transfer_syntax, i.has_pixels, i.state," \
                  " i.attempts"

/* The first row of sql (ITEM_COLS then the priority; ?1 the text arg)
 * whose id is not in skip[0..nskip).  ERR_NOTFOUND if none. */
static int item_query(struct spool *s, const char *sql, const char *arg,
                      const int64_t *skip, int nskip,
                      struct spool_item *item, struct err *e)
{
    int rc = ERR_NOTFOUND;
    sqlite3_stmt *st = query(s, e, sql, arg ? "t" : "", arg);
    if (!st)
        return ERR_DB;
    while (rc && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int k;
        for (k = 0; k < nskip && skip[k] != id; k++)
            ;
        if (k == nskip) {
            row_item(s, st, item);
            rc = 0;
        }
    }
    query_end(s, st);
    return rc;
}

int spool_next(struct spool *s, const int64_t *skip, int nskip,
               struct spool_item *item, struct err *e)
{
    /* Few rows are skipped (those being sent): step past them. */
    return item_query(s, "SELECT " ITEM_COLS ", coalesce(s.priority, 3) AS p"
                      " FROM instances i JOIN studies s"
                      " ON s.study_uid = i.study_uid"
                      " WHERE i.state IN (0, 1) AND s.expected > 0"
                      " ORDER BY p, i.id", NULL, skip, nskip, item, e);
}


int spool_set_state(struct spool *s, int64_t id, int state,
                    const char *reason, struct err *e)
{
    return run_sql(s, e, NULL, "UPDATE instances SET state = ?1,"
                   " reason = coalesce(?2, reason) WHERE id = ?3", "iti",
                   (int64_t)state, reason, id);
}

int spool_attempt(struct spool *s, int64_t id, int conflict, struct err *e)
{
    int64_t n = 0;
    int rc = run_sql(s, e, &n, conflict
                     ? "UPDATE instances SET conflicts = conflicts + 1"
                       " WHERE id = ?1 RETURNING conflicts"
                     : "UPDATE instances SET attempts = attempts + 1"
                       " WHERE id = ?1 RETURNING attempts", "i", id);
    return rc ? rc : (int)n;
}

int spool_done(struct spool *s, int64_t id, struct err *e)
{
    char sha[65] = "";
    sqlite3_stmt *st;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (sqlite3_prepare_v2(s->db, "UPDATE instances SET state = 2,"
                           " reason = '' WHERE id = ? RETURNING sha256", -1,
                           &st, NULL)) {
        rc = db_err(s, e, "done");
    } else {
        sqlite3_bind_int64(st, 1, id);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW)
            col_str(st, 0, sha, sizeof sha);
        if (step != SQLITE_DONE)
            rc = db_err(s, e, "done");
        sqlite3_finalize(st);
    }
    if (!rc && sha[0] && unreferenced(s, sha)) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", s->files, sha);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", s->send, sha);
        unlink(p);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int spool_requeue(struct spool *s, struct err *e)
{
    return run_sql(s, e, NULL, "UPDATE instances SET state = 0"
                   " WHERE state = 1", "");
}

int spool_send_path(const struct spool *s, const struct spool_item *item,
                    char *out, size_t n)
{
    int w = snprintf(out, n, "%s/%s", s->send, item->sha256);
    return w < 0 || (size_t)w >= n ? ERR_TOOBIG : 0;
}

int spool_send_get(struct spool *s, int64_t id, char sha[65], int64_t *size,
                   struct err *e)
{
    sha[0] = 0;
    *size = 0;
    sqlite3_stmt *st = query(s, e, "SELECT send_sha256, send_size FROM"
                             " instances WHERE id = ?1", "i", id);
    if (!st)
        return ERR_DB;
    if (sqlite3_step(st) == SQLITE_ROW) {
        col_str(st, 0, sha, 65);
        *size = sqlite3_column_int64(st, 1);
    }
    query_end(s, st);
    return 0;
}

int spool_send_set(struct spool *s, int64_t id, const char *sha,
                   int64_t size, struct err *e)
{
    return run_sql(s, e, NULL, "UPDATE instances SET send_sha256 = ?1,"
                   " send_size = ?2 WHERE id = ?3", "tii", sha, size, id);
}

int spool_set_priority(struct spool *s, const char *study_uid, int priority,
                       struct err *e)
{
    int64_t changed = 0;
    int rc = run_sql(s, e, &changed, "INSERT INTO studies(study_uid,"
                     " priority) VALUES (?1, ?2) ON CONFLICT(study_uid)"
                     " DO UPDATE SET priority = ?2 WHERE priority <> ?2"
                     " RETURNING 1", "ti", study_uid, (int64_t)priority);
    return rc ? rc : (int)changed;
}

int spool_pending_studies(struct spool *s, char (*uids)[65], int max,
                          struct err *e)
{
    sqlite3_stmt *st = query(s, e, "SELECT DISTINCT i.study_uid"
                             " FROM instances i LEFT JOIN studies s"
                             " ON s.study_uid = i.study_uid"
                             " WHERE i.state IN (0, 1)"
                             " AND coalesce(s.priority, 3) <> ?1"
                             " ORDER BY i.study_uid", "i",
                             (int64_t)SPOOL_STAT);
    if (!st)
        return ERR_DB;
    int n = 0;
    while (n < max && sqlite3_step(st) == SQLITE_ROW)
        col_str(st, 0, uids[n++], 65);
    query_end(s, st);
    return n;
}


int spool_counts(struct spool *s, struct spool_counts *c, struct err *e)
{
    memset(c, 0, sizeof *c);
    sqlite3_stmt *st = query(s, e, "SELECT state, count(*), sum(size)"
                             " FROM instances GROUP BY state", "");
    if (!st)
        return ERR_DB;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(st, 1);
        int64_t b = sqlite3_column_int64(st, 2);
        switch (sqlite3_column_int(st, 0)) {
        case SPOOL_WAITING: c->waiting = n; c->bytes_waiting += b; break;
        case SPOOL_IN_FLIGHT: c->in_flight = n; c->bytes_waiting += b; break;
        case SPOOL_DONE: c->done = n; c->bytes_done = b; break;
        default: c->failed = n; break;
        }
    }
    query_end(s, st);
    if (!(st = query(s, e, "SELECT k, v FROM figures", "")))
        return ERR_DB;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        if (!strcmp(k, "rate"))
            c->rate = sqlite3_column_double(st, 1);
        else if (!strcmp(k, "updated_ms"))
            c->updated_ms = sqlite3_column_int64(st, 1);
        else if (!strcmp(k, "last_error"))
            col_str(st, 1, c->last_error, sizeof c->last_error);
    }
    query_end(s, st);
    c->eta_s = c->rate > 0 ? (int64_t)((double)c->bytes_waiting / c->rate)
                           : -1;
    return 0;
}

int spool_set_figures(struct spool *s, double rate,
                      const char *last_error, struct err *e)
{
    return run_sql(s, e, NULL, "INSERT OR REPLACE INTO figures(k, v)"
                   " VALUES ('rate', ?1), ('updated_ms', ?2),"
                   " ('last_error', ?3)", "dit", rate, now_ms(),
                   last_error ? last_error : "");
}

int spool_each_failed(struct spool *s,
                      int (*fn)(void *arg, const char *sop_uid,
                                const char *study_uid, const char *reason,
                                int attempts),
                      void *arg, struct err *e)
{
    sqlite3_stmt *st = query(s, e, "SELECT sop_uid, study_uid, reason,"
                             " attempts FROM instances WHERE state = 3"
                             " ORDER BY id", "");
    if (!st)
        return ERR_DB;
    while (sqlite3_step(st) == SQLITE_ROW &&
           !fn(arg, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1),
               (const char *)sqlite3_column_text(st, 2),
               sqlite3_column_int(st, 3)))
        ;
    query_end(s, st);
    return 0;
}

int spool_each_study(struct spool *s, int64_t quiet_ms,
                     int (*fn)(void *arg, const struct spool_study *st),
                     void *arg, struct err *e)
{
    sqlite3_stmt *st = query(s, e, "SELECT i.study_uid, count(*),"
                             " coalesce(s.expected, 0),"
                             " coalesce(s.priority, 3),"
                             " coalesce(s.preview, 0) AS pv,"
                             " (max(i.received_ms) <= ?1"
                             " OR max(i.received_ms) <="
                             " coalesce(s.ended_ms, 0)) AS settled"
                             " FROM instances i LEFT JOIN studies s"
                             " ON s.study_uid = i.study_uid"
                             " GROUP BY i.study_uid"
                             " HAVING (settled AND (count(*) <>"
                             " coalesce(s.expected, 0) OR pv <> ?2))"
                             " OR pv = ?3", "iii", now_ms() - quiet_ms,
                             (int64_t)SPOOL_PREVIEW_FINAL,
                             (int64_t)SPOOL_PREVIEW_NONE);
    if (!st)
        return ERR_DB;
    /* Collected first: fn may call back into the spool. */
    struct spool_study list[32];
    int n = 0;
    while (n < 32 && sqlite3_step(st) == SQLITE_ROW) {
        struct spool_study *y = &list[n++];
        col_str(st, 0, y->study_uid, sizeof y->study_uid);
        y->count = sqlite3_column_int64(st, 1);
        y->expected = sqlite3_column_int64(st, 2);
        y->priority = sqlite3_column_int(st, 3);
        y->preview = sqlite3_column_int(st, 4);
        y->settled = sqlite3_column_int(st, 5);
    }
    query_end(s, st);
    for (int i = 0; i < n && !fn(arg, &list[i]); i++)
        ;
    return 0;
}

/* Sets one integer column of a study's row (made if missing). */
static int study_set(struct spool *s, const char *col, const char *study,
                     int64_t v, struct err *e)
{
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO studies(study_uid, %s)"
             " VALUES (?1, ?2) ON CONFLICT(study_uid) DO UPDATE SET"
             " %s = ?2", col, col);
    return run_sql(s, e, NULL, sql, "ti", study, v);
}

int spool_set_expected(struct spool *s, const char *study_uid, int64_t n,
                       struct err *e)
{
    return study_set(s, "expected", study_uid, n, e);
}

int spool_study_ended(struct spool *s, const char *study_uid,
                      struct err *e)
{
    return study_set(s, "ended_ms", study_uid, now_ms(), e);
}

int spool_set_preview(struct spool *s, const char *study_uid, int preview,
                      struct err *e)
{
    return study_set(s, "preview", study_uid, preview, e);
}

int spool_middle(struct spool *s, const char *study_uid,
                 struct spool_item *item, struct err *e)
{
    return item_query(s, "SELECT " ITEM_COLS ", 3"
                      " FROM instances i WHERE i.study_uid = ?1"
                      " AND i.has_pixels AND i.state <> 2"
                      " ORDER BY i.series_uid, i.instance_number, i.id"
                      " LIMIT 1 OFFSET (SELECT count(*) / 2 FROM"
                      " instances WHERE study_uid = ?1 AND has_pixels"
                      " AND state <> 2)", study_uid, NULL, 0, item, e);
}

int spool_map_uid(void *spool, const char *orig, char repl[65],
                  struct err *e)
{
    struct spool *s = spool;
    char fresh[65];
    int rc = dicom_uid_new(fresh, e);
    if (rc)
        return rc;
    /* Insert-or-keep then read, under the lock: two associations mapping
     * the same UID at once both get the one that was committed. */
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL;
    rc = ERR_DB;
    if (!sqlite3_prepare_v2(s->db, "INSERT INTO uid_map(orig, repl)"
                            " VALUES (?1, ?2) ON CONFLICT(orig) DO UPDATE"
                            " SET orig = orig RETURNING repl", -1, &st,
                            NULL)) {
        sqlite3_bind_text(st, 1, orig, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, fresh, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            col_str(st, 0, repl, 65);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ERR_DB;
        }
    }
    if (rc)
        db_err(s, e, "uid map");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int spool_uid_lookup(struct spool *s, const char *uid, char other[65],
                     int *is_orig, struct err *e)
{
    sqlite3_stmt *st = query(s, e, "SELECT repl, 1 FROM uid_map"
                             " WHERE orig = ?1 UNION ALL SELECT orig, 0"
                             " FROM uid_map WHERE repl = ?1", "t", uid);
    if (!st)
        return ERR_DB;
    int rc = ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        col_str(st, 0, other, 65);
        *is_orig = sqlite3_column_int(st, 1);
        rc = 0;
    }
    query_end(s, st);
    if (rc)
        err_set(e, rc, "%s: not in the spool's UID map", uid);
    return rc;
}
