import contextlib
import io
import json
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from repo import call_main  # noqa: I001 - first: it puts the repository on the path

import torch

import benchmark
from data import DATA_DIR, load_mnist, to_float
from model import count_parameters


def fake_run(acc, seconds):
    return {"test_acc": acc, "params": 100, "best_epoch": 1,
            "checkpoint": {"rule": "the mean of epochs 1-2", "val_acc": 99.0}, "total_seconds": sum(seconds),
            "seconds_to_test_score": sum(seconds) - 0.5, "history": [{"seconds": s} for s in seconds]}


class SummaryTest(unittest.TestCase):
    def test_spread_over_seeds(self):
        s = benchmark.summarise([fake_run(99.4, [2, 4]), fake_run(99.6, [3, 3]), fake_run(99.5, [1, 1])])
        self.assertAlmostEqual(s["test_acc_mean"], 99.5)
        self.assertEqual((s["test_acc_min"], s["test_acc_max"], s["runs"], s["epochs"]), (99.4, 99.6, 3, 2))
        self.assertAlmostEqual(s["test_acc_std"], 0.1)
        self.assertAlmostEqual(s["seconds_per_epoch_mean"], 14 / 6)
        self.assertEqual(s["total_seconds_max"], 6)
        self.assertAlmostEqual(s["seconds_to_test_score_mean"], 14 / 3 - 0.5)


class MarkdownTest(unittest.TestCase):
    def test_table_shows_each_precision_and_seed_the_summary_and_the_speed_ratios(self):
        bf16, fp32 = [fake_run(99.4, [2, 4]), fake_run(99.6, [3, 3])], [fake_run(99.5, [5, 5]), fake_run(99.7, [5, 5])]
        speed = {"ours_precision": "bf16", "ours_total_s": 6.0, "ours_epoch_s": 3.0, "seed_recipe_s": 60.0,
                 "seed_recipe_test_acc": 99.3, "conventional_s": {0: 15.0, 2: 6.0}, "inference_images_per_s": 12345.0}
        machine = {"device_name": "CPU", "auto_precision": "bf16", "threads": 2, "torch": "t", "torchvision": "tv",
                   "python": "3", "startup_s": 4.25}
        table = benchmark.markdown({"bf16": ([7, 8], bf16), "fp32": ([7, 8], fp32)}, machine, "python benchmark.py",
                                   speed)
        self.assertIn("--precision auto: bf16", table)
        self.assertIn("4.2 s to start Python and import train.py", table)
        self.assertIn("| bf16 | 7 | 99.40 | the mean of epochs 1-2 of 2 | 99.00 | 3.0 | 5.5 | 6.0 |", table)
        self.assertIn("| bf16 | 7 | 99.40 |", table)
        self.assertIn("| fp32 | 8 | 99.70 |", table)
        self.assertIn("bf16: 100 parameters, 2 epochs: test accuracy mean 99.50%, min 99.40%, max 99.60%", table)
        self.assertIn("fp32: 100 parameters, 2 epochs: test accuracy mean 99.60%, min 99.50%, max 99.70%", table)
        self.assertIn("(test acc 99.30%), whole run | 60.0 | 10.0x |", table)
        self.assertIn("0 workers, batch 128, fp32 | 15.0 | 5.0x |", table)
        self.assertIn("2 workers, batch 128, fp32 | 6.0 | 2.0x |", table)
        self.assertIn("12,345 test images per second", table)


class PrecisionChoiceTest(unittest.TestCase):
    def test_both_paths_only_where_bf16_is_native(self):
        for native, expected in ((True, ["bf16", "fp32"]), (False, ["fp32"])):
            with self.subTest(native=native), mock.patch("hardware.cpu_has_native_bf16", return_value=native):
                self.assertEqual(benchmark.default_precisions(torch.device("cpu")), expected)


