#!/bin/sh
# bench/wan.sh — the WAN benchmark of the edge-gateway issue: bench/wan.py
# inside a private network namespace with only loopback (bench/netns.sh).
#
#   sh bench/wan.sh            the full run (200 slices; about 2.5 hours)
#   sh bench/wan.sh --quick    a short run that proves it works (minutes)
#   sh bench/wan.sh --help     every option
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export HASHI_BUILD="${HASHI_BUILD:-$ROOT/build}"
export HASHI_TOOLS="$ROOT/tests/tools"
export TCP_NODELAY=1
for prog in hashi-server hashi-gateway; do
    [ -x "$HASHI_BUILD/$prog" ] ||
        { echo "wan: $HASHI_BUILD/$prog not built (make)" >&2; exit 2; }
done
. "$ROOT/bench/netns.sh"
bench_netns /usr/bin/python3 "$ROOT/bench/wan.py" "$@"
