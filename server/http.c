/*
 * http — hashi-server's HTTPS listener: the libwebsockets context and its
 * TLS settings, the route table, and the request/response machinery of
 * http.h that api.c, dicomweb.c and the REST twin build on.
 *
 * One lws context, one vhost, one thread (the caller of http_run).  TLS is
 * 1.2 or newer with AEAD ciphers only; ALPN offers http/1.1 alone (h2 in
 * Debian's lws 4.1.6 stalls on large bodies, API-NOTES pitfall 9).  The
 * protocols array is built in one place, protocols_init(): "http" (this
 * file) first, then the hashi.v1 WebSocket protocol of ws.c.
 *
 * Mounts: "/api", "/dicomweb", "/healthz" and "/metrics" are served by the
 * "http" protocol's callback; "/" is the web client's directory
 * (cfg.web_root) when it exists, else the callback too (404 JSON).
 *
 * Per-connection state is struct http_session, lws's per-session data; on
 * HTTP/1.1 keep-alive the same one serves the next request, so it is reset
 * at each LWS_CALLBACK_HTTP, and everything a request owns is freed when
 * it completes or the connection closes.
 *
 * A timer (lws_sul, every SERVER_TICK_MS) and
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED hand work from elsewhere to this
 * thread: studies that arrived over DIMSE (scp_take_arrived ->
 * cases_images_arrived), finished jobs of the worker pool (jobs_reap:
 * STOW-RS parts); the timer also runs the server's one tick (srv->tick,
 * main.c: escalations, acks, session ends, pruning).
 *
 * The loop is libev's (epoll), lws's LWS_SERVER_OPTION_LIBEV on a loop of
 * our own: lws's default poll() hands the kernel every socket at every
 * wake-up (the tick, a ping, a pong), a cost that grows with the sessions
 * held even when they are idle (issue 8: 10,000 of them).  If Debian's
 * evlib plugin cannot be loaded, poll() it is.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ev.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "../proto/log.h"
#include "api.h"
#include "api_cases.h"
#include "dicomweb.h"
#include "gateway.h"
#include "jobs.h"
#include "server.h"
#include "upload.h"
#include "webpush.h"

/* ---- the route table ---------------------------------------------------
 * A route matches its path exactly, or (prefix) also everything below
 * path + "/".  Add a module's routes here, and its mountpoint in
 * mounts_init() if it is outside the mounted trees. */
struct http_route {
    const char *path;
    int prefix;
    int methods;
    enum http_auth auth;
    http_handler_fn fn;
};

static const struct http_route routes[] = {
    { "/healthz", 0, HTTP_GET, HTTP_AUTH_NONE, api_healthz },
    { "/metrics", 0, HTTP_GET, HTTP_AUTH_OPTIONAL, api_metrics },
    { "/api/login", 0, HTTP_POST, HTTP_AUTH_NONE, api_login },
    { "/api/logout", 0, HTTP_POST, HTTP_AUTH_REQUIRED, api_logout },
    { "/api/me", 0, HTTP_GET, HTTP_AUTH_OPTIONAL, api_me },
    { "/api/cases", 1, HTTP_GET | HTTP_POST, HTTP_AUTH_REQUIRED, api_cases },
    { "/api/events", 1, HTTP_GET | HTTP_POST, HTTP_AUTH_REQUIRED,
      api_events },
    { "/dicomweb", 1, HTTP_GET | HTTP_POST, HTTP_AUTH_REQUIRED,
      dicomweb_handle },
    { "/api/studies", 1, HTTP_GET, HTTP_AUTH_REQUIRED, upload_api_studies },
    { "/api/gateways", 0, HTTP_GET, HTTP_AUTH_REQUIRED, gateway_api_list },
    { "/api/push", 1, HTTP_GET | HTTP_POST | HTTP_DELETE, HTTP_AUTH_REQUIRED,
      webpush_api },
};

#define MAX_HEADERS 16          /* extra response headers */
#define MAX_PARAMS 64           /* query parameters kept */
#define MAX_URI 8192

enum body_mode { BODY_DISCARD = 0, BODY_STREAM, BODY_BUFFER };

struct http_session {
    struct http_req req;
    int active;                 /* a request is in progress */
    void *state;
    http_free_fn state_free;
    /* request body */
    int body_mode;
    int body_expected;
    int body_done;
    uint64_t body_received;
    http_chunk_fn on_chunk;
    http_end_fn on_end;
    http_buffer_fn on_buffer;
    http_json_fn on_json;
    size_t buf_max;
    unsigned char *buf;
    size_t buf_len, buf_cap;
    /* response */
    int resp_set;
    int status;
    char *ctype;
    char *hname[MAX_HEADERS];
    char *hvalue[MAX_HEADERS];
    int nhdr;
    int has_cache_control;
    unsigned char *body;
    size_t body_len, body_off;
    http_fill_fn fill;
    void *fill_arg;
    http_free_fn fill_free;
    uint64_t stream_len, stream_sent;
    int headers_sent;
    int deferred;               /* http_defer: responds after the body */
    int close_after;            /* drop the connection after responding */
    double t0;
};

/* A new connection has HEAD_DEADLINE seconds from the end of its TLS
 * handshake to finish its first request head.  lws 4.1.6 gives it the
 * context's timeout_secs (60 s, which also bounds gaps in a request body)
 * and never shortens it while the head trickles in; later heads on a
 * kept-alive connection have lws's own 10 s (timeout_secs_ah_idle). */
#define HEAD_DEADLINE 10

/* One per connection, from its accept (or TLS) to its destruction,
 * found from the wsi through lws's opaque user pointer.  Only entries
 * still waiting for their head (HEAD_TLS, HEAD_DUE) are on the context's
 * list, so neither a lookup nor the timer walks the thousands of idle
 * WebSocket sessions. */
struct head_wait {
    struct lws *wsi;
    enum { HEAD_TLS = 0, HEAD_DUE, HEAD_DONE } state;
    double due;                 /* HEAD_DUE: the deadline */
    struct head_wait *next, **pprev;    /* on ctx->heads while waiting */
};

