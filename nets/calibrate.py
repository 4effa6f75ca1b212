#!/usr/bin/env python
"""Calibrate a model: an honest range for every age, and its gender probabilities checked.

  python nets/calibrate.py model/c3ae_utk_asia_age_gender.keras --dataset dataset/data --source 'utk|asia'

From the model's saved validation split (NAME.split.json) it writes NAME.calibration.json beside the
model (the table nets/test.py, AgeEstimator and the light install apply, and the numbers measured on
held-out faces) and NAME.calibration.png (coverage and width by age, gender reliability), and adds
both to NAME.card.json where there is one. The weights are only read. The file lists the SHA-256 of
the model and of each .tflite export beside it that answers as it does: export (-fz) first, then
calibrate. nets/evaluation/calibration.py says how.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def print_summary(record: dict) -> None:
    """The method comparison and the held-out coverage, as Markdown tables on standard output."""
    from nets.evaluation.calibration import MIN_REPORTED_FACES

    measured = record["measured"]
    levels = sorted(measured["held_out"])
    print(f"\nMethods (held-out halves of {record['data']['validation_faces']} validation faces; kept: {measured['kept']})\n")
    print("| method | " + " | ".join(f"coverage {100 * float(lv):g} % | width | worst predicted decade" for lv in levels) + " |")
    print("|---|" + "---|---|---|" * len(levels))
    for method, c in measured["method_comparison"].items():
        cells = [f"{c[lv]['coverage']:.3f} | {c[lv]['width']:.2f} | " + (
                 f"{c[lv]['worst_predicted_decade']} {c[lv]['worst_predicted_decade_coverage']:.3f}"
                 if c[lv]["worst_predicted_decade"] else f"none with {MIN_REPORTED_FACES} faces") for lv in levels]
        print(f"| {method} | " + " | ".join(cells) + " |")
    for key, title in (("per_source", "source"), ("per_true_decade", "true age"), ("per_predicted_decade", "predicted age")):
        print(f"\nBy {title} ({measured['kept']}; plain for comparison)\n")
        print(f"| {title} | faces | " + " | ".join(f"{100 * float(lv):g} %: coverage | width | plain coverage | plain width"
                                                 for lv in levels) + " |")
        print("|---|---|" + "---|---|---|---|" * len(levels))
        for name, entry in measured["held_out"][levels[0]][key].items():
            cells = []
            for lv in levels:
                kept, plain = measured["held_out"][lv][key][name], measured["plain"][lv][key][name]
                cells.append(f"{kept['coverage']:.3f} | {kept['width']:.1f} | {plain['coverage']:.3f} | {plain['width']:.1f}")
            print(f"| {name} | {entry['faces']} | " + " | ".join(cells) + " |")
    if measured["across_sources"]:
        print("\nAcross sources (calibrated on all faces of one, measured on the other)\n")
        print("| calibrated on -> measured on | " + " | ".join(f"{100 * float(lv):g} %: coverage | width" for lv in levels) + " |")
        print("|---|" + "---|---|" * len(levels))
        for pair, m in measured["across_sources"].items():
            print(f"| {pair} | " + " | ".join(f"{m[lv]['coverage']:.3f} | {m[lv]['width']:.1f}" for lv in levels) + " |")
    gender = measured["gender"]
    if gender:
        g = gender["measured"]
        print(f"\nGender (expected calibration error, 10 bins of stated probability; limit {gender['ece_limit']}; "
              f"temperature {record['gender']['temperature']})\n")
        print("| faces | count | accuracy | mean stated probability | ECE |\n|---|---|---|---|---|")
        print(f"| all | {g['faces']} | {g['accuracy']:.3f} | {g['confidence']:.3f} | {g['ece']:.4f} |")
        for group in ("per_source", "per_true_decade"):
            for name, v in g[group].items():
                print(f"| {name} | {v['faces']} | {v['accuracy']:.3f} | {v['confidence']:.3f} | {v['ece']:.4f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the .keras model (its NAME.split.json beside it says its validation faces)")
    p.add_argument("--dataset", default=None, help="folder of the feather files (default: the model's training data)")
    p.add_argument("--source", default=None, help="feather source name or regex (default: the model's)")
    args = p.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    from detect.quiet import start_tensorflow

    start_tensorflow()  # its start-up notices are not this tool's output
    from nets.evaluation.calibration import CalibrationDataError, add_to_card, calibrate_model
    from nets.network.contract import ModelFileError, artifact
    from nets.training.data import DataError

    try:
        record = calibrate_model(args.model, args.dataset, args.source, log=log)
    except (CalibrationDataError, DataError, ModelFileError) as exc:
        log(f"error: {exc}")
        return 2
    print_summary(record)
    card_path = artifact(args.model, ".card.json")
    if card_path.is_file():
        card = add_to_card(json.loads(card_path.read_text()), args.model)
        card_path.write_text(json.dumps(card, indent=2))
        log(f"-> {card_path} (calibration and its SHA-256 added)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
