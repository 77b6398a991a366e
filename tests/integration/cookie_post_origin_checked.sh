# cookie_post_origin_checked: a cookie-authenticated POST from a foreign
# Origin -- "null" (sandboxed frame, file: page, cross-origin redirect)
# included -- is refused with 403 JSON and changes nothing; from the
# server's own origin, a configured one, or with no Origin it goes
# through.  The same Origin rule as the hashi.v1 upgrade (the upgrade
# from "null" is refused too); a bearer token is not a cookie and is not
# Origin-checked; GET is not state-changing and passes.
. "$(dirname "$0")/lib.sh"

hashi_init
hashi_start --origin https://app.example.org
tok=$(login demo-neuro) || exit 1
C="Cookie: hashi_session=$tok"

me() { http GET /api/me "" -H "$C"; }

for o in null https://evil.example "http://127.0.0.1:$HPORT" \
    "https://127.0.0.1:$((HPORT + 1))"; do
    code=$(http POST /api/logout "" -H "$C" -H "Origin: $o")
    assert_eq 403 "$code" "cookie POST from Origin $o"
    assert_eq forbidden "$(jget "$T_TMP/body" 'd["error"]["code"]')" \
        "error code of the cookie POST from Origin $o"
    assert_eq 200 "$(me)" "the session after a refused logout from $o"
done
assert_in "403 closed" "$(wsc handshake --origin null)" \
    "hashi.v1 upgrade from Origin null (the same rule)"

# Not state-changing, or not a cookie: not Origin-checked.
assert_eq 200 "$(http GET /api/me "" -H "$C" -H 'Origin: null')" \
    "cookie GET from Origin null"
other=$(login demo-neuro) || exit 1
assert_eq 200 "$(http POST /api/logout "$other" -H 'Origin: null')" \
    "bearer POST from Origin null"
assert_eq 401 "$(http GET /api/me "$other")" "the bearer session after logout"

# Accepted origins: the configured one, no Origin, the server's own.
t2=$(login demo-neuro) || exit 1
assert_eq 200 "$(http POST /api/logout "" -H "Cookie: hashi_session=$t2" \
    -H 'Origin: https://app.example.org')" "cookie POST from a configured origin"
assert_eq 401 "$(http GET /api/me "$t2")" "session after a configured-origin logout"
t3=$(login demo-neuro) || exit 1
assert_eq 200 "$(http POST /api/logout "" -H "Cookie: hashi_session=$t3")" \
    "cookie POST without Origin"
assert_eq 401 "$(http GET /api/me "$t3")" "session after a logout without Origin"
assert_eq 200 "$(http POST /api/logout "" -H "$C" -H "Origin: $HURL")" \
    "cookie POST from the server's own origin"
assert_eq 200 "$(me)" "/api/me with the cookie after its own-origin logout"
assert_eq null "$(jget "$T_TMP/body" 'json.dumps(d["user"])')" \
    "the cookie session after its own-origin logout: no user"
pass
