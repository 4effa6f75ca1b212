"""Evaluation on the saved validation split: MAE, CS(5), MAE per decade, gender accuracy, for all
faces and for each source, on the faces as they are and on degraded copies; plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nets.evaluation.reliability import gender_ece
from nets.training.data import row_sources


def predict_rows(model, rows, batch_size: int = 256, degrade=None) -> dict:
    """Model outputs for every row (crops made exactly as in training, without augmentation;
    degrade(chip) -> chip changes each chip first)."""
    from nets.training.data import ChipStore, as_inputs

    store = ChipStore(rows, memory_limit=0)  # decoded batch by batch, nothing kept
    outputs = []
    for start in range(0, len(rows), batch_size):
        crops = store.crops(range(start, min(start + batch_size, len(rows))), degrade=degrade)
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


def face_metrics(true_age, true_gender, predictions: dict) -> dict:
    """Age metrics, and with a gender output, gender accuracy and expected calibration error (ECE)
    overall and per decade (faces with a known gender)."""
    metrics = age_metrics(true_age, predictions["age"])
    if "gender" in predictions:
        known = true_gender >= 0
        right = predictions["gender"].argmax(axis=1) == true_gender
        if known.any():
            metrics["gender_accuracy"] = round(float(right[known].mean()), 4)
            metrics["gender_ece"] = round(gender_ece(predictions["gender"][known], true_gender[known]), 4)
        for decade, entry in metrics["mae_per_decade"].items():  # children's gender is much harder
            lo = int(decade.split("-")[0])
            mask = known & (true_age >= lo) & (true_age < lo + 10)
            if mask.any():
                entry["gender_accuracy"] = round(float(right[mask].mean()), 4)
                entry["gender_ece"] = round(gender_ece(predictions["gender"][mask], true_gender[mask]), 4)
    return metrics


def metrics_by_source(rows, predictions: dict) -> dict:
    """face_metrics of all rows, with "per_source": the same for each source's rows."""
    true_age = rows["age"].to_numpy(np.float32)
    true_gender = rows["gender"].to_numpy()
    metrics = face_metrics(true_age, true_gender, predictions)
    sources = row_sources(rows)
    metrics["per_source"] = {
        source: face_metrics(true_age[sources == source], true_gender[sources == source],
                             {k: v[sources == source] for k, v in predictions.items()})
        for source in sorted(set(sources))}
    return metrics


def degraded_metrics(model, rows, clean: dict) -> dict:
    """MAE (and gender accuracy) of every degraded copy (nets.training.augment.DEGRADATIONS), all faces and
    per source, with the change from the clean faces."""
    from nets.training.augment import DEGRADATIONS

    out = {}
    for name, degrade in DEGRADATIONS.items():
        m = metrics_by_source(rows, predict_rows(model, rows, degrade=degrade))
        entry = {"mae": m["mae"], "mae_change": round(m["mae"] - clean["mae"], 4)}
        if "gender_accuracy" in m:
            entry["gender_accuracy"] = m["gender_accuracy"]
        entry["per_source"] = {s: {"mae": v["mae"], "mae_change": round(v["mae"] - clean["per_source"][s]["mae"], 4),
                                   **({"gender_accuracy": v["gender_accuracy"]} if "gender_accuracy" in v else {})}
                               for s, v in m["per_source"].items()}
        out[name] = entry
    return out


def evaluate_model(model, rows, out_prefix=None, title: str = "", degraded: bool = False, extra=None) -> dict:
    """Metrics of model on rows (all faces and per source; with degraded=True also on degraded
    copies; extra: more entries to record, such as "steadiness"); with out_prefix, writes
    PREFIX.eval.json and PREFIX.eval.png."""
    from nets.evaluation.plots import plot_evaluation

    predictions = predict_rows(model, rows)
    metrics = metrics_by_source(rows, predictions)
    if degraded:
        metrics["degraded"] = degraded_metrics(model, rows, metrics)
    for key, value in (extra or {}).items():
        metrics.setdefault(key, value)
    if out_prefix is not None:
        out_prefix = Path(out_prefix)
        Path(str(out_prefix) + ".eval.json").write_text(json.dumps(metrics, indent=2))
        plot_evaluation(rows["age"].to_numpy(np.float32), predictions["age"].ravel(), row_sources(rows), metrics,
                        str(out_prefix) + ".eval.png", title)
    return metrics
