# ws_subprotocol_required: a WebSocket upgrade that does not offer the
# hashi.v1 subprotocol -- none at all, or "http" (the name of the plain
# HTTP protocol lws would otherwise bind it to) -- is refused with HTTP
# 400 and a JSON reason before the upgrade (PROTOCOL.md 1); an offer
# that includes hashi.v1 among others is accepted and hashi.v1 selected,
# and a session then works as usual.  A refused Origin is JSON too.
. "$(dirname "$0")/lib.sh"

hashi_setup
N=$(login demo-neuro) || exit 1

for p in "" http; do
    assert_eq 400 "$(wsc handshake --protocol "$p" --body "$T_TMP/refused")" \
        "upgrade offering '${p:-no subprotocol}'"
    assert_eq subprotocol_required \
        "$(jget "$T_TMP/refused" 'd["error"]["code"]')" \
        "reason of the refusal for '${p:-no subprotocol}'"
done
# Only other names: lws 4.1.6 closes before any callback can answer.
assert_in "400 closed" "$(wsc handshake --protocol chat)" \
    "upgrade offering only another subprotocol"
assert_eq 400 "$(wsc handshake --protocol "" --origin "$HURL")" \
    "no subprotocol, own Origin"
assert_eq 403 "$(wsc handshake --origin https://evil.example \
    --body "$T_TMP/evil")" "a foreign Origin"
assert_eq forbidden "$(jget "$T_TMP/evil" 'd["error"]["code"]')" \
    "reason of the Origin refusal"

assert_eq 101 "$(wsc handshake)" "upgrade offering hashi.v1"
assert_eq 101 "$(wsc handshake --protocol "chat, hashi.v1")" \
    "upgrade offering hashi.v1 among others"
wsc session --token "$N" --idle 1 --timeout 10 >"$T_TMP/ok" ||
    fail "a hashi.v1 session"
assert_eq demo-neuro "$(jlines "$T_TMP/ok" 'W["user"]["login"]')" \
    "welcome over hashi.v1"
healthz_ok "the refused upgrades"
pass
