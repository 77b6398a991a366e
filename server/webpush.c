/*
 * webpush — Web Push from hashi-server (see webpush.h for the contract).
 *
 * Four parts, in this order: base64url; the crypto (RFC 8291 encryption
 * and the RFC 8292 VAPID JWT, OpenSSL 3's EVP only); delivery (one HTTPS
 * POST on a blocking socket with timeouts, on the push pool's thread);
 * the server side (subscriptions, the events_committed hook, the routes).
 *
 * Why a pool of its own: a push service that stalls holds its thread for
 * up to PUSH_TIMEOUT_S; on the shared worker pool that would delay STOW-RS
 * parts and logins.  Jobs in flight are capped (PUSH_MAX_INFLIGHT): past
 * it a push is dropped with a warning — the event itself stays in the
 * outbox and reaches the device when the page next connects.
 */
#include "webpush.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../proto/log.h"
#include "http.h"
#include "jobs.h"
#include "outbox.h"
#include "server.h"

#define PUSH_TIMEOUT_S 5            /* connect, send, receive */
#define PUSH_MAX_INFLIGHT 512
#define PUSH_JWT_LIFE_S (12 * 3600) /* RFC 8292: exp at most 24 h ahead */
#define PUSH_RS 4096                /* record size in the header */
#define PUSH_ENDPOINT_MAX 1024
#define PUSH_FETCH 100              /* events looked at per user a commit */

/* ---- base64url -------------------------------------------------------- */

static const char b64u[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t webpush_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64u[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64u[v & 63];
    }
    out[o] = '\0';
    return o;
}

long webpush_b64url_decode(const char *in, unsigned char *out, size_t cap)
{
    size_t o = 0, bits = 0;
    unsigned acc = 0;
    for (const char *p = in; *p; p++) {
        const char *q = strchr(b64u, *p);
        if (!q)
            return -1;
        acc = (acc << 6) | (unsigned)(q - b64u);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* 6 leftover bits cannot be the end of a valid encoding; nor can
     * leftover bits that are not zero. */
    if (bits >= 6 || acc)
        return -1;
    return (long)o;
}

/* ---- crypto ------------------------------------------------------------ */

static int ssl_fail(struct err *e, const char *what)
{
    char buf[160];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    ERR_clear_error();
    return err_set(e, ERR_INTERNAL, "webpush: %s: %s", what, buf);
}

/* A P-256 key from its 65-byte point, and its private scalar if given. */
static EVP_PKEY *p256_key(const unsigned char *pub, const unsigned char *priv)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    BIGNUM *d = priv ? BN_bin2bn(priv, 32, NULL) : NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *c = NULL;
    EVP_PKEY *k = NULL;

    if (!b || (priv && !d)
        || !OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME,
                                            "prime256v1", 0)
        || !OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY,
                                             pub, 65)
        || (d && !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, d))
        || !(params = OSSL_PARAM_BLD_to_param(b))
        || !(c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL))
        || EVP_PKEY_fromdata_init(c) <= 0
        || EVP_PKEY_fromdata(c, &k, d ? EVP_PKEY_KEYPAIR
                                      : EVP_PKEY_PUBLIC_KEY, params) <= 0)
        k = NULL;
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    BN_clear_free(d);
    OSSL_PARAM_BLD_free(b);
    return k;
}

/* 1 if pub is a point of P-256 (what a device's p256dh must be). */
static int p256_point_valid(const unsigned char pub[65])
{
    EVP_PKEY *k = pub[0] == 4 ? p256_key(pub, NULL) : NULL;
    EVP_PKEY_CTX *c = k ? EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL) : NULL;
    int ok = c && EVP_PKEY_public_check(c) == 1;
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

static int p256_public(EVP_PKEY *k, unsigned char out[65])
{
    size_t len = 0;
    return EVP_PKEY_get_octet_string_param(
               k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, 65, &len) == 1
           && len == 65 && out[0] == 4 ? 0 : -1;
}

/* HMAC-SHA-256: one HKDF step (extract with key = salt, or expand of a
 * single block, whose info then ends with 0x01). */
static void hmac256(const unsigned char *key, size_t klen,
                    const unsigned char *msg, size_t mlen,
                    unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len);
}

/* Expand of one block: HMAC(prk, info || 0x01). */
static void hkdf_expand1(const unsigned char prk[32], const char *info,
                         size_t ilen, unsigned char out[32])
{
    unsigned char buf[160];
    memcpy(buf, info, ilen);
    buf[ilen] = 1;
    hmac256(prk, 32, buf, ilen + 1, out);
}

