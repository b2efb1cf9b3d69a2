"""The array task: `python -m jobs.run SWEEP_DIR TASK_ID [--array TOKEN | --offset N]`.

Finds its trials (a Slurm task: the line for TASK_ID in arrays/<TOKEN>.jsonl, one trial or a pack
of them; locally and in old scripts: trial index OFFSET + TASK_ID of manifest.json), runs each
trial's command with its overrides and the SWEEP_* variables, and wraps what the program wrote to
$SWEEP_RESULT_FILE into trials/<id>/result.json, once, atomically. Trials that already have a
final result are skipped, so a requeued packed task carries on where it stopped.

A Python program run by this interpreter (`python prog.py`, `python -m mod`) starts in a fork of
the runner instead of a second interpreter (jobs.inproc; SLURMSWEEP_NO_INPROC=1 turns that off);
any other command is exec'd in its own session. A packed task whose allocation holds several GPUs
runs that many trials side by side, each with its own CUDA_VISIBLE_DEVICES; without GPUs, one with
cpus_per_trial set runs cpus_per_task // cpus_per_trial at once, each pinned to its own CPUs with its
OMP_NUM_THREADS (exec'd: no fork from a threaded runner).

When a stop signal comes, jobs.stop says why: a cancel is recorded and never requeued; a time
limit requeues while the trial's budget lasts, then records a timeout; Slurm's own requeue needs
nothing; anything else checkpoints and requeues. At the end, a task of a sweep with trials
waiting for queue room tops the queue up (jobs.topup).

Every Slurm array task starts here, so this module imports only the standard library and our
stdlib-only `jobs` modules: no yaml, no rich, no torch.

Exit codes (what Slurm records, and what `--dependency=aftercorr` reads):
    0  completed, or skipped because a finished result already exists, or requeued; a packed
       task: any of its trials completed (each later-stage trial checks its own parent)
    1  failed (after the last attempt), cancelled or timed out
    3  diverged or pruned: finished, but a later stage must not start from it
"""
from __future__ import annotations

import contextlib  # already loaded by the interpreter's start: free
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

from jobs import attempts, inproc, stop, torchrun
from jobs import manifest as mf
from jobs.manifest import Settings, Trial, now_iso
from jobs.runtime import slurm_task_id
from jobs.results import RESERVED_KEYS, RESULT_SCHEMA, finite_metric, metric_value, read_result, write_result
from jobs.trial_state import TrialState

LOG = "trial.log"
ERROR_TAIL_LINES = 30
RANKS_TAIL_LINES = 400   # of a torchrun trial: its report of a failed rank follows that rank's lines
EXIT_FAILED, EXIT_STOPPED_EARLY = 1, 3
# What a trial's run ended in, beyond its result status: the task then stops running trials.
REQUEUE = "requeue"


