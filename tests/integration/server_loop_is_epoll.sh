# server_loop_is_epoll: hashi-server's event loop is libev on epoll, not
# lws's poll() over every socket (issue 8: 10,000 idle sessions must not
# cost CPU at each wake-up).  The server holds an eventpoll descriptor and
# its loop's thread waits in epoll_wait, never poll(); 50 live hashi.v1 sessions get their
# welcome and a case.new through it; SIGTERM still stops it cleanly
# (http_wake ends the loop's wait), status 0, "stopped" logged.
. "$(dirname "$0")/lib.sh"

hashi_setup
tok=$(login demo-requester)

epolls=$(ls -l "/proc/$HPID/fd" 2>/dev/null | grep -c 'anon_inode:\[eventpoll\]')
assert_ge 1 "$epolls" "eventpoll descriptors of hashi-server"

# 50 sessions of one user (the creator's clinic hears of its cases).
pids=""
for i in $(seq 1 50); do
    wsc session --token "$tok" --count 1 --timeout 30 \
        >"$T_TMP/s$i.out" 2>&1 &
    pids="$pids $!"
done
wait_all_welcomed() {
    n=0
    for i in $(seq 1 50); do
        grep -q '"type": *"welcome"' "$T_TMP/s$i.out" 2>/dev/null &&
            n=$((n + 1))
    done
    echo $n
}
i=0
while [ "$(wait_all_welcomed)" -lt 50 ] && [ $i -lt 150 ]; do
    sleep 0.2; i=$((i + 1))
done
assert_eq 50 "$(wait_all_welcomed)" "sessions welcomed"
assert_eq 201 "$(api POST /api/cases "$tok" '{"case_id":"ep-1",
"question":"Bleed?","priority":"stat","specialty":"neurology",
"patient":{"age":70,"sex":"F"}}')" "create"
wait $pids
n=0
for i in $(seq 1 50); do
    grep -q '"case_id": *"ep-1"' "$T_TMP/s$i.out" && n=$((n + 1))
done
assert_eq 50 "$n" "sessions that got the case.new"

# No poll() on the event loop's thread (the main one; the DICOM listener's
# thread polls its one socket): lws's own loop polls every socket.
if command -v strace >/dev/null; then
    timeout -s INT 2 strace -f -e trace=poll,ppoll,epoll_wait \
        -p "$HPID" -o "$T_TMP/strace.out" 2>/dev/null
    assert_eq 0 "$(grep -c -E "^$HPID +p?poll\(" "$T_TMP/strace.out")" \
        "poll() calls of the event loop in 2 s"
    assert_ge 1 "$(grep -c -E "^$HPID +epoll_wait\(" "$T_TMP/strace.out")" \
        "epoll_wait() calls in 2 s (the tick)"
fi

hashi_stop || fail "hashi-server needed SIGKILL"
assert_file_has "$T_TMP/server.log" "info +stopped" "clean stop logged"
pass
