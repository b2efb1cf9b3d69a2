"""Why a trial did not complete, in one line, with the fix where there is one.

    explain_exit(returncode, log_tail)   what the runner records for a failed run: the exit code
                                         (or the signal) and the program's last meaningful line
    cause_of(trial_status, sweep_dir)    what `sweep status`, `sweep report` and `sweep collect`
                                         show for every trial that did not complete
    headline(error)                      an error in one line

Out of memory is read from what Slurm leaves: sacct's OUT_OF_MEMORY state where cgroups enforce
memory; elsewhere (OverMemoryKill) a FAILED task killed by signal 9 whose Slurm output says
"exceeded memory limit", or whose MaxRSS reached what it asked for.
"""
from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

# Lines that say nothing about what went wrong: our markers, Hydra's hint, a traceback's frames.
_NOISE_PREFIXES = ("=== ", "Traceback (most recent call last)", "Set the environment variable HYDRA_FULL_ERROR",
                   "File \"", "  File \"", "During handling of the above exception",
                   "The above exception was the direct cause")
_OOM_WORDS = ("exceeded memory limit", "out of memory", "oom-kill", "oom_kill", "memory cgroup out of memory")
MEM_FIX = "raise `mem:` in the cluster profile or the sweep's resources (or pass --mem)"
TIME_FIX = "raise `time:` in the cluster profile or the sweep's resources (or pass --time), or checkpoint more often"


@dataclass(frozen=True)
class Cause:
    kind: str          # oom | time_limit | cancelled | node_fail | preempted | program | diverged | pruned | lost
    #                    | stopped
    summary: str       # one line
    fix: str | None = None

    def text(self) -> str:
        return f"{self.summary}; {self.fix}" if self.fix else self.summary


