"""Trial state: what each planned trial is doing now, from the sweep directory and one
`sacct` plus one `squeue` call, whatever the sweep's size.

    state = result.json status            if the trial wrote one (a failed one that Slurm is
                                          running again counts as running)
          | squeue state                  if Slurm still has the task (pending / running)
          | sacct state of its last run   if Slurm remembers it (timeout, cancelled, ...)
          | local supervisor alive        local sweeps: running / pending
          | unsubmitted                   if no submission holds it
          | lost                          if submitted but neither Slurm nor the disk knows it

`sweep resume` resubmits every trial whose state `needs_run()`.
"""
from __future__ import annotations

import enum
import getpass
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from jobs import manifest as mf

# Executors whose submissions are Slurm array jobs (submitit's are too).
SLURM_EXECUTORS = ("slurm", "submitit")
LOCAL_PREFIX = "local:"
# squeue's reason for a task whose dependency failed: it will never start by itself.
NEVER_SATISFIED = "DependencyNeverSatisfied"


class TrialState(enum.Enum):
    UNSUBMITTED = "unsubmitted"
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"
    PRUNED = "pruned"
    LOST = "lost"

    def is_active(self) -> bool:
        """Slurm (or the local pool) still holds it: never resubmit."""
        return self in (TrialState.PENDING, TrialState.RUNNING)

    def is_final(self) -> bool:
        """A result the search keeps: completed, or stopped on purpose (diverged, pruned)."""
        return self in (TrialState.COMPLETED, TrialState.DIVERGED, TrialState.PRUNED)

    def needs_run(self) -> bool:
        return not (self.is_active() or self.is_final())


# Slurm's job states (jobs.slurm.JobState names) -> ours, for a task that left no result.
_FROM_SLURM = {
    "PENDING": TrialState.PENDING, "CONFIGURING": TrialState.RUNNING, "RUNNING": TrialState.RUNNING,
    "COMPLETING": TrialState.RUNNING, "SUSPENDED": TrialState.RUNNING, "STOPPED": TrialState.RUNNING,
    "RESIZING": TrialState.RUNNING, "REQUEUED": TrialState.PENDING, "REQUEUE_HOLD": TrialState.PENDING,
    "REQUEUE_FED": TrialState.PENDING, "SPECIAL_EXIT": TrialState.PENDING,
    # A task that ended "COMPLETED" but wrote no result: the runner died or was killed.
    "COMPLETED": TrialState.FAILED, "FAILED": TrialState.FAILED, "OUT_OF_MEMORY": TrialState.FAILED,
    "BOOT_FAIL": TrialState.FAILED, "NODE_FAIL": TrialState.PREEMPTED, "PREEMPTED": TrialState.PREEMPTED,
    "TIMEOUT": TrialState.TIMEOUT, "DEADLINE": TrialState.TIMEOUT, "CANCELLED": TrialState.CANCELLED,
    "REVOKED": TrialState.CANCELLED,
}


def from_slurm(state_name: str) -> TrialState:
    return _FROM_SLURM.get(state_name, TrialState.LOST)


@dataclass(frozen=True)
class LiveTask:
    """What Slurm says about one array task (squeue laid over sacct)."""

    state: str                       # jobs.slurm.JobState name
    node: str | None = None
    elapsed_s: float | None = None
    restarts: int = 0                # earlier runs (requeues, preemptions), from sacct
    reason: str = ""                 # squeue's pending reason
    source: str = "sacct"            # "squeue" or "sacct"


@dataclass
class TrialStatus:
    trial: dict[str, Any]
    state: TrialState
    slurm_id: str | None = None        # "<array job>_<task>" of its latest submission
    slurm_state: str | None = None     # what Slurm says, verbatim, when it says anything
    attempts: int = 0
    runtime_s: float | None = None
    node: str | None = None
    metric: float | None = None        # latest value of the sweep's metric
    error: str | None = None
    reason: str | None = None          # squeue's pending reason
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        t = self.trial
        return {"id": t["id"], "index": t["index"], "stage": t.get("stage", 0), "params": t.get("params", {}),
                "parent": t.get("parent"), "state": self.state.value, "slurm_id": self.slurm_id,
                "slurm_state": self.slurm_state, "reason": self.reason, "attempts": self.attempts,
                "runtime_s": self.runtime_s, "node": self.node, "metric": self.metric, "error": self.error}


