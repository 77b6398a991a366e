#!/bin/sh
# The one test runner: unit (cmocka binaries), integration (shell scripts
# that run the real binaries against real peers), browser (Chromium via
# playwright-core).  Ends with exactly one line "N passed, N failed" and
# exits non-zero if anything failed.
#
#   tests/run.sh [--unit|--integration|--browser] [NAME-PATTERN]
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export HASHI_ROOT="$ROOT"
export HASHI_BUILD="$ROOT/build"
export HASHI_TOOLS="$ROOT/tests/tools"    # gen_study.py, linkemu.py, ...
export HASHI_TESTDATA="$ROOT/tests/data"
export TCP_NODELAY=1
LOGDIR="$ROOT/build/test-logs"
mkdir -p "$LOGDIR" "$HASHI_TESTDATA"
# Generated studies are cached by name (lib.sh, lib.mjs): a cache made by
# another version of the generator is dropped, or a test would compare a
# server's answers with pixels of the old generator.
_gen=$(sha256sum "$HASHI_TOOLS/gen_study.py" | cut -c1-16)
if [ "$(cat "$HASHI_TESTDATA/studies/.generator" 2>/dev/null)" != "$_gen" ]; then
    rm -rf "$HASHI_TESTDATA/studies"
    mkdir -p "$HASHI_TESTDATA/studies"
    echo "$_gen" >"$HASHI_TESTDATA/studies/.generator"
fi

only=all
pattern=""
case "${1:-}" in
    --*) only=${1#--}; pattern="${2:-}" ;;
    "") ;;
    *) pattern="$1" ;;
esac

passed=0
failed=0
failures=""

ok()   { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); failures="$failures $1"; echo "FAIL $1"; }

run_unit() {
    for bin in "$HASHI_BUILD"/tests/test_*; do
        [ -x "$bin" ] || continue
        name=$(basename "$bin")
        case "$name" in *"$pattern"*) ;; *) continue ;; esac
        log="$LOGDIR/$name.log"
        timeout 600 "$bin" >"$log" 2>&1
        rc=$?
        # cmocka prints "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)"
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        p=${p:-0}; f=${f:-0}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        passed=$((passed + p))
        if [ "$f" -gt 0 ]; then
            failed=$((failed + f))
            failures="$failures $name"
            echo "FAIL $name ($f of $((p + f)), log: $log)"
            grep -E '^\[  (FAILED|  ERROR)|^\[  ERROR' "$log" | head -20
        else
            echo "PASS $name ($p tests)"
        fi
    done
}

run_scripts() {   # dir, interpreter
    for t in "$1"/*; do
        [ -f "$t" ] || continue
        case "$t" in */lib.sh|*/lib.mjs|*/README*) continue ;; esac
        case "$t" in *.sh|*.mjs) ;; *) continue ;; esac
        name=$(basename "$t")
        case "$name" in *"$pattern"*) ;; *) continue ;; esac
        log="$LOGDIR/$name.log"
        start=$(date +%s)
        timeout 600 $2 "$t" >"$log" 2>&1
        rc=$?
        secs=$(( $(date +%s) - start ))
        if [ $rc -eq 0 ]; then
            ok "$name (${secs}s)"
        else
            fail "$name"
            echo "---- last lines of $log (exit $rc)"
            tail -25 "$log"
            echo "----"
        fi
    done
}

case "$only" in all|unit) run_unit ;; esac
case "$only" in all|integration) run_scripts "$ROOT/tests/integration" sh ;; esac
case "$only" in all|browser) run_scripts "$ROOT/tests/browser" node ;; esac

[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