int webpush_encrypt(const unsigned char ua_public[65],
                    const unsigned char auth[16],
                    const unsigned char *as_private,
                    const unsigned char *as_public,
                    const unsigned char *salt_in,
                    const unsigned char *plain, size_t n,
                    unsigned char **out, size_t *outlen, struct err *e)
{
    EVP_PKEY *as = NULL, *ua = NULL;
    EVP_PKEY_CTX *dc = NULL;
    EVP_CIPHER_CTX *cc = NULL;
    unsigned char as_pub[65], salt[16], ecdh[32], prk[32], ikm[32];
    unsigned char cek[32], nonce[32], info[14 + 65 + 65];
    unsigned char *body = NULL;
    size_t elen = sizeof ecdh;
    int rc = 0, len = 0;

    if (n + 1 + 16 > PUSH_RS)
        return err_set(e, ERR_TOOBIG, "webpush: payload of %zu bytes", n);
    if (as_private && as_public && salt_in) {
        as = p256_key(as_public, as_private);
        memcpy(as_pub, as_public, 65);
        memcpy(salt, salt_in, 16);
    } else {
        as = EVP_EC_gen("P-256");
        if (as && (p256_public(as, as_pub) || RAND_bytes(salt, 16) != 1)) {
            EVP_PKEY_free(as);
            as = NULL;
        }
    }
    if (!as)
        return ssl_fail(e, "ephemeral key");
    ua = p256_key(ua_public, NULL);
    if (!ua) {
        rc = err_set(e, ERR_INVALID, "webpush: p256dh is not a P-256 point");
        goto out;
    }
    if (!(dc = EVP_PKEY_CTX_new_from_pkey(NULL, as, NULL))
        || EVP_PKEY_derive_init(dc) <= 0
        || EVP_PKEY_derive_set_peer(dc, ua) <= 0
        || EVP_PKEY_derive(dc, ecdh, &elen) <= 0 || elen != 32) {
        rc = ssl_fail(e, "ECDH");
        goto out;
    }
    /* RFC 8291 section 3.4: IKM from the auth secret and the ECDH secret
     * bound to both public keys; then RFC 8188's CEK and nonce. */
    memcpy(info, "WebPush: info", 14);           /* with its NUL */
    memcpy(info + 14, ua_public, 65);
    memcpy(info + 79, as_pub, 65);
    hmac256(auth, 16, ecdh, 32, prk);
    hkdf_expand1(prk, (const char *)info, sizeof info, ikm);
    hmac256(salt, 16, ikm, 32, prk);
    hkdf_expand1(prk, "Content-Encoding: aes128gcm", 28, cek);
    hkdf_expand1(prk, "Content-Encoding: nonce", 24, nonce);

    size_t hdr = 16 + 4 + 1 + 65;
    body = malloc(hdr + n + 1 + 16);
    if (!body) {
        rc = err_set(e, ERR_INTERNAL, "webpush: out of memory");
        goto out;
    }
    memcpy(body, salt, 16);
    body[16] = (PUSH_RS >> 24) & 0xff;
    body[17] = (PUSH_RS >> 16) & 0xff;
    body[18] = (PUSH_RS >> 8) & 0xff;
    body[19] = PUSH_RS & 0xff;
    body[20] = 65;
    memcpy(body + 21, as_pub, 65);
    unsigned char *ct = body + hdr;
    static const unsigned char last = 2;   /* the last record's delimiter */
    int l2 = 0;
    if (!(cc = EVP_CIPHER_CTX_new())
        || !EVP_EncryptInit_ex(cc, EVP_aes_128_gcm(), NULL, cek, nonce)
        || !EVP_EncryptUpdate(cc, ct, &len, plain, (int)n)
        || !EVP_EncryptUpdate(cc, ct + len, &l2, &last, 1)
        || !EVP_EncryptFinal_ex(cc, ct + len + l2, &l2)
        || !EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_GCM_GET_TAG, 16, ct + n + 1)) {
        rc = ssl_fail(e, "AES-GCM");
        goto out;
    }
    *out = body;
    *outlen = hdr + n + 1 + 16;
    body = NULL;
out:
    OPENSSL_cleanse(ecdh, sizeof ecdh);
    OPENSSL_cleanse(cek, sizeof cek);
    free(body);
    EVP_CIPHER_CTX_free(cc);
    EVP_PKEY_CTX_free(dc);
    EVP_PKEY_free(ua);
    EVP_PKEY_free(as);
    return rc;
}

