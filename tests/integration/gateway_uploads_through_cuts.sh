#!/bin/sh
# Instances sent by storescu to hashi-gateway reach hashi-server through
# a slow link that is cut every 2 s, with the server killed -9 once
# mid-transfer (its rows wait meanwhile, none in flight): each SOP Instance UID is in the server's index exactly
# once and its decoded pixels hash as the original's (the gateway sends
# JPEG-LS lossless); the study was announced (the case shows 8 of 8) and
# its preview, delivered first, is served; its last gateway.status
# (/api/gateways) says 8 done, nothing left; the spool rows are done
# and their files gone.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct8-256 8 --size 256 --patient-id GWCUTS --seed 83) || exit 1
hashi_init
TOK=$(gw_token gw-cuts)
hashi_start
R=$(login demo-requester)
study_uid=$(attr_of "$ST/CT00001.dcm" StudyInstanceUID)
assert_eq 201 "$(api POST /api/cases "$R" "{\"case_id\":\"gw-cuts-1\",\
\"question\":\"Bleed?\",\"priority\":\"routine\",\"specialty\":\"neurology\",\
\"study_uids\":[\"$study_uid\"]}")" "case naming the study"

linkemu_start wan "$HPORT" --rate 4mbit --delay 20ms --cut-every 2s \
    --outage 0.3s
gw_start "https://127.0.0.1:$LINK_PORT" "$TOK" --retry-max 1 \
    --study-quiet 1

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"

wait_grep "$T_TMP/gw.log" 'CT.*delivered|delivered \(stored' 40
hashi_kill9
log "server killed -9 after the first instance arrived"
# While the server is down nothing is in flight: the rows wait again.
i=0
until gw_status && [ "$(jget "$T_TMP/status.json" 'd["in_flight"]')" = 0 ]
do
    i=$((i + 1)); [ $i -lt 50 ] || fail "rows still in flight with the \
server down: $(cat "$T_TMP/status.json")"
    sleep 0.2
done
assert_ge 1 "$(jget "$T_TMP/status.json" 'd["waiting"]')" \
    "rows waiting while the server is down"
log "restarting the server"
hashi_start
gw_wait_done 8 90

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "SOP UIDs (once each) and decoded pixel hashes in the server's index"
assert_eq "1.2.840.10008.1.2.4.80" "$(sqlite3 "$DATA/hashi.db" \
    'SELECT DISTINCT transfer_syntax FROM instances')" \
    "transfer syntax of every stored instance"

assert_eq 200 "$(api GET /api/cases/gw-cuts-1 "$R")" "the case"
assert_eq "8 8" "$(jget "$T_TMP/body" '"%s %s" % (
    d["case"]["images"]["received"], d["case"]["images"]["expected"])')" \
    "images received and expected on the case"
assert_eq 200 "$(http GET "/api/studies/$study_uid/preview" "$R")" \
    "the study's preview"
assert_eq "ffd8ff" "$(head -c 3 "$T_TMP/body" | od -An -tx1 |
    tr -d ' \n')" "the preview is a JPEG"
set -- $($PY "$DW" jpeg "$T_TMP/body")
assert_le 512 "$1" "preview width"

pv=$(grep -n "preview of $study_uid delivered" "$T_TMP/gw.log" | head -1 |
    cut -d: -f1)
first=$(grep -n 'delivered (' "$T_TMP/gw.log" | head -1 | cut -d: -f1)
[ -n "$pv" ] && [ "$pv" -lt "$first" ] ||
    fail "the preview was not delivered before the first instance"

# Its last gateway.status, as the clinic sees it.
i=0
until [ "$(api GET /api/gateways "$R")" = 200 ] && [ "$(jget "$T_TMP/body" \
        '[g["status"]["done"] for g in d["gateways"]
          if g["name"] == "gw-cuts"][0]')" = 8 ]; do
    i=$((i + 1)); [ $i -lt 50 ] || fail "/api/gateways: $(cat "$T_TMP/body")"
    sleep 0.2
done
assert_eq "0 0 0" "$(jget "$T_TMP/body" '" ".join(str(g["status"][k])
    for g in d["gateways"] for k in ("waiting", "in_flight", "failed"))')" \
    "waiting, in flight, failed in the last gateway.status"
linkemu_stop wan
cuts=$(linkemu_stat wan cuts)
log "link cuts: $cuts"
assert_ge 1 "$cuts" "cuts during the transfer"

gw_status
assert_eq 8 "$(jget "$T_TMP/status.json" 'd["done"]')" "done in status"
assert_eq 0 "$(jget "$T_TMP/status.json" \
    'd["waiting"] + d["in_flight"] + d["failed"]')" "left in status"
assert_eq 0 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files left"
pass
