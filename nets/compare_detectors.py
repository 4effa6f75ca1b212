#!/usr/bin/env python
"""Compare face detectors end to end: the same models on the same raw photos, faces found by each.

For every photo of a labelled source (optionally only the validation faces of a saved split),
each detector finds the faces, the largest is prepared and given to each model, and its age and
gender are compared with the label; with --degraded also on degraded copies of the chip (grey,
4x down-and-up, JPEG 30, as -test). Printed as tables: photos, faces found, MAE, CS(5), gender
accuracy, detector time per photo (median, timed in the same loop, photo by photo), the same
metrics on the photos where every detector found a face, and how the boxes and landmarks of the
detectors agree on the same faces.

  python nets/compare_detectors.py --source utk -i ../shared/data/UTKFace \\
      --split model/c3ae_utk_asia_age_gender.split.json
  python nets/compare_detectors.py --source asia -i ../shared/data/AllAgeFaces --every 4 -m a.tflite b.keras
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def replaceable_records(path) -> bool:
    """--save may write over nothing, or over the records of an earlier comparison (per detector, a
    list of per-photo records), never over a split file, a model or anything else."""
    try:
        with open(path, "rb") as handle:
            records = json.loads(handle.read())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):  # a folder, a binary file, not JSON
        return False
    return isinstance(records, dict) and all(
        isinstance(per_photo, list) and all(isinstance(r, dict) and "found" in r for r in per_photo)
        for per_photo in records.values())


def select_items(source: str, input_path, split_path=None, every: int = 1, limit: int | None = None):
    """The labelled photos of a source; with a split, only its validation faces of that source."""
    from preprocessing.sources import read_source

    items, _ = read_source(source, input_path)
    if split_path:
        from nets.training.data import read_split

        keys = set(read_split(split_path, "give a NAME.split.json")["val"])
        items = [item for item in items if f"{source}:{item.name}" in keys]
    items = items[::every]
    return items[:limit] if limit else items


def run_detectors(items, model_paths, detector_names, degraded: bool = False, log=print) -> dict:
    """Per detector, one record per photo: found, detector seconds, box and landmarks, and per
    model its age and gender guess (and ages on degraded copies)."""
    from tqdm import tqdm

    from detect import ImageReadError, load_image, make_detector
    from detect.prepare import prepare_detection
    from detect.triple_box import crop_triple
    from nets.training.augment import DEGRADATIONS
    from nets.inference.predict import load_model_file

    detectors = {name: make_detector(name) for name in detector_names}
    runners = {model_name(path, model_paths): load_model_file(path) for path in model_paths}
    records = {name: [] for name in detector_names}
    for item in tqdm(items, unit="photo", desc="photos"):
        try:
            image = load_image(item.path)
        except ImageReadError as exc:
            log(f"skipped: {exc}")
            continue
        for name, detector in detectors.items():
            start = time.perf_counter()
            found = detector.detect(image)
            seconds = time.perf_counter() - start
            record = {"name": item.name, "age": item.age, "gender": item.gender, "found": bool(found),
                      "seconds": seconds}
            if found:
                face = prepare_detection(image, found[0])
                crops = [face.crops()]
                if degraded:
                    crops += [crop_triple(degrade(face.chip), face.triple) for degrade in DEGRADATIONS.values()]
                record.update(box=found[0].box.tolist(), landmarks=found[0].landmarks.tolist(), models={})
                for model, runner in runners.items():
                    out = runner.predict_crops(np.stack(crops))
                    guess = {"age": float(out["age"][0, 0])}
                    if "gender" in out:
                        guess["gender"] = int(np.argmax(out["gender"][0]))  # 0 female, 1 male
                    if degraded:
                        guess["degraded"] = dict(zip(DEGRADATIONS, out["age"][1:, 0].astype(float).tolist()))
                    record["models"][model] = guess
            records[name].append(record)
    return records


def model_name(path, paths) -> str:
    """A model's file name, or its path where two models share a name."""
    names = [Path(p).name for p in paths]
    return Path(path).name if names.count(Path(path).name) == 1 else str(path)


def metrics(records, model: str) -> dict:
    found = [r for r in records if r["found"]]
    out = {"photos": len(records), "found": len(found)}
    if found:
        truth = np.array([r["age"] for r in found])
        error = np.abs(np.array([r["models"][model]["age"] for r in found]) - truth)
        out.update(mae=float(error.mean()), cs5=float((error <= 5).mean()))
        gendered = [r for r in found if "gender" in r["models"][model] and r["gender"] >= 0]
        if gendered:
            out["gender_accuracy"] = float(np.mean([r["models"][model]["gender"] == r["gender"] for r in gendered]))
        if "degraded" in found[0]["models"][model]:
            out["degraded"] = {k: float(np.mean(np.abs(np.array([r["models"][model]["degraded"][k] for r in found]) - truth)))
                               for k in found[0]["models"][model]["degraded"]}
    out["ms_median"] = 1e3 * statistics.median(r["seconds"] for r in records) if records else float("nan")
    return out


