#!/bin/sh
# A 60 s outage of the link (linkemu --down-file: the open session is cut,
# every new connection refused), then the link comes back: the gateway's
# attempts were spaced by its back-off, capped for this test by
# --retry-max 4, so its first successful reconnection comes within the
# cap (the jitter only shortens a delay) plus 2 s for that attempt's own
# TLS and hashi.v1 handshake on loopback; a study stored during the
# outage then arrives whole.  A bound derived from the cap, not a speed
# claim.
. "$(dirname "$0")/lib.sh"

CAP=4
ST=$(study gw-ct3-128 3 --size 128 --patient-id GWEND --seed 3131) ||
    exit 1
hashi_init
TOK=$(gw_token gw-outage)
hashi_start
linkemu_start wan "$HPORT" --down-file "$T_TMP/link.down"
gw_start "https://127.0.0.1:$LINK_PORT" "$TOK" --retry-max "$CAP" \
    --study-quiet 1
wait_grep "$T_TMP/gw.log" "gateway: connected to" 20

touch "$T_TMP/link.down"
log "link down for 60 s"
wait_grep "$T_TMP/gw.log" "link lost" 20
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
sleep 60
tries=$(grep -c "next attempt in" "$T_TMP/gw.log")
back=$($PY -c 'import time; print("%.3f" % time.time())')
rm "$T_TMP/link.down"
log "link back at $back after $tries attempts"
gw_wait_done 3 60

# The first "connected" line after the link came back (log times: UTC).
$PY - "$T_TMP/gw.log" "$back" "$CAP" <<'PY' || fail "reconnection bound"
import calendar, sys, time
log, back, cap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
for line in open(log):
    if "gateway: connected to" not in line:
        continue
    t = line.split()[0]
    at = calendar.timegm(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) \
        + float(t[19:-1] or 0)
    if at >= back:
        d = at - back
        print("reconnected %.1f s after the link came back (bound %.0f)"
              % (d, cap + 2))
        sys.exit(0 if d <= cap + 2 else 1)
sys.exit("no reconnection after the link came back")
PY
# Back-off capped: a minute of outage took several attempts, not one.
assert_ge 10 "$tries" "attempts during the outage"

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" "instances at the server"
pass
