/*
 * hashi — the command-line client of Hashi: log in, send a case with its
 * images, follow the inbox, chat, claim, answer, fetch the images.
 *
 * Every command is a short sequential program over client/conn.c.  The
 * one-shot commands use HTTPS on one kept-alive connection: /api/login,
 * the REST twin of the consult operations (/api/cases...), WADO-RS for
 * `get`.  `watch` opens a hashi.v1 session: it replays what the user
 * missed, then follows live, and acknowledges each event after printing
 * it and saving its seq.  `send` with files opens one too, for resumable
 * uploads (client/uploader.c), replaying and acknowledging nothing.
 * What must survive between
 * runs (server, token, watch's last_seq, unconfirmed creates) lives in
 * client/config.c's directory.
 *
 * Exit codes: 0 ok, 1 usage, 2 server or network error (including "not
 * found", "already claimed" and other refusals), 3 authentication (not
 * logged in, wrong password, token refused).  Errors are one line on
 * stderr: "hashi: claim: already claimed by demo-neuro2".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../proto/dicom.h"
#include "../proto/msg.h"
#include "../proto/util.h"
#include "config.h"
#include "conn.h"
#include "uploader.h"

#define HASHI_VERSION "0.1.0"
#define CLIENT_NAME "hashi-cli"

enum { EX_OK = 0, EX_USAGE = 1, EX_SERVER = 2, EX_AUTH = 3 };

#define NET_ATTEMPTS 4                  /* one try + retries on a cut */
#define WATCH_ACK_EVERY 32

static const char usage_text[] =
    "usage: hashi COMMAND [options]\n"
    "  login  --server URL --user LOGIN [--password-stdin] [--cacert FILE]"
    " [--insecure]\n"
    "  logout\n"
    "  send   --to SPECIALTY [--specialist LOGIN] --priority "
    "stat|urgent|routine\n"
    "         --question TEXT [--history TEXT] [--patient-age N "
    "--patient-sex F|M|O]\n"
    "         [--case-id ID] [--json] (FILE|DIR)... | --study UID...\n"
    "  inbox  [--status S] [--limit N] [--json]\n"
    "  show   CASE [--json]\n"
    "  watch  [--json] [--once] [--count N]\n"
    "  chat   CASE TEXT\n"
    "  claim  CASE\n"
    "  answer CASE [TEXT] [--impression T] [--recommendation T]\n"
    "  close  CASE [--reason T]        reopen CASE [--reason T]\n"
    "  get    CASE --out DIR\n"
    "  gateways [--json]               the clinic's edge gateways\n"
    "exit codes: 0 ok, 1 usage, 2 server or network error, 3 "
    "authentication\n"
    "state: $HASHI_CONFIG_DIR, else $XDG_CONFIG_HOME/hashi, else "
    "~/.config/hashi\n";

static const char *g_cmd = "";          /* for messages */

static int usage_err(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int usage_err(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "hashi: %s%s", g_cmd, *g_cmd ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(run 'hashi help' for usage)\n");
    return EX_USAGE;
}

/* e's own message again, between pre and post (err_set must not read
 * the buffer it writes). */
static int err_wrap(struct err *e, int code, const char *pre,
                    const char *post)
{
    char old[sizeof e->msg];
    strlcpy_h(old, e->msg, sizeof old);
    return err_set(e, code, "%s%s%s", pre, old, post);
}

/* The exit code of an error, after printing it. */
static int fail(int rc, const struct err *e)
{
    fprintf(stderr, "hashi: %s%s%s\n", g_cmd, *g_cmd ? ": " : "", e->msg);
    if (rc == ERR_AUTH)
        return EX_AUTH;
    return EX_SERVER;
}

/* ---- options -------------------------------------------------------- */

struct opt {
    const char *name;               /* "--to" */
    int has_arg;
    int multi;                      /* may repeat (values joined by \n) */
    const char *val;
    int set;
    char *multi_buf;
};

struct args {
    char *pos[1024];
    int npos;
};

#define OPT(n, a) { n, a, 0, NULL, 0, NULL }
#define OPT_MULTI(n) { n, 1, 1, NULL, 0, NULL }
#define OPT_END OPT(NULL, 0)

static struct opt *opt_find(struct opt *o, const char *name)
{
    for (; o->name; o++)
        if (!strcmp(o->name, name))
            return o;
    return NULL;
}

/* Parses argv (after the command) against opts; positionals into a.
 * Returns 0 or EX_USAGE (printed). */
static int parse_opts(int argc, char **argv, struct opt *opts,
                      struct args *a)
{
    a->npos = 0;
    for (int i = 0; i < argc; i++) {
        char *s = argv[i], name[64];
        const char *val = NULL;
        if (!strcmp(s, "--")) {
            while (++i < argc && a->npos < 1024)
                a->pos[a->npos++] = argv[i];
            break;
        }
        if (strncmp(s, "--", 2) || !s[2]) {
            if (a->npos == 1024)
                return usage_err("too many arguments");
            a->pos[a->npos++] = s;
            continue;
        }
        char *eq = strchr(s, '=');
        size_t n = eq ? (size_t)(eq - s) : strlen(s);
        if (n >= sizeof name)
            return usage_err("unknown option %s", s);
        memcpy(name, s, n);
        name[n] = 0;
        struct opt *o = opt_find(opts, name);
        if (!o)
            return usage_err("unknown option %s", name);
        if (o->has_arg) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return usage_err("%s needs a value", name);
        } else if (eq) {
            return usage_err("%s takes no value", name);
        }
        if (o->set && !o->multi && o->has_arg)
            return usage_err("%s given twice", name);
        if (o->multi && o->set) {
            size_t old = strlen(o->multi_buf), add = strlen(val);
            char *nb = realloc(o->multi_buf, old + add + 2);
            if (!nb)
                return usage_err("out of memory");
            nb[old] = '\n';
            memcpy(nb + old + 1, val, add + 1);
            o->multi_buf = nb;
            o->val = nb;
        } else if (o->multi) {
            o->multi_buf = strdup(val);
            o->val = o->multi_buf;
        } else {
            o->val = val;
        }
        o->set = 1;
    }
    return 0;
}

static void opts_free(struct opt *o)
{
    for (; o->name; o++)
        free(o->multi_buf);
}

static const char *ov(struct opt *opts, const char *name)
{
    struct opt *o = opt_find(opts, name);
    return o && o->set ? o->val : NULL;
}

static int oset(struct opt *opts, const char *name)
{
    struct opt *o = opt_find(opts, name);
    return o && o->set;
}

