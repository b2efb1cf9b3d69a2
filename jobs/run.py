"""The array task: `python -m jobs.run SWEEP_DIR TASK_ID [--offset N]`.

Maps the task to its trial (index = offset + task id), runs the trial's command with
its overrides and the SWEEP_* variables, and wraps what the program wrote to
$SWEEP_RESULT_FILE into trials/<id>/result.json, once, atomically.

A Python program run by this interpreter (`python prog.py`, `python -m mod`) starts in a
fork of the runner instead of a second interpreter (jobs.inproc; SLURMSWEEP_NO_INPROC=1 turns
that off); any other command is exec'd in its own session.

Every Slurm array task and every local trial starts here, so this module imports only
the standard library and our stdlib-only `jobs` modules: no yaml, no rich, no torch.

Exit codes (what Slurm records, and what `--dependency=aftercorr` reads):
    0  completed, or skipped because a finished result already exists, or requeued
    1  failed (after the last attempt)
    3  diverged or pruned: finished, but a later stage must not start from it
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

if __name__ == "__main__" and not __package__:
    # Started as a file, `python -S <root>/jobs/run.py ...`: -S skips site (and the .pth
    # files it reads), which is most of an interpreter's start. The package root (a checkout
    # or site-packages) then goes on sys.path so that the stdlib-only `jobs` imports resolve.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from jobs import inproc
from jobs import manifest as mf
from jobs.atomic import write_json_atomic, write_text_atomic

RESULT_SCHEMA = 1
DEFAULT_MAX_ATTEMPTS = 3
FAILURES = "failures"  # in the trial directory: failed attempts so far (preemptions not counted)
# A result with one of these statuses is final: rerunning the task is a no-op.
FINISHED_STATUSES = ("completed", "diverged", "pruned")
RESERVED_KEYS = ("status", "error")
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
LOG = "trial.log"
ERROR_TAIL_LINES = 30
EXIT_FAILED, EXIT_STOPPED_EARLY = 1, 3


def _say(message: str) -> None:
    # The runner's own lines go to the Slurm log (or the local supervisor's log), not trial.log.
    print(f"[jobs.run {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def now_iso() -> str:
    # UTC to the second, e.g. 2026-01-31T12:00:00Z (time, not datetime: one import less per task).
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- finding the trial -----------------------------------------------------------------------

def find_trial(manifest: dict[str, Any], index: int) -> dict[str, Any]:
    trials = manifest.get("trials", [])
    # Plans number trials 0..n-1 in order, so the position is almost always the index.
    if 0 <= index < len(trials) and trials[index].get("index") == index:
        return trials[index]
    for trial in trials:
        if trial.get("index") == index:
            return trial
    raise SystemExit(f"jobs.run: no trial with index {index} in the manifest "
                     f"({len(trials)} trials); was the task submitted with the right --offset?")


def read_result(sweep_dir: Path, trial_id: str) -> dict[str, Any] | None:
    try:
        with open(mf.result_path(sweep_dir, trial_id)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# --- the environment the program sees --------------------------------------------------------

def under_slurm() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID"))


def slurm_task_id() -> str | None:
    """`<array job>_<task>` (what scontrol requeue takes), or the plain job id."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def gpu_name() -> str | None:
    """The GPU model from the driver's /proc files: no nvidia-smi process, no CUDA import."""
    root = Path("/proc/driver/nvidia/gpus")
    try:
        for info in sorted(root.iterdir()):
            for line in (info / "information").read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def trial_argv(sweep_dir: Path, manifest: dict[str, Any], trial: dict[str, Any], *,
               write_json_file: bool = True) -> list[str]:
    """The argv of the trial's program; `${args_json_file}` is written into its trial directory
    (a dry run passes write_json_file=False and only shows the path)."""
    from jobs.argv import render_argv, resolve_python

    overrides = dict(trial.get("overrides", {}))
    parent = trial.get("parent")
    if parent:
        # Progressive stage: start from this trial's own previous stage.
        key = manifest.get("checkpoint_key") or "checkpoint_path"
        overrides.setdefault(key, str(mf.trial_dir(sweep_dir, parent) / mf.CHECKPOINTS))
    return resolve_python(render_argv(list(manifest["command"]), overrides,
                                      json_file_dir=mf.trial_dir(sweep_dir, trial["id"]),
                                      write_json_file=write_json_file))


