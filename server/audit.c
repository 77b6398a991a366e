/*
 * audit — the append-only audit log, <data>/audit.log (see audit.h).
 *
 * One JSON object per line, built with jansson (which escapes newlines
 * and control characters, so no value can break a line or forge another
 * one).  Each line goes out in one write() on an O_APPEND descriptor: a
 * crash of the process never leaves half a line from an earlier entry.
 * The disk sync is batched: fdatasync at most once a second, and at
 * close, so a burst of views does not cost a sync each.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../proto/log.h"

#define AUDIT_SYNC_EVERY 1.0    /* seconds */

struct audit {
    int fd;
    pthread_mutex_t lock;
    double last_sync;           /* now_mono() of the last fdatasync */
    int dirty;                  /* written since then */
};

struct audit *audit_open(const char *data_dir, struct err *e)
{
    char path[4096];
    if (path_join(path, sizeof path, data_dir, "audit.log")) {
        err_set(e, ERR_TOOBIG, "data dir path too long");
        return NULL;
    }
    struct audit *a = calloc(1, sizeof *a);
    if (!a) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) {
        err_set(e, ERR_IO, "open %s: %s", path, strerror(errno));
        free(a);
        return NULL;
    }
    /* The file's name must survive a crash as well as its lines. */
    fsync_dir(data_dir);
    pthread_mutex_init(&a->lock, NULL);
    a->last_sync = now_mono();
    return a;
}

void audit_close(struct audit *a)
{
    if (!a)
        return;
    if (a->dirty && fdatasync(a->fd))
        log_error("audit: fdatasync: %s", strerror(errno));
    close(a->fd);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* A JSON string or null; values that are not valid UTF-8 get their
 * non-ASCII bytes replaced so the entry is still written. */
static json_t *jval(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = strdup(s);
    if (!c)
        return json_null();
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    return j ? j : json_null();
}

int audit_write(struct audit *a, const struct audit_entry *en)
{
    if (!a || !en)
        return ERR_INVALID;
    char when[32];
    iso8601_ms(now_ms(), when);
    json_t *o = json_object();
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "actor", jval(en->actor));
    json_object_set_new(o, "action", jval(en->action));
    json_object_set_new(o, "object", jval(en->object));
    json_object_set_new(o, "outcome", jval(en->outcome));
    json_object_set_new(o, "remote", jval(en->remote));
    json_object_set_new(o, "detail", jval(en->detail));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line)
        return ERR_INTERNAL;
    size_t len = strlen(line);
    line[len] = '\n';           /* replaces the NUL; length kept below */
    len++;

    int rc = 0;
    pthread_mutex_lock(&a->lock);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(a->fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            log_error("audit: write: %s", strerror(errno));
            rc = ERR_IO;
            break;
        }
        off += (size_t)w;
    }
    if (off)
        a->dirty = 1;
    double now = now_mono();
    if (a->dirty && now - a->last_sync >= AUDIT_SYNC_EVERY) {
        if (fdatasync(a->fd)) {
            log_error("audit: fdatasync: %s", strerror(errno));
            rc = ERR_IO;
        } else {
            a->dirty = 0;
        }
        a->last_sync = now;
    }
    pthread_mutex_unlock(&a->lock);
    free(line);
    return rc;
}
