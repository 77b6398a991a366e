#!/bin/sh
# Instances sent by storescu to hashi-gateway reach the server through a
# slow link that is cut every 2 s and whose server end is killed -9 once
# mid-transfer: each SOP Instance UID arrives exactly once, its decoded
# pixels hash as the original's (the gateway sends JPEG-LS), the study is
# announced (study.expect) with its count and its preview comes first;
# then the spool rows are done and their files gone.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct8-256 8 --size 256 --patient-id GWCUTS --seed 83) || exit 1
hashi_init
up_start
link_start "$UPORT" --rate 4mbit --delay 20ms --cut-every 2s --outage 0.3s
gw_start "$LURL" "$T_TMP/up.token" --retry-max 1 --study-quiet 1

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"

# The server dies once, mid-transfer, and comes back.
wait_grep "$T_TMP/up/events.jsonl" '"kind": "done".*"sop"' 30
up_kill9
log "server killed -9 after its first instance; restarting"
sleep 1
up_start
gw_wait_done 8 90
link_stop

$PY "$DW" pixels "$ST"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" pixels "$T_TMP/up/store"/* >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "SOP UIDs and decoded pixel hashes at the server"
assert_eq 8 "$(wc -l <"$T_TMP/up/index.jsonl")" "instances indexed (once)"
$PY - "$T_TMP/up/store"/* <<'PYEOF' || fail "not every stored instance is JPEG-LS"
import sys, pydicom
for p in sys.argv[1:]:
    ts = str(pydicom.dcmread(p, stop_before_pixels=True).file_meta
             .TransferSyntaxUID)
    if ts != "1.2.840.10008.1.2.4.80":
        sys.exit("%s: %s" % (p, ts))
PYEOF
cuts=$(jget "$T_TMP/link.stats" 'd["cuts"]')
log "link cuts: $cuts"
assert_ge 1 "$cuts" "cuts during the transfer"

study_uid=$(attr_of "$ST/CT00001.dcm" StudyInstanceUID)
jlines "$T_TMP/up/events.jsonl" \
    '[m["instances"] for m in L if m["kind"] == "expect"][-1]' \
    >"$T_TMP/expected"
assert_eq 8 "$(cat "$T_TMP/expected")" "study.expect instances"
[ -s "$T_TMP/up/previews/$study_uid.jpg" ] || fail "no preview stored"
assert_eq "ffd8ff" "$(head -c 3 "$T_TMP/up/previews/$study_uid.jpg" |
    od -An -tx1 | tr -d ' \n')" "preview starts as a JPEG"
set -- $($PY "$DW" jpeg "$T_TMP/up/previews/$study_uid.jpg")
assert_le 512 "$1" "preview width"
first=$(jlines "$T_TMP/up/events.jsonl" \
    'next(i for i, m in enumerate(L) if m["kind"] == "done")')
assert_eq preview "$(jlines "$T_TMP/up/events.jsonl" \
    "'preview' if 'preview' in L[$first] else L[$first]")" \
    "the first upload done is the preview"

gw_status
assert_eq 8 "$(jget "$T_TMP/status.json" 'd["done"]')" "done in status"
assert_eq 0 "$(jget "$T_TMP/status.json" \
    'd["waiting"] + d["in_flight"] + d["failed"]')" "left in status"
assert_eq 0 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files left"
pass
