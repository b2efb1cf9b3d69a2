"""`sweep launch`: a sweep file (or an inline grid) -> trials -> a sweep directory -> jobs.

    sweep launch SPEC [--executor slurm|submitit|local] [--cluster NAME|FILE] [--dir DIR]
                 [--max-parallel N] [--pack N|auto] [--seed N] [--mem M --time T ...] [--dry-run]
                 [--json] [--detach] [--wait] [--dialect NAME] [--method M] [--trials N]
                 [--command CMD] [key=value ...]
    sweep launch --grid a=1,2,3 b=x,y [--name NAME] [--command CMD]

The work is launcher.launching's; this module parses the command line and prints.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from jobs.manifest import EXECUTORS
from launcher import launching
from launcher.commands import add_resource_options, exit_code, resources_from

DESCRIPTION = __doc__.split("\n\n")[0]


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
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  sweep launch configs/sweeps/feudal_grid.yaml --cluster mila\n"
               "  sweep launch --grid loss.feudal_loss_weight=0.01,0.05 arch.subgoal_head.manager_period=2,4\n"
               "  sweep launch spec.yaml --dry-run --json\n"
               "  sweep launch smoke.yaml --pack 50 --time 01:00:00   # 50 short trials per array task")
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
    p.add_argument("--pack", metavar="N|auto",
                   help="trials per array task, run one after another (side by side on a task with several GPUs); "
                        "auto: fill the time limit with trials of the profile's trial_time")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the plan (default: the file's, else drawn and recorded)")
    add_resource_options(p)
    p.add_argument("--dry-run", action="store_true", help="print trials and submissions; write nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--detach", action="store_true", help="local executor: return at once, trials keep running (slurm/submitit never wait)")
    p.add_argument("--wait", action="store_true",
                   help="slurm/submitit: stay in the foreground until every trial has ended (exit 0 when each "
                        "completed or the search stopped it: pruned, not promoted); watches the result "
                        "files, asks Slurm once per refresh")
    p.add_argument("--dialect", help="force the sweep-file dialect (default: detected)")
    p.add_argument("--method", help="override the file's method (grid, random, bayes, baseline)")
    p.add_argument("--trials", type=int, metavar="N", help="override the number of trials (random/bayes)")
    p.add_argument("--command", dest="sweep_command", metavar="CMD", help="program to sweep, e.g. 'python train.py' (never a shell)")
    p.set_defaults(run=run)


def options(args: argparse.Namespace) -> launching.LaunchOptions:
    return launching.LaunchOptions(
        items=list(args.items), grid=args.grid, name=args.name, executor=args.executor, cluster=args.cluster,
        dir=args.dir, max_parallel=args.max_parallel, max_attempts=args.max_attempts, dialect=args.dialect,
        method=args.method, trials=args.trials, command=args.sweep_command, seed=args.seed, pack=args.pack,
        resources=resources_from(args), detach=args.detach, wait=args.wait, dry_run=args.dry_run)


def run(args: argparse.Namespace) -> int:
    prep = launching.prepare(options(args))
    if args.dry_run:
        doc = launching.dry_run_document(prep)
        print(json.dumps(doc, indent=1, default=str)) if args.json else _print_dry_run(doc, prep)
        return 0
    if prep.backend.name == "local" and not args.detach and not args.json:
        return _launch_local_foreground(prep)
    done = launching.launch(prep)
    if done.outcome is not None:   # local, foreground, --json
        print(json.dumps({"sweep_dir": str(prep.sweep_dir), "name": prep.manifest.name, "executor": "local",
                          "trials": done.outcome}))
        return exit_code(done.outcome.values())
    if args.wait:
        return _wait(args, prep, done)
    _report_submitted(args, done)
    return 0


# --- output -----------------------------------------------------------------------------------

def _print_dry_run(doc: dict[str, Any], prep: launching.Prepared) -> None:
    seed = f", seed {doc['seed']}" + (" (drawn: pass --seed to keep these trials)" if doc["seed_drawn"] else "")
    pack = f", {doc['pack']} per task" if doc["pack"] > 1 else ""
    print(f"sweep {doc['name']} ({doc['dialect']} file, {doc['method']}{seed}): {len(doc['trials'])} trials{pack} "
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
        print(f"  wait for queue room: trials {doc['unsubmitted']}")
    if doc["held"]:
        print(_held_line(doc["held"], prep))
    for w in doc["warnings"]:
        print(f"  warning: {w}")
    print("dry run: nothing written, nothing submitted")


def _waiting_line(prep: launching.Prepared, unsubmitted: list[int], submitted: bool = True) -> str:
    n = len(unsubmitted)
    if not submitted:
        return (f"  nothing submitted: your jobs already fill the queue (max_queued_jobs "
                f"{prep.manifest.settings.cluster.max_queued_jobs}); {n} trials wait: "
                f"`sweep resume {prep.sweep_dir}` once room frees up")
    if prep.backend.uses_slurm and prep.manifest.settings.cluster.submit_from_tasks:
        return f"  {n} trials wait for queue room: the sweep's own tasks submit them as room frees up"
    return (f"  {n} trials wait for queue room: this profile's compute nodes cannot submit "
            f"(submit_from_tasks: false), so run `sweep resume {prep.sweep_dir}` later")


def _held_line(held: str, prep: launching.Prepared) -> str:
    n = len(launching.mf.expand_ranges(held))
    line = f"  {n} trials of higher rungs held (trials {held}): each starts when its rung below promotes it"
    if prep.backend.uses_slurm and not prep.manifest.settings.cluster.submit_from_tasks:
        line += (f"; this profile's compute nodes cannot submit (submit_from_tasks: false), so promotions are "
                 f"submitted by `sweep resume {prep.sweep_dir}`")
    return line


def _report_submitted(args: argparse.Namespace, done: launching.Launched) -> None:
    prep = done.prepared
    if args.json:
        print(json.dumps({"sweep_dir": str(prep.sweep_dir), "name": prep.manifest.name,
                          "executor": prep.manifest.settings.executor, "trials": len(prep.manifest.trials),
                          "seed": prep.manifest.settings.seed, "pid": done.pid,
                          "submissions": [s.to_dict() for s in done.submissions],
                          "unsubmitted": launching.mf.compact_ranges(done.unsubmitted),
                          "held": prep.manifest.held}, indent=1))
        return
    print(f"sweep {prep.manifest.name}: {len(prep.manifest.trials)} trials in {prep.sweep_dir}")
    for s in done.submissions:
        if s.job_id:
            dep = f" after {s.dependency}" if s.dependency else ""
            print(f"  job {s.job_id}: stage {s.stage} array {s.array}{dep}")
    if done.pid:
        print(f"  running in the background (pid {done.pid}, log {prep.sweep_dir}/logs/local.log)")
    if done.unsubmitted:
        print(_waiting_line(prep, done.unsubmitted, submitted=bool(done.submissions)))
    if prep.manifest.held:
        print(_held_line(prep.manifest.held, prep))
    print(f"watch: sweep status {prep.sweep_dir}")


def _wait(args: argparse.Namespace, prep: launching.Prepared, done: launching.Launched) -> int:
    from jobs.wait import wait_for_results

    if not args.json:
        _report_submitted(args, done)
    final = wait_for_results(prep.sweep_dir, on_progress=None if args.json else _Progress())
    states = {t.trial.id: t.state.value for t in final.trials}
    if args.json:
        print(json.dumps({"sweep_dir": str(prep.sweep_dir), "name": prep.manifest.name,
                          "executor": prep.manifest.settings.executor, "trials": len(states),
                          "submissions": [s.to_dict() for s in done.submissions], "states": states}, indent=1))
    else:
        counts: dict[str, int] = {}
        for value in states.values():
            counts[value] = counts.get(value, 0) + 1
        print(f"sweep {prep.manifest.name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), flush=True)
    return exit_code(states.values())


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


def _launch_local_foreground(prep: launching.Prepared) -> int:
    """Local trials in this terminal, with a progress bar, then their results as a table."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counts: dict[str, int] = {}
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), transient=False)
    task = bar.add_task(prep.manifest.name, total=len(prep.plan.planned), counts="")

    def update(trial: Any, status: str) -> None:
        counts[status] = counts.get(status, 0) + 1
        bar.update(task, advance=1, counts=" ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    started: list[bool] = []

    def start() -> None:
        bar.start()
        started.append(True)

    try:    # the bar shows once trials run: a refused launch prints its error alone
        done = launching.launch(prep, on_update=update, on_start=start)
    finally:
        if started:
            bar.stop()
    from launcher.commands.status import print_results

    print_results(prep.sweep_dir)
    return exit_code((done.outcome or {}).values())
