"""A page to try the model: draw a digit or drop a photo, and see the answer, each digit's ten probabilities and the
28x28 image(s) the model saw. `POST /predict` with an image as the body answers what `predict.py --json` prints.
The standard library's ThreadingHTTPServer serves it; the reading is predict.py's own pipeline."""
import argparse
import base64
import io
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

from pairs import DEFAULT_PAIR_CHECKPOINT, PairNet
from predict import DEFAULT_CHECKPOINT, json_row, model_or_exit, read_number
from preprocess import ImageError, digit_images, read_rgb

MAX_BODY = 20 * 1024 * 1024  # bytes: a phone photo is a few MB
PAGE = Path(__file__).resolve().parent / "page"
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}  # the only files served: no path reaches the disk


def png_data_url(image):
    """A float (28, 28) image in [0, 1] as a data: URL of a PNG, for the page to show."""
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.round(255 * image))).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def answer(model, body, with_images=False, pair_model=None):
    """(HTTP status, JSON object) for an image's bytes: predict.py --json's object, or its error object."""
    if not body:
        return HTTPStatus.BAD_REQUEST, {"path": "upload", "error": "empty request body; send an image file's bytes"}
    try:
        _, probs, images = read_number(model, digit_images(read_rgb(body)), pair_model)
    except ImageError as e:
        return HTTPStatus.UNPROCESSABLE_ENTITY, {"path": "upload", "error": str(e)}
    row = json_row("upload", probs)
    if with_images:  # for the page: what the model saw
        row["seen"] = [png_data_url(image) for image in images]
    return HTTPStatus.OK, row


class Handler(BaseHTTPRequestHandler):
    model = pair_model = None  # set by make_server
    server_version = "mnist-app"
    timeout = 60  # seconds a socket read may wait: a client that stops sending frees its thread

    def send_json(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status, message, headers=()):
        self.send_json(status, {"error": message}, headers)

    def do_GET(self):
        path = urlsplit(self.path).path
        if path not in STATIC:
            if path == "/predict":
                return self.send_error_json(HTTPStatus.METHOD_NOT_ALLOWED, "use POST with an image as the body",
                                            [("Allow", "POST")])
            return self.send_error_json(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        name, content_type = STATIC[path]
        data = (PAGE / name).read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/predict":
            return self.send_error_json(HTTPStatus.NOT_FOUND if url.path not in STATIC else
                                        HTTPStatus.METHOD_NOT_ALLOWED, f"POST only to /predict, not {url.path}")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self.send_error_json(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length")
        if length < 0:  # read(-1) would wait for the client to close the connection
            self.close_connection = True  # where the body ends is unknown
            return self.send_error_json(HTTPStatus.BAD_REQUEST, f"Content-Length is {length}: it must be 0 or more")
        if length > MAX_BODY:
            self.discard_body(length)
            return self.send_error_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                        f"the image is {length:,} bytes; at most {MAX_BODY:,} are read")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True  # the rest of the body may still come
            return self.send_error_json(HTTPStatus.REQUEST_TIMEOUT, f"the body stopped coming for {self.timeout} s "
                                        f"before its {length:,} bytes (Content-Length); send it whole")
        status, obj = answer(self.model, body, "images=1" in url.query, self.pair_model)
        self.send_json(status, obj)

    def discard_body(self, length, chunk=1 << 20):
        """Read a refused body and drop it, so that the client, still sending, gets the answer and not a broken
        pipe; past 4 times MAX_BODY, close the connection instead."""
        if length > 4 * MAX_BODY:
            self.close_connection = True
            return
        while length > 0:
            data = self.rfile.read(min(chunk, length))
            if not data:  # the client went away
                break
            length -= len(data)

    def refuse(self):
        self.send_error_json(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served here",
                             [("Allow", "GET, POST")])

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse

    def log_request(self, code="-", size="-"):  # quiet: a line per refused request only
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)


def make_server(model, host="127.0.0.1", port=8000, pair_model=None):
    """A ThreadingHTTPServer for MODEL and PAIR_MODEL (port 0: any free port); serve it with serve_forever()."""
    handler = type("ModelHandler", (Handler,), {"model": model, "pair_model": pair_model})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def port(text):
    """A TCP port number for argparse: 0 (any free port) to 65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network, take care)")
    p.add_argument("--port", type=port, default=8000, help="port to listen on")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint written by train.py")
    p.add_argument("--pair-checkpoint", default=str(DEFAULT_PAIR_CHECKPOINT),
                   help="checkpoint written by pairs.py: reads two digits written touching")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, pair_model = model_or_exit(args.checkpoint), model_or_exit(args.pair_checkpoint, PairNet)
    torch.set_num_threads(1)  # many small requests at once: one thread each beats threads fighting over cores
    try:
        server = make_server(model, args.host, args.port, pair_model)
    except OSError as e:
        sys.exit(f"error: cannot listen on {args.host}:{args.port} ({e.strerror}); try another --port")
    print(f"serving on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
