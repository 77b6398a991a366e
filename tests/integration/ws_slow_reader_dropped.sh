# ws_slow_reader_dropped: one hashi.v1 session that stops reading while
# 2,000 events fan out to it and to 50 others.  The 50 get all 2,000, in
# order, each once; the slow one is closed 4429 once more than
# --ws-queue-max bytes wait for its socket (the server's memory for it is
# bounded), and on reconnecting with the last seq it processed it gets
# the rest from its outbox: every event exactly once over both
# connections.  (Content only: no latency is asserted here; bench/push
# measures it.)
. "$(dirname "$0")/lib.sh"

EVENTS=2000
OTHERS=50
hashi_init
make -s -C "$HASHI_ROOT/bench/push" \
    >>"$T_TMP/admin.log" 2>&1 || fail "cannot build bench/push/mkusers"
# 51 specialists of a specialty with no on-call list (every case goes to
# all of them), each with a session token; the requester's first.
"$HASHI_BUILD/bench/mkusers" --data "$DATA" --count $((OTHERS + 1)) \
    --specialty slowtest --clinic "Demo City Hospital" \
    --requester demo-requester --out "$T_TMP/tokens" \
    >>"$T_TMP/admin.log" 2>&1 || fail "mkusers failed"
tok() { sed -n "$1p" "$T_TMP/tokens" | cut -d' ' -f2; }
R=$(tok 1)
hashi_start --ws-queue-max 256K

# The slow one: a 4 KiB receive buffer, reads nothing after its welcome
# until $T_TMP/go exists.
wsc session --token "$(tok 2)" --rcvbuf 4096 --stall-until "$T_TMP/go" \
    --idle 5 --timeout 240 --ready "$T_TMP/ready-slow" >"$T_TMP/slow" &
pslow=$!
pids=""
i=1
while [ $i -le $OTHERS ]; do
    wsc session --token "$(tok $((i + 2)))" --ack --count $EVENTS \
        --timeout 240 --ready "$T_TMP/ready-$i" >"$T_TMP/other-$i" &
    pids="$pids $!"
    i=$((i + 1))
done
wait_file "$T_TMP/ready-slow" 30
i=1
while [ $i -le $OTHERS ]; do
    wait_file "$T_TMP/ready-$i" 30
    i=$((i + 1))
done

# 2,000 cases from one requester session, each a case.new to all 51 (and
# the requester): ~900-byte frames.
$PY -c 'import json, sys
q = "Hyperdense MCA sign? " * 10
for i in range(int(sys.argv[1])):
    print(json.dumps({"type": "case.create", "id": "r%d" % i,
        "case_id": "slow-%04d" % i, "question": q, "priority": "routine",
        "specialty": "slowtest", "patient": {"age": 70, "sex": "M"}},
        separators=(",", ":")))' $EVENTS >"$T_TMP/creates"
wsc session --token "$R" --send-file "$T_TMP/creates" --replies $EVENTS \
    --timeout 240 >"$T_TMP/requester" || fail "the requester's session failed"
log "$EVENTS cases created"
assert_eq "$EVENTS" "$(jlines "$T_TMP/requester" 'len([m for m in L
    if m["type"] == "reply" and "result" in m])')" "cases created"

for p in $pids; do
    wait_pid "$p" 240
    [ "$WRC" = 0 ] || fail "a reading session ended with status $WRC"
done
want=$($PY -c "print(list(range(1, $EVENTS + 1)))")
i=1
while [ $i -le $OTHERS ]; do
    f="$T_TMP/other-$i"
    assert_eq "$want" "$(jlines "$f" '[e["seq"] for e in E]')" \
        "session $i: seqs in order"
    assert_eq "$EVENTS" "$(jlines "$f" 'len({e["event_id"] for e in E})')" \
        "session $i: distinct events"
    assert_eq "$EVENTS" "$(jlines "$f" 'len({e["case_id"] for e in E})')" \
        "session $i: cases"
    i=$((i + 1))
done

# The slow one was closed for being over the limit...
grep -q "ws: bench-sp-0001 (127.0.0.1): over 262144 bytes waiting for the socket; closing 4429" \
    "$T_TMP/server.log" || fail "no 4429 close of the slow session in the log"
touch "$T_TMP/go"
wait_pid $pslow 60
assert_eq 1 "$(jlines "$T_TMP/slow" 'len([m for m in L
    if m["type"] == "close"])')" "the slow session ends closed"
got=$(jlines "$T_TMP/slow" 'len(E)')
assert_ge 1 "$got" "events the slow one read before the close"
assert_le $((EVENTS - 1)) "$got" "events the slow one read before the close"
assert_eq "$(jlines "$T_TMP/slow" 'list(range(1, len(E) + 1))')" \
    "$(jlines "$T_TMP/slow" '[e["seq"] for e in E]')" \
    "the slow one's first connection: a prefix, in order"

# ...and replays the rest, once, from the last seq it processed.
wsc session --token "$(tok 2)" --last-seq "$got" --ack \
    --count $((EVENTS - got)) --timeout 120 >"$T_TMP/slow2" ||
    fail "the slow one's reconnection failed"
assert_eq "$got" "$(jlines "$T_TMP/slow2" 'W["replay_from"]')" "replay_from"
cat "$T_TMP/slow" "$T_TMP/slow2" >"$T_TMP/slow-all"
assert_eq "$want" "$(jlines "$T_TMP/slow-all" '[e["seq"] for e in E]')" \
    "the slow one over both connections: every seq once, in order"
assert_eq "$EVENTS" "$(jlines "$T_TMP/slow-all" \
    'len({e["event_id"] for e in E})')" "the slow one: distinct events"
pass
