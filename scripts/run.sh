#!/bin/sh
# What `make run` calls: start hashi-server in the foreground on an
# embedded default data dir.  On first use the data dir is initialised (a
# self-signed development certificate) and filled with the demo clinics,
# users and consults (synthetic head CTs made by hashi-server itself).
# Ports: HASHI_PORT (HTTPS, default 8443) and HASHI_DICOM_PORT (DICOM,
# default 11112; 0 turns it off).
#
#   scripts/run.sh [DATA_DIR]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data}
BIN="$ROOT/build/hashi-server"
PORT=${HASHI_PORT:-8443}
DPORT=${HASHI_DICOM_PORT:-11112}

if [ ! -x "$BIN" ]; then
    echo "run.sh: $BIN is missing; run 'make' first" >&2
    exit 2
fi

new=0
[ -f "$DATA/hashi.db" ] || new=1
"$BIN" init --data "$DATA"
if [ "$new" -eq 1 ]; then
    # Also the neurology on-call list: demo-neuro first, then demo-neuro2.
    echo "run.sh: making the demo consults (synthetic CT studies)..." >&2
    "$BIN" demo --data "$DATA" >/dev/null
fi

cat <<EOF

  Hashi is starting.  Open  https://localhost:$PORT/
  (a self-signed development certificate: accept the browser's warning,
   or use curl --cacert $DATA/tls/cert.pem)

  DEMO logins (demo data only; password for all: demo-password)
    demo-requester  requester   Demo Rural Clinic
    demo-neuro      specialist  neurology   Demo City Hospital
    demo-neuro2     specialist  neurology   Demo City Hospital
    demo-cardio     specialist  cardiology  Demo City Hospital
    demo-admin      admin                   Demo City Hospital

  Open first: log in as demo-neuro; the STAT case on top,
    https://localhost:$PORT/#/case/demo-stat-head-ct
  (a synthetic head CT, 30 of 30 images; its 10-minute escalation clock
   started when the demo data was made).  Also there: the answered case
   demo-routine-headache, with a chat, a key image and read receipts.
  Live: with that inbox open, run  make demo-send  in another terminal.

EOF
if [ "$DPORT" != 0 ]; then
    cat <<EOF
  DICOM C-STORE/C-ECHO: AE title HASHI at 127.0.0.1:$DPORT
  (calling AE titles DEMO_CT and STORESCU send for Demo Rural Clinic;
   others are refused), e.g.
    echoscu  -aet DEMO_CT -aec HASHI 127.0.0.1 $DPORT
    storescu -aet DEMO_CT -aec HASHI 127.0.0.1 $DPORT +sd +r DIR_OF_DICOM

EOF
fi
if [ -x "$ROOT/build/hashi" ]; then
    cat <<EOF
  The command-line client, e.g.
    build/hashi login --server https://localhost:$PORT --user demo-neuro \\
        --cacert $DATA/tls/cert.pem
    build/hashi inbox

EOF
fi
echo "  Data: $DATA    Stop with Ctrl-C."
echo

exec "$BIN" --data "$DATA" --listen "127.0.0.1:$PORT" \
    --dicom "127.0.0.1:$DPORT"
