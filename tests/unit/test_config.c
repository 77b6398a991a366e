/*
 * test_config — hashi-server's settings (server/config.c): defaults, the
 * flags, the config files and their precedence, HOST:PORT parsing, and
 * that every bad value is refused with a message naming it.
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

#include "../../proto/log.h"
#include "../../server/config.h"
#include "testutil.h"

static char tmp[256];

static int setup(void **state)
{
    (void)state;
    strcpy(tmp, "/tmp/hashi-test-config-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(tmp);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* config_from_args over a NULL-terminated list of flags. */
static int run_args(struct server_config *c, struct err *e, ...)
{
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, e);
    for (char *a; (a = va_arg(ap, char *)) && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    e->code = 0;
    e->msg[0] = 0;
    return config_from_args(c, argc, argv, "/nonexistent/bin/hashi-server",
                            e);
}

static void defaults(void **state)
{
    (void)state;
    char cwd[4096];
    struct server_config c;
    struct err e;
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmp), 0);   /* no ./data/hashi.conf here */
    int rc = run_args(&c, &e, NULL);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8443);
    assert_string_equal(c.dicom_host, "127.0.0.1");
    assert_int_equal(c.dicom_port, 11112);
    assert_string_equal(c.ae_title, "HASHI");
    assert_string_equal(c.cert, "./data/tls/cert.pem");
    assert_string_equal(c.key, "./data/tls/key.pem");
    assert_string_equal(c.web_root, CONFIG_INSTALLED_WEB);
    assert_string_equal(c.origins, "");
    assert_int_equal(c.accept_unknown_ae, 0);
    assert_true(c.max_instance == 2ULL * 1024 * 1024 * 1024);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.due_stat, 600);
    assert_int_equal(c.due_urgent, 3600);
    assert_int_equal(c.due_routine, 86400);
    assert_int_equal(c.upload_max_age, 7 * 86400);
    assert_int_equal(c.dicom_max_associations, 16);
    assert_int_equal(c.dicom_artim_timeout, 10);
    assert_int_equal(c.dicom_idle_timeout, 60);
}

static void all_flags(void **state)
{
    (void)state;
    struct server_config c;
    struct err e;
    int rc = run_args(&c, &e, "--data", tmp, "--listen", "0.0.0.0:9443",
                      "--dicom", "[::1]:104", "--ae-title", "MY_AE",
                      "--cert", "/x/c.pem", "--key=/x/k.pem",
                      "--web", "/srv/web", "--origin", "https://a.example",
                      "--origin", "http://b.example:8080",
                      "--accept-unknown-ae", "--max-instance", "10M",
                      "--log-level", "debug", "--due-stat", "2",
                      "--upload-max-age", "90",
                      "--dicom-max-associations", "4",
                      "--dicom-artim-timeout", "3",
                      "--dicom-idle-timeout=7", NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(c.data_dir, tmp);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9443);
    assert_string_equal(c.dicom_host, "::1");
    assert_int_equal(c.dicom_port, 104);
    assert_string_equal(c.ae_title, "MY_AE");
    assert_string_equal(c.cert, "/x/c.pem");
    assert_string_equal(c.key, "/x/k.pem");
    assert_string_equal(c.web_root, "/srv/web");
    assert_string_equal(c.origins, "https://a.example,http://b.example:8080");
    assert_int_equal(c.accept_unknown_ae, 1);
    assert_true(c.max_instance == 10ULL * 1024 * 1024);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.due_stat, 2);
    assert_int_equal(c.upload_max_age, 90);
    assert_int_equal(c.dicom_max_associations, 4);
    assert_int_equal(c.dicom_artim_timeout, 3);
    assert_int_equal(c.dicom_idle_timeout, 7);
}

static void cert_defaults_follow_data(void **state)
{
    (void)state;
    struct server_config c;
    struct err e;
    char want[512];
    assert_int_equal(run_args(&c, &e, "--data", tmp, NULL), 0);
    snprintf(want, sizeof want, "%s/tls/cert.pem", tmp);
    assert_string_equal(c.cert, want);
    snprintf(want, sizeof want, "%s/tls/key.pem", tmp);
    assert_string_equal(c.key, want);
}