/* "vapid t=<JWT>, k=<public key>" for aud, into out. */
static int vapid_header(EVP_PKEY *key, const char *pub_b64, const char *aud,
                        const char *contact, char *out, size_t cap,
                        struct err *e)
{
    json_t *claims = json_pack("{s:s, s:I}", "aud", aud, "exp",
                               (json_int_t)(now_ms() / 1000
                                            + PUSH_JWT_LIFE_S));
    if (claims && contact && *contact)
        json_object_set_new(claims, "sub", json_string(contact));
    char *cj = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(claims);
    if (!cj)
        return err_set(e, ERR_INTERNAL, "webpush: JWT claims");
    static const char head[] = "{\"typ\":\"JWT\",\"alg\":\"ES256\"}";
    size_t clen = strlen(cj);
    char *input = malloc(48 + clen * 4 / 3 + 8);
    if (!input) {
        free(cj);
        return err_set(e, ERR_INTERNAL, "webpush: out of memory");
    }
    size_t k = webpush_b64url_encode((const unsigned char *)head,
                                     sizeof head - 1, input);
    input[k++] = '.';
    k += webpush_b64url_encode((const unsigned char *)cj, clen, input + k);
    free(cj);

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80], raw[64];
    size_t dlen = sizeof der;
    ECDSA_SIG *sig = NULL;
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    int rc = 0;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1
        || EVP_DigestSign(md, der, &dlen, (unsigned char *)input, k) != 1
        || !(sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen))) {
        rc = ssl_fail(e, "ES256");
    } else {
        /* JWS wants r || s, 32 bytes each, not the DER sequence. */
        ECDSA_SIG_get0(sig, &r, &s);
        BN_bn2binpad(r, raw, 32);
        BN_bn2binpad(s, raw + 32, 32);
        char sb[96];
        webpush_b64url_encode(raw, 64, sb);
        if ((size_t)snprintf(out, cap, "vapid t=%s.%s, k=%s", input, sb,
                             pub_b64) >= cap)
            rc = err_set(e, ERR_TOOBIG, "webpush: VAPID header too long");
    }
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    free(input);
    return rc;
}

int webpush_key_ensure(const char *data_dir, struct err *e)
{
    char path[4096];
    if (path_join(path, sizeof path, data_dir, WEBPUSH_KEY_FILE))
        return err_set(e, ERR_TOOBIG, "data dir path too long");
    if (!access(path, F_OK))
        return 0;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long len;
    int rc = 0;
    if (!k || !bio || !PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL,
                                                NULL)
        || (len = BIO_get_mem_data(bio, &pem)) <= 0)
        rc = ssl_fail(e, "VAPID key");
    else
        rc = write_file_durable(path, pem, (size_t)len, 0600, e);
    BIO_free(bio);
    EVP_PKEY_free(k);
    if (!rc)
        log_info("webpush: made the VAPID key %s", path);
    return rc;
}

static EVP_PKEY *key_load(const char *data_dir, struct err *e)
{
    char path[4096];
    if (webpush_key_ensure(data_dir, e)
        || path_join(path, sizeof path, data_dir, WEBPUSH_KEY_FILE))
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(e, ERR_IO, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    unsigned char pub[65];
    if (!k || !EVP_PKEY_is_a(k, "EC") || p256_public(k, pub)) {
        EVP_PKEY_free(k);
        ssl_fail(e, "VAPID key is not a P-256 private key");
        return NULL;
    }
    return k;
}

/* ---- which endpoints ----------------------------------------------------- */

int webpush_allow_pattern(const char *v, char *out, size_t cap)
{
    unsigned char ip[16];
    size_t n = strlen(v);
    if (n > 2 && v[0] == '[' && v[n - 1] == ']') {
        v++;
        n -= 2;
    }
    if (!n || n >= cap || n > 253)
        return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    if (inet_pton(AF_INET6, out, ip) == 1 || inet_pton(AF_INET, out, ip) == 1)
        return 0;
    const char *name = !strncmp(out, "*.", 2) ? out + 2 : out;
    if (!*name || *name == '.' || *name == '-' || name[strlen(name) - 1] == '.'
        || strstr(name, ".."))
        return -1;
    for (char *p = out; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
        if (p >= name && !isalnum((unsigned char)*p) && *p != '-'
            && *p != '.')
            return -1;
    }
    return 0;
}

/* 1 if host matches one entry of the comma-separated list. */
static int host_in(const char *list, const char *host)
{
    size_t hl = strlen(host);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 2 && !strncmp(p, "*.", 2)) {
            /* "*.d": at least one label before ".d" */
            if (hl > n - 1 && !strncasecmp(host + hl - (n - 1), p + 1, n - 1))
                return 1;
        } else if (n == hl && !strncasecmp(host, p, n)) {
            return 1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

int webpush_host_allowed(const char *extra, const char *host)
{
    if (extra && host_in(extra, host))
        return 2;
    return host_in(WEBPUSH_PUBLIC_HOSTS, host);
}

/* 1 if a (network order) IPv4 address is public unicast: not this
 * network, private (RFC 1918), shared (RFC 6598), loopback, link-local,
 * IETF protocol assignments, documentation, benchmarking, multicast or
 * reserved. */
static int v4_public(const unsigned char a[4])
{
    static const struct { unsigned char net[4]; int bits; } no[] = {
        { { 0, 0, 0, 0 }, 8 },       { { 10, 0, 0, 0 }, 8 },
        { { 100, 64, 0, 0 }, 10 },   { { 127, 0, 0, 0 }, 8 },
        { { 169, 254, 0, 0 }, 16 },  { { 172, 16, 0, 0 }, 12 },
        { { 192, 0, 0, 0 }, 24 },    { { 192, 0, 2, 0 }, 24 },
        { { 192, 168, 0, 0 }, 16 },  { { 198, 18, 0, 0 }, 15 },
        { { 198, 51, 100, 0 }, 24 }, { { 203, 0, 113, 0 }, 24 },
        { { 224, 0, 0, 0 }, 3 },     /* multicast, reserved, broadcast */
    };
    uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16
                 | (uint32_t)a[2] << 8 | a[3];
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        const unsigned char *m = no[i].net;
        uint32_t net = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16
                       | (uint32_t)m[2] << 8 | m[3];
        uint32_t mask = 0xffffffffu << (32 - no[i].bits);
        if ((v & mask) == net)
            return 0;
    }
    return 1;
}

/* IPv6: global unicast (2000::/3) but documentation, or an IPv4 address
 * mapped or NAT64-translated, judged as IPv4; everything else (loopback,
 * unspecified, unique local, link-local, multicast, v4-compatible) is
 * not public. */
static int v6_public(const unsigned char a[16])
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                              0xff, 0xff };
    static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b };
    if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12))
        return v4_public(a + 12);
    if ((a[0] & 0xe0) != 0x20)
        return 0;
    return !(a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8);
}

