#!/bin/sh
# bench/push.sh — the push fan-out benchmark of the consults issue.
#
# A fresh hashi-server (init + demo + N specialists of specialty
# "loadtest", no on-call list, so a case.new goes to every one of them);
# bench/push/loadclient opens N hashi.v1 WSS connections, one per
# specialist, and once all are welcomed posts cases as demo-requester at
# RATE/s for DURATION s; it reports the delivery latency of every (case,
# client) pair, missing deliveries, and the server's RSS and CPU.  The
# run's figures are added to bench/push/runs.tsv and the "Push fan-out"
# section of bench/RESULTS.md is rewritten from that file (bench/ingest.py
# rewrites RESULTS.md as a whole, so the section is rebuilt every run).
#
# The anchor, in the same run: Mosquitto (Debian's) with a TLS WebSocket
# listener and the same dev certificate; loadclient --mqtt opens as many
# MQTT 3.1.1 subscribers (QoS 1, clean session off) and publishes QoS 1
# messages of the hashi event's mean size at the same rate.  Its row in
# runs.tsv has ack "mqtt" and rev "mosquitto".  Debian 12's 2.0.11
# refuses to start with a WebSocket listener alone (its libwebsockets
# lacks LWS_WITH_EXTERNAL_POLL; eclipse-mosquitto/mosquitto#2578), so an
# unused plain MQTT listener on loopback is opened too.
#
# Runs inside a private network namespace with only loopback (unshare
# --net) when it can.  About 1.5 minutes; bounded under 3 (the client
# stops creating at DURATION even if the server falls behind the rate).
#
#   sh bench/push.sh          1000 clients, 10 cases/s, 30 s, two runs:
#                             acks every 1 s, then an ack per event
#   PUSH_CLIENTS=200 PUSH_RATE=10 PUSH_DURATION=10 PUSH_ACKS="each"
#   PUSH_NO_RECORD=1          print only, record nothing
#
# Exit status: 0 all delivered; 1 deliveries missing or creates failed;
# 2 the run could not be made.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="${HASHI_BUILD:-$ROOT/build}"
SERVER="$BUILD/hashi-server"
CLIENTS="${PUSH_CLIENTS:-1000}"
IDLE_CLIENTS="${PUSH_IDLE_CLIENTS:-10000}"     # load (c): idle sessions
IDLE_S="${PUSH_IDLE_S:-60}"
B_CLIENTS="${PUSH_B_CLIENTS:-10000}"           # load (b): sessions
B_GROUP=10                                     # ... recipients a case
B_RATE="${PUSH_B_RATE:-100}"
B_DURATION="${PUSH_B_DURATION:-10}"
CONNECT_S="${PUSH_CONNECT_S:-600}"             # all sessions up within
RATE="${PUSH_RATE:-10}"
DURATION="${PUSH_DURATION:-30}"
WORK="$ROOT/bench/work/push"
RESULTS="$ROOT/bench/RESULTS.md"
RUNS="$ROOT/bench/push/runs.tsv"
IDLE_RUNS="$ROOT/bench/push/idle.tsv"

T0=$(date +%s)
say() { echo "push: [$(($(date +%s) - T0)) s] $*"; }
# r KEY: the value of "RESULT KEY=" in the current run's $out/client.out.
r() { sed -n "s/^RESULT $1=//p" "$out/client.out"; }
die() { echo "push: $*" >&2; exit 2; }

if [ -z "${HASHI_PUSH_NETNS:-}" ]; then
    [ -x "$SERVER" ] || die "$SERVER not built (make)"
    make --no-print-directory -s -C "$ROOT/bench/push" ||
        die "cannot build bench/push"
    if unshare --net true 2>/dev/null; then
        export HASHI_PUSH_NETNS="private namespace (unshare --net), loopback only"
        exec unshare --net sh -c 'ip link set lo up && exec sh "$0"' "$0"
    fi
    echo "push: cannot unshare the network namespace (not root?);" \
        "running on the host's loopback" >&2
    export HASHI_PUSH_NETNS="host network (unshare failed)"
