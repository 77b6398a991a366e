/*
 * admin — see admin.h.  Each subcommand parses its own flags, opens the
 * store on the data dir, calls auth.c, closes the store.  Nothing here
 * runs inside the server process's loop.
 */
#include "admin.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "cases.h"
#include "config.h"
#include "demo.h"
#include "devcert.h"
#include "../proto/dicom.h"
#include "webpush.h"
#include "server.h"
#include "store.h"

enum {
    O_DATA = 1 << 0, O_CERT = 1 << 1, O_KEY = 1 << 2, O_NAME = 1 << 3,
    O_KIND = 1 << 4, O_AE = 1 << 5, O_LOGIN = 1 << 6, O_CLINIC = 1 << 7,
    O_ROLE = 1 << 8, O_SPECIALTY = 1 << 9, O_ACCOUNTS_ONLY = 1 << 10,
    O_LIVE_STUDY = 1 << 11, O_DEST = 1 << 12,
};
static const char *const opt_names[] = {
    "data", "cert", "key", "name", "kind", "calling-ae", "login", "clinic",
    "role", "specialty", "accounts-only", "live-study", "dest",
};
#define FLAG_OPTS O_ACCOUNTS_ONLY       /* options that take no value */
#define NOPTS (sizeof opt_names / sizeof opt_names[0])

struct args {
    const char *v[NOPTS];       /* by option bit position */
    char specialties[512];      /* --specialty, comma-joined */
};

static const char usage_text[] =
    "usage: hashi-server init    --data DIR [--cert FILE --key FILE]\n"
    "       hashi-server demo    --data DIR [--accounts-only]\n"
    "       hashi-server demo    --live-study DIR\n"
    "       hashi-server clinic  add --data DIR --name NAME "
    "--kind rural|city|ems [--calling-ae AET]\n"
    "       hashi-server clinic  add-ae --data DIR --name NAME "
    "--calling-ae AET\n"
    "                            [--dest HOST:PORT]   (a C-MOVE destination)\n"
    "       hashi-server user    add --data DIR --login LOGIN "
    "--clinic NAME\n"
    "                            --role requester|specialist|admin|crew "
    "[--specialty S]...\n"
    "                            (password: first line of stdin)\n"
    "       hashi-server user    disable --data DIR --login LOGIN\n"
    "       hashi-server gateway add --data DIR --clinic NAME --name G\n"
    "       hashi-server oncall  set --data DIR --specialty S LOGIN...\n";

static int usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hashi-server: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s", usage_text);
    va_end(ap);
    return 1;
}

static const char *opt(const struct args *a, int bit)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (bit == 1 << i)
            return a->v[i];
    return NULL;
}

/* Flags of one subcommand; `allowed` is a mask of O_*.  Returns 0 or an
 * exit status (usage printed). */
static int parse_args(int argc, char **argv, unsigned allowed,
                      struct args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2))
            return usage("unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        size_t k;
        for (k = 0; k < NOPTS; k++)
            if (strlen(opt_names[k]) == len
                && !strncmp(opt_names[k], name, len))
                break;
        if (k == NOPTS || !(allowed & (1u << k)))
            return usage("unknown option '%s'", arg);
        if ((1u << k) & FLAG_OPTS) {
            if (eq)
                return usage("option '%s' takes no value", arg);
            a->v[k] = "1";
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v || !*v)
            return usage("option '%s' needs a value", arg);
        if ((1u << k) == O_SPECIALTY) {
            size_t have = strlen(a->specialties);
            if (strchr(v, ',') || have + strlen(v) + 2 > sizeof a->specialties)
                return usage("bad --specialty '%s'", v);
            if (have)
                strcat(a->specialties, ",");
            strcat(a->specialties, v);
            continue;
        }
        a->v[k] = v;
    }
    if ((allowed & O_DATA) && !a->v[0])
        a->v[0] = CONFIG_DEFAULT_DATA;
    return 0;
}