int webpush_addr_allowed(const char *extra, const char *host,
                         const struct sockaddr *addr)
{
    if (extra && host_in(extra, host))
        return 1;
    if (addr->sa_family == AF_INET)
        return v4_public((const unsigned char *)
                         &((const struct sockaddr_in *)addr)->sin_addr);
    if (addr->sa_family == AF_INET6)
        return v6_public(((const struct sockaddr_in6 *)addr)
                         ->sin6_addr.s6_addr);
    return 0;
}

/* ---- delivery (push pool thread) ---------------------------------------- */

struct endpoint_url {
    char host[256];
    char port[8];
    const char *path;           /* into the endpoint string */
    char origin[300];           /* VAPID aud: https://host[:port] */
};

/* https://host[:port]/path, host a name, IPv4 or [IPv6]. */
static int url_parse(const char *url, struct endpoint_url *u)
{
    static const char scheme[] = "https://";
    if (strncmp(url, scheme, 8))
        return -1;
    const char *h = url + 8, *end;
    size_t hl;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end)
            return -1;
        hl = (size_t)(end - h - 1);
        h++;
        end++;
    } else {
        end = h + strcspn(h, ":/?#");
        hl = (size_t)(end - h);
    }
    if (!hl || hl >= sizeof u->host)
        return -1;
    memcpy(u->host, h, hl);
    u->host[hl] = '\0';
    strcpy(u->port, "443");
    if (*end == ':') {
        size_t pl = strspn(end + 1, "0123456789");
        long port = pl && pl < 6 ? strtol(end + 1, NULL, 10) : 0;
        if (port < 1 || port > 65535)
            return -1;
        snprintf(u->port, sizeof u->port, "%ld", port);
        end += 1 + pl;
    }
    if (*end != '/')
        return -1;
    u->path = end;
    for (const char *p = url; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\\')
            return -1;
    snprintf(u->origin, sizeof u->origin, "%.*s", (int)(end - url), url);
    return 0;
}

struct push_job {
    struct job job;
    struct push_job *next;          /* the in-flight list */
    struct server *srv;
    int64_t sub_id;
    char endpoint[PUSH_ENDPOINT_MAX + 1];
    unsigned char p256dh[65], auth[16];
    char payload[320];
    char topic[33];
    int urgent;
    int status;                     /* HTTP status, or 0: not delivered */
    char err[256];
};

struct webpush {
    EVP_PKEY *key;
    char pub_b64[96];
    SSL_CTX *tls;
    struct jobs *pool;
    void (*next_committed)(struct server *srv);
    int inflight;
    char contact[256];
    char allow[sizeof ((struct server_config *)0)->push_allow];
};

/* A connected socket to u's host, trying its addresses in turn; those a
 * push may not reach (webpush_addr_allowed) are skipped. */
