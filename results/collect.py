"""Every trial's result JSON, from one or many sweep directories (of one or many users), as one table.

Columns (one row per result file):

    sweep, user, trial, trial_id, stage, environment, status, runtime_s, error, timestamp,
    job.id, job.node, job.attempt, job.gpu, ...   the schema-1 envelope (job.* flattened)
    hp.<name>         every hyperparameter (nested dicts flattened with dots: hp.arch.lr)
    results.<name>    every result metric   (results.exact_accuracy, results.eval/lm_loss)
    <other>           any other top-level key a file carries (schema drift is kept, not dropped)
    path              the file the row came from

`user` is the owner of the sweep directory (of the file's directory for loose files), unless
the file says. Researchers' older flat files (`{"hyperparameters": {...}, "results": {...}}`)
land in the same columns; `metrics`/`params`/`hparams`/`config` are read as results/hyperparameters.

Nothing valid is dropped and nothing raises on a bad file: corrupt, truncated, empty,
unreadable or foreign JSON is listed in `Collection.skipped` with the reason, and directories
that cannot be listed in `Collection.unreadable`, for the caller to name in one warning each.
NaN and +-Infinity (JSON tokens or strings) load as floats.

Speed (bench/collect.py: 100k files): directories are listed with os.scandir (no per-file
stat); files are parsed in chunks by a process pool that starts as soon as the first chunk is
listed, so listing the next sweep overlaps parsing this one; each chunk's rows are built
straight into typed Arrow columns (results.parse, results.columns), concatenated once. Sweeps
with at least cache.MIN_FILES trial directories keep a cache of their parsed rows, and a later
collect re-reads only the files that changed (results.incremental). pandas is imported only by
`Collection.frame` and the row selectors below.
"""
from __future__ import annotations

import glob
import os
import pwd
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pyarrow as pa

from jobs.errors import UserError
from jobs.manifest import RESULT, TRIALS
from results import cache, columns, incremental
from results.parse import Part, column_order, no_gc, parse_chunk

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

# Directories never worth descending into when hunting for sweeps in a scratch space.
_SKIP_DIRS = frozenset({"checkpoints", "reports", "wandb", "__pycache__", "node_modules", "result_index"})
_MAX_DEPTH = 5
# Files per parsing task. Big enough that a task's fixed cost (a table, a pickle) is noise;
# small enough that the pool starts early and the workers finish together. Fewer files than
# _POOL_MIN are parsed in this process: there a pool costs more than it saves.
_CHUNK_FILES = 8192
_POOL_MIN = 1024


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Collection:
    table: pa.Table
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0          # result files found (valid or not)
    sweeps: list[str] = field(default_factory=list)   # sweep directories found
    unreadable: list[Skipped] = field(default_factory=list)   # directories that could not be listed
    parsed: int = 0         # result files read this time (the rest came from caches)
    _frame: Any = None
    _saving: Any = None     # the thread writing the sweeps' caches (see collect(wait=...))

    def wait(self) -> None:
        """Until the sweeps' caches are written (collect(..., wait=False) returns before)."""
        if self._saving is not None:
            self._saving.shutdown(wait=True)
            self._saving = None

    @property
    def frame(self) -> Any:
        """The rows as a pandas DataFrame (made once, on first use: it imports pandas)."""
        if self._frame is None:
            self._frame = columns.to_pandas(self.table)
        return self._frame


# --- discovery ---------------------------------------------------------------------------

Item = tuple[str, "str | None"]        # (result file path, sweep name to use when the file has none)


class _Found:
    """Told of sweeps (with their trial directories) and loose files as they are listed."""

    def __init__(self, on_sweep: Callable[[str, str, str, Callable[[], list[str]]], None],
                 on_files: Callable[[list[Item]], None]) -> None:
        self.on_sweep, self.on_files = on_sweep, on_files
        self.sweeps: list[str] = []
        self.unreadable: list[Skipped] = []


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


