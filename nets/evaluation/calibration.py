"""Calibration of a model on its own validation faces: an honest range for every age (split conformal
prediction) and a check of its gender probabilities, written to NAME.calibration.json beside it.

Age. The score of a face is |true age - predicted age|, in years or divided by the spread of W1 (its
standard deviation in years plus SPREAD_FLOOR); its conformal quantile at level c, taken over the
calibration faces of the face's bin of predicted age (Mondrian bins: decades, merged where they hold
fewer than MIN_BIN_FACES faces), is the half-width of the range. Four methods are measured: plain
(one bin, years), normalised (one bin, W1 spread), mondrian (bins, years), mondrian+normalised (bins,
W1 spread). The fitting is crepes' ConformalRegressor (its finite-sample quantile, bins and
difficulty estimates are what this needs, and it is well tested); the table it gives is applied by
nets/inference/ranges.py with numpy alone, here as at run time.

Coverage is measured honestly: the validation faces are cut into two halves (copies of one photo on
one side, stratified by source and age decade); each half gets the ranges of a table fitted on the
other. The method kept is the narrowest whose held-out coverage is within OVERALL_TOLERANCE of the
level overall and within BIN_TOLERANCE in every bin of predicted age (with at least
MIN_REPORTED_FACES faces); the table shipped is fitted on all the validation faces.

Gender. The expected calibration error (ECE_BINS equal bins of the stated confidence, 0.5..1) overall,
per source and per decade of true age; only where it exceeds GENDER_ECE_LIMIT (overall or in a
source) is a temperature fitted (scikit-learn's logistic regression on the logit, without intercept).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nets.evaluation.reliability import expected_calibration_error, reliability
from nets.inference.ranges import (AGE_LIMITS, CALIBRATION_FORMAT, Calibration, calibration_path, file_sha256,
                                   level_name, logit, w1_spread, with_temperature)

LEVELS = (0.8, 0.9)
DEFAULT_LEVEL = 0.8
METHODS = ("plain", "normalised", "mondrian", "mondrian+normalised")
BIN_YEARS = 10              # Mondrian bins of predicted age start as decades
MIN_BIN_FACES = 100         # ... merged until each holds this many calibration faces
SPREAD_FLOOR = 3.0          # years added to the W1 spread: a confident W1 still errs by a few years
OVERALL_TOLERANCE = 0.02    # targets of issue 26, on held-out faces
BIN_TOLERANCE = 0.05
MIN_REPORTED_FACES = 100    # a bin of predicted age with fewer held-out faces is reported, not judged
GENDER_ECE_LIMIT = 0.02
GENDER_UNCERTAIN_BELOW = 0.65  # --json marks a gender stated with less confidence as uncertain
SEED = 2019


class CalibrationDataError(ValueError):
    """Too few validation faces to calibrate at a level."""


@dataclass
class Answers:
    """A model's answers on validation faces, with the truth."""
    true_age: np.ndarray
    age: np.ndarray          # predicted
    w1: np.ndarray           # W1, the distribution over the age bins
    bin_ages: np.ndarray     # the ages of W1's bins
    source: np.ndarray
    male: np.ndarray | None  # P(male) of an age + gender model
    gender: np.ndarray       # true: 0 female, 1 male, -1 unknown

    def subset(self, mask) -> "Answers":
        return Answers(self.true_age[mask], self.age[mask], self.w1[mask], self.bin_ages, self.source[mask],
                       None if self.male is None else self.male[mask], self.gender[mask])

    @property
    def spread(self) -> np.ndarray:
        return w1_spread(self.w1, self.bin_ages)


def answers_from(rows, predictions: dict, bin_ages) -> Answers:
    from nets.training.data import row_sources

    return Answers(true_age=rows["age"].to_numpy(np.float64), age=np.asarray(predictions["age"], np.float64).ravel(),
                   w1=np.asarray(predictions["W1"], np.float64), bin_ages=np.asarray(bin_ages, np.float64),
                   source=row_sources(rows),
                   male=np.asarray(predictions["gender"], np.float64)[:, 1] if "gender" in predictions else None,
                   gender=rows["gender"].to_numpy().astype(int))


