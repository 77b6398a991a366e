#!/usr/bin/python3
"""Images for test_dicom's render tests (fast path vs DCMTK), generated
at test time into OUTDIR (pydicom + numpy, seeded, so always the same).

    render_fixtures.py OUTDIR

The fast path must give DCMTK's 8-bit values on:
  mono1_u12.dcm      MONOCHROME1, unsigned, 12 of 16 bits stored (high bit
                     11) with junk in the 4 unused bits, the file's window
  s12_hb15_impl.dcm  implicit VR LE, signed, 12 bits stored in bits 4..15,
                     rescale 0.5 / -100 (half-integer values), no window
  u8_odd.dcm         8-bit unsigned MONOCHROME2, 37x23, window 100/50
  s8_mono1_mf.dcm    8-bit signed MONOCHROME1, 3 frames of 24x16
  u16_mf.dcm         16-bit unsigned, 4 frames of 64x40, rescale 2 / -1000,
                     two windows ("40\\400", "80\\2000")
  flat.dcm           one value everywhere (min/max window of width 1)
  tall.dcm           136x300 16-bit: JPEG strips whose last one is not a
                     multiple of 8 rows
and must leave to DCMTK (so both engines still agree):
  sigmoid.dcm        VOI LUT Function SIGMOID
  modlut.dcm         a Modality LUT Sequence
  slope_only.dcm     Rescale Slope without Rescale Intercept
  width_half.dcm     a window width of 0.5 in the file
  overlay.dcm        an overlay plane (6000,xxxx)
  presshape.dcm      Presentation LUT Shape INVERSE
  frac_rescale.dcm   512x512 rescale 0.7 / -100: the rescaled minimum is not
                     an integer, which DCMTK's windowing table shifts by
  huge_slope.dcm     rescale slope 1e200: values beyond any integer
"""
import os
import sys
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

warnings.filterwarnings("ignore")
SC = "1.2.840.10008.5.1.4.1.1.7"   # Secondary Capture Image Storage


def image(name, pixels, bits_stored, high_bit, signed,
          photometric="MONOCHROME2", frames=None, implicit=False, extra=None,
          overlay=None):
    n = sum(map(ord, name))
    ds = Dataset()
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77.%d" % n
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.77.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77.2"
    ds.Modality = "OT"
    ds.PatientID = "RENDER"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if frames:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = high_bit
    ds.PixelRepresentation = 1 if signed else 0
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    if overlay is not None:     # a graphics overlay plane in group 6000
        for el, vr, v in ((0x0010, "US", ds.Rows), (0x0011, "US", ds.Columns),
                          (0x0040, "CS", "G"), (0x0050, "SS", [1, 1]),
                          (0x0100, "US", 1), (0x0102, "US", 0),
                          (0x3000, "OW", overlay)):
            ds.add_new((0x6000, el), vr, v)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit
                              else ExplicitVRLittleEndian)
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = implicit
    ds.preamble = b"\0" * 128
    ds.save_as(os.path.join(OUT, name), write_like_original=False)


def main():
    rng = np.random.default_rng(2024)
    y, x = np.mgrid[0:96, 0:128]
    ramp = (x * 31 + y * 7) % 4096

    # 12 bits in 0..11, junk above: DCMTK masks it away
    v = (ramp + rng.integers(0, 64, ramp.shape)) % 4096
    junk = rng.integers(0, 16, ramp.shape) << 12
    image("mono1_u12.dcm", (v | junk).astype(np.uint16), 12, 11, False,
          "MONOCHROME1", extra={"WindowCenter": "1500", "WindowWidth": "2100"})

    # signed 12 bits stored in bits 4..15 (high bit 15), implicit VR
    s = (ramp - 2048 + rng.integers(-30, 30, ramp.shape)).clip(-2048, 2047)
    raw = ((s.astype(np.int32) & 0xFFF) << 4) | rng.integers(0, 16, s.shape)
    image("s12_hb15_impl.dcm", raw.astype(np.uint16), 12, 15, True,
          implicit=True,
          extra={"RescaleSlope": "0.5", "RescaleIntercept": "-100"})

    u8 = rng.integers(0, 256, (23, 37)).astype(np.uint8)
    image("u8_odd.dcm", u8, 8, 7, False,
          extra={"WindowCenter": "100", "WindowWidth": "50"})

    s8 = rng.integers(-128, 128, (3, 16, 24)).astype(np.int8)
    s8[1] //= 2
    s8[2] = 5
    image("s8_mono1_mf.dcm", s8, 8, 7, True, "MONOCHROME1", frames=3)

    fr = np.stack([(np.mgrid[0:40, 0:64][1] * (k + 1) * 40 +
                    rng.integers(0, 100, (40, 64))) % 65536
                   for k in range(4)]).astype(np.uint16)
    image("u16_mf.dcm", fr, 16, 15, False, frames=4,
          extra={"RescaleSlope": "2", "RescaleIntercept": "-1000",
                 "WindowCenter": ["40", "400"],
                 "WindowWidth": ["80", "2000"]})

    image("flat.dcm", np.full((32, 48), 777, np.uint16), 16, 15, False)

    ty, tx = np.mgrid[0:300, 0:136]
    tall = (tx * 17 + ty * 5) % 3000 + rng.integers(0, 40, tx.shape)
    image("tall.dcm", tall.astype(np.uint16), 16, 15, False,
          extra={"WindowCenter": "1500", "WindowWidth": "1000"})

    base = (ramp * 8).astype(np.uint16)
    image("sigmoid.dcm", base, 16, 15, False,
          extra={"WindowCenter": "16000", "WindowWidth": "20000",
                 "VOILUTFunction": "SIGMOID"})
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.ModalityLUTType = "HU"
    lut.LUTData = (np.arange(4096, dtype=np.uint32) * 13 % 65536).astype(
        "<u2").tobytes()
    image("modlut.dcm", ramp.astype(np.uint16), 12, 11, False,
          extra={"ModalityLUTSequence": Sequence([lut])})
    image("slope_only.dcm", base, 16, 15, False,
          extra={"RescaleSlope": "3"})
    image("width_half.dcm", base, 16, 15, False,
          extra={"WindowCenter": "100", "WindowWidth": "0.5"})
    ov = (ramp % 50 < 3).astype(np.uint8).reshape(-1)
    image("overlay.dcm", base, 16, 15, False, extra={}, overlay=np.packbits(
        ov, bitorder="little").tobytes())
    image("presshape.dcm", base, 16, 15, False,
          extra={"PresentationLUTShape": "INVERSE"})
    image("huge_slope.dcm", base, 16, 15, False,
          extra={"RescaleSlope": "1e200", "RescaleIntercept": "0"})
    big = rng.integers(-3000, 3000, (512, 512)).astype(np.int16)
    image("frac_rescale.dcm", big, 16, 15, True,
          extra={"RescaleSlope": "0.7", "RescaleIntercept": "-100",
                 "WindowCenter": "100.3", "WindowWidth": "7.7"})


if __name__ == "__main__":
    OUT = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    main()
