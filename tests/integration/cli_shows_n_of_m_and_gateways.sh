#!/bin/sh
# The CLI shows what the link is doing: `hashi show` prints "images N of M
# received" (and --json carries it) once the study was announced with
# study.expect, `hashi inbox` has N/M in its IMAGES column, and `hashi
# gateways` lists the clinic's gateway with its last status — never seen,
# then last seen with its queue, then STALE when over a minute old.
. "$(dirname "$0")/lib.sh"

hashi_init
GW=$("$SERVER" gateway add --data "$DATA" --clinic "Demo Rural Clinic" \
    --name gw1 2>>"$T_TMP/admin.log") || fail "gateway add"
hashi_start
tok=$(login demo-requester)
cli_login req demo-requester
dir=$(study n-of-m 5 --size 64 --seed 53)
st=$(attr_of "$(ls "$dir"/*.dcm | head -1)" StudyInstanceUID)

CASE=$(cli req send --to neurology --priority urgent --question "N of M?" \
    --study "$st" 2>"$T_TMP/send.err") || fail "send: $(cat "$T_TMP/send.err")"
wsc session --token "$tok" --idle 1 --send "{\"type\":\"study.expect\",\
\"id\":\"x1\",\"study_uid\":\"$st\",\"instances\":5}" >"$T_TMP/expect.jsonl" ||
    fail "study.expect session"
assert_eq True "$(jlines "$T_TMP/expect.jsonl" \
    '[m for m in L if m.get("id") == "x1"][0]["ok"]')" "study.expect answered"
assert_in "200 202" "$(stow "$tok" $(ls "$dir"/*.dcm | head -3))" "STOW of 3"

cli req show "$CASE" >"$T_TMP/show.txt" || fail "show"
assert_file_has "$T_TMP/show.txt" "^images +3 of 5 received$" "show"
cli req show "$CASE" --json >"$T_TMP/show.json" || fail "show --json"
assert_eq "3 5" "$(jget "$T_TMP/show.json" \
    '"%d %d" % (d["case"]["images"]["received"], d["case"]["images"]["expected"])')" \
    "show --json images"
cli req inbox >"$T_TMP/inbox.txt" || fail "inbox"
assert_file_has "$T_TMP/inbox.txt" "^CASE .* IMAGES " "inbox header"
assert_file_has "$T_TMP/inbox.txt" "^$CASE +new +urgent +neurology +- +3/5 " \
    "inbox row"

# gateways: never seen, then a status, then stale
cli req gateways >"$T_TMP/gw0.txt" || fail "gateways"
assert_eq "gateway gw1 never seen" "$(cat "$T_TMP/gw0.txt")" "before a status"
wsc session --token "$GW" --idle 1 --send '{"type":"gateway.status",
"id":"g1","waiting":12,"in_flight":1,"done":340,"failed":2,
"bytes_waiting":6291456,"rate_bps":262144,"last_error":"link down 09:12"}' \
    >"$T_TMP/gw.jsonl" || fail "gateway.status session"
assert_eq True "$(jlines "$T_TMP/gw.jsonl" \
    '[m for m in L if m.get("id") == "g1"][0]["ok"]')" "gateway.status answered"
cli req gateways >"$T_TMP/gw1.txt" || fail "gateways"
assert_file_has "$T_TMP/gw1.txt" "^gateway gw1 last seen [0-9-]+ [0-9:]+ \
\([0-9]+ s ago\), 12 waiting, 1 in flight, 340 done, 2 failed, 262.1 kB/s, \
last error: link down 09:12$" "a gateway's line"
assert_file_lacks "$T_TMP/gw1.txt" "STALE" "a fresh gateway"
cli req gateways --json >"$T_TMP/gw1.json" || fail "gateways --json"
assert_eq "gw1 12" "$(jget "$T_TMP/gw1.json" \
    '"%s %d" % (d["gateways"][0]["name"], d["gateways"][0]["status"]["waiting"])')" \
    "gateways --json"
sqlite3 "$DATA/hashi.db" \
    "UPDATE gateway_status SET last_seen = last_seen - 120000" ||
    fail "making the status old"
cli req gateways >"$T_TMP/gw2.txt" || fail "gateways"
assert_file_has "$T_TMP/gw2.txt" "^gateway gw1 last seen .*\(1[0-9]{2} s ago, STALE\)" \
    "a stale gateway"
cli_login neuro demo-neuro
cli neuro gateways >/dev/null 2>"$T_TMP/neuro.err"
assert_eq 2 "$?" "exit status of a specialist's gateways"
assert_file_has "$T_TMP/neuro.err" "^hashi: gateways: .*requesters and admins" \
    "a specialist's refusal"
pass
