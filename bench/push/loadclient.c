/*
 * loadclient — the push fan-out benchmark's client (bench/push.sh).
 *
 * One process, three threads:
 *   - the lws thread holds N hashi.v1 WebSocket connections (wss://.../ws,
 *     subprotocol hashi.v1, one lws client context), one per specialist
 *     session of the tokens file; each says hello, waits for welcome, then
 *     timestamps every event as its first bytes arrive and acks it (at
 *     once, or, as a phone does, the highest seq --ack-ms after the first
 *     event it has not acked: each connection on its own clock, not all
 *     10,000 at one tick);
 *   - once all N are welcomed, the creator thread posts cases over one
 *     keep-alive HTTPS connection (POST /api/cases as the requester, a
 *     unique case_id "<run>-<k>" each, specialty S) at RATE per second,
 *     and timestamps the moment each reply has fully arrived.  It is a
 *     closed loop: a create slower than 1/RATE delays the next one, and
 *     nothing more is sent after DURATION s, so a slow server shows as
 *     fewer cases (reported), never as a longer run;
 *   - the sampler thread reads the server's VmRSS every 0.5 s.
 *
 * Figures, over every (case, client) pair, on this process's
 * CLOCK_MONOTONIC: receipt - create reply (the figure; negative
 * when the event beats the reply), receipt - request sent, and receipt -
 * the event's `at` (server commit time, ms, via CLOCK_REALTIME).  A
 * receipt is matched by case_id and counted once; another case.new for
 * the same pair is a duplicate.  Missing = pairs never received within
 * --grace s after the last create.  Server CPU is utime+stime from
 * /proc/PID/stat over the create phase.
 *
 * Messages are read with a small scanner of top-level JSON members (no
 * full parse: 1,000 events arrive per case and the client must not be the
 * bottleneck it measures).  LOADCLIENT_DEBUG=1 prints per-case timings.
 *
 * --mqtt: the same load against an MQTT broker (Mosquitto, the anchor)
 * over its WebSocket listener (subprotocol "mqtt", TLS): each of the N
 * connections is an MQTT 3.1.1 client (clean session off) subscribed
 * QoS 1 to one topic; one more connection
 * publishes QoS 1 messages of --msg-size bytes (the hashi event's size)
 * at the same rate.  "create" becomes publish -> PUBACK, and "commit" the
 * moment the publish was written (the broker has no commit), so its
 * commit -> receipt includes the publish's own trip: in Mosquitto's
 * favour it is not.
 *
 * --group-size G (load (b)): the users were made by mkusers --group-size
 * G, so client i is a specialist of "S-<i / G>"; case k goes to specialty
 * "S-<k mod N/G>", i.e. to G clients, and only those pairs are counted
 * (a case.new at any other client is a stray, reported).
 *
 * The clients run on libev (epoll), lws's LWS_SERVER_OPTION_LIBEV, as the
 * server does: with poll() 10,000 connections cost O(N) per wake-up on
 * both sides and connecting them took minutes.
 *
 * Output: a human summary, and "RESULT key=value" lines for push.sh.
 * Exit status: 0 all delivered; 1 deliveries missing or creates failed;
 * 2 set-up failure (connections, TLS, server).
 */
#define _GNU_SOURCE             /* strcasestr */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TOKEN_MAX 256
#define CONNECT_RETRIES 3
#define TICK_US (20 * 1000)

enum { C_IDLE = 0, C_CONNECTING, C_OPEN, C_WELCOMED, C_CLOSED };

struct conn {
    struct lws *wsi;
    int idx;
    int state;
    int hello_sent;
    int retries;
    int64_t ack_due;            /* highest seq received */
    int64_t ack_sent;           /* highest seq acked */
    int64_t ack_at;             /* --ack-ms: ack due then (ns), 0: none */
    char *rx;                   /* the message being received */
    size_t rx_len, rx_cap;
    int64_t rx_t0;              /* when its first bytes came */
    char login[64];
    char token[TOKEN_MAX + 1];
    /* --mqtt */
    int mq_stage;               /* MQ_* below */
    uint16_t mq_acks[64];       /* PUBACKs to send */
    int mq_nacks;
};

enum { MQ_CONNECT = 0, MQ_CONNACK, MQ_SUBSCRIBE, MQ_SUBACK, MQ_READY };

static struct {
    /* options */
    const char *host, *ca, *tokens, *specialty, *run_id;
    int port, rate, duration, grace, batch, ack_ms, max_clients;
    int server_pid;
    int mqtt, msg_size;
    int idle_s;                 /* --idle: no creates, S s of quiet */
    int group;                  /* --group-size: recipients a case; 0: all */
    int connect_s;              /* --connect-s: all welcomed within */
    int idle_done;
    struct conn pub;            /* --mqtt: the publisher */
    atomic_int pub_due;         /* publishes the creator asked for */
    int pub_done;               /* ... written */

    struct lws_context *ctx;
    lws_sorted_usec_list_t tick;
    struct conn *conns;
    int n;
    char req_login[64], req_token[TOKEN_MAX + 1];

    /* connect phase */
    int next;                   /* next never-tried connection */
    int *retry;                 /* indexes to try again */
    int nretry;
    int inflight, nopen, nwelcomed, nfailed, ndropped;
    int64_t t_start, t_welcomed;

    /* measurement: recv[k * per_case() + j] = ns when the j-th recipient
     * of case k got it (recv_slot) */
    int ncases;
    int64_t *recv;
    int64_t *sent, *reply;      /* per case, written by the creator */
    int64_t *at_ms;             /* per case: the event's `at` (commit) */
    int64_t real_off;           /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns */
    int nsent;                  /* cases sent before the deadline */
    int *status;                /* HTTP status per case */
    long nreceived, ndup, nother, nerrors, nunknown_case, nstray;
    long ev_bytes, ev_count;    /* event frames: their mean size */

    /* threads */
    pthread_t creator_th, sampler_th;
    int creator_started;
    atomic_int creator_done;
    atomic_int stop;
    int64_t t_done;             /* when the creator finished */

    /* server figures */
    atomic_long rss_max_kb, rss_max_create_kb;
    atomic_int in_create;
    long cpu_create_ticks, cpu_connect_ticks;
    int64_t create_t0, create_t1;
    long cpu_t0;
    struct rusage ru_t0, ru_t1;
    int setup_failed;
} g;

