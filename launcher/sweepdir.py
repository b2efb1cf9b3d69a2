"""Create a sweep directory: sweep.yaml (frozen spec) and manifest.json, nothing else.

Called only after the spec validated and the trials were planned, so a bad file never
leaves a directory behind. Per-trial directories are made by the task runner when a
trial starts: a 10,000-trial sweep costs one manifest (well under 1 KB per trial) until
its trials run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.atomic import write_text_atomic
from jobs.errors import UserError
from launcher.spec import SweepSpec
from launcher.trial import Trial

MANIFEST_SCHEMA = 1
DEFAULT_MAX_ATTEMPTS = 3
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")


def check_name(name: str, source: str | None = None) -> str:
    """A sweep name becomes a directory name: refuse path separators and dot-names."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or len(name) > 200:
        raise UserError(f"sweep name {name!r} cannot name a directory", file=source, key="name",
                        fix="use letters, digits and _ . - only (or pass --dir)")
    return name


def default_sweep_dir(name: str) -> Path:
    """$SCRATCH/sweeps/<name> on clusters (shared by login and compute nodes), else ./sweeps/<name>."""
    scratch = os.environ.get("SCRATCH")
    base = Path(scratch) / "sweeps" if scratch else Path("sweeps")
    return (base / check_name(name)).absolute()


def fingerprint(command: list[str], trials: list[Trial]) -> str:
    """Identity of a launch: the command and the trial ids (ids hash name, stage and params)."""
    h = hashlib.sha1()
    h.update("\0".join(command).encode())
    for t in trials:
        h.update(f"\n{t.id}:{t.index}:{t.parent or ''}".encode())
    return h.hexdigest()[:16]


def build_manifest(spec: SweepSpec, trials: list[Trial], *, executor: str, cluster: dict[str, Any] | None,
                   workdir: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                   unsubmitted: list[int] = (), launch_args: dict[str, Any] | None = None) -> dict[str, Any]:
    command = [str(c) for c in spec.command if c is not None]
    return {
        "schema": MANIFEST_SCHEMA,
        "name": spec.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "dialect": spec.dialect,
        "source": spec.source,
        "method": spec.method,
        "metric": spec.metric,
        "goal": spec.goal,
        "command": command,
        "executor": executor,
        "cluster": cluster,
        "max_attempts": max_attempts,
        # Where the command runs (relative paths in the sweep resolve against it).
        "workdir": workdir,
        "checkpoint_key": spec.stages.checkpoint_key if spec.stages else None,
        "space": {k: d.to_dict() for k, d in spec.space.items()},
        # What jobs.bayes needs in the array tasks (sampler, pruner, start-up trials, seed).
        "sampler": spec.sampler,
        "pruner": dataclasses.asdict(spec.pruner),
        "search_options": dict(spec.search_options),
        "seed": spec.seed,
        "launch": launch_args or {},
        "fingerprint": fingerprint(command, trials),
        "trials": [t.to_dict() for t in trials],
        "submissions": [],
        # Trial indices not submitted because of the cluster's queue limit (`sweep resume` tops up).
        "unsubmitted": mf.compact_ranges(list(unsubmitted)),
    }


def create(sweep_dir: str | os.PathLike, manifest: dict[str, Any], spec_text: str) -> Path:
    """Write sweep.yaml and manifest.json; refuse a directory that holds another sweep.

    Re-running the same launch into a directory whose earlier launch never reached sbatch
    is allowed (it is the same sweep); once anything was submitted, `sweep resume` is the
    tool, so launching again cannot double-submit.
    """
    path = Path(sweep_dir).absolute()
    if mf.manifest_path(path).exists():
        existing = mf.read_manifest(path)
        if existing.get("fingerprint") != manifest["fingerprint"]:
            raise UserError(f"{path} already holds a different sweep ('{existing.get('name')}')",
                            fix="pass --dir for a new directory, or `sweep resume "
                                f"{path}` to continue that one")
        if existing.get("submissions"):
            raise UserError(f"{path} was already launched ({len(existing['submissions'])} submission(s))",
                            fix=f"run `sweep resume {path}` to submit what is missing, or pass --dir")
    elif path.exists() and any(path.iterdir()):
        raise UserError(f"{path} exists and is not a sweep directory",
                        fix="pass --dir with an empty or new directory")
    path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path / mf.SPEC_COPY, spec_text)
    mf.write_manifest(path, manifest)
    return path


def record_submissions(sweep_dir: str | os.PathLike, manifest: dict[str, Any],
                       records: list[dict[str, Any]]) -> None:
    """Append submission records and rewrite manifest.json atomically."""
    manifest.setdefault("submissions", []).extend(records)
    mf.write_manifest(sweep_dir, manifest)
