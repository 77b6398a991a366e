/*
 * dicom — Hashi's whole view of DICOM, a plain C API over DCMTK.
 *
 * proto/dicom.cc is the only C++ file in the project; nothing else includes
 * a DCMTK header.  Every entry point catches C++ exceptions and reports
 * failures as a negative ERR_* code (util.h) with a reason in struct err;
 * none aborts on bad input.
 *
 * Thread-safety: call dicom_init() once before starting threads; after that
 * every function may be called from any thread (each call uses its own
 * DCMTK objects).  Rendering keeps some working memory per calling thread
 * between calls, and starts one helper thread on first use (JPEG strips
 * encoded on a second core; signals blocked); dicom_cleanup() joins it.
 */
#ifndef HASHI_DICOM_H
#define HASHI_DICOM_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits enforced by dicom_parse_* before DCMTK sees the data. */
#define DICOM_MAX_DEPTH 32            /* sequence/item nesting levels */

/* Transfer syntax UIDs used by callers. */
#define DICOM_TS_IMPLICIT_LE "1.2.840.10008.1.2"
#define DICOM_TS_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define DICOM_TS_JPEGLS_LOSSLESS "1.2.840.10008.1.2.4.80"

/* What Hashi indexes of one instance.  Strings are NUL-terminated, UTF-8
 * as far as the file's character set allows (bytes outside ASCII that are
 * not valid UTF-8 are replaced), trailing padding removed; "" if absent.
 * Numbers are 0 if absent. */
struct dcm_info {
    char study_uid[65];
    char series_uid[65];
    char sop_uid[65];
    char sop_class_uid[65];
    char transfer_syntax[65];
    char patient_id[65];
    char patient_name[325];
    char birth_date[9];           /* YYYYMMDD */
    char sex[17];
    char study_date[9];           /* YYYYMMDD */
    char study_time[17];
    char study_description[65];
    char accession[17];
    char modality[17];
    int series_number;
    char series_description[65];
    int instance_number;
    int rows;
    int columns;
    int frames;                   /* 1 for a single-frame image, 0 if none */
    int has_pixels;               /* PixelData present */
    int has_window;               /* the file carries a VOI window */
    double window_center;         /* the first one, if has_window */
    double window_width;
};

/* Once per process, before any thread: registers the codecs (JPEG, JPEG-LS
 * with the raw encoder — see API-NOTES pitfall 1 — RLE), quiets DCMTK's
 * logger, sets TCP_NODELAY=1 for DCMTK's sockets, checks the dictionary. */
int dicom_init(struct err *e);
void dicom_cleanup(void);

/* 1 if uid is a well-formed UID: 1..64 chars of digits and dots, no empty
 * component, no leading zero in a component of more than one digit. */
int dicom_uid_valid(const char *uid);

/* Validate and parse a DICOM Part-10 file (or a bare dataset in implicit
 * VR little endian) into *out.  Validation, done before DCMTK parses:
 * declared element lengths lie inside the data, sequence nesting is at most
 * DICOM_MAX_DEPTH; then the Study, Series and SOP Instance UIDs and the SOP
 * Class UID must be present and dicom_uid_valid().  ERR_INVALID with the
 * reason otherwise.  Reads the file through a mapping; pixel data is not
 * loaded into memory. */
int dicom_parse_file(const char *path, struct dcm_info *out, struct err *e);
int dicom_parse_mem(const void *buf, size_t len, struct dcm_info *out,
                    struct err *e);

/* Named window presets: "brain" (40/80), "subdural" (75/215),
 * "stroke" (40/40), "bone" (500/2000), "lung" (-600/1500),
 * "abdomen" (60/400).  0 and *center, *width set, or ERR_NOTFOUND. */
int dicom_window_preset(const char *name, double *center, double *width);

