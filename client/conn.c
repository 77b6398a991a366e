/*
 * conn — a small blocking HTTPS/1.1 and WebSocket client on OpenSSL, and
 * the hashi.v1 session the CLI and the gateway speak over it.  See conn.h.
 *
 * Why not libwebsockets' client, which the server already links?  The CLI
 * and the gateway are sequential programs: send this, wait for that
 * answer, write a file, go on.  An event loop would turn each of those
 * steps into callbacks and state machines for no gain, and its
 * reconnection and timeout behaviour would be lws's, not ours.  A blocking
 * client is a few hundred lines we can read end to end: one socket, one
 * TLS session, explicit timeouts on every wait, and errors that come back
 * as return values at the place that caused them.
 *
 * The socket is non-blocking underneath so that every TLS read and write
 * can wait in poll() with a deadline; to the caller everything blocks.
 * Received bytes go through one input buffer, from which HTTP headers,
 * chunk sizes and WebSocket frame headers are parsed.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define IN_SIZE 16384               /* input buffer */
#define LINE_MAX_LEN 8192           /* one header line */
#define HEADERS_MAX 100             /* header lines of a response */
#define WS_MAX_MSG (8u << 20)       /* a message from the server */
#define WS_WRITE_PIECE 16384        /* masked bytes written at once */
#define DRAIN_MAX (1u << 20)        /* body skipped to keep a connection */

enum { H_IDLE = 0, H_BODY_OUT, H_SENT, H_BODY_IN };

struct qframe {                     /* a hashi.v1 frame set aside */
    struct qframe *next;
    size_t len;
    char text[];
};

struct conn {
    char url[512];
    char host[256];
    char port[8];
    char base[256];
    char hosthdr[300];
    char cacert[1024];
    int insecure;
    int connect_ms, io_ms;

    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    unsigned char in[IN_SIZE];
    size_t in_off, in_len;

    /* HTTP */
    int hstate;
    int reused;                     /* request on a kept-alive socket */
    int answered;                   /* its answer's head has come */
    int64_t out_left;               /* request body bytes still owed */
    int64_t body_left;              /* response: Content-Length left */
    int chunked;
    int64_t chunk_left;
    int body_done;
    int until_close;
    int keep_alive;

    /* WebSocket */
    int ws;
    int ws_close_code;
    int64_t ws_last_rx;
    int64_t ws_last_ping;       /* conn_ws_keepalive's last ping */

    /* hashi.v1 */
    int keep_events;
    struct qframe *qhead, *qtail;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* e's own message again, between pre and post (err_set must not read
 * the buffer it writes). */
static int err_wrap(struct err *e, int code, const char *pre,
                    const char *post)
{
    char old[sizeof e->msg];
    strlcpy_h(old, e->msg, sizeof old);
    return err_set(e, code, "%s%s%s", pre, old, post);
}

/* ---- setup ---------------------------------------------------------- */

static int parse_url(struct conn *c, const char *url, struct err *e)
{
    const char *p, *hs, *he, *slash;
    size_t n;

    if (strncasecmp(url, "https://", 8))
        return err_set(e, ERR_INVALID, "server URL must start with "
                       "https:// (got '%.80s')", url);
    if (strlen(url) >= sizeof c->url)
        return err_set(e, ERR_INVALID, "server URL too long");
    p = url + 8;
    slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    if (*p == '[') {                /* [v6]:port */
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(slash - hs));
        if (!he)
            return err_set(e, ERR_INVALID, "bad IPv6 address in '%s'", url);
        p = he + 1;
    } else {
        hs = p;
        he = memchr(hs, ':', (size_t)(slash - hs));
        if (!he)
            he = slash;
        p = he;
    }
    n = (size_t)(he - hs);
    if (!n || n >= sizeof c->host)
        return err_set(e, ERR_INVALID, "no host in '%s'", url);
    memcpy(c->host, hs, n);
    c->host[n] = 0;
    strcpy(c->port, "443");
    if (p < slash && *p == ':') {
        size_t pl = (size_t)(slash - p - 1);
        if (!pl || pl >= sizeof c->port ||
            strspn(p + 1, "0123456789") < pl)
            return err_set(e, ERR_INVALID, "bad port in '%s'", url);
        memcpy(c->port, p + 1, pl);
        c->port[pl] = 0;
    } else if (p < slash) {
        return err_set(e, ERR_INVALID, "bad host in '%s'", url);
    }
    strlcpy_h(c->base, slash, sizeof c->base);
    n = strlen(c->base);
    while (n && c->base[n - 1] == '/')
        c->base[--n] = 0;
    if (strchr(c->host, ':'))
        snprintf(c->hosthdr, sizeof c->hosthdr, "[%s]:%s", c->host, c->port);
    else
        snprintf(c->hosthdr, sizeof c->hosthdr, "%s:%s", c->host, c->port);
    snprintf(c->url, sizeof c->url, "https://%s%s", c->hosthdr, c->base);
    return 0;
}

struct conn *conn_new(const char *url, const struct conn_opts *opts,
                      struct err *e)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    c->fd = -1;
    if (parse_url(c, url, e)) {
        free(c);
        return NULL;
    }
    if (opts && opts->cacert && *opts->cacert)
        strlcpy_h(c->cacert, opts->cacert, sizeof c->cacert);
    c->insecure = opts && opts->insecure;
    c->connect_ms = opts && opts->connect_timeout_ms > 0
                        ? opts->connect_timeout_ms : 10000;
    c->io_ms = opts && opts->io_timeout_ms > 0 ? opts->io_timeout_ms : 60000;
    return c;
}

static void queue_clear(struct conn *c)
{
    while (c->qhead) {
        struct qframe *f = c->qhead;
        c->qhead = f->next;
        free(f);
    }
    c->qtail = NULL;
}

void conn_disconnect(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->in_off = c->in_len = 0;
    c->hstate = H_IDLE;
    c->ws = 0;
}

void conn_free(struct conn *c)
{
    if (!c)
        return;
    conn_disconnect(c);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    queue_clear(c);
    free(c);
}

const char *conn_url(const struct conn *c)
{
    return c->url;
}

/* ---- socket and TLS ------------------------------------------------- */

