"""`train --on sagemaker`: the same recipe as `make train`, as a SageMaker training job (boto3 only).

    --data s3://bucket/<site>/ (one channel per site, named after the prefix's last part, copied to
    /opt/ml/input/data/<site>/ in File mode)  +  every training option as a hyper-parameter
      -> create_training_job (image and role from the stack's outputs, `-c training=true`; spot, checkpoints
         to s3://<bucket>/checkpoints/<job>/)
      -> the job's status changes and its CloudWatch log lines, printed as they come
      -> s3://<bucket>/output/<job>/output/model.tar.gz (model/ + report/), unpacked into
         runs/<job start time>-<version>/ exactly as a local run writes it, then compared with the bundled model.

The container runs model_training/sagemaker_entry.py, which turns the hyper-parameters back into the same
`train` arguments. Research use only; not a medical device.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .config import SAGEMAKER_DEFAULT_INSTANCE, SageMakerConfig
from .errors import TrainingError

#: The `train` options that name places on this machine (or this command's own cloud options): they are not
#: training options and never travel as hyper-parameters; the entry point sets its own.
LOCAL_ONLY = frozenset({"help", "data", "runs", "out", "report", "compare_with", "work"})
#: SageMaker's folders inside the container (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html).
CONTAINER_ROOT = PurePosixPath("/opt/ml")
CHECKPOINTS = CONTAINER_ROOT / "checkpoints"
WEIGHTS_CHANNEL = "weights"
#: The hyper-parameter that lists the site channels, in --data order (site order is part of the recipe's split).
SITES_KEY = "sites"
CHANNEL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
#: The stack's outputs with `-c training=true` (infra/training.py).
OUTPUTS = {"bucket": "TrainingBucketName", "role": "TrainingRoleArn", "image": "TrainingImageUri",
           "key": "TrainingKmsKeyArn"}
DATA_PREFIX, OUTPUT_PREFIX, CHECKPOINT_PREFIX, WEIGHTS_PREFIX = "data/", "output/", "checkpoints/", "weights/"
JOB_RECORD = "sagemaker_job.json"


# --- the command line ------------------------------------------------------------------------------------

def add_cloud_args(p: argparse.ArgumentParser) -> None:
    """`train`'s options for where it runs; their dests are in CLOUD_DESTS."""
    d = SageMakerConfig()
    g = p.add_argument_group("where it runs (--on sagemaker: docs/training.md, Train on AWS)")
    g.add_argument("--on", choices=["local", "sagemaker"], default="local",
                   help="sagemaker: the same recipe and options as a SageMaker training job on a GPU; --data are "
                        "s3:// prefixes (make upload), the run comes back into --runs")
    g.add_argument("--instance-type", default=d.instance_type,
                   help=f"SageMaker training instance ({SAGEMAKER_DEFAULT_INSTANCE}: one T4 GPU, 16 GB RAM)")
    g.add_argument("--spot", action=argparse.BooleanOptionalAction, default=d.spot,
                   help="managed spot training (cheaper; an interruption restarts the job from its S3 checkpoints)")
    g.add_argument("--max-runtime-hours", type=float, default=d.max_runtime_hours,
                   help="the job is stopped after this long (and the printed cost cap)")
    g.add_argument("--max-wait-hours", type=float, default=d.max_wait_hours,
                   help="spot: the most the job may take, waiting for capacity included (None: twice the run time)")
    g.add_argument("--volume-gb", type=int, default=d.volume_gb, help="the instance's disk; the data is copied onto it")
    g.add_argument("--stack", default=d.stack, help="the deployed stack (-c training=true) whose bucket, role and "
                                                    "training image the job uses")
    g.add_argument("--bucket", default=None, help="instead of the stack's TrainingBucketName output")
    g.add_argument("--role-arn", default=None, help="instead of the stack's TrainingRoleArn output")
    g.add_argument("--image-uri", default=None, help="instead of the stack's TrainingImageUri output")
    g.add_argument("--job-name", default=None, help="the job's name (None: busi-train-<UTC time>)")
    g.add_argument("--region", default=None, help="AWS region (default: boto3's, e.g. AWS_DEFAULT_REGION)")
    g.add_argument("--profile", default=None, help="AWS profile (default: boto3's, e.g. AWS_PROFILE)")
    g.add_argument("--no-wait", action="store_true",
                   help="submit and return; fetch the run later with --job-name NAME --attach")
    g.add_argument("--attach", action="store_true",
                   help="submit nothing: follow the existing job --job-name and download its run")
    g.add_argument("--dry-run", action="store_true", help="print the job request and the cost estimate, submit nothing")


