import tempfile
import unittest
from pathlib import Path
from unittest import mock

from repo import call_main  # noqa: I001 - first: it puts the repository on the path

import numpy as np
import torch

import pairs
from checkpoint import load_model
from data import load_mnist
from preprocess import PAIR_WIDTH


class PairDataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        _, _, cls.images, cls.labels = load_mnist()

    def test_pairs_are_written_touching(self):
        """The right digit's ink starts from 5 pixels inside the left's to one column clear of it: never apart."""
        rng, digits = np.random.default_rng(0), np.float32(self.images[:200].numpy()) / 255
        for left, right in zip(digits[::2], digits[1::2]):
            ink = pairs.written_touching(left, right, rng)
            columns = np.nonzero(ink.max(axis=0) > 0.2)[0]
            widths = [np.ptp(pairs.ink_columns(d)) + 1 for d in (left, right)]
            self.assertLessEqual(np.diff(columns).max(), 2)  # at most one empty column between them
            self.assertGreaterEqual(columns[-1] - columns[0] + 1, max(widths))
            self.assertLessEqual(columns[-1] - columns[0] + 1, sum(widths) + 1)

    def test_the_set_is_labelled_pairs_and_single_digits(self):
        pictures, labels = pairs.pair_set(self.images[:100], self.labels[:100], 300, np.random.default_rng(1))
        self.assertEqual(tuple(pictures.shape), (300, 1, 28, PAIR_WIDTH))
        self.assertEqual(float(pictures.max()), 1.0)
        single = labels[:, 0] == pairs.NOT_A_PAIR
        self.assertTrue((labels[single] == pairs.NOT_A_PAIR).all())  # both halves of a single digit
        self.assertTrue((labels[~single] < pairs.NOT_A_PAIR).all())
        self.assertTrue(60 <= int(single.sum()) <= 140, int(single.sum()))  # a third, about


class PairModelTest(unittest.TestCase):
    def test_output_shape(self):
        logits = pairs.PairNet().eval()(torch.rand(3, 1, 28, PAIR_WIDTH))
        self.assertEqual(tuple(logits.shape), (3, pairs.NOT_A_PAIR + 1, 2))

    def test_the_shipped_checkpoint_reads_pairs_and_single_digits(self):
        """Pictures made from the official test set, which training never saw: when it was trained, 96.6% of pairs
        and 99.3% of single digits were read right (95.7% and 98.8% at model.py's widths, without other hands)."""
        model, _ = load_model(pairs.DEFAULT_PAIR_CHECKPOINT, net=pairs.PairNet)
        _, _, images, labels = load_mnist()
        pairs_right, singles_right = pairs.pair_scores(
            model, *pairs.pair_set(images, labels, 3000, np.random.default_rng(2)))
        self.assertGreaterEqual(pairs_right, 94.0)
        self.assertGreaterEqual(singles_right, 98.0)

    def test_a_dry_run_writes_a_checkpoint_the_reader_loads(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pairs.pt"
            proc = call_main(pairs.main, "--dry-run", "--out", path)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertRegex(proc.stdout, r"checkpoint: epoch 1 of 1, [\d,]+ parameters \| test: pairs")
            model, ckpt = load_model(path, net=pairs.PairNet)
            self.assertIsInstance(model, pairs.PairNet)
            self.assertIn("test_pairs", ckpt)

    def test_missing_mnist_is_one_line(self):
        failure = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors, got HTTP 503")
        with tempfile.TemporaryDirectory() as tmp, mock.patch("torchvision.datasets.MNIST", side_effect=failure):
            proc = call_main(pairs.main, "--dry-run", "--data-dir", tmp, "--out", Path(tmp) / "pairs.pt")
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr, r"^error: MNIST is not in .* and downloading it failed .*; copy the four IDX "
                                      r".gz files there\n$")

    def test_an_out_that_cannot_be_made_is_refused_before_training(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "a_file").touch()
            proc = call_main(pairs.main, "--dry-run", "--out", Path(tmp) / "a_file" / "pairs.pt")
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr, r"^error: cannot create the folder of --out .*a_file/pairs.pt \(.*\); choose "
                                      r"another folder\n$")
        self.assertEqual(proc.stdout, "")  # before the pictures are made


if __name__ == "__main__":
    unittest.main()