@dataclass
class SweepStatus:
    trials: list[TrialStatus]
    metric: str | None
    accounting: bool = True            # False when sacct could not answer (accounting off)
    notes: list[str] = field(default_factory=list)
    gpu_hours_saved: float | None = None  # by early stopping, when any trial was pruned

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state.value] = out.get(t.state.value, 0) + 1
        return out

    def done_fraction(self) -> float:
        if not self.trials:
            return 1.0
        return sum(t.state.is_final() for t in self.trials) / len(self.trials)

    def active(self) -> list[TrialStatus]:
        """Trials that may still change by themselves (a task stuck behind a failed dependency
        never will, so it does not keep `--watch` going)."""
        return [t for t in self.trials if t.state.is_active() and t.reason != NEVER_SATISFIED]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "counts": self.counts(), "total": len(self.trials),
                "done": round(self.done_fraction(), 4), "active": len(self.active()),
                "accounting": self.accounting, "notes": self.notes, "gpu_hours_saved": self.gpu_hours_saved,
                "trials": [t.to_dict() for t in self.trials]}


# --- reading the disk ---------------------------------------------------------------------------

def read_results(sweep_dir: str | os.PathLike, trials: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{trial id: result.json} for every trial that has one (one scandir, then one open each)."""
    # Plain string paths: at 10,000 trials pathlib's object churn costs more than the reads.
    root = os.path.join(os.fspath(sweep_dir), mf.TRIALS)
    try:
        present = {e.name for e in os.scandir(root)}
    except FileNotFoundError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    loads, sep, name = json.loads, os.sep, mf.RESULT
    for t in trials:
        tid = t["id"]
        if tid not in present:
            continue
        try:
            with open(f"{root}{sep}{tid}{sep}{name}", "rb") as f:
                out[tid] = loads(f.read())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
            continue
    return out


def latest_metric(sweep_dir: str | os.PathLike, trial_id: str, metric: str | None) -> float | None:
    """The last value of `metric` in the trial's progress.jsonl (reads only the file's tail)."""
    if not metric:
        return None
    path = Path(sweep_dir) / mf.TRIALS / trial_id / mf.PROGRESS
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            value = json.loads(line).get(metric)
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, (int, float)):
            return float(value)
    return None


# --- the manifest's submissions -------------------------------------------------------------------

def latest_submissions(manifest: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """{trial index: the latest submission record that holds it} (resume appends newer ones)."""
    out: dict[int, dict[str, Any]] = {}
    for sub in manifest.get("submissions", []):
        for index in mf.expand_ranges(str(sub.get("indices", ""))):
            out[index] = sub
    return out


def task_id_of(sub: dict[str, Any], index: int) -> str | None:
    """'<job>_<task>' of a trial in a Slurm submission, None for local ones."""
    job = sub.get("job_id")
    if not job or sub.get("executor", "slurm") not in SLURM_EXECUTORS:
        return None
    return f"{job}_{index - int(sub.get('offset', 0))}"


def task_map(manifest: dict[str, Any]) -> dict[int, str]:
    """{trial index: '<job>_<task>' of the latest Slurm submission that holds it}."""
    out = {}
    for index, sub in latest_submissions(manifest).items():
        task = task_id_of(sub, index)
        if task:
            out[index] = task
    return out


def slurm_job_ids(manifest: dict[str, Any]) -> list[str]:
    """The parent array job ids of every Slurm submission (what sacct/squeue/scancel take)."""
    seen: dict[str, None] = {}
    for sub in manifest.get("submissions", []):
        if sub.get("job_id") and sub.get("executor", "slurm") in SLURM_EXECUTORS:
            seen[str(sub["job_id"])] = None
    return list(seen)


def submitted_indices(manifest: dict[str, Any]) -> set[int]:
    out: set[int] = set()
    for sub in manifest.get("submissions", []):
        out.update(mf.expand_ranges(str(sub.get("indices", ""))))
    return out


# --- Slurm: one sacct + one squeue ------------------------------------------------------------------

def live_tasks(sacct_rows: Iterable[Any], squeue_rows: Iterable[Any],
               job_ids: Iterable[str] | None = None) -> dict[str, LiveTask]:
    """{'<job>_<task>': LiveTask} from jobs.slurm SacctRow/SqueueRow lists.

    Grouped pending rows ('12_[3-7%2]') are expanded; step rows are skipped; squeue wins over
    sacct because it is the live view (sacct can lag a requeue by a moment).
    """
    wanted = set(job_ids) if job_ids is not None else None
    out: dict[str, LiveTask] = {}
    restarts: dict[str, int] = {}
    for row in sacct_rows:
        jid = row.job_id
        if jid.step or (wanted is not None and jid.job not in wanted):
            continue
        for task in jid.tasks():
            key = f"{jid.job}_{task}"
            restarts[key] = row.restarts
            out[key] = LiveTask(row.state.name, row.node, float(row.elapsed_s), row.restarts, "", "sacct")
    for row in squeue_rows:
        jid = row.job_id
        if jid.step or (wanted is not None and jid.job not in wanted):
            continue
        for task in jid.tasks():
            key = f"{jid.job}_{task}"
            out[key] = LiveTask(row.state.name, row.node, float(row.time_s), restarts.get(key, 0),
                                row.reason if row.reason != "None" else "", "squeue")
    return out


def query_slurm(job_ids: list[str], *, sacct: Callable[..., list] | None = None,
                squeue: Callable[..., list] | None = None) -> tuple[dict[str, LiveTask], bool, list[str]]:
    """(live tasks, accounting answered, notes) from exactly one sacct and one squeue call.

    squeue is asked for this user's jobs and filtered here, so ids that left the queue long
    ago never make it fail; sacct gets the parent array ids (never one id per task).
    """
    from jobs.errors import SlurmError

    if sacct is None or squeue is None:
        from jobs import slurm
        sacct = sacct or slurm.sacct
        squeue = squeue or slurm.squeue
    notes: list[str] = []
    if not job_ids:
        return {}, True, notes
    accounting = True
    try:
        sacct_rows = sacct(job_ids)
    except SlurmError as exc:
        accounting = False
        sacct_rows = []
        notes.append(f"sacct unavailable ({exc.said.splitlines()[0] if exc.said else 'no output'}): "
                     "states from squeue and the result files only")
    try:
        squeue_rows = squeue(None, user=_user())
    except SlurmError as exc:
        squeue_rows = []
        notes.append(f"squeue failed ({exc.said.splitlines()[0] if exc.said else 'no output'})")
    return live_tasks(sacct_rows, squeue_rows, job_ids), accounting, notes


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers: all users' jobs, filtered by id
        return None


# --- local sweeps: is the supervisor alive? -----------------------------------------------------------

def _iso_ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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


def supervisor_alive(sub: dict[str, Any]) -> bool:
    """The local submission's supervisor still runs: its pid lives and started before the record
    was written (so a recycled pid does not pass for it)."""
    job = str(sub.get("job_id", ""))
    if not job.startswith(LOCAL_PREFIX):
        return False
    try:
        pid = int(job[len(LOCAL_PREFIX):])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # alive, someone else's: cannot be ours, but say alive rather than double-run
    started, submitted = _process_start(pid), _iso_ts(sub.get("submitted"))
    return started is None or submitted is None or started <= submitted + 2.0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def local_states(sweep_dir: str | os.PathLike, manifest: dict[str, Any],
                 results: dict[str, dict[str, Any]]) -> dict[str, TrialState]:
    """{trial id: RUNNING | PENDING} for trials an alive local supervisor still owes a result.

    Running = the runner appended to trial.log since the submission (it does at every start).
    """
    out: dict[str, TrialState] = {}
    latest = latest_submissions(manifest)
    alive: dict[int, bool] = {}
    for trial in manifest.get("trials", []):
        sub = latest.get(trial["index"])
        if sub is None or sub.get("executor") != "local":
            continue
        result = results.get(trial["id"])
        if result is not None and result.get("status") in ("completed", "diverged", "pruned"):
            continue
        key = id(sub)
        if key not in alive:
            alive[key] = supervisor_alive(sub)
        if not alive[key]:
            continue
        submitted = _iso_ts(sub.get("submitted")) or 0.0
        if result is not None and _mtime(mf.result_path(sweep_dir, trial["id"])) >= submitted:
            continue  # this submission already ran it (the pool runs a trial once)
        log = mf.trial_dir(sweep_dir, trial["id"]) / "trial.log"
        try:
            fresh = log.stat().st_mtime >= submitted - 1.0
        except OSError:
            fresh = False
        out[trial["id"]] = TrialState.RUNNING if fresh else TrialState.PENDING
    return out


# --- combining ------------------------------------------------------------------------------------

def _result_state(result: dict[str, Any]) -> TrialState:
    try:
        return TrialState(result.get("status", "failed"))
    except ValueError:
        return TrialState.FAILED


def _metric_of(result: dict[str, Any], metric: str | None) -> float | None:
    results = result.get("results") or {}
    value = results.get(metric) if metric else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first_line(text: Any) -> str | None:
    if not text:
        return None
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else None


def combine(manifest: dict[str, Any], results: dict[str, dict[str, Any]], live: dict[str, LiveTask],
            local: dict[str, TrialState] | None = None, *, sweep_dir: str | os.PathLike | None = None,
            accounting: bool = True) -> SweepStatus:
    """The state of every trial (pure: everything it needs is passed in)."""
    metric = manifest.get("metric")
    latest = latest_submissions(manifest)
    local = local or {}
    out: list[TrialStatus] = []
    for trial in manifest.get("trials", []):
        tid, index = trial["id"], trial["index"]
        sub = latest.get(index)
        slurm_id = task_id_of(sub, index) if sub else None
        st = TrialStatus(trial=trial, state=TrialState.UNSUBMITTED, slurm_id=slurm_id)
        task = live.get(slurm_id) if slurm_id else None
        live_state = from_slurm(task.state) if task else None
        if task:
            st.slurm_state, st.node, st.runtime_s = task.state, task.node, task.elapsed_s
            # restarts = runs before this one; a pending task has not started its own run yet.
            st.attempts = task.restarts + (0 if live_state is TrialState.PENDING else 1)
            st.reason = task.reason or None
        result = results.get(tid)
        if result is not None:
            st.state = _result_state(result)
            st.result = result
            job = result.get("job") or {}
            st.attempts = max(st.attempts, int(job.get("attempt") or 0) + 1)
            st.node = job.get("node") or st.node
            st.runtime_s = result.get("runtime_s")
            st.metric = _metric_of(result, metric)
            st.error = _first_line(result.get("error"))
            # A non-final result whose task Slurm (or the pool) holds again is a retry in flight.
            if not st.state.is_final():
                if live_state is not None and live_state.is_active():
                    st.state = live_state
                elif tid in local:
                    st.state = local[tid]
        elif live_state is not None:
            st.state = live_state
            if not live_state.is_active() and live_state is not TrialState.LOST:
                st.error = f"Slurm says {task.state} and the trial wrote no result"
        elif tid in local:
            st.state = local[tid]
        elif sub is not None:
            if sub.get("executor") == "local":
                st.state, st.error = TrialState.FAILED, "the local run ended without a result"
            else:
                st.state = TrialState.LOST
        if st.state is TrialState.RUNNING and sweep_dir is not None:
            st.metric = latest_metric(sweep_dir, tid, metric)
        out.append(st)
    return SweepStatus(trials=out, metric=metric, accounting=accounting)


def collect(sweep_dir: str | os.PathLike, manifest: dict[str, Any] | None = None, *,
            sacct: Callable[..., list] | None = None, squeue: Callable[..., list] | None = None
            ) -> SweepStatus:
    """The sweep's status now: manifest + result files + one sacct + one squeue (none for local)."""
    manifest = manifest if manifest is not None else mf.read_manifest(sweep_dir)
    trials = manifest.get("trials", [])
    job_ids = slurm_job_ids(manifest)
    answer: list[Any] = [({}, True, [])]
    worker = None
    if job_ids:
        # Slurm answers while we read the result files: the two waits overlap.
        def ask() -> None:
            try:
                answer[0] = query_slurm(job_ids, sacct=sacct, squeue=squeue)
            except BaseException as exc:  # re-raised below, in the caller's thread
                answer[0] = exc
        worker = threading.Thread(target=ask, name="slurm-status", daemon=True)
        worker.start()
    results = read_results(sweep_dir, trials)
    if worker is not None:
        worker.join()
    if isinstance(answer[0], BaseException):
        raise answer[0]
    live, accounting, notes = answer[0]
    if worker is not None:
        # The files were read while Slurm answered: a task that finished in between is gone from
        # squeue but its result was not read yet (and sacct may lag). Read those once more, so a
        # finished trial is never taken for a lost one (and resubmitted).
        unread = [t for t in trials if t["id"] not in results]
        results.update(read_results(sweep_dir, unread))
    local = local_states(sweep_dir, manifest, results)
    status = combine(manifest, results, live, local, sweep_dir=sweep_dir, accounting=accounting)
    status.notes.extend(notes)
    if any(r.get("status") == "pruned" for r in results.values()):
        from jobs import bayes

        status.gpu_hours_saved = bayes.gpu_hours_saved(manifest, results.values())
    return status


def watch_delays(start: float = 2.0, factor: float = 1.5, cap: float = 60.0):
    """Refresh intervals for --watch: back off so a long sweep costs slurmctld little."""
    delay = start
    while True:
        yield delay
        delay = min(cap, delay * factor)
