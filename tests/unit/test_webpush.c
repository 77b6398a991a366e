/*
 * test_webpush — the Web Push pieces that need no network: RFC 8291's
 * worked example (section 5, intermediate values in Appendix A) encrypts
 * to the RFC's bytes exactly; a fresh encryption has the 86-byte header
 * (its own salt and key each time) and the right length; a p256dh that
 * is no curve point is refused; base64url round-trips and refuses what
 * is not base64url; the VAPID key is made 0600 once and kept; endpoint
 * hosts are held to the push services and --push-allow, and addresses
 * to public ones unless the host was allowed by name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "../../server/webpush.h"
#include "testutil.h"

static const char *const UA_PUBLIC =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8"
    "pZGH6SRpkNtoIAiw4";
static const char *const AUTH = "BTBZMqHH6r4Tts7J_aSIgg";
static const char *const AS_PRIVATE =
    "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
static const char *const AS_PUBLIC =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC"
    "8wEqKK6PBru3jl7A8";
static const char *const SALT = "DGv6ra1nlYgDCS1FRnbzlw";
static const char *const PLAIN = "When I grow up, I want to be a watermelon";
static const char *const MESSAGE =
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZI"
    "IgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXz"
    "tLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

static void decode(const char *s, unsigned char *out, size_t want)
{
    assert_int_equal(webpush_b64url_decode(s, out, want), (long)want);
}

static void test_rfc8291_vector(void **state)
{
    (void)state;
    unsigned char ua[65], auth[16], asp[32], asq[65], salt[16];
    decode(UA_PUBLIC, ua, 65);
    decode(AUTH, auth, 16);
    decode(AS_PRIVATE, asp, 32);
    decode(AS_PUBLIC, asq, 65);
    decode(SALT, salt, 16);
    unsigned char *out = NULL;
    size_t len = 0;
    struct err e = { 0, "" };
    assert_int_equal(webpush_encrypt(ua, auth, asp, asq, salt,
                                     (const unsigned char *)PLAIN,
                                     strlen(PLAIN), &out, &len, &e), 0);
    assert_int_equal(len, 86 + strlen(PLAIN) + 1 + 16);
    char *b = malloc(len * 4 / 3 + 4);
    webpush_b64url_encode(out, len, b);
    assert_string_equal(b, MESSAGE);
    free(b);
    free(out);
}

static void test_fresh_keys_each_time(void **state)
{
    (void)state;
    unsigned char ua[65], auth[16], *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    struct err e = { 0, "" };
    decode(UA_PUBLIC, ua, 65);
    decode(AUTH, auth, 16);
    const unsigned char msg[] = "{\"case_id\":\"c1\"}";
    assert_int_equal(webpush_encrypt(ua, auth, NULL, NULL, NULL, msg,
                                     sizeof msg - 1, &a, &la, &e), 0);
    assert_int_equal(webpush_encrypt(ua, auth, NULL, NULL, NULL, msg,
                                     sizeof msg - 1, &b, &lb, &e), 0);
    assert_int_equal(la, 86 + sizeof msg - 1 + 1 + 16);
    assert_int_equal(lb, la);
    /* rs 4096, idlen 65, an uncompressed point */
    const unsigned char rs[] = { 0, 0, 0x10, 0, 65, 4 };
    assert_memory_equal(a + 16, rs, sizeof rs);
    assert_memory_not_equal(a, b, 16);            /* salt */
    assert_memory_not_equal(a + 21, b + 21, 65);  /* ephemeral key */
    free(a);
    free(b);
}

static void test_bad_point_refused(void **state)
{
    (void)state;
    unsigned char ua[65], auth[16] = { 0 }, *out = NULL;
    size_t len = 0;
    struct err e = { 0, "" };
    decode(UA_PUBLIC, ua, 65);
    ua[64] ^= 1;                                  /* off the curve */
    assert_int_equal(webpush_encrypt(ua, auth, NULL, NULL, NULL,
                                     (const unsigned char *)"x", 1, &out,
                                     &len, &e), ERR_INVALID);
    assert_null(out);
}

static void test_b64url(void **state)
{
    (void)state;
    unsigned char buf[8];
    char s[16];
    const unsigned char in[] = { 0xfb, 0xff, 0x00, 0x3e };
    assert_int_equal(webpush_b64url_encode(in, 4, s), 6);
    assert_string_equal(s, "-_8APg");
    assert_int_equal(webpush_b64url_decode(s, buf, sizeof buf), 4);
    assert_memory_equal(buf, in, 4);
    assert_int_equal(webpush_b64url_decode("-_8APg==", buf, 8), -1);
    assert_int_equal(webpush_b64url_decode("+/8A", buf, 8), -1);
    assert_int_equal(webpush_b64url_decode("A", buf, 8), -1);
    assert_int_equal(webpush_b64url_decode("AAAAAAAAAAAA", buf, 8), -1);
}

