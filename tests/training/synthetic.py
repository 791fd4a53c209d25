"""Small labelled folders in the BUSI layout whose class is learnable (for the training tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("normal", "benign", "malignant")


def synthetic_image(label: str, rng: np.random.Generator, size: int = 72) -> Image.Image:
    """Speckled grey frame; benign: one dark round blob; malignant: a bright irregular star; normal: none."""
    h, w = size, size + int(rng.integers(0, 24))
    yy, xx = np.mgrid[0:h, 0:w]
    img = 90 + 30 * rng.random((h, w)) + 20 * np.sin(yy / (3 + rng.random() * 2) + rng.random() * 6)
    for _ in range(3):  # a few soft shadows so that no two frames look alike
        sy, sx = rng.random() * h, rng.random() * w
        img += rng.uniform(-40, 40) * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * (size / 5) ** 2))
    cy, cx = h * (0.35 + 0.3 * rng.random()), w * (0.35 + 0.3 * rng.random())
    r = size * (0.18 + 0.08 * rng.random())
    dist = np.hypot(yy - cy, xx - cx)
    if label == "benign":
        img[dist < r] = 25 + 10 * rng.random()
    elif label == "malignant":
        angle = np.arctan2(yy - cy, xx - cx)
        img[dist < r * (0.6 + 0.5 * np.abs(np.sin(4 * angle)))] = 235
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")


def make_folder(root: Path, *, per_class: int, seed: int, classes=CLASSES, with_masks: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = synthetic_image(label, rng)
            img.save(root / label / f"{label} ({i + 1}).png")
            if with_masks:  # BUSI ships masks beside the images; they must be skipped
                Image.new("L", img.size, 255).save(root / label / f"{label} ({i + 1})_mask.png")
    return root


def lesion_frame(label: str, rng: np.random.Generator, *, size: int = 80, gain: float = 1.0,
                 offset: float = 0.0, portrait: bool = False) -> tuple[Image.Image, Image.Image]:
    """(frame, lesion mask) for one synthetic site: benign a dark round blob, malignant a bright
    spiky star, normal no lesion (empty mask). gain/offset/portrait make sites look different."""
    h, w = (size + 20, size) if portrait else (size, size + 20)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 90 + 30 * rng.random((h, w)) + 15 * np.sin(yy / (3 + rng.random() * 2))
    cy, cx = h * (0.3 + 0.4 * rng.random()), w * (0.3 + 0.4 * rng.random())
    r = size * (0.14 + 0.06 * rng.random())
    dist = np.hypot(yy - cy, xx - cx)
    if label == "benign":
        lesion = dist < r
        img[lesion] = 25 + 10 * rng.random()
    elif label == "malignant":
        lesion = dist < r * (0.6 + 0.5 * np.abs(np.sin(4 * np.arctan2(yy - cy, xx - cx))))
        img[lesion] = 235
    else:
        lesion = np.zeros_like(dist, dtype=bool)
    img = np.clip(img * gain + offset, 0, 255).astype(np.uint8)
    return Image.fromarray(img, mode="L"), Image.fromarray((lesion * 255).astype(np.uint8), mode="L")


def make_site(root: Path, *, per_class: int, seed: int, classes=CLASSES, gain: float = 1.0, offset: float = 0.0,
              portrait: bool = False, patients_csv: bool = False, device: str = "") -> Path:
    """A site folder in the BUSI layout with real lesion masks; with patients_csv, two frames per
    patient and a metadata CSV (ID, Case, Device) as BUS-BRA ships."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            stem = f"{label}_{i:03d}"
            img, mask = lesion_frame(label, rng, gain=gain, offset=offset, portrait=portrait)
            img.save(root / label / f"{stem}.png")
            mask.save(root / label / f"{stem}_mask.png")
            rows.append((stem, f"{label}-{i // 2}", device))
    if patients_csv:
        lines = ["ID,Case,Device"] + [",".join(r) for r in rows]
        (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root
