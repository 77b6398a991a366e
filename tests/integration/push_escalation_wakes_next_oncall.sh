#!/bin/sh
# An unclaimed STAT case escalates (--due-stat 1) to the next on-call,
# whose device gets a push {kind: case.escalated, case_id, priority: stat}
# with Urgency high; the first on-call's device got the case.new.
. "$(dirname "$0")/lib.sh"

hashi_init
oncall_set neurology demo-neuro demo-neuro2
push_emu_start
hashi_start --push-ca "$PUSH_CA" --push-allow 127.0.0.1 --due-stat 1
R=$(login demo-requester)
assert_eq 201 "$(push_subscribe "$(login demo-neuro)" push/neuro1)" \
    "neuro's device"
assert_eq 201 "$(push_subscribe "$(login demo-neuro2)" push/neuro2)" \
    "neuro2's device"
assert_eq 201 "$(api POST /api/cases "$R" '{"case_id":"esc-1",
"question":"Bleed?","priority":"stat","specialty":"neurology"}')" "STAT case"
wait_grep "$PUSH_LOG" '/push/neuro2.*case.escalated' 15
assert_eq "case.new:esc-1:stat:high" "$(jlines "$PUSH_LOG" '[
    "%(kind)s:%(case_id)s:%(priority)s" % json.loads(x["payload"])
    + ":" + x["urgency"] for x in L if x["path"] == "/push/neuro1"][0]')" \
    "the first on-call's push"
assert_eq "case.escalated:esc-1:stat:high True" "$(jlines "$PUSH_LOG" '[
    "%(kind)s:%(case_id)s:%(priority)s" % json.loads(x["payload"])
    + ":" + x["urgency"] + " " + str(x["vapid_ok"])
    for x in L if x["path"] == "/push/neuro2"][0]')" \
    "the next on-call's push on escalation"
pass
