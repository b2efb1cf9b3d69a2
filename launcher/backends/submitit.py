"""submitit backend: AutoExecutor.map_array over the same task runner, for users who prefer it.

Each array task calls `run_index(sweep_dir, index)`, which runs jobs.run in-process:
the runner installs its own handlers for USR1/USR2/TERM (submitit warns with USR2), so
a warned trial checkpoints and requeues itself exactly as under the slurm backend.
Arrays follow the same plan as the slurm backend (chunks, aftercorr between stages).
submitit is imported only here, and only when this backend is used.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.errors import UserError
from launcher.backends import PlannedArray, plan_arrays
from launcher.cluster import ClusterProfile
from launcher.trial import Trial

FOLDER = "submitit"


def run_index(sweep_dir: str, index: int | None) -> int:
    """One array task (must stay a picklable top-level function)."""
    if index is None:  # a gap in the task ids kept so that aftercorr pairs tasks correctly
        return 0
    from jobs import run

    manifest = mf.read_manifest(sweep_dir)
    return run.run_trial(Path(sweep_dir), manifest, run.find_trial(manifest, index))


def time_minutes(text: str | int | None) -> int | None:
    """Slurm time -> whole minutes (rounded up), as submitit's timeout_min wants.

    Slurm accepts M, M:S, H:M:S, D-H, D-H:M and D-H:M:S.
    """
    if text is None or isinstance(text, int):
        return text
    raw = str(text).strip()
    if not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", raw):
        raise UserError(f"time '{text}' is not a Slurm time", key="time", fix="write it as D-HH:MM:SS or HH:MM:SS")
    days = 0
    if "-" in raw:
        d, raw = raw.split("-", 1)
        days = int(d)
        h, m, sec = ([int(x) for x in raw.split(":")] + [0, 0])[:3]
    else:
        parts = [int(x) for x in raw.split(":")]
        h, m, sec = {1: lambda: (0, parts[0], 0), 2: lambda: (0, parts[0], parts[1]),
                     3: lambda: tuple(parts)}[len(parts)]()
    return days * 1440 + h * 60 + m + (1 if sec else 0)


def executor_parameters(profile: ClusterProfile, name: str, max_parallel: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "slurm_signal_delay_s": profile.grace_s}
    if profile.time:
        params["timeout_min"] = time_minutes(profile.time)
    if profile.partition:
        params["slurm_partition"] = profile.partition
    if profile.gres:
        params["slurm_gres"] = profile.gres
    if profile.cpus_per_task:
        params["cpus_per_task"] = profile.cpus_per_task
    if profile.mem:
        params["slurm_mem"] = profile.mem
    for key in ("account", "qos", "constraint"):
        if getattr(profile, key):
            params[f"slurm_{key}"] = getattr(profile, key)
    if profile.modules or profile.setup:
        params["slurm_setup"] = list(profile.modules) + list(profile.setup)
    if profile.sbatch:
        params["slurm_additional_parameters"] = {k.replace("-", "_"): v for k, v in profile.sbatch.items()}
    if max_parallel or profile.max_parallel:
        params["slurm_array_parallelism"] = max_parallel or profile.max_parallel
    return params


def plan(trials: list[Trial], profile: ClusterProfile) -> tuple[list[PlannedArray], list[int]]:
    arrays, unsubmitted = plan_arrays(trials, max_array_size=profile.max_array_size,
                                      max_queued_jobs=profile.max_queued_jobs)
    for array in arrays:
        array.array = f"0-{max(array.task_ids)}"
        array.script = f"submitit map_array of jobs.run over trial indices {mf.compact_ranges(array.indices)}"
    return arrays, unsubmitted


def submit(sweep_dir: str, manifest: dict[str, Any], arrays: list[PlannedArray], profile: ClusterProfile, *,
           max_parallel: int | None = None) -> list[dict[str, Any]]:
    import submitit  # lazily: it pulls in cloudpickle and friends

    from jobs.run import now_iso

    executor = submitit.AutoExecutor(folder=str(Path(sweep_dir) / FOLDER / "%j"), cluster="slurm")
    base = executor_parameters(profile, f"{manifest['name']}", max_parallel)
    records = manifest.setdefault("submissions", [])
    job_ids: list[str] = []
    for array in arrays:
        params = dict(base)
        dependency = None
        if array.depends_on is not None:
            dependency = f"aftercorr:{job_ids[array.depends_on]}"
            extra = dict(params.get("slurm_additional_parameters", {}))
            extra["dependency"] = dependency
            params["slurm_additional_parameters"] = extra
        executor.update_parameters(**params)
        # Position t of the list is task id t: keep gaps (None) so aftercorr pairs tasks.
        by_task = {i - array.offset: i for i in array.indices}
        positions = [by_task.get(t) for t in range(max(by_task) + 1)]
        jobs = executor.map_array(run_index, [str(sweep_dir)] * len(positions), positions)
        job_id = jobs[0].job_id.split("_")[0]
        job_ids.append(job_id)
        records.append({"stage": array.stage, "job_id": job_id, "array": array.array, "offset": array.offset,
                        "indices": mf.compact_ranges(array.indices), "dependency": dependency,
                        "executor": "submitit", "submitted": now_iso()})
        mf.write_manifest(sweep_dir, manifest)
    return records[-len(arrays):] if arrays else []
