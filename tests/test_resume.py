"""--resume: a stopped run continues exactly; a folder it cannot continue is refused in one line, untouched."""
import contextlib
import io
import json
import shutil
import signal
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from repo import quiet_train, start_script  # noqa: I001 - first: it puts the repository on the path

import torch

import train
from checkpoint import load_checkpoint
from resume import read_resume_state

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
        # each epoch's line is flushed just before its last.pt is written, so the third's follows the second's
        # last.pt; polling last.pt instead fell behind on a busy CPU (a dry-run epoch takes 0.1 s) and once missed
        # the whole run
        for line in proc.stdout:
            if line.startswith("epoch  3 |"):
                break
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
            recipe, _ = read_resume_state(train.parse_args(["--resume", run_dir]))
            self.assertEqual(recipe.device, "cpu")
            recipe, _ = read_resume_state(train.parse_args(["--resume", run_dir, "--device", "auto"]))
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
        def before_averaging(path):  # a last.pt from before --average-epochs existed
            ckpt = torch.load(path, weights_only=True)
            del ckpt["resume"]["config"]["average_epochs"]
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
            "written by an older train.py, without average_epochs": self.broken_copy("older", before_averaging),
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
        args = train.parse_args(["--resume", str(self.dir / "whole"), "--device", "cpu", "--data-dir", "data",
                                 "--no-cuda-graph"])
        self.assertEqual((args.out_dir, args.epochs, args.cuda_graph), (str(self.dir / "whole"), None, False))

    def test_a_run_from_before_cuda_graphs_resumes(self):
        """--cuda-graph is how a run executes, not its recipe: a last.pt written before it existed still resumes."""
        def before_graphs(path):
            ckpt = torch.load(path, weights_only=True)
            del ckpt["resume"]["config"]["cuda_graph"]
            torch.save(ckpt, path)
        run_dir = str(self.broken_copy("before_graphs", before_graphs))
        recipe, _ = read_resume_state(train.parse_args(["--resume", run_dir]))
        self.assertTrue(recipe.cuda_graph)


@unittest.skipUnless(torch.cuda.is_available(), "no CUDA here")
class CudaResumeTest(unittest.TestCase):
    """On CUDA, where the step is captured in a graph after 3 launched ones: a run stopped after its second epoch
    ends, resumed, exactly as the run that was not stopped (the resumed piece launches, where the other replays)."""

    def test_a_stopped_cuda_run_resumes_exactly(self):
        run = [*RUN, "--device", "cuda", "--epochs", "6"]  # the later --device wins
        save_checkpoint = train.save_checkpoint

        def stop_after_second_epoch(path, *args, **state):
            save_checkpoint(path, *args, **state)
            if Path(path).name == "last.pt" and state["epoch"] == 2:
                raise KeyboardInterrupt  # as Ctrl-C would, once epoch 2 is saved
        with tempfile.TemporaryDirectory() as tmp:
            whole = quiet_train([*run, "--out-dir", f"{tmp}/whole"])
            with mock.patch("train.save_checkpoint", stop_after_second_epoch), self.assertRaises(KeyboardInterrupt):
                quiet_train([*run, "--out-dir", f"{tmp}/stopped"])
            resumed = quiet_train(["--resume", f"{tmp}/stopped"])
            self.assertEqual(resumed["resumed_at_epochs"], [3])
            self.assertEqual(without_seconds(resumed["history"]), without_seconds(whole["history"]))
            self.assertEqual((resumed["test_acc"], resumed["test_loss"]), (whole["test_acc"], whole["test_loss"]))
            ours, theirs = (load_checkpoint(Path(tmp) / name / "best.pt")["model"] for name in ("stopped", "whole"))
            for name in theirs:
                self.assertTrue(torch.equal(ours[name], theirs[name]), name)


if __name__ == "__main__":
    unittest.main()
