#!/usr/bin/python3
"""bench/viewer.py - what a DICOMweb viewer (OHIF) waits for when it opens
a study, Hashi against Orthanc's DICOMweb plugin in the same run (see
bench/run.sh, which starts this inside a private network namespace that
has only loopback).

The study (gen_study.py's CT, 200 slices by default) is stored once in
each server (STOW-RS, not timed).  Then, alternating hashi, Orthanc,
hashi, Orthanc..., one "open" is timed: QIDO-RS for the study, QIDO-RS
for its series, the series' WADO-RS metadata, and every instance's frame
1 (multipart/related; type="application/octet-stream";
transfer-syntax=*, as OHIF asks) over VIEWER_CONNS keep-alive connections
at once, as a browser does: HTTP/1.1 allows it six per origin, opened as
requests need them and reused (the QIDO connection fetches frames too).
Every answer is checked (status, the right number of objects, a
multipart frame at least as large as the pixels).

--baseline BINARY (or BENCH_VIEWER_BASELINE) adds a third peer in the
same run, another hashi-server build (say main's, before a change), so
before and after are measured side by side against the same Orthanc.

Hashi is measured over HTTPS (it serves nothing else), Orthanc over plain
HTTP (Debian's Orthanc 1.10.1 crashes with SslEnabled; see ingest.py).
The figures are appended to bench/RESULTS.md as its "Viewer" section
(replacing an older one).  Reuses ingest.py's study, peers and helpers.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest  # noqa: E402
from ingest import Hashi, Orthanc, Study, die, say, uids_of  # noqa: E402

VIEWER_CONNS = 6
FRAME_ACCEPT = ('multipart/related; type="application/octet-stream"; '
                'transfer-syntax=*')
SECTION = "## Viewer: open a study (QIDO + series metadata + all frames)"


class Client:
    """One server as a viewer sees it: its DICOMweb root and headers."""

    def __init__(self, peer):
        self.peer = peer
        if isinstance(peer, Hashi):
            self.root = "/dicomweb"
            self.headers = peer.auth()
        else:
            self.root = "/dicom-web"
            self.headers = {}

    def get(self, conn, path, accept):
        h = dict(self.headers, Accept=accept)
        conn.request("GET", self.root + path, headers=h)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            die("%s GET %s: %d %r" % (self.peer.name, path, r.status,
                                      body[:200]))
        return r, body


def open_study(client, study, uid, frame_bytes):
    """Time one viewer opening the study; returns seconds."""
    t0 = time.monotonic()
    c = client.peer.conn()      # a browser's: one, then up to six
    _, body = client.get(c, "/studies?StudyInstanceUID=%s" % uid,
                         "application/dicom+json")
    if len(json.loads(body)) != 1:
        die("%s: QIDO found no study" % client.peer.name)
    _, body = client.get(c, "/studies/%s/series" % uid,
                         "application/dicom+json")
    series = [s["0020000E"]["Value"][0] for s in json.loads(body)]
    frames = []
    for se in series:
        _, body = client.get(c, "/studies/%s/series/%s/metadata" % (uid, se),
                             "application/dicom+json")
        for o in json.loads(body):
            frames.append("/studies/%s/series/%s/instances/%s/frames/1"
                          % (uid, se, o["00080018"]["Value"][0]))
    if len(frames) != study.n:
        die("%s: metadata names %d instances, expected %d"
            % (client.peer.name, len(frames), study.n))
    lock = threading.Lock()
    errors = []

    def worker(conn):
        conn = conn or client.peer.conn()
        while True:
            with lock:
                if not frames:
                    break
                p = frames.pop()
            try:
                r, body = client.get(conn, p, FRAME_ACCEPT)
                ct = r.getheader("Content-Type", "")
                if not ct.startswith("multipart/related") or \
                        len(body) < frame_bytes:
                    raise RuntimeError("%s: %s, %d bytes" % (p, ct,
                                                             len(body)))
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(str(err))
                break
        conn.close()

    threads = [threading.Thread(target=worker,
                                args=(c if i == 0 else None,))
               for i in range(VIEWER_CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        die("%s: frames: %s" % (client.peer.name, errors[0]))
    return time.monotonic() - t0


def cpu_seconds(peer):
    """utime + stime of the peer's server process so far."""
    f = open("/proc/%d/stat" % peer.proc.pid).read().rsplit(")", 1)[1]
    f = f.split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def load(peer, study):
    secs, cp = ingest.timed(peer.stow_cmd(study.body))
    if cp.stdout.decode().strip() != "200":
        die("%s: STOW-RS of the study failed: %s" % (peer.name,
                                                    cp.stderr.decode()))
    ingest.expect_count(peer, study, peer.name)


