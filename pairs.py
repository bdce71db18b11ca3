"""Two digits written touching, read as a pair: a second small CNN, model.py's conv layers (twice as wide) pooled into
a left and a right half, each read as a digit or as "no second digit". It is trained on pairs of MNIST training
digits pushed together until their ink touches or overlaps, and on single digits drawn wide (both halves:
NOT_A_PAIR), all prepared as preprocess.py prepares a piece of a photo; some of the training digits are first drawn
as other hands draw them (a European 1's flag, an outline: train.py's --flag-ones and --outlines).
predict.read_number asks it about every piece wide enough to be two digits, beside the cuts preprocess.py offers.

python pairs.py   trains it on the 50k training split, chooses the epoch on pictures made from the 10k validation
split, scores pictures made from the official test set once, and writes runs/pairs.pt; the shipped
checkpoints/pairs.pt was made by `python pairs.py --out checkpoints/pairs.pt` (11 minutes on 2 CPU cores)."""
import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from checkpoint import CheckpointError, load_model, make_folder_or_exit, save_checkpoint
from data import DATA_DIR, DataError, load_mnist, random_affine, split_train_val, with_other_hands
from model import MNIST_MEAN, MNIST_STD, ModelConfig, count_parameters, feature_layers
from preprocess import PAIR_WIDTH, mnist_style

NOT_A_PAIR = 10  # the class of both halves of a single digit
# twice model.py's widths (68,022 parameters): at model.py's own, the pair model was less sure of the pairs on the
# README's pages, and 9 fewer of the 400 touching pairs of seeds 0-3 were read right (12 with other hands; NOTES.md)
PAIR_CHANNELS = (32, 32, 64, 64)
DEFAULT_PAIR_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "pairs.pt"


class PairNet(nn.Module):
    """Input: images (N, 1, 28, PAIR_WIDTH) in [0, 1]. Output: logits (N, 11, 2): the left and the right digit,
    each 0-9 or NOT_A_PAIR (cross_entropy takes this shape with labels (N, 2))."""
    trained_by = "pairs.py"

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig(channels=PAIR_CHANNELS)
        self.config = config
        self.features = feature_layers(config)
        self.halves = nn.AdaptiveAvgPool2d((1, 2))  # a left and a right half of the feature maps
        self.classifier = nn.Linear(2 * config.channels[-1], 2 * (NOT_A_PAIR + 1))  # each half sees the other too

    def forward(self, x):
        x = (x - MNIST_MEAN) / MNIST_STD
        return self.classifier(self.halves(self.features(x)).flatten(1)).view(-1, NOT_A_PAIR + 1, 2)


def ink_columns(digit):
    """The first and the last column of DIGIT's ink."""
    columns = np.nonzero(digit.max(axis=0) > 0.2)[0]
    return columns[0], columns[-1]


def written_touching(left, right, rng):
    """Two MNIST digits (float 28x28) written side by side, each at its own height and size, RIGHT's ink from a
    quarter of a digit's overlap to a pixel's gap from LEFT's: one picture of ink, as wide as they need."""
    scaled = [np.asarray(Image.fromarray(d).resize((28, round(28 * rng.uniform(0.85, 1.15))), Image.BILINEAR))
              for d in (left, right)]  # heights differ more than widths in quick writing
    height = max(s.shape[0] for s in scaled) + 6
    ink = np.zeros((height, 4 * 28), np.float32)
    start = 28  # of the next digit's ink
    for digit, (first, last) in zip(scaled, map(ink_columns, scaled)):
        x, y = start - first, int(rng.integers(0, height - digit.shape[0] + 1))
        ink[y:y + digit.shape[0], x:x + 28] = np.maximum(ink[y:y + digit.shape[0], x:x + 28], digit)
        start = x + last + 1 - int(rng.integers(-1, 6))  # from 5 pixels' overlap to a pixel's gap
    return ink


def drawn_wide(digit, rng):
    """One MNIST digit (float 28x28) drawn up to 1.7 times as wide: a single digit wide enough to be two."""
    return np.asarray(Image.fromarray(digit).resize((round(28 * rng.uniform(1.0, 1.7)), 28), Image.BILINEAR))


def pair_set(images, labels, count, rng, single_share=1 / 3):
    """COUNT pictures (COUNT, 1, 28, PAIR_WIDTH) from IMAGES (uint8 N x 28 x 28): pairs written touching, labelled
    (left digit, right digit), and a SINGLE_SHARE of single digits drawn wide, labelled (NOT_A_PAIR, NOT_A_PAIR)."""
    digits = images.numpy().astype(np.float32) / 255
    pictures, pair_labels = [], []
    for _ in range(count):
        i, j = rng.integers(0, len(digits), 2)
        if rng.random() < single_share:
            ink, label = drawn_wide(digits[i], rng), (NOT_A_PAIR, NOT_A_PAIR)
        else:
            ink, label = written_touching(digits[i], digits[j], rng), (int(labels[i]), int(labels[j]))
        pictures.append(mnist_style(ink, PAIR_WIDTH))
        pair_labels.append(label)
    return torch.from_numpy(np.stack(pictures)).unsqueeze(1), torch.tensor(pair_labels)


