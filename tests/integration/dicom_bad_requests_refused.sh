#!/bin/sh
# Malformed association requests end their connection and nothing else: an
# HTTP request on the DICOM port, a request claiming 16 MiB, random bodies
# and good requests with bytes changed (60 connections, fixed seed) are
# each answered (refused, or accepted where the change left a valid
# request) or closed by the server, which then still answers echoscu and
# stores by storescu.
. "$(dirname "$0")/lib.sh"

ST=$(study ct1-badrq 1 --patient-id BADRQ1 --seed 91) || exit 1
hashi_setup
tok=$(login demo-requester) || exit 1

ended=$($PY "$LIBDIR/dicom_peer.py" garbage 127.0.0.1 "$DPORT" 60 7) ||
    fail "dicom_peer.py garbage: $ended"
assert_eq 60 "$ended" "malformed requests answered or closed"
kill -0 "$HPID" 2>/dev/null || fail "the server died"
echoscu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" >"$T_TMP/echo.log" 2>&1 ||
    fail "echoscu after the malformed requests: $(tail -3 "$T_TMP/echo.log")"
timeout 30 storescu -aet DEMO_CT -aec HASHI 127.0.0.1 "$DPORT" \
    "$ST/CT00001.dcm" >"$T_TMP/sc.log" 2>&1 ||
    fail "storescu after the malformed requests: $(tail -3 "$T_TMP/sc.log")"
study_whole "$tok" "$ST/CT00001.dcm"
pass
