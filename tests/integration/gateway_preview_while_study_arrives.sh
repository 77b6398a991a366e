#!/bin/sh
# hashi-gateway sends a study's preview while the study is still
# arriving: over a slow LAN (64 kbit/s, so the association lasts many
# seconds), the server holds a preview of the study while storescu is
# still sending it and before any of its instances (they wait for the
# study's announcement).  Once the association ends the preview is
# replaced by the whole study's middle image (another JPEG), and every
# instance arrives with its pixels intact.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-early4-128 4 --size 128 --patient-id GWEARLY --seed 4141) ||
    exit 1
UID_=$(attr_of "$ST/CT00001.dcm" StudyInstanceUID)
hashi_init
TOK=$(gw_token gw-early)
hashi_start
gw_start "$HURL" "$TOK" --study-quiet 3600
linkemu_start lan "$GWPORT" --rate 64kbit

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$LINK_PORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 &
SCU=$!
at_exit "kill $SCU 2>/dev/null"

preview_sha() {
    sqlite3 "$DATA/hashi.db" "SELECT sha256 FROM study_previews \
WHERE study_uid = '$UID_'"
}
# preview_other_than SHA WHAT: until the server's preview is another one.
preview_other_than() {
    i=0
    while [ "$(preview_sha)" = "$1" ]; do
        i=$((i + 1))
        [ $i -lt 600 ] || fail "$2 within 60 s"
        sleep 0.1
    done
}
preview_other_than "" "no preview"
early=$(preview_sha)
kill -0 "$SCU" 2>/dev/null ||
    fail "the preview came only as the association ended"
assert_eq 0 "$(sqlite3 "$DATA/hashi.db" "SELECT count(*) FROM instances")" \
    "instances at the server while the study arrives"
log "early preview $early while storescu sends"

wait "$SCU" || fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
wait_grep "$T_TMP/gw.log" "study $UID_: 4 instances announced" 30
gw_wait_done 4 60
preview_other_than "$early" "the early preview not replaced"
log "final preview $(preview_sha)"

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" "instances at the server"
pass
