"""Checkpoints as explicit state, written atomically.

A checkpoint directory holds
    latest.pt              everything an exact resume needs (see `FORMAT`), replaced atomically
    step_<step:07d>.pt     model weights + config only, kept at each eval (checkpoint_every_eval) and
                           at the end: what evaluation scripts and a later progressive stage read

`latest.pt` is a dict:
    format       FORMAT (bumped when the layout changes; `load` refuses what it cannot read)
    step, epoch  optimizer steps taken, epochs finished
    model        state_dict of the uncompiled model
    optimizers   [state_dict, ...] in the trainer's order
    config       the resolved training config
    ranks        [per-rank state, ...]: rng (python, numpy, torch, cuda), data (the loader's
                 state_dict: exact position), carry (the ACT carry, on CPU)
    loop         small loop bookkeeping (best/last eval metrics, ...)

Files are read with `weights_only=False` because the ACT carry is a dataclass: only load checkpoints
you (or this trainer) wrote.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobs.atomic import write_bytes_atomic
from jobs.errors import UserError

FORMAT = 1
LATEST = "latest.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from (ACT exploration uses torch's)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_cpu(obj: Any) -> Any:
    """Tensors (also inside dataclasses, dicts, lists) moved to CPU, so a checkpoint loads anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return type(obj)(**{k: to_cpu(getattr(obj, k)) for k in obj.__dataclass_fields__})
    return obj


def to_device(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return type(obj)(**{k: to_device(getattr(obj, k), device) for k in obj.__dataclass_fields__})
    return obj


def save_atomic(path: str | Path, obj: Any) -> None:
    """torch.save `obj` to `path` (its directory made if missing). Serialised in memory, then tmp +
    fsync + rename: a job killed mid-write (Mila preemption sends no signal) leaves the previous
    checkpoint intact."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())


def read(path: str | Path, *, fix: str) -> Any:
    """What `path` holds, loaded onto the CPU; a truncated or foreign file is a one-line UserError
    naming it, with `fix`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc}".splitlines()[0], fix=fix) from exc


def save_latest(directory: str | Path, state: dict[str, Any]) -> Path:
    path = Path(directory) / LATEST
    save_atomic(path, {"format": FORMAT, **state})
    return path


def save_weights(directory: str | Path, *, step: int, model: dict[str, Any],
                 config: dict[str, Any]) -> Path:
    path = Path(directory) / f"step_{step:07d}.pt"
    save_atomic(path, {"format": FORMAT, "step": step, "model": model, "config": config})
    return path


def load(path: str | Path) -> dict[str, Any]:
    fix = "point checkpoint_path at a file or directory this trainer wrote"
    state = read(path, fix=fix)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise UserError(f"{path} is not a checkpoint of format {FORMAT}", fix=fix)
    return state


def find(path: str | Path) -> Path | None:
    """The checkpoint a path names: a file itself; in a directory latest.pt, else the newest step file."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / LATEST).is_file():
            return path / LATEST
        steps = sorted(path.glob("step_*.pt"))
        if steps:
            return steps[-1]
    return None