static int parse_int(const char *s, long long lo, long long hi,
                     long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* ---- session ----------------------------------------------------------
 * The one-shot commands (inbox, show, claim, chat, answer, close, reopen,
 * get, and send --study) speak the REST twin under /api over one
 * kept-alive HTTPS connection.  A hashi.v1 session would replay every
 * event the user has not acknowledged yet on each command, only for it
 * to be thrown away: traffic a slow link cannot spare.  `send` with files
 * needs one for its uploads: its hello names the user's last seq, so
 * nothing is replayed.  Only watch acknowledges events (an ack is what
 * marks messages delivered to the user). */

struct cli {
    struct cli_config cfg;
    struct conn *c;
};

/* Loads the saved login and makes the connection (not yet connected). */
static int cli_open(struct cli *cl, struct err *e)
{
    int rc;
    memset(cl, 0, sizeof *cl);
    if ((rc = cliconf_load(&cl->cfg, e))) {
        if (rc == ERR_NOTFOUND)
            return err_wrap(e, ERR_AUTH, "", "");
        return rc;
    }
    if (!cl->cfg.server[0] || !cl->cfg.token[0])
        return err_set(e, ERR_AUTH, "not logged in; run 'hashi login' "
                       "first");
    struct conn_opts o = {
        .cacert = cl->cfg.cacert[0] ? cl->cfg.cacert : NULL,
        .insecure = cl->cfg.insecure,
    };
    cl->c = conn_new(cl->cfg.server, &o, e);
    if (!cl->c)
        return e->code ? e->code : ERR_INVALID;
    if (cl->cfg.insecure)
        fprintf(stderr, "hashi: WARNING: logged in with --insecure: the "
                "server's certificate is NOT verified\n");
    return 0;
}

static void cli_close(struct cli *cl)
{
    conn_free(cl->c);
    cl->c = NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* A refused token reads the same wherever it shows up. */
static int auth_refused(struct err *e)
{
    return err_wrap(e, ERR_AUTH, "the server refused the saved login (",
                    "); run 'hashi login' again");
}

/* One request of the REST twin (body borrowed, may be NULL): 0 and *out
 * (the answer's JSON, the caller's; may be NULL) on a 2xx.  A refusal is
 * a negative ERR_* with the server's message in e and its error code
 * ("already_claimed", "not_found", ...) in code (may be NULL).  *status
 * (may be NULL) is the last HTTP status, 0 when no answer came at all.
 *
 * A cut, or a 502/503/504, is retried on a new connection: every call is
 * idempotent — creates carry their client-made case_id or message_id,
 * and the same user's claim, answer, close or reopen again is answered
 * with the case as it is. */
static int api(struct cli *cl, const char *method, const char *path,
               json_t *body, json_t **out, char code[32], int *status,
               struct err *e)
{
    int rc = 0, st = 0, wait = 500;
    json_t *ans = NULL;

    *out = NULL;
    if (code)
        code[0] = 0;
    for (int attempt = 0; attempt < NET_ATTEMPTS; attempt++) {
        if (attempt) {
            sleep_ms(wait);
            wait *= 2;
        }
        json_decref(ans);
        ans = NULL;
        st = 0;
        rc = conn_json(cl->c, method, path, cl->cfg.token, body, &st, &ans,
                       e);
        if (rc == ERR_IO)
            continue;               /* no answer: connect again */
        if (rc)
            break;
        if (st == 502 || st == 503 || st == 504) {
            rc = conn_http_error(st, ans, e);
            conn_disconnect(cl->c);
            continue;
        }
        break;
    }
    if (status)
        *status = st;
    if (rc) {
        json_decref(ans);
        return rc;
    }
    if (st < 200 || st > 299) {
        const char *c = json_string_value(json_object_get(
            json_object_get(ans, "error"), "code"));
        if (code && c)
            strlcpy_h(code, c, 32);
        rc = conn_http_error(st, ans, e);
        json_decref(ans);
        return rc == ERR_AUTH ? auth_refused(e) : rc;
    }
    *out = ans;
    return 0;
}

/* The REST body of a request: its hashi.v1 object without the envelope
 * (type, id) and without case_id (the path names the case).  NULL with
 * e set when m breaks the codec's rules. */
static json_t *rest_body(const struct msg *m, struct err *e)
{
    struct msg_error me;
    json_t *j = msg_to_json(m, &me);
    if (!j) {
        err_set(e, ERR_INVALID, "%s", me.message);
        return NULL;
    }
    json_object_del(j, "type");
    json_object_del(j, "id");
    json_object_del(j, "case_id");
    return j;
}

/* ---- printing ------------------------------------------------------- */

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void human(double b, char *out, size_t n)
{
    if (b >= 1e9)
        snprintf(out, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(out, n, "%.1f MB", b / 1e6);
    else if (b >= 1e3)
        snprintf(out, n, "%.1f kB", b / 1e3);
    else
        snprintf(out, n, "%.0f B", b);
}

static void fmt_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !localtime_r(&t, &tm)) {
        snprintf(out, n, "-");
        return;
    }
    strftime(out, n, "%Y-%m-%d %H:%M", &tm);
}

/* Text shortened to max display bytes, control characters as spaces. */
static void clip(const char *s, size_t max, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 4 < n; s++) {
        if (k >= max) {
            /* back to a UTF-8 boundary */
            while (k && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
                k--;
            if (k && ((unsigned char)out[k - 1] & 0xC0) == 0xC0)
                k--;
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        out[k++] = (unsigned char)*s < 0x20 ? ' ' : *s;
    }
    out[k] = 0;
}

static void patient_str(json_t *cs, char *out, size_t n)
{
    json_t *p = json_object_get(cs, "patient");
    json_t *age = json_object_get(p, "age");
    const char *sex = jstr(p, "sex");
    if (json_is_integer(age))
        snprintf(out, n, "%lld%s%s", (long long)json_integer_value(age),
                 *sex ? " " : "", sex);
    else
        snprintf(out, n, "%s", *sex ? sex : "-");
}

/* "N of M" when the expected count is known (study.expect), else "N";
 * images is a Case's {"received", "expected"}. */
static void images_str(json_t *images, const char *of, char *out, size_t n)
{
    long long got = json_integer_value(json_object_get(images, "received"));
    json_t *want = json_object_get(images, "expected");
    if (json_is_integer(want))
        snprintf(out, n, "%lld%s%lld", got, of,
                 (long long)json_integer_value(want));
    else
        snprintf(out, n, "%lld", got);
}

static const char *case_to(json_t *cs)
{
    const char *s = jstr(cs, "specialist");
    return *s ? s : jstr(cs, "specialty");
}

/* ---- login / logout ------------------------------------------------- */

static int read_password(int from_stdin, char *buf, size_t n,
                         struct err *e)
{
    FILE *in = stdin;
    struct termios old, quiet;
    int tty = 0;

    if (!from_stdin) {
        in = fopen("/dev/tty", "r+");
        if (!in || !isatty(fileno(in))) {
            if (in)
                fclose(in);
            return err_set(e, ERR_INVALID, "no terminal to ask the "
                           "password on; use --password-stdin");
        }
        tty = 1;
        fputs("password: ", stderr);
        fflush(stderr);
        if (tcgetattr(fileno(in), &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(fileno(in), TCSAFLUSH, &quiet);
        }
    }
    char *got = fgets(buf, (int)n, in);
    if (tty) {
        tcsetattr(fileno(in), TCSAFLUSH, &old);
        fputc('\n', stderr);
        fclose(in);
    }
    if (!got)
        return err_set(e, ERR_INVALID, "no password given");
    buf[strcspn(buf, "\r\n")] = 0;
    if (!buf[0])
        return err_set(e, ERR_INVALID, "empty password");
    return 0;
}

static int cmd_login(int argc, char **argv)
{
    struct opt opts[] = {
        OPT("--server", 1), OPT("--user", 1), OPT("--password-stdin", 0),
        OPT("--cacert", 1), OPT("--insecure", 0), OPT_END,
    };
    struct args a;
    struct err e = { 0, "" };
    struct cli_config cfg;
    char pw[1024], cacert[PATH_MAX] = "";
    int rc, status = 0;
    json_t *body, *out = NULL;

    if ((rc = parse_opts(argc, argv, opts, &a)))
        return rc;
    if (a.npos)
        return usage_err("unexpected argument '%s'", a.pos[0]);
    if (!ov(opts, "--server") || !ov(opts, "--user"))
        return usage_err("--server URL and --user LOGIN are required");
    if (ov(opts, "--cacert") && !realpath(ov(opts, "--cacert"), cacert))
        return usage_err("--cacert %s: %s", ov(opts, "--cacert"),
                         strerror(errno));
    if (read_password(oset(opts, "--password-stdin"), pw, sizeof pw, &e))
        return usage_err("%s", e.msg);
    if (oset(opts, "--insecure"))
        fprintf(stderr, "hashi: WARNING: --insecure: the server's "
                "certificate is NOT verified\n");

    struct conn_opts co = { .cacert = cacert[0] ? cacert : NULL,
                            .insecure = oset(opts, "--insecure") };
    struct conn *c = conn_new(ov(opts, "--server"), &co, &e);
    if (!c)
        return usage_err("%s", e.msg);
    body = json_pack("{s:s,s:s}", "login", ov(opts, "--user"),
                     "password", pw);
    OPENSSL_cleanse(pw, sizeof pw);
    rc = conn_json(c, "POST", "/api/login", NULL, body, &status, &out, &e);
    json_decref(body);
    if (!rc && status != 200) {
        rc = conn_http_error(status, out, &e);
        if (status == 401)
            rc = err_set(&e, ERR_AUTH, "wrong login or password");
        else if (status == 429)
            rc = err_wrap(&e, ERR_AUTH, "", "");
    }
    const char *tok = json_string_value(json_object_get(out, "token"));
    if (!rc && (!tok || !*tok))
        rc = err_set(&e, ERR_IO, "the server's answer has no token");
    if (!rc && strlen(tok) >= sizeof cfg.token)
        rc = err_set(&e, ERR_IO, "the server's token is too long");
    if (!rc)
        rc = cliconf_init(&cfg, &e);
    if (!rc) {
        strlcpy_h(cfg.server, conn_url(c), sizeof cfg.server);
        strlcpy_h(cfg.cacert, cacert, sizeof cfg.cacert);
        strlcpy_h(cfg.user, ov(opts, "--user"), sizeof cfg.user);
        strlcpy_h(cfg.token, tok, sizeof cfg.token);
        cfg.insecure = co.insecure;
        rc = cliconf_save(&cfg, &e);
    }
    json_decref(out);
    conn_free(c);
    if (rc)
        return fail(rc, &e);
    printf("logged in to %s as %s\n", cfg.server, cfg.user);
    return EX_OK;
}

static int cmd_logout(int argc, char **argv)
{
    struct opt opts[] = { OPT_END };
    struct args a;
    struct cli cl;
    struct err e = { 0, "" };
    int rc = parse_opts(argc, argv, opts, &a), status;
    json_t *out = NULL;

    if (rc)
        return rc;
    if (a.npos)
        return usage_err("unexpected argument '%s'", a.pos[0]);
    rc = cli_open(&cl, &e);
    if (rc == ERR_AUTH) {
        printf("not logged in\n");
        return EX_OK;
    }
    if (rc)
        return fail(rc, &e);
    /* Revoke the token if the server is there; forget it anyway. */
    if (conn_json(cl.c, "POST", "/api/logout", cl.cfg.token, NULL, &status,
                  &out, &e) == 0 && status >= 300 && status != 401)
        fprintf(stderr, "hashi: logout: the server said HTTP %d\n", status);
    json_decref(out);
    rc = cliconf_remove(&cl.cfg, &e);
    cli_close(&cl);
    if (rc)
        return fail(rc, &e);
    printf("logged out\n");
    return EX_OK;
}

/* ---- inbox / show --------------------------------------------------- */

/* One GET of the REST API on a connection of its own: 0 and *res (the
 * caller's), or the command's exit code with the error printed. */
static int get_once(const char *path, json_t **res)
{
    struct cli cl;
    struct err e = { 0, "" };
    int rc;
    if ((rc = cli_open(&cl, &e)) ||
        (rc = api(&cl, "GET", path, NULL, res, NULL, NULL, &e))) {
        cli_close(&cl);
        return fail(rc, &e);
    }
    cli_close(&cl);
    return 0;
}

static int cmd_inbox(int argc, char **argv)
{
    struct opt opts[] = {
        OPT("--json", 0), OPT("--status", 1), OPT("--limit", 1), OPT_END,
    };
    struct args a;
    json_t *res = NULL;
    long long limit = MSG_LIST_DEFAULT;
    char path[128];
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc)
        return rc;
    if (a.npos)
        return usage_err("unexpected argument '%s'", a.pos[0]);
    if (ov(opts, "--limit") &&
        parse_int(ov(opts, "--limit"), 1, MSG_LIST_MAX, &limit))
        return usage_err("--limit must be 1..%d", MSG_LIST_MAX);
    int n = snprintf(path, sizeof path, "/api/cases?limit=%lld", limit);
    if (ov(opts, "--status")) {
        int s;
        for (s = 1; s < MSG_ST_COUNT; s++)
            if (!strcmp(msg_status_name(s), ov(opts, "--status")))
                break;
        if (s == MSG_ST_COUNT)
            return usage_err("--status must be new, claimed, answered, "
                             "closed or reopened");
        snprintf(path + n, sizeof path - (size_t)n, "&status=%s",
                 msg_status_name(s));
    }
    if ((rc = get_once(path, &res)))
        return rc;
    if (oset(opts, "--json")) {
        print_json(res);
    } else {
        json_t *cases = json_object_get(res, "cases"), *cs;
        size_t i;
        if (!json_array_size(cases))
            printf("no cases\n");
        else
            printf("%-32s  %-8s  %-7s  %-14s  %-7s  %-9s  %-16s  %s\n",
                   "CASE", "STATUS", "PRIO", "TO", "PATIENT", "IMAGES",
                   "UPDATED", "QUESTION");
        json_array_foreach(cases, i, cs) {
            char pat[32], when[32], q[200], imgs[48];
            patient_str(cs, pat, sizeof pat);
            images_str(json_object_get(cs, "images"), "/", imgs,
                       sizeof imgs);
            fmt_time(json_integer_value(json_object_get(cs, "updated_at")),
                     when, sizeof when);
            clip(jstr(cs, "question"), 60, q, sizeof q);
            printf("%-32s  %-8s  %-7s  %-14s  %-7s  %-9s  %-16s  %s\n",
                   jstr(cs, "case_id"), jstr(cs, "status"),
                   jstr(cs, "priority"), case_to(cs), pat, imgs, when, q);
        }
    }
    json_decref(res);
    return EX_OK;
}

static void print_case(json_t *cs)
{
    char pat[32], when[32], imgs[48];
    json_t *ans = json_object_get(cs, "answer"), *msgs, *m, *st;
    size_t i;

    patient_str(cs, pat, sizeof pat);
    printf("case       %s\n", jstr(cs, "case_id"));
    printf("status     %s%s%s\n", jstr(cs, "status"),
           *jstr(cs, "claimed_by") ? " by " : "", jstr(cs, "claimed_by"));
    printf("priority   %s\n", jstr(cs, "priority"));
    printf("to         %s%s%s\n", jstr(cs, "specialty"),
           *jstr(cs, "specialist") ? " / " : "", jstr(cs, "specialist"));
    printf("from       %s (%s)\n", jstr(cs, "requester"),
           jstr(cs, "clinic"));
    printf("patient    %s\n", pat);
    fmt_time(json_integer_value(json_object_get(cs, "created_at")), when,
             sizeof when);
    printf("created    %s\n", when);
    printf("question   %s\n", jstr(cs, "question"));
    if (*jstr(cs, "history"))
        printf("history    %s\n", jstr(cs, "history"));
    json_array_foreach(json_object_get(cs, "study_uids"), i, st)
        printf("study      %s\n", json_string_value(st));
    images_str(json_object_get(cs, "images"), " of ", imgs, sizeof imgs);
    printf("images     %s received\n", imgs);
    if (json_is_object(ans)) {
        fmt_time(json_integer_value(json_object_get(ans, "at")), when,
                 sizeof when);
        printf("answer     by %s at %s\n", jstr(ans, "by"), when);
        if (*jstr(ans, "impression"))
            printf("  impression      %s\n", jstr(ans, "impression"));
        if (*jstr(ans, "recommendation"))
            printf("  recommendation  %s\n", jstr(ans, "recommendation"));
        if (*jstr(ans, "text"))
            printf("  text            %s\n", jstr(ans, "text"));
    }
    msgs = json_object_get(cs, "messages");
    if (json_array_size(msgs))
        printf("messages\n");
    json_array_foreach(msgs, i, m) {
        fmt_time(json_integer_value(json_object_get(m, "created_at")), when,
                 sizeof when);
        printf("  [%s] %s: %s\n", when, jstr(m, "author"), jstr(m, "text"));
    }
}

/* CASE as the one positional argument, checked as an id. */
static int case_arg(struct args *a, int npos, const char **case_id)
{
    if (a->npos < 1)
        return usage_err("which case? (CASE argument missing)");
    if (a->npos > npos)
        return usage_err("unexpected argument '%s'", a->pos[npos]);
    const char *s = a->pos[0];
    if (!*s || strlen(s) > MSG_ID_MAX ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
               "0123456789_-") != strlen(s))
        return usage_err("'%s' is not a case id", s);
    *case_id = s;
    return 0;
}

static int get_case(struct cli *cl, const char *case_id, json_t **cs,
                    struct err *e)
{
    char path[128];
    json_t *res = NULL;
    snprintf(path, sizeof path, "/api/cases/%s", case_id);
    int rc = api(cl, "GET", path, NULL, &res, NULL, NULL, e);
    if (rc == ERR_NOTFOUND)
        return err_set(e, rc, "case %s not found", case_id);
    if (rc)
        return rc;
    *cs = json_incref(json_object_get(res, "case"));
    json_decref(res);
    if (!json_is_object(*cs)) {
        json_decref(*cs);
        return err_set(e, ERR_INVALID, "the server's answer has no case");
    }
    return 0;
}

static int cmd_show(int argc, char **argv)
{
    struct opt opts[] = { OPT("--json", 0), OPT_END };
    struct args a;
    struct cli cl;
    struct err e = { 0, "" };
    const char *id;
    json_t *cs = NULL;
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc || (rc = case_arg(&a, 1, &id)))
        return rc;
    if ((rc = cli_open(&cl, &e)) || (rc = get_case(&cl, id, &cs, &e))) {
        cli_close(&cl);
        return fail(rc, &e);
    }
    cli_close(&cl);
    if (oset(opts, "--json")) {
        json_t *wrap = json_pack("{s:O}", "case", cs);
        print_json(wrap);
        json_decref(wrap);
    } else {
        print_case(cs);
    }
    json_decref(cs);
    return EX_OK;
}

