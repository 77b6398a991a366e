#!/bin/sh
# make bench: Hashi's ingest/render benchmark against DCMTK storescp and
# Orthanc (bench/ingest.py), inside a private network namespace with only
# loopback, so the peers (which bind every interface) are reachable from
# nothing but this run.  Figures go to bench/RESULTS.md.  Then the push
# fan-out benchmark, bench/push.sh, the viewer benchmark, bench/viewer.py,
# and C-FIND over 10,000 studies, bench/cfind.py (each its own section of
# RESULTS.md).
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
if [ "${HASHI_BENCH_NETNS:-}" = "" ] && unshare --net true 2>/dev/null; then
    export HASHI_BENCH_NETNS="private namespace (unshare --net), loopback only"
    unshare --net sh -c 'ip link set lo up && exec "$0" "$@"' \
        /usr/bin/python3 "$ROOT/bench/ingest.py" "$@" || rc=$?
else
    echo "bench: cannot unshare the network namespace (not root?);" \
        "running on the host's loopback" >&2
    export HASHI_BENCH_NETNS="${HASHI_BENCH_NETNS:-host network (unshare failed)}"
    /usr/bin/python3 "$ROOT/bench/ingest.py" "$@" || rc=$?
fi

# C-FIND over many studies, hashi-server vs Orthanc (its own section of
# RESULTS.md; BENCH_CFIND_STUDIES, default 10000).
if [ "${HASHI_BENCH_NETNS#private}" != "$HASHI_BENCH_NETNS" ]; then
    unshare --net sh -c 'ip link set lo up && exec "$0" "$@"' \
        /usr/bin/python3 "$ROOT/bench/cfind.py" || rc=$?
else
    /usr/bin/python3 "$ROOT/bench/cfind.py" || rc=$?
fi

# The push fan-out benchmark (its own namespace and section of RESULTS.md).
sh "$ROOT/bench/push.sh" || rc=$?

# A viewer opening a study, hashi vs Orthanc's DICOMweb plugin
# (BENCH_VIEWER_SLICES, BENCH_VIEWER_ROUNDS).
if [ "${HASHI_BENCH_NETNS#private}" != "$HASHI_BENCH_NETNS" ]; then
    unshare --net sh -c 'ip link set lo up && exec "$0" "$@"' \
        /usr/bin/python3 "$ROOT/bench/viewer.py" || rc=$?
else
    /usr/bin/python3 "$ROOT/bench/viewer.py" || rc=$?
fi
exit $rc
