#!/usr/bin/python3
"""netprobe: the TCP ends that tests put on either side of linkemu.py.

    netprobe.py server echo|stall PORTFILE   serve on a free loopback port,
                                             written to PORTFILE when ready
    netprobe.py send HOST:PORT FILE OUT      send FILE (then half-close) and
                                             save what comes back to OUT
    netprobe.py hold HOST:PORT READYFILE     exchange "ping", touch READYFILE,
                                             then wait for the end
    netprobe.py push HOST:PORT BYTES         send until BYTES are taken or
                                             the peer takes nothing for 2 s

The clients print one JSON line: "connect" (ok, refused, reset), "sent",
"received" (bytes), "end" (eof, reset, stalled, done).  "echo" returns
every byte; "stall" accepts and never reads.  Python 3 stdlib only.
"""

import json
import os
import select
import socket
import sys
import threading

CHUNK = 64 * 1024
RESETS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def report(**fields):
    print(json.dumps(fields), flush=True)


def serve(mode, port_file):
    ls = socket.create_server(("127.0.0.1", 0))
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{ls.getsockname()[1]}\n")
    os.replace(tmp, port_file)
    held = []
    while True:
        c, _ = ls.accept()
        if mode == "stall":
            held.append(c)      # keep it open, never read
            continue
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def echo(c):
    try:
        while True:
            data = c.recv(CHUNK)
            if not data:
                break
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    c.close()


def connect(target):
    """A connected socket, or None after reporting why not."""
    try:
        s = socket.create_connection(addr(target), timeout=30)
    except ConnectionRefusedError:
        report(connect="refused", sent=0, received=0, end="refused")
        return None
    except RESETS:              # accepted, then reset before connect returned
        report(connect="reset", sent=0, received=0, end="reset")
        return None
    s.settimeout(None)
    return s


def read_all(s, out=None):
    """Read to the end; (bytes read, 'eof' or 'reset')."""
    n = 0
    try:
        while True:
            data = s.recv(CHUNK)
            if not data:
                return n, "eof"
            n += len(data)
            if out:
                out.write(data)
    except RESETS:
        return n, "reset"


def send(target, path, out_path):
    s = connect(target)
    if s is None:
        return
    sent, broken = [0], [False]

    def writer():
        try:
            with open(path, "rb") as f:
                while True:
                    data = f.read(CHUNK)
                    if not data:
                        break
                    s.sendall(data)
                    sent[0] += len(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            broken[0] = True    # the reset may reach the writer first

    t = threading.Thread(target=writer)
    t.start()
    with open(out_path, "wb") as out:
        received, end = read_all(s, out)
    t.join()
    s.close()
    if broken[0]:
        end = "reset"
    report(connect="ok" if received else "reset", sent=sent[0],
           received=received, end=end)


def hold(target, ready_file):
    s = connect(target)
    if s is None:
        return
    try:
        s.sendall(b"ping")
        got = b""
        while len(got) < 4:
            data = s.recv(4 - len(got))
            if not data:
                break
            got += data
    except RESETS:
        report(connect="reset", sent=0, received=0, end="reset")
        return
    if got != b"ping":
        report(connect="ok", sent=4, received=len(got), end="eof")
        return
    open(ready_file, "w").close()
    received, end = read_all(s)
    report(connect="ok", sent=4, received=4 + received, end=end)


def push(target, total):
    s = connect(target)
    if s is None:
        return
    s.setblocking(False)
    block = b"\0" * CHUNK
    sent, end = 0, "done"
    try:
        while sent < total:
            _, w, _ = select.select([], [s], [], 2.0)
            if not w:
                end = "stalled"
                break
            try:
                sent += s.send(block[:min(CHUNK, total - sent)])
            except BlockingIOError:
                pass
    except RESETS:
        end = "reset"
    report(connect="ok", sent=sent, received=0, end=end)
    reset_close(s)


def reset_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    s.close()


def main(argv):
    cmds = {("server", 3): lambda: serve(argv[1], argv[2]),
            ("send", 4): lambda: send(argv[1], argv[2], argv[3]),
            ("hold", 3): lambda: hold(argv[1], argv[2]),
            ("push", 3): lambda: push(argv[1], int(argv[2]))}
    run = cmds.get((argv[0] if argv else "", len(argv)))
    if run is None or (argv[0] == "server" and argv[1] not in
                       ("echo", "stall")):
        sys.stderr.write(__doc__)
        return 1
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