def trial_env(sweep_dir: Path, trial: dict[str, Any], attempt: int) -> dict[str, str]:
    tdir = mf.trial_dir(sweep_dir, trial["id"])
    env = dict(os.environ)
    env.update({
        "SWEEP_DIR": str(sweep_dir),
        "SWEEP_TRIAL_ID": trial["id"],
        "SWEEP_TRIAL_DIR": str(tdir),
        "SWEEP_RESULT_FILE": str(tdir / mf.METRICS),
        "SWEEP_CHECKPOINT_DIR": str(tdir / mf.CHECKPOINTS),
        "SWEEP_ATTEMPT": str(attempt),
        "SWEEP_STAGE": str(trial.get("stage", 0)),
    })
    return env


# --- running one attempt ---------------------------------------------------------------------

class _Forwarder:
    """Signal handlers that pass SIGUSR1/SIGUSR2/SIGTERM to the program's process group.

    The program runs in its own session (so its data-loader workers get the signal too),
    which means Slurm's `--signal=B:...` only reaches this runner: forwarding is our job.
    """

    def __init__(self) -> None:
        self.child: Any = None  # the program: a subprocess.Popen or an inproc.ForkedProgram
        self.signum: int | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self.child is not None and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signum)
            except ProcessLookupError:
                pass


