#!/bin/sh
# hashi-gateway killed -9 at three moments -- right after storescu's
# success, after the first instance arrived, and in the middle of the
# study -- and restarted each time: every instance reaches the server
# exactly once with its pixels intact, and the spool ends empty.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct10-256 10 --size 256 --patient-id GWKILL --seed 1010) ||
    exit 1
hashi_init
up_start
GWARGS="--study-quiet 1 --retry-max 1 --max-rate 1mbit"
gw_start "$UURL" "$T_TMP/up.token" $GWARGS

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
gw_kill9
log "killed -9 right after storescu's success"
gw_start "$UURL" "$T_TMP/up.token" $GWARGS

dones() { grep -c '"kind": "done".*"sop"' "$T_TMP/up/events.jsonl"; }
wait_grep "$T_TMP/up/events.jsonl" '"kind": "done".*"sop"' 30
gw_kill9
log "killed -9 after $(dones) instance(s) arrived"
gw_start "$UURL" "$T_TMP/up.token" $GWARGS

i=0
until [ "$(dones)" -ge 5 ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "not 5 instances within 40 s"
    sleep 0.2
done
# Mid-chunk, with luck: the server holds part of the next file.
sleep 0.3
gw_kill9
log "killed -9 after $(dones) instances arrived"
gw_start "$UURL" "$T_TMP/up.token" $GWARGS
gw_wait_done 10 60

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" pixels "$T_TMP/up/store"/* >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" "pixels at the server"
assert_eq 10 "$(wc -l <"$T_TMP/up/index.jsonl")" "instances stored (once)"
assert_eq 10 "$(jget "$T_TMP/status.json" 'd["done"]')" "done in status"
assert_eq 0 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files left"
resumed=$(grep -c '"kind": "begin".*"offset": [1-9]' "$T_TMP/up/events.jsonl")
log "uploads resumed at an offset: $resumed"
pass
