#!/bin/sh
# wado_metadata_matches_dcm2json: WADO-RS metadata is what DCMTK's
# dcm2json says of the stored files, attribute for attribute, with bulk
# data (PixelData, binary values over 256 bytes, also inside a sequence)
# as BulkDataURIs that return exactly the value's bytes — at study, series
# and instance level.  Out of scope (another clinic) every new route is
# 404, like a study that does not exist.
. "$(dirname "$0")/lib.sh"
VW="$LIBDIR/viewer.py"

two_clinics
ST=$(study vw-meta 3 --size 128 --random-uids --patient-id VW-META)
mkdir -p "$T_TMP/files"
cp "$ST"/*.dcm "$T_TMP/files/"
first=$(ls "$T_TMP/files"/*.dcm | head -1)
# One instance with a private OB value and an icon image (nested bulk data).
$PY "$VW" add-bulk "$first" "$T_TMP/bulk.dcm" || fail "add-bulk"
mv "$T_TMP/bulk.dcm" "$first"
assert_eq 200 "$(stow "$R" "$T_TMP/files"/*.dcm)" "STOW of the study"

st=$(attr_of "$first" StudyInstanceUID)
se=$(attr_of "$first" SeriesInstanceUID)
sop=$(attr_of "$first" SOPInstanceUID)
base="$HURL/dicomweb/studies/$st"

check() {    # PATH FILES...: the metadata of PATH against dcm2json of FILES
    _p=$1; shift
    assert_eq 200 "$(http GET "$_p" "$R" -H 'Accept: application/dicom+json')" \
        "GET $_p"
    assert_eq application/dicom+json "$(header Content-Type)" \
        "Content-Type of $_p"
    $PY "$VW" meta-vs-dcm2json "$T_TMP/body" "$base" "$CACERT" "$R" "$@" ||
        fail "$_p differs from dcm2json"
}

got=$(check "/dicomweb/studies/$st/metadata" "$T_TMP/files"/*.dcm)
# 3 objects; PixelData of each, the private OB and the icon's PixelData.
assert_eq "3 5 1" "$got" "study metadata: objects, bulk values, nested"
got=$(check "/dicomweb/studies/$st/series/$se/metadata" "$T_TMP/files"/*.dcm)
assert_eq "3 5 1" "$got" "series metadata"
got=$(check "/dicomweb/studies/$st/series/$se/instances/$sop/metadata" \
    "$first")
assert_eq "1 3 1" "$got" "instance metadata"

# The bulk data as multipart (the default), one part with the bytes.
inst="/dicomweb/studies/$st/series/$se/instances/$sop"
assert_eq 200 "$(http GET "$inst/bulkdata/00880200.1.7FE00010" "$R")" \
    "nested bulk data, multipart"
assert_eq 1 "$($PY "$VW" parts "$(header Content-Type)" "$T_TMP/body" \
    "$T_TMP/bulk")" "one part"
$PY -c 'import sys; sys.exit(open(sys.argv[1], "rb").read() !=
bytes((i * 7) & 255 for i in range(1024)))' "$T_TMP/bulk/1" ||
    fail "icon pixel bytes differ"
assert_eq 404 "$(http GET "$inst/bulkdata/00100010" "$R")" \
    "PatientName is not bulk data"
assert_eq 404 "$(http GET "$inst/bulkdata/00091002" "$R")" \
    "an attribute that is not there"
assert_eq 404 "$(http GET "$inst/bulkdata/junk" "$R")" "a malformed path"

# Clinic B: the same 404 as for a study that does not exist.
for p in "/dicomweb/studies/$st/metadata" \
         "/dicomweb/studies/$st/series/$se/metadata" \
         "$inst/metadata" "$inst/frames/1" "$inst/bulkdata/7FE00010" \
         "$inst/thumbnail" "/dicomweb/studies/$st/thumbnail" \
         "/dicomweb/studies/$st/series/$se/thumbnail"; do
    assert_eq 404 "$(http GET "$p" "$B")" "clinic B: $p"
    assert_eq not_found "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
        "clinic B: error code of $p"
done
assert_eq 200 "$(http GET "$inst/thumbnail" "$R")" "thumbnail"
assert_eq image/jpeg "$(header Content-Type)" "thumbnail type"
pass
