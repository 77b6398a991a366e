#!/usr/bin/python3
"""bench/ingest.py - Hashi's ingest and render benchmark, side by side
with its peers, in one run (see bench/run.sh, which starts this inside a
private network namespace that has only loopback).

The same 200-slice CT (tests/tools/gen_study.py) goes, round after
round, in the order a b c d e:

  (a) storescu -> DCMTK storescp            (files only: the disk limit)
  (b) storescu -> hashi-server              (C-STORE, durable)
  (c) storescu -> Orthanc                   (C-STORE, SyncStorageArea on)
  (d) STOW-RS (one curl request) -> hashi-server
  (e) STOW-RS (one curl request) -> Orthanc's DICOMweb plugin

Every run gets fresh storage, a sync before it, and only the client is
timed; each is checked (200 instances arrived, no failure).  Then:

  (f) rendered-JPEG latency over the 200 slices, hashi-server's
      .../rendered vs Orthanc's /instances/{id}/rendered, by one Python
      client over one keep-alive connection each, alternating passes;
  (g) hashi-server's RSS (VmRSS every 0.5 s) while one ~2 GB STOW-RS
      request streams in, made on the fly from the study with fresh SOP
      Instance UIDs (nothing of it is written to disk by the client).

It prints instances/s, MB/s, medians, min-max and the hashi/Orthanc
ratio per pair, and writes bench/RESULTS.md.
"""

import argparse
import datetime
import glob
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("HASHI_BUILD", os.path.join(ROOT, "build"))
SERVER = os.path.join(BUILD, "hashi-server")
TOOLS = os.environ.get("HASHI_TOOLS", os.path.join(ROOT, "tests", "tools"))
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
BOUNDARY = "HashiBenchBoundary7f3a"
MPR_TYPE = ('multipart/related; type="application/dicom"; boundary='
            + BOUNDARY)

ENV = dict(os.environ, TCP_NODELAY="1")


def say(msg):
    print(msg, flush=True)


