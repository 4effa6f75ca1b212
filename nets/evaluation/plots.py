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


def plot_evaluation(true_age, pred_age, sources, metrics: dict, path, title: str = ""):
    """Error and signed bias by age (and gender accuracy by age) per source, and predicted against true age."""
    names = sorted(metrics["per_source"])
    gender = "gender_accuracy" in metrics
    fig, axes = plt.subplots(1, 4 if gender else 3, figsize=(20 if gender else 15, 4))
    decades = list(metrics["mae_per_decade"])
    width = 0.8 / len(names)
    panels = [(axes[0], "mae", "MAE (years)", "error by age"),
              (axes[1], "bias", "predicted minus true (years)", "signed bias by age")]
    if gender:
        panels.append((axes[2], "gender_accuracy", "gender accuracy", "gender by age"))
    for ax, key, ylabel, panel_title in panels:
        for k, name in enumerate(names):
            per_decade = metrics["per_source"][name]["mae_per_decade"]
            xs = [x + (k - (len(names) - 1) / 2) * width for x, d in enumerate(decades) if key in per_decade.get(d, {})]
            values = [per_decade[d][key] for d in decades if key in per_decade.get(d, {})]
            counts = [per_decade[d]["n"] for d in decades if key in per_decade.get(d, {})]
            overall = metrics["per_source"][name].get("balanced_mae" if key == "bias" else key)
            what = "balanced MAE" if key == "bias" else "overall"
            ax.bar(xs, values, width, label=f"{name} ({overall:.3g} {what})" if overall is not None else name)
            if key == "mae":
                for x, v, n in zip(xs, values, counts):
                    ax.text(x, v, str(n), ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(decades)), decades, rotation=45)
        ax.set_xlabel("true age (years)" + ("; faces counted above bars" if key == "mae" else ""))
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        if key == "gender_accuracy":
            ax.set_ylim(0.4, 1.0)
        if key == "bias":
            ax.axhline(0, color="k", linewidth=0.8)
        ax.legend(fontsize=8)
    scatter = axes[-1]
    for name in names:
        mask = sources == name
        scatter.scatter(true_age[mask], pred_age[mask], s=3, alpha=0.3, label=name)
    top = max(float(np.max(true_age)), float(np.max(pred_age)), 1.0)
    scatter.plot([0, top], [0, top], "k--", linewidth=1)
    scatter.set_xlabel("true age")
    scatter.set_ylabel("predicted age")
    scatter.set_title("predicted against true")
    scatter.legend(fontsize=8, markerscale=4)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bias_comparison(evaluations: dict, path, decades_shown: int = 9):
    """Signed bias (predicted minus true) by decade of true age, one panel per source, one line per
    model: evaluations is {label: the metrics of -test (NAME.eval.json)}."""
    sources = sorted({s for m in evaluations.values() for s in m["per_source"]})
    fig, axes = plt.subplots(1, len(sources), figsize=(5.5 * len(sources), 4), squeeze=False)
    for ax, source in zip(axes[0], sources):
        for label, metrics in evaluations.items():
            if source not in metrics["per_source"]:  # a cross-source run validates on one source
                continue
            on_source = metrics["per_source"][source]
            per_decade = on_source["mae_per_decade"]
            decades = [d for d in per_decade if int(d.split("-")[0]) < 10 * decades_shown]
            lows = [int(d.split("-")[0]) + 5 for d in decades]
            balanced = on_source["balanced_mae"]
            ax.plot(lows, [per_decade[d]["bias"] for d in decades], marker="o",
                    label=f"{label} (MAE {on_source['mae']:.2f}"
                          + (f", balanced {balanced:.2f})" if balanced is not None else ")"))
        ax.axhline(0, color="k", linewidth=0.8)
        ax.axhspan(-3, 3, color="green", alpha=0.08, label="within 3 years")
        ax.set_title(f"{source}: signed bias by age")
        ax.set_xlabel("true age (middle of the decade)")
        ax.set_ylabel("predicted minus true (years)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
