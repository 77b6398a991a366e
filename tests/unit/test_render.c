/*
 * test_render — the rendered-image cache (server/render.c): hits and
 * misses, which key fields tell images apart, replacement, eviction of
 * the least recently used by bytes, refusal of images too large, ETags.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../proto/dicom.h"
#include "../../server/render.h"

static void key_of(struct render_key *k, int n)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->sha256, sizeof(k->sha256), "%064d", n);
}

/* len bytes of a pattern that names n, so a wrong entry is noticed */
static unsigned char *image(int n, size_t len)
{
    unsigned char *b = malloc(len);

    assert_non_null(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(n * 31 + i);
    return b;
}

static void expect_image(struct render_cache *c, const struct render_key *k,
                         int n, size_t len)
{
    size_t got = 0;
    unsigned char *want = image(n, len);
    unsigned char *b = render_cache_get(c, k, &got);

    assert_non_null(b);
    assert_int_equal(got, len);
    assert_memory_equal(b, want, len);
    free(b);
    free(want);
}

static void expect_miss(struct render_cache *c, const struct render_key *k)
{
    size_t got = 99;

    assert_null(render_cache_get(c, k, &got));
    assert_int_equal(got, 0);
}

static void test_hit_miss(void **state)
{
    struct render_cache *c = render_cache_new(0);
    struct render_cache_stats st;
    struct render_key k;
    unsigned char *img = image(1, 5000);

    (void)state;
    assert_non_null(c);
    key_of(&k, 1);
    expect_miss(c, &k);
    assert_int_equal(render_cache_put(c, &k, img, 5000), 0);
    expect_image(c, &k, 1, 5000);
    /* the cache keeps its own copy */
    memset(img, 0, 5000);
    expect_image(c, &k, 1, 5000);
    render_cache_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.insertions, 1);
    assert_int_equal(st.entries, 1);
    assert_true(st.bytes >= 5000 && st.bytes < 5000 + 512);
    assert_int_equal(st.max_bytes, RENDER_CACHE_DEFAULT);
    free(img);
    render_cache_free(c);
}

/* Every field of the key tells images apart; a window only counts when
 * it is explicit. */
static void test_key_fields(void **state)
{
    struct render_cache *c = render_cache_new(1 << 20);
    struct render_key base, k;
    unsigned char *img = image(7, 100);
    char a[256], b[256];

    (void)state;
    key_of(&base, 7);
    base.window_mode = DCM_WINDOW_EXPLICIT;
    base.center = 40;
    base.width = 80;
    assert_int_equal(render_cache_put(c, &base, img, 100), 0);
    expect_image(c, &base, 7, 100);

    for (int f = 0; f < 8; f++) {
        k = base;
        switch (f) {
        case 0: k.sha256[63] = '1'; break;
        case 1: k.frame = 1; break;
        case 2: k.window_mode = DCM_WINDOW_DEFAULT; break;
        case 3: k.center = 40.000001; break;
        case 4: k.width = 81; break;
        case 5: k.max_width = 256; break;
        case 6: k.max_height = 256; break;
        case 7: k.quality = 80; break;
        }
        expect_miss(c, &k);
        render_key_text(&k, a, sizeof(a));
        render_key_text(&base, b, sizeof(b));
        assert_string_not_equal(a, b);
    }
    /* center/width do not matter for the file's own window */
    key_of(&k, 8);
    k.center = 1;
    k.width = 2;
    assert_int_equal(render_cache_put(c, &k, img, 100), 0);
    k.center = 3;
    k.width = 4;
    expect_image(c, &k, 7, 100);
    free(img);
    render_cache_free(c);
}

static void test_replace(void **state)
{
    struct render_cache *c = render_cache_new(1 << 20);
    struct render_cache_stats st;
    struct render_key k;
    unsigned char *a = image(1, 300), *b = image(2, 700);

    (void)state;
    key_of(&k, 3);
    assert_int_equal(render_cache_put(c, &k, a, 300), 0);
    assert_int_equal(render_cache_put(c, &k, b, 700), 0);
    expect_image(c, &k, 2, 700);
    render_cache_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_true(st.bytes >= 700 && st.bytes < 700 + 512);
    free(a);
    free(b);
    render_cache_free(c);
}

/* A budget for about ten 10 kB images: the eleventh pushes out the least
 * recently used, and a get makes an entry recent. */
