"""Several labelled folders, one per site: images, lesion masks, patient groups and devices, decoded
through the serving preprocessing (letterbox) and cached as compact arrays for the lesion recipe.

A site folder uses the BUSI layout (`<root>/<class>/<name>.png` with `<name>_mask*.png` beside it).
It may carry one metadata CSV whose columns name the image (`ID`, `id`, `image` or `file`: the
file stem) and the patient (`Case`, `patient`, `patient_id`, `group`); a `Device` column gives the
scanner. Groups are the union of "same patient" (from the CSV) and "same frame" (the near-duplicate
audit), so neither a patient nor a repeated frame is ever split.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from classifier.preprocessing import PREPROCESSING_ID, model_input_grey, placement, resize_for_model

from .data import Sample, decode_all, discover, fingerprint
from .dedup import NEAR_DUP_THRESHOLD, _UnionFind, find_duplicates
from .errors import DataFolderError

ID_COLUMNS = ("ID", "id", "image", "image_id", "file", "filename")
GROUP_COLUMNS = ("Case", "case", "patient", "patient_id", "PatientID", "group")
DEVICE_COLUMNS = ("Device", "device", "scanner")
#: Pixels per heatmap cell: the stride of the backbone layer the segmentation head reads
#: (224 px input -> a 14 x 14 heatmap).
CELL = 16


def grid_for(input_size: int) -> int:
    return input_size // CELL


@dataclasses.dataclass
class Site:
    """One site's images as arrays. `x` is grey uint8 (N, S, S): the model averages RGB to grey
    first, so the grey frame is all it sees; `mask` is the lesion mask letterboxed the same way."""

    name: str
    root: Path
    samples: list[Sample]
    labels: list[str]  # per image
    x: np.ndarray  # (N, S, S) uint8 grey, letterboxed
    mask: np.ndarray  # (N, S, S) uint8 {0, 255}
    has_mask: np.ndarray  # (N,) bool: a mask file exists (normal images: an empty mask counts)
    groups: list[str]  # "<site>:<group>" per image
    devices: list[str]  # per image ("" when unknown)
    fingerprint: str
    # Hard negatives: lesion-free parts of this site's lesion frames (see `lesion_free_crop`), letterboxed
    # like the frames, and the index of the frame each was cut from (it follows that frame in any split).
    neg_x: np.ndarray | None = None  # (M, S, S) uint8 grey
    neg_src: np.ndarray | None = None  # (M,) int

    def __len__(self) -> int:
        return len(self.samples)

    def negatives(self) -> tuple[np.ndarray, np.ndarray]:
        side = self.x.shape[1]
        if self.neg_x is None:
            return np.zeros((0, side, side), np.uint8), np.zeros(0, int)
        return self.neg_x, self.neg_src

    def subset(self, idx) -> "Site":
        idx = np.asarray(idx, dtype=int)
        pick = lambda seq: [seq[i] for i in idx]  # noqa: E731
        neg_x, neg_src = self.negatives()
        where = {int(old): new for new, old in enumerate(idx)}
        keep = np.array([int(s) in where for s in neg_src], dtype=bool)
        return Site(self.name, self.root, pick(self.samples), pick(self.labels), self.x[idx], self.mask[idx],
                    self.has_mask[idx], pick(self.groups), pick(self.devices), self.fingerprint,
                    neg_x[keep], np.array([where[int(s)] for s in neg_src[keep]], dtype=int))


def site_name(root: Path) -> str:
    return Path(root).resolve().name


def _read_metadata(root: Path) -> dict[str, dict[str, str]]:
    """stem -> {"group", "device"} from the folder's metadata CSV, if it has one."""
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        cols = rows[0].keys()
        id_col = next((c for c in ID_COLUMNS if c in cols), None)
        group_col = next((c for c in GROUP_COLUMNS if c in cols), None)
        if not id_col or not group_col:
            continue
        device_col = next((c for c in DEVICE_COLUMNS if c in cols), None)
        return {Path(r[id_col]).stem: {"group": str(r[group_col]), "device": (r.get(device_col) or "") if device_col else ""}
                for r in rows}
    return {}


def mask_files(image: Path) -> list[Path]:
    """`<stem>_mask.png`, `<stem>_mask_1.png`, ... beside the image (BUSI and BUS-BRA layouts)."""
    return sorted(image.parent.glob(f"{_glob_escape(image.stem)}_mask*.png"))


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


def _letterbox_mask(union: np.ndarray, side: int) -> np.ndarray:
    """The union of the mask files, resized like the image (same placement), as {0, 255} uint8."""
    img = Image.fromarray((union * 255).astype(np.uint8)).convert("RGB")
    return (resize_for_model(img, side)[..., 0] > 127).astype(np.uint8) * 255


