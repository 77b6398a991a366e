#!/bin/sh
# handover_links_hospital_ct: the hospital's own CT, stored by its
# scanner (C-STORE), is linked by the receiving neurologist to the crew's
# pre-arrival case in one case.link: the case names it, the neurologist
# sees its images, prearrival says arrived (when, by whom, which study),
# the crew hears case.arrived and sees "arrived" — but never the CT.
# Repeated: the same case; another study: conflict; a study not the
# hospital's: not_found; the crew linking: forbidden.
. "$(dirname "$0")/lib.sh"

hashi_init
"$SERVER" clinic add --data "$DATA" --name "North EMS" --kind ems \
    >>"$T_TMP/admin.log" 2>&1 || fail "clinic add --kind ems"
"$SERVER" clinic add-ae --data "$DATA" --name "Demo City Hospital" \
    --calling-ae CITYCT >>"$T_TMP/admin.log" 2>&1 || fail "add-ae CITYCT"
"$SERVER" clinic add-ae --data "$DATA" --name "Demo Rural Clinic" \
    --calling-ae RURALCT >>"$T_TMP/admin.log" 2>&1 || fail "add-ae RURALCT"
user_add crew-n1 "North EMS" crew
oncall_set neurology demo-neuro
hashi_start
C=$(login crew-n1)
N1=$(login demo-neuro)

now=$($PY -c 'import time; print(int(time.time() * 1000))')
assert_eq 201 "$(api POST /api/cases "$C" '{"case_id":"ems-h1",
"question":"Aphasia.","priority":"stat","specialty":"neurology",
"prearrival":{"last_known_well":'"$now"',"eta_min":12,
"destination":"Demo City Hospital"}}')" "the pre-arrival case"

ct=$(study handover-ct 3 --seed 71)
other=$(study handover-other 2 --seed 72)
store_as CITYCT "$ct"/*.dcm
store_as RURALCT "$other"/*.dcm
ct_uid=$(attr_of "$(ls "$ct"/*.dcm | head -1)" StudyInstanceUID)
other_uid=$(attr_of "$(ls "$other"/*.dcm | head -1)" StudyInstanceUID)
link() {    # TOKEN STUDY
    api POST /api/cases/ems-h1/link "$1" '{"study_uid":"'"$2"'"}'
}

# refused, nothing recorded
assert_eq 403 "$(link "$C" "$ct_uid")" "the crew cannot link"
assert_eq 404 "$(link "$N1" "$other_uid")" "a study not the hospital's"
assert_eq "not_found" "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "not_found code"
assert_eq 404 "$(link "$N1" 1.2.3.4.5)" "no such study"
assert_eq "None" "$(api GET /api/cases/ems-h1 "$N1" >/dev/null; jget \
    "$T_TMP/body" 'd["case"]["prearrival"]["arrived_at"]')" "not arrived yet"
assert_eq 404 "$(http GET "/dicomweb/studies/$ct_uid/metadata" "$N1")" \
    "CT hidden before the link"

# the button's choices: the hospital's studies since the case, not others
assert_eq 200 "$(api GET /api/cases/ems-h1/link "$N1")" "link candidates"
assert_eq "['$ct_uid']" "$(jget "$T_TMP/body" \
    '[x["study_uid"] for x in d["studies"]]')" "only the hospital's CT offered"
assert_eq 403 "$(api GET /api/cases/ems-h1/link "$C")" "not for the crew"

# the hand-over, over hashi.v1 (the page's path)
wsc session --token "$N1" --idle 1 --timeout 10 --send \
    '{"type":"case.link","id":"l1","case_id":"ems-h1","study_uid":"'"$ct_uid"'"}' \
    >"$T_TMP/ws.link" || fail "neurologist's session"
assert_eq "True $ct_uid demo-neuro" "$(jlines "$T_TMP/ws.link" '[
    "%s %s %s" % (m["ok"], m["result"]["case"]["prearrival"]["arrived_study"],
    m["result"]["case"]["prearrival"]["arrived_by"])
    for m in L if m.get("id") == "l1"][0]')" "case.link answered"
assert_eq 200 "$(api GET /api/cases/ems-h1 "$N1")" "the case after"
assert_eq "True True" "$(jget "$T_TMP/body" '"%s %s" % (
    "'"$ct_uid"'" in d["case"]["study_uids"],
    d["case"]["prearrival"]["arrived_at"] >= '"$now"')')" \
    "the case names the CT and says when it arrived"
assert_eq "arrived:demo-neuro eta" "$(jget "$T_TMP/body" '" ".join(
    s["step"] + (":" + s["by"] if s["step"] == "arrived" else "")
    for s in d["case"]["timeline"] if s["step"] in ("eta", "arrived"))')" \
    "the arrival (before its ETA) and the ETA in the one timeline, by time"
assert_eq 3 "$(qido_count "$N1" "/dicomweb/studies/$ct_uid/instances")" \
    "the neurologist sees the CT"

# the crew hears it and sees "arrived", not the CT
assert_eq 200 "$(api GET '/api/events?after=0' "$C")" "crew's events"
assert_eq "case.arrived $ct_uid" "$(jget "$T_TMP/body" '[
    "%s %s" % (e["kind"], e["body"]["case"]["prearrival"]["arrived_study"])
    for e in d["events"] if e["kind"] == "case.arrived"][0]')" \
    "case.arrived to the crew"
assert_eq 404 "$(http GET "/dicomweb/studies/$ct_uid/metadata" "$C")" \
    "the crew never sees the CT"

# repeated: the same; another study: conflict
assert_eq 200 "$(link "$N1" "$ct_uid")" "the same link again"
assert_eq 409 "$(link "$N1" "$other_uid")" "another study"
assert_file_has "$T_TMP/body" "already linked" "conflict reason"
audit_has case.link ems-h1 "the hand-over audited"
pass
