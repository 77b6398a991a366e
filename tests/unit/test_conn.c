/*
 * test_conn — client/conn.c against a scripted TLS peer in a thread: HTTP
 * bodies (Content-Length, chunked, cut short), keep-alive, streamed
 * uploads, JSON requests and error answers (the REST twin as the CLI
 * uses it) with the server closing kept-alive sockets, certificate and
 * host-name verification, the WebSocket handshake checks, frames
 * (masking, fragments, ping/pong, close codes) and a hashi.v1 session
 * (welcome, a reply after an event, the event kept for conn_v1_next).
 * Also client/config.c's state files.
 *
 * The peer is plain OpenSSL on a blocking socket; each test gives it a
 * script (one function per accepted connection).  Failures on the peer's
 * side are recorded and asserted by the test after joining the thread.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../../client/config.h"
#include "../../client/conn.h"
#include "../../server/devcert.h"
#include "testutil.h"

static char tmp[256], cert_path[300], key_path[300];
static char other_cert[300], other_key[300];

/* ---- the scripted peer ----------------------------------------------- */

struct peer;
typedef int (*script_fn)(struct peer *p, SSL *ssl, int n);

struct peer {
    int lfd, port;
    SSL_CTX *ctx;
    script_fn script;
    pthread_t th;
    int accepts;
    int bad;                        /* a check on the peer's side failed */
    char why[256];
    char got[4096];                 /* what a script wants to report */
};

static void peer_fail(struct peer *p, const char *why)
{
    if (!p->bad) {
        p->bad = 1;
        snprintf(p->why, sizeof p->why, "%s", why);
    }
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    for (int n = 0;; n++) {
        struct pollfd pf = { .fd = p->lfd, .events = POLLIN };
        if (poll(&pf, 1, 5000) <= 0)
            break;
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0)
            break;
        p->accepts++;
        SSL *ssl = SSL_new(p->ctx);
        SSL_set_fd(ssl, fd);
        int more = 0;
        if (SSL_accept(ssl) == 1)
            more = p->script(p, ssl, n);
        else
            more = p->script(p, NULL, n);
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
        if (!more)
            break;
    }
    return NULL;
}

static void peer_start(struct peer *p, const char *cert, const char *key,
                       script_fn script)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t sl = sizeof sa;
    memset(p, 0, sizeof *p);
    p->script = script;
    p->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(p->ctx);
    assert_int_equal(SSL_CTX_use_certificate_file(p->ctx, cert,
                                                  SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(p->ctx, key,
                                                 SSL_FILETYPE_PEM), 1);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p->lfd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p->lfd, 8), 0);
    getsockname(p->lfd, (struct sockaddr *)&sa, &sl);
    p->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&p->th, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
    pthread_join(p->th, NULL);
    close(p->lfd);
    SSL_CTX_free(p->ctx);
    if (p->bad)
        fail_msg("peer: %s", p->why);
}

static void url_of(const struct peer *p, const char *host, char *out,
                   size_t n)
{
    snprintf(out, n, "https://%s:%d", host, p->port);
}

/* Reads a request head (up to the blank line) into buf. */
static int read_head(SSL *ssl, char *buf, size_t n)
{
    size_t k = 0;
    while (k + 1 < n) {
        if (SSL_read(ssl, buf + k, 1) != 1)
            return -1;
        k++;
        buf[k] = 0;
        if (k >= 4 && !memcmp(buf + k - 4, "\r\n\r\n", 4))
            return 0;
    }
    return -1;
}

static int read_n(SSL *ssl, void *buf, size_t n)
{
    size_t k = 0;
    while (k < n) {
        int r = SSL_read(ssl, (char *)buf + k, (int)(n - k));
        if (r <= 0)
            return -1;
        k += (size_t)r;
    }
    return 0;
}

static void put(SSL *ssl, const char *s)
{
    SSL_write(ssl, s, (int)strlen(s));
}

/* A server frame (never masked). */
static void put_frame(SSL *ssl, int fin, int op, const void *data,
                      size_t len)
{
    unsigned char h[10];
    size_t hl = 2;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    }
    SSL_write(ssl, h, (int)hl);
    if (len)
        SSL_write(ssl, data, (int)len);
}

static void put_text(SSL *ssl, const char *s)
{
    put_frame(ssl, 1, 1, s, strlen(s));
}

