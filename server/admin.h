/*
 * admin — hashi-server's administration subcommands:
 *
 *   init    --data DIR [--cert F --key F]
 *   demo    --data DIR [--accounts-only]   (clinics and users; without
 *               --accounts-only also the demo consults, demo.h)
 *   demo    --live-study DIR   (writes the live scenario's study; prints
 *               its Study UID)
 *   clinic  add --data DIR --name NAME --kind rural|city [--calling-ae AET]
 *   user    add --data DIR --login L --clinic NAME
 *               --role requester|specialist|admin [--specialty S]...
 *               (password: the first line of stdin)
 *   user    disable --data DIR --login L   (no more logins; sessions revoked)
 *   gateway add --data DIR --clinic NAME --name G   (prints the token once)
 *   oncall  set --data DIR --specialty S LOGIN...   (escalation order)
 *
 * They work on the data directory directly (the server may be running:
 * SQLite's WAL lets both write).  Exit status: 0 ok, 1 usage, 2 failure;
 * messages go to stderr, results (tokens, demo logins) to stdout.
 */
#ifndef HASHI_ADMIN_H
#define HASHI_ADMIN_H

#include <stdio.h>

#include "../proto/util.h"

/* The fixed password of every demo user.  Demo only: never in
 * production. */
#define ADMIN_DEMO_PASSWORD "demo-password"

/* 1 if word names a subcommand (init, demo, clinic, user, gateway). */
int admin_is_command(const char *word);

/* Run a subcommand: argv[0] is its word ("init", "user", ...).  Returns
 * the exit status. */
int admin_main(int argc, char **argv);

/* init: create data_dir (0700) and the store's schema; make a dev
 * certificate at <data>/tls/{cert,key}.pem unless cert/key are given
 * (then they must exist, and are recorded in <data>/hashi.conf if that
 * file does not exist yet) or the default files exist.  Idempotent. */
int admin_init(const char *data_dir, const char *cert, const char *key,
               struct err *e);

/* demo: the demo clinics and users (see README), on an initialised data
 * dir, and unless seed is 0 the demo consults and studies (demo.h's
 * demo_seed; dicom_init must have run).  Rows that exist are left alone:
 * running it again changes nothing.  Writes the logins to out. */
int admin_demo(const char *data_dir, int seed, FILE *out, struct err *e);

#endif
