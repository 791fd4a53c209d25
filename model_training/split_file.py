"""A run's split.json read back: which images of a folder the model held out (evaluate, operating points,
bench/site_eval score only those of a folder it trained on)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DataFolderError, TrainingError


def _split_site(split: dict, data: Path) -> str | None:
    """The split's entry for this folder: by folder name, then by the root path it recorded; None if neither."""
    if "sites" not in split:  # a frozen-recipe split: one site, whatever its folder is called
        return ""
    name = Path(data).resolve().name
    if name in split["sites"]:
        return name
    for site, entry in split["sites"].items():
        root = entry.get("root")
        if root and Path(root).resolve() == Path(data).resolve():
            return site
    return None


def select_split(samples, split_file: Path, split_name: str, data: Path | None = None):
    """The images that `split_file` (a training run's split.json) puts in `split_name`, and what was scored.

    A folder that is not one of the split's sites was never trained on: every image is kept.
    """
    data = Path(data) if data is not None else (Path(samples[0].path).parents[1] if samples else Path("."))
    try:
        split = json.loads(Path(split_file).read_text())
        site = _split_site(split, data)
        if site is None:
            sites = ", ".join(split["sites"])
            return samples, (f"all {len(samples)} images: {data.name} is not one of the model's training sites "
                             f"({sites}, from {split_file}), so none of them was trained on")
        files = split["sites"][site]["files"] if site else split["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"--split {split_file}: not a split.json written by `train` ({exc})") from exc
    chosen = [s for s in samples if files.get(s.key, {}).get("split") == split_name]
    if not chosen:
        raise DataFolderError(f"no image of {split_file} split {split_name!r} is in this folder")
    unknown = sum(s.key not in files for s in samples)
    held = "held out from training" if split_name == "test" else "NOT held out: the model trained on them"
    return chosen, (f"the {split_name} split: {len(chosen)} of {len(samples)} images of {data.name} "
                    f"({held}; from {split_file})"
                    + (f"; {unknown} images not in the split file were left out" if unknown else ""))
