/*
 * imageinfo — what the web viewer needs beside rendered JPEGs to measure
 * and read values on a slow link: a series' geometry in one small JSON,
 * and the stored value of one pixel.  dicomweb.c routes here after
 * checking the path's UIDs; every lookup goes through access_scope (out
 * of scope is 404, as for what does not exist).
 *
 *   GET .../studies/{st}/series/{se}/geometry          application/json
 *       {"study", "series", "instances": [{"sop", "number", "frames",
 *        "rows", "columns", "pixel_spacing": [row, column] mm,
 *        "orientation": [6] (ImageOrientationPatient), "position": [3]
 *        (ImagePositionPatient), "slice_location", "window": [center,
 *        width] (the first VOI window)}]}, in the store's order; an
 *       attribute the file lacks is null.
 *   GET .../instances/{sop}[/frames/{n}]/probe?x=X&y=Y  application/json
 *       {"x", "y", "frame", "stored", "value", "unit"}: the stored value
 *       of column X, row Y (from 0) of the frame, value = stored x
 *       RescaleSlope + RescaleIntercept, unit "HU" for CT (or a
 *       RescaleType), else null.  400 for X or Y missing or outside the
 *       image, 422 for colour images.
 *
 * Files are read on the server's worker pool (the DCMTK adapter's
 * dicom_write_json and dicom_frame_get), never on the lws thread.
 */
#ifndef HASHI_IMAGEINFO_H
#define HASHI_IMAGEINFO_H

#include "http.h"

void imageinfo_geometry(struct http_req *r, const char *study,
                        const char *series);
/* frame: the {n} path segment, or NULL for frame 1. */
void imageinfo_probe(struct http_req *r, const char *study,
                     const char *series, const char *sop,
                     const char *frame);

#endif
