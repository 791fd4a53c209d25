"""Bounded decoding: what is checked in an image's bytes before any pixel is decoded, and the decoders
that refuse damaged data instead of guessing. ``preprocessing.decode_rgb`` is the one caller.

Every accepted input decodes in time and memory bounded by its pixel count (``MAX_IMAGE_PIXELS``),
whatever else its file claims. The rules, each a fixed number (README, "Limits"):

- **JPEG**: at most ``MAX_JPEG_SCANS`` scans (a progressive file normally has 6-10; each scan is a
  full pass over the coefficients, so a file of 2,000 repeated scans cost a minute) and at most
  ``MAX_JPEG_SCAN_PIXELS`` scans x pixels (the same bound in work, for large frames); at most
  ``MAX_SEGMENTS`` marker segments. libjpeg's recoverable warnings (premature end of data, a scan
  without data, corrupt data, bogus progression) are errors: the file is refused with
  ``corrupt_image``, never half-decoded into a label. Greyscale and YCbCr JPEGs are decoded by
  simplejpeg (libjpeg-turbo, strict mode; the same pixels as Pillow's libjpeg-turbo, checked in the
  tests); other colour spaces (CMYK, YCCK) are checked by simplejpeg at 1/8 scale and decoded by Pillow.
- **PNG**: at most ``MAX_SEGMENTS`` chunks; a truncated stream is an error (Pillow's
  ``LOAD_TRUNCATED_IMAGES`` stays False). 16-bit greyscale becomes 8-bit by one integer rule:
  with an ``sBIT`` chunk declaring ``s`` significant bits (s < 16) the samples are read as s-bit
  values, ``0 .. 2**s - 1`` -> ``0 .. 255`` (larger values clip to 255); without one, the full range,
  ``0 .. 65535`` -> ``0 .. 255``. Both are ``(v * 255 + m // 2) // m`` with ``m = 2**s - 1``: never
  scaled by the image's own maximum. 16-bit colour PNGs keep the high byte of each sample
  (Pillow's fixed rule; ``sBIT`` is not applied there). Images with 16-bit samples, an alpha
  channel or a ``tRNS`` transparency chunk are limited to ``MAX_WIDE_PIXELS`` pixels: they decode to 2-4 bytes a pixel before
  conversion, so the same 40 MP would need far more memory than an 8-bit RGB frame.
- **BMP**: uncompressed (``BI_RGB``, ``BI_BITFIELDS``) only. Run-length-encoded BMPs (RLE4, RLE8)
  go through Pillow's pure-Python decoder (a 26 KB file took 4.5 s): refused, like embedded JPEG/PNG.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
from PIL import Image, ImageFile

from .errors import BadImageDimensions, CorruptImage, UnsupportedImage

#: A progressive JPEG from libjpeg has 10 scans (6 for greyscale); encoders that split the spectrum
#: further stay well under this. Above it the file is refused before decoding.
MAX_JPEG_SCANS = 64
#: Scans x pixels: each scan walks every coefficient block once. 400 M is 10 scans of a 40 MP
#: frame, or 64 scans up to 6.25 MP.
MAX_JPEG_SCAN_PIXELS = 400_000_000
#: Marker segments (JPEG) or chunks (PNG) per file: both are parsed one by one in Python, so a body
#: of millions of tiny ones would cost seconds. Real files have tens (PNG writers that split IDAT
#: into 8 KB chunks: ~550 for a 4.5 MB body).
MAX_SEGMENTS = 20_000
#: Pixel limit for images with 16-bit samples or an alpha channel (see the module docstring).
MAX_WIDE_PIXELS = 16_000_000

#: BMP compression values we decode: BI_RGB (0) and BI_BITFIELDS (3), both plain rows.
_BMP_PLAIN = {0: "BI_RGB", 3: "BI_BITFIELDS"}
_BMP_NAMES = {1: "RLE8", 2: "RLE4", 4: "embedded JPEG", 5: "embedded PNG", 6: "BI_ALPHABITFIELDS"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types with an alpha channel (grey+alpha, RGBA).
_PNG_ALPHA_TYPES = (4, 6)

# Pillow must refuse truncated data, never fill it in (a module-wide switch: set it back here).
ImageFile.LOAD_TRUNCATED_IMAGES = False


def sniff_format(data: bytes) -> str | None:
    """'PNG', 'JPEG', 'BMP' or 'DICOM' from the signature (the same tests Pillow's plugins use; DICOM's
    'DICM' after its 128-byte preamble), else None."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[128:132] == b"DICM":
        return "DICOM"
    return None


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What the bytes say before decoding: format, and for PNG its sample depth and sBIT."""

    format: str | None
    png_bit_depth: int | None = None
    png_colour_type: int | None = None
    png_significant_bits: int | None = None  # sBIT of a greyscale PNG, when present
    png_transparency: bool = False  # a tRNS chunk: converted through RGBA like an alpha channel
    jpeg_scans: int = 0

    @property
    def wide(self) -> bool:
        """16-bit samples or transparency: held at 2-4 bytes a pixel while decoding and converting."""
        return self.png_bit_depth == 16 or self.png_colour_type in _PNG_ALPHA_TYPES or self.png_transparency


def inspect(data: bytes) -> FileInfo:
    """Structural checks on the raw bytes (cheap, before any pixel work); raises a ClientError."""
    fmt = sniff_format(data)
    if fmt == "JPEG":
        return FileInfo("JPEG", jpeg_scans=_jpeg_scan_count(data))
    if fmt == "PNG":
        return _png_info(data)
    if fmt == "BMP":
        _check_bmp(data)
    return FileInfo(fmt)


def check_work(info: FileInfo, width: int, height: int) -> None:
    """Limits that need the frame size too (called once the header is read)."""
    pixels = width * height
    if info.format == "JPEG" and info.jpeg_scans * pixels > MAX_JPEG_SCAN_PIXELS:
        raise UnsupportedImage(
            f"the JPEG has {info.jpeg_scans} scans of {pixels:,} pixels; the limit is "
            f"{MAX_JPEG_SCAN_PIXELS:,} scans x pixels (e.g. {MAX_JPEG_SCAN_PIXELS // pixels} scans at this size)")
    if info.wide and pixels > MAX_WIDE_PIXELS:
        raise BadImageDimensions(
            f"image is {width}x{height} px ({pixels:,} pixels) with 16-bit samples or an alpha channel; "
            f"the limit for those is {MAX_WIDE_PIXELS:,} pixels")


# -- JPEG -------------------------------------------------------------------------------------------


def _jpeg_scan_count(data: bytes) -> int:
    """Count the SOS markers, walking the marker segments and skipping each scan's entropy-coded data.

    Refuses more than MAX_JPEG_SCANS scans or MAX_SEGMENTS segments, and a scan with no data.
    Where the structure cannot be followed, every later FF DA pair counts as a scan (an
    over-count only ever refuses; the decoder judges the rest).
    """
    n = len(data)
    i, scans, segments = 2, 0, 0
    while i + 4 <= n:
        if data[i] != 0xFF:
            scans += data.count(b"\xff\xda", i)  # lost the structure: count conservatively
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
            continue
        segments += 1
        if segments > MAX_SEGMENTS:
            raise UnsupportedImage(f"the JPEG has more than {MAX_SEGMENTS:,} marker segments")
        length = (data[i + 2] << 8) | data[i + 3]
        i += 2 + length
        if marker != 0xDA:
            continue
        scans += 1
        if scans > MAX_JPEG_SCANS:
            raise UnsupportedImage(f"the JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes); "
                                   f"the limit is {MAX_JPEG_SCANS}")
        # Entropy-coded data runs to the next marker that is not FF 00 (stuffing) or RSTn.
        start = j = i
        while True:
            j = data.find(b"\xff", j)
            if j < 0 or j + 1 >= n:
                i = n
                break
            nxt = data[j + 1]
            if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed FF, restart marker: still the scan
                j += 2
                continue
            if nxt == 0xFF:  # fill byte before a marker
                j += 1
                continue
            if j == start:
                raise CorruptImage("the JPEG has a scan with no data")
            i = j
            break
    if scans > MAX_JPEG_SCANS:
        raise UnsupportedImage(f"the JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes); "
                               f"the limit is {MAX_JPEG_SCANS}")
    return scans


def decode_jpeg(data: bytes, header_img: Image.Image) -> Image.Image:
    """Decode strictly: any libjpeg warning (premature end, corrupt data, empty scan) is CorruptImage.

    ``header_img`` is Pillow's lazily opened image (its size and EXIF are used; its pixels are only
    decoded for colour spaces simplejpeg is not used for, after the strict check).
    """
    import simplejpeg  # imported here: the module costs nothing for PNG-only callers

    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise CorruptImage(f"the JPEG header could not be read ({_short(exc)})") from None
    if (width, height) != header_img.size:
        raise CorruptImage("the JPEG's frame size is inconsistent")
    if colourspace in ("Gray", "YCbCr") and header_img.mode in ("L", "RGB"):
        img = Image.fromarray(_strict_pixels(data, header_img.mode), mode=header_img.mode)
        img.info["exif_orientation"] = _exif_orientation(header_img)
        return img
    # CMYK, YCCK, ...: the strict check at 1/8 scale, then Pillow's decoder (which handles Adobe CMYK).
    try:
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colourspace in ("CMYK", "YCCK") else "GRAY",
                               min_factor=8, strict=True)
    except ValueError as exc:
        raise CorruptImage(f"the JPEG data is corrupt or truncated ({_short(exc)})") from None
    return header_img


def decode_jpeg_pixels(data: bytes, *, width: int, height: int, samples: int) -> np.ndarray:
    """A JPEG codestream from another container (a DICOM frame) -> uint8 (H, W) or (H, W, 3), under every
    limit an image/jpeg body meets (scans, segments, strict decoding); its frame must be the size and
    component count the container declares."""
    import io

    if sniff_format(data) != "JPEG":
        raise CorruptImage("the encapsulated frame is not a JPEG codestream")
    info = inspect(data)
    try:
        header_img = Image.open(io.BytesIO(data), formats=("JPEG",))
    except Exception as exc:  # Pillow raises many types on broken headers
        raise CorruptImage(f"the encapsulated JPEG header could not be read ({type(exc).__name__})") from None
    if header_img.size != (width, height):
        raise CorruptImage(f"the encapsulated JPEG is {header_img.size[0]}x{header_img.size[1]} px; "
                           f"the DICOM header declares {width}x{height}")
    if header_img.mode != ("L" if samples == 1 else "RGB"):
        raise CorruptImage(f"the encapsulated JPEG has {len(header_img.getbands())} component(s); "
                           f"the DICOM header declares {samples}")
    check_work(info, width, height)
    import simplejpeg

    try:
        colourspace = simplejpeg.decode_jpeg_header(data)[2]
    except ValueError as exc:
        raise CorruptImage(f"the encapsulated JPEG header could not be read ({_short(exc)})") from None
    if colourspace not in ("Gray", "YCbCr"):  # e.g. an Adobe RGB-transform JPEG: Pillow's decoder, as for bodies
        return np.asarray(decode_jpeg(data, header_img))
    return _strict_pixels(data, header_img.mode)


def _strict_pixels(data: bytes, mode: str) -> np.ndarray:
    """simplejpeg's strict decode of a greyscale ('L') or YCbCr ('RGB') JPEG: (H, W) or (H, W, 3) uint8."""
    import simplejpeg

    target = "GRAY" if mode == "L" else "RGB"
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace=target, strict=True)
    except ValueError as exc:
        raise CorruptImage(f"the JPEG data is corrupt or truncated ({_short(exc)})") from None
    return arr[..., 0] if target == "GRAY" else arr


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112)
    except Exception:  # broken EXIF: no orientation, as ImageOps.exif_transpose treats it
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


