/*
 * store_int — what store.c shares with qido.c, and nothing else: the
 * store's struct and the one definition of the caller's scope.
 *
 * Not for other modules: they use store.h.
 */
#ifndef HASHI_STORE_INT_H
#define HASHI_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

#define STORE_MAX_STMTS 128

struct store {
    sqlite3 *db;
    char data_dir[4096];
    char blobs[4096];
    char tmp[4096];
    char conflicts[4096];
    uint64_t max_instance;
    /* Prepared statements of the store's fixed SQL shapes, keyed by
     * their text (store_stmt); each entry owns a copy of the text. */
    struct {
        char *sql;
        sqlite3_stmt *st;
    } cache[STORE_MAX_STMTS];
    int ncache;
    int have_cases;             /* the consult tables exist (see scope) */
    /* One helper thread that runs store_put_file's fsyncs alongside its
     * other work (jobs.h); started by the first put, joined by
     * store_close.  NULL (and io_failed) if it could not start: the
     * syncs then run inline. */
    struct jobs *io;
    int io_failed;
    int64_t busy_since;         /* ms: when the current lock wait began */
};

/* The scope clause: an SQL boolean expression over the table `studies`
 * that is true when the caller may see the study.  Its parameters are
 * named (:scope_all, :scope_clinic, :scope_user) and bound by
 * store_scope_bind().  store_scope_sql() writes it into out (ERR_TOOBIG
 * if it does not fit).  With the consult workflow linked in and its tables
 * present, studies attached to cases the user may see are included.  Both live in store.c, side by side: this is the
 * one place that decides who sees which study. */
int store_scope_sql(struct store *s, const struct store_scope *scope,
                    char *out, size_t n);
int store_scope_bind(sqlite3_stmt *st, const struct store_scope *scope);

/* The blob path of a sha256 (out: 4096 bytes). */
int store_blob_path(const struct store *s, const char *sha256, char *out);

#endif
