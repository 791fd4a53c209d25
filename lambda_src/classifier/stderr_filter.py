"""Drop known, harmless lines that C++ libraries write straight to file descriptor 2.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` on a process's first interpreter,
whatever the log level. The local API and the demo build their interpreter inside ``filtered_stderr`` so a
newcomer's terminal shows only what they asked for; training (``model_training.quiet``) uses the same
filter for TensorFlow's import-time lines. Lambda does not use it: CloudWatch keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

#: LiteRT's line on the first interpreter of a process (not governed by TF_CPP_MIN_LOG_LEVEL).
XNNPACK_NOISE = re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern):
    """Capture file descriptor 2 (where C++ libraries write) for the block, then write back every
    line that ``noise`` does not fully match. Everything comes back if the block raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    failed = True
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
                failed = False
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                text = capture.read().decode("utf-8", errors="replace")
                kept = text if failed else "".join(
                    line for line in text.splitlines(keepends=True) if not noise.fullmatch(line.rstrip("\r\n")))
                if kept:
                    os.write(2, kept.encode("utf-8"))
    finally:
        os.close(saved)