/* What lws keeps for us: the context user. */
struct http_ctx {
    struct server *srv;
    struct lws_protocols protocols[4];
    struct lws_http_mount mounts[6];
    struct lws_protocol_vhost_options headers[5];
    lws_sorted_usec_list_t tick;
    double drained_at;          /* last scp_take_arrived drain */
    struct head_wait *heads;    /* connections waiting for their head */
    struct ev_loop *loop;       /* lws runs on it; NULL: lws's poll() */
    unsigned char wbuf[LWS_PRE + HTTP_CHUNK];
};

static struct http_session *session_of(struct http_req *r)
{
    /* req is the first member */
    return (struct http_session *)r;
}

/* ---- request state ----------------------------------------------------- */

static void session_end(struct http_session *s)
{
    struct http_req *r = &s->req;

    if (s->state_free && s->state)
        s->state_free(s->state);
    if (s->fill_free && s->fill_arg)
        s->fill_free(s->fill_arg);
    for (size_t i = 0; i < r->nparams; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    free(r->path);
    free(r->content_type);
    free(r->accept);
    free(r->authorization);
    free(r->cookie);
    free(r->origin);
    free(r->host);
    free(r->if_none_match);
    free(s->buf);
    free(s->ctype);
    for (int i = 0; i < s->nhdr; i++) {
        free(s->hname[i]);
        free(s->hvalue[i]);
    }
    free(s->body);
    explicit_bzero(r->token, sizeof(r->token));
    memset(s, 0, sizeof(*s));
}

/* A copy of header h, or NULL when absent (or absurdly long). */
static char *hdr_dup(struct lws *wsi, enum lws_token_indexes h)
{
    int n = lws_hdr_total_length(wsi, h);
    char *v;

    if (n <= 0 || n > MAX_URI)
        return NULL;
    v = malloc((size_t)n + 1);
    if (!v)
        return NULL;
    if (lws_hdr_copy(wsi, v, n + 1, h) < 0) {
        free(v);
        return NULL;
    }
    return v;
}

static const struct {
    enum lws_token_indexes tok;
    int method;
    const char *name;
} methods[] = {
    { WSI_TOKEN_GET_URI, HTTP_GET, "GET" },
    { WSI_TOKEN_POST_URI, HTTP_POST, "POST" },
    { WSI_TOKEN_PUT_URI, HTTP_PUT, "PUT" },
    { WSI_TOKEN_PATCH_URI, HTTP_PATCH, "PATCH" },
    { WSI_TOKEN_DELETE_URI, HTTP_DELETE, "DELETE" },
    { WSI_TOKEN_OPTIONS_URI, HTTP_OPTIONS, "OPTIONS" },
    { WSI_TOKEN_HEAD_URI, HTTP_HEAD, "HEAD" },
};

/* lws has already url-decoded each "name=value" fragment. */
static int parse_params(struct lws *wsi, struct http_req *r)
{
    char frag[MAX_URI];

    for (int i = 0; i < MAX_PARAMS; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag),
                                      WSI_TOKEN_HTTP_URI_ARGS, i);
        char *eq;
        struct http_param *np;

        if (n < 0)
            break;
        if (n == 0)
            continue;
        np = realloc(r->params, (r->nparams + 1) * sizeof(*np));
        if (!np)
            return -1;
        r->params = np;
        eq = strchr(frag, '=');
        if (eq)
            *eq = '\0';
        np[r->nparams].name = strdup(frag);
        np[r->nparams].value = strdup(eq ? eq + 1 : "");
        r->nparams++;
        if (!np[r->nparams - 1].name || !np[r->nparams - 1].value)
            return -1;
    }
    return 0;
}

static int fill_request(struct lws *wsi, struct http_session *s,
                        struct server *srv)
{
    struct http_req *r = &s->req;
    char *cl;

    r->srv = srv;
    r->wsi = wsi;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (lws_hdr_total_length(wsi, methods[i].tok) > 0) {
            r->method = methods[i].method;
            r->method_name = methods[i].name;
            r->path = hdr_dup(wsi, methods[i].tok);
            /* A %00 in the URI decodes to a NUL: refuse, rather than
             * act on the path cut short there. */
            if (r->path && (int)strlen(r->path) !=
                           lws_hdr_total_length(wsi, methods[i].tok)) {
                free(r->path);
                r->path = NULL;
            }
            break;
        }
    }
    if (!r->method || !r->path)
        return -1;
    r->content_type = hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
    r->accept = hdr_dup(wsi, WSI_TOKEN_HTTP_ACCEPT);
    r->authorization = hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    r->cookie = hdr_dup(wsi, WSI_TOKEN_HTTP_COOKIE);
    r->origin = hdr_dup(wsi, WSI_TOKEN_ORIGIN);
    r->host = hdr_dup(wsi, WSI_TOKEN_HOST);
    r->if_none_match = hdr_dup(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH);
    cl = hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    r->content_length = -1;
    if (cl) {
        char *end;
        errno = 0;
        long long v = strtoll(cl, &end, 10);
        if (!errno && end != cl && v >= 0)
            r->content_length = v;
        free(cl);
    }
    lws_get_peer_simple(wsi, r->remote, sizeof(r->remote));
    if (!r->remote[0])
        strlcpy_h(r->remote, "?", sizeof(r->remote));
    return parse_params(wsi, r);
}

/* ---- public request helpers ------------------------------------------- */

const char *http_param(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (!strcmp(r->params[i].name, name))
            return r->params[i].value;
    return NULL;
}

void http_set_state(struct http_req *r, void *state, http_free_fn free_fn)
{
    struct http_session *s = session_of(r);

    if (s->state_free && s->state)
        s->state_free(s->state);
    s->state = state;
    s->state_free = free_fn;
}

void *http_state(const struct http_req *r)
{
    return ((const struct http_session *)r)->state;
}

void http_body_stream(struct http_req *r, http_chunk_fn on_chunk,
                      http_end_fn on_end)
{
    struct http_session *s = session_of(r);

    s->body_mode = BODY_STREAM;
    s->on_chunk = on_chunk;
    s->on_end = on_end;
}

void http_body_buffer(struct http_req *r, size_t max, http_buffer_fn on_done)
{
    struct http_session *s = session_of(r);

    if (r->content_length > 0 && (uint64_t)r->content_length > max) {
        http_respond_error(r, 413, "too_big",
                           "request body over %zu bytes", max);
        return;
    }
    s->body_mode = BODY_BUFFER;
    s->buf_max = max;
    s->on_buffer = on_done;
}