# --- age ranges ---------------------------------------------------------------------------------------

def mondrian_edges(ages, min_faces: int = MIN_BIN_FACES, years: int = BIN_YEARS) -> list:
    """Inner edges of bins of predicted age: decades, the smallest bin merged into its smaller neighbour
    until every bin holds min_faces of `ages` (or one bin is left)."""
    edges = list(range(years, int(AGE_LIMITS[1]), years))
    while edges:
        counts = np.bincount(np.searchsorted(edges, ages, side="right"), minlength=len(edges) + 1)
        smallest = int(np.argmin(counts))
        if counts[smallest] >= min_faces:
            break
        if smallest == 0:
            neighbour = 1
        elif smallest == len(counts) - 1:
            neighbour = smallest - 1
        else:
            neighbour = smallest - 1 if counts[smallest - 1] <= counts[smallest + 1] else smallest + 1
        del edges[min(smallest, neighbour)]  # the edge between the two
    return [float(e) for e in edges]


def fit_table(method: str, answers: Answers, levels=LEVELS) -> dict:
    """The age table of `method` fitted on these faces: the "age" entry of a calibration file."""
    from crepes import ConformalRegressor

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    normalised = method.endswith("normalised")
    edges = mondrian_edges(answers.age) if method.startswith("mondrian") else []
    bins = np.searchsorted(edges, answers.age, side="right")
    sigmas = answers.spread + SPREAD_FLOOR if normalised else np.ones(len(answers.age))
    regressor = ConformalRegressor().fit(answers.true_age - answers.age, sigmas=sigmas, bins=bins)
    every_bin = np.arange(len(edges) + 1)
    half_widths = {}
    for level in levels:
        # the range of a prediction of 0 with a scale of 1 in each bin is the table itself: -half .. +half
        with warnings.catch_warnings():  # too few faces for a level: said below, in one sentence
            warnings.simplefilter("ignore", UserWarning)
            half = regressor.predict_int(np.zeros(len(every_bin)), sigmas=np.ones(len(every_bin)), bins=every_bin,
                                         confidence=level)[:, 1]
        if not np.all(np.isfinite(half)):
            smallest = int(np.bincount(bins, minlength=len(every_bin)).min())
            raise CalibrationDataError(f"too few validation faces to calibrate at {100 * level:g} % (a bin of "
                                       f"{smallest}; at least {int(np.ceil(1 / (1 - level))) - 1} are needed)")
        half_widths[level_name(level)] = [round(float(h), 4) for h in half]
    return {"method": method, "normalised": normalised, "bin_edges": edges, "bin_ages": answers.bin_ages.tolist(),
            "spread_floor": SPREAD_FLOOR if normalised else 0.0, "half_widths": half_widths,
            "default_level": DEFAULT_LEVEL if DEFAULT_LEVEL in levels else float(levels[0])}


def ranges_of(age_table: dict, answers: Answers, level: float):
    """(low, high) of every face, by the run-time code itself (nets/inference/ranges.py)."""
    return Calibration({"age": age_table, "applies_to": {}}).age_ranges(answers.age, answers.w1, level)