def summary_table(records: dict, models: list, title: str) -> str:
    names = list(records)
    both = set.intersection(*({r["name"] for r in records[n] if r["found"]} for n in names))
    cell = lambda d, k, f="{:.3f}": f.format(d[k]) if k in d else "-"  # noqa: E731
    first = records[names[0]]
    degraded = [k for r in first if r["found"] for k in r["models"][models[0]].get("degraded", {})][:3]
    lines = [f"\n{title}\n",
             "| model | detector | photos | faces found | MAE | CS(5) | gender accuracy | detector ms per photo (median) "
             f"| on the {len(both)} photos all found: MAE | CS(5) | gender accuracy |"
             + "".join(f" {k}: MAE |" for k in degraded),
             "|" + " --- |" * (10 + len(degraded))]
    for model in models:
        for name in names:
            m = metrics(records[name], model)
            p = metrics([r for r in records[name] if r["name"] in both], model)
            lines.append(f"| {model} | {name} | {m['photos']} | {m['found']} ({m['found'] / max(1, m['photos']):.1%}) "
                         f"| {cell(m, 'mae')} | {cell(m, 'cs5')} | {cell(m, 'gender_accuracy')} | {m['ms_median']:.1f} "
                         f"| {cell(p, 'mae')} | {cell(p, 'cs5')} | {cell(p, 'gender_accuracy')} |"
                         + "".join(f" {m['degraded'][k]:.3f} |" if k in m.get("degraded", {}) else " - |"
                                   for k in degraded))
    return "\n".join(lines)


def agreement_table(records: dict, reference: str = "mtcnn") -> str:
    """How each detector's largest face agrees with the reference detector's on the same photos:
    box edges as fractions of the reference box's width or height, landmarks as fractions of its
    eye distance (medians, with the middle half)."""
    if reference not in records or len(records) < 2:
        return ""
    ref = {r["name"]: r for r in records[reference] if r["found"]}
    lines = [f"\nAgreement with {reference} on the photos both found (medians; 25-75 % in brackets)\n",
             "| detector | faces | x1 | y1 | x2 | y2 | landmark distance / eye distance (eyes, nose, mouth) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in records.items():
        pairs = [(r, ref[r["name"]]) for r in rows if r["found"] and r["name"] in ref and name != reference]
        if not pairs:
            continue
        box, ref_box = (np.array([p[k]["box"] for p in pairs]) for k in (0, 1))
        size = np.stack([ref_box[:, 2] - ref_box[:, 0], ref_box[:, 3] - ref_box[:, 1]] * 2, axis=1)
        offsets = (box - ref_box) / size
        marks, ref_marks = (np.array([p[k]["landmarks"] for p in pairs]) for k in (0, 1))
        eye = np.linalg.norm(ref_marks[:, 1] - ref_marks[:, 0], axis=1)[:, None]
        distance = np.median(np.linalg.norm(marks - ref_marks, axis=2) / eye, axis=0)
        cells = [f"{np.median(o):+.3f} [{np.percentile(o, 25):+.3f}, {np.percentile(o, 75):+.3f}]" for o in offsets.T]
        lines.append(f"| {name} | {len(pairs)} | " + " | ".join(cells)
                     + f" | {(distance[0] + distance[1]) / 2:.3f}, {distance[2]:.3f}, {(distance[3] + distance[4]) / 2:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from detect.detector import DETECTORS
    from nets.inference.predict import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="label reader: utk, asia, afad, csv, ...")
    p.add_argument("-i", "--input", required=True, help="the source's folder (or file)")
    p.add_argument("--split", help="a NAME.split.json: only its validation faces (default: every photo)")
    p.add_argument("-m", "--models", nargs="+", default=[str(DEFAULT_MODEL)],
                   help="model files (.keras or .tflite), each run on every face (default: nets/test.py's)")
    p.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS), help="(default: both)")
    p.add_argument("--degraded", action="store_true", help="also the MAE on degraded copies of each chip")
    p.add_argument("--every", type=int, default=1, help="every N-th photo only (default 1)")
    p.add_argument("--limit", type=int, default=None, help="at most N photos (default: all)")
    p.add_argument("--save", help="write the per-photo records to this JSON file (default: none)")
    args = p.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.save and not replaceable_records(args.save):
        log(f"error: --save {args.save} exists and is not an earlier comparison's records; give a new file name")
        return 2
    from nets.training.data import DataError

    try:
        items = select_items(args.source, args.input, args.split, args.every, args.limit)
    except DataError as exc:
        log(f"error: {exc}")
        return 2
    if not items:
        log("error: no labelled photos selected")
        return 2
    records = run_detectors(items, args.models, args.detectors, args.degraded, log)
    if args.save:
        save = Path(args.save)
        save.parent.mkdir(parents=True, exist_ok=True)
        save.with_name(save.name + ".tmp").write_text(json.dumps(records))
        os.replace(save.with_name(save.name + ".tmp"), save)
    what = f"validation faces of {Path(args.split).name}" if args.split else "photos"
    print(summary_table(records, [model_name(m, args.models) for m in args.models],
                        f"{args.source}: {len(items)} {what} from {args.input}, every {args.every}"))
    print(agreement_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