static int ctype_is_json(const char *ct)
{
    size_t n;

    if (!ct)
        return 0;
    n = strcspn(ct, "; \t");
    if (n == 16 && !strncasecmp(ct, "application/json", 16))
        return 1;
    return n > 5 && !strncasecmp(ct + n - 5, "+json", 5);
}

static void json_buffered(struct http_req *r, unsigned char *body,
                          size_t len)
{
    struct http_session *s = session_of(r);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
                           &jerr);

    if (!j) {
        http_respond_error(r, 400, "invalid", "malformed JSON: %s "
                           "(line %d, column %d)", jerr.text, jerr.line,
                           jerr.column);
        return;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_respond_error(r, 400, "invalid", "expected a JSON object");
        return;
    }
    s->on_json(r, j);
    json_decref(j);
}

void http_body_json(struct http_req *r, http_json_fn on_json)
{
    struct http_session *s = session_of(r);

    if (!ctype_is_json(r->content_type)) {
        http_respond_error(r, 415, "unsupported_media_type",
                           "Content-Type must be application/json");
        return;
    }
    s->on_json = on_json;
    http_body_buffer(r, HTTP_JSON_MAX, json_buffered);
}

/* ---- responses ---------------------------------------------------------- */

int http_responded(const struct http_req *r)
{
    return ((const struct http_session *)r)->resp_set;
}

int http_add_header(struct http_req *r, const char *name, const char *value)
{
    struct http_session *s = session_of(r);
    size_t n = strlen(name);
    char *lname;

    if (s->nhdr == MAX_HEADERS)
        return ERR_TOOBIG;
    lname = malloc(n + 2);
    if (!lname)
        return ERR_INTERNAL;
    for (size_t i = 0; i < n; i++)
        lname[i] = (char)tolower((unsigned char)name[i]);
    lname[n] = ':';
    lname[n + 1] = '\0';
    s->hname[s->nhdr] = lname;
    s->hvalue[s->nhdr] = strdup(value);
    if (!s->hvalue[s->nhdr]) {
        free(lname);
        return ERR_INTERNAL;
    }
    s->nhdr++;
    if (!strcasecmp(name, "cache-control"))
        s->has_cache_control = 1;
    return 0;
}

/* Start a response; 0 if this is the first one. */
static int respond_begin(struct http_session *s, int status,
                         const char *content_type)
{
    if (s->resp_set) {
        log_warn("http: second response (%d) to %s %s ignored", status,
                 s->req.method_name, s->req.path);
        return -1;
    }
    s->resp_set = 1;
    s->status = status;
    s->ctype = strdup(content_type ? content_type : "application/json");
    return 0;
}

/* Ask for WRITEABLE once both the response and the whole body are in. */
static void maybe_send(struct http_session *s)
{
    if (s->resp_set && s->body_done && s->req.wsi)
        lws_callback_on_writable(s->req.wsi);
}

void http_respond_bytes(struct http_req *r, int status,
                        const char *content_type, unsigned char *buf,
                        size_t len)
{
    struct http_session *s = session_of(r);

    if (respond_begin(s, status, content_type) < 0) {
        free(buf);
        return;
    }
    s->body = buf;
    s->body_len = buf ? len : 0;
    maybe_send(s);
}

void http_respond_text(struct http_req *r, int status,
                       const char *content_type, const char *text)
{
    size_t n = strlen(text);
    unsigned char *b = malloc(n + 1);

    if (!b) {
        http_respond_bytes(r, 500, "text/plain", NULL, 0);
        return;
    }
    memcpy(b, text, n + 1);
    http_respond_bytes(r, status, content_type, b, n);
}

/* JSON text with <, > and & as \u escapes: they can occur only inside
 * strings, and so the body stays inert even if something sniffs it as
 * HTML (a PatientName "<script>" comes back as "\u003cscript\u003e"). */
static unsigned char *json_text(json_t *j, size_t *len)
{
    char *t = json_dumps(j, JSON_COMPACT);
    size_t n = 0, extra = 0;
    unsigned char *out, *o;

    if (!t)
        return NULL;
    for (const char *p = t; *p; p++, n++)
        if (*p == '<' || *p == '>' || *p == '&')
            extra += 5;
    out = malloc(n + extra + 2);
    if (!out) {
        free(t);
        return NULL;
    }
    o = out;
    for (const char *p = t; *p; p++) {
        if (*p == '<' || *p == '>' || *p == '&') {
            o += sprintf((char *)o, "\\u%04x", (unsigned)*p);
        } else {
            *o++ = (unsigned char)*p;
        }
    }
    *o++ = '\n';
    *len = (size_t)(o - out);
    free(t);
    return out;
}

void http_respond_json_type(struct http_req *r, int status,
                            const char *content_type, json_t *body)
{
    size_t len = 0;
    unsigned char *b = body ? json_text(body, &len) : NULL;

    json_decref(body);
    if (!b) {
        http_respond_bytes(r, 500, "application/json",
                           (unsigned char *)strdup("{}"), 2);
        return;
    }
    http_respond_bytes(r, status, content_type, b, len);
}

void http_respond_json(struct http_req *r, int status, json_t *body)
{
    http_respond_json_type(r, status, "application/json", body);
}

void http_respond_error(struct http_req *r, int status, const char *code,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_respond_json(r, status,
                      json_pack("{s:{s:s,s:s}}", "error", "code", code,
                                "message", msg));
}

void http_respond_err(struct http_req *r, const struct err *e)
{
    int code = e ? e->code : ERR_INTERNAL;
    const char *msg = e && e->msg[0] ? e->msg : err_name(code);

    switch (code) {
    case ERR_INVALID:
        http_respond_error(r, 400, "invalid", "%s", msg);
        break;
    case ERR_AUTH:
        http_respond_error(r, 401, "unauthorized", "%s", msg);
        break;
    case ERR_FORBIDDEN:
        http_respond_error(r, 403, "forbidden", "%s", msg);
        break;
    case ERR_NOTFOUND:
        http_respond_error(r, 404, "not_found", "%s", msg);
        break;
    case ERR_CONFLICT:
        http_respond_error(r, 409, "conflict", "%s", msg);
        break;
    case ERR_TOOBIG:
        http_respond_error(r, 413, "too_big", "%s", msg);
        break;
    case ERR_UNSUPPORTED:
        http_respond_error(r, 415, "unsupported", "%s", msg);
        break;
    case ERR_RATELIMIT:
        http_respond_error(r, 429, "rate_limited", "%s", msg);
        break;
    default:
        log_error("http: %s %s: %s (%s)", r->method_name, r->path, msg,
                  err_name(code));
        http_respond_error(r, 500, "internal",
                           "internal error; see the server log");
    }
}

