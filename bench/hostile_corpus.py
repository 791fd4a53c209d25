"""The hostile-image corpus of issue 10, generated in memory: small files that cost a decoder time or
memory out of proportion to their size, damaged files that a lenient decoder would still label, and
high-bit-depth data. Each case names the status and error code the API must answer.

Used by tests/robustness/test_hostile_images.py (status, generous time and memory bounds) and by
``python -m bench --only hostile`` (wall time and peak RSS of each case against the request budget).
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from classifier.decoding import MAX_JPEG_SCANS, MAX_SEGMENTS, MAX_WIDE_PIXELS
from classifier.dicom import MAX_ELEMENTS, MAX_RLE_DECODED_BYTES, MAX_RLE_FRAME_BYTES
from classifier.preprocessing import MAX_IMAGE_PIXELS

#: Sides just under the pixel limits (square frames).
SIDE_40MP = int(MAX_IMAGE_PIXELS**0.5) - 4  # 6320 for 40 MP
SIDE_WIDE = int(MAX_WIDE_PIXELS**0.5) - 4
SIDE_RLE = int(MAX_RLE_DECODED_BYTES**0.5) - 4


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    content_type: str
    status: int
    code: str | None  # None for a prediction (200)
    heavy: bool = False  # a near-limit decode: the slow end of the budget


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _checker(side: int, cell: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return (((xx // cell + yy // cell) % 2) * 160 + 40).astype(np.uint8)


def _texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.gamma(2.0, 40.0, size=(height, width)), 0, 255).astype(np.uint8)


# -- JPEG ---------------------------------------------------------------------------------------------


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment; a scan's end includes its entropy-coded data."""
    i, out = 2, []
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:
            out.append((marker, i, i + 2))
            break
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        j = i + 2 + length
        if marker == 0xDA:
            while True:
                j = data.find(b"\xff", j)
                if data[j + 1] == 0 or 0xD0 <= data[j + 1] <= 0xD7:
                    j += 2
                    continue
                break
        out.append((marker, i, j))
        i = j
    return out


def progressive_jpeg(side: int, *, mode: str = "L") -> bytes:
    return _encode(Image.fromarray(_checker(side)).convert(mode), "JPEG", quality=90, progressive=True)


