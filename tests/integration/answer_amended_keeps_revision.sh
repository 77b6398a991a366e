# answer_amended_keeps_revision: POST /api/cases/{id}/amend.  Only the
# answer's author amends (another specialist of the specialty: 403; the
# requester: 403; another clinic's requester and another specialty: 404,
# as for a case that does not exist; before any answer: 409); the answer
# replaced is kept in answer.revisions; the requester gets case.answered
# with "amended": true; the same amendment again changes nothing; the
# case's timeline lists sent, opened, claimed, answered, amended, closed
# in order with their actors; audited as case.amend.
. "$(dirname "$0")/lib.sh"

two_clinics

assert_eq 201 "$(api POST /api/cases "$R" '{"case_id":"am-1","question":"Bleed?",
"priority":"stat","specialty":"neurology"}')" "create"
assert_eq 200 "$(api GET /api/cases/am-1 "$N1")" "neuro opens it"
assert_eq 200 "$(api POST /api/cases/am-1/claim "$N1")" "claim"
assert_eq 409 "$(api POST /api/cases/am-1/amend "$N1" '{"impression":"x"}')" \
    "amend before an answer"
assert_eq 200 "$(api POST /api/cases/am-1/answer "$N1" \
    '{"impression":"No bleed."}')" "answer"

new='{"impression":"Small right frontal bleed.","recommendation":"No lysis."}'
for who in N2 R; do
    eval tok=\$$who
    assert_eq 403 "$(api POST /api/cases/am-1/amend "$tok" "$new")" \
        "amend as $who"
done
for who in B CARDIO; do
    eval tok=\$$who
    assert_eq 404 "$(api POST /api/cases/am-1/amend "$tok" "$new")" \
        "amend as $who"
done
assert_eq 400 "$(api POST /api/cases/am-1/amend "$N1" \
    '{"recommendation":"x"}')" "amend without impression or text"

assert_eq 200 "$(api POST /api/cases/am-1/amend "$N1" "$new")" "amend"
assert_eq "answered|Small right frontal bleed.|No bleed.|demo-neuro" \
    "$(jget "$T_TMP/body" '"|".join((d["case"]["status"],
    d["case"]["answer"]["impression"],
    d["case"]["answer"]["revisions"][0]["impression"],
    d["case"]["answer"]["revisions"][0]["by"]))')" "the amended case"
assert_eq 200 "$(api POST /api/cases/am-1/amend "$N1" "$new")" "again"
assert_eq 1 "$(jget "$T_TMP/body" 'len(d["case"]["answer"]["revisions"])')" \
    "the same amendment again: still one revision"

assert_eq 200 "$(api GET '/api/events?after=0' "$R")" "requester's events"
assert_eq "case.new case.claimed case.answered case.answered:amended" \
    "$(jget "$T_TMP/body" '" ".join(e["kind"] +
    (":amended" if e["body"].get("amended") else "")
    for e in d["events"] if e["case_id"] == "am-1")')" \
    "the requester is told of the amendment, once"

assert_eq 200 "$(api POST /api/cases/am-1/close "$R")" "close"
assert_eq 200 "$(api GET /api/cases/am-1 "$R")" "the case"
assert_eq "sent:demo-requester opened:demo-neuro claimed:demo-neuro \
answered:demo-neuro amended:demo-neuro closed:demo-requester" \
    "$(jget "$T_TMP/body" '" ".join("%s:%s" % (s["step"], s["by"])
    for s in d["case"]["timeline"])')" "the timeline"
assert_eq True "$(jget "$T_TMP/body" 'all(a["at"] <= b["at"] for a, b in
    zip(d["case"]["timeline"], d["case"]["timeline"][1:]))')" \
    "the timeline in time order"
audit_has 'case\.amend' '"am-1"' "the amendment's audit line"
pass
