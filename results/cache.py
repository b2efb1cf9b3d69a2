"""The collect cache: one sweep's parsed results, so that the next `sweep collect` re-reads only
the result files that changed.

    <sweep_dir>/reports/collect-cache.arrow                      (where the sweep is writable)
    $XDG_CACHE_HOME/slurmsweep/collect/<hash>-<name>.arrow       (otherwise: ~/.cache/...)

An Arrow IPC file, zstd-compressed (not parquet: it is read whole on every collect, and IPC
reads and writes 3-5x faster; Arrow keeps each column's exact type, and reading it runs no code, unlike a
pickle in someone else's directory). It holds the rows, the trial directory each row came from
and that file's (size, mtime_ns, inode), and in its schema metadata the files that were not
results, the trial directories without a result yet, and how far it had read the sweep's
result index (jobs.result_index). Readers take the newer of the two places; writers try the
sweep first and fall back to the per-user place silently (another user's sweep is read-only
to us); a cache that is missing, unreadable, torn, from another version or for another
directory is ignored: the collector then parses everything, as it would without one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyarrow._compute import ReplaceSliceOptions

from jobs.atomic import replacing
from jobs.manifest import RESULT
from results import columns

# Bump when the parser's output or this file's layout changes: older caches are then ignored.
VERSION = 1
FILE = "collect-cache.arrow"
REPORTS = "reports"
# Sweeps with fewer result files are parsed every time: that costs less than a cache file.
MIN_FILES = 512
_KEYS = ("\x00name", "\x00size", "\x00mtime_ns", "\x00ino")
_META = b"slurmsweep.collect_cache"
# zstd: a third of the bytes to read from a shared filesystem, and faster to read back than
# the uncompressed file (0.02-0.05 s against 0.1 s for 100,000 rows here).
_WRITE = pa.ipc.IpcWriteOptions(compression="zstd")


@dataclass
class Cached:
    """One sweep's cached results."""
    table: pa.Table                     # result columns and `path`
    names: pa.Array                     # trial directory name of each row
    keys: np.ndarray                    # (rows, 3) int64: size, mtime_ns, inode
    bad: dict[str, tuple[str, tuple[int, int, int]]] = field(default_factory=dict)   # name -> (why, key)
    missing: set[str] = field(default_factory=set)     # trial directories without a result file
    index: dict[str, list[int]] | None = None          # result index positions read up to
    written_ns: int = 0
    trials_mtime: int = -1              # the trials/ directory's mtime when it was listed


def user_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "slurmsweep", "collect")


def locations(sweep_dir: str) -> tuple[str, str]:
    """(the sweep's own cache file, this user's cache file for the sweep)."""
    real = os.path.realpath(sweep_dir)
    digest = hashlib.sha1(real.encode()).hexdigest()[:16]
    return (os.path.join(sweep_dir, REPORTS, FILE),
            os.path.join(user_dir(), f"{digest}-{os.path.basename(real)[:60]}.arrow"))


def _meta(path: str) -> dict | None:
    """The cache's metadata from the file's footer (the rows are not read)."""
    try:
        with pa.OSFile(path, "rb") as source:
            raw = (pa.ipc.open_file(source).schema.metadata or {}).get(_META)
        meta = json.loads(raw) if raw else None
    except (OSError, ValueError, pa.ArrowException):
        return None
    return meta if isinstance(meta, dict) and meta.get("version") == VERSION else None


def load(sweep_dir: str, name: str, prefix: str) -> Cached | None:
    """The newer valid cache of this sweep, or None. `prefix` (the trials directory as the
    caller reaches it) makes the `path` column; a sweep reached by another path gets its own."""
    best, best_meta = None, None
    real = os.path.realpath(sweep_dir)
    for path in locations(sweep_dir):
        meta = _meta(path)
        if meta is None or meta.get("sweep") != real or meta.get("name") != name:
            continue
        if best_meta is None or meta.get("written_ns", 0) > best_meta.get("written_ns", 0):
            best, best_meta = path, meta
    if best is None:
        return None
    try:
        # Read, not memory-mapped: on NFS another host may replace the file while we use it.
        with pa.OSFile(best, "rb") as source:
            table = pa.ipc.open_file(source).read_all()
        names = table.column(_KEYS[0]).combine_chunks()
        keys = np.stack([columns.to_numpy(table.column(k)) for k in _KEYS[1:]], axis=1).astype(np.int64, copy=False)
        rows = table.drop_columns(list(_KEYS)).replace_schema_metadata(None)
        if best_meta.get("prefix") != prefix and "path" in rows.column_names:
            rows = rows.set_column(rows.schema.get_field_index("path"), "path",
                                   rows_path(prefix, names, f"{os.sep}{RESULT}"))
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return Cached(table=rows, names=names, keys=keys.reshape(len(names), 3),
                  bad={n: (why, tuple(k)) for n, why, *k in best_meta.get("bad", [])},
                  missing=set(best_meta.get("missing", [])), index=best_meta.get("index"),
                  written_ns=int(best_meta.get("written_ns", 0)), trials_mtime=int(best_meta.get("trials_mtime", -1)))


def usable(table: pa.Table) -> bool:
    """False when a result column's name could be taken for one of the cache's own."""
    return not any(name.startswith("\x00") for name in table.column_names)


def save(sweep_dir: str, name: str, prefix: str, cached: Cached) -> str | None:
    """Write the cache (atomically, no fsync: losing it costs one slow collect); returns where,
    or None when neither place is writable."""
    meta = {"version": VERSION, "sweep": os.path.realpath(sweep_dir), "name": name,
            "written_ns": cached.written_ns or time.time_ns(), "index": cached.index, "prefix": prefix,
            "trials_mtime": cached.trials_mtime,
            "bad": [[n, why, *key] for n, (why, key) in sorted(cached.bad.items())],
            "missing": sorted(cached.missing)}
    table = cached.table
    for key, values in zip(_KEYS, (cached.names, *cached.keys.T)):
        table = table.append_column(key, values if isinstance(values, (pa.Array, pa.ChunkedArray))
                                    else columns.numbers(np.ascontiguousarray(values, dtype=np.int64)))
    table = table.replace_schema_metadata({_META: json.dumps(meta)})
    own, mine = locations(sweep_dir)
    for path in (own, mine):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with (replacing(path, fsync=False) as tmp, pa.OSFile(tmp, "wb") as sink,
                  pa.ipc.new_file(sink, table.schema, options=_WRITE) as writer):
                writer.write_table(table)
            return path
        except (OSError, pa.ArrowException):
            continue
    return None


def rows_path(prefix: str, names: pa.Array | pa.ChunkedArray, suffix: str) -> pa.Array:
    """`path` of each cached row: <trials dir>/<name>/result.json, wherever the sweep is now."""
    # Inserting at the start and past the end (no pa.scalar: see results.columns).
    head = columns.compute("utf8_replace_slice", columns.cast(names, columns.TEXT), options=ReplaceSliceOptions(0, 0, prefix))
    return columns.compute("utf8_replace_slice", head, options=ReplaceSliceOptions(1 << 40, 1 << 40, suffix))
