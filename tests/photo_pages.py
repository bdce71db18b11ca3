"""Photo-like pages made from MNIST test digits: uneven light, shadow edges, ruled lines, blue ink, pencil, tilt,
blur, JPEG, and strips of several digits. test_predict.py uses them; run this file to measure predict.py on them:

    python tests/photo_pages.py                              # 50 pages per condition, 50 4-digit numbers
    python tests/photo_pages.py --picture docs/photos.png    # the README's picture
"""
import argparse
import io
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CONDITIONS = ("plain", "gradient", "shadow", "ruled", "blue_ink", "pencil", "tilt", "blur", "everything")


def _paper(rng, w, h):
    tint = rng.uniform(225, 252) + rng.uniform(-8, 8, size=3)  # off-white, a little warm or cold
    return np.ones((h, w, 3), np.float32) * np.clip(tint, 0, 255)


def _illumination(rng, w, h, gradient, shadow):
    """Brightness factor per pixel: light falling off across the page, and a soft shadow edge."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    light = np.ones((h, w), np.float32)
    if gradient:
        angle = rng.uniform(0, 2 * math.pi)
        t = (x * math.cos(angle) + y * math.sin(angle))
        t = (t - t.min()) / max(t.max() - t.min(), 1)
        light *= 1 - t * rng.uniform(0.3, 0.6)
    if shadow:
        angle = rng.uniform(0, 2 * math.pi)
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        distance = (x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)
        softness = rng.uniform(0.005, 0.05) * min(w, h)
        light *= 1 - rng.uniform(0.3, 0.55) * 0.5 * (1 + np.tanh(distance / (2 * softness)))  # a soft step
    return light


def _ruled_lines(rng, page, digit_height):
    """Ruled (and sometimes squared) lines in light blue or grey, thinner than a pen stroke."""
    h, w = page.shape[:2]
    img = Image.fromarray(np.uint8(page))
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in (rng.uniform(120, 190), rng.uniform(150, 200), rng.uniform(200, 240))) \
        if rng.random() < 0.7 else (int(rng.uniform(130, 190)),) * 3
    spacing = rng.uniform(0.5, 1.0) * digit_height
    width = int(rng.integers(1, 4))
    for y in np.arange(rng.uniform(0, spacing), h, spacing):
        draw.line([(0, y), (w, y)], fill=colour, width=width)
    if rng.random() < 0.3:
        for x in np.arange(rng.uniform(0, spacing), w, spacing):
            draw.line([(x, 0), (x, h)], fill=colour, width=width)
    return np.asarray(img, np.float32)


def page(digits, rng, condition, size=None):
    """An RGB PIL image of DIGITS (uint8 MNIST arrays, 28x28) written side by side on a photo-like page."""
    conditions = {condition} if condition != "everything" else \
        {c for c in CONDITIONS[1:-1] if rng.random() < 0.5} | {"tilt"}
    w, h = size or (int(rng.integers(500, 1000)), int(rng.integers(500, 1000)))
    frame = rng.uniform(0.35, 0.75) * min(h, w) / max(1, 0.75 * len(digits))  # a 28x28 digit's side, in pixels
    frame = min(frame, 0.85 * w / (1.3 * len(digits)), 0.85 * h)  # room for the gaps
    s = max(8, int(frame))
    gaps = rng.uniform(0.0, 0.3, size=len(digits) - 1) * s
    total_w = len(digits) * s + gaps.sum()
    left, top = rng.uniform(0.05 * w, w - total_w - 0.05 * w), rng.uniform(0.05 * h, h - s - 0.05 * h)
    alpha = np.zeros((h, w), np.float32)
    x = left
    for i, digit in enumerate(digits):
        big = np.asarray(Image.fromarray(digit).resize((s, s), Image.Resampling.BICUBIC), np.float32) / 255
        y0, x0 = int(top + rng.uniform(-0.05, 0.05) * s), int(x)
        y0 = min(max(y0, 0), h - s)
        alpha[y0:y0 + s, x0:x0 + s] = np.maximum(alpha[y0:y0 + s, x0:x0 + s], np.clip(big, 0, 1))
        x += s + (gaps[i] if i < len(gaps) else 0)

    paper = _paper(rng, w, h)
    if "ruled" in conditions:
        paper = _ruled_lines(rng, paper, 20 / 28 * s)
    if "blue_ink" in conditions:
        ink = np.array([rng.uniform(10, 60), rng.uniform(30, 90), rng.uniform(120, 200)], np.float32)
    else:
        ink = np.full(3, rng.uniform(15, 60), np.float32)
    strength = 1.0
    if "pencil" in conditions:  # grey, faint and grainy
        ink = np.full(3, rng.uniform(80, 140), np.float32)
        strength = rng.uniform(0.5, 0.8)
        alpha = alpha * np.clip(1 + rng.normal(0, 0.25, alpha.shape), 0, 1.5)
    a = np.clip(alpha * strength, 0, 1)[..., None]
    img = paper * (1 - a) + ink * a
    img *= _illumination(rng, w, h, "gradient" in conditions, "shadow" in conditions)[..., None]
    img += rng.normal(0, rng.uniform(1.5, 5), img.shape)  # sensor noise
    out = Image.fromarray(np.uint8(np.clip(img, 0, 255)))
    if "tilt" in conditions:
        fill = tuple(int(c) for c in np.median(np.asarray(out).reshape(-1, 3), axis=0))
        out = out.rotate(rng.uniform(2, 6) * rng.choice([-1, 1]), Image.Resampling.BICUBIC, fillcolor=fill)
    if "blur" in conditions:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * max(1, s / 150)))
    return out


def as_jpeg(img, rng):
    """IMG after a round trip through JPEG, as a phone would store it."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=int(rng.integers(60, 92)))
    return Image.open(io.BytesIO(buffer.getvalue()))


