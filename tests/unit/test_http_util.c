/*
 * test_http_util — the pure helpers of http.h that route handlers rely
 * on: Accept negotiation, query parameters, loopback detection, the
 * principal as JSON, the base URL (a hostile Host header is not
 * echoed) and the one Origin policy of HTTP and WSS.  The request machinery itself is exercised against the real
 * server by tests/integration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/http.h"
#include "../../server/server.h"

static void test_accepts(void **state)
{
    (void)state;
    struct http_req r;

    memset(&r, 0, sizeof(r));
    assert_true(http_accepts(&r, "image/jpeg"));            /* no header */
    r.accept = "image/jpeg";
    assert_true(http_accepts(&r, "image/jpeg"));
    assert_false(http_accepts(&r, "application/json"));
    r.accept = "text/html, image/*;q=0.8";
    assert_true(http_accepts(&r, "image/jpeg"));
    assert_false(http_accepts(&r, "application/dicom+json"));
    r.accept = "application/json;q=0.9, */*;q=0.1";
    assert_true(http_accepts(&r, "multipart/related"));
    r.accept = "multipart/related; type=\"application/dicom\"";
    assert_true(http_accepts(&r, "multipart/related"));
    assert_false(http_accepts(&r, "application/dicom"));
    r.accept = "application/dicom+json";
    assert_true(http_accepts(&r, "application/dicom+json"));
    assert_false(http_accepts(&r, "application/dicom"));
    assert_false(http_accepts(&r, "application/json"));
    r.accept = "IMAGE/JPEG";
    assert_true(http_accepts(&r, "image/jpeg"));
    r.accept = "image/jpegx, imagex/*";
    assert_false(http_accepts(&r, "image/jpeg"));
}

static void test_params(void **state)
{
    (void)state;
    struct http_req r;
    struct http_param p[] = {
        { "PatientID", "A*" }, { "limit", "10" }, { "limit", "20" },
        { "empty", "" },
    };

    memset(&r, 0, sizeof(r));
    assert_null(http_param(&r, "limit"));
    r.params = p;
    r.nparams = 4;
    assert_string_equal(http_param(&r, "PatientID"), "A*");
    assert_string_equal(http_param(&r, "limit"), "10");   /* the first */
    assert_string_equal(http_param(&r, "empty"), "");
    assert_null(http_param(&r, "patientid"));             /* exact case */
}

static void test_loopback(void **state)
{
    (void)state;
    struct http_req r;
    const char *yes[] = { "127.0.0.1", "127.1.2.3", "::1",
                          "::ffff:127.0.0.1" };
    const char *no[] = { "10.0.0.1", "::ffff:10.0.0.1", "1127.0.0.1",
                         "::2", "?" };

    memset(&r, 0, sizeof(r));
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(r.remote, sizeof(r.remote), "%s", yes[i]);
        assert_true(http_remote_is_loopback(&r));
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        snprintf(r.remote, sizeof(r.remote), "%s", no[i]);
        assert_false(http_remote_is_loopback(&r));
    }
}

static void test_principal_json(void **state)
{
    (void)state;
    struct principal who;
    json_t *j;

    memset(&who, 0, sizeof(who));
    snprintf(who.login, sizeof(who.login), "dr-a");
    snprintf(who.role, sizeof(who.role), "specialist");
    snprintf(who.clinic, sizeof(who.clinic), "City");
    snprintf(who.specialties, sizeof(who.specialties), "neurology,,stroke");
    who.clinic_id = 7;
    j = http_principal_json(&who);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "login")),
                        "dr-a");
    assert_int_equal(json_integer_value(json_object_get(j, "clinic_id")), 7);
    json_t *sp = json_object_get(j, "specialties");
    assert_int_equal(json_array_size(sp), 2);
    assert_string_equal(json_string_value(json_array_get(sp, 1)), "stroke");
    /* no password, token or hash ever in it */
    assert_int_equal(json_object_size(j), 5);
    json_decref(j);
}

static void test_base_url(void **state)
{
    (void)state;
    struct server srv;
    struct http_req r;
    char url[320];

    memset(&srv, 0, sizeof(srv));
    snprintf(srv.cfg.listen_host, sizeof(srv.cfg.listen_host), "127.0.0.1");
    srv.cfg.listen_port = 8443;
    memset(&r, 0, sizeof(r));
    r.srv = &srv;
    http_base_url(&r, url, sizeof(url));
    assert_string_equal(url, "https://127.0.0.1:8443");
    r.host = "hashi.example:9443";
    http_base_url(&r, url, sizeof(url));
    assert_string_equal(url, "https://hashi.example:9443");
    r.host = "[::1]:8443";
    http_base_url(&r, url, sizeof(url));
    assert_string_equal(url, "https://[::1]:8443");
    r.host = "evil\"><script>";
    http_base_url(&r, url, sizeof(url));
    assert_string_equal(url, "https://127.0.0.1:8443");
    r.host = "a/b@c";
    http_base_url(&r, url, sizeof(url));
    assert_string_equal(url, "https://127.0.0.1:8443");
}

/* The Origin policy both http.c and ws.c apply: none, the server's own
 * (as addressed, or its loopback names) and configured ones pass;
 * "null", look-alikes and other schemes or ports do not. */
static void test_origin_allowed(void **state)
{
    (void)state;
    struct server_config c;
    static const char *const refused[] = {
        "null", "NULL", "", "https://evil.example",
        "https://app.example.org.evil.example", "http://127.0.0.1:8443",
        "https://127.0.0.1:8444", "https://hashi.example:8443/",
        "https://app.example.or", "https://localhost",
    };

    memset(&c, 0, sizeof(c));
    c.listen_port = 8443;
    strcpy(c.origins, "https://app.example.org, https://b.example:9443");
    assert_true(http_origin_allowed(&c, NULL, "hashi.example:8443"));
    assert_true(http_origin_allowed(&c, "https://hashi.example:8443",
                                    "hashi.example:8443"));
    assert_true(http_origin_allowed(&c, "HTTPS://Hashi.Example:8443",
                                    "hashi.example:8443"));
    assert_true(http_origin_allowed(&c, "https://localhost:8443", NULL));
    assert_true(http_origin_allowed(&c, "https://127.0.0.1:8443", ""));
    assert_true(http_origin_allowed(&c, "https://app.example.org", NULL));
    assert_true(http_origin_allowed(&c, "https://b.example:9443", NULL));
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (http_origin_allowed(&c, refused[i], "hashi.example:8443"))
            fail_msg("Origin '%s' allowed", refused[i]);
    }
    /* A Host of "null" does not make the origin "https://null" pass
     * for "null" itself. */
    assert_false(http_origin_allowed(&c, "null", "null"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_principal_json),
        cmocka_unit_test(test_base_url),
        cmocka_unit_test(test_origin_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