def other_pens(pictures):
    """A quarter of the PICTURES (N, 1, H, W) with strokes a pixel thicker, a quarter a pixel thinner: MNIST's pens
    are alike; a marker's and a ball-pen's are not."""
    thicker = F.max_pool2d(pictures, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-pictures, 3, stride=1, padding=1)
    pen = torch.randint(0, 4, (len(pictures), 1, 1, 1), device=pictures.device)
    pictures = torch.where(pen == 0, thicker, torch.where(pen == 1, thinner, pictures))
    return pictures / pictures.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)  # full ink, as mnist_style gives


@torch.inference_mode()
def pair_scores(model, pictures, labels, batch_size=1000):
    """(% of pairs read right, both digits; % of single digits read as no pair)."""
    model.eval()
    read = torch.cat([model(x).argmax(1) for x in pictures.split(batch_size)])
    right = (read == labels).all(1)
    single = labels[:, 0] == NOT_A_PAIR
    return 100 * right[~single].float().mean().item(), 100 * right[single].float().mean().item()


def build_parser():
    from train import positive  # here, as below: reading pairs (predict.py) needs none of the training code

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=positive(int), default=10, help="training epochs")
    p.add_argument("--pictures", type=positive(int), default=150_000, help="training pictures, made once")
    p.add_argument("--batch-size", type=positive(int), default=256, help="training batch size")
    p.add_argument("--lr", type=positive(float), default=0.01, help="Adam's initial learning rate")
    p.add_argument("--channels", type=positive(int), nargs=4, default=list(PAIR_CHANNELS),
                   help="widths of the four conv layers")
    p.add_argument("--flag-ones", type=float, default=0.6,
                   help="share of the training split's 1s drawn with a European 1's flag before they are paired "
                        "(train.py --flag-ones)")
    p.add_argument("--outlines", type=float, default=0.05,
                   help="share of the training split's digits drawn as their outline before they are paired "
                        "(train.py --outlines)")
    p.add_argument("--seed", type=int, default=0, help="random seed (pictures, initialisation, order)")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="where the MNIST IDX files are")
    p.add_argument("--out", default=str(Path("runs") / "pairs.pt"), help="the checkpoint to write")
    p.add_argument("--dry-run", action="store_true", help="a few hundred pictures, one epoch: a smoke test")
    return p


def train_pair_model(args):
    """Make the pictures, train, choose the epoch on the validation pictures, score the test pictures once, and write
    args.out."""
    from train import evaluate, train_one_epoch

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_images, train_labels, test_images, test_labels = load_mnist(args.data_dir)
    (train_images, train_labels), (val_images, val_labels) = split_train_val(train_images, train_labels)
    train_images = with_other_hands(train_images, train_labels, args.flag_ones, args.outlines, args.seed)
    counts = (512, 256, 256, 1) if args.dry_run else (args.pictures, 10_000, 10_000, args.epochs)
    train_set = pair_set(train_images, train_labels, counts[0], rng)
    val_set = pair_set(val_images, val_labels, counts[1], rng)
    print(f"{counts[0]:,} training pictures, {counts[1]:,} validation | {time.perf_counter() - started:.0f}s")

    model = PairNet(ModelConfig(channels=tuple(args.channels)))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.3, patience=1)
    affine = functools.partial(random_affine, degrees=8.0, scale=0.1, shift=0.05)
    augment = lambda pictures: other_pens(affine(pictures))  # noqa: E731
    best = None
    for epoch in range(1, counts[3] + 1):
        train_one_epoch(model, optimizer, *train_set, args.batch_size, f"epoch {epoch}", augment)
        _, val_acc = evaluate(model, *val_set)  # of the halves read right
        scheduler.step(val_acc)  # validation decides, never the test set
        pairs_right, singles_right = pair_scores(model, *val_set)
        print(f"epoch {epoch} | val: halves {val_acc:.2f}%, pairs {pairs_right:.2f}%, single digits "
              f"{singles_right:.2f}% | {time.perf_counter() - started:.0f}s", flush=True)
        if best is None or val_acc > best:
            best = val_acc
            save_checkpoint(args.out, model, epoch=epoch, val_pairs=pairs_right, val_singles=singles_right)

    model, ckpt = load_model(args.out, net=PairNet)
    test_set = pair_set(test_images, test_labels, counts[2], rng)
    pairs_right, singles_right = pair_scores(model, *test_set)  # once, on the epoch validation chose
    print(f"checkpoint: epoch {ckpt['epoch']} of {counts[3]}, {count_parameters(model):,} parameters | test: pairs "
          f"{pairs_right:.2f}%, single digits {singles_right:.2f}% | {time.perf_counter() - started:.0f}s in all")
    save_checkpoint(args.out, model, **{k: ckpt[k] for k in ("epoch", "val_pairs", "val_singles")},
                    test_pairs=pairs_right, test_singles=singles_right)


def main(argv=None):
    args = build_parser().parse_args(argv)
    make_folder_or_exit(Path(args.out).parent, f"the folder of --out {args.out}")
    try:
        train_pair_model(args)
    except (DataError, CheckpointError, OSError) as e:  # the MNIST files, or --out not writable
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # Ctrl-C: the best epoch so far was written whole, or not at all
        print(f"\ninterrupted; {args.out} holds the best epoch so far, if one finished", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
