#!/bin/sh
# Web Push end to end against push_emulator.py (TLS on loopback): the
# neurologist's device subscribes; a STAT case makes one push that the
# emulator decrypts (RFC 8291) to {kind, case_id, priority} and nothing
# more, with a valid VAPID JWT (ES256, aud = the emulator's origin, exp
# within 24 h) signed by the server's key, Urgency high, TTL, a Topic; a
# routine case is Urgency normal.  A device whose endpoint answers 410 is
# removed; one unsubscribed gets nothing more; bad subscriptions are 400.
. "$(dirname "$0")/lib.sh"

hashi_init
oncall_set neurology demo-neuro
push_emu_start
hashi_start --push-ca "$PUSH_CA" --push-allow 127.0.0.1
N=$(login demo-neuro)
R=$(login demo-requester)
db() { sqlite3 "$DATA/hashi.db" "$1"; }

assert_eq 200 "$(api GET /api/push/vapid-public-key "$N")" "VAPID key"
VKEY=$(jget "$T_TMP/body" 'd["key"]')
assert_eq 87 "${#VKEY}" "VAPID key length (65 bytes, base64url)"
assert_eq 600 "$(stat -c %a "$DATA/vapid.pem")" "vapid.pem mode"

# -- bad subscriptions
assert_eq 400 "$(api POST /api/push/subscriptions "$N" \
    '{"endpoint":"http://127.0.0.1/x","keys":{"p256dh":"BCVx","auth":"AAAA"}}')" \
    "plain-http endpoint"
P256=$(jget "$PUSH_KEYS" 'd["p256dh"]')
AUTH=$(jget "$PUSH_KEYS" 'd["auth"]')
BAD=$($PY -c 'import sys; k = sys.argv[1]; print(k[:-3] + ("A" if k[-3] != "A" else "B") + k[-2:])' "$P256")
assert_eq 400 "$(api POST /api/push/subscriptions "$N" \
    "{\"endpoint\":\"$PUSH_URL/p/x\",\"keys\":{\"p256dh\":\"$BAD\",\"auth\":\"$AUTH\"}}")" \
    "p256dh off the curve"
assert_eq 400 "$(api POST /api/push/subscriptions "$N" \
    "{\"endpoint\":\"$PUSH_URL/p/x\",\"keys\":{\"p256dh\":\"$P256\",\"auth\":\"AAAA\"}}")" \
    "auth of 3 bytes"
assert_eq 0 "$(db 'SELECT count(*) FROM push_subscriptions')" \
    "nothing stored from bad subscriptions"

assert_eq 201 "$(push_subscribe "$N" push/dev1)" "subscribe dev1"

new_case() {    # ID PRIORITY
    assert_eq 201 "$(api POST /api/cases "$R" "{\"case_id\":\"$1\",
\"question\":\"Bleed? (patient Jane Roe)\",\"priority\":\"$2\",
\"specialty\":\"neurology\",\"patient_age\":71}")" "case $1"
}

# -- a STAT case
new_case push-stat-1 stat
wait_grep "$PUSH_LOG" '"push-stat-1' 10
L="$T_TMP/l.jsonl"
grep '/push/dev1' "$PUSH_LOG" >"$L"
assert_eq 1 "$(jlines "$L" 'len(L)')" "one push for the STAT case"
assert_eq "True None $VKEY $PUSH_URL" "$(jlines "$L" \
    '" ".join(str(L[0][k]) for k in ("vapid_ok", "vapid_error", "k", "aud"))')" \
    "VAPID: valid ES256 JWT by the server's key, aud the push origin"
assert_eq '{"case_id": "push-stat-1", "kind": "case.new", "priority": "stat"}' \
    "$(jlines "$L" 'json.dumps(json.loads(L[0]["payload"]), sort_keys=True)')" \
    "decrypted payload: case id, kind, priority and nothing else"
assert_eq "high 86400 aes128gcm 32" "$(jlines "$L" '"%s %s %s %d" % (
    L[0]["urgency"], L[0]["ttl"], L[0]["content_encoding"], len(L[0]["topic"]))')" \
    "Urgency, TTL, Content-Encoding, Topic"

# -- a routine one: not urgent
new_case push-routine-1 routine
wait_grep "$PUSH_LOG" '"push-routine-1' 10
assert_eq normal "$(jlines "$PUSH_LOG" \
    '[x for x in L if "push-routine-1" in (x["payload"] or "")][0]["urgency"]')" \
    "routine case Urgency"

# -- 410: the device is removed
assert_eq 201 "$(push_subscribe "$N" gone/dev2)" "subscribe dev2"
assert_eq 2 "$(db 'SELECT count(*) FROM push_subscriptions')" "two devices"
new_case push-stat-2 stat
wait_grep "$T_TMP/server.log" 'subscription [0-9]+ removed \(push service: 410\)' 10
assert_eq "$PUSH_URL/push/dev1" \
    "$(db 'SELECT endpoint FROM push_subscriptions')" "only dev1 is left"
assert_eq 2 "$(grep -c '"push-stat-2' "$PUSH_LOG")" \
    "push-stat-2 went to both devices (dev2 answered 410)"

# -- unsubscribed: nothing more for dev1; dev3 proves the push happened
assert_eq 200 "$(api DELETE /api/push/subscriptions "$N" \
    "{\"endpoint\":\"$PUSH_URL/push/dev1\"}")" "unsubscribe dev1"
assert_eq 1 "$(jget "$T_TMP/body" 'd["removed"]')" "one removed"
assert_eq 201 "$(push_subscribe "$N" push/dev3)" "subscribe dev3"
new_case push-stat-3 stat
wait_grep "$PUSH_LOG" '/push/dev3.*"push-stat-3' 10
assert_eq 0 "$(grep '/push/dev1' "$PUSH_LOG" | grep -c 'push-stat-3')" \
    "no push to the unsubscribed device"

# -- messages: the other side's wakes the phone, one's own does not
assert_eq 201 "$(api POST /api/cases/push-stat-3/messages "$N" \
    '{"message_id":"pm-1","text":"Looking now."}')" "neurologist writes"
assert_eq 201 "$(api POST /api/cases/push-stat-3/messages "$R" \
    '{"message_id":"pm-2","text":"Thanks."}')" "requester writes"
wait_grep "$PUSH_LOG" '/push/dev3.*message.new' 10
assert_eq 1 "$(grep -c 'message.new' "$PUSH_LOG")" \
    "one message push (the requester's), none for one's own"
assert_eq 0 "$(grep -c 'decrypt_error": "' "$PUSH_LOG")" "every body decrypted"
pass
