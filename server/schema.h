/*
 * schema — the tables of hashi.db and their migrations.
 *
 * The schema version is SQLite's PRAGMA user_version: version N means the
 * first N entries of the migration list in schema.c have been applied.
 * To change the schema, append a migration there (never edit an applied
 * one); store_open() runs the missing ones, each in its own transaction.
 */
#ifndef HASHI_SCHEMA_H
#define HASHI_SCHEMA_H

#include <sqlite3.h>

#include "../proto/util.h"

/* The version a fully migrated database has. */
int schema_version(void);

/* Bring db up to schema_version().  ERR_DB on failure (the failed
 * migration is rolled back); ERR_UNSUPPORTED if the database is newer
 * than this program. */
int schema_migrate(sqlite3 *db, struct err *e);
/* The same, up to the first `version` migrations only (tests make
 * databases as an older hashi-server left them). */
int schema_migrate_to(sqlite3 *db, int version, struct err *e);

#endif
