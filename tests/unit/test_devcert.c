/*
 * test_devcert — the self-signed development certificate
 * (server/devcert.c): load what it wrote with OpenSSL and check the
 * names, the validity, the key, the signature and the file modes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../../server/devcert.h"
#include "testutil.h"

static char tmp[256], cert_path[300], key_path[300];

static int setup(void **state)
{
    (void)state;
    strcpy(tmp, "/tmp/hashi-test-devcert-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmp);
    snprintf(key_path, sizeof key_path, "%s/key.pem", tmp);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(tmp);
}

static X509 *load_cert(void)
{
    FILE *f = fopen(cert_path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(void)
{
    FILE *f = fopen(key_path, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

/* The SAN entries as "DNS:name" / "IP:a.b.c.d" / "IP:::1", joined by
 * spaces. */
static void san_text(X509 *x, char *out, size_t n)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                            NULL);
    assert_non_null(names);
    out[0] = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[128] = "";
        if (g->type == GEN_DNS) {
            snprintf(one, sizeof one, "DNS:%s",
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            const unsigned char *ip = ASN1_STRING_get0_data(g->d.iPAddress);
            int len = ASN1_STRING_length(g->d.iPAddress);
            if (len == 4)
                snprintf(one, sizeof one, "IP:%d.%d.%d.%d", ip[0], ip[1],
                         ip[2], ip[3]);
            else if (len == 16) {
                static const unsigned char v6lo[16] = { [15] = 1 };
                snprintf(one, sizeof one, "IP:%s",
                         memcmp(ip, v6lo, 16) ? "v6-other" : "::1");
            }
        }
        strncat(out, one, n - strlen(out) - 2);
        strcat(out, " ");
    }
    GENERAL_NAMES_free(names);
}

static void creates_a_usable_localhost_cert(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    time_t before = time(NULL);
    assert_int_equal(devcert_create(cert_path, key_path, &e), 0);

    struct stat st;
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(cert_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    X509 *x = load_cert();
    EVP_PKEY *k = load_key();

    char san[512];
    san_text(x, san, sizeof san);
    assert_non_null(strstr(san, "DNS:localhost "));
    assert_non_null(strstr(san, "IP:127.0.0.1 "));
    assert_non_null(strstr(san, "IP:::1 "));
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    assert_int_equal(X509_check_host(x, "example.org", 0, 0, NULL), 0);

    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                              sizeof cn);
    assert_string_equal(cn, "localhost");

    /* The key is the certificate's, the certificate is self-signed. */
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(X509_verify(x, k), 1);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
    assert_int_equal(X509_check_ca(x), 0);

    /* Valid now, for a year. */
    int days, secs;
    assert_true(X509_cmp_time(X509_get0_notBefore(x), &before) <= 0);
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
                                    X509_get0_notAfter(x)), 1);
    assert_int_equal(days, DEVCERT_DAYS);

    X509_free(x);
    EVP_PKEY_free(k);
}

static void each_cert_is_new(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    assert_int_equal(devcert_create(cert_path, key_path, &e), 0);
    X509 *a = load_cert();
    EVP_PKEY *ka = load_key();
    assert_int_equal(devcert_create(cert_path, key_path, &e), 0);
    X509 *b = load_cert();
    EVP_PKEY *kb = load_key();
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a),
                                          X509_get0_serialNumber(b)), 0);
    assert_int_not_equal(EVP_PKEY_eq(ka, kb), 1);
    assert_int_equal(X509_check_private_key(b, kb), 1);
    X509_free(a);
    X509_free(b);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

static void unwritable_dir_fails_cleanly(void **state)
{
    (void)state;
    struct err e = { 0, "" };
    int rc = devcert_create("/nonexistent-dir/cert.pem",
                            "/nonexistent-dir/key.pem", &e);
    assert_int_equal(rc, ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/key.pem"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(creates_a_usable_localhost_cert),
        T(each_cert_is_new),
        T(unwritable_dir_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
