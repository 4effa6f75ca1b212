"""Training input: feather chunks -> rows -> a saved deterministic split -> tf.data of crops and targets."""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detect import CHIP_SIZE, CROP_SIZE, crop_triple, decode_chip
from nets.training.augment import AugmentConfig, augmented_crops
from nets.network.labels import two_point_encode
from nets.network.contract import CROP_NAMES
from preprocessing.schema import COLUMNS, DEFAULTS, TRIPLE_COLUMNS, triple_from_frame

SMOOTH_GENDER = 0.01  # smoothed one-hot: 0.99 / 0.01


class DataError(ValueError):
    """The data set folder holds nothing usable."""


def find_chunks(dataset_dir, source: str) -> list[Path]:
    """All `<source>_<k>.feather` files in dataset_dir and its subfolders; source may be a regex."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    try:
        pattern = re.compile(rf"(?:{source})_\d+")
    except re.error as exc:
        raise DataError(f"--source {source!r} is not a valid regular expression ({exc})") from exc
    chunks = sorted(p for p in root.rglob("*.feather") if pattern.fullmatch(p.stem))
    if not chunks:
        raise DataError(f"no feather files matching {source!r} under {root}; "
                        "run preprocessing/dataset_proc.py first")
    return chunks


def usable_faces(frame: pd.DataFrame) -> np.ndarray:
    """Which rows a chunk can be trained and scored on: a whole JPEG chip (it starts and ends as a JPEG
    does), an age in 0..120, a gender of -1, 0 or 1, and triple boxes near the chip (a damaged or
    hand-edited value asked for a crop of 687 GB, or stopped the run at a NaN without naming the file;
    a damaged chip stopped training in the middle of an epoch)."""
    numbers = frame[["age", "gender"] + TRIPLE_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(numbers).all(axis=1) & (numbers[:, 0] >= 0) & (numbers[:, 0] <= 120)
        ok &= np.isin(numbers[:, 1], (-1, 0, 1)) & (np.abs(numbers[:, 2:]) <= 4 * CHIP_SIZE).all(axis=1)
    return ok & frame["image"].map(whole_jpeg).to_numpy(bool)


def whole_jpeg(value) -> bool:
    """Bytes that begin with a JPEG's start-of-image marker and end with its end-of-image marker."""
    return isinstance(value, bytes) and value[:2] == b"\xff\xd8" and value[-2:] == b"\xff\xd9"


def load_rows(dataset_dir, source: str, log=None) -> pd.DataFrame:
    """Rows of every matching chunk with a `key` column (chunk-source:source_file) naming each face.

    A chunk that cannot be read or lacks columns, and faces with unusable values, are reported
    (log, or a warning) and left out; the rest is used.
    """
    def note(message):
        if log is None:
            warnings.warn(message)
        else:
            log(f"note: {message}")

    frames = []
    for path in find_chunks(dataset_dir, source):
        try:
            frame = pd.read_feather(path)
        except Exception as exc:
            note(f"skipping {path}: not a readable feather file ({type(exc).__name__})")
            continue
        for column, value in DEFAULTS.items():
            if column not in frame.columns:
                frame[column] = value
        missing = set(COLUMNS) - set(frame.columns)
        if missing:
            note(f"skipping {path}: lacks columns {', '.join(sorted(missing))}")
            continue
        usable = usable_faces(frame)
        if not usable.all():
            note(f"{path}: {int((~usable).sum())} of {len(frame)} faces left out (unusable age, gender, "
                 "triple box or chip)")
            frame = frame[usable].reset_index(drop=True)
        for column in ["age"] + TRIPLE_COLUMNS:  # numbers stored as text (a hand-edited chunk) are numbers
            frame[column] = pd.to_numeric(frame[column]).astype(np.float32)
        frame["gender"] = pd.to_numeric(frame["gender"]).astype(np.int8)
        chunk_source = path.stem.rsplit("_", 1)[0]
        frame["key"] = chunk_source + ":" + frame["source_file"].astype(str)
        frame["chunk"] = str(path)
        frames.append(frame)
    if not frames:
        raise DataError(f"none of the feather files for {source!r} under {dataset_dir} could be read")
    rows = pd.concat(frames, ignore_index=True)
    again = rows["key"].duplicated()
    if again.any():  # e.g. one source prepared twice, by two detectors, into two folders below dataset_dir
        first = rows.loc[rows["key"] == rows.loc[again.idxmax(), "key"], "chunk"].tolist()
        note(f"{int(again.sum())} faces are in more than one chunk (e.g. {first[0]} and {first[1]}); "
             "the first is used")
    return rows[~again].drop(columns="chunk").reset_index(drop=True)


