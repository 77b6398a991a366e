/*
 * test_admin — the administration subcommands (server/admin.c): init
 * makes a private data dir, a schema and a dev certificate and is
 * idempotent; given --cert/--key it records them; demo creates the demo
 * clinics and users once, whose password works; the subcommands' exit
 * statuses (0 ok, 1 usage, 2 failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../server/admin.h"
#include "../../server/auth.h"
#include "../../server/config.h"
#include "../../server/store.h"
#include "testutil.h"

static char tmp[256], data[300];

static int setup(void **state)
{
    (void)state;
    strcpy(tmp, "/tmp/hashi-test-admin-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(data, sizeof data, "%s/data", tmp);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(tmp);
}

static void slurp(const char *path, unsigned char **buf, size_t *len)
{
    struct err e = { 0, "" };
    assert_int_equal(read_file(path, 1 << 20, buf, len, &e), 0);
}

static int64_t count(struct store *s, const char *sql)
{
    return tu_sql_int(store_db(s), sql);
}

static void init_makes_private_dir_and_cert(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    char cert[400], key[400];
    struct stat st;
    assert_int_equal(admin_init(data, NULL, NULL, &e), 0);
    assert_int_equal(stat(data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(cert, sizeof cert, "%s/tls/cert.pem", data);
    snprintf(key, sizeof key, "%s/tls/key.pem", data);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(cert, &st), 0);

    /* Again: nothing replaced. */
    unsigned char *a, *b;
    size_t alen, blen;
    slurp(cert, &a, &alen);
    assert_int_equal(admin_init(data, NULL, NULL, &e), 0);
    slurp(cert, &b, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    free(a);
    free(b);

    /* A lost key: both made anew, and they match. */
    assert_int_equal(unlink(key), 0);
    assert_int_equal(admin_init(data, NULL, NULL, &e), 0);
    assert_int_equal(stat(key, &st), 0);
    slurp(cert, &b, &blen);
    assert_true(blen > 100);
    free(b);

    /* The store has its schema: the clinics table answers. */
    struct store *s = store_open(data, &e);
    assert_non_null(s);
    assert_int_equal(count(s, "SELECT count(*) FROM clinics"), 0);
    store_close(s);
}

static void init_with_given_cert(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    char cert[400], key[400], conf[400], tls[400];
    snprintf(cert, sizeof cert, "%s/c.pem", tmp);
    snprintf(key, sizeof key, "%s/k.pem", tmp);
    assert_int_equal(admin_init(data, cert, key, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "does not exist"));
    assert_int_equal(admin_init(data, cert, NULL, &e), ERR_INVALID);

    FILE *f = fopen(cert, "w");
    fputs("x", f);
    fclose(f);
    f = fopen(key, "w");
    fputs("y", f);
    fclose(f);
    assert_int_equal(admin_init(data, cert, key, &e), 0);
    snprintf(tls, sizeof tls, "%s/tls/key.pem", data);
    assert_int_not_equal(access(tls, F_OK), 0);     /* no dev cert made */

    /* hashi.conf names them, and the server's config reads it. */
    snprintf(conf, sizeof conf, "%s/hashi.conf", data);
    struct server_config c;
    char *argv[] = { "--data", data, NULL };
    assert_int_equal(access(conf, R_OK), 0);
    assert_int_equal(config_from_args(&c, 2, argv, "/x/hashi-server", &e), 0);
    char real[4096];
    assert_non_null(realpath(cert, real));
    assert_string_equal(c.cert, real);
    assert_non_null(realpath(key, real));
    assert_string_equal(c.key, real);
}

