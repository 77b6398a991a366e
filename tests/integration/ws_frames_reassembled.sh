# ws_frames_reassembled: a hashi.v1 message sent in several WebSocket
# fragments is reassembled and answered once; a text frame over the
# protocol's 65536 bytes is refused with too_big and close 1009; a frame
# of exactly the limit is still accepted.
. "$(dirname "$0")/lib.sh"

hashi_setup
N=$(login demo-neuro)

wsc session --token "$N" --idle 1.5 --timeout 10 \
    --send-frag '{"type":"case.list","id":"frag-1","limit":5}' \
    --send-frag '{"type":"ping","id":"frag-2"}' >"$T_TMP/frag" ||
    fail "fragmented session"
assert_eq "reply frag-1 True []" "$(jlines "$T_TMP/frag" \
    '"%s %s %s %s" % (L[1]["type"], L[1]["id"], L[1]["ok"],
    L[1]["result"]["cases"])')" "reassembled request"
assert_eq "pong frag-2 3" "$(jlines "$T_TMP/frag" \
    '"%s %s %d" % (L[2]["type"], L[2]["id"], len(L))')" "reassembled ping"

# The ping's "pad" member is ignored (unknown fields are), so a frame of
# exactly 65536 bytes is a valid ping.
wsc session --token "$N" --idle 1.5 --timeout 10 --send-big 65536 \
    >"$T_TMP/limit" || fail "session at the limit"
assert_eq "pong big" "$(jlines "$T_TMP/limit" \
    '"%s %s" % (L[1]["type"], L[1]["id"])')" "a frame of 65536 bytes"

wsc session --token "$N" --idle 2 --timeout 10 --send-big 65537 \
    >"$T_TMP/big" || fail "session over the limit"
assert_eq "error too_big" "$(jlines "$T_TMP/big" \
    '"%s %s" % (L[1]["type"], L[1]["error"]["code"])')" "over the limit"
assert_eq "close 1009" "$(jlines "$T_TMP/big" \
    '"%s %s" % (L[-1]["type"], L[-1]["code"])')" "closed with 1009"
pass
