#!/bin/sh
# The hashi.v1 codec survives 60 s of libFuzzer (ASan + UBSan) from the
# committed seed corpus: no crash, leak, sanitizer report, or broken codec
# promise (tests/fuzz/fuzz_msg.c checks that a frame that parses
# re-serialises stably and that every failure can be answered).
# FUZZ_SECONDS shortens or lengthens the run.
set -eu
: "${HASHI_ROOT:?run from tests/run.sh}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" sh "$HASHI_ROOT/tests/fuzz/run.sh"
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
    "$HASHI_ROOT/build/fuzz/fuzz.log" | tail -1)
echo "executed units: ${runs:-none}"
# A run that executed almost nothing proves nothing.
[ "${runs:-0}" -ge 10000 ] || { echo "FAIL: too few fuzz executions"; exit 1; }
