"""Trials -> arrays that fit the cluster: a pure function of the trials and the limits.

    plan_arrays(trials, max_array_size=..., budget=..., pack=1, attach={}) -> ArrayPlan

- Task ids stay below `max_array_size` (Slurm's MaxArraySize): a stage whose indices span more
  is split into chunks, each with its own offset.
- At most `budget` tasks are planned (every array task counts against a user's queue limit).
  Whole chains (a trial and the later stages that start from it) are kept together, in index
  order, so that what is left is a clean tail for the top-up or `sweep resume`.
- A later-stage trial goes in an array that depends on its parent's array (`aftercorr`), at the
  same task id, so that each trial waits for its own previous stage only.
- `attach` maps a parent trial id to (job id, task id) of an array Slurm still holds (resume):
  its children are planned at that task id of a new array that depends on that job.
- `pack` > 1 runs that many trials in each task, one after another (or side by side where the
  task holds several GPUs). Packed tasks are chunks of `pack` trials in index order, so that
  task t of stage k+1 holds the children of task t of stage k, and aftercorr still pairs them.

How a trial index maps to its task id is jobs.manifest.tasks_of (Submission.task_ids uses it too):
unpacked, task = index - offset; packed, task = offset + position // pack among the array's
sorted indices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.manifest import Trial, compact_ranges, tasks_of


@dataclass
class PlannedArray:
    """One submission: trial indices of one stage, and how they map to task ids.

    depends_on: position (in the same plan) of the array this one waits for, task by task.
    after_job:  an existing Slurm job this one waits for instead (`sweep resume`'s attach).
    The backend fills `array` (the --array value, throttle included), `script` and `options`;
    the submission path fills `token` (what finds the job in Slurm before its id is known).
    """

    stage: int
    indices: list[int]
    offset: int = 0
    pack: int = 1
    depends_on: int | None = None
    after_job: str | None = None
    array: str = ""
    script: str = ""
    options: list[str] = field(default_factory=list)
    token: str = ""

    @property
    def tasks(self) -> dict[int, list[int]]:
        return tasks_of(sorted(self.indices), offset=self.offset, pack=self.pack)

    @property
    def task_ids(self) -> list[int]:
        return sorted(self.tasks)

    def to_dry_run(self, label: str = "submission") -> dict[str, Any]:
        if self.after_job is not None:
            dependency = f"aftercorr:{self.after_job}"
        elif self.depends_on is not None:
            dependency = f"aftercorr:<job of {label} {self.depends_on}>"
        else:
            dependency = None
        return {"stage": self.stage, "array": self.array or compact_ranges(self.task_ids), "offset": self.offset,
                "pack": self.pack, "indices": compact_ranges(self.indices), "dependency": dependency,
                "script": self.script, "options": list(self.options)}


@dataclass
class ArrayPlan:
    arrays: list[PlannedArray] = field(default_factory=list)
    unsubmitted: list[int] = field(default_factory=list)   # did not fit the budget

    @property
    def planned(self) -> list[int]:
        return sorted(i for a in self.arrays for i in a.indices)


def plan_arrays(trials: list[Trial], *, max_array_size: int, budget: int, pack: int = 1,
                attach: dict[str, tuple[str, int]] | None = None) -> ArrayPlan:
    """Group trials into arrays that fit the cluster (see the module docstring)."""
    attach = attach or {}
    pack = max(1, int(pack))
    by_id = {t.id: t for t in trials}
    by_index = {t.index: t for t in trials}
    children: dict[str, list[Trial]] = {}
    roots: list[Trial] = []
    for t in sorted(trials, key=lambda t: t.index):
        if t.parent is not None and t.parent in by_id:
            children.setdefault(t.parent, []).append(t)
        else:
            roots.append(t)

    def chain(t: Trial) -> list[Trial]:
        out = [t]
        for c in children.get(t.id, ()):
            out += chain(c)
        return out

    # Budget: whole chains, free roots first (in index order), then those attached to old jobs.
    plan = ArrayPlan()
    free = [r for r in roots if r.parent not in attach]
    attached = [r for r in roots if r.parent in attach]
    chosen: list[Trial] = []
    per_depth: dict[int, int] = {}   # trials planned at each depth of the chains (packed tasks count)

    def tasks_with(root: Trial) -> tuple[int, dict[int, int]]:
        depths = dict(per_depth)
        stack = [(root, 0)]
        while stack:
            t, depth = stack.pop()
            depths[depth] = depths.get(depth, 0) + 1
            stack += [(c, depth + 1) for c in children.get(t.id, ())]
        return sum(-(-n // pack) for n in depths.values()), depths

    for root in free + attached:
        needed, depths = tasks_with(root)
        if needed > budget:
            break
        per_depth = depths
        chosen.append(root)
    kept = {t.id for r in chosen for t in chain(r)}
    plan.unsubmitted = sorted(t.index for t in trials if t.id not in kept)

    # Level 0: free roots by stage, in chunks whose task ids fit under max_array_size.
    for stage in sorted({r.stage for r in chosen if r.parent not in attach}):
        stage_roots = [r.index for r in chosen if r.stage == stage and r.parent not in attach]
        if pack > 1:
            per_chunk = max_array_size * pack
            for start in range(0, len(stage_roots), per_chunk):
                plan.arrays.append(PlannedArray(stage=stage, indices=stage_roots[start:start + per_chunk], pack=pack))
            continue
        current: PlannedArray | None = None
        for index in stage_roots:
            if current is None or index - current.offset >= max_array_size:
                current = PlannedArray(stage=stage, indices=[], offset=index)
                plan.arrays.append(current)
            current.indices.append(index)
    # Roots attached to a job Slurm still holds: at their parent's task id there (unpacked only).
    groups: dict[tuple[str, int, int], PlannedArray] = {}
    for root in (r for r in chosen if r.parent in attach):
        job, task = attach[root.parent]
        key = (job, root.stage, root.index - task)
        if key not in groups:
            groups[key] = PlannedArray(stage=root.stage, indices=[], offset=root.index - task, after_job=job)
            plan.arrays.append(groups[key])
        groups[key].indices.append(root.index)
    # Later levels: children of array k at the same task ids as their parents.
    level = list(range(len(plan.arrays)))
    while level:
        next_level: list[int] = []
        for pos in level:
            parent_array = plan.arrays[pos]
            kids: dict[tuple[int, int], PlannedArray] = {}
            for index in sorted(parent_array.indices):
                for child in children.get(by_index[index].id, ()):
                    key = (child.stage, child.index - index)
                    if key not in kids:
                        kids[key] = PlannedArray(stage=child.stage, indices=[], pack=parent_array.pack,
                                                 offset=parent_array.offset + (key[1] if pack <= 1 else 0),
                                                 depends_on=pos)
                    kids[key].indices.append(child.index)
            for key in sorted(kids):
                plan.arrays.append(kids[key])
                next_level.append(len(plan.arrays) - 1)
        level = next_level
    return plan
