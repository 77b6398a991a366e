/*
 * api_cases — the REST twin of hashi.v1 (see api_cases.h).
 *
 * One validation path: every request is turned into the object of its
 * hashi.v1 request (path ids set into the body) and checked by
 * msg_from_json(); cases.c then receives the typed request (struct msg's
 * member), exactly as a WebSocket request gives it.
 */
#include "api_cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/log.h"
#include "../proto/msg.h"
#include "cases.h"
#include "outbox.h"
#include "server.h"

#define SEG_MAX 4
#define EVENTS_DEFAULT 100
#define EVENTS_MAX 1000

enum op {
    OP_CREATE = 1, OP_CLAIM, OP_ANSWER, OP_CLOSE, OP_REOPEN, OP_MESSAGE,
    OP_READ, OP_ACK, OP_AMEND, OP_LINK,
};

/* What a POST handler remembers until its body is in. */
struct pending {
    enum op op;
    char case_id[MSG_ID_MAX + 1];
    char message_id[MSG_ID_MAX + 1];
};

static void respond_codec(struct http_req *r, const struct msg_error *me)
{
    int status = me->code == MSG_E_TOO_BIG ? 413 : 400;
    const char *code = msg_code_name(me->code);
    http_respond_error(r, status, code ? code : "invalid", "%s",
                       me->message);
}

/* A cases.c failure; a lost claim race is 409 already_claimed. */
static void respond_cases(struct http_req *r, enum op op,
                          const struct err *e)
{
    if (op == OP_CLAIM && e->code == ERR_CONFLICT &&
        strstr(e->msg, "already claimed")) {
        http_respond_error(r, 409, "already_claimed", "%s", e->msg);
        return;
    }
    http_respond_err(r, e);
}

/* Splits the path below base into at most SEG_MAX segments (pointers
 * into buf).  Returns the count, or -1 for an empty segment or too many. */
static int split(const char *path, const char *base, char *buf, size_t n,
                 char *seg[SEG_MAX])
{
    const char *p = path + strlen(base);
    int k = 0;
    if (!*p)
        return 0;
    if (*p != '/' || strlcpy_h(buf, p + 1, n) >= n)
        return -1;
    for (char *s = buf; s;) {
        char *slash = strchr(s, '/');
        if (slash)
            *slash = 0;
        if (!*s || k == SEG_MAX)
            return -1;
        seg[k++] = s;
        s = slash ? slash + 1 : NULL;
    }
    return k;
}

/* Validates obj as a request of type t (obj borrowed).  0, or responded. */
static int validate(struct http_req *r, json_t *obj, enum msg_type t,
                    struct msg *m)
{
    struct msg_error me;
    if (!msg_from_json(obj, t, m, &me))
        return 0;
    msg_free(m);
    respond_codec(r, &me);
    return -1;
}

/* Validates path ids by the codec's id rule (as the fields they are). */
static int check_ids(struct http_req *r, const char *case_id,
                     const char *message_id)
{
    struct msg m;
    json_t *o = json_pack("{s:s}", "case_id", case_id);
    enum msg_type t = MSG_CASE_GET;
    if (message_id) {
        json_object_set_new(o, "message_id", json_string(message_id));
        t = MSG_MESSAGE_READ;
    }
    int rc = validate(r, o, t, &m);
    json_decref(o);
    if (!rc)
        msg_free(&m);
    return rc;
}

static void method_not_allowed(struct http_req *r, const char *allow)
{
    http_add_header(r, "Allow", allow);
    http_respond_error(r, 405, "method_not_allowed",
                       "%s is not allowed on %s", r->method_name, r->path);
}

/* ---- POST bodies -------------------------------------------------------- */

