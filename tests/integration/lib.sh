# lib.sh — what every integration test sources: a private hashi-server
# (free ports, fresh data dir with the demo clinics and users), HTTP and
# DICOM helpers, and assertions that say what was expected and what came.
#
# POSIX sh (tests/run.sh runs the scripts with `sh`).  A test does:
#
#   . "$(dirname "$0")/lib.sh"
#   hashi_setup            # init + demo + start; sets DATA HURL DPORT ...
#   tok=$(login demo-admin)
#   ...assert_eq 200 "$(http GET /dicomweb/studies "$tok")" "QIDO status"
#   pass
#
# Everything lives in $T_TMP (removed at exit unless the test failed, in
# which case its path is printed) and the server is stopped at exit.
# Generated studies are cached by name in $HASHI_TESTDATA/studies/.

set -u

: "${HASHI_ROOT:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${HASHI_BUILD:=$HASHI_ROOT/build}"
: "${HASHI_TOOLS:=$HASHI_ROOT/tests/tools}"
: "${HASHI_TESTDATA:=$HASHI_ROOT/tests/data}"
export TCP_NODELAY=1      # DCMTK's tools turn Nagle off only when asked

PY=/usr/bin/python3
export PYTHONWARNINGS=ignore    # pydicom warns about the invalid UIDs we make
LIBDIR="$HASHI_ROOT/tests/integration"
DW="$LIBDIR/dw.py"
SERVER="$HASHI_BUILD/hashi-server"
DEMO_PASSWORD=demo-password
T_NAME=$(basename "$0" .sh)
mkdir -p "$HASHI_TESTDATA"
T_TMP=$(mktemp -d "$HASHI_TESTDATA/run-$T_NAME.XXXXXX")
T_FAILED=0
HPID=""
T_ATEXIT=""

at_exit() { T_ATEXIT="$T_ATEXIT
$*"; }    # run a command at exit, before the data is removed

log() { echo "[$T_NAME] $*"; }

# Every process this test started, deepest first: a backgrounded shell
# function (`cli NAME watch ... &`) is a subshell whose child is the real
# program, so killing $! alone would leave the program running.
descendants() {
    for _c in $(pgrep -P "$1" 2>/dev/null); do
        descendants "$_c"
        echo "$_c"
    done
}

cleanup() {
    rc=$?
    # Listed first: the at_exit kills may orphan a grandchild.
    _left=$(descendants $$)
    eval "$T_ATEXIT" 2>/dev/null
    hashi_stop 2>/dev/null
    [ -n "$_left" ] && kill $_left 2>/dev/null
    if [ "$rc" -ne 0 ] || [ "$T_FAILED" -ne 0 ]; then
        echo "[$T_NAME] kept $T_TMP for inspection"
        if [ -f "$T_TMP/server.log" ]; then
            echo "---- last lines of server.log"
            tail -15 "$T_TMP/server.log"
        fi
    else
        rm -rf "$T_TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- assertions ----------------------------------------------------------

fail() {
    T_FAILED=1
    echo "[$T_NAME] FAIL: $*" >&2
    exit 1
}

pass() { echo "[$T_NAME] ok"; exit 0; }

assert_eq() {    # expected got what
    [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}

assert_ne() {    # unwanted got what
    [ "$1" != "$2" ] || fail "$3: got '$2', which it must not be"
}

assert_ge() {    # min got what (integers)
    [ "$2" -ge "$1" ] 2>/dev/null || fail "$3: expected >= $1, got '$2'"
}

assert_le() {    # max got what
    [ "$2" -le "$1" ] 2>/dev/null || fail "$3: expected <= $1, got '$2'"
}

assert_in() {    # expected-one-of("200 202") got what
    for want in $1; do [ "$want" = "$2" ] && return 0; done
    fail "$3: expected one of '$1', got '$2'"
}

assert_file_has() {    # file regex what  (grep -E, case-insensitive)
    grep -Eqi -- "$2" "$1" ||
        fail "$3: '$2' not found in $1: $(head -c 400 "$1")"
}

assert_file_lacks() {  # file fixed-string what
    if grep -Fq -- "$2" "$1"; then fail "$3: '$2' found in $1"; fi
}

assert_same_file() {   # a b what
    cmp -s "$1" "$2" || fail "$3: $1 and $2 differ ($(wc -c <"$1") vs \
$(wc -c <"$2") bytes)"
}

# ---- the server ----------------------------------------------------------

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0));
print(s.getsockname()[1])'
}

