#!/bin/sh
# gateway_token_limited: a gateway token (`hashi-server gateway add`) gets
# what a gateway needs and nothing more.  It can STOW-RS, create a case
# and read that case (and list it alone); it cannot list or read another
# case of its clinic (404, as for a case that does not exist), nor a case
# of another gateway of the clinic; it cannot close, reopen, claim,
# answer or write in its own case (403), nor take over a taken case_id
# (409, without its content); it reads no study back (QIDO lists
# nothing, WADO-RS is 404).  The clinic's requester still sees the
# gateway's case and the study.
. "$(dirname "$0")/lib.sh"

hashi_init
gw() {    # NAME: a new gateway of the demo rural clinic; prints its token
    "$SERVER" gateway add --data "$DATA" --clinic "Demo Rural Clinic" \
        --name "$1" 2>>"$T_TMP/admin.log" || fail "gateway add $1"
}
G=$(gw edge-1)
G2=$(gw edge-2)
hashi_start
R=$(login demo-requester)

case_body() {    # ID [STUDY]
    echo "{\"case_id\":\"$1\",\"question\":\"Bleed?\",\"priority\":\"stat\",
\"specialty\":\"neurology\",\"study_uids\":[${2:+\"$2\"}]}"
}
assert_eq 201 "$(api POST /api/cases "$R" "$(case_body req-1)")" \
    "the requester's case"

# -- the gateway uploads and makes its case
ST=$(study ct2-gateway 2 --random-uids --patient-id GW-1)
assert_eq 200 "$(stow "$G" "$ST"/*.dcm)" "STOW-RS by the gateway"
f=$(ls "$ST"/*.dcm | head -1)
st=$(attr_of "$f" StudyInstanceUID)
se=$(attr_of "$f" SeriesInstanceUID)
sop=$(attr_of "$f" SOPInstanceUID)
assert_eq 201 "$(api POST /api/cases "$G" "$(case_body gw-1 "$st")")" \
    "the gateway creates its case"
assert_eq 200 "$(api POST /api/cases "$G" "$(case_body gw-1 "$st")")" \
    "the same create again (a retry)"
assert_eq 200 "$(api GET /api/cases/gw-1 "$G")" "the gateway reads its case"
assert_eq "gw-1 2" "$(jget "$T_TMP/body" \
    '"%s %s" % (d["case"]["case_id"], d["case"]["images"]["received"])')" \
    "its case, with the images"
assert_eq 200 "$(api GET /api/cases "$G")" "the gateway's list"
assert_eq "['gw-1']" "$(jget "$T_TMP/body" \
    '[c["case_id"] for c in d["cases"]]')" "only its own case"

# -- another case of its clinic: as if it did not exist
api GET /api/cases/no-such "$G" >/dev/null
cp "$T_TMP/body" "$T_TMP/missing.json"
for p in /api/cases/req-1 /api/cases/req-1/messages; do
    assert_eq 404 "$(api GET "$p" "$G")" "GET $p by the gateway"
done
assert_eq "$(cat "$T_TMP/missing.json")" "$(cat "$T_TMP/body")" \
    "a hidden case answers like a missing one"
assert_eq 404 "$(api POST /api/cases/req-1/close "$G")" \
    "closing another case"
assert_eq 409 "$(api POST /api/cases "$G" "$(case_body req-1)")" \
    "creating over the requester's case_id"
assert_file_lacks "$T_TMP/body" "Bleed" "the 409 answer"
assert_eq 404 "$(api GET /api/cases/gw-1 "$G2")" \
    "another gateway of the clinic reads the case"
assert_eq 200 "$(api GET /api/cases "$G2")" "the other gateway's list"
assert_eq "[]" "$(jget "$T_TMP/body" 'd["cases"]')" "the other gateway's list"

# -- its own case: read only
for act in close reopen claim; do
    assert_eq 403 "$(api POST "/api/cases/gw-1/$act" "$G")" "$act by the gateway"
done
assert_eq 403 "$(api POST /api/cases/gw-1/answer "$G" \
    '{"impression":"none"}')" "answer by the gateway"
assert_eq 403 "$(api POST /api/cases/gw-1/messages "$G" \
    '{"message_id":"gm-1","text":"hello"}')" "message by the gateway"
assert_eq 200 "$(api GET /api/cases/gw-1 "$G")" "the case after the refusals"
assert_eq "new 0" "$(jget "$T_TMP/body" \
    '"%s %d" % (d["case"]["status"], len(d["case"]["messages"]))')" \
    "nothing changed"

# -- no images back
assert_eq 0 "$(qido_count "$G" "/dicomweb/studies?PatientID=GW-1")" \
    "QIDO by the gateway"
assert_eq 404 "$(http GET "/dicomweb/studies/$st/series/$se/instances/$sop" \
    "$G")" "WADO-RS by the gateway"

# -- the clinic sees what the gateway sent
assert_eq 200 "$(api GET /api/cases/gw-1 "$R")" "the requester reads it"
assert_eq 1 "$(qido_count "$R" "/dicomweb/studies?PatientID=GW-1")" \
    "the requester lists the study"
pass