def scan_bomb(side: int, repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` more times (the issue's 67-second file)."""
    data = progressive_jpeg(side)
    last = [s for s in jpeg_segments(data) if s[0] == 0xDA][-1]
    return data[: last[2]] + data[last[1] : last[2]] * repeats + data[last[2] :]


def jpeg_cut_with_eoi(fraction: float = 0.3) -> bytes:
    """A real-looking JPEG cut at ``fraction`` with an EOI appended: libjpeg warns and fills in grey."""
    data = _encode(Image.fromarray(_texture(400, 300)).convert("RGB"), "JPEG", quality=90)
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


def jpeg_empty_scan() -> bytes:
    """A baseline JPEG whose scan has no entropy-coded data at all: SOS, then EOI."""
    data = _encode(Image.fromarray(_texture(200, 160)), "JPEG", quality=90)
    sos = [s for s in jpeg_segments(data) if s[0] == 0xDA][0]
    header_end = sos[1] + 2 + struct.unpack(">H", data[sos[1] + 2 : sos[1] + 4])[0]
    return data[:header_end] + b"\xff\xd9"


def jpeg_many_segments(n: int = MAX_SEGMENTS + 10) -> bytes:
    """Tens of thousands of empty COM segments before the frame: each is parsed in Python."""
    data = _encode(Image.fromarray(_texture(64, 64)), "JPEG", quality=90)
    return data[:2] + b"\xff\xfe\x00\x02" * n + data[2:]


# -- PNG ----------------------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


#: colour type -> samples per pixel
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_bytes(width: int, height: int, colour_type: int, bit_depth: int, rows: Callable[[int], bytes],
              *, extra_chunks: bytes = b"", idat_size: int = 1 << 20) -> bytes:
    """A PNG from raw (unfiltered) rows, written chunk by chunk (Pillow cannot write 16-bit colour)."""
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(b"\x00" + rows(y)) for y in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    plte = _chunk(b"PLTE", bytes(range(256)) * 3) if colour_type == 3 else b""
    idats = b"".join(_chunk(b"IDAT", idat[i : i + idat_size]) for i in range(0, len(idat), idat_size))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra_chunks + plte + idats + _chunk(b"IEND", b"")


def png_zlib_bomb(side: int, colour_type: int, bit_depth: int = 8, *, trns: bool = False) -> bytes:
    """side x side of one flat value (a few hundred KB for tens of MB of pixels) in any colour type."""
    row = bytes([0x80]) * (side * _SAMPLES[colour_type] * bit_depth // 8)
    extra = _chunk(b"tRNS", bytes(range(256))) if trns else b""
    if trns and colour_type != 3:
        extra = _chunk(b"tRNS", b"\x00\x80" * (3 if colour_type == 2 else 1))
    data = png_bytes(side, side, colour_type, bit_depth, lambda _y: row)
    if not extra:
        return data
    at = data.index(b"IDAT") - 4  # tRNS goes after PLTE, before the image data
    return data[:at] + extra + data[at:]


def png16_grey(values: np.ndarray, *, sbit: int | None = None) -> bytes:
    """A 16-bit greyscale PNG holding ``values`` exactly (optionally with an sBIT chunk)."""
    arr = values.astype(">u2")
    extra = _chunk(b"sBIT", bytes([sbit])) if sbit is not None else b""
    return png_bytes(arr.shape[1], arr.shape[0], 0, 16, lambda y: arr[y].tobytes(), extra_chunks=extra)


def twelve_bit(width: int = 96, height: int = 80) -> np.ndarray:
    """12-bit data (0..4095) as a scanner exports it, unscaled, into a 16-bit file."""
    return (_texture(width, height).astype(np.uint32) * 4095 // 255).astype(np.uint16)


def png_many_chunks(n: int = MAX_SEGMENTS + 10) -> bytes:
    """A small image whose data is split into one-byte IDAT chunks (plus empty tEXt chunks)."""
    data = png_bytes(64, 64, 0, 8, lambda _y: bytes(64), idat_size=1)
    filler = _chunk(b"tEXt", b"k\x00v") * max(0, n - data.count(b"IDAT"))
    return data[:33] + filler + data[33:]


# -- BMP ----------------------------------------------------------------------------------------------


def bmp_rle8_bomb(width: int = 6000, height: int = 6000) -> bytes:
    """An RLE8 BMP: each row one run-length pair per 255 pixels, decoded by Pillow in pure Python."""
    row = b"\xff\x10" * (width // 255) + bytes([width % 255, 0x10]) + b"\x00\x00"
    pixels = row * height + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def bmp_rle4(width: int = 200, height: int = 200) -> bytes:
    data = bytearray(bmp_rle8_bomb(width, height))
    struct.pack_into("<HI", data, 28, 4, 2)  # 4 bits a pixel, BI_RLE4
    return bytes(data)


def bmp_short_data(width: int = 4000, height: int = 4000) -> bytes:
    """An uncompressed 24-bit BMP header for 4000x4000 with a few rows of data: truncated."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 3000, 0, 0, 54) + info + bytes(3000)


# -- DICOM --------------------------------------------------------------------------------------------


def _dicom(pixels: np.ndarray, **kw) -> bytes:
    from bench import dicom_factory

    return dicom_factory.dicom(pixels, **kw)


def _set(**values):
    def edit(ds):
        for key, value in values.items():
            setattr(ds, key, value)
    return edit


def dicom_declared(**values) -> bytes:
    """A small valid file whose header then declares other sizes (rows, columns, frames, bits): a tiny
    body claiming gigabytes."""
    return _dicom(_texture(64, 64), extra=_set(**values))


def dicom_jpeg(jpeg: bytes, width: int, height: int, *, colour: bool = False) -> bytes:
    """A JPEG Baseline DICOM file around these JPEG bytes (a bomb or a damaged frame)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    def put(ds):
        ds.Rows, ds.Columns = height, width
        ds.PixelData = encapsulate([jpeg])
        if colour:
            ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0

    return _dicom(_texture(64, 64), syntax=JPEGBaseline8Bit, extra=put)


def dicom_rle(pixels: np.ndarray) -> bytes:
    from pydicom.uid import RLELossless

    return _dicom(pixels, syntax=RLELossless)


def dicom_rle_short_runs(max_bytes: int = MAX_RLE_FRAME_BYTES - 1000) -> bytes:
    """The most RLE runs a body can hold (2-byte runs of 2 pixels): pydicom's decoder loops per run."""
    rows = max_bytes // 2000
    return dicom_rle(np.tile(np.array([0, 0, 255, 255], np.uint8), (rows, 500)))


def dicom_rle_cut() -> bytes:
    """An RLE frame whose segment is cut to a tenth: decoded short."""
    from pydicom.encaps import encapsulate, generate_frames

    def cut(ds):
        (frame,) = list(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = encapsulate([frame[: len(frame) // 10 + (len(frame) // 10) % 2]])

    from pydicom.uid import RLELossless

    return _dicom(_texture(2000, 1500), syntax=RLELossless, extra=cut)


def _before_pixel_data(data: bytes, insert: bytes) -> bytes:
    at = data.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data, explicit VR little endian
    return data[:at] + insert + data[at:]


def dicom_element_flood(max_bytes: int = 4_400_000) -> bytes:
    """Hundreds of thousands of tiny private elements before the pixels: each is parsed in Python."""
    n = max_bytes // 12
    per_group = 0xE000  # elements 1000..EFFF of the odd (private) groups 7FD1..7FDD, in ascending order
    elems = b"".join(struct.pack("<HH2sH", 0x7FD1 + 2 * (i // per_group), 0x1000 + i % per_group, b"LO", 4)
                     + b"ABCD" for i in range(n))
    return _before_pixel_data(_dicom(_texture(96, 80)), elems)


def dicom_deep_nesting(depth: int = 100_000) -> bytes:
    """Sequences nested 100,000 deep (undefined lengths, no delimiters) before the pixels."""
    one = struct.pack("<HH2sHI", 0x7FDF, 0x0010, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    return _before_pixel_data(_dicom(_texture(96, 80)), one * depth)


def event(case: Case, data: bytes) -> dict:
    """The REST proxy event API Gateway would send for this case (raw body, or JSON for BMP)."""
    import base64
    import json
    import uuid

    from classifier.local_api import proxy_event

    if case.content_type == "json":
        body, ctype = json.dumps({"image": base64.b64encode(data).decode("ascii")}).encode(), "application/json"
    else:
        body, ctype = data, case.content_type
    return proxy_event("POST", "/predict", [("Host", "hostile.local"), ("Content-Type", ctype)], body,
                       request_id=str(uuid.uuid4()))


# -- the corpus ---------------------------------------------------------------------------------------

PNG, JPEG, DICOM = "image/png", "image/jpeg", "application/dicom"
CORPUS: list[Case] = [
    # progressive-JPEG work
    Case("jpeg-scan-bomb-2000-repeats-40mp", lambda: scan_bomb(SIDE_40MP, 2000), JPEG, 400, "unsupported_image"),
    Case(f"jpeg-{MAX_JPEG_SCANS + 1}-scans-small", lambda: scan_bomb(512, MAX_JPEG_SCANS + 1 - 6), JPEG, 400,
         "unsupported_image"),
    Case("jpeg-30-scans-40mp-over-scan-work", lambda: scan_bomb(SIDE_40MP, 24), JPEG, 400, "unsupported_image"),
    Case("jpeg-repeated-scans-1mp-bogus-progression", lambda: scan_bomb(1000, 40), JPEG, 400, "corrupt_image"),
    Case("jpeg-progressive-40mp-grey", lambda: progressive_jpeg(SIDE_40MP), JPEG, 200, None, heavy=True),
    Case("jpeg-progressive-40mp-rgb", lambda: progressive_jpeg(SIDE_40MP, mode="RGB"), JPEG, 200, None, heavy=True),
    Case("jpeg-baseline-40mp-rgb", lambda: _encode(Image.fromarray(_checker(SIDE_40MP)).convert("RGB"), "JPEG",
                                                   quality=90), JPEG, 200, None, heavy=True),
    Case("jpeg-many-segments", jpeg_many_segments, JPEG, 400, "unsupported_image"),
    # damaged JPEG that a lenient decoder fills in
    Case("jpeg-cut-30pc-with-eoi", jpeg_cut_with_eoi, JPEG, 400, "corrupt_image"),
    Case("jpeg-empty-scan", jpeg_empty_scan, JPEG, 400, "corrupt_image"),
    # high bit depth
    Case("png16-grey-12bit-with-sbit", lambda: png16_grey(twelve_bit(), sbit=12), PNG, 200, None),
    Case("png16-grey-12bit-no-sbit", lambda: png16_grey(twelve_bit()), PNG, 200, None),
    Case("png16-grey-40mp", lambda: png_zlib_bomb(SIDE_40MP, 0, 16), PNG, 422, "bad_image_dimensions"),
    Case("png16-grey-at-wide-limit", lambda: png_zlib_bomb(SIDE_WIDE, 0, 16), PNG, 200, None, heavy=True),
    Case("png16-rgb-at-wide-limit", lambda: png_zlib_bomb(SIDE_WIDE, 2, 16), PNG, 200, None, heavy=True),
    Case("png16-rgba-at-wide-limit", lambda: png_zlib_bomb(SIDE_WIDE, 6, 16), PNG, 200, None, heavy=True),
    Case("png-sbit-zero", lambda: png16_grey(twelve_bit(), sbit=0), PNG, 400, "corrupt_image"),
    # zlib bombs in each colour type, at the limit that applies to it
    Case("png-zlib-bomb-grey-40mp", lambda: png_zlib_bomb(SIDE_40MP, 0), PNG, 200, None, heavy=True),
    Case("png-zlib-bomb-rgb-40mp", lambda: png_zlib_bomb(SIDE_40MP, 2), PNG, 200, None, heavy=True),
    Case("png-zlib-bomb-palette-40mp", lambda: png_zlib_bomb(SIDE_40MP, 3), PNG, 200, None, heavy=True),
    Case("png-zlib-bomb-palette-trns-40mp", lambda: png_zlib_bomb(SIDE_40MP, 3, trns=True), PNG, 422,
         "bad_image_dimensions"),
    Case("png-zlib-bomb-palette-trns-at-wide-limit", lambda: png_zlib_bomb(SIDE_WIDE, 3, trns=True), PNG, 200, None,
         heavy=True),
    Case("png-zlib-bomb-grey-trns-40mp", lambda: png_zlib_bomb(SIDE_40MP, 0, trns=True), PNG, 422,
         "bad_image_dimensions"),
    Case("png-zlib-bomb-grey-alpha-40mp", lambda: png_zlib_bomb(SIDE_40MP, 4), PNG, 422, "bad_image_dimensions"),
    Case("png-zlib-bomb-rgba-40mp", lambda: png_zlib_bomb(SIDE_40MP, 6), PNG, 422, "bad_image_dimensions"),
    Case("png-zlib-bomb-grey-alpha-at-wide-limit", lambda: png_zlib_bomb(SIDE_WIDE, 4), PNG, 200, None, heavy=True),
    Case("png-zlib-bomb-rgba-at-wide-limit", lambda: png_zlib_bomb(SIDE_WIDE, 6), PNG, 200, None, heavy=True),
    Case("png-many-chunks", png_many_chunks, PNG, 400, "unsupported_image"),
    # BMP
    Case("bmp-rle8-bomb", bmp_rle8_bomb, "json", 400, "unsupported_image"),
    Case("bmp-rle4", bmp_rle4, "json", 400, "unsupported_image"),
    Case("bmp-truncated-rows", bmp_short_data, "json", 400, "corrupt_image"),
    # DICOM: sizes from the header are checked before any pixel; JPEG frames meet the JPEG limits
    Case("dicom-declares-65535x65535", lambda: dicom_declared(Rows=65535, Columns=65535), DICOM, 422,
         "bad_image_dimensions"),
    Case("dicom-declares-2147483647-frames", lambda: dicom_declared(NumberOfFrames=2**31 - 1), DICOM, 422,
         "bad_image_dimensions"),
    Case("dicom-declares-40mp-holds-8kb", lambda: dicom_declared(Rows=SIDE_40MP, Columns=SIDE_40MP), DICOM, 400,
         "corrupt_image"),
    Case("dicom-16bit-declares-40mp", lambda: dicom_declared(Rows=SIDE_40MP, Columns=SIDE_40MP, BitsAllocated=16,
                                                              BitsStored=16), DICOM, 422, "bad_image_dimensions"),
    Case("dicom-rgb-declares-3000-frames-of-40mp-holds-4kb",
         lambda: dicom_declared(Rows=SIDE_40MP, Columns=SIDE_40MP, NumberOfFrames=3000, SamplesPerPixel=3,
                                PhotometricInterpretation="RGB", PlanarConfiguration=0), DICOM, 400, "corrupt_image"),
    Case("dicom-jpeg-scan-bomb-2000-repeats-40mp", lambda: dicom_jpeg(scan_bomb(SIDE_40MP, 2000), SIDE_40MP,
                                                                     SIDE_40MP), DICOM, 400, "unsupported_image"),
    Case("dicom-jpeg-cut-30pc-with-eoi", lambda: dicom_jpeg(jpeg_cut_with_eoi(), 400, 300, colour=True), DICOM, 400,
         "corrupt_image"),
    Case("dicom-jpeg-baseline-40mp", lambda: dicom_jpeg(_encode(Image.fromarray(_checker(SIDE_40MP)), "JPEG",
                                                                quality=90), SIDE_40MP, SIDE_40MP), DICOM, 200,
         None, heavy=True),
    Case("dicom-rle-40mp-flat", lambda: dicom_rle(np.full((SIDE_40MP, SIDE_40MP), 128, np.uint8)), DICOM, 400,
         "unsupported_image"),
    Case("dicom-rle-flat-at-the-sample-limit", lambda: dicom_rle(np.full((SIDE_RLE, SIDE_RLE), 128, np.uint8)), DICOM,
         200, None, heavy=True),
    Case("dicom-rle-4mb-of-short-runs", lambda: dicom_rle_short_runs(4_400_000), DICOM, 400, "unsupported_image"),
    Case("dicom-rle-short-runs-at-the-size-limit", dicom_rle_short_runs, DICOM, 200, None, heavy=True),
    Case("dicom-rle-segment-cut", dicom_rle_cut, DICOM, 400, "corrupt_image"),
    Case("dicom-element-flood-4mb", dicom_element_flood, DICOM, 400, "unsupported_image"),
    Case("dicom-elements-at-the-limit", lambda: dicom_element_flood(12 * (MAX_ELEMENTS - 100)), DICOM, 200, None,
         heavy=True),
    Case("dicom-sequences-nested-100000-deep", dicom_deep_nesting, DICOM, 400, "corrupt_image"),
]
