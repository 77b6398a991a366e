/*
 * render — the rendered-image cache: JPEGs already rendered, kept in
 * memory by what decides their bytes, least recently used first out.
 *
 * A rendered image is a pure function of the blob (immutable, named by its
 * SHA-256) and the rendering options (frame, window, viewport, quality),
 * so an entry never goes stale; it only goes when the cache is over its
 * byte budget.  The key's text form also names the image in the HTTP
 * ETag (render_etag), so a client that has it gets 304 without a render.
 *
 * The budget counts each entry's JPEG bytes plus its bookkeeping.  An
 * image larger than a quarter of the budget is not kept (it would push
 * out everything else).
 *
 * Thread-safety: every function may be called from any thread; a mutex
 * inside guards the cache.
 */
#ifndef HASHI_RENDER_H
#define HASHI_RENDER_H

#include <stddef.h>
#include <stdint.h>

#define RENDER_CACHE_DEFAULT (64u << 20)   /* bytes */

/* Everything that decides a rendered image's bytes.  Fill it completely
 * (memset first): all fields are part of the key. */
struct render_key {
    char sha256[65];      /* the blob's */
    int frame;            /* 0-based; -1: a WADO-RS metadata answer, sha256
                             the digest of what decides it (wado_meta.c) */
    int window_mode;      /* DCM_WINDOW_* */
    double center, width; /* DCM_WINDOW_EXPLICIT only; else ignored */
    int max_width, max_height;  /* 0 = no limit */
    int quality;          /* 0 = the default */
};

struct render_cache_stats {
    uint64_t hits, misses, insertions, evictions;
    size_t bytes;         /* charged against the budget, now */
    size_t entries;
    size_t max_bytes;
};

struct render_cache;

/* A cache of at most max_bytes (0 = RENDER_CACHE_DEFAULT).  NULL when out
 * of memory.  Free with render_cache_free (NULL is fine). */
struct render_cache *render_cache_new(size_t max_bytes);
void render_cache_free(struct render_cache *c);

/* The key's canonical text (what the cache compares), into out (n bytes;
 * 256 is always enough).  Returns its length. */
size_t render_key_text(const struct render_key *k, char *out, size_t n);

/* A strong ETag for the image of key k: a quoted hex digest of the key's
 * text, 34 characters plus the NUL. */
void render_etag(const struct render_key *k, char out[35]);

/* A malloc'd copy of the cached image of k (caller frees) and its length,
 * marked most recently used; NULL if not cached (or no memory for the
 * copy).  c may be NULL (always a miss). */
unsigned char *render_cache_get(struct render_cache *c,
                                const struct render_key *k, size_t *len);

/* Keep a copy of the image of k (replacing an entry of the same key),
 * evicting least recently used entries to stay within the budget.
 * 0, or -1 if it was not kept (too large, no memory, c NULL). */
int render_cache_put(struct render_cache *c, const struct render_key *k,
                     const unsigned char *jpeg, size_t len);

void render_cache_stats(struct render_cache *c,
                        struct render_cache_stats *out);

#endif
