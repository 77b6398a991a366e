# ws_replay_and_live_push: the store-and-forward core over hashi.v1.
# A specialist who was offline (with a server restart in between) gets
# every event on hello, in order, again after a reconnect without ack,
# nothing after acknowledging; a connected specialist gets a new case
# pushed at once, on every session of theirs; a retried request id gets
# the kept reply, byte for byte, and is not executed twice.
. "$(dirname "$0")/lib.sh"

hashi_init
"$SERVER" oncall set --data "$DATA" --specialty neurology demo-neuro \
    demo-neuro2 >>"$T_TMP/admin.log" 2>&1 || fail "oncall set"
hashi_start
R=$(login demo-requester)
N=$(login demo-neuro)

new_case() {    # ID [PRIORITY]: create a neurology case as the requester
    api POST /api/cases "$R" "{\"case_id\":\"$1\",\"question\":\"Bleed?\",\
\"priority\":\"${2:-routine}\",\"specialty\":\"neurology\",\
\"patient\":{\"age\":70,\"sex\":\"M\"}}"
}

# -- offline: three cases, a restart after the second
assert_eq 201 "$(new_case off-1)" "create off-1"
assert_eq 201 "$(new_case off-2)" "create off-2"
hashi_stop || fail "server needed SIGKILL"
hashi_start
assert_eq 201 "$(new_case off-3)" "create off-3"

# -- hello with last_seq 0: all three, in order
wsc session --token "$N" --idle 1.5 --timeout 15 >"$T_TMP/s1" ||
    fail "session 1 failed"
assert_eq "3 0" "$(jlines "$T_TMP/s1" 'W["last_seq"], W["replay_from"]' |
    tr -d '(),')" "welcome last_seq, replay_from"
assert_eq "demo-neuro specialist" "$(jlines "$T_TMP/s1" \
    'W["user"]["login"] + " " + W["user"]["role"]')" "welcome user"
assert_eq "[1, 2, 3]" "$(jlines "$T_TMP/s1" '[e["seq"] for e in E]')" \
    "replayed seqs"
assert_eq "['off-1', 'off-2', 'off-3']" "$(jlines "$T_TMP/s1" \
    '[e["case_id"] for e in E]')" "replayed cases, in order"
assert_eq "{'case.new'}" "$(jlines "$T_TMP/s1" '{e["kind"] for e in E}')" \
    "replayed kinds"
assert_eq "3" "$(jlines "$T_TMP/s1" 'len({e["event_id"] for e in E})')" \
    "distinct event ids"
assert_eq "True" "$(jlines "$T_TMP/s1" \
    'L[0]["type"] == "welcome" and len(L) == 4')" "welcome first, nothing else"

# -- not acknowledged: sent again, same event ids; after last_seq 2 only 3
wsc session --token "$N" --idle 1 --timeout 15 >"$T_TMP/s2" ||
    fail "session 2 failed"
assert_eq "$(jlines "$T_TMP/s1" '[e["event_id"] for e in E]')" \
    "$(jlines "$T_TMP/s2" '[e["event_id"] for e in E]')" \
    "redelivered event ids"
wsc session --token "$N" --last-seq 2 --idle 1 --timeout 15 >"$T_TMP/s3" ||
    fail "session 3 failed"
assert_eq "2 [3]" "$(jlines "$T_TMP/s3" \
    '"%d %s" % (W["replay_from"], [e["seq"] for e in E])')" \
    "replay after last_seq 2"

# -- acknowledge all three; the outbox records it; reconnecting with the
# -- acknowledged seq delivers nothing
wsc session --token "$N" --ack --count 3 --timeout 15 >"$T_TMP/s4" ||
    fail "session 4 (ack) failed"
assert_eq 200 "$(api GET /api/events?after=0 "$N")" "GET /api/events"
assert_eq "3 3" "$(jget "$T_TMP/body" '"%d %d" % (d["last_seq"],
    d["acked_seq"])')" "outbox cursor after acks"
wsc session --token "$N" --last-seq 3 --idle 1.5 --timeout 15 \
    >"$T_TMP/s5" || fail "session 5 failed"