def _say(message: str) -> None:
    # The runner's own lines go to the Slurm log (or the local pool's log), not trial.log.
    print(f"[jobs.run {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the environment the program sees --------------------------------------------------------

def under_slurm() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID"))


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


def trial_argv(sweep_dir: Path, settings: Settings, trial: Trial, *, write_json_file: bool = True) -> list[str]:
    """The argv of the trial's program; `${args_json_file}` is written into its trial directory
    (a dry run passes write_json_file=False and only shows the path). A trial of several processes
    (gpus_per_trial) runs under torchrun, and a command that starts torchrun itself is not wrapped
    again (jobs.torchrun)."""
    from jobs.argv import render_argv, resolve_python

    overrides = dict(trial.overrides)
    if trial.parent:
        # Progressive stage: start from this trial's own previous stage.
        overrides.setdefault(settings.checkpoint_key, str(mf.trial_dir(sweep_dir, trial.parent) / mf.CHECKPOINTS))
    tdir = mf.trial_dir(sweep_dir, trial.id)
    argv = resolve_python(render_argv(list(settings.command), overrides, json_file_dir=tdir,
                                      write_json_file=write_json_file))
    return torchrun.command(argv, settings.cluster.processes, tdir / torchrun.LOG_DIR)


def trial_env(sweep_dir: Path, settings: Settings, trial: Trial, attempt: int,
              extra: dict[str, str] | None = None) -> dict[str, str]:
    tdir = mf.trial_dir(sweep_dir, trial.id)
    env = dict(os.environ)
    env.update({
        "SWEEP_DIR": str(sweep_dir),
        "SWEEP_NAME": settings.name,
        "SWEEP_METRIC": settings.metric or "",
        "SWEEP_TRIAL_ID": trial.id,
        "SWEEP_TRIAL_DIR": str(tdir),
        "SWEEP_RESULT_FILE": str(tdir / mf.METRICS),
        "SWEEP_CHECKPOINT_DIR": str(tdir / mf.CHECKPOINTS),
        "SWEEP_ATTEMPT": str(attempt),
        "SWEEP_STAGE": str(trial.stage),
    })
    if trial.environment is not None:
        env["SWEEP_ENVIRONMENT"] = str(trial.environment)
    # A sweep file's `logging:` block (ConSpec): where the runs' W&B records go. wandb reads these.
    for key, var in (("wandb_project", "WANDB_PROJECT"), ("wandb_entity", "WANDB_ENTITY")):
        if settings.logging.get(key):
            env.setdefault(var, str(settings.logging[key]))
    env.update(extra or {})
    processes = torchrun.processes(settings.command, settings.cluster.gpus_per_trial)
    return torchrun.environment(env, processes, wrapped=not torchrun.starts_torchrun(settings.command))


# --- running one attempt ---------------------------------------------------------------------

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


def run_attempt(sweep_dir: Path, settings: Settings, trial: Trial, attempt: int, forwarder: stop.Forwarder,
                fork_python: bool = False, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the program once; return {returncode, metrics, problem, error_tail, runtime_s}.

    With `fork_python` (this process is the runner, not a host such as submitit's worker), a
    Python program run by this interpreter starts in a fork of the runner (jobs.inproc)."""
    tdir = mf.trial_dir(sweep_dir, trial.id)
    (tdir / mf.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    metrics_file = tdir / mf.METRICS
    # A metrics file from an earlier attempt would pass for this attempt's result.
    metrics_file.unlink(missing_ok=True)
    log_path = tdir / LOG
    argv = trial_argv(sweep_dir, settings, trial)
    workdir = settings.workdir
    cwd = workdir if workdir and os.path.isdir(workdir) else None
    env = trial_env(sweep_dir, settings, trial, attempt, env_extra)
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
        ranks = torchrun.starts_torchrun(argv)
        if ranks:
            child = torchrun.Agent(child)   # stop signals go to every rank, not to torchrun's agent
        forwarder.adopt(child)
        returncode = child.wait()  # PEP 475: a forwarded signal does not interrupt the wait
        forwarder.release(child)
        runtime = time.monotonic() - started
        log.write(f"=== exit {returncode} after {runtime:.1f}s ===\n".encode())
    metrics, problem = _read_metrics(metrics_file)
    if ranks:
        from jobs.causes import rank_tail

        # torchrun's own report of a failed rank outgrows a plain tail: the rank's lines, then the report.
        tail = rank_tail(_tail(log_path, start_offset, RANKS_TAIL_LINES), ERROR_TAIL_LINES)
    else:
        tail = _tail(log_path, start_offset)
    return {"returncode": returncode, "metrics": metrics, "problem": problem, "error_tail": tail,
            "runtime_s": runtime}


def classify(outcome: dict[str, Any], metric: str | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """(status, error, results) of one attempt."""
    metrics, returncode = outcome["metrics"], outcome["returncode"]
    results = {k: v for k, v in (metrics or {}).items() if k not in RESERVED_KEYS}
    if metrics is not None and metrics.get("status") in (TrialState.DIVERGED, TrialState.PRUNED):
        # Stopped on purpose, whatever the exit code (the trainer exits 3 on divergence):
        # final, never retried -- a rerun from the last checkpoint would diverge again.
        return metrics["status"], metrics.get("error"), results
    if returncode == 0 and metrics is not None:
        value = metric_value(results, metric)
        if value is not None and finite_metric(results, metric) is None:
            # A "completed" run whose metric is NaN/Inf is a diverged one: never the best.
            return TrialState.DIVERGED.value, f"{metric} is {value}", results
        return TrialState.COMPLETED.value, metrics.get("error"), results
    from jobs.causes import explain_exit  # only here: a trial that completes needs none of it

    why = explain_exit(returncode, outcome["error_tail"]) if returncode != 0 else outcome["problem"]
    tail = outcome["error_tail"]
    return TrialState.FAILED.value, f"{why}\n{tail}" if tail else why, results


def build_result(settings: Settings, trial: Trial, status: str, error: str | None, results: dict[str, Any],
                 runtime_s: float, attempt: int) -> dict[str, Any]:
    return {
        "schema": RESULT_SCHEMA,
        "sweep": settings.name,
        "trial": trial.index,
        "trial_id": trial.id,
        "stage": trial.stage,
        "environment": trial.environment,
        "hyperparameters": trial.params,
        "results": results,
        "status": status,
        "error": error,
        "timestamp": now_iso(),
        "runtime_s": round(runtime_s, 3),
        "job": {"id": slurm_task_id(), "node": os.environ.get("SLURMD_NODENAME") or os.uname().nodename,
                "attempt": attempt, "gpu": gpu_name()},
    }


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


def _tell(sweep_dir: Path, settings: Settings, trial: Trial, status: str, results: dict[str, Any]) -> None:
    # Before the result is written: a task killed in between reruns and asks afresh, instead
    # of leaving a finished trial that the study believes is still running. A broken journal
    # must not cost the trial its result, so a failure here is only logged.
    from jobs import bayes

    try:
        bayes.tell(sweep_dir, settings, trial, status, finite_metric(results, settings.metric))
    except Exception as exc:  # noqa: BLE001 - logged, the result is what matters
        _say(f"could not tell the Optuna study about trial {trial.id}: {exc!r}")


def _done(sweep_dir: Path, settings: Settings, trial: Trial, tdir: Path) -> str | None:
    """The status of a result this task must leave alone, or None: a final one, a failure (or time
    out) that used its attempts, a cancel. A task Slurm requeued or preempted starts its trials again;
    these stay as they are until `sweep resume --retry-failed/--retry-cancelled` clears them."""
    existing = read_result(sweep_dir, trial.id)
    if not existing:
        return None
    state = TrialState.of_result(existing)
    if state.is_final() or state is TrialState.CANCELLED:
        return state.value
    if attempts.used_up(tdir, state, max_attempts=settings.max_attempts,
                        timeout_requeues=settings.cluster.timeout_requeues):
        return state.value
    return None


def _claim(tdir: Path) -> int | None:
    """Hold trials/<id>/.running (flock) while the trial runs: a second task that somehow holds the
    same trial (a stale task of a resubmitted array) leaves it alone instead of running it twice.
    None: another process holds it. Filesystems without flock: no claim, the run goes on."""
    import fcntl

    try:
        fd = os.open(tdir / ".running", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        pass   # no flock here
    return fd


def run_trial(sweep_dir: Path, settings: Settings, trial: Trial, forwarder: stop.Forwarder, *,
              fork_python: bool = False, env_extra: dict[str, str] | None = None, retry_here: bool = False) -> str:
    """Run one trial to a result (or to a requeue); return its status, or REQUEUE when the task
    is to stop here and come back (requeued, or Slurm requeued it)."""
    tdir = mf.trial_dir(sweep_dir, trial.id)
    done = _done(sweep_dir, settings, trial, tdir)
    if done is not None:
        _say(f"trial {trial.id} already has a {done} result: nothing to do")
        return done
    tdir.mkdir(parents=True, exist_ok=True)
    claim = _claim(tdir)
    if claim is None:
        _say(f"trial {trial.id} is running in another task: not started here")
        return "skipped"
    try:
        return _run_claimed(sweep_dir, settings, trial, tdir, forwarder, fork_python, env_extra, retry_here)
    finally:
        if claim >= 0:
            os.close(claim)


def _run_claimed(sweep_dir: Path, settings: Settings, trial: Trial, tdir: Path, forwarder: stop.Forwarder,
                 fork_python: bool, env_extra: dict[str, str] | None, retry_here: bool) -> str:
    link_slurm_log(sweep_dir, tdir)
    done = _done(sweep_dir, settings, trial, tdir)   # again, now that the trial is ours
    if done is not None:
        return done
    if trial.parent:
        parent = read_result(sweep_dir, trial.parent)
        if not parent or TrialState.of_result(parent) is not TrialState.COMPLETED:
            # Packed stages: this task ran because another trial of the parent task completed.
            _say(f"trial {trial.id}: its earlier stage {trial.parent} did not complete; not started")
            return "skipped"
    if settings.uses_study:
        from jobs import bayes

        full_site()  # Optuna lives in site-packages
        # Bayes trials get their params now (a requeued task gets its own back); pruned sweeps
        # register the trial so that its reports reach the pruner.
        params = bayes.ask(sweep_dir, settings, trial)
        trial = trial._replace(params=params, overrides={**trial.overrides, **params})
    slurm = under_slurm()
    # Under Slurm every attempt is a new start of this task (SLURM_RESTART_COUNT counts them,
    # preemptions and node failures included); locally, and in packed tasks, this loop is the
    # retry. The failure budget counts failed attempts only: a preemption costs none.
    # A trial of a packed task counts its own starts instead: its task's restarts may predate it.
    own_count = slurm and retry_here
    attempt = int(os.environ.get("SLURM_RESTART_COUNT") or 0) if slurm else 0
    while True:
        if own_count:
            attempt = attempts.bump(tdir, attempts.STARTS) - 1
        outcome = run_attempt(sweep_dir, settings, trial, attempt, forwarder, fork_python, env_extra)
        status, error, results = classify(outcome, settings.metric)
        if forwarder.signum is not None and not TrialState(status).is_final():
            name = signal.Signals(forwarder.signum).name
            cause, info = stop.why_stopped(os.path.join(sweep_dir, mf.CANCEL_MARKER), grace_s=settings.cluster.grace_s)
            _say(f"trial {trial.id} stopped by {name} ({cause}, exit {outcome['returncode']})")
            if cause == stop.REQUEUED:
                return REQUEUE
            if cause == stop.CANCELLED:
                # (scontrol's UserId is the job's owner, not who cancelled it: sacct says that later.)
                status, error = TrialState.CANCELLED.value, f"cancelled ({name})"
            elif cause == stop.TIME_LIMIT:
                limit = info.get("TimeLimit", "?")
                used = attempts.count(tdir, attempts.TIMEOUTS)
                if used < settings.cluster.timeout_requeues and stop.requeue_self(_say):
                    attempts.bump(tdir, attempts.TIMEOUTS)
                    return REQUEUE
                attempts.bump(tdir, attempts.TIMEOUTS)
                status = TrialState.TIMEOUT.value
                error = (f"reached its time limit ({limit}) {used + 1} time(s); raise `time:` in the cluster profile "
                         f"or the sweep's resources (or --time), or checkpoint more often")
            elif slurm and stop.requeue_self(_say):
                return REQUEUE
            else:
                status, error = TrialState.PREEMPTED.value, f"stopped by {name}; not requeued\n{outcome['error_tail']}"
        elif status == TrialState.FAILED:
            failures = attempts.bump(tdir, attempts.FAILURES)
            if failures < settings.max_attempts:
                _say(f"trial {trial.id} failed on attempt {attempt} "
                     f"(failure {failures} of {settings.max_attempts} allowed)")
                if not slurm or retry_here:
                    attempt += 1
                    continue
                if stop.requeue_self(_say):
                    return REQUEUE
        if settings.uses_study:
            _tell(sweep_dir, settings, trial, status, results)
        write_result(sweep_dir, build_result(settings, trial, status, error, results, outcome["runtime_s"], attempt))
        _say(f"trial {trial.id} {status}")
        return status


# --- one task: its trials, one after another or side by side --------------------------------------

def side_by_side(per_trial: int = 1) -> list[str]:
    """The GPUs of this allocation, `per_trial` to a packed trial ('0,1', '2,3'), when they make
    several such groups, else [] (a trial of several processes gets all its GPUs, not one)."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    groups = [",".join(visible[i:i + per_trial]) for i in range(0, len(visible) - per_trial + 1, per_trial)]
    return groups if len(groups) > 1 else []


# Thread-count variables of the usual numeric libraries (torch's OpenMP, MKL, OpenBLAS, numexpr).
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def cpu_groups(per_trial: int | None) -> list[tuple[dict[str, str], frozenset[int] | None]]:
    """Without GPUs to share out: the task's CPUs, `per_trial` to a trial, when that makes several
    trials at once: each one's thread-count variables and the CPUs it is pinned to (None where the
    task's affinity holds fewer CPUs than Slurm allotted it, as under TaskPlugin=task/none)."""
    if not per_trial:
        return []
    mine = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    try:
        allotted = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or len(mine)
    except ValueError:
        allotted = len(mine)
    n = allotted // per_trial
    if n < 2:
        return []
    env = dict.fromkeys(_THREAD_VARS, str(per_trial))
    pin = len(mine) >= n * per_trial
    return [(env, frozenset(mine[i * per_trial:(i + 1) * per_trial]) if pin else None) for i in range(n)]


def slots(settings: Settings) -> list[tuple[dict[str, str], frozenset[int] | None]]:
    """How a packed task runs trials side by side: one (environment, CPUs to pin to) per trial at
    once; [] runs them one after another. GPUs first (each its own CUDA_VISIBLE_DEVICES), else
    the profile's cpus_per_trial."""
    gpus = side_by_side(torchrun.processes(settings.command, settings.cluster.gpus_per_trial))
    if gpus:
        return [({"CUDA_VISIBLE_DEVICES": g}, None) for g in gpus]
    return cpu_groups(settings.cluster.cpus_per_trial)


def _seconds(slurm_time: str | None) -> float:
    """A profile's trial_time in seconds; 0 when unset or unreadable (launch checked it)."""
    if not slurm_time:
        return 0.0
    from jobs import slurm

    try:
        return float(slurm.time_spec_s(slurm_time))
    except ValueError:
        return 0.0


def _task_end() -> float | None:
    """When this task's allocation ends (epoch seconds), asked once; None outside Slurm or unknown."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    from jobs import slurm

    try:
        return slurm.epoch_s(slurm.scontrol_show_job(job).get("EndTime"))
    except Exception:  # noqa: BLE001 - not knowing only means no early stop
        return None


def run_task(sweep_dir: Path, settings: Settings, trials: list[Trial], *, fork_python: bool = False) -> int:
    """Run a task's trials; its exit code (module docstring)."""
    forwarder = stop.Forwarder()
    packed = len(trials) > 1
    at_once = slots(settings) if packed else []
    end = _task_end() if packed else None
    pack = _Pack(trials, end, settings.cluster.grace_s + stop.EARLY_WARNING_SLACK_S,
                 expected=_seconds(settings.cluster.trial_time) if end is not None else 0.0)

    def worker(env: dict[str, str] | None = None, cpus: frozenset[int] | None = None,
               lock: Any = contextlib.nullcontext()) -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)   # this thread only (Linux): the trials it starts inherit it
        while True:
            with lock:
                trial = pack.take()
            if trial is None:
                return
            started = time.monotonic()
            status = run_trial(sweep_dir, settings, trial, forwarder, retry_here=packed, env_extra=env,
                               fork_python=fork_python and env is None)   # no fork from a threaded runner
            with lock:
                pack.record(status, time.monotonic() - started)

    if at_once:   # one worker thread per slot (a GPU group, or a group of CPUs), each taking the next trial
        import threading

        lock = threading.Lock()
        threads = [threading.Thread(target=worker, args=(env, cpus, lock), name=f"slot-{i}")
                   for i, (env, cpus) in enumerate(at_once)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)   # short joins: the main thread keeps handling (and forwarding) signals
    else:
        worker()
    if pack.handed_back:
        _hand_back(sweep_dir, pack.handed_back, "too close to its time limit")
    statuses = pack.statuses
    if REQUEUE in statuses:
        return 0
    if any(s == TrialState.COMPLETED for s in statuses) or not statuses:
        return 0
    return EXIT_STOPPED_EARLY if statuses and all(s in (TrialState.DIVERGED, TrialState.PRUNED)
                                                  for s in statuses) else EXIT_FAILED


class _Pack:
    """A task's trials, handed out one at a time (to the runner, or to one worker per GPU group).

    Near the end of the allocation it hands out no trial that could still be running when the
    time-limit warning may come: grace_s before the end, or up to EARLY_WARNING_SLACK_S earlier
    (Slurm checks about every 30 s), judged by the longest trial so far (at first, the expected
    trial_time). Those go back to the sweep's waiting list instead; the task's first trial always
    starts, or a task too short for any would hand everything back for ever. A requeue or a cancel
    stops the handing out."""

    def __init__(self, trials: list[Trial], end: float | None, margin: float, expected: float = 0.0) -> None:
        self.left, self.end, self.margin = list(trials), end, margin
        self.statuses: list[str] = []
        self.handed_back: list[Trial] = []
        # Until a trial has ended here, the profile's trial_time (if any) is the estimate.
        self.longest, self.taken = expected, 0

    def take(self) -> Trial | None:
        if not self.left or REQUEUE in self.statuses or TrialState.CANCELLED in self.statuses:
            return None
        if self.end is not None and self.taken and time.time() + self.longest * 1.2 + self.margin > self.end:
            self.handed_back, self.left = self.handed_back + self.left, []
            return None
        self.taken += 1
        return self.left.pop(0)

    def record(self, status: str, seconds: float) -> None:
        self.statuses.append(status)
        self.longest = max(self.longest, seconds)


def _hand_back(sweep_dir: Path, trials: list[Trial], why: str) -> None:
    """Trials this task will not run: back to the sweep's waiting list, for the top-up."""
    from jobs import topup

    left = [t for t in trials if not TrialState.of_result(read_result(sweep_dir, t.id) or {}).is_final()]
    _say(f"{len(left)} trial(s) left for the top-up: {why}")
    topup.hand_back(sweep_dir, [t.index for t in left])


# --- the entry point ------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> tuple[Path, int, int, str | None]:
    """(sweep_dir, task_id, offset, array token). The shapes the backends write are read by hand;
    anything else (--help, a typo) goes through argparse, which every task would otherwise import."""
    if len(argv) in (2, 4) and (len(argv) == 2 or argv[2] in ("--offset", "--array")):
        try:
            token = argv[3] if len(argv) == 4 and argv[2] == "--array" else None
            offset = int(argv[3]) if len(argv) == 4 and argv[2] == "--offset" else 0
            return Path(argv[0]), int(argv[1]), offset, token
        except ValueError:
            pass
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("task_id", type=int, help="$SLURM_ARRAY_TASK_ID, or the trial index locally")
    parser.add_argument("--offset", type=int, default=0, help="trial index of task 0 (manifest.json)")
    parser.add_argument("--array", help="the array's token: its trials are in arrays/<token>.jsonl")
    args = parser.parse_args(argv)
    return args.sweep_dir, args.task_id, args.offset, args.array


def load_task(sweep_dir: Path, task_id: int, offset: int, token: str | None) -> tuple[Settings, list[Trial]]:
    if token:
        try:
            return mf.read_array_task(sweep_dir, token, task_id)
        except (OSError, KeyError, ValueError) as exc:
            raise SystemExit(f"jobs.run: task {task_id} of array {token} is not in "
                             f"{mf.array_file(sweep_dir, token)} ({exc!r})") from None
    manifest = mf.read_manifest(sweep_dir)
    try:
        return manifest.settings, [manifest.trial_at(offset + task_id)]
    except KeyError:
        raise SystemExit(f"jobs.run: no trial with index {offset + task_id} in the manifest "
                         f"({len(manifest.trials)} trials); was the task submitted with the right --offset?") from None


def main(argv: list[str] | None = None) -> int:
    sweep_dir, task_id, offset, token = parse_args(sys.argv[1:] if argv is None else list(argv))
    sweep_dir = sweep_dir.absolute()
    settings, trials = load_task(sweep_dir, task_id, offset, token)
    code = run_task(sweep_dir, settings, trials, fork_python=True)  # this process is the runner
    after_task(sweep_dir, settings, trials)
    return code


def after_task(sweep_dir: Path, settings: Settings, trials: list[Trial]) -> None:
    """What every array task does once its trials ended (the Slurm and submitit backends alike):
    submit the promotions its results earned (successive halving), then top the queue up."""
    if settings.method == "asha":
        from jobs import promote

        promote.after_task(sweep_dir, settings, trials)
    if under_slurm() and os.path.exists(os.path.join(sweep_dir, mf.WAITING_MARKER)):
        from jobs import topup

        topup.top_up(sweep_dir)


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