CLOUD_DESTS = frozenset({"on", "instance_type", "spot", "max_runtime_hours", "max_wait_hours", "volume_gb", "stack",
                         "bucket", "role_arn", "image_uri", "job_name", "region", "profile", "no_wait", "attach",
                         "dry_run"})


def cloud_config(args: argparse.Namespace) -> SageMakerConfig:
    return SageMakerConfig(instance_type=args.instance_type, spot=args.spot, max_runtime_hours=args.max_runtime_hours,
                           max_wait_hours=args.max_wait_hours, volume_gb=args.volume_gb, stack=args.stack,
                           bucket=args.bucket, role_arn=args.role_arn, image_uri=args.image_uri,
                           job_name=args.job_name, region=args.region, profile=args.profile,
                           wait=not args.no_wait, dry_run=args.dry_run)


def train_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `train` sub-parser of the CLI's parser (argparse keeps sub-parsers on its sub-parsers action)."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor for sub-parsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return action.choices["train"]
    raise RuntimeError("the CLI parser has no `train` command")


def training_actions(train: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every `train` option that is a training option (what the job's hyper-parameters carry)."""
    return [a for a in train._actions  # noqa: SLF001
            if a.option_strings and a.dest not in LOCAL_ONLY | CLOUD_DESTS]


def _key(action: argparse.Action) -> str:
    """The option's setting, dashed (input-size; hard-negatives for --no-hard-negatives: its value, not the flag)."""
    return action.dest.replace("_", "-")


def _flag(action: argparse.Action) -> str:
    return next(o for o in action.option_strings if o.startswith("--"))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_text(v) for v in value)
    return str(value)


def hyperparameters(args: argparse.Namespace, train: argparse.ArgumentParser) -> dict[str, str]:
    """Every training option, by its flag name, as text (a None recipe default is left out: None again)."""
    out = {}
    for action in training_actions(train):
        value = getattr(args, action.dest)
        if value is not None:
            out[_key(action)] = _text(value)
    return out


def argv_from_hyperparameters(hps: dict[str, str], train: argparse.ArgumentParser) -> list[str]:
    """The inverse of `hyperparameters`: `train` arguments that parse to the same training options."""
    argv: list[str] = []
    known = {_key(a): a for a in training_actions(train)}
    unknown = sorted(set(hps) - set(known) - {SITES_KEY})
    if unknown:
        raise TrainingError(f"hyper-parameters this code has no option for: {', '.join(unknown)} (the training "
                            "image is older or newer than the command that submitted the job)")
    for key, action in known.items():
        if key not in hps:
            continue
        if isinstance(action, argparse._StoreConstAction):  # noqa: SLF001 - store_true / store_false flags
            if hps[key] not in ("true", "false"):
                raise TrainingError(f"hyper-parameter {key} must be true or false, got {hps[key]!r}")
            if hps[key] == _text(action.const):
                argv.append(_flag(action))
        else:
            argv += [_flag(action), hps[key]]
    return argv


# --- S3 -----------------------------------------------------------------------------------------------------

def parse_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key): the serving package's parser (one rule for what an S3 URL is)."""
    from classifier.stack_lookup import StackLookupError, parse_s3_url

    try:
        return parse_s3_url(uri)
    except StackLookupError as exc:
        raise TrainingError(str(exc)) from None


@dataclass(frozen=True)
class Channel:
    name: str
    uri: str
    images: int = 0
    bytes: int = 0