void http_respond_stream(struct http_req *r, int status,
                         const char *content_type, uint64_t length,
                         http_fill_fn fill, void *arg, http_free_fn free_arg)
{
    struct http_session *s = session_of(r);

    if (respond_begin(s, status, content_type) < 0) {
        if (free_arg && arg)
            free_arg(arg);
        return;
    }
    s->fill = fill;
    s->fill_arg = arg;
    s->fill_free = free_arg;
    s->stream_len = length;
    maybe_send(s);
}

void http_defer(struct http_req *r)
{
    session_of(r)->deferred = 1;
}

void http_body_pause(struct http_req *r, int paused)
{
    if (r->wsi)
        lws_rx_flow_control(r->wsi, paused ? 0 : 1);
}

/* ---- small helpers ------------------------------------------------------ */

int http_remote_is_loopback(const struct http_req *r)
{
    const char *a = r->remote;

    if (!strncmp(a, "::ffff:", 7))
        a += 7;
    return !strncmp(a, "127.", 4) || !strcmp(a, "::1");
}

int http_accepts(const struct http_req *r, const char *type)
{
    const char *p = r->accept;
    size_t tl = strlen(type);
    const char *slash = strchr(type, '/');
    size_t major = slash ? (size_t)(slash - type) : tl;

    if (!p || !*p)
        return 1;
    while (*p) {
        size_t n;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        n = strcspn(p, ",;");
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if ((n == 3 && !strncmp(p, "*/*", 3)) ||
            (n == tl && !strncasecmp(p, type, tl)) ||
            (n == major + 2 && !strncasecmp(p, type, major + 1) &&
             p[major + 1] == '*'))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

json_t *http_principal_json(const struct principal *who)
{
    json_t *spec = json_array();
    const char *p = who->specialties;

    while (p && *p) {
        size_t n = strcspn(p, ",");
        if (n)
            json_array_append_new(spec, json_stringn(p, n));
        p += n;
        if (*p == ',')
            p++;
    }
    return json_pack("{s:s,s:s,s:s,s:I,s:o}", "login", who->login,
                     "role", who->role, "clinic", who->clinic,
                     "clinic_id", (json_int_t)who->clinic_id,
                     "specialties", spec);
}

void http_base_url(const struct http_req *r, char *out, size_t n)
{
    const struct server_config *c = &r->srv->cfg;
    int ok = r->host && *r->host;

    /* A Host header is echoed only when it looks like a host[:port]. */
    for (const char *p = r->host; ok && *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p))
            ok = 0;
    if (ok)
        snprintf(out, n, "https://%s", r->host);
    else
        snprintf(out, n, "https://%s:%d", c->listen_host, c->listen_port);
}

/* ---- authentication ----------------------------------------------------- */

/* The token of the request: "Authorization: Bearer X", else the session
 * cookie.  0 if one was found. */
static int find_token(struct http_req *r)
{
    const char *a = r->authorization, *c = r->cookie;
    size_t n;

    if (a) {
        while (*a == ' ')
            a++;
        if (!strncasecmp(a, "Bearer ", 7)) {
            a += 7;
            while (*a == ' ')
                a++;
            n = strcspn(a, " \t");
            if (n == 0 || n > AUTH_TOKEN_HEX)
                return -1;
            memcpy(r->token, a, n);
            r->token[n] = '\0';
            return 0;
        }
    }
    while (c && *c) {
        while (*c == ' ' || *c == ';')
            c++;
        n = strlen(HTTP_COOKIE_NAME);
        if (!strncmp(c, HTTP_COOKIE_NAME, n) && c[n] == '=') {
            c += n + 1;
            n = strcspn(c, "; ");
            if (n == 0 || n > AUTH_TOKEN_HEX)
                return -1;
            memcpy(r->token, c, n);
            r->token[n] = '\0';
            r->via_cookie = 1;
            return 0;
        }
        c += strcspn(c, ";");
    }
    return -1;
}

/* Is origin one of the comma-separated list's entries? */
static int origin_listed(const char *list, const char *origin)
{
    size_t olen = strlen(origin);

    while (list && *list) {
        size_t n, k;

        while (*list == ',' || *list == ' ')
            list++;
        n = strcspn(list, ",");
        k = n;
        while (k && list[k - 1] == ' ')
            k--;
        if (k && k == olen && !strncasecmp(list, origin, k))
            return 1;
        list += n;
    }
    return 0;
}

int http_origin_allowed(const struct server_config *c, const char *origin,
                        const char *host)
{
    char self[320];

    if (!origin)
        return 1;
    if (host && *host) {
        snprintf(self, sizeof(self), "https://%s", host);
        if (!strcasecmp(origin, self))
            return 1;
    }
    snprintf(self, sizeof(self), "https://localhost:%d", c->listen_port);
    if (!strcasecmp(origin, self))
        return 1;
    snprintf(self, sizeof(self), "https://127.0.0.1:%d", c->listen_port);
    if (!strcasecmp(origin, self))
        return 1;
    return origin_listed(c->origins, origin);
}

int http_refuse_upgrade(struct lws *wsi, int status, const char *code,
                        const char *message)
{
    unsigned char buf[LWS_PRE + 2048];
    unsigned char *start = buf + LWS_PRE, *p = start;
    unsigned char *end = buf + sizeof(buf) - 1;
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code,
                          "message", message);
    size_t len = 0;
    unsigned char *body = j ? json_text(j, &len) : NULL;

    json_decref(j);
    if (body && len < 1024 &&
        !lws_add_http_common_headers(wsi, (unsigned)status,
                                     "application/json", len, &p, end) &&
        !lws_add_http_header_by_name(wsi, (unsigned char *)"cache-control:",
                                     (unsigned char *)"no-store", 8, &p,
                                     end) &&
        !lws_finalize_http_header(wsi, &p, end)) {
        memcpy(p, body, len);
        p += len;
        lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP);
    }
    free(body);
    return 1;
}

