/*
 * msg — the hashi.v1 codec: parse, validate and build every message of
 * proto/PROTOCOL.md, shared by the server and every client.
 *
 * A text frame is one JSON object; msg_parse() turns it into a struct msg
 * (a tag and one member of an anonymous union per type) after checking
 * everything the spec says: JSON types, required fields, lengths, syntaxes,
 * enums, ranges, UTF-8, duplicate keys and the frame size.  msg_serialize()
 * goes the other way, after msg_validate() has run the same value checks
 * on the struct, so neither end can emit a frame the other end rejects.
 * A binary frame is an upload chunk: msg_chunk_parse()/msg_chunk_build().
 *
 * Ownership: strings live in fixed-size arrays inside struct msg (the array
 * size is the spec's limit + 1), so a struct msg can be copied, kept on the
 * stack and needs no freeing, except for the two JSON values it may hold,
 * event.body and reply.result: the struct owns one reference to each, and
 * msg_free() drops it.  Call msg_free() on every struct msg that went
 * through msg_init() or msg_parse(), whether or not it succeeded.
 *
 * Errors: functions return 0 or a negative ERR_* code (proto/util.h) and
 * fill a struct msg_error with the wire error code (enum msg_code), the
 * field at fault ("patient.age", "study_uids[2]") and a message that names
 * it; the server sends code and message back to the peer as they are.
 */
#ifndef HASHI_MSG_H
#define HASHI_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define MSG_SUBPROTOCOL     "hashi.v1"

/* Limits (PROTOCOL.md, "Limits").  String limits are bytes of UTF-8. */
#define MSG_MAX_FRAME       65536           /* text frame, bytes */
#define MSG_MAX_CHUNK       1048576         /* chunk payload, bytes */
#define MSG_CHUNK_HDR       80              /* chunk header, bytes */
#define MSG_ID_MAX          64              /* every *id */
#define MSG_TOKEN_MAX       256
#define MSG_NAME_MAX        64              /* client.name, login, specialty */
#define MSG_VERSION_MAX     32
#define MSG_CLINIC_MAX      128
#define MSG_UID_MAX         64              /* DICOM UIDs */
#define MSG_HISTORY_MAX     8000
#define MSG_QUESTION_MAX    2000
#define MSG_IMPRESSION_MAX  4000
#define MSG_RECOMMEND_MAX   4000
#define MSG_ANSWER_TEXT_MAX 16000
#define MSG_REASON_MAX      1000
#define MSG_TEXT_MAX        8000            /* chat message */
#define MSG_CURSOR_MAX      128
#define MSG_ERRMSG_MAX      512
#define MSG_STUDIES_MAX     16
#define MSG_SPECIALTIES_MAX 16
#define MSG_AGE_MAX         150
#define MSG_ETA_MAX         1440            /* prearrival.eta_min, minutes */
#define MSG_LIST_DEFAULT    50
#define MSG_LIST_MAX        200
#define MSG_FRAME_NO_MAX    2147483647LL    /* image.frame, 1-based */
#define MSG_WINDOW_ABS_MAX  1000000.0       /* |center|, width */
#define MSG_SEQ_MAX         9007199254740991LL  /* 2^53 - 1 */
#define MSG_UPLOAD_MAX      1099511627776LL     /* 2^40 bytes */
#define MSG_TIME_MAX        253402300799999LL   /* ms, 9999-12-31 */
#define MSG_PRIORITIES_MAX  128             /* study.priority study_uids */
#define MSG_EXPECT_MAX      1000000         /* study.expect instances */
#define MSG_PREVIEW_MAX     1048576         /* preview upload, bytes */

enum msg_type {
    MSG_NONE = 0,
    /* session */
    MSG_HELLO,              /* c->s */
    MSG_WELCOME,            /* s->c */
    MSG_EVENT,              /* s->c */
    MSG_ACK,                /* c->s */
    MSG_PING,               /* either way */
    MSG_PONG,               /* either way */
    MSG_ERROR,              /* s->c, not tied to a request */
    /* requests, c->s, each with an id */
    MSG_CASE_CREATE,
    MSG_CASE_CLAIM,
    MSG_CASE_ANSWER,
    MSG_CASE_AMEND,         /* the answer's author replaces it; kept */
    MSG_CASE_CLOSE,
    MSG_CASE_REOPEN,
    MSG_CASE_LIST,
    MSG_CASE_GET,
    MSG_MESSAGE_SEND,
    MSG_MESSAGE_READ,
    MSG_UPLOAD_BEGIN,
    MSG_UPLOAD_END,
    MSG_STUDY_EXPECT,
    MSG_GATEWAY_STATUS,
    MSG_STUDY_PRIORITY,
    MSG_CASE_LINK,          /* hand-over: the hospital's study */
    /* answers, s->c */
    MSG_REPLY,
    MSG_UPLOAD_AT,
    MSG_UPLOAD_DONE,
    MSG_TYPE_COUNT
};

