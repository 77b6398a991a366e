#!/usr/bin/python3
"""dw.py - the integration tests' Python side: DICOMweb bodies and checks.

The shell tests (lib.sh) do the orchestration; whatever needs bytes parsed
or built lives here, as small subcommands that print a plain answer and exit
non-zero (with a reason on stderr) when the input is not what it must be:

  multipart OUT BOUNDARY FILE...     STOW-RS body (application/dicom parts)
  split CONTENT_TYPE BODY OUTDIR     split a multipart response into files
  dataset-equal A B                  Part-10 files equal after group 0002
  jpeg FILE                          check SOI/SOF/EOI; print "W H"
  jpeg-stats FILE                    decode (DCMTK), print "W H stddev levels"
  count JSON                         number of objects in a DICOM JSON array
  values JSON TAG                    the first value of TAG in each object
  mkbad KIND SRC OUT                 write a deliberately broken instance
  rewrite SRC OUT KEY=VALUE...       copy SRC with attributes changed (pydicom)
  sha256 FILE...                     "hash  file" lines
  uids FILE...                       "file study series sop" lines
  verify-wado URL CACERT TOKEN exact|dataset FILE...
                                     WADO-RS every FILE back over one
                                     connection and compare; print count
  blobcheck DATADIR                  every indexed blob exists, hashes right

Run with /usr/bin/python3 (Debian's pydicom and numpy).
"""

import hashlib
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import tempfile

LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD",
            b"OL", b"OV", b"SV", b"UV"}


def die(msg):
    sys.stderr.write("dw.py: %s\n" % msg)
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- multipart -----------------------------------------------------------

def multipart_chunks(files, boundary, ctype="application/dicom"):
    """Yield the pieces of a multipart/related body, one file at a time."""
    b = boundary.encode()
    for path in files:
        yield b"--" + b + b"\r\nContent-Type: " + ctype.encode() + b"\r\n\r\n"
        yield read(path)
        yield b"\r\n"
    yield b"--" + b + b"--\r\n"


def cmd_multipart(args):
    out, boundary, files = args[0], args[1], args[2:]
    with open(out, "wb") as f:
        for chunk in multipart_chunks(files, boundary):
            f.write(chunk)


def boundary_of(ctype):
    m = re.search(r'boundary="?([^";]+)"?', ctype, re.I)
    if not m:
        die("no boundary in Content-Type %r" % ctype)
    return m.group(1)


def split_multipart(ctype, body):
    """Return [(headers_bytes, payload)] of a multipart body."""
    delim = b"--" + boundary_of(ctype).encode()
    if not body.startswith(delim):
        # A preamble is allowed; find the first delimiter line.
        i = body.find(b"\r\n" + delim)
        if i < 0:
            die("multipart body has no delimiter %r" % delim)
        body = body[i + 2:]
    parts = []
    pos = 0
    while True:
        if not body.startswith(delim, pos):
            die("expected delimiter at offset %d" % pos)
        pos += len(delim)
        if body.startswith(b"--", pos):
            break
        if not body.startswith(b"\r\n", pos):
            die("delimiter not followed by CRLF at %d" % pos)
        pos += 2
        hend = body.find(b"\r\n\r\n", pos)
        if hend < 0:
            die("part headers not terminated at %d" % pos)
        headers = body[pos:hend]
        start = hend + 4
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            die("part at %d not terminated" % start)
        parts.append((headers, body[start:nxt]))
        pos = nxt + 2
    return parts


def cmd_split(args):
    ctype, body, outdir = args
    parts = split_multipart(ctype, read(body))
    os.makedirs(outdir, exist_ok=True)
    for i, (headers, payload) in enumerate(parts, 1):
        if b"application/dicom" not in headers.lower():
            die("part %d is not application/dicom: %r" % (i, headers))
        with open(os.path.join(outdir, "part%04d.dcm" % i), "wb") as f:
            f.write(payload)
    print(len(parts))


# ---- Part-10 -------------------------------------------------------------

