"""Every trial's result JSON, from one or many sweep directories, as one pandas DataFrame.

Columns (one row per result file):

    sweep, trial, trial_id, stage, environment, status, runtime_s, error, timestamp,
    job.id, job.node, job.attempt, job.gpu, ...   the schema-1 envelope (job.* flattened)
    hp.<name>         every hyperparameter (nested dicts flattened with dots: hp.arch.lr)
    results.<name>    every result metric   (results.exact_accuracy, results.eval/lm_loss)
    <other>           any other top-level key a file carries (schema drift is kept, not dropped)
    path              the file the row came from

Researchers' older flat files (`{"hyperparameters": {...}, "results": {...}}`) land in the
same columns; `metrics`/`params`/`hparams`/`config` are read as results/hyperparameters.

Nothing valid is dropped and nothing raises on a bad file: corrupt, truncated, empty,
unreadable or foreign JSON is listed in `Collection.skipped` with the reason, for the
caller to name in one warning. NaN and +-Infinity (JSON tokens or strings) load as floats.

Speed (bench/collect.py: 100k files): directories are listed with os.scandir (no per-file
stat); files are parsed in chunks by a process pool that starts as soon as the first chunk
is listed, so listing the next sweep overlaps parsing this one; each chunk's rows are built
straight into typed columns (results.parse), and the chunks' frames are concatenated once.
"""
from __future__ import annotations

import glob
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pandas as pd

from jobs.errors import UserError
from results.parse import column_order, fix_types, no_gc, parse_chunk

RESULT = "result.json"
TRIALS = "trials"
# Directories never worth descending into when hunting for sweeps in a scratch space.
_SKIP_DIRS = frozenset({"checkpoints", "reports", "wandb", "__pycache__", "node_modules"})
_MAX_DEPTH = 5
# Files per parsing task. Big enough that a task's fixed cost (a frame, a pickle) is noise;
# small enough that the pool starts early and the workers finish together. A collection
# under one chunk is parsed in this process: there a pool costs more than it saves.
_CHUNK_FILES = 8192


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Collection:
    frame: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0          # result files read (valid or not)
    sweeps: list[str] = field(default_factory=list)   # sweep directories found


# --- discovery ---------------------------------------------------------------------------

Item = tuple[str, "str | None"]        # (result file path, sweep name to use when the file has none)


