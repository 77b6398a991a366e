/*
 * conn — the client end of a connection to hashi-server, shared by the
 * `hashi` CLI and `hashi-gateway`: TLS over one TCP socket, HTTP/1.1
 * requests (JSON or streamed bodies, keep-alive), an RFC 6455 WebSocket,
 * and a hashi.v1 session on top of it (proto/PROTOCOL.md).
 *
 * Everything blocks, with timeouts: a connect may take connect_timeout_ms,
 * and any read or write may stall io_timeout_ms before it fails.  The
 * server's certificate is always verified (the system CAs or opts.cacert)
 * together with its host name or IP address; only opts.insecure, set by an
 * explicitly named flag, turns that off.
 *
 * One struct conn holds at most one live socket, used either for HTTP
 * (one request at a time, kept alive between requests) or, after
 * conn_ws_open(), for one WebSocket.  Not thread-safe: one thread a conn.
 * The process must ignore SIGPIPE (writes to a closed socket).
 *
 * Errors: functions return 0 (or a count) or a negative ERR_* code
 * (proto/util.h) and fill a struct err: ERR_IO for network and TLS
 * failures (refused, timed out, certificate rejected, cut), ERR_INVALID
 * for a peer that breaks HTTP or WebSocket, ERR_AUTH when the server says
 * the token is bad.  Ownership is stated at each function.
 */
#ifndef HASHI_CONN_H
#define HASHI_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "../proto/msg.h"
#include "../proto/util.h"

#define CONN_TIMEOUT 1              /* conn_ws_recv/v1_next: nothing came */

struct conn_opts {
    const char *cacert;             /* PEM CA file; NULL: the system CAs */
    int insecure;                   /* 1: do not verify (--insecure only) */
    int connect_timeout_ms;         /* 0: 10 s */
    int io_timeout_ms;              /* 0: 60 s without progress */
};

struct conn;

/* A connection to url ("https://host[:port][/base]"); does not connect
 * yet.  The strings of opts are copied.  NULL with e set on a bad URL.
 * Free with conn_free (which closes the socket). */
struct conn *conn_new(const char *url, const struct conn_opts *opts,
                      struct err *e);
void conn_free(struct conn *c);
/* Drop the socket (the next request connects again). */
void conn_disconnect(struct conn *c);
/* "https://host:port" as given, without a trailing slash. */
const char *conn_url(const struct conn *c);

/* ---- HTTP/1.1 ----------------------------------------------------------
 * Step by step: conn_http_begin (request line and headers), then exactly
 * content_length bytes by conn_http_write, then conn_http_head (status
 * and headers), conn_http_read until it returns 0, conn_http_end.  Or all
 * at once with conn_http / conn_json. */

struct conn_request {
    const char *method;             /* "GET", "POST", ... */
    const char *path;               /* below the URL's base, with query */
    const char *token;              /* Authorization: Bearer; NULL: none */
    const char *content_type;       /* of the body; NULL: none */
    const char *accept;             /* NULL: none */
    int64_t content_length;         /* -1: no body */
};

struct conn_response {
    int status;
    char content_type[256];
    int64_t content_length;         /* -1: chunked or until close */
    unsigned char *body;            /* conn_http only: malloc'd, NUL-ended */
    size_t len;
};

int conn_http_begin(struct conn *c, const struct conn_request *rq,
                    struct err *e);
int conn_http_write(struct conn *c, const void *buf, size_t n,
                    struct err *e);
int conn_http_head(struct conn *c, struct conn_response *rs, struct err *e);
/* Up to n body bytes; 0 at the end of the body; < 0 on error (ERR_IO,
 * or ERR_INVALID for a body cut short or badly chunked). */
ssize_t conn_http_read(struct conn *c, void *buf, size_t n, struct err *e);
/* Finishes the response (skips what is left of the body, up to 1 MiB)
 * and keeps the connection for the next request if the server allows. */
int conn_http_end(struct conn *c, struct err *e);

/* One request with an in-memory body (body may be NULL when len is 0 and
 * rq->content_length is -1), the response body buffered up to max bytes
 * (ERR_TOOBIG beyond).  rs->body is the caller's: conn_response_free.
 * When a kept-alive socket turns out closed before any byte of the
 * answer came, the request is sent once more on a new socket: the server
 * may have read it, so use this only for requests that are safe to
 * repeat (all of Hashi's REST and DICOMweb requests are). */
int conn_http(struct conn *c, const struct conn_request *rq,
              const void *body, size_t len, size_t max,
              struct conn_response *rs, struct err *e);
void conn_response_free(struct conn_response *rs);

/* A JSON request (body borrowed; NULL: no body) and its JSON answer:
 * *status is the HTTP status and *out (caller's reference, may be NULL if
 * the body was not JSON) the parsed body.  0 whenever an answer came. */
int conn_json(struct conn *c, const char *method, const char *path,
              const char *token, json_t *body, int *status, json_t **out,
              struct err *e);
/* The error of a JSON error answer ({"error":{"code","message"}}) as
 * "message" into e, with code from the HTTP status (401 ERR_AUTH, 403
 * ERR_FORBIDDEN, 404 ERR_NOTFOUND, 409 ERR_CONFLICT, 429 ERR_RATELIMIT,
 * 4xx ERR_INVALID, else ERR_IO).  Returns that code. */
