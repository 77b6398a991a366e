/*
 * access — who may see what: the one place that states the visibility
 * rule, for cases and for studies.
 *
 *   admin       every case and every study
 *   requester   its clinic's cases and studies
 *   specialist  the cases of its specialties, named to it, claimed by it
 *               or that it takes part in (escalated to it, wrote in);
 *               the studies attached to those cases (when the study is
 *               the case's clinic's, or the hospital's study linked to
 *               a pre-arrival case at hand-over)
 *   gateway     the cases it created; no study (it uploads, it does not
 *               read images)
 *   crew        its ambulance service's cases and studies (the photos
 *               its crews took); no clinic's or hospital's study
 *
 * Anything else is ERR_NOTFOUND to the caller, never "forbidden".
 *
 * Cases: ACCESS_CASE_VISIBLE is spliced into cases.c's SQL.  Studies:
 * access_scope() hands the store its part of the rule as data (an SQL
 * predicate and the values it binds, store.h), so the store applies it
 * without knowing roles or the consult tables.
 */
#ifndef HASHI_ACCESS_H
#define HASHI_ACCESS_H

#include <stdint.h>

#include "auth.h"
#include "store.h"

/*
 * SQL boolean over a case row `c` and the caller `u`, a row of columns
 * id (access_who_id), role and clinic_id.  Uses the tables cases,
 * user_specialties, case_participants and case_gateways.
 */
#define ACCESS_CASE_VISIBLE                                                \
    "(u.role = 'admin'"                                                    \
    " OR (u.role IN ('requester', 'crew') AND c.clinic_id = u.clinic_id)" \
    " OR (u.role = 'gateway' AND c.clinic_id = u.clinic_id"                \
    "   AND EXISTS (SELECT 1 FROM case_gateways g"                         \
    "               WHERE g.case_id = c.case_id AND g.gateway_id = u.id))" \
    " OR (u.role = 'specialist' AND (c.specialist_id = u.id"               \
    "   OR c.claimed_by = u.id"                                            \
    "   OR EXISTS (SELECT 1 FROM user_specialties us"                      \
    "              WHERE us.user_id = u.id AND us.specialty = c.specialty)" \
    "   OR EXISTS (SELECT 1 FROM case_participants p"                      \
    "              WHERE p.case_id = c.case_id AND p.user_id = u.id))))"

/* The id ACCESS_CASE_VISIBLE knows the caller by: the user id, or a
 * gateway's gateway id. */
int64_t access_who_id(const struct principal *who);

/* The studies `who` may see, for the store's queries and lookups.  The
 * scope points at static text and copies the values: it outlives who.
 * who NULL: nothing is visible. */
void access_scope(const struct principal *who, struct store_scope *scope);

#endif
