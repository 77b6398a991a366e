#!/bin/sh
# An upload cut in the middle resumes at the durable offset the server
# reported — after a dropped connection and after kill -9 of the server —
# and completes with the source's bytes in the store, indexed once.  A
# chunk leaving a gap is answered with upload.at resend at that offset.
. "$(dirname "$0")/lib.sh"

hashi_setup
tok=$(login demo-requester)
dir=$(study upload-big 1 --size 1200 --seed 41)
file=$(ls "$dir"/*.dcm | head -1)
size=$(stat -c %s "$file")
assert_ge 2500000 "$size" "test file size"

# up PHASE: one step of the upload, from a new connection.
up() {
    $PY - "$HURL" "$CACERT" "$tok" "$file" "$1" >"$T_TMP/up.$1" \
        2>>"$T_TMP/up.err" <<'PYEOF' || fail "phase $1: $(tail -3 "$T_TMP/up.err")"
import sys
sys.path.insert(0, "tests/integration")
from uplink import Session, sha256_of, expect, main

def run(a):
    url, ca, tok, path, phase = a
    data = open(path, "rb").read()
    s = Session(url, ca, tok)
    begin = {"type": "upload.begin", "upload_id": "big-1",
             "sha256": sha256_of(data), "size": len(data)}
    at = s.req(begin)
    expect(at["type"] == "upload.at", "upload.begin answered", at)
    off = at["offset"]
    print(off)
    if phase == "first":
        expect(off == 0, "a new upload starts at 0", at)
        s.send_from("big-1", data, 0, 1000000)
        print(s.progress("big-1", 1000000))   # then the connection drops
    elif phase == "second":
        # a gap: the server answers resend at its offset, keeps nothing
        s.chunk("big-1", off + 65536, data[off + 65536:off + 131072])
        rs = s.wait(lambda m: m.get("type") == "upload.at" and
                    "id" not in m)
        expect(rs.get("reason") == "resend" and rs["offset"] == off,
               "upload.at resend at %d" % off, rs)
        s.send_from("big-1", data, off, 2000000)
        print(s.progress("big-1", 2000000))   # then kill -9
    else:
        s.send_from("big-1", data, off)
        done = s.req({"type": "upload.end", "upload_id": "big-1"})
        expect(done["type"] == "upload.done" and
               done["status"] == "stored", "upload.done stored", done)
        print(done["sop_instance_uid"])
        again = s.req(dict(begin, upload_id="big-2"))
        expect(again["type"] == "upload.done" and
               again["status"] == "duplicate" and
               again["sop_instance_uid"] == done["sop_instance_uid"],
               "the same file again: upload.done duplicate at once", again)

main(run)
PYEOF
}

cd "$HASHI_ROOT"
up first
assert_eq 0 "$(sed -n 1p "$T_TMP/up.first")" "offset of the new upload"
acked1=$(sed -n 2p "$T_TMP/up.first")
assert_ge 1000000 "$acked1" "progress acknowledged before the cut"

up second
assert_eq "$acked1" "$(sed -n 1p "$T_TMP/up.second")" \
    "offset answered after the cut (the acknowledged one)"
acked2=$(sed -n 2p "$T_TMP/up.second")
assert_ge 2000000 "$acked2" "progress acknowledged before kill -9"

hashi_kill9
hashi_start
up third
resumed=$(sed -n 1p "$T_TMP/up.third")
assert_eq "$acked2" "$resumed" "offset answered after kill -9 and restart"
sop=$(sed -n 2p "$T_TMP/up.third")

# The stored blob is the source, byte for byte, and indexed once.
sha=$(sha256sum "$file" | cut -d' ' -f1)
blob="$DATA/blobs/$(echo "$sha" | cut -c1-2)/$(echo "$sha" | cut -c3-4)/$sha"
assert_same_file "$file" "$blob" "stored blob"
st=$(attr_of "$file" StudyInstanceUID)
assert_eq 1 "$(qido_count "$tok" "/dicomweb/studies/$st/instances")" \
    "instances of the study in the index"
audit_has store "$sop" "the upload's store"
[ -z "$(ls "$DATA/uploads")" ] || fail "part files left: $(ls "$DATA/uploads")"
pass