def _list(s3, bucket: str, prefix: str):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def site_channels(uris: list[str], s3) -> list[Channel]:
    """One channel per --data prefix, named after its last part (the site's name, as a local folder's), with its
    image count (masks not counted) and size."""
    channels: list[Channel] = []
    for uri in uris:
        bucket, prefix = parse_s3(uri)
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        name = PurePosixPath(prefix).name if prefix else ""
        if not CHANNEL_NAME.fullmatch(name or "-") or not name:
            raise TrainingError(f"--data {uri}: the prefix's last part names the site (a channel) and must be 1-64 "
                                "letters, digits, '.', '_' or '-', e.g. s3://bucket/data/busi/")
        if name == WEIGHTS_CHANNEL or name in {c.name for c in channels}:
            raise TrainingError(f"--data {uri}: two sites (or a site and the weights) would share the channel "
                                f"name {name!r}; give each site prefix a different last part")
        images = size = 0
        try:
            for obj in _list(s3, bucket, prefix):
                size += obj["Size"]
                key = obj["Key"].lower()
                images += key.endswith(IMAGE_SUFFIXES) and "_mask" not in PurePosixPath(key).name
        except Exception as exc:  # noqa: BLE001 - NoSuchBucket, AccessDenied, no credentials
            raise TrainingError(f"--data {uri}: cannot list it: {aws_message(exc)}") from exc
        if images == 0:
            raise TrainingError(f"--data {uri}: no images under it (upload a site folder with make upload "
                                f"DATA=/path/to/{name} BUCKET={bucket})")
        channels.append(Channel(name, f"s3://{bucket}/{prefix}", images, size))
    return channels


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_channel(weights: str, *, s3, bucket: str, dry_run: bool = False) -> tuple[Channel | None, str]:
    """(channel, the --weights value inside the container). imagenet and none need no channel (imagenet is
    downloaded by Keras inside the job); an s3:// object or a local file (uploaded once, under its checksum)
    becomes the `weights` channel."""
    if weights in ("imagenet", "none"):
        return None, weights
    if weights.startswith("s3://"):
        _, key = parse_s3(weights)
        name = PurePosixPath(key).name
        if not name:
            raise TrainingError(f"--weights {weights}: name one object (a .weights.h5 file), not a prefix")
        uri = weights
    else:
        path = Path(weights)
        if not path.is_file():
            raise TrainingError(f"--weights {weights}: no such file (imagenet, none, a file or an s3:// object)")
        name = path.name
        key = f"{WEIGHTS_PREFIX}{_sha256(path)[:16]}/{name}"
        uri = f"s3://{bucket}/{key}"
        if not dry_run:
            from .s3_upload import upload_file

            upload_file(s3, path, bucket, key)
    return Channel(WEIGHTS_CHANNEL, uri), str(CONTAINER_ROOT / "input" / "data" / WEIGHTS_CHANNEL / name)


# --- the request ---------------------------------------------------------------------------------------------

def default_job_name(now: datetime.datetime | None = None) -> str:
    return "busi-train-" + (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%d-%H%M%S")


def build_request(*, cfg: SageMakerConfig, job_name: str, image: str, role: str, bucket: str,
                  channels: list[Channel], hps: dict[str, str], kms_key: str | None = None) -> dict[str, Any]:
    """The create_training_job request: File-mode channels, spot and checkpoints, the output under the bucket."""
    def channel(c: Channel) -> dict[str, Any]:
        return {"ChannelName": c.name, "InputMode": "File",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": c.uri,
                                                "S3DataDistributionType": "FullyReplicated"}}}

    resources: dict[str, Any] = {"InstanceType": cfg.instance_type, "InstanceCount": 1,
                                 "VolumeSizeInGB": cfg.volume_gb}
    output: dict[str, Any] = {"S3OutputPath": f"s3://{bucket}/{OUTPUT_PREFIX}"}
    if kms_key:
        resources["VolumeKmsKeyId"] = kms_key
        output["KmsKeyId"] = kms_key
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": cfg.max_runtime_seconds}
    if cfg.spot:
        stopping["MaxWaitTimeInSeconds"] = cfg.max_wait_seconds
    return {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": role,
        "HyperParameters": dict(hps),
        "InputDataConfig": [channel(c) for c in channels],
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": cfg.spot,
        # SageMaker syncs /opt/ml/checkpoints with this prefix while the job runs and restores it on a restart.
        "CheckpointConfig": {"S3Uri": f"s3://{bucket}/{CHECKPOINT_PREFIX}{job_name}/", "LocalPath": str(CHECKPOINTS)},
        "Tags": [{"Key": "project", "Value": "busi-classifier"}, {"Key": "purpose", "Value": "research-use-only"}],
    }


