#!/usr/bin/env python
"""Estimate age (and gender) of the faces in an image, a folder, a video file or a webcam.

Examples:
  python nets/test.py -i assets/astronaut.jpg
  python nets/test.py --dir photos/ --json --no-show > ages.jsonl
  python nets/test.py -v                 # webcam 0; ESC stops
  python nets/test.py -v clip.mp4 -o annotated.mp4 --no-show

With the default .tflite model and the YuNet detector nothing imports TensorFlow: numpy,
OpenCV and ai-edge-litert are enough.
"""
import signal
import threading

# A Ctrl-C while the modules load would break an import with a traceback: it waits until they are in
# (where Ctrl-C stops Python as usual; an ignored one stays ignored)
_ctrl_c_while_loading = []
_defer_ctrl_c = (threading.current_thread() is threading.main_thread()
                 and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
if _defer_ctrl_c:
    signal.signal(signal.SIGINT, lambda signum, frame: _ctrl_c_while_loading.append(signum))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from detect.prepare import printable_name, utf8_name  # noqa: E402  (numpy and OpenCV: parse_args needs them too)
if _defer_ctrl_c:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if _ctrl_c_while_loading:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

REPO_ROOT = Path(__file__).resolve().parents[1]
ESC = 27
VIDEO_DETECT_SIZE = 480  # video frames larger than this are detected on a copy of this size (a 640x480 webcam: 480x360)


def say(message):
    print(message, file=sys.stderr, flush=True)


class StopOnCtrlC:
    """Within `with`, a first Ctrl-C asks the loop to stop after the current image or frame (the loop
    checks `.requested`) and a second stops at once. A KeyboardInterrupt raised in the middle of a C
    call can surface as a SystemError (seen in numpy's file reading), so the first one only sets a flag."""

    def __init__(self, what: str):
        self.what = what
        self.requested = False
        self.previous = None

    def __enter__(self):
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:  # not when Ctrl-C is ignored (a background job) or handled
            try:
                self.previous = signal.signal(signal.SIGINT, self._ask)
            except ValueError:  # main() called from another thread: Ctrl-C is the main thread's
                pass
        return self

    def _ask(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        say(f"stopping after this {self.what} (Ctrl-C again to stop at once)")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def parse_args(argv=None):
    # Nothing heavy is imported before the arguments are parsed (detect/ brings numpy and OpenCV,
    # about 0.2 s; the model runtime and the detector come after), so -h and bad flags are quick.
    from detect.detector import DEFAULT_DETECTOR, DETECTORS, MAX_SIDE, MIN_FACE_SIZE, SMALLEST_FACE
    from nets.predict import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--image", help="an image file")
    source.add_argument("--dir", help="a folder: every image in it and its subfolders")
    source.add_argument("-v", "--video", nargs="?", const="0",
                        help="a video file, or a camera index (default: webcam 0)")
    p.add_argument("-m", "--model", default=None,
                   help=".keras or .tflite model (default: the shipped age + gender model, "
                        f"{DEFAULT_MODEL.relative_to(REPO_ROOT)})")
    p.add_argument("-o", "--output", help="annotated output: an image file for -i (default "
                   "runs/NAME_c3ae.jpg), a folder for --dir, a video file for -v")
    p.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                   help=f"face detector: yunet (fast, OpenCV) or mtcnn (the original's, needs TensorFlow); "
                        f"default {DEFAULT_DETECTOR}")
    p.add_argument("--json", action="store_true", help="one JSON object per face on standard output")
    p.add_argument("--no-show", action="store_true", help="do not open a window (headless use)")
    p.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE,
                   help=f"smallest face to look for, in pixels (at least {SMALLEST_FACE}; default {MIN_FACE_SIZE})")
    p.add_argument("--detect-size", type=int, default=None,
                   help=f"the detector looks at a copy whose longer side is at most this many pixels; faces are "
                        f"still cut from the full image (default: {MAX_SIDE} for photos, {VIDEO_DETECT_SIZE} for "
                        "video, where every millisecond counts)")
    p.add_argument("--smooth", type=int, default=15,
                   help="-v: average each person's age and gender over this many frames (1: no averaging; "
                        "default 15)")
    # Flags of the original project; the model file now says what it is, so they change nothing.
    for flag in ("-g", "-se", "-white"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.min_face_size < SMALLEST_FACE:
        p.error(f"--min-face-size must be at least {SMALLEST_FACE} pixels")
    if args.smooth < 1:
        p.error("--smooth must be at least 1 frame")
    if args.detect_size is not None and args.detect_size < 64:
        p.error("--detect-size must be at least 64 pixels")
    if args.detect_size is None:
        args.detect_size = VIDEO_DETECT_SIZE if args.video is not None else MAX_SIDE
    return args


def report(path, predictions, as_json, **extra):
    for p in predictions:
        if as_json:
            print(json.dumps(p.to_json(file=str(path), **extra)), flush=True)
        else:
            gender = f", {'female' if p.gender == 'F' else 'male'} ({p.gender_prob:.2f})" if p.gender else ""
            warning = f" (doubtful: {p.warning})" if p.warning else ""
            print(f"{printable_name(path)}: age {p.age:.1f}{gender}, box {[round(v) for v in p.box]}{warning}", flush=True)


def can_write_image(path: Path) -> bool:
    import cv2

    return utf8_name(path.suffix) and cv2.haveImageWriter("x" + path.suffix)


def write_image(path: Path, image, replace: bool) -> bool:
    """Encode with OpenCV and write with Python, so that any file name works; replace=False never
    replaces an existing file, even one that appears between the check and the write."""
    import cv2

    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        return False
    with open(path, "wb" if replace else "xb") as handle:
        handle.write(data.tobytes())
    return True


def display_problem() -> str | None:
    """Why no window can open here, or None. Decided before imshow: without a display, Qt aborts
    the whole process instead of raising an error that could be caught."""
    if sys.platform.startswith("linux"):
        display = os.environ.get("DISPLAY", "")
        if not display:  # opencv-python's Qt talks to X (or XWayland, which sets DISPLAY)
            return "no display here (DISPLAY is not set)"
        if display.startswith(":") and not Path(f"/tmp/.X11-unix/X{display[1:].split('.')[0]}").exists():
            return f"no X server answers on DISPLAY={display}"
    return None


class Window:
    """An OpenCV window that is only opened where it can be; show() is False once ESC is pressed."""

    def __init__(self, title: str, wanted: bool):
        self.title, self.opened = title, False
        problem = display_problem() if wanted else None
        self.enabled = wanted and problem is None
        if problem:
            say(f"note: {problem}; nothing is shown (--no-show skips this note)")

    def show(self, image, wait: int) -> bool:
        """Show image; wait=0 waits until a key is pressed or the window is closed, otherwise that
        many milliseconds. False once ESC was pressed or the window closed."""
        import cv2

        if not self.enabled:
            return True
        try:
            if not self.opened:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)  # resizable: a 12 MP photo fits the screen
                self.opened = True
            cv2.imshow(self.title, image)
            while True:
                key = cv2.waitKey(wait or 100) & 0xFF
                if key == ESC or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    return False
                if wait or key != 0xFF:
                    return True
        except cv2.error:
            say("note: this OpenCV cannot open windows (a headless build?); nothing is shown")
            self.enabled = False
            return True


