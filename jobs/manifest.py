"""manifest.json: the sweep directory's source of truth, as typed records read and written here only.

    Manifest      settings + trials + submissions + what waits for queue room
    Settings      what the launch fixed: command, metric, method, space, limits ... (never changes)
    Trial         one planned run (plans make them, backends submit them, the runner runs them)
    Submission    one array (or local pool run) as recorded: pending before sbatch, then its job id
    Stages        progressive stages: the key, its values, how a stage names its parent checkpoint

On disk (version 2), one JSON object, written atomically on every change:

    {"version": 2, <every Settings field>, "trials": [Trial...], "submissions": [Submission...],
     "unsubmitted": "1000-5999"}

Successive halving (method asha) adds "held": "64-191", the higher rungs' trials that wait for a
promotion (jobs.promote). Neither the top-up nor `sweep resume` submits them; a promotion moves
them out, under the sweep's lock. Such a manifest is written as version 3, so that an older
slurmsweep refuses it instead of running every rung; without held trials it is version 2 as before.

Version 1 manifests (no "version"; "schema": 1) are still read: local runs recorded as job id
"local:<pid>" become `pid`, and "checkpoint_key" becomes `stages`. Stdlib only: every array task
may read this module. The records are namedtuples rather than dataclasses: importing `dataclasses`
(it imports `inspect`) and generating each class's methods cost every array task's start ~15 ms.
They are never changed in place: `x._replace(...)` (`Manifest.replace`) makes a changed copy.
"""
from __future__ import annotations

import calendar
import json
import os
import time
from collections import namedtuple
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Iterable

from jobs.atomic import write_json_atomic, write_text_atomic
from jobs.errors import UserError
from jobs.profile import ClusterProfile
from search.dist import Dist
from search.pruner import Pruner

VERSION = 2
HELD_VERSION = 3     # written instead of VERSION while trials are held for a promotion
MANIFEST = "manifest.json"
SPEC_COPY = "sweep.yaml"
TRIALS = "trials"
RESULT = "result.json"
METRICS = "metrics.json"        # what the swept program writes to $SWEEP_RESULT_FILE
PROGRESS = "progress.jsonl"
CHECKPOINTS = "checkpoints"
# Present while `sweep cancel` holds the sweep back: tasks record a cancel instead of requeueing,
# and nothing tops the queue up. `sweep resume` removes it.
CANCEL_MARKER = "cancelled"
# Present while trials wait for queue room: a task that ends sees it (one stat) and tops up.
WAITING_MARKER = "waiting"
DEFAULT_CHECKPOINT_KEY = "checkpoint_path"
DEFAULT_MAX_ATTEMPTS = 3
EXECUTORS = ("slurm", "submitit", "local")
_LOCAL_PREFIX = "local:"       # version 1 recorded local runs as job id "local:<pid>"


# --- paths --------------------------------------------------------------------------------------

def now_iso() -> str:
    """UTC to the second, as every time the sweep directory records is written: 2026-01-31T12:00:00Z
    (time, not datetime: one import less per array task)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def iso_epoch(text: str | None) -> float | None:
    """A time now_iso wrote -> epoch seconds; None when empty or unreadable."""
    try:
        return calendar.timegm(time.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def manifest_path(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / MANIFEST


def trial_dir(sweep_dir: str | os.PathLike, trial_id: str) -> Path:
    return Path(sweep_dir) / TRIALS / trial_id


def result_path(sweep_dir: str | os.PathLike, trial_id: str) -> Path:
    return trial_dir(sweep_dir, trial_id) / RESULT


# --- index ranges (Slurm's --array syntax) -------------------------------------------------------

def compact_ranges(indices: Iterable[int]) -> str:
    """[0,1,2,3,7,12,13,14,15] -> '0-3,7,12-15' (Slurm's --array syntax)."""
    out: list[str] = []
    xs = sorted(set(indices))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out)


def expand_ranges(text: str) -> list[int]:
    """'0-3,7,12-15%4' or '0-10:2' -> list of ints (inverse of compact_ranges, throttle ignored)."""
    text = text.split("%", 1)[0].strip()
    out: list[int] = []
    for part in filter(None, text.split(",")):
        step = 1
        if ":" in part:
            part, s = part.split(":", 1)
            step = int(s)
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1, step))
        else:
            out.append(int(part))
    return out