#: A hard negative keeps at least this share of the frame, away from the lesion by NEG_MARGIN of the
#: frame's shorter side: enough anatomy (fat, gland, ribs, shadows) to look like a normal frame.
NEG_MIN_AREA = 0.30
NEG_MARGIN = 0.06
#: The hard negatives a lesion frame can give: "strip" (`lesion_free_crop`) and "filled"
#: (`lesion_filled_frame`: the whole frame with the lesion replaced by same-depth tissue, so "no lesion" is
#: also learnt on full-width anatomy of every site's scanners). A run picks a tuple of them
#: (TrainConfig.negative_kinds, recorded in its card); they are part of the cache key.
NEGATIVE_KINDS: tuple[str, ...] = ("strip",)
#: What a card without `negative_kinds` was trained with (v5 and before).
LEGACY_NEGATIVE_KINDS: tuple[str, ...] = ("strip",)
#: A lesion (with its margin) wider than this share of the frame is not filled: too little tissue beside it.
FILL_MAX_WIDTH = 0.5
#: How far below the lesion box the fill goes, in box heights (the posterior shadow or enhancement);
#: None: to the bottom of the frame.
FILL_BELOW: float | None = 1.0
#: Rows of linear blending where the filled block meets the frame (top, bottom) and where its two halves meet.
FILL_FEATHER = 6


def lesion_free_crop(img: Image.Image, lesion: np.ndarray) -> Image.Image | None:
    """The largest full-height or full-width strip of a lesion frame that stays clear of the (dilated) lesion
    box, or None when none keeps NEG_MIN_AREA of the frame. The other sites have no normal frames, so
    these are their only lesion-free frames: "normal" must mean "no lesion" on their scanners too."""
    ys, xs = np.nonzero(lesion)
    if not len(xs):
        return None
    w, h = img.size
    m = int(round(NEG_MARGIN * min(w, h)))
    x0, x1, y0, y1 = xs.min() - m, xs.max() + 1 + m, ys.min() - m, ys.max() + 1 + m
    boxes = [(0, 0, x0, h), (x1, 0, w, h), (0, 0, w, y0), (0, y1, w, h)]
    boxes = [b for b in boxes if b[2] - b[0] >= 48 and b[3] - b[1] >= 48]
    if not boxes:
        return None
    best = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    if (best[2] - best[0]) * (best[3] - best[1]) < NEG_MIN_AREA * w * h:
        return None
    return img.crop(best)


def lesion_filled_frame(img: Image.Image, lesion: np.ndarray) -> Image.Image | None:
    """The whole frame with its (dilated) lesion box, and FILL_BELOW box heights below it (posterior shadow
    or enhancement), replaced by the tissue beside it at the same depth: each half mirrored from its own side
    (continuous at both edges, the halves cross-faded, feathered at the top and bottom). Ultrasound texture
    changes with depth far more than across, so the frame keeps its anatomy, chrome and scanner look
    without a lesion. None when the lesion is wider than FILL_MAX_WIDTH of the frame or the tissue beside
    it is narrower than the box."""
    ys, xs = np.nonzero(lesion)
    if not len(xs):
        return None
    w, h = img.size
    m = int(round(NEG_MARGIN * min(w, h)))
    x0, x1 = max(int(xs.min()) - m, 0), min(int(xs.max()) + 1 + m, w)
    y0, y1 = max(int(ys.min()) - m, 0), min(int(ys.max()) + 1 + m, h)
    y1 = h if FILL_BELOW is None else min(h, y1 + int(round(FILL_BELOW * (y1 - y0))))
    bw, left, right = x1 - x0, x0, w - x1
    if bw > FILL_MAX_WIDTH * w or left + right < bw:
        return None
    a = np.asarray(img).astype(np.float32)
    i = np.arange(bw)
    # Column i of the box comes from the mirror about its left edge (x0 - 1 - i) or about its right edge
    # (x1 + bw - 1 - i); the two halves meet at k, moved toward the side with less room, and are
    # cross-faded over a quarter of the box so that tilted layers do not leave a seam.
    k = min(max(bw / 2, bw - right), left)
    fade = max(FILL_FEATHER, bw / 4)
    t = np.clip((i - k) / fade + 0.5, 0.0, 1.0)  # 0: from the left, 1: from the right
    from_left = np.clip(x0 - 1 - i, 0, w - 1)
    from_right = np.clip(x1 + bw - 1 - i, 0, w - 1)
    t = t.reshape((1, bw) + (1,) * (a.ndim - 2))
    fill = (1 - t) * a[y0:y1][:, from_left] + t * a[y0:y1][:, from_right]
    rows = np.arange(y0, y1)
    # Feather top and bottom into the frame (not at the frame's own edges).
    v = np.ones(len(rows), dtype=np.float32)
    if y0 > 0:
        v = np.minimum(v, np.clip((rows - y0 + 1) / FILL_FEATHER, 0, 1))
    if y1 < h:
        v = np.minimum(v, np.clip((y1 - rows) / FILL_FEATHER, 0, 1))
    v = v.reshape((-1, 1) + (1,) * (a.ndim - 2))
    out = a.copy()
    out[y0:y1, x0:x1] = v * fill + (1 - v) * a[y0:y1, x0:x1]
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode=img.mode)


def _hard_negatives(img: Image.Image, lesion: np.ndarray, kinds: tuple[str, ...]) -> list[Image.Image]:
    """This lesion frame's hard negatives, one per kind that applies."""
    makers = {"strip": lesion_free_crop, "filled": lesion_filled_frame}
    return [neg for neg in (makers[k](img, lesion) for k in kinds) if neg is not None]