VIDEO_SUFFIXES = (".mp4", ".avi")  # mp4v and MJPG, which every opencv-python build writes


def output_problem(target: Path, inputs=(), video: bool = False) -> str | None:
    """Why an annotated image (or video) cannot be written to target, or None."""
    import cv2

    example = "out.mp4" if video else "out.jpg"
    if target.exists() and target.is_dir():
        return f"{target} is a folder; give a file name such as {target / example}"
    if not target.suffix:
        return f"{target} has no extension; give one such as {'.mp4 or .avi' if video else '.jpg or .png'}"
    if video and target.suffix.lower() not in VIDEO_SUFFIXES:
        return f"cannot write {target.suffix} videos ({target}); use .mp4 or .avi"
    if video and not utf8_name(target):
        return f"OpenCV cannot write a video whose name is not valid UTF-8 ({printable_name(target)}); give another name"
    if not video and not can_write_image(target):
        return f"OpenCV cannot write {printable_name(target.suffix)} images ({printable_name(target)}); use .jpg or .png"
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot create {printable_name(target)}: {printable_name(parent)} is a file, not a folder"
            break
    if target.exists() and any(os.path.exists(p) and os.path.samefile(target, p) for p in inputs):  # links too
        return f"{printable_name(target)} is the input {'video' if video else 'image'} itself; it would be overwritten"
    return None


def run_image(estimator, args) -> int:
    import cv2

    from detect import ImageReadError, load_image
    from nets.predict import draw_predictions

    output = Path(args.output or Path("runs") / f"{Path(args.image).stem}_c3ae.jpg")
    problem = output_problem(output, inputs=[args.image] if os.path.exists(args.image) else [])
    if problem:
        say(f"error: {problem}")
        return 2
    try:
        image = load_image(args.image)
    except ImageReadError as exc:
        say(f"error: {exc}")
        return 1
    try:
        predictions = estimator.predict(image)
    except (ValueError, cv2.error) as exc:
        say(f"error: {args.image}: processing failed ({exc})")
        return 1
    if not predictions:
        say(f"{args.image}: no face found")
    report(args.image, predictions, args.json)
    annotated = draw_predictions(image, predictions)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        written = write_image(output, annotated, replace=True)
    except OSError as exc:
        say(f"error: could not write {printable_name(output)} ({(exc.strerror or type(exc).__name__).lower()})")
        return 1
    if not written:
        say(f"error: could not write {printable_name(output)}")
        return 1
    say(f"annotated image written to {printable_name(output)}")
    if not args.no_show:
        Window("C3AE", True).show(annotated, 0)
    return 0


