#!/bin/sh
# Two specialists claim one case at the same moment (two `hashi claim` in
# the background): exactly one exits 0, the other exits 2 with a clear
# "already claimed by <winner>" error.  Five rounds, so a lucky ordering
# does not pass by chance; the server's record agrees with the winner.
. "$(dirname "$0")/lib.sh"

hashi_setup               # no on-call list: every neurologist gets the case
cli_login req demo-requester
cli_login n1 demo-neuro
cli_login n2 demo-neuro2

wins1=0
wins2=0
for round in 1 2 3 4 5; do
    CASE=$(cli req send --to neurology --priority stat \
        --question "Race $round" --study 1.2.826.0.1.3680043.8.498.9) ||
        fail "send round $round"
    cli n1 claim "$CASE" >"$T_TMP/c1.out" 2>"$T_TMP/c1.err" &
    P1=$!
    cli n2 claim "$CASE" >"$T_TMP/c2.out" 2>"$T_TMP/c2.err" &
    P2=$!
    wait_pid $P1 20; R1=$WRC
    wait_pid $P2 20; R2=$WRC
    log "round $round: demo-neuro $R1, demo-neuro2 $R2"
    case "$R1 $R2" in
        "0 2") win=demo-neuro; lose=c2; wins1=$((wins1 + 1)) ;;
        "2 0") win=demo-neuro2; lose=c1; wins2=$((wins2 + 1)) ;;
        *) fail "round $round: exit statuses $R1 and $R2 (want one 0 and \
one 2): $(cat "$T_TMP/c1.err" "$T_TMP/c2.err")" ;;
    esac
    assert_eq "hashi: claim: already claimed by $win" \
        "$(cat "$T_TMP/$lose.err")" "the loser's error"
    assert_eq "" "$(cat "$T_TMP/$lose.out")" "the loser's stdout"
    cli req show "$CASE" --json >"$T_TMP/show.json" || fail "show"
    assert_eq "claimed $win" "$(jget "$T_TMP/show.json" \
        'd["case"]["status"] + " " + d["case"]["claimed_by"]')" \
        "the case after the race"
done
log "demo-neuro won $wins1, demo-neuro2 won $wins2"

# The winner claiming again is fine; the loser stays refused.
cli n1 claim "$CASE" >/dev/null 2>&1; a=$?
cli n2 claim "$CASE" >/dev/null 2>&1; b=$?
case "$win" in
    demo-neuro) assert_eq "0 2" "$a $b" "claims after the race" ;;
    *) assert_eq "2 0" "$a $b" "claims after the race" ;;
esac
pass
