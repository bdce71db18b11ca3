"""Read the digits in people's own photos and scans (files or folders): each digit, left to right, is turned into
what MNIST looks like (preprocess.py), then classified. Two digits that touch are read as a pair by a second model
(pairs.py) where it is sure or the digit model is unsure of the whole, and otherwise as the halves of a cut where
the model is surer of them than of the whole (92-97% of pairs on the README's pages, by kind); three that touch are
read as fewer."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from checkpoint import CheckpointError, load_model, make_folder_or_exit
from model import Net
from pairs import DEFAULT_PAIR_CHECKPOINT, NOT_A_PAIR, PairNet
from preprocess import PAIR_WIDTH, ImageError, read_digits

# shipped with the repo, made by `python train.py --seed 1 --precision fp32 --flag-ones 0.6 --outlines 0.05` (README:
# why the flags and the outlines)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "best.pt"


@torch.inference_mode()
def predict_images(model, images):
    """Softmax probabilities (N, 10) for float images (N, 28, 28) in [0, 1]."""
    x = torch.from_numpy(np.stack(images)).unsqueeze(1).to(next(model.parameters()).device)
    return torch.softmax(model(x), dim=1).cpu()


# A piece wide enough to be two digits (preprocess.SPLIT_ASPECT) is read as the halves of its best cut when the model
# is surer of each half than of the whole, and at least this sure: chosen on generated pages of touching pairs and
# of single digits (NOTES.md); a sloppy single digit is seldom cut into two confident ones. 0.9 since the pair model
# grew (pairs.PAIR_CHANNELS) and reads more pairs itself: at 0.8, 7 more of the pages of seeds 0-5 and 6 more of the
# validation split's digits as pictures were misread (single digits cut in two), and no more pairs read right
SURE_OF_A_HALF = 0.9
# ...except a 0 narrower than this (width over height): cut down the middle, a 0 is two arcs read as "61" or "67";
# but only one the model is this sure of: a piece read as a 0 less surely is often a 6 or a 1 touching a 0 ("60", "01")
ROUND_ASPECT = 1.2
ROUND_SURE = 0.7
# ...and, in a number, a piece less than this many times as wide (over its height) as the widest of the others: that
# is one wide digit (a 4 with a long bar, a round 0) among digits as wide
AS_WIDE_AS_TWO = 1.4


# A piece wide enough to be two digits is read by the pair model (pairs.PairNet) first: when it is this sure that
# the piece is one digit, or of both digits of a pair and surer of them than the digit model of the whole, its
# verdict stands; otherwise the cuts decide, as above. Chosen on the generated pages of seeds 0-1, checked on seed 2
# and on MNIST's test digits as pictures (NOTES.md)
PAIR_SURE = 0.95
# ...and where it is less sure, its reading stands when a cut reads the same two digits: two readers agree. Both must
# be at least AGREED sure where the digit model is under ONE_DIGIT sure of the whole. Chosen on the touching pairs of
# seeds 0-1 (+1 of 100), checked on seeds 2-3 (+3) and on MNIST's test digits as pictures (none lost; NOTES.md). The
# agreement also outweighs a surer cut that reads other digits ("92": a cut "94" 89% sure): +4 pages of seeds 0-5,
# none lost, MNIST's validation digits as pictures unchanged (NOTES.md)
AGREED = 0.7
ONE_DIGIT = 0.9
# ...and where the digit model reads the whole as a 4, ONE_DIGIT sure or more, the agreement still stands when both
# readers are SURE_AGREED sure: two digits written touching are read as a 4 96-100% sure ("44", "64", "41": two
# strokes and a bar), and the pair model and a cut read them right. Not for other digits: MNIST's wide 2s, 5s and 6s
# are read "22", "55" and "60" by both readers 92-97% sure. Measured on the pages of seeds 0-9 (+3 pairs), the
# held-out fonts and MNIST's validation and training digits as pictures (no change), then checked on seeds 10-11 (+2
# pairs) and MNIST's test digits (a 4 read "41"; NOTES.md)
SURE_AGREED = 0.9
# ...and where the digit model is under NO_ONE_DIGIT sure of the whole, it sees no one digit there: the pair model's
# two digits stand when it is at least as sure of each, in a piece at least WIDE_PAIR as wide as tall and not faint
# (FAINT, below). Chosen on the touching pairs of seeds 0-1 (+2 of 200) and on the validation split's digits as
# pictures (the width bound: 4 of them lost, not 5); checked on seeds 2-5 (+4 of 400) and on MNIST's test digits as
# pictures (1 lost; NOTES.md)
NO_ONE_DIGIT = 0.5
WIDE_PAIR = 0.9

# A page whose every mark is faint (its mean contrast against the paper, preprocess.Digit.contrast, under FAINT) and
# that the model reads at under UNSURE is a blank page's noise: a ruled line's stretch or a blot in a shadow's soft
# edge. Chosen on the generated pages of seeds 0-2: the faintest digit read there has 0.13, read at 70%; no page with
# a digit has both. It clears 3 of the 10 blank pages read as a digit on seeds 0-3, and 5 of 5 on the suite's, where
# it calls one page with a digit blank: a grainy pencil "47" in shadow, read "2" at 50% without it (NOTES.md)
FAINT = 0.2
UNSURE = 0.6


@torch.inference_mode()
def read_pair(pair_model, pair):
    """A piece's picture as two digits side by side (Digit.pair) read by PAIR_MODEL: (halves, sureness), where
    halves is [] for one digit, or [(probabilities, image)] for the left and the right digit, and sureness the
    least sure half's probability of what it was read as."""
    (probs,) = torch.softmax(pair_model(torch.from_numpy(pair)[None, None]), dim=1)
    read_as, sureness = probs.argmax(0), float(probs.max(0).values.min())
    if int(read_as.max()) == NOT_A_PAIR:
        return [], float(probs[NOT_A_PAIR].min()) if int(read_as.min()) == NOT_A_PAIR else 0.0
    digits = probs[:NOT_A_PAIR] / probs[:NOT_A_PAIR].sum(0)  # each half's probabilities over the ten digits
    return [(digits[:, 0], pair[:, :PAIR_WIDTH // 2]), (digits[:, 1], pair[:, PAIR_WIDTH // 2:])], sureness


def two_ones_from_one_digit(whole, halves):
    """Are HALVES two 1s cut from one digit, one the digit model reads (WHOLE, its probabilities) at least
    NO_ONE_DIGIT sure? A European 1's flag and foot cut off its stem, or a 4's two stems ("4" read "11"), are no two
    1s; under even odds the digit model sees no one digit there ("11" written touching, read "1" 34% sure)."""
    return float(whole.max()) >= NO_ONE_DIGIT and len(halves) == 2 and all(int(p.argmax()) == 1 for p, _ in halves)


def digits_of(read_out):
    """The digits READ_OUT ([(probabilities, image)]) reads as, as a string."""
    return "".join(str(int(p.argmax())) for p, _ in read_out)


def read_number(model, digits, pair_model=None):
    """(the number, each digit's probabilities, the 28x28 images read) for the Digits preprocess found. A piece wide
    enough to be two touching digits is read as two where PAIR_MODEL (pairs.PairNet, if given) is sure it is, where
    it and a cut agree (AGREED, SURE_AGREED), or where the digit model sees no one digit in it (NO_ONE_DIGIT), and
    otherwise by its best cut, when the model is surer of each half than of the whole. ImageError where every mark
    is faint and unsure (FAINT, UNSURE)."""
    def read(digit, widest_other=0.0):
        (whole,) = predict_images(model, [digit.image])
        best, best_sureness = [(whole, digit.image)], max(float(whole.max()), SURE_OF_A_HALF)
        read_as = int(whole.argmax())
        agreement = AGREED if float(whole.max()) < ONE_DIGIT else SURE_AGREED if read_as == 4 else float("inf")
        if digit.aspect < AS_WIDE_AS_TWO * widest_other:
            return best
        pair_reads = None  # the two digits the pair model reads, where a cut reading them may stand
        if pair_model is not None and digit.pair is not None:
            halves, sureness = read_pair(pair_model, digit.pair)
            surer_than_the_whole = not halves or sureness > float(whole.max())  # MNIST's wide 4s: no "41"
            no_one_digit = halves and sureness >= NO_ONE_DIGIT > float(whole.max()) and digit.aspect >= WIDE_PAIR \
                and digit.contrast >= FAINT  # a faint mark no model reads surely is a blank page's noise
            # but two 1s only where the digit model is unsure of the whole, or reads it as another digit: two 1s
            # written close make a narrow piece that reads as a 4
            a_sure_one = read_as == 1 and two_ones_from_one_digit(whole, halves)
            if (sureness >= PAIR_SURE and surer_than_the_whole or no_one_digit) and not a_sure_one:
                return halves or best  # [] where it is sure of one digit
            if halves and sureness >= agreement:
                pair_reads = digits_of(halves)
        if digit.aspect < ROUND_ASPECT and read_as == 0 and float(whole.max()) >= ROUND_SURE:
            return best
        agreed, agreed_sureness = None, agreement
        for left, right in digit.cuts:
            halves = read(left) + read(right)
            if two_ones_from_one_digit(whole, halves):
                continue
            sureness = min(float(p.max()) for p, _ in halves)
            if sureness > best_sureness:
                best, best_sureness = halves, sureness
            if sureness >= agreed_sureness and digits_of(halves) == pair_reads:
                agreed, agreed_sureness = halves, sureness
        return agreed or best
    read_out = [pair for i, digit in enumerate(digits)
                for pair in read(digit, max((d.aspect for d in digits[:i] + digits[i + 1:]), default=0.0))]
    probs = torch.stack([p for p, _ in read_out])
    if all(digit.contrast < FAINT for digit in digits) and float(probs.max()) < UNSURE:
        raise ImageError("no digit found (only faint marks, and none reads as a digit)")
    return digits_of(read_out), probs, [image for _, image in read_out]


def export_onnx(model, path, atol=1e-4):
    """Write MODEL to PATH as ONNX (any batch size), run it in onnxruntime and compare with PyTorch."""
    import onnxruntime  # imported here: only export needs it

    x = torch.rand(7, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(model, (x,), path, input_names=["images"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"images": x.numpy()})
    with torch.inference_mode():
        diff = float(np.abs(onnx_logits - model(x).numpy()).max())
    if not diff <= atol:
        raise RuntimeError(f"ONNX and PyTorch disagree: max |difference| {diff:.2e} > {atol:.0e}")
    return f"exported {path}: ONNX outputs match PyTorch (max |difference| {diff:.1e}, 7 images)"


def expand_paths(paths):
    """Files as given; folders recursively, every file inside, sorted, but not hidden ones (.DS_Store, .git/...).
    A missing path is kept, and so is a folder with no such file: each gets an error, not silence."""
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts)) if path.is_dir() else []
        yield from files or [path]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="*", help="image files or folders (searched recursively)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint written by train.py")
    p.add_argument("--pair-checkpoint", default=str(DEFAULT_PAIR_CHECKPOINT),
                   help="checkpoint written by pairs.py: reads two digits written touching")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: "number" and "digits" (and, for one digit, its fields)')
    p.add_argument("--save-preprocessed", metavar="DIR",
                   help="write the 28x28 image(s) the model saw for each input to DIR, as PNG, named after the input")
    p.add_argument("--export", metavar="FILE.onnx", help="export the model to ONNX and check it against PyTorch")
    args = p.parse_args(argv)
    if not args.paths and not args.export:
        p.error("give at least one image file or folder (or --export FILE.onnx)")
    return args


def json_row(path, probs):
    """What --json prints for PATH (and app.py answers): the number, and each digit's confidence and
    probabilities; for a single digit, its fields at the top level too."""
    digits = [int(p.argmax()) for p in probs]
    row = {"path": str(path), "number": "".join(map(str, digits)),
           "digits": [{"digit": d, "confidence": round(float(p[d]), 6),
                       "probabilities": [round(float(q), 6) for q in p]} for d, p in zip(digits, probs)]}
    if len(digits) == 1:  # the single-digit fields, as before numbers were read
        row = {"path": row["path"], **row["digits"][0], **row}
    return row


def report(path, probs=None, error=None, as_json=False):
    """One line for PATH: its number and each digit's confidence, or the error."""
    if error is not None:
        print(json.dumps({"path": str(path), "error": error}) if as_json else f"{path}: error: {error}", flush=True)
        return
    digits = [int(p.argmax()) for p in probs]
    number = "".join(map(str, digits))
    if as_json:
        print(json.dumps(json_row(path, probs)), flush=True)
    else:
        confidences = [f"{100 * float(p[d]):.1f}%" for d, p in zip(digits, probs)]
        if len(digits) > 1:
            confidences = [f"{d}: {c}" for d, c in zip(digits, confidences)]
        print(f"{path}: {number} ({', '.join(confidences)})", flush=True)


def save_preprocessed(folder, path, images, taken):
    """Write what the model saw for PATH as FOLDER/<name>[_<i>].png; TAKEN: names already written by this run."""
    for i, image in enumerate(images):
        stem = Path(path).stem + (f"_{i + 1}" if len(images) > 1 else "")
        name, n = f"{stem}.png", 1
        while name in taken:  # the same file name in two folders
            n += 1
            name = f"{stem}({n}).png"
        taken.add(name)
        Image.fromarray(np.uint8(np.round(255 * image))).save(folder / name)


def model_or_exit(checkpoint, net=Net):
    """The model (NET) in CHECKPOINT, or exit with its one-line error."""
    try:
        return load_model(checkpoint, net=net)[0]
    except CheckpointError as e:
        sys.exit(f"error: {e}")


def main(argv=None):
    args = parse_args(argv)
    model = model_or_exit(args.checkpoint)
    if args.export:
        folder = Path(args.export).absolute().parent
        if not folder.is_dir():  # before the exporter's minute of work and its pages of output
            sys.exit(f"error: cannot write {args.export}: there is no folder {folder}")
        if Path(args.export).is_dir():
            sys.exit(f"error: cannot write {args.export}: it is a folder; give a file name, such as model.onnx")
        try:
            print(export_onnx(model, args.export))
        except Exception as e:  # noqa: BLE001 - the exporter fails in many ways; the user needs one line
            sys.exit(f"error: export to {args.export} failed: {str(e).strip().splitlines()[0]}")
    pair_model = model_or_exit(args.pair_checkpoint, PairNet) if args.paths else None
    if args.save_preprocessed:
        make_folder_or_exit(args.save_preprocessed, f"--save-preprocessed {args.save_preprocessed}")
    failed, taken = 0, set()
    for path in expand_paths(args.paths):
        try:
            if path.is_dir():  # expand_paths keeps a folder only where it has no file to read
                raise ImageError("a folder with no files in it (hidden ones are skipped)")
            _, probs, images = read_number(model, read_digits(path), pair_model)
        except ImageError as e:
            report(path, error=str(e), as_json=args.json)
            failed += 1
            continue
        if args.save_preprocessed:
            save_preprocessed(Path(args.save_preprocessed), path, images, taken)
        report(path, probs, as_json=args.json)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
