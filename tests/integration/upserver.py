#!/usr/bin/python3
"""upserver.py — a stand-in for hashi-server's side of hashi.v1 uploads
(proto/PROTOCOL.md sections 7, 8 and 8a), for the gateway tests until the
server's own lands.  Standard library only (asyncio + ssl, RFC 6455 by
hand) plus pydicom to read a finished instance's SOP Instance UID.

    upserver.py --listen 127.0.0.1:PORT --cert C --key K --token-file F
                --dir DIR [--priorities FILE] [--max-size N]

Everything it holds is durable in DIR, so it may be killed -9 and
restarted like the real server:
  DIR/partial/<upload_id>       bytes received so far (fsync'd per chunk)
  DIR/partial/<upload_id>.json  {"sha256", "size", "kind", "study_uid"}
  DIR/store/<sha256>            finished files
  DIR/index.jsonl               one line per stored instance {sop, sha256}
  DIR/previews/<study>.jpg      previews
  DIR/events.jsonl              what happened, in order: begin, done,
                                expect, status, chunk_bytes
--priorities FILE: a JSON "studies" array sent as `priorities` after each
welcome, and again whenever the file changes.  --max-size: uploads above
it are refused with too_big at upload.begin (like --max-instance).
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import ssl
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Store:
    def __init__(self, d):
        self.d = d
        for sub in ("partial", "store", "previews"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        self.index = {}         # sop -> sha
        self.shas = {}          # sha -> sop
        p = os.path.join(d, "index.jsonl")
        if os.path.exists(p):
            for line in open(p):
                if line.strip():
                    r = json.loads(line)
                    self.index[r["sop"]] = r["sha256"]
                    self.shas[r["sha256"]] = r["sop"]

    def event(self, **kw):
        kw["t"] = time.time()
        with open(os.path.join(self.d, "events.jsonl"), "a") as f:
            f.write(json.dumps(kw) + "\n")

    def durable_write(self, path, data):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        fd = os.open(os.path.dirname(path), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def part(self, uid):
        return os.path.join(self.d, "partial", uid)


class Session:
    def __init__(self, srv, reader, writer):
        self.srv, self.r, self.w = srv, reader, writer
        self.st = srv.store
        self.begun = set()

    async def send_text(self, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        hdr = bytes([0x81])
        n = len(data)
        if n < 126:
            hdr += bytes([n])
        elif n < 65536:
            hdr += bytes([126]) + struct.pack(">H", n)
        else:
            hdr += bytes([127]) + struct.pack(">Q", n)
        self.w.write(hdr + data)
        await self.w.drain()

    async def close(self, code, reason=""):
        payload = struct.pack(">H", code) + reason.encode()
        self.w.write(bytes([0x88, len(payload)]) + payload)
        await self.w.drain()
        self.w.close()

    async def read_frame(self):
        h = await self.r.readexactly(2)
        op, n = h[0] & 0x0F, h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self.r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.r.readexactly(8))[0]
        mask = await self.r.readexactly(4) if h[1] & 0x80 else None
        data = bytearray(await self.r.readexactly(n))
        if mask:
            for i in range(n):
                data[i] ^= mask[i & 3]
        return h[0] & 0x80, op, bytes(data)

    async def handshake(self):
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        key = hdrs.get("sec-websocket-key", "")
        acc = base64.b64encode(hashlib.sha1((key + GUID).encode())
                               .digest()).decode()
        self.w.write(("HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n"
                      "Sec-WebSocket-Protocol: hashi.v1\r\n\r\n" % acc)
                     .encode())
        await self.w.drain()

    async def reply_err(self, rid, code, msg):
        await self.send_text({"type": "reply", "id": rid, "ok": False,
                              "error": {"code": code, "message": msg}})

    async def priorities(self):
        studies = self.srv.read_priorities()
        if studies is not None:
            await self.send_text({"type": "priorities", "studies": studies})

    async def run(self):
        await self.handshake()
        msg = None
        while True:
            fin, op, data = await self.read_frame()
            if op == 8:
                return
            if op == 9:
                self.w.write(bytes([0x8A, len(data)]) + data)
                continue
            if op == 1:
                msg = json.loads(data)
                break
        if msg.get("type") != "hello" or msg.get("token") != self.srv.token:
            await self.send_text({"type": "error", "error": {
                "code": "unauthorized", "message": "bad token"}})
            await self.close(4401, "bad token")
            return
        await self.send_text({"type": "welcome", "user": {
            "login": "gw", "role": "gateway", "clinic": "Demo Rural Clinic"},
            "server_time": int(time.time() * 1000), "last_seq": 0,
            "replay_from": 0})
        await self.priorities()
        self.srv.sessions.add(self)
        try:
            while True:
                fin, op, data = await self.read_frame()
                if op == 8:
                    return
                if op == 9:
                    self.w.write(bytes([0x8A, len(data)]) + data)
                elif op == 2:
                    await self.chunk(data)
                elif op == 1:
                    await self.text(json.loads(data))
        finally:
            self.srv.sessions.discard(self)

    async def text(self, m):
        t, rid = m.get("type"), m.get("id", "")
        if t == "ping":
            await self.send_text({"type": "pong"})
        elif t == "upload.begin":
            await self.begin(m)
        elif t == "upload.end":
            await self.end(m)
        elif t == "study.expect":
            self.st.event(kind="expect", study=m["study_uid"],
                          instances=m["instances"],
                          priority=m.get("priority"))
            await self.send_text({"type": "reply", "id": rid, "ok": True,
                                  "result": {"study": {
                                      "study_uid": m["study_uid"],
                                      "expected": m["instances"],
                                      "received": 0}}})
        elif t == "gateway.status":
            m.pop("id", None)
            self.st.event(kind="status", **{k: v for k, v in m.items()
                                           if k != "type"})
            await self.send_text({"type": "reply", "id": rid, "ok": True,
                                  "result": {}})
        elif t == "ack":
            pass
        else:
            await self.reply_err(rid, "unknown_type", t or "")

    async def begin(self, m):
        rid, uid = m["id"], m["upload_id"]
        sha, size = m["sha256"], m["size"]
        kind = m.get("kind", "instance")
        if not ID_RE.match(uid):
            return await self.reply_err(rid, "bad_field", "upload_id")
        if self.srv.max_size and size > self.srv.max_size:
            return await self.reply_err(rid, "too_big", "upload_id: %d "
                                        "bytes is over the server's cap of "
                                        "%d" % (size, self.srv.max_size))
        if kind == "instance" and sha in self.st.shas:
            self.st.event(kind="done", upload_id=uid, status="duplicate",
                          sop=self.st.shas[sha])
            return await self.send_text({
                "type": "upload.done", "id": rid, "upload_id": uid,
                "sop_instance_uid": self.st.shas[sha],
                "status": "duplicate"})
        meta = self.st.part(uid) + ".json"
        want = {"sha256": sha, "size": size, "kind": kind,
                "study_uid": m.get("study_uid", "")}
        if os.path.exists(meta):
            if json.load(open(meta)) != want:
                return await self.reply_err(rid, "conflict",
                                            "upload_id taken")
        else:
            self.st.durable_write(meta, json.dumps(want).encode())
            self.st.durable_write(self.st.part(uid), b"")
        self.begun.add(uid)
        off = os.path.getsize(self.st.part(uid))
        self.st.event(kind="begin", upload_id=uid, offset=off)
        await self.send_text({"type": "upload.at", "id": rid,
                              "upload_id": uid, "offset": off})

    async def chunk(self, frame):
        if len(frame) < 80 or frame[0:2] != b"HC":
            return await self.send_text({"type": "error", "error": {
                "code": "bad_field", "message": "chunk header"}})
        n = frame[3]
        uid = frame[4:4 + n].decode()
        off, length = struct.unpack(">QI", frame[68:80])
        self.st.event(kind="chunk_bytes", n=len(frame))
        if uid not in self.begun:
            return await self.send_text({"type": "error", "error": {
                "code": "not_found", "message": "upload not begun"}})
        p = self.st.part(uid)
        cur = os.path.getsize(p)
        if off != cur:
            return await self.send_text({"type": "upload.at",
                                         "upload_id": uid, "offset": cur})
        with open(p, "ab") as f:
            f.write(frame[80:80 + length])
            f.flush()
            os.fsync(f.fileno())

    async def end(self, m):
        rid, uid = m["id"], m["upload_id"]
        meta = self.st.part(uid) + ".json"
        if uid not in self.begun or not os.path.exists(meta):
            return await self.reply_err(rid, "not_found", "no such upload")
        want = json.load(open(meta))
        data = open(self.st.part(uid), "rb").read()
        if len(data) < want["size"]:
            return await self.reply_err(rid, "not_ready",
                                        "at offset %d" % len(data))
        if hashlib.sha256(data).hexdigest() != want["sha256"]:
            os.unlink(self.st.part(uid))
            os.unlink(meta)
            return await self.reply_err(rid, "conflict", "sha256 differs")
        if want["kind"] == "preview":
            st = want["study_uid"]
            self.st.durable_write(os.path.join(self.st.d, "previews",
                                               st + ".jpg"), data)
            self.st.event(kind="done", upload_id=uid, preview=st)
            os.unlink(self.st.part(uid))
            os.unlink(meta)
            return await self.send_text({
                "type": "upload.done", "id": rid, "upload_id": uid,
                "study_uid": st, "status": "stored"})
        import io
        import pydicom
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            sop = str(ds.SOPInstanceUID)
        except Exception as e:      # noqa: BLE001 - any parse failure
            os.unlink(self.st.part(uid))
            os.unlink(meta)
            return await self.reply_err(rid, "bad_field",
                                        "not a DICOM file: %s" % e)
        sha = want["sha256"]
        if sop in self.st.index and self.st.index[sop] != sha:
            status = "conflict"
        elif sop in self.st.index:
            status = "duplicate"
        else:
            self.st.durable_write(os.path.join(self.st.d, "store", sha),
                                  data)
            with open(os.path.join(self.st.d, "index.jsonl"), "a") as f:
                f.write(json.dumps({"sop": sop, "sha256": sha}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.st.index[sop] = sha
            self.st.shas[sha] = sop
            status = "stored"
        os.unlink(self.st.part(uid))
        os.unlink(meta)
        self.st.event(kind="done", upload_id=uid, status=status, sop=sop)
        await self.send_text({"type": "upload.done", "id": rid,
                              "upload_id": uid, "sop_instance_uid": sop,
                              "status": status})


class Server:
    def __init__(self, a):
        self.store = Store(a.dir)
        self.token = open(a.token_file).read().split("\n")[0].strip()
        self.prio_file = a.priorities
        self.prio_mtime = None
        self.max_size = a.max_size
        self.sessions = set()

    def read_priorities(self):
        if not self.prio_file or not os.path.exists(self.prio_file):
            return None
        return json.load(open(self.prio_file))

    def prio_stamp(self):
        if not self.prio_file or not os.path.exists(self.prio_file):
            return None
        return os.stat(self.prio_file).st_mtime_ns

    async def watch_priorities(self):
        """Live pushes: the file appeared or changed since start."""
        self.prio_mtime = self.prio_stamp()
        while True:
            await asyncio.sleep(0.2)
            mt = self.prio_stamp()
            if mt is not None and mt != self.prio_mtime:
                self.prio_mtime = mt
                for s in list(self.sessions):
                    await s.priorities()

    async def handle(self, reader, writer):
        try:
            await Session(self, reader, writer).run()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError,
                OSError):
            pass
        finally:
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--priorities")
    ap.add_argument("--max-size", type=int, default=0)
    a = ap.parse_args()
    srv = Server(a)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    host, port = a.listen.rsplit(":", 1)
    server = await asyncio.start_server(srv.handle, host, int(port), ssl=ctx)
    asyncio.ensure_future(srv.watch_priorities())
    print("upserver listening on %s" % a.listen, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