# hashi_init [DIR]: a new data dir with the demo clinics and users (not
# the demo consults and studies: a test starts from empty inboxes).
hashi_init() {
    DATA=${1:-$T_TMP/data}
    [ -x "$SERVER" ] || fail "$SERVER not built (make build/hashi-server)"
    "$SERVER" init --data "$DATA" >>"$T_TMP/admin.log" 2>&1 ||
        fail "hashi-server init failed: $(tail -3 "$T_TMP/admin.log")"
    "$SERVER" demo --data "$DATA" --accounts-only \
        >>"$T_TMP/admin.log" 2>&1 ||
        fail "hashi-server demo failed: $(tail -3 "$T_TMP/admin.log")"
    [ -f "$DATA/tls/cert.pem" ] || fail "init made no $DATA/tls/cert.pem"
    CACERT="$DATA/tls/cert.pem"
}

# hashi_start [extra server args]: start on fresh ports (kept across a
# restart, so URLs stay valid) and wait for /healthz.
hashi_start() {
    : "${HPORT:=$(free_port)}"
    : "${DPORT:=$(free_port)}"
    HURL="https://127.0.0.1:$HPORT"
    echo "==== start $(date +%T) $*" >>"$T_TMP/server.log"
    "$SERVER" --data "$DATA" --listen "127.0.0.1:$HPORT" \
        --dicom "127.0.0.1:$DPORT" --ae-title HASHI "$@" \
        >>"$T_TMP/server.log" 2>&1 &
    HPID=$!
    i=0
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            --cacert "$CACERT" "$HURL/healthz")
        [ "$code" = 200 ] && break
        kill -0 "$HPID" 2>/dev/null ||
            { HPID=""; fail "hashi-server exited during start-up"; }
        i=$((i + 1))
        [ $i -lt 100 ] || fail "no /healthz 200 within 20 s (last: $code)"
        sleep 0.2
    done
    grep -q "hashi-server listening on https://" "$T_TMP/server.log" ||
        log "note: no 'hashi-server listening on https://' line in the log"
}

hashi_setup() { hashi_init "$@"; hashi_start; }

# hashi_stop: SIGTERM, wait up to 10 s, then SIGKILL.  Returns 1 if it
# needed the SIGKILL.
hashi_stop() {
    [ -n "$HPID" ] || return 0
    kill -TERM "$HPID" 2>/dev/null
    i=0
    while kill -0 "$HPID" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.2; i=$((i + 1))
    done
    if kill -0 "$HPID" 2>/dev/null; then
        kill -KILL "$HPID" 2>/dev/null
        wait "$HPID" 2>/dev/null
        HPID=""
        return 1
    fi
    wait "$HPID" 2>/dev/null
    HPID=""
    return 0
}

hashi_kill9() {
    kill -KILL "$HPID" 2>/dev/null
    wait "$HPID" 2>/dev/null
    HPID=""
}

healthz_ok() {
    _hc=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --cacert "$CACERT" "$HURL/healthz")
    assert_eq 200 "$_hc" "/healthz after $1"
    kill -0 "$HPID" 2>/dev/null || fail "server died after $1"
}

# metric NAME: the value of a Prometheus sample from /metrics (open to
# loopback), or "missing".
metric() {
    curl -s --max-time 5 --cacert "$CACERT" "$HURL/metrics" |
        awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print "missing" }'
}

# ---- HTTP ----------------------------------------------------------------

