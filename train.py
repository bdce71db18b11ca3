"""Train the MNIST CNN: Adam + ReduceLROnPlateau on 50k images; the 10k validation split decides everything;
the official test set is scored once, at the end, on the checkpoint validation chose."""
import argparse
import functools
import importlib.metadata
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torchsummary import summary
from tqdm import tqdm

from checkpoint import CheckpointError, load_model, make_folder_or_exit, save_checkpoint, write_json
from cuda_graph import CapturedEpoch, set_capturable
from data import DATA_DIR, DataError, load_mnist, random_affine, split_train_val, to_float, with_other_hands
from hardware import choose_precision, pick_device
from model import ModelConfig, Net, count_parameters
from resume import RESUMABLE, ResumeError, read_resume_state, restore_run, rng_states

DRY_RUN_BATCHES = 3  # per phase: a smoke run for tests and CI
EVAL_BATCH_SIZE = 1000  # no gradients, so big batches: fewer, more efficient kernel calls
POSTFIX_EVERY = 50  # steps between progress-bar updates; each one waits for the device


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=positive(int), default=15, help="training epochs")
    p.add_argument("--batch-size", type=positive(int), default=256, help="training batch size")
    p.add_argument("--lr", type=positive(float), default=0.02, help="Adam's initial learning rate")
    p.add_argument("--lr-factor", type=positive(float), default=0.3,
                   help="ReduceLROnPlateau: multiply the LR by this")
    p.add_argument("--lr-patience", type=int, default=1,
                   help="ReduceLROnPlateau: epochs without a better --plateau-metric before it cuts the LR")
    p.add_argument("--plateau-metric", choices=["val_acc", "val_loss"], default="val_acc",
                   help="what ReduceLROnPlateau watches on the validation split (val_loss is plain cross-entropy)")
    p.add_argument("--channels", type=positive(int), nargs=4, default=list(ModelConfig.channels),
                   help="widths of the model's four conv layers")
    p.add_argument("--dropout", type=float, default=ModelConfig.dropout, help="dropout probability of the model")
    p.add_argument("--rotate", type=float, default=10.0, help="augmentation: max rotation, degrees")
    p.add_argument("--zoom", type=float, default=0.1, help="augmentation: max scale change, fraction")
    p.add_argument("--shift", type=float, default=0.1, help="augmentation: max shift, fraction of half the width")
    p.add_argument("--flag-ones", type=float, default=0.0,
                   help="share of the training split's 1s drawn once with a European 1's flag (validation and test "
                        "stay MNIST's own); the shipped checkpoint, which reads photos, was trained with 0.6")
    p.add_argument("--outlines", type=float, default=0.0,
                   help="share of the training split's digits drawn once as their outline, hollow strokes (after "
                        "--flag-ones; validation and test stay MNIST's own); the shipped checkpoint: 0.05")
    p.add_argument("--ema", type=float, default=0.995,
                   help="decay of the moving average of the weights that validation scores and checkpoints keep "
                        "(0: off, use the raw weights)")
    p.add_argument("--average-epochs", type=int, default=3,
                   help="the checkpoint: the mean of the weights validation scores (the EMA's, with --ema) at the end "
                        "of each of the last N epochs, BatchNorm statistics recomputed on the training images; "
                        "0: the epoch with the best validation accuracy")
    p.add_argument("--label-smoothing", type=float, default=0.05,
                   help="of the training loss (validation and test losses are plain cross-entropy)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="of the training steps (evaluation is always fp32); auto: bf16 on CUDA and on CPUs "
                        "with native bf16 (AVX512-BF16/AMX), else fp32")
    p.add_argument("--seed", type=int, default=1, help="seeds weights, batch order and augmentation")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="auto: cuda, then mps, then cpu")
    p.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                   help="on CUDA, capture the training step in a CUDA graph and replay it; --no-cuda-graph launches "
                        "each kernel from Python (slower, for comparison)")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="holds MNIST/raw/*-ubyte(.gz)")
    p.add_argument("--out-dir", default=str(Path("runs") / time.strftime("%Y%m%d-%H%M%S")),
                   help="checkpoints and metrics.json")
    p.add_argument("--dry-run", action="store_true",
                   help=f"{DRY_RUN_BATCHES} batches of each phase: a quick smoke test")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last.pt, with that run's own recipe, and end as it would "
                        "have, on the device it ran on; only --epochs (to extend a run), --device, --data-dir and "
                        "--[no-]cuda-graph may be given with it, and on another device the result is no longer "
                        "bit-identical")
    return p


