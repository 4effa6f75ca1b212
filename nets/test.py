#!/usr/bin/env python
"""Estimate age (and gender) of the faces in an image, a folder, a video file or a webcam.

Examples:
  python nets/test.py -i assets/astronaut.jpg
  python nets/test.py --dir photos/ --json --no-show > ages.jsonl
  python nets/test.py -v                 # webcam 0; ESC stops
  python nets/test.py -v clip.mp4 -o annotated.mp4 --no-show
"""
import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from detect import ImageReadError, load_image  # noqa: E402
from nets.model import ModelFileError  # noqa: E402
from nets.predict import DEFAULT_MODEL, AgeEstimator, draw_predictions  # noqa: E402

ESC = 27


def say(message):
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--image", help="an image file")
    source.add_argument("--dir", help="a folder: every image in it and its subfolders")
    source.add_argument("-v", "--video", nargs="?", const="0",
                        help="a video file, or a camera index (default: webcam 0)")
    p.add_argument("-m", "--model", default=str(DEFAULT_MODEL),
                   help=".keras or .tflite model (default: the shipped age + gender model)")
    p.add_argument("-o", "--output", help="annotated output: an image file for -i (default "
                   "runs/NAME_c3ae.jpg), a folder for --dir, a video file for -v")
    p.add_argument("--json", action="store_true", help="one JSON object per face on standard output")
    p.add_argument("--no-show", action="store_true", help="do not open a window (headless use)")
    p.add_argument("--min-face-size", type=int, default=20, help="smallest face to look for, in pixels")
    # Flags of the original project; the model file now says what it is, so they change nothing.
    for flag in ("-g", "-se", "-white"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def report(path, predictions, as_json, **extra):
    for p in predictions:
        if as_json:
            print(json.dumps(p.to_json(file=str(path), **extra)), flush=True)
        else:
            gender = f", {'female' if p.gender == 'F' else 'male'} ({p.gender_prob:.2f})" if p.gender else ""
            print(f"{path}: age {p.age:.1f}{gender}, box {[round(v) for v in p.box]}", flush=True)


def show(window, image, wait):
    """Show image; False once the user pressed ESC or no window can be opened."""
    try:
        cv2.imshow(window, image)
        return (cv2.waitKey(wait) & 0xFF) != ESC
    except cv2.error:
        say("note: no display here, nothing is shown (use --no-show to skip this)")
        return False


def run_image(estimator, args) -> int:
    try:
        image = load_image(args.image)
    except ImageReadError as exc:
        say(f"error: {exc}")
        return 1
    predictions = estimator.predict(image)
    if not predictions:
        say(f"{args.image}: no face found")
    report(args.image, predictions, args.json)
    annotated = draw_predictions(image, predictions)
    output = Path(args.output or Path("runs") / f"{Path(args.image).stem}_c3ae.jpg")
    output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(output), annotated):
        say(f"error: could not write {output}")
        return 1
    say(f"annotated image written to {output}")
    if not args.no_show:
        show("C3AE", annotated, 0)
    return 0


def run_folder(estimator, args) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        say(f"error: {root} is not a folder")
        return 1
    files = sorted(p for p in root.rglob("*") if p.is_file())
    counts, skipped = Counter(), Counter()
    out_dir = Path(args.output) if args.output else None
    for path in files:
        try:
            image = load_image(path)
        except ImageReadError as exc:
            skipped[str(exc).split(": ", 1)[-1]] += 1
            continue
        counts["images"] += 1
        predictions = estimator.predict(image)
        if not predictions:
            say(f"{path}: no face found")
            skipped["no face found"] += 1
            continue
        counts["faces"] += len(predictions)
        report(path, predictions, args.json)
        if out_dir:
            target = out_dir / path.relative_to(root)  # same name and format, so a.png and a.jpg stay apart
            if not cv2.haveImageWriter(str(target)):
                target = target.with_name(target.name + ".jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
            if cv2.imwrite(str(target), draw_predictions(image, predictions)):
                counts["written"] += 1
            else:
                say(f"{path}: could not write {target}")
                counts["not written"] += 1
    reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()) or "none"
    written = f"; {counts['written']} annotated copies in {out_dir}" if out_dir else ""
    failed = f", {counts['not written']} could not be written" if counts["not written"] else ""
    say(f"{len(files)} files: {counts['images']} images, {counts['faces']} faces; skipped: {reasons}{written}{failed}")
    return 1 if counts["not written"] else 0


def run_video(estimator, args) -> int:
    source = int(args.video) if args.video.isdigit() else args.video
    if isinstance(source, str) and not os.path.exists(source):
        say(f"error: video file {source} does not exist")
        return 1
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        say(f"error: cannot open {what}")
        return 1
    writer, frames, faces, started = None, 0, 0, time.time()
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            predictions = estimator.predict(frame)
            frames += 1
            faces += len(predictions)
            report(args.video, predictions, args.json, frame=frames - 1)
            annotated = draw_predictions(frame, predictions)
            if args.output:
                if writer is None:
                    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
                    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(args.output, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        say(f"error: cannot write video {args.output}")
                        return 1
                writer.write(annotated)
            if not args.no_show and not show("C3AE (ESC stops)", annotated, 1):
                break
    except KeyboardInterrupt:
        pass
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0 and isinstance(source, str):
        say(f"error: {source} gave no frames (not a video OpenCV can decode?)")
        return 1
    seconds = max(time.time() - started, 1e-9)
    say(f"{frames} frames, {faces} faces, {frames / seconds:.1f} frames per second"
        + (f"; annotated video written to {args.output}" if writer is not None else ""))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.g or args.se or args.white:
        say("note: -g, -se and -white are not needed: the model file says what it is")
    try:
        estimator = AgeEstimator(args.model, min_face_size=args.min_face_size)
    except ModelFileError as exc:
        hint = " (train one, or give -m)" if Path(args.model) == DEFAULT_MODEL else ""
        say(f"error: {exc}{hint}")
        return 1
    if args.image:
        return run_image(estimator, args)
    if args.dir:
        return run_folder(estimator, args)
    return run_video(estimator, args)


if __name__ == "__main__":
    sys.exit(main())