static int tcp_connect(const struct endpoint_url *u, const char *allow,
                       struct err *e)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *a;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc)
        return err_set(e, ERR_IO, "resolve %s: %s", u->host,
                       gai_strerror(rc)), -1;
    int fd = -1;
    struct timeval tv = { PUSH_TIMEOUT_S, 0 };
    err_set(e, ERR_IO, "resolve %s: no address", u->host);
    for (a = res; a && fd < 0; a = a->ai_next) {
        if (!webpush_addr_allowed(allow, u->host, a->ai_addr)) {
            char ip[INET6_ADDRSTRLEN] = "?";
            getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof ip, NULL, 0,
                        NI_NUMERICHOST);
            err_set(e, ERR_INVALID, "refused: %s is %s, not a public "
                    "address (--push-allow %s to allow it)", u->host, ip,
                    u->host);
            continue;
        }
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
                    a->ai_protocol);
        if (fd < 0)
            continue;
        /* On Linux SO_SNDTIMEO also bounds connect(). */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            err_set(e, ERR_IO, "connect %s:%s: %s", u->host, u->port,
                    strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* POST body to the endpoint; the HTTP status, or -1 (e says why). */
static int https_post(SSL_CTX *tls, const struct endpoint_url *u,
                      const char *allow, const char *headers,
                      const unsigned char *body, size_t blen, struct err *e)
{
    int fd = tcp_connect(u, allow, e), status = -1;
    if (fd < 0)
        return -1;
    SSL *ssl = SSL_new(tls);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, u->host, ip) == 1
                || inet_pton(AF_INET6, u->host, ip) == 1;
    if (!ssl || !SSL_set_fd(ssl, fd)
        || (is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                                   u->host)
                  : (!SSL_set_tlsext_host_name(ssl, u->host)
                     || !SSL_set1_host(ssl, u->host)))
        || SSL_connect(ssl) != 1) {
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        if (v != X509_V_OK)
            err_set(e, ERR_IO, "TLS to %s: %s", u->host,
                    X509_verify_cert_error_string(v));
        else
            ssl_fail(e, "TLS handshake");
        goto out;
    }
    size_t hl = strlen(headers);
    if (SSL_write(ssl, headers, (int)hl) != (int)hl
        || SSL_write(ssl, body, (int)blen) != (int)blen) {
        ssl_fail(e, "TLS write");
        goto out;
    }
    char resp[512];
    int got = 0, r;
    while (got < (int)sizeof resp - 1
           && (r = SSL_read(ssl, resp + got, (int)sizeof resp - 1 - got)) > 0) {
        got += r;
        resp[got] = '\0';
        if (strstr(resp, "\r\n"))
            break;
    }
    resp[got] = '\0';
    int code;
    if (sscanf(resp, "HTTP/1.%*d %3d", &code) == 1 && code >= 100)
        status = code;
    else
        err_set(e, ERR_IO, "no HTTP status from %s", u->host);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return status;
}

static void push_work(void *ctx, void *arg)
{
    struct push_job *j = arg;
    struct webpush *w = j->srv->push;
    struct err e = { 0, "" };
    struct endpoint_url u;
    unsigned char *body = NULL;
    size_t blen = 0;
    char auth[1024], req[3072];

    (void)ctx;
    if (j->srv->stopping) {
        strcpy(j->err, "server stopping");
        return;
    }
    if (url_parse(j->endpoint, &u)) {
        strcpy(j->err, "bad endpoint");
        return;
    }
    /* Subscribed under another --push-allow: kept, but not pushed to. */
    if (!webpush_host_allowed(w->allow, u.host)) {
        snprintf(j->err, sizeof j->err, "refused: %.200s is not an allowed "
                 "push service", u.host);
        return;
    }
    if (webpush_encrypt(j->p256dh, j->auth, NULL, NULL, NULL,
                        (const unsigned char *)j->payload,
                        strlen(j->payload), &body, &blen, &e)
        || vapid_header(w->key, w->pub_b64, u.origin, w->contact, auth,
                        sizeof auth, &e)) {
        strlcpy_h(j->err, e.msg, sizeof j->err);
        free(body);
        return;
    }
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "TTL: %d\r\n"
                     "Urgency: %s\r\n"
                     "Topic: %s\r\n"
                     "Content-Type: application/octet-stream\r\n"
                     "Content-Encoding: aes128gcm\r\n"
                     "Content-Length: %zu\r\n"
                     "Authorization: %s\r\n"
                     "Connection: close\r\n\r\n",
                     u.path, u.origin + 8, WEBPUSH_TTL,
                     j->urgent ? "high" : "normal", j->topic, blen, auth);
    if (n < 0 || (size_t)n >= sizeof req)
        strcpy(j->err, "request head too long");
    else
        j->status = https_post(w->tls, &u, w->allow, req, body, blen, &e);
    if (j->status < 0) {
        j->status = 0;
        strlcpy_h(j->err, e.msg, sizeof j->err);
    }
    free(body);
}

/* ---- the server side (lws thread) --------------------------------------- */

static sqlite3_stmt *stmt(struct server *srv, const char *sql)
{
    struct err e = { 0, "" };
    sqlite3_stmt *st = store_stmt(srv->store, sql, &e);
    if (!st)
        log_error("webpush: %s", e.msg);
    return st;
}

static void push_done(void *arg)
{
    struct push_job *j = arg;
    struct server *srv = j->srv;
    struct webpush *w = srv->push;

    w->inflight--;
    if (j->status == 404 || j->status == 410) {
        /* RFC 8030 section 7.3: the subscription is gone for good. */
        sqlite3_stmt *st = stmt(srv, "DELETE FROM push_subscriptions"
                                     " WHERE id = ?1");
        if (st) {
            sqlite3_bind_int64(st, 1, j->sub_id);
            sqlite3_step(st);
            sqlite3_reset(st);
        }
        log_info("webpush: subscription %lld removed (push service: %d)",
                 (long long)j->sub_id, j->status);
    } else if (j->status < 200 || j->status > 299) {
        log_warn("webpush: subscription %lld: %s%s%.*d",
                 (long long)j->sub_id, j->err, j->status ? "HTTP " : "",
                 j->status ? 3 : 0, j->status);
    } else {
        log_debug("webpush: subscription %lld: %d", (long long)j->sub_id,
                  j->status);
    }
    free(j);
}

