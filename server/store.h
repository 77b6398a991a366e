/*
 * store — where every instance Hashi accepts is kept: content-addressed
 * blob files plus the SQLite index of patients, studies, series and
 * instances.  It also owns the one database file (hashi.db) and its schema;
 * other server modules (auth, cases, outbox) keep their tables there and
 * reach the connection through store_db().
 *
 * Durability: store_put_file() fsyncs the blob, renames it into
 * blobs/ab/cd/<sha256>, then fsyncs its directories while it commits the
 * index row (WAL, synchronous=FULL).  Only after it returns 0 may a
 * caller acknowledge the instance to a peer.
 *
 * Threads: one struct store per thread (each has its own SQLite
 * connection); SQLite's WAL + busy_timeout serialize the writers.  A
 * store that puts files starts one private helper thread for its fsyncs
 * (joined by store_close); store_checkpoint_start() another, for WAL
 * checkpoints (joined by store_close too).
 */
#ifndef HASHI_STORE_H
#define HASHI_STORE_H

#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "../proto/dicom.h"
#include "../proto/util.h"

struct store;

/* Open (creating if needed) the store in data_dir: hashi.db, blobs/, tmp/,
 * conflicts/.  Caller frees with store_close(). */
struct store *store_open(const char *data_dir, struct err *e);
void store_close(struct store *s);

/* WAL checkpoints off the caller's thread.  SQLite runs a checkpoint
 * inside the COMMIT that grows the WAL past 1,000 pages: a stall of tens
 * of ms (pread, pwrite, fdatasync of hashi.db) on the thread that
 * commits.  store_checkpoint_start() turns that off on s's connection
 * and starts a thread of s's own, with its own connection, that
 *   - runs a PASSIVE checkpoint (never blocks a writer) once a commit of
 *     s leaves at least wal_pages pages in the WAL (s's commits only
 *     signal it: no I/O is added to them);
 *   - once the WAL holds wal_max_bytes or more and s has not committed
 *     for quiet_ms, runs a TRUNCATE checkpoint (it may hold s's writers
 *     for a moment; readers that pin the WAL make it give up, and it
 *     tries again later), so the WAL cannot grow without bound;
 *   - runs a last checkpoint (TRUNCATE) when store_close() stops it.
 * Commits through other store handles keep SQLite's automatic
 * checkpoints, on their own threads.  Errors of the thread are logged,
 * never fatal.  cfg may be NULL; its zero fields take the defaults.
 * Call once, from the thread that uses s; on an error (in e) nothing
 * changed and SQLite keeps checkpointing in s's commits. */
struct store_ckpt_cfg {
    int wal_pages;              /* default 1000 (SQLite's own) */
    int64_t wal_max_bytes;      /* default 64 MiB (journal_size_limit) */
    int quiet_ms;               /* default 1000 */
};
int store_checkpoint_start(struct store *s, const struct store_ckpt_cfg *cfg,
                           struct err *e);

/* At start-up, before any store_open on other threads: removes what a
 * crash left in tmp/, and checks that every indexed instance has its blob
 * (rows whose blob is missing are reported and removed).  *fixed receives
 * the number of things repaired (may be NULL). */
int store_recover(const char *data_dir, int *fixed, struct err *e);

sqlite3 *store_db(struct store *s);
/* A prepared statement for sql on store_db(s), cached for the life of s
 * (meant for a module's fixed SQL, not for text built per request).
 * Returned reset, bindings cleared; the caller steps it, may reset it,
 * and never finalizes it.  NULL with ERR_DB in e if it does not prepare. */
sqlite3_stmt *store_stmt(struct store *s, const char *sql, struct err *e);
const char *store_data_dir(const struct store *s);
/* Directory for temp files on the same file system as the blobs.  It is
 * emptied by store_recover() at every start: nothing that must survive a
 * restart (a resumable upload, say) may live there. */
const char *store_tmp_dir(const struct store *s);
/* Create a new empty temp file there: path (4096 bytes) and an open fd. */
int store_tmp_file(struct store *s, char *path, int *fd, struct err *e);

/* Where an instance came from, for the index and the audit log. */
struct store_source {
    const char *via;          /* "dimse", "stow", "upload" */
    const char *calling_ae;   /* DIMSE peer, or NULL */
    const char *user;         /* login, or NULL */
    const char *remote;       /* peer address */
    int64_t clinic_id;        /* the writer's clinic (0 = none: an
                                 unmapped AE, --accept-unknown-ae) */
};

enum store_outcome {
    STORE_STORED = 0,   /* new instance, now durable */
    STORE_DUPLICATE,    /* same SOP Instance UID, same bytes: no-op */
    STORE_CONFLICT,     /* same UID, other bytes: original kept, new copy
                           kept aside in conflicts/ and recorded */
};

