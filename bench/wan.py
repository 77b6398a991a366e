#!/usr/bin/python3
"""bench/wan.py - the WAN benchmark of the edge-gateway issue (run by
bench/wan.sh inside a private network namespace with only loopback).

A CT study (tests/tools/gen_study.py, 200 slices) crosses the link
emulator (tests/tools/linkemu.py) at two profiles, each clean and with a
cut every 30 s:

  (a) 2 Mbit/s, 150 ms one way        (b) 384 kbit/s, 715 ms one way

by two paths, each on a fresh hashi-server:

  direct   storescu -> link -> hashi-server's DICOM port.  A cut ends
           storescu's association; a retry loop, as a site's script would,
           starts a new one after 1 s with the files storescu was not told
           were stored (it cannot know what the server kept of the one in
           flight, so that one is sent again whole).
  gateway  storescu -> hashi-gateway (LAN side, no emulator) -> link ->
           hashi-server (hashi.v1 uploads over WSS, resumed after cuts).

Per run: time to complete (the last of the study's instances indexed at
the server, instances.received_at, from storescu's start), time to the
preview (the first preview stored at the server, from its audit log, from
the first instance in the gateway's spool, spool.db received_ms; both are
the machine's wall clock in ms), bytes on the wire (linkemu's up + down), and the ratio to the
link limit (the study's JPEG-LS lossless size, by DCMTK's dcmcjpls,
divided by the rate).  The gateway's peak RSS is its VmHWM.

Then a separate run without the emulator: a ~2 GB study (copies of the
slices with new SOP Instance UIDs, written to a temporary directory)
streamed by storescu -> hashi-gateway -> hashi-server on loopback; the
gateway's VmRSS is sampled every 0.5 s and its VmHWM read at the end.

The section "WAN" of bench/RESULTS.md is rewritten (a --quick run is
marked as such).  Exit status: 0 every run completed, 1 a run failed or
timed out, 2 the benchmark could not run.
"""

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True      # no __pycache__ beside the benchmarks
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "push"))
import ingest  # noqa: E402  (the study, hashi-server, ports, waiting)
from ingest import ENV, ROOT, SERVER, Hashi, Study, die, free_port, say, \
    stop, wait_until  # noqa: E402
from section import splice  # noqa: E402

GATEWAY = os.path.join(ingest.BUILD, "hashi-gateway")
LINKEMU = os.path.join(ingest.TOOLS, "linkemu.py")
BEGIN = "<!-- wan:begin (bench/wan.py rewrites this section) -->"
END = "<!-- wan:end -->"

PROFILES = {
    "a": ("2mbit", "150ms", 2e6 / 8),
    "b": ("384kbit", "715ms", 384e3 / 8),
}
RETRY_PAUSE_S = 1.0


def now_ms():
    return int(time.time() * 1000)


