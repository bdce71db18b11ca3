"""MNIST in memory: load the IDX files the repo carries, split 50k/10k, augment whole batches."""
import gzip
import hashlib
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# SHA256 of the decompressed IDX files: the same for our gzip copies and for the originals a download brings.
IDX_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
DATA_DIR = Path(__file__).resolve().parent / "data"  # the repo's own copy, wherever the command is started from
VAL_SIZE = 10_000
SPLIT_SEED = 12345  # fixed, and independent of --seed: every run validates on the same 10k images


class DataError(Exception):
    """A missing, truncated or corrupt dataset file; the message says which file and what to do."""


def raw_folder(data_dir):
    return Path(data_dir) / "MNIST" / "raw"  # torchvision's layout, so its downloader fills the same place


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ensure_idx_file(raw, name):
    """Decompress NAME.gz beside it if needed, then check the IDX bytes against IDX_SHA256."""
    path, gz = raw / name, raw / f"{name}.gz"
    if not path.exists() and gz.exists():
        with tempfile.TemporaryDirectory(dir=raw) as tmp:  # extract beside, then rename: never half a file
            try:
                (Path(tmp) / name).write_bytes(gzip.decompress(gz.read_bytes()))
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(f"{gz} is truncated or corrupt ({e}); restore it with `git checkout -- {gz}`") from e
            os.replace(Path(tmp) / name, path)
    if not path.exists():
        raise DataError(f"{path}(.gz) is missing; restore the repo's data/ folder with `git checkout -- data`")
    if _sha256(path) != IDX_SHA256[name]:
        hint = f"delete it and run again to re-extract it from {gz.name}" if gz.exists() else "restore data/"
        raise DataError(f"{path} is truncated or corrupt (SHA256 mismatch); {hint}")
    return path


def read_idx(path):
    """An IDX file (big-endian header: magic 0x0000 08 NDIM, then NDIM sizes) as a uint8 tensor of that shape.
    Read here, not by torchvision, whose import alone takes seconds."""
    data = path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy())


def _download(data_dir):
    """Fallback when the repo's copy is absent: torchvision's downloader (mirrors are often unreachable)."""
    from torchvision.datasets import MNIST  # here: only a download needs torchvision

    try:
        MNIST(str(data_dir), train=True, download=True)
        MNIST(str(data_dir), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - any network or mirror failure means the same thing to the user
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"MNIST is not in {raw_folder(data_dir)} and downloading it failed ({first_line}); "
                        f"copy the four IDX .gz files there") from e


def load_mnist(data_dir=DATA_DIR, download=True):
    """Return (train_images, train_labels, test_images, test_labels): uint8 (N, 28, 28) and int64 (N,)."""
    raw = raw_folder(data_dir)
    present = any((raw / n).exists() or (raw / f"{n}.gz").exists() for n in IDX_SHA256)
    if not present and download:
        _download(data_dir)
    paths = {name: _ensure_idx_file(raw, name) for name in IDX_SHA256}  # checked against IDX_SHA256 first
    return (read_idx(paths["train-images-idx3-ubyte"]), read_idx(paths["train-labels-idx1-ubyte"]).long(),
            read_idx(paths["t10k-images-idx3-ubyte"]), read_idx(paths["t10k-labels-idx1-ubyte"]).long())


