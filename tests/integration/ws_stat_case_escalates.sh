# ws_stat_case_escalates: a stat case with a 2-second deadline (due-stat 2)
# that nobody claims escalates to the second on-call neurologist, although
# the server was stopped before the deadline and started after it (due_at
# is in the database); the requester sees the step; the next deadline
# takes it to the rest of the specialty.  Escalations reach hashi.v1
# sessions as case.escalated events.
. "$(dirname "$0")/lib.sh"

hashi_init
user_add neuro3 "Demo City Hospital" specialist neurology
"$SERVER" oncall set --data "$DATA" --specialty neurology demo-neuro \
    demo-neuro2 >>"$T_TMP/admin.log" 2>&1 || fail "oncall set"
hashi_start --due-stat 2
R=$(login demo-requester)
N1=$(login demo-neuro)
N2=$(login demo-neuro2)
N3=$(login neuro3)

assert_eq 201 "$(api POST /api/cases "$R" '{"case_id":"esc-1",
"question":"Basilar occlusion?","priority":"stat","specialty":"neurology"}')" \
    "create the stat case"
created=$(jget "$T_TMP/body" 'd["case"]["created_at"]')
due=$(jget "$T_TMP/body" 'd["case"]["due_at"]')
assert_eq 2000 "$((due - created))" "stat deadline from --due-stat 2"

# Before the deadline: the first on-call has it, the second not.
assert_eq 200 "$(api GET /api/events "$N1")" "events of demo-neuro"
assert_eq "['case.new esc-1']" "$(jget "$T_TMP/body" \
    '[e["kind"] + " " + e["case_id"] for e in d["events"]]')" \
    "demo-neuro told at once"
assert_eq 200 "$(api GET /api/events "$N2")" "events of demo-neuro2"
assert_eq 0 "$(jget "$T_TMP/body" 'len(d["events"])')" \
    "demo-neuro2 not told before the deadline"

# Down across the deadline.
hashi_stop || fail "server needed SIGKILL"
sleep 2.5
restart_ms=$(date +%s%3N)
hashi_start --due-stat 2

wsc session --token "$N2" --count 1 --ack --timeout 10 >"$T_TMP/n2" ||
    fail "demo-neuro2 got no event within 10 s of the restart"
assert_eq "case.escalated esc-1 1 oncall ['demo-neuro2']" \
    "$(jlines "$T_TMP/n2" '"%s %s %d %s %s" % (E[0]["kind"],
    E[0]["case_id"], E[0]["body"]["escalation"]["level"],
    E[0]["body"]["escalation"]["scope"], E[0]["body"]["escalation"]["to"])')" \
    "escalation to the second on-call"
assert_eq "new 1" "$(jlines "$T_TMP/n2" '"%s %d" % (
    E[0]["body"]["case"]["status"], E[0]["body"]["case"]["escalation_level"])')" \
    "the case in the event"
at=$(jlines "$T_TMP/n2" 'E[0]["at"]')
assert_ge "$restart_ms" "$at" "escalated after the restart"

# The requester sees the step.
assert_eq 200 "$(api GET /api/events "$R")" "events of the requester"
assert_eq "case.new case.escalated" "$(jget "$T_TMP/body" \
    '" ".join(e["kind"] for e in d["events"] if e["case_id"] == "esc-1")')" \
    "the requester's view of esc-1"

# Two seconds later, the rest of the specialty.
wsc session --token "$N3" --count 1 --timeout 10 >"$T_TMP/n3" ||
    fail "neuro3 got no event"
assert_eq "case.escalated 2 specialty ['neuro3']" "$(jlines "$T_TMP/n3" \
    '"%s %d %s %s" % (E[0]["kind"], E[0]["body"]["escalation"]["level"],
    E[0]["body"]["escalation"]["scope"], E[0]["body"]["escalation"]["to"])')" \
    "escalation to the specialty"
audit_has case.escalate 'esc-1' "escalation audited"

# Claimed now: no further steps.
assert_eq 200 "$(api POST /api/cases/esc-1/claim "$N3")" "claim by neuro3"
assert_eq "claimed neuro3 0" "$(jget "$T_TMP/body" '"%s %s %d" % (
    d["case"]["status"], d["case"]["claimed_by"], d["case"]["due_at"])')" \
    "claimed case"
pass
