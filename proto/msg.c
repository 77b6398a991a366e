/*
 * msg — the hashi.v1 codec (see msg.h and PROTOCOL.md).
 *
 * Every message type is described once, by a table of its fields (wire
 * name, kind, syntax, limits, where it lives in struct msg).  The parser,
 * the validator and the serializer all walk the same tables, so the three
 * cannot disagree and every message round-trips by construction.  What a
 * table cannot say (one of two fields required, reply's ok/result/error)
 * is a small check function per type.
 *
 * DICOM UIDs are checked here with the rules of dicom_uid_valid() rather
 * than by calling it, so that the codec (and its fuzzer) links without
 * the C++ DCMTK adapter.
 */
#include "msg.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- names ------------------------------------------------------------ */

static const char *const type_names[MSG_TYPE_COUNT] = {
    [MSG_HELLO] = "hello",              [MSG_WELCOME] = "welcome",
    [MSG_EVENT] = "event",              [MSG_ACK] = "ack",
    [MSG_PING] = "ping",                [MSG_PONG] = "pong",
    [MSG_ERROR] = "error",
    [MSG_CASE_CREATE] = "case.create",  [MSG_CASE_CLAIM] = "case.claim",
    [MSG_CASE_ANSWER] = "case.answer",  [MSG_CASE_AMEND] = "case.amend",
    [MSG_CASE_CLOSE] = "case.close",
    [MSG_CASE_REOPEN] = "case.reopen",  [MSG_CASE_LIST] = "case.list",
    [MSG_CASE_GET] = "case.get",        [MSG_MESSAGE_SEND] = "message.send",
    [MSG_MESSAGE_READ] = "message.read",
    [MSG_UPLOAD_BEGIN] = "upload.begin", [MSG_UPLOAD_END] = "upload.end",
    [MSG_REPLY] = "reply",              [MSG_UPLOAD_AT] = "upload.at",
    [MSG_UPLOAD_DONE] = "upload.done",
    [MSG_STUDY_EXPECT] = "study.expect",
    [MSG_GATEWAY_STATUS] = "gateway.status",
    [MSG_STUDY_PRIORITY] = "study.priority",
    [MSG_CASE_LINK] = "case.link",
};

static const char *const code_names[MSG_CODE_COUNT] = {
    NULL, "bad_json", "bad_type", "unknown_type", "missing_field",
    "bad_field", "too_long", "too_big", "unauthorized", "forbidden",
    "not_found", "conflict", "already_claimed", "rate_limited", "not_ready",
    "internal",
};
static const char *const kind_names[MSG_EV_COUNT] = {
    NULL, "case.new", "case.claimed", "case.answered", "case.closed",
    "case.reopened", "case.escalated", "message.new", "message.read",
    "images.arrived", "case.arrived",
};
static const char *const prio_names[MSG_PRIO_COUNT] = {
    NULL, "stat", "urgent", "routine",
};
static const char *const status_names[MSG_ST_COUNT] = {
    NULL, "new", "claimed", "answered", "closed", "reopened",
};
static const char *const sex_names[MSG_SEX_COUNT] = { NULL, "F", "M", "O" };
static const char *const role_names[MSG_ROLE_COUNT] = {
    NULL, "requester", "specialist", "admin", "gateway", "crew",
};
static const char *const upstatus_names[MSG_UP_COUNT] = {
    NULL, "stored", "duplicate", "conflict",
};
static const char *const uareason_names[MSG_UA_COUNT] = {
    NULL, "progress", "resend",
};
static const char *const upkind_names[MSG_UK_COUNT] = {
    NULL, "instance", "preview", "photo",
};

static const char *name_of(const char *const *names, int n, int v)
{
    return v > 0 && v < n ? names[v] : NULL;
}

static int index_of(const char *const *names, int n, const char *s)
{
    for (int i = 1; i < n; i++)
        if (names[i] && !strcmp(names[i], s))
            return i;
    return -1;
}

const char *msg_type_name(enum msg_type t)
{
    return name_of(type_names, MSG_TYPE_COUNT, (int)t);
}

enum msg_type msg_type_parse(const char *name)
{
    int i = index_of(type_names, MSG_TYPE_COUNT, name);
    return i < 0 ? MSG_NONE : (enum msg_type)i;
}

const char *msg_code_name(enum msg_code c)
{
    return name_of(code_names, MSG_CODE_COUNT, (int)c);
}

int msg_code_parse(const char *name)
{
    return index_of(code_names, MSG_CODE_COUNT, name);
}

const char *msg_kind_name(int k)
{
    return name_of(kind_names, MSG_EV_COUNT, k);
}
const char *msg_priority_name(int p)
{
    return name_of(prio_names, MSG_PRIO_COUNT, p);
}
const char *msg_status_name(int s)
{
    return name_of(status_names, MSG_ST_COUNT, s);
}
const char *msg_role_name(int r)
{
    return name_of(role_names, MSG_ROLE_COUNT, r);
}

/* ---- errors ----------------------------------------------------------- */

static int fail(struct msg_error *err, enum msg_code code, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct msg_error *err, enum msg_code code, const char *field,
                const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    err->code = code;
    strlcpy_h(err->field, field ? field : "", sizeof err->field);
    if (field && *field)
        snprintf(err->message, sizeof err->message, "%s: %s", field, what);
    else
        strlcpy_h(err->message, what, sizeof err->message);
    /* jansson quotes the offending input; the message goes back on the
     * wire as an error.message, so keep it printable ASCII */
    for (char *c = err->message; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    if (code == MSG_E_TOO_BIG)
        return ERR_TOOBIG;
    if (code == MSG_E_INTERNAL)
        return ERR_INTERNAL;
    return ERR_INVALID;
}

/* ---- syntaxes of strings ---------------------------------------------- */

enum syn {
    SY_ID,          /* [A-Za-z0-9_-] */
    SY_TOKEN,       /* printable ASCII, no space */
    SY_LINE,        /* UTF-8 without control characters */
    SY_TEXT,        /* UTF-8; of the controls only tab, LF, CR */
    SY_LOGIN,       /* [A-Za-z0-9._@-] */
    SY_SPECIALTY,   /* [a-z0-9_-] */
    SY_UID,         /* DICOM UID */
    SY_SHA256,      /* 64 lower-case hex digits */
};

static const char *const syn_what[] = {
    [SY_ID] = "letters, digits, '_' and '-' only",
    [SY_TOKEN] = "printable ASCII without spaces only",
    [SY_LINE] = "valid UTF-8 without control characters",
    [SY_TEXT] = "valid UTF-8 without control characters but tab and newline",
    [SY_LOGIN] = "letters, digits, '.', '_', '@' and '-' only",
    [SY_SPECIALTY] = "lower-case letters, digits, '_' and '-' only",
    [SY_UID] = ("a DICOM UID (digits and dots, no empty component, "
                "no leading zero)"),
    [SY_SHA256] = "64 lower-case hex digits",
};

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/* Length of the valid character at s (n bytes left), 0 if invalid: no
 * overlongs, surrogates or values past U+10FFFF; with text, tab/LF/CR
 * are allowed; other C0, DEL and C1 controls never. */
static size_t utf8_char(const unsigned char *s, size_t n, bool text)
{
    unsigned char c = s[0];
    uint32_t cp;
    size_t k;

    if (c < 0x80) {
        if ((c < 0x20 && !(text && (c == '\t' || c == '\n' || c == '\r'))) ||
            c == 0x7f)
            return 0;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        k = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 2;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n <= k)
        return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return k + 1;
}

static bool utf8_ok(const unsigned char *s, size_t n, bool text)
{
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_char(s + i, n - i, text)))
            return false;
    return true;
}