/* 1 ready, 0 timed out, < 0 error.  timeout_ms < 0: forever. */
static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = ev };
    int64_t end = timeout_ms < 0 ? 0 : mono_ms() + timeout_ms;
    for (;;) {
        int left = timeout_ms < 0 ? -1 : (int)(end - mono_ms());
        if (timeout_ms >= 0 && left < 0)
            left = 0;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        return r > 0;
    }
}

static const char *ssl_errstr(void)
{
    static char buf[256];
    unsigned long code = ERR_get_error();
    if (!code)
        return "unknown TLS error";
    ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

static int tcp_connect(struct conn *c, struct err *e)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
    int rc = getaddrinfo(c->host, c->port, &hints, &res), saved = 0;
    if (rc)
        return err_set(e, ERR_IO, "cannot resolve %s: %s", c->host,
                       gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
                        SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            c->fd = fd;
            break;
        }
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, c->connect_ms);
            socklen_t sl = sizeof saved;
            if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &saved,
                                    &sl) == 0 && saved == 0) {
                c->fd = fd;
                break;
            }
            if (w == 0)
                saved = ETIMEDOUT;
        } else {
            saved = errno;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return err_set(e, ERR_IO, "cannot connect to %s: %s", c->hosthdr,
                       strerror(saved ? saved : ECONNREFUSED));
    return 0;
}

static int make_ctx(struct conn *c, struct err *e)
{
    if (c->ctx)
        return 0;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        return err_set(e, ERR_INTERNAL, "TLS: %s", ssl_errstr());
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (c->insecure) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (c->cacert[0]) {
        if (SSL_CTX_load_verify_locations(c->ctx, c->cacert, NULL) != 1) {
            const char *why = ssl_errstr();
            SSL_CTX_free(c->ctx);
            c->ctx = NULL;
            return err_set(e, ERR_IO, "cannot load CA file %s: %s",
                           c->cacert, why);
        }
        /* Every certificate in the file is a trust anchor, also a leaf
         * (a self-signed server certificate with CA:FALSE, as `hashi-server
         * init` makes): what curl --cacert does too. */
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(c->ctx),
                                    X509_V_FLAG_PARTIAL_CHAIN);
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        SSL_CTX_free(c->ctx);
        c->ctx = NULL;
        return err_set(e, ERR_IO, "cannot load the system CAs: %s",
                       ssl_errstr());
    }
    return 0;
}

static int tls_handshake(struct conn *c, struct err *e)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, c->host, ip) == 1 ||
                inet_pton(AF_INET6, c->host, ip) == 1;

    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return err_set(e, ERR_INTERNAL, "TLS: %s", ssl_errstr());
    SSL_set_alpn_protos(c->ssl, alpn, sizeof alpn - 1);
    if (!c->insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        X509_VERIFY_PARAM_set_hostflags(vp,
            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host) != 1
                  : SSL_set1_host(c->ssl, c->host) != 1)
            return err_set(e, ERR_INTERNAL, "TLS: cannot set the host "
                           "name to verify");
    }
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, c->host);
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(c->fd, err == SSL_ERROR_WANT_READ ? POLLIN
                            : POLLOUT, c->connect_ms);
            if (w <= 0)
                return err_set(e, ERR_IO, "TLS handshake with %s timed "
                               "out", c->hosthdr);
            continue;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            return err_set(e, ERR_IO, "TLS: the certificate of %s is not "
                           "trusted: %s%s", c->hosthdr,
                           X509_verify_cert_error_string(vr),
                           c->cacert[0] ? "" : " (use --cacert FILE for a "
                           "private CA)");
        if (err == SSL_ERROR_SYSCALL && !ERR_peek_error())
            return err_set(e, ERR_IO, "TLS handshake with %s: connection "
                           "closed", c->hosthdr);
        return err_set(e, ERR_IO, "TLS handshake with %s: %s", c->hosthdr,
                       ssl_errstr());
    }
}

static int do_connect(struct conn *c, struct err *e)
{
    conn_disconnect(c);
    int rc = make_ctx(c, e);
    if (!rc)
        rc = tcp_connect(c, e);
    if (!rc)
        rc = tls_handshake(c, e);
    if (rc)
        conn_disconnect(c);
    return rc;
}

/* Up to n bytes; waits up to timeout_ms for the first (-1 forever).
 * > 0 bytes, 0 when nothing came in time, or < 0. */
static int tls_read(struct conn *c, void *buf, size_t n, int timeout_ms,
                    struct err *e)
{
    if (!c->ssl)
        return err_set(e, ERR_IO, "not connected");
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, buf, n, &got) == 1)
            return (int)got;
        int err = SSL_get_error(c->ssl, 0);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(c->fd, err == SSL_ERROR_WANT_READ ? POLLIN
                            : POLLOUT, timeout_ms);
            if (w < 0)
                return err_set(e, ERR_IO, "poll: %s", strerror(errno));
            if (w == 0)
                return 0;
            continue;
        }
        if (err == SSL_ERROR_ZERO_RETURN ||
            (err == SSL_ERROR_SYSCALL && !ERR_peek_error() && !errno))
            return err_set(e, ERR_IO, "connection closed by the server");
        if (err == SSL_ERROR_SYSCALL)
            return err_set(e, ERR_IO, "read: %s", strerror(errno));
        return err_set(e, ERR_IO, "TLS read: %s", ssl_errstr());
    }
}

static int tls_write(struct conn *c, const void *buf, size_t n,
                     struct err *e)
{
    const unsigned char *p = buf;
    if (!c->ssl)
        return err_set(e, ERR_IO, "not connected");
    while (n) {
        size_t put = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, p, n, &put) == 1) {
            p += put;
            n -= put;
            continue;
        }
        int err = SSL_get_error(c->ssl, 0);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(c->fd, err == SSL_ERROR_WANT_READ ? POLLIN
                            : POLLOUT, c->io_ms);
            if (w <= 0)
                return err_set(e, ERR_IO, "write to %s timed out",
                               c->hosthdr);
            continue;
        }
        if (err == SSL_ERROR_SYSCALL)
            return err_set(e, ERR_IO, "write: %s",
                           errno ? strerror(errno) : "connection closed");
        return err_set(e, ERR_IO, "TLS write: %s", ssl_errstr());
    }
    return 0;
}

/* More bytes into the input buffer: > 0, 0 when none came within
 * timeout_ms, or < 0. */
