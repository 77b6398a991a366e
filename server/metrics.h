/*
 * metrics — counters for /metrics (Prometheus text format).
 *
 * Plain atomics: the DICOM listener thread and the lws thread both bump
 * them without a lock.  One struct metrics lives in struct server.
 */
#ifndef HASHI_METRICS_H
#define HASHI_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Render-time histogram buckets, in seconds (upper bounds). */
#define METRICS_RENDER_BUCKETS 10

struct metrics {
    atomic_uint_fast64_t instances_received;   /* stored, new */
    atomic_uint_fast64_t instances_duplicate;
    atomic_uint_fast64_t instances_conflict;
    atomic_uint_fast64_t instances_rejected;   /* invalid input */
    atomic_uint_fast64_t bytes_received;       /* of stored instances */
    atomic_uint_fast64_t http_requests;
    atomic_uint_fast64_t logins_failed;
    atomic_uint_fast64_t render_count;
    atomic_uint_fast64_t render_micros;        /* sum */
    atomic_uint_fast64_t render_bucket[METRICS_RENDER_BUCKETS];
};

void metrics_init(struct metrics *m);
/* Count one store outcome (enum store_outcome, or -1 for a reject). */
void metrics_stored(struct metrics *m, int outcome, uint64_t bytes);
void metrics_render(struct metrics *m, double seconds);
/* The Prometheus text exposition, malloc'd (caller frees). */
char *metrics_text(struct metrics *m, size_t *len);

#endif
