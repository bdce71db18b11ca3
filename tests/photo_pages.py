"""Photo-like pages made from MNIST test digits: uneven light, shadow edges, ruled lines, blue ink, pencil, tilt,
blur, JPEG, and strips of several digits. test_preprocess.py and test_predict.py use them; run this file to measure
predict.py on them:

    python tests/photo_pages.py                              # 50 pages per condition, 50 4-digit numbers
    python tests/photo_pages.py --seed 0 1 2 3               # the same kinds on four seeds' pages, summed
    python tests/photo_pages.py --seed 0 1 2 3 --jobs 4      # ... the four read at once, one process each
    python tests/photo_pages.py --picture docs/photos.png    # the README's picture
"""
import argparse
import functools
import io
import math
import multiprocessing
import signal
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

import repo  # noqa: F401 - it puts the repository on the path, for reader() and main() run as a script

PAGE_CONDITIONS = ("plain", "gradient", "shadow", "ruled", "blue_ink", "pencil", "tilt", "blur", "everything")
CONDITIONS = PAGE_CONDITIONS + ("desk",)  # a sheet lying on a desk: the commonest phone photo


# Handwriting-like fonts from Debian's font packages, where installed: another hand than MNIST's writers. Each
# folder under /usr/share/fonts, with the package that has it (.ci/run installs them)
FONT_PACKAGES = {"fifthhorseman": "fonts-dkg-handwriting", "breip": "fonts-breip", "femkeklaver": "fonts-femkeklaver",
                 "humor-sans": "fonts-humor-sans", "comic-neue": "fonts-comic-neue", "klee": "fonts-klee",
                 "bwht": "fonts-bwht"}
FONT_FOLDERS = tuple(FONT_PACKAGES)
HAND_SIZE = 112  # side of the square a drawn digit is made on (then scaled like an MNIST digit)

# Digits as pen strokes in a unit box (x right, y down), with the variants people write: a European 1 with its
# flag (and a foot), a 7 with a bar, an open 4 in two strokes, a 9 with a straight or a curved tail.
STROKES = {
    0: [[[(.5, .08), (.78, .25), (.8, .7), (.5, .92), (.22, .72), (.2, .28), (.5, .08), (.6, .14)]]],
    1: [[[(.5, .08), (.5, .92)]], [[(.3, .3), (.56, .08), (.56, .92)]],
        [[(.28, .32), (.55, .08), (.55, .9)], [(.32, .92), (.78, .92)]]],
    2: [[[(.22, .3), (.4, .1), (.66, .1), (.76, .3), (.62, .52), (.22, .9), (.8, .88)]]],
    3: [[[(.24, .2), (.5, .08), (.74, .22), (.66, .42), (.44, .5), (.7, .58), (.76, .78), (.5, .92), (.22, .82)]]],
    4: [[[(.62, .92), (.62, .08), (.18, .64), (.82, .64)]],
        [[(.3, .08), (.22, .6), (.82, .6)], [(.64, .3), (.64, .94)]]],
    5: [[[(.74, .1), (.32, .1), (.28, .44), (.56, .4), (.76, .6), (.68, .84), (.44, .92), (.22, .82)]],
        [[(.3, .1), (.27, .44), (.56, .4), (.76, .6), (.68, .84), (.44, .92), (.22, .82)], [(.3, .1), (.76, .1)]]],
    6: [[[(.7, .08), (.42, .32), (.24, .64), (.36, .9), (.64, .88), (.74, .66), (.52, .5), (.26, .64)]]],
    7: [[[(.2, .1), (.8, .1), (.42, .92)]], [[(.2, .1), (.8, .1), (.42, .92)], [(.36, .52), (.76, .52)]]],
    8: [[[(.5, .5), (.26, .3), (.5, .08), (.74, .3), (.5, .5), (.24, .72), (.5, .92), (.76, .72), (.5, .5)]]],
    9: [[[(.74, .34), (.5, .52), (.26, .34), (.5, .1), (.74, .3), (.72, .92)]],
        [[(.74, .34), (.5, .52), (.26, .34), (.5, .1), (.74, .3), (.7, .7), (.5, .92)]]],
}


