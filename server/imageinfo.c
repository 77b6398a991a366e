/*
 * imageinfo — a series' geometry and one pixel's value for the web
 * viewer (see imageinfo.h).
 *
 * Attributes are read through the adapter's DICOM JSON (dicom_write_json
 * into memory, then jansson), so no new DCMTK code is needed and the
 * numbers are exactly what the metadata route serves; a pixel comes from
 * dicom_frame_get decoded to native little endian, so compressed files
 * answer too.  Each request is one job on the worker pool: the lws
 * thread checks the request and the scope, the worker reads the files,
 * the done callback answers (or frees everything if the connection went).
 */
#include "imageinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../proto/dicom.h"
#include "dicomweb.h"
#include "jobs.h"
#include "server.h"

struct ijob {
    struct job job;
    struct http_req *r;         /* NULL once the request is gone */
    int running;
    int probe;                  /* else geometry */
    struct store_instance *list;
    size_t n;
    int frame, x, y;            /* probe: frame from 1, pixel */
    int rc;
    struct err e;
    json_t *out;
};

static void ijob_destroy(struct ijob *j)
{
    free(j->list);
    json_decref(j->out);
    free(j);
}

static void ijob_free(void *p)
{
    struct ijob *j = p;

    if (j->running) {
        j->r = NULL;            /* ijob_done frees it */
        return;
    }
    ijob_destroy(j);
}

/* ---- reading files (worker thread) -------------------------------------- */

/* The data set of the file at path as DICOM JSON (new reference). */
static json_t *dataset(const char *path, struct err *e)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t je;
    json_t *j = NULL;
    FILE *f = open_memstream(&buf, &len);

    if (!f) {
        err_set(e, ERR_INTERNAL, "open_memstream: %s", strerror(errno));
        return NULL;
    }
    if (dicom_write_json(path, "", f, e) < 0) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    j = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!json_is_object(j)) {
        json_decref(j);
        err_set(e, ERR_INTERNAL, "attributes of %s: %s", path, je.text);
        return NULL;
    }
    return j;
}

/* Value i of attribute tag ("00280030") as a number; DS and IS may come
 * as strings. */
static int num(json_t *ds, const char *tag, size_t i, double *out)
{
    json_t *v = json_array_get(json_object_get(json_object_get(ds, tag),
                                               "Value"), i);
    char *end;

    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        *out = strtod(json_string_value(v), &end);
        return end != json_string_value(v) ? 0 : -1;
    }
    return -1;
}

static const char *str(json_t *ds, const char *tag)
{
    return json_string_value(json_array_get(json_object_get(
        json_object_get(ds, tag), "Value"), 0));
}

/* [v0..vn-1] of tag, or null when any is missing. */
static json_t *nums(json_t *ds, const char *tag, size_t n)
{
    json_t *a = json_array();
    double v;

    for (size_t i = 0; i < n; i++) {
        if (num(ds, tag, i, &v) < 0) {
            json_decref(a);
            return json_null();
        }
        json_array_append_new(a, json_real(v));
    }
    return a;
}

static json_t *num_or_null(json_t *ds, const char *tag)
{
    double v;

    return num(ds, tag, 0, &v) == 0 ? json_real(v) : json_null();
}

static int geometry_work(struct ijob *j)
{
    json_t *arr = json_array();

    j->out = json_pack("{s:s, s:s, s:o}", "study", j->list[0].study_uid,
                       "series", j->list[0].series_uid, "instances", arr);
    for (size_t i = 0; i < j->n; i++) {
        const struct store_instance *in = &j->list[i];
        json_t *ds = dataset(in->path, &j->e);
        double rows = 0, cols = 0, number = 0, wc, ww;
        if (!ds)
            return j->e.code ? j->e.code : ERR_INTERNAL;
        num(ds, "00280010", 0, &rows);
        num(ds, "00280011", 0, &cols);
        num(ds, "00200013", 0, &number);
        json_array_append_new(arr, json_pack(
            "{s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o}",
            "sop", in->sop_uid, "number", (int)number,
            "frames", in->frames > 0 ? in->frames : 1,
            "rows", (int)rows, "columns", (int)cols,
            "pixel_spacing", nums(ds, "00280030", 2),
            "orientation", nums(ds, "00200037", 6),
            "position", nums(ds, "00200032", 3),
            "slice_location", num_or_null(ds, "00201041"),
            "window", num(ds, "00281050", 0, &wc) == 0 &&
                      num(ds, "00281051", 0, &ww) == 0
                ? json_pack("[f, f]", wc, ww) : json_null()));
        json_decref(ds);
    }
    return 0;
}

