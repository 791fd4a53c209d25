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


def _malignant_curve(labels, probs):
    y = np.array([l == "malignant" for l in labels])
    lesion = np.array([l != "normal" for l in labels])
    return y, lesion


def site_roc(curves, path: Path, *, threshold: float | None = None) -> Path:
    """Malignant vs rest ROC per site (unseen-site and test curves), the operating point marked."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, (name, labels, probs) in enumerate(curves):
        y, _ = _malignant_curve(labels, probs)
        if y.any() and not y.all():
            fpr, tpr, _ = roc_curve(y, probs[:, 2])
            style = "-" if name.startswith("test") else "--"
            ax.plot(fpr, tpr, style, color=f"C{k}", label=name)
            if threshold is not None:
                pred = probs[:, 2] >= threshold
                ax.plot((pred & ~y).sum() / max((~y).sum(), 1), (pred & y).sum() / y.sum(), "o", color=f"C{k}")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("malignant sensitivity")
    ax.set_title("malignant vs rest (dots: operating point)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def site_reliability(curves, path: Path) -> Path:
    """Reliability of p(malignant) per site: observed malignant rate against predicted, 10 bins."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    edges = np.linspace(0, 1, 11)
    for k, (name, labels, probs) in enumerate(curves):
        y, _ = _malignant_curve(labels, probs)
        p = probs[:, 2]
        bins = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
        xs, ys = [], []
        for b in range(10):
            m = bins == b
            if m.sum() >= 5:
                xs.append(p[m].mean())
                ys.append(y[m].mean())
        ax.plot(xs, ys, "o-" if name.startswith("test") else "s--", color=f"C{k}", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("predicted p(malignant)")
    ax.set_ylabel("observed malignant rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("calibration per site (bins with >= 5 images)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def localisation_examples(examples, path: Path) -> Path:
    """Frames with the model's heatmap over them and the true lesion mask outlined."""
    n = max(len(examples), 1)
    cols = min(5, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (grey, mask, heat, title) in zip(axes.ravel(), examples):
        side = grey.shape[0]
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
        ax.imshow(heat, cmap="inferno", alpha=0.4, extent=(0, side, side, 0), vmin=0, vmax=1)
        if mask.any():
            ax.contour(mask > 127, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(title, fontsize=7)
    return _save(fig, path)
