"""Evaluation on the saved validation split: MAE, CS(5), MAE per decade, gender accuracy, plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def predict_rows(model, rows, batch_size: int = 256) -> dict:
    """Model outputs for every row (crops made exactly as in training, without augmentation)."""
    from nets.data import ChipStore, as_inputs

    store = ChipStore(rows, memory_limit=0)  # decoded batch by batch, nothing kept
    outputs = []
    for start in range(0, len(rows), batch_size):
        crops = store.crops(range(start, min(start + batch_size, len(rows))))
        outputs.append({k: np.asarray(v) for k, v in model.predict_on_batch(as_inputs(crops)).items()})
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def age_metrics(true_age, pred_age) -> dict:
    true_age, pred_age = np.asarray(true_age, float).ravel(), np.asarray(pred_age, float).ravel()
    error = np.abs(pred_age - true_age)
    per_decade = {}
    for lo in range(0, int(true_age.max()) + 1, 10):
        mask = (true_age >= lo) & (true_age < lo + 10)
        if mask.any():
            per_decade[f"{lo}-{lo + 9}"] = {"mae": round(float(error[mask].mean()), 3), "n": int(mask.sum())}
    return {"faces": int(len(true_age)), "mae": round(float(error.mean()), 4),
            "cs5": round(float((error <= 5).mean()), 4), "mae_per_decade": per_decade}


def evaluate_model(model, rows, out_prefix=None, title: str = "") -> dict:
    """Metrics of model on rows; with out_prefix, writes PREFIX.eval.json and PREFIX.eval.png."""
    from nets.plots import plot_evaluation

    predictions = predict_rows(model, rows)
    true_age = rows["age"].to_numpy(np.float32)
    metrics = age_metrics(true_age, predictions["age"])
    if "gender" in predictions:
        known = rows["gender"].to_numpy() >= 0
        guess = predictions["gender"].argmax(axis=1)
        right = guess == rows["gender"].to_numpy()
        metrics["gender_accuracy"] = round(float(right[known].mean()), 4)
        for decade, entry in metrics["mae_per_decade"].items():  # children's gender is much harder
            lo = int(decade.split("-")[0])
            mask = known & (true_age >= lo) & (true_age < lo + 10)
            if mask.any():
                entry["gender_accuracy"] = round(float(right[mask].mean()), 4)
    if out_prefix is not None:
        out_prefix = Path(out_prefix)
        Path(str(out_prefix) + ".eval.json").write_text(json.dumps(metrics, indent=2))
        plot_evaluation(true_age, predictions["age"].ravel(), metrics["mae_per_decade"],
                        str(out_prefix) + ".eval.png", title)
    return metrics