def _tail(path: Path, start: int, lines: int = ERROR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _read_metrics(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(metrics, problem): the JSON object the program wrote, or why there is none."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, f"the program wrote no metrics to $SWEEP_RESULT_FILE ({path})"
    except json.JSONDecodeError as exc:
        return None, f"$SWEEP_RESULT_FILE is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"$SWEEP_RESULT_FILE holds a {type(data).__name__}, not a JSON object"
    return data, None


def _popen(argv: list[str], log: Any, env: dict[str, str], cwd: str | None) -> Any:
    import subprocess  # only here: a program run in a fork of the runner needs none

    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, cwd=cwd)


def run_attempt(sweep_dir: Path, manifest: dict[str, Any], trial: dict[str, Any], attempt: int,
                forwarder: _Forwarder, fork_python: bool = False) -> dict[str, Any]:
    """Run the program once; return {returncode, metrics, problem, error_tail, runtime_s}.

    With `fork_python` (this process is the runner, not a host such as submitit's worker), a
    Python program run by this interpreter starts in a fork of the runner (jobs.inproc)."""
    tdir = mf.trial_dir(sweep_dir, trial["id"])
    (tdir / mf.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    metrics_file = tdir / mf.METRICS
    # A metrics file from an earlier attempt would pass for this attempt's result.
    metrics_file.unlink(missing_ok=True)
    log_path = tdir / LOG
    argv = trial_argv(sweep_dir, manifest, trial)
    workdir = manifest.get("workdir")
    cwd = workdir if workdir and os.path.isdir(workdir) else None
    env = trial_env(sweep_dir, trial, attempt)
    forked = inproc.program(argv, cwd) if fork_python else None
    with open(log_path, "ab") as log:
        start_offset = log.tell()
        log.write(f"=== attempt {attempt} job {slurm_task_id() or 'local'} node {os.uname().nodename} "
                  f"{now_iso()} ===\n".encode())
        log.flush()
        started = time.monotonic()
        try:
            if forked is not None:
                child = inproc.start(forked, log_fd=log.fileno(), env=env, cwd=cwd)
            else:
                child = _popen(argv, log, env, cwd)
        except OSError as exc:
            log.write(f"cannot start {argv[0]!r}: {exc}\n".encode())
            return {"returncode": 127, "metrics": None, "problem": f"cannot start {argv[0]!r}: {exc}",
                    "error_tail": str(exc), "runtime_s": 0.0}
        forwarder.child = child
        if forwarder.signum is not None:  # a signal that came before the program existed
            os.killpg(child.pid, forwarder.signum)
        returncode = child.wait()  # PEP 475: a forwarded signal does not interrupt the wait
        forwarder.child = None
        runtime = time.monotonic() - started
        log.write(f"=== exit {returncode} after {runtime:.1f}s ===\n".encode())
    metrics, problem = _read_metrics(metrics_file)
    return {"returncode": returncode, "metrics": metrics, "problem": problem,
            "error_tail": _tail(log_path, start_offset), "runtime_s": runtime}


def classify(outcome: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(status, error, results) of one attempt."""
    metrics, returncode = outcome["metrics"], outcome["returncode"]
    if metrics is not None and metrics.get("status") in ("diverged", "pruned"):
        # Stopped on purpose, whatever the exit code (the trainer exits 3 on divergence):
        # final, never retried -- a rerun from the last checkpoint would diverge again.
        results = {k: v for k, v in metrics.items() if k not in RESERVED_KEYS}
        return metrics["status"], metrics.get("error"), results
    if returncode == 0 and metrics is not None:
        results = {k: v for k, v in metrics.items() if k not in RESERVED_KEYS}
        return "completed", metrics.get("error"), results
    results = {k: v for k, v in (metrics or {}).items() if k not in RESERVED_KEYS}
    why = f"exit code {returncode}" if returncode != 0 else outcome["problem"]
    tail = outcome["error_tail"]
    return "failed", f"{why}\n{tail}" if tail else why, results


def build_result(manifest: dict[str, Any], trial: dict[str, Any], status: str, error: str | None,
                 results: dict[str, Any], runtime_s: float, attempt: int) -> dict[str, Any]:
    return {
        "schema": RESULT_SCHEMA,
        "sweep": manifest.get("name"),
        "trial": trial["index"],
        "trial_id": trial["id"],
        "stage": trial.get("stage", 0),
        "environment": trial.get("environment"),
        "hyperparameters": trial.get("params", {}),
        "results": results,
        "status": status,
        "error": error,
        "timestamp": now_iso(),
        "runtime_s": round(runtime_s, 3),
        "job": {"id": slurm_task_id(), "node": os.environ.get("SLURMD_NODENAME") or os.uname().nodename,
                "attempt": attempt, "gpu": gpu_name()},
    }


def requeue_self() -> bool:
    """`scontrol requeue <job>_<task>`: same job id, SLURM_RESTART_COUNT + 1. False if refused."""
    from jobs import slurm  # only here: most tasks never requeue

    try:
        slurm.scontrol_requeue([slurm_task_id()])
    except Exception as exc:  # SlurmError, or scontrol missing: record the trial as preempted
        if "pending execution" in str(exc).lower():
            # Slurm requeued the task itself (scontrol requeue, node down, preemption): the next
            # attempt is already queued and owns the result, so this one writes none.
            _say("already requeued by Slurm")
            return True
        _say(f"requeue failed: {exc}")
        return False
    return True


def link_slurm_log(sweep_dir: Path, tdir: Path) -> None:
    # Slurm writes <sweep>/logs/<array job>_<task>.out (the template's --output); the trial
    # directory gets a link under the name DESIGN.md promises, so one folder holds everything.
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if not (array_job and task):
        return
    link = tdir / f"slurm-{array_job}_{task}.out"
    if not link.is_symlink():
        try:
            link.symlink_to(Path("..", "..", "logs", f"{array_job}_{task}.out"))
        except OSError:
            pass


def full_site() -> None:
    """Add site-packages after all when started with -S (only the study path needs them)."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def _tell(sweep_dir: Path, manifest: dict[str, Any], trial: dict[str, Any], status: str,
          results: dict[str, Any]) -> None:
    # Before the result is written: a task killed in between reruns and asks afresh, instead
    # of leaving a finished trial that the study believes is still running. A broken journal
    # must not cost the trial its result, so a failure here is only logged.
    from jobs import bayes

    try:
        bayes.tell(sweep_dir, manifest, trial, status, bayes.metric_value(manifest, results))
    except Exception as exc:  # noqa: BLE001 - logged, the result is what matters
        _say(f"could not tell the Optuna study about trial {trial['id']}: {exc!r}")


def read_failures(tdir: Path) -> int:
    """Failed attempts of this trial so far (trials/<id>/failures)."""
    try:
        return int((tdir / FAILURES).read_text())
    except (OSError, ValueError):
        return 0


def run_trial(sweep_dir: Path, manifest: dict[str, Any], trial: dict[str, Any], *, fork_python: bool = False) -> int:
    existing = read_result(sweep_dir, trial["id"])
    if existing and existing.get("status") in FINISHED_STATUSES:
        _say(f"trial {trial['id']} already has a {existing['status']} result: nothing to do")
        return 0 if existing["status"] == "completed" else EXIT_STOPPED_EARLY
    tdir = mf.trial_dir(sweep_dir, trial["id"])
    tdir.mkdir(parents=True, exist_ok=True)
    link_slurm_log(sweep_dir, tdir)
    if mf.uses_study(manifest):
        from jobs import bayes

        full_site()  # Optuna lives in site-packages
        # Bayes trials get their params now (a requeued task gets its own back); pruned sweeps
        # register the trial so that its reports reach the pruner.
        params = bayes.ask(sweep_dir, manifest, trial)
        trial = {**trial, "params": params, "overrides": {**trial.get("overrides", {}), **params}}
    max_attempts = int(manifest.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)
    forwarder = _Forwarder()
    slurm = under_slurm()
    # Under Slurm every attempt is a new start of this task (SLURM_RESTART_COUNT counts them,
    # preemptions and node failures included); locally this loop is the retry. The failure
    # budget counts failed attempts only, in the trial directory: a preemption costs none.
    attempt = int(os.environ.get("SLURM_RESTART_COUNT") or 0) if slurm else 0
    failures = read_failures(tdir)
    while True:
        outcome = run_attempt(sweep_dir, manifest, trial, attempt, forwarder, fork_python)
        status, error, results = classify(outcome)
        if forwarder.signum is not None and status not in FINISHED_STATUSES:
            name = signal.Signals(forwarder.signum).name
            _say(f"trial {trial['id']} stopped by {name} (exit {outcome['returncode']})")
            if slurm and requeue_self():
                _say(f"requeued {slurm_task_id()}")
                return 0
            status, error = "preempted", f"stopped by {name}; not requeued\n{outcome['error_tail']}"
        elif status == "failed":
            failures += 1
            write_text_atomic(tdir / FAILURES, f"{failures}\n")
            if failures < max_attempts:
                _say(f"trial {trial['id']} failed on attempt {attempt} (failure {failures} of {max_attempts} allowed)")
                if not slurm:
                    attempt += 1
                    continue
                if requeue_self():
                    return 0
        if mf.uses_study(manifest):
            _tell(sweep_dir, manifest, trial, status, results)
        result = build_result(manifest, trial, status, error, results, outcome["runtime_s"], attempt)
        write_json_atomic(mf.result_path(sweep_dir, trial["id"]), result, indent=1)
        _say(f"trial {trial['id']} {status}")
        if status == "completed":
            return 0
        return EXIT_STOPPED_EARLY if status in ("diverged", "pruned") else EXIT_FAILED


def parse_args(argv: list[str]) -> tuple[Path, int, int]:
    """(sweep_dir, task_id, offset). The shapes the backends write are read by hand; anything
    else (--help, a typo) goes through argparse, which every task would otherwise import."""
    if len(argv) in (2, 4) and (len(argv) == 2 or argv[2] == "--offset"):
        try:
            return Path(argv[0]), int(argv[1]), int(argv[3]) if len(argv) == 4 else 0
        except ValueError:
            pass
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("task_id", type=int, help="$SLURM_ARRAY_TASK_ID, or the trial index locally")
    parser.add_argument("--offset", type=int, default=0, help="trial index of task 0 of this array")
    args = parser.parse_args(argv)
    return args.sweep_dir, args.task_id, args.offset


def main(argv: list[str] | None = None) -> int:
    sweep_dir, task_id, offset = parse_args(sys.argv[1:] if argv is None else list(argv))
    sweep_dir = sweep_dir.absolute()
    manifest = mf.read_manifest(sweep_dir)
    trial = find_trial(manifest, offset + task_id)
    return run_trial(sweep_dir, manifest, trial, fork_python=True)  # this process is the runner


# Exit the ordinary way when one of these is loaded: a study's journal and log handlers need
# their atexit hooks; jobs.slurm means this task requeued itself, and a runner that vanishes the
# instant `scontrol requeue` returns races Slurm's kill of the old run (the new run was then
# refused, "credential revoked", in tests/slurm/test_launch_slurm.py's usr1 test).
_NEEDS_FINALIZE = ("optuna", "logging", "torch", "jobs.slurm")


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown when nothing needs it.

    Every array task ends here; tearing down the modules costs a few ms of CPU per task, which
    adds up when hundreds of tasks share a node. The result file is already fsynced and closed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if not any(name in sys.modules for name in _NEEDS_FINALIZE):
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_now(main())  # SystemExit (a bad task id, --help) leaves the ordinary way
