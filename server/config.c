/*
 * config — see config.h.  Everything here is pure parsing and checking
 * (plus a stat() or two for defaults), so the unit tests can drive it
 * without a server.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/log.h"
#include "cases.h"
#include "webpush.h"

/* The keys, as long flags and as config-file keys. */
enum { K_STR, K_BOOL };
static const struct {
    const char *name;
    int kind;
} keys[] = {
    { "config", K_STR },            /* flag only */
    { "data", K_STR },
    { "listen", K_STR },
    { "dicom", K_STR },
    { "ae-title", K_STR },
    { "cert", K_STR },
    { "key", K_STR },
    { "web", K_STR },
    { "origin", K_STR },
    { "accept-unknown-ae", K_BOOL },
    { "max-instance", K_STR },
    { "dicom-max-associations", K_STR },
    { "dicom-artim-timeout", K_STR },
    { "dicom-idle-timeout", K_STR },
    { "log-level", K_STR },
    { "due-stat", K_STR },
    { "due-urgent", K_STR },
    { "due-routine", K_STR },
    { "upload-max-age", K_STR },
    { "push-ca", K_STR },
    { "push-contact", K_STR },
    { "push-allow", K_STR },
    { "ws-ping", K_STR },
    { "ws-queue-max", K_STR },
};
#define NKEYS (sizeof keys / sizeof keys[0])

static int key_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == len && !strncmp(keys[i].name, name, len))
            return (int)i;
    return -1;
}

void config_defaults(struct server_config *c)
{
    memset(c, 0, sizeof *c);
    strlcpy_h(c->data_dir, CONFIG_DEFAULT_DATA, sizeof c->data_dir);
    strlcpy_h(c->listen_host, "127.0.0.1", sizeof c->listen_host);
    c->listen_port = CONFIG_DEFAULT_LISTEN_PORT;
    strlcpy_h(c->dicom_host, "127.0.0.1", sizeof c->dicom_host);
    c->dicom_port = CONFIG_DEFAULT_DICOM_PORT;
    strlcpy_h(c->ae_title, CONFIG_DEFAULT_AE, sizeof c->ae_title);
    c->accept_unknown_ae = 0;
    c->max_instance = CONFIG_DEFAULT_MAX_INSTANCE;
    c->dicom_max_associations = CONFIG_DEFAULT_DICOM_ASSOCIATIONS;
    c->dicom_artim_timeout = CONFIG_DEFAULT_DICOM_ARTIM;
    c->dicom_idle_timeout = CONFIG_DEFAULT_DICOM_IDLE;
    c->log_level = LOG_INFO;
    c->due_stat = CASES_DUE_STAT;
    c->due_urgent = CASES_DUE_URGENT;
    c->due_routine = CASES_DUE_ROUTINE;
    c->upload_max_age = CONFIG_DEFAULT_UPLOAD_MAX_AGE;
    c->ws_ping = CONFIG_DEFAULT_WS_PING;
    c->ws_queue_max = CONFIG_DEFAULT_WS_QUEUE_MAX;
}

/* A DNS name: labels of letters, digits and '-', not all-numeric (so a
 * mistyped IPv4 address like 300.1.1.1 is not taken for a name). */
static int hostname_valid(const char *h)
{
    size_t n = strlen(h), label = 0;
    int alpha = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        char ch = h[i];
        if (ch == '.' || ch == 0) {
            if (label == 0 || label > 63 || h[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)ch) && ch != '-')
            return 0;
        if (label == 0 && ch == '-')
            return 0;
        if (isalpha((unsigned char)ch) || ch == '-')
            alpha = 1;
        label++;
    }
    return alpha;
}

static int host_valid(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1
           || hostname_valid(h);
}

