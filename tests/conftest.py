"""Shared fixtures: the real MTCNN detector (once per session), UTKFace paths and a CLI runner."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `import detect`, `import preprocessing` from any cwd
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header that claims width x height grey pixels, with almost no data behind it: a
    decompression bomb of under 100 bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000, 9))
            + chunk(b"IEND", b""))


UTK_SAMPLE_SIZE = 100
UTK_SAMPLE_STEP = 50


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def astronaut_path(repo_root) -> Path:
    path = repo_root / "assets" / "astronaut.jpg"
    assert path.is_file(), f"{path} is part of the repository and must exist"
    return path


@pytest.fixture(scope="session")
def yunet_detector():
    from detect import make_detector

    return make_detector("yunet")


@pytest.fixture(scope="session")
def detector(yunet_detector):
    """The default detector (YuNet), which dataset_proc.py and nets/test.py use unless told otherwise."""
    from detect import DEFAULT_DETECTOR

    assert DEFAULT_DETECTOR == "yunet"
    return yunet_detector


@pytest.fixture(scope="session")
def mtcnn_detector():
    """The real MTCNN detector (TensorFlow); built once, it costs a few seconds."""
    from detect import make_detector

    return make_detector("mtcnn")


@pytest.fixture(scope="session", params=["yunet", "mtcnn"])
def each_detector(request):
    """Both detectors, one after the other: what they share must hold for each."""
    return request.getfixturevalue(f"{request.param}_detector")


@pytest.fixture(scope="session")
def utk_dir() -> Path:
    path = (Path(__file__).parents[1] / ".." / "shared" / "data" / "UTKFace").resolve()
    if not path.is_dir():
        pytest.skip(f"UTKFace images not found at {path} (../shared/data/UTKFace from the repo root)")
    return path


@pytest.fixture(scope="session")
def utk_sample(tmp_path_factory, utk_dir) -> Path:
    """A folder of symlinks to UTKFace files: every 50th name (sorted), 100 of them, so ages vary."""
    names = sorted(p.name for p in utk_dir.iterdir() if p.is_file())
    chosen = names[::UTK_SAMPLE_STEP][:UTK_SAMPLE_SIZE]
    if len(chosen) < UTK_SAMPLE_SIZE:
        pytest.skip(f"{utk_dir} holds too few files for a {UTK_SAMPLE_SIZE}-image sample")
    folder = tmp_path_factory.mktemp("utk_sample")
    for name in chosen:
        (folder / name).symlink_to(utk_dir / name)
    return folder


@pytest.fixture(scope="session")
def link_files():
    """link_files(sources, folder): symlink each file into folder (created), keeping its name."""

    def link(sources, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for src in sources:
            src = Path(src)
            (folder / src.name).symlink_to(src.resolve())
        return folder

    return link



@pytest.fixture(scope="session")
def as_a_user() -> list[str]:
    """A command prefix under which file permissions hold: root reads and writes anything, so as
    root the command runs without root's override of them (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: root is never refused by file permissions")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]

@pytest.fixture(scope="session")
def run_cli(repo_root):
    """Run `python preprocessing/dataset_proc.py ARGS` from the repo root; returns CompletedProcess.

    `--workers N` (N = the `workers` argument, 1 by default; None adds nothing) and
    `--no-progress` are appended.
    """

    def run(*args, workers: int | None = 1, timeout: float = 600, env_extra=None):
        cmd = [sys.executable, "preprocessing/dataset_proc.py", *map(str, args)]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        cmd.append("--no-progress")
        env = dict(os.environ)
        env.update(env_extra or {})
        return subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=timeout,
                              env=env)

    return run


# --- models trained by the real CLIs (tests/test_training.py, tests/test_inference.py) ---------------

PREPARED_STEP = 100  # every 100th UTKFace name (sorted): about 200 faces, ages spread
TINY_ROWS = 24       # faces in the tiny data set of quick CLI runs (19 train, 5 validation)

# Lines that TensorFlow, absl and OpenCV write to stderr by themselves; everything else on stderr is
# a message of the project for people.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|To enable the following instructions"
    r"|INFO: Created TensorFlow Lite"
    r"|\[ ?(WARN|ERROR|INFO):)")


