#!/bin/sh
# make bench: Hashi's ingest/render benchmark against DCMTK storescp and
# Orthanc (bench/ingest.py), inside a private network namespace with only
# loopback, so the peers (which bind every interface) are reachable from
# nothing but this run.  Figures go to bench/RESULTS.md.  Then the push
# fan-out benchmark, bench/push.sh, the viewer benchmark, bench/viewer.py,
# C-FIND over 10,000 studies, bench/cfind.py, the phone benchmark,
# bench/phone.mjs, and the WAN benchmark,
# bench/wan.sh (each its own section of RESULTS.md).
#
#   sh bench/run.sh [ingest.py options]   e.g. --rounds 5 --stream-gb 0
#   BENCH_ROUNDS=N BENCH_STREAM_GB=G      same, by environment
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export HASHI_BUILD="${HASHI_BUILD:-$ROOT/build}"
export HASHI_TOOLS="$ROOT/tests/tools"
export TCP_NODELAY=1

[ -x "$HASHI_BUILD/hashi-server" ] ||
    { echo "bench: $HASHI_BUILD/hashi-server not built (make)" >&2; exit 1; }
mkdir -p "$ROOT/bench/work"

rc=0
. "$ROOT/bench/netns.sh"
bench_netns /usr/bin/python3 "$ROOT/bench/ingest.py" "$@" || rc=$?

# C-FIND over many studies, hashi-server vs Orthanc (its own section of
# RESULTS.md; BENCH_CFIND_STUDIES, default 10000).
bench_netns /usr/bin/python3 "$ROOT/bench/cfind.py" || rc=$?

# The push fan-out benchmark (its own namespace and section of RESULTS.md).
sh "$ROOT/bench/push.sh" || rc=$?

# A viewer opening a study, hashi vs Orthanc's DICOMweb plugin
# (BENCH_VIEWER_SLICES, BENCH_VIEWER_ROUNDS).
bench_netns /usr/bin/python3 "$ROOT/bench/viewer.py" || rc=$?

# Issue 9's phone benchmark: Hashi's page vs OHIF opening a case and
# stepping through it on a 400 kbit/s, 400 ms link (headless Chromium;
# BENCH_PHONE_* in bench/phone.mjs).
bench_netns node "$ROOT/bench/phone.mjs" || rc=$?

# The WAN benchmark of the gateway issue (its own section of RESULTS.md;
# about 2.5 hours at full size: BENCH_WAN="--quick" for a short one).
sh "$ROOT/bench/wan.sh" ${BENCH_WAN:-} || rc=$?
exit $rc
