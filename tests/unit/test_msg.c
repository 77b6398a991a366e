/*
 * test_msg — the hashi.v1 codec against its contract (proto/PROTOCOL.md).
 *
 * One canonical frame per message type (the same frames as the examples in
 * PROTOCOL.md, fields in the codec's order) must parse, re-serialize byte
 * for byte, and round-trip struct -> JSON -> struct unchanged.  From each
 * frame the tests then derive the malformed variants mechanically: every
 * required field removed (missing_field, naming it), every field given the
 * wrong JSON type (bad_type), every optional field removed (still fine).
 * Hand-written cases cover the rest: limits, enums, syntaxes, ranges,
 * UTF-8, duplicate keys, frame size, direction, chunks and builders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../proto/msg.h"
#include "../../proto/util.h"

struct sample {
    const char *json;
    const char *required;   /* space-separated paths */
};

/* Canonical frames: compact, fields in wire order. */
static const struct sample samples[] = {
    { "{\"type\":\"hello\",\"token\":\"tok_abc123\",\"last_seq\":41,"
      "\"client\":{\"name\":\"hashi-cli\",\"version\":\"0.1.0\"}}",
      "type last_seq client client.name client.version" },
    { "{\"type\":\"welcome\",\"user\":{\"login\":\"dr.neuro\","
      "\"role\":\"specialist\",\"clinic\":\"City Hospital\","
      "\"specialties\":[\"neurology\",\"stroke\"]},"
      "\"server_time\":1795865028123,\"last_seq\":57,"
      "\"replay_from\":41}",
      "type user user.login user.role user.clinic server_time last_seq "
      "replay_from" },
    { "{\"type\":\"event\",\"seq\":42,\"event_id\":\"ev_7-42\","
      "\"kind\":\"case.new\",\"case_id\":\"01JD8ZQ2X5K3M9\","
      "\"at\":1795865028123,"
      "\"body\":{\"case\":{\"case_id\":\"01JD8ZQ2X5K3M9\","
      "\"status\":\"new\"}}}",
      "type seq event_id kind case_id at body" },
    { "{\"type\":\"ack\",\"seq\":42}", "type seq" },
    { "{\"type\":\"ping\",\"id\":\"p1\"}", "type" },
    { "{\"type\":\"pong\",\"id\":\"p1\"}", "type" },
    { "{\"type\":\"error\",\"error\":{\"code\":\"unauthorized\","
      "\"message\":\"token expired\"}}",
      "type error error.code error.message" },
    { "{\"type\":\"case.create\",\"id\":\"r1\",\"case_id\":\"c-01\","
      "\"patient\":{\"age\":67,\"sex\":\"F\"},"
      "\"history\":\"Sudden aphasia at 09:10.\\nOn warfarin.\","
      "\"question\":\"Bleed? Thrombolysis?\",\"priority\":\"stat\","
      "\"specialty\":\"neurology\",\"specialist\":\"dr.neuro\","
      "\"study_uids\":[\"1.2.826.0.1.3680043.8.498.1\",\"1.2.3\"]}",
      "type id case_id question priority" },
    { "{\"type\":\"case.claim\",\"id\":\"r2\",\"case_id\":\"c-01\"}",
      "type id case_id" },
    { "{\"type\":\"case.answer\",\"id\":\"r3\",\"case_id\":\"c-01\","
      "\"impression\":\"No bleed.\",\"recommendation\":\"Thrombolyse.\","
      "\"text\":\"Dense MCA sign left.\"}",
      "type id case_id" },
    { "{\"type\":\"case.close\",\"id\":\"r4\",\"case_id\":\"c-01\","
      "\"reason\":\"done\"}", "type id case_id" },
    { "{\"type\":\"case.reopen\",\"id\":\"r5\",\"case_id\":\"c-01\","
      "\"reason\":\"new symptoms\"}", "type id case_id" },
    { "{\"type\":\"case.list\",\"id\":\"r6\",\"status\":\"new\","
      "\"limit\":20,\"before\":\"c:1732790628123:c-01\"}", "type id" },
    { "{\"type\":\"case.get\",\"id\":\"r7\",\"case_id\":\"c-01\"}",
      "type id case_id" },
    { "{\"type\":\"message.send\",\"id\":\"r8\",\"case_id\":\"c-01\","
      "\"message_id\":\"m-1\",\"text\":\"See slice 12.\","
      "\"image\":{\"sop_uid\":\"1.2.3.4.12\",\"frame\":1,"
      "\"window\":{\"center\":40.0,\"width\":80.5}}}",
      "type id case_id message_id text image.sop_uid image.window.center "
      "image.window.width" },
    { "{\"type\":\"message.read\",\"id\":\"r9\",\"case_id\":\"c-01\","
      "\"message_id\":\"m-1\"}", "type id case_id message_id" },
    { "{\"type\":\"upload.begin\",\"id\":\"r10\",\"upload_id\":\"u-1\","
      "\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca4959"
      "91b7852b855\",\"size\":525312,\"case_id\":\"c-01\"}",
      "type id upload_id sha256 size" },
    { "{\"type\":\"upload.end\",\"id\":\"r11\",\"upload_id\":\"u-1\"}",
      "type id upload_id" },
    { "{\"type\":\"reply\",\"id\":\"r2\",\"ok\":true,"
      "\"result\":{\"case\":{\"case_id\":\"c-01\",\"status\":\"claimed\"}}}",
      "type id ok result" },
    { "{\"type\":\"reply\",\"id\":\"r2\",\"ok\":false,"
      "\"error\":{\"code\":\"already_claimed\","
      "\"message\":\"claimed by dr.other\"}}",
      "type id ok error error.code error.message" },
    { "{\"type\":\"upload.at\",\"id\":\"r10\",\"upload_id\":\"u-1\","
      "\"offset\":1048576}", "type upload_id offset" },
    { "{\"type\":\"upload.done\",\"id\":\"r11\",\"upload_id\":\"u-1\","
      "\"sop_instance_uid\":\"1.2.3.4.12\",\"status\":\"stored\"}",
      "type upload_id sop_instance_uid status" },
    { "{\"type\":\"upload.begin\",\"id\":\"r12\",\"upload_id\":\"p-1\","
      "\"sha256\":\"5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddf"
      "af10ace3c6ef\",\"size\":48211,\"kind\":\"preview\","
      "\"study_uid\":\"1.2.826.0.1.3680043.8.498.1\"}",
      "type id upload_id sha256 size study_uid" },
    { "{\"type\":\"study.expect\",\"id\":\"r14\","
      "\"study_uid\":\"1.2.826.0.1.3680043.8.498.1\",\"instances\":120,"
      "\"priority\":\"stat\"}",
      "type id study_uid instances" },
    { "{\"type\":\"gateway.status\",\"id\":\"r15\",\"waiting\":12,"
      "\"in_flight\":1,\"done\":340,\"failed\":0,"
      "\"bytes_waiting\":6291456,\"rate_bps\":262144,\"eta_s\":24,"
      "\"last_error\":\"link down 09:12\"}",
      "type id waiting in_flight done failed bytes_waiting rate_bps" },
    { "{\"type\":\"study.priority\",\"id\":\"r16\",\"study_uids\":["
      "\"1.2.826.0.1.3680043.8.498.1\"]}",
      "type id study_uids" },
    { "{\"type\":\"case.amend\",\"id\":\"r3a\",\"case_id\":\"c-01\","
      "\"impression\":\"Small bleed, right frontal.\","
      "\"recommendation\":\"No thrombolysis.\",\"text\":\"4 mm.\"}",
      "type id case_id" },
};
#define N_SAMPLES (sizeof samples / sizeof samples[0])

static int parse_str(const char *s, struct msg *m, struct msg_error *e)
{
    return msg_parse(s, strlen(s), m, e);
}

/* Structs equal: bytes (both start zeroed by the codec) and JSON values. */
static void assert_msg_equal(const struct msg *a, const struct msg *b)
{
    static struct msg x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    assert_int_equal(x.type, y.type);
    if (x.type == MSG_EVENT) {
        assert_true(json_equal(x.event.body, y.event.body));
        x.event.body = y.event.body = NULL;
    } else if (x.type == MSG_REPLY) {
        assert_true(x.reply.result == y.reply.result ||
                    json_equal(x.reply.result, y.reply.result));
        x.reply.result = y.reply.result = NULL;
    }
    assert_memory_equal(&x, &y, sizeof x);
}

static void test_samples_parse_and_reserialize(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        static struct msg m, m2;
        struct msg_error e;
        char *out;
        size_t len;
        int rc = parse_str(samples[i].json, &m, &e);
        if (rc)
            print_error("sample %zu: %s\n", i, e.message);
        assert_int_equal(rc, 0);
        assert_int_equal(msg_serialize(&m, &out, &len, &e), 0);
        assert_string_equal(out, samples[i].json);
        assert_int_equal(len, strlen(samples[i].json));
        assert_int_equal(msg_parse(out, len, &m2, &e), 0);
        assert_msg_equal(&m, &m2);
        free(out);
        msg_free(&m);
        msg_free(&m2);
    }
}

/* The parsed values are the ones on the wire (guards against a field
 * misnamed the same way on both sides). */
