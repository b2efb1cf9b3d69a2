"""`sweep launch`: a sweep file (or an inline grid) -> trials -> a sweep directory -> jobs.

    sweep launch SPEC [--executor slurm|submitit|local] [--cluster NAME|FILE] [--dir DIR]
                 [--max-parallel N] [--dry-run] [--json] [--detach] [--dialect NAME]
                 [--method M] [--trials N] [--command CMD] [--wait] [key=value ...]
    sweep launch --grid a=1,2,3 b=x,y [--name NAME] [--command CMD]

Trailing `key=value` items are Hydra-style overrides for every trial (a sweep expression
such as `lr=0.1,0.2` becomes one more axis). Nothing is written or submitted before the
spec validated and the trials were planned.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from jobs.errors import UserError
from launcher.backends import EXECUTORS, PlannedArray, default_executor
from launcher.spec import Dist, SweepSpec
from launcher.trial import Trial


class _IntermixedParser(argparse.ArgumentParser):
    """Lets `key=value` items come before and after options (`SPEC --cluster mila lr=0.1`).

    Plain argparse stops filling a `*` positional at the first option; the intermixed
    parse does not, but is refused on parsers with subcommands, so only this subparser uses it.
    """

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "launch", help="launch a sweep (file or --grid) on Slurm, submitit or this machine",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  sweep launch configs/sweeps/feudal_grid.yaml --cluster mila\n"
               "  sweep launch --grid loss.feudal_loss_weight=0.01,0.05 arch.subgoal_head.manager_period=2,4\n"
               "  sweep launch spec.yaml --dry-run --json")
    p.__class__ = _IntermixedParser
    p.add_argument("items", nargs="*", metavar="SPEC|key=value",
                   help="the sweep file, then key=value overrides (with --grid: only key=value axes)")
    p.add_argument("--grid", action="store_true", help="no file: the key=value items are a grid")
    p.add_argument("--name", help="sweep name (default: from the file, or from the --grid keys)")
    p.add_argument("--executor", choices=EXECUTORS, help="default: slurm where sbatch is on PATH, else local")
    p.add_argument("--cluster", metavar="NAME|FILE",
                   help="cluster profile: mila, local, generic or a .yaml (default: $SWEEP_CLUSTER or generic)")
    p.add_argument("--dir", type=Path, help="sweep directory (default: $SCRATCH/sweeps/<name> or ./sweeps/<name>)")
    p.add_argument("--max-parallel", type=int, metavar="N", help="trials running at once (the array's %%N)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="failed runs of a trial before it is recorded as failed (default 3; preemptions do not count)")
    p.add_argument("--dry-run", action="store_true", help="print trials and submissions; write nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--detach", action="store_true", help="local executor: return at once, trials keep running (slurm/submitit never wait)")
    p.add_argument("--wait", action="store_true",
                   help="slurm/submitit: stay in the foreground until every submitted trial has a result "
                        "(exit 0 when all completed); watches the result files, asks Slurm once per refresh")
    p.add_argument("--dialect", help="force the sweep-file dialect (default: detected)")
    p.add_argument("--method", help="override the file's method (grid, random, bayes, baseline)")
    p.add_argument("--trials", type=int, metavar="N", help="override the number of trials (random/bayes)")
    p.add_argument("--command", dest="sweep_command", metavar="CMD", help="program to sweep, e.g. 'python train.py' (never a shell)")
    p.set_defaults(run=run)


# --- the spec ----------------------------------------------------------------------------------

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


def _inline_grid(args: argparse.Namespace, parsed: list[tuple[str, Any, str]]) -> tuple[SweepSpec, str]:
    import yaml

    from launcher.dialects import finalize
    from launcher.spec import DEFAULT_COMMAND

    space = {k: v for k, v, _ in parsed if isinstance(v, Dist)}
    constants = {k: v for k, v, _ in parsed if not isinstance(v, Dist)}
    if not space:
        raise UserError("--grid got no axis with more than one value", key=parsed[0][0],
                        fix="write an axis as key=v1,v2 (a single value is a constant)")
    name = args.name or _grid_name(list(space))
    command = tuple(shlex.split(args.sweep_command)) if args.sweep_command else DEFAULT_COMMAND
    spec = SweepSpec(name=name, method="grid", space=space, constants=constants, command=command,
                     dialect="native", source="command line")
    spec = finalize(spec)
    # The frozen copy is a native sweep file that reproduces this launch.
    frozen = {"name": name, "command": list(command), "method": "grid",
              "grid": {k: text for k, v, text in parsed if isinstance(v, Dist)},
              "fixed": constants}
    return spec, "# sweep launch --grid " + " ".join(shlex.quote(a) for a in args.items) + "\n" + \
        yaml.safe_dump(frozen, sort_keys=False)


def load(args: argparse.Namespace) -> tuple[SweepSpec, str]:
    """(spec, text of sweep.yaml) from the file or the inline grid, CLI overrides applied."""
    spec_path, assignments = _split_items(args.items, args.grid)
    parsed = _parse_assignments(assignments)
    if args.grid:
        return _inline_grid(args, parsed)
    from launcher.dialects import load_spec

    command = shlex.split(args.sweep_command) if args.sweep_command else None
    spec = load_spec(spec_path, args.dialect, method=args.method, trials=args.trials, command=command)
    if args.name:
        spec = dataclasses.replace(spec, name=args.name)
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
    return spec, Path(spec_path).read_text()


def plan_trials(spec: SweepSpec) -> list[Trial]:
    from launcher.plans import expand

    trials = expand(spec)
    if not trials:
        raise UserError("the sweep has no trials", file=spec.source, fix="check its grid/space and trials")
    return trials


# --- submissions -------------------------------------------------------------------------------

def plan_submissions(executor: str, trials: list[Trial], spec: SweepSpec, sweep_dir: Path, profile: Any,
                     max_parallel: int | None, workdir: str) -> tuple[list[PlannedArray], list[int]]:
    if executor == "slurm":
        from launcher.backends import slurm

        return slurm.plan(trials, sweep_name=spec.name, sweep_dir=str(sweep_dir), workdir=workdir,
                          profile=profile, max_parallel=max_parallel)
    if executor == "submitit":
        from launcher.backends import submitit

        return submitit.plan(trials, profile)
    # local: one pool run per stage, each trial after its parent
    arrays = []
    for stage in sorted({t.stage for t in trials}):
        indices = [t.index for t in trials if t.stage == stage]
        array = PlannedArray(stage=stage, offset=0, indices=indices,
                             depends_on=len(arrays) - 1 if arrays else None)
        array.script = f"{shlex.quote(sys.executable)} -m jobs.run {shlex.quote(str(sweep_dir))} <index>"
        array.options = [f"--max-parallel={max_parallel or 1}"]
        arrays.append(array)
    return arrays, []


def trial_argv(trial: Trial, command: list[str], sweep_dir: Path, checkpoint_key: str) -> list[str]:
    """The argv the task runner will run for this trial (the runner's own function)."""
    from jobs.run import trial_argv as runner_argv

    return runner_argv(sweep_dir, {"command": command, "checkpoint_key": checkpoint_key}, trial.to_dict(),
                       write_json_file=False)


def dry_run_document(spec: SweepSpec, trials: list[Trial], arrays: list[PlannedArray], sweep_dir: Path,
                     executor: str, unsubmitted: list[int]) -> dict[str, Any]:
    from jobs.manifest import compact_ranges

    command = [str(c) for c in spec.command if c is not None]
    key = spec.stages.checkpoint_key if spec.stages else "checkpoint_path"
    return {
        "name": spec.name, "dialect": spec.dialect, "method": spec.method, "executor": executor,
        "sweep_dir": str(sweep_dir),
        "space": {k: d.to_dict() for k, d in spec.space.items()},
        "trials": [{"id": t.id, "index": t.index, "stage": t.stage, "params": t.params,
                    "overrides": t.override_args(), "argv": trial_argv(t, command, sweep_dir, key)}
                   for t in trials],
        "submissions": [a.to_dry_run() for a in arrays],
        "unsubmitted": compact_ranges(unsubmitted),
        "warnings": list(spec.warnings),
    }


def _print_dry_run(doc: dict[str, Any]) -> None:
    print(f"sweep {doc['name']} ({doc['dialect']} file, {doc['method']}): {len(doc['trials'])} trials "
          f"-> {doc['sweep_dir']} via {doc['executor']}")
    for key, dist in doc["space"].items():
        print(f"  {key}: {json.dumps(dist)}")
    for t in doc["trials"][:10]:
        print(f"  trial {t['index']:>4} {t['id']} stage {t['stage']}: {' '.join(map(shlex.quote, t['argv']))}")
    if len(doc["trials"]) > 10:
        print(f"  ... {len(doc['trials']) - 10} more")
    for i, s in enumerate(doc["submissions"]):
        dep = f" after {s['dependency']}" if s["dependency"] else ""
        print(f"  submission {i}: stage {s['stage']} array {s['array']} (trials {s['indices']}){dep}")
    if doc["unsubmitted"]:
        print(f"  not submitted (queue limit): trials {doc['unsubmitted']} -> `sweep resume` later")
    for w in doc["warnings"]:
        print(f"  warning: {w}")
    print("dry run: nothing written, nothing submitted")


# --- the command -------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from launcher import sweepdir
    from launcher.checks.trainer_overrides import check_overrides
    from launcher.cluster import load_profile, with_resources

    executor = args.executor or default_executor()
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError("--max-parallel must be at least 1", key="--max-parallel")
    if args.max_attempts < 1:
        raise UserError("--max-attempts must be at least 1", key="--max-attempts")
    if args.wait and args.detach:
        raise UserError("--wait and --detach contradict each other", key="--wait", fix="pass one of them")
    spec, spec_text = load(args)
    trials = plan_trials(spec)
    check_overrides(spec, trials, command_line=args.items)  # a trainer sweep: every key and value, before any write
    profile = load_profile(args.cluster or os.environ.get("SWEEP_CLUSTER") or
                           ("local" if executor == "local" else "generic"))
    profile = with_resources(profile, spec.resources, source=spec.source)
    max_parallel = args.max_parallel or profile.max_parallel
    sweep_dir = args.dir.absolute() if args.dir else sweepdir.default_sweep_dir(spec.name)
    workdir = os.getcwd()
    arrays, unsubmitted = plan_submissions(executor, trials, spec, sweep_dir, profile, max_parallel, workdir)
    if args.dry_run:
        doc = dry_run_document(spec, trials, arrays, sweep_dir, executor, unsubmitted)
        print(json.dumps(doc, indent=1, default=str)) if args.json else _print_dry_run(doc)
        return 0

    # The options as parsed, so that `sweep resume` and a reader know how this sweep was launched.
    launch_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"}
    launch_args["max_parallel"] = max_parallel
    manifest = sweepdir.build_manifest(spec, trials, executor=executor, cluster=profile.to_dict(),
                                       workdir=workdir, max_attempts=args.max_attempts,
                                       unsubmitted=unsubmitted, launch_args=launch_args)
    sweep_dir = sweepdir.create(sweep_dir, manifest, spec_text)
    if executor == "local":
        return _launch_local(args, sweep_dir, manifest, arrays, max_parallel or 1)
    if executor == "slurm":
        from launcher.backends import slurm

        records = slurm.submit(str(sweep_dir), manifest, arrays)
    else:
        from launcher.backends import submitit

        records = submitit.submit(str(sweep_dir), manifest, arrays, profile, max_parallel=max_parallel)
    if args.wait and args.json:  # one JSON document, printed once the trials ended
        states = wait_for_results(sweep_dir, manifest)
        print(json.dumps({"sweep_dir": str(sweep_dir), "name": manifest["name"], "executor": executor,
                          "trials": len(manifest["trials"]), "submissions": records,
                          "unsubmitted": manifest["unsubmitted"], "states": states}, indent=1))
        return _wait_exit_code(states)
    _report_submitted(args, sweep_dir, manifest, records, unsubmitted)
    if not args.wait:
        return 0
    states = wait_for_results(sweep_dir, manifest, on_progress=_Progress())
    counts: dict[str, int] = {}
    for value in states.values():
        counts[value] = counts.get(value, 0) + 1
    print(f"sweep {manifest['name']}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), flush=True)
    return _wait_exit_code(states)


# --- --wait: the foreground watch of a Slurm sweep ----------------------------------------------

# Disk polls between Slurm refreshes: a stat of each still-missing result file, nothing more.
WAIT_POLL_S = 0.25


def wait_for_results(sweep_dir: Path, manifest: dict[str, Any], *, poll_s: float = WAIT_POLL_S,
                     collect: Any = None, delays: Any = None, on_progress: Any = None,
                     clock: Any = None, sleep: Any = None) -> dict[str, str]:
    """Block until every submitted trial has its result.json, or Slurm holds none of those
    still missing; return {trial id: state} (jobs.state's names) for the submitted trials.

    A trial ends when its result file appears (the runner writes it once, atomically, before
    the task exits), so the disk is what is polled. Slurm is only asked -- through
    jobs.state.collect: one sacct plus one squeue, whatever the sweep's size -- on a backing-off
    schedule, to notice tasks that ended without a result (killed, cancelled, out of memory).
    """
    import time

    from jobs import manifest as mf
    from jobs import state

    collect = collect or state.collect
    delays = delays if delays is not None else state.watch_delays()
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    submitted = state.submitted_indices(manifest)
    waited = [t for t in manifest["trials"] if t["index"] in submitted]
    missing = {t["id"]: str(mf.result_path(sweep_dir, t["id"])) for t in waited}

    def still_missing() -> dict[str, str]:
        return {tid: path for tid, path in missing.items() if not os.path.exists(path)}

    next_refresh = clock() + next(delays)
    shown = -1
    while missing:
        missing = still_missing()
        if on_progress is not None and len(missing) != shown:
            shown = len(missing)
            on_progress(len(waited) - shown, len(waited))
        if not missing:
            break
        if clock() >= next_refresh:
            status = collect(sweep_dir, manifest)
            # squeue failing says nothing about the tasks: keep waiting rather than give up.
            blind = any(note.startswith("squeue failed") for note in status.notes)
            active = {t.trial["id"] for t in status.active()}
            # Slurm first, disk second: a task writes its result before it leaves the queue.
            missing = still_missing()
            if not blind and not (active & set(missing)):
                break
            next_refresh = clock() + next(delays)
        sleep(poll_s)
    final = collect(sweep_dir, manifest)
    return {t.trial["id"]: t.state.value for t in final.trials if t.trial["index"] in submitted}


def _wait_exit_code(states: dict[str, str]) -> int:
    return 0 if all(v == "completed" for v in states.values()) else 1


class _Progress:
    """`done/total` on stderr, at most every few seconds (and once at the end)."""

    def __init__(self, every_s: float = 3.0) -> None:
        self.every_s, self.last = every_s, float("-inf")

    def __call__(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if done == total or now - self.last >= self.every_s:
            self.last = now
            print(f"  {done}/{total} trials have a result", file=sys.stderr, flush=True)


def _report_submitted(args: argparse.Namespace, sweep_dir: Path, manifest: dict[str, Any],
                      records: list[dict[str, Any]], unsubmitted: list[int]) -> None:
    if args.json:
        print(json.dumps({"sweep_dir": str(sweep_dir), "name": manifest["name"], "executor": manifest["executor"],
                          "trials": len(manifest["trials"]), "submissions": records,
                          "unsubmitted": manifest["unsubmitted"]}, indent=1))
        return
    print(f"sweep {manifest['name']}: {len(manifest['trials'])} trials in {sweep_dir}")
    for r in records:
        dep = f" after {r['dependency']}" if r.get("dependency") else ""
        print(f"  job {r['job_id']}: stage {r['stage']} array {r['array']}{dep}")
    if unsubmitted:
        print(f"  {len(unsubmitted)} trials wait for queue room: `sweep resume {sweep_dir}` submits them")
    print(f"watch: sweep status {sweep_dir}")


def _launch_local(args: argparse.Namespace, sweep_dir: Path, manifest: dict[str, Any],
                  arrays: list[PlannedArray], max_parallel: int) -> int:
    from jobs.manifest import compact_ranges
    from launcher import sweepdir
    from launcher.backends import local
    from jobs.run import now_iso

    pid = local.start_detached(sweep_dir, max_parallel=max_parallel, workdir=manifest["workdir"]) \
        if args.detach else os.getpid()
    records = [{"stage": a.stage, "job_id": f"local:{pid}", "array": compact_ranges(a.indices), "offset": 0,
                "indices": compact_ranges(a.indices),
                "dependency": None if a.depends_on is None else "aftercorr:local",
                "executor": "local", "submitted": now_iso()} for a in arrays]
    sweepdir.record_submissions(sweep_dir, manifest, records)
    if args.detach:
        if args.json:
            print(json.dumps({"sweep_dir": str(sweep_dir), "name": manifest["name"], "executor": "local",
                              "pid": pid, "trials": len(manifest["trials"])}))
        else:
            print(f"sweep {manifest['name']}: {len(manifest['trials'])} trials running in the background "
                  f"(pid {pid}, log {sweep_dir}/logs/local.log)\nwatch: sweep status {sweep_dir}")
        return 0
    outcome = _run_foreground(sweep_dir, manifest, max_parallel, quiet=args.json)
    if args.json:
        print(json.dumps({"sweep_dir": str(sweep_dir), "name": manifest["name"], "executor": "local",
                          "trials": {tid: status for tid, status in outcome.items()}}))
    else:
        _print_results(sweep_dir, manifest)
    return 0 if all(s == "completed" for s in outcome.values()) else 1


def _run_foreground(sweep_dir: Path, manifest: dict[str, Any], max_parallel: int, quiet: bool) -> dict[str, str]:
    from launcher.backends import local

    trials = manifest["trials"]
    if quiet:
        return local.run_pool(sweep_dir, trials, max_parallel=max_parallel)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counts: dict[str, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(manifest["name"], total=len(trials), counts="")

        def update(trial: dict[str, Any], status: str) -> None:
            counts[status] = counts.get(status, 0) + 1
            bar.update(task, advance=1, counts=" ".join(f"{k} {v}" for k, v in sorted(counts.items())))

        return local.run_pool(sweep_dir, trials, max_parallel=max_parallel, on_update=update)


def _print_results(sweep_dir: Path, manifest: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from jobs.run import read_result

    metric = manifest.get("metric")
    table = Table(title=f"{manifest['name']} ({sweep_dir})")
    for col in ("trial", "stage", "params", "status", metric or "result"):
        table.add_column(col)
    for t in manifest["trials"]:
        result = read_result(sweep_dir, t["id"]) or {}
        results = result.get("results") or {}
        if metric and metric in results:
            shown = f"{results[metric]:.4g}" if isinstance(results[metric], float) else str(results[metric])
        elif results:
            k, v = next(iter(results.items()))
            shown = f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        else:  # no metrics: the last line of the error says most
            lines = (result.get("error") or "").strip().splitlines()
            shown = lines[-1][:60] if lines else ""
        params = " ".join(f"{k}={v}" for k, v in t.get("params", {}).items())
        table.add_row(t["id"], str(t.get("stage", 0)), params[:60], result.get("status", "no result"), shown)
    Console().print(table)
