#!/usr/bin/python3
"""wsclient.py — a minimal hashi.v1 WebSocket client for the integration
tests (standard library only: ssl + socket, RFC 6455 by hand).

    wsclient.py URL CACERT COMMAND [options]

URL is https://HOST:PORT (the upgrade goes to /ws).  Commands:

  handshake [--origin O] [--protocol P] [--body FILE]
      Try the upgrade only; print "101" on success, else the HTTP status
      the server answered, or "closed" if it dropped the connection.
      --protocol: the subprotocol offered (default hashi.v1; "" sends no
      Sec-WebSocket-Protocol); --body: where to write a refusal's body.
  session --token T [--last-seq N] [--origin O] [--count N] [--idle S]
          [--timeout S] [--ack] [--send JSON]... [--raw TEXT]...
          [--ready FILE] [--cookie C]
      hello (with no token when --token is ""; --cookie sends a Cookie
      header with the upgrade), then print every frame received as one
      JSON line (welcome,
      events, replies, errors; a close as {"type":"close","code":N}).
      --send frames go after the welcome (--send-frag ones in three
      fragments, then --send-big N: one text frame of N bytes), --raw
      ones before hello.
      Stops after --count events, after --idle seconds without a frame,
      at a close, or fails (exit 3) after --timeout seconds.  --ack
      acknowledges each event as it comes.  --ready touches FILE once the
      welcome is in (so a test knows the client is live).
      Keep-alive and slow readers: --rcvbuf N sets the socket's receive
      buffer; --stall-until FILE reads nothing after the welcome until
      FILE exists; --no-pong leaves WebSocket pings unanswered;
      --show-pings prints {"type":"ws-ping"} for each.  --send-file FILE
      sends each of its lines as a frame after the welcome, with at most 32
      replies outstanding; --replies N
      stops after N replies.

Exit status: 0 done, 2 usage/connection failure, 3 timeout.
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlparse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Closed(Exception):
    def __init__(self, code, reason=""):
        Exception.__init__(self, "closed %s %s" % (code, reason))
        self.code = code
        self.reason = reason


class WS:
    def __init__(self, url, cacert, origin=None, protocol="hashi.v1",
                 timeout=10.0, cookie=None, rcvbuf=0):
        u = urlparse(url)
        self.host = u.hostname
        self.port = u.port or 443
        self.pong = True
        self.pings = 0
        ctx = ssl.create_default_context(cafile=cacert)
        ctx.check_hostname = False
        raw = socket.socket()
        if rcvbuf:      # before connect, so the window is small from SYN
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect((self.host, self.port))
        self.sock = ctx.wrap_socket(raw, server_hostname=self.host)
        self.buf = b""
        self.status = None
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET /ws HTTP/1.1",
                 "Host: %s:%d" % (self.host, self.port),
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key,
                 "Sec-WebSocket-Version: 13"]
        if protocol:
            lines.append("Sec-WebSocket-Protocol: " + protocol)
        if origin:
            lines.append("Origin: " + origin)
        if cookie:
            lines.append("Cookie: " + cookie)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_head()
        first = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = first.split()
        self.status = parts[1] if len(parts) > 1 else "?"
        if self.status != "101":
            self.body = self._rest()
            return
        hdrs = {}
        for ln in head.split(b"\r\n")[1:]:
            if b":" in ln:
                k, v = ln.split(b":", 1)
                hdrs[k.strip().lower().decode()] = v.strip().decode()
        want = base64.b64encode(hashlib.sha1((key + GUID).encode())
                                .digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            raise RuntimeError("bad Sec-WebSocket-Accept")
        offered = [x.strip() for x in protocol.split(",")]
        if hdrs.get("sec-websocket-protocol") not in offered:
            raise RuntimeError("subprotocol not selected: %r"
                               % hdrs.get("sec-websocket-protocol"))

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise Closed("eof")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def _rest(self):
        """What follows a refusal's head, until the server closes."""
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                self.buf += d
        except (OSError, ssl.SSLError):
            pass
        return self.buf

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise Closed("eof")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        # one big-integer XOR: upload chunks are up to 1 MiB
        k = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = ((int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")
                  if n else b"")
        self.sock.sendall(hdr + mask + masked)

    def send_text(self, text):
        self.send_frame(1, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def recv(self):
        """One message: ("text"|"binary", payload), or ("ping", payload)
        for a ping (answered unless self.pong is off; never inside a
        fragmented message from this server); raises Closed at a close
        frame."""
        data, kind = b"", None
        while True:
            b0, b1 = self._need(2)
            op, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._need(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._need(8))[0]
            payload = self._need(n)
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if n >= 2 else 1005
                try:
                    self.send_frame(8, payload[:2])
                except OSError:
                    pass
                raise Closed(code, payload[2:].decode("utf-8", "replace"))
            if op == 9:
                self.pings += 1
                if self.pong:
                    self.send_frame(10, payload)
                return "ping", payload
            if op == 10:
                continue
            if op in (1, 2):
                kind = "text" if op == 1 else "binary"
            data += payload
            if fin:
                return kind, data


def cmd_handshake(a):
    try:
        ws = WS(a.url, a.cacert, origin=a.origin, protocol=a.protocol)
    except (Closed, ConnectionError, ssl.SSLError):
        print("closed")
        return 0
    if a.body and ws.status != "101":
        with open(a.body, "wb") as f:
            f.write(ws.body)
    print(ws.status)
    return 0


def cmd_session(a):
    try:
        ws = WS(a.url, a.cacert, origin=a.origin, cookie=a.cookie,
                rcvbuf=a.rcvbuf)
    except (Closed, ConnectionError, ssl.SSLError) as e:
        print("handshake failed: %s" % e, file=sys.stderr)
        return 2
    if ws.status != "101":
        print("handshake answered %s" % ws.status, file=sys.stderr)
        return 2
    deadline = time.time() + a.timeout
    for raw in a.raw:
        ws.send_text(raw)
    if a.token is not None:
        hello = {"type": "hello", "last_seq": a.last_seq,
                 "client": {"name": "wsclient", "version": "1"}}
        if a.token:
            hello["token"] = a.token
        ws.send_json(hello)
    ws.pong = not a.no_pong
    events = replies = outstanding = 0
    todo = []       # --send-file's lines, at most 32 replies outstanding
    out = sys.stdout
    last_data = time.time()
    while True:
        left = deadline - time.time()
        if left <= 0:
            print("timeout after %d event(s)" % events, file=sys.stderr)
            return 3
        idle_left = a.idle - (time.time() - last_data) if a.idle else left
        if idle_left <= 0:
            return 0
        ws.sock.settimeout(max(0.01, min(left, idle_left)))
        try:
            kind, data = ws.recv()
        except socket.timeout:
            continue
        except (Closed, ConnectionError, ssl.SSLError) as c:
            out.write(json.dumps({"type": "close",
                                  "code": getattr(c, "code", "reset"),
                                  "reason": getattr(c, "reason", str(c)),
                                  "pings": ws.pings,
                                  "at": time.time()}) + "\n")
            out.flush()
            return 0
        if kind == "ping":          # not data: the idle clock goes on
            if a.show_pings:
                out.write(json.dumps({"type": "ws-ping", "at": time.time()})
                          + "\n")
                out.flush()
            continue
        last_data = time.time()
        if kind == "binary":
            out.write(json.dumps({"type": "binary", "len": len(data)})
                      + "\n")
            out.flush()
            continue
        text = data.decode()
        out.write(text + "\n")
        out.flush()
        m = json.loads(text)
        if m.get("type") == "welcome":
            if a.ready:
                open(a.ready, "w").close()
            if a.send_file:
                with open(a.send_file) as f:
                    todo = [ln.rstrip("\n") for ln in f]
                todo.reverse()
                while todo and outstanding < 32:
                    ws.send_text(todo.pop())
                    outstanding += 1
            while a.stall_until and not os.path.exists(a.stall_until):
                if time.time() > deadline:
                    print("timeout stalled", file=sys.stderr)
                    return 3
                time.sleep(0.05)
            last_data = time.time()
            for s in a.send:
                try:
                    ws.send_text(s)
                except (ssl.SSLError, OSError):
                    # The server may close mid-way (e.g. 4400 after ten
                    # bad frames): stop sending, read what it said.
                    break
            for s in a.send_frag:     # in three fragments
                b = s.encode()
                k = max(1, len(b) // 3)
                ws.send_frame(1, b[:k], fin=False)
                ws.send_frame(0, b[k:2 * k], fin=False)
                ws.send_frame(0, b[2 * k:], fin=True)
            if a.send_big:            # one text frame of send_big bytes
                head = '{"type":"ping","id":"big","pad":"'
                pad = "x" * max(0, a.send_big - len(head) - 2)
                ws.send_text(head + pad + '"}')
        elif m.get("type") == "reply":
            replies += 1
            outstanding -= 1
            while todo and outstanding < 32:
                ws.send_text(todo.pop())
                outstanding += 1
            if a.replies and replies >= a.replies:
                return 0
        elif m.get("type") == "event":
            events += 1
            if a.ack:
                ws.send_json({"type": "ack", "seq": m["seq"]})
            if a.count and events >= a.count:
                # Let an ack reach the server before closing.
                time.sleep(0.2)
                ws.send_frame(8, struct.pack("!H", 1000))
                return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("cacert")
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("handshake")
    h.add_argument("--origin")
    h.add_argument("--protocol", default="hashi.v1")
    h.add_argument("--body")
    s = sub.add_parser("session")
    s.add_argument("--token")
    s.add_argument("--last-seq", type=int, default=0)
    s.add_argument("--origin")
    s.add_argument("--cookie")
    s.add_argument("--count", type=int, default=0)
    s.add_argument("--idle", type=float, default=0)
    s.add_argument("--timeout", type=float, default=20)
    s.add_argument("--ack", action="store_true")
    s.add_argument("--send", action="append", default=[])
    s.add_argument("--send-frag", action="append", default=[])
    s.add_argument("--send-big", type=int, default=0)
    s.add_argument("--raw", action="append", default=[])
    s.add_argument("--ready")
    s.add_argument("--rcvbuf", type=int, default=0)
    s.add_argument("--stall-until")
    s.add_argument("--no-pong", action="store_true")
    s.add_argument("--show-pings", action="store_true")
    s.add_argument("--send-file")
    s.add_argument("--replies", type=int, default=0)
    a = p.parse_args()
    return cmd_handshake(a) if a.cmd == "handshake" else cmd_session(a)


if __name__ == "__main__":
    sys.exit(main())
