"""Measure `adapt` leave-one-site-out: a model trained on BUSI alone, adapted with 50/100/200 labelled
BUS-BRA train+val images (whole patients), scored on the BUS-BRA test split (never used by adapt)
through the served LiteRT path. Usage: python reports/adapt/measure_adapt.py (writes results.md here)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "lambda_src")]

import numpy as np  # noqa: E402

from classifier.engine import Engine  # noqa: E402
from classifier.preprocessing import preprocess  # noqa: E402
from model_training.__main__ import main  # noqa: E402
from model_training.site_metrics import LABELS, site_metrics  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_1.0_224_imagenet_notop_from_coral_ptq.weights.h5"
WORK = REPO / "runs" / "adapt-measure"


def link_folder(dst: Path, files: dict, split: str) -> Path:
    """Symlinks to the BUS-BRA images of one split (and the metadata CSV, for patient groups)."""
    for key, f in files.items():
        if f["split"] != split:
            continue
        (dst / f["label"]).mkdir(parents=True, exist_ok=True)
        target = dst / key
        if not target.exists():
            os.symlink(SHARED / "busbra" / key, target)
    csv = dst / "bus_data.csv"
    if not csv.exists():
        os.symlink(SHARED / "busbra" / "bus_data.csv", csv)
    return dst


def score(model_dir: Path, folder: Path) -> dict:
    engine = Engine(model_dir)
    paths = sorted(folder.glob("*/*.png"))
    probs = np.array([engine.predict_array(preprocess(p.read_bytes(), engine.card.input_size,
                                                      engine.card.preprocessing_id)) for p in paths])
    labels = [p.parent.name for p in paths]
    op = engine.card.operating_point
    return site_metrics(labels, probs, op.get("malignant_threshold"), op.get("normal_threshold"), n_boot=300)


def run() -> None:
    files = json.loads((REPO / "reports" / "split.json").read_text())["sites"]["busbra"]["files"]
    trainval = link_folder(WORK / "busbra_trainval", files, "trainval")
    test = link_folder(WORK / "busbra_test", files, "test")
    base = WORK / "busi_only"
    if not (base / "model" / "model.keras").is_file():
        assert main(["train", "--data", str(SHARED / "busi"), "--weights", str(WEIGHTS), "--out", str(base / "model"),
                     "--report", str(base / "report"), "--work", str(base / "work")]) == 0
    rows = [("BUSI only, not adapted", 0, score(base / "model", test), None)]
    for n in (50, 100, 200):
        out = WORK / f"adapted_{n}"
        assert main(["adapt", "--model", str(base / "model"), "--data", str(trainval), "--out", str(out),
                     "--work", str(WORK / "adapt-work"), "--max-images", str(n)]) == 0
        card = json.loads((out / "model.json").read_text())
        rows.append((f"adapted with {n}", card["extra"]["adapt"]["images"], score(out, test),
                     card["extra"]["adapt"]["chosen"]))
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    ci = lambda m, k: (f" ({m['ci95'][k][0]:.2f}-{m['ci95'][k][1]:.2f})" if k in m.get("ci95", {}) else "")  # noqa: E731
    lines = ["| model | local images used | chosen by CV | AUC malignant (95% CI) | sensitivity | specificity | ECE | lesions called normal |",
             "|---|---|---|---|---|---|---|---|"]
    for name, n, m, chosen in rows:
        lines.append(f"| {name} | {n} | {chosen or '-'} | {f(m['auc_malignant'])}{ci(m, 'auc_malignant')} | "
                     f"{f(m['sensitivity'])} | {f(m['specificity'])} | {f(m['ece_malignant'])} | {f(m['lesions_called_normal'])} |")
    text = ("# `adapt` measured leave-one-site-out\n\nA lesion-recipe model trained on BUSI alone (`train --data busi`, "
            "defaults), adapted with N labelled BUS-BRA train+val images (`adapt --max-images N`, whole patients), "
            f"scored on the {sum(1 for v in files.values() if v['split'] == 'test')} BUS-BRA test-split images "
            "through LiteRT. Made by `python reports/adapt/measure_adapt.py`.\n\n" + "\n".join(lines) + "\n")
    (Path(__file__).parent / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    run()
