/*
 * test_multipart — the streaming multipart/related parser of STOW-RS.
 *
 * Every body is fed whole, byte by byte, split in two at every offset, and
 * in random chunk sizes; the parts seen (headers, exact bytes, ends) must
 * be the same each time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/multipart.h"

#define MAXPARTS 16

struct seen {
    int nparts;
    int begun, ended;
    char ctype[MAXPARTS][128];
    char other[MAXPARTS][128];     /* value of X-Other, if any */
    size_t nheaders[MAXPARTS];
    unsigned char *data[MAXPARTS];
    size_t len[MAXPARTS];
    int fail_at_begin;             /* return ERR_IO from part_begin #n */
    int data_calls;
};

static int on_begin(void *arg, const struct multipart_part *p)
{
    struct seen *s = arg;
    const char *v;

    assert_int_equal(p->index, s->begun);
    assert_true(s->begun < MAXPARTS);
    if (s->fail_at_begin && s->begun + 1 == s->fail_at_begin)
        return ERR_IO;
    v = multipart_part_header(p, "content-type");
    snprintf(s->ctype[s->begun], 128, "%s", v ? v : "");
    v = multipart_part_header(p, "X-OTHER");
    snprintf(s->other[s->begun], 128, "%s", v ? v : "");
    s->nheaders[s->begun] = p->nheaders;
    s->begun++;
    s->nparts = s->begun;
    return 0;
}

static int on_data(void *arg, const unsigned char *d, size_t n)
{
    struct seen *s = arg;
    int k = s->begun - 1;

    assert_true(k >= 0);
    assert_int_equal(s->ended, k);         /* data only inside a part */
    assert_true(n > 0);
    s->data_calls++;
    s->data[k] = realloc(s->data[k], s->len[k] + n);
    memcpy(s->data[k] + s->len[k], d, n);
    s->len[k] += n;
    return 0;
}

static int on_end(void *arg)
{
    struct seen *s = arg;

    s->ended++;
    assert_int_equal(s->ended, s->begun);
    return 0;
}

static const struct multipart_cb cbs = { on_begin, on_data, on_end };

static void seen_free(struct seen *s)
{
    for (int i = 0; i < MAXPARTS; i++)
        free(s->data[i]);
    memset(s, 0, sizeof(*s));
}

/* Feed body in the given chunk sizes (sizes cycle; 0 = whole).  Returns
 * the first error of feed or finish, 0 if none. */
static int run(const char *boundary, const void *body, size_t len,
               const size_t *sizes, size_t nsizes, struct seen *s,
               struct err *e)
{
    struct multipart *m;
    size_t off = 0, k = 0;
    int rc = 0;

    memset(e, 0, sizeof(*e));
    m = multipart_new(boundary, &cbs, s, e);
    assert_non_null(m);
    while (off < len) {
        size_t n = nsizes ? sizes[k++ % nsizes] : len;
        if (n > len - off)
            n = len - off;
        rc = multipart_feed(m, (const char *)body + off, n, e);
        if (rc < 0)
            break;
        off += n;
    }
    if (!rc)
        rc = multipart_finish(m, e);
    multipart_free(m);
    return rc;
}

struct expect {
    int nparts;
    const char *ctype[MAXPARTS];
    const char *data[MAXPARTS];
    size_t len[MAXPARTS];
};

static void check(const struct seen *s, const struct expect *x)
{
    assert_int_equal(s->nparts, x->nparts);
    assert_int_equal(s->ended, x->nparts);
    for (int i = 0; i < x->nparts; i++) {
        assert_string_equal(s->ctype[i], x->ctype[i]);
        assert_int_equal(s->len[i], x->len[i]);
        if (x->len[i])
            assert_memory_equal(s->data[i], x->data[i], x->len[i]);
    }
}

/* All feeding patterns must give exactly x. */
static void all_ways(const char *boundary, const void *body, size_t len,
                     const struct expect *x)
{
    struct seen s;
    struct err e;
    size_t one = 1;
    size_t odd[] = { 3, 7, 1, 64, 2, 5 };

    memset(&s, 0, sizeof(s));
    assert_int_equal(run(boundary, body, len, NULL, 0, &s, &e), 0);
    check(&s, x);
    seen_free(&s);

    assert_int_equal(run(boundary, body, len, &one, 1, &s, &e), 0);
    check(&s, x);
    seen_free(&s);

    assert_int_equal(run(boundary, body, len, odd, 6, &s, &e), 0);
    check(&s, x);
    seen_free(&s);

    for (size_t cut = 1; cut < len; cut++) {
        size_t two[] = { cut, len };
        assert_int_equal(run(boundary, body, len, two, 2, &s, &e), 0);
        check(&s, x);
        seen_free(&s);
    }

    srand(1234);
    for (int round = 0; round < 50; round++) {
        size_t sizes[32];
        for (int i = 0; i < 32; i++)
            sizes[i] = 1 + (size_t)rand() % 23;
        assert_int_equal(run(boundary, body, len, sizes, 32, &s, &e), 0);
        check(&s, x);
        seen_free(&s);
    }
}