/* Wire error codes; msg_code_name() gives the stable string. */
enum msg_code {
    MSG_E_NONE = 0,
    MSG_E_BAD_JSON,
    MSG_E_BAD_TYPE,
    MSG_E_UNKNOWN_TYPE,
    MSG_E_MISSING_FIELD,
    MSG_E_BAD_FIELD,
    MSG_E_TOO_LONG,
    MSG_E_TOO_BIG,
    MSG_E_UNAUTHORIZED,
    MSG_E_FORBIDDEN,
    MSG_E_NOT_FOUND,
    MSG_E_CONFLICT,
    MSG_E_ALREADY_CLAIMED,
    MSG_E_RATE_LIMITED,
    MSG_E_NOT_READY,
    MSG_E_INTERNAL,
    MSG_CODE_COUNT
};

/* Enumerations carried as strings.  0 always means "absent". */
enum msg_kind {             /* event.kind */
    MSG_EV_NONE = 0,
    MSG_EV_CASE_NEW, MSG_EV_CASE_CLAIMED, MSG_EV_CASE_ANSWERED,
    MSG_EV_CASE_CLOSED, MSG_EV_CASE_REOPENED, MSG_EV_CASE_ESCALATED,
    MSG_EV_MESSAGE_NEW, MSG_EV_MESSAGE_READ, MSG_EV_IMAGES_ARRIVED,
    MSG_EV_CASE_ARRIVED,
    MSG_EV_COUNT
};
enum msg_priority { MSG_PRIO_NONE = 0, MSG_PRIO_STAT, MSG_PRIO_URGENT,
                    MSG_PRIO_ROUTINE, MSG_PRIO_COUNT };
enum msg_status { MSG_ST_NONE = 0, MSG_ST_NEW, MSG_ST_CLAIMED,
                  MSG_ST_ANSWERED, MSG_ST_CLOSED, MSG_ST_REOPENED,
                  MSG_ST_COUNT };
enum msg_sex { MSG_SEX_NONE = 0, MSG_SEX_F, MSG_SEX_M, MSG_SEX_O,
               MSG_SEX_COUNT };
enum msg_role { MSG_ROLE_NONE = 0, MSG_ROLE_REQUESTER, MSG_ROLE_SPECIALIST,
                MSG_ROLE_ADMIN, MSG_ROLE_GATEWAY, MSG_ROLE_CREW,
                MSG_ROLE_COUNT };
enum msg_upload_status { MSG_UP_NONE = 0, MSG_UP_STORED, MSG_UP_DUPLICATE,
                         MSG_UP_CONFLICT, MSG_UP_COUNT };
enum msg_ua_reason { MSG_UA_NONE = 0, MSG_UA_PROGRESS, MSG_UA_RESEND,
                     MSG_UA_COUNT };       /* upload.at without id */
enum msg_upload_kind { MSG_UK_NONE = 0, MSG_UK_INSTANCE, MSG_UK_PREVIEW,
                       MSG_UK_PHOTO,       /* a crew's JPEG for its case */
                       MSG_UK_COUNT };     /* NONE means instance */

/* Which end may send a type (msg_parse_dir). */
enum msg_dir { MSG_DIR_ANY = 0, MSG_FROM_CLIENT = 1, MSG_FROM_SERVER = 2 };

/* Nested objects. */
struct msg_client { char name[MSG_NAME_MAX + 1];
                    char version[MSG_VERSION_MAX + 1]; };
struct msg_user {
    char login[MSG_NAME_MAX + 1];
    int role;                                   /* enum msg_role */
    char clinic[MSG_CLINIC_MAX + 1];
    char specialties[MSG_SPECIALTIES_MAX][MSG_NAME_MAX + 1];
    int n_specialties;
};
struct msg_patient { bool has_age; int64_t age; int sex; /* msg_sex */ };
struct msg_window { double center, width; };
struct msg_image {
    char sop_uid[MSG_UID_MAX + 1];
    int64_t frame;                              /* 1-based, default 1 */
    bool has_window;
    struct msg_window window;
};
struct msg_errinfo {
    int code;                                   /* enum msg_code */
    char message[MSG_ERRMSG_MAX + 1];
};