def given_options(argv):
    """The dests of the options actually written on the command line (not defaulted)."""
    p = build_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS  # so that only what was given reaches the namespace
    return set(vars(p.parse_args(argv)))


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.resume:
        given = given_options(argv)
        clash = sorted(given - {*RESUMABLE, "resume"})
        if clash:
            p.error(f"argument --{clash[0].replace('_', '-')}: not allowed with --resume, which takes the run's "
                    "recipe from its checkpoint (only --epochs, --device, --data-dir and --[no-]cuda-graph may be "
                    "given with it)")
        args.out_dir = args.resume
        for name in ("epochs", "device"):
            if name not in given:
                setattr(args, name, None)  # the run's own
    if not 0 < args.lr_factor < 1:
        p.error(f"argument --lr-factor: must be between 0 and 1, got {args.lr_factor}")
    for name in ("ema", "label_smoothing", "dropout", "zoom"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"argument --{name.replace('_', '-')}: must be in [0, 1), got {getattr(args, name)}")
    for name in ("flag_ones", "outlines"):
        if not 0 <= getattr(args, name) <= 1:
            p.error(f"argument --{name.replace('_', '-')}: must be in [0, 1], got {getattr(args, name)}")
    for name in ("rotate", "shift"):
        if getattr(args, name) < 0:
            p.error(f"argument --{name}: must be >= 0, got {getattr(args, name)}")
    for name in ("lr_patience", "average_epochs"):
        if getattr(args, name) < 0:
            p.error(f"argument --{name.replace('_', '-')}: must be >= 0, got {getattr(args, name)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("argument --device: cuda was asked for but CUDA is not available here; use --device auto or cpu")
    if args.device == "mps" and not torch.backends.mps.is_available():
        p.error("argument --device: mps was asked for but Apple MPS is not available here; use --device auto or cpu")
    return args


def training_step(model, optimizer, x, y, bf16=False, label_smoothing=0.0, update_ema=None):
    """Forward, backward and Adam on one batch (its grads cleared before), then UPDATE_EMA(model); returns the loss
    and logits for the epoch's tallies. The CUDA path captures this same step in a graph (cuda_graph.py)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):  # no cache: as
        logits = model(x)  # CUDA graphs ask (the casts are in the graph); the same numbers either way
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    loss.backward()
    optimizer.step()
    if update_ema is not None:
        update_ema(model)
    return loss.detach(), logits


def train_one_epoch(model, optimizer, images, labels, batch_size, desc, augment, bf16=False, label_smoothing=0.0,
                    ema=None):
    """One pass over IMAGES in a fresh random order, each batch freshly augmented. Returns (loss, accuracy %)."""
    model.train()
    update_ema = ema.update_parameters if ema is not None else None
    order = torch.randperm(len(images), device=images.device)
    loss_sum = torch.zeros((), device=images.device)  # accumulated on the device: no host sync per step
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    seen = 0
    bar = tqdm(range(0, len(images), batch_size), desc=desc, leave=False, disable=None)
    for step, start in enumerate(bar, 1):
        idx = order[start:start + batch_size]
        x, y = augment(images[idx]), labels[idx]
        optimizer.zero_grad(set_to_none=True)
        loss, logits = training_step(model, optimizer, x, y, bf16, label_smoothing, update_ema)
        loss_sum += loss * y.numel()
        correct += (logits.argmax(1) == y).sum()
        seen += y.numel()  # a pair: 2 labels
        if not bar.disable and step % POSTFIX_EVERY == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
    return loss_sum.item() / seen, 100 * correct.item() / seen


@torch.inference_mode()
def evaluate(model, images, labels, batch_size=EVAL_BATCH_SIZE):
    """Mean cross-entropy and accuracy (%) of MODEL on IMAGES, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size])
        y = labels[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / labels.numel(), 100 * correct.item() / labels.numel()  # a pair: 2 labels


@torch.no_grad()
def average_with_batchnorm(average, train_images):
    """AVERAGE's weights with BatchNorm statistics of their own: a mean of weights has no running mean to match."""
    update_bn(train_images.split(EVAL_BATCH_SIZE), average)  # unaugmented, like what the model will be shown
    return average.module.eval()


def load_sets(data_dir, device, dry_run_batch_size=None, flag_ones=0.0, seed=0, outlines=0.0):
    """{"train", "val", "test"}: (images, labels), each whole set on DEVICE, a FLAG_ONES share of the training 1s
    flagged and an OUTLINES share of the training digits outlined (with SEED); a few batches each for a dry run."""
    train_images, train_labels, test_images, test_labels = load_mnist(data_dir)
    (train_images, train_labels), (val_images, val_labels) = split_train_val(train_images, train_labels)
    train_images = with_other_hands(train_images, train_labels, flag_ones, outlines, seed)
    sets = {"train": (train_images, train_labels), "val": (val_images, val_labels), "test": (test_images, test_labels)}
    if dry_run_batch_size:
        sizes = {"train": DRY_RUN_BATCHES * dry_run_batch_size, "val": DRY_RUN_BATCHES * EVAL_BATCH_SIZE,
                 "test": DRY_RUN_BATCHES * EVAL_BATCH_SIZE}
        sets = {k: (x[:sizes[k]], y[:sizes[k]]) for k, (x, y) in sets.items()}
    return {k: (to_float(x, device), y.to(device)) for k, (x, y) in sets.items()}


def train(args):
    """The whole recipe, or the rest of it with --resume; returns the metrics it writes to OUT_DIR/metrics.json."""
    started = time.perf_counter()
    resumed = None
    if args.resume:
        args, resumed = read_resume_state(args)
    random.seed(args.seed)
    torch.manual_seed(args.seed)  # seeds the CPU, CUDA and MPS generators
    device = pick_device(args.device)
    torch.backends.cudnn.deterministic = device.type == "cuda"  # same seed, same GPU, same run (NOTES.md: its cost)
    out_dir = Path(args.out_dir)

    sets = load_sets(args.data_dir, device, args.batch_size if args.dry_run else None, args.flag_ones, args.seed,
                     args.outlines)
    model = Net(ModelConfig(channels=tuple(args.channels), dropout=args.dropout))
    summary(model.eval(), (1, 28, 28), device="cpu")  # eval: the probe batch must not move BatchNorm's statistics
    params = count_parameters(model)
    versions = {"torch": torch.__version__, "torchvision": importlib.metadata.version("torchvision"),  # no import:
                "python": platform.python_version()}  # torchvision's takes seconds
    bf16, precision_reason = choose_precision(args.precision, device)
    threads = f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
    print(f"params: {params:,} | device: {device}{threads} | {'bf16' if bf16 else 'fp32'} training "
          f"({precision_reason}) | "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(" | ".join(f"{name} {len(images):,}" for name, (images, _) in sets.items()) + f" | out: {out_dir}")
    model.to(device, memory_format=torch.channels_last)  # NHWC: faster convolutions on CPU (oneDNN) and GPU

    graphed = device.type == "cuda" and args.cuda_graph
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=device.type == "cuda")  # fused: fewer kernels
    plateau_mode = "max" if args.plateau_metric == "val_acc" else "min"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=plateau_mode, factor=args.lr_factor,
                                                           patience=args.lr_patience)
    augment = functools.partial(random_affine, degrees=args.rotate, scale=args.zoom, shift=args.shift)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True) if args.ema else None
    scored = ema.module if ema is not None else model  # what validation scores and checkpoints keep
    average = AveragedModel(scored, use_buffers=False) if args.average_epochs else None  # BN: recomputed at the end
    progress = {"history": [], "best_epoch": None, "averaged_epochs": [], "seconds": 0.0, "resumed_at_epochs": []}
    if resumed is not None:
        progress = restore_run(resumed, out_dir / "last.pt", model, ema, average, optimizer, scheduler, device)
        print(f"resuming {out_dir} at epoch {resumed['epoch'] + 1} of {args.epochs}")
    set_capturable(optimizer, graphed)  # after the restore: its checkpoint may come from the other path
    if graphed:
        step = functools.partial(training_step, model, optimizer, bf16=bf16, label_smoothing=args.label_smoothing)
        run_epoch = CapturedEpoch(step, model, optimizer, *sets["train"], args.batch_size, augment, ema)
    else:
        run_epoch = functools.partial(train_one_epoch, model, optimizer, *sets["train"], args.batch_size,
                                      augment=augment, bf16=bf16, label_smoothing=args.label_smoothing, ema=ema)
    history, seconds_before = progress["history"], progress["seconds"]  # the time of the earlier pieces
    setup_seconds = time.perf_counter() - started  # data load, model build: before the first step of this piece
    for epoch in range(len(history) + 1, args.epochs + 1):
        epoch_start = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])  # a tensor on the CUDA graph's path
        train_loss, train_acc = run_epoch(desc=f"epoch {epoch}/{args.epochs}")
        val_loss, val_acc = evaluate(scored, *sets["val"])
        scheduler.step(val_acc if args.plateau_metric == "val_acc" else val_loss)  # never the test set
        if epoch > args.epochs - args.average_epochs:
            average.update_parameters(scored)
            progress["averaged_epochs"].append(epoch)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": val_loss, "val_acc": val_acc, "seconds": time.perf_counter() - epoch_start}
        history.append(row)
        print(f"epoch {epoch:2d} | lr {lr:.2e} | train loss {train_loss:.4f} acc {train_acc:6.2f}% | "
              f"val loss {val_loss:.4f} acc {val_acc:6.2f}% | {row['seconds']:.1f}s", flush=True)
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                 "metrics": row}
        best = history[progress["best_epoch"] - 1] if progress["best_epoch"] else None
        if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):  # ties: the lower loss
            progress["best_epoch"] = epoch
            if average is None:
                save_checkpoint(out_dir / "best.pt", scored, **state)
        progress["seconds"] = seconds_before + time.perf_counter() - started
        resume_state = {"config": {k: v for k, v in vars(args).items() if k not in ("resume", "out_dir")},
                        "raw_model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                        "average": average.state_dict() if average is not None else None,
                        "progress": progress, "rng": rng_states(device), "device": device.type}
        save_checkpoint(out_dir / "last.pt", scored, **state, resume=resume_state)  # all the run's future needs

    best_epoch = progress["best_epoch"]
    if average is None:
        chosen = {"rule": f"epoch {best_epoch}, the best by validation", **history[best_epoch - 1]}
    else:  # the mean of the last epochs: no single lucky epoch, and nothing chosen by looking at validation
        averaged = average_with_batchnorm(average, sets["train"][0])
        epochs = progress["averaged_epochs"]
        chosen = dict(zip(("val_loss", "val_acc"), evaluate(averaged, *sets["val"])),
                      rule=f"the mean of epochs {epochs[0]}-{epochs[-1]}", epochs=epochs)
        save_checkpoint(out_dir / "best.pt", averaged, epoch=args.epochs, metrics=chosen)
    best_model, _ = load_model(out_dir / "best.pt", device)  # the test set sees only the chosen weights, once
    test_loss, test_acc = evaluate(best_model, *sets["test"])
    total_seconds = seconds_before + time.perf_counter() - started
    print(f"checkpoint: {chosen['rule']} (val acc {chosen['val_acc']:.2f}%) | best epoch by validation "
          f"{best_epoch} ({history[best_epoch - 1]['val_acc']:.2f}%) | test loss {test_loss:.4f} | "
          f"test acc {test_acc:.2f}% | {total_seconds:.1f}s in all: "
          f"{setup_seconds:.1f}s to load the data and build the model, "
          f"{total_seconds - setup_seconds:.1f}s from the first step to the test score")
    metrics = {"config": vars(args), "params": params,
               "device": str(device), "bf16": bf16, "precision_reason": precision_reason,
               "threads": torch.get_num_threads(), "machine": platform.machine(), **versions,
               "history": history, "best_epoch": best_epoch, "best_val_acc": history[best_epoch - 1]["val_acc"],
               "checkpoint": chosen,
               "test_loss": test_loss, "test_acc": test_acc, "total_seconds": total_seconds,
               "setup_seconds": setup_seconds, "seconds_to_test_score": total_seconds - setup_seconds,
               "resumed_at_epochs": progress["resumed_at_epochs"]}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def main(argv=None):
    args = parse_args(argv)
    if not args.resume:  # a resumed run's folder must exist already
        make_folder_or_exit(args.out_dir, f"--out-dir {args.out_dir}")
    try:
        train(args)
    except (DataError, CheckpointError, ResumeError) as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # e.g. --out-dir not writable, disk full: what was saved before stays intact
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # Ctrl-C: every finished epoch is in last.pt (written whole, or not at all)
        print(f"\ninterrupted; the finished epochs are saved in {args.out_dir}. To continue: "
              f"python train.py --resume {shlex.quote(str(args.out_dir))}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
