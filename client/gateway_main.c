/*
 * hashi-gateway — the rural site's store-and-forward daemon: a DICOM
 * C-STORE/C-ECHO listener on the clinic's LAN that acknowledges an image
 * only once it is durably in the spool (client/spool.c), and an uploader
 * that forwards the spool to hashi-server over a slow, breaking link
 * (client/uplink.c).  `hashi-gateway status` reads the same spool from
 * another process and prints what is waiting, in flight, done, failed.
 *
 * Threads: the listener's (its store callback may run on several at once:
 * the spool handle is mutex-guarded), the uploader's, and main, which
 * only waits for SIGINT/SIGTERM.
 *
 * Exit codes: 0 ok, 1 usage, 2 failure.  Errors are one line on stderr.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "../proto/util.h"
#include "spool.h"
#include "uplink.h"

enum { EX_OK = 0, EX_USAGE = 1, EX_FAIL = 2 };

#define MAX_ALLOW 64
#define DEFAULT_RESERVE (64LL << 20)

static const char usage_text[] =
    "usage: hashi-gateway --server URL --token-file FILE --spool DIR\n"
    "                     [--dicom HOST:PORT] [--ae-title AET] "
    "[--cacert FILE]\n"
    "                     [--allow-ae AET]... [--max-rate RATE] "
    "[--retry-max SECONDS]\n"
    "                     [--study-quiet SECONDS] [--reserve BYTES]\n"
    "                     [--deidentify] "
    "[--log-level debug|info|warn|error]\n"
    "       hashi-gateway status --spool DIR [--json] [--uid-map UID]\n"
    "defaults: --dicom 0.0.0.0:11112 --ae-title HASHIGW --retry-max 300 "
    "--study-quiet 5\n"
    "RATE: 256kbit, 2mbit, or bytes per second (k, m suffixes)\n"
    "exit codes: 0 ok, 1 usage, 2 failure\n";

struct gw_opts {
    const char *server, *token_file, *spool, *cacert, *ae_title;
    char dicom_host[256];
    int dicom_port;
    const char *allow[MAX_ALLOW];
    int nallow;
    double max_rate;
    int retry_max;
    int quiet_s;
    long long reserve;
    int json;
    int deidentify;
    const char *uid_map;            /* status: the UID to map either way */
};

static int usage_err(const char *fmt, const char *a)
{
    fprintf(stderr, "hashi-gateway: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(run 'hashi-gateway --help' for usage)\n");
    return EX_USAGE;
}

static int parse_int(const char *s, long long min, long long max,
                     long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* HOST:PORT for the listener: the address it binds. */
static int parse_dicom(const char *s, struct gw_opts *o)
{
    const char *colon = strrchr(s, ':');
    long long port;
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof o->dicom_host
        || parse_int(colon + 1, 1, 65535, &port))
        return -1;
    memcpy(o->dicom_host, s, (size_t)(colon - s));
    o->dicom_host[colon - s] = 0;
    o->dicom_port = (int)port;
    return 0;
}

static int is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "localhost") ||
           !strcmp(host, "[::1]");
}

