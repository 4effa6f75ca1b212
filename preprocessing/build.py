"""Run the detect/ path over a source's images in parallel and write feather chunks, resumably.

Inputs are cut into chunks of `chunk_size` images; chunk k becomes `<source>_<k>.feather` (so
a chunk holds at most chunk_size faces) plus `<source>_<k>.meta.json`, its completion record.
Both are written to a temporary name and renamed, so a chunk is never half-written. A rerun
skips every chunk whose record matches the same inputs and settings, and redoes the rest.

Before its first chunk a run writes `<source>_run.json`: the input, the options that shape the
chunks and a digest of the item list. A run never deletes or overwrites data it did not make: when
dest holds that source's files from a different command, or from a run that left no such record,
it is refused before anything is written.
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing as mp
import os
import re
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from detect.detector import DEFAULT_DETECTOR, DETECTORS, MIN_FACE_SIZE, check_detector, check_min_face_size
from preprocessing.sources import Item, SourceError, read_source

MULTI_FACE_POLICIES = ("largest", "skip")


@dataclass(frozen=True)
class Settings:
    min_face_size: int = MIN_FACE_SIZE
    multi_face: str = "largest"   # keep the largest face, or skip images with several faces
    detector: str = DEFAULT_DETECTOR


_detector = None
_settings = None


def _init_worker(settings: Settings, single_thread: bool):
    global _detector, _settings
    if single_thread:  # several worker processes share the cores; one thread each is fastest
        os.environ["OMP_NUM_THREADS"] = "1"
        import cv2
        cv2.setNumThreads(1)
        if settings.detector == "mtcnn":
            from detect.quiet import start_tensorflow

            tf = start_tensorflow()  # without its start-up notices, once per worker
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    from detect import make_detector
    _detector = make_detector(settings.detector, min_face_size=settings.min_face_size)
    _settings = settings


def start_pool(workers: int, settings: Settings):
    """Worker processes that ignore Ctrl-C: only the main process stops on it and ends them.

    A worker interrupted in the middle of a result can leave the pool waiting for it forever; an
    ignored SIGINT is inherited from the moment a worker starts, before Python's own handler.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return mp.get_context("spawn").Pool(workers, _init_worker, (settings, True))
    finally:
        signal.signal(signal.SIGINT, previous)


def process_item(item: Item):
    """(row, None) for a face written, (None, reason) for a skipped image. Only the face kept
    (the largest) is aligned and cut."""
    from detect import ImageReadError, load_image
    from detect.prepare import prepare_detection
    from preprocessing.schema import face_to_row

    try:
        image = load_image(item.path)
    except ImageReadError as exc:
        return None, exc.reason
    try:
        found = _detector.detect(image)
        if not found:
            return None, "no face found"
        if len(found) > 1 and _settings.multi_face == "skip":
            return None, "several faces"
        if found[0].problem:  # an upside-down or profile face would teach the model nonsense
            return None, "landmarks not of an upright face"
        face = prepare_detection(image, found[0])
    except Exception as exc:  # a failure on one image must not end the run
        return None, f"processing failed ({type(exc).__name__}: {exc})"
    return face_to_row(face, item.name, item.age, item.gender, len(found), _settings.detector), None


def _signature(items: list[Item], settings: Settings | None = None) -> str:
    """A digest of the items' paths and labels, and of the settings when given (a chunk's record)."""
    digest = hashlib.sha1(json.dumps(asdict(settings), sort_keys=True).encode() if settings else b"")
    for item in items:
        digest.update(f"{item.path}|{item.age}|{item.gender}\n".encode())
    return digest.hexdigest()


class DestinationInUse(ValueError):
    """dest holds a source's data that this run did not make; it is left as it is."""


# run record key -> how people name it on the command line
RECORD_OPTIONS = {"input": "-i", "limit": "--limit", "chunk_size": "--chunk-size",
                  "detector": "--detector", "min_face_size": "--min-face-size", "multi_face": "--multi-face"}


def run_record(source: str, input_path, items: list[Item], limit, chunk_size: int, settings: Settings) -> dict:
    """What decides the chunks of a run: compared with `<source>_run.json` before anything is written."""
    return {"source": source, "input": str(Path(input_path).absolute()), "limit": limit,
            "chunk_size": chunk_size, **asdict(settings), "inputs": len(items),
            "items": _signature(items)}


def source_outputs(dest: Path, source: str) -> list[Path]:
    """The files a run of `source` leaves in dest (its run record aside)."""
    name = re.compile(rf"{re.escape(source)}_(\d+\.feather|\d+\.meta\.json|summary\.json|skipped\.csv)")
    return sorted(p for p in dest.iterdir() if name.fullmatch(p.name)) if dest.is_dir() else []