int config_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcmp(host, "localhost"))
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* Decimal digits only, min..max. */
static int parse_uint(const char *s, long min, long max, long *out)
{
    long v = 0;
    if (!*s || strlen(s) > 10)
        return -1;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int config_parse_hostport(const char *s, char *host, size_t hostn,
                          int *port, int min_port, struct err *e)
{
    char h[256];
    const char *ps;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return err_set(e, ERR_INVALID, "'%s': expected [ADDRESS]:PORT",
                           s);
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof h)
            return err_set(e, ERR_INVALID, "'%s': bad address", s);
        memcpy(h, s + 1, n);
        h[n] = 0;
        unsigned char buf[16];
        if (inet_pton(AF_INET6, h, buf) != 1)
            return err_set(e, ERR_INVALID,
                           "'%s': '%s' is not an IPv6 address", s, h);
        ps = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return err_set(e, ERR_INVALID, "'%s': expected HOST:PORT", s);
        if (memchr(s, ':', (size_t)(colon - s)))
            return err_set(e, ERR_INVALID,
                           "'%s': write an IPv6 address in brackets, "
                           "as [::1]:PORT", s);
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof h)
            return err_set(e, ERR_INVALID, "'%s': missing or long host", s);
        memcpy(h, s, n);
        h[n] = 0;
        if (!host_valid(h))
            return err_set(e, ERR_INVALID,
                           "'%s': '%s' is not a host name or address", s, h);
        ps = colon + 1;
    }
    long p;
    if (parse_uint(ps, min_port, 65535, &p))
        return err_set(e, ERR_INVALID, "'%s': port must be %d..65535", s,
                       min_port);
    if (strlcpy_h(host, h, hostn) >= hostn)
        return err_set(e, ERR_INVALID, "'%s': host too long", s);
    *port = (int)p;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = { "1", "true", "yes", "on" };
    static const char *no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Bytes, with an optional binary suffix: K, M, G (or KiB, MiB, GiB). */
static int parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    int shift = 0;
    if (*p) {
        switch (toupper((unsigned char)*p)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return -1;
        }
        p++;
        if (!strcasecmp(p, "ib") || !strcasecmp(p, "b"))
            p += strlen(p);
        if (*p)
            return -1;
    }
    if (v == 0 || v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

int config_ae_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16 || s[0] == ' ' || s[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '\\')
            return 0;
    return 1;
}

/* A browser Origin: http[s]://host[:port], nothing after. */
static int origin_valid(const char *s)
{
    const char *rest;
    if (!strncmp(s, "https://", 8))
        rest = s + 8;
    else if (!strncmp(s, "http://", 7))
        rest = s + 7;
    else
        return 0;
    if (!*rest)
        return 0;
    for (const char *p = rest; *p; p++)
        if (*p <= ' ' || *p > '~' || *p == ',' || *p == '/' || *p == '"')
            return 0;
    return 1;
}

static int set_path(char *dst, size_t n, const char *key, const char *v,
                    struct err *e)
{
    if (!*v)
        return err_set(e, ERR_INVALID, "%s: empty path", key);
    if (strlcpy_h(dst, v, n) >= n)
        return err_set(e, ERR_INVALID, "%s: path too long", key);
    return 0;
}

/* config_parse_hostport, its message prefixed with key. */
static int set_hostport(char *host, size_t n, int *port, int min_port,
                        const char *key, const char *v, struct err *e)
{
    struct err sub = { 0, "" };
    int rc = config_parse_hostport(v, host, n, port, min_port, &sub);
    return rc ? err_set(e, rc, "%s: %s", key, sub.msg) : 0;
}

