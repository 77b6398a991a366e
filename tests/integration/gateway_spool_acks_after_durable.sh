#!/bin/sh
# hashi-gateway's DICOM side, with no server to reach: every instance
# storescu was told is stored is in the spool (a row and a whole file
# named by its sha256), also after kill -9 right after storescu's success;
# the same bytes again are one row; the gateway keeps its SQLite locks
# through associations; a corrupt object is refused with
# 0xA900 and its reason; a calling AE not allowed is refused; a full disk
# (below the reserve) refuses with 0xA700 and keeps what was spooled;
# `status` counts it all.
. "$(dirname "$0")/lib.sh"

ST=$(study gw-ct4-64 4 --size 64 --patient-id GWSPOOL --seed 41) || exit 1
echo "not-a-real-token" >"$T_TMP/token"
DEAD="https://127.0.0.1:$(free_port)"    # nothing listens: rows stay
CACERT=""

send() {    # FILE [AET]: storescu -d; prints the DIMSE status
    storescu -d -aet "${2:-MODALITY}" -aec HASHIGW 127.0.0.1 "$GWPORT" \
        "$1" >"$T_TMP/sc.log" 2>&1
    sed -n 's/^D: DIMSE Status *: \(0x[0-9a-f]*\).*/\1/p' "$T_TMP/sc.log" |
        tail -1
}
rows() { sqlite3 "$T_TMP/spool/spool.db" "$1"; }

gw_start "$DEAD" "$T_TMP/token" --allow-ae MODALITY --allow-ae CT2
storescu -aet MODALITY -aec HASHIGW 127.0.0.1 "$GWPORT" "$ST"/*.dcm \
    >"$T_TMP/storescu.log" 2>&1 ||
    fail "storescu exited $?: $(tail -5 "$T_TMP/storescu.log")"
# The listener must not drop the process's SQLite locks (closing any
# descriptor of spool.db does): another process would then take the
# database for unused and could check the WAL away under the gateway.
ino=$(stat -c %i "$T_TMP/spool/spool.db")
awk -v p="$GWPID" -v i=":$ino\$" '$5 == p && $6 ~ i' /proc/locks \
    >"$T_TMP/locks"
assert_ge 1 "$(wc -l <"$T_TMP/locks")" \
    "POSIX locks the gateway holds on spool.db after a C-STORE"
gw_kill9
log "killed -9 right after storescu's success; restarting"
gw_start "$DEAD" "$T_TMP/token" --allow-ae MODALITY --allow-ae CT2

$PY "$DW" uids "$ST"/*.dcm | awk '{ print $4 }' | sort >"$T_TMP/sent"
rows "SELECT sop_uid FROM instances ORDER BY sop_uid" >"$T_TMP/spooled"
assert_same_file "$T_TMP/sent" "$T_TMP/spooled" "SOP UIDs in the spool"
for sha in $(rows "SELECT sha256 FROM instances"); do
    f="$T_TMP/spool/files/$sha"
    [ -f "$f" ] || fail "no spool file $f"
    assert_eq "$sha" "$(sha256sum <"$f" | cut -d' ' -f1)" \
        "sha256 of spool file $sha"
done
assert_eq 0 "$(ls "$T_TMP/spool/tmp" | wc -l)" "files left in tmp/"

log "the same bytes again, from another allowed AE"
set -- "$ST"/*.dcm
assert_eq 0x0000 "$(send "$1" CT2)" "status of the same instance again"
assert_eq 4 "$(rows 'SELECT count(*) FROM instances')" "rows after a resend"

log "a corrupt object"
$PY - "$1" "$T_TMP/bad.dcm" <<'PYEOF'
import sys, pydicom
d = pydicom.dcmread(sys.argv[1])
del d.SeriesInstanceUID
d.SOPInstanceUID = d.SOPInstanceUID + ".99"
d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
d.save_as(sys.argv[2])
PYEOF
assert_eq 0xa900 "$(send "$T_TMP/bad.dcm")" "status of a corrupt object"
assert_file_has "$T_TMP/sc.log" 'Series.*ErrorComment|ErrorComment.*Series' \
    "the reason in Error Comment"
assert_file_has "$T_TMP/gw.log" 'refused' "the refusal in the log"
assert_eq 4 "$(rows 'SELECT count(*) FROM instances')" \
    "rows after the corrupt object"

log "a calling AE not allowed"
echoscu -aet STRANGER -aec HASHIGW 127.0.0.1 "$GWPORT" \
    >"$T_TMP/echo.log" 2>&1 && fail "echoscu from STRANGER succeeded"
assert_file_has "$T_TMP/echo.log" 'Calling AE Title Not Recognized' \
    "echoscu's rejection"

log "disk full: a new instance is refused, the old ones stay"
gw_kill9
gw_start "$DEAD" "$T_TMP/token" --reserve 1125899906842624
$PY - "$1" "$T_TMP/new.dcm" <<'PYEOF'
import sys, pydicom
d = pydicom.dcmread(sys.argv[1])
d.SOPInstanceUID = d.SOPInstanceUID + ".98"
d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
d.save_as(sys.argv[2])
PYEOF
assert_eq 0xa700 "$(send "$T_TMP/new.dcm")" "status when the disk is full"
assert_eq 4 "$(rows 'SELECT count(*) FROM instances')" "rows when full"
assert_eq 4 "$(ls "$T_TMP/spool/files" | wc -l)" "spool files when full"

gw_status
assert_eq 4 "$(jget "$T_TMP/status.json" 'd["waiting"] + d["in_flight"]')" \
    "waiting + in flight in status --json"
assert_eq 0 "$(jget "$T_TMP/status.json" 'd["done"] + d["failed"]')" \
    "done + failed in status --json"
size=$(cat "$ST"/*.dcm | wc -c)
assert_ge $((size - 4 * 1024)) \
    "$(jget "$T_TMP/status.json" 'd["bytes_waiting"]')" "bytes waiting"
"$GW" status --spool "$T_TMP/spool" >"$T_TMP/status.txt" ||
    fail "status (text) failed"
assert_file_has "$T_TMP/status.txt" \
    '^waiting [0-9]+, in flight [0-9]+, done 0, failed 0' \
    "status text"

log "usage errors"
"$GW" --spool "$T_TMP/spool" 2>"$T_TMP/err" && fail "no --server accepted"
assert_eq 1 "$?" "exit code of a usage error"
"$GW" --server "$DEAD" --token-file "$T_TMP/token" --spool "$T_TMP/s2" \
    --no-such-flag 2>"$T_TMP/err" && fail "--no-such-flag accepted"
assert_file_has "$T_TMP/err" 'unknown option --no-such-flag' "its message"
"$GW" status --spool "$T_TMP/nothing" 2>"$T_TMP/err"
assert_eq 2 "$?" "exit code of status on no spool"
pass