def aws_message(exc: Exception) -> str:
    err = getattr(exc, "response", None)
    if isinstance(err, dict) and err.get("Error"):
        return f"{err['Error'].get('Code')}: {err['Error'].get('Message')}"
    return f"{type(exc).__name__}: {exc}"


_FLAGS = {"bucket": "--bucket", "role": "--role-arn", "image": "--image-uri"}


def resolve_resources(cfg: SageMakerConfig, session) -> dict[str, str | None]:
    """bucket, role, image and key: the flags, else the stack's outputs."""
    given = {"bucket": cfg.bucket, "role": cfg.role_arn, "image": cfg.image_uri, "key": cfg.kms_key_arn}
    if all(given[k] for k in ("bucket", "role", "image")):
        return given
    from classifier.stack_lookup import StackLookupError, lookup

    try:
        info = lookup(cfg.stack, boto_session=session, with_key=False)
    except StackLookupError as exc:
        raise TrainingError(f"{exc}; deploy the training resources with `make deploy CDK_ARGS=\"-c training=true\"` "
                            "or give --bucket, --role-arn and --image-uri") from exc
    out = {}
    for name, output in OUTPUTS.items():
        out[name] = given[name] or info.outputs.get(output)
        if out[name] is None and name != "key":
            raise TrainingError(f"stack {cfg.stack} has no {output} output: deploy it with "
                                f"`make deploy CDK_ARGS=\"-c training=true\"` (or give {_FLAGS[name]})")
    return out


# --- following the job ---------------------------------------------------------------------------------------

class LogFollower:
    """The job's CloudWatch log streams (<job>/algo-1-<time>), each read from where it was left."""

    def __init__(self, logs, job_name: str, out: Callable[[str], None] = print):
        self.logs, self.job_name, self.out = logs, job_name, out
        self.tokens: dict[str, str | None] = {}

    def poll(self) -> int:
        try:
            streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job_name}/")
        except Exception as exc:  # noqa: BLE001 - the group or stream does not exist before the container starts
            if "ResourceNotFound" in aws_message(exc):
                return 0
            raise
        printed = 0
        for stream in sorted(s["logStreamName"] for s in streams.get("logStreams", [])):
            while True:
                kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                if self.tokens.get(stream):
                    kwargs["nextToken"] = self.tokens[stream]
                page = self.logs.get_log_events(**kwargs)
                for event in page.get("events", []):
                    # tqdm redraws with carriage returns: the last state of the line is what a terminal shows.
                    line = [part for part in event["message"].rstrip("\n").split("\r") if part.strip()]
                    self.out(line[-1] if line else "")
                    printed += 1
                token = page.get("nextForwardToken")
                if token == self.tokens.get(stream):
                    break
                self.tokens[stream] = token
        return printed


