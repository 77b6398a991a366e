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
 * The order of a store is what makes it safe: the file's data is
 * flushed, then it is renamed into blobs/, then the directory flush and
 * the index commit run side by side, and only when both are done may the
 * instance be acknowledged.  A name under blobs/ always shows complete
 * bytes; a crash may leave a blob nobody points at (harmless:
 * content-addressed, the same bytes arriving again reuse it) or an index
 * row whose name was lost (never acknowledged; store_recover removes
 * it).  The budget per new instance is one file sync, two directory
 * syncs and one WAL commit, but only two waits one after the other: the
 * file's flush runs on a helper thread while the file is parsed and
 * hashed, the directories' while the index commits (store_put_file).
 *
 * Scoping: every read of the index goes through the caller's scope
 * (store.h), applied by store_scope_sql()/store_scope_bind(); the rule
 * itself is access.c's.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../proto/log.h"
#include "jobs.h"
#include "schema.h"
#include "store_int.h"

#define STORE_DEFAULT_MAX (2ULL << 30)
#define STORE_BUSY_MS 10000

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

int store_scope_sql(const struct store_scope *sc, char *out, size_t n)
{
    int w = snprintf(out, n, "(%s)", sc->sql ? sc->sql : "0");
    return (w < 0 || (size_t)w >= n) ? ERR_TOOBIG : 0;
}

int store_scope_bind(sqlite3_stmt *st, const struct store_scope *sc,
                     struct err *e)
{
    for (int k = 0; k < sc->nparams; k++) {
        int i = sqlite3_bind_parameter_index(st, sc->params[k].name);
        if (i <= 0)
            return err_set(e, ERR_INTERNAL, "scope: no %s in its clause",
                           sc->params[k].name);
        sqlite3_bind_int64(st, i, sc->params[k].value);
    }
    return 0;
}

int store_study_visible(struct store *s, const struct store_scope *sc,
                        const char *study_uid, int64_t clinic_id)
{
    char where[2048], sql[3072];
    sqlite3_stmt *st;

    if (store_scope_sql(sc, where, sizeof where) ||
        snprintf(sql, sizeof sql, "SELECT 1 FROM (SELECT :study AS"
                 " study_uid, :owner AS clinic_id) AS studies WHERE %s",
                 where) >= (int)sizeof sql ||
        sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":study"),
                      study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":owner"),
                       clinic_id);
    struct err e = { 0, "" };
    int ok = !store_scope_bind(st, sc, &e) && sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return ok;
}

/* ---- WAL checkpoints ---------------------------------------------------- */

/* The thread of store_checkpoint_start (see store.h).  s's commits tell
 * it, through SQLite's WAL hook, how many pages the WAL holds; the hook
 * runs on the committing thread after the write lock is released, so it
 * only takes the mutex (never held across I/O) and signals.  The thread
 * checkpoints on its own connection, which holds no transaction between
 * checkpoints (a read would pin the WAL and make every later checkpoint
 * stop at it). */
struct store_ckpt {
    pthread_t thread;
    sqlite3 *db;                /* the thread's own connection */
    struct store_ckpt_cfg cfg;
    int64_t page_size;
    pthread_mutex_t mu;         /* guards what follows */
    pthread_cond_t cv;          /* due or stop set; the clock: monotonic */
    int due;                    /* the WAL passed cfg.wal_pages */
    int idle;                   /* the thread waits without a deadline */
    int stop;
    int wal_pages;              /* last known size of the WAL */
    uint64_t commits;           /* s's commits so far */
    double last_commit;         /* now_mono() of the last one */
    double last_truncate;       /* ... of the last TRUNCATE attempt */
};

static int ckpt_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store_ckpt *c = arg;

    (void)db;
    (void)name;
    pthread_mutex_lock(&c->mu);
    c->wal_pages = pages;
    c->commits++;
    c->last_commit = now_mono();
    if (pages >= c->cfg.wal_pages)
        c->due = 1;
    /* A WAL that just became large needs the thread's clock started. */
    if (c->due || (c->idle && pages * c->page_size >= c->cfg.wal_max_bytes))
        pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

/* One checkpoint on the thread's connection, without the mutex held.
 * SQLITE_BUSY is no failure: PASSIVE gets it when another connection is
 * checkpointing, TRUNCATE when a writer or a reader is in the way (it
 * then did what it could, like PASSIVE). */