struct dcm_render_opts {
    int frame;             /* 0-based */
    int window_mode;       /* DCM_WINDOW_* */
    double center, width;  /* for DCM_WINDOW_EXPLICIT */
    int max_width;         /* 0 = no limit; the image is scaled down to fit */
    int max_height;        /*   max_width x max_height keeping its aspect */
    int quality;           /* JPEG quality 1..100; 0 = 90 */
    int engine;            /* DCM_RENDER_*; 0 = the fast path when it applies */
};
enum {
    DCM_WINDOW_DEFAULT = 0,   /* the file's first VOI window, else min/max */
    DCM_WINDOW_EXPLICIT,      /* center/width above */
    DCM_WINDOW_MINMAX,
};
/* Which renderer.  The fast path reads native little-endian MONOCHROME1/2
 * pixels (8 or 16 bits allocated) straight from the mapped file, applies
 * rescale and the linear VOI window (PS3.3 C.11.2.1.2) through one lookup
 * table and encodes from a per-thread buffer; it computes the same 8-bit
 * values as DCMTK (tests/unit/test_dicom.c checks this pixel for pixel).
 * Anything else — compressed, colour, 1/32-bit, overlays, LUT sequences,
 * a presentation LUT shape, a non-linear VOI function — goes to DCMTK.
 * When scaling, the fast path averages areas of the windowed 8-bit image;
 * DCMTK scales before windowing, so scaled results differ slightly. */
enum {
    DCM_RENDER_AUTO = 0,      /* fast path if it applies, else DCMTK */
    DCM_RENDER_FAST,          /* fast path only: ERR_UNSUPPORTED otherwise */
    DCM_RENDER_DCMTK,         /* DCMTK only (reference, tests) */
};

/* Render one frame of the file at path as an 8-bit JPEG.  *jpeg is
 * malloc'd (caller frees), *w and *h receive the output size (may be NULL).
 * ERR_NOTFOUND for a frame out of range, ERR_UNSUPPORTED for pixel data
 * DCMTK cannot decode here (JPEG 2000), ERR_INVALID for no pixel data. */
int dicom_render_jpeg(const char *path, const struct dcm_render_opts *opt,
                      unsigned char **jpeg, size_t *len, int *w, int *h,
                      struct err *e);

/* The same rendering up to, not including, JPEG encoding: *pix (malloc'd,
 * caller frees) receives w*h*comps 8-bit samples, row by row, comps 1
 * (grey) or 3 (RGB).  opt->quality is ignored.  Errors as above. */
int dicom_render_pixels(const char *path, const struct dcm_render_opts *opt,
                        unsigned char **pix, int *w, int *h, int *comps,
                        struct err *e);

/* Transcode in_path to out_path (written fresh, not fsync'd):
 *  - to JPEG-LS lossless (DICOM_TS_JPEGLS_LOSSLESS);
 *  - to explicit VR little endian, decompressing.
 * ERR_UNSUPPORTED when the object has no pixel data or its pixels cannot be
 * encoded losslessly (over 16 bits, YBR_FULL_422, JPEG 2000 source). */
int dicom_transcode_jpegls(const char *in_path, const char *out_path,
                           struct err *e);
int dicom_transcode_explicit_le(const char *in_path, const char *out_path,
                                struct err *e);

/* SHA-256 of the decoded pixel data of all frames (native, little endian)
 * — equal for a file and its lossless transcodes. */
int dicom_pixel_sha256(const char *path, char out[65], struct err *e);

/* ---- C-STORE / C-ECHO listener ---------------------------------------- */

/* DIMSE status codes the store callback may return. */
#define DICOM_STATUS_SUCCESS 0x0000
#define DICOM_STATUS_WARNING 0xB000          /* stored, with a comment */
#define DICOM_STATUS_OUT_OF_RESOURCES 0xA700
#define DICOM_STATUS_NOT_AUTHORIZED 0x0124    /* Refused: Not Authorized */
#define DICOM_STATUS_DATASET_MISMATCH 0xA900  /* invalid / rejected */
#define DICOM_STATUS_CANNOT_UNDERSTAND 0xC000
/* Query/Retrieve and Storage Commitment (PS3.4 C.4, J.3). */
#define DICOM_STATUS_PENDING 0xFF00
#define DICOM_STATUS_MOVE_DEST_UNKNOWN 0xA801
#define DICOM_STATUS_SUBOPS_FAILED 0xB000    /* some sub-operations failed */
#define DICOM_STATUS_SUBOPS_REFUSED 0xA702   /* unable to perform them */
#define DICOM_STATUS_NO_SUCH_INSTANCE 0x0112 /* Storage Commitment reason */

