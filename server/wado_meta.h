/*
 * wado_meta — the WADO-RS resources a viewer reads besides whole
 * instances (PS3.18 10.4): metadata (DICOM JSON), frames and bulk data.
 * dicomweb.c routes to them after checking the UIDs of the path; every
 * lookup goes through access_scope (out of scope is 404, as elsewhere).
 *
 *   .../studies/{st}[/series/{se}[/instances/{sop}]]/metadata
 *        application/dicom+json: one DICOM JSON object per instance, as
 *        DCMTK writes it (dicom_write_json), PixelData and binary values
 *        over DICOM_BULK_THRESHOLD bytes as BulkDataURIs
 *   .../instances/{sop}/frames/{n[,n...]}
 *        multipart/related; type="application/octet-stream", one part per
 *        frame; transfer-syntax: absent or 1.2.840.10008.1.2.1 decodes to
 *        native little endian, "*" or the stored syntax gives the stored
 *        bytes; anything else 406.  A single application/octet-stream part
 *        when that is what Accept asks for and one frame is named.
 *   .../instances/{sop}/bulkdata/{path}
 *        the value's bytes (little endian), multipart/related by default
 *        or a bare application/octet-stream; compressed PixelData comes
 *        as its frames, as stored.
 *
 * The work (parsing files, decoding frames) runs on the server's worker
 * pool, not on the lws thread; the answer is built in a temp file
 * (metadata, unlinked at once, streamed from its descriptor) or in one
 * buffer per request (frames, bulk data of one instance), so a study is
 * never in memory.
 */
#ifndef HASHI_WADO_META_H
#define HASHI_WADO_META_H

#include "http.h"

/* series and sop may be NULL (study or series level). */
void wado_metadata(struct http_req *r, const char *study, const char *series,
                   const char *sop);
/* list: the {frames} path segment, "1" or "1,3,7". */
void wado_frames(struct http_req *r, const char *study, const char *series,
                 const char *sop, const char *list);
/* bulk_path: the BulkDataURI's last segment (dicom.h's path form). */
void wado_bulkdata(struct http_req *r, const char *study,
                   const char *series, const char *sop,
                   const char *bulk_path);

#endif