def reader():
    """(read, images, labels): read(PIL image) -> (the number the shipped model reads, the 28x28 images it saw)."""
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from checkpoint import load_model
    from data import load_mnist
    from predict import DEFAULT_CHECKPOINT, predict_images
    from preprocess import ImageError, digit_images

    model, _ = load_model(DEFAULT_CHECKPOINT)
    _, _, images, labels = load_mnist(repo / "data")

    def read(img):
        try:
            digits = digit_images(np.asarray(img.convert("RGB"), np.float32) / 255)
        except ImageError:
            return "", []
        return "".join(str(int(p.argmax())) for p in predict_images(model, digits)), digits
    return read, images, labels


def picture(path, seed):
    """Save a figure of a few pages and, under each, the 28x28 images the model saw and what it read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    read, images, labels = reader()
    rng = np.random.default_rng(seed)
    shown = [("shadow", 1), ("ruled", 1), ("blue_ink", 1), ("pencil", 1), ("everything", 4), ("everything", 4)]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.2 * len(shown), 4.6), height_ratios=[3, 1])
    for column, (condition, count) in enumerate(shown):
        picks = rng.choice(len(images), count, replace=False)
        img = as_jpeg(page([images[i].numpy() for i in picks], rng, condition), rng)
        number, seen = read(img)
        truth = "".join(str(int(labels[i])) for i in picks)
        axes[0, column].imshow(np.asarray(img))
        axes[0, column].set_title(condition.replace("_", " "), fontsize=9)
        axes[1, column].imshow(np.hstack(seen) if seen else np.zeros((28, 28)), cmap="gray")
        axes[1, column].set_title(f"read {number or '-'} ({'right' if number == truth else 'truth ' + truth})",
                                  fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def measure(per_condition, numbers, seed):
    """Print the share of pages read right per condition, and of 4-digit numbers."""
    read, images, labels = reader()
    rng = np.random.default_rng(seed)
    for condition in CONDITIONS:
        picks = rng.choice(len(images), per_condition, replace=False)
        right = sum(read(as_jpeg(page([images[i].numpy()], rng, condition), rng))[0] == str(int(labels[i]))
                    for i in picks)
        print(f"{condition:>10}: {right}/{per_condition} single digits right ({100 * right / per_condition:.1f}%)")
    right = 0
    for k in range(numbers):
        picks = rng.choice(len(images), 4, replace=False)
        expected = "".join(str(int(labels[i])) for i in picks)
        condition = CONDITIONS[k % len(CONDITIONS)]
        right += read(as_jpeg(page([images[i].numpy() for i in picks], rng, condition), rng))[0] == expected
    print(f"4-digit numbers (each condition in turn): {right}/{numbers} right ({100 * right / numbers:.1f}%)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pages", type=int, default=50, help="single-digit pages per condition")
    p.add_argument("--numbers", type=int, default=50, help="pages with a 4-digit number")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--picture", metavar="PNG", help="instead, save a figure of a few pages and what the model saw")
    args = p.parse_args()
    if args.picture:
        picture(args.picture, args.seed)
    else:
        measure(args.pages, args.numbers, args.seed)
