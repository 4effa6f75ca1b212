"""Run the detect/ path over a source's images in parallel and write feather chunks, resumably.

Inputs are cut into chunks of `chunk_size` images; chunk k becomes `<source>_<k>.feather` (so
a chunk holds at most chunk_size faces) plus `<source>_<k>.meta.json`, its completion record.
Both are written to a temporary name and renamed, so a chunk is never half-written. A rerun
skips every chunk whose record matches the same inputs and settings, and redoes the rest.
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from detect.detector import DEFAULT_DETECTOR, DETECTORS, MIN_FACE_SIZE, check_min_face_size
from preprocessing.sources import Item, read_source

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
            import tensorflow as tf
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    from detect import make_detector
    _detector = make_detector(settings.detector, min_face_size=settings.min_face_size)
    _settings = settings


def process_item(item: Item):
    """(row, None) for a face written, (None, reason) for a skipped image."""
    from detect import ImageReadError, load_image, prepare_faces
    from preprocessing.schema import face_to_row

    try:
        image = load_image(item.path)
    except ImageReadError as exc:
        return None, str(exc).split(": ", 1)[-1]
    try:
        faces = prepare_faces(image, _detector)
    except Exception as exc:  # a failure on one image must not end the run
        return None, f"processing failed ({type(exc).__name__}: {exc})"
    if not faces:
        return None, "no face found"
    if len(faces) > 1 and _settings.multi_face == "skip":
        return None, "several faces"
    return face_to_row(faces[0], item.name, item.age, item.gender, len(faces), _settings.detector), None


def _signature(items: list[Item], settings: Settings) -> str:
    digest = hashlib.sha1(json.dumps(asdict(settings), sort_keys=True).encode())
    for item in items:
        digest.update(f"{item.path}|{item.age}|{item.gender}\n".encode())
    return digest.hexdigest()


def _atomic_write(path: Path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _chunk_done(meta_path: Path, feather_path: Path, signature: str):
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("signature") != signature or not feather_path.exists() \
            or feather_path.stat().st_size != meta.get("feather_bytes"):
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
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    workers = max(1, int(workers or os.cpu_count() or 1))
    items, label_skips = read_source(source, input_path)
    if limit is not None:
        items = items[:limit]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
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
                    pool = mp.get_context("spawn").Pool(workers, _init_worker, (settings, True))
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
                        "skipped": skips, "feather_bytes": feather_path.stat().st_size}
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
    # Chunks left over from an earlier, longer run of the same source would be read as data.
    for stale in dest.glob(f"{source}_*.feather"):
        suffix = stale.stem.rsplit("_", 1)[-1]
        if suffix.isdigit() and int(suffix) >= len(chunks):
            stale.unlink()
            (dest / f"{source}_{suffix}.meta.json").unlink(missing_ok=True)
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