void webpush_tick(struct server *srv)
{
    if (srv->push)
        jobs_reap(srv->push->pool);
}

/* Queue the push of one event to every device of user_id. */
static void push_event(struct server *srv, int64_t user_id, const char *kind,
                       const char *case_id, const char *priority)
{
    struct webpush *w = srv->push;
    sqlite3_stmt *st = stmt(srv, "SELECT id, endpoint, p256dh, auth"
                                 " FROM push_subscriptions"
                                 " WHERE user_id = ?1 ORDER BY id");
    if (!st)
        return;
    json_t *pl = json_pack("{s:s, s:s, s:s}", "kind", kind, "case_id",
                           case_id, "priority", priority);
    char *payload = pl ? json_dumps(pl, JSON_COMPACT) : NULL;
    json_decref(pl);
    unsigned char h[32];
    char topic[48];
    char tin[300];
    snprintf(tin, sizeof tin, "%s|%s", kind, case_id);
    EVP_Digest(tin, strlen(tin), h, NULL, EVP_sha256(), NULL);
    webpush_b64url_encode(h, 24, topic);      /* 32 characters */

    sqlite3_bind_int64(st, 1, user_id);
    while (payload && sqlite3_step(st) == SQLITE_ROW) {
        if (w->inflight >= PUSH_MAX_INFLIGHT) {
            log_warn("webpush: %d pushes in flight; %s of case %s not "
                     "pushed", w->inflight, kind, case_id);
            break;
        }
        struct push_job *j = calloc(1, sizeof *j);
        const char *ep = (const char *)sqlite3_column_text(st, 1);
        const char *pk = (const char *)sqlite3_column_text(st, 2);
        const char *au = (const char *)sqlite3_column_text(st, 3);
        if (!j || !ep || !pk || !au || strlen(ep) > PUSH_ENDPOINT_MAX
            || strlen(payload) >= sizeof j->payload
            || webpush_b64url_decode(pk, j->p256dh, 65) != 65
            || webpush_b64url_decode(au, j->auth, 16) != 16) {
            free(j);
            continue;
        }
        j->srv = srv;
        j->sub_id = sqlite3_column_int64(st, 0);
        strcpy(j->endpoint, ep);
        strcpy(j->payload, payload);
        strcpy(j->topic, topic);
        j->urgent = !strcmp(priority, "stat");
        w->inflight++;
        jobs_submit(w->pool, &j->job, push_work, push_done, j);
    }
    sqlite3_reset(st);
    free(payload);
}

/* 1 if the event should wake user_id's devices; *priority gets the case's
 * priority. */
static int worth_pushing(struct server *srv, int64_t user_id,
                         const char *kind, const char *case_id,
                         const char *body, char priority[16])
{
    if (!case_id || (strcmp(kind, "case.new") && strcmp(kind, "case.escalated")
                     && strcmp(kind, "message.new")))
        return 0;
    if (!strcmp(kind, "message.new")) {
        /* Your own message does not wake your phone. */
        json_t *b = json_loads(body, 0, NULL);
        const char *mid = json_string_value(
            json_object_get(json_object_get(b, "message"), "message_id"));
        sqlite3_stmt *st = mid ? stmt(srv, "SELECT author_id FROM messages"
                                           " WHERE message_id = ?1") : NULL;
        int own = 0;
        if (st) {
            sqlite3_bind_text(st, 1, mid, -1, SQLITE_TRANSIENT);
            own = sqlite3_step(st) == SQLITE_ROW
                  && sqlite3_column_int64(st, 0) == user_id;
            sqlite3_reset(st);
        }
        json_decref(b);
        if (own)
            return 0;
    }
    sqlite3_stmt *st = stmt(srv, "SELECT priority FROM cases"
                                 " WHERE case_id = ?1");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_TRANSIENT);
    int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0);
    if (ok)
        strlcpy_h(priority, (const char *)sqlite3_column_text(st, 0), 16);
    sqlite3_reset(st);
    return ok;
}

/* The new events of one user (after the push cursor), if the user has a
 * device and is not disabled; the cursor then moves past them. */
