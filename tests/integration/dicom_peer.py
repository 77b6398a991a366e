#!/usr/bin/env python3
"""dicom_peer.py — DICOM peers that DCMTK's tools cannot play: connections
that stay silent, and an association that is opened and then left idle.
Speaks just enough of the upper layer (PS3.8) by hand.

  dicom_peer.py silent HOST PORT N READY
      open N TCP connections that send nothing, create the file READY, then
      wait until the server has closed every one (each read ends); prints
      the number closed.  A guard of 60 s ends the wait.
  dicom_peer.py assoc HOST PORT CALLING CALLED READY
      send an A-ASSOCIATE-RQ for Verification; print the answer ("ac",
      "rj RESULT SOURCE REASON" or "closed"); after "ac" create READY,
      stay silent and print what the server does next ("abort" or
      "closed"; guard 60 s), and close.
  dicom_peer.py garbage HOST PORT N SEED
      send N whole but malformed first PDUs, one per connection (another
      PDU type, a length over 64 KiB, random bodies, a good request with
      bytes changed); print how many the server answered (A-ASSOCIATE-AC
      or -RJ, A-ABORT) or closed.  Same SEED, same bytes.
"""
import random
import socket
import struct
import sys
import time

GUARD = 60


def item(kind, body):
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(calling, called):
    ae = lambda s: s.encode("latin-1")[:16].ljust(16, b" ")
    pc = item(0x20, bytes([1, 0, 0, 0])
              + item(0x30, b"1.2.840.10008.1.1")
              + item(0x40, b"1.2.840.10008.1.2"))
    user = item(0x50, item(0x51, struct.pack(">I", 16384))
                + item(0x52, b"1.2.826.0.1.3680043.9.7433.1"))
    body = (struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32)
            + item(0x10, b"1.2.840.10008.3.1.1.1") + pc + user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def read_pdu(s):
    """(type, body) of the next PDU, or None when the connection ends."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            try:
                got = s.recv(n - len(buf))
            except (ConnectionResetError, socket.timeout):
                return None
            if not got:
                return None
            buf += got
        return buf
    head = exact(6)
    if head is None:
        return None
    kind, _, length = struct.unpack(">BBI", head)
    body = exact(length)
    return None if body is None else (kind, body)


def closed(s):
    """True once a read on s ends (EOF or reset), False at the guard."""
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def cmd_silent(host, port, n, ready):
    conns = [socket.create_connection((host, int(port))) for _ in range(int(n))]
    open(ready, "w").close()
    end = time.monotonic() + GUARD
    done = 0
    for s in conns:
        s.settimeout(max(0.1, end - time.monotonic()))
        done += closed(s)
    print(done)


def cmd_assoc(host, port, calling, called, ready):
    s = socket.create_connection((host, int(port)))
    s.settimeout(GUARD)
    s.sendall(associate_rq(calling, called))
    pdu = read_pdu(s)
    if pdu is None:
        print("closed")
        return
    kind, body = pdu
    if kind == 3:
        print("rj %d %d %d" % (body[1], body[2], body[3]))
        return
    if kind != 2:
        print("pdu %d" % kind)
        return
    print("ac", flush=True)
    open(ready, "w").close()
    pdu = read_pdu(s)
    print("closed" if pdu is None else
          "abort" if pdu[0] == 7 else "pdu %d" % pdu[0])


def cmd_garbage(host, port, n, seed):
    rnd = random.Random(int(seed))
    good = associate_rq("DEMO_CT", "HASHI")
    ended = 0
    for i in range(int(n)):
        kind = i % 5
        if kind == 0:      # an HTTP request on the DICOM port
            data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        elif kind == 1:    # an A-ASSOCIATE-RQ claiming 16 MiB
            data = struct.pack(">BBI", 1, 0, 16 << 20) + bytes(64)
        elif kind == 2:    # random body
            body = bytes(rnd.randrange(256)
                         for _ in range(rnd.randrange(3000)))
            data = struct.pack(">BBI", 1, 0, len(body)) + body
        else:              # a good request with bytes changed
            b = bytearray(good)
            for _ in range(rnd.randrange(1, 20)):
                b[rnd.randrange(6, len(b))] = rnd.randrange(256)
            data = bytes(b)
        s = socket.create_connection((host, int(port)))
        s.settimeout(GUARD)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # closed, or answered: RJ, an abort, or AC (the changed bytes may
        # leave a valid request)
        pdu = read_pdu(s)
        ended += pdu is None or pdu[0] in (2, 3, 7)
        s.close()
    print(ended)


if __name__ == "__main__":
    cmds = {"silent": cmd_silent, "assoc": cmd_assoc, "garbage": cmd_garbage}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
