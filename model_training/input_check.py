"""`python -m model_training input-check`: fit the served model's "is this a breast ultrasound?" check.

    python -m model_training input-check --model lambda_src/model \
        --data ../shared/data/busi --data ../shared/data/busbra

For each site folder (BUSI layout, masks skipped) every image goes through the served model once
(``Engine.features``: its pooled backbone features) and through ``classifier.input_check.image_stats``.
Images are grouped (BUS-BRA's metadata CSV ``Case`` column is the patient; near-duplicate thumbnails join
groups too, which is all BUSI has), and each site's groups are dealt, seeded, into three parts:

* fit (50 %): the feature mean, top-k principal components, residual scale and the statistics' medians/MADs;
* calibration (25 %): ``warn_threshold`` = the highest per-site 99th percentile of the score (so >= 99 % of
  each site's calibration ultrasound passes with no warning); ``reject_threshold`` = the larger of
  REJECT_MARGIN x the highest calibration score of any site and REJECT_OVER_WARN x warn_threshold (no
  calibration ultrasound would have been refused, with a margin);
* test (25 %): never used for fitting or choosing; the pass rates reported per site.

Then the non-ultrasound set (``non_ultrasound_set``: scikit-image's sample photographs, documents,
microscopy and a CT phantom, plus generated blank, noise, text-screenshot and pattern frames) is scored and
the rejection/warning rates per category are reported. The parameters, thresholds and how they were fitted go
into ``model.json`` under ``input_check`` (the tflite is untouched, so its sha256 in the card stays valid), and
the report into ``--report`` (input_check.json, input_check.md).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from classifier.engine import Engine
from classifier.errors import ClientError
from classifier.input_check import (FORMAT, STAT_NAMES, InputCheck, encode_array, image_stats)
from classifier.model_card import CARD_FILE, MODEL_FILE, ModelCard
from classifier.preprocessing import decode_rgb, model_input, placement, resized_rgb

from .data import discover
from .dedup import thumbnail_vector
from .errors import TrainingError

PARTS = {"fit": 0.5, "calibration": 0.25, "test": 0.25}
QUANTILE = 0.99
#: reject_threshold = max(REJECT_MARGIN x the highest calibration score, REJECT_OVER_WARN x warn_threshold):
#: no held-out ultrasound the threshold was chosen on would have been refused, with a margin.
REJECT_MARGIN = 1.25
REJECT_OVER_WARN = 2.0
#: Smallest robust scale per statistic (a greyscale site's colour fraction has MAD 0).
STAT_FLOORS = {"colour_fraction": 0.02, "grey_std": 3.0, "roughness": 0.03}
NEAR_DUP = 0.93
GROUP_COLUMNS = ("Case", "case", "patient", "patient_id", "PatientID", "group")
ID_COLUMNS = ("ID", "id", "image", "image_id", "file", "filename")


def add_parser(sub) -> None:
    p = sub.add_parser("input-check", help="fit the served model's out-of-distribution input check into model.json",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="model folder (model.tflite with a feature output)")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="a site's labelled folder (BUSI layout); repeat per site")
    p.add_argument("--report", type=Path, default=Path("reports/input_check"),
                   help="folder for input_check.json and input_check.md")
    p.add_argument("--components", type=int, default=32, help="principal components of the feature density")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-images", type=int, default=0, help="per site, 0 = all (for quick trials)")
    p.add_argument("--split", type=Path, default=None,
                   help="the model's split.json (from `make train`): fit on the images it trained on, calibrate "
                        "and test on its held-out test images (default: a 50/25/25 group-aware deal of all images)")
    p.add_argument("--dry-run", action="store_true", help="fit and report, but leave model.json alone")


# -- data ------------------------------------------------------------------------------------------

def _patients(root: Path) -> dict[str, str]:
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        id_col = next((c for c in ID_COLUMNS if c in rows[0]), None)
        group_col = next((c for c in GROUP_COLUMNS if c in rows[0]), None)
        if id_col and group_col:
            return {Path(r[id_col]).stem: str(r[group_col]) for r in rows}
    return {}


def _groups(names: list[str], patients: dict[str, str], thumbs: np.ndarray) -> list[int]:
    """Group id per image: same patient (metadata CSV) or near-duplicate thumbnails (correlation >= NEAR_DUP)."""
    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in patients:
            union(i, first.setdefault(patients[name], i))
    if len(names) > 1:
        ii, jj = np.nonzero(np.triu(thumbs @ thumbs.T >= NEAR_DUP, k=1))
        for i, j in zip(ii.tolist(), jj.tolist()):
            union(i, j)
    roots: dict[int, int] = {}
    return [roots.setdefault(find(i), len(roots)) for i in range(len(names))]


def measure(engine: Engine, img) -> tuple[np.ndarray, np.ndarray]:
    """(features, statistics) of one decoded image, exactly as the server computes them."""
    card = engine.card
    rgb = resized_rgb(img, card.input_size, card.preprocessing_id)  # colour statistics read the RGB, as served
    feats = engine.features(model_input(rgb, card.preprocessing_id))
    if feats is None:
        raise TrainingError(f"the model in {engine.model_dir} has no feature output; the input check needs one "
                            "(models trained by the lesion recipe have it)")
    return feats, image_stats(rgb, placement(*img.size, card.input_size, card.preprocessing_id))


def load_site(engine: Engine, root: Path, *, max_images: int = 0) -> dict:
    samples, _ = discover(root)
    if max_images:
        rng = np.random.default_rng(0)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), min(max_images, len(samples)), replace=False))]
    patients = _patients(root)
    feats, stats, thumbs, names, keys = [], [], [], [], []
    skipped = 0
    for s in tqdm(samples, desc=f"{root.name}: features", unit="img", leave=False):
        try:
            img = decode_rgb(s.path.read_bytes())
        except (ClientError, OSError):
            skipped += 1
            continue
        f, st = measure(engine, img)
        feats.append(f)
        stats.append(st)
        thumbs.append(thumbnail_vector(img))
        names.append(s.path.stem)
        keys.append(s.key)
    if not names:
        raise TrainingError(f"no readable images in {root}")
    return {"name": Path(root).resolve().name, "root": str(root), "features": np.stack(feats),
            "stats": np.stack(stats), "groups": _groups(names, patients, np.stack(thumbs)),
            "grouped_by": "patient (metadata CSV) + near-duplicate thumbnails" if patients else
                          "near-duplicate thumbnails (no patient ids)",
            "skipped": skipped, "keys": keys}


def model_split_parts(site: dict, split_doc: dict, seed: int) -> dict[str, np.ndarray]:
    """Parts from the model's own split.json (`make train` writes it): the images the model trained on
    (trainval) fit the density; its held-out test images, dealt by their group into two halves, are the
    calibration and test parts, so thresholds are chosen and measured on ultrasound the model never saw."""
    files = (split_doc.get("sites", {}).get(site["name"]) or {}).get("files")
    if not files:
        raise TrainingError(f"the split file has no entry for site {site['name']!r}: "
                            f"it lists {', '.join(split_doc.get('sites', {})) or 'no sites'}")
    held = [i for i, k in enumerate(site["keys"]) if (files.get(k) or {}).get("split") == "test"]
    fit_idx = [i for i, k in enumerate(site["keys"]) if (files.get(k) or {}).get("split") != "test"]
    groups = [files[site["keys"][i]].get("group") or site["keys"][i] for i in held]
    ids = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(ids))
    half, acc, part_of = len(held) / 2.0, 0, {}
    counts = {g: groups.count(g) for g in ids}
    for j in order:
        g = ids[j]
        part_of[g] = "calibration" if acc < half else "test"
        acc += counts[g]
    return {"fit": np.asarray(fit_idx, dtype=int),
            "calibration": np.asarray([i for i, g in zip(held, groups) if part_of[g] == "calibration"], dtype=int),
            "test": np.asarray([i for i, g in zip(held, groups) if part_of[g] == "test"], dtype=int)}


def split_groups(groups: list[int], seed: int) -> dict[str, np.ndarray]:
    """Image indices per part; every group on one side, parts sized by image count."""
    ids = np.unique(groups)
    order = np.random.default_rng(seed).permutation(ids)
    sizes = np.bincount(groups)
    total, acc = float(len(groups)), 0.0
    part_of: dict[int, str] = {}
    bounds = np.cumsum(list(PARTS.values()))
    for g in order:
        part_of[int(g)] = list(PARTS)[int(np.searchsorted(bounds, acc / total, side="right"))]
        acc += sizes[g]
    g_arr = np.asarray(groups)
    return {p: np.nonzero(np.isin(g_arr, [g for g, q in part_of.items() if q == p]))[0] for p in PARTS}


# -- fit -------------------------------------------------------------------------------------------

def fit_density(features: np.ndarray, stats: np.ndarray, components: int) -> dict:
    """The card's input_check "features" and "stats" parameters from the fit part (quantiles filled in later)."""
    n, dim = features.shape
    k = max(1, min(components, n - 2, dim))
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    features = features / np.where(norms > 0, norms, 1.0)  # unit length, as InputCheck.feature_parts
    mean = features.mean(axis=0)
    z = features - mean
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    comps = vt[:k]
    eig = (s[:k] ** 2) / max(n - 1, 1)
    coef = z @ comps.T
    resid = np.maximum((z * z).sum(axis=1) - (coef * coef).sum(axis=1), 0.0)
    center = np.median(stats, axis=0)
    mad = 1.4826 * np.median(np.abs(stats - center), axis=0)
    scale = mad + np.array([STAT_FLOORS[name] for name in STAT_NAMES])
    return {
        "features": {"dim": int(dim), "mean": encode_array(mean), "components": encode_array(comps),
                     "eigenvalues": [float(v) for v in np.maximum(eig, 1e-12)],
                     "residual_scale": float(max(resid.mean(), 1e-12)), "mahalanobis_q99": 1.0,
                     "residual_q99": 1.0},
        "stats": {"names": list(STAT_NAMES), "center": [float(v) for v in center],
                  "scale": [float(v) for v in scale], "q99": 1.0},
    }


