import argparse
import contextlib
import io
import json
import math
import os
import shutil
import signal
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from repo import call_main, run_script, start_script  # noqa: I001 - first: it puts the repository on the path

import torch
from torch import nn

import train
from checkpoint import CheckpointError, load_checkpoint, load_model
from data import DATA_DIR, load_mnist
HISTORY_KEYS = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
METRICS_KEYS = {"config", "params", "device", "bf16", "precision_reason", "torch", "torchvision", "history",
                "best_epoch", "test_loss", "test_acc", "total_seconds"}


def quiet_train(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return train.train(train.parse_args(argv))


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

    @unittest.skipIf(torch.cuda.is_available(), "this machine has CUDA")
    def test_cuda_asked_for_but_absent(self):
        self.assert_rejected(["--device", "cuda"], "CUDA is not available")

    def test_defaults_are_the_measured_recipe(self):
        """The recipe the README's figures were measured with: a change to a default must be a deliberate one."""
        args = vars(train.parse_args([]))
        recipe = {"epochs": 15, "batch_size": 256, "lr": 0.02, "lr_factor": 0.3, "lr_patience": 1,
                  "plateau_metric": "val_acc", "channels": [16, 16, 32, 40], "dropout": 0.05, "rotate": 10.0,
                  "zoom": 0.1, "shift": 0.1, "ema": 0.995, "label_smoothing": 0.05, "precision": "auto", "seed": 1,
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


def no_cpu_capability():
    """torch without its private CPU-capability call (as torch 2.6 is): train.py must read /proc/cpuinfo."""
    return mock.patch.object(torch._C._cpu, "_get_cpu_capability", None, create=True)


class PrecisionPolicyTest(unittest.TestCase):
    """bf16 autocast only where the hardware computes in bf16: the device's capability is mocked."""

    def auto(self, device):
        return train.choose_precision("auto", torch.device(device))

    def test_cuda_needs_compute_capability_8(self):
        for capability, expected in (((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)):
            with self.subTest(capability=capability), \
                    mock.patch("torch.cuda.get_device_capability", return_value=capability):
                bf16, why = self.auto("cuda")
                self.assertEqual(bf16, expected)
                self.assertIn(f"{capability[0]}.{capability[1]}", why)

    def test_cpu_follows_its_native_bf16(self):
        for native in (True, False):
            with self.subTest(native=native), mock.patch("train.cpu_has_native_bf16", return_value=native):
                self.assertEqual(self.auto("cpu")[0], native)

    def test_cpu_flags(self):
        for flags, expected in (({"avx512_bf16": True}, True), ({"amx_bf16": True, "avx512_bf16": False}, True),
                                ({"avx512_bf16": False, "amx_bf16": False, "avx512_f": True}, False)):
            with self.subTest(flags=flags), mock.patch.object(torch._C._cpu, "_get_cpu_capability", create=True,
                                                              return_value=flags):
                self.assertEqual(train.cpu_has_native_bf16(), expected)

    def test_mps_trains_in_fp32(self):
        self.assertEqual(self.auto("mps")[0], False)

    def test_cpu_flags_from_proc_cpuinfo_where_torch_cannot_say(self):
        for cpuinfo, expected in (("flags\t: fpu avx512f avx512_bf16 avx512_vnni\n", True),
                                  ("flags\t: fpu sse amx_bf16 amx_tile\n", True),
                                  ("flags\t: fpu avx2 avx512f avx512_vnni\n", False)):
            with self.subTest(cpuinfo=cpuinfo), no_cpu_capability(), \
                    mock.patch("pathlib.Path.read_text", return_value=cpuinfo):
                self.assertEqual(train.cpu_has_native_bf16(), expected)
        with no_cpu_capability(), mock.patch("pathlib.Path.read_text", side_effect=FileNotFoundError("/proc/cpuinfo")):
            self.assertFalse(train.cpu_has_native_bf16())  # not Linux

    def test_asking_wins_over_auto(self):
        with mock.patch("torch.cuda.get_device_capability", return_value=(7, 5)):
            self.assertEqual(train.choose_precision("bf16", torch.device("cuda")), (True, "--precision bf16"))
        with mock.patch("train.cpu_has_native_bf16", return_value=True):
            self.assertEqual(train.choose_precision("fp32", torch.device("cpu")), (False, "--precision fp32"))


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
    """Validation decides and the test set is scored once, at the end, on validation's choice: checked on a run
    whose validation scores are scripted, so that the best epoch is neither the last nor the first best accuracy."""
    VAL = [(0.9, 50.0), (0.5, 70.0), (0.4, 70.0), (0.3, 60.0)]  # (loss, acc) of epochs 1-4: epoch 3 wins the tie

    def test_validation_chooses_and_the_test_set_is_scored_once_on_its_choice(self):
        sets, scored, plateau_inputs = {}, [], []
        load_sets, step = train.load_sets, torch.optim.lr_scheduler.ReduceLROnPlateau.step

        def capture_sets(*args, **kwargs):
            sets.update(load_sets(*args, **kwargs))
            return sets

        def scripted_evaluate(model, images, labels):
            split = next(name for name, (x, _) in sets.items() if x is images)
            scored.append((split, {k: v.clone() for k, v in model.state_dict().items()}))
            return self.VAL[len(scored) - 1] if split == "val" else (0.25, 42.0)

        def recording_step(scheduler, metric, *args, **kwargs):
            plateau_inputs.append(metric)
            return step(scheduler, metric, *args, **kwargs)

        with tempfile.TemporaryDirectory() as out, mock.patch("train.load_sets", capture_sets), \
                mock.patch("train.evaluate", scripted_evaluate), \
                mock.patch.object(torch.optim.lr_scheduler.ReduceLROnPlateau, "step", recording_step):
            metrics = quiet_train(["--dry-run", "--epochs", "4", "--device", "cpu", "--out-dir", out])
            best = load_checkpoint(Path(out) / "best.pt")["model"]
        self.assertEqual([split for split, _ in scored], ["val"] * 4 + ["test"])  # once, after the last epoch
        self.assertEqual(plateau_inputs, [acc for _, acc in self.VAL])  # the schedule sees validation only
        self.assertEqual((metrics["best_epoch"], metrics["best_val_acc"], metrics["test_acc"]), (3, 70.0, 42.0))

        def same(weights):
            return all(torch.equal(weights[k], best[k]) for k in best)
        self.assertTrue(same(scored[2][1]), "best.pt holds epoch 3's weights")
        self.assertFalse(same(scored[3][1]), "epoch 4 trained on: its weights differ")
        self.assertTrue(same(scored[4][1]), "the test set scored best.pt")


class AutocastTest(unittest.TestCase):
    """bf16 is really used for the training steps when chosen, and evaluation is always fp32."""

    def conv_output_dtypes(self, precision):
        seen = set()

        def record(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                seen.add(("train" if module.training else "eval", output.dtype))
        handle = nn.modules.module.register_module_forward_hook(record)
        try:
            with tempfile.TemporaryDirectory() as out:
                quiet_train(["--dry-run", "--epochs", "1", "--device", "cpu", "--precision", precision,
                             "--out-dir", out])
        finally:
            handle.remove()
        return seen

    def test_bf16_trains_in_bf16_and_evaluates_in_fp32(self):
        self.assertEqual(self.conv_output_dtypes("bf16"), {("train", torch.bfloat16), ("eval", torch.float32)})

    def test_fp32_is_fp32_throughout(self):
        self.assertEqual(self.conv_output_dtypes("fp32"), {("train", torch.float32), ("eval", torch.float32)})


class OutDirTest(unittest.TestCase):
    def test_unwritable_out_dir_fails_before_training(self):
        with tempfile.NamedTemporaryFile() as not_a_folder:
            proc = call_main(train.main, "--dry-run", "--device", "cpu", "--out-dir", f"{not_a_folder.name}/run")
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr.strip(), r"^error: cannot create --out-dir .*/run \(Not a directory\)[^\n]*$")
        self.assertNotIn("epoch", proc.stdout)


# About 0.1 s an epoch. EMA 0.9 (not 0.995) so that the averaged weights, which validation scores, move within a few
# steps: validation accuracy then climbs and the best epoch comes after the stop, so the resumed piece decides it.
RUN = ["--dry-run", "--batch-size", "32", "--device", "cpu", "--seed", "3", "--ema", "0.9"]


def train_py(*args):
    return start_script("train.py", *args)


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


class ResumeTest(unittest.TestCase):
    """A run killed (SIGKILL) or interrupted (Ctrl-C) after its second epoch, then resumed, ends exactly as the
    uninterrupted run with the same seed: history, best epoch, test score and best.pt."""
    EPOCHS = 12

    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp())
        proc = train_py(*RUN, "--epochs", cls.EPOCHS, "--out-dir", cls.dir / "whole")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        cls.whole = json.loads((cls.dir / "whole" / "metrics.json").read_text())
        assert cls.whole["best_epoch"] > 3, "the reference run must choose an epoch after the stop"

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def stop_after_second_epoch(self, run_dir, sig):
        proc = train_py(*RUN, "--epochs", self.EPOCHS, "--out-dir", run_dir)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if load_checkpoint(run_dir / "last.pt")["epoch"] >= 2:
                    break
            except CheckpointError:  # not written yet
                pass
            time.sleep(0.005)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        stopped_at = load_checkpoint(run_dir / "last.pt")["epoch"]
        self.assertLess(stopped_at, self.EPOCHS, "the run ended before it could be stopped")
        self.assertFalse((run_dir / "metrics.json").exists())
        return proc.returncode, err, stopped_at

    def assert_resumes_to_the_same_end(self, run_dir, stopped_at):
        proc = train_py("--resume", run_dir)
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn(f"resuming {run_dir} at epoch {stopped_at + 1} of {self.EPOCHS}", out)
        resumed = json.loads((run_dir / "metrics.json").read_text())
        self.assertEqual(without_seconds(resumed["history"]), without_seconds(self.whole["history"]))
        for key in ("best_epoch", "best_val_acc", "test_acc", "test_loss"):
            self.assertEqual(resumed[key], self.whole[key], key)
        self.assertEqual(resumed["resumed_at_epochs"], [stopped_at + 1])
        ours = load_checkpoint(run_dir / "best.pt")["model"]
        theirs = load_checkpoint(self.dir / "whole" / "best.pt")["model"]
        self.assertEqual(ours.keys(), theirs.keys())
        for name in ours:
            self.assertTrue(torch.equal(ours[name], theirs[name]), name)

    def test_killed_run_resumes_exactly(self):
        run_dir = self.dir / "killed"
        code, _, stopped_at = self.stop_after_second_epoch(run_dir, signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL)
        self.assert_resumes_to_the_same_end(run_dir, stopped_at)

    def test_ctrl_c_says_how_to_resume_and_resumes_exactly(self):
        run_dir = self.dir / "interrupted"
        code, err, stopped_at = self.stop_after_second_epoch(run_dir, signal.SIGINT)
        self.assertEqual(code, 130)
        self.assertIn(f"python train.py --resume {run_dir}", err)
        self.assertNotIn("Traceback", err)
        self.assert_resumes_to_the_same_end(run_dir, stopped_at)

    def test_a_finished_run_extends_with_more_epochs(self):
        run_dir = self.dir / "extended"
        shutil.copytree(self.dir / "whole", run_dir)
        self.assert_refused(["--resume", str(run_dir)], "already finished its 12 epochs; to train it further, pass "
                                                        "--epochs N with N > 12")
        ckpt = torch.load(run_dir / "last.pt", weights_only=True)
        ckpt["resume"]["progress"]["seconds"] = 1000.0  # the earlier pieces' time, made unmistakable
        torch.save(ckpt, run_dir / "last.pt")
        started = time.perf_counter()
        metrics = quiet_train(["--resume", str(run_dir), "--epochs", "13"])
        this_piece = time.perf_counter() - started
        self.assertEqual(without_seconds(metrics["history"][:12]), without_seconds(self.whole["history"]))
        self.assertEqual((len(metrics["history"]), metrics["resumed_at_epochs"]), (13, [13]))
        self.assertGreaterEqual(metrics["total_seconds"], 1000.0 + metrics["history"][12]["seconds"])
        self.assertLessEqual(metrics["total_seconds"], 1000.0 + this_piece)
        carried = load_checkpoint(run_dir / "last.pt")["resume"]["progress"]["seconds"]  # for the next resume
        self.assertGreaterEqual(carried, 1000.0 + metrics["history"][12]["seconds"])

    def test_resume_stays_on_the_runs_own_device(self):
        """A run started with --device cpu continues on the CPU on a machine with a GPU, unless told otherwise."""
        run_dir = str(self.broken_copy("unfinished", lambda path: None))
        with mock.patch("torch.cuda.is_available", return_value=True):
            recipe, _ = train.read_resume_state(train.parse_args(["--resume", run_dir]))
            self.assertEqual(recipe.device, "cpu")
            recipe, _ = train.read_resume_state(train.parse_args(["--resume", run_dir, "--device", "auto"]))
            self.assertEqual(recipe.device, "auto")

    @unittest.skipIf(torch.cuda.is_available(), "this machine has CUDA")
    def test_a_run_from_a_gpu_asks_for_a_device_here(self):
        def from_cuda(path):
            ckpt = torch.load(path, weights_only=True)
            ckpt["resume"]["device"] = "cuda"
            torch.save(ckpt, path)
        run_dir = self.broken_copy("from_cuda", from_cuda)
        self.assert_refused(["--resume", str(run_dir)], "trained on cuda, which is not available here; to continue "
                                                        "it on this machine's device, pass --device auto", run_dir)

    def assert_refused(self, argv, message, run_dir=None):
        """ARGV fails with one line that holds MESSAGE, and RUN_DIR's files are left as they were."""
        before = folder_bytes(run_dir) if run_dir and Path(run_dir).is_dir() else None
        with contextlib.redirect_stdout(io.StringIO()), self.assertRaises(SystemExit) as cm:
            train.main(argv)
        self.assertIsInstance(cm.exception.code, str)
        self.assertIn(message, cm.exception.code)
        self.assertEqual(len(cm.exception.code.splitlines()), 1)
        if before is not None:
            self.assertEqual(folder_bytes(run_dir), before)

    def broken_copy(self, name, change):
        run_dir = self.dir / name
        shutil.copytree(self.dir / "whole", run_dir)
        (run_dir / "metrics.json").unlink()  # unfinished, so that the checkpoint itself is what fails
        change(run_dir / "last.pt")
        return run_dir

    def test_bad_run_folders_are_refused_with_one_line_and_left_alone(self):
        def reshaped(path):  # written by another model.py: a layer the model does not have
            ckpt = torch.load(path, weights_only=True)
            ckpt["resume"]["raw_model"]["features.9.weight"] = torch.zeros(3)
            torch.save(ckpt, path)

        def old(path):  # a last.pt from before --resume existed
            ckpt = torch.load(path, weights_only=True)
            del ckpt["resume"]
            torch.save(ckpt, path)
        (self.dir / "empty").mkdir()
        cases = {
            "no such folder": self.dir / "missing",
            "holds no last.pt": self.dir / "empty",
            "cannot be read": self.broken_copy("garbage", lambda p: p.write_bytes(b"not a checkpoint")),
            "cannot be read (": self.broken_copy("truncated", lambda p: p.write_bytes(p.read_bytes()[:1000])),
            "is not a checkpoint of this repo": self.broken_copy("foreign", lambda p: torch.save({"w": 1}, p)),
            "does not fit model.py": self.broken_copy("reshaped", reshaped),
            "without the state a resume needs": self.broken_copy("old", old),
        }
        for message, run_dir in cases.items():
            with self.subTest(message):
                self.assert_refused(["--resume", str(run_dir)], message, run_dir)
        self.assertFalse((self.dir / "missing").exists())

    def test_recipe_flags_are_refused_with_resume(self):
        for flag, value in (("--lr", "0.1"), ("--seed", "2"), ("--out-dir", "elsewhere"), ("--dry-run", None)):
            with self.subTest(flag):
                stderr = io.StringIO()
                argv = ["--resume", str(self.dir / "whole"), flag] + ([value] if value else [])
                with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as cm:
                    train.parse_args(argv)
                self.assertEqual(cm.exception.code, 2)
                self.assertIn(f"argument {flag}: not allowed with --resume", stderr.getvalue())
        args = train.parse_args(["--resume", str(self.dir / "whole"), "--device", "cpu", "--data-dir", "data"])
        self.assertEqual((args.out_dir, args.epochs), (str(self.dir / "whole"), None))


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
