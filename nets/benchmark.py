#!/usr/bin/env python
"""Speed of C3AE on this machine, printed as tables (medians over repeats; ratios within one run).

  python nets/benchmark.py model   --keras-model model/c3ae_utk_asia_age_gender.keras   (the model alone)
  python nets/benchmark.py photo   (end to end per photo, per detector, 512x512 and 1920x1080)
  python nets/benchmark.py threads (one AgeEstimator shared by 1, 2 and 4 threads)
  python nets/benchmark.py serve   (nets/serve.py on loopback: requests/s and latency for 1, 4, 16 clients; memory)
  python nets/benchmark.py cli     (the one-photo command, start to exit)
  python nets/benchmark.py ranges  (what the age range and calibrated gender probability add per face)
  python nets/benchmark.py video   (frames per second and age flicker on a 640x480 still video)
  python nets/benchmark.py large   (seconds and peak memory on 12-50 MP photos)
  python nets/benchmark.py train   --dataset dataset/data --source utk
  python nets/benchmark.py preprocess --input ../shared/data/UTKFace --images 300
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


def bench_model(model_path, repeats):
    """The model alone, per face: Keras, and TFLite (LiteRT) exports of both forms of its weights."""
    import numpy as np

    from nets.training.export import convert
    from nets.network.model import describe, with_mirror
    from nets.inference.predict import KerasRunner
    from nets.inference.tflite import TFLiteModel

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
    table(f"Model time per face ({Path(model_path).name}, Keras rows: the file as it is; TFLite run by LiteRT)",
          ["how", "ms per face"], rows)


def wide_photo(image, size=(1920, 1080)):
    """A size[0] x size[1] photo with the one face of `image`: the image scaled to the height, in
    the middle of a stretched copy of itself (no flat border for a detector to notice)."""
    import cv2

    width, height = size
    canvas = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    side = min(width, height)
    left = (width - side) // 2
    canvas[:, left:left + side] = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    return canvas


def bench_photo(model_path, keras_model_path, image_path, repeats, detectors=("yunet", "mtcnn")):
    """End to end per photo, step by step, for each detector, on the photo and a 1920x1080 version."""
    from detect import load_image, make_detector
    from detect.prepare import prepare_detection
    from nets.inference.predict import AgeEstimator

    photo = load_image(image_path)
    photos = [(f"{photo.shape[1]}x{photo.shape[0]}", photo), ("1920x1080", wide_photo(photo))]
    paths = [("YuNet + " + Path(model_path).name + " (default)", "yunet", model_path),
             ("MTCNN + " + Path(model_path).name, "mtcnn", model_path),
             ("MTCNN + " + Path(keras_model_path).name + " (before: the old default path)", "mtcnn", keras_model_path)]
    paths = [path for path in paths if path[1] in detectors]
    estimators = {}
    for name, detector, model in paths:
        estimators[name] = AgeEstimator(model, detector=make_detector(detector))
    rows = []
    for size, image in photos:
        totals = {}
        for name, _, _ in paths:
            estimator = estimators[name]
            steps = {"detect": [], "prepare": [], "model": []}

            def one_photo():  # AgeEstimator.predict step by step, each step timed in the same call
                start = time.perf_counter()
                detections = estimator.detector.detect(image)
                middle = time.perf_counter()
                faces = [prepare_detection(image, d) for d in detections]
                end = time.perf_counter()
                estimator.predict_prepared(faces)
                for key, seconds in zip(steps, (middle - start, end - middle, time.perf_counter() - end)):
                    steps[key].append(seconds)
                return faces

            one_photo()
            for values in steps.values():
                values.clear()
            found = len(one_photo())
            for _ in range(repeats - 1):
                one_photo()
            total = statistics.median(sum(parts) for parts in zip(*steps.values()))
            totals[name] = total
            rows.append([f"{size}, {name}", found] + [f"{statistics.median(steps[k]) * 1e3:.1f}" for k in steps]
                        + [f"{total * 1e3:.1f}"])
        before = totals[paths[-1][0]] if "mtcnn" in detectors else None  # the old default path is the last
        for row, (name, _, _) in zip(rows[-len(paths):], paths):
            row.append(f"{before / totals[name]:.1f}x" if before else "-")
    table(f"End to end per photo ({Path(image_path).name} and a 1920x1080 version of it; {repeats} calls per "
          "row, each step timed within the call; medians; photos above 1280 px are detected on a 1280 px copy)",
          ["photo, detector + model", "faces", "detect ms", "align, JPEG, triple box, pose ms", "crops + model ms",
           "total ms", "speed-up vs before"], rows)


def default_path(model_path) -> tuple[str, list]:
    """How the tables name nets/test.py's default path, and its -m flag when --model replaces the model."""
    if model_path is None:
        return "default: YuNet + .tflite", []
    return f"YuNet + {Path(model_path).name}", ["-m", str(model_path)]