fi

# The connections on each side, plus the server's files.
USERS=$CLIENTS
[ "$IDLE_CLIENTS" -le "$USERS" ] || USERS=$IDLE_CLIENTS
[ "$B_CLIENTS" -le "$USERS" ] || USERS=$B_CLIENTS
want=$((USERS + 256))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want" 2>/dev/null ||
    ulimit -n "$(ulimit -Hn)" ||
    die "cannot raise the open-file limit to $want"
[ "$(ulimit -n)" -ge "$want" ] ||
    die "open-file limit $(ulimit -n) < $want; lower PUSH_CLIENTS"

if [ "$HASHI_PUSH_NETNS" = "host network (unshare failed)" ]; then
    PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket();
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
else
    PORT=8443
fi

rm -rf "$WORK"
mkdir -p "$WORK"
TEMPLATE="$WORK/template"
SPID=""
stop_server() {
    if [ -n "$SPID" ]; then
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
        SPID=""
    fi
}
trap stop_server EXIT

# wait_up NAME LOG CMD...: until CMD succeeds (at most 20 s), or the
# server $SPID exits.
wait_up() {
    name=$1 log=$2
    shift 2
    i=0
    until "$@" 2>/dev/null; do
        kill -0 "$SPID" 2>/dev/null ||
            { SPID=""; die "$name exited: $(tail -5 "$log")"; }
        i=$((i + 1))
        [ $i -lt 100 ] || die "$name not up within 20 s"
        sleep 0.2
    done
}

# start_hashi DATA LOG: a hashi-server on DATA, up when /healthz answers.
start_hashi() {
    "$SERVER" --data "$1" --listen "127.0.0.1:$PORT" --dicom 127.0.0.1:0 \
        --log-level warn >"$2" 2>&1 &
    SPID=$!
    wait_up hashi-server "$2" curl -s -o /dev/null --max-time 2 \
        --cacert "$1/tls/cert.pem" "https://127.0.0.1:$PORT/healthz"
}
trap 'exit 130' INT TERM

t0=$(date +%s)
"$SERVER" init --data "$TEMPLATE" >"$WORK/admin.log" 2>&1 ||
    die "init failed: $(tail -3 "$WORK/admin.log")"
"$SERVER" demo --data "$TEMPLATE" --accounts-only >>"$WORK/admin.log" 2>&1 ||
    die "demo failed: $(tail -3 "$WORK/admin.log")"
"$BUILD/bench/mkusers" --data "$TEMPLATE" --count "$CLIENTS" \
    --specialty loadtest --clinic "Demo City Hospital" \
    --requester demo-requester --out "$WORK/tokens" 2>>"$WORK/admin.log" ||
    die "mkusers failed: $(tail -3 "$WORK/admin.log")"
say "data: demo + $CLIENTS specialists with sessions, $(($(date +%s) - t0)) s"

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -z "$(git -C "$ROOT" status --porcelain -- server proto 2>/dev/null)" ] ||
    rev="$rev+"
HEADER="date	rev	clients	cases_ok	rate	ack	p50_ms	p99_ms	max_ms	early_pct	commit_p50_ms	commit_p99_ms	send_p99_ms	create_p50_ms	create_p99_ms	missing	duplicates	rss_mb	cpu_pct	client_cpu	connect_s	load	recipients"
worst=0

# record_run: the run whose RESULT lines r() reads, as a row of runs.tsv
# (unless PUSH_NO_RECORD).
record_run() {
    [ -z "${PUSH_NO_RECORD:-}" ] || return 0
    [ -f "$RUNS" ] || printf '%s\n' "$HEADER" >"$RUNS"
    line="$(date -u +%Y-%m-%dT%H:%MZ)	$rev"
    for k in clients cases_ok rate ack p50_ms p99_ms max_ms early_pct \
        commit_p50_ms commit_p99_ms send_p99_ms create_p50_ms create_p99_ms \
        missing duplicates rss_max_mb cpu_pct client_cpu_pct connect_s; do
        line="$line	$(r $k)"
    done
    printf '%s\t%s\t%s\n' "$line" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$(r per_case)" >>"$RUNS"
}

