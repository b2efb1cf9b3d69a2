"""Typed wrappers over the Slurm commands: sbatch, squeue, sacct, scontrol, scancel.

Each wrapper runs its command once (never one call per task: pass parent array ids), parses the
output into dataclasses and turns a failure into a SlurmError that names the command, quotes what
Slurm said and says what to do.  Arguments go to Slurm as an argv list, never through a shell.

Stdlib only and cheap to import: every array task imports this module.
"""
from __future__ import annotations

import enum
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Sequence

from jobs.errors import SlurmError

# Seconds one Slurm command may take before we give up on it (slurmctld can be slow when busy).
COMMAND_TIMEOUT_S = 120
# sbatch's back-off doubles from this up to MAX_BACKOFF_S between tries.
BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
# Tries of `scontrol requeue` after a transient refusal (1, 2, 4 s apart: well inside a grace period).
REQUEUE_RETRIES = 3

# What sbatch says when it is worth waiting and trying again: a busy or restarting controller, or a
# queue at the user's submit limit (tasks finishing make room).
TRANSIENT = (
    "resource temporarily unavailable",
    "socket timed out",
    "unable to contact slurm controller",
    "slurm temporarily unable to accept job",
    "job violates accounting/qos policy",
    "maxsubmitjobs",
    "maxsubmitjob",
    "job submit limit",
    "connection refused",
    "transport endpoint is not connected",
)

# Known complaints -> what the user should do.
FIXES = (
    ("invalid partition", "check the partition in the cluster profile against `sinfo -s`"),
    ("invalid generic resource", "check the --gres request against `sinfo -o '%P %G'`"),
    ("requested node configuration is not available",
     "ask for fewer CPUs/GPUs/memory per task, or another partition (see `sinfo -N -l`)"),
    ("invalid job array specification",
     "keep the --array range below the cluster's MaxArraySize (`scontrol show config`)"),
    ("invalid account", "set the account in the cluster profile (see `sacctmgr show assoc user=$USER`)"),
    ("invalid qos", "set a QOS you have (see `sacctmgr show assoc user=$USER format=qos`)"),
    ("time limit", "lower the time limit to the partition's MaxTime (`sinfo -o '%P %l'`)"),
    ("invalid job id", "the job is unknown to slurmctld: it may have finished long ago; use sacct"),
    ("accounting storage is disabled",
     "this cluster has no accounting: read states with squeue and the result files instead"),
    ("not found", "install the Slurm client tools, or run with --executor local"),
)


class AccountingDisabled(SlurmError):
    """sacct cannot answer (accounting off, slurmdbd down): fall back to squeue + result files."""


# --- job states -------------------------------------------------------------------------------

class JobState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PREEMPTED = "PREEMPTED"
    REQUEUED = "REQUEUED"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    RESIZING = "RESIZING"
    REVOKED = "REVOKED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    STOPPED = "STOPPED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, text: str) -> JobState:
        """'CANCELLED by 0', 'CANCELLED+', 'OUT_OF_ME+', 'PD', 'OOM' -> a state (UNKNOWN if new)."""
        word = text.strip().split(" ", 1)[0].rstrip("+").upper()
        if not word:
            return cls.UNKNOWN
        if word in _SHORT:
            return _SHORT[word]
        try:
            return cls(word)
        except ValueError:
            pass
        # A truncated name (sacct without -P cuts columns): take the one state it starts.
        matches = [s for s in cls if s.value.startswith(word)]
        return matches[0] if len(matches) == 1 else cls.UNKNOWN

    def is_finished(self) -> bool:
        """This run is over and will not change (a requeued job gets a new run)."""
        return self in _FINISHED

    def is_active(self) -> bool:
        """Queued, running, or on its way back to the queue."""
        return self in _ACTIVE


_FINISHED = frozenset({
    JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED,
    JobState.OUT_OF_MEMORY, JobState.PREEMPTED, JobState.NODE_FAIL, JobState.BOOT_FAIL,
    JobState.DEADLINE, JobState.REVOKED, JobState.SPECIAL_EXIT,
})
_ACTIVE = frozenset({
    JobState.PENDING, JobState.RUNNING, JobState.REQUEUED, JobState.SUSPENDED,
    JobState.COMPLETING, JobState.CONFIGURING, JobState.RESIZING, JobState.REQUEUE_HOLD,
    JobState.REQUEUE_FED, JobState.STOPPED,
})
# squeue's compact codes (%t).
_SHORT = {
    "PD": JobState.PENDING, "R": JobState.RUNNING, "CD": JobState.COMPLETED, "F": JobState.FAILED,
    "TO": JobState.TIMEOUT, "CA": JobState.CANCELLED, "OOM": JobState.OUT_OF_MEMORY,
    "PR": JobState.PREEMPTED, "RQ": JobState.REQUEUED, "NF": JobState.NODE_FAIL,
    "BF": JobState.BOOT_FAIL, "DL": JobState.DEADLINE, "S": JobState.SUSPENDED,
    "CG": JobState.COMPLETING, "CF": JobState.CONFIGURING, "RS": JobState.RESIZING,
    "RV": JobState.REVOKED, "SE": JobState.SPECIAL_EXIT, "RH": JobState.REQUEUE_HOLD,
    "RF": JobState.REQUEUE_FED, "ST": JobState.STOPPED,
}