def meta_end(data):
    """Offset of the first byte after the group 0002 meta header."""
    if len(data) < 132 or data[128:132] != b"DICM":
        die("not a Part-10 file (no DICM at 128)")
    pos = 132
    while pos + 8 <= len(data):
        group, = struct.unpack_from("<H", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            length, = struct.unpack_from("<I", data, pos + 8)
            pos += 12 + length
        else:
            length, = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + length
    return pos


def cmd_dataset_equal(args):
    a, b = read(args[0]), read(args[1])
    da, db = a[meta_end(a):], b[meta_end(b):]
    if da != db:
        n = next((i for i in range(min(len(da), len(db))) if da[i] != db[i]),
                 min(len(da), len(db)))
        die("datasets differ: %s has %d bytes, %s has %d, first difference "
            "at dataset offset %d" % (args[0], len(da), args[1], len(db), n))


# ---- JPEG ----------------------------------------------------------------

def jpeg_size(data):
    """Validate the marker structure; return (width, height) from SOF."""
    if data[:2] != b"\xff\xd8":
        die("no SOI marker (starts %r)" % data[:4])
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        die("no EOI marker at the end (ends %r)" % data[-4:])
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            die("bad marker at offset %d" % pos)
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        seglen, = struct.unpack_from(">H", data, pos + 2)
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB):
            h, w = struct.unpack_from(">HH", data, pos + 5)
            return w, h
        if marker == 0xDA:
            break
        pos += 2 + seglen
    die("no SOF marker before the scan")


def cmd_jpeg(args):
    w, h = jpeg_size(read(args[0]))
    print(w, h)