def bench_cli(image_path, keras_model_path, repeats, detectors=("yunet", "mtcnn"), model_path=None):
    """Wall time of the one-photo command, start to exit, as a user runs it."""
    rows = []
    name, flag = default_path(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        commands = [("nets/test.py -h", ["-h"]),
                    (f"nets/test.py -i PHOTO --json --no-show ({name})",
                     ["-i", str(image_path), "--json", "--no-show", "-o", f"{tmp}/a.jpg", *flag]),
                    (f"the same with -m {Path(keras_model_path).name} --detector mtcnn (before)",
                     ["-i", str(image_path), "--json", "--no-show", "-o", f"{tmp}/b.jpg", "-m", str(keras_model_path),
                      "--detector", "mtcnn"])]
        if "mtcnn" not in detectors:
            commands = commands[:-1]
        times = {}
        for name, args in commands:
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                subprocess.run([sys.executable, str(REPO / "nets" / "test.py"), *args], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                runs.append(time.perf_counter() - start)
            times[name] = statistics.median(runs)
            rows.append([name, f"{times[name]:.2f}", f"{min(runs):.2f}-{max(runs):.2f}"])
    before = times[commands[-1][0]]  # the old default path, or the default one
    for row in rows:
        row.append(f"{before / times[row[0]]:.1f}x")
    table(f"One command, start to exit ({repeats} runs each, in turn; seconds)", ["command", "median s", "range",
                                                                                 "vs before"], rows)


def large_photos(image, folder: Path) -> dict:
    """Photos a camera makes, with the one face of `image` and without: 12 MP, 48 MP with no face,
    50 MP, and a 10000x50 strip. Written as JPEG quality 90 into folder."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    photos = {"12 MP (4000x3000), one face": wide_photo(image, (4000, 3000)),
              "48 MP (8000x6000), no face": cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (8000, 6000),
                                                       interpolation=cv2.INTER_CUBIC),
              "50 MP (8660x5773), one face": wide_photo(image, (8660, 5773)),
              "10000x50 strip": cv2.resize(image, (10000, 50), interpolation=cv2.INTER_AREA)}
    paths = {}
    for k, (name, photo) in enumerate(photos.items()):
        paths[name] = folder / f"photo{k}.jpg"
        cv2.imwrite(str(paths[name]), photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def bench_large(image_path, detectors=("yunet", "mtcnn")):
    """nets/test.py -i on large photos, per detector: seconds start to exit and peak memory."""
    from detect import load_image

    # nets/test.py run as __main__ in a fresh interpreter that reports its own peak memory: VmHWM of
    # /proc/self/status starts anew at exec (ru_maxrss would count the pages this process had at fork)
    wrapper = ("import runpy, sys; sys.argv = sys.argv[1:]\n"
               "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
               "except SystemExit:\n    pass\n"
               "peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
               "print('peak_kb', peak, file=sys.stderr)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in large_photos(load_image(image_path), Path(tmp)).items():
            for detector in detectors:
                start = time.perf_counter()
                result = subprocess.run([sys.executable, "-c", wrapper, str(REPO / "nets" / "test.py"), "-i", str(path),
                                         "--json", "--no-show", "-o", f"{tmp}/out.jpg", "--detector", detector],
                                        capture_output=True, text=True)
                seconds = time.perf_counter() - start
                peak = int(result.stderr.rsplit("peak_kb", 1)[1].split()[0]) / 1024
                rows.append([name, detector, len(result.stdout.splitlines()), f"{seconds:.1f}", f"{peak:.0f}"])
    table("Large photos: nets/test.py -i PHOTO --json --no-show, start to exit (photos above 1280 px are detected "
          "on a 1280 px copy and aligned from the full photo)", ["photo", "detector", "faces", "seconds", "peak MB"], rows)


def still_video(image, path, frames=150, size=(640, 480), fps=30.0, seed=0):
    """A video of a still scene (the face of `image` on a 640x480 frame) with what a still camera
    adds: sensor noise (sigma 2 grey levels) and sub-pixel shifts (up to 0.5 px)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = size
    scene = wide_photo(image, size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write an mp4v video here")
    for _ in range(frames):
        shift = np.float32([[1, 0, rng.uniform(-0.5, 0.5)], [0, 1, rng.uniform(-0.5, 0.5)]])
        frame = cv2.warpAffine(scene, shift, size, borderMode=cv2.BORDER_REFLECT)
        noisy = frame.astype(np.float32) + rng.normal(0, 2.0, frame.shape)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()


def bench_video(image_path, keras_model_path, detectors=("yunet", "mtcnn"), model_path=None):
    """Frames per second of nets/test.py -v on a 640x480 still video with one face, and the flicker:
    the spread of that person's age over the frames, each frame on its own and averaged per track."""
    import re

    import numpy as np

    from detect import load_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "still.mp4"
        still_video(load_image(image_path), video)
        name, flag = default_path(model_path)
        runs = [(f"{name}, --smooth 15", flag), (f"{name}, --smooth 1 (no averaging)", [*flag, "--smooth", "1"]),
                (f"-m {Path(keras_model_path).name} --detector mtcnn (before)",
                 ["-m", str(keras_model_path), "--detector", "mtcnn", "--smooth", "1"])]
        runs = [run for run in runs if "mtcnn" in detectors or "mtcnn" not in run[1]]
        for name, extra in runs:
            result = subprocess.run([sys.executable, str(REPO / "nets" / "test.py"), "-v", str(video), "--no-show",
                                     "--json", *extra], check=True, capture_output=True, text=True)
            fps = float(re.search(r"([\d.]+) frames per second", result.stderr).group(1))
            ages = np.array([json.loads(line)["age"] for line in result.stdout.splitlines() if line.strip()])
            rows.append([name, len(ages), f"{fps:.1f}", f"{ages.max() - ages.min():.2f}", f"{ages.std():.2f}"])
    table("Video: nets/test.py -v on a 640x480 still video of one face (150 frames, sensor noise and sub-pixel "
          "shifts; frames per second as the command prints it, model loading excluded; age spread = max - min "
          "over the frames)", ["run", "faces", "frames per second", "age spread (years)", "age std (years)"], rows)


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

    from nets.training.augment import AugmentConfig
    from nets.training.data import as_inputs, face_crops, load_rows, make_dataset, targets
    from nets.network.model import build_c3ae
    from nets.training.train import TrainConfig, compile_model

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


def bench_preprocess(input_dir, images, detectors=("yunet", "mtcnn")):
    """dataset_proc.py --source utk on the same images, per detector, with 1 and 2 workers."""
    import os

    files = sorted(Path(input_dir).iterdir())[:images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for f in files:
            os.symlink(f.resolve(), src / f.name)
        for detector in detectors:
            for workers in (1, 2):
                out = Path(tmp) / f"out{detector}{workers}"
                start = time.perf_counter()
                subprocess.run([sys.executable, str(REPO / "preprocessing" / "dataset_proc.py"), "--source", "utk",
                                "-i", str(src), "-d", str(out), "--workers", str(workers), "--no-progress",
                                "--detector", detector], check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                seconds = time.perf_counter() - start
                summary = json.loads((out / "utk_summary.json").read_text())
                rows.append([detector, workers, len(files), summary["faces_written"], f"{seconds:.1f}",
                             f"{len(files) / seconds:.2f}"])
    base = float(rows[-1][5])  # the last: MTCNN with 2 workers, the way it was run before (or the one detector's)
    for row in rows:
        row.append(f"{float(row[5]) / base:.2f}x")
    table(f"Preprocessing (dataset_proc.py --source utk, {len(files)} UTKFace images, process start included)",
          ["detector", "workers", "images", "faces", "seconds", "images/s", f"vs {rows[-1][0]}, 2 workers"], rows)


def bench_threads(model_path, image_path, calls: int = 200):
    """Photos per second of one AgeEstimator shared by 1, 2 and 4 threads: its own way (a YuNet
    detector and a LiteRT interpreter per thread) against one detector and one interpreter shared
    behind their locks."""
    from concurrent.futures import ThreadPoolExecutor

    from detect import load_image, make_detector
    from nets.inference.predict import AgeEstimator, load_model_file

    photo = load_image(image_path)
    ways = {"per thread (the default)": AgeEstimator(model_path),
            "one lock each (shared detector and interpreter)": AgeEstimator(load_model_file(model_path),
                                                                           detector=make_detector("yunet"))}
    rows, base = [], None
    for threads in (1, 2, 4):
        for name, estimator in ways.items():
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda k: estimator.predict(photo), range(4 * threads)))  # every thread warm
                start = time.perf_counter()
                list(pool.map(lambda k: estimator.predict(photo), range(calls)))
                rate = calls / (time.perf_counter() - start)
            base = base or rate
            rows.append([threads, name, f"{rate:.1f}", f"{rate / base:.2f}x"])
    table(f"one AgeEstimator shared by threads, {Path(image_path).name}, {calls} calls per row",
          ["threads", "how", "photos per second", "vs 1 thread, per thread"], rows)



def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model_path, threads: int, queue: int = 64):
    """nets/serve.py on a free loopback port, as a user starts it; (process, port) once /health answers."""
    import urllib.request

    port = free_port()
    log = tempfile.TemporaryFile("w+")  # the server's messages, read back if it does not start
    process = subprocess.Popen([sys.executable, str(REPO / "nets" / "serve.py"), "--port", str(port), "--quiet",
                                "-m", str(model_path), "--threads", str(threads), "--queue", str(queue)],
                               stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    log.seek(0)
    said = [line for line in log.read().splitlines() if line.strip()]
    raise RuntimeError(f"nets/serve.py did not start on port {port}" + (f": {said[-1]}" if said else ""))


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from /proc: VmRSS now, or VmHWM, its peak."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1]) / 1024


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used, all its threads, user and system (/proc/PID/stat)."""
    import os

    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_photos(ports, photo: bytes, clients: int, count: int, seconds: float):
    """`count` POST /predict of one photo by `clients` threads, each on its own kept-alive connection to
    ports[k % len(ports)], stopping early after `seconds`: (latencies of the 200s, statuses, wall seconds)."""
    import http.client
    import threading
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    lock, sent, latencies, statuses = threading.Lock(), [0], [], Counter()
    deadline = time.monotonic() + seconds

    def client(k):
        connection = http.client.HTTPConnection("127.0.0.1", ports[k % len(ports)], timeout=60)
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= count:
                    break
                sent[0] += 1
            start = time.perf_counter()
            connection.request("POST", "/predict", photo, {"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            took = time.perf_counter() - start
            with lock:
                statuses[response.status] += 1
                if response.status == 200:
                    latencies.append(took)
        connection.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return latencies, statuses, time.perf_counter() - start


def first_answer_on_the_page(port, image_path) -> float | None:
    """Seconds from choosing the photo on the page to its faces drawn, in headless Chromium; None
    where Playwright or /usr/bin/chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").is_file():
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        start = time.perf_counter()
        page.set_input_files("#file", str(image_path))
        page.wait_for_selector("#canvas[data-faces]", timeout=30_000)
        seconds = time.perf_counter() - start
        browser.close()
    return seconds


def bench_serve(model_path, image_path, requests: int = 150, rounds: int = 3, seconds: float = 60,
                memory_requests: int = 1000):
    """nets/serve.py on loopback: requests per second and latency for 1, 4 and 16 clients, for each way of
    using both cores (the ways take turns, `rounds` times, so that a busy spell of the machine hits them
    alike); the default server's memory over `memory_requests` requests; the page's first answer."""
    import os
    from collections import Counter

    import numpy as np

    photo = Path(image_path).read_bytes()
    ways = {"1 thread": (1, 1), "2 threads sharing one AgeEstimator (the default)": (2, 1),
            "2 processes of 1 thread, clients split between them": (1, 2)}
    servers = {name: [start_server(model_path, threads) for _ in range(processes)]
               for name, (threads, processes) in ways.items()}
    runs = {}  # (way, clients): [(answers' latencies, statuses, wall seconds, server CPU seconds) per round]
    try:
        for name, started in servers.items():
            post_photos([port for _, port in started], photo, 2 * len(started), 10 * len(started), seconds)  # warm
        for _ in range(rounds):
            for clients in (1, 4, 16):
                for name, started in servers.items():
                    cpu = sum(cpu_seconds(process.pid) for process, _ in started)
                    run = post_photos([port for _, port in started], photo, clients, requests, seconds)
                    cpu = sum(cpu_seconds(process.pid) for process, _ in started) - cpu
                    runs.setdefault((name, clients), []).append((*run, cpu))
    finally:
        for started in servers.values():
            for process, _ in started:
                process.terminate()
                process.wait(timeout=30)
    rows = []
    for clients in (1, 4, 16):
        base = statistics.median(len(lat) / wall for lat, _, wall, _ in runs["1 thread", clients])
        for name in ways:
            measured = runs[name, clients]
            rate = statistics.median(len(lat) / wall for lat, _, wall, _ in measured)
            cpu = statistics.median(cpu / max(1, len(lat)) for lat, _, _, cpu in measured)
            latencies = [t for lat, _, _, _ in measured for t in lat]
            statuses = sum((st for _, st, _, _ in measured), Counter())
            others = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()) if s != 200) or "-"
            rows.append([name, clients, f"{rate:.1f}", f"{rate / base:.2f}x", f"{np.median(latencies) * 1e3:.0f}",
                         f"{np.percentile(latencies, 95) * 1e3:.0f}", f"{cpu * 1e3:.1f}", others])
    table(f"nets/serve.py on loopback: POST /predict of {Path(image_path).name} (raw JPEG, {len(photo) // 1000} KB) by "
          f"clients on kept-alive connections, {requests} requests per run, {rounds} runs per row taking turns with "
          "the other rows (requests/s: the median run; latencies: all answers); the clients run on the same cores",
          ["server", "clients", "requests/s", "vs 1 thread", "median ms", "95th percentile ms",
           "server CPU ms per answer", "other statuses"], rows)

    process, port = start_server(model_path, os.cpu_count() or 1)
    try:
        page = first_answer_on_the_page(port, image_path)  # the server's first photo
        post_photos([port], photo, 4, 50, seconds)
        before = resident_mb(process.pid)
        _, statuses, wall = post_photos([port], photo, 4, memory_requests, 10 * seconds)
        after, peak = resident_mb(process.pid), resident_mb(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.wait(timeout=30)
    table(f"The default server's memory over {memory_requests} more requests (4 clients, after 50 to warm up)",
          ["answers", "seconds", "memory before MB", "after MB", "growth MB", "peak MB"],
          [[statuses[200], f"{wall:.0f}", f"{before:.0f}", f"{after:.0f}", f"{after - before:+.1f}", f"{peak:.0f}"]])
    table("The page (headless Chromium, the server's first photo): choosing the photo to its faces drawn",
          ["photo", "seconds"],
          [[Path(image_path).name, "skipped: needs playwright and /usr/bin/chromium" if page is None else f"{page:.2f}"]])


def bench_ranges(model_path, image_path, repeats):
    """What the age range and the calibrated gender probability add per face (AgeEstimator.calibrate_answers,
    numpy on the model's outputs), and predict_prepared with and without them, in the same run."""
    import copy

    import numpy as np

    from detect import load_image, prepare_faces
    from nets.inference.predict import AgeEstimator

    estimator = AgeEstimator(model_path)
    if estimator.calibration is None:
        raise ValueError(f"{estimator.calibration_note}; nothing to time")
    faces = prepare_faces(load_image(image_path), estimator.detector)[:1]
    if not faces:
        raise ValueError(f"no face in {image_path}")
    rows = []
    for count in (1, 32):
        out = estimator.runner.predict_crops(np.repeat(np.stack([faces[0].crops()]), count, axis=0))
        t = median_seconds(lambda: estimator.calibrate_answers(copy.copy(out)), repeats * 50)
        rows.append([f"range + gender probability alone, batch of {count}", f"{t / count * 1e3:.4f}"])
    calibration = estimator.calibration
    for name, used in (("predict_prepared, 1 face, calibrated", calibration), ("predict_prepared, 1 face, without", None)):
        estimator.calibration = used
        t = median_seconds(lambda: estimator.predict_prepared(faces), repeats * 10)
        rows.append([name, f"{t * 1e3:.4f}"])
    estimator.calibration = calibration
    table(f"Age range and calibrated gender probability ({Path(model_path).name}, {calibration.method})",
          ["step", "ms per face"], rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("model", "photo", "threads", "serve", "ranges", "cli", "video", "large", "train",
                                    "preprocess", "all"))
    p.add_argument("--model", default=None, help="the model of the default path (default: nets/test.py's)")
    p.add_argument("--keras-model", default=str(REPO / "model" / "c3ae_utk_asia_age_gender.keras"),
                   help="the .keras model: timed alone, and the model of the path before YuNet and .tflite")
    p.add_argument("--image", default=str(REPO / "assets" / "astronaut.jpg"))
    p.add_argument("--dataset", default="dataset/data")
    p.add_argument("--source", default="utk")
    p.add_argument("--input", default=str(REPO.parent / "shared" / "data" / "UTKFace"))
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="train: epochs per feed, taking turns")
    p.add_argument("--requests", type=int, default=150, help="serve: requests per run (3 runs per row)")
    p.add_argument("--memory-requests", type=int, default=1000, help="serve: requests over which memory is watched")
    p.add_argument("--detector", choices=("yunet", "mtcnn", "both"), default="both",
                   help="photo, cli, video, large, preprocess: time only this detector's path (default: both; "
                        "the rows of the path before, with MTCNN, need mtcnn)")
    args = p.parse_args(argv)
    import os
    print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}; "
          f"load average before the run {os.getloadavg()[0]:.2f} (above ~0.3 another process is busy)")
    from nets.inference.predict import DEFAULT_MODEL

    model = args.model or str(DEFAULT_MODEL)
    detectors = ("yunet", "mtcnn") if args.detector == "both" else (args.detector,)
    try:
        for path in (model, args.keras_model, args.image):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} not found")
        if args.what in ("model", "all"):
            bench_model(args.keras_model, args.repeats)
        if args.what in ("photo", "all"):
            bench_photo(model, args.keras_model, args.image, args.repeats, detectors)
        if args.what in ("ranges", "all"):
            bench_ranges(model, args.image, args.repeats)
        if args.what in ("threads", "all"):
            bench_threads(model, args.image)
        if args.what in ("serve", "all"):
            bench_serve(model, args.image, args.requests, memory_requests=args.memory_requests)
        if args.what in ("cli", "all"):
            bench_cli(args.image, args.keras_model, max(3, args.repeats // 4), detectors, args.model)
        if args.what in ("video", "all"):
            bench_video(args.image, args.keras_model, detectors, args.model)
        if args.what in ("large", "all"):
            bench_large(args.image, detectors)
        if args.what in ("train", "all"):
            bench_train(args.dataset, args.source, args.batch_size, args.steps, args.rounds)
        if args.what in ("preprocess", "all"):
            if not Path(args.input).is_dir():
                raise FileNotFoundError(f"--input {args.input} is not a folder of images")
            bench_preprocess(args.input, args.images, detectors)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # our data, model and image errors are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
