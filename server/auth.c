/*
 * auth — who may use Hashi: clinics, users, gateways, passwords, session
 * tokens, and the login rate limit (see auth.h).
 *
 * Nothing secret is stored in a form that gives it back: passwords as
 * scrypt (N=2^17, r=8, p=1, 16-byte salt, 32-byte key), tokens as their
 * SHA-256.  A login for an unknown name does the same scrypt work as one
 * for a known name (against a dummy hash), and both failures read the
 * same, so neither the answer nor its timing tells which logins exist.
 *
 * Rate limit: failed logins are recorded per login name and per remote
 * address; 5 for one name or 20 from one address within 15 minutes lock
 * further attempts out.  Each attempt is counted before its scrypt work
 * (attempt_reserve), atomically, so parallel logins cannot exceed the
 * limit and a flood costs the server little.  A successful login clears
 * its name's failures.
 *
 * Tables (schema.c): clinics, users, user_specialties, sessions, gateways,
 * login_failures.
 */
#include "auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../proto/log.h"

#define SCRYPT_LOG2N 17
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_SALT 16
#define SCRYPT_KEY 32
#define SCRYPT_MAXMEM (256ULL << 20)

#define SESSION_MS (12LL * 3600 * 1000)
#define FAIL_WINDOW_MS (15LL * 60 * 1000)
#define FAIL_PER_LOGIN 5
#define FAIL_PER_REMOTE 20
#define MAX_PASSWORD 1024

/* Same parameters as a real hash, so verifying against it costs the same;
 * its all-zero key matches no password in practice. */
static const char DUMMY_HASH[] =
    "scrypt$17$8$1$00000000000000000000000000000000$"
    "0000000000000000000000000000000000000000000000000000000000000000";

/* ---- passwords ---------------------------------------------------------- */

static int derive(const char *password, const unsigned char *salt,
                  size_t saltlen, int log2n, int r, int p, unsigned char *key,
                  size_t keylen)
{
    return EVP_PBE_scrypt(password, strlen(password), salt, saltlen,
                          (uint64_t)1 << log2n, (uint64_t)r, (uint64_t)p,
                          SCRYPT_MAXMEM, key, keylen) == 1
               ? 0
               : ERR_INTERNAL;
}

