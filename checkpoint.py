"""Checkpoints: written atomically, read as untrusted input (weights_only), rebuilt from their ModelConfig."""
import json
import os
import sys
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from model import ModelConfig, Net

REQUIRED_KEYS = ("model", "model_config")


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or not one of ours; the message says which and why."""


def _write_atomically(path, write):
    """Call WRITE(temporary path), then rename it onto PATH: a crash leaves the old file intact, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_folder_or_exit(folder, name):
    """Create FOLDER (and its parents) before the work that writes into it, or exit with a one-line error that calls
    it NAME (the flag and its value): a folder that cannot be made, or takes no file, fails now, not after minutes of
    work."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot create {name} ({e.strerror}); choose another folder")
    try:
        tempfile.NamedTemporaryFile(dir=folder).close()  # a read-only folder, or /proc, is there but takes no file
    except OSError as e:
        sys.exit(f"error: cannot write a file into {name} ({e.strerror}); choose another folder")


def save_checkpoint(path, model, **extra):
    """Write {model, model_config, **extra} to PATH atomically."""
    state = {"model": model.state_dict(), "model_config": asdict(model.config), **extra}

    def write(tmp):
        with open(tmp, "wb") as f:  # a file Python opens: a place that takes no file is an OSError, as for JSON
            torch.save(state, f)  # (given a path, torch raises its own RuntimeError)
    _write_atomically(path, write)


def write_json(path, data):
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def load_checkpoint(path, map_location="cpu", trained_by="train.py"):
    """Read a checkpoint with weights_only=True (no code runs from the file) and check it is one of ours; the
    errors name TRAINED_BY, the script that writes such a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; "
                              f"train one with `python {trained_by}` or give the path of one")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; the unpickler's error for others says nothing
        raise CheckpointError(f"checkpoint {path} cannot be read (not a zip archive, as torch.save writes: cut short, "
                              f"or another kind of file); is it a file written by {trained_by}?")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - untrusted bytes can break the unpickler in any way; all mean the same
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({reason[:200]}); "
                              f"is it a file written by {trained_by}?") from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this repo "
                              f"(it lacks {' and '.join(REQUIRED_KEYS)})")
    return ckpt


def load_model(path, device="cpu", net=Net):
    """Rebuild the model (NET: Net or pairs.PairNet) a checkpoint describes, load its weights, and return (model in
    eval mode, checkpoint)."""
    ckpt = load_checkpoint(path, trained_by=net.trained_by)
    try:
        config = ModelConfig(**{**ckpt["model_config"], "channels": tuple(ckpt["model_config"]["channels"])})
        model = net(config)
        model.load_state_dict(ckpt["model"])
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        reason = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # past load_state_dict's header
        raise CheckpointError(f"checkpoint {path} does not fit {net.__name__} ({reason[:200]}); "
                              f"retrain with `python {net.trained_by}`") from e
    return model.to(device).eval(), ckpt
