"""Plots of training curves and of evaluation results (matplotlib, written as PNG)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(history: list[dict], stage_starts: list, path, gender: bool = False):
    """Loss, age MAE (and gender accuracy) by epoch; a dotted line where fine-tuning (-p) began."""
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    panels = [("loss", "loss"), ("age MAE (years)", "age_mae")] + ([("gender accuracy", "gender_accuracy")]
                                                                   if gender else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    for ax, (title, key) in zip(np.atleast_1d(axes), panels):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [h.get(prefix + key, np.nan) for h in history]
            ax.plot(epochs, values, style, marker=".", label="validation" if prefix else "training")
        for k, start in enumerate(stage_starts):
            ax.axvline(start, color="gray", linestyle=":", label="fine-tuning (-p) from here" if k == 0 else None)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_evaluation(true_age, pred_age, per_decade: dict, path, title: str = ""):
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    decades = list(per_decade)
    left.bar(decades, [per_decade[d]["mae"] for d in decades], color="tab:blue")
    for x, d in enumerate(decades):
        left.text(x, per_decade[d]["mae"], str(per_decade[d]["n"]), ha="center", va="bottom", fontsize=7)
    left.set_xlabel("true age (years; faces counted above bars)")
    left.set_ylabel("MAE (years)")
    left.set_title("error by age")
    left.tick_params(axis="x", rotation=45)
    right.scatter(true_age, pred_age, s=3, alpha=0.3)
    top = max(float(np.max(true_age)), float(np.max(pred_age)), 1.0)
    right.plot([0, top], [0, top], "k--", linewidth=1)
    right.set_xlabel("true age")
    right.set_ylabel("predicted age")
    right.set_title("predicted against true")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
