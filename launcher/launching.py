"""`sweep launch`, the work behind the command: items -> spec -> trials -> sweep directory -> jobs.

    prepare(options) -> Prepared      read the spec, apply the command line, plan trials and arrays;
                                      writes nothing (a dry run stops here)
    launch(prepared) -> Launched      create the sweep directory, then submit through the sweep's
                                      lock (record first, confirm after: jobs.submission)

Trailing `key=value` items are Hydra-style overrides for every trial (a sweep expression such as
`lr=0.1,0.2` becomes one more axis). Nothing is written or submitted before the spec validated
and the trials were planned.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jobs import backends
from jobs import manifest as mf
from jobs.backends import SweepRef
from jobs.backends.arrays import ArrayPlan
from jobs.errors import UserError
from jobs.manifest import Manifest, Trial
from launcher.spec import SweepSpec
from search.dist import Dist


@dataclass
class LaunchOptions:
    """What the command line says (launcher.commands.launch parses it into this)."""

    items: list[str]
    grid: bool = False
    name: str | None = None
    executor: str | None = None
    cluster: str | None = None
    dir: Path | None = None
    max_parallel: int | None = None
    max_attempts: int = mf.DEFAULT_MAX_ATTEMPTS
    dialect: str | None = None
    method: str | None = None
    trials: int | None = None
    command: str | None = None
    seed: int | None = None
    pack: int | str | None = None
    resources: dict[str, Any] = field(default_factory=dict)   # --mem, --time, ... (sbatch options)
    detach: bool = False
    wait: bool = False
    dry_run: bool = False


@dataclass
class Prepared:
    options: LaunchOptions
    spec: SweepSpec
    spec_text: str
    manifest: Manifest
    sweep_dir: Path
    plan: ArrayPlan
    seed_drawn: bool = False

    @property
    def backend(self) -> backends.Backend:
        return backends.get(self.manifest.settings.executor)


# --- the spec -------------------------------------------------------------------------------------

def split_command(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:   # "No closing quotation"
        raise UserError(f"--command {text!r} cannot be split into words ({exc})", key="--command",
                        fix="close the quote, e.g. --command 'python train.py'") from None
    if not argv:
        raise UserError("--command is empty", key="--command", fix="pass e.g. --command 'python -m train'")
    return argv


def _split_items(items: list[str], grid: bool) -> tuple[str | None, list[str]]:
    spec_path = None
    assignments = []
    for item in items:
        if "=" in item and not (spec_path is None and not grid and Path(item).is_file()):
            assignments.append(item)
        elif spec_path is None and not grid:
            spec_path = item
        else:
            raise UserError(f"unexpected argument {item!r}", key=item,
                            fix="give one sweep file, then key=value overrides" if not grid
                            else "with --grid every argument is key=value, e.g. lr=0.1,0.01")
    if grid and not assignments:
        raise UserError("--grid needs key=value axes", fix="e.g. `sweep launch --grid lr=0.1,0.01 seed=1,2`")
    if not grid and spec_path is None:
        raise UserError("no sweep file given", fix="pass a sweep file, or --grid key=v1,v2 ...")
    return spec_path, assignments


def _parse_assignments(assignments: list[str]) -> list[tuple[str, Any, str]]:
    from launcher.dialects.hydra_syntax import parse_assignment

    out = []
    for text in assignments:
        key, value = parse_assignment(text, file="command line")
        out.append((key, value, text.split("=", 1)[1]))
    return out


def _grid_name(keys: list[str]) -> str:
    parts = [re.sub(r"[^A-Za-z0-9_]+", "_", k.split(".")[-1]).strip("_") for k in keys]
    return ("grid-" + "-".join(p for p in parts if p))[:100] or "grid"


def _inline_grid(opts: LaunchOptions, parsed: list[tuple[str, Any, str]]) -> tuple[SweepSpec, str]:
    import yaml

    from launcher.dialects import finalize
    from launcher.spec import DEFAULT_COMMAND

    space = {k: v for k, v, _ in parsed if isinstance(v, Dist)}
    constants = {k: v for k, v, _ in parsed if not isinstance(v, Dist)}
    if not space:
        raise UserError("--grid got no axis with more than one value", key=parsed[0][0],
                        fix="write an axis as key=v1,v2 (a single value is a constant)")
    name = opts.name or _grid_name(list(space))
    command = tuple(split_command(opts.command)) if opts.command else DEFAULT_COMMAND
    spec = finalize(SweepSpec(name=name, method="grid", space=space, constants=constants, command=command,
                              dialect="native", source="command line"))
    # The frozen copy is a native sweep file that reproduces this launch.
    frozen = {"name": name, "command": list(command), "method": "grid",
              "grid": {k: text for k, v, text in parsed if isinstance(v, Dist)}, "fixed": constants}
    return spec, "# sweep launch --grid " + " ".join(shlex.quote(a) for a in opts.items) + "\n" + \
        yaml.safe_dump(frozen, sort_keys=False)


def load_spec(opts: LaunchOptions) -> tuple[SweepSpec, str]:
    """(spec, text of sweep.yaml) from the file or the inline grid, command-line overrides applied."""
    spec_path, assignments = _split_items(opts.items, opts.grid)
    parsed = _parse_assignments(assignments)
    if opts.grid:
        return _inline_grid(opts, parsed)
    from launcher.dialects import load_spec as load_file

    command = split_command(opts.command) if opts.command else None
    spec = load_file(spec_path, opts.dialect, method=opts.method, trials=opts.trials, command=command)
    if opts.name:
        spec = dataclasses.replace(spec, name=opts.name)
    if parsed:
        space, constants = dict(spec.space), dict(spec.constants)
        for key, value, _ in parsed:
            # Hydra semantics: `k=v` pins k (even if the file sweeps it); `k=a,b` sweeps it.
            if isinstance(value, Dist):
                space[key] = value
                constants.pop(key, None)
            else:
                constants[key] = value
                space.pop(key, None)
        spec = dataclasses.replace(spec, space=space, constants=constants)
    try:
        text = Path(spec_path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the file ({exc.__class__.__name__})", file=spec_path) from None
    return spec, text


def plan_trials(spec: SweepSpec) -> list[Trial]:
    from launcher.plans import expand

    trials = expand(spec)
    if not trials:
        raise UserError("the sweep has no trials", file=spec.source, fix="check its grid/space and trials")
    return trials


# --- prepare: everything but writing ----------------------------------------------------------------

def _pack(opts: LaunchOptions, spec: SweepSpec, profile: Any) -> int:
    from launcher.packing import pack_size

    return pack_size(opts.pack if opts.pack is not None else spec.resources.get("pack"), profile, spec)


def prepare(opts: LaunchOptions) -> Prepared:
    from launcher import sweepdir
    from launcher.cluster import load_profile, with_resources

    executor = opts.executor or backends.default_executor()
    backends.get(executor)   # an unknown name fails here, with the list
    if opts.max_parallel is not None and opts.max_parallel < 1:
        raise UserError("--max-parallel must be at least 1", key="--max-parallel")
    if opts.max_attempts < 1:
        raise UserError("--max-attempts must be at least 1", key="--max-attempts")
    if opts.wait and opts.detach:
        raise UserError("--wait and --detach contradict each other", key="--wait", fix="pass one of them")
    spec, spec_text = load_spec(opts)
    sweep_dir = opts.dir.absolute() if opts.dir else sweepdir.default_sweep_dir(spec.name)
    seed, drawn = _seed(opts, spec, sweep_dir)
    spec = dataclasses.replace(spec, seed=seed)
    trials = plan_trials(spec)
    profile = load_profile(opts.cluster or os.environ.get("SWEEP_CLUSTER") or
                           ("local" if executor == "local" else "generic"))
    profile = with_resources(profile, {k: v for k, v in spec.resources.items() if k != "pack"}, source=spec.source)
    profile = with_resources(profile, opts.resources, source="command line")
    max_parallel = opts.max_parallel or profile.max_parallel
    from launcher.checks.trainer_overrides import check_overrides

    check_overrides(spec, trials, command_line=_split_items(opts.items, opts.grid)[1])
    pack = _pack(opts, spec, profile)
    launch_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()}
    launch_args["max_parallel"] = max_parallel
    manifest = sweepdir.build_manifest(spec, trials, executor=executor, cluster=profile, workdir=os.getcwd(),
                                       max_attempts=opts.max_attempts, pack=pack, launch_args=launch_args)
    from jobs.promote import hold_higher_rungs

    manifest = hold_higher_rungs(manifest)   # successive halving: rungs above 0 wait for promotions
    held = set(manifest.held_indices())
    backend = backends.get(executor)
    plan = backend.plan([t for t in trials if t.index not in held], SweepRef(sweep_dir, manifest),
                        budget=queue_budget(profile, backend, opts.dry_run), pack=pack, max_parallel=max_parallel)
    return Prepared(opts, spec, spec_text, manifest, sweep_dir, plan, seed_drawn=drawn)


def queue_budget(profile: Any, backend: backends.Backend, dry_run: bool) -> int:
    """Array tasks this launch may queue: the profile's max_queued_jobs less what this user has queued
    already (every job counts against a site's limit; sbatch refuses an array that would cross it).
    A dry run, or a squeue that fails, plans against the profile's limit alone."""
    if dry_run or not backend.uses_slurm:
        return profile.max_queued_jobs
    from jobs.slurm import SlurmError
    from jobs.topup import queue_room

    try:
        return max(0, queue_room(profile.max_queued_jobs, [])[0])
    except (SlurmError, OSError):
        return profile.max_queued_jobs


def _seed(opts: LaunchOptions, spec: SweepSpec, sweep_dir: Path) -> tuple[int, bool]:
    """--seed, else the file's, else the one an earlier (unsubmitted) launch into this directory
    recorded, else a new one: (seed, whether it was drawn now)."""
    if opts.seed is not None:
        return opts.seed, False
    if spec.seed is not None:
        return spec.seed, False
    if mf.manifest_path(sweep_dir).exists():
        try:
            return mf.read_settings(sweep_dir).seed, False
        except UserError:
            pass
    return secrets.randbelow(2 ** 31), True


# --- launch: write, then submit -------------------------------------------------------------------

@dataclass
class Launched:
    prepared: Prepared
    submissions: list[mf.Submission]
    unsubmitted: list[int]
    outcome: dict[str, str] | None = None    # local foreground: {trial id: status}
    pid: int | None = None                   # local detached: the pool's pid


def launch(prep: Prepared, *, on_update: Callable[[Trial, str], None] | None = None,
           on_start: Callable[[], None] | None = None) -> Launched:
    """Create the sweep directory and submit (a local foreground run runs here, after the lock;
    `on_start` is called just before its first trial starts)."""
    from jobs.submission import open_sweep
    from launcher import sweepdir

    sweepdir.create(prep.sweep_dir, prep.manifest, prep.spec_text)
    local_foreground = prep.backend.name == "local" and not prep.options.detach
    with open_sweep(prep.sweep_dir, "sweep launch") as session:
        # Checked again under the lock: another launch into this directory may have submitted
        # since `create` looked.
        sweepdir.refuse_if_launched(prep.sweep_dir, session.manifest)
        session.submit(prep.plan, unsubmitted=prep.plan.unsubmitted, foreground=local_foreground,
                       max_parallel=prep.manifest.settings.max_parallel)
        subs = list(session.manifest.submissions)
    done = Launched(prep, subs, prep.plan.unsubmitted, pid=subs[0].pid if subs and subs[0].pid else None)
    if local_foreground and subs:
        from jobs.backends import local

        planned = set(prep.plan.planned)    # not the trials held for a promotion or left waiting
        if on_start is not None:
            on_start()
        done.outcome = local.run_pool(prep.sweep_dir, [t for t in prep.manifest.trials if t.index in planned],
                                      max_parallel=prep.manifest.settings.max_parallel or 1, on_update=on_update)
    return done


def dry_run_document(prep: Prepared) -> dict[str, Any]:
    from jobs.run import trial_argv

    settings = prep.manifest.settings
    return {
        "name": settings.name, "dialect": settings.dialect, "method": settings.method,
        "executor": settings.executor, "sweep_dir": str(prep.sweep_dir), "seed": settings.seed,
        "seed_drawn": prep.seed_drawn, "pack": settings.pack,
        "space": {k: d.to_dict() for k, d in settings.space.items()},
        "trials": [{"id": t.id, "index": t.index, "stage": t.stage, "params": t.params,
                    "overrides": t.override_args(),
                    "argv": trial_argv(prep.sweep_dir, settings, t, write_json_file=False)}
                   for t in prep.manifest.trials],
        "submissions": [a.to_dry_run() for a in prep.plan.arrays],
        "unsubmitted": mf.compact_ranges(prep.plan.unsubmitted),
        "held": prep.manifest.held,
        "warnings": list(prep.spec.warnings),
    }