/* Flags of both commands; status allows only --spool and --json. */
static int parse_args(int argc, char **argv, int status, struct gw_opts *o)
{
    strcpy(o->dicom_host, "0.0.0.0");
    o->dicom_port = 11112;
    o->ae_title = "HASHIGW";
    o->retry_max = 300;
    o->quiet_s = 5;
    o->reserve = DEFAULT_RESERVE;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--json") && status) {
            o->json = 1;
            continue;
        }
        if (!strcmp(f, "--deidentify") && !status) {
            o->deidentify = 1;
            continue;
        }
        if (strncmp(f, "--", 2) ||
            (status && strcmp(f, "--spool") && strcmp(f, "--uid-map")))
            return usage_err("unexpected argument '%s'", f);
        if (!strcmp(f, "--log-level") || !strcmp(f, "--server") ||
            !strcmp(f, "--token-file") || !strcmp(f, "--spool") ||
            !strcmp(f, "--dicom") || !strcmp(f, "--ae-title") ||
            !strcmp(f, "--cacert") || !strcmp(f, "--allow-ae") ||
            !strcmp(f, "--max-rate") || !strcmp(f, "--retry-max") ||
            !strcmp(f, "--study-quiet") || !strcmp(f, "--uid-map") ||
            !strcmp(f, "--reserve")) {
            if (i + 1 >= argc)
                return usage_err("%s needs a value", f);
        } else {
            return usage_err("unknown option %s", f);
        }
        const char *v = argv[++i];
        long long n;
        if (!strcmp(f, "--server")) {
            o->server = v;
        } else if (!strcmp(f, "--token-file")) {
            o->token_file = v;
        } else if (!strcmp(f, "--spool")) {
            o->spool = v;
        } else if (!strcmp(f, "--uid-map")) {
            o->uid_map = v;
        } else if (!strcmp(f, "--cacert")) {
            o->cacert = v;
        } else if (!strcmp(f, "--ae-title")) {
            if (!*v || strlen(v) > 16)
                return usage_err("--ae-title '%s': 1..16 characters", v);
            o->ae_title = v;
        } else if (!strcmp(f, "--allow-ae")) {
            if (!*v || strlen(v) > 16)
                return usage_err("--allow-ae '%s': 1..16 characters", v);
            if (o->nallow == MAX_ALLOW)
                return usage_err("--allow-ae: at most 64 (at '%s')", v);
            o->allow[o->nallow++] = v;
        } else if (!strcmp(f, "--dicom")) {
            if (parse_dicom(v, o))
                return usage_err("--dicom '%s': expected HOST:PORT, port "
                                 "1..65535", v);
        } else if (!strcmp(f, "--max-rate")) {
            if (uplink_parse_rate(v, &o->max_rate))
                return usage_err("--max-rate '%s': expected e.g. 256kbit, "
                                 "2mbit or bytes per second", v);
        } else if (!strcmp(f, "--retry-max")) {
            if (parse_int(v, 1, 86400, &n))
                return usage_err("--retry-max '%s': seconds, 1..86400", v);
            o->retry_max = (int)n;
        } else if (!strcmp(f, "--study-quiet")) {
            if (parse_int(v, 1, 3600, &n))
                return usage_err("--study-quiet '%s': seconds, 1..3600", v);
            o->quiet_s = (int)n;
        } else if (!strcmp(f, "--reserve")) {
            if (parse_int(v, 0, 1LL << 50, &n))
                return usage_err("--reserve '%s': bytes", v);
            o->reserve = n;
        } else if (!strcmp(f, "--log-level")) {
            int l = log_parse_level(v);
            if (l < 0)
                return usage_err("--log-level '%s': debug, info, warn or "
                                 "error", v);
            log_set_level((enum log_level)l);
        }
    }
    if (!o->spool)
        return usage_err("%s", "--spool DIR is required");
    if (!status && (!o->server || !o->token_file))
        return usage_err("%s", "--server URL and --token-file FILE are "
                         "required");
    return 0;
}

/* ---- status ------------------------------------------------------------ */

static int add_failure(void *arg, const char *sop, const char *study,
                       const char *reason, int attempts)
{
    json_array_append_new(arg, json_pack("{s:s, s:s, s:s, s:i}", "sop_uid",
                                         sop, "study_uid", study, "reason",
                                         reason, "attempts", attempts));
    return 0;
}

static int print_failure(void *arg, const char *sop, const char *study,
                         const char *reason, int attempts)
{
    (void)arg;
    (void)study;
    printf("  failed %s after %d attempt%s: %s\n", sop, attempts,
           attempts == 1 ? "" : "s", reason);
    return 0;
}

/* status --uid-map UID: the other side of --deidentify's mapping. */
static int cmd_uid_map(const struct gw_opts *o)
{
    struct err e = { 0, "" };
    char other[65];
    int is_orig = 0;
    struct spool *s = spool_open_ro(o->spool, &e);
    int rc = s ? spool_uid_lookup(s, o->uid_map, other, &is_orig, &e) : -1;
    spool_close(s);
    if (rc) {
        fprintf(stderr, "hashi-gateway: status: %s\n", e.msg);
        return EX_FAIL;
    }
    if (o->json)
        printf("{\"original\":\"%s\",\"deidentified\":\"%s\"}\n",
               is_orig ? o->uid_map : other, is_orig ? other : o->uid_map);
    else
        printf("%s %s\n", is_orig ? "deidentified" : "original", other);
    return EX_OK;
}

