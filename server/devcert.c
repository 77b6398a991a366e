/*
 * devcert — see devcert.h.  Uses the OpenSSL 3 API only (EVP_EC_gen,
 * X509_* builders, X509V3 extensions); nothing deprecated.  The key is
 * written first so a certificate never exists without its key.
 */
#include "devcert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int ssl_fail(struct err *e, const char *what)
{
    char buf[160];
    unsigned long code = ERR_get_error();
    if (code)
        ERR_error_string_n(code, buf, sizeof buf);
    else
        strcpy(buf, "unknown error");
    ERR_clear_error();
    return err_set(e, ERR_INTERNAL, "%s: %s", what, buf);
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* PEM-encode through a memory BIO, then write the bytes durably. */
static int write_pem(const char *path, BIO *mem, mode_t mode, struct err *e)
{
    char *data;
    long len = BIO_get_mem_data(mem, &data);
    if (len <= 0)
        return err_set(e, ERR_INTERNAL, "PEM encoding of %s failed", path);
    return write_file_durable(path, data, (size_t)len, mode, e);
}

static int random_serial(X509 *x)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    raw[0] &= 0x7f;               /* positive */
    raw[0] |= 0x01;               /* and non-zero */
    BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
    if (!bn)
        return -1;
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (!serial)
        return -1;
    int ok = X509_set_serialNumber(x, serial);
    ASN1_INTEGER_free(serial);
    return ok ? 0 : -1;
}

int devcert_create(const char *cert_path, const char *key_path,
                   struct err *e)
{
    int rc = 0;
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    BIO *kmem = NULL, *cmem = NULL;

    pkey = EVP_EC_gen("P-256");
    if (!pkey) {
        rc = ssl_fail(e, "generate EC P-256 key");
        goto out;
    }
    x = X509_new();
    if (!x || !X509_set_version(x, 2) || random_serial(x)
        || !X509_gmtime_adj(X509_getm_notBefore(x), 0)
        || !X509_time_adj_ex(X509_getm_notAfter(x), DEVCERT_DAYS, 0, NULL)
        || !X509_set_pubkey(x, pkey)) {
        rc = ssl_fail(e, "build certificate");
        goto out;
    }
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                    (const unsigned char *)
                                    "Hashi development", -1, -1, 0)
        || !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       (const unsigned char *)"localhost",
                                       -1, -1, 0)
        || !X509_set_issuer_name(x, name)) {
        rc = ssl_fail(e, "certificate name");
        goto out;
    }
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE")
        || add_ext(x, NID_key_usage, "critical,digitalSignature")
        || add_ext(x, NID_ext_key_usage, "serverAuth")
        || add_ext(x, NID_subject_alt_name,
                   "DNS:localhost,IP:127.0.0.1,IP:::1")
        || add_ext(x, NID_subject_key_identifier, "hash")) {
        rc = ssl_fail(e, "certificate extensions");
        goto out;
    }
    if (!X509_sign(x, pkey, EVP_sha256())) {
        rc = ssl_fail(e, "sign certificate");
        goto out;
    }

    kmem = BIO_new(BIO_s_secmem());     /* cleared when freed */
    cmem = BIO_new(BIO_s_mem());
    if (!kmem || !cmem
        || !PEM_write_bio_PrivateKey(kmem, pkey, NULL, NULL, 0, NULL, NULL)
        || !PEM_write_bio_X509(cmem, x)) {
        rc = ssl_fail(e, "PEM encoding");
        goto out;
    }
    rc = write_pem(key_path, kmem, 0600, e);
    if (!rc)
        rc = write_pem(cert_path, cmem, 0600, e);   /* owner only, too */
out:
    BIO_free(kmem);
    BIO_free(cmem);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}
