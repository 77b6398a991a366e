#!/bin/sh
# tests/tools/gen_study.py makes what the other tests assume: CT Image
# Storage slices in Explicit VR LE (DCMTK's dcmftest agrees), 16-bit
# signed, rescale -1024/1, BRAIN window 40/80 first; one Study, Series and
# Frame of Reference UID, a SOP Instance UID per slice, all 2.25.<integer>;
# without noise a slice through the lesion holds air -1000, bone 800..1000,
# brain 30..40, CSF 5..10 and the lesion 60..80; noise only inside the
# circular field of view; the same arguments give the same bytes,
# --random-uids other UIDs over the same pixels; bad arguments exit 2.
. "$(dirname "$0")/lib.sh"

GEN="$HASHI_TOOLS/gen_study.py"
ARGS="--slices 24 --size 128 --seed 5 --patient-id GEN-T"
# shellcheck disable=SC2086   # ARGS is a list of words
gen() { out=$1; shift; $PY "$GEN" $ARGS "$@" "$T_TMP/$out" >/dev/null ||
    fail "gen_study.py $* failed"; }

gen a
gen b
gen clean --noise 0
gen fresh --random-uids

log "same arguments, same bytes"
diff -r "$T_TMP/a" "$T_TMP/b" >/dev/null ||
    fail "two runs with the same arguments differ"
assert_eq 24 "$(ls "$T_TMP/a" | grep -c '^CT000[0-2][0-9]\.dcm$')" \
    "files CT00001.dcm .. CT00024.dcm"
dcmftest "$T_TMP"/a/*.dcm >"$T_TMP/ftest" 2>&1 ||
    fail "dcmftest: $(grep -v '^yes' "$T_TMP/ftest" | head -3)"

log "attributes, UIDs and Hounsfield units"
$PY - "$T_TMP" >"$T_TMP/check" 2>&1 <<'EOF' || fail "$(cat "$T_TMP/check")"
import glob, os, re, sys
import numpy as np
import pydicom

top = sys.argv[1]
problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def study(name):
    return [pydicom.dcmread(f) for f in
            sorted(glob.glob(os.path.join(top, name, "*.dcm")))]


def hu(ds):
    return ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + \
        int(ds.RescaleIntercept)


a, clean, fresh = study("a"), study("clean"), study("fresh")
uid = re.compile(r"^2\.25\.[1-9][0-9]*$")
for ds in a:
    check(ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1",
          "Explicit VR Little Endian")
    check(ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2", "CT Image Storage")
    check(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID,
          "meta SOP Instance UID")
    check((ds.Modality, ds.Rows, ds.Columns, ds.BitsAllocated,
           ds.PixelRepresentation) == ("CT", 128, 128, 16, 1), "image form")
    check((float(ds.RescaleIntercept), float(ds.RescaleSlope)) ==
          (-1024.0, 1.0), "rescale")
    check((float(ds.WindowCenter[0]), float(ds.WindowWidth[0])) ==
          (40.0, 80.0), "first window 40/80")
    for u in (ds.StudyInstanceUID, ds.SeriesInstanceUID,
              ds.FrameOfReferenceUID, ds.SOPInstanceUID):
        check(uid.match(u) and len(u) <= 64, f"UID form: {u}")
for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
    check(len({ds.get(key) for ds in a}) == 1, f"one {key}")
check(len({ds.SOPInstanceUID for ds in a}) == 24, "24 SOP Instance UIDs")
check([int(ds.InstanceNumber) for ds in a] == list(range(1, 25)),
      "Instance Numbers 1..24")
check(not {ds.SOPInstanceUID for ds in a} & {ds.SOPInstanceUID
                                              for ds in fresh},
      "--random-uids gives other SOP Instance UIDs")
check(a[0].StudyInstanceUID != fresh[0].StudyInstanceUID,
      "--random-uids gives another Study Instance UID")
check(all(x.PixelData == y.PixelData for x, y in zip(a, fresh)),
      "--random-uids keeps the pixels")


def has(values, lo, hi):
    return any(lo <= v <= hi for v in values)


lesion = [ds for ds in clean if has(np.unique(hu(ds)), 60, 80)]
check(lesion, "a slice with a 60..80 HU lesion")
if lesion:
    v = set(np.unique(hu(lesion[0])).tolist())
    for lo, hi, what in ((-1000, -1000, "air"), (800, 1000, "bone"),
                         (30, 40, "brain"), (5, 10, "CSF")):
        check(has(v, lo, hi), f"{what} ({lo}..{hi} HU) beside the lesion")
    check(all(v_ == -1000 or 5 <= v_ <= 1000 for v_ in v),
          f"only plausible HU without noise: {sorted(v)}")

n = a[0].Rows
c = np.arange(n) - (n - 1) / 2
outside = (c[None, :] ** 2 + c[:, None] ** 2) > (n / 2) ** 2
for x, y in zip(a, clean):
    d = hu(x) - hu(y)
    check(not d[outside].any() and (hu(x)[outside] == -1000).all(),
          "outside the field of view: exactly -1000, no noise")
    check(5 <= d[~outside].std() <= 15, "noise of ~10 HU inside the FOV")
print("\n".join(problems) or "ok")
sys.exit(1 if problems else 0)
EOF

log "bad arguments"
$PY "$GEN" --slices 0 "$T_TMP/bad" >/dev/null 2>"$T_TMP/err"
assert_eq 2 "$?" "exit status for --slices 0"
assert_file_has "$T_TMP/err" "--slices must be" "message for --slices 0"
[ -e "$T_TMP/bad" ] && fail "--slices 0 created $T_TMP/bad"
pass
