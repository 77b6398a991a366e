#!/bin/sh
# C-MOVE sends a stored file unchanged when the destination accepts its
# transfer syntax, and decodes it only when the destination refuses it:
# a JPEG-LS study moved to a storescp that accepts JPEG-LS arrives as
# the same JPEG-LS dataset byte for byte; moved to a storescp that takes
# only uncompressed syntaxes, it arrives in Explicit VR Little Endian with
# the pixels DCMTK's dcmdjpls decodes from the original; to one that
# takes only Implicit VR Little Endian, in that with the same pixels.
. "$(dirname "$0")/lib.sh"

ST=$(study qrls2 2 --size 128 --patient-id QRLS --seed 51) || exit 1
mkdir -p "$T_TMP/ls" "$T_TMP/plain" "$T_TMP/all" "$T_TMP/uncompressed" \
    "$T_TMP/implicit"
for f in "$ST"/*.dcm; do
    b=$(basename "$f")
    dcmcjpls "$f" "$T_TMP/ls/$b" || fail "dcmcjpls $b"
    dcmdjpls "$T_TMP/ls/$b" "$T_TMP/plain/$b" || fail "dcmdjpls $b"
done
study_uid=$(attr_of "$T_TMP/ls/CT00001.dcm" StudyInstanceUID)
PA=$(free_port)
PU=$(free_port)
PI=$(free_port)

hashi_init
for d in "DESTALL $PA" "DESTUNC $PU" "DESTIMP $PI"; do
    set -- $d
    "$SERVER" clinic add-ae --data "$DATA" --name "Demo Rural Clinic" \
        --calling-ae "$1" --dest "127.0.0.1:$2" >>"$T_TMP/admin.log" 2>&1 ||
        fail "add-ae $1: $(tail -2 "$T_TMP/admin.log")"
done
hashi_start
store_as STORESCU -xt "$T_TMP/ls"/*.dcm     # -xt: propose JPEG-LS

storescp +xt -aet DESTALL -od "$T_TMP/all" "$PA" >"$T_TMP/scp-all.log" 2>&1 &
at_exit "kill $! 2>/dev/null"
storescp -aet DESTUNC -od "$T_TMP/uncompressed" "$PU" \
    >"$T_TMP/scp-unc.log" 2>&1 &
at_exit "kill $! 2>/dev/null"
storescp +xi -aet DESTIMP -od "$T_TMP/implicit" "$PI" \
    >"$T_TMP/scp-imp.log" 2>&1 &
at_exit "kill $! 2>/dev/null"
move() {    # DEST
    i=0
    until movescu -S -aet STORESCU -aec HASHI -aem "$1" 127.0.0.1 "$DPORT" \
            -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$study_uid" \
            >"$T_TMP/move-$1.log" 2>&1; do
        i=$((i + 1))    # storescp may still be starting
        [ $i -lt 20 ] || fail "movescu to $1: $(tail -3 "$T_TMP/move-$1.log")"
        sleep 0.2
    done
}
move DESTALL
move DESTUNC
move DESTIMP

# by_sop DIR: "SOP file" lines, sorted
by_sop() { $PY "$DW" uids "$1"/* | awk '{ print $4, $1 }' | sort; }
by_sop "$T_TMP/ls" >"$T_TMP/sent"
for dir in all uncompressed implicit; do
    by_sop "$T_TMP/$dir" >"$T_TMP/got-$dir"
    assert_eq "$(cut -d' ' -f1 "$T_TMP/sent")" \
        "$(cut -d' ' -f1 "$T_TMP/got-$dir")" "SOP Instance UIDs moved ($dir)"
done
join "$T_TMP/sent" "$T_TMP/got-all" | while read -r _ a b; do
    assert_eq 1.2.840.10008.1.2.4.80 \
        "$($PY -c 'import sys, pydicom
print(pydicom.dcmread(sys.argv[1]).file_meta.TransferSyntaxUID)' "$b")" \
        "transfer syntax at the destination that accepts JPEG-LS"
    $PY "$DW" dataset-equal "$a" "$b" || fail "$b differs from $a"
done
# same_pixels DIR TS: each moved file is in TS with the decoded pixels
same_pixels() {
    ls "$T_TMP/plain"/*.dcm | while read -r p; do
        sop=$(attr_of "$p" SOPInstanceUID)
        b=$(grep "^$sop " "$T_TMP/got-$1" | cut -d' ' -f2)
        $PY -c 'import sys, pydicom
a, b = (pydicom.dcmread(p) for p in sys.argv[1:3])
ts = b.file_meta.TransferSyntaxUID
if ts != sys.argv[3] or a.PixelData != b.PixelData:
    sys.exit("%s: %s, pixels %s" % (sys.argv[2], ts,
             "equal" if a.PixelData == b.PixelData else "differ"))
' "$p" "$b" "$2" || fail "decoded copy of $sop in $1"
    done
}
same_pixels uncompressed 1.2.840.10008.1.2.1
same_pixels implicit 1.2.840.10008.1.2
audit_has retrieve 'C-MOVE to DESTUNC: 2 sent, 0 failed' "audit of the move"
pass
