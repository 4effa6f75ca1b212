#!/usr/bin/env python
"""Models side by side from their -test records: accuracy and signed bias per decade and source,
degraded copies, LAG, and the targets of issue 25 against the first model (the reference).

  python nets/compare_evals.py shipped=model/c3ae_utk_asia_age_gender.eval.json new=runs/x/m.eval.json \\
      --plot assets/bias_age_gender.png

Each argument is LABEL=PATH or a PATH (labelled by its file name). Prints Markdown tables.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def read_evaluations(items) -> dict:
    evaluations = {}
    for item in items:
        label, _, path = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
        try:
            evaluations[label] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable -test record (NAME.eval.json): {exc}") from exc
        if "balanced_mae" not in evaluations[label]:
            raise ValueError(f"{path} has no balanced MAE: it was written before issue 25; run -test again")
    return evaluations


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("evaluations", nargs="+", help="LABEL=NAME.eval.json (the first is the reference of the targets)")
    p.add_argument("--plot", default=None, help="write the signed bias by decade, per source, of every model here (.png)")
    args = p.parse_args(argv)

    from nets.evaluation.compare import accuracy_table, decade_table, degraded_table, lag_table, target_table

    try:
        evaluations = read_evaluations(args.evaluations)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sources = sorted({s for m in evaluations.values() for s in m["per_source"]})
    parts = [accuracy_table(evaluations)] + [decade_table(evaluations, s) for s in sources]
    parts += [degraded_table(evaluations), lag_table(evaluations)]
    if len(evaluations) > 1:
        parts.append(target_table(evaluations, next(iter(evaluations))))
    print("\n\n".join(parts))
    if args.plot:
        from nets.evaluation.plots import plot_bias_comparison

        plot_bias_comparison(evaluations, args.plot)
        print(f"-> {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
