#!/usr/bin/python3
"""viewer.py — checks for the WADO-RS resources a viewer reads (metadata,
frames, bulk data), used by the integration tests through lib.sh's $VW.

  meta-vs-dcm2json META.json BASEURL CACERT TOKEN FILE...
      every object of the metadata answer equals `dcm2json` of the stored
      file with the same SOP Instance UID, attribute for attribute, except
      that values dcm2json gives inline may be BulkDataURIs: each is
      fetched and must return exactly the value's bytes.  Prints
      "<objects> <bulk values checked> <nested bulk values checked>".
  parts CTYPE BODY OUTDIR
      split a multipart answer; part N's bytes in OUTDIR/N, its
      Content-Type in OUTDIR/N.type; prints the number of parts
  pixels FILE          SHA-256 of the native PixelData (pydicom), exact size
  stored-frame FILE N  SHA-256 of encapsulated frame N (1-based), as stored
  add-bulk IN OUT      IN plus a 1000-byte private OB value and an icon
                       image (32x32, 8 bits) in IconImageSequence
"""
import base64
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dw  # noqa: E402  (split_multipart, die)


def fetch(url, cacert, token):
    r = subprocess.run(["curl", "-sS", "--fail", "--cacert", cacert,
                        "-H", "Authorization: Bearer " + token,
                        "-H", "Accept: application/octet-stream", url],
                       capture_output=True)
    if r.returncode:
        dw.die("GET %s failed: %s" % (url, r.stderr.decode()))
    return r.stdout


def compare(ours, ref, where, ctx, depth):
    if set(ours) != set(ref):
        dw.die("%s: attributes differ: only ours %s, only dcm2json %s" % (
            where, sorted(set(ours) - set(ref)), sorted(set(ref) - set(ours))))
    for tag in ref:
        a, b = ours[tag], ref[tag]
        if "BulkDataURI" in a and "InlineBinary" in b:
            got = fetch(a["BulkDataURI"], ctx["cacert"], ctx["token"])
            want = base64.b64decode(b["InlineBinary"])
            if got != want:
                dw.die("%s %s: bulk data %d bytes, want %d (differ)" % (
                    where, tag, len(got), len(want)))
            if a.get("vr") != b.get("vr"):
                dw.die("%s %s: vr %s, dcm2json %s" % (where, tag, a.get("vr"),
                                                      b.get("vr")))
            ctx["bulk"] += 1
            ctx["nested"] += depth > 0
            continue
        if b.get("vr") == "SQ" and "Value" in b:
            if len(a.get("Value", [])) != len(b["Value"]):
                dw.die("%s %s: item count differs" % (where, tag))
            for i, (ia, ib) in enumerate(zip(a["Value"], b["Value"])):
                compare(ia, ib, "%s %s[%d]" % (where, tag, i), ctx, depth + 1)
            continue
        if a != b:
            dw.die("%s %s: %r, dcm2json %r" % (where, tag, a, b))


def cmd_meta_vs_dcm2json(args):
    meta, base, cacert, token, files = args[0], args[1], args[2], args[3], \
        args[4:]
    ours = json.load(open(meta))
    ref = {}
    for f in files:
        j = json.loads(subprocess.run(["dcm2json", "-fc", f], check=True,
                                      capture_output=True).stdout)
        ref[j["00080018"]["Value"][0]] = j
    if len(ours) != len(ref):
        dw.die("%d objects in the metadata, %d files" % (len(ours), len(ref)))
    ctx = {"cacert": cacert, "token": token, "bulk": 0, "nested": 0}
    for o in ours:
        sop = o["00080018"]["Value"][0]
        if sop not in ref:
            dw.die("metadata names %s, which was not sent" % sop)
        for tag, a in o.items():
            if "BulkDataURI" in a and not a["BulkDataURI"].startswith(base):
                dw.die("BulkDataURI %s is not under %s" % (
                    a["BulkDataURI"], base))
        compare(o, ref[sop], sop, ctx, 0)
    print(len(ours), ctx["bulk"], ctx["nested"])


def cmd_parts(args):
    ctype, body, outdir = args
    parts = dw.split_multipart(ctype, dw.read(body))
    os.makedirs(outdir, exist_ok=True)
    for i, (headers, payload) in enumerate(parts, 1):
        with open(os.path.join(outdir, str(i)), "wb") as f:
            f.write(payload)
        t = ""
        for line in headers.decode().split("\r\n"):
            if line.lower().startswith("content-type:"):
                t = line.split(":", 1)[1].strip()
        with open(os.path.join(outdir, "%d.type" % i), "w") as f:
            f.write(t + "\n")
    print(len(parts))


def cmd_pixels(args):
    import pydicom
    ds = pydicom.dcmread(args[0])
    n = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * \
        int(ds.get("NumberOfFrames", 1)) * ds.BitsAllocated // 8
    print(hashlib.sha256(ds.PixelData[:n]).hexdigest())


def cmd_stored_frame(args):
    import pydicom
    from pydicom.encaps import generate_pixel_data_frame
    ds = pydicom.dcmread(args[0])
    nf = int(ds.get("NumberOfFrames", 1))
    frames = list(generate_pixel_data_frame(ds.PixelData, nf))
    print(hashlib.sha256(frames[int(args[1]) - 1]).hexdigest())


def cmd_add_bulk(args):
    import pydicom
    from pydicom.dataset import Dataset
    ds = pydicom.dcmread(args[0])
    ds.private_block(0x0009, "HASHI TEST", create=True).add_new(
        0x01, "OB", bytes(range(256)) * 3 + bytes(232))
    icon = Dataset()
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.Rows = icon.Columns = 32
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.add_new(0x7FE00010, "OB", bytes((i * 7) & 255 for i in range(1024)))
    ds.IconImageSequence = [icon]
    ds.save_as(args[1], write_like_original=False)


if __name__ == "__main__":
    cmds = {"meta-vs-dcm2json": cmd_meta_vs_dcm2json, "parts": cmd_parts,
            "pixels": cmd_pixels, "stored-frame": cmd_stored_frame,
            "add-bulk": cmd_add_bulk}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        dw.die(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])
