"""Real DICOM files for the tests and the hostile corpus, written with pydicom (Pillow for JPEG Baseline frames):
the serving tests compare each against the same pixels sent as PNG; the hostile corpus damages them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit,
                         RLELossless, generate_uid)

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Who the test files belong to: a name and id unique enough to grep for in logs and responses.
PATIENT_NAME = "Zyxwvut^Qorbl-7f3a9c"
PATIENT_ID = "PID-5e81d0c4b2"


def _dataset(syntax: str, *, modality: str, sop_class: str, frames: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.PatientBirthDate, ds.InstitutionName = "19700101", "Hospital of " + PATIENT_NAME
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def dicom(frames: list[np.ndarray] | np.ndarray, *, photometric: str | None = None, syntax: str = ExplicitVRLittleEndian,
          bits: int | None = None, stored: int | None = None, signed: bool = False, slope: float | None = None,
          intercept: float | None = None, window: tuple[float, float] | None = None, voi_function: str | None = None,
          planar: int = 0, modality: str = "US", regions: list[tuple[int, int, int, int]] | None = None,
          representative_frame: int | None = None, jpeg_quality: int = 95, extra=None) -> bytes:
    """Frames (H, W) grey or (H, W, 3) RGB -> DICOM Part 10 bytes.

    ``syntax`` JPEGBaseline8Bit: each frame Pillow-encoded (YBR_FULL_422 for colour, 4:2:2 subsampling) and
    encapsulated; RLELossless: pydicom's encoder; otherwise native. ``regions``: 2-D ultrasound regions
    (x0, y0, x1, y1), inclusive. ``extra(ds)`` edits the dataset last (for lying headers)."""
    frames = [frames] if isinstance(frames, np.ndarray) else list(frames)
    first = frames[0]
    grey = first.ndim == 2
    bits = bits or (16 if first.dtype.itemsize == 2 else 8)
    sop = (US_MULTIFRAME if len(frames) > 1 else US_IMAGE) if modality == "US" else CT_IMAGE
    ds = _dataset(syntax, modality=modality, sop_class=sop, frames=len(frames))
    ds.Rows, ds.Columns = first.shape[:2]
    ds.SamplesPerPixel = 1 if grey else 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored or bits, (stored or bits) - 1
    ds.PixelRepresentation = 1 if signed else 0
    if syntax == JPEGBaseline8Bit:
        ds.PhotometricInterpretation = photometric or ("MONOCHROME2" if grey else "YBR_FULL_422")
        ds.PlanarConfiguration = 0 if not grey else None
        if grey:
            del ds.PlanarConfiguration
        ds.PixelData = encapsulate([_jpeg(f, jpeg_quality) for f in frames])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
    else:
        ds.PhotometricInterpretation = photometric or ("MONOCHROME2" if grey else "RGB")
        if not grey:
            ds.PlanarConfiguration = planar
        stack = np.stack(frames)
        if not grey and planar == 1:
            stack = np.ascontiguousarray(stack.transpose(0, 3, 1, 2))  # R plane, G plane, B plane per frame
        dtype = {8: np.uint8, 16: np.int16 if signed else np.uint16}[bits]
        stack = stack.astype(dtype)
        if syntax == RLELossless:
            ds.PixelData = b""
            arr = np.stack(frames).astype(dtype)
            ds.compress(RLELossless, arr if len(frames) > 1 else arr[0], encoding_plugin="pydicom")
        else:
            if syntax == ExplicitVRBigEndian:
                stack = stack.astype(stack.dtype.newbyteorder(">"))
            raw = stack.tobytes()
            ds.PixelData = raw + (b"\0" if len(raw) % 2 else b"")
            ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function:
        ds.VOILUTFunction = voi_function
    if representative_frame is not None:
        ds.RepresentativeFrameNumber = representative_frame
    if regions:
        items = []
        for x0, y0, x1, y1 in regions:
            item = Dataset()
            item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, 1, 0
            item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
            item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
            items.append(item)
        ds.SequenceOfUltrasoundRegions = items
    if extra is not None:
        extra(ds)
    buf = io.BytesIO()
    little = syntax != ExplicitVRBigEndian
    implicit = syntax == ImplicitVRLittleEndian
    ds.save_as(buf, enforce_file_format=True, little_endian=little, implicit_vr=implicit)
    return buf.getvalue()


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(frame, mode="L" if frame.ndim == 2 else "RGB")
    img.save(buf, format="JPEG", quality=quality, subsampling=1)  # 4:2:2, as YBR_FULL_422 says
    return buf.getvalue()


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def frame(seed: int = 0, width: int = 96, height: int = 80, *, colour: bool = False) -> np.ndarray:
    """Speckle with a dark blob, like a small ultrasound frame (grey) or a tinted one (colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.clip(rng.gamma(2.0, 40.0, size=(height, width)), 0, 255)
    cx, cy = width * (0.3 + 0.4 * rng.random()), height * (0.3 + 0.4 * rng.random())
    base[(xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) / 5) ** 2] *= 0.25
    grey = base.astype(np.uint8)
    if not colour:
        return grey
    tint = np.stack([grey, (grey * 0.8).astype(np.uint8), (grey * 0.6 + 40).astype(np.uint8)], axis=-1)
    return tint.astype(np.uint8)
