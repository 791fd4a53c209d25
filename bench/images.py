"""The request images: real BUSI frames when ../shared is there, generated ones otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("normal", "benign", "malignant")


def _is_mask(path: Path) -> bool:
    return "_mask" in path.stem


def busi_images(root: Path, n: int) -> list[tuple[str, bytes]]:
    """``n`` frames spread evenly over the sorted files of each class (masks skipped), deterministic."""
    per_class = {c: sorted(p for p in (root / c).glob("*.png") if not _is_mask(p)) for c in CLASSES}
    per_class = {c: files for c, files in per_class.items() if files}
    if not per_class:
        return []
    k = max(1, n // len(per_class))
    picked: list[tuple[str, bytes]] = []
    for files in per_class.values():
        idx = np.linspace(0, len(files) - 1, num=min(k, len(files))).round().astype(int)
        picked += [(f"{files[i].parent.name}/{files[i].name}", files[i].read_bytes()) for i in idx]
    return picked[:n]


def generated_images(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """Grey, speckled PNGs at BUSI-like sizes (~500x450), for clones without ../shared."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = int(rng.integers(450, 600)), int(rng.integers(400, 560))
        yy, xx = np.mgrid[0:h, 0:w]
        blob = np.exp(-(((xx - w / 2) / (w / 6)) ** 2 + ((yy - h / 2) / (h / 7)) ** 2))
        speckle = rng.gamma(2.0, 0.5, size=(h, w))
        arr = np.clip(90 * speckle * (1 - 0.7 * blob) + 20, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, mode="L").save(buf, format="PNG")
        out.append((f"generated/{i:03d}.png", buf.getvalue()))
    return out


def load_images(data_dir: Path | None, n: int) -> tuple[list[tuple[str, bytes]], str]:
    """(name, PNG bytes) pairs and a description of where they came from."""
    if data_dir is not None and Path(data_dir).is_dir():
        imgs = busi_images(Path(data_dir), n)
        if imgs:
            return imgs, f"{len(imgs)} BUSI images from {data_dir} (evenly spread over each class)"
    imgs = generated_images(n)
    return imgs, f"{len(imgs)} generated grey PNGs (~500x450); BUSI data not found at {data_dir}"
