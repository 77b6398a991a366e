/*
 * mkusers — the push benchmark's user maker: N specialists of one
 * specialty, each with an open session, written into an initialised data
 * dir in seconds instead of the ~15 minutes that `hashi-server user add`
 * plus a login per user would take (each scrypt, N=2^17, costs ~0.4 s).
 *
 *   mkusers --data DIR --count N --specialty S --clinic NAME
 *           --requester LOGIN --out TOKENS [--group-size G]
 *
 * --group-size G (load (b)): specialist i (from 0) gets specialty
 * "S-<i / G>" instead of S, so a case to one of them reaches G users.
 *
 * Shortcuts, fine for a benchmark and for nothing else:
 *   - the password is hashed ONCE (auth_password_hash) and the same hash
 *     string, with its one salt, is stored for every user (real users each
 *     get their own salt);
 *   - the users are inserted with SQL into the tables of schema.c (users,
 *     user_specialties), in one transaction, not through auth_user_add();
 *   - sessions come from auth_session_create(), the code path auth_login()
 *     uses after its password check, so the tokens are real session tokens.
 *
 * TOKENS gets one line per session, "LOGIN TOKEN": the requester first,
 * then the specialists bench-sp-0001 ... in order.  Run it before the
 * server starts (or while it is stopped): it opens hashi.db itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "../../proto/util.h"
#include "../../server/auth.h"
#include "../../server/store.h"

static int usage(void)
{
    fprintf(stderr, "usage: mkusers --data DIR --count N --specialty S "
            "--clinic NAME --requester LOGIN --out FILE [--group-size G]\n");
    return 1;
}

static int exec_sql(sqlite3 *db, const char *sql, struct err *e)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return err_set(e, ERR_DB, "%s: %s", sql, sqlite3_errmsg(db));
    return 0;
}

/* The N specialists and their sessions, in one transaction; lines go to
 * out as they are made (the file is only used if this returns 0). */
static int make_users(struct store *s, int count, int group,
                      const char *specialty, const char *clinic,
                      const char *requester, FILE *out, struct err *e)
{
    sqlite3 *db = store_db(s);
    char hash[256], token[AUTH_TOKEN_HEX + 1], login[64], spec[128];
    int64_t clinic_id = 0, uid = 0;
    int rc;

    if ((rc = auth_password_hash("bench-push-password", hash, sizeof hash,
                                 e)))
        return rc;
    sqlite3_stmt *st = store_stmt(s, "SELECT id FROM clinics WHERE name = ?1",
                                  e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, clinic, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        clinic_id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (!clinic_id)
        return err_set(e, ERR_NOTFOUND, "no clinic '%s'", clinic);
    struct principal req;
    if ((rc = auth_user_principal(s, requester, &req, e)))
        return rc;
    uid = req.user_id;

    if ((rc = exec_sql(db, "BEGIN IMMEDIATE", e)))
        return rc;
    if ((rc = auth_session_create(s, uid, "bench", token, NULL, e)))
        goto fail;
    fprintf(out, "%s %s\n", requester, token);

    sqlite3_stmt *ins_user = store_stmt(
        s,
        "INSERT INTO users (login, clinic_id, role, password, created)"
        " VALUES (?1, ?2, 'specialist', ?3, ?4)",
        e);
    sqlite3_stmt *ins_spec = store_stmt(
        s,
        "INSERT INTO user_specialties (user_id, specialty) VALUES (?1, ?2)",
        e);
    if (!ins_user || !ins_spec) {
        rc = ERR_DB;
        goto fail;
    }
    int64_t now = now_ms();
    for (int i = 1; i <= count; i++) {
        snprintf(login, sizeof login, "bench-sp-%04d", i);
        sqlite3_bind_text(ins_user, 1, login, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_user, 2, clinic_id);
        sqlite3_bind_text(ins_user, 3, hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_user, 4, now);
        int step = sqlite3_step(ins_user);
        sqlite3_reset(ins_user);
        if (step != SQLITE_DONE) {
            rc = err_set(e, ERR_DB, "user %s: %s", login,
                         sqlite3_errmsg(db));
            goto fail;
        }
        uid = sqlite3_last_insert_rowid(db);
        sqlite3_bind_int64(ins_spec, 1, uid);
        if (group)
            snprintf(spec, sizeof spec, "%s-%d", specialty, (i - 1) / group);
        else
            snprintf(spec, sizeof spec, "%s", specialty);
        sqlite3_bind_text(ins_spec, 2, spec, -1, SQLITE_STATIC);
        step = sqlite3_step(ins_spec);
        sqlite3_reset(ins_spec);
        if (step != SQLITE_DONE) {
            rc = err_set(e, ERR_DB, "specialty of %s: %s", login,
                         sqlite3_errmsg(db));
            goto fail;
        }
        if ((rc = auth_session_create(s, uid, "bench", token, NULL, e)))
            goto fail;
        fprintf(out, "%s %s\n", login, token);
    }
    OPENSSL_cleanse(token, sizeof token);
    return exec_sql(db, "COMMIT", e);
fail:
    OPENSSL_cleanse(token, sizeof token);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *specialty = NULL, *clinic = NULL;
    const char *requester = NULL, *outpath = NULL;
    int count = 0, group = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--data"))
            data = v;
        else if (!strcmp(k, "--count"))
            count = atoi(v);
        else if (!strcmp(k, "--specialty"))
            specialty = v;
        else if (!strcmp(k, "--clinic"))
            clinic = v;
        else if (!strcmp(k, "--requester"))
            requester = v;
        else if (!strcmp(k, "--out"))
            outpath = v;
        else if (!strcmp(k, "--group-size"))
            group = atoi(v);
        else
            return usage();
    }
    if (argc % 2 == 0 || !data || count < 1 || count > 99999 || group < 0 || !specialty
        || !clinic || !requester || !outpath)
        return usage();

    struct err e = { 0, "" };
    struct store *s = store_open(data, &e);
    if (!s) {
        fprintf(stderr, "mkusers: %s\n", e.msg);
        return 2;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", outpath);
    umask(077);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        perror(tmp);
        store_close(s);
        return 2;
    }
    int rc = make_users(s, count, group, specialty, clinic, requester, out,
                        &e);
    store_close(s);
    if (fclose(out) && !rc)
        rc = err_set(&e, ERR_IO, "write %s", tmp);
    if (rc || rename(tmp, outpath)) {
        fprintf(stderr, "mkusers: %s\n", rc ? e.msg : "rename failed");
        remove(tmp);
        return 2;
    }
    fprintf(stderr, "mkusers: %d specialists of '%s' with sessions in %s\n",
            count, specialty, outpath);
    return 0;
}
