#!/bin/sh
# linkemu.py --shared: all connections queue on one wire per direction, so
# a page's six connections get the link's rate between them, not six
# times it.  Checked on the schedule itself (no clock): two connections'
# 100 kB at 1 mbit, read at the same moment, are due one after the other
# (the second's last byte 1.6 s after the first's first), while without
# --shared they are due together; and bytes still cross the real link
# unchanged (sha256) with --shared.
. "$(dirname "$0")/lib.sh"

$PY - "$HASHI_TOOLS" >"$T_TMP/due.txt" <<'PY' || fail "$(cat "$T_TMP/due.txt")"
import sys, types
sys.path.insert(0, sys.argv[1])
import linkemu

def last_due(shared):
    args = types.SimpleNamespace(
        rate=linkemu.parse_rate("1mbit"), delay=0.1, cut_after=None,
        cut_every=None, outage=None, down_file=None, silent_file=None,
        target=("127.0.0.1", 9), shared=shared)
    link = linkemu.Link(args)
    a = linkemu.Direction(link, None, None, "down_bytes")
    b = linkemu.Direction(link, None, None, "down_bytes")
    up = linkemu.Direction(link, None, None, "up_bytes")
    data = bytes(100000)
    for d in (a, b, up):
        d.schedule(data, False)
    q = lambda d: [d.queue.get_nowait()[0] for _ in range(d.queue.qsize())]
    qa, qb, qu = q(a), q(b), q(up)
    return qb[-1] - qa[0], qu[-1] - qu[0]

shared, shared_up = last_due(True)
apart, apart_up = last_due(False)
print("%.3f %.3f %.3f %.3f" % (shared, shared_up, apart, apart_up))
PY
read SHARED SHARED_UP APART APART_UP <"$T_TMP/due.txt"
log "last byte of b after a's first: shared $SHARED s, apart $APART s"
# 200,000 bytes at 125,000 B/s: 1.6 s of wire minus the first piece
assert_eq 1 "$($PY -c "print(int(1.55 < $SHARED < 1.61))")" \
    "--shared: b's bytes wait for a's (1.6 s of wire for both)"
assert_eq 1 "$($PY -c "print(int(0.75 < $APART < 0.81))")" \
    "without --shared: each connection has its own 0.8 s wire"
assert_eq 1 "$($PY -c "print(int(0.75 < $SHARED_UP < 0.81))")" \
    "--shared: the other direction has a wire of its own"

head -c 300000 /dev/urandom >"$T_TMP/payload"
$PY "$HASHI_TOOLS/netprobe.py" server echo "$T_TMP/echo.port" &
at_exit "kill $! 2>/dev/null"
wait_file "$T_TMP/echo.port"
linkemu_start shared "$(cat "$T_TMP/echo.port")" --rate 20mbit --delay 10ms \
    --shared
timeout 60 $PY "$HASHI_TOOLS/netprobe.py" send "127.0.0.1:$LINK_PORT" \
    "$T_TMP/payload" "$T_TMP/back" >"$T_TMP/probe.json" ||
    fail "netprobe send: $(cat "$T_TMP/probe.json")"
assert_eq "$(sha256sum <"$T_TMP/payload")" "$(sha256sum <"$T_TMP/back")" \
    "sha256 through a --shared link"
linkemu_stop shared
assert_eq 300000 "$(linkemu_stat shared down_bytes)" "down_bytes"
pass