def two_halves(rows, answers: Answers, seed: int = SEED) -> np.ndarray:
    """0 or 1 per face: copies of one photo on one side (nets.training.data.duplicate_groups), the halves
    stratified by source and decade of true age."""
    from sklearn.model_selection import StratifiedGroupKFold

    from nets.training.data import duplicate_groups

    groups, _ = duplicate_groups(rows)
    strata = np.char.add(answers.source.astype(str), np.minimum(answers.true_age // 10, 9).astype(int).astype(str))
    with warnings.catch_warnings():  # a rare stratum with one face is expected
        warnings.simplefilter("ignore", UserWarning)
        _, second = next(StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed)
                         .split(np.zeros(len(strata)), strata, groups))
    half = np.zeros(len(strata), dtype=int)
    half[second] = 1
    return half


def held_out_ranges(method: str, answers: Answers, half: np.ndarray, levels=LEVELS) -> dict:
    """{level: (low, high)}: each face's range from the table fitted on the other half."""
    out = {}
    for level in levels:
        low, high = np.empty(len(half)), np.empty(len(half))
        for side in (0, 1):
            table = fit_table(method, answers.subset(half != side), levels=(level,))
            low[half == side], high[half == side] = ranges_of(table, answers.subset(half == side), level)
        out[level] = (low, high)
    return out


def decade_names(ages, last: int) -> np.ndarray:
    """"0-9", "10-19", ... and f"{last}+" for every age."""
    decade = np.minimum(np.floor(np.maximum(ages, 0) / 10), last // 10).astype(int) * 10
    return np.array([f"{d}+" if d == last else f"{d}-{d + 9}" for d in decade])


def coverage(true_age, low, high, mask=None) -> dict:
    mask = np.ones(len(true_age), bool) if mask is None else mask
    inside = (true_age >= low) & (true_age <= high)
    return {"faces": int(mask.sum()), "coverage": round(float(inside[mask].mean()), 4),
            "width": round(float((high - low)[mask].mean()), 2)}


def coverage_by(true_age, low, high, groups: np.ndarray) -> dict:
    """coverage() for each group name, in order of age."""
    names = sorted(set(groups), key=lambda g: int(g.split("-")[0].rstrip("+")))
    return {g: coverage(true_age, low, high, groups == g) for g in names}


def measure(answers: Answers, ranges: dict) -> dict:
    """Coverage and mean width of held-out ranges ({level: (low, high)}) for all faces, each source, each
    decade of true age and each decade of predicted age."""
    true_age = answers.true_age
    out = {}
    for level, (low, high) in ranges.items():
        out[level_name(level)] = {
            **coverage(true_age, low, high),
            "per_source": {s: coverage(true_age, low, high, answers.source == s) for s in sorted(set(answers.source))},
            "per_true_decade": coverage_by(true_age, low, high, decade_names(true_age, 90)),
            "per_predicted_decade": coverage_by(true_age, low, high, decade_names(answers.age, 80)),
        }
    return out


def meets_targets(measured: dict) -> dict:
    """Per level: the held-out coverage within OVERALL_TOLERANCE of the level, and the worst bin of
    predicted age (among those with MIN_REPORTED_FACES) within BIN_TOLERANCE."""
    verdict = {}
    for level, m in measured.items():
        judged = {k: v for k, v in m["per_predicted_decade"].items() if v["faces"] >= MIN_REPORTED_FACES}
        worst = max(judged, key=lambda k: abs(judged[k]["coverage"] - float(level))) if judged else None
        verdict[level] = {"overall_ok": abs(m["coverage"] - float(level)) <= OVERALL_TOLERANCE,
                          "worst_predicted_decade": worst,  # None: no bin holds enough faces to be judged
                          "worst_predicted_decade_coverage": judged[worst]["coverage"] if judged else None,
                          "bins_ok": not judged or abs(judged[worst]["coverage"] - float(level)) <= BIN_TOLERANCE}
    return verdict


def compare_methods(answers: Answers, half: np.ndarray, levels=LEVELS) -> dict:
    """Every method's held-out coverage and width ({method: {"measured", "targets", "mean_width"}})."""
    comparison = {}
    for method in METHODS:
        measured = measure(answers, held_out_ranges(method, answers, half, levels))
        comparison[method] = {"measured": measured, "targets": meets_targets(measured),
                              "mean_width": round(float(np.mean([m["width"] for m in measured.values()])), 3)}
    return comparison


def choose_method(comparison: dict) -> str:
    """The narrowest method (mean width over the levels) that meets the coverage targets at every level;
    mondrian, whose bins are what guarantees coverage per bin, where none does."""
    fit = [m for m, c in comparison.items()
           if all(v["overall_ok"] and v["bins_ok"] for v in c["targets"].values())]
    return min(fit, key=lambda m: comparison[m]["mean_width"]) if fit else "mondrian"


def across_sources(answers: Answers, method: str, levels=LEVELS) -> dict:
    """Calibrated on all the faces of one source, measured on another's: {"utk -> asia": measured}."""
    sources = sorted(set(answers.source))
    out = {}
    for fitted_on in sources:
        table = fit_table(method, answers.subset(answers.source == fitted_on), levels)
        for other in sources:
            if other != fitted_on:
                target = answers.subset(answers.source == other)
                measured = measure(target, {lv: ranges_of(table, target, lv) for lv in levels})
                for m in measured.values():
                    m.pop("per_source")
                    m.pop("per_predicted_decade")
                out[f"{fitted_on} -> {other}"] = measured
    return out


# --- gender -------------------------------------------------------------------------------------------

def gender_figures(male, gender, mask=None) -> dict:
    """Faces, accuracy, mean stated confidence and ECE of P(male) against the true gender."""
    mask = (gender >= 0) if mask is None else mask & (gender >= 0)
    confidence = np.maximum(male, 1 - male)[mask]
    right = ((male[mask] >= 0.5).astype(int) == gender[mask]).astype(float)
    return {"faces": int(mask.sum()), "accuracy": round(float(right.mean()), 4),
            "confidence": round(float(confidence.mean()), 4),
            "ece": round(expected_calibration_error(confidence, right), 4)}


def gender_report(male, answers: Answers) -> dict:
    """gender_figures overall, per source and per decade of true age, and the reliability bins."""
    known = answers.gender >= 0
    decades = decade_names(answers.true_age, 90)
    confidence = np.maximum(male, 1 - male)[known]
    right = ((male[known] >= 0.5).astype(int) == answers.gender[known]).astype(float)
    return {**gender_figures(male, answers.gender),
            "per_source": {s: gender_figures(male, answers.gender, answers.source == s) for s in sorted(set(answers.source))},
            "per_true_decade": {d: gender_figures(male, answers.gender, decades == d)
                                for d in sorted(set(decades), key=lambda g: int(g.rstrip("+").split("-")[0]))},
            "reliability": reliability(confidence, right)}


def fit_temperature(male, gender) -> float:
    """T such that sigmoid(logit / T) fits the true genders best (a logistic regression on the logit of
    P(male) without intercept: its coefficient is 1 / T)."""
    from sklearn.linear_model import LogisticRegression

    known = gender >= 0
    slope = LogisticRegression(fit_intercept=False, C=1e6).fit(logit(male[known])[:, None], gender[known]).coef_[0, 0]
    return float(1.0 / slope) if slope > 0 else 1.0


def check_gender(answers: Answers, half: np.ndarray) -> dict:
    """The "gender" entry of a calibration file: the model's own probabilities measured; a temperature
    (fitted on one half, measured on the other, then fitted on all) only where their ECE exceeds the limit."""
    measured = gender_report(answers.male, answers)
    worst = max([measured["ece"]] + [m["ece"] for m in measured["per_source"].values()])
    entry = {"measured": measured, "ece_limit": GENDER_ECE_LIMIT, "temperature": 1.0, "recalibrated": False}
    if worst > GENDER_ECE_LIMIT:
        held_out = np.empty(len(half))
        for side in (0, 1):
            temperature = fit_temperature(answers.male[half != side], answers.gender[half != side])
            held_out[half == side] = with_temperature(answers.male[half == side], temperature)
        entry.update(temperature=round(fit_temperature(answers.male, answers.gender), 4), recalibrated=True,
                     held_out_after_temperature=gender_report(held_out, answers))
    calibrated = with_temperature(answers.male, entry["temperature"])
    confidence = np.maximum(calibrated, 1 - calibrated)
    known = answers.gender >= 0
    right = (calibrated >= 0.5).astype(int) == answers.gender
    below = known & (confidence < GENDER_UNCERTAIN_BELOW)
    entry["uncertain_below"] = GENDER_UNCERTAIN_BELOW
    entry["uncertain"] = {"share": round(float(below.sum() / max(known.sum(), 1)), 4),
                          "accuracy_below": round(float(right[below].mean()), 4) if below.any() else None,
                          "accuracy_at_or_above": round(float(right[known & ~below].mean()), 4)}
    return entry


# --- the whole calibration of a model -----------------------------------------------------------------

def check_exports(model_path, rows, predictions: dict, log, count: int = 256) -> dict:
    """{file name: SHA-256} of the model and of each export beside it that answers as it does on the first
    `count` validation faces (nets.training.export.agreement); an export that does not is left out."""
    from nets.inference.tflite import TFLiteModel
    from nets.training.data import face_crops
    from nets.training.export import agreement, exports_beside

    model_path = Path(model_path)
    files = {model_path.name: file_sha256(model_path)}
    head = rows.iloc[:count]
    crops = face_crops(head)
    expected = {k: np.asarray(v)[:len(head)] for k, v in predictions.items()}
    for kind, path in exports_beside(model_path).items():
        found = agreement(TFLiteModel(path).predict_crops(crops), expected, kind)
        if found["parity_ok"]:
            files[path.name] = file_sha256(path)
        else:
            log(f"note: {path.name} does not answer as {model_path.name} does (ages up to "
                f"{found['max_age_difference']:.2f} years apart): not calibrated with it (export again with -fz)")
    return files


def calibrate_model(model_path, dataset: str | None = None, source: str | None = None, log=print) -> dict:
    """Fit, measure and write NAME.calibration.json (and NAME.calibration.png) for a .keras model, from its
    saved validation split; the weights are only read. Returns the record written."""
    from nets.evaluation.evaluate import predict_rows
    from nets.network.contract import artifact
    from nets.network.model import as_float32, describe, load_c3ae
    from nets.training.data import DataError, load_rows, make_or_load_split

    model_path = Path(model_path)
    if model_path.suffix != ".keras" or not model_path.is_file():
        raise DataError(f"{model_path} is not a .keras model file (calibrate the .keras model; its .tflite "
                        "exports beside it are calibrated with it)")
    split_path = artifact(model_path, ".split.json")
    if not split_path.is_file():
        raise DataError(f"no {split_path.name} beside {model_path}: its validation faces are unknown, and "
                        "calibrating on faces it was trained on would give ranges that are too narrow")
    config = {}
    try:
        config = json.loads(artifact(model_path, ".state.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    dataset, source = dataset or config.get("dataset"), source or config.get("source")
    if not dataset or not source:
        raise DataError(f"no state file beside {model_path} says which data it was trained on; give --dataset and --source")
    model = as_float32(load_c3ae(model_path))
    description = describe(model)
    bin_ages = [float(description["interval"] * k) for k in range(description["bins"])]
    split = make_or_load_split(load_rows(dataset, source, log=log), split_path, log=log)
    rows = split.val.reset_index(drop=True)
    if len(rows) == 0:
        raise DataError(f"none of the validation faces of {split_path.name} are in {dataset} ({source})")
    log(f"answering {len(rows)} validation faces ...")
    predictions = predict_rows(model, rows)
    answers = answers_from(rows, predictions, bin_ages)
    half = two_halves(rows, answers)
    log("measuring the methods on held-out halves ...")
    comparison = compare_methods(answers, half)
    method = choose_method(comparison)
    table = fit_table(method, answers)
    gender = check_gender(answers, half) if answers.male is not None else None
    sources = sorted(set(answers.source))
    record = {
        "format": CALIBRATION_FORMAT,
        "model": model_path.name,
        "applies_to": check_exports(model_path, rows, predictions, log),
        "made_by": f"python nets/calibrate.py {model_path} --dataset {dataset} --source '{source}'",
        "data": {"split": split_path.name, "validation_faces": len(rows), "missing": int(split.val_missing),
                 "sources": {s: int((answers.source == s).sum()) for s in sources}},
        "age": table,
        "gender": None if gender is None else {k: gender[k] for k in ("temperature", "recalibrated", "uncertain_below")},
        "measured": {
            "how": "two halves of the validation faces (copies of a photo on one side, stratified by source and "
                   "decade of age); each half's ranges come from a table fitted on the other; coverage = share of "
                   "true ages inside the range, width = mean high - low in years",
            "method_comparison": {m: {"mean_width": c["mean_width"],
                                      **{lv: {"coverage": v["coverage"], "width": v["width"], **c["targets"][lv]}
                                         for lv, v in c["measured"].items()}}
                                  for m, c in comparison.items()},
            "kept": method,
            "held_out": comparison[method]["measured"],
            "plain": comparison["plain"]["measured"],
            "across_sources": across_sources(answers, method) if len(sources) > 1 else {},
            "gender": None if gender is None else {k: v for k, v in gender.items()
                                                   if k not in ("temperature", "recalibrated", "uncertain_below")},
        },
    }
    out = calibration_path(model_path)
    out.write_text(json.dumps(record, indent=1) + "\n")
    plot_calibration(record, out.with_suffix(".png"), title=model_path.name)
    log(f"-> {out}, {out.with_suffix('.png')}")
    return record


def card_summary(record: dict) -> dict:
    """What a model card says of its calibration: the method, and the held-out numbers."""
    measured = record["measured"]
    summary = {
        "method": record["age"]["method"], "levels": sorted(float(k) for k in record["age"]["half_widths"]),
        "default_level": record["age"]["default_level"], "how": measured["how"],
        "held_out": {lv: {"coverage": m["coverage"], "width": m["width"],
                          "plain_width": measured["plain"][lv]["width"],
                          "per_source": m["per_source"],
                          "worst_predicted_decade": measured["method_comparison"][record["age"]["method"]][lv]["worst_predicted_decade"],
                          "worst_predicted_decade_coverage": measured["method_comparison"][record["age"]["method"]][lv]["worst_predicted_decade_coverage"],
                          "per_true_decade": {d: v["coverage"] for d, v in m["per_true_decade"].items()}}
                     for lv, m in measured["held_out"].items()},
        "across_sources": {pair: {lv: {"coverage": m["coverage"], "width": m["width"]} for lv, m in levels.items()}
                           for pair, levels in measured["across_sources"].items()},
    }
    if record["gender"] is not None:
        g = measured["gender"]["measured"]
        summary["gender"] = {"ece": g["ece"], "per_source": {s: v["ece"] for s, v in g["per_source"].items()},
                             "ece_limit": measured["gender"]["ece_limit"], **record["gender"]}
    return summary


def add_to_card(card: dict, model_path) -> dict:
    """The card with the calibration beside the model: its numbers, and the file among the hashed ones."""
    path = calibration_path(model_path)
    if path.is_file():
        card["calibration"] = card_summary(json.loads(path.read_text()))
        card.setdefault("files", {})[path.name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return card


def plot_calibration(record: dict, path, title: str = "") -> Path:
    """Coverage by decade of predicted and of true age, width by true age (the method kept against the
    plain interval, at every level), and the gender reliability diagram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = record["measured"]
    gender = measured.get("gender")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    axes = axes.ravel()
    method = record["age"]["method"]
    panels = [("per_predicted_decade", "coverage", "coverage by predicted age"),
              ("per_true_decade", "coverage", "coverage by true age"),
              ("per_true_decade", "width", "range width by true age (years)")]
    for ax, (key, value, panel_title) in zip(axes, panels):
        for lv, color in zip(sorted(measured["held_out"]), ("tab:blue", "tab:orange", "tab:green")):
            for name, style in ((method, "-"), ("plain", ":")):
                rows = (measured["held_out"] if name == method else measured["plain"])[lv][key]
                ax.plot(list(rows), [r[value] for r in rows.values()], style, marker="o", color=color,
                        label=f"{name} {100 * float(lv):g} %")
            if value == "coverage":
                ax.axhline(float(lv), color=color, linewidth=0.8, alpha=0.5)
        ax.set_title(panel_title)
        ax.tick_params(axis="x", rotation=45)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if value == "coverage":
            ax.set_ylim(0.3, 1.02)
    if gender:
        ax = axes[3]
        bins = gender["measured"]["reliability"]
        ax.plot([0.5, 1], [0.5, 1], "k--", linewidth=1)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-",
                label=f"all faces (ECE {gender['measured']['ece']:.3f})")
        for name, entry in gender["measured"]["per_source"].items():
            ax.plot([], [], " ", label=f"{name}: ECE {entry['ece']:.3f}")
        for b in bins:
            ax.annotate(str(b["faces"]), (b["confidence"], b["accuracy"]), fontsize=6, xytext=(2, -8),
                        textcoords="offset points")
        ax.set_xlabel("stated probability of the gender given")
        ax.set_ylabel("share right")
        ax.set_title("gender reliability (faces per bin)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    else:
        axes[3].axis("off")
    fig.suptitle(f"{title}: age ranges on held-out faces ({method} against plain)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