static int fill(struct conn *c, int timeout_ms, struct err *e)
{
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
    } else if (c->in_off && c->in_len == IN_SIZE) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_len == IN_SIZE)
        return err_set(e, ERR_INVALID, "input buffer full");
    int r = tls_read(c, c->in + c->in_len, IN_SIZE - c->in_len, timeout_ms,
                     e);
    if (r > 0)
        c->in_len += (size_t)r;
    return r;
}

static size_t avail(const struct conn *c)
{
    return c->in_len - c->in_off;
}

/* Make n (<= IN_SIZE) bytes available in the buffer: 0, CONN_TIMEOUT
 * when a wait of timeout_ms brought nothing (what came stays buffered),
 * or < 0. */
static int need(struct conn *c, size_t n, int timeout_ms, struct err *e)
{
    if (c->in_off + n > IN_SIZE) {
        memmove(c->in, c->in + c->in_off, avail(c));
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    while (avail(c) < n) {
        int r = fill(c, timeout_ms, e);
        if (r < 0)
            return r;
        if (r == 0)
            return CONN_TIMEOUT;
    }
    return 0;
}

/* n bytes into buf (large reads bypass the buffer). */
static int read_exact(struct conn *c, void *buf, size_t n, struct err *e)
{
    unsigned char *p = buf;
    while (n) {
        size_t k = avail(c);
        if (k) {
            if (k > n)
                k = n;
            memcpy(p, c->in + c->in_off, k);
            c->in_off += k;
        } else {
            int r = tls_read(c, p, n, c->io_ms, e);
            if (r == 0)
                return err_set(e, ERR_IO, "no data from %s within %d s",
                               c->hosthdr, c->io_ms / 1000);
            if (r < 0)
                return r;
            k = (size_t)r;
        }
        p += k;
        n -= k;
    }
    return 0;
}

/* One line without its CRLF into out. */
static int read_line(struct conn *c, char *out, size_t n, struct err *e)
{
    for (;;) {
        size_t used;
        int got = line_take(c->in + c->in_off, avail(c), out, n, &used);
        if (got < 0)
            return err_set(e, ERR_INVALID, "header line too long");
        if (got) {
            c->in_off += used;
            return 0;
        }
        if (avail(c) >= LINE_MAX_LEN)
            return err_set(e, ERR_INVALID, "header line too long");
        if (c->in_off && c->in_len == IN_SIZE) {
            memmove(c->in, c->in + c->in_off, avail(c));
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        int r = fill(c, c->io_ms, e);
        if (r < 0)
            return r;
        if (r == 0)
            return err_set(e, ERR_IO, "no answer from %s within %d s",
                           c->hosthdr, c->io_ms / 1000);
    }
}

/* ---- HTTP ----------------------------------------------------------- */

/* A kept-alive socket the server has closed (or written to unasked) is
 * readable; such a socket is dropped before a new request. */
static int stale(struct conn *c)
{
    if (c->fd < 0 || !c->ssl)
        return 1;
    if (avail(c) || SSL_pending(c->ssl))
        return 1;
    return wait_fd(c->fd, POLLIN, 0) != 0;
}

static int send_head(struct conn *c, const struct conn_request *rq,
                     struct err *e)
{
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s%s HTTP/1.1\r\nHost: %s\r\n"
                     "User-Agent: hashi/0.1\r\n",
                     rq->method, c->base, rq->path, c->hosthdr);
    if (rq->token)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Authorization: Bearer %s\r\n", rq->token);
    if (rq->content_type && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Content-Type: %s\r\n", rq->content_type);
    if (rq->accept && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "Accept: %s\r\n",
                      rq->accept);
    if (rq->content_length >= 0 && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Content-Length: %lld\r\n",
                      (long long)rq->content_length);
    if ((size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if ((size_t)n >= sizeof head)
        return err_set(e, ERR_TOOBIG, "request head too long");
    return tls_write(c, head, (size_t)n, e);
}

int conn_http_begin(struct conn *c, const struct conn_request *rq,
                    struct err *e)
{
    int rc;
    if (c->ws)
        return err_set(e, ERR_INVALID, "connection is a WebSocket");
    if (c->hstate != H_IDLE)
        conn_disconnect(c);
    c->reused = !stale(c);
    c->answered = 0;
    if (!c->reused && (rc = do_connect(c, e)))
        return rc;
    rc = send_head(c, rq, e);
    if (rc && c->reused) {          /* closed under us: once more */
        c->reused = 0;
        if ((rc = do_connect(c, e)) == 0)
            rc = send_head(c, rq, e);
    }
    if (rc) {
        conn_disconnect(c);
        return rc;
    }
    c->out_left = rq->content_length > 0 ? rq->content_length : 0;
    c->hstate = c->out_left ? H_BODY_OUT : H_SENT;
    return 0;
}

int conn_http_write(struct conn *c, const void *buf, size_t n,
                    struct err *e)
{
    if (c->hstate != H_BODY_OUT || (int64_t)n > c->out_left)
        return err_set(e, ERR_INVALID, "body longer than announced");
    int rc = tls_write(c, buf, n, e);
    if (rc) {
        conn_disconnect(c);
        return rc;
    }
    c->out_left -= (int64_t)n;
    if (!c->out_left)
        c->hstate = H_SENT;
    return 0;
}

/* Case-insensitive: does s contain word? */
static int ci_contains(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++)
        if (!strncasecmp(s, word, n))
            return 1;
    return 0;
}

static int header_is(const char *line, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) || line[n] != ':')
        return 0;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    *val = v;
    return 1;
}

/* Parses "HTTP/1.x NNN ..." and the headers into rs and the body state. */
static int read_head(struct conn *c, struct conn_response *rs, int *upgrade,
                     char *accept, size_t accept_n, char *proto,
                     size_t proto_n, struct err *e)
{
    char line[LINE_MAX_LEN];
    int minor = 1, rc, status = 0, lines = 0;
    const char *v;

    memset(rs, 0, sizeof *rs);
    rs->content_length = -1;
    do {            /* skip interim 1xx answers (100 Continue) */
        if ((rc = read_line(c, line, sizeof line, e)))
            return rc;
        if (sscanf(line, "HTTP/1.%d %3d", &minor, &status) != 2 ||
            status < 100 || status > 599)
            return err_set(e, ERR_INVALID, "not an HTTP answer: '%.60s'",
                           line);
        if (status >= 200 || status == 101)
            break;
        do {
            if ((rc = read_line(c, line, sizeof line, e)))
                return rc;
        } while (line[0]);
    } while (1);
    rs->status = status;
    c->keep_alive = minor >= 1;
    c->chunked = 0;
    for (;;) {
        if ((rc = read_line(c, line, sizeof line, e)))
            return rc;
        if (!line[0])
            break;
        if (++lines > HEADERS_MAX)
            return err_set(e, ERR_INVALID, "too many header lines");
        if (header_is(line, "Content-Length", &v)) {
            char *end;
            long long n = strtoll(v, &end, 10);
            if (end == v || *end || n < 0)
                return err_set(e, ERR_INVALID, "bad Content-Length");
            rs->content_length = n;
        } else if (header_is(line, "Transfer-Encoding", &v)) {
            if (ci_contains(v, "chunked"))
                c->chunked = 1;
        } else if (header_is(line, "Connection", &v)) {
            if (ci_contains(v, "close"))
                c->keep_alive = 0;
            else if (ci_contains(v, "keep-alive"))
                c->keep_alive = 1;
            if (upgrade && ci_contains(v, "upgrade"))
                *upgrade |= 1;
        } else if (header_is(line, "Content-Type", &v)) {
            strlcpy_h(rs->content_type, v, sizeof rs->content_type);
        } else if (upgrade && header_is(line, "Upgrade", &v)) {
            if (!strcasecmp(v, "websocket"))
                *upgrade |= 2;
        } else if (accept && header_is(line, "Sec-WebSocket-Accept", &v)) {
            strlcpy_h(accept, v, accept_n);
        } else if (proto && header_is(line, "Sec-WebSocket-Protocol", &v)) {
            strlcpy_h(proto, v, proto_n);
        }
    }
    if (c->chunked)
        rs->content_length = -1;
    c->body_left = rs->content_length;
    c->chunk_left = 0;
    c->until_close = !c->chunked && rs->content_length < 0;
    if (c->until_close)
        c->keep_alive = 0;
    c->body_done = status == 204 || status == 304 || status == 101 ||
                   rs->content_length == 0;
    return 0;
}

int conn_http_head(struct conn *c, struct conn_response *rs, struct err *e)
{
    if (c->hstate != H_SENT)
        return err_set(e, ERR_INVALID, c->hstate == H_BODY_OUT
                       ? "request body incomplete" : "no request sent");
    int rc = read_head(c, rs, NULL, NULL, 0, NULL, 0, e);
    if (rc) {
        conn_disconnect(c);
        return rc;
    }
    c->answered = 1;
    c->hstate = H_BODY_IN;
    return 0;
}

ssize_t conn_http_read(struct conn *c, void *buf, size_t n, struct err *e)
{
    char line[256];
    int rc;
    size_t k;

    if (c->hstate != H_BODY_IN)
        return err_set(e, ERR_INVALID, "no response being read");
    if (c->body_done || !n)
        return 0;
    if (c->chunked && !c->chunk_left) {
        char *end;
        if ((rc = read_line(c, line, sizeof line, e)))
            goto fail;
        long long size = strtoll(line, &end, 16);
        if (end == line || size < 0 || (*end && *end != ';' &&
                                         *end != ' ')) {
            rc = err_set(e, ERR_INVALID, "bad chunk size '%.20s'", line);
            goto fail;
        }
        if (!size) {                /* trailers, then the end */
            do {
                if ((rc = read_line(c, line, sizeof line, e)))
                    goto fail;
            } while (line[0]);
            c->body_done = 1;
            return 0;
        }
        c->chunk_left = size;
    }
    if (c->chunked)
        k = (int64_t)n > c->chunk_left ? (size_t)c->chunk_left : n;
    else if (c->body_left >= 0)
        k = (int64_t)n > c->body_left ? (size_t)c->body_left : n;
    else
        k = n;
    if (avail(c)) {
        if (k > avail(c))
            k = avail(c);
        memcpy(buf, c->in + c->in_off, k);
        c->in_off += k;
    } else {
        int r = tls_read(c, buf, k, c->io_ms, e);
        if (r == 0) {
            rc = err_set(e, ERR_IO, "no data from %s within %d s",
                         c->hosthdr, c->io_ms / 1000);
            goto fail;
        }
        if (r < 0) {
            if (c->until_close) {   /* the end of such a body */
                c->body_done = 1;
                conn_disconnect(c);
                c->hstate = H_BODY_IN;
                return 0;
            }
            rc = err_wrap(e, ERR_INVALID, "answer cut short: ", "");
            goto fail;
        }
        k = (size_t)r;
    }
    if (c->chunked) {
        c->chunk_left -= (int64_t)k;
        if (!c->chunk_left &&
            ((rc = read_line(c, line, sizeof line, e)) || line[0])) {
            if (!rc)
                rc = err_set(e, ERR_INVALID, "chunk not followed by CRLF");
            goto fail;
        }
    } else if (c->body_left >= 0) {
        c->body_left -= (int64_t)k;
        if (!c->body_left)
            c->body_done = 1;
    }
    return (ssize_t)k;
fail:
    conn_disconnect(c);
    return rc;
}

int conn_http_end(struct conn *c, struct err *e)
{
    unsigned char skip[4096];
    size_t skipped = 0;
    if (c->hstate == H_BODY_IN) {
        while (!c->body_done && skipped < DRAIN_MAX) {
            ssize_t r = conn_http_read(c, skip, sizeof skip, e);
            if (r <= 0)
                break;
            skipped += (size_t)r;
        }
    }
    if (c->hstate != H_BODY_IN || !c->body_done || !c->keep_alive ||
        c->fd < 0)
        conn_disconnect(c);
    c->hstate = H_IDLE;
    return 0;
}

static int http_once(struct conn *c, const struct conn_request *rq,
                     const void *body, size_t len, size_t max,
                     struct conn_response *rs, struct err *e)
{
    size_t cap = 0, n = 0;
    unsigned char *buf = NULL;
    int rc = conn_http_begin(c, rq, e);
    if (!rc && rq->content_length > 0)
        rc = conn_http_write(c, body, len, e);
    if (!rc)
        rc = conn_http_head(c, rs, e);
    if (rc)
        return rc;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (rs->content_length >= 0 &&
                (uint64_t)rs->content_length + 1 <= max + 1 &&
                (size_t)rs->content_length + 1 > ncap)
                ncap = (size_t)rs->content_length + 1;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = err_set(e, ERR_INTERNAL, "out of memory");
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = conn_http_read(c, buf + n, cap - n - 1, e);
        if (r < 0) {
            rc = (int)r;
            break;
        }
        if (!r)
            break;
        n += (size_t)r;
        if (n > max) {
            rc = err_set(e, ERR_TOOBIG, "answer larger than %zu bytes",
                         max);
            break;
        }
    }
    if (rc) {
        free(buf);
        conn_disconnect(c);
        return rc;
    }
    conn_http_end(c, e);
    if (!buf)
        buf = calloc(1, 1);
    if (!buf)
        return err_set(e, ERR_INTERNAL, "out of memory");
    buf[n] = 0;
    rs->body = buf;
    rs->len = n;
    return 0;
}

