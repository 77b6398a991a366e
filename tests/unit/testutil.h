/*
 * testutil — the few helpers several unit suites share: removing a
 * scratch directory, reading one number out of a database, paths in a
 * scratch directory, running a shell command, the group set-up and
 * teardown of a suite that makes DICOM files in a scratch directory.
 *
 * Header only, on purpose: the Makefile builds each tests/unit/test_*.c
 * into its own binary and links no other test source.  Include it after
 * <cmocka.h> (it uses cmocka's assertions).
 */
#ifndef HASHI_TESTUTIL_H
#define HASHI_TESTUTIL_H

#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "../../proto/dicom.h"
#include "../../proto/log.h"
#include "../../proto/util.h"

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

/* "dir/name" in one of 8 rotating buffers: valid until 8 more calls
 * (copy a path that must live longer). */
static inline const char *tu_path(const char *dir, const char *name)
{
    static char ring[8][PATH_MAX];
    static int i;
    char *s = ring[i++ % 8];
    if (snprintf(s, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        fail_msg("path too long");
    return s;
}

/* system() of a printf-formatted command: its exit status, -1 if it did
 * not exit or did not fit. */
static inline int tu_run(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static inline int tu_run(const char *fmt, ...)
{
    char cmd[3 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A DICOM suite's group set-up: logging at error level, DCMTK
 * initialised, a fresh scratch directory $HASHI_TESTDATA (else
 * /tmp)/NAME.XXXXXX into scratch[n], and *tools: $HASHI_TOOLS, else
 * tests/tools (run from the project's root).  0, or -1 (why on stderr). */
static inline int tu_dicom_group_setup(const char *name, char *scratch,
                                       size_t n, const char **tools)
{
    struct err e = { 0, "" };
    log_set_level(LOG_ERROR);
    if (dicom_init(&e)) {
        fprintf(stderr, "dicom_init: %s\n", e.msg);
        return -1;
    }
    const char *base = getenv("HASHI_TESTDATA");
    *tools = getenv("HASHI_TOOLS");
    if (!*tools || !**tools)
        *tools = "tests/tools";
    if (!base || !*base)
        base = "/tmp";
    mkdir_p(base, 0755);
    if (snprintf(scratch, n, "%s/%s.XXXXXX", base, name) >= (int)n ||
        !mkdtemp(scratch)) {
        fprintf(stderr, "scratch directory in %s: cannot be made\n", base);
        return -1;
    }
    return 0;
}

/* Its teardown: the scratch directory removed, DCMTK released. */
static inline int tu_dicom_group_teardown(const char *scratch)
{
    tu_rm_rf(scratch);
    dicom_cleanup();
    return 0;
}

#endif