static int cmd_status(const struct gw_opts *o)
{
    struct err e = { 0, "" };
    struct spool_counts c;
    if (o->uid_map)
        return cmd_uid_map(o);
    struct spool *s = spool_open_ro(o->spool, &e);
    if (!s || spool_counts(s, &c, &e)) {
        fprintf(stderr, "hashi-gateway: status: %s\n", e.msg);
        spool_close(s);
        return EX_FAIL;
    }
    long long eta = c.eta_s;
    int rc = 0;
    if (o->json) {
        json_t *failures = json_array();
        json_t *j = json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:s, s:I, s:o}",
            "waiting", (json_int_t)c.waiting,
            "in_flight", (json_int_t)c.in_flight,
            "done", (json_int_t)c.done, "failed", (json_int_t)c.failed,
            "bytes_waiting", (json_int_t)c.bytes_waiting,
            "bytes_done", (json_int_t)c.bytes_done,
            "rate_bps", c.rate, "eta_s", (json_int_t)eta,
            "last_error", c.last_error, "updated_ms",
            (json_int_t)c.updated_ms, "failures", failures);
        rc = spool_each_failed(s, add_failure, failures, &e);
        if (!rc) {
            char *text = json_dumps(j, JSON_COMPACT);
            printf("%s\n", text);
            free(text);
        }
        json_decref(j);
    } else {
        printf("waiting %lld, in flight %lld, done %lld, failed %lld\n",
               (long long)c.waiting, (long long)c.in_flight,
               (long long)c.done, (long long)c.failed);
        printf("bytes waiting %lld, sent %lld; rate %.0f bytes/s; ETA %s",
               (long long)c.bytes_waiting, (long long)c.bytes_done,
               c.rate, eta < 0 ? "unknown\n" : "");
        if (eta >= 0)
            printf("%lld s\n", eta);
        if (c.last_error[0])
            printf("last error: %s\n", c.last_error);
        rc = spool_each_failed(s, print_failure, NULL, &e);
    }
    spool_close(s);
    if (rc) {
        fprintf(stderr, "hashi-gateway: status: %s\n", e.msg);
        return EX_FAIL;
    }
    return EX_OK;
}

/* ---- the daemon ---------------------------------------------------------- */

struct gw {
    struct spool *spool;
    const struct gw_opts *o;
};

/* One association: the studies it sent, announced when it ends (a
 * modality's association usually is the whole study; beyond MAX_STUDIES
 * in one association, the rest wait for --study-quiet). */
#define MAX_STUDIES 16
struct assoc {
    struct gw *g;
    int nstudies;
    char studies[MAX_STUDIES][65];
};

static int on_open(void *arg, const char *calling_ae, const char *peer,
                   void **ctx)
{
    struct gw *g = arg;
    int ok = !g->o->nallow;
    for (int i = 0; i < g->o->nallow && !ok; i++)
        ok = !strcmp(g->o->allow[i], calling_ae);
    if (!ok) {
        log_warn("DICOM association from %s@%s refused: calling AE not in "
                 "--allow-ae", calling_ae, peer);
        return 0;
    }
    struct assoc *a = calloc(1, sizeof *a);
    if (!a) {
        log_error("DICOM association from %s@%s refused: out of memory",
                  calling_ae, peer);
        return 0;
    }
    a->g = g;
    *ctx = a;
    return 1;
}

static void on_close(void *arg, void *ctx)
{
    struct assoc *a = ctx;
    struct err e = { 0, "" };
    (void)arg;
    for (int i = 0; i < a->nstudies; i++)
        if (spool_study_ended(a->g->spool, a->studies[i], &e))
            log_warn("study %s: %s (announced when quiet)", a->studies[i],
                     e.msg);
    free(a);
}

static void assoc_saw(struct assoc *a, const char *study)
{
    for (int i = 0; i < a->nstudies; i++)
        if (!strcmp(a->studies[i], study))
            return;
    if (a->nstudies < MAX_STUDIES)
        strlcpy_h(a->studies[a->nstudies++], study, 65);
}