/* Exit status for a failed operation: input the user can fix is 1. */
static int fail(const char *what, const struct err *e)
{
    fprintf(stderr, "hashi-server: %s: %s\n", what, e->msg);
    return e->code == ERR_INVALID ? 1 : 2;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Record given cert/key paths in <data>/hashi.conf, if it is new. */
static int write_conf(const char *data, const char *cert, const char *key,
                      struct err *e)
{
    char conf[4096], rc_[PATH_MAX], rk[PATH_MAX], text[3 * PATH_MAX];
    if (path_join(conf, sizeof conf, data, "hashi.conf"))
        return err_set(e, ERR_INVALID, "data dir path too long");
    if (file_exists(conf)) {
        fprintf(stderr, "hashi-server: %s exists; make sure it names "
                "cert = %s and key = %s\n", conf, cert, key);
        return 0;
    }
    if (!realpath(cert, rc_) || !realpath(key, rk))
        return err_set(e, ERR_IO, "resolve %s / %s: %s", cert, key,
                       strerror(errno));
    snprintf(text, sizeof text,
             "# hashi-server settings (see README); flags override.\n"
             "cert = %s\nkey = %s\n", rc_, rk);
    return write_file_durable(conf, text, strlen(text), 0600, e);
}

int admin_init(const char *data, const char *cert, const char *key,
               struct err *e)
{
    struct stat st;
    if ((cert != NULL) != (key != NULL))
        return err_set(e, ERR_INVALID,
                       "--cert and --key must be given together");
    if (stat(data, &st) == 0 && !S_ISDIR(st.st_mode))
        return err_set(e, ERR_INVALID, "%s exists and is no directory",
                       data);
    if (mkdir_p(data, 0700))
        return err_set(e, ERR_IO, "create %s: %s", data, strerror(errno));
    if (stat(data, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "hashi-server: warning: %s is accessible to other "
                "users (mode %03o); 0700 is advised\n", data,
                (unsigned)(st.st_mode & 0777));

    struct store *s = store_open(data, e);
    if (!s)
        return e->code ? e->code : ERR_IO;
    store_close(s);
    if (webpush_key_ensure(data, e))
        return e->code;

    if (cert) {
        if (!file_exists(cert) || !file_exists(key))
            return err_set(e, ERR_INVALID, "%s or %s does not exist", cert,
                           key);
        return write_conf(data, cert, key, e);
    }
    char tls[4096], c[4096], k[4096];
    if (path_join(tls, sizeof tls, data, "tls")
        || path_join(c, sizeof c, tls, "cert.pem")
        || path_join(k, sizeof k, tls, "key.pem"))
        return err_set(e, ERR_INVALID, "data dir path too long");
    if (file_exists(c) && file_exists(k))
        return 0;
    if (mkdir_p(tls, 0700))
        return err_set(e, ERR_IO, "create %s: %s", tls, strerror(errno));
    int rc = devcert_create(c, k, e);
    if (!rc)
        fprintf(stderr, "hashi-server: made a self-signed development "
                "certificate %s (for localhost; not for production)\n", c);
    return rc;
}

static int cmd_init(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc, argv, O_DATA | O_CERT | O_KEY, &a);
    if (rc)
        return rc;
    struct err e = { 0, "" };
    if (admin_init(opt(&a, O_DATA), opt(&a, O_CERT), opt(&a, O_KEY), &e))
        return fail("init", &e);
    fprintf(stderr, "hashi-server: data directory %s is ready\n",
            opt(&a, O_DATA));
    return 0;
}

/* A store on an existing, initialised data dir. */
static struct store *open_existing(const char *data, struct err *e)
{
    char db[4096];
    if (path_join(db, sizeof db, data, "hashi.db") || !file_exists(db)) {
        err_set(e, ERR_NOTFOUND, "%s is not initialised; run "
                "'hashi-server init --data %s' first", data, data);
        return NULL;
    }
    return store_open(data, e);
}

/* Demo data.  Everything is named Demo / demo-, so it is easy to spot
 * and to tell apart from real clinics. */
static const struct {
    const char *name, *kind, *ae;
} demo_clinics[] = {
    { "Demo Rural Clinic", "rural", "DEMO_CT" },
    { "Demo City Hospital", "city", NULL },
};
static const struct {
    const char *login, *clinic, *role, *specialties;
} demo_users[] = {
    { "demo-requester", "Demo Rural Clinic", "requester", NULL },
    { "demo-neuro", "Demo City Hospital", "specialist", "neurology" },
    { "demo-neuro2", "Demo City Hospital", "specialist", "neurology" },
    { "demo-cardio", "Demo City Hospital", "specialist", "cardiology" },
    { "demo-admin", "Demo City Hospital", "admin", NULL },
};

/* A server context over an initialised data dir, for the subcommands
 * that go through cases.c (no listeners, no live delivery, no audit). */
static struct server *admin_server(const char *data, struct err *e)
{
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    config_defaults(&srv->cfg);
    srv->store = open_existing(data, e);
    if (srv->store && !cases_init(srv, e))
        return srv;
    if (srv->store)
        store_close(srv->store);
    free(srv);
    return NULL;
}

static void admin_server_free(struct server *srv)
{
    cases_free(srv);
    store_close(srv->store);
    free(srv);
}

static int demo_accounts(struct store *s, struct err *e)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof demo_clinics / sizeof *demo_clinics;
         i++) {
        int64_t id;
        rc = auth_clinic_add(s, demo_clinics[i].name, demo_clinics[i].kind,
                             demo_clinics[i].ae, &id, e);
        if (rc == ERR_CONFLICT)
            rc = 0;
    }
    /* DCMTK's storescu calls itself STORESCU unless told otherwise: let
     * it send as the demo rural clinic out of the box (demo only). */
    if (!rc) {
        rc = auth_clinic_add_ae(s, demo_clinics[0].name, "STORESCU", e);
        if (rc == ERR_CONFLICT)
            rc = 0;
    }
    for (size_t i = 0; !rc && i < sizeof demo_users / sizeof *demo_users;
         i++) {
        int64_t id;
        rc = auth_user_add(s, demo_users[i].login, demo_users[i].clinic,
                           demo_users[i].role, demo_users[i].specialties,
                           ADMIN_DEMO_PASSWORD, &id, e);
        if (rc == ERR_CONFLICT)
            rc = 0;
    }
    return rc;
}

