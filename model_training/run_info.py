"""What every training run records about itself and seeds: the weights' identity, peak memory, determinism.
Neutral ground for both recipes (the frozen pipeline, the lesion pipeline, cv and cross-fit)."""

from __future__ import annotations

import resource
from pathlib import Path

from classifier.model_card import sha256_file


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def weights_id(weights: str) -> str:
    """The backbone weights as the card records them: a file's name and sha256, else the keyword (imagenet, none)."""
    p = Path(weights)
    return f"{p.name} sha256:{sha256_file(p)}" if p.is_file() else weights


def seed_everything(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF or already-initialised runtime: seeds still apply
        pass
