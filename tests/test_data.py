import gzip
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import repo  # noqa: F401 - first: it puts the repository on the path

import torch

from data import (DATA_DIR, DataError, IDX_SHA256, load_mnist, random_affine, raw_folder, split_train_val,
                  with_flagged_ones, with_other_hands, with_outlined_digits)

REPO_RAW = raw_folder(DATA_DIR)


def copy_gz_files(data_dir):
    raw = raw_folder(data_dir)
    raw.mkdir(parents=True)
    for name in IDX_SHA256:
        shutil.copy(REPO_RAW / f"{name}.gz", raw / f"{name}.gz")
    return raw


class LoadMnistTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.train_images, cls.train_labels, cls.test_images, cls.test_labels = load_mnist(REPO_RAW.parent.parent)

    def test_shapes_and_types(self):
        self.assertEqual(tuple(self.train_images.shape), (60000, 28, 28))
        self.assertEqual(tuple(self.test_images.shape), (10000, 28, 28))
        self.assertEqual(self.train_images.dtype, torch.uint8)
        self.assertEqual(self.test_labels.dtype, torch.int64)

    def test_it_is_the_real_mnist(self):  # facts from the dataset's README
        self.assertEqual(self.test_labels[:10].tolist(), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
        self.assertEqual(torch.bincount(self.train_labels).tolist(),
                         [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
        self.assertAlmostEqual(self.train_images.float().div(255).mean().item(), 0.1307, places=4)

    def test_split_is_50k_10k_disjoint_and_fixed(self):
        index = torch.arange(60000)
        torch.manual_seed(1)
        (train_a, _), (val_a, _) = split_train_val(index, self.train_labels)
        torch.manual_seed(2)  # the training seed must not move the split
        (train_b, _), (val_b, _) = split_train_val(index, self.train_labels)
        self.assertEqual((len(train_a), len(val_a), len(self.test_images)), (50000, 10000, 10000))
        self.assertEqual(len(set(train_a.tolist()) & set(val_a.tolist())), 0)
        self.assertEqual(len(set(train_a.tolist()) | set(val_a.tolist())), 60000)
        self.assertTrue(torch.equal(val_a, val_b) and torch.equal(train_a, train_b))

    def test_split_keeps_images_with_their_labels(self):
        (images, labels), _ = split_train_val(self.train_images, self.train_labels)
        first = (self.train_images == images[0]).flatten(1).all(1).nonzero()[0, 0]
        self.assertEqual(self.train_labels[first], labels[0])


class DataErrorTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)

    def test_missing_files_name_the_file(self):
        with self.assertRaisesRegex(DataError, r"train-images-idx3-ubyte.*missing"):
            load_mnist(self.dir, download=False)

    def test_truncated_gz_names_the_file_and_leaves_nothing_half_written(self):
        raw = copy_gz_files(self.dir)
        gz = raw / "t10k-images-idx3-ubyte.gz"
        gz.write_bytes(gz.read_bytes()[:100_000])
        with self.assertRaisesRegex(DataError, r"t10k-images-idx3-ubyte\.gz is truncated or corrupt"):
            load_mnist(self.dir, download=False)
        self.assertFalse((raw / "t10k-images-idx3-ubyte").exists())

    def test_corrupt_idx_file_fails_its_checksum(self):
        raw = copy_gz_files(self.dir)
        (raw / "train-labels-idx1-ubyte").write_bytes(gzip.compress(b"not mnist"))
        with self.assertRaisesRegex(DataError, r"train-labels-idx1-ubyte is truncated or corrupt \(SHA256"):
            load_mnist(self.dir, download=False)

    def test_gz_copy_loads(self):
        copy_gz_files(self.dir)
        self.assertEqual(len(load_mnist(self.dir, download=False)[3]), 10000)

    def test_without_the_files_torchvision_downloads_them(self):
        def download(root, train, download):  # stands for torchvision's MNIST: it fills root/MNIST/raw
            if not raw_folder(root).exists():
                copy_gz_files(root)
        with mock.patch("torchvision.datasets.MNIST", side_effect=download) as mnist:
            self.assertEqual(len(load_mnist(self.dir)[3]), 10000)
        self.assertEqual([c.kwargs["train"] for c in mnist.call_args_list], [True, False])

    def test_a_failed_download_is_one_line_that_says_what_to_do(self):
        failure = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors, got HTTP 503")
        with mock.patch("torchvision.datasets.MNIST", side_effect=failure):
            with self.assertRaises(DataError) as cm:
                load_mnist(self.dir)
        message = str(cm.exception)
        self.assertEqual(len(message.splitlines()), 1)
        self.assertIn("downloading it failed (Error downloading train-images-idx3-ubyte.gz:)", message)
        self.assertIn("copy the four IDX .gz files there", message)


class RandomAffineTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.images = torch.zeros(8, 1, 28, 28)
        self.images[:, :, 8:20, 12:16] = 1.0  # the same bar in every image

    def test_zero_strength_is_identity(self):
        out = random_affine(self.images, degrees=0, scale=0, shift=0)
        torch.testing.assert_close(out, self.images, atol=1e-5, rtol=0)

    def test_each_image_gets_its_own_transform(self):
        out = random_affine(self.images)
        self.assertEqual(out.shape, self.images.shape)
        self.assertFalse(torch.allclose(out[0], out[1]))
        self.assertGreaterEqual(out.min().item(), 0.0)
        self.assertLessEqual(out.max().item(), 1.0 + 1e-6)

    def test_transform_is_small(self):  # light augmentation: the digit stays mostly where it was
        out = random_affine(self.images)
        overlap = (out * self.images).sum((1, 2, 3)) / self.images.sum((1, 2, 3))
        self.assertTrue((overlap > 0.5).all(), overlap)


class FlaggedOnesTest(unittest.TestCase):
    def setUp(self):
        self.images = torch.zeros(40, 28, 28, dtype=torch.uint8)
        self.images[:, 4:24, 13:15] = 255  # an upright stem, rows 4-23
        self.labels = torch.tensor([1, 7] * 20)

    def flagged(self, share, seed=0):
        return with_flagged_ones(self.images, self.labels, share, torch.Generator().manual_seed(seed))

    def test_only_the_chosen_share_of_the_ones_changes(self):
        changed = (self.flagged(0.5) != self.images).flatten(1).any(1)
        self.assertFalse(changed[self.labels != 1].any())  # a 7 is never touched
        self.assertTrue(3 <= int(changed.sum()) <= 17, int(changed.sum()))
        self.assertTrue((self.flagged(1.0) != self.images).flatten(1).any(1)[self.labels == 1].all())
        self.assertTrue(torch.equal(self.flagged(0.0), self.images))

    def test_the_flag_runs_down_and_left_from_the_top_of_the_stem_and_is_short(self):
        for image in self.flagged(1.0)[self.labels == 1]:
            added = (image.int() - self.images[0].int()) > 64
            rows, cols = torch.nonzero(added, as_tuple=True)
            self.assertGreaterEqual(int(rows.min()), 3)  # nothing above the stem's top (row 4)
            self.assertLessEqual(int(rows.max()), 4 + 10)  # at most 2/5 of the 20 rows down, and a stroke's width
            self.assertLess(int(cols.min()), 12)  # left of the stem (columns 13-14)
            self.assertLessEqual(int(cols.max()), 15)  # never right of it
            self.assertTrue(torch.equal(image[4:24, 13:15], self.images[0, 4:24, 13:15]))  # the stem is kept

    def test_a_seed_gives_the_same_flags(self):
        self.assertTrue(torch.equal(self.flagged(0.5, seed=3), self.flagged(0.5, seed=3)))
        self.assertFalse(torch.equal(self.flagged(0.5, seed=3), self.flagged(0.5, seed=4)))


class OutlinedDigitsTest(unittest.TestCase):
    def setUp(self):
        self.images = torch.zeros(40, 28, 28, dtype=torch.uint8)
        self.images[:, 4:24, 12:16] = 255  # a stem four pixels wide, rows 4-23, columns 12-15

    def outlined(self, share, seed=0):
        return with_outlined_digits(self.images, share, torch.Generator().manual_seed(seed))

    def test_only_the_chosen_share_changes(self):
        changed = (self.outlined(0.5) != self.images).flatten(1).any(1)
        self.assertTrue(3 <= int(changed.sum()) <= 37, int(changed.sum()))
        self.assertTrue((self.outlined(1.0) != self.images).flatten(1).any(1).all())
        self.assertTrue(torch.equal(self.outlined(0.0), self.images))

    def test_a_stroke_becomes_two_thin_lines_with_paper_between(self):
        for image in self.outlined(1.0):
            self.assertEqual(image[14, 10:18].tolist(), [0, 255, 0, 0, 0, 0, 255, 0])  # across the stem
            self.assertEqual(image[3, 11:17].tolist(), [255] * 6)  # its top closed off a row above it
            self.assertEqual(int(image[14:22, 13:15].max()), 0)  # hollow inside

    def test_a_seed_gives_the_same_outlines(self):
        self.assertTrue(torch.equal(self.outlined(0.5, seed=3), self.outlined(0.5, seed=3)))
        self.assertFalse(torch.equal(self.outlined(0.5, seed=3), self.outlined(0.5, seed=4)))


class OtherHandsTest(unittest.TestCase):
    def test_ones_are_flagged_then_digits_outlined_each_from_its_own_stream(self):
        """train.py and pairs.py draw their training digits this way: the flags from SEED, the outlines from SEED + 1
        (from SEED too, every 1 outlined would be one of the flagged ones)."""
        images = torch.zeros(40, 28, 28, dtype=torch.uint8)
        images[:, 4:24, 12:15] = 255
        labels = torch.tensor([1, 7] * 20)
        flagged = with_flagged_ones(images, labels, 0.6, torch.Generator().manual_seed(5))
        both = with_outlined_digits(flagged, 0.3, torch.Generator().manual_seed(6))
        self.assertTrue(torch.equal(with_other_hands(images, labels, 0.6, 0.3, seed=5), both))
        self.assertTrue(torch.equal(with_other_hands(images, labels, 0.6, 0.0, seed=5), flagged))
        self.assertTrue(torch.equal(with_other_hands(images, labels), images))


if __name__ == "__main__":
    unittest.main()