static void test_eviction_by_bytes(void **state)
{
    const size_t len = 10000, budget = 10 * (len + 400);
    struct render_cache *c = render_cache_new(budget);
    struct render_cache_stats st;
    struct render_key k[12];
    unsigned char *img[12];

    (void)state;
    for (int i = 0; i < 12; i++) {
        key_of(&k[i], 100 + i);
        img[i] = image(i, len);
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(render_cache_put(c, &k[i], img[i], len), 0);
    render_cache_stats(c, &st);
    assert_int_equal(st.entries, 10);
    assert_int_equal(st.evictions, 0);
    assert_true(st.bytes <= budget);

    expect_image(c, &k[0], 0, len);          /* 0 is now the most recent */
    assert_int_equal(render_cache_put(c, &k[10], img[10], len), 0);
    render_cache_stats(c, &st);
    assert_int_equal(st.evictions, 1);
    assert_true(st.bytes <= budget);
    expect_miss(c, &k[1]);                   /* the least recent went */
    expect_image(c, &k[0], 0, len);
    expect_image(c, &k[10], 10, len);
    for (int i = 2; i < 10; i++)
        expect_image(c, &k[i], i, len);

    /* a bigger image pushes out as many as it needs, least recent first:
     * 0 then 10 (the loop above made 2..9 more recent) */
    unsigned char *big = image(11, 2 * len);
    assert_int_equal(render_cache_put(c, &k[11], big, 2 * len), 0);
    expect_miss(c, &k[0]);
    expect_miss(c, &k[10]);
    expect_image(c, &k[2], 2, len);
    expect_image(c, &k[11], 11, 2 * len);
    render_cache_stats(c, &st);
    assert_int_equal(st.evictions, 3);
    assert_true(st.bytes <= budget);
    free(big);
    for (int i = 0; i < 12; i++)
        free(img[i]);
    render_cache_free(c);
}

/* Many entries: the table grows, every entry stays findable. */
static void test_many(void **state)
{
    struct render_cache *c = render_cache_new(64u << 20);
    struct render_cache_stats st;
    struct render_key k;
    unsigned char *img = image(5, 64);

    (void)state;
    for (int i = 0; i < 5000; i++) {
        key_of(&k, i);
        k.frame = i % 7;
        assert_int_equal(render_cache_put(c, &k, img, 64), 0);
    }
    for (int i = 0; i < 5000; i++) {
        key_of(&k, i);
        k.frame = i % 7;
        expect_image(c, &k, 5, 64);
    }
    render_cache_stats(c, &st);
    assert_int_equal(st.entries, 5000);
    assert_int_equal(st.evictions, 0);
    free(img);
    render_cache_free(c);
}

static void test_too_large_and_null(void **state)
{
    struct render_cache *c = render_cache_new(100000);
    struct render_cache_stats st;
    struct render_key k;
    unsigned char *img = image(9, 30000);

    (void)state;
    key_of(&k, 9);
    /* over a quarter of the budget: not kept, nothing else disturbed */
    assert_int_equal(render_cache_put(c, &k, img, 30000), -1);
    expect_miss(c, &k);
    assert_int_equal(render_cache_put(c, &k, img, 20000), 0);
    render_cache_stats(c, &st);
    assert_int_equal(st.entries, 1);

    /* no cache: every get misses, every put refuses */
    assert_int_equal(render_cache_put(NULL, &k, img, 10), -1);
    expect_miss(NULL, &k);
    render_cache_stats(NULL, &st);
    assert_int_equal(st.entries, 0);
    render_cache_free(NULL);
    free(img);
    render_cache_free(c);
}

static void test_etag(void **state)
{
    struct render_key a, b;
    char ea[35], ea2[35], eb[35];

    (void)state;
    key_of(&a, 1);
    b = a;
    render_etag(&a, ea);
    render_etag(&a, ea2);
    assert_string_equal(ea, ea2);            /* stable */
    assert_int_equal(strlen(ea), 34);
    assert_int_equal(ea[0], '"');
    assert_int_equal(ea[33], '"');
    for (int i = 1; i < 33; i++)
        assert_non_null(strchr("0123456789abcdef", ea[i]));
    b.max_width = 128;
    render_etag(&b, eb);
    assert_string_not_equal(ea, eb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss),
        cmocka_unit_test(test_key_fields),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_eviction_by_bytes),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_too_large_and_null),
        cmocka_unit_test(test_etag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