/* ---- gateways ------------------------------------------------------ */

#define GATEWAY_STALE_MS 60000      /* no status for a minute: stale */

/* One line a gateway: "gateway NAME last seen <time> (N s ago), W
 * waiting, ..." — or "never seen" before its first gateway.status. */
static void print_gateway(json_t *g, int64_t now)
{
    json_t *st = json_object_get(g, "status");
    json_t *seen = json_object_get(g, "last_seen");
    char when[32], rate[32];
    if (!json_is_integer(seen)) {
        printf("gateway %s never seen\n", jstr(g, "name"));
        return;
    }
    int64_t at = json_integer_value(seen), ago = (now - at) / 1000;
    fmt_time(at, when, sizeof when);
    human((double)json_integer_value(json_object_get(st, "rate_bps")),
          rate, sizeof rate);
    printf("gateway %s last seen %s (%lld s ago%s), %lld waiting, %lld in "
           "flight, %lld done, %lld failed, %s/s", jstr(g, "name"), when,
           (long long)(ago < 0 ? 0 : ago),
           now - at > GATEWAY_STALE_MS ? ", STALE" : "",
           (long long)json_integer_value(json_object_get(st, "waiting")),
           (long long)json_integer_value(json_object_get(st, "in_flight")),
           (long long)json_integer_value(json_object_get(st, "done")),
           (long long)json_integer_value(json_object_get(st, "failed")),
           rate);
    if (*jstr(st, "last_error")) {
        char err[200];
        clip(jstr(st, "last_error"), 120, err, sizeof err);
        printf(", last error: %s", err);
    }
    putchar('\n');
}

static int cmd_gateways(int argc, char **argv)
{
    struct opt opts[] = { OPT("--json", 0), OPT_END };
    struct args a;
    json_t *res = NULL, *g;
    size_t i;
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc)
        return rc;
    if (a.npos)
        return usage_err("unexpected argument '%s'", a.pos[0]);
    if ((rc = get_once("/api/gateways", &res)))
        return rc;
    if (oset(opts, "--json")) {
        print_json(res);
    } else {
        json_t *list = json_object_get(res, "gateways");
        if (!json_array_size(list))
            printf("no gateways\n");
        json_array_foreach(list, i, g)
            print_gateway(g, now_ms());
    }
    json_decref(res);
    return EX_OK;
}

/* ---- claim / chat / answer / close / reopen -------------------------- */

/* POST path with body (stolen; NULL when building it failed, e says
 * why), then the answer as JSON or as done_fmt with the case id. */
