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


def _deal(group_of: list[int], labels: list[str], *, seed: int, bins, pick) -> list:
    """Deal duplicate groups to bins, per class (a group's majority label), largest group first
    (shuffled within equal sizes, seeded); `pick(filled, total)` names the bin for the next group
    from the images of this class each bin holds so far. Returns the bin of every image."""
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(group_of):
        members[g].append(i)
    glabel = group_labels(group_of, labels)
    rng = np.random.default_rng(seed)
    bin_of_group: dict = {}
    for label in sorted(set(glabel.values())):
        groups = sorted(g for g in members if glabel[g] == label)
        rng.shuffle(groups)
        groups.sort(key=lambda g: -len(members[g]))  # stable: shuffled order within equal sizes
        total = sum(len(members[g]) for g in groups)
        filled = dict.fromkeys(bins, 0)
        for g in groups:
            chosen = pick(filled, total)
            bin_of_group[g] = chosen
            filled[chosen] += len(members[g])
    return [bin_of_group[g] for g in group_of]


def split_groups(
    group_of: list[int], labels: list[str], *, val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Assign each image a split name. Groups are dealt, largest first, per class, to the split
    furthest below its target share of that class, so class ratios match and no group is cut."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    fractions = {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    # Deficit relative to target; test and val first on ties so small classes reach them.
    def most_short(filled, total):
        return max(("test", "val", "train"), key=lambda s: fractions[s] * total - filled[s])

    return _deal(group_of, labels, seed=seed, bins=SPLITS, pick=most_short)


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
    return _deal(group_of, labels, seed=seed, bins=range(k),
                 pick=lambda filled, total: min(filled, key=lambda f: (filled[f], f)))
