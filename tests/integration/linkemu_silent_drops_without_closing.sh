#!/bin/sh
# linkemu.py --silent-file: while the file exists the link loses every byte
# on an open connection and on one made meanwhile, and closes neither (no
# EOF, no reset: neither end is told); once it is gone, bytes flow again on
# the open connection.  The web page's link-state test relies on this.
. "$(dirname "$0")/lib.sh"

$PY "$HASHI_TOOLS/netprobe.py" server echo "$T_TMP/echo.port" &
at_exit "kill $! 2>/dev/null"
wait_file "$T_TMP/echo.port"
SILENT="$T_TMP/link.silent"
linkemu_start quiet "$(cat "$T_TMP/echo.port")" --silent-file "$SILENT"

# One client: "a" echoed; silence; 1000 bytes and a new connection's 5
# bytes lost, nothing closed; the silence ends; "c" echoed on the first.
timeout 30 $PY - "$LINK_PORT" "$SILENT" >"$T_TMP/out" 2>&1 <<'PYEOF' ||
import os, socket, sys, time
port, silent = int(sys.argv[1]), sys.argv[2]

def recv_for(s, secs):
    s.settimeout(secs)
    try:
        d = s.recv(4096)
        return "eof" if d == b"" else d.decode()
    except socket.timeout:
        return "nothing"
    except OSError as e:
        return "error %s" % e

s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"a")
print("before:", recv_for(s, 5))
open(silent, "w").close()
time.sleep(0.3)
s.sendall(b"b" * 1000)
print("silent:", recv_for(s, 1))
n = socket.create_connection(("127.0.0.1", port))
n.sendall(b"hello")
print("new:", recv_for(n, 1))
os.unlink(silent)
time.sleep(0.3)
s.sendall(b"c")
print("after:", recv_for(s, 5))
PYEOF
    fail "client failed: $(cat "$T_TMP/out")"
assert_eq "before: a
silent: nothing
new: nothing
after: c" "$(cat "$T_TMP/out")" "what crossed before, during and after"
linkemu_stop quiet
assert_eq 1005 "$(linkemu_stat quiet dropped_bytes)" "bytes dropped"
assert_eq 0 "$(linkemu_stat quiet cuts)" "cuts"
assert_eq 2 "$(linkemu_stat quiet connections)" "connections relayed"
pass
