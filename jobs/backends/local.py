"""Local backend: a process pool on this machine running the same task runner as Slurm.

Each trial is `python -m jobs.run SWEEP_DIR <index>`, at most `max_parallel` at once. A
later-stage trial starts once its parent ended with a completed result, like
`--dependency=aftercorr` on Slurm; if the parent did not complete, the child is left without a
result for `sweep resume`.

Foreground: the pool runs in the launching process (`start(..., foreground=True)`), reporting
each trial's end to `on_update`. Detached: `python -m jobs.backends.local SWEEP_DIR --token T ...`
runs the same pool in its own session, which outlives the terminal; its log is
<sweep>/logs/local.log. The token on its command line is how a submission recorded just before
the process started is found again (`find`).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from jobs import manifest as mf
from jobs.results import read_result
from jobs.backends import Backend, Confirm, Live, LiveTask, SweepRef
from jobs.backends.arrays import ArrayPlan, PlannedArray
from jobs.manifest import Submission, Trial
from jobs.trial_state import TrialState

LOGS = "logs"
SUPERVISOR_LOG = "local.log"
POLL_S = 0.05


def _status(sweep_dir: Path, trial_id: str) -> str | None:
    return (read_result(sweep_dir, trial_id) or {}).get("status")


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


def run_pool(sweep_dir: str | os.PathLike, trials: list[Trial], *, max_parallel: int = 1,
             on_update: Callable[[Trial, str], None] | None = None,
             log_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Run the trials and return {trial id: status}.

    Statuses are the result.json statuses, plus "skipped" (its parent did not complete)
    and "no result" (the runner died without writing one).
    """
    sweep_dir = Path(sweep_dir).absolute()
    max_parallel = max(1, int(max_parallel or 1))
    log_path = Path(log_path) if log_path else sweep_dir / LOGS / SUPERVISOR_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    waiting = sorted(trials, key=lambda t: (t.stage, t.index))
    env = trial_env(max_parallel)
    ids = {t.id for t in trials}
    outcome: dict[str, str] = {}
    running: dict[str, tuple[subprocess.Popen, Trial]] = {}

    def parent_state(trial: Trial) -> str:
        """ready | wait | skip"""
        parent = trial.parent
        if not parent:
            return "ready"
        if parent in running or (parent in ids and parent not in outcome):
            return "wait"
        status = outcome.get(parent) or _status(sweep_dir, parent)
        return "ready" if status == TrialState.COMPLETED else "skip"

    def finish(trial: Trial, status: str) -> None:
        outcome[trial.id] = status
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
                        argv = [sys.executable, "-m", "jobs.run", str(sweep_dir), str(trial.index)]
                        running[trial.id] = (subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                              stderr=subprocess.STDOUT, env=env), trial)
                        progressed = True
                    else:
                        still_waiting.append(trial)
                waiting = still_waiting
                if not progressed:
                    time.sleep(POLL_S)
        except BaseException:
            # Ctrl-C or kill: ask every runner to stop (it forwards to its program, which
            # checkpoints; the runner records what stopped it) and wait for them.
            for proc, _ in running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, _ in running.values():
                proc.wait()
            raise
    return outcome


def start_detached(sweep_dir: str | os.PathLike, *, token: str, max_parallel: int = 1, indices: str | None = None,
                   workdir: str | None = None) -> int:
    """Start the pool as its own session (survives the terminal); return its pid."""
    sweep_dir = Path(sweep_dir).absolute()
    (sweep_dir / LOGS).mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "jobs.backends.local", str(sweep_dir), "--max-parallel", str(max_parallel),
            "--token", token]
    if indices:
        argv += ["--indices", indices]
    with open(sweep_dir / LOGS / SUPERVISOR_LOG, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=workdir or None)
    return proc.pid


# --- is a recorded pool still running? ------------------------------------------------------------

