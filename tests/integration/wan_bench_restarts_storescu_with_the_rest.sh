#!/bin/sh
# bench/wan.py's direct path over a link cut every 5 s: the retry loop
# starts a new storescu association after each cut with only the files
# storescu was not told were stored, so all three instances end up indexed
# at the server (3 of 3, complete), more than one association was needed,
# the one cut in flight was sent again whole (files sent > 3), the wire
# carried at least the study, and the WAN section of RESULTS.md is written
# between its markers.  At 2 Mbit/s an instance takes 2.1 s, so the third
# is always under way at the first cut, and each 4-s window between a
# restart and the next cut has room for one.  Host loopback, free ports.
. "$(dirname "$0")/lib.sh"

export HASHI_BENCH_NETNS="host loopback (integration test)"
timeout 120 $PY "$HASHI_ROOT/bench/wan.py" --slices 3 --profiles a \
    --cuts cut --cut-every 5 --paths direct --rss-gb 0 \
    --work "$T_TMP/work" --results "$T_TMP/RESULTS.md" \
    --json "$T_TMP/wan.json" >"$T_TMP/wan.log" 2>&1 ||
    fail "wan.py exited $?: $(tail -5 "$T_TMP/wan.log")"

r() { jget "$T_TMP/wan.json" "d['runs'][0]['$1']"; }
assert_eq True "$(r ok)" "the study completed"
assert_eq 3 "$(r indexed)" "instances indexed at the server"
assert_ge 1 "$(r cuts)" "cuts made by the link"
assert_ge 2 "$(r associations)" "storescu associations"
assert_ge 4 "$(r sent)" "files sent (the cut one again)"
size=$(jget "$T_TMP/wan.json" "d['bytes']")
assert_ge "$size" "$(r wire)" "bytes on the wire"
assert_file_has "$T_TMP/RESULTS.md" '^<!-- wan:begin' "section start"
assert_file_has "$T_TMP/RESULTS.md" '^\| \(a\) 2mbit, 150ms \| every 5 s' \
    "the run's row"
assert_file_has "$T_TMP/RESULTS.md" '^<!-- wan:end -->' "section end"
pass
