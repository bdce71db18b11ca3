"""Benchmark the default recipe: `python train.py` over several seeds (accuracy spread and time), one epoch of a
conventional torchvision Dataset + PIL transforms + DataLoader pipeline against ours, and inference speed."""
import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import transforms

import hardware
import train
from checkpoint import CheckpointError, make_folder_or_exit, write_json
from data import DATA_DIR, DataError, load_mnist, split_train_val, to_float
from model import MNIST_MEAN, MNIST_STD, ModelConfig, Net


def cpu_name():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def startup_seconds():
    """A new process's start: Python and train.py's imports (torch's own take seconds), before train() runs."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import train"], cwd=Path(__file__).resolve().parent, check=True)
    return time.perf_counter() - start


def run_seeds(seeds, out_dir, extra_args):
    """`python train.py --seed S` for each seed, its output in OUT_DIR/seed-S/train.log; returns the metrics."""
    results = []
    for seed in seeds:
        run_dir = out_dir / f"seed-{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "w") as log, contextlib.redirect_stdout(log):
            m = train.train(train.parse_args(["--seed", str(seed), "--out-dir", str(run_dir), *extra_args]))
        results.append(m)
        epoch_s = statistics.mean(r["seconds"] for r in m["history"])
        print(f"{'bf16' if m['bf16'] else 'fp32'} seed {seed}: test acc {m['test_acc']:.2f}% | "
              f"checkpoint: {m['checkpoint']['rule']} of {len(m['history'])} | {epoch_s:.1f} s/epoch | "
              f"{m['seconds_to_test_score']:.1f} s to the test score, {m['total_seconds']:.1f} s in all", flush=True)
    return results


class SeedNet(nn.Module):
    """The seed repo's model as reconstructed: 9.4k parameters, two convs at full resolution, a 1x1 transition."""

    def __init__(self):
        super().__init__()
        block = lambda c_in, c_out: [nn.Conv2d(c_in, c_out, 3, bias=False), nn.BatchNorm2d(c_out),  # noqa: E731
                                     nn.ReLU(), nn.Dropout(0.05)]
        self.net = nn.Sequential(*block(1, 8), *block(8, 12), nn.MaxPool2d(2), nn.Conv2d(12, 8, 1, bias=False),
                                 *block(8, 16), *block(16, 16), *block(16, 16), *block(16, 16),
                                 nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 10, 1))

    def forward(self, x):
        return self.net((x - MNIST_MEAN) / MNIST_STD).flatten(1)


def conventional_loader(data_dir, train_split, batch_size, workers, rotation):
    """torchvision MNIST through per-image PIL transforms and a DataLoader: the usual pipeline."""
    load_mnist(data_dir)  # checks the files and extracts the IDX files torchvision's MNIST reads
    augment = [transforms.RandomRotation(rotation)] if rotation else []
    dataset = torchvision.datasets.MNIST(data_dir, train=train_split != "test", transform=transforms.Compose(
        [*augment, transforms.ToTensor()]))  # both models normalise inside
    if train_split != "test":  # the same 50k/10k split as ours
        (train_index, _), (val_index, _) = split_train_val(torch.arange(len(dataset)), dataset.targets)
        dataset = torch.utils.data.Subset(dataset, train_index if train_split == "train" else val_index)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train_split == "train",
                                       num_workers=workers)


def train_through_loader(model, optimizer, loader, max_batches=None):
    """One training epoch of MODEL over a DataLoader, fp32 (MAX_BATCHES: stop early, for tests)."""
    model.train()
    for step, (x, y) in enumerate(loader):
        if step == max_batches:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def seed_recipe(data_dir, epochs=19, max_batches=None):
    """The seed repo's recipe, reconstructed, under our protocol: SeedNet, per-image PIL rotation (7 degrees),
    DataLoader with batch 128, Adam + ReduceLROnPlateau on validation loss, EPOCHS epochs, fp32; the last epoch's
    model is scored on the test set. Returns (seconds, test accuracy %)."""
    torch.manual_seed(1)
    start = time.perf_counter()
    loaders = {split: conventional_loader(data_dir, split, 128 if split == "train" else 1000, 0,
                                          7 if split == "train" else 0) for split in ("train", "val", "test")}
    model = SeedNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=1)

    def scored(split):
        loss_sum, correct, seen = 0.0, 0, 0
        model.eval()
        with torch.inference_mode():
            for step, (x, y) in enumerate(loaders[split]):
                if step == max_batches:
                    break
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
        return loss_sum / seen, 100 * correct / seen

    for _ in range(epochs):
        train_through_loader(model, optimizer, loaders["train"], max_batches)
        scheduler.step(scored("val")[0])
    return time.perf_counter() - start, scored("test")[1]