/* One struct per message type; the field names are the wire names. */
struct msg_hello {
    char token[MSG_TOKEN_MAX + 1];  /* "" = absent (session cookie) */
    int64_t last_seq;
    struct msg_client client;
};
struct msg_welcome {
    struct msg_user user;
    int64_t server_time;            /* ms since the epoch */
    int64_t last_seq;
    int64_t replay_from;
};
struct msg_event {
    int64_t seq;
    char event_id[MSG_ID_MAX + 1];
    int kind;                       /* enum msg_kind */
    char case_id[MSG_ID_MAX + 1];
    int64_t at;                     /* ms since the epoch */
    json_t *body;                   /* object; owned reference */
};
struct msg_ack { int64_t seq; };
struct msg_error_msg { struct msg_errinfo error; };
struct msg_reply {
    bool ok;
    json_t *result;                 /* object when ok; owned reference */
    struct msg_errinfo error;       /* when !ok */
};
/* A crew's pre-arrival data (issue 12); the ranges are the codec's
 * (MSG_VITALS_*), "in the past" and "in the future" the server's. */
struct msg_vitals {
    bool has_bp_sys, has_bp_dia, has_heart_rate, has_spo2, has_glucose,
         has_gcs;
    int64_t bp_sys, bp_dia;         /* mmHg */
    int64_t heart_rate;             /* /min */
    int64_t spo2;                   /* % */
    int64_t glucose;                /* mg/dL */
    int64_t gcs;                    /* 3..15 */
};
struct msg_prearrival {
    int64_t last_known_well;        /* ms since the epoch */
    bool has_vitals;
    struct msg_vitals vitals;
    bool has_lams;
    int64_t lams;                   /* Los Angeles Motor Scale, 0..5 */
    int64_t eta_min;                /* minutes from now; < 0 refused */
    char destination[MSG_CLINIC_MAX + 1];
};
struct msg_case_create {
    char case_id[MSG_ID_MAX + 1];
    bool has_prearrival;
    struct msg_prearrival prearrival;
    bool has_patient;
    struct msg_patient patient;
    char history[MSG_HISTORY_MAX + 1];
    char question[MSG_QUESTION_MAX + 1];
    int priority;                   /* enum msg_priority */
    char specialty[MSG_NAME_MAX + 1];   /* at least one of these two */
    char specialist[MSG_NAME_MAX + 1];
    char study_uids[MSG_STUDIES_MAX][MSG_UID_MAX + 1];
    int n_study_uids;
};
/* case.claim, case.get (reason unused), case.close, case.reopen. */
struct msg_case_ref {
    char case_id[MSG_ID_MAX + 1];
    char reason[MSG_REASON_MAX + 1];
};
struct msg_case_answer {                /* impression and/or text */
    char case_id[MSG_ID_MAX + 1];
    char impression[MSG_IMPRESSION_MAX + 1];
    char recommendation[MSG_RECOMMEND_MAX + 1];
    char text[MSG_ANSWER_TEXT_MAX + 1];
};
struct msg_case_list {
    int status;                     /* enum msg_status; 0 = any */
    int64_t limit;                  /* default MSG_LIST_DEFAULT */
    char before[MSG_CURSOR_MAX + 1];
};
struct msg_message_send {
    char case_id[MSG_ID_MAX + 1];
    char message_id[MSG_ID_MAX + 1];
    char text[MSG_TEXT_MAX + 1];
    bool has_image;
    struct msg_image image;
};
struct msg_message_read {
    char case_id[MSG_ID_MAX + 1];
    char message_id[MSG_ID_MAX + 1];
};
struct msg_upload_begin {
    char upload_id[MSG_ID_MAX + 1];
    char sha256[65];
    int64_t size;
    char case_id[MSG_ID_MAX + 1];   /* optional */
    int kind;                       /* enum msg_upload_kind; 0 = instance */
    char study_uid[MSG_UID_MAX + 1];    /* required with a preview only */
};
struct msg_upload_end { char upload_id[MSG_ID_MAX + 1]; };
/* case.link: the receiving team links the hospital's own study (the
 * patient's CT on arrival) to a pre-arrival case. */
