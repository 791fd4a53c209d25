"""The warnings policy (pyproject.toml [tool.pytest.ini_options] filterwarnings): every warning is an
error, and each exception to that names one warning exactly (message, category, module) and says why."""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
SOURCES = ("model_training", "lambda_src/classifier", "bench", "infra", "tests", "app.py")


def _ini() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["pytest"]["ini_options"]


def _filters() -> list[str]:
    return list(_ini().get("filterwarnings", []))


def test_every_warning_is_an_error_by_default():
    filters = _filters()
    assert filters and filters[0] == "error", "filterwarnings must start with \"error\""
    assert filters.count("error") == 1
    addopts = str(_ini().get("addopts", ""))
    for flag in ("-W", "--disable-warnings", "-p no:warnings", "--pythonwarnings"):
        assert flag not in addopts, f"addopts must not change the warnings policy ({flag})"


@pytest.mark.parametrize("entry", _filters()[1:])
def test_each_exception_names_one_warning_exactly(entry):
    action, _, rest = entry.partition(":")
    assert action == "ignore", f"{entry!r}: only 'ignore' entries may follow 'error'"
    parts = rest.split(":")  # message:category:module[:lineno]; pytest splits on ':', so none in the message
    assert len(parts) in (3, 4), f"{entry!r}: give the message, the category and the module"
    message, category, module = parts[:3]
    assert len(message) >= 20 and ".*" not in message and not message.startswith(("^", "(")), \
        f"{entry!r}: the message must be the warning's own text, not a pattern for many"
    assert re.fullmatch(r"[A-Za-z]+Warning", category) and category != "Warning", \
        f"{entry!r}: name the warning's category"
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\\\.[A-Za-z_][A-Za-z0-9_]*)+", module), \
        f"{entry!r}: name the dotted module that warns (matched as a prefix, so the whole name)"
    assert not module.startswith(("model_training", "classifier", "bench", "infra", "tests")), \
        f"{entry!r}: fix our own code's warnings (or assert them with pytest.warns) rather than ignoring them"


def test_each_exception_has_a_comment_saying_why():
    lines = PYPROJECT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("filterwarnings"))
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "]")
    block = [line.strip() for line in lines[start + 1:end]]
    for i, line in enumerate(block):
        if line.startswith('"ignore'):
            assert i > 0 and block[i - 1].startswith("# ") and len(block[i - 1]) > 10, \
                f"{line[:60]}...: put a one-line comment saying why just above it"


def test_a_warning_fails_the_test_at_run_time():
    """Not only written down: a warning raised here is an exception, whatever its category."""
    for category in (UserWarning, DeprecationWarning, RuntimeWarning, ResourceWarning):
        with pytest.raises(category):
            warnings.warn("a warning nobody listed", category)


#: simplefilter("ignore"...), filterwarnings("ignore", ...) without message=, or a pytest-style
#: "ignore::Category" / "ignore" spec with no message.
BLANKET = (re.compile(r"""simplefilter\(\s*["']ignore"""),
           re.compile(r"""filterwarnings\(\s*["']ignore["'](?!.*message=)"""),
           re.compile(r"""filterwarnings\(\s*["']ignore:(:|["'])"""))


def test_no_blanket_ignore_in_our_code():
    """warnings.simplefilter("ignore") or an ignore without a message, anywhere in our code or tests."""
    found = []
    for root in SOURCES:
        paths = [REPO / root] if root.endswith(".py") else sorted((REPO / root).rglob("*.py"))
        for path in paths:
            if path == Path(__file__):
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if any(p.search(line) for p in BLANKET):
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "blanket warning filters:\n" + "\n".join(found)
