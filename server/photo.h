/*
 * photo — a crew's photo (of the patient, the scene, an ECG strip)
 * becomes a DICOM image of its case (issue 12).  The phone uploads the
 * JPEG with hashi.v1's resumable upload, kind "photo" (upload.c), so a
 * cut on the road resumes; at upload.end the JPEG is wrapped, unchanged,
 * into a VL Photographic Image (dicom_write_photo) carrying the case's
 * patient data, in the case's own photo study, and stored through the
 * normal path (store_put_file); the case then names that study.
 *
 * UIDs are derived from the case (and the photo's sha256), so the same
 * photo sent twice is one instance, and a case has one photo study.
 *
 * Threads: photo_make and photo_attach run on a worker with its own
 * store handle; photo_case_check and photo_stored on whichever thread
 * owns the store handle it is given.
 */
#ifndef HASHI_PHOTO_H
#define HASHI_PHOTO_H

#include <stdint.h>

#include "../proto/util.h"
#include "auth.h"
#include "store.h"

/* The case's photo study, and the instance a photo with this sha256
 * becomes in it. */
void photo_study_uid(const char *case_id, char out[65]);
void photo_sop_uid(const char *case_id, const char *sha256, char out[65]);

/* May who add photos to case_id?  0 when the case is its clinic's (or
 * ambulance service's); ERR_NOTFOUND otherwise, as for an unknown case. */
int photo_case_check(struct store *s, const struct principal *who,
                     const char *case_id, struct err *e);

/* 1 and the SOP Instance UID into uid when the photo with this sha256 is
 * already an instance of the case, else 0. */
int photo_stored(struct store *s, const char *case_id, const char *sha256,
                 char uid[65]);

/* When the photo jpeg[0..len) was taken, by its EXIF (APP1 "Exif"):
 * DateTimeOriginal, else DateTimeDigitized, else IFD0's DateTime; made
 * UTC by OffsetTimeOriginal when DateTimeOriginal has one, else the
 * camera's clock as written.  1 and the time (ms) into *ms when present,
 * a real calendar date and no more than a day after now (ms); else 0 and
 * *ms untouched.  Malformed EXIF is 0: nothing outside jpeg[0..len) is
 * read. */
int photo_exif_taken(const unsigned char *jpeg, size_t len, int64_t now,
                     int64_t *ms);

/* Write the DICOM image of the JPEG at jpeg_path (sha256 its hash) for
 * case_id to out_path (a temp file of the store's).  Its content and
 * acquisition date and time are photo_exif_taken's when the JPEG has
 * one, else taken (ms: when its upload began).  ERR_INVALID with the
 * reason when it is not a baseline JPEG, ERR_NOTFOUND when the case is
 * gone. */
int photo_make(struct store *s, const char *case_id, const char *jpeg_path,
               const char *sha256, int64_t taken, const char *out_path,
               struct err *e);

/* After the store took it: the case names its photo study (once). */
int photo_attach(struct store *s, const char *case_id, struct err *e);

#endif
