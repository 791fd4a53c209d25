"""Cross-fitting inside the training sites: the "normal" threshold of a model trained on every site.

Leave-one-site-out cannot set it: with BUSI the only site with normal frames, no left-out model was trained
with normal frames *and* predicts some, and a BUSI-only model calls BUS-BRA lesions normal with p ~ 0.6,
which pinned the out-of-site threshold at 0.957 and left 1 of 82 normal frames of another vendor normal.
Here each site's train + val is cut into K patient-grouped, label-stratified folds; each fold model trains
on every site's other folds (the training recipe as is) and predicts its fold. The "normal" threshold is
then the lowest that calls at most MAX_LESIONS_CALLED_NORMAL of the lesions normal **at every site**
(the worst site sets it). The test splits are never touched; the malignant thresholds stay out of site.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import TrainConfig
from .site_metrics import normal_threshold_for

if TYPE_CHECKING:  # the fitting code (TensorFlow) is imported where a fit runs: reading a saved cross-fit is light
    from .lesion_fit import FitConfig
    from .loso import SiteSplit

FILE = "cross_fit_predictions.npz"
DEFAULT_FOLDS = TrainConfig.cross_fit_folds


@dataclasses.dataclass
class CrossFit:
    """Out-of-fold predictions over every site's train + val (one row per image)."""

    site: np.ndarray  # (N,) site name
    key: np.ndarray  # (N,) sample key
    label: np.ndarray  # (N,)
    fold: np.ndarray  # (N,)
    lesion: np.ndarray  # (views, N) lesion logits
    malig: np.ndarray  # (views, N) malignant logits
    heat_peak: np.ndarray  # (N,)
    seconds: float = 0.0

    def save(self, path: Path) -> None:
        np.savez_compressed(path, site=self.site, key=self.key, label=self.label, fold=self.fold,
                            lesion_logits=self.lesion, malignant_logits=self.malig, heat_peak=self.heat_peak,
                            seconds=np.array(self.seconds))

    @classmethod
    def load(cls, path: Path) -> "CrossFit":
        z = np.load(path, allow_pickle=False)
        return cls(z["site"], z["key"], z["label"], z["fold"], z["lesion_logits"], z["malignant_logits"],
                   z["heat_peak"], float(z["seconds"]) if "seconds" in z.files else 0.0)

    def p_normal(self, t_lesion: float = 1.0) -> np.ndarray:
        """p(normal) as the served graph computes it: 1 - the mean over views of sigmoid(lesion / T)."""
        return 1.0 - (1.0 / (1.0 + np.exp(-self.lesion.astype(np.float64) / t_lesion))).mean(axis=0)