# --- job ids ----------------------------------------------------------------------------------

_JOB_ID = re.compile(
    r"^(?P<job>\d+(?:\+\d+)?)"                 # 12, or 12+1 for a heterogeneous component
    r"(?:_(?:(?P<task>\d+)|\[(?P<range>[^\]]+)\]))?"
    r"(?:\.(?P<step>[\w-]+))?$")


@dataclass(frozen=True)
class JobId:
    job: str                       # the array's parent id (or the plain job id)
    task: int | None = None        # array task id
    task_range: str | None = None  # pending tasks still grouped: "3-7%2", "1,3-5"
    step: str | None = None        # "batch", "extern", "0", ...

    def __str__(self) -> str:
        text = self.job
        if self.task is not None:
            text += f"_{self.task}"
        elif self.task_range is not None:
            text += f"_[{self.task_range}]"
        return f"{text}.{self.step}" if self.step else text

    @property
    def throttle(self) -> int | None:
        """The %N of a grouped range, if any."""
        if self.task_range and "%" in self.task_range:
            return int(self.task_range.rsplit("%", 1)[1])
        return None

    def tasks(self) -> list[int]:
        """Task ids this id stands for: [task], the expanded range, or [] for a plain job."""
        if self.task is not None:
            return [self.task]
        if not self.task_range:
            return []
        out: list[int] = []
        for part in filter(None, self.task_range.split("%", 1)[0].split(",")):
            step = 1
            if ":" in part:
                part, stride = part.split(":", 1)
                step = int(stride)
            first, _, last = part.partition("-")
            out.extend(range(int(first), int(last or first) + 1, step))
        return out


def parse_job_id(text: str) -> JobId:
    """'12', '12_4', '12_4.batch', '12_[3-7%2]', '12_[1,3-5]', '12.extern' -> JobId."""
    match = _JOB_ID.match(text.strip())
    if not match:
        raise ValueError(f"not a Slurm job id: {text!r}")
    task = match["task"]
    return JobId(match["job"], int(task) if task is not None else None, match["range"],
                 match["step"])


# --- rows -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SacctRow:
    job_id: JobId
    state: JobState
    exit_code: str                 # "code:signal", e.g. "3:0" or "0:15"
    start: datetime | None
    end: datetime | None
    elapsed_s: int
    node: str | None
    restarts: int                  # runs of this job before this one (requeues, preemptions)
    reason: str = ""               # the rest of the state column: "by 0" for CANCELLED by uid 0
    max_rss_mb: float | None = None    # peak memory of a step (steps only), in MB
    req_mem_mb: float | None = None    # memory requested, in MB
    time_limit_s: float | None = None  # the time limit, in seconds

    @property
    def return_code(self) -> int:
        return int(self.exit_code.split(":", 1)[0] or 0)

    @property
    def signal(self) -> int:
        return int(self.exit_code.partition(":")[2] or 0)


@dataclass(frozen=True)
class SqueueRow:
    job_id: JobId
    state: JobState
    reason: str                    # why it pends ("Priority", "JobArrayTaskLimit", ...) or "None"
    node: str | None
    time_s: int                    # time used so far


SACCT_FIELDS = ("JobID", "State", "ExitCode", "Start", "End", "ElapsedRaw", "NodeList", "MaxRSS", "ReqMem",
                "TimelimitRaw")
# The columns every sacct line must have; the rest (memory, limits) may be absent in older captures.
_SACCT_REQUIRED = 7
_MEM_UNITS = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}


def parse_memory_mb(text: str) -> float | None:
    """sacct's memory columns ('67540K', '256M', '1.5G', '4Gn', '2Gc', '') -> MB, None if absent."""
    text = text.strip().rstrip("nc")
    if not text:
        return None
    unit = text[-1].upper()
    try:
        return float(text[:-1]) * _MEM_UNITS[unit] if unit in _MEM_UNITS else float(text) / 2 ** 20
    except ValueError:
        return None
