#!/bin/sh
# cross_clinic_write_refused: a clinic cannot write into another clinic's
# study.  Clinic A sends a 2-slice study and a case naming it.  Then clinic
# B tries to add instances to it:
#  - by STOW-RS with A's Study and Series UIDs (another patient's image):
#    409, the instance failed with FailureReason 0x0124 and ErrorComment
#    "refused", and the answer says nothing of A (no patient, no clinic);
#  - by STOW-RS with a new Study UID but A's Series UID, and with A's very
#    file (A's SOP Instance UID): refused the same way;
#  - by C-STORE from B's own calling AE: status 0124 "refused";
# and every time A's study keeps its 2 instances, the case counts 2
# images, and the audit log has a reject line with B's actor and the study.
# A PatientID of A's sent by B with a new study does not join A's patient:
# B's study lands under B's own patient, A's study stays A's alone.
# Clinic A's own new instance still lands (3 instances, 3 images).
. "$(dirname "$0")/lib.sh"

hashi_init
user_add req-b "Clinic B" requester
"$SERVER" clinic add-ae --data "$DATA" --name "Clinic B" \
    --calling-ae CLINIC_B >>"$T_TMP/admin.log" 2>&1 ||
    fail "clinic add-ae: $(tail -2 "$T_TMP/admin.log")"
hashi_start
A=$(login demo-requester)
B=$(login req-b)

ST=$(study ct2-xclinic 2 --random-uids --patient-id XCLIN-A)
assert_eq 200 "$(stow "$A" "$ST"/*.dcm)" "STOW of clinic A's study"
f=$(ls "$ST"/*.dcm | head -1)
st=$(attr_of "$f" StudyInstanceUID)
se=$(attr_of "$f" SeriesInstanceUID)
a_name=$(attr_of "$f" PatientName)
assert_eq 201 "$(api POST /api/cases "$A" "{\"case_id\":\"xc-1\",
\"question\":\"Bleed?\",\"priority\":\"stat\",\"specialty\":\"neurology\",
\"study_uids\":[\"$st\"]}")" "case naming the study"

# A's study as A sees it: instances in QIDO and images of the case.
a_state() {
    qido "$A" "/dicomweb/studies?StudyInstanceUID=$st"
    _n=$($PY "$DW" values "$T_TMP/body" 00201208)
    api GET /api/cases/xc-1 "$A" >/dev/null
    echo "$_n $(jget "$T_TMP/body" 'd["case"]["images"]["received"]')"
}
assert_eq "2 2" "$(a_state)" "A's study before B's attempts"

# The failed item of a STOW answer: "reason comment", and nothing of A.
refused() {    # CODE WHAT
    assert_eq 409 "$1" "$2: HTTP status"
    assert_eq "292 refused" "$(jget "$T_TMP/body" '"%s %s" % (
        d["00081198"]["Value"][0]["00081197"]["Value"][0],
        d["00081198"]["Value"][0]["00000902"]["Value"][0])')" \
        "$2: FailureReason 0x0124 and ErrorComment"
    assert_eq "0 False" "$(jget "$T_TMP/body" '"%d %s" % (
        len(d["00081199"]["Value"]), "00081190" in d)')" \
        "$2: nothing stored, no RetrieveURL"
    for secret in XCLIN-A "$a_name" "Demo Rural" "clinic"; do
        assert_file_lacks "$T_TMP/body" "$secret" "$2: the answer"
    done
}

# -- B by STOW-RS: A's Study and Series UIDs, B's patient.
$PY "$DW" rewrite "$f" "$T_TMP/b1.dcm" SOPInstanceUID=2.25.7001001 \
    PatientID=XCLIN-B PatientName=Intruder^B
refused "$(stow "$B" "$T_TMP/b1.dcm")" "A's study by B"
assert_eq "2 2" "$(a_state)" "A's study after B's STOW"
audit_has reject "\"req-b\".*\"$st\".*\"denied\"" "audit of B's STOW"

# -- a new Study UID around A's Series UID; A's own file (A's SOP UID).
$PY "$DW" rewrite "$f" "$T_TMP/b2.dcm" SOPInstanceUID=2.25.7001002 \
    StudyInstanceUID=2.25.7001003 PatientID=XCLIN-B
refused "$(stow "$B" "$T_TMP/b2.dcm")" "A's series by B"
assert_eq 0 "$(qido_count "$B" "/dicomweb/studies?PatientID=XCLIN-B")" \
    "no study was made for B's refused instance"
refused "$(stow "$B" "$f")" "A's own file by B"
assert_eq "2 2" "$(a_state)" "A's study after B's other tries"

# -- B by C-STORE from its own AE.
storescu -d -aet CLINIC_B -aec HASHI 127.0.0.1 "$DPORT" "$T_TMP/b1.dcm" \
    >"$T_TMP/storescu.log" 2>&1
assert_eq 0x0124 "$(sed -n 's/^D: DIMSE Status *: \(0x[0-9a-f]*\).*/\1/p' \
    "$T_TMP/storescu.log" | tail -1)" "C-STORE status: Refused: Not Authorized"
assert_file_has "$T_TMP/storescu.log" "LO \[refused\] .*ErrorComment" \
    "the Error Comment"
assert_file_lacks "$T_TMP/storescu.log" "XCLIN-A" "storescu's log"
assert_eq "2 2" "$(a_state)" "A's study after B's C-STORE"
audit_has reject "\"ae:CLINIC_B\".*$st" "audit of B's C-STORE"

# -- A's PatientID with a new study of B's: B's own patient, not A's.
$PY "$DW" rewrite "$f" "$T_TMP/b3.dcm" SOPInstanceUID=2.25.7001004 \
    StudyInstanceUID=2.25.7001005 SeriesInstanceUID=2.25.7001006
assert_eq 200 "$(stow "$B" "$T_TMP/b3.dcm")" "B's study with A's PatientID"
assert_eq 1 "$(qido_count "$B" "/dicomweb/studies?PatientID=XCLIN-A")" \
    "B lists only its own study of that PatientID"
assert_eq 2.25.7001005 "$($PY "$DW" values "$T_TMP/body" 0020000D)" \
    "B's study for that PatientID"
assert_eq 1 "$(qido_count "$A" "/dicomweb/studies?PatientID=XCLIN-A")" \
    "A lists only its own study of that PatientID"
assert_eq "$st" "$($PY "$DW" values "$T_TMP/body" 0020000D)" \
    "A's study for that PatientID"
assert_eq "2 2" "$($PY - "$DATA/hashi.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(*db.execute(
    "SELECT count(DISTINCT p.id), count(DISTINCT p.clinic_id) FROM studies s"
    " JOIN patients p ON p.id = s.patient_ref"
    " WHERE p.patient_id = 'XCLIN-A' AND p.clinic_id = s.clinic_id")
    .fetchone())
EOF
)" "two patients of that PatientID, each its own clinic's"
assert_eq "2 2" "$(a_state)" "A's study after B's study of the same PatientID"

# -- A itself still adds to its study.
$PY "$DW" rewrite "$f" "$T_TMP/a3.dcm" SOPInstanceUID=2.25.7001007
assert_eq 200 "$(stow "$A" "$T_TMP/a3.dcm")" "A adds an instance"
assert_eq "3 3" "$(a_state)" "A's study after A's own instance"
healthz_ok "the refusals"
pass
