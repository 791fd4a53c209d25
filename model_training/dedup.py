"""Duplicate audit: exact duplicates (hash of decoded pixels) and near-duplicates (correlation of
small grey thumbnails), joined transitively into groups; groups whose images disagree on the label."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
from PIL import Image

#: Thumbnail side for the near-duplicate measure: small enough to ignore JPEG noise,
#: resampling and calipers, large enough to tell two lesions apart.
THUMB = 24
#: Pearson correlation of the thumbnails above which two images are the same frame.
#: On BUSI, re-encoded/resized copies score > 0.99 and distinct patients mostly < 0.85;
#: 0.93 catches its known near-duplicate frames (see reports/audit.json).
NEAR_DUP_THRESHOLD = 0.93


def pixel_hash(img: Image.Image) -> str:
    arr = np.asarray(img, dtype=np.uint8)
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()


def thumbnail_vector(img: Image.Image, side: int = THUMB) -> np.ndarray:
    """Grey, squashed to side x side, zero mean, unit norm: dot products are correlations."""
    grey = np.asarray(img.convert("L").resize((side, side), Image.Resampling.BOX), dtype=np.float64)
    v = grey.ravel() - grey.mean()
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclasses.dataclass
class DuplicateAudit:
    group_of: list[int]  # group id per image (groups numbered from 0, singletons included)
    exact_pairs: list[tuple[int, int]]
    near_pairs: list[tuple[int, int, float]]  # (i, j, correlation), exact pairs excluded

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.group_of):
            out.setdefault(g, []).append(i)
        return out

    def duplicate_groups(self) -> list[list[int]]:
        return [members for members in self.groups().values() if len(members) > 1]

    def conflicting_groups(self, labels: list[str]) -> list[list[int]]:
        return [m for m in self.duplicate_groups() if len({labels[i] for i in m}) > 1]


def find_duplicates(images: list[Image.Image], *, threshold: float = NEAR_DUP_THRESHOLD) -> DuplicateAudit:
    n = len(images)
    uf = _UnionFind(n)
    hashes = [pixel_hash(img) for img in images]
    first: dict[str, int] = {}
    exact = []
    for i, h in enumerate(hashes):
        if h in first:
            exact.append((first[h], i))
            uf.union(first[h], i)
        else:
            first[h] = i
    near = []
    if n > 1:
        vecs = np.stack([thumbnail_vector(img) for img in images])
        corr = vecs @ vecs.T
        ii, jj = np.nonzero(np.triu(corr >= threshold, k=1))
        exact_set = set(exact)
        for i, j in zip(ii.tolist(), jj.tolist()):
            uf.union(i, j)
            if (i, j) not in exact_set and hashes[i] != hashes[j]:
                near.append((i, j, float(corr[i, j])))
    roots = [uf.find(i) for i in range(n)]
    renumber: dict[int, int] = {}
    group_of = [renumber.setdefault(r, len(renumber)) for r in roots]
    return DuplicateAudit(group_of=group_of, exact_pairs=exact, near_pairs=near)


def correlation_matrix(images: list[Image.Image]) -> np.ndarray:
    vecs = np.stack([thumbnail_vector(img) for img in images])
    return vecs @ vecs.T
