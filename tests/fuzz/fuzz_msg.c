/*
 * fuzz_msg — libFuzzer target for the hashi.v1 codec (proto/msg.c).
 *
 * Every input is tried as a text frame and as an upload chunk.  Besides
 * "no crash, no leak, no undefined behaviour" (ASan/UBSan/LSan), it checks
 * the codec's own promises and aborts when one breaks:
 *   - a frame that parses serializes again (unless the canonical form
 *     outgrows the frame limit), and that output parses to the same bytes;
 *   - a frame that fails can always be answered (msg_build_failure);
 *   - a chunk that parses rebuilds to the same header;
 *   - any bytes as an error message still give a valid reply.
 * Run by tests/fuzz/run.sh (make fuzz).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/msg.h"
#include "../../proto/util.h"

static void text_frame(const uint8_t *data, size_t size)
{
    static struct msg m, m2, r;
    struct msg_error e, e2;
    char *out = NULL, *out2 = NULL;
    size_t len, len2;

    if (msg_parse((const char *)data, size, &m, &e)) {
        if (m.type != MSG_NONE || e.code == MSG_E_NONE || !e.message[0])
            abort();
        if (e.code != MSG_E_INTERNAL && msg_build_failure(&r, &e, &e2))
            abort();
        msg_free(&r);
        return;
    }
    int rc = msg_serialize(&m, &out, &len, &e);
    if (rc == ERR_TOOBIG) {
        msg_free(&m);
        return;
    }
    if (rc)
        abort();
    if (msg_parse(out, len, &m2, &e2))
        abort();
    if (msg_serialize(&m2, &out2, &len2, &e2) || len2 != len ||
        memcmp(out, out2, len))
        abort();
    free(out);
    free(out2);
    msg_free(&m);
    msg_free(&m2);
}

static void chunk_frame(const uint8_t *data, size_t size)
{
    struct msg_chunk c;
    struct msg_error e;
    unsigned char hdr[MSG_CHUNK_HDR];

    if (msg_chunk_parse(data, size, &c, &e))
        return;
    if (c.length != size - MSG_CHUNK_HDR || c.data != data + MSG_CHUNK_HDR)
        abort();
    if (msg_chunk_build(hdr, c.upload_id, c.offset, c.length, &e) ||
        memcmp(hdr, data, MSG_CHUNK_HDR))
        abort();
}

/* Any text as an error message still makes a frame the peer accepts. */
static void error_text(const uint8_t *data, size_t size)
{
    static struct msg r, back;
    struct msg_error e;
    char *s = malloc(size + 1), *out;
    size_t len;

    if (!s)
        return;
    memcpy(s, data, size);
    s[size] = 0;
    if (msg_build_reply_err(&r, "f", MSG_E_INTERNAL, s, &e) ||
        msg_serialize(&r, &out, &len, &e) || msg_parse(out, len, &back, &e))
        abort();
    free(out);
    free(s);
    msg_free(&r);
    msg_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    text_frame(data, size);
    chunk_frame(data, size);
    error_text(data, size);
    return 0;
}
