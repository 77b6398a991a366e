/*
 * webpush — alerts that wake a phone: Web Push from hashi-server.
 *
 * A browser subscribes per device (POST /api/push/subscriptions with the
 * PushSubscription's endpoint and keys); when one of the user's outbox
 * events is a case.new, case.escalated or message.new (not their own
 * message), each of the user's devices gets a push message:
 *   - RFC 8291 encryption (aes128gcm: ECDH P-256 with the device's p256dh,
 *     its auth secret, HKDF-SHA-256, the 86-byte header, one record);
 *   - RFC 8292 VAPID (an ES256 JWT, aud = the endpoint's origin, exp 12 h
 *     ahead, signed with the server's P-256 key <data>/vapid.pem, 0600,
 *     made by `init` or at the first start; `k=` its public key);
 *   - RFC 8030 delivery: POST to the endpoint over HTTPS (the system CAs,
 *     or --push-ca), TTL 24 h, Urgency high for STAT cases else normal,
 *     a Topic per case and kind (a newer message replaces one not yet
 *     delivered).
 * The payload is minimal: {"kind","case_id","priority"} — no patient data.
 * Endpoints are held to push services (a hospital's server must not be
 * made to POST into its own network): a subscription's host must be one
 * of WEBPUSH_PUBLIC_HOSTS or a --push-allow entry, else it is refused
 * (400 push_service_not_allowed); a delivery is checked again, and never
 * connects to a loopback, private, link-local or otherwise non-public
 * address unless the host is a --push-allow entry itself (DNS of a public
 * name pointing inside is refused).
 * A 404 or 410 from the push service removes the subscription.
 *
 * How it fits: webpush_init (after ws_init) wraps srv->events_committed:
 * after every COMMIT it reads the outbox's dirty set (outbox_dirty), takes
 * the new events of subscribed users (a per-user cursor, push_cursor, so
 * nothing is pushed twice, also across restarts), and queues one job per
 * device on its own one-thread pool (jobs.h); the encryption, signing and
 * HTTPS happen there, never on the lws thread.  webpush_tick reaps the
 * finished jobs (404/410 handling) on the lws thread.
 *
 * Threads: everything but the job's work runs on the lws thread.  The
 * work only reads its job and the immutable key and TLS context.
 */
#ifndef HASHI_WEBPUSH_H
#define HASHI_WEBPUSH_H

#include <stddef.h>

#include "../proto/util.h"

struct server;
struct http_req;

#define WEBPUSH_KEY_FILE "vapid.pem"
#define WEBPUSH_TTL 86400            /* seconds a push service keeps one */

/* Make <data_dir>/vapid.pem (a new P-256 key, 0600) unless it exists. */
int webpush_key_ensure(const char *data_dir, struct err *e);

/* Load the key (making it if missing), open the TLS context and the pool,
 * and hook srv->events_committed (call after ws_init).  srv->push is
 * webpush's; webpush_free releases it (after http_stop: queued pushes are
 * skipped once srv->stopping is set). */
int webpush_init(struct server *srv, struct err *e);
void webpush_free(struct server *srv);
/* The lws tick's share: finished pushes (404/410 remove the device). */
void webpush_tick(struct server *srv);

/* Routes under /api/push (http.c's table):
 *   GET    /api/push/vapid-public-key  {"key": base64url(65-byte point)}
 *   POST   /api/push/subscriptions     {"endpoint", "keys": {"p256dh",
 *                                       "auth"}} -> 201 {"id"}; the same
 *                                      endpoint again moves it to the caller
 *   DELETE /api/push/subscriptions     {"endpoint"} -> 200 {"removed": n}
 * Users only (a gateway token gets 403). */
void webpush_api(struct http_req *r);

/* The public push services (Chrome/FCM, Firefox, Edge/WNS, Safari);
 * "*.d" is any name under d, not d itself. */
#define WEBPUSH_PUBLIC_HOSTS "fcm.googleapis.com," \
    "updates.push.services.mozilla.com,*.notify.windows.com," \
    "web.push.apple.com"

/* ---- the pieces, for the tests ------------------------------------- */

/* A --push-allow value: a host name, "*.domain", an IPv4 or IPv6 address
 * (brackets optional); 0 and its canonical form (lower case, no
 * brackets) in out, or -1 if it is none of those. */
int webpush_allow_pattern(const char *v, char *out, size_t cap);

/* Whether an endpoint's host may be pushed to: 2 if it matches an entry
 * of extra (comma-separated --push-allow patterns), 1 if a public push
 * service, else 0.  Case-insensitive; host as in the URL, without
 * brackets. */
int webpush_host_allowed(const char *extra, const char *host);

/* 1 if a push may connect to addr (a sockaddr_in or sockaddr_in6) for
 * host: addr is a public unicast address, or host is an entry of extra
 * (the administrator allowed it, wherever it points). */
struct sockaddr;
int webpush_addr_allowed(const char *extra, const char *host,
                         const struct sockaddr *addr);

/* RFC 8291 aes128gcm body of one record: header (salt, rs 4096, idlen 65,
 * as_public) then AES-128-GCM(plain || 0x02).  ua_public is the device's
 * 65-byte point, auth its 16-byte secret.  as_private (32 bytes) with
 * as_public (65) and salt (16) may be given (the RFC's test vector); NULL
 * makes fresh ones.  *out is malloc'd (caller frees), *outlen its size. */
int webpush_encrypt(const unsigned char ua_public[65],
                    const unsigned char auth[16],
                    const unsigned char *as_private,
                    const unsigned char *as_public,
                    const unsigned char *salt,
                    const unsigned char *plain, size_t n,
                    unsigned char **out, size_t *outlen, struct err *e);

/* base64url without padding.  encode: out needs 4*ceil(n/3)+1 bytes;
 * returns the length.  decode: padding and whitespace refused; returns
 * the decoded length, or -1 if invalid or longer than cap. */
size_t webpush_b64url_encode(const unsigned char *in, size_t n, char *out);
long webpush_b64url_decode(const char *in, unsigned char *out, size_t cap);

#endif