static void ckpt_run(struct store_ckpt *c, int mode)
{
    const char *name = mode == SQLITE_CHECKPOINT_PASSIVE ? "PASSIVE" :
                       "TRUNCATE";
    int log = -1, done = -1;

    pthread_mutex_lock(&c->mu);
    uint64_t commits = c->commits;
    pthread_mutex_unlock(&c->mu);
    double t = now_mono();
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, mode, &log, &done);
    t = now_mono() - t;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        log_warn("store: %s WAL checkpoint: %s", name,
                 sqlite3_errmsg(c->db));
        return;
    }
    log_debug("store: %s WAL checkpoint%s: %d of %d pages in %.1f ms", name,
              rc == SQLITE_BUSY ? " (busy)" : "", done, log, t * 1e3);
    pthread_mutex_lock(&c->mu);
    if (c->commits == commits && log >= 0)
        c->wal_pages = log;     /* else a newer count came from the hook */
    pthread_mutex_unlock(&c->mu);
}

static void ckpt_truncate(struct store_ckpt *c)
{
    /* Most pages are copied by PASSIVE, writers not held; TRUNCATE then
     * holds them only for what arrived in between and the truncation. */
    ckpt_run(c, SQLITE_CHECKPOINT_PASSIVE);
    ckpt_run(c, SQLITE_CHECKPOINT_TRUNCATE);
}

static void *ckpt_main(void *arg)
{
    struct store_ckpt *c = arg;

    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (c->due) {
            c->due = 0;
            pthread_mutex_unlock(&c->mu);
            ckpt_run(c, SQLITE_CHECKPOINT_PASSIVE);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (c->wal_pages * c->page_size < c->cfg.wal_max_bytes) {
            c->idle = 1;
            pthread_cond_wait(&c->cv, &c->mu);
            c->idle = 0;
            continue;
        }
        /* A large WAL: truncate it once s has been quiet for quiet_ms
         * (and, if an attempt was refused, quiet_ms after that one). */
        double since = c->last_commit > c->last_truncate ? c->last_commit :
                       c->last_truncate;
        double at = since + c->cfg.quiet_ms / 1e3, now = now_mono();
        if (now >= at) {
            c->last_truncate = now;
            pthread_mutex_unlock(&c->mu);
            ckpt_truncate(c);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double wait = at - now;
        ts.tv_sec += (time_t)wait;
        ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    ckpt_truncate(c);           /* a clean stop leaves the WAL empty */
    return NULL;
}

/* The thread's connection to s's database, opened through SQLite only
 * (API-NOTES: a second open() and close() of the file by hand would drop
 * the process's locks on it). */
static sqlite3 *ckpt_open(struct store *s, int64_t *page_size, struct err *e)
{
    const char *path = sqlite3_db_filename(s->db, "main");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) ||
        sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) ||
        sqlite3_step(st) != SQLITE_ROW) {
        err_set(e, ERR_DB, "checkpoint connection to %s: %s", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_finalize(st);
        sqlite3_close(db);
        return NULL;
    }
    *page_size = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);       /* ends the read: nothing stays open */
    return db;
}

int store_checkpoint_start(struct store *s, const struct store_ckpt_cfg *cfg,
                           struct err *e)
{
    if (s->ckpt)
        return err_set(e, ERR_INTERNAL, "checkpoint thread already started");
    struct store_ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(e, ERR_INTERNAL, "out of memory");
    if (cfg)
        c->cfg = *cfg;
    if (c->cfg.wal_pages <= 0)
        c->cfg.wal_pages = 1000;
    if (c->cfg.wal_max_bytes <= 0)
        c->cfg.wal_max_bytes = 64LL << 20;
    if (c->cfg.quiet_ms <= 0)
        c->cfg.quiet_ms = 1000;
    c->db = ckpt_open(s, &c->page_size, e);
    if (!c->db) {
        free(c);
        return ERR_DB;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->mu, NULL);
    int rc = pthread_create(&c->thread, NULL, ckpt_main, c);
    if (rc) {
        err_set(e, ERR_INTERNAL, "checkpoint thread: %s", strerror(rc));
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        sqlite3_close(c->db);
        free(c);
        return ERR_INTERNAL;
    }
    sqlite3_wal_autocheckpoint(s->db, 0);
    sqlite3_wal_hook(s->db, ckpt_hook, c);
    s->ckpt = c;
    return 0;
}

/* Stop and join the thread (it runs its last checkpoint first), before
 * s's connection closes. */
