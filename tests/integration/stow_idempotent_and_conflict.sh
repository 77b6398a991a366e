#!/bin/sh
# STOW-RS is idempotent and never overwrites: the same 10-slice study
# sent twice gives 200 both times and is stored once; an instance with an
# existing SOP Instance UID but other bytes (one pixel, or PatientName) is
# refused with 409 and a reason, the first copy is still served byte for
# byte, and the conflict is audited.  A request mixing a new instance
# with a conflicting one is a partial success (202).
. "$(dirname "$0")/lib.sh"

ST=$(study ct10-stow 10 --patient-id STOW10 --seed 10) || exit 1
hashi_setup
tok=$(login demo-requester) || exit 1

first=$ST/CT00001.dcm
study_uid=$(attr_of "$first" StudyInstanceUID)
series_uid=$(attr_of "$first" SeriesInstanceUID)
ipath="/dicomweb/studies/$study_uid/series/$series_uid/instances"

code=$(stow "$tok" "$ST"/*.dcm)
assert_eq 200 "$code" "first STOW-RS of 10 instances ($(head -c 300 "$T_TMP/body"))"
case "$(header Content-Type)" in
    application/dicom+json*) ;;
    *) fail "STOW-RS reply Content-Type '$(header Content-Type)'" ;;
esac
$PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$T_TMP/body" ||
    fail "STOW-RS reply is not JSON: $(head -c 300 "$T_TMP/body")"
assert_file_has "$T_TMP/body" '"00081199"' \
    "ReferencedSOPSequence in the STOW-RS reply"
assert_eq 10 "$(qido_count "$tok" "$ipath?limit=1000")" "instances after 1st"

code=$(stow "$tok" "$ST"/*.dcm)
assert_eq 200 "$code" "second STOW-RS of the same 10 (idempotent)"
assert_eq 10 "$(qido_count "$tok" "$ipath?limit=1000")" "instances after 2nd"
assert_eq 1 "$(qido_count "$tok" "/dicomweb/studies?PatientID=STOW10")" \
    "studies after 2nd"
assert_eq 10 "$($PY "$DW" values "$T_TMP/body" 00201208)" \
    "NumberOfStudyRelatedInstances after 2nd"

# Every stored instance is the exact file that was posted.
n=$($PY "$DW" verify-wado "$HURL" "$CACERT" "$tok" exact "$ST"/*.dcm) ||
    fail "WADO-RS bytes differ from the posted files"
assert_eq 10 "$n" "instances served byte for byte"

# ---- conflicts: same UID, other bytes
victim=$ST/CT00003.dcm
vsop=$(attr_of "$victim" SOPInstanceUID)
$PY "$DW" rewrite "$victim" "$T_TMP/pixel.dcm" PixelFlip=200000
$PY "$DW" rewrite "$victim" "$T_TMP/name.dcm" PatientName='OTHER^PATIENT'
cmp -s "$victim" "$T_TMP/pixel.dcm" && fail "pixel rewrite changed nothing"
assert_eq "$vsop" "$(attr_of "$T_TMP/name.dcm" SOPInstanceUID)" \
    "rewritten copy keeps the SOP UID"

for bad in pixel name; do
    code=$(stow "$tok" "$T_TMP/$bad.dcm")
    cp "$T_TMP/body" "$T_TMP/conflict-$bad.json"
    assert_eq 409 "$code" "STOW-RS of a changed copy ($bad) of $vsop"
    assert_file_has "$T_TMP/body" 'conflict|differ|exists' \
        "the reason in the 409 reply ($bad)"
    assert_file_has "$T_TMP/body" "$vsop" "the failed UID in the 409 reply"
    wado "$tok" "$study_uid" "$series_uid" "$vsop" "$T_TMP/got.dcm"
    assert_same_file "$victim" "$T_TMP/got.dcm" \
        "the original of $vsop after the $bad conflict"
done
audit_has conflict "$vsop" "conflict audit line"
assert_eq 10 "$(qido_count "$tok" "$ipath?limit=1000")" \
    "instances after the conflicts"
qido "$tok" "/dicomweb/studies?PatientID=STOW10"
assert_eq SYNTHETIC^PATIENT "$($PY "$DW" values "$T_TMP/body" 00100010)" \
    "PatientName after the conflicting copy"

# ---- a request with one new instance and one conflict: 202, the new one in
$PY "$DW" rewrite "$ST/CT00004.dcm" "$T_TMP/new.dcm" \
    SOPInstanceUID=2.25.1234567890123456789012345 InstanceNumber=11
code=$(stow "$tok" "$T_TMP/new.dcm" "$T_TMP/pixel.dcm")
assert_eq 202 "$code" "STOW-RS with one new and one conflicting instance"
assert_file_has "$T_TMP/body" '"00081198"' "FailedSOPSequence in the 202"
assert_eq 11 "$(qido_count "$tok" "$ipath?limit=1000")" \
    "instances after the partial success"
wado "$tok" "$study_uid" "$series_uid" 2.25.1234567890123456789012345 \
    "$T_TMP/got.dcm"
assert_same_file "$T_TMP/new.dcm" "$T_TMP/got.dcm" "the new instance"

# ---- a restart changes none of it
hashi_stop || fail "server needed SIGKILL to stop"
hashi_start
tok=$(login demo-requester) || exit 1
assert_eq 11 "$(qido_count "$tok" "$ipath?limit=1000")" \
    "instances after a restart"
wado "$tok" "$study_uid" "$series_uid" "$vsop" "$T_TMP/got.dcm"
assert_same_file "$victim" "$T_TMP/got.dcm" "the original after restart"

pass