def scores(check: InputCheck, features: np.ndarray, stats: np.ndarray) -> np.ndarray:
    fd = np.array([check.feature_distance(f) for f in features])
    sd = np.array([check.stats_distance(s) for s in stats])
    return np.maximum(fd, sd / check.stats_q99)


def fit(sites: list[dict], *, components: int, seed: int, split_doc: dict | None = None) -> tuple[dict, dict]:
    """(the card's input_check, the measurements) from loaded sites; parts from the model's split when given."""
    if split_doc is not None:
        parts = {s["name"]: model_split_parts(s, split_doc, seed) for s in sites}
    else:
        parts = {s["name"]: split_groups(s["groups"], seed) for s in sites}
    for name, site_parts in parts.items():
        empty = [p for p, idx in site_parts.items() if len(idx) == 0]
        if empty:
            raise TrainingError(f"{name}: too few image groups to fill the {', '.join(empty)} part(s) "
                                f"({len(set(next(s for s in sites if s['name'] == name)['groups']))} groups); "
                                "the check needs a few dozen independent images per site")
    fit_f = np.concatenate([s["features"][parts[s["name"]]["fit"]] for s in sites])
    fit_s = np.concatenate([s["stats"][parts[s["name"]]["fit"]] for s in sites])
    doc = fit_density(fit_f, fit_s, components)
    doc.update({"warn_threshold": 1.0, "reject_threshold": 1.0})
    raw = InputCheck(doc)
    parts_fit = np.array([raw.feature_parts(f) for f in fit_f])
    sd = np.array([raw.stats_distance(s) for s in fit_s])
    doc["features"]["mahalanobis_q99"] = float(max(np.quantile(parts_fit[:, 0], QUANTILE), 1e-9))
    doc["features"]["residual_q99"] = float(max(np.quantile(parts_fit[:, 1], QUANTILE), 1e-9))
    doc["stats"]["q99"] = float(max(np.quantile(sd, QUANTILE), 1e-9))
    check = InputCheck(doc)
    calib = {s["name"]: scores(check, s["features"][parts[s["name"]]["calibration"]],
                               s["stats"][parts[s["name"]]["calibration"]]) for s in sites}
    # Strictly above each site's 99th-percentile score (method "higher": an observed score), as passing is
    # score < warn_threshold: at least 99 % of every site's calibration images pass with no warning.
    warn = max(float(np.nextafter(np.quantile(v, QUANTILE, method="higher"), np.inf)) for v in calib.values())
    reject = max(REJECT_MARGIN * max(float(v.max()) for v in calib.values()), REJECT_OVER_WARN * warn)
    doc["warn_threshold"], doc["reject_threshold"] = warn, reject
    check = InputCheck(doc)
    held_out = {}
    for s in sites:
        for part in ("calibration", "test"):
            idx = parts[s["name"]][part]
            sc = scores(check, s["features"][idx], s["stats"][idx])
            held_out.setdefault(s["name"], {})[part] = _rates(sc, check)
    measurements = {
        "parts": {s["name"]: {p: int(len(i)) for p, i in parts[s["name"]].items()} for s in sites},
        "groups": {s["name"]: {"n_groups": int(len(set(s["groups"]))), "grouped_by": s["grouped_by"],
                               "unreadable_skipped": s["skipped"]} for s in sites},
        "held_out_ultrasound": held_out,
    }
    return doc, measurements


