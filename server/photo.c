/*
 * photo — a crew's JPEG as a DICOM image of its case (see photo.h).
 */
#include "photo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "../proto/dicom.h"
#include "cases.h"

/* A phone photo is a few MB; the upload's cap (--max-instance) holds
 * first, this only bounds what is read into memory here. */
#define PHOTO_MAX (64u << 20)

void photo_study_uid(const char *case_id, char out[65])
{
    char text[128];
    snprintf(text, sizeof text, "hashi-photo-study:%s", case_id);
    dicom_uid_from_text(text, out);
}

void photo_sop_uid(const char *case_id, const char *sha256, char out[65])
{
    char text[160];
    snprintf(text, sizeof text, "hashi-photo:%s:%s", case_id, sha256);
    dicom_uid_from_text(text, out);
}

static void series_uid(const char *case_id, char out[65])
{
    char text[128];
    snprintf(text, sizeof text, "hashi-photo-series:%s", case_id);
    dicom_uid_from_text(text, out);
}

int photo_case_check(struct store *s, const struct principal *who,
                     const char *case_id, struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s, "SELECT 1 FROM cases WHERE case_id = ?1 AND clinic_id = ?2", e);
    if (!st)
        return ERR_DB;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, who->clinic_id);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found ? 0 : err_set(e, ERR_NOTFOUND, "case_id: no such case");
}

int photo_stored(struct store *s, const char *case_id, const char *sha256,
                 char uid[65])
{
    struct err e = { 0, "" };
    photo_sop_uid(case_id, sha256, uid);
    sqlite3_stmt *st = store_stmt(
        s, "SELECT 1 FROM instances WHERE sop_uid = ?1", &e);
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, uid, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

/* DICOM DA and TM of a time in ms (UTC: the server's clock, as every
 * time Hashi records). */
static void da_tm(int64_t ms, char da[9], char tm[7])
{
    time_t t = (time_t)(ms / 1000);
    struct tm g;
    gmtime_r(&t, &g);
    strftime(da, 9, "%Y%m%d", &g);
    strftime(tm, 7, "%H%M%S", &g);
}

int photo_make(struct store *s, const char *case_id, const char *jpeg_path,
               const char *sha256, int64_t taken, const char *out_path,
               struct err *e)
{
    sqlite3_stmt *st = store_stmt(
        s, "SELECT c.patient_age, c.patient_sex, c.created_at, cl.name,"
           " (SELECT COUNT(*) FROM instances i JOIN series se"
           "   ON se.id = i.series_ref WHERE se.series_uid = ?2)"
           " FROM cases c LEFT JOIN clinics cl ON cl.id = c.clinic_id"
           " WHERE c.case_id = ?1", e);
    if (!st)
        return ERR_DB;
    char study[65], series[65], sop[65], age[8] = "", sex[2] = "";
    char inst[128] = "", sda[9], stm[7], ada[9], atm[7];
    int64_t created = 0;
    int number = 1;
    series_uid(case_id, series);
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, series, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            snprintf(age, sizeof age, "%03dY", sqlite3_column_int(st, 0));
        const unsigned char *t = sqlite3_column_text(st, 1);
        if (t)
            strlcpy_h(sex, (const char *)t, sizeof sex);
        created = sqlite3_column_int64(st, 2);
        if ((t = sqlite3_column_text(st, 3)))
            strlcpy_h(inst, (const char *)t, sizeof inst);
        number = sqlite3_column_int(st, 4) + 1;
    }
    sqlite3_reset(st);
    if (!found)
        return err_set(e, ERR_NOTFOUND, "case_id: no such case");

    unsigned char *jpeg;
    size_t len;
    int rc = read_file(jpeg_path, PHOTO_MAX, &jpeg, &len, e);
    if (rc)
        return rc;
    photo_study_uid(case_id, study);
    photo_sop_uid(case_id, sha256, sop);
    da_tm(created, sda, stm);
    da_tm(taken, ada, atm);
    struct dcm_photo p = {
        .study_uid = study, .series_uid = series, .sop_uid = sop,
        .patient_name = "", .patient_id = case_id, .patient_sex = sex,
        .patient_age = age, .study_date = sda, .study_time = stm,
        .acq_date = ada, .acq_time = atm,
        .study_description = "Pre-arrival (ambulance)",
        .series_description = "Photos from the ambulance",
        .institution = inst, .series_number = 1, .instance_number = number,
        .jpeg = jpeg, .jpeg_len = len,
    };
    rc = dicom_write_photo(out_path, &p, NULL, e);
    free(jpeg);
    if (rc == ERR_INVALID) {
        char why[200];
        strlcpy_h(why, e->msg, sizeof why);
        return err_set(e, ERR_INVALID, "not a photo Hashi can take: %s "
                       "(a baseline JPEG from the camera is)", why);
    }
    return rc;
}

int photo_attach(struct store *s, const char *case_id, struct err *e)
{
    char study[65];
    photo_study_uid(case_id, study);
    return cases_name_study(store_db(s), case_id, study, e);
}