# run_one ACK: one measured run on a fresh copy of the template.
run_one() {
    ack=$1
    case "$ack" in
        each) ack_ms=0 ;;
        1s) ack_ms=1000 ;;
        *) die "PUSH_ACKS: 'each' or '1s', not '$ack'" ;;
    esac
    out="$WORK/$ack"
    mkdir -p "$out"
    DATA="$out/data"
    cp -a "$TEMPLATE" "$DATA"
    CA="$DATA/tls/cert.pem"
    sync
    start_hashi "$DATA" "$out/server.log"
    say "---- acks: $ack; hashi-server pid $SPID on 127.0.0.1:$PORT" \
        "($HASHI_PUSH_NETNS)"

    set +e
    timeout $((CONNECT_S + 100)) "$BUILD/bench/loadclient" --port "$PORT" \
        --ca "$CA" \
        --tokens "$WORK/tokens" --clients "$CLIENTS" --rate "$RATE" \
        --duration "$DURATION" --server-pid "$SPID" --ack-ms "$ack_ms" \
        --connect-s "$CONNECT_S" \
        >"$out/client.out" 2>"$out/client.err"
    rc=$?
    set -e
    grep -v '^RESULT ' "$out/client.out" || true
    if [ -s "$out/client.err" ]; then
        say "client messages (first 10 of $(wc -l <"$out/client.err")):"
        head -10 "$out/client.err"
    fi
    kill -0 "$SPID" 2>/dev/null ||
        say "WARNING: hashi-server died during the run"
    say "client done (status $rc); stopping the server"
    stop_server
    if [ $rc -ge 2 ]; then
        say "the run failed (loadclient status $rc); server log:" \
            "$out/server.log"
        tail -5 "$out/server.log"
        exit 2
    fi
    [ $rc -le $worst ] || worst=$rc

    verdict=$(awk -v c="$(r create_p99_ms)" -v m="$(r missing)" \
        -v ok="$(r cases_ok)" -v want="$(r cases)" 'BEGIN {
        v = (c <= 20 ? "create p99 ok" : "create p99 OVER") ", " \
            (m == 0 ? "none missing" : m " MISSING");
        if (ok < want) v = v ", only " ok " of " want " cases created";
        print v }')
    say "targets (a) (create p99 <= 20 ms, 0 missing; commit->receipt" \
        "p99 against Mosquitto's below): $verdict"

    record_run
}

# runs.tsv from before the recipients column gets it (those rows: every
# client a recipient, left empty).
[ ! -f "$RUNS" ] || head -1 "$RUNS" | grep -q 'recipients$' ||
    sed -i '1s/$/\trecipients/' "$RUNS"

for ack in ${PUSH_ACKS:-1s each}; do
    run_one "$ack"
done

