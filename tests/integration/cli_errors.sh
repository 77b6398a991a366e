#!/bin/sh
# The hashi CLI's failures: one clear line on stderr and the documented
# exit status — 1 bad usage, 2 server or network error (refusals such as
# "not found" included), 3 authentication.
. "$(dirname "$0")/lib.sh"

hashi_setup

# expect STATUS REGEX NAME ARGS...: run `hashi ARGS` as NAME, check the exit
# status and that stderr matches REGEX in one line starting "hashi: ".
expect() {
    _want=$1; _re=$2; _who=$3; shift 3
    cli "$_who" "$@" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null
    _got=$?
    assert_eq "$_want" "$_got" "exit status of 'hashi $*' ($(cat "$T_TMP/err"))"
    grep -Eq -- "^hashi: .*$_re" "$T_TMP/err" ||
        fail "'hashi $*': stderr '$(cat "$T_TMP/err")' lacks '$_re'"
}

# usage: 1, before anything touches the network or the state
expect 1 "unknown command" nobody frobnicate
expect 1 "CASE argument missing" nobody claim
expect 1 "unknown option --bogus" nobody inbox --bogus
expect 1 "--priority" nobody send --to neurology --priority soon \
    --question q --study 1.2.3
expect 1 "--question" nobody send --to neurology --priority stat --study 1.2.3
expect 1 "either files or --study" nobody send --to neurology \
    --priority stat --question q --study 1.2.3 /etc/hostname
expect 1 "--patient-age" nobody send --to neurology --priority stat \
    --question q --patient-age 200 --study 1.2.3
expect 1 "not a case id" nobody show '../etc'
expect 1 "--server URL and --user" nobody login --server "$HURL"
expect 1 "password" nobody login --server "$HURL" --user demo-neuro
cli nobody 2>/dev/null; assert_eq 1 "$?" "exit status of a bare 'hashi'"
[ ! -e "$T_TMP/cli-nobody/config" ] || fail "usage errors wrote a config"

# authentication: 3
expect 3 "not logged in" nobody inbox
echo "wrong-password" >"$T_TMP/pw"
cli nobody login --server "$HURL" --user demo-neuro --password-stdin \
    --cacert "$CACERT" <"$T_TMP/pw" >/dev/null 2>"$T_TMP/err"
assert_eq 3 "$?" "exit status of a wrong password"
assert_eq "hashi: login: wrong login or password" "$(cat "$T_TMP/err")" \
    "the wrong-password error"
[ ! -e "$T_TMP/cli-nobody/config" ] || fail "a failed login wrote a config"

cli_login neuro demo-neuro
cli_login req demo-requester
assert_eq 600 "$(stat -c %a "$T_TMP/cli-neuro/config")" "config file mode"
assert_eq 700 "$(stat -c %a "$T_TMP/cli-neuro")" "config dir mode"

# A revoked token (logout elsewhere with a copy of the login): 3.
cp "$T_TMP/cli-neuro/config" "$T_TMP/config.copy"
cli neuro logout >/dev/null || fail "logout"
[ ! -e "$T_TMP/cli-neuro/config" ] || fail "logout left the config"
cp "$T_TMP/config.copy" "$T_TMP/cli-neuro/config"
expect 3 "refused" neuro inbox
cli_login neuro demo-neuro

# server-side refusals: 2
expect 2 "case 0123456789abcdef0123456789abcdef not found" neuro show \
    0123456789abcdef0123456789abcdef
expect 2 "not found" neuro claim 0123456789abcdef0123456789abcdef
expect 2 "not found" neuro get 0123456789abcdef0123456789abcdef \
    --out "$T_TMP/none"
CASE=$(cli req send --to neurology --priority routine --question "Errors" \
    --study 1.2.826.0.1.3680043.8.498.5) || fail "send"
expect 2 "specialist" req claim "$CASE"      # a requester may not claim
expect 2 "claim" neuro answer "$CASE" "no claim yet"
expect 2 "dermatology" req send --to dermatology \
    --priority routine --question "Nobody" --study 1.2.3
# files: one that is not DICOM stops the send before anything goes out (1);
# another clinic's study is refused at its study.expect (2), nothing sent
dir=$(study cli-errors 2 --size 64 --seed 59)
mkdir "$T_TMP/mixed" && cp "$dir"/*.dcm "$T_TMP/mixed/" &&
    echo "not an image" >"$T_TMP/mixed/zz-notes.txt"
expect 1 "zz-notes.txt: not DICOM" req send --to neurology --priority stat \
    --question q "$T_TMP/mixed"
[ -z "$(ls "$DATA/uploads")" ] || fail "a refused send left uploads"
tok=$(login demo-requester)
assert_in "200 202" "$(stow "$tok" "$dir"/*.dcm)" "STOW by clinic A"
# other bytes under a stored SOP Instance UID: that file is not stored
# (kept aside as a conflict), the case exists, exit 2 naming the file
mkdir "$T_TMP/other" && $PY -c 'import sys, pydicom
d = pydicom.dcmread(sys.argv[1]); d.PatientName = "Other^Bytes"
d.save_as(sys.argv[2])' "$(ls "$dir"/*.dcm | head -1)" "$T_TMP/other/x.dcm" ||
    fail "making a conflicting file"
expect 2 "1 file\(s\) not stored, e.g. .*/x.dcm: the server holds other \
bytes under its SOP Instance UID" req send --to neurology --priority stat \
    --question conflict "$T_TMP/other"
assert_eq 1 "$(sed -n '$=' "$T_TMP/out")" "the case id printed all the same"
user_add req-b "Clinic B" requester
cli_login reqb req-b
expect 2 "study.expect: .*no such study" reqb send --to neurology \
    --priority stat --question q "$dir"

# TLS: a CA that did not sign the server's certificate: 2, nothing saved.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T_TMP/other.key" \
    -out "$T_TMP/other.pem" -days 1 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 ||
    fail "openssl req"
echo "$DEMO_PASSWORD" >"$T_TMP/pw"
cli tls login --server "$HURL" --user demo-neuro --password-stdin \
    --cacert "$T_TMP/other.pem" <"$T_TMP/pw" >/dev/null 2>"$T_TMP/err"
assert_eq 2 "$?" "exit status with a foreign CA"
assert_file_has "$T_TMP/err" "not trusted" "the TLS error"
[ ! -e "$T_TMP/cli-tls/config" ] || fail "a TLS failure wrote a config"
# ... and the system CAs do not know the development certificate either.
cli tls login --server "$HURL" --user demo-neuro --password-stdin \
    <"$T_TMP/pw" >/dev/null 2>"$T_TMP/err"
assert_eq 2 "$?" "exit status without --cacert"
assert_file_has "$T_TMP/err" "not trusted" "the TLS error without --cacert"
# ... and by the name localhost, which the certificate also carries.
cli tls login --server "https://localhost:$HPORT" --user demo-neuro \
    --password-stdin --cacert "$CACERT" <"$T_TMP/pw" >/dev/null 2>&1 ||
    fail "login by the name localhost"

# the server down: 2
hashi_stop
expect 2 "cannot connect" neuro inbox
expect 2 "cannot connect" neuro watch --once
expect 2 "cannot connect" neuro claim "$CASE"
pass
