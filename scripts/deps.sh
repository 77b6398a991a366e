#!/bin/sh
# Install the Debian packages Hashi needs to build, run and test.
# Idempotent: asks dpkg first and runs apt-get only for what is missing.
set -eu

PKGS="build-essential pkg-config g++ libdcmtk-dev dcmtk libwebsockets-dev libev-dev
libssl-dev libsqlite3-dev libjansson-dev libcmocka-dev libjpeg-dev openssl curl sqlite3
python3 python3-pydicom python3-numpy valgrind clang procps"

# Test-only peers: Orthanc (benchmarks), Chromium + node (browser tests),
# dicom3tools (dciodvfy checks the photos);
# Mosquitto for --bench only.
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
    PKGS="$PKGS orthanc orthanc-dicomweb chromium iproute2 util-linux dicom3tools
          python3-cryptography"
    # Node.js may come from elsewhere on the machine; Debian's npm conflicts
    # with such a build, so ask for Debian's only when there is none.
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
fi
# The push benchmark's anchor broker.
[ "${1:-}" != "--bench" ] || PKGS="$PKGS mosquitto"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages:$missing (run as root, or install them)" >&2
        exit 1
    fi
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi

# The browser tests' npm packages (playwright-core, driving Debian's
# Chromium, and OHIF): installed from the lock file when missing or out of
# date; bench/phone.mjs uses them too.
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
    bt="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
    if [ ! -d "$bt/node_modules" ] ||
            [ "$bt/package-lock.json" -nt "$bt/node_modules" ]; then
        echo "deps: npm ci in tests/browser"
        (cd "$bt" && npm ci --no-audit --no-fund) ||
            { echo "deps: npm ci in $bt failed" >&2; exit 1; }
        touch "$bt/node_modules"
    fi
fi
