#!/usr/bin/python3
"""gen_study: the project's synthetic CT head study, for tests and benchmarks.

    gen_study.py OUTDIR [--slices 200] [--seed 1] [--patient-id SYN0001]
                 [--patient-name SYNTHETIC^PATIENT] [--size 512]
                 [--noise 10] [--fov-mm 250] [--coverage-mm 200]
                 [--study-description TEXT] [--random-uids]

Writes OUTDIR/CT00001.dcm ... one file per axial slice, top of the head
first: CT Image Storage, Explicit VR Little Endian, SIZE x SIZE 16-bit
signed pixels (RescaleIntercept -1024, slope 1, so stored = HU + 1024).
The slices cut a head phantom built of nested ellipsoids in Hounsfield
units: air -1000, scalp 40, skull tables 1000 around diploe 800, a thin
CSF rim 8, cortex 38 over white matter 30, lateral and third ventricles 8,
and a hyperdense lesion 70 (a small bleed, right frontal).  Gaussian noise
(--noise, HU) is added inside the circular field of view; outside it every
pixel is exactly -1000.  Windows: BRAIN 40/80 first, then BONE 500/2000.

All slices share one Study, Series and Frame of Reference UID.  UIDs are
2.25.<integer> derived from --seed and --patient-id, and nothing depends
on the clock, so the same arguments give the same bytes; --random-uids
draws fresh UIDs (pixels stay the same).  What callers rely on: the study
date and time are 2024-01-01 09:00 plus (seed % 100000) minutes, the
accession number is ACC<seed, 7 digits>, Series Number 2, Instance Number
1..N, the patient is born 19700101, sex O.

Needs Debian's python3-numpy and python3-pydicom (/usr/bin/python3).
"""

import argparse
import datetime
import hashlib
import os
import sys
import uuid

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
AIR = -1000.0
INTERCEPT = 1024

# The head, outside in; each layer is painted over the previous one.
# (name, HU, centre x y z mm, semi-axes x y z mm).  x: patient left,
# y: posterior (row 0 is anterior), z: superior.  The shells are the skin
# ellipsoid shrunk by the depth of each layer.
HEAD_C = (0.0, 0.0, -10.0)
HEAD_R = (74.0, 94.0, 105.0)
SHELLS = [                      # (name, HU, depth below the skin, mm)
    ("scalp", 40.0, 0.0),
    ("outer table", 1000.0, 4.0),
    ("diploe", 800.0, 6.0),
    ("inner table", 1000.0, 9.0),
    ("csf rim", 8.0, 11.0),
    ("cortex", 38.0, 12.5),
    ("white matter", 30.0, 17.0),
]
INNER = [
    ("right lateral ventricle", 8.0, (-11.0, -4.0, 18.0), (6.0, 30.0, 16.0)),
    ("left lateral ventricle", 8.0, (11.0, -4.0, 18.0), (6.0, 30.0, 16.0)),
    ("third ventricle", 8.0, (0.0, 12.0, -2.0), (2.5, 14.0, 10.0)),
    ("lesion", 70.0, (-34.0, -28.0, 28.0), (9.0, 9.0, 8.0)),
]


def structures():
    out = [(name, hu, HEAD_C, tuple(r - d for r in HEAD_R))
           for name, hu, d in SHELLS]
    return out + INNER


class Phantom:
    """The phantom sampled on one slice grid; slice(z) gives HU."""

    def __init__(self, size, fov_mm):
        spacing = fov_mm / size
        c = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
        x, y = np.meshgrid(c, c)            # x along columns, y along rows
        self.fov = x * x + y * y <= (fov_mm / 2) ** 2
        # Per structure, its in-plane quadratic form: a pixel is inside the
        # section at height z when form <= 1 - ((z - cz) / rz)^2.
        self.parts = []
        for _name, hu, (cx, cy, cz), (rx, ry, rz) in structures():
            form = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
            self.parts.append((hu, cz, rz, form))

    def slice(self, z):
        img = np.full(self.fov.shape, AIR, dtype=np.float32)
        for hu, cz, rz, form in self.parts:
            reach = 1.0 - ((z - cz) / rz) ** 2
            if reach > 0:
                img[form <= reach] = hu
        return img


def uid_maker(seed, patient_id, random_uids):
    if random_uids:
        return lambda *what: "2.25.%d" % uuid.uuid4().int
    prefix = f"{seed}\0{patient_id}\0"

    def uid(*what):
        text = prefix + "\0".join(str(w) for w in what)
        h = hashlib.sha256(text.encode()).digest()
        return "2.25.%d" % int.from_bytes(h[:16], "big")
    return uid


