#!/bin/sh
# kill -9 in the middle of a 200-slice STOW-RS upload, then restart:
# nothing acknowledged is lost (everything indexed before the kill is still
# indexed), every indexed instance has its blob at blobs/ab/cd/<sha256>
# and the blob hashes to that name, no half file is visible anywhere under
# blobs/, tmp/ is empty, and sending the study again completes it: 200
# instances, each served byte for byte as sent.
. "$(dirname "$0")/lib.sh"

ST=$(study ct200 200 --patient-id CRASH200 --seed 200) || exit 1
hashi_setup
tok=$(login demo-admin) || exit 1

first=$ST/CT00001.dcm
study_uid=$(attr_of "$first" StudyInstanceUID)
series_uid=$(attr_of "$first" SeriesInstanceUID)
ipath="/dicomweb/studies/$study_uid/series/$series_uid/instances"

# How many instances the server has indexed: /metrics is open to loopback.
received() {
    curl -s --max-time 2 --cacert "$CACERT" "$HURL/metrics" |
        awk '/^hashi_instances_received_total/ { print $2; f = 1 }
             END { if (!f) print -1 }'
}
assert_eq 0 "$(received)" "hashi_instances_received_total at start"

$PY "$DW" multipart "$T_TMP/study.body" CrashBoundary "$ST"/*.dcm
size=$(wc -c <"$T_TMP/study.body")
# 12 MB/s: the 105 MB request takes ~9 s, long enough to kill it midway.
curl -sS --cacert "$CACERT" -H 'Expect:' -H "Authorization: Bearer $tok" \
    -H 'Content-Type: multipart/related; type="application/dicom"; boundary=CrashBoundary' \
    --limit-rate 12M -X POST -T "$T_TMP/study.body" -o "$T_TMP/crash.reply" \
    -w '%{http_code}' "$HURL/dicomweb/studies" >"$T_TMP/crash.code" \
    2>"$T_TMP/crash.err" &
CURL=$!

seen=0
i=0
while kill -0 "$CURL" 2>/dev/null && [ $i -lt 300 ]; do
    seen=$(received)
    [ "$seen" -ge 30 ] && break
    sleep 0.1; i=$((i + 1))
done
kill -0 "$CURL" 2>/dev/null ||
    fail "the upload ended before the kill (indexed: $seen of 200; \
code $(cat "$T_TMP/crash.code")): Hashi must index part by part"
assert_ge 30 "$seen" "instances indexed mid-upload (after 30 s)"
hashi_kill9
log "killed with $seen instances acknowledged-as-indexed, $size-byte request"
wait "$CURL"
assert_ne 200 "$(cat "$T_TMP/crash.code")" "status of the killed request"

# ---- restart: recovery runs at start-up
hashi_start
n=$($PY "$DW" blobcheck "$DATA") || fail "blob check after the crash"
log "after restart: $n instances indexed, every blob hashes to its name"
assert_ge "$seen" "$n" "indexed instances after restart (none lost)"
assert_le 199 "$n" "indexed instances (the kill came midway)"
left=$(find "$DATA/tmp" -type f | wc -l)
assert_eq 0 "$left" "files left in $DATA/tmp"
tok=$(login demo-admin) || exit 1
assert_eq "$n" "$(qido_count "$tok" "$ipath?limit=1000")" \
    "instances QIDO lists after restart (= rows indexed)"

# ---- re-send: completes the study; the earlier ones are duplicates
code=$(stow_body "$tok" "$T_TMP/study.body" CrashBoundary)
assert_eq 200 "$code" "re-sent STOW-RS ($(head -c 200 "$T_TMP/body"))"
assert_eq 200 "$(qido_count "$tok" "$ipath?limit=1000")" \
    "instances after re-sending"
assert_eq 200 "$($PY "$DW" blobcheck "$DATA")" "indexed blobs after re-sending"
n=$($PY "$DW" verify-wado "$HURL" "$CACERT" "$tok" exact "$ST"/*.dcm) ||
    fail "WADO-RS bytes after recovery"
assert_eq 200 "$n" "instances served byte for byte after recovery"
assert_eq 0 "$(find "$DATA/tmp" -type f | wc -l)" "files in tmp at the end"

pass
