"""Label parsing for each supported data set. Gender is always 0 = female, 1 = male, -1 = unknown.

Each reader returns (items, skipped): the images to process with their labels, and the inputs
dropped for a label reason, as (path, reason) pairs.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from detect.prepare import printable_name, utf8_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_AGE, MAX_AGE = 0, 100
UNKNOWN_GENDER = -1


@dataclass(frozen=True)
class Item:
    path: str      # absolute path of the image
    age: float
    gender: int    # 0 female, 1 male, -1 unknown
    name: str      # the file name relative to the input, stored as `source_file`


class SourceError(ValueError):
    """The input cannot be read as the source it was said to be."""


def list_images(root: Path) -> list[Path]:
    """Every file below root (sorted, recursively). Non-images are kept so that they get counted."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _age_ok(age) -> bool:
    return age is not None and math.isfinite(age) and MIN_AGE <= age <= MAX_AGE


def _keep(items, skipped, path: Path, root: Path, age, gender):
    if not _age_ok(age):
        skipped.append((str(path), f"age {age} outside {MIN_AGE}..{MAX_AGE}"))
    else:
        items.append(Item(str(path), float(age), int(gender), str(path.relative_to(root))))


def _require_dir(root: Path, what: str) -> Path:
    root = root.absolute()  # item paths are then the same however -i was spelled
    if not root.exists():
        raise SourceError(f"input {root} does not exist")
    if not root.is_dir():
        raise SourceError(f"input {root} must be a folder of {what}")
    return root


# --- wiki / imdb --------------------------------------------------------------------------

def matlab_age(dob: float, photo_taken: int) -> int:
    """Age when the photo was taken; the photo is assumed mid-year, hence the July rule."""
    birth = dt.date.fromordinal(max(int(dob) - 366, 1))
    return int(photo_taken) - birth.year - (1 if birth.month >= 7 else 0)


MAT_NUMBER_FIELDS = ("dob", "photo_taken", "gender", "face_score", "second_face_score")


def _load_mat_struct(mat_path: Path, name: str):
    """The 1x1 struct `name` of a wiki.mat / imdb.mat, or a SourceError saying what is wrong."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(str(mat_path))
    except NotImplementedError as exc:  # scipy's word for MATLAB v7.3 (HDF5) files
        raise SourceError(f"{mat_path} is a MATLAB v7.3 file, which cannot be read here; "
                          f"use the original {name}.mat (MATLAB v5)") from exc
    except Exception as exc:  # scipy raises many kinds for a damaged file
        raise SourceError(f"{mat_path} is not a MATLAB .mat file, or it is damaged") from exc
    if name not in contents:
        held = ", ".join(k for k in contents if not k.startswith("__")) or "nothing"
        raise SourceError(f"{mat_path} has no '{name}' structure (it holds: {held})")
    struct = contents[name]
    if struct.dtype.names is None or struct.size != 1:
        raise SourceError(f"{mat_path}: '{name}' is not a structure of fields like full_path and dob")
    missing = [f for f in ("full_path", *MAT_NUMBER_FIELDS) if f not in struct.dtype.names]
    if missing:
        raise SourceError(f"{mat_path}: the '{name}' structure lacks the field(s) {', '.join(missing)}")
    return struct.flat[0]


def read_mat_source(root: Path, name: str):
    """wiki_crop/wiki.mat or imdb_crop/imdb.mat (root may be the folder or the .mat file)."""
    import numpy as np

    root = Path(root).absolute()
    mat_path = root if root.suffix == ".mat" else root / f"{name}.mat"
    if not mat_path.exists():
        raise SourceError(f"{mat_path} not found: --source {name} needs the folder holding {name}.mat")
    meta = _load_mat_struct(mat_path, name)
    try:
        full_path = [str(p[0]) for p in meta["full_path"][0]]
    except (IndexError, TypeError, ValueError) as exc:
        raise SourceError(f"{mat_path}: the field full_path of '{name}' is not a row of file names") from exc
    columns = {}
    for field in MAT_NUMBER_FIELDS:
        try:
            columns[field] = np.asarray(meta[field][0], dtype=float)
        except (IndexError, TypeError, ValueError) as exc:
            raise SourceError(f"{mat_path}: the field {field} of '{name}' is not a row of numbers") from exc
    if any(len(v) != len(full_path) for v in columns.values()):
        raise SourceError(f"{mat_path}: its fields have different lengths")
    image_root = mat_path.parent
    items, skipped = [], []
    for i, rel in enumerate(full_path):
        path = image_root / rel
        if not math.isnan(columns["second_face_score"][i]):
            skipped.append((str(path), "second face in the image (second_face_score)"))
            continue
        if math.isinf(columns["face_score"][i]):
            skipped.append((str(path), "no face according to the .mat (face_score -inf)"))
            continue
        g = columns["gender"][i]
        gender = UNKNOWN_GENDER if math.isnan(g) else int(g)
        try:
            age = matlab_age(columns["dob"][i], columns["photo_taken"][i])
        except (ValueError, OverflowError):
            skipped.append((str(path), "invalid date of birth"))
            continue
        _keep(items, skipped, path, image_root, age, gender)
    return items, skipped


# --- utk / afad / asia ----------------------------------------------------------------------

UTK_NAME = re.compile(r"^(\d+)_([01])_")
ASIA_NAME = re.compile(r"(\d+)A(\d+)\.jpg$", re.IGNORECASE)


def read_utk(root: Path):
    """UTKFace: AGE_GENDER_RACE_DATE.jpg; UTK's gender is 0 male, 1 female, flipped here."""
    root = _require_dir(Path(root), "UTKFace images")
    items, skipped = [], []
    for path in list_images(root):
        match = UTK_NAME.match(path.name)
        if not match:
            skipped.append((str(path), "file name has no AGE_GENDER_ label"))
            continue
        _keep(items, skipped, path, root, int(match.group(1)), 1 - int(match.group(2)))
    return items, skipped


