# login_limit_exact_in_parallel: the login limit (5 failures per name in
# 15 minutes) holds exactly when the attempts come at once and run on the
# worker pool in parallel: of 15 simultaneous wrong logins, exactly 5 get
# their password checked (401, audited login_failed, 5 rows in
# login_failures) and 10 are refused with 429 and no password check
# (audited login_rate_limited).  The name stays locked for the right
# password too; another name is untouched.
. "$(dirname "$0")/lib.sh"

hashi_setup

for i in $(seq 1 15); do
    curl -sS --cacert "$CACERT" -H 'Expect:' -o "$T_TMP/login$i.json" \
        -w '%{http_code}\n' --max-time 120 \
        -H 'Content-Type: application/json' \
        --data-binary '{"login":"demo-neuro","password":"wrong-password"}' \
        "$HURL/api/login" >"$T_TMP/login$i.out" 2>&1 &
    pids="${pids:-} $!"
done
for p in $pids; do wait_pid "$p" 120; done    # not `wait`: the server too
codes=$(cat "$T_TMP"/login*.out | sort | uniq -c | awk '{ print $2 "x" $1 }' |
    tr '\n' ' ')
assert_eq "401x5 429x10 " "$codes" "answers to 15 parallel wrong logins"
for i in $(seq 1 15); do
    case $(cat "$T_TMP/login$i.out") in
        401) want=unauthorized ;;
        *) want=rate_limited ;;
    esac
    assert_eq "$want" "$(jget "$T_TMP/login$i.json" 'd["error"]["code"]')" \
        "error code of login $i"
done

n_audit() {
    grep -E "\"action\": *\"$1\"" "$DATA/audit.log" | grep -c demo-neuro
}
assert_eq 5 "$(n_audit login_failed)" "login_failed audit lines"
assert_eq 10 "$(n_audit login_rate_limited)" "login_rate_limited audit lines"
assert_eq 5 "$(sqlite3 "$DATA/hashi.db" \
    "SELECT count(*) FROM login_failures WHERE login = 'demo-neuro'")" \
    "failures recorded for demo-neuro"

assert_eq 429 "$(http POST /api/login "" -H 'Content-Type: application/json' \
    --data-binary "{\"login\":\"demo-neuro\",\"password\":\"$DEMO_PASSWORD\"}")" \
    "the right password while locked"
login demo-neuro2 >/dev/null || fail "another name while demo-neuro is locked"
pass
