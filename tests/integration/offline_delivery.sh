#!/bin/sh
# Store and forward to an offline user: the neurologist is offline while 3
# cases and 10 messages are created, with a server restart in between;
# then `hashi watch --json --once` receives exactly those 13 events, in
# order, once; running it again delivers nothing new.  A second device of
# the same user that stops after 5 events and resumes gets the other 8,
# with no repeat.
. "$(dirname "$0")/lib.sh"

hashi_init
oncall_set neurology demo-neuro
hashi_start
cli_login req demo-requester
cli_login neuro demo-neuro
cli_login neuro2dev demo-neuro          # the same user, another device

# Both devices are in sync (nothing yet), then go offline.
cli neuro watch --once --json >"$T_TMP/sync.jsonl" || fail "first watch"
assert_eq 0 "$(jlines "$T_TMP/sync.jsonl" 'len(E)')" "events before any case"

new_case() {    # QUESTION: a routine case (no escalation during the test)
    cli req send --to neurology --priority routine --question "$1" \
        --study 1.2.826.0.1.3680043.8.498.7 2>>"$T_TMP/send.err" ||
        fail "send '$1': $(tail -2 "$T_TMP/send.err")"
}
chat() {        # CASE TEXT
    cli req chat "$1" "$2" >/dev/null 2>>"$T_TMP/chat.err" ||
        fail "chat on $1: $(tail -2 "$T_TMP/chat.err")"
}

C1=$(new_case "Offline case one")
for i in 1 2 3; do chat "$C1" "c1 message $i"; done
hashi_stop || fail "the server needed SIGKILL to stop"
hashi_start
C2=$(new_case "Offline case two")
for i in 1 2 3; do chat "$C2" "c2 message $i"; done
C3=$(new_case "Offline case three")
for i in 1 2 3; do chat "$C3" "c3 message $i"; done
chat "$C1" "c1 message 4"           # interleaved: still in commit order

EXPECT="case.new:$C1 message.new:$C1 message.new:$C1 message.new:$C1 \
case.new:$C2 message.new:$C2 message.new:$C2 message.new:$C2 \
case.new:$C3 message.new:$C3 message.new:$C3 message.new:$C3 message.new:$C1"

# Back online: everything, in order, once.
cli neuro watch --json --once >"$T_TMP/w1.jsonl" 2>"$T_TMP/w1.err" ||
    fail "watch --once: $(cat "$T_TMP/w1.err")"
assert_eq 13 "$(jlines "$T_TMP/w1.jsonl" 'len(E)')" \
    "events after coming back (3 case.new + 10 message.new)"
assert_eq "$EXPECT" "$(jlines "$T_TMP/w1.jsonl" \
    '" ".join(e["kind"] + ":" + e["case_id"] for e in E)')" "events in order"
assert_eq "True True" "$(jlines "$T_TMP/w1.jsonl" '" ".join([
    str(all(E[i]["seq"] < E[i + 1]["seq"] for i in range(len(E) - 1))),
    str(len(set(e["event_id"] for e in E)) == len(E))])')" \
    "seqs increasing, no event id twice"
assert_eq "c1 message 1|c1 message 4" "$(jlines "$T_TMP/w1.jsonl" '"|".join([
    [e for e in E if e["kind"] == "message.new"][0]["body"]["message"]["text"],
    E[-1]["body"]["message"]["text"]])')" "message texts"
LAST=$(jlines "$T_TMP/w1.jsonl" 'E[-1]["seq"]')
assert_file_has "$T_TMP/cli-neuro/watch" "^last_seq=$LAST\$" \
    "last_seq saved after the events"

# Again: nothing new.
cli neuro watch --json --once >"$T_TMP/w2.jsonl" 2>"$T_TMP/w2.err" ||
    fail "second watch --once: $(cat "$T_TMP/w2.err")"
assert_eq 0 "$(jlines "$T_TMP/w2.jsonl" 'len(L)')" "lines on the second run"
# ... also across a restart (the acknowledged seq is the client's).
hashi_stop
hashi_start
cli neuro watch --json --once >"$T_TMP/w3.jsonl" 2>"$T_TMP/w3.err" ||
    fail "watch --once after restart: $(cat "$T_TMP/w3.err")"
assert_eq 0 "$(jlines "$T_TMP/w3.jsonl" 'len(L)')" "lines after a restart"

# The other device: 5 events, stop, then the remaining 8 — 13 in all,
# none twice, the same order.
cli neuro2dev watch --json --count 5 >"$T_TMP/d1.jsonl" 2>"$T_TMP/d1.err" ||
    fail "watch --count 5: $(cat "$T_TMP/d1.err")"
assert_eq 5 "$(jlines "$T_TMP/d1.jsonl" 'len(E)')" "events with --count 5"
cli neuro2dev watch --json --once >"$T_TMP/d2.jsonl" 2>"$T_TMP/d2.err" ||
    fail "resumed watch: $(cat "$T_TMP/d2.err")"
cat "$T_TMP/d1.jsonl" "$T_TMP/d2.jsonl" >"$T_TMP/d.jsonl"
assert_eq 8 "$(jlines "$T_TMP/d2.jsonl" 'len(E)')" "events after resuming"
assert_eq "$EXPECT" "$(jlines "$T_TMP/d.jsonl" \
    '" ".join(e["kind"] + ":" + e["case_id"] for e in E)')" \
    "both runs together, in order"

# A live event still arrives after all this.
cli_bg neuro watch --json --count 1 >"$T_TMP/live.jsonl" 2>"$T_TMP/live.err"
LW=$BG
at_exit "kill $LW"
sleep 0.3
chat "$C2" "live one"
wait_pid $LW 20
assert_eq 0 "$WRC" "live watch exit status ($(cat "$T_TMP/live.err"))"
assert_eq "message.new:$C2:live one" "$(jlines "$T_TMP/live.jsonl" \
    '(E[0]["kind"] + ":" + E[0]["case_id"] + ":" +
    E[0]["body"]["message"]["text"])')" "the live event"

# A watch that is connected when the server restarts reconnects by itself
# and gets what came meanwhile.
cli_bg neuro watch --json --count 1 >"$T_TMP/re.jsonl" 2>"$T_TMP/re.err"
RW=$BG
at_exit "kill $RW"
sleep 0.3
hashi_stop
hashi_start
chat "$C3" "after the restart"
wait_pid $RW 30
assert_eq 0 "$WRC" "reconnecting watch exit status ($(cat "$T_TMP/re.err"))"
assert_file_has "$T_TMP/re.err" "reconnecting in" "the watch said it reconnects"
assert_eq "message.new:$C3:after the restart" "$(jlines "$T_TMP/re.jsonl" \
    '(E[0]["kind"] + ":" + E[0]["case_id"] + ":" +
    E[0]["body"]["message"]["text"])')" "the event after the reconnect"
pass
