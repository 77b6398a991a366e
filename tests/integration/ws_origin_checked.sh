# ws_origin_checked: a hashi.v1 upgrade with a foreign Origin is refused
# (HTTP 403, audited) before the WebSocket opens; the server's own origin,
# a configured one and no Origin at all (CLI, gateway) are accepted; a
# browser's hello may rely on the session cookie of the upgrade.  A bad
# token in hello is answered unauthorized and closed with 4401; garbage
# frames get their codec error and, ten in a row, close 4400.
. "$(dirname "$0")/lib.sh"

hashi_init
hashi_start --origin https://app.example.org
N=$(login demo-neuro)

assert_eq 101 "$(wsc handshake)" "upgrade without Origin"
assert_eq 101 "$(wsc handshake --origin "$HURL")" "upgrade from own origin"
assert_eq 101 "$(wsc handshake --origin "https://localhost:$HPORT")" \
    "upgrade from https://localhost:PORT"
assert_eq 101 "$(wsc handshake --origin https://app.example.org)" \
    "upgrade from a configured origin"
for o in https://evil.example "https://127.0.0.1:$((HPORT + 1))" \
    "http://127.0.0.1:$HPORT" null https://app.example.org.evil.example; do
    got=$(wsc handshake --origin "$o")
    assert_in "403 closed" "$got" "upgrade from Origin $o"
done
audit_has ws_origin_denied 'evil\.example' "audit of a refused upgrade"

# The refusal happens before any hashi.v1 frame: a session cannot start.
wsc session --origin https://evil.example --token "$N" --timeout 5 \
    >"$T_TMP/evil" 2>"$T_TMP/evil.err"
assert_eq 2 "$?" "session from a foreign origin"
assert_file_has "$T_TMP/evil.err" "handshake answered 403|handshake failed" \
    "why the foreign session failed"

# An accepted origin works end to end.
wsc session --origin "$HURL" --token "$N" --idle 1 --timeout 10 \
    >"$T_TMP/own" || fail "session from own origin"
assert_eq "demo-neuro" "$(jlines "$T_TMP/own" 'W["user"]["login"]')" \
    "welcome from own origin"

# A browser: no token in hello, the session cookie of the upgrade instead.
wsc session --origin "$HURL" --cookie "hashi_session=$N" --token "" \
    --idle 1 --timeout 10 >"$T_TMP/cookie" || fail "session with a cookie"
assert_eq "demo-neuro" "$(jlines "$T_TMP/cookie" 'W["user"]["login"]')" \
    "welcome through the session cookie"
wsc session --token "" --idle 2 --timeout 10 >"$T_TMP/nothing" ||
    fail "session without token or cookie"
assert_eq "unauthorized 4401" "$(jlines "$T_TMP/nothing" \
    '"%s %s" % (L[0]["error"]["code"], L[-1]["code"])')" \
    "hello without token or cookie"

# Bad token: unauthorized, then close 4401.
wsc session --token "0000$N" --idle 2 --timeout 10 >"$T_TMP/bad" ||
    fail "session with a bad token"
assert_eq "error unauthorized" "$(jlines "$T_TMP/bad" \
    '"%s %s" % (L[0]["type"], L[0]["error"]["code"])')" "bad token answer"
assert_eq "close 4401" "$(jlines "$T_TMP/bad" \
    '"%s %s" % (L[-1]["type"], L[-1]["code"])')" "bad token close"
assert_eq None "$(jlines "$T_TMP/bad" 'W')" "no welcome for a bad token"

# Garbage: each frame gets its code; the tenth in a row closes with 4400.
set --
for i in 1 2 3 4 5 6 7 8 9 10 11; do set -- "$@" --send "not json $i"; done
wsc session --token "$N" --idle 2 --timeout 10 \
    --send '{"type":"case.get","id":"g1"}' \
    --send '{"type":"case.zap","id":"g2","case_id":"x"}' \
    --send '{"type":"case.list","id":"g3","limit":0}' "$@" \
    >"$T_TMP/garbage" || fail "garbage session"
assert_eq "g1 missing_field" "$(jlines "$T_TMP/garbage" \
    '"%s %s" % (L[1]["id"], L[1]["error"]["code"])')" "case.get without case_id"
assert_eq "g2 unknown_type" "$(jlines "$T_TMP/garbage" \
    '"%s %s" % (L[2]["id"], L[2]["error"]["code"])')" "unknown type"
assert_eq "g3 bad_field" "$(jlines "$T_TMP/garbage" \
    '"%s %s" % (L[3]["id"], L[3]["error"]["code"])')" "limit 0"
assert_eq "7 bad_json" "$(jlines "$T_TMP/garbage" \
    '"%d %s" % (len([m for m in L if m.get("type") == "error"]),
    L[4]["error"]["code"])')" "bad_json errors until the close"
assert_eq "close 4400" "$(jlines "$T_TMP/garbage" \
    '"%s %s" % (L[-1]["type"], L[-1]["code"])')" "close after 10 bad frames"
pass