#: EXIF orientation -> the transposition that makes the frame upright (as ImageOps.exif_transpose).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENT.get(orientation)
    return img.transpose(method) if method is not None else img


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__


# -- PNG --------------------------------------------------------------------------------------------


def _png_info(data: bytes) -> FileInfo:
    """IHDR depth and colour type, and the sBIT chunk of a greyscale image; counts the chunks."""
    n, i, chunks = len(data), 8, 0
    depth = colour = sbit = None
    trns = False
    while i + 8 <= n:
        length = struct.unpack_from(">I", data, i)[0]
        kind = data[i + 4 : i + 8]
        body = data[i + 8 : i + 8 + length]
        chunks += 1
        if chunks > MAX_SEGMENTS:
            raise UnsupportedImage(f"the PNG has more than {MAX_SEGMENTS:,} chunks")
        if kind == b"IHDR" and len(body) >= 10:
            depth, colour = body[8], body[9]
        elif kind == b"sBIT" and colour == 0 and len(body) >= 1 and depth == 16:
            sbit = body[0]
        elif kind == b"tRNS":
            trns = True
        elif kind == b"IEND":
            break
        i += 12 + length
    if sbit is not None and not 1 <= sbit <= 16:
        raise CorruptImage(f"the PNG's sBIT chunk declares {sbit} significant bits for 16-bit samples")
    return FileInfo("PNG", png_bit_depth=depth, png_colour_type=colour, png_significant_bits=sbit,
                    png_transparency=trns)


