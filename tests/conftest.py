"""Shared fixtures: the real MTCNN detector (once per session), UTKFace paths and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `import detect`, `import preprocessing` from any cwd
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
def detector():
    """The real MTCNN detector (TensorFlow); built once, it costs a few seconds."""
    from detect import FaceDetector

    return FaceDetector()


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
