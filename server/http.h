/*
 * http — the request/response machinery of hashi-server's HTTPS listener,
 * for the modules that serve routes (api.c, dicomweb.c, the cases REST
 * twin).  http.c owns the libwebsockets context, TLS, the route table and
 * the per-connection state; a route handler sees one struct http_req and
 * answers through the http_respond_* helpers.
 *
 * Life of a request (all on the lws thread):
 *   1. Headers parsed: http.c fills struct http_req (method, decoded path
 *      and query, a few headers, remote address), finds the route (404 /
 *      405 JSON otherwise), authenticates when the route requires it (401
 *      JSON otherwise) and calls the route's handler.
 *   2. The handler either responds at once, or says how it wants the body:
 *      http_body_stream() (chunks as they arrive — never buffered whole),
 *      or http_body_buffer() / http_body_json() (buffered, with a cap;
 *      413 beyond it).  A request body nobody asked for is discarded.
 *   3. The response (set by exactly one http_respond_* call) is sent once
 *      the request body has been read to its end, then the connection is
 *      ready for the next request (keep-alive) or closed.
 * Handlers may respond from any of their callbacks; a request that ends
 * without a response gets 500.  After responding, later body chunks are
 * discarded.
 *
 * Every response carries the security headers (nosniff, CSP default-src
 * 'self', Referrer-Policy no-referrer, HSTS) and, unless the handler set
 * its own Cache-Control, "Cache-Control: no-store".
 *
 * Ownership: strings in struct http_req belong to http.c and live until
 * the request ends.  http_respond_json steals its json_t; http_respond_bytes
 * takes its buffer (free()d by http.c); a streamed response's arg is freed
 * with its free function when the request ends, sent or not.  Route state
 * set with http_set_state is freed the same way (also when the connection
 * drops mid-request).
 */
#ifndef HASHI_HTTP_H
#define HASHI_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "auth.h"

struct server;
struct server_config;
struct lws;

enum http_method {
    HTTP_GET = 1 << 0,
    HTTP_POST = 1 << 1,
    HTTP_PUT = 1 << 2,
    HTTP_DELETE = 1 << 3,
    HTTP_PATCH = 1 << 4,
    HTTP_OPTIONS = 1 << 5,
    HTTP_HEAD = 1 << 6,
};

/* How a route is authenticated before its handler runs. */
enum http_auth {
    HTTP_AUTH_NONE = 0,       /* public (login, /healthz) */
    HTTP_AUTH_REQUIRED,       /* bearer token or session cookie, else 401 */
    HTTP_AUTH_OPTIONAL,       /* checked if given; handler decides */
};

#define HTTP_COOKIE_NAME "hashi_session"
#define HTTP_JSON_MAX (1024 * 1024)   /* default cap of a JSON body */
#define HTTP_CHUNK 131072             /* bytes per write of a response */

struct http_param {
    char *name;               /* url-decoded */
    char *value;
};

struct http_req {
    struct server *srv;
    struct lws *wsi;
    int method;               /* enum http_method */
    const char *method_name;  /* "GET", ... */
    char *path;               /* decoded, without the query */
    struct http_param *params;
    size_t nparams;
    /* Request headers; NULL when absent. */
    char *content_type;
    char *accept;
    char *authorization;
    char *cookie;
    char *origin;
    char *host;
    char *if_none_match;
    int64_t content_length;   /* -1 if not given */
    char remote[64];          /* peer address */
    /* Authentication (routes with HTTP_AUTH_REQUIRED, or OPTIONAL when a
     * token came): */
    int authed;
    struct principal who;
    char token[AUTH_TOKEN_HEX + 1];
    int via_cookie;           /* the token came in the session cookie */
};

/* A route handler: runs when the request's headers are in. */
typedef void (*http_handler_fn)(struct http_req *r);

/* Body callbacks.  on_chunk returns 0 to go on; a handler that has
 * responded (e.g. with an error) makes the rest of the body be skipped. */
typedef int (*http_chunk_fn)(struct http_req *r, const unsigned char *data,
                             size_t len);
typedef void (*http_end_fn)(struct http_req *r);
typedef void (*http_buffer_fn)(struct http_req *r, unsigned char *body,
                               size_t len);
typedef void (*http_json_fn)(struct http_req *r, json_t *body);
typedef void (*http_free_fn)(void *p);
/* Fills buf (cap bytes) with the next bytes of a streamed response;
 * returns how many (> 0), or < 0 on error (the connection is dropped: the
 * status line has gone already). */
typedef ssize_t (*http_fill_fn)(void *arg, unsigned char *buf, size_t cap);

/* The first value of query parameter name (case-sensitive), or NULL. */
const char *http_param(const struct http_req *r, const char *name);

/* Route state: freed with free_fn when the request ends or the connection
 * closes.  One per request. */