static void ckpt_stop(struct store *s)
{
    struct store_ckpt *c = s->ckpt;

    if (!c)
        return;
    sqlite3_wal_hook(s->db, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
    s->ckpt = NULL;
}

/* ---- open / close ------------------------------------------------------- */

/* SQLite's own busy handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10 ...
 * milliseconds between tries.  Our writers are threads of one process
 * whose transactions last well under a millisecond (plus the WAL flush),
 * so a writer that finds the lock taken would sleep far longer than it
 * waits: poll every 50 microseconds at first, 1 ms after the first
 * hundred tries, and give up after STORE_BUSY_MS like before. */
static int busy_wait(void *arg, int tries)
{
    struct store *s = arg;
    int64_t now = now_ms();

    if (tries == 0)
        s->busy_since = now;
    else if (now - s->busy_since > STORE_BUSY_MS)
        return 0;
    usleep(tries < 100 ? 50 : 1000);
    return 1;
}

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
    sqlite3_busy_handler(s->db, busy_wait, s);
    sqlite3_extended_result_codes(s->db, 1);
    char *msg = NULL;
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = FULL;"
                     "PRAGMA foreign_keys = ON;"
                     "PRAGMA journal_size_limit = 67108864;"
                     /* 16 MiB of page cache, not 2: a case sent to
                      * 1,000 specialists dirties about as many pages, and
                      * a smaller cache spills them to the WAL before
                      * COMMIT (a perf profile: 5 % of the loop). */
                     "PRAGMA cache_size = -16384;",
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
    ckpt_stop(s);
    for (int i = 0; i < s->ncache; i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    if (s->db)
        sqlite3_close(s->db);
    jobs_stop(s->io);
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

/* A flush of one file or directory, run on the store's helper thread
 * while the caller goes on (see store_put_file), or inline when there is
 * no helper. */
struct sync_task {
    struct job job;
    int fd;                     /* -1: nothing started */
    int dir;                    /* fsync (a directory) vs fdatasync */
    int rc, err;
    char path[4096];            /* for the error message */
};

static void sync_work(void *ctx, void *arg)
{
    struct sync_task *t = arg;

    (void)ctx;
    t->rc = t->dir ? fsync(t->fd) : fdatasync(t->fd);
    t->err = t->rc ? errno : 0;
}

static struct jobs *io_pool(struct store *s)
{
    if (!s->io && !s->io_failed) {
        struct jobs_cfg cfg = { .threads = 2, .name = "store-io" };
        struct err e = { 0, "" };
        s->io = jobs_start(&cfg, &e);
        if (!s->io) {
            s->io_failed = 1;
            log_warn("store: no helper thread (%s); syncing inline", e.msg);
        }
    }
    return s->io;
}

/* Open path and start flushing it.  On an error nothing is started and
 * sync_finish() is a no-op. */
static int sync_start(struct store *s, struct sync_task *t, const char *path,
                      int dir, struct err *e)
{
    t->fd = -1;
    t->dir = dir;
    t->rc = t->err = 0;
    strlcpy_h(t->path, path, sizeof t->path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return err_set(e, ERR_IO, "open %s: %s", path, strerror(errno));
    t->fd = fd;
    struct jobs *io = io_pool(s);
    if (io)
        jobs_submit(io, &t->job, sync_work, NULL, t);
    else
        sync_work(NULL, t);
    return 0;
}

/* Wait for the flush started by sync_start; 0 once path is on disk. */
static int sync_finish(struct store *s, struct sync_task *t, struct err *e)
{
    if (t->fd < 0)
        return 0;
    if (s->io)
        jobs_wait(s->io, &t->job);
    close(t->fd);
    t->fd = -1;
    if (t->rc)
        return err_set(e, ERR_IO, "%s %s: %s", t->dir ? "fsync" :
                       "fdatasync", t->path, strerror(t->err));
    return 0;
}

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

/* The two directories that make a blob's name: blobs/ab/cd (its entry)
 * and blobs/ab (the entry of cd, which may be new).  The first level
 * (blobs/ab) is made at store_open, durably. */
struct name_sync {
    struct sync_task dir[2];
};

/* Start flushing both directories of sha's name (see name_sync).  Both
 * are flushed every time, not only when a directory is new: another
 * thread may have made blobs/ab/cd a moment ago and still be flushing
 * its entry, and what this put acknowledges must not depend on that. */
static int name_sync_start(struct store *s, struct name_sync *ns,
                           const char *sha, struct err *e)
{
    char l1[4096], l2[4096];

    ns->dir[0].fd = ns->dir[1].fd = -1;
    if (fanout_path(s, sha, 1, l1) || fanout_path(s, sha, 2, l2))
        return err_set(e, ERR_TOOBIG, "blob path too long");
    int rc = sync_start(s, &ns->dir[0], l2, 1, e);
    return rc ? rc : sync_start(s, &ns->dir[1], l1, 1, e);
}

static int name_sync_finish(struct store *s, struct name_sync *ns,
                            struct err *e)
{
    int rc = sync_finish(s, &ns->dir[0], e);
    int rc2 = sync_finish(s, &ns->dir[1], rc ? NULL : e);
    return rc ? rc : rc2;
}

/* Move the temp file to its blob path, or drop it if the blob is already
 * there.  `data` is the flush of tmp's data that the caller started; it
 * is finished here, before the rename, so a blob name never shows
 * incomplete bytes.  On success the flushes of the blob's name have been
 * started in `name`: the caller finishes them (name_sync_finish) before
 * acknowledging.  The temp file is gone afterwards either way. */
static int blob_place(struct store *s, const char *tmp, const char *sha,
                      uint64_t size, struct sync_task *data,
                      struct name_sync *name, struct err *e)
{
    char path[4096], dir[4096];
    int rc;

    name->dir[0].fd = name->dir[1].fd = -1;
    if (store_blob_path(s, sha, path) || fanout_path(s, sha, 2, dir)) {
        sync_finish(s, data, NULL);
        unlink(tmp);
        return err_set(e, ERR_TOOBIG, "blob path too long");
    }

    struct stat st;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size == size) {
        /* The same bytes are already there (an orphan from a crash, or
         * another thread's store of them): keep that copy, but make sure
         * its name is durable before the index points at it. */
        sync_finish(s, data, NULL);
        unlink(tmp);
        return name_sync_start(s, name, sha, e);
    }
    /* A new fan-out directory's own name is flushed with the blob's
     * (name_sync_start), after the rename. */
    if (mkdir(dir, 0700) && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "mkdir %s: %s", dir, strerror(errno));
        sync_finish(s, data, NULL);
        unlink(tmp);
        return rc;
    }
    if ((rc = sync_finish(s, data, e))) {
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path)) {
        rc = err_set(e, ERR_IO, "rename %s: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return name_sync_start(s, name, sha, e);
}

/* An instance's blob and the clinic that owns its study. */
static const char SQL_SOP_SHA[] =
    "SELECT i.sha256, st.clinic_id FROM instances i"
    " JOIN series se ON se.id = i.series_ref"
    " JOIN studies st ON st.id = se.study_ref WHERE i.sop_uid = ?1";

/* The sha256 of the indexed instance sop_uid into sha, and the clinic
 * owning its study into *owner: 1 if found, 0 if not, or an error. */
static int sop_lookup(struct store *s, const char *sop_uid, char sha[65],
                      int64_t *owner, struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, SQL_SOP_SHA, e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, sop_uid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_col(sha, 65, st, 0);
        *owner = sqlite3_column_int64(st, 1);
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "lookup %s: %s", sop_uid,
                       sqlite3_errmsg(s->db));
    return 0;
}

/* The refusal of an instance that would write into another clinic's
 * study (see store_put_file).  The message names only the sender's own
 * study UID: callers audit it, and answer the peer no more than
 * "refused". */
static int refuse(const struct dcm_info *in, struct err *e)
{
    return err_set(e, ERR_FORBIDDEN, "refused: study %s", in->study_uid);
}

/* The clinics owning the study and the series the instance names (NULL
 * when new). */
static const char SQL_OWNERS[] =
    "SELECT (SELECT clinic_id FROM studies WHERE study_uid = ?1),"
    " (SELECT st.clinic_id FROM series se"
    "  JOIN studies st ON st.id = se.study_ref WHERE se.series_uid = ?2)";

/* 0 if the writer's clinic may add `in` to the index: its study and its
 * series are new or the clinic's own (clinic 0, "none", owns the studies
 * of unmapped AEs).  ERR_FORBIDDEN otherwise. */
static int owner_check(struct store *s, const struct dcm_info *in,
                       int64_t clinic, struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, SQL_OWNERS, e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, in->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, in->series_uid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int foreign = 0;
    for (int col = 0; rc == SQLITE_ROW && col < 2; col++)
        if (sqlite3_column_type(st, col) != SQLITE_NULL &&
            sqlite3_column_int64(st, col) != clinic)
            foreign = 1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return err_set(e, ERR_DB, "owner of %s: %s", in->study_uid,
                       sqlite3_errmsg(s->db));
    return foreign ? refuse(in, e) : 0;
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
    "SELECT id, modalities FROM studies WHERE study_uid = ?1";
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
    int64_t study_id = 0, series_id = 0, patient_id = 0;
    char mods[256] = "", newmods[256];
    int rc, new_series = 0;
    sqlite3_stmt *st;

    if ((rc = exec(s, "BEGIN IMMEDIATE", e)))
        return rc;
    /* Checked again under the write lock: nobody can make the study
     * another clinic's between this check and the insert. */
    if ((rc = owner_check(s, in, clinic, e)))
        goto fail_rc;

    /* study */
    if (!(st = store_stmt(s, SQL_STUDY_GET, e)))
        goto fail;
    sqlite3_bind_text(st, 1, in->study_uid, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        study_id = sqlite3_column_int64(st, 0);
        copy_col(mods, sizeof mods, st, 1);
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
    int64_t owner = 0;
    log_info("store: %s was indexed by another writer meanwhile",
             res->info.sop_uid);
    int rc = sop_lookup(s, res->info.sop_uid, existing, &owner, e);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return err_set(e, ERR_DB, "index: %s vanished after a conflict",
                       res->info.sop_uid);
    if (owner != (src ? src->clinic_id : 0))
        return refuse(&res->info, e);
    if (!strcmp(existing, res->sha256)) {
        res->outcome = STORE_DUPLICATE;
        return 0;
    }
    char blob[4096];
    store_blob_path(s, res->sha256, blob);
    return conflict_keep(s, blob, existing, src, res, e);
}

/* The file's SHA-256, computed on a helper thread while the caller
 * parses it. */
struct hash_task {
    struct job job;
    const char *path;
    char sha[65];
    uint64_t size;
    int rc;
    struct err e;
};

static void hash_work(void *ctx, void *arg)
{
    struct hash_task *t = arg;

    (void)ctx;
    t->rc = sha256_file(t->path, t->sha, &t->size, &t->e);
}

static int parse_check(const char *tmp_path, struct dcm_info *info,
                       struct err *e)
{
    int rc = dicom_parse_file(tmp_path, info, e);
    if (rc) {
        if (rc == ERR_IO || rc == ERR_INTERNAL)
            return rc;
        if (e)
            e->code = ERR_INVALID;
        return ERR_INVALID;
    }
    /* The parser checks these too; the index relies on them. */
    if (!dicom_uid_valid(info->study_uid) ||
        !dicom_uid_valid(info->series_uid) ||
        !dicom_uid_valid(info->sop_uid) ||
        !dicom_uid_valid(info->sop_class_uid))
        return err_set(e, ERR_INVALID, "missing or malformed UID");
    return 0;
}

/* Parse, check and hash the temp file into res (hash and parse side by
 * side when there is a helper thread). */
static int put_check(struct store *s, const char *tmp_path,
                     struct store_result *res, struct err *e)
{
    struct hash_task h = { .path = tmp_path };
    struct jobs *io = io_pool(s);

    if (io)
        jobs_submit(io, &h.job, hash_work, NULL, &h);
    int rc = parse_check(tmp_path, &res->info, e);
    if (io)
        jobs_wait(io, &h.job);
    else if (!rc)
        hash_work(NULL, &h);
    if (rc)
        return rc;
    if (h.rc) {
        if (e)
            *e = h.e;
        return h.rc;
    }
    memcpy(res->sha256, h.sha, sizeof res->sha256);
    res->size = h.size;
    /* Checked again on the bytes hashed: the file may have grown. */
    if (res->size > s->max_instance)
        return err_set(e, ERR_TOOBIG, "instance above the size limit");
    return 0;
}

/* The blob of an instance already indexed: its bytes were flushed before
 * its rename, and its name is flushed here once more, so that what is
 * acknowledged as a duplicate is durable even while the first store of it
 * (on another thread) is still finishing its own directory flushes. */
static int sync_blob_name(struct store *s, const char *sha, struct err *e)
{
    struct name_sync ns;
    int rc = name_sync_start(s, &ns, sha, e);
    int rc2 = name_sync_finish(s, &ns, rc ? NULL : e);
    return rc ? rc : rc2;
}

/*
 * The order of a put, and what runs side by side (the helpers are the
 * store's `io` pool of two threads; the rest is the calling thread):
 *
 *   helper: fdatasync(tmp) --------------.
 *   helper: hash ----------.             |
 *   caller: parse, wait <--'             |
 *           look up the UID,             |
 *           mkdir blobs/ab/cd if new     |
 *                      wait for it <-----'
 *           rename(tmp, blobs/ab/cd/<sha>)
 *   helpers: fsync(blobs/ab/cd), fsync(blobs/ab) --.
 *   caller: BEGIN .. COMMIT (the WAL's fsync,      |
 *           synchronous=FULL)                      |
 *                      wait for both <-------------'
 *           return 0: the caller may acknowledge
 *
 * Why the directory flushes may run alongside the commit: the blob's
 * bytes are on disk before its name exists (fdatasync, then rename), so
 * any name that survives a crash shows a complete file.  If the crash
 * comes after the commit but before the directory flushes, the index may
 * have a row whose blob name was lost; store_recover() removes such rows
 * at the next start.  That loses nothing acknowledged: this function
 * returns (and only then may the caller acknowledge) after the flushes
 * and the commit have all finished.  Other connections see the row only
 * once it is committed, which is after the rename, so a reader never
 * finds a row without its file.  A second store of the same instance
 * that finds the row meanwhile flushes the name itself before it answers
 * "duplicate" (sync_blob_name).
 */
int store_put_file(struct store *s, const char *tmp_path,
                   const struct store_source *src, struct store_result *res,
                   struct err *e)
{
    struct sync_task data;
    struct name_sync name;
    int rc;

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
    if ((rc = sync_start(s, &data, tmp_path, 0, e))) {
        unlink(tmp_path);
        return rc;
    }
    if ((rc = put_check(s, tmp_path, res, e))) {
        sync_finish(s, &data, NULL);
        unlink(tmp_path);
        return rc;
    }

    /* Another clinic's instance, study or series is refused before its
     * bytes reach blobs/ (and again in the index transaction, which is
     * what decides). */
    char existing[65];
    int64_t owner = 0, clinic = src ? src->clinic_id : 0;
    rc = sop_lookup(s, res->info.sop_uid, existing, &owner, e);
    if (rc == 1 && owner != clinic)
        rc = refuse(&res->info, e);
    else if (rc == 0)
        rc = owner_check(s, &res->info, clinic, e);
    if (rc != 0) {
        sync_finish(s, &data, NULL);
        if (rc < 0) {
            unlink(tmp_path);
            return rc;
        }
        if (strcmp(existing, res->sha256))
            return conflict_keep(s, tmp_path, existing, src, res, e);
        unlink(tmp_path);
        if ((rc = sync_blob_name(s, existing, e)))
            return rc;
        res->outcome = STORE_DUPLICATE;
        return 0;
    }

    if ((rc = blob_place(s, tmp_path, res->sha256, res->size, &data, &name,
                         e)))
        return rc;
    rc = index_instance(s, src, res, e);
    struct err se = { 0, "" };
    int src_rc = name_sync_finish(s, &name, &se);
    if (rc == ERR_CONFLICT)
        rc = put_lost_race(s, src, res, e);
    else if (!rc)
        res->outcome = STORE_STORED;
    if (!rc && src_rc) {
        /* Committed, but the name may not be durable: not acknowledged.
         * The row stays (the file is there); a retry finds it and
         * flushes the name again before answering duplicate. */
        log_error("store: %s: %s", res->info.sop_uid, se.msg);
        if (e)
            *e = se;
        return src_rc;
    }
    return rc;
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
    if (store_scope_sql(scope, scope_sql, sizeof scope_sql) ||
        snprintf(sql, sizeof sql, "%s WHERE %s AND %s%s", INSTANCE_COLS,
                 where, scope_sql, tail) >= (int)sizeof sql) {
        err_set(e, ERR_INTERNAL, "scope clause too long");
        return NULL;
    }
    sqlite3_stmt *st = store_stmt(s, sql, e);
    if (st && store_scope_bind(st, scope, e))
        return NULL;
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
    if (!sop_uid)
        return err_set(e, ERR_INVALID, "instance UID needed");
    sqlite3_stmt *st = scoped_stmt(
        s, scope,
        "i.sop_uid = :sop"
        " AND (:study IS NULL OR studies.study_uid = :study)"
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