def last_meaningful_line(text: str | None) -> str | None:
    """The last line of a log that says something (not a marker, a frame or a hint)."""
    for line in reversed((text or "").splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith(_NOISE_PREFIXES) or line.startswith("    "):
            continue
        return stripped[:300]
    return None


def headline(error: str | None) -> str:
    """An error in one line: its first, or for an error written as a bare traceback (older results)
    its last meaningful line; "" for none."""
    error = (error or "").strip()
    first = error.splitlines()[0] if error else ""
    if first.startswith(_NOISE_PREFIXES):
        first = last_meaningful_line(error) or first
    return first


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "?"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


def explain_exit(returncode: int, tail: str | None) -> str:
    """'exit code 1: ValueError: lr must be positive', 'killed by signal 9 (SIGKILL)', ...; for a
    trial under torchrun, the rank that failed first: 'rank 1: exit code 1: ValueError: ...'."""
    failure = rank_failure(tail)
    if failure is not None:
        return failure.text()
    line = last_meaningful_line(tail)
    head = _exit_text(returncode)
    return f"{head}: {line}" if line else head


# --- torchrun (jobs.torchrun) ------------------------------------------------------------------
# When a rank fails, torchrun's agent stops the others and ends with a ChildFailedError report whose
# "Root Cause" names the rank that failed first and its exit code; its own lines come last, so the
# last line of the log says nothing. With --tee (the runner's --role=rank) every rank's lines carry
# `[rank<i>]:` (`[default<i>]:` with a user's own --tee); without, the rank's last words are the
# lines just before the agent's first complaint.
_ROOT_CAUSE = "Root Cause (first observed failure):"
_RANK_PREFIX = re.compile(r"^\[[A-Za-z_]+?(\d+)\]:(.*)$")   # `[rank1]:`, never the report's `[1]:`
_AGENT_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S*torch/distributed/elastic/")
_C10_LOG = re.compile(r"^\[?[IW]\d{4} ")   # a rank's own info/warning lines from torch's C++ side


@dataclass(frozen=True)
class RankFailure:
    rank: int
    local_rank: int
    exitcode: int
    line: str | None     # the rank's last meaningful line

    def text(self) -> str:
        head = f"rank {self.rank}: {_exit_text(self.exitcode)}"
        return f"{head}: {self.line}" if self.line else head


def _report(text: str) -> tuple[list[str], list[str]] | None:
    """(the lines before torchrun's last failure report, the report's Root Cause block), or None."""
    lines = text.splitlines()
    at = max((i for i, line in enumerate(lines) if line.strip() == _ROOT_CAUSE), default=None)
    if at is None:
        return None
    block = []
    for line in lines[at + 1:]:
        if line.startswith("=" * 8):
            break
        if line.strip() and not re.fullmatch(r"\[\d+\]:", line.strip()):
            block.append(line)
    return lines[:at], block


def _before_agent(lines: list[str]) -> list[str]:
    """Unprefixed ranks: the lines before the agent's last run of complaints ('Sending process ...
    closing signal', 'failed (exitcode ...)'), which it logs as soon as a rank fails."""
    agent = {i for i, line in enumerate(lines) if _AGENT_LINE.match(line)}
    if not agent:
        return lines
    start = max(agent)
    while start - 1 in agent:
        start -= 1
    return lines[:start]


def _field(block: list[str], name: str) -> str | None:
    for line in block:
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def _rank_lines(lines: list[str], local_rank: int, *, strip: bool = True) -> list[str] | None:
    """The lines of one rank (without their prefix), or None when the ranks' lines carry no prefix."""
    out, prefixed = [], False
    for line in lines:
        found = _RANK_PREFIX.match(line)
        if found:
            prefixed = True
            if int(found.group(1)) == local_rank:
                out.append(found.group(2) if strip else line)
    return out if prefixed else None


def rank_failure(text: str | None) -> RankFailure | None:
    """The rank that failed first in a torchrun log, its exit code and its last meaningful line."""
    if not text or _ROOT_CAUSE not in text:
        return None
    found = _report(text)
    if found is None:
        return None
    before, block = found
    rank = re.match(r"(\d+)(?: \(local_rank: (\d+)\))?", _field(block, "rank") or "")
    code = re.match(r"(-?\d+)", _field(block, "exitcode") or "")
    if not rank or not code:
        return None
    local = int(rank.group(2) if rank.group(2) is not None else rank.group(1))
    own = _rank_lines(before, local)
    words = own if own is not None else _before_agent(before)
    line = last_meaningful_line("\n".join(w for w in words if not _C10_LOG.match(w) and not _AGENT_LINE.match(w)))
    return RankFailure(int(rank.group(1)), local, int(code.group(1)), line)


def rank_tail(text: str, lines: int) -> str:
    """A failed torchrun trial's error tail: the last lines of the rank that failed first, then the
    Root Cause block of torchrun's report. Any other text: its last `lines` lines."""
    failure = rank_failure(text)
    found = _report(text) if failure is not None else None
    if found is None:
        return "\n".join(text.rstrip().splitlines()[-lines:])
    before, block = found
    block = [_ROOT_CAUSE, *block]
    own = _rank_lines(before, failure.local_rank, strip=False)
    words = own if own is not None else _before_agent(before)
    return "\n".join(words[-max(1, lines - len(block)):] + block)


def _slurm_log_says_oom(sweep_dir: str | os.PathLike | None, task: str | None) -> bool:
    if sweep_dir is None or not task:
        return False
    try:
        with open(os.path.join(os.fspath(sweep_dir), "logs", f"{task}.out"), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace").lower()
    except OSError:
        return False
    return any(w in text for w in _OOM_WORDS)


def _user(reason: str) -> str | None:
    """sacct's 'by 1000' -> the user's name (or the uid)."""
    if not reason.startswith("by "):
        return None
    uid = reason[3:].strip()
    try:
        import pwd

        return pwd.getpwuid(int(uid)).pw_name
    except (ImportError, KeyError, ValueError):
        return uid


def summary_of(state: str, first: str, pruned_at: Any = None) -> str:
    """What a result alone says of a trial that did not complete (its error's headline `first`):
    the words `sweep status` and `sweep collect` share."""
    if state == "diverged":
        return f"diverged: {first or 'the loss went NaN/Inf'}"
    if state == "pruned":
        return f"pruned by the sweep's early stopping{f' at step {pruned_at}' if pruned_at is not None else ''}"
    return first or state


def cause_of(status: Any, sweep_dir: str | os.PathLike | None = None) -> Cause | None:
    """Why a trial (a jobs.state.TrialStatus) did not complete; None for completed or active ones."""
    from jobs.trial_state import TrialState

    state, live, result = status.state, status.live, status.result or {}
    first = headline(result.get("error") or status.error)
    if state in (TrialState.COMPLETED, TrialState.RUNNING, TrialState.PENDING, TrialState.UNSUBMITTED,
                 TrialState.WAITING):
        return None
    if state is TrialState.STOPPED:   # successive halving did not promote it (jobs.promote says why)
        return Cause("stopped", f"stopped: {status.reason or 'not promoted'}")
    if state is TrialState.DIVERGED:
        return Cause("diverged", summary_of(state, first), "lower the learning rate, or clip gradients")
    if state is TrialState.PRUNED:
        return Cause("pruned", summary_of(state, first, (result.get("results") or {}).get("pruned_at_step")))
    slurm_state = live.state if live is not None else None
    rss, req = (live.max_rss_mb, live.req_mem_mb) if live is not None else (None, None)
    signal9 = live is not None and (live.exit_code or "").endswith(":9")
    oom = slurm_state == "OUT_OF_MEMORY" or (state is TrialState.FAILED and (
        _slurm_log_says_oom(sweep_dir, status.slurm_id) or
        (signal9 and rss is not None and req is not None and rss >= 0.9 * req)))
    if oom:
        used = f" (used {rss:.0f} MB of {req:.0f} MB)" if rss is not None and req is not None else \
            (f" (asked for {req:.0f} MB)" if req is not None else "")
        return Cause("oom", f"out of memory{used}", MEM_FIX)
    if state is TrialState.TIMEOUT:
        limit = f" ({_clock(live.time_limit_s)})" if live is not None and live.time_limit_s else ""
        return Cause("time_limit", first or f"time limit reached{limit}", TIME_FIX)
    if state is TrialState.CANCELLED:
        who = _user(live.reason) if live is not None and live.reason else None
        # sacct's "CANCELLED by <uid>" names who cancelled it; the runner's own line cannot.
        return Cause("cancelled", f"cancelled by {who}" if who else (first or "cancelled"),
                     "`sweep resume --retry-cancelled` runs it again")
    if slurm_state == "NODE_FAIL":
        return Cause("node_fail", "its node failed", "`sweep resume` runs it again")
    if state is TrialState.PREEMPTED:
        runs = f", requeued {live.restarts} time(s)" if live is not None and live.restarts else ""
        return Cause("preempted", (first or "preempted") + runs, "`sweep resume` runs it again")
    if state is TrialState.LOST:
        return Cause("lost", "submitted, but neither Slurm nor the sweep directory knows it any more",
                     "`sweep resume` submits it again")
    if first:
        return Cause("program", first, "see `sweep logs` for the whole log")
    if slurm_state:
        return Cause("program", f"Slurm says {slurm_state} (exit {live.exit_code or '?'}) and the trial wrote no result",
                     "see `sweep logs` for its Slurm output")
    return Cause("program", "ended without a result", "see `sweep logs`")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