def tasks_of(indices: list[int], *, offset: int, pack: int) -> dict[int, list[int]]:
    """{task id: trial indices} of an array holding the sorted `indices`: unpacked, task
    index - offset; packed, task offset + position // pack."""
    out: dict[int, list[int]] = {}
    if pack <= 1:
        for index in indices:
            out[index - offset] = [index]
        return out
    for pos in range(0, len(indices), pack):
        out[offset + pos // pack] = indices[pos:pos + pack]
    return out


# --- records --------------------------------------------------------------------------------------

class Stages(namedtuple("Stages", "key values checkpoint_key", defaults=(DEFAULT_CHECKPOINT_KEY,))):
    """Progressive training: the same trials run once per value of `key`, in order. Stage k+1 of
    trial i starts from trial i's stage-k checkpoint, passed as `<checkpoint_key>=<path>`.
    Successive halving (method asha) keeps its rungs here too: stage k is rung k, and only the
    trials that jobs.promote promotes run it."""

    __slots__ = ()


class Trial(namedtuple("Trial", "id index stage params overrides environment parent variant replica",
                       defaults=(0, {}, {}, None, None, None, 0))):
    """One planned run. Plans make these; backends submit them; the runtime runs them.

    index:       position in the sweep (unique across stages); the Slurm array task id
                 is `index - offset` of the submission that holds it.
    stage:       progressive stage (or successive-halving rung), 0 first.
    params:      only what the plan varied (what reports call hyperparameters).
    overrides:   every value passed to the command (constants, params, environment and stage
                 key), typed, in command-line order; rendered as `key=value` by jobs.argv.
    environment: the environment this trial runs in (a ConSpec file's `environments`), or None.
    parent:      id of the trial whose checkpoint this one starts from (progressive stages).
    variant:     name of the A/B variant (baseline plans) whose overrides are in params.
    replica:     repeat / sample number that tells apart trials with equal params (random
                 samples, repeated seeds, bayes trials whose params are asked at run time).
    """

    __slots__ = ()

    def override_args(self) -> list[str]:
        """The overrides as `key=value` strings (what `--dry-run --json` shows)."""
        from jobs.argv import format_value

        return [f"{k}={format_value(v)}" for k, v in self.overrides.items()]

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "index": self.index, "stage": self.stage, "params": self.params,
             "overrides": self.overrides}
        for name in ("environment", "parent", "variant"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        if self.replica:
            d["replica"] = self.replica
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trial:
        return cls(id=d["id"], index=d["index"], stage=d.get("stage", 0), params=d.get("params") or {},
                   overrides=d.get("overrides") or {}, environment=d.get("environment"),
                   parent=d.get("parent"), variant=d.get("variant"), replica=d.get("replica", 0))


class Submission(namedtuple("Submission", "stage indices executor token state job_id offset pack array dependency "
                                         "pid submitted",
                            defaults=("", "submitted", None, 0, 1, None, None, None, ""))):
    """One submission: trial indices (compact ranges) of one stage, as the backend ran them.

    Backend-neutral: stage, indices, executor, token, state, submitted. Slurm (and submitit):
    job_id, offset (task id = index - offset), pack (trials per task), array (the --array value),
    dependency. Local: pid of the process pool that runs them.

    state "pending": recorded before sbatch ran, with a token Slurm keeps in the job's name
    (jobs.submission); "submitted" once the job id is known.
    """

    __slots__ = ()

    @property
    def is_slurm(self) -> bool:
        return self.executor in ("slurm", "submitit")

    def index_list(self) -> list[int]:
        return expand_ranges(self.indices)

    def task_ids(self) -> dict[int, str]:
        """{trial index: '<array job>_<task>'} of this submission's trials; empty before a job id exists."""
        if not (self.is_slurm and self.job_id):
            return {}
        return {index: f"{self.job_id}_{task}"
                for task, indices in tasks_of(self.index_list(), offset=self.offset, pack=self.pack).items()
                for index in indices}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self._asdict().items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Submission:
        job, pid, dependency = d.get("job_id"), d.get("pid"), d.get("dependency")
        if isinstance(job, str) and job.startswith(_LOCAL_PREFIX):     # version 1
            pid, job = int(job[len(_LOCAL_PREFIX):]), None
        if dependency == "aftercorr:local":                            # version 1
            dependency = None
        return cls(stage=int(d.get("stage", 0)), indices=str(d.get("indices", "")),
                   executor=d.get("executor") or "slurm", token=d.get("token") or "",
                   state=d.get("state") or "submitted", job_id=None if job is None else str(job),
                   offset=int(d.get("offset") or 0), pack=int(d.get("pack") or 1), array=d.get("array"),
                   dependency=dependency,
                   pid=pid, submitted=d.get("submitted") or "")


# Settings' fields and defaults; what each means.
_SETTINGS = (
    ("name", None), ("command", None),     # (required) the sweep's name; the program's argv prefix
    ("executor", "slurm"),
    ("method", "grid"),
    ("metric", None),
    ("goal", "maximize"),
    ("workdir", ""),                       # where the command runs (relative paths resolve against it)
    ("max_attempts", DEFAULT_MAX_ATTEMPTS),
    ("pack", 1),                           # trials run one after another in each array task
    ("stages", None),                      # Stages, or None
    # The search: what jobs.bayes needs in the array tasks (space {key: Dist}, sampler, pruner,
    # options, seed).
    ("space", {}),
    ("sampler", None),
    ("pruner", Pruner()),
    ("search_options", {}),
    ("seed", 0),
    ("dialect", "native"),                 # where the spec came from
    ("source", None),
    ("created", ""),
    ("cluster", ClusterProfile()),         # the cluster profile the arrays are rendered with
    ("logging", {}),                       # where the runs log: {"wandb_project": ..., "wandb_entity": ...}
    ("launch", {}),                        # the launch's options as parsed (what `sweep resume` reuses)
    ("fingerprint", ""),                   # the command and the trial ids (launcher.sweepdir.fingerprint)
)


class Settings(namedtuple("Settings", [n for n, _ in _SETTINGS], defaults=[d for _, d in _SETTINGS[2:]])):
    """What a launch fixed. Every field is written at launch and never changes."""

    __slots__ = ()

    @property
    def checkpoint_key(self) -> str:
        return self.stages.checkpoint_key if self.stages else DEFAULT_CHECKPOINT_KEY

    @property
    def uses_study(self) -> bool:
        """Tasks ask/tell an Optuna study (jobs.bayes): bayes plans, and any plan with a pruner."""
        return self.method == "bayes" or self.pruner.active

    @property
    def max_parallel(self) -> int | None:
        return self.launch.get("max_parallel")

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["command"] = list(self.command)
        d["space"] = {k: dist.to_dict() for k, dist in self.space.items()}
        d["pruner"] = self.pruner.to_dict()
        d["cluster"] = self.cluster.to_dict()
        d["stages"] = None if self.stages is None else {"key": self.stages.key, "values": list(self.stages.values),
                                                         "checkpoint_key": self.stages.checkpoint_key}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        stages = d.get("stages")
        if isinstance(stages, dict):
            stages = Stages(key=stages.get("key") or "", values=tuple(stages.get("values") or ()),
                            checkpoint_key=stages.get("checkpoint_key") or DEFAULT_CHECKPOINT_KEY)
        elif d.get("checkpoint_key"):                                  # version 1: only the key
            stages = Stages(key="", values=(), checkpoint_key=d["checkpoint_key"])
        else:
            stages = None
        known = {k: v for k, v in d.items() if k in cls._fields}
        known.update(
            name=str(d.get("name") or "sweep"), command=tuple(str(c) for c in d.get("command") or ()),
            stages=stages, space={k: Dist.from_dict(v) for k, v in (d.get("space") or {}).items()},
            pruner=Pruner.from_dict(d.get("pruner")), cluster=ClusterProfile.from_dict(d.get("cluster")),
            logging=d.get("logging") or {}, launch=d.get("launch") or {},
            search_options=d.get("search_options") or {}, goal=d.get("goal") or "maximize",
            max_attempts=int(d.get("max_attempts") or DEFAULT_MAX_ATTEMPTS), seed=int(d.get("seed") or 0),
            pack=int(d.get("pack") or 1),
            executor=d.get("executor") or "slurm", method=d.get("method") or "grid",
            workdir=d.get("workdir") or "", dialect=d.get("dialect") or "native")
        return cls(**known)


class Manifest(namedtuple("Manifest", "settings trials submissions unsubmitted version held",
                          defaults=((), (), "", VERSION, ""))):
    """settings, trials, submissions; `unsubmitted`: trial indices not submitted yet because of the
    cluster's queue limits; `held`: trial indices that wait for a promotion (successive halving's
    higher rungs). Both compact ranges ("0-99,120")."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return self.settings.name

    def trial_at(self, index: int) -> Trial:
        # Plans number trials 0..n-1 in order, so the position is almost always the index.
        trials = self.trials
        if 0 <= index < len(trials) and trials[index].index == index:
            return trials[index]
        for trial in trials:
            if trial.index == index:
                return trial
        raise KeyError(index)

    def by_id(self) -> dict[str, Trial]:
        return {t.id: t for t in self.trials}

    def unsubmitted_indices(self) -> list[int]:
        return expand_ranges(self.unsubmitted)

    def held_indices(self) -> list[int]:
        return expand_ranges(self.held)

    def latest_submissions(self) -> dict[int, Submission]:
        """{trial index: the latest submission that holds it} (resume appends newer ones)."""
        out: dict[int, Submission] = {}
        for sub in self.submissions:
            for index in sub.index_list():
                out[index] = sub
        return out

    def job_ids(self) -> list[str]:
        """The parent array job ids of every Slurm submission (what sacct/squeue/scancel take)."""
        return list(dict.fromkeys(s.job_id for s in self.submissions if s.is_slurm and s.job_id))

    def replace(self, **changes: Any) -> Manifest:
        return self._replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        d = {"version": max(self.version, HELD_VERSION) if self.held else self.version, **self.settings.to_dict(),
             "trials": [t.to_dict() for t in self.trials],
             "submissions": [s.to_dict() for s in self.submissions],
             "unsubmitted": self.unsubmitted}
        if self.held:
            d["held"] = self.held
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(settings=Settings.from_dict(d), trials=tuple(Trial.from_dict(t) for t in d.get("trials") or ()),
                   submissions=tuple(Submission.from_dict(s) for s in d.get("submissions") or ()),
                   unsubmitted=str(d.get("unsubmitted") or ""), held=str(d.get("held") or ""))


# --- reading and writing ----------------------------------------------------------------------------

def _load(sweep_dir: str | os.PathLike) -> dict[str, Any]:
    path = manifest_path(sweep_dir)
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        what = "is not a directory" if os.path.exists(sweep_dir) and not os.path.isdir(sweep_dir) \
            else f"is not a sweep directory (no {MANIFEST})"
        raise UserError(f"{sweep_dir} {what}",
                        fix="pass the directory `sweep launch` printed (`sweep list` shows the sweeps under a "
                            "directory)") from None
    except PermissionError:
        raise UserError(f"cannot read {path} (permission denied)",
                        fix="ask the sweep's owner to make it readable, or pass another directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})",
                        fix="restore it from a backup; it is only written atomically, so this is disk damage") from None
    if not isinstance(data, dict) or "trials" not in data:
        raise UserError(f"{path} is not a slurmsweep manifest", fix="pass the directory `sweep launch` printed")
    if int(data.get("version") or 1) > HELD_VERSION:
        raise UserError(f"{path} was written by a newer slurmsweep (manifest version {data['version']})",
                        fix="upgrade slurmsweep to read it")
    return data


def read_manifest(sweep_dir: str | os.PathLike) -> Manifest:
    return Manifest.from_dict(_load(sweep_dir))


def read_settings(sweep_dir: str | os.PathLike) -> Settings:
    """The sweep's settings (what a swept program may need to know, e.g. its metric)."""
    return Settings.from_dict(_load(sweep_dir))


def write_manifest(sweep_dir: str | os.PathLike, manifest: Manifest) -> None:
    write_json_atomic(manifest_path(sweep_dir), manifest.to_dict())


# --- per-array task files: what one array task reads instead of the whole manifest ----------------
#
# arrays/<token>.jsonl, written before the array is submitted: a header line
# {"version": 1, "settings": {...}, "tasks": "<task ids, compact>"}, then one line per task id in
# order, each a JSON list of the trial records that task runs (one, or a pack). A task reads the
# header and skips to its own line: its start costs the same at 100 trials or 100,000.

ARRAYS = "arrays"


def array_file(sweep_dir: str | os.PathLike, token: str) -> Path:
    return Path(sweep_dir) / ARRAYS / f"{token}.jsonl"


def write_array_file(sweep_dir: str | os.PathLike, token: str, settings: Settings,
                     tasks: dict[int, list[Trial]]) -> None:
    ids = sorted(tasks)
    lines = [json.dumps({"version": 1, "settings": settings.to_dict(), "tasks": compact_ranges(ids)}, default=str)]
    lines += [json.dumps([t.to_dict() for t in tasks[i]], default=str) for i in ids]
    path = array_file(sweep_dir, token)
    path.parent.mkdir(exist_ok=True)
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_array_task(sweep_dir: str | os.PathLike, token: str, task_id: int) -> tuple[Settings, list[Trial]]:
    """The settings and the trials of one task of an array (KeyError: no such task)."""
    with open(array_file(sweep_dir, token)) as f:
        header = json.loads(f.readline())
        position = 0
        for part in filter(None, header["tasks"].split(",")):
            first, _, last = part.partition("-")
            first_i, last_i = int(first), int(last or first)
            if first_i <= task_id <= last_i:
                position += task_id - first_i
                break
            position += last_i - first_i + 1
        else:
            raise KeyError(task_id)
        for _ in range(position):
            f.readline()
        trials = json.loads(f.readline())
    return Settings.from_dict(header["settings"]), [Trial.from_dict(t) for t in trials]
