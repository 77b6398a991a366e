#!/usr/bin/python3
"""linkemu: a loopback TCP proxy that behaves like a poor rural link.

    linkemu.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT
               [--rate 2mbit] [--delay 150ms] [--cut-after 5M]
               [--cut-every 30s] [--outage 5s] [--down-file FILE]
               [--silent-file FILE] [--shared] [--stats FILE]

Every accepted connection is relayed to --target.  Each direction has its
own rate cap and one-way delay, per connection, or with --shared one wire
per direction that all connections queue on, in the order their bytes
come (a phone's one radio link, which a browser's six connections share);
the bytes read from a sender but not yet
delivered are bounded (about two bandwidth-delay products), so a sender is
held back the way a slow link holds it back instead of filling a queue.

The link breaks on demand: --cut-after cuts every open connection once,
when the Nth byte (both directions together) has crossed; --cut-every cuts
them every S seconds; --outage refuses new connections for that long after
each cut; while --down-file exists new connections are refused, and its
appearance cuts the open ones.  A cut is an RST to both ends, and the bytes
still in flight are lost, as on a dropped mobile link.  A refused
connection is accepted and reset at once.  While --silent-file exists the
link drops every byte it reads, on open and on new connections alike, and
closes nothing: a radio link gone dead, which neither end is told about
(a connection made meanwhile is accepted but its bytes go nowhere).

Sizes: N, Nk, NM, NG (bytes, powers of 1024, optional B).  Rates: Nbit,
Nkbit, Nmbit, Ngbit, or bytes per second as a size.  Times: Nms, Ns, N.
--listen port 0 picks a free port; the listening line on stderr
("linkemu: listening on 127.0.0.1:PORT -> ...") names it.  On SIGINT or
SIGTERM it writes one JSON line of statistics (up_bytes: delivered
client->target, down_bytes: target->client, connections, refused_while_down,
cuts, target_errors, dropped_bytes) to stdout, or to --stats (replaced atomically), and
exits 0.  Only loopback addresses are accepted.  Python 3 stdlib only.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import socket
import sys
import time

READ_SIZE = 64 * 1024
DOWN_POLL_S = 0.05
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
BIT_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def _number(text, what):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}")
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}")
    return value


def parse_size(text):
    """'300000', '64k', '5M', '5MB', '1.5G' -> bytes (powers of 1024)."""
    t = text.strip().lower()
    if t.endswith("b"):
        t = t[:-1]
    unit = t[-1:] if t[-1:] in ("k", "m", "g") else ""
    return int(_number(t[:len(t) - len(unit)], "size") * SIZE_UNITS[unit])


def parse_rate(text):
    """'2mbit' -> 250000.0 bytes/s; '300k' -> 307200.0 bytes/s."""
    t = text.strip().lower()
    for unit in ("kbit", "mbit", "gbit", "bit"):
        if t.endswith(unit):
            rate = _number(t[:-len(unit)], "rate") * BIT_UNITS[unit] / 8
            break
    else:
        try:
            rate = float(parse_size(text))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"not a rate (2mbit, 384kbit, 300k): {text!r}")
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"rate must be > 0: {text!r}")
    return rate


def parse_seconds(text):
    """'150ms' -> 0.15; '30s' -> 30.0; '2' -> 2.0."""
    t = text.strip().lower()
    if t.endswith("ms"):
        return _number(t[:-2], "time") / 1000.0
    return _number(t[:-1] if t.endswith("s") else t, "time")


def parse_loopback(text):
    """'127.0.0.1:8443', '[::1]:8443', 'localhost:8443' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ok = sep and ipaddress.ip_address(host).is_loopback
        port = int(port)
    except ValueError:
        ok = False
    if not ok or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"need a loopback HOST:PORT, got {text!r}")
    return host, port