assert_eq "3 0" "$(jlines "$T_TMP/s5" '"%d %d" % (W["replay_from"],
    len(E))')" "nothing new after the acknowledged seq"

# -- live: two sessions of demo-neuro and one of the requester get case.new
rm -f "$T_TMP/r1" "$T_TMP/r2" "$T_TMP/r3"
wsc session --token "$N" --last-seq 3 --count 1 --ack --timeout 15 \
    --ready "$T_TMP/r1" >"$T_TMP/live1" &
p1=$!
wsc session --token "$N" --last-seq 3 --count 1 --timeout 15 \
    --ready "$T_TMP/r2" >"$T_TMP/live2" &
p2=$!
wsc session --token "$R" --last-seq 3 --count 1 --timeout 15 \
    --ready "$T_TMP/r3" >"$T_TMP/live3" &
p3=$!
wait_file "$T_TMP/r1"
wait_file "$T_TMP/r2"
wait_file "$T_TMP/r3"
assert_eq 201 "$(new_case live-1 stat)" "create live-1"
wait $p1 || fail "live session 1 got no event"
wait $p2 || fail "live session 2 got no event"
wait $p3 || fail "requester's live session got no event"
for f in live1 live2; do
    assert_eq "4 case.new live-1" "$(jlines "$T_TMP/$f" \
        '"%d %s %s" % (E[0]["seq"], E[0]["kind"], E[0]["case_id"])')" \
        "pushed event in $f"
done
assert_eq "case.new live-1 stat" "$(jlines "$T_TMP/live3" \
    '"%s %s %s" % (E[0]["kind"], E[0]["case_id"],
    E[0]["body"]["case"]["priority"])')" "requester's pushed event"

# -- a retried request id: the kept reply, byte for byte, not run again
send1='{"type":"message.send","id":"req-m1","case_id":"live-1","message_id":"m-1","text":"Seen, looking."}'
send2='{"type":"message.send","id":"req-m1","case_id":"live-1","message_id":"m-2","text":"Another text."}'
wsc session --token "$N" --last-seq 4 --idle 1.5 --timeout 15 \
    --send "$send1" --send "$send1" >"$T_TMP/k1" || fail "session k1"
wsc session --token "$N" --last-seq 4 --idle 1.5 --timeout 15 \
    --send "$send2" >"$T_TMP/k2" || fail "session k2"
grep '"type":"reply"' "$T_TMP/k1" >"$T_TMP/k1.replies"
grep '"type":"reply"' "$T_TMP/k2" >"$T_TMP/k2.replies"
assert_eq 2 "$(wc -l <"$T_TMP/k1.replies" | tr -d ' ')" "replies in k1"
assert_eq 1 "$(sort -u "$T_TMP/k1.replies" | wc -l | tr -d ' ')" \
    "the retry in the same session got the same bytes"
assert_same_file "$(head -1 "$T_TMP/k1.replies" >"$T_TMP/k1.first" &&
    echo "$T_TMP/k1.first")" "$T_TMP/k2.replies" \
    "the retry after a reconnect got the same bytes"
assert_eq "True m-1" "$(jget "$T_TMP/k1.first" \
    '"%s %s" % (d["ok"], d["result"]["message"]["message_id"])')" \
    "kept reply content"
assert_eq 200 "$(api GET /api/cases/live-1/messages "$N")" "GET messages"
assert_eq "['m-1']" "$(jget "$T_TMP/body" \
    '[m["message_id"] for m in d["messages"]]')" "messages after retries"

# -- before hello: requests are refused, ping is answered
wsc session --raw '{"type":"ping","id":"p0"}' \
    --raw '{"type":"case.list","id":"early"}' --idle 1 --timeout 10 \
    >"$T_TMP/early" || fail "session early"
assert_eq "pong p0" "$(jlines "$T_TMP/early" \
    '"%s %s" % (L[0]["type"], L[0]["id"])')" "ping before hello"
assert_eq "reply early False unauthorized" "$(jlines "$T_TMP/early" \
    '"%s %s %s %s" % (L[1]["type"], L[1]["id"], L[1]["ok"],
    L[1]["error"]["code"])')" "request before hello"
pass
