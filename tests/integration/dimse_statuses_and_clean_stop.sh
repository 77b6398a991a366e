#!/bin/sh
# The DICOM listener answers each C-STORE with the status its outcome
# deserves and audits it: new -> Success, same bytes again -> Success,
# same SOP Instance UID with other bytes -> Warning 0xB000 with a
# "conflict" Error Comment (original kept), a malformed UID -> 0xA900
# with the reason; an unmapped calling AE is refused at association (and
# audited), unless --accept-unknown-ae (and then it may not add to a
# clinic's study: 0x0124).  The server stops cleanly on
# SIGTERM and SIGINT (exit 0), and refuses bad settings with exit 1 and a
# missing data dir with exit 2, before listening.
. "$(dirname "$0")/lib.sh"

ST=$(study ct3-dimse 3 --patient-id DIMSEST --seed 33) || exit 1
hashi_setup
tok=$(login demo-admin) || exit 1
set -- "$ST"/*.dcm
orig=$1

send() {    # AET FILE: storescu -d; prints the DIMSE status, e.g. 0x0000
    storescu -d -aet "$1" -aec HASHI 127.0.0.1 "$DPORT" "$2" \
        >"$T_TMP/sc.log" 2>&1
    sed -n 's/^D: DIMSE Status *: \(0x[0-9a-f]*\).*/\1/p' "$T_TMP/sc.log" |
        tail -1
}

log "new, then the same bytes again"
assert_eq 0x0000 "$(send DEMO_CT "$orig")" "status of a new instance"
assert_eq 0x0000 "$(send DEMO_CT "$orig")" "status of the same bytes again"
sop=$(attr_of "$orig" SOPInstanceUID)
study_uid=$(attr_of "$orig" StudyInstanceUID)
series_uid=$(attr_of "$orig" SeriesInstanceUID)
audit_has store "\"object\": *\"$sop\".*\"outcome\": *\"ok\"" \
    "audit of the first store"
audit_has store "ae:DEMO_CT.*\"outcome\": *\"duplicate\"" \
    "audit of the duplicate"

log "same UID, other bytes: warning, original kept"
$PY - "$orig" "$T_TMP/conflict.dcm" "$T_TMP/bad.dcm" <<'EOF'
import sys, pydicom
d = pydicom.dcmread(sys.argv[1])
d.PatientName = "Other^Bytes"
d.save_as(sys.argv[2])
d = pydicom.dcmread(sys.argv[1])
d.SOPInstanceUID = "1.2.3.abc"
d.file_meta.MediaStorageSOPInstanceUID = "1.2.3.abc"
d.save_as(sys.argv[3])
EOF
assert_eq 0xb000 "$(send DEMO_CT "$T_TMP/conflict.dcm")" \
    "status of a conflicting instance"
assert_file_has "$T_TMP/sc.log" 'conflict: SOP Instance UID.*ErrorComment' \
    "Error Comment of the conflict"
audit_has conflict "\"object\": *\"$sop\"" "audit of the conflict"
wado "$tok" "$study_uid" "$series_uid" "$sop" "$T_TMP/back.dcm"
$PY - "$T_TMP/back.dcm" <<'EOF' || fail "the original was not kept"
import sys, pydicom
name = str(pydicom.dcmread(sys.argv[1]).PatientName)
sys.exit(0 if name != "Other^Bytes" else "overwritten: %s" % name)
EOF

log "malformed UID: refused with the reason"
assert_eq 0xa900 "$(send DEMO_CT "$T_TMP/bad.dcm")" \
    "status of an instance with a malformed UID"
assert_file_has "$T_TMP/sc.log" 'UID.*ErrorComment' "Error Comment"
audit_has reject 'ae:DEMO_CT.*1\.2\.3\.abc' "audit of the reject"

log "unknown calling AE"
echoscu -aet NOBODY_KNOWS -aec HASHI 127.0.0.1 "$DPORT" \
    >"$T_TMP/echo.log" 2>&1 && fail "echoscu from an unknown AE succeeded"
assert_file_has "$T_TMP/echo.log" 'Calling AE Title Not Recognized' \
    "echoscu's rejection"
audit_has associate 'ae:NOBODY_KNOWS.*"denied"' "audit of the refusal"

log "SIGTERM: clean stop"
kill -TERM "$HPID"
wait "$HPID"
rc=$?
HPID=""
assert_eq 0 "$rc" "exit status after SIGTERM"
assert_file_has "$T_TMP/server.log" 'info +stopped' "'stopped' in the log"

log "--accept-unknown-ae, then SIGINT"
hashi_start --accept-unknown-ae
$PY "$DW" rewrite "$2" "$T_TMP/own.dcm" StudyInstanceUID=2.25.3300001 \
    SeriesInstanceUID=2.25.3300002 SOPInstanceUID=2.25.3300003
assert_eq 0x0000 "$(send NOBODY_KNOWS "$T_TMP/own.dcm")" \
    "status from an unknown AE when accepted"
assert_eq 0x0124 "$(send NOBODY_KNOWS "$2")" \
    "an unknown AE adding to a clinic's study: refused"
kill -INT "$HPID"
wait "$HPID"
rc=$?
HPID=""
assert_eq 0 "$rc" "exit status after SIGINT"

log "bad settings: exit 1 before listening; no data dir: exit 2"
"$SERVER" --data "$DATA" --listen 127.0.0.1:99999 >"$T_TMP/bad.log" 2>&1
assert_eq 1 "$?" "exit status for --listen 127.0.0.1:99999"
assert_file_has "$T_TMP/bad.log" 'listen' "message for the bad port"
"$SERVER" --data "$DATA" --log-level loud >"$T_TMP/bad.log" 2>&1
assert_eq 1 "$?" "exit status for --log-level loud"
echo "dicom = localhost" >"$T_TMP/bad.conf"
"$SERVER" --data "$DATA" --config "$T_TMP/bad.conf" >"$T_TMP/bad.log" 2>&1
assert_eq 1 "$?" "exit status for a bad config file"
assert_file_has "$T_TMP/bad.log" 'bad.conf:1' "message names file and line"
"$SERVER" --data "$T_TMP/none" --listen "127.0.0.1:$HPORT" \
    >"$T_TMP/bad.log" 2>&1
assert_eq 2 "$?" "exit status for a data dir never initialised"
assert_file_has "$T_TMP/bad.log" 'init' "message suggests init"
pass
