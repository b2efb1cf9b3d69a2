"""Slurm backend: one `sbatch --array` per planned array.

The job script is a pure function of its parameters (`render_script`), rendered from
slurm_templates/array.sbatch. Anything that came from a sweep file is shell-quoted (or refused
when it cannot be quoted on an `#SBATCH` line); only the cluster profile's `modules`/`setup`
lines are written verbatim, because a profile is trusted.

Every array carries its submission token in its job name (`<sweep>-s<stage>-<token>`), which squeue
and sacct keep: a submission recorded as pending whose launcher died before it learnt the job id is
found again by that name (`find`).

Logs: Slurm writes <sweep>/logs/<array job>_<task>.out (the runner's own lines); the runner links
it into trials/<id>/ and sends the program's output to trials/<id>/trial.log.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from jobs import manifest as mf
from jobs.backends import Backend, Confirm, Live, LiveTask, SweepRef
from jobs.backends.arrays import ArrayPlan, PlannedArray, plan_arrays
from jobs.errors import SlurmError, UserError
from jobs.manifest import Submission, Trial
from jobs.profile import ClusterProfile

TEMPLATE = Path(__file__).resolve().parents[2] / "slurm_templates" / "array.sbatch"
TEMPLATE_VARS = ("job_name", "stage", "indices", "token", "sweep_dir", "output", "workdir", "signal",
                 "grace_s", "resources", "modules", "setup", "python", "runner")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
LOGS = "logs"
# The task runner's entry file: `python -S <runner>` skips site-packages (most of an interpreter's
# start-up, paid once per array task); it puts its own package root on sys.path.
RUNNER = str(Path(__file__).resolve().parents[1] / "start.py")


# --- the job script ---------------------------------------------------------------------------

def render_template(template: str, values: dict[str, str]) -> str:
    """Fill `{{name}}` placeholders; unknown or missing names fail with the valid list."""
    wanted = set(_PLACEHOLDER.findall(template))
    missing, extra = wanted - set(values), set(values) - wanted
    if missing or extra:
        raise ValueError(f"template placeholders {sorted(wanted)} do not match the values given "
                         f"(missing {sorted(missing)}, unknown {sorted(extra)}); "
                         f"valid names: {', '.join(TEMPLATE_VARS)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def job_name(sweep_name: str, stage: int, token: str = "") -> str:
    # Job names show up in squeue and in the script's comment: keep them to a safe alphabet.
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", sweep_name).strip("_") or "sweep"
    return f"{safe[:60]}-s{stage}" + (f"-{token}" if token else "")


def sbatch_value(value: Any, key: str) -> str:
    """A value for an `#SBATCH --opt=<value>` line, shell-quoted (sbatch honours the quotes)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UserError(f"value {text!r} holds a control character", key=key,
                        fix="remove the newline or control character")
    return shlex.quote(text)


def resource_lines(profile: ClusterProfile) -> str:
    # A trial of several processes (gpus_per_trial) asks for as many GPUs and CPUs per task.
    lines = []
    for option, value in profile.task_request():
        if value is not None and value != "":
            lines.append(f"#SBATCH --{option}={sbatch_value(value, option.replace('-', '_'))}")
    for option, value in profile.sbatch.items():
        if value is None or value is True:
            lines.append(f"#SBATCH --{option}")
        elif value is not False:
            lines.append(f"#SBATCH --{option}={sbatch_value(value, f'sbatch.{option}')}")
    return "\n".join(lines) if lines else "# (no resources requested: the cluster's defaults)"


def render_script(*, sweep_name: str, sweep_dir: str, workdir: str, stage: int, indices: list[int], token: str,
                  profile: ClusterProfile, python: str | None = None, runner: str | None = None,
                  template: str | None = None) -> str:
    """The job script of one array (a pure function: same inputs, same text)."""
    values = {
        "job_name": job_name(sweep_name, stage, token),
        "stage": str(int(stage)),
        "indices": mf.compact_ranges(indices),
        "token": token,
        "sweep_dir": shlex.quote(sweep_dir),
        "output": sbatch_value(f"{sweep_dir}/{LOGS}/%A_%a.out", "sweep_dir"),
        "workdir": sbatch_value(workdir, "workdir"),
        "signal": profile.signal,
        "grace_s": str(int(profile.grace_s)),
        "resources": resource_lines(profile),
        "modules": "\n".join(profile.modules) or "# (no modules)",
        "setup": "\n".join(profile.setup) or "# (no setup)",
        "python": shlex.quote(python or profile.python or sys.executable),
        "runner": shlex.quote(runner or RUNNER),
    }
    if not re.fullmatch(r"[0-9a-f]{4,32}", token):
        raise ValueError(f"submission token {token!r} must be hex digits")
    return render_template(template if template is not None else TEMPLATE.read_text(), values)


