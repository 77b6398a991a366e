/*
 * config — what the `hashi` CLI remembers between runs, in one directory:
 * $HASHI_CONFIG_DIR if set, else $XDG_CONFIG_HOME/hashi, else
 * $HOME/.config/hashi (created mode 0700).
 *
 *   config        server URL, CA file, login and session token
 *                 ("key=value" lines, mode 0600: it holds the token)
 *   watch         `hashi watch`'s last processed seq and the ids of the
 *                 last events it printed, for the server and user it
 *                 belongs to (another server or user starts from 0)
 *   pending/      case.create requests sent but not yet confirmed, one
 *                 file per request fingerprint: a retry of the same send
 *                 finds its case id there and sends the same id again
 *
 * Every file is written durably (temp file, fsync, rename, fsync dir).
 * Plain structs, no allocation; functions return 0 or a negative ERR_*.
 */
#ifndef HASHI_CLIENT_CONFIG_H
#define HASHI_CLIENT_CONFIG_H

#include <stdint.h>

#include <jansson.h>

#include "../proto/util.h"

#define CLICONF_SEEN 256            /* event ids remembered by watch */

struct cli_config {
    char dir[1024];                 /* the directory itself */
    char server[512];
    char cacert[1024];              /* absolute path, or "" */
    char user[65];
    char token[300];
    int insecure;                   /* saved from login --insecure */
};

struct cli_watch {
    char server[512];
    char user[65];
    int64_t last_seq;
    char seen[CLICONF_SEEN][65];    /* a ring of recent event ids */
    int nseen, next;
};

/* Finds (and creates, mode 0700) the directory into c->dir; clears the
 * rest of c. */
int cliconf_init(struct cli_config *c, struct err *e);
/* cliconf_init, then reads the config file: ERR_NOTFOUND if none. */
int cliconf_load(struct cli_config *c, struct err *e);
int cliconf_save(const struct cli_config *c, struct err *e);
/* Removes the config file (logout); 0 if there was none. */
int cliconf_remove(const struct cli_config *c, struct err *e);

/* The watch state for c's server and user (zeroed when the file is
 * missing or belongs to another server or user). */
int cliconf_watch_load(const struct cli_config *c, struct cli_watch *w,
                       struct err *e);
int cliconf_watch_save(const struct cli_config *c, const struct cli_watch *w,
                       struct err *e);
int cliconf_watch_seen(const struct cli_watch *w, const char *event_id);
void cliconf_watch_add(struct cli_watch *w, const char *event_id);

/* Pending creates, keyed by a fingerprint (hex).  find: 0 and *req (a
 * new reference) if there is one, else ERR_NOTFOUND.  put stores req
 * (borrowed) durably; drop removes it (0 if absent). */
int cliconf_pending_find(const struct cli_config *c, const char *fp,
                         json_t **req, struct err *e);
int cliconf_pending_put(const struct cli_config *c, const char *fp,
                        json_t *req, struct err *e);
int cliconf_pending_drop(const struct cli_config *c, const char *fp,
                         struct err *e);

#endif
