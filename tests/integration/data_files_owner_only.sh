#!/bin/sh
# The database, its WAL and shared memory, and the TLS certificate and key
# are readable by their owner only (0600): as made by init and by a server
# that has stored something, and also in a data dir made before, whose
# files the server makes owner-only when it starts.
. "$(dirname "$0")/lib.sh"

ST=$(study ct1-modes 1 --patient-id MODES1 --seed 81) || exit 1
FILES="hashi.db hashi.db-wal hashi.db-shm tls/cert.pem tls/key.pem"

modes() {    # the mode of each of FILES, one line
    for f in $FILES; do
        [ -e "$DATA/$f" ] || { printf '%s:missing ' "$f"; continue; }
        printf '%s:%s ' "$f" "$(stat -c %a "$DATA/$f")"
    done
}
want="hashi.db:600 hashi.db-wal:600 hashi.db-shm:600 tls/cert.pem:600 \
tls/key.pem:600 "

hashi_setup
tok=$(login demo-admin) || exit 1
assert_eq 200 "$(stow "$tok" "$ST/CT00001.dcm")" "STOW-RS"
assert_eq "$want" "$(modes)" "modes in a new data dir, server running"

log "an older data dir: group- and world-readable files"
hashi_stop
for f in $FILES; do
    [ -e "$DATA/$f" ] && chmod 0644 "$DATA/$f"
done
[ -e "$DATA/hashi.db-wal" ] || : >"$DATA/hashi.db-wal"   # as after a crash
[ -e "$DATA/hashi.db-shm" ] || : >"$DATA/hashi.db-shm"
chmod 0644 "$DATA/hashi.db-wal" "$DATA/hashi.db-shm"
hashi_start
assert_eq "$want" "$(modes)" "modes after the server started on it"
assert_eq 1 "$(total_instances "$tok")" "instances after the restart"
pass