static void push_user(struct server *srv, int64_t user_id)
{
    sqlite3_stmt *st = stmt(srv,
        "SELECT c.seq FROM push_cursor c JOIN users u ON u.id = c.user_id"
        " WHERE c.user_id = ?1 AND u.disabled = 0 AND EXISTS"
        " (SELECT 1 FROM push_subscriptions s WHERE s.user_id = ?1)");
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, user_id);
    int has = sqlite3_step(st) == SQLITE_ROW;
    int64_t after = has ? sqlite3_column_int64(st, 0) : 0, last = after;
    sqlite3_reset(st);
    if (!has ||
        !(st = stmt(srv, "SELECT o.seq, e.kind, e.case_id, e.body FROM "
                         OUTBOX_ROWS_OF("?1", "?2", "100") " o"
                         " JOIN outbox_events e ON e.id = o.event"
                         " ORDER BY o.seq LIMIT 100")))
        return;
    /* Collected first: push_event and worth_pushing use other statements
     * of the same connection. */
    struct { int64_t seq; char kind[32], case_id[128]; char *body; }
        ev[PUSH_FETCH];
    int n = 0;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, after);
    while (n < PUSH_FETCH && sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 1);
        const char *c = (const char *)sqlite3_column_text(st, 2);
        const char *b = (const char *)sqlite3_column_text(st, 3);
        ev[n].seq = sqlite3_column_int64(st, 0);
        strlcpy_h(ev[n].kind, k ? k : "", sizeof ev[n].kind);
        strlcpy_h(ev[n].case_id, c ? c : "", sizeof ev[n].case_id);
        ev[n].body = b ? strdup(b) : NULL;
        n++;
    }
    sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        char prio[16];
        if (ev[i].body && worth_pushing(srv, user_id, ev[i].kind,
                                        ev[i].case_id, ev[i].body, prio))
            push_event(srv, user_id, ev[i].kind, ev[i].case_id, prio);
        last = ev[i].seq;
        free(ev[i].body);
    }
    if (last == after || !(st = stmt(srv, "UPDATE push_cursor SET seq = ?2"
                                          " WHERE user_id = ?1")))
        return;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, last);
    if (sqlite3_step(st) != SQLITE_DONE)
        log_error("webpush: cursor: %s", sqlite3_errmsg(store_db(srv->store)));
    sqlite3_reset(st);
}

/* srv->events_committed, wrapping the hook that was there (ws.c's live
 * push, which takes the new events): that one first, so the sessions'
 * fan-out waits for no push service, then the users' devices. */
static void committed(struct server *srv)
{
    struct webpush *w = srv->push;
    size_t n = 0;
    const int64_t *dirty = srv->outbox ? outbox_dirty(srv->outbox, &n)
                                       : NULL;
    int64_t *ids = n ? malloc(n * sizeof *ids) : NULL;
    if (ids)
        memcpy(ids, dirty, n * sizeof *ids);
    else
        n = 0;              /* out of memory: pushed at the next event */
    if (w->next_committed)
        w->next_committed(srv);
    else if (srv->outbox)
        outbox_clear_events(srv->outbox);
    for (size_t i = 0; i < n; i++)
        push_user(srv, ids[i]);
    free(ids);
}

int webpush_init(struct server *srv, struct err *e)
{
    struct webpush *w = calloc(1, sizeof *w);
    if (!w)
        return err_set(e, ERR_INTERNAL, "webpush: out of memory");
    unsigned char pub[65];
    if (!(w->key = key_load(srv->cfg.data_dir, e)))
        goto fail;
    p256_public(w->key, pub);
    webpush_b64url_encode(pub, 65, w->pub_b64);
    strlcpy_h(w->contact, srv->cfg.push_contact, sizeof w->contact);
    strlcpy_h(w->allow, srv->cfg.push_allow, sizeof w->allow);
    w->tls = SSL_CTX_new(TLS_client_method());
    if (!w->tls || !SSL_CTX_set_min_proto_version(w->tls, TLS1_2_VERSION)) {
        ssl_fail(e, "TLS context");
        goto fail;
    }
    SSL_CTX_set_verify(w->tls, SSL_VERIFY_PEER, NULL);
    if (srv->cfg.push_ca[0]
            ? SSL_CTX_load_verify_locations(w->tls, srv->cfg.push_ca, NULL)
                != 1
            : SSL_CTX_set_default_verify_paths(w->tls) != 1) {
        ssl_fail(e, srv->cfg.push_ca[0] ? srv->cfg.push_ca : "system CAs");
        goto fail;
    }
    struct jobs_cfg jc = { .threads = 1, .name = "push" };
    if (!(w->pool = jobs_start(&jc, e)))
        goto fail;
    w->next_committed = srv->events_committed;
    srv->push = w;
    srv->events_committed = committed;
    return 0;
fail:
    SSL_CTX_free(w->tls);
    EVP_PKEY_free(w->key);
    free(w);
    return e->code ? e->code : ERR_INTERNAL;
}

void webpush_free(struct server *srv)
{
    struct webpush *w = srv->push;
    if (!w)
        return;
    jobs_stop(w->pool);         /* runs the done()s still owed */
    if (srv->events_committed == committed)
        srv->events_committed = w->next_committed;
    SSL_CTX_free(w->tls);
    EVP_PKEY_free(w->key);
    srv->push = NULL;
    free(w);
}

/* ---- routes ------------------------------------------------------------- */

/* The reason a subscription body is refused, or NULL if it is fine. */
static const char *subscription_invalid(json_t *body, const char **ep,
                                        const char **pk, const char **au,
                                        struct endpoint_url *u)
{
    unsigned char pub[65], auth[16];

