"""Result files -> columns -> one DataFrame. The hot loop of `sweep collect`.

Most files of a sweep share one key layout. Such files are kept as plain rows of values
(no dict per row, no per-value name lookup), and the types of each row's values as one
tuple, so that at the end each column is typed without visiting its values again, then
built with numpy (numbers) or Arrow (text) and put in row order (results.columns). Files that
fit no layout (nested values, two keys for one column, foreign shapes) are flattened value by
value: `flatten_record` shows what one file becomes. See results.collect for the column names.

No pandas here: the collector's workers and its cached path never import it (results.columns).
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from results import columns as C

try:  # optional: ~4x faster parsing; it rejects NaN/Infinity tokens, so json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

# Meta columns, in display order. Everything else follows: job.*, hp.*, results.*, extras, path.
META = ("sweep", "user", "trial", "trial_id", "stage", "environment", "status", "cause", "runtime_s", "error",
        "timestamp", "job.id", "job.node", "job.attempt", "job.gpu")
_META_KEYS = frozenset(META)
RESULT_KEYS = ("results", "metrics")
HP_KEYS = ("hyperparameters", "params", "hparams", "config")
ENV_KEYS = ("environment", "env", "task", "group")
_RESERVED = _META_KEYS | {"path", "schema"}
_READ_SIZE = 1 << 16


_fast_loads = _orjson.loads if _orjson is not None else json.loads


def _loads_or_why(data: bytes) -> tuple[Any, str | None]:
    """The document, or why the file is not JSON. For what orjson refuses: NaN and
    +-Infinity tokens (which Python's json reads as floats), and the really corrupt."""
    try:
        return json.loads(data), None
    except UnicodeDecodeError:
        return None, "corrupt (not UTF-8 text)"
    except ValueError as exc:   # json.JSONDecodeError
        return None, "empty file" if not data.strip() else f"corrupt JSON ({exc})"
    except RecursionError:
        return None, "corrupt JSON (nested too deeply)"


def _first(obj: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if k in obj:
            return k
    return None


def _meta_name(k: str, ekey: str | None) -> str:
    if k == ekey:
        return "environment"
    if k in _META_KEYS:
        return k
    return f"extra.{k}" if k in _RESERVED else k


def _as_cell(v: Any) -> Any:
    # Lists (a swept layer-size list) become their JSON text: every cell stays a scalar.
    return json.dumps(v, default=str) if isinstance(v, (list, tuple)) else v


class _Plan:
    """One key layout: the values of a file with this layout, in `names` order, are one row.

    Rows go end to end into one flat list. The value types of each row are looked up in
    `types` (a few distinct tuples per layout), which tells whether the row can stay as it is,
    holds lists to turn into text, or nested objects for the slow path; at the end the column
    types are read off those tuples. (Touching every value again, column by column, costs
    more than anything else here: the values lie all over memory.)
    """

    __slots__ = ("names", "meta", "with_sweep", "status_value", "flat", "types", "idx")

    def __init__(self, names: list[str], meta_keys: tuple[str, ...], with_sweep: bool,
                 status_value: str | None) -> None:
        self.names = names
        # The other top-level values of a file, as a tuple (itemgetter: one C call).
        self.meta: Callable[[dict], tuple] = (
            itemgetter(*meta_keys) if len(meta_keys) > 1 else
            (lambda obj, k=meta_keys[0]: (obj[k],)) if meta_keys else (lambda obj: ()))
        self.with_sweep, self.status_value = with_sweep, status_value
        self.flat: list = []
        self.types: dict[tuple, int] = {}
        self.idx: list[int] = []            # the row number of each row


class _Layout:
    """What a file's top-level keys decide: which keys hold the sections; and the plans
    of the files with these keys, by the keys of their sections."""

    __slots__ = ("hkey", "rkey", "plans")

    def __init__(self, obj: dict) -> None:
        self.hkey, self.rkey = _first(obj, HP_KEYS), _first(obj, RESULT_KEYS)
        self.plans: dict[tuple, _Plan | None] = {}


# What a row's value types say: keep it as it is, turn its lists into text, or flatten it.
_PLAIN, _LISTS, _NESTED = 1, 2, 0


def _verdict(types: tuple) -> int:
    return _NESTED if dict in types else _LISTS if (list in types or tuple in types) else _PLAIN


_EMPTY: dict = {}
_MAX_PLANS = 128
Piece = C.Piece


class Columns:
    """Row builder: files with a known layout go to a `_Plan`, anything else is flattened
    value by value into `slow`."""

    def __init__(self) -> None:
        self.n = 0                          # rows so far
        self.slow: dict[str, tuple[list[int], list]] = {}    # column -> (row numbers, values)
        self._layouts: dict[tuple, _Layout] = {}
        self._plans: list[_Plan] = []

    # --- the fast path: two lookups and one list per row ---

    def add(self, obj: Any, sweep: str | None) -> str | None:
        """Append one parsed document as a row; returns why it is not a result, else None."""
        if type(obj) is not dict:
            return self._slow(obj, sweep)
        top = (tuple(obj), sweep is None)
        layout = self._layouts.get(top)
        if layout is None:
            layout = self._layouts[top] = _Layout(obj)
        hkey, rkey = layout.hkey, layout.rkey
        h = obj[hkey] if hkey else _EMPTY
        r = obj[rkey] if rkey else _EMPTY
        if (hkey or rkey) and type(h) is dict and type(r) is dict:
            j = obj.get("job")
            if type(j) is not dict:
                j = None
            sections = (tuple(h), tuple(r), tuple(j) if j is not None else None)
            plan = layout.plans.get(sections, False)
            if plan is False:
                # Each layout costs a little at the end; past _MAX_PLANS (keys written in a
                # random order, say) the slow path is cheaper for the rest.
                plan = None if len(self._plans) >= _MAX_PLANS else self._make_plan(obj, hkey, rkey, h, r, j, sweep)
                layout.plans[sections] = plan
                if plan is not None:
                    self._plans.append(plan)
            if plan is not None:
                vals = [*h.values(), *r.values(), *(j.values() if j is not None else ()), *plan.meta(obj)]
                if plan.with_sweep:
                    vals.append(sweep)
                types = tuple(map(type, vals))
                verdict = plan.types.get(types)
                if verdict is None:
                    verdict = plan.types[types] = _verdict(types)
                if verdict != _NESTED:
                    if verdict == _LISTS:
                        vals = [_as_cell(v) for v in vals]
                        plan.types.setdefault(tuple(map(type, vals)), _PLAIN)
                    plan.flat.extend(vals)
                    plan.idx.append(self.n)
                    self.n += 1
                    return None
        return self._slow(obj, sweep)

    @staticmethod
    def _make_plan(obj: dict, hkey: str | None, rkey: str | None, h: dict, r: dict, j: dict | None,
                   sweep: str | None) -> _Plan | None:
        ekey = _first(obj, ENV_KEYS)
        meta_keys = tuple(k for k in obj if k not in (hkey, rkey, "schema") and not (k == "job" and j is not None))
        names = ([f"hp.{k}" for k in h] + [f"results.{k}" for k in r] + [f"job.{k}" for k in (j or ())]
                 + [_meta_name(k, ekey) for k in meta_keys])
        with_sweep = sweep is not None and "sweep" not in obj
        if with_sweep:
            names.append("sweep")
        status_value = None if "status" in obj else ("completed" if r else "unknown")
        if len(set(names)) != len(names) or (status_value is not None and "status" in names):
            return None   # two keys map to one column: only the slow path handles that
        return _Plan(names, meta_keys, with_sweep, status_value)

    # --- the slow path: any shape, value by value ---

    def _put(self, key: str, v: Any) -> None:
        # Sparse: (row numbers, values) per column, so that wide drifting files cost what they hold.
        col = self.slow.get(key)
        if col is None:
            self.slow[key] = col = ([], [])
        rows, values = col
        if rows and rows[-1] == self.n:   # one name twice in a file (a.b nested, "a.b" flat): the last wins
            values[-1] = v
        else:
            rows.append(self.n)
            values.append(v)

    def _section(self, d: dict, prefix: str) -> None:
        for k, v in d.items():
            if type(v) is dict:
                self._section(v, f"{prefix}{k}.")
            else:
                self._put(f"{prefix}{k}", _as_cell(v))

    def _slow(self, obj: Any, sweep: str | None) -> str | None:
        if not isinstance(obj, dict):
            return f"not a result (a JSON {type(obj).__name__}, expected an object)"
        rkey, hkey = _first(obj, RESULT_KEYS), _first(obj, HP_KEYS)
        if rkey is None and hkey is None:
            return "not a result (no 'results' or 'hyperparameters' key)"
        results = obj[rkey] if rkey else None
        hps = obj[hkey] if hkey else None
        for key, value in ((rkey, results), (hkey, hps)):
            if value is not None and not isinstance(value, dict):
                return f"'{key}' is a {type(value).__name__}, expected an object"
        ekey = _first(obj, ENV_KEYS)
        if sweep is not None and "sweep" not in obj:
            self._put("sweep", sweep)
        if hps:
            self._section(hps, "hp.")
        if results:
            self._section(results, "results.")
        for k, v in obj.items():
            if k == rkey or k == hkey or k == "schema":
                continue
            if k == "job" and isinstance(v, dict):
                self._section(v, "job.")
            elif isinstance(v, dict) and k != ekey and k not in _META_KEYS:
                self._section(v, f"{k}.")
            else:
                self._put(_meta_name(k, ekey), json.dumps(v, default=str) if isinstance(v, (dict, list)) else v)
        if "status" not in obj:
            # Older flat files carry no status: having results is what "completed" meant there.
            self._put("status", "completed" if results else "unknown")
        self.n += 1
        return None

    # --- columns -> one DataFrame ---

    def pieces(self) -> dict[str, list[Piece]]:
        """Each column as pieces (row numbers, values, their types), one per layout that has it."""
        out: dict[str, list[Piece]] = {}
        for plan in self._plans:
            if not plan.idx:
                continue
            idx = np.array(plan.idx, dtype=np.intp)
            cells = np.fromiter(plan.flat, dtype=object, count=len(plan.flat)).reshape(len(idx), -1)
            rows = [types for types, verdict in plan.types.items() if verdict == _PLAIN]
            for j, name in enumerate(plan.names):
                out.setdefault(name, []).append((idx, cells[:, j], {types[j] for types in rows}))
            if plan.status_value is not None:
                out.setdefault("status", []).append((idx, [plan.status_value] * len(idx), {str}))
        for name, (rows, values) in self.slow.items():
            out.setdefault(name, []).append((np.array(rows, dtype=np.intp), values, set(map(type, values))))
        return out

    def table(self, extra: dict[str, list] | None = None) -> pa.Table:
        """One Arrow table, rows in the order they were added; `extra` columns are already in it.
        Drifted columns are fixed later, once, by `columns.fix_types` on everything: a chunk
        does not see the other chunks' values, and a column's type must not depend on chunking."""
        pieces = self.pieces()
        everything = np.arange(self.n)
        for name, values in (extra or {}).items():
            pieces[name] = [(everything, values, set(map(type, values)))]
        # In display order already: chunks that agree on their columns concatenate in order.
        return C.table({name: C.build(self.n, pieces[name]) for name in column_order(pieces)})


def flatten_record(obj: Any, sweep: str | None = None) -> dict[str, Any] | str:
    """One parsed JSON document -> its flat row (column -> value), or why it is not a result.
    (The slow path alone: the reference the fast path is tested against.)"""
    cols = Columns()
    bad = cols._slow(obj, sweep)
    return bad if bad is not None else {k: values[0] for k, (_, values) in cols.slow.items()}


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Millions of small dicts, lists and tuples, none of them cyclic: the cyclic GC would
    only rescan them (and pandas' own objects) again and again."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


KEY_FIELDS = 3      # size, mtime_ns, inode


@dataclass
class Part:
    """What one chunk of files gave."""
    table: pa.Table                  # the good files' rows, with a `path` column
    rows: np.ndarray                 # each row's item number (its position in the chunk)
    keys: np.ndarray                 # (items, KEY_FIELDS) int64: size, mtime_ns, inode; -1 where none
    bad: list[tuple[int, str]] = field(default_factory=list)   # item number, why it is no result
    read: int = 0                    # files that exist (good or bad)


def parse_chunk(items: list[tuple[str, str | None]]) -> Part:
    """Parse (path, default sweep name) pairs into an Arrow table with a `path` column.

    Each file costs os.open/fstat/read/close, inlined here (open() would add an ioctl and
    buffer objects; a function per file costs 6% of the loop). A file that does not exist is a
    trial that has not finished yet, not a bad file; fstat gives the (size, mtime_ns, inode)
    the collect cache keeps."""
    cols = Columns()
    add, fast_loads = cols.add, _fast_loads
    o_open, o_fstat, o_read, o_close, rdonly = os.open, os.fstat, os.read, os.close, os.O_RDONLY
    paths: list[str] = []
    rows: list[int] = []
    keys = np.full((len(items), KEY_FIELDS), -1, dtype=np.int64)
    stats: list[tuple[int, os.stat_result]] = []
    bad: list[tuple[int, str]] = []
    read = 0
    with no_gc():
        for i, (path, sweep) in enumerate(items):
            try:
                fd = o_open(path, rdonly)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                read += 1
                bad.append((i, f"unreadable ({exc.strerror or exc})"))
                continue
            read += 1
            try:
                stats.append((i, o_fstat(fd)))
                data = o_read(fd, _READ_SIZE)
                if len(data) == _READ_SIZE:
                    parts = [data]
                    while chunk := o_read(fd, _READ_SIZE):
                        parts.append(chunk)
                    data = b"".join(parts)
            except OSError as exc:
                bad.append((i, f"unreadable ({exc.strerror or exc})"))
                continue
            finally:
                o_close(fd)
            try:
                obj = fast_loads(data)
            except (ValueError, RecursionError):
                obj, why = _loads_or_why(data)
                if why is not None:
                    bad.append((i, why))
                    continue
            reason = add(obj, sweep)
            if reason is not None:
                bad.append((i, reason))
            else:
                paths.append(path)
                rows.append(i)
        for i, st in stats:
            keys[i] = (st.st_size, st.st_mtime_ns, st.st_ino)
        # Built here, in the worker: an Arrow table pickles back as a few buffers.
        table = cols.table({"path": paths})
    return Part(table, np.array(rows, dtype=np.int64), keys, bad, read)


def column_order(columns: set[str] | list[str]) -> list[str]:
    cols = set(columns)
    meta = [c for c in META if c in cols]
    hp = sorted(c for c in cols if c.startswith("hp."))
    res = sorted(c for c in cols if c.startswith("results."))
    job = sorted(c for c in cols if c.startswith("job.") and c not in _META_KEYS)
    rest = sorted(cols - set(meta) - set(hp) - set(res) - set(job) - {"path"})
    return meta + job + hp + res + rest + (["path"] if "path" in cols else [])