static void web_root_beside_exe(void **state)
{
    (void)state;
    char bin[512], web[512], exe[600], real[4096];
    struct server_config c;
    struct err e = { 0, "" };
    snprintf(bin, sizeof bin, "%s/build", tmp);
    snprintf(web, sizeof web, "%s/client/web", tmp);
    assert_int_equal(mkdir_p(bin, 0700), 0);
    assert_int_equal(mkdir_p(web, 0700), 0);
    snprintf(exe, sizeof exe, "%s/hashi-server", bin);
    config_defaults(&c);
    assert_int_equal(config_finish(&c, exe, &e), 0);
    assert_non_null(realpath(web, real));
    assert_string_equal(c.web_root, real);
}

static void hostport(void **state)
{
    (void)state;
    char h[256];
    int port = -1;
    struct err e;
    assert_int_equal(config_parse_hostport("[::1]:8443", h, sizeof h, &port,
                                           1, &e), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(port, 8443);
    assert_int_equal(config_parse_hostport("[fe80::1:2]:1", h, sizeof h,
                                           &port, 1, &e), 0);
    assert_string_equal(h, "fe80::1:2");
    assert_int_equal(port, 1);
    assert_int_equal(config_parse_hostport("localhost:65535", h, sizeof h,
                                           &port, 1, &e), 0);
    assert_string_equal(h, "localhost");
    assert_int_equal(port, 65535);
    assert_int_equal(config_parse_hostport("pacs-1.example.org:104", h,
                                           sizeof h, &port, 1, &e), 0);
    assert_string_equal(h, "pacs-1.example.org");
    assert_int_equal(config_parse_hostport("127.0.0.1:0", h, sizeof h,
                                           &port, 0, &e), 0);
    assert_int_equal(port, 0);

    static const char *bad[] = {
        "127.0.0.1:0",         /* 0 not allowed where min is 1 */
        "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:80a", "127.0.0.1:-1",
        "127.0.0.1", ":8443", "::1:8443", "[::1]8443", "[::1]:", "[]:1",
        "[127.0.0.1]:1", "[zz::1]:1", "300.1.1.1:1", "-bad:1", "bad-:1",
        "a_b:1", "a..b:1", "host name:1", "127.0.0.1:+80",
        "127.0.0.1:99999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.code = 0;
        e.msg[0] = 0;
        if (config_parse_hostport(bad[i], h, sizeof h, &port, 1, &e)
            != ERR_INVALID)
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(e.code, ERR_INVALID);
        assert_non_null(strstr(e.msg, bad[i]));
    }
    assert_non_null(strstr((config_parse_hostport("::1:8443", h, sizeof h,
                                                  &port, 1, &e), e.msg),
                           "brackets"));
}

static void loopback(void **state)
{
    (void)state;
    assert_true(config_host_is_loopback("127.0.0.1"));
    assert_true(config_host_is_loopback("127.1.2.3"));
    assert_true(config_host_is_loopback("::1"));
    assert_true(config_host_is_loopback("localhost"));
    assert_false(config_host_is_loopback("0.0.0.0"));
    assert_false(config_host_is_loopback("::"));
    assert_false(config_host_is_loopback("10.0.0.1"));
    assert_false(config_host_is_loopback("example.org"));
}

/* Each bad command line: refused, and the message names the culprit. */
static void bad_flags(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b, *needle;
    } cases[] = {
        { "--listen", "127.0.0.1:0", "listen" },
        { "--listen", "127.0.0.1:70000", "port" },
        { "--listen", "nohost", "HOST:PORT" },
        { "--dicom", "127.0.0.1:x", "dicom" },
        { "--dicom", "::1:104", "brackets" },
        { "--log-level", "verbose", "log-level" },
        { "--log-level", "", "log-level" },
        { "--ae-title", "SEVENTEEN_CHARS_X", "ae-title" },
        { "--ae-title", "A\\B", "ae-title" },
        { "--ae-title", " LEAD", "ae-title" },
        { "--ae-title", "", "ae-title" },
        { "--origin", "ftp://x", "origin" },
        { "--origin", "https://a.example/path", "origin" },
        { "--origin", "https://a,b", "origin" },
        { "--max-instance", "0", "max-instance" },
        { "--max-instance", "12X", "max-instance" },
        { "--max-instance", "-5", "max-instance" },
        { "--max-instance", "99999999999999999999999", "max-instance" },
        { "--accept-unknown-ae=maybe", NULL, "accept-unknown-ae" },
        { "--due-stat", "0", "due-stat" },
        { "--due-stat", "ten", "due-stat" },
        { "--upload-max-age", "0", "upload-max-age" },
        { "--upload-max-age", "1w", "upload-max-age" },
        { "--dicom-max-associations", "0", "dicom-max-associations" },
        { "--dicom-max-associations", "1025", "dicom-max-associations" },
        { "--dicom-artim-timeout", "-1", "dicom-artim-timeout" },
        { "--dicom-idle-timeout", "1m", "dicom-idle-timeout" },
        { "--bogus", "1", "--bogus" },
        { "--log-level", NULL, "needs a value" },
        { "positional", NULL, "positional" },
        { "--data", "", "data" },
        { "--cert", "/x/c.pem", "together" },
        { "--config", "/nonexistent/hashi.conf", "/nonexistent/hashi.conf" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct server_config c;
        struct err e;
        int rc = cases[i].b
                     ? run_args(&c, &e, "--data", tmp, cases[i].a, cases[i].b,
                                NULL)
                     : run_args(&c, &e, "--data", tmp, cases[i].a, NULL);
        if (rc != ERR_INVALID)
            fail_msg("%s %s: rc %d", cases[i].a, cases[i].b ? cases[i].b : "",
                     rc);
        if (!strstr(e.msg, cases[i].needle))
            fail_msg("%s %s: message '%s' lacks '%s'", cases[i].a,
                     cases[i].b ? cases[i].b : "", e.msg, cases[i].needle);
    }
}

static void sizes_and_bools(void **state)
{
    (void)state;
    struct server_config c;
    struct err e;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "max-instance", "512", &e), 0);
    assert_true(c.max_instance == 512);
    assert_int_equal(config_set(&c, "max-instance", "3GiB", &e), 0);
    assert_true(c.max_instance == 3ULL << 30);
    assert_int_equal(config_set(&c, "max-instance", "64k", &e), 0);
    assert_true(c.max_instance == 64 << 10);
    assert_int_equal(config_set(&c, "accept-unknown-ae", "yes", &e), 0);
    assert_int_equal(c.accept_unknown_ae, 1);
    assert_int_equal(config_set(&c, "accept-unknown-ae", "FALSE", &e), 0);
    assert_int_equal(c.accept_unknown_ae, 0);
    assert_int_equal(config_set(&c, "ae-title", "SIXTEEN_CHARS_XY", &e), 0);
    assert_string_equal(c.ae_title, "SIXTEEN_CHARS_XY");
    assert_int_equal(config_set(&c, "ae-title", "WITH SPACE", &e), 0);
    assert_int_equal(config_set(&c, "config", "x", &e), ERR_INVALID);
}