/* The recipients of one case: every client, or its group of clients. */
static size_t per_case(void)
{
    return g.group ? (size_t)g.group : (size_t)g.n;
}

/* Where client idx's receipt of case k goes; NULL if idx is none of the
 * case's recipients (--group-size). */
static int64_t *recv_slot(long k, int idx)
{
    size_t base = 0;
    if (g.group)
        base = (size_t)(k % (g.n / g.group)) * (size_t)g.group;
    if ((size_t)idx < base || (size_t)idx >= base + per_case())
        return NULL;
    return &g.recv[(size_t)k * per_case() + ((size_t)idx - base)];
}

/* Case k of this run reached connection c at t: counted once, in its
 * slot, or as unknown, stray (not a recipient) or duplicate. */
static void count_receipt(struct conn *c, long k, int64_t t)
{
    if (k < 0 || k >= g.ncases) {
        g.nunknown_case++;
        return;
    }
    int64_t *slot = recv_slot(k, c->idx);
    if (!slot) {
        g.nstray++;
        return;
    }
    if (*slot) {
        g.ndup++;
        return;
    }
    *slot = t;
    g.nreceived++;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the server's /proc figures ----------------------------------------- */

static long server_cpu_ticks(void)
{
    char path[64], buf[1024];
    if (!g.server_pid)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", g.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                     "%lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

static long server_rss_kb(void)
{
    char path[64], line[256];
    long kb = -1;
    if (!g.server_pid)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", g.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static void *sampler(void *arg)
{
    (void)arg;
    while (!atomic_load(&g.stop)) {
        long kb = server_rss_kb();
        if (kb > atomic_load(&g.rss_max_kb))
            atomic_store(&g.rss_max_kb, kb);
        if (atomic_load(&g.in_create) &&
            kb > atomic_load(&g.rss_max_create_kb))
            atomic_store(&g.rss_max_create_kb, kb);
        struct timespec ts = { 0, 500 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---- a scanner of top-level JSON members --------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at '"': returns just past the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                if (!(p = skip_string(p, end)))
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ')
        p++;
    return p;
}

/* The value of top-level member key of the object in [p, end): its start
 * (for a string, past the quote) and length (without quotes).  0 if
 * found. */
static int member(const char *p, const char *end, const char *key,
                  const char **v, size_t *vlen)
{
    size_t klen = strlen(key);
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return -1;
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return -1;
        const char *k = p + 1, *kend = skip_string(p, end);
        if (!kend)
            return -1;
        int match = (size_t)(kend - 1 - k) == klen && !memcmp(k, key, klen);
        p = skip_ws(kend, end);
        if (p >= end || *p != ':')
            return -1;
        p = skip_ws(p + 1, end);
        const char *vend = skip_value(p, end);
        if (!vend)
            return -1;
        if (match) {
            if (*p == '"') {
                *v = p + 1;
                *vlen = (size_t)(vend - p - 2);
            } else {
                *v = p;
                *vlen = (size_t)(vend - p);
            }
            return 0;
        }
        p = skip_ws(vend, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        return -1;
    }
}

static int member_is(const char *p, const char *end, const char *key,
                     const char *want)
{
    const char *v;
    size_t n;
    return !member(p, end, key, &v, &n) && n == strlen(want) &&
           !memcmp(v, want, n);
}

/* ---- hashi.v1 messages ---------------------------------------------------- */

static void want_write(struct conn *c)
{
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

static void on_event(struct conn *c, const char *p, const char *end,
                     int64_t t)
{
    const char *v;
    size_t n;
    if (member(p, end, "seq", &v, &n))
        return;
    int64_t seq = strtoll(v, NULL, 10);
    if (seq > c->ack_due)
        c->ack_due = seq;
    if (!g.ack_ms)
        want_write(c);
    else if (!c->ack_at)
        c->ack_at = t + (int64_t)g.ack_ms * 1000000;

    if (!member_is(p, end, "kind", "case.new") ||
        member(p, end, "case_id", &v, &n)) {
        g.nother++;
        return;
    }
    size_t rl = strlen(g.run_id);
    if (n <= rl + 1 || memcmp(v, g.run_id, rl) || v[rl] != '-') {
        g.nother++;
        return;
    }
    long k = strtol(v + rl + 1, NULL, 10);
    if (k >= 0 && k < g.ncases && !g.at_ms[k] &&
        !member(p, end, "at", &v, &n))
        g.at_ms[k] = strtoll(v, NULL, 10);
    count_receipt(c, k, t);
}

static void on_message(struct conn *c, const char *p, size_t len, int64_t t)
{
    const char *end = p + len, *v;
    size_t n;
    if (member(p, end, "type", &v, &n)) {
        g.nerrors++;
        return;
    }
    if (n == 5 && !memcmp(v, "event", 5)) {
        g.ev_bytes += (long)len;
        g.ev_count++;
        on_event(c, p, end, t);
    } else if (n == 7 && !memcmp(v, "welcome", 7)) {
        if (c->state != C_WELCOMED) {
            c->state = C_WELCOMED;
            g.nwelcomed++;
        }
    } else if (n == 5 && !memcmp(v, "error", 5)) {
        if (g.nerrors++ < 5)
            fprintf(stderr, "loadclient: %s: server error: %.*s\n",
                    c->login, (int)(len > 300 ? 300 : len), p);
    }
}

static int send_text(struct conn *c, const char *text)
{
    unsigned char buf[LWS_PRE + 512];
    size_t n = strlen(text);
    if (n > sizeof buf - LWS_PRE)
        return -1;
    memcpy(buf + LWS_PRE, text, n);
    return lws_write(c->wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT) < (int)n
               ? -1
               : 0;
}

/* ---- MQTT 3.1.1 over WebSocket (--mqtt, the Mosquitto anchor) ------------ */

#define MQ_TOPIC "bench/push"

/* One MQTT packet (fixed header byte, body) as one binary WS message. */
static int mq_write(struct conn *c, unsigned char type,
                    const unsigned char *body, size_t n)
{
    static unsigned char buf[LWS_PRE + 5 + 65536];
    unsigned char *p = buf + LWS_PRE;
    size_t h = 1, len = n;
    if (n > 65536)
        return -1;
    p[0] = type;
    do {                        /* remaining length, 7 bits a byte */
        unsigned char b = len % 128;
        len /= 128;
        p[h++] = b | (len ? 0x80 : 0);
    } while (len);
    memcpy(p + h, body, n);
    return lws_write(c->wsi, p, h + n, LWS_WRITE_BINARY) < (int)(h + n)
               ? -1 : 0;
}

static int mq_writeable(struct conn *c)
{
    unsigned char b[65536];
    size_t n = 0, tl = strlen(MQ_TOPIC);
    if (c->mq_stage == MQ_CONNECT) {
        static const unsigned char head[] = { 0, 4, 'M', 'Q', 'T', 'T', 4,
                                              0 /* clean session off */,
                                              0, 60 };
        size_t il = strlen(c->login);
        memcpy(b, head, sizeof head);
        n = sizeof head;
        b[n++] = (unsigned char)(il >> 8);
        b[n++] = (unsigned char)il;
        memcpy(b + n, c->login, il);
        c->mq_stage = MQ_CONNACK;
        return mq_write(c, 0x10, b, n + il);
    }
    if (c->mq_stage == MQ_SUBSCRIBE) {
        b[n++] = 0;
        b[n++] = 1;
        b[n++] = (unsigned char)(tl >> 8);
        b[n++] = (unsigned char)tl;
        memcpy(b + n, MQ_TOPIC, tl);
        n += tl;
        b[n++] = 1;             /* QoS 1 */
        c->mq_stage = MQ_SUBACK;
        return mq_write(c, 0x82, b, n);
    }
    if (c->mq_nacks) {
        uint16_t id = c->mq_acks[--c->mq_nacks];
        b[0] = (unsigned char)(id >> 8);
        b[1] = (unsigned char)id;
        if (mq_write(c, 0x40, b, 2))
            return -1;
    } else if (c == &g.pub && c->mq_stage == MQ_READY &&
               g.pub_done < atomic_load(&g.pub_due)) {
        int k = g.pub_done++;
        uint16_t id = (uint16_t)(k % 65535 + 1);
        b[n++] = (unsigned char)(tl >> 8);
        b[n++] = (unsigned char)tl;
        memcpy(b + n, MQ_TOPIC, tl);
        n += tl;
        b[n++] = (unsigned char)(id >> 8);
        b[n++] = (unsigned char)id;
        int m = snprintf((char *)b + n, sizeof b - n, "%s-%d ", g.run_id, k);
        size_t size = g.msg_size > m ? (size_t)g.msg_size : (size_t)m;
        if (n + size > sizeof b)
            size = sizeof b - n;
        memset(b + n + m, 'x', size - (size_t)m);
        if (mq_write(c, 0x32, b, n + size))
            return -1;
    }
    if (c->mq_nacks || (c == &g.pub && c->mq_stage == MQ_READY &&
                        g.pub_done < atomic_load(&g.pub_due)))
        want_write(c);
    return 0;
}

/* A PUBLISH received: the same bookkeeping as a hashi event. */
static void mq_publish(struct conn *c, unsigned char flags,
                       const unsigned char *p, size_t n, int64_t t)
{
    if (n < 2)
        return;
    size_t tl = (size_t)p[0] << 8 | p[1], off = 2 + tl;
    if ((flags >> 1) & 3) {
        if (off + 2 > n)
            return;
        if (c->mq_nacks < (int)(sizeof c->mq_acks / sizeof c->mq_acks[0]))
            c->mq_acks[c->mq_nacks++] = (uint16_t)(p[off] << 8 | p[off + 1]);
        want_write(c);
        off += 2;
    }
    size_t rl = strlen(g.run_id);
    if (off + rl + 1 >= n || memcmp(p + off, g.run_id, rl) ||
        p[off + rl] != '-') {
        g.nother++;
        return;
    }
    count_receipt(c, strtol((const char *)p + off + rl + 1, NULL, 10), t);
}

/* The MQTT packets complete in c->rx (a byte stream over WS messages). */
static void mq_receive(struct conn *c, int64_t t)
{
    size_t off = 0;
    const unsigned char *b = (const unsigned char *)c->rx;
    while (off + 2 <= c->rx_len) {
        size_t len = 0, h = 1;
        int mult = 1, more = 1;
        while (more && off + h < c->rx_len && h < 5) {
            len += (size_t)(b[off + h] & 0x7f) * (size_t)mult;
            more = b[off + h] & 0x80;
            mult *= 128;
            h++;
        }
        if (more || off + h + len > c->rx_len)
            break;
        unsigned char type = b[off];
        const unsigned char *body = b + off + h;
        if ((type & 0xf0) == 0x20 && c->mq_stage == MQ_CONNACK) {
            if (len >= 2 && body[1] != 0) {
                fprintf(stderr, "loadclient: %s: CONNACK %d\n", c->login,
                        body[1]);
            } else {
                c->mq_stage = c == &g.pub ? MQ_READY : MQ_SUBSCRIBE;
                want_write(c);
            }
        } else if ((type & 0xf0) == 0x90 && c->mq_stage == MQ_SUBACK) {
            c->mq_stage = MQ_READY;
            c->state = C_WELCOMED;
            g.nwelcomed++;
        } else if ((type & 0xf0) == 0x30) {
            mq_publish(c, type & 0x0f, body, len, t);
        } else if ((type & 0xf0) == 0x40 && c == &g.pub && len >= 2) {
            int k = ((body[0] << 8 | body[1]) - 1);
            if (k >= 0 && k < g.ncases && !g.reply[k]) {
                g.reply[k] = mono_ns();
                g.status[k] = 201;
            }
        }
        off += h + len;
    }
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
}

/* ---- connections ----------------------------------------------------------- */

static void launch_more(void);

static void open_conn(struct conn *c)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = g.ctx;
    ci.address = g.host;
    ci.port = g.port;
    ci.ssl_connection = LCCSCF_USE_SSL;
    ci.path = g.mqtt ? "/mqtt" : "/ws";
    ci.host = g.host;
    ci.protocol = g.mqtt ? "mqtt" : "hashi.v1";
    ci.local_protocol_name = g.mqtt ? "mqtt" : "hashi.v1";
    ci.alpn = "http/1.1";
    ci.ietf_version_or_minus_one = -1;
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    c->state = C_CONNECTING;
    c->hello_sent = 0;
    c->rx_len = 0;
    g.inflight++;
    if (!lws_client_connect_via_info(&ci)) {
        /* lws has already called CONNECTION_ERROR, or failed before it */
        if (c->state == C_CONNECTING) {
            c->state = C_CLOSED;
            g.inflight--;
            g.nfailed++;
        }
    }
}

static void launch_more(void)
{
    while (g.inflight < g.batch) {
        if (g.nretry) {
            open_conn(&g.conns[g.retry[--g.nretry]]);
        } else if (g.next < g.n) {
            open_conn(&g.conns[g.next++]);
        } else {
            break;
        }
    }
}

static void conn_failed(struct conn *c, const char *why)
{
    int was = c->state;
    if (c == &g.pub) {          /* --mqtt's publisher: no run without it */
        c->state = C_CLOSED;
        c->wsi = NULL;
        if (!atomic_load(&g.stop)) {
            fprintf(stderr, "loadclient: the publisher: %s\n", why);
            g.setup_failed = 1;
            atomic_store(&g.stop, 1);
        }
        return;
    }
    c->state = C_CLOSED;
    c->wsi = NULL;
    if (was == C_CONNECTING)
        g.inflight--;
    if (was == C_WELCOMED || was == C_OPEN) {
        if (atomic_load(&g.stop))       /* our own teardown */
            return;
        g.ndropped++;
        if (was == C_WELCOMED)
            g.nwelcomed--;
        g.nopen--;
        if (g.ndropped <= 5)
            fprintf(stderr, "loadclient: %s: connection closed (%s)\n",
                    c->login, why);
        return;
    }
    if (was == C_CONNECTING && ++c->retries < CONNECT_RETRIES) {
        g.retry[g.nretry++] = c->idx;
        return;
    }
    if (was == C_CONNECTING && g.nfailed++ < 5)
        fprintf(stderr, "loadclient: %s: cannot connect: %s\n", c->login,
                why);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    (void)user;
    struct conn *c = lws_get_opaque_user_data(wsi);
    char text[TOKEN_MAX + 200];

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c)      /* the tick launches the retry (no recursion here) */
            conn_failed(c, in ? (const char *)in : "connection error");
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (g.mqtt && g.pub.wsi && g.pub_done < atomic_load(&g.pub_due))
            want_write(&g.pub);
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!c)
            break;
        c->state = C_OPEN;
        c->mq_stage = MQ_CONNECT;
        if (c != &g.pub) {
            g.inflight--;
            g.nopen++;
        }
        want_write(c);
        launch_more();
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c)
            break;
        if (g.mqtt)
            return mq_writeable(c) ? -1 : 0;
        if (!c->hello_sent) {
            snprintf(text, sizeof text,
                     "{\"type\":\"hello\",\"token\":\"%s\",\"last_seq\":0,"
                     "\"client\":{\"name\":\"bench-push\",\"version\":"
                     "\"1\"}}", c->token);
            if (send_text(c, text))
                return -1;
            c->hello_sent = 1;
        } else if (c->ack_due > c->ack_sent) {
            snprintf(text, sizeof text, "{\"type\":\"ack\",\"seq\":%lld}",
                     (long long)c->ack_due);
            if (send_text(c, text))
                return -1;
            c->ack_sent = c->ack_due;
        }
        if (!g.ack_ms && c->ack_due > c->ack_sent)
            want_write(c);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c)
            break;
        if (!c->rx_len)
            c->rx_t0 = mono_ns();
        if (c->rx_len + len + 1 > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len + 1)
                cap *= 2;
            char *nb = realloc(c->rx, cap);
            if (!nb)
                return -1;
            c->rx = nb;
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (g.mqtt) {
            mq_receive(c, c->rx_t0);
            break;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            c->rx[c->rx_len] = 0;
            on_message(c, c->rx, c->rx_len, c->rx_t0);
            c->rx_len = 0;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c)
            conn_failed(c, "closed");
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && len >= 2 && g.ndropped < 5)
            fprintf(stderr, "loadclient: %s: server closes with %d %.*s\n",
                    c->login,
                    ((const unsigned char *)in)[0] << 8 |
                        ((const unsigned char *)in)[1],
                    (int)len - 2, (const char *)in + 2);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    { .name = "hashi.v1", .callback = callback, .rx_buffer_size = 8192 },
    { .name = "mqtt", .callback = callback, .rx_buffer_size = 8192 },
    { .name = NULL },
};

