"""One sweep's collect with its cache: what to re-read, and the sweep's rows afterwards.

What changed since the cache was written is learned, in this order of preference, from
- the sweep's result index (jobs.result_index): the trials named after the point the cache had
  read up to. One open per index file, no stat per result: trusted when the cache had read the
  index before and nothing about the index looks wrong (see jobs.result_index for why);
- else (no index: older sweeps, plain JSON folders; a damaged index; --rescan) a stat() of every
  result file, compared with the (size, mtime_ns, inode) the cache keeps for it. A file whose
  mtime is within two seconds of the cache's own time is re-read anyway: it may have changed
  again within the filesystem's timestamp granularity (git's "racy clean" problem).
Trial directories that appeared are read, those that vanished dropped. The trials/ directory is
listed only when its mtime moved since the cache (creating or removing an entry moves it): an
unchanged sweep of 100,000 trials then costs one stat, a few opens and the cache's read.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
from pyarrow._compute import SetLookupOptions

from jobs import result_index
from jobs.manifest import RESULT
from results import cache, columns
from results.parse import Part

_NONE = (-1, -1, -1)
_RACY_NS = 2_000_000_000


@dataclass
class SweepPlan:
    sweep_dir: str
    name: str                           # the sweep name rows without one get
    prefix: str                         # <sweep>/trials/
    names: list[str] | None             # trial directories, sorted; None: those the cache knows
    cached: cache.Cached | None
    index: dict[str, list[int]] | None  # the result index's positions, noted before any file is read
    trials_mtime: int = -1              # trials/ mtime, noted before it was listed
    reparse: list[str] = field(default_factory=list)
    started_ns: int = 0

    def path(self, name: str) -> str:
        return f"{self.prefix}{name}{os.sep}{RESULT}"


def plan(sweep_dir: str, name: str, prefix: str, lister: Callable[[], list[str]], *,
         rescan: bool = False) -> SweepPlan:
    """Which trial directories of the sweep must be read (`lister` lists them, sorted)."""
    started = time.time_ns()
    try:
        trials_mtime = os.stat(prefix).st_mtime_ns
    except OSError:
        trials_mtime = -1
    cached = cache.load(sweep_dir, name, prefix)
    trusted = cached is not None and cached.index is not None and not rescan
    snap = result_index.scan(sweep_dir, since=cached.index if trusted else None, read=trusted)
    same_dirs = (cached is not None and not rescan and trials_mtime >= 0 and cached.trials_mtime == trials_mtime
                 and trials_mtime < cached.written_ns - _RACY_NS)
    p = SweepPlan(sweep_dir, name, prefix, None if same_dirs else lister(), cached,
                  snap.positions if snap.present else None, trials_mtime, started_ns=started)
    if cached is None:
        p.reparse = p.names or []
        return p
    if trusted and snap.present and not snap.damaged:      # the result index names what changed
        changed = snap.trials
        if p.names is None:
            if changed and not changed <= _known(cached):
                p.names = lister()        # a result in a directory the cache never saw: list after all
        if p.names is None:
            p.reparse = sorted(changed)
        else:
            known = _known(cached)
            p.reparse = [n for n in p.names if n in changed or n not in known]
    else:                                                  # a stat() of every result file
        p.reparse = _stat_changed(p, cached)
    return p


def _known(cached: cache.Cached) -> set[str]:
    known = set(cached.names.to_pylist())
    known.update(cached.bad)
    known.update(cached.missing)
    return known


def _stat_changed(p: SweepPlan, cached: cache.Cached) -> list[str]:
    keys = dict(zip(cached.names.to_pylist(), map(tuple, cached.keys.tolist())))
    for n, (_, key) in cached.bad.items():
        keys[n] = tuple(key)
    for n in cached.missing:
        keys[n] = _NONE
    racy = cached.written_ns - _RACY_NS
    out = []
    for n in (p.names if p.names is not None else sorted(keys)):
        try:
            st = os.stat(p.path(n))
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except (FileNotFoundError, NotADirectoryError):
            key = _NONE
        except OSError:
            out.append(n)        # unreadable: the parser says why
            continue
        if keys.get(n) != key or key[1] >= racy:
            out.append(n)
    return out


@dataclass
class SweepRows:
    table: pa.Table                     # result columns and `path`, rows in trial-directory order
    names: pa.Array                     # each row's trial directory
    keys: np.ndarray                    # (rows, 3): size, mtime_ns, inode
    bad: dict[str, tuple[str, tuple[int, int, int]]]
    missing: set[str]                   # trial directories without a result file
    changed: bool


def _in(values: pa.Array, among: pa.Array) -> np.ndarray:
    """values[i] in among, as a numpy bool array (Arrow's hash lookup: no Python loop per row)."""
    if not len(among):
        return np.zeros(len(values), dtype=bool)
    hit = columns.compute("is_in", values, options=SetLookupOptions(among))
    return columns.to_numpy(columns.cast(hit, pa.int8())).astype(bool)


def combine(p: SweepPlan, parts: list[tuple[Part, list[str]]]) -> SweepRows:
    """The sweep's rows: the cache's, less those re-read or gone, plus the re-read ones."""
    cached = p.cached
    new_tables, new_names, new_keys = [], [], []
    new_bad: dict[str, tuple[str, tuple[int, int, int]]] = {}
    new_missing: set[str] = set()
    for part, item_names in parts:
        if part.table.num_rows:
            new_tables.append(part.table)
            new_names += [item_names[i] for i in part.rows.tolist()]
            new_keys.append(part.keys[part.rows])
        for i, why in part.bad:
            new_bad[item_names[i]] = (why, tuple(int(x) for x in part.keys[i]))
        for i in np.nonzero(part.keys[:, 0] < 0)[0].tolist():      # no file (or unreadable: in bad)
            if item_names[i] not in new_bad:
                new_missing.add(item_names[i])
    if cached is not None and not p.reparse and (
            p.names is None or len(p.names) == len(cached.names) + len(cached.bad) + len(cached.missing)):
        # Nothing re-read, and no directory came or went: the cache as it is.
        return SweepRows(cached.table, cached.names, cached.keys, cached.bad, cached.missing, changed=False)
    if cached is None:
        # Every row was read, in listing order, already.
        table = columns.concat(new_tables) if new_tables else columns.empty()
        keys = np.concatenate(new_keys) if new_keys else np.empty((0, 3), dtype=np.int64)
        return SweepRows(table, columns.text(new_names), keys, new_bad, new_missing, changed=True)

    reread = set(p.reparse)
    listed = set(p.names) if p.names is not None else None
    still = (lambda n: n not in reread and (listed is None or n in listed))
    bad = {n: v for n, v in cached.bad.items() if still(n)}
    bad.update(new_bad)
    missing = {n for n in cached.missing if still(n)} | new_missing
    # One take over [cached rows | re-read rows], in directory order (the listing is sorted),
    # found with Arrow's hash lookups and sort rather than a Python loop over every row.
    old = cached.names
    n_old = len(old)
    fresh = columns.text(new_names)
    gone = _in(old, columns.text(sorted(reread)))
    if listed is not None:
        gone |= ~_in(old, columns.text(p.names))
    kept = np.nonzero(~gone)[0]
    candidates = pa.concat_arrays([columns.take(old, kept), fresh]) if len(fresh) else columns.take(old, kept)
    source = np.concatenate([kept, n_old + np.arange(len(fresh), dtype=np.int64)])
    order = columns.to_numpy(columns.compute("sort_indices", candidates))
    index = source[order]
    everything = columns.concat([cached.table, *new_tables])
    keys_all = np.concatenate([cached.keys, *new_keys]) if new_keys else cached.keys
    return SweepRows(columns.take(everything, index), columns.take(candidates, order), keys_all[index],
                     bad, missing, changed=True)


def needs_saving(p: SweepPlan, rows: SweepRows) -> bool:
    """Whether the cache is out of date: rows changed, or the index or the directory moved on."""
    cached = p.cached
    if cached is not None and not rows.changed and cached.index == p.index and cached.trials_mtime == p.trials_mtime:
        return False
    return cache.usable(rows.table)


def save(p: SweepPlan, rows: SweepRows) -> str | None:
    """Write the sweep's cache (the caller asks needs_saving first); returns where, or None."""
    return cache.save(p.sweep_dir, p.name, p.prefix, cache.Cached(
        table=rows.table, names=rows.names, keys=rows.keys, bad=rows.bad, missing=rows.missing,
        index=p.index, written_ns=p.started_ns, trials_mtime=p.trials_mtime))