def check_dest(dest: Path, record: dict):
    """Raise DestinationInUse unless every file of the source in dest was made by this same command."""
    source = record["source"]
    if dest.exists() and not dest.is_dir():
        raise DestinationInUse(f"{dest} is a file, not a folder for the feather files")
    outputs = source_outputs(dest, source)
    if not outputs:  # nothing to lose: a new dest, or a run stopped before its first chunk
        return
    remedy = f"use another -d, or remove {dest / source}_* yourself to start over"
    try:
        earlier = json.loads((dest / f"{source}_run.json").read_text())
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict):
        raise DestinationInUse(f"{dest} already holds {len(outputs)} {source} file(s) such as "
                               f"{outputs[0].name} from a run that left no record of its inputs "
                               f"({source}_run.json); {remedy}")
    differences = [option for key, option in RECORD_OPTIONS.items() if earlier.get(key) != record[key]]
    if not differences and earlier.get("items") != record["items"]:
        differences.append("the images or labels read from the input")
    if differences == ["-i"] and isinstance(earlier.get("input"), str) \
            and Path(earlier["input"]).resolve() == Path(record["input"]).resolve():
        # the chunks name each image by its path as -i spelled it: the same spelling continues the run
        raise DestinationInUse(f"{dest} holds {source} data made from the same folder spelled "
                               f"{earlier['input']} (here {record['input']}); give -i {earlier['input']} "
                               "to continue that run")
    if differences:
        made_with = " ".join(f"{option} {earlier.get(key)}" for key, option in RECORD_OPTIONS.items()
                             if earlier.get(key) is not None)
        raise DestinationInUse(f"{dest} already holds {source} data of {earlier.get('inputs')} images "
                               f"made with {made_with}, and this run differs in {', '.join(differences)}; "
                               f"{remedy}")


def _atomic_write(path: Path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _chunk_done(meta_path: Path, feather_path: Path, signature: str):
    """The record of a finished chunk whose feather file is still the one written, or None (redo it)."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("signature") != signature or not feather_path.exists() \
            or feather_path.stat().st_size != meta.get("feather_bytes"):
        return None
    # records of earlier versions have the size only; a file damaged in place keeps its size
    if "feather_sha1" in meta and _file_digest(feather_path) != meta["feather_sha1"]:
        return None
    return meta


def build_source(source: str, input_path, dest="dataset/data", workers: int | None = None,
                 limit: int | None = None, chunk_size: int = 5000,
                 settings: Settings = Settings(), progress: bool = True) -> dict:
    """Prepare one source into dest; returns the summary that is also written as JSON."""
    from tqdm import tqdm
    from preprocessing.schema import rows_to_frame

    if settings.multi_face not in MULTI_FACE_POLICIES:
        raise ValueError(f"multi_face must be one of {MULTI_FACE_POLICIES}")
    check_min_face_size(settings.min_face_size)
    if settings.detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, not {settings.detector!r}")
    check_detector(settings.detector)  # here: a worker that cannot build it would be restarted forever
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ValueError(f"the limit must be a number of inputs of at least 1, not {limit}")
    items, label_skips = read_source(source, input_path)
    if limit is not None:
        items = items[:limit]
    # no more processes than cores or images: --workers 500 started 500 processes (11 GB) for 3 images
    workers = max(1, min(int(workers or os.cpu_count() or 1), os.cpu_count() or 1, len(items)))
    if not items:
        why = ""
        if label_skips:
            path, reason = label_skips[0]
            why = f" (all {len(label_skips)} inputs skipped, e.g. {path}: {reason})"
        raise SourceError(f"no images to prepare in {input_path}{why}")
    dest = Path(dest)
    record = run_record(source, input_path, items, limit, chunk_size, settings)
    check_dest(dest, record)
    dest.mkdir(parents=True, exist_ok=True)
    _atomic_write(dest / f"{source}_run.json", lambda p: p.write_text(json.dumps(record, indent=2)))
    started = time.time()
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    reasons, image_skips, written, reused = Counter(), [], 0, 0
    pool = None
    bar = tqdm(total=len(items), unit="img", desc=f"{source}", disable=not progress,
               dynamic_ncols=True)
    try:
        for k, chunk in enumerate(chunks):
            feather_path = dest / f"{source}_{k}.feather"
            meta_path = dest / f"{source}_{k}.meta.json"
            signature = _signature(chunk, settings)
            meta = _chunk_done(meta_path, feather_path, signature)
            if meta is None:
                if workers > 1 and pool is None:
                    pool = start_pool(workers, settings)
                if workers == 1 and _settings != settings:
                    _init_worker(settings, False)
                results = (pool.imap(process_item, chunk, chunksize=4) if pool
                           else map(process_item, chunk))
                rows, skips = [], []
                for item, (row, reason) in zip(chunk, results):
                    if row is not None:
                        rows.append(row)
                    else:
                        skips.append((item.path, reason))
                    bar.update(1)
                frame = rows_to_frame(rows)
                _atomic_write(feather_path, lambda p: frame.to_feather(p))
                meta = {"signature": signature, "detector": settings.detector, "inputs": len(chunk), "faces": len(rows),
                        "skipped": skips, "feather_bytes": feather_path.stat().st_size,
                        "feather_sha1": _file_digest(feather_path)}
                _atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta)))
            else:
                reused += 1
                bar.update(len(chunk))
            written += meta["faces"]
            for path, reason in meta["skipped"]:
                reasons[reason] += 1
                image_skips.append((path, reason))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    for _, reason in label_skips:
        reasons[reason] += 1
    summary = {
        "source": source, "input": str(input_path), "dest": str(dest),
        "inputs_seen": len(items) + len(label_skips), "images_processed": len(items),
        "faces_written": written, "face_rate": round(written / len(items), 4) if items else 0.0,
        "skipped": sum(reasons.values()), "skip_reasons": dict(reasons.most_common()),
        "chunks": len(chunks), "chunks_reused": reused, "workers": workers, "detector": settings.detector,
        "settings": asdict(settings), "seconds": round(time.time() - started, 1),
    }
    _atomic_write(dest / f"{source}_summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))

    def write_skips(p):
        with open(p, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(label_skips + image_skips)
    _atomic_write(dest / f"{source}_skipped.csv", write_skips)
    return summary
