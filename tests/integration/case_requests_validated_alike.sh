# case_requests_validated_alike: a request is validated once, by the
# hashi.v1 codec, whether it comes over REST or over hashi.v1, so both
# refuse the same things with the same code: a case.create whose study UID
# has an empty component (1..2) or a leading zero is bad_field and creates
# nothing; a case.list limit above 200 (PROTOCOL.md) is bad_field, 200 is
# served.
. "$(dirname "$0")/lib.sh"

hashi_setup
R=$(login demo-requester)

create() {    # CASE_ID STUDY_UID: the case.create members as JSON
    echo "\"case_id\":\"$1\",\"question\":\"Bleed?\",\"priority\":\"stat\",\
\"specialty\":\"neurology\",\"study_uids\":[\"$2\"]"
}

for uid in 1..2 1.02; do
    assert_eq 400 "$(api POST /api/cases "$R" "{$(create rest-bad "$uid")}")" \
        "REST create with study UID $uid"
    assert_eq bad_field "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
        "REST create with study UID $uid: code"
done
assert_eq 400 "$(api GET '/api/cases?limit=201' "$R")" "REST list limit 201"
assert_eq bad_field "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
    "REST list limit 201: code"
assert_eq 200 "$(api GET '/api/cases?limit=200' "$R")" "REST list limit 200"

wsc session --token "$R" --idle 1.5 --timeout 15 \
    --send "{\"type\":\"case.create\",\"id\":\"c1\",$(create ws-bad 1..2)}" \
    --send "{\"type\":\"case.create\",\"id\":\"c2\",$(create ws-bad 1.02)}" \
    --send '{"type":"case.list","id":"l1","limit":201}' \
    --send '{"type":"case.list","id":"l2","limit":200}' \
    >"$T_TMP/ws" || fail "hashi.v1 session failed"
assert_eq "c1 False bad_field|c2 False bad_field|l1 False bad_field|\
l2 True -" "$(jlines "$T_TMP/ws" '"|".join("%s %s %s" % (m["id"], m["ok"],
    m.get("error", {}).get("code", "-")) for m in L
    if m.get("type") == "reply")')" "hashi.v1 replies"

assert_eq 200 "$(api GET /api/cases "$R")" "list"
assert_eq 0 "$(jget "$T_TMP/body" 'len(d["cases"])')" "no case was created"
pass