def _rates(sc: np.ndarray, check: InputCheck) -> dict:
    n = int(len(sc))
    passed = int((sc < check.warn_threshold).sum())
    refused = int((sc >= check.reject_threshold).sum())
    return {"n": n, "pass": passed, "warn": n - passed - refused, "reject": refused,
            "pass_rate": round(passed / n, 4) if n else None,
            "not_refused_rate": round((n - refused) / n, 4) if n else None,
            "score_median": round(float(np.median(sc)), 4) if n else None,
            "score_max": round(float(sc.max()), 4) if n else None}


# -- the non-ultrasound set --------------------------------------------------------------------------

def _rgb(arr: np.ndarray):
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip((a - a.min()) / max(float(a.max() - a.min()), 1e-9) * 255, 0, 255).astype(np.uint8)
    img = Image.fromarray(a)
    if img.mode == "RGBA":
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.split()[3])
        return bg
    return img.convert("RGB")


def _crops(img, rng, n: int) -> list:
    out = [img]
    w, h = img.size
    for _ in range(n):
        cw, ch = int(w * rng.uniform(0.5, 0.8)), int(h * rng.uniform(0.5, 0.8))
        if min(cw, ch) < 40:
            break
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out.append(img.crop((x, y, x + cw, y + ch)))
    return out


