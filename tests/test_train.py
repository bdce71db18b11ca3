import argparse
import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from repo import call_main, quiet_train, run_script  # noqa: I001 - first: it puts the repository on the path

import torch
from torch import nn

import train
from checkpoint import load_checkpoint, load_model
from data import DATA_DIR, load_mnist
from model import MNIST_MEAN, MNIST_STD
HISTORY_KEYS = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
METRICS_KEYS = {"config", "params", "device", "bf16", "precision_reason", "torch", "torchvision", "history",
                "best_epoch", "test_loss", "test_acc", "total_seconds"}


class ArgumentTest(unittest.TestCase):
    def assert_rejected(self, argv, message):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as cm:
            train.parse_args(argv)
        self.assertEqual(cm.exception.code, 2)
        self.assertIn(message, stderr.getvalue())

    def test_bad_values_are_rejected(self):
        self.assert_rejected(["--epochs", "0"], "--epochs: must be > 0")
        self.assert_rejected(["--epochs", "-3"], "--epochs: must be > 0")
        self.assert_rejected(["--lr", "0"], "--lr: must be > 0")
        self.assert_rejected(["--lr", "-0.1"], "--lr: must be > 0")
        self.assert_rejected(["--batch-size", "0"], "--batch-size: must be > 0")
        self.assert_rejected(["--batch-size", "many"], "--batch-size: invalid")
        self.assert_rejected(["--device", "tpu"], "--device: invalid choice")
        self.assert_rejected(["--lr-factor", "1.5"], "--lr-factor: must be between 0 and 1")
        self.assert_rejected(["--ema", "1"], "--ema: must be in [0, 1)")
        self.assert_rejected(["--label-smoothing", "-0.1"], "--label-smoothing: must be in [0, 1)")
        self.assert_rejected(["--flag-ones", "1.5"], "--flag-ones: must be in [0, 1]")
        self.assert_rejected(["--outlines", "-0.1"], "--outlines: must be in [0, 1]")

    @unittest.skipIf(torch.cuda.is_available(), "this machine has CUDA")
    def test_cuda_asked_for_but_absent(self):
        self.assert_rejected(["--device", "cuda"], "CUDA is not available")

    def test_defaults_are_the_measured_recipe(self):
        """The recipe the README's figures were measured with: a change to a default must be a deliberate one."""
        args = vars(train.parse_args([]))
        recipe = {"epochs": 15, "batch_size": 256, "lr": 0.02, "lr_factor": 0.3, "lr_patience": 1,
                  "plateau_metric": "val_acc", "channels": [16, 16, 32, 40], "dropout": 0.05, "rotate": 10.0,
                  "zoom": 0.1, "shift": 0.1, "flag_ones": 0.0, "outlines": 0.0, "ema": 0.995, "average_epochs": 3,
                  "label_smoothing": 0.05, "precision": "auto", "seed": 1,
                  "device": "auto", "data_dir": str(DATA_DIR), "dry_run": False, "resume": None}
        self.assertEqual({k: args[k] for k in recipe}, recipe)
        self.assertLess(args["epochs"], 20)
        self.assertTrue(args["out_dir"].startswith("runs"))

    def test_help_shows_every_default_whatever_the_terminal_width(self):
        for columns in ("40", "200"):
            stdout, parser = io.StringIO(), train.build_parser()
            with self.subTest(columns=columns), mock.patch.dict(os.environ, {"COLUMNS": columns}), \
                    contextlib.redirect_stdout(stdout), self.assertRaises(SystemExit):
                parser.parse_args(["--help"])
            text = "".join(stdout.getvalue().split())  # argparse wraps (even inside words) to the terminal's width
            for action in parser._actions:
                if action.option_strings and action.default not in (None, argparse.SUPPRESS):
                    self.assertIn("".join(f"(default: {action.default})".split()), text, action.dest)


