"""DICOM Part 10 bytes -> one frame's 8-bit pixels (grey or RGB), for ``preprocessing`` (its one caller).

pydicom parses the file and decodes native and RLE pixel data; JPEG Baseline frames go through the same
strict, bounded libjpeg-turbo decoder as ``image/jpeg`` bodies (``decoding.decode_jpeg_pixels``), so a
JPEG inside a DICOM file meets every JPEG limit. What is checked, in this order, before any pixel is read:
a DICOM preamble (``not_dicom``), the transfer syntax (``TRANSFER_SYNTAXES``, else
``unsupported_transfer_syntax``), the modality (``US`` only, else ``unsupported_modality``), then rows x
columns x samples x bits (the PNG/JPEG limits of ``preprocessing``) and the frame count
(``MAX_FRAMES``); native pixel data must hold exactly the bytes its header declares. Parsing itself stops
at ``MAX_ELEMENTS`` data elements.

The pixels become 8-bit by fixed rules (docs/api.md, "DICOM"): grey samples go through the modality LUT
(rescale slope/intercept, or a Modality LUT Sequence) and the first VOI window when one is present,
else the stored range (``BitsStored``) maps linearly onto 0..255; never scaled by the image's own
values. MONOCHROME1 is inverted. RGB and YBR_* become RGB (pydicom's conversion for native data,
libjpeg's for JPEG). The frame is then cropped to the Sequence of Ultrasound Regions' 2-D regions.

No header value leaves this module except the SOP Instance UID (only when the caller asks for it, and
only when it is a valid UID) and numbers the response needs (frame, frame count, region): error
messages name fixed vocabulary only, never free text from the file.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from typing import Any

import numpy as np
import pydicom
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

from . import decoding
from .errors import (BadImageDimensions, ClientError, CorruptImage, FrameOutOfRange, NotDicom, UnsupportedImage,
                     UnsupportedModality, UnsupportedTransferSyntax)
from .preprocessing import check_dimensions

#: Transfer syntaxes decoded, UID -> (name, decoder). The one table: docs/api.md copies it, a test
#: keeps them equal. Deflate is left out on purpose: its whole dataset is one zlib stream (a bomb).
TRANSFER_SYNTAXES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.1.2": ("Implicit VR Little Endian", "native (pydicom)"),
    "1.2.840.10008.1.2.1": ("Explicit VR Little Endian", "native (pydicom)"),
    "1.2.840.10008.1.2.2": ("Explicit VR Big Endian (retired)", "native (pydicom)"),
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline (Process 1), 8-bit", "libjpeg-turbo, strict (as image/jpeg)"),
    "1.2.840.10008.1.2.5": ("RLE Lossless", "pydicom's RLE decoder"),
}
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
#: The modality this model was trained on.
MODALITY = "US"
#: Frames per file. A cine loop is tens to a few hundred; only the one asked for is decoded.
MAX_FRAMES = 10_000
#: Data elements per file, sequence items' included. pydicom parses each in Python (~3 us): a 4.5 MB body of
#: 8-byte elements would cost seconds. An ultrasound file has tens to a few thousand (vendor private data).
MAX_ELEMENTS = 20_000
#: RLE Lossless: pydicom decodes it in Python, one loop turn per run (a run yields 1-128 bytes), so the
#: work is bounded by the frame's decoded bytes and its compressed size (at most one run per 2 bytes). 16 MB
#: (4000 x 4000 grey, 2300 x 2300 RGB) and 1.5 MB keep a frame near the slowest PNG/JPEG (`make bench`).
MAX_RLE_DECODED_BYTES = 16_000_000
MAX_RLE_FRAME_BYTES = 1_500_000
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
#: Photometric interpretations decoded (PALETTE COLOR, YBR_ICT/RCT need other decoders).
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422")
#: Modality codes that may be named in an error message (DICOM PS3.3 C.7.3.1.1.1 defined terms): a value
#: outside this list is free text from the file and is never echoed.
_KNOWN_MODALITIES = frozenset(
    "AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS KER KO LEN LS "
    "MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTPLAN "
    "RTRECORD RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XC".split())
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
#: The DICOM preamble is 128 bytes, then "DICM".
_MAGIC_AT, _MAGIC = 128, b"DICM"


class _BoundedReader(io.BytesIO):
    """The body for pydicom, refusing the file once parsing has read more than MAX_ELEMENTS elements'
    worth (pydicom reads each element's header and its value: two reads)."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if self.reads > 2 * MAX_ELEMENTS + 16:  # + the preamble and file meta reads
            raise UnsupportedImage(f"the DICOM file has more than {MAX_ELEMENTS:,} data elements; the limit is "
                                   f"{MAX_ELEMENTS:,}")
        return super().read(size)


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then 'DICM' (raw datasets without it are refused)."""
    return data[_MAGIC_AT:_MAGIC_AT + 4] == _MAGIC


@dataclasses.dataclass(frozen=True)
class DicomFrame:
    """One decoded frame and what the response says about it."""

    pixels: np.ndarray  # uint8, (H, W) grey or (H, W, 3) RGB, already cropped to ``region``
    frame: int  # 1-based, as DICOM numbers frames
    frames: int
    region: tuple[int, int, int, int] | None  # [x, y, w, h] in the frame's pixels, when cropped to it
    sop_instance_uid: str | None
    #: The input's patient, study and instance identifiers, for a DICOM SR result only (dicom_sr): never in
    #: ``to_dict``, a log or a metric, and out of ``repr`` so no traceback or debug print shows them.
    source: dict[str, str] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def to_dict(self, *, include_uid: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame, "frames": self.frames,
                               "region": list(self.region) if self.region else None}
        if include_uid:
            out["sop_instance_uid"] = self.sop_instance_uid
        return out


def read(data: bytes, *, frame: int | None = None) -> DicomFrame:
    """DICOM bytes -> one frame (``frame`` is 1-based; None: the Representative Frame Number, else 1).
    Raises a ClientError for anything not decoded (see the module docstring)."""
    if not is_dicom(data):
        raise NotDicom("the data is not a DICOM file (no 'DICM' after the 128-byte preamble)")
    with warnings.catch_warnings(record=True):
        # pydicom warns about odd values instead of failing, and its messages can quote header values (a
        # patient's name): they are collected here and dropped, never printed or logged. Everything that
        # matters is checked below.
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(_BoundedReader(data))
        except InvalidDicomError:
            raise NotDicom("the data is not a DICOM file") from None
        except ClientError:
            raise
        except Exception as exc:  # struct/EOF/recursion errors on broken or hostile headers
            raise CorruptImage(f"the DICOM header could not be read ({type(exc).__name__})") from None
        try:
            return _frame(ds, frame)
        except ClientError:
            raise
        except Exception as exc:  # a value pydicom cannot convert (a lying VR), a decoder's error
            raise CorruptImage(f"the DICOM data could not be decoded ({type(exc).__name__})") from None


def _frame(ds: Any, frame: int | None) -> DicomFrame:
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if syntax not in TRANSFER_SYNTAXES:
        known = ", ".join(f"{uid} ({name})" for uid, (name, _) in TRANSFER_SYNTAXES.items())
        shown = _syntax_name(syntax)
        raise UnsupportedTransferSyntax(f"the DICOM transfer syntax is {shown}, which is not decoded; "
                                        f"supported: {known}")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if not modality and "PixelData" not in ds:  # pydicom reads a file cut short without complaint
        raise CorruptImage("the DICOM file has neither a modality nor pixel data: truncated, or not an image")
    if modality != MODALITY:
        shown = modality if modality in _KNOWN_MODALITIES else ("missing" if not modality else "not a known code")
        raise UnsupportedModality(f"the DICOM modality is {shown}; this model reads ultrasound (US) only")
    if "PixelData" not in ds:
        raise UnsupportedImage("the DICOM file holds no pixel data (Pixel Data (7FE0,0010) is missing)")
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    samples = _int(ds, "SamplesPerPixel", 1)
    bits, stored = _int(ds, "BitsAllocated"), _int(ds, "BitsStored", None)
    stored = bits if stored is None else stored
    frames = _int(ds, "NumberOfFrames", 1) or 1
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in PHOTOMETRIC:
        shown = photometric if photometric in ("PALETTE COLOR", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420",
                                               "YBR_PARTIAL_422", "HSV", "ARGB", "CMYK") else "not a known value"
        raise UnsupportedImage(f"the DICOM photometric interpretation is {shown}; decoded: {', '.join(PHOTOMETRIC)}")
    if samples != (1 if photometric.startswith("MONOCHROME") else 3):
        raise CorruptImage(f"the DICOM header declares {samples} samples per pixel for {photometric}")
    if syntax == JPEG_BASELINE and bits != 8:
        raise CorruptImage(f"the DICOM header declares {bits} bits allocated for JPEG Baseline, which is 8-bit")
    if bits not in (8, 16) or not 1 <= stored <= bits:
        raise UnsupportedImage(f"the DICOM pixel data has {bits} bits allocated and {stored} stored; "
                               "decoded: 8 or 16 allocated, stored <= allocated")
    # Sizes before pixels: the PNG/JPEG limits, with 16-bit samples at the wide-image limit.
    check_dimensions(cols, rows)
    if bits > 8 and rows * cols > decoding.MAX_WIDE_PIXELS:
        raise BadImageDimensions(f"image is {cols}x{rows} px ({rows * cols:,} pixels) with 16-bit samples; "
                                 f"the limit for those is {decoding.MAX_WIDE_PIXELS:,} pixels")
    if not 1 <= frames <= MAX_FRAMES:
        raise BadImageDimensions(f"the DICOM header declares {frames:,} frames; the limit is {MAX_FRAMES:,}")
    index = _frame_index(ds, frame, frames)
    if syntax == JPEG_BASELINE:
        pixels = _jpeg_frame(ds, index, frames, rows, cols, samples)
    elif syntax == RLE_LOSSLESS:
        pixels = _rle_frame(ds, index, frames, rows, cols, samples, bits)
    else:
        pixels = _pydicom_frame(ds, index, syntax, rows, cols, samples, bits, frames)
    if photometric.startswith("MONOCHROME"):
        pixels = _grey_to_uint8(pixels, ds, stored, photometric == "MONOCHROME1")
    elif pixels.dtype != np.uint8:
        top = (1 << stored) - 1
        pixels = ((np.minimum(pixels.astype(np.uint32), top) * 255 + top // 2) // top).astype(np.uint8)
    region = ultrasound_region(ds, cols, rows)
    if region is not None:
        x, y, w, h = region
        pixels = pixels[y:y + h, x:x + w]
    return DicomFrame(np.ascontiguousarray(pixels), index + 1, frames, region, _uid(ds), _identity(ds))


def _syntax_name(uid: str) -> str:
    """A transfer syntax for a message: pydicom's name for a registered UID, else only that it is unknown."""
    if not uid:
        return "missing"
    if not _UID.fullmatch(uid) or len(uid) > 64:
        return "not a valid UID"
    name = UID(uid).name
    return f"{uid} ({name})" if name and name != uid else f"{uid} (not a registered transfer syntax)"


def _int(ds: Any, keyword: str, default: int | None = 0) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        if default == 0 and keyword in ("Rows", "Columns", "BitsAllocated"):
            raise CorruptImage(f"the DICOM header has no {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CorruptImage(f"the DICOM header's {keyword} is not a number") from None


def _frame_index(ds: Any, frame: int | None, frames: int) -> int:
    if frame is None:
        rep = ds.get("RepresentativeFrameNumber")
        try:
            frame = int(rep) if rep is not None and 1 <= int(rep) <= frames else 1
        except (TypeError, ValueError):
            frame = 1
    if not 1 <= frame <= frames:
        raise FrameOutOfRange(f"frame {frame} was asked for; the file has {frames} frame(s), numbered 1 to {frames}")
    return frame - 1


def _jpeg_frame(ds: Any, index: int, frames: int, rows: int, cols: int, samples: int) -> np.ndarray:
    try:
        codestream = get_frame(ds.PixelData, index, number_of_frames=frames)
    except Exception as exc:
        raise CorruptImage(f"frame {index + 1} could not be read from the encapsulated pixel data "
                           f"({type(exc).__name__})") from None
    return decoding.decode_jpeg_pixels(bytes(codestream), width=cols, height=rows, samples=samples)


def _rle_frame(ds: Any, index: int, frames: int, rows: int, cols: int, samples: int, bits: int) -> np.ndarray:
    if rows * cols * samples * (bits // 8) > MAX_RLE_DECODED_BYTES:
        raise UnsupportedImage(f"an RLE frame of {cols}x{rows} px x {samples} sample(s) x {bits // 8} byte(s) is over "
                               f"the {MAX_RLE_DECODED_BYTES:,}-byte limit for RLE (decoded in Python); send it uncompressed")
    try:
        size = len(get_frame(ds.PixelData, index, number_of_frames=frames))
    except Exception as exc:
        raise CorruptImage(f"frame {index + 1} could not be read from the encapsulated pixel data "
                           f"({type(exc).__name__})") from None
    if size > MAX_RLE_FRAME_BYTES:
        raise UnsupportedImage(f"the RLE frame is {size:,} bytes; the limit for RLE (decoded in Python) is "
                               f"{MAX_RLE_FRAME_BYTES:,}; send it uncompressed")
    return _pydicom_frame(ds, index, RLE_LOSSLESS, rows, cols, samples, bits, frames)


def _pydicom_frame(ds: Any, index: int, syntax: str, rows: int, cols: int, samples: int, bits: int,
                   frames: int) -> np.ndarray:
    if syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"):
        expected, actual = get_expected_length(ds), len(ds.PixelData)
        if actual not in (expected, expected + 1):  # one padding byte makes an odd length even
            raise CorruptImage(f"the DICOM pixel data holds {actual:,} bytes; its header (rows, columns, samples, "
                               f"bits, frames) declares {expected:,}")
    ds.pixel_array_options(index=index, as_rgb=True)
    arr = ds.pixel_array
    want = (rows, cols) if samples == 1 else (rows, cols, 3)
    if arr.shape != want:
        raise CorruptImage(f"the decoded frame is {arr.shape}, the header declares {want}")
    return arr


def _grey_to_uint8(arr: np.ndarray, ds: Any, stored: int, invert: bool) -> np.ndarray:
    """Stored values -> 0..255 through a table over every value ``stored`` bits can hold (at most 65,536
    entries): modality LUT, then the first VOI window or the full stored range; inverted for MONOCHROME1."""
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1 and arr.dtype.kind == "i"
    lo = -(1 << (stored - 1)) if signed else 0
    values = np.arange(lo, lo + (1 << stored), dtype=np.int32 if signed else np.uint32)
    modality = np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    if not np.all(np.isfinite(modality)):
        raise CorruptImage("the DICOM rescale slope/intercept do not give finite values")
    window = _first_window(ds)
    if window is not None:
        out = voi_window(modality, *window)
    else:
        low, high = float(modality.min()), float(modality.max())
        out = (modality - low) / (high - low) if high > low else np.zeros_like(modality)
    if invert:
        out = 1.0 - out
    lut = np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.dtype == np.uint8 and lut.size == 256 and np.array_equal(lut, np.arange(256)):
        return arr  # 8-bit, no rescale or window: already the output (most ultrasound)
    flat = arr.reshape(-1)
    result = np.empty(flat.shape, dtype=np.uint8)
    step = 1 << 22  # ~4 M samples per block: no int64 copy of a whole 16-bit frame
    for start in range(0, flat.size, step):
        block = flat[start:start + step]
        if lo:  # signed: shift onto 0.. in 32 bits
            block = block.astype(np.int32) - lo
        result[start:start + step] = lut[np.minimum(block, lut.size - 1)]
    return result.reshape(arr.shape)


def _first_window(ds: Any) -> tuple[float, float, str] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    try:
        c, w = float(_first(center)), float(_first(width))
    except (TypeError, ValueError, IndexError):
        raise CorruptImage("the DICOM VOI window (WindowCenter/WindowWidth) is not a number") from None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise UnsupportedImage("the DICOM VOI LUT function is not LINEAR, LINEAR_EXACT or SIGMOID")
    if not (np.isfinite(c) and np.isfinite(w)) or w < (1.0 if function == "LINEAR" else 0.0) or w == 0:
        raise CorruptImage("the DICOM VOI window width is below its minimum (1 for LINEAR, > 0 otherwise)")
    return c, w, function


def _first(value: Any) -> Any:
    """The first of a multi-valued element (pydicom's MultiValue), or the value itself."""
    return value[0] if isinstance(value, (MultiValue, list, tuple)) else value


def voi_window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 window functions, output in [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700, 700)))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width <= 1.0:  # a threshold at c - 0.5
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def ultrasound_region(ds: Any, cols: int, rows: int) -> tuple[int, int, int, int] | None:
    """[x, y, w, h]: the union of the 2-D regions (RegionSpatialFormat 1) of the Sequence of Ultrasound
    Regions (0018,6011), clipped to the frame; None when there is none, it is the whole frame, or its
    bounds make no sense (then the whole frame is classified)."""
    boxes = []
    for item in ds.get("SequenceOfUltrasoundRegions") or []:
        try:
            if int(item.get("RegionSpatialFormat", 0) or 0) != 1:
                continue
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols - 1), min(y1, rows - 1)
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
    if not boxes:
        return None
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    box = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    if box == (0, 0, cols, rows):
        return None
    try:
        check_dimensions(box[2], box[3])
    except ClientError:
        return None  # a sliver: classify the whole frame rather than refuse the file
    return box


def _identity(ds: Any) -> dict[str, str]:
    """What a DICOM SR result copies to join the input's study; UIDs only when valid."""
    from .dicom_sr import IDENTITY

    out = {}
    for keyword in IDENTITY:
        value = ds.get(keyword)
        if value is not None and str(value) != "":
            out[keyword] = str(value)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if _UID.fullmatch(value) and len(value) <= 64:
            out[keyword] = value
        else:
            out.pop(keyword, None)
    return out


def _uid(ds: Any) -> str | None:
    value = str(ds.get("SOPInstanceUID", "") or "").strip()
    return value if _UID.fullmatch(value) and len(value) <= 64 else None

