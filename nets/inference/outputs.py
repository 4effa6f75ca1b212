"""What nets/test.py shows and writes: a line or a JSON object per face, annotated images, a window.

Messages for people go to standard error; answers to standard output.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from detect.prepare import printable_name, utf8_name
from nets.inference.ranges import range_text

ESC = 27


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


class AnswersNotWritten(OSError):
    """Standard output cannot take the answers (a full disk, /dev/full): the run stops, as it would
    only lose them. A reader that went away (`| head -1`) is BrokenPipeError instead."""


def answer(line: str) -> None:
    """One answer on standard output, written at once (a reader sees each face as it is found)."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise AnswersNotWritten(f"cannot write to standard output ({(exc.strerror or str(exc)).lower()})") from exc


def say_calibration_note(estimator) -> None:
    """Once per run, when its input is there to be answered: why the ages come without a range (a model
    without its NAME.calibration.json, or with a damaged one or another model's)."""
    if estimator.calibration_note:
        say(f"note: {estimator.calibration_note}")


def report(path, predictions, as_json, **extra):
    for p in predictions:
        if as_json:
            answer(json.dumps(p.to_json(file=str(path), **extra)))
        else:
            gender = f", {'female' if p.gender == 'F' else 'male'} ({p.gender_prob:.2f})" if p.gender else ""
            gender += " uncertain" if p.gender_uncertain else ""
            span = f" ({range_text(p.age_low, p.age_high)} at {100 * p.age_level:g} %)" if p.age_low is not None else ""
            warning = f" (doubtful: {p.warning})" if p.warning else ""
            answer(f"{printable_name(path)}: age {p.age:.1f}{span}{gender}, box {[round(v) for v in p.box]}{warning}")


def quiet_standard_output() -> None:
    """After the reader of standard output went away: send what Python still flushes at exit to
    /dev/null, so that it does not end in a BrokenPipeError traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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


