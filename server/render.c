/*
 * render — the rendered-image cache (see render.h).
 *
 * A chained hash table over the keys' canonical text finds an entry; a
 * doubly linked list orders entries from most to least recently used, and
 * eviction takes from its tail.  The table doubles when it is as full as
 * it is long, so chains stay short; it never shrinks (it is small: one
 * pointer per entry).
 */
#include "render.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/dicom.h"
#include "../proto/util.h"

#define KEY_MAX 256

struct entry {
    struct entry *next_hash;
    struct entry *prev, *next;   /* recency: head = most recent */
    uint64_t hash;
    size_t cost;                 /* bytes charged against the budget */
    size_t len;
    unsigned char *jpeg;
    char key[];                  /* canonical text, NUL-terminated */
};

struct render_cache {
    pthread_mutex_t mu;
    struct entry **table;
    size_t nbuckets;             /* a power of two */
    struct entry *head, *tail;
    size_t max_bytes;
    struct render_cache_stats st;
};

size_t render_key_text(const struct render_key *k, char *out, size_t n)
{
    /* %.17g keeps every double exactly; window values only count for an
     * explicit window */
    int explicit_w = k->window_mode == DCM_WINDOW_EXPLICIT;
    int r = snprintf(out, n, "%.64s|f%d|m%d|c%.17g|w%.17g|v%dx%d|q%d",
                     k->sha256, k->frame, k->window_mode,
                     explicit_w ? k->center : 0.0,
                     explicit_w ? k->width : 0.0, k->max_width,
                     k->max_height, k->quality);
    if (r < 0)
        r = 0;
    return (size_t)r < n ? (size_t)r : n ? n - 1 : 0;
}

void render_etag(const struct render_key *k, char out[35])
{
    char text[KEY_MAX], hex[65];
    size_t n = render_key_text(k, text, sizeof(text));

    sha256_hex(text, n, hex);
    snprintf(out, 35, "\"%.32s\"", hex);
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ull;     /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

struct render_cache *render_cache_new(size_t max_bytes)
{
    struct render_cache *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->nbuckets = 256;
    c->table = calloc(c->nbuckets, sizeof(*c->table));
    if (!c->table) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes ? max_bytes : RENDER_CACHE_DEFAULT;
    c->st.max_bytes = c->max_bytes;
    return c;
}

void render_cache_free(struct render_cache *c)
{
    struct entry *e, *next;

    if (!c)
        return;
    for (e = c->head; e; e = next) {
        next = e->next;
        free(e->jpeg);
        free(e);
    }
    free(c->table);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- internals (called with the mutex held) ---------------------------- */

static struct entry **slot_of(struct render_cache *c, const char *key,
                              uint64_t h)
{
    struct entry **p = &c->table[h & (c->nbuckets - 1)];

    while (*p && ((*p)->hash != h || strcmp((*p)->key, key)))
        p = &(*p)->next_hash;
    return p;
}

static void unlink_lru(struct render_cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(struct render_cache *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

/* Take e out of the table and the list, and free it. */
static void drop(struct render_cache *c, struct entry *e)
{
    struct entry **p = slot_of(c, e->key, e->hash);

    *p = e->next_hash;
    unlink_lru(c, e);
    c->st.bytes -= e->cost;
    c->st.entries--;
    free(e->jpeg);
    free(e);
}

static void grow(struct render_cache *c)
{
    size_t n = c->nbuckets * 2;
    struct entry **t = calloc(n, sizeof(*t));

    if (!t)
        return;                 /* longer chains; still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct entry *e = c->table[i], *next;

        for (; e; e = next) {
            next = e->next_hash;
            e->next_hash = t[e->hash & (n - 1)];
            t[e->hash & (n - 1)] = e;
        }
    }
    free(c->table);
    c->table = t;
    c->nbuckets = n;
}

/* ---- public ------------------------------------------------------------ */

unsigned char *render_cache_get(struct render_cache *c,
                                const struct render_key *k, size_t *len)
{
    char key[KEY_MAX];
    unsigned char *copy = NULL;
    struct entry *e;
    uint64_t h;

    *len = 0;
    if (!c)
        return NULL;
    render_key_text(k, key, sizeof(key));
    h = hash_text(key);
    pthread_mutex_lock(&c->mu);
    e = *slot_of(c, key, h);
    if (e) {
        copy = malloc(e->len ? e->len : 1);
        if (copy) {
            memcpy(copy, e->jpeg, e->len);
            *len = e->len;
            unlink_lru(c, e);
            push_front(c, e);
            c->st.hits++;
        }
    } else {
        c->st.misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return copy;
}

int render_cache_put(struct render_cache *c, const struct render_key *k,
                     const unsigned char *jpeg, size_t len)
{
    char key[KEY_MAX];
    struct entry *e, **p;
    size_t klen, cost;
    uint64_t h;

    if (!c)
        return -1;
    klen = render_key_text(k, key, sizeof(key));
    cost = sizeof(*e) + klen + 1 + len;
    if (cost > c->max_bytes / 4)
        return -1;
    e = malloc(sizeof(*e) + klen + 1);
    if (!e)
        return -1;
    e->jpeg = malloc(len ? len : 1);
    if (!e->jpeg) {
        free(e);
        return -1;
    }
    memcpy(e->jpeg, jpeg, len);
    memcpy(e->key, key, klen + 1);
    e->len = len;
    e->cost = cost;
    h = e->hash = hash_text(key);

    pthread_mutex_lock(&c->mu);
    p = slot_of(c, key, h);
    if (*p)
        drop(c, *p);
    while (c->tail && c->st.bytes + cost > c->max_bytes) {
        drop(c, c->tail);
        c->st.evictions++;
    }
    p = slot_of(c, key, h);
    e->next_hash = NULL;
    *p = e;
    push_front(c, e);
    c->st.bytes += cost;
    c->st.entries++;
    c->st.insertions++;
    if (c->st.entries > c->nbuckets)
        grow(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void render_cache_stats(struct render_cache *c,
                        struct render_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
