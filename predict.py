"""Predict the digit in people's own images (files or folders): each is turned into what MNIST looks like first."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from checkpoint import CheckpointError, load_model

# shipped with the repo, made by `python train.py --seed 1 --out-dir checkpoints`
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "best.pt"
INK_THRESHOLD = 0.2  # of the ink's full contrast: what counts as ink when finding the digit's bounding box


class ImageError(Exception):
    """An image that cannot be read or holds no digit; the message says why."""


def read_grey(path):
    """Open any image PIL reads as an 8-bit greyscale PIL image; transparency is flattened onto white paper."""
    if not Path(path).is_file():
        raise ImageError("no such file")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # phone photos carry their rotation in EXIF
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float greys: scale, as convert would clip
                pixels = np.asarray(img, dtype=np.float32)
                img = Image.fromarray(np.uint8(255 * np.clip(pixels, 0, None) / max(pixels.max(), 1)))
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
            grey = img.convert("L")
            grey.load()  # decode now, inside the try: truncated files fail here
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    return grey


def mnist_style(grey):
    """MNIST's own preprocessing: light ink on black, the ink's bounding box scaled into 20x20 keeping its aspect
    ratio, then placed in 28x28 with its centre of mass at the centre. Returns float32 (28, 28) in [0, 1]."""
    pixels = np.asarray(grey, dtype=np.float32) / 255
    if np.median(pixels) > 0.5:  # the paper is most of the picture: light paper means dark ink
        pixels, grey = 1 - pixels, ImageOps.invert(grey)
    background = np.median(pixels)
    smooth = np.asarray(grey.filter(ImageFilter.MedianFilter(3)), dtype=np.float32) / 255  # speckle is not ink
    contrast = smooth.max() - background
    if contrast < 0.1:
        raise ImageError("no digit found (the image is nearly uniform)")
    ink = np.clip((pixels - background) / contrast, 0, 1)
    rows, cols = np.nonzero((smooth - background) / contrast > INK_THRESHOLD)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]

    h, w = crop.shape
    scale = 20 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    digit = np.clip(digit, 0, None)
    digit /= max(digit.max(), 1e-6)  # thin strokes fade when shrunk: restore full ink

    canvas = np.zeros((28, 28), dtype=np.float32)
    mass = digit.sum()
    cy = (digit.sum(1) * np.arange(digit.shape[0])).sum() / mass
    cx = (digit.sum(0) * np.arange(digit.shape[1])).sum() / mass
    top = int(np.clip(round(14 - cy), 0, 28 - digit.shape[0]))  # MNIST puts the centre of mass at pixel (14, 14)
    left = int(np.clip(round(14 - cx), 0, 28 - digit.shape[1]))
    canvas[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return canvas


@torch.inference_mode()
def predict_images(model, images):
    """Softmax probabilities (N, 10) for float images (N, 28, 28) in [0, 1]."""
    x = torch.from_numpy(np.stack(images)).unsqueeze(1).to(next(model.parameters()).device)
    return torch.softmax(model(x), dim=1).cpu()


def export_onnx(model, path, atol=1e-4):
    """Write MODEL to PATH as ONNX (any batch size), run it in onnxruntime and compare with PyTorch."""
    import onnxruntime  # imported here: only export needs it

    x = torch.rand(7, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(model, (x,), path, input_names=["images"], output_names=["logits"],
                      dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"images": x.numpy()})
    with torch.inference_mode():
        diff = float(np.abs(onnx_logits - model(x).numpy()).max())
    if not diff <= atol:
        raise RuntimeError(f"ONNX and PyTorch disagree: max |difference| {diff:.2e} > {atol:.0e}")
    return f"exported {path}: ONNX outputs match PyTorch (max |difference| {diff:.1e}, 7 images)"


def expand_paths(paths):
    """Files as given; folders recursively, every file inside, sorted. A missing path is kept: it gets an error."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            yield path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="*", help="image files or folders (searched recursively)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint written by train.py")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--export", metavar="FILE.onnx", help="export the model to ONNX and check it against PyTorch")
    args = p.parse_args(argv)
    if not args.paths and not args.export:
        p.error("give at least one image file or folder (or --export FILE.onnx)")
    return args


def report(path, probs=None, error=None, as_json=False):
    if error is not None:
        print(json.dumps({"path": str(path), "error": error}) if as_json else f"{path}: error: {error}", flush=True)
        return
    digit = int(probs.argmax())
    if as_json:
        print(json.dumps({"path": str(path), "digit": digit, "confidence": round(float(probs[digit]), 6),
                          "probabilities": [round(float(p), 6) for p in probs]}), flush=True)
    else:
        print(f"{path}: {digit} ({100 * float(probs[digit]):.1f}%)", flush=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        model, _ = load_model(args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    if args.export:
        try:
            print(export_onnx(model, args.export))
        except Exception as e:  # noqa: BLE001 - the exporter fails in many ways; the user needs one line
            sys.exit(f"error: export to {args.export} failed: {str(e).strip().splitlines()[0]}")
    failed = 0
    for path in expand_paths(args.paths):
        try:
            image = mnist_style(read_grey(path))
        except ImageError as e:
            report(path, error=str(e), as_json=args.json)
            failed += 1
            continue
        report(path, predict_images(model, [image])[0], as_json=args.json)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