static void test_two_parts(void **state)
{
    (void)state;
    const char body[] =
        "--XyZ\r\n"
        "Content-Type: application/dicom\r\n"
        "\r\n"
        "first part\r\nwith CRLF inside\r\n"
        "--XyZ\r\n"
        "Content-Type: application/dicom\r\n"
        "X-Other: two\r\n"
        "\r\n"
        "second"
        "\r\n--XyZ--\r\n";
    struct expect x = { 2, { "application/dicom", "application/dicom" },
                        { "first part\r\nwith CRLF inside", "second" },
                        { 28, 6 } };
    all_ways("XyZ", body, sizeof(body) - 1, &x);
}

static void test_preamble_epilogue_padding(void **state)
{
    (void)state;
    const char body[] =
        "This is the preamble.  --b is not a boundary here.\r\n"
        "--b \t\r\n"                 /* transport padding */
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alpha\r\n"
        "--b--\r\n"
        "epilogue with --b and \r\n--b inside, ignored\r\n";
    struct expect x = { 1, { "text/plain" }, { "alpha" }, { 5 } };
    all_ways("b", body, sizeof(body) - 1, &x);
}

static void test_boundary_like_data(void **state)
{
    (void)state;
    /* Prefixes of the delimiter, the boundary without its CRLF, CRs and
     * dashes: all data. */
    const char data[] =
        "--bound\r\n-\r\n--\r\n--boun\r\r\n--bounX--bound";
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "--bound\r\nContent-Type: application/dicom\r\n\r\n"
                     "%s\r\n--bound--", data);
    struct expect x = { 1, { "application/dicom" }, { data },
                        { sizeof(data) - 1 } };
    /* "--bound" at the very start of the data is preceded by the header
     * block's CRLF CRLF, i.e. it is data: the delimiter needs its own
     * CRLF. */
    all_ways("bound", body, (size_t)n, &x);
}

static void test_binary_data(void **state)
{
    (void)state;
    unsigned char data[3000];
    unsigned char body[4000];
    size_t n = 0;
    const char *head = "--0123456789abcdef\r\n\r\n";
    const char *tail = "\r\n--0123456789abcdef--\r\n";

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)((i * 7 + (i >> 3)) & 0xff);
    /* sprinkle CR LF and near-boundaries */
    memcpy(data + 100, "\r\n--0123456789abcde", 19);
    memcpy(data + 500, "\r\r\n\r\n-", 6);
    memcpy(body, head, strlen(head));
    n = strlen(head);
    memcpy(body + n, data, sizeof(data));
    n += sizeof(data);
    memcpy(body + n, tail, strlen(tail));
    n += strlen(tail);
    struct expect x = { 1, { "" }, { (const char *)data },
                        { sizeof(data) } };
    all_ways("0123456789abcdef", body, n, &x);
}

/* Data full of CRs fed in one piece comes out in one run, not a call per
 * CR (STOW-RS writes each run to disk). */
static void test_data_runs(void **state)
{
    (void)state;
    unsigned char body[70000];
    struct seen s;
    struct err e;
    size_t n = 0;

    n += (size_t)sprintf((char *)body, "--r\r\n\r\n");
    for (int i = 0; i < 65536; i++)
        body[n++] = (i % 7) ? '\r' : (unsigned char)i;
    n += (size_t)sprintf((char *)body + n, "\r\n--r--");
    memset(&s, 0, sizeof(s));
    assert_int_equal(run("r", body, n, NULL, 0, &s, &e), 0);
    assert_int_equal(s.nparts, 1);
    assert_int_equal(s.len[0], 65536);
    assert_true(s.data_calls <= 2);
    seen_free(&s);
}

