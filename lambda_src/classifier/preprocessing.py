"""Image bytes -> the RGB array the model takes. The one preprocessing: training imports it too.

Changing what this module returns for any input changes the model's input
distribution, so bump ``PREPROCESSING_ID``: a model trained with another id is
refused at load (see ``model_card``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import decoding
from .errors import BadImageDimensions, ClientError, CorruptImage, FrameOutOfRange, ImageTooSmall, NotAnImage

#: The preprocessing new models are trained with; recorded in model.json and used by the
#: serving engine for that model. Letterbox (aspect kept, black bars) instead of squash: scanners
#: differ in frame shape (BUSI landscape, BUS-BRA portrait), and squashing distorted lesions in a
#: site-specific way (shared/NOTES.md: "normal" calls on BUS-BRA lesions fell from 36 % to 9 %).
#: v3 adds the grey step the lesion models take first (mean of R, G, B), rounded to 8 bits: exactly the
#: uint8 grey frames training caches and feeds (model_training.sites), so training input == served input.
PREPROCESSING_ID = "grey-letterbox-bilinear-uint8-v3"
#: v2: letterboxed float RGB (the v4 models; they grey in-graph, so v2 differs from v3 by rounding only).
LETTERBOX_RGB_ID = "rgb-letterbox-bilinear-float255-v2"
#: Models trained before v2 squash the frame to a square; still served, for old model folders.
SQUASH_ID = "rgb-squash-bilinear-float255-v1"

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


@contextlib.contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Pillow's warnings about a client's image, whatever the process's warning filters: a decompression
    bomb is an error (refused); a cut-short EXIF entry (Pillow reads what is there, so no orientation)
    is nothing to report."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", message=r"Corrupt EXIF data\.", category=UserWarning,
                                module=r"PIL\.TiffImagePlugin")
        yield


def _open(data: bytes) -> Image.Image:
    if not data:
        raise NotAnImage("the body is empty; send a PNG, JPEG, BMP or DICOM image")
    info = decoding.inspect(data)  # structural limits, before Pillow parses anything
    try:
        with _pillow_warnings():
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageDimensions(f"image exceeds {MAX_IMAGE_PIXELS:,} pixels") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage("the data is not a PNG, JPEG, BMP or DICOM image") from exc
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
        with _pillow_warnings():
            img.seek(0)
            if info.format == "JPEG":  # sniffed: an MPO (a JPEG with more frames) is checked too
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


def image_from_pixels(pixels: np.ndarray) -> Image.Image:
    """uint8 (H, W) grey or (H, W, 3) RGB pixels (``dicom.read``'s output) -> the RGB image PNG/JPEG
    decoding gives, under the same size rules."""
    check_dimensions(pixels.shape[1], pixels.shape[0])
    return to_rgb(Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB"))


def decode_rgb(data: bytes, *, frame: int | None = None) -> Image.Image:
    """Decode PNG/JPEG/BMP/DICOM bytes into an upright 8-bit RGB image, or raise a ClientError.

    Bounded whatever the file claims: see ``classifier.decoding`` and ``classifier.dicom`` for the
    limits and rules. ``frame`` (1-based) picks a DICOM file's frame; the image's ``info["dicom"]``
    is then that ``dicom.DicomFrame`` (its pixels dropped). Other formats have frame 1 only.
    """
    if decoding.sniff_format(data) == "DICOM":
        from . import dicom  # pydicom loads here (or with the Engine), not for PNG-only callers

        decoded = dicom.read(data, frame=frame)
        img = image_from_pixels(decoded.pixels)
        img.info["dicom"] = dataclasses.replace(decoded, pixels=np.empty((0, 0), np.uint8))
        return img
    if frame not in (None, 1):
        raise FrameOutOfRange(f"frame {frame} was asked for; a PNG, JPEG or BMP image has frame 1 only")
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


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the image lands in the model's square input: input = image * scale + (left, top).
    Maps the model's localisation back to image pixels."""

    size: int  # model input side
    width: int  # original image size (after EXIF orientation)
    height: int
    scale_x: float
    scale_y: float
    left: int
    top: int

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Model-input coordinates -> image pixel coordinates, clipped to the image."""
        return (min(max((x - self.left) / self.scale_x, 0.0), float(self.width)),
                min(max((y - self.top) / self.scale_y, 0.0), float(self.height)))


def placement(width: int, height: int, size: int, preprocessing_id: str = PREPROCESSING_ID) -> Placement:
    if preprocessing_id == SQUASH_ID:
        return Placement(size, width, height, size / width, size / height, 0, 0)
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return Placement(size, width, height, w / width, h / height, (size - w) // 2, (size - h) // 2)


def _squash(img: Image.Image, size: int) -> np.ndarray:
    return np.asarray(img.resize((size, size), RESAMPLE), dtype=np.float32)


def _letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Keep the aspect ratio: the longer side becomes `size`, the rest is black (0) padding, centred."""
    p = placement(*img.size, size, LETTERBOX_RGB_ID)
    w, h = round(p.scale_x * p.width), round(p.scale_y * p.height)
    out = np.zeros((size, size, 3), dtype=np.float32)
    out[p.top:p.top + h, p.left:p.left + w] = np.asarray(img.resize((w, h), RESAMPLE), dtype=np.float32)
    return out


def model_input_grey(img: Image.Image, size: int) -> np.ndarray:
    """The v3 model input as one (size, size) uint8 grey frame: the letterboxed RGB, averaged, rounded."""
    return np.rint(_letterbox(img, size).mean(axis=-1)).astype(np.uint8)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(np.rint(rgb.mean(axis=-1))[..., None], 3, axis=-1).astype(np.float32)


#: preprocessing id -> resize. A model card naming another id is refused at load.
RESIZERS = {PREPROCESSING_ID: _letterbox, LETTERBOX_RGB_ID: _letterbox, SQUASH_ID: _squash}
#: preprocessing id -> the step from the resized RGB to the model input (v3 greys it; the others feed RGB).
FINISHERS = {PREPROCESSING_ID: _grey}


def resized_rgb(img: Image.Image, size: int, preprocessing_id: str = PREPROCESSING_ID) -> np.ndarray:
    """The resized RGB frame (size, size, 3) float32 the model input is made from: what the input check's
    colour statistics read (the v3 input is grey, so it no longer shows a photograph's colours)."""
    return RESIZERS[preprocessing_id](img, size)


def model_input(rgb: np.ndarray, preprocessing_id: str = PREPROCESSING_ID) -> np.ndarray:
    """``resized_rgb``'s output -> the model input."""
    finish = FINISHERS.get(preprocessing_id)
    return rgb if finish is None else finish(rgb)


def resize_for_model(img: Image.Image, size: int, preprocessing_id: str = PREPROCESSING_ID) -> np.ndarray:
    """RGB image -> float32 array (size, size, 3) in [0, 255], as model `preprocessing_id` expects.

    The backbone's own normalisation lives inside the model graph, so this is
    all the preprocessing there is.
    """
    return model_input(resized_rgb(img, size, preprocessing_id), preprocessing_id)


def preprocess(data: bytes, size: int, preprocessing_id: str = PREPROCESSING_ID) -> np.ndarray:
    """Image bytes -> model input (size, size, 3) float32. Raises a ClientError on bad input."""
    return resize_for_model(decode_rgb(data), size, preprocessing_id)


def preprocess_file(path, size: int, preprocessing_id: str = PREPROCESSING_ID) -> np.ndarray:
    """Training's entry point: the same bytes-in path the server uses."""
    with open(path, "rb") as fh:
        return preprocess(fh.read(), size, preprocessing_id)
