/*
 * demo — see demo.h.  The phantom is a stack of ellipsoids painted
 * outside in (each layer over the previous one), sampled at pixel centres
 * on a 512 x 512 grid over a 250 mm field of view, with Gaussian noise
 * from a seeded generator inside the field of view, so the same study
 * spec always gives the same bytes.  Geometry is DICOM's patient frame:
 * x towards the patient's left (columns), y posterior (rows), z superior;
 * slices run from the vertex down, 5 mm apart.
 */
#include "demo.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../proto/dicom.h"
#include "../proto/log.h"
#include "../proto/msg.h"
#include "../proto/util.h"
#include "access.h"
#include "auth.h"
#include "cases.h"
#include "gateway.h"
#include "server.h"
#include "store.h"

#define SIZE 512
#define FOV_MM 250.0
#define THICK_MM 5.0
#define TOP_MM 95.0                 /* upper edge of the first slice */
#define INTERCEPT (-1024.0)
#define NOISE_HU 4.0
#define AIR_HU (-1000.0)

struct ellipsoid {
    double hu, c[3], r[3];
};

/* The head: the skin ellipsoid, and the layers under it as depths. */
static const double head_c[3] = { 0, 0, -10 }, head_r[3] = { 74, 94, 105 };
static const struct {
    double hu, depth;
} shells[] = {
    { 40, 0 },          /* scalp */
    { 1000, 4 },        /* outer table */
    { 800, 6 },         /* diploe */
    { 1000, 9 },        /* inner table */
    { 8, 11 },          /* CSF over the brain */
    { 38, 12.5 },       /* cortex (grey matter) */
    { 30, 17 },         /* white matter */
};
static const struct ellipsoid inner[] = {
    { 36, { -20, 2, 8 }, { 9, 14, 10 } },       /* right basal ganglia */
    { 36, { 20, 2, 8 }, { 9, 14, 10 } },        /* left basal ganglia */
    { 8, { -11, -4, 18 }, { 6, 30, 16 } },      /* right lateral ventricle */
    { 8, { 11, -4, 18 }, { 6, 30, 16 } },       /* left lateral ventricle */
    { 8, { 0, 12, -2 }, { 2.5, 14, 10 } },      /* third ventricle */
};

#define MAX_FINDINGS 2
/* One study: who, what, and its finding (painted last, edema first). */
struct study_spec {
    const char *seed;               /* UIDs and noise derive from it */
    int random_uids;                /* the live study: fresh each time */
    const char *patient_name, *patient_id, *birth_date, *sex;
    const char *date, *time, *accession, *description;
    int slices;
    struct ellipsoid finding[MAX_FINDINGS];
};

static const struct study_spec stat_study = {
    .seed = "hashi demo: stat head CT",
    .patient_name = "DEMO^STROKE", .patient_id = "DEMO-0001",
    .birth_date = "19590314", .sex = "M",
    .date = "20260101", .time = "093000", .accession = "DEMO0001",
    .description = "CT HEAD WO CONTRAST (DEMO, synthetic)",
    .slices = DEMO_SLICES,
    .finding = {
        { 24, { -30, -20, 22 }, { 15, 17, 13 } },   /* edema */
        { 68, { -30, -20, 22 }, { 9, 11, 8 } },     /* acute bleed, right
                                                       frontal */
    },
};

static const struct study_spec routine_study = {
    .seed = "hashi demo: routine head CT",
    .patient_name = "DEMO^HEADACHE", .patient_id = "DEMO-0002",
    .birth_date = "19680702", .sex = "F",
    .date = "20251229", .time = "141500", .accession = "DEMO0002",
    .description = "CT HEAD WO CONTRAST (DEMO, synthetic)",
    .slices = DEMO_SLICES,
    .finding = {
        { 12, { 26, 4, 12 }, { 4, 6, 5 } },         /* old lacune, left
                                                       lentiform */
    },
};

/* The instance number the routine case's key image points at: the
 * lacune's slice (z = 12.5 mm). */
#define ROUTINE_KEY_SLICE 17

/* ---- the phantom ------------------------------------------------------ */

