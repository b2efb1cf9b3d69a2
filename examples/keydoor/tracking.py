"""Where progress goes: the terminal, trials/<id>/progress.jsonl (the report's learning curves)
and, when enabled, Weights & Biases."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from jobs.atomic import write_text_atomic
from jobs.errors import UserError

PROGRESS = "progress.jsonl"


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def wandb_mode() -> str:
    """WANDB_MODE wins; on a Slurm job offline (compute nodes often lack internet; `wandb sync`
    uploads later); else online."""
    return os.environ.get("WANDB_MODE") or ("offline" if os.environ.get("SLURM_JOB_ID") else "online")


class Tracker:
    def __init__(self, trial_dir: Path | None, *, config: dict[str, Any], use_wandb: bool,
                 run_id: str | None, resume_step: int) -> None:
        self.path = trial_dir / PROGRESS if trial_dir else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _truncate(self.path, resume_step)
        self.run = None
        if use_wandb and wandb_mode() != "disabled":
            try:
                import wandb    # lazily: slow to import and an optional dependency
            except ImportError:
                raise UserError("wandb=true but the wandb package is not installed", key="wandb",
                                fix="pip install -e '.[wandb]', or pass wandb=false") from None
            sweep, environment = os.environ.get("SWEEP_NAME"), os.environ.get("SWEEP_ENVIRONMENT")
            tags = list(dict.fromkeys(t for t in (environment or config["environment"], sweep) if t))
            # WANDB_PROJECT / WANDB_ENTITY come from the sweep file's `logging:` block. A stable id
            # (the trial id) with resume="allow" lets a requeued attempt continue its own run.
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "keydoor",
                                  entity=os.environ.get("WANDB_ENTITY") or None, group=sweep, tags=tags,
                                  name=run_id, id=run_id, resume="allow" if run_id else None,
                                  config=config, mode=wandb_mode(),
                                  dir=str(trial_dir) if trial_dir else None)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, **{k: _finite(v) for k, v in metrics.items()}}) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=step)

    def close(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)


def _truncate(path: Path, step: int) -> None:
    """Drop lines past the checkpoint we resume from: the lost work is redone and logged again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line + "\n")
        except (ValueError, AttributeError):    # a line cut short by a kill
            continue
    write_text_atomic(path, "".join(kept))
