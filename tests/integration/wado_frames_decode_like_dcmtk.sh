#!/bin/sh
# wado_frames_decode_like_dcmtk: WADO-RS frames of an uncompressed, a
# JPEG-LS and an RLE instance.  Asked for by default (or for Explicit VR
# Little Endian), each frame holds the same pixels as DCMTK's own decoding
# (dcmdjpls / dcmdrle of the stored file); with transfer-syntax=* the
# stored bytes come, labelled with the stored syntax.  Bad input gets a
# clear JSON error and changes nothing: a frame number out of range (404),
# a malformed frame list or includefield (400), an Accept that cannot be
# served (406).
. "$(dirname "$0")/lib.sh"
VW="$LIBDIR/viewer.py"
EXPLICIT=1.2.840.10008.1.2.1
STORED='Accept: multipart/related; type="application/octet-stream"; transfer-syntax=*'

hashi_setup
tok=$(login demo-admin)
RAW=$(study vw-frames-raw 1 --size 128 --random-uids)
JLS=$(study vw-frames-jls 1 --size 128 --random-uids)
RLE=$(study vw-frames-rle 1 --size 128 --random-uids)
raw=$(ls "$RAW"/*.dcm)
dcmcjpls "$(ls "$JLS"/*.dcm)" "$T_TMP/jls.dcm" || fail "dcmcjpls"
dcmcrle "$(ls "$RLE"/*.dcm)" "$T_TMP/rle.dcm" || fail "dcmcrle"
assert_eq 200 "$(stow "$tok" "$raw" "$T_TMP/jls.dcm" "$T_TMP/rle.dcm")" \
    "STOW of the three instances"
qido "$tok" "/dicomweb/studies?limit=1000"
before=$(cat "$T_TMP/body")

# frames PATH-OF-FILE [curl args]: GET frame 1 of FILE's instance; the
# parts land in $T_TMP/parts.
frames() {
    _f=$1; shift
    _p="/dicomweb/studies/$(attr_of "$_f" StudyInstanceUID)/series/$(attr_of \
"$_f" SeriesInstanceUID)/instances/$(attr_of "$_f" SOPInstanceUID)/frames/1"
    _c=$(http GET "$_p" "$tok" "$@")
    [ "$_c" = 200 ] || { echo "$_c"; return; }
    rm -rf "$T_TMP/parts"
    $PY "$VW" parts "$(header Content-Type)" "$T_TMP/body" "$T_TMP/parts"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

for kind in raw jls rle; do
    case $kind in
        raw) f=$raw; cp "$raw" "$T_TMP/ref.dcm";
             ts=$EXPLICIT ;;
        jls) f=$T_TMP/jls.dcm; dcmdjpls "$f" "$T_TMP/ref.dcm";
             ts=1.2.840.10008.1.2.4.80 ;;
        rle) f=$T_TMP/rle.dcm; dcmdrle "$f" "$T_TMP/ref.dcm";
             ts=1.2.840.10008.1.2.5 ;;
    esac
    want=$($PY "$VW" pixels "$T_TMP/ref.dcm")
    # Default and explicit: decoded.
    assert_eq 1 "$(frames "$f")" "$kind: one part by default"
    assert_eq "$want" "$(sha "$T_TMP/parts/1")" "$kind: decoded pixels"
    assert_eq "application/octet-stream; transfer-syntax=$EXPLICIT" \
        "$(cat "$T_TMP/parts/1.type")" "$kind: part type"
    assert_eq 1 "$(frames "$f" -H "Accept: multipart/related; \
type=\"application/octet-stream\"; transfer-syntax=$EXPLICIT")" \
        "$kind: one part for Explicit VR LE"
    assert_eq "$want" "$(sha "$T_TMP/parts/1")" "$kind: decoded, asked"
    # As stored.
    assert_eq 1 "$(frames "$f" -H "$STORED")" "$kind: stored"
    assert_eq "application/octet-stream; transfer-syntax=$ts" \
        "$(cat "$T_TMP/parts/1.type")" "$kind: stored part type"
    if [ $kind = raw ]; then
        assert_eq "$want" "$(sha "$T_TMP/parts/1")" "raw: stored pixels"
    else
        assert_eq "$($PY "$VW" stored-frame "$f" 1)" \
            "$(sha "$T_TMP/parts/1")" "$kind: stored frame bytes"
    fi
done

# Bad input, each a JSON error.
f=$T_TMP/jls.dcm
inst="/dicomweb/studies/$(attr_of "$f" StudyInstanceUID)/series/$(attr_of \
"$f" SeriesInstanceUID)/instances/$(attr_of "$f" SOPInstanceUID)"
bad() {    # STATUS CODE PATH [curl args]
    _s=$1; _code=$2; _p=$3; shift 3
    assert_eq "$_s" "$(http GET "$_p" "$tok" "$@")" "$_p $*"
    assert_eq "$_code" "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
        "error code of $_p $*"
}
bad 404 not_found "$inst/frames/2"
bad 404 not_found "$inst/frames/1,2"
bad 400 invalid "$inst/frames/0"
bad 400 invalid "$inst/frames/1,x"
bad 406 not_acceptable "$inst/frames/1" -H 'Accept: image/png'
bad 406 not_acceptable "$inst/frames/1" -H "Accept: multipart/related; \
type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.50"
bad 400 invalid "/dicomweb/studies?includefield=Patient-Name"
bad 400 invalid "/dicomweb/studies?includefield=00100010,"
bad 400 invalid "/dicomweb/studies?fuzzymatching=maybe"
bad 406 not_acceptable "$inst/metadata" -H 'Accept: application/xml'
# ... and valid ones are accepted.
assert_eq 3 "$(qido_count "$tok" "/dicomweb/studies?includefield=all&\
includefield=00081030,PatientAge&fuzzymatching=false")" "includefield"
assert_eq 200 "$(http GET "$inst/frames/1" "$tok" \
    -H 'Accept: application/octet-stream')" "one bare frame"
# Nothing changed.
qido "$tok" "/dicomweb/studies?limit=1000"
assert_eq "$before" "$(cat "$T_TMP/body")" "QIDO after the bad requests"
pass
