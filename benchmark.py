"""Benchmark the default recipe: `python train.py` over several seeds (accuracy spread and time), one epoch of a
conventional torchvision Dataset + PIL transforms + DataLoader pipeline against ours, and inference speed."""
import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

import train
from checkpoint import write_json
from data import load_mnist, split_train_val, to_float
from model import ModelConfig, Net


def cpu_name():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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
        print(f"seed {seed}: test acc {m['test_acc']:.2f}% | best epoch {m['best_epoch']}/{len(m['history'])} | "
              f"{epoch_s:.1f} s/epoch | {m['total_seconds']:.1f} s in all", flush=True)
    return results


def conventional_epoch_seconds(data_dir, batch_size, workers, max_batches=None):
    """One training epoch the usual way: torchvision MNIST, per-sample PIL RandomRotation, DataLoader."""
    load_mnist(data_dir)  # checks the files and extracts the IDX files torchvision's MNIST reads
    dataset = torchvision.datasets.MNIST(data_dir, train=True, transform=transforms.Compose(
        [transforms.RandomRotation(10), transforms.ToTensor()]))
    (train_index, _), _ = split_train_val(torch.arange(len(dataset)), dataset.targets)  # the same 50k as ours
    train_subset = torch.utils.data.Subset(dataset, train_index)
    loader = torch.utils.data.DataLoader(train_subset, batch_size=batch_size, shuffle=True, num_workers=workers)
    model = Net(ModelConfig())
    optimizer = torch.optim.Adam(model.parameters())
    model.train()
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if max_batches is not None and step == max_batches:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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
            "total_seconds_max": max(total)}


def markdown(summary, results, seeds, speed, machine, command):
    lines = [f"Command: `{command}`  ",
             f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
             f"torchvision {machine['torchvision']}, Python {machine['python']}", "",
             "| seed | test acc (%) | best epoch (by val) | val acc (%) | s/epoch | total s |",
             "|---|---|---|---|---|---|"]
    for seed, m in zip(seeds, results):
        epoch_s = statistics.mean(r["seconds"] for r in m["history"])
        lines.append(f"| {seed} | {m['test_acc']:.2f} | {m['best_epoch']} of {len(m['history'])} | "
                     f"{m['best_val_acc']:.2f} | {epoch_s:.1f} | {m['total_seconds']:.1f} |")
    s = summary
    lines += ["", f"**{s['params']:,} parameters, {s['epochs']} epochs: test accuracy mean {s['test_acc_mean']:.2f}%, "
                  f"min {s['test_acc_min']:.2f}%, max {s['test_acc_max']:.2f}%, std {s['test_acc_std']:.2f} "
                  f"over {s['runs']} seeds; {s['seconds_per_epoch_mean']:.1f} s per epoch, "
                  f"{s['total_seconds_mean']:.1f} s per whole run (max {s['total_seconds_max']:.1f} s).**"]
    if speed:
        lines += ["", "| one 50k-image training epoch, same model | seconds | ours is faster by |", "|---|---|---|"]
        lines += [f"| conventional: torchvision MNIST + per-image PIL RandomRotation + DataLoader with {w} worker"
                  f"{'s' * (w != 1)}, batch 128, float32 | {sec:.1f} | {sec / speed['ours_s']:.1f}x |"
                  for w, sec in speed["conventional_s"].items()]
        lines += [f"| ours: the mean epoch of the runs above (in-memory tensors, batch augmentation, the default "
                  f"recipe, validation included) | {speed['ours_s']:.1f} | |", "",
                  f"Inference: {speed['inference_images_per_s']:,.0f} test images per second (batches of "
                  f"{train.EVAL_BATCH_SIZE}, float32, CPU)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="one default run per seed")
    p.add_argument("--data-dir", default="data", help="holds MNIST/raw/*-ubyte(.gz)")
    p.add_argument("--out-dir", default="runs/benchmark", help="per-seed runs, benchmark.json and benchmark.md")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                   help="DataLoader worker counts to time the conventional pipeline with")
    p.add_argument("--skip-speed", action="store_true", help="only the seed runs")
    p.add_argument("--train-args", default="", help="extra train.py arguments, e.g. '--epochs 5' (not the default!)")
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir)
    extra = ["--data-dir", args.data_dir, *args.train_args.split()]
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()}
    print(f"machine: {machine}", flush=True)

    results = run_seeds(args.seeds, out_dir, extra)
    summary = summarise(results)
    speed = None
    if not args.skip_speed:  # ours: the epochs just timed by train.py itself, not a second copy of its setup
        speed = {"conventional_s": {w: conventional_epoch_seconds(args.data_dir, 128, w) for w in args.workers},
                 "ours_s": summary["seconds_per_epoch_mean"],
                 "inference_images_per_s": inference_images_per_second(args.data_dir)}
    command = " ".join(["python benchmark.py", *(sys.argv[1:] if argv is None else argv)])
    table = markdown(summary, results, args.seeds, speed, machine, command)
    write_json(out_dir / "benchmark.json", {"machine": machine, "seeds": args.seeds, "train_args": extra,
                                             "summary": summary, "speed": speed,
                                             "runs": [{k: m[k] for k in ("test_acc", "test_loss", "best_epoch",
                                                                         "best_val_acc", "total_seconds", "history")}
                                                      for m in results]})
    (out_dir / "benchmark.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
