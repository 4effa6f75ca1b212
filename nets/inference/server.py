"""The HTTP API and the web page: POST /predict, GET /health, GET /model, and the page at /.

    from nets.inference.server import create_app
    app = create_app()        # the shipped model and YuNet, loaded now; serve it with uvicorn
                              # (python nets/serve.py does)

The model is loaded once, by create_app. One AgeEstimator is shared by a fixed pool of threads (it
gives each thread its own detector and interpreter, so the threads use both cores); a request holds
a place from its first byte to its answer, and one that finds every place taken (the threads busy
and the queue full) is answered 503 at once: a flood costs neither unbounded memory nor unbounded
waiting. Threads, not uvicorn's worker processes: an answer costs the same CPU time either way
(`python nets/benchmark.py serve`), and threads keep one model in memory and one exact bound on the
queue. Photos are read into memory and never written to disk (nets/inference/upload.py). Every error
is JSON, {"detail": "one sentence"}, with its HTTP status.
With a .tflite model and YuNet nothing here imports TensorFlow.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from detect import DEFAULT_DETECTOR, ImageReadError, load_image
from detect.prepare import MAX_PIXELS, decode_image, megapixels
from nets.inference.predict import DEFAULT_MODEL, REPO_ROOT, AgeEstimator
from nets.network.contract import beside_model, file_sha256
from nets.inference.upload import IMAGE_FIELD, UploadError, megabytes, uploaded_photo

WEB = Path(__file__).resolve().parent / "web"  # the page: plain HTML, CSS and JavaScript, no build step
WARM_UP_PHOTO = REPO_ROOT / "assets" / "astronaut.jpg"
MAX_BODY_BYTES = 25_000_000  # a 50 MP camera JPEG (the pixel limit) is 10-25 MB
QUEUE = 32                   # requests that may wait for a thread; more at once are answered 503
READ_SECONDS = 30            # the longest an upload may take to arrive
# The page and its script come from this server only (nothing from the internet); the photo is shown
# from a blob: URL and the webcam's stream needs media from blob: or the camera itself.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class Face(BaseModel):
    """One face: exactly the record `nets/test.py --json` prints for it (FacePrediction.to_json());
    fields the library adds to that record (an age range) pass through as they are."""

    model_config = ConfigDict(extra="allow")
    box: list[float] = Field(description="x1, y1, x2, y2 in the image, pixels")
    score: float = Field(description="the detector's confidence")
    age: float
    gender: Literal["F", "M"] | None = Field(description="None for an age-only model")
    gender_prob: float | None = Field(description="the probability of that gender")
    landmarks: list[list[float]] = Field(description="eyes, nose, mouth corners: 5 x [x, y]")
    distribution: list[float] = Field(description="the two-point distribution over the age bins")
    warning: str | None = Field(None, description="why this face's answer is doubtful, where it is")


class ModelIdentity(BaseModel):
    name: str
    sha256: str


class Prediction(BaseModel):
    faces: list[Face] = Field(description="every face found, largest first")
    width: int = Field(description="of the image as decoded (EXIF orientation applied)")
    height: int
    model: ModelIdentity


class CardSummary(BaseModel):
    file: str
    lists_this_file: bool = Field(description="the card records this model file's SHA-256")
    variant: str | None
    bins: int | None
    trained_on: str | None = Field(description="the data sources, as the training command named them")
    faces_train: int | None
    faces_val: int | None
    validation_mae: float | None = Field(description="mean absolute error in years on the validation faces")
    validation_cs5: float | None = Field(description="share of validation faces within 5 years")


class ModelSummary(ModelIdentity):
    bytes: int
    detector: str
    outputs: list[str]
    card: CardSummary | None = Field(description="None where no NAME.card.json lies beside the model")


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    threads: int
    queue: int = Field(description="requests that may wait for a thread")
    requests_now: int = Field(description="requests being read, waiting or computed now")


class Error(BaseModel):
    detail: str = Field(description="what is wrong, in one sentence")


class ServerBusy(Exception):
    """Every thread is busy and the queue is full."""


class InferencePool:
    """`threads` threads running one AgeEstimator, and at most `queue` requests waiting for them.
    The places are counted on the event loop's thread only, so a plain integer is enough."""

    def __init__(self, estimator: AgeEstimator, threads: int, queue: int):
        self.estimator, self.threads, self.queue = estimator, threads, queue
        self.taken = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="c3ae-predict")

    def warm_up(self):
        """Each thread makes its detector and interpreter and runs them on a face now, so that no first
        request pays for it. The barrier holds every task until all have started, so each runs on a
        thread of its own."""
        barrier = threading.Barrier(self.threads)
        try:
            photo = load_image(WARM_UP_PHOTO)
        except ImageReadError:  # a copy of the code without its assets: the detector alone is warmed
            photo = np.zeros((64, 64, 3), np.uint8)

        def warm():
            barrier.wait(timeout=60)
            self.estimator.predict(photo)

        for task in [self._executor.submit(warm) for _ in range(self.threads)]:
            task.result()

    @contextlib.contextmanager
    def place(self):
        if self.taken >= self.threads + self.queue:
            raise ServerBusy
        self.taken += 1
        try:
            yield
        finally:
            self.taken -= 1

    async def run(self, function, *args):
        work = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:  # the request is given up, but its place is held until the thread is free
            await asyncio.wait([work])
            raise

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)


