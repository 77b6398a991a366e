#!/bin/sh
# hashi-gateway announces a study (study.expect with its count) when the
# association that sent it ends, not only once it has been quiet for
# --study-quiet: with the quiet time at its maximum (an hour), a study
# sent by storescu is still announced and delivered (a study's instances
# wait for its announcement), and the server expects exactly its count.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct3-128 3 --size 128 --patient-id GWEND --seed 3131) ||
    exit 1
UID_=$(attr_of "$ST/CT00001.dcm" StudyInstanceUID)
hashi_init
TOK=$(gw_token gw-end)
hashi_start
gw_start "$HURL" "$TOK" --study-quiet 3600

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
wait_grep "$T_TMP/gw.log" "study $UID_: 3 instances announced" 30
gw_wait_done 3 60
assert_eq 3 "$(sqlite3 "$DATA/hashi.db" "SELECT instances FROM \
study_expectations WHERE study_uid = '$UID_'")" "the server's expectation"

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" "instances at the server"
pass