def font_files(folders=FONT_FOLDERS):
    root = Path("/usr/share/fonts")
    return sorted(f for folder in folders for f in root.rglob(f"{folder}/*") if f.suffix in (".ttf", ".otf")
                  and f.name != "BecauseWeCreate-Regular.otf")  # its digits are outlines, not strokes


def missing_font_packages():
    """FONT_PACKAGES with no font installed: without one, the other hands' pages are not the README's."""
    return [package for folder, package in FONT_PACKAGES.items() if not font_files((folder,))]


def _as_mnist_box(ink):
    """Fit a drawn digit (light on black, uint8) into the middle 5/7 of a square, as MNIST's 20 of 28 pixels."""
    rows, cols = np.nonzero(np.asarray(ink) > 40)
    if not len(rows):
        return np.zeros((HAND_SIZE, HAND_SIZE), np.uint8)
    crop = ink.crop((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    scale = HAND_SIZE * 20 / 28 / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    crop = crop.resize(size, Image.Resampling.LANCZOS)
    box = Image.new("L", (HAND_SIZE, HAND_SIZE), 0)
    box.paste(crop, ((HAND_SIZE - crop.width) // 2, (HAND_SIZE - crop.height) // 2))
    return np.asarray(box)


def font_digit(digit, rng, fonts):
    """DIGIT in one of FONTS, slanted and rotated a little, thinned or thickened: a uint8 square, light on black."""
    big = 3 * HAND_SIZE
    canvas = Image.new("L", (big, big), 0)
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(big * 0.55))
    ImageDraw.Draw(canvas).text((big / 2, big / 2), str(digit), fill=255, font=font, anchor="mm")
    slant = rng.uniform(-0.3, 0.15)  # most hands lean right
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, slant, -slant * big / 2, 0, 1, 0),
                              Image.Resampling.BICUBIC).rotate(rng.uniform(-8, 8), Image.Resampling.BICUBIC)
    weight = int(rng.integers(-1, 3))  # thin ball-pen to thick marker
    if weight:
        canvas = canvas.filter(ImageFilter.MaxFilter(4 * weight + 1) if weight > 0 else ImageFilter.MinFilter(3))
    return _as_mnist_box(canvas)


def _catmull_rom(points, per_segment=16):
    """A smooth curve through POINTS, as a person's pen goes through them."""
    p = np.array([points[0], *points, points[-1]], np.float32)
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    curve = [0.5 * (2 * p[i] + (p[i + 1] - p[i - 1]) * t + (2 * p[i - 1] - 5 * p[i] + 4 * p[i + 1] - p[i + 2]) * t ** 2
                    + (3 * p[i] - p[i - 1] - 3 * p[i + 1] + p[i + 2]) * t ** 3) for i in range(1, len(p) - 2)]
    return np.concatenate([*curve, p[-2:-1]])


def stroke_digit(digit, rng):
    """DIGIT drawn as strokes along smooth curves through jittered points of one of its written forms, slanted,
    with a pen of random width: a uint8 square, light on black."""
    big = 3 * HAND_SIZE
    strokes = STROKES[digit][int(rng.integers(len(STROKES[digit])))]
    slant, squeeze = rng.uniform(-0.3, 0.1), rng.uniform(0.75, 1.15)
    width = int(big * rng.uniform(0.025, 0.09))  # ball-pen to marker
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        points = np.array(stroke, np.float32) + rng.normal(0, 0.025, (len(stroke), 2))
        points[:, 0] = 0.5 + (points[:, 0] - 0.5) * squeeze - slant * (points[:, 1] - 0.5)
        curve = _catmull_rom(points) * big * 0.8 + big * 0.1
        draw.line([tuple(q) for q in curve], fill=255, width=width, joint="curve")
        for x, y in curve[[0, -1]]:  # round pen ends
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=255)
    return _as_mnist_box(canvas.filter(ImageFilter.GaussianBlur(big / 200)))


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


