#!/bin/sh
# Uploads that must not land: a wrong sha256 is conflict and discarded,
# bytes that are not DICOM are bad_field and discarded, an instance or a
# preview into another clinic's study is forbidden (nothing stored), a
# specialist may not upload, a size over --max-instance is too_big, and
# an abandoned partial upload is removed after --upload-max-age.
. "$(dirname "$0")/lib.sh"

hashi_init
user_add req-b "Clinic B" requester
hashi_start --upload-max-age 2 --max-instance 4000000
A=$(login demo-requester)
B=$(login req-b)
N=$(login demo-neuro)
dir=$(study upload-small 2 --size 128 --seed 42)
f1=$(ls "$dir"/*.dcm | sed -n 1p)
f2=$(ls "$dir"/*.dcm | sed -n 2p)
st=$(attr_of "$f1" StudyInstanceUID)

cd "$HASHI_ROOT"
$PY - "$HURL" "$CACERT" "$A" "$B" "$N" "$f1" "$f2" "$st" \
    2>"$T_TMP/py.err" <<'PYEOF' || fail "$(tail -3 "$T_TMP/py.err")"
import os
import sys
sys.path.insert(0, "tests/integration")
from uplink import Session, sha256_of, upload, expect, expect_error, main

def run(a):
    url, ca, A, B, N, f1, f2, st = a
    d1, d2 = open(f1, "rb").read(), open(f2, "rb").read()
    a_s, b_s = Session(url, ca, A), Session(url, ca, B)

    # wrong sha256: conflict, and the upload is gone (begin -> 0)
    m = a_s.req({"type": "upload.begin", "upload_id": "bad-sha",
                 "sha256": sha256_of(b"other"), "size": len(d1)})
    a_s.send_from("bad-sha", d1, m["offset"])
    expect_error(a_s.req({"type": "upload.end", "upload_id": "bad-sha"}),
                 "conflict", "wrong sha256")
    m = a_s.req({"type": "upload.begin", "upload_id": "bad-sha",
                 "sha256": sha256_of(b"other"), "size": len(d1)})
    expect(m["type"] == "upload.at" and m["offset"] == 0,
           "discarded: begins again at 0", m)

    # not DICOM: bad_field, discarded
    junk = os.urandom(3000)
    expect_error(upload(a_s, "junk", junk), "bad_field", "non-DICOM")
    m = a_s.req({"type": "upload.begin", "upload_id": "junk",
                 "sha256": sha256_of(junk), "size": len(junk)})
    expect(m["type"] == "upload.at" and m["offset"] == 0,
           "discarded: begins again at 0", m)

    # end before the last byte: not_ready with the offset
    m = a_s.req({"type": "upload.begin", "upload_id": "half",
                 "sha256": sha256_of(d1), "size": len(d1)})
    a_s.send_from("half", d1, 0, 1000)
    m = a_s.req({"type": "upload.end", "upload_id": "half"})
    expect_error(m, "not_ready", "upload.end before the last byte")
    expect("1000 of %d" % len(d1) in m["error"]["message"],
           "not_ready names the offset", m)

    # clinic A's instance is stored; clinic B may not add to that study
    m = upload(a_s, "a-1", d1)
    expect(m.get("status") == "stored", "clinic A's instance stored", m)
    expect_error(upload(b_s, "b-1", d2), "forbidden",
                 "an instance into clinic A's study")
    jpeg = b"\xff\xd8\xff\xe0" + b"x" * 100
    expect_error(upload(b_s, "b-p", jpeg, kind="preview", study_uid=st),
                 "forbidden", "a preview of clinic A's study")

    # who and how big
    n_s = Session(url, ca, N)
    expect_error(n_s.req({"type": "upload.begin", "upload_id": "n-1",
                          "sha256": sha256_of(d2), "size": len(d2)}),
                 "forbidden", "a specialist's upload")
    m = a_s.req({"type": "upload.begin", "upload_id": "huge",
                 "sha256": sha256_of(b"x"), "size": 4000001})
    expect_error(m, "too_big", "over --max-instance")
    m = a_s.req({"type": "upload.begin", "upload_id": "bigp",
                 "sha256": sha256_of(b"x"), "size": 1048577,
                 "kind": "preview", "study_uid": "1.2.3"})
    expect_error(m, "too_big", "a preview over 1 MiB")

    # a chunk of an upload not begun on this connection
    b_s.chunk("a-1", 0, b"xx")
    m = b_s.wait(lambda m: m.get("type") == "error")
    expect(m["error"]["code"] == "not_found", "foreign chunk: not_found", m)

    # abandoned: clinic B begins, sends a little, goes away
    m = b_s.req({"type": "upload.begin", "upload_id": "gone",
                 "sha256": sha256_of(d2), "size": len(d2)})
    b_s.send_from("gone", d2, 0, 5000)
    b_s.progress("gone", 5000)
    print("abandoned")

main(run)
PYEOF

# Nothing of clinic B's landed: the study still has clinic A's one.
assert_eq 1 "$(qido_count "$A" "/dicomweb/studies/$st/instances")" \
    "instances of clinic A's study"
audit_has reject "refused" "the cross-clinic refusal"
assert_eq 404 "$(http GET "/api/studies/$st/preview" "$A")" \
    "no preview was stored"

# The abandoned part file goes after --upload-max-age (2 s).
ls "$DATA"/uploads/*.part >/dev/null 2>&1 || fail "no part file kept"
i=0
while ls "$DATA"/uploads/*.part >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "part files still there: $(ls "$DATA/uploads")"
    sleep 0.2
done
$PY - "$HURL" "$CACERT" "$B" "$f2" 2>"$T_TMP/py.err" <<'PYEOF' ||
import sys
sys.path.insert(0, "tests/integration")
from uplink import Session, sha256_of, expect, main

def run(a):
    url, ca, B, f2 = a
    d2 = open(f2, "rb").read()
    m = Session(url, ca, B).req({"type": "upload.begin", "upload_id": "gone",
                                 "sha256": sha256_of(d2), "size": len(d2)})
    expect(m["type"] == "upload.at" and m["offset"] == 0,
           "the expired upload begins again at 0", m)

main(run)
PYEOF
    fail "$(tail -3 "$T_TMP/py.err")"
pass