@dataclass
class Split:
    train: pd.DataFrame
    val: pd.DataFrame
    val_missing: int = 0  # validation faces of a saved split that are not in the data


def row_sources(rows: pd.DataFrame) -> np.ndarray:
    """The source of each row: the part of its key before ':' (utk, asia, ...)."""
    return rows["key"].str.split(":", n=1).str[0].to_numpy().astype(str)


NEAR_DUPLICATE_DIFFERENCE = 8.0  # mean grey-level difference of 32x32 thumbnails; copies measured 1-8, other faces 15+


def duplicate_groups(rows: pd.DataFrame, max_difference: float = NEAR_DUPLICATE_DIFFERENCE):
    """A group number per face, equal for copies of one photo, and a report of what was found.

    Copies are byte-identical chips (the same photo under two names prepares to the same bytes),
    or near-duplicates: chips with the same 64-bit difference hash whose 32x32 grey thumbnails
    differ by less than max_difference grey levels on average (a photo saved again or resized;
    faces of different people that share a hash differ by 15 or more).
    """
    import hashlib

    import cv2

    jpegs = rows["image"].to_numpy()
    parent = np.arange(len(rows))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        parent[root(i)] = root(j)

    first_of, buckets, thumbs = {}, {}, {}
    exact_pairs = near_pairs = 0
    for i, jpeg in enumerate(jpegs):
        digest = hashlib.sha1(jpeg).digest()
        if digest in first_of:
            union(i, first_of[digest])
            exact_pairs += 1
            continue
        first_of[digest] = i
        gray = decode_chip(jpeg, cv2.IMREAD_GRAYSCALE)
        small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
        thumbs[i] = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)
        buckets.setdefault(np.packbits(small[:, 1:] > small[:, :-1]).tobytes(), []).append(i)
    for members in buckets.values():
        for a, i in enumerate(members):
            for j in members[a + 1:]:
                if root(i) != root(j) and np.abs(thumbs[i] - thumbs[j]).mean() < max_difference:
                    union(i, j)
                    near_pairs += 1
    groups = np.array([root(i) for i in range(len(rows))])
    _, sizes = np.unique(groups, return_counts=True)
    report = {"byte_identical_copies": int(exact_pairs), "near_duplicate_pairs": int(near_pairs),
              "groups_with_copies": int((sizes > 1).sum()), "faces_in_them": int(sizes[sizes > 1].sum())}
    return groups, report


def grouped_split(rows: pd.DataFrame, val_split: float, seed: int, keep: dict | None = None):
    """Train and validation row indices: copies of one photo on one side only, and each side with
    the same mix of source and age decade (scikit-learn's StratifiedGroupKFold, the first of
    round(1 / val_split) folds is the validation side).

    keep: an earlier split ({"train": keys, "val": keys}) whose faces stay on their side, so that a
    model trained on its training side and fine-tuned here is validated on faces it never saw. A
    photo with a copy on the earlier training side goes to training whole.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    groups, report = duplicate_groups(rows)
    sources = row_sources(rows)
    decades = np.minimum(rows["age"].to_numpy() // 10, 9).astype(int)
    strata = np.char.add(sources.astype(str), decades.astype(str))
    forced = np.zeros(len(rows), dtype=np.int8)  # 0 free, 1 training, 2 validation
    if keep:
        keys = rows["key"].to_numpy()
        in_train, in_val = np.isin(keys, list(keep["train"])), np.isin(keys, list(keep["val"]))
        train_groups = set(groups[in_train])
        val_groups = set(groups[in_val]) - train_groups
        forced[np.isin(groups, list(train_groups))] = 1
        forced[np.isin(groups, list(val_groups))] = 2
        report["kept_from_earlier_split"] = {"train": int((forced == 1).sum()), "val": int((forced == 2).sum()),
                                             "val_moved_to_train_with_their_copies": int((in_val & (forced == 1)).sum())}
    free = np.flatnonzero(forced == 0)
    train_idx, val_idx = np.flatnonzero(forced == 1), np.flatnonzero(forced == 2)
    if len(free):
        folds = max(2, int(round(1 / val_split)))
        with warnings.catch_warnings():  # a rare age decade with fewer faces than folds is expected
            warnings.simplefilter("ignore", UserWarning)
            try:
                splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
                free_train, free_val = next(splitter.split(np.zeros(len(free)), strata[free], groups[free]))
            except ValueError:  # too few faces to stratify: grouped only
                splitter = GroupShuffleSplit(n_splits=1, test_size=val_split, random_state=seed)
                free_train, free_val = next(splitter.split(np.zeros(len(free)), groups=groups[free]))
                report["stratified"] = False
        train_idx, val_idx = np.concatenate([train_idx, free[free_train]]), np.concatenate([val_idx, free[free_val]])
    return np.sort(train_idx), np.sort(val_idx), report


def read_split(path, advice: str) -> dict:
    """A split file ({"train": keys, "val": keys, ...}), or DataError naming the file and what to do."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        if not (isinstance(saved, dict) and isinstance(saved.get("train"), list) and isinstance(saved.get("val"), list)):
            raise ValueError("no lists of training and validation faces")
    except (OSError, ValueError) as exc:  # missing, a folder, not UTF-8, not JSON, another JSON file
        reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise DataError(f"{path} is not a readable split file ({reason}); {advice}") from exc
    return saved