void http_set_state(struct http_req *r, void *state, http_free_fn free_fn);
void *http_state(const struct http_req *r);

/* How the handler wants the body (call from the handler itself).  With no
 * body at all, on_end / on_done are called at once (len 0). */
void http_body_stream(struct http_req *r, http_chunk_fn on_chunk,
                      http_end_fn on_end);
/* The whole body, up to max bytes (413 beyond it), NUL-terminated (the
 * NUL not counted).  body is http.c's; valid during the call. */
void http_body_buffer(struct http_req *r, size_t max, http_buffer_fn on_done);
/* A JSON body up to HTTP_JSON_MAX: 415 unless Content-Type is JSON, 400
 * if it does not parse or is not an object; on_json gets a borrowed
 * reference. */
void http_body_json(struct http_req *r, http_json_fn on_json);

/* ---- responses (exactly one per request) ----------------------------- */

/* Add a response header ("Set-Cookie", "ETag", ...).  Names are sent
 * lower-case.  0, or ERR_TOOBIG when the header block is full. */
int http_add_header(struct http_req *r, const char *name, const char *value);

/* JSON body (application/json unless content_type given), stealing body. */
void http_respond_json(struct http_req *r, int status, json_t *body);
void http_respond_json_type(struct http_req *r, int status,
                           const char *content_type, json_t *body);
/* {"error": {"code": code, "message": ...}} */
void http_respond_error(struct http_req *r, int status, const char *code,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error from a module: status and code from e->code (ERR_INVALID 400,
 * ERR_AUTH 401, ERR_FORBIDDEN 403, ERR_NOTFOUND 404, ERR_CONFLICT 409,
 * ERR_TOOBIG 413, ERR_UNSUPPORTED 415, ERR_RATELIMIT 429, else 500 with a
 * generic message, the real one logged). */
void http_respond_err(struct http_req *r, const struct err *e);
/* Bytes (taken over, free()d later; may be NULL when len is 0). */
void http_respond_bytes(struct http_req *r, int status,
                        const char *content_type, unsigned char *buf,
                        size_t len);
/* A copy of text. */
void http_respond_text(struct http_req *r, int status,
                       const char *content_type, const char *text);
/* Streamed: exactly length bytes from fill, HTTP_CHUNK per write. */
void http_respond_stream(struct http_req *r, int status,
                         const char *content_type, uint64_t length,
                         http_fill_fn fill, void *arg, http_free_fn free_arg);
/* Has a response been set? */
int http_responded(const struct http_req *r);
/* The handler will respond after the body has ended, later, from a
 * callback on the lws thread (a job's done, jobs.h): the end of the body
 * without a response is then not an error.  If it never responds, the
 * request hangs until the connection closes. */
void http_defer(struct http_req *r);
/* Stop (paused = 1) or resume (0) reading the request body: back-pressure
 * for a streaming handler whose consumer is behind.  A handler that
 * paused resumes before it responds (keep-alive reads the next request
 * on the same connection). */
void http_body_pause(struct http_req *r, int paused);

/* ---- small helpers ---------------------------------------------------- */

/* The one Origin policy, for HTTP and the hashi.v1 upgrade alike: 1 if a
 * request with this Origin header (NULL: none) may act with the user's
 * session cookie.  No Origin (CLI, gateway, scripts) is allowed; "null"
 * (sandboxed frames, file: pages, cross-origin redirects) never is; else
 * the origin must be the server's own as the client addressed it
 * ("https://" + Host), https://localhost:PORT or https://127.0.0.1:PORT
 * (the listen port), or one of the configured --origin values.
 * Applied by http.c to cookie-authenticated requests other than GET, HEAD
 * and OPTIONS (403 otherwise), and by ws.c to every upgrade (403 before
 * the WebSocket opens: a socket is not protected by the same-origin
 * policy, and its hello may rely on the cookie). */
int http_origin_allowed(const struct server_config *c, const char *origin,
                        const char *host);

/* Refuse a WebSocket upgrade before it completes (from the lws callback
 * LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION): an HTTP status with the JSON
 * error body {"error": {"code", "message"}} on wsi.  Returns 1, what the
 * callback returns so that lws then closes the connection. */
int http_refuse_upgrade(struct lws *wsi, int status, const char *code,
                        const char *message);

/* 1 if the peer is on the loopback interface. */
int http_remote_is_loopback(const struct http_req *r);
/* 1 if the Accept header allows media type `type` ("image/jpeg"): the
 * header is absent, or lists the type itself, its major type with a "*"
 * subtype, or the full wildcard. */
int http_accepts(const struct http_req *r, const char *type);
/* The user as a JSON object {login, role, clinic, specialties[]}. */
json_t *http_principal_json(const struct principal *who);
/* "https://<Host>" for absolute URLs in responses (RetrieveURL). */
void http_base_url(const struct http_req *r, char *out, size_t n);

#endif
