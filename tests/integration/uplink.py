"""uplink.py — hashi.v1 uploads for the integration tests (upload_*.sh,
gateway_*.sh), on top of wsclient.py's WS: a session that sends requests
and waits for their answers, and chunks (PROTOCOL.md sections 7 and 8).

    from uplink import Session, sha256_of
    s = Session(url, cacert, token)
    at = s.req({"type": "upload.begin", ...})     # the answer with its id
    s.chunk("u-1", 0, data)
    s.frames                                       # everything else, in order

Assertion helpers raise AssertionError with what was expected and what
came; a test script turns that into a failure (exit 1).
"""
import hashlib
import http.client as httpc
import json
import ssl
import struct
import sys
import time
from urllib.parse import urlparse

from wsclient import WS, Closed


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def chunk_frame(upload_id, offset, data):
    uid = upload_id.encode()
    return (b"HC" + bytes([1, len(uid)]) + uid.ljust(64, b"\0") +
            struct.pack("!QI", offset, len(data)) + data)


class Session(WS):
    """One hello'd hashi.v1 connection."""

    def __init__(self, url, cacert, token, name="upload-test"):
        WS.__init__(self, url, cacert)
        assert self.status == "101", "upgrade answered %s" % self.status
        self.frames = []
        self.n = 0
        self.send_json({"type": "hello", "token": token, "last_seq": 0,
                        "client": {"name": name, "version": "1"}})
        self.welcome = self.wait(lambda m: m.get("type") == "welcome")

    def next(self):
        kind, data = self.recv()
        assert kind == "text", "a binary frame from the server"
        m = json.loads(data)
        return m

    def wait(self, pred, timeout=20.0):
        """The first frame (seen before or arriving) matching pred."""
        for i, m in enumerate(self.frames):
            if pred(m):
                return self.frames.pop(i)
        end = time.time() + timeout
        self.sock.settimeout(timeout)
        while time.time() < end:
            m = self.next()
            if pred(m):
                return m
            self.frames.append(m)
        raise AssertionError("nothing matching within %s s; got %s" %
                             (timeout, self.frames[-5:]))

    def req(self, obj, timeout=30.0):
        self.n += 1
        obj = dict(obj)
        obj.setdefault("id", "q%d" % self.n)
        self.send_json(obj)
        return self.wait(lambda m: m.get("id") == obj["id"] and
                         m.get("type") != "ping", timeout)

    def chunk(self, upload_id, offset, data):
        self.send_frame(2, chunk_frame(upload_id, offset, data))

    def send_from(self, upload_id, data, start, end=None, size=65536):
        """Chunks of data[start:end], waiting for progress so that at
        most 4 MiB is unacknowledged."""
        end = len(data) if end is None else end
        acked = start
        off = start
        while off < end:
            while off - acked > (4 << 20):
                at = self.wait(lambda m: m.get("type") == "upload.at" and
                               m.get("upload_id") == upload_id and
                               "id" not in m)
                assert at.get("reason") == "progress", at
                acked = at["offset"]
            n = min(size, end - off)
            self.chunk(upload_id, off, data[off:off + n])
            off += n
        return off

    def progress(self, upload_id, at_least, timeout=10.0):
        """Wait for an upload.at progress reaching at_least; its offset."""
        while True:
            at = self.wait(lambda m: m.get("type") == "upload.at" and
                           m.get("upload_id") == upload_id and
                           "id" not in m, timeout)
            if at["offset"] >= at_least:
                return at["offset"]


def upload(s, upload_id, data, **extra):
    """A whole upload on one session: the upload.done or the failure."""
    b = dict({"type": "upload.begin", "upload_id": upload_id,
              "sha256": sha256_of(data), "size": len(data)}, **extra)
    at = s.req(b)
    if at["type"] != "upload.at":
        return at
    s.send_from(upload_id, data, at["offset"])
    return s.req({"type": "upload.end", "upload_id": upload_id})


def http(url, ca, method, path, token, body=None):
    """One HTTPS request: (status, body bytes); body is sent as JSON."""
    u = urlparse(url)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    c = httpc.HTTPSConnection(u.hostname, u.port, context=ctx,
                                    timeout=20)
    h = {"Authorization": "Bearer " + token}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, path, data, h)
    r = c.getresponse()
    out = (r.status, r.read())
    c.close()
    return out


def expect(cond, what, got):
    if not cond:
        raise AssertionError("%s; got %s" % (what, json.dumps(got)[:600]))


def expect_error(m, code, what):
    err = m.get("error") or {}
    expect(m.get("type") == "reply" and m.get("ok") is False and
           err.get("code") == code, "%s: reply %s" % (what, code), m)


def main(fn):
    """Run fn(argv) and turn an AssertionError into exit 1."""
    try:
        fn(sys.argv[1:])
    except (AssertionError, Closed) as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