/* ---- the creator: POST /api/cases on one keep-alive connection ------------ */

struct https {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

static void https_close(struct https *h)
{
    if (h->ssl) {
        SSL_shutdown(h->ssl);
        SSL_free(h->ssl);
        h->ssl = NULL;
    }
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

static int https_connect(struct https *h)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g.port);
    if (inet_pton(AF_INET, g.host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadclient: --host must be an IPv4 address\n");
        return -1;
    }
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (h->fd < 0 ||
        setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
        connect(h->fd, (struct sockaddr *)&sa, sizeof sa)) {
        perror("loadclient: creator connect");
        https_close(h);
        return -1;
    }
    h->ssl = SSL_new(h->ctx);
    X509_VERIFY_PARAM *param = SSL_get0_param(h->ssl);
    X509_VERIFY_PARAM_set1_ip_asc(param, g.host);
    SSL_set_fd(h->ssl, h->fd);
    if (SSL_connect(h->ssl) != 1) {
        fprintf(stderr, "loadclient: creator TLS: %s\n",
                ERR_error_string(ERR_get_error(), NULL));
        https_close(h);
        return -1;
    }
    return 0;
}

/* One request; reads the whole response (Content-Length).  Returns the
 * HTTP status, or -1 if the connection failed before any answer. */
static int https_post(struct https *h, const char *path, const char *body,
                      char *resp, size_t cap)
{
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, g.host, g.port, g.req_token, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof req)
        return -1;
    if (SSL_write(h->ssl, req, n) != n)
        return -1;
    size_t have = 0, need = 0;
    char *hend = NULL;
    while (!hend || have < need) {
        if (have + 1 >= cap)
            return -1;
        int r = SSL_read(h->ssl, resp + have, (int)(cap - 1 - have));
        if (r <= 0)
            return -1;
        have += (size_t)r;
        resp[have] = 0;
        if (!hend && (hend = strstr(resp, "\r\n\r\n"))) {
            const char *cl = strcasestr(resp, "\r\ncontent-length:");
            size_t blen = cl && cl < hend ? strtoul(cl + 17, NULL, 10) : 0;
            need = (size_t)(hend + 4 - resp) + blen;
        }
    }
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

static void *creator(void *arg)
{
    (void)arg;
    struct https h = { NULL, NULL, -1 };
    char body[512], resp[16384];
    h.ctx = SSL_CTX_new(TLS_client_method());
    if (!h.ctx || SSL_CTX_load_verify_locations(h.ctx, g.ca, NULL) != 1) {
        fprintf(stderr, "loadclient: cannot load %s\n", g.ca);
        g.setup_failed = 1;
        goto out;
    }
    SSL_CTX_set_verify(h.ctx, SSL_VERIFY_PEER, NULL);
    if (!g.mqtt && https_connect(&h)) {
        g.setup_failed = 1;
        goto out;
    }
    g.cpu_t0 = server_cpu_ticks();
    getrusage(RUSAGE_SELF, &g.ru_t0);
    atomic_store(&g.in_create, 1);
    int64_t t0 = mono_ns();
    g.create_t0 = t0;
    int nbad = 0;
    int64_t deadline = t0 + (int64_t)g.duration * 1000000000LL;
    for (int k = 0; k < g.ncases && !atomic_load(&g.stop); k++) {
        int64_t at = t0 + (int64_t)k * 1000000000LL / g.rate;
        /* Bounded: a server slower than the rate gets fewer cases, not a
         * longer run. */
        if (mono_ns() > deadline)
            break;
        g.nsent = k + 1;
        struct timespec ts = { (time_t)(at / 1000000000LL),
                               (long)(at % 1000000000LL) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
               EINTR)
            ;
        if (g.mqtt) {           /* the lws thread publishes it */
            g.sent[k] = mono_ns();
            g.at_ms[k] = (g.sent[k] + g.real_off) / 1000000LL;
            atomic_store(&g.pub_due, k + 1);
            lws_cancel_service(g.ctx);
            continue;
        }
        char spec[128];
        if (g.group)
            snprintf(spec, sizeof spec, "%s-%d", g.specialty,
                     k % (g.n / g.group));
        else
            snprintf(spec, sizeof spec, "%s", g.specialty);
        snprintf(body, sizeof body,
                 "{\"case_id\":\"%s-%d\",\"question\":\"Push benchmark case "
                 "%d\",\"priority\":\"routine\",\"specialty\":\"%s\","
                 "\"patient\":{\"age\":50,\"sex\":\"O\"}}",
                 g.run_id, k, k, spec);
        g.sent[k] = mono_ns();
        int st = https_post(&h, "/api/cases", body, resp, sizeof resp);
        if (st < 0) {           /* the connection went: once more */
            https_close(&h);
            if (!https_connect(&h)) {
                g.sent[k] = mono_ns();
                st = https_post(&h, "/api/cases", body, resp, sizeof resp);
            }
        }
        g.reply[k] = mono_ns();
        g.status[k] = st;
        if (st != 201 && nbad++ < 5) {
            char *b = strstr(resp, "\r\n\r\n");
            fprintf(stderr, "loadclient: case %d: HTTP %d %.300s\n", k, st,
                    st > 0 && b ? b + 4 : "");
        }
    }
    g.create_t1 = mono_ns();
    long t1 = server_cpu_ticks();
    getrusage(RUSAGE_SELF, &g.ru_t1);
    atomic_store(&g.in_create, 0);
    g.cpu_create_ticks = (g.cpu_t0 >= 0 && t1 >= 0) ? t1 - g.cpu_t0 : -1;
out:
    https_close(&h);
    SSL_CTX_free(h.ctx);
    atomic_store(&g.creator_done, 1);
    lws_cancel_service(g.ctx);
    return NULL;
}

/* ---- the lws thread's timer ----------------------------------------------- */

static long expected_pairs(void)
{
    long ok = 0;
    for (int k = 0; k < g.ncases; k++)
        ok += g.status[k] == 201;
    return ok * (long)per_case();
}

/* --idle: the sessions sit still for idle_s; the server's CPU over that
 * time and its RSS at the end are the figures (load (c): what 10,000
 * idle phones cost). */
static void idle_phase(int64_t now)
{
    static int64_t t0;
    static long cpu0;
    if (!t0) {
        t0 = now;
        cpu0 = server_cpu_ticks();
        printf("loadclient: %d connections welcomed in %.2f s; idle for "
               "%d s\n", g.n, (double)(now - g.t_start) / 1e9, g.idle_s);
        fflush(stdout);
        return;
    }
    if (now - t0 < (int64_t)g.idle_s * 1000000000LL)
        return;
    long cpu1 = server_cpu_ticks(), hz = sysconf(_SC_CLK_TCK);
    double secs = (double)(now - t0) / 1e9;
    double pct = cpu0 >= 0 && cpu1 >= 0
                     ? 100.0 * (double)(cpu1 - cpu0) / (double)hz / secs
                     : -1;
    long rss = server_rss_kb();
    printf("\nidle sessions: %d connections for %.0f s: server CPU %.2f%% "
           "of one core, RSS %.1f MB (%.1f KB per session over the "
           "process), %d dropped\n", g.nwelcomed, secs, pct,
           (double)rss / 1024, (double)rss / (g.n ? g.n : 1), g.ndropped);
    printf("RESULT idle_clients=%d\nRESULT idle_s=%.0f\n"
           "RESULT idle_cpu_pct=%.2f\nRESULT idle_rss_mb=%.1f\n"
           "RESULT idle_dropped=%d\n", g.nwelcomed, secs, pct,
           (double)rss / 1024, g.ndropped);
    fflush(stdout);
    g.creator_started = 1;      /* nothing to create: report() skipped */
    g.idle_done = 1;
    atomic_store(&g.stop, 1);
}

static void tick(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    int64_t now = mono_ns();
    launch_more();
    if (g.ack_ms)
        for (int i = 0; i < g.n; i++)
            if (g.conns[i].ack_at && now >= g.conns[i].ack_at) {
                g.conns[i].ack_at = 0;
                if (g.conns[i].ack_due > g.conns[i].ack_sent)
                    want_write(&g.conns[i]);
            }
    if (!g.creator_started) {
        if (g.mqtt && g.nwelcomed == g.n && g.pub.state == C_IDLE) {
            strcpy(g.pub.login, "bench-publisher");
            g.pub.idx = -1;
            open_conn(&g.pub);
            g.inflight--;       /* not one of the N */
        } else if (g.idle_s && g.nwelcomed == g.n) {
            idle_phase(now);
        } else if (g.nwelcomed == g.n &&
                   (!g.mqtt || g.pub.mq_stage == MQ_READY)) {
            g.t_welcomed = now;
            long t = server_cpu_ticks();
            g.cpu_connect_ticks = t >= 0 ? t : -1;
            printf("loadclient: %d connections welcomed in %.2f s\n", g.n,
                   (double)(now - g.t_start) / 1e9);
            fflush(stdout);
            g.creator_started = 1;
            if (pthread_create(&g.creator_th, NULL, creator, NULL)) {
                g.setup_failed = 1;
                atomic_store(&g.stop, 1);
            }
        } else if (g.mqtt && g.nwelcomed == g.n &&
                   now - g.t_start < (int64_t)g.connect_s * 1000000000LL) {
            /* the publisher is connecting */
        } else if (g.next == g.n && !g.nretry && !g.inflight &&
                   g.nopen == g.nwelcomed) {
            fprintf(stderr, "loadclient: only %d of %d connections "
                    "welcomed\n", g.nwelcomed, g.n);
            g.setup_failed = 1;
            atomic_store(&g.stop, 1);
        } else if (now - g.t_start > (int64_t)g.connect_s * 1000000000LL) {
            fprintf(stderr, "loadclient: %d of %d connections welcomed "
                    "after %d s\n", g.nwelcomed, g.n, g.connect_s);
            g.setup_failed = 1;
            atomic_store(&g.stop, 1);
        }
    } else if (atomic_load(&g.creator_done)) {
        if (!g.t_done) {
            g.t_done = now;
            if (getenv("LOADCLIENT_DEBUG"))
                fprintf(stderr, "loadclient: creator done at %.2f s: "
                        "%ld of %ld received\n",
                        (double)(now - g.t_start) / 1e9, g.nreceived,
                        expected_pairs());
        }
        /* wait for the last acks too */
        int acks_out = 0;
        for (int i = 0; i < g.n && !acks_out; i++)
            acks_out = g.conns[i].ack_due > g.conns[i].ack_sent;
        for (int k = 0; g.mqtt && k < g.nsent && !acks_out; k++)
            acks_out = !g.reply[k];     /* a PUBACK still to come */
        if ((g.nreceived >= expected_pairs() && !acks_out) ||
            now - g.t_done > (int64_t)g.grace * 1000000000LL)
            atomic_store(&g.stop, 1);
    }
    if (!atomic_load(&g.stop))
        lws_sul_schedule(g.ctx, 0, &g.tick, tick, TICK_US);
    else    /* else this lws_service() polls on for up to 30 s */
        lws_cancel_service(g.ctx);
}

/* ---- results ---------------------------------------------------------------- */

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[n], in ms. */
static double pct(const int64_t *v, size_t n, double q)
{
    if (!n)
        return NAN;
    size_t r = (size_t)ceil(q * (double)n);
    if (r < 1)
        r = 1;
    return (double)v[r - 1] / 1e6;
}

static double secs(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) +
           (double)(b->tv_usec - a->tv_usec) / 1e6;
}

