#!/usr/bin/env python
"""Serve C3AE over HTTP: the web page at / and the API, with the model loaded once.

  python nets/serve.py                                  # then open http://127.0.0.1:8000
  python nets/serve.py --host 0.0.0.0 --port 8080       # reachable from other machines too
  curl -H "Content-Type: image/jpeg" --data-binary @assets/astronaut.jpg http://127.0.0.1:8000/predict
  curl -F image=@assets/astronaut.jpg http://127.0.0.1:8000/predict

POST /predict (a photo: the raw body as image/..., or the multipart field 'image'), GET /health,
GET /model, GET /openapi.json (the API's description). Photos are never written to disk. With the default
.tflite model and YuNet nothing imports TensorFlow: the light install plus fastapi, uvicorn and
python-multipart is enough.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def parse_args(argv=None):
    from detect.detector import DEFAULT_DETECTOR, DETECTORS
    from nets.inference.predict import DEFAULT_MODEL
    from nets.inference.server import MAX_BODY_BYTES, QUEUE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=8000, help="default 8000; 0: any free port (the one taken is said)")
    p.add_argument("-m", "--model", default=str(DEFAULT_MODEL),
                   help=".keras or .tflite model (default: the shipped age + gender model)")
    p.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                   help=f"face detector (default {DEFAULT_DETECTOR}; mtcnn needs TensorFlow)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="photos computed at once, by threads sharing the model (default: one per CPU core, "
                        f"{os.cpu_count()} here)")
    p.add_argument("--queue", type=int, default=QUEUE,
                   help=f"requests that may wait for a thread; more at once are answered 503 (default {QUEUE})")
    p.add_argument("--max-upload-mb", type=float, default=MAX_BODY_BYTES / 1e6,
                   help=f"the largest upload accepted, in MB (default {MAX_BODY_BYTES / 1e6:g})")
    p.add_argument("--quiet", action="store_true", help="no line per request")
    args = p.parse_args(argv)
    if args.threads < 1 or args.queue < 0 or args.max_upload_mb <= 0:
        p.error("--threads must be at least 1, --queue at least 0 and --max-upload-mb above 0")
    if not 0 <= args.port <= 65535:  # uvicorn took 99999 as 34463 and said 99999
        p.error(f"--port must be between 0 and 65535, not {args.port}")
    return args


def listening_socket(host: str, port: int):
    """A socket bound to host:port and listening, or OSError saying why not; bound before the model loads,
    so that a port in use or an unknown host is said at once, and the address is announced only once it
    is taken."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def main(argv=None) -> int:
    args = parse_args(argv)
    import socket

    import uvicorn

    from detect import DetectorError
    from nets.inference.server import create_app
    from nets.network.contract import ModelFileError

    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:  # socket.gaierror too: an unknown host
        print(f"error: cannot listen on {args.host}:{args.port} ({(exc.strerror or str(exc)).lower()})",
              file=sys.stderr)
        return 2
    try:
        app = create_app(args.model, args.detector, threads=args.threads, queue=args.queue,
                         max_body_bytes=int(args.max_upload_mb * 1e6))
    except (ModelFileError, DetectorError) as exc:
        sock.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if sock.family == socket.AF_INET6 else args.host
    print(f"C3AE: open http://{shown}:{port}/ ({Path(args.model).name}, {args.detector}, {args.threads} "
          f"thread{'s' if args.threads > 1 else ''}); Ctrl-C stops", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, access_log=not args.quiet, log_level="info", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
