#!/bin/sh
# A 50-slice CT sent by DCMTK's storescu lands whole: QIDO-RS shows one
# study, one series, 50 instances with the file's attributes; every
# instance WADO-RS returns carries exactly the dataset that was sent; the
# rendered JPEG is a valid JPEG of the requested size and shows an image,
# not a flat field; echoscu works; an unknown calling AE is refused and
# stores nothing.  (The demo maps both STORESCU and DEMO_CT to the rural
# clinic: the store uses one, the echo the other.)
. "$(dirname "$0")/lib.sh"

ST=$(study ct50 50 --patient-id DIMSE50 --seed 50) || exit 1
hashi_setup
tok=$(login demo-admin) || exit 1

log "storescu 50 slices"
storescu -aet STORESCU -aec HASHI 127.0.0.1 "$DPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
if grep -Eq '^(E|W|F):' "$T_TMP/storescu.log"; then
    fail "storescu reported problems: $(grep -E '^(E|W|F):' \
"$T_TMP/storescu.log" | head -5)"
fi

first=$(ls "$ST"/*.dcm | head -1)
study_uid=$(attr_of "$first" StudyInstanceUID)
series_uid=$(attr_of "$first" SeriesInstanceUID)

# ---- QIDO-RS: exactly one study, one series, 50 instances
assert_eq 1 "$(qido_count "$tok" "/dicomweb/studies?PatientID=DIMSE50")" \
    "studies for PatientID DIMSE50"
cp "$T_TMP/body" "$T_TMP/studies.json"
v() { $PY "$DW" values "$T_TMP/studies.json" "$1"; }
assert_eq "$study_uid" "$(v 0020000D)" "StudyInstanceUID in QIDO"
assert_eq DIMSE50 "$(v 00100020)" "PatientID in QIDO"
assert_eq 20240101 "$(v 00080020)" "StudyDate in QIDO"
assert_eq CT "$(v 00080061)" "ModalitiesInStudy in QIDO"
assert_eq 50 "$(v 00201208)" "NumberOfStudyRelatedInstances"

# Filters must filter: a wrong date, a date range, another modality.
assert_eq 0 "$(qido_count "$tok" \
    "/dicomweb/studies?PatientID=DIMSE50&StudyDate=20230101")" \
    "studies on another date"
assert_eq 1 "$(qido_count "$tok" \
    "/dicomweb/studies?PatientID=DIMSE50&StudyDate=20231201-20240201")" \
    "studies in a date range"
assert_eq 0 "$(qido_count "$tok" \
    "/dicomweb/studies?PatientID=DIMSE50&ModalitiesInStudy=MR")" \
    "MR studies"

assert_eq 1 "$(qido_count "$tok" "/dicomweb/studies/$study_uid/series")" \
    "series in the study"
assert_eq "$series_uid" "$($PY "$DW" values "$T_TMP/body" 0020000E)" \
    "SeriesInstanceUID in QIDO"
assert_eq CT "$($PY "$DW" values "$T_TMP/body" 00080060)" "Modality"

ipath="/dicomweb/studies/$study_uid/series/$series_uid/instances"
assert_eq 50 "$(qido_count "$tok" "$ipath?limit=1000")" \
    "instances in the series"
cp "$T_TMP/body" "$T_TMP/instances.json"
assert_eq 512 "$($PY "$DW" values "$T_TMP/instances.json" 00280010 |
    sort -u)" "Rows of every instance"
assert_eq 512 "$($PY "$DW" values "$T_TMP/instances.json" 00280011 |
    sort -u)" "Columns of every instance"
assert_eq 5 "$(qido_count "$tok" "$ipath?limit=10&offset=45")" \
    "instances with limit=10&offset=45"

# ---- WADO-RS: every instance, dataset byte for byte.
# storescu re-encodes the file meta header (group 0002: DCMTK writes its
# own implementation UID and the negotiated transfer syntax), so what
# crosses the wire -- and what Hashi must keep -- is the dataset after
# group 0002.  That is compared exactly, for all 50 instances.
$PY "$DW" values "$T_TMP/instances.json" 00080018 | sort >"$T_TMP/sops"
$PY "$DW" uids "$ST"/*.dcm | awk '{ print $4 }' | sort >"$T_TMP/sent"
cmp -s "$T_TMP/sops" "$T_TMP/sent" ||
    fail "QIDO's SOP UIDs are not the 50 sent: $(diff "$T_TMP/sent" \
"$T_TMP/sops" | head -5)"
n=$($PY "$DW" verify-wado "$HURL" "$CACERT" "$tok" dataset "$ST"/*.dcm) ||
    fail "WADO-RS bytes differ from what storescu sent"
assert_eq 50 "$n" "instances whose dataset came back byte for byte"

# ---- rendered: valid JPEG, requested size, real picture
sop=$(attr_of "$ST/CT00025.dcm" SOPInstanceUID)
rpath="$ipath/$sop/rendered"
render() {    # QUERY OUT
    code=$(http GET "$rpath?$1" "$tok" -H 'Accept: image/jpeg')
    assert_eq 200 "$code" "rendered?$1"
    assert_eq image/jpeg "$(header Content-Type | cut -d';' -f1)" \
        "Content-Type of rendered?$1"
    cp "$T_TMP/body" "$2"
}
render "window=40,80,linear&viewport=256,256" "$T_TMP/brain.jpg"
assert_eq "256 256" "$($PY "$DW" jpeg "$T_TMP/brain.jpg")" \
    "JPEG size for viewport 256,256"
# A viewport of another aspect: the 512x512 image is fitted, not stretched.
render "window=40,80,linear&viewport=300,150" "$T_TMP/fit.jpg"
assert_eq "150 150" "$($PY "$DW" jpeg "$T_TMP/fit.jpg")" \
    "JPEG size for viewport 300,150 (aspect kept)"
render "window=400,2000,linear&viewport=256,256" "$T_TMP/bone.jpg"

set -- $($PY "$DW" jpeg-stats "$T_TMP/brain.jpg")
assert_eq "256 256" "$1 $2" "decoded size"
log "brain window: stddev $3, $4 grey levels"
assert_ge 20 "$4" "distinct grey levels in the brain-window JPEG"
awk -v s="$3" 'BEGIN { exit !(s >= 10) }' ||
    fail "brain-window JPEG is nearly flat (stddev $3)"
cmp -s "$T_TMP/brain.jpg" "$T_TMP/bone.jpg" &&
    fail "brain and bone windows gave the same JPEG"

# ---- what the server counted and audited
assert_eq 50 "$(metric hashi_instances_received_total)" \
    "hashi_instances_received_total"
bytes=$(metric hashi_received_bytes_total)
assert_ge $((50 * 525000)) "${bytes%.*}" "hashi_received_bytes_total"
assert_ge 3 "$(metric hashi_render_seconds_count)" \
    "hashi_render_seconds_count after 3 renderings"
audit_has store "STORESCU.*$sop|$sop.*STORESCU" "audit of a C-STORE"
audit_has render "$sop" "audit of a rendering"
audit_has retrieve "2\.25\." "audit of a WADO-RS retrieval"
audit_has query "." "audit of a QIDO-RS query"

# ---- C-ECHO
echoscu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" >"$T_TMP/echo.log" 2>&1 ||
    fail "echoscu failed: $(cat "$T_TMP/echo.log")"

# ---- an unknown calling AE is refused; nothing of its study is stored
ST2=$(study ct2-stranger 2 --patient-id STRANGER --seed 7) || exit 1
before=$(total_instances "$tok")
if storescu -aet NOBODY -aec HASHI 127.0.0.1 "$DPORT" "$ST2"/*.dcm \
        >"$T_TMP/stranger.log" 2>&1; then
    fail "storescu with unknown AE NOBODY succeeded: $(cat "$T_TMP/stranger.log")"
fi
assert_file_has "$T_TMP/stranger.log" "Association Rejected|Calling AE" \
    "storescu's reason for the refusal"
assert_eq 0 "$(qido_count "$tok" "/dicomweb/studies?PatientID=STRANGER")" \
    "studies from the unknown AE"
assert_eq "$before" "$(total_instances "$tok")" "instances after the refusal"
assert_eq 50 "$(metric hashi_instances_received_total)" \
    "hashi_instances_received_total after the refusal"
audit_has 'associate|reject' '"ae:NOBODY".*"denied"' \
    "audit of the refused association"
healthz_ok "the refused association"

pass