def split_train_val(images, labels, val_size=VAL_SIZE):
    """Split the 60k training set into train and validation by a permutation fixed by SPLIT_SEED."""
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def to_float(images, device):
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1] on DEVICE; the model normalises by itself."""
    return images.to(device).unsqueeze(1).float().div_(255)


def random_affine(images, degrees=10.0, scale=0.1, shift=0.1):
    """Rotate, scale and shift every image of a batch by its own random amount, in one grid_sample.

    shift is a fraction of the half-width (0.1 = 1.4 pixels); the new border is black, like MNIST's.
    """
    n, device = images.shape[0], images.device
    uniform = lambda *shape: torch.rand(*shape, device=device) * 2 - 1  # noqa: E731 - U(-1, 1)
    angle = uniform(n) * math.radians(degrees)
    zoom = 1 + uniform(n) * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    offset = uniform(n, 2) * shift
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


def with_flagged_ones(images, labels, share, generator=None):
    """IMAGES (uint8 N x 28 x 28) with a SHARE of the 1s given a European 1's flag: a short stroke as wide as theirs
    from their top, down and to the left of their stem (MNIST's writers seldom wrote one, and a flagged 1 was read as
    a 7). Steeper and shorter than a 7's bar: 25-50 degrees off the stem, a fifth to two fifths of its height."""
    chosen = torch.nonzero((labels == 1) & (torch.rand(len(labels), generator=generator) < share)).flatten()
    ink, n = images[chosen].float() / 255, len(chosen)
    rows = (ink > 0.5).any(2)  # (n, 28): the rows with a stroke's core
    top, bottom = rows.float().argmax(1), 27 - rows.flip(1).float().argmax(1)
    height = (bottom - top + 1).float()
    columns = torch.arange(28.0)

    def centre(row):  # the ink's mean column along ROW (one row index per image)
        line = ink[torch.arange(n), row]
        return (line * columns).sum(1) / line.sum(1).clamp_min(1e-6)

    start = torch.stack([centre(top), top.float()], 1)
    stem = torch.stack([centre(bottom), bottom.float()], 1) - start
    stem = stem / stem.norm(dim=1, keepdim=True).clamp_min(1e-6)
    uniform = lambda low, high: low + (high - low) * torch.rand(n, generator=generator)  # noqa: E731
    turn, length = torch.deg2rad(uniform(25.0, 50.0)), uniform(0.2, 0.4) * height
    flag = torch.stack([torch.cos(turn) * stem[:, 0] - torch.sin(turn) * stem[:, 1],  # the stem turned to its left
                        torch.sin(turn) * stem[:, 0] + torch.cos(turn) * stem[:, 1]], 1) * length[:, None]
    width = (ink.sum((1, 2)) / height).clamp(1.5, 4.0)  # a 1's ink per row is its stroke's width
    ys, xs = torch.meshgrid(columns, columns, indexing="ij")
    offsets = torch.stack([xs, ys], -1).view(1, -1, 2) - start[:, None]  # (n, 784, 2): from the top of the stem
    along = ((offsets * flag[:, None]).sum(-1) / (flag * flag).sum(-1, keepdim=True)).clamp(0, 1)
    distance = (offsets - along[..., None] * flag[:, None]).norm(dim=-1).view(n, 28, 28)
    stroke = (width[:, None, None] / 2 + 0.5 - distance).clamp(0, 1)  # anti-aliased by a pixel
    flagged = images.clone()
    flagged[chosen] = (torch.maximum(ink, stroke) * 255).round().to(torch.uint8)
    return flagged


def with_outlined_digits(images, share, generator=None):
    """IMAGES (uint8 N x 28 x 28) with a SHARE of them drawn as their outline: the ink grown by a pixel all round,
    less the ink itself, so each stroke becomes two thin lines with paper between (a hollow "bubble" digit, as some
    handwriting fonts and some hands draw; a model that never saw one reads an outlined 4 as 8)."""
    chosen = torch.nonzero(torch.rand(len(images), generator=generator) < share).flatten()
    ink = images[chosen].float().unsqueeze(1) / 255
    outline = (F.max_pool2d(ink, 3, stride=1, padding=1) - ink).clamp(0, 1)
    outlined = images.clone()
    outlined[chosen] = (outline.squeeze(1) * 255).round().to(torch.uint8)
    return outlined


def with_other_hands(images, labels, flag_ones=0.0, outlines=0.0, seed=0):
    """IMAGES (uint8 N x 28 x 28) with a FLAG_ONES share of the 1s flagged and then an OUTLINES share of all digits
    outlined, from SEED: the training split of a model that reads photos, whose writers are not MNIST's."""
    if flag_ones:
        images = with_flagged_ones(images, labels, flag_ones, torch.Generator().manual_seed(seed))
    if outlines:
        # a stream of its own: SEED's would draw the flags' uniforms again, and every 1 outlined would be a flagged one
        images = with_outlined_digits(images, outlines, torch.Generator().manual_seed(seed + 1))
    return images