class DryRunTest(unittest.TestCase):
    """A real end-to-end run of train.py, as a user starts it, on a few batches of each phase."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp())
        cls.proc = run_script("train.py", "--dry-run", "--epochs", "3", "--device", "cpu", "--out-dir", cls.dir)
        cls.metrics = json.loads((cls.dir / "metrics.json").read_text()) if cls.proc.returncode == 0 else None

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def test_exits_cleanly_and_prints_what_it_promises(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        out = self.proc.stdout
        for text in ("Total params", "params:", "device: cpu", "training (", "torch ", "epoch  1 | lr", "val loss",
                     "test acc"):
            self.assertIn(text, out)

    def test_metrics_json_has_the_fields(self):
        self.assertLessEqual(METRICS_KEYS, set(self.metrics))
        self.assertEqual(len(self.metrics["history"]), 3)
        for row in self.metrics["history"]:
            self.assertLessEqual(HISTORY_KEYS, set(row))
        self.assertTrue(math.isfinite(self.metrics["test_loss"]))
        self.assertEqual(self.metrics["config"]["seed"], 1)
        self.assertEqual(load_checkpoint(self.dir / "last.pt")["epoch"], 3)

    def test_best_checkpoint_reloads_and_reproduces_the_test_score(self):
        ckpt = load_checkpoint(self.dir / "last.pt")
        self.assertLessEqual({"optimizer", "scheduler", "epoch", "metrics"}, set(ckpt))
        model, _ = load_model(self.dir / "best.pt")
        _, _, test_images, test_labels = load_mnist()
        n = train.DRY_RUN_BATCHES * train.EVAL_BATCH_SIZE
        loss, acc = train.evaluate(model, test_images[:n].unsqueeze(1).float() / 255, test_labels[:n])
        self.assertAlmostEqual(acc, self.metrics["test_acc"], places=6)
        self.assertAlmostEqual(loss, self.metrics["test_loss"], places=4)

    def test_bad_data_gives_one_line_and_no_traceback(self):
        bad = self.dir / "bad_data" / "MNIST" / "raw"
        bad.mkdir(parents=True)
        (bad / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
        proc = call_main(train.main, "--dry-run", "--data-dir", self.dir / "bad_data",
                         "--out-dir", self.dir / "bad_run")
        self.assertEqual(proc.returncode, 1)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertRegex(proc.stderr.strip(), r"^error: .*train-images-idx3-ubyte\.gz is truncated or corrupt[^\n]*$")


class ProtocolTest(unittest.TestCase):
    """The test set is scored once, at the end, on the checkpoint the rule made; validation decides the rest."""
    VAL = [(0.9, 50.0), (0.5, 70.0), (0.4, 70.0), (0.3, 60.0)]  # (loss, acc) of epochs 1-4: epoch 3 wins the tie

    def train_recording(self, average_epochs, scores=None):
        """A 4-epoch dry run; returns (metrics, best.pt, the sets, [(split, weights) of every evaluation]), each
        evaluation scored by SCORES(split, index) where given, else for real."""
        sets, scored = {}, []
        load_sets, evaluate = train.load_sets, train.evaluate

        def capture_sets(*args, **kwargs):
            sets.update(load_sets(*args, **kwargs))
            return sets

        def recording_evaluate(model, images, labels):
            split = next(name for name, (x, _) in sets.items() if x is images)
            scored.append((split, {k: v.clone() for k, v in model.state_dict().items()}))
            return scores(split, len(scored) - 1) if scores else evaluate(model, images, labels)

        with tempfile.TemporaryDirectory() as out, mock.patch("train.load_sets", capture_sets), \
                mock.patch("train.evaluate", recording_evaluate):
            metrics = quiet_train(["--dry-run", "--epochs", "4", "--device", "cpu", "--average-epochs",
                                   str(average_epochs), "--out-dir", out])
            return metrics, load_checkpoint(Path(out) / "best.pt"), sets, scored

    def test_validation_chooses_with_average_epochs_0_and_the_test_set_scores_its_choice_once(self):
        """Validation scores are scripted, so that the best epoch is neither the last nor the first best."""
        plateau_inputs, step = [], torch.optim.lr_scheduler.ReduceLROnPlateau.step

        def recording_step(scheduler, metric, *args, **kwargs):
            plateau_inputs.append(metric)
            return step(scheduler, metric, *args, **kwargs)

        with mock.patch.object(torch.optim.lr_scheduler.ReduceLROnPlateau, "step", recording_step):
            metrics, best, _, scored = self.train_recording(
                0, lambda split, index: self.VAL[index] if split == "val" else (0.25, 42.0))
        best = best["model"]
        self.assertEqual([split for split, _ in scored], ["val"] * 4 + ["test"])  # once, after the last epoch
        self.assertEqual(plateau_inputs, [acc for _, acc in self.VAL])  # the schedule sees validation only
        self.assertEqual((metrics["best_epoch"], metrics["best_val_acc"], metrics["test_acc"]), (3, 70.0, 42.0))

        def same(weights):
            return all(torch.equal(weights[k], best[k]) for k in best)
        self.assertTrue(same(scored[2][1]), "best.pt holds epoch 3's weights")
        self.assertFalse(same(scored[3][1]), "epoch 4 trained on: its weights differ")
        self.assertTrue(same(scored[4][1]), "the test set scored best.pt")

    def test_the_mean_of_the_last_epochs_is_the_checkpoint_and_the_test_set_scores_it_once(self):
        metrics, best, sets, scored = self.train_recording(2)
        self.assertEqual([split for split, _ in scored], ["val"] * 5 + ["test"])  # the mean, then the test, once
        self.assertEqual((metrics["checkpoint"]["epochs"], best["epoch"]), ([3, 4], 4))
        self.assertEqual(metrics["checkpoint"]["val_acc"], best["metrics"]["val_acc"])
        epoch3, epoch4, mean, tested = (weights for _, weights in scored[2:])
        for name, value in best["model"].items():
            self.assertTrue(torch.equal(value, mean[name]) and torch.equal(value, tested[name]), name)
            if name.endswith("weight") or name.endswith("bias"):
                torch.testing.assert_close(value, (epoch3[name] + epoch4[name]) / 2, msg=name)
        # the first BatchNorm sees max_pool(conv1(x)), before any dropout: its mean is recomputed over these images
        conv1 = nn.functional.conv2d((sets["train"][0] - MNIST_MEAN) / MNIST_STD, best["model"]["features.0.weight"])
        pooled = nn.functional.max_pool2d(conv1, 2)
        torch.testing.assert_close(best["model"]["features.2.running_mean"], pooled.mean((0, 2, 3)), rtol=1e-3,
                                   atol=1e-3)  # another conv kernel: float sums in another order
        self.assertFalse(torch.allclose(best["model"]["features.2.running_mean"], epoch4["features.2.running_mean"]))


class DrawnOnTrainingDigitsTest(unittest.TestCase):
    def test_only_the_training_ones_are_flagged(self):
        """--flag-ones draws flags on the training split's 1s; validation and test stay MNIST's own."""
        cpu = torch.device("cpu")
        plain, flagged = (train.load_sets(DATA_DIR, cpu, 64, flag_ones=share, seed=1) for share in (0.0, 1.0))
        for split in ("val", "test"):
            self.assertTrue(torch.equal(plain[split][0], flagged[split][0]), split)
        images, labels = plain["train"]
        changed = (flagged["train"][0] != images).flatten(1).any(1)
        self.assertTrue(changed[labels == 1].all())
        self.assertFalse(changed[labels != 1].any())

    def test_only_training_digits_are_outlined(self):
        """--outlines draws a share of the training digits hollow; validation and test stay MNIST's own."""
        cpu = torch.device("cpu")
        plain, outlined = (train.load_sets(DATA_DIR, cpu, 64, seed=1, outlines=share) for share in (0.0, 0.5))
        for split in ("val", "test"):
            self.assertTrue(torch.equal(plain[split][0], outlined[split][0]), split)
        changed = (outlined["train"][0] != plain["train"][0]).flatten(1).any(1)
        self.assertTrue(0.3 < changed.float().mean() < 0.7, changed.float().mean())


