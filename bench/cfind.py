#!/usr/bin/python3
"""bench/cfind.py - Study Root C-FIND at study level over many studies,
hashi-server vs Orthanc in the same run (bench/run.sh starts it inside the
private network namespace, after ingest.py; peers as ingest.py runs them).

N one-instance studies (tiny CT objects without pixel data, made once with
pydicom into bench/work/cfind-N/: PatientID B00000..., 100 study dates)
are seeded into both peers through their own STOW-RS path, SEED_PART
instances per multipart request (bodies made once beside the files):
10,000 studies take about 30 s into hashi-server and 45 s into Orthanc
on a loaded 2-core machine, against 106 s and 79 s by storescu, whose
one C-STORE round trip and one durable commit per instance dominate.  Then tests/tools/find_timer (one
association per peer, queries timed one by one) runs, alternating peers,
ROUNDS times: 200 queries by PatientID (1 match each) and 20 by StudyDate
(N/100 matches each).  Both peers must give the same number of matches
for every query.  Prints p50 and p99 per peer and query kind, and the
hashi/Orthanc ratio, and rewrites its section of bench/RESULTS.md.

  bench/cfind.py [--studies 10000] [--rounds 3]
"""

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest  # noqa: E402  (the peers and helpers)
from ingest import Hashi, Orthanc, die, pct, say  # noqa: E402

FIND_TIMER = os.path.join(ingest.BUILD, "tests", "find_timer")
CALLING = "BENCHFIND"
SEED_PART = 2500           # instances per STOW-RS request when seeding
BEGIN = "<!-- cfind:begin (bench/cfind.py rewrites this section) -->"
END = "<!-- cfind:end -->"


