# gateway_wire_bytes_resumed: issue 6's link test.  A 100-slice study
# from storescu through hashi-gateway over 2 Mbit/s, 150 ms each way,
# cut every 8 s (the issue says 20 s; at this size the transfer takes
# about 17 s, so 8 s makes sure it is cut, at least twice): all 100
# instances arrive once with the source's decoded pixels, and what
# crossed the link (TLS, WebSocket framing and each cut's lost in-flight
# bytes included) is at most 1.1 x the JPEG-LS instances and preview the
# server stored: resumed, not restarted.  (Seen: 1.03-1.04 x, 3 cuts.)
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct100-256 100 --size 256 --patient-id GWWIRE --seed 100) ||
    exit 1
hashi_init
TOK=$(gw_token gw-wire)
hashi_start
linkemu_start wan "$HPORT" --rate 2mbit --delay 150ms --cut-every 8s \
    --outage 1s
gw_start "https://127.0.0.1:$LINK_PORT" "$TOK" --retry-max 1
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
gw_wait_done 100 120
linkemu_stop wan

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "SOP UIDs (once each) and decoded pixel hashes in the server's index"
cuts=$(linkemu_stat wan cuts)
assert_ge 1 "$cuts" "cuts during the transfer"
stored=$(sqlite3 "$DATA/hashi.db" "SELECT sum(size) FROM instances")
uid=$(attr_of "$ST/CT00001.dcm" StudyInstanceUID)
R=$(login demo-requester)
assert_eq 200 "$(http GET "/api/studies/$uid/preview" "$R")" "the preview"
stored=$((stored + $(wc -c <"$T_TMP/body")))
wire=$(linkemu_stat wan up_bytes)
log "on the wire $wire, stored $stored, cuts $cuts"
assert_le $((stored * 11 / 10)) "$wire" \
    "bytes on the wire vs stored (instances and preview)"
pass
