"""Local backend: a process pool on this machine running the same task runner as Slurm.

Each trial is `python -m jobs.run SWEEP_DIR <index>` (offset 0), at most `max_parallel`
at once. A later-stage trial starts once its parent ended with a completed result, like
`--dependency=aftercorr` on Slurm; if the parent did not complete, the child is left
without a result for `sweep resume`.

Foreground: `run_pool(...)` with a rich progress bar. Detached: `start_detached(...)`
spawns `python -m launcher.backends.local SWEEP_DIR ...` in its own session, which runs
the same pool and outlives the terminal; its log is <sweep>/logs/local.log.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from jobs import manifest as mf

LOGS = "logs"
SUPERVISOR_LOG = "local.log"
POLL_S = 0.05


def _status(sweep_dir: Path, trial_id: str) -> str | None:
    try:
        with open(mf.result_path(sweep_dir, trial_id)) as f:
            return json.load(f).get("status")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def trial_env(max_parallel: int) -> dict[str, str]:
    """The environment of each local trial: this machine's cores shared between the trials
    running at once, as Slurm's cpus-per-task would (OpenMP/MKL threads beyond them only
    contend: a 2-core machine running two trials with two threads each is several times slower)."""
    env = dict(os.environ)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, cpus // max(1, max_parallel))))
    return env


def run_pool(sweep_dir: str | os.PathLike, trials: list[dict[str, Any]], *, max_parallel: int = 1,
             on_update: Callable[[dict[str, Any], str], None] | None = None,
             log_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Run the trials (manifest dicts) and return {trial id: status}.

    Statuses are the result.json statuses, plus "skipped" (its parent did not complete)
    and "no result" (the runner died without writing one).
    """
    sweep_dir = Path(sweep_dir).absolute()
    max_parallel = max(1, int(max_parallel or 1))
    log_path = Path(log_path) if log_path else sweep_dir / LOGS / SUPERVISOR_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    waiting = sorted(trials, key=lambda t: (t.get("stage", 0), t["index"]))
    env = trial_env(max_parallel)
    ids = {t["id"] for t in trials}
    outcome: dict[str, str] = {}
    running: dict[str, tuple[subprocess.Popen, dict[str, Any]]] = {}

    def parent_state(trial: dict[str, Any]) -> str:
        """ready | wait | skip"""
        parent = trial.get("parent")
        if not parent:
            return "ready"
        if parent in running or (parent in ids and parent not in outcome):
            return "wait"
        status = outcome.get(parent) or _status(sweep_dir, parent)
        return "ready" if status == "completed" else "skip"

    def finish(trial: dict[str, Any], status: str) -> None:
        outcome[trial["id"]] = status
        if on_update:
            on_update(trial, status)

    with open(log_path, "ab") as log:
        try:
            while waiting or running:
                progressed = False
                for trial_id, (proc, trial) in list(running.items()):
                    if proc.poll() is not None:
                        del running[trial_id]
                        finish(trial, _status(sweep_dir, trial_id) or "no result")
                        progressed = True
                still_waiting = []
                for trial in waiting:
                    state = parent_state(trial)
                    if state == "skip":
                        finish(trial, "skipped")
                        progressed = True
                    elif state == "ready" and len(running) < max_parallel:
                        argv = [sys.executable, "-m", "jobs.run", str(sweep_dir), str(trial["index"])]
                        running[trial["id"]] = (subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                                 stderr=subprocess.STDOUT, env=env), trial)
                        progressed = True
                    else:
                        still_waiting.append(trial)
                waiting = still_waiting
                if not progressed:
                    time.sleep(POLL_S)
        except BaseException:
            # Ctrl-C or kill: ask every runner to stop (it forwards to its program, which
            # checkpoints; the runner records "preempted") and wait for them.
            for proc, _ in running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, _ in running.values():
                proc.wait()
            raise
    return outcome


def start_detached(sweep_dir: str | os.PathLike, *, max_parallel: int = 1, indices: str | None = None,
                   workdir: str | None = None) -> int:
    """Start the pool as its own session (survives the terminal); return its pid."""
    sweep_dir = Path(sweep_dir).absolute()
    (sweep_dir / LOGS).mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "launcher.backends.local", str(sweep_dir), "--max-parallel", str(max_parallel)]
    if indices:
        argv += ["--indices", indices]
    with open(sweep_dir / LOGS / SUPERVISOR_LOG, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=workdir)
    return proc.pid


def select(manifest: dict[str, Any], indices: str | None) -> list[dict[str, Any]]:
    if not indices:
        return list(manifest["trials"])
    wanted = set(mf.expand_ranges(indices))
    return [t for t in manifest["trials"] if t["index"] in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.backends.local",
                                     description="Run a sweep's trials on this machine (the detached supervisor).")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--max-parallel", type=int, default=1)
    parser.add_argument("--indices", help="trial indices to run, e.g. 0-3,7 (default: all)")
    args = parser.parse_args(argv)
    # `kill <pid>` should stop the trials cleanly too: turn SIGTERM into the same unwind as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    manifest = mf.read_manifest(args.sweep_dir)
    outcome = run_pool(args.sweep_dir, select(manifest, args.indices), max_parallel=args.max_parallel)
    counts: dict[str, int] = {}
    for status in outcome.values():
        counts[status] = counts.get(status, 0) + 1
    print(f"local supervisor {os.getpid()} done: {counts}", flush=True)
    return 0 if set(counts) <= {"completed"} else 1


if __name__ == "__main__":
    sys.exit(main())
