#!/bin/sh
# What `make run` does on a fresh data dir (scripts/run.sh): it seeds the
# demo consults, prints the STAT demo case to open first (its URL), and
# the server it starts lists that case at the top of demo-neuro's inbox
# with 30 of 30 images; a second start on the same data dir seeds nothing
# again and changes no case.
. "$(dirname "$0")/lib.sh"

DATA="$T_TMP/data"
CACERT="$DATA/tls/cert.pem"
HPORT=$(free_port)
HURL="https://127.0.0.1:$HPORT"

# run.sh execs the server: $! is the server, which hashi_stop ends.
run_sh() {
    HASHI_PORT=$HPORT HASHI_DICOM_PORT=0 \
        sh "$HASHI_ROOT/scripts/run.sh" "$DATA" >"$T_TMP/run$1.out" 2>&1 &
    HPID=$!
    wait_grep "$T_TMP/run$1.out" "listening on https://" 60
}

run_sh 1
assert_file_has "$T_TMP/run1.out" "making the demo consults" "first start seeds"
assert_file_has "$T_TMP/run1.out" \
    "Open first: log in as demo-neuro" "the start-up text's first case"
assert_file_has "$T_TMP/run1.out" \
    "https://localhost:$HPORT/#/case/demo-stat-head-ct" "its URL"
N=$(login demo-neuro)
assert_eq 200 "$(api GET /api/cases "$N")" "demo-neuro's inbox"
assert_eq "demo-stat-head-ct stat 30 30 2" \
    "$(jget "$T_TMP/body" '" ".join(str(x) for x in [
        d["cases"][0]["case_id"], d["cases"][0]["priority"],
        d["cases"][0]["images"]["received"],
        d["cases"][0]["images"]["expected"], len(d["cases"])])')" \
    "the top of demo-neuro's inbox, and how many cases"
cp "$T_TMP/body" "$T_TMP/cases1.json"
hashi_stop || fail "the server did not stop on SIGTERM"

run_sh 2
if grep -q "making the demo consults" "$T_TMP/run2.out"; then
    fail "the second start seeded again"
fi
N=$(login demo-neuro)
assert_eq 200 "$(api GET /api/cases "$N")" "demo-neuro's inbox again"
assert_eq "$(jget "$T_TMP/cases1.json" 'd["cases"]')" \
    "$(jget "$T_TMP/body" 'd["cases"]')" "the cases after a second start"
pass