/* The stored value at byte offset off of a native frame: bits allocated
 * 8, 16 or 32, two's complement of `stored` bits when signed. */
static int sample(const unsigned char *d, size_t len, size_t off, int alloc,
                  int stored, int is_signed, double *out, struct err *e)
{
    size_t bytes = (size_t)alloc / 8;
    uint64_t u = 0;

    if (alloc != 8 && alloc != 16 && alloc != 32)
        return err_set(e, ERR_UNSUPPORTED, "BitsAllocated %d", alloc);
    if (off + bytes > len)
        return err_set(e, ERR_INVALID, "the frame is shorter than its "
                       "Rows x Columns");
    for (size_t b = 0; b < bytes; b++)
        u |= (uint64_t)d[off + b] << (8 * b);
    if (stored < 1 || stored > alloc)
        stored = alloc;
    u &= stored == 64 ? ~0ull : (1ull << stored) - 1;
    if (is_signed && (u >> (stored - 1)) & 1)
        *out = (double)u - (double)(1ull << stored);
    else
        *out = (double)u;
    return 0;
}

static int probe_work(struct ijob *j)
{
    const struct store_instance *in = &j->list[0];
    json_t *ds = dataset(in->path, &j->e);
    double rows = 0, cols = 0, spp = 1, alloc = 0, bits = 0, sign = 0;
    double slope = 1, icpt = 0, stored = 0;
    const char *type, *modality;
    unsigned char *d = NULL;
    size_t len = 0;
    char ts[65];
    int rc;

    if (!ds)
        return j->e.code ? j->e.code : ERR_INTERNAL;
    num(ds, "00280010", 0, &rows);
    num(ds, "00280011", 0, &cols);
    num(ds, "00280002", 0, &spp);
    num(ds, "00280100", 0, &alloc);
    num(ds, "00280101", 0, &bits);
    num(ds, "00280103", 0, &sign);
    num(ds, "00281053", 0, &slope);
    num(ds, "00281052", 0, &icpt);
    type = str(ds, "00281054");
    modality = str(ds, "00080060");
    if (spp != 1) {
        rc = err_set(&j->e, ERR_UNSUPPORTED, "the probe reads greyscale "
                     "images; this one has %g samples per pixel", spp);
    } else if (j->x >= (int)cols || j->y >= (int)rows) {
        rc = err_set(&j->e, ERR_INVALID, "x must be 0..%d and y 0..%d "
                     "(the image is %d x %d)", (int)cols - 1, (int)rows - 1,
                     (int)cols, (int)rows);
    } else {
        rc = dicom_frame_get(in->path, j->frame - 1, 1, &d, &len, ts, &j->e);
    }
    if (!rc)
        rc = sample(d, len, ((size_t)j->y * (size_t)cols + (size_t)j->x) *
                    ((size_t)alloc / 8), (int)alloc, (int)bits, sign == 1,
                    &stored, &j->e);
    if (!rc)
        j->out = json_pack("{s:i, s:i, s:i, s:f, s:f, s:s?}", "x", j->x,
                           "y", j->y, "frame", j->frame, "stored", stored,
                           "value", stored * slope + icpt, "unit",
                           type && *type ? type
                           : modality && !strcmp(modality, "CT") ? "HU"
                           : NULL);
    free(d);
    json_decref(ds);
    return rc;
}

