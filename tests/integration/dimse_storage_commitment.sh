#!/bin/sh
# Storage Commitment (Push Model) over DIMSE: after storescu sends a
# study, a Storage Commitment SCU (tests/tools/commit_scu.cc) asks for its
# instances plus one never stored, one stored under another SOP class and
# one of another clinic: the N-EVENT-REPORT, on the same association, has
# event type 2 (some failed), commits exactly the stored ones and lists
# the other three as failed with reason 0112 (no such object instance).
# Asked for the stored ones alone: event type 1, all committed.
. "$(dirname "$0")/lib.sh"

ST=$(study sc2 2 --patient-id SC1 --seed 41) || exit 1
OT=$(study qr2-other 2 --patient-id QROTHER --seed 32) || exit 1
SCU="$HASHI_BUILD/tests/commit_scu"
[ -x "$SCU" ] || fail "$SCU not built (make)"
CT=1.2.840.10008.5.1.4.1.1.2
hashi_init
"$SERVER" clinic add --data "$DATA" --name "Clinic B" --kind rural \
    --calling-ae OTHERB >>"$T_TMP/admin.log" 2>&1 || fail "clinic add"
hashi_start
store_as STORESCU "$ST"/*.dcm
store_as OTHERB "$OT"/*.dcm
a=$(attr_of "$ST/CT00001.dcm" SOPInstanceUID)
b=$(attr_of "$ST/CT00002.dcm" SOPInstanceUID)
theirs=$(attr_of "$OT/CT00001.dcm" SOPInstanceUID)
[ "$(attr_of "$ST/CT00001.dcm" SOPClassUID)" = $CT ] || fail "not CT"

timeout 60 "$SCU" 127.0.0.1 "$DPORT" STORESCU HASHI $CT "$a" $CT "$b" \
    $CT 2.25.1234 1.2.840.10008.5.1.4.1.1.4 "$b" $CT "$theirs" \
    >"$T_TMP/mixed" 2>&1 || fail "commit_scu: $(cat "$T_TMP/mixed")"
assert_eq "action 0000
event 2
committed $a
committed $b
failed 2.25.1234 0112
failed $b 0112
failed $theirs 0112" "$(cat "$T_TMP/mixed")" "report for a mixed request"

timeout 60 "$SCU" 127.0.0.1 "$DPORT" STORESCU HASHI $CT "$a" $CT "$b" \
    >"$T_TMP/stored" 2>&1 || fail "commit_scu: $(cat "$T_TMP/stored")"
assert_eq "action 0000
event 1
committed $a
committed $b" "$(cat "$T_TMP/stored")" "report for stored instances"
audit_has commit "\"ae:STORESCU\".*$theirs.*denied" \
    "audit of the refused commitment"
healthz_ok "after storage commitment"
pass
