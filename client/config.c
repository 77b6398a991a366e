/*
 * config — the CLI's state directory (see config.h).  The files are small
 * "key=value" texts so that a person can read them and a script can grep
 * them; the token makes the config file private (0600, directory 0700).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int dir_of(char *out, size_t n, struct err *e)
{
    const char *d = getenv("HASHI_CONFIG_DIR"), *x, *home;
    int k;
    if (d && *d)
        k = snprintf(out, n, "%s", d);
    else if ((x = getenv("XDG_CONFIG_HOME")) && *x == '/')
        k = snprintf(out, n, "%s/hashi", x);
    else if ((home = getenv("HOME")) && *home)
        k = snprintf(out, n, "%s/.config/hashi", home);
    else
        return err_set(e, ERR_INVALID, "neither HASHI_CONFIG_DIR nor HOME "
                       "is set");
    if (k < 0 || (size_t)k >= n)
        return err_set(e, ERR_TOOBIG, "config directory path too long");
    return 0;
}

int cliconf_init(struct cli_config *c, struct err *e)
{
    memset(c, 0, sizeof *c);
    int rc = dir_of(c->dir, sizeof c->dir, e);
    if (rc)
        return rc;
    if (mkdir_p(c->dir, 0700))
        return err_set(e, ERR_IO, "cannot create %s: %s", c->dir,
                       strerror(errno));
    return 0;
}

static int file_path(const struct cli_config *c, const char *name,
                     char *out, size_t n, struct err *e)
{
    if (path_join(out, n, c->dir, name))
        return err_set(e, ERR_TOOBIG, "path too long");
    return 0;
}

/* Calls fn(key, value, arg) for each "key=value" line of path. */
static int read_kv(const char *path, void (*fn)(const char *, const char *,
                                                void *), void *arg,
                   struct err *e)
{
    unsigned char *buf;
    size_t len;
    int rc = read_file(path, 1 << 20, &buf, &len, e);
    if (rc)
        return rc;
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq || line[0] == '#')
            continue;
        *eq = 0;
        fn(line, eq + 1, arg);
    }
    free(buf);
    return 0;
}

static void config_kv(const char *k, const char *v, void *arg)
{
    struct cli_config *c = arg;
    if (!strcmp(k, "server"))
        strlcpy_h(c->server, v, sizeof c->server);
    else if (!strcmp(k, "cacert"))
        strlcpy_h(c->cacert, v, sizeof c->cacert);
    else if (!strcmp(k, "user"))
        strlcpy_h(c->user, v, sizeof c->user);
    else if (!strcmp(k, "token"))
        strlcpy_h(c->token, v, sizeof c->token);
    else if (!strcmp(k, "insecure"))
        c->insecure = !strcmp(v, "1");
}

int cliconf_load(struct cli_config *c, struct err *e)
{
    char path[1100];
    struct stat st;
    int rc = cliconf_init(c, e);
    if (!rc)
        rc = file_path(c, "config", path, sizeof path, e);
    if (rc)
        return rc;
    if (stat(path, &st))
        return err_set(e, ERR_NOTFOUND, "not logged in (no %s); run "
                       "'hashi login' first", path);
    return read_kv(path, config_kv, c, e);
}

int cliconf_save(const struct cli_config *c, struct err *e)
{
    char path[1100], *text = NULL;
    size_t n = 0;
    int rc = file_path(c, "config", path, sizeof path, e);
    if (rc)
        return rc;
    FILE *f = open_memstream(&text, &n);
    if (!f)
        return err_set(e, ERR_INTERNAL, "out of memory");
    fprintf(f, "# hashi CLI login (private: holds the session token)\n"
            "server=%s\ncacert=%s\nuser=%s\ntoken=%s\n%s",
            c->server, c->cacert, c->user, c->token,
            c->insecure ? "insecure=1\n" : "");
    fclose(f);
    rc = write_file_durable(path, text, n, 0600, e);
    free(text);
    return rc;
}

int cliconf_remove(const struct cli_config *c, struct err *e)
{
    char path[1100];
    int rc = file_path(c, "config", path, sizeof path, e);
    if (rc)
        return rc;
    if (unlink(path) && errno != ENOENT)
        return err_set(e, ERR_IO, "remove %s: %s", path, strerror(errno));
    return 0;
}

/* ---- watch ---------------------------------------------------------- */

static void watch_kv(const char *k, const char *v, void *arg)
{
    struct cli_watch *w = arg;
    if (!strcmp(k, "server"))
        strlcpy_h(w->server, v, sizeof w->server);
    else if (!strcmp(k, "user"))
        strlcpy_h(w->user, v, sizeof w->user);
    else if (!strcmp(k, "last_seq"))
        w->last_seq = strtoll(v, NULL, 10);
    else if (!strcmp(k, "seen") && strlen(v) < 65)
        cliconf_watch_add(w, v);
}

