"""Successive halving across jobs (method asha): which trials climb a rung, decided and submitted
under the sweep's lock by the array tasks that finish, and by `sweep resume`.

    decide(entries, eta=, goal=) -> [Promotion]     pure: rung results in, promotions out
    held_states(manifest, states, values)           what a trial that waits for a promotion is now:
                                                    waiting (it may still climb) or stopped
    ladder(manifest, states) -> [Rung]              per rung: trials, promoted, waiting, stopped
    hold_higher_rungs(manifest) -> Manifest         at launch: every rung above 0 waits (`held`)
    promote_in(session) -> [trial indices]          one pass, under a lock the caller holds (resume)
    after_task(sweep_dir, settings, trials)         the end of an array task (jobs.run)

ASHA's rule (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020): a
trial of rung r climbs to rung r+1 as soon as it ranks in the top floor(n / eta) of the n completed
rung-r results so far, unless it climbed already. Promotions are never taken back, so an early
promotion can go to a trial that later results would have outranked: that is the price of never
waiting for a whole rung. Trials rank against their own environment only.

Never twice: the higher rungs' trials are `held` in the manifest (jobs.manifest). A pass moves the
trials it promotes from `held` to the waiting list in one write, then submits them through
jobs.submission (recorded before sbatch, confirmed after), all under the sweep's lock; the next pass
finds them no longer held. A pass killed between the two writes leaves them waiting for room, which
the top-up or `sweep resume` submits.

Every promotion comes from a new completed result, so a task whose trial completed below the top
rung must see a pass read its result. Tasks that finish together would queue for the lock and pass
one after another, each reading every result: instead each touches the `promote` marker after its
result is written and waits for the lock; the pass that gets it removes the marker *before* reading
the results, so a task that finds the marker gone once it holds the lock knows that a pass has read
its result, and lets go at once. A burst of finishing tasks costs one or two passes.

Stdlib only at import: every array task of an asha sweep imports this module.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from jobs.manifest import Manifest, Settings, Trial
    from jobs.submission import Session

from jobs import manifest as mf
from jobs.results import finite_metric, read_result, read_results
from jobs.trial_state import TrialState

# The method's name and defaults, as launcher.plans.asha writes them (jobs never imports launcher).
METHOD = "asha"
ETA_KEY, DEFAULT_ETA = "eta", 3
# In the sweep directory while a completed result waits for a promotion pass to read it.
MARKER = "promote"
# In the sweep directory: one line per promotion, in the order they were decided (what the report
# and the tests read): {"time", "read_at", "rung", "parent", "child", "rank", "of", "value"}.
LOG = "promotions.jsonl"
# How long a finishing task waits for the sweep's lock before leaving its promotions to the next
# finishing task or `sweep resume` (passes take well under a second; the top-up may take longer).
LOCK_WAIT_S = 300.0


def _say(message: str) -> None:
    print(f"[jobs.promote] {message}", file=sys.stderr, flush=True)


def eta_of(settings: Settings) -> int:
    return int(settings.search_options.get(ETA_KEY) or DEFAULT_ETA)


def top_rung(settings: Settings) -> int:
    return len(settings.stages.values) - 1 if settings.stages else 0


# --- the decision ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A trial below the top rung, as the decision sees it."""

    index: int                 # the trial (its rung-r run)
    rung: int
    child: int                 # its trial at rung r+1
    value: float | None        # its completed result's metric; None while it has none
    promoted: bool = False     # the child left `held` already
    group: str | None = None   # its environment: a trial ranks among its own environment's only


@dataclass(frozen=True)
class Promotion:
    child: int                 # the trial that now runs rung `rung`
    parent: int                # its run of the rung below, whose checkpoint it starts from
    rung: int
    rank: int                  # 1 = best of the rung below
    of: int                    # completed results the rung below had


