#!/bin/sh
# STOW-RS parts are stored by worker threads while the next part arrives,
# and the body is paused when more than 8 parts are in flight.  What that
# must not change: the reply lists the instances in the order they were
# sent, failed parts in between are reported (and nothing else is lost),
# the reply comes only when every part is stored; a client that drops
# the connection mid-body leaves the server serving, the parts it
# completed stored and audited, no temp file behind, and a resend
# completes the study.
. "$(dirname "$0")/lib.sh"

A=$(study ct40-pipe 40 --patient-id PIPE40 --seed 40) || exit 1
B=$(study ct30-pipe-b 30 --patient-id PIPE30 --seed 31) || exit 1
hashi_setup
tok=$(login demo-admin) || exit 1

# ---- 40 instances with two broken parts among them: 42 parts, 202
printf 'this is not DICOM at all\n' >"$T_TMP/junk1.dcm"
head -c 3000 "$A/CT00020.dcm" >"$T_TMP/junk2.dcm"     # cut short
set --
i=0
for f in "$A"/CT*.dcm; do
    i=$((i + 1))
    set -- "$@" "$f"
    [ $i = 7 ] && set -- "$@" "$T_TMP/junk1.dcm"
    [ $i = 25 ] && set -- "$@" "$T_TMP/junk2.dcm"
done
assert_eq 42 "$#" "parts in the body"
code=$(stow "$tok" "$@")
assert_eq 202 "$code" "STOW-RS of 40 instances and 2 broken parts ($(head -c 200 "$T_TMP/body"))"
cp "$T_TMP/body" "$T_TMP/reply.json"

# The stored ones, in the order sent, and the two failures with 0xC000.
for f in "$A"/CT*.dcm; do attr_of "$f" SOPInstanceUID; done >"$T_TMP/sent"
$PY - "$T_TMP/reply.json" >"$T_TMP/got" 2>"$T_TMP/py.err" <<'EOF' ||
import json, sys
r = json.load(open(sys.argv[1]))
for item in r["00081199"]["Value"]:
    print(item["00081155"]["Value"][0])
failed = r["00081198"]["Value"]
assert len(failed) == 2, failed
for item in failed:
    assert item["00081197"]["Value"][0] == 0xC000, item
    assert item["00000902"]["Value"][0], item
EOF
    fail "STOW-RS reply: $(cat "$T_TMP/py.err")"
cmp -s "$T_TMP/sent" "$T_TMP/got" ||
    fail "ReferencedSOPSequence not in the order sent: $(diff "$T_TMP/sent" "$T_TMP/got" | head -5)"
assert_eq 40 "$(wc -l <"$T_TMP/got")" "instances in the reply"
study_a=$(attr_of "$A/CT00001.dcm" StudyInstanceUID)
assert_eq 40 "$(qido_count "$tok" "/dicomweb/studies/$study_a/instances?limit=1000")" \
    "study A instances indexed when the reply came"
n=$($PY "$DW" verify-wado "$HURL" "$CACERT" "$tok" exact "$A"/CT*.dcm) ||
    fail "WADO-RS bytes differ from the posted files"
assert_eq 40 "$n" "study A served byte for byte"

# ---- a client that goes away after about half of study B, at once: parts
# are still at the workers when the request is freed
$PY "$DW" multipart "$T_TMP/b.body" HashiTestBoundary42 "$B"/CT*.dcm
$PY - "$HURL" "$CACERT" "$tok" "$T_TMP/b.body" <<'EOF' || fail "cut client failed"
import socket, ssl, sys, urllib.parse
url, cacert, tok, body = sys.argv[1:5]
u = urllib.parse.urlsplit(url)
data = open(body, "rb").read()
ctx = ssl.create_default_context(cafile=cacert)
s = ctx.wrap_socket(socket.create_connection((u.hostname, u.port)),
                    server_hostname=u.hostname)
head = ("POST /dicomweb/studies HTTP/1.1\r\nHost: %s:%d\r\n"
        "Authorization: Bearer %s\r\n"
        "Content-Type: multipart/related; type=\"application/dicom\"; "
        "boundary=HashiTestBoundary42\r\nAccept: application/dicom+json\r\n"
        "Content-Length: %d\r\n\r\n" % (u.hostname, u.port, tok, len(data)))
s.sendall(head.encode() + data[:len(data) // 2])
s.close()
EOF
healthz_ok "a client cut mid-body"
study_b=$(attr_of "$B/CT00001.dcm" StudyInstanceUID)
# Wait until the count stops moving (the workers finish what they have).
last=-1
i=0
while :; do
    got=$(qido_count "$tok" "/dicomweb/studies/$study_b/instances?limit=1000")
    [ "$got" = "$last" ] && [ "$got" -ge 1 ] && break
    last=$got
    i=$((i + 1))
    [ $i -lt 50 ] || fail "study B after the cut: $got instances, still moving or none"
    sleep 0.3
done
log "cut request: $got instances stored"
assert_le 15 "$got" "instances of the cut request (half of 30 was sent)"
audit_has store "$(attr_of "$B/CT00001.dcm" SOPInstanceUID)" \
    "audit line for a part of the cut request"
assert_eq 0 "$(find "$DATA/tmp" -type f | wc -l)" "temp files after the cut"
n=$($PY "$DW" blobcheck "$DATA" 2>&1) || fail "blobs after the cut: $n"

# ---- the resend completes it
code=$(stow_body "$tok" "$T_TMP/b.body" HashiTestBoundary42)
assert_eq 200 "$code" "STOW-RS resend of study B"
assert_eq 30 "$(qido_count "$tok" "/dicomweb/studies/$study_b/instances?limit=1000")" \
    "study B instances after the resend"
n=$($PY "$DW" verify-wado "$HURL" "$CACERT" "$tok" exact "$B"/CT*.dcm) ||
    fail "WADO-RS bytes differ from the posted files (B)"
assert_eq 30 "$n" "study B served byte for byte"
assert_eq 70 "$(metric hashi_instances_received_total)" "instances received"
assert_eq 0 "$(find "$DATA/tmp" -type f | wc -l)" "temp files at the end"
pass