static void test_sample_values(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;

    assert_int_equal(parse_str(samples[0].json, &m, &e), 0);
    assert_int_equal(m.type, MSG_HELLO);
    assert_string_equal(m.hello.token, "tok_abc123");
    assert_int_equal(m.hello.last_seq, 41);
    assert_string_equal(m.hello.client.name, "hashi-cli");
    assert_string_equal(m.hello.client.version, "0.1.0");
    msg_free(&m);

    assert_int_equal(parse_str(samples[1].json, &m, &e), 0);
    assert_string_equal(m.welcome.user.login, "dr.neuro");
    assert_int_equal(m.welcome.user.role, MSG_ROLE_SPECIALIST);
    assert_int_equal(m.welcome.user.n_specialties, 2);
    assert_string_equal(m.welcome.user.specialties[1], "stroke");
    assert_int_equal(m.welcome.server_time, 1795865028123LL);
    assert_int_equal(m.welcome.replay_from, 41);
    msg_free(&m);

    assert_int_equal(parse_str(samples[2].json, &m, &e), 0);
    assert_int_equal(m.event.seq, 42);
    assert_int_equal(m.event.kind, MSG_EV_CASE_NEW);
    assert_string_equal(m.event.event_id, "ev_7-42");
    assert_int_equal(m.event.at, 1795865028123LL);
    assert_string_equal(json_string_value(json_object_get(
        json_object_get(m.event.body, "case"), "status")), "new");
    msg_free(&m);

    assert_int_equal(parse_str(samples[7].json, &m, &e), 0);
    assert_int_equal(m.type, MSG_CASE_CREATE);
    assert_string_equal(m.id, "r1");
    assert_true(msg_is_request(m.type));
    assert_true(m.case_create.has_patient);
    assert_true(m.case_create.patient.has_age);
    assert_int_equal(m.case_create.patient.age, 67);
    assert_int_equal(m.case_create.patient.sex, MSG_SEX_F);
    assert_string_equal(m.case_create.history,
                        "Sudden aphasia at 09:10.\nOn warfarin.");
    assert_int_equal(m.case_create.priority, MSG_PRIO_STAT);
    assert_string_equal(m.case_create.specialist, "dr.neuro");
    assert_int_equal(m.case_create.n_study_uids, 2);
    assert_string_equal(m.case_create.study_uids[0],
                        "1.2.826.0.1.3680043.8.498.1");
    msg_free(&m);

    assert_int_equal(parse_str(samples[14].json, &m, &e), 0);
    assert_true(m.message_send.has_image);
    assert_string_equal(m.message_send.image.sop_uid, "1.2.3.4.12");
    assert_int_equal(m.message_send.image.frame, 1);
    assert_true(m.message_send.image.has_window);
    assert_true(m.message_send.image.window.center == 40.0);
    assert_true(m.message_send.image.window.width == 80.5);
    msg_free(&m);

    assert_int_equal(parse_str(samples[19].json, &m, &e), 0);
    assert_false(m.reply.ok);
    assert_null(m.reply.result);
    assert_int_equal(m.reply.error.code, MSG_E_ALREADY_CLAIMED);
    assert_string_equal(m.reply.error.message, "claimed by dr.other");
    msg_free(&m);

    assert_int_equal(parse_str(samples[16].json, &m, &e), 0);
    assert_int_equal(m.upload_begin.size, 525312);
    assert_string_equal(m.upload_begin.case_id, "c-01");
    msg_free(&m);

    /* Defaults: case.list limit 50, image.frame 1; absent optionals. */
    assert_int_equal(parse_str("{\"type\":\"case.list\",\"id\":\"x\"}", &m,
                               &e), 0);
    assert_int_equal(m.case_list.limit, MSG_LIST_DEFAULT);
    assert_int_equal(m.case_list.status, MSG_ST_NONE);
    assert_string_equal(m.case_list.before, "");
    msg_free(&m);
    assert_int_equal(parse_str("{\"type\":\"message.send\",\"id\":\"x\","
                               "\"case_id\":\"c\",\"message_id\":\"m\","
                               "\"text\":\"t\",\"image\":{\"sop_uid\":"
                               "\"1.2\"}}", &m, &e),
                     0);
    assert_int_equal(m.message_send.image.frame, 1);
    assert_false(m.message_send.image.has_window);
    msg_free(&m);
}

/* ---- derived malformed variants ---------------------------------------- */

static bool is_required(const struct sample *s, const char *path)
{
    char buf[512];
    strlcpy_h(buf, s->required, sizeof buf);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
        if (!strcmp(t, path))
            return true;
    return false;
}

/* The object holding the last component of a dotted path. */
static json_t *parent_of(json_t *root, const char *path, const char **key)
{
    static char buf[128];
    strlcpy_h(buf, path, sizeof buf);
    json_t *o = root;
    char *p = buf, *dot;
    while ((dot = strchr(p, '.'))) {
        *dot = 0;
        o = json_object_get(o, p);
        p = dot + 1;
    }
    *key = p;
    return o;
}

static int parse_json(json_t *root, struct msg *m, struct msg_error *e)
{
    char *s = json_dumps(root, JSON_COMPACT);
    assert_non_null(s);
    int rc = parse_str(s, m, e);
    free(s);
    return rc;
}

/* Visits every object member path of v ("a", "a.b", ...). */
typedef void (*visit_fn)(const struct sample *s, const char *path);

static void walk(const struct sample *s, json_t *obj, const char *prefix,
                 visit_fn fn)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k);
        fn(s, path);
        /* body/result are free-form: their insides are not the codec's */
        if (json_is_object(v) && strcmp(k, "body") && strcmp(k, "result"))
            walk(s, v, path, fn);
    }
}

static void visit_remove(const struct sample *s, const char *path)
{
    static struct msg m;
    struct msg_error e;
    const char *key;
    json_t *root = json_loads(s->json, 0, NULL);
    json_t *par = parent_of(root, path, &key);
    json_object_del(par, key);
    int rc = parse_json(root, &m, &e);
    if (is_required(s, path)) {
        if (rc == 0)
            print_error("%s without %s parsed\n", s->json, path);
        assert_int_not_equal(rc, 0);
        assert_int_equal(e.code, MSG_E_MISSING_FIELD);
        assert_string_equal(e.field, path);
        assert_non_null(strstr(e.message, path));
    } else {
        if (rc)
            print_error("%s without %s: %s\n", s->json, path, e.message);
        assert_int_equal(rc, 0);
        msg_free(&m);
    }
    json_decref(root);
}

static void visit_retype(const struct sample *s, const char *path)
{
    static struct msg m;
    struct msg_error e;
    const char *key;
    json_t *root = json_loads(s->json, 0, NULL);
    json_t *par = parent_of(root, path, &key);
    json_t *v = json_object_get(par, key);
    json_object_set_new(par, key, json_is_string(v) ? json_integer(7)
                                                   : json_string("x"));
    assert_int_not_equal(parse_json(root, &m, &e), 0);
    if (e.code != MSG_E_BAD_TYPE || strcmp(e.field, path))
        print_error("%s with %s retyped: %s %s\n", s->json, path,
                    msg_code_name(e.code), e.message);
    assert_int_equal(e.code, MSG_E_BAD_TYPE);
    assert_string_equal(e.field, path);
    json_decref(root);
}

static void test_each_field_removed(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        json_t *root = json_loads(samples[i].json, 0, NULL);
        assert_non_null(root);
        walk(&samples[i], root, "", visit_remove);
        json_decref(root);
    }
}

static void test_each_field_wrong_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        json_t *root = json_loads(samples[i].json, 0, NULL);
        walk(&samples[i], root, "", visit_retype);
        json_decref(root);
    }
}

/* ---- hand-written malformed frames --------------------------------------- */

struct bad {
    const char *json;
    enum msg_code code;
    const char *field;
};

#define CC "{\"type\":\"case.create\",\"id\":\"r1\",\"case_id\":\"c1\"," \
           "\"question\":\"q\",\"priority\":\"stat\","
#define MS "{\"type\":\"message.send\",\"id\":\"r\",\"case_id\":\"c\"," \
           "\"message_id\":\"m\","
#define MSI MS "\"text\":\"t\",\"image\":{\"sop_uid\":\"1.2\","
#define UB "{\"type\":\"upload.begin\",\"id\":\"r\",\"upload_id\":\"u\","
#define SHA "\"e3b0c44298fc1c149afbf4c8996fb924" \
            "27ae41e4649b934ca495991b7852b855\""

