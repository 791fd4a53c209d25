"""A tiny model made release-ready as `make promote` makes a real one: a card with calibration temperatures
and an operating point, synthetic out-of-site predictions (two sites, seeded logits), then the real
release_expectations.write_expectations (drift band + pre-traffic answers of examples/ through LiteRT)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def synthetic_loso(path: Path, *, n_per_site: int = 150, seed: int = 0, malignant_shift: float = 0.0) -> Path:
    """loso_predictions.npz in train's layout: site, key, label, (2 views, N) lesion and malignant logits."""
    rng = np.random.default_rng(seed)
    sites, labels, lesion, malig = [], [], [], []
    for site, classes in (("site_a", ("normal", "benign", "malignant")), ("site_b", ("benign", "malignant"))):
        lab = rng.choice(classes, size=n_per_site)
        sites += [site] * n_per_site
        labels += lab.tolist()
        lesion.append(np.where(lab == "normal", -2.0, 3.0) + rng.normal(0, 1.5, size=(2, n_per_site)))
        malig.append(np.where(lab == "malignant", 1.5, -1.0) + malignant_shift + rng.normal(0, 1.5, size=(2, n_per_site)))
    np.savez_compressed(path, site=np.array(sites), key=np.array([f"{i}.png" for i in range(len(sites))]),
                        label=np.array(labels), lesion_logits=np.concatenate(lesion, axis=1).astype(np.float32),
                        malignant_logits=np.concatenate(malig, axis=1).astype(np.float32))
    return path


def with_calibration(card: dict, n: int) -> dict:
    """What a lesion-recipe card carries for the band: temperatures, the default operating point, held-out
    input-check counts (an input check's parameters are not needed: the band reads only its counts)."""
    card = dict(card)
    card["operating_point"] = {"malignant_threshold": 0.35, "normal_threshold": 0.8, "chosen_by": "test"}
    card["extra"] = {**card.get("extra", {}), "calibration": {"malignant_temperature": 1.4, "lesion_temperature": 1.0,
                                                              "n": n}}
    return card


def make_release_ready(model_dir: Path, report_dir: Path) -> dict:
    from model_training.release_expectations import write_expectations

    report_dir.mkdir(parents=True, exist_ok=True)
    npz = synthetic_loso(report_dir / "loso_predictions.npz")
    card_path = model_dir / "model.json"
    card = with_calibration(json.loads(card_path.read_text()), n=300)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    assert npz.is_file()
    write_expectations(model_dir, report_dir, examples=EXAMPLES, root=REPO)
    return json.loads(card_path.read_text())
