"""`audit`: counts, image sizes, duplicate groups and label conflicts of a data folder, as JSON."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from .data import Sample
from .dedup import NEAR_DUP_THRESHOLD, DuplicateAudit, find_duplicates


def audit_dict(samples: list[Sample], images, dup: DuplicateAudit, *, threshold: float, fingerprint: str,
               bad_skipped: int = 0) -> dict:
    labels = [s.label for s in samples]
    widths = np.array([img.size[0] for img in images])
    heights = np.array([img.size[1] for img in images])

    def group_entry(members):
        return {"files": [samples[i].key for i in members], "labels": sorted({labels[i] for i in members})}

    dup_groups = dup.duplicate_groups()
    conflicts = dup.conflicting_groups(labels)
    return {
        "images": len(samples),
        "per_class": dict(sorted(collections.Counter(labels).items())),
        "bad_files_skipped": bad_skipped,
        "dataset_fingerprint": fingerprint,
        "width": {"min": int(widths.min()), "median": float(np.median(widths)), "max": int(widths.max())},
        "height": {"min": int(heights.min()), "median": float(np.median(heights)), "max": int(heights.max())},
        "near_duplicate_threshold": threshold,
        "exact_duplicate_pairs": [[samples[i].key, samples[j].key] for i, j in dup.exact_pairs],
        "near_duplicate_pairs": len(dup.near_pairs),
        "groups": len(dup.groups()),
        "duplicate_groups": [group_entry(m) for m in sorted(dup_groups, key=len, reverse=True)],
        "images_in_duplicate_groups": sum(len(m) for m in dup_groups),
        "conflicting_groups": [group_entry(m) for m in conflicts],
        "images_in_conflicting_groups": sum(len(m) for m in conflicts),
    }


def run(samples, images, *, threshold: float = NEAR_DUP_THRESHOLD, fingerprint: str = "", bad_skipped: int = 0):
    dup = find_duplicates(images, threshold=threshold)
    return dup, audit_dict(samples, images, dup, threshold=threshold, fingerprint=fingerprint,
                           bad_skipped=bad_skipped)


def summary_text(a: dict) -> str:
    lines = [
        f"images: {a['images']}  " + "  ".join(f"{k}: {v}" for k, v in a["per_class"].items()),
        f"width {a['width']['min']}-{a['width']['max']} px (median {a['width']['median']:.0f}), "
        f"height {a['height']['min']}-{a['height']['max']} px (median {a['height']['median']:.0f})",
        f"exact duplicate pairs: {len(a['exact_duplicate_pairs'])}; near-duplicate pairs "
        f"(thumbnail correlation >= {a['near_duplicate_threshold']}): {a['near_duplicate_pairs']}",
        f"duplicate groups: {len(a['duplicate_groups'])} holding {a['images_in_duplicate_groups']} images",
        f"conflicting-label groups: {len(a['conflicting_groups'])} holding {a['images_in_conflicting_groups']} images",
    ]
    for g in a["duplicate_groups"][:8]:  # the largest; all of them are in the JSON
        lines.append(f"  group of {len(g['files'])} ({'/'.join(g['labels'])}): {', '.join(g['files'])}")
    if len(a["duplicate_groups"]) > 8:
        lines.append(f"  ... {len(a['duplicate_groups']) - 8} more duplicate groups in the JSON")
    for g in a["conflicting_groups"]:
        lines.append(f"  conflict {'/'.join(g['labels'])}: {', '.join(g['files'])}")
    for pair in a["exact_duplicate_pairs"]:
        lines.append(f"  exact duplicate: {pair[0]} == {pair[1]}")
    return "\n".join(lines)


def write_json(a: dict, path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(a, indent=1) + "\n")
