import contextlib
import io
import json
import re
import tempfile
import unittest
from pathlib import Path

from repo import call_main  # noqa: I001 - first: it puts the repository on the path

import torch

import evaluate
from checkpoint import load_model
from data import load_mnist, to_float
from predict import DEFAULT_CHECKPOINT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OTHER_CPU = 0.05  # points of test accuracy (5 of 10k images) that another CPU's arithmetic may flip


class ConfusionMatrixTest(unittest.TestCase):
    def test_counts(self):
        true, pred = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 2, 0])
        counts = evaluate.confusion_matrix(true, pred, classes=3)
        self.assertEqual(counts.tolist(), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


class ShippedCheckpointTest(unittest.TestCase):
    """The checkpoint in the repo loads into today's model.py and scores what its metrics.json claims."""

    @classmethod
    def setUpClass(cls):
        cls.model, cls.ckpt = load_model(DEFAULT_CHECKPOINT)
        _, _, images, cls.labels = load_mnist()
        cls.images = to_float(images, "cpu")
        cls.metrics = json.loads(DEFAULT_CHECKPOINT.with_name("metrics.json").read_text())

    def test_scores_at_least_99_4_on_the_real_test_set(self):
        acc = 100 * (evaluate.predict_labels(self.model, self.images) == self.labels).float().mean().item()
        self.assertGreaterEqual(acc, 99.4)
        self.assertAlmostEqual(acc, self.metrics["test_acc"], delta=OTHER_CPU)

    def test_is_the_checkpoint_its_run_chose(self):
        self.assertEqual(self.ckpt["metrics"], self.metrics["checkpoint"])

    def test_report_and_pictures(self):
        with tempfile.TemporaryDirectory() as out:
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                evaluate.main(["--out-dir", out])
            for name in ("training_curves.png", "confusion_matrix.png", "misclassified.png"):
                data = (Path(out) / name).read_bytes()
                self.assertTrue(data.startswith(PNG_MAGIC) and len(data) > 5000, name)
        report = stdout.getvalue()
        reported = float(re.search(r"^test accuracy: (\d+\.\d+)%", report, re.MULTILINE).group(1))
        self.assertAlmostEqual(reported, self.metrics["test_acc"], delta=OTHER_CPU)
        self.assertIn("per class: 0:", report)
        matrix_rows = [line for line in report.splitlines() if re.fullmatch(r"\s*\d(\s+\d+){10}", line)]
        self.assertEqual(len(matrix_rows), 10)
        self.assertEqual(sum(int(n) for row in matrix_rows for n in row.split()[1:]), 10000)

    def test_bad_arguments_are_one_line_before_the_work(self):
        with tempfile.TemporaryDirectory() as tmp:
            names = ("a_file", "not.json", "other.json", "out")
            a_file, not_json, no_history, out = (Path(tmp) / name for name in names)
            a_file.touch()
            not_json.write_text("nope")
            no_history.write_text('{"test_acc": 99.5}')
            advice = "give the run's metrics.json with --metrics"
            cases = [(["--out-dir", a_file], rf"cannot create --out-dir {a_file} \(.*\); choose another folder"),
                     (["--metrics", not_json, "--out-dir", out], rf"{not_json} cannot be read \(Expecting value: .*\); "
                                                                 f"{advice}"),
                     (["--metrics", no_history, "--out-dir", out], rf"{no_history} is not a metrics.json written by "
                                                                   rf"train.py \(no training history\); {advice}")]
            for args, message in cases:
                with self.subTest(args=args[:2]):
                    proc = call_main(evaluate.main, *args)
                    self.assertEqual(proc.returncode, 1)
                    self.assertRegex(proc.stderr, f"^error: {message}\n$")
                    self.assertEqual(proc.stdout, "")  # refused before the report
            self.assertFalse(out.exists())

if __name__ == "__main__":
    unittest.main()
