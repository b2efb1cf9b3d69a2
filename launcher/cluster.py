"""Cluster profiles (configs/clusters/<name>.yaml): what a cluster allows and wants.

A profile is trusted configuration (it sits in the repository or the user's home):
its `setup` and `modules` lines go into job scripts verbatim. Resource values coming
from a sweep file are not trusted: they are checked against a fixed list of keys here
and shell-quoted by the template renderer.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import UserError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "configs" / "clusters"
SIGNALS = ("USR1", "USR2", "TERM")
# Resource keys a sweep file (spec.resources) may set, mapped to profile fields.
RESOURCE_KEYS = {"partition": "partition", "gres": "gres", "time": "time", "mem": "mem",
                 "cpus_per_task": "cpus_per_task", "cpus": "cpus_per_task", "account": "account",
                 "qos": "qos", "constraint": "constraint", "max_parallel": "max_parallel",
                 "signal": "signal", "grace_s": "grace_s"}
# sbatch long options a profile's `sbatch:` escape hatch may use (letters, digits, dashes).
_OPTION_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass
class ClusterProfile:
    # Profile name (file stem or `name:`).
    name: str = "generic"
    # Default partition; None = the cluster's default.
    partition: str | None = None
    # Human notes on the partitions (shown by --help-like listings, not used to submit).
    partitions: dict[str, str] = field(default_factory=dict)
    # Generic resources per task, e.g. "gpu:1".
    gres: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    # Time limit per task (Slurm syntax, e.g. "12:00:00").
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    # Warning signal before the time limit: `--signal=B:<signal>@<grace_s>`.
    signal: str = "USR1"
    grace_s: int = 120
    # Task ids must be < max_array_size (Slurm's MaxArraySize): larger stages are split.
    max_array_size: int = 1001
    # Array tasks queued at once (every task counts); the rest waits for `sweep resume`.
    max_queued_jobs: int = 1000
    # Tasks of one array running at once (`--array=...%N`); None = no throttle.
    max_parallel: int | None = None
    # Interpreter in the job script; None = the one running `sweep launch`.
    python: str | None = None
    # Shell lines written verbatim before the task runner starts (trusted: profile only).
    modules: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    # Escape hatch: other sbatch long options, {name: value} (value None = a bare flag).
    sbatch: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    names = {f.name for f in dataclasses.fields(ClusterProfile)}
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


def validate(profile: ClusterProfile, where: str) -> None:
    if profile.signal not in SIGNALS:
        raise UserError(f"signal '{profile.signal}' is not one the runner traps", file=where, key="signal",
                        fix=f"use one of {', '.join(SIGNALS)}")
    for key in ("grace_s", "max_array_size", "max_queued_jobs"):
        value = getattr(profile, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"must be a positive integer, not {value!r}", file=where, key=key)
    for key in ("max_parallel", "cpus_per_task"):
        value = getattr(profile, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"must be a positive integer, not {value!r}", file=where, key=key)
    for option in profile.sbatch:
        if not _OPTION_NAME.match(str(option)):
            raise UserError(f"'{option}' is not an sbatch long option name", file=where, key=f"sbatch.{option}",
                            fix="write the option without dashes, e.g. `account: my-lab`")


def with_resources(profile: ClusterProfile, resources: dict[str, Any], *, source: str | None = None
                   ) -> ClusterProfile:
    """The profile with a sweep file's `resources` applied (they win over the profile)."""
    if not resources:
        return profile
    changes: dict[str, Any] = {}
    for key, value in resources.items():
        target = RESOURCE_KEYS.get(key)
        if target is None:
            raise UserError(f"unknown resource '{key}'", file=source, key=f"resources.{key}",
                            fix=f"valid resources: {', '.join(sorted(RESOURCE_KEYS))}")
        if value is not None and not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"must be a string or a number, not {value!r}", file=source, key=f"resources.{key}")
        changes[target] = value
    updated = dataclasses.replace(profile, **changes)
    validate(updated, source or "resources")
    return updated