def _mask_union(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    union = np.zeros(size[::-1], dtype=bool)
    for f in files:
        m = Image.open(f).convert("L")
        if m.size != size:
            m = m.resize(size, Image.Resampling.NEAREST)
        union |= np.asarray(m) > 127
    return union


def _cache_key(root: Path, fp: str, side: int, kinds: tuple[str, ...]) -> str:
    key = f"{fp}|{side}|{PREPROCESSING_ID}|{NEAR_DUP_THRESHOLD}|{NEG_MIN_AREA}|{NEG_MARGIN}|v2"
    if kinds != LEGACY_NEGATIVE_KINDS:  # strips alone keep their old key, so existing caches stay valid
        key += f"|{','.join(kinds)}|{FILL_MAX_WIDTH}|{FILL_FEATHER}|{FILL_BELOW}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_site(root: Path | str, *, side: int, cache_dir: Path | None = None, skip_bad: bool = False,
              near_dup_threshold: float = NEAR_DUP_THRESHOLD, negative_kinds: tuple[str, ...] = NEGATIVE_KINDS) -> Site:
    """Decode a site folder once (cached on disk by content hash) into grey letterboxed arrays."""
    root = Path(root)
    all_samples, _ = discover(root)
    fp = fingerprint(all_samples)
    name = site_name(root)
    cache = Path(cache_dir) / f"site-{name}-{_cache_key(root, fp, side, tuple(negative_kinds))}.npz" if cache_dir else None
    meta = _read_metadata(root)
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        keys = [str(k) for k in z["keys"]]
        by_key = {s.key: s for s in all_samples}
        samples = [by_key[k] for k in keys]
        return Site(name, root, samples, [s.label for s in samples], z["x"], z["mask"], z["has_mask"],
                    [str(g) for g in z["groups"]], [str(d) for d in z["devices"]], fp, z["neg_x"], z["neg_src"])
    samples, images = decode_all(all_samples, skip_bad=skip_bad, desc=f"decode {name}")
    n = len(samples)
    x = np.empty((n, side, side), dtype=np.uint8)
    mask = np.zeros((n, side, side), dtype=np.uint8)
    has_mask = np.zeros(n, dtype=bool)
    neg_x, neg_src = [], []
    for i, (s, img) in enumerate(tqdm(list(zip(samples, images)), desc=f"letterbox {name}", unit="img", leave=False)):
        x[i] = model_input_grey(img, side)
        files = mask_files(s.path)
        if files:
            has_mask[i] = True
            union = _mask_union(files, img.size)
            mask[i] = _letterbox_mask(union, side)
            for neg in _hard_negatives(img, union, tuple(negative_kinds)) if s.label != "normal" else []:
                neg_x.append(model_input_grey(neg, side))
                neg_src.append(i)
    neg_x = np.array(neg_x, dtype=np.uint8).reshape(-1, side, side)
    neg_src = np.array(neg_src, dtype=int)
    # Groups: same patient (metadata) or same frame (near-duplicate audit), joined transitively.
    dup = find_duplicates(images, threshold=near_dup_threshold)
    uf = _UnionFind(n)
    first_of: dict[str, int] = {}
    for i, s in enumerate(samples):
        patient = meta.get(s.path.stem, {}).get("group")
        key = f"p:{patient}" if patient is not None else f"d:{dup.group_of[i]}"
        uf.union(first_of.setdefault(key, i), i)
        uf.union(first_of.setdefault(f"d:{dup.group_of[i]}", i), i)
    groups = [f"{name}:{uf.find(i)}" for i in range(n)]
    devices = [meta.get(s.path.stem, {}).get("device", "") for s in samples]
    site = Site(name, root, samples, [s.label for s in samples], x, mask, has_mask, groups, devices, fp, neg_x, neg_src)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array([s.key for s in samples]), x=x, mask=mask, has_mask=has_mask,
                 groups=np.array(groups), devices=np.array(devices), neg_x=neg_x, neg_src=neg_src)
        tmp.replace(cache)
    return site


def load_sites(roots, *, side: int, cache_dir: Path | None = None, skip_bad: bool = False,
               negative_kinds: tuple[str, ...] = NEGATIVE_KINDS) -> list[Site]:
    sites = [load_site(r, side=side, cache_dir=cache_dir, skip_bad=skip_bad, negative_kinds=negative_kinds)
             for r in roots]
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise DataFolderError(f"two data folders share a name ({', '.join(names)}): each folder is a site, "
                              "name them apart")
    return sites


def mask_grid(mask: np.ndarray, grid: int) -> np.ndarray:
    """(N, S, S) {0, 255} -> (N, grid, grid) float32 lesion fraction per cell."""
    n, s, _ = mask.shape
    k = s // grid
    return (mask[:, :k * grid, :k * grid].reshape(n, grid, k, grid, k).mean(axis=(2, 4)) / 255.0).astype(np.float32)


__all__ = ["Site", "load_site", "load_sites", "mask_grid", "placement", "grid_for", "CELL"]