static int simple_call(const char *path, json_t *body, struct err *be,
                       int json, const char *done_fmt, const char *case_id)
{
    struct cli cl;
    struct err e = { 0, "" };
    json_t *res = NULL;
    char code[32] = "";
    int rc;

    if (!body)
        return usage_err("%s", be->msg);
    if ((rc = cli_open(&cl, &e)) ||
        (rc = api(&cl, "POST", path, body, &res, code, NULL, &e))) {
        cli_close(&cl);
        json_decref(body);
        if (!strcmp(code, "already_claimed") && !strstr(e.msg, "already"))
            err_wrap(&e, rc, "already claimed: ", "");
        if (rc == ERR_NOTFOUND)
            err_set(&e, rc, "case %s not found", case_id);
        return fail(rc, &e);
    }
    cli_close(&cl);
    json_decref(body);
    if (json)
        print_json(res);
    else if (done_fmt)
        printf(done_fmt, case_id);
    json_decref(res);
    return EX_OK;
}

static int cmd_case_ref(int argc, char **argv, enum msg_type type)
{
    struct opt opts[] = { OPT("--json", 0), OPT("--reason", 1), OPT_END };
    struct args a;
    struct msg req;
    struct msg_error me;
    struct err e = { 0, "" };
    const char *id, *verb;
    char rid[33], path[128];
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc || (rc = case_arg(&a, 1, &id)))
        return rc;
    if (type == MSG_CASE_CLAIM && ov(opts, "--reason"))
        return usage_err("--reason is for close and reopen");
    conn_random_id(rid);
    if (msg_build_case_ref(&req, type, rid, id, ov(opts, "--reason"), &me))
        return usage_err("%s", me.message);
    json_t *body = rest_body(&req, &e);
    msg_free(&req);
    verb = type == MSG_CASE_CLAIM ? "claim" : type == MSG_CASE_CLOSE
           ? "close" : "reopen";
    snprintf(path, sizeof path, "/api/cases/%s/%s", id, verb);
    return simple_call(path, body, &e, oset(opts, "--json"),
                       type == MSG_CASE_CLAIM ? "claimed %s\n"
                       : type == MSG_CASE_CLOSE ? "closed %s\n"
                       : "reopened %s\n", id);
}

static int cmd_chat(int argc, char **argv)
{
    struct opt opts[] = { OPT("--json", 0), OPT_END };
    struct args a;
    struct msg req;
    struct msg_error me;
    struct err e = { 0, "" };
    const char *id;
    char path[128];
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc)
        return rc;
    if (a.npos < 2)
        return usage_err("usage: hashi chat CASE TEXT");
    if ((rc = case_arg(&a, 2, &id)))
        return rc;
    msg_init(&req, MSG_MESSAGE_SEND);
    conn_random_id(req.id);
    strlcpy_h(req.message_send.case_id, id, sizeof req.message_send.case_id);
    /* made here, so a retry after a cut is the same message */
    conn_random_id(req.message_send.message_id);
    if (strlen(a.pos[1]) > MSG_TEXT_MAX)
        return usage_err("the text is longer than %d bytes", MSG_TEXT_MAX);
    strlcpy_h(req.message_send.text, a.pos[1], sizeof req.message_send.text);
    if (msg_validate(&req, &me))
        return usage_err("%s", me.message);
    json_t *body = rest_body(&req, &e);
    msg_free(&req);
    snprintf(path, sizeof path, "/api/cases/%s/messages", id);
    return simple_call(path, body, &e, oset(opts, "--json"), "sent to %s\n",
                       id);
}

static int cmd_answer(int argc, char **argv)
{
    struct opt opts[] = {
        OPT("--json", 0), OPT("--impression", 1), OPT("--recommendation", 1),
        OPT_END,
    };
    struct args a;
    struct msg req;
    struct msg_error me;
    struct err e = { 0, "" };
    const char *id, *imp, *rec;
    char path[128];
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc || (rc = case_arg(&a, 2, &id)))
        return rc;
    imp = ov(opts, "--impression");
    rec = ov(opts, "--recommendation");
    if (a.npos < 2 && !imp)
        return usage_err("an answer needs TEXT or --impression");
    msg_init(&req, MSG_CASE_ANSWER);
    conn_random_id(req.id);
    struct msg_case_answer *an = &req.case_answer;
    strlcpy_h(an->case_id, id, sizeof an->case_id);
    if ((imp && strlen(imp) > MSG_IMPRESSION_MAX) ||
        (rec && strlen(rec) > MSG_RECOMMEND_MAX) ||
        (a.npos > 1 && strlen(a.pos[1]) > MSG_ANSWER_TEXT_MAX))
        return usage_err("answer too long (impression and recommendation "
                         "%d bytes, text %d)", MSG_IMPRESSION_MAX,
                         MSG_ANSWER_TEXT_MAX);
    if (imp)
        strlcpy_h(an->impression, imp, sizeof an->impression);
    if (rec)
        strlcpy_h(an->recommendation, rec, sizeof an->recommendation);
    if (a.npos > 1)
        strlcpy_h(an->text, a.pos[1], sizeof an->text);
    if (msg_validate(&req, &me))
        return usage_err("%s", me.message);
    json_t *body = rest_body(&req, &e);
    msg_free(&req);
    snprintf(path, sizeof path, "/api/cases/%s/answer", id);
    return simple_call(path, body, &e, oset(opts, "--json"),
                       "answered %s\n", id);
}

/* ---- watch ---------------------------------------------------------- */

static void print_event_line(const struct msg_event *ev)
{
    json_t *b = ev->body, *cs = json_object_get(b, "case");
    char when[32], t1[200];
    const char *kind = msg_kind_name(ev->kind);

    fmt_time(ev->at, when, sizeof when);
    printf("%s  #%lld  %-14s %s  ", when, (long long)ev->seq,
           kind ? kind : "?", ev->case_id);
    switch (ev->kind) {
    case MSG_EV_CASE_NEW:
        clip(jstr(cs, "question"), 80, t1, sizeof t1);
        printf("%s %s from %s: %s", jstr(cs, "priority"), case_to(cs),
               jstr(cs, "requester"), t1);
        break;
    case MSG_EV_CASE_CLAIMED:
        printf("claimed by %s", jstr(cs, "claimed_by"));
        break;
    case MSG_EV_CASE_ANSWERED: {
        json_t *an = json_object_get(cs, "answer");
        clip(*jstr(an, "impression") ? jstr(an, "impression")
             : jstr(an, "text"), 80, t1, sizeof t1);
        printf("answered by %s: %s", jstr(an, "by"), t1);
        break;
    }
    case MSG_EV_CASE_CLOSED:
    case MSG_EV_CASE_REOPENED:
        printf("now %s", jstr(cs, "status"));
        break;
    case MSG_EV_CASE_ESCALATED: {
        json_t *esc = json_object_get(b, "escalation"), *to;
        size_t i;
        printf("escalated (level %lld, %s) to",
               (long long)json_integer_value(json_object_get(esc, "level")),
               jstr(esc, "scope"));
        json_array_foreach(json_object_get(esc, "to"), i, to)
            printf(" %s", json_string_value(to));
        break;
    }
    case MSG_EV_MESSAGE_NEW: {
        json_t *m = json_object_get(b, "message");
        clip(jstr(m, "text"), 100, t1, sizeof t1);
        printf("%s: %s", jstr(m, "author"), t1);
        break;
    }
    case MSG_EV_MESSAGE_READ: {
        json_t *r = json_object_get(b, "receipt");
        printf("%s read message %s", jstr(r, "user"),
               jstr(r, "message_id"));
        break;
    }
    case MSG_EV_IMAGES_ARRIVED:
        images_str(json_object_get(b, "images"), " of ", t1, sizeof t1);
        printf("%s image(s) received", t1);
        break;
    default:
        break;
    }
    putchar('\n');
}

static int print_event(const struct msg *m, int json)
{
    if (json) {
        struct msg_error me;
        json_t *j = msg_to_json(m, &me);
        if (!j)
            return -1;
        print_json(j);
        json_decref(j);
    } else {
        print_event_line(&m->event);
    }
    return fflush(stdout) || ferror(stdout) ? -1 : 0;
}

struct watch {
    struct cli *cl;
    struct cli_watch w;
    int json, once;
    long long count, printed;
    int64_t acked;                  /* highest seq acked this session */
    int64_t unsaved;                /* events processed, not yet saved */
};

/* Saves last_seq durably, then acks it. */
static int watch_commit(struct watch *wt, struct err *e)
{
    int rc;
    if (!wt->unsaved && wt->acked >= wt->w.last_seq)
        return 0;
    if (wt->unsaved && (rc = cliconf_watch_save(&wt->cl->cfg, &wt->w, e)))
        return rc;
    wt->unsaved = 0;
    if (wt->w.last_seq > wt->acked) {
        if ((rc = conn_v1_ack(wt->cl->c, wt->w.last_seq, e)))
            return rc;
        wt->acked = wt->w.last_seq;
    }
    return 0;
}

/* One session: hello, replay, live.  Returns 0 when done (--once caught
 * up, --count reached), ERR_IO when the link broke, other < 0 to stop. */
