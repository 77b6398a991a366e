/*
 * test_auth — passwords (scrypt), clinics, users, gateways, sessions,
 * the login rate limit, and that nothing secret is stored in plain text.
 *
 * One scrypt costs ~0.3-0.5 s here, so the tests count their hashes:
 * about a dozen in all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../proto/log.h"
#include "../../proto/util.h"
#include "../../server/auth.h"
#include "../../server/store.h"
#include "testutil.h"

static char g_scratch[1024];

struct fx {
    char dir[4096];
    struct store *s;
    int64_t rural, city;
};

static const char PASSWORD[] = "Tr0ub4dor&3-correct-horse";

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    const char *base = getenv("HASHI_TESTDATA");
    if (!base || !*base)
        base = "/tmp";
    mkdir_p(base, 0755);
    snprintf(g_scratch, sizeof g_scratch, "%s/test_auth.XXXXXX", base);
    return mkdtemp(g_scratch) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return tu_rm_rf(g_scratch) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/data.XXXXXX", g_scratch);
    assert_non_null(mkdtemp(f->dir));
    struct err e = {0};
    f->s = store_open(f->dir, &e);
    if (!f->s)
        fail_msg("store_open: %s", e.msg);
    assert_int_equal(auth_clinic_add(f->s, "Rural One", "rural", "CT1",
                                     &f->rural, &e), 0);
    assert_int_equal(auth_clinic_add(f->s, "City Hospital", "city", NULL,
                                     &f->city, &e), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    assert_int_equal(tu_rm_rf(f->dir), 0);
    free(f);
    return 0;
}

static int64_t q_int(struct store *s, const char *sql)
{
    return tu_sql_int(store_db(s), sql);
}

/* Is needle anywhere in the bytes of the database files (main + WAL)? */
static int db_contains(const struct fx *f, const char *needle)
{
    const char *names[] = {"hashi.db", "hashi.db-wal"};
    size_t nl = strlen(needle);
    for (size_t k = 0; k < 2; k++) {
        char p[4200];
        unsigned char *buf;
        size_t len;
        path_join(p, sizeof p, f->dir, names[k]);
        if (read_file(p, 1 << 30, &buf, &len, NULL))
            continue;
        for (size_t i = 0; i + nl <= len; i++) {
            if (!memcmp(buf + i, needle, nl)) {
                free(buf);
                return 1;
            }
        }
        free(buf);
    }
    return 0;
}

/* ---- passwords ---------------------------------------------------------- */

