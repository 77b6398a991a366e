/*
 * api — login, logout, who am I, /healthz and /metrics (see api.h).
 *
 * Login runs scrypt (N=2^17), about 0.4 s of CPU, on the worker pool
 * (srv->jobs, jobs.h), whose threads have their own store handles; the
 * answer is sent from the job's done callback on the lws thread, which
 * meanwhile serves other requests.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/log.h"
#include "jobs.h"
#include "server.h"

static void audit_login(struct http_req *r, const char *action,
                        const char *actor, const char *outcome,
                        const char *detail)
{
    struct audit_entry a = {
        .actor = actor,
        .action = action,
        .object = actor,
        .outcome = outcome,
        .remote = r->remote,
        .detail = detail,
    };

    audit_write(r->srv->audit, &a);
}

static void set_session_cookie(struct http_req *r, const char *token,
                               long max_age)
{
    char c[256];

    snprintf(c, sizeof(c), "%s=%s; HttpOnly; Secure; SameSite=Strict; "
             "Path=/; Max-Age=%ld", HTTP_COOKIE_NAME, token,
             max_age > 0 ? max_age : 0);
    http_add_header(r, "Set-Cookie", c);
}

/* A login on its way through a worker: scrypt takes about 0.4 s of CPU,
 * which must not stop the lws loop.  The request's state while the job
 * runs; if the connection goes meanwhile, http.c frees the state and the
 * job's done callback frees what is left (login_free / login_done). */
struct login_job {
    struct job job;
    struct http_req *r;         /* NULL once the request is gone */
    int running;
    char login[65];
    char password[1025];
    char remote[64];
    /* result, written by the worker */
    int rc;
    struct err e;
    char token[AUTH_TOKEN_HEX + 1];
    int64_t expires;
    struct principal who;
};

static void login_job_destroy(struct login_job *lj)
{
    explicit_bzero(lj, sizeof(*lj));
    free(lj);
}

static void login_free(void *p)
{
    struct login_job *lj = p;

    if (lj->running) {
        lj->r = NULL;           /* login_done frees it */
        return;
    }
    login_job_destroy(lj);
}

/* Worker thread: ctx is its store handle. */
static void login_work(void *ctx, void *arg)
{
    struct login_job *lj = arg;

    explicit_bzero(lj->token, sizeof(lj->token));
    if (!ctx) {
        lj->rc = err_set(&lj->e, ERR_INTERNAL, "the worker has no store");
        return;
    }
    lj->rc = auth_login(ctx, lj->login, lj->password, lj->remote, lj->token,
                        &lj->expires, &lj->who, &lj->e);
    explicit_bzero(lj->password, sizeof(lj->password));
}

static void login_answer(struct http_req *r, int rc, const char *login,
                         const struct err *e, const char *token,
                         int64_t expires, const struct principal *who)
{
    char when[32];

    if (rc == ERR_AUTH || rc == ERR_RATELIMIT) {
        int limited = rc == ERR_RATELIMIT;
        /* A refused attempt checked no password: not a login_failed. */
        atomic_fetch_add(&r->srv->metrics.logins_failed, 1);
        audit_login(r, limited ? "login_rate_limited" : "login_failed",
                    login, limited ? "rate_limited" : "denied", e->msg);
        if (limited) {
            http_add_header(r, "Retry-After", "60");
            http_respond_error(r, 429, "rate_limited",
                               "too many failed logins; try again later");
        } else {
            http_respond_error(r, 401, "unauthorized",
                               "wrong login or password");
        }
        return;
    }
    if (rc < 0) {
        audit_login(r, "login_failed", login, "error", e->msg);
        http_respond_err(r, e);
        return;
    }
    audit_login(r, "login", who->login, "ok", NULL);
    iso8601_ms(expires, when);
    set_session_cookie(r, token, (long)((expires - now_ms()) / 1000));
    http_respond_json(r, 200,
                      json_pack("{s:s,s:s,s:I,s:o}", "token", token,
                                "expires_at", when,
                                "expires_at_ms", (json_int_t)expires,
                                "user", http_principal_json(who)));
}

/* Lws thread (jobs_reap). */
static void login_done(void *arg)
{
    struct login_job *lj = arg;

    lj->running = 0;
    if (!lj->r) {
        /* The client went; a session opened for it just expires. */
        login_job_destroy(lj);
        return;
    }
    login_answer(lj->r, lj->rc, lj->login, &lj->e, lj->token, lj->expires,
                 &lj->who);
    explicit_bzero(lj->token, sizeof(lj->token));
    /* http.c frees lj (login_free) when the request ends. */
}

static void login_json(struct http_req *r, json_t *body)
{
    const char *login = NULL, *password = NULL;
    struct login_job *lj;

    if (json_unpack(body, "{s:s,s:s}", "login", &login, "password",
                    &password) < 0 || !*login) {
        http_respond_error(r, 400, "invalid",
                           "expected {\"login\": string, \"password\": "
                           "string}");
        return;
    }
    if (strlen(login) > 64 || strlen(password) > 1024) {
        http_respond_error(r, 400, "invalid", "login or password too long");
        return;
    }
    if (!r->srv->jobs) {
        /* No worker pool (tools that serve without one): inline. */
        char token[AUTH_TOKEN_HEX + 1];
        struct principal who;
        struct err e = { 0 };
        int64_t expires = 0;
        int rc;

        memset(&who, 0, sizeof(who));
        rc = auth_login(r->srv->store, login, password, r->remote, token,
                        &expires, &who, &e);
        login_answer(r, rc, login, &e, token, expires, &who);
        explicit_bzero(token, sizeof(token));
        return;
    }
    lj = calloc(1, sizeof(*lj));
    if (!lj) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    lj->r = r;
    strlcpy_h(lj->login, login, sizeof(lj->login));
    strlcpy_h(lj->password, password, sizeof(lj->password));
    strlcpy_h(lj->remote, r->remote, sizeof(lj->remote));
    lj->running = 1;
    http_set_state(r, lj, login_free);
    http_defer(r);
    jobs_submit(r->srv->jobs, &lj->job, login_work, login_done, lj);
}

void api_login(struct http_req *r)
{
    http_body_json(r, login_json);
}

void api_logout(struct http_req *r)
{
    struct err e = { 0 };

    if (auth_logout(r->srv->store, r->token, &e) < 0 &&
        e.code != ERR_AUTH && e.code != ERR_NOTFOUND) {
        http_respond_err(r, &e);
        return;
    }
    ws_check_sessions(r->srv);      /* its open sockets close now */
    audit_login(r, "logout", r->who.login, "ok", NULL);
    set_session_cookie(r, "", 0);
    http_respond_json(r, 200, json_pack("{s:b}", "ok", 1));
}

void api_me(struct http_req *r)
{
    /* No session (none, or its cookie ended): 200 {"user": null}, so a
     * page asking whether it is logged in logs no error. */
    if (!r->authed) {
        http_respond_json(r, 200, json_pack("{s:n}", "user"));
        return;
    }
    http_respond_json(r, 200, json_pack("{s:o}", "user",
                                        http_principal_json(&r->who)));
}

void api_healthz(struct http_req *r)
{
    http_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void api_metrics(struct http_req *r)
{
    size_t len = 0;
    char *text;

    if (!r->authed && !http_remote_is_loopback(r)) {
        http_add_header(r, "WWW-Authenticate", "Bearer");
        http_respond_error(r, 401, "unauthorized",
                           "/metrics needs a token when not scraped from "
                           "loopback");
        return;
    }
    text = metrics_text(&r->srv->metrics, &len);
    if (!text) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    http_respond_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                       (unsigned char *)text, len);
}