int auth_password_hash(const char *password, char *out, size_t n,
                       struct err *e)
{
    unsigned char salt[SCRYPT_SALT], key[SCRYPT_KEY];
    char salt_hex[2 * SCRYPT_SALT + 1], key_hex[2 * SCRYPT_KEY + 1];
    if (!password)
        return err_set(e, ERR_INVALID, "no password");
    if (RAND_bytes(salt, sizeof salt) != 1)
        return err_set(e, ERR_INTERNAL, "no randomness for a salt");
    if (derive(password, salt, sizeof salt, SCRYPT_LOG2N, SCRYPT_R, SCRYPT_P,
               key, sizeof key))
        return err_set(e, ERR_INTERNAL, "scrypt failed");
    hex_encode(salt, sizeof salt, salt_hex);
    hex_encode(key, sizeof key, key_hex);
    OPENSSL_cleanse(key, sizeof key);
    int w = snprintf(out, n, "scrypt$%d$%d$%d$%s$%s", SCRYPT_LOG2N, SCRYPT_R,
                     SCRYPT_P, salt_hex, key_hex);
    if (w < 0 || (size_t)w >= n)
        return err_set(e, ERR_TOOBIG, "password hash buffer too small");
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Hex field of s up to '$' or the end into out (at most max bytes). */
static int hex_field(const char **s, unsigned char *out, size_t max,
                     size_t *len)
{
    size_t n = 0;
    const char *p = *s;
    while (*p && *p != '$') {
        int hi = hexval(p[0]), lo = p[1] ? hexval(p[1]) : -1;
        if (hi < 0 || lo < 0 || n == max)
            return -1;
        out[n++] = (unsigned char)(hi << 4 | lo);
        p += 2;
    }
    *s = p;
    *len = n;
    return n ? 0 : -1;
}

static int int_field(const char **s, int lo, int hi, int *v)
{
    char *end;
    long x = strtol(*s, &end, 10);
    if (end == *s || *end != '$' || x < lo || x > hi)
        return -1;
    *v = (int)x;
    *s = end + 1;
    return 0;
}

int auth_password_verify(const char *password, const char *stored)
{
    int log2n, r, p;
    unsigned char salt[64], want[64], got[64];
    size_t saltlen, keylen;
    const char *s = stored;
    if (!password || !stored || strncmp(s, "scrypt$", 7))
        return 0;
    s += 7;
    /* Bounded so a tampered row cannot make verification eat the
     * machine; maxmem bounds the product as well. */
    if (int_field(&s, 10, 20, &log2n) || int_field(&s, 1, 32, &r) ||
        int_field(&s, 1, 16, &p) ||
        hex_field(&s, salt, sizeof salt, &saltlen) || *s++ != '$' ||
        hex_field(&s, want, sizeof want, &keylen) || *s)
        return 0;
    if (derive(password, salt, saltlen, log2n, r, p, got, keylen))
        return 0;
    int ok = CRYPTO_memcmp(got, want, keylen) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return ok;
}

/* ---- names -------------------------------------------------------------- */

/* 1..63 of [A-Za-z0-9._-]: logins, gateway names, specialties. */
static int name_valid(const char *s, size_t len)
{
    if (!len || len > 63)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

static int login_valid(const char *s)
{
    return s && name_valid(s, strlen(s));
}

/* A clinic name: 1..127 bytes, no control characters. */
static int clinic_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!n || n > 127)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* An AE title without its padding: 1..16 printable ASCII characters, no
 * backslash.  out: 17 bytes. */
static int ae_normalize(const char *in, char *out)
{
    while (*in == ' ')
        in++;
    size_t n = strlen(in);
    while (n && in[n - 1] == ' ')
        n--;
    if (!n || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (in[i] < 0x20 || in[i] > 0x7e || in[i] == '\\')
            return 0;
    memcpy(out, in, n);
    out[n] = 0;
    return 1;
}

static int token_valid(const char *t)
{
    if (!t || strlen(t) != AUTH_TOKEN_HEX)
        return 0;
    for (const char *p = t; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* A fresh bearer token (AUTH_TOKEN_HEX hex digits) in tok and the hex
 * SHA-256 we store in its place in sha (65 bytes). */
static int token_new(char *tok, char *sha, struct err *e)
{
    if (random_hex(tok, AUTH_TOKEN_HEX / 2))
        return err_set(e, ERR_INTERNAL, "no randomness for a token");
    sha256_hex(tok, AUTH_TOKEN_HEX, sha);
    return 0;
}

/* ---- small SQL helpers -------------------------------------------------- */

static int step_done(struct store *s, sqlite3_stmt *st, const char *what,
                     struct err *e)
{
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(store_db(s));
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    if (ext == SQLITE_CONSTRAINT_UNIQUE ||
        ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return err_set(e, ERR_CONFLICT, "%s: already exists", what);
    return err_set(e, ERR_DB, "%s: %s", what, sqlite3_errmsg(store_db(s)));
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    strlcpy_h(dst, v ? (const char *)v : "", n);
}

/* After stepping a SELECT of at most one row (step_rc, the row read if
 * there was one): st reset, and 0 for a row, ERR_NOTFOUND with no message
 * (the caller says what was missing) for none, or ERR_DB "what: ...". */
static int row_found(struct store *s, sqlite3_stmt *st, int step_rc,
                     const char *what, struct err *e)
{
    sqlite3_reset(st);
    if (step_rc == SQLITE_ROW)
        return 0;
    if (step_rc != SQLITE_DONE)
        return err_set(e, ERR_DB, "%s: %s", what,
                       sqlite3_errmsg(store_db(s)));
    return ERR_NOTFOUND;
}

/* The clinic id that sql (one text parameter: key) selects; row_found's
 * returns. */
static int clinic_lookup(struct store *s, const char *sql, const char *key,
                         int64_t *id, struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, sql, e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    return row_found(s, st, rc, "clinic", e);
}

static int clinic_id_of(struct store *s, const char *name, int64_t *id,
                        struct err *e)
{
    int rc = clinic_lookup(s, "SELECT id FROM clinics WHERE name = ?1",
                           name, id, e);
    if (rc == ERR_NOTFOUND)
        return err_set(e, ERR_NOTFOUND, "no clinic named '%s'", name);
    return rc;
}

/* ---- clinics, users, gateways ------------------------------------------- */

/* One calling AE title -> clinic mapping (ERR_CONFLICT if taken). */
static int ae_insert(struct store *s, const char *ae, int64_t clinic_id,
                     const char *dest, struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s,
        "INSERT INTO clinic_aes (calling_ae, clinic_id, created, dest)"
        " VALUES (?1, ?2, ?3, ?4)",
        e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, ae, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clinic_id);
    sqlite3_bind_int64(st, 3, now_ms());
    if (dest)
        sqlite3_bind_text(st, 4, dest, -1, SQLITE_STATIC);
    return step_done(s, st, "clinic AE", e);
}

int auth_clinic_add(struct store *s, const char *name, const char *kind,
                    const char *calling_ae, int64_t *id, struct err *e)
{
    char ae[17];
    if (!clinic_name_valid(name))
        return err_set(e, ERR_INVALID, "clinic name must be 1..127 "
                       "printable characters");
    if (!kind || (strcmp(kind, "rural") && strcmp(kind, "city") &&
                  strcmp(kind, "ems")))
        return err_set(e, ERR_INVALID,
                       "clinic kind must be rural, city or ems");
    if (calling_ae && !ae_normalize(calling_ae, ae))
        return err_set(e, ERR_INVALID, "bad AE title '%.20s'", calling_ae);
    sqlite3 *db = store_db(s);
    if (sqlite3_exec(db, "SAVEPOINT clinic_add", NULL, NULL, NULL))
        return err_set(e, ERR_DB, "clinic: %s", sqlite3_errmsg(db));
    sqlite3_stmt *st = store_stmt(
        s,
        "INSERT INTO clinics (name, kind, calling_ae, created)"
        " VALUES (?1, ?2, ?3, ?4)",
        e);
    int rc = ERR_DB;
    if (st) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        if (calling_ae)
            sqlite3_bind_text(st, 3, ae, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now_ms());
        rc = step_done(s, st, "clinic", e);
    }
    int64_t new_id = sqlite3_last_insert_rowid(db);
    if (!rc && calling_ae)
        rc = ae_insert(s, ae, new_id, NULL, e);
    if (rc) {
        sqlite3_exec(db, "ROLLBACK TO clinic_add; RELEASE clinic_add",
                     NULL, NULL, NULL);
        if (rc == ERR_CONFLICT)
            return err_set(e, ERR_CONFLICT,
                           "clinic name or AE title is taken");
        return rc;
    }
    sqlite3_exec(db, "RELEASE clinic_add", NULL, NULL, NULL);
    if (id)
        *id = new_id;
    return 0;
}

int auth_clinic_add_ae(struct store *s, const char *clinic,
                       const char *calling_ae, struct err *e)
{
    return auth_clinic_add_ae_dest(s, clinic, calling_ae, NULL, e);
}

int auth_clinic_add_ae_dest(struct store *s, const char *clinic,
                            const char *calling_ae, const char *dest,
                            struct err *e)
{
    char ae[17];
    int64_t id = 0;
    if (!calling_ae || !ae_normalize(calling_ae, ae))
        return err_set(e, ERR_INVALID, "bad AE title '%.20s'",
                       calling_ae ? calling_ae : "");
    int rc = clinic_id_of(s, clinic, &id, e);
    if (rc)
        return rc;
    rc = ae_insert(s, ae, id, dest, e);
    if (rc == ERR_CONFLICT)
        return err_set(e, ERR_CONFLICT, "AE title %s already belongs to a "
                       "clinic", ae);
    return rc;
}

int auth_clinic_by_ae(struct store *s, const char *calling_ae,
                      int64_t *clinic_id, struct err *e)
{
    char ae[17];
    if (!calling_ae || !ae_normalize(calling_ae, ae))
        return err_set(e, ERR_NOTFOUND, "no clinic for that AE title");
    int rc = clinic_lookup(s, "SELECT clinic_id FROM clinic_aes"
                              " WHERE calling_ae = ?1", ae, clinic_id, e);
    if (rc == ERR_NOTFOUND)
        return err_set(e, ERR_NOTFOUND, "no clinic for AE title '%s'", ae);
    return rc;
}

int auth_move_dest(struct store *s, int64_t clinic_id, const char *ae,
                   char *dest, struct err *e)
{
    char key[17];
    if (!ae || !ae_normalize(ae, key))
        return err_set(e, ERR_NOTFOUND, "no such move destination");
    sqlite3_stmt *st = store_stmt(s, "SELECT dest FROM clinic_aes"
                                     " WHERE calling_ae = ?1"
                                     " AND clinic_id = ?2"
                                     " AND dest IS NOT NULL", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clinic_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        strlcpy_h(dest, (const char *)sqlite3_column_text(st, 0), 256);
    rc = row_found(s, st, rc, "move destination", e);
    if (rc == ERR_NOTFOUND)
        return err_set(e, ERR_NOTFOUND, "no move destination '%s' for "
                       "this clinic", key);
    return rc;
}

/* Split "a, b,c" into validated names; calls fn for each.  Also checks
 * that the comma-joined list fits struct principal. */
static int specialties_each(const char *list,
                            int (*fn)(void *, const char *), void *arg,
                            struct err *e)
{
    size_t total = 0;
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        const char *a = p, *b = p + len;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a) {
            char name[64];
            if (!name_valid(a, (size_t)(b - a)))
                return err_set(e, ERR_INVALID, "bad specialty '%.*s'",
                               (int)(b - a > 40 ? 40 : b - a), a);
            memcpy(name, a, (size_t)(b - a));
            name[b - a] = 0;
            total += (size_t)(b - a) + 1;
            if (total > sizeof ((struct principal *)0)->specialties)
                return err_set(e, ERR_INVALID, "too many specialties");
            if (fn) {
                int rc = fn(arg, name);
                if (rc)
                    return rc;
            }
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

struct spec_ins {
    struct store *s;
    sqlite3_stmt *st;
    int64_t user_id;
    struct err *e;
};

static int specialty_insert(void *arg, const char *name)
{
    struct spec_ins *si = arg;
    sqlite3_bind_int64(si->st, 1, si->user_id);
    sqlite3_bind_text(si->st, 2, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(si->st);
    sqlite3_reset(si->st);
    if (rc != SQLITE_DONE)
        return err_set(si->e, ERR_DB, "specialty: %s",
                       sqlite3_errmsg(store_db(si->s)));
    return 0;
}

int auth_user_add(struct store *s, const char *login, const char *clinic,
                  const char *role, const char *specialties,
                  const char *password, int64_t *id, struct err *e)
{
    if (!login_valid(login))
        return err_set(e, ERR_INVALID, "login must be 1..63 characters of "
                       "A-Z a-z 0-9 . _ -");
    if (!role || (strcmp(role, "requester") && strcmp(role, "specialist") &&
                  strcmp(role, "admin") && strcmp(role, "crew")))
        return err_set(e, ERR_INVALID,
                       "role must be requester, specialist, admin or crew");
    if (!password || !*password)
        return err_set(e, ERR_INVALID, "empty password");
    if (strlen(password) > MAX_PASSWORD)
        return err_set(e, ERR_INVALID, "password too long");
    int rc = specialties_each(specialties, NULL, NULL, e);
    if (rc)
        return rc;
    int64_t clinic_id, ems = 0;
    if (!clinic || (rc = clinic_id_of(s, clinic, &clinic_id, e)))
        return clinic ? rc : err_set(e, ERR_NOTFOUND, "no clinic given");
    /* A crew belongs to an ambulance service, and a service has crews
     * (and admins), not a clinic's requesters or specialists. */
    if ((rc = clinic_lookup(s, "SELECT kind = 'ems' FROM clinics"
                               " WHERE name = ?1", clinic, &ems, e)))
        return rc;
    if (ems != !strcmp(role, "crew") && strcmp(role, "admin"))
        return err_set(e, ERR_INVALID, ems
                       ? "clinic '%s' is an ambulance service (kind ems): "
                         "its users are crew or admin"
                       : "role crew needs an ambulance service (clinic "
                         "kind ems), not '%s'", clinic);

    /* Checked before the (slow) hash too; the insert below still
     * decides a race. */
    sqlite3_stmt *st = store_stmt(s, "SELECT 1 FROM users WHERE login = ?1",
                                  e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return err_set(e, ERR_CONFLICT, "login '%s' exists", login);

    char hash[256];
    if ((rc = auth_password_hash(password, hash, sizeof hash, e)))
        return rc;

    sqlite3 *db = store_db(s);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
        return err_set(e, ERR_DB, "user: %s", sqlite3_errmsg(db));
    st = store_stmt(
        s,
        "INSERT INTO users (login, clinic_id, role, password, created)"
        " VALUES (?1, ?2, ?3, ?4, ?5)",
        e);
    if (!st) {
        rc = ERR_DB;
        goto fail;
    }
    sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clinic_id);
    sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now_ms());
    if ((rc = step_done(s, st, "user", e))) {
        if (rc == ERR_CONFLICT)
            err_set(e, ERR_CONFLICT, "login '%s' exists", login);
        goto fail;
    }
    struct spec_ins si = {s, NULL, sqlite3_last_insert_rowid(db), e};
    si.st = store_stmt(s,
                       "INSERT OR IGNORE INTO user_specialties"
                       " (user_id, specialty) VALUES (?1, ?2)",
                       e);
    if (!si.st) {
        rc = ERR_DB;
        goto fail;
    }
    if ((rc = specialties_each(specialties, specialty_insert, &si, e)))
        goto fail;
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) {
        rc = err_set(e, ERR_DB, "user: %s", sqlite3_errmsg(db));
        goto fail;
    }
    if (id)
        *id = si.user_id;
    return 0;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int auth_gateway_add(struct store *s, const char *clinic, const char *name,
                     char *token, struct err *e)
{
    int64_t clinic_id;
    int rc;
    if (!login_valid(name))
        return err_set(e, ERR_INVALID, "gateway name must be 1..63 "
                       "characters of A-Z a-z 0-9 . _ -");
    if (!clinic)
        return err_set(e, ERR_NOTFOUND, "no clinic given");
    if ((rc = clinic_id_of(s, clinic, &clinic_id, e)))
        return rc;
    char tok[AUTH_TOKEN_HEX + 1], sha[65];
    if ((rc = token_new(tok, sha, e)))
        return rc;
    sqlite3_stmt *st = store_stmt(
        s,
        "INSERT INTO gateways (clinic_id, name, token_sha256, created)"
        " VALUES (?1, ?2, ?3, ?4)",
        e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, clinic_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms());
    if ((rc = step_done(s, st, "gateway", e))) {
        if (rc == ERR_CONFLICT)
            err_set(e, ERR_CONFLICT, "gateway '%s' of clinic '%s' exists",
                    name, clinic);
        return rc;
    }
    memcpy(token, tok, sizeof tok);
    OPENSSL_cleanse(tok, sizeof tok);
    return 0;
}

/* ---- principals --------------------------------------------------------- */

/* Columns 0..5 of a user row: id, login, role, clinic_id, clinic name,
 * specialties. */
#define USER_COLS                                                           \
    "u.id, u.login, u.role, u.clinic_id, c.name,"                           \
    " coalesce((SELECT group_concat(specialty, ',') FROM"                   \
    " (SELECT specialty FROM user_specialties WHERE user_id = u.id"         \
    " ORDER BY specialty)), '')"

static void principal_from_row(sqlite3_stmt *st, int c,
                               struct principal *who)
{
    memset(who, 0, sizeof *who);
    who->user_id = sqlite3_column_int64(st, c);
    copy_col(who->login, sizeof who->login, st, c + 1);
    copy_col(who->role, sizeof who->role, st, c + 2);
    who->clinic_id = sqlite3_column_int64(st, c + 3);
    copy_col(who->clinic, sizeof who->clinic, st, c + 4);
    copy_col(who->specialties, sizeof who->specialties, st, c + 5);
}

/* An enabled user by login into *who and, if hash is not NULL, the
 * stored password hash (n bytes).  0, ERR_NOTFOUND (e not set) or
 * ERR_DB. */
static int user_by_login(struct store *s, const char *login,
                         struct principal *who, char *hash, size_t n,
                         struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s,
        "SELECT " USER_COLS ", u.password FROM users u"
        " JOIN clinics c ON c.id = u.clinic_id WHERE u.login = ?1"
        " AND u.disabled = 0",
        e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        principal_from_row(st, 0, who);
        if (hash)
            copy_col(hash, n, st, 6);
    }
    return row_found(s, st, rc, "login", e);
}

int auth_user_principal(struct store *s, const char *login,
                        struct principal *who, struct err *e)
{
    int rc = user_by_login(s, login, who, NULL, 0, e);
    if (rc == ERR_NOTFOUND)
        err_set(e, rc, "no user %s", login);
    return rc;
}

/* ---- login -------------------------------------------------------------- */

/* 1 if sql (?1 key, ?2 since) counts max or more failures, else 0, or
 * ERR_DB. */
static int too_many_failures(struct store *s, const char *sql,
                             const char *key, int64_t since, int max,
                             struct err *e)
{
    sqlite3_stmt *st = store_stmt(s, sql, e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since);
    int rc = sqlite3_step(st);
    int n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return err_set(e, ERR_DB, "rate limit: %s",
                       sqlite3_errmsg(store_db(s)));
    return n >= max;
}

static int rate_limited(struct store *s, const char *login,
                        const char *remote, int64_t now, struct err *e)
{
    int rc = 0;
    int64_t since = now - FAIL_WINDOW_MS;
    if (login)
        rc = too_many_failures(s,
                               "SELECT count(*) FROM login_failures"
                               " WHERE login = ?1 AND at > ?2",
                               login, since, FAIL_PER_LOGIN, e);
    if (!rc && remote && *remote)
        rc = too_many_failures(s,
                               "SELECT count(*) FROM login_failures"
                               " WHERE remote = ?1 AND at > ?2",
                               remote, since, FAIL_PER_REMOTE, e);
    return rc;
}

/* Best effort: sql deletes rows older than ?1 = before; should it fail,
 * the next call tries again. */
static void purge(struct store *s, const char *sql, int64_t before)
{
    sqlite3_stmt *st = store_stmt(s, sql, NULL);
    if (st) {
        sqlite3_bind_int64(st, 1, before);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
}

static int failure_insert(struct store *s, const char *login,
                          const char *remote, int64_t now, int64_t *slot,
                          struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s, "INSERT INTO login_failures (login, remote, at) VALUES (?1, ?2, ?3)",
        e);
    if (!st)
        return ERR_DB;
    if (login)
        sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
    if (remote && *remote)
        sqlite3_bind_text(st, 2, remote, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int rc = step_done(s, st, "login attempt", e);
    if (!rc)
        *slot = sqlite3_last_insert_rowid(store_db(s));
    return rc;
}

/* Reserve a login attempt before any scrypt work: in one write
 * transaction, so that logins on other threads (each with its own
 * connection) cannot slip in between, count the failures of the name and
 * of the address in the window and, under both limits, record this
 * attempt as a failure already.  A wrong password leaves the row as the
 * failure; a good login removes it with the name's other failures; an
 * internal error gives it back (attempt_release).  Without this, logins
 * checked in parallel all passed the count before any had failed.
 * 0 reserved (*slot is the row), 1 over a limit, or ERR_DB. */
static int attempt_reserve(struct store *s, const char *login,
                           const char *remote, int64_t now, int64_t *slot,
                           struct err *e)
{
    sqlite3 *db = store_db(s);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
        return err_set(e, ERR_DB, "rate limit: %s", sqlite3_errmsg(db));
    int rc = rate_limited(s, login, remote, now, e);
    if (!rc)
        rc = failure_insert(s, login, remote, now, slot, e);
    if (!rc && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL))
        rc = err_set(e, ERR_DB, "rate limit: %s", sqlite3_errmsg(db));
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void attempt_release(struct store *s, int64_t slot)
{
    sqlite3_stmt *st = store_stmt(s, "DELETE FROM login_failures"
                                     " WHERE id = ?1", NULL);
    if (st) {
        sqlite3_bind_int64(st, 1, slot);
        if (sqlite3_step(st) != SQLITE_DONE)
            log_error("auth: releasing a login attempt: %s",
                      sqlite3_errmsg(store_db(s)));
        sqlite3_reset(st);
    }
}

int auth_session_create(struct store *s, int64_t user_id,
                        const char *remote, char *token,
                        int64_t *expires_ms, struct err *e)
{
    char tok[AUTH_TOKEN_HEX + 1], sha[65];
    int64_t now = now_ms(), expires = now + SESSION_MS;
    int rc;
    if ((rc = token_new(tok, sha, e)))
        return rc;
    sqlite3_stmt *st = store_stmt(
        s,
        "INSERT INTO sessions (token_sha256, user_id, created, expires,"
        " revoked, remote) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, expires);
    if (remote)
        sqlite3_bind_text(st, 5, remote, -1, SQLITE_STATIC);
    rc = step_done(s, st, "session", e);
    if (rc) {
        OPENSSL_cleanse(tok, sizeof tok);
        return rc;
    }
    memcpy(token, tok, sizeof tok);
    OPENSSL_cleanse(tok, sizeof tok);
    if (expires_ms)
        *expires_ms = expires;
    return 0;
}

int auth_login(struct store *s, const char *login, const char *password,
               const char *remote, char *token, int64_t *expires_ms,
               struct principal *who, struct err *e)
{
    int64_t now = now_ms();
    int valid = login_valid(login);
    const char *key = valid ? login : NULL;
    int64_t slot = 0;
    int rc = attempt_reserve(s, key, remote, now, &slot, e);
    if (rc < 0)
        return rc;
    if (rc)
        return err_set(e, ERR_RATELIMIT,
                       "too many failed logins; try again later");

    struct principal found;
    char hash[256] = "";
    int have = 0;
    if (valid) {
        rc = user_by_login(s, login, &found, hash, sizeof hash, e);
        have = rc == 0;
        if (rc && rc != ERR_NOTFOUND) {
            attempt_release(s, slot);
            return rc;
        }
    }
    /* Unknown and invalid names pay for one scrypt too. */
    int ok = auth_password_verify(password ? password : "",
                                  have ? hash : DUMMY_HASH);
    OPENSSL_cleanse(hash, sizeof hash);
    if (!have || !ok || !password) {
        /* The reserved row is the failure. */
        purge(s, "DELETE FROM login_failures WHERE at <= ?1",
              now - FAIL_WINDOW_MS);
        return err_set(e, ERR_AUTH, "wrong login or password");
    }

    char tok[AUTH_TOKEN_HEX + 1];
    int64_t expires;
    if ((rc = auth_session_create(s, found.user_id, remote, tok, &expires,
                                  e))) {
        attempt_release(s, slot);
        return rc;
    }

    /* A good login clears its name's failures; old sessions go too. */
    sqlite3_stmt *st = store_stmt(
        s, "DELETE FROM login_failures WHERE login = ?1", NULL);
    if (st) {
        sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    purge(s, "DELETE FROM sessions WHERE expires < ?1", now - SESSION_MS);

    found.expires_ms = expires;
    sha256_hex(tok, AUTH_TOKEN_HEX, found.token_sha256);
    memcpy(token, tok, sizeof tok);
    OPENSSL_cleanse(tok, sizeof tok);
    if (expires_ms)
        *expires_ms = expires;
    if (who)
        *who = found;
    return 0;
}

int auth_token_check(struct store *s, const char *token,
                     struct principal *who, struct err *e)
{
    if (!token_valid(token))
        return err_set(e, ERR_AUTH, "invalid token");
    char sha[65];
    sha256_hex(token, AUTH_TOKEN_HEX, sha);

    sqlite3_stmt *st = store_stmt(
        s,
        "SELECT " USER_COLS ", x.expires FROM sessions x"
        " JOIN users u ON u.id = x.user_id"
        " JOIN clinics c ON c.id = u.clinic_id"
        " WHERE x.token_sha256 = ?1 AND x.revoked = 0 AND x.expires > ?2"
        " AND u.disabled = 0",
        e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && who) {
        principal_from_row(st, 0, who);
        who->expires_ms = sqlite3_column_int64(st, 6);
        memcpy(who->token_sha256, sha, sizeof sha);
    }
    if ((rc = row_found(s, st, rc, "token", e)) != ERR_NOTFOUND)
        return rc;

    st = store_stmt(s,
                    "SELECT g.name, g.clinic_id, c.name, g.id"
                    " FROM gateways g"
                    " JOIN clinics c ON c.id = g.clinic_id"
                    " WHERE g.token_sha256 = ?1 AND g.revoked = 0",
                    e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && who) {
        memset(who, 0, sizeof *who);
        const unsigned char *name = sqlite3_column_text(st, 0);
        snprintf(who->login, sizeof who->login, "gateway:%.54s",
                 name ? (const char *)name : "");
        strlcpy_h(who->role, "gateway", sizeof who->role);
        who->clinic_id = sqlite3_column_int64(st, 1);
        copy_col(who->clinic, sizeof who->clinic, st, 2);
        who->gateway_id = sqlite3_column_int64(st, 3);
        memcpy(who->token_sha256, sha, sizeof sha);
    }
    if ((rc = row_found(s, st, rc, "token", e)) != ERR_NOTFOUND)
        return rc;
    return err_set(e, ERR_AUTH, "unknown, expired or revoked token");
}

int auth_logout(struct store *s, const char *token, struct err *e)
{
    if (!token_valid(token))
        return err_set(e, ERR_AUTH, "invalid token");
    char sha[65];
    sha256_hex(token, AUTH_TOKEN_HEX, sha);
    sqlite3_stmt *st = store_stmt(
        s, "UPDATE sessions SET revoked = 1 WHERE token_sha256 = ?1", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    int rc = step_done(s, st, "logout", e);
    if (rc)
        return rc;
    if (sqlite3_changes(store_db(s)) == 0)
        return err_set(e, ERR_AUTH, "unknown session token");
    return 0;
}

int auth_token_live(struct store *s, const struct principal *who)
{
    sqlite3_stmt *st = store_stmt(
        s,
        "SELECT EXISTS (SELECT 1 FROM sessions x"
        "  JOIN users u ON u.id = x.user_id WHERE x.token_sha256 = ?1"
        "  AND x.revoked = 0 AND x.expires > ?2 AND u.disabled = 0)"
        " OR EXISTS (SELECT 1 FROM gateways WHERE token_sha256 = ?1"
        "  AND revoked = 0)",
        NULL);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, who->token_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    int rc = sqlite3_step(st);
    int live = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? live : ERR_DB;
}

int64_t auth_epoch(struct store *s)
{
    sqlite3_stmt *st = store_stmt(s, "SELECT n FROM auth_epoch", NULL);
    if (!st)
        return ERR_DB;
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : ERR_DB;
    sqlite3_reset(st);
    return n;
}

int auth_user_disable(struct store *s, const char *login, struct err *e)
{
    sqlite3 *db = store_db(s);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
        return err_set(e, ERR_DB, "disable: %s", sqlite3_errmsg(db));
    sqlite3_stmt *st = store_stmt(
        s, "UPDATE users SET disabled = 1 WHERE login = ?1", e);
    int rc = st ? 0 : ERR_DB;
    if (!rc) {
        sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
        rc = step_done(s, st, "disable", e);
    }
    if (!rc && !sqlite3_changes(db))
        rc = err_set(e, ERR_NOTFOUND, "no user %s", login);
    if (!rc) {
        st = store_stmt(s, "UPDATE sessions SET revoked = 1 WHERE revoked = 0"
                        " AND user_id = (SELECT id FROM users"
                        " WHERE login = ?1)", e);
        rc = st ? 0 : ERR_DB;
    }
    if (!rc) {
        sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
        rc = step_done(s, st, "disable", e);
    }
    if (!rc && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL))
        rc = err_set(e, ERR_DB, "disable: %s", sqlite3_errmsg(db));
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
