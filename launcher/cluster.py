"""Cluster profiles (configs/clusters/<name>.yaml): what a cluster allows and wants.

A profile is trusted configuration (it sits in the repository or the user's home):
its `setup` and `modules` lines go into job scripts verbatim. Resource values coming
from a sweep file are not trusted: they are checked against a fixed list of keys here
and shell-quoted by the template renderer.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jobs.errors import UserError
from jobs.profile import INT_FIELDS, ClusterProfile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "configs" / "clusters"
SIGNALS = ("USR1", "USR2", "TERM")
# Resource keys a sweep file (spec.resources) may set, mapped to profile fields.
RESOURCE_KEYS = {"partition": "partition", "gres": "gres", "time": "time", "mem": "mem",
                 "cpus_per_task": "cpus_per_task", "cpus": "cpus_per_task", "account": "account",
                 "qos": "qos", "constraint": "constraint", "max_parallel": "max_parallel",
                 "signal": "signal", "grace_s": "grace_s", "trial_time": "trial_time",
                 "timeout_requeues": "timeout_requeues", "gpus_per_trial": "gpus_per_trial",
                 "cpus_per_trial": "cpus_per_trial"}
# Slurm memory sizes (`--mem=8G`, `--mem-per-cpu=500M`; 0 means all of the node's memory).
_MEMORY = re.compile(r"^\d+(\.\d+)?[KMGTkmgt]?$")
_PER_UNIT_MEMORY = ("mem-per-cpu", "mem-per-gpu")
# sbatch long options a profile's `sbatch:` escape hatch may use (letters, digits, dashes).
_OPTION_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _resolve(name_or_file: str) -> Path:
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"cluster profile {name_or_file} does not exist",
                            fix=f"pass a profile file or one of: {', '.join(available_profiles())}")
        return path
    candidate = PROFILE_DIR / f"{name_or_file}.yaml"
    if not candidate.is_file():
        raise UserError(f"unknown cluster profile '{name_or_file}'",
                        fix=f"use one of: {', '.join(available_profiles())}, or a path to a .yaml profile")
    return candidate


def load_profile(name_or_file: str) -> ClusterProfile:
    """A profile by name (configs/clusters/<name>.yaml) or by path."""
    path = _resolve(name_or_file)
    from launcher import safe_yaml

    # A profile may come from a user's path: read within safe_yaml's limits like a sweep file.
    data = safe_yaml.read(path, what="cluster profile") or {}
    if not isinstance(data, dict):
        raise UserError("a cluster profile must be a mapping", file=str(path),
                        fix="start from configs/clusters/generic.yaml")
    data.setdefault("name", path.stem)
    data["source"] = str(path)
    return _build(data, str(path))


def _build(data: dict[str, Any], where: str) -> ClusterProfile:
    names = set(ClusterProfile._fields)
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown profile key(s) {', '.join(unknown)}", file=where, key=unknown[0],
                        fix=f"valid keys: {', '.join(sorted(names - {'source'}))}")
    for key in ("modules", "setup"):
        if data.get(key) is None:
            data[key] = []
        if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
            raise UserError("must be a list of shell lines", file=where, key=key)
    for key in ("partitions", "sbatch"):
        if data.get(key) is None:
            data[key] = {}
        if not isinstance(data[key], dict):
            raise UserError("must be a mapping", file=where, key=key)
    profile = ClusterProfile(**data)
    validate(profile, where)
    return profile


# Whole-number fields that may be left unset (None: no throttle, the profile's default, one process).
_MAY_BE_UNSET = frozenset({"max_parallel", "cpus_per_task", "gpus_per_trial", "cpus_per_trial"})


def validate(profile: ClusterProfile, where: str) -> None:
    if profile.signal not in SIGNALS:
        raise UserError(f"signal '{profile.signal}' is not one the runner traps", file=where, key="signal",
                        fix=f"use one of {', '.join(SIGNALS)}")
    for key in sorted(INT_FIELDS):
        value = getattr(profile, key)
        if value is None and key in _MAY_BE_UNSET:
            continue
        lowest = 0 if key == "timeout_requeues" else 1     # 0: a time limit is final at once
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            what = "a whole number, 0 or more" if lowest == 0 else "a positive integer"
            raise UserError(f"must be {what}, not {value!r}", file=where, key=key)
    for key in ("time", "trial_time"):
        value = getattr(profile, key)
        if value is None or (key == "time" and str(value).strip().upper() in ("UNLIMITED", "INFINITE")):
            continue
        from jobs.slurm import time_spec_s

        try:
            time_spec_s(value)
        except ValueError:
            raise UserError(f"'{value}' is not a Slurm time", file=where, key=key,
                            fix="write minutes, HH:MM:SS or D-HH:MM:SS, e.g. 02:00:00 or 1-12:00:00") from None
    memory = {k: v for k, v in [("mem", profile.mem), *profile.sbatch.items()]
              if v is not None and k in ("mem", *_PER_UNIT_MEMORY)}
    for key, value in memory.items():
        if not _MEMORY.match(str(value).strip()):
            raise UserError(f"'{value}' is not a Slurm memory size", file=where, key=key,
                            fix="write a number with an optional unit K, M, G or T, e.g. 8G or 500M")
    if len(memory) > 1:
        raise UserError(f"{' and '.join(memory)} both set: sbatch takes only one", file=where, key=list(memory)[-1],
                        fix="keep one way of asking for memory")
    for option in profile.sbatch:
        if not _OPTION_NAME.match(str(option)):
            raise UserError(f"'{option}' is not an sbatch long option name", file=where, key=f"sbatch.{option}",
                            fix="write the option without dashes, e.g. `account: my-lab`")


def with_resources(profile: ClusterProfile, resources: dict[str, Any], *, source: str | None = None
                   ) -> ClusterProfile:
    """The profile with resources applied (a sweep file's `resources:`, or --mem/--time/... on the
    command line); they win over the profile.

    A profile field (`time`, `mem`, `gres`, `cpus_per_task`, ..., or `max_parallel`, `signal`,
    `grace_s`, `trial_time`) is set as such; any other long sbatch option (`mail-type`, `exclude`,
    `mail_user` ...) goes to the script as `#SBATCH --<option>=<value>` (true: a bare flag).
    Refused: options sbatch does not have (with the closest name), and those the runner owns.
    """
    if not resources:
        return profile
    changes: dict[str, Any] = {}
    extra = dict(profile.sbatch)
    for key, value in resources.items():
        where = f"resources.{key}" if source != "command line" else f"--{str(key).replace('_', '-')}"
        if isinstance(value, (dict, list, tuple)) or (value is not None and not isinstance(value, (str, int, float))):
            raise UserError(f"must be a single value, not {value!r}", file=source, key=where)
        target = RESOURCE_KEYS.get(key) or RESOURCE_KEYS.get(str(key).replace("-", "_"))
        if target is not None:
            if target in INT_FIELDS and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            changes[target] = value
            continue
        option = str(key).replace("_", "-")
        if option in RUNNER_OWNED:
            raise UserError(f"'{key}' is set by the task runner, not by a sweep", file=source, key=where,
                            fix=RUNNER_OWNED[option])
        if option not in SBATCH_OPTIONS:
            import difflib

            close = difflib.get_close_matches(option, sorted(SBATCH_OPTIONS) + sorted(RESOURCE_KEYS), n=1)
            raise UserError(f"sbatch has no option --{option}", file=source, key=where,
                            fix=f"did you mean '{close[0]}'?" if close else "see `man sbatch` for the long options")
        if value is False:
            extra.pop(option, None)
        else:
            extra[option] = None if value is True else value
    # sbatch takes one of --mem, --mem-per-cpu and --mem-per-gpu: the one asked for here replaces the
    # profile's (naming two here is refused by validate).
    named = {str(k).replace("_", "-") for k in resources}
    if named & {"mem", *_PER_UNIT_MEMORY}:
        if "mem" not in named:
            changes["mem"] = None
        for other in _PER_UNIT_MEMORY:
            if other not in named:
                extra.pop(other, None)
    updated = profile.replace(sbatch=extra, **changes)
    validate(updated, source or "resources")
    return updated


# sbatch's long options (Slurm 22.05 to 24.x), for checking a sweep's resources before submitting.
SBATCH_OPTIONS = frozenset("""
account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment constraint container
container-id contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot
dependency distribution error exclude exclusive export export-file extra extra-node-info get-user-env gid
gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags hint hold ignore-pbs input
job-name kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus
network nice no-kill no-requeue nodefile nodelist nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node
ntasks-per-socket open-mode output overcommit oversubscribe parsable partition power prefer priority profile
propagate qos quiet reboot requeue reservation signal sockets-per-node spread-job switches test-only
thread-spec threads-per-core time time-min tmp tres-per-task uid use-min-nodes verbose wait wait-all-nodes
wckey wrap
""".split())
# What the task runner sets itself, and what to do instead.
RUNNER_OWNED = {
    "array": "the launcher builds --array from the trials (use --max-parallel for the %N throttle)",
    "output": "every task logs to <sweep>/logs/<job>_<task>.out, linked into its trial directory",
    "error": "every task logs to <sweep>/logs/<job>_<task>.out, linked into its trial directory",
    "job-name": "the job name carries the sweep's name and its submission token",
    "chdir": "tasks run where `sweep launch` ran",
    "open-mode": "task logs are appended to across requeues",
    "dependency": "stages are chained with aftercorr by the launcher",
    "requeue": "tasks are always requeueable: the runner decides when to requeue",
    "no-requeue": "tasks are always requeueable: the runner decides when to requeue",
    "wrap": "the launcher writes the job script", "parsable": "the launcher reads the job id itself",
    "wait": "use `sweep launch --wait` (it watches results, not sbatch)", "test-only": "use --dry-run",
}
