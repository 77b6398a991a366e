#!/bin/sh
# A stat study that reaches the gateway while a routine study is being
# sent goes first: once the server names it stat (`priorities`), every
# instance of it is delivered before the routine study's last ones, and
# the routine study then completes.  With no cuts, what crossed the link
# is at most 1.1 x the (JPEG-LS) bytes the server stored, and less than
# the uncompressed originals.
. "$(dirname "$0")/lib.sh"

RT=$(study gw-routine12-256 12 --size 256 --patient-id GWROUT --seed 121) ||
    exit 1
SS=$(study gw-stat3-256 3 --size 256 --patient-id GWSTAT --seed 31) ||
    exit 1
hashi_init
up_start --priorities "$T_TMP/prio.json"
link_start "$UPORT" --delay 20ms
# 512 kbit/s: the routine study takes several seconds.
gw_start "$LURL" "$T_TMP/up.token" --study-quiet 1 --max-rate 512kbit

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$RT"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 || fail "storescu (routine) exited $?"
wait_grep "$T_TMP/up/events.jsonl" '"kind": "done".*"sop"' 30
log "routine study under way; the stat study comes"
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$SS"/*.dcm \
    >>"$T_TMP/storescu.log" 2>&1 || fail "storescu (stat) exited $?"
stat_uid=$(attr_of "$SS/CT00001.dcm" StudyInstanceUID)
echo "[{\"study_uid\":\"$stat_uid\",\"priority\":\"stat\",\"case_id\":\"c-stat-1\"}]" \
    >"$T_TMP/prio.json.tmp"
mv "$T_TMP/prio.json.tmp" "$T_TMP/prio.json"
gw_wait_done 15 120
link_stop

$PY "$DW" uids "$SS"/*.dcm | awk '{ print $4 }' | sort >"$T_TMP/stat.sops"
$PY - "$T_TMP/up/events.jsonl" "$T_TMP/stat.sops" <<'PYEOF' ||
import json, sys
L = [json.loads(x) for x in open(sys.argv[1])]
stat = set(open(sys.argv[2]).read().split())
done = [m["sop"] for m in L if m["kind"] == "done" and "sop" in m]
last_stat = max(i for i, s in enumerate(done) if s in stat)
routine_after = [s for s in done[last_stat + 1:] if s not in stat]
print("done order: %d routine after the last stat" % len(routine_after))
if len(done) != 15 or len(set(done)) != 15:
    sys.exit("%d done, %d distinct" % (len(done), len(set(done))))
if len(routine_after) < 3:
    sys.exit("the stat study did not overtake: only %d routine after it"
             % len(routine_after))
PYEOF
    fail "order of delivery"
grep -q '"priority": "stat"' "$T_TMP/up/events.jsonl" ||
    log "note: the stat study was announced before its priority came"

$PY "$DW" pixels "$RT"/*.dcm "$SS"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" pixels "$T_TMP/up/store"/* >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" "pixels at the server"

wire=$(jget "$T_TMP/link.stats" 'd["up_bytes"]')
stored=$(cat "$T_TMP/up/store"/* | wc -c)
orig=$(cat "$RT"/*.dcm "$SS"/*.dcm | wc -c)
log "on the wire $wire, stored $stored, originals $orig"
assert_le $((stored * 11 / 10)) "$wire" "bytes on the wire vs stored"
assert_le "$orig" "$wire" "bytes on the wire vs the originals"
pass