def _unreadable(found: _Found, path: str, exc: OSError) -> None:
    found.unreadable.append(Skipped(path, exc.strerror or str(exc)))


def _add_sweep(found: _Found, sweep_dir: str) -> None:
    trials = os.path.join(sweep_dir, TRIALS)
    name = os.path.basename(os.path.normpath(sweep_dir))
    if not os.access(trials, os.R_OK | os.X_OK):
        try:
            os.scandir(trials).close()      # the reason, in the system's words
        except OSError as exc:
            _unreadable(found, trials, exc)
            return
    found.sweeps.append(sweep_dir)
    found.on_sweep(sweep_dir, name, os.path.join(trials, ""), lambda: _list_trials(found, trials))


def _list_trials(found: _Found, trials: str) -> list[str]:
    """The sweep's trial directories, sorted (entries that are not directories do no harm:
    their result.json does not exist)."""
    try:
        # listdir, not scandir: no DirEntry per trial; non-directories are told apart later for free.
        return sorted(n for n in os.listdir(trials) if not n.startswith("."))
    except OSError as exc:
        _unreadable(found, trials, exc)
        return []


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
        found.on_files([(path, _loose_name(path))])
        return
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        _unreadable(found, directory, exc)
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
            found.on_files([(entry.path, _loose_name(entry.path))])


def discover(inputs: Iterable[str], on_sweep: Callable[[str, str, str, Callable[[], list[str]]], None],
             on_files: Callable[[list[Item]], None]) -> _Found:
    """Tell `on_sweep(dir, name, trials prefix, lister)` of every sweep under `inputs` (sweep
    dirs, globs, scratch spaces) and `on_files` of loose result files, as they are found.
    `lister()` lists the sweep's trial directories (a cached sweep may not need to)."""
    found = _Found(on_sweep, on_files)
    for path in _expand_inputs(inputs):
        if os.path.isdir(path):
            _walk(found, path, 0)
        else:
            found.on_files([(path, _loose_name(path))])
    return found


_OWNERS: dict[int, str] = {}