def die(msg):
    say("bench: " + msg)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(what, check, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    die("timed out waiting for " + what)


def stop(proc, timeout=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed(cmd, **kw):
    """Run the client; return (seconds, CompletedProcess)."""
    os.sync()
    t0 = time.monotonic()
    cp = subprocess.run(cmd, env=ENV, capture_output=True, **kw)
    return time.monotonic() - t0, cp


# ---- the study -------------------------------------------------------------

class Study:
    def __init__(self, work, slices):
        self.dir = os.path.join(work, "ct%d" % slices)
        if not os.path.exists(os.path.join(self.dir, ".complete")):
            shutil.rmtree(self.dir, ignore_errors=True)
            subprocess.run(["/usr/bin/python3",
                            os.path.join(TOOLS, "gen_study.py"),
                            "--slices", str(slices), "--seed", "4242",
                            "--patient-id", "BENCH%d" % slices, self.dir],
                           check=True, stdout=subprocess.DEVNULL)
            open(os.path.join(self.dir, ".complete"), "w").close()
        self.files = sorted(glob.glob(os.path.join(self.dir, "*.dcm")))
        if len(self.files) != slices:
            die("study has %d files, expected %d" % (len(self.files), slices))
        self.n = len(self.files)
        self.bytes = sum(os.path.getsize(f) for f in self.files)
        self.body = os.path.join(work, "ct%d.mpr" % slices)
        if not os.path.exists(self.body):
            with open(self.body + ".tmp", "wb") as out:
                for chunk in multipart(self.read_all()):
                    out.write(chunk)
            os.rename(self.body + ".tmp", self.body)

    def read_all(self):
        for f in self.files:
            with open(f, "rb") as fh:
                yield fh.read()


def multipart(parts):
    head = ("--%s\r\nContent-Type: application/dicom\r\n\r\n"
            % BOUNDARY).encode()
    for data in parts:
        yield head
        yield data
        yield b"\r\n"
    yield ("--%s--\r\n" % BOUNDARY).encode()


# ---- peers -----------------------------------------------------------------

class Storescp:
    name = "storescp"

    def __init__(self, work):
        self.dir = os.path.join(work, "storescp")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.port = free_port()
        self.aet = "STORESCP"
        self.proc = subprocess.Popen(
            ["storescp", "-aet", self.aet, "-od", self.dir, str(self.port)],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("storescp", lambda: subprocess.run(
            ["echoscu", "-aec", self.aet, "127.0.0.1", str(self.port)],
            env=ENV, capture_output=True).returncode == 0)

    def count(self):
        return len(os.listdir(self.dir))

    def close(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def http_get(conn, path, headers=None):
    """(status, body) of one GET over conn, which is closed after it."""
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def stow_curl(body, url, extra=()):
    """curl argv that POSTs the multipart file body to url in one request
    and prints only the HTTP status; extra: TLS and auth options."""
    return (["curl", "-sS"] + list(extra)
            + ["-H", "Expect:", "-H", "Content-Type: " + MPR_TYPE,
               "-H", "Accept: application/dicom+json",
               "-X", "POST", "-T", body, "-o", "/dev/null",
               "-w", "%{http_code}", url])


class Hashi:
    name = "hashi"
    template = None

    @classmethod
    def prepare(cls, work):
        """init + demo once (scrypt makes demo slow); each run copies it."""
        cls.template = os.path.join(work, "hashi-template")
        shutil.rmtree(cls.template, ignore_errors=True)
        for sub in (["init"], ["demo"]):
            cp = subprocess.run([SERVER] + sub + ["--data", cls.template],
                                capture_output=True, text=True)
            if cp.returncode:
                die("hashi-server %s: %s" % (sub[0], cp.stderr.strip()))

    def __init__(self, work):
        self.data = os.path.join(work, "hashi-data")
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.copytree(Hashi.template, self.data)
        self.port, self.dport = free_port(), free_port()
        self.aet = "HASHI"
        self.calling = "DEMO_CT"
        self.cacert = os.path.join(self.data, "tls", "cert.pem")
        self.log = open(os.path.join(work, "hashi.log"), "ab")
        self.proc = subprocess.Popen(
            [SERVER, "--data", self.data,
             "--listen", "127.0.0.1:%d" % self.port,
             "--dicom", "127.0.0.1:%d" % self.dport, "--ae-title", self.aet,
             "--log-level", "warn"],
            env=ENV, stdout=self.log, stderr=self.log)
        self.ctx = ssl.create_default_context(cafile=self.cacert)
        wait_until("hashi-server /healthz",
                   lambda: self.get("/healthz")[0] == 200)
        self.token = None

    def conn(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port,
                                           context=self.ctx, timeout=600)

    def get(self, path, headers=None):
        return http_get(self.conn(), path, headers)

    def login(self):
        c = self.conn()
        c.request("POST", "/api/login", body=json.dumps(
            {"login": "demo-admin", "password": "demo-password"}),
            headers={"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            die("hashi login: %d %r" % (r.status, body[:200]))
        self.token = json.loads(body)["token"]
        return self.token

    def auth(self):
        return {"Authorization": "Bearer " + (self.token or self.login())}

    def count(self):
        status, body = self.get("/metrics")
        m = re.search(rb"^hashi_instances_received_total (\d+)", body, re.M)
        if status != 200 or not m:
            die("hashi /metrics: %d %r" % (status, body[:200]))
        return int(m.group(1))

    def stow_cmd(self, body):
        return stow_curl(body, "https://127.0.0.1:%d/dicomweb/studies"
                         % self.port,
                         ["--cacert", self.cacert,
                          "-H", "Authorization: Bearer " + self.login()])

    def render_targets(self, study):
        """(path, headers) for each slice's /rendered."""
        out = []
        for f in study.files:
            st, se, sop = uids_of(f)
            out.append("/dicomweb/studies/%s/series/%s/instances/%s/rendered"
                       % (st, se, sop))
        return out, dict(self.auth(), Accept="image/jpeg")

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1))

    def close(self):
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


class Orthanc:
    name = "orthanc"

    def __init__(self, work, extra=None):
        """extra: settings merged into the configuration (bench/cfind.py
        declares its calling AE)."""
        self.dir = os.path.join(work, "orthanc")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "storage"))
        self.port, self.dport = free_port(), free_port()
        self.aet = "ORTHANC"
        cfg = {
            "Name": "hashi-bench",
            "StorageDirectory": os.path.join(self.dir, "storage"),
            "IndexDirectory": os.path.join(self.dir, "storage"),
            "StorageCompression": False,
            "SyncStorageArea": True,
            "HttpPort": self.port,
            "DicomPort": self.dport,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {},
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "HttpCompressionEnabled": False,
            "Plugins": [ORTHANC_DICOMWEB],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        cfg.update(extra or {})
        path = os.path.join(self.dir, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.log = open(os.path.join(work, "orthanc.log"), "ab")
        self.proc = subprocess.Popen(["Orthanc", path], env=ENV,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        wait_until("Orthanc /system", lambda: self.get("/system")[0] == 200)

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=600)

    def get(self, path, headers=None):
        if self.proc.poll() is not None:
            die("Orthanc exited with status %d (see bench/work/orthanc.log)"
                % self.proc.returncode)
        return http_get(self.conn(), path, headers)

    def count(self):
        status, body = self.get("/statistics")
        if status != 200:
            die("Orthanc /statistics: %d" % status)
        return int(json.loads(body)["CountInstances"])

    def stow_cmd(self, body):
        return stow_curl(body, "http://127.0.0.1:%d/dicom-web/studies"
                         % self.port)

    def render_targets(self, study):
        status, body = self.get("/instances?expand")
        if status != 200:
            die("Orthanc /instances: %d" % status)
        by_sop = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"]
                  for i in json.loads(body)}
        out = []
        for f in study.files:
            out.append("/instances/%s/rendered" % by_sop[uids_of(f)[2]])
        return out, {"Accept": "image/jpeg"}

    def close(self):
        stop(self.proc, timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_UIDS = {}


def uids_of(path):
    """(study, series, sop) read straight from the Explicit LE file."""
    if path not in _UIDS:
        with open(path, "rb") as f:
            head = f.read(4096)
        vals = []
        for tag in (b"\x20\x00\x0d\x00UI", b"\x20\x00\x0e\x00UI",
                    b"\x08\x00\x18\x00UI"):
            i = head.find(tag)
            n = int.from_bytes(head[i + 6:i + 8], "little")
            vals.append(head[i + 8:i + 8 + n].rstrip(b"\0 ").decode())
        _UIDS[path] = tuple(vals)
    return _UIDS[path]


# ---- the runs ----------------------------------------------------------------

def expect_count(peer, study, what):
    got = peer.count()
    if got != study.n:
        die("%s: %d instances arrived, expected %d" % (what, got, study.n))


def run_cstore(peer_cls, work, study):
    peer = peer_cls(work)
    try:
        calling = getattr(peer, "calling", "BENCH")
        secs, cp = timed(["storescu", "-aet", calling, "-aec", peer.aet,
                          "127.0.0.1", str(getattr(peer, "dport",
                                                   getattr(peer, "port", 0)))]
                         + study.files)
        if cp.returncode != 0 or re.search(rb"^[EF]:", cp.stderr, re.M):
            die("%s: storescu failed: %s" % (peer.name,
                                              cp.stderr.decode()[-400:]))
        expect_count(peer, study, peer.name)
        return secs
    finally:
        peer.close()


def run_stow(peer_cls, work, study):
    peer = peer_cls(work)
    try:
        cmd = peer.stow_cmd(study.body)
        secs, cp = timed(cmd)
        code = cp.stdout.decode().strip()
        if cp.returncode != 0 or code != "200":
            die("%s: STOW-RS gave %s (%s)" % (peer.name, code,
                                               cp.stderr.decode()[-300:]))
        expect_count(peer, study, peer.name + " STOW-RS")
        return secs
    finally:
        peer.close()


PATHS = [
    ("a", "C-STORE -> storescp (files only)", run_cstore, Storescp),
    ("b", "C-STORE -> hashi-server", run_cstore, Hashi),
    ("c", "C-STORE -> Orthanc", run_cstore, Orthanc),
    ("d", "STOW-RS -> hashi-server", run_stow, Hashi),
    ("e", "STOW-RS -> Orthanc", run_stow, Orthanc),
]


def jpeg_dims(data):
    """(width, height) from the first SOF marker of a JPEG."""
    pos = 2
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        seglen = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return (int.from_bytes(data[pos + 7:pos + 9], "big"),
                    int.from_bytes(data[pos + 5:pos + 7], "big"))
        pos += 2 + seglen
    return None


def render_pass(peer, paths, headers, conn):
    """GET every path once over conn; return latencies in ms.  Every
    answer must be a JPEG of the slice's full size (same work for both)."""
    lat = []
    for p in paths:
        t0 = time.monotonic()
        conn.request("GET", p, headers=headers)
        r = conn.getresponse()
        body = r.read()
        lat.append((time.monotonic() - t0) * 1000.0)
        if r.status != 200 or not body.startswith(b"\xff\xd8") or \
                not r.getheader("Content-Type", "").startswith("image/jpeg"):
            die("%s rendered %s: %d %s %r" % (peer.name, p, r.status,
                                              r.getheader("Content-Type"),
                                              body[:100]))
        if jpeg_dims(body) != (512, 512):
            die("%s rendered %s: JPEG of %s, expected 512x512"
                % (peer.name, p, jpeg_dims(body)))
    return lat


def pct(values, q):
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def run_render(work, study, passes):
    hashi, orth = Hashi(work), Orthanc(work)
    try:
        for peer in (hashi, orth):
            secs, cp = timed(["storescu", "-aet",
                              getattr(peer, "calling", "BENCH"), "-aec",
                              peer.aet, "127.0.0.1", str(peer.dport)]
                             + study.files)
            if cp.returncode or peer.count() != study.n:
                die("%s: loading the study for rendering failed" % peer.name)
        targets = {p.name: p.render_targets(study) for p in (hashi, orth)}
        conns = {hashi.name: hashi.conn(), orth.name: orth.conn()}
        res = {hashi.name: [], orth.name: []}
        for _ in range(passes):
            for peer in (hashi, orth):
                paths, headers = targets[peer.name]
                res[peer.name].append(render_pass(peer, paths, headers,
                                                  conns[peer.name]))
        for c in conns.values():
            c.close()
        return res
    finally:
        hashi.close()
        orth.close()


def run_rss(work, study, target_bytes):
    """One STOW-RS request of about target_bytes, instances renamed on the
    fly; VmRSS sampled every 0.5 s.  Returns a dict of figures."""
    hashi = Hashi(work)
    try:
        token = hashi.login()
        time.sleep(1.0)
        rss_start = hashi.rss_kb()
        originals = list(study.read_all())
        copies = max(1, target_bytes // study.bytes)
        n = copies * study.n
        head = ("--%s\r\nContent-Type: application/dicom\r\n\r\n"
                % BOUNDARY).encode()
        tail = ("--%s--\r\n" % BOUNDARY).encode()
        total = sum(len(head) + len(d) + 2 for d in originals) * copies \
            + len(tail)

        def body():
            i = 0
            for _ in range(copies):
                for data in originals:
                    i += 1
                    yield head
                    yield renamed_copy(data, i)
                    yield b"\r\n"
            yield tail

        result = {}

        def send():
            c = hashi.conn()
            t0 = time.monotonic()
            c.putrequest("POST", "/dicomweb/studies")
            for k, v in (("Authorization", "Bearer " + token),
                         ("Content-Type", MPR_TYPE),
                         ("Accept", "application/dicom+json"),
                         ("Content-Length", str(total))):
                c.putheader(k, v)
            c.endheaders()
            for chunk in body():
                c.send(chunk)
            r = c.getresponse()
            reply = r.read()
            result["secs"] = time.monotonic() - t0
            result["status"] = r.status
            result["reply"] = reply
            c.close()

        samples = []
        t = threading.Thread(target=send)
        t.start()
        while t.is_alive():
            samples.append(hashi.rss_kb())
            t.join(0.5)
        samples.append(hashi.rss_kb())
        got = hashi.count()
        if result.get("status") != 200 or got != n:
            die("2 GB STOW-RS: status %s, %d of %d instances stored: %r" %
                (result.get("status"), got, n,
                 result.get("reply", b"")[:300]))
        return {"bytes": total, "instances": n, "secs": result["secs"],
                "rss_start_kb": rss_start, "rss_max_kb": max(samples),
                "rss_end_kb": hashi.rss_kb(), "samples": len(samples)}
    finally:
        hashi.close()


def uids_of_bytes(data):
    i = data.find(b"\x08\x00\x18\x00UI")
    n = int.from_bytes(data[i + 6:i + 8], "little")
    return data[i + 8:i + 8 + n].rstrip(b"\0 ").decode()


def renamed_copy(data, i):
    """The instance data as copy number i: a new SOP Instance UID of the
    same length, so the file's size and every other byte stay the same."""
    sop = uids_of_bytes(data)
    new = ("2.25.9%0*d" % (len(sop) - 6, i)).encode()
    return data.replace(sop.encode(), new)


# ---- report ------------------------------------------------------------------

def med(v):
    return statistics.median(v)


def fmt_range(v, f="%.3f"):
    return (f % min(v)) + "–" + (f % max(v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int,
                    default=int(os.environ.get("BENCH_ROUNDS", "5")),
                    help="ingest rounds; 0 skips ingest (e.g. only the "
                    "render part: --rounds 0 --stream-gb 0 --results "
                    "/tmp/render.md)")
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--render-passes", type=int, default=2)
    ap.add_argument("--stream-gb", type=float,
                    default=float(os.environ.get("BENCH_STREAM_GB", "2")))
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench",
                                                      "RESULTS.md"))
    ap.add_argument("--paths", default="abcde",
                    help="which of the runs a-e to time (e.g. bc, de); "
                    "ratios need both sides")
    args = ap.parse_args()
    paths = [p for p in PATHS if p[0] in args.paths]
    if not paths:
        die("--paths names none of a b c d e")

    for tool in ("storescu", "storescp", "echoscu", "Orthanc", "curl"):
        if not shutil.which(tool):
            die("%s not found (make deps)" % tool)
    if not os.access(SERVER, os.X_OK):
        die("%s not built" % SERVER)
    if not os.path.exists(ORTHANC_DICOMWEB):
        die("%s missing (orthanc-dicomweb)" % ORTHANC_DICOMWEB)
    os.makedirs(args.work, exist_ok=True)
    args.load0 = "%.2f" % os.getloadavg()[0]
    netns = os.environ.get("HASHI_BENCH_NETNS", "no")
    t_start = time.monotonic()

    say("bench: preparing the %d-slice study" % args.slices)
    study = Study(args.work, args.slices)
    Hashi.prepare(args.work)
    mb = study.bytes / 1e6
    say("bench: %d instances, %.1f MB; %d rounds of %s"
        % (study.n, mb, args.rounds, " ".join(p[0] for p in paths)))

    times = {k: [] for k, *_ in paths}
    for r in range(args.rounds):
        for key, label, fn, cls in paths:
            secs = fn(cls, args.work, study)
            times[key].append(secs)
            say("  round %d %s %-36s %6.3f s %7.1f inst/s %6.1f MB/s"
                % (r + 1, key, label, secs, study.n / secs, mb / secs))

    render = None
    if args.render_passes > 0:
        say("bench: (f) rendered latency, %d passes each, alternating"
            % args.render_passes)
        render = run_render(args.work, study, args.render_passes)

    rss = None
    if args.stream_gb > 0:
        say("bench: (g) hashi-server RSS during a %.1f GB STOW-RS request"
            % args.stream_gb)
        rss = run_rss(args.work, study, int(args.stream_gb * 1024 ** 3))

    # ---- figures
    lines = []

    def out(s=""):
        lines.append(s)
        say(s)

    if args.rounds > 0:       # --rounds 0: render and/or RSS only
        out("| path | median s | min–max s | inst/s (median) "
            "| MB/s (median) |")
        out("|---|---|---|---|---|")
        for key, label, *_ in paths:
            v = times[key]
            out("| (%s) %s | %.3f | %s | %.0f | %.1f |"
                % (key, label, med(v), fmt_range(v), study.n / med(v),
                   mb / med(v)))
        out()
        out("Per round, seconds: " + "; ".join(
            "(%s) %s" % (key, " ".join("%.3f" % t for t in times[key]))
            for key, *_ in paths))
        out()
        ratios = {}
        out("| ratio (per round: Orthanc s / hashi s = hashi speed-up) "
            "| median | min–max | target |")
        out("|---|---|---|---|")
        for name, h, o in (("C-STORE", "b", "c"), ("STOW-RS", "d", "e")):
            if h not in times or o not in times:
                continue
            rr = [oo / hh for hh, oo in zip(times[h], times[o])]
            ratios[name] = med(rr)
            out("| %s hashi vs Orthanc | %.2f× | %s | ≥ 2× %s |"
                % (name, med(rr), fmt_range(rr, "%.2f"),
                   "met" if med(rr) >= 2 else "NOT met"))
        if "a" in times and "b" in times:
            rr = [hh / aa for hh, aa in zip(times["b"], times["a"])]
            out("| C-STORE hashi vs storescp (files only, no fsync) "
                "| %.2f× the time | %s | — |"
                % (med(rr), fmt_range(rr, "%.2f")))
    if render:
        out()
        out("| (f) rendered JPEG, %d slices, one keep-alive connection "
            "| p50 ms | p95 ms |" % study.n)
        out("|---|---|---|")
        for i in range(args.render_passes):
            for name in ("hashi", "orthanc"):
                v = render[name][i]
                out("| %s pass %d%s | %.2f | %.2f |"
                    % (name, i + 1, " (cold)" if i == 0 else "",
                       pct(v, .5), pct(v, .95)))
        p50h = pct(render["hashi"][0], .5)
        p50o = pct(render["orthanc"][0], .5)
        out()
        out("Rendered p50, first (cold) pass: hashi %.2f ms / Orthanc %.2f "
            "ms = %.2f (target ≤ 0.5: %s)"
            % (p50h, p50o, p50h / p50o,
               "met" if p50h / p50o <= .5 else "NOT met"))
    if rss:
        grow = (rss["rss_max_kb"] - rss["rss_start_kb"]) / 1024
        out()
        out("(g) one STOW-RS request of %d instances, %.2f GB in %.1f s "
            "(%.0f inst/s, "
            "%.0f MB/s); hashi-server VmRSS start %.1f MB, max %.1f MB, "
            "end %.1f MB (%d samples): growth %.1f MB (target flat: %s)"
            % (rss["instances"], rss["bytes"] / 1e9, rss["secs"],
               rss["instances"] / rss["secs"], rss["bytes"] / 1e6 /
               rss["secs"], rss["rss_start_kb"] / 1024,
               rss["rss_max_kb"] / 1024, rss["rss_end_kb"] / 1024,
               rss["samples"], grow, "met" if grow < 64 else "NOT met"))
    elapsed = time.monotonic() - t_start
    say("bench: done in %.0f s" % elapsed)
    write_results(args, study, lines, netns, elapsed)


def version(cmd):
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True)
        return (cp.stdout or cp.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def write_results(args, study, lines, netns, elapsed):
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                            "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = """# Ingest and render benchmark — results

Written by `make bench` (bench/run.sh → bench/ingest.py); the figures below
are from the last run.  Re-run to refresh; compare ratios, not absolute
numbers (the machine is shared and its speed drifts).

- Date: {now}; hashi {rev}{dirty}; {cores} cores, Linux {kernel};
  load average {load0} at the start, {load1} at the end
- Peers: {dcmtk}; Orthanc {orthanc} with its DICOMweb plugin
  (orthanc-dicomweb); curl; Python {py} for the render and RSS clients
- Network: {netns}
- Study: {n} slices from gen_study.py (512×512, 16-bit CT), {mb:.1f} MB
- {rounds} rounds, each in the order {order}; total run {elapsed:.0f} s

## Targets (issue 2)

hashi-server ≥ 2× Orthanc on both ingest paths (C-STORE and STOW-RS) with
durability on; rendered p50 ≤ 0.5× Orthanc's; server RSS flat while a 2 GB
STOW-RS request streams in.

## Figures

{figures}

## Method

- Every run starts its server on fresh storage (hashi: a copy of a data
  dir made once by `init` + `demo`, so no instances; Orthanc: a new
  storage+index dir; storescp: a new output dir), waits until it answers,
  runs `sync`, then times **only the client command**.  Each run is
  checked: 200 instances arrived (storescp: files in its dir; hashi:
  `hashi_instances_received_total`; Orthanc: `/statistics`), the client
  exited 0 and printed no error, STOW-RS answered 200.
- C-STORE client: `storescu` with all 200 files in one association.
  STOW-RS client: one `curl -X POST -T study.mpr` request (the multipart
  body prepared once on disk, streamed by curl with a Content-Length, empty
  `Expect:`).
- `TCP_NODELAY=1` in the environment of every DCMTK program (storescu,
  storescp, Orthanc); hashi-server sets it on its own sockets.
- Durability: hashi fsyncs each blob, renames it into place, fsyncs the
  directory and commits the index (SQLite WAL, synchronous=FULL) before it
  acknowledges.  Orthanc: `SyncStorageArea` true, `StorageCompression`
  false, `KeepAlive`/`TcpNoDelay` true, HTTP compression off,
  `RemoteAccessAllowed` false.  storescp writes files and never fsyncs: it
  is the files-only limit, not a competitor.
- **TLS asymmetry, against hashi:** hashi-server serves HTTPS only, so its
  STOW-RS and rendered figures include TLS (curl / Python ssl).  Orthanc is
  measured over plain HTTP because Debian's Orthanc 1.10.1 segfaults on the
  first HTTPS request when `SslEnabled` is on (seen here with both an RSA
  and an EC certificate).
- Rendering: all 200 slices in instance order, each `GET` over one
  keep-alive connection per server by the same Python `http.client` code,
  file's own window, full size (512×512), `Accept: image/jpeg`; the body
  is checked to be a JPEG.  Passes alternate hashi, Orthanc, hashi,
  Orthanc; pass 1 is cold (nothing rendered before), later passes may hit
  a server's cache.  The target is judged on the cold pass.
- RSS: one STOW-RS request of ~2 GiB built on the fly from the study's files,
  each copy with a new SOP Instance UID of the same length (so no file
  sizes change), sent with a Content-Length by Python over TLS; VmRSS of
  hashi-server read from /proc every 0.5 s.  "Flat" is judged as growth
  from start to maximum under 64 MB.  Its inst/s is not an ingest figure:
  the Python client renaming instances on the fly is the slower end.
- Isolation: bench/run.sh runs everything inside `unshare --net` with
  only loopback up, because storescp and Orthanc bind every interface.
"""
    with open(args.results, "w") as f:
        f.write(text.format(
            now=now, rev=rev or "?", dirty=" (working tree had uncommitted "
            "changes)" if dirty else "", load0=args.load0,
            load1="%.2f" % os.getloadavg()[0], cores=os.cpu_count(),
            kernel=platform.release(),
            dcmtk=version(["storescu", "--version"]).replace("$", "").strip(),
            orthanc=version(["Orthanc", "--version"]).replace("Orthanc ", ""),
            py=platform.python_version(), netns=netns, n=study.n,
            mb=study.bytes / 1e6, rounds=args.rounds,
            order=" ".join(k for k in "abcde" if k in args.paths), elapsed=elapsed,
            figures="\n".join(lines)))
    say("bench: wrote %s" % args.results)


if __name__ == "__main__":
    main()