static void test_empty_parts(void **state)
{
    (void)state;
    const char body[] =
        "--e\r\n"
        "Content-Type: a/b\r\n"
        "\r\n"
        "\r\n--e\r\n"
        "\r\n"                /* no headers at all */
        "\r\n--e\r\n"
        "Content-Type: c/d\r\n"
        "\r\n"
        "x\r\n--e--";
    struct expect x = { 3, { "a/b", "", "c/d" }, { "", "", "x" },
                        { 0, 0, 1 } };
    all_ways("e", body, sizeof(body) - 1, &x);
}

static void test_headers(void **state)
{
    (void)state;
    const char body[] =
        "--h\r\n"
        "content-TYPE:   application/dicom; transfer-syntax=1.2.3  \r\n"
        "X-Other: folded\r\n value\r\n"
        "Content-Length: 2\r\n"
        "\r\n"
        "ok\r\n--h--\r\n";
    struct seen s;
    struct err e;

    memset(&s, 0, sizeof(s));
    assert_int_equal(run("h", body, sizeof(body) - 1, NULL, 0, &s, &e), 0);
    assert_int_equal(s.nparts, 1);
    assert_int_equal(s.nheaders[0], 3);
    assert_string_equal(s.ctype[0],
                        "application/dicom; transfer-syntax=1.2.3");
    assert_string_equal(s.other[0], "folded   value");
    seen_free(&s);
}

static void test_wrong_boundary(void **state)
{
    (void)state;
    const char body[] =
        "--other\r\nContent-Type: application/dicom\r\n\r\ndata\r\n"
        "--other--\r\n";
    struct seen s;
    struct err e;
    size_t one = 1;

    memset(&s, 0, sizeof(s));
    assert_int_equal(run("mine", body, sizeof(body) - 1, NULL, 0, &s, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "no multipart boundary"));
    assert_int_equal(s.nparts, 0);
    assert_int_equal(run("mine", body, sizeof(body) - 1, &one, 1, &s, &e),
                     ERR_INVALID);
    assert_int_equal(s.nparts, 0);
    seen_free(&s);
}

static void test_missing_final_boundary(void **state)
{
    (void)state;
    const char cut_data[] =
        "--m\r\n\r\ncomplete\r\n--m\r\n\r\nhalf a par";
    const char cut_after_delim[] = "--m\r\n\r\none\r\n--m\r\n";
    struct seen s;
    struct err e;

    memset(&s, 0, sizeof(s));
    assert_int_equal(run("m", cut_data, sizeof(cut_data) - 1, NULL, 0, &s,
                         &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "missing final"));
    assert_int_equal(s.nparts, 2);
    assert_int_equal(s.ended, 1);         /* the cut part is not ended */
    assert_int_equal(s.len[0], 8);
    seen_free(&s);

    assert_int_equal(run("m", cut_after_delim, sizeof(cut_after_delim) - 1,
                         NULL, 0, &s, &e), ERR_INVALID);
    assert_int_equal(s.ended, 1);
    seen_free(&s);

    assert_int_equal(run("m", "", 0, NULL, 0, &s, &e), ERR_INVALID);
    assert_int_equal(s.nparts, 0);
    seen_free(&s);
}

static void test_junk_after_boundary(void **state)
{
    (void)state;
    /* The full delimiter followed by other characters: the boundary
     * occurs inside the data, which RFC 2046 forbids. */
    const char body[] = "--q\r\n\r\nabc\r\n--qrs\r\n\r\n\r\n--q--";
    struct seen s;
    struct err e;

    memset(&s, 0, sizeof(s));
    assert_int_equal(run("q", body, sizeof(body) - 1, NULL, 0, &s, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "boundary"));
    seen_free(&s);
}

static void test_header_limits(void **state)
{
    (void)state;
    size_t big = MULTIPART_MAX_HEADER + 100;
    char *body = malloc(big + 64);
    size_t n = 0;
    struct seen s;
    struct err e;
    size_t chunk = 100;

    n += (size_t)sprintf(body, "--L\r\nX-Big: ");
    memset(body + n, 'a', big - n);
    n = big;
    n += (size_t)sprintf(body + n, "\r\n\r\nd\r\n--L--");
    memset(&s, 0, sizeof(s));
    assert_int_equal(run("L", body, n, &chunk, 1, &s, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "too large"));
    assert_int_equal(s.nparts, 0);
    seen_free(&s);

    /* Too many header fields. */
    n = (size_t)sprintf(body, "--L\r\n");
    for (int i = 0; i < MULTIPART_MAX_HEADERS + 1; i++)
        n += (size_t)sprintf(body + n, "H%d: v\r\n", i);
    n += (size_t)sprintf(body + n, "\r\nd\r\n--L--");
    assert_int_equal(run("L", body, n, NULL, 0, &s, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "too many headers"));
    seen_free(&s);

    /* A header line without a colon. */
    n = (size_t)sprintf(body, "--L\r\nno colon here\r\n\r\nd\r\n--L--");
    assert_int_equal(run("L", body, n, NULL, 0, &s, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "malformed header"));
    seen_free(&s);
    free(body);
}

