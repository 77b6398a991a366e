#!/bin/sh
# The clinician demo, end to end on the real binaries: after `init` and
# `demo` (the full seeding), demo-neuro's `hashi inbox` opens on the
# seeded STAT case with 30 of 30 images; then the live scenario (`make
# demo-send`'s script: storescu -> hashi-gateway -> linkemu at 8 Mbit/s
# with one cut -> the server, the case made by `hashi send --study`)
# completes, and demo-neuro's `hashi watch --json`, connected throughout,
# receives the new case's events in order — case.new first, announcing 24
# images before they are all in, seqs rising, then images.arrived with
# received never going down, ending with all 24 — every image came
# through the gateway with its pixels intact, and the study's preview
# (the gateway's) is there for the specialist.
. "$(dirname "$0")/lib.sh"

hashi_init
"$SERVER" demo --data "$DATA" >"$T_TMP/demo.out" 2>>"$T_TMP/admin.log" ||
    fail "hashi-server demo failed: $(tail -3 "$T_TMP/admin.log")"
assert_file_has "$T_TMP/demo.out" \
    "Open first: the STAT case demo-stat-head-ct" \
    "demo's printed case to open first"
hashi_start
cli_login neuro demo-neuro

cli neuro inbox --json >"$T_TMP/inbox.json" 2>"$T_TMP/inbox.err" ||
    fail "inbox: $(cat "$T_TMP/inbox.err")"
assert_eq "demo-stat-head-ct stat new 30 30" \
    "$(jget "$T_TMP/inbox.json" '" ".join(str(x) for x in [
        d["cases"][0]["case_id"], d["cases"][0]["priority"],
        d["cases"][0]["status"], d["cases"][0]["images"]["received"],
        d["cases"][0]["images"]["expected"]])')" \
    "the top of demo-neuro's inbox"

# The specialist's page is open: a watch, caught up on the seeded cases.
cli_bg neuro watch --json >"$T_TMP/watch.jsonl" 2>"$T_TMP/watch.err"
at_exit "kill $BG"
wait_grep "$T_TMP/watch.jsonl" '"demo-stat-head-ct"' 20

HASHI_PORT=$HPORT DEMO_LINK="--rate 8mbit --delay 5ms --cut-after 2M" \
    timeout 120 sh "$HASHI_ROOT/scripts/demo_send.sh" "$DATA" \
    >"$T_TMP/send.out" 2>"$T_TMP/send.err" ||
    fail "demo_send.sh: $(tail -5 "$T_TMP/send.err")"
CASE=$(tail -1 "$T_TMP/send.out")
log "live case $CASE"
assert_eq 1 "$(jget "$DATA/demo-live/link.json" 'd["cuts"]')" \
    "cuts of the link during the send"

# Its events at the watcher: wait for the last image, then check order.
wait_grep "$T_TMP/watch.jsonl" "\"$CASE\".*\"received\": *24" 30
$PY - "$T_TMP/watch.jsonl" "$CASE" >"$T_TMP/order.txt" <<'PYEOF' ||
import json, sys
L = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
E = [m for m in L if m.get("type") == "event"]
ev = [e for e in E if e["case_id"] == sys.argv[2]]
def received(e):    # case.new: the case; images.arrived: the case's total
    return e["body"].get("case", e["body"])["images"]["received"]
counts = [received(e) for e in ev
          if e["kind"] in ("case.new", "images.arrived")]
first = ev[0]["body"]["case"]["images"]
print(ev[0]["kind"], all(a["seq"] < b["seq"] for a, b in zip(E, E[1:])),
      counts == sorted(counts), counts[-1], first["expected"],
      first["received"] < 24,
      any(e["kind"] == "images.arrived" for e in ev))
PYEOF
    fail "reading the watch's events: $(head -c 300 "$T_TMP/watch.jsonl")"
assert_eq "case.new True True 24 24 True True" "$(cat "$T_TMP/order.txt")" \
    "the live case's events: case.new first (announced 24, before all its \
images), seqs rising, images.arrived never fewer, all 24"
cli neuro show "$CASE" --json >"$T_TMP/show.json" || fail "show $CASE"
assert_eq "stat new 24" "$(jget "$T_TMP/show.json" '" ".join(str(x) for x in [
    d["case"]["priority"], d["case"]["status"],
    d["case"]["images"]["received"]])')" \
    "the live case at the specialist"
SUID=$(jget "$T_TMP/show.json" 'd["case"]["study_uids"][0]')
GWLOG="$DATA/demo-live/gateway.log"
assert_eq 24 "$(grep -c "delivered (stored" "$GWLOG")" \
    "images delivered by hashi-gateway"
assert_file_has "$GWLOG" "preview of $SUID delivered" "the gateway's preview"
assert_eq 0 "$(sqlite3 "$DATA/hashi.db" "SELECT count(*) FROM instances i \
JOIN series se ON se.id = i.series_ref JOIN studies st \
ON st.id = se.study_ref WHERE st.study_uid = '$SUID' \
AND i.received_at < (SELECT at FROM study_previews \
WHERE study_uid = '$SUID')")" "instances before the preview"
$PY "$DW" pixels "$DATA"/demo-live/study/* >"$T_TMP/sent.px"
$PY "$DW" server-pixels "$DATA" | grep -F -f "$T_TMP/sent.px" \
    >"$T_TMP/got.px" || true
assert_same_file "$T_TMP/sent.px" "$T_TMP/got.px" \
    "the live study's pixels at the server"
assert_eq 200 "$(http GET "/api/studies/$SUID/preview" "$(login demo-neuro)")" \
    "the live study's preview for demo-neuro"
assert_eq image/jpeg "$(header Content-Type)" "the preview's type"
pass
