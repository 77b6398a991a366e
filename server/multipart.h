/*
 * multipart — a streaming parser for MIME multipart bodies (RFC 2046), as
 * used by DICOMweb STOW-RS (multipart/related; type="application/dicom").
 *
 * The body is fed in pieces of any size as it arrives from the network;
 * part data is handed to callbacks as it is recognised, so no part and no
 * body is ever held whole in memory.  At most one delimiter (about 74
 * bytes) is held back between calls.  Each part's header block is buffered
 * up to MULTIPART_MAX_HEADER bytes.
 *
 * Pure C, no network code: tests/unit/test_multipart.c drives it directly.
 */
#ifndef HASHI_MULTIPART_H
#define HASHI_MULTIPART_H

#include <stddef.h>

#include "../proto/util.h"

#define MULTIPART_MAX_BOUNDARY 70     /* RFC 2046 */
#define MULTIPART_MAX_HEADER 8192     /* one part's header block, bytes */
#define MULTIPART_MAX_HEADERS 32      /* header fields per part */

/* What a Content-Type header says about a multipart body. */
struct multipart_ctype {
    char media[128];                          /* "multipart/related",
                                                 lower-cased */
    char boundary[MULTIPART_MAX_BOUNDARY + 1];
    char type[128];                           /* the "type" parameter,
                                                 "" if absent */
};

/* Parse a Content-Type value such as
 *   multipart/related; type="application/dicom"; boundary=abc
 * (parameter values quoted or not, names case-insensitive).  ERR_INVALID
 * for a malformed value or a boundary that breaks RFC 2046 (1..70 chars of
 * its set, not ending in a space).  A missing boundary is not an error
 * here (boundary is then ""); callers decide. */
int multipart_parse_ctype(const char *value, struct multipart_ctype *out,
                          struct err *e);

/* One header field of a part; name as received, value trimmed. */
struct multipart_header {
    const char *name;
    const char *value;
};

/* The headers of the part that begins; valid only during the callback. */
struct multipart_part {
    int index;                                /* 0-based */
    size_t nheaders;
    struct multipart_header headers[MULTIPART_MAX_HEADERS];
};

/* Case-insensitive lookup; NULL if the part has no such header. */
const char *multipart_part_header(const struct multipart_part *p,
                                  const char *name);

/* Callbacks; each returns 0 to go on, or a negative ERR_* code to stop the
 * parser (multipart_feed then returns that code, and every later call
 * returns it too).  Any may be NULL. */
struct multipart_cb {
    int (*part_begin)(void *arg, const struct multipart_part *part);
    int (*part_data)(void *arg, const unsigned char *data, size_t len);
    int (*part_end)(void *arg);
};

struct multipart;

/* A parser for the given boundary (without the leading "--").  NULL with
 * ERR_INVALID for a bad boundary, ERR_INTERNAL when out of memory.  Free
 * with multipart_free(). */
struct multipart *multipart_new(const char *boundary,
                                const struct multipart_cb *cb, void *arg,
                                struct err *e);
void multipart_free(struct multipart *m);

/* Feed the next len bytes of the body.  0, or a negative ERR_* code:
 * ERR_INVALID for a malformed body (with the reason), or the code a
 * callback returned.  After an error the parser stays failed. */
int multipart_feed(struct multipart *m, const void *data, size_t len,
                   struct err *e);

/* The body has ended.  0 if the closing delimiter was seen; ERR_INVALID
 * otherwise ("no boundary found" when not even the first delimiter was,
 * or "missing final boundary" for a body cut short — part_end is not
 * called for a part left open). */
int multipart_finish(struct multipart *m, struct err *e);

/* Parts begun so far. */
int multipart_parts(const struct multipart *m);

#endif