int conn_http(struct conn *c, const struct conn_request *rq,
              const void *body, size_t len, size_t max,
              struct conn_response *rs, struct err *e)
{
    struct conn_request r = *rq;
    if (r.content_length < 0 && len)
        r.content_length = (int64_t)len;
    int rc = http_once(c, &r, body, len, max, rs, e);
    /* A kept-alive socket closed while we sent: the server never saw the
     * request (no answer byte came), so sending it again is safe. */
    if (rc == ERR_IO && c->reused && !c->answered) {
        c->reused = 0;
        conn_disconnect(c);
        rc = http_once(c, &r, body, len, max, rs, e);
    }
    return rc;
}

void conn_response_free(struct conn_response *rs)
{
    if (rs) {
        free(rs->body);
        rs->body = NULL;
        rs->len = 0;
    }
}

int conn_json(struct conn *c, const char *method, const char *path,
              const char *token, json_t *body, int *status, json_t **out,
              struct err *e)
{
    struct conn_request rq = {
        .method = method, .path = path, .token = token,
        .accept = "application/json", .content_length = -1,
    };
    struct conn_response rs;
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text)
            return err_set(e, ERR_INTERNAL, "out of memory");
        len = strlen(text);
        rq.content_type = "application/json";
        rq.content_length = (int64_t)len;
    }
    rc = conn_http(c, &rq, text, len, 16u << 20, &rs, e);
    free(text);
    if (rc)
        return rc;
    *status = rs.status;
    if (rs.len)
        *out = json_loadb((const char *)rs.body, rs.len, 0, NULL);
    conn_response_free(&rs);
    return 0;
}

