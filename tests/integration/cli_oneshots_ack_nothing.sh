#!/bin/sh
# The CLI's one-shot commands neither fetch nor acknowledge events: a
# neurologist who never ran `hashi watch` has events waiting; `hashi inbox`,
# `show`, `claim` and `chat` go over the REST twin (no hashi.v1 session in
# the server's log), leave the outbox unacknowledged and no message marked
# delivered to them; then `hashi watch --json --once` still delivers ALL
# the events, in order, and only that ack marks the messages delivered.
. "$(dirname "$0")/lib.sh"

hashi_init
oncall_set neurology demo-neuro
hashi_start
cli_login req demo-requester
cli_login neuro demo-neuro

# sql QUERY: one value from the server's database (read only).
sql() { sqlite3 "$DATA/hashi.db" "$1" || fail "sqlite3: $1"; }
delivered() {   # receipts of demo-neuro's: "ROWS DELIVERED"
    sql "SELECT count(*) || ' ' || count(r.delivered_at)
         FROM message_receipts r JOIN users u ON u.id = r.user_id
         WHERE u.login = 'demo-neuro'"
}
NTOK=$(login demo-neuro)        # a token of its own, for GET /api/events
cursor() {      # demo-neuro's outbox: "LAST_SEQ ACKED_SEQ"
    assert_eq 200 "$(api GET /api/events?limit=1 "$NTOK")" "GET /api/events"
    jget "$T_TMP/body" '"%d %d" % (d["last_seq"], d["acked_seq"])'
}
v1_sessions() { grep -c "ws: demo-neuro (" "$T_TMP/server.log"; }

# Events for demo-neuro while it is away: 2 case.new, 3 message.new.
send_case() {
    cli req send --to neurology --priority routine --question "$1" \
        --study 1.2.826.0.1.3680043.8.498.11 2>>"$T_TMP/req.err" ||
        fail "send '$1': $(tail -2 "$T_TMP/req.err")"
}
C1=$(send_case "Waiting one")
for i in 1 2 3; do
    cli req chat "$C1" "note $i" >/dev/null 2>>"$T_TMP/req.err" ||
        fail "chat $i: $(tail -2 "$T_TMP/req.err")"
done
C2=$(send_case "Waiting two")
assert_eq "5 0" "$(cursor)" "demo-neuro's outbox before the one-shots"
assert_eq "3 0" "$(delivered)" "demo-neuro's receipts before the one-shots"

# The one-shots, as demo-neuro.
cli neuro inbox --json >"$T_TMP/inbox.json" 2>"$T_TMP/n.err" ||
    fail "inbox: $(cat "$T_TMP/n.err")"
assert_eq "$C2 $C1" "$(jget "$T_TMP/inbox.json" \
    '" ".join(c["case_id"] for c in d["cases"])')" "the inbox, newest first"
cli neuro inbox >"$T_TMP/inbox.txt" 2>"$T_TMP/n.err" ||
    fail "inbox (text): $(cat "$T_TMP/n.err")"
assert_file_has "$T_TMP/inbox.txt" "^$C1 +new +routine +neurology" \
    "the inbox as text"
cli neuro show "$C1" >"$T_TMP/show.txt" 2>"$T_TMP/n.err" ||
    fail "show: $(cat "$T_TMP/n.err")"
assert_file_has "$T_TMP/show.txt" "demo-requester: note 3" "show's thread"
assert_eq "claimed $C1" "$(cli neuro claim "$C1" 2>"$T_TMP/n.err")" \
    "claim ($(cat "$T_TMP/n.err"))"
assert_eq "sent to $C1" "$(cli neuro chat "$C1" "on it" 2>"$T_TMP/n.err")" \
    "chat ($(cat "$T_TMP/n.err"))"
assert_eq 0 "$(v1_sessions)" "hashi.v1 sessions of demo-neuro in the log"
audit_has "case.claim" "demo-neuro" "the claim, in the audit log"
audit_has "case.view" "demo-neuro" "the show, in the audit log"

# Two more events (its own claim and message), nothing acknowledged,
# nothing marked delivered.
assert_eq "7 0" "$(cursor)" "demo-neuro's outbox after the one-shots"
assert_eq "3 0" "$(delivered)" "demo-neuro's receipts after the one-shots"
cli req show "$C1" --json >"$T_TMP/req-show.json" || fail "show as req"
assert_eq "[[], [], []]" "$(jget "$T_TMP/req-show.json" \
    '[m["delivered_to"] for m in d["case"]["messages"][:3]]')" \
    "delivered_to of the requester's messages"

# The first watch: all seven, in order, once.
cli neuro watch --json --once >"$T_TMP/w.jsonl" 2>"$T_TMP/w.err" ||
    fail "watch --once: $(cat "$T_TMP/w.err")"
assert_eq "1 2 3 4 5 6 7" "$(jlines "$T_TMP/w.jsonl" \
    '" ".join(str(e["seq"]) for e in E)')" "seqs delivered to the watch"
assert_eq "case.new:$C1 message.new:$C1 message.new:$C1 message.new:$C1 \
case.new:$C2 case.claimed:$C1 message.new:$C1" "$(jlines "$T_TMP/w.jsonl" \
    '" ".join(e["kind"] + ":" + e["case_id"] for e in E)')" "kinds delivered"
assert_eq 1 "$(v1_sessions)" "hashi.v1 sessions of demo-neuro: the watch"

# Its ack (written when the session closes) is what marks them delivered.
i=0
until [ "$(cursor)" = "7 7" ]; do
    i=$((i + 1))
    [ $i -lt 50 ] || fail "no ack of 7 after the watch: $(cursor)"
    sleep 0.1
done
assert_eq "3 3" "$(delivered)" "demo-neuro's receipts after the watch"
cli req show "$C1" --json >"$T_TMP/req-show.json" || fail "show as req"
assert_eq "[['demo-neuro'], ['demo-neuro'], ['demo-neuro']]" \
    "$(jget "$T_TMP/req-show.json" \
    '[m["delivered_to"] for m in d["case"]["messages"][:3]]')" \
    "delivered_to after the watch"
pass
