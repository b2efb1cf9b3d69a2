"""Where the trainer's numbers go (and examples/keydoor's): stdout, progress.jsonl, W&B, and the
final metrics file.

progress.jsonl: one JSON object per logged step, for the trainer {"step", "epoch", "time",
"train/...", ...} and {"step", "epoch", "time", "eval/..."} after each evaluation. On resume, lines
past the checkpoint's step (written by an attempt that was killed later) are dropped, so every step
appears once.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from jobs.atomic import write_json_atomic, write_text_atomic
from jobs.errors import UserError

PROGRESS = "progress.jsonl"


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN/Inf: a diverged run reports null instead of an unparsable file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def truncate_progress(path: str | Path, step: int) -> None:
    """Drop lines logged after `step` (the resumed attempt logs those steps again)."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # the last line of a killed attempt may be cut short
            continue
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def wandb_mode() -> str:
    """WANDB_MODE wins; on a Slurm job default to offline (compute nodes often have no internet;
    `sweep sync` uploads later, from the login node), else online."""
    return os.environ.get("WANDB_MODE") or ("offline" if os.environ.get("SLURM_JOB_ID") else "online")


def run_tags(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The sweep's name and the trial's environment (SWEEP_NAME, SWEEP_ENVIRONMENT, which the task
    runner exports), then `extra`: W&B tags, each once, at most 64 characters (W&B's limit). An
    environment that is a path (`data_path=data/sudoku-easy`) is tagged by its last part."""
    env = (os.environ.get("SWEEP_ENVIRONMENT") or "").strip()
    if "/" in env:
        env = os.path.basename(env.rstrip("/")) or env
    tags: list[str] = []
    for tag in (os.environ.get("SWEEP_NAME"), env, *extra):
        tag = (tag or "").strip()[:64]
        if tag and tag not in tags:
            tags.append(tag)
    return tags


class RunLogger:
    """progress.jsonl (in `run_dir`; none without one); W&B when enabled. Only rank 0 makes one.

    A W&B run of a sweep's trial: its name is the trial id (the caller passes it), its group the
    sweep's name (SWEEP_NAME, whatever the sweep's directory is called), its tags the sweep's name,
    the trial's environment and `tags`; its project comes from `project`, else WANDB_PROJECT, its
    entity from WANDB_ENTITY (the task runner sets both from the sweep file's `logging:` block), else
    "slurmsweep" and the user's default entity. `wandb_key` is the config key that enabled W&B: the
    error when the wandb package is missing names it.
    """

    def __init__(self, run_dir: str | Path | None, *, config: dict[str, Any], enable_wandb: bool = False,
                 wandb_key: str = "enable_wandb", project: str | None = None, run_name: str | None = None,
                 run_id: str | None = None, resume_step: int = 0, tags: list[str] | tuple[str, ...] = ()) -> None:
        self.progress_path = Path(run_dir) / PROGRESS if run_dir is not None else None
        self._file = None
        if self.progress_path is not None:
            self.progress_path.parent.mkdir(parents=True, exist_ok=True)
            truncate_progress(self.progress_path, resume_step)
            self._file = open(self.progress_path, "a", buffering=1)  # line-buffered: readable while running
        self._wandb = None
        if enable_wandb and wandb_mode() != "disabled":
            try:
                import wandb  # lazily: slow to import, optional dependency
            except ImportError:
                raise UserError(f"{wandb_key}=true but the wandb package is not installed", key=wandb_key,
                                fix=f"install it with pip install -e '.[wandb]', or pass {wandb_key}=false") from None
            # A stable id (the trial id) + resume="allow" makes a requeued attempt continue its run.
            self._wandb = wandb.init(project=project or os.environ.get("WANDB_PROJECT") or "slurmsweep",
                                     entity=os.environ.get("WANDB_ENTITY") or None,
                                     name=run_name, group=os.environ.get("SWEEP_NAME") or None,
                                     tags=run_tags(tags) or None, id=run_id, resume="allow" if run_id else None,
                                     config=config, dir=str(run_dir) if run_dir is not None else None,
                                     mode=wandb_mode())

    def log(self, step: int, metrics: dict[str, float], *, epoch: float | None = None,
            time_s: float | None = None) -> None:
        """One progress line {"step", "epoch", "time", **metrics} (epoch and time when given) and,
        with W&B, one row of `metrics` (and epoch) at `step`."""
        if self._file is not None:
            record: dict[str, Any] = {"step": step}
            if epoch is not None:
                record["epoch"] = epoch
            if time_s is not None:
                record["time"] = round(time_s, 3)
            record.update((k, finite_or_none(float(v))) for k, v in metrics.items())
            self._file.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._wandb.log(metrics if epoch is None else dict(metrics, epoch=epoch), step=step)

    def close(self, exit_code: int = 0) -> None:
        if self._file is not None:
            self._file.close()
        if self._wandb is not None:
            self._wandb.finish(exit_code=exit_code)


def write_run_metrics(path: str | Path, metrics: dict[str, Any], *, status: str = "completed",
                      error: str | None = None) -> None:
    """Outside a sweep: the same object jobs.runtime.write_metrics writes inside one."""
    write_json_atomic(path, {**{k: finite_or_none(v) for k, v in metrics.items()},
                             "status": status, "error": error}, indent=1)