/* Web Push: the CA file for push services, the VAPID contact URL. */
static void push_settings(void **state)
{
    (void)state;
    struct server_config c;
    struct err e;
    config_defaults(&c);
    assert_string_equal(c.push_ca, "");
    assert_string_equal(c.push_contact, "");
    assert_int_equal(config_set(&c, "push-ca", "/etc/push-ca.pem", &e), 0);
    assert_string_equal(c.push_ca, "/etc/push-ca.pem");
    assert_int_equal(config_set(&c, "push-contact", "mailto:ops@x.org", &e),
                     0);
    assert_string_equal(c.push_contact, "mailto:ops@x.org");
    assert_int_equal(config_set(&c, "push-contact", "ops@x.org", &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "push-contact"));
    assert_string_equal(c.push_contact, "mailto:ops@x.org");

    /* push-allow: repeatable, kept canonical; a URL or junk is refused. */
    assert_string_equal(c.push_allow, "");
    assert_int_equal(config_set(&c, "push-allow", "Push.Example.ORG", &e), 0);
    assert_int_equal(config_set(&c, "push-allow", "*.wns.example", &e), 0);
    assert_int_equal(config_set(&c, "push-allow", "[::1]", &e), 0);
    assert_int_equal(config_set(&c, "push-allow", "127.0.0.1", &e), 0);
    assert_string_equal(c.push_allow,
                        "push.example.org,*.wns.example,::1,127.0.0.1");
    assert_int_equal(config_set(&c, "push-allow", "https://x.org/", &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "push-allow"));
    assert_int_equal(config_set(&c, "push-allow", "a..b", &e), ERR_INVALID);
    assert_int_equal(config_set(&c, "push-allow", "*.", &e), ERR_INVALID);
    assert_int_equal(config_set(&c, "push-allow", "", &e), ERR_INVALID);
    assert_string_equal(c.push_allow,
                        "push.example.org,*.wns.example,::1,127.0.0.1");
}

