"""Backends take planned trials and a sweep directory and submit them; they never plan.

    slurm     one `sbatch --array` per stage (split to the cluster's limits)  backends/slurm.py
    local     a process pool on this machine (the embedded default)           backends/local.py
    submitit  submitit's AutoExecutor.map_array                               backends/submitit.py

All three run the same task runner, `python -m jobs.run SWEEP_DIR TASK_ID --offset N`.
Heavy imports (submitit, rich) stay inside the backend modules.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from launcher.trial import Trial

EXECUTORS = ("slurm", "submitit", "local")


def default_executor() -> str:
    """slurm where `sbatch` is on PATH, else local."""
    return "slurm" if shutil.which("sbatch") else "local"


@dataclass
class PlannedArray:
    """One submission: trial indices of one stage, run as task ids `index - offset`.

    depends_on: position (in the same plan) of the array this one waits for, task by task
    (`--dependency=aftercorr:`): task t here runs after task t there succeeded.
    """

    stage: int
    offset: int
    indices: list[int]
    depends_on: int | None = None
    # Slurm's --array value, throttle included ("0-99%8"); set by the backend.
    array: str = ""
    script: str = ""
    options: list[str] = field(default_factory=list)

    @property
    def task_ids(self) -> list[int]:
        return [i - self.offset for i in self.indices]

    def to_dry_run(self, position_label: str = "submission") -> dict[str, Any]:
        from jobs.manifest import compact_ranges

        dependency = None if self.depends_on is None else f"aftercorr:<job of {position_label} {self.depends_on}>"
        return {"stage": self.stage, "array": self.array or compact_ranges(self.task_ids), "offset": self.offset,
                "indices": compact_ranges(self.indices), "dependency": dependency,
                "script": self.script, "options": list(self.options)}


def plan_arrays(trials: list[Trial], *, max_array_size: int, max_queued_jobs: int
                ) -> tuple[list[PlannedArray], list[int]]:
    """Group trials into arrays that fit the cluster; return (arrays, indices left unsubmitted).

    - Task ids stay below `max_array_size` (Slurm's MaxArraySize): a stage whose indices
      span more is split into chunks, each with its own offset.
    - At most `max_queued_jobs` tasks are submitted. Whole chains (a first-stage trial and
      the later stages that start from it) are kept together, in index order, so that what
      is left is a clean tail for `sweep resume`.
    - A later-stage trial goes in an array that depends on its parent's array, at the same
      task id, so `aftercorr` pairs each trial with its own previous stage.
    """
    by_id = {t.id: t for t in trials}
    by_index = {t.index: t for t in trials}
    children: dict[str, list[Trial]] = {}
    roots: list[Trial] = []
    for t in sorted(trials, key=lambda t: t.index):
        if t.parent is not None and t.parent in by_id:
            children.setdefault(t.parent, []).append(t)
        else:
            roots.append(t)

    def chain_size(t: Trial) -> int:
        return 1 + sum(chain_size(c) for c in children.get(t.id, ()))

    chosen: list[Trial] = []
    budget = max_queued_jobs
    for root in roots:
        size = chain_size(root)
        if size > budget:
            break
        budget -= size
        chosen.append(root)
    chosen_ids: set[str] = set()

    def mark(t: Trial) -> None:
        chosen_ids.add(t.id)
        for c in children.get(t.id, ()):
            mark(c)

    for root in chosen:
        mark(root)
    unsubmitted = sorted(t.index for t in trials if t.id not in chosen_ids)

    arrays: list[PlannedArray] = []
    # Level 0: first-stage trials in chunks whose task ids fit under max_array_size.
    for stage in sorted({t.stage for t in chosen}):
        current: PlannedArray | None = None
        for t in (r for r in chosen if r.stage == stage):
            if current is None or t.index - current.offset >= max_array_size:
                current = PlannedArray(stage=stage, offset=t.index, indices=[])
                arrays.append(current)
            current.indices.append(t.index)
    # Later levels: children of array k at the same task ids as their parents.
    level = list(range(len(arrays)))
    while level:
        next_level: list[int] = []
        for pos in level:
            parent_array = arrays[pos]
            groups: dict[tuple[int, int], PlannedArray] = {}
            for index in parent_array.indices:
                parent = by_index[index]
                for child in children.get(parent.id, ()):
                    delta = child.index - parent.index
                    key = (child.stage, delta)
                    if key not in groups:
                        groups[key] = PlannedArray(stage=child.stage, offset=parent_array.offset + delta,
                                                   indices=[], depends_on=pos)
                    groups[key].indices.append(child.index)
            for key in sorted(groups):
                arrays.append(groups[key])
                next_level.append(len(arrays) - 1)
        level = next_level
    return arrays, unsubmitted
