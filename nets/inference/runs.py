"""The three runs of nets/test.py: one image, every image below a folder, a video or a camera.

Each takes an AgeEstimator and the parsed flags, says what it does on standard error, answers on
standard output and returns the exit code.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from detect.prepare import printable_name, utf8_name
from nets.inference.outputs import (StopOnCtrlC, Window, can_write_image, output_problem, report, say,
                                    say_calibration_note, write_image)


def run_image(estimator, args) -> int:
    import cv2

    from detect import ImageReadError, load_image
    from nets.inference.predict import draw_predictions

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
    say_calibration_note(estimator)
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
    below root is either a candidate or counted, and each one skipped is named on standard error.
    Symbolic links to folders are not followed (no loops); links to files are read like files."""
    import stat

    candidates, skipped, folders = [], Counter(), 0

    def skip(path, reason: str):
        say(f"skipped {printable_name(path)}: {reason}")
        skipped[reason] += 1

    def unreadable(error):
        skip(error.filename, "unreadable folders")

    for current, dirs, files in os.walk(root, followlinks=False, onerror=unreadable):
        current = Path(current)
        if skip_below is not None and (current == skip_below or skip_below in current.parents):
            dirs[:] = []
            continue
        folders += 1
        for name in sorted(dirs):
            if (current / name).is_symlink():
                skip(current / name, "links to folders (not followed)")
        dirs[:] = sorted(d for d in dirs if not (current / d).is_symlink())
        for name in sorted(files):
            path = current / name
            try:
                mode = path.stat().st_mode  # follows links
            except OSError:
                skip(path, "broken links" if path.is_symlink() else "unreadable entries")
                continue
            if stat.S_ISREG(mode):
                candidates.append(path)
            elif stat.S_ISDIR(mode):
                skip(path, "links to folders (not followed)")
            else:
                skip(path, "not regular files (pipes, sockets, devices)")
    return candidates, skipped, folders


def run_folder(estimator, args) -> int:
    import cv2

    from detect import ImageReadError, load_image
    from nets.inference.predict import draw_predictions

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
    say_calibration_note(estimator)
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
                    say(f"skipped {exc}")
                    skipped[exc.reason] += 1
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

    from nets.inference.predict import draw_predictions
    from nets.inference.track import FaceTracks

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
    say_calibration_note(estimator)
    window = Window("C3AE (ESC stops)", not args.no_show)
    tracks = FaceTracks(window=args.smooth, with_range=estimator.with_range)
    rate = FrameRate()
    writer, frames, faces, started, fps = None, 0, 0, time.perf_counter(), 0.0
    interrupted = False
    try:
        with StopOnCtrlC("frame") as stop:
            while not (interrupted := stop.requested):
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
        interrupted = True
        say("interrupted")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0 and isinstance(source, str):
        say(f"error: {source} gave no frames (not a video OpenCV can decode?)")
        return 1
    seconds = max(time.perf_counter() - started, 1e-9)
    say(f"{'interrupted after ' if interrupted else ''}{frames} frames, {faces} faces, "
        f"{frames / seconds:.1f} frames per second"
        + (f"; annotated video written to {args.output}" if writer is not None else ""))
    return 130 if interrupted else 0  # Ctrl-C ends -v as it ends --dir; ESC or the video's end: 0