def card_path(model_path: Path) -> Path:
    """NAME.card.json for NAME.keras and for its exports NAME.KIND.tflite."""
    return beside_model(model_path, ".card.json")


def model_summary(model_path, detector: str, outputs) -> dict:
    """What GET /model answers: the model file, its outputs and the summary of its card."""
    path = Path(model_path)
    digest = file_sha256(path)
    summary = {"name": path.name, "sha256": digest, "bytes": path.stat().st_size, "detector": detector,
               "outputs": list(outputs), "card": None}
    card_file = card_path(path)
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError):  # no card beside this model, or one that cannot be read
        card = None
    if isinstance(card, dict):
        description, data, validation = card.get("description", {}), card.get("data", {}), card.get("validation", {})
        summary["card"] = {
            "file": card_file.name,
            "lists_this_file": card.get("files", {}).get(path.name, {}).get("sha256") == digest,
            "variant": description.get("variant"), "bins": description.get("bins"),
            "trained_on": data.get("source"), "faces_train": data.get("faces_train"),
            "faces_val": data.get("faces_val"), "validation_mae": validation.get("mae"),
            "validation_cs5": validation.get("cs5")}
    return summary


def status_of(error: ImageReadError) -> int:
    if error.reason.startswith("too large"):
        return 413
    if error.reason.startswith("empty"):
        return 400
    return 422


def json_error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


ERRORS = {400: {"model": Error, "description": "empty body, or a form without the field 'image'"},
          408: {"model": Error, "description": "the upload took too long to arrive"},
          413: {"model": Error, "description": "the upload is over the size limit, or the photo over the pixel limit"},
          415: {"model": Error, "description": "the Content-Type is neither image/... nor multipart/form-data"},
          422: {"model": Error, "description": "the upload is not a readable image (or a damaged one)"},
          503: {"model": Error, "description": "every thread busy and the queue full: try again in a moment"}}


def create_app(model_path=DEFAULT_MODEL, detector: str = DEFAULT_DETECTOR, threads: int | None = None,
               queue: int = QUEUE, max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS,
               read_seconds: float = READ_SECONDS) -> FastAPI:
    """The app, its model loaded and its threads ready. threads: how many photos are computed at
    once (default: one per CPU core); queue: how many more requests may wait for one."""
    threads = threads or os.cpu_count() or 1
    estimator = AgeEstimator(model_path, detector=detector)
    pool = InferencePool(estimator, threads, queue)
    pool.warm_up()
    summary = model_summary(model_path, detector, estimator.runner.outputs)
    identity = {"name": summary["name"], "sha256": summary["sha256"]}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.close()

    # GET /openapi.json describes the API; FastAPI's documentation pages are off, as they fetch their
    # scripts from the internet
    app = FastAPI(title="C3AE", summary="Age and gender of every face in a photo", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.pool = pool

    def answer(data, name: str) -> dict:
        """Runs on a pool thread: decoding and the model are the work that needs a core."""
        image = decode_image(data, name, max_pixels)
        faces = estimator.predict(image)
        return {"faces": [face.to_json() for face in faces], "width": image.shape[1], "height": image.shape[0],
                "model": identity}

    @app.post("/predict", response_model=Prediction, response_model_exclude_unset=True, responses=ERRORS,
              description=f"The photo as the raw body (Content-Type: image/...) or as the field '{IMAGE_FIELD}' "
                          f"of a multipart form; at most {megabytes(max_body_bytes)} and {megapixels(max_pixels)}.")
    async def predict(request: Request):
        with pool.place():
            data, name = await uploaded_photo(request, max_body_bytes, read_seconds)
            return await pool.run(answer, data, name)

    @app.get("/health", response_model=Health)
    async def health():
        return {"status": "ok", "model": summary["name"], "threads": pool.threads, "queue": pool.queue,
                "requests_now": pool.taken}

    @app.get("/model", response_model=ModelSummary)
    async def model():
        return summary

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: what `curl -I` asks
    async def page():
        return FileResponse(WEB / "index.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                          "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.exception_handler(UploadError)
    async def upload_error(request, error: UploadError):
        return json_error(error.status, error.detail)

    @app.exception_handler(ImageReadError)
    async def unreadable(request, error: ImageReadError):
        return json_error(status_of(error), str(error))

    @app.exception_handler(ServerBusy)
    async def busy(request, error):
        return json_error(503, f"the server is busy ({pool.threads + pool.queue} photos in progress or waiting): "
                               "try again in a moment", {"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error: StarletteHTTPException):
        if error.status_code == 404:
            detail = (f"there is nothing at {request.url.path}: the API has POST /predict, GET /health, "
                      "GET /model, GET /openapi.json, and the page at /")
        elif error.status_code == 405:
            detail = f"{request.method} is not accepted at {request.url.path}"
        else:
            detail = str(error.detail)
        return json_error(error.status_code, detail, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def failed(request, error: Exception):  # logged by the server too; it goes on serving
        return json_error(500, f"the server failed on this request ({type(error).__name__}: {error})")

    return app
