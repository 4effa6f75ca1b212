#!/usr/bin/env python
"""The LAG check of one or more model files (.keras or .tflite): the same people young and grown up.

  python nets/lag_check.py model/c3ae_utk_asia_age_gender.float32.tflite runs/x/m.keras
  python nets/lag_check.py MODEL --lag ../shared/data/LAG --json

For each model: the median predicted age of the young photos and their share under 13 and under 18,
the median of the adult photos, and the share of same-person (young, adult) pairs in the right order.
The photos are detected and cut once per run, however many models are checked.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def table(results: dict) -> str:
    lines = ["| model | young median | young < 13 | young < 18 | adult median | pairs in order | not found (young, adult) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['young_median']:.1f} | {r['young_under_13']:.3f} | {r['young_under_18']:.3f} | "
                     f"{r['adult_median']:.1f} | {r['pairs_in_order']:.3f} | {r['not_found']['young']}, "
                     f"{r['not_found']['adult']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from detect.detector import DEFAULT_DETECTOR, DETECTORS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help=".keras or .tflite model files of this project")
    p.add_argument("--lag", default=None, help="the LAG folder with young/ and adult/ (default: dataset/LAG, "
                                               "else ../shared/data/LAG)")
    p.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                   help="the detector the models' training faces were prepared with")
    p.add_argument("--json", action="store_true", help="the numbers as JSON on standard output, not a table")
    args = p.parse_args(argv)

    from nets.evaluation.lag import lag_check
    from nets.inference.predict import load_model_file
    from nets.network.contract import ModelFileError

    results = {}
    try:
        for model in args.models:
            results[model] = lag_check(load_model_file(model), args.lag, args.detector)
    except (ModelFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
