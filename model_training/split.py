"""Leakage-free split: every duplicate group wholly in train, val or test; stratified by class; seeded."""

from __future__ import annotations

import collections

import numpy as np

SPLITS = ("train", "val", "test")


def group_labels(group_of: list[int], labels: list[str]) -> dict[int, str]:
    """The label a group is stratified by: its majority label (ties -> alphabetical, for determinism)."""
    votes: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for g, label in zip(group_of, labels):
        votes[g][label] += 1
    return {g: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for g, c in votes.items()}


def split_groups(
    group_of: list[int], labels: list[str], *, val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Assign each image a split name. Groups are dealt, largest first, per class, to the split
    furthest below its target share of that class, so class ratios match and no group is cut."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    fractions = {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(group_of):
        members[g].append(i)
    glabel = group_labels(group_of, labels)
    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for label in sorted(set(glabel.values())):
        groups = sorted(g for g in members if glabel[g] == label)
        rng.shuffle(groups)
        groups.sort(key=lambda g: -len(members[g]))  # stable: shuffled order within equal sizes
        total = sum(len(members[g]) for g in groups)
        filled = dict.fromkeys(SPLITS, 0)
        for g in groups:
            # Deficit relative to target; test and val first on ties so small classes reach them.
            name = max(("test", "val", "train"), key=lambda s: fractions[s] * total - filled[s])
            assignment[g] = name
            filled[name] += len(members[g])
    return [assignment[g] for g in group_of]


def split_counts(split_of: list[str], labels: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for s, label in zip(split_of, labels):
        counts[s][label] = counts[s].get(label, 0) + 1
    return {s: dict(sorted(c.items())) | {"total": sum(c.values())} for s, c in counts.items()}


def assign_folds(group_of: list[int], labels: list[str], *, k: int, seed: int) -> list[int]:
    """Fold index (0..k-1) per image for group-aware, class-stratified k-fold cross-validation:
    per class, groups are dealt largest first (shuffled within equal sizes) to the fold holding
    the fewest images of that class, so no group is cut and class ratios match across folds."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(group_of):
        members[g].append(i)
    glabel = group_labels(group_of, labels)
    rng = np.random.default_rng(seed)
    fold_of_group: dict[int, int] = {}
    for label in sorted(set(glabel.values())):
        groups = sorted(g for g in members if glabel[g] == label)
        rng.shuffle(groups)
        groups.sort(key=lambda g: -len(members[g]))
        filled = [0] * k
        for g in groups:
            fold = min(range(k), key=lambda f: (filled[f], f))
            fold_of_group[g] = fold
            filled[fold] += len(members[g])
    return [fold_of_group[g] for g in group_of]