@dataclass
class _Found:
    add: Callable[[list[Item]], None]     # told of result files as they are found
    sweeps: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _expand_inputs(inputs: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in inputs:
        text = os.path.expandvars(os.path.expanduser(str(raw)))
        if os.path.exists(text):
            out.append(text)
        elif _has_glob(text) and (matches := sorted(glob.glob(text))):
            out.extend(matches)
        else:
            raise UserError(f"{raw} does not exist" + (" (the pattern matched nothing)" if _has_glob(text) else ""),
                            fix="pass sweep directories, result JSON files or a glob such as "
                                "'$SCRATCH/sweeps/*'")
    return out


def _add_sweep(found: _Found, sweep_dir: str) -> None:
    trials = os.path.join(sweep_dir, TRIALS)
    name = os.path.basename(os.path.normpath(sweep_dir))
    found.sweeps.append(sweep_dir)
    try:
        with os.scandir(trials) as it:
            # d_type comes with the listing, so is_dir() costs no stat on local and NFS mounts.
            names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        found.skipped.append(Skipped(trials, f"unreadable directory ({exc.strerror or exc})"))
        return
    prefix = os.path.join(trials, "")    # plain concatenation below: 100k os.path.join calls show
    found.add([(f"{prefix}{n}{os.sep}{RESULT}", name) for n in names])


def _loose_name(path: str) -> str:
    """A loose file's sweep name: <sweep>/trials/<id>/result.json -> <sweep>, else its
    directory's name (experiments/run3.json -> experiments)."""
    parent = os.path.dirname(os.path.abspath(path))
    grand = os.path.dirname(parent)
    if os.path.basename(grand) == TRIALS:
        return os.path.basename(os.path.dirname(grand))
    return os.path.basename(parent)


def _walk(found: _Found, directory: str, depth: int) -> None:
    """Find sweeps (dirs with trials/) and trial dirs (with result.json) below `directory`.

    Loose *.json files are read only from the directory the user named (depth 0): a scratch
    space holds plenty of JSON that is not a result, and warning about all of it is noise.
    """
    if os.path.isdir(os.path.join(directory, TRIALS)):
        _add_sweep(found, directory)
        return
    if depth > 0 and os.path.isfile(os.path.join(directory, RESULT)):
        path = os.path.join(directory, RESULT)
        found.add([(path, _loose_name(path))])
        return
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        found.skipped.append(Skipped(directory, f"unreadable directory ({exc.strerror or exc})"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            if depth < _MAX_DEPTH and entry.name not in _SKIP_DIRS:
                _walk(found, entry.path, depth + 1)
        elif depth == 0 and entry.name.endswith(".json"):
            found.add([(entry.path, _loose_name(entry.path))])


def discover(inputs: Iterable[str], on_files: Callable[[list[Item]], None]) -> _Found:
    """Hand the result files under `inputs` (sweep dirs, globs, scratch spaces, JSON files) to
    `on_files` as they are listed; returns the sweeps found and what was skipped."""
    found = _Found(add=on_files)
    for path in _expand_inputs(inputs):
        if os.path.isdir(path):
            _walk(found, path, 0)
        else:
            found.add([(path, _loose_name(path))])
    return found


# --- parsing -----------------------------------------------------------------------------

# No processes to be had (a daemon process, a ulimit, a worker killed for memory): slower in
# one process is still correct.
_POOL_ERRORS = (OSError, BrokenProcessPool, AssertionError, RuntimeError)


class _Parser:
    """Parses files in chunks while discovery is still listing: each full chunk goes to a
    process pool (forked at the first one: milliseconds); the rest is parsed here at the end."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pending: list[Item] = []
        self.chunks: list[list[Item]] = []
        self.futures: list[Future] = []      # one per chunk, until the pool fails
        self.pool: ProcessPoolExecutor | None = None
        self.broken = False

    def add(self, files: list[Item]) -> None:
        self.pending += files
        while self.workers > 1 and len(self.pending) >= _CHUNK_FILES:
            chunk, self.pending = self.pending[:_CHUNK_FILES], self.pending[_CHUNK_FILES:]
            self.chunks.append(chunk)
            if not self.broken:
                try:
                    if self.pool is None:
                        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
                        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
                    self.futures.append(self.pool.submit(parse_chunk, chunk))
                except _POOL_ERRORS:
                    self.broken = True

    def results(self) -> list[tuple]:
        """Every chunk's (frame, bad files, files read), in discovery order."""
        tail = [parse_chunk(self.pending)] if self.pending else []   # while the pool works
        parts = []
        for i, chunk in enumerate(self.chunks):
            part = None
            if i < len(self.futures):
                try:
                    part = self.futures[i].result()
                except _POOL_ERRORS:
                    pass
            parts.append(part if part is not None else parse_chunk(chunk))
        return parts + tail

    def close(self, wait: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)


def _merge(parts: list[tuple]) -> pd.DataFrame:
    frames = [frame for frame, _, _ in parts if len(frame)]
    if not frames:
        return pd.DataFrame()
    merged = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False)
    order = column_order(list(merged.columns))
    if list(merged.columns) != order:       # chunks with different columns (a copy otherwise spared)
        merged = merged[order]
    # Types are settled here, on every row at once, so that a column's type does not depend
    # on how the files were chunked (a column mixing numbers and text may still show a chunk
    # boundary in its cells: NaN where one process keeps None, 3.0 where it keeps 3).
    return fix_types(merged)


def collect(inputs: Iterable[str], *, workers: int | None = None) -> Collection:
    """Merge every result file under `inputs` into one DataFrame (see the module docstring)."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parser = _Parser(workers)
    try:
        with no_gc():
            found = discover(inputs, on_files=parser.add)
            parts = parser.results()
        parser.close(wait=False)        # the workers exit while the frames are merged
        frame = _merge(parts)
    finally:
        parser.close()
    skipped = found.skipped + [Skipped(p, why) for _, bad, _ in parts for p, why in bad]
    return Collection(frame=frame, skipped=skipped, files=sum(read for _, _, read in parts), sweeps=found.sweeps)


def describe_skipped(skipped: list[Skipped], limit: int = 20) -> list[str]:
    """Warning lines naming every bad file once (the first `limit`, then a count)."""
    if not skipped:
        return []
    lines = [f"warning: skipped {len(skipped)} file(s) that are not readable results:"]
    lines += [f"  {s.path}: {s.reason}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (--skipped FILE lists them all)")
    return lines


# --- selecting rows ----------------------------------------------------------------------

def _aliases(frame: pd.DataFrame) -> dict[str, str]:
    """Bare names for prefixed columns (`lr` -> `hp.lr`), results first, never shadowing."""
    out: dict[str, str] = {}
    for prefix in ("results.", "hp."):
        for c in frame.columns:
            if c.startswith(prefix):
                bare = c[len(prefix):]
                if bare not in frame.columns and bare not in out:
                    out[bare] = c
    return out


def resolve_column(frame: pd.DataFrame, name: str, *, what: str = "column") -> str:
    """A column by exact name, bare name (`accuracy` -> `results.accuracy`) or unique suffix."""
    if name in frame.columns:
        return name
    aliases = _aliases(frame)
    if name in aliases:
        return aliases[name]
    # `exact_accuracy` also finds `results.eval/exact_accuracy` when that is the only one.
    tails = [c for c in frame.columns if c.startswith("results.") and c.rsplit("/", 1)[-1] == name]
    if len(tails) == 1:
        return tails[0]
    known = [c for c in frame.columns if c.startswith("results.")][:12]
    raise UserError(f"no {what} '{name}' in the collected results",
                    fix=f"pick one of: {', '.join(known) or 'none (no result metrics found)'}")


def where(frame: pd.DataFrame, expr: str) -> pd.DataFrame:
    """Rows matching a DataFrame.query expression; bare names (`lr`, `accuracy`) work too."""
    aliases = _aliases(frame)
    view = frame.assign(**{bare: frame[col] for bare, col in aliases.items()}) if aliases else frame
    try:
        picked = view.query(expr, engine="python")
    except Exception as exc:  # pandas raises many types here; all of them mean a bad expression
        raise UserError(f"--where {expr!r} is not a valid filter ({type(exc).__name__}: {exc})",
                        fix="use DataFrame.query syntax, e.g. \"status == 'completed' and lr < 0.01\"; "
                            "put names with dots or slashes in backticks: `hp.lr`") from None
    if not isinstance(picked, pd.DataFrame):
        raise UserError(f"--where {expr!r} does not select rows", fix="write a condition, e.g. 'accuracy > 0.5'")
    return frame.loc[picked.index]


def sort(frame: pd.DataFrame, metric: str, *, ascending: bool = False) -> pd.DataFrame:
    """Sorted by `metric` (largest first unless ascending); NaN last."""
    col = resolve_column(frame, metric, what="metric")
    try:
        return frame.sort_values(col, ascending=ascending, na_position="last", kind="stable")
    except TypeError:
        # Mixed numbers and text after schema drift: sort by the numeric reading, text last.
        return frame.sort_values(col, ascending=ascending, na_position="last", kind="stable",
                                 key=lambda s: pd.to_numeric(s, errors="coerce"))