def reset(sock):
    """Close with an RST (SO_LINGER 0), not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        b"\x01\0\0\0\0\0\0\0")
    except OSError:
        pass
    sock.close()


class Wire:
    """One direction of a --shared link: when it is free again."""

    tx_free = 0.0


class Direction:
    """One way of one connection: reads src, delivers to dst on schedule.

    The reader stamps every piece with the time it would leave a link of
    the given rate plus the delay; the writer sends it then.  The reader
    stops while `budget` bytes are in flight, so the sender's own socket
    buffer fills and it blocks.
    """

    def __init__(self, link, src, dst, key):
        self.link = link
        self.src, self.dst, self.key = src, dst, key
        self.queue = asyncio.Queue()
        self.inflight = 0
        self.room = asyncio.Event()
        self.room.set()
        self.tx_free = 0.0      # when the modelled wire is free again
        # --shared: the link's wire of this direction, not our own
        self.wire = (link.wires.setdefault(key, Wire()) if link.shared
                     else self)

    async def read_loop(self):
        loop = asyncio.get_running_loop()
        link = self.link
        while True:
            await self.room.wait()
            data = await loop.sock_recv(self.src, READ_SIZE)
            if not data:
                self.queue.put_nowait(None)
                return
            if link.is_silent():
                link.stats["dropped_bytes"] += len(data)
                continue
            data, last = link.take(data)
            self.schedule(data, last)
            if last:
                return          # nothing more crosses before the cut
            if self.inflight >= link.budget:
                self.room.clear()

    def schedule(self, data, last):
        if not data:
            return
        link = self.link
        now = time.monotonic()
        step = link.piece if link.rate else len(data)
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            if link.rate:
                w = self.wire
                w.tx_free = max(now, w.tx_free) + len(piece) / link.rate
                due = w.tx_free + link.delay
            else:
                due = now + link.delay
            end = last and i + step >= len(data)
            self.queue.put_nowait((due, piece, end))
        self.inflight += len(data)

    async def write_loop(self):
        loop = asyncio.get_running_loop()
        while True:
            item = await self.queue.get()
            if item is None:
                self.dst.shutdown(socket.SHUT_WR)
                return
            due, piece, last = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await loop.sock_sendall(self.dst, piece)
            self.link.stats[self.key] += len(piece)
            self.inflight -= len(piece)
            if self.inflight < self.link.budget:
                self.room.set()
            if last:
                self.link.cut_done = True
                self.link.cut_all("after %d bytes" % self.link.cut_after)
                return


class Conn:
    """A relayed connection: two directions, four tasks, two sockets."""

    def __init__(self, link, client, upstream):
        self.link, self.socks = link, (client, upstream)
        up = Direction(link, client, upstream, "up_bytes")
        down = Direction(link, upstream, client, "down_bytes")
        self.tasks = [asyncio.ensure_future(c) for c in (
            up.read_loop(), up.write_loop(),
            down.read_loop(), down.write_loop())]
        self.writers = {self.tasks[1], self.tasks[3]}
        self.closed = False
        for t in self.tasks:
            t.add_done_callback(self.task_done)

    def task_done(self, task):
        if self.closed or task.cancelled():
            return
        if task.exception() is not None:
            self.abort()        # a reset or error on one side: reset both
            return
        if all(t.done() for t in self.writers):
            self.finish(reset_socks=False)

    def abort(self):
        self.finish(reset_socks=True)

    def finish(self, reset_socks):
        if self.closed:
            return
        self.closed = True
        self.link.conns.discard(self)
        loop = asyncio.get_running_loop()
        for t in self.tasks:
            t.cancel()
        for s in self.socks:
            # Unregister now: the cancelled tasks would do it later, by fd
            # number, which a new connection may have taken by then.
            loop.remove_reader(s.fileno())
            loop.remove_writer(s.fileno())
            if reset_socks:
                reset(s)
            else:
                s.close()


class Link:
    def __init__(self, args):
        self.rate, self.delay = args.rate, args.delay or 0.0
        self.cut_after, self.cut_every = args.cut_after, args.cut_every
        self.outage, self.down_file = args.outage or 0.0, args.down_file
        self.silent_file = args.silent_file
        self.target = args.target
        self.shared = args.shared
        self.wires = {}             # --shared: direction key -> its wire
        # Two bandwidth-delay products in flight per direction keep a
        # paced link busy; without a rate, a few MiB keep loopback fast.
        if self.rate:
            bdp = self.rate * max(self.delay, 0.01)
            self.budget = int(max(64 * 1024, 2 * bdp))
            self.piece = max(1024, min(READ_SIZE, int(self.rate / 100)))
        else:
            self.budget = 4 * 1024 * 1024
        self.taken = 0              # bytes admitted, for --cut-after
        self.cut_pending = False    # the Nth byte is on its way
        self.cut_done = False       # --cut-after has cut; the link is whole
        self.down_until = 0.0
        self.conns = set()
        self.stats = {"up_bytes": 0, "down_bytes": 0, "connections": 0,
                      "refused_while_down": 0, "cuts": 0,
                      "target_errors": 0, "dropped_bytes": 0}

    def take(self, data):
        """Admit data; with --cut-after, trim it at the Nth byte and say
        whether it carries that byte (the cut comes once it is delivered)."""
        if self.cut_after is None or self.cut_done:
            return data, False
        if self.cut_pending:
            return b"", False       # lost: the link is about to break
        left = self.cut_after - self.taken
        if len(data) < left:
            self.taken += len(data)
            return data, False
        self.taken = self.cut_after
        self.cut_pending = True
        return data[:left], True

    def is_down(self):
        if self.down_file and os.path.exists(self.down_file):
            return True
        return time.monotonic() < self.down_until

    def is_silent(self):
        return bool(self.silent_file) and os.path.exists(self.silent_file)

    def cut_all(self, why):
        self.stats["cuts"] += 1
        self.down_until = time.monotonic() + self.outage
        n = len(self.conns)
        for c in list(self.conns):
            c.abort()
        print(f"linkemu: cut ({why}): {n} connection(s)", file=sys.stderr,
              flush=True)

    def buffers(self, sock):
        # Small kernel buffers when paced, or the sender would pour
        # megabytes into loopback's autotuned buffers and never feel it.
        if self.rate:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, 64 * 1024)

    async def handle(self, client):
        loop = asyncio.get_running_loop()
        if self.is_down():
            self.stats["refused_while_down"] += 1
            reset(client)
            return
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        upstream = socket.socket(family, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffers(upstream)
        try:
            await loop.sock_connect(upstream, self.target)
        except OSError:
            self.stats["target_errors"] += 1
            upstream.close()
            reset(client)
            return
        self.stats["connections"] += 1
        self.conns.add(Conn(self, client, upstream))

    async def accept_loop(self, listener):
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(listener)
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            asyncio.ensure_future(self.handle(client))

    async def cut_ticker(self):
        while True:
            await asyncio.sleep(self.cut_every)
            self.cut_all(f"every {self.cut_every:g} s")

    async def down_watch(self):
        # A file there at start is a link that starts down, not a cut.
        was_down = os.path.exists(self.down_file)
        while True:
            down = os.path.exists(self.down_file)
            if down and not was_down:
                self.cut_all(f"{self.down_file} appeared")
            was_down = down
            await asyncio.sleep(DOWN_POLL_S)


def write_stats(stats, path):
    line = json.dumps(stats) + "\n"
    if not path:
        sys.stdout.write(line)
        sys.stdout.flush()
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(line)
    os.replace(tmp, path)


async def run(args):
    link = Link(args)
    host, port = args.listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    link.buffers(listener)      # inherited by accepted sockets
    try:
        listener.bind((host, port))
    except OSError as e:
        sys.exit(f"linkemu: cannot listen on {host}:{port}: {e.strerror}")
    listener.listen(128)
    listener.setblocking(False)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(link.accept_loop(listener))]
    if link.cut_every:
        tasks.append(asyncio.ensure_future(link.cut_ticker()))
    if link.down_file:
        tasks.append(asyncio.ensure_future(link.down_watch()))
    bound = listener.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    print(f"linkemu: listening on {shown}:{bound[1]} -> "
          f"{args.target[0]}:{args.target[1]}", file=sys.stderr, flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    for c in list(link.conns):
        c.abort()
    listener.close()
    write_stats(link.stats, args.stats)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="linkemu.py",
        description="A TCP proxy that behaves like a poor rural link "
        "(loopback only).")
    ap.add_argument("--listen", required=True, type=parse_loopback,
                    help="HOST:PORT to accept on (port 0: any free port)")
    ap.add_argument("--target", required=True, type=parse_loopback,
                    help="HOST:PORT to relay to")
    ap.add_argument("--rate", type=parse_rate,
                    help="per-direction cap, e.g. 2mbit, 384kbit, 300k")
    ap.add_argument("--delay", type=parse_seconds,
                    help="one-way delay, e.g. 150ms")
    ap.add_argument("--cut-after", type=parse_size,
                    help="cut all connections once after N bytes")
    ap.add_argument("--cut-every", type=parse_seconds,
                    help="cut all connections every S seconds")
    ap.add_argument("--outage", type=parse_seconds,
                    help="after a cut, refuse connections this long")
    ap.add_argument("--down-file",
                    help="refuse connections while this file exists "
                    "(its appearance cuts open ones)")
    ap.add_argument("--silent-file",
                    help="drop every byte, closing nothing, while this "
                    "file exists")
    ap.add_argument("--shared", action="store_true",
                    help="one wire per direction for all connections "
                    "(--rate is the link's, not each connection's)")
    ap.add_argument("--stats",
                    help="write final JSON stats here instead of stdout")
    args = ap.parse_args(argv)
    if args.target[1] == 0:
        ap.error("--target needs a port")
    if args.cut_every is not None and args.cut_every <= 0:
        ap.error("--cut-every must be > 0")
    if args.cut_after is not None and args.cut_after <= 0:
        ap.error("--cut-after must be > 0")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
