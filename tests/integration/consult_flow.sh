#!/bin/sh
# One consult end to end with the hashi CLI, two clinics: the rural
# requester sends a stat neurology case with a 20-slice study; the on-call
# neurologist, connected with `hashi watch --json`, receives case.new;
# claims, chats, answers; the requester's `hashi watch --json` shows
# claimed, message, answered in that order; `hashi get` returns the 20
# files byte for byte.
. "$(dirname "$0")/lib.sh"

hashi_init
oncall_set neurology demo-neuro demo-neuro2
hashi_start
STUDY=$(study ct20-consult 20 --seed 20 --patient-id CONSULT20)
SUID=$(attr_of "$STUDY/$(ls "$STUDY" | grep -v '^\.' | head -1)" \
    StudyInstanceUID)

cli_login req demo-requester
cli_login neuro demo-neuro

# Both sides listen before anything happens.
cli_bg neuro watch --json --count 1 >"$T_TMP/neuro.jsonl" \
    2>"$T_TMP/neuro.err"
NW=$BG
cli_bg req watch --json >"$T_TMP/req.jsonl" 2>"$T_TMP/req.err"
RW=$BG
at_exit "kill $NW $RW"
sleep 0.5

CASE=$(cli req send --to neurology --priority stat \
    --question "Sudden aphasia at 09:10. Bleed? Thrombolysis?" \
    --history "On warfarin." --patient-age 67 --patient-sex F \
    "$STUDY" 2>"$T_TMP/send.err") ||
    fail "hashi send failed: $(cat "$T_TMP/send.err")"
log "case $CASE"
case "$CASE" in
    [0-9a-f]*) assert_eq 32 "${#CASE}" "length of the printed case id" ;;
    *) fail "hashi send printed '$CASE', not a case id" ;;
esac

# The neurologist's watch gets the new case and exits (--count 1).
wait_pid $NW 20
assert_eq 0 "$WRC" "neurologist's watch exit status ($(cat "$T_TMP/neuro.err"))"
assert_eq 1 "$(jlines "$T_TMP/neuro.jsonl" 'len(E)')" "events at the neurologist"
assert_eq "case.new $CASE" \
    "$(jlines "$T_TMP/neuro.jsonl" 'E[0]["kind"] + " " + E[0]["case_id"]')" \
    "the neurologist's event"
assert_eq "stat neurology 67 F [$SUID]" \
    "$(jlines "$T_TMP/neuro.jsonl" '" ".join([E[0]["body"]["case"]["priority"],
        E[0]["body"]["case"]["specialty"],
        str(E[0]["body"]["case"]["patient"]["age"]),
        E[0]["body"]["case"]["patient"]["sex"],
        "[" + ",".join(E[0]["body"]["case"]["study_uids"]) + "]"])')" \
    "the case as the neurologist sees it"

# The neurologist works the case.
cli neuro inbox --json >"$T_TMP/inbox.json" || fail "inbox failed"
assert_eq True "$(jget "$T_TMP/inbox.json" \
    '"'"$CASE"'" in [c["case_id"] for c in d["cases"]]')" "case in the inbox"
cli neuro claim "$CASE" >/dev/null 2>"$T_TMP/claim.err" ||
    fail "claim failed: $(cat "$T_TMP/claim.err")"
cli neuro chat "$CASE" "Left MCA territory? Please send the CTA too." \
    >/dev/null || fail "chat failed"
cli neuro answer "$CASE" "Hyperdense left MCA, no haemorrhage." \
    --impression "No bleed; left MCA occlusion likely." \
    --recommendation "Thrombolyse; transfer for thrombectomy." \
    >/dev/null || fail "answer failed"

# The requester's watch shows claimed, message, answered, in that order.
wait_grep "$T_TMP/req.jsonl" '"kind":"case.answered"' 20
kill $RW 2>/dev/null
wait $RW 2>/dev/null
assert_eq "case.claimed message.new case.answered" \
    "$(jlines "$T_TMP/req.jsonl" '" ".join(e["kind"] for e in E
        if e["case_id"] == "'"$CASE"'" and e["kind"] in
        ("case.claimed", "message.new", "case.answered"))')" \
    "the requester's events, in order"
assert_eq "True True" "$(jlines "$T_TMP/req.jsonl" '" ".join([
    str(all(E[i]["seq"] < E[i + 1]["seq"] for i in range(len(E) - 1))),
    str(len(set(e["event_id"] for e in E)) == len(E))])')" \
    "seqs increasing, event ids unique"
assert_eq "demo-neuro|Left MCA territory? Please send the CTA too." \
    "$(jlines "$T_TMP/req.jsonl" '[e["body"]["message"]["author"] + "|" +
        e["body"]["message"]["text"] for e in E
        if e["kind"] == "message.new"][0]')" "the chat message"
assert_eq "demo-neuro|No bleed; left MCA occlusion likely." \
    "$(jlines "$T_TMP/req.jsonl" '[e["body"]["case"]["answer"]["by"] + "|" +
        e["body"]["case"]["answer"]["impression"] for e in E
        if e["kind"] == "case.answered"][0]')" "the answer"
assert_eq "demo-neuro" "$(jlines "$T_TMP/req.jsonl" '[e["body"]["case"]
    ["claimed_by"] for e in E if e["kind"] == "case.claimed"][0]')" \
    "who claimed"

# show: the whole case as the requester sees it.
cli req show "$CASE" --json >"$T_TMP/show.json" || fail "show failed"
assert_eq "answered|demo-neuro|1|20" "$(jget "$T_TMP/show.json" \
    '"|".join([d["case"]["status"], d["case"]["claimed_by"],
    str(len(d["case"]["messages"])), str(d["case"]["images"]["received"])])')" \
    "status, claimer, messages, images"
cli req show "$CASE" >"$T_TMP/show.txt" || fail "show (text) failed"
assert_file_has "$T_TMP/show.txt" "impression +No bleed" "readable show"

# get: the 20 files, byte for byte, named by SOP Instance UID.
cli req get "$CASE" --out "$T_TMP/got" >"$T_TMP/get.out" 2>&1 ||
    fail "get failed: $(cat "$T_TMP/get.out")"
assert_eq 20 "$(ls "$T_TMP/got" | grep -c '\.dcm$')" "files fetched"
assert_eq 0 "$(ls -A "$T_TMP/got" | grep -vc '\.dcm$')" "stray files in --out"
for f in "$STUDY"/*.dcm; do
    sop=$(attr_of "$f" SOPInstanceUID)
    assert_same_file "$f" "$T_TMP/got/$sop.dcm" "fetched $sop"
done
pass