/* A client frame: must be masked.  Payload unmasked into buf. */
static int get_frame(struct peer *p, SSL *ssl, int *op, unsigned char *buf,
                     size_t cap, size_t *len)
{
    unsigned char h[14], mask[4];
    uint64_t n;
    if (read_n(ssl, h, 2))
        return -1;
    *op = h[0] & 15;
    if (!(h[1] & 0x80))
        peer_fail(p, "client frame not masked");
    n = h[1] & 0x7f;
    if (n == 126) {
        if (read_n(ssl, h + 2, 2))
            return -1;
        n = (uint64_t)h[2] << 8 | h[3];
    } else if (n == 127) {
        if (read_n(ssl, h + 2, 8))
            return -1;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[2 + i];
    }
    if (n > cap || read_n(ssl, mask, 4) || read_n(ssl, buf, (size_t)n))
        return -1;
    for (size_t i = 0; i < n; i++)
        buf[i] ^= mask[i & 3];
    *len = (size_t)n;
    return 0;
}

/* Answers the upgrade; accept_ok/proto choose a broken answer. */
static int ws_accept(struct peer *p, SSL *ssl, int accept_ok,
                     const char *proto)
{
    char head[4096], key[64] = "", cat[128], acc[64];
    unsigned char sha[20];
    if (read_head(ssl, head, sizeof head)) {
        peer_fail(p, "no upgrade request");
        return -1;
    }
    const char *k = strstr(head, "Sec-WebSocket-Key: ");
    if (!k || !strstr(head, "Sec-WebSocket-Protocol: hashi.v1\r\n") ||
        !strstr(head, "Upgrade: websocket\r\n") ||
        !strstr(head, "Sec-WebSocket-Version: 13\r\n")) {
        peer_fail(p, "upgrade request lacks a header");
        return -1;
    }
    sscanf(k + 19, "%63[^\r]", key);
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
             accept_ok ? key : "wrong");
    EVP_Digest(cat, strlen(cat), sha, NULL, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)acc, sha, 20);
    snprintf(head, sizeof head, "HTTP/1.1 101 Switching Protocols\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n", acc,
             proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
             proto ? "\r\n" : "");
    put(ssl, head);
    return 0;
}

/* ---- set-up ----------------------------------------------------------- */