static enum msg_type type_of(enum op op)
{
    switch (op) {
    case OP_CREATE: return MSG_CASE_CREATE;
    case OP_CLAIM: return MSG_CASE_CLAIM;
    case OP_ANSWER: return MSG_CASE_ANSWER;
    case OP_AMEND: return MSG_CASE_AMEND;
    case OP_CLOSE: return MSG_CASE_CLOSE;
    case OP_REOPEN: return MSG_CASE_REOPEN;
    case OP_MESSAGE: return MSG_MESSAGE_SEND;
    case OP_READ: return MSG_MESSAGE_READ;
    case OP_ACK: return MSG_ACK;
    case OP_LINK: return MSG_CASE_LINK;
    }
    return MSG_NONE;
}

static void do_ack(struct http_req *r, const struct msg *m)
{
    struct server *srv = r->srv;
    struct err e = { 0, "" };
    int64_t uid = r->who.user_id;
    if (uid <= 0 || !srv->outbox) {
        if (m->ack.seq)
            http_respond_error(r, 400, "bad_field",
                               "seq: this account has no events");
        else
            http_respond_json(r, 200, json_pack("{s:I}", "acked_seq", 0));
        return;
    }
    ws_flush_acks(srv);
    if (cases_ack(srv, uid, m->ack.seq, &e)) {
        if (e.code == ERR_INVALID)
            http_respond_error(r, 400, "bad_field", "seq: %s", e.msg);
        else
            http_respond_err(r, &e);
        return;
    }
    http_respond_json(r, 200,
                      json_pack("{s:I}", "acked_seq",
                                (json_int_t)outbox_acked_seq(srv->outbox,
                                                             uid)));
}

static void on_body(struct http_req *r, unsigned char *body, size_t len)
{
    struct pending *pd = http_state(r);
    struct server *srv = r->srv;
    json_t *obj;
    json_error_t je;
    size_t i = 0;

    while (i < len && strchr(" \t\r\n", body[i]))
        i++;
    if (i == len) {
        obj = json_object();
    } else {
        obj = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
                         &je);
        if (!obj) {
            http_respond_error(r, 400, "bad_json", "line %d column %d: %s",
                               je.line, je.column, je.text);
            return;
        }
        if (!json_is_object(obj)) {
            json_decref(obj);
            http_respond_error(r, 400, "bad_json",
                               "the body must be a JSON object");
            return;
        }
    }
    /* The path names the case (and the message): it wins over the body. */
    if (pd->case_id[0])
        json_object_set_new(obj, "case_id", json_string(pd->case_id));
    if (pd->message_id[0])
        json_object_set_new(obj, "message_id",
                            json_string(pd->message_id));

    struct msg m;
    int rc = validate(r, obj, type_of(pd->op), &m);
    json_decref(obj);
    if (rc)
        return;
    if (pd->op == OP_ACK) {
        do_ack(r, &m);
        msg_free(&m);
        return;
    }

    struct err e = { 0, "" };
    json_t *out = NULL;
    const char *key = "case";
    int created = 0, status = 200;
    switch (pd->op) {
    case OP_CREATE:
        rc = cases_create(srv, &r->who, &m.case_create, &out, &created, &e);
        status = created ? 201 : 200;
        break;
    case OP_CLAIM:
        rc = cases_claim(srv, &r->who, pd->case_id, &out, &e);
        break;
    case OP_ANSWER:
        rc = cases_answer(srv, &r->who, &m.case_answer, &out, &e);
        break;
    case OP_AMEND:
        rc = cases_amend(srv, &r->who, &m.case_answer, &out, &e);
        break;
    case OP_CLOSE:
        rc = cases_close(srv, &r->who, pd->case_id, &out, &e);
        break;
    case OP_REOPEN:
        rc = cases_reopen(srv, &r->who, pd->case_id, &out, &e);
        break;
    case OP_MESSAGE:
        rc = cases_message(srv, &r->who, &m.message_send, &out, &e);
        key = "message";
        status = 201;
        break;
    case OP_READ:
        rc = cases_message_read(srv, &r->who, pd->case_id, pd->message_id,
                                &e);
        break;
    case OP_LINK:
        rc = cases_link(srv, &r->who, &m.case_link, &out, &e);
        break;
    default:
        rc = err_set(&e, ERR_INTERNAL, "unknown operation");
    }
    msg_free(&m);
    if (rc) {
        json_decref(out);
        respond_cases(r, pd->op, &e);
        return;
    }
    if (pd->op == OP_READ)
        http_respond_json(r, 200, json_object());
    else
        http_respond_json(r, status, json_pack("{s:o}", key,
                                               out ? out : json_null()));
}

