"""The ORIGINAL serving path, reproduced for timing side by side with ours.

What the project this one replaces did per request: parse ``{"image": base64}``,
decode with Pillow, resize with NEAREST to 224, apply the ImageNet (caffe-style
BGR mean) normalisation in numpy, create a NEW TFLite interpreter for the
float32 ResNet50 and allocate its tensors, invoke, and return percentages as
strings. We apply the normalisation once (the old code applied it twice; the
second pass costs well under 1 ms, so leaving it out only flatters the baseline).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from .baseline_model import INPUT_SIZE

CACHE_NAME = "baseline_resnet50_f32_224.tflite"
LABELS = ("benign", "malignant", "normal")  # the old model's alphabetical order
_IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def ensure_model(cache_dir: Path) -> Path:
    """The cached float32 ResNet50 .tflite, built once in a separate process (TensorFlow stays out of here)."""
    path = Path(cache_dir) / CACHE_NAME
    if path.is_file():
        return path
    print(f"building the baseline ResNet50 float32 tflite into {path} (once, ~20 s) ...", file=sys.stderr)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.baseline_model", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0 or not path.is_file():
        raise RuntimeError(f"building the baseline model failed:\n{proc.stderr[-3000:]}")
    return path


def _preprocess(image: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(image)).convert("RGB")
    img = img.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.NEAREST)
    return np.asarray(img, dtype=np.float32)[..., ::-1] - _IMAGENET_BGR_MEAN


def _new_interpreter(model_path: Path, num_threads: int) -> Interpreter:
    interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)  # per request, as before
    interpreter.allocate_tensors()
    return interpreter


def _invoke(interpreter: Interpreter, x: np.ndarray) -> np.ndarray:
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x[np.newaxis].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])[0]


def original_handler(event: dict, model_path: Path, num_threads: int = 1) -> dict:
    """One request through the original path; returns an API Gateway proxy response."""
    payload = json.loads(event["body"])
    x = _preprocess(base64.b64decode(payload["image"]))
    probs = _invoke(_new_interpreter(model_path, num_threads), x)
    body = {label: f"{p * 100:.2f}%" for label, p in zip(LABELS, probs)}
    return {"statusCode": 200, "body": json.dumps(body)}


def breakdown(model_path: Path, images: list[bytes], num_threads: int = 1) -> dict:
    """p50 of each step of the original path: decode + resize + normalise, new interpreter, invoke."""
    t_pre, t_new, t_inv = [], [], []
    for image in images:
        t0 = time.perf_counter()
        x = _preprocess(image)
        t1 = time.perf_counter()
        interpreter = _new_interpreter(model_path, num_threads)
        t2 = time.perf_counter()
        _invoke(interpreter, x)
        t3 = time.perf_counter()
        t_pre.append(t1 - t0), t_new.append(t2 - t1), t_inv.append(t3 - t2)
    return {name: round(float(np.median(v)) * 1000, 3)
            for name, v in (("decode_resize_normalise", t_pre), ("new_interpreter", t_new), ("invoke", t_inv))}