def folds_of(split: SiteSplit, k: int, seed: int) -> np.ndarray:
    """Fold index of each train + val image: patient groups kept whole, labels stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array(split.site.labels)[split.trainval]
    groups = np.array(split.site.groups)[split.trainval]
    out = np.zeros(len(split.trainval), int)
    for i, (_, hold) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(labels, labels,
                                                                                                  groups)):
        out[hold] = i
    return out


def cross_fit(splits: list[SiteSplit], cfg: FitConfig, *, k: int = DEFAULT_FOLDS, flip: bool = True) -> CrossFit:
    from .lesion_fit import fit, predict_logits

    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, not {k}")
    start = time.time()
    folds = [folds_of(sp, k, cfg.seed) for sp in splits]
    cols: dict[str, list] = {name: [] for name in ("site", "key", "label", "fold", "lesion", "malig", "peak")}
    for i in range(k):
        train = [sp.site.subset(sp.trainval[f != i]) for sp, f in zip(splits, folds)]
        fitted = fit(train, cfg, label=f"cross-fit {i + 1}/{k}")
        for sp, f in zip(splits, folds):
            idx = sp.trainval[f == i]
            logits = predict_logits(fitted.model, sp.site.x[idx], flip=flip)
            cols["site"] += [sp.site.name] * len(idx)
            cols["key"] += [sp.site.samples[j].key for j in idx]
            cols["label"] += [sp.site.labels[j] for j in idx]
            cols["fold"] += [i] * len(idx)
            cols["lesion"].append(logits["lesion"])
            cols["malig"].append(logits["malig"])
            cols["peak"].append(logits["heat"].reshape(len(idx), -1).max(axis=1) if len(idx) else np.zeros(0))
        del fitted
    return CrossFit(np.array(cols["site"]), np.array(cols["key"]), np.array(cols["label"]), np.array(cols["fold"]),
                    np.concatenate(cols["lesion"], axis=1), np.concatenate(cols["malig"], axis=1),
                    np.concatenate(cols["peak"]), round(time.time() - start, 1))


def normal_threshold(cf: CrossFit, max_lesions_called_normal: float, *, t_lesion: float = 1.0) -> dict:
    """The worst site's threshold: at most this share of each site's out-of-fold lesions reach it."""
    p = cf.p_normal(t_lesion)
    lesion = cf.label != "normal"
    per_site = {str(s): normal_threshold_for(p[(cf.site == s) & lesion], max_lesions_called_normal)
                for s in dict.fromkeys(cf.site.tolist()) if ((cf.site == s) & lesion).any()}
    threshold = max(per_site.values()) if per_site else 0.5
    normals = ~lesion
    k = int(cf.fold.max()) + 1 if len(cf.fold) else 0
    return {"normal_threshold": float(threshold), "per_site": per_site,
            "normals_called_normal": float((p[normals] >= threshold).mean()) if normals.any() else None,
            "rule": (f"<= {max_lesions_called_normal:.0%} of each site's lesions called normal, out of fold "
                     f"({k}-fold cross-fit by patient over every site's train + val)")}


def for_model(model_dir: Path, report_dir: Path, data_dirs: list[Path], *, weights: str | None = None,
              k: int = DEFAULT_FOLDS, cache_dir: Path = Path("runs/cache")) -> CrossFit:
    """Cross-fit with a trained model's own recipe (its model.json config) and split (its report's split.json,
    checked image by image), written to REPORT/cross_fit_predictions.npz: for models trained before this step."""
    import json

    from classifier.model_card import CARD_FILE

    from .errors import TrainingError
    from .lesion_fit import FitConfig
    from .loso import split_site
    from .sites import LEGACY_NEGATIVE_KINDS, load_sites

    config = json.loads((Path(model_dir) / CARD_FILE).read_text()).get("extra", {}).get("config") or {}
    if config.get("recipe") != "lesion":
        raise TrainingError(f"{model_dir}: not a lesion-recipe model (model.json extra.config.recipe)")
    cfg = FitConfig(input_size=config["input_size"], weights=weights or config["weights"], backbone=config["backbone"],
                    epochs=config["epochs"], unfreeze=config["unfreeze"], lr=config["fine_tune_lr"],
                    batch_size=config["batch_size"], seed=config["seed"],
                    hard_negatives=config.get("hard_negatives", False))
    split_file = Path(report_dir) / "split.json"
    if not split_file.is_file():
        raise TrainingError(f"{split_file}: not found (the model's split, which `train` writes into its report)")
    recorded = json.loads(split_file.read_text())
    sites = load_sites(data_dirs, side=cfg.input_size, cache_dir=cache_dir, skip_bad=config.get("skip_bad", False),
                       negative_kinds=tuple(config.get("negative_kinds", LEGACY_NEGATIVE_KINDS)))
    splits = [split_site(s, test_fraction=config["test_fraction"], seed=config["seed"],
                         keep_conflicts=config.get("keep_conflicts", False)) for s in sites]
    for sp in splits:
        files = (recorded["sites"].get(sp.site.name) or {}).get("files")
        if files is None:
            raise TrainingError(f"{sp.site.name}: not a site of this model (its split.json has "
                                f"{', '.join(recorded['sites'])})")
        ours = {sp.site.samples[i].key for i in sp.trainval}
        theirs = {key for key, f in files.items() if f["split"] == "trainval"}
        if ours != theirs:
            raise TrainingError(f"{sp.site.name}: the train + val images differ from the model's split.json "
                                f"({len(ours ^ theirs)} differ): not the data this model trained on")
    cf = cross_fit(splits, cfg, k=k, flip=config.get("tta_flip", "auto") != "off")
    cf.save(Path(report_dir) / FILE)
    return cf
