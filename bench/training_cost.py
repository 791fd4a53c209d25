"""Training cost: wall time (per stage where recorded) and peak memory, read from what `make train` recorded.

The bench never retrains the bundled model (that takes minutes and the whole
machine); it reports what the run that produced the bundled model wrote into
model.json (``extra.train_wall_seconds``, ``extra.peak_memory_mb`` and, when the
pipeline records them, per-stage seconds under ``extra.stage_seconds``/``timings``).
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_KEYS = ("stage_seconds", "stage_timings", "timings")


def run(*, model_dir: Path) -> dict:
    card_path = Path(model_dir) / "model.json"
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        return {"available": False, "reason": f"cannot read {card_path}: {exc}"}
    extra = card.get("extra") or {}
    wall, peak = extra.get("train_wall_seconds"), extra.get("peak_memory_mb")
    stages_raw = next((extra[k] for k in STAGE_KEYS if isinstance(extra.get(k), dict)), None)
    if wall is None and stages_raw is None:
        return {"available": False,
                "reason": f"{card_path} records no training time (extra.train_wall_seconds); the bench reads what "
                "`make train` recorded and does not retrain"}
    stages = [{"name": k, "wall_s": round(float(v), 1)} for k, v in (stages_raw or {}).items()
              if isinstance(v, (int, float))]
    config = extra.get("config") or {}
    rel = card_path.relative_to(REPO) if card_path.is_relative_to(REPO) else card_path
    return {
        "available": True,
        "source": f"`{rel}` extra (written by the training run that produced this model, {card.get('created_at', '?')})",
        "stages": stages,
        "stages_note": "" if stages else "the training pipeline records only the total, not per-stage times",
        "total_wall_s": round(float(wall), 1) if wall is not None else round(sum(s["wall_s"] for s in stages), 1),
        "peak_memory_mb": peak,
        "run": {k: config.get(k) for k in ("backbone", "input_size", "epochs", "quantize", "seed") if k in config},
        "split_counts": card.get("split_counts"),
    }