int conn_http_error(int status, json_t *body, struct err *e)
{
    json_t *er = json_object_get(body, "error");
    const char *msg = json_string_value(json_object_get(er, "message"));
    const char *code = json_string_value(json_object_get(er, "code"));
    int rc = status == 401 ? ERR_AUTH : status == 403 ? ERR_FORBIDDEN
           : status == 404 ? ERR_NOTFOUND : status == 409 ? ERR_CONFLICT
           : status == 429 ? ERR_RATELIMIT
           : status >= 400 && status < 500 ? ERR_INVALID : ERR_IO;
    if (msg && *msg)
        return err_set(e, rc, "%s", msg);
    if (code && *code)
        return err_set(e, rc, "%s (HTTP %d)", code, status);
    return err_set(e, rc, "HTTP %d", status);
}

/* ---- WebSocket ------------------------------------------------------ */

static void b64(const unsigned char *in, int n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, n);
}

int conn_ws_open(struct conn *c, const char *path, const char *subprotocol,
                 struct err *e)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char nonce[16], sha[EVP_MAX_MD_SIZE];
    unsigned int shalen = 0;
    char key[32], want[64], got[64] = "", proto[128] = "", cat[128];
    char head[2048];
    struct conn_response rs;
    int upgrade = 0, rc, n;

    if ((rc = do_connect(c, e)))
        return rc;
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return err_set(e, ERR_INTERNAL, "no random bytes");
    b64(nonce, sizeof nonce, key);
    n = snprintf(head, sizeof head,
                 "GET %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hashi/0.1\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: %s\r\n\r\n",
                 c->base, path, c->hosthdr, key, subprotocol);
    if (n < 0 || (size_t)n >= sizeof head)
        return err_set(e, ERR_TOOBIG, "upgrade request too long");
    if ((rc = tls_write(c, head, (size_t)n, e)))
        goto fail;
    c->hstate = H_SENT;
    if ((rc = read_head(c, &rs, &upgrade, got, sizeof got, proto,
                        sizeof proto, e)))
        goto fail;
    if (rs.status != 101) {
        char msg[200] = "";
        c->hstate = H_BODY_IN;
        if (rs.content_length > 0 && rs.content_length < 4096) {
            char body[4096];
            ssize_t k = 0, r;
            while ((r = conn_http_read(c, body + k,
                                       sizeof body - 1 - (size_t)k, e)) > 0)
                k += r;
            body[k] = 0;
            json_t *j = json_loads(body, 0, NULL);
            const char *m = json_string_value(json_object_get(
                json_object_get(j, "error"), "message"));
            if (m)
                snprintf(msg, sizeof msg, ": %s", m);
            json_decref(j);
        }
        conn_disconnect(c);
        return err_set(e, rs.status == 401 ? ERR_AUTH : ERR_IO,
                       "WebSocket upgrade refused: HTTP %d%s", rs.status,
                       msg);
    }
    snprintf(cat, sizeof cat, "%s%s", key, guid);
    if (EVP_Digest(cat, strlen(cat), sha, &shalen, EVP_sha1(), NULL) != 1) {
        rc = err_set(e, ERR_INTERNAL, "SHA-1 failed");
        goto fail;
    }
    b64(sha, (int)shalen, want);
    if (upgrade != 3 || strcmp(want, got)) {
        rc = err_set(e, ERR_INVALID, "bad WebSocket handshake from the "
                     "server (accept key or Upgrade headers)");
        goto fail;
    }
    if (strcmp(proto, subprotocol)) {
        rc = err_set(e, ERR_INVALID, "the server did not select the "
                     "subprotocol %s (got '%s')", subprotocol, proto);
        goto fail;
    }
    c->hstate = H_IDLE;
    c->ws = 1;
    c->ws_close_code = 0;
    c->ws_last_rx = mono_ms();
    return 0;
