# ws_closed_when_access_ends: an open hashi.v1 session ends (an error
# "unauthorized", then close 4401) when its token stops admitting it:
# after POST /api/logout of that same token, at the session's expiry time
# (no traffic needed), and when an admin disables the user from another
# process (hashi-server user disable), who then cannot log in again.
# Another session of the same user stays open and keeps getting events.
. "$(dirname "$0")/lib.sh"

hashi_setup

# ends FILE WHAT: the session in FILE ended with unauthorized + 4401.
ends() {
    assert_eq "unauthorized 4401" "$(jlines "$1" \
        '"%s %s" % (L[-2]["error"]["code"], L[-1]["code"])')" \
        "$2: last frames (error, close)"
}

# bg_session NAME TOKEN: a session in the background until the server
# closes it (20 s guard), frames in $T_TMP/NAME; its pid in $BGP.
bg_session() {
    rm -f "$T_TMP/$1.ready"
    wsc session --token "$2" --timeout 20 --ready "$T_TMP/$1.ready" \
        >"$T_TMP/$1" &
    BGP=$!
    wait_file "$T_TMP/$1.ready"
}

# -- logout: the session of that token closes, another one stays
N1=$(login demo-neuro)
N1B=$(login demo-neuro)
bg_session out "$N1"
pout=$BGP
rm -f "$T_TMP/keep.ready"
wsc session --token "$N1B" --count 1 --timeout 20 --ready "$T_TMP/keep.ready" \
    >"$T_TMP/keep" &
pkeep=$!
wait_file "$T_TMP/keep.ready"
assert_eq 200 "$(api POST /api/logout "$N1")" "logout"
wait_pid "$pout"
assert_eq 0 "$WRC" "logged-out session's client"
ends "$T_TMP/out" "after logout"
assert_eq 401 "$(api GET /api/me "$N1")" "the logged-out token over REST"
# The other session still gets live events.
R=$(login demo-requester)
assert_eq 201 "$(api POST /api/cases "$R" '{"case_id":"acc-1",
"question":"Bleed?","priority":"stat","specialty":"neurology"}')" "create"
wait_pid "$pkeep"
assert_eq 0 "$WRC" "other session's client"
assert_eq "['acc-1'] []" "$(jlines "$T_TMP/keep" \
    '"%s %s" % ([e["case_id"] for e in E],
    [m for m in L if m.get("type") in ("close", "error")])')" \
    "other session: the case pushed, no error, no close"

# -- expiry: the session's end moved 3 s ahead; it closes then, unasked
R2=$(login demo-requester)
$PY - "$DATA/hashi.db" "$R2" <<'EOF' || fail "moving the session's expiry"
import hashlib, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
sha = hashlib.sha256(sys.argv[2].encode()).hexdigest()
n = db.execute("UPDATE sessions SET expires = ? WHERE token_sha256 = ?",
               (int(time.time() * 1000) + 3000, sha)).rowcount
db.commit()
sys.exit(0 if n == 1 else 1)
EOF
bg_session exp "$R2"
wait_pid "$BGP"
assert_eq 0 "$WRC" "expired session's client"
ends "$T_TMP/exp" "at expiry"
assert_eq "session expired" \
    "$(jlines "$T_TMP/exp" 'L[-2]["error"]["message"]')" "expiry reason"

# -- disabled by the admin command (another process)
N2=$(login demo-neuro2)
bg_session dis "$N2"
pdis=$BGP
"$SERVER" user disable --data "$DATA" --login demo-neuro2 \
    >"$T_TMP/disable.out" 2>&1 ||
    fail "user disable: $(cat "$T_TMP/disable.out")"
wait_pid "$pdis"
assert_eq 0 "$WRC" "disabled user's client"
ends "$T_TMP/dis" "after user disable"
code=$(http POST /api/login "" -H 'Content-Type: application/json' \
    --data-binary '{"login":"demo-neuro2","password":"demo-password"}')
assert_eq 401 "$code" "login of the disabled user"
"$SERVER" user disable --data "$DATA" --login nobody >"$T_TMP/nobody" 2>&1
assert_eq 2 "$?" "user disable of an unknown login: exit status"
assert_file_has "$T_TMP/nobody" "no user nobody" "its message"
"$SERVER" user disable --data "$DATA" >"$T_TMP/nologin" 2>&1
assert_eq 1 "$?" "user disable without --login: exit status"

healthz_ok "the three ends"
pass
