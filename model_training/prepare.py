"""Data -> audit -> leakage-free split -> model-sized arrays: the first step shared by `train` and `cv`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from . import audit as audit_mod
from .config import TrainConfig
from .data import Sample, decode_all, discover, fingerprint, to_arrays
from .errors import DataFolderError
from .split import SPLITS, split_counts, split_groups


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prepared:
    labels: list[str]  # output order
    samples: list[Sample]  # every decoded image, conflicting groups included
    fingerprint: str
    audit: dict
    group_of: list[int]  # duplicate group of each sample
    idx: dict[str, list[int]]  # split -> sample indices (conflicting groups left out unless kept)
    y: dict[str, np.ndarray]  # split -> label indices into `labels`
    x: dict[str, np.ndarray]  # split -> (N, S, S, 3) float32 in [0, 255], the serving preprocessing
    counts: dict

    def keys(self, split: str) -> list[str]:
        return [self.samples[i].key for i in self.idx[split]]


def prepare(cfg: TrainConfig) -> Prepared:
    """Decode, audit (audit.json) and split (split.json) cfg.data; both files go to cfg.report."""
    cfg.report.mkdir(parents=True, exist_ok=True)
    all_samples, labels = discover(cfg.folder)
    samples, images = decode_all(all_samples, skip_bad=cfg.skip_bad)
    fp = fingerprint(samples)
    dup, audit = audit_mod.run(samples, images, threshold=cfg.near_dup_threshold, fingerprint=fp,
                               bad_skipped=len(all_samples) - len(samples))
    audit_mod.write_json(audit, cfg.report / "audit.json")
    print(audit_mod.summary_text(audit))
    sample_labels = [s.label for s in samples]
    conflicted = {i for g in dup.conflicting_groups(sample_labels) for i in g}
    keep = [i for i in range(len(samples)) if cfg.keep_conflicts or i not in conflicted]
    split_kept = split_groups([dup.group_of[i] for i in keep], [sample_labels[i] for i in keep],
                              val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed)
    split_of = dict(zip(keep, split_kept))
    (cfg.report / "split.json").write_text(json.dumps({
        "seed": cfg.seed, "near_duplicate_threshold": cfg.near_dup_threshold,
        "conflicting_groups_left_out": not cfg.keep_conflicts,
        "files": {samples[i].key: {"label": sample_labels[i], "group": dup.group_of[i],
                                   "split": split_of.get(i, "excluded_conflict")} for i in range(len(samples))},
    }, indent=1) + "\n")
    counts = split_counts(split_kept, [sample_labels[i] for i in keep])
    counts["excluded_conflicting"] = len(samples) - len(keep)
    idx = {s: [i for i in keep if split_of[i] == s] for s in SPLITS}
    for name in ("train", "val"):
        if not idx[name]:
            raise DataFolderError(f"the {name} split is empty: the folder has too few images or duplicate groups")
    y = {s: np.array([labels.index(sample_labels[i]) for i in idx[s]], dtype=np.int64) for s in SPLITS}
    x = {s: to_arrays([images[i] for i in idx[s]], cfg.input_size) for s in SPLITS}
    return Prepared(labels=labels, samples=samples, fingerprint=fp, audit=audit, group_of=list(dup.group_of),
                    idx=idx, y=y, x=x, counts=counts)