static void test_callback_stops(void **state)
{
    (void)state;
    const char body[] = "--s\r\n\r\none\r\n--s\r\n\r\ntwo\r\n--s--";
    struct seen s;
    struct err e;
    struct multipart *m;

    memset(&s, 0, sizeof(s));
    s.fail_at_begin = 2;
    memset(&e, 0, sizeof(e));
    m = multipart_new("s", &cbs, &s, &e);
    assert_int_equal(multipart_feed(m, body, sizeof(body) - 1, &e), ERR_IO);
    assert_int_equal(s.nparts, 1);
    /* stays failed */
    assert_int_equal(multipart_feed(m, "x", 1, &e), ERR_IO);
    assert_int_equal(multipart_finish(m, &e), ERR_IO);
    multipart_free(m);
    seen_free(&s);
}

static void test_bad_boundaries(void **state)
{
    (void)state;
    struct err e;
    char long_b[80];

    memset(long_b, 'b', 71);
    long_b[71] = '\0';
    assert_null(multipart_new("", &cbs, NULL, &e));
    assert_null(multipart_new(long_b, &cbs, NULL, &e));
    assert_null(multipart_new("with\r\ncrlf", &cbs, NULL, &e));
    assert_null(multipart_new("trailing ", &cbs, NULL, &e));
    assert_null(multipart_new("semi;colon", &cbs, NULL, &e));
    long_b[70] = '\0';
    struct multipart *m = multipart_new(long_b, &cbs, NULL, &e);
    assert_non_null(m);
    multipart_free(m);
}

static void test_ctype(void **state)
{
    (void)state;
    struct multipart_ctype ct;
    struct err e;

    assert_int_equal(multipart_parse_ctype(
        "multipart/related; type=\"application/dicom\"; boundary=abc123",
        &ct, &e), 0);
    assert_string_equal(ct.media, "multipart/related");
    assert_string_equal(ct.type, "application/dicom");
    assert_string_equal(ct.boundary, "abc123");

    assert_int_equal(multipart_parse_ctype(
        "Multipart/Related;BOUNDARY=\"a b:c=d?\";Type=Application/DICOM",
        &ct, &e), 0);
    assert_string_equal(ct.media, "multipart/related");
    assert_string_equal(ct.boundary, "a b:c=d?");
    assert_string_equal(ct.type, "application/dicom");

    assert_int_equal(multipart_parse_ctype(
        "multipart/related; type=application/dicom; "
        "boundary=----=_Part_0_1.2;", &ct, &e), 0);
    assert_string_equal(ct.boundary, "----=_Part_0_1.2");

    assert_int_equal(multipart_parse_ctype("multipart/related", &ct, &e), 0);
    assert_string_equal(ct.boundary, "");

    assert_int_equal(multipart_parse_ctype("application/json", &ct, &e), 0);
    assert_string_equal(ct.media, "application/json");

    assert_int_equal(multipart_parse_ctype(
        "multipart/related; boundary=\"unterminated", &ct, &e), ERR_INVALID);
    assert_int_equal(multipart_parse_ctype(
        "multipart/related; boundary=\"\"", &ct, &e), ERR_INVALID);
    assert_int_equal(multipart_parse_ctype(
        "multipart/related; boundary", &ct, &e), ERR_INVALID);
    assert_int_equal(multipart_parse_ctype("", &ct, &e), ERR_INVALID);
    assert_int_equal(multipart_parse_ctype("nonsense", &ct, &e),
                     ERR_INVALID);
    assert_int_equal(multipart_parse_ctype(NULL, &ct, &e), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_parts),
        cmocka_unit_test(test_preamble_epilogue_padding),
        cmocka_unit_test(test_boundary_like_data),
        cmocka_unit_test(test_binary_data),
        cmocka_unit_test(test_data_runs),
        cmocka_unit_test(test_empty_parts),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_wrong_boundary),
        cmocka_unit_test(test_missing_final_boundary),
        cmocka_unit_test(test_junk_after_boundary),
        cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_bad_boundaries),
        cmocka_unit_test(test_ctype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
