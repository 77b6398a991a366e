# ws_replay_large_backlog_complete: a backlog whose events are large
# (~2.5 KB: a batch of them fills the session's send budget before the
# batch ends) is replayed whole after hello — 120 events, seqs 1..120 in
# order, each once — with no live event coming to restart a stalled
# replay.  Then, while a second session replays the same backlog, 60 more
# events are committed: they reach it after the replay, in seq order, each
# once (a live event during the replay is left to it, never sent ahead or
# twice).
. "$(dirname "$0")/lib.sh"

N=120
hashi_init
hashi_start
R=$(login demo-requester)
NT=$(login demo-neuro)
creates() {     # FIRST COUNT: case.create frames, ~2 KB questions
    $PY -c 'import json, sys
q = "Hyperdense MCA sign, left, with early ischaemic change? " * 35
a, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(a, a + n):
    print(json.dumps({"type": "case.create", "id": "r%d" % i,
        "case_id": "big-%03d" % i, "question": q[:1990],
        "priority": "routine", "specialty": "neurology",
        "patient": {"age": 70, "sex": "M"}}, separators=(",", ":")))' "$1" "$2"
}
creates 0 $N >"$T_TMP/creates"
wsc session --token "$R" --send-file "$T_TMP/creates" --replies $N \
    --timeout 120 >"$T_TMP/requester" || fail "creating the cases failed"
assert_eq "$N" "$(jlines "$T_TMP/requester" 'len([m for m in L
    if m["type"] == "reply" and "result" in m])')" "cases created"

wsc session --token "$NT" --ack --count $N --timeout 60 >"$T_TMP/neuro" ||
    fail "the replay stopped short: $(jlines "$T_TMP/neuro" 'len(E)') events"
assert_eq "$($PY -c "print(list(range(1, $N + 1)))")" \
    "$(jlines "$T_TMP/neuro" '[e["seq"] for e in E]')" "replayed seqs"
assert_ge 2400 "$(jlines "$T_TMP/neuro" 'min(len(json.dumps(e)) for e in E)')" \
    "event size (bytes)"

# Live events while a replay is under way.
M=60
creates $N $M >"$T_TMP/creates2"
wsc session --token "$NT" --ack --count $((N + M)) --timeout 90 \
    >"$T_TMP/neuro2" &
pn=$!
wsc session --token "$R" --send-file "$T_TMP/creates2" --replies $M \
    --timeout 120 >"$T_TMP/requester2" || fail "creating more cases failed"
wait_pid $pn 90
[ "$WRC" = 0 ] || fail "the second session got $(jlines "$T_TMP/neuro2" \
    'len(E)') of $((N + M)) events"
assert_eq "$($PY -c "print(list(range(1, $N + $M + 1)))")" \
    "$(jlines "$T_TMP/neuro2" '[e["seq"] for e in E]')" \
    "replay then live: every seq once, in order"
assert_eq "$((N + M))" "$(jlines "$T_TMP/neuro2" \
    'len({e["event_id"] for e in E})')" "distinct events"
pass
