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
 *
 * The route handler for http.c's table (authentication required).
 */
#ifndef HASHI_DICOMWEB_H
#define HASHI_DICOMWEB_H

#include "http.h"

void dicomweb_handle(struct http_req *r);

/* One audit line for r (actor and remote address from r): what the
 * DICOMweb modules (dicomweb.c, wado_meta.c) record of each request. */
void dicomweb_audit(struct http_req *r, const char *action,
                    const char *object, const char *outcome,
                    const char *detail);

#endif
