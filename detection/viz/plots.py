"""Matplotlib plots written as PNG (headless backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from detection.io import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_training_curves(history: pd.DataFrame, path: Path) -> Path:
    """Loss terms and validation mAP per epoch."""
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 3.8))
    for col in [c for c in history.columns if c.startswith("loss")]:
        ax_loss.plot(history["epoch"], history[col], marker=".", label=col)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    ax_loss.legend(fontsize=7)
    ax_map.plot(history["epoch"], history["val_map"], marker=".", label="mAP@[.5:.95]")
    ax_map.plot(history["epoch"], history["val_map50"], marker=".", label="mAP@0.5")
    ax_map.set(xlabel="epoch", ylabel="mAP", ylim=(0, 1), title="validation")
    ax_map.legend(fontsize=7)
    return _save(fig, path)


def plot_pr_curves(pr: dict[str, list[float]], path: Path) -> Path:
    """Precision-recall curves at IoU 0.5, one line per class (precision at 101 recall points)."""
    recall = [i / 100 for i in range(101)]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, precision in pr.items():
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall @ IoU 0.5")
    if pr:
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_per_class_ap(per_class: dict[str, dict[str, float | None]], path: Path) -> Path:
    """Horizontal bars of AP@0.5 and AP@[.5:.95] per class."""
    names = [n for n, v in per_class.items() if v["ap"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(3, len(names)) + 1))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [per_class[n]["ap50"] for n in names], height=0.4, label="AP@0.5")
    ax.barh([i - 0.2 for i in y], [per_class[n]["ap"] for n in names], height=0.4, label="AP@[.5:.95]")
    ax.set_yticks(list(y), names, fontsize=8)
    ax.set(xlim=(0, 1), xlabel="AP", title="per-class AP")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_threshold_curves(curves: pd.DataFrame, path: Path) -> Path:
    """F1, precision and recall against the score threshold (per class, and ``all`` in black)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, group in curves.groupby("class", sort=False):
        style = {"color": "black", "linewidth": 2.2} if name == "all" else {"linewidth": 1}
        for ax, col in zip(axes, ("f1", "precision", "recall")):
            ax.plot(group["threshold"], group[col], label=name, **style)
    for ax, col in zip(axes, ("F1", "precision", "recall")):
        ax.set(xlabel="score threshold", ylabel=col, xlim=(0, 1), ylim=(0, 1.02), title=f"{col} vs threshold @ IoU 0.5")
    if len(curves):
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_confusion_matrix(cm, labels: list[str], path: Path, threshold: float) -> Path:
    """Counts, rows = ground truth, columns = prediction, with a background row and column."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.5, 0.5 * n + 2))
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i][j])), ha="center", va="center", fontsize=7, color="black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="ground truth", title=f"confusion matrix (IoU 0.5, score >= {threshold:g})")
    return _save(fig, path)


def plot_training_history(history: pd.DataFrame, path: Path) -> Path:
    """Train and validation losses (total), mAP and learning rate per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for col in [c for c in history.columns if c.endswith("loss") or c.startswith("train_loss")]:
        axes[0].plot(history["epoch"], history[col], marker=".", label=col)
    axes[0].set(xlabel="epoch", ylabel="loss", title="losses")
    axes[0].legend(fontsize=6)
    for col in [c for c in ("val_map", "val_map50", "val_map75") if c in history]:
        axes[1].plot(history["epoch"], history[col], marker=".", label=col)
    axes[1].set(xlabel="epoch", ylabel="mAP", ylim=(0, 1), title="validation mAP")
    axes[1].legend(fontsize=7)
    axes[2].plot(history["epoch"], history["lr"], marker=".")
    axes[2].set(xlabel="epoch", ylabel="lr", title="learning rate (end of epoch)")
    return _save(fig, path)