def grey16_to_l(img: Image.Image, significant_bits: int | None) -> Image.Image:
    """A 16-bit greyscale image -> 8-bit 'L' by the fixed integer rule (module docstring).

    Row blocks through a 65,536-entry table: no float copy of the frame, at most one extra block.
    """
    bits = significant_bits if significant_bits and significant_bits < 16 else 16
    top = (1 << bits) - 1
    lut = ((np.minimum(np.arange(65536, dtype=np.uint32), top) * 255 + top // 2) // top).astype(np.uint8)
    width, height = img.size
    out = np.empty((height, width), dtype=np.uint8)
    step = max(1, (1 << 22) // max(width, 1))  # ~4 M pixels per block
    for y in range(0, height, step):
        block = np.asarray(img.crop((0, y, width, min(height, y + step))))
        if block.dtype != np.uint16:  # big-endian I;16B, or 32-bit 'I'
            block = np.clip(block, 0, 65535).astype(np.uint16)
        out[y : y + block.shape[0]] = lut[block]
    return Image.fromarray(out, mode="L")


def is_grey16(img: Image.Image) -> bool:
    return img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I")


# -- BMP --------------------------------------------------------------------------------------------


def _check_bmp(data: bytes) -> None:
    """Only plain (uncompressed) BMP rows: refuse RLE and embedded JPEG/PNG before decoding."""
    if len(data) < 18:
        return  # Pillow refuses it as truncated
    header_size = struct.unpack_from("<I", data, 14)[0]
    if header_size < 40 or len(data) < 34:
        return  # OS/2 BITMAPCOREHEADER (12 bytes): always uncompressed
    compression = struct.unpack_from("<I", data, 30)[0]
    if compression not in _BMP_PLAIN:
        name = _BMP_NAMES.get(compression, f"compression {compression}")
        raise UnsupportedImage(f"compressed BMP ({name}) is not decoded; send PNG, JPEG or an uncompressed BMP")
