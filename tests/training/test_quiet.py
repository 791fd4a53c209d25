"""model_training.quiet: TensorFlow's and LiteRT's start-up lines are gone by default, back with BUSI_VERBOSE=1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from model_training import quiet

NOISE = ("oneDNN custom operations are on", "absl::InitializeLog", "XNNPACK delegate")
# Imports TensorFlow the way the training code does (through model_training first), builds a LiteRT
# interpreter, and prints what TF_CPP_MIN_LOG_LEVEL ended up as.
SCRIPT = """
import os, sys
import model_training
import keras, tensorflow as tf
from classifier.engine import Engine
Engine(sys.argv[1])
print("stderr still works", file=sys.stderr)
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""


def _run(tiny_model_dir, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model_dir)], capture_output=True, text=True,
                          timeout=300, env={**clean, **env}, check=True)


def test_tensorflow_and_litert_are_quiet_by_default(tiny_model_dir):
    out = _run(tiny_model_dir)
    assert out.stdout.strip() == quiet.QUIET_TF_LOG_LEVEL
    assert not [n for n in NOISE if n in out.stderr], out.stderr
    assert out.stderr.strip() == "stderr still works"  # other lines pass through


def test_busi_verbose_keeps_everything(tiny_model_dir):
    out = _run(tiny_model_dir, BUSI_VERBOSE="1")
    assert out.stdout.strip() == "None"  # TensorFlow's own default level
    assert "XNNPACK delegate" in out.stderr  # LiteRT prints it on every platform


def test_a_log_level_of_your_own_is_kept(tiny_model_dir):
    assert _run(tiny_model_dir, TF_CPP_MIN_LOG_LEVEL="1").stdout.strip() == "1"


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom model_training.__main__ import build_parser\nbuild_parser()\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_filtered_stderr_drops_only_full_noise_lines(capfd):
    import re

    with quiet.filtered_stderr(re.compile(r"noise \d+")):
        os.write(2, b"noise 1\nkeep: noise 2 inside\nnoise 3\nlast line without newline")
    assert capfd.readouterr().err == "keep: noise 2 inside\nlast line without newline"


def test_filtered_stderr_gives_everything_back_when_the_block_raises(capfd):
    import re

    try:
        with quiet.filtered_stderr(re.compile(r"noise")):
            os.write(2, b"noise\n")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert capfd.readouterr().err == "noise\n"


def test_retracing_warning_is_dropped_and_other_tensorflow_warnings_kept():
    def record(msg, level=logging.WARNING):
        return logging.LogRecord("tensorflow", level, __file__, 1, msg, None, None)

    retracing = ("5 out of the last 5 calls to <function TensorFlowTrainer.make_predict_function.<locals>."
                 "one_step_on_data_distributed at 0x7f> triggered tf.function retracing. Tracing is expensive")
    assert not quiet._drop_retracing(record(retracing))
    assert quiet._drop_retracing(record("Compiled the loaded model, but the compiled metrics have yet to be built."))
    assert quiet._drop_retracing(record(retracing, logging.ERROR))