SQUEUE_FORMAT = "%i|%T|%r|%N|%M"


def _timestamp(text: str) -> datetime | None:
    text = text.strip()
    if text in ("", "Unknown", "None", "N/A"):
        return None
    return datetime.fromisoformat(text)


def epoch_s(text: str | None) -> float | None:
    """A scontrol/sacct time stamp ('2026-12-04T15:44:15') -> epoch seconds; None when unknown or unreadable."""
    try:
        stamp = _timestamp(text or "")
    except ValueError:
        return None
    return None if stamp is None else stamp.timestamp()


def time_spec_s(text: str | int) -> int:
    """A time limit as a user writes it for sbatch -> seconds. Slurm accepts M, M:S, H:M:S, D-H, D-H:M
    and D-H:M:S (a bare number is minutes; unlike the durations squeue prints). ValueError otherwise."""
    raw = str(text).strip()
    if not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", raw):
        raise ValueError(f"not a Slurm time: {text!r}")
    days, _, clock = raw.rpartition("-")
    parts = [int(x) for x in clock.split(":")]
    if days:                                   # D-H, D-H:M, D-H:M:S
        h, m, sec = (parts + [0, 0])[:3]
    else:                                      # M, M:S, H:M:S
        h, m, sec = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


def _node(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "None assigned", "(null)", "n/a") else text