def read_afad(root: Path):
    """AFAD-Full/AGE/111|112/*.jpg: 111 male, 112 female."""
    root = _require_dir(Path(root), "AFAD age folders")
    genders = {"111": 1, "112": 0}
    items, skipped = [], []
    for path in list_images(root):
        age_dir, gender_dir = path.parent.parent.name, path.parent.name
        if gender_dir not in genders or not age_dir.isdigit():
            skipped.append((str(path), "not under AGE/111 or AGE/112"))
            continue
        _keep(items, skipped, path, root, int(age_dir), genders[gender_dir])
    return items, skipped


def read_asia(root: Path):
    """All-Age-Faces: IDA AGE.jpg, e.g. 00012A23.jpg; person ids up to 7380 are female."""
    root = _require_dir(Path(root), "All-Age-Faces images")
    items, skipped = [], []
    for path in list_images(root):
        match = ASIA_NAME.search(path.name)
        if not match:
            skipped.append((str(path), "file name is not IDA AGE.jpg"))
            continue
        person, age = int(match.group(1)), int(match.group(2))
        _keep(items, skipped, path, root, age, 0 if person <= 7380 else 1)
    return items, skipped


# --- people's own data -------------------------------------------------------------------

_GENDER_WORDS = {"0": 0, "1": 1, "f": 0, "m": 1, "female": 0, "male": 1, "": UNKNOWN_GENDER}


def _csv_rows(csv_path: Path):
    """(line number, row dict) of each data row; utf-8-sig also reads Excel's "CSV UTF-8" (BOM first)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "age"} - set(reader.fieldnames or [])
            if missing:
                raise SourceError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; "
                                  "expected path,age,gender")
            return [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise SourceError(f"{csv_path} is not UTF-8 text; save it as UTF-8 (in Excel: CSV UTF-8)") from exc
    except csv.Error as exc:
        raise SourceError(f"{csv_path} is not a readable CSV file ({exc})") from exc


def read_csv_labels(csv_path: Path):
    """A CSV with columns path,age,gender (paths relative to the CSV; gender 0/1 or F/M, may be empty).

    A path listed several times with the same labels is kept once; a path listed with different
    labels is skipped altogether, since one face must not carry two labels (nor land on both sides
    of a split).
    """
    csv_path = Path(csv_path).absolute()
    if not csv_path.is_file():
        raise SourceError(f"{csv_path} not found: --source csv needs -i LABELS.csv")
    root = csv_path.parent
    labelled, skipped = [], []  # labelled: (line, path, age, gender)
    for line, row in _csv_rows(csv_path):
        path = (root / (row.get("path") or "")).resolve()
        try:
            age = float(row["age"])
        except (TypeError, ValueError):
            skipped.append((str(path), f"age {row.get('age')!r} is not a number"))
            continue
        gender = _GENDER_WORDS.get((row.get("gender") or "").strip().lower())
        if gender is None:
            skipped.append((str(path), f"gender {row.get('gender')!r} is not 0/1 or F/M"))
            continue
        if not _age_ok(age):
            skipped.append((str(path), f"age {age} outside {MIN_AGE}..{MAX_AGE}"))
            continue
        labelled.append((line, path, age, gender))

    lines, labels = defaultdict(list), defaultdict(set)
    for line, path, age, gender in labelled:
        lines[path].append(line)
        labels[path].add((age, gender))
    items = []
    for line, path, age, gender in labelled:
        if len(labels[path]) > 1:
            listed = ", ".join(map(str, lines[path]))
            skipped.append((str(path), f"conflicting labels in {csv_path.name} (lines {listed})"))
        elif line != lines[path][0]:
            skipped.append((str(path), f"same labels as line {lines[path][0]} of {csv_path.name}"))
        else:
            items.append(Item(str(path), age, gender, os.path.relpath(path, root)))
    return items, skipped


READERS = {
    "wiki": lambda root: read_mat_source(root, "wiki"),
    "imdb": lambda root: read_mat_source(root, "imdb"),
    "utk": read_utk,
    "afad": read_afad,
    "asia": read_asia,
    "csv": read_csv_labels,
}
# Where each source's data usually lives below dataset/ (the -i default).
DEFAULT_INPUTS = {"wiki": "dataset/wiki_crop", "imdb": "dataset/imdb_crop", "utk": "dataset/UTKFace",
                  "afad": "dataset/AFAD-Full", "asia": "dataset/All-Age-Faces/original images",
                  "csv": "dataset/labels.csv"}


def read_source(source: str, root: str | os.PathLike):
    if source not in READERS:
        raise SourceError(f"unknown source {source!r}; choose one of {', '.join(READERS)}")
    items, skipped = READERS[source](Path(root))
    if Path(root).is_dir():  # links to nothing are no files to the readers: counted here, not lost
        skipped += [(str(path.absolute()), "broken link") for path in sorted(Path(root).rglob("*"))
                    if path.is_symlink() and not path.exists()]
    # a name that is not UTF-8 cannot be stored in the feather files' text columns, nor opened by
    # OpenCV: such an image is skipped and named (its odd bytes shown as U+FFFD), not the end of the run
    kept, skipped = [], [(printable_name(path), reason) for path, reason in skipped]
    for item in items:
        if utf8_name(item.path):
            kept.append(item)
        else:
            skipped.append((printable_name(item.path), "file name is not valid UTF-8 (rename it)"))
    return kept, skipped