class BenchmarkRunTest(unittest.TestCase):
    def test_dry_run_end_to_end_writes_the_table(self):
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()) as stdout:
            benchmark.main(["--seeds", "1", "2", "--out-dir", out, "--skip-speed", "--device", "cpu",
                            "--precisions", "fp32", "--train-args", "--dry-run --epochs 2"])
            saved = json.loads((Path(out) / "benchmark.json").read_text())
            table = (Path(out) / "benchmark.md").read_text()
        self.assertEqual(saved["seeds"], [1, 2])
        self.assertEqual(len(saved["runs"]["fp32"]), 2)
        self.assertIn("| fp32 | 1 |", table)
        self.assertIn("Command: `python benchmark.py --seeds 1 2 --out-dir", table)
        self.assertIn("over 2 seeds", stdout.getvalue())

    def test_bad_arguments_are_one_line_before_the_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "a_file").touch()
            proc = call_main(benchmark.main, "--out-dir", Path(tmp) / "a_file", "--device", "cpu")
            self.assertEqual(proc.returncode, 1)
            self.assertRegex(proc.stderr, r"^error: cannot create --out-dir .*a_file \(.*\); choose another folder\n$")
            proc = call_main(benchmark.main, "--out-dir", tmp, "--device", "cpu", "--train-args", "--epochs 0")
            self.assertEqual(proc.returncode, 2)
            self.assertIn("argument --epochs: must be > 0, got 0", proc.stderr.splitlines()[-1])
            proc = call_main(benchmark.main, "--out-dir", tmp, "--train-args", "--dry-run")  # argparse: "expected
            self.assertEqual(proc.returncode, 2)  # one argument", and no word of the '=' that it needs
            self.assertIn("--train-args: write one flag alone with '=': --train-args=--dry-run",
                          proc.stderr.splitlines()[-1])
            with mock.patch("benchmark.run_seeds", side_effect=benchmark.DataError("MNIST is not in x")):
                proc = call_main(benchmark.main, "--out-dir", tmp, "--device", "cpu")
            self.assertEqual((proc.returncode, proc.stderr), (1, "error: MNIST is not in x\n"))  # not a traceback

    def test_conventional_pipeline_trains_through_per_image_pil_and_a_dataloader(self):
        trained = []

        def record(model, optimizer, loader, max_batches=None):
            trained.append((loader, [p.detach().clone() for p in model.parameters()]))
            train_through_loader(model, optimizer, loader, max_batches)
            trained.append((loader, [p.detach().clone() for p in model.parameters()]))
        train_through_loader = benchmark.train_through_loader
        started = time.perf_counter()
        with mock.patch("benchmark.train_through_loader", record):
            seconds = benchmark.conventional_epoch_seconds(DATA_DIR, 64, workers=0, max_batches=3)
        self.assertLessEqual(seconds, time.perf_counter() - started)
        (loader, before), (_, after) = trained
        self.assertEqual((loader.batch_size, loader.num_workers), (64, 0))
        self.assertIn("RandomRotation", repr(loader.dataset.dataset.transform))
        self.assertTrue(any(not torch.equal(b, a) for b, a in zip(before, after)), "no training step was taken")

    def test_seed_recipe_scores_its_own_model_on_the_test_set(self):
        self.assertEqual(count_parameters(benchmark.SeedNet()), 9434)
        made = []

        class RecordedSeedNet(benchmark.SeedNet):
            def __init__(self):
                super().__init__()
                made.append(self)
        started = time.perf_counter()
        with mock.patch("benchmark.SeedNet", RecordedSeedNet):
            seconds, test_acc = benchmark.seed_recipe(DATA_DIR, epochs=1, max_batches=2)
        self.assertLessEqual(seconds, time.perf_counter() - started)
        _, _, images, labels = load_mnist()
        with torch.inference_mode():  # max_batches=2 of 1000: the first 2000 test images, in order
            predicted = made[0].eval()(to_float(images[:2000], "cpu")).argmax(1)
        self.assertAlmostEqual(test_acc, 100 * (predicted == labels[:2000]).float().mean().item(), places=4)


if __name__ == "__main__":
    unittest.main()