def messages_in(stderr: str) -> list[str]:
    """The non-empty stderr lines that are not TensorFlow/absl/OpenCV start-up noise."""
    return [line for line in stderr.splitlines() if line.strip() and not _NOISE.match(line)]


@pytest.fixture(scope="session")
def messages():
    """messages(stderr) -> the lines of stderr meant for people (library noise left out)."""
    return messages_in


@pytest.fixture(scope="session")
def run_python(repo_root):
    """run_python("nets/C3AE.py", *args): run a script of the repo from its root; CompletedProcess."""

    def run(script, *args, timeout: float = 600, env_extra=None):
        env = dict(os.environ)
        env.update(env_extra or {})
        return subprocess.run([sys.executable, script, *map(str, args)], cwd=repo_root,
                              capture_output=True, text=True, timeout=timeout, env=env)

    return run


def _ok(result, what):
    assert result.returncode == 0, (f"{what}: exit {result.returncode}\n"
                                    f"stderr:\n{result.stderr[-4000:]}\nstdout:\n{result.stdout[-2000:]}")
    return result


@pytest.fixture(scope="session")
def prepared_utk(tmp_path_factory, utk_dir, link_files, run_cli) -> Path:
    """Every 100th UTKFace image (about 200) prepared by dataset_proc.py: the folder of feathers."""
    names = sorted(p.name for p in utk_dir.iterdir() if p.is_file())[::PREPARED_STEP]
    if len(names) < 100:
        pytest.skip(f"{utk_dir} holds too few files for the training tests")
    folder = link_files([utk_dir / name for name in names],
                        tmp_path_factory.mktemp("utk_every100") / "UTKFace")
    dest = tmp_path_factory.mktemp("utk_prepared")
    _ok(run_cli("--source", "utk", "-i", folder, "-d", dest, workers=2), "dataset_proc.py")
    assert list(dest.glob("utk_*.feather")), "dataset_proc.py wrote no feather file"
    return dest


@pytest.fixture(scope="session")
def tiny_utk(tmp_path_factory, prepared_utk) -> Path:
    """The first TINY_ROWS faces of prepared_utk as one feather chunk (quick training runs)."""
    import pandas as pd

    from nets.training.data import load_rows

    rows = load_rows(prepared_utk, "utk").drop(columns="key").iloc[:TINY_ROWS].reset_index(drop=True)
    dest = tmp_path_factory.mktemp("utk_tiny")
    rows.to_feather(dest / "utk_0.feather")
    assert len(pd.read_feather(dest / "utk_0.feather")) == TINY_ROWS
    return dest


TRAINED_FILES = (".keras", ".last.keras", ".split.json", ".log.csv", ".state.json", ".curves.png")


def _train(run_python, script, dataset, out: Path) -> Path:
    from nets.network.contract import artifact

    _ok(run_python(script, "--dataset", dataset, "--source", "utk", "-se", "-white", "--epochs", "2",
                   "-s", out), script)
    missing = [artifact(out, s).name for s in TRAINED_FILES if not artifact(out, s).is_file()]
    assert not missing, f"{script} did not write {missing}"
    return out


@pytest.fixture(scope="session")
def trained_age_model(tmp_path_factory, prepared_utk, run_python) -> Path:
    """`nets/C3AE.py ... -se -white --epochs 2 -s OUT.keras` on prepared_utk: the path OUT.keras."""
    return _train(run_python, "nets/C3AE.py", prepared_utk, tmp_path_factory.mktemp("age_model") / "age.keras")


@pytest.fixture(scope="session")
def trained_gender_model(tmp_path_factory, prepared_utk, run_python) -> Path:
    """`nets/C3AE_expand.py ... -se -white --epochs 2 -s OUT.keras` on prepared_utk: OUT.keras."""
    return _train(run_python, "nets/C3AE_expand.py", prepared_utk,
                  tmp_path_factory.mktemp("gender_model") / "gender.keras")


@pytest.fixture(scope="session")
def frozen_gender_model(trained_gender_model, run_python):
    """`nets/C3AE_expand.py -fz -p OUT.keras` run once: (model path, CompletedProcess)."""
    return trained_gender_model, run_python("nets/C3AE_expand.py", "-fz", "-p", trained_gender_model)
