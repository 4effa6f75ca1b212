"""What people see from nets/C3AE.py and nets/C3AE_expand.py: help, start-up, one-line errors.

The scripts run in subprocesses (their start-up is what is tested); hostile files are made in tmp_path.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile

import pytest

from detect.quiet import without_tensorflow_notices
from nets.training.cli import build_parser

SCRIPTS = ("nets/C3AE.py", "nets/C3AE_expand.py")

# Run a script as `python SCRIPT ARGS` would, then report on stdout's last line which of TensorFlow and
# Keras were imported: stderr is left exactly as people see it.
_RUN_AND_REPORT = """
import json, runpy, sys
script, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stdout.flush()
print("\\n" + json.dumps({"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
sys.exit(code)
"""


def run_script(repo_root, script, *args, env_extra=None, timeout=300):
    """(CompletedProcess, {"tensorflow": imported?, "keras": imported?}) of `python SCRIPT ARGS`."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: the scripts must quieten TensorFlow
    env.update(env_extra or {})
    result = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, script, *map(str, args)], cwd=repo_root,
                            capture_output=True, text=True, timeout=timeout, env=env)
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- -h: quick, no TensorFlow ----------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_help_does_not_import_tensorflow(script, repo_root):
    result, imported = run_script(repo_root, script, "-h")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")
    assert imported == {"tensorflow": False, "keras": False}
    assert result.stderr == ""


def test_a_bad_flag_is_refused_before_tensorflow(repo_root):
    result, imported = run_script(repo_root, "nets/C3AE.py", "--epochs", "many")
    assert result.returncode == 2
    assert "argument --epochs: invalid int value: 'many'" in result.stderr
    assert not imported["tensorflow"]


# --- help texts: every option explained, its default shown once ------------------------------------

def _option_helps(gender: bool) -> dict[str, str]:
    """{first option string: its help text as -h prints it (defaults expanded)}."""
    parser = build_parser("test", gender)
    formatter = parser._get_formatter()
    return {action.option_strings[0]: formatter._expand_help(action) if action.help else ""
            for action in parser._actions if not isinstance(action, argparse._HelpAction)}


@pytest.mark.parametrize("gender", [False, True], ids=["C3AE", "C3AE_expand"])
def test_every_option_has_help_and_shows_its_default_once(gender):
    helps = _option_helps(gender)
    assert "--loss-weights" in helps if gender else "--loss-weights" not in helps
    for option, text in helps.items():
        assert text.strip(), f"{option} has no help text"
        assert text.count("(default") == 1, f"{option}: {text!r}"
    expected = {"-b": "(default: 50)", "-lr": "(default: 0.002)", "--epochs": "(default: 250;",
                "--seed": "(default: 2019)", "--val-split": "(default: 0.2)", "-d": "(default: 0.2)",
                "-w": "(default: 10.0)"}
    if gender:
        expected["--loss-weights"] = "(default: 1 10 30)"
    for option, default in expected.items():
        assert default in helps[option], f"{option}: {helps[option]!r}"
    assert "learning rate" in helps["-lr"] and "batch" in helps["-b"] and "epochs" in helps["--epochs"]
    assert "seed" in helps["--seed"] and "validation" in helps["--val-split"]


def test_erase_option_says_random_erasing_not_dropout():
    parser = build_parser("test", gender=False)
    action = next(a for a in parser._actions if "-d" in a.option_strings)
    assert action.option_strings == ["-d", "--dropout", "--erase"] and action.dest == "erase"
    assert "random erasing, not dropout" in action.help
    assert "probability of erasing a random rectangle in each training crop" in action.help


# --- start-up: TensorFlow's notices are not shown, real errors are -----------------------------------

def _foreign_keras_model(path):
    """A small Keras model that is not C3AE, saved to `path` in a subprocess (keeps Keras out of pytest)."""
    script = ("import sys, keras\n"
              "x = keras.Input((4,))\n"
              "keras.Model(x, keras.layers.Dense(2, name='dense')(x), name='other').save(sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, capture_output=True, timeout=300)
    return path


def _truncated_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}" * 5000)
    path.write_bytes(path.read_bytes()[:-30])  # the end of the zip directory is gone
    return path


@pytest.mark.parametrize("script,case", [
    ("nets/C3AE.py", "empty"), ("nets/C3AE_expand.py", "truncated"), ("nets/C3AE_expand.py", "foreign"),
    ("nets/C3AE.py", "no_data"),
])
def test_start_up_shows_only_the_projects_message(script, case, tmp_path, repo_root):
    """TensorFlow loads (and CUDA is asked for GPUs) in each, and stderr holds one line: the error.

    Before, each start printed TensorFlow's oneDNN and "Could not find cuda drivers" notices twice and
    "E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)" on a machine without a GPU driver.
    """
    if case == "empty":
        model = tmp_path / "empty.keras"
        model.write_bytes(b"")
        args, expected = ["-test", "-p", model], f"error: model file {model} is empty (0 bytes)"
    elif case == "truncated":
        model = _truncated_zip(tmp_path / "truncated.keras")
        args = ["-fz", "-p", model]
        expected = f"error: model file {model} is not a valid .keras archive (damaged or truncated?)"
    elif case == "foreign":
        model = _foreign_keras_model(tmp_path / "foreign.keras")
        args = ["-test", "-p", model]
        expected = (f"error: model file {model} holds a Keras model that is not a C3AE model "
                    "(no trunk/W1 layer)")
    else:  # training: configure_devices, then the data folder is looked at
        (tmp_path / "data").mkdir()
        args = ["--dataset", tmp_path / "data", "-s", tmp_path / "m.keras", "--epochs", "1"]
        expected = (f"error: no feather files matching 'utk' under {tmp_path / 'data'}; "
                    "run preprocessing/dataset_proc.py first")
    result, imported = run_script(repo_root, script, *args)
    assert imported["tensorflow"], "the command must get as far as TensorFlow for this test to mean anything"
    assert result.returncode == 2, result.stderr[-3000:]
    assert stderr_lines(result) == [expected]


def test_start_up_keeps_tensorflow_lines_when_asked_for(tmp_path, repo_root):
    """TF_CPP_MIN_LOG_LEVEL=0 asks for TensorFlow's info lines: they are passed on (so nothing is hidden
    that the user's level would show), and the project's error still comes last."""
    model = tmp_path / "empty.keras"
    model.write_bytes(b"")
    result, _ = run_script(repo_root, "nets/C3AE.py", "-test", "-p", model,
                           env_extra={"TF_CPP_MIN_LOG_LEVEL": "0"})
    lines = stderr_lines(result)
    assert any("oneDNN custom operations are on" in line for line in lines), result.stderr[-3000:]
    assert lines[-1] == f"error: model file {model} is empty (0 bytes)"


def test_mtcnn_starts_tensorflow_quietly_too(tmp_path, repo_root):
    """nets/test.py with the MTCNN detector: TensorFlow is imported for the detector alone (the model is
    the TFLite default), and stderr holds only the project's own line."""
    out = tmp_path / "annotated.jpg"
    result, imported = run_script(repo_root, "nets/test.py", "-i", "assets/astronaut.jpg", "--detector", "mtcnn",
                                  "--no-show", "--json", "-o", out)
    assert imported["tensorflow"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert stderr_lines(result) == [f"annotated image written to {out}"]
    assert json.loads(result.stdout.strip().splitlines()[0])["age"] > 0


# --- the filter itself, on lines TensorFlow 2.21 printed on this machine -----------------------------

PRELUDE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = ("I0000 00:00:1795889989.962687    7519 port.cc:153] oneDNN custom operations are on. You may see "
          "slightly different numerical results due to floating-point round-off errors from different "
          "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n")
NO_DRIVER = ("I0000 00:00:1795889989.969542    7519 cudart_stub.cc:31] Could not find cuda drivers on your "
             "machine, GPU will not be used.\n")
CPU_GUARD = ("I0000 00:00:1795890012.922036    7878 cpu_feature_guard.cc:227] This TensorFlow binary is "
             "optimized to use available CPU instructions in performance-critical operations.\n"
             "To enable the following instructions: AVX2 AVX512F AVX512_VNNI FMA, in other operations, "
             "rebuild TensorFlow with the appropriate compiler flags.\n")
CUINIT = ("E0000 00:00:1795889996.668403    7519 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
          "error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
REAL_ERROR = "E0000 00:00:1795889996.700000    7519 some_kernel.cc:12] Out of memory while allocating\n"
WARNING = "W0000 00:00:1795889996.700000    7519 loader.cc:40] a warning of TensorFlow's\n"
PYTHON = "/usr/lib/python3/site-packages/x.py:1: UserWarning: something Python says\n"
START_UP = PRELUDE + ONEDNN + NO_DRIVER + CPU_GUARD + PRELUDE + ONEDNN + NO_DRIVER


@pytest.mark.parametrize("level,gpu,expected", [
    ("2", False, REAL_ERROR + PYTHON),  # nets/__init__.py's level: errors only, as TensorFlow does after start-up
    ("2", True, CUINIT + REAL_ERROR + PYTHON),  # -gpu asked for: why there is no GPU matters
    ("1", False, WARNING + REAL_ERROR + PYTHON),
    ("3", False, PYTHON),  # TensorFlow's fatal lines only
    ("0", False, START_UP + WARNING + REAL_ERROR + PYTHON),
    ("not a number", False, START_UP + WARNING + REAL_ERROR + PYTHON),
], ids=["level2", "level2-gpu", "level1", "level3", "level0", "level-unreadable"])
def test_start_up_filter_drops_what_the_log_level_and_no_gpu_would(level, gpu, expected, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    text = START_UP + CUINIT + WARNING + REAL_ERROR + PYTHON
    assert without_tensorflow_notices(text, gpu) == expected


def test_a_ctrl_c_that_comes_out_wrapped_still_ends_training_as_an_interruption(monkeypatch, capsys, tmp_path):
    """Python can turn a KeyboardInterrupt raised inside a C call into a SystemError caused by it (seen
    in numpy's file reading); training must still say 'interrupted' and exit 130, not print a trace."""
    import nets.training.train
    from detect.quiet import caused_by_ctrl_c
    from nets.training.cli import main

    def interrupted_inside_c(cfg, log):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("<built-in function fspath> returned a result with an exception set") from exc

    monkeypatch.setattr(nets.training.train, "train", interrupted_inside_c)
    assert main(["--dataset", str(tmp_path), "-s", str(tmp_path / "m.keras")], "test", gender=False) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("interrupted: ")
    assert not caused_by_ctrl_c(SystemError("a real one")) and not caused_by_ctrl_c(None)


def test_detector_comparison_never_saves_over_a_split_or_a_model(utk_sample, repo_root, tmp_path, capsys):
    from nets.compare_detectors import main

    split = tmp_path / "m.split.json"
    split.write_bytes((repo_root / "model" / "c3ae_utk_asia_age_gender.split.json").read_bytes())
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK a model")
    for precious in (split, model):
        before = precious.read_bytes()
        code = main(["--source", "utk", "-i", str(utk_sample), "--split", str(split), "--detectors", "yunet",
                     "--save", str(precious)])
        said = capsys.readouterr().err.splitlines()
        assert code == 2 and said == [f"error: --save {precious} exists and is not an earlier comparison's records; "
                                      "give a new file name"], said
        assert precious.read_bytes() == before
    code = main(["--source", "utk", "-i", str(utk_sample), "--split", str(model), "--detectors", "yunet"])
    said = capsys.readouterr().err.splitlines()
    assert code == 2 and len(said) == 1 and said[0].startswith(f"error: {model} is not a readable split file"), said