static void test_password_hash_verify(void **state)
{
    (void)state;
    char h1[256], h2[256];
    struct err e = {0};
    assert_int_equal(auth_password_hash(PASSWORD, h1, sizeof h1, &e), 0);
    assert_int_equal(strncmp(h1, "scrypt$17$8$1$", 14), 0);
    /* "scrypt$17$8$1$" + 32 hex salt + "$" + 64 hex key */
    assert_int_equal(strlen(h1), 14 + 32 + 1 + 64);
    assert_null(strstr(h1, PASSWORD));
    assert_int_equal(auth_password_verify(PASSWORD, h1), 1);
    assert_int_equal(auth_password_verify("Tr0ub4dor&3-correct-horsE", h1),
                     0);
    /* a fresh salt every time */
    assert_int_equal(auth_password_hash(PASSWORD, h2, sizeof h2, &e), 0);
    assert_string_not_equal(h1, h2);
    /* malformed or tampered stored values never match (and cost nothing) */
    const char *bad[] = {
        "", "plain", "scrypt$17$8$1$", "scrypt$17$8$1$zz$00",
        "scrypt$40$8$1$00112233445566778899aabbccddeeff$00",
        "scrypt$17$8$1$00112233445566778899aabbccddeeff",
        PASSWORD,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(auth_password_verify(PASSWORD, bad[i]), 0);
    assert_int_equal(auth_password_verify(NULL, h1), 0);
    /* too small a buffer is an error, not a truncated hash */
    char small[40];
    assert_int_equal(auth_password_hash(PASSWORD, small, sizeof small, &e),
                     ERR_TOOBIG);
}

/* ---- clinics ------------------------------------------------------------ */

static void test_clinics(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    int64_t id;
    assert_int_equal(auth_clinic_add(f->s, "Rural One", "city", NULL, &id,
                                     &e), ERR_CONFLICT);
    assert_int_equal(auth_clinic_add(f->s, "Another", "rural", "CT1", &id,
                                     &e), ERR_CONFLICT);
    assert_int_equal(auth_clinic_add(f->s, "Another", "suburban", NULL, &id,
                                     &e), ERR_INVALID);
    assert_int_equal(auth_clinic_add(f->s, "", "rural", NULL, &id, &e),
                     ERR_INVALID);
    assert_int_equal(auth_clinic_add(f->s, "Bad\nName", "rural", NULL, &id,
                                     &e), ERR_INVALID);
    assert_int_equal(auth_clinic_add(f->s, "Another", "rural",
                                     "WAY-TOO-LONG-AE-TITLE", &id, &e),
                     ERR_INVALID);
    /* two clinics without an AE title are fine (NULL is not "taken") */
    assert_int_equal(auth_clinic_add(f->s, "Another", "rural", NULL, &id,
                                     &e), 0);
    assert_true(id > f->city);

    int64_t cid = 0;
    assert_int_equal(auth_clinic_by_ae(f->s, "CT1", &cid, &e), 0);
    assert_int_equal(cid, f->rural);
    assert_int_equal(auth_clinic_by_ae(f->s, " CT1            ", &cid, &e),
                     0);                              /* DICOM padding */
    assert_int_equal(cid, f->rural);
    assert_int_equal(auth_clinic_by_ae(f->s, "CT2", &cid, &e),
                     ERR_NOTFOUND);
    assert_int_equal(auth_clinic_by_ae(f->s, NULL, &cid, &e), ERR_NOTFOUND);

    /* a clinic's second modality; a title maps to one clinic only */
    assert_int_equal(auth_clinic_add_ae(f->s, "Rural One", "CT2", &e), 0);
    assert_int_equal(auth_clinic_by_ae(f->s, "CT2", &cid, &e), 0);
    assert_int_equal(cid, f->rural);
    assert_int_equal(auth_clinic_add_ae(f->s, "City Hospital", "CT2", &e),
                     ERR_CONFLICT);
    assert_int_equal(auth_clinic_add_ae(f->s, "Nowhere", "CT3", &e),
                     ERR_NOTFOUND);
    assert_int_equal(auth_clinic_add_ae(f->s, "City Hospital", "", &e),
                     ERR_INVALID);
    /* a failed clinic add leaves no half row behind */
    assert_int_equal(auth_clinic_add(f->s, "Third", "rural", "CT2", &id,
                                     &e), ERR_CONFLICT);
    assert_int_equal(auth_clinic_add(f->s, "Third", "rural", NULL, &id,
                                     &e), 0);

    /* C-MOVE destinations: only an AE given --dest, only for its clinic */
    char dest[256] = "";
    assert_int_equal(auth_clinic_add_ae_dest(f->s, "Rural One", "WS1",
                                             "10.0.0.7:104", &e), 0);
    assert_int_equal(auth_move_dest(f->s, f->rural, "WS1 ", dest, &e), 0);
    assert_string_equal(dest, "10.0.0.7:104");
    assert_int_equal(auth_move_dest(f->s, f->city, "WS1", dest, &e),
                     ERR_NOTFOUND);
    assert_int_equal(auth_move_dest(f->s, f->rural, "CT2", dest, &e),
                     ERR_NOTFOUND);                   /* sends only */
    assert_int_equal(auth_move_dest(f->s, f->rural, "NOPE", dest, &e),
                     ERR_NOTFOUND);
    assert_int_equal(auth_clinic_by_ae(f->s, "WS1", &cid, &e), 0);
    assert_int_equal(cid, f->rural);
}

/* ---- users and login ---------------------------------------------------- */

static void test_user_validation(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    int64_t id;
    /* all rejected before any hashing */
    const char *logins[] = {"", "a b", "ümlaut", "semi;colon", "x/y",
                            "0123456789012345678901234567890123456789"
                            "012345678901234567890123"};
    for (size_t i = 0; i < sizeof logins / sizeof logins[0]; i++)
        assert_int_equal(auth_user_add(f->s, logins[i], "Rural One",
                                       "requester", NULL, PASSWORD, &id, &e),
                         ERR_INVALID);
    assert_int_equal(auth_user_add(f->s, NULL, "Rural One", "requester",
                                   NULL, PASSWORD, &id, &e), ERR_INVALID);
    assert_int_equal(auth_user_add(f->s, "ok", "Rural One", "root", NULL,
                                   PASSWORD, &id, &e), ERR_INVALID);
    assert_int_equal(auth_user_add(f->s, "ok", "Rural One", "requester",
                                   NULL, "", &id, &e), ERR_INVALID);
    assert_int_equal(auth_user_add(f->s, "ok", "Nowhere", "requester", NULL,
                                   PASSWORD, &id, &e), ERR_NOTFOUND);
    assert_int_equal(auth_user_add(f->s, "ok", "City Hospital",
                                   "specialist", "neuro logy", PASSWORD, &id,
                                   &e), ERR_INVALID);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM users"), 0);
}

static void test_login_and_token(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    int64_t uid;
    assert_int_equal(auth_user_add(f->s, "dr.neuro", "City Hospital",
                                   "specialist", "neurology, stroke",
                                   PASSWORD, &uid, &e), 0);       /* #1 */
    assert_true(uid > 0);
    assert_int_equal(auth_user_add(f->s, "dr.neuro", "City Hospital",
                                   "specialist", NULL, PASSWORD, NULL, &e),
                     ERR_CONFLICT);                                /* #2 */

    char token[AUTH_TOKEN_HEX + 1];
    int64_t expires = 0;
    struct principal who;
    int64_t before = now_ms();
    assert_int_equal(auth_login(f->s, "dr.neuro", PASSWORD, "10.0.0.1",
                                token, &expires, &who, &e), 0);   /* #3 */
    assert_int_equal(strlen(token), AUTH_TOKEN_HEX);
    assert_int_equal(strspn(token, "0123456789abcdef"), AUTH_TOKEN_HEX);
    int64_t twelve_h = 12LL * 3600 * 1000;
    assert_true(expires >= before + twelve_h &&
                expires <= now_ms() + twelve_h);
    assert_int_equal(who.user_id, uid);
    assert_string_equal(who.login, "dr.neuro");
    assert_string_equal(who.role, "specialist");
    assert_int_equal(who.clinic_id, f->city);
    assert_string_equal(who.clinic, "City Hospital");
    assert_string_equal(who.specialties, "neurology,stroke");

    struct principal chk;
    assert_int_equal(auth_token_check(f->s, token, &chk, &e), 0);
    assert_memory_equal(&chk, &who, sizeof who);

    /* tokens are stored as their SHA-256 only */
    char sha[65];
    sha256_hex(token, strlen(token), sha);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM sessions WHERE token_sha256 = '%s'", sha);
    assert_int_equal(q_int(f->s, sql), 1);

    /* wrong password and unknown login: the same error */
    struct err e1 = {0}, e2 = {0};
    assert_int_equal(auth_login(f->s, "dr.neuro", "guess", "10.0.0.1",
                                token, NULL, NULL, &e1), ERR_AUTH); /* #4 */
    assert_int_equal(auth_login(f->s, "nobody", "guess", "10.0.0.1", token,
                                NULL, NULL, &e2), ERR_AUTH);        /* #5 */
    assert_string_equal(e1.msg, e2.msg);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM login_failures"), 2);

    /* bad tokens */
    assert_int_equal(auth_token_check(f->s, NULL, &chk, &e), ERR_AUTH);
    assert_int_equal(auth_token_check(f->s, "", &chk, &e), ERR_AUTH);
    assert_int_equal(auth_token_check(f->s, "abc", &chk, &e), ERR_AUTH);
    char other[AUTH_TOKEN_HEX + 1];
    strcpy(other, token);
    other[0] = other[0] == 'a' ? 'b' : 'a';
    assert_int_equal(auth_token_check(f->s, other, &chk, &e), ERR_AUTH);
    for (char *p = other; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(auth_token_check(f->s, other, &chk, &e), ERR_AUTH);

    /* nothing in plain text in the database files */
    assert_int_equal(db_contains(f, "dr.neuro"), 1);   /* the scan works */
    assert_int_equal(db_contains(f, PASSWORD), 0);
    assert_int_equal(db_contains(f, token), 0);
    assert_int_equal(db_contains(f, "guess"), 0);
}

static void test_unknown_login_costs_the_same(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    assert_int_equal(auth_user_add(f->s, "nurse", "Rural One", "requester",
                                   NULL, PASSWORD, NULL, &e), 0);  /* #1 */
    char token[AUTH_TOKEN_HEX + 1];
    double t0 = now_mono();
    assert_int_equal(auth_login(f->s, "nurse", "wrong", "10.0.0.2", token,
                                NULL, NULL, &e), ERR_AUTH);        /* #2 */
    double t1 = now_mono();
    assert_int_equal(auth_login(f->s, "ghost", "wrong", "10.0.0.2", token,
                                NULL, NULL, &e), ERR_AUTH);        /* #3 */
    double t2 = now_mono();
    assert_int_equal(auth_login(f->s, "bad name!", "wrong", "10.0.0.2",
                                token, NULL, NULL, &e), ERR_AUTH); /* #4 */
    double t3 = now_mono();
    double known = t1 - t0, unknown = t2 - t1, invalid = t3 - t2;
    /* all three did one scrypt (tens of ms at least).  Only a lower
     * bound: a busy machine (or valgrind) stretches single timings, but
     * skipping the work would make these a thousand times shorter. */
    assert_true(known > 0.02);
    assert_true(unknown > known / 3);
    assert_true(invalid > known / 3);
}

static void test_expiry_and_logout(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    assert_int_equal(auth_user_add(f->s, "admin", "City Hospital", "admin",
                                   NULL, PASSWORD, NULL, &e), 0);  /* #1 */
    char t1[AUTH_TOKEN_HEX + 1], t2[AUTH_TOKEN_HEX + 1];
    struct principal who;
    assert_int_equal(auth_login(f->s, "admin", PASSWORD, NULL, t1, NULL,
                                &who, &e), 0);                     /* #2 */
    assert_int_equal(auth_login(f->s, "admin", PASSWORD, NULL, t2, NULL,
                                &who, &e), 0);                     /* #3 */
    assert_string_not_equal(t1, t2);
    assert_int_equal(auth_token_check(f->s, t1, &who, &e), 0);
    assert_int_equal(auth_token_check(f->s, t2, &who, &e), 0);

    /* expiry: move t1's session into the past */
    char sha[65], sql[256];
    sha256_hex(t1, AUTH_TOKEN_HEX, sha);
    snprintf(sql, sizeof sql,
             "UPDATE sessions SET expires = %lld WHERE token_sha256 = '%s'",
             (long long)now_ms() - 1, sha);
    assert_int_equal(sqlite3_exec(store_db(f->s), sql, 0, 0, 0), SQLITE_OK);
    assert_int_equal(auth_token_check(f->s, t1, &who, &e), ERR_AUTH);

    /* logout revokes that session only */
    assert_int_equal(auth_logout(f->s, t2, &e), 0);
    assert_int_equal(auth_token_check(f->s, t2, &who, &e), ERR_AUTH);
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM sessions "
                                 "WHERE revoked = 1"), 1);
    assert_int_equal(auth_logout(f->s, "0123", &e), ERR_AUTH);
    char unknown[AUTH_TOKEN_HEX + 1];
    memset(unknown, 'a', AUTH_TOKEN_HEX);
    unknown[AUTH_TOKEN_HEX] = 0;
    assert_int_equal(auth_logout(f->s, unknown, &e), ERR_AUTH);
}