def owner(path: str) -> str:
    """The user name owning `path` (the uid as text when the system does not know it)."""
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    if uid not in _OWNERS:
        try:
            _OWNERS[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _OWNERS[uid] = str(uid)
    return _OWNERS[uid]


# --- parsing -----------------------------------------------------------------------------

def _pool_errors() -> tuple[type[BaseException], ...]:
    # No processes to be had (a daemon process, a ulimit, a worker killed for memory): slower in
    # one process is still correct. (concurrent.futures is imported only when a pool is wanted.)
    from concurrent.futures.process import BrokenProcessPool
    return (OSError, BrokenProcessPool, AssertionError, RuntimeError)


class _Parser:
    """Parses files in chunks while discovery is still listing: each chunk of at least
    _POOL_MIN files goes to a process pool (forked at the first one: milliseconds); smaller
    ones are parsed here at the end, while the pool works."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.items: list[Item] = []
        self.chunks: list[tuple[int, int]] = []     # item ranges
        self.futures: dict[int, Future] = {}        # chunk -> its parse in the pool
        self.start = 0                              # the first item in no chunk yet
        self.pool: ProcessPoolExecutor | None = None
        self.broken = False

    def add(self, files: list[Item]) -> None:
        self.items += files
        while len(self.items) - self.start >= _CHUNK_FILES:
            self._cut(self.start + _CHUNK_FILES)

    def flush(self) -> int:
        """End the current chunk here (a cached sweep's files get chunks of their own);
        returns the number of chunks so far."""
        if len(self.items) > self.start:
            self._cut(len(self.items))
        return len(self.chunks)

    def _cut(self, stop: int) -> None:
        start, self.start = self.start, stop
        self.chunks.append((start, stop))
        if self.workers > 1 and stop - start >= _POOL_MIN and not self.broken:
            try:
                if self.pool is None:
                    import multiprocessing
                    from concurrent.futures import ProcessPoolExecutor

                    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
                    self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                                    initializer=columns.without_pandas)
                self.futures[len(self.chunks) - 1] = self.pool.submit(parse_chunk, self.items[start:stop])
            except _pool_errors():
                self.broken = True

    def results(self) -> list[Part]:
        """Every chunk's Part, in order."""
        self.flush()
        parts: list[Part | None] = [None] * len(self.chunks)
        for c, (a, b) in enumerate(self.chunks):
            if c not in self.futures:
                parts[c] = parse_chunk(self.items[a:b])
        for c, future in self.futures.items():
            try:
                parts[c] = future.result()
            except _pool_errors():
                a, b = self.chunks[c]
                parts[c] = parse_chunk(self.items[a:b])
        return parts  # type: ignore[return-value]

    def close(self, wait: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)


# --- one collection ----------------------------------------------------------------------

@dataclass
class _Source:
    start: int                        # its items: parser.items[start:stop]
    stop: int
    user: str
    plan: incremental.SweepPlan | None = None   # a cached sweep (its items: the files it re-reads)
    chunks: range = range(0)          # a cached sweep's own chunks


class _Collector:
    def __init__(self, workers: int, *, use_cache: bool, rescan: bool, since_ns: int | None,
                 users: set[str] | None) -> None:
        self.parser = _Parser(workers)
        self.use_cache, self.rescan, self.since_ns, self.users = use_cache, rescan, since_ns, users
        self.sources: list[_Source] = []
        self.order: list[tuple[str, int]] = []     # ("shared", chunks up to) | ("sweep", source)
        self._dir_users: dict[str, str] = {}
        self._saving: Any = None                   # a thread writing caches while the rest goes on

    def _wanted(self, user: str) -> bool:
        return not self.users or user in self.users

    def on_sweep(self, sweep_dir: str, name: str, prefix: str, lister: Callable[[], list[str]]) -> None:
        user = owner(sweep_dir)
        if not self._wanted(user) or self._idle_since(sweep_dir):
            return
        parser = self.parser
        if self.use_cache:
            plan = incremental.plan(sweep_dir, name, prefix, lister, rescan=self.rescan)
            if plan.cached is not None or len(plan.names or ()) >= cache.MIN_FILES:
                # Chunks of its own: its rows become its cache, without other sweeps' columns.
                self.order.append(("shared", parser.flush()))
                start, first = len(parser.items), len(parser.chunks)
                parser.add([(plan.path(n), name) for n in plan.reparse])
                self.sources.append(_Source(start, len(parser.items), user, plan, range(first, parser.flush())))
                self.order.append(("sweep", len(self.sources) - 1))
                return
            names = plan.names or []
        else:
            names = lister()
        start = len(parser.items)
        parser.add([(f"{prefix}{n}{os.sep}{RESULT}", name) for n in names])
        self.sources.append(_Source(start, len(parser.items), user))

    def _idle_since(self, sweep_dir: str) -> bool:
        """With --since: a sweep whose result index has not been written to since then has no
        newer result (the runner appends a line after each result it writes)."""
        if self.since_ns is None:
            return False
        from jobs import result_index
        snap = result_index.scan(sweep_dir, read=False)
        return snap.present and not snap.damaged and snap.newest * 1e9 < self.since_ns

    def on_files(self, files: list[Item]) -> None:
        directory = os.path.dirname(os.path.abspath(files[0][0]))
        if directory not in self._dir_users:
            self._dir_users[directory] = owner(directory)
        user = self._dir_users[directory]
        if not self._wanted(user):
            return
        start = len(self.parser.items)
        self.parser.add(files)
        self.sources.append(_Source(start, len(self.parser.items), user))

    # --- after parsing ---

    def build(self, found: _Found) -> Collection:
        parser = self.parser
        try:
            with no_gc():
                parts = parser.results()
            parser.close(wait=False)        # the workers exit while the tables are merged
            self.order.append(("shared", len(parser.chunks)))
            pieces: list[pa.Table] = []
            skipped: list[Skipped] = []
            files = 0
            owned = {c for s in self.sources for c in s.chunks}
            starts = np.array([s.start for s in self.sources], dtype=np.int64)
            users = columns.text([s.user for s in self.sources])
            done = 0
            for what, n in self.order:
                if what == "sweep":
                    files += self._sweep(self.sources[n], parts, pieces, skipped)
                    continue
                for c in range(done, n):
                    if c not in owned:
                        files += self._shared(c, parts[c], starts, users, pieces, skipped)
                done = max(done, n)
        finally:
            parser.close()
        table = with_causes(columns.concat(pieces))
        table = columns.fix_types(columns.reorder(table, column_order(table.column_names)))
        return Collection(table=table, skipped=skipped, files=files, sweeps=found.sweeps,
                          unreadable=found.unreadable, parsed=sum(p.read for p in parts), _saving=self._saving)

    def _shared(self, c: int, part: Part, starts: np.ndarray, users: pa.Array,
                pieces: list[pa.Table], skipped: list[Skipped]) -> int:
        a, _ = self.parser.chunks[c]
        src = np.searchsorted(starts, a + part.rows, side="right") - 1
        pieces.append(self._finish(part.table, columns.take(users, src), part.keys[part.rows]))
        for i, why in part.bad:
            if self._recent(part.keys[i]):
                skipped.append(Skipped(self.parser.items[a + i][0], why))
        return part.read

    def _sweep(self, source: _Source, parts: list[Part], pieces: list[pa.Table], skipped: list[Skipped]) -> int:
        plan = source.plan
        assert plan is not None
        own = []
        for c in source.chunks:
            a, b = self.parser.chunks[c]
            own.append((parts[c], [plan.reparse[i - source.start] for i in range(a, b)]))
        rows = incremental.combine(plan, own)
        if incremental.needs_saving(plan, rows):
            # Written on a thread (Arrow's zstd and file writes release the GIL): the caches of a
            # first collect (0.05-0.1 s for 100,000 rows) overlap with merging and the CSV.
            if self._saving is None:
                from concurrent.futures import ThreadPoolExecutor
                self._saving = ThreadPoolExecutor(1)
            self._saving.submit(incremental.save, plan, rows)
        table = rows.table
        if table.num_rows:
            pieces.append(self._finish(table, columns.repeat_text(source.user, table.num_rows), rows.keys))
        for name, (why, key) in rows.bad.items():
            if self._recent(key):
                skipped.append(Skipped(plan.path(name), why))
        return table.num_rows + len(rows.bad)

    def _recent(self, key: Any) -> bool:
        return self.since_ns is None or key[1] < 0 or key[1] >= self.since_ns

    def _finish(self, table: pa.Table, user: pa.Array, keys: np.ndarray) -> pa.Table:
        """The `user` column (the file's own `user` wins), and the --since filter (file mtime)."""
        i = table.schema.get_field_index("user")
        if i < 0:
            table = table.append_column(pa.field("user", columns.TEXT), user)
        elif table.schema.field(i).type == columns.TEXT and not columns.is_mixed(table.schema.field(i)):
            table = table.set_column(i, pa.field("user", columns.TEXT), columns.compute("coalesce", table.column(i), user))
        if self.since_ns is not None and table.num_rows:
            table = columns.keep(table, keys[:, 1] >= self.since_ns)
        return table


def collect(inputs: Iterable[str], *, workers: int | None = None, since: float | None = None,
            users: Iterable[str] | None = None, cache: bool = True, rescan: bool = False,
            wait: bool = True) -> Collection:
    """Merge every result file under `inputs` into one table (see the module docstring).

    since: only result files written at or after this time (seconds since the epoch);
    users: only sweeps (and loose files) whose directory these users own;
    cache: use and update the sweeps' collect caches; rescan: check every file by stat()
    instead of trusting the sweeps' result indexes; wait: return only once the caches are
    written (else call Collection.wait() before the process ends).
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    collector = _Collector(workers, use_cache=cache, rescan=rescan,
                           since_ns=None if since is None else int(since * 1e9), users=set(users) if users else None)
    found = discover(inputs, on_sweep=collector.on_sweep, on_files=collector.on_files)
    got = collector.build(found)
    if wait:
        got.wait()
    return got


def with_causes(table: pa.Table) -> pa.Table:
    """A `cause` column: why each trial that did not complete ended as it did, in one line (its
    error's headline, as `sweep status` says it; what only Slurm knows, such as an out-of-memory
    kill that left no result, is `sweep status`'s to say). Empty for completed trials."""
    names = table.column_names
    if "status" not in names or "cause" in names or not table.num_rows:
        return table
    status = table.column("status")
    if status.type != columns.TEXT:
        return table
    from jobs.causes import headline, summary_of

    # In Arrow (2 ms for 100,000 rows): not completed, a missing status included. Scalars come from arrays:
    # pa.scalar would import pandas.
    other = columns.compute("not_equal", status, columns.text(["completed"])[0])
    other = columns.compute("coalesce", other, columns.booleans(np.array([True]))[0])
    rows = np.flatnonzero(columns.to_numpy(columns.cast(other, pa.int8())))
    cells: list[str | None] = [None] * table.num_rows
    if len(rows):
        states = columns.take(status, rows).to_pylist()
        errors = columns.take(table.column("error"), rows).to_pylist() if "error" in names else [None] * len(rows)
        for i, state, error in zip(rows.tolist(), states, errors):
            cells[i] = summary_of(state, headline(error if isinstance(error, str) else None))
    return table.append_column(pa.field("cause", columns.TEXT), columns.text(cells))


def describe_skipped(skipped: list[Skipped], limit: int = 20) -> list[str]:
    """Warning lines naming every bad file once (the first `limit`, then a count)."""
    if not skipped:
        return []
    lines = [f"warning: skipped {len(skipped)} file(s) that are not readable results:"]
    lines += [f"  {s.path}: {s.reason}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (--skipped FILE lists them all)")
    return lines


def describe_unreadable(unreadable: list[Skipped], limit: int = 10) -> str | None:
    """One warning line naming the directories that could not be listed (others' sweeps)."""
    if not unreadable:
        return None
    named = ", ".join(f"{s.path} ({s.reason})" for s in unreadable[:limit])
    more = f" and {len(unreadable) - limit} more" if len(unreadable) > limit else ""
    return f"warning: skipped {len(unreadable)} unreadable director{'y' if len(unreadable) == 1 else 'ies'}: {named}{more}"


# --- selecting rows ----------------------------------------------------------------------

def _aliases(frame: Any) -> dict[str, str]:
    """Bare names for prefixed columns (`lr` -> `hp.lr`), results first, never shadowing."""
    out: dict[str, str] = {}
    for prefix in ("results.", "hp."):
        for c in frame.columns:
            if c.startswith(prefix):
                bare = c[len(prefix):]
                if bare not in frame.columns and bare not in out:
                    out[bare] = c
    return out


def resolve_column(frame: Any, name: str, *, what: str = "column") -> str:
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


def where(frame: Any, expr: str) -> Any:
    """Rows matching a DataFrame.query expression; bare names (`lr`, `accuracy`) work too."""
    import pandas as pd

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


def sort(frame: Any, metric: str, *, ascending: bool = False) -> Any:
    """Sorted by `metric` (largest first unless ascending); NaN last."""
    import pandas as pd

    col = resolve_column(frame, metric, what="metric")
    try:
        return frame.sort_values(col, ascending=ascending, na_position="last", kind="stable")
    except TypeError:
        # Mixed numbers and text after schema drift: sort by the numeric reading, text last.
        return frame.sort_values(col, ascending=ascending, na_position="last", kind="stable",
                                 key=lambda s: pd.to_numeric(s, errors="coerce"))