static void ijob_work(void *ctx, void *arg)
{
    struct ijob *j = arg;

    (void)ctx;
    j->rc = j->probe ? probe_work(j) : geometry_work(j);
    if (!j->rc && !j->out)
        j->rc = err_set(&j->e, ERR_INTERNAL, "out of memory");
}

/* ---- answering (lws thread) --------------------------------------------- */

static void ijob_respond(struct ijob *j)
{
    struct http_req *r = j->r;
    const char *object = j->probe ? j->list[0].sop_uid
                                  : j->list[0].series_uid;
    const char *action = j->probe ? "probe" : "geometry";

    if (j->rc < 0) {
        dicomweb_audit(r, "retrieve", object, j->rc == ERR_NOTFOUND ?
                       "not_found" : "error", j->e.msg);
        if (j->rc == ERR_INVALID)
            http_respond_error(r, 400, "invalid", "%s", j->e.msg);
        else if (j->rc == ERR_UNSUPPORTED)
            http_respond_error(r, 422, "unsupported", "%s", j->e.msg);
        else if (j->rc == ERR_NOTFOUND)
            http_respond_error(r, 404, "not_found", "%s", j->e.msg);
        else
            http_respond_err(r, &j->e);
        return;
    }
    dicomweb_audit(r, "retrieve", object, "ok", action);
    http_add_header(r, "Cache-Control", "private, no-store");
    http_respond_json(r, 200, j->out);
    j->out = NULL;
}

static void ijob_done(void *arg)
{
    struct ijob *j = arg;

    j->running = 0;
    if (!j->r) {
        ijob_destroy(j);
        return;
    }
    ijob_respond(j);
}

static void ijob_submit(struct http_req *r, struct ijob *j)
{
    http_set_state(r, j, ijob_free);
    if (!r->srv->jobs) {
        ijob_work(NULL, j);
        j->r = r;
        ijob_respond(j);
        return;
    }
    j->r = r;
    j->running = 1;
    http_defer(r);
    jobs_submit(r->srv->jobs, &j->job, ijob_work, ijob_done, j);
}

void imageinfo_geometry(struct http_req *r, const char *study,
                        const char *series)
{
    struct ijob *j = calloc(1, sizeof(*j));

    if (!j) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    if (dicomweb_instances(r, "retrieve", series, study, series, NULL,
                           &j->list, &j->n) < 0) {
        ijob_destroy(j);
        return;
    }
    ijob_submit(r, j);
}

/* Query parameter name as an integer 0..1e6 into *out; -1 answered 400. */
static int coord(struct http_req *r, const char *name, int *out)
{
    const char *v = http_param(r, name);
    char *end;
    long n;

    if (!v || !*v) {
        http_respond_error(r, 400, "invalid", "%s is required (a pixel "
                           "column x and row y, from 0)", name);
        return -1;
    }
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || *end || n < 0 || n > 1000000) {
        http_respond_error(r, 400, "invalid", "%s must be a pixel index "
                           "from 0, not \"%.40s\"", name, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

void imageinfo_probe(struct http_req *r, const char *study,
                     const char *series, const char *sop, const char *frame)
{
    struct ijob *j;
    int x, y, f = 1;

    if (frame && dicomweb_frame_number(r, frame, &f) < 0)
        return;
    if (coord(r, "x", &x) < 0 || coord(r, "y", &y) < 0)
        return;
    if (!(j = calloc(1, sizeof(*j)))) {
        http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    if (dicomweb_instances(r, "retrieve", sop, study, series, sop, &j->list,
                           &j->n) < 0) {
        ijob_destroy(j);
        return;
    }
    if (f > (j->list[0].frames > 0 ? j->list[0].frames : 1)) {
        http_respond_error(r, 404, "not_found", "frame %d of %d", f,
                           j->list[0].frames);
        ijob_destroy(j);
        return;
    }
    j->probe = 1;
    j->frame = f;
    j->x = x;
    j->y = y;
    ijob_submit(r, j);
}