def write_section(path, text):
    old = open(path).read() if os.path.exists(path) else ""
    i = old.find(SECTION)
    if i >= 0:
        j = old.find("\n## ", i + len(SECTION))
        old = old[:i] + (old[j + 1:] if j >= 0 else "")
    with open(path, "w") as f:
        f.write(old.rstrip("\n") + "\n\n" + text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int,
                    default=int(os.environ.get("BENCH_VIEWER_SLICES", "200")))
    ap.add_argument("--rounds", type=int,
                    default=int(os.environ.get("BENCH_VIEWER_ROUNDS", "5")))
    ap.add_argument("--baseline",
                    default=os.environ.get("BENCH_VIEWER_BASELINE"),
                    help="another hashi-server binary to measure too")
    ap.add_argument("--work", default=os.path.join(ingest.ROOT, "bench",
                                                   "work"))
    ap.add_argument("--results", default=os.path.join(ingest.ROOT, "bench",
                                                      "RESULTS.md"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t_start = time.monotonic()
    study = Study(args.work, args.slices)
    uid = uids_of(study.files[0])[0]
    out = subprocess.run(["dcmdump", "+P", "Rows", "+P", "Columns",
                          study.files[0]], capture_output=True,
                         text=True).stdout
    dims = [int(x) for x in re.findall(r"US (\d+)", out)]
    if len(dims) != 2:
        die("cannot read Rows and Columns of %s" % study.files[0])
    frame_bytes = dims[0] * dims[1] * 2     # 16-bit CT
    Hashi.prepare(args.work)
    peers = [Hashi(args.work)]
    if args.baseline:
        # The same data template, its own directory and binary.
        bdir = os.path.join(args.work, "baseline")
        os.makedirs(bdir, exist_ok=True)
        server, ingest.SERVER = ingest.SERVER, args.baseline
        try:
            peers.append(Hashi(bdir))
        finally:
            ingest.SERVER = server
        peers[-1].name = "hashi-before"
    peers.append(Orthanc(args.work))
    names = [p.name for p in peers]
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    try:
        for p in peers:
            load(p, study)
        clients = [Client(p) for p in peers]
        for c in clients:          # one untimed open each: warm caches
            open_study(c, study, uid, frame_bytes)
        for r in range(args.rounds):
            for c in clients:
                c0 = cpu_seconds(c.peer)
                secs = open_study(c, study, uid, frame_bytes)
                cpu[c.peer.name].append(cpu_seconds(c.peer) - c0)
                times[c.peer.name].append(secs)
                say("  round %d %-12s %.3f s (%.0f frames/s)"
                    % (r + 1, c.peer.name, secs, study.n / secs))
    finally:
        for p in peers:
            p.close()

    def ratio(a, b):
        rs = [x / y for x, y in zip(times[a], times[b])]
        return statistics.median(rs), ingest.fmt_range(rs, "%.2f")
    rr, rrange = ratio("hashi", "orthanc")
    lines = [
        SECTION, "",
        "Written by bench/viewer.py (bench/run.sh) on %s; %s; %d slices "
        "(%.1f MB), %d rounds alternating %s; a warm-up open "
        "each first.  One open = QIDO-RS study, QIDO-RS series, the "
        "series' WADO-RS metadata, then frame 1 of every instance "
        "(transfer-syntax=*, as OHIF asks) over %d keep-alive connections "
        "at once, opened as a browser does (the QIDO one among them).  "
        "Hashi over HTTPS, Orthanc %s over plain HTTP with its "
        "DICOMweb plugin.  Load average %.1f at the end."
        % (time.strftime("%Y-%m-%d %H:%M %Z"),
           os.environ.get("HASHI_BENCH_NETNS", "host network"), study.n,
           study.bytes / 1e6, args.rounds, ", ".join(names), VIEWER_CONNS,
           ingest.version(["Orthanc", "--version"]).replace("Orthanc ", ""),
           os.getloadavg()[0]),
        "",
        "| server | median s | min–max s | frames/s (median) | server CPU "
        "s/open (median) |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        m = statistics.median(times[n])
        lines.append("| %s | %.3f | %s | %.0f | %.2f |" % (
            n, m, ingest.fmt_range(times[n]), study.n / m,
            statistics.median(cpu[n])))
    lines += [
        "",
        "Hashi's time / Orthanc's, per round: median %.2f (%s); target "
        "≤ 0.5: %s." % (rr, rrange, "met" if rr <= 0.5 else "NOT met"),
    ]
    if args.baseline:
        lines.append("Baseline (%s) / Orthanc: median %.2f (%s); this "
                     "build / baseline: median %.2f (%s)." % (
                         (os.path.basename(args.baseline),) + ratio("hashi-before", "orthanc")
                         + ratio("hashi", "hashi-before")))
    lines += ["Run took %.0f s." % (time.monotonic() - t_start), ""]
    for line in lines:
        say(line)
    write_section(args.results, "\n".join(lines))
    say("bench: wrote the viewer section of %s" % args.results)


if __name__ == "__main__":
    main()
