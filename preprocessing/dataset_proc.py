#!/usr/bin/env python
"""Prepare a face data set for C3AE: detect, align, cut the triple box, write feather chunks.

Example: python preprocessing/dataset_proc.py --source utk -i dataset/UTKFace
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.detector import DEFAULT_DETECTOR, DETECTORS, MIN_FACE_SIZE, DetectorError  # noqa: E402
from preprocessing.build import MULTI_FACE_POLICIES, Settings, build_source  # noqa: E402
from preprocessing.sources import DEFAULT_INPUTS, READERS, SourceError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Each option's help says its default once (hence no ArgumentDefaultsHelpFormatter)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, choices=sorted(READERS),
                        help="data set kind; csv reads a LABELS.csv with columns path,age,gender")
    parser.add_argument("-i", "--input", help="folder (or .mat / .csv file) of the data set "
                        "(default: the usual place under dataset/, see dataset/README.md)")
    parser.add_argument("-d", "--dest", default="dataset/data",
                        help="folder for the feather files (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: the number of CPU cores)")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N inputs, for quick runs (default: all)")
    parser.add_argument("--chunk-size", type=int, default=5000,
                        help="images per feather file (default: %(default)s)")
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                        help="face detector: yunet (fast, OpenCV) or mtcnn (the original's, TensorFlow) "
                             "(default: %(default)s)")
    parser.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE,
                        help="smallest face in pixels (default: %(default)s)")
    parser.add_argument("--multi-face", choices=MULTI_FACE_POLICIES, default="largest",
                        help="several faces in one image: keep the largest, or skip the image "
                             "as the original did (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (default: shown)")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"argument --workers: must be 1 or more, not {args.workers}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    source_input = args.input or DEFAULT_INPUTS[args.source]
    settings = Settings(min_face_size=args.min_face_size, multi_face=args.multi_face, detector=args.detector)
    try:
        summary = build_source(args.source, source_input, args.dest, workers=args.workers,
                               limit=args.limit, chunk_size=args.chunk_size, settings=settings,
                               progress=not args.no_progress)
    except (SourceError, ValueError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written or read, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{(exc.strerror or str(exc)).lower()}; finished chunks are kept", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished chunks are kept; run the same command again to continue",
              file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2))
    if args.workers is not None and summary["workers"] < args.workers:
        print(f"note: --workers {args.workers}: {summary['workers']} used (no more than the CPU cores, "
              f"{os.cpu_count()}, or the images)", file=sys.stderr)
    # every input is a face written or a skip (of its labels, or of its image), so the numbers add up
    print(f"{summary['faces_written']} faces from {summary['inputs_seen']} inputs ({summary['skipped']} skipped) "
          f"in {summary['seconds']} s -> {args.dest}", file=sys.stderr)
    if summary["faces_written"] == 0:  # nothing to train on: say so, not success
        reasons = ", ".join(f"{n} {reason}" for reason, n in summary["skip_reasons"].items())
        print(f"error: no face was written ({reasons}; each image is listed in "
              f"{Path(args.dest) / (args.source + '_skipped.csv')})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # while starting, before any chunk
        print("interrupted", file=sys.stderr)
        sys.exit(130)