def folder_entries(root: Path, skip_below: Path | None):
    """(image candidates, Counter of skipped entries by reason, folders searched): every entry
    below root is either a candidate or counted. Symbolic links to folders are not followed
    (no loops); links to files are read like files."""
    import stat

    candidates, skipped, folders = [], Counter(), 0

    def unreadable(error):
        skipped["unreadable folders"] += 1

    for current, dirs, files in os.walk(root, followlinks=False, onerror=unreadable):
        current = Path(current)
        if skip_below is not None and (current == skip_below or skip_below in current.parents):
            dirs[:] = []
            continue
        folders += 1
        for name in sorted(dirs):
            if (current / name).is_symlink():
                skipped["links to folders (not followed)"] += 1
        dirs[:] = sorted(d for d in dirs if not (current / d).is_symlink())
        for name in sorted(files):
            path = current / name
            try:
                mode = path.stat().st_mode  # follows links
            except OSError:
                skipped["broken links" if path.is_symlink() else "unreadable entries"] += 1
                continue
            if stat.S_ISREG(mode):
                candidates.append(path)
            elif stat.S_ISDIR(mode):
                skipped["links to folders (not followed)"] += 1
            else:
                skipped["not regular files (pipes, sockets, devices)"] += 1
    return candidates, skipped, folders


def run_folder(estimator, args) -> int:
    import cv2

    from detect import ImageReadError, load_image
    from nets.predict import draw_predictions

    root = Path(args.dir)
    if not root.is_dir():
        say(f"error: {root} is not a folder")
        return 1
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None:
        if out_dir.resolve() == root.resolve() or out_dir.resolve() in root.resolve().parents:
            say(f"error: -o {out_dir} {'is' if out_dir.resolve() == root.resolve() else 'holds'} the input folder; "
                "the annotated copies could replace your photos. Give another folder")
            return 2
        if out_dir.exists() and not out_dir.is_dir():
            say(f"error: -o {out_dir} is a file; give a folder for the annotated copies")
            return 2
    inside = out_dir is not None and root.resolve() in out_dir.resolve().parents
    # the output folder as the walk below spells it (-o may say it with .., a link or an absolute path)
    skip = root / out_dir.resolve().relative_to(root.resolve()) if inside else None
    files, skipped, folders = folder_entries(root, skip)
    if inside:
        say(f"note: {out_dir} is inside {root}; its files are not read as input")
    if not files and not skipped:
        say(f"error: {root} holds no files")
        return 1
    entries = len(files) + sum(skipped.values())
    counts = Counter()
    interrupted = False
    try:
        with StopOnCtrlC("image") as stop:
            for path in files:
                if stop.requested:
                    interrupted = True
                    break
                counts["read"] += 1
                try:
                    image = load_image(path)
                except ImageReadError as exc:
                    skipped[str(exc).split(": ", 1)[-1]] += 1
                    continue
                counts["images"] += 1
                try:
                    predictions = estimator.predict(image)
                except (ValueError, cv2.error) as exc:  # one odd image must not end the batch
                    say(f"{path}: processing failed ({exc})")
                    skipped["processing failed"] += 1
                    continue
                if not predictions:
                    say(f"{path}: no face found")
                    skipped["no face found"] += 1
                    continue
                counts["faces"] += len(predictions)
                report(path, predictions, args.json)
                if out_dir:
                    target = out_dir / path.relative_to(root)  # same name and format, so a.png and a.jpg stay apart
                    if not can_write_image(target):
                        target = target.with_name(target.name + ".jpg")
                        if (path.parent / target.name).exists():  # "photo" beside "photo.jpg": both kept
                            target = target.with_name(path.name + ".annotated.jpg")
                    try:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        written = write_image(target, draw_predictions(image, predictions), replace=False)
                    except FileExistsError:  # never replace a file: it may be a photo, not an earlier copy
                        counts["exist"] += 1
                        continue
                    except (OSError, cv2.error):
                        written = False
                    if written:
                        counts["written"] += 1
                    else:
                        say(f"{path}: could not write {target}")
                        counts["not written"] += 1
    except KeyboardInterrupt:
        interrupted = True
    reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()) or "none"
    written = f"; {counts['written']} annotated copies in {out_dir}" if out_dir else ""
    failed = f", {counts['not written']} could not be written" if counts["not written"] else ""
    failed += (f", {counts['exist']} not written because a file of that name exists in {out_dir} (nothing is "
               "replaced; give an empty folder)") if counts["exist"] else ""
    stopped = f"interrupted after {counts['read']} of {len(files)} files; " if interrupted else ""
    say(f"{stopped}{entries} entries in {folders} folders: {counts['images']} images, {counts['faces']} faces; "
        f"skipped: {reasons}{written}{failed}")
    if interrupted:
        return 130
    if counts["images"] == 0:
        say(f"error: no readable image in {root}")
        return 1
    return 1 if counts["not written"] else 0


