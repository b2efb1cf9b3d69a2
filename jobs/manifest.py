"""manifest.json: the sweep directory's source of truth (trials and submissions).

Format (schema 1), written atomically on every change:

    {"schema": 1, "name": str, "created": iso, "dialect": str, "source": str|null,
     "method": str, "metric": str|null, "goal": "maximize"|"minimize",
     "command": [str, ...],            # argv prefix, may hold W&B macros (see jobs.argv)
     "executor": "slurm"|"local"|"submitit", "cluster": {...profile...},
     "max_attempts": int,
     "trials": [Trial.to_dict(), ...],  # ids, index (unique), stage, params, overrides, parent
     "submissions": [{"stage": int, "job_id": str, "array": "0-99%8", "offset": int,
                      "indices": [int, ...] compact string "0-99", "dependency": str|null,
                      "executor": str, "submitted": iso}, ...]}

Reading it is plain `json` so that the in-task runtime starts fast.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from jobs.atomic import write_json_atomic
from jobs.errors import UserError

MANIFEST = "manifest.json"
SPEC_COPY = "sweep.yaml"
TRIALS = "trials"
RESULT = "result.json"
METRICS = "metrics.json"        # what the swept program writes to $SWEEP_RESULT_FILE
PROGRESS = "progress.jsonl"
CHECKPOINTS = "checkpoints"


def manifest_path(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / MANIFEST


def trial_dir(sweep_dir: str | os.PathLike, trial_id: str) -> Path:
    return Path(sweep_dir) / TRIALS / trial_id


def result_path(sweep_dir: str | os.PathLike, trial_id: str) -> Path:
    return trial_dir(sweep_dir, trial_id) / RESULT


def read_manifest(sweep_dir: str | os.PathLike) -> dict[str, Any]:
    path = manifest_path(sweep_dir)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{sweep_dir} is not a sweep directory (no {MANIFEST})",
                        fix="pass the directory `sweep launch` printed, or launch the sweep first") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})",
                        fix="restore it from a backup; it is only written atomically, so this is disk damage") from None


def write_manifest(sweep_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    write_json_atomic(manifest_path(sweep_dir), manifest)


def compact_ranges(indices: list[int]) -> str:
    """[0,1,2,3,7,12,13,14,15] -> '0-3,7,12-15' (Slurm's --array syntax)."""
    out: list[str] = []
    xs = sorted(set(indices))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out)


def expand_ranges(text: str) -> list[int]:
    """'0-3,7,12-15%4' or '0-10:2' -> list of ints (inverse of compact_ranges, throttle ignored)."""
    text = text.split("%", 1)[0].strip()
    out: list[int] = []
    for part in filter(None, text.split(",")):
        step = 1
        if ":" in part:
            part, s = part.split(":", 1)
            step = int(s)
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1, step))
        else:
            out.append(int(part))
    return out


def uses_study(manifest: dict[str, Any]) -> bool:
    """True for sweeps whose tasks ask/tell an Optuna study (jobs.bayes): bayes plans, and any
    plan with a pruner. Here, not in jobs.bayes, so that other sweeps' tasks never import it."""
    pruner = (manifest.get("pruner") or {}).get("kind") or "none"
    return manifest.get("method") == "bayes" or str(pruner).lower() != "none"