SKIMAGE_CATEGORIES = {
    "colour photograph": ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "colorwheel", "logo"],
    "greyscale photograph": ["camera", "moon", "coins", "clock", "brick", "grass", "gravel"],
    "document / text": ["page", "text"],
    "microscopy / fundus / CT phantom": ["immunohistochemistry", "retina", "cell", "microaneurysms",
                                         "shepp_logan_phantom"],
    "synthetic pattern": ["checkerboard", "binary_blobs", "horse"],
}


def _text_screenshot(rng, dark: bool):
    from PIL import Image, ImageDraw

    w, h = int(rng.integers(480, 1024)), int(rng.integers(320, 768))
    bg, fg = ((30, 30, 30), (220, 220, 220)) if dark else ((255, 255, 255), (20, 20, 20))
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    words = ("patient report findings impression breast ultrasound lesion benign malignant BI-RADS size mm "
             "left right clock position depth margin echo pattern posterior features recommendation").split()
    y = 10
    while y < h - 20:
        line = " ".join(rng.choice(words, size=int(rng.integers(4, 12))))
        draw.text((10, y), line, fill=fg)
        y += int(rng.integers(14, 24))
    if rng.random() < 0.5:  # a window title bar
        draw.rectangle((0, 0, w, 24), fill=(60, 90, 160))
    return img


