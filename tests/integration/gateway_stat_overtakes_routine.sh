#!/bin/sh
# A stat study that reaches the gateway while a routine study is being
# sent goes first: once a stat case names it (the answer to its `study.priority`),
# all of it is in the server's index before the routine study's last
# instances, and the routine study then completes.  With no cuts, what
# crossed the link is at most 1.1 x the bytes the server stored (JPEG-LS
# instances and previews), and less than the uncompressed originals.
. "$(dirname "$0")/lib.sh"

RT=$(study gw-routine12-256 12 --size 256 --patient-id GWROUT --seed 121) ||
    exit 1
SS=$(study gw-stat3-256 3 --size 256 --patient-id GWSTAT --seed 31) ||
    exit 1
hashi_init
TOK=$(gw_token gw-prio)
hashi_start
R=$(login demo-requester)
linkemu_start wan "$HPORT" --delay 20ms
# 512 kbit/s: the routine study takes several seconds.
gw_start "https://127.0.0.1:$LINK_PORT" "$TOK" --study-quiet 1 \
    --max-rate 512kbit

storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$RT"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 || fail "storescu (routine) exited $?"
wait_grep "$T_TMP/gw.log" 'delivered \(stored' 30
log "routine study under way; the stat study comes"
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$SS"/*.dcm \
    >>"$T_TMP/storescu.log" 2>&1 || fail "storescu (stat) exited $?"
stat_uid=$(attr_of "$SS/CT00001.dcm" StudyInstanceUID)
assert_eq 201 "$(api POST /api/cases "$R" "{\"case_id\":\"gw-stat-1\",\
\"question\":\"Bleed?\",\"priority\":\"stat\",\"specialty\":\"neurology\",\
\"study_uids\":[\"$stat_uid\"]}")" "the stat case"
gw_wait_done 15 120
linkemu_stop wan
wait_grep "$T_TMP/gw.log" "study $stat_uid is stat" 1

$PY "$DW" uids "$SS"/*.dcm | awk '{ print $4 }' | sort >"$T_TMP/stat.sops"
sqlite3 "$DATA/hashi.db" "SELECT sop_uid FROM instances ORDER BY id" \
    >"$T_TMP/order"
$PY - "$T_TMP/order" "$T_TMP/stat.sops" <<'PYEOF' || fail "order of arrival"
import sys
done = open(sys.argv[1]).read().split()
stat = set(open(sys.argv[2]).read().split())
last_stat = max(i for i, s in enumerate(done) if s in stat)
after = [s for s in done[last_stat + 1:] if s not in stat]
print("%d routine instances arrived after the last stat one" % len(after))
if len(done) != 15 or len(set(done)) != 15:
    sys.exit("%d in the index, %d distinct" % (len(done), len(set(done))))
if len(after) < 3:
    sys.exit("the stat study did not overtake: %d routine after it"
             % len(after))
PYEOF

$PY "$DW" pixels "$RT"/*.dcm "$SS"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" "pixels at the server"

# What had to cross: the stored (JPEG-LS) instances and the two previews.
stored=$(sqlite3 "$DATA/hashi.db" "SELECT sum(size) FROM instances")
for uid in "$stat_uid" "$(attr_of "$RT/CT00001.dcm" StudyInstanceUID)"; do
    assert_eq 200 "$(http GET "/api/studies/$uid/preview" "$R")" \
        "preview of $uid"
    stored=$((stored + $(wc -c <"$T_TMP/body")))
done
wire=$(linkemu_stat wan up_bytes)
orig=$(cat "$RT"/*.dcm "$SS"/*.dcm | wc -c)
log "on the wire $wire, stored $stored, originals $orig"
assert_le $((stored * 11 / 10)) "$wire" \
    "bytes on the wire vs stored (instances and previews)"
assert_le "$orig" "$wire" "bytes on the wire vs the originals"
pass