/* A disabled user can no longer log in, every session of theirs is
 * revoked (auth_token_live says so for a principal already handed out),
 * and auth_epoch moved, which is how a running server notices. */
static void test_user_disable(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    assert_int_equal(auth_user_add(f->s, "dr.gone", "City Hospital",
                                   "specialist", "neurology", PASSWORD, NULL,
                                   &e), 0);
    assert_int_equal(auth_user_add(f->s, "dr.stays", "City Hospital",
                                   "specialist", "neurology", PASSWORD, NULL,
                                   &e), 0);
    char t1[AUTH_TOKEN_HEX + 1], t2[AUTH_TOKEN_HEX + 1];
    struct principal gone, stays;
    assert_int_equal(auth_login(f->s, "dr.gone", PASSWORD, NULL, t1, NULL,
                                &gone, &e), 0);
    assert_int_equal(auth_login(f->s, "dr.stays", PASSWORD, NULL, t2, NULL,
                                &stays, &e), 0);
    assert_int_equal(auth_token_live(f->s, &gone), 1);
    int64_t epoch = auth_epoch(f->s);
    assert_true(epoch >= 0);

    assert_int_equal(auth_user_disable(f->s, "dr.gone", &e), 0);
    assert_true(auth_epoch(f->s) > epoch);
    assert_int_equal(auth_token_live(f->s, &gone), 0);
    assert_int_equal(auth_token_live(f->s, &stays), 1);
    assert_int_equal(auth_token_check(f->s, t1, &gone, &e), ERR_AUTH);
    assert_int_equal(auth_login(f->s, "dr.gone", PASSWORD, NULL, t1, NULL,
                                NULL, &e), ERR_AUTH);
    assert_int_equal(q_int(f->s, "SELECT revoked FROM sessions s JOIN users"
                                 " u ON u.id = s.user_id"
                                 " WHERE u.login = 'dr.gone'"), 1);
    /* Again: still disabled; an unknown login is ERR_NOTFOUND. */
    assert_int_equal(auth_user_disable(f->s, "dr.gone", &e), 0);
    assert_int_equal(auth_user_disable(f->s, "nobody", &e), ERR_NOTFOUND);

    /* A logout moves the epoch too. */
    epoch = auth_epoch(f->s);
    assert_int_equal(auth_logout(f->s, t2, &e), 0);
    assert_true(auth_epoch(f->s) > epoch);
    assert_int_equal(auth_token_live(f->s, &stays), 0);
}