struct store_result {
    int outcome;              /* enum store_outcome */
    char sha256[65];
    uint64_t size;
    struct dcm_info info;
};

/* Validate (dicom_parse_file), hash and store the Part-10 file tmp_path,
 * which must be in store_tmp_dir().  The store takes the file over: on
 * return it has been moved into place or removed, success or not.
 * ERR_INVALID (with reason) for a file that is not acceptable DICOM;
 * ERR_TOOBIG above the configured size limit; ERR_IO / ERR_DB otherwise.
 *
 * A study belongs to the clinic that sent its first instance (src's
 * clinic_id; 0 is a clinic of its own, "none").  An instance whose study,
 * series or SOP Instance UID is already another clinic's is ERR_FORBIDDEN
 * and changes nothing: decided inside the index transaction, so no other
 * writer can slip in between.  Its e->msg ("refused: study <the sender's
 * Study UID>") is for the audit log; the peer is told only "refused".
 * A patient is one clinic's: the same PatientID from two clinics is two
 * patients, never a join. */
int store_put_file(struct store *s, const char *tmp_path,
                   const struct store_source *src, struct store_result *res,
                   struct err *e);

/* Which studies the caller may see: every query and lookup below is
 * limited to them, and a study outside is ERR_NOTFOUND, never
 * "forbidden".  Built by access_scope() (access.h), the one owner of the
 * rule; the store applies it as given.  sql is an SQL boolean expression
 * over the table `studies` (static text: statements are cached by it),
 * NULL for "nothing"; its only parameters are the named ones in
 * params[], bound by name (a name the clause lacks is ERR_INTERNAL). */
#define STORE_SCOPE_PARAMS 2
struct store_scope {
    const char *sql;
    int nparams;
    struct {
        const char *name;     /* ":scope_clinic", ... */
        int64_t value;
    } params[STORE_SCOPE_PARAMS];
};

/* QIDO-RS filters; NULL/0 fields are not applied. */
struct store_query {
    const char *patient_id;     /* exact, or with * and ? wildcards */
    const char *patient_name;   /* same */
    const char *study_date;     /* "YYYYMMDD", "A-B", "-B", "A-" */
    const char *modality;       /* ModalitiesInStudy / Modality */
    const char *accession;
    const char *study_description;  /* with * and ?, case-insensitive */
    const char *study_uid;
    const char *series_uid;
    const char *sop_uid;
    int limit;                  /* 0 = default 100; capped at 1000 */
    int offset;
};

/* QIDO-RS results as a DICOM JSON array (PS3.18 Annex F), newly allocated
 * (caller json_decref's).  Series need q->study_uid; instances need
 * q->study_uid, and q->series_uid unless listing a whole study. */
int store_qido_studies(struct store *s, const struct store_scope *scope,
                       const struct store_query *q, json_t **out,
                       struct err *e);
int store_qido_series(struct store *s, const struct store_scope *scope,
                      const struct store_query *q, json_t **out,
                      struct err *e);
int store_qido_instances(struct store *s, const struct store_scope *scope,
                         const struct store_query *q, json_t **out,
                         struct err *e);

/* One stored instance, for WADO-RS. */
struct store_instance {
    char study_uid[65];
    char series_uid[65];
    char sop_uid[65];
    char sop_class_uid[65];
    char transfer_syntax[65];
    char sha256[65];
    uint64_t size;
    int frames;
    char path[4096];            /* the blob file */
};

/* Look up one instance (study_uid and series_uid may be NULL) within
 * scope. */
int store_find_instance(struct store *s, const struct store_scope *scope,
                        const char *study_uid, const char *series_uid,
                        const char *sop_uid, struct store_instance *out,
                        struct err *e);
/* All instances of a study or one series (series_uid NULL = whole study),
 * ordered by series number, instance number.  *out is malloc'd (caller
 * frees); ERR_NOTFOUND if none is visible. */
int store_list_instances(struct store *s, const struct store_scope *scope,
                         const char *study_uid, const char *series_uid,
                         struct store_instance **out, size_t *n,
                         struct err *e);

/* May scope see a study study_uid owned by clinic_id, whether or not its
 * instances have arrived (a preview of it, say)?  The scope clause's
 * answer over that one study: 1 yes, 0 no (or on error). */
int store_study_visible(struct store *s, const struct store_scope *scope,
                        const char *study_uid, int64_t clinic_id);

/* Maximum size of one instance accepted by store_put_file (default 2 GiB). */
void store_set_max_instance(struct store *s, uint64_t bytes);

#endif