def make_studies(work, n):
    """n one-instance studies in work/cfind-N (made once)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    d = os.path.join(work, "cfind-%d" % n)
    if os.path.exists(d + ".complete"):
        return d
    os.makedirs(d, exist_ok=True)
    day0 = datetime.date(2024, 1, 1)
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = "2.25.%d" % (10**30 + i * 3 + 1)
        ds.StudyInstanceUID = "2.25.%d" % (10**30 + i * 3 + 2)
        ds.SeriesInstanceUID = "2.25.%d" % (10**30 + i * 3 + 3)
        ds.PatientID = "B%05d" % i
        ds.PatientName = "Bench^Patient%05d" % i
        ds.StudyDate = (day0 + datetime.timedelta(i % 100)).strftime("%Y%m%d")
        ds.StudyTime = "120000"
        ds.Modality = "CT"
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        pydicom.dcmwrite(os.path.join(d, "S%05d.dcm" % i), ds,
                         write_like_original=False)
    open(d + ".complete", "w").close()
    return d


def seed_bodies(d, n):
    """The studies of d as multipart STOW-RS bodies of SEED_PART
    instances (made once)."""
    files = sorted(os.path.join(d, f) for f in os.listdir(d))
    bodies = []
    for i in range(0, n, SEED_PART):
        b = "%s-seed%05d.mpr" % (d, i)
        if not os.path.exists(b):
            with open(b + ".tmp", "wb") as out:
                for chunk in ingest.multipart(
                        open(f, "rb").read() for f in files[i:i + SEED_PART]):
                    out.write(chunk)
            os.rename(b + ".tmp", b)
        bodies.append(b)
    return bodies


def stow_cmd(peer, body):
    """STOW-RS of body; into hashi as demo-requester, so the studies are
    Demo Rural Clinic's, the clinic of the calling AE (DEMO_CT) that
    queries them."""
    if not isinstance(peer, Hashi):
        return peer.stow_cmd(body)
    c = peer.conn()
    c.request("POST", "/api/login", body=json.dumps(
        {"login": "demo-requester", "password": "demo-password"}),
        headers={"Content-Type": "application/json"})
    r = c.getresponse()
    token = json.loads(r.read())["token"] if r.status == 200 else die(
        "hashi: login of demo-requester: %d" % r.status)
    return ingest.stow_curl(body, "https://127.0.0.1:%d/dicomweb/studies"
                            % peer.port, ["--cacert", peer.cacert, "-H",
                                          "Authorization: Bearer " + token])


def load(peer, bodies, n):
    t0 = time.monotonic()
    for b in bodies:
        cp = subprocess.run(stow_cmd(peer, b), capture_output=True,
                            text=True)
        if cp.stdout.strip() != "200":
            die("%s: STOW-RS of %s: %s %s" % (peer.name, b, cp.stdout,
                                              cp.stderr[-300:]))
    if peer.count() != n:
        die("%s: loading %d studies failed (%d there)" % (
            peer.name, n, peer.count()))
    return time.monotonic() - t0


def run_queries(peer, calling, queries):
    cp = subprocess.run([FIND_TIMER, "127.0.0.1", str(peer.dport), calling,
                         peer.aet], input="".join(q + "\n" for q in queries),
                        env=ingest.ENV, capture_output=True, text=True)
    rows = [line.split() for line in cp.stdout.splitlines()]
    if cp.returncode or len(rows) != len(queries):
        die("%s: find_timer: %s" % (peer.name, cp.stderr.strip()[-300:]))
    return [float(r[0]) for r in rows], [int(r[1]) for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int,
                    default=int(os.environ.get("BENCH_CFIND_STUDIES",
                                               "10000")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(ingest.ROOT, "bench",
                                                   "work"))
    ap.add_argument("--results", default=os.path.join(ingest.ROOT, "bench",
                                                      "RESULTS.md"))
    args = ap.parse_args()
    if not os.access(FIND_TIMER, os.X_OK):
        die(FIND_TIMER + " not built (make)")
    os.makedirs(args.work, exist_ok=True)
    n = args.studies
    say("cfind: %d studies" % n)
    d = make_studies(args.work, n)
    bodies = seed_bodies(d, n)
    rnd = random.Random(7)
    kinds = {
        "PatientID (1 match)": ["PatientID=B%05d" % rnd.randrange(n)
                                for _ in range(200)],
        "StudyDate (%d matches)" % ((n + 99) // 100): [
            "StudyDate=%s" % (datetime.date(2024, 1, 1) + datetime.timedelta(
                rnd.randrange(min(n, 100)))).strftime("%Y%m%d")
            for _ in range(20)],
    }
    Hashi.prepare(args.work)
    hashi = Hashi(args.work)
    orth = Orthanc(args.work, {"DicomModalities": {
        "bench": [CALLING, "127.0.0.1", 4242]}})
    lat = {(p.name, k): [] for p in (hashi, orth) for k in kinds}
    try:
        # Hashi's calling AE is its demo clinic's, which sees its studies.
        callers = {hashi.name: hashi.calling, orth.name: CALLING}
        for p in (hashi, orth):
            say("cfind: seeding %s by STOW-RS: %.1f s" % (
                p.name, load(p, bodies, n)))
        for r in range(args.rounds):
            for k, qs in kinds.items():
                got = {}
                for p in (hashi, orth):
                    ms, got[p.name] = run_queries(p, callers[p.name], qs)
                    lat[(p.name, k)] += ms
                if got[hashi.name] != got[orth.name]:
                    die("%s: the peers disagree on the matches" % k)
    finally:
        hashi.close()
        orth.close()
    lines = ["| query | queries | hashi p50 ms | hashi p99 ms | "
             "Orthanc p50 ms | Orthanc p99 ms | p50 ratio | p99 ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for k in kinds:
        h, o = lat[(hashi.name, k)], lat[(orth.name, k)]
        row = (k, len(h), pct(h, .5), pct(h, .99), pct(o, .5), pct(o, .99),
               pct(h, .5) / pct(o, .5), pct(h, .99) / pct(o, .99))
        lines.append("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f× | "
                     "%.2f× |" % row)
        say("cfind: " + lines[-1])
    write_section(args.results, n, args.rounds, lines)


def write_section(path, n, rounds, lines):
    text = open(path).read() if os.path.exists(path) else ""
    section = "\n".join([
        BEGIN, "## C-FIND, study level (bench/cfind.py)", "",
        "%s UTC; %d one-instance studies in each peer, seeded by STOW-RS "
        "(%d instances a request); "
        "Study Root C-FIND at STUDY level over one association per peer "
        "(tests/tools/find_timer), %d rounds alternating hashi-server and "
        "Orthanc %s; 6 return keys; both peers gave the same matches for "
        "every query.  Network: %s." % (
            datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), n,
            SEED_PART, rounds,
            ingest.version(["Orthanc", "--version"]).split()[-1],
            os.environ.get("HASHI_BENCH_NETNS", "host")),
        ""] + lines + [END])
    if BEGIN in text and END in text:
        text = (text[:text.index(BEGIN)] + section
                + text[text.index(END) + len(END):])
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
    say("cfind: recorded in " + path)


if __name__ == "__main__":
    main()
