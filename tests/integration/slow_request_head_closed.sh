# slow_request_head_closed: a client that completes the TLS handshake and
# then sends half a request line (or nothing at all) is disconnected once
# the 10-second deadline for its first request head has passed -- not
# held for lws's 60 s -- while the server goes on serving others.  The
# deadline is for the head only: a kept-alive connection that went quiet
# after a complete request, and a hashi.v1 session that is idle, are not
# cut by it.
. "$(dirname "$0")/lib.sh"

hashi_setup
N=$(login demo-neuro) || exit 1

# Each client prints one line: what it saw within 30 s (the guard).
$PY - "$HPORT" "$CACERT" >"$T_TMP/raw" 2>&1 <<'PYEOF' &
import socket, ssl, sys, threading, time

port, cafile = int(sys.argv[1]), sys.argv[2]
out = {}

def tls():
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    s = socket.create_connection(("127.0.0.1", port), 10)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")

def outcome(t):
    t0 = time.monotonic()
    t.settimeout(30)
    try:
        d = t.recv(4096)
        r = "eof" if not d else "data " + d[:12].decode("latin-1")
    except socket.timeout:
        r = "still open"
    except OSError as e:
        r = "eof (%s)" % e.__class__.__name__
    return "%s (after %.1f s)" % (r, time.monotonic() - t0)

def half_head():
    t = tls()
    t.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    out["half"] = outcome(t)

def nothing():
    out["nothing"] = outcome(tls())

def response(t):
    """The status line of one whole response (head and body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = t.recv(4096)
        if not d:
            return "eof"
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    n = 0
    for ln in head.split(b"\r\n"):
        if ln.lower().startswith(b"content-length:"):
            n = int(ln.split(b":")[1])
    while len(body) < n:
        d = t.recv(4096)
        if not d:
            return "eof"
        body += d
    return head.split(b"\r\n")[0].decode()

def kept_alive():
    t = tls()
    req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    t.sendall(req)
    first = response(t)
    threading.Event().wait(12)
    t.sendall(req)
    t.settimeout(10)
    out["kept"] = "%s then %s" % (first, response(t))

ts = [threading.Thread(target=f) for f in (half_head, nothing, kept_alive)]
for t in ts:
    t.start()
for t in ts:
    t.join()
for k in ("half", "nothing", "kept"):
    print("%s: %s" % (k, out.get(k)))
PYEOF
raw=$!
wsc session --token "$N" --idle 12 --timeout 30 >"$T_TMP/ws" &
ws=$!

sleep 1
healthz_ok "clients holding half a head"
assert_eq demo-neuro "$(login demo-neuro2 >/dev/null &&
    http GET /api/me "$N" >/dev/null && jget "$T_TMP/body" 'd["user"]["login"]')" \
    "a login and a request while clients hold half a head"

wait_pid "$raw" 60
assert_eq 0 "$WRC" "the raw clients ($(cat "$T_TMP/raw"))"
assert_file_has "$T_TMP/raw" "^half: eof" "half a request line"
assert_file_has "$T_TMP/raw" "^nothing: eof" "nothing after TLS"
assert_file_has "$T_TMP/raw" "^kept: HTTP/1.1 200 OK then HTTP/1.1 200 OK" \
    "a kept-alive connection quiet for 12 s"

wait_pid "$ws" 40
assert_eq demo-neuro "$(jlines "$T_TMP/ws" 'W["user"]["login"]')" \
    "welcome of the idle session"
assert_eq 0 "$(jlines "$T_TMP/ws" 'len([m for m in L if m["type"] == "close"])')" \
    "closes of a hashi.v1 session idle for 12 s"
healthz_ok "the slow clients"
pass