fail:
    conn_disconnect(c);
    return rc;
}

static int ws_frame(struct conn *c, int opcode, const void *a, size_t alen,
                    const void *b, size_t blen, struct err *e)
{
    unsigned char hdr[14], mask[4], buf[WS_WRITE_PIECE];
    size_t total = alen + blen, h = 0, pos = 0;
    int rc;

    if (!c->ws || !c->ssl)
        return err_set(e, ERR_IO, "WebSocket not open");
    if (RAND_bytes(mask, 4) != 1)
        return err_set(e, ERR_INTERNAL, "no random bytes");
    hdr[h++] = (unsigned char)(0x80 | opcode);
    if (total < 126) {
        hdr[h++] = (unsigned char)(0x80 | total);
    } else if (total <= 0xffff) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (unsigned char)(total >> 8);
        hdr[h++] = (unsigned char)total;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (unsigned char)((uint64_t)total >> (8 * i));
    }
    memcpy(hdr + h, mask, 4);
    h += 4;
    if ((rc = tls_write(c, hdr, h, e)))
        goto fail;
    while (pos < total) {
        size_t k = 0;
        while (k < sizeof buf && pos + k < total) {
            size_t at = pos + k;
            unsigned char v = at < alen ? ((const unsigned char *)a)[at]
                              : ((const unsigned char *)b)[at - alen];
            buf[k] = v ^ mask[at & 3];
            k++;
        }
        if ((rc = tls_write(c, buf, k, e)))
            goto fail;
        pos += k;
    }
    return 0;
fail:
    conn_disconnect(c);
    return rc;
}

int conn_ws_send(struct conn *c, int opcode, const void *a, size_t alen,
                 const void *b, size_t blen, struct err *e)
{
    if (opcode != CONN_WS_TEXT && opcode != CONN_WS_BINARY)
        return err_set(e, ERR_INVALID, "bad opcode");
    return ws_frame(c, opcode, a, alen, b, blen, e);
}

int conn_ws_ping(struct conn *c, struct err *e)
{
    return ws_frame(c, 0x9, "hashi", 5, NULL, 0, e);
}

/* One frame header + payload.  Waits timeout_ms for its first byte. */
static int ws_read_frame(struct conn *c, int timeout_ms, int *fin, int *op,
                         unsigned char **payload, uint64_t *plen,
                         uint64_t room, struct err *e)
{
    int rc = need(c, 2, timeout_ms, e);
    uint64_t len;
    size_t hl = 2;

    if (rc)
        return rc;
    unsigned char b0 = c->in[c->in_off], b1 = c->in[c->in_off + 1];
    if (b0 & 0x70)
        return err_set(e, ERR_INVALID, "WebSocket frame with RSV bits");
    if (b1 & 0x80)
        return err_set(e, ERR_INVALID, "masked frame from the server");
    len = b1 & 0x7f;
    if (len == 126)
        hl = 4;
    else if (len == 127)
        hl = 10;
    if ((rc = need(c, hl, c->io_ms, e)))
        return rc == CONN_TIMEOUT ? err_set(e, ERR_IO, "WebSocket frame "
                                            "cut short") : rc;
    const unsigned char *p = c->in + c->in_off;
    if (len == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
    }
    c->in_off += hl;
    *fin = b0 >> 7;
    *op = b0 & 0x0f;
    if ((*op & 8) && (len > 125 || !*fin))
        return err_set(e, ERR_INVALID, "bad WebSocket control frame");
    if (!(*op & 8) && len > room)
        return err_set(e, ERR_TOOBIG, "WebSocket message over %u bytes",
                       WS_MAX_MSG);
    *payload = malloc((size_t)len + 1);
    if (!*payload)
        return err_set(e, ERR_INTERNAL, "out of memory");
    if ((rc = read_exact(c, *payload, (size_t)len, e))) {
        free(*payload);
        *payload = NULL;
        return rc;
    }
    (*payload)[len] = 0;
    *plen = len;
    return 0;
}

int conn_ws_recv(struct conn *c, int timeout_ms, int *opcode,
                 unsigned char **msg, size_t *len, struct err *e)
{
    unsigned char *acc = NULL, *pl = NULL;
    size_t acc_len = 0;
    int acc_op = 0, fin = 0, op = 0, rc;
    uint64_t plen = 0;
    int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;

    *msg = NULL;
    *len = 0;
    if (!c->ws || !c->ssl)
        return err_set(e, ERR_IO, "WebSocket not open");
    for (;;) {
        int wait = acc ? c->io_ms : deadline < 0 ? -1
                   : (int)(deadline - mono_ms());
        if (wait < -1 || (deadline >= 0 && !acc && wait < 0))
            wait = 0;
        rc = ws_read_frame(c, wait, &fin, &op, &pl, &plen,
                           WS_MAX_MSG - acc_len, e);
        if (rc == CONN_TIMEOUT && !acc)
            return CONN_TIMEOUT;
        if (rc) {
            if (rc == CONN_TIMEOUT)
                rc = err_set(e, ERR_IO, "WebSocket message cut short");
            goto fail;
        }
        c->ws_last_rx = mono_ms();
        if (op == 0x9) {                        /* ping: pong */
            rc = ws_frame(c, 0xA, pl, (size_t)plen, NULL, 0, e);
            free(pl);
            if (rc)
                goto fail;
            continue;
        }
        if (op == 0xA) {
            free(pl);
            continue;
        }
        if (op == 0x8) {                        /* close */
            int code = plen >= 2 ? pl[0] << 8 | pl[1] : 1005;
            char reason[128] = "";
            if (plen > 2)
                snprintf(reason, sizeof reason, ": %.*s",
                         (int)(plen - 2 > 100 ? 100 : plen - 2),
                         (const char *)pl + 2);
            unsigned char echo[2] = { (unsigned char)(code >> 8),
                                      (unsigned char)code };
            free(pl);
            if (code != 1005)
                ws_frame(c, 0x8, echo, 2, NULL, 0, e);
            c->ws_close_code = code;
            conn_disconnect(c);
            free(acc);
            return err_set(e, ERR_IO, "closed by the server (%d%s)", code,
                           reason);
        }
        if (op != 0 && op != 1 && op != 2) {
            free(pl);
            rc = err_set(e, ERR_INVALID, "unknown WebSocket opcode %d", op);
            goto fail;
        }
        if ((op == 0) != (acc != NULL)) {
            free(pl);
            rc = err_set(e, ERR_INVALID, "bad WebSocket fragmentation");
            goto fail;
        }
        if (!acc) {
            acc = pl;
            acc_len = (size_t)plen;
            acc_op = op;
        } else {
            unsigned char *n = realloc(acc, acc_len + (size_t)plen + 1);
            if (!n) {
                free(pl);
                rc = err_set(e, ERR_INTERNAL, "out of memory");
                goto fail;
            }
            acc = n;
            memcpy(acc + acc_len, pl, (size_t)plen);
            acc_len += (size_t)plen;
            acc[acc_len] = 0;
            free(pl);
        }
        if (fin) {
            *opcode = acc_op;
            *msg = acc;
            *len = acc_len;
            return 0;
        }
    }
fail:
    free(acc);
    conn_disconnect(c);
    return rc;
}

