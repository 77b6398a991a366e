/*
 * access — the visibility rule (see access.h).  The case rule is the
 * macro in access.h; the study rule below is built from it, so a change
 * to who sees a case changes who sees its studies with it.
 */
#include "access.h"

#include <string.h>

/* A requester's studies: its clinic's (clinic 0, "none", is nobody's);
 * a crew's: its service's (its photos). */
static const char REQUESTER_STUDIES[] =
    "studies.clinic_id = :scope_clinic AND studies.clinic_id <> 0";

/* A specialist's studies: those attached to a case it may see, when the
 * study is the case's clinic's (naming another clinic's study in a case
 * opens nothing), or is the hospital's study its receiving team linked
 * to a pre-arrival case (case.link, which checked the study was theirs). */
static const char SPECIALIST_STUDIES[] =
    "EXISTS (SELECT 1 FROM case_studies cs"
    " JOIN cases c ON c.case_id = cs.case_id,"
    " (SELECT :scope_user AS id, 'specialist' AS role, 0 AS clinic_id) u"
    " WHERE cs.study_uid = studies.study_uid"
    " AND (c.clinic_id = studies.clinic_id OR EXISTS (SELECT 1"
    "   FROM case_prearrival pa WHERE pa.case_id = c.case_id"
    "   AND pa.arrived_study = studies.study_uid))"
    " AND " ACCESS_CASE_VISIBLE ")";

int64_t access_who_id(const struct principal *who)
{
    return !strcmp(who->role, "gateway") ? who->gateway_id : who->user_id;
}

static void scope_param(struct store_scope *sc, const char *name,
                        int64_t value)
{
    sc->params[sc->nparams].name = name;
    sc->params[sc->nparams].value = value;
    sc->nparams++;
}

void access_scope(const struct principal *who, struct store_scope *scope)
{
    memset(scope, 0, sizeof *scope);    /* sql NULL: nothing */
    if (!who)
        return;
    if (!strcmp(who->role, "admin")) {
        scope->sql = "1";
    } else if (!strcmp(who->role, "requester") ||
               !strcmp(who->role, "crew")) {
        scope->sql = REQUESTER_STUDIES;
        scope_param(scope, ":scope_clinic", who->clinic_id);
    } else if (!strcmp(who->role, "specialist")) {
        scope->sql = SPECIALIST_STUDIES;
        scope_param(scope, ":scope_user", who->user_id);
    }
}
