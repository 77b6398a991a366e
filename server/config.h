/*
 * config — hashi-server's settings: defaults, the config file, the flags.
 *
 * Precedence, lowest first: built-in defaults, <data>/hashi.conf (if it
 * exists), the file named by --config, the command-line flags.  The file
 * format is "key = value" lines whose keys are the long flag names
 * without "--" (data, listen, dicom, ae-title, cert, key, web, origin,
 * accept-unknown-ae, max-instance, log-level, dicom-max-associations,
 * dicom-artim-timeout, dicom-idle-timeout (seconds), and due-stat,
 * due-urgent, due-routine: escalation deadlines in seconds; push-ca: the
 * CA file push services are checked against, push-contact: the VAPID
 * "sub", a mailto: or https: URL; ws-ping, ws-queue-max: hashi.v1
 * keep-alive and slow-reader limit); '#' starts a
 * comment, blank lines are ignored.  "origin" may repeat; origins given as
 * flags replace those from files.  Every value is validated; a bad one is
 * ERR_INVALID with a message naming the key and the value.
 *
 * The struct filled in is struct server_config (server.h); no allocation,
 * nothing to free.
 */
#ifndef HASHI_CONFIG_H
#define HASHI_CONFIG_H

#include <stddef.h>

#include "server.h"

#define CONFIG_DEFAULT_DATA "./data"
#define CONFIG_DEFAULT_LISTEN_PORT 8443
#define CONFIG_DEFAULT_DICOM_PORT 11112
#define CONFIG_DEFAULT_AE "HASHI"
#define CONFIG_DEFAULT_MAX_INSTANCE (2ULL << 30)
#define CONFIG_DEFAULT_UPLOAD_MAX_AGE (7 * 86400)     /* seconds */
#define CONFIG_DEFAULT_DICOM_ASSOCIATIONS 16
#define CONFIG_DEFAULT_DICOM_ARTIM 10          /* seconds */
#define CONFIG_DEFAULT_DICOM_IDLE 60           /* seconds */
#define CONFIG_DEFAULT_WS_PING 30                       /* seconds */
#define CONFIG_DEFAULT_WS_QUEUE_MAX (1024 * 1024)       /* bytes */
#define CONFIG_INSTALLED_WEB "/usr/local/share/hashi/web"

/* Built-in defaults (cert, key and web root stay "" until config_finish). */
void config_defaults(struct server_config *c);

/* Parse "HOST:PORT" (HOST a DNS name or IPv4 address) or
 * "[V6ADDR]:PORT"; host receives the name or address without brackets.
 * min_port is 0 where port 0 means "disabled", else 1.  ERR_INVALID with
 * a reason for anything else (an unbracketed IPv6 address included). */
int config_parse_hostport(const char *s, char *host, size_t hostn,
                          int *port, int min_port, struct err *e);

/* 1 if s is a valid AE title: 1..16 printable ASCII characters, no
 * backslash, no leading or trailing space. */
int config_ae_valid(const char *s);

/* 1 if host is a loopback address or "localhost". */
int config_host_is_loopback(const char *host);

/* Set one key (a long flag name without "--") from its text value. */
int config_set(struct server_config *c, const char *key, const char *value,
               struct err *e);

/* Apply a config file.  missing_ok: a file that does not exist is fine. */
int config_load_file(struct server_config *c, const char *path,
                     int missing_ok, struct err *e);

/* The whole server command line (argv[0] excluded: argv[0] is the first
 * flag), with the precedence above, then config_finish().  exe is the
 * path of the running binary (for the default web root).  ERR_INVALID
 * for a usage error (unknown flag, missing value, bad value). */
int config_from_args(struct server_config *c, int argc, char **argv,
                     const char *exe, struct err *e);

/* Fill in what depends on other settings: cert/key default to
 * <data>/tls/{cert,key}.pem; the web root to <exe dir>/../client/web if
 * it exists, else CONFIG_INSTALLED_WEB.  Checks that cert and key are
 * given together. */
int config_finish(struct server_config *c, const char *exe, struct err *e);

/* The path of the running executable (from /proc/self/exe), or "" . */
void config_self_exe(char *out, size_t n);

#endif