static int watch_session(struct watch *wt, int *fatal, struct err *e)
{
    struct cli *cl = wt->cl;
    struct msg welcome;
    int64_t target;
    int rc;

    struct conn_v1_hello h = {
        .token = cl->cfg.token, .last_seq = wt->w.last_seq,
        .client_name = CLIENT_NAME, .client_version = HASHI_VERSION,
        .keep_events = 1,
    };
    rc = conn_v1_open(cl->c, &h, &welcome, e);
    if (rc) {
        msg_free(&welcome);
        *fatal = rc == ERR_AUTH;
        return rc == ERR_AUTH ? auth_refused(e) : rc;
    }
    wt->acked = 0;
    if (welcome.welcome.replay_from < wt->w.last_seq) {
        /* The server restarted from older data or pruned: its seqs are
         * not ours any more; event ids keep us from repeating. */
        wt->w.last_seq = welcome.welcome.replay_from;
        wt->unsaved++;
    }
    target = welcome.welcome.last_seq;
    msg_free(&welcome);
    if (wt->once && target <= wt->w.last_seq)
        return watch_commit(wt, e) ? (*fatal = 1, e->code) : 0;

    for (;;) {
        struct msg m;
        int wait = 1000;
        rc = conn_v1_next(cl->c, wait, &m, e);
        if (rc == CONN_TIMEOUT) {
            if ((rc = conn_ws_keepalive(cl->c, CONN_WS_PING_MS,
                                        CONN_WS_DEAD_MS, e)))
                return rc;
            continue;
        }
        if (rc) {
            *fatal = rc == ERR_AUTH;
            return rc;
        }
        if (m.type == MSG_ERROR) {
            fprintf(stderr, "hashi: watch: the server says %s: %s\n",
                    msg_code_name(m.error.error.code),
                    m.error.error.message);
            int code = m.error.error.code;
            msg_free(&m);
            if (code == MSG_E_UNAUTHORIZED) {
                *fatal = 1;
                return err_set(e, ERR_AUTH, "session refused");
            }
            continue;
        }
        if (m.type != MSG_EVENT) {
            msg_free(&m);
            continue;
        }
        const struct msg_event *ev = &m.event;
        int dup = ev->seq <= wt->w.last_seq ||
                  cliconf_watch_seen(&wt->w, ev->event_id);
        if (!dup) {
            if (print_event(&m, wt->json)) {
                msg_free(&m);
                *fatal = 1;
                return err_set(e, ERR_IO, "cannot write to stdout");
            }
            cliconf_watch_add(&wt->w, ev->event_id);
            wt->printed++;
        }
        if (ev->seq > wt->w.last_seq)
            wt->w.last_seq = ev->seq;
        wt->unsaved++;
        msg_free(&m);
        int done = (wt->count && wt->printed >= wt->count) ||
                   (wt->once && wt->w.last_seq >= target);
        if (done || wt->unsaved >= WATCH_ACK_EVERY ||
            !conn_v1_ready(cl->c)) {
            if ((rc = watch_commit(wt, e))) {
                *fatal = rc != ERR_IO;
                return rc;
            }
        }
        if (done)
            return 0;
    }
}

static int cmd_watch(int argc, char **argv)
{
    struct opt opts[] = {
        OPT("--json", 0), OPT("--once", 0), OPT("--count", 1), OPT_END,
    };
    struct args a;
    struct cli cl;
    struct err e = { 0, "" };
    struct watch wt = { 0 };
    int rc = parse_opts(argc, argv, opts, &a), backoff = 1000;

    if (rc)
        return rc;
    if (a.npos)
        return usage_err("unexpected argument '%s'", a.pos[0]);
    if (ov(opts, "--count") &&
        parse_int(ov(opts, "--count"), 1, LLONG_MAX, &wt.count))
        return usage_err("--count must be a positive number");
    wt.json = oset(opts, "--json");
    wt.once = oset(opts, "--once");
    if ((rc = cli_open(&cl, &e)))
        return fail(rc, &e);
    wt.cl = &cl;
    if ((rc = cliconf_watch_load(&cl.cfg, &wt.w, &e))) {
        cli_close(&cl);
        return fail(rc, &e);
    }
    for (;;) {
        int fatal = 0;
        rc = watch_session(&wt, &fatal, &e);
        if (!rc)
            break;
        if (fatal || wt.once)
            break;
        conn_disconnect(cl.c);
        /* back off, 1 s doubling to 60 s, with jitter */
        int jitter = backoff / 4 ? rand() % (backoff / 4) : 0;
        fprintf(stderr, "hashi: watch: %s; reconnecting in %.1f s\n",
                e.msg, (backoff + jitter) / 1000.0);
        sleep_ms(backoff + jitter);
        if (backoff < 60000)
            backoff *= 2;
        if (backoff > 60000)
            backoff = 60000;
    }
    if (!rc && cl.c) {
        conn_ws_close(cl.c, 1000, "bye");
    }
    conn_free(cl.c);
    if (rc)
        return fail(rc, &e);
    return EX_OK;
}

/* ---- send ----------------------------------------------------------- */

struct file_ent {
    char *path;
    uint64_t size;
};

struct files {
    struct file_ent *v;
    size_t n, cap;
    uint64_t total;
};

static int files_add(struct files *f, const char *path, uint64_t size)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 64;
        struct file_ent *nv = realloc(f->v, nc * sizeof *nv);
        if (!nv)
            return ERR_INTERNAL;
        f->v = nv;
        f->cap = nc;
    }
    f->v[f->n].path = strdup(path);
    if (!f->v[f->n].path)
        return ERR_INTERNAL;
    f->v[f->n++].size = size;
    f->total += size;
    return 0;
}