static void test_gateway_token(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    char token[AUTH_TOKEN_HEX + 1];
    assert_int_equal(auth_gateway_add(f->s, "Rural One", "edge-1", token,
                                      &e), 0);
    assert_int_equal(strlen(token), AUTH_TOKEN_HEX);
    char again[AUTH_TOKEN_HEX + 1];
    assert_int_equal(auth_gateway_add(f->s, "Rural One", "edge-1", again,
                                      &e), ERR_CONFLICT);
    assert_int_equal(auth_gateway_add(f->s, "Nowhere", "edge-2", again, &e),
                     ERR_NOTFOUND);
    assert_int_equal(auth_gateway_add(f->s, "Rural One", "edge 2", again,
                                      &e), ERR_INVALID);
    struct principal who;
    assert_int_equal(auth_token_check(f->s, token, &who, &e), 0);
    assert_int_equal(who.user_id, 0);
    assert_string_equal(who.login, "gateway:edge-1");
    assert_string_equal(who.role, "gateway");
    assert_int_equal(who.clinic_id, f->rural);
    assert_string_equal(who.clinic, "Rural One");
    assert_int_equal(db_contains(f, token), 0);

    assert_int_equal(who.gateway_id,
                     q_int(f->s, "SELECT id FROM gateways"
                                 " WHERE name = 'edge-1'"));

    /* a revoked gateway is locked out */
    assert_int_equal(sqlite3_exec(store_db(f->s),
                                  "UPDATE gateways SET revoked = 1", 0, 0,
                                  0), SQLITE_OK);
    assert_int_equal(auth_token_check(f->s, token, &who, &e), ERR_AUTH);
}

