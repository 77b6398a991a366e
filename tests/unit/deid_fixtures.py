#!/usr/bin/python3
"""Fixtures for tests/unit/test_deid.c (dicom_deidentify), and the dump
the test reads the results back with (pydicom, seeded, always the same).

    deid_fixtures.py OUTDIR         write the fixtures
    deid_fixtures.py dump FILE      print what test_deid asserts on

Every identifying value planted contains "SECRET" (texts, names, IDs) or
is a date or UID the test searches for in the output's bytes: the study
date 20240615, the birth date 19700312, UIDs under the root 1.3.6.1.4.1.
99999.  One attribute of each action class of PS3.15 Table E.1-1 (X, Z,
D, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*) at least, at the top level and inside
sequences, plus private elements, a private sequence, an overlay comment
and curve data.

OUTDIR/
  im1.dcm     CT, 64x48 signed 16-bit, no PatientAge (it must become 054Y)
  im2.dcm     the same study and series, another SOP Instance UID,
              PatientAge 054Y; its Referenced Image Sequence points to im1
  infant.dcm  another study: born 20240501, studied 20240615 (001M)
"""
import os
import sys
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

warnings.filterwarnings("ignore")
CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.3.6.1.4.1.99999."


def item(**kw):
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def instance(path, n, study, series, sop, birth, age=None, ref_sop=None):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = ROOT + "4.1"
    ds.IrradiationEventUID = ROOT + "5.%d" % n
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"                       # K
    ds.SliceThickness = "5"
    ds.InstanceNumber = n
    # dates and times (Z, X/D, X/Z, Z/D, X/Z/D)
    ds.StudyDate = "20240615"
    ds.StudyTime = "101500"
    ds.SeriesDate = "20240615"
    ds.SeriesTime = "101600"
    ds.AcquisitionDate = "20240615"
    ds.AcquisitionTime = "101700"
    ds.ContentDate = "20240615"
    ds.ContentTime = "101800"
    ds.InstanceCreationDate = "20240615"
    ds.AcquisitionDateTime = "20240615101700"
    # patient (Z, X; age and sex kept)
    ds.PatientName = "SECRET^PATIENT"
    ds.PatientID = "SECRET-PID"
    ds.PatientBirthDate = birth
    ds.PatientSex = "F"
    if age:
        ds.PatientAge = age
    ds.OtherPatientIDs = "SECRET-OPID"
    ds.OtherPatientNames = "SECRET^OTHER"
    ds.OtherPatientIDsSequence = Sequence([item(PatientID="SECRET-OPIDSQ")])
    ds.PatientBirthName = "SECRET^BIRTH"
    ds.PatientMotherBirthName = "SECRET^MOTHER"
    ds.PatientAddress = "SECRET STREET 1"
    ds.PatientTelephoneNumbers = "SECRET-555"
    ds.MedicalRecordLocator = "SECRET-MRL"
    ds.EthnicGroup = "SECRET"
    ds.Occupation = "SECRET OCCUPATION"
    ds.PatientSize = "1.62"
    ds.PatientWeight = "58"
    ds.AdditionalPatientHistory = "SECRET HISTORY"
    ds.PatientComments = "SECRET PATIENT COMMENT"
    # physicians, operators (Z, X, X/Z/D)
    ds.ReferringPhysicianName = "SECRET^REFERRER"
    ds.PerformingPhysicianName = "SECRET^PERFORMER"
    ds.PhysiciansOfRecord = "SECRET^RECORD"
    ds.NameOfPhysiciansReadingStudy = "SECRET^READER"
    ds.RequestingPhysician = "SECRET^REQUESTER"
    ds.OperatorsName = "SECRET^OPERATOR"
    # institution and equipment (X/Z/D, X)
    ds.InstitutionName = "SECRET HOSPITAL"
    ds.InstitutionAddress = "SECRET HOSPITAL ROAD"
    ds.InstitutionalDepartmentName = "SECRET RADIOLOGY"
    ds.InstitutionCodeSequence = Sequence([item(
        CodeValue="SECRETINST", CodingSchemeDesignator="L",
        CodeMeaning="SECRET INSTITUTION")])
    ds.StationName = "SECRETSTATION"
    ds.DeviceSerialNumber = "SECRET-SN-42"
    # request and study identifiers (Z, X)
    ds.AccessionNumber = "SECRETACC"
    ds.StudyID = "SECRETSID"
    ds.RequestAttributesSequence = Sequence([item(
        RequestedProcedureID="SECRET-RPID",
        ScheduledProcedureStepID="SECRET-SPSID")])
    ds.RequestedProcedureDescription = "SECRET REQUESTED PROCEDURE"
    # free text (X, X/D)
    ds.StudyDescription = "SECRET STUDY DESCRIPTION"
    ds.SeriesDescription = "SECRET SERIES DESCRIPTION"
    ds.ProtocolName = "SECRET PROTOCOL"
    ds.ImageComments = "SECRET IMAGE COMMENT"
    ds.DerivationDescription = "SECRET DERIVATION"
    # D: a dummy value, and a sequence emptied
    ds.ClinicalTrialSponsorName = "SECRET SPONSOR"
    ds.VerifyingObserverSequence = Sequence([item(
        VerifyingObserverName="SECRET^VERIFIER",
        VerifyingOrganization="SECRET ORG")])
    # a kept (K) sequence whose item holds listed and private attributes
    proc = item(CodeValue="P1", CodingSchemeDesignator="L",
                CodeMeaning="CT HEAD", InstitutionName="SECRET IN SEQ")
    proc.add_new(0x00410010, "LO", "SECRET NESTED CREATOR")
    proc.add_new(0x00411001, "LO", "SECRET NESTED PRIVATE")
    ds.ProcedureCodeSequence = Sequence([proc])
    # X/Z/U*: references kept, their UIDs replaced
    if ref_sop:
        ds.ReferencedImageSequence = Sequence([item(
            ReferencedSOPClassUID=CT, ReferencedSOPInstanceUID=ref_sop,
            OperatorsName="SECRET^IN^REFERENCE")])
    # private elements and a private sequence
    ds.add_new(0x00090010, "LO", "SECRET CREATOR")
    ds.add_new(0x00091001, "LO", "SECRET PRIVATE VALUE")
    ds.add_new(0x00091002, "SQ", Sequence([item(
        PatientName="SECRET^IN^PRIVATE")]))
    # repeating groups: an overlay comment, curve data
    ds.add_new(0x60004000, "LT", "SECRET OVERLAY COMMENT")
    ds.add_new(0x50002500, "LO", "SECRET CURVE LABEL")

    rng = np.random.default_rng(1000 + n)
    px = rng.integers(-1000, 2000, (48, 64)).astype("<i2")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = px.tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "SECRETAE"
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.preamble = b"\0" * 128
    ds.save_as(path, write_like_original=False)