void conn_ws_close(struct conn *c, int code, const char *reason)
{
    unsigned char buf[125];
    size_t n = 2;
    struct err e;

    if (c->ws && c->ssl) {
        buf[0] = (unsigned char)(code >> 8);
        buf[1] = (unsigned char)code;
        if (reason) {
            size_t k = strlen(reason);
            if (k > sizeof buf - 2)
                k = sizeof buf - 2;
            memcpy(buf + 2, reason, k);
            n += k;
        }
        if (ws_frame(c, 0x8, buf, n, NULL, 0, &e) == 0) {
            int64_t end = mono_ms() + 2000;
            while (c->ws && mono_ms() < end) {
                unsigned char *m;
                size_t len;
                int op;
                int rc = conn_ws_recv(c, (int)(end - mono_ms()), &op, &m,
                                      &len, &e);
                free(m);
                if (rc)
                    break;
            }
        }
    }
    conn_disconnect(c);
    queue_clear(c);
}

int conn_ws_close_code(const struct conn *c)
{
    return c->ws_close_code;
}

int64_t conn_ws_last_rx_ms(const struct conn *c)
{
    return c->ws_last_rx;
}

int conn_ws_keepalive(struct conn *c, int ping_ms, int dead_ms,
                      struct err *e)
{
    int64_t now = mono_ms(), idle = now - c->ws_last_rx;
    if (idle > dead_ms)
        return err_set(e, ERR_IO, "no sign of life from the server for "
                       "%d s", dead_ms / 1000);
    if (idle > ping_ms && now - c->ws_last_ping > ping_ms) {
        c->ws_last_ping = now;
        return conn_ws_ping(c, e);
    }
    return 0;
}

/* ---- hashi.v1 --------------------------------------------------------- */

void conn_random_id(char out[33])
{
    if (random_hex(out, 16)) {      /* RAND failing: still unique enough */
        snprintf(out, 33, "%016llx%08x%08x",
                 (unsigned long long)mono_ms(), (unsigned)getpid(),
                 (unsigned)rand());
    }
}

static int v1_send(struct conn *c, const struct msg *m, struct err *e)
{
    struct msg_error me;
    char *text = NULL;
    size_t len = 0;
    if (msg_serialize(m, &text, &len, &me))
        return err_set(e, ERR_INVALID, "%s", me.message);
    int rc = conn_ws_send(c, CONN_WS_TEXT, text, len, NULL, 0, e);
    free(text);
    return rc;
}

static void queue_push(struct conn *c, const char *text, size_t len)
{
    struct qframe *f = malloc(sizeof *f + len + 1);
    if (!f)
        return;     /* dropped: it comes again on the next session */
    f->next = NULL;
    f->len = len;
    memcpy(f->text, text, len);
    f->text[len] = 0;
    if (c->qtail)
        c->qtail->next = f;
    else
        c->qhead = f;
    c->qtail = f;
}

static int close_error(struct conn *c, int rc, struct err *e)
{
    if (conn_ws_close_code(c) == 4401)
        return err_wrap(e, ERR_AUTH, "the server refused the session "
                        "token: ", "");
    return rc;
}

/* The next frame from the socket, parsed (pings answered).  Binary
 * frames are not expected by a client: skipped. */
static int v1_recv(struct conn *c, int timeout_ms, struct msg *out,
                   char **raw, size_t *rawlen, struct err *e)
{
    for (;;) {
        unsigned char *buf;
        size_t len;
        int op;
        struct msg_error me;
        int rc = conn_ws_recv(c, timeout_ms, &op, &buf, &len, e);
        if (rc == CONN_TIMEOUT)
            return rc;
        if (rc)
            return close_error(c, rc, e);
        if (op != CONN_WS_TEXT) {
            free(buf);
            continue;
        }
        rc = msg_parse_dir((const char *)buf, len, MSG_FROM_SERVER, out,
                           &me);
        if (rc) {
            /* A server newer than us, or broken: say so, go on. */
            fprintf(stderr, "hashi: ignoring a frame from the server: "
                    "%s\n", me.message);
            free(buf);
            msg_free(out);
            continue;
        }
        if (out->type == MSG_PING) {
            struct msg pong;
            struct msg_error pe;
            msg_build_ping(&pong, MSG_PONG, out->id[0] ? out->id : NULL,
                           &pe);
            rc = v1_send(c, &pong, e);
            msg_free(&pong);
            msg_free(out);
            free(buf);
            if (rc)
                return rc;
            continue;
        }
        if (out->type == MSG_PONG) {
            msg_free(out);
            free(buf);
            continue;
        }
        if (raw) {
            *raw = (char *)buf;
            *rawlen = len;
        } else {
            free(buf);
        }
        return 0;
    }
}

int conn_v1_open(struct conn *c, const struct conn_v1_hello *h,
                 struct msg *welcome, struct err *e)
{
    struct msg m;
    struct msg_error me;
    int rc;