/* Defaults for the zero fields of struct dicom_scp_cfg. */
#define DICOM_SCP_MAX_ASSOCIATIONS 16
#define DICOM_SCP_ARTIM_TIMEOUT 10           /* seconds */
#define DICOM_SCP_IDLE_TIMEOUT 60            /* seconds */

/* The listener serves every association on a thread of its own, so the
 * callbacks below run concurrently, each association on its own thread
 * (the callbacks of one association always on the same thread, in order:
 * open or accept, store..., close).  They must be thread-safe.
 *
 * Called for every received instance.  path is a complete Part-10 file in
 * cfg->tmp_dir (dataset bytes as received, meta header added by DCMTK);
 * the callback owns it from then on (moves it into the store or unlinks
 * it).  arg is the association's context when cfg->open is set, else
 * cfg->arg.  It returns a DICOM_STATUS_*; comment (64 bytes, may stay
 * empty) becomes the response's Error Comment.  calling_ae and peer_host
 * are peer-provided: escape them before logging (log_msg does). */
typedef unsigned (*dicom_store_fn)(void *arg, const char *path,
                                   const char *calling_ae,
                                   const char *peer_host,
                                   char comment[64]);
/* Called for every association request: nonzero to accept this calling
 * AE title from this host.  Used only when cfg->open is NULL. */
typedef int (*dicom_accept_fn)(void *arg, const char *calling_ae,
                               const char *peer_host);
/* Called for every association request instead of accept: nonzero to
 * accept, and then *assoc (initially NULL) is the association's context:
 * the store callback receives it as arg, and close(cfg->arg, *assoc) is
 * called once after the association's last store callback (also when it
 * ends by abort, timeout or dicom_scp_stop).  Not called for a request
 * that is refused earlier (host, called AE, too many associations). */
typedef int (*dicom_open_fn)(void *arg, const char *calling_ae,
                             const char *peer_host, void **assoc);
typedef void (*dicom_close_fn)(void *arg, void *assoc);

/*
 * Query/Retrieve (Study Root) and Storage Commitment.  The listener speaks
 * DIMSE; these callbacks decide what matches, what is sent and what is
 * committed.  Each gets the association's context (cfg->open's, else
 * cfg->arg) and runs on the association's thread.
 */
enum { DICOM_QR_STUDY = 1, DICOM_QR_SERIES, DICOM_QR_IMAGE };

/* The keys of a C-FIND/C-GET/C-MOVE identifier that Hashi matches on.
 * NULL when absent or empty (universal matching); values as received
 * (trailing spaces removed): PN and LO with * and ? wildcards, a DA range
 * "A-B", UIDs a backslash-separated list. */
struct dicom_qr_keys {
    int level;                      /* DICOM_QR_* */
    const char *patient_id, *patient_name, *study_date, *accession;
    const char *modality;           /* ModalitiesInStudy or Modality */
    const char *study_uid, *series_uid, *sop_uid;
};

/* One attribute of a match: tag (group << 16 | element) and its value as
 * DICOM text, several values joined with a backslash. */
struct dicom_attr {
    uint32_t tag;
    const char *value;
};
/* Send one C-FIND match; the listener copies the attributes the request
 * asked for.  Nonzero: stop (the peer cancelled or went away). */
typedef int (*dicom_emit_fn)(void *emit_arg, const struct dicom_attr *attrs,
                             size_t n);
/* C-FIND: call emit for each match, return DICOM_STATUS_SUCCESS, or a
 * failure status (0xC000 unable to process, 0xA900 bad identifier);
 * comment (64 bytes) may explain it. */
typedef unsigned (*dicom_find_fn)(void *assoc, const struct dicom_qr_keys *k,
                                  dicom_emit_fn emit, void *emit_arg,
                                  char comment[64]);

