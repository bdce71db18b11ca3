import io
import json
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from repo import call_main, run_script, start_script  # noqa: I001 - first: it puts the repository on the path

import numpy as np
from PIL import Image

import app
from checkpoint import load_model
from pairs import DEFAULT_PAIR_CHECKPOINT, PairNet
from photo_pages import as_jpeg, page, stroke_digit
from predict import DEFAULT_CHECKPOINT

CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401 - only the browser test needs it (requirements-test.txt)
except ImportError:
    selenium = None


def drawn(digit, seed):
    """A digit drawn as on the page's pad: black strokes on a white 280x280 square, as PNG bytes."""
    ink = stroke_digit(digit, np.random.default_rng(seed))
    buffer = io.BytesIO()
    Image.fromarray(255 - ink).resize((280, 280), Image.Resampling.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def photographed(digit_images, seed):
    """MNIST digits on a photo-like page (shadow, JPEG), as JPEG bytes."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    as_jpeg(page(digit_images, rng, "shadow", (480, 360)), rng).convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def png_claiming(width, height):
    """A PNG whose header claims WIDTH x HEIGHT greyscale pixels, with a little compressed data: a decompression
    bomb's shape, made in no time."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100_000)) + \
        chunk(b"IEND", b"")


def start_server():
    """(server, its URL): app.py's server for the shipped models, serving on a free port in a thread."""
    model, _ = load_model(DEFAULT_CHECKPOINT)
    pair_model, _ = load_model(DEFAULT_PAIR_CHECKPOINT, net=PairNet)
    server = app.make_server(model, "127.0.0.1", 0, pair_model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stop_server(server):
    server.shutdown()
    server.server_close()


class ArgumentsTest(unittest.TestCase):
    def test_a_port_out_of_range_is_one_line(self):
        proc = call_main(app.main, "--port", "99999")  # the socket's own error was an OverflowError's traceback
        self.assertEqual(proc.returncode, 2)
        self.assertIn("argument --port: must be 0-65535 (0: any free port), got 99999", proc.stderr.splitlines()[-1])


class ServerTest(unittest.TestCase):
    """The HTTP API, against a server on a free port, as curl or the page use it."""

    @classmethod
    def setUpClass(cls):
        cls.server, cls.url = start_server()

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)

    def request(self, path, body=None, method=None, headers=None):
        """(status, JSON or bytes) of one request; a 4xx or 5xx answer is returned, not raised."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, data, kind = response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as e:
            status, data, kind = e.code, e.read(), e.headers["Content-Type"]
        return status, json.loads(data) if kind == "application/json" else data

    def assert_refused(self, status, expected_status, obj):
        self.assertEqual(status, expected_status, obj)
        self.assertIsInstance(obj, dict)
        self.assertIn("error", obj)
        self.assertNotIn("Traceback", obj["error"])

    def test_drawn_digits_are_read(self):
        for digit in range(10):
            with self.subTest(digit=digit):
                status, obj = self.request("/predict", drawn(digit, seed=digit))
                self.assertEqual(status, 200, obj)
                self.assertEqual(obj["number"], str(digit))

    def test_a_photographed_number_is_read_and_answers_what_predict_json_prints(self):
        from data import load_mnist
        _, _, images, labels = load_mnist()
        picks = [3, 2, 1, 0]
        body = photographed([images[i].numpy() for i in picks], seed=1)
        status, obj = self.request("/predict", body)
        self.assertEqual(status, 200, obj)
        self.assertEqual(obj["number"], "".join(str(int(labels[i])) for i in picks))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "photo.jpg"
            path.write_bytes(body)
            proc = run_script("predict.py", "--json", path)
        cli = json.loads(proc.stdout)
        self.assertEqual({**obj, "path": str(path)}, cli)  # the same object, but for the name of the file

    def test_the_page_asks_for_what_the_model_saw(self):
        status, obj = self.request("/predict?images=1", drawn(7, seed=70))
        self.assertEqual((status, obj["number"]), (200, "7"))
        self.assertEqual(len(obj["seen"]), 1)
        self.assertTrue(obj["seen"][0].startswith("data:image/png;base64,"))

    def test_the_page_is_served_from_the_repo(self):
        status, html = self.request("/")
        self.assertEqual(status, 200)
        self.assertIn(b'id="pad"', html)
        self.assertIn(b'id="answer"', html)
        self.assertNotIn(b"http", html.replace(b"http-equiv", b""))  # nothing fetched from elsewhere: works offline
        for path in ("/app.js", "/style.css"):
            self.assertEqual(self.request(path)[0], 200, path)

    def test_bad_input_gets_a_json_error_with_the_right_status(self):
        png = drawn(4, seed=4)
        bomb = png_claiming(50_000, 50_000)  # 2.5 billion pixels: 10 GB decoded
        cases = {
            "empty body": (self.request("/predict", b""), 400),
            "text": (self.request("/predict", b"this is not an image"), 422),
            "truncated image": (self.request("/predict", png[:len(png) // 2]), 422),
            "decompression bomb": (self.request("/predict", bomb), 422),
            "over 20 MB": (self.request("/predict", b"\0" * (app.MAX_BODY + 1)), 413),
            "blank page": (self.request("/predict", photographed([], seed=5)), 422),
            "GET /predict": (self.request("/predict"), 405),
            "PUT": (self.request("/predict", png, method="PUT"), 405),
            "DELETE": (self.request("/", method="DELETE"), 405),
            "unknown path": (self.request("/nothing-here"), 404),
            "POST elsewhere": (self.request("/upload", png), 404),
        }
        for name, ((status, obj), expected) in cases.items():
            with self.subTest(name):
                self.assert_refused(status, expected, obj)
        self.assertIn("no digit found", cases["blank page"][0][1]["error"])
        self.assertIn("decompression bomb", cases["decompression bomb"][0][1]["error"])
        self.assertEqual(self.request("/predict", png)[1]["number"], "4")  # and it still serves

    def raw_post(self, headers_and_body):
        """(status line and headers, body) of a POST sent byte for byte, read to its end: the server closes the
        connection."""
        with socket.create_connection(("127.0.0.1", self.server.server_address[1]), timeout=10) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: here\r\n" + headers_and_body)
            head, _, body = client.makefile("rb").read().partition(b"\r\n\r\n")
        return head, body

    def test_a_negative_content_length_is_refused_at_once(self):
        """read(-1) waits for the client to close: the answer never came."""
        head, body = self.raw_post(b"Content-Length: -1\r\n\r\nnot an image")
        self.assertRegex(head, rb"^HTTP/1\.[01] 400 ")
        self.assertEqual(json.loads(body), {"error": "Content-Length is -1: it must be 0 or more"})

    def test_a_body_shorter_than_its_content_length_times_out(self):
        """read(length) waited for bytes that never came, holding the connection and its thread for good."""
        handler = self.server.RequestHandlerClass
        self.assertIsNotNone(handler.timeout)  # the standard library's default: wait for ever
        handler.timeout, timeout = 0.5, handler.timeout  # as it would after app.Handler.timeout
        try:
            head, body = self.raw_post(b"Content-Length: 100\r\n\r\nten bytes.")
        finally:
            handler.timeout = timeout
        self.assertRegex(head, rb"^HTTP/1\.[01] 408 ")
        self.assertIn("stopped coming", json.loads(body)["error"])

    def test_path_traversal_reaches_no_file(self):
        import http.client
        for path in ("/../README.md", "/%2e%2e/app.py", "/..%2fapp.py", "/%2E%2E%2Fcheckpoint.py", "/page/../app.py",
                     "//etc/passwd", "/app.js/../../app.py"):
            with self.subTest(path):
                connection = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=30)
                connection.request("GET", path)  # as written: urllib would normalise it
                response = connection.getresponse()
                body = response.read()
                connection.close()
                self.assertEqual(response.status, 404, path)
                self.assertIn("error", json.loads(body))

    def test_eight_clients_at_once(self):
        """8 clients, 50 drawn digits each, against `python app.py` in its own process (the clients' threads would
        otherwise share the server's interpreter): every request answered, and right; the latency is printed."""
        bodies = [(d, drawn(d, seed=d)) for d in range(10)]  # the digits test_drawn_digits_are_read reads
        with socket.socket() as probe:  # a free port for the server
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = start_script("app.py", "--port", port)
        self.addCleanup(server.communicate)  # runs after the kill (last added, first run): reaps it, closes its pipes
        self.addCleanup(server.kill)
        self.assertIn("serving on http://127.0.0.1:", server.stdout.readline())
        url = f"http://127.0.0.1:{port}/predict"

        def client(k):
            results = []
            for i in range(50):
                digit, body = bodies[(k + i) % 10]
                start = time.perf_counter()
                with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as response:
                    number = json.loads(response.read())["number"]
                results.append((time.perf_counter() - start, number == str(digit)))
            return results
        with ThreadPoolExecutor(8) as pool:
            results = [r for rs in pool.map(client, range(8)) for r in rs]
        self.assertEqual(len(results), 400)
        self.assertTrue(all(ok for _, ok in results), f"{sum(not ok for _, ok in results)} of 400 wrong")
        latencies = sorted(1000 * t for t, _ in results)
        p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
        print(f"\n8 clients x 50 drawn digits: p50 {p50:.0f} ms, p95 {p95:.0f} ms", file=sys.stderr)


@unittest.skipUnless(selenium and CHROMIUM and CHROMEDRIVER,
                     "no headless Chromium here: install chromium and chromium-driver (Debian) and "
                     "pip install -r requirements-test.txt")
class BrowserTest(unittest.TestCase):
    """The page itself in headless Chromium: draw on #pad with pointer events, drop a photo, read #answer."""
    SCREENSHOT = None  # set to a path to keep the screenshot (tests/test_app.py --screenshot PATH)

    @classmethod
    def setUpClass(cls):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        cls.server, cls.url = start_server()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        cls.profile = tempfile.mkdtemp()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1000,800", f"--user-data-dir={cls.profile}"):
            options.add_argument(flag)
        cls.browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        stop_server(cls.server)
        shutil.rmtree(cls.profile, ignore_errors=True)

    def wait_for_answer(self, not_this="-"):
        from selenium.webdriver.support.ui import WebDriverWait
        answer = self.browser.find_element("id", "answer")
        WebDriverWait(self.browser, 20).until(lambda _: answer.text not in (not_this, "", "-"))
        return answer.text

    def test_draw_a_digit_then_drop_a_photo(self):
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.actions.action_builder import ActionBuilder
        from selenium.webdriver.common.actions.pointer_input import PointerInput
        self.browser.get(self.url + "/")
        pad = self.browser.find_element("id", "pad")
        self.browser.find_element("id", "clear").click()
        actions = ActionChains(self.browser)
        actions.w3c_actions = ActionBuilder(self.browser, mouse=PointerInput("pen", "pen"))  # a pen's pointer events
        stroke = [(-60, -90), (60, -90), (10, 0), (-20, 95)]  # a 7, in pixels from the pad's centre
        actions.w3c_actions.pointer_action.move_to(pad, *stroke[0]).pointer_down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for t in np.linspace(0.1, 1, 8):
                actions.w3c_actions.pointer_action.move_to(pad, int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0)))
        actions.w3c_actions.pointer_action.pointer_up()
        actions.perform()
        self.assertEqual(self.wait_for_answer(), "7")
        bars = self.browser.find_elements("css selector", ".bars .bar")
        self.assertEqual(len(bars), 10)
        seen = self.browser.find_element("css selector", ".digit img")
        self.assertTrue(seen.get_attribute("src").startswith("data:image/png"))
        self.assertTrue(self.browser.execute_script("return arguments[0].naturalWidth", seen) == 28)
        if self.SCREENSHOT:
            self.browser.save_screenshot(str(self.SCREENSHOT))

        from data import load_mnist
        _, _, images, labels = load_mnist()
        body = photographed([images[i].numpy() for i in (0, 1)], seed=3)
        expected = "".join(str(int(labels[i])) for i in (0, 1))
        self.browser.execute_script("""
            const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "photo.jpg", {type: "image/jpeg"}));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        """, __import__("base64").b64encode(body).decode())
        self.assertEqual(self.wait_for_answer(not_this="7"), expected)
        self.assertEqual(len(self.browser.find_elements("css selector", ".digit")), 2)


if __name__ == "__main__":
    if "--screenshot" in sys.argv:  # python tests/test_app.py --screenshot docs/app.png: the README's picture
        i = sys.argv.index("--screenshot")
        BrowserTest.SCREENSHOT = Path(sys.argv[i + 1]).resolve()
        del sys.argv[i:i + 2]
        sys.argv.append("BrowserTest")
    unittest.main()