static const struct bad bads[] = {
    /* the frame as a whole */
    { "not json", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ack\",\"seq\":1", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ack\",\"seq\":1} {}", MSG_E_BAD_JSON, "" },
    { "[{\"type\":\"ack\",\"seq\":1}]", MSG_E_BAD_JSON, "" },
    { "\"ack\"", MSG_E_BAD_JSON, "" },
    { "42", MSG_E_BAD_JSON, "" },
    { "null", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ack\",\"seq\":1,\"seq\":2}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ack\",\"type\":\"ack\",\"seq\":1}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"error\",\"error\":{\"code\":\"internal\",\"code\":"
      "\"internal\",\"message\":\"\"}}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ping\",\"id\":\"\xff\"}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ping\",\"id\":\"\xc0\xaf\"}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ping\",\"id\":\"\xed\xa0\x80\"}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ping\",\"x\":\"\\ud800\"}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ping\",\"x\":\"a\\u0000b\"}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"ack\",\"seq\":99999999999999999999}", MSG_E_BAD_JSON,
      "" },
    { "{}", MSG_E_MISSING_FIELD, "type" },
    { "{\"seq\":1}", MSG_E_MISSING_FIELD, "type" },
    { "{\"type\":null}", MSG_E_BAD_TYPE, "type" },
    { "{\"type\":[\"ack\"]}", MSG_E_BAD_TYPE, "type" },
    { "{\"type\":\"case.delete\",\"id\":\"r1\"}", MSG_E_UNKNOWN_TYPE,
      "type" },
    { "{\"type\":\"\"}", MSG_E_UNKNOWN_TYPE, "type" },
    { "{\"type\":\"ACK\",\"seq\":1}", MSG_E_UNKNOWN_TYPE, "type" },
    /* seq and ranges */
    { "{\"type\":\"ack\",\"seq\":-1}", MSG_E_BAD_FIELD, "seq" },
    { "{\"type\":\"ack\",\"seq\":9007199254740992}", MSG_E_BAD_FIELD,
      "seq" },
    { "{\"type\":\"ack\",\"seq\":1.0}", MSG_E_BAD_TYPE, "seq" },
    { "{\"type\":\"ack\",\"seq\":\"1\"}", MSG_E_BAD_TYPE, "seq" },
    { "{\"type\":\"ack\",\"seq\":null}", MSG_E_BAD_TYPE, "seq" },
    { "{\"type\":\"hello\",\"last_seq\":-5,\"client\":{\"name\":\"a\","
      "\"version\":\"1\"}}", MSG_E_BAD_FIELD, "last_seq" },
    { "{\"type\":\"event\",\"seq\":0,\"event_id\":\"e\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":1795865028123,"
      "\"body\":{}}", MSG_E_BAD_FIELD, "seq" },
    /* ids */
    { "{\"type\":\"case.claim\",\"id\":\"\",\"case_id\":\"c\"}",
      MSG_E_BAD_FIELD, "id" },
    { "{\"type\":\"case.claim\",\"id\":\"a b\",\"case_id\":\"c\"}",
      MSG_E_BAD_FIELD, "id" },
    { "{\"type\":\"case.claim\",\"id\":\"\xc3\xa9\",\"case_id\":\"c\"}",
      MSG_E_BAD_FIELD, "id" },
    { "{\"type\":\"case.claim\",\"id\":\"r\",\"case_id\":\"../etc\"}",
      MSG_E_BAD_FIELD, "case_id" },
    { "{\"type\":\"case.claim\",\"id\":\"r\",\"case_id\":"
      "\"c0123456789012345678901234567890123456789012345678901234567890123\""
      "}", MSG_E_TOO_LONG, "case_id" },
    { "{\"type\":\"case.claim\",\"id\":"
      "\"r0123456789012345678901234567890123456789012345678901234567890123\","
      "\"case_id\":\"c\"}", MSG_E_TOO_LONG, "id" },
    { "{\"type\":\"upload.end\",\"id\":\"r\",\"upload_id\":\"u/1\"}",
      MSG_E_BAD_FIELD, "upload_id" },
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e:1\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":1795865028123,"
      "\"body\":{}}", MSG_E_BAD_FIELD, "event_id" },
    /* hello */
    { "{\"type\":\"hello\",\"token\":\"a b\",\"last_seq\":0,\"client\":"
      "{\"name\":\"a\",\"version\":\"1\"}}", MSG_E_BAD_FIELD, "token" },
    { "{\"type\":\"hello\",\"token\":\"\",\"last_seq\":0,\"client\":"
      "{\"name\":\"a\",\"version\":\"1\"}}", MSG_E_BAD_FIELD, "token" },
    { "{\"type\":\"hello\",\"last_seq\":0,\"client\":{\"name\":\"\","
      "\"version\":\"1\"}}", MSG_E_BAD_FIELD, "client.name" },
    { "{\"type\":\"hello\",\"last_seq\":0,\"client\":{\"name\":\"a\\tb\","
      "\"version\":\"1\"}}", MSG_E_BAD_FIELD, "client.name" },
    { "{\"type\":\"hello\",\"last_seq\":0,\"client\":{\"name\":\"a\","
      "\"version\":\"123456789012345678901234567890123\"}}",
      MSG_E_TOO_LONG, "client.version" },
    /* welcome */
    { "{\"type\":\"welcome\",\"user\":{\"login\":\"a\",\"role\":\"root\","
      "\"clinic\":\"x\"},\"server_time\":1795865028123,"
      "\"last_seq\":5,\"replay_from\":0}", MSG_E_BAD_FIELD, "user.role" },
    { "{\"type\":\"welcome\",\"user\":{\"login\":\"a\",\"role\":\"admin\","
      "\"clinic\":\"x\"},\"server_time\":1795865028123,"
      "\"last_seq\":5,\"replay_from\":6}", MSG_E_BAD_FIELD, "replay_from" },
    { "{\"type\":\"welcome\",\"user\":{\"login\":\"a\",\"role\":\"admin\","
      "\"clinic\":\"x\",\"specialties\":[\"Neuro\"]},\"server_time\":"
      "1795865028123,\"last_seq\":5,\"replay_from\":0}",
      MSG_E_BAD_FIELD, "user.specialties[0]" },
    { "{\"type\":\"welcome\",\"user\":{\"login\":\"a\",\"role\":\"admin\","
      "\"clinic\":\"x\"},\"server_time\":-1,"
      "\"last_seq\":5,\"replay_from\":0}", MSG_E_BAD_FIELD, "server_time" },
    /* event */
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e\",\"kind\":"
      "\"case.deleted\",\"case_id\":\"c\",\"at\":"
      "1795865028123,\"body\":{}}", MSG_E_BAD_FIELD, "kind" },
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":253402300800000,"
      "\"body\":{}}", MSG_E_BAD_FIELD, "at" },
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":1.5,"
      "\"body\":{}}", MSG_E_BAD_TYPE, "at" },
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":\"1795865028123\","
      "\"body\":{}}", MSG_E_BAD_TYPE, "at" },
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":null,"
      "\"body\":{}}", MSG_E_BAD_TYPE, "at" },
    { "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e\",\"kind\":"
      "\"case.new\",\"case_id\":\"c\",\"at\":1795865028123,"
      "\"body\":[]}", MSG_E_BAD_TYPE, "body" },
    /* case.create */
    { CC "\"specialty\":\"neurology\",\"priority\":\"x\"}", MSG_E_BAD_JSON,
      "" },
    { "{\"type\":\"case.create\",\"id\":\"r1\",\"case_id\":\"c1\","
      "\"question\":\"q\",\"priority\":\"asap\",\"specialty\":\"neuro\"}",
      MSG_E_BAD_FIELD, "priority" },
    { "{\"type\":\"case.create\",\"id\":\"r1\",\"case_id\":\"c1\","
      "\"question\":\"q\",\"priority\":\"STAT\",\"specialty\":\"neuro\"}",
      MSG_E_BAD_FIELD, "priority" },
    { CC "\"patient\":{\"age\":67,\"sex\":\"X\"},\"specialty\":\"n\"}",
      MSG_E_BAD_FIELD, "patient.sex" },
    { CC "\"patient\":{\"age\":151},\"specialty\":\"n\"}", MSG_E_BAD_FIELD,
      "patient.age" },
    { CC "\"patient\":{\"age\":-1},\"specialty\":\"n\"}", MSG_E_BAD_FIELD,
      "patient.age" },
    { CC "\"patient\":{\"age\":\"67\"},\"specialty\":\"n\"}",
      MSG_E_BAD_TYPE, "patient.age" },
    { CC "\"patient\":null,\"specialty\":\"n\"}", MSG_E_BAD_TYPE,
      "patient" },
    { CC "\"specialty\":\"Neurology\"}", MSG_E_BAD_FIELD, "specialty" },
    { CC "\"specialty\":\"\"}", MSG_E_BAD_FIELD, "specialty" },
    { CC "\"specialist\":\"dr neuro\"}", MSG_E_BAD_FIELD, "specialist" },
    { CC "\"history\":\"x\"}", MSG_E_MISSING_FIELD, "specialty" },
    { CC "\"specialty\":\"n\",\"history\":\"a\\u0007b\"}", MSG_E_BAD_FIELD,
      "history" },
    { CC "\"specialty\":\"n\",\"history\":\"a\\u0085b\"}", MSG_E_BAD_FIELD,
      "history" },
    { CC "\"specialty\":\"n\",\"history\":\"a\\u007fb\"}", MSG_E_BAD_FIELD,
      "history" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"1.2.03\"]}", MSG_E_BAD_FIELD,
      "study_uids[0]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"1.2\",\"1..2\"]}",
      MSG_E_BAD_FIELD, "study_uids[1]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"1.2.a\"]}", MSG_E_BAD_FIELD,
      "study_uids[0]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"../1.2\"]}", MSG_E_BAD_FIELD,
      "study_uids[0]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"\"]}", MSG_E_BAD_FIELD,
      "study_uids[0]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[7]}", MSG_E_BAD_TYPE,
      "study_uids[0]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"1.2345678901234567890123456"
      "789012345678901234567890123456789012345\"]}", MSG_E_TOO_LONG,
      "study_uids[0]" },
    { CC "\"specialty\":\"n\",\"study_uids\":[\"1\",\"2\",\"3\",\"4\",\"5\","
      "\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\","
      "\"16\",\"17\"]}", MSG_E_TOO_LONG, "study_uids" },
    { "{\"type\":\"case.create\",\"id\":\"r1\",\"case_id\":\"c1\","
      "\"question\":\"\",\"priority\":\"stat\",\"specialty\":\"n\"}",
      MSG_E_BAD_FIELD, "question" },
    /* case.answer, case.list */
    { "{\"type\":\"case.answer\",\"id\":\"r\",\"case_id\":\"c\","
      "\"impression\":\"\"}", MSG_E_MISSING_FIELD, "impression" },
    { "{\"type\":\"case.answer\",\"id\":\"r\",\"case_id\":\"c\","
      "\"recommendation\":\"x\"}", MSG_E_MISSING_FIELD, "impression" },
    { "{\"type\":\"case.amend\",\"id\":\"r\",\"case_id\":\"c\","
      "\"recommendation\":\"x\"}", MSG_E_MISSING_FIELD, "impression" },
    { "{\"type\":\"case.answer\",\"id\":\"r\",\"case_id\":\"c\","
      "\"text\":\"a\\u0000\"}", MSG_E_BAD_JSON, "" },
    { "{\"type\":\"case.list\",\"id\":\"r\",\"limit\":0}", MSG_E_BAD_FIELD,
      "limit" },
    { "{\"type\":\"case.list\",\"id\":\"r\",\"limit\":201}",
      MSG_E_BAD_FIELD, "limit" },
    { "{\"type\":\"case.list\",\"id\":\"r\",\"status\":\"open\"}",
      MSG_E_BAD_FIELD, "status" },
    { "{\"type\":\"case.list\",\"id\":\"r\",\"before\":\"\"}",
      MSG_E_BAD_FIELD, "before" },
    { "{\"type\":\"case.list\",\"id\":\"r\",\"before\":\"a b\"}",
      MSG_E_BAD_FIELD, "before" },
    /* message.send */
    { MS "\"text\":\"\"}", MSG_E_BAD_FIELD, "text" },
    { MS "\"image\":{\"sop_uid\":\"1.2\"}}", MSG_E_MISSING_FIELD, "text" },
    { MS "\"text\":\"hi\",\"image\":{\"sop_uid\":\"1.2\",\"frame\":0}}",
      MSG_E_BAD_FIELD, "image.frame" },
    { MSI "\"window\":{\"center\":40,"
      "\"width\":0}}}", MSG_E_BAD_FIELD, "image.window.width" },
    { MSI "\"window\":{\"center\":40,"
      "\"width\":-80}}}", MSG_E_BAD_FIELD, "image.window.width" },
    { MSI "\"window\":{\"center\":1e7,"
      "\"width\":80}}}", MSG_E_BAD_FIELD, "image.window.center" },
    { MSI "\"window\":{\"center\":\"40\","
      "\"width\":80}}}", MSG_E_BAD_TYPE, "image.window.center" },
    { MS "\"text\":\"t\",\"image\":{\"sop_uid\":\"x1.2\"}}", MSG_E_BAD_FIELD,
      "image.sop_uid" },
    /* upload.begin */
    { UB "\"sha256\":\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA4959"
      "91B7852B855\",\"size\":1}", MSG_E_BAD_FIELD, "sha256" },
    { UB "\"sha256\":\"e3b0\",\"size\":1}", MSG_E_BAD_FIELD, "sha256" },
    { UB "\"sha256\":" SHA ",\"size\":0}", MSG_E_BAD_FIELD, "size" },
    { UB "\"sha256\":" SHA ",\"size\":1099511627777}", MSG_E_BAD_FIELD,
      "size" },
    { UB "\"sha256\":" SHA ",\"size\":1,\"case_id\":\"a.b\"}",
      MSG_E_BAD_FIELD, "case_id" },
    /* reply, error, upload.* answers */
    { "{\"type\":\"reply\",\"id\":\"r\",\"ok\":true,\"result\":{},"
      "\"error\":{\"code\":\"internal\",\"message\":\"\"}}",
      MSG_E_BAD_FIELD, "error" },
    { "{\"type\":\"reply\",\"id\":\"r\",\"ok\":false,\"result\":{},"
      "\"error\":{\"code\":\"internal\",\"message\":\"\"}}",
      MSG_E_BAD_FIELD, "result" },
    { "{\"type\":\"reply\",\"id\":\"r\",\"ok\":false,\"error\":{\"code\":"
      "\"oops\",\"message\":\"\"}}", MSG_E_BAD_FIELD, "error.code" },
    { "{\"type\":\"reply\",\"id\":\"r\",\"ok\":1,\"result\":{}}",
      MSG_E_BAD_TYPE, "ok" },
    { "{\"type\":\"reply\",\"id\":\"r\",\"ok\":true,\"result\":[]}",
      MSG_E_BAD_TYPE, "result" },
    { "{\"type\":\"error\",\"error\":{\"code\":\"\",\"message\":\"\"}}",
      MSG_E_BAD_FIELD, "error.code" },
    { "{\"type\":\"upload.at\",\"upload_id\":\"u\",\"offset\":-1}",
      MSG_E_BAD_FIELD, "offset" },
    { "{\"type\":\"upload.done\",\"upload_id\":\"u\",\"sop_instance_uid\":"
      "\"1.2\",\"status\":\"ok\"}", MSG_E_BAD_FIELD, "status" },
    { "{\"type\":\"ping\",\"id\":\"\"}", MSG_E_BAD_FIELD, "id" },
};