class AutocastTest(unittest.TestCase):
    """bf16 is really used for the training steps when chosen; everything else (evaluation, the BatchNorm pass of
    the averaged weights) is always fp32."""

    def conv_output_dtypes(self, precision):
        seen = set()

        def record(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                step = module.training and torch.is_grad_enabled()
                seen.add(("step" if step else "other", output.dtype))
        handle = nn.modules.module.register_module_forward_hook(record)
        try:
            with tempfile.TemporaryDirectory() as out:
                quiet_train(["--dry-run", "--epochs", "1", "--device", "cpu", "--precision", precision,
                             "--out-dir", out])
        finally:
            handle.remove()
        return seen

    def test_bf16_trains_in_bf16_and_the_rest_is_fp32(self):
        self.assertEqual(self.conv_output_dtypes("bf16"), {("step", torch.bfloat16), ("other", torch.float32)})

    def test_fp32_is_fp32_throughout(self):
        self.assertEqual(self.conv_output_dtypes("fp32"), {("step", torch.float32), ("other", torch.float32)})


class OutDirTest(unittest.TestCase):
    def test_unwritable_out_dir_fails_before_training(self):
        with tempfile.NamedTemporaryFile() as not_a_folder:
            proc = call_main(train.main, "--dry-run", "--device", "cpu", "--out-dir", f"{not_a_folder.name}/run")
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr.strip(), r"^error: cannot create --out-dir .*/run \(Not a directory\)[^\n]*$")
        self.assertNotIn("epoch", proc.stdout)

    @unittest.skipUnless(Path("/proc/self").is_dir(), "needs Linux's /proc, a folder that takes no new file")
    def test_an_out_dir_that_takes_no_file_fails_before_training(self):
        """/proc is there, so mkdir passed; the first checkpoint failed after an epoch's work."""
        proc = call_main(train.main, "--dry-run", "--device", "cpu", "--out-dir", "/proc")
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr.strip(),
                         r"^error: cannot write a file into --out-dir /proc \(.+\); choose another folder$")
        self.assertNotIn("epoch", proc.stdout)


# About 0.1 s an epoch. EMA 0.9 (not 0.995) so that the averaged weights, which validation scores, move within a few
# steps: validation accuracy then climbs and the best epoch comes after the stop, so the resumed piece decides it.
class ReproducibilityTest(unittest.TestCase):
    def run_once(self, seed):
        with tempfile.TemporaryDirectory() as out:
            metrics = quiet_train(["--dry-run", "--epochs", "2", "--device", "cpu", "--seed", str(seed),
                                   "--out-dir", out])
        return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["history"]], metrics["test_acc"]

    def test_same_seed_same_metrics_other_seed_other_metrics(self):
        first, second, other = self.run_once(7), self.run_once(7), self.run_once(8)
        self.assertEqual(first, second)
        self.assertNotEqual(first, other)


if __name__ == "__main__":
    unittest.main()
