"""Find the labelled images of a BUSI-layout folder (`<root>/<class>/*.png`) and load them
through the serving preprocessing (the one source of truth)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from classifier.errors import ClientError
from classifier.preprocessing import PREPROCESSING_ID, decode_rgb, resize_for_model

from .errors import BadFilesError, DataFolderError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: BUSI's segmentation masks: `benign (1)_mask.png`, `benign (4)_mask_1.png`, ...
MASK_RE = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
#: Output order for the BUSI classes; other class folders follow, sorted.
CANONICAL_ORDER = ("normal", "benign", "malignant")


@dataclasses.dataclass(frozen=True)
class Sample:
    path: Path
    label: str

    @property
    def key(self) -> str:
        """Stable id inside the dataset: `<class>/<file name>`."""
        return f"{self.path.parent.name}/{self.path.name}"


def is_mask(path: Path) -> bool:
    return bool(MASK_RE.search(path.stem))


def order_labels(labels) -> list[str]:
    labels = set(labels)
    known = [c for c in CANONICAL_ORDER if c in labels]
    return known + sorted(labels - set(known))


def discover(root: Path | str) -> tuple[list[Sample], list[str]]:
    """All images under `<root>/<class>/`, masks skipped. Returns (samples, labels in output order)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFolderError(f"data folder {root} does not exist or is not a folder")
    samples: list[Sample] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_mask(p)
        )
        samples.extend(Sample(path=p, label=class_dir.name.lower()) for p in files)
    if not samples:
        raise DataFolderError(
            f"no images found in {root}: expected the BUSI layout <root>/<class>/*.png "
            "(class folders such as normal/, benign/, malignant/ holding PNG, JPEG or BMP files)"
        )
    return samples, order_labels({s.label for s in samples})


def fingerprint(samples: list[Sample]) -> str:
    """Content hash of the dataset (file keys, labels and bytes): changes when any file does."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: s.key):
        digest.update(f"{s.key}\0{s.label}\0".encode())
        digest.update(hashlib.sha256(s.path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def decode_all(samples: list[Sample], *, skip_bad: bool, desc: str = "decode"):
    """Decode every file with the serving decoder. Returns (kept samples, PIL images).

    Every bad file is collected first, so the user sees them all in one error.
    """
    kept, images, bad = [], [], []
    for s in tqdm(samples, desc=desc, unit="img", leave=False):
        try:
            images.append(decode_rgb(s.path.read_bytes()))
            kept.append(s)
        except ClientError as exc:
            bad.append((str(s.path), exc.message))
        except OSError as exc:
            bad.append((str(s.path), f"cannot read the file ({exc.strerror or exc})"))
    if bad and not skip_bad:
        raise BadFilesError(bad)
    for path, reason in bad:
        warnings.warn(f"skipping unreadable image {path}: {reason}", stacklevel=2)
    return kept, images


def to_arrays(images, size: int, preprocessing_id: str = PREPROCESSING_ID) -> np.ndarray:
    """PIL RGB images -> (N, size, size, 3) float32 in [0, 255], exactly what the server feeds."""
    out = np.empty((len(images), size, size, 3), dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = resize_for_model(img, size, preprocessing_id)
    return out