    msg_init(welcome, MSG_WELCOME);
    queue_clear(c);
    c->keep_events = h->keep_events;
    if (msg_build_hello(&m, h->token, h->last_seq, h->client_name,
                        h->client_version, &me))
        return err_set(e, ERR_INVALID, "hello: %s", me.message);
    rc = conn_ws_open(c, CONN_V1_PATH, MSG_SUBPROTOCOL, e);
    if (!rc)
        rc = v1_send(c, &m, e);
    msg_free(&m);
    if (rc)
        return rc;
    for (;;) {
        struct msg in;
        char *raw = NULL;
        size_t rawlen = 0;
        rc = v1_recv(c, c->io_ms, &in, &raw, &rawlen, e);
        if (rc == CONN_TIMEOUT) {
            conn_disconnect(c);
            return err_set(e, ERR_IO, "no welcome from the server");
        }
        if (rc)
            return rc;
        if (in.type == MSG_WELCOME) {
            msg_free(welcome);
            *welcome = in;
            free(raw);
            return 0;
        }
        if (in.type == MSG_ERROR) {
            int code = in.error.error.code;
            rc = err_set(e, code == MSG_E_UNAUTHORIZED ? ERR_AUTH : ERR_IO,
                         "hello refused: %s: %s", msg_code_name(code),
                         in.error.error.message);
            msg_free(&in);
            free(raw);
            conn_disconnect(c);
            return rc;
        }
        /* Anything else before welcome breaks the protocol. */
        msg_free(&in);
        free(raw);
        conn_disconnect(c);
        return err_set(e, ERR_INVALID, "the server sent no welcome");
    }
}

static int is_answer(enum msg_type t)
{
    return t == MSG_REPLY || t == MSG_UPLOAD_AT || t == MSG_UPLOAD_DONE;
}

int conn_v1_request(struct conn *c, struct msg *req, struct msg *ans,
                    int timeout_ms, struct err *e)
{
    int64_t deadline;
    int rc;

    msg_init(ans, MSG_REPLY);
    if (!req->id[0])
        conn_random_id(req->id);
    if ((rc = v1_send(c, req, e)))
        return rc;
    deadline = mono_ms() + (timeout_ms < 0 ? c->io_ms : timeout_ms);
    for (;;) {
        struct msg in;
        char *raw = NULL;
        size_t rawlen = 0;
        int left = (int)(deadline - mono_ms());
        if (left < 0)
            left = 0;
        rc = v1_recv(c, left, &in, &raw, &rawlen, e);
        if (rc == CONN_TIMEOUT) {
            conn_disconnect(c);
            return err_set(e, ERR_IO, "no answer to %s within %d s",
                           msg_type_name(req->type),
                           (timeout_ms < 0 ? c->io_ms : timeout_ms) / 1000);
        }
        if (rc)
            return rc;
        if (is_answer(in.type) && !strcmp(in.id, req->id)) {
            msg_free(ans);
            *ans = in;
            free(raw);
            return 0;
        }
        if (in.type == MSG_ERROR &&
            in.error.error.code == MSG_E_UNAUTHORIZED) {
            rc = err_set(e, ERR_AUTH, "%s", in.error.error.message);
            msg_free(&in);
            free(raw);
            return rc;
        }
        if (in.type != MSG_EVENT || c->keep_events)
            queue_push(c, raw, rawlen);
        msg_free(&in);
        free(raw);
    }
}

static int code_to_err(int code)
{
    switch (code) {
    case MSG_E_UNAUTHORIZED: return ERR_AUTH;
    case MSG_E_NOT_FOUND: return ERR_NOTFOUND;
    case MSG_E_FORBIDDEN: return ERR_FORBIDDEN;
    case MSG_E_CONFLICT:
    case MSG_E_ALREADY_CLAIMED: return ERR_CONFLICT;
    case MSG_E_RATE_LIMITED: return ERR_RATELIMIT;
    case MSG_E_NOT_READY:
    case MSG_E_INTERNAL: return ERR_INTERNAL;
    case MSG_E_TOO_BIG: return ERR_TOOBIG;
    default: return ERR_INVALID;
    }
}

int conn_v1_call(struct conn *c, struct msg *req, json_t **result,
                 enum msg_code *code, struct err *e)
{
    struct msg ans;
    int rc = conn_v1_request(c, req, &ans, -1, e);

    *result = NULL;
    if (code)
        *code = MSG_E_NONE;
    if (rc) {
        msg_free(&ans);
        return rc;
    }
    if (ans.type != MSG_REPLY) {
        msg_free(&ans);
        return err_set(e, ERR_INVALID, "unexpected answer to %s",
                       msg_type_name(req->type));
    }
    if (ans.reply.ok) {
        *result = json_incref(ans.reply.result);
        if (!*result)
            *result = json_object();
    } else {
        if (code)
            *code = ans.reply.error.code;
        rc = err_set(e, code_to_err(ans.reply.error.code), "%s",
                     ans.reply.error.message[0] ? ans.reply.error.message
                     : msg_code_name(ans.reply.error.code));
    }
    msg_free(&ans);
    return rc;
}

int conn_v1_next(struct conn *c, int timeout_ms, struct msg *out,
                 struct err *e)
{
    while (c->qhead) {
        struct qframe *f = c->qhead;
        struct msg_error me;
        c->qhead = f->next;
        if (!c->qhead)
            c->qtail = NULL;
        int rc = msg_parse_dir(f->text, f->len, MSG_FROM_SERVER, out, &me);
        free(f);
        if (!rc)
            return 0;
        msg_free(out);
    }
    msg_init(out, MSG_NONE);
    return v1_recv(c, timeout_ms, out, NULL, NULL, e);
}

int conn_v1_send(struct conn *c, struct msg *m, struct err *e)
{
    if (msg_is_request(m->type) && !m->id[0])
        conn_random_id(m->id);
    return v1_send(c, m, e);
}

int conn_v1_ack(struct conn *c, int64_t seq, struct err *e)
{
    struct msg m;
    struct msg_error me;
    if (msg_build_ack(&m, seq, &me))
        return err_set(e, ERR_INVALID, "ack: %s", me.message);
    int rc = v1_send(c, &m, e);
    msg_free(&m);
    return rc;
}

int conn_v1_ready(const struct conn *c)
{
    return c->qhead || (c->ssl && (c->in_len > c->in_off ||
                                   SSL_pending(c->ssl) > 0));
}
