# ws_ping_closes_silent_client: server-side WebSocket keep-alive
# (--ws-ping).  With a 1 s interval, a session that stops answering pings
# (a phone whose NAT mapping silently died) is closed 4408 "ping timeout",
# its silence measured by the server under 2 x the interval; a session
# that answers them stays open meanwhile and gets one ping per interval of
# silence; with --ws-ping 0 nobody is pinged.
. "$(dirname "$0")/lib.sh"

hashi_init
hashi_start --ws-ping 1
N=$(login demo-neuro)
N2=$(login demo-neuro2)

# The silent one: answers nothing after its hello.  The live one answers
# pings (wsclient's default) and is stopped by --timeout only.
wsc session --token "$N" --no-pong --timeout 15 >"$T_TMP/silent" &
ps=$!
wsc session --token "$N2" --idle 4 --timeout 15 --show-pings \
    >"$T_TMP/alive" &
pa=$!
wait_pid $ps 15 || fail "the silent session was not closed"
wait_pid $pa 15 || fail "the answering session hung"

assert_eq "4408 ping timeout" "$(jlines "$T_TMP/silent" \
    '[("%s %s" % (l["code"], l["reason"])) for l in L
      if l["type"] == "close"][0]')" "the silent session's close"
assert_ge 1 "$(jlines "$T_TMP/silent" \
    '[l["pings"] for l in L if l["type"] == "close"][0]')" \
    "pings the silent one ignored"
# The server's own measure of the silence when it closed: under 2 x 1 s.
silent=$(sed -n 's/.*demo-neuro (.*): silent for \([0-9]*\) ms; closing 4408.*/\1/p' \
    "$T_TMP/server.log" | head -1)
[ -n "$silent" ] || fail "no 'silent for N ms' line in the server log"
assert_le 1999 "$silent" "silence (ms) when closed"
assert_ge 1500 "$silent" "silence (ms) when closed"

# The answering one was never closed (it stopped after 4 s idle of
# events) and saw about one ping a second.
assert_eq "0" "$(jlines "$T_TMP/alive" \
    'len([l for l in L if l["type"] == "close"])')" "answering session closed"
assert_ge 2 "$(jlines "$T_TMP/alive" \
    'len([l for l in L if l["type"] == "ws-ping"])')" "pings answered"
assert_file_lacks "$T_TMP/server.log" "demo-neuro2 (127.0.0.1): silent" \
    "the answering session closed by the keep-alive"

# --ws-ping 0: off.
hashi_stop || fail "server needed SIGKILL"
hashi_start --ws-ping 0
wsc session --token "$N" --no-pong --idle 3 --timeout 15 >"$T_TMP/off" ||
    fail "session with pings off failed"
assert_eq "0" "$(jlines "$T_TMP/off" \
    'len([l for l in L if l["type"] == "close"])')" "closed with pings off"
pass