static void file_and_precedence(void **state)
{
    (void)state;
    char own[512], other[512];
    struct server_config c;
    struct err e;
    /* <data>/hashi.conf: lowest of the files. */
    snprintf(own, sizeof own, "%s/hashi.conf", tmp);
    write_text(own,
               "# the data dir's own settings\n"
               "\n"
               "listen = 127.0.0.1:9000   # trailing comment\n"
               "dicom = 127.0.0.1:0\n"
               "ae-title = FROM_OWN\n"
               "origin = https://own.example\n"
               "log-level = warn\n"
               "data = /somewhere/else\n");
    /* --config FILE: above hashi.conf. */
    snprintf(other, sizeof other, "%s/other.conf", tmp);
    write_text(other,
               "  ae-title=\"FROM_CONFIG\"\n"
               "max-instance = 1M\n"
               "accept-unknown-ae = true\n"
               "due-urgent = 120\n");

    assert_int_equal(run_args(&c, &e, "--data", tmp, "--config", other,
                              NULL), 0);
    assert_string_equal(c.data_dir, tmp);      /* hashi.conf can't move it */
    assert_int_equal(c.listen_port, 9000);
    assert_int_equal(c.dicom_port, 0);
    assert_string_equal(c.ae_title, "FROM_CONFIG");
    assert_string_equal(c.origins, "https://own.example");
    assert_int_equal(c.log_level, LOG_WARN);
    assert_true(c.max_instance == 1 << 20);
    assert_int_equal(c.accept_unknown_ae, 1);
    assert_int_equal(c.due_urgent, 120);

    /* Flags beat both files; flag origins replace file origins. */
    assert_int_equal(run_args(&c, &e, "--config", other, "--data", tmp,
                              "--ae-title", "FROM_FLAG", "--listen",
                              "localhost:9001", "--origin",
                              "https://flag.example",
                              "--accept-unknown-ae=false", NULL), 0);
    assert_string_equal(c.ae_title, "FROM_FLAG");
    assert_string_equal(c.listen_host, "localhost");
    assert_int_equal(c.listen_port, 9001);
    assert_string_equal(c.origins, "https://flag.example");
    assert_int_equal(c.accept_unknown_ae, 0);
    assert_int_equal(c.dicom_port, 0);         /* still from hashi.conf */
}

static void config_file_names_data(void **state)
{
    (void)state;
    char conf[512], data[512], own[600];
    struct server_config c;
    struct err e;
    snprintf(data, sizeof data, "%s/d2", tmp);
    assert_int_equal(mkdir_p(data, 0700), 0);
    snprintf(own, sizeof own, "%s/hashi.conf", data);
    write_text(own, "ae-title = D2_OWN\n");
    snprintf(conf, sizeof conf, "%s/c.conf", tmp);
    char text[600];
    snprintf(text, sizeof text, "data = %s\n", data);
    write_text(conf, text);
    assert_int_equal(run_args(&c, &e, "--config", conf, NULL), 0);
    assert_string_equal(c.data_dir, data);
    assert_string_equal(c.ae_title, "D2_OWN");  /* read from the new data */
}

static void bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *text, *needle;
    } cases[] = {
        { "listen = 127.0.0.1:8443\nno equals sign\n", ":2:" },
        { "# ok\nfrobnicate = 1\n", "frobnicate" },
        { "log-level = loud\n", "log-level" },
        { "dicom = [::1]:123456\n", ":1:" },
        { "config = other.conf\n", "config" },
        { "origin = javascript:alert(1)\n", "origin" },
    };
    char path[512];
    snprintf(path, sizeof path, "%s/bad.conf", tmp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct server_config c;
        struct err e;
        write_text(path, cases[i].text);
        if (run_args(&c, &e, "--data", tmp, "--config", path, NULL)
            != ERR_INVALID)
            fail_msg("accepted file: %s", cases[i].text);
        if (!strstr(e.msg, cases[i].needle) || !strstr(e.msg, "bad.conf"))
            fail_msg("message '%s' lacks '%s' or the file name", e.msg,
                     cases[i].needle);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(defaults),
        T(all_flags),
        T(cert_defaults_follow_data),
        T(web_root_beside_exe),
        T(hostport),
        T(loopback),
        T(bad_flags),
        T(sizes_and_bools),
        T(push_settings),
        T(file_and_precedence),
        T(config_file_names_data),
        T(bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
