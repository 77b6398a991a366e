#!/bin/sh
# Bad input gets a clear failure, is not stored, and the server keeps
# serving.  Each case below is sent by STOW-RS on its own; after each one
# the total instance count must be what it was and /healthz must answer.
# Then the odd files Debian's pydicom ships, each with what Hashi does
# with it and why.
. "$(dirname "$0")/lib.sh"

ST=$(study ct3-bad 3 --patient-id BADBASE --seed 3) || exit 1
PYD=/usr/lib/python3/dist-packages/pydicom/data/test_files
hashi_setup
tok=$(login demo-admin) || exit 1
good=$ST/CT00002.dcm

# Seed one good instance so "unchanged" is not trivially 0.
assert_eq 200 "$(stow "$tok" "$ST/CT00001.dcm")" "seed instance"
count=$(total_instances "$tok")
assert_eq 1 "$count" "instances after the seed"

# rejected NAME REASON-REGEX FILE: a single-part STOW-RS of FILE must fail
# as a whole (PS3.18: 409 when a well-formed request stored nothing; 400
# when the request itself is malformed), name the reason, store nothing.
rejected() {
    _name=$1; _why=$2; _file=$3
    code=$(stow "$tok" "$_file")
    cp "$T_TMP/body" "$T_TMP/reply-$_name"
    assert_in "400 409" "$code" "STOW-RS status for $_name"
    assert_file_has "$T_TMP/body" '"00081197"' "FailureReason for $_name"
    assert_file_has "$T_TMP/body" "$_why" "failure reason for $_name"
    assert_eq "$count" "$(total_instances "$tok")" \
        "instances after $_name (nothing stored)"
    healthz_ok "$_name"
    log "$_name: $code, $(head -c 160 "$T_TMP/reply-$_name" | tr '\n' ' ')"
}

# ---- made-up breakage
$PY "$DW" mkbad truncated "$good" "$T_TMP/truncated.dcm"
rejected truncated 'exceeds the [0-9]+ bytes left|truncat|premature' "$T_TMP/truncated.dcm"

$PY "$DW" mkbad notdicom - "$T_TMP/notdicom.txt"
rejected non-dicom 'not acceptable DICOM|not DICOM' "$T_TMP/notdicom.txt"

: >"$T_TMP/empty.dcm"
rejected empty-part 'empty' "$T_TMP/empty.dcm"

$PY "$DW" mkbad huge-length "$good" "$T_TMP/huge.dcm"
rejected huge-length 'declared length 4294967280|too (large|big)' "$T_TMP/huge.dcm"

$PY "$DW" rewrite "$good" "$T_TMP/nosop.dcm" SOPInstanceUID=-
rejected missing-sop-uid 'missing SOP Instance UID' "$T_TMP/nosop.dcm"

$PY "$DW" rewrite "$good" "$T_TMP/dotdot.dcm" \
    SOPInstanceUID=1.2.826.0.1.3680043.10.1432.9/../../../etc/passwd
rejected uid-dotdot 'malformed SOP Instance UID' "$T_TMP/dotdot.dcm"
[ -e "$DATA/etc" ] && fail "something named etc appeared in the data dir"

$PY "$DW" rewrite "$good" "$T_TMP/letters.dcm" \
    StudyInstanceUID=1.2.826.0.1.3680043.10.1432.abc.4
rejected uid-letters 'malformed Study Instance UID' "$T_TMP/letters.dcm"

# 50,000 nested sequences: DCMTK 3.6.7 recurses once a level and dies of
# a stack overflow (dcmdump segfaults on this file); Hashi must refuse it
# before DCMTK parses it.
$PY "$DW" mkbad nested - "$T_TMP/nested.dcm"
rejected nested-50000 'nested deeper|nesting|too deep' "$T_TMP/nested.dcm"

# Every refusal is counted and in the audit log.
assert_ge 8 "$(metric hashi_instances_rejected_total)" \
    "hashi_instances_rejected_total after 8 bad instances"
assert_eq 1 "$(metric hashi_instances_received_total)" \
    "hashi_instances_received_total after the bad instances"
audit_has reject 'nested deeper|1\.2\.826\.0\.1\.3680043\.10\.1432\.77' \
    "audit of the nested-sequence refusal"

# ---- malformed requests
code=$(http POST /dicomweb/studies "$tok" --data-binary '' -H \
    'Content-Type: multipart/related; type="application/dicom"; boundary=XyZ')
assert_eq 400 "$code" "STOW-RS with an empty body"
assert_file_has "$T_TMP/body" '"error"' "error object for the empty body"
healthz_ok "empty body"

