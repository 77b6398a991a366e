#!/bin/sh
# --max-instance holds for C-STORE while the dataset is still arriving: a
# 0.5 MB slice sent to a server capped at 100 KB gets its association
# aborted mid-transfer (no status is answered for it), nothing is stored,
# no temp file is left, and the server says why in its log; an instance
# under the cap, sent next, is stored.
. "$(dirname "$0")/lib.sh"

ST=$(study ct1-cap 1 --patient-id CAP1 --seed 71) || exit 1
big=$ST/CT00001.dcm
hashi_init
hashi_start --max-instance 100K
tok=$(login demo-admin) || exit 1

log "a 0.5 MB instance to a 100 KB cap"
timeout 30 storescu -d -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" "$big" \
    >"$T_TMP/big.log" 2>&1 &&
    fail "storescu of an instance over the cap succeeded"
assert_file_lacks "$T_TMP/big.log" "DIMSE Status" \
    "a C-STORE status for the instance over the cap (it must be cut off)"
wait_grep "$T_TMP/server.log" 'over the 102400-byte limit: association aborted'
assert_eq 0 "$(total_instances "$tok")" "instances stored"
assert_eq 0 "$(find "$DATA/tmp" -type f | wc -l)" "files left in $DATA/tmp"

log "an instance under the cap"
$PY - "$big" "$T_TMP/small.dcm" <<'EOF'
import sys, pydicom
d = pydicom.dcmread(sys.argv[1])
d.Rows, d.Columns = 16, 16
d.PixelData = bytes(16 * 16 * 2)
d.save_as(sys.argv[2])
EOF
timeout 30 storescu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" \
    "$T_TMP/small.dcm" >"$T_TMP/small.log" 2>&1 ||
    fail "storescu under the cap: $(tail -3 "$T_TMP/small.log")"
assert_eq 1 "$(total_instances "$tok")" "instances stored"
healthz_ok "the capped transfers"
pass
