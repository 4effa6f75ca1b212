"""Helpers of the server tests (tests/test_serve*.py): the real server on a loopback port, plain HTTP
requests to it, and a photo with several faces made from assets/astronaut.jpg."""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO_ROOT / "assets" / "astronaut.jpg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """Uvicorn serving `app` on a free loopback port, in a thread of this process; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Answer:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def request(base_url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> Answer:
    """One request on a connection of its own, with the standard library's client."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, dict]:
    """A multipart/form-data body with one file part, and its headers."""
    boundary = "c3ae-test-boundary-7d1f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def several_faces_photo():
    """A 1536x512 BGR photo of three faces: the astronaut, her mirror image, and her at 3/4 size on grey."""
    import cv2
    import numpy as np

    astronaut = cv2.imread(str(ASTRONAUT))
    small = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
    third = np.full((512, 512, 3), 128, np.uint8)
    third[64:448, 64:448] = small
    return np.hstack([astronaut, astronaut[:, ::-1], third])
