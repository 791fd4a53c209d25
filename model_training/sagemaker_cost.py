"""What a SageMaker training job will cost, printed before it starts: an estimate of the fitting time from a
measured rate, and the hard cap that --max-runtime-hours puts on the bill.

The rate is measured, not assumed: seconds per image-epoch of a model card's own training (its leave-one-site-out
and final-fit stages, `extra.stage_seconds`, over the image-epochs those fits pushed through, counted as
`image_epochs` counts them), by default the bundled model's, which `make train` trained on this project's
2-core CPU machine. A GPU fits faster, so the time it gives is a
ceiling for the fitting, not a prediction; the job's own billable seconds are written to its run
(report/sagemaker_job.json) afterwards. Research use only; not a medical device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: SageMaker training, on-demand USD per instance-hour, us-east-1, as the SageMaker pricing page listed them
#: in 2025 (not fetched live: check https://aws.amazon.com/sagemaker/pricing/ for your region and today).
ON_DEMAND_USD_PER_HOUR = {
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.p3.2xlarge": 3.825,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.c5.2xlarge": 0.408,
}
#: What AWS says managed spot training saves against on-demand ("up to 90%"); the real price varies by hour.
SPOT_SAVING_UP_TO = 0.9


@dataclass(frozen=True)
class Rate:
    seconds_per_image_epoch: float
    source: str


@dataclass(frozen=True)
class Estimate:
    image_epochs: int
    fit_seconds_ceiling: float | None
    usd_per_hour: float | None
    cap_usd: float | None
    fit_usd_ceiling: float | None
    lines: tuple[str, ...]


def measured_rate(card_path: Path) -> Rate | None:
    """Seconds per image-epoch of a card's fitting stages, or None when the card lacks what it takes."""
    try:
        card = json.loads(card_path.read_text())
        extra = card["extra"]
        stages = extra["stage_seconds"]
        seconds = float(stages["final_fit"]) + float(stages.get("leave_one_site_out", 0.0))
        epochs = len(extra["fit_history"]["loss"])  # the warm-up epoch and the fine-tuning ones
        sites = len(card["split_counts"])
        trainval = sum(int(site["trainval"]["total"]) for site in card["split_counts"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    work = trainval * _fits(sites) * epochs
    if seconds <= 0 or work <= 0:
        return None
    side = extra.get("config", {}).get("input_size", "?")
    return Rate(seconds / work,
                f"{card.get('name')} {str(card.get('version'))[:8]}: {trainval} train + val images, {sites} site(s), "
                f"{epochs} epochs per fit, leave-one-site-out + final fit in {seconds:.0f} s at {side} px, "
                "`make train` on 2 CPU cores")


def _fits(sites: int) -> float:
    """Fits of the recipe in units of all train + val images: leave-one-site-out fits each site's model on the
    other sites (together (sites - 1) x the images), then the final model on all; one site: a 20 % hold-out fit
    on 80 % of them first."""
    return (sites - 1) + 1 if sites >= 2 else 0.8 + 1


def image_epochs(images: int, *, sites: int, epochs: int, test_fraction: float) -> int:
    """Images pushed through the recipe's fits (_fits), each a one-epoch warm-up plus `epochs`."""
    return int(round(images * (1 - test_fraction) * _fits(sites) * (epochs + 1)))


def estimate(*, images: int, sites: int, epochs: int, test_fraction: float, instance_type: str, spot: bool,
             max_runtime_seconds: int, rate: Rate | None) -> Estimate:
    work = image_epochs(images, sites=sites, epochs=epochs, test_fraction=test_fraction)
    price = ON_DEMAND_USD_PER_HOUR.get(instance_type)
    lines = [f"cost estimate for {instance_type}{' (managed spot)' if spot else ''}:"]
    if price is None:
        lines.append(f"  no price on file for {instance_type}: see https://aws.amazon.com/sagemaker/pricing/")
    else:
        lines.append(f"  on-demand list price ${price:.3f}/h (us-east-1, 2025)"
                     + (f"; spot is billed at the spot price, up to {SPOT_SAVING_UP_TO:.0%} less" if spot else ""))
    lines.append(f"  work: {images} images, {sites} site(s), {epochs} + 1 epochs per fit -> {work:,} image-epochs")
    fit_seconds = fit_usd = None
    if rate is None:
        lines.append("  fitting time: no measured rate (the model card to compare with has no final-fit timing)")
    else:
        fit_seconds = work * rate.seconds_per_image_epoch
        lines.append(f"  fitting time at most ~{fit_seconds / 60:.0f} min: {rate.seconds_per_image_epoch * 1000:.1f} ms "
                     f"per image-epoch, measured on CPU ({rate.source}); a ceiling if the instance fits no slower than those 2 cores (its GPU speed-up is not measured here)")
        if price is not None:
            fit_usd = fit_seconds / 3600 * price
            lines.append(f"  -> fitting at most ~${fit_usd:.2f} on-demand"
                         + (" (less with spot)" if spot else "")
                         + ", plus minutes of start-up, data download and upload")
    cap = None
    if price is not None:
        cap = max_runtime_seconds / 3600 * price
        lines.append(f"  cap: --max-runtime-hours {max_runtime_seconds / 3600:g} stops the job; at most ${cap:.2f} "
                     "at the on-demand price")
    return Estimate(work, fit_seconds, price, cap, fit_usd, tuple(lines))
