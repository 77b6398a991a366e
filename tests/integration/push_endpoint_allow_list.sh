#!/bin/sh
# Web Push cannot be turned against the hospital's own network: without
# --push-allow, only the public push services' hosts may be subscribed
# (400 push_service_not_allowed for the emulator on 127.0.0.1, a private
# or metadata address, look-alike names), nothing refused is stored; a
# subscription that got in under another --push-allow (a row written
# straight into the database here) is not pushed to, and the log says
# why.  Restarted with --push-allow 127.0.0.1, the same device gets the
# next STAT case.
. "$(dirname "$0")/lib.sh"

hashi_init
oncall_set neurology demo-neuro
push_emu_start
hashi_start --push-ca "$PUSH_CA"
N=$(login demo-neuro)
R=$(login demo-requester)
db() { sqlite3 "$DATA/hashi.db" "$1"; }
P256=$(jget "$PUSH_KEYS" 'd["p256dh"]')
AUTH=$(jget "$PUSH_KEYS" 'd["auth"]')
sub() {     # ENDPOINT: the status of its subscription by demo-neuro
    api POST /api/push/subscriptions "$N" "{\"endpoint\":\"$1\",
\"keys\":{\"p256dh\":\"$P256\",\"auth\":\"$AUTH\"}}"
}

# -- refused: not a push service
for ep in "$PUSH_URL/push/dev1" https://10.0.0.1/push/x \
    https://169.254.169.254/latest/meta-data https://[::1]:8443/x \
    https://localhost/x https://notify.windows.com/w/x \
    https://fcm.googleapis.com.evil.example/fcm/send/x \
    https://evilfcm.googleapis.com/fcm/send/x; do
    assert_eq 400 "$(sub "$ep")" "subscription to $ep"
    assert_eq push_service_not_allowed "$(jget "$T_TMP/body" \
        'd["error"]["code"]')" "error code for $ep"
done
WHY='evilfcm.googleapis.com is not a push service'
assert_eq True "$(jget "$T_TMP/body" "'$WHY' in d['error']['message']")" \
    "the message names the refused host"
assert_eq 0 "$(db 'SELECT count(*) FROM push_subscriptions')" \
    "nothing stored from refused subscriptions"

# -- accepted: the public services (any case; *.notify.windows.com)
for ep in https://fcm.googleapis.com/fcm/send/abc \
    https://FCM.googleapis.com/fcm/send/abd \
    https://updates.push.services.mozilla.com/wpush/v2/x \
    https://wns2-by3p.notify.windows.com/w/?token=x \
    https://web.push.apple.com/QG9x; do
    assert_eq 201 "$(sub "$ep")" "subscription to $ep"
done
assert_eq 5 "$(db 'SELECT count(*) FROM push_subscriptions')" \
    "five public-service devices"
# (unreachable from here: removed so that no push waits on their DNS)
db 'DELETE FROM push_subscriptions'

# -- a row from before: kept, never pushed to
db "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, created)
    VALUES ((SELECT id FROM users WHERE login = 'demo-neuro'),
            '$PUSH_URL/push/old', '$P256', '$AUTH', 0)"
assert_eq 201 "$(api POST /api/cases "$R" '{"case_id":"allow-1",
"question":"Bleed?","priority":"stat","specialty":"neurology"}')" "case allow-1"
wait_grep "$T_TMP/server.log" \
    'refused: 127.0.0.1 is not an allowed push service' 10
assert_eq 0 "$(grep -c allow-1 "$PUSH_LOG")" "no push reached 127.0.0.1"
assert_eq 1 "$(db 'SELECT count(*) FROM push_subscriptions')" \
    "the device is kept (another configuration may allow it)"

# -- --push-allow 127.0.0.1: the same device is pushed to
hashi_stop
hashi_start --push-ca "$PUSH_CA" --push-allow 127.0.0.1
assert_eq 201 "$(api POST /api/cases "$R" '{"case_id":"allow-2",
"question":"Bleed?","priority":"stat","specialty":"neurology"}')" "case allow-2"
wait_grep "$PUSH_LOG" '/push/old.*"allow-2' 10
assert_eq '{"case_id": "allow-2", "kind": "case.new", "priority": "stat"}' \
    "$(jlines "$PUSH_LOG" 'json.dumps(json.loads(L[0]["payload"]),
                                      sort_keys=True)')" \
    "the emulator decrypted the push for allow-2"
assert_eq 201 "$(sub "$PUSH_URL/push/dev1")" "subscription to the emulator"
pass