def _desk(rng, w, h):
    """A desk under the sheet: wood, a dark or light table, a cutting mat; a colour, grain or mottling, and light."""
    kind = rng.choice(["wood", "dark", "light", "mat", "blue"])
    colour = {"wood": (rng.uniform(110, 180), rng.uniform(70, 120), rng.uniform(30, 80)),
              "dark": (rng.uniform(20, 70),) * 3, "light": (rng.uniform(140, 190),) * 3,
              "mat": (rng.uniform(30, 70), rng.uniform(80, 130), rng.uniform(60, 90)),
              "blue": (rng.uniform(40, 90), rng.uniform(60, 110), rng.uniform(110, 170))}[kind]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    texture = np.ones((h, w), np.float32)
    if kind == "wood":  # grain: stripes of varying width along one direction
        angle = rng.uniform(0, math.pi)
        t = x * math.cos(angle) + y * math.sin(angle)
        texture += 0.12 * np.sin(t / rng.uniform(3, 12) + 2 * np.sin(t / rng.uniform(40, 90)))
    coarse = rng.normal(0, 1, (max(2, h // 40), max(2, w // 40))).astype(np.float32)  # mottling
    texture += rng.uniform(0.03, 0.1) * np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    return np.clip(np.array(colour, np.float32) * texture[..., None], 0, 255)


def _sheet_corners(rng, w, h):
    """The corners of a sheet lying skewed on a desk that shows along one to four of the picture's borders."""
    shown = rng.choice(4, size=int(rng.integers(1, 5)), replace=False)  # 0 left, 1 top, 2 right, 3 bottom
    inset = [rng.uniform(0.04, 0.18) if side in shown else -0.1 for side in range(4)]  # -: beyond the picture
    x0, y0, x1, y1 = inset[0] * w, inset[1] * h, (1 - inset[2]) * w, (1 - inset[3]) * h
    angle, cx, cy = math.radians(rng.uniform(-4, 4)), (x0 + x1) / 2, (y0 + y1) / 2
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [(cx + (x - cx) * math.cos(angle) - (y - cy) * math.sin(angle),
             cy + (x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)) for x, y in corners]


def _writable_box(corners, w, h):
    """Where digits may go: inside the sheet (and the picture) with a margin, whatever the skew."""
    xs, ys = sorted(x for x, _ in corners), sorted(y for _, y in corners)
    x0, x1 = max(xs[1], 0) + 0.05 * w, min(xs[2], w) - 0.05 * w
    y0, y1 = max(ys[1], 0) + 0.05 * h, min(ys[2], h) - 0.05 * h
    return x0, y0, x1, y1


def _specks(rng, img, box, count):
    """Dirt on the paper: a few small dark dots inside BOX."""
    draw = ImageDraw.Draw(out := Image.fromarray(np.uint8(np.clip(img, 0, 255))))
    radius = max(1.0, min(img.shape[:2]) / 400)
    for _ in range(count):
        x, y, r = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3]), radius * rng.uniform(0.7, 2.5)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(int(rng.uniform(40, 120)),) * 3)
    return np.asarray(out, np.float32)


def _ink_columns(alpha):
    columns = np.nonzero(alpha.max(axis=0) > 0.2)[0]
    return (int(columns[0]), int(columns[-1]) + 1) if len(columns) else (0, alpha.shape[1])