static void demo_is_idempotent_and_logs_in(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(admin_demo(data, 0, stdout, &e), ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "init"));

    assert_int_equal(admin_init(data, NULL, NULL, &e), 0);
    FILE *mem = open_memstream(&out, &outlen);
    assert_int_equal(admin_demo(data, 0, mem, &e), 0);
    assert_int_equal(admin_demo(data, 0, mem, &e), 0);
    fclose(mem);
    assert_non_null(strstr(out, "DEMO"));
    assert_non_null(strstr(out, ADMIN_DEMO_PASSWORD));
    assert_non_null(strstr(out, "demo-neuro2"));
    free(out);

    struct store *s = store_open(data, &e);
    assert_non_null(s);
    assert_int_equal(count(s, "SELECT count(*) FROM clinics"), 2);
    assert_int_equal(count(s, "SELECT count(*) FROM users"), 5);
    assert_int_equal(count(s, "SELECT count(*) FROM clinics WHERE"
                              " name = 'Demo Rural Clinic' AND kind = 'rural'"
                              " AND calling_ae = 'DEMO_CT'"), 1);
    assert_int_equal(count(s, "SELECT count(*) FROM users u JOIN clinics c"
                              " ON c.id = u.clinic_id WHERE u.login ="
                              " 'demo-requester' AND c.name ="
                              " 'Demo Rural Clinic'"), 1);
    assert_int_equal(count(s, "SELECT count(*) FROM user_specialties"
                              " WHERE specialty = 'neurology'"), 2);

    int64_t clinic = 0;
    assert_int_equal(auth_clinic_by_ae(s, "DEMO_CT", &clinic, &e), 0);
    assert_true(clinic > 0);

    char token[AUTH_TOKEN_HEX + 1];
    int64_t expires;
    struct principal who;
    assert_int_equal(auth_login(s, "demo-neuro", ADMIN_DEMO_PASSWORD,
                                "127.0.0.1", token, &expires, &who, &e), 0);
    assert_string_equal(who.role, "specialist");
    assert_string_equal(who.clinic, "Demo City Hospital");
    assert_non_null(strstr(who.specialties, "neurology"));
    assert_int_equal(auth_login(s, "demo-admin", ADMIN_DEMO_PASSWORD,
                                "127.0.0.1", token, &expires, &who, &e), 0);
    assert_string_equal(who.role, "admin");
    store_close(s);
}

static void subcommand_exit_status(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    assert_int_equal(admin_init(data, NULL, NULL, &e), 0);
    struct {
        int want;
        char *argv[12];
    } cases[] = {
        { 1, { "clinic", NULL } },
        { 1, { "clinic", "remove", NULL } },
        { 1, { "clinic", "add", "--data", data, "--name", "X", NULL } },
        { 1, { "clinic", "add", "--data", data, "--name", "X", "--kind",
               "town", NULL } },
        { 1, { "clinic", "add", "--data", data, "--name", "X", "--kind",
               "city", "--calling-ae", "WAY_TOO_LONG_AE_TITLE", NULL } },
        { 0, { "clinic", "add", "--data", data, "--name", "Hill",
               "--kind", "rural", "--calling-ae", "HILL_CT", NULL } },
        { 2, { "clinic", "add", "--data", data, "--name", "Hill",
               "--kind", "rural", NULL } },
        { 2, { "clinic", "add", "--data", data, "--name", "Other",
               "--kind", "rural", "--calling-ae", "HILL_CT", NULL } },
        { 1, { "gateway", "add", "--data", data, "--clinic", "Hill",
               NULL } },
        { 2, { "gateway", "add", "--data", data, "--clinic", "Nowhere",
               "--name", "g", NULL } },
        { 1, { "user", "add", "--data", data, "--login", "u", "--clinic",
               "Hill", "--role", "boss", NULL } },
        { 1, { "init", "--data", data, "--bogus", NULL } },
        { 1, { "init", "--data", NULL } },
        { 2, { "demo", "--data", "/nonexistent/hashi", NULL } },
        { 1, { "demo", "--data", data, "--accounts-only", "--live-study",
               "x", NULL } },
        { 1, { "demo", "--accounts-only=yes", NULL } },
        { 1, { "demo", "--live-study", NULL } },
        { 2, { "demo", "--live-study", "/proc/no/such/dir", NULL } },
        { 1, { "frobnicate", NULL } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int argc = 0;
        while (cases[i].argv[argc])
            argc++;
        int got = admin_main(argc, cases[i].argv);
        if (got != cases[i].want)
            fail_msg("case %zu (%s %s): exit %d, want %d", i,
                     cases[i].argv[0], argc > 1 ? cases[i].argv[1] : "",
                     got, cases[i].want);
    }
    struct store *s = store_open(data, &e);
    assert_non_null(s);
    assert_int_equal(count(s, "SELECT count(*) FROM clinics"), 1);
    store_close(s);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(init_makes_private_dir_and_cert),
        T(init_with_given_cert),
        T(demo_is_idempotent_and_logs_in),
        T(subcommand_exit_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