def conventional_epoch_seconds(data_dir, batch_size, workers, max_batches=None):
    """One training epoch of our model the usual way: torchvision MNIST, per-image PIL rotation, DataLoader."""
    loader = conventional_loader(data_dir, "train", batch_size, workers, rotation=10)
    model = Net(ModelConfig())
    start = time.perf_counter()
    train_through_loader(model, torch.optim.Adam(model.parameters()), loader, max_batches)
    return time.perf_counter() - start


def inference_images_per_second(data_dir, repeats=3):
    """Batched evaluation of the 10k test images on the CPU, best of REPEATS."""
    _, _, test_images, test_labels = load_mnist(data_dir)
    images, model = to_float(test_images, "cpu"), Net(ModelConfig()).to(memory_format=torch.channels_last)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        train.evaluate(model, images, test_labels)
        times.append(time.perf_counter() - start)
    return len(images) / min(times)


def summarise(results):
    acc = [m["test_acc"] for m in results]
    epoch_s = [r["seconds"] for m in results for r in m["history"]]
    total = [m["total_seconds"] for m in results]
    return {"runs": len(results), "params": results[0]["params"], "epochs": len(results[0]["history"]),
            "test_acc_mean": statistics.mean(acc), "test_acc_min": min(acc), "test_acc_max": max(acc),
            "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "seconds_per_epoch_mean": statistics.mean(epoch_s), "total_seconds_mean": statistics.mean(total),
            "seconds_to_test_score_mean": statistics.mean(m["seconds_to_test_score"] for m in results),
            "total_seconds_max": max(total)}


def markdown(runs, machine, command, speed=None):
    """RUNS: {precision: (seeds, results)}. The per-seed table, a summary line per precision, the speed table."""
    lines = [f"Command: `{command}`  ",
             f"Machine: {machine['device_name']}, {machine['threads']} threads, --precision auto: "
             f"{machine['auto_precision']}; torch {machine['torch']}, "
             f"torchvision {machine['torchvision']}, Python {machine['python']}; a new process takes "
             f"{machine['startup_s']:.1f} s to start Python and import train.py, before each whole run below", "",
             "| precision | seed | test acc (%) | checkpoint | its val acc (%) | s/epoch | first step to test "
             "score, s | whole run, s |", "|---|---|---|---|---|---|---|---|"]
    for precision, (seeds, results) in runs.items():
        for seed, m in zip(seeds, results):
            epoch_s = statistics.mean(r["seconds"] for r in m["history"])
            lines.append(f"| {precision} | {seed} | {m['test_acc']:.2f} | {m['checkpoint']['rule']} of "
                         f"{len(m['history'])} | {m['checkpoint']['val_acc']:.2f} | {epoch_s:.1f} | "
                         f"{m['seconds_to_test_score']:.1f} | {m['total_seconds']:.1f} |")
    lines.append("")
    for precision, (_, results) in runs.items():
        s = summarise(results)
        lines.append(f"**{precision}: {s['params']:,} parameters, {s['epochs']} epochs: test accuracy mean "
                     f"{s['test_acc_mean']:.2f}%, min {s['test_acc_min']:.2f}%, max {s['test_acc_max']:.2f}%, "
                     f"std {s['test_acc_std']:.2f} over {s['runs']} seeds; {s['seconds_per_epoch_mean']:.1f} s per "
                     f"epoch, {s['seconds_to_test_score_mean']:.1f} s from the first step to the test score, "
                     f"{s['total_seconds_mean']:.1f} s per whole run (max {s['total_seconds_max']:.1f} s).**  ")
    if speed:
        ours = speed["ours_total_s"]
        lines += ["", f"| pipeline (same machine, same session) | seconds | ours ({speed['ours_precision']}, "
                      f"{ours:.1f} s a run, {speed['ours_epoch_s']:.1f} s an epoch) is faster by |", "|---|---|---|"]
        if "seed_recipe_s" in speed:
            lines.append(f"| the seed recipe, reconstructed: 9.4k-param CNN, per-image PIL rotation, DataLoader, "
                         f"batch 128, 19 epochs, fp32 (test acc {speed['seed_recipe_test_acc']:.2f}%), whole run | "
                         f"{speed['seed_recipe_s']:.1f} | {speed['seed_recipe_s'] / ours:.1f}x |")
        lines += [f"| one epoch of our model through torchvision MNIST + per-image PIL RandomRotation + DataLoader "
                  f"with {w} worker{'s' * (w != 1)}, batch 128, fp32 | {sec:.1f} | {sec / speed['ours_epoch_s']:.1f}x |"
                  for w, sec in speed["conventional_s"].items()]
        lines += ["", f"Inference: {speed['inference_images_per_s']:,.0f} test images per second (batches of "
                      f"{train.EVAL_BATCH_SIZE}, float32, CPU)."]
    return "\n".join(lines) + "\n"