def page(digits, rng, condition, size=None, touching=False):
    """An RGB PIL image of DIGITS (uint8 square arrays of light ink on black, MNIST's 28x28 or bigger) written side
    by side on a photo-like page; none for a blank page. TOUCHING: each digit's ink touches or overlaps the last's."""
    conditions = {condition} if condition != "everything" else \
        {c for c in PAGE_CONDITIONS[1:-1] if rng.random() < 0.5} | {"tilt"}
    w, h = size or (int(rng.integers(500, 1000)), int(rng.integers(500, 1000)))
    corners = _sheet_corners(rng, w, h) if "desk" in conditions else None
    bx0, by0, bx1, by1 = _writable_box(corners, w, h) if corners else (0.05 * w, 0.05 * h, 0.95 * w, 0.95 * h)
    n = max(1, len(digits))
    frame = rng.uniform(0.35, 0.75) * min(by1 - by0, bx1 - bx0) / max(1, 0.75 * n)  # a digit box's side, in pixels
    frame = min(frame, 0.95 * (bx1 - bx0) / (1.3 * n), 0.95 * (by1 - by0))  # room for the gaps
    s = max(8, int(frame))
    bigs = [np.clip(np.asarray(Image.fromarray(d).resize((s, s), Image.Resampling.BICUBIC), np.float32) / 255, 0, 1)
            for d in digits]
    if touching:  # ink to ink: from a hair's gap to an eighth of a digit's overlap
        ink = [_ink_columns(b) for b in bigs]
        steps = [ink[i][1] - ink[i + 1][0] + rng.uniform(-0.12, 0.01) * s for i in range(len(bigs) - 1)]
    else:
        steps = list(s + rng.uniform(0.0, 0.3, size=max(0, len(digits) - 1)) * s)
    total_w = s + sum(steps)
    left = rng.uniform(bx0, max(bx0, bx1 - total_w))
    top = rng.uniform(by0, max(by0, by1 - s))
    alpha = np.zeros((h, w), np.float32)
    x = left
    for i, big in enumerate(bigs):
        y0, x0 = int(top + rng.uniform(-0.05, 0.05) * s), int(x)
        y0, x0 = min(max(y0, 0), h - s), min(max(x0, 0), w - s)
        alpha[y0:y0 + s, x0:x0 + s] = np.maximum(alpha[y0:y0 + s, x0:x0 + s], big)
        x += steps[i] if i < len(steps) else 0

    paper = _paper(rng, w, h)
    if "ruled" in conditions:
        paper = _ruled_lines(rng, paper, 20 / 28 * s)
    if "blue_ink" in conditions:
        ink_colour = np.array([rng.uniform(10, 60), rng.uniform(30, 90), rng.uniform(120, 200)], np.float32)
    else:
        ink_colour = np.full(3, rng.uniform(15, 60), np.float32)
    strength = 1.0
    if "pencil" in conditions:  # grey, faint and grainy
        ink_colour = np.full(3, rng.uniform(80, 140), np.float32)
        strength = rng.uniform(0.5, 0.8)
        alpha = alpha * np.clip(1 + rng.normal(0, 0.25, alpha.shape), 0, 1.5)
    a = np.clip(alpha * strength, 0, 1)[..., None]
    img = paper * (1 - a) + ink_colour * a
    if corners:  # dirt on the sheet, then the desk around it, skewed, its edge softened by the lens
        img = _specks(rng, img, (bx0, by0, bx1, by1), int(rng.integers(2, 9)))
        sheet = Image.new("L", (w, h), 0)
        ImageDraw.Draw(sheet).polygon(corners, fill=255)
        sheet = np.asarray(sheet.filter(ImageFilter.GaussianBlur(0.8)), np.float32)[..., None] / 255
        img = img * sheet + _desk(rng, w, h) * (1 - sheet)
    shadow = "shadow" in conditions or (corners is not None and rng.random() < 0.5)  # across the sheet's edge too
    img *= _illumination(rng, w, h, "gradient" in conditions, shadow)[..., None]
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