static void files_free(struct files *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].path);
    free(f->v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or a directory walked in name order (dot files and DICOMDIR
 * skipped: they are not instances). */
static int collect(struct files *f, const char *path, int depth,
                   struct err *e)
{
    struct stat st;
    if (stat(path, &st))
        return err_set(e, ERR_INVALID, "%s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        if (!st.st_size)
            return err_set(e, ERR_INVALID, "%s is empty", path);
        return files_add(f, path, (uint64_t)st.st_size)
               ? err_set(e, ERR_INTERNAL, "out of memory") : 0;
    }
    if (!S_ISDIR(st.st_mode))
        return err_set(e, ERR_INVALID, "%s is not a file or directory",
                       path);
    if (depth > 32)
        return err_set(e, ERR_INVALID, "%s: directories nested too deep",
                       path);
    DIR *d = opendir(path);
    if (!d)
        return err_set(e, ERR_INVALID, "%s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "DICOMDIR"))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = err_set(e, ERR_INTERNAL, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = err_set(e, ERR_INTERNAL, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (!rc)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_MAX];
        if (!rc && path_join(sub, sizeof sub, path, names[i]))
            rc = err_set(e, ERR_INVALID, "path too long in %s", path);
        if (!rc)
            rc = collect(f, sub, depth + 1, e);
        free(names[i]);
    }
    free(names);
    return rc;
}

struct progress {
    int on;
    uint64_t total, done;
    double start, shown;
};

static void progress_show(struct progress *p, int final)
{
    double now = now_mono();
    char d[32], t[32], r[32];
    if (!p->on || (!final && now - p->shown < 0.1))
        return;
    p->shown = now;
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100;
    double el = now - p->start;
    int bar = (int)(pct / 100 * 30);
    human((double)p->done, d, sizeof d);
    human((double)p->total, t, sizeof t);
    human(el > 0 ? (double)p->done / el : 0, r, sizeof r);
    fprintf(stderr, "\r[%.*s%*s] %3.0f%%  %s / %s  %s/s ", bar,
            "##############################", 30 - bar, "", pct, d, t, r);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---- send: files as hashi.v1 uploads --------------------------------
 * Files are read here first: each must parse as DICOM (a bad one stops
 * the send before anything goes out), its sha256 names its upload, and
 * its study is counted for study.expect.  Each study also gets a
 * preview (its middle file, default window, <= 512 px) sent ahead of
 * its instances, so the specialist sees something at once. */

#define PREVIEW_PX 512

struct sendjob {
    struct up_file *up;             /* previews, then instances */
    size_t nup;
    json_t *studies;                /* study UIDs, first seen first */
    json_t *counts;                 /* study UID -> distinct SOP UIDs */
    int priority;                   /* enum msg_priority, for expect */
    struct progress pg;
};

static void sendjob_free(struct sendjob *sj)
{
    for (size_t i = 0; i < sj->nup; i++)
        free((void *)sj->up[i].data);
    free(sj->up);
    json_decref(sj->studies);
    json_decref(sj->counts);
}

/* A JPEG preview of the study's middle file, as one more upload (none
 * when the file has no image DCMTK can render: not an error). */
static void add_preview(struct sendjob *sj, const char *path,
                        const char *study)
{
    struct dcm_render_opts o = { .window_mode = DCM_WINDOW_DEFAULT,
                                 .max_width = PREVIEW_PX,
                                 .max_height = PREVIEW_PX };
    struct err e = { 0, "" };
    unsigned char *jpeg = NULL;
    size_t len = 0;
    if (dicom_render_jpeg(path, &o, &jpeg, &len, NULL, NULL, &e) ||
        !len || len > MSG_PREVIEW_MAX) {
        free(jpeg);
        return;
    }
    struct up_file *p = &sj->up[sj->nup++];
    memset(p, 0, sizeof *p);
    p->data = jpeg;
    p->size = len;
    sha256_hex(jpeg, len, p->sha256);
    strlcpy_h(p->study_uid, study, sizeof p->study_uid);
}

static int sendjob_prepare(struct sendjob *sj, struct files *f,
                           struct err *e)
{
    struct dcm_info info;
    json_t *sops = json_object();   /* SOP UID -> 1, to count once */
    json_t *first = json_object();  /* study UID -> its files' paths */
    struct up_file *inst;
    size_t ninst = 0, i, k;
    int rc = 0;

    memset(sj, 0, sizeof *sj);
    sj->studies = json_array();
    sj->counts = json_object();
    sj->up = calloc(f->n * 2 + 1, sizeof *sj->up);
    inst = calloc(f->n + 1, sizeof *inst);
    if (!sj->up || !inst || !sops || !first)
        rc = err_set(e, ERR_INTERNAL, "out of memory");
    for (i = 0; i < f->n && !rc; i++) {
        struct up_file *u = &inst[ninst];
        uint64_t size;
        if ((rc = dicom_parse_file(f->v[i].path, &info, e))) {
            char pre[PATH_MAX + 32];
            snprintf(pre, sizeof pre, "%s: not DICOM (", f->v[i].path);
            rc = err_wrap(e, ERR_INVALID, pre, ")");
            break;
        }
        if ((rc = sha256_file(f->v[i].path, u->sha256, &size, e)))
            break;
        for (k = 0; k < ninst && strcmp(inst[k].sha256, u->sha256); k++)
            ;
        if (k < ninst)
            continue;               /* the same bytes twice: once */
        u->path = f->v[i].path;
        u->size = size;
        ninst++;
        json_t *paths = json_object_get(first, info.study_uid);
        if (!paths) {
            json_array_append_new(sj->studies,
                                  json_string(info.study_uid));
            json_object_set_new(first, info.study_uid, paths = json_array());
        }
        json_array_append_new(paths, json_string(u->path));
        if (!json_object_get(sops, info.sop_uid)) {
            json_object_set_new(sops, info.sop_uid, json_true());
            json_t *n = json_object_get(sj->counts, info.study_uid);
            json_object_set_new(sj->counts, info.study_uid, json_integer(
                json_integer_value(n) + 1));
        }
    }
    if (!rc) {
        json_t *st;
        json_array_foreach(sj->studies, i, st) {
            json_t *paths = json_object_get(first, json_string_value(st));
            add_preview(sj, json_string_value(json_array_get(
                paths, json_array_size(paths) / 2)), json_string_value(st));
        }
        memcpy(sj->up + sj->nup, inst, ninst * sizeof *inst);
        sj->nup += ninst;
        for (i = 0; i < sj->nup; i++)
            sj->pg.total += sj->up[i].size;
    }
    free(inst);
    json_decref(sops);
    json_decref(first);
    return rc;
}

static void send_progress(void *arg, uint64_t acked)
{
    struct progress *pg = arg;
    pg->done = acked;
    progress_show(pg, 0);
}

/* One step of a session: a request answered by a reply.  0 and *result
 * (may be NULL) when ok; a refusal as its ERR_* with *final set; a cut,
 * or a server asking to try again, as ERR_IO. */
static int v1_step(struct cli *cl, struct msg *req, json_t **result,
                   int *final, struct err *e)
{
    enum msg_code code;
    json_t *res = NULL;
    int rc = conn_v1_call(cl->c, req, &res, &code, e);
    if (result)
        *result = res;
    else
        json_decref(res);
    if (rc && code != MSG_E_NONE && code != MSG_E_NOT_READY &&
        code != MSG_E_INTERNAL && code != MSG_E_RATE_LIMITED)
        *final = 1;
    else if (rc && rc != ERR_AUTH)
        rc = ERR_IO;
    return rc;
}

/* study.expect for every study, the case create, the uploads — over one
 * hashi.v1 session, again on a new one after a cut: the expect is
 * replaced, the create kept by its case id, and the uploads resume where
 * the server's durable offsets say.  NET_ATTEMPTS sessions in a row that
 * get nothing done end it (ERR_IO, *final 0).  *created: the create was
 * answered (*res). */
static int send_v1(struct cli *cl, struct sendjob *sj, struct msg *create,
                   json_t **res, int *created, int *final, struct err *e)
{
    struct uploader u = { .f = sj->up, .n = sj->nup,
                          .progress = send_progress, .arg = &sj->pg,
                          .max_seq = -1 };
    int rc = 0, expected = 0, fails = 0, wait = 500;
    json_t *ev = NULL;

    *final = *created = 0;
    for (;;) {
        struct msg welcome;
        int got = 0;
        rc = 0;
        if (u.max_seq < 0) {
            /* the user's last event seq, so hello replays nothing */
            int st = 0;
            rc = conn_json(cl->c, "GET", "/api/events?after="
                           "9007199254740991&limit=1", cl->cfg.token, NULL,
                           &st, &ev, e);
            if (!rc && st == 200)
                u.max_seq = json_integer_value(json_object_get(ev,
                                                               "last_seq"));
            else if (!rc)
                rc = conn_http_error(st, ev, e);
            json_decref(ev);
            ev = NULL;
            if (rc == ERR_AUTH)
                return auth_refused(e);
            if (rc && rc != ERR_IO)
                return rc;
        }
        if (!rc) {
            struct conn_v1_hello h = {
                .token = cl->cfg.token, .last_seq = u.max_seq,
                .client_name = CLIENT_NAME, .client_version = HASHI_VERSION,
            };
            rc = conn_v1_open(cl->c, &h, &welcome, e);
            if (!rc && welcome.welcome.last_seq > u.max_seq)
                u.max_seq = welcome.welcome.last_seq;
            msg_free(&welcome);
            if (rc == ERR_AUTH)
                return auth_refused(e);
        }
        for (size_t i = 0; !rc && !expected &&
             i < json_array_size(sj->studies); i++) {
            const char *st = json_string_value(json_array_get(sj->studies,
                                                              i));
            struct msg m;
            struct msg_error me;
            char id[33];
            conn_random_id(id);
            if (msg_build_study_expect(&m, id, st, json_integer_value(
                    json_object_get(sj->counts, st)), sj->priority, &me)) {
                *final = 1;
                return err_set(e, ERR_INVALID, "%s", me.message);
            }
            rc = v1_step(cl, &m, NULL, final, e);
            msg_free(&m);
            if (rc && *final)
                return err_wrap(e, rc, "study.expect: ", "");
            got += !rc;
        }
        expected |= !rc;
        if (!rc && !*created) {
            rc = v1_step(cl, create, res, final, e);
            if (rc && *final)
                return rc;
            *created = got = !rc;
        }
        if (!rc) {
            rc = uploader_run(&u, cl->c, e);
            got |= u.progressed;
            if (!rc) {
                conn_ws_close(cl->c, 1000, "bye");
                return 0;
            }
            if (rc == ERR_AUTH)
                return auth_refused(e);
        }
        conn_disconnect(cl->c);
        if (got) {
            fails = 0;
            wait = 500;
        }
        if (++fails >= NET_ATTEMPTS)
            return rc;
        fprintf(stderr, "%shashi: send: %s; reconnecting in %.1f s\n",
                sj->pg.on ? "\n" : "", e->msg, wait / 1000.0);
        sleep_ms(wait);
        wait *= 2;
    }
}

/* The files not stored (refused by the server, or unreadable here), as
 * one error (0 if none). */
static int send_refusals(struct sendjob *sj, struct err *e)
{
    size_t bad = 0, i;
    const struct up_file *first = NULL;
    for (i = 0; i < sj->nup; i++) {
        if (sj->up[i].state != UP_FAILED)
            continue;
        if (!bad++)
            first = &sj->up[i];
    }
    if (!bad)
        return 0;
    return err_set(e, ERR_INVALID, "%zu file(s) not stored, "
                   "e.g. %s: %s", bad, first->path ? first->path
                   : "the preview", first->error);
}

/* A fingerprint of the create request without its case_id: the same
 * send after a cut finds its pending case id by it. */
static void fingerprint(const struct cli *cl, json_t *req, char out[65])
{
    json_t *copy = json_deep_copy(req);
    json_object_del(copy, "case_id");
    json_object_del(copy, "id");
    json_object_set_new(copy, "_server", json_string(cl->cfg.server));
    json_object_set_new(copy, "_user", json_string(cl->cfg.user));
    char *s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
    sha256_hex(s ? s : "", s ? strlen(s) : 0, out);
    free(s);
    json_decref(copy);
}

static int cmd_send(int argc, char **argv)
{
    struct opt opts[] = {
        OPT("--to", 1), OPT("--specialist", 1), OPT("--priority", 1),
        OPT("--question", 1), OPT("--history", 1), OPT("--patient-age", 1),
        OPT("--patient-sex", 1), OPT("--case-id", 1), OPT_MULTI("--study"),
        OPT("--json", 0), OPT_END,
    };
    struct args a;
    struct cli cl;
    struct err e = { 0, "" };
    struct files files = { 0 };
    struct msg req;
    struct msg_error me;
    json_t *studies = json_array(), *jreq = NULL, *res = NULL, *old = NULL;
    char fp[65];
    struct sendjob sj;
    long long age = -1;
    int rc = parse_opts(argc, argv, opts, &a), ex = EX_OK;
    int status = 0, dicom_on = 0;

    memset(&sj, 0, sizeof sj);

    memset(&cl, 0, sizeof cl);
    if (rc)
        goto out_rc;
    const char *to = ov(opts, "--to"), *spec = ov(opts, "--specialist");
    const char *prio = ov(opts, "--priority"), *q = ov(opts, "--question");
    const char *sex = ov(opts, "--patient-sex");
    if (!to && !spec)
        rc = usage_err("--to SPECIALTY (or --specialist LOGIN) is required");
    else if (!prio || (strcmp(prio, "stat") && strcmp(prio, "urgent") &&
                       strcmp(prio, "routine")))
        rc = usage_err("--priority stat|urgent|routine is required");
    else if (!q || !*q)
        rc = usage_err("--question TEXT is required");
    else if (!a.npos && !oset(opts, "--study"))
        rc = usage_err("give FILEs or DIRs to upload, or --study UID");
    else if (a.npos && oset(opts, "--study"))
        rc = usage_err("give either files or --study, not both");
    else if (ov(opts, "--patient-age") &&
             parse_int(ov(opts, "--patient-age"), 0, MSG_AGE_MAX, &age))
        rc = usage_err("--patient-age must be 0..%d", MSG_AGE_MAX);
    else if (sex && strcmp(sex, "F") && strcmp(sex, "M") && strcmp(sex, "O"))
        rc = usage_err("--patient-sex must be F, M or O");
    if (rc)
        goto out_rc;

    /* The request, checked by the codec before anything is uploaded. */
    msg_init(&req, MSG_CASE_CREATE);
    conn_random_id(req.id);
    struct msg_case_create *cc = &req.case_create;
    strlcpy_h(cc->case_id, ov(opts, "--case-id") ? ov(opts, "--case-id")
              : "pending", sizeof cc->case_id);
    if (age >= 0 || sex) {
        cc->has_patient = 1;
        cc->patient.has_age = age >= 0;
        cc->patient.age = age;
        cc->patient.sex = !sex ? MSG_SEX_NONE : *sex == 'F' ? MSG_SEX_F
                          : *sex == 'M' ? MSG_SEX_M : MSG_SEX_O;
    }
    if (strlen(q) > MSG_QUESTION_MAX ||
        (ov(opts, "--history") &&
         strlen(ov(opts, "--history")) > MSG_HISTORY_MAX)) {
        rc = usage_err("question (%d bytes) or history (%d) too long",
                       MSG_QUESTION_MAX, MSG_HISTORY_MAX);
        goto out_rc;
    }
    strlcpy_h(cc->question, q, sizeof cc->question);
    if (ov(opts, "--history"))
        strlcpy_h(cc->history, ov(opts, "--history"), sizeof cc->history);
    cc->priority = !strcmp(prio, "stat") ? MSG_PRIO_STAT
                   : !strcmp(prio, "urgent") ? MSG_PRIO_URGENT
                   : MSG_PRIO_ROUTINE;
    if (to)
        strlcpy_h(cc->specialty, to, sizeof cc->specialty);
    if (spec)
        strlcpy_h(cc->specialist, spec, sizeof cc->specialist);
    if (oset(opts, "--study")) {
        char *list = strdup(ov(opts, "--study")), *save = NULL;
        for (char *u = strtok_r(list, "\n", &save); u;
             u = strtok_r(NULL, "\n", &save))
            json_array_append_new(studies, json_string(u));
        free(list);
    }
    if (json_array_size(studies) > MSG_STUDIES_MAX) {
        rc = usage_err("at most %d studies", MSG_STUDIES_MAX);
        goto out_rc;
    }
    for (size_t i = 0; i < json_array_size(studies); i++)
        strlcpy_h(cc->study_uids[cc->n_study_uids++],
                  json_string_value(json_array_get(studies, i)),
                  sizeof cc->study_uids[0]);
    if (msg_validate(&req, &me)) {
        rc = usage_err("%s", me.message);
        goto out_rc;
    }
    for (int i = 0; i < a.npos; i++) {
        if ((rc = collect(&files, a.pos[i], 0, &e))) {
            rc = usage_err("%s", e.msg);
            goto out_rc;
        }
    }
    if (a.npos && !files.n) {
        rc = usage_err("no files found in the given directories");
        goto out_rc;
    }

    if (files.n) {
        if ((rc = dicom_init(&e)))
            goto out_fail;
        dicom_on = 1;
        if ((rc = sendjob_prepare(&sj, &files, &e))) {
            rc = usage_err("%s", e.msg);
            goto out_rc;
        }
        if (json_array_size(sj.studies) > MSG_STUDIES_MAX) {
            rc = usage_err("the files hold %zu studies; a case takes at "
                           "most %d", json_array_size(sj.studies),
                           MSG_STUDIES_MAX);
            goto out_rc;
        }
        sj.priority = cc->priority;
        sj.pg.on = isatty(2);
        cc->n_study_uids = 0;
        for (size_t i = 0; i < json_array_size(sj.studies); i++)
            strlcpy_h(cc->study_uids[cc->n_study_uids++],
                      json_string_value(json_array_get(sj.studies, i)),
                      sizeof cc->study_uids[0]);
    }
    if ((rc = cli_open(&cl, &e)))
        goto out_fail;

    /* The case id: given, or the one of the same send left pending by a
     * cut, or a new random one; written down before it is sent. */
    jreq = msg_to_json(&req, &me);
    if (!jreq) {
        rc = err_set(&e, ERR_INVALID, "%s", me.message);
        goto out_fail;
    }
    fingerprint(&cl, jreq, fp);
    if (!ov(opts, "--case-id")) {
        if (cliconf_pending_find(&cl.cfg, fp, &old, &e) == 0 &&
            json_is_string(json_object_get(old, "case_id"))) {
            strlcpy_h(cc->case_id, json_string_value(json_object_get(
                      old, "case_id")), sizeof cc->case_id);
            fprintf(stderr, "hashi: send: resending pending case %s\n",
                    cc->case_id);
        } else {
            conn_random_id(cc->case_id);
        }
        json_object_set_new(jreq, "case_id", json_string(cc->case_id));
    }
    /* what is posted, and kept in pending/ until the server answers (with
     * files: until every file has its answer, with their upload ids) */
    json_object_del(jreq, "type");
    json_object_del(jreq, "id");
    if (files.n) {
        json_t *keep = json_deep_copy(jreq), *ids = json_array();
        for (size_t i = 0; i < sj.nup; i++)
            json_array_append_new(ids, json_string(sj.up[i].sha256));
        json_object_set_new(keep, "uploads", ids);
        rc = cliconf_pending_put(&cl.cfg, fp, keep, &e);
        json_decref(keep);
    } else {
        rc = cliconf_pending_put(&cl.cfg, fp, jreq, &e);
    }
    if (rc)
        goto out_fail;
    if (files.n) {
        int created = 0, final = 0;
        json_t *r = NULL;
        rc = send_v1(&cl, &sj, &req, &r, &created, &final, &e);
        progress_show(&sj.pg, 1);
        if (created)
            res = json_incref(json_is_object(r) ? r : NULL);
        json_decref(r);
        status = rc && !final && rc != ERR_AUTH ? 0 : 200;
        if (!rc)
            rc = send_refusals(&sj, &e);
        if (rc && created && status && !oset(opts, "--json"))
            printf("%s\n", cc->case_id);      /* it exists, files or not */
    } else {
        rc = api(&cl, "POST", "/api/cases", jreq, &res, NULL, &status, &e);
    }
    /* No answer, or a server failure (its transaction was rolled back):
     * the same id may go again.  A refusal is final. */
    if (rc && (status == 0 || status >= 500) && rc != ERR_AUTH) {
        char post[160];
        snprintf(post, sizeof post, "; the case %s is pending: run the same "
                 "command again to send it", cc->case_id);
        err_wrap(&e, rc, "", post);
        goto out_fail;
    }
    {
        struct err ignore;
        cliconf_pending_drop(&cl.cfg, fp, &ignore);
    }
    if (rc)
        goto out_fail;
    if (oset(opts, "--json"))
        print_json(res);
    else
        printf("%s\n", cc->case_id);
    goto out;

out_fail:
    ex = fail(rc, &e);
    goto out;
out_rc:
    ex = rc;
out:
    cli_close(&cl);
    sendjob_free(&sj);
    if (dicom_on)
        dicom_cleanup();
    json_decref(res);
    json_decref(old);
    json_decref(jreq);
    json_decref(studies);
    files_free(&files);
    opts_free(opts);
    return ex;
}

/* ---- get ------------------------------------------------------------ */

/* A buffered reader over a response body. */
struct rd {
    struct conn *c;
    unsigned char buf[65536];
    size_t off, len;
    int eof;
};

static int rd_fill(struct rd *r, struct err *e)
{
    if (r->off == r->len)
        r->off = r->len = 0;
    else if (r->off) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->eof || r->len == sizeof r->buf)
        return 0;
    ssize_t k = conn_http_read(r->c, r->buf + r->len, sizeof r->buf - r->len,
                               e);
    if (k < 0)
        return (int)k;
    if (!k)
        r->eof = 1;
    r->len += (size_t)k;
    return 0;
}

static int rd_line(struct rd *r, char *out, size_t n, struct err *e)
{
    for (;;) {
        size_t used;
        int got = line_take(r->buf + r->off, r->len - r->off, out, n, &used);
        if (got < 0)
            return err_set(e, ERR_INVALID, "multipart line too long");
        if (got) {
            r->off += used;
            return 0;
        }
        if (r->eof)
            return err_set(e, ERR_INVALID, "multipart answer cut short");
        if (r->len - r->off >= n)
            return err_set(e, ERR_INVALID, "multipart line too long");
        int rc = rd_fill(r, e);
        if (rc)
            return rc;
    }
}

/* Writes a part of len bytes to a temp file in dir, verifies its length,
 * names it by its SOP Instance UID. */
static int save_part(struct rd *r, const char *dir, uint64_t len,
                     char sop[65], struct err *e)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    struct dcm_info info;
    int rc = 0;

    if (snprintf(tmp, sizeof tmp, "%s/.hashi-get-XXXXXX", dir) >=
        (int)sizeof tmp)
        return err_set(e, ERR_INVALID, "path too long");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return err_set(e, ERR_IO, "cannot write in %s: %s", dir,
                       strerror(errno));
    uint64_t left = len;
    while (left && !rc) {
        if (r->off == r->len && (rc = rd_fill(r, e)))
            break;
        size_t k = r->len - r->off;
        if (!k) {
            rc = err_set(e, ERR_INVALID, "a part is %llu bytes short of "
                         "its Content-Length %llu",
                         (unsigned long long)left, (unsigned long long)len);
            break;
        }
        if (k > left)
            k = (size_t)left;
        const unsigned char *p = r->buf + r->off;
        size_t w = 0;
        while (w < k) {
            ssize_t n = write(fd, p + w, k - w);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = err_set(e, ERR_IO, "write %s: %s", tmp,
                             strerror(errno));
                break;
            }
            w += (size_t)n;
        }
        r->off += k;
        left -= k;
    }
    if (!rc && fsync(fd))
        rc = err_set(e, ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && (rc = dicom_parse_file(tmp, &info, e)) == 0 &&
        !dicom_uid_valid(info.sop_uid))
        rc = err_set(e, ERR_INVALID, "a part has no valid SOP Instance UID");
    if (!rc && snprintf(final, sizeof final, "%s/%s.dcm", dir,
                        info.sop_uid) >= (int)sizeof final)
        rc = err_set(e, ERR_INVALID, "path too long");
    if (!rc && rename(tmp, final))
        rc = err_set(e, ERR_IO, "rename to %s: %s", final, strerror(errno));
    if (rc) {
        unlink(tmp);
        return rc;
    }
    strlcpy_h(sop, info.sop_uid, 65);
    return 0;
}

