# rest_cases_scoped: the REST twin of hashi.v1.  The same create twice is
# one case (201, then 200); a requester of clinic B and a specialist of
# another specialty get 404 for clinic A's case and its messages (and
# not_found over hashi.v1), exactly as for a case that does not exist; two
# specialists claiming at the same moment: exactly one 200, one 409
# already_claimed; bodies go through the hashi.v1 codec (same codes).
. "$(dirname "$0")/lib.sh"

two_clinics

body='{"case_id":"case-a1","question":"Bleed?","history":"Fell at 9.",
"priority":"urgent","specialty":"neurology","patient":{"age":81,"sex":"F"}}'

# -- the same create twice: one case
assert_eq 201 "$(api POST /api/cases "$R" "$body")" "first create"
assert_eq "case-a1 new urgent 81" "$(jget "$T_TMP/body" \
    '" ".join(str(x) for x in (d["case"]["case_id"], d["case"]["status"],
    d["case"]["priority"], d["case"]["patient"]["age"]))')" "created case"
created_at=$(jget "$T_TMP/body" 'd["case"]["created_at"]')
assert_eq 200 "$(api POST /api/cases "$R" "$body")" "repeated create"
assert_eq "case-a1 $created_at" "$(jget "$T_TMP/body" \
    '"%s %s" % (d["case"]["case_id"], d["case"]["created_at"])')" \
    "the repeat returns the same case"
assert_eq 200 "$(api GET /api/cases "$R")" "list"
assert_eq "['case-a1']" "$(jget "$T_TMP/body" \
    '[c["case_id"] for c in d["cases"]]')" "one case after two creates"
assert_eq 201 "$(api POST /api/cases/case-a1/messages "$R" \
    '{"message_id":"msg-1","text":"CT on its way."}')" "requester's message"

# -- validation is the codec's
assert_eq 400 "$(api POST /api/cases "$R" \
    '{"case_id":"x1","question":"Q","priority":"asap","specialty":"neurology"}')" \
    "bad priority"
assert_eq bad_field "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "bad priority code"
assert_eq 400 "$(api POST /api/cases "$R" \
    '{"case_id":"x1","priority":"stat","specialty":"neurology"}')" \
    "no question"
assert_eq "missing_field question" "$(jget "$T_TMP/body" \
    '"%s %s" % (d["error"]["code"], d["error"]["message"].split(":")[0])')" \
    "no question code"
assert_eq 400 "$(api POST /api/cases "$R" '{"case_id":"x1",')" "bad JSON"
assert_eq bad_json "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "bad JSON code"
assert_eq 400 "$(api GET '/api/cases?limit=0' "$R")" "limit 0"
assert_eq 400 "$(api GET "/api/cases/$(printf 'a%.0s' $(seq 70))" "$R")" \
    "over-long case id"
assert_eq too_long "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "over-long case id code"
assert_eq 401 "$(api GET /api/cases "")" "no token"

# -- not visible: 404 like a case that does not exist; same over hashi.v1
for who in B CARDIO; do
    eval tok=\$$who
    for p in /api/cases/case-a1 /api/cases/case-a1/messages; do
        assert_eq 404 "$(api GET "$p" "$tok")" "GET $p as $who"
        assert_eq not_found "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
            "code of GET $p as $who"
    done
    assert_eq 404 "$(api POST /api/cases/case-a1/claim "$tok")" \
        "claim as $who"
    assert_eq 404 "$(api POST /api/cases/case-a1/messages "$tok" \
        '{"message_id":"msg-x","text":"hi"}')" "message as $who"
    assert_eq 404 "$(api POST /api/cases/case-a1/messages/msg-1/read \
        "$tok")" "read receipt as $who"
    assert_eq 200 "$(api GET /api/cases "$tok")" "list as $who"
    assert_eq "[]" "$(jget "$T_TMP/body" 'd["cases"]')" "list as $who"
done
api GET /api/cases/case-zz "$B" >/dev/null
cp "$T_TMP/body" "$T_TMP/missing.json"
api GET /api/cases/case-a1 "$B" >/dev/null
assert_eq "$(jget "$T_TMP/missing.json" 'd["error"]["code"]')" \
    "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "a hidden case answers like a missing one"
wsc session --token "$B" --idle 1.5 --timeout 10 \
    --send '{"type":"case.get","id":"g1","case_id":"case-a1"}' \
    --send '{"type":"case.claim","id":"g2","case_id":"case-a1"}' \
    >"$T_TMP/wsb" || fail "clinic B session"
assert_eq "g1 False not_found" "$(jlines "$T_TMP/wsb" \
    '"%s %s %s" % (L[1]["id"], L[1]["ok"], L[1]["error"]["code"])')" \
    "case.get over hashi.v1 by clinic B"
assert_eq "g2 False not_found" "$(jlines "$T_TMP/wsb" \
    '"%s %s %s" % (L[2]["id"], L[2]["ok"], L[2]["error"]["code"])')" \
    "case.claim over hashi.v1 by clinic B"