def parse_duration(text: str) -> int:
    """squeue/sacct durations '0:01', '12:03', '1:02:03', '2-01:02:03' -> seconds (0 if unknown)."""
    text = text.strip()
    if not text or text in ("INVALID", "N/A", "UNLIMITED", "Partition_Limit"):
        return 0
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts[-3:]
    return (int(days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds


def parse_sacct(text: str, *, duplicates: bool = False) -> list[SacctRow]:
    """Parse `sacct -D -P --noheader -o <SACCT_FIELDS>` output.

    With -D, sacct lists every run of a requeued job in order; `restarts` numbers them.  Without
    `duplicates` only each job's latest run is kept (what plain sacct shows), restarts still counted.
    """
    rows: list[SacctRow] = []
    runs: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = line.split("|")
        if len(cols) < _SACCT_REQUIRED:
            raise ValueError(f"sacct line has {len(cols)} columns, expected {len(SACCT_FIELDS)}: {line!r}")
        job, state, exit_code, start, end, elapsed, node = cols[:_SACCT_REQUIRED]
        rss, req, limit = (cols[_SACCT_REQUIRED:] + ["", "", ""])[:3]
        key = job.strip()
        restarts = runs.get(key, -1) + 1
        runs[key] = restarts
        word, _, reason = state.strip().partition(" ")
        minutes = limit.strip()
        rows.append(SacctRow(parse_job_id(key), JobState.parse(word), exit_code.strip(),
                             _timestamp(start), _timestamp(end), int(elapsed or 0), _node(node),
                             restarts, reason, parse_memory_mb(rss), parse_memory_mb(req),
                             float(minutes) * 60 if minutes.isdigit() else None))
    if duplicates:
        return rows
    latest = {str(r.job_id): r for r in rows}  # later runs overwrite earlier ones
    return [r for r in rows if latest[str(r.job_id)] is r]


def parse_squeue(text: str) -> list[SqueueRow]:
    """Parse `squeue --noheader -o SQUEUE_FORMAT` output."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job, state, reason, node, used = line.split("|", 4)
        rows.append(SqueueRow(parse_job_id(job), JobState.parse(state), reason.strip(), _node(node),
                              parse_duration(used)))
    return rows


_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w/:]*)=")


def parse_scontrol(text: str) -> dict[str, str]:
    """Parse one `scontrol show job -o` record ('Key=value Key=value ...') into a dict.

    Values may hold '=' (TRES=cpu=1,mem=256M); a new key starts only after whitespace.
    """
    line = text.strip().splitlines()[0] if text.strip() else ""
    keys = list(_SCONTROL_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, match in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(line)
        out[match.group(1)] = line[match.end():end].strip()
    return out


# --- running commands -------------------------------------------------------------------------

def _fix_for(said: str) -> str | None:
    low = said.lower()
    return next((fix for pattern, fix in FIXES if pattern in low), None)


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the process that started us dies (Linux).

    An sbatch that outlived a killed launcher could create a job seconds later, after the next
    launcher had settled the launch's pending record as never submitted (jobs.submission)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)   # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def _run(argv: Sequence[str], *, stdin: str | None = None, cwd: str | os.PathLike | None = None,
         timeout: float = COMMAND_TIMEOUT_S, tied: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; a missing tool or a hang becomes a SlurmError.  Exit codes are the
    caller's business (some are not errors, e.g. squeue on a job that has left the queue).
    `tied`: the command dies with us (what submits must never outlive its launcher)."""
    try:
        return subprocess.run(list(argv), input=stdin, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_die_with_parent if tied else None)
    except FileNotFoundError:
        raise SlurmError(argv, f"{argv[0]}: command not found",
                         fix="install the Slurm client tools, or run with --executor local") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(argv, f"no answer within {timeout:.0f}s",
                         fix="slurmctld is overloaded or down; try again later") from None


def _check(argv: Sequence[str], done: subprocess.CompletedProcess[str]) -> str:
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise SlurmError(argv, said, fix=_fix_for(said), returncode=done.returncode)
    return done.stdout


def _ids(job_ids: Iterable[str | JobId]) -> str:
    return ",".join(str(j) for j in job_ids)


def sbatch(script: str, options: Sequence[str] = (), *, cwd: str | os.PathLike | None = None,
           retries: int = 8, backoff_s: float | None = None,
           existing: Callable[[], str | None] | None = None) -> str:
    """Submit `script` (its text, fed on stdin) with `sbatch --parsable *options`; return the job id.

    When Slurm is busy or the user is at a submit limit, wait (doubling, up to MAX_BACKOFF_S) and
    try again, up to `retries` more times, saying on stderr what it waits for. A try that timed out
    may still have created the job: `existing()` (a look-up by the job's name) is asked before
    each retry, and its job id is returned instead of submitting a second copy.
    """
    argv = ["sbatch", "--parsable", *options]
    delay = BACKOFF_S if backoff_s is None else backoff_s
    attempt = 0
    while True:
        done = _run(argv, stdin=script, cwd=cwd, tied=True)
        if done.returncode == 0:
            # --parsable prints "id" or "id;cluster".
            return done.stdout.strip().splitlines()[-1].split(";", 1)[0].strip()
        said = (done.stderr or done.stdout).strip()
        transient = any(t in said.lower() for t in TRANSIENT)
        if not transient:
            raise SlurmError(argv, said, fix=_fix_for(said), returncode=done.returncode)
        if attempt == retries:
            raise SlurmError(argv, said, returncode=done.returncode,
                             fix=f"Slurm stayed busy or full through {retries + 1} tries; wait for "
                                 "queued jobs to finish, then `sweep resume` submits the rest")
        wait = min(delay * 2 ** attempt, MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
        attempt += 1
        found = existing() if existing is not None else None
        if found:
            return found
        reason = said.splitlines()[-1] if said else "no answer"
        print(f"sbatch: Slurm said '{reason}'; trying again in {wait:.0f}s ({attempt}/{retries})",
              file=sys.stderr, flush=True)
        time.sleep(wait)


def current_user() -> str | None:
    """The user whose jobs squeue should list; None (all users, filtered by id) without a passwd entry."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return None


def jobs_named(names: Sequence[str], *, since: str | None = None) -> dict[str, list[str]]:
    """{job name: parent job ids} of this user's jobs with those names: squeue for the live ones,
    sacct (since `since`, an ISO time; default the last 2 days) for those that already ended.

    How a submission whose launcher died before it learnt the job id is found again: its name
    holds its token. Where accounting is off, only squeue answers (a job that ended is then
    not found; its trials' results say whether they ran).
    """
    if not names:
        return {}
    found: dict[str, list[str]] = {}

    def add(job: str, name: str) -> None:
        parent = parse_job_id(job).job
        if name in names and parent not in found.setdefault(name, []):
            found[name].append(parent)

    argv = ["squeue", "--noheader", "-o", "%i|%j", "--name", ",".join(names)]
    user = current_user()
    if user:
        argv += ["-u", user]
    for line in _check(argv, _run(argv)).splitlines():
        if "|" in line:
            add(*line.strip().split("|", 1))
    start = (since or "now-2days").replace("Z", "")
    argv = ["sacct", "--parsable2", "--noheader", "--allocations", "--format", "JobID,JobName",
            "--name", ",".join(names), "--starttime", start[:19]]
    done = _run(argv)
    if done.returncode == 0:
        for line in done.stdout.splitlines():
            if "|" in line:
                add(*line.strip().split("|", 1))
    return found


def queued_tasks(user: str | None) -> list[JobId]:
    """Every array task and job this user has pending or running, one id each (what a
    MaxSubmitJobs limit counts), from one squeue call."""
    argv = ["squeue", "--noheader", "--array", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED",
            "-o", "%i"]
    if user:
        argv += ["-u", user]
    return [parse_job_id(line) for line in _check(argv, _run(argv)).splitlines() if line.strip()]


def squeue(job_ids: Sequence[str | JobId] | None = None, *, user: str | None = None) -> list[SqueueRow]:
    """Jobs still known to slurmctld (pending, running, completing), in one call.

    Pending array tasks stay grouped ('12_[3-7%2]').  Jobs that left the queue are simply absent.
    """
    if job_ids is not None and not job_ids:
        return []
    argv = ["squeue", "--noheader", "-o", SQUEUE_FORMAT]
    if job_ids is not None:
        argv += ["-j", _ids(job_ids)]
    if user is not None:
        argv += ["-u", user]
    done = _run(argv)
    if done.returncode != 0 and "invalid job id" in done.stderr.lower():
        return []  # every id asked for has left the queue
    return parse_squeue(_check(argv, done))


def sacct(job_ids: Sequence[str | JobId], *, duplicates: bool = False,
          steps: bool = False) -> list[SacctRow]:
    """Accounting rows for `job_ids` (pass parent array ids: one call covers every task).

    `duplicates`: every run of a requeued job (sacct -D) instead of the latest one.
    `steps`: also the .batch/.extern/.N step rows.  Raises AccountingDisabled where sacct is off.
    """
    if not job_ids:
        return []
    argv = ["sacct", "--parsable2", "--noheader", "--duplicates", "--format", ",".join(SACCT_FIELDS),
            "--jobs", _ids(job_ids)]
    if not steps:
        argv.append("--allocations")
    done = _run(argv)
    said = (done.stderr or "").strip()
    # Accounting off, or slurmdbd unreachable: the caller can still use squeue + result files.
    if "accounting storage is disabled" in said.lower() or (
            done.returncode != 0 and ("slurmdbd" in said.lower() or "database" in said.lower())):
        raise AccountingDisabled(argv, said, fix=_fix_for("accounting storage is disabled"),
                                 returncode=done.returncode)
    _check(argv, done)
    return parse_sacct(done.stdout, duplicates=duplicates)


def scontrol_show_job(job_id: str | JobId) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict (first record: an array parent lists every task)."""
    argv = ["scontrol", "show", "job", "-o", str(job_id)]
    return parse_scontrol(_check(argv, _run(argv)))


def scontrol_requeue(job_ids: Sequence[str | JobId], *, hold: bool = False) -> None:
    """Put jobs back in the queue keeping their ids (SLURM_RESTART_COUNT counts the restarts)."""
    if not job_ids:
        return
    argv = ["scontrol", "requeuehold" if hold else "requeue", _ids(job_ids)]
    # A task requeues itself inside its grace period: a busy controller (socket time-out) must not
    # cost it its place, so transient refusals are retried a few times, briefly.
    for attempt in range(REQUEUE_RETRIES + 1):
        done = _run(argv, timeout=30)
        said = (done.stderr or done.stdout).strip().lower()
        if done.returncode == 0 or attempt == REQUEUE_RETRIES or not any(t in said for t in TRANSIENT):
            _check(argv, done)
            return
        time.sleep(BACKOFF_S * 2 ** attempt)


def scontrol_update(job_id: str | JobId, **fields: object) -> None:
    """`scontrol update JobId=ID Key=value ...`, e.g. scontrol_update("12_3", TimeLimit="1:00:00")."""
    for key in fields:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
            raise ValueError(f"not a scontrol job field: {key!r}")
    argv = ["scontrol", "update", f"JobId={job_id}", *(f"{k}={v}" for k, v in fields.items())]
    _check(argv, _run(argv))


def scancel(job_ids: Sequence[str | JobId], *, signal: str | None = None, batch: bool = False) -> None:
    """Cancel (or, with `signal`, just signal) jobs.  Jobs already gone are not an error."""
    if not job_ids:
        return
    argv = ["scancel"]
    if signal:
        argv.append(f"--signal={signal}")
    if batch:
        argv.append("--batch")
    argv += [str(j) for j in job_ids]
    done = _run(argv)
    said = (done.stderr or "").strip()
    harmless = ("already completing or completed", "invalid job id")
    if done.returncode != 0 and not all(any(h in line.lower() for h in harmless)
                                         for line in said.splitlines() if line.strip()):
        _check(argv, done)
