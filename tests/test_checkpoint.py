import json
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import repo  # noqa: F401 - first: it puts the repository on the path

import torch

from checkpoint import CheckpointError, load_model, save_checkpoint, write_json
from model import ModelConfig, Net


class Payload:
    """Stands for any object whose unpickling could run code."""


class CheckpointTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        torch.manual_seed(0)
        self.model = Net(ModelConfig(channels=(4, 8, 8, 16))).eval()
        self.path = self.dir / "best.pt"

    def test_round_trip_rebuilds_the_same_model(self):
        save_checkpoint(self.path, self.model, epoch=3)
        loaded, ckpt = load_model(self.path)
        self.assertEqual(loaded.config, self.model.config)
        self.assertEqual(ckpt["epoch"], 3)
        x = torch.rand(4, 1, 28, 28)
        torch.testing.assert_close(loaded(x), self.model(x))

    def test_a_write_that_fails_halfway_keeps_the_old_checkpoint(self):
        save_checkpoint(self.path, self.model, epoch=1)
        before = self.path.read_bytes()

        def half_then_disk_full(obj, f):
            f.write(before[:100])  # what a full disk or a kill leaves: a part of the file
            raise OSError("No space left on device")
        with mock.patch("torch.save", side_effect=half_then_disk_full), self.assertRaises(OSError):
            save_checkpoint(self.path, self.model, epoch=2)
        self.assertEqual(self.path.read_bytes(), before)
        self.assertEqual([p.name for p in self.dir.iterdir()], ["best.pt"])  # no temporary file left behind

    @unittest.skipUnless(Path("/proc/self").is_dir(), "needs Linux's /proc, a folder that takes no new file")
    def test_a_folder_that_takes_no_file_is_an_os_error(self):
        """train.py and pairs.py report an OSError in one line; torch.save given a path raised a RuntimeError."""
        with self.assertRaises(OSError):
            save_checkpoint("/proc/best.pt", self.model)

    def test_a_json_write_that_fails_halfway_keeps_the_old_file(self):
        path = self.dir / "metrics.json"
        write_json(path, {"test_acc": 99.5})
        before = path.read_text()
        write_text = Path.write_text

        def half_then_disk_full(target, text):
            write_text(target, text[:5])
            raise OSError("No space left on device")
        with mock.patch("pathlib.Path.write_text", autospec=True, side_effect=half_then_disk_full), \
                self.assertRaises(OSError):
            write_json(path, {"test_acc": 99.6})
        self.assertEqual(path.read_text(), before)
        self.assertEqual(json.loads(path.read_text()), {"test_acc": 99.5})
        self.assertEqual([p.name for p in self.dir.iterdir()], ["metrics.json"])

    def test_missing_file(self):
        with self.assertRaisesRegex(CheckpointError, "does not exist"):
            load_model(self.dir / "nope.pt")

    def test_garbage_file(self):
        self.path.write_bytes(b"this is not a checkpoint")
        with self.assertRaisesRegex(CheckpointError, r"cannot be read \(not a zip archive, as torch\.save writes"):
            load_model(self.path)

    def test_truncated_file(self):
        save_checkpoint(self.path, self.model)
        self.path.write_bytes(self.path.read_bytes()[:500])
        with self.assertRaisesRegex(CheckpointError, "cannot be read"):
            load_model(self.path)

    def test_code_in_a_checkpoint_is_refused(self):  # weights_only: unpickling arbitrary objects is refused
        torch.save({"model": Payload(), "model_config": {}}, self.path)
        with self.assertRaisesRegex(CheckpointError, "cannot be read"):
            load_model(self.path)

    def test_foreign_checkpoint(self):
        torch.save(self.model.state_dict(), self.path)  # a bare state_dict: no config to rebuild from
        with self.assertRaisesRegex(CheckpointError, "not a checkpoint of this repo"):
            load_model(self.path)

    def test_checkpoint_that_does_not_fit(self):
        save_checkpoint(self.path, self.model)
        ckpt = torch.load(self.path, weights_only=True)
        ckpt["model_config"]["channels"] = [8, 8, 8, 8]
        torch.save(ckpt, self.path)
        with self.assertRaisesRegex(CheckpointError, r"does not fit Net \(size mismatch for features\.0\.weight: .*\); "
                                                     "retrain with `python train.py`"):
            load_model(self.path)


if __name__ == "__main__":
    unittest.main()