def make_or_load_split(rows: pd.DataFrame, split_path, val_split: float = 0.2, seed: int = 2019,
                       log=print, keep_path=None) -> Split:
    """A split by photo, saved as JSON (the keys of each side) and reused after.

    A new split keeps copies of one photo together (duplicate_groups) and stratifies by source
    and age decade (grouped_split); with keep_path, the faces of that earlier split stay on their
    side. A saved split is always honoured, also an older one made at random by face: rows it
    does not list (new data) are left out, with a note.
    """
    split_path = Path(split_path)
    if split_path.exists():
        saved = read_split(split_path, "it says which faces the model was trained on: restore it, or give another -s")
        train_keys, val_keys = set(saved["train"]), set(saved["val"])
        unknown = (~rows["key"].isin(train_keys | val_keys)).sum()
        if unknown:
            log(f"note: {unknown} faces are not in the saved split {split_path} and are not used")
        absent = len(val_keys) - int(rows["key"].isin(val_keys).sum())
        if absent:
            log(f"note: {absent} of the {len(val_keys)} validation faces of {split_path} are not in the data "
                "(a chunk missing or left out?); validation uses the rest")
        log(f"using the saved split {split_path} (seed {saved.get('seed')}, val {saved.get('val_split')})")
        if keep_path:
            log(f"note: --split-from {keep_path} is not used: the saved split {split_path.name} already decides "
                "each face's side (give another -s for a new split)")
        return Split(rows[rows["key"].isin(train_keys)].reset_index(drop=True),
                     rows[rows["key"].isin(val_keys)].reset_index(drop=True), absent)
    if not 0 < val_split < 1:
        raise ValueError("--val-split must be between 0 and 1")
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} face(s) cannot be split into training and validation")
    keep = read_split(keep_path, "give a NAME.split.json") if keep_path else None
    train_idx, val_idx, report = grouped_split(rows, val_split, seed, keep)
    split = Split(rows.iloc[train_idx].reset_index(drop=True), rows.iloc[val_idx].reset_index(drop=True))
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps({
        "seed": seed, "val_split": val_split,
        "method": "StratifiedGroupKFold: copies of a photo kept together, stratified by source and age decade"
                  + (f"; the sides of {Path(keep_path).name} kept" if keep_path else ""),
        "duplicates": report, "train": split.train["key"].tolist(), "val": split.val["key"].tolist()}))
    log(f"saved a new split to {split_path}: {len(split.train)} train, {len(split.val)} val faces; "
        f"{report['groups_with_copies']} photos with copies ({report['faces_in_them']} faces: "
        f"{report['byte_identical_copies']} byte-identical, {report['near_duplicate_pairs']} near-duplicate pairs) "
        "kept on one side")
    return split


def targets(rows: pd.DataFrame, bins: int, gender: bool, smooth: float = SMOOTH_GENDER) -> dict:
    out = {"age": rows["age"].to_numpy(np.float32).reshape(-1, 1),
           "W1": two_point_encode(rows["age"].to_numpy(), bins)}
    if gender:
        g = rows["gender"].to_numpy()
        out["gender"] = np.where(g[:, None] == np.arange(2)[None, :], 1.0 - smooth, smooth).astype(np.float32)
    return out


