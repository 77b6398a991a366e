#!/bin/sh
# hashi-gateway killed -9 at three moments -- right after storescu's
# success, after the first instance arrived, and in the middle of the
# study -- and restarted each time: every instance is in the server's
# index exactly once with its pixels intact, and the spool ends empty.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct10-256 10 --size 256 --patient-id GWKILL --seed 1010) ||
    exit 1
hashi_init
TOK=$(gw_token gw-kill)
hashi_start
GWARGS="--study-quiet 1 --retry-max 1 --max-rate 1mbit"
gw_start "$HURL" "$TOK" $GWARGS

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
gw_kill9
log "killed -9 right after storescu's success"
gw_start "$HURL" "$TOK" $GWARGS

arrived() { sqlite3 "$DATA/hashi.db" "SELECT count(*) FROM instances"; }
i=0
until [ "$(arrived)" -ge 1 ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "nothing arrived within 40 s"
    sleep 0.2
done
gw_kill9
log "killed -9 after $(arrived) instance(s) arrived"
gw_start "$HURL" "$TOK" $GWARGS

i=0
until [ "$(arrived)" -ge 5 ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "not 5 instances within 40 s"
    sleep 0.2
done
# Mid-file, with luck: the server holds part of the next one.
sleep 0.3
gw_kill9
log "killed -9 after $(arrived) instances arrived"
gw_start "$HURL" "$TOK" $GWARGS
gw_wait_done 10 60

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "SOP UIDs (once each) and pixels in the server's index"
assert_eq 10 "$(jget "$T_TMP/status.json" 'd["done"]')" "done in status"
assert_eq 0 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files left"
pass