$PY "$DW" multipart "$T_TMP/wrongb.body" TheRealBoundary "$good"
code=$(stow_body "$tok" "$T_TMP/wrongb.body" NotTheBoundary)
assert_eq 400 "$code" "STOW-RS whose body uses another boundary"
assert_file_has "$T_TMP/body" 'boundary|multipart' "reason for the boundary"
assert_eq "$count" "$(total_instances "$tok")" "instances after wrong boundary"
healthz_ok "wrong boundary"

code=$(http POST /dicomweb/studies "$tok" --data-binary @"$good" \
    -H 'Content-Type: application/json')
assert_eq 415 "$code" "STOW-RS with Content-Type application/json"
assert_eq "$count" "$(total_instances "$tok")" "instances after wrong type"
healthz_ok "wrong content type"

# ---- a <script> PatientName is data, not markup.
# It may be stored (it is a valid PN).  It must come back from QIDO as the
# exact same string inside application/dicom+json with
# X-Content-Type-Options: nosniff: a browser then never sniffs the reply as
# HTML, and JSON.parse yields a string that the web client puts into the
# page with textContent, never innerHTML.  So it is never executed; the
# exact round trip shows that nothing mangled or half-escaped it either.
# ("=" would start PN's ideographic group, so the markup avoids it.)
xss='<script>alert("hashi")</script>^<img/src/onerror>&amp;'
$PY "$DW" rewrite "$ST/CT00003.dcm" "$T_TMP/xss.dcm" PatientName="$xss" \
    PatientID=XSS1 StudyInstanceUID=1.2.826.0.1.3680043.10.1432.66.1 \
    SeriesInstanceUID=1.2.826.0.1.3680043.10.1432.66.2 \
    SOPInstanceUID=1.2.826.0.1.3680043.10.1432.66.3
code=$(stow "$tok" "$T_TMP/xss.dcm")
assert_eq 200 "$code" "STOW-RS of a <script> PatientName"
count=$((count + 1))
qido "$tok" "/dicomweb/studies?PatientID=XSS1"
assert_eq application/dicom+json "$(header Content-Type | cut -d';' -f1)" \
    "QIDO Content-Type"
assert_eq nosniff "$(header X-Content-Type-Options)" \
    "X-Content-Type-Options on QIDO"
assert_eq "$xss" "$($PY "$DW" values "$T_TMP/body" 00100010)" \
    "PatientName round trip"
code=$(http POST /dicomweb/studies "$tok" --data-binary @"$good" \
    -H 'Content-Type: text/html')
assert_ne 200 "$code" "a text/html STOW"
assert_file_lacks "$T_TMP/body" "<script>" "error replies echoing markup"

# ---- pydicom's odd files.  One request each; what Hashi does and why:
# odd FILE EXPECTED-STATUS [ADDED]: ADDED (default 1 for a 200, else 0) is
# how many instances the total must grow by.
odd() {
    code=$(stow "$tok" "$PYD/$1")
    REPLY="$T_TMP/reply-$1"
    cp "$T_TMP/body" "$REPLY"
    log "$1: $code $(head -c 200 "$T_TMP/body" | tr '\n' ' ')"
    assert_eq "$2" "$code" "STOW-RS status for $1"
    _added=${3:-}
    [ -n "$_added" ] || case "$2" in 200) _added=1 ;; *) _added=0 ;; esac
    count=$((count + _added))
    assert_eq "$count" "$(total_instances "$tok")" "instances after $1"
    healthz_ok "$1"
}

render_ok() {    # FILE: the stored copy of FILE renders to a real JPEG
    _st=$(attr_of "$PYD/$1" StudyInstanceUID)
    _se=$(attr_of "$PYD/$1" SeriesInstanceUID)
    _sop=$(attr_of "$PYD/$1" SOPInstanceUID)
    code=$(http GET "/dicomweb/studies/$_st/series/$_se/instances/$_sop/rendered" \
        "$tok" -H 'Accept: image/jpeg')
    assert_eq 200 "$code" "rendered $1"
    set -- $($PY "$DW" jpeg-stats "$T_TMP/body") || fail "rendered JPEG"
    assert_ge 10 "$4" "grey levels in the rendering of $_sop"
}

served_is() {    # FILE: WADO-RS gives back exactly FILE
    _st=$(attr_of "$PYD/$1" StudyInstanceUID)
    _se=$(attr_of "$PYD/$1" SeriesInstanceUID)
    _sop=$(attr_of "$PYD/$1" SOPInstanceUID)
    wado "$tok" "$_st" "$_se" "$_sop" "$T_TMP/got.dcm"
    assert_same_file "$PYD/$1" "$T_TMP/got.dcm" "WADO-RS of $1"
}

