"""`train --on sagemaker` without AWS: the job request against moto's SageMaker, S3, CloudFormation and Logs; the
hyper-parameters carry every training option (and turn back into the same options); the download and unpack
of a model.tar.gz into runs/; `make upload`'s resumable sync; the cost estimate's arithmetic."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from model_training.__main__ import build_parser, main
from model_training.config import SageMakerConfig
from model_training.errors import TrainingError
from model_training import sagemaker_cost, sagemaker_job as job, s3_upload
from tests.training.synthetic import make_site

REGION = "us-east-1"
BUCKET = "busi-training-test"
ROLE = "arn:aws:iam::123456789012:role/busi-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets:abc123"


@pytest.fixture
def aws(monkeypatch):
    """moto in place of AWS, with fake credentials so nothing can reach a real account."""
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        import boto3

        session = boto3.Session(region_name=REGION)
        session.client("s3").create_bucket(Bucket=BUCKET)
        yield session


@pytest.fixture
def sites(tmp_path):
    a = make_site(tmp_path / "site_a", per_class=3, seed=1)
    b = make_site(tmp_path / "site_b", per_class=3, seed=2, classes=("benign", "malignant"), patients_csv=True)
    return a, b


def _stack(session, outputs: dict[str, str]) -> None:
    """A CloudFormation stack whose outputs are what `-c training=true` outputs (literal values here)."""
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    session.client("cloudformation").create_stack(StackName="BusiClassifier", TemplateBody=json.dumps(template))


def _fake_run_archive(model_dir: Path) -> bytes:
    """model.tar.gz as the entry point leaves /opt/ml/model: model/ (tflite + card) and report/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("model.tflite", "model.json"):
            tar.add(model_dir / name, arcname=f"model/{name}")
        report = b"# report\n"
        info = tarfile.TarInfo("report/report.md")
        info.size = len(report)
        tar.addfile(info, io.BytesIO(report))
    return buf.getvalue()


# --- hyper-parameters -------------------------------------------------------------------------------------


def test_hyperparameters_carry_every_training_option_and_parse_back_to_the_same(tmp_path):
    parser = build_parser()
    train = job.train_parser(parser)
    args = parser.parse_args(["train", "--on", "sagemaker", "--data", "s3://b/data/busi/", "--epochs", "3",
                              "--unfreeze", "0.5", "--head-c", "0.5,2", "--head-units", "", "--skip-bad",
                              "--no-input-check", "--input-size", "160", "--tta-flip", "off", "--seed", "9",
                              "--no-hard-negatives", "--target-sensitivity", "0.85", "--weights", "none"])
    hps = job.hyperparameters(args, train)
    actions = job.training_actions(train)
    # every training option of `train` travels, except those whose value is None (a recipe default: None again)
    assert set(hps) == {a.dest.replace("_", "-") for a in actions if getattr(args, a.dest) is not None}
    assert len(actions) >= 30 and hps["epochs"] == "3" and hps["skip-bad"] == "true"
    assert hps["hard-negatives"] == "false" and hps["head-units"] == ""
    assert not set(hps) & {"data", "runs", "out", "report", "work", "compare-with", "on", "instance-type"}
    assert all(isinstance(v, str) for v in hps.values()) and len(hps) <= 100  # SageMaker's limits
    back = parser.parse_args(["train", "--data", "/opt/ml/input/data/busi"]
                             + job.argv_from_hyperparameters(hps, train))
    for action in actions:
        assert getattr(back, action.dest) == getattr(args, action.dest), action.dest


def test_unknown_or_malformed_hyperparameters_are_refused():
    train = job.train_parser(build_parser())
    with pytest.raises(TrainingError, match="no option for: warp-speed"):
        job.argv_from_hyperparameters({"warp-speed": "9"}, train)
    with pytest.raises(TrainingError, match="skip-bad must be true or false"):
        job.argv_from_hyperparameters({"skip-bad": "yes"}, train)


