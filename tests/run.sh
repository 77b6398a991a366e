#!/bin/sh
# The one test runner: unit (cmocka binaries), integration (shell scripts
# that run the real binaries against real peers), browser (Chromium via
# playwright-core).  Ends with exactly one line "N passed, N failed" and
# exits non-zero if anything failed.
#
#   tests/run.sh [--unit|--integration|--browser] [NAME-PATTERN]
#
# Most of the suite's time is waiting (slow links, outages, timeouts), so
# the tests run as a pool of HASHI_TEST_JOBS parallel jobs (default 3; 1
# runs them one after another in name order, as before).  The longest go
# first, so that a long one does not end the run alone: the seconds each
# took last time (build/test-logs/NAME.secs), else the estimate in SLOW
# below.  A line is printed as each test ends, whatever the order.
#
# Each test runs in its own network namespace with only loopback up
# (unshare --net; we are root; a browser test also gets an interface that
# leads nowhere, see NS_BROWSER), so the free port one test picks cannot
# be taken by another; where unshare is refused they share the host's
# network and a warning says so.  A test that measures a deadline within a
# tolerance and fails when other tests load the machine carries the line
#
#   # test: serial
#
# and runs alone, before the pool starts.
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

jobs=${HASHI_TEST_JOBS:-3}
case "$jobs" in
    ''|*[!0-9]*|0*)
        echo "tests/run.sh: HASHI_TEST_JOBS must be a whole number >= 1," \
            "not '$jobs'" >&2
        exit 2 ;;
esac

# Seconds on the 2-core reference machine, for a run with no
# build/test-logs/NAME.secs yet (a fresh clone); anything else counts 5.
SLOW="gateway_long_outage_resumes.sh 67
codec_fuzz_60s_clean.sh 63
gateway_wire_bytes_resumed.sh 37
valgrind_clean.sh 33
ws_slow_reader_dropped.sh 25
gateway_preview_while_study_arrives.sh 23
live_over_slow_link.mjs 22
case_timeline_unread_amend.mjs 20
crew_prearrival_photos_handover.mjs 19
viewer_first_slice_with_the_case.mjs 18
viewer_asks_study_and_series_together.mjs 18
wan_bench_restarts_storescu_with_the_rest.sh 17
send_resumes_across_cuts.sh 17
gateway_kill9_random_moments.sh 16
test_auth 12"

# What a namespace gets: loopback up; for a browser test also a bridge
# with no port, an interface that is up and leads nowhere, since Chromium
# with loopback alone counts itself offline (navigator.onLine false: the
# page never opens its live connection).  Each is tried once; where it is
# refused those tests share the host's network.
NS_LO='ip link set lo up'
NS_BROWSER="$NS_LO && ip link add hashi0 type bridge && ip link set hashi0 up"
ns_lo=$NS_LO
ns_browser=$NS_BROWSER
if ! unshare --net sh -c "$NS_LO" 2>/dev/null; then
    ns_lo=""
    ns_browser=""
    echo "warning: unshare --net refused: tests share the host's network"
elif ! unshare --net sh -c "$NS_BROWSER" 2>/dev/null; then
    ns_browser=""
    echo "warning: no bridge in a namespace: browser tests share the" \
        "host's network"
fi

passed=0
failed=0
failures=""

ok()   { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); failures="$failures $1"; echo "FAIL $1"; }

# isolated SETUP COMMAND...: becomes COMMAND under a 600 s guard (exec:
# called as a job of its own), in a network namespace of its own set up by
# the commands SETUP ("": the host's).
isolated() {
    _setup=$1; shift
    if [ -n "$_setup" ]; then
        exec timeout 600 unshare --net sh -c "$_setup"' && exec "$@"' \
            isolated "$@"
    fi
    exec timeout 600 "$@"
}

# ---- what to run -----------------------------------------------------------

# This run's queue, FIFO and the pids of its running tests.
RUN="$LOGDIR/.run.$$"
rm -rf "$RUN"
mkdir "$RUN" || exit 2
trap 'rm -rf "$RUN"' EXIT
queue="$RUN/queue"
: >"$queue"

# add NAME SERIAL KIND PATH: one line "SECS SERIAL NAME KIND PATH", KIND
# being unit (a cmocka binary) or the script's interpreter (sh, node).
add() {
    secs=$(cat "$LOGDIR/$1.secs" 2>/dev/null) ||
        secs=$(echo "$SLOW" | awk -v n="$1" '$1 == n { print $2 }')
    echo "${secs:-5} $2 $1 $3 $4" >>"$queue"
}