int admin_demo(const char *data, int seed, FILE *out, struct err *e)
{
    struct server *srv = admin_server(data, e);
    if (!srv)
        return e->code;
    int rc = demo_accounts(srv->store, e);
    if (!rc && seed)
        rc = demo_seed(srv, out, e);
    admin_server_free(srv);
    if (rc)
        return rc;
    fprintf(out, "DEMO DATA (not for real patients). Every demo user's "
            "password is: %s\n", ADMIN_DEMO_PASSWORD);
    for (size_t i = 0; i < sizeof demo_users / sizeof *demo_users; i++)
        fprintf(out, "  %-15s %-10s %s%s%s\n", demo_users[i].login,
                demo_users[i].role, demo_users[i].clinic,
                demo_users[i].specialties ? ", " : "",
                demo_users[i].specialties ? demo_users[i].specialties : "");
    fprintf(out, "  DICOM calling AEs DEMO_CT and STORESCU send as %s\n",
            demo_clinics[0].name);
    if (seed)
        fprintf(out, "Open first: the STAT case %s, as demo-neuro\n",
                DEMO_STAT_CASE);
    return 0;
}

static int cmd_demo(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc, argv, O_DATA | O_ACCOUNTS_ONLY | O_LIVE_STUDY,
                        &a);
    if (rc)
        return rc;
    const char *live = opt(&a, O_LIVE_STUDY);
    int seed = !opt(&a, O_ACCOUNTS_ONLY);
    if (live && !seed)
        return usage("--live-study and --accounts-only do not go together");
    struct err e = { 0, "" };
    /* DCMTK writes and parses the demo's slices. */
    if ((live || seed) && dicom_init(&e))
        return fail("demo", &e);
    if (live) {
        char uid[65];
        rc = demo_write_live_study(live, uid, &e);
        if (!rc)
            printf("%s\n", uid);
    } else {
        rc = admin_demo(opt(&a, O_DATA), seed, stdout, &e);
    }
    if (live || seed)
        dicom_cleanup();
    if (rc)
        return fail("demo", &e);
    if (live)
        fprintf(stderr, "hashi-server: the live demo study (%d slices) is "
                "in %s; its Study UID is above\n", DEMO_LIVE_SLICES, live);
    return 0;
}

/* The subcommand's verb ("add") must come first. */
static int want_add(int argc, char **argv, const char *noun)
{
    if (argc < 2 || strcmp(argv[1], "add")) {
        fprintf(stderr, "hashi-server: '%s' needs 'add'\n%s", noun,
                usage_text);
        return 1;
    }
    return 0;
}

