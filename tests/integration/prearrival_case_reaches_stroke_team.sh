# prearrival_case_reaches_stroke_team: a crew's STAT case with pre-arrival
# data (last known well, vitals, LAMS, ETA, destination) over REST and
# hashi.v1 reaches the on-call neurologist as case.new carrying it, with
# the STAT deadline; vitals out of range, diastolic above systolic, an ETA
# in the past, a last-known-well in the future, or pre-arrival data from
# a clinic's requester are refused with the field named, and leave no
# case and no pre-arrival row behind.
. "$(dirname "$0")/lib.sh"

hashi_init
"$SERVER" clinic add --data "$DATA" --name "North EMS" --kind ems \
    >>"$T_TMP/admin.log" 2>&1 || fail "clinic add --kind ems"
user_add crew-n1 "North EMS" crew
oncall_set neurology demo-neuro demo-neuro2
hashi_start --due-stat 600
C=$(login crew-n1)
R=$(login demo-requester)
N1=$(login demo-neuro)

now=$($PY -c 'import time; print(int(time.time() * 1000))')
lkw=$((now - 40 * 60000))
case_body() {    # CASE_ID PREARRIVAL-JSON
    printf '{"case_id":"%s","question":"Right arm drift, aphasia.",
"priority":"stat","specialty":"neurology","patient":{"age":72,"sex":"M"},
"prearrival":%s}' "$1" "$2"
}
pa() {    # VITALS-JSON ETA [LKW]
    printf '{"last_known_well":%s,"vitals":%s,"lams":4,"eta_min":%s,
"destination":"City Hospital Stroke Unit"}' "${3:-$lkw}" "$1" "$2"
}
good='{"bp_sys":182,"bp_dia":96,"heart_rate":88,"spo2":95,"glucose":130,"gcs":14}'

# -- refused, the field named, nothing created
bad() {    # EXPECTED-FIELD EXPECTED-TEXT PREARRIVAL-JSON what [CODE]
    assert_eq 400 "$(api POST /api/cases "$C" \
        "$(case_body ems-bad "$3")")" "$4"
    assert_eq "${5:-bad_field} True" "$(jget "$T_TMP/body" \
        '"%s %s" % (d["error"]["code"], "'"$1"'" in d["error"]["message"]
        and "'"$2"'" in d["error"]["message"])')" "$4: code and message"
}
bad prearrival.vitals.spo2 "50..100" \
    "$(pa '{"bp_sys":182,"spo2":120}' 15)" "SpO2 120"
bad prearrival.vitals.gcs "3..15" "$(pa '{"gcs":2}' 15)" "GCS 2"
bad prearrival.vitals.bp_dia "below bp_sys" \
    "$(pa '{"bp_sys":90,"bp_dia":120}' 15)" "diastolic above systolic"
bad prearrival.eta_min "in the past" "$(pa "$good" -5)" "ETA in the past"
bad prearrival.last_known_well "in the future" \
    "$(pa "$good" 15 $((now + 3600000)))" "last known well in the future" \
    invalid
assert_eq 400 "$(api POST /api/cases "$R" \
    "$(case_body ems-bad "$(pa "$good" 15)")")" "prearrival from a requester"
assert_file_has "$T_TMP/body" "only an ambulance crew" "requester's reason"
ws_create=$(case_body ems-bad "$(pa '{"heart_rate":400}' 15)" | $PY -c \
    'import json, sys; d = json.load(sys.stdin)
d.update(type="case.create", id="c1"); print(json.dumps(d))')
wsc session --token "$C" --idle 1 --timeout 10 --send "$ws_create" \
    >"$T_TMP/wsbad" || fail "crew session"
assert_eq "False bad_field" "$(jlines "$T_TMP/wsbad" \
    '"%s %s" % (L[1]["ok"], L[1]["error"]["code"])')" "HR 400 over hashi.v1"
assert_eq 404 "$(api GET /api/cases/ems-bad "$C")" "no case after refusals"
assert_eq 0 "$(sqlite3 "$DATA/hashi.db" \
    'SELECT COUNT(*) FROM cases; SELECT COUNT(*) FROM case_prearrival;' |
    paste -sd+ | bc)" "no row after refusals"

# -- the good one
assert_eq 201 "$(api POST /api/cases "$C" \
    "$(case_body ems-1 "$(pa "$good" 18)")")" "pre-arrival case"
t1=$($PY -c 'import time; print(int(time.time() * 1000))')
assert_eq "stat 72 182 96 95 4 City Hospital Stroke Unit $lkw" \
    "$(jget "$T_TMP/body" '" ".join(str(x) for x in (d["case"]["priority"],
    d["case"]["patient"]["age"], d["case"]["prearrival"]["vitals"]["bp_sys"],
    d["case"]["prearrival"]["vitals"]["bp_dia"],
    d["case"]["prearrival"]["vitals"]["spo2"], d["case"]["prearrival"]["lams"],
    d["case"]["prearrival"]["destination"],
    d["case"]["prearrival"]["last_known_well"]))')" "the case as stored"
eta=$(jget "$T_TMP/body" 'd["case"]["prearrival"]["eta"]')
assert_ge "$((now + 18 * 60000))" "$eta" "ETA not before now + 18 min"
assert_le "$((t1 + 18 * 60000))" "$eta" "ETA not after the reply + 18 min"
created=$(jget "$T_TMP/body" 'd["case"]["created_at"]')
assert_eq "$((created + 600000))" \
    "$(jget "$T_TMP/body" 'd["case"]["due_at"]')" "STAT deadline"

# -- the on-call neurologist hears it, with the ETA
assert_eq 200 "$(api GET '/api/events?after=0' "$N1")" "neurologist's events"
assert_eq "case.new ems-1 $eta North EMS" "$(jget "$T_TMP/body" \
    '" ".join(str(x) for x in [(e["kind"], e["case_id"],
    e["body"]["case"]["prearrival"]["eta"], e["body"]["case"]["clinic"])
    for e in d["events"] if e["case_id"] == "ems-1"][0])')" \
    "case.new to the stroke team"
assert_eq 200 "$(api GET /api/cases/ems-1 "$N1")" "the neurologist opens it"
assert_eq "City Hospital Stroke Unit" "$(jget "$T_TMP/body" \
    'd["case"]["prearrival"]["destination"]')" "destination"
pass
