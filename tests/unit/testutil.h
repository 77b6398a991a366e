/*
 * testutil — the few helpers several unit suites share: removing a
 * scratch directory and reading one number out of a database.
 *
 * Header only, on purpose: the Makefile builds each tests/unit/test_*.c
 * into its own binary and links no other test source.  Include it after
 * <cmocka.h> (it uses cmocka's assertions).
 */
#ifndef HASHI_TESTUTIL_H
#define HASHI_TESTUTIL_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* rm -rf dir; system()'s status: 0 on success. */
static inline int tu_rm_rf(const char *dir)
{
    char cmd[4200];
    int n = snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    return system(cmd);
}

/* The first column of the one row sql gives (a count, say); fails the
 * test if sql does not prepare or gives no row. */
static inline int64_t tu_sql_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

#endif