def follow(sm, logs, job_name: str, *, poll_seconds: float, out: Callable[[str], None] = print,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Print status changes and log lines until the job ends; returns its final description."""
    follower = LogFollower(logs, job_name, out)
    seen = 0
    while True:
        desc = sm.describe_training_job(TrainingJobName=job_name)
        transitions = desc.get("SecondaryStatusTransitions", [])
        for t in transitions[seen:]:
            out(f"[sagemaker] {t['Status']}: {t.get('StatusMessage', '')}".rstrip(": "))
        seen = len(transitions)
        follower.poll()
        if desc["TrainingJobStatus"] in TERMINAL:
            follower.poll()  # what the container wrote last
            return desc
        sleep(poll_seconds)


# --- the result ------------------------------------------------------------------------------------------------

def unpack_run(archive: Path, runs_root: Path, *, started: datetime.datetime, record: dict[str, Any]) -> Path:
    """model.tar.gz (model/ + report/, what the entry point leaves in /opt/ml/model) -> runs/<time>-<version>/,
    laid out exactly as a local run, with report/sagemaker_job.json saying where it was trained."""
    from . import runs

    with tempfile.TemporaryDirectory(dir=runs_root if runs_root.is_dir() else None) as tmp:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                top = PurePosixPath(member.name).parts[:1]
                if top not in ((runs.MODEL,), (runs.REPORT,), (".",)):
                    raise TrainingError(f"{archive}: unexpected entry {member.name!r} (a run holds model/ and report/)")
            tar.extractall(tmp, filter="data")  # refuses links out of the folder, absolute paths, devices
        model = Path(tmp) / runs.MODEL
        missing = [n for n in runs.MODEL_FILES[:2] if not (model / n).is_file()]
        if missing:
            raise TrainingError(f"{archive} holds no finished run: model/{', model/'.join(missing)} missing")
        version = json.loads((model / "model.json").read_text())["version"]
        run = runs.new_run(runs_root, now=started)
        for part in (runs.MODEL, runs.REPORT):
            src = Path(tmp) / part
            if src.is_dir():
                shutil.move(str(src), run / part)
        (run / runs.REPORT).mkdir(exist_ok=True)
        (run / runs.REPORT / JOB_RECORD).write_text(json.dumps(record, indent=1, default=str) + "\n")
    return runs.finish_run(run, version)


def job_record(desc: dict[str, Any]) -> dict[str, Any]:
    keys = ("TrainingJobName", "TrainingJobArn", "TrainingJobStatus", "TrainingStartTime", "TrainingEndTime",
            "TrainingTimeInSeconds", "BillableTimeInSeconds", "EnableManagedSpotTraining", "HyperParameters")
    out = {k: desc[k] for k in keys if k in desc}
    out["ResourceConfig"] = {k: v for k, v in desc.get("ResourceConfig", {}).items() if k != "VolumeKmsKeyId"}
    out["TrainingImage"] = desc.get("AlgorithmSpecification", {}).get("TrainingImage")
    out["InputDataConfig"] = [{"ChannelName": c["ChannelName"], "S3Uri": c["DataSource"]["S3DataSource"]["S3Uri"]}
                              for c in desc.get("InputDataConfig", [])]
    out["ModelArtifacts"] = desc.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    out["disclaimer"] = "Research use only. Not a medical device; not for diagnosis or clinical decisions."
    return out


def download_run(s3, desc: dict[str, Any], runs_root: Path) -> Path:
    artefact = desc.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if not artefact:
        raise TrainingError(f"job {desc['TrainingJobName']} has no model artefact")
    bucket, key = parse_s3(artefact)
    runs_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=runs_root) as tmp:
        archive = Path(tmp) / "model.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:  # noqa: BLE001
            raise TrainingError(f"cannot download {artefact}: {aws_message(exc)}") from exc
        started = desc.get("TrainingStartTime") or desc.get("CreationTime") or datetime.datetime.now(datetime.timezone.utc)
        return unpack_run(archive, runs_root, started=started.astimezone(datetime.timezone.utc),
                          record=job_record(desc))


def _session(cfg: SageMakerConfig):
    from classifier.stack_lookup import StackLookupError, session

    try:
        return session(cfg.profile, cfg.region)
    except StackLookupError as exc:
        raise TrainingError(str(exc)) from exc


def train_on_sagemaker(args: argparse.Namespace, parser: argparse.ArgumentParser, *, session=None,
                       out: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep) -> Path | None:
    """Submit (or attach to) the job, follow it and download its run; returns the run folder (None: not waited)."""
    cfg = cloud_config(args)
    if args.out is not None or args.report is not None:
        raise TrainingError("--out/--report write a local model; --on sagemaker brings the run back into --runs")
    sess = session or _session(cfg)
    try:
        sm, s3, logs = sess.client("sagemaker"), sess.client("s3"), sess.client("logs")
    except Exception as exc:  # noqa: BLE001 - NoRegionError
        raise TrainingError(f"AWS clients: {aws_message(exc)} (set AWS_DEFAULT_REGION or --region)") from exc

    if args.attach:
        if not cfg.job_name:
            raise TrainingError("--attach needs --job-name (the job to follow)")
        job_name = cfg.job_name
    else:
        job_name = cfg.job_name or default_job_name()
        data = [str(d) for d in args.data]
        res = resolve_resources(cfg, sess)
        channels = site_channels(data, s3)
        hps = hyperparameters(args, train_parser(parser))
        weights, hps["weights"] = weights_channel(args.weights, s3=s3, bucket=res["bucket"], dry_run=cfg.dry_run)
        hps[SITES_KEY] = ",".join(c.name for c in channels)
        _check_volume(channels, cfg, args.input_size)
        request = build_request(cfg=cfg, job_name=job_name, image=res["image"], role=res["role"],
                                bucket=res["bucket"], channels=channels + ([weights] if weights else []),
                                hps=hps, kms_key=res["key"])
        _print_estimate(args, channels, cfg, out)
        if cfg.dry_run:
            out(json.dumps(request, indent=1))
            out("dry run: nothing submitted")
            return None
        try:
            sm.create_training_job(**request)
        except Exception as exc:  # noqa: BLE001
            raise TrainingError(f"create_training_job: {aws_message(exc)}") from exc
        out(f"submitted SageMaker training job {job_name} ({cfg.instance_type}{', spot' if cfg.spot else ''}); "
            f"checkpoints: {request['CheckpointConfig']['S3Uri']}")
        if not cfg.wait:
            out(f"not waiting: python -m model_training train --on sagemaker --attach --job-name {job_name} "
                f"--data {' --data '.join(data)} fetches the run when it is done")
            return None
    try:
        desc = follow(sm, logs, job_name, poll_seconds=cfg.poll_seconds, out=out, sleep=sleep)
    except Exception as exc:  # noqa: BLE001
        raise TrainingError(f"following job {job_name}: {aws_message(exc)}") from exc
    status = desc["TrainingJobStatus"]
    billed = desc.get("BillableTimeInSeconds")
    out(f"job {job_name}: {status}" + (f", {billed} billable seconds" if billed is not None else ""))
    if status != "Completed":
        raise TrainingError(f"job {job_name} {status.lower()}: {desc.get('FailureReason', 'no reason given')}")
    return download_run(s3, desc, args.runs)


def _check_volume(channels: list[Channel], cfg: SageMakerConfig, side: int) -> None:
    """File mode copies every channel onto the volume, and the decoded cache (image + mask per frame) lands there
    too: refuse a volume that cannot hold both with room to spare, before paying for the start-up."""
    data = sum(c.bytes for c in channels)
    cache = sum(c.images for c in channels) * side * side * 2
    need = (data + cache) * 1.2 + 5 * 1024 ** 3  # + the image's scratch, model.keras and exports
    if need > cfg.volume_gb * 1024 ** 3:
        raise TrainingError(f"--volume-gb {cfg.volume_gb} is too small: the data ({data / 1024 ** 3:.1f} GB) and its "
                            f"decoded cache ({cache / 1024 ** 3:.1f} GB) need about {need / 1024 ** 3:.0f} GB")


def _print_estimate(args: argparse.Namespace, channels: list[Channel], cfg: SageMakerConfig,
                    out: Callable[[str], None]) -> None:
    from .config import LESION_EPOCHS
    from .sagemaker_cost import estimate, measured_rate

    epochs = args.epochs if args.epochs is not None else (LESION_EPOCHS if args.recipe == "lesion" else 0)
    est = estimate(images=sum(c.images for c in channels), sites=len(channels), epochs=epochs,
                   test_fraction=args.test_fraction, instance_type=cfg.instance_type, spot=cfg.spot,
                   max_runtime_seconds=cfg.max_runtime_seconds,
                   rate=measured_rate(Path(args.compare_with) / "model.json"))
    for line in est.lines:
        out(line)
    out("Research use only. Not a medical device; not for diagnosis or clinical decisions.")