    if (json_unpack(body, "{s:s, s:{s:s, s:s}}", "endpoint", ep, "keys",
                    "p256dh", pk, "auth", au))
        return "expected {\"endpoint\", \"keys\": {\"p256dh\", \"auth\"}}";
    if (strlen(*ep) > PUSH_ENDPOINT_MAX || url_parse(*ep, u))
        return "endpoint must be an https:// URL (at most 1024 characters)";
    if (webpush_b64url_decode(*pk, pub, sizeof pub) != 65
        || !p256_point_valid(pub))
        return "keys.p256dh must be a P-256 point (65 bytes, base64url)";
    if (webpush_b64url_decode(*au, auth, sizeof auth) != 16)
        return "keys.auth must be 16 bytes, base64url";
    return NULL;
}

static void subscribe(struct http_req *r, json_t *body)
{
    struct server *srv = r->srv;
    const char *ep = NULL, *pk = NULL, *au = NULL;
    struct endpoint_url u;
    const char *why = subscription_invalid(body, &ep, &pk, &au, &u);
    if (why) {
        http_respond_error(r, 400, "invalid", "%s", why);
        return;
    }
    if (!webpush_host_allowed(srv->push->allow, u.host)) {
        http_respond_error(r, 400, "push_service_not_allowed",
                           "%.200s is not a push service this server "
                           "sends to (%s; others by --push-allow)", u.host,
                           WEBPUSH_PUBLIC_HOSTS);
        return;
    }
    sqlite3_stmt *st = stmt(srv,
        "INSERT INTO push_subscriptions"
        " (user_id, endpoint, p256dh, auth, created)"
        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (endpoint) DO UPDATE"
        " SET user_id = ?1, p256dh = ?3, auth = ?4, created = ?5"
        " RETURNING id");
    int64_t id = 0;
    if (st) {
        sqlite3_bind_int64(st, 1, r->who.user_id);
        sqlite3_bind_text(st, 2, ep, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, pk, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, au, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, now_ms());
        if (sqlite3_step(st) == SQLITE_ROW)
            id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    /* Pushes start with the events after this moment. */
    sqlite3_stmt *cu = id ? stmt(srv,
        "INSERT INTO push_cursor (user_id, seq) VALUES (?1, ?2)"
        " ON CONFLICT (user_id) DO UPDATE SET seq = max(seq, ?2)") : NULL;
    int ok = cu != NULL;
    if (cu) {
        sqlite3_bind_int64(cu, 1, r->who.user_id);
        sqlite3_bind_int64(cu, 2, outbox_last_seq(srv->outbox,
                                                  r->who.user_id));
        ok = sqlite3_step(cu) == SQLITE_DONE;
        sqlite3_reset(cu);
    }
    if (!ok) {
        log_error("webpush: subscribe: %s", sqlite3_errmsg(store_db(
                      srv->store)));
        http_respond_error(r, 500, "internal", "database error");
        return;
    }
    http_respond_json(r, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

static void unsubscribe(struct http_req *r, json_t *body)
{
    const char *ep = NULL;
    if (json_unpack(body, "{s:s}", "endpoint", &ep)) {
        http_respond_error(r, 400, "invalid", "expected {\"endpoint\"}");
        return;
    }
    sqlite3_stmt *st = stmt(r->srv, "DELETE FROM push_subscriptions"
                                    " WHERE endpoint = ?1 AND user_id = ?2");
    int ok = 0, n = 0;
    if (st) {
        sqlite3_bind_text(st, 1, ep, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, r->who.user_id);
        ok = sqlite3_step(st) == SQLITE_DONE;
        n = sqlite3_changes(store_db(r->srv->store));
        sqlite3_reset(st);
    }
    if (!ok)
        http_respond_error(r, 500, "internal", "database error");
    else
        http_respond_json(r, 200, json_pack("{s:i}", "removed", n));
}

void webpush_api(struct http_req *r)
{
    struct webpush *w = r->srv->push;
    int key = !strcmp(r->path, "/api/push/vapid-public-key");
    int subs = !strcmp(r->path, "/api/push/subscriptions");

    if (!key && !subs)
        http_respond_error(r, 404, "not_found", "no such resource");
    else if (!w)
        http_respond_error(r, 503, "unavailable", "Web Push is off");
    else if (!r->who.user_id)
        http_respond_error(r, 403, "forbidden",
                           "push subscriptions are for users");
    else if (key && r->method == HTTP_GET)
        http_respond_json(r, 200, json_pack("{s:s}", "key", w->pub_b64));
    else if (subs && r->method == HTTP_POST)
        http_body_json(r, subscribe);
    else if (subs && r->method == HTTP_DELETE)
        http_body_json(r, unsubscribe);
    else
        http_respond_error(r, 405, "method_not_allowed", "use %s",
                           key ? "GET" : "POST or DELETE");
}
