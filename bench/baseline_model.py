"""Builds the ORIGINAL serving path's model for timing: float32 ResNet50 at 224 -> .tflite.

Run as its own process (``python -m bench.baseline_model OUT``) so TensorFlow is
never imported into the process that takes the measurements. Random weights
are fine: timing does not depend on the weight values.
"""

from __future__ import annotations

import argparse
from pathlib import Path

INPUT_SIZE = 224
N_CLASSES = 3


def build(out: Path) -> Path:
    from model_training import quiet

    quiet.apply()  # TensorFlow's start-up lines (BUSI_VERBOSE=1 keeps them)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    # The old project: ResNet50 backbone without its ImageNet top, pooled, a
    # softmax head over the three classes (~94 MB as float32 tflite).
    backbone = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(INPUT_SIZE, INPUT_SIZE, 3), pooling="avg"
    )
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax")(backbone.output)
    model = keras.Model(backbone.input, outputs)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()  # float32, no quantisation
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(tflite)
    tmp.replace(out)  # atomic: a killed build never leaves a half-written cache file
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="where to write the float32 ResNet50 .tflite")
    args = parser.parse_args(argv)
    path = build(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