def default_precisions(device):
    """Both paths where --precision auto picks bf16, else fp32 only (emulated bf16 measures nothing useful)."""
    bf16, _ = hardware.choose_precision("auto", device)
    return ["bf16", "fp32"] if bf16 else ["fp32"]


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="one default run per seed")
    p.add_argument("--precisions", nargs="+", choices=["bf16", "fp32"],
                   help="training precisions to run each seed with (default: bf16 and fp32 where train.py's "
                        "--precision auto picks bf16, else fp32)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="as train.py's")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="holds MNIST/raw/*-ubyte(.gz)")
    p.add_argument("--out-dir", default="runs/benchmark", help="per-seed runs, benchmark.json and benchmark.md")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                   help="DataLoader worker counts to time the conventional pipeline with")
    p.add_argument("--seed-recipe", action="store_true",
                   help="also run the seed repo's recipe (19 epochs, about 8 minutes on 2 CPU cores) for the speed-up")
    p.add_argument("--skip-speed", action="store_true", help="only the seed runs")
    p.add_argument("--train-args", default="",
                   help="extra train.py arguments in one string, e.g. '--epochs 5' (not the default!); one flag alone "
                        "takes '=': --train-args=--dry-run")
    words = sys.argv[1:] if argv is None else argv
    for flag, value in zip(words, words[1:]):  # argparse reads a lone "--dry-run" as a flag of its own, and says
        if flag == "--train-args" and value.startswith("-") and " " not in value:  # only "expected one argument"
            p.error(f"--train-args: write one flag alone with '=': --train-args={value}")
    args = p.parse_args(argv)
    make_folder_or_exit(args.out_dir, f"--out-dir {args.out_dir}")
    device = hardware.pick_device(args.device)
    precisions = args.precisions or default_precisions(device)
    extra = ["--data-dir", args.data_dir, "--device", device.type, *args.train_args.split()]
    train.parse_args(extra)  # a bad --train-args: train.py's one-line error now, not after the machine is timed
    try:
        command = " ".join(["python benchmark.py", *words])
        benchmark(args, device, precisions, extra, command)
    except (DataError, CheckpointError, OSError) as e:  # the MNIST files, or a run's folder not writable
        sys.exit(f"error: {e}")


def benchmark(args, device, precisions, extra, command):
    """The seed runs for each of PRECISIONS (train.py with EXTRA arguments), then (unless args.skip_speed) the speed
    comparison; writes benchmark.json and benchmark.md (with COMMAND, which made them) and prints the table."""
    out_dir = Path(args.out_dir)
    machine = {"device": device.type, "device_name": device_name(device),
               "auto_precision": default_precisions(device)[0],
               "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "torchvision": torchvision.__version__, "python": platform.python_version(),
               "startup_s": startup_seconds()}
    print(f"machine: {machine}", flush=True)

    runs = {precision: (args.seeds, run_seeds(args.seeds, out_dir / precision, [*extra, "--precision", precision]))
            for precision in precisions}
    speed = None
    if not args.skip_speed:  # ours: the runs just timed by train.py itself, not a second copy of its setup
        first = summarise(runs[precisions[0]][1])
        speed = {"ours_precision": precisions[0], "ours_total_s": first["total_seconds_mean"],
                 "ours_epoch_s": first["seconds_per_epoch_mean"],
                 "conventional_s": {w: conventional_epoch_seconds(args.data_dir, 128, w) for w in args.workers},
                 "inference_images_per_s": inference_images_per_second(args.data_dir)}
        if args.seed_recipe:
            speed["seed_recipe_s"], speed["seed_recipe_test_acc"] = seed_recipe(args.data_dir)
    table = markdown(runs, machine, command, speed)
    write_json(out_dir / "benchmark.json", {
        "machine": machine, "seeds": args.seeds, "train_args": extra, "speed": speed,
        "summary": {precision: summarise(results) for precision, (_, results) in runs.items()},
        "runs": {precision: [{k: m[k] for k in ("test_acc", "test_loss", "checkpoint", "best_epoch", "total_seconds",
                                                 "seconds_to_test_score", "precision_reason", "history")}
                             for m in results]
                 for precision, (_, results) in runs.items()}})
    (out_dir / "benchmark.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
