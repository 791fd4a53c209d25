"""What a hospital would see: every image of a labelled site folder sent to the local API over real HTTP, at
each of the model's operating points, scored from the answers (the label as served, not recomputed).

    .venv/bin/python -m bench.site_eval --model lambda_src/model --data ../shared/data/uclm_dev [--data ...]
        [--split reports/split.json] [--out runs/site_eval]

Per set and operating point: malignant sensitivity and specificity (specificity = not malignant and not
labelled malignant), normal frames called normal, lesions called normal, accuracy, malignant AUC among
lesions (p(malignant | lesion) from the response's `decision`), refusals (422) and warnings. Intervals are
95 % bootstrap over patients when the folder's metadata CSV names them (frames of one patient are not
independent), else over images. With --split, a folder the model trained on is scored on its test split only.
Research use only; not a medical device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.parse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from .api_load import local_api, request

LABELS = ("normal", "benign", "malignant")
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".dcm": "application/dicom"}


def _images(root: Path, split: Path | None) -> tuple[list[tuple[Path, str]], str]:
    from model_training.data import discover
    from model_training.split_file import select_split

    samples, _ = discover(root)
    scored = f"all {len(samples)} images"
    if split is not None:
        samples, scored = select_split(samples, split, "test", root)
    return [(s.path, s.label) for s in samples], scored


def _groups(root: Path, paths: list[Path]) -> list[str]:
    from model_training.sites import _read_metadata

    meta = _read_metadata(root)
    return [meta.get(p.stem, {}).get("group", f"image:{p}") for p in paths]


def _point_metrics(y: np.ndarray, pred: np.ndarray, p_mal: np.ndarray) -> dict:
    mal, lesion = y == 2, y != 0
    out = {"n": int(len(y)),
           "sensitivity": float((pred[mal] == 2).mean()) if mal.any() else None,
           "specificity": float((pred[~mal] != 2).mean()) if (~mal).any() else None,
           "normals_called_normal": float((pred[y == 0] == 0).mean()) if (y == 0).any() else None,
           "lesions_called_normal": float((pred[lesion] == 0).mean()) if lesion.any() else None,
           "accuracy": float((pred == y).mean()) if len(y) else None}
    ok = lesion.any() and 0 < mal[lesion].sum() < lesion.sum()
    out["auc_malignant"] = float(roc_auc_score(mal[lesion], p_mal[lesion])) if ok else None
    return out


def score(y, pred, p_mal, groups, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Point metrics plus 95 % intervals from resampling groups (patients) with replacement."""
    y, pred, p_mal, groups = map(np.asarray, (y, pred, p_mal, groups))
    out = _point_metrics(y, pred, p_mal)
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        for k, v in _point_metrics(y[idx], pred[idx], p_mal[idx]).items():
            if v is not None and k != "n":
                boot.setdefault(k, []).append(v)
    out["ci95"] = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in boot.items()
                   if len(v) >= n_boot // 2}
    out["groups"] = int(len(ids))
    return out


def evaluate_site(port: int, root: Path, points: list[str], split: Path | None) -> dict:
    images, scored = _images(root, split)
    rows = []
    for path, label in tqdm(images, desc=f"POST {root.name}", unit="img", leave=False):
        data = path.read_bytes()
        answers = {}
        for name in points:
            status, body = request(port, "POST", "/predict?" + urllib.parse.urlencode({"operating_point": name}),
                                   body=data, headers={"Content-Type": CONTENT_TYPES.get(path.suffix.lower(),
                                                                                         "application/octet-stream")})
            doc = json.loads(body)
            answers[name] = (status, doc)
        rows.append((path, label, answers))
    answered = [r for r in rows if all(s == 200 for s, _ in r[2].values())]
    y = [LABELS.index(r[1]) for r in answered]
    groups = _groups(root, [r[0] for r in answered])
    result = {"scored": scored, "images": len(rows), "refused": {}, "warned": 0, "points": {}}
    for r in rows:
        for status, doc in r[2].values():
            if status != 200:
                code = doc.get("error", {}).get("code", str(status))
                result["refused"][code] = result["refused"].get(code, 0) + 1
                break
    result["warned"] = sum("unusual_input" in (r[2][points[0]][1].get("warnings") or []) for r in answered)
    for name in points:
        pred = [LABELS.index(r[2][name][1]["label"]) for r in answered]
        p_mal = [r[2][name][1]["decision"]["p_malignant_given_lesion"] for r in answered]
        result["points"][name] = score(y, pred, p_mal, groups)
    return result


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def table(results: dict) -> str:
    lines = ["| set | point | answered | sensitivity (95% CI) | specificity (95% CI) | normal frames called normal "
             "| lesions called normal | accuracy | AUC malignant |", "|---|---|---|---|---|---|---|---|---|"]
    for site, r in results.items():
        for name, m in r["points"].items():
            ci = lambda k: (f" ({m['ci95'][k][0]:.2f}-{m['ci95'][k][1]:.2f})" if k in m["ci95"] else "")  # noqa: E731
            lines.append(f"| {site} | {name} | {m['n']} of {r['images']} | {_f(m['sensitivity'])}{ci('sensitivity')} | "
                         f"{_f(m['specificity'])}{ci('specificity')} | {_f(m['normals_called_normal'])}"
                         f"{ci('normals_called_normal')} | {_f(m['lesions_called_normal'])} | {_f(m['accuracy'])} | "
                         f"{_f(m['auc_malignant'])}{ci('auc_malignant')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.site_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("lambda_src/model"), help="model folder to serve")
    p.add_argument("--data", type=Path, action="append", required=True, help="a labelled site folder (repeat)")
    p.add_argument("--split", type=Path, default=None,
                   help="the model's split.json: folders it trained on are scored on their test split only")
    p.add_argument("--out", type=Path, default=Path("runs/site_eval"), help="folder for results.json and table.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as logs, local_api(args.model, log_dir=Path(logs)) as server:
        _, health = request(server.port, "GET", "/health")
        model = json.loads(health)["model"]
        points = list(model.get("operating_points") or {"default": {}})
        results = {root.name: evaluate_site(server.port, root, points, args.split) for root in args.data}
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"model": {"name": model["name"], "version": model["version"]}, "sites": results}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = (f"Model {model['name']} {model['version']}, over HTTP (local API), labels as served.\n\n{table(results)}\n\n"
            + "\n".join(f"- {site}: {r['scored']}; refused {r['refused'] or 'none'}; warned {r['warned']}"
                        for site, r in results.items()) + "\n\nResearch use only; not a medical device.\n")
    (args.out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
