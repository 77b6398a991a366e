/*
 * api — the small JSON routes of the HTTPS listener: login, logout, who am
 * I, health and metrics.  Handlers for http.c's route table (see http.h).
 *
 *   POST /api/login   {"login","password"} -> 200 {"token","expires_at",
 *                     "user"} + session cookie; 401 wrong; 429 locked out
 *   POST /api/logout  revokes the token, clears the cookie
 *   GET  /api/me      {"user": {...}}
 *   GET  /healthz     {"status":"ok"} (no authentication)
 *   GET  /metrics     Prometheus text; from loopback without a token (for
 *                     a local scraper), from elsewhere with a valid token
 */
#ifndef HASHI_API_H
#define HASHI_API_H

#include "http.h"

void api_login(struct http_req *r);
void api_logout(struct http_req *r);
void api_me(struct http_req *r);
void api_healthz(struct http_req *r);
void api_metrics(struct http_req *r);

#endif
