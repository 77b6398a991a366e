#!/bin/sh
# What `make demo-send` calls: the demo's live scenario.  A simulated CT
# at the demo rural clinic makes a new head study (hashi-server demo
# --live-study: synthetic, a bleed, fresh UIDs each run) and demo-requester
# sends it as a STAT neurology case over an emulated slow link that breaks
# once (tests/tools/linkemu.py in front of the server), so a specialist
# page that is open sees the case arrive and its images fill up.
#
#   scripts/demo_send.sh [DATA_DIR]     # the running server's data dir
#
# Start the server first (`make run`, another terminal).  HASHI_PORT: its
# HTTPS port (default 8443).  DEMO_LINK: the link's linkemu.py options
# (default 4 Mbit/s, 150 ms each way, one cut after 5 MiB, 2 s outage).
# The study, the CLI's state and the link's log stay in DATA/demo-live/;
# the link's statistics in DATA/demo-live/link.json.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data}
PORT=${HASHI_PORT:-8443}
LINK=${DEMO_LINK:---rate 4mbit --delay 150ms --cut-after 5M --outage 2s}
SERVER="$ROOT/build/hashi-server"
HASHI="$ROOT/build/hashi"
WORK="$DATA/demo-live"
CACERT="$DATA/tls/cert.pem"

say() { echo "demo-send: $*" >&2; }

for b in "$SERVER" "$HASHI"; do
    [ -x "$b" ] || { say "$b is missing; run 'make' first"; exit 2; }
done
if ! curl -sf -o /dev/null --max-time 5 --cacert "$CACERT" \
    "https://127.0.0.1:$PORT/healthz"; then
    say "no Hashi server at https://127.0.0.1:$PORT (start 'make run'" \
        "first, or set HASHI_PORT)"
    exit 2
fi

rm -rf "$WORK/study"
mkdir -p "$WORK"
say "the CT at Demo Rural Clinic is writing a new head study..."
"$SERVER" demo --live-study "$WORK/study" >/dev/null 2>"$WORK/ct.log" ||
    { cat "$WORK/ct.log" >&2; exit 2; }

# The link: gone when this script ends, however it ends.
rm -f "$WORK/link.json"
# shellcheck disable=SC2086
/usr/bin/python3 "$ROOT/tests/tools/linkemu.py" --listen 127.0.0.1:0 \
    --target "127.0.0.1:$PORT" --stats "$WORK/link.json" $LINK \
    2>"$WORK/link.log" &
LPID=$!
trap 'kill $LPID 2>/dev/null; wait $LPID 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
i=0
until grep -q 'listening on' "$WORK/link.log"; do
    kill -0 "$LPID" 2>/dev/null ||
        { say "the link emulator did not start: $(cat "$WORK/link.log")"
          exit 2; }
    i=$((i + 1))
    [ $i -lt 200 ] || { say "the link emulator is not listening"; exit 2; }
    sleep 0.05
done
LPORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' \
    "$WORK/link.log")
say "the clinic's link: $LINK"

export HASHI_CONFIG_DIR="$WORK/cli"
echo demo-password | "$HASHI" login --server "https://127.0.0.1:$LPORT" \
    --user demo-requester --password-stdin --cacert "$CACERT" >/dev/null
# The clinic sends the study (the one line to change for hashi-gateway).
"$HASHI" send --to neurology --priority stat --patient-age 72 \
    --patient-sex F \
    --history "DEMO (synthetic patient). Found confused at home, right-sided
weakness, last seen well 3 hours ago. On apixaban." \
    --question "Bleed? Reverse the anticoagulant and transfer?" \
    "$WORK/study"
say "sent; the case is in demo-neuro's inbox"
