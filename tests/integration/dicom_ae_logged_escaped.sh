#!/bin/sh
# A calling AE title is peer-provided text: one carrying a newline must not
# split the server's log line (a forged line could follow it).  The refusal
# is logged on one line with the newline written \x0a, and no log line
# starts with the injected text.
. "$(dirname "$0")/lib.sh"

hashi_setup
ae=$(printf 'X\nFORGED error')
echoscu -aet "$ae" -aec HASHI 127.0.0.1 "$DPORT" >"$T_TMP/echo.log" 2>&1 &&
    fail "echoscu with a newline in its AE title was accepted"
wait_grep "$T_TMP/server.log" 'DICOM association from X\\x0aFORGED error@'
if grep -q '^FORGED' "$T_TMP/server.log"; then
    fail "a log line starts with the injected text: \
$(grep '^FORGED' "$T_TMP/server.log")"
fi
pass