def array_spec(task_ids: list[int], max_parallel: int | None) -> str:
    text = mf.compact_ranges(task_ids)
    return f"{text}%{max_parallel}" if max_parallel else text


def compile_runner() -> None:
    """Write the bytecode of the stdlib-only `jobs` package once per launch, so that no array task
    compiles it (about 10 ms of CPU per task where PYTHONDONTWRITEBYTECODE is set, or where the
    first tasks start together). A read-only install is left as it is."""
    import compileall

    for folder in (Path(RUNNER).parent, Path(RUNNER).parents[1] / "search"):
        try:
            compileall.compile_dir(folder, maxlevels=0, quiet=2)
        except OSError:
            pass


def new_token() -> str:
    import os

    return os.urandom(4).hex()


# --- the backend --------------------------------------------------------------------------------

class SlurmBackend(Backend):
    name = "slurm"
    uses_slurm = True
    reads_task_files = True

    def plan(self, trials: list[Trial], sweep: SweepRef, *, budget: int, pack: int = 1,
             attach: dict[str, tuple[str, int]] | None = None, max_parallel: int | None = None) -> ArrayPlan:
        settings = sweep.manifest.settings
        profile = settings.cluster
        plan = plan_arrays(trials, max_array_size=profile.max_array_size, budget=budget, pack=pack, attach=attach)
        throttle = max_parallel or settings.max_parallel or profile.max_parallel
        for array in plan.arrays:
            array.token = new_token()
            array.array = array_spec(array.task_ids, throttle)
            array.script = render_script(sweep_name=settings.name, sweep_dir=str(sweep.sweep_dir),
                                         workdir=settings.workdir or str(Path.cwd()), stage=array.stage,
                                         indices=array.indices, token=array.token, profile=profile)
            array.options = [f"--array={array.array}"]
        return plan

    def start(self, sweep: SweepRef, arrays: list[PlannedArray], confirm: Confirm, *,
              touch: Callable[[PlannedArray], None] | None = None, **options: Any) -> None:
        """sbatch every array in order (each after the arrays it depends on)."""
        from jobs import slurm

        (Path(sweep.sweep_dir) / LOGS).mkdir(exist_ok=True)
        compile_runner()
        job_ids: list[str] = []
        for array in arrays:
            argv = list(array.options)
            dependency = dependency_of(array, job_ids)
            if dependency:
                argv.append(f"--dependency={dependency}")
            name = job_name(sweep.manifest.settings.name, array.stage, array.token)

            def before_retry(name: str = name, array: PlannedArray = array) -> str | None:
                # The record's time is when this try began; and a try that timed out may have
                # gone through: look for the job by its name first.
                if touch is not None:
                    touch(array)
                return _first(slurm.jobs_named([name]), name)

            job_id = slurm.sbatch(array.script, argv, existing=before_retry)
            job_ids.append(job_id)
            confirm(array, job_id, None, dependency)

    def find(self, sweep: SweepRef, pending: list[Submission]) -> dict[str, list[str]]:
        from jobs import slurm

        names = {job_name(sweep.manifest.settings.name, s.stage, s.token): s.token for s in pending if s.token}
        if not names:
            return {}
        found = slurm.jobs_named(list(names), since=_sacct_since(pending))
        return {names[n]: ids for n, ids in found.items() if n in names}

    def live(self, sweep: SweepRef) -> Live:
        return slurm_live(sweep.manifest)

    def cancel(self, sweep: SweepRef) -> dict[str, Any]:
        from jobs import slurm

        job_ids = sweep.manifest.job_ids()
        slurm.scancel(job_ids)   # one call; jobs already gone are not an error
        return {"jobs": job_ids}


def _sacct_since(pending: list[Submission]) -> str | None:
    """Where sacct must look back to for these records: None (its two days) unless the oldest was
    recorded earlier; then that day, in the local time sacct reads (records are in UTC)."""
    import time

    stamps = [t for t in (mf.iso_epoch(s.submitted) for s in pending) if t is not None]
    if not stamps or min(stamps) > time.time() - 2 * 86400 + 3600:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(min(stamps) - 86400))