static void expect_body(struct http_req *r, enum op op, const char *case_id,
                        const char *message_id)
{
    struct pending *pd = calloc(1, sizeof *pd);
    if (!pd) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    pd->op = op;
    if (case_id)
        strlcpy_h(pd->case_id, case_id, sizeof pd->case_id);
    if (message_id)
        strlcpy_h(pd->message_id, message_id, sizeof pd->message_id);
    http_set_state(r, pd, free);
    http_body_buffer(r, HTTP_JSON_MAX, on_body);
}

/* ---- GETs --------------------------------------------------------------- */

/* A query integer: digits as a JSON integer (the codec checks the range),
 * anything else as a string (the codec says bad_type). */
static json_t *param_int(const char *v)
{
    size_t n = strspn(v, "0123456789");
    if (n && !v[n] && n <= 18)
        return json_integer(strtoll(v, NULL, 10));
    return json_string(v);
}

static void list_cases(struct http_req *r)
{
    const char *status = http_param(r, "status");
    const char *limit = http_param(r, "limit");
    const char *before = http_param(r, "before");
    json_t *o = json_object();
    if (status && *status)
        json_object_set_new(o, "status", json_string(status));
    if (limit && *limit)
        json_object_set_new(o, "limit", param_int(limit));
    if (before && *before)
        json_object_set_new(o, "before", json_string(before));
    struct msg m;
    int rc = validate(r, o, MSG_CASE_LIST, &m);
    json_decref(o);
    if (rc)
        return;
    json_t *out = NULL;
    struct err e = { 0, "" };
    rc = cases_list_page(r->srv, &r->who, &m.case_list, &out, &e);
    msg_free(&m);
    if (rc) {
        http_respond_err(r, &e);
        return;
    }
    http_respond_json(r, 200, out);
}

static void get_case(struct http_req *r, const char *case_id, int messages)
{
    json_t *out = NULL;
    struct err e = { 0, "" };
    if (cases_get(r->srv, &r->who, case_id, &out, &e)) {
        http_respond_err(r, &e);
        return;
    }
    if (!messages) {
        http_respond_json(r, 200, json_pack("{s:o}", "case", out));
        return;
    }
    json_t *msgs = json_object_get(out, "messages");
    json_t *body = json_pack("{s:O}", "messages",
                             msgs ? msgs : json_array());
    json_decref(out);
    http_respond_json(r, 200, body);
}

/* ---- routes --------------------------------------------------------------- */