# http METHOD PATH [TOKEN [curl args...]]: prints the status code; the body
# is in $T_TMP/body, the headers in $T_TMP/headers.
http() {
    _m=$1; _p=$2; shift 2
    _auth=""
    if [ $# -gt 0 ]; then _auth=$1; shift; fi
    if [ -n "$_auth" ]; then
        set -- -H "Authorization: Bearer $_auth" "$@"
    fi
    curl -sS --cacert "$CACERT" -H 'Expect:' -X "$_m" -o "$T_TMP/body" \
        -D "$T_TMP/headers" -w '%{http_code}' --max-time 300 "$@" \
        "$HURL$_p"
}

header() {    # NAME: the value of a response header of the last http call
    tr -d '\r' <"$T_TMP/headers" |
        sed -n "s/^$1: *//Ip" | tail -1
}

# login LOGIN [PASSWORD]: prints the session token.
login() {
    _code=$(http POST /api/login "" -H 'Content-Type: application/json' \
        --data-binary "{\"login\":\"$1\",\"password\":\"${2:-$DEMO_PASSWORD}\"}")
    assert_eq 200 "$_code" "login $1"
    $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' \
        "$T_TMP/body" || fail "login reply has no token: $(cat "$T_TMP/body")"
}

# stow TOKEN FILE...: one STOW-RS request with FILEs as parts; prints the
# status code (body in $T_TMP/body).
stow() {
    _tok=$1; shift
    $PY "$DW" multipart "$T_TMP/stow.body" HashiTestBoundary42 "$@"
    stow_body "$_tok" "$T_TMP/stow.body" HashiTestBoundary42
}

# stow_body TOKEN BODYFILE BOUNDARY [curl args]: send a prepared body.
stow_body() {
    _tok=$1; _body=$2; _b=$3; shift 3
    http POST /dicomweb/studies "$_tok" -T "$_body" "$@" -H \
        "Content-Type: multipart/related; type=\"application/dicom\"; boundary=$_b" \
        -H 'Accept: application/dicom+json'
}

# qido TOKEN PATH_AND_QUERY: QIDO-RS GET, asserts 200 (or 204, which some
# servers give for no match, normalised to an empty array); prints nothing,
# the JSON array is in $T_TMP/body.
qido() {
    _code=$(http GET "$2" "$1" -H 'Accept: application/dicom+json')
    if [ "$_code" = 204 ]; then echo '[]' >"$T_TMP/body"; return; fi
    assert_eq 200 "$_code" "QIDO $2"
}

qido_count() {    # TOKEN PATH: number of objects in the QIDO answer
    qido "$1" "$2"
    $PY "$DW" count "$T_TMP/body"
}

# total_instances TOKEN: instances over all visible studies (sum of
# NumberOfStudyRelatedInstances).
total_instances() {
    qido "$1" "/dicomweb/studies?limit=1000"
    $PY "$DW" values "$T_TMP/body" 00201208 |
        awk '{ n += $1 } END { print n + 0 }'
}

# wado TOKEN ST SE SOP OUTFILE: retrieve one instance, assert one part,
# store the part's bytes in OUTFILE.
wado() {
    _code=$(http GET "/dicomweb/studies/$2/series/$3/instances/$4" "$1" \
        -H 'Accept: multipart/related; type="application/dicom"')
    assert_eq 200 "$_code" "WADO-RS $4"
    _ct=$(header Content-Type)
    case "$_ct" in
        multipart/related*) ;;
        *) fail "WADO-RS $4: Content-Type '$_ct', not multipart/related" ;;
    esac
    rm -rf "$T_TMP/wado.parts"
    _n=$($PY "$DW" split "$_ct" "$T_TMP/body" "$T_TMP/wado.parts") ||
        fail "WADO-RS $4: body is not a valid multipart"
    assert_eq 1 "$_n" "parts in the WADO-RS answer for $4"
    mv "$T_TMP/wado.parts/part0001.dcm" "$5"
}