assert_eq 0 "$(jlines "$T_TMP/wsb" 'len(E)')" "clinic B heard nothing"

# -- the visible side sees it
assert_eq 200 "$(api GET /api/cases/case-a1 "$N1")" "GET as neurologist"
assert_eq "['msg-1']" "$(jget "$T_TMP/body" \
    '[m["message_id"] for m in d["case"]["messages"]]')" "thread"

# -- two claims at the same moment: exactly one wins
claim() {
    curl -sS --cacert "$CACERT" -H 'Expect:' -X POST -o "$T_TMP/claim.$1" \
        -w '%{http_code}' -H "Authorization: Bearer $2" \
        "$HURL/api/cases/case-a1/claim" >"$T_TMP/claim.$1.code"
}
claim n1 "$N1" &
c1=$!
claim n2 "$N2" &
c2=$!
wait $c1
wait $c2
codes=$(printf '%s\n%s\n' "$(cat "$T_TMP/claim.n1.code")" \
    "$(cat "$T_TMP/claim.n2.code")" | sort | tr '\n' ' ')
assert_eq "200 409 " "$codes" "claim race status codes"
if [ "$(cat "$T_TMP/claim.n1.code")" = 200 ]; then
    winner=demo-neuro; loser=n2
else
    winner=demo-neuro2; loser=n1
fi
assert_eq "already_claimed $winner" "$(jget "$T_TMP/claim.$loser" \
    '"%s %s" % (d["error"]["code"], d["error"]["message"].split()[-1])')" \
    "the loser is told who won"
assert_eq 200 "$(api GET /api/cases/case-a1 "$R")" "GET as requester"
assert_eq "claimed $winner" "$(jget "$T_TMP/body" \
    '"%s %s" % (d["case"]["status"], d["case"]["claimed_by"])')" \
    "case after the race"
audit_has case.claim "case-a1" "claim audited"

# -- the rest of the life of the case, over REST
if [ $winner = demo-neuro ]; then W=$N1; L=$N2; else W=$N2; L=$N1; fi
assert_eq 403 "$(api POST /api/cases/case-a1/answer "$L" \
    '{"impression":"No bleed."}')" "answer by the loser"
assert_eq 400 "$(api POST /api/cases/case-a1/answer "$W" \
    '{"recommendation":"Rest."}')" "answer without impression or text"
assert_eq missing_field "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "answer without impression or text: code"
assert_eq 200 "$(api POST /api/cases/case-a1/answer "$W" \
    '{"impression":"No bleed.","recommendation":"CT in 24 h.",
      "text":"Small contusion, no mass effect."}')" "answer by the claimer"
assert_eq "answered No bleed. $winner" "$(jget "$T_TMP/body" \
    '"%s %s %s" % (d["case"]["status"], d["case"]["answer"]["impression"],
    d["case"]["answer"]["by"])')" "answered case"
assert_eq 200 "$(api POST /api/cases/case-a1/messages/msg-1/read "$W")" \
    "read receipt"
assert_eq "{}" "$(cat "$T_TMP/body")" "read receipt body"
assert_eq 200 "$(api GET /api/cases/case-a1/messages "$R")" "thread"
assert_eq "True" "$(jget "$T_TMP/body" \
    '"'$winner'" in d["messages"][0]["read_by"]')" "read_by in the thread"
assert_eq 404 "$(api POST /api/cases/case-a1/close "$B")" "close by clinic B"
assert_eq 200 "$(api POST /api/cases/case-a1/close "$R" '{"reason":"done"}')" \
    "close by the requester"
assert_eq closed "$(jget "$T_TMP/body" 'd["case"]["status"]')" "closed"
assert_eq 200 "$(api POST /api/cases/case-a1/reopen "$R")" "reopen"
assert_eq "reopened $winner" "$(jget "$T_TMP/body" \
    '"%s %s" % (d["case"]["status"], d["case"]["claimed_by"])')" "reopened"
assert_eq 405 "$(api GET /api/cases/case-a1/claim "$W")" "GET on claim"
assert_eq 404 "$(api POST /api/cases/case-a1/zap "$W")" "unknown verb"

# -- the outbox over REST: the requester's events, acknowledged
assert_eq 200 "$(api GET '/api/events?after=0&limit=2' "$R")" "events page"
assert_eq "[1, 2]" "$(jget "$T_TMP/body" '[e["seq"] for e in d["events"]]')" \
    "first page of events"
last=$(jget "$T_TMP/body" 'd["last_seq"]')
assert_eq 200 "$(api POST /api/events/ack "$R" "{\"seq\":$last}")" "ack all"
assert_eq "$last" "$(jget "$T_TMP/body" 'd["acked_seq"]')" "acked_seq"
assert_eq 400 "$(api POST /api/events/ack "$R" "{\"seq\":$((last + 1))}")" \
    "ack beyond the last event"
assert_eq 400 "$(api GET '/api/events?after=x' "$R")" "after=x"
pass