# run_mqtt: the same load on Mosquitto, messages of the last hashi run's
# mean event size.
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
run_mqtt() {
    [ -x "$MOSQUITTO" ] || {
        say "no $MOSQUITTO (sh scripts/deps.sh --bench): anchor skipped"
        return 0
    }
    out="$WORK/mqtt"
    mkdir -p "$out"
    size=$(sed -n 's/^RESULT event_bytes=//p' "$WORK/$ack/client.out")
    [ -n "$size" ] && [ "$size" -gt 0 ] || size=700
    cp "$TEMPLATE/tls/cert.pem" "$TEMPLATE/tls/key.pem" "$out/"
    MPORT=$((PORT + 1))
    cat >"$out/mosquitto.conf" <<EOC
user $(id -un)
persistence false
allow_anonymous true
max_queued_messages 100000
max_inflight_messages 256
log_dest stderr
log_type error
log_type warning
listener $((MPORT + 1)) 127.0.0.1
listener $MPORT 127.0.0.1
protocol websockets
certfile $out/cert.pem
keyfile $out/key.pem
EOC
    "$MOSQUITTO" -c "$out/mosquitto.conf" >"$out/server.log" 2>&1 &
    SPID=$!
    wait_up mosquitto "$out/server.log" /usr/bin/python3 -c 'import socket
import sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$MPORT"
    say "---- anchor: $($MOSQUITTO -h 2>&1 | head -1), pid $SPID," \
        "wss on 127.0.0.1:$MPORT, QoS 1, $size-byte messages"
    set +e
    timeout 100 "$BUILD/bench/loadclient" --mqtt 1 --msg-size "$size" \
        --port "$MPORT" --ca "$out/cert.pem" --tokens "$WORK/tokens" \
        --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" \
        --server-pid "$SPID" --ack-ms 0 >"$out/client.out" 2>"$out/client.err"
    rc=$?
    set -e
    grep -v '^RESULT ' "$out/client.out" | sed 's/cases created/messages published/' || true
    [ -s "$out/client.err" ] && head -10 "$out/client.err"
    stop_server
    [ $rc -lt 2 ] || { say "the Mosquitto run failed (status $rc)"; return 0; }
    mq=$(r commit_p99_ms)
    for a in ${PUSH_ACKS:-1s each}; do
        hp=$(sed -n 's/^RESULT commit_p99_ms=//p' "$WORK/$a/client.out")
        say "target (a): commit->receipt p99 hashi (acks $a) $hp ms" \
            "<= Mosquitto $mq ms: $(awk -v h="$hp" -v m="$mq" \
            'BEGIN { print (h <= m ? "met" : "MISSED") }')"
    done
    [ -z "${PUSH_NO_RECORD:-}" ] || return 0
    line="$(date -u +%Y-%m-%dT%H:%MZ)	mosquitto"
    for k in clients cases_ok rate; do
        line="$line	$(r $k)"
    done
    line="$line	mqtt"
    for k in p50_ms p99_ms max_ms early_pct commit_p50_ms commit_p99_ms \
        send_p99_ms create_p50_ms create_p99_ms missing duplicates \
        rss_max_mb cpu_pct client_cpu_pct connect_s; do
        line="$line	$(r $k)"
    done
    printf '%s\t%s\t%s\n' "$line" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$(r clients)" >>"$RUNS"
}
[ -n "${PUSH_NO_MQTT:-}" ] || run_mqtt

# big_run SECONDS ARGS...: loadclient with ARGS against the server $SPID
# on $DATA with $out/tokens, allowed CONNECT_S + SECONDS; its output in
# $out/client.out (printed but for the RESULT lines), status in rc; the
# server is stopped after.
big_run() {
    limit=$(($1 + CONNECT_S))
    shift
    set +e
    timeout "$limit" "$BUILD/bench/loadclient" --port "$PORT" \
        --ca "$DATA/tls/cert.pem" --tokens "$out/tokens" \
        --server-pid "$SPID" --connect-s "$CONNECT_S" "$@" \
        >"$out/client.out" 2>"$out/client.err"
    rc=$?
    set -e
    grep -v '^RESULT ' "$out/client.out" || true
    [ ! -s "$out/client.err" ] || head -5 "$out/client.err"
    stop_server
}