# MR_truncated.dcm: the pixel data stops short of its declared length
# (8192 declared, 8130 there).  Hashi's pre-scan of the element lengths
# catches it before DCMTK parses anything, and the file is refused (409,
# "declared length ... exceeds the ... bytes left"): a partial image must
# not be kept as if whole.
odd MR_truncated.dcm 409
assert_file_has "$REPLY" '"00081197"' "FailureReason for MR_truncated"
assert_file_has "$REPLY" 'exceeds the [0-9]+ bytes left' "reason for MR_truncated"

# meta_missing_tsyntax.dcm: a meta header without a transfer syntax and a
# dataset without Study/Series/SOP UIDs.  Nothing to index it by: refused
# (409, "missing Study Instance UID").
odd meta_missing_tsyntax.dcm 409
assert_file_has "$REPLY" 'missing Study Instance UID' \
    "reason for meta_missing_tsyntax"

# badVR.dcm: an RT Dose whose NumberOfFrames (IS) holds "1A", not an
# integer string.  The encoding itself is sound (every length fits) and
# the required UIDs are valid, so Hashi stores it byte for byte: one bad
# value is no reason to lose an instance, and it is not Hashi's to fix.
odd badVR.dcm 200
served_is badVR.dcm

# ExplVR_BigEndNoMeta.dcm: no preamble and no meta header, Explicit VR
# Big Endian (retired).  DCMTK recognises the encoding from the first
# element, the dataset has valid Study/Series/SOP UIDs and every declared
# length fits, so Hashi accepts it and keeps the bytes exactly as sent
# (no meta header is made up for it).
odd ExplVR_BigEndNoMeta.dcm 200
served_is ExplVR_BigEndNoMeta.dcm

# image_dfl.dcm: Deflated Explicit VR Little Endian (…1.2.1.99).  DCMTK
# inflates it (zlib), the UIDs are valid: stored as sent.
odd image_dfl.dcm 200
served_is image_dfl.dcm

# JPEG2000.dcm: JPEG 2000 pixel data.  Parsing needs no codec, so it is
# stored as sent; Debian's DCMTK has no JPEG 2000 decoder, so rendering
# it fails cleanly: 422 with "no decoder for JPEG 2000", not a 500 and not
# a crash.
odd JPEG2000.dcm 200
served_is JPEG2000.dcm
j2=$PYD/JPEG2000.dcm
code=$(http GET "/dicomweb/studies/$(attr_of "$j2" StudyInstanceUID)/series/$(attr_of "$j2" SeriesInstanceUID)/instances/$(attr_of "$j2" SOPInstanceUID)/rendered" \
    "$tok" -H 'Accept: image/jpeg')
assert_eq 422 "$code" "rendering JPEG 2000 (unprocessable, not a 500)"
log "rendering JPEG 2000: $code $(head -c 200 "$T_TMP/body")"
healthz_ok "rendering JPEG 2000"

# The MR_small* family: eight encodings (explicit/implicit/big endian,
# RLE, JPEG-LS, JPEG 2000, padded) of one image under ONE SOP Instance
# UID.  The first to arrive is stored; every later one is other bytes
# under that UID, so it is a conflict (409), kept aside, never an
# overwrite: WADO-RS keeps serving the first.  JPEG-LS goes first to show
# that it is stored and renders (DCMTK's JPEG-LS decoder).
odd MR_small_jpeg_ls_lossless.dcm 200
served_is MR_small_jpeg_ls_lossless.dcm
render_ok MR_small_jpeg_ls_lossless.dcm
for f in MR_small.dcm MR_small_RLE.dcm MR_small_bigendian.dcm \
         MR_small_expb.dcm MR_small_implicit.dcm MR_small_jp2klossless.dcm \
         MR_small_padded.dcm; do
    odd "$f" 409
    assert_file_has "$REPLY" 'conflict|differ|exists' "reason for $f"
done
# Sent again, the first one is the same bytes: idempotent success.
odd MR_small_jpeg_ls_lossless.dcm 200 0
served_is MR_small_jpeg_ls_lossless.dcm

# MR_small_RLE.dcm under a UID of its own: RLE Lossless is stored and
# renders (DCMTK's RLE decoder).
$PY "$DW" rewrite "$PYD/MR_small_RLE.dcm" "$T_TMP/rle.dcm" \
    SOPInstanceUID=1.2.826.0.1.3680043.10.1432.5.5
cp "$T_TMP/rle.dcm" "$T_TMP/MR_small_RLE_own_uid.dcm"
PYD=$T_TMP
odd MR_small_RLE_own_uid.dcm 200
render_ok MR_small_RLE_own_uid.dcm

pass