list_unit() {
    for bin in "$HASHI_BUILD"/tests/test_*; do
        [ -x "$bin" ] || continue
        name=$(basename "$bin")
        case "$name" in *"$pattern"*) ;; *) continue ;; esac
        add "$name" 0 unit "$bin"
    done
}

list_scripts() {   # dir, interpreter
    for t in "$1"/*; do
        [ -f "$t" ] || continue
        case "$t" in */lib.sh|*/lib.mjs|*/README*) continue ;; esac
        case "$t" in *.sh|*.mjs) ;; *) continue ;; esac
        name=$(basename "$t")
        case "$name" in *"$pattern"*) ;; *) continue ;; esac
        serial=0
        grep -Eq '^(#|//) test: serial$' "$t" && serial=1
        add "$name" "$serial" "$2" "$t"
    done
}

case "$only" in all|unit) list_unit ;; esac
case "$only" in all|integration) list_scripts "$ROOT/tests/integration" sh ;;
esac
case "$only" in all|browser) list_scripts "$ROOT/tests/browser" node ;; esac

# One job at a time keeps the name order; a pool takes the serial ones
# first (alone), then the longest first.
if [ "$jobs" -gt 1 ]; then
    sort -k2,2nr -k1,1nr -k3,3 "$queue" >"$queue.sorted"
    mv "$queue.sorted" "$queue"
fi

# ---- the pool --------------------------------------------------------------

# A job says "NAME KIND RC SECS" on fd 3, a FIFO the runner reads as jobs
# end; lines this short are written whole even when jobs end together.
mkfifo "$RUN/fifo" || exit 2
exec 3<>"$RUN/fifo"

# Interrupted: the running tests are stopped too (timeout passes SIGTERM
# on to the test, whose clean-up stops what it started).
stop_all() {
    for _p in "$RUN"/*.pid; do
        [ -f "$_p" ] && kill -TERM "$(cat "$_p")" 2>/dev/null
    done
    exit 130
}
trap stop_all INT TERM

start() {    # NAME KIND PATH
    (
        s=$(date +%s)
        if [ "$2" = unit ]; then
            # test_dicom and test_deid rewrite their fixtures in place
            # ($HASHI_TESTDATA/dicom-unit, deid-unit), and valgrind_clean.sh
            # runs them too, maybe at the same time: a directory apart.
            export HASHI_TESTDATA="$HASHI_TESTDATA/unit"
            mkdir -p "$HASHI_TESTDATA"
            set -- "$1" "$2" "$ns_lo" "$3"
        elif [ "$2" = node ]; then
            set -- "$1" "$2" "$ns_browser" node "$3"
        else
            set -- "$1" "$2" "$ns_lo" "$2" "$3"
        fi
        _n=$1; _k=$2; shift 2
        isolated "$@" >"$LOGDIR/$_n.log" 2>&1 3>&- &
        echo $! >"$RUN/$_n.pid"
        wait $!
        rc=$?
        echo "$_n $_k $rc $(($(date +%s) - s))" >&3
    ) &
}

report_unit() {    # NAME RC
    log="$LOGDIR/$1.log"
    # cmocka prints "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    p=${p:-0}; f=${f:-0}
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    if [ "$f" -gt 0 ]; then
        failed=$((failed + f))
        failures="$failures $1"
        echo "FAIL $1 ($f of $((p + f)), log: $log)"
        grep -E '^\[  (FAILED|  ERROR)|^\[  ERROR' "$log" | head -20
    else
        echo "PASS $1 ($p tests)"
    fi
}

report_script() {    # NAME RC SECS
    log="$LOGDIR/$1.log"
    if [ "$2" -eq 0 ]; then
        ok "$1 (${3}s)"
    else
        fail "$1"
        echo "---- last lines of $log (exit $2)"
        tail -25 "$log"
        echo "----"
    fi
}

running=0
collect() {    # wait for one job to end and report it
    read -r c_name c_kind c_rc c_secs <&3
    running=$((running - 1))
    rm -f "$RUN/$c_name.pid"
    echo "$c_secs" >"$LOGDIR/$c_name.secs"
    if [ "$c_kind" = unit ]; then
        report_unit "$c_name" "$c_rc"
    else
        report_script "$c_name" "$c_rc" "$c_secs"
    fi
}

while read -r _secs serial name kind path; do
    if [ "$serial" -eq 1 ]; then
        while [ "$running" -gt 0 ]; do collect; done
        start "$name" "$kind" "$path"
        running=1
        collect
        continue
    fi
    while [ "$running" -ge "$jobs" ]; do collect; done
    start "$name" "$kind" "$path"
    running=$((running + 1))
done <"$queue"
while [ "$running" -gt 0 ]; do collect; done
exec 3>&-

[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
