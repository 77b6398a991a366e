#!/bin/sh
# Builds the hashi.v1 codec fuzzer with clang (libFuzzer + ASan + UBSan)
# and runs it for FUZZ_SECONDS (default 60).  Exits non-zero on any crash,
# leak, sanitizer report or broken codec promise; the reproducer is left
# in build/fuzz/artifacts/.  The committed seeds in tests/fuzz/corpus are
# copied to build/fuzz/corpus, so what the run finds stays out of the tree.
#
#   FUZZ_SECONDS=600 sh tests/fuzz/run.sh
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="$ROOT/build/fuzz"
SECS="${FUZZ_SECONDS:-60}"

mkdir -p "$OUT/corpus" "$OUT/artifacts"
clang -g -O1 -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
    -Wall -Wextra -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -o "$OUT/fuzz_msg" \
    "$ROOT/tests/fuzz/fuzz_msg.c" "$ROOT/proto/msg.c" "$ROOT/proto/util.c" \
    "$ROOT/proto/log.c" -ljansson -lcrypto -lm
cp "$ROOT"/tests/fuzz/corpus/* "$OUT/corpus/"

echo "fuzz: fuzz_msg for ${SECS}s"
set +e
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
"$OUT/fuzz_msg" -max_total_time="$SECS" -max_len=8192 -timeout=10 \
    -dict="$ROOT/tests/fuzz/msg.dict" -artifact_prefix="$OUT/artifacts/" \
    -print_final_stats=1 "$OUT/corpus" >"$OUT/fuzz.log" 2>&1
rc=$?
set -e
grep -E '^#[0-9]+ *DONE|^stat::(number_of_executed_units|peak_rss_mb)' \
    "$OUT/fuzz.log" || true
if [ $rc -ne 0 ]; then
    tail -60 "$OUT/fuzz.log"
    echo "fuzz: FAILED (exit $rc), log: $OUT/fuzz.log" >&2
    exit 1
fi
echo "fuzz: clean, log: $OUT/fuzz.log"
