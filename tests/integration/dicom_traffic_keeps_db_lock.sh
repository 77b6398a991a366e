#!/bin/sh
# DICOM connections leave the server's SQLite locks alone.  A refused
# echoscu and a storescu must not release the POSIX lock the server holds
# on hashi.db (closing any descriptor of that file would): /proc/locks
# still shows it.  Then the documented admin command on the live data dir
# (`user add`), STOW-RS of five instances, kill -9 and a restart: every
# acknowledged instance is still there, byte for byte.  (Had the lock been
# dropped, the admin command would have removed the WAL the server was
# still writing to, and the kill would lose what was answered 200.)
. "$(dirname "$0")/lib.sh"

ST=$(study ct6-lock 6 --patient-id DBLOCK --seed 61) || exit 1
hashi_setup
tok=$(login demo-requester) || exit 1   # of DEMO_CT's clinic

ino=$(stat -c %i "$DATA/hashi.db")
# db_locks: POSIX locks the server holds on hashi.db's inode.
db_locks() {
    awk -v p="$HPID" -v i="$ino" '$2 == "POSIX" && $5 == p &&
        $6 ~ (":" i "$") { n++ } END { print n + 0 }' /proc/locks
}
before=$(db_locks)
assert_ge 1 "$before" "locks on hashi.db held by the server at start"

log "a refused echoscu, then a storescu"
echoscu -aet NOBODY -aec HASHI 127.0.0.1 "$DPORT" >"$T_TMP/echo.log" 2>&1 &&
    fail "echoscu from an unmapped AE succeeded"
assert_file_has "$T_TMP/echo.log" 'Calling AE Title Not Recognized' \
    "echoscu's rejection"
assert_eq "$before" "$(db_locks)" "locks on hashi.db after a refused echoscu"
storescu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" "$ST/CT00001.dcm" \
    >"$T_TMP/sc.log" 2>&1 || fail "storescu: $(tail -3 "$T_TMP/sc.log")"
assert_eq "$before" "$(db_locks)" "locks on hashi.db after a storescu"

log "admin command on the live data dir, STOW-RS, kill -9, restart"
user_add lockcheck "Clinic L" requester
set -- "$ST/CT00002.dcm" "$ST/CT00003.dcm" "$ST/CT00004.dcm" \
    "$ST/CT00005.dcm" "$ST/CT00006.dcm"
assert_eq 200 "$(stow "$tok" "$@")" "STOW-RS of five instances"
hashi_kill9
hashi_start
tok=$(login demo-requester) || exit 1   # of DEMO_CT's clinic
study_whole "$tok" "$ST"/*.dcm     # all six, after kill -9 and restart
pass
