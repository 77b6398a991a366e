#!/bin/sh
# A login's scrypt (about 0.4 s of CPU) runs on a worker thread, not on
# the event loop: while four logins are being checked, /healthz still
# answers at once.  The logins themselves still work (good password ->
# token that opens /api/me; wrong one -> 401 and an audit line), and a
# client that hangs up during its login does not upset the server.
. "$(dirname "$0")/lib.sh"

hashi_setup

# Four logins at once (two right, two wrong), in the background.
for i in 1 2 3 4; do
    pw=$DEMO_PASSWORD
    [ $((i % 2)) = 0 ] && pw=wrong-password
    curl -sS --cacert "$CACERT" -H 'Expect:' -o "$T_TMP/login$i.json" \
        -w '%{http_code} %{time_total}\n' --max-time 60 \
        -H 'Content-Type: application/json' \
        --data-binary "{\"login\":\"demo-admin\",\"password\":\"$pw\"}" \
        "$HURL/api/login" >"$T_TMP/login$i.out" 2>&1 &
    eval "lp$i=\$!"
done
sleep 0.05
# Meanwhile the loop answers; each probe is timed by curl.
: >"$T_TMP/probes"
for i in 1 2 3 4 5 6 7 8; do
    curl -sS --cacert "$CACERT" -o /dev/null -w '%{http_code} %{time_total}\n' \
        --max-time 10 "$HURL/healthz" >>"$T_TMP/probes"
    sleep 0.02
done
probes_done=$(date +%s.%N)
wait "$lp1" "$lp2" "$lp3" "$lp4"
logins_done=$(date +%s.%N)
log "probes: $(awk '{ printf "%s ", $2 }' "$T_TMP/probes")"
log "logins: $(cat "$T_TMP"/login?.out | awk '{ printf "%s(%s) ", $1, $2 }')"
awk '$1 != 200 { exit 1 }' "$T_TMP/probes" || fail "a /healthz probe failed: $(cat "$T_TMP/probes")"
# The logins were still running when the probes were done (else this
# proves nothing), and no probe waited for a scrypt.
awk -v a="$probes_done" -v b="$logins_done" 'BEGIN { exit !(b > a) }' ||
    fail "the logins were over before the probes: nothing overlapped"
slow=$(awk '$2 > 0.25 { n++ } END { print n + 0 }' "$T_TMP/probes")
assert_eq 0 "$slow" "/healthz probes slower than 0.25 s during the logins"

for i in 1 3; do
    assert_eq 200 "$(cut -d' ' -f1 "$T_TMP/login$i.out")" "login $i (right password)"
    tok=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' \
        "$T_TMP/login$i.json") || fail "login $i: no token"
    assert_eq 200 "$(http GET /api/me "$tok")" "/api/me with login $i's token"
    assert_file_has "$T_TMP/body" '"demo-admin"' "/api/me names the user"
done
for i in 2 4; do
    assert_eq 401 "$(cut -d' ' -f1 "$T_TMP/login$i.out")" "login $i (wrong password)"
done
audit_has login_failed demo-admin "audit line of a failed login"

# A client that gives up in the middle of its login.
curl -sS --cacert "$CACERT" -o /dev/null --max-time 0.1 \
    -H 'Content-Type: application/json' \
    --data-binary "{\"login\":\"demo-admin\",\"password\":\"$DEMO_PASSWORD\"}" \
    "$HURL/api/login" 2>/dev/null
sleep 1
healthz_ok "a login abandoned by its client"
tok=$(login demo-admin) || exit 1
assert_eq 200 "$(http GET /api/me "$tok")" "/api/me after all that"
pass
