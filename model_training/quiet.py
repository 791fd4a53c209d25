"""Quiet by default, verbose on request: TensorFlow's chatter is silenced before TensorFlow is imported.

``model_training/__init__.py`` calls ``apply()`` first thing, so every ``python -m model_training``
command, ``bench`` and the tests get it; it only sets environment variables and filters, and imports
nothing heavy (``--help`` stays instant). What it silences, each harmless:

* TensorFlow's C++ log lines: ``TF_CPP_MIN_LOG_LEVEL=3`` unless you set it yourself. Among them the
  CPU-instructions banner and tf.data's ``E0000 ... NodeDef mentions attribute use_unbounded_threadpool
  which is not in the op definition`` (TensorFlow 2.21's graph rewrite adds an attribute its own op
  definition lacks; the pipeline runs unchanged). Real failures still raise Python exceptions.
* ``oneDNN custom operations are on`` and absl's ``WARNING: All log messages before
  absl::InitializeLog() is called are written to STDERR``, twice: TensorFlow's shared libraries print
  them while they load, before any log level is read. stderr is filtered while ``import tensorflow``
  runs, and only then; every other line it printed is written back.
* ``WARNING:tensorflow:N out of the last M calls to <function ...> triggered tf.function retracing``:
  each head, ensemble member and cross-validation fold is a new model whose predict and train
  functions are traced once each, by design.
* LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` on a process's first
  interpreter: stderr is filtered, the same way, while an ``Interpreter`` is built and allocated.

``BUSI_VERBOSE=1`` turns all of it off (TensorFlow then logs at its own default level). A
``TF_CPP_MIN_LOG_LEVEL`` you set yourself is kept; ``0`` also keeps the lines printed while loading.
"""

from __future__ import annotations

import functools
import importlib.abc
import logging
import os
import re
import sys

from classifier.stderr_filter import XNNPACK_NOISE, filtered_stderr  # serving code, no TensorFlow in it

VERBOSE_ENV = "BUSI_VERBOSE"
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
#: 3: C++ FATAL only (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR).
QUIET_TF_LOG_LEVEL = "3"

#: Lines TensorFlow's libraries print on stderr while they load, whatever the log level.
IMPORT_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [0-9:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. .*"
)
#: tf.function's retracing warning (tensorflow/python/eager/polymorphic_function), by its exact wording.
RETRACING = re.compile(r"\d+ out of the last \d+ calls to .+ triggered tf\.function retracing\. ", re.DOTALL)


_applied = False


def verbose() -> bool:
    """BUSI_VERBOSE set to anything but '', 0, false, no or off."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def apply() -> None:
    """Silence TensorFlow and LiteRT (idempotent); call it before either is imported."""
    global _applied
    if _applied or verbose():
        return
    _applied = True
    os.environ.setdefault(TF_LOG_ENV, QUIET_TF_LOG_LEVEL)
    logging.getLogger("tensorflow").addFilter(_drop_retracing)
    if os.environ[TF_LOG_ENV].strip() == "0":
        return  # a TF_CPP_MIN_LOG_LEVEL=0 of your own asks for the INFO lines, these included
    finder = _QuietImports()
    sys.meta_path.insert(0, finder)
    if "ai_edge_litert.interpreter" in sys.modules:  # imported already (the serving package was first)
        _quiet_interpreter(sys.modules["ai_edge_litert.interpreter"])


def _drop_retracing(record: logging.LogRecord) -> bool:
    return not (record.levelno == logging.WARNING and RETRACING.match(record.getMessage()))


def _quiet_interpreter(module) -> None:
    """LiteRT's Interpreter with stderr filtered for XNNPACK_NOISE while it is built and allocated
    (the delegate is applied on the first allocate_tensors)."""
    cls = getattr(module, "Interpreter", None)
    for name in ("__init__", "allocate_tensors"):
        method = getattr(cls, name, None)
        if method is None or getattr(method, "_quiet", False):
            continue

        def quiet(self, *args, _method=method, **kwargs):
            with filtered_stderr(XNNPACK_NOISE):
                return _method(self, *args, **kwargs)

        quiet = functools.wraps(method)(quiet)
        quiet._quiet = True
        setattr(cls, name, quiet)


class _QuietImports(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` and ``ai_edge_litert.interpreter`` as the finders after it would, and makes
    their import quiet: TensorFlow's runs with stderr filtered, LiteRT's Interpreter gets the same."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in ("tensorflow", "ai_edge_litert.interpreter"):
            return None
        spec = self._spec_from_the_others(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module  # this spec's own loader instance; the class is untouched

        if fullname == "tensorflow":
            def quiet_exec_module(module):
                with filtered_stderr(IMPORT_NOISE):
                    exec_module(module)
        else:
            def quiet_exec_module(module):
                exec_module(module)
                _quiet_interpreter(module)

        loader.exec_module = quiet_exec_module
        return spec

    def _spec_from_the_others(self, fullname, path, target):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None
