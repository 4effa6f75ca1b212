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


# Balanced MAE: the mean of the per-decade MAEs over these decades, each with at least this many faces
# (the many-/few-shot view of imbalanced regression: every age counts as much as the 20-39 year olds)
BALANCED_DECADES = range(0, 80, 10)
BALANCED_MIN_FACES = 20


def decade_masks(true_age):
    """{"0-9": mask, "10-19": mask, ...}: the faces of each decade of true age that has any."""
    true_age = np.asarray(true_age, float).ravel()
    masks = {}
    for lo in range(0, int(true_age.max()) + 1, 10):
        mask = (true_age >= lo) & (true_age < lo + 10)
        if mask.any():
            masks[f"{lo}-{lo + 9}"] = mask
    return masks


def balanced_decades(per_decade: dict) -> list:
    """The decades that count in the balanced MAE (and in the targets per decade): 0-79, 20+ faces."""
    return [d for d, entry in per_decade.items()
            if int(d.split("-")[0]) in BALANCED_DECADES and entry["n"] >= BALANCED_MIN_FACES]


def age_metrics(true_age, pred_age) -> dict:
    """MAE, CS(5), the signed bias (mean of predicted minus true), per decade the MAE and the bias,
    and the balanced MAE (the mean of the per-decade MAEs, BALANCED_DECADES)."""
    true_age, pred_age = np.asarray(true_age, float).ravel(), np.asarray(pred_age, float).ravel()
    signed = pred_age - true_age
    error = np.abs(signed)
    per_decade = {decade: {"mae": round(float(error[mask].mean()), 3), "bias": round(float(signed[mask].mean()), 3),
                           "n": int(mask.sum())}
                  for decade, mask in decade_masks(true_age).items()}
    counted = balanced_decades(per_decade)  # none: too few faces for a balanced MAE (None)
    balanced = round(float(np.mean([per_decade[d]["mae"] for d in counted])), 4) if counted else None
    return {"faces": int(len(true_age)), "mae": round(float(error.mean()), 4), "balanced_mae": balanced,
            "bias": round(float(signed.mean()), 4), "cs5": round(float((error <= 5).mean()), 4),
            "mae_per_decade": per_decade}


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


def age_shift(true_age, clean_age, degraded_age) -> dict:
    """How a degradation moves the answers: the mean signed shift (degraded minus clean) overall and
    per decade of true age, and the largest shift in a decade that counts (balanced_decades)."""
    true_age = np.asarray(true_age, float).ravel()
    shift = np.asarray(degraded_age, float).ravel() - np.asarray(clean_age, float).ravel()
    per_decade = {decade: {"shift": round(float(shift[mask].mean()), 3), "n": int(mask.sum())}
                  for decade, mask in decade_masks(true_age).items()}
    counted = balanced_decades(per_decade)
    worst = max(counted, key=lambda d: abs(per_decade[d]["shift"])) if counted else None
    return {"age_shift": round(float(shift.mean()), 4), "age_shift_per_decade": per_decade,
            "largest_decade_shift": per_decade[worst]["shift"] if worst else None}


def degraded_metrics(model, rows, clean: dict, clean_predictions: dict) -> dict:
    """For every degraded copy (nets.training.augment.DEGRADATIONS), all faces and per source: MAE and
    balanced MAE with their change from the clean faces, the signed shift of the answers (overall and
    per decade), and gender accuracy."""
    from nets.training.augment import DEGRADATIONS

    true_age = rows["age"].to_numpy(np.float32)
    sources = row_sources(rows)

    def entry(m, reference, where, predictions):
        return {"mae": m["mae"], "mae_change": round(m["mae"] - reference["mae"], 4),
                "balanced_mae": m["balanced_mae"],
                "balanced_mae_change": None if m["balanced_mae"] is None
                else round(m["balanced_mae"] - reference["balanced_mae"], 4),
                **age_shift(true_age[where], clean_predictions["age"][where], predictions["age"][where]),
                **({"gender_accuracy": m["gender_accuracy"]} if "gender_accuracy" in m else {})}

    out = {}
    everyone = np.ones(len(rows), bool)
    for name, degrade in DEGRADATIONS.items():
        predictions = predict_rows(model, rows, degrade=degrade)
        m = metrics_by_source(rows, predictions)
        out[name] = {**entry(m, clean, everyone, predictions),
                     "per_source": {s: entry(v, clean["per_source"][s], sources == s, predictions)
                                    for s, v in m["per_source"].items()}}
    return out


def evaluate_model(model, rows, out_prefix=None, title: str = "", degraded: bool = False, extra=None) -> dict:
    """Metrics of model on rows (all faces and per source; with degraded=True also on degraded
    copies; extra: more entries to record, such as "steadiness"); with out_prefix, writes
    PREFIX.eval.json and PREFIX.eval.png."""
    from nets.evaluation.plots import plot_evaluation

    predictions = predict_rows(model, rows)
    metrics = metrics_by_source(rows, predictions)
    if degraded:
        metrics["degraded"] = degraded_metrics(model, rows, metrics, predictions)
    for key, value in (extra or {}).items():
        metrics.setdefault(key, value)
    if out_prefix is not None:
        out_prefix = Path(out_prefix)
        Path(str(out_prefix) + ".eval.json").write_text(json.dumps(metrics, indent=2))
        plot_evaluation(rows["age"].to_numpy(np.float32), predictions["age"].ravel(), row_sources(rows), metrics,
                        str(out_prefix) + ".eval.png", title)
    return metrics
