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

/* ---- EXIF: when the photo was taken ----------------------------------
 *
 * Every read below is checked against the APP1 segment (or the JPEG)
 * length first: the bytes come from a phone and may be anything.  Only
 * IFD0 and the Exif IFD it points to are read, so there is no loop or
 * recursion an offset could send round forever. */

struct tiff {
    const unsigned char *b;
    size_t len;
    int le;                     /* "II": little-endian */
};

static int t_u16(const struct tiff *t, size_t off, unsigned *v)
{
    if (off > t->len || t->len - off < 2)
        return -1;
    const unsigned char *p = t->b + off;
    *v = t->le ? (unsigned)(p[0] | p[1] << 8) : (unsigned)(p[0] << 8 | p[1]);
    return 0;
}

static int t_u32(const struct tiff *t, size_t off, uint32_t *v)
{
    if (off > t->len || t->len - off < 4)
        return -1;
    const unsigned char *p = t->b + off;
    *v = t->le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                 (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
               : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                 (uint32_t)p[2] << 8 | (uint32_t)p[3];
    return 0;
}

/* The entry of tag in the IFD at ifd: its offset (in t), or 0. */
static size_t ifd_find(const struct tiff *t, uint32_t ifd, unsigned tag)
{
    unsigned n, got;
    if (ifd < 8 || t_u16(t, ifd, &n))
        return 0;
    if (n > (t->len - ifd - 2) / 12)
        return 0;
    for (unsigned i = 0; i < n; i++) {
        size_t at = ifd + 2 + (size_t)i * 12;
        if (!t_u16(t, at, &got) && got == tag)
            return at;
    }
    return 0;
}

/* The ASCII value of tag in the IFD at ifd, copied NUL-terminated into
 * out[cap]; 0, or -1 when absent, not ASCII or out of bounds. */
static int ifd_ascii(const struct tiff *t, uint32_t ifd, unsigned tag,
                     char *out, size_t cap)
{
    size_t at = ifd_find(t, ifd, tag);
    unsigned type;
    uint32_t count, off;
    if (!at || t_u16(t, at + 2, &type) || type != 2 ||
        t_u32(t, at + 4, &count) || count == 0)
        return -1;
    if (count <= 4)
        off = (uint32_t)(at + 8);
    else if (t_u32(t, at + 8, &off))
        return -1;
    if (off > t->len || count > t->len - off)
        return -1;
    size_t n = count < cap ? count : cap - 1;
    memcpy(out, t->b + off, n);
    out[n] = '\0';
    return 0;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days_from_civil), so no timegm() and no TZ is involved. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = y / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY:MM:DD HH:MM:SS" as ms since the epoch, the clock it was written
 * on read as UTC; -1 unless it is a real calendar date and time from
 * 1970 on (cameras write "0000:00:00 00:00:00" or blanks when unset). */
static int64_t exif_datetime(const char *s)
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30,
                                 31, 31, 30, 31, 30, 31 };
    if (strlen(s) < 19 || s[4] != ':' || s[7] != ':' || s[10] != ' ' ||
        s[13] != ':' || s[16] != ':')
        return -1;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2);
    int sec = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 +
           (int64_t)sec * 1000;
}

/* "+HH:MM" / "-HH:MM" as ms east of UTC; 0 into *ms and -1 when not. */
static int exif_offset(const char *s, int64_t *ms)
{
    *ms = 0;
    if (strlen(s) < 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return -1;
    int h = digits(s + 1, 2), m = digits(s + 4, 2);
    if (h < 0 || h > 14 || m < 0 || m > 59)
        return -1;
    *ms = ((int64_t)h * 60 + m) * 60000 * (s[0] == '-' ? -1 : 1);
    return 0;
}

/* The TIFF block of the JPEG's first APP1 "Exif\0\0" segment before
 * its scan, or 0. */
static int exif_block(const unsigned char *j, size_t len, struct tiff *t)
{
    size_t pos = 2;
    if (len < 4 || j[0] != 0xff || j[1] != 0xd8)
        return 0;
    while (pos + 4 <= len && j[pos] == 0xff) {
        unsigned m = j[pos + 1];
        if (m == 0xda || m == 0xd9)
            return 0;
        size_t seg = (size_t)j[pos + 2] << 8 | j[pos + 3];
        if (seg < 2 || seg > len - pos - 2)
            return 0;
        if (m == 0xe1 && seg >= 2 + 6 + 8 &&
            !memcmp(j + pos + 4, "Exif\0\0", 6)) {
            t->b = j + pos + 10;
            t->len = seg - 8;
            return 1;
        }
        pos += 2 + seg;
    }
    return 0;
}

int photo_exif_taken(const unsigned char *jpeg, size_t len, int64_t now,
                     int64_t *ms)
{
    struct tiff t;
    unsigned magic;
    uint32_t ifd0, exif = 0;
    char v[32];
    if (!exif_block(jpeg, len, &t))
        return 0;
    if (t.b[0] == 'I' && t.b[1] == 'I')
        t.le = 1;
    else if (t.b[0] == 'M' && t.b[1] == 'M')
        t.le = 0;
    else
        return 0;
    if (t_u16(&t, 2, &magic) || magic != 42 || t_u32(&t, 4, &ifd0))
        return 0;
    size_t at = ifd_find(&t, ifd0, 0x8769);
    if (at && t_u32(&t, at + 8, &exif))
        exif = 0;

    /* The first of these that is a real date; the offset tag belongs to
     * DateTimeOriginal only (0x9012/0x9010 are the others'). */
    int64_t when = -1, east = 0;
    if (exif && !ifd_ascii(&t, exif, 0x9003, v, sizeof v) &&
        (when = exif_datetime(v)) >= 0 &&
        !ifd_ascii(&t, exif, 0x9011, v, sizeof v))
        exif_offset(v, &east);
    if (when < 0 && exif && !ifd_ascii(&t, exif, 0x9004, v, sizeof v))
        when = exif_datetime(v);
    if (when < 0 && !ifd_ascii(&t, ifd0, 0x0132, v, sizeof v))
        when = exif_datetime(v);
    if (when < 0)
        return 0;
    when -= east;
    if (when > now + 24 * 3600 * 1000LL)
        return 0;               /* a camera clock set wrong */
    *ms = when;
    return 1;
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
    /* when the photo was taken, not when its upload began, if its EXIF
     * says so plausibly: a wound photographed 40 minutes before arrival
     * must not read as taken at arrival */
    photo_exif_taken(jpeg, len, now_ms(), &taken);
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
    if (rc == ERR_INVALID)
        return err_set(e, ERR_INVALID, "not a photo Hashi can take: %.199s "
                       "(a baseline JPEG from the camera is)", e->msg);
    return rc;
}

int photo_attach(struct store *s, const char *case_id, struct err *e)
{
    char study[65];
    photo_study_uid(case_id, study);
    return cases_name_study(store_db(s), case_id, study, e);
}