def header(meta, a):
    """The attributes every slice shares; per-slice ones are set later."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    # A fixed implementation UID: the bytes must not change with pydicom.
    fm.ImplementationClassUID = meta["impl_uid"]
    fm.ImplementationVersionName = "HASHI_GENSTUDY"
    ds = FileDataset("", {}, file_meta=fm, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ascii_name = all(ord(ch) < 128 for ch in a.patient_name)
    ds.SpecificCharacterSet = "ISO_IR 100" if ascii_name else "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.StudyDate = ds.SeriesDate = meta["date"]
    ds.AcquisitionDate = ds.ContentDate = meta["date"]
    ds.StudyTime = ds.SeriesTime = meta["time"]
    ds.AcquisitionTime = ds.ContentTime = meta["time"]
    ds.AccessionNumber = "ACC%07d" % (a.seed % 10 ** 7)
    ds.Modality = "CT"
    ds.Manufacturer = "HASHI SYNTHETIC"
    ds.InstitutionName = "Synthetic Rural Clinic"
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StationName = "GENSTUDY"
    ds.StudyDescription = a.study_description
    ds.SeriesDescription = "AXIAL HEAD 1.0 (synthetic phantom)"
    ds.ManufacturerModelName = "gen_study.py"
    ds.PatientName = a.patient_name
    ds.PatientID = a.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = "%.4f" % meta["thickness"]
    ds.KVP = "120"
    ds.ReconstructionDiameter = "%.1f" % a.fov_mm
    ds.ConvolutionKernel = "SOFT"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = meta["study_uid"]
    ds.SeriesInstanceUID = meta["series_uid"]
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = meta["for_uid"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = a.size
    ds.PixelSpacing = ["%.6f" % meta["spacing"]] * 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = ["40", "500"]
    ds.WindowWidth = ["80", "2000"]
    ds.WindowCenterWidthExplanation = ["BRAIN", "BONE"]
    ds.RescaleIntercept = str(-INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="gen_study.py",
        description="Write a synthetic CT head study (one file a slice).")
    ap.add_argument("outdir")
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1,
                    help="noise, UIDs, date and accession derive from it")
    ap.add_argument("--patient-id", default="SYN0001")
    ap.add_argument("--patient-name", default="SYNTHETIC^PATIENT")
    ap.add_argument("--study-description",
                    default="CT HEAD WO CONTRAST (synthetic)")
    ap.add_argument("--size", type=int, default=512, help="rows = columns")
    ap.add_argument("--noise", type=float, default=10.0,
                    help="noise sigma inside the field of view, HU")
    ap.add_argument("--fov-mm", type=float, default=250.0,
                    help="reconstruction diameter")
    ap.add_argument("--coverage-mm", type=float, default=200.0,
                    help="z extent of all slices together")
    ap.add_argument("--random-uids", action="store_true",
                    help="fresh UIDs instead of ones from seed/patient-id")
    a = ap.parse_args(argv)
    if not 1 <= a.slices <= 100000:
        ap.error("--slices must be 1..100000")
    if not 8 <= a.size <= 4096:
        ap.error("--size must be 8..4096")
    if a.seed < 0:
        ap.error("--seed must be >= 0")
    if not (a.noise >= 0 and a.fov_mm > 0 and a.coverage_mm > 0):
        ap.error("--noise must be >= 0, --fov-mm and --coverage-mm > 0")
    for name in ("patient_id", "patient_name", "study_description"):
        if len(getattr(a, name)) > 64:
            ap.error(f"--{name.replace('_', '-')} is over 64 characters")
    return a


def main(argv=None):
    a = parse_args(argv)
    uid = uid_maker(a.seed, a.patient_id, a.random_uids)
    when = datetime.datetime(2024, 1, 1, 9, 0) + datetime.timedelta(
        minutes=a.seed % 100000)
    spacing = a.fov_mm / a.size
    meta = {"date": when.strftime("%Y%m%d"), "time": when.strftime("%H%M%S"),
            "study_uid": uid("study"), "series_uid": uid("series"),
            "for_uid": uid("frame of reference"),
            "impl_uid": uid_maker(0, "hashi gen_study", False)("impl"),
            "thickness": a.coverage_mm / a.slices, "spacing": spacing}
    ds = header(meta, a)
    phantom = Phantom(a.size, a.fov_mm)
    rng = np.random.default_rng(a.seed)
    corner = -(a.size - 1) / 2 * spacing
    os.makedirs(a.outdir, exist_ok=True)

    for i in range(a.slices):
        # Slice centres from the top of the covered range down.
        z = a.coverage_mm / 2 - (i + 0.5) * meta["thickness"]
        hu = phantom.slice(z)
        if a.noise > 0:
            hu += rng.standard_normal(hu.shape, dtype=np.float32) * a.noise
        hu[~phantom.fov] = AIR
        stored = np.clip(np.rint(hu) + INTERCEPT, -32768, 32767)
        sop_uid = uid("instance", i)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = ["%.4f" % corner, "%.4f" % corner,
                                   "%.4f" % z]
        ds.SliceLocation = "%.4f" % z
        ds.PixelData = stored.astype("<i2").tobytes()
        ds["PixelData"].VR = "OW"
        path = os.path.join(a.outdir, "CT%05d.dcm" % (i + 1))
        tmp = path + ".tmp"
        ds.save_as(tmp, write_like_original=False)
        os.replace(tmp, path)   # a file under its name is always whole
    print(f"wrote {a.slices} slices to {a.outdir} (study {meta['study_uid']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