struct msg_case_link {
    char case_id[MSG_ID_MAX + 1];
    char study_uid[MSG_UID_MAX + 1];
};
struct msg_upload_at {
    char upload_id[MSG_ID_MAX + 1];
    int64_t offset;
    int reason;                     /* enum msg_ua_reason; 0 = absent */
};
struct msg_upload_done {
    char upload_id[MSG_ID_MAX + 1];
    char sop_instance_uid[MSG_UID_MAX + 1];     /* instance, or */
    char study_uid[MSG_UID_MAX + 1];            /* preview: one of two */
    int status;                     /* enum msg_upload_status */
};
struct msg_study_expect {
    char study_uid[MSG_UID_MAX + 1];
    int64_t instances;              /* 1..MSG_EXPECT_MAX */
    int priority;                   /* enum msg_priority; 0 = absent */
};
struct msg_gateway_status {
    int64_t waiting, in_flight, done, failed;   /* files */
    int64_t bytes_waiting, rate_bps;
    bool has_eta_s;
    int64_t eta_s;                  /* seconds; only when has_eta_s */
    char last_error[MSG_ERRMSG_MAX + 1];        /* "" = absent */
};
struct msg_study_priority {         /* the studies a gateway holds */
    char study_uids[MSG_PRIORITIES_MAX][MSG_UID_MAX + 1];
    int n_study_uids;               /* 1..MSG_PRIORITIES_MAX */
};

struct msg {
    enum msg_type type;
    char id[MSG_ID_MAX + 1];        /* request id; "" when absent */
    union {
        struct msg_hello hello;
        struct msg_welcome welcome;
        struct msg_event event;
        struct msg_ack ack;
        struct msg_error_msg error;
        struct msg_reply reply;
        struct msg_case_create case_create;
        struct msg_case_ref case_ref;   /* claim, get, close, reopen */
        struct msg_case_answer case_answer;     /* answer, amend */
        struct msg_case_list case_list;
        struct msg_message_send message_send;
        struct msg_message_read message_read;
        struct msg_upload_begin upload_begin;
        struct msg_upload_end upload_end;
        struct msg_upload_at upload_at;
        struct msg_upload_done upload_done;
        struct msg_study_expect study_expect;
        struct msg_gateway_status gateway_status;
        struct msg_study_priority study_priority;
        struct msg_case_link case_link;
    };
};

struct msg_error {
    enum msg_code code;
    char field[64];                 /* "" when the frame as a whole */
    char message[256];
    char id[MSG_ID_MAX + 1];        /* the valid "id" of a request (or of
                                       a frame of unknown type), else "" */
    enum msg_type type;             /* the frame's type, if known */
};

/* Names: "case.create", "bad_field", "case.new", "stat", ... NULL (or -1
 * from the *_parse functions) when out of range or unknown. */
const char *msg_type_name(enum msg_type t);
enum msg_type msg_type_parse(const char *name);     /* MSG_NONE if unknown */
const char *msg_code_name(enum msg_code c);
int msg_code_parse(const char *name);
const char *msg_kind_name(int kind);
const char *msg_priority_name(int p);
const char *msg_status_name(int s);
const char *msg_role_name(int r);
/* True for the request types (those answered by reply/upload.at/done). */
bool msg_is_request(enum msg_type t);
/* MSG_FROM_CLIENT, MSG_FROM_SERVER or both bits. */
unsigned msg_type_dir(enum msg_type t);

/* Zeroes m, sets the type and the spec's defaults (case.list limit,
 * image.frame).  Never fails for a valid type. */
void msg_init(struct msg *m, enum msg_type type);
/* Drops the JSON references m holds and zeroes it; NULL-safe. */
void msg_free(struct msg *m);

/* Parses one text frame of len bytes (need not be NUL-terminated).  On
 * success fills *out (msg_free it) and returns 0; on failure returns
 * ERR_INVALID (ERR_TOOBIG for an oversize frame, ERR_INTERNAL when out of
 * memory), fills *err and leaves *out zeroed.  msg_parse_dir also rejects
 * types the given end may not send, with unknown_type. */
int msg_parse(const char *buf, size_t len, struct msg *out,
              struct msg_error *err);
int msg_parse_dir(const char *buf, size_t len, enum msg_dir from,
                  struct msg *out, struct msg_error *err);

/* Validates an object already loaded (the REST twin's request body) as a
 * message of the given type: "type" is not looked at, "id" is optional.
 * obj is borrowed.  Same results as msg_parse. */
int msg_from_json(json_t *obj, enum msg_type type, struct msg *out,
                  struct msg_error *err);

/* Checks a struct against the spec (the value checks msg_parse makes). */
int msg_validate(const struct msg *m, struct msg_error *err);
/* Validates, then builds the JSON object (a new reference; NULL with err
 * filled on failure).  Its fields carry the wire names, so it is also
 * the validated request object the cases_* functions take. */