class FrameRate:
    """Frames per second over the last `window` frames."""

    def __init__(self, window: int = 30):
        self.times = []
        self.window = window

    def tick(self) -> float:
        self.times = (self.times + [time.perf_counter()])[-self.window - 1:]
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)


def run_video(estimator, args) -> int:
    import cv2

    from nets.predict import draw_predictions
    from nets.track import FaceTracks

    # a number is a camera, unless a file of that name is here
    source = int(args.video) if args.video.isdigit() and not os.path.exists(args.video) else args.video
    if isinstance(source, str) and not os.path.exists(source):
        say(f"error: video file {printable_name(source)} does not exist")
        return 1
    if isinstance(source, str) and not utf8_name(source):
        say(f"error: OpenCV cannot open a video whose name is not valid UTF-8 ({printable_name(source)}); rename it")
        return 1
    if args.output:
        problem = output_problem(Path(args.output), [source] if isinstance(source, str) else [], video=True)
        if problem:
            say(f"error: {problem}")
            return 2
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        say(f"error: cannot open {what}")
        return 1
    window = Window("C3AE (ESC stops)", not args.no_show)
    tracks = FaceTracks(window=args.smooth)
    rate = FrameRate()
    writer, frames, faces, started, fps = None, 0, 0, time.perf_counter(), 0.0
    try:
        with StopOnCtrlC("frame") as stop:
            while not stop.requested:
                ok, frame = capture.read()
                if not ok:
                    break
                try:
                    predictions = tracks.update(estimator.predict(frame))
                except (ValueError, cv2.error) as exc:  # one odd frame must not end the video
                    say(f"frame {frames}: processing failed ({exc})")
                    predictions = []
                frames += 1
                faces += len(predictions)
                report(args.video, predictions, args.json, frame=frames - 1)
                annotated = draw_predictions(frame, predictions)
                fps = rate.tick()
                cv2.putText(annotated, f"{fps:.1f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2,
                            cv2.LINE_AA)
                if args.output:
                    if writer is None:
                        try:
                            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
                        except OSError as exc:
                            say(f"error: cannot create the folder of {args.output} ({exc.strerror})")
                            return 1
                        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if args.output.lower().endswith(".avi") else "mp4v"))
                        writer = cv2.VideoWriter(args.output, fourcc, capture.get(cv2.CAP_PROP_FPS) or 25.0,
                                                 (frame.shape[1], frame.shape[0]))
                        if not writer.isOpened():
                            say(f"error: cannot write video {args.output}")
                            return 1
                    writer.write(annotated)
                if not window.show(annotated, 1):
                    break
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0 and isinstance(source, str):
        say(f"error: {source} gave no frames (not a video OpenCV can decode?)")
        return 1
    seconds = max(time.perf_counter() - started, 1e-9)
    say(f"{frames} frames, {faces} faces, {frames / seconds:.1f} frames per second"
        + (f"; annotated video written to {args.output}" if writer is not None else ""))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.g or args.se or args.white:
        say("note: -g, -se and -white are not needed: the model file says what it is")
    from detect import DetectorError
    from nets.contract import ModelFileError
    from nets.predict import DEFAULT_MODEL, AgeEstimator

    model = args.model or DEFAULT_MODEL
    try:
        estimator = AgeEstimator(model, detector=args.detector, min_face_size=args.min_face_size,
                                 max_side=args.detect_size)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except ModelFileError as exc:
        hint = " (train one, or give -m)" if args.model is None and not Path(model).exists() else ""
        say(f"error: {exc}{hint}")
        return 1
    except DetectorError as exc:
        say(f"error: {exc}")
        return 1
    if args.image:
        return run_image(estimator, args)
    if args.dir:
        return run_folder(estimator, args)
    return run_video(estimator, args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # while one image is read or analysed, or while starting
        say("interrupted")
        sys.exit(130)