/* clinic add-ae: one more modality's calling AE title for a clinic. */
static int cmd_clinic_add_ae(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc - 2, argv + 2,
                        O_DATA | O_NAME | O_AE | O_DEST, &a);
    if (rc)
        return rc;
    const char *name = opt(&a, O_NAME), *ae = opt(&a, O_AE);
    const char *dest = opt(&a, O_DEST);
    if (!name || !ae)
        return usage("clinic add-ae needs --name and --calling-ae");
    if (!config_ae_valid(ae))
        return usage("'%s' is not a valid AE title (1-16 characters)", ae);
    struct err e = { 0, "" };
    char host[256];
    int port;
    if (dest && config_parse_hostport(dest, host, sizeof host, &port, 1,
                                      &e))
        return usage("bad --dest: %s", e.msg);
    struct store *s = open_existing(opt(&a, O_DATA), &e);
    if (!s)
        return fail("clinic add-ae", &e);
    rc = auth_clinic_add_ae_dest(s, name, ae, dest, &e);
    store_close(s);
    if (rc)
        return fail("clinic add-ae", &e);
    fprintf(stderr, "hashi-server: calling AE %s now sends as '%s'\n", ae,
            name);
    return 0;
}

static int cmd_clinic(int argc, char **argv)
{
    struct args a;
    if (argc >= 2 && !strcmp(argv[1], "add-ae"))
        return cmd_clinic_add_ae(argc, argv);
    int rc = want_add(argc, argv, "clinic");
    if (!rc)
        rc = parse_args(argc - 2, argv + 2,
                        O_DATA | O_NAME | O_KIND | O_AE, &a);
    if (rc)
        return rc;
    const char *name = opt(&a, O_NAME), *kind = opt(&a, O_KIND),
               *ae = opt(&a, O_AE);
    if (!name)
        return usage("clinic add needs --name");
    if (!kind || (strcmp(kind, "rural") && strcmp(kind, "city") &&
                  strcmp(kind, "ems")))
        return usage("--kind must be rural, city or ems");
    if (ae && !config_ae_valid(ae))
        return usage("'%s' is not a valid AE title (1-16 characters)", ae);
    struct err e = { 0, "" };
    struct store *s = open_existing(opt(&a, O_DATA), &e);
    if (!s)
        return fail("clinic add", &e);
    int64_t id = 0;
    rc = auth_clinic_add(s, name, kind, ae, &id, &e);
    store_close(s);
    if (rc)
        return fail("clinic add", &e);
    fprintf(stderr, "hashi-server: clinic '%s' added (id %lld)\n", name,
            (long long)id);
    return 0;
}

/* The first line of stdin, without its newline; no echo on a terminal. */
static int read_password(char *buf, size_t n)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, (int)n, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!got)
        return -1;
    buf[strcspn(buf, "\r\n")] = 0;
    return 0;
}

/* user disable: no more logins; the user's sessions are revoked, and a
 * running server closes their open hashi.v1 sessions within its tick. */
static int cmd_user_disable(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc - 2, argv + 2, O_DATA | O_LOGIN, &a);
    if (rc)
        return rc;
    const char *login = opt(&a, O_LOGIN);
    if (!login)
        return usage("user disable needs --login");
    struct err e = { 0, "" };
    struct store *s = open_existing(opt(&a, O_DATA), &e);
    if (!s)
        return fail("user disable", &e);
    rc = auth_user_disable(s, login, &e);
    store_close(s);
    if (rc)
        return fail("user disable", &e);
    fprintf(stderr, "hashi-server: user '%s' disabled\n", login);
    return 0;
}

static int cmd_user(int argc, char **argv)
{
    struct args a;
    if (argc >= 2 && !strcmp(argv[1], "disable"))
        return cmd_user_disable(argc, argv);
    int rc = want_add(argc, argv, "user");
    if (!rc)
        rc = parse_args(argc - 2, argv + 2,
                        O_DATA | O_LOGIN | O_CLINIC | O_ROLE | O_SPECIALTY,
                        &a);
    if (rc)
        return rc;
    const char *login = opt(&a, O_LOGIN), *clinic = opt(&a, O_CLINIC),
               *role = opt(&a, O_ROLE);
    if (!login || !clinic || !role)
        return usage("user add needs --login, --clinic and --role");
    if (strcmp(role, "requester") && strcmp(role, "specialist")
        && strcmp(role, "admin") && strcmp(role, "crew"))
        return usage("--role must be requester, specialist, admin or crew, "
                     "not '%s'", role);
    char pw[1024];
    if (read_password(pw, sizeof pw) || !pw[0]) {
        fprintf(stderr, "hashi-server: user add: an empty password is "
                "refused (give it as the first line of stdin)\n");
        return 1;
    }
    struct err e = { 0, "" };
    struct store *s = open_existing(opt(&a, O_DATA), &e);
    if (!s) {
        OPENSSL_cleanse(pw, sizeof pw);
        return fail("user add", &e);
    }
    int64_t id = 0;
    rc = auth_user_add(s, login, clinic, role,
                       a.specialties[0] ? a.specialties : NULL, pw, &id, &e);
    OPENSSL_cleanse(pw, sizeof pw);
    store_close(s);
    if (rc)
        return fail("user add", &e);
    fprintf(stderr, "hashi-server: user '%s' added (id %lld)\n", login,
            (long long)id);
    return 0;
}

