#!/bin/sh
# The gateway's listener serves associations side by side: while a silent
# TCP peer holds a connection open, two storescu at once both get success
# for every instance, and every one of them is a row and a whole file in
# the spool.
. "$(dirname "$0")/lib.sh"

S1=$(study gw-ct6-64a 6 --size 64 --patient-id GWCONC1 --seed 61) || exit 1
S2=$(study gw-ct6-64b 6 --size 64 --patient-id GWCONC2 --seed 62) || exit 1
echo "not-a-real-token" >"$T_TMP/token"
CACERT=""
gw_start "https://127.0.0.1:$(free_port)" "$T_TMP/token"

# The silent peer: connects, says nothing, stays.
$PY -c 'import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").close()
time.sleep(60)' "$GWPORT" "$T_TMP/silent.up" &
SILENT=$!
at_exit "kill $SILENT"
wait_file "$T_TMP/silent.up" 10

storescu -aet CT1 -aec HASHIGW 127.0.0.1 "$GWPORT" "$S1"/*.dcm \
    >"$T_TMP/sc1.log" 2>&1 &
P1=$!
storescu -aet CT2 -aec HASHIGW 127.0.0.1 "$GWPORT" "$S2"/*.dcm \
    >"$T_TMP/sc2.log" 2>&1 &
P2=$!
wait_pid $P1 30
assert_eq 0 "$WRC" "storescu 1 exit status ($(tail -3 "$T_TMP/sc1.log"))"
wait_pid $P2 30
assert_eq 0 "$WRC" "storescu 2 exit status ($(tail -3 "$T_TMP/sc2.log"))"
kill -0 "$SILENT" 2>/dev/null || fail "the silent peer's connection ended"

$PY "$DW" uids "$S1"/*.dcm "$S2"/*.dcm | awk '{ print $4 }' | sort \
    >"$T_TMP/sent"
sqlite3 "$T_TMP/spool/spool.db" "SELECT sop_uid FROM instances
    ORDER BY sop_uid" >"$T_TMP/spooled"
assert_same_file "$T_TMP/sent" "$T_TMP/spooled" "SOP UIDs in the spool"
for sha in $(sqlite3 "$T_TMP/spool/spool.db" "SELECT sha256 FROM instances")
do
    assert_eq "$sha" "$(sha256sum <"$T_TMP/spool/files/$sha" |
        cut -d' ' -f1)" "spool file $sha"
done
pass
