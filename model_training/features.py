"""Frozen-backbone features, extracted once (image and its mirror) and cached on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def extract(feature_model: keras.Model, images: np.ndarray, *, batch_size: int = 32, desc: str) -> np.ndarray:
    """(N, S, S, 3) in [0, 255] -> (N, D) pooled features, with a progress bar."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch"):
        out.append(np.asarray(feature_model(images[start:start + batch_size], training=False)))
    dim = feature_model.output_shape[-1]
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def cached_views(feature_model: keras.Model, images: np.ndarray, *, cache: Path | None, desc: str) -> np.ndarray:
    """Features of (image, mirrored image): shape (2, N, D). Read from `cache` when it exists."""
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return data["views"]
    views = np.stack([
        extract(feature_model, images, desc=f"features {desc}"),
        extract(feature_model, images[:, :, ::-1, :], desc=f"features {desc} (mirrored)"),
    ])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, views=views)
    return views
