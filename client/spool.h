/*
 * spool — the gateway's durable store-and-forward queue on disk.
 *
 *   DIR/spool.db     SQLite index (WAL, synchronous=FULL): one row per
 *                    instance (study, series, SOP UID, sha256, size, state,
 *                    reason, attempts), one per study (priority, what
 *                    was announced), and the uploader's last figures
 *   DIR/files/<sha>  the instances as received, named by content
 *   DIR/send/<sha>   the copy actually sent when it is smaller (JPEG-LS)
 *   DIR/tmp/         where the DICOM listener writes incoming files
 *
 * An instance is acknowledged to the modality only after spool_put has
 * returned 0: its file is fsync'd and renamed into files/, the directory
 * fsync'd, and its row committed.  A row leaves `waiting` for `done` only
 * after the server's upload.done, then its file is removed; `failed` rows
 * keep theirs and the server's reason.
 *
 * Thread-safety: one struct spool holds one SQLite connection behind its
 * own mutex, so the listener's concurrent store callbacks may share one
 * handle; the uploader opens a second handle of its own.
 * Functions return 0 or a negative ERR_* with the reason in e.
 */
#ifndef HASHI_SPOOL_H
#define HASHI_SPOOL_H

#include <stdint.h>

#include "../proto/util.h"

enum spool_state { SPOOL_WAITING = 0, SPOOL_IN_FLIGHT, SPOOL_DONE,
                   SPOOL_FAILED };
/* Priorities as ordered: lower goes first.  Unknown studies: routine. */
enum spool_prio { SPOOL_STAT = 1, SPOOL_URGENT = 2, SPOOL_ROUTINE = 3 };

struct spool_item {
    int64_t id;                     /* row id */
    char study_uid[65];
    char series_uid[65];
    char sop_uid[65];
    char sha256[65];
    int64_t size;
    char transfer_syntax[65];
    int has_pixels;
    int state;                      /* enum spool_state */
    int attempts;
    int priority;                   /* enum spool_prio, of the study */
    char path[1200];                /* DIR/files/<sha256> */
};

struct spool_counts {
    int64_t waiting, in_flight, done, failed;
    int64_t bytes_waiting;          /* waiting + in flight */
    int64_t bytes_done;
    double rate;                    /* bytes/s, as the uploader measured */
    int64_t eta_s;                  /* bytes_waiting / rate; -1 unknown */
    char last_error[256];
    int64_t updated_ms;             /* when the uploader last wrote them */
};

struct spool;

/* Opens (creating) the spool in dir; empties tmp/.  reserve: free bytes
 * spool_put keeps on the file system (new instances are refused below).
 * Free with spool_close. */
struct spool *spool_open(const char *dir, int64_t reserve, struct err *e);
/* The same, read-only and without touching anything (for `status`):
 * ERR_NOTFOUND when dir holds no spool. */
struct spool *spool_open_ro(const char *dir, struct err *e);
void spool_close(struct spool *s);
const char *spool_dir(const struct spool *s);
const char *spool_tmp_dir(const struct spool *s);

/* Takes the file at path (in spool_tmp_dir; ours from now on, also on
 * failure) into the spool durably.  *item receives its row; *fresh is 1
 * for a new row, 0 when the same SOP UID came with the same bytes again.
 * ERR_INVALID: not a valid DICOM object (reason in e); ERR_TOOBIG: the
 * file system is full (below the reserve); ERR_IO / ERR_DB otherwise. */
int spool_put(struct spool *s, const char *path, struct spool_item *item,
              int *fresh, struct err *e);

/* The next instance to send, by study priority then arrival, skipping
 * the row ids in skip[0..nskip).  ERR_NOTFOUND when there is none. */
int spool_next(struct spool *s, const int64_t *skip, int nskip,
               struct spool_item *item, struct err *e);
/* State changes of one row.  reason: the server's words, for failed. */
int spool_set_state(struct spool *s, int64_t id, int state,
                    const char *reason, struct err *e);
/* attempts + 1 (conflict 0: an upload begun) or conflicts + 1 (1: the
 * server found other bytes than announced); the new count, or < 0. */