/* One instance to send for a C-GET or C-MOVE. */
struct dicom_qr_file {
    char path[4096];                /* a Part-10 file, sent unchanged */
    char sop_class[65];
    char sop_uid[65];
    char xfer[65];                  /* its transfer syntax */
};
/* C-GET / C-MOVE: *files (malloc'd; the listener frees it) receives what
 * matches k, *n their number (0: nothing to send).  move_dest is the
 * destination AE title of a C-MOVE, NULL for a C-GET.  Returns
 * DICOM_STATUS_SUCCESS or a failure status. */
typedef unsigned (*dicom_retrieve_fn)(void *assoc,
                                      const struct dicom_qr_keys *k,
                                      const char *move_dest,
                                      struct dicom_qr_file **files,
                                      size_t *n, char comment[64]);
/* C-MOVE: where the destination AE title listens: 0 and host (256
 * bytes), *port; nonzero if the caller may not send there (A801). */
typedef int (*dicom_move_dest_fn)(void *assoc, const char *dest_ae,
                                  char host[256], int *port);
/* After a C-GET / C-MOVE: how its sub-operations ended (for the audit
 * log).  May be NULL. */
typedef void (*dicom_retrieved_fn)(void *assoc, const char *move_dest,
                                   unsigned completed, unsigned failed);
/* Storage Commitment: 1 if the instance is durable in the store (and the
 * caller may know of it), else 0. */
typedef int (*dicom_commit_fn)(void *assoc, const char *sop_class,
                               const char *sop_uid);

struct dicom_scp_cfg {
    int port;
    int loopback_only;       /* refuse peers not on 127.0.0.0/8 or ::1 */
    const char *ae_title;    /* called AE title we answer to */
    const char *tmp_dir;     /* same file system as the store */
    int dimse_timeout;       /* seconds to wait for the next PDU within a
                                message; 0 = 30 */
    dicom_accept_fn accept;  /* NULL = accept every calling AE */
    dicom_store_fn store;
    void *arg;
    /* Added with concurrent associations; zero means the default. */
    const char *host;        /* bind address or name; NULL = 0.0.0.0 */
    int max_associations;    /* at once; more are refused (A-ASSOCIATE-RJ,
                                transient, local limit exceeded); 0 = 16.
                                Connections that have not yet sent their
                                request are limited to as many again
                                (over that: closed at once). */
    int artim_timeout;       /* seconds for a new connection to send its
                                whole A-ASSOCIATE-RQ, else closed; 0 = 10 */
    int idle_timeout;        /* seconds between DIMSE messages before the
                                association is aborted; 0 = 60 */
    uint64_t max_instance;   /* bytes of one received dataset; over it the
                                association is aborted while receiving and
                                no file is left; 0 = no limit */
    dicom_open_fn open;      /* per-association context (see above) */
    dicom_close_fn close;
    /* Added with Query/Retrieve; NULL: that service is not offered. */
    dicom_find_fn find;      /* Study Root C-FIND */
    dicom_retrieve_fn retrieve;   /* Study Root C-GET and C-MOVE */
    dicom_move_dest_fn move_dest; /* C-MOVE (needs retrieve too) */
    dicom_retrieved_fn retrieved;
    dicom_commit_fn commit;  /* Storage Commitment Push Model */
    int move_timeout;        /* seconds to connect to and hear from a
                                move destination; 0 = 10 */
};

struct dicom_scp;
/* Start the listener: binds host:port exactly (ERR_IO if it cannot), then
 * accepts on a thread of its own (signals SIGINT/SIGTERM/SIGPIPE blocked,
 * in every listener thread).  The config is copied (strings included). */
struct dicom_scp *dicom_scp_start(const struct dicom_scp_cfg *cfg,
                                  struct err *e);
/* Stop within about a second: close the listener, cut every connection
 * (aborting its association), join every thread, free. */
void dicom_scp_stop(struct dicom_scp *scp);

/* ---- de-identification (PS3.15 Annex E) ------------------------------- */

/* Give the replacement for an original instance-identifying UID (Study,
 * Series, SOP Instance, Frame of Reference, referenced ones...): the one
 * given before for orig, or a fresh dicom_uid_new() that it then keeps.
 * Returning the same repl for the same orig is what keeps a study's
 * instances (and their references to each other) consistent; the caller
 * decides where the mapping lives (the gateway: its spool database).
 * Returns 0, or a negative ERR_* with a reason in e (the file is then not
 * written). */