# ---- DICOM ---------------------------------------------------------------

# study NAME SLICES [gen_study args]: generate once, print the directory.
study() {
    _sn=$1; _dir="$HASHI_TESTDATA/studies/$1"
    _n=$2; shift 2
    if [ ! -f "$_dir/.complete" ]; then
        # Tests run in parallel (tests/run.sh): one makes the study while
        # the others wait on its lock, and it appears whole, by a rename,
        # so nobody reads a half-written file or sees it removed.  What a
        # run cut short left (no .complete) is made again.
        mkdir -p "$HASHI_TESTDATA/studies"
        exec 8>"$_dir.lock"
        flock 8 || fail "cannot lock $_dir.lock"
        if [ ! -f "$_dir/.complete" ]; then
            rm -rf "$_dir"
            _gen=$(mktemp -d "$_dir.gen.XXXXXX")
            $PY "$HASHI_TOOLS/gen_study.py" --slices "$_n" "$@" "$_gen/s" \
                >/dev/null 8>&- ||
                { rm -rf "$_gen"; fail "gen_study.py failed for $_sn"; }
            touch "$_gen/s/.complete"
            mv -T "$_gen/s" "$_dir"
            rm -rf "$_gen"
        fi
        exec 8>&-
        [ -f "$_dir/.complete" ] || fail "study $_sn not in place"
    fi
    echo "$_dir"
}

# store_as AE FILE...: storescu to the server as calling AE AE, or fail.
store_as() {
    _ae=$1; shift
    storescu -aet "$_ae" -aec HASHI 127.0.0.1 "$DPORT" "$@" \
        >>"$T_TMP/storescu.log" 2>&1 ||
        fail "storescu as $_ae: $(tail -3 "$T_TMP/storescu.log")"
}

# uid_of FILE TAG-KEYWORD: one attribute of a file (pydicom).
attr_of() {
    $PY -c 'import sys, pydicom
print(pydicom.dcmread(sys.argv[1], stop_before_pixels=True,
      force=True).get(sys.argv[2], ""))' "$1" "$2"
}

# study_whole TOKEN FILE... (one study, every file of it): the server
# lists exactly these instances in the study, and serves each file's
# dataset back byte for byte (the meta header may differ: DIMSE adds its
# own).
study_whole() {
    _tok=$1; shift
    _st=$(attr_of "$1" StudyInstanceUID)
    assert_eq "$#" "$(qido_count "$_tok" "/dicomweb/studies/$_st/instances")" \
        "instances listed in study $_st"
    _n=$($PY "$DW" verify-wado "$HURL" "$CACERT" "$_tok" dataset "$@") ||
        fail "WADO-RS of study $_st"
    assert_eq "$#" "$_n" "datasets of study $_st served byte for byte"
}

audit_has() {    # ACTION-ERE REGEX what: a line with this action matches
    [ -f "$DATA/audit.log" ] || fail "$3: no $DATA/audit.log"
    grep -E "\"action\": *\"($1)\"" "$DATA/audit.log" | grep -Eq -- "$2" ||
        fail "$3: no audit line with action $1 matching '$2' \
(last lines: $(tail -3 "$DATA/audit.log"))"
}

# ---- hashi.v1 and the REST twin (ws_*.sh, rest_*.sh) ----------------------

# wsc COMMAND [options]: the test WebSocket client (see wsclient.py).
wsc() { $PY "$LIBDIR/wsclient.py" "$HURL" "$CACERT" "$@"; }

