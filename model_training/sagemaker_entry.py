"""The training image's entry point: SageMaker runs `docker run <image> train`, and this runs the same
`python -m model_training train` that `make train` runs, from what SageMaker puts in the container:

    /opt/ml/input/config/hyperparameters.json   every training option (sagemaker_job.hyperparameters) + `sites`
    /opt/ml/input/data/<site>/                   one channel per site (BUSI layout), /opt/ml/input/data/weights/
    /opt/ml/checkpoints/                         synced with S3 while the job runs, restored on a spot restart
    /opt/ml/model/                               -> model.tar.gz: the run's model/ and report/
    /opt/ml/output/failure                       the job's FailureReason when this fails

What a spot interruption costs: the recipe (lesion_pipeline) has no checkpoints of its own, so a restart fits
from the start again. What it keeps: the decoded image cache (--work is under /opt/ml/checkpoints, and the
cache is keyed by the files' content, so the restored copy is used), and a run that had finished (a restart
after that only publishes it). BUSI_SAGEMAKER_ROOT moves /opt/ml elsewhere (the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

from .errors import TrainingError

ROOT_ENV = "BUSI_SAGEMAKER_ROOT"
FINISHED = "finished.json"
#: SageMaker shows the first 1024 characters of /opt/ml/output/failure as the job's FailureReason.
FAILURE_CHARS = 1024


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainingError(f"{path} is missing: is this running as a SageMaker training job?") from None


def train_argv(root: Path, hps: dict[str, str]) -> list[str]:
    """`train` arguments from the job's hyper-parameters and channels (the container's own paths)."""
    from .__main__ import build_parser
    from .sagemaker_job import CONTAINER_ROOT, SITES_KEY, argv_from_hyperparameters, train_parser

    if not hps.get(SITES_KEY):
        raise TrainingError(f"hyper-parameter {SITES_KEY!r} (the site channels, in order) is missing")
    data = root / "input" / "data"
    argv = ["train"]
    for site in hps[SITES_KEY].split(","):
        if not (data / site).is_dir():
            raise TrainingError(f"channel {site!r} is not in {data} (the job's InputDataConfig names each site)")
        argv += ["--data", str(data / site)]
    options = {k: v for k, v in hps.items() if k != SITES_KEY}
    weights = options.get("weights", "")
    if weights.startswith(f"{CONTAINER_ROOT}/"):  # the weights channel, under this root
        options["weights"] = str(root / Path(weights).relative_to(str(CONTAINER_ROOT)))
    argv += argv_from_hyperparameters(options, train_parser(build_parser()))
    checkpoints = root / "checkpoints"
    # The run and the decoded cache live under the checkpoints (synced to S3); nothing to compare with here:
    # the command that submitted the job compares the downloaded run with its bundled model.
    return argv + ["--runs", str(checkpoints / "runs"), "--work", str(checkpoints / "work"),
                   "--compare-with", str(root / "no-bundled-model")]


def publish(run: Path, model_dir: Path) -> None:
    """The run's model/ and report/ into /opt/ml/model (SageMaker tars that folder as model.tar.gz)."""
    from .runs import MODEL, REPORT

    model_dir.mkdir(parents=True, exist_ok=True)
    for part in (MODEL, REPORT):
        dst = model_dir / part
        if dst.exists():
            shutil.rmtree(dst)
        if (run / part).is_dir():
            shutil.copytree(run / part, dst)


def run(root: Path) -> int:
    from .__main__ import main as cli
    from .runs import list_runs

    hps = _read_json(root / "input" / "config" / "hyperparameters.json")
    checkpoints = root / "checkpoints"
    finished = checkpoints / FINISHED
    if finished.is_file():  # a restart after the run had finished: publish it, fit nothing
        done = checkpoints / "runs" / json.loads(finished.read_text())["run"]
        if (done / "model" / "model.json").is_file():
            print(f"resuming: {done.name} had finished before the restart; publishing it", flush=True)
            publish(done, root / "model")
            return 0
    argv = train_argv(root, hps)
    cached = list((checkpoints / "work" / "cache").glob("*.npz")) if (checkpoints / "work").is_dir() else []
    if cached:
        print(f"resuming: {len(cached)} decoded site cache(s) restored from the checkpoints; fitting starts over "
              "(the recipe keeps no mid-fit checkpoints)", flush=True)
    before = set(list_runs(checkpoints / "runs"))
    print("python -m model_training " + " ".join(argv), flush=True)
    code = cli(argv)
    if code != 0:
        raise TrainingError(f"train exited with status {code} (its error is above)")
    new = [r for r in list_runs(checkpoints / "runs") if r not in before]
    if not new:
        raise TrainingError("train wrote no finished run (with --no-test the frozen recipe exports nothing)")
    publish(new[-1], root / "model")
    finished.write_text(json.dumps({"run": new[-1].name}) + "\n")
    print(f"published {new[-1].name} to {root / 'model'}: SageMaker uploads it as model.tar.gz", flush=True)
    return 0


def _fail(root: Path, message: str) -> None:
    out = root / "output"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "failure").write_text(message[:FAILURE_CHARS])
    except OSError:
        pass
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(os.environ.get(ROOT_ENV, "/opt/ml"))
    if argv[:1] not in ([], ["train"]):
        _fail(root, f"usage: the training image runs `train` (SageMaker's command), got {' '.join(argv)!r}")
        return 2
    try:
        return run(root)
    except TrainingError as exc:
        _fail(root, f"error: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else: the job's FailureReason says what, the log says where
        traceback.print_exc()
        _fail(root, f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