def non_ultrasound_set(seed: int = 0) -> tuple[dict[str, list], list[str]]:
    """{category: [PIL RGB images]} and notes on what could not be made (scikit-image missing, ...)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    cats: dict[str, list] = {}
    notes = []
    try:
        import skimage.data as skd
    except ImportError:
        skd = None
        notes.append("scikit-image is not installed: its sample photographs, documents and microscopy are left out")
    if skd is not None:
        for cat, names in SKIMAGE_CATEGORIES.items():
            for name in names:
                try:
                    img = _rgb(getattr(skd, name)())
                except Exception as exc:  # a sample that needs a download (pooch) is not shipped
                    notes.append(f"skimage.data.{name} unavailable: {type(exc).__name__}")
                    continue
                cats.setdefault(cat, []).extend(_crops(img, rng, 3))
    blanks = []
    for value in [(0, 0, 0), (255, 255, 255), (128, 128, 128), (40, 40, 40), (200, 30, 30), (20, 60, 200)]:
        blanks.append(Image.new("RGB", (int(rng.integers(200, 800)), int(rng.integers(200, 600))), value))
    for _ in range(4):  # nearly blank: a faint gradient
        w, h = int(rng.integers(200, 800)), int(rng.integers(200, 600))
        ramp = np.linspace(rng.uniform(0, 120), rng.uniform(0, 120), w)[None, :].repeat(h, 0)
        blanks.append(_rgb(np.stack([ramp] * 3, axis=-1).astype(np.uint8)))
    cats["blank frame"] = blanks
    noise = []
    for i in range(12):
        w, h = int(rng.integers(200, 700)), int(rng.integers(200, 600))
        kind = i % 4
        if kind == 0:
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        elif kind == 1:
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 2:
            a = np.clip(rng.normal(128, 40, (h, w)), 0, 255).astype(np.uint8)
        else:
            a = (rng.random((h, w)) < 0.1).astype(np.uint8) * 255
        noise.append(_rgb(a))
    cats["noise frame"] = noise
    cats["text screenshot"] = [_text_screenshot(rng, dark=bool(i % 3 == 2)) for i in range(12)]
    return cats, notes


def score_images(engine: Engine, check: InputCheck, images: list) -> np.ndarray:
    out = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="PNG")  # through the served decoder, as an upload would be
        f, st = measure(engine, decode_rgb(buf.getvalue()))
        out.append(max(check.feature_distance(f), check.stats_distance(st) / check.stats_q99))
    return np.array(out)


def non_ultrasound_rates(engine: Engine, check: InputCheck, seed: int = 0) -> dict:
    cats, notes = non_ultrasound_set(seed)
    out: dict = {"categories": {}, "notes": notes}
    total = flagged = refused = 0
    for cat, images in cats.items():
        sc = score_images(engine, check, images)
        n, r = len(sc), int((sc >= check.reject_threshold).sum())
        w = int(((sc >= check.warn_threshold) & (sc < check.reject_threshold)).sum())
        out["categories"][cat] = {"n": n, "reject": r, "warn": w, "pass": n - r - w,
                                  "reject_rate": round(r / n, 4), "flagged_rate": round((r + w) / n, 4),
                                  "score_min": round(float(sc.min()), 4), "score_median": round(float(np.median(sc)), 4)}
        total, flagged, refused = total + n, flagged + r + w, refused + r
    out["all"] = {"n": total, "reject_rate": round(refused / total, 4), "flagged_rate": round(flagged / total, 4)}
    out["not_covered"] = ("X-ray, mammography, CT/MRI slices (only a CT phantom), other-organ and other-scanner "
                          "ultrasound: no such images ship with a package this project can install")
    return out


# -- the command -------------------------------------------------------------------------------------

def write_card(model_dir: Path, input_check: dict) -> Path:
    """Put input_check into model.json, leaving every other key as it was (same key order and formatting)."""
    path = Path(model_dir) / CARD_FILE
    raw = json.loads(path.read_text())
    raw["input_check"] = input_check
    ModelCard.from_dict(raw)  # validates the new field with the rest
    path.write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n")
    ModelCard.load(model_dir)  # and the tflite still matches its sha256
    return path


def markdown(doc: dict) -> str:
    m = doc["fitted"]
    lines = ["# Input check (is this a breast-ultrasound frame?)", "",
             "Research use only. Not a medical device.", "",
             f"Model `{m['model']}`; score = {FORMAT}; {m['components']} principal components.",
             f"warn_threshold **{doc['warn_threshold']:.3f}** (highest per-site {QUANTILE:.0%} quantile on the "
             f"calibration part), reject_threshold **{doc['reject_threshold']:.3f}** (the larger of {REJECT_MARGIN} x "
             f"the highest calibration score and {REJECT_OVER_WARN} x warn_threshold).", "",
             f"Parts: {m['parts_from']}.", "",
             "## Held-out breast ultrasound (groups never used to fit)", "",
             "| site | part | n | passed (no warning) | warned | refused | median score | max score |",
             "|---|---|---|---|---|---|---|---|"]
    for site, parts in m["held_out_ultrasound"].items():
        for part, r in parts.items():
            lines.append(f"| {site} | {part} | {r['n']} | {r['pass_rate']:.1%} | {r['warn']} | {r['reject']} | "
                         f"{r['score_median']:.3f} | {r['score_max']:.3f} |")
    nu = m["non_ultrasound"]
    lines += ["", "## Non-ultrasound images", "",
              "| category | n | refused (422) | warned | flagged (refused or warned) | lowest score |",
              "|---|---|---|---|---|---|"]
    for cat, r in nu["categories"].items():
        lines.append(f"| {cat} | {r['n']} | {r['reject_rate']:.1%} | {r['warn']} | {r['flagged_rate']:.1%} | "
                     f"{r['score_min']:.3f} |")
    lines.append(f"| **all** | {nu['all']['n']} | {nu['all']['reject_rate']:.1%} | | {nu['all']['flagged_rate']:.1%} | |")
    lines += ["", f"Not covered: {nu['not_covered']}."] + [f"- {n}" for n in nu["notes"]]
    grouping = ("Groups (for the calibration/test halves): the model's own, from its split file" if
                m.get("parts_from", "").startswith("the model's split") else
                "Groups: " + "; ".join(f"{k}: {v['n_groups']} groups by {v['grouped_by']}"
                                       for k, v in m["groups"].items()))
    lines += ["", grouping,
              "", f"Fitted {m['created_at']} by `{m['command']}`."]
    return "\n".join(lines) + "\n"


def _engine_without_check(model_dir: Path) -> Engine:
    """The model's Engine, loaded from a copy whose card has no input_check: a refit must not depend on the old
    check (which may be from an older format, or fitted on other features, and so refuse to load)."""
    import shutil
    import tempfile

    raw = json.loads((model_dir / CARD_FILE).read_text())
    if "input_check" not in raw:
        return Engine(model_dir)
    raw.pop("input_check")
    tmp = Path(tempfile.mkdtemp(prefix="input-check-"))
    try:
        shutil.copy2(model_dir / MODEL_FILE, tmp / MODEL_FILE)
        (tmp / CARD_FILE).write_text(json.dumps(raw))
        engine = Engine(tmp)
        engine.model_dir = model_dir
        return engine
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the Engine holds the model's bytes, not the file


def run(model_dir: Path, data: list[Path], *, report: Path, components: int = 32, seed: int = 0,
        max_images: int = 0, dry_run: bool = False, command: str = "", split: Path | None = None) -> dict:
    engine = _engine_without_check(Path(model_dir))
    split_doc = json.loads(Path(split).read_text()) if split else None
    sites = [load_site(engine, Path(root), max_images=max_images) for root in data]
    doc, measured = fit(sites, components=components, seed=seed, split_doc=split_doc)
    check = InputCheck(doc, feature_dim=doc["features"]["dim"])
    measured["non_ultrasound"] = non_ultrasound_rates(engine, check, seed)
    doc["format"] = FORMAT
    doc["fitted"] = {
        "model": f"{engine.card.name} {engine.card.version}",
        "command": command or "python -m model_training input-check",
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sites": [s["name"] for s in sites], "seed": seed, "components": len(doc["features"]["eigenvalues"]),
        "quantile": QUANTILE, "reject_margin": REJECT_MARGIN, "reject_over_warn": REJECT_OVER_WARN,
        "parts_from": (f"the model's split ({split}): the images it trained on fit the density, its held-out "
                       "test images, halved by group, are the calibration and test parts") if split else
                      ("this command's own group-aware deal, fit/calibration/test " +
                       "/".join(f"{v:.0%}" for v in PARTS.values()) + " per site (the model may have trained on "
                       "some calibration/test images)"),
        **measured,
    }
    report.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in doc.items() if k not in ("features",)}
    (report / "input_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    (report / "input_check.md").write_text(markdown(doc))
    if not dry_run:
        write_card(model_dir, doc)
    return doc


def run_cli(args) -> int:
    command = (f"python -m model_training input-check --model {args.model} "
               + " ".join(f"--data {d}" for d in args.data)
               + f" --components {args.components} --seed {args.seed}"
               + (f" --max-images {args.max_images}" if args.max_images else "")
               + (f" --split {args.split}" if args.split else ""))
    doc = run(args.model, args.data, report=args.report, components=args.components, seed=args.seed,
              max_images=args.max_images, dry_run=args.dry_run, command=command, split=args.split)
    print(markdown(doc))
    print(f"written: {args.report}/input_check.json, input_check.md"
          + ("" if args.dry_run else f"; {args.model}/{CARD_FILE} input_check"))
    return 0
