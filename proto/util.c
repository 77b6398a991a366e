/*
 * util — see util.h.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

int err_set(struct err *e, int code, const char *fmt, ...)
{
    if (e) {
        char msg[sizeof e->msg];    /* the arguments may be e->msg itself */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        e->code = code;
        memcpy(e->msg, msg, sizeof msg);
    }
    return code;
}

const char *err_name(int code)
{
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_IO: return "io";
    case ERR_INVALID: return "invalid";
    case ERR_NOTFOUND: return "not_found";
    case ERR_CONFLICT: return "conflict";
    case ERR_TOOBIG: return "too_big";
    case ERR_AUTH: return "unauthorized";
    case ERR_RATELIMIT: return "rate_limited";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_DB: return "database";
    case ERR_FORBIDDEN: return "forbidden";
    default: return "internal";
    }
}

int path_join(char *out, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (*b == '/')
        b++;
    int w = snprintf(out, n, "%.*s/%s", (int)la, a, b);
    return (w < 0 || (size_t)w >= n) ? ERR_TOOBIG : 0;
}

int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    if (strlcpy_h(buf, path, sizeof buf) >= sizeof buf)
        return ERR_TOOBIG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, mode) && errno != EEXIST)
            return ERR_IO;
        *p = '/';
    }
    if (mkdir(buf, mode) && errno != EEXIST)
        return ERR_IO;
    return 0;
}

int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ERR_IO;
    int rc = fsync(fd);
    close(fd);
    return rc ? ERR_IO : 0;
}

int read_file(const char *path, size_t max, unsigned char **out, size_t *len,
              struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO,
                       "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return err_set(e, ERR_IO, "stat %s: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return err_set(e, ERR_TOOBIG, "%s is larger than %zu bytes", path,
                       max);
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return err_set(e, ERR_INTERNAL, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return err_set(e, ERR_IO, "read %s: %s", path,
                           r ? strerror(errno) : "short read");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *len = got;
    return 0;
}

int write_file_durable(const char *path, const void *buf, size_t len,
                       mode_t mode, struct err *e)
{
    char tmp[4096], dir[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path) >= (int)sizeof tmp)
        return err_set(e, ERR_TOOBIG, "path too long");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return err_set(e, ERR_IO, "create %s: %s", tmp, strerror(errno));
    const unsigned char *p = buf;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int saved = errno;
            close(fd);
            unlink(tmp);
            return err_set(e, ERR_IO, "write %s: %s", tmp, strerror(saved));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, mode) || fsync(fd) || close(fd)) {
        unlink(tmp);
        return err_set(e, ERR_IO, "sync %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path)) {
        int saved = errno;
        unlink(tmp);
        return err_set(e, ERR_IO, "rename %s: %s", path, strerror(saved));
    }
    strlcpy_h(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    else
        strcpy(dir, ".");
    if (fsync_dir(dir))
        return err_set(e, ERR_IO, "fsync dir %s: %s", dir, strerror(errno));
    return 0;
}

void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

void sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
    hex_encode(md, 32, out);
}

int sha256_file(const char *path, char out[65], uint64_t *size, struct err *e)
{
    return sha256_file_from(path, 0, out, size, e);
}

int sha256_file_from(const char *path, uint64_t from, char out[65],
                     uint64_t *size, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO,
                       "open %s: %s", path, strerror(errno));
    if (from && lseek(fd, (off_t)from, SEEK_SET) < 0) {
        int saved = errno;
        close(fd);
        return err_set(e, ERR_IO, "seek %s: %s", path, strerror(saved));
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[65536];
    uint64_t total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            EVP_MD_CTX_free(ctx);
            close(fd);
            return err_set(e, ERR_IO, "read %s: %s", path, strerror(saved));
        }
        EVP_DigestUpdate(ctx, buf, (size_t)r);
        total += (uint64_t)r;
    }
    close(fd);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    hex_encode(md, 32, out);
    if (size)
        *size = total;
    return 0;
}

int random_hex(char *out, size_t nbytes)
{
    unsigned char buf[128];
    if (nbytes > sizeof buf || RAND_bytes(buf, (int)nbytes) != 1)
        return ERR_INTERNAL;
    hex_encode(buf, nbytes, out);
    return 0;
}

double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void iso8601_ms(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", base, (int)(ms % 1000));
}

int line_take(const unsigned char *p, size_t avail, char *out, size_t n,
              size_t *used)
{
    const unsigned char *nl = memchr(p, '\n', avail);
    if (!nl)
        return 0;
    size_t k = (size_t)(nl - p);
    size_t len = k && nl[-1] == '\r' ? k - 1 : k;
    if (len >= n)
        return ERR_TOOBIG;
    memcpy(out, p, len);
    out[len] = 0;
    *used = k + 1;
    return 1;
}

size_t strlcpy_h(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n) {
        size_t c = len < n - 1 ? len : n - 1;
        memcpy(dst, src, c);
        dst[c] = 0;
    }
    return len;
}
