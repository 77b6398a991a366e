#!/bin/sh
# An instance the server refuses (here: over its size cap, too_big) is
# marked failed with the server's reason, shown by `status --json` and
# `status`, and is not tried again -- not on the next session either --
# while the rest of the study is delivered; the failed file stays in the
# spool.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct3-64 3 --size 64 --patient-id GWFAIL --seed 303) || exit 1
BIG=$(study gw-ct1-512 1 --size 512 --patient-id GWFAIL --seed 304) ||
    exit 1
hashi_init
TOK=$(gw_token gw-refused)
# Uncompressed 64x64 slices are ~9 KB; a 512x512 one is ~520 KB and stays
# over 100 KB as JPEG-LS (noise).
hashi_start --max-instance 100000
gw_start "$HURL" "$TOK" --study-quiet 1 --retry-max 1

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    "$BIG"/*.dcm >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
gw_wait_done 3 30
i=0
until [ "$(jget "$T_TMP/status.json" 'd["failed"]')" = 1 ]; do
    i=$((i + 1)); [ $i -lt 40 ] || fail "no failed row: $(cat \
"$T_TMP/status.json")"
    sleep 0.25; gw_status
done
big_sop=$(attr_of "$BIG/CT00001.dcm" SOPInstanceUID)
assert_eq "$big_sop" "$(jget "$T_TMP/status.json" \
    'd["failures"][0]["sop_uid"]')" "the failed SOP UID"
assert_file_has "$T_TMP/status.json" '"reason": *"too_big: ' \
    "the server's reason in status --json"
"$GW" status --spool "$T_TMP/spool" >"$T_TMP/status.txt"
assert_file_has "$T_TMP/status.txt" "failed $big_sop after 1 attempt: too_big" \
    "the failure in status"

log "a new session does not try it again"
hashi_kill9
hashi_start --max-instance 100000
i=0
until [ "$(grep -c 'gateway:gw-refused .*connected' "$T_TMP/server.log")" \
        -ge 2 ]; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "the gateway did not come back"
    sleep 0.2
done
sleep 3
refusals=$(grep -c "failed at the server" "$T_TMP/gw.log")
assert_eq 1 "$refusals" "refusals logged"
gw_status
assert_eq 1 "$(jget "$T_TMP/status.json" 'd["failures"][0]["attempts"]')" \
    "attempts of the failed instance"
assert_eq 3 "$(jget "$T_TMP/status.json" 'd["done"]')" "done"
sha=$(sqlite3 "$T_TMP/spool/spool.db" \
    "SELECT sha256 FROM instances WHERE state = 3")
[ -f "$T_TMP/spool/files/$sha" ] || fail "the failed file left the spool"
assert_eq 3 "$(sqlite3 "$DATA/hashi.db" 'SELECT count(*) FROM instances')" \
    "instances in the server's index"
pass