/* Sorted latencies of one kind over all pairs. */
struct dist {
    int64_t *v;
    size_t n;
};

static void dist_sort(struct dist *d)
{
    qsort(d->v, d->n, sizeof *d->v, cmp64);
}

static int report(void)
{
    size_t n = per_case(), total = (size_t)g.ncases * n + 1;
    struct dist lat = { malloc(sizeof(int64_t) * total), 0 };
    struct dist lsend = { malloc(sizeof(int64_t) * total), 0 };
    struct dist lcommit = { malloc(sizeof(int64_t) * total), 0 };
    struct dist last = { malloc(sizeof(int64_t) * (size_t)(g.ncases + 1)),
                         0 };
    struct dist create = { malloc(sizeof(int64_t) * (size_t)(g.ncases + 1)),
                           0 };
    size_t nneg = 0;
    long missing = 0, cases_ok = 0, cases_failed = 0;
    if (!lat.v || !lsend.v || !lcommit.v || !last.v || !create.v)
        return 2;
    for (int k = 0; k < g.nsent; k++) {
        if (g.status[k] != 201) {
            cases_failed++;
            continue;
        }
        cases_ok++;
        create.v[create.n++] = g.reply[k] - g.sent[k];
        int64_t worst = INT64_MIN, first = INT64_MAX;
        int all = 1;
        for (size_t i = 0; i < n; i++) {
            int64_t t = g.recv[(size_t)k * n + i];
            if (!t) {
                missing++;
                all = 0;
                continue;
            }
            int64_t d = t - g.reply[k];
            nneg += d < 0;
            lat.v[lat.n++] = d;
            lsend.v[lsend.n++] = t - g.sent[k];
            if (g.at_ms[k])
                lcommit.v[lcommit.n++] =
                    t + g.real_off - g.at_ms[k] * 1000000LL;
            if (d > worst)
                worst = d;
            if (t < first)
                first = t;
        }
        if (all)
            last.v[last.n++] = worst;
        if (getenv("LOADCLIENT_DEBUG"))
            fprintf(stderr, "case %d: reply %.2f ms, first %.2f ms, last "
                    "%.2f ms after send\n", k,
                    (double)(g.reply[k] - g.sent[k]) / 1e6,
                    (double)(first - g.sent[k]) / 1e6,
                    (double)(worst + g.reply[k] - g.sent[k]) / 1e6);
    }
    dist_sort(&lat);
    dist_sort(&lsend);
    dist_sort(&lcommit);
    dist_sort(&last);
    dist_sort(&create);

    double wall = (double)(g.create_t1 - g.create_t0) / 1e9;
    double rate = wall > 0 ? (double)cases_ok / wall : 0.0;
    long hz = sysconf(_SC_CLK_TCK);
    double cpu = g.cpu_create_ticks >= 0 && wall > 0
                     ? 100.0 * (double)g.cpu_create_ticks / (double)hz / wall
                     : NAN;
    double ccpu = wall > 0 ? 100.0 * (secs(&g.ru_t0.ru_utime,
                                           &g.ru_t1.ru_utime) +
                                      secs(&g.ru_t0.ru_stime,
                                           &g.ru_t1.ru_stime)) / wall
                           : NAN;
    double connect_s = (double)(g.t_welcomed - g.t_start) / 1e9;
    double connect_cpu =
        g.cpu_connect_ticks >= 0 ? (double)g.cpu_connect_ticks / (double)hz
                                 : NAN;
    double rss = (double)atomic_load(&g.rss_max_kb) / 1024.0;

    printf("\npush fan-out: %d clients; %ld cases created of %d planned "
           "(%.2f/s over %.1f s)%s, %ld failed\n", g.n, cases_ok, g.ncases,
           rate, wall, g.nsent < g.ncases ? " — the server could not keep "
           "the rate" : "", cases_failed);
    printf("  create reply -> event receipt, %zu pairs:\n"
           "    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  "
           "max %.2f ms  min %.2f ms\n", lat.n, pct(lat.v, lat.n, 0.5),
           pct(lat.v, lat.n, 0.9), pct(lat.v, lat.n, 0.99),
           pct(lat.v, lat.n, 0.999), pct(lat.v, lat.n, 1.0),
           lat.n ? (double)lat.v[0] / 1e6 : NAN);
    printf("    %zu pairs (%.1f%%) arrived before their create reply\n",
           nneg, lat.n ? 100.0 * (double)nneg / (double)lat.n : 0.0);
    printf("  commit (event `at`) -> receipt: p50 %.1f ms  p99 %.1f ms  "
           "max %.1f ms\n", pct(lcommit.v, lcommit.n, 0.5),
           pct(lcommit.v, lcommit.n, 0.99), pct(lcommit.v, lcommit.n, 1.0));
    printf("  create request sent -> receipt: p50 %.2f ms  p99 %.2f ms  "
           "max %.2f ms\n", pct(lsend.v, lsend.n, 0.5),
           pct(lsend.v, lsend.n, 0.99), pct(lsend.v, lsend.n, 1.0));
    printf("  slowest client of a case (from reply): p50 %.2f ms  p99 %.2f "
           "ms\n", pct(last.v, last.n, 0.5), pct(last.v, last.n, 0.99));
    printf("  create round trip (POST /api/cases): p50 %.2f ms  p99 %.2f "
           "ms  max %.2f ms\n", pct(create.v, create.n, 0.5),
           pct(create.v, create.n, 0.99), pct(create.v, create.n, 1.0));
    printf("  missing %ld  duplicates %ld  other events %ld  dropped "
           "connections %d  server errors %ld  strays %ld\n", missing, g.ndup,
           g.nother, g.ndropped, g.nerrors, g.nstray);
    printf("  server: RSS max %.1f MB, CPU %.1f%% of one core during "
           "creates; %d connections welcomed in %.2f s (server CPU %.2f s)"
           "\n", rss, cpu, g.n, connect_s, connect_cpu);
    printf("  this client: CPU %.1f%% of one core during creates; acks %s"
           "\n", ccpu, g.ack_ms ? "batched" : "per event");

    printf("RESULT clients=%d\nRESULT cases=%d\nRESULT cases_ok=%ld\n"
           "RESULT cases_failed=%ld\nRESULT rate=%.2f\nRESULT pairs=%zu\n"
           "RESULT p50_ms=%.2f\nRESULT p90_ms=%.2f\nRESULT p99_ms=%.2f\n"
           "RESULT p999_ms=%.2f\nRESULT max_ms=%.2f\nRESULT early_pct=%.1f\n"
           "RESULT commit_p50_ms=%.1f\nRESULT commit_p99_ms=%.1f\n"
           "RESULT send_p50_ms=%.2f\nRESULT send_p99_ms=%.2f\n"
           "RESULT last_p99_ms=%.2f\n"
           "RESULT create_p50_ms=%.2f\nRESULT create_p99_ms=%.2f\n"
           "RESULT missing=%ld\nRESULT duplicates=%ld\nRESULT dropped=%d\n"
           "RESULT rss_max_mb=%.1f\nRESULT cpu_pct=%.1f\n"
           "RESULT client_cpu_pct=%.1f\nRESULT connect_s=%.2f\n"
           "RESULT ack=%s\nRESULT event_bytes=%ld\nRESULT strays=%ld\n"
           "RESULT per_case=%zu\n",
           g.n, g.ncases, cases_ok, cases_failed, rate, lat.n,
           pct(lat.v, lat.n, 0.5), pct(lat.v, lat.n, 0.9),
           pct(lat.v, lat.n, 0.99), pct(lat.v, lat.n, 0.999),
           pct(lat.v, lat.n, 1.0),
           lat.n ? 100.0 * (double)nneg / (double)lat.n : 0.0,
           pct(lcommit.v, lcommit.n, 0.5), pct(lcommit.v, lcommit.n, 0.99),
           pct(lsend.v, lsend.n, 0.5), pct(lsend.v, lsend.n, 0.99),
           pct(last.v, last.n, 0.99), pct(create.v, create.n, 0.5),
           pct(create.v, create.n, 0.99), missing, g.ndup, g.ndropped, rss,
           cpu, ccpu, connect_s, g.ack_ms ? "1s" : "each",
           g.mqtt ? (long)g.msg_size : g.ev_count ? g.ev_bytes / g.ev_count
                                                  : 0L,
           g.nstray, n);
    free(lat.v);
    free(lsend.v);
    free(lcommit.v);
    free(last.v);
    free(create.v);
    return missing || g.nstray || cases_failed || !cases_ok ? 1 : 0;
}