def write(out):
    os.makedirs(out, exist_ok=True)
    study, series = ROOT + "1.1", ROOT + "2.1"
    sop1, sop2 = ROOT + "3.1", ROOT + "3.2"
    instance(os.path.join(out, "im1.dcm"), 1, study, series, sop1,
             "19700312")
    instance(os.path.join(out, "im2.dcm"), 2, study, series, sop2,
             "19700312", age="054Y", ref_sop=sop1)
    instance(os.path.join(out, "infant.dcm"), 3, ROOT + "1.2", ROOT + "2.2",
             ROOT + "3.3", "20240501")


def state(ds, kw):
    if kw not in ds:
        return "<absent>"
    el = ds[kw]
    v = el.value
    if el.VR == "SQ":
        return "<%d items>" % len(v)
    return str(v) if v not in (None, "") else "<empty>"


def privates(ds):
    n = 0
    for el in ds:
        if el.tag.group & 1:
            n += 1
        if el.VR == "SQ":
            for it in el.value:
                n += privates(it)
    return n


def dump(path):
    ds = pydicom.dcmread(path)
    out = {"private_count": privates(ds) + privates(ds.file_meta),
           "meta_sop_matches": int(ds.file_meta.MediaStorageSOPInstanceUID
                                   == ds.SOPInstanceUID),
           "source_ae": ds.file_meta.get("SourceApplicationEntityTitle",
                                         "<absent>") or "<empty>",
           "method_codes": ",".join(
               i.CodeValue for i in
               ds.get("DeidentificationMethodCodeSequence", []))}
    for kw in ["PatientIdentityRemoved", "PatientAge", "PatientSex",
               "PatientName", "PatientID", "PatientBirthDate", "StudyDate",
               "StudyTime", "ContentDate", "AccessionNumber", "StudyID",
               "ReferringPhysicianName", "SeriesDate", "AcquisitionDate",
               "InstanceCreationDate", "AcquisitionDateTime",
               "OtherPatientIDs", "OtherPatientIDsSequence",
               "PatientAddress", "PatientWeight", "PerformingPhysicianName",
               "OperatorsName", "InstitutionName", "InstitutionCodeSequence",
               "StationName", "DeviceSerialNumber", "StudyDescription",
               "SeriesDescription", "ProtocolName", "ImageComments",
               "RequestAttributesSequence", "ClinicalTrialSponsorName",
               "VerifyingObserverSequence", "ReferencedImageSequence",
               "ProcedureCodeSequence", "Manufacturer", "Modality",
               "SliceThickness", "DeidentificationMethod"]:
        out[kw] = state(ds, kw)
    proc = ds.get("ProcedureCodeSequence")
    if proc:
        out["proc.CodeValue"] = state(proc[0], "CodeValue")
        out["proc.InstitutionName"] = state(proc[0], "InstitutionName")
    ref = ds.get("ReferencedImageSequence")
    if ref:
        out["ref.ReferencedSOPInstanceUID"] = state(
            ref[0], "ReferencedSOPInstanceUID")
        out["ref.ReferencedSOPClassUID"] = state(ref[0],
                                                 "ReferencedSOPClassUID")
        out["ref.OperatorsName"] = state(ref[0], "OperatorsName")
    out["overlay_comment"] = state(ds, 0x60004000) \
        if 0x60004000 in ds else "<absent>"
    out["curve_label"] = "<present>" if 0x50002500 in ds else "<absent>"
    for k, v in out.items():
        print("%s=%s" % (k, v))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    elif len(sys.argv) == 2:
        write(sys.argv[1])
    else:
        sys.exit(__doc__)