static void test_bad_frames(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        static struct msg m;
        struct msg_error e;
        int rc = parse_str(bads[i].json, &m, &e);
        if (rc == 0 || e.code != bads[i].code ||
            strcmp(e.field, bads[i].field))
            print_error("bad[%zu] %s -> rc %d %s field '%s': %s\n", i,
                        bads[i].json, rc, msg_code_name(e.code), e.field,
                        e.message);
        assert_int_equal(rc, ERR_INVALID);
        assert_int_equal(e.code, bads[i].code);
        assert_string_equal(e.field, bads[i].field);
        assert_true(e.message[0] != 0);
        if (bads[i].field[0])
            assert_non_null(strstr(e.message, bads[i].field));
        /* *out is left zeroed */
        assert_int_equal(m.type, MSG_NONE);
    }
}

/* Lengths are bytes of UTF-8; exactly at the limit passes, one more is
 * too_long. */
static void test_string_limits(void **state)
{
    (void)state;
    static const struct { const char *field; size_t max; } lim[] = {
        { "question", MSG_QUESTION_MAX }, { "history", MSG_HISTORY_MAX },
    };
    static char buf[MSG_MAX_FRAME + 1];
    static struct msg m;
    struct msg_error e;

    for (size_t i = 0; i < 2; i++) {
        for (size_t extra = 0; extra < 2; extra++) {
            size_t n = lim[i].max + extra;
            char *s = malloc(n + 1);
            memset(s, 'a', n);
            /* a 2-byte character at the end counts as 2 */
            s[n - 2] = (char)0xc3;
            s[n - 1] = (char)0xa9;
            s[n] = 0;
            snprintf(buf, sizeof buf, "{\"type\":\"case.create\",\"id\":"
                     "\"r\",\"case_id\":\"c\",\"priority\":\"stat\","
                     "\"specialty\":\"n\",\"question\":\"%s\","
                     "\"history\":\"%s\"}", i == 0 ? s : "q",
                     i == 1 ? s : "h");
            free(s);
            int rc = parse_str(buf, &m, &e);
            if (extra == 0) {
                assert_int_equal(rc, 0);
                const char *got = i == 0 ? m.case_create.question
                                         : m.case_create.history;
                assert_int_equal(strlen(got), n);
                msg_free(&m);
            } else {
                assert_int_equal(rc, ERR_INVALID);
                assert_int_equal(e.code, MSG_E_TOO_LONG);
                assert_string_equal(e.field, lim[i].field);
            }
        }
    }
    /* case.answer text: 16000 fits, 16001 does not */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t n = MSG_ANSWER_TEXT_MAX + extra;
        int k = snprintf(buf, sizeof buf, "{\"type\":\"case.answer\","
                         "\"id\":\"r\",\"case_id\":\"c\",\"impression\":"
                         "\"i\",\"text\":\"");
        memset(buf + k, 'x', n);
        strcpy(buf + k + n, "\"}");
        int rc = parse_str(buf, &m, &e);
        if (extra == 0) {
            assert_int_equal(rc, 0);
            msg_free(&m);
        } else {
            assert_int_equal(e.code, MSG_E_TOO_LONG);
            assert_string_equal(e.field, "text");
        }
    }
}