class ChipStore:
    """The aligned chips of rows, decoded once on first use and kept in memory when they fit."""

    def __init__(self, rows: pd.DataFrame, memory_limit: float = 6e9):
        self.jpegs = rows["image"].to_numpy()
        self.triples = triple_from_frame(rows)
        shape = (len(rows), CHIP_SIZE, CHIP_SIZE, 3)
        fits = np.prod(shape, dtype=np.float64) <= memory_limit
        self.cache = np.empty(shape, np.uint8) if fits else None  # pages are only used once written
        self.decoded = np.zeros(len(rows), bool)

    def __len__(self):
        return len(self.jpegs)

    def chip(self, i: int) -> np.ndarray:
        if self.cache is None:
            return decode_chip(self.jpegs[i])
        if not self.decoded[i]:
            self.cache[i] = decode_chip(self.jpegs[i])
            self.decoded[i] = True
        return self.cache[i]

    def crops(self, indices=None, rng=None, augment: AugmentConfig | None = None, degrade=None) -> np.ndarray:
        """(N, 3, 64, 64, 3) uint8 crops (all rows, or `indices`), augmented when `augment` is set;
        degrade(chip) -> chip changes every chip first (the degraded copies of -test)."""
        indices = range(len(self)) if indices is None else indices
        out = np.empty((len(indices), 3, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        for n, i in enumerate(indices):
            chip = self.chip(i) if degrade is None else degrade(self.chip(i))
            out[n] = augmented_crops(chip, self.triples[i], rng, augment) if augment \
                else crop_triple(chip, self.triples[i])
        return out


def face_crops(rows: pd.DataFrame, indices=None) -> np.ndarray:
    """(N, 3, 64, 64, 3) uint8 crops of rows, exactly as training and inference cut them."""
    return ChipStore(rows, memory_limit=0).crops(indices)


def as_inputs(crops: np.ndarray) -> dict:
    """Model inputs from (N, 3, 64, 64, 3) crops."""
    crops = crops.astype(np.float32)
    return {name: crops[:, k] for k, name in enumerate(CROP_NAMES)}


def make_dataset(rows: pd.DataFrame, batch_size: int, bins: int, gender: bool, training: bool,
                 augment: AugmentConfig | None = None, seed: int = 2019, smooth: float = SMOOTH_GENDER,
                 drop_remainder: bool = False, age_weights=None):
    """tf.data over rows: batches of indices are decoded, cropped (and augmented) in parallel.

    drop_remainder leaves out the last partial batch (needed when batches are split over replicas).
    age_weights: a loss weight per row for the age and W1 losses (LDS); gender keeps weight 1.
    """
    import cv2
    import tensorflow as tf

    # tf.data already runs batches in parallel; OpenCV's own threads on these small images only
    # cost CPU time that the model needs (1.5x the CPU for the same crops, measured here).
    cv2.setNumThreads(1)
    target_arrays = targets(rows, bins, gender, smooth)
    store = ChipStore(rows)
    n = len(rows)

    weights = None if age_weights is None else np.asarray(age_weights, np.float32)

    def load_batch(indices, batch_seed):
        rng = np.random.default_rng([int(batch_seed), seed]) if training and augment else None
        crops = store.crops(indices, rng, augment if training else None)
        return (tuple(crops[:, k] for k in range(3)) + tuple(target_arrays[k][indices] for k in target_arrays)
                + (() if weights is None else (weights[indices],)))

    output_types = ([tf.uint8] * 3 + [tf.float32] * len(target_arrays)  # crops cast to float32 below, in TF
                    + ([] if weights is None else [tf.float32]))

    def to_structure(indices, batch_seed):
        values = tf.numpy_function(load_batch, [indices, batch_seed], output_types, stateful=False)
        for v in values[:3]:
            v.set_shape([None, 64, 64, 3])
        for v, key in zip(values[3:], target_arrays):
            v.set_shape([None, target_arrays[key].shape[1]])
        inputs = {name: tf.cast(values[k], tf.float32) for k, name in enumerate(CROP_NAMES)}
        labels = {key: values[3 + k] for k, key in enumerate(target_arrays)}
        if weights is None:
            return inputs, labels
        weight = values[-1]
        weight.set_shape([None])
        return inputs, labels, {key: weight if key in ("age", "W1") else tf.ones_like(weight) for key in labels}

    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # One augmentation seed per batch, different in every epoch.
    batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(ds, batch_seeds)
    ds = ds.map(to_structure, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    return ds.prefetch(tf.data.AUTOTUNE)
