"""Site-aware evaluation: per-site splits that keep patients and repeated frames whole, and
leave-one-site-out (train on every site but one, predict the one left out) on train + val."""

from __future__ import annotations

import dataclasses

import numpy as np

from .lesion_fit import FitConfig, fit, predict_logits
from .sites import Site
from .split import split_groups


@dataclasses.dataclass
class SiteSplit:
    site: Site
    trainval: np.ndarray  # indices into site
    test: np.ndarray
    excluded: np.ndarray  # groups whose images disagree on the label (left out, as in `train`)


def split_site(site: Site, *, test_fraction: float, seed: int, keep_conflicts: bool = False) -> SiteSplit:
    """Group-aware, class-stratified train+val / test split of one site."""
    labels = site.labels
    by_group: dict[str, set[str]] = {}
    for g, label in zip(site.groups, labels):
        by_group.setdefault(g, set()).add(label)
    conflicted = np.array([len(by_group[g]) > 1 for g in site.groups])
    keep = np.flatnonzero(~conflicted) if not keep_conflicts else np.arange(len(site))
    gid = {g: k for k, g in enumerate(sorted(set(site.groups)))}
    names = split_groups([gid[site.groups[i]] for i in keep], [labels[i] for i in keep],
                         val_fraction=0.0, test_fraction=test_fraction, seed=seed)
    names = np.array(names)
    return SiteSplit(site, keep[names != "test"], keep[names == "test"], np.flatnonzero(conflicted & ~np.isin(
        np.arange(len(site)), keep)))


@dataclasses.dataclass
class OutOfSite:
    """Predictions of a model that never saw this site, on its train + val images."""

    site: str
    trained_on: list[str]
    idx: np.ndarray  # indices into the site
    lesion: np.ndarray  # (views, N) logits
    malig: np.ndarray  # (views, N) logits
    heat: np.ndarray  # (N, G, G)
    seconds: float
    history: dict


def leave_one_site_out(splits: list[SiteSplit], cfg: FitConfig, *, flip: bool = True) -> list[OutOfSite]:
    if len(splits) < 2:
        return []
    out = []
    for held in splits:
        train = [s.site.subset(s.trainval) for s in splits if s is not held]
        names = [s.site.name for s in splits if s is not held]
        fitted = fit(train, cfg, label=f"LOSO {'+'.join(names)} -> {held.site.name}")
        logits = predict_logits(fitted.model, held.site.x[held.trainval], flip=flip)
        out.append(OutOfSite(held.site.name, names, held.trainval, logits["lesion"], logits["malig"], logits["heat"],
                             fitted.seconds, fitted.history))
        del fitted
    return out
