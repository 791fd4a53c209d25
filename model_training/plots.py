"""PNG plots: confusion matrix, ROC curves, reliability diagram, training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .calibrate import reliability_bins  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion(matrix, labels, path: Path, title: str) -> Path:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def roc(y, probs, labels, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for c, label in enumerate(labels):
        positive = y == c
        if positive.any() and not positive.all():
            fpr, tpr, _ = roc_curve(positive, probs[:, c])
            ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def reliability(y, probs, path: Path, title: str) -> Path:
    centres, acc, conf, counts = reliability_bins(probs, y)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ok = counts > 0
    ax.bar(centres[ok], acc[ok], width=0.09, alpha=0.7, label="accuracy")
    ax.plot(centres[ok], conf[ok], "o", color="C1", label="mean confidence")  # gap to bar top = miscalibration
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(fig, path)


def training_curves(histories: dict[str, dict], path: Path) -> Path:
    """One panel per stage: loss and validation loss per epoch."""
    stages = [(name, h) for name, h in histories.items() if h and h.get("loss")]
    fig, axes = plt.subplots(1, max(len(stages), 1), figsize=(4.5 * max(len(stages), 1), 3.5), squeeze=False)
    if not stages:
        axes[0][0].text(0.5, 0.5, "no epoch-based training\n(exact-solve head, no fine-tuning)", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (name, h) in zip(axes[0], stages):
        ax.plot(h["loss"], label="train loss")
        if "val_loss" in h:
            ax.plot(h["val_loss"], label="val loss")
        if "val_accuracy" in h:
            ax.plot(h["val_accuracy"], label="val accuracy")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    return _save(fig, path)