static int cmd_gateway(int argc, char **argv)
{
    struct args a;
    int rc = want_add(argc, argv, "gateway");
    if (!rc)
        rc = parse_args(argc - 2, argv + 2, O_DATA | O_CLINIC | O_NAME, &a);
    if (rc)
        return rc;
    const char *clinic = opt(&a, O_CLINIC), *name = opt(&a, O_NAME);
    if (!clinic || !name)
        return usage("gateway add needs --clinic and --name");
    struct err e = { 0, "" };
    struct store *s = open_existing(opt(&a, O_DATA), &e);
    if (!s)
        return fail("gateway add", &e);
    char token[AUTH_TOKEN_HEX + 1];
    rc = auth_gateway_add(s, clinic, name, token, &e);
    store_close(s);
    if (rc)
        return fail("gateway add", &e);
    printf("%s\n", token);
    fflush(stdout);
    fprintf(stderr, "hashi-server: gateway '%s' of '%s' added; its API "
            "token (above) is shown only this once\n", name, clinic);
    return 0;
}

/* oncall set --data DIR --specialty S LOGIN...: the specialty's on-call
 * list, in escalation order (replaces the old one; no LOGIN empties it). */
static int cmd_oncall(int argc, char **argv)
{
    const char *data = CONFIG_DEFAULT_DATA, *specialty = NULL;
    if (argc < 2 || strcmp(argv[1], "set")) {
        fprintf(stderr, "hashi-server: 'oncall' needs 'set'\n%s",
                usage_text);
        return 1;
    }
    const char **logins = calloc((size_t)argc, sizeof *logins);
    if (!logins)
        return 2;
    int n = 0, rc = 0;
    for (int i = 2; !rc && i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--data") ? &data
                           : !strcmp(a, "--specialty") ? &specialty : NULL;
        if (dst) {
            if (i + 1 >= argc || !*argv[i + 1])
                rc = usage("option '%s' needs a value", a);
            else
                *dst = argv[++i];
        } else if (!strncmp(a, "--data=", 7)) {
            data = a + 7;
        } else if (!strncmp(a, "--specialty=", 12)) {
            specialty = a + 12;
        } else if (a[0] == '-') {
            rc = usage("unknown option '%s'", a);
        } else {
            logins[n++] = a;
        }
    }
    if (!rc && !specialty)
        rc = usage("oncall set needs --specialty");
    if (rc) {
        free(logins);
        return rc;
    }
    struct err e = { 0, "" };
    struct server *srv = admin_server(data, &e);
    if (!srv) {
        free(logins);
        return fail("oncall set", &e);
    }
    rc = cases_oncall_set(srv, specialty, logins, n, &e);
    admin_server_free(srv);
    free(logins);
    if (rc)
        return fail("oncall set", &e);
    fprintf(stderr, "hashi-server: on-call list of %s: %d specialist(s)\n",
            specialty, n);
    return 0;
}

static const struct {
    const char *word;
    int (*fn)(int, char **);
} commands[] = {
    { "init", cmd_init },
    { "demo", cmd_demo },
    { "clinic", cmd_clinic },
    { "user", cmd_user },
    { "gateway", cmd_gateway },
    { "oncall", cmd_oncall },
};

int admin_is_command(const char *word)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(word, commands[i].word))
            return 1;
    return 0;
}

int admin_main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(argv[0], commands[i].word))
            continue;
        if (!strcmp(argv[0], "init") || !strcmp(argv[0], "demo"))
            return commands[i].fn(argc - 1, argv + 1);
        return commands[i].fn(argc, argv);
    }
    return usage("unknown command '%s'", argv[0]);
}