@functools.cache  # once per process: the models and MNIST, for every seed it reads
def reader():
    """(read, images, labels): read(PIL image) -> (the number the shipped model reads, or "" where it reports no
    digit; the 28x28 images it saw), and the MNIST test set."""
    from checkpoint import load_model
    from data import load_mnist
    from pairs import DEFAULT_PAIR_CHECKPOINT, PairNet
    from predict import DEFAULT_CHECKPOINT, read_number
    from preprocess import ImageError, digit_images

    model, _ = load_model(DEFAULT_CHECKPOINT)
    pair_model, _ = load_model(DEFAULT_PAIR_CHECKPOINT, net=PairNet)
    _, _, images, labels = load_mnist()

    def read(img):
        try:
            digits = digit_images(np.asarray(img.convert("RGB"), np.float32) / 255)
            number, _, seen = read_number(model, digits, pair_model)
        except ImageError:
            return "", []
        return number, seen
    return read, images, labels


class Hands:
    """Digits to write: MNIST's test digits, digits in handwriting-like fonts, or pen strokes along splines."""

    def __init__(self, images, labels, fonts=None):
        self.images, self.labels, self.fonts = images, labels, fonts or font_files()

    def draw(self, rng, count, hand):
        """(COUNT digit images in HAND, their labels as a string)."""
        if hand == "mnist":
            picks = rng.choice(len(self.images), count, replace=False)
            return [self.images[i].numpy() for i in picks], "".join(str(int(self.labels[i])) for i in picks)
        labels = rng.integers(0, 10, count)
        if hand == "other" and self.fonts:  # half in fonts, half in strokes
            hand = "font" if rng.random() < 0.5 else "stroke"
        digits = [font_digit(d, rng, self.fonts) if hand == "font" else stroke_digit(d, rng) for d in labels]
        return digits, "".join(map(str, labels))


BLANK_CONDITIONS = ("plain", "gradient", "shadow", "ruled", "tilt", "blur", "desk", "everything")


# The kinds of page the README's table measures, in its order: (kind, digits on a page, hand, conditions taken in
# turn, written touching)
KINDS = [*((f"single digit, {condition.replace('_', ' ')}", 1, "mnist", [condition], False) for condition in
           CONDITIONS),
         ("4-digit number, each condition in turn", 4, "mnist", CONDITIONS, False),
         ("single digit, sheet on a desk, other hands", 1, "other", ["desk"], False),
         ("4-digit number, sheet on a desk", 4, "mnist", ["desk"], False),
         ("single digit, other hands, each condition in turn", 1, "other", CONDITIONS, False),
         ("4-digit number, other hands, each condition in turn", 4, "other", CONDITIONS, False),
         ("2-digit number written touching, each condition in turn", 2, "mnist", CONDITIONS, True),
         ("2-digit number written touching, other hands", 2, "other", CONDITIONS, True),
         ("blank page, each lighting in turn", 0, None, BLANK_CONDITIONS, False),
         ("blank page, everything", 0, None, ["everything"], False)]  # last: the kinds above keep their pages


def kinds(hands, rng, count, size=None):
    """COUNT pages of each of KINDS: (kind, page, the number on it or "" for none)."""
    for kind, n_digits, hand, conditions, touching in KINDS:
        for k in range(count):
            digits, truth = hands.draw(rng, n_digits, hand) if n_digits else ([], "")
            yield kind, as_jpeg(page(digits, rng, conditions[k % len(conditions)], size, touching), rng), truth


