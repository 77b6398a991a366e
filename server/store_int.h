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
    /* One helper thread that runs store_put_file's fsyncs alongside its
     * other work (jobs.h); started by the first put, joined by
     * store_close.  NULL (and io_failed) if it could not start: the
     * syncs then run inline. */
    struct jobs *io;
    int io_failed;
    /* The WAL checkpoint thread (store_checkpoint_start), or NULL. */
    struct store_ckpt *ckpt;
    int64_t busy_since;         /* ms: when the current lock wait began */
};

/* The scope's clause, parenthesised ("0" for none), into out: ERR_TOOBIG
 * if it does not fit.  store_scope_bind() binds its values into a
 * statement that contains it: ERR_INTERNAL (in e) if one is missing. */
int store_scope_sql(const struct store_scope *scope, char *out, size_t n);
int store_scope_bind(sqlite3_stmt *st, const struct store_scope *scope,
                     struct err *e);

/* The blob path of a sha256 (out: 4096 bytes). */
int store_blob_path(const struct store *s, const char *sha256, char *out);

#endif
