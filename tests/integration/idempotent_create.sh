#!/bin/sh
# The same create sent twice makes one case: (1) twice with the same
# --case-id; (2) a send cut off by the server being down leaves its case id
# pending in the CLI's state, and the same command run again sends that
# same id (one case), then forgets it.
. "$(dirname "$0")/lib.sh"

hashi_setup
cli_login req demo-requester
SUID=1.2.826.0.1.3680043.8.498.42
ID=0123456789abcdef0123456789abcdef

send_it() {     # extra args
    cli req send --to neurology --priority urgent --question "Twice?" \
        --patient-age 40 --patient-sex M --study "$SUID" "$@"
}

a=$(send_it --case-id "$ID") || fail "first send"
b=$(send_it --case-id "$ID") || fail "second send"
assert_eq "$ID $ID" "$a $b" "case ids printed"
cli req inbox --json >"$T_TMP/inbox.json" || fail "inbox"
assert_eq 1 "$(jget "$T_TMP/inbox.json" 'len(d["cases"])')" "cases in the inbox"
assert_eq "$ID|urgent|Twice?" "$(jget "$T_TMP/inbox.json" \
    '"|".join([d["cases"][0]["case_id"], d["cases"][0]["priority"],
    d["cases"][0]["question"]])')" "the one case"

# A cut: the server is down while the case is sent.
hashi_stop
send_it >"$T_TMP/cut.out" 2>"$T_TMP/cut.err"
rc=$?
assert_eq 2 "$rc" "exit status of a send with the server down"
assert_file_has "$T_TMP/cut.err" "pending" "the error says the case is pending"
PEND=$(sed -n 's/.*the case \([0-9a-f]*\) is pending.*/\1/p' "$T_TMP/cut.err")
assert_eq 32 "${#PEND}" "pending case id in the message ($(cat "$T_TMP/cut.err"))"
assert_eq 1 "$(ls "$T_TMP/cli-req/pending" | wc -l)" "files in pending/"
assert_file_has "$T_TMP/cli-req/pending/"*.json "$PEND" "pending file holds the id"

hashi_start
c=$(send_it 2>"$T_TMP/retry.err") || fail "retry: $(cat "$T_TMP/retry.err")"
assert_eq "$PEND" "$c" "the retry sends the pending case id"
assert_file_has "$T_TMP/retry.err" "resending pending case $PEND" "retry notice"
assert_eq 0 "$(ls "$T_TMP/cli-req/pending" | wc -l)" "pending/ after success"
# ... once more: the server already has it, and the CLI says the same id.
d=$(send_it --case-id "$PEND") || fail "send of a confirmed case id"
assert_eq "$PEND" "$d" "the same id again"
cli req inbox --json >"$T_TMP/inbox.json" || fail "inbox"
assert_eq 2 "$(jget "$T_TMP/inbox.json" 'len(d["cases"])')" \
    "cases in the inbox after the cut and the retries"
assert_eq 1 "$(jget "$T_TMP/inbox.json" \
    'sum(1 for c in d["cases"] if c["case_id"] == "'"$PEND"'")')" \
    "cases with the pending id"

# A new send of the same content after success is a new case (new id).
e=$(send_it) || fail "third send"
assert_ne "$PEND" "$e" "a new send gets a new id"
pass
