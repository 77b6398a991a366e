#!/bin/sh
# The DICOM listener serves associations side by side, and nobody who
# connects can hold it up:
#  - five connections that send nothing, held open, do not stop a storescu
#    from completing meanwhile; the server closes them at the ARTIM timeout
#    (each reads EOF);
#  - an association left idle does not stop two storescu running at once,
#    and both land whole (20 instances, every dataset byte for byte); the
#    idle one is aborted at the idle timeout;
#  - over --dicom-max-associations a request is refused (A-ASSOCIATE-RJ,
#    local limit exceeded), and accepted again once a slot is free;
#  - the server stops cleanly (no SIGKILL needed) with an association open,
#    which it cuts.
. "$(dirname "$0")/lib.sh"

ST=$(study ct20-side 20 --patient-id SIDE20 --seed 20) || exit 1
PEER="$PY $LIBDIR/dicom_peer.py"
hashi_init
hashi_start --dicom-artim-timeout 5 --dicom-idle-timeout 3
tok=$(login demo-admin) || exit 1

log "five silent connections held; a storescu meanwhile"
$PEER silent 127.0.0.1 "$DPORT" 5 "$T_TMP/silent.ready" \
    >"$T_TMP/silent.out" 2>&1 &
SILENT=$!
wait_file "$T_TMP/silent.ready"
timeout 30 storescu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" \
    "$ST/CT00001.dcm" >"$T_TMP/sc0.log" 2>&1 ||
    fail "storescu with silent peers connected: $(tail -3 "$T_TMP/sc0.log")"
kill -0 "$SILENT" 2>/dev/null ||
    fail "the silent connections were gone before storescu ended: \
$(cat "$T_TMP/silent.out")"
wait_pid "$SILENT" 30
assert_eq 5 "$(cat "$T_TMP/silent.out")" \
    "silent connections closed by the server (ARTIM)"

log "an idle association held; two storescu at once"
$PEER assoc 127.0.0.1 "$DPORT" DEMO_CT HASHI "$T_TMP/idle.ready" \
    >"$T_TMP/idle.out" 2>&1 &
IDLE=$!
wait_file "$T_TMP/idle.ready"
timeout 60 storescu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" \
    $(ls "$ST"/*.dcm | head -10) >"$T_TMP/sca.log" 2>&1 &
A=$!
timeout 60 storescu -aet STORESCU -aec HASHI 127.0.0.1 "$DPORT" \
    $(ls "$ST"/*.dcm | tail -n +11) >"$T_TMP/scb.log" 2>&1 &
B=$!
wait "$A" || fail "storescu A: $(tail -3 "$T_TMP/sca.log")"
wait "$B" || fail "storescu B: $(tail -3 "$T_TMP/scb.log")"
study_whole "$tok" "$ST"/*.dcm
wait_pid "$IDLE" 30
assert_eq "ac
abort" "$(cat "$T_TMP/idle.out")" "the idle association: accepted, then"
assert_file_has "$T_TMP/server.log" \
    'association from DEMO_CT@127.0.0.1 idle for 3 s: aborted' \
    "the idle abort in the log"

log "one association at most: a second is refused, then accepted"
hashi_stop
hashi_start --dicom-max-associations 1 --dicom-idle-timeout 3
$PEER assoc 127.0.0.1 "$DPORT" DEMO_CT HASHI "$T_TMP/one.ready" \
    >"$T_TMP/one.out" 2>&1 &
ONE=$!
wait_file "$T_TMP/one.ready"
echoscu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" >"$T_TMP/echo1.log" 2>&1 &&
    fail "echoscu over the limit was accepted"
assert_file_has "$T_TMP/echo1.log" 'Local Limit Exceeded' \
    "echoscu's rejection over the limit"
wait_pid "$ONE" 30
# the slot is free once the server has seen the peer close: try a while
i=0
until echoscu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" \
    >"$T_TMP/echo2.log" 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] ||
        fail "echoscu once the slot is free: $(tail -3 "$T_TMP/echo2.log")"
    sleep 0.1
done

log "stop with an association open"
$PEER assoc 127.0.0.1 "$DPORT" DEMO_CT HASHI "$T_TMP/last.ready" \
    >"$T_TMP/last.out" 2>&1 &
LAST=$!
wait_file "$T_TMP/last.ready"
hashi_stop || fail "the server needed SIGKILL to stop with an association open"
wait_pid "$LAST" 30
assert_eq "ac
closed" "$(cat "$T_TMP/last.out")" "the open association at stop (cut)"
assert_file_has "$T_TMP/server.log" 'info +stopped' "'stopped' in the log"
pass
