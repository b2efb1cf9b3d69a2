"""Slurm backend: one `sbatch --array` per stage (chunked to the cluster's limits).

The job script is a pure function of its parameters (`render_script`), rendered from
slurm_templates/array.sbatch. Anything that came from a sweep file is shell-quoted
(or refused when it cannot be quoted on an `#SBATCH` line); only the cluster profile's
`modules`/`setup` lines are written verbatim, because a profile is trusted.

Logs: Slurm writes <sweep>/logs/<array job>_<task>.out (the runner's own lines); the
runner links it into trials/<id>/ and sends the program's output to trials/<id>/trial.log.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from jobs import manifest as mf
from jobs.errors import UserError
from launcher.backends import PlannedArray, plan_arrays
from launcher.cluster import ClusterProfile
from launcher.trial import Trial

TEMPLATE = Path(__file__).resolve().parent.parent.parent / "slurm_templates" / "array.sbatch"
TEMPLATE_VARS = ("job_name", "stage", "indices", "offset", "sweep_dir", "output", "workdir", "signal",
                 "grace_s", "resources", "modules", "setup", "python", "runner")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
# Profile fields that become `#SBATCH --<option>=<value>` lines, in this order.
RESOURCE_OPTIONS = (("partition", "partition"), ("gres", "gres"), ("cpus_per_task", "cpus-per-task"),
                    ("mem", "mem"), ("time", "time"), ("account", "account"), ("qos", "qos"),
                    ("constraint", "constraint"))
LOGS = "logs"


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill `{{name}}` placeholders; unknown or missing names fail with the valid list."""
    wanted = set(_PLACEHOLDER.findall(template))
    missing, extra = wanted - set(values), set(values) - wanted
    if missing or extra:
        raise ValueError(f"template placeholders {sorted(wanted)} do not match the values given "
                         f"(missing {sorted(missing)}, unknown {sorted(extra)}); "
                         f"valid names: {', '.join(TEMPLATE_VARS)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def job_name(sweep_name: str, stage: int) -> str:
    # Job names show up in squeue and in the script's comment: keep them to a safe alphabet.
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", sweep_name).strip("_") or "sweep"
    return f"{safe[:60]}-s{stage}"


def sbatch_value(value: Any, key: str) -> str:
    """A value for an `#SBATCH --opt=<value>` line, shell-quoted (sbatch honours the quotes)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UserError(f"value {text!r} holds a control character", key=key,
                        fix="remove the newline or control character")
    return shlex.quote(text)


def resource_lines(profile: ClusterProfile) -> str:
    lines = []
    for field_name, option in RESOURCE_OPTIONS:
        value = getattr(profile, field_name)
        if value is not None and value != "":
            lines.append(f"#SBATCH --{option}={sbatch_value(value, field_name)}")
    for option, value in profile.sbatch.items():
        if value is None or value is True:
            lines.append(f"#SBATCH --{option}")
        else:
            lines.append(f"#SBATCH --{option}={sbatch_value(value, f'sbatch.{option}')}")
    return "\n".join(lines) if lines else "# (no resources requested: the cluster's defaults)"


# The task runner's entry file: `python -S <runner>` skips site-packages (most of an interpreter's
# start-up, paid once per array task); it puts its own package root on sys.path.
RUNNER = str(Path(__file__).resolve().parents[2] / "jobs" / "start.py")


def compile_runner() -> None:
    """Write the bytecode of the stdlib-only `jobs` package once per launch, so that no array task
    compiles it (about 10 ms of CPU per task where PYTHONDONTWRITEBYTECODE is set, or where the
    first tasks start together). A read-only install is left as it is."""
    import compileall

    try:
        compileall.compile_dir(Path(RUNNER).parent, maxlevels=0, quiet=2)
    except OSError:
        pass


def render_script(*, sweep_name: str, sweep_dir: str, workdir: str, stage: int, offset: int,
                  indices: list[int], profile: ClusterProfile, python: str | None = None,
                  runner: str | None = None, template: str | None = None) -> str:
    """The job script of one array (a pure function: same inputs, same text)."""
    values = {
        "job_name": job_name(sweep_name, stage),
        "stage": str(int(stage)),
        "indices": mf.compact_ranges(indices),
        "offset": str(int(offset)),
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
    return render_template(template if template is not None else TEMPLATE.read_text(), values)


def array_spec(task_ids: list[int], max_parallel: int | None) -> str:
    text = mf.compact_ranges(task_ids)
    return f"{text}%{max_parallel}" if max_parallel else text


def plan(trials: list[Trial], *, sweep_name: str, sweep_dir: str, workdir: str, profile: ClusterProfile,
         max_parallel: int | None = None) -> tuple[list[PlannedArray], list[int]]:
    """Arrays to submit (scripts and options rendered) and the indices left for later."""
    arrays, unsubmitted = plan_arrays(trials, max_array_size=profile.max_array_size,
                                      max_queued_jobs=profile.max_queued_jobs)
    throttle = max_parallel or profile.max_parallel
    for array in arrays:
        array.array = array_spec(array.task_ids, throttle)
        array.script = render_script(sweep_name=sweep_name, sweep_dir=sweep_dir, workdir=workdir,
                                     stage=array.stage, offset=array.offset, indices=array.indices,
                                     profile=profile)
        array.options = [f"--array={array.array}"]
    return arrays, unsubmitted


def submit(sweep_dir: str, manifest: dict[str, Any], arrays: list[PlannedArray], *,
           sbatch: Callable[..., str] | None = None) -> list[dict[str, Any]]:
    """sbatch every array in order; record each in manifest.json right after sbatch returns.

    Recording one submission at a time (atomic rewrite) means a launcher killed half-way
    leaves every job it started on record, and `sweep resume` knows what is missing.
    """
    if sbatch is None:
        from jobs.slurm import sbatch
    (Path(sweep_dir) / LOGS).mkdir(exist_ok=True)
    compile_runner()
    job_ids: list[str] = []
    records = manifest.setdefault("submissions", [])
    for array in arrays:
        options = list(array.options)
        dependency = None
        if array.depends_on is not None:
            dependency = f"aftercorr:{job_ids[array.depends_on]}"
            options.append(f"--dependency={dependency}")
        job_id = sbatch(array.script, options)
        job_ids.append(job_id)
        records.append({"stage": array.stage, "job_id": job_id, "array": array.array, "offset": array.offset,
                        "indices": mf.compact_ranges(array.indices), "dependency": dependency,
                        "executor": "slurm", "submitted": _now()})
        mf.write_manifest(sweep_dir, manifest)
    return records[-len(arrays):] if arrays else []


def _now() -> str:
    from jobs.run import now_iso

    return now_iso()