/* 0 authenticated; otherwise responded (401 / 403 / 500). */
static int authenticate(struct http_req *r, int optional)
{
    struct err e = { 0 };
    int rc;

    if (find_token(r) < 0) {
        if (optional)
            return 0;
        http_add_header(r, "WWW-Authenticate", "Bearer");
        http_respond_error(r, 401, "unauthorized",
                           "a session token is required (Authorization: "
                           "Bearer, or the session cookie)");
        return -1;
    }
    rc = auth_token_check(r->srv->store, r->token, &r->who, &e);
    /* An ended session's cookie is no credential at all (a bearer token
     * that fails is still refused: its sender meant it). */
    if ((rc == ERR_AUTH || rc == ERR_NOTFOUND) && optional && r->via_cookie)
        return 0;
    if (rc == ERR_AUTH || rc == ERR_NOTFOUND) {
        http_add_header(r, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(r, 401, "unauthorized",
                           "invalid or expired session token");
        return -1;
    }
    if (rc < 0) {
        http_respond_err(r, &e);
        return -1;
    }
    if (r->via_cookie &&
        !(r->method & (HTTP_GET | HTTP_HEAD | HTTP_OPTIONS)) &&
        !http_origin_allowed(&r->srv->cfg, r->origin, r->host)) {
        http_respond_error(r, 403, "forbidden",
                           "cross-origin request refused");
        return -1;
    }
    r->authed = 1;
    return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

static int route_matches(const struct http_route *rt, const char *path)
{
    size_t n = strlen(rt->path);

    if (!strncmp(path, rt->path, n) &&
        (path[n] == '\0' || (rt->prefix && path[n] == '/')))
        return 1;
    return 0;
}

/*
 * CORS (Fetch standard) for the DICOMweb API, so that a viewer served
 * from a configured --origin (OHIF) can call it with a bearer token.  An
 * Origin that http_origin_allowed accepts gets Access-Control-Allow-Origin
 * naming it exactly, on every answer (errors too, so the viewer can read
 * a 401); a preflight (OPTIONS with Access-Control-Request-Method) is
 * answered 204 here, before authentication, as browsers send it without
 * credentials.  Any other Origin gets no CORS header at all, so the
 * browser withholds the answer.  Access-Control-Allow-Credentials is never
 * sent: the session cookie stays a same-origin credential.
 */
#define CORS_PREFIX "/dicomweb"
#define CORS_METHODS "GET, POST, OPTIONS"
#define CORS_HEADERS "Authorization, Accept, Content-Type, Cache-Control"
#define CORS_EXPOSE "Content-Type, Content-Length, ETag, Location, " \
    "Warning, Retry-After"
#define CORS_MAX_AGE "600"

/* 1 if r was answered (a preflight). */
static int cors(struct http_req *r)
{
    size_t n = strlen(CORS_PREFIX);
    int preflight;

    if (strncmp(r->path, CORS_PREFIX, n) ||
        (r->path[n] && r->path[n] != '/') || !r->origin ||
        !http_origin_allowed(&r->srv->cfg, r->origin, r->host))
        return 0;
    http_add_header(r, "Access-Control-Allow-Origin", r->origin);
    http_add_header(r, "Vary", "Origin");
    preflight = r->method == HTTP_OPTIONS && r->wsi &&
                lws_hdr_custom_length(r->wsi,
                                      "access-control-request-method:",
                                      30) > 0;
    if (!preflight) {
        http_add_header(r, "Access-Control-Expose-Headers", CORS_EXPOSE);
        return 0;
    }
    http_add_header(r, "Access-Control-Allow-Methods", CORS_METHODS);
    http_add_header(r, "Access-Control-Allow-Headers", CORS_HEADERS);
    http_add_header(r, "Access-Control-Max-Age", CORS_MAX_AGE);
    http_respond_bytes(r, 204, "text/plain", NULL, 0);
    return 1;
}

static void dispatch(struct http_req *r)
{
    const struct http_route *hit = NULL;
    int allowed = 0;

    if (cors(r))
        return;

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!route_matches(&routes[i], r->path))
            continue;
        allowed |= routes[i].methods;
        if (routes[i].methods & r->method) {
            hit = &routes[i];
            break;
        }
    }
    if (!hit) {
        if (allowed) {
            char allow[64] = "";
            for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
                if (allowed & methods[i].method) {
                    if (allow[0])
                        strcat(allow, ", ");
                    strcat(allow, methods[i].name);
                }
            http_add_header(r, "Allow", allow);
            http_respond_error(r, 405, "method_not_allowed",
                               "%s is not allowed on %s", r->method_name,
                               r->path);
        } else {
            http_respond_error(r, 404, "not_found", "no such resource");
        }
        return;
    }
    if (hit->auth != HTTP_AUTH_NONE &&
        authenticate(r, hit->auth == HTTP_AUTH_OPTIONAL) < 0)
        return;
    hit->fn(r);
}

/* The request body is complete (or there is none): let the handler
 * finish, then send. */
static void body_finished(struct http_session *s)
{
    struct http_req *r = &s->req;

    s->body_done = 1;
    if (!s->resp_set) {
        if (s->body_mode == BODY_STREAM && s->on_end) {
            s->on_end(r);
        } else if (s->body_mode == BODY_BUFFER && s->on_buffer) {
            if (!s->buf) {
                s->buf = malloc(1);
                s->buf_cap = s->buf ? 1 : 0;
            }
            if (s->buf) {
                s->buf[s->buf_len] = '\0';
                s->on_buffer(r, s->buf, s->buf_len);
            }
        }
    }
    if (!s->resp_set && !s->deferred) {
        log_error("http: %s %s ended without a response", r->method_name,
                  r->path);
        http_respond_error(r, 500, "internal", "no response");
    }
    maybe_send(s);
}

static void body_chunk(struct http_session *s, const unsigned char *in,
                       size_t len)
{
    struct http_req *r = &s->req;

    s->body_received += len;
    if (s->resp_set || !len)
        return;
    if (s->body_mode == BODY_STREAM && s->on_chunk) {
        if (s->on_chunk(r, in, len) < 0 && !s->resp_set)
            http_respond_error(r, 500, "internal",
                               "failed to take the request body");
    } else if (s->body_mode == BODY_BUFFER) {
        if (s->buf_len + len > s->buf_max) {
            http_respond_error(r, 413, "too_big",
                               "request body over %zu bytes", s->buf_max);
            return;
        }
        if (s->buf_len + len + 1 > s->buf_cap) {
            size_t cap = s->buf_cap ? s->buf_cap : 4096;
            unsigned char *nb;
            while (cap < s->buf_len + len + 1)
                cap *= 2;
            nb = realloc(s->buf, cap);
            if (!nb) {
                http_respond_error(r, 500, "internal", "out of memory");
                return;
            }
            s->buf = nb;
            s->buf_cap = cap;
        }
        memcpy(s->buf + s->buf_len, in, len);
        s->buf_len += len;
    }
}

