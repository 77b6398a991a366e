#!/bin/sh
# `hashi send` of a 20-file folder over hashi.v1 uploads through a link
# that is cut every 3 s: it reconnects, asks each file's durable offset
# and sends only the rest.  Nothing is stored twice (20 instances, once),
# the bytes through the link stay within 1.1 x the folder (resumed, not
# restarted), the case shows 20 of 20, and the study has its preview.
# The same command again re-sends no file: every begin is answered
# duplicate at once.  A dead server ends with exit 2 and "pending".
. "$(dirname "$0")/lib.sh"

hashi_setup
dir=$(study send-cuts 20 --size 512 --seed 47)
folder=$(du -cb "$dir"/*.dcm | tail -1 | cut -f1)
st=$(attr_of "$(ls "$dir"/*.dcm | head -1)" StudyInstanceUID)
tok=$(login demo-requester)

# The poor link: 1.5 MB/s, cut every 3 s (the folder takes ~7 s).
linkemu_start cuts "$HPORT" --rate 1536k --cut-every 3s
login_via_link() {    # logged in directly, the saved server is the link
    cli_login req demo-requester
    sed -i "s|^server=.*|server=https://127.0.0.1:$LINK_PORT|" \
        "$T_TMP/cli-req/config"
}
login_via_link
send() {    # the folder, as demo-requester, through the link
    HASHI_CONFIG_DIR="$T_TMP/cli-req" timeout 120 "$HASHI" send \
        --to neurology --priority stat --question "Bleed?" "$dir" </dev/null
}
CASE=$(send 2>"$T_TMP/send.err") || fail "send: $(tail -3 "$T_TMP/send.err")"
linkemu_stop cuts
log "$(grep -c reconnecting "$T_TMP/send.err") reconnections"
assert_ge 2 "$(grep -c 'reconnecting' "$T_TMP/send.err")" \
    "reconnections after cuts ($(cat "$T_TMP/send.err"))"
assert_ge 2 "$(linkemu_stat cuts cuts)" "cuts of the link"
up=$(linkemu_stat cuts up_bytes)
log "folder $folder bytes, $up bytes up through the link"
assert_le $((folder * 11 / 10)) "$up" "bytes through the link (1.1 x folder)"
assert_eq 20 "$(qido_count "$tok" "/dicomweb/studies/$st/instances")" \
    "instances of the study in the index"
sqlite3 "$DATA/hashi.db" "SELECT count(*) FROM instances" >"$T_TMP/n" ||
    fail "sqlite3"
assert_eq 20 "$(cat "$T_TMP/n")" "instance rows"
assert_eq 0 "$(ls "$T_TMP/cli-req/pending" | wc -l)" "pending/ after success"
cli_login req demo-requester     # straight to the server from here
cli req show "$CASE" --json >"$T_TMP/case.json" || fail "show"
assert_eq "{'received': 20, 'expected': 20}" \
    "$(jget "$T_TMP/case.json" 'd["case"]["images"]')" "the case's images"
assert_eq "[$(printf "'%s'" "$st")]" \
    "$(jget "$T_TMP/case.json" 'd["case"]["study_uids"]')" "the case's study"
assert_eq 200 "$(http GET "/api/studies/$st/preview" "$tok")" "preview"
assert_eq ffd8ff "$(head -c 3 "$T_TMP/body" | od -An -tx1 | tr -d ' \n')" \
    "the preview is a JPEG"

# The same command again: every file answered duplicate at begin, so
# only the requests (and the new case) cross the link.
linkemu_start again "$HPORT"
login_via_link
CASE2=$(send 2>"$T_TMP/send2.err") ||
    fail "second send: $(tail -3 "$T_TMP/send2.err")"
linkemu_stop again
assert_ne "$CASE" "$CASE2" "the second send is a new case"
up2=$(linkemu_stat again up_bytes)
log "second send: $up2 bytes up"
assert_le 65536 "$up2" "bytes up for a folder the server holds"
assert_eq 20 "$(qido_count "$tok" "/dicomweb/studies/$st/instances")" \
    "instances after the second send"

# A server that is gone: bounded retries, exit 2, the case pending.
hashi_stop
send >/dev/null 2>"$T_TMP/dead.err"
assert_eq 2 "$?" "exit status with the server gone"
assert_file_has "$T_TMP/dead.err" "pending: run the same command again" \
    "the pending message"
assert_eq 1 "$(ls "$T_TMP/cli-req/pending" | wc -l)" "pending/ after a failure"
pass
