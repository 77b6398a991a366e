# ws_images_arrived_coalesced: a case names a study that is still on its
# way; as its instances arrive (one STOW-RS request each, then a second
# study by DICOM C-STORE), the participants hear images.arrived — at most
# once a second per study, the last one with the full count — instead of
# once per instance.
. "$(dirname "$0")/lib.sh"

hashi_setup
R=$(login demo-requester)
N=$(login demo-neuro)
A=$(study arrive-a 8)
B=$(study arrive-b 8 --seed 2 --patient-id SYN0002)
uid_a=$(attr_of "$(ls "$A"/*.dcm | head -1)" StudyInstanceUID)
uid_b=$(attr_of "$(ls "$B"/*.dcm | head -1)" StudyInstanceUID)
[ -n "$uid_a" ] && [ -n "$uid_b" ] || fail "no study UIDs"

assert_eq 201 "$(api POST /api/cases "$R" "{\"case_id\":\"img-1\",
\"question\":\"Bleed?\",\"priority\":\"stat\",\"specialty\":\"neurology\",
\"study_uids\":[\"$uid_a\",\"$uid_b\"]}")" "create the case first"
assert_eq "0" "$(jget "$T_TMP/body" 'd["case"]["images"]["received"]')" \
    "no images yet"

for f in "$A"/*.dcm; do
    assert_in "200 202" "$(stow "$R" "$f")" "STOW $(basename "$f")"
done
storescu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" "$B"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
sleep 2.5    # the held-back counts go out after their second

assert_eq 200 "$(api GET /api/events "$N")" "events of demo-neuro"
cp "$T_TMP/body" "$T_TMP/events.json"
for s in a b; do
    eval uid=\$uid_$s
    n=$(jget "$T_TMP/events.json" "len([e for e in d['events']
        if e['kind'] == 'images.arrived' and
        e['body']['study_uid'] == '$uid'])")
    assert_ge 1 "$n" "images.arrived events for study $s"
    assert_le 3 "$n" "images.arrived events for study $s (8 instances)"
    assert_eq 8 "$(jget "$T_TMP/events.json" "[e['body']['received']
        for e in d['events'] if e['kind'] == 'images.arrived' and
        e['body']['study_uid'] == '$uid'][-1]")" \
        "the last count for study $s"
done
assert_eq 16 "$(jget "$T_TMP/events.json" "[e['body']['images']['received']
    for e in d['events'] if e['kind'] == 'images.arrived'][-1]")" \
    "the case's total in the last event"
assert_eq 200 "$(api GET /api/cases/img-1 "$N")" "GET the case"
assert_eq 16 "$(jget "$T_TMP/body" 'd["case"]["images"]["received"]')" \
    "images received by the case"
pass