int config_set(struct server_config *c, const char *key, const char *v,
               struct err *e)
{
    if (!strcmp(key, "data"))
        return set_path(c->data_dir, sizeof c->data_dir, key, v, e);
    if (!strcmp(key, "cert"))
        return set_path(c->cert, sizeof c->cert, key, v, e);
    if (!strcmp(key, "key"))
        return set_path(c->key, sizeof c->key, key, v, e);
    if (!strcmp(key, "web"))
        return set_path(c->web_root, sizeof c->web_root, key, v, e);
    if (!strcmp(key, "push-ca"))
        return set_path(c->push_ca, sizeof c->push_ca, key, v, e);
    if (!strcmp(key, "push-contact")) {
        if (strncmp(v, "mailto:", 7) && strncmp(v, "https://", 8))
            return err_set(e, ERR_INVALID, "push-contact: '%.64s' is not "
                           "a mailto: or https: URL", v);
        return set_path(c->push_contact, sizeof c->push_contact, key, v, e);
    }
    if (!strcmp(key, "push-allow")) {
        char h[256];
        size_t have = strlen(c->push_allow);
        if (webpush_allow_pattern(v, h, sizeof h))
            return err_set(e, ERR_INVALID, "push-allow: '%.200s' is not a "
                           "host name, *.domain or IP address", v);
        if (have + 1 + strlen(h) >= sizeof c->push_allow)
            return err_set(e, ERR_INVALID, "push-allow: too many hosts");
        if (have)
            strcat(c->push_allow, ",");
        strcat(c->push_allow, h);
        return 0;
    }
    if (!strcmp(key, "listen"))
        return set_hostport(c->listen_host, sizeof c->listen_host,
                            &c->listen_port, 1, key, v, e);
    if (!strcmp(key, "dicom"))
        return set_hostport(c->dicom_host, sizeof c->dicom_host,
                            &c->dicom_port, 0, key, v, e);
    if (!strcmp(key, "ae-title")) {
        if (!config_ae_valid(v))
            return err_set(e, ERR_INVALID,
                           "ae-title: '%.64s' is not 1-16 printable "
                           "characters without backslash", v);
        strlcpy_h(c->ae_title, v, sizeof c->ae_title);
        return 0;
    }
    if (!strcmp(key, "origin")) {
        if (!origin_valid(v))
            return err_set(e, ERR_INVALID,
                           "origin: '%.200s' is not scheme://host[:port]",
                           v);
        size_t have = strlen(c->origins);
        if (have + (have ? 1 : 0) + strlen(v) >= sizeof c->origins)
            return err_set(e, ERR_INVALID, "origin: too many origins");
        if (have)
            strcat(c->origins, ",");
        strcat(c->origins, v);
        return 0;
    }
    if (!strcmp(key, "accept-unknown-ae")) {
        if (parse_bool(v, &c->accept_unknown_ae))
            return err_set(e, ERR_INVALID,
                           "accept-unknown-ae: '%.64s' is not true/false", v);
        return 0;
    }
    if (!strcmp(key, "max-instance")) {
        if (parse_size(v, &c->max_instance))
            return err_set(e, ERR_INVALID,
                           "max-instance: '%.64s' is not a positive size "
                           "(bytes, or with K, M, G)", v);
        return 0;
    }
    if (!strcmp(key, "log-level")) {
        int l = log_parse_level(v);
        if (l < 0)
            return err_set(e, ERR_INVALID,
                           "log-level: '%.64s' is not debug, info, warn "
                           "or error", v);
        c->log_level = l;
        return 0;
    }
    int *dicom = !strcmp(key, "dicom-max-associations")
                     ? &c->dicom_max_associations
                 : !strcmp(key, "dicom-artim-timeout") ? &c->dicom_artim_timeout
                 : !strcmp(key, "dicom-idle-timeout") ? &c->dicom_idle_timeout
                 : NULL;
    if (dicom) {
        long n, max = dicom == &c->dicom_max_associations ? 1024 : 86400;
        if (parse_uint(v, 1, max, &n))
            return err_set(e, ERR_INVALID,
                           "%s: '%.64s' is not a number from 1 to %ld", key,
                           v, max);
        *dicom = (int)n;
        return 0;
    }
    int *due = !strcmp(key, "due-stat") ? &c->due_stat
               : !strcmp(key, "due-urgent") ? &c->due_urgent
               : !strcmp(key, "due-routine") ? &c->due_routine : NULL;
    if (due) {
        long secs;
        if (parse_uint(v, 1, 30 * 86400, &secs))
            return err_set(e, ERR_INVALID,
                           "%s: '%.64s' is not a number of seconds "
                           "(1..2592000)", key, v);
        *due = (int)secs;
        return 0;
    }
    if (!strcmp(key, "upload-max-age")) {
        long secs;
        if (parse_uint(v, 1, 365L * 86400, &secs))
            return err_set(e, ERR_INVALID,
                           "upload-max-age: '%.64s' is not a number of "
                           "seconds (1..31536000)", v);
        c->upload_max_age = (int)secs;
        return 0;
    }
    if (!strcmp(key, "ws-ping")) {
        long secs;
        if (parse_uint(v, 0, 3600, &secs))
            return err_set(e, ERR_INVALID,
                           "ws-ping: '%.64s' is not a number of seconds "
                           "(0..3600, 0: off)", v);
        c->ws_ping = (int)secs;
        return 0;
    }
    if (!strcmp(key, "ws-queue-max")) {
        if (parse_size(v, &c->ws_queue_max) || c->ws_queue_max < 262144)
            return err_set(e, ERR_INVALID,
                           "ws-queue-max: '%.64s' is not a size of at "
                           "least 256K", v);
        return 0;
    }
    if (!strcmp(key, "config"))
        return err_set(e, ERR_INVALID, "config: not allowed in a file");
    return err_set(e, ERR_INVALID, "unknown setting '%.64s'", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

int config_load_file(struct server_config *c, const char *path,
                     int missing_ok, struct err *e)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && missing_ok)
            return 0;
        return err_set(e, ERR_INVALID, "config file %s: %s", path,
                       strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = err_set(e, ERR_INVALID, "%s:%d: expected 'key = value'",
                         path, lineno);
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        size_t vn = strlen(val);
        if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
            val[vn - 1] = 0;
            val++;
        }
        struct err sub = { 0, "" };
        if (config_set(c, key, val, &sub)) {
            rc = err_set(e, sub.code, "%s:%d: %s", path, lineno, sub.msg);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = err_set(e, ERR_INVALID, "config file %s: read error", path);
    free(line);
    fclose(f);
    return rc;
}

struct flag {
    int key;            /* index into keys[] */
    const char *val;
};

/* argv -> flags, checking names and that values are present. */
static int parse_flags(int argc, char **argv, struct flag *out, int *n,
                       struct err *e)
{
    *n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2])
            return err_set(e, ERR_INVALID, "unexpected argument '%.200s'",
                           a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = key_index(name, len);
        if (k < 0)
            return err_set(e, ERR_INVALID, "unknown option '--%.*s'",
                           (int)(len > 64 ? 64 : len), name);
        const char *v;
        if (eq)
            v = eq + 1;
        else if (keys[k].kind == K_BOOL)
            v = "true";
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return err_set(e, ERR_INVALID, "option '--%s' needs a value",
                           keys[k].name);
        out[*n].key = k;
        out[*n].val = v;
        (*n)++;
    }
    return 0;
}