/* xorshift64*: small, fast and the same everywhere. */
static double rnd_unit(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return ((*s * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static double rnd_gauss(uint64_t *s)
{
    double u = rnd_unit(s), v = rnd_unit(s);
    return sqrt(-2.0 * log(u > 0 ? u : 1e-300)) * cos(2 * M_PI * v);
}

static uint64_t seed_of(const char *text, int slice)
{
    char buf[256], hex[65];
    snprintf(buf, sizeof buf, "%s/%d", text, slice);
    sha256_hex(buf, strlen(buf), hex);
    hex[16] = 0;
    uint64_t v = strtoull(hex, NULL, 16);
    return v ? v : 1;           /* xorshift's one forbidden state */
}

/* Paint el's section at height z over img (HU, SIZE x SIZE). */
static void paint(float *img, const struct ellipsoid *el, double z)
{
    double dz = (z - el->c[2]) / el->r[2], reach = 1 - dz * dz;
    if (el->r[2] <= 0 || reach <= 0)
        return;
    double sp = FOV_MM / SIZE;
    for (int row = 0; row < SIZE; row++) {
        double y = (row - (SIZE - 1) / 2.0) * sp;
        double fy = (y - el->c[1]) / el->r[1];
        double left = reach - fy * fy;
        if (left <= 0)
            continue;
        /* the columns inside: |x - cx| <= rx * sqrt(left) */
        double half = el->r[0] * sqrt(left);
        int c0 = (int)ceil((el->c[0] - half) / sp + (SIZE - 1) / 2.0);
        int c1 = (int)floor((el->c[0] + half) / sp + (SIZE - 1) / 2.0);
        if (c0 < 0)
            c0 = 0;
        if (c1 > SIZE - 1)
            c1 = SIZE - 1;
        for (int col = c0; col <= c1; col++)
            img[row * SIZE + col] = (float)el->hu;
    }
}

/* Slice i of spec as stored values (HU - INTERCEPT). */
static void slice_pixels(const struct study_spec *spec, int i, float *hu,
                         int16_t *out)
{
    double z = TOP_MM - (i + 0.5) * THICK_MM, sp = FOV_MM / SIZE;
    for (int k = 0; k < SIZE * SIZE; k++)
        hu[k] = (float)AIR_HU;
    for (size_t k = 0; k < sizeof shells / sizeof *shells; k++) {
        struct ellipsoid el = { shells[k].hu, { head_c[0], head_c[1],
                                                head_c[2] }, { 0 } };
        for (int d = 0; d < 3; d++)
            el.r[d] = head_r[d] - shells[k].depth;
        paint(hu, &el, z);
    }
    for (size_t k = 0; k < sizeof inner / sizeof *inner; k++)
        paint(hu, &inner[k], z);
    for (int k = 0; k < MAX_FINDINGS; k++)
        if (spec->finding[k].r[0] > 0)
            paint(hu, &spec->finding[k], z);
    uint64_t rng = seed_of(spec->seed, i);
    double rad2 = (FOV_MM / 2) * (FOV_MM / 2);
    for (int row = 0; row < SIZE; row++) {
        double y = (row - (SIZE - 1) / 2.0) * sp;
        for (int col = 0; col < SIZE; col++) {
            double x = (col - (SIZE - 1) / 2.0) * sp, v = AIR_HU;
            if (x * x + y * y <= rad2)
                v = hu[row * SIZE + col] + NOISE_HU * rnd_gauss(&rng);
            out[row * SIZE + col] = (int16_t)lrint(v - INTERCEPT);
        }
    }
}

/* ---- writing a study -------------------------------------------------- */

/* Where each slice goes: a file made by the sink, written, handed on. */
typedef int (*slice_sink)(void *arg, int i, const struct dcm_ct_slice *sl,
                          struct err *e);

struct study_uids {
    char study[65], series[65], frame_of_ref[65];
};

static int uid_for(const struct study_spec *spec, const char *what, int i,
                   char out[65], struct err *e)
{
    if (spec->random_uids)
        return dicom_uid_new(out, e);
    char text[256];
    snprintf(text, sizeof text, "%s/%s/%d", spec->seed, what, i);
    dicom_uid_from_text(text, out);
    return 0;
}

static int study_uids_of(const struct study_spec *spec, struct study_uids *u,
                         struct err *e)
{
    int rc = uid_for(spec, "study", 0, u->study, e);
    if (!rc)
        rc = uid_for(spec, "series", 0, u->series, e);
    if (!rc)
        rc = uid_for(spec, "frame of reference", 0, u->frame_of_ref, e);
    return rc;
}

static int write_study(const struct study_spec *spec,
                       const struct study_uids *u, slice_sink sink,
                       void *arg, struct err *e)
{
    float *hu = malloc(sizeof *hu * SIZE * SIZE);
    int16_t *px = malloc(sizeof *px * SIZE * SIZE);
    int rc = 0;
    if (!hu || !px)
        rc = err_set(e, ERR_INTERNAL, "out of memory");
    double sp = FOV_MM / SIZE, corner = -(SIZE - 1) / 2.0 * sp;
    for (int i = 0; !rc && i < spec->slices; i++) {
        char sop[65];
        if ((rc = uid_for(spec, "instance", i, sop, e)))
            break;
        slice_pixels(spec, i, hu, px);
        struct dcm_ct_slice sl = {
            .study_uid = u->study, .series_uid = u->series, .sop_uid = sop,
            .frame_of_ref_uid = u->frame_of_ref,
            .patient_name = spec->patient_name,
            .patient_id = spec->patient_id,
            .patient_birth_date = spec->birth_date,
            .patient_sex = spec->sex,
            .study_date = spec->date, .study_time = spec->time,
            .study_description = spec->description,
            .series_description = "AXIAL HEAD 5 mm (DEMO, synthetic)",
            .accession = spec->accession,
            .institution = "Demo Rural Clinic",
            .series_number = 2, .instance_number = i + 1,
            .rows = SIZE, .columns = SIZE, .pixel_spacing = sp,
            .slice_thickness = THICK_MM,
            .position = { corner, corner,
                          TOP_MM - (i + 0.5) * THICK_MM },
            .rescale_intercept = INTERCEPT, .rescale_slope = 1,
            .pixels = px,
        };
        rc = sink(arg, i, &sl, e);
    }
    free(hu);
    free(px);
    return rc;
}

/* Sink: through store_put_file, as the requester's clinic. */
struct store_sink {
    struct store *s;
    const struct store_source *src;
    int stored;
};

static int to_store(void *arg, int i, const struct dcm_ct_slice *sl,
                    struct err *e)
{
    (void)i;
    struct store_sink *k = arg;
    char path[4096];
    int fd, rc = store_tmp_file(k->s, path, &fd, e);
    if (rc)
        return rc;
    close(fd);
    if ((rc = dicom_write_ct_slice(path, sl, e))) {
        unlink(path);
        return rc;
    }
    struct store_result res;
    rc = store_put_file(k->s, path, k->src, &res, e);
    if (!rc && res.outcome == STORE_CONFLICT)
        rc = err_set(e, ERR_CONFLICT, "demo instance %s is stored with "
                     "other bytes", sl->sop_uid);
    if (!rc && res.outcome == STORE_STORED)
        k->stored++;
    return rc;
}

/* Sink: files in a directory, each complete under its name. */
static int to_dir(void *arg, int i, const struct dcm_ct_slice *sl,
                  struct err *e)
{
    const char *dir = arg;
    char name[32], path[4096], tmp[4200];
    snprintf(name, sizeof name, "CT%04d.dcm", i + 1);
    if (path_join(path, sizeof path, dir, name))
        return err_set(e, ERR_INVALID, "path too long: %s", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = dicom_write_ct_slice(tmp, sl, e);
    if (!rc && rename(tmp, path))
        rc = err_set(e, ERR_IO, "rename %s: %s", tmp, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

int demo_write_live_study(const char *dir, char *study_uid, struct err *e)
{
    char date[16], tm[16];
    time_t now = time(NULL);
    struct tm lt;
    localtime_r(&now, &lt);
    strftime(date, sizeof date, "%Y%m%d", &lt);
    strftime(tm, sizeof tm, "%H%M%S", &lt);
    struct study_spec live = {
        .seed = "hashi demo: live head CT", .random_uids = 1,
        .patient_name = "DEMO^LIVE", .patient_id = "DEMO-0003",
        .birth_date = "19510923", .sex = "F",
        .date = date, .time = tm, .accession = "DEMO0003",
        .description = "CT HEAD WO CONTRAST (DEMO, synthetic, live)",
        .slices = DEMO_LIVE_SLICES,
        .finding = {
            { 24, { 34, 22, 40 }, { 16, 18, 14 } },     /* edema */
            { 66, { 34, 22, 40 }, { 10, 12, 9 } },      /* left parietal
                                                           bleed */
        },
    };
    struct study_uids u;
    if (mkdir_p(dir, 0755))
        return err_set(e, ERR_IO, "create %s: %s", dir, strerror(errno));
    int rc = study_uids_of(&live, &u, e);
    if (!rc)
        rc = write_study(&live, &u, to_dir, (void *)dir, e);
    if (!rc)
        strlcpy_h(study_uid, u.study, 65);
    return rc;
}

/* ---- seeding ---------------------------------------------------------- */

/* Store spec's study unless all of it is there already, and announce it
 * (study.expect) once, so its case shows "N of N". */
static int seed_study(struct server *srv, const struct principal *req,
                      const struct study_spec *spec, struct study_uids *u,
                      FILE *out, struct err *e)
{
    int rc = study_uids_of(spec, u, e);
    if (rc)
        return rc;
    struct store_scope scope;
    struct store_instance *have = NULL;
    size_t n = 0;
    access_scope(req, &scope);
    rc = store_list_instances(srv->store, &scope, u->study, NULL, &have, &n,
                              e);
    free(have);
    if (rc && rc != ERR_NOTFOUND)
        return rc;
    if (rc || n < (size_t)spec->slices) {
        struct store_source src = {
            .via = "demo", .user = req->login, .remote = "local",
            .clinic_id = req->clinic_id,
        };
        struct store_sink k = { srv->store, &src, 0 };
        if ((rc = write_study(spec, u, to_store, &k, e)))
            return rc;
        if (out)
            fprintf(out, "  study %s (%s): %d slices stored\n",
                    spec->patient_id, spec->description, k.stored);
    }

    sqlite3_stmt *st = store_stmt(
        srv->store, "SELECT instances FROM study_expectations"
                    " WHERE study_uid = ?1", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, u->study, -1, SQLITE_STATIC);
    int announced = sqlite3_step(st) == SQLITE_ROW &&
                    sqlite3_column_int64(st, 0) == spec->slices;
    sqlite3_reset(st);
    if (announced)
        return 0;
    struct msg m;
    struct msg_error me;
    json_t *res = NULL;
    if (msg_build_study_expect(&m, "demo", u->study, spec->slices, 0, &me))
        return err_set(e, ERR_INTERNAL, "study.expect: %s", me.message);
    rc = gateway_expect(srv, req, &m.study_expect, &res, e);
    json_decref(res);
    msg_free(&m);
    return rc;
}

/* Run one typed request through the codec's checks, as a client's
 * would be. */
static int checked(struct msg *m, struct err *e)
{
    struct msg_error me;
    strlcpy_h(m->id, "demo", sizeof m->id);
    if (msg_validate(m, &me))
        return err_set(e, ERR_INTERNAL, "demo %s: %s",
                       msg_type_name(m->type), me.message);
    return 0;
}

static int create_case(struct server *srv, const struct principal *req,
                       const char *case_id, int priority, int age, int sex,
                       const char *history, const char *question,
                       const char *study_uid, struct err *e)
{
    struct msg m;
    msg_init(&m, MSG_CASE_CREATE);
    struct msg_case_create *c = &m.case_create;
    strlcpy_h(c->case_id, case_id, sizeof c->case_id);
    c->has_patient = true;
    c->patient.has_age = true;
    c->patient.age = age;
    c->patient.sex = sex;
    strlcpy_h(c->history, history, sizeof c->history);
    strlcpy_h(c->question, question, sizeof c->question);
    c->priority = priority;
    strlcpy_h(c->specialty, "neurology", sizeof c->specialty);
    strlcpy_h(c->study_uids[0], study_uid, sizeof c->study_uids[0]);
    c->n_study_uids = 1;
    json_t *res = NULL;
    int rc = checked(&m, e);
    if (!rc)
        rc = cases_create(srv, req, c, &res, NULL, e);
    json_decref(res);
    return rc;
}

static int say(struct server *srv, const struct principal *who,
               const char *message_id, const char *text,
               const char *key_sop, struct err *e)
{
    struct msg m;
    msg_init(&m, MSG_MESSAGE_SEND);
    struct msg_message_send *s = &m.message_send;
    strlcpy_h(s->case_id, DEMO_ROUTINE_CASE, sizeof s->case_id);
    strlcpy_h(s->message_id, message_id, sizeof s->message_id);
    strlcpy_h(s->text, text, sizeof s->text);
    if (key_sop) {
        s->has_image = true;
        strlcpy_h(s->image.sop_uid, key_sop, sizeof s->image.sop_uid);
        s->image.frame = 1;
        s->image.has_window = true;
        s->image.window.center = 40;
        s->image.window.width = 80;
    }
    json_t *res = NULL;
    int rc = checked(&m, e);
    if (!rc)
        rc = cases_message(srv, who, s, &res, e);
    json_decref(res);
    return rc;
}

/* The answered routine case: claimed, a short chat pointing at a key
 * image, each message read by the other side, the answer. */
static int seed_routine(struct server *srv, const struct principal *req,
                        const struct principal *neuro,
                        const struct study_uids *u, struct err *e)
{
    char key_sop[65];
    int rc = uid_for(&routine_study, "instance", ROUTINE_KEY_SLICE - 1,
                     key_sop, e);
    if (!rc)
        rc = create_case(
            srv, req, DEMO_ROUTINE_CASE, MSG_PRIO_ROUTINE, 57, MSG_SEX_F,
            "DEMO (synthetic patient). Headaches for three months, worse "
            "in the morning. Normal neurological examination. BP 150/95.",
            "Anything structural on the CT? Does she need an MRI?",
            u->study, e);
    json_t *res = NULL;
    if (!rc)
        rc = cases_claim(srv, neuro, DEMO_ROUTINE_CASE, &res, e);
    json_decref(res);
    if (!rc)
        rc = say(srv, neuro, "demo-msg-1",
                 "No bleed, no mass, no hydrocephalus. One small old "
                 "lacune in the left lentiform nucleus: see this slice "
                 "(brain window).", key_sop, e);
    if (!rc)
        rc = say(srv, req, "demo-msg-2",
                 "Thank you. Could the lacune explain the headaches?", NULL,
                 e);
    if (!rc)
        rc = say(srv, neuro, "demo-msg-3",
                 "Unlikely; it is a marker of small-vessel disease. Treat "
                 "the blood pressure. My answer is in the case.", NULL, e);
    if (!rc)
        rc = cases_message_read(srv, req, DEMO_ROUTINE_CASE, "demo-msg-1",
                                e);
    if (!rc)
        rc = cases_message_read(srv, neuro, DEMO_ROUTINE_CASE, "demo-msg-2",
                                e);
    if (!rc)
        rc = cases_message_read(srv, req, DEMO_ROUTINE_CASE, "demo-msg-3",
                                e);
    if (rc)
        return rc;
    struct msg m;
    msg_init(&m, MSG_CASE_ANSWER);
    struct msg_case_answer *a = &m.case_answer;
    strlcpy_h(a->case_id, DEMO_ROUTINE_CASE, sizeof a->case_id);
    strlcpy_h(a->impression,
              "No acute intracranial abnormality. Small chronic lacunar "
              "infarct, left lentiform nucleus.", sizeof a->impression);
    strlcpy_h(a->recommendation,
              "Treat hypertension and review vascular risk factors. No MRI "
              "needed for the headaches unless red flags appear.",
              sizeof a->recommendation);
    if (!(rc = checked(&m, e)))
        rc = cases_answer(srv, neuro, a, &res, e);
    json_decref(res);
    return rc;
}

int demo_seed(struct server *srv, FILE *out, struct err *e)
{
    struct principal req, neuro;
    int rc = auth_user_principal(srv->store, "demo-requester", &req, e);
    if (!rc)
        rc = auth_user_principal(srv->store, "demo-neuro", &neuro, e);
    const char *oncall[] = { "demo-neuro", "demo-neuro2" };
    if (!rc)
        rc = cases_oncall_set(srv, "neurology", oncall, 2, e);
    struct study_uids stat, routine;
    if (!rc)
        rc = seed_study(srv, &req, &routine_study, &routine, out, e);
    if (!rc)
        rc = seed_study(srv, &req, &stat_study, &stat, out, e);
    if (!rc)
        rc = seed_routine(srv, &req, &neuro, &routine, e);
    /* Last, so it is the newest: STAT, unclaimed, its deadline running.
     * The inbox orders by updated_at in milliseconds; on a fast machine
     * the routine case's last change can share the STAT case's
     * millisecond, and the tie would go to the routine case's id. */
    int64_t after = now_ms();
    while (!rc && now_ms() <= after)
        nanosleep(&(struct timespec){ .tv_nsec = 200000 }, NULL);
    if (!rc)
        rc = create_case(
            srv, &req, DEMO_STAT_CASE, MSG_PRIO_STAT, 67, MSG_SEX_M,
            "DEMO (synthetic patient). Sudden left-sided weakness and "
            "slurred speech 90 minutes ago. BP 185/100. On no "
            "anticoagulants.",
            "Bleed or ischaemic stroke? Can we thrombolyse, or must he be "
            "transferred?", stat.study, e);
    if (!rc && out)
        fprintf(out, "  cases: %s (stat, waiting for demo-neuro), %s "
                "(routine, answered, with chat)\n", DEMO_STAT_CASE,
                DEMO_ROUTINE_CASE);
    return rc;
}
