import contextlib
import io
import json
import tempfile
import unittest
from pathlib import Path

import benchmark

REPO = Path(__file__).resolve().parent.parent


def fake_run(acc, seconds):
    return {"test_acc": acc, "params": 100, "best_epoch": 1, "best_val_acc": 99.0, "total_seconds": sum(seconds),
            "history": [{"seconds": s} for s in seconds]}


class SummaryTest(unittest.TestCase):
    def test_spread_over_seeds(self):
        s = benchmark.summarise([fake_run(99.4, [2, 4]), fake_run(99.6, [3, 3]), fake_run(99.5, [1, 1])])
        self.assertAlmostEqual(s["test_acc_mean"], 99.5)
        self.assertEqual((s["test_acc_min"], s["test_acc_max"], s["runs"], s["epochs"]), (99.4, 99.6, 3, 2))
        self.assertAlmostEqual(s["test_acc_std"], 0.1)
        self.assertAlmostEqual(s["seconds_per_epoch_mean"], 14 / 6)
        self.assertEqual(s["total_seconds_max"], 6)


class MarkdownTest(unittest.TestCase):
    def test_table_shows_each_seed_the_summary_and_the_speed_ratios(self):
        runs = [fake_run(99.4, [2, 4]), fake_run(99.6, [3, 3])]
        speed = {"conventional_s": {0: 20.0, 2: 10.0}, "ours_s": 4.0, "inference_images_per_s": 12345.0}
        machine = {"cpu": "CPU", "threads": 2, "torch": "t", "torchvision": "tv", "python": "3"}
        table = benchmark.markdown(benchmark.summarise(runs), runs, [7, 8], speed, machine, "python benchmark.py")
        self.assertIn("| 7 | 99.40 |", table)
        self.assertIn("| 8 | 99.60 |", table)
        self.assertIn("mean 99.50%, min 99.40%, max 99.60%", table)
        self.assertIn("0 workers, batch 128, float32 | 20.0 | 5.0x |", table)
        self.assertIn("2 workers, batch 128, float32 | 10.0 | 2.5x |", table)
        self.assertIn("12,345 test images per second", table)


class BenchmarkRunTest(unittest.TestCase):
    def test_dry_run_end_to_end_writes_the_table(self):
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()) as stdout:
            benchmark.main(["--seeds", "1", "2", "--out-dir", out, "--skip-speed",
                            "--train-args", "--dry-run --epochs 2 --device cpu"])
            saved = json.loads((Path(out) / "benchmark.json").read_text())
            table = (Path(out) / "benchmark.md").read_text()
        self.assertEqual(saved["seeds"], [1, 2])
        self.assertEqual(len(saved["runs"]), 2)
        self.assertIn("| 1 |", table)
        self.assertIn("Command: `python benchmark.py --seeds 1 2 --out-dir", table)
        self.assertIn("over 2 seeds", stdout.getvalue())

    def test_conventional_pipeline_runs(self):
        self.assertGreater(benchmark.conventional_epoch_seconds(REPO / "data", 64, workers=0, max_batches=3), 0)


if __name__ == "__main__":
    unittest.main()
