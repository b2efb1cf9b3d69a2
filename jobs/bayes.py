"""Bayesian search and early stopping across array tasks: one Optuna study in the sweep directory.

Every array task is its own process on its own node, so the study lives in a journal file
(`<sweep>/optuna.journal`, Optuna's JournalStorage, file backend) that every task appends to
behind an O_EXCL lock file (`JournalFileOpenLock`, safe on NFS where flock is not).

    ask(sweep_dir, settings, trial)   at task start: the params this trial runs with
    tell(sweep_dir, settings, trial, status, value)   at task end, once, whatever the outcome
    report(step, value) -> bool       from the running program (via jobs.runtime.report):
                                      record an intermediate value, say whether to stop

Why the trial number is kept in `trials/<id>/optuna.json`: Optuna's heartbeat (which fails
stale trials) does not work with ask/tell, and a preempted task comes back under the same
job id. Storing the number lets a requeued task carry on with the same Optuna trial and the
same params instead of asking for a new point and leaving a RUNNING trial behind forever.

Why asks are serialised (`<sweep>/optuna.ask.lock`): a sampler only spreads parallel asks
(GP's q-batch EI over running trials, TPE's constant liar) if it sees the other running
trials' params; two asks at the same instant would both see neither and propose the same
point. A lock makes each ask see every earlier one. Asking is short next to a trial.

Random (and grid) sweeps with a pruner use the same study with fixed params: their trials
are asked without a search space, which gives the pruner its intermediate values.

Stdlib at import: the task runner imports this module on every start; Optuna (and, for the
GP sampler, torch) are imported only where a study is opened.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

from jobs import manifest as mf
from jobs.atomic import write_json_atomic
from jobs.manifest import Settings, Trial
from jobs.profile import ClusterProfile
from jobs.trial_state import TrialState

JOURNAL = "optuna.journal"
ASK_LOCK = "optuna.ask"        # JournalFileOpenLock adds ".lock"
TRIAL_FILE = "optuna.json"
# A lock older than this belongs to a task that died (preempted or OOM-killed mid-ask): break
# it. A slow ask outliving it costs at worst one duplicate point, never a broken journal.
ASK_LOCK_GRACE_S = 60
# What a result status tells Optuna (anything else is a failure the sampler should not learn from).
_STATES = {TrialState.COMPLETED: "COMPLETE", TrialState.PRUNED: "PRUNED"}


def journal_path(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / JOURNAL


def trial_file(sweep_dir: str | os.PathLike, trial_id: str) -> Path:
    return mf.trial_dir(sweep_dir, trial_id) / TRIAL_FILE


def read_trial_file(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("number"), int) else None


# --- the study -------------------------------------------------------------------------------

def storage(sweep_dir: str | os.PathLike) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(journal_path(sweep_dir))
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def task_seed(settings: Settings, trial: Trial | None) -> int:
    """Sampler seed for one task: reproducible, and different per trial so that start-up
    random points (and GP restarts) differ between tasks that ask one after another."""
    index = trial.index if trial else 0
    return zlib.crc32(f"{settings.seed}:{settings.name}:{index}".encode())


def load_study(sweep_dir: str | os.PathLike, settings: Settings, *, seed: int = 0) -> Any:
    """Open (or create) the sweep's study with the sweep's sampler and pruner."""
    import optuna

    from search import optuna_space as osp

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.method == "bayes":
        sampler = osp.make_sampler(settings.sampler, settings.space, seed=seed, options=settings.search_options)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)  # never samples: params are fixed
    direction = "minimize" if settings.goal == "minimize" else "maximize"
    return optuna.create_study(study_name=settings.name or "sweep", storage=storage(sweep_dir),
                               sampler=sampler, pruner=osp.make_pruner(settings.pruner),
                               direction=direction, load_if_exists=True)


@contextlib.contextmanager
def ask_lock(sweep_dir: str | os.PathLike) -> Iterator[None]:
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(str(Path(sweep_dir) / ASK_LOCK), grace_period=ASK_LOCK_GRACE_S)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _stored_trial(study: Any, number: int) -> Any | None:
    """The FrozenTrial with this number, or None (journal replaced / number unknown)."""
    try:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        return study._storage.get_trial(trial_id)
    except KeyError:
        return None


def ask(sweep_dir: str | os.PathLike, settings: Settings, trial: Trial) -> dict[str, Any]:
    """The params `trial` runs with; call at task start.

    A task that already holds an unfinished Optuna trial (requeued, preempted, resubmitted)
    gets that trial's params back. Otherwise a new Optuna trial is asked: from the search
    space for bayes sweeps (the spec's centre first), with the trial's own params otherwise.
    """
    from search import optuna_space as osp

    path = trial_file(sweep_dir, trial.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = read_trial_file(path)
    bayes = settings.method == "bayes"
    study = load_study(sweep_dir, settings, seed=task_seed(settings, trial))
    if stored is not None:
        frozen = _stored_trial(study, stored["number"])
        if frozen is not None and not frozen.state.is_finished():
            return dict(stored.get("params", {}))
    space = settings.space
    with ask_lock(sweep_dir):
        if bayes:
            center = osp.center_point(space)
            # The first ask of the study enqueues the centre (Protein `mean`, CARBS search_center).
            if center and not study.get_trials(deepcopy=False):
                study.enqueue_trial(center, skip_if_exists=True)
            asked = study.ask(osp.search_space(space))
            params = {key: osp.from_optuna(dist, asked.params[key]) for key, dist in space.items()}
        else:
            asked = study.ask()
            params = dict(trial.params)
        asked.set_user_attr("sweep_trial_id", trial.id)
        asked.set_user_attr("sweep_trial_index", trial.index)
        write_json_atomic(path, {"study": study.study_name, "number": asked.number, "params": params})
    return params


def tell(sweep_dir: str | os.PathLike, settings: Settings, trial: Trial, result_status: str,
         value: float | None) -> None:
    """Finish the task's Optuna trial: completed with a value -> COMPLETE, pruned -> PRUNED
    (Optuna keeps its last reported value), anything else (failed, diverged, preempted, or
    completed without the metric) -> FAIL, which samplers leave out. Idempotent."""
    from optuna.trial import TrialState as OptunaState

    stored = read_trial_file(trial_file(sweep_dir, trial.id))
    if stored is None:
        return
    study = load_study(sweep_dir, settings, seed=task_seed(settings, trial))
    state = OptunaState[_STATES.get(result_status, "FAIL")]
    if state == OptunaState.COMPLETE and (value is None or not math.isfinite(value)):
        state = OptunaState.FAIL
    study.tell(stored["number"], value if state == OptunaState.COMPLETE else None, state=state,
               skip_if_finished=True)


# --- intermediate values and pruning (called inside the running program) ----------------------

_open: dict[str, Any] = {}   # trial dir -> (study, optuna trial id): one journal open per process


def report(step: int, value: float) -> bool:
    """Record `value` at `step` for the current trial; True when the pruner says stop.

    Reads the trial from SWEEP_DIR / SWEEP_TRIAL_DIR (set by jobs.run). Outside a study
    (no optuna.json: not a bayes or pruned sweep, or run by hand) it records nothing and
    returns False. `step` is in the units of the pruner's min_iter / max_iter.
    """
    sweep_dir, tdir = os.environ.get("SWEEP_DIR"), os.environ.get("SWEEP_TRIAL_DIR")
    if not sweep_dir or not tdir:
        return False
    path = Path(tdir) / TRIAL_FILE
    stored = read_trial_file(path)
    if stored is None:
        return False
    if tdir not in _open:
        study = load_study(sweep_dir, mf.read_settings(sweep_dir))
        frozen = _stored_trial(study, stored["number"])
        if frozen is None:
            return False
        _open[tdir] = (study, frozen._trial_id)
    study, trial_id = _open[tdir]
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        study._storage.set_trial_intermediate_value(trial_id, int(step), float(value))
    except UpdateFinishedTrialError:
        return False
    should_stop = bool(study.pruner.prune(study, study._storage.get_trial(trial_id)))
    if should_stop:
        write_json_atomic(path, {**stored, "pruned_at_step": int(step)})
    return should_stop


# --- what pruning saved ----------------------------------------------------------------------

def gpus_per_task(cluster: ClusterProfile) -> int:
    """GPUs each task holds: the count of the GPU entry of the gres it asks for (`gpu:2`, `gpu:a100:1`,
    `gpu:4,tmpfs:10G`), which for a trial of gpus_per_trial processes is that many
    (ClusterProfile.task_request); 1 if unsaid."""
    gres = dict(cluster.task_request())["gres"]
    for entry in (gres or "").split(","):
        parts = entry.strip().split(":")
        if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
            return max(1, int(parts[-1]))
    return 1


def gpu_hours_saved(settings: Settings, results: Iterable[dict[str, Any]]) -> float:
    """Estimated GPU-hours the pruner saved: for each pruned trial that stopped at step r of
    max_iter after t seconds, (max_iter - r) / r * t, assuming steps cost the same throughout.

    `results` are result.json objects; a pruned trial's "results" carries "pruned_at_step"
    (jobs.runtime adds it). max_iter is the pruner's (or W&B's min_iter * eta**s); without one,
    the longest any trial of the sweep ran (its "pruned_at_step" or "last_step").
    """
    rows = [r for r in results if isinstance(r, dict)]
    _, full = settings.pruner.resource_bounds()
    if full is None:
        steps = [(r.get("results") or {}).get(k) for r in rows for k in ("pruned_at_step", "last_step")]
        steps = [s for s in steps if isinstance(s, (int, float))]
        full = max(steps) if steps else None
    if not full:
        return 0.0
    seconds = 0.0
    for r in rows:
        reached = (r.get("results") or {}).get("pruned_at_step")
        runtime = r.get("runtime_s")
        if r.get("status") != TrialState.PRUNED or not isinstance(reached, (int, float)) or reached <= 0 \
                or not isinstance(runtime, (int, float)):
            continue
        seconds += max(0.0, (full - reached) / reached) * runtime
    return seconds * gpus_per_task(settings.cluster) / 3600.0
