import json
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from checkpoint import load_model
from data import load_mnist
from predict import DEFAULT_CHECKPOINT, ImageError, mnist_style, predict_images, read_grey

REPO = Path(__file__).resolve().parent.parent
SAMPLE = range(0, 10000, 50)  # 200 test digits, all classes


def run_predict(*args):
    return subprocess.run([sys.executable, "predict.py", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def person_style(digit, rng, dark_ink=True):
    """An MNIST digit as a person might photograph it: scaled up, off-centre on a bigger noisy page."""
    scale = int(rng.integers(3, 7))
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), np.float32)
    h, w = int(rng.integers(200, 320)), int(rng.integers(200, 320))
    page = np.zeros((h, w), np.float32)
    top, left = int(rng.integers(0, h - big.shape[0])), int(rng.integers(0, w - big.shape[1]))
    page[top:top + big.shape[0], left:left + big.shape[1]] = big
    page = page + rng.normal(0, 8, page.shape)  # sensor noise
    if dark_ink:
        page = 235 - page * 0.8  # grey paper, dark ink
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))


class PreprocessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model, _ = load_model(DEFAULT_CHECKPOINT)
        _, _, images, labels = load_mnist(REPO / "data")
        cls.digits, cls.labels = images[list(SAMPLE)].numpy(), labels[list(SAMPLE)].tolist()

    def test_an_mnist_image_passes_nearly_unchanged(self):
        diffs = [np.abs(mnist_style(Image.fromarray(d)) - d / 255).mean() for d in self.digits]
        self.assertLess(np.median(diffs), 0.02)
        self.assertLess(np.mean(diffs), 0.04)

    def test_person_style_images_are_read_right(self):
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            for i, (digit, label) in enumerate(zip(self.digits, self.labels)):
                img = person_style(digit, rng, dark_ink=i % 4 != 0).convert("RGB")  # 1 in 4 light on dark
                img.save(Path(tmp) / f"{i:03d}_{label}.jpg", quality=70)
            proc = run_predict("--json", tmp)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        self.assertEqual(len(rows), len(self.labels))
        right = sum(r["digit"] == int(Path(r["path"]).stem.split("_")[1]) for r in rows)
        self.assertGreaterEqual(right / len(rows), 0.97, f"{right} of {len(rows)}")
        for r in rows:
            self.assertAlmostEqual(sum(r["probabilities"]), 1, places=3)
            self.assertEqual(r["confidence"], max(r["probabilities"]))

    def test_image_modes(self):
        digit, label = self.digits[0], self.labels[0]
        dark = Image.fromarray(255 - digit)
        rgba = Image.new("RGBA", (28, 28), (0, 0, 0, 0))
        rgba.putalpha(Image.fromarray(digit))  # black ink drawn on a transparent sheet
        images = {"L": dark, "RGB": dark.convert("RGB"), "RGBA": rgba, "P": dark.convert("P"),
                  "I;16": Image.fromarray(digit.astype(np.uint16) * 257)}
        with tempfile.TemporaryDirectory() as tmp:
            for mode, img in images.items():
                with self.subTest(mode=mode):
                    path = Path(tmp) / f"{mode.replace(';', '')}.png"
                    img.save(path)
                    prepared = mnist_style(read_grey(path))
                    self.assertLess(np.abs(prepared - mnist_style(dark)).max(), 0.02)  # same digit, whatever the mode
                    probs = predict_images(self.model, [prepared])[0]
                    self.assertEqual(int(probs.argmax()), label)

    def test_blank_image_is_an_error(self):
        with self.assertRaisesRegex(ImageError, "no digit"):
            mnist_style(Image.new("L", (50, 50), 255))


class PredictCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        _, _, images, labels = load_mnist(REPO / "data")
        Image.fromarray(255 - images[0].numpy()).save(self.dir / "seven.png")
        self.label = int(labels[0])

    def test_bad_files_are_reported_one_by_one(self):
        (self.dir / "empty.png").write_bytes(b"")
        (self.dir / "notes.txt").write_text("not an image")
        good = (self.dir / "seven.png").read_bytes()
        (self.dir / "truncated.png").write_bytes(good[:len(good) // 2])
        proc = run_predict("--json", self.dir, self.dir / "missing.png")
        self.assertEqual(proc.returncode, 1)
        rows = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
        self.assertEqual(set(rows), {"empty.png", "notes.txt", "truncated.png", "seven.png", "missing.png"})
        self.assertEqual(rows["seven.png"]["digit"], self.label)
        for name in ("empty.png", "notes.txt", "truncated.png", "missing.png"):
            self.assertIn("error", rows[name])
        self.assertIn("no such file", rows["missing.png"]["error"])
        self.assertNotIn("Traceback", proc.stderr)

    def test_plain_output(self):
        proc = run_predict(self.dir / "seven.png")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, rf"seven\.png: {self.label} \(\d+\.\d%\)")

    def test_bad_checkpoint_is_one_line(self):
        (self.dir / "bad.pt").write_text("nope")
        proc = run_predict("--checkpoint", self.dir / "bad.pt", self.dir / "seven.png")
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr.strip(), r"^error: checkpoint .*bad\.pt cannot be read[^\n]*$")

    def test_export_to_onnx_matches_pytorch(self):
        proc = run_predict("--export", self.dir / "model.onnx")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("match PyTorch", proc.stdout)
        import onnxruntime
        session = onnxruntime.InferenceSession(str(self.dir / "model.onnx"), providers=["CPUExecutionProvider"])
        model, _ = load_model(DEFAULT_CHECKPOINT)
        x = torch.rand(33, 1, 28, 28)  # another batch size than the export's example
        (logits,) = session.run(None, {"images": x.numpy()})
        with torch.inference_mode():
            np.testing.assert_allclose(logits, model(x).numpy(), atol=1e-4)


if __name__ == "__main__":
    unittest.main()