static void test_vapid_key_made_once_0600(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_webpush.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct err e = { 0, "" };
    assert_int_equal(webpush_key_ensure(dir, &e), 0);
    const char *p = tu_path(dir, WEBPUSH_KEY_FILE);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unsigned char *a = NULL, *b = NULL;
    size_t la, lb;
    assert_int_equal(read_file(p, 4096, &a, &la, &e), 0);
    assert_non_null(strstr((char *)a, "PRIVATE KEY"));
    assert_int_equal(webpush_key_ensure(dir, &e), 0);
    assert_int_equal(read_file(p, 4096, &b, &lb, &e), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    tu_rm_rf(dir);
}

static void test_push_hosts(void **state)
{
    (void)state;
    /* The public services, by name, any case; "*.d" is under d only. */
    assert_int_equal(webpush_host_allowed("", "fcm.googleapis.com"), 1);
    assert_int_equal(webpush_host_allowed("", "FCM.googleapis.COM"), 1);
    assert_int_equal(webpush_host_allowed("",
                     "updates.push.services.mozilla.com"), 1);
    assert_int_equal(webpush_host_allowed("", "web.push.apple.com"), 1);
    assert_int_equal(webpush_host_allowed("",
                     "wns2-by3p.notify.windows.com"), 1);
    assert_int_equal(webpush_host_allowed("", "notify.windows.com"), 0);
    assert_int_equal(webpush_host_allowed("", "evilnotify.windows.com"), 0);
    assert_int_equal(webpush_host_allowed("", "fcm.googleapis.com.evil.io"),
                     0);
    assert_int_equal(webpush_host_allowed("", "xfcm.googleapis.com"), 0);
    assert_int_equal(webpush_host_allowed("", "127.0.0.1"), 0);
    assert_int_equal(webpush_host_allowed("", "169.254.169.254"), 0);
    assert_int_equal(webpush_host_allowed("", "localhost"), 0);
    /* --push-allow entries add to them. */
    const char *extra = "127.0.0.1,*.push.hospital.example,::1";
    assert_int_equal(webpush_host_allowed(extra, "127.0.0.1"), 2);
    assert_int_equal(webpush_host_allowed(extra, "127.0.0.2"), 0);
    assert_int_equal(webpush_host_allowed(extra, "a.push.hospital.example"),
                     2);
    assert_int_equal(webpush_host_allowed(extra, "push.hospital.example"), 0);
    assert_int_equal(webpush_host_allowed(extra, "::1"), 2);
    assert_int_equal(webpush_host_allowed(extra, "fcm.googleapis.com"), 1);
}

static int addr_ok(const char *extra, const char *host, const char *ip)
{
    struct sockaddr_in a4 = { .sin_family = AF_INET };
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
    if (inet_pton(AF_INET, ip, &a4.sin_addr) == 1)
        return webpush_addr_allowed(extra, host, (struct sockaddr *)&a4);
    assert_int_equal(inet_pton(AF_INET6, ip, &a6.sin6_addr), 1);
    return webpush_addr_allowed(extra, host, (struct sockaddr *)&a6);
}

static void test_push_addresses(void **state)
{
    (void)state;
    static const char *const inside[] = {
        "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1",
        "172.31.255.254", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
        "2001:db8::1",
    };
    static const char *const outside[] = {
        "142.250.74.10", "8.8.8.8", "172.32.0.1", "192.169.0.1",
        "100.128.0.1", "2a00:1450:4001::200e", "::ffff:142.250.74.10",
    };
    /* A public service's name pointing inside is not followed ... */
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
        if (addr_ok("", "fcm.googleapis.com", inside[i]))
            fail_msg("%s was allowed", inside[i]);
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++)
        if (!addr_ok("", "fcm.googleapis.com", outside[i]))
            fail_msg("%s was refused", outside[i]);
    /* ... unless the administrator allowed that host by name. */
    assert_int_equal(addr_ok("127.0.0.1", "127.0.0.1", "127.0.0.1"), 1);
    assert_int_equal(addr_ok("*.lan", "push.lan", "10.0.0.5"), 1);
    assert_int_equal(addr_ok("127.0.0.1", "fcm.googleapis.com", "127.0.0.1"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8291_vector),
        cmocka_unit_test(test_fresh_keys_each_time),
        cmocka_unit_test(test_bad_point_refused),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_vapid_key_made_once_0600),
        cmocka_unit_test(test_push_hosts),
        cmocka_unit_test(test_push_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