def _process_start(pid: int) -> float | None:
    """Epoch seconds the process started (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def pool_alive(sub: Submission) -> bool:
    """The submission's pool still runs: its pid lives and started before the record was
    confirmed (so a recycled pid does not pass for it)."""
    if sub.pid is None:
        return False
    try:
        os.kill(sub.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's: cannot be ours, but say alive rather than double-run
    started, submitted = _process_start(sub.pid), mf.iso_epoch(sub.submitted)
    return started is None or submitted is None or started <= submitted + 2.0


def _pids_with_token(token: str) -> list[int]:
    """Processes whose command line holds `--token <token>` (a detached pool we started)."""
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"--token" in args and token.encode() in args:
            found.append(int(entry.name))
    return found


class LocalBackend(Backend):
    name = "local"

    def plan(self, trials: list[Trial], sweep: SweepRef, *, budget: int, pack: int = 1,
             attach: dict[str, tuple[str, int]] | None = None, max_parallel: int | None = None) -> ArrayPlan:
        """One pool run per stage; the pool itself starts each trial after its parent."""
        plan = ArrayPlan()
        token = os.urandom(4).hex()   # one process runs the whole plan: one token finds it
        for stage in sorted({t.stage for t in trials}):
            indices = sorted(t.index for t in trials if t.stage == stage)
            array = PlannedArray(stage=stage, indices=indices, token=token,
                                 depends_on=len(plan.arrays) - 1 if plan.arrays else None)
            array.script = f"{sys.executable} -m jobs.run {sweep.sweep_dir} <index>"
            array.options = [f"--max-parallel={max_parallel or sweep.manifest.settings.max_parallel or 1}"]
            plan.arrays.append(array)
        return plan

    def start(self, sweep: SweepRef, arrays: list[PlannedArray], confirm: Confirm, *, foreground: bool = False,
              max_parallel: int | None = None, **options: Any) -> None:
        """Start one pool for every array's trials: detached, or (foreground) recorded as this
        process, which runs `run_pool` itself once it let go of the sweep's lock."""
        if not arrays:
            return
        if foreground:
            for array in arrays:
                confirm(array, None, os.getpid())
            return
        parallel = max_parallel or sweep.manifest.settings.max_parallel or 1
        indices = sorted(i for a in arrays for i in a.indices)
        pid = start_detached(sweep.sweep_dir, token=arrays[0].token, max_parallel=parallel,
                             indices=mf.compact_ranges(indices), workdir=sweep.manifest.settings.workdir)
        for array in arrays:
            confirm(array, None, pid)

    def find(self, sweep: SweepRef, pending: list[Submission]) -> dict[str, list[str]]:
        return {s.token: [str(p) for p in _pids_with_token(s.token)] for s in pending if s.token}

    def live(self, sweep: SweepRef) -> Live:
        """Trials an alive pool still owes a result: running (its runner appended to trial.log since
        the submission, which it does at every start) or pending."""
        live = Live()
        latest = sweep.manifest.latest_submissions()
        alive: dict[int, bool] = {}
        for trial in sweep.manifest.trials:
            sub = latest.get(trial.index)
            if sub is None or sub.executor != "local" or sub.pid is None:
                continue
            if sub.pid not in alive:
                alive[sub.pid] = pool_alive(sub)
            if not alive[sub.pid]:
                continue
            submitted = mf.iso_epoch(sub.submitted) or 0.0
            result = mf.result_path(sweep.sweep_dir, trial.id)
            if _mtime(result) >= submitted:
                continue  # this submission already ran it (the pool runs a trial once)
            fresh = _mtime(mf.trial_dir(sweep.sweep_dir, trial.id) / "trial.log") >= submitted - 1.0
            live.tasks[trial.index] = LiveTask("RUNNING" if fresh else "PENDING", source="local")
        return live

    def cancel(self, sweep: SweepRef) -> dict[str, Any]:
        stopped = []
        for pid in dict.fromkeys(s.pid for s in sweep.manifest.submissions
                                 if s.executor == "local" and s.pid is not None and pool_alive(s)):
            if pid == os.getpid():
                continue
            try:
                # The pool turns TERM into an unwind that stops its runners cleanly.
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
            except ProcessLookupError:
                pass
        return {"local_pids": stopped}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


BACKEND = LocalBackend()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.backends.local",
                                     description="Run a sweep's trials on this machine (the detached pool).")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--max-parallel", type=int, default=1)
    parser.add_argument("--indices", help="trial indices to run, e.g. 0-3,7 (default: all)")
    parser.add_argument("--token", default="", help="the submission's token (how `find` recognises this process)")
    args = parser.parse_args(argv)
    # `kill <pid>` should stop the trials cleanly too: turn SIGTERM into the same unwind as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    manifest = mf.read_manifest(args.sweep_dir)
    trials = list(manifest.trials)
    if args.indices:
        wanted = set(mf.expand_ranges(args.indices))
        trials = [t for t in trials if t.index in wanted]
    outcome = run_pool(args.sweep_dir, trials, max_parallel=args.max_parallel)
    counts: dict[str, int] = {}
    for status in outcome.values():
        counts[status] = counts.get(status, 0) + 1
    print(f"local pool {os.getpid()} done: {counts}", flush=True)
    return 0 if set(counts) <= {TrialState.COMPLETED.value} else 1


if __name__ == "__main__":
    sys.exit(main())