static int get_study(struct cli *cl, const char *study, const char *dir,
                     size_t *nfiles, uint64_t *nbytes, struct err *e)
{
    char path[200], line[1024], boundary[128], delim[140], end[144];
    struct conn_request rq = {
        .method = "GET", .path = path, .token = cl->cfg.token,
        .accept = "multipart/related; type=\"application/dicom\"",
        .content_length = -1,
    };
    struct conn_response rs;
    static struct rd r;
    int rc;

    snprintf(path, sizeof path, "/dicomweb/studies/%s", study);
    if ((rc = conn_http_begin(cl->c, &rq, e)) ||
        (rc = conn_http_head(cl->c, &rs, e)))
        return rc;
    if (rs.status != 200) {
        char buf[4096];
        ssize_t k, n = 0;
        while ((k = conn_http_read(cl->c, buf + n, sizeof buf - 1 -
                                   (size_t)n, e)) > 0)
            n += k;
        conn_http_end(cl->c, e);
        json_t *j = json_loadb(buf, n > 0 ? (size_t)n : 0, 0, NULL);
        rc = conn_http_error(rs.status, j, e);
        json_decref(j);
        char pre[100];
        snprintf(pre, sizeof pre, "study %s: ", study);
        return err_wrap(e, rc, pre, "");
    }
    const char *b = strstr(rs.content_type, "boundary=");
    if (!b) {
        conn_http_end(cl->c, e);
        return err_set(e, ERR_INVALID, "WADO-RS answer without a boundary");
    }
    b += strlen("boundary=");
    size_t bl = *b == '"' ? strcspn(b + 1, "\"") : strcspn(b, "; \t");
    if (*b == '"')
        b++;
    if (!bl || bl >= sizeof boundary) {
        conn_http_end(cl->c, e);
        return err_set(e, ERR_INVALID, "bad multipart boundary");
    }
    memcpy(boundary, b, bl);
    boundary[bl] = 0;
    snprintf(delim, sizeof delim, "--%s", boundary);
    snprintf(end, sizeof end, "--%s--", boundary);

    memset(&r, 0, sizeof r);
    r.c = cl->c;
    /* preamble up to the first delimiter */
    do {
        if ((rc = rd_line(&r, line, sizeof line, e)))
            return rc;
    } while (strcmp(line, delim) && strcmp(line, end));
    while (strcmp(line, end)) {
        long long clen = -1;
        char sop[65];
        for (;;) {                  /* part headers */
            if ((rc = rd_line(&r, line, sizeof line, e)))
                return rc;
            if (!line[0])
                break;
            if (!strncasecmp(line, "Content-Length:", 15))
                clen = strtoll(line + 15, NULL, 10);
        }
        if (clen < 0)
            return err_set(e, ERR_INVALID, "a part without Content-Length: "
                           "cannot verify it");
        if ((rc = save_part(&r, dir, (uint64_t)clen, sop, e)))
            return rc;
        (*nfiles)++;
        *nbytes += (uint64_t)clen;
        /* CRLF, then the next delimiter right after the part's bytes */
        if ((rc = rd_line(&r, line, sizeof line, e)))
            return rc;
        if (line[0])
            return err_set(e, ERR_INVALID, "part %s is longer than its "
                           "Content-Length", sop);
        if ((rc = rd_line(&r, line, sizeof line, e)))
            return rc;
        if (strcmp(line, delim) && strcmp(line, end))
            return err_set(e, ERR_INVALID, "part %s is longer than its "
                           "Content-Length", sop);
    }
    return conn_http_end(cl->c, e);
}

