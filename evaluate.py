"""Report on a checkpoint: test accuracy, per-class accuracy, confusion matrix, and pictures of all three plus
the training curves from the metrics.json beside the checkpoint. Makes no decision: it only reports."""
import argparse
import json
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # files only, no window: works on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from checkpoint import CheckpointError, load_model, make_folder_or_exit  # noqa: E402
from data import DATA_DIR, DataError, load_mnist, to_float  # noqa: E402
from predict import DEFAULT_CHECKPOINT  # noqa: E402

MAX_SHOWN_ERRORS = 60


@torch.inference_mode()
def predict_labels(model, images, batch_size=2000):
    """Predicted digit for each float image (N, 1, 28, 28)."""
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def confusion_matrix(true, pred, classes=10):
    """counts[t, p]: how many images of digit t were predicted as p."""
    return torch.bincount(true * classes + pred, minlength=classes * classes).view(classes, classes)


def print_report(counts):
    per_class = 100 * counts.diag() / counts.sum(1)
    print(f"test accuracy: {100 * counts.diag().sum() / counts.sum():.2f}% ({counts.sum() - counts.diag().sum()} "
          f"errors in {counts.sum()})")
    print("per class: " + "  ".join(f"{d}: {a:.2f}%" for d, a in enumerate(per_class.tolist())))
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("      " + "".join(f"{d:>6}" for d in range(10)))
    for d, row in enumerate(counts.tolist()):
        print(f"{d:>6}" + "".join(f"{n:>6}" for n in row))


def plot_curves(history, checkpoint, path):
    """Loss and accuracy by epoch; CHECKPOINT (metrics.json's) marks the epochs the checkpoint was made of."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "cross-entropy"), (axes[1], "acc", "accuracy (%)")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", label="train (augmented, smoothed labels)")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], "o-", label="validation")
        if "epochs" in checkpoint:
            ax.axvspan(checkpoint["epochs"][0] - 0.2, checkpoint["epochs"][-1] + 0.2, color="grey", alpha=0.2,
                       label=f"checkpoint: {checkpoint['rule']}")
        else:
            ax.axvline(checkpoint["epoch"], color="grey", linestyle=":", label=f"checkpoint: {checkpoint['rule']}")
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_ylim(97, 100)
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(counts, path):
    fig, ax = plt.subplots(figsize=(5.6, 5))
    off_diagonal = counts.clone().fill_diagonal_(0)  # the diagonal would drown the errors' colours
    ax.imshow(off_diagonal.numpy(), cmap="Reds")
    for t in range(10):
        for p in range(10):
            dark = off_diagonal[t, p] > off_diagonal.max() / 2  # white text on the darkest cells
            ax.text(p, t, int(counts[t, p]), ha="center", va="center", fontsize=8,
                    color="green" if t == p else "white" if dark else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title="confusion matrix (test set; errors shaded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_errors(images, true, pred, path):
    wrong = (true != pred).nonzero().flatten()[:MAX_SHOWN_ERRORS]
    cols = 10
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(images[i, 0].numpy(), cmap="gray")
        ax.set_title(f"{true[i]} → {pred[i]}", fontsize=9, color="crimson")
    fig.suptitle(f"misclassified test digits, true → predicted ({len(wrong)} of {int((true != pred).sum())} shown)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_metrics(path):
    """train.py's metrics.json at PATH, or None where there is no such file; ValueError where it is not one."""
    if not path.is_file():
        return None
    advice = "give the run's metrics.json with --metrics"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # unreadable, not text, or not JSON
        raise ValueError(f"{path} cannot be read ({str(e).splitlines()[0]}); {advice}") from e
    if not isinstance(metrics, dict) or "history" not in metrics or not {"checkpoint", "best_epoch"} & set(metrics):
        raise ValueError(f"{path} is not a metrics.json written by train.py (no training history); {advice}")
    return metrics


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint written by train.py")
    p.add_argument("--metrics", help="metrics.json with the training history (default: beside the checkpoint)")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="holds MNIST/raw/*-ubyte(.gz)")
    p.add_argument("--out-dir", default="runs/evaluate", help="where the PNG pictures go")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    metrics_path = Path(args.metrics or Path(args.checkpoint).with_name("metrics.json"))
    out = Path(args.out_dir)
    try:
        model, _ = load_model(args.checkpoint)
        _, _, test_images, test_labels = load_mnist(args.data_dir)
        metrics = read_metrics(metrics_path)
    except (CheckpointError, DataError, ValueError) as e:
        sys.exit(f"error: {e}")
    make_folder_or_exit(out, f"--out-dir {out}")
    images = to_float(test_images, "cpu")
    pred = predict_labels(model, images)
    counts = confusion_matrix(test_labels, pred)
    print_report(counts)

    plot_confusion(counts, out / "confusion_matrix.png")
    plot_errors(images, test_labels, pred, out / "misclassified.png")
    written = ["confusion_matrix.png", "misclassified.png"]
    if metrics:
        checkpoint = metrics.get("checkpoint") or {"epoch": metrics["best_epoch"],  # from before the rule was saved
                                                   "rule": f"epoch {metrics['best_epoch']}, the best by validation"}
        plot_curves(metrics["history"], checkpoint, out / "training_curves.png")
        written.append("training_curves.png")
    else:
        print(f"no {metrics_path}: training curves skipped (pass --metrics)")
    print(f"wrote {', '.join(str(out / w) for w in written)}")


if __name__ == "__main__":
    main()
