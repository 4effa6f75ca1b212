"""Models side by side from their -test records (NAME.eval.json): accuracy, signed bias per decade,
degraded copies and LAG, as Markdown tables, and the targets of issue 25 against a reference model."""
from __future__ import annotations

from nets.evaluation.evaluate import balanced_decades

BIAS_DECADES = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69"]  # the bias target's decades
TARGETS = {  # issue 25, against the reference (the shipped model)
    "balanced_mae_gain": 0.7,    # balanced MAE at least this much lower, each source
    "bias_limit": 3.0,           # |signed bias| within this in every decade 0-69, each source
    "mae_loss": 0.3,             # plain MAE at most this much worse, each source
    "lag_young_median": 18.0, "lag_young_under_18": 0.55, "lag_adult_median": 30.0, "lag_pairs": 0.94,
    "shift_overall": 0.5,        # degraded copies: mean signed shift within this
    "shift_decade": 1.0,         # and within this in every decade that counts (0-79, 20+ faces)
}


def _number(value, spec: str = ".3f") -> str:
    """A number for a table; "-" where there is none (a balanced MAE of too few faces)."""
    return "-" if value is None else format(value, spec)


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header, rows) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header))] + [_row(r) for r in rows])


def accuracy_table(evaluations: dict) -> str:
    """Per model and source: faces, MAE, balanced MAE, the signed bias of each decade 0-79."""
    decades = BIAS_DECADES + ["70-79"]
    rows = []
    for label, m in evaluations.items():
        for source, s in m["per_source"].items():
            per = s["mae_per_decade"]
            rows.append([label, source, s["faces"], f"{s['mae']:.3f}", _number(s["balanced_mae"])]
                        + [f"{per[d]['bias']:+.1f}" if d in per else "" for d in decades])
    return _table(["model", "source", "faces", "MAE", "balanced MAE"] + [f"bias {d}" for d in decades], rows)


def decade_table(evaluations: dict, source: str) -> str:
    """MAE / signed bias of every decade of one source, per model that was validated on it (a
    cross-source run validates on one source only)."""
    on_source = {label: m["per_source"][source]["mae_per_decade"]
                 for label, m in evaluations.items() if source in m["per_source"]}
    decades = sorted({d for per in on_source.values() for d in per}, key=lambda d: int(d.split("-")[0]))
    rows = [[label] + [f"{per[d]['mae']:.2f} / {per[d]['bias']:+.1f}" if d in per else "" for d in decades]
            for label, per in on_source.items()]
    first = next(iter(on_source.values()))
    rows.insert(0, ["faces"] + [first.get(d, {}).get("n", "") for d in decades])
    return _table([f"{source}: MAE / bias"] + decades, rows)


def degraded_table(evaluations: dict) -> str:
    """Per model, source and degraded copy: the MAE change and the signed shift, overall and its
    largest decade."""
    rows = []
    for label, m in evaluations.items():
        for name, d in m.get("degraded", {}).items():
            for source, s in d["per_source"].items():
                if "age_shift" not in s:
                    continue
                rows.append([label, name, source, f"{s['mae_change']:+.3f}", _number(s["balanced_mae_change"], "+.3f"),
                             f"{s['age_shift']:+.2f}", f"{s['largest_decade_shift']:+.2f}"])
    return _table(["model", "copy", "source", "MAE change", "balanced MAE change", "answers moved",
                   "largest move in a decade"], rows)


def lag_table(evaluations: dict) -> str:
    rows = [[label, f"{l['young_median']:.1f}", f"{l['young_under_13']:.3f}", f"{l['young_under_18']:.3f}",
             f"{l['adult_median']:.1f}", f"{l['pairs_in_order']:.3f}"]
            for label, m in evaluations.items() if (l := m.get("lag"))]
    return _table(["model", "young median", "young < 13", "young < 18", "adult median", "pairs in order"], rows)


def target_report(metrics: dict, reference: dict) -> list[tuple[str, bool, str]]:
    """Each target of issue 25: (what, met, the numbers) for a model against the reference model."""
    t, report = TARGETS, []
    for source, s in metrics["per_source"].items():
        ref = reference["per_source"].get(source)
        if ref is None:
            continue
        known = s["balanced_mae"] is not None and ref["balanced_mae"] is not None
        gain = ref["balanced_mae"] - s["balanced_mae"] if known else None
        report.append((f"{source}: balanced MAE at least {t['balanced_mae_gain']} lower",
                       known and gain >= t["balanced_mae_gain"],
                       f"{_number(s['balanced_mae'])} against {_number(ref['balanced_mae'])} "
                       f"({_number(None if gain is None else -gain, '+.3f')})"))
        worst = max((d for d in BIAS_DECADES if d in s["mae_per_decade"]),
                    key=lambda d: abs(s["mae_per_decade"][d]["bias"]))
        bias = s["mae_per_decade"][worst]["bias"]
        report.append((f"{source}: bias within +-{t['bias_limit']:g} in every decade 0-69", abs(bias) <= t["bias_limit"],
                       f"largest {bias:+.1f} ({worst})"))
        loss = s["mae"] - ref["mae"]
        report.append((f"{source}: plain MAE at most {t['mae_loss']} worse", loss <= t["mae_loss"],
                       f"{s['mae']:.3f} against {ref['mae']:.3f} ({loss:+.3f})"))
    lag = metrics.get("lag")
    if lag:
        met = (lag["young_median"] <= t["lag_young_median"] and lag["young_under_18"] >= t["lag_young_under_18"]
               and lag["adult_median"] >= t["lag_adult_median"] and lag["pairs_in_order"] >= t["lag_pairs"])
        report.append(("LAG: young median <= 18, >= 55 % under 18, adult median >= 30, pairs >= 94 %", met,
                       f"{lag['young_median']:.1f}, {lag['young_under_18']:.0%}, {lag['adult_median']:.1f}, "
                       f"{lag['pairs_in_order']:.1%}"))
    for name, d in metrics.get("degraded", {}).items():
        if "age_shift" not in d:
            continue
        counted = balanced_decades(d["age_shift_per_decade"])
        worst = max((abs(d["age_shift_per_decade"][k]["shift"]) for k in counted), default=0.0)
        met = abs(d["age_shift"]) <= t["shift_overall"] and worst <= t["shift_decade"]
        report.append((f"{name}: answers moved within +-{t['shift_overall']} overall, +-{t['shift_decade']} per decade",
                       met, f"{d['age_shift']:+.2f} overall, largest decade {d['largest_decade_shift']:+.2f}"))
    return report


def target_table(evaluations: dict, reference_label: str) -> str:
    reference = evaluations[reference_label]
    rows = []
    for label, m in evaluations.items():
        report = target_report(m, reference)
        rows += [[label, what, "met" if met else "missed", numbers] for what, met, numbers in report]
        rows.append([label, "**targets met**", f"**{sum(met for _, met, _ in report)} of {len(report)}**", ""])
    return _table(["model", f"target (against {reference_label})", "", "numbers"], rows)
