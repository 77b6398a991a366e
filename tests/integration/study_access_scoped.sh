#!/bin/sh
# study_access_scoped: who may see a study.  Clinic A's requester sends a
# study and a neurology case naming it.  Then:
#  - the requester of clinic B gets 404 for the study on QIDO (it is not
#    listed, and its series/instances are 404), WADO-RS and rendered — the
#    same answers as for a study that does not exist;
#  - a cardiologist (another specialty) gets the same 404s;
#  - the neurologist, to whom the case is routed, sees the study through
#    the case: QIDO lists it, WADO-RS returns the stored bytes, rendered is
#    a JPEG;
#  - clinic A's requester sees it as before.
. "$(dirname "$0")/lib.sh"

two_clinics
A=$R N=$N1 C=$CARDIO

ST=$(study ct3-scope 3 --random-uids --patient-id SCOPE-A)
assert_eq 200 "$(stow "$A" "$ST"/*.dcm)" "STOW of clinic A's study"
f=$(ls "$ST"/*.dcm | head -1)
st=$(attr_of "$f" StudyInstanceUID)
se=$(attr_of "$f" SeriesInstanceUID)
sop=$(attr_of "$f" SOPInstanceUID)
inst="/dicomweb/studies/$st/series/$se/instances/$sop"

# Before any case: only clinic A sees it; the neurologist does not.
assert_eq 1 "$(qido_count "$A" "/dicomweb/studies?PatientID=SCOPE-A")" \
    "clinic A lists its study"
assert_eq 0 "$(qido_count "$N" "/dicomweb/studies?PatientID=SCOPE-A")" \
    "no case yet: the neurologist does not list it"
assert_eq 404 "$(http GET "$inst" "$N")" "no case yet: neurologist WADO"

assert_eq 201 "$(api POST /api/cases "$A" "{\"case_id\":\"scope-1\",
\"question\":\"Bleed?\",\"priority\":\"stat\",\"specialty\":\"neurology\",
\"patient\":{\"age\":70,\"sex\":\"M\"},\"study_uids\":[\"$st\"]}")" \
    "case naming the study"

# What a study that does not exist answers, to compare with.
ghost="/dicomweb/studies/1.2.3.999/series/1.2.3.998/instances/1.2.3.997"
assert_eq 404 "$(http GET "$ghost" "$B")" "WADO of a study that does not exist"

for who in B C; do
    eval tok=\$$who
    assert_eq 0 "$(qido_count "$tok" "/dicomweb/studies?PatientID=SCOPE-A")" \
        "$who: QIDO by PatientID does not list it"
    assert_eq 0 "$(qido_count "$tok" "/dicomweb/studies?StudyInstanceUID=$st")" \
        "$who: QIDO by StudyInstanceUID does not list it"
    assert_eq 404 "$(http GET "/dicomweb/studies/$st/series" "$tok")" \
        "$who: QIDO series of the study"
    assert_eq 404 "$(http GET "/dicomweb/studies/$st/series/$se/instances" \
        "$tok")" "$who: QIDO instances of the series"
    assert_eq 404 "$(http GET "$inst" "$tok")" "$who: WADO-RS instance"
    assert_eq 404 "$(http GET "/dicomweb/studies/$st" "$tok")" \
        "$who: WADO-RS study"
    assert_eq 404 "$(http GET "$inst/rendered" "$tok")" "$who: rendered"
    assert_eq 404 "$(http GET "$inst/frames/1/rendered" "$tok")" \
        "$who: rendered frame"
    assert_eq 404 "$(api GET /api/cases/scope-1 "$tok")" "$who: the case"
    # The 404 says no more than for a study that does not exist.
    http GET "$inst" "$tok" >/dev/null
    code_seen=$(jget "$T_TMP/body" 'd["error"]["code"]')
    assert_eq not_found "$code_seen" "$who: error code"
done

# The neurologist now sees it through the case, bytes intact.
assert_eq 1 "$(qido_count "$N" "/dicomweb/studies?PatientID=SCOPE-A")" \
    "neurologist lists the study of a case routed to neurology"
wado "$N" "$st" "$se" "$sop" "$T_TMP/got.dcm"
assert_same_file "$f" "$T_TMP/got.dcm" "neurologist's WADO-RS bytes"
assert_eq 200 "$(http GET "$inst/rendered" "$N" -H 'Accept: image/jpeg')" \
    "neurologist: rendered"
assert_eq image/jpeg "$(header Content-Type)" "rendered Content-Type"
assert_eq 1 "$(qido_count "$A" "/dicomweb/studies?PatientID=SCOPE-A")" \
    "clinic A still lists its study"
pass
