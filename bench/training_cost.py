"""Training cost: wall time per stage and peak memory, read from what `make train` recorded.

The bench never retrains the bundled model (that takes minutes and the whole
machine); it reports what the training run that produced the model wrote down.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _find_timings(doc, path="") -> tuple[str, dict] | None:
    """The first dict under a key that looks like per-stage timings, searched depth-first."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("timings", "stage_timings", "stages_s", "wall_s_per_stage") and isinstance(value, dict):
                return f"{path}{key}", value
        for key, value in doc.items():
            found = _find_timings(value, f"{path}{key}.")
            if found:
                return found
    return None


def _find_peak(doc) -> object | None:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if "peak" in key.lower() and ("rss" in key.lower() or "mem" in key.lower()):
                return {key: value}
        for value in doc.values():
            found = _find_peak(value)
            if found:
                return found
    return None


def run(*, model_dir: Path, report_dir: Path) -> dict:
    candidates = [Path(model_dir) / "model.json", *sorted(Path(report_dir).glob("*.json"))] if Path(report_dir).is_dir() \
        else [Path(model_dir) / "model.json"]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue
        found = _find_timings(doc)
        if not found:
            continue
        where, timings = found
        stages = [{"name": k, "wall_s": round(float(v), 1)} for k, v in timings.items()
                  if isinstance(v, (int, float)) and k not in ("total", "total_s")]
        total = timings.get("total", timings.get("total_s", sum(s["wall_s"] for s in stages)))
        peak = _find_peak(doc)
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        return {"available": True, "source": f"`{rel}` ({where})", "stages": stages,
                "total_wall_s": round(float(total), 1),
                "peak_memory": ", ".join(f"{k} = {v}" for k, v in peak.items()) if peak else "not recorded"}
    return {"available": False,
            "reason": f"no per-stage timings found in {Path(model_dir) / 'model.json'} or {report_dir}/*.json "
            "(the bench reads what `make train` recorded and does not retrain)"}