static int on_http(struct lws *wsi, struct http_session *s,
                   struct server *srv)
{
    struct http_req *r = &s->req;
    char te[64];

    session_end(s);
    s->active = 1;
    s->t0 = now_mono();
    atomic_fetch_add(&srv->metrics.http_requests, 1);
    if (fill_request(wsi, s, srv) < 0) {
        r->srv = srv;
        r->wsi = wsi;
        if (!r->method_name)
            r->method_name = "?";
        if (!r->path)
            r->path = strdup("?");
        http_respond_error(r, 400, "invalid", "malformed request");
    }
    te[0] = '\0';
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        lws_hdr_copy(wsi, te, sizeof(te), WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    if (r->content_length > 0)
        s->body_expected = 1;
    if (!s->resp_set && te[0] && strcasecmp(te, "identity")) {
        /* lws 4.1.6 does not de-chunk request bodies; say so clearly
         * rather than reading chunk framing as data. */
        s->close_after = 1;
        s->body_expected = 0;
        http_add_header(r, "Connection", "close");
        http_respond_error(r, 411, "length_required",
                           "send a Content-Length (chunked request bodies "
                           "are not supported)");
    }
    if (!s->resp_set)
        dispatch(r);
    if (!s->body_expected)
        body_finished(s);
    return 0;
}

/* ---- writing the response ----------------------------------------------- */

static int finish(struct lws *wsi, struct http_session *s)
{
    struct http_req *r = &s->req;
    int close;

    log_debug("http: %s %s %s -> %d (%.1f ms)", r->remote, r->method_name,
              r->path, s->status, (now_mono() - s->t0) * 1000.0);
    close = s->close_after;
    session_end(s);
    if (close || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int write_headers(struct lws *wsi, struct http_session *s)
{
    unsigned char buf[LWS_PRE + 8192];
    unsigned char *start = buf + LWS_PRE, *p = start;
    unsigned char *end = buf + sizeof(buf) - 1;
    uint64_t len = s->fill ? s->stream_len : s->body_len;

    if (lws_add_http_common_headers(wsi, (unsigned)s->status, s->ctype,
                                    (lws_filepos_t)len, &p, end))
        return -1;
    for (int i = 0; i < s->nhdr; i++)
        if (lws_add_http_header_by_name(wsi, (unsigned char *)s->hname[i],
                                        (unsigned char *)s->hvalue[i],
                                        (int)strlen(s->hvalue[i]), &p, end))
            return -1;
    if (!s->has_cache_control &&
        lws_add_http_header_by_name(wsi, (unsigned char *)"cache-control:",
                                    (unsigned char *)"no-store", 8, &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    s->headers_sent = 1;
    return 0;
}

static int on_writeable(struct lws *wsi, struct http_session *s,
                        struct http_ctx *ctx)
{
    unsigned char *buf = ctx->wbuf + LWS_PRE;
    size_t n;
    int last;

    if (!s->active || !s->resp_set || !s->body_done)
        return 0;
    if (!s->headers_sent) {
        if (write_headers(wsi, s) < 0)
            return -1;
        if ((s->fill ? s->stream_len : s->body_len) == 0)
            return finish(wsi, s);
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (s->fill) {
        uint64_t left = s->stream_len - s->stream_sent;
        ssize_t got;

        n = left < HTTP_CHUNK ? (size_t)left : HTTP_CHUNK;
        got = s->fill(s->fill_arg, buf, n);
        if (got <= 0 || (size_t)got > n) {
            log_error("http: %s %s: response stream failed after %llu of "
                      "%llu bytes", s->req.method_name, s->req.path,
                      (unsigned long long)s->stream_sent,
                      (unsigned long long)s->stream_len);
            return -1;
        }
        n = (size_t)got;
        s->stream_sent += n;
        last = s->stream_sent == s->stream_len;
    } else {
        n = s->body_len - s->body_off;
        if (n > HTTP_CHUNK)
            n = HTTP_CHUNK;
        memcpy(buf, s->body + s->body_off, n);
        s->body_off += n;
        last = s->body_off == s->body_len;
    }
    if (lws_write(wsi, buf, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP)
        != (int)n)
        return -1;
    if (last)
        return finish(wsi, s);
    lws_callback_on_writable(wsi);
    return 0;
}

/* ---- the deadline of a connection's first request head ----------------- */

static void head_unlink(struct head_wait *w)
{
    if (!w->pprev)
        return;
    *w->pprev = w->next;
    if (w->next)
        w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
}

/* The connection's entry, made if new (NULL: out of memory, and then
 * only lws's 60 s apply). */
static struct head_wait *head_of(struct http_ctx *ctx, struct lws *wsi)
{
    struct head_wait *w = lws_get_opaque_user_data(wsi);

    if (!w && (w = calloc(1, sizeof(*w)))) {
        w->wsi = wsi;
        w->next = ctx->heads;
        if (w->next)
            w->next->pprev = &w->next;
        w->pprev = &ctx->heads;
        ctx->heads = w;
        lws_set_opaque_user_data(wsi, w);
    }
    return w;
}

/* TLS is up (this can come before or after the accept callback): the
 * clock for the head starts.  OpenSSL says "handshake done" again for
 * later TLS 1.3 messages; only the first counts. */
static void head_clock(struct http_ctx *ctx, struct lws *wsi)
{
    struct head_wait *w = head_of(ctx, wsi);

    if (w && w->state == HEAD_TLS) {
        w->state = HEAD_DUE;
        w->due = now_mono() + HEAD_DEADLINE;
    }
}

/* The head is complete: no deadline any more.  The entry stays until the
 * wsi is destroyed, so that a later "handshake done" finds it. */
static void head_done(struct http_ctx *ctx, struct lws *wsi)
{
    struct head_wait *w = head_of(ctx, wsi);

    if (w) {
        w->state = HEAD_DONE;
        head_unlink(w);
    }
}

static void head_forget(struct lws *wsi)
{
    struct head_wait *w = lws_get_opaque_user_data(wsi);

    if (w) {
        head_unlink(w);
        lws_set_opaque_user_data(wsi, NULL);
        free(w);
    }
}

/* From the timer: close what is past its deadline. */
static void heads_expire(struct http_ctx *ctx)
{
    double now = now_mono();

    for (struct head_wait *w = ctx->heads, *nx; w; w = nx) {
        char peer[64] = "";

        nx = w->next;
        if (w->state != HEAD_DUE || now < w->due)
            continue;
        w->state = HEAD_DONE;
        head_unlink(w);
        lws_get_peer_simple(w->wsi, peer, sizeof(peer));
        log_info("http: %s sent no complete request head within %d s "
                 "of TLS: closed", peer[0] ? peer : "?", HEAD_DEADLINE);
        lws_set_timeout(w->wsi, PENDING_TIMEOUT_HOLDING_AH,
                        LWS_TO_KILL_ASYNC);
    }
}

/* ---- work handed over from other threads and timers -------------------- */

static void drain_arrivals(struct http_ctx *ctx)
{
    struct server *srv = ctx->srv;
    char uids[32][65];
    int n;

    ctx->drained_at = now_mono();
    while ((n = scp_take_arrived(srv, uids, 32)) > 0) {
        for (int i = 0; i < n; i++)
            ws_images_arrived(srv, uids[i]);    /* throttled per study */
        if (n < 32)
            break;
    }
}

/* The clock of the server's one tick (srv->tick, main.c), plus this
 * file's own hand-overs in case a wake-up was missed. */
static void tick(lws_sorted_usec_list_t *sul)
{
    struct http_ctx *ctx = lws_container_of(sul, struct http_ctx, tick);
    struct server *srv = ctx->srv;

    drain_arrivals(ctx);
    heads_expire(ctx);
    jobs_reap(srv->jobs);       /* belt and braces: the wake-up does it */
    if (srv->tick)
        srv->tick(srv);
    lws_sul_schedule(srv->lws, 0, &ctx->tick, tick,
                     SERVER_TICK_MS * LWS_US_PER_MS);
}

/* ---- the lws callback --------------------------------------------------- */

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    struct lws_context *lc = lws_get_context(wsi);
    struct http_ctx *ctx = lc ? lws_context_user(lc) : NULL;
    struct http_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        /* user is the vhost's SSL_CTX: belt and braces for TLS >= 1.2. */
        if (user && !SSL_CTX_set_min_proto_version((SSL_CTX *)user,
                                                   TLS1_2_VERSION))
            return 1;
        return 0;
    case LWS_CALLBACK_HTTP:
        if (!s || !ctx)
            return -1;
        return on_http(wsi, s, ctx->srv);
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (ctx)
            head_of(ctx, wsi);
        break;
    case LWS_CALLBACK_SSL_INFO:
        if (ctx && in &&
            (((struct lws_ssl_info *)in)->where & SSL_CB_HANDSHAKE_DONE))
            head_clock(ctx, wsi);
        return 0;
    case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (ctx)
            head_done(ctx, wsi);
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        /* Every wsi's destruction comes to protocols[0], this one, with
         * the user of whichever protocol it ended in: not ours to read. */
        if (ctx)
            head_forget(wsi);
        break;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* lws binds an upgrade that names no subprotocol (or names
         * "http") to this protocol: PROTOCOL.md 1 says refuse it. */
        log_info("http: WebSocket upgrade without the hashi.v1 "
                 "subprotocol refused");
        return http_refuse_upgrade(wsi, 400, "subprotocol_required",
                                   "offer the WebSocket subprotocol "
                                   "hashi.v1 (Sec-WebSocket-Protocol)");
    case LWS_CALLBACK_HTTP_BODY:
        if (s && s->active && !s->body_done)
            body_chunk(s, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (s && s->active && !s->body_done)
            body_finished(s);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!s || !ctx)
            return 0;
        return on_writeable(wsi, s, ctx);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (s)
            session_end(s);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Finished jobs (jobs.h: STOW-RS parts stored by the workers)
         * get their done callbacks here, on this thread. */
        if (ctx)
            jobs_reap(ctx->srv->jobs);
        /* The SCP wakes us per arrival; a study arriving slice by slice
         * is announced at most twice a second (the timer takes the
         * rest). */
        if (ctx && now_mono() - ctx->drained_at >= 0.5)
            drain_arrivals(ctx);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- context ------------------------------------------------------------ */

static void lws_log(int level, const char *line)
{
    char buf[512];
    size_t n = strlcpy_h(buf, line, sizeof(buf));

    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (level & LLL_ERR)
        log_warn("lws: %s", buf);
    else
        log_debug("lws: %s", buf);
}

/* The protocols lws knows, in one place: "http" must stay first (it
 * serves every plain HTTP transaction); the WebSocket protocol(s) follow;
 * a zeroed entry ends the list. */
static void protocols_init(struct http_ctx *ctx)
{
    int n = 0;

    ctx->protocols[n].name = "http";
    ctx->protocols[n].callback = callback_http;
    ctx->protocols[n].per_session_data_size = sizeof(struct http_session);
    ctx->protocols[n].rx_buffer_size = 0;
    n++;
    if (ws_protocol(ctx->srv))
        ctx->protocols[n++] = *ws_protocol(ctx->srv);
    memset(&ctx->protocols[n], 0, sizeof(ctx->protocols[n]));
}

static int dir_exists(const char *path)
{
    struct stat st;

    return path && *path && !stat(path, &st) && S_ISDIR(st.st_mode);
}

static void mounts_init(struct http_ctx *ctx, const char *web_root)
{
    static const char *const dyn[] = { "/api", "/dicomweb", "/healthz",
                                       "/metrics" };
    struct lws_http_mount *m = ctx->mounts;
    size_t k = 0;

    for (k = 0; k < sizeof(dyn) / sizeof(dyn[0]); k++) {
        m[k].mountpoint = dyn[k];
        m[k].mountpoint_len = (unsigned char)strlen(dyn[k]);
        m[k].protocol = "http";
        m[k].origin_protocol = LWSMPRO_CALLBACK;
        m[k].mount_next = &m[k + 1];
    }
    m[k].mountpoint = "/";
    m[k].mountpoint_len = 1;
    if (dir_exists(web_root)) {
        /* lws knows no .webmanifest: without this the app's manifest
         * would be a 415. */
        static const struct lws_protocol_vhost_options manifest = {
            NULL, NULL, ".webmanifest", "application/manifest+json"
        };
        m[k].extra_mimetypes = &manifest;
        m[k].origin = web_root;
        m[k].def = "index.html";
        m[k].origin_protocol = LWSMPRO_FILE;
        m[k].cache_max_age = 0;
    } else {
        m[k].protocol = "http";
        m[k].origin_protocol = LWSMPRO_CALLBACK;
    }
    m[k].mount_next = NULL;
}

/* Headers lws adds to every response it sends (ours, static files, its
 * own error pages). */
static void headers_init(struct http_ctx *ctx)
{
    static const char *const hv[][2] = {
        { "x-content-type-options:", "nosniff" },
        { "content-security-policy:",
          "default-src 'self'; img-src 'self' data: blob:; "
          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'" },
        { "referrer-policy:", "no-referrer" },
        { "strict-transport-security:", "max-age=31536000" },
        { "x-frame-options:", "DENY" },
    };
    size_t n = sizeof(hv) / sizeof(hv[0]);

    for (size_t i = 0; i < n; i++) {
        ctx->headers[i].name = hv[i][0];
        ctx->headers[i].value = hv[i][1];
        ctx->headers[i].next = i + 1 < n ? &ctx->headers[i + 1] : NULL;
    }
}

static int file_readable(const char *path)
{
    FILE *f = fopen(path, "r");

    if (!f)
        return 0;
    fclose(f);
    return 1;
}

int http_start(struct server *srv, struct err *e)
{
    const struct server_config *c = &srv->cfg;
    struct lws_context_creation_info info;
    struct http_ctx *ctx;
    const char *iface = c->listen_host;
    int v4 = 0;

    if (!file_readable(c->cert))
        return err_set(e, ERR_IO, "cannot read TLS certificate %s", c->cert);
    if (!file_readable(c->key))
        return err_set(e, ERR_IO, "cannot read TLS key %s", c->key);
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return err_set(e, ERR_INTERNAL, "out of memory");
    ctx->srv = srv;
    protocols_init(ctx);
    mounts_init(ctx, c->web_root);
    headers_init(ctx);
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);

    if (!*iface || !strcmp(iface, "0.0.0.0") || !strcmp(iface, "*"))
        iface = NULL;
    else if (!strcmp(iface, "localhost"))
        iface = "127.0.0.1";
    /* lws 4.1.6 opens an IPv6 socket by default and then binds it to
     * every address when iface is an IPv4 literal: 127.0.0.1 would listen
     * on all interfaces.  An IPv4 address (or 0.0.0.0) gets an IPv4
     * socket, so the bind is exact. */
    if (!iface || strchr(iface, '.'))
        v4 = 1;
    memset(&info, 0, sizeof(info));
    info.port = c->listen_port;
    info.iface = iface;
    info.vhost_name = "hashi";
    info.protocols = ctx->protocols;
    info.mounts = ctx->mounts;
    info.headers = ctx->headers;
    info.user = ctx;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (v4)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.ssl_cert_filepath = c->cert;
    info.ssl_private_key_filepath = c->key;
    info.alpn = "http/1.1";
    info.ssl_cipher_list =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
    info.tls1_3_plus_cipher_list =
        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
        "TLS_CHACHA20_POLY1305_SHA256";
    info.ssl_options_set = (long)(SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 |
                                  SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
                                  SSL_OP_NO_COMPRESSION |
                                  SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
    info.max_http_header_data = 8192;
    info.pt_serv_buf_size = 65536;  /* bigger body pieces per read */
    info.timeout_secs = 60;
    info.ssl_info_event_mask = SSL_CB_HANDSHAKE_DONE;  /* head_clock */
    info.keepalive_timeout = 30;
    /* No lws validity timers: hashi.v1 has its own keep-alive (ws.c, one
     * walk for all sessions).  lws's default (ping after 300 s) re-files
     * a timer in one sorted list for every frame a connection receives,
     * a walk over every connection's timer: 84 % of an idle server's CPU
     * with 5,000 sessions (perf). */
    static const lws_retry_bo_t no_validity = { 0 };
    info.retry_and_idle_policy = &no_validity;

    /* epoll through libev, else lws's own poll(). */
    ctx->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (ctx->loop) {
        void *loops[1] = { ctx->loop };
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = loops;
        srv->lws = lws_create_context(&info);
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = NULL;
        if (!srv->lws) {
            log_warn("http: libev event loop unavailable; using poll()");
            ev_loop_destroy(ctx->loop);
            ctx->loop = NULL;
        }
    }
    if (!srv->lws)
        srv->lws = lws_create_context(&info);
    if (!srv->lws) {
        free(ctx);
        return err_set(e, ERR_IO, "cannot start the HTTPS listener on "
                       "%s:%d (port in use, or bad certificate/key?)",
                       c->listen_host, c->listen_port);
    }
    lws_sul_schedule(srv->lws, 0, &ctx->tick, tick,
                     SERVER_TICK_MS * LWS_US_PER_MS);
    log_info("hashi-server listening on https://%s:%d%s",
             c->listen_host, c->listen_port,
             dir_exists(c->web_root) ? "" : " (no web client directory)");
    return 0;
}

void http_run(struct server *srv)
{
    struct http_ctx *ctx = lws_context_user(srv->lws);

    /* http_wake (lws_cancel_service) ends a wait in either loop, so
     * stopping is seen at once. */
    while (!srv->stopping) {
        if (ctx->loop)
            ev_run(ctx->loop, EVRUN_ONCE);
        else if (lws_service(srv->lws, 0) < 0)
            break;
    }
}

void http_wake(struct server *srv)
{
    if (srv && srv->lws)
        lws_cancel_service(srv->lws);
}

void http_stop(struct server *srv)
{
    struct http_ctx *ctx;

    if (!srv->lws)
        return;
    ctx = lws_context_user(srv->lws);
    lws_context_destroy(srv->lws);
    srv->lws = NULL;
    if (ctx->loop)
        ev_loop_destroy(ctx->loop);
    /* Each wsi's destruction freed its entry (head_forget). */
    free(ctx);
}