# api METHOD PATH TOKEN [JSON]: a JSON request; prints the status code, the
# body is in $T_TMP/body.
api() {
    if [ $# -ge 4 ]; then
        http "$1" "$2" "$3" -H 'Content-Type: application/json' \
            --data-binary "$4"
    else
        http "$1" "$2" "$3"
    fi
}

# jget FILE EXPR: a Python expression over the JSON document in FILE (d).
jget() {
    $PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$1" "$2" || fail "jget $2 on $(head -c 300 "$1")"
}

# jlines FILE EXPR: the same over a file of JSON lines (L, a list; E, its
# events; W, its welcome or None).
jlines() {
    $PY -c 'import json, sys
L = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
E = [m for m in L if m.get("type") == "event"]
W = next((m for m in L if m.get("type") == "welcome"), None)
print(eval(sys.argv[2]))' "$1" "$2" || fail "jlines $2 on $(head -c 300 "$1")"
}

# user_add LOGIN CLINIC ROLE [SPECIALTY]: a user with password
# $DEMO_PASSWORD (a clinic of that name is added first if missing).
user_add() {
    "$SERVER" clinic add --data "$DATA" --name "$2" --kind rural \
        >>"$T_TMP/admin.log" 2>&1
    set -- "$1" "$2" "$3" ${4:+--specialty "$4"}
    _l=$1; _c=$2; _r=$3; shift 3
    echo "$DEMO_PASSWORD" | "$SERVER" user add --data "$DATA" --login "$_l" \
        --clinic "$_c" --role "$_r" "$@" >>"$T_TMP/admin.log" 2>&1 ||
        fail "user add $_l: $(tail -2 "$T_TMP/admin.log")"
}

# two_clinics: a started server with the demo data plus req-b, a requester
# of "Clinic B"; session tokens in $R (demo-requester, clinic A), $B
# (req-b), $N1 and $N2 (demo-neuro, demo-neuro2) and $CARDIO (demo-cardio).
two_clinics() {
    hashi_init
    user_add req-b "Clinic B" requester
    hashi_start
    R=$(login demo-requester)
    B=$(login req-b)
    N1=$(login demo-neuro)
    N2=$(login demo-neuro2)
    CARDIO=$(login demo-cardio)
}

# wait_file FILE [SECONDS]: until FILE exists.
wait_file() {
    _i=0
    while [ ! -e "$1" ]; do
        _i=$((_i + 1))
        [ $_i -lt $((${2:-10} * 20)) ] || fail "no $1 within ${2:-10} s"
        sleep 0.05
    done
}

# ---- the hashi CLI (consult_*.sh, offline_*.sh, cli_*.sh) ----------------

HASHI="$HASHI_BUILD/hashi"

# cli NAME ARGS...: the hashi CLI with NAME's own state directory
# ($T_TMP/cli-NAME as HASHI_CONFIG_DIR), so several users run side by side.
cli() {
    _n=$1; shift
    HASHI_CONFIG_DIR="$T_TMP/cli-$_n" "$HASHI" "$@"
}

# cli_bg NAME ARGS...: NAME's hashi in the background, its own pid in $BG
# (`cli ... &` would give the pid of a subshell, and killing that would
# leave hashi running).
cli_bg() {
    _n=$1; shift
    HASHI_CONFIG_DIR="$T_TMP/cli-$_n" "$HASHI" "$@" &
    BG=$!
}

# cli_login NAME LOGIN: log NAME's CLI in as LOGIN ($DEMO_PASSWORD).
cli_login() {
    [ -x "$HASHI" ] || fail "$HASHI not built (make build/hashi)"
    echo "$DEMO_PASSWORD" | cli "$1" login --server "$HURL" --user "$2" \
        --password-stdin --cacert "$CACERT" >>"$T_TMP/cli.log" 2>&1 ||
        fail "hashi login $2: $(tail -2 "$T_TMP/cli.log")"
}

# oncall_set SPECIALTY LOGIN...: the specialty's on-call list, in order.
oncall_set() {
    _s=$1; shift
    "$SERVER" oncall set --data "$DATA" --specialty "$_s" "$@" \
        >>"$T_TMP/admin.log" 2>&1 ||
        fail "oncall set $_s: $(tail -2 "$T_TMP/admin.log")"
}

# wait_grep FILE REGEX [SECONDS]: until a line of FILE matches (grep -E).
wait_grep() {
    _i=0
    until grep -Eq -- "$2" "$1" 2>/dev/null; do
        _i=$((_i + 1))
        [ $_i -lt $((${3:-20} * 20)) ] ||
            fail "no line matching '$2' in $1 within ${3:-20} s: \
$(tail -c 400 "$1" 2>/dev/null)"
        sleep 0.05
    done
}

# wait_pid PID [SECONDS]: until the background process ends; its exit
# status is in $WRC (not printed: call it directly, not in $(...)).
wait_pid() {
    _i=0
    while kill -0 "$1" 2>/dev/null; do
        _i=$((_i + 1))
        if [ $_i -ge $((${2:-20} * 20)) ]; then
            kill "$1" 2>/dev/null
            fail "process $1 still running after ${2:-20} s"
        fi
        sleep 0.05
    done
    wait "$1"
    WRC=$?
}

# ---- a poor link (tests/tools/linkemu.py) --------------------------------

LINKEMU="$HASHI_TOOLS/linkemu.py"

# linkemu_start NAME TARGET-PORT [linkemu args]: a link emulator named NAME
# on a free loopback port ($LINK_PORT) in front of 127.0.0.1:TARGET-PORT,
# e.g. `linkemu_start wan "$HPORT" --rate 2mbit --delay 150ms`; stopped at
# exit.  Its log is $T_TMP/linkemu-NAME.log.
linkemu_start() {
    _ln=$1; _lt=$2; shift 2
    _llog="$T_TMP/linkemu-$_ln.log"
    rm -f "$T_TMP/linkemu-$_ln.json"
    : >"$_llog"
    $PY "$LINKEMU" --listen 127.0.0.1:0 \
        --target "127.0.0.1:$_lt" --stats "$T_TMP/linkemu-$_ln.json" "$@" \
        2>"$_llog" &
    echo $! >"$T_TMP/linkemu-$_ln.pid"
    at_exit "kill $! 2>/dev/null"
    _i=0
    until grep -q 'listening on' "$_llog"; do
        kill -0 "$(cat "$T_TMP/linkemu-$_ln.pid")" 2>/dev/null ||
            fail "linkemu $_ln did not start: $(tail -3 "$_llog")"
        _i=$((_i + 1))
        [ $_i -lt 200 ] || fail "linkemu $_ln not listening within 10 s"
        sleep 0.05
    done
    LINK_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' \
        "$_llog")
}

# linkemu_stop NAME: stop it (SIGTERM) and keep its final statistics.
linkemu_stop() {
    kill -TERM "$(cat "$T_TMP/linkemu-$1.pid")" 2>/dev/null
    wait_pid "$(cat "$T_TMP/linkemu-$1.pid")" 10
    [ -s "$T_TMP/linkemu-$1.json" ] ||
        fail "linkemu $1 left no statistics: $(tail -3 "$T_TMP/linkemu-$1.log")"
}

# linkemu_stat NAME KEY: one figure of a stopped emulator (up_bytes,
# down_bytes, connections, refused_while_down, cuts, target_errors).
linkemu_stat() { jget "$T_TMP/linkemu-$1.json" "d['$2']"; }
# ---- hashi-gateway (gateway_*.sh) ------------------------------------------

GW="$HASHI_BUILD/hashi-gateway"

# gw_token NAME: a gateway of the demo rural clinic; its token file path.
gw_token() {
    "$SERVER" gateway add --data "$DATA" --clinic "Demo Rural Clinic" \
        --name "$1" >"$T_TMP/gw-$1.token" 2>>"$T_TMP/admin.log" ||
        fail "gateway add $1: $(tail -2 "$T_TMP/admin.log")"
    echo "$T_TMP/gw-$1.token"
}

# gw_start URL TOKENFILE [args]: hashi-gateway on $GWPORT (kept across
# restarts) with the spool $T_TMP/spool, log $T_TMP/gw.log, pid $GWPID;
# returns once its DICOM port accepts connections.
gw_start() {
    : "${GWPORT:=$(free_port)}"
    _u=$1; _t=$2; shift 2
    echo "==== start $(date +%T) $*" >>"$T_TMP/gw.log"
    "$GW" --server "$_u" --token-file "$_t" --spool "$T_TMP/spool" \
        --dicom "127.0.0.1:$GWPORT" --ae-title HASHIGW \
        ${CACERT:+--cacert "$CACERT"} --log-level debug "$@" \
        >>"$T_TMP/gw.log" 2>&1 &
    GWPID=$!
    at_exit "kill -KILL $GWPID"
    wait_port "$GWPORT" "$GWPID" "$T_TMP/gw.log"
}

# wait_port PORT PID LOG: until PORT accepts connections (fails if PID
# ends first, quoting LOG).
wait_port() {
    _i=0
    until $PY -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
            "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || fail "$(basename "$3" .log) exited: \
$(tail -3 "$3")"
        _i=$((_i + 1))
        [ $_i -lt 100 ] || fail "nothing listens on $1 after 20 s"
        sleep 0.2
    done
}

gw_kill9() { kill -KILL "$GWPID" 2>/dev/null; wait "$GWPID" 2>/dev/null; }

# gw_status: `hashi-gateway status --json` into $T_TMP/status.json.
gw_status() {
    "$GW" status --spool "$T_TMP/spool" --json >"$T_TMP/status.json" ||
        fail "hashi-gateway status failed"
}

# gw_wait_done N [SECONDS]: until the spool counts N done.
gw_wait_done() {
    _i=0
    while :; do
        gw_status
        [ "$(jget "$T_TMP/status.json" 'd["done"]')" -ge "$1" ] && return 0
        _i=$((_i + 1))
        [ $_i -lt $((${2:-60} * 4)) ] || fail "not $1 done within \
${2:-60} s: $(cat "$T_TMP/status.json")"
        sleep 0.25
    done
}

# ---- Web Push (push_*.sh) --------------------------------------------------

# push_emu_start: push_emulator.py over TLS on a free loopback port, with
# its own CA-less certificate for 127.0.0.1.  Sets PUSH_PORT, PUSH_URL
# (its origin), PUSH_CA (start hashi-server with --push-ca "$PUSH_CA"),
# PUSH_LOG (one JSON line per push received) and PUSH_KEYS (the device's
# {"p256dh", "auth"}).
push_emu_start() {
    _pd="$T_TMP/push"
    mkdir -p "$_pd"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$_pd/key.pem" -out "$_pd/cert.pem" 2>>"$_pd/openssl.log" ||
        fail "push emulator certificate: $(tail -2 "$_pd/openssl.log")"
    PUSH_PORT=$(free_port)
    PUSH_URL="https://127.0.0.1:$PUSH_PORT"
    PUSH_CA="$_pd/cert.pem"
    PUSH_LOG="$_pd/received.jsonl"
    PUSH_KEYS="$_pd/keys.json"
    : >"$PUSH_LOG"
    $PY "$LIBDIR/push_emulator.py" --port "$PUSH_PORT" --cert "$PUSH_CA" \
        --key "$_pd/key.pem" --keys "$PUSH_KEYS" --log "$PUSH_LOG" "$@" \
        >"$_pd/emulator.log" 2>&1 &
    at_exit "kill $! 2>/dev/null"
    wait_grep "$_pd/emulator.log" "push emulator on" 10
}

# push_subscribe TOKEN PATH: subscribe the emulator's device at
# $PUSH_URL/PATH for TOKEN's user; prints the status code.
push_subscribe() {
    api POST /api/push/subscriptions "$1" "$($PY -c 'import json, sys
k = json.load(open(sys.argv[1]))
print(json.dumps({"endpoint": sys.argv[2],
                  "keys": {"p256dh": k["p256dh"], "auth": k["auth"]}}))' \
        "$PUSH_KEYS" "$PUSH_URL/$2")"
}
