/*
 * main — hashi-server's entry point.  Either an administration subcommand
 * (admin.c), or the server: read the settings (config.c), repair and open
 * the store, start the DICOM listener thread (scp.c) and the HTTPS/WSS
 * loop (http.c), and run until SIGINT/SIGTERM.  Everything the server
 * does by the clock runs from server_tick below, which http.c's timer
 * calls every SERVER_TICK_MS.
 *
 * Signals: SIGINT, SIGTERM (and SIGUSR2, used internally) are blocked in
 * every thread before any thread starts; one small thread sigwait()s for
 * them, sets srv->stopping and wakes the lws loop with http_wake() —
 * nothing runs in an asynchronous signal handler.  A second signal while
 * stopping ends the process at once (the store is crash-safe).  SIGPIPE
 * is ignored.
 *
 * Exit status: 0 after a clean stop, 1 usage error, 2 failure.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "admin.h"
#include "cases.h"
#include "config.h"
#include "jobs.h"
#include "outbox.h"
#include "render.h"
#include "server.h"
#include "upload.h"
#include "webpush.h"

static const char usage_text[] =
    "usage: hashi-server [--config FILE] [--data DIR] [--listen HOST:PORT]\n"
    "                    [--dicom HOST:PORT] [--ae-title AET]\n"
    "                    [--cert FILE --key FILE] [--web DIR] "
    "[--origin URL]...\n"
    "                    [--accept-unknown-ae] [--max-instance BYTES]\n"
    "                    [--dicom-max-associations N] "
    "[--dicom-artim-timeout S]\n"
    "                    [--dicom-idle-timeout S]\n"
    "                    [--push-ca FILE] [--push-contact URL]\n"
    "                    [--push-allow HOST]...\n"
    "                    [--ws-ping S] [--ws-queue-max BYTES]\n"
    "                    [--log-level debug|info|warn|error]\n"
    "       hashi-server init|demo|clinic add|user add|user disable|"
    "gateway add|oncall set ... "
    "(see README)\n"
    "defaults: --data ./data --listen 127.0.0.1:8443 "
    "--dicom 127.0.0.1:11112 (port 0: off)\n"
    "          --ae-title HASHI, 16 associations, ARTIM 10 s, idle 60 s,\n"
    "          cert and key in DATA/tls/, "
    "DATA/hashi.conf read if present\n";

static void block_signals(sigset_t *set)
{
    /* A shell starting us in the background sets SIGINT to "ignore",
     * and an ignored signal never reaches sigwait(): take them back. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

struct sigctx {
    struct server *srv;
    sigset_t set;
};

/* SIGUSR2 is main's "you may go now" at the end of a run. */
static void *signal_thread(void *arg)
{
    struct sigctx *sc = arg;
    for (;;) {
        int sig;
        if (sigwait(&sc->set, &sig))
            continue;
        if (sig == SIGUSR2)
            return NULL;
        if (sc->srv->stopping) {
            log_warn("second %s: exiting at once", strsignal(sig));
            _exit(2);
        }
        log_info("%s: stopping", strsignal(sig));
        sc->srv->stopping = 1;
        http_wake(sc->srv);
    }
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* What must be there before we listen: an initialised data dir, the
 * certificate and its key. */
/* The worker pool's threads each get their own store handle (SQLite: one
 * connection per thread); finished jobs wake the lws loop, which reaps
 * them (http.c). */
#define SERVER_WORKERS 2

static void *worker_init(void *arg)
{
    struct server *srv = arg;
    struct err e = { 0, "" };
    struct store *s = store_open(srv->cfg.data_dir, &e);

    if (!s)
        log_error("worker: open store: %s", e.msg);
    else
        store_set_max_instance(s, srv->cfg.max_instance);
    return s;
}

static void worker_fini(void *ctx)
{
    store_close(ctx);
}

static void worker_wake(void *arg)
{
    http_wake(arg);
}

/* ---- the one tick ----------------------------------------------------- */

#define TICK_SECOND_MS 1000         /* the once-a-second duties */
#define TICK_PRUNE_MS (3600LL * 1000)

/* A failure the tick meets every time is logged once a minute. */
static void tick_warn(struct server *srv, const char *what,
                      const struct err *e, int64_t now)
{
    if (!strcmp(e->msg, srv->tick_state.err) &&
        now - srv->tick_state.err_at < 60000)
        return;
    log_warn("%s: %s", what, e->msg);
    strlcpy_h(srv->tick_state.err, e->msg, sizeof srv->tick_state.err);
    srv->tick_state.err_at = now;
}

#define SETTLE_HIGH 16384       /* rows in outbox_hot: settle now */
#define SETTLE_ROWS 4096        /* rows moved at most per tick */

/* Everything the server does by the clock, on the lws thread, every
 * SERVER_TICK_MS (http.c's timer calls it): the hub's acks, timeouts and
 * ended sessions; the outbox's settling; once a second, escalations of
 * cases past their deadline and the uploads' flushes and expiry; hourly,
 * the pruning of acknowledged events past their keep time. */
static void server_tick(struct server *srv)
{
    struct err e = { 0, "" };
    int64_t now = now_ms(), next = 0;

    ws_tick(srv, now);
    webpush_tick(srv);
    /* New recipient rows into the large outbox table, a batch at a time:
     * every tick while outbox_hot holds more than SETTLE_HIGH rows, else
     * once a second (outbox.h, outbox_settle). */
    int second = now - srv->tick_state.second_at >= TICK_SECOND_MS;
    if (srv->outbox &&
        outbox_settle(srv->outbox, second ? 1 : SETTLE_HIGH, SETTLE_ROWS,
                      &e) < 0)
        tick_warn(srv, "outbox settling", &e, now);
    if (second) {
        srv->tick_state.second_at = now;
        if (cases_escalate_due(srv, now, &next, &e) < 0)
            tick_warn(srv, "escalation", &e, now);
        upload_tick(srv);
    }
    if (srv->outbox && now - srv->tick_state.pruned_at >= TICK_PRUNE_MS) {
        srv->tick_state.pruned_at = now;
        int n = outbox_prune(srv->outbox, now, &e);
        if (n < 0)
            tick_warn(srv, "outbox pruning", &e, now);
        else if (n)
            log_info("outbox: %d acknowledged event(s) pruned", n);
    }
}

static int preflight(const struct server_config *c, struct err *e)
{
    char db[4096];
    if (path_join(db, sizeof db, c->data_dir, "hashi.db") || !file_exists(db))
        return err_set(e, ERR_NOTFOUND, "%s is not an initialised data "
                       "directory; run 'hashi-server init --data %s'",
                       c->data_dir, c->data_dir);
    if (access(c->cert, R_OK) || access(c->key, R_OK))
        return err_set(e, ERR_NOTFOUND, "cannot read certificate %s or key "
                       "%s: %s", c->cert, c->key, strerror(errno));
    struct stat st;
    if (stat(c->web_root, &st) || !S_ISDIR(st.st_mode))
        log_warn("no web client at %s; serving the API only",
                 c->web_root);
    return 0;
}

/* Files of a data dir made before they were created owner-only: the
 * database and its WAL and shared memory (SQLite gives those the mode of
 * the database), the development certificate and key.  By path: never
 * open the database by hand (closing it would drop SQLite's locks). */
static void owner_only(const char *data_dir)
{
    static const char *const names[] = {
        "hashi.db", "hashi.db-wal", "hashi.db-shm", "tls/cert.pem",
        "tls/key.pem",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[4096];
        struct stat st;
        if (path_join(p, sizeof p, data_dir, names[i]) || stat(p, &st) ||
            !(st.st_mode & 077))
            continue;
        if (chmod(p, st.st_mode & 0700))
            log_warn("chmod %s: %s", p, strerror(errno));
        else
            log_info("%s was readable by others: now owner-only", p);
    }
}

static void print_banner(const struct server_config *c)
{
    int v6 = strchr(c->listen_host, ':') != NULL;
    printf("hashi-server listening on https://%s%s%s:%d", v6 ? "[" : "",
           c->listen_host, v6 ? "]" : "", c->listen_port);
    if (c->dicom_port) {
        int d6 = strchr(c->dicom_host, ':') != NULL;
        printf(" (DICOM %s@%s%s%s:%d)\n", c->ae_title, d6 ? "[" : "",
               c->dicom_host, d6 ? "]" : "", c->dicom_port);
    } else {
        printf(" (DICOM off)\n");
    }
    fflush(stdout);
}

/* Start, serve, stop.  Returns the exit status. */
static int serve(struct server *srv, sigset_t *sigs)
{
    struct server_config *c = &srv->cfg;
    struct err e = { 0, "" };
    int status = 2, fixed = 0;
    int dicom_up = 0, scp_up = 0, http_up = 0;
    pthread_t sigthr;
    struct sigctx sc = { srv, *sigs };

    if (preflight(c, &e)) {
        log_error("%s", e.msg);
        return 2;
    }
    owner_only(c->data_dir);
    if (store_recover(c->data_dir, &fixed, &e)) {
        log_error("store recovery failed: %s", e.msg);
        return 2;
    }
    if (fixed)
        log_warn("store recovery repaired %d thing(s) left by an earlier "
                 "crash", fixed);
    srv->store = store_open(c->data_dir, &e);
    if (!srv->store) {
        log_error("open store: %s", e.msg);
        return 2;
    }
    store_set_max_instance(srv->store, c->max_instance);
    if (store_checkpoint_start(srv->store, NULL, &e))   /* off the loop */
        log_warn("store: WAL checkpoints stay in commits: %s", e.msg);
    srv->audit = audit_open(c->data_dir, &e);
    if (!srv->audit) {
        log_error("open audit log: %s", e.msg);
        goto out;
    }
    metrics_init(&srv->metrics);
    srv->render = render_cache_new(0);     /* NULL: serve without a cache */
    /* The consult workflow and its outboxes, then the hashi.v1 hub: both
     * before the listener, which hands them requests. */
    if (cases_init(srv, &e)) {
        log_error("cases: %s", e.msg);
        goto out;
    }
    if (ws_init(srv, &e)) {
        log_error("hashi.v1: %s", e.msg);
        goto out;
    }
    if (webpush_init(srv, &e)) {        /* wraps ws's events_committed */
        log_error("Web Push: %s", e.msg);
        goto out;
    }
    if (dicom_init(&e)) {
        log_error("DICOM: %s", e.msg);
        goto out;
    }
    dicom_up = 1;
    struct jobs_cfg jc = {
        .threads = SERVER_WORKERS, .name = "workers",
        .thread_init = worker_init, .thread_fini = worker_fini,
        .init_arg = srv, .wake = worker_wake, .wake_arg = srv,
    };
    srv->jobs = jobs_start(&jc, &e);
    if (!srv->jobs) {
        log_error("worker pool: %s", e.msg);
        goto out;
    }
    if (c->dicom_port) {
        if (scp_start(srv, &e)) {
            log_error("DICOM listener on port %d: %s", c->dicom_port,
                      e.msg);
            goto out;
        }
        scp_up = 1;
    }
    srv->tick = server_tick;
    if (http_start(srv, &e)) {
        log_error("HTTPS listener on %s:%d: %s", c->listen_host,
                  c->listen_port, e.msg);
        goto out;
    }
    http_up = 1;
    if (pthread_create(&sigthr, NULL, signal_thread, &sc)) {
        log_error("cannot start the signal thread");
        goto out;
    }
    print_banner(c);
    http_run(srv);
    if (!srv->stopping)
        log_error("the HTTPS event loop failed; stopping");
    else
        status = 0;
    pthread_kill(sigthr, SIGUSR2);
    pthread_join(sigthr, NULL);
out:
    if (scp_up) {
        double t = now_mono();
        scp_stop(srv);
        log_debug("DICOM listener stopped in %.3f s", now_mono() - t);
    }
    if (http_up) {
        double t = now_mono();
        http_stop(srv);
        log_debug("HTTPS listener stopped in %.3f s", now_mono() - t);
    }
    /* After http_stop: what was queued is stored, and its done callbacks
     * (which audit) run here, before the audit log closes. */
    jobs_stop(srv->jobs);
    srv->jobs = NULL;
    webpush_free(srv);
    ws_free(srv);             /* after http_stop closed the sessions */
    cases_free(srv);
    if (srv->audit)
        audit_close(srv->audit);
    store_close(srv->store);
    render_cache_free(srv->render);
    srv->render = NULL;
    if (dicom_up)
        dicom_cleanup();
    if (!status)
        log_info("stopped");
    return status;
}

int main(int argc, char **argv)
{
    umask(077);     /* the database, its WAL, keys: owner only, always */
    if (argc >= 2 && admin_is_command(argv[1]))
        return admin_main(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }

    struct server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        fprintf(stderr, "hashi-server: out of memory\n");
        return 2;
    }
    char exe[4096];
    struct err e = { 0, "" };
    config_self_exe(exe, sizeof exe);
    if (config_from_args(&srv->cfg, argc - 1, argv + 1, exe, &e)) {
        fprintf(stderr, "hashi-server: %s\n%s", e.msg, usage_text);
        free(srv);
        return 1;
    }
    log_set_level((enum log_level)srv->cfg.log_level);

    sigset_t sigs;
    block_signals(&sigs);      /* before any thread exists */
    int status = serve(srv, &sigs);
    free(srv);
    return status;
}
