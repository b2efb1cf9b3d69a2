"""Create a sweep directory: sweep.yaml (the spec as given) and manifest.json, nothing else.

Called only after the spec validated and the trials were planned, so a bad file never leaves a
directory behind. Both files are written into a hidden directory next to the target, which is then
renamed into place: a full disk or a read-only filesystem leaves nothing half-written, and a retry
into the same directory works. Per-trial directories are made by the task runner when a trial
starts: a 10,000-trial sweep costs one manifest (well under 1 KB per trial) until its trials run.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.atomic import write_text_atomic
from jobs.errors import UserError
from jobs.manifest import Manifest, Settings, Trial
from jobs.profile import ClusterProfile
from jobs.submission import filesystem_error
from launcher.spec import SweepSpec

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")
# What a directory may hold and still count as empty for a (re)launch: a lock file, and what an
# interrupted launch of this tool left.
_OURS = {mf.SPEC_COPY, ".lock", ".lock.owner"}


def check_name(name: str, source: str | None = None) -> str:
    """A sweep name becomes a directory name: refuse path separators and dot-names."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or len(name) > 200:
        raise UserError(f"sweep name {name!r} cannot name a directory", file=source, key="name",
                        fix="use letters, digits and _ . - only (or pass --dir)")
    return name


def sweeps_root() -> Path:
    """$SCRATCH/sweeps on clusters (shared by login and compute nodes), else ./sweeps."""
    scratch = os.environ.get("SCRATCH")
    return Path(scratch) / "sweeps" if scratch else Path("sweeps")


def default_sweep_dir(name: str) -> Path:
    """<sweeps_root>/<name>."""
    return (sweeps_root() / check_name(name)).absolute()


def fingerprint(command: list[str], trials: list[Trial]) -> str:
    """Identity of a launch: the command and the trial ids (ids hash name, stage and params)."""
    h = hashlib.sha1()
    h.update("\0".join(command).encode())
    for t in trials:
        h.update(f"\n{t.id}:{t.index}:{t.parent or ''}".encode())
    return h.hexdigest()[:16]


def build_manifest(spec: SweepSpec, trials: list[Trial], *, executor: str, cluster: ClusterProfile | None,
                   workdir: str, max_attempts: int = mf.DEFAULT_MAX_ATTEMPTS, pack: int = 1,
                   launch_args: dict[str, Any] | None = None) -> Manifest:
    command = tuple(str(c) for c in spec.command if c is not None)
    settings = Settings(
        name=spec.name, command=command, executor=executor, method=spec.method, metric=spec.metric,
        goal=spec.goal, workdir=workdir, max_attempts=max_attempts, pack=pack, stages=spec.stages,
        space=dict(spec.space), sampler=spec.sampler, pruner=spec.pruner, search_options=dict(spec.search_options),
        seed=spec.seed, dialect=spec.dialect, source=spec.source,
        created=mf.now_iso(), cluster=cluster or ClusterProfile(),
        logging=dict(spec.extra.get("logging") or {}), launch=dict(launch_args or {}),
        fingerprint=fingerprint(list(command), trials))
    return Manifest(settings=settings, trials=tuple(trials))


def refuse_if_launched(path: Path, manifest: Manifest) -> None:
    if manifest.submissions:
        raise UserError(f"{path} was already launched ({len(manifest.submissions)} submission(s))",
                        fix=f"run `sweep resume {path}` to submit what is missing, or pass --dir")


def _reusable(path: Path, manifest: Manifest) -> bool:
    """May `path` receive this launch? Refuse another sweep, one already launched, or a folder of
    someone else's files."""
    if mf.manifest_path(path).exists():
        existing = mf.read_manifest(path)
        if existing.settings.fingerprint != manifest.settings.fingerprint:
            raise UserError(f"{path} already holds a different sweep ('{existing.name}')",
                            fix=f"pass --dir for a new directory, or `sweep resume {path}` to continue that one")
        refuse_if_launched(path, existing)
        return True
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory", fix="pass --dir with a new directory")
    if path.exists() and any(p.name not in _OURS for p in path.iterdir()):
        raise UserError(f"{path} exists and is not a sweep directory", fix="pass --dir with an empty or new directory")
    return True


def create(sweep_dir: str | os.PathLike, manifest: Manifest, spec_text: str) -> Path:
    """Write sweep.yaml and manifest.json into `sweep_dir`, all or nothing.

    Re-running the same launch into a directory whose earlier launch never reached sbatch is
    allowed (it is the same sweep); once anything was submitted, `sweep resume` is the tool, so
    launching again cannot double-submit.
    """
    path = Path(sweep_dir).absolute()
    _reusable(path, manifest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            # Same sweep, nothing submitted (or an empty folder): write in place, each file atomically,
            # under the sweep's lock and after looking again: another launch into this directory may
            # have recorded submissions since, and this manifest would erase them.
            from jobs.lock import sweep_lock

            with sweep_lock(path, "sweep launch"):
                _reusable(path, manifest)
                write_text_atomic(path / mf.SPEC_COPY, spec_text)
                mf.write_manifest(path, manifest)
            return path
        staging = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
        staging.mkdir()
        try:
            write_text_atomic(staging / mf.SPEC_COPY, spec_text)
            mf.write_manifest(staging, manifest)
            os.rename(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise filesystem_error(getattr(exc, "filename", None) or path, exc) from None
    return path
