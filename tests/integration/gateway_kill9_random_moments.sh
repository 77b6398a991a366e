#!/bin/sh
# hashi-gateway killed -9 at 5 random moments of one transfer (random
# sleeps between the kills; the seed is printed, SEED=N repeats a run)
# and hashi-server killed -9 once in the middle of the same transfer,
# each restarted at once: every instance is in the server's index exactly
# once with its pixels intact, and the spool ends empty.
. "$(dirname "$0")/lib.sh"

SEED=${SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
log "seed $SEED"
ST=$(study gw-ct12-256 12 --size 256 --patient-id GWRAND --seed 1212) ||
    exit 1
hashi_init
TOK=$(gw_token gw-rand)
hashi_start
GWARGS="--study-quiet 1 --retry-max 1 --max-rate 384kbit"
gw_start "$HURL" "$TOK" $GWARGS
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"

arrived() { sqlite3 "$DATA/hashi.db" "SELECT count(*) FROM instances"; }
# Five sleeps of 0.3..2.5 s, from the seed.
for s in $(awk -v s="$SEED" 'BEGIN { srand(s); for (i = 0; i < 5; i++)
        printf "%.2f ", 0.3 + rand() * 2.2 }'); do
    sleep "$s"
    gw_kill9
    log "gateway killed -9 after $s s, $(arrived) instance(s) arrived"
    if [ -z "${SRV_KILLED:-}" ] &&
        [ "$(arrived)" -ge 1 ]; then
        hashi_kill9
        log "server killed -9 too, $(arrived) instance(s) arrived"
        hashi_start
        SRV_KILLED=1
    fi
    gw_start "$HURL" "$TOK" $GWARGS
done
if [ -z "${SRV_KILLED:-}" ]; then
    sleep 0.5
    hashi_kill9
    log "server killed -9 after the gateway's kills, $(arrived) arrived"
    hashi_start
fi
gw_wait_done 12 120

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "SOP UIDs (once each) and pixels in the server's index"
assert_eq 12 "$(jget "$T_TMP/status.json" 'd["done"]')" "done in status"
assert_eq 0 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files left"
pass
