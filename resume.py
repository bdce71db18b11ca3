"""What --resume needs: every random generator's state, and a run folder's last.pt checked and read back."""
import argparse
import random
from pathlib import Path

import torch

from checkpoint import CheckpointError, load_checkpoint

RESUMABLE = ("epochs", "device", "data_dir", "cuda_graph")  # what --resume lets differ: not the recipe


class ResumeError(Exception):
    """A run folder that --resume cannot continue; the message says why."""


def rng_states(device):
    """The states of every random generator a run draws from, to resume it exactly."""
    states = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    if device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def restore_rng_states(states, device):
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:  # a run moved to another device draws other numbers from here
        torch.cuda.set_rng_state(states["cuda"], device)
    if device.type == "mps" and "mps" in states:
        torch.mps.set_rng_state(states["mps"])


def read_resume_state(args):
    """Check RUN_DIR/last.pt before anything is written, and return it with the recipe ARGS continue."""
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise ResumeError(f"--resume {run_dir}: no such folder")
    if not (run_dir / "last.pt").is_file():
        raise ResumeError(f"--resume {run_dir}: it holds no last.pt, so no epoch of it finished; start a new run")
    state = load_checkpoint(run_dir / "last.pt")
    if "resume" not in state:
        raise ResumeError(f"{run_dir / 'last.pt'} was written without the state a resume needs (by an older "
                          "train.py); start a new run")
    config = state["resume"]["config"]
    unknown = set(config) - set(vars(args))
    if unknown:
        raise ResumeError(f"{run_dir / 'last.pt'} holds options this train.py does not know ({', '.join(unknown)})")
    missing = set(vars(args)) - set(config) - {"resume", "out_dir", *RESUMABLE}
    if missing:
        raise ResumeError(f"{run_dir / 'last.pt'} was written by an older train.py, without "
                          f"{', '.join(sorted(missing))}; start a new run")
    epochs = args.epochs or config["epochs"]
    device = args.device or state["resume"].get("device", config["device"])  # the device it ran on, unless told
    if device == "cuda" and not torch.cuda.is_available() or device == "mps" and not torch.backends.mps.is_available():
        raise ResumeError(f"the run in {run_dir} trained on {device}, which is not available here; to continue it "
                          "on this machine's device, pass --device auto (the result is then no longer bit-identical)")
    if state["epoch"] >= epochs and (run_dir / "metrics.json").exists():
        raise ResumeError(f"the run in {run_dir} already finished its {state['epoch']} epochs; "
                          f"to train it further, pass --epochs N with N > {state['epoch']}")
    recipe = argparse.Namespace(**{**config, "epochs": epochs, "device": device, "data_dir": args.data_dir,
                                   "cuda_graph": args.cuda_graph, "out_dir": str(run_dir), "resume": str(run_dir)})
    return recipe, state


def restore_run(resumed, path, model, ema, average, optimizer, scheduler, device):
    """Load a last.pt's states into the freshly built run; returns its progress (history, best epoch, seconds)."""
    try:
        model.load_state_dict(resumed["resume"]["raw_model"])
        if ema is not None:
            ema.load_state_dict(resumed["resume"]["ema"])
        if average is not None:
            average.load_state_dict(resumed["resume"]["average"])
        optimizer.load_state_dict(resumed["optimizer"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path} does not fit model.py ({str(e).strip().splitlines()[0][:200]}); "
                              "start a new run") from e
    scheduler.load_state_dict(resumed["scheduler"])
    restore_rng_states(resumed["resume"]["rng"], device)
    progress = resumed["resume"]["progress"]
    return {**progress, "resumed_at_epochs": [*progress["resumed_at_epochs"], resumed["epoch"] + 1]}