int config_from_args(struct server_config *c, int argc, char **argv,
                     const char *exe, struct err *e)
{
    struct flag *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!flags)
        return err_set(e, ERR_INTERNAL, "out of memory");
    int n, rc = parse_flags(argc, argv, flags, &n, e);
    const char *cfg_file = NULL, *data_flag = NULL;
    int any_origin = 0;
    for (int i = 0; !rc && i < n; i++) {
        const char *name = keys[flags[i].key].name;
        if (!strcmp(name, "config"))
            cfg_file = flags[i].val;
        else if (!strcmp(name, "data"))
            data_flag = flags[i].val;
        else if (!strcmp(name, "origin"))
            any_origin = 1;
    }

    /* Where is the data dir?  The flag, else the --config file, else the
     * default; <data>/hashi.conf cannot move it. */
    char data[sizeof c->data_dir];
    if (!rc) {
        config_defaults(c);
        if (cfg_file)
            rc = config_load_file(c, cfg_file, 0, e);
        if (!rc && data_flag)
            rc = config_set(c, "data", data_flag, e);
        strlcpy_h(data, c->data_dir, sizeof data);
    }
    if (!rc) {
        char own[sizeof c->data_dir + 16];
        config_defaults(c);
        snprintf(own, sizeof own, "%s/hashi.conf", data);
        rc = config_load_file(c, own, 1, e);
    }
    if (!rc && cfg_file)
        rc = config_load_file(c, cfg_file, 0, e);
    if (!rc) {
        strlcpy_h(c->data_dir, data, sizeof c->data_dir);
        if (any_origin)
            c->origins[0] = 0;
    }
    for (int i = 0; !rc && i < n; i++) {
        const char *name = keys[flags[i].key].name;
        if (strcmp(name, "config"))
            rc = config_set(c, name, flags[i].val, e);
    }
    free(flags);
    if (!rc)
        rc = config_finish(c, exe, e);
    return rc;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int config_finish(struct server_config *c, const char *exe, struct err *e)
{
    if (!c->cert[0] != !c->key[0])
        return err_set(e, ERR_INVALID,
                       "--cert and --key must be given together");
    if (!c->cert[0]) {
        if (path_join(c->cert, sizeof c->cert, c->data_dir, "tls/cert.pem")
            || path_join(c->key, sizeof c->key, c->data_dir, "tls/key.pem"))
            return err_set(e, ERR_INVALID, "data: path too long");
    }
    if (!c->web_root[0]) {
        char dir[4096], cand[4096];
        const char *slash = exe ? strrchr(exe, '/') : NULL;
        int found = 0;
        if (slash && (size_t)(slash - exe) < sizeof dir) {
            memcpy(dir, exe, (size_t)(slash - exe));
            dir[slash - exe] = 0;
            if (!dir[0])
                strcpy(dir, "/");
            if (!path_join(cand, sizeof cand, dir, "../client/web")
                && is_dir(cand)) {
                char real[4096];
                strlcpy_h(c->web_root, realpath(cand, real) ? real : cand,
                          sizeof c->web_root);
                found = 1;
            }
        }
        if (!found)
            strlcpy_h(c->web_root, CONFIG_INSTALLED_WEB, sizeof c->web_root);
    }
    return 0;
}

void config_self_exe(char *out, size_t n)
{
    ssize_t r = readlink("/proc/self/exe", out, n - 1);
    out[r > 0 ? r : 0] = 0;
}
