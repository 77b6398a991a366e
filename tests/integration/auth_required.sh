#!/bin/sh
# Every /api and /dicomweb route needs a session token: without one (or
# with a forged one) the answer is 401 with a JSON error, and no data.  A
# wrong password is 401 and an audit line.  The database holds neither a
# password nor a live token in plain text (checked in hashi.db and its
# WAL while the server runs, and again after it stopped).
. "$(dirname "$0")/lib.sh"

ST=$(study ct2-auth 2 --patient-id AUTH2 --seed 2) || exit 1
hashi_setup
tok=$(login demo-admin) || exit 1
assert_eq 64 "$(printf %s "$tok" | wc -c)" "token length (hex of 32 bytes)"
assert_eq 200 "$(stow "$tok" "$ST"/*.dcm)" "STOW-RS with a token"

f=$ST/CT00001.dcm
st=$(attr_of "$f" StudyInstanceUID)
se=$(attr_of "$f" SeriesInstanceUID)
sop=$(attr_of "$f" SOPInstanceUID)
inst="/dicomweb/studies/$st/series/$se/instances/$sop"

# The same routes answer 200 with the token (so a 401 below is the auth,
# not a broken route).
for p in /api/me "/dicomweb/studies" "$inst" "$inst/rendered"; do
    assert_eq 200 "$(http GET "$p" "$tok")" "GET $p with a token"
done

forged=$(printf '%064d' 0)
for p in /api/me "/dicomweb/studies" "/dicomweb/studies?PatientID=AUTH2" \
        "/dicomweb/studies/$st/series" "/dicomweb/studies/$st/series/$se/instances" \
        "$inst" "$inst/rendered?window=40,80,linear"; do
    for t in "" "$forged" "${tok%?}x"; do
        [ "$p$t" = /api/me ] && continue    # no session: {"user": null}
        code=$(http GET "$p" "$t")
        assert_eq 401 "$code" "GET $p with token '${t:-none}'"
        $PY - "$T_TMP/body" <<'EOF' || fail "401 body of GET $p: $(cat "$T_TMP/body")"
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert isinstance(e["code"], str) and e["code"], e
assert isinstance(e["message"], str) and e["message"], e
EOF
        assert_file_lacks "$T_TMP/body" "$st" "401 body leaking the study UID"
    done
done
code=$(http POST /dicomweb/studies "" -T "$f" \
    -H 'Content-Type: multipart/related; type="application/dicom"; boundary=x')
assert_eq 401 "$code" "STOW-RS without a token"
# A Basic header or a token in the query string is not a session.
code=$(http GET "/dicomweb/studies?access_token=$tok" "" )
assert_eq 401 "$code" "token in the query string"
code=$(http GET /dicomweb/studies "" -u "demo-admin:$DEMO_PASSWORD")
assert_eq 401 "$code" "HTTP Basic with the right password"
# /api/me says who is logged in: nobody, without a session (no 401 for a
# page asking on a fresh load).
assert_eq 200 "$(http GET /api/me "")" "/api/me without a token"
assert_eq null "$(jget "$T_TMP/body" 'json.dumps(d["user"])')" \
    "/api/me's user without a token"
# /healthz needs none.
assert_eq 200 "$(http GET /healthz "")" "/healthz without a token"

# ---- a wrong password: 401, audited; the right one still works after
code=$(http POST /api/login "" -H 'Content-Type: application/json' \
    --data-binary '{"login":"demo-neuro","password":"not-the-password"}')
assert_eq 401 "$code" "login with a wrong password"
assert_file_lacks "$T_TMP/body" token "401 login reply"
code=$(http POST /api/login "" -H 'Content-Type: application/json' \
    --data-binary '{"login":"nobody-at-all","password":"x"}')
assert_eq 401 "$code" "login of an unknown user"
audit_has login_failed 'demo-neuro' "audit of the failed login"
audit_has login_failed 'nobody-at-all' "audit of the unknown-user login"
audit_has login 'demo-admin' "audit of the good login"
neuro=$(login demo-neuro) || exit 1

# ---- secrets at rest: hashi.db, -wal, -shm (while running and after stop)
secrets_absent() {    # when
    for db in "$DATA"/hashi.db*; do
        $PY - "$db" "$DEMO_PASSWORD" "$tok" "$neuro" <<'EOF' ||
import sys
data = open(sys.argv[1], "rb").read()
for s in sys.argv[2:]:
    for form in (s.encode(), s.encode("utf-16-le"),
                 bytes.fromhex(s) if len(s) == 64 else b""):
        if form and form in data:
            sys.exit("%s contains %r" % (sys.argv[1], form[:16]))
EOF
            fail "a secret in plain text in $db ($1)"
    done
}
ls "$DATA"/hashi.db >/dev/null || fail "no hashi.db"
secrets_absent "running"
hashi_stop || fail "server needed SIGKILL"
secrets_absent "stopped"
# The password is stored, as scrypt, somewhere in the database.
sqlite3 "$DATA/hashi.db" .dump >"$T_TMP/dump.sql" ||
    fail "sqlite3 .dump failed"
assert_file_has "$T_TMP/dump.sql" 'scrypt\$17\$8\$1\$' "scrypt hashes stored"
assert_file_lacks "$T_TMP/dump.sql" "$DEMO_PASSWORD" "password in the dump"
assert_file_lacks "$T_TMP/dump.sql" "$tok" "token in the dump"

pass
