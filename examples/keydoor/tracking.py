"""Where progress goes: the terminal, trials/<id>/progress.jsonl (the report's learning curves)
and, when enabled, Weights & Biases."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jobs.errors import UserError
from train.metrics import finite_or_none as _finite
from train.metrics import truncate_progress, wandb_mode

PROGRESS = "progress.jsonl"


class Tracker:
    def __init__(self, trial_dir: Path | None, *, config: dict[str, Any], use_wandb: bool,
                 run_id: str | None, resume_step: int) -> None:
        self.path = trial_dir / PROGRESS if trial_dir else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            truncate_progress(self.path, resume_step)
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
