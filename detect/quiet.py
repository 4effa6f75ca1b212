"""What native libraries write to stderr on their own, kept from people who did not ask for it.

TensorFlow prints its start-up notices (oneDNN, "Could not find cuda drivers", each twice) before
it reads TF_CPP_MIN_LOG_LEVEL, and CUDA's cuInit error on a machine without a GPU driver; LiteRT
announces its CPU delegate on every start. No environment variable removes these (checked with
TensorFlow 2.21 on a CPU-only machine: nor does CUDA_VISIBLE_DEVICES remove cuInit's line), so file
descriptor 2 is captured while they happen and what matters is passed on.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

# TensorFlow's C++ log lines ("I0000 00:00:1795889989.962687    7519 port.cc:153] ...") and the
# notice absl writes before them.
_TF_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_ABSL_PRELUDE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CUINIT_FAILED = "failed call to cuInit"


# File descriptor 2 is the process's: one capture at a time. Two threads that swapped it at once (a
# server's threads each making their LiteRT interpreter) left stderr pointing at a deleted file for good.
_CAPTURE = threading.RLock()


@contextlib.contextmanager
def captured_stderr():
    """Collect what is written to file descriptor 2 (native code included) in the block; yields a
    list that receives the text when the block ends. The descriptor is the process's: meant for
    start-up; other threads' writes in the block are captured too, and captures take turns."""
    text = []
    with _CAPTURE, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def without_tensorflow_notices(text: str, gpu: bool) -> str:
    """`text` less the TensorFlow lines below TF_CPP_MIN_LOG_LEVEL (as TensorFlow would have left them
    out had it read it in time; the project sets 2, errors only) and, unless a GPU was asked for,
    CUDA's cuInit error (a machine without a GPU driver; the GPUs go unused anyway). Everything else
    (warnings and errors at the level asked for, Python output) is kept, in order."""
    raw = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    level = int(raw) if raw.isdigit() else 0
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _TF_LOG_LINE.match(line)
        if match:
            dropping = "IWEF".index(match.group(1)) < level or (not gpu and _CUINIT_FAILED in line)
        elif line.rstrip("\n") == _ABSL_PRELUDE:
            dropping = level > 0
        # any other line is kept (Python's output, say), except the second line of a dropped
        # cpu_feature_guard notice
        elif dropping and not line.startswith("To enable the following instructions"):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def tensorflow_notices_filtered(gpu: bool = False):
    """Run the block (which imports TensorFlow or first touches its devices) with stderr captured,
    then pass on what it said without TensorFlow's start-up notices."""
    said = []
    try:
        with captured_stderr() as said:
            yield
    finally:  # also when the block fails: what TensorFlow said may explain why
        text = without_tensorflow_notices("".join(said), gpu)
        if text:
            sys.stderr.write(text)
            sys.stderr.flush()


def start_tensorflow(gpu: bool = False):
    """Import TensorFlow and let CUDA look for GPUs, the two moments it prints its start-up notices, with
    those notices filtered; returns the tensorflow module. The project's level (errors only) is set
    unless the user chose one with TF_CPP_MIN_LOG_LEVEL. Later calls cost nothing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tensorflow_notices_filtered(gpu):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # CUDA starts (cuInit) here, once per process
    return tf


def caused_by_ctrl_c(exc: BaseException | None) -> bool:
    """Whether Ctrl-C is behind an error: a KeyboardInterrupt raised while C code was calling back into
    Python can come out wrapped, e.g. as a SystemError whose cause is the KeyboardInterrupt."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
