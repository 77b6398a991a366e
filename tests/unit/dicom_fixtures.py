#!/usr/bin/python3
"""Fixtures for tests/unit/test_dicom.c, generated at test time.

    dicom_fixtures.py OUTDIR TOOLS_DIR

Writes into OUTDIR:
  ct/CT0000{1,2,3}.dcm   3 slices of gen_study.py's synthetic CT (512x512)
  expected.txt           key=value of what dicom_parse_file must report
                         for ct/CT00001.dcm (read back with pydicom)
  bad/truncated.dcm      the first slice cut in the middle of its pixels
  bad/random.bin         64 KiB of seeded random bytes
  bad/empty.dcm          0 bytes
  bad/huge_length.dcm    the first slice with PixelData's length set to
                         0xFFFFFFF0 (the "huge declared length" attack)
  bad/no_sop_uid.dcm     SOP Instance UID removed
  bad/uid_dotdot.dcm     SOP Instance UID "1.2.3/../../etc"
  bad/uid_letters.dcm    Study Instance UID "1.2.840.abc"
  bad/uid_leading0.dcm   Series Instance UID "1.2.03.4"
  bad/huge_frame.dcm     claims 20000x20000 16-bit pixels, holds 1000 bytes
  var/no_preamble.dcm    the first slice without its 128-byte preamble+DICM
  var/implicit.dcm       the first slice as implicit VR little endian
  var/bare_implicit.dcm  the same with no meta header at all
The deeply nested sequence is built by the C test itself.
"""
import os
import random
import struct
import subprocess
import sys

import warnings

import pydicom

warnings.filterwarnings("ignore")


def main():
    out, tools = sys.argv[1], sys.argv[2]
    ct = os.path.join(out, "ct")
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    subprocess.run(["/usr/bin/python3", os.path.join(tools, "gen_study.py"),
                    ct, "--slices", "3", "--seed", "7",
                    "--patient-id", "HASHI-T1"], check=True,
                   stdout=subprocess.DEVNULL)
    first = os.path.join(ct, "CT00001.dcm")
    ds = pydicom.dcmread(first)
    with open(os.path.join(out, "expected.txt"), "w") as f:
        for k, v in [("study_uid", ds.StudyInstanceUID),
                     ("series_uid", ds.SeriesInstanceUID),
                     ("sop_uid", ds.SOPInstanceUID),
                     ("sop_class_uid", ds.SOPClassUID),
                     ("patient_id", ds.PatientID),
                     ("patient_name", str(ds.PatientName)),
                     ("study_date", ds.StudyDate),
                     ("study_time", ds.StudyTime),
                     ("accession", ds.AccessionNumber)]:
            f.write(f"{k}={v}\n")

    raw = open(first, "rb").read()
    open(os.path.join(bad, "truncated.dcm"), "wb").write(raw[:len(raw) // 2])
    rnd = random.Random(1234)
    open(os.path.join(bad, "random.bin"), "wb").write(
        bytes(rnd.getrandbits(8) for _ in range(65536)))
    open(os.path.join(bad, "empty.dcm"), "wb").close()

    # PixelData (7FE0,0010) OW: tag, "OW", 2 reserved bytes, 4-byte length.
    hdr = struct.pack("<HH2sH", 0x7FE0, 0x0010, b"OW", 0)
    at = raw.rfind(hdr)
    assert at > 0
    huge = bytearray(raw)
    huge[at + 8:at + 12] = struct.pack("<I", 0xFFFFFFF0)
    open(os.path.join(bad, "huge_length.dcm"), "wb").write(huge)

    d = pydicom.dcmread(first)
    del d.SOPInstanceUID
    d.save_as(os.path.join(bad, "no_sop_uid.dcm"))
    for name, attr, val in [("uid_dotdot", "SOPInstanceUID",
                             "1.2.3/../../etc"),
                            ("uid_letters", "StudyInstanceUID",
                             "1.2.840.abc"),
                            ("uid_leading0", "SeriesInstanceUID",
                             "1.2.03.4")]:
        d = pydicom.dcmread(first)
        setattr(d, attr, val)
        d.save_as(os.path.join(bad, name + ".dcm"))
    d = pydicom.dcmread(first)
    d.Rows = d.Columns = 20000
    d.PixelData = bytes(1000)
    d.save_as(os.path.join(bad, "huge_frame.dcm"))

    var = os.path.join(out, "var")
    os.makedirs(var, exist_ok=True)
    open(os.path.join(var, "no_preamble.dcm"), "wb").write(raw[132:])
    d = pydicom.dcmread(first)
    d.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    d.is_implicit_VR = True
    d.is_little_endian = True
    imp = os.path.join(var, "implicit.dcm")
    d.save_as(imp)
    b = open(imp, "rb").read()
    off = 132                      # skip the meta group, explicit LE
    while struct.unpack_from("<H", b, off)[0] == 0x0002:
        if b[off + 4:off + 6] in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            off += 12 + struct.unpack_from("<I", b, off + 8)[0]
        else:
            off += 8 + struct.unpack_from("<H", b, off + 6)[0]
    open(os.path.join(var, "bare_implicit.dcm"), "wb").write(b[off:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
