/*
 * auth — clinics, users, gateways, passwords and session tokens.
 *
 * Passwords are stored as scrypt (OpenSSL EVP_PBE_scrypt, N=2^17, r=8,
 * p=1, 16-byte random salt) in the form "scrypt$17$8$1$<salt hex>$<hash
 * hex>".  Session and gateway tokens are 32 random bytes (OpenSSL RAND),
 * given to the client as 64 hex characters and stored only as their
 * SHA-256.  Sessions expire (default 12 h).  Failed logins are counted per
 * login and per remote address; too many in a window gives ERR_RATELIMIT.
 *
 * Tables live in the store's database (store_db()).
 */
#ifndef HASHI_AUTH_H
#define HASHI_AUTH_H

#include <stdint.h>

#include "store.h"

#define AUTH_TOKEN_HEX 64

/* The authenticated caller of a request. */
struct principal {
    int64_t user_id;          /* 0 for a gateway */
    int64_t gateway_id;       /* a gateway's id, 0 for a user */
    char login[64];           /* user login, or "gateway:<name>" */
    char role[16];            /* "requester", "specialist", "admin",
                                 "gateway" */
    int64_t clinic_id;
    char clinic[128];
    char specialties[256];    /* comma-separated, "" if none */
    /* Set by auth_token_check and auth_login, for auth_token_live: */
    char token_sha256[65];    /* the session's or gateway's token hash */
    int64_t expires_ms;       /* session end; 0 for a gateway token */
};

int auth_password_hash(const char *password, char *out, size_t n,
                       struct err *e);
/* 1 if password matches stored, 0 otherwise (also for a malformed
 * stored value). */
int auth_password_verify(const char *password, const char *stored);

/* kind: "rural" or "city"; calling_ae may be NULL.  ERR_CONFLICT if the
 * name or AE title is taken. */
int auth_clinic_add(struct store *s, const char *name, const char *kind,
                    const char *calling_ae, int64_t *id, struct err *e);
/* Map one more calling AE title (another modality) to a clinic.
 * ERR_NOTFOUND for an unknown clinic, ERR_CONFLICT if the title is
 * mapped already. */
int auth_clinic_add_ae(struct store *s, const char *clinic,
                       const char *calling_ae, struct err *e);
/* The same, and the AE is a C-MOVE destination listening at dest
 * ("HOST:PORT", checked by the caller; NULL = only sends). */
int auth_clinic_add_ae_dest(struct store *s, const char *clinic,
                            const char *calling_ae, const char *dest,
                            struct err *e);
/* Where the move destination AE title ae of clinic clinic_id listens:
 * dest (256 bytes) receives "HOST:PORT".  ERR_NOTFOUND when ae is not
 * that clinic's or has no destination. */
int auth_move_dest(struct store *s, int64_t clinic_id, const char *ae,
                   char *dest, struct err *e);
/* The clinic a calling AE title belongs to: 0, or ERR_NOTFOUND. */
int auth_clinic_by_ae(struct store *s, const char *calling_ae,
                      int64_t *clinic_id, struct err *e);

/* role: requester|specialist|admin; specialties comma-separated (may be
 * NULL).  ERR_NOTFOUND for an unknown clinic, ERR_CONFLICT for a login
 * that exists, ERR_INVALID for a bad role/login/empty password. */
int auth_user_add(struct store *s, const char *login, const char *clinic,
                  const char *role, const char *specialties,
                  const char *password, int64_t *id, struct err *e);

/* Gateway API token for a clinic; token (65 bytes) is shown once. */
int auth_gateway_add(struct store *s, const char *clinic, const char *name,
                     char *token, struct err *e);

/* Check a password and open a session.  token (65 bytes) receives the new
 * session token.  ERR_AUTH for a wrong login or password (same message for
 * both), ERR_RATELIMIT when locked out. */
int auth_login(struct store *s, const char *login, const char *password,
               const char *remote, char *token, int64_t *expires_ms,
               struct principal *who, struct err *e);
/* Open a session for user_id with no password check: auth_login after
 * its check, and tools that hold the database already (the push
 * benchmark's user maker).  token (65 bytes) receives the new session
 * token; expires_ms may be NULL. */
int auth_session_create(struct store *s, int64_t user_id,
                        const char *remote, char *token,
                        int64_t *expires_ms, struct err *e);
/* An enabled user as a principal with no session (tools that act for a
 * user inside the server's own process, such as the demo seeding).
 * ERR_NOTFOUND for an unknown or disabled login. */
int auth_user_principal(struct store *s, const char *login,
                        struct principal *who, struct err *e);
/* A session or gateway token -> who.  ERR_AUTH if unknown, expired or
 * revoked. */
int auth_token_check(struct store *s, const char *token,
                     struct principal *who, struct err *e);
/* Revoke a session token (logout). */
int auth_logout(struct store *s, const char *token, struct err *e);

/* Is the token auth_token_check gave `who` for still good (not revoked,
 * not expired, its user not disabled)?  1 yes, 0 no, ERR_DB. */
int auth_token_live(struct store *s, const struct principal *who);
/* A number that changes whenever a session or gateway token is revoked or
 * a user disabled or removed, by any process (triggers in schema.c): one
 * cheap read tells a holder of principals whether to re-check them with
 * auth_token_live.  Negative on a database error. */
int64_t auth_epoch(struct store *s);
/* Disable a user (admin subcommand): no more logins, and every session of
 * theirs is revoked.  ERR_NOTFOUND for an unknown login.  Idempotent. */
int auth_user_disable(struct store *s, const char *login, struct err *e);

#endif