int spool_attempt(struct spool *s, int64_t id, int conflict, struct err *e);
/* Marks the row done and removes its files (when no other row that is
 * not done uses the same bytes). */
int spool_done(struct spool *s, int64_t id, struct err *e);
/* Every in_flight row back to waiting (at start: nobody sends them). */
int spool_requeue(struct spool *s, struct err *e);

/* The copy to send for a row: send/<sha256> of item, and its sha256 and
 * size as last recorded ("" / 0 when none was made). */
int spool_send_path(const struct spool *s, const struct spool_item *item,
                    char *out, size_t n);
int spool_send_get(struct spool *s, int64_t id, char sha[65], int64_t *size,
                   struct err *e);
int spool_send_set(struct spool *s, int64_t id, const char *sha,
                   int64_t size, struct err *e);

/* A study's priority (enum spool_prio): 1 when that changed it, else 0
 * (or < 0). */
int spool_set_priority(struct spool *s, const char *study_uid, int priority,
                       struct err *e);
/* Up to max UIDs of the studies with rows still to send that are not
 * stat (whose priority may yet rise): their count, or < 0. */
int spool_pending_studies(struct spool *s, char (*uids)[65], int max,
                          struct err *e);

/* Counts for `status` and gateway.status. */
int spool_counts(struct spool *s, struct spool_counts *c, struct err *e);
/* The uploader's figures, kept for `status` in another process. */
int spool_set_figures(struct spool *s, double rate,
                      const char *last_error, struct err *e);

/* A study's preview: none yet; the final one (of the whole study's
 * middle image) sent or given up; an early one (of what had come) sent
 * or given up, the final one still to make. */
enum spool_preview { SPOOL_PREVIEW_NONE = 0, SPOOL_PREVIEW_FINAL = 1,
                     SPOOL_PREVIEW_EARLY = 2 };
/* A study as the uploader announces it. */
struct spool_study {
    char study_uid[65];
    int64_t count;                  /* its rows in the spool */
    int64_t expected;               /* the count last announced; 0 none */
    int priority;
    int preview;                    /* enum spool_preview */
    int settled;                    /* quiet, or its association ended */
};
/* Calls fn (until it returns non-zero) for the studies (at most 32 a
 * call) that are settled -- got no instance for quiet_ms, or none since
 * an association that sent some of them ended (spool_study_ended) --
 * and whose count is not the one announced or whose final preview is not
 * sent; and for the studies still arriving that have no preview yet.
 * Instances of a study are not handed out by spool_next before its count
 * was announced (spool_set_expected), so its study.expect and preview go
 * first. */
int spool_each_study(struct spool *s, int64_t quiet_ms,
                     int (*fn)(void *arg, const struct spool_study *st),
                     void *arg, struct err *e);
int spool_set_expected(struct spool *s, const char *study_uid, int64_t n,
                       struct err *e);
/* An association that sent instances of the study has ended: it may be
 * announced now rather than after quiet_ms. */
int spool_study_ended(struct spool *s, const char *study_uid,
                      struct err *e);
int spool_set_preview(struct spool *s, const char *study_uid, int preview,
                      struct err *e);       /* enum spool_preview */
/* The middle image of a study still in the spool (by series, instance
 * number): the one its preview is made of.  ERR_NOTFOUND if none. */
int spool_middle(struct spool *s, const char *study_uid,
                 struct spool_item *item, struct err *e);

/* Calls fn for each failed row (for `status`); stops when fn returns
 * non-zero. */
int spool_each_failed(struct spool *s,
                      int (*fn)(void *arg, const char *sop_uid,
                                const char *study_uid, const char *reason,
                                int attempts),
                      void *arg, struct err *e);

/* --deidentify's UID map (a dicom_uid_map_fn with arg = the spool): the
 * replacement of orig, made (a fresh 2.25 UID) and committed the first
 * time, the same ever after, across associations and restarts. */
int spool_map_uid(void *spool, const char *orig, char repl[65],
                  struct err *e);
/* Either way: uid's original (*is_orig 0) or its replacement (*is_orig
 * 1).  ERR_NOTFOUND when the map does not hold it. */
int spool_uid_lookup(struct spool *s, const char *uid, char other[65],
                     int *is_orig, struct err *e);

#endif
