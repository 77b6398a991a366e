#!/bin/sh
# hashi-gateway --deidentify: a small study carrying known identifying
# strings (PS3.15 Table E.1-1 attributes, a private block, a reference to
# another instance) goes storescu -> gateway -> server.  In the server's
# stored blobs none of those strings nor any original UID is left (raw
# bytes and a pydicom walk); private tags are gone; one new study UID,
# one new series UID, N new SOP UIDs, the reference follows its target;
# PatientIdentityRemoved YES, sex and age kept; decoded pixels identical;
# and `status --uid-map` maps every new UID back to its original.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-deid-4 4 --size 128 --patient-id DEIDPID77 \
    --patient-name "DEIDNAME^SECRET" --study-description DEIDDESC99 \
    --seed 4242) || exit 1
mkdir -p "$T_TMP/src"
# Identifying attributes gen_study does not write, a private block, and a
# reference from slice 2 to slice 1 (its UID must be remapped alike).
$PY - "$ST" "$T_TMP/src" <<'PY' || fail "could not prepare the study"
import glob, os, sys
import pydicom
from pydicom.dataset import Dataset
src, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(src, "*.dcm")))
first = pydicom.dcmread(files[0]).SOPInstanceUID
for i, p in enumerate(files):
    ds = pydicom.dcmread(p)
    ds.OperatorsName = "DEIDOPERATOR"
    ds.PerformingPhysicianName = "DEIDPERFORMER"
    ds.PatientAddress = "DEIDADDRESS 1 Lilongwe"
    ds.InstitutionAddress = "DEIDINSTADDR"
    ds.DeviceSerialNumber = "DEIDSERIAL"
    ds.OtherPatientIDs = "DEIDOTHERID"
    ds.ImageComments = "DEIDCOMMENT"
    ds.private_block(0x0009, "DEIDVENDOR", create=True).add_new(
        0x01, "LO", "DEIDPRIVATE")
    if i == 1:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = first
        ds.ReferencedImageSequence = [ref]
    ds.save_as(os.path.join(out, os.path.basename(p)))
PY

hashi_init
TOK=$(gw_token gw-deid)
hashi_start
gw_start "$HURL" "$TOK" --study-quiet 1 --deidentify
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$T_TMP/src"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
gw_wait_done 4 60

# The stored blobs, by the index.
sqlite3 "$DATA/hashi.db" "SELECT sha256 FROM instances" | while read -r h; do
    echo "$DATA/blobs/$(echo "$h" | cut -c1-2)/$(echo "$h" | cut -c3-4)/$h"
done >"$T_TMP/blobs"
assert_eq 4 "$(wc -l <"$T_TMP/blobs")" "instances stored"

$PY - "$T_TMP/src" "$T_TMP/blobs" >"$T_TMP/check.out" <<'PY' ||
import glob, os, sys
import pydicom
src, blobs = sys.argv[1], open(sys.argv[2]).read().split()
orig = [pydicom.dcmread(p) for p in sorted(glob.glob(src + "/*.dcm"))]
secrets = ["DEIDNAME", "SECRET", "DEIDPID77", "DEIDDESC99", "DEIDOPERATOR",
           "DEIDPERFORMER", "DEIDADDRESS", "DEIDINSTADDR", "DEIDSERIAL",
           "DEIDOTHERID", "DEIDCOMMENT", "DEIDPRIVATE", "DEIDVENDOR",
           "Synthetic Rural Clinic", "REFERRER", "GENSTUDY", "19700101",
           orig[0].AccessionNumber]
uids = set()
for ds in orig:
    uids |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
             ds.FrameOfReferenceUID}
bad = []
studies, series, sops, refs = set(), set(), [], []
for b in blobs:
    raw = open(b, "rb").read()
    bad += ["%s in bytes" % s for s in secrets + sorted(uids)
            if s.encode() in raw]
    ds = pydicom.dcmread(b)
    for el in ds.iterall():
        if el.tag.is_private:
            bad.append("private %s" % el.tag)
        if isinstance(el.value, str) and any(s in el.value for s in secrets):
            bad.append("%s keeps %r" % (el.keyword, el.value))
    if ds.get("PatientIdentityRemoved") != "YES":
        bad.append("PatientIdentityRemoved %r" % ds.get("PatientIdentityRemoved"))
    if ds.get("PatientSex") != "O" or not ds.get("PatientAge"):
        bad.append("sex/age %r %r" % (ds.get("PatientSex"), ds.get("PatientAge")))
    studies.add(ds.StudyInstanceUID)
    series.add(ds.SeriesInstanceUID)
    sops.append(ds.SOPInstanceUID)
    if ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID:
        bad.append("meta SOP UID differs")
    if "ReferencedImageSequence" in ds:
        refs.append(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
if len(studies) != 1 or len(series) != 1 or len(set(sops)) != 4:
    bad.append("UIDs not consistent: %d studies, %d series, %d SOPs"
               % (len(studies), len(series), len(set(sops))))
if (studies | series | set(sops)) & uids:
    bad.append("an original UID kept")
if len(refs) != 1 or refs[0] not in sops:
    bad.append("reference does not resolve: %r" % refs)
for line in bad:
    print("BAD", line)
print(" ".join(sorted(studies) + sorted(series)))
print(refs[0] if refs else "")
PY
    fail "check failed: $(cat "$T_TMP/check.out")"
assert_file_lacks "$T_TMP/check.out" "BAD" "identifying values left"
log "$(head -1 "$T_TMP/check.out")"

# Every new UID maps back to its original through the spool alone.
O=$($PY "$DW" uids "$T_TMP/src/CT00001.dcm" | cut -d' ' -f2-) ||
    fail "uids of the source"
mapped() {
    "$GW" status --spool "$T_TMP/spool" --uid-map "$1" ||
        fail "no mapping for $1"
}
set -- $(head -1 "$T_TMP/check.out")
assert_eq "original $(echo "$O" | cut -d' ' -f1)" "$(mapped "$1")" \
    "study UID maps back"
assert_eq "original $(echo "$O" | cut -d' ' -f2)" "$(mapped "$2")" \
    "series UID maps back"
REF=$(sed -n 2p "$T_TMP/check.out")
assert_eq "original $(echo "$O" | cut -d' ' -f3)" "$(mapped "$REF")" \
    "the referenced slice's SOP UID maps back to slice 1"
assert_eq "deidentified $1" \
    "$(mapped "$(echo "$O" | cut -d' ' -f1)")" "and the other way"

# Pixels: the server's (by new SOP UID, mapped back) equal the source's.
$PY "$DW" pixels "$T_TMP/src"/*.dcm >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" | while read -r sop px; do
    echo "$(mapped "$sop" | cut -d' ' -f2) $px"
done | sort >"$T_TMP/got.px"
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "decoded pixels per original SOP UID"
# No original kept in the spool either.
assert_eq 0 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files left"
pass
