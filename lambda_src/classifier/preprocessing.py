"""Image bytes -> the RGB array the model takes. The one preprocessing: training imports it too.

Changing what this module returns for any input changes the model's input
distribution, so bump ``PREPROCESSING_ID``: a model trained with another id is
refused at load (see ``model_card``).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import decoding
from .errors import BadImageDimensions, ClientError, CorruptImage, ImageTooSmall, NotAnImage

#: Recorded in model.json by training and checked by the serving engine.
PREPROCESSING_ID = "rgb-squash-bilinear-float255-v1"

#: Formats we decode. Anything else (GIF, TIFF, WebP, ...) is refused up front.
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP")

#: Decompression-bomb guard: 40 megapixels (e.g. 8000 x 5000). A BUSI frame is
#: under 1 MP; 40 MP decodes to ~120 MB of RGB, well inside the Lambda's memory.
MAX_IMAGE_PIXELS = 40_000_000
#: Smallest side we accept: below this there is no lesion to see.
MIN_SIDE = 32
#: Longest/shortest side. Ultrasound frames are about 1:1 to 2:1; a 100000x1
#: "image" is not one.
MAX_ASPECT_RATIO = 8.0

#: The single resize filter, used for training and serving alike.
RESAMPLE = Image.Resampling.BILINEAR

# Pillow's own guard stays on, at our stated limit (it warns above 1x and
# raises above 2x; decode_rgb turns the warning into an error as well).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def check_dimensions(width: int, height: int) -> None:
    """Refuse sizes no ultrasound frame has, before any pixel is decoded."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageTooSmall(
            f"image is {width}x{height} px; each side must be at least {MIN_SIDE} px"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise BadImageDimensions(
            f"image is {width}x{height} px ({width * height:,} pixels); "
            f"the limit is {MAX_IMAGE_PIXELS:,} pixels"
        )
    aspect = max(width, height) / min(width, height)
    if aspect > MAX_ASPECT_RATIO:
        raise BadImageDimensions(
            f"image is {width}x{height} px (aspect ratio {aspect:.1f}:1); "
            f"the limit is {MAX_ASPECT_RATIO:g}:1"
        )


def _open(data: bytes) -> Image.Image:
    if not data:
        raise NotAnImage("the body is empty; send a PNG, JPEG or BMP image")
    info = decoding.inspect(data)  # structural limits, before Pillow parses anything
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageDimensions(f"image exceeds {MAX_IMAGE_PIXELS:,} pixels") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage("the data is not a PNG, JPEG or BMP image") from exc
    except Exception as exc:  # Pillow raises many types on broken headers
        raise CorruptImage(f"the image header could not be read ({type(exc).__name__})") from exc
    img.info["decoding"] = info
    img.info["decoding_data"] = data  # the same bytes object, not a copy: the JPEG decoder reads it
    return img


def _load_first_frame(img: Image.Image) -> Image.Image:
    """Decode the first frame, upright (EXIF orientation). Truncated or corrupt data is an error."""
    info = img.info.get("decoding") or decoding.FileInfo(img.format)
    data = img.info.pop("decoding_data", None)
    decoding.check_work(info, *img.size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)
            if img.format == "JPEG":
                if data is not None:
                    decoded = decoding.decode_jpeg(data, img)
                    if decoded is not img:  # simplejpeg's pixels; the orientation comes from the EXIF
                        return decoding.apply_orientation(decoded, decoded.info.pop("exif_orientation", 1))
            img.load()
            # EXIF orientation, so a phone photo of a screen is upright.
            out = ImageOps.exif_transpose(img)
            out.info["decoding"] = info
            return out
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageDimensions(f"image exceeds {MAX_IMAGE_PIXELS:,} pixels") from exc
    except ClientError:
        raise
    except Exception as exc:  # truncated data, bad CRC, broken EXIF, ...
        raise CorruptImage(f"the image data is corrupt or truncated ({type(exc).__name__})") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Grey, 16-bit, palette, alpha, CMYK -> 8-bit RGB. Alpha is composited onto black.

    16-bit greyscale: the fixed integer rule in ``decoding`` (PNG sBIT, else 65535 -> 255).
    """
    if decoding.is_grey16(img):
        info = img.info.get("decoding")
        return decoding.grey16_to_l(img, info.png_significant_bits if info else None).convert("RGB")
    if img.mode == "F":
        raise CorruptImage("floating-point images are not decoded")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def decode_rgb(data: bytes) -> Image.Image:
    """Decode PNG/JPEG/BMP bytes into an upright 8-bit RGB image, or raise a ClientError.

    Bounded whatever the file claims: see ``classifier.decoding`` for the limits and rules.
    """
    img = _open(data)
    check_dimensions(*img.size)
    img = _load_first_frame(img)
    check_dimensions(*img.size)
    try:
        return to_rgb(img)
    except ClientError:
        raise
    except Exception as exc:
        raise CorruptImage(f"the image could not be converted to RGB ({type(exc).__name__})") from exc


def resize_for_model(img: Image.Image, size: int) -> np.ndarray:
    """RGB image -> float32 array (size, size, 3) in [0, 255], squashed to a square.

    The backbone's own normalisation lives inside the model graph, so this is
    all the preprocessing there is.
    """
    resized = img.resize((size, size), RESAMPLE)
    return np.asarray(resized, dtype=np.float32)


def preprocess(data: bytes, size: int) -> np.ndarray:
    """Image bytes -> model input (size, size, 3) float32. Raises a ClientError on bad input."""
    return resize_for_model(decode_rgb(data), size)


def preprocess_file(path, size: int) -> np.ndarray:
    """Training's entry point: the same bytes-in path the server uses."""
    with open(path, "rb") as fh:
        return preprocess(fh.read(), size)