def decode_jpeg(path):
    """Decode a baseline JPEG with DCMTK (img2dcm + dcmj2pnm): no PIL here.
    Returns (width, height, list of 8-bit samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        dcm = os.path.join(tmp, "j.dcm")
        pgm = os.path.join(tmp, "j.pgm")
        subprocess.run(["img2dcm", "-q", path, dcm], check=True)
        subprocess.run(["dcmj2pnm", "-q", "--write-raw-pnm", dcm, pgm],
                       check=True)
        data = read(pgm)
    m = re.match(rb"P([56])\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not m:
        die("dcmj2pnm output is not PNM")
    w, h = int(m.group(2)), int(m.group(3))
    pix = data[m.end():]
    if m.group(1) == b"6":       # colour: take the first sample of each
        pix = pix[::3]
    return w, h, pix


def cmd_jpeg_stats(args):
    jpeg_size(read(args[0]))
    w, h, pix = decode_jpeg(args[0])
    n = len(pix)
    mean = sum(pix) / n
    var = sum((p - mean) ** 2 for p in pix) / n
    print(w, h, "%.2f" % var ** 0.5, len(set(pix)))


# ---- DICOM JSON ----------------------------------------------------------

def load_array(path):
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except ValueError as e:
        die("%s is not JSON: %s" % (path, e))
    if not isinstance(doc, list):
        die("%s is not a JSON array" % path)
    return doc


def first_value(obj, tag):
    el = obj.get(tag)
    if not el or "Value" not in el or not el["Value"]:
        return ""
    v = el["Value"][0]
    if isinstance(v, dict):           # PN
        return v.get("Alphabetic", "")
    return str(v)


def cmd_count(args):
    print(len(load_array(args[0])))


def cmd_values(args):
    for obj in load_array(args[0]):
        print(first_value(obj, args[1].upper()))


# ---- broken and changed instances ----------------------------------------

def explicit_el(group, elem, vr, value):
    vr = vr.encode()
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def part10(dataset, sop_class, sop_uid, ts="1.2.840.10008.1.2.1"):
    meta = (explicit_el(2, 1, "OB", b"\0\1") +
            explicit_el(2, 2, "UI", sop_class.encode()) +
            explicit_el(2, 3, "UI", sop_uid.encode()) +
            explicit_el(2, 0x10, "UI", ts.encode()) +
            explicit_el(2, 0x12, "UI", b"1.2.826.0.1.3680043.10.1432.1"))
    meta = explicit_el(2, 0, "UL", struct.pack("<I", len(meta))) + meta
    return b"\0" * 128 + b"DICM" + meta + dataset


def nested_sequence(levels, uid_root):
    """A small valid header, then `levels` nested undefined-length
    sequences (ReferencedSeriesSequence > item > ...), properly closed."""
    sop_class = "1.2.840.10008.5.1.4.1.1.7"
    sop = uid_root + ".3"
    head = (explicit_el(8, 0x16, "UI", sop_class.encode()) +
            explicit_el(8, 0x18, "UI", sop.encode()) +
            explicit_el(0x10, 0x20, "LO", b"NESTED") +
            explicit_el(0x20, 0xD, "UI", (uid_root + ".1").encode()) +
            explicit_el(0x20, 0xE, "UI", (uid_root + ".2").encode()))
    opening = (struct.pack("<HH2sHI", 8, 0x1115, b"SQ", 0, 0xFFFFFFFF) +
               struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF))
    closing = (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) +
               struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return part10(head + opening * levels + closing * levels, sop_class, sop)


def find_pixel_length(data):
    """Offset of the 4-byte length of (7FE0,0010) in an Explicit LE file."""
    i = data.rfind(b"\xe0\x7f\x10\x00OW\x00\x00")
    if i < 0:
        i = data.rfind(b"\xe0\x7f\x10\x00OB\x00\x00")
    if i < 0:
        die("no explicit-VR PixelData element found")
    return i + 8


def cmd_mkbad(args):
    kind, src, out = args
    data = read(src) if src != "-" else b""
    if kind == "truncated":           # cut in the middle of the pixel data
        res = data[:len(data) * 6 // 10]
    elif kind == "notdicom":
        res = (b"This is a plain text file, not DICOM at all.\n" * 200)
    elif kind == "huge-length":       # PixelData claims ~4 GB
        i = find_pixel_length(data)
        res = data[:i] + struct.pack("<I", 0xFFFFFFF0) + data[i + 4:]
    elif kind == "nested":
        res = nested_sequence(50000, "1.2.826.0.1.3680043.10.1432.77")
    else:
        die("unknown kind %s" % kind)
    with open(out, "wb") as f:
        f.write(res)


def cmd_rewrite(args):
    """Copy args[0] to args[1] with KEY=VALUE changes; KEY=- deletes it.
    SOPInstanceUID changes (and deletions) apply to the meta header too."""
    import pydicom
    ds = pydicom.dcmread(args[0])
    for kv in args[2:]:
        key, value = kv.split("=", 1)
        if key == "PixelFlip":        # change one pixel value, same length
            arr = bytearray(ds.PixelData)
            arr[int(value)] ^= 0x01
            ds.PixelData = bytes(arr)
            continue
        if value == "-":
            if key in ds:
                delattr(ds, key)
            if key == "SOPInstanceUID" and \
                    "MediaStorageSOPInstanceUID" in ds.file_meta:
                del ds.file_meta.MediaStorageSOPInstanceUID
            continue
        setattr(ds, key, value)
        if key == "SOPInstanceUID":
            ds.file_meta.MediaStorageSOPInstanceUID = value
    ds.save_as(args[1], write_like_original=True)


def cmd_sha256(args):
    for p in args:
        print(hashlib.sha256(read(p)).hexdigest(), p)


# ---- many instances at once ---------------------------------------------

def file_uids(path):
    import pydicom
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    return (str(ds.get("StudyInstanceUID", "")),
            str(ds.get("SeriesInstanceUID", "")),
            str(ds.get("SOPInstanceUID", "")))


def cmd_uids(args):
    for p in args:
        print(p, *file_uids(p))


def https_conn(url, cacert):
    import http.client
    import ssl
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=cacert)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                       timeout=60)


def cmd_verify_wado(args):
    url, cacert, token, mode, files = args[0], args[1], args[2], args[3], \
        args[4:]
    conn = https_conn(url, cacert)
    for path in files:
        st, se, sop = file_uids(path)
        conn.request("GET", "/dicomweb/studies/%s/series/%s/instances/%s"
                     % (st, se, sop),
                     headers={"Authorization": "Bearer " + token,
                              "Accept": 'multipart/related; '
                                        'type="application/dicom"'})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            die("WADO-RS %s: status %d: %r" % (sop, r.status, body[:200]))
        parts = split_multipart(r.getheader("Content-Type", ""), body)
        if len(parts) != 1:
            die("WADO-RS %s: %d parts, expected 1" % (sop, len(parts)))
        got, sent = parts[0][1], read(path)
        if mode == "dataset":
            got, sent = got[meta_end(got):], sent[meta_end(sent):]
        if got != sent:
            die("WADO-RS %s: %d bytes differ from the %d sent (%s, %s)"
                % (sop, len(got), len(sent), path, mode))
    print(len(files))


# ---- store checks --------------------------------------------------------

def cmd_blobcheck(args):
    """Every indexed instance's blob is at blobs/ab/cd/<sha256> and hashes
    to it, and every file under blobs/ is such a blob.  Prints the number
    of indexed instances."""
    data = args[0]
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "hashi.db"),
                         uri=True)
    cols = [r[1] for r in db.execute("PRAGMA table_info(instances)")]
    if "sha256" not in cols:
        die("instances table has no sha256 column (columns: %s)" % cols)
    rows = db.execute("SELECT sha256 FROM instances").fetchall()
    bad = 0
    for (sha,) in rows:
        path = os.path.join(data, "blobs", sha[0:2], sha[2:4], sha)
        if not os.path.exists(path):
            sys.stderr.write("missing blob %s\n" % path)
            bad += 1
            continue
        if hashlib.sha256(read(path)).hexdigest() != sha:
            sys.stderr.write("blob %s does not hash to its name\n" % path)
            bad += 1
    # Not only the indexed ones: no file under blobs/ may be a half file.
    files = 0
    for root, _dirs, names in os.walk(os.path.join(data, "blobs")):
        for name in names:
            files += 1
            path = os.path.join(root, name)
            rel = os.path.relpath(path, os.path.join(data, "blobs"))
            if rel != os.path.join(name[0:2], name[2:4], name) or \
                    hashlib.sha256(read(path)).hexdigest() != name:
                sys.stderr.write("stray or half blob file %s\n" % path)
                bad += 1
    if bad:
        die("%d bad of %d indexed blobs and %d blob files"
            % (bad, len(rows), files))
    print(len(rows))


def pixel_sha(path):
    """SHA-256 of the decoded pixel data (JPEG-LS decoded by DCMTK's
    dcmdjpls first: pydicom here has no JPEG-LS decoder)."""
    import pydicom
    ds = pydicom.dcmread(path, force=True)
    if str(ds.file_meta.get("TransferSyntaxUID", "")).startswith(
            "1.2.840.10008.1.2.4.8"):
        with tempfile.NamedTemporaryFile(suffix=".dcm") as t:
            subprocess.run(["dcmdjpls", path, t.name], check=True)
            ds = pydicom.dcmread(t.name, force=True)
    return str(ds.SOPInstanceUID), hashlib.sha256(ds.PixelData).hexdigest()


def cmd_pixels(args):
    """Lines "SOP-UID pixel-sha256" for FILEs, sorted."""
    for line in sorted("%s %s" % pixel_sha(p) for p in args):
        print(line)


def cmd_server_pixels(args):
    """The same for every instance in DATA's index, sorted (a SOP UID
    twice would show twice)."""
    data = args[0]
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "hashi.db"),
                         uri=True)
    out = []
    for (sop, sha) in db.execute("SELECT sop_uid, sha256 FROM instances"):
        path = os.path.join(data, "blobs", sha[0:2], sha[2:4], sha)
        got, px = pixel_sha(path)
        if got != sop:
            die("blob of %s holds %s" % (sop, got))
        out.append("%s %s" % (sop, px))
    for line in sorted(out):
        print(line)


COMMANDS = {
    "multipart": cmd_multipart, "split": cmd_split,
    "dataset-equal": cmd_dataset_equal, "jpeg": cmd_jpeg,
    "jpeg-stats": cmd_jpeg_stats, "count": cmd_count, "values": cmd_values,
    "mkbad": cmd_mkbad, "rewrite": cmd_rewrite, "sha256": cmd_sha256,
    "blobcheck": cmd_blobcheck, "uids": cmd_uids,
    "verify-wado": cmd_verify_wado, "pixels": cmd_pixels,
    "server-pixels": cmd_server_pixels,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die("usage: dw.py %s ..." % "|".join(sorted(COMMANDS)))
    COMMANDS[sys.argv[1]](sys.argv[2:])
