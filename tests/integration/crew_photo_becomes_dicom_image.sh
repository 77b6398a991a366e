#!/bin/sh
# crew_photo_becomes_dicom_image: a crew's phone JPEG, uploaded as kind
# "photo" over a link cut once, becomes a VL Photographic Image of its
# case: encapsulated JPEG Baseline whose one fragment is the JPEG, byte
# for byte; Rows/Columns/Photometric from the JPEG; the case's patient
# data; its own study, named by the case.  dciodvfy finds no error.  The
# stroke team sees the photos and renders them; the same photo again is
# one instance.  Not a JPEG, a progressive JPEG, no case_id, another
# service's case: refused clearly, nothing made.
. "$(dirname "$0")/lib.sh"

hashi_init
for s in "North EMS" "South EMS"; do
    "$SERVER" clinic add --data "$DATA" --name "$s" --kind ems \
        >>"$T_TMP/admin.log" 2>&1 || fail "clinic add $s"
done
user_add crew-n1 "North EMS" crew
user_add crew-s1 "South EMS" crew
oncall_set neurology demo-neuro
hashi_start
C=$(login crew-n1)
S=$(login crew-s1)
N1=$(login demo-neuro)

now=$($PY -c 'import time; print(int(time.time() * 1000))')
assert_eq 201 "$(api POST /api/cases "$C" '{"case_id":"ems-p1",
"question":"Left face droop.","priority":"stat","specialty":"neurology",
"patient":{"age":72,"sex":"M"},"prearrival":{"last_known_well":'"$now"',
"eta_min":15,"destination":"City Hospital"}}')" "the pre-arrival case"

MKJPEG="$HASHI_BUILD/tests/mkjpeg"
"$MKJPEG" "$T_TMP/a.jpg" 1200 900 1 || fail "mkjpeg a"
"$MKJPEG" "$T_TMP/b.jpg" 333 251 2 || fail "mkjpeg b"
"$MKJPEG" "$T_TMP/p.jpg" 64 48 3 --progressive || fail "mkjpeg p"
printf 'GIF89a not a photo at all' >"$T_TMP/gif.jpg"

cd "$HASHI_ROOT"
$PY - "$HURL" "$CACERT" "$C" "$S" "$T_TMP" >"$T_TMP/up.out" \
    2>"$T_TMP/up.err" <<'PYEOF' || fail "uploads: $(tail -3 "$T_TMP/up.err")"
import sys
sys.path.insert(0, "tests/integration")
from uplink import Session, sha256_of, expect, expect_error, upload, main

def run(a):
    url, ca, crew, other, tmp = a
    a_jpg = open(tmp + "/a.jpg", "rb").read()
    b_jpg = open(tmp + "/b.jpg", "rb").read()
    begin = {"type": "upload.begin", "upload_id": "ph-a", "kind": "photo",
             "case_id": "ems-p1", "sha256": sha256_of(a_jpg),
             "size": len(a_jpg)}
    # the first half, acknowledged, then the link goes
    s = Session(url, ca, crew)
    at = s.req(begin)
    expect(at["type"] == "upload.at" and at["offset"] == 0, "begin", at)
    half = len(a_jpg) // 2
    s.send_from("ph-a", a_jpg, 0, half, size=16384)
    got = s.progress("ph-a", half)
    s.sock.close()
    # a new connection resumes where the server says
    s = Session(url, ca, crew)
    at = s.req(begin)
    expect(at["type"] == "upload.at" and at["offset"] == got,
           "resumed at the durable offset", at)
    s.send_from("ph-a", a_jpg, at["offset"])
    done = s.req({"type": "upload.end", "upload_id": "ph-a"})
    expect(done["type"] == "upload.done" and done["status"] == "stored",
           "photo a stored", done)
    print(done["sop_instance_uid"])
    d2 = upload(s, "ph-b", b_jpg, kind="photo", case_id="ems-p1")
    expect(d2["type"] == "upload.done" and d2["status"] == "stored",
           "photo b stored", d2)
    print(d2["sop_instance_uid"])
    again = s.req(dict(begin, upload_id="ph-a2"))
    expect(again["type"] == "upload.done" and again["status"] == "duplicate"
           and again["sop_instance_uid"] == done["sop_instance_uid"],
           "the same photo again: one instance", again)
    # refusals
    m = upload(s, "ph-gif", open(tmp + "/gif.jpg", "rb").read(),
               kind="photo", case_id="ems-p1")
    expect_error(m, "bad_field", "not a JPEG")
    expect("not a JPEG" in m["error"]["message"], "the reason", m)
    m = upload(s, "ph-prog", open(tmp + "/p.jpg", "rb").read(),
               kind="photo", case_id="ems-p1")
    expect_error(m, "bad_field", "progressive JPEG")
    expect("not baseline" in m["error"]["message"], "the reason", m)
    m = s.req({k: v for k, v in dict(begin, upload_id="ph-nocase").items()
               if k != "case_id"})
    expect_error(m, "missing_field", "photo without case_id")
    o = Session(url, ca, other)
    m = o.req(dict(begin, upload_id="ph-other"))
    expect_error(m, "not_found", "another service's case")