static int cmd_get(int argc, char **argv)
{
    struct opt opts[] = { OPT("--out", 1), OPT("--json", 0), OPT_END };
    struct args a;
    struct cli cl;
    struct err e = { 0, "" };
    const char *id, *dir;
    json_t *cs = NULL, *st;
    size_t nfiles = 0, i;
    uint64_t nbytes = 0;
    int rc = parse_opts(argc, argv, opts, &a);

    if (rc || (rc = case_arg(&a, 1, &id)))
        return rc;
    if (!(dir = ov(opts, "--out")))
        return usage_err("--out DIR is required");
    if (mkdir_p(dir, 0755))
        return usage_err("cannot create %s: %s", dir, strerror(errno));
    if ((rc = dicom_init(&e)))
        return fail(rc, &e);
    if ((rc = cli_open(&cl, &e)) || (rc = get_case(&cl, id, &cs, &e)))
        goto done;
    /* the downloads follow on the same kept-alive connection */
    json_array_foreach(json_object_get(cs, "study_uids"), i, st) {
        rc = get_study(&cl, json_string_value(st), dir, &nfiles, &nbytes,
                       &e);
        if (rc == ERR_NOTFOUND) {   /* its images have not arrived yet */
            fprintf(stderr, "hashi: get: %s\n", e.msg);
            rc = 0;
            continue;
        }
        if (rc)
            break;
    }
    if (!rc && fsync_dir(dir))
        rc = err_set(&e, ERR_IO, "fsync %s: %s", dir, strerror(errno));
done:
    cli_close(&cl);
    dicom_cleanup();
    if (rc) {
        if (rc == ERR_NOTFOUND && !strstr(e.msg, "not found"))
            err_wrap(&e, rc, "", " (not found)");
        json_decref(cs);
        return fail(rc, &e);
    }
    if (oset(opts, "--json")) {
        json_t *j = json_pack("{s:s,s:s,s:I,s:I}", "case_id", id, "out",
                              dir, "files", (json_int_t)nfiles, "bytes",
                              (json_int_t)nbytes);
        print_json(j);
        json_decref(j);
    } else {
        char h[32];
        human((double)nbytes, h, sizeof h);
        printf("%zu file(s), %s, in %s\n", nfiles, h, dir);
    }
    json_decref(cs);
    return EX_OK;
}

/* ---- main ----------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        enum msg_type type;
    } cmds[] = {
        { "login", cmd_login, 0 }, { "logout", cmd_logout, 0 },
        { "send", cmd_send, 0 }, { "inbox", cmd_inbox, 0 },
        { "show", cmd_show, 0 }, { "watch", cmd_watch, 0 },
        { "chat", cmd_chat, 0 }, { "answer", cmd_answer, 0 },
        { "claim", NULL, MSG_CASE_CLAIM }, { "close", NULL, MSG_CASE_CLOSE },
        { "reopen", NULL, MSG_CASE_REOPEN }, { "get", cmd_get, 0 },
        { "gateways", cmd_gateways, 0 },
    };

    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)(getpid() ^ (unsigned)time(NULL)));
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EX_USAGE;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        fputs(usage_text, stdout);
        return EX_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("hashi %s (%s)\n", HASHI_VERSION, MSG_SUBPROTOCOL);
        return EX_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        if (strcmp(argv[1], cmds[i].name))
            continue;
        g_cmd = cmds[i].name;
        if (cmds[i].fn)
            return cmds[i].fn(argc - 2, argv + 2);
        return cmd_case_ref(argc - 2, argv + 2, cmds[i].type);
    }
    fprintf(stderr, "hashi: unknown command '%s'\n%s", argv[1], usage_text);
    return EX_USAGE;
}
