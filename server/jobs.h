/*
 * jobs — a small pool of worker threads for work that must not run on the
 * thread that asked for it: the store's fsyncs overlapped with its other
 * work, STOW-RS parts stored while the next part is still arriving, the
 * scrypt of a login.
 *
 * A job is a struct job the caller owns (usually embedded in its own
 * state); it must stay valid until the job is over.  Two ways to be told
 * a job is over:
 *   - waited: submit with done == NULL, then jobs_wait() on the submitting
 *     thread (for leaf work — a fsync — that the caller joins itself);
 *   - reaped: submit with a done callback; when work has run, the pool
 *     calls its wake function (http_wake: lws_cancel_service) and the
 *     service thread calls jobs_reap(), which runs each finished job's
 *     done(arg) there, in the order the jobs finished.
 * Jobs start in submission order; with more than one thread they may
 * finish in any order.
 *
 * Every worker thread may carry a context made by cfg.thread_init when it
 * starts (e.g. its own store handle: SQLite connections are one per
 * thread) and freed by cfg.thread_fini when it ends; work gets it as its
 * first argument (NULL when there is no thread_init, or it failed).
 *
 * Threads: jobs_submit/jobs_wait from any thread; jobs_reap from the one
 * service thread; jobs_stop from the thread that started the pool, once.
 * The workers block SIGINT/SIGTERM/SIGPIPE.  A work function must never
 * wait for another job of its own pool (a pool of busy waiters deadlocks).
 */
#ifndef HASHI_JOBS_H
#define HASHI_JOBS_H

#include "../proto/util.h"

typedef void (*jobs_work_fn)(void *thread_ctx, void *arg);
typedef void (*jobs_done_fn)(void *arg);

struct job {
    /* private to jobs.c */
    jobs_work_fn work;
    jobs_done_fn done;
    void *arg;
    int finished;
    struct job *next;
};

struct jobs_cfg {
    int threads;                        /* 1..64 */
    const char *name;                   /* for the log and thread names */
    void *(*thread_init)(void *init_arg); /* may be NULL */
    void (*thread_fini)(void *thread_ctx); /* may be NULL */
    void *init_arg;
    void (*wake)(void *wake_arg);       /* a reaped job finished; may be
                                           NULL for waited-only pools */
    void *wake_arg;
};

struct jobs;

/* Start the threads (each runs thread_init before taking jobs).  Caller
 * frees with jobs_stop(). */
struct jobs *jobs_start(const struct jobs_cfg *cfg, struct err *e);

/* Queue job: work(thread_ctx, arg) on a worker, then (done != NULL) done
 * on the service thread via jobs_reap, or (done == NULL) jobs_wait. */
void jobs_submit(struct jobs *j, struct job *job, jobs_work_fn work,
                 jobs_done_fn done, void *arg);
/* Block until job (submitted with done == NULL) has run. */
void jobs_wait(struct jobs *j, struct job *job);
/* Service thread: run done() of every finished reaped job; returns how
 * many ran. */
int jobs_reap(struct jobs *j);
/* Run what is queued, join the threads, run the done() callbacks still
 * owed (on the calling thread), free the pool.  NULL is a no-op. */
void jobs_stop(struct jobs *j);

#endif
