"""submitit backend: AutoExecutor.map_array over the same task runner, for users who prefer it.

Each array task calls `run_index(sweep_dir, index)`, which runs jobs.run in-process: the runner
installs its own handlers for USR1/USR2/TERM (submitit warns with USR2), so a warned trial
checkpoints and requeues itself exactly as under the slurm backend; and, as there, a task that
ends submits its promotions and tops the queue up (jobs.run.after_task). Arrays follow the same plan
as the slurm backend (chunks, aftercorr between stages) and carry the same token in their job
name; what Slurm says about them is read the same way. submitit is imported only here, and only
when this backend submits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs import slurm
from jobs.backends import Confirm, SweepRef
from jobs.backends.arrays import ArrayPlan, PlannedArray, plan_arrays
from jobs.backends.slurm import SlurmBackend, dependency_of, job_name, new_token
from jobs.errors import UserError
from jobs.manifest import Trial
from jobs.profile import ClusterProfile

FOLDER = "submitit"


def run_index(sweep_dir: str, index: int | None) -> int:
    """One array task (must stay a picklable top-level function)."""
    if index is None:  # a gap in the task ids kept so that aftercorr pairs tasks correctly
        return 0
    from jobs import run

    settings, trials = run.load_task(Path(sweep_dir), index, 0, None)
    code = run.run_task(Path(sweep_dir), settings, trials)
    run.after_task(Path(sweep_dir), settings, trials)
    return code


def time_minutes(text: str | int | None) -> int | None:
    """Slurm time -> whole minutes (rounded up), as submitit's timeout_min wants."""
    if text is None or isinstance(text, int):
        return text
    try:
        seconds = slurm.time_spec_s(text)
    except ValueError:
        raise UserError(f"time '{text}' is not a Slurm time", key="time", fix="write it as D-HH:MM:SS or HH:MM:SS") from None
    return -(-seconds // 60)


def executor_parameters(profile: ClusterProfile, name: str, max_parallel: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "slurm_signal_delay_s": profile.grace_s}
    # The same request as the Slurm backend's (a trial of N processes: N GPUs, N x the CPUs).
    request = {option: value for option, value in profile.task_request() if value}
    if "time" in request:
        params["timeout_min"] = time_minutes(request.pop("time"))
    if "cpus-per-task" in request:
        params["cpus_per_task"] = request.pop("cpus-per-task")
    params.update({f"slurm_{option}": value for option, value in request.items()})
    if profile.modules or profile.setup:
        params["slurm_setup"] = list(profile.modules) + list(profile.setup)
    if profile.sbatch:
        params["slurm_additional_parameters"] = {k.replace("-", "_"): v for k, v in profile.sbatch.items()}
    if max_parallel or profile.max_parallel:
        params["slurm_array_parallelism"] = max_parallel or profile.max_parallel
    return params


class SubmititBackend(SlurmBackend):
    """Slurm underneath: status, finding and cancelling are the Slurm backend's; planning keeps
    task ids from 0 (map_array numbers its tasks itself) and never attaches to old jobs."""

    name = "submitit"
    reads_task_files = False      # map_array hands each task its trial index: the manifest has it

    def plan(self, trials: list[Trial], sweep: SweepRef, *, budget: int, pack: int = 1,
             attach: dict[str, tuple[str, int]] | None = None, max_parallel: int | None = None) -> ArrayPlan:
        plan = plan_arrays(trials, max_array_size=sweep.manifest.settings.cluster.max_array_size, budget=budget)
        for array in plan.arrays:
            array.token = new_token()
            array.array = f"0-{max(*array.task_ids, 1)}"    # at least two tasks: see start()
            array.script = f"submitit map_array of jobs.run over trial indices {mf.compact_ranges(array.indices)}"
        return plan

    def start(self, sweep: SweepRef, arrays: list[PlannedArray], confirm: Confirm, *,
              max_parallel: int | None = None, **options: Any) -> None:
        import submitit  # lazily: it pulls in cloudpickle and friends

        settings = sweep.manifest.settings
        executor = submitit.AutoExecutor(folder=str(Path(sweep.sweep_dir) / FOLDER / "%j"), cluster="slurm")
        job_ids: list[str] = []
        for array in arrays:
            params = executor_parameters(settings.cluster, job_name(settings.name, array.stage, array.token),
                                         max_parallel or settings.max_parallel)
            dependency = dependency_of(array, job_ids)
            if dependency:
                params["slurm_additional_parameters"] = {**params.get("slurm_additional_parameters", {}),
                                                         "dependency": dependency}
            executor.update_parameters(**params)
            # Position t of the list is task id t: keep gaps (None) so aftercorr pairs tasks.
            by_task = {i - array.offset: i for i in array.indices}
            # submitit submits a list of one as a plain job, not an array: Slurm then names it '123'
            # rather than '123_0', and it inherits the submitting task's SLURM_ARRAY_* variables
            # (a promotion submitted from a task then re-ran that task's own trial). A gap makes it two.
            positions = [by_task.get(t) for t in range(max(max(by_task) + 1, 2))]
            jobs = executor.map_array(run_index, [str(sweep.sweep_dir)] * len(positions), positions)
            job_id = jobs[0].job_id.split("_")[0]
            job_ids.append(job_id)
            confirm(array, job_id, None, dependency)


BACKEND = SubmititBackend()