def test_s3_data_without_sagemaker_is_a_clear_error(capsys):
    assert main(["train", "--data", "s3://bucket/data/busi/"]) == 2
    assert "only as a SageMaker job" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"instance_type": "g4dn.xlarge"}, "SageMaker instance type"),
    ({"max_runtime_hours": 0}, "max-runtime-hours"),
    ({"max_runtime_hours": 4, "max_wait_hours": 2}, "max-wait-hours"),
    ({"volume_gb": 0}, "volume-gb"),
    ({"job_name": "bad_name!"}, "job-name"),
])
def test_bad_cloud_settings_are_refused(kwargs, message):
    with pytest.raises(TrainingError, match=message):
        SageMakerConfig(**kwargs)


def test_spot_waits_twice_the_runtime_by_default():
    assert SageMakerConfig(max_runtime_hours=3).max_wait_seconds == 6 * 3600
    assert SageMakerConfig(spot=False).max_wait_seconds is None


# --- the job, against moto ------------------------------------------------------------------------------------


def test_train_on_sagemaker_submits_follows_and_downloads_a_run(aws, sites, tmp_path, tiny_model_dir, capsys):
    s3 = aws.client("s3")
    s3_upload.sync(s3, list(sites), BUCKET, progress=False)
    _stack(aws, {"TrainingBucketName": BUCKET, "TrainingRoleArn": ROLE, "TrainingImageUri": IMAGE})
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"not really weights")
    name = "busi-train-test-1"
    # What the job would leave behind: its model.tar.gz and its log lines (tqdm's carriage returns included).
    s3.put_object(Bucket=BUCKET, Key=f"output/{name}/output/model.tar.gz", Body=_fake_run_archive(tiny_model_dir))
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=job.LOG_GROUP)
    logs.create_log_stream(logGroupName=job.LOG_GROUP, logStreamName=f"{name}/algo-1-1700000000")
    now_ms = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    logs.put_log_events(logGroupName=job.LOG_GROUP, logStreamName=f"{name}/algo-1-1700000000", logEvents=[
        {"timestamp": now_ms, "message": "site site_a: 9 images"},
        {"timestamp": now_ms + 1, "message": "final epoch 1:  50%|##   |\rfinal epoch 1: 100%|#####|"}])

    args = ["train", "--on", "sagemaker", "--data", f"s3://{BUCKET}/data/site_a/", "--data",
            f"s3://{BUCKET}/data/site_b", "--epochs", "4", "--skip-bad", "--weights", str(weights),
            "--job-name", name, "--instance-type", "ml.g5.xlarge", "--max-runtime-hours", "2", "--volume-gb", "30",
            "--runs", str(tmp_path / "runs"), "--compare-with", str(tiny_model_dir)]
    assert main(args) == 0
    printed = capsys.readouterr().out

    desc = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert desc["AlgorithmSpecification"]["TrainingImage"] == IMAGE and desc["RoleArn"] == ROLE
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in desc["InputDataConfig"]}
    sha = s3_upload._digests(weights)[0][:16]
    assert channels == {"site_a": f"s3://{BUCKET}/data/site_a/", "site_b": f"s3://{BUCKET}/data/site_b/",
                        "weights": f"s3://{BUCKET}/weights/{sha}/backbone.weights.h5"}
    s3.head_object(Bucket=BUCKET, Key=f"weights/{sha}/backbone.weights.h5")  # uploaded once, under its checksum
    hps = desc["HyperParameters"]
    assert hps["sites"] == "site_a,site_b" and hps["epochs"] == "4" and hps["skip-bad"] == "true"
    assert hps["weights"] == "/opt/ml/input/data/weights/backbone.weights.h5"
    assert desc["EnableManagedSpotTraining"] is True
    assert desc["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert desc["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"}
    assert desc["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/output/"
    assert desc["ResourceConfig"] == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}

    # the estimate came first, then the job's status and its log lines (the last redraw of the tqdm line)
    assert printed.index("cost estimate for ml.g5.xlarge (managed spot)") < printed.index(f"submitted SageMaker training job {name}")
    assert "site site_a: 9 images" in printed and "final epoch 1: 100%|#####|" in printed and "50%" not in printed
    assert "cap: --max-runtime-hours 2 stops the job; at most $2.82" in printed
    (run,) = (tmp_path / "runs").iterdir()
    card = json.loads((run / "model" / "model.json").read_text())
    assert run.name.endswith("-" + card["version"][:8])
    assert sorted(p.name for p in run.iterdir()) == ["model", "report"]
    record = json.loads((run / "report" / job.JOB_RECORD).read_text())
    assert record["TrainingJobName"] == name and "Research use only" in record["disclaimer"]
    assert (run / "report" / "comparison.md").is_file()  # compared with --compare-with, locally, after the download
    assert f"make promote RUN={run}" in printed


def test_hipaa_stack_key_encrypts_output_and_volume(aws, sites):
    s3 = aws.client("s3")
    s3_upload.sync(s3, [sites[0]], BUCKET, progress=False)
    cfg = SageMakerConfig(bucket=BUCKET, role_arn=ROLE, image_uri=IMAGE, kms_key_arn="arn:aws:kms:us-east-1:1:key/k",
                          spot=False)
    res = job.resolve_resources(cfg, aws)
    request = job.build_request(cfg=cfg, job_name="j", image=res["image"], role=res["role"], bucket=res["bucket"],
                                channels=job.site_channels([f"s3://{BUCKET}/data/site_a"], s3), hps={},
                                kms_key=res["key"])
    assert request["OutputDataConfig"]["KmsKeyId"] == request["ResourceConfig"]["VolumeKmsKeyId"] == cfg.kms_key_arn
    assert request["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in request["StoppingCondition"]
    aws.client("sagemaker").create_training_job(**request)  # moto accepts it as SageMaker's API shape


def test_dry_run_prints_the_request_and_submits_nothing(aws, sites, tmp_path, capsys):
    s3_upload.sync(aws.client("s3"), [sites[0]], BUCKET, progress=False)
    args = ["train", "--on", "sagemaker", "--data", f"s3://{BUCKET}/data/site_a/", "--dry-run", "--bucket", BUCKET,
            "--role-arn", ROLE, "--image-uri", IMAGE, "--job-name", "dry", "--runs", str(tmp_path / "runs")]
    assert main(args) == 0
    out = capsys.readouterr().out
    request = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert request["TrainingJobName"] == "dry" and request["HyperParameters"]["weights"] == "imagenet"
    assert "dry run: nothing submitted" in out and "Research use only" in out
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize("data, message", [
    ("s3://{b}/data/nothing-here/", "no images under it"),
    ("s3://{b}/", "names the site"),
    ("s3://no-such-bucket-x/data/a/", "cannot list it"),
])
def test_bad_data_prefixes_are_clear_errors(aws, data, message, capsys, tmp_path):
    args = ["train", "--on", "sagemaker", "--data", data.format(b=BUCKET), "--bucket", BUCKET, "--role-arn", ROLE,
            "--image-uri", IMAGE, "--runs", str(tmp_path / "runs")]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_stack_says_how_to_deploy_the_training_resources(aws, capsys, tmp_path):
    assert main(["train", "--on", "sagemaker", "--data", f"s3://{BUCKET}/data/a/", "--runs", str(tmp_path)]) == 2
    assert "-c training=true" in capsys.readouterr().err


def test_a_failed_job_reports_its_reason(aws, capsys, tmp_path, monkeypatch):
    sm = aws.client("sagemaker")
    desc = {"TrainingJobName": "j", "TrainingJobStatus": "Failed", "FailureReason": "error: out of memory",
            "SecondaryStatusTransitions": [{"Status": "Failed", "StatusMessage": "Training job failed"}]}
    monkeypatch.setattr(job, "follow", lambda *a, **k: desc)
    monkeypatch.setattr(job, "_session", lambda cfg: aws)
    assert sm  # the clients are made from the session before following
    args = ["train", "--on", "sagemaker", "--attach", "--job-name", "j", "--data", "s3://x/y/", "--runs", str(tmp_path)]
    assert main(args) == 2
    assert "job j failed: error: out of memory" in capsys.readouterr().err


def test_too_small_a_volume_is_refused_before_paying_for_it():
    channels = [job.Channel("a", "s3://b/a/", images=200_000, bytes=40 * 1024 ** 3)]
    with pytest.raises(TrainingError, match="--volume-gb 50 is too small"):
        job._check_volume(channels, SageMakerConfig(), 224)
    job._check_volume(channels, SageMakerConfig(volume_gb=200), 224)


# --- the result ---------------------------------------------------------------------------------------------------


def test_unpack_lays_out_the_run_as_a_local_run(tmp_path, tiny_model_dir):
    import datetime

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_fake_run_archive(tiny_model_dir))
    started = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    run = job.unpack_run(archive, tmp_path / "runs", started=started, record={"TrainingJobName": "j"})
    version = json.loads((tiny_model_dir / "model.json").read_text())["version"]
    assert run.name == f"20260102-030405-{version[:8]}"
    assert (run / "model" / "model.tflite").read_bytes() == (tiny_model_dir / "model.tflite").read_bytes()
    from model_training.runs import resolve_run

    assert resolve_run("latest", root=tmp_path / "runs") == run  # promote and evaluate find it as any run


def test_unpack_refuses_entries_outside_a_run_and_unfinished_runs(tmp_path, tiny_model_dir):
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(TrainingError, match="unexpected entry"):
        job.unpack_run(evil, tmp_path / "runs", started=now, record={})
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("report/report.md")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(TrainingError, match="no finished run"):
        job.unpack_run(empty, tmp_path / "runs", started=now, record={})
    assert not (tmp_path / "outside.txt").exists() and not list((tmp_path / "runs").glob("2*"))


# --- make upload -------------------------------------------------------------------------------------------------


def test_upload_is_resumable_and_skips_by_size_and_checksum(aws, sites, capsys):
    s3 = aws.client("s3")
    first = s3_upload.sync(s3, list(sites), BUCKET, progress=False)
    n_files = sum(1 for s in sites for p in s.rglob("*") if p.is_file())
    assert first == {"uploaded": n_files, "skipped": 0, "bytes_uploaded": first["bytes_uploaded"]}
    assert s3.head_object(Bucket=BUCKET, Key="data/site_b/meta.csv")["Metadata"]["sha256"]  # the metadata CSV too
    assert s3_upload.sync(s3, list(sites), BUCKET, progress=False)["uploaded"] == 0  # a rerun uploads nothing
    # same size, other bytes: the checksum tells them apart
    png = next((sites[0] / "benign").glob("*[0-9].png"))
    data = bytearray(png.read_bytes())
    data[-20] ^= 0xFF
    png.write_bytes(bytes(data))
    assert s3_upload.sync(s3, list(sites), BUCKET, progress=False)["uploaded"] == 1
    assert s3_upload.main([str(sites[0]), "--bucket", BUCKET, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "uploaded 0 file(s)" in out and f"make train-cloud DATA=\"s3://{BUCKET}/data/site_a/\"" in out


def test_upload_refuses_a_missing_folder_and_clashing_names(aws, tmp_path, capsys):
    assert s3_upload.main([str(tmp_path / "nope"), "--bucket", BUCKET]) == 2
    assert "not a folder" in capsys.readouterr().err
    a = make_site(tmp_path / "x" / "busi", per_class=1, seed=1)
    b = make_site(tmp_path / "y" / "busi", per_class=1, seed=2)
    with pytest.raises(TrainingError, match="share the name busi"):
        s3_upload.sync(aws.client("s3"), [a, b], BUCKET, progress=False)


# --- the cost estimate -----------------------------------------------------------------------------------------


def test_estimate_arithmetic_from_a_measured_rate(tmp_path):
    card = {"name": "m", "version": "abcdef123", "split_counts": {"a": {"trainval": {"total": 600}},
                                                                  "b": {"trainval": {"total": 400}}},
            "extra": {"stage_seconds": {"final_fit": 160.0, "leave_one_site_out": 160.0, "export": 99.0},
                      "fit_history": {"loss": [1.0] * 16}, "config": {"input_size": 224}}}
    (tmp_path / "model.json").write_text(json.dumps(card))
    rate = sagemaker_cost.measured_rate(tmp_path / "model.json")
    # two sites: leave-one-site-out (600 + 400 images in all) + final (1,000) = 2,000 images x 16 epochs in 320 s
    assert rate.seconds_per_image_epoch == pytest.approx(320 / (2000 * 16))
    # 10,000 images, 2 sites, 15 epochs: 8,000 train + val x (1 LOSO + 1 final) x 16 = 256,000 image-epochs
    est = sagemaker_cost.estimate(images=10_000, sites=2, epochs=15, test_fraction=0.2,
                                  instance_type="ml.g4dn.xlarge", spot=True, max_runtime_seconds=8 * 3600, rate=rate)
    assert est.image_epochs == 256_000
    assert est.fit_seconds_ceiling == pytest.approx(256_000 * 0.01)
    assert est.fit_usd_ceiling == pytest.approx(2560 / 3600 * 0.736)
    assert est.cap_usd == pytest.approx(8 * 0.736)
    unknown = sagemaker_cost.estimate(images=10, sites=1, epochs=1, test_fraction=0.2, instance_type="ml.x9.huge",
                                      spot=False, max_runtime_seconds=3600, rate=None)
    assert unknown.cap_usd is None and "no price on file" in "\n".join(unknown.lines)
    assert sagemaker_cost.measured_rate(tmp_path / "missing.json") is None


def test_bundled_model_card_gives_a_rate():
    from model_training.runs import BUNDLED_MODEL

    rate = sagemaker_cost.measured_rate(Path(__file__).resolve().parents[2] / BUNDLED_MODEL / "model.json")
    if rate is None:
        pytest.skip("the bundled model's card has no final-fit timing (trained before the lesion recipe)")
    assert 0 < rate.seconds_per_image_epoch < 1 and "2 CPU cores" in rate.source


def test_follow_prints_each_status_change_once_and_stops_when_the_job_ends(aws):
    """Three polls of a job that starts, trains and completes (moto's jobs complete at once, so the job's
    descriptions are replayed here; the log lines come from moto's CloudWatch Logs)."""
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=job.LOG_GROUP)
    logs.create_log_stream(logGroupName=job.LOG_GROUP, logStreamName="j/algo-1-1")
    now_ms = int(time.time() * 1000)
    starting = [{"Status": "Starting", "StatusMessage": "Preparing the instances for training"}]
    training = starting + [{"Status": "Training", "StatusMessage": "Training image download completed."}]
    done = training + [{"Status": "Completed", "StatusMessage": "Training job completed"}]
    states = iter([("InProgress", starting), ("InProgress", training), ("Completed", done)])

    class Jobs:
        def describe_training_job(self, TrainingJobName):
            status, transitions = next(states)
            if status == "InProgress" and len(transitions) == 2:  # the container logs while it trains
                logs.put_log_events(logGroupName=job.LOG_GROUP, logStreamName="j/algo-1-1",
                                    logEvents=[{"timestamp": now_ms, "message": "site busi: 9 images"}])
            return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": status,
                    "SecondaryStatusTransitions": transitions}

    printed, sleeps = [], []
    desc = job.follow(Jobs(), logs, "j", poll_seconds=7, out=printed.append, sleep=sleeps.append)
    assert desc["TrainingJobStatus"] == "Completed" and sleeps == [7, 7]
    assert printed == ["[sagemaker] Starting: Preparing the instances for training",
                       "[sagemaker] Training: Training image download completed.",
                       "site busi: 9 images",
                       "[sagemaker] Completed: Training job completed"]