/* May run on several listener threads at once (the spool is locked). */
static unsigned on_store(void *ctx, const char *path, const char *calling_ae,
                         const char *peer, char comment[64])
{
    struct assoc *a = ctx;
    struct gw *g = a->g;
    struct spool_item it;
    struct err e = { 0, "" };
    int fresh = 0;
    char deid[1100];
    int rc = 0;
    if (g->o->deidentify) {
        /* The original is never spooled: only the copy is kept. */
        struct dcm_deid_opts d = { spool_map_uid, g->spool, NULL, NULL };
        snprintf(deid, sizeof deid, "%s.deid", path);
        rc = dicom_deidentify(path, deid, &d, &e);
        unlink(path);
        path = deid;
    }
    if (!rc)
        rc = spool_put(g->spool, path, &it, &fresh, &e);
    else
        unlink(path);
    if (rc == ERR_INVALID) {
        snprintf(comment, 64, "%.63s", e.msg);
        log_warn("DICOM: instance from %s@%s refused: %s", calling_ae, peer,
                 e.msg);
        return DICOM_STATUS_DATASET_MISMATCH;
    }
    if (rc) {
        snprintf(comment, 64, "%s", rc == ERR_TOOBIG ? "spool disk full"
                                                     : "not stored");
        log_error("DICOM: instance from %s@%s not stored: %s", calling_ae,
                  peer, e.msg);
        return DICOM_STATUS_OUT_OF_RESOURCES;
    }
    assoc_saw(a, it.study_uid);
    log_info("DICOM: %s %s from %s@%s (study %s, %lld bytes)",
             fresh ? "spooled" : "already spooled", it.sop_uid, calling_ae,
             peer, it.study_uid, (long long)it.size);
    return DICOM_STATUS_SUCCESS;
}

static int read_token(const char *path, char *out, size_t n, struct err *e)
{
    unsigned char *buf;
    size_t len;
    int rc = read_file(path, 4096, &buf, &len, e);
    if (rc)
        return rc;
    size_t i = 0;
    while (i < len && buf[i] != '\n' && buf[i] != '\r')
        i++;
    buf[i] = 0;
    if (!i || i >= n) {
        free(buf);
        return err_set(e, ERR_INVALID, "%s: no token on its first line",
                       path);
    }
    memcpy(out, buf, i + 1);
    free(buf);
    return 0;
}

static int serve(const struct gw_opts *o)
{
    struct err e = { 0, "" };
    char token[300];
    struct gw g = { NULL, o };
    struct dicom_scp *scp = NULL;
    struct uplink *up = NULL;
    sigset_t sigs;
    int sig = 0, status = EX_FAIL;

    if (read_token(o->token_file, token, sizeof token, &e)) {
        fprintf(stderr, "hashi-gateway: --token-file: %s\n", e.msg);
        return EX_USAGE;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (dicom_init(&e) ||
        !(g.spool = spool_open(o->spool, o->reserve, &e)))
        goto out;
    struct dicom_scp_cfg cfg = {
        .port = o->dicom_port,
        .host = o->dicom_host,
        .loopback_only = is_loopback(o->dicom_host),
        .ae_title = o->ae_title,
        .tmp_dir = spool_tmp_dir(g.spool),
        .dimse_timeout = 0,
        .store = on_store,
        .arg = &g,
        .open = on_open,
        .close = on_close,
    };
    if (!(scp = dicom_scp_start(&cfg, &e)))
        goto out;
    struct uplink_cfg ucfg = { o->server, token, o->cacert, o->max_rate,
                               o->retry_max, o->quiet_s * 1000 };
    if (!(up = uplink_start(g.spool, &ucfg, &e)))
        goto out;
    log_info("hashi-gateway: DICOM %s:%d AE %s, spool %s, server %s%s%s",
             o->dicom_host, o->dicom_port, o->ae_title, o->spool, o->server,
             o->max_rate > 0 ? " (rate capped)" : "",
             o->deidentify ? " (de-identifying)" : "");
    sigwait(&sigs, &sig);
    log_info("hashi-gateway: signal %d, stopping", sig);
    status = EX_OK;
out:
    if (status)
        fprintf(stderr, "hashi-gateway: %s\n", e.msg);
    dicom_scp_stop(scp);
    if (up) {
        uplink_stop(up, 5000);
        /* A blocked uploader is left running; everything it touched is
         * durable, so exit without closing the spool under it. */
        return status;
    }
    spool_close(g.spool);
    dicom_cleanup();
    return status;
}

int main(int argc, char **argv)
{
    struct gw_opts o;
    memset(&o, 0, sizeof o);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")
                      || !strcmp(argv[1], "help"))) {
        fputs(usage_text, stdout);
        return EX_OK;
    }
    if (argc >= 2 && !strcmp(argv[1], "status")) {
        int rc = parse_args(argc - 2, argv + 2, 1, &o);
        return rc ? rc : cmd_status(&o);
    }
    int rc = parse_args(argc - 1, argv + 1, 0, &o);
    return rc ? rc : serve(&o);
}
