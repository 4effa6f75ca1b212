#!/usr/bin/env python
"""Speed of C3AE on this machine, printed as tables (medians over repeats; ratios within one run).

  python nets/benchmark.py model   --model model/c3ae_utk_age_gender.keras
  python nets/benchmark.py train   --dataset dataset/data --source utk
  python nets/benchmark.py preprocess --input ../shared/data/UTKFace --images 500
  python nets/benchmark.py all ...   (everything above)
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
REPO = Path(__file__).resolve().parents[1]


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    sys.stdout.flush()


def bench_model(model_path, image_path, repeats):
    import numpy as np

    from detect import FaceDetector, load_image
    from detect.prepare import prepare_detection
    from nets.export import convert
    from nets.model import describe, with_mirror
    from nets.predict import AgeEstimator, KerasRunner
    from nets.tflite import TFLiteModel

    runner = KerasRunner(model_path)
    rng = np.random.default_rng(0)
    crops64 = rng.integers(0, 256, (64, 3, 64, 64, 3)).astype(np.float32)
    rows = []
    t1 = median_seconds(lambda: runner.predict_crops(crops64[:1]), repeats)
    rows.append(["Keras, batch of 1", f"{t1 * 1e3:.2f}"])
    t64 = median_seconds(lambda: runner.predict_crops(crops64), max(5, repeats // 5))
    rows.append(["Keras, batch of 64", f"{t64 / 64 * 1e3:.3f}"])
    mirrored = describe(runner.model)["mirror"]
    with tempfile.TemporaryDirectory() as tmp:  # both forms of the same weights: one pass, or face + mirror image
        for mirror in (False, True):
            form = ("face + mirror image" if mirror else "single pass") + (" (this file)" if mirror == mirrored else "")
            for kind in ("float32", "dynamic"):
                path = Path(tmp) / f"{kind}{mirror}.tflite"
                path.write_bytes(convert(with_mirror(runner.model, mirror), kind))
                lite = TFLiteModel(path)
                t = median_seconds(lambda: lite.predict_crops(crops64[:1]), repeats * 5)
                rows.append([f"TFLite {kind}, 1 face, {form}", f"{t * 1e3:.3f}"])
    table(f"Model time per face ({Path(model_path).name}, Keras rows: the file as it is)", ["how", "ms per face"], rows)

    image = load_image(image_path)
    detector = FaceDetector()
    estimator = AgeEstimator(model_path, detector=detector)
    steps = {"detect": [], "prepare": [], "model": []}

    def one_image():  # AgeEstimator.predict step by step, each step timed in the same call
        start = time.perf_counter()
        detections = detector.detect(image)
        middle = time.perf_counter()
        faces = [prepare_detection(image, d) for d in detections]
        end = time.perf_counter()
        estimator.predict_prepared(faces)
        for key, seconds in zip(steps, (middle - start, end - middle, time.perf_counter() - end)):
            steps[key].append(seconds)
        return faces

    faces = one_image()
    for values in steps.values():
        values.clear()
    for _ in range(repeats):
        one_image()
    totals = [sum(parts) for parts in zip(*steps.values())]
    total = statistics.median(totals)
    chip_t = median_seconds(lambda: detector.detect(faces[0].chip), repeats) if faces else float("nan")

    def row(name, key):
        share = statistics.median(part / whole for part, whole in zip(steps[key], totals))
        return [name, f"{statistics.median(steps[key]) * 1e3:.1f}", f"{share:.0%}"]

    table(f"End to end on {Path(image_path).name} ({image.shape[1]}x{image.shape[0]}, {len(faces)} face; "
          f"{repeats} calls, each step timed within the call, share = median of the calls' shares)",
          ["step", "ms", "share"],
          [row("detect (MTCNN)", "detect"), row("align, JPEG round trip, triple box, pose", "prepare"),
           row("crops + model (Keras)", "model"), ["total", f"{total * 1e3:.1f}", "100%"],
           ["not done: a second MTCNN pass on the 256x256 chip (the original's way to get chip "
            "landmarks)", f"{chip_t * 1e3:.1f}", f"+{chip_t / total:.0%}"]])


def bench_train(dataset, source, batch_size, steps, rounds):
    """Training samples per second, fed by the real tf.data pipeline and by tensors in memory.

    The two feeds take turns, one epoch of `steps` steps each, for `rounds` rounds, and each
    epoch is timed from its start to its last step by a callback. What fit() does after that is
    left out on purpose: when a tf.data iterator is destroyed, TF waits for its autotuning thread,
    which here cost 0 to 8 s per fit() call at random, once per call and not per epoch (this was
    the "half speed" seen in earlier, whole-call timings). The pipeline decodes each chip once and
    keeps it (ChipStore), so its first epoch is reported apart from the later ones.
    """
    import keras
    import tensorflow as tf

    from nets.augment import AugmentConfig
    from nets.data import as_inputs, face_crops, load_rows, make_dataset, targets
    from nets.model import build_c3ae
    from nets.train import TrainConfig, compile_model

    rows = load_rows(dataset, source).iloc[: batch_size * steps].reset_index(drop=True)
    cfg = TrainConfig(se=True, white=True, gender=True, batch_size=batch_size)

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.rate = batch_size * steps / (time.perf_counter() - self.start)

    def epoch_rate(model, ds):
        clock = EpochClock()
        model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[clock])
        return clock.rate

    def fresh_model(ds):
        keras.utils.set_random_seed(0)
        model = build_c3ae(se=True, white=True, gender=True)
        compile_model(model, cfg, rows, steps)
        model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)  # build the graph
        return model

    crops = face_crops(rows.iloc[: batch_size * 4])
    y = targets(rows.iloc[: batch_size * 4], cfg.bins, True)
    memory = tf.data.Dataset.from_tensors((as_inputs(crops), y)).unbatch().batch(batch_size).cache().repeat()
    pipeline = make_dataset(rows, batch_size, cfg.bins, True, True, AugmentConfig()).repeat()
    memory_model, pipeline_model = fresh_model(memory), fresh_model(pipeline)
    memory_rates, pipeline_rates = [], []
    for _ in range(rounds):
        memory_rates.append(epoch_rate(memory_model, memory))
        pipeline_rates.append(epoch_rate(pipeline_model, pipeline))
    cold, warm = pipeline_rates[0], pipeline_rates[1:]
    memory_rate = statistics.median(memory_rates)
    ratios = [p / m for p, m in zip(warm, memory_rates[1:])]
    table(f"Training throughput (age+gender model, SE + white, batch {batch_size}, {steps} steps "
          f"an epoch, {rounds} rounds taking turns, {len(rows)} faces)", ["input", "samples/s (median)", "range", "vs in-memory"],
          [["in-memory tensors", f"{memory_rate:.0f}",
            f"{min(memory_rates):.0f}-{max(memory_rates):.0f}", "100%"],
           ["tf.data pipeline, first epoch (JPEG decode, crop, augment)", f"{cold:.0f}", "",
            f"{cold / memory_rates[0]:.0%} (same round)"],
           ["tf.data pipeline, later epochs (cached chips, crop, augment)",
            f"{statistics.median(warm):.0f}", f"{min(warm):.0f}-{max(warm):.0f}",
            f"{statistics.median(ratios):.0%} (median of rounds, {min(ratios):.0%}-{max(ratios):.0%})"]])


def bench_preprocess(input_dir, images):
    """dataset_proc.py --source utk on the same images with 1 and 2 workers."""
    import os

    files = sorted(Path(input_dir).iterdir())[:images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for f in files:
            os.symlink(f.resolve(), src / f.name)
        for workers in (1, 2):
            out = Path(tmp) / f"out{workers}"
            start = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "preprocessing" / "dataset_proc.py"), "--source", "utk",
                            "-i", str(src), "-d", str(out), "--workers", str(workers), "--no-progress"],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            summary = json.loads((out / "utk_summary.json").read_text())
            rows.append([workers, len(files), summary["faces_written"], f"{seconds:.1f}", f"{len(files) / seconds:.2f}"])
    base = float(rows[0][4])
    for row in rows:
        row.append(f"{float(row[4]) / base:.2f}x")
    table(f"Preprocessing (dataset_proc.py --source utk, {len(files)} UTKFace images, process start included)",
          ["workers", "images", "faces", "seconds", "images/s", "speed-up"], rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("model", "train", "preprocess", "all"))
    p.add_argument("--model", default=str(REPO / "model" / "c3ae_utk_age_gender.keras"))
    p.add_argument("--image", default=str(REPO / "assets" / "astronaut.jpg"))
    p.add_argument("--dataset", default="dataset/data")
    p.add_argument("--source", default="utk")
    p.add_argument("--input", default=str(REPO.parent / "shared" / "data" / "UTKFace"))
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="train: epochs per feed, taking turns")
    args = p.parse_args(argv)
    import os
    print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}; "
          f"load average before the run {os.getloadavg()[0]:.2f} (above ~0.3 another process is busy)")
    try:
        if args.what in ("model", "all"):
            bench_model(args.model, args.image, args.repeats)
        if args.what in ("train", "all"):
            bench_train(args.dataset, args.source, args.batch_size, args.steps, args.rounds)
        if args.what in ("preprocess", "all"):
            if not Path(args.input).is_dir():
                raise FileNotFoundError(f"--input {args.input} is not a folder of images")
            bench_preprocess(args.input, args.images)
    except (ValueError, FileNotFoundError) as exc:  # our data, model and image errors are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