int conn_http_error(int status, json_t *body, struct err *e);

/* ---- WebSocket (RFC 6455) --------------------------------------------- */

enum { CONN_WS_TEXT = 1, CONN_WS_BINARY = 2 };

/* A fresh socket, the upgrade of path offering subprotocol; checks the
 * accept key and that the server chose the subprotocol.  A 401 answer is
 * ERR_AUTH, another refusal ERR_IO with the status in the message. */
int conn_ws_open(struct conn *c, const char *path, const char *subprotocol,
                 struct err *e);
/* One frame of a then b (b may be NULL): text or binary, masked. */
int conn_ws_send(struct conn *c, int opcode, const void *a, size_t alen,
                 const void *b, size_t blen, struct err *e);
/* The next complete message (fragments joined; pings answered, pongs
 * skipped).  Waits up to timeout_ms for it to begin (-1: forever), then
 * CONN_TIMEOUT.  *msg is malloc'd and NUL-terminated (caller frees).  A
 * close from the server is ERR_IO with its code in conn_ws_close_code()
 * and its reason in e. */
int conn_ws_recv(struct conn *c, int timeout_ms, int *opcode,
                 unsigned char **msg, size_t *len, struct err *e);
/* Sends a ping frame (keep-alive / liveness). */
int conn_ws_ping(struct conn *c, struct err *e);
/* Close handshake (waits up to 2 s for the server's close), then drops
 * the socket.  Never fails. */
void conn_ws_close(struct conn *c, int code, const char *reason);
/* The close code the server sent (0: none yet). */
int conn_ws_close_code(const struct conn *c);
/* Milliseconds (monotonic) when the last frame arrived. */
int64_t conn_ws_last_rx_ms(const struct conn *c);
/* Keep-alive, for a client whose wait for a frame timed out: after
 * ping_ms of silence it pings the server (at most once per ping_ms; the
 * answer counts as a frame); after dead_ms without any frame — the
 * server's own pings (every 30 s by default) included — the link is
 * dead: ERR_IO (reconnect).  0 otherwise.  Callers wait at most a few
 * seconds between calls.  The defaults for hashi.v1 clients: */
#define CONN_WS_PING_MS 25000
#define CONN_WS_DEAD_MS 75000
int conn_ws_keepalive(struct conn *c, int ping_ms, int dead_ms,
                      struct err *e);

/* ---- hashi.v1 session ----------------------------------------------------
 * conn_v1_open: WebSocket + hello + welcome.  Requests wait for their
 * answer; events and other server messages that arrive meanwhile are
 * queued (keep_events) or dropped, and conn_v1_next returns them first. */

#define CONN_V1_PATH "/ws"

struct conn_v1_hello {
    const char *token;
    int64_t last_seq;
    const char *client_name;        /* "hashi-cli", "hashi-gateway" */
    const char *client_version;
    int keep_events;                /* queue events seen during requests */
};

/* ERR_AUTH when the token is refused (unauthorized / close 4401). */
int conn_v1_open(struct conn *c, const struct conn_v1_hello *h,
                 struct msg *welcome, struct err *e);
/* Sends req (a request: its id is set to a fresh random one when "") and
 * waits up to timeout_ms (-1: io timeout) for the answer with that id:
 * *ans is a reply, upload.at or upload.done (msg_free it).  0 whenever an
 * answer came, ok or not; < 0 when the link failed (the caller may send
 * the same req again on a new session: the server keeps answers). */
int conn_v1_request(struct conn *c, struct msg *req, struct msg *ans,
                    int timeout_ms, struct err *e);
/* conn_v1_request for a reply: 0 and *result (caller's reference) when
 * ok; a failed reply as a negative ERR_* (unauthorized ERR_AUTH,
 * not_found ERR_NOTFOUND, forbidden ERR_FORBIDDEN, conflict and
 * already_claimed ERR_CONFLICT, rate_limited ERR_RATELIMIT, not_ready and
 * internal ERR_INTERNAL, validation ERR_INVALID) with the server's message
 * in e and its wire code in *code (may be NULL). */
int conn_v1_call(struct conn *c, struct msg *req, json_t **result,
                 enum msg_code *code, struct err *e);
/* Sends m without waiting for anything (pipelined requests: their
 * answers come through conn_v1_next); a request's empty id is set to a
 * fresh random one first. */
int conn_v1_send(struct conn *c, struct msg *m, struct err *e);
/* The next message from the server that is not an answer being waited
 * for: queued ones first.  CONN_TIMEOUT after timeout_ms.  msg_free it. */
int conn_v1_next(struct conn *c, int timeout_ms, struct msg *out,
                 struct err *e);
int conn_v1_ack(struct conn *c, int64_t seq, struct err *e);
/* 1 if a message is already queued or buffered (no waiting needed). */
int conn_v1_ready(const struct conn *c);

/* A fresh random id (128-bit hex, 33 bytes with the NUL). */
void conn_random_id(char out[33]);

#endif