/* A self-signed certificate for another name (elsewhere.example). */
static void make_other_cert(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *nm;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    assert_non_null(k);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                               (const unsigned char *)"elsewhere.example",
                               -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                              "DNS:elsewhere.example");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *f = fopen(other_cert, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(other_key, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    struct err e = { 0, "" };
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    strcpy(tmp, "/tmp/hashi-test-conn-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmp);
    snprintf(key_path, sizeof key_path, "%s/key.pem", tmp);
    snprintf(other_cert, sizeof other_cert, "%s/other.pem", tmp);
    snprintf(other_key, sizeof other_key, "%s/other.key", tmp);
    assert_int_equal(devcert_create(cert_path, key_path, &e), 0);
    make_other_cert();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(tmp);
}

static struct conn *client(const struct peer *p, const char *host,
                           const char *cacert)
{
    char url[128];
    struct err e = { 0, "" };
    struct conn_opts o = { .cacert = cacert, .io_timeout_ms = 5000 };
    url_of(p, host, url, sizeof url);
    struct conn *c = conn_new(url, &o, &e);
    if (!c)
        fail_msg("conn_new: %s", e.msg);
    return c;
}

/* ---- URLs ------------------------------------------------------------- */

static void test_url(void **state)
{
    struct err e = { 0, "" };
    struct conn *c;
    (void)state;
    assert_null(conn_new("http://localhost:8443", NULL, &e));
    assert_int_equal(e.code, ERR_INVALID);
    assert_null(conn_new("https://", NULL, &e));
    assert_null(conn_new("https://host:12x", NULL, &e));
    assert_null(conn_new("https://host:", NULL, &e));
    c = conn_new("https://Example.org:8443/base//", NULL, &e);
    assert_non_null(c);
    assert_string_equal(conn_url(c), "https://Example.org:8443/base");
    conn_free(c);
    c = conn_new("https://[::1]/", NULL, &e);
    assert_non_null(c);
    assert_string_equal(conn_url(c), "https://[::1]:443");
    conn_free(c);
}

/* ---- HTTP ------------------------------------------------------------- */

/* A script's next request head into head; -1 (and the peer failed) if the
 * client sent none. */
static int expect_head(struct peer *p, SSL *ssl, char *head, size_t n)
{
    if (read_head(ssl, head, n)) {
        peer_fail(p, "request missing");
        return -1;
    }
    return 0;
}

/* Two requests on one connection: Content-Length, then chunked. */
static int script_keepalive(struct peer *p, SSL *ssl, int n)
{
    char head[4096];
    (void)n;
    if (!ssl)
        return 0;
    for (int i = 0; i < 2; i++) {
        if (expect_head(p, ssl, head, sizeof head))
            return 0;
        if (!strstr(head, "Authorization: Bearer tok123\r\n") ||
            !strstr(head, "Host: 127.0.0.1:"))
            peer_fail(p, "no bearer token or Host");
        if (i == 0)
            put(ssl, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                "Content-Length: 5\r\n\r\nhello");
        else
            put(ssl, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked"
                "\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-T: 1\r\n"
                "\r\n");
    }
    return 0;
}

static void test_http_keepalive_chunked(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    struct conn_response rs;
    struct conn_request rq = { .method = "GET", .path = "/a",
                               .token = "tok123", .content_length = -1 };
    (void)state;
    peer_start(&p, cert_path, key_path, script_keepalive);
    struct conn *c = client(&p, "127.0.0.1", cert_path);
    assert_int_equal(conn_http(c, &rq, NULL, 0, 1024, &rs, &e), 0);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.content_type, "text/plain");
    assert_int_equal(rs.len, 5);
    assert_string_equal((char *)rs.body, "hello");
    conn_response_free(&rs);
    rq.path = "/b";
    assert_int_equal(conn_http(c, &rq, NULL, 0, 1024, &rs, &e), 0);
    assert_int_equal(rs.status, 404);
    assert_string_equal((char *)rs.body, "abcdefg");
    conn_response_free(&rs);
    conn_free(c);
    peer_join(&p);
    assert_int_equal(p.accepts, 1);     /* one connection for both */
}

/* A streamed upload; the answer cut short. */
static int script_upload(struct peer *p, SSL *ssl, int n)
{
    char head[4096], body[64];
    if (!ssl || expect_head(p, ssl, head, sizeof head))
        return 0;
    if (n == 0) {
        if (!strstr(head, "POST /base/up HTTP/1.1\r\n") ||
            !strstr(head, "Content-Length: 11\r\n") ||
            !strstr(head, "Content-Type: application/x-t\r\n") ||
            read_n(ssl, body, 11) || memcmp(body, "hello world", 11))
            peer_fail(p, "upload not as sent");
        put(ssl, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\nok");
        return 1;
    }
    put(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    return 0;
}

static void test_http_upload_and_cut(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    struct conn_response rs;
    char url[128], buf[16];
    struct conn_request rq = { .method = "POST", .path = "/up",
                               .content_type = "application/x-t",
                               .content_length = 11 };
    (void)state;
    peer_start(&p, cert_path, key_path, script_upload);
    url_of(&p, "localhost", url, sizeof url);
    strcat(url, "/base");
    struct conn_opts o = { .cacert = cert_path, .io_timeout_ms = 5000 };
    struct conn *c = conn_new(url, &o, &e);
    assert_non_null(c);
    assert_int_equal(conn_http_begin(c, &rq, &e), 0);
    assert_int_equal(conn_http_write(c, "hello ", 6, &e), 0);
    /* more than announced is refused */
    assert_int_equal(conn_http_write(c, "world!", 6, &e), ERR_INVALID);
    assert_int_equal(conn_http_write(c, "world", 5, &e), 0);
    assert_int_equal(conn_http_head(c, &rs, &e), 0);
    assert_int_equal(rs.status, 201);
    assert_int_equal(conn_http_read(c, buf, sizeof buf, &e), 2);
    assert_int_equal(conn_http_read(c, buf, sizeof buf, &e), 0);
    assert_int_equal(conn_http_end(c, &e), 0);
    /* the next answer promises 10 bytes, sends 3 and closes */
    rq.method = "GET";
    rq.content_length = -1;
    rq.content_type = NULL;
    int rc = conn_http(c, &rq, NULL, 0, 1024, &rs, &e);
    assert_int_equal(rc, ERR_INVALID);
    assert_non_null(strstr(e.msg, "cut short"));
    conn_free(c);
    peer_join(&p);
    assert_int_equal(p.accepts, 2);
}

/* The REST twin as the CLI's one-shot commands use it: JSON requests on
 * one kept-alive connection; the server closing an idle kept-alive
 * socket (the next request connects again), and closing one after it
 * read a request but before any answer (sent once more, on a new
 * socket).  Three connections for four requests. */
static int script_json(struct peer *p, SSL *ssl, int n)
{
    char head[4096], body[64];
    if (!ssl || expect_head(p, ssl, head, sizeof head))
        return 0;
    if (n == 0) {
        if (!strstr(head, "POST /api/cases/abc/claim HTTP/1.1\r\n") ||
            !strstr(head, "Content-Type: application/json\r\n") ||
            !strstr(head, "Accept: application/json\r\n") ||
            !strstr(head, "Authorization: Bearer tok9\r\n") ||
            !strstr(head, "Content-Length: 7\r\n") ||
            read_n(ssl, body, 7) || memcmp(body, "{\"x\":1}", 7))
            peer_fail(p, "JSON POST not as sent");
        put(ssl, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Content-Length: 26\r\n\r\n{\"case\":{\"case_id\":\"abc\"}}");
        if (read_head(ssl, head, sizeof head) ||
            !strstr(head, "GET /api/cases?limit=5 HTTP/1.1\r\n") ||
            strstr(head, "Content-Length"))
            peer_fail(p, "second request not on the same connection");
        put(ssl, "HTTP/1.1 409 Conflict\r\nContent-Type: application/json"
            "\r\nContent-Length: 79\r\n\r\n{\"error\":{\"code\":"
            "\"already_claimed\",\"message\":\"already claimed by "
            "demo-neuro2\"}}");
        return 1;                   /* then close it while idle */
    }
    if (n == 1) {
        if (!strstr(head, "GET /api/cases/abc HTTP/1.1\r\n"))
            peer_fail(p, "third request not as sent");
        put(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nnot json");
        /* the fourth: read, then closed without a byte of answer */
        if (read_head(ssl, head, sizeof head) ||
            !strstr(head, "POST /api/cases/abc/close HTTP/1.1\r\n") ||
            read_n(ssl, body, 2))
            peer_fail(p, "fourth request not as sent");
        return 1;
    }
    if (!strstr(head, "POST /api/cases/abc/close HTTP/1.1\r\n") ||
        read_n(ssl, body, 2) || memcmp(body, "{}", 2))
        peer_fail(p, "fourth request not sent again");
    put(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    return 0;
}

static void test_http_json(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    json_t *body = json_pack("{s:i}", "x", 1), *out = NULL;
    int status = 0;
    (void)state;
    peer_start(&p, cert_path, key_path, script_json);
    struct conn *c = client(&p, "127.0.0.1", cert_path);

    assert_int_equal(conn_json(c, "POST", "/api/cases/abc/claim", "tok9",
                               body, &status, &out, &e), 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(
        json_object_get(out, "case"), "case_id")), "abc");
    json_decref(out);

    assert_int_equal(conn_json(c, "GET", "/api/cases?limit=5", "tok9", NULL,
                               &status, &out, &e), 0);
    assert_int_equal(status, 409);
    assert_int_equal(conn_http_error(status, out, &e), ERR_CONFLICT);
    assert_string_equal(e.msg, "already claimed by demo-neuro2");
    json_decref(out);

    usleep(200 * 1000);             /* the peer closes the idle socket */
    assert_int_equal(conn_json(c, "GET", "/api/cases/abc", "tok9", NULL,
                               &status, &out, &e), 0);
    assert_int_equal(status, 200);
    assert_null(out);               /* an answer that is not JSON */

    json_t *empty = json_object();
    assert_int_equal(conn_json(c, "POST", "/api/cases/abc/close", "tok9",
                               empty, &status, &out, &e), 0);
    assert_int_equal(status, 200);
    assert_true(json_is_object(out) && json_object_size(out) == 0);
    json_decref(out);
    json_decref(empty);
    json_decref(body);
    conn_free(c);
    peer_join(&p);
    assert_int_equal(p.accepts, 3);

    /* the status of an error answer decides its code */
    json_t *er = json_pack("{s:{s:s}}", "error", "code", "unauthorized");
    assert_int_equal(conn_http_error(401, er, &e), ERR_AUTH);
    assert_string_equal(e.msg, "unauthorized (HTTP 401)");
    assert_int_equal(conn_http_error(404, NULL, &e), ERR_NOTFOUND);
    assert_string_equal(e.msg, "HTTP 404");
    assert_int_equal(conn_http_error(400, er, &e), ERR_INVALID);
    assert_int_equal(conn_http_error(429, er, &e), ERR_RATELIMIT);
    assert_int_equal(conn_http_error(503, er, &e), ERR_IO);
    json_decref(er);
}

/* ---- TLS verification ------------------------------------------------- */

static int script_hello(struct peer *p, SSL *ssl, int n)
{
    char head[4096];
    (void)n;
    if (ssl && read_head(ssl, head, sizeof head) == 0)
        put(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    (void)p;
    return 0;
}

static int verify_with(const char *cert, const char *key, const char *host,
                       const char *cacert, struct err *e)
{
    struct peer p;
    struct conn_response rs;
    struct conn_request rq = { .method = "GET", .path = "/",
                               .content_length = -1 };
    peer_start(&p, cert, key, script_hello);
    struct conn *c = client(&p, host, cacert);
    int rc = conn_http(c, &rq, NULL, 0, 1024, &rs, e);
    if (!rc)
        conn_response_free(&rs);
    conn_free(c);
    peer_join(&p);
    return rc;
}

static void test_tls_verify(void **state)
{
    struct err e = { 0, "" };
    (void)state;
    /* the right CA, by IP and by name */
    assert_int_equal(verify_with(cert_path, key_path, "127.0.0.1",
                                 cert_path, &e), 0);
    assert_int_equal(verify_with(cert_path, key_path, "localhost",
                                 cert_path, &e), 0);
    /* no CA given: the system store does not know it */
    assert_int_equal(verify_with(cert_path, key_path, "127.0.0.1", NULL,
                                 &e), ERR_IO);
    assert_non_null(strstr(e.msg, "not trusted"));
    /* another CA */
    assert_int_equal(verify_with(cert_path, key_path, "127.0.0.1",
                                 other_cert, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "not trusted"));
    /* a trusted certificate, but for another name */
    assert_int_equal(verify_with(other_cert, other_key, "127.0.0.1",
                                 other_cert, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "mismatch"));
    assert_int_equal(verify_with(other_cert, other_key, "localhost",
                                 other_cert, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "mismatch"));
    /* a CA file that is not there */
    assert_int_equal(verify_with(cert_path, key_path, "127.0.0.1",
                                 "/nonexistent/ca.pem", &e), ERR_IO);
    assert_non_null(strstr(e.msg, "CA file"));
}

/* ---- WebSocket -------------------------------------------------------- */

static int script_ws(struct peer *p, SSL *ssl, int n)
{
    unsigned char buf[70000];
    size_t len;
    int op;
    (void)n;
    if (!ssl || ws_accept(p, ssl, 1, "hashi.v1"))
        return 0;
    put_frame(ssl, 1, 0x9, "pp", 2);                    /* ping */
    if (get_frame(p, ssl, &op, buf, sizeof buf, &len) || op != 0xA ||
        len != 2 || memcmp(buf, "pp", 2))
        peer_fail(p, "no pong with the ping's payload");
    put_frame(ssl, 0, 0x1, "hel", 3);                   /* fragments */
    put_frame(ssl, 1, 0x9, "", 0);                      /* ping between */
    put_frame(ssl, 1, 0x0, "lo", 2);
    if (get_frame(p, ssl, &op, buf, sizeof buf, &len) || op != 0xA)
        peer_fail(p, "no pong for the second ping");
    if (get_frame(p, ssl, &op, buf, sizeof buf, &len) || op != 0x1 ||
        len != 300) {
        peer_fail(p, "the client's text frame is wrong");
    } else {
        for (size_t i = 0; i < len; i++)
            if (buf[i] != (unsigned char)('a' + i % 26))
                peer_fail(p, "the client's text bytes differ");
    }
    if (get_frame(p, ssl, &op, buf, sizeof buf, &len) || op != 0x2 ||
        len != 70000 - 16 || memcmp(buf, "HDR!", 4))
        peer_fail(p, "the client's binary frame (header + data) is wrong");
    put_frame(ssl, 1, 0x2, "\x01\x02", 2);
    unsigned char cl[] = { 0x11, 0x31, 'b', 'y', 'e' };  /* 4401 */
    put_frame(ssl, 1, 0x8, cl, sizeof cl);
    if (get_frame(p, ssl, &op, buf, sizeof buf, &len) || op != 0x8 ||
        len < 2 || buf[0] != 0x11 || buf[1] != 0x31)
        peer_fail(p, "the close was not echoed");
    return 0;
}

static void test_ws_frames(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    unsigned char *msg, text[300];
    static unsigned char big[70000];
    size_t len;
    int op;
    (void)state;
    peer_start(&p, cert_path, key_path, script_ws);
    struct conn *c = client(&p, "127.0.0.1", cert_path);
    assert_int_equal(conn_ws_open(c, "/ws", "hashi.v1", &e), 0);
    assert_int_equal(conn_ws_recv(c, 5000, &op, &msg, &len, &e), 0);
    assert_int_equal(op, CONN_WS_TEXT);
    assert_int_equal(len, 5);
    assert_string_equal((char *)msg, "hello");
    free(msg);
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (unsigned char)('a' + i % 26);
    assert_int_equal(conn_ws_send(c, CONN_WS_TEXT, text, sizeof text, NULL,
                                  0, &e), 0);
    memset(big, 7, sizeof big);
    assert_int_equal(conn_ws_send(c, CONN_WS_BINARY, "HDR!", 4, big,
                                  sizeof big - 20, &e), 0);
    assert_int_equal(conn_ws_recv(c, 5000, &op, &msg, &len, &e), 0);
    assert_int_equal(op, CONN_WS_BINARY);
    assert_int_equal(len, 2);
    free(msg);
    assert_int_equal(conn_ws_recv(c, 5000, &op, &msg, &len, &e), ERR_IO);
    assert_null(msg);
    assert_int_equal(conn_ws_close_code(c), 4401);
    assert_non_null(strstr(e.msg, "bye"));
    conn_free(c);
    peer_join(&p);
}

/* A server that answers the client's first ping, then falls silent
 * (reads on, answers nothing: a dead server behind a live proxy). */
static int script_ws_silent(struct peer *p, SSL *ssl, int n)
{
    unsigned char buf[256];
    size_t len;
    int op, pings = 0;
    (void)n;
    if (!ssl || ws_accept(p, ssl, 1, "hashi.v1"))
        return 0;
    while (!get_frame(p, ssl, &op, buf, sizeof buf, &len) && op != 0x8)
        if (op == 0x9 && ++pings == 1)
            put_frame(ssl, 1, 0xA, buf, len);
    if (pings < 2)
        peer_fail(p, "fewer than two pings from the client");
    return 0;
}

/* conn_ws_keepalive: the client pings a quiet server, takes the pong as
 * a sign of life, pings again, and gives the link up (ERR_IO) once
 * nothing at all came for dead_ms. */
static void test_ws_keepalive(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    unsigned char *msg;
    size_t len;
    int op, rc = 0, waits = 0;
    (void)state;
    peer_start(&p, cert_path, key_path, script_ws_silent);
    struct conn *c = client(&p, "127.0.0.1", cert_path);
    assert_int_equal(conn_ws_open(c, "/ws", "hashi.v1", &e), 0);
    int64_t opened = conn_ws_last_rx_ms(c);
    while (!rc && waits++ < 200) {      /* a guard, not a timing */
        rc = conn_ws_recv(c, 50, &op, &msg, &len, &e);
        assert_int_equal(rc, CONN_TIMEOUT);
        rc = conn_ws_keepalive(c, 100, 400, &e);
    }
    assert_int_equal(rc, ERR_IO);
    assert_non_null(strstr(e.msg, "no sign of life"));
    assert_true(conn_ws_last_rx_ms(c) > opened);    /* the pong came */
    conn_ws_close(c, 1000, "bye");
    conn_free(c);
    peer_join(&p);
}

/* Broken handshakes: wrong accept key, no subprotocol, a 401. */
static int script_ws_bad(struct peer *p, SSL *ssl, int n)
{
    char head[4096];
    if (!ssl)
        return 0;
    if (n == 0)
        ws_accept(p, ssl, 0, "hashi.v1");
    else if (n == 1)
        ws_accept(p, ssl, 1, NULL);
    else if (read_head(ssl, head, sizeof head) == 0)
        put(ssl, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 51\r\n\r\n"
            "{\"error\":{\"code\":\"x\",\"message\":\"token expired  \"}}");
    return n < 2;
}

static void test_ws_handshake_checks(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    (void)state;
    peer_start(&p, cert_path, key_path, script_ws_bad);
    struct conn *c = client(&p, "127.0.0.1", cert_path);
    assert_int_equal(conn_ws_open(c, "/ws", "hashi.v1", &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "accept key"));
    assert_int_equal(conn_ws_open(c, "/ws", "hashi.v1", &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "subprotocol"));
    assert_int_equal(conn_ws_open(c, "/ws", "hashi.v1", &e), ERR_AUTH);
    assert_non_null(strstr(e.msg, "token expired"));
    conn_free(c);
    peer_join(&p);
}

/* ---- hashi.v1 ---------------------------------------------------------- */

static int script_v1(struct peer *p, SSL *ssl, int n)
{
    unsigned char buf[70000];
    char out[1024];
    size_t len;
    int op;
    (void)n;
    if (!ssl || ws_accept(p, ssl, 1, "hashi.v1"))
        return 0;
    if (get_frame(p, ssl, &op, buf, sizeof buf - 1, &len) || op != 1) {
        peer_fail(p, "no hello");
        return 0;
    }
    buf[len] = 0;
    memcpy(p->got, buf, len < sizeof p->got ? len + 1 : sizeof p->got);
    p->got[sizeof p->got - 1] = 0;
    const char *w = "{\"type\":\"welcome\",\"user\":{\"login\":\"dr.n\","
        "\"role\":\"specialist\",\"clinic\":\"City\"},\"server_time\":1,"
        "\"last_seq\":8,\"replay_from\":7}";
    put_frame(ssl, 1, 1, w, strlen(w));
    /* the request */
    if (get_frame(p, ssl, &op, buf, sizeof buf - 1, &len) || op != 1) {
        peer_fail(p, "no request");
        return 0;
    }
    buf[len] = 0;
    json_t *rq = json_loads((char *)buf, 0, NULL);
    const char *id = json_string_value(json_object_get(rq, "id"));
    if (!id || strcmp(json_string_value(json_object_get(rq, "type")),
                      "case.claim"))
        peer_fail(p, "request without id or not case.claim");
    /* an event and a hashi.v1 ping first, then a reply to another id,
     * then the answer */
    const char *ev = "{\"type\":\"event\",\"seq\":8,\"event_id\":\"ev8\","
        "\"kind\":\"case.new\",\"case_id\":\"c1\",\"at\":5,\"body\":{}}";
    put_frame(ssl, 1, 1, ev, strlen(ev));
    put_text(ssl, "{\"type\":\"ping\",\"id\":\"p9\"}");
    put_text(ssl, "{\"type\":\"reply\",\"id\":\"other\",\"ok\":true,"
             "\"result\":{}}");
    snprintf(out, sizeof out, "{\"type\":\"reply\",\"id\":\"%s\",\"ok\":false,"
             "\"error\":{\"code\":\"already_claimed\",\"message\":"
             "\"already claimed by dr.x\"}}", id ? id : "");
    put_frame(ssl, 1, 1, out, strlen(out));
    json_decref(rq);
    if (get_frame(p, ssl, &op, buf, sizeof buf - 1, &len) || op != 1) {
        peer_fail(p, "no pong");
        return 0;
    }
    buf[len] = 0;
    if (strcmp((char *)buf, "{\"type\":\"pong\",\"id\":\"p9\"}"))
        peer_fail(p, "pong is not {type:pong,id:p9}");
    if (get_frame(p, ssl, &op, buf, sizeof buf - 1, &len) || op != 1) {
        peer_fail(p, "no ack");
        return 0;
    }
    buf[len] = 0;
    if (strcmp((char *)buf, "{\"type\":\"ack\",\"seq\":8}"))
        peer_fail(p, "ack is not {type:ack,seq:8}");
    return 0;
}

static void test_v1_session(void **state)
{
    struct peer p;
    struct err e = { 0, "" };
    struct msg welcome, req, ev;
    struct msg_error me;
    enum msg_code code;
    json_t *res = NULL;
    (void)state;
    peer_start(&p, cert_path, key_path, script_v1);
    struct conn *c = client(&p, "127.0.0.1", cert_path);
    struct conn_v1_hello h = { .token = "tok", .last_seq = 7,
                               .client_name = "test", .client_version = "1",
                               .keep_events = 1 };
    assert_int_equal(conn_v1_open(c, &h, &welcome, &e), 0);
    assert_int_equal(welcome.type, MSG_WELCOME);
    assert_string_equal(welcome.welcome.user.login, "dr.n");
    assert_int_equal(welcome.welcome.last_seq, 8);
    msg_free(&welcome);
    assert_int_equal(msg_build_case_ref(&req, MSG_CASE_CLAIM, "r1", "c1",
                                        NULL, &me), 0);
    assert_int_equal(conn_v1_call(c, &req, &res, &code, &e), ERR_CONFLICT);
    assert_int_equal(code, MSG_E_ALREADY_CLAIMED);
    assert_string_equal(e.msg, "already claimed by dr.x");
    assert_null(res);
    msg_free(&req);
    /* the event that came meanwhile is kept */
    assert_int_equal(conn_v1_next(c, 5000, &ev, &e), 0);
    assert_int_equal(ev.type, MSG_EVENT);
    assert_int_equal(ev.event.seq, 8);
    assert_string_equal(ev.event.event_id, "ev8");
    msg_free(&ev);
    /* so is the stray reply, as a message of its own */
    assert_int_equal(conn_v1_next(c, 5000, &ev, &e), 0);
    assert_int_equal(ev.type, MSG_REPLY);
    assert_string_equal(ev.id, "other");
    msg_free(&ev);
    assert_int_equal(conn_v1_ack(c, 8, &e), 0);
    conn_ws_close(c, 1000, "bye");
    conn_free(c);
    peer_join(&p);
    assert_non_null(strstr(p.got, "\"type\":\"hello\""));
    assert_non_null(strstr(p.got, "\"token\":\"tok\""));
    assert_non_null(strstr(p.got, "\"last_seq\":7"));
}

/* ---- config.c ----------------------------------------------------------- */

static void test_cliconf(void **state)
{
    struct cli_config c, d;
    struct cli_watch w;
    struct err e = { 0, "" };
    struct stat st;
    char dir[400], path[500];
    json_t *req, *got = NULL;
    (void)state;
    snprintf(dir, sizeof dir, "%s/state/hashi", tmp);
    setenv("HASHI_CONFIG_DIR", dir, 1);
    assert_int_equal(cliconf_load(&c, &e), ERR_NOTFOUND);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    strcpy(c.server, "https://h:1");
    strcpy(c.user, "dr.n");
    strcpy(c.token, "secret");
    strcpy(c.cacert, "/ca.pem");
    assert_int_equal(cliconf_save(&c, &e), 0);
    snprintf(path, sizeof path, "%s/config", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cliconf_load(&d, &e), 0);
    assert_string_equal(d.server, "https://h:1");
    assert_string_equal(d.user, "dr.n");
    assert_string_equal(d.token, "secret");
    assert_string_equal(d.cacert, "/ca.pem");
    assert_int_equal(d.insecure, 0);

    /* watch: a ring of event ids and last_seq, bound to server + user */
    assert_int_equal(cliconf_watch_load(&c, &w, &e), 0);
    assert_int_equal(w.last_seq, 0);
    for (int i = 0; i < CLICONF_SEEN + 10; i++) {
        char id[16];
        snprintf(id, sizeof id, "ev%d", i);
        cliconf_watch_add(&w, id);
    }
    w.last_seq = 42;
    assert_int_equal(cliconf_watch_save(&c, &w, &e), 0);
    assert_int_equal(cliconf_watch_load(&c, &w, &e), 0);
    assert_int_equal(w.last_seq, 42);
    assert_true(cliconf_watch_seen(&w, "ev10"));
    assert_true(cliconf_watch_seen(&w, "ev265"));
    assert_false(cliconf_watch_seen(&w, "ev9"));     /* fell out */
    strcpy(d.user, "dr.other");
    assert_int_equal(cliconf_watch_load(&d, &w, &e), 0);
    assert_int_equal(w.last_seq, 0);                  /* not theirs */

    /* pending creates */
    assert_int_equal(cliconf_pending_find(&c, "abc123", &got, &e),
                     ERR_NOTFOUND);
    req = json_pack("{s:s,s:s}", "case_id", "c77", "question", "q");
    assert_int_equal(cliconf_pending_put(&c, "abc123", req, &e), 0);
    assert_int_equal(cliconf_pending_find(&c, "abc123", &got, &e), 0);
    assert_string_equal(json_string_value(json_object_get(got, "case_id")),
                        "c77");
    json_decref(got);
    assert_int_equal(cliconf_pending_put(&c, "../x", req, &e), ERR_INVALID);
    assert_int_equal(cliconf_pending_drop(&c, "abc123", &e), 0);
    assert_int_equal(cliconf_pending_drop(&c, "abc123", &e), 0);
    assert_int_equal(cliconf_pending_find(&c, "abc123", &got, &e),
                     ERR_NOTFOUND);
    json_decref(req);

    assert_int_equal(cliconf_remove(&c, &e), 0);
    assert_int_equal(cliconf_load(&d, &e), ERR_NOTFOUND);
    unsetenv("HASHI_CONFIG_DIR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_http_keepalive_chunked),
        cmocka_unit_test(test_http_upload_and_cut),
        cmocka_unit_test(test_http_json),
        cmocka_unit_test(test_tls_verify),
        cmocka_unit_test(test_ws_frames),
        cmocka_unit_test(test_ws_keepalive),
        cmocka_unit_test(test_ws_handshake_checks),
        cmocka_unit_test(test_v1_session),
        cmocka_unit_test(test_cliconf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
