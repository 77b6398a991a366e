#!/bin/sh
# Query/Retrieve (Study Root) over DIMSE, as DCMTK's own tools do it.
# findscu finds the stored study at study, series and image level (by
# PatientID and by StudyDate); getscu and movescu (to a storescp started
# here, a destination configured for the clinic) bring back every
# instance, dataset byte for byte.  A calling AE of another clinic finds
# nothing and gets nothing (C-GET and C-MOVE: zero sub-operations, nothing
# arrives); an unknown move destination, or another clinic's, is A801.
. "$(dirname "$0")/lib.sh"

ST=$(study qr3 3 --patient-id QR1 --seed 31) || exit 1
OT=$(study qr2-other 2 --patient-id QROTHER --seed 32) || exit 1
study_uid=$(attr_of "$ST/CT00001.dcm" StudyInstanceUID)
series_uid=$(attr_of "$ST/CT00001.dcm" SeriesInstanceUID)
other_uid=$(attr_of "$OT/CT00001.dcm" StudyInstanceUID)

hashi_init
SPORT=$(free_port)
admin() {
    "$SERVER" "$@" --data "$DATA" >>"$T_TMP/admin.log" 2>&1 ||
        fail "hashi-server $*: $(tail -2 "$T_TMP/admin.log")"
}
admin clinic add --name "Clinic B" --kind rural --calling-ae OTHERB
admin clinic add-ae --name "Demo Rural Clinic" --calling-ae DESTA \
    --dest "127.0.0.1:$SPORT"
admin clinic add-ae --name "Clinic B" --calling-ae DESTB \
    --dest "127.0.0.1:$SPORT"
hashi_start