static bool uid_ok(const char *s, size_t n)
{
    size_t start = 0;

    if (n == 0 || n > MSG_UID_MAX)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            size_t len = i - start;
            if (len == 0 || (len > 1 && s[start] == '0'))
                return false;
            start = i + 1;
        } else if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static bool syntax_ok(enum syn sy, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;

    switch (sy) {
    case SY_LINE:
        return utf8_ok(u, n, false);
    case SY_TEXT:
        return utf8_ok(u, n, true);
    case SY_UID:
        return uid_ok(s, n);
    case SY_SHA256:
        if (n != 64)
            return false;
        break;
    default:
        break;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        bool ok;
        switch (sy) {
        case SY_ID:
            ok = is_alnum(c) || c == '_' || c == '-';
            break;
        case SY_TOKEN:
            ok = c > 0x20 && c < 0x7f;
            break;
        case SY_LOGIN:
            ok = is_alnum(c) || c == '.' || c == '_' || c == '@' || c == '-';
            break;
        case SY_SPECIALTY:
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
            break;
        case SY_SHA256:
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            break;
        default:
            ok = false;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* ---- field tables ----------------------------------------------------- */

enum fkind { F_STR, F_INT, F_NUM, F_BOOL, F_ENUM, F_OBJ, F_JSON, F_STRARR,
             F_OBJARR };

#define NO_HAS ((size_t)-1)

struct fdesc {
    const char *name;           /* NULL ends a table */
    enum fkind kind;
    enum syn syn;               /* F_STR, F_STRARR elements */
    bool req;
    bool nonempty;              /* F_STR: "" is not a value */
    bool positive;              /* F_NUM: > 0 */
    size_t off;                 /* the value, in its containing struct */
    size_t size;                /* F_STR buffer; F_STRARR element */
    size_t has;                 /* bool presence flag, or NO_HAS */
    int64_t lo, hi;             /* F_INT range; F_STRARR max count */
    bool has_def;               /* optional F_INT without flag: default */
    int64_t def;
    double dmax;                /* F_NUM: |v| <= dmax */
    const char *const *names;   /* F_ENUM; index 0 unused */
    int n_names;
    const struct fdesc *sub;    /* F_OBJ, F_OBJARR elements */
    size_t cnt;                 /* F_STRARR, F_OBJARR: int count */
};

#define MEMBER_SIZE(T, f) sizeof(((T *)0)->f)

#define FSTR(T, f, sy, rq, ne) \
    { .name = #f, .kind = F_STR, .syn = sy, .req = rq, .nonempty = ne, \
      .off = offsetof(T, f), .size = MEMBER_SIZE(T, f), .has = NO_HAS }
#define FINT(T, f, l, h) \
    { .name = #f, .kind = F_INT, .req = true, .off = offsetof(T, f), \
      .has = NO_HAS, .lo = l, .hi = h }
#define FINT_OPT(T, f, l, h) \
    { .name = #f, .kind = F_INT, .off = offsetof(T, f), \
      .has = offsetof(T, has_##f), .lo = l, .hi = h }
#define FINT_DEF(T, f, l, h, d) \
    { .name = #f, .kind = F_INT, .off = offsetof(T, f), .has = NO_HAS, \
      .lo = l, .hi = h, .has_def = true, .def = d }
#define FNUM(T, f, mx, pos) \
    { .name = #f, .kind = F_NUM, .req = true, .off = offsetof(T, f), \
      .has = NO_HAS, .dmax = mx, .positive = pos }
#define FBOOL(T, f) \
    { .name = #f, .kind = F_BOOL, .req = true, .off = offsetof(T, f), \
      .has = NO_HAS }
#define FENUM(T, f, rq, nm, n) \
    { .name = #f, .kind = F_ENUM, .req = rq, .off = offsetof(T, f), \
      .has = NO_HAS, .names = nm, .n_names = n }
#define FTIME(T, f) FINT(T, f, 0, MSG_TIME_MAX)  /* ms since the epoch */
#define FOBJ(T, f, tbl) \
    { .name = #f, .kind = F_OBJ, .req = true, .off = offsetof(T, f), \
      .has = NO_HAS, .sub = tbl }
#define FOBJ_OPT(T, f, tbl) \
    { .name = #f, .kind = F_OBJ, .off = offsetof(T, f), \
      .has = offsetof(T, has_##f), .sub = tbl }
#define FJSON(T, f, rq) \
    { .name = #f, .kind = F_JSON, .req = rq, .off = offsetof(T, f), \
      .has = NO_HAS }
#define FSTRARR(T, f, sy, maxn) \
    { .name = #f, .kind = F_STRARR, .syn = sy, .off = offsetof(T, f), \
      .size = MEMBER_SIZE(T, f[0]), .has = NO_HAS, .hi = maxn, \
      .cnt = offsetof(T, n_##f) }
/* A required array of objects, which may be empty. */
#define FOBJARR(T, f, tbl, maxn) \
    { .name = #f, .kind = F_OBJARR, .req = true, .off = offsetof(T, f), \
      .size = MEMBER_SIZE(T, f[0]), .has = NO_HAS, .hi = maxn, \
      .sub = tbl, .cnt = offsetof(T, n_##f) }
#define FEND { .name = NULL }

static const struct fdesc client_f[] = {
    FSTR(struct msg_client, name, SY_LINE, true, true),
    FSTR(struct msg_client, version, SY_LINE, true, true),
    FEND
};
static const struct fdesc user_f[] = {
    FSTR(struct msg_user, login, SY_LOGIN, true, true),
    FENUM(struct msg_user, role, true, role_names, MSG_ROLE_COUNT),
    FSTR(struct msg_user, clinic, SY_LINE, true, true),
    FSTRARR(struct msg_user, specialties, SY_SPECIALTY, MSG_SPECIALTIES_MAX),
    FEND
};
static const struct fdesc patient_f[] = {
    FINT_OPT(struct msg_patient, age, 0, MSG_AGE_MAX),
    FENUM(struct msg_patient, sex, false, sex_names, MSG_SEX_COUNT),
    FEND
};
static const struct fdesc window_f[] = {
    FNUM(struct msg_window, center, MSG_WINDOW_ABS_MAX, false),
    FNUM(struct msg_window, width, MSG_WINDOW_ABS_MAX, true),
    FEND
};
static const struct fdesc image_f[] = {
    FSTR(struct msg_image, sop_uid, SY_UID, true, true),
    FINT_DEF(struct msg_image, frame, 1, MSG_FRAME_NO_MAX, 1),
    FOBJ_OPT(struct msg_image, window, window_f),
    FEND
};
static const struct fdesc errinfo_f[] = {
    FENUM(struct msg_errinfo, code, true, code_names, MSG_CODE_COUNT),
    FSTR(struct msg_errinfo, message, SY_TEXT, true, false),
    FEND
};

static const struct fdesc hello_f[] = {
    FSTR(struct msg_hello, token, SY_TOKEN, false, true),
    FINT(struct msg_hello, last_seq, 0, MSG_SEQ_MAX),
    FOBJ(struct msg_hello, client, client_f),
    FEND
};
static const struct fdesc welcome_f[] = {
    FOBJ(struct msg_welcome, user, user_f),
    FTIME(struct msg_welcome, server_time),
    FINT(struct msg_welcome, last_seq, 0, MSG_SEQ_MAX),
    FINT(struct msg_welcome, replay_from, 0, MSG_SEQ_MAX),
    FEND
};
static const struct fdesc event_f[] = {
    FINT(struct msg_event, seq, 1, MSG_SEQ_MAX),
    FSTR(struct msg_event, event_id, SY_ID, true, true),
    FENUM(struct msg_event, kind, true, kind_names, MSG_EV_COUNT),
    FSTR(struct msg_event, case_id, SY_ID, true, true),
    FTIME(struct msg_event, at),
    FJSON(struct msg_event, body, true),
    FEND
};
static const struct fdesc ack_f[] = {
    FINT(struct msg_ack, seq, 0, MSG_SEQ_MAX),
    FEND
};
static const struct fdesc none_f[] = { FEND };
static const struct fdesc error_f[] = {
    FOBJ(struct msg_error_msg, error, errinfo_f),
    FEND
};
static const struct fdesc reply_f[] = {     /* result/error: reply_* */
    FBOOL(struct msg_reply, ok),
    FEND
};
/* Vitals a living adult or child can show on the road; outside them the
 * number is a typo, and a typo must not reach the stroke team. */
static const struct fdesc vitals_f[] = {
    FINT_OPT(struct msg_vitals, bp_sys, 40, 300),
    FINT_OPT(struct msg_vitals, bp_dia, 20, 200),
    FINT_OPT(struct msg_vitals, heart_rate, 20, 250),
    FINT_OPT(struct msg_vitals, spo2, 50, 100),
    FINT_OPT(struct msg_vitals, glucose, 10, 1000),
    FINT_OPT(struct msg_vitals, gcs, 3, 15),
    FEND
};
static const struct fdesc prearrival_f[] = {
    FTIME(struct msg_prearrival, last_known_well),
    FOBJ_OPT(struct msg_prearrival, vitals, vitals_f),
    FINT_OPT(struct msg_prearrival, lams, 0, 5),
    FINT(struct msg_prearrival, eta_min, -MSG_ETA_MAX, MSG_ETA_MAX),
    FSTR(struct msg_prearrival, destination, SY_LINE, true, true),
    FEND
};
static const struct fdesc create_f[] = {
    FSTR(struct msg_case_create, case_id, SY_ID, true, true),
    FOBJ_OPT(struct msg_case_create, prearrival, prearrival_f),
    FOBJ_OPT(struct msg_case_create, patient, patient_f),
    FSTR(struct msg_case_create, history, SY_TEXT, false, false),
    FSTR(struct msg_case_create, question, SY_TEXT, true, true),
    FENUM(struct msg_case_create, priority, true, prio_names,
          MSG_PRIO_COUNT),
    FSTR(struct msg_case_create, specialty, SY_SPECIALTY, false, true),
    FSTR(struct msg_case_create, specialist, SY_LOGIN, false, true),
    FSTRARR(struct msg_case_create, study_uids, SY_UID, MSG_STUDIES_MAX),
    FEND
};
static const struct fdesc caseref_f[] = {    /* claim, get */
    FSTR(struct msg_case_ref, case_id, SY_ID, true, true),
    FEND
};
static const struct fdesc casereason_f[] = { /* close, reopen */
    FSTR(struct msg_case_ref, case_id, SY_ID, true, true),
    FSTR(struct msg_case_ref, reason, SY_TEXT, false, false),
    FEND
};
static const struct fdesc answer_f[] = {
    FSTR(struct msg_case_answer, case_id, SY_ID, true, true),
    FSTR(struct msg_case_answer, impression, SY_TEXT, false, false),
    FSTR(struct msg_case_answer, recommendation, SY_TEXT, false, false),
    FSTR(struct msg_case_answer, text, SY_TEXT, false, false),
    FEND
};
static const struct fdesc list_f[] = {
    FENUM(struct msg_case_list, status, false, status_names, MSG_ST_COUNT),
    FINT_DEF(struct msg_case_list, limit, 1, MSG_LIST_MAX, MSG_LIST_DEFAULT),
    FSTR(struct msg_case_list, before, SY_TOKEN, false, true),
    FEND
};
static const struct fdesc send_f[] = {
    FSTR(struct msg_message_send, case_id, SY_ID, true, true),
    FSTR(struct msg_message_send, message_id, SY_ID, true, true),
    FSTR(struct msg_message_send, text, SY_TEXT, true, true),
    FOBJ_OPT(struct msg_message_send, image, image_f),
    FEND
};
static const struct fdesc read_f[] = {
    FSTR(struct msg_message_read, case_id, SY_ID, true, true),
    FSTR(struct msg_message_read, message_id, SY_ID, true, true),
    FEND
};
static const struct fdesc ubegin_f[] = {
    FSTR(struct msg_upload_begin, upload_id, SY_ID, true, true),
    FSTR(struct msg_upload_begin, sha256, SY_SHA256, true, true),
    FINT(struct msg_upload_begin, size, 1, MSG_UPLOAD_MAX),
    FSTR(struct msg_upload_begin, case_id, SY_ID, false, true),
    FENUM(struct msg_upload_begin, kind, false, upkind_names, MSG_UK_COUNT),
    FSTR(struct msg_upload_begin, study_uid, SY_UID, false, true),
    FEND
};
static const struct fdesc uend_f[] = {
    FSTR(struct msg_upload_end, upload_id, SY_ID, true, true),
    FEND
};
static const struct fdesc uat_f[] = {
    FSTR(struct msg_upload_at, upload_id, SY_ID, true, true),
    FINT(struct msg_upload_at, offset, 0, MSG_UPLOAD_MAX),
    FENUM(struct msg_upload_at, reason, false, uareason_names, MSG_UA_COUNT),
    FEND
};
static const struct fdesc udone_f[] = {
    FSTR(struct msg_upload_done, upload_id, SY_ID, true, true),
    FSTR(struct msg_upload_done, sop_instance_uid, SY_UID, false, true),
    FSTR(struct msg_upload_done, study_uid, SY_UID, false, true),
    FENUM(struct msg_upload_done, status, true, upstatus_names,
          MSG_UP_COUNT),
    FEND
};
static const struct fdesc link_f[] = {
    FSTR(struct msg_case_link, case_id, SY_ID, true, true),
    FSTR(struct msg_case_link, study_uid, SY_UID, true, true),
    FEND
};
static const struct fdesc expect_f[] = {
    FSTR(struct msg_study_expect, study_uid, SY_UID, true, true),
    FINT(struct msg_study_expect, instances, 1, MSG_EXPECT_MAX),
    FENUM(struct msg_study_expect, priority, false, prio_names,
          MSG_PRIO_COUNT),
    FEND
};
static const struct fdesc gwstatus_f[] = {
    FINT(struct msg_gateway_status, waiting, 0, MSG_SEQ_MAX),
    FINT(struct msg_gateway_status, in_flight, 0, MSG_SEQ_MAX),
    FINT(struct msg_gateway_status, done, 0, MSG_SEQ_MAX),
    FINT(struct msg_gateway_status, failed, 0, MSG_SEQ_MAX),
    FINT(struct msg_gateway_status, bytes_waiting, 0, MSG_SEQ_MAX),
    FINT(struct msg_gateway_status, rate_bps, 0, MSG_SEQ_MAX),
    FINT_OPT(struct msg_gateway_status, eta_s, 0, MSG_SEQ_MAX),
    FSTR(struct msg_gateway_status, last_error, SY_TEXT, false, false),
    FEND
};
static const struct fdesc sprio_f[] = {
    FSTRARR(struct msg_study_priority, study_uids, SY_UID,
            MSG_PRIORITIES_MAX),
    FEND
};

/* Type-level rules the tables cannot express. */
typedef int (*check_fn)(const struct msg *m, struct msg_error *err);

static int check_create(const struct msg *m, struct msg_error *err)
{
    const struct msg_case_create *c = &m->case_create;
    if (!c->specialty[0] && !c->specialist[0])
        return fail(err, MSG_E_MISSING_FIELD, "specialty",
                    "a specialty or a specialist is required");
    if (c->has_prearrival) {
        const struct msg_prearrival *p = &c->prearrival;
        if (p->eta_min < 0)
            return fail(err, MSG_E_BAD_FIELD, "prearrival.eta_min",
                        "the ETA is in the past (%lld min)",
                        (long long)p->eta_min);
        if (p->has_vitals && p->vitals.has_bp_sys && p->vitals.has_bp_dia &&
            p->vitals.bp_dia >= p->vitals.bp_sys)
            return fail(err, MSG_E_BAD_FIELD, "prearrival.vitals.bp_dia",
                        "must be below bp_sys");
    }
    return 0;
}

static int check_sprio(const struct msg *m, struct msg_error *err)
{
    if (!m->study_priority.n_study_uids)
        return fail(err, MSG_E_MISSING_FIELD, "study_uids",
                    "at least one study UID is required");
    return 0;
}

static int check_answer(const struct msg *m, struct msg_error *err)
{
    if (!m->case_answer.impression[0] && !m->case_answer.text[0])
        return fail(err, MSG_E_MISSING_FIELD, "impression",
                    "an impression or a text is required");
    return 0;
}

/* A preview names its study (an instance may, to have it checked). */
static int check_ubegin(const struct msg *m, struct msg_error *err)
{
    const struct msg_upload_begin *u = &m->upload_begin;
    if (u->kind == MSG_UK_PREVIEW && !u->study_uid[0])
        return fail(err, MSG_E_MISSING_FIELD, "study_uid",
                    "is required with kind preview");
    if (u->kind == MSG_UK_PHOTO && !u->case_id[0])
        return fail(err, MSG_E_MISSING_FIELD, "case_id",
                    "is required with kind photo");
    return 0;
}

static int check_udone(const struct msg *m, struct msg_error *err)
{
    const struct msg_upload_done *u = &m->upload_done;
    if (!u->sop_instance_uid[0] && !u->study_uid[0])
        return fail(err, MSG_E_MISSING_FIELD, "sop_instance_uid",
                    "a sop_instance_uid or a study_uid is required");
    if (u->sop_instance_uid[0] && u->study_uid[0])
        return fail(err, MSG_E_BAD_FIELD, "study_uid",
                    "not allowed with sop_instance_uid");
    return 0;
}

static int check_welcome(const struct msg *m, struct msg_error *err)
{
    if (m->welcome.replay_from > m->welcome.last_seq)
        return fail(err, MSG_E_BAD_FIELD, "replay_from",
                    "must not exceed last_seq");
    return 0;
}

enum { ID_NONE, ID_OPT, ID_REQ };
enum { DIR_C = MSG_FROM_CLIENT, DIR_S = MSG_FROM_SERVER, DIR_CS = 3 };

struct tdesc {
    unsigned dir;
    int id;
    const struct fdesc *f;
    check_fn check;
};

static const struct tdesc types[MSG_TYPE_COUNT] = {
    [MSG_HELLO] = { DIR_C, ID_NONE, hello_f, NULL },
    [MSG_WELCOME] = { DIR_S, ID_NONE, welcome_f, check_welcome },
    [MSG_EVENT] = { DIR_S, ID_NONE, event_f, NULL },
    [MSG_ACK] = { DIR_C, ID_NONE, ack_f, NULL },
    [MSG_PING] = { DIR_CS, ID_OPT, none_f, NULL },
    [MSG_PONG] = { DIR_CS, ID_OPT, none_f, NULL },
    [MSG_ERROR] = { DIR_S, ID_NONE, error_f, NULL },
    [MSG_CASE_CREATE] = { DIR_C, ID_REQ, create_f, check_create },
    [MSG_CASE_CLAIM] = { DIR_C, ID_REQ, caseref_f, NULL },
    [MSG_CASE_ANSWER] = { DIR_C, ID_REQ, answer_f, check_answer },
    [MSG_CASE_AMEND] = { DIR_C, ID_REQ, answer_f, check_answer },
    [MSG_CASE_CLOSE] = { DIR_C, ID_REQ, casereason_f, NULL },
    [MSG_CASE_REOPEN] = { DIR_C, ID_REQ, casereason_f, NULL },
    [MSG_CASE_LIST] = { DIR_C, ID_REQ, list_f, NULL },
    [MSG_CASE_GET] = { DIR_C, ID_REQ, caseref_f, NULL },
    [MSG_MESSAGE_SEND] = { DIR_C, ID_REQ, send_f, NULL },
    [MSG_MESSAGE_READ] = { DIR_C, ID_REQ, read_f, NULL },
    [MSG_UPLOAD_BEGIN] = { DIR_C, ID_REQ, ubegin_f, check_ubegin },
    [MSG_UPLOAD_END] = { DIR_C, ID_REQ, uend_f, NULL },
    [MSG_STUDY_EXPECT] = { DIR_C, ID_REQ, expect_f, NULL },
    [MSG_GATEWAY_STATUS] = { DIR_C, ID_REQ, gwstatus_f, NULL },
    [MSG_STUDY_PRIORITY] = { DIR_C, ID_REQ, sprio_f, check_sprio },
    [MSG_CASE_LINK] = { DIR_C, ID_REQ, link_f, NULL },
    [MSG_REPLY] = { DIR_S, ID_REQ, reply_f, NULL },
    [MSG_UPLOAD_AT] = { DIR_S, ID_OPT, uat_f, NULL },
    [MSG_UPLOAD_DONE] = { DIR_S, ID_OPT, udone_f, check_udone },
};

static bool type_ok(enum msg_type t)
{
    return t > MSG_NONE && t < MSG_TYPE_COUNT;
}

bool msg_is_request(enum msg_type t)
{
    return type_ok(t) && types[t].id == ID_REQ && types[t].dir == DIR_C;
}

unsigned msg_type_dir(enum msg_type t)
{
    return type_ok(t) ? types[t].dir : 0;
}

/* The struct a type's table describes: every union member starts at the
 * same address. */
static char *body_of(struct msg *m) { return (char *)&m->hello; }
static const char *cbody_of(const struct msg *m)
{
    return (const char *)&m->hello;
}

static void path_join_field(char *out, size_t n, const char *prefix,
                            const char *name)
{
    if (prefix && *prefix)
        snprintf(out, n, "%s.%s", prefix, name);
    else
        snprintf(out, n, "%s", name);
}

/* ---- value checks, shared by parse and validate ------------------------ */

static int check_fields(const struct fdesc *fd, const char *base,
                        const char *prefix, struct msg_error *err);

static bool present(const struct fdesc *f, const char *base)
{
    if (f->has != NO_HAS)
        return *(const bool *)(base + f->has);
    switch (f->kind) {
    case F_STR:
        return base[f->off] != 0;
    case F_ENUM:
        return *(const int *)(base + f->off) != 0;
    case F_JSON:
        return *(json_t *const *)(base + f->off) != NULL;
    case F_STRARR:
        return *(const int *)(base + f->cnt) != 0;
    case F_OBJARR:
        return f->req || *(const int *)(base + f->cnt) != 0;
    default:
        return true;
    }
}

static int check_str(const struct fdesc *f, enum syn sy, const char *s,
                     size_t size, const char *path, struct msg_error *err)
{
    size_t n = strnlen(s, size);
    if (n == size)
        return fail(err, MSG_E_TOO_LONG, path, "longer than %zu bytes",
                    size - 1);
    if (f->kind == F_STRARR && n == 0)
        return fail(err, MSG_E_BAD_FIELD, path, "must not be empty");
    if (!syntax_ok(sy, s, n))
        return fail(err, MSG_E_BAD_FIELD, path, "must be %s", syn_what[sy]);
    return 0;
}

static int check_one(const struct fdesc *f, const char *base,
                     const char *path, struct msg_error *err)
{
    const char *p = base + f->off;

    switch (f->kind) {
    case F_STR:
        return check_str(f, f->syn, p, f->size, path, err);
    case F_INT: {
        int64_t v = *(const int64_t *)p;
        if (v < f->lo || v > f->hi)
            return fail(err, MSG_E_BAD_FIELD, path,
                        "must be an integer %lld..%lld",
                        (long long)f->lo, (long long)f->hi);
        return 0;
    }
    case F_NUM: {
        double v = *(const double *)p;
        if (!isfinite(v) || fabs(v) > f->dmax || (f->positive && v <= 0))
            return fail(err, MSG_E_BAD_FIELD, path, "must be a number %s%g",
                        f->positive ? "in (0, " : "in [-", f->dmax);
        return 0;
    }
    case F_BOOL:
        return 0;
    case F_ENUM: {
        int v = *(const int *)p;
        if (v <= 0 || v >= f->n_names)
            return fail(err, MSG_E_BAD_FIELD, path, "unknown value");
        return 0;
    }
    case F_OBJ:
        return check_fields(f->sub, p, path, err);
    case F_JSON:
        if (!json_is_object(*(json_t *const *)p))
            return fail(err, MSG_E_BAD_TYPE, path, "must be an object");
        return 0;
    case F_STRARR:
    case F_OBJARR: {
        int n = *(const int *)(base + f->cnt);
        if (n < 0 || n > f->hi)
            return fail(err, MSG_E_TOO_LONG, path,
                        "more than %lld elements", (long long)f->hi);
        for (int i = 0; i < n; i++) {
            char ep[96];
            const char *el = p + (size_t)i * f->size;
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            int rc = f->kind == F_STRARR
                     ? check_str(f, f->syn, el, f->size, ep, err)
                     : check_fields(f->sub, el, ep, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    }
    return fail(err, MSG_E_INTERNAL, path, "bad field table");
}

static int check_fields(const struct fdesc *fd, const char *base,
                        const char *prefix, struct msg_error *err)
{
    for (const struct fdesc *f = fd; f->name; f++) {
        char path[64];
        path_join_field(path, sizeof path, prefix, f->name);
        if (!present(f, base)) {
            if (f->req && !(f->kind == F_STR && !f->nonempty))
                return fail(err, MSG_E_MISSING_FIELD, path, "is required");
            continue;
        }
        int rc = check_one(f, base, path, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- parse ------------------------------------------------------------ */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static int want(struct msg_error *err, const char *path, const char *what,
                const json_t *v)
{
    return fail(err, MSG_E_BAD_TYPE, path, "must be %s, not %s", what,
                json_kind(v));
}

static int parse_fields(json_t *obj, const struct fdesc *fd, char *base,
                        const char *prefix, struct msg_error *err);

/* Copies a JSON string into a fixed buffer, checking its length. */
static int take_str(const json_t *v, char *dst, size_t size, bool nonempty,
                    const char *path, struct msg_error *err)
{
    if (!json_is_string(v))
        return want(err, path, "a string", v);
    size_t n = json_string_length(v);
    if (n > size - 1)
        return fail(err, MSG_E_TOO_LONG, path, "longer than %zu bytes",
                    size - 1);
    if (nonempty && n == 0)
        return fail(err, MSG_E_BAD_FIELD, path, "must not be empty");
    if (strlen(json_string_value(v)) != n)
        return fail(err, MSG_E_BAD_FIELD, path, "must not contain NUL");
    memcpy(dst, json_string_value(v), n);
    dst[n] = 0;
    return 0;
}

static int parse_one(const struct fdesc *f, json_t *v, char *base,
                     const char *path, struct msg_error *err)
{
    char *p = base + f->off;
    int rc;

    switch (f->kind) {
    case F_STR:
        rc = take_str(v, p, f->size, f->nonempty, path, err);
        break;
    case F_INT:
        if (!json_is_integer(v))
            return want(err, path, "an integer", v);
        *(int64_t *)p = json_integer_value(v);
        rc = 0;
        break;
    case F_NUM:
        if (!json_is_number(v))
            return want(err, path, "a number", v);
        *(double *)p = json_number_value(v);
        rc = 0;
        break;
    case F_BOOL:
        if (!json_is_boolean(v))
            return want(err, path, "a boolean", v);
        *(bool *)p = json_is_true(v);
        rc = 0;
        break;
    case F_ENUM: {
        if (!json_is_string(v))
            return want(err, path, "a string", v);
        int i = index_of(f->names, f->n_names, json_string_value(v));
        if (i < 0 || strlen(json_string_value(v)) != json_string_length(v))
            return fail(err, MSG_E_BAD_FIELD, path, "unknown value");
        *(int *)p = i;
        rc = 0;
        break;
    }
    case F_OBJ:
        if (!json_is_object(v))
            return want(err, path, "an object", v);
        return parse_fields(v, f->sub, p, path, err);
    case F_JSON:
        if (!json_is_object(v))
            return want(err, path, "an object", v);
        *(json_t **)p = json_incref(v);
        return 0;
    case F_STRARR:
    case F_OBJARR: {
        if (!json_is_array(v))
            return want(err, path, "an array", v);
        size_t n = json_array_size(v);
        if (n > (size_t)f->hi)
            return fail(err, MSG_E_TOO_LONG, path,
                        "more than %lld elements", (long long)f->hi);
        for (size_t i = 0; i < n; i++) {
            char ep[96];
            json_t *el = json_array_get(v, i);
            snprintf(ep, sizeof ep, "%s[%zu]", path, i);
            if (f->kind == F_STRARR)
                rc = take_str(el, p + i * f->size, f->size, true, ep, err);
            else if (!json_is_object(el))
                rc = want(err, ep, "an object", el);
            else
                rc = parse_fields(el, f->sub, p + i * f->size, ep, err);
            if (rc)
                return rc;
        }
        *(int *)(base + f->cnt) = (int)n;
        if (f->kind == F_OBJARR)
            return 0;       /* each element checked by parse_fields */
        rc = 0;
        break;
    }
    default:
        return fail(err, MSG_E_INTERNAL, path, "bad field table");
    }
    if (rc)
        return rc;
    return check_one(f, base, path, err);
}

static int parse_fields(json_t *obj, const struct fdesc *fd, char *base,
                        const char *prefix, struct msg_error *err)
{
    for (const struct fdesc *f = fd; f->name; f++) {
        char path[64];
        path_join_field(path, sizeof path, prefix, f->name);
        json_t *v = json_object_get(obj, f->name);
        if (!v) {
            if (f->req)
                return fail(err, MSG_E_MISSING_FIELD, path, "is required");
            continue;
        }
        if (f->has != NO_HAS)
            *(bool *)(base + f->has) = true;
        int rc = parse_one(f, v, base, path, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* reply: ok:true carries result, ok:false carries error; not both. */
static int reply_parse(json_t *obj, struct msg *m, struct msg_error *err)
{
    struct msg_reply *r = &m->reply;
    json_t *res = json_object_get(obj, "result");
    json_t *er = json_object_get(obj, "error");

    if (r->ok) {
        if (!res)
            return fail(err, MSG_E_MISSING_FIELD, "result", "is required");
        if (!json_is_object(res))
            return want(err, "result", "an object", res);
        if (er)
            return fail(err, MSG_E_BAD_FIELD, "error",
                        "not allowed when ok is true");
        r->result = json_incref(res);
        return 0;
    }
    if (!er)
        return fail(err, MSG_E_MISSING_FIELD, "error", "is required");
    if (!json_is_object(er))
        return want(err, "error", "an object", er);
    if (res)
        return fail(err, MSG_E_BAD_FIELD, "result",
                    "not allowed when ok is false");
    return parse_fields(er, errinfo_f, (char *)&r->error, "error", err);
}

static int reply_check(const struct msg *m, struct msg_error *err)
{
    const struct msg_reply *r = &m->reply;

    if (r->ok) {
        if (!r->result)
            return fail(err, MSG_E_MISSING_FIELD, "result", "is required");
        if (!json_is_object(r->result))
            return fail(err, MSG_E_BAD_TYPE, "result", "must be an object");
        return 0;
    }
    if (r->result)
        return fail(err, MSG_E_BAD_FIELD, "result",
                    "not allowed when ok is false");
    return check_fields(errinfo_f, (const char *)&r->error, "error", err);
}

static void apply_defaults(const struct fdesc *fd, char *base)
{
    for (const struct fdesc *f = fd; f->name; f++) {
        if (f->kind == F_INT && f->has_def)
            *(int64_t *)(base + f->off) = f->def;
        else if (f->kind == F_OBJ)
            apply_defaults(f->sub, base + f->off);
    }
}

void msg_init(struct msg *m, enum msg_type type)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    if (type_ok(type))
        apply_defaults(types[type].f, body_of(m));
}

void msg_free(struct msg *m)
{
    if (!m)
        return;
    if (m->type == MSG_EVENT)
        json_decref(m->event.body);
    else if (m->type == MSG_REPLY)
        json_decref(m->reply.result);
    memset(m, 0, sizeof *m);
}

static void err_clear(struct msg_error *err)
{
    memset(err, 0, sizeof *err);
}

/* The object's own "id", when well-formed, so a failure can be answered. */
static void recover_id(json_t *obj, struct msg_error *err)
{
    json_t *id = json_object_get(obj, "id");
    if (json_is_string(id) && json_string_length(id) >= 1 &&
        json_string_length(id) <= MSG_ID_MAX &&
        syntax_ok(SY_ID, json_string_value(id), json_string_length(id)))
        memcpy(err->id, json_string_value(id), json_string_length(id) + 1);
}

/* Fills out from obj as a message of type t. */
static int parse_as(json_t *obj, enum msg_type t, bool id_optional,
                    struct msg *out, struct msg_error *err)
{
    const struct tdesc *td = &types[t];
    int rc;

    msg_init(out, t);
    err->type = t;
    if (!msg_is_request(t))     /* only requests are answered by id */
        err->id[0] = 0;
    if (td->id != ID_NONE) {
        json_t *id = json_object_get(obj, "id");
        if (id) {
            rc = take_str(id, out->id, sizeof out->id, true, "id", err);
            if (!rc && !syntax_ok(SY_ID, out->id, strlen(out->id)))
                rc = fail(err, MSG_E_BAD_FIELD, "id", "must be %s",
                          syn_what[SY_ID]);
            if (rc)
                goto out;
        } else if (td->id == ID_REQ && !id_optional) {
            rc = fail(err, MSG_E_MISSING_FIELD, "id", "is required");
            goto out;
        }
    }
    rc = parse_fields(obj, td->f, body_of(out), "", err);
    if (!rc && t == MSG_REPLY)
        rc = reply_parse(obj, out, err);
    if (!rc && td->check)
        rc = td->check(out, err);
out:
    if (rc)
        msg_free(out);
    return rc;
}

int msg_parse_dir(const char *buf, size_t len, enum msg_dir from,
                  struct msg *out, struct msg_error *err)
{
    json_error_t jerr;
    json_t *obj, *tv;
    int rc;

    err_clear(err);
    memset(out, 0, sizeof *out);
    if (len > MSG_MAX_FRAME)
        return fail(err, MSG_E_TOO_BIG, "", "frame of %zu bytes exceeds %d",
                    len, MSG_MAX_FRAME);
    if (len == 0 || !buf)
        return fail(err, MSG_E_BAD_JSON, "", "empty frame");
    obj = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return fail(err, MSG_E_INTERNAL, "", "out of memory");
        return fail(err, MSG_E_BAD_JSON, "", "%s at line %d column %d",
                    jerr.text, jerr.line, jerr.column);
    }
    if (!json_is_object(obj)) {
        rc = fail(err, MSG_E_BAD_JSON, "", "frame is %s, not an object",
                  json_kind(obj));
        goto out;
    }
    recover_id(obj, err);
    tv = json_object_get(obj, "type");
    if (!tv) {
        rc = fail(err, MSG_E_MISSING_FIELD, "type", "is required");
        goto out;
    }
    if (!json_is_string(tv)) {
        rc = want(err, "type", "a string", tv);
        goto out;
    }
    enum msg_type t = msg_type_parse(json_string_value(tv));
    if (t == MSG_NONE || strlen(json_string_value(tv)) !=
                             json_string_length(tv)) {
        rc = fail(err, MSG_E_UNKNOWN_TYPE, "type", "unknown type");
        goto out;
    }
    if (from && !(types[t].dir & from)) {
        rc = fail(err, MSG_E_UNKNOWN_TYPE, "type",
                  "%s is not sent by the %s", msg_type_name(t),
                  from == MSG_FROM_CLIENT ? "client" : "server");
        goto out;
    }
    rc = parse_as(obj, t, false, out, err);
out:
    json_decref(obj);
    return rc;
}

int msg_parse(const char *buf, size_t len, struct msg *out,
              struct msg_error *err)
{
    return msg_parse_dir(buf, len, MSG_DIR_ANY, out, err);
}

int msg_from_json(json_t *obj, enum msg_type type, struct msg *out,
                  struct msg_error *err)
{
    err_clear(err);
    memset(out, 0, sizeof *out);
    if (!type_ok(type))
        return fail(err, MSG_E_UNKNOWN_TYPE, "type", "unknown type");
    if (!json_is_object(obj))
        return fail(err, MSG_E_BAD_JSON, "", "body is not a JSON object");
    recover_id(obj, err);
    return parse_as(obj, type, true, out, err);
}

/* ---- validate and build ----------------------------------------------- */

int msg_validate(const struct msg *m, struct msg_error *err)
{
    err_clear(err);
    if (!type_ok(m->type))
        return fail(err, MSG_E_UNKNOWN_TYPE, "type", "unknown type");
    const struct tdesc *td = &types[m->type];
    err->type = m->type;
    size_t n = strnlen(m->id, sizeof m->id);
    if (n == sizeof m->id)
        return fail(err, MSG_E_TOO_LONG, "id", "longer than %d bytes",
                    MSG_ID_MAX);
    if (td->id == ID_REQ && n == 0)
        return fail(err, MSG_E_MISSING_FIELD, "id", "is required");
    if (td->id != ID_NONE && n && !syntax_ok(SY_ID, m->id, n))
        return fail(err, MSG_E_BAD_FIELD, "id", "must be %s",
                    syn_what[SY_ID]);
    if (td->id != ID_NONE && n)
        memcpy(err->id, m->id, n + 1);
    int rc = check_fields(td->f, cbody_of(m), "", err);
    if (!rc && m->type == MSG_REPLY)
        rc = reply_check(m, err);
    if (!rc && td->check)
        rc = td->check(m, err);
    return rc;
}

static int put(json_t *obj, const char *key, json_t *v)
{
    return v ? json_object_set_new(obj, key, v) : -1;
}

static int build_fields(json_t *obj, const struct fdesc *fd,
                        const char *base);

static json_t *build_obj(const struct fdesc *fd, const char *base)
{
    json_t *o = json_object();
    if (o && build_fields(o, fd, base)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *build_one(const struct fdesc *f, const char *base)
{
    const char *p = base + f->off;

    switch (f->kind) {
    case F_STR:
        return json_string(p);
    case F_INT:
        return json_integer(*(const int64_t *)p);
    case F_NUM:
        return json_real(*(const double *)p);
    case F_BOOL:
        return json_boolean(*(const bool *)p);
    case F_ENUM:
        return json_string(f->names[*(const int *)p]);
    case F_OBJ:
        return build_obj(f->sub, p);
    case F_JSON:
        return json_incref(*(json_t *const *)p);
    case F_STRARR:
    case F_OBJARR: {
        json_t *a = json_array();
        int n = *(const int *)(base + f->cnt);
        for (int i = 0; a && i < n; i++) {
            const char *el = p + (size_t)i * f->size;
            if (json_array_append_new(a, f->kind == F_STRARR
                                         ? json_string(el)
                                         : build_obj(f->sub, el))) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    }
    return NULL;
}

static int build_fields(json_t *obj, const struct fdesc *fd,
                        const char *base)
{
    for (const struct fdesc *f = fd; f->name; f++) {
        if (!present(f, base) && !(f->req && f->kind == F_STR))
            continue;
        if (put(obj, f->name, build_one(f, base)))
            return -1;
    }
    return 0;
}

json_t *msg_to_json(const struct msg *m, struct msg_error *err)
{
    if (msg_validate(m, err))
        return NULL;
    json_t *obj = json_object();
    if (!obj || put(obj, "type", json_string(msg_type_name(m->type))))
        goto oom;
    if (types[m->type].id != ID_NONE && m->id[0] &&
        put(obj, "id", json_string(m->id)))
        goto oom;
    if (build_fields(obj, types[m->type].f, cbody_of(m)))
        goto oom;
    if (m->type == MSG_REPLY) {
        const struct msg_reply *r = &m->reply;
        if (r->ok ? put(obj, "result", json_incref(r->result))
                  : put(obj, "error", build_obj(errinfo_f,
                                                (const char *)&r->error)))
            goto oom;
    }
    return obj;
oom:
    json_decref(obj);
    fail(err, MSG_E_INTERNAL, "", "out of memory");
    return NULL;
}

int msg_serialize(const struct msg *m, char **out, size_t *len,
                  struct msg_error *err)
{
    *out = NULL;
    *len = 0;
    json_t *obj = msg_to_json(m, err);
    if (!obj)
        return err->code == MSG_E_INTERNAL ? ERR_INTERNAL : ERR_INVALID;
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        return fail(err, MSG_E_INTERNAL, "", "out of memory");
    size_t n = strlen(s);
    if (n > MSG_MAX_FRAME) {
        free(s);
        return fail(err, MSG_E_TOO_BIG, "", "frame of %zu bytes exceeds %d",
                    n, MSG_MAX_FRAME);
    }
    *out = s;
    *len = n;
    return 0;
}

/* ---- builders --------------------------------------------------------- */

/* Copies src into a field buffer; too_long if it does not fit. */
static int set_str(char *dst, size_t size, const char *src, const char *name,
                   struct msg_error *err)
{
    if (!src)
        return 0;
    if (strlcpy_h(dst, src, size) >= size)
        return fail(err, MSG_E_TOO_LONG, name, "longer than %zu bytes",
                    size - 1);
    return 0;
}

#define SET(dst, src, name) \
    do { \
        int rc_ = set_str(dst, sizeof(dst), src, name, err); \
        if (rc_) \
            return rc_; \
    } while (0)

/* Validates a built message; on failure drops its JSON references. */
static int done(struct msg *m, struct msg_error *err)
{
    int rc = msg_validate(m, err);
    if (rc)
        msg_free(m);
    return rc;
}

int msg_build_hello(struct msg *m, const char *token, int64_t last_seq,
                    const char *client_name, const char *client_version,
                    struct msg_error *err)
{
    msg_init(m, MSG_HELLO);
    SET(m->hello.token, token, "token");
    m->hello.last_seq = last_seq;
    SET(m->hello.client.name, client_name, "client.name");
    SET(m->hello.client.version, client_version, "client.version");
    return done(m, err);
}

int msg_build_ack(struct msg *m, int64_t seq, struct msg_error *err)
{
    msg_init(m, MSG_ACK);
    m->ack.seq = seq;
    return done(m, err);
}

int msg_build_ping(struct msg *m, enum msg_type ping_or_pong, const char *id,
                   struct msg_error *err)
{
    msg_init(m, ping_or_pong == MSG_PONG ? MSG_PONG : MSG_PING);
    SET(m->id, id, "id");
    return done(m, err);
}

int msg_build_event(struct msg *m, int64_t seq, const char *event_id,
                    int kind, const char *case_id, int64_t at_ms,
                    json_t *body, struct msg_error *err)
{
    msg_init(m, MSG_EVENT);
    m->event.body = body;
    m->event.seq = seq;
    m->event.kind = kind;
    m->event.at = at_ms;
    int rc = set_str(m->event.event_id, sizeof m->event.event_id, event_id,
                     "event_id", err);
    if (!rc)
        rc = set_str(m->event.case_id, sizeof m->event.case_id, case_id,
                     "case_id", err);
    if (rc) {
        msg_free(m);
        return rc;
    }
    return done(m, err);
}

int msg_build_reply_ok(struct msg *m, const char *id, json_t *result,
                       struct msg_error *err)
{
    msg_init(m, MSG_REPLY);
    m->reply.ok = true;
    m->reply.result = result;
    int rc = set_str(m->id, sizeof m->id, id, "id", err);
    if (rc) {
        msg_free(m);
        return rc;
    }
    return done(m, err);
}

/* Error messages are made to fit rather than refused: a server must
 * always be able to answer, whatever text its error carries. */
static void set_errinfo(struct msg_errinfo *e, enum msg_code code,
                        const char *message)
{
    const unsigned char *m = (const unsigned char *)(message ? message : "");
    size_t n = strlen((const char *)m), o = 0;

    e->code = code;
    /* whole valid characters only; anything else becomes '?' */
    for (size_t i = 0, k; i < n && o < sizeof e->message - 1; i += k) {
        k = utf8_char(m + i, n - i, true);
        if (!k) {
            e->message[o++] = '?';
            k = 1;
        } else if (o + k < sizeof e->message) {
            memcpy(e->message + o, m + i, k);
            o += k;
        } else {
            break;
        }
    }
    e->message[o] = 0;
}

int msg_build_reply_err(struct msg *m, const char *id, enum msg_code code,
                        const char *message, struct msg_error *err)
{
    msg_init(m, MSG_REPLY);
    m->reply.ok = false;
    set_errinfo(&m->reply.error, code, message);
    SET(m->id, id, "id");
    return done(m, err);
}

int msg_build_error(struct msg *m, enum msg_code code, const char *message,
                    struct msg_error *err)
{
    msg_init(m, MSG_ERROR);
    set_errinfo(&m->error.error, code, message);
    return done(m, err);
}

int msg_build_failure(struct msg *m, const struct msg_error *failed,
                      struct msg_error *err)
{
    if (failed->id[0])
        return msg_build_reply_err(m, failed->id, failed->code,
                                   failed->message, err);
    return msg_build_error(m, failed->code, failed->message, err);
}

int msg_build_case_ref(struct msg *m, enum msg_type type, const char *id,
                       const char *case_id, const char *reason,
                       struct msg_error *err)
{
    if (type != MSG_CASE_CLAIM && type != MSG_CASE_GET &&
        type != MSG_CASE_CLOSE && type != MSG_CASE_REOPEN) {
        msg_init(m, MSG_NONE);
        return fail(err, MSG_E_UNKNOWN_TYPE, "type",
                    "not a case.claim/get/close/reopen");
    }
    msg_init(m, type);
    SET(m->id, id, "id");
    SET(m->case_ref.case_id, case_id, "case_id");
    if (type == MSG_CASE_CLOSE || type == MSG_CASE_REOPEN)
        SET(m->case_ref.reason, reason, "reason");
    return done(m, err);
}

int msg_build_upload_begin(struct msg *m, const char *id,
                           const char *upload_id, const char *sha256,
                           int64_t size, const char *case_id,
                           struct msg_error *err)
{
    msg_init(m, MSG_UPLOAD_BEGIN);
    SET(m->id, id, "id");
    SET(m->upload_begin.upload_id, upload_id, "upload_id");
    SET(m->upload_begin.sha256, sha256, "sha256");
    m->upload_begin.size = size;
    SET(m->upload_begin.case_id, case_id, "case_id");
    return done(m, err);
}

int msg_build_upload_begin_preview(struct msg *m, const char *id,
                                   const char *upload_id, const char *sha256,
                                   int64_t size, const char *study_uid,
                                   struct msg_error *err)
{
    int rc = msg_build_upload_begin(m, id, upload_id, sha256, size, NULL,
                                    err);
    if (rc)
        return rc;
    m->upload_begin.kind = MSG_UK_PREVIEW;
    SET(m->upload_begin.study_uid, study_uid, "study_uid");
    return done(m, err);
}

int msg_build_study_expect(struct msg *m, const char *id,
                           const char *study_uid, int64_t instances,
                           int priority, struct msg_error *err)
{
    msg_init(m, MSG_STUDY_EXPECT);
    SET(m->id, id, "id");
    SET(m->study_expect.study_uid, study_uid, "study_uid");
    m->study_expect.instances = instances;
    m->study_expect.priority = priority;
    return done(m, err);
}

int msg_build_study_priority(struct msg *m, const char *id,
                             const char (*uids)[MSG_UID_MAX + 1], int n,
                             struct msg_error *err)
{
    msg_init(m, MSG_STUDY_PRIORITY);
    SET(m->id, id, "id");
    if (n < 0 || n > MSG_PRIORITIES_MAX)
        return fail(err, MSG_E_TOO_LONG, "study_uids",
                    "at most %d study UIDs", MSG_PRIORITIES_MAX);
    for (int i = 0; i < n; i++)
        SET(m->study_priority.study_uids[i], uids[i], "study_uids");
    m->study_priority.n_study_uids = n;
    return done(m, err);
}

int msg_build_upload_end(struct msg *m, const char *id,
                         const char *upload_id, struct msg_error *err)
{
    msg_init(m, MSG_UPLOAD_END);
    SET(m->id, id, "id");
    SET(m->upload_end.upload_id, upload_id, "upload_id");
    return done(m, err);
}

int msg_build_upload_at(struct msg *m, const char *id, const char *upload_id,
                        int64_t offset, struct msg_error *err)
{
    msg_init(m, MSG_UPLOAD_AT);
    SET(m->id, id, "id");
    SET(m->upload_at.upload_id, upload_id, "upload_id");
    m->upload_at.offset = offset;
    return done(m, err);
}

/* upload.done of an instance (sop_uid) or of a preview (study_uid). */
static int build_done(struct msg *m, const char *id, const char *upload_id,
                      const char *sop_uid, const char *study_uid, int status,
                      struct msg_error *err)
{
    msg_init(m, MSG_UPLOAD_DONE);
    SET(m->id, id, "id");
    SET(m->upload_done.upload_id, upload_id, "upload_id");
    SET(m->upload_done.sop_instance_uid, sop_uid, "sop_instance_uid");
    SET(m->upload_done.study_uid, study_uid, "study_uid");
    m->upload_done.status = status;
    return done(m, err);
}

int msg_build_upload_done(struct msg *m, const char *id,
                          const char *upload_id, const char *sop_uid,
                          int status, struct msg_error *err)
{
    return build_done(m, id, upload_id, sop_uid, NULL, status, err);
}

int msg_build_upload_done_preview(struct msg *m, const char *id,
                                  const char *upload_id,
                                  const char *study_uid, int status,
                                  struct msg_error *err)
{
    return build_done(m, id, upload_id, NULL, study_uid, status, err);
}

/* ---- upload chunks ---------------------------------------------------- */

#define CHUNK_MAGIC0 'H'
#define CHUNK_MAGIC1 'C'
#define CHUNK_VERSION 1

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

int msg_chunk_parse(const void *frame, size_t len, struct msg_chunk *out,
                    struct msg_error *err)
{
    const unsigned char *f = frame;

    err_clear(err);
    memset(out, 0, sizeof *out);
    if (len > MSG_CHUNK_HDR + (size_t)MSG_MAX_CHUNK)
        return fail(err, MSG_E_TOO_BIG, "chunk",
                    "frame of %zu bytes exceeds %d", len,
                    MSG_CHUNK_HDR + MSG_MAX_CHUNK);
    if (!f || len < MSG_CHUNK_HDR)
        return fail(err, MSG_E_BAD_FIELD, "chunk",
                    "%zu bytes, shorter than the %d-byte header", len,
                    MSG_CHUNK_HDR);
    if (f[0] != CHUNK_MAGIC0 || f[1] != CHUNK_MAGIC1)
        return fail(err, MSG_E_BAD_FIELD, "chunk.magic", "not \"HC\"");
    if (f[2] != CHUNK_VERSION)
        return fail(err, MSG_E_UNKNOWN_TYPE, "chunk.version",
                    "version %u, expected %d", f[2], CHUNK_VERSION);
    size_t idlen = f[3];
    if (idlen < 1 || idlen > MSG_ID_MAX ||
        !syntax_ok(SY_ID, (const char *)f + 4, idlen))
        return fail(err, MSG_E_BAD_FIELD, "chunk.upload_id",
                    "must be 1..%d of %s", MSG_ID_MAX, syn_what[SY_ID]);
    for (size_t i = 4 + idlen; i < 68; i++)
        if (f[i])
            return fail(err, MSG_E_BAD_FIELD, "chunk.upload_id",
                        "padding must be zero bytes");
    uint64_t off = get_be(f + 68, 8);
    uint32_t n = (uint32_t)get_be(f + 76, 4);
    if (off > (uint64_t)MSG_UPLOAD_MAX)
        return fail(err, MSG_E_BAD_FIELD, "chunk.offset",
                    "must be at most %lld", (long long)MSG_UPLOAD_MAX);
    if (n == 0)
        return fail(err, MSG_E_BAD_FIELD, "chunk.length", "must not be 0");
    if (n > MSG_MAX_CHUNK)
        return fail(err, MSG_E_TOO_BIG, "chunk.length",
                    "%u bytes exceeds %d", n, MSG_MAX_CHUNK);
    if (len - MSG_CHUNK_HDR != n)
        return fail(err, MSG_E_BAD_FIELD, "chunk.length",
                    "says %u bytes but the frame carries %zu", n,
                    len - MSG_CHUNK_HDR);
    memcpy(out->upload_id, f + 4, idlen);
    out->upload_id[idlen] = 0;
    out->offset = off;
    out->length = n;
    out->data = f + MSG_CHUNK_HDR;
    return 0;
}

int msg_chunk_build(unsigned char hdr[MSG_CHUNK_HDR], const char *upload_id,
                    uint64_t offset, uint32_t length, struct msg_error *err)
{
    err_clear(err);
    memset(hdr, 0, MSG_CHUNK_HDR);
    size_t idlen = upload_id ? strnlen(upload_id, MSG_ID_MAX + 1) : 0;
    if (idlen < 1 || idlen > MSG_ID_MAX ||
        !syntax_ok(SY_ID, upload_id, idlen))
        return fail(err, MSG_E_BAD_FIELD, "chunk.upload_id",
                    "must be 1..%d of %s", MSG_ID_MAX, syn_what[SY_ID]);
    if (offset > (uint64_t)MSG_UPLOAD_MAX)
        return fail(err, MSG_E_BAD_FIELD, "chunk.offset",
                    "must be at most %lld", (long long)MSG_UPLOAD_MAX);
    if (length == 0)
        return fail(err, MSG_E_BAD_FIELD, "chunk.length", "must not be 0");
    if (length > MSG_MAX_CHUNK)
        return fail(err, MSG_E_TOO_BIG, "chunk.length",
                    "%u bytes exceeds %d", length, MSG_MAX_CHUNK);
    hdr[0] = CHUNK_MAGIC0;
    hdr[1] = CHUNK_MAGIC1;
    hdr[2] = CHUNK_VERSION;
    hdr[3] = (unsigned char)idlen;
    memcpy(hdr + 4, upload_id, idlen);
    put_be(hdr + 68, offset, 8);
    put_be(hdr + 76, length, 4);
    return 0;
}
