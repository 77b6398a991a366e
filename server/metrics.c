/*
 * metrics — see metrics.h.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "store.h"

static const double render_bounds[METRICS_RENDER_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0
};

void metrics_init(struct metrics *m)
{
    atomic_init(&m->instances_received, 0);
    atomic_init(&m->instances_duplicate, 0);
    atomic_init(&m->instances_conflict, 0);
    atomic_init(&m->instances_rejected, 0);
    atomic_init(&m->bytes_received, 0);
    atomic_init(&m->http_requests, 0);
    atomic_init(&m->logins_failed, 0);
    atomic_init(&m->render_count, 0);
    atomic_init(&m->render_micros, 0);
    for (int i = 0; i < METRICS_RENDER_BUCKETS; i++)
        atomic_init(&m->render_bucket[i], 0);
}

void metrics_stored(struct metrics *m, int outcome, uint64_t bytes)
{
    switch (outcome) {
    case STORE_STORED:
        atomic_fetch_add(&m->instances_received, 1);
        atomic_fetch_add(&m->bytes_received, bytes);
        break;
    case STORE_DUPLICATE:
        atomic_fetch_add(&m->instances_duplicate, 1);
        break;
    case STORE_CONFLICT:
        atomic_fetch_add(&m->instances_conflict, 1);
        break;
    default:
        atomic_fetch_add(&m->instances_rejected, 1);
    }
}

void metrics_render(struct metrics *m, double seconds)
{
    atomic_fetch_add(&m->render_count, 1);
    atomic_fetch_add(&m->render_micros, (uint64_t)(seconds * 1e6));
    for (int i = 0; i < METRICS_RENDER_BUCKETS; i++)
        if (seconds <= render_bounds[i])
            atomic_fetch_add(&m->render_bucket[i], 1);
}

char *metrics_text(struct metrics *m, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
#define COUNTER(name, help, field)                                          \
    fprintf(f, "# HELP " name " " help "\n# TYPE " name " counter\n"        \
            name " %llu\n", (unsigned long long)atomic_load(&m->field))
    COUNTER("hashi_instances_received_total",
            "New instances stored durably.", instances_received);
    COUNTER("hashi_instances_duplicate_total",
            "Instances received again with identical bytes.",
            instances_duplicate);
    COUNTER("hashi_instances_conflict_total",
            "Instances whose UID exists with other bytes (kept aside).",
            instances_conflict);
    COUNTER("hashi_instances_rejected_total",
            "Instances refused as invalid.", instances_rejected);
    COUNTER("hashi_received_bytes_total",
            "Bytes of newly stored instances.", bytes_received);
    COUNTER("hashi_http_requests_total", "HTTP requests.", http_requests);
    COUNTER("hashi_logins_failed_total", "Failed logins.", logins_failed);
#undef COUNTER
    fprintf(f, "# HELP hashi_render_seconds Time to render one frame.\n"
               "# TYPE hashi_render_seconds histogram\n");
    for (int i = 0; i < METRICS_RENDER_BUCKETS; i++)
        fprintf(f, "hashi_render_seconds_bucket{le=\"%g\"} %llu\n",
                render_bounds[i],
                (unsigned long long)atomic_load(&m->render_bucket[i]));
    unsigned long long n = atomic_load(&m->render_count);
    fprintf(f, "hashi_render_seconds_bucket{le=\"+Inf\"} %llu\n", n);
    fprintf(f, "hashi_render_seconds_sum %.6f\n",
            (double)atomic_load(&m->render_micros) / 1e6);
    fprintf(f, "hashi_render_seconds_count %llu\n", n);
    fclose(f);
    if (len)
        *len = size;
    return buf;
}
