"""A prediction as a DICOM Comprehensive SR (``Accept: application/dicom``): a PACS can file it with the study
of the instance it classified. Built with pydicom's Dataset (no SR dictionaries: the codes are written here).

The SR carries the input's patient and study identifiers (copied, so the PACS files it with the study; they
go back to the caller only, never into a log or a metric), references the classified instance and frame,
and holds the label, the rule that produced it, the operating point, one probability per label, the
model's name and version and the research-use statement. docs/api.md, "DICOM", shows the tree.
"""

from __future__ import annotations

import datetime
import io
from typing import Any

from .errors import NotAcceptable

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
DICOM_TYPE = "application/dicom"
#: This model's own concepts: a private coding scheme (PS3.16 8.2: "99" + a name).
SCHEME = "99BUSI"
#: Attributes copied from the input so the SR joins its study (Patient and General Study modules).
IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
            "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def wants_dicom(accept: str | None) -> bool:
    """Whether the Accept header asks for application/dicom (any position, any parameters)."""
    return any(part.split(";", 1)[0].strip().lower() == DICOM_TYPE for part in (accept or "").split(","))


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(value_type: str, concept, relationship: str = "CONTAINS"):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.RelationshipType, item.ValueType = relationship, value_type
    item.ConceptNameCodeSequence = [concept]
    return item


def _text(concept, text: str):
    item = _item("TEXT", concept)
    item.TextValue = text[:1024]  # UT could hold more; the rule and the disclaimer are a few hundred characters
    return item


def _num(concept, value: float):
    from pydicom.dataset import Dataset

    item = _item("NUM", concept)
    measured = Dataset()
    measured.NumericValue = f"{value:.10f}"[:16]  # DS holds at most 16 characters
    measured.MeasurementUnitsCodeSequence = [_code("1", "UCUM", "no units")]
    item.MeasuredValueSequence = [measured]
    return item


def build(body: dict[str, Any], frame: Any) -> bytes:
    """The prediction ``body`` (as POST /predict answers it) about ``frame`` (a dicom.DicomFrame) -> SR bytes;
    NotAcceptable (406) when the input was not DICOM (``frame`` None)."""
    if frame is None:
        raise NotAcceptable(f"Accept: {DICOM_TYPE} answers a DICOM SR that references the input instance, so it "
                            "needs a DICOM input; send the image as DICOM, or accept application/json")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    source = frame.source
    now = datetime.datetime.now(datetime.timezone.utc)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = COMPREHENSIVE_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    for keyword in IDENTITY:
        if source.get(keyword) is not None:
            setattr(ds, keyword, source[keyword])
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "SR", generate_uid(), 9901, 1
    ds.SeriesDescription = "busi-classifier result (research use only)"
    ds.Manufacturer = "busi-classifier (research use only, not a medical device)"
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    if source.get("SOPInstanceUID"):
        series = Dataset()
        series.SeriesInstanceUID = source.get("SeriesInstanceUID") or generate_uid()
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source["SOPClassUID"], source["SOPInstanceUID"]
        series.ReferencedSOPSequence = [ref]
        study = Dataset()
        study.StudyInstanceUID = ds.StudyInstanceUID
        study.ReferencedSeriesSequence = [series]
        ds.CurrentRequestedProcedureEvidenceSequence = [study]
    content = [_text(_code("121106", "DCM", "Comment"), body["disclaimer"])]
    if source.get("SOPInstanceUID"):
        image = _item("IMAGE", _code("121112", "DCM", "Source of Measurement"))
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source["SOPClassUID"], source["SOPInstanceUID"]
        if frame.frames > 1:
            ref.ReferencedFrameNumber = frame.frame
        image.ReferencedSOPSequence = [ref]
        content.append(image)
    model = body.get("model") or {}
    content += [_text(_code("111001", "DCM", "Algorithm Name"), str(model.get("name", ""))),
                _text(_code("111003", "DCM", "Algorithm Version"), str(model.get("version", ""))),
                _text(_code("label", SCHEME, "Label"), str(body["label"])),
                _text(_code("label_rule", SCHEME, "Label rule"), str(body.get("label_rule") or ""))]
    if body.get("operating_point"):
        content.append(_text(_code("operating_point", SCHEME, "Operating point"), str(body["operating_point"])))
    for label, p in body["probabilities"].items():
        content.append(_num(_code(f"p_{label}"[:16], SCHEME, f"Probability of {label}"), float(p)))
    for warning in body.get("warnings") or []:
        content.append(_text(_code("warning", SCHEME, "Warning"), str(warning)))
    ds.ContentSequence = content
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
