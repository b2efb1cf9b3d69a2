"""Result files -> columns -> one DataFrame. The hot loop of `sweep collect`.

Rows are written straight into per-column lists (no intermediate dict per row, prefixed
names cached), so that 100k files cost little more than reading them. See results.collect
for the column names; `flatten_record` shows what one file becomes.
"""
from __future__ import annotations

import gc
import json
import os
from typing import Any

import numpy as np
import pandas as pd

try:  # optional: ~4x faster parsing; it rejects NaN/Infinity tokens, so json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

# Meta columns, in display order. Everything else follows: job.*, hp.*, results.*, extras, path.
META = ("sweep", "trial", "trial_id", "stage", "environment", "status", "runtime_s", "error",
        "timestamp", "job.id", "job.node", "job.attempt", "job.gpu")
_META_KEYS = frozenset(META)
RESULT_KEYS = ("results", "metrics")
HP_KEYS = ("hyperparameters", "params", "hparams", "config")
ENV_KEYS = ("environment", "env", "task", "group")
_RESERVED = _META_KEYS | {"path", "schema"}
_INT_COLUMNS = ("stage", "trial", "job.attempt")
_READ_SIZE = 1 << 16



def loads(data: bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # NaN/Infinity tokens, or really corrupt: the stdlib parser decides
    return json.loads(data)


def read_bytes(path: str) -> bytes:
    """The whole file with three syscalls (open() would add fstat, ioctl and buffer objects)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:
            parts = [data]
            while chunk := os.read(fd, _READ_SIZE):
                parts.append(chunk)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def _first(obj: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if k in obj:
            return k
    return None


class _Plan:
    """One key layout (the keys of a file, its hyperparameters, results and job, in order).

    Most files of a sweep share a layout: their values are kept as plain rows, and turned
    into columns once at the end (zip, then one numpy scatter per column), instead of paying
    a name lookup and an append per value.
    """

    __slots__ = ("names", "meta_keys", "with_sweep", "status_value", "rows", "idx")

    def __init__(self, names: list[str], meta_keys: tuple[str, ...], with_sweep: bool,
                 status_value: str | None) -> None:
        self.names, self.meta_keys = names, meta_keys
        self.with_sweep, self.status_value = with_sweep, status_value
        self.rows: list[list] = []
        self.idx: list[int] = []


_UNSET = object()
_LISTS = (list, tuple)


class Columns:
    """Row builder: files with a known layout go to a `_Plan`, anything else (nested values,
    renamed sections, foreign shapes) is flattened value by value into `cols`."""

    def __init__(self) -> None:
        self.n = 0                          # rows so far
        self.cols: dict[str, list] = {}     # slow-path rows only, column-wise
        self.slow_n = 0
        self.slow_idx: list[int] = []       # the row number of each slow-path row
        self._plans: dict[tuple, Any] = {}

    def _put(self, key: str, v: Any) -> None:
        col = self.cols.get(key)
        n = self.slow_n
        if col is None:
            self.cols[key] = col = [None] * n
        size = len(col)
        if size == n:
            col.append(v)
        elif size < n:
            col.extend([None] * (n - size))
            col.append(v)
        else:  # the same name twice in one file (a.b nested and "a.b" flat): the last one wins
            col[n] = v

    def _section(self, d: dict, prefix: str) -> None:
        for k, v in d.items():
            if type(v) is dict:
                self._section(v, f"{prefix}{k}.")
            else:
                # Lists (a swept layer-size list) become their JSON text: every cell stays a scalar.
                self._put(f"{prefix}{k}", json.dumps(v, default=str) if type(v) in _LISTS else v)

    @staticmethod
    def _meta_name(k: str, ekey: str | None) -> str:
        if k == ekey:
            return "environment"
        if k in _META_KEYS:
            return k
        return f"extra.{k}" if k in _RESERVED else k

    def add(self, obj: Any, sweep: str | None) -> str | None:
        """Append one parsed document as a row; returns why it is not a result, else None."""
        if type(obj) is dict:
            h, r = obj.get("hyperparameters"), obj.get("results")
            if type(h) is dict and type(r) is dict:
                j = obj.get("job")
                jd = type(j) is dict
                sig = (tuple(obj), tuple(h), tuple(r), tuple(j) if jd else None, sweep is None)
                plan = self._plans.get(sig, _UNSET)
                if plan is _UNSET:
                    plan = self._plans[sig] = self._make_plan(obj, h, r, j if jd else None, sweep)
                if plan is not None:
                    vals = [*h.values(), *r.values(), *(j.values() if jd else ()),
                            *map(obj.__getitem__, plan.meta_keys)]
                    types = set(map(type, vals))
                    if dict not in types:   # nested values need the slow path's flattening
                        if list in types:
                            vals = [json.dumps(v, default=str) if type(v) is list else v for v in vals]
                        if plan.with_sweep:
                            vals.append(sweep)
                        plan.rows.append(vals)
                        plan.idx.append(self.n)
                        self.n += 1
                        return None
        return self._slow(obj, sweep)

    def _make_plan(self, obj: dict, h: dict, r: dict, j: dict | None, sweep: str | None) -> _Plan | None:
        ekey = _first(obj, ENV_KEYS)
        meta_keys = tuple(k for k in obj if k not in ("hyperparameters", "results", "schema")
                          and not (k == "job" and j is not None))
        names = ([f"hp.{k}" for k in h] + [f"results.{k}" for k in r] + [f"job.{k}" for k in (j or ())]
                 + [self._meta_name(k, ekey) for k in meta_keys])
        with_sweep = sweep is not None and "sweep" not in obj
        if with_sweep:
            names.append("sweep")
        status_value = None if "status" in obj else ("completed" if r else "unknown")
        if len(set(names)) != len(names) or (status_value is not None and "status" in names):
            return None   # two keys map to one column: only the slow path handles that
        return _Plan(names, meta_keys, with_sweep, status_value)

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
                self._put(self._meta_name(k, ekey), json.dumps(v, default=str) if isinstance(v, (dict, list)) else v)
        if "status" not in obj:
            # Older flat files carry no status: having results is what "completed" meant there.
            self._put("status", "completed" if results else "unknown")
        self.slow_idx.append(self.n)
        self.slow_n += 1
        self.n += 1
        return None

    def finish(self) -> tuple[dict[str, list], list[int]]:
        """Columns holding every row, grouped by layout (plain list concatenation, no per-value
        work), and the row number of each position, to put them back in file order."""
        groups: list[tuple[dict[str, Any], int]] = []
        order: list[int] = []
        for plan in self._plans.values():
            if plan is None or not plan.rows:
                continue
            cols: dict[str, Any] = dict(zip(plan.names, zip(*plan.rows)))
            if plan.status_value is not None:
                cols["status"] = [plan.status_value] * len(plan.rows)
            groups.append((cols, len(plan.rows)))
            order += plan.idx
        if self.slow_n:
            for col in self.cols.values():
                if len(col) < self.slow_n:
                    col.extend([None] * (self.slow_n - len(col)))
            groups.append((self.cols, self.slow_n))
            order += self.slow_idx
        names = dict.fromkeys(name for cols, _ in groups for name in cols)
        out: dict[str, list] = {}
        for name in names:
            col: list = []
            for cols, count in groups:
                values = cols.get(name)
                col.extend(values if values is not None else [None] * count)
            out[name] = col
        return out, order


def flatten_record(obj: Any, sweep: str | None = None) -> dict[str, Any] | str:
    """One parsed JSON document -> its flat row (column -> value), or why it is not a result."""
    cols = Columns()
    bad = cols.add(obj, sweep)
    return bad if bad is not None else {k: v[0] for k, v in cols.finish()[0].items()}


def read_result(path: str) -> bytes | str | None:
    """The file's bytes, the reason it cannot be read, or None when it does not exist
    (a trial that has not finished yet is not a bad file)."""
    try:
        return read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def parse_chunk(items: list[tuple[str, str | None]]) -> tuple[pd.DataFrame, list[tuple[str, str]], int]:
    """Parse (path, default sweep name) pairs into a DataFrame with a `path` column.
    Also returns the bad files with their reasons, and how many files were read."""
    cols = Columns()
    paths: list[str] = []
    bad: list[tuple[str, str]] = []
    read = 0
    # Millions of small dicts and lists, none of them cyclic: the cyclic GC would only rescan them.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for path, sweep in items:
            data = read_result(path)
            if data is None:
                continue
            read += 1
            if isinstance(data, str):
                bad.append((path, data))
                continue
            try:
                obj = loads(data)
            except UnicodeDecodeError:
                bad.append((path, "corrupt (not UTF-8 text)"))
                continue
            except ValueError as exc:   # json.JSONDecodeError
                bad.append((path, "empty file" if not data.strip() else f"corrupt JSON ({exc})"))
                continue
            except RecursionError:
                bad.append((path, "corrupt JSON (nested too deeply)"))
                continue
            reason = cols.add(obj, sweep)
            if reason is not None:
                bad.append((path, reason))
            else:
                paths.append(path)
        columns, order = cols.finish()
        columns["path"] = [paths[i] for i in order]
        # Built here, in the worker: a DataFrame pickles back ~10x faster than lists of objects.
        frame = build_frame(columns, order)
    finally:
        if gc_was_on:
            gc.enable()
    return frame, bad, read


# --- columns -> one DataFrame ------------------------------------------------------------

def _numeric(values: list) -> list | None:
    """Floats when every non-null cell is a number or numeric text ("nan", "Infinity", "1e-3")."""
    out = []
    for v in values:
        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            out.append(v)
        elif isinstance(v, str):
            try:
                out.append(float(v))
            except ValueError:
                return None
        else:
            return None
    return out


def column_order(columns: set[str] | list[str]) -> list[str]:
    cols = set(columns)
    meta = [c for c in META if c in cols]
    hp = sorted(c for c in cols if c.startswith("hp."))
    res = sorted(c for c in cols if c.startswith("results."))
    job = sorted(c for c in cols if c.startswith("job.") and c not in _META_KEYS)
    rest = sorted(cols - set(meta) - set(hp) - set(res) - set(job) - {"path"})
    return meta + job + hp + res + rest + (["path"] if "path" in cols else [])


_NUMBERS = frozenset({int, float})


def _typed(values: list) -> Any:
    """Numbers straight to a numpy array (3x faster than pandas' per-value inference, and
    most columns are numbers); anything else is left for pandas to infer."""
    kinds = set(map(type, values))
    missing = type(None) in kinds
    kinds.discard(type(None))
    if not kinds or not kinds <= _NUMBERS:
        return values
    try:
        if kinds == {int} and not missing:
            return np.array(values, dtype=np.int64)
        return np.array(values, dtype=float)      # None -> NaN, as pandas would
    except OverflowError:                          # an int beyond 64 bits: pandas keeps it as object
        return values


def build_frame(columns: dict[str, list], order: list[int] | None = None) -> pd.DataFrame:
    """One DataFrame from columns; `order[k]` is the row number of position k (see Columns.finish)."""
    frame = pd.DataFrame({name: _typed(values) for name, values in columns.items()})
    if order is not None and any(a > b for a, b in zip(order, order[1:])):
        frame = frame.take(np.argsort(np.asarray(order), kind="stable")).reset_index(drop=True)
    return fix_types(frame)


def fix_types(frame: pd.DataFrame) -> pd.DataFrame:
    """After the one construction, only drifted columns (numbers next to text) are fixed."""
    fixed: dict[str, Any] = {}
    # After a concat of chunks, a column that one chunk lacked is object: floats and None must
    # become float again, and text str, as they are after one construction.
    loose = [c for c in frame.columns if frame[c].dtype == object]
    for name in loose:
        inferred = frame[name].infer_objects()
        if inferred.dtype != object:
            fixed[name] = inferred
    if fixed:
        frame = frame.assign(**fixed)
        fixed = {}
    for name in frame.columns:
        numeric_kind = name.startswith(("hp.", "results.")) or name in ("runtime_s",) + _INT_COLUMNS
        if numeric_kind and frame[name].dtype == object:
            values = _numeric([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v
                               for v in frame[name].tolist()])
            if values is not None:
                fixed[name] = pd.Series(values, dtype=float, index=frame.index)
    if fixed:
        frame = frame.assign(**fixed)
    # Whole-number columns with gaps stay integers (stage 0, 1, 2 rather than 0.0, 1.0).
    for name in _INT_COLUMNS:
        if name in frame and frame[name].dtype == float:
            col = frame[name]
            if col.notna().any() and (col.dropna() % 1 == 0).all():
                frame[name] = col.astype("Int64")
    return frame
