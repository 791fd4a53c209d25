"""The one typed training config: CLI flags map onto it, and it is saved with the model (model.json extra)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path


RECIPES = ("lesion", "frozen")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    # One folder per site (BUSI layout, optional metadata CSV); `frozen` takes exactly one.
    data: tuple[Path, ...]
    out: Path  # model.tflite + model.json
    report: Path  # metrics.json, plots, report.md, audit.json, split.json
    work: Path = Path("runs/latest")  # model.keras and the feature cache (not committed)
    # lesion: fine-tuned backbone + mask-supervised localisation, chosen by leave-one-site-out (README);
    # frozen: the v3 recipe (frozen multi-scale features + logistic head, one site).
    recipe: str = "lesion"
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"  # imagenet | none | PATH to a .weights.h5 file
    input_size: int = 224
    pool_layers: str = "auto"  # inner layers pooled beside the final features: auto | none | comma list
    seed: int = 42
    # split
    val_fraction: float = 0.15
    test_fraction: float = 0.20
    near_dup_threshold: float = 0.93
    keep_conflicts: bool = False
    skip_bad: bool = False
    # stage 1: head on cached frozen features, small search picked on validation:
    # L2 logistic regressions (one per C) and Adam-trained MLPs (units x dropout x lr; units 0 = linear)
    head_c: tuple[float, ...] = (0.01, 0.03, 0.1)
    # 4-fold CV on BUSI train + val (README): logistic regression on multi-scale features beat the MLP
    # heads on log-loss, ECE and accuracy, so MLPs are opt-in (--head-units 256)
    head_units: tuple[int, ...] = ()
    head_dropout: tuple[float, ...] = (0.2, 0.5)
    head_lr: tuple[float, ...] = (1e-3, 3e-3)
    head_epochs: int = 150
    # Stage 1 only (epochs 0): choose head, flip TTA and temperature by K-fold CV over train + val,
    # then refit the head on both (the val split alone is ~90 images); 0 = choose on the val split.
    cv_folds: int = 4
    # stage 2: fine-tune the top of the backbone (BatchNorm stays frozen)
    # Stage-2 epochs; 0 skips fine-tuning. Off by default: in 4-fold CV on BUSI train + val no
    # fine-tuned model or ensemble (full or top-30 % unfrozen, lr 1e-4 or 3e-5) beat the frozen
    # multi-scale features + logistic regression (README, "The bundled model"). --epochs 25 turns it on.
    epochs: int = 0
    unfreeze: float = 1.0  # fraction of the backbone's layers, from the top, made trainable
    fine_tune_lr: float = 1e-4  # BatchNorm frozen; 2e-5 and 5e-5 underfit, 2e-4 overshot on validation
    label_smoothing: float = 0.0  # stage-2 loss; the temperature fitted afterwards re-calibrates
    batch_size: int = 16
    patience: int = 5
    ensemble: int = 3  # fine-tuned models (seeds) averaged in the served graph, if validation agrees
    # export
    tta_flip: str = "auto"  # auto (kept if validation supports it) | on | off
    quantize: str = "none"  # none | int8
    parity_tolerance: float = 1e-3
    name: str = "busi-classifier"
    # lesion recipe: malignant threshold chosen out of site for this sensitivity (pooled LOSO predictions)
    target_sensitivity: float = 0.90
    # lesion recipe: lesion-free parts of each site's lesion frames as extra "no lesion" frames, of these kinds
    # (model_training/sites.py: "strip", "filled")
    hard_negatives: bool = True
    negative_kinds: tuple[str, ...] = ("strip",)
    # lesion recipe: the normal threshold from K-fold out-of-fold predictions inside the sites (cross_fit.py;
    # K more fits); 0 = from the leave-one-site-out predictions (v5 and before)
    cross_fit_folds: int = 3
    evaluate_test: bool = True  # False: stop after the validation choices (explore without touching test)

    @property
    def folder(self) -> Path:
        """The single data folder of the `frozen` recipe."""
        from .errors import DataFolderError

        if len(self.data) != 1:
            raise DataFolderError(f"--recipe {self.recipe} takes one --data folder, got {len(self.data)}; "
                                  "the lesion recipe takes several (one per site)")
        return self.data[0]

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = [str(v) if isinstance(v, Path) else v for v in value]
        return out


#: Lesion recipe defaults (shared/NOTES.md: 4-10 epochs with the top ~30 % unfrozen helped on a new site;
#: README "How the lesion recipe was chosen" has the leave-one-site-out runs behind them).
LESION_EPOCHS, LESION_UNFREEZE = 15, 0.3

#: SageMaker training instance types this project prices and accepts (GPU first); `--instance-type` takes others
#: too (SageMaker validates them), with no price printed.
SAGEMAKER_DEFAULT_INSTANCE = "ml.g4dn.xlarge"  # 1 NVIDIA T4 (16 GB), 4 vCPU, 16 GB RAM: the cheapest GPU
#: SageMaker's limits: a job runs at most 28 days (MaxRuntimeInSeconds); a spot job's MaxWaitTimeInSeconds is too.
SAGEMAKER_MAX_SECONDS = 28 * 24 * 3600


@dataclasses.dataclass(frozen=True, kw_only=True)
class SageMakerConfig:
    """Where and how `train --on sagemaker` runs the same recipe; the training options travel separately, as the
    job's hyper-parameters. Resources left None come from the stack's outputs (`-c training=true`)."""

    instance_type: str = SAGEMAKER_DEFAULT_INSTANCE
    # Managed spot training: billed at the spot price (usually well under on-demand); an interruption restarts
    # the job with /opt/ml/checkpoints restored from S3 (model_training/sagemaker_entry.py says what resumes).
    spot: bool = True
    max_runtime_hours: float = 8.0  # hard stop (and the cost cap printed before the job starts)
    # Spot only: how long the job may wait for capacity and restarts, in total, counted with the run time.
    max_wait_hours: float | None = None  # None: twice max_runtime_hours (within SageMaker's 28 days)
    volume_gb: int = 50  # the instance's EBS volume: the data channels are copied onto it (File mode)
    stack: str = "BusiClassifier"
    bucket: str | None = None
    role_arn: str | None = None
    image_uri: str | None = None
    kms_key_arn: str | None = None  # compliance=hipaa: the stack key, for the output and the volume
    job_name: str | None = None  # None: busi-train-<UTC time>
    region: str | None = None
    profile: str | None = None
    wait: bool = True  # follow the job, stream its logs, download the run
    dry_run: bool = False  # print the request and the estimate, submit nothing
    poll_seconds: float = 15.0

    def __post_init__(self) -> None:
        from .errors import TrainingError

        if not self.instance_type.startswith("ml."):
            raise TrainingError(f"--instance-type must be a SageMaker instance type such as ml.g4dn.xlarge, got "
                                f"{self.instance_type!r}")
        if not 0 < self.max_runtime_hours * 3600 <= SAGEMAKER_MAX_SECONDS:
            raise TrainingError(f"--max-runtime-hours must be > 0 and at most {SAGEMAKER_MAX_SECONDS // 3600} "
                                f"(SageMaker's 28 days), got {self.max_runtime_hours}")
        if self.max_wait_hours is not None and not (
                self.max_runtime_hours <= self.max_wait_hours <= SAGEMAKER_MAX_SECONDS / 3600):
            raise TrainingError(f"--max-wait-hours must be between --max-runtime-hours ({self.max_runtime_hours}) "
                                f"and {SAGEMAKER_MAX_SECONDS // 3600}, got {self.max_wait_hours}")
        if not 1 <= self.volume_gb <= 16384:
            raise TrainingError(f"--volume-gb must be 1..16384, got {self.volume_gb}")
        if self.job_name is not None and not _JOB_NAME.fullmatch(self.job_name):
            raise TrainingError(f"--job-name must be 1-63 letters, digits or '-', starting with a letter or digit "
                                f"(SageMaker's rule), got {self.job_name!r}")
        if self.poll_seconds <= 0:
            raise TrainingError(f"poll_seconds must be > 0, got {self.poll_seconds}")

    @property
    def max_runtime_seconds(self) -> int:
        return int(round(self.max_runtime_hours * 3600))

    @property
    def max_wait_seconds(self) -> int | None:
        """Spot only (SageMaker refuses MaxWaitTimeInSeconds without it)."""
        if not self.spot:
            return None
        hours = self.max_wait_hours if self.max_wait_hours is not None else 2 * self.max_runtime_hours
        return int(min(round(hours * 3600), SAGEMAKER_MAX_SECONDS))


_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