int cliconf_watch_load(const struct cli_config *c, struct cli_watch *w,
                       struct err *e)
{
    char path[1100];
    struct stat st;
    int rc = file_path(c, "watch", path, sizeof path, e);
    memset(w, 0, sizeof *w);
    if (rc)
        return rc;
    if (!stat(path, &st) && (rc = read_kv(path, watch_kv, w, e)))
        return rc;
    if (strcmp(w->server, c->server) || strcmp(w->user, c->user) ||
        w->last_seq < 0)
        memset(w, 0, sizeof *w);
    strlcpy_h(w->server, c->server, sizeof w->server);
    strlcpy_h(w->user, c->user, sizeof w->user);
    return 0;
}

int cliconf_watch_save(const struct cli_config *c, const struct cli_watch *w,
                       struct err *e)
{
    char path[1100], *text = NULL;
    size_t n = 0;
    int rc = file_path(c, "watch", path, sizeof path, e);
    if (rc)
        return rc;
    FILE *f = open_memstream(&text, &n);
    if (!f)
        return err_set(e, ERR_INTERNAL, "out of memory");
    fprintf(f, "server=%s\nuser=%s\nlast_seq=%lld\n", w->server, w->user,
            (long long)w->last_seq);
    /* oldest first, so that loading re-adds them in order */
    for (int i = 0; i < w->nseen; i++) {
        int k = (w->next - w->nseen + i + CLICONF_SEEN) % CLICONF_SEEN;
        fprintf(f, "seen=%s\n", w->seen[k]);
    }
    fclose(f);
    rc = write_file_durable(path, text, n, 0600, e);
    free(text);
    return rc;
}

int cliconf_watch_seen(const struct cli_watch *w, const char *event_id)
{
    for (int i = 0; i < w->nseen; i++) {
        int k = (w->next - 1 - i + CLICONF_SEEN) % CLICONF_SEEN;
        if (!strcmp(w->seen[k], event_id))
            return 1;
    }
    return 0;
}

void cliconf_watch_add(struct cli_watch *w, const char *event_id)
{
    strlcpy_h(w->seen[w->next], event_id, sizeof w->seen[0]);
    w->next = (w->next + 1) % CLICONF_SEEN;
    if (w->nseen < CLICONF_SEEN)
        w->nseen++;
}

/* ---- pending creates ------------------------------------------------ */

static int pending_path(const struct cli_config *c, const char *fp,
                        char *out, size_t n, struct err *e)
{
    if (strspn(fp, "0123456789abcdef") != strlen(fp) || !*fp ||
        strlen(fp) > 64)
        return err_set(e, ERR_INVALID, "bad pending key");
    int k = snprintf(out, n, "%s/pending/%s.json", c->dir, fp);
    if (k < 0 || (size_t)k >= n)
        return err_set(e, ERR_TOOBIG, "path too long");
    return 0;
}

int cliconf_pending_find(const struct cli_config *c, const char *fp,
                         json_t **req, struct err *e)
{
    char path[1200];
    json_error_t je;
    struct stat st;
    int rc = pending_path(c, fp, path, sizeof path, e);
    *req = NULL;
    if (rc)
        return rc;
    if (stat(path, &st))
        return ERR_NOTFOUND;
    *req = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(*req)) {
        json_decref(*req);
        *req = NULL;
        return err_set(e, ERR_INVALID, "%s: %s", path, je.text);
    }
    return 0;
}

int cliconf_pending_put(const struct cli_config *c, const char *fp,
                        json_t *req, struct err *e)
{
    char path[1200], dir[1100];
    int rc = pending_path(c, fp, path, sizeof path, e);
    if (rc || (rc = file_path(c, "pending", dir, sizeof dir, e)))
        return rc;
    if (mkdir_p(dir, 0700))
        return err_set(e, ERR_IO, "cannot create %s: %s", dir,
                       strerror(errno));
    char *text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return err_set(e, ERR_INTERNAL, "out of memory");
    rc = write_file_durable(path, text, strlen(text), 0600, e);
    free(text);
    return rc;
}

int cliconf_pending_drop(const struct cli_config *c, const char *fp,
                         struct err *e)
{
    char path[1200], dir[1100];
    int rc = pending_path(c, fp, path, sizeof path, e);
    if (rc || (rc = file_path(c, "pending", dir, sizeof dir, e)))
        return rc;
    if (unlink(path)) {
        if (errno == ENOENT)
            return 0;
        return err_set(e, ERR_IO, "remove %s: %s", path, strerror(errno));
    }
    fsync_dir(dir);
    return 0;
}
