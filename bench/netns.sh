# bench/netns.sh — sourced by bench/run.sh and bench/wan.sh.
#
# bench_netns CMD [ARG]...: run CMD inside a private network namespace
# with only loopback up (unshare --net), so the peers a benchmark starts
# (DCMTK and Orthanc bind every interface) are reachable from nothing but
# this run; HASHI_BENCH_NETNS tells CMD where it runs.  Already inside
# one, or without the right to unshare, CMD runs on the host's loopback.
bench_netns() {
    if [ -n "${HASHI_BENCH_NETNS:-}" ]; then
        "$@"
    elif unshare --net true 2>/dev/null; then
        HASHI_BENCH_NETNS="private namespace (unshare --net), loopback only" \
            unshare --net sh -c 'ip link set lo up && exec "$0" "$@"' "$@"
    else
        echo "bench: cannot unshare the network namespace (not root?);" \
            "running on the host's loopback" >&2
        HASHI_BENCH_NETNS="host network (unshare failed)" "$@"
    fi
}
