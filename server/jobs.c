/*
 * jobs — a fixed pool of worker threads with a FIFO queue (see jobs.h).
 *
 * One mutex guards the queue, the finished list and every job's
 * `finished` flag; `work` signals the workers, `over` wakes jobs_wait.
 * Reaped jobs go to a finished list that jobs_reap empties on the service
 * thread; the wake callback is called once when that list turns
 * non-empty (the service thread takes the whole list at once).
 */
#include "jobs.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/log.h"

#define JOBS_MAX_THREADS 64

struct jobs {
    struct jobs_cfg cfg;
    pthread_mutex_t mu;
    pthread_cond_t work;        /* queue not empty, or stopping */
    pthread_cond_t over;        /* some waited job finished */
    struct job *head, *tail;    /* queued */
    struct job *fin_head, *fin_tail;    /* finished, to reap */
    int stopping;
    int nthreads;
    pthread_t th[JOBS_MAX_THREADS];
};

static void *worker(void *p)
{
    struct jobs *j = p;
    void *ctx = NULL;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (j->cfg.thread_init)
        ctx = j->cfg.thread_init(j->cfg.init_arg);

    pthread_mutex_lock(&j->mu);
    for (;;) {
        struct job *job;
        int wake = 0;

        while (!j->head && !j->stopping)
            pthread_cond_wait(&j->work, &j->mu);
        if (!j->head)
            break;              /* stopping, and the queue is empty */
        job = j->head;
        j->head = job->next;
        if (!j->head)
            j->tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&j->mu);

        job->work(ctx, job->arg);

        pthread_mutex_lock(&j->mu);
        job->finished = 1;
        if (job->done) {
            if (j->fin_tail)
                j->fin_tail->next = job;
            else
                j->fin_head = job;
            j->fin_tail = job;
            wake = j->fin_head == job;
        } else {
            pthread_cond_broadcast(&j->over);
        }
        if (wake && j->cfg.wake) {
            /* Outside the lock: the wake may take its own locks. */
            pthread_mutex_unlock(&j->mu);
            j->cfg.wake(j->cfg.wake_arg);
            pthread_mutex_lock(&j->mu);
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (j->cfg.thread_fini)
        j->cfg.thread_fini(ctx);
    return NULL;
}

struct jobs *jobs_start(const struct jobs_cfg *cfg, struct err *e)
{
    struct jobs *j;

    if (!cfg || cfg->threads < 1 || cfg->threads > JOBS_MAX_THREADS) {
        err_set(e, ERR_INVALID, "jobs: 1 to %d threads", JOBS_MAX_THREADS);
        return NULL;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    j->cfg = *cfg;
    if (!j->cfg.name)
        j->cfg.name = "jobs";
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->work, NULL);
    pthread_cond_init(&j->over, NULL);
    for (int i = 0; i < cfg->threads; i++) {
        int rc = pthread_create(&j->th[i], NULL, worker, j);
        if (rc) {
            err_set(e, ERR_INTERNAL, "%s: cannot start a thread: %s",
                    j->cfg.name, strerror(rc));
            jobs_stop(j);
            return NULL;
        }
        j->nthreads++;
    }
    return j;
}

void jobs_submit(struct jobs *j, struct job *job, jobs_work_fn work,
                 jobs_done_fn done, void *arg)
{
    job->work = work;
    job->done = done;
    job->arg = arg;
    job->finished = 0;
    job->next = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->tail)
        j->tail->next = job;
    else
        j->head = job;
    j->tail = job;
    pthread_cond_signal(&j->work);
    pthread_mutex_unlock(&j->mu);
}

void jobs_wait(struct jobs *j, struct job *job)
{
    pthread_mutex_lock(&j->mu);
    while (!job->finished)
        pthread_cond_wait(&j->over, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

int jobs_reap(struct jobs *j)
{
    struct job *list;
    int n = 0;

    if (!j)
        return 0;
    pthread_mutex_lock(&j->mu);
    list = j->fin_head;
    j->fin_head = j->fin_tail = NULL;
    pthread_mutex_unlock(&j->mu);
    while (list) {
        struct job *next = list->next;

        /* done() may free the job (it is the caller's memory). */
        list->next = NULL;
        list->done(list->arg);
        list = next;
        n++;
    }
    return n;
}

void jobs_stop(struct jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    j->stopping = 1;
    pthread_cond_broadcast(&j->work);
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < j->nthreads; i++)
        pthread_join(j->th[i], NULL);
    jobs_reap(j);
    pthread_cond_destroy(&j->work);
    pthread_cond_destroy(&j->over);
    pthread_mutex_destroy(&j->mu);
    free(j);
}