store_as STORESCU "$ST"/*.dcm
store_as OTHERB "$OT"/*.dcm

# find AE NAME KEY...: C-FIND answers into $T_TMP/NAME/, their number out
find() {
    _ae=$1 _d="$T_TMP/$2"; shift 2
    mkdir -p "$_d"
    (cd "$_d" && findscu -S -aet "$_ae" -aec HASHI -X 127.0.0.1 "$DPORT" \
        "$@" >"$_d.log" 2>&1) || fail "findscu $*: $(tail -3 "$_d.log")"
    ls "$_d" | wc -l
}
# val NAME TAG-KEYWORD: that attribute of every answer, sorted
val() {
    for f in "$T_TMP/$1"/*; do attr_of "$f" "$2"; done | sort
}
# same_datasets DIR: DIR holds exactly the datasets of $ST, byte for byte
same_datasets() {
    $PY "$DW" uids "$1"/* | awk '{ print $4, $1 }' | sort >"$T_TMP/got"
    $PY "$DW" uids "$ST"/*.dcm | awk '{ print $4, $1 }' | sort >"$T_TMP/sent"
    assert_eq "$(cut -d' ' -f1 "$T_TMP/sent")" \
        "$(cut -d' ' -f1 "$T_TMP/got")" "SOP Instance UIDs in $1"
    join "$T_TMP/sent" "$T_TMP/got" | while read -r _ a b; do
        $PY "$DW" dataset-equal "$a" "$b" ||
            fail "$b: dataset differs from $a"
    done
}

log "C-FIND"
assert_eq 1 "$(find STORESCU s1 -k QueryRetrieveLevel=STUDY -k PatientID=QR1 \
    -k StudyInstanceUID -k PatientName -k StudyDate -k ModalitiesInStudy \
    -k NumberOfStudyRelatedInstances)" "studies for PatientID QR1"
assert_eq "$study_uid" "$(val s1 StudyInstanceUID)" "StudyInstanceUID found"
assert_eq QR1 "$(val s1 PatientID)" "PatientID answered"
assert_eq 20240101 "$(val s1 StudyDate)" "StudyDate answered"
assert_eq 3 "$(val s1 NumberOfStudyRelatedInstances)" "instances in study"
assert_eq 1 "$(find STORESCU s2 -k QueryRetrieveLevel=STUDY \
    -k StudyDate=20231201-20240201 -k StudyInstanceUID)" \
    "studies in a date range (the other clinic's not among them)"
assert_eq "$study_uid" "$(val s2 StudyInstanceUID)" "study by date"
assert_eq 0 "$(find STORESCU s3 -k QueryRetrieveLevel=STUDY \
    -k StudyDate=20230101 -k StudyInstanceUID)" "studies on another date"
assert_eq 1 "$(find STORESCU se -k QueryRetrieveLevel=SERIES \
    -k StudyInstanceUID="$study_uid" -k SeriesInstanceUID -k Modality)" \
    "series of the study"
assert_eq "$series_uid" "$(val se SeriesInstanceUID)" "SeriesInstanceUID"
assert_eq CT "$(val se Modality)" "Modality"
assert_eq 3 "$(find STORESCU im -k QueryRetrieveLevel=IMAGE \
    -k StudyInstanceUID="$study_uid" -k SeriesInstanceUID="$series_uid" \
    -k SOPInstanceUID)" "images of the series"
assert_eq "$($PY "$DW" uids "$ST"/*.dcm | awk '{ print $4 }' | sort)" \
    "$(val im SOPInstanceUID)" "SOP Instance UIDs found"

# a level that Study Root has not: refused, A900, with the reason
(cd "$T_TMP" && findscu -d -S -aet STORESCU -aec HASHI 127.0.0.1 "$DPORT" \
    -k QueryRetrieveLevel=PATIENT -k PatientID=QR1 >bad-level.log 2>&1)
assert_file_has "$T_TMP/bad-level.log" "Status *: 0xa900" \
    "C-FIND at PATIENT level"
assert_file_has "$T_TMP/bad-level.log" "STUDY, SERIES or IMAGE" \
    "the reason given for it"

log "other clinic: finds nothing of ours"
assert_eq 0 "$(find OTHERB b1 -k QueryRetrieveLevel=STUDY -k PatientID=QR1 \
    -k StudyInstanceUID)" "OTHERB: studies for PatientID QR1"
assert_eq 0 "$(find OTHERB b2 -k QueryRetrieveLevel=IMAGE \
    -k StudyInstanceUID="$study_uid" -k SeriesInstanceUID="$series_uid" \
    -k SOPInstanceUID)" "OTHERB: images of our series"
assert_eq "$other_uid" "$(find OTHERB b3 -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID >/dev/null; val b3 StudyInstanceUID)" \
    "OTHERB sees only its own study"

log "C-GET"
mkdir -p "$T_TMP/get"
getscu -S -aet STORESCU -aec HASHI -od "$T_TMP/get" 127.0.0.1 "$DPORT" \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$study_uid" \
    >"$T_TMP/get.log" 2>&1 || fail "getscu: $(tail -3 "$T_TMP/get.log")"
same_datasets "$T_TMP/get"

log "C-MOVE"
mkdir -p "$T_TMP/moved"
storescp -aet DESTA -od "$T_TMP/moved" "$SPORT" >"$T_TMP/storescp.log" 2>&1 &
SCP_PID=$!
at_exit "kill $SCP_PID 2>/dev/null"
move() {    # AE DEST LOG KEY...: movescu; its log in $T_TMP/LOG
    _ae=$1 _dst=$2 _l="$T_TMP/$3"; shift 3
    movescu -v -S -aet "$_ae" -aec HASHI -aem "$_dst" 127.0.0.1 "$DPORT" \
        "$@" >"$_l" 2>&1
}
i=0
until move STORESCU DESTA move.log -k QueryRetrieveLevel=STUDY \
        -k StudyInstanceUID="$study_uid"; do
    i=$((i + 1))    # storescp may still be starting
    [ $i -lt 20 ] || fail "movescu: $(tail -3 "$T_TMP/move.log")"
    sleep 0.2
done
same_datasets "$T_TMP/moved"
audit_has retrieve '"ae:STORESCU".*C-MOVE to DESTA: 3 sent, 0 failed' \
    "audit of the C-MOVE"

log "refusals"
rm -f "$T_TMP/moved"/*
move STORESCU NOWHERE bad1.log -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID="$study_uid"
assert_file_has "$T_TMP/bad1.log" "MoveDestinationUnknown" \
    "C-MOVE to an unknown AE"
move STORESCU DESTB bad2.log -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID="$study_uid"
assert_file_has "$T_TMP/bad2.log" "MoveDestinationUnknown" \
    "C-MOVE to another clinic's destination"
move OTHERB DESTB bad3.log -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID="$study_uid"
assert_file_lacks "$T_TMP/bad3.log" "Pending" "OTHERB's C-MOVE of our study"
mkdir -p "$T_TMP/get-b"
getscu -S -aet OTHERB -aec HASHI -od "$T_TMP/get-b" 127.0.0.1 "$DPORT" \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$study_uid" \
    >"$T_TMP/get-b.log" 2>&1
assert_eq 0 "$(ls "$T_TMP/get-b" | wc -l)" "files OTHERB got by C-GET"
assert_eq 0 "$(ls "$T_TMP/moved" | wc -l)" "files moved after the refusals"
healthz_ok "after Query/Retrieve"
pass
