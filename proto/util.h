/*
 * util — the small helpers every Hashi program shares: the one error type,
 * paths and durable files, hashing, random tokens, clocks.
 *
 * Functions return 0 on success or a negative ERR_* code; when they take a
 * struct err they also write a human-readable reason into it.
 */
#ifndef HASHI_UTIL_H
#define HASHI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    ERR_OK = 0,
    ERR_IO = -1,          /* file system or socket failed */
    ERR_INVALID = -2,     /* input is malformed or breaks a rule */
    ERR_NOTFOUND = -3,
    ERR_CONFLICT = -4,    /* exists with other content / lost a race */
    ERR_TOOBIG = -5,
    ERR_AUTH = -6,        /* bad credentials or token */
    ERR_RATELIMIT = -7,
    ERR_UNSUPPORTED = -8,
    ERR_DB = -9,          /* SQLite failed */
    ERR_INTERNAL = -10,
    ERR_FORBIDDEN = -11,
};

struct err {
    int code;
    char msg[256];
};

/* Sets e (if not NULL) and returns code, so callers can
 * `return err_set(e, ERR_IO, "open %s: %s", p, strerror(errno));`
 * An argument may be e->msg itself (a reason prefixed). */
int err_set(struct err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "io", "invalid", ... for an ERR_* code. */
const char *err_name(int code);

/* Joins a and b with one '/'; ERR_TOOBIG if it does not fit. */
int path_join(char *out, size_t n, const char *a, const char *b);
/* mkdir -p. */
int mkdir_p(const char *path, mode_t mode);
/* fsync the directory itself, after a rename or create inside it. */
int fsync_dir(const char *dir);
/* Whole file into a malloc'd buffer (NUL-terminated, len excludes it);
 * ERR_TOOBIG above max bytes.  Caller frees *out. */
int read_file(const char *path, size_t max, unsigned char **out, size_t *len,
              struct err *e);
/* Write buf to path durably: temp file beside it, fsync, rename, fsync dir. */
int write_file_durable(const char *path, const void *buf, size_t len,
                       mode_t mode, struct err *e);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* SHA-256 as 64 hex chars + NUL. */
void sha256_hex(const void *buf, size_t len, char out[65]);
int sha256_file(const char *path, char out[65], uint64_t *size, struct err *e);
/* The same over the bytes from offset from on (*size: their count). */
int sha256_file_from(const char *path, uint64_t from, char out[65],
                     uint64_t *size, struct err *e);
/* nbytes of OpenSSL RAND as hex (2*nbytes+1 bytes into out). */
int random_hex(char *out, size_t nbytes);

/* Clocks: monotonic seconds; wall-clock milliseconds since the epoch;
 * "2026-11-28T11:23:48.123Z". */
double now_mono(void);
int64_t now_ms(void);
void iso8601_ms(int64_t ms, char out[32]);

/* Take one line (ended by LF, an optional CR before it dropped) from the
 * avail bytes at p into out (n bytes, NUL-terminated).  Returns 1 and sets
 * *used to the bytes consumed (LF included), 0 when p holds no complete
 * line yet, ERR_TOOBIG when the line does not fit in out. */
int line_take(const unsigned char *p, size_t avail, char *out, size_t n,
              size_t *used);

/* Copies at most n-1 bytes and always terminates; returns strlen(src). */
size_t strlcpy_h(char *dst, const char *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