def picture(path, seed):
    """Save a figure of a few pages and, under each, the 28x28 images the model saw and what it read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    read, images, labels = reader()
    rng = np.random.default_rng(seed)
    shown = [("shadow", 1), ("ruled", 1), ("desk", 1), ("pencil", 1), ("everything", 4), ("desk", 4)]
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


def read_seed(count, seed, only="", fonts=None, keep_wrong=False):
    """Read COUNT pages of each kind (whose name holds ONLY) of SEED: ({kind: pages read right (a blank page:
    reported as blank)}, pages with a digit called blank, blank pages read as a digit, pages with a digit, and with
    KEEP_WRONG the pages read wrong as (kind, page, what the model saw, truth, read)). FONTS: the other hands' font
    files, instead of FONT_FOLDERS' (the pages are otherwise the same)."""
    read, images, labels = reader()
    right, called_blank, read_blank, with_digits, wrong = {}, 0, 0, 0, []
    rng, hands = np.random.default_rng(seed), Hands(images, labels, fonts)
    for kind, img, truth in kinds(hands, rng, count):
        if only not in kind:  # the pages are made all the same, so that each kind's pages stay the same
            continue
        got, seen = read(img)
        right[kind] = right.get(kind, 0) + (got == truth)
        with_digits += bool(truth)
        called_blank += bool(truth) and not got
        read_blank += not truth and bool(got)
        if got != truth and keep_wrong:
            wrong.append((kind, img, seen, truth, got))
    return right, called_blank, read_blank, with_digits, wrong


def one_thread():
    """Each process of --jobs computes on one thread, as several share the cores, and leaves Ctrl-C to the command,
    which stops them all."""
    import torch
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def measure(count, seeds, failures=None, only="", fonts=None, jobs=1):
    """Print, per kind of page, how many were read right (a blank page: reported as blank) over the pages of every
    seed in SEEDS, with the fewest and the most in one seed; how many pages with a digit were called blank and how
    many blank pages were read as a digit. FAILURES: save a grid of the pages read wrong there. FONTS: as read_seed's.
    JOBS: seeds read at once, each in its own process on one thread (the same figures as one after the other)."""
    tasks = [(count, seed, only, fonts, bool(failures)) for seed in seeds]
    print(f"reading {count} pages of each kind of {len(seeds)} seed(s), {jobs} at once", file=sys.stderr, flush=True)
    if jobs == 1:
        results = [read_seed(*task) for task in tasks]
    else:  # spawn, not fork: a forked copy of a process that has used torch's threads may hang
        with multiprocessing.get_context("spawn").Pool(jobs, initializer=one_thread) as pool:  # on leaving: stopped
            results = pool.starmap(read_seed, tasks)
    rights, called_blank, read_blank, with_digits, wrongs = zip(*results)  # each: one per seed
    right = {kind: [seed_rights[kind] for seed_rights in rights] for kind in rights[0]}  # right[kind][seed]
    with_digits, wrong = sum(with_digits), [case for seed_wrong in wrongs for case in seed_wrong]
    total = count * len(seeds)  # pages of each kind
    per_seed = len(seeds) > 1
    print(f"| pages | read right | share |{' fewest / most in a seed |' if per_seed else ''}\n"
          f"|---|---|---|{'---|' if per_seed else ''}")
    for kind, rights in right.items():
        spread = f" {min(rights)} / {max(rights)} of {count} |" if per_seed else ""
        print(f"| {kind} | {sum(rights):,} of {total:,} | {100 * sum(rights) / total:.1f}% |{spread}")

    def each(counts):
        return f" (each seed: {' / '.join(map(str, counts))})" if per_seed else ""
    rights_per_seed = [sum(rights[s] for rights in right.values()) for s in range(len(seeds))]
    blank_pages = len(right) * total - with_digits
    print(f"\npages with a digit reported as blank: {sum(called_blank):,} of {with_digits:,}{each(called_blank)}; "
          f"blank pages read as a digit: {sum(read_blank):,} of {blank_pages:,}{each(read_blank)}; "
          f"read right: {sum(rights_per_seed):,} of {len(right) * total:,}{each(rights_per_seed)}")
    if failures:
        grid(failures, wrong[:24])


def measure_mnist():
    """Print how MNIST's 10,000 test digits, each read as a 28x28 picture (light ink on black), come through the
    photo pipeline: read right, and read as more than one digit (a wide digit cut in two)."""
    read, images, labels = reader()
    right = split = 0
    for image, label in zip(images, labels):
        number, _ = read(Image.fromarray(image.numpy()))
        right += number == str(int(label))
        split += len(number) > 1
    print(f"MNIST test digits as 28x28 pictures: {right} of {len(images)} read right, {split} read as two digits")