main(run)
PYEOF
sop_a=$(sed -n 1p "$T_TMP/up.out")
sop_b=$(sed -n 2p "$T_TMP/up.out")

# The stored objects: the JPEG bytes are the fragment, the header fits.
for x in a:$sop_a b:$sop_b; do
    f=${x%%:*} sop=${x#*:}
    sha=$(sqlite3 "$DATA/hashi.db" \
        "SELECT sha256 FROM instances WHERE sop_uid = '$sop'")
    blob="$DATA/blobs/$(echo "$sha" | cut -c1-2)/$(echo "$sha" | cut -c3-4)/$sha"
    [ -f "$blob" ] || fail "no blob for photo $f"
    assert_eq "ok" "$($PY - "$blob" "$T_TMP/$f.jpg" <<'PYEOF'
import sys
import pydicom
from pydicom.encaps import decode_data_sequence
ds = pydicom.dcmread(sys.argv[1])
jpg = open(sys.argv[2], "rb").read()
frags = decode_data_sequence(ds.PixelData)
want = jpg + (b"\0" if len(jpg) % 2 else b"")
w, h = {"a": (1200, 900), "b": (333, 251)}[sys.argv[2][-5]]
checks = [
    (ds.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.50"),
    (ds.SOPClassUID, "1.2.840.10008.5.1.4.1.1.77.1.4"),
    ((ds.Rows, ds.Columns, ds.SamplesPerPixel), (h, w, 3)),
    (ds.PhotometricInterpretation, "YBR_FULL_422"),
    ((ds.PatientID, ds.PatientAge, ds.PatientSex), ("ems-p1", "072Y", "M")),
    (len(frags), 1), (frags[0] == want, True),
    (bool(ds.AcquisitionDateTime), True),
]
bad = [(g, x) for g, x in checks if g != x]
print("ok" if not bad else bad)
PYEOF
)" "photo $f: encapsulated, byte for byte, header and patient"
    dciodvfy "$blob" >"$T_TMP/dciodvfy.$f" 2>&1
    assert_file_has "$T_TMP/dciodvfy.$f" "^VLPhotographicImage$" \
        "dciodvfy checked photo $f as a VL Photographic Image"
    assert_file_lacks "$T_TMP/dciodvfy.$f" "Error" "dciodvfy on photo $f"
done

# One study for the case's photos, named by the case; the team sees it.
assert_eq 200 "$(api GET /api/cases/ems-p1 "$N1")" "the neurologist's case"
st=$(jget "$T_TMP/body" 'd["case"]["study_uids"][0]')
assert_eq "1 2" "$(jget "$T_TMP/body" '"%d %d" % (len(d["case"]["study_uids"]),
    d["case"]["images"]["received"])')" "one photo study, two images"
se=$(sqlite3 "$DATA/hashi.db" "SELECT se.series_uid FROM series se
    JOIN instances i ON i.series_ref = se.id WHERE i.sop_uid = '$sop_a'")
assert_eq 200 "$(http GET \
    "/dicomweb/studies/$st/series/$se/instances/$sop_b/rendered" "$N1")" \
    "the stroke team renders a photo"
assert_eq image/jpeg "$(header Content-Type)" "rendered as JPEG"
assert_eq 404 "$(http GET \
    "/dicomweb/studies/$st/series/$se/instances/$sop_b/rendered" "$S")" \
    "another service's crew does not see it"
assert_eq 2 "$(sqlite3 "$DATA/hashi.db" "SELECT COUNT(*) FROM instances")" \
    "nothing else stored"
[ -z "$(ls "$DATA/uploads")" ] || fail "part files left: $(ls "$DATA/uploads")"
pass
