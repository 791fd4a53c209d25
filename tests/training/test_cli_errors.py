"""User mistakes on `train` end in one clear line (exit 2), never a traceback."""

from __future__ import annotations

import pytest

from model_training.__main__ import build_parser, main
from tests.training.synthetic import make_folder


@pytest.mark.parametrize("weights, message", [
    ("missing.weights.h5", "no such file"),
    ("garbage.weights.h5", "could not build mobilenet_v2"),
])
def test_bad_weights_are_a_clear_error(tmp_path, capsys, weights, message):
    data = make_folder(tmp_path / "data", per_class=8, seed=0)
    (tmp_path / "garbage.weights.h5").write_text("not an HDF5 file")
    code = main(["train", "--recipe", "frozen", "--data", str(data), "--out", str(tmp_path / "m"), "--report", str(tmp_path / "r"),
                 "--work", str(tmp_path / "w"), "--weights", str(tmp_path / weights), "--input-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m" / "model.tflite").exists()  # nothing half-written


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--data", "--out", "--backbone", "--weights", "--epochs", "--seed", "--quantize", "--unfreeze",
                 "--ensemble", "--tta-flip", "--keep-conflicts", "--skip-bad", "--no-test"):
        assert flag in out