json_t *msg_to_json(const struct msg *m, struct msg_error *err);
/* Validates and serializes to compact JSON in a malloc'd NUL-terminated
 * buffer (*out, caller frees; *len without the NUL).  ERR_TOOBIG with
 * code too_big if it would exceed MSG_MAX_FRAME. */
int msg_serialize(const struct msg *m, char **out, size_t *len,
                  struct msg_error *err);

/* Builders for the messages built most often.  Each calls msg_init(m, ..)
 * first and returns 0 or ERR_INVALID/ERR_TOOBIG (err filled) when an
 * argument breaks the spec.  JSON arguments are stolen (also on failure).
 * NULL strings mean absent.  msg_build_reply_err and msg_build_error never
 * fail on the message text: it is cut to 512 bytes at a character
 * boundary and invalid bytes become '?', so an answer can always be sent. */
int msg_build_hello(struct msg *m, const char *token, int64_t last_seq,
                    const char *client_name, const char *client_version,
                    struct msg_error *err);
int msg_build_ack(struct msg *m, int64_t seq, struct msg_error *err);
int msg_build_ping(struct msg *m, enum msg_type ping_or_pong, const char *id,
                   struct msg_error *err);
int msg_build_event(struct msg *m, int64_t seq, const char *event_id,
                    int kind, const char *case_id, int64_t at_ms,
                    json_t *body, struct msg_error *err);
int msg_build_reply_ok(struct msg *m, const char *id, json_t *result,
                       struct msg_error *err);
int msg_build_reply_err(struct msg *m, const char *id, enum msg_code code,
                        const char *message, struct msg_error *err);
/* The "error" message (no request id to answer). */
int msg_build_error(struct msg *m, enum msg_code code, const char *message,
                    struct msg_error *err);
/* case.claim, case.get, case.close, case.reopen (reason: close/reopen). */
int msg_build_case_ref(struct msg *m, enum msg_type type, const char *id,
                       const char *case_id, const char *reason,
                       struct msg_error *err);
int msg_build_upload_begin(struct msg *m, const char *id,
                           const char *upload_id, const char *sha256,
                           int64_t size, const char *case_id,
                           struct msg_error *err);
int msg_build_upload_begin_preview(struct msg *m, const char *id,
                                   const char *upload_id, const char *sha256,
                                   int64_t size, const char *study_uid,
                                   struct msg_error *err);
int msg_build_study_expect(struct msg *m, const char *id,
                           const char *study_uid, int64_t instances,
                           int priority, struct msg_error *err);
/* study.priority for uids[0..n) (n: 1..MSG_PRIORITIES_MAX). */
int msg_build_study_priority(struct msg *m, const char *id,
                             const char (*uids)[MSG_UID_MAX + 1], int n,
                             struct msg_error *err);
int msg_build_upload_end(struct msg *m, const char *id,
                         const char *upload_id, struct msg_error *err);
int msg_build_upload_at(struct msg *m, const char *id, const char *upload_id,
                        int64_t offset, struct msg_error *err);
/* An instance's upload.done; the _preview builders are for kind
 * "preview" (section 7).  gateway.status has no builder:
 * msg_init, fill the struct, msg_serialize (which validates). */
int msg_build_upload_done(struct msg *m, const char *id,
                          const char *upload_id, const char *sop_uid,
                          int status, struct msg_error *err);
int msg_build_upload_done_preview(struct msg *m, const char *id,
                                  const char *upload_id,
                                  const char *study_uid, int status,
                                  struct msg_error *err);
/* A reply answering a failed parse: uses err->id and err's code and
 * message; builds an "error" message instead when err->id is "". */
int msg_build_failure(struct msg *m, const struct msg_error *failed,
                      struct msg_error *err);

/* Upload chunks (binary frames): an MSG_CHUNK_HDR-byte header, then
 * length bytes.  Header, big-endian:
 *   0  'H' 'C'   magic          3  upload id length (1..64)
 *   2  1         version        4  upload id, ASCII, NUL-padded to 64
 *   68 offset    uint64         76 length  uint32 (1..MSG_MAX_CHUNK) */
struct msg_chunk {
    char upload_id[MSG_ID_MAX + 1];
    uint64_t offset;
    uint32_t length;
    const unsigned char *data;      /* points into the parsed frame */
};
int msg_chunk_parse(const void *frame, size_t len, struct msg_chunk *out,
                    struct msg_error *err);
/* Writes the header for a chunk of length bytes at offset; the caller
 * sends hdr followed by the bytes as one binary frame. */
int msg_chunk_build(unsigned char hdr[MSG_CHUNK_HDR], const char *upload_id,
                    uint64_t offset, uint32_t length, struct msg_error *err);

#endif
