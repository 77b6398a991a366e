#!/bin/sh
# viewer_geometry_and_probe: the viewer's two JSON helpers.
#  - .../series/{se}/geometry lists every instance with the PixelSpacing,
#    ImageOrientationPatient, ImagePositionPatient, SliceLocation and
#    first window of its file (compared with pydicom's reading of the
#    generated files);
#  - .../instances/{sop}/probe?x=&y= answers the stored value at that
#    column and row and stored x slope + intercept in HU, for pixels of
#    the phantom (air, bone, brain, the lesion) read independently with
#    pydicom (also of a JPEG-LS copy, decoded); out-of-range or malformed
#    coordinates are 400 with a reason, a frame past the last 404;
#  - both are scoped like every other image route: clinic B's requester
#    gets 404, no token 401.
. "$(dirname "$0")/lib.sh"

two_clinics
ST=$(study ct3 3 --patient-id RENDER3 --seed 33) || exit 1
assert_eq 200 "$(stow "$R" "$ST"/*.dcm)" "STOW-RS of 3 slices"
f="$ST/CT00002.dcm"
st=$(attr_of "$f" StudyInstanceUID)
se=$(attr_of "$f" SeriesInstanceUID)
sop=$(attr_of "$f" SOPInstanceUID)
G="/dicomweb/studies/$st/series/$se/geometry"
P="/dicomweb/studies/$st/series/$se/instances/$sop/probe"

# ---- geometry: what the files say, per instance, in instance order
assert_eq 200 "$(http GET "$G" "$R")" "geometry of the series"
cp "$T_TMP/body" "$T_TMP/geometry.json"
want=$($PY -c 'import json, sys, pydicom
out = []
for p in sorted(sys.argv[1:]):
    d = pydicom.dcmread(p, stop_before_pixels=True)
    f = lambda v: [round(float(x), 4) for x in v]
    out.append([d.SOPInstanceUID, int(d.InstanceNumber), d.Rows, d.Columns,
                f(d.PixelSpacing), f(d.ImageOrientationPatient),
                f(d.ImagePositionPatient), round(float(d.SliceLocation), 4),
                f([d.WindowCenter[0], d.WindowWidth[0]])])
print(json.dumps(out))' "$ST"/*.dcm)
got=$(jget "$T_TMP/geometry.json" 'json.dumps([[i["sop"], i["number"],
    i["rows"], i["columns"]] + [[round(x, 4) for x in i[k]] for k in
    ("pixel_spacing", "orientation", "position")] +
    [round(i["slice_location"], 4), [round(x, 4) for x in i["window"]]]
    for i in d["instances"]])')
assert_eq "$want" "$got" "geometry vs the files"
assert_eq "$st $se 1" "$(jget "$T_TMP/geometry.json" '(d["study"] + " " +
    d["series"] + " " + str(d["instances"][0]["frames"]))')" \
    "geometry names its study and series, one frame each"

# ---- probe: stored value and HU of known pixels, read with pydicom
for xy in "0 0" "255 255" "256 200" "130 300" "40 256" "511 511"; do
    set -- $xy
    x=$1 y=$2
    assert_eq 200 "$(http GET "$P?x=$x&y=$y" "$R")" "probe at $x,$y"
    want=$($PY -c 'import sys, pydicom
d = pydicom.dcmread(sys.argv[1]); x, y = int(sys.argv[2]), int(sys.argv[3])
s = int(d.pixel_array[y, x])
print("%d %d %g %g HU" % (x, y, s, s * float(d.RescaleSlope) +
                          float(d.RescaleIntercept)))' "$f" "$x" "$y")
    got=$(jget "$T_TMP/body" '"%d %d %g %g %s" % (d["x"], d["y"],
        d["stored"], d["value"], d["unit"])')
    assert_eq "$want" "$got" "probe at $x,$y: x y stored HU unit"
done
# the phantom's air outside the field of view is exactly -1000 HU
assert_eq 200 "$(http GET "$P?x=0&y=0" "$R")" "probe in the corner"
assert_eq "-1000" "$(jget "$T_TMP/body" '"%g" % d["value"]')" \
    "air in the corner, HU"

# ---- bad coordinates: 400 with the reason; past the last frame: 404
for q in "x=512&y=0" "x=0&y=512" "x=-1&y=3" "x=abc&y=3" "y=3" "x=3"; do
    assert_eq 400 "$(http GET "$P?$q" "$R")" "probe ?$q"
    assert_eq invalid "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
        "probe ?$q error code"
done
http GET "$P?x=512&y=0" "$R" >/dev/null
case "$(jget "$T_TMP/body" 'd["error"]["message"]')" in
    *"x must be 0..511 and y 0..511"*) ;;
    *) fail "out-of-range reason: $(cat "$T_TMP/body")" ;;
esac
F="/dicomweb/studies/$st/series/$se/instances/$sop/frames"
assert_eq 200 "$(http GET "$F/1/probe?x=1&y=1" "$R")" "probe of frame 1"
assert_eq 404 "$(http GET "$F/2/probe?x=1&y=1" "$R")" "probe of frame 2 of 1"

# ---- a JPEG-LS file: the probe decodes it, same values as the original
ST2=$(study ct1-probe-jpls 1 --random-uids --seed 34) || exit 1
o2=$(ls "$ST2"/*.dcm | head -1)
dcmcjpls "$o2" "$T_TMP/jpls.dcm" >/dev/null 2>&1 || fail "dcmcjpls"
assert_eq 200 "$(stow "$R" "$T_TMP/jpls.dcm")" "STOW-RS of the JPEG-LS file"
P2="/dicomweb/studies/$(attr_of "$o2" StudyInstanceUID)/series/$(attr_of \
    "$o2" SeriesInstanceUID)/instances/$(attr_of "$o2" SOPInstanceUID)/probe"
assert_eq 200 "$(http GET "$P2?x=130&y=300" "$R")" "probe of JPEG-LS"
want=$($PY -c 'import sys, pydicom
d = pydicom.dcmread(sys.argv[1])
print("%g" % (int(d.pixel_array[300, 130]) * float(d.RescaleSlope) +
              float(d.RescaleIntercept)))' "$o2")
assert_eq "$want" "$(jget "$T_TMP/body" '"%g" % d["value"]')" \
    "HU at 130,300 of the JPEG-LS copy vs the original"

# ---- scope: another clinic, no token
assert_eq 404 "$(http GET "$G" "$B")" "clinic B: geometry"
assert_eq 404 "$(http GET "$P?x=1&y=1" "$B")" "clinic B: probe"
assert_eq 401 "$(http GET "$G")" "geometry without a token"
assert_eq 401 "$(http GET "$P?x=1&y=1")" "probe without a token"
healthz_ok "the viewer helpers"
pass
