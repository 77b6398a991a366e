#!/bin/sh
# The link emulator (tests/tools/linkemu.py) does what the edge tests rely
# on: 2 MB each way through a paced, delayed link arrive unchanged (sha256)
# and its statistics count them; --cut-after resets an open connection
# after exactly that many bytes, once (the link is whole again after), and
# --outage then refuses the next one; --cut-every resets an open
# connection; --down-file refuses connections while it exists, and its
# appearance cuts an open one; a sender to a peer that does not read is
# held back instead of being buffered without bound; bad arguments are
# refused.  netprobe.py is the echo / stalled peer and the client.
. "$(dirname "$0")/lib.sh"

PROBE="$HASHI_TOOLS/netprobe.py"

# probe_server MODE: a netprobe server; its port in $SPORT.
probe_server() {
    $PY "$PROBE" server "$1" "$T_TMP/$1.port" &
    at_exit "kill $! 2>/dev/null"
    wait_file "$T_TMP/$1.port"
    SPORT=$(cat "$T_TMP/$1.port")
}

# probe CMD ARGS...: a netprobe client through the link; its JSON report is
# in $T_TMP/probe.json.
probe() {
    timeout 60 $PY "$PROBE" "$@" >"$T_TMP/probe.json" ||
        fail "netprobe $1 failed: $(cat "$T_TMP/probe.json")"
}
pget() { jget "$T_TMP/probe.json" "d['$1']"; }

head -c 2000000 /dev/urandom >"$T_TMP/payload"
probe_server echo
ECHO=$SPORT

log "2 MB each way at 20 mbit with 10 ms delay"
linkemu_start slow "$ECHO" --rate 20mbit --delay 10ms
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_eq eof "$(pget end)" "end of the echoed stream"
assert_eq "$(sha256sum <"$T_TMP/payload")" "$(sha256sum <"$T_TMP/back")" \
    "sha256 of the payload after a round trip through the link"
linkemu_stop slow
assert_eq 2000000 "$(linkemu_stat slow up_bytes)" "up_bytes"
assert_eq 2000000 "$(linkemu_stat slow down_bytes)" "down_bytes"
assert_eq 1 "$(linkemu_stat slow connections)" "connections"
assert_eq 0 "$(linkemu_stat slow cuts)" "cuts on a healthy link"

log "--cut-after 300000 --outage 60s"
linkemu_start cut "$ECHO" --cut-after 300000 --outage 60s
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_eq reset "$(pget end)" "end of a connection that was cut"
assert_le 300000 "$(pget received)" "bytes echoed before the cut"
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_eq 0 "$(pget received)" "bytes through the link during the outage"
assert_eq reset "$(pget end)" "a connection during the outage"
linkemu_stop cut
assert_eq 1 "$(linkemu_stat cut cuts)" "cuts"
assert_eq 1 "$(linkemu_stat cut connections)" "connections relayed"
assert_eq 1 "$(linkemu_stat cut refused_while_down)" "refused in the outage"
assert_eq 300000 "$(jget "$T_TMP/linkemu-cut.json" \
    "d['up_bytes'] + d['down_bytes']")" "bytes that crossed before the cut"

log "--cut-after 300000 without an outage: cut once, then whole again"
linkemu_start once "$ECHO" --cut-after 300000
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_eq reset "$(pget end)" "end of the connection that was cut"
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_same_file "$T_TMP/payload" "$T_TMP/back" "echo after the one cut"
linkemu_stop once
assert_eq 1 "$(linkemu_stat once cuts)" "cuts"
assert_eq 4300000 "$(jget "$T_TMP/linkemu-once.json" \
    "d['up_bytes'] + d['down_bytes']")" "bytes: 300000, then 2 MB each way"

log "--down-file"
DOWN="$T_TMP/link.down"
touch "$DOWN"
linkemu_start flaky "$ECHO" --down-file "$DOWN"
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_eq 0 "$(pget received)" "bytes through a link that is down"
rm "$DOWN"
probe send "127.0.0.1:$LINK_PORT" "$T_TMP/payload" "$T_TMP/back"
assert_same_file "$T_TMP/payload" "$T_TMP/back" "echo once the link is up"
timeout 60 $PY "$PROBE" hold "127.0.0.1:$LINK_PORT" "$T_TMP/held" \
    >"$T_TMP/probe.json" &
HOLD=$!
wait_file "$T_TMP/held" 20
touch "$DOWN"
wait_pid "$HOLD" 20
assert_eq reset "$(pget end)" "an open connection when the down file appears"
linkemu_stop flaky
assert_eq 1 "$(linkemu_stat flaky refused_while_down)" "refused while down"
assert_eq 2 "$(linkemu_stat flaky connections)" "connections relayed"
assert_eq 1 "$(linkemu_stat flaky cuts)" "cuts (the file appearing)"

log "--cut-every 1s cuts an open connection"
linkemu_start ticking "$ECHO" --cut-every 1s
probe hold "127.0.0.1:$LINK_PORT" "$T_TMP/held-tick"
assert_eq reset "$(pget end)" "a connection held across a --cut-every tick"
linkemu_stop ticking
assert_ge 1 "$(linkemu_stat ticking cuts)" "cuts"

log "a peer that never reads holds the sender back"
probe_server stall
linkemu_start stalled "$SPORT" --rate 10mbit
probe push "127.0.0.1:$LINK_PORT" 200000000
assert_eq stalled "$(pget end)" "the sender to a peer that does not read"
assert_le 16000000 "$(pget sent)" "bytes the sender got rid of"
linkemu_stop stalled

log "bad arguments are refused with a message"
$PY "$LINKEMU" --listen 10.0.0.1:1 --target 127.0.0.1:1 \
    >/dev/null 2>"$T_TMP/bad.err" && fail "a non-loopback --listen accepted"
assert_file_has "$T_TMP/bad.err" "loopback" "error for a non-loopback address"
$PY "$LINKEMU" --listen 127.0.0.1:0 --target 127.0.0.1:1 \
    --rate fast >/dev/null 2>"$T_TMP/bad.err" && fail "--rate fast accepted"
assert_file_has "$T_TMP/bad.err" "not a rate" "error for a bad rate"
pass