static void test_frame_size(void **state)
{
    (void)state;
    static char buf[MSG_MAX_FRAME + 2];
    static struct msg m;
    struct msg_error e;
    const char *head = "{\"type\":\"ack\",\"seq\":3}";

    /* exactly MSG_MAX_FRAME bytes (padded with whitespace) is fine */
    memset(buf, ' ', sizeof buf);
    memcpy(buf, head, strlen(head));
    assert_int_equal(msg_parse(buf, MSG_MAX_FRAME, &m, &e), 0);
    assert_int_equal(m.ack.seq, 3);
    msg_free(&m);
    /* one byte more is too_big, before any parsing */
    assert_int_equal(msg_parse(buf, MSG_MAX_FRAME + 1, &m, &e), ERR_TOOBIG);
    assert_int_equal(e.code, MSG_E_TOO_BIG);
    /* empty */
    assert_int_equal(msg_parse(buf, 0, &m, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_BAD_JSON);
    /* not NUL-terminated: only len bytes are read */
    memcpy(buf, "{\"type\":\"ack\",\"seq\":7}XXXX", 26);
    assert_int_equal(msg_parse(buf, 22, &m, &e), 0);
    assert_int_equal(m.ack.seq, 7);
    msg_free(&m);
    /* deep nesting in an ignored field: a clean bad_json, no crash */
    size_t k = 0;
    k += (size_t)sprintf(buf, "{\"type\":\"ack\",\"seq\":1,\"x\":");
    for (int i = 0; i < 30000; i++)
        buf[k++] = '[';
    for (int i = 0; i < 30000; i++)
        buf[k++] = ']';
    buf[k++] = '}';
    assert_int_equal(msg_parse(buf, k, &m, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_BAD_JSON);
}

static void test_unknown_fields_and_id_recovery(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;

    assert_int_equal(parse_str("{\"type\":\"ack\",\"seq\":1,\"future\":"
                               "{\"a\":[1,2]},\"id\":\"ignored\"}", &m, &e),
                     0);
    assert_int_equal(m.ack.seq, 1);
    assert_string_equal(m.id, "");
    msg_free(&m);

    /* a failing request still yields its id, so it can be answered */
    assert_int_not_equal(parse_str("{\"type\":\"case.delete\","
                                   "\"id\":\"req-9\"}", &m, &e), 0);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    assert_string_equal(e.id, "req-9");
    assert_int_not_equal(parse_str("{\"type\":\"case.claim\",\"id\":"
                                   "\"req-10\"}", &m, &e), 0);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    assert_string_equal(e.field, "case_id");
    assert_string_equal(e.id, "req-10");
    assert_int_equal(e.type, MSG_CASE_CLAIM);
    assert_int_not_equal(parse_str("{\"type\":\"case.claim\",\"id\":"
                                   "\"bad id\"}", &m, &e), 0);
    assert_string_equal(e.id, "");
    /* not a request: answered by "error", so no id */
    assert_int_not_equal(parse_str("{\"type\":\"ack\",\"seq\":-1,"
                                   "\"id\":\"a1\"}", &m, &e), 0);
    assert_int_equal(e.code, MSG_E_BAD_FIELD);
    assert_string_equal(e.id, "");
    /* a server-only type from a client counts as unknown: id kept */
    const char *rep = "{\"type\":\"reply\",\"id\":\"q\"}";
    assert_int_not_equal(msg_parse_dir(rep, strlen(rep), MSG_FROM_CLIENT, &m,
                                       &e), 0);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    assert_string_equal(e.id, "q");

    /* ... and the answer to the failure */
    static struct msg r;
    struct msg_error e2;
    char *out;
    size_t len;
    assert_int_not_equal(parse_str("{\"type\":\"case.claim\",\"id\":"
                                   "\"req-10\"}", &m, &e), 0);
    assert_int_equal(msg_build_failure(&r, &e, &e2), 0);
    assert_int_equal(msg_serialize(&r, &out, &len, &e2), 0);
    assert_string_equal(out, "{\"type\":\"reply\",\"id\":\"req-10\","
                        "\"ok\":false,\"error\":{\"code\":\"missing_field\","
                        "\"message\":\"case_id: is required\"}}");
    free(out);
    msg_free(&r);
    assert_int_not_equal(parse_str("nope", &m, &e), 0);
    assert_int_equal(msg_build_failure(&r, &e, &e2), 0);
    assert_int_equal(r.type, MSG_ERROR);
    assert_int_equal(msg_serialize(&r, &out, &len, &e2), 0);
    assert_non_null(strstr(out, "{\"type\":\"error\",\"error\":{\"code\":"
                                "\"bad_json\",\"message\":\""));
    free(out);
    msg_free(&r);
}

static void test_direction(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;
    const char *welcome = samples[1].json, *hello = samples[0].json;

    assert_int_equal(msg_parse_dir(welcome, strlen(welcome), MSG_FROM_CLIENT,
                                   &m, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    assert_int_equal(msg_parse_dir(hello, strlen(hello), MSG_FROM_SERVER, &m,
                                   &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    assert_int_equal(msg_parse_dir(hello, strlen(hello), MSG_FROM_CLIENT, &m,
                                   &e), 0);
    msg_free(&m);
    for (int i = 4; i <= 5; i++) {     /* ping, pong: either way */
        const char *s = samples[i].json;
        assert_int_equal(msg_parse_dir(s, strlen(s), MSG_FROM_CLIENT, &m,
                                       &e), 0);
        assert_int_equal(msg_parse_dir(s, strlen(s), MSG_FROM_SERVER, &m,
                                       &e), 0);
    }
    for (int t = MSG_NONE + 1; t < MSG_TYPE_COUNT; t++) {
        assert_non_null(msg_type_name(t));
        assert_int_equal(msg_type_parse(msg_type_name(t)), t);
        assert_true(msg_type_dir(t) != 0);
        if (msg_is_request(t))
            assert_int_equal(msg_type_dir(t), MSG_FROM_CLIENT);
    }
    assert_true(msg_is_request(MSG_UPLOAD_BEGIN));
    assert_false(msg_is_request(MSG_HELLO));
    assert_false(msg_is_request(MSG_REPLY));
    assert_int_equal(msg_type_parse("nope"), MSG_NONE);
    for (int c = 1; c < MSG_CODE_COUNT; c++)
        assert_int_equal(msg_code_parse(msg_code_name(c)), c);
    assert_string_equal(msg_code_name(MSG_E_ALREADY_CLAIMED),
                        "already_claimed");
    assert_string_equal(msg_kind_name(MSG_EV_IMAGES_ARRIVED),
                        "images.arrived");
    assert_null(msg_kind_name(MSG_EV_COUNT));
}

/* ---- gateway additions: previews, study.expect, gateway.status,
 * study.priority (the rules the mechanical variants above do not reach) ---- */

static void roundtrip(const struct msg *m, const char *expect);

static void expect_fail(const char *frame, enum msg_code code,
                        const char *field)
{
    static struct msg m;
    struct msg_error e;
    int rc = parse_str(frame, &m, &e);
    if (rc == 0 || e.code != code || strcmp(e.field, field))
        print_error("%s: %s (%s)\n", frame, msg_code_name(e.code),
                    e.message);
    assert_int_not_equal(rc, 0);
    assert_int_equal(e.code, code);
    assert_string_equal(e.field, field);
}

static void test_gateway_messages(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;
    const char *sha = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddf"
                      "af10ace3c6ef";

    /* preview upload.begin: kind and study_uid parsed */
    assert_int_equal(parse_str(samples[22].json, &m, &e), 0);
    assert_int_equal(m.upload_begin.kind, MSG_UK_PREVIEW);
    assert_string_equal(m.upload_begin.study_uid,
                        "1.2.826.0.1.3680043.8.498.1");
    msg_free(&m);
    expect_fail("{\"type\":\"upload.begin\",\"id\":\"r\",\"upload_id\":"
                "\"u\",\"sha256\":\"5f70bf18a086007016e948b04aed3b82103a36"
                "bea41755b6cddfaf10ace3c6ef\",\"size\":1,\"kind\":\"video\"}",
                MSG_E_BAD_FIELD, "kind");
    /* an instance may name its study */
    assert_int_equal(parse_str("{\"type\":\"upload.begin\",\"id\":\"r\","
                               "\"upload_id\":\"u\",\"sha256\":\"5f70bf18a0"
                               "86007016e948b04aed3b82103a36bea41755b6cddfaf"
                               "10ace3c6ef\",\"size\":1,\"kind\":"
                               "\"instance\",\"study_uid\":\"1.2\"}", &m, &e),
                     0);
    assert_int_equal(m.upload_begin.kind, MSG_UK_INSTANCE);
    msg_free(&m);
    assert_int_equal(msg_build_upload_begin_preview(&m, "r12", "p-1", sha,
                                                    48211,
                                                    "1.2.826.0.1.3680043."
                                                    "8.498.1", &e), 0);
    roundtrip(&m, samples[22].json);
    assert_int_equal(msg_build_upload_begin_preview(&m, "r", "p", sha, 1,
                                                    NULL, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    assert_string_equal(e.field, "study_uid");

    /* upload.done: exactly one of sop_instance_uid and study_uid */
    assert_int_equal(msg_build_upload_done_preview(&m, "r13", "p-1", "1.2.3",
                                                   MSG_UP_STORED, &e), 0);
    roundtrip(&m, "{\"type\":\"upload.done\",\"id\":\"r13\",\"upload_id\":"
                  "\"p-1\",\"study_uid\":\"1.2.3\",\"status\":\"stored\"}");
    expect_fail("{\"type\":\"upload.done\",\"upload_id\":\"p\","
                "\"status\":\"stored\"}", MSG_E_MISSING_FIELD,
                "sop_instance_uid");
    expect_fail("{\"type\":\"upload.done\",\"upload_id\":\"p\","
                "\"sop_instance_uid\":\"1.2\",\"study_uid\":\"1.2\","
                "\"status\":\"stored\"}", MSG_E_BAD_FIELD, "study_uid");

    /* upload.at: reason only on the unsolicited ones */
    assert_int_equal(parse_str("{\"type\":\"upload.at\",\"upload_id\":"
                               "\"u-1\",\"offset\":3145728,\"reason\":"
                               "\"progress\"}", &m, &e), 0);
    assert_int_equal(m.upload_at.reason, MSG_UA_PROGRESS);
    msg_free(&m);
    expect_fail("{\"type\":\"upload.at\",\"upload_id\":\"u\",\"offset\":0,"
                "\"reason\":\"later\"}", MSG_E_BAD_FIELD, "reason");

    /* study.expect */
    assert_int_equal(msg_build_study_expect(&m, "r14", "1.2.826.0.1.3680043."
                                            "8.498.1", 120, MSG_PRIO_STAT,
                                            &e), 0);
    roundtrip(&m, samples[23].json);
    assert_int_equal(msg_build_study_expect(&m, "r", "1.2", 7, 0, &e), 0);
    roundtrip(&m, "{\"type\":\"study.expect\",\"id\":\"r\","
                  "\"study_uid\":\"1.2\",\"instances\":7}");
    expect_fail("{\"type\":\"study.expect\",\"id\":\"r\",\"study_uid\":"
                "\"1.2\",\"instances\":0}", MSG_E_BAD_FIELD, "instances");
    expect_fail("{\"type\":\"study.expect\",\"id\":\"r\",\"study_uid\":"
                "\"1.2\",\"instances\":1000001}", MSG_E_BAD_FIELD,
                "instances");
    expect_fail("{\"type\":\"study.expect\",\"id\":\"r\",\"study_uid\":"
                "\"1.02\",\"instances\":1}", MSG_E_BAD_FIELD, "study_uid");
    expect_fail("{\"type\":\"study.expect\",\"id\":\"r\",\"study_uid\":"
                "\"1.2\",\"instances\":1,\"priority\":\"now\"}",
                MSG_E_BAD_FIELD, "priority");

    /* gateway.status: values, the optional eta_s, ranges */
    assert_int_equal(parse_str(samples[24].json, &m, &e), 0);
    assert_int_equal(m.gateway_status.waiting, 12);
    assert_int_equal(m.gateway_status.bytes_waiting, 6291456);
    assert_true(m.gateway_status.has_eta_s);
    assert_int_equal(m.gateway_status.eta_s, 24);
    assert_string_equal(m.gateway_status.last_error, "link down 09:12");
    msg_free(&m);
    msg_init(&m, MSG_GATEWAY_STATUS);
    strcpy(m.id, "g1");
    m.gateway_status.rate_bps = MSG_SEQ_MAX;
    roundtrip(&m, "{\"type\":\"gateway.status\",\"id\":\"g1\",\"waiting\":0,"
                  "\"in_flight\":0,\"done\":0,\"failed\":0,"
                  "\"bytes_waiting\":0,\"rate_bps\":9007199254740991}");
    expect_fail("{\"type\":\"gateway.status\",\"id\":\"g\",\"waiting\":-1,"
                "\"in_flight\":0,\"done\":0,\"failed\":0,"
                "\"bytes_waiting\":0,\"rate_bps\":0}", MSG_E_BAD_FIELD,
                "waiting");

    /* study.priority: 1..128 UIDs, each checked; nothing else asked */
    assert_int_equal(parse_str(samples[25].json, &m, &e), 0);
    assert_int_equal(m.study_priority.n_study_uids, 1);
    assert_string_equal(m.study_priority.study_uids[0],
                        "1.2.826.0.1.3680043.8.498.1");
    msg_free(&m);
    static char uids[MSG_PRIORITIES_MAX + 1][MSG_UID_MAX + 1];
    for (int i = 0; i <= MSG_PRIORITIES_MAX; i++)
        snprintf(uids[i], sizeof uids[i], "1.2.%d", i + 1);
    assert_int_equal(msg_build_study_priority(&m, "q1", (const char (*)[
                         MSG_UID_MAX + 1])uids, MSG_PRIORITIES_MAX, &e), 0);
    roundtrip(&m, NULL);
    msg_free(&m);
    assert_int_equal(msg_build_study_priority(&m, "q1", (const char (*)[
                         MSG_UID_MAX + 1])uids, MSG_PRIORITIES_MAX + 1, &e),
                     ERR_INVALID);
    assert_int_equal(e.code, MSG_E_TOO_LONG);
    assert_int_equal(msg_build_study_priority(&m, "q1", (const char (*)[
                         MSG_UID_MAX + 1])uids, 0, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    expect_fail("{\"type\":\"study.priority\",\"id\":\"r\","
                "\"study_uids\":[]}", MSG_E_MISSING_FIELD, "study_uids");
    expect_fail("{\"type\":\"study.priority\",\"id\":\"r\","
                "\"study_uids\":[\"1.2\",\"1.02\"]}", MSG_E_BAD_FIELD,
                "study_uids[1]");

    /* directions: gateway.status, study.expect and study.priority are
     * the client's; the server pushes no priorities any more */
    const char *gs = samples[24].json, *pr = samples[25].json;
    assert_int_equal(msg_parse_dir(gs, strlen(gs), MSG_FROM_SERVER, &m, &e),
                     ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    assert_int_equal(msg_parse_dir(pr, strlen(pr), MSG_FROM_SERVER, &m, &e),
                     ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    const char *old = "{\"type\":\"priorities\",\"studies\":[]}";
    assert_int_equal(msg_parse_dir(old, strlen(old), MSG_FROM_SERVER, &m,
                                   &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    assert_true(msg_is_request(MSG_STUDY_EXPECT));
    assert_true(msg_is_request(MSG_GATEWAY_STATUS));
    assert_true(msg_is_request(MSG_STUDY_PRIORITY));
}

/* ---- building --------------------------------------------------------- */

static void roundtrip(const struct msg *m, const char *expect)
{
    static struct msg back;
    struct msg_error e;
    char *out;
    size_t len;
    int rc = msg_serialize(m, &out, &len, &e);
    if (rc)
        print_error("serialize: %s\n", e.message);
    assert_int_equal(rc, 0);
    if (expect)
        assert_string_equal(out, expect);
    assert_int_equal(msg_parse(out, len, &back, &e), 0);
    assert_msg_equal(m, &back);
    free(out);
    msg_free(&back);
}

static void test_build_every_type(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;

    assert_int_equal(msg_build_hello(&m, "tok", 0, "hashi-web", "1", &e), 0);
    roundtrip(&m, "{\"type\":\"hello\",\"token\":\"tok\",\"last_seq\":0,"
                  "\"client\":{\"name\":\"hashi-web\",\"version\":\"1\"}}");
    assert_int_equal(msg_build_hello(&m, NULL, 9, "bench", "0", &e), 0);
    roundtrip(&m, "{\"type\":\"hello\",\"last_seq\":9,\"client\":"
                  "{\"name\":\"bench\",\"version\":\"0\"}}");

    msg_init(&m, MSG_WELCOME);
    strcpy(m.welcome.user.login, "gp@clinic-a");
    m.welcome.user.role = MSG_ROLE_REQUESTER;
    strcpy(m.welcome.user.clinic, "Clínica Rural A");
    m.welcome.server_time = 0;
    m.welcome.last_seq = MSG_SEQ_MAX;
    m.welcome.replay_from = MSG_SEQ_MAX;
    roundtrip(&m, "{\"type\":\"welcome\",\"user\":{\"login\":\"gp@clinic-a\","
                  "\"role\":\"requester\",\"clinic\":\"Clínica Rural A\"},"
                  "\"server_time\":0,"
                  "\"last_seq\":9007199254740991,"
                  "\"replay_from\":9007199254740991}");
    m.welcome.server_time = MSG_TIME_MAX;
    roundtrip(&m, NULL);

    assert_int_equal(msg_build_event(&m, 1, "e1", MSG_EV_MESSAGE_READ, "c1",
                                     1795865028123LL,
                                     json_pack("{s:s,s:s}", "message_id",
                                               "m1", "state", "read"), &e),
                     0);
    roundtrip(&m, "{\"type\":\"event\",\"seq\":1,\"event_id\":\"e1\","
                  "\"kind\":\"message.read\",\"case_id\":\"c1\","
                  "\"at\":1795865028123,\"body\":"
                  "{\"message_id\":\"m1\",\"state\":\"read\"}}");
    msg_free(&m);

    assert_int_equal(msg_build_ack(&m, 0, &e), 0);
    roundtrip(&m, "{\"type\":\"ack\",\"seq\":0}");
    assert_int_equal(msg_build_ping(&m, MSG_PING, NULL, &e), 0);
    roundtrip(&m, "{\"type\":\"ping\"}");
    assert_int_equal(msg_build_ping(&m, MSG_PONG, "k1", &e), 0);
    roundtrip(&m, "{\"type\":\"pong\",\"id\":\"k1\"}");
    assert_int_equal(msg_build_error(&m, MSG_E_RATE_LIMITED, "slow down",
                                     &e), 0);
    roundtrip(&m, "{\"type\":\"error\",\"error\":{\"code\":\"rate_limited\","
                  "\"message\":\"slow down\"}}");

    msg_init(&m, MSG_CASE_CREATE);
    strcpy(m.id, "r1");
    strcpy(m.case_create.case_id, "c1");
    strcpy(m.case_create.question, "Fracture?");
    m.case_create.priority = MSG_PRIO_ROUTINE;
    strcpy(m.case_create.specialist, "dr.bone");
    m.case_create.has_patient = true;
    m.case_create.patient.sex = MSG_SEX_O;
    roundtrip(&m, "{\"type\":\"case.create\",\"id\":\"r1\",\"case_id\":"
                  "\"c1\",\"patient\":{\"sex\":\"O\"},\"question\":"
                  "\"Fracture?\",\"priority\":\"routine\",\"specialist\":"
                  "\"dr.bone\"}");

    static const enum msg_type refs[] = { MSG_CASE_CLAIM, MSG_CASE_GET,
                                          MSG_CASE_CLOSE, MSG_CASE_REOPEN };
    for (int i = 0; i < 4; i++) {
        char expect[200];
        assert_int_equal(msg_build_case_ref(&m, refs[i], "r2", "c1", "why",
                                            &e), 0);
        snprintf(expect, sizeof expect,
                 "{\"type\":\"%s\",\"id\":\"r2\",\"case_id\":\"c1\"%s}",
                 msg_type_name(refs[i]), i >= 2 ? ",\"reason\":\"why\"" : "");
        roundtrip(&m, expect);
    }
    assert_int_equal(msg_build_case_ref(&m, MSG_ACK, "r", "c", NULL, &e),
                     ERR_INVALID);

    msg_init(&m, MSG_CASE_ANSWER);
    strcpy(m.id, "r3");
    strcpy(m.case_answer.case_id, "c1");
    strcpy(m.case_answer.impression, "Normal.");
    roundtrip(&m, "{\"type\":\"case.answer\",\"id\":\"r3\",\"case_id\":\"c1\","
                  "\"impression\":\"Normal.\"}");

    msg_init(&m, MSG_CASE_LIST);
    strcpy(m.id, "r4");
    roundtrip(&m, "{\"type\":\"case.list\",\"id\":\"r4\",\"limit\":50}");
    m.case_list.status = MSG_ST_REOPENED;
    roundtrip(&m, "{\"type\":\"case.list\",\"id\":\"r4\",\"status\":"
                  "\"reopened\",\"limit\":50}");

    msg_init(&m, MSG_MESSAGE_SEND);
    strcpy(m.id, "r5");
    strcpy(m.message_send.case_id, "c1");
    strcpy(m.message_send.message_id, "m1");
    strcpy(m.message_send.text, "Ünïcode ✓ and\ttabs");
    roundtrip(&m, "{\"type\":\"message.send\",\"id\":\"r5\",\"case_id\":"
                  "\"c1\",\"message_id\":\"m1\",\"text\":"
                  "\"Ünïcode ✓ and\\ttabs\"}");
    m.message_send.has_image = true;
    strcpy(m.message_send.image.sop_uid, "1.2.840.10008.1");
    m.message_send.image.frame = 3;
    m.message_send.image.has_window = true;
    m.message_send.image.window.center = -600;
    m.message_send.image.window.width = 1500;
    roundtrip(&m, NULL);

    msg_init(&m, MSG_MESSAGE_READ);
    strcpy(m.id, "r6");
    strcpy(m.message_read.case_id, "c1");
    strcpy(m.message_read.message_id, "m1");
    roundtrip(&m, "{\"type\":\"message.read\",\"id\":\"r6\",\"case_id\":"
                  "\"c1\",\"message_id\":\"m1\"}");

    char sha[65];
    sha256_hex("", 0, sha);
    assert_int_equal(msg_build_upload_begin(&m, "r7", "u1", sha, 1, NULL,
                                            &e), 0);
    roundtrip(&m, NULL);
    assert_int_equal(msg_build_upload_end(&m, "r8", "u1", &e), 0);
    roundtrip(&m, "{\"type\":\"upload.end\",\"id\":\"r8\",\"upload_id\":"
                  "\"u1\"}");
    assert_int_equal(msg_build_upload_at(&m, NULL, "u1", MSG_UPLOAD_MAX, &e),
                     0);
    roundtrip(&m, "{\"type\":\"upload.at\",\"upload_id\":\"u1\","
                  "\"offset\":1099511627776}");
    assert_int_equal(msg_build_upload_done(&m, "r8", "u1", "1.2.3",
                                           MSG_UP_DUPLICATE, &e), 0);
    roundtrip(&m, "{\"type\":\"upload.done\",\"id\":\"r8\",\"upload_id\":"
                  "\"u1\",\"sop_instance_uid\":\"1.2.3\",\"status\":"
                  "\"duplicate\"}");

    assert_int_equal(msg_build_reply_ok(&m, "r1", json_pack("{s:i}", "n", 1),
                                        &e), 0);
    roundtrip(&m, "{\"type\":\"reply\",\"id\":\"r1\",\"ok\":true,"
                  "\"result\":{\"n\":1}}");
    msg_free(&m);
    assert_int_equal(msg_build_reply_err(&m, "r1", MSG_E_NOT_FOUND,
                                         "no such case", &e), 0);
    roundtrip(&m, "{\"type\":\"reply\",\"id\":\"r1\",\"ok\":false,"
                  "\"error\":{\"code\":\"not_found\",\"message\":"
                  "\"no such case\"}}");
}

/* A struct that breaks the spec is refused by the serializer too. */
static void test_build_rejects(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;
    char *out;
    size_t len;
    char big[400];

    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(msg_build_hello(&m, big, 0, "a", "1", &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_TOO_LONG);
    assert_string_equal(e.field, "token");
    assert_int_equal(msg_build_ack(&m, -1, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_BAD_FIELD);
    assert_int_equal(msg_build_hello(&m, "t", 0, "", "1", &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    assert_string_equal(e.field, "client.name");

    /* the JSON argument is taken even on failure (valgrind: no leak) */
    assert_int_equal(msg_build_event(&m, 1, "e1", 99, "c1", 0, json_object(),
                                     &e), ERR_INVALID);
    assert_string_equal(e.field, "kind");
    assert_int_equal(msg_build_event(&m, 1, "e 1", MSG_EV_CASE_NEW, "c1", 0,
                                     json_object(), &e), ERR_INVALID);
    assert_string_equal(e.field, "event_id");
    assert_int_equal(msg_build_event(&m, 1, "e1", MSG_EV_CASE_NEW, "c1", 0,
                                     json_array(), &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_BAD_TYPE);
    assert_int_equal(msg_build_event(&m, 1, "e1", MSG_EV_CASE_NEW, "c1", 0,
                                     NULL, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    assert_int_equal(msg_build_reply_ok(&m, NULL, json_object(), &e),
                     ERR_INVALID);
    assert_string_equal(e.field, "id");
    assert_int_equal(msg_build_reply_err(&m, "r", MSG_E_NONE, "x", &e),
                     ERR_INVALID);
    assert_string_equal(e.field, "error.code");
    assert_int_equal(msg_build_upload_begin(&m, "r", "u", "abc", 1, NULL,
                                            &e), ERR_INVALID);
    assert_string_equal(e.field, "sha256");
    assert_int_equal(msg_build_upload_done(&m, "r", "u", "1.2", 0, &e),
                     ERR_INVALID);
    assert_string_equal(e.field, "status");

    msg_init(&m, MSG_CASE_CREATE);
    strcpy(m.id, "r1");
    strcpy(m.case_create.case_id, "c1");
    strcpy(m.case_create.question, "bad \xff byte");
    m.case_create.priority = MSG_PRIO_STAT;
    strcpy(m.case_create.specialty, "neurology");
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_null(out);
    assert_int_equal(e.code, MSG_E_BAD_FIELD);
    assert_string_equal(e.field, "question");
    strcpy(m.case_create.question, "ok");
    m.case_create.n_study_uids = MSG_STUDIES_MAX + 1;
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_TOO_LONG);
    assert_string_equal(e.field, "study_uids");
    m.case_create.n_study_uids = 1;
    strcpy(m.case_create.study_uids[0], "1.02");
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_string_equal(e.field, "study_uids[0]");
    m.case_create.n_study_uids = 0;
    m.case_create.specialty[0] = 0;
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    assert_string_equal(e.field, "specialty");
    m.case_create.priority = 0;
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_string_equal(e.field, "priority");
    m.id[0] = 0;
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_string_equal(e.field, "id");
    msg_init(&m, MSG_NONE);
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);

    /* NaN window */
    msg_init(&m, MSG_MESSAGE_SEND);
    strcpy(m.id, "r");
    strcpy(m.message_send.case_id, "c");
    strcpy(m.message_send.message_id, "m");
    strcpy(m.message_send.text, "t");
    m.message_send.has_image = true;
    strcpy(m.message_send.image.sop_uid, "1.2");
    m.message_send.image.has_window = true;
    m.message_send.image.window.center = 0.0 / 0.0;
    m.message_send.image.window.width = 1;
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_INVALID);
    assert_string_equal(e.field, "image.window.center");

    /* a result too big for one frame */
    char *huge = malloc(MSG_MAX_FRAME + 1);
    memset(huge, 'x', MSG_MAX_FRAME);
    huge[MSG_MAX_FRAME] = 0;
    assert_int_equal(msg_build_reply_ok(&m, "r", json_pack("{s:s}", "x",
                                                           huge), &e), 0);
    free(huge);
    assert_int_equal(msg_serialize(&m, &out, &len, &e), ERR_TOOBIG);
    assert_int_equal(e.code, MSG_E_TOO_BIG);
    assert_null(out);
    msg_free(&m);
}

/* Whatever text a server error carries, the answer can be built. */
static void test_error_text_sanitized(void **state)
{
    (void)state;
    static struct msg m, back;
    struct msg_error e;
    char *out;
    size_t len;
    static char text[700];

    assert_int_equal(msg_build_reply_err(&m, "r", MSG_E_CONFLICT,
                                         "bad \xff\x01 byte\nnext", &e), 0);
    assert_string_equal(m.reply.error.message, "bad ?? byte\nnext");
    /* 511 ASCII bytes then a 2-byte character: it does not fit, and is
     * dropped whole */
    memset(text, 'a', 511);
    strcpy(text + 511, "\xc3\xa9tail");
    assert_int_equal(msg_build_error(&m, MSG_E_INTERNAL, text, &e), 0);
    assert_int_equal(strlen(m.error.error.message), 511);
    assert_int_equal(msg_serialize(&m, &out, &len, &e), 0);
    assert_int_equal(msg_parse(out, len, &back, &e), 0);
    free(out);
    msg_free(&back);
    /* a cut in the middle of a character is dropped too */
    strcpy(text + 510, "\xe2\x9c\x93");
    assert_int_equal(msg_build_error(&m, MSG_E_INTERNAL, text, &e), 0);
    assert_int_equal(strlen(m.error.error.message), 510);
    assert_int_equal(msg_build_error(&m, MSG_E_INTERNAL, NULL, &e), 0);
    assert_string_equal(m.error.error.message, "");
}

/* The REST twin: a body without type (and maybe without id). */
static void test_from_json(void **state)
{
    (void)state;
    static struct msg m;
    struct msg_error e;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "case_id", "c1", "question",
                          "q", "priority", "urgent", "specialty", "cardio");
    assert_int_equal(msg_from_json(o, MSG_CASE_CREATE, &m, &e), 0);
    assert_int_equal(m.type, MSG_CASE_CREATE);
    assert_int_equal(m.case_create.priority, MSG_PRIO_URGENT);
    assert_string_equal(m.id, "");
    json_t *back = msg_to_json(&m, &e);   /* no id: a request, refused */
    assert_null(back);
    assert_string_equal(e.field, "id");
    strcpy(m.id, "rest-1");
    back = msg_to_json(&m, &e);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back,
                                                          "specialty")),
                        "cardio");
    json_decref(back);
    msg_free(&m);
    json_object_del(o, "question");
    assert_int_equal(msg_from_json(o, MSG_CASE_CREATE, &m, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_MISSING_FIELD);
    assert_string_equal(e.field, "question");
    json_object_set_new(o, "question", json_stringn("a\0b", 3));
    assert_int_equal(msg_from_json(o, MSG_CASE_CREATE, &m, &e), ERR_INVALID);
    assert_string_equal(e.field, "question");
    json_decref(o);
    o = json_array();
    assert_int_equal(msg_from_json(o, MSG_CASE_GET, &m, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_BAD_JSON);
    assert_int_equal(msg_from_json(o, MSG_NONE, &m, &e), ERR_INVALID);
    assert_int_equal(e.code, MSG_E_UNKNOWN_TYPE);
    json_decref(o);
}

/* Every example frame in PROTOCOL.md (an indented line starting with
 * {"type") parses, and is in canonical form: the document and the codec
 * agree. */
static void test_protocol_md_examples(void **state)
{
    (void)state;
    const char *root = getenv("HASHI_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/proto/PROTOCOL.md", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        print_error("cannot open %s (run from the checkout or set "
                    "HASHI_ROOT)\n", path);
    assert_non_null(f);
    static char line[MSG_MAX_FRAME];
    bool seen[MSG_TYPE_COUNT] = { false };
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ')
            p++;
        if (p - line < 4 || strncmp(p, "{\"type\"", 7))
            continue;
        /* "a  ->  b" lines hold two frames */
        for (char *frame = p; frame;) {
            char *arrow = strstr(frame, "   ->   ");
            if (arrow)
                *arrow = 0;
            frame[strcspn(frame, "\n")] = 0;
            static struct msg m;
            struct msg_error e;
            char *out;
            size_t len;
            int rc = parse_str(frame, &m, &e);
            if (rc)
                print_error("PROTOCOL.md: %s: %s\n", frame, e.message);
            assert_int_equal(rc, 0);
            assert_int_equal(msg_serialize(&m, &out, &len, &e), 0);
            if (strcmp(out, frame))
                print_error("PROTOCOL.md: %s\n   canonical: %s\n", frame,
                            out);
            assert_string_equal(out, frame);
            free(out);
            seen[m.type] = true;
            msg_free(&m);
            frame = arrow ? arrow + 8 : NULL;
        }
    }
    fclose(f);
    /* an example of every type */
    for (int t = MSG_NONE + 1; t < MSG_TYPE_COUNT; t++) {
        if (!seen[t])
            print_error("PROTOCOL.md: no example of %s\n",
                        msg_type_name(t));
        assert_true(seen[t]);
    }
}

/* ---- chunks ----------------------------------------------------------- */

static void test_chunk_roundtrip(void **state)
{
    (void)state;
    static unsigned char frame[MSG_CHUNK_HDR + 5];
    struct msg_chunk c;
    struct msg_error e;

    assert_int_equal(msg_chunk_build(frame, "u-1", 0x0102030405ULL, 5, &e),
                     0);
    static const unsigned char expect[MSG_CHUNK_HDR] = {
        'H', 'C', 1, 3, 'u', '-', '1', [68] = 0, 0, 0, 0x01, 0x02, 0x03,
        0x04, 0x05, [76] = 0, 0, 0, 5,
    };
    assert_memory_equal(frame, expect, MSG_CHUNK_HDR);
    memcpy(frame + MSG_CHUNK_HDR, "hello", 5);
    assert_int_equal(msg_chunk_parse(frame, sizeof frame, &c, &e), 0);
    assert_string_equal(c.upload_id, "u-1");
    assert_true(c.offset == 0x0102030405ULL);
    assert_int_equal(c.length, 5);
    assert_ptr_equal(c.data, frame + MSG_CHUNK_HDR);
    assert_memory_equal(c.data, "hello", 5);

    /* the largest chunk, a 64-character id, the largest offset */
    unsigned char *big = calloc(1, MSG_CHUNK_HDR + MSG_MAX_CHUNK);
    char id[MSG_ID_MAX + 1];
    memset(id, 'Z', MSG_ID_MAX);
    id[MSG_ID_MAX] = 0;
    assert_int_equal(msg_chunk_build(big, id, MSG_UPLOAD_MAX, MSG_MAX_CHUNK,
                                     &e), 0);
    assert_int_equal(msg_chunk_parse(big, MSG_CHUNK_HDR + MSG_MAX_CHUNK, &c,
                                     &e), 0);
    assert_string_equal(c.upload_id, id);
    assert_int_equal(c.length, MSG_MAX_CHUNK);
    free(big);
}

static void chunk_bad(const unsigned char *f, size_t len, enum msg_code code,
                      const char *field)
{
    struct msg_chunk c;
    struct msg_error e;
    int rc = msg_chunk_parse(f, len, &c, &e);
    assert_int_not_equal(rc, 0);
    if (e.code != code || strcmp(e.field, field))
        print_error("chunk: %s %s\n", msg_code_name(e.code), e.message);
    assert_int_equal(e.code, code);
    assert_string_equal(e.field, field);
    assert_string_equal(c.upload_id, "");
}

static void test_chunk_bad(void **state)
{
    (void)state;
    static unsigned char f[MSG_CHUNK_HDR + 4], g[MSG_CHUNK_HDR + 4];
    struct msg_error e;

    assert_int_equal(msg_chunk_build(f, "up1", 10, 4, &e), 0);
    memcpy(f + MSG_CHUNK_HDR, "data", 4);

    chunk_bad(f, MSG_CHUNK_HDR - 1, MSG_E_BAD_FIELD, "chunk");
    chunk_bad(f, 0, MSG_E_BAD_FIELD, "chunk");
    chunk_bad(NULL, 0, MSG_E_BAD_FIELD, "chunk");
    chunk_bad(f, MSG_CHUNK_HDR + 3, MSG_E_BAD_FIELD, "chunk.length");
    chunk_bad(f, MSG_CHUNK_HDR, MSG_E_BAD_FIELD, "chunk.length");
    chunk_bad(f, MSG_CHUNK_HDR + 1 + MSG_MAX_CHUNK, MSG_E_TOO_BIG, "chunk");

    memcpy(g, f, sizeof g);
    g[0] = '{';
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.magic");
    memcpy(g, f, sizeof g);
    g[2] = 2;
    chunk_bad(g, sizeof g, MSG_E_UNKNOWN_TYPE, "chunk.version");
    memcpy(g, f, sizeof g);
    g[3] = 0;
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.upload_id");
    g[3] = 65;
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.upload_id");
    memcpy(g, f, sizeof g);
    g[5] = '/';
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.upload_id");
    memcpy(g, f, sizeof g);
    g[40] = 'x';                        /* padding not zero */
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.upload_id");
    memcpy(g, f, sizeof g);
    g[68] = 0x80;                       /* offset 2^63 + 10 */
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.offset");
    memcpy(g, f, sizeof g);
    memset(g + 76, 0, 4);
    chunk_bad(g, MSG_CHUNK_HDR, MSG_E_BAD_FIELD, "chunk.length");
    memcpy(g, f, sizeof g);
    g[76] = 0xff;                       /* length ~4 GiB */
    chunk_bad(g, sizeof g, MSG_E_TOO_BIG, "chunk.length");
    memcpy(g, f, sizeof g);
    g[78] = 0x01;                       /* says 260, carries 4 */
    chunk_bad(g, sizeof g, MSG_E_BAD_FIELD, "chunk.length");

    unsigned char h[MSG_CHUNK_HDR];
    assert_int_equal(msg_chunk_build(h, "", 0, 1, &e), ERR_INVALID);
    assert_int_equal(msg_chunk_build(h, NULL, 0, 1, &e), ERR_INVALID);
    assert_int_equal(msg_chunk_build(h, "a b", 0, 1, &e), ERR_INVALID);
    assert_int_equal(msg_chunk_build(h, "u", 0, 0, &e), ERR_INVALID);
    assert_int_equal(msg_chunk_build(h, "u", 0, MSG_MAX_CHUNK + 1, &e),
                     ERR_TOOBIG);
    assert_int_equal(e.code, MSG_E_TOO_BIG);
    assert_int_equal(msg_chunk_build(h, "u", MSG_UPLOAD_MAX + 1, 1, &e),
                     ERR_INVALID);
    char id[MSG_ID_MAX + 2];
    memset(id, 'a', MSG_ID_MAX + 1);
    id[MSG_ID_MAX + 1] = 0;
    assert_int_equal(msg_chunk_build(h, id, 0, 1, &e), ERR_INVALID);
    assert_string_equal(e.field, "chunk.upload_id");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_parse_and_reserialize),
        cmocka_unit_test(test_sample_values),
        cmocka_unit_test(test_each_field_removed),
        cmocka_unit_test(test_each_field_wrong_type),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_string_limits),
        cmocka_unit_test(test_frame_size),
        cmocka_unit_test(test_unknown_fields_and_id_recovery),
        cmocka_unit_test(test_direction),
        cmocka_unit_test(test_gateway_messages),
        cmocka_unit_test(test_build_every_type),
        cmocka_unit_test(test_build_rejects),
        cmocka_unit_test(test_error_text_sanitized),
        cmocka_unit_test(test_from_json),
        cmocka_unit_test(test_protocol_md_examples),
        cmocka_unit_test(test_chunk_roundtrip),
        cmocka_unit_test(test_chunk_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