def decide(entries: Iterable[Entry], *, eta: int, goal: str) -> list[Promotion]:
    """ASHA's promotions now: in each (rung, group), the top floor(n / eta) of its n results that have
    not climbed yet. Higher rungs first, then best first (the order ASHA hands out work in)."""
    groups: dict[tuple[int, str | None], list[Entry]] = {}
    for e in entries:
        if e.value is not None:
            groups.setdefault((e.rung, e.group), []).append(e)
    sign = -1.0 if goal == "maximize" else 1.0
    out = []
    for (rung, _), done in groups.items():
        ranked = sorted(done, key=lambda e: (sign * e.value, e.index))   # ties: the earlier trial
        for rank, e in enumerate(ranked[:len(ranked) // eta], 1):
            if not e.promoted:
                out.append(Promotion(child=e.child, parent=e.index, rung=rung + 1, rank=rank, of=len(ranked)))
    return sorted(out, key=lambda p: (-p.rung, p.rank, p.parent))


def values_from(manifest: Manifest, results: dict[str, dict[str, Any]]) -> dict[int, float | None]:
    """{trial index: its metric} for trials with a completed result (None: no finite metric)."""
    metric = manifest.settings.metric
    out: dict[int, float | None] = {}
    for t in manifest.trials:
        result = results.get(t.id)
        if result is not None and TrialState.of_result(result) is TrialState.COMPLETED:
            out[t.index] = finite_metric(result.get("results"), metric)
    return out


def entries(manifest: Manifest, values: dict[int, float | None]) -> list[Entry]:
    held = set(manifest.held_indices())
    child_of = {t.parent: t.index for t in manifest.trials if t.parent}
    return [Entry(index=t.index, rung=t.stage, child=child_of[t.id], value=values.get(t.index),
                  promoted=child_of[t.id] not in held, group=t.environment)
            for t in manifest.trials if t.id in child_of]


# --- what status shows -----------------------------------------------------------------------------

def held_states(manifest: Manifest, states: dict[int, TrialState], values: dict[int, float | None]
                ) -> dict[int, tuple[TrialState, str]]:
    """{held trial index: (WAITING or STOPPED, why)}. Stopped: its run of the rung below ended
    without completing, or that rung is decided (every trial of it ended) and ranks it out."""
    held = set(manifest.held_indices())
    if not held:
        return {}
    settings = manifest.settings
    eta = eta_of(settings)
    due = {p.child: p for p in decide(entries(manifest, values), eta=eta, goal=settings.goal)}
    by_id = manifest.by_id()
    state = dict(states)
    members: dict[tuple[int, str | None], list[int]] = {}
    for t in manifest.trials:
        members.setdefault((t.stage, t.environment), []).append(t.index)
    decided: dict[tuple[int, str | None], bool] = {}
    out: dict[int, tuple[TrialState, str]] = {}
    # Rung by rung: a held trial's parent may be held too, and is classified first.
    for t in sorted(manifest.trials, key=lambda t: (t.stage, t.index)):
        parent = by_id.get(t.parent or "")
        if t.index not in held or parent is None:
            continue
        below, group = t.stage - 1, (t.stage - 1, t.environment)
        before = state.get(parent.index, TrialState.UNSUBMITTED)
        if group not in decided:
            decided[group] = all(state.get(i, TrialState.UNSUBMITTED).is_ended() for i in members[group])
        if t.index in due:
            p = due[t.index]
            what = (TrialState.WAITING, (f"promotion due (rank {p.rank} of {p.of} at rung {below}): the next "
                                         "finishing task or `sweep resume` submits it"))
        elif before is TrialState.STOPPED:
            what = (TrialState.STOPPED, f"not promoted to rung {below}")
        elif before.is_final() and before is not TrialState.COMPLETED:
            what = (TrialState.STOPPED, f"its rung-{below} run ended {before}")
        elif before is TrialState.COMPLETED and decided[group]:
            what = (TrialState.STOPPED, f"not in the top 1/{eta} of rung {below}")
        elif before is TrialState.COMPLETED:
            what = (TrialState.WAITING, f"rung {below} ranks it as more of its results come in")
        elif before.is_ended():
            what = (TrialState.WAITING, f"its rung-{below} run {before}: `sweep resume` runs it again")
        else:
            what = (TrialState.WAITING, f"waits for its rung-{below} run ({before})")
        state[t.index] = what[0]
        out[t.index] = what
    return out


@dataclass(frozen=True)
class Rung:
    """One rung of the ladder. Of the trials that entered it: how many climbed to the next rung
    (promoted), may still (waiting) or never will (stopped); None at the top rung."""

    rung: int
    budget: Any
    trials: int
    completed: int
    active: int
    promoted: int | None
    waiting: int | None
    stopped: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ladder(manifest: Manifest, states: dict[int, TrialState]) -> list[Rung]:
    """The rungs as they stand, from each trial's state (held trials: WAITING or STOPPED)."""
    settings = manifest.settings
    if settings.method != METHOD or settings.stages is None:
        return []
    held = set(manifest.held_indices())
    child_of = {t.parent: t.index for t in manifest.trials if t.parent}
    top = top_rung(settings)
    out = []
    for r, budget in enumerate(settings.stages.values):
        entered = [t for t in manifest.trials if t.stage == r and t.index not in held]
        got = [states.get(t.index, TrialState.UNSUBMITTED) for t in entered]
        promoted = waiting = stopped = None
        if r < top:
            kids = [child_of[t.id] for t in entered if t.id in child_of]
            promoted = sum(k not in held for k in kids)
            waiting = sum(states.get(k) is TrialState.WAITING for k in kids)
            stopped = sum(states.get(k) is TrialState.STOPPED for k in kids)
        out.append(Rung(rung=r, budget=budget, trials=len(entered), completed=got.count(TrialState.COMPLETED),
                        active=sum(s.is_active() for s in got), promoted=promoted, waiting=waiting, stopped=stopped))
    return out


# --- promoting -------------------------------------------------------------------------------------

def hold_higher_rungs(manifest: Manifest) -> Manifest:
    """At launch: every trial above rung 0 waits for a promotion (other methods: unchanged)."""
    if manifest.settings.method != METHOD:
        return manifest
    return manifest.replace(held=mf.compact_ranges(t.index for t in manifest.trials if t.stage > 0))


def _room(session: Session, wanted: int) -> int:
    """Array tasks this user may still queue (Slurm: one squeue call); elsewhere all of them."""
    if not session.backend.uses_slurm:
        return wanted
    from jobs.topup import queue_room

    return queue_room(session.manifest.settings.cluster.max_queued_jobs, session.manifest.job_ids())[0]


def promote_in(session: Session, *, submit: bool = True, budget: int | None = None) -> list[int]:
    """One promotion pass under the lock `session` holds: decide from every result written so far,
    record, submit what fits the queue (`budget`: tasks; default, what squeue says is left).
    Returns the indices of the trials promoted. `submit=False` only records (they then wait for
    room, and the top-up or `sweep resume` submits them)."""
    (session.sweep_dir / MARKER).unlink(missing_ok=True)   # before reading: see the module docstring
    manifest = session.manifest
    settings = manifest.settings
    if settings.method != METHOD or not manifest.held:
        return []
    top = top_rung(settings)
    read_at = time.time()
    results = read_results(session.sweep_dir, [t.id for t in manifest.trials if t.stage < top])
    values = values_from(manifest, results)
    promotions = decide(entries(manifest, values), eta=eta_of(settings), goal=settings.goal)
    if not promotions:
        return []
    by_index = {t.index: t for t in manifest.trials}
    chosen = [by_index[p.child] for p in promotions]
    promoted = {t.index for t in chosen}
    # The decision, in one write: out of `held`, onto the waiting list.
    waiting = set(manifest.unsubmitted_indices()) | promoted
    session.save(manifest.replace(held=mf.compact_ranges(set(manifest.held_indices()) - promoted),
                                  unsubmitted=mf.compact_ranges(waiting)))
    _log(session.sweep_dir, promotions, values, read_at)
    from jobs.submission import cancel_requested

    if submit and not cancel_requested(session.sweep_dir):
        room = _room(session, len(chosen)) if budget is None else budget
        plan = session.backend.plan(chosen, session.ref, budget=max(0, room), pack=settings.pack,
                                    max_parallel=settings.max_parallel)
        session.submit(plan, unsubmitted=sorted(waiting - set(plan.planned)))
        left = len(chosen) - len(plan.planned)
        _say(f"promoted {len(chosen)} trial(s): " + ", ".join(f"{p.parent}->{p.child} (rung {p.rung})"
                                                             for p in promotions)
             + (f"; {left} wait for queue room" if left else ""))
    else:
        _say(f"promoted {len(chosen)} trial(s); they wait to be submitted (`sweep resume` submits them)")
    return sorted(promoted)


def _log(sweep_dir: Path, promotions: list[Promotion], values: dict[int, float | None], read_at: float) -> None:
    """Append the pass's promotions to promotions.jsonl (under the lock: lines never interleave)."""
    now = time.time()
    lines = "".join(json.dumps({"time": now, "read_at": read_at, "rung": p.rung, "parent": p.parent, "child": p.child,
                                "rank": p.rank, "of": p.of, "value": values.get(p.parent)}) + "\n"
                    for p in promotions)
    try:
        with open(sweep_dir / LOG, "a") as f:
            f.write(lines)
    except OSError as exc:   # the manifest holds the decision; this is its history
        _say(f"could not write {sweep_dir / LOG}: {exc}")


def due(sweep_dir: str | os.PathLike, manifest: Manifest) -> list[Promotion]:
    """What a pass would promote now (`sweep resume --dry-run`); reads the result files."""
    if manifest.settings.method != METHOD or not manifest.held:
        return []
    results = read_results(sweep_dir, [t.id for t in manifest.trials if t.stage < top_rung(manifest.settings)])
    return decide(entries(manifest, values_from(manifest, results)), eta=eta_of(manifest.settings),
                  goal=manifest.settings.goal)


def after_task(sweep_dir: str | os.PathLike, settings: Settings, trials: list[Trial]) -> int:
    """At the end of an array task: make sure a promotion pass reads this task's results (module
    docstring: coalescing), and run it when nobody else has. Returns how many trials it promoted."""
    sweep_dir = Path(sweep_dir)
    top = top_rung(settings)
    try:
        earned = [t for t in trials if t.stage < top and
                  TrialState.of_result(read_result(sweep_dir, t.id) or {}) is TrialState.COMPLETED]
        if not earned:
            return 0   # only a new completed result below the top rung can earn a promotion
        marker = sweep_dir / MARKER
        marker.touch()
        from jobs.lock import LockBusy
        from jobs.submission import open_sweep

        from jobs.runtime import slurm_task_id

        who = f"promotions from task {slurm_task_id() or '?'}"
        try:
            with open_sweep(sweep_dir, who, timeout=LOCK_WAIT_S) as session:
                if not marker.exists():
                    return 0   # a pass that began after our result was written has read it
                return len(promote_in(session, submit=settings.cluster.submit_from_tasks))
        except LockBusy:
            _say(f"the sweep stayed busy for {LOCK_WAIT_S:.0f} s; the next finishing task or "
                 f"`sweep resume {sweep_dir}` promotes")
            return 0
    except Exception as exc:  # noqa: BLE001 - a failed promotion must not fail the trial that ended
        _say(f"could not promote: {exc}; `sweep resume {sweep_dir}` promotes")
        return 0
