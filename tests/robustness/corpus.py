"""Hostile and unusual request bodies, built in memory: every kind the robustness issue lists.

Each builder returns bytes; none needs ../shared.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

# -- well-formed images -------------------------------------------------------


def _speckle(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    blob = np.exp(-(((xx - width / 2) / (width / 5 + 1)) ** 2 + ((yy - height / 2) / (height / 5 + 1)) ** 2))
    return np.clip(rng.gamma(2.0, 40.0, size=(height, width)) * (1 - 0.6 * blob), 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def grey_image(width: int = 96, height: int = 80, seed: int = 0) -> Image.Image:
    return Image.fromarray(_speckle(width, height, seed), mode="L")


def dicom(width: int = 96, height: int = 80, *, syntax: str = "native", seed: int = 0, **kwargs) -> bytes:
    """An ultrasound DICOM file (bench/dicom_factory): native, "jpeg" (Baseline, YBR_FULL_422) or "rle";
    multi-frame with ``frames=n``."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

    from bench import dicom_factory

    frames = kwargs.pop("frames", 1)
    colour = syntax == "jpeg"
    pixels = [dicom_factory.frame(seed + i, width, height, colour=colour) for i in range(frames)]
    uid = {"native": ExplicitVRLittleEndian, "jpeg": JPEGBaseline8Bit, "rle": RLELossless}[syntax]
    return dicom_factory.dicom(pixels if frames > 1 else pixels[0], syntax=uid, **kwargs)


def png(width: int = 96, height: int = 80, mode: str = "RGB", seed: int = 0) -> bytes:
    return encode(grey_image(width, height, seed).convert(mode), "PNG")


def jpeg(width: int = 96, height: int = 80, mode: str = "RGB", seed: int = 0, **kwargs) -> bytes:
    return encode(grey_image(width, height, seed).convert(mode), "JPEG", quality=90, **kwargs)


def bmp(width: int = 96, height: int = 80, seed: int = 0) -> bytes:
    return encode(grey_image(width, height, seed).convert("RGB"), "BMP")


def cmyk_jpeg(width: int = 96, height: int = 80) -> bytes:
    return encode(grey_image(width, height).convert("RGB").convert("CMYK"), "JPEG", quality=90)


def png16_grey(width: int = 96, height: int = 80) -> bytes:
    arr = _speckle(width, height).astype(np.uint16) * 257
    return encode(Image.fromarray(arr), "PNG")  # uint16 -> mode I;16


def png16_rgb(width: int = 64, height: int = 48) -> bytes:
    """48-bit RGB PNG (Pillow cannot write one, so the chunks are written here)."""
    arr = np.repeat((_speckle(width, height).astype(">u2") * 257)[..., None], 3, axis=2)
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(height))
    return raw_png(width, height, bit_depth=16, colour_type=2, idat=zlib.compress(raw))


def palette_png_with_transparency(width: int = 96, height: int = 80) -> bytes:
    img = grey_image(width, height).convert("P")
    return encode(img, "PNG", transparency=0)


def rgba_png(width: int = 96, height: int = 80) -> bytes:
    img = grey_image(width, height).convert("RGBA")
    img.putalpha(128)
    return encode(img, "PNG")


def exif_rotated_jpeg(width: int = 120, height: int = 64, orientation: int = 6) -> bytes:
    """A landscape JPEG whose EXIF says 'rotate to display' (6: 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(grey_image(width, height).convert("RGB"), "JPEG", quality=90, exif=exif.tobytes())


def broken_exif_jpeg() -> bytes:
    """A JPEG whose APP1 EXIF block is garbage."""
    good = jpeg()
    app1 = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\xff\xff" + b"\xde\xad" * 20
    return good[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + good[2:]


def progressive_jpeg() -> bytes:
    return jpeg(progressive=True)


def animated_gif() -> bytes:
    frames = [grey_image(64, 64, seed=i).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def animated_png() -> bytes:
    frames = [grey_image(64, 64, seed=i).convert("RGB") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:], duration=50)
    return buf.getvalue()


def other_format(fmt: str) -> bytes:
    return encode(grey_image(64, 64).convert("RGB"), fmt)


# -- crafted headers ----------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0, idat: bytes | None = None) -> bytes:
    """A PNG with exactly the IHDR given (valid CRCs), whatever the pixel data really holds."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """Declares 10 gigapixels; carries a few bytes."""
    return raw_png(width, height)


def png_zlib_bomb(side: int = 12_000) -> bytes:
    """A real deflate bomb: side x side grey zeros (144 MP for the default) compressed to ~140 KB."""
    row = b"\x00" * (side + 1)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return raw_png(side, side, idat=idat)


def jpeg_bomb_header(width: int = 65_000, height: int = 65_000) -> bytes:
    """A valid small JPEG with its SOF frame size patched to 65000 x 65000."""
    data = bytearray(jpeg(64, 64))
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            raise ValueError("unexpected JPEG layout")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker found")


# -- damage -------------------------------------------------------------------


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


def corrupted(data: bytes, *, seed: int, flips: int = 8, skip_header: int = 16) -> bytes:
    """Overwrite ``flips`` random bytes past the signature."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for pos in rng.integers(skip_header, len(out), size=flips):
        out[pos] = int(rng.integers(0, 256))
    return bytes(out)


# -- multipart ----------------------------------------------------------------


def multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "----fuzzboundary7MA4YWxk") -> bytes:
    """RFC 7578 form body; each field is (name, content, filename or None)."""
    out = b""
    for name, content, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def multipart_typed(name: str, content: bytes, content_type: str, boundary: str = "----fuzzboundary7MA4YWxk") -> bytes:
    """A form with one file field whose part declares ``content_type`` (as a browser does from the extension)."""
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