typedef int (*dicom_uid_map_fn)(void *arg, const char *orig, char repl[65],
                                struct err *e);

struct dcm_deid_opts {
    dicom_uid_map_fn map_uid;    /* required */
    void *map_arg;
    const char *patient_name;    /* replacements; NULL or "" = empty, as */
    const char *patient_id;      /*   the Basic Profile says (Z) */
};

/* A fresh UID "2.25.<128 random bits in decimal>" (PS3.5 B.2). */
int dicom_uid_new(char out[65], struct err *e);

/* Write a de-identified copy of in_path to out_path (through a temporary
 * file beside it and a rename, so out_path is never half written; not
 * fsync'd).  The Basic Application Level Confidentiality Profile (PS3.15
 * Table E.1-1, basic column), at every level of nesting:
 *  - listed attributes removed, emptied or given dummy values; UIDs
 *    replaced through opts->map_uid (also MediaStorageSOPInstanceUID);
 *  - all private attributes removed;
 *  - PatientAge and PatientSex kept (PatientAge computed from the birth
 *    date and the study date when absent) — the Retain Patient
 *    Characteristics Option, for those two only;
 *  - PatientIdentityRemoved YES, DeidentificationMethod and its code
 *    sequence (113100, 113108) added.
 * Pixel data is copied byte for byte, in the same transfer syntax: text
 * burned into the pixels is NOT removed.  Errors: what dicom_parse_file
 * reports for bad input, the callback's, ERR_IO for out_path. */
int dicom_deidentify(const char *in_path, const char *out_path,
                     const struct dcm_deid_opts *opts, struct err *e);

/* ---- DICOMweb: metadata, frames, bulk data ---------------------------- */

/* Binary values (OB, OD, OF, OL, OV, OW, UN) longer than this many bytes
 * are bulk data in dicom_write_json; PixelData always is. */
#define DICOM_BULK_THRESHOLD 256

/* Write the data set of the file at path (not its file meta information)
 * to out as one DICOM JSON object (PS3.18 F.2), as DCMTK's dcm2json does,
 * except that bulk data is {"vr": .., "BulkDataURI": bulk_prefix + "/" +
 * its path}.  A path is the element's tag in 8 hex digits, and for an
 * element inside a sequence the sequence's path, "." the item number
 * (from 1) and "." first: "7FE00010", "00880200.1.7FE00010".  Loads the
 * attributes, not the bulk data.  ERR_IO if out fails. */
int dicom_write_json(const char *path, const char *bulk_prefix, FILE *out,
                     struct err *e);

/* The value of the element at bulk_path (as above) in the file at path,
 * in little endian: *data malloc'd (caller frees), *len bytes.
 * ERR_NOTFOUND for no such element or one whose VR is not binary,
 * ERR_UNSUPPORTED for compressed pixel data (use dicom_frame_get),
 * ERR_TOOBIG beyond 1 GiB. */
int dicom_bulk_get(const char *path, const char *bulk_path,
                   unsigned char **data, size_t *len, struct err *e);

/* Frame `frame` (0-based) of the pixel data of the file at path: decode 0
 * gives it as stored (compressed: its fragments, by the Basic Offset
 * Table or one fragment per frame), decode 1 as native little endian
 * (Explicit VR Little Endian), decompressing.  *data malloc'd (caller
 * frees), *len bytes, ts receives the transfer syntax UID the bytes are
 * in.  ERR_NOTFOUND for no pixel data or a frame out of range,
 * ERR_UNSUPPORTED when it cannot be decoded (JPEG 2000), ERR_TOOBIG for
 * frames over 256 MiB. */
int dicom_frame_get(const char *path, int frame, int decode,
                    unsigned char **data, size_t *len, char ts[65],
                    struct err *e);

/* Where frame `frame` (0-based) lies in the file at path, when the file's
 * own bytes are the answer: native little-endian pixel data, which is
 * Explicit VR Little Endian whether decode is asked or not.  1 with
 * *offset and *len (bytes from the file's start) and ts set; 0 when the
 * frame must come from dicom_frame_get (compressed, big endian, ...);
 * ERR_NOTFOUND for a frame out of range.  Reads only the header: a
 * viewer asks for every frame of a study. */
