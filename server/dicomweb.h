/*
 * dicomweb — DICOMweb (PS3.18) under /dicomweb: STOW-RS, QIDO-RS, WADO-RS
 * and rendered images, every lookup limited to what the caller may see
 * (access_scope of the principal; out of scope is 404).
 *
 *   POST /dicomweb/studies[/{study}]                       STOW-RS
 *   GET  /dicomweb/studies                                  QIDO-RS studies
 *   GET  /dicomweb/studies/{st}/series                      QIDO-RS series
 *   GET  /dicomweb/studies/{st}[/series/{se}]/instances     QIDO-RS
 *   GET  /dicomweb/studies/{st}[/series/{se}[/instances/{sop}]]  WADO-RS
 *   GET  .../instances/{sop}[/frames/{n}]/rendered          image/jpeg
 *   GET  .../series/{se}/geometry, .../instances/{sop}[/frames/{n}]/probe
 *        the web viewer's helpers (imageinfo.h)
 *
 * The route handler for http.c's table (authentication required).
 */
#ifndef HASHI_DICOMWEB_H
#define HASHI_DICOMWEB_H

#include "http.h"
#include "store.h"

void dicomweb_handle(struct http_req *r);

/* One audit line for r (actor and remote address from r): what the
 * DICOMweb modules (dicomweb.c, wado_meta.c) record of each request. */
void dicomweb_audit(struct http_req *r, const char *action,
                    const char *object, const char *outcome,
                    const char *detail);

/* The {n} of a .../frames/{n} path segment (1..1000000) into *n: 0, or
 * -1 when r has been answered 400. */
int dicomweb_frame_number(struct http_req *r, const char *seg, int *n);

/* The instances of study[/series[/sop]] (series, sop may be NULL) that
 * r's caller may see: 0 with *list (malloc'd, caller frees) of *n >= 1,
 * or -1 when r has been answered (404 "not_found" outside the caller's
 * scope, as for what does not exist) and audited as action on object. */
int dicomweb_instances(struct http_req *r, const char *action,
                       const char *object, const char *study,
                       const char *series, const char *sop,
                       struct store_instance **list, size_t *n);

#endif