def _first(found: dict[str, list[str]], name: str) -> str | None:
    ids = found.get(name) or []
    return ids[0] if ids else None


def dependency_of(array: PlannedArray, job_ids: list[str]) -> str | None:
    """`aftercorr:<job>` on the array it waits for: one of this plan (by position) or an old one."""
    if array.after_job is not None:
        return f"aftercorr:{array.after_job}"
    if array.depends_on is not None:
        return f"aftercorr:{job_ids[array.depends_on]}"
    return None


# --- what Slurm says about the sweep's tasks: one sacct + one squeue --------------------------------

def slurm_live(manifest: mf.Manifest, *, sacct: Any = None, squeue: Any = None) -> Live:
    """{trial index: LiveTask} for every trial of a Slurm submission that Slurm still knows."""
    job_ids = manifest.job_ids()
    live = Live()
    if not job_ids:
        return live
    by_task, live.accounting, live.notes = query_slurm(job_ids, sacct=sacct, squeue=squeue)
    latest = manifest.latest_submissions()
    for sub in dict.fromkeys(latest.values()):
        if not (sub.is_slurm and sub.job_id):
            continue
        for task, indices in mf.tasks_of(sub.index_list(), offset=sub.offset, pack=sub.pack).items():
            found = by_task.get(f"{sub.job_id}_{task}")
            if found is not None:
                live.tasks.update((i, found) for i in indices if latest.get(i) is sub)
    return live


def live_tasks(sacct_rows: list[Any], squeue_rows: list[Any], job_ids: list[str] | None = None
               ) -> dict[str, LiveTask]:
    """{'<job>_<task>': LiveTask} from jobs.slurm SacctRow/SqueueRow lists.

    Grouped pending rows ('12_[3-7%2]') are expanded; step rows are skipped (except for the
    memory their steps used: sacct reports MaxRSS on steps only); squeue wins over sacct because
    it is the live view (sacct can lag a requeue by a moment).
    """
    wanted = set(job_ids) if job_ids is not None else None
    out: dict[str, LiveTask] = {}
    restarts: dict[str, int] = {}
    rss: dict[str, float] = {}
    for row in sacct_rows:
        jid = row.job_id
        if wanted is not None and jid.job not in wanted:
            continue
        if jid.step:
            if row.max_rss_mb is not None and jid.task is not None:
                key = f"{jid.job}_{jid.task}"
                rss[key] = max(rss.get(key, 0.0), row.max_rss_mb)
            continue
        for task in jid.tasks():
            key = f"{jid.job}_{task}"
            restarts[key] = row.restarts
            out[key] = LiveTask(row.state.name, key, row.node, float(row.elapsed_s), row.restarts, row.reason,
                                "sacct", row.exit_code, None, row.req_mem_mb, row.time_limit_s)
    for key, mb in rss.items():
        if key in out:
            out[key] = dataclasses.replace(out[key], max_rss_mb=mb)
    for row in squeue_rows:
        jid = row.job_id
        if jid.step or (wanted is not None and jid.job not in wanted):
            continue
        for task in jid.tasks():
            key = f"{jid.job}_{task}"
            out[key] = LiveTask(row.state.name, key, row.node, float(row.time_s), restarts.get(key, 0),
                                row.reason if row.reason != "None" else "", "squeue")
    return out


def query_slurm(job_ids: list[str], *, sacct: Any = None, squeue: Any = None
                ) -> tuple[dict[str, LiveTask], bool, list[str]]:
    """(live tasks by '<job>_<task>', accounting answered, notes) from one sacct and one squeue call.

    squeue is asked for this user's jobs and filtered here, so ids that left the queue long ago never
    make it fail; sacct gets the parent array ids (never one id per task).
    """
    from jobs import slurm

    sacct = sacct or slurm.sacct
    squeue = squeue or slurm.squeue
    notes: list[str] = []
    accounting = True
    try:
        sacct_rows = sacct(job_ids, steps=True)
    except SlurmError as exc:
        accounting = False
        sacct_rows = []
        notes.append(f"sacct unavailable ({exc.said.splitlines()[0] if exc.said else 'no output'}): "
                     "states from squeue and the result files only")
    try:
        squeue_rows = squeue(None, user=slurm.current_user())
    except SlurmError as exc:
        squeue_rows = []
        notes.append(f"squeue failed ({exc.said.splitlines()[0] if exc.said else 'no output'})")
    return live_tasks(sacct_rows, squeue_rows, job_ids), accounting, notes


BACKEND = SlurmBackend()
