#!/usr/bin/env python
"""Compare face detectors end to end: the same model on the same raw photos, faces found by each.

For every photo of a labelled source (optionally only the validation faces of a saved split),
each detector finds the faces, the largest is prepared and given to the model, and its age and
gender are compared with the label. Printed as a table: photos, faces found, MAE, CS(5), gender
accuracy, detector time per photo (median, timed in the same loop, photo by photo), and the same
metrics on the photos where every detector found a face. A second table says how the boxes and
landmarks of the detectors agree on the same faces.

  python nets/compare_detectors.py --source utk -i ../shared/data/UTKFace \\
      --split model/c3ae_utk_age_gender.split.json
  python nets/compare_detectors.py --source asia -i ../shared/data/AllAgeFaces --every 4
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def select_items(source: str, input_path, split_path=None, every: int = 1, limit: int | None = None):
    """The labelled photos of a source; with a split, only its validation faces of that source."""
    from preprocessing.sources import read_source

    items, _ = read_source(source, input_path)
    if split_path:
        keys = set(json.loads(Path(split_path).read_text())["val"])
        items = [item for item in items if f"{source}:{item.name}" in keys]
    items = items[::every]
    return items[:limit] if limit else items


def run_detectors(items, model_path, detector_names, log=print) -> dict:
    """Per detector, one record per photo: found, age, gender guess, detector seconds."""
    from tqdm import tqdm

    from detect import ImageReadError, load_image, make_detector
    from detect.prepare import prepare_detection
    from nets.predict import AgeEstimator

    detectors = {name: make_detector(name) for name in detector_names}
    estimator = AgeEstimator(model_path, detector=detectors[detector_names[0]])
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
                prediction = estimator.predict_prepared([prepare_detection(image, found[0])])[0]
                record.update(box=found[0].box.tolist(), landmarks=found[0].landmarks.tolist(), pred_age=prediction.age,
                              pred_gender=None if prediction.gender is None else int(prediction.gender == "M"))
            records[name].append(record)
    return records


def metrics(records) -> dict:
    found = [r for r in records if r["found"]]
    out = {"photos": len(records), "found": len(found)}
    if found:
        error = np.abs(np.array([r["pred_age"] - r["age"] for r in found]))
        out.update(mae=float(error.mean()), cs5=float((error <= 5).mean()))
        gendered = [r for r in found if r.get("pred_gender") is not None and r["gender"] >= 0]
        if gendered:
            out["gender_accuracy"] = float(np.mean([r["pred_gender"] == r["gender"] for r in gendered]))
    out["ms_median"] = 1e3 * statistics.median(r["seconds"] for r in records) if records else float("nan")
    return out


def summary_table(records: dict, title: str) -> str:
    names = list(records)
    both = set.intersection(*({r["name"] for r in records[n] if r["found"]} for n in names))
    lines = [f"\n{title}\n",
             "| detector | photos | faces found | MAE | CS(5) | gender accuracy | detector ms per photo (median) "
             f"| on the {len(both)} photos all found: MAE | CS(5) | gender accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        m = metrics(records[name])
        p = metrics([r for r in records[name] if r["name"] in both])
        cell = lambda d, k, f: f.format(d[k]) if k in d else "-"  # noqa: E731
        lines.append(f"| {name} | {m['photos']} | {m['found']} ({m['found'] / max(1, m['photos']):.1%}) "
                     f"| {cell(m, 'mae', '{:.3f}')} | {cell(m, 'cs5', '{:.3f}')} | {cell(m, 'gender_accuracy', '{:.3f}')} "
                     f"| {m['ms_median']:.1f} | {cell(p, 'mae', '{:.3f}')} | {cell(p, 'cs5', '{:.3f}')} "
                     f"| {cell(p, 'gender_accuracy', '{:.3f}')} |")
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
    from nets.predict import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="label reader: utk, asia, afad, csv, ...")
    p.add_argument("-i", "--input", required=True, help="the source's folder (or file)")
    p.add_argument("--split", help="a NAME.split.json: only its validation faces")
    p.add_argument("-m", "--model", default=str(DEFAULT_MODEL), help="model file (.keras or .tflite)")
    p.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    p.add_argument("--every", type=int, default=1, help="every N-th photo only")
    p.add_argument("--limit", type=int, default=None, help="at most N photos")
    p.add_argument("--save", help="write the per-photo records to this JSON file")
    args = p.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    items = select_items(args.source, args.input, args.split, args.every, args.limit)
    if not items:
        log("error: no labelled photos selected")
        return 2
    records = run_detectors(items, args.model, args.detectors, log)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(records))
    what = f"validation faces of {Path(args.split).name}" if args.split else "photos"
    print(summary_table(records, f"{args.source}: {len(items)} {what} from {args.input}, every {args.every}; "
                                 f"model {Path(args.model).name}"))
    print(agreement_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