# run_groups: load (b), B_CLIENTS sessions, B_RATE cases/s for B_DURATION
# s, each case to B_GROUP of them (mkusers/loadclient --group-size: the
# users are specialists of B_CLIENTS/B_GROUP specialties, the cases go to
# them in turn).  Targets: commit->receipt p99 <= 20 ms, 0 missing.  Its
# row in runs.tsv has recipients B_GROUP.
run_groups() {
    out="$WORK/groups"
    mkdir -p "$out"
    DATA="$out/data"
    "$SERVER" init --data "$DATA" >>"$WORK/admin.log" 2>&1 &&
        "$SERVER" demo --data "$DATA" --accounts-only \
            >>"$WORK/admin.log" 2>&1 &&
        "$BUILD/bench/mkusers" --data "$DATA" --count "$B_CLIENTS" \
            --specialty grp --group-size "$B_GROUP" \
            --clinic "Demo City Hospital" --requester demo-requester \
            --out "$out/tokens" 2>>"$WORK/admin.log" ||
        die "groups data: $(tail -3 "$WORK/admin.log")"
    sync
    start_hashi "$DATA" "$out/server.log"
    say "---- (b): $B_CLIENTS sessions, $B_RATE cases/s for $B_DURATION s," \
        "$B_GROUP recipients each"
    big_run $((B_DURATION + 100)) --clients "$B_CLIENTS" --specialty grp \
        --group-size "$B_GROUP" --rate "$B_RATE" --duration "$B_DURATION" \
        --ack-ms 1000
    [ $rc -lt 2 ] || { say "the (b) run failed (status $rc)"; return 0; }
    [ $rc -le $worst ] || worst=$rc
    say "targets (b) (commit->receipt p99 <= 20 ms, 0 missing):" \
        "$(awk -v p="$(r commit_p99_ms)" -v m="$(r missing)" 'BEGIN {
        print (p <= 20 ? "p99 ok" : "p99 OVER") ", " \
            (m == 0 ? "none missing" : m " MISSING") }')"
    record_run
}
[ "$B_CLIENTS" -eq 0 ] || run_groups

# run_idle: load (c), IDLE_CLIENTS hashi.v1 sessions doing nothing for
# IDLE_S seconds (the server's keep-alive pings included): its CPU over
# that time and its RSS.  Targets: <= 2 % of a core, <= 256 MB.
run_idle() {
    out="$WORK/idle"
    mkdir -p "$out"
    # Its own users: added to the template's specialty they would be
    # recipients of the cases of load (a).
    DATA="$out/data"
    "$SERVER" init --data "$DATA" >>"$WORK/admin.log" 2>&1 &&
        "$SERVER" demo --data "$DATA" >>"$WORK/admin.log" 2>&1 &&
        "$BUILD/bench/mkusers" --data "$DATA" --count "$IDLE_CLIENTS" \
            --specialty idletest --clinic "Demo City Hospital" \
            --requester demo-requester --out "$out/tokens" \
            2>>"$WORK/admin.log" ||
        die "idle data: $(tail -3 "$WORK/admin.log")"
    start_hashi "$DATA" "$out/server.log"
    say "---- idle: $IDLE_CLIENTS sessions for $IDLE_S s"
    big_run $((IDLE_S + 100)) --clients "$IDLE_CLIENTS" --idle "$IDLE_S"
    [ $rc -eq 0 ] || { say "the idle run failed (status $rc)"; return 0; }
    say "targets (c) (CPU <= 2 %, RSS <= 256 MB): $(awk -v c="$(r idle_cpu_pct)" \
        -v m="$(r idle_rss_mb)" 'BEGIN { print (c <= 2 ? "CPU ok" : "CPU OVER") \
        ", " (m <= 256 ? "RSS ok" : "RSS OVER") }')"
    [ -z "${PUSH_NO_RECORD:-}" ] || return 0
    [ -f "$IDLE_RUNS" ] ||
        printf 'date\trev\tsessions\tidle_s\tcpu_pct\trss_mb\tdropped\tload\n' \
            >"$IDLE_RUNS"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
        "$rev" "$(r idle_clients)" "$(r idle_s)" "$(r idle_cpu_pct)" \
        "$(r idle_rss_mb)" "$(r idle_dropped)" \
        "$(cut -d' ' -f1 /proc/loadavg)" >>"$IDLE_RUNS"
}
[ "$IDLE_CLIENTS" -eq 0 ] || run_idle

if [ -z "${PUSH_NO_RECORD:-}" ]; then
    /usr/bin/python3 "$ROOT/bench/push/section.py" "$RUNS" "$RESULTS" \
        "$IDLE_RUNS"
    say "recorded in $RUNS and $RESULTS"
fi
exit $worst