def db_row(path, sql):
    """One row of a query on a live SQLite database (WAL), read-only."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return db.execute(sql).fetchone()
    finally:
        db.close()


def vm_kb(pid, key):
    """VmRSS or VmHWM (peak) of a live process, kB."""
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^%s:\s+(\d+) kB" % key, f.read(), re.M)
    return int(m.group(1))


# ---- the study's JPEG-LS size: the link limit -------------------------------

def jls_bytes(work, study):
    """Sum of the study's files compressed by dcmcjpls (lossless), made
    once and kept beside the study."""
    out = study.dir + "-jls"
    done = os.path.join(out, ".complete")
    if not os.path.exists(done):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)

        def one(f):
            subprocess.run(["dcmcjpls", f,
                            os.path.join(out, os.path.basename(f))],
                           check=True, capture_output=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
            list(ex.map(one, study.files))
        open(done, "w").close()
    return sum(os.path.getsize(f)
               for f in glob.glob(os.path.join(out, "*.dcm")))


# ---- the pieces of a run -------------------------------------------------------

class Link:
    """linkemu in front of 127.0.0.1:target; its statistics at close()."""

    def __init__(self, work, target, rate, delay, cut_every):
        self.port = free_port()
        self.stats_path = os.path.join(work, "link.stats")
        if os.path.exists(self.stats_path):
            os.remove(self.stats_path)
        cmd = ["/usr/bin/python3", LINKEMU,
               "--listen", "127.0.0.1:%d" % self.port,
               "--target", "127.0.0.1:%d" % target,
               "--rate", rate, "--delay", delay,
               "--stats", self.stats_path]
        if cut_every:
            cmd += ["--cut-every", "%gs" % cut_every]
        self.log = open(os.path.join(work, "linkemu.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        wait_until("linkemu", lambda: self.listening())

    def listening(self):
        if self.proc.poll() is not None:
            die("linkemu exited: see bench/work/wan/linkemu.log")
        with open(self.log.name, "rb") as f:
            return b"listening on 127.0.0.1:%d " % self.port in f.read()

    def close(self):
        """{up_bytes, down_bytes, cuts, ...} once it has stopped."""
        stop(self.proc)
        self.log.close()
        with open(self.stats_path) as f:
            return json.load(f)


class Gateway:
    """hashi-gateway on a free LAN-side port with a fresh spool."""

    def __init__(self, work, server_url, cacert, token_file):
        self.spool = os.path.join(work, "gw-spool")
        shutil.rmtree(self.spool, ignore_errors=True)
        self.dport = free_port()
        self.aet = "HASHIGW"
        self.log = open(os.path.join(work, "gateway.log"), "ab")
        self.proc = subprocess.Popen(
            [GATEWAY, "--server", server_url, "--token-file", token_file,
             "--spool", self.spool, "--dicom", "127.0.0.1:%d" % self.dport,
             "--ae-title", self.aet, "--cacert", cacert,
             "--log-level", "info"],
            env=ENV, stdout=self.log, stderr=self.log)
        wait_until("hashi-gateway", lambda: self.alive() and subprocess.run(
            ["echoscu", "-aec", self.aet, "127.0.0.1", str(self.dport)],
            env=ENV, capture_output=True).returncode == 0)

    def alive(self):
        if self.proc.poll() is not None:
            die("hashi-gateway exited with status %d (see %s)"
                % (self.proc.returncode, self.log.name))
        return True

    def first_received_ms(self):
        return db_row(os.path.join(self.spool, "spool.db"),
                      "SELECT min(received_ms) FROM instances")[0]

    def close(self):
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.spool, ignore_errors=True)


def server_figures(hashi, study):
    """(the study's instances indexed, the last one's received_at ms, its
    preview's at ms or None).  By study UID: the demo data may hold others."""
    db = os.path.join(hashi.data, "hashi.db")
    uid = ingest.uids_of(study.files[0])[0].replace("'", "")
    n, last = db_row(db, "SELECT count(*), max(i.received_at) FROM instances"
                     " i JOIN series se ON se.id = i.series_ref JOIN studies"
                     " st ON st.id = se.study_ref WHERE st.study_uid = '%s'"
                     % uid)
    return n, last, first_preview_ms(hashi, uid)


def first_preview_ms(hashi, uid):
    """When the server stored the study's first preview (the audit log's
    first "preview" stored; study_previews.at is the latest one's, and a
    gateway replaces its early preview once the study is whole), or
    None."""
    try:
        with open(os.path.join(hashi.data, "audit.log")) as f:
            for line in f:
                a = json.loads(line)
                if (a.get("action") == "preview" and a.get("object") == uid
                        and a.get("outcome") == "stored"):
                    t = datetime.datetime.strptime(
                        a["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                            tzinfo=datetime.timezone.utc)
                    return int(t.timestamp() * 1000)
    except (OSError, ValueError, KeyError):
        pass
    return None


STORED = re.compile(rb"^I: Received Store Response \((Success|Warning)", re.M)


def storescu_acked(output):
    """The files storescu -v was told were stored (success or warning)."""
    acked, cur = set(), None
    for line in output.splitlines():
        if line.startswith(b"I: Sending file: "):
            cur = line[len(b"I: Sending file: "):].decode()
        elif cur and STORED.match(line):
            acked.add(cur)
            cur = None
    return acked


def storescu_until_stored(files, port, aec, deadline, log):
    """storescu, restarted after each cut with what it was not told was
    stored; returns (associations, files sent in all) or None at
    deadline."""
    remaining, assoc, sent = list(files), 0, 0
    while remaining:
        if time.monotonic() > deadline:
            return None
        assoc += 1
        cp = subprocess.run(["storescu", "-v", "-aet", "DEMO_CT",
                             "-aec", aec, "127.0.0.1", str(port)]
                            + remaining, env=ENV, capture_output=True)
        log.write(cp.stdout + cp.stderr)
        out = cp.stdout + cp.stderr
        sent += out.count(b"I: Sending file: ")
        acked = storescu_acked(out)
        if re.search(rb"^I: Received Store Response \((?!Success|Warning)",
                     out, re.M):
            die("storescu: the server refused an instance (see %s)"
                % log.name)
        remaining = [f for f in remaining if f not in acked]
        if remaining:
            time.sleep(RETRY_PAUSE_S)
    return assoc, sent


def run_one(args, study, profile, cut, path):
    rate, delay, bps = PROFILES[profile]
    hashi = Hashi(args.wwork)
    gw = link = None
    budget = 4 * study.bytes / bps + 300     # generous: a hang guard only
    res = {"profile": profile, "cut": cut, "path": path, "ok": False}
    try:
        if path == "direct":
            link = Link(args.wwork, hashi.dport, rate, delay,
                        args.cut_every if cut else 0)
            t0 = now_ms()
            with open(os.path.join(args.wwork, "storescu.log"), "ab") as lg:
                r = storescu_until_stored(study.files, link.port, hashi.aet,
                                          time.monotonic() + budget, lg)
            if r:
                res["associations"], res["sent"] = r
        else:
            link = Link(args.wwork, hashi.port, rate, delay,
                        args.cut_every if cut else 0)
            gw = Gateway(args.wwork, "https://127.0.0.1:%d" % link.port,
                         hashi.cacert, args.token_file)
            t0 = now_ms()
            cp = subprocess.run(["storescu", "-aet", "MODALITY", "-aec",
                                 gw.aet, "127.0.0.1", str(gw.dport)]
                                + study.files, env=ENV, capture_output=True)
            if cp.returncode:
                die("storescu -> gateway: %s" % cp.stderr.decode()[-300:])
            res["lan_s"] = (now_ms() - t0) / 1000
        end = time.monotonic() + budget
        while time.monotonic() < end:
            n, last, prev = server_figures(hashi, study)
            if n >= study.n and not res["ok"]:
                res["ok"] = True
                # a preview that has not come by now gets 60 s more
                end = min(end, time.monotonic() + 60)
            if res["ok"] and (path == "direct" or prev):
                break
            if gw:
                gw.alive()
            time.sleep(0.5)
        n, last, prev = server_figures(hashi, study)
        res["indexed"] = n
        if res["ok"]:
            res["complete_s"] = (last - t0) / 1000
        if gw:
            res["rss_mb"] = vm_kb(gw.proc.pid, "VmHWM") / 1024
            first = gw.first_received_ms()
            if prev and first:
                res["preview_s"] = (prev - first) / 1000
                res["preview_t0_s"] = (prev - t0) / 1000
    finally:
        if gw:
            gw.close()
        if link:
            st = link.close()
            res["wire"] = st["up_bytes"] + st["down_bytes"]
            res["cuts"] = st["cuts"]
        hashi.close()
    return res


# ---- the gateway's memory while a 2 GB study passes through -------------------

def run_rss(args, study):
    big = os.path.join(args.wwork, "big")
    shutil.rmtree(big, ignore_errors=True)
    os.makedirs(big)
    originals = list(study.read_all())
    copies = max(1, int(args.rss_gb * 1024 ** 3) // study.bytes)
    i = 0
    for _ in range(copies):
        for data in originals:
            i += 1
            with open(os.path.join(big, "X%06d.dcm" % i), "wb") as f:
                f.write(ingest.renamed_copy(data, i))
    total = copies * study.bytes
    say("wan: rss: %d instances, %.2f GB in %s" % (i, total / 1e9, big))
    hashi = Hashi(args.wwork)
    gw = None
    try:
        gw = Gateway(args.wwork, "https://127.0.0.1:%d" % hashi.port,
                     hashi.cacert, args.token_file)
        samples = []
        t0 = time.monotonic()
        sc = subprocess.Popen(["storescu", "-aet", "MODALITY", "-aec",
                               gw.aet, "127.0.0.1", str(gw.dport), "+sd",
                               big], env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        err = []
        t = threading.Thread(target=lambda: err.append(sc.stderr.read()))
        t.start()
        end = t0 + 3600
        n = 0
        while time.monotonic() < end:
            gw.alive()
            samples.append(vm_kb(gw.proc.pid, "VmRSS"))
            n = server_figures(hashi, study)[0]
            if n >= i and sc.poll() is not None:
                break
            time.sleep(0.5)
        secs = time.monotonic() - t0
        t.join()
        if sc.wait() != 0:
            die("storescu -> gateway (rss): %s" % err[0].decode()[-300:])
        return {"instances": i, "bytes": total, "indexed": n, "secs": secs,
                "rss_max_mb": max(samples) / 1024,
                "hwm_mb": vm_kb(gw.proc.pid, "VmHWM") / 1024,
                "samples": len(samples)}
    finally:
        if gw:
            gw.close()
        hashi.close()
        shutil.rmtree(big, ignore_errors=True)


# ---- report -------------------------------------------------------------------

def fmt(v, f="%.1f"):
    return "—" if v is None else f % v


def report(args, study, jls, runs, rss, elapsed):
    lines = []
    say("")

    def out(s=""):
        lines.append(s)
        say(s)

    if runs:
        out("| profile | cuts | path | complete s | × link limit | preview s "
            "(from 1st at gateway) | wire MB (up+down) | storescu assoc. "
            "(files sent) | gateway peak RSS MB |")
        out("|---|---|---|---|---|---|---|---|---|")
    limit = {}
    for r in runs:
        rate, delay, bps = PROFILES[r["profile"]]
        limit[r["profile"]] = jls / bps
        c = r.get("complete_s")
        out("| (%s) %s, %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["profile"], rate, delay,
            "every %g s (%d)" % (args.cut_every, r.get("cuts", 0))
            if r["cut"] else "none",
            r["path"],
            fmt(c) if r["ok"] else "NOT complete (%d of %d)"
            % (r.get("indexed", 0), study.n),
            fmt(c / limit[r["profile"]] if c else None, "%.2f"),
            fmt(r.get("preview_s")),
            fmt(r.get("wire", 0) / 1e6),
            "%d (%d)" % (r["associations"], r["sent"])
            if "associations" in r else "—",
            fmt(r.get("rss_mb"))))
    out()
    for p in sorted(limit):
        rate, delay, bps = PROFILES[p]
        out("Link limit (%s): %.2f MB JPEG-LS ÷ %s = %.1f s."
            % (p, jls / 1e6, rate, limit[p]))
    if runs:
        out()
    out("Targets:")
    verdicts = []

    def target(what, ok):
        verdicts.append(ok)
        out("- %s: %s" % (what, "met" if ok else "NOT met"))

    for r in runs:
        if r["path"] != "gateway":
            continue
        key = (r["profile"], r["cut"])
        d = next((x for x in runs if x["path"] == "direct"
                  and (x["profile"], x["cut"]) == key), None)
        tag = "(%s) %s" % (r["profile"], "cut" if r["cut"] else "clean")
        g = r.get("complete_s")
        if d and d.get("complete_s") and g:
            target("%s gateway %.1f s ≤ 0.5 × storescu %.1f s (%.2f×)"
                   % (tag, g, d["complete_s"], g / d["complete_s"]),
                   g <= 0.5 * d["complete_s"])
        if g:
            lim = limit[r["profile"]]
            target("%s gateway %.1f s ≤ 1.25 × link limit %.1f s (%.2f×)"
                   % (tag, g, lim, g / lim), g <= 1.25 * lim)
        if r["profile"] == "a":
            p = r.get("preview_s")
            target("%s preview %s s after the first instance reached the "
                   "gateway ≤ 5 s" % (tag, fmt(p)), p is not None and p <= 5)
        if not r["ok"]:
            verdicts.append(False)
    if rss:
        peak = max(rss["hwm_mb"], rss["rss_max_mb"])
        target("gateway peak RSS %.1f MB ≤ 64 MB while %.2f GB (%d "
               "instances) passed through in %.0f s"
               % (peak, rss["bytes"] / 1e9, rss["instances"], rss["secs"]),
               peak <= 64 and rss["indexed"] >= rss["instances"])
        out("  (VmHWM %.1f MB; sampled VmRSS max %.1f MB over %d samples; "
            "%d of %d indexed at the server)"
            % (rss["hwm_mb"], rss["rss_max_mb"], rss["samples"],
               rss["indexed"], rss["instances"]))
    write_section(args, study, jls, lines, elapsed)
    return all(verdicts) and all(r["ok"] for r in runs)


def write_section(args, study, jls, lines, elapsed):
    if args.results == "-":
        return
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    kind = ("**QUICK run** (%d slices, cut every %g s: proves the benchmark "
            "works; not the figures of a full run)"
            % (study.n, args.cut_every) if args.quick else
            "Last full run")
    text = """{begin}
## WAN: storescu direct vs through hashi-gateway (bench/wan)

`sh bench/wan.sh` (run by `make bench`; `--quick` for a short run): a
{n}-slice CT from gen_study.py ({mb:.1f} MB, {jmb:.1f} MB as JPEG-LS) over
tests/tools/linkemu.py at (a) 2 Mbit/s, 150 ms one way and (b) 384 kbit/s,
715 ms, each clean and with a cut every {cut:g} s, by **direct**:
`storescu` → link → hashi-server's DICOM port, restarted 1 s after each
cut with the files it was not told were stored (the one in flight is sent
again whole); and **gateway**: `storescu` → hashi-gateway (LAN, no
emulator; default options) → link → hashi-server (hashi.v1 uploads).

- **complete**: storescu's start → the last instance indexed at the
  server (`instances.received_at`); **× link limit**: that ÷ (JPEG-LS
  bytes ÷ rate).  **preview**: the first instance in the gateway's spool
  (`received_ms`) → the first preview stored at the server (its audit
  log; the gateway sends an early one while the study arrives).  **wire**: linkemu's bytes, both ways (TLS and
  DIMSE included).  **peak RSS**: the gateway's VmHWM.
- Each run on a fresh hashi-server and spool, in a private network
  namespace with only loopback.

Targets (issue 6): the gateway path completes in ≤ 0.5× storescu's time on
every profile and ≤ 1.25× the link limit; the preview is at the server
≤ 5 s after the first instance reaches the gateway on profile (a); gateway
RSS ≤ 64 MB while a 2 GB study passes through (storescu → gateway →
server on loopback, no emulator).

{kind}: {date}, hashi {rev}, {secs:.0f} s in all, load average {load}.

{figures}
{end}
""".format(begin=BEGIN, end=END, n=study.n, mb=study.bytes / 1e6,
           jmb=jls / 1e6, cut=args.cut_every, kind=kind,
           date=now.strftime("%Y-%m-%d %H:%M UTC"), rev=rev or "?",
           secs=elapsed, load="%.2f" % os.getloadavg()[0],
           figures="\n".join(lines))
    splice(args.results, BEGIN, END, text)
    say("wan: wrote its section of %s" % args.results)


def main():
    ap = argparse.ArgumentParser(
        description="storescu direct vs through hashi-gateway over an "
        "emulated WAN")
    ap.add_argument("--quick", action="store_true",
                    help="12 slices, a cut every 20 s, a 0.25 GB memory run")
    ap.add_argument("--slices", type=int)
    ap.add_argument("--cut-every", type=float)
    ap.add_argument("--rss-gb", type=float,
                    help="size of the memory run; 0 skips it")
    ap.add_argument("--profiles", default="ab",
                    help="a, b, ab; 'none': only the memory run")
    ap.add_argument("--cuts", default="clean,cut")
    ap.add_argument("--paths", default="direct,gateway")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench",
                                                      "RESULTS.md"),
                    help="'-' to write nothing")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()
    q = args.quick
    args.slices = args.slices or (12 if q else 200)
    args.cut_every = args.cut_every or (20 if q else 30)
    if args.rss_gb is None:
        args.rss_gb = 0.25 if q else 2
    profiles = [p for p in args.profiles if p in PROFILES]
    cuts = [c == "cut" for c in args.cuts.split(",") if c in ("clean", "cut")]
    paths = [p for p in args.paths.split(",") if p in ("direct", "gateway")]
    if not (profiles and cuts and paths):
        profiles = []           # no WAN runs: the memory run alone
    if (not profiles and args.rss_gb <= 0) or args.slices < 1:
        die("nothing to run: --profiles (a, b), --cuts (clean, cut) and "
            "--paths (direct, gateway) name no run, and --rss-gb is 0")
    for tool in ("storescu", "echoscu", "dcmcjpls"):
        if not shutil.which(tool):
            die("%s not found (make deps)" % tool)
    for prog in (SERVER, GATEWAY):
        if not os.access(prog, os.X_OK):
            die("%s not built (make)" % prog)

    t_start = time.monotonic()
    args.wwork = os.path.join(args.work, "wan")
    os.makedirs(args.wwork, exist_ok=True)
    study = Study(args.work, args.slices)
    jls = jls_bytes(args.work, study)
    Hashi.prepare(args.wwork)
    cp = subprocess.run([SERVER, "gateway", "add", "--data", Hashi.template,
                         "--clinic", "Demo Rural Clinic", "--name", "wan"],
                        capture_output=True, text=True)
    if cp.returncode:
        die("gateway add: " + cp.stderr.strip())
    args.token_file = os.path.join(args.wwork, "gw.token")
    with open(args.token_file, "w") as f:
        f.write(cp.stdout.strip() + "\n")
    say("wan: %d slices, %.1f MB, %.1f MB as JPEG-LS; %s"
        % (study.n, study.bytes / 1e6, jls / 1e6,
           os.environ.get("HASHI_BENCH_NETNS", "host network")))

    runs = []
    for p in profiles:
        for cut in cuts:
            for path in paths:
                t = time.monotonic()
                say("wan: (%s) %s %s, %s ..." % (p, "cut every %gs"
                                                 % args.cut_every if cut
                                                 else "clean", path,
                                                 PROFILES[p][0]))
                r = run_one(args, study, p, cut, path)
                say("     %s in %.0f s: %s" % ("done" if r["ok"] else
                                               "NOT complete",
                                               time.monotonic() - t,
                                               json.dumps(r)))
                runs.append(r)
    rss = None
    if args.rss_gb > 0:
        say("wan: gateway RSS while %.2f GB pass through" % args.rss_gb)
        rss = run_rss(args, study)
        say("     %s" % json.dumps(rss))
    ok = report(args, study, jls, runs, rss, time.monotonic() - t_start)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"slices": study.n, "bytes": study.bytes,
                       "jls_bytes": jls, "runs": runs, "rss": rss}, f)
    say("wan: done in %.0f s" % (time.monotonic() - t_start))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    main()