int dicom_frame_span(const char *path, int frame, int decode,
                     uint64_t *offset, size_t *len, char ts[65],
                     struct err *e);

/* ---- synthetic CT slices (the demo) ----------------------------------- */

/* A UID "2.25.<the first 128 bits of SHA-256(text)>": the same text, the
 * same UID (deterministic synthetic data). */
void dicom_uid_from_text(const char *text, char out[65]);

/* One axial slice of a synthetic CT: CT Image Storage, explicit VR little
 * endian, 16-bit signed stored values (HU = stored * slope + intercept),
 * axial orientation, head first supine, windows BRAIN 40/80 then BONE
 * 500/2000.  Strings are borrowed; "" leaves a type 2 attribute empty. */
struct dcm_ct_slice {
    const char *study_uid, *series_uid, *sop_uid, *frame_of_ref_uid;
    const char *patient_name, *patient_id, *patient_birth_date;
    const char *patient_sex;
    const char *study_date, *study_time;       /* YYYYMMDD, HHMMSS */
    const char *study_description, *series_description;
    const char *accession, *institution;
    int series_number, instance_number;
    int rows, columns;
    double pixel_spacing;       /* mm, along rows and columns alike */
    double slice_thickness;     /* mm */
    double position[3];         /* ImagePositionPatient: the first pixel */
    double rescale_intercept, rescale_slope;
    const int16_t *pixels;      /* rows * columns, row by row (borrowed) */
};

/* Write s as a Part-10 file at path (created or replaced; not fsync'd).
 * ERR_INVALID for a bad size or UID, ERR_IO if it cannot be written. */
int dicom_write_ct_slice(const char *path, const struct dcm_ct_slice *s,
                         struct err *e);

/* ---- photos from a phone (VL Photographic Image, encapsulated JPEG) --- */

/* What a JPEG's frame header says.  photometric is "YBR_FULL_422" for
 * three YCbCr components (baseline JFIF/Exif), "RGB" for three
 * components an Adobe APP14 marker says are untransformed, "MONOCHROME2"
 * for one. */
struct dcm_jpeg_info {
    int rows, columns, samples;
    char photometric[16];
};

/* Read the header of the JPEG in jpeg[0..len): SOI, then markers up to
 * the first SOF.  ERR_INVALID with a reason when it is not a JPEG, not
 * baseline (SOF0: 8 bits, Huffman, sequential) or malformed. */
int dicom_jpeg_info(const unsigned char *jpeg, size_t len,
                    struct dcm_jpeg_info *out, struct err *e);

/* One photo (or ECG strip) taken for a case.  Strings are borrowed; ""
 * leaves a type 2 attribute empty. */
struct dcm_photo {
    const char *study_uid, *series_uid, *sop_uid;
    const char *patient_name, *patient_id;
    const char *patient_sex;                /* F, M, O or "" */
    const char *patient_age;                /* "072Y" or "" */
    const char *study_date, *study_time;    /* YYYYMMDD, HHMMSS */
    const char *acq_date, *acq_time;        /* when it was taken */
    const char *study_description, *series_description;
    const char *institution;
    int series_number, instance_number;
    const unsigned char *jpeg;              /* borrowed */
    size_t jpeg_len;
};

/* Write p as a Part-10 VL Photographic Image Storage instance at path
 * (created or replaced; not fsync'd), in the JPEG Baseline transfer
 * syntax: the pixel data is one fragment holding the JPEG bytes
 * unchanged (padded with one zero byte to an even length), after an
 * empty Basic Offset Table; Rows, Columns, SamplesPerPixel and
 * PhotometricInterpretation come from the JPEG's header (info, if not
 * NULL, receives them).  ERR_INVALID for a JPEG dicom_jpeg_info refuses
 * or a bad UID, ERR_IO if it cannot be written. */
int dicom_write_photo(const char *path, const struct dcm_photo *p,
                      struct dcm_jpeg_info *info, struct err *e);

#ifdef __cplusplus
}
#endif
#endif