/* ---- set-up ------------------------------------------------------------------- */

static int read_tokens(void)
{
    FILE *f = fopen(g.tokens, "r");
    char login[64], token[TOKEN_MAX + 1];
    int cap = 0, first = 1;
    if (!f) {
        perror(g.tokens);
        return -1;
    }
    while (fscanf(f, "%63s %256s", login, token) == 2) {
        if (first) {            /* the requester */
            strcpy(g.req_login, login);
            strcpy(g.req_token, token);
            first = 0;
            continue;
        }
        if (g.max_clients && g.n == g.max_clients)
            break;
        if (g.n == cap) {
            cap = cap ? cap * 2 : 1024;
            struct conn *nc = realloc(g.conns, sizeof *nc * (size_t)cap);
            if (!nc) {
                fclose(f);
                return -1;
            }
            g.conns = nc;
        }
        struct conn *c = &g.conns[g.n];
        memset(c, 0, sizeof *c);
        c->idx = g.n++;
        strcpy(c->login, login);
        strcpy(c->token, token);
    }
    fclose(f);
    if (first || !g.n) {
        fprintf(stderr, "loadclient: %s holds no requester and clients\n",
                g.tokens);
        return -1;
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: loadclient --port P --ca CERT --tokens FILE "
            "[--host 127.0.0.1]\n"
            "         [--clients N] [--rate 10] [--duration 30] "
            "[--specialty loadtest] [--group-size G]\n"
            "         [--server-pid PID] [--ack-ms 0] [--grace 10] "
            "[--batch 100] [--run-id ID] [--connect-s 90]\n"
            "  tokens: lines 'LOGIN TOKEN', the requester first\n"
            "  ack-ms: 0 acks each event at once; M > 0 acks the highest "
            "seq every M ms\n"
            "  --mqtt 1 [--msg-size B]: the same load on an MQTT broker's "
            "WebSocket listener\n"
            "  --idle S: connect, then S s without creates: the server's "
            "idle CPU and RSS\n");
    return 2;
}