void api_cases(struct http_req *r)
{
    char buf[512];
    char *seg[SEG_MAX];
    int n = split(r->path, "/api/cases", buf, sizeof buf, seg);
    int get = r->method == HTTP_GET, post = r->method == HTTP_POST;

    if (n < 0) {
        http_respond_error(r, 404, "not_found", "no such resource");
        return;
    }
    if (n == 0) {
        if (get)
            list_cases(r);
        else if (post)
            expect_body(r, OP_CREATE, NULL, NULL);
        else
            method_not_allowed(r, "GET, POST");
        return;
    }
    const char *cid = seg[0];
    const char *mid = n == 4 ? seg[2] : NULL;
    if (n == 1 || (n == 2 && !strcmp(seg[1], "messages"))) {
        if (check_ids(r, cid, NULL))
            return;
        if (n == 1 && get)
            get_case(r, cid, 0);
        else if (n == 2 && get)
            get_case(r, cid, 1);
        else if (n == 2 && post)
            expect_body(r, OP_MESSAGE, cid, NULL);
        else
            method_not_allowed(r, n == 1 ? "GET" : "GET, POST");
        return;
    }
    enum op op = 0;
    if (n == 2) {
        static const struct { const char *verb; enum op op; } verbs[] = {
            { "claim", OP_CLAIM }, { "answer", OP_ANSWER },
            { "amend", OP_AMEND },
            { "close", OP_CLOSE }, { "reopen", OP_REOPEN },
            { "link", OP_LINK },
        };
        for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
            if (!strcmp(seg[1], verbs[i].verb))
                op = verbs[i].op;
    } else if (n == 4 && !strcmp(seg[1], "messages") &&
               !strcmp(seg[3], "read")) {
        op = OP_READ;
    }
    if (!op) {
        http_respond_error(r, 404, "not_found", "no such resource");
        return;
    }
    if (op == OP_LINK && get && !check_ids(r, cid, NULL)) {
        json_t *out = NULL;
        struct err e = { 0, "" };
        if (cases_link_candidates(r->srv, &r->who, cid, &out, &e))
            http_respond_err(r, &e);
        else
            http_respond_json(r, 200, out);
        return;
    }
    if (!post) {
        method_not_allowed(r, op == OP_LINK ? "GET, POST" : "POST");
        return;
    }
    if (check_ids(r, cid, mid))
        return;
    expect_body(r, op, cid, mid);
}

/* after: a seq (digits, <= 2^53-1); *out, or -1 when malformed. */
static int param_seq(const char *v, int64_t *out)
{
    size_t n = strspn(v, "0123456789");
    if (!n || v[n] || n > 16)
        return -1;
    long long x = strtoll(v, NULL, 10);
    if (x > MSG_SEQ_MAX)
        return -1;
    *out = x;
    return 0;
}

static void list_events(struct http_req *r)
{
    struct server *srv = r->srv;
    const char *a = http_param(r, "after"), *l = http_param(r, "limit");
    int64_t after = 0, limit = EVENTS_DEFAULT;
    if (a && *a && param_seq(a, &after)) {
        http_respond_error(r, 400, "bad_field",
                           "after: must be an integer 0..%lld",
                           (long long)MSG_SEQ_MAX);
        return;
    }
    if (l && *l && (param_seq(l, &limit) || limit < 1 ||
                    limit > EVENTS_MAX)) {
        http_respond_error(r, 400, "bad_field",
                           "limit: must be an integer 1..%d", EVENTS_MAX);
        return;
    }
    int64_t uid = r->who.user_id;
    if (uid <= 0 || !srv->outbox) {
        http_respond_json(r, 200,
                          json_pack("{s:[], s:I, s:I}", "events",
                                    "last_seq", 0, "acked_seq", 0));
        return;
    }
    json_t *events = NULL;
    struct err e = { 0, "" };
    ws_flush_acks(srv);     /* acked_seq as the WebSocket sessions have it */
    if (outbox_fetch(srv->outbox, uid, after, (int)limit, &events, &e)) {
        http_respond_err(r, &e);
        return;
    }
    http_respond_json(
        r, 200,
        json_pack("{s:o, s:I, s:I}", "events", events, "last_seq",
                  (json_int_t)outbox_last_seq(srv->outbox, uid),
                  "acked_seq",
                  (json_int_t)outbox_acked_seq(srv->outbox, uid)));
}

void api_events(struct http_req *r)
{
    if (!strcmp(r->path, "/api/events")) {
        if (r->method == HTTP_GET)
            list_events(r);
        else
            method_not_allowed(r, "GET");
    } else if (!strcmp(r->path, "/api/events/ack")) {
        if (r->method == HTTP_POST)
            expect_body(r, OP_ACK, NULL, NULL);
        else
            method_not_allowed(r, "POST");
    } else {
        http_respond_error(r, 404, "not_found", "no such resource");
    }
}