static void add_failures(struct store *s, const char *login,
                         const char *remote, int n, int64_t at)
{
    for (int i = 0; i < n; i++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO login_failures (login, remote, at) "
                 "VALUES (%s%s%s, '%s', %lld)", login ? "'" : "",
                 login ? login : "NULL", login ? "'" : "", remote,
                 (long long)at);
        assert_int_equal(sqlite3_exec(store_db(s), sql, 0, 0, 0),
                         SQLITE_OK);
    }
}

static void test_rate_limit(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    assert_int_equal(auth_user_add(f->s, "gp", "Rural One", "requester",
                                   NULL, PASSWORD, NULL, &e), 0);  /* #1 */
    char token[AUTH_TOKEN_HEX + 1];
    /* one real failure is recorded against the name and the address */
    assert_int_equal(auth_login(f->s, "gp", "nope", "192.0.2.1", token,
                                NULL, NULL, &e), ERR_AUTH);        /* #2 */
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM login_failures "
                                 "WHERE login = 'gp' AND "
                                 "remote = '192.0.2.1'"), 1);
    /* four more (from elsewhere): the name is locked, even with the
     * right password and from a new address, without scrypt work */
    add_failures(f->s, "gp", "192.0.2.2", 4, now_ms());
    double t0 = now_mono();
    assert_int_equal(auth_login(f->s, "gp", PASSWORD, "198.51.100.7", token,
                                NULL, NULL, &e), ERR_RATELIMIT);
    assert_true(now_mono() - t0 < 0.05);
    /* failures older than the window do not count */
    assert_int_equal(sqlite3_exec(store_db(f->s),
                                  "UPDATE login_failures SET at = at - "
                                  "16 * 60 * 1000", 0, 0, 0), SQLITE_OK);
    assert_int_equal(auth_login(f->s, "gp", PASSWORD, "198.51.100.7", token,
                                NULL, NULL, &e), 0);               /* #3 */
    /* success cleared the name's failures */
    assert_int_equal(q_int(f->s, "SELECT count(*) FROM login_failures "
                                 "WHERE login = 'gp'"), 0);

    /* per address: 20 failures for various names lock that address */
    add_failures(f->s, NULL, "203.0.113.9", 20, now_ms());
    assert_int_equal(auth_login(f->s, "gp", PASSWORD, "203.0.113.9", token,
                                NULL, NULL, &e), ERR_RATELIMIT);
    assert_int_equal(auth_login(f->s, "gp", PASSWORD, "203.0.113.10", token,
                                NULL, NULL, &e), 0);               /* #4 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_hash_verify),
        cmocka_unit_test_setup_teardown(test_clinics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_validation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_login_and_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_login_costs_the_same,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_logout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gateway_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