int main(int argc, char **argv)
{
    static char run_id[32];
    g.host = "127.0.0.1";
    g.specialty = "loadtest";
    g.connect_s = 90;
    g.rate = 10;
    g.duration = 30;
    g.grace = 10;
    g.batch = 100;
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (!strcmp(k, "--host"))
            g.host = v;
        else if (!strcmp(k, "--port"))
            g.port = atoi(v);
        else if (!strcmp(k, "--ca"))
            g.ca = v;
        else if (!strcmp(k, "--tokens"))
            g.tokens = v;
        else if (!strcmp(k, "--clients"))
            g.max_clients = atoi(v);
        else if (!strcmp(k, "--rate"))
            g.rate = atoi(v);
        else if (!strcmp(k, "--duration"))
            g.duration = atoi(v);
        else if (!strcmp(k, "--specialty"))
            g.specialty = v;
        else if (!strcmp(k, "--group-size"))
            g.group = atoi(v);
        else if (!strcmp(k, "--connect-s"))
            g.connect_s = atoi(v);
        else if (!strcmp(k, "--server-pid"))
            g.server_pid = atoi(v);
        else if (!strcmp(k, "--ack-ms"))
            g.ack_ms = atoi(v);
        else if (!strcmp(k, "--grace"))
            g.grace = atoi(v);
        else if (!strcmp(k, "--batch"))
            g.batch = atoi(v);
        else if (!strcmp(k, "--run-id"))
            g.run_id = v;
        else if (!strcmp(k, "--mqtt"))
            g.mqtt = atoi(v);
        else if (!strcmp(k, "--msg-size"))
            g.msg_size = atoi(v);
        else if (!strcmp(k, "--idle"))
            g.idle_s = atoi(v);
        else
            return usage();
    }
    if (!g.port || !g.ca || !g.tokens || g.rate < 1 || g.duration < 1 ||
        g.batch < 1 || g.ack_ms < 0 || g.max_clients < 0 || g.connect_s < 1)
        return usage();
    if (!g.run_id) {
        snprintf(run_id, sizeof run_id, "pb%lx%x", (unsigned long)time(NULL),
                 (unsigned)getpid());
        g.run_id = run_id;
    }
    signal(SIGPIPE, SIG_IGN);
    if (read_tokens())
        return 2;
    if (g.group < 0 || (g.group && (g.mqtt || g.n % g.group))) {
        fprintf(stderr, "loadclient: --group-size must divide the %d "
                "clients (and is not for --mqtt)\n", g.n);
        return usage();
    }
    g.ncases = g.rate * g.duration;
    g.recv = calloc((size_t)g.ncases * per_case(), sizeof *g.recv);
    g.sent = calloc((size_t)g.ncases, sizeof *g.sent);
    g.reply = calloc((size_t)g.ncases, sizeof *g.reply);
    g.status = calloc((size_t)g.ncases, sizeof *g.status);
    g.at_ms = calloc((size_t)g.ncases, sizeof *g.at_ms);
    g.retry = calloc((size_t)g.n, sizeof *g.retry);
    if (!g.recv || !g.sent || !g.reply || !g.status || !g.retry || !g.at_ms)
        return 2;

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = g.ca;
    info.fd_limit_per_thread = (unsigned)g.n + 64;
    info.timeout_secs = 30;
    /* No lws validity timers (as the server): each frame received would
     * re-file one in a sorted list as long as the connections. */
    static const lws_retry_bo_t no_validity = { 0 };
    info.retry_and_idle_policy = &no_validity;
    struct ev_loop *loop = NULL;
    void *loops[1] = { NULL };
    if (!getenv("LOADCLIENT_POLL")) {
        loop = loops[0] = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = loops;
    }
    g.ctx = lws_create_context(&info);
    if (!g.ctx) {
        fprintf(stderr, "loadclient: lws_create_context failed\n");
        return 2;
    }
    pthread_create(&g.sampler_th, NULL, sampler, NULL);
    g.t_start = mono_ns();
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    g.real_off = (int64_t)rt.tv_sec * 1000000000LL + rt.tv_nsec - mono_ns();
    printf("loadclient: run %s: %d clients, %d cases at %d/s, as %s\n",
           g.run_id, g.n, g.ncases, g.rate, g.req_login);
    fflush(stdout);
    launch_more();
    lws_sul_schedule(g.ctx, 0, &g.tick, tick, TICK_US);
    while (!atomic_load(&g.stop)) {
        if (loop)
            ev_run(loop, EVRUN_ONCE);
        else if (lws_service(g.ctx, 0) < 0)
            break;
    }
    atomic_store(&g.stop, 1);
    if (g.creator_started && !g.idle_done)
        pthread_join(g.creator_th, NULL);
    pthread_join(g.sampler_th, NULL);
    int64_t t_end = mono_ns();
    int rc = g.setup_failed ? 2 : g.idle_done ? 0 : report();
    fflush(stdout);
    lws_context_destroy(g.ctx);
    if (loop)
        ev_loop_destroy(loop);
    if (getenv("LOADCLIENT_DEBUG"))
        fprintf(stderr, "loadclient: creates ended %.2f s, stop %.2f s, "
                "exit %.2f s after start\n",
                (double)(g.create_t1 - g.t_start) / 1e9,
                (double)(t_end - g.t_start) / 1e9,
                (double)(mono_ns() - g.t_start) / 1e9);
    return rc;
}
