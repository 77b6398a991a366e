#!/bin/sh
# A checkout is self-contained: no tracked file refers to the shared/
# directory beside it (the team's tools and docs live there on the
# development machines, not in a user's clone), so the tests and the
# benchmarks find everything they run inside the project.  .ci/run proves
# the same by running make test in a copy with nothing beside it; this is
# the quick check.  The pattern is assembled so that this file does not
# match it.
. "$(dirname "$0")/lib.sh"

s=shared
pat="\.\./$s([/\"' ]|\$)|/work/$s|$s/(tools|docs|hooks)"
pat="$pat|HASHI_${s}|\"$s\", *\"tools\""
cd "$HASHI_ROOT" || fail "no $HASHI_ROOT"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -- ':!tests/browser/node_modules' |
        xargs -0 grep -IinE -- "$pat" /dev/null >"$T_TMP/hits" 2>/dev/null
else            # a copy without .git (.ci/run): every file but generated ones
    grep -rIinE --exclude-dir=.git --exclude-dir=build \
        --exclude-dir=node_modules --exclude-dir=data --exclude-dir=work \
        -- "$pat" . >"$T_TMP/hits"
fi
[ -s "$T_TMP/hits" ] &&
    fail "files refer to ../$s: $(head -10 "$T_TMP/hits")"

# And the tools the tests use are the project's own.
for t in gen_study.py linkemu.py netprobe.py; do
    [ -f "$HASHI_ROOT/tests/tools/$t" ] || fail "tests/tools/$t is missing"
done
case "$HASHI_TOOLS" in
    "$HASHI_ROOT/tests/tools") ;;
    *) fail "HASHI_TOOLS is $HASHI_TOOLS, not $HASHI_ROOT/tests/tools" ;;
esac
pass
