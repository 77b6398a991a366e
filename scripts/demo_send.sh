#!/bin/sh
# What `make demo-send` calls: the demo's live scenario.  A simulated CT
# at the demo rural clinic makes a new head study (hashi-server demo
# --live-study: synthetic, a bleed, fresh UIDs each run) and sends it by
# C-STORE (storescu) to the clinic's hashi-gateway on loopback, which
# forwards it over an emulated slow link that breaks once
# (tests/tools/linkemu.py in front of the server); once the gateway has
# announced the study, demo-requester makes it a STAT neurology case
# (`hashi send --study`), so a specialist page that is open sees the case
# arrive announcing its images, the preview first, then "N of M" fill up.
#
#   scripts/demo_send.sh [DATA_DIR]     # the running server's data dir
#
# Start the server first (`make run`, another terminal).  HASHI_PORT: its
# HTTPS port (default 8443).  DEMO_LINK: the link's linkemu.py options
# (default 4 Mbit/s, 150 ms each way, one cut after 5 MiB, 2 s outage).
# Everything stays in DATA/demo-live/: the study, the gateway's token
# (gateway demo-ct-gateway of Demo Rural Clinic, made on the first run),
# spool and log (gateway.log), the CLI's state, the link's log and its
# statistics (link.json).  Prints the case id last.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data}
PORT=${HASHI_PORT:-8443}
LINK=${DEMO_LINK:---rate 4mbit --delay 150ms --cut-after 5M --outage 2s}
SERVER="$ROOT/build/hashi-server"
HASHI="$ROOT/build/hashi"
GATEWAY="$ROOT/build/hashi-gateway"
WORK="$DATA/demo-live"
CACERT="$DATA/tls/cert.pem"
PY=/usr/bin/python3

say() { echo "demo-send: $*" >&2; }

for b in "$SERVER" "$HASHI" "$GATEWAY"; do
    [ -x "$b" ] || { say "$b is missing; run 'make' first"; exit 2; }
done
command -v storescu >/dev/null ||
    { say "storescu (DCMTK) is missing; run 'make deps'"; exit 2; }
if ! curl -sf -o /dev/null --max-time 5 --cacert "$CACERT" \
    "https://127.0.0.1:$PORT/healthz"; then
    say "no Hashi server at https://127.0.0.1:$PORT (start 'make run'" \
        "first, or set HASHI_PORT)"
    exit 2
fi

rm -rf "$WORK/study"
mkdir -p "$WORK"
say "the CT at Demo Rural Clinic is writing a new head study..."
STUDY=$("$SERVER" demo --live-study "$WORK/study" 2>"$WORK/ct.log") ||
    { cat "$WORK/ct.log" >&2; exit 2; }
N=$(ls "$WORK/study" | wc -l)

# The clinic's gateway: its token made once, kept with the demo's files.
if [ ! -s "$WORK/gw.token" ]; then
    "$SERVER" gateway add --data "$DATA" --clinic "Demo Rural Clinic" \
        --name demo-ct-gateway >"$WORK/gw.token" 2>"$WORK/admin.log" ||
    "$SERVER" gateway add --data "$DATA" --clinic "Demo Rural Clinic" \
        --name "demo-ct-gateway-$(date +%s)" >"$WORK/gw.token" \
        2>"$WORK/admin.log" ||
        { say "gateway add: $(cat "$WORK/admin.log")"; exit 2; }
fi

# The link, then the gateway behind it: gone when this script ends,
# however it ends.
GPID=
rm -f "$WORK/link.json"
# shellcheck disable=SC2086
$PY "$ROOT/tests/tools/linkemu.py" --listen 127.0.0.1:0 \
    --target "127.0.0.1:$PORT" --stats "$WORK/link.json" $LINK \
    2>"$WORK/link.log" &
LPID=$!
trap 'kill $GPID $LPID 2>/dev/null; wait $GPID $LPID 2>/dev/null || true' \
    EXIT
trap 'exit 130' INT TERM
# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
    _what=$1; _n=$(($2 * 20)); shift 2
    until "$@" 2>/dev/null; do
        _n=$((_n - 1))
        [ $_n -gt 0 ] || { say "$_what: not within the time allowed"
                           exit 2; }
        sleep 0.05
    done
}
wait_for "the link emulator" 10 grep -q 'listening on' "$WORK/link.log"
LPORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' \
    "$WORK/link.log")
say "the clinic's link: $LINK"
# The requester logs in before the images make the link busy.
export HASHI_CONFIG_DIR="$WORK/cli"
echo demo-password | "$HASHI" login --server "https://127.0.0.1:$LPORT" \
    --user demo-requester --password-stdin --cacert "$CACERT" >/dev/null

GWPORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
"$GATEWAY" --server "https://127.0.0.1:$LPORT" --token-file "$WORK/gw.token" \
    --spool "$WORK/spool" --dicom "127.0.0.1:$GWPORT" --ae-title HASHIGW \
    --cacert "$CACERT" >>"$WORK/gateway.log" 2>&1 &
GPID=$!
wait_for "hashi-gateway on port $GWPORT" 20 $PY -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
    "$GWPORT"

say "the CT sends its $N images to the clinic's hashi-gateway..."
storescu -aet DEMO_CT -aec HASHIGW 127.0.0.1 "$GWPORT" "$WORK/study" \
    +sd >"$WORK/storescu.log" 2>&1 ||
    { say "storescu: $(tail -3 "$WORK/storescu.log")"; exit 2; }
wait_for "the server's answer to the announcement" 60 \
    grep -q "study $STUDY: the server expects" "$WORK/gateway.log"

CASE=$("$HASHI" send --to neurology --priority stat --patient-age 72 \
    --patient-sex F \
    --history "DEMO (synthetic patient). Found confused at home, right-sided
weakness, last seen well 3 hours ago. On apixaban." \
    --question "Bleed? Reverse the anticoagulant and transfer?" \
    --study "$STUDY")
say "case $CASE is in demo-neuro's inbox; the gateway forwards the images"

# Until the gateway has delivered everything it holds.
left() {
    "$GATEWAY" status --spool "$WORK/spool" --json | $PY -c 'import json, sys
d = json.load(sys.stdin)
print(d["waiting"] + d["in_flight"])'
}
last=
n=0
while [ "$(left)" != 0 ]; do
    kill -0 "$GPID" 2>/dev/null ||
        { say "hashi-gateway stopped: $(tail -3 "$WORK/gateway.log")"
          exit 2; }
    l=$(left)
    [ "$l" = "$last" ] || say "$l image(s) still to send"
    last=$l
    n=$((n + 1))
    [ $n -lt 3000 ] || { say "not delivered within 10 minutes"; exit 2; }
    sleep 0.2
done
say "all $N images delivered"
echo "$CASE"
