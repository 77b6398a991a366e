# crew_sees_only_its_service: `clinic add --kind ems` makes an ambulance
# service and `user add --role crew` its crews (a crew in a rural clinic,
# a requester in a service: refused).  A crew creates a case that reaches
# the specialty like any other; a crew of another service, and a clinic's
# requester, get 404 for it; a crew gets 404 for a clinic's study (QIDO
# lists nothing, WADO-RS and the case's study are hidden), as for one that
# does not exist; over hashi.v1 its welcome says role "crew".
. "$(dirname "$0")/lib.sh"

hashi_init
admin() { "$SERVER" "$@" >>"$T_TMP/admin.log" 2>&1; }
admin clinic add --data "$DATA" --name "North EMS" --kind ems ||
    fail "clinic add --kind ems"
admin clinic add --data "$DATA" --name "South EMS" --kind ems ||
    fail "second service"
admin clinic add --data "$DATA" --name "X" --kind ambulance
assert_eq 1 $? "clinic add --kind ambulance: usage"
user_add crew-n1 "North EMS" crew
user_add crew-n2 "North EMS" crew
user_add crew-s1 "South EMS" crew
echo pw | admin user add --data "$DATA" --login bad1 \
    --clinic "Demo Rural Clinic" --role crew
assert_eq 1 $? "a crew in a rural clinic: refused"
assert_file_has "$T_TMP/admin.log" "role crew needs an ambulance service" \
    "why the crew was refused"
echo pw | admin user add --data "$DATA" --login bad2 --clinic "North EMS" \
    --role requester
assert_eq 1 $? "a requester in a service: refused"
assert_file_has "$T_TMP/admin.log" "is an ambulance service" \
    "why the requester was refused"
hashi_start
CN1=$(login crew-n1)
CN2=$(login crew-n2)
CS1=$(login crew-s1)
R=$(login demo-requester)
N1=$(login demo-neuro)

# -- a clinic's study, and a case naming it
ct=$(study crew-ct 2)
assert_eq 200 "$(stow "$R" "$ct"/*.dcm)" "the clinic's study"
st=$(attr_of "$(ls "$ct"/*.dcm | head -1)" StudyInstanceUID)
assert_eq 201 "$(api POST /api/cases "$R" "{\"case_id\":\"clinic-1\",
\"question\":\"Bleed?\",\"priority\":\"stat\",\"specialty\":\"neurology\",
\"study_uids\":[\"$st\"]}")" "clinic case"

# -- the crew's case
assert_eq 201 "$(api POST /api/cases "$CN1" '{"case_id":"ems-1",
"question":"Left arm weak, speech slurred.","priority":"stat",
"specialty":"neurology","study_uids":["'"$st"'"]}')" "crew's case"
assert_eq 200 "$(api GET /api/cases/ems-1 "$CN2")" "same service's crew"
assert_eq 200 "$(api GET /api/cases/ems-1 "$N1")" "the stroke team"
assert_eq 201 "$(api POST /api/cases/ems-1/messages "$CN2" \
    '{"message_id":"m-1","text":"10 min out."}')" "crew writes in it"

# -- not visible: another service's crew, a clinic's requester
for who in CS1 R; do
    eval tok=\$$who
    assert_eq 404 "$(api GET /api/cases/ems-1 "$tok")" "ems-1 as $who"
    assert_eq not_found "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
        "code of ems-1 as $who"
    assert_eq 200 "$(api GET /api/cases "$tok")" "list as $who"
    assert_eq False "$(jget "$T_TMP/body" \
        '"ems-1" in [c["case_id"] for c in d["cases"]]')" "list as $who"
done
assert_eq 404 "$(api GET /api/cases/clinic-1 "$CN1")" "clinic case as crew"
assert_eq 200 "$(api GET /api/cases "$CN1")" "list as crew"
assert_eq "['ems-1']" "$(jget "$T_TMP/body" \
    '[c["case_id"] for c in d["cases"]]')" "the crew lists its own"

# -- no clinic's study, even one its case names
assert_eq 0 "$(qido_count "$CN1" "/dicomweb/studies?limit=100")" \
    "QIDO as crew"
assert_eq 2 "$(qido_count "$R" "/dicomweb/studies/$st/instances")" \
    "QIDO as the clinic"
assert_eq 404 "$(http GET "/dicomweb/studies/$st" "$CN1" \
    -H 'Accept: multipart/related; type="application/dicom"')" \
    "WADO-RS as crew"
assert_eq 404 "$(http GET "/dicomweb/studies/1.2.3.404" "$CN1" \
    -H 'Accept: multipart/related; type="application/dicom"')" \
    "WADO-RS of a study that does not exist"

# -- hashi.v1 knows the role
wsc session --token "$CN1" --idle 1 --timeout 10 >"$T_TMP/ws" ||
    fail "crew session"
assert_eq "crew North EMS" "$(jlines "$T_TMP/ws" \
    '"%s %s" % (W["user"]["role"], W["user"]["clinic"])')" "welcome"
pass