def grid(path, cases):
    """A picture of CASES (kind, page, what the model saw, truth, read): the page above, the 28x28 images below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, min(6, len(cases)))
    rows = max(1, -(-len(cases) // columns))
    fig, axes = plt.subplots(2 * rows, columns, figsize=(2.4 * columns, 3.4 * rows), height_ratios=[3, 1] * rows,
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for k, (kind, img, seen, truth, got) in enumerate(cases):
        top, bottom = axes[2 * (k // columns), k % columns], axes[2 * (k // columns) + 1, k % columns]
        top.imshow(np.asarray(img))
        top.set_title(kind[:34], fontsize=6)
        bottom.imshow(np.hstack(seen) if seen else np.zeros((28, 28)), cmap="gray")
        bottom.set_title(f"read {got or 'blank'} (truth {truth or 'blank'})", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    from train import positive  # a type for argparse; only this command needs train.py

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pages", type=positive(int), default=50, help="pages of each kind")
    p.add_argument("--seed", type=int, nargs="+", default=[0],
                   help="the pages' seed; several: the table sums their pages, with each kind's worst and best seed")
    p.add_argument("--failures", metavar="PNG", help="also save a grid of the pages read wrong")
    p.add_argument("--only", default="", metavar="TEXT", help="only the kinds of page whose name holds TEXT")
    p.add_argument("--fonts", nargs="+", metavar="FOLDER",
                   help="write the other hands' font digits in the fonts of these folders under /usr/share/fonts "
                        "instead (fonts never used for a choice: how far the rules carry)")
    p.add_argument("--jobs", type=positive(int), default=1,
                   help="seeds read at once, each in its own process on one thread (up to one per core)")
    p.add_argument("--picture", metavar="PNG", help="instead, save a figure of a few pages and what the model saw")
    p.add_argument("--mnist", action="store_true",
                   help="instead, read MNIST's 10,000 test digits as 28x28 pictures (a check that they pass through)")
    args = p.parse_args(argv)
    if args.picture and len(args.seed) > 1:
        p.error("--picture draws one seed's pages: give one --seed")
    if any(seed < 0 for seed in args.seed):
        p.error(f"--seed: a seed is 0 or more, got {min(args.seed)}")
    if not any(args.only in kind for kind, *_ in KINDS):
        p.error(f"--only {args.only!r} is in the name of no kind of page; the kinds: {'; '.join(k for k, *_ in KINDS)}")
    for flag, path in (("--failures", args.failures), ("--picture", args.picture)):
        if path and not Path(path).absolute().parent.is_dir():  # now, not after the pages are read
            p.error(f"{flag}: there is no folder {Path(path).absolute().parent}")
    if args.mnist:
        measure_mnist()
    elif args.picture:
        picture(args.picture, *args.seed)
    else:
        fonts = font_files(args.fonts) if args.fonts else None
        if args.fonts and not fonts:
            p.error(f"no .ttf or .otf font in a folder named {' or '.join(args.fonts)} under /usr/share/fonts: "
                    "install the Debian package that has it (fonts-rufscript has rufscript)")
        missing = [] if args.fonts else missing_font_packages()
        if missing:  # the pages are still made, in the fonts there are: a machine without apt can measure too
            print(f"note: {' '.join(missing)} not installed, so the other hands' pages differ from those of the "
                  f"README's table (apt-get install {' '.join(missing)})", file=sys.stderr)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill or timeout(1): as Ctrl-C, so that the
        try:  # seeds' processes stop too
            measure(args.pages, args.seed, args.failures, args.only, fonts, min(args.jobs, len(args.seed)))
        except KeyboardInterrupt:  # the table needs every page, so nothing is printed
            print("\ninterrupted; no table (it sums every page of every seed)", file=sys.stderr)
            sys.exit(130)


if __name__ == "__main__":
    main()
