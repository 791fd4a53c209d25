"""The training image's entry point, run for real in a subprocess with SageMaker's folder layout under a temp root
(BUSI_SAGEMAKER_ROOT in place of /opt/ml) on two tiny generated sites: the same `train` the job runs, its
model.tar.gz contents unpacked into runs/ as `train --on sagemaker` does, and `evaluate` accepts the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from model_training.__main__ import build_parser, main
from model_training import sagemaker_job as job
from model_training.sagemaker_entry import ROOT_ENV, train_argv
from model_training.errors import TrainingError
from tests.training.synthetic import make_site

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _layout(root, sites, options: list[str]) -> dict[str, str]:
    """/opt/ml as SageMaker leaves it before the container starts: channels, config files, empty folders."""
    parser = build_parser()
    args = parser.parse_args(["train", "--on", "sagemaker"] + [a for s in sites for a in ("--data", f"s3://b/data/{s.name}/")]
                             + options)
    hps = job.hyperparameters(args, job.train_parser(parser))
    hps[job.SITES_KEY] = ",".join(s.name for s in sites)
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "inputdataconfig.json").write_text(json.dumps(
        {s.name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"} for s in sites}))
    for s in sites:
        (root / "input" / "data").mkdir(parents=True, exist_ok=True)
        os.symlink(s, root / "input" / "data" / s.name)  # SageMaker copies them there; a link is the same to the reader
    for folder in ("model", "checkpoints", "output"):
        (root / folder).mkdir()
    return hps


def _entry(root, timeout: int = 850) -> subprocess.CompletedProcess:
    """The container's command. The limit only stops a hung run: ~2 CPU-minutes of work, but the 2 cores are
    shared with other training (10 minutes of wall time seen under a load of 7); pytest's own limit is 900 s."""
    env = {**os.environ, ROOT_ENV: str(root), "PYTHONPATH": f"{REPO / 'lambda_src'}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, "-m", "model_training.sagemaker_entry", "train"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def job_root(tmp_path_factory):
    """One container run (about 2 CPU-minutes): two small sites, one fine-tuning epoch at 64 px, no mirror TTA."""
    tmp = tmp_path_factory.mktemp("sagemaker")
    a = make_site(tmp / "sites" / "site_a", per_class=8, seed=1)
    b = make_site(tmp / "sites" / "site_b", per_class=8, seed=2, classes=("benign", "malignant"), gain=0.6,
                  offset=60, patients_csv=True)
    root = tmp / "opt-ml"
    _layout(root, [a, b], ["--weights", "none", "--input-size", "64", "--epochs", "1", "--batch-size", "8",
                           "--test-fraction", "0.25", "--no-input-check", "--tta-flip", "off",
                           "--cross-fit-folds", "0"])
    result = _entry(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, (a, b), result


def test_the_entry_point_runs_train_with_the_jobs_options(job_root):
    root, _, result = job_root
    assert "python -m model_training train --data " in result.stdout
    assert "--epochs 1" in result.stdout and "--input-size 64" in result.stdout
    assert f"--work {root / 'checkpoints' / 'work'}" in result.stdout
    # what SageMaker uploads as model.tar.gz: exactly a run's model/ and report/
    assert sorted(p.name for p in (root / "model").iterdir()) == ["model", "report"]
    card = json.loads((root / "model" / "model" / "model.json").read_text())
    assert card["extra"]["config"]["epochs"] == 1 and card["extra"]["config"]["input_size"] == 64
    assert [s["name"] for s in card["sites"]] == ["site_a", "site_b"]  # the channels are the sites, in order
    # the checkpoints (synced to S3) hold the decoded cache and the finished run
    assert list((root / "checkpoints" / "work" / "cache").glob("*.npz"))
    assert json.loads((root / "checkpoints" / "finished.json").read_text())["run"].endswith(card["version"][:8])
    assert not (root / "output" / "failure").exists()


def test_the_result_unpacks_into_a_run_that_evaluate_accepts(job_root, tmp_path):
    import datetime

    root, (a, _), _ = job_root
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # as SageMaker packs /opt/ml/model
        for part in ("model", "report"):
            tar.add(root / "model" / part, arcname=part)
    run = job.unpack_run(archive, tmp_path / "runs", started=datetime.datetime.now(datetime.timezone.utc),
                         record={"TrainingJobName": "local-test"})
    assert sorted(p.name for p in run.iterdir()) == ["model", "report"]
    assert {"model.tflite", "model.json", "model.keras"} <= {p.name for p in (run / "model").iterdir()}
    out = tmp_path / "eval"
    # the job's split.json names the container's folders; evaluate matches a site by its name and files
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(a), "--out", str(out),
                 "--split", str(run / "report" / "split.json"), "--bootstrap", "50"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scored"].startswith("the test split: ") and 0 < metrics["n"] < 24, metrics["scored"]


def test_a_restart_after_the_run_finished_publishes_it_without_training(job_root):
    root, _, _ = job_root
    before = (root / "model" / "model" / "model.tflite").read_bytes()
    for p in (root / "model").iterdir():
        shutil.rmtree(p)
    result = _entry(root, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "had finished before the restart" in result.stdout and "python -m model_training train" not in result.stdout
    assert (root / "model" / "model" / "model.tflite").read_bytes() == before


def test_a_bad_job_writes_sagemakers_failure_file(tmp_path):
    root = tmp_path / "opt-ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"sites": "missing_site"}))
    result = _entry(root, timeout=120)
    assert result.returncode == 2
    assert "channel 'missing_site' is not in" in (root / "output" / "failure").read_text()


def test_train_argv_re_roots_the_weights_channel(tmp_path):
    (tmp_path / "input" / "data" / "busi").mkdir(parents=True)
    argv = train_argv(tmp_path, {"sites": "busi", "weights": "/opt/ml/input/data/weights/w.weights.h5"})
    assert argv[argv.index("--weights") + 1] == str(tmp_path / "input" / "data" / "weights" / "w.weights.h5")
    with pytest.raises(TrainingError, match="'sites'"):
        train_argv(tmp_path, {})
