"""Collected results as Arrow columns: typed as pandas would type the same cells, concatenated
across chunks and sweeps, fixed once, and turned into pandas only for those who ask.

Why Arrow and not pandas in the middle: `sweep collect DIR --format csv --out F` is a command
that researchers run again and again; importing pandas costs 0.25-0.35 s of its budget, and
pandas' CSV writer takes 0.9 s for 100,000 rows where Arrow's takes 0.1-0.2 s. So the collector
and its cache speak Arrow, and `to_pandas` is called by the paths that filter, sort or analyse.

pyarrow's own constructors (pa.array, pa.scalar, Array.to_numpy) import pandas on their first
call, to check for pandas objects: the helpers below build arrays from numpy buffers and
StringBuilder instead, so that the path that needs no pandas never loads it.

Cells of one column that mix types (numbers next to text after schema drift; integers beyond
64 bits) have no Arrow type: such a column holds each cell as JSON text and says so in its field
metadata; `to_pandas` gives back the Python values, `display_text` what a CSV shows.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow._compute as _compute

# Field metadata marking a column whose cells are JSON texts (mixed types).
_CELLS = b"slurmsweep.cells"
_JSON = b"json"
TEXT = pa.string()
# Whole-number columns that stay integers with gaps (stage 0, 1, 2 rather than 0.0, 1.0).
INT_COLUMNS = ("stage", "trial", "job.attempt")
_NUMBERS = frozenset({int, float})
_NONE = type(None)
Piece = tuple[np.ndarray, Sequence, set]     # row numbers, their values, the values' types


# --- arrays without pa.array (see the module docstring) -----------------------------------

class _NoPandas:
    """An import hook that says pandas is not installed (see without_pandas)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not used in a collect worker")
        return None


def without_pandas() -> None:
    """For the collector's parsing processes (a pool initializer): they never hold a pandas
    object, so pyarrow is told there is no pandas, and pa.array -- 5x faster than StringBuilder
    for text -- then costs no pandas import. Where pandas is loaded already, nothing changes."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def _pa_array_is_cheap() -> bool:
    return "pandas" in sys.modules or any(isinstance(f, _NoPandas) for f in sys.meta_path)


def text(values: Sequence) -> pa.Array:
    """Python str/None values -> a string array."""
    values = values.tolist() if isinstance(values, np.ndarray) else values if isinstance(values, list) else list(values)
    if _pa_array_is_cheap():
        return pa.array(values, type=TEXT)
    builder = pa.lib.StringBuilder()
    builder.append_values(values)
    return builder.finish()


def numbers(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numeric numpy array (int64, float64, int8 ...) -> an Arrow array; `valid` marks non-null cells."""
    values = np.ascontiguousarray(values)
    bitmap = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [bitmap, pa.py_buffer(values)])


def booleans(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    bitmap = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values),
                                 [bitmap, pa.py_buffer(np.packbits(np.asarray(values, dtype=bool), bitorder="little"))])


def repeat_text(value: str, n: int) -> pa.Array:
    return cast(pa.DictionaryArray.from_arrays(numbers(np.zeros(n, dtype=np.int32)), text([value])), TEXT)


def to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric array without nulls as numpy (a copy when chunked)."""
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            array = array.chunk(0)
        else:
            dtype = array.type.to_pandas_dtype()
            return np.concatenate([to_numpy(c) for c in array.chunks]) if array.num_chunks else np.empty(0, dtype)
    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def compute(name: str, *args: Any, options: Any = None) -> Any:
    """An Arrow compute function by name. (pyarrow.compute, which Array.take/filter/cast import,
    builds a wrapper per function with its docstring: 25-40 ms at the first call.)"""
    return _compute.call_function(name, list(args), options)


def take(data: Any, indices: np.ndarray) -> Any:
    return compute("take", data, numbers(np.asarray(indices, dtype=np.int64)))


def keep(data: Any, mask: np.ndarray) -> Any:
    return compute("filter", data, booleans(mask))


def cast(data: Any, to: pa.DataType) -> Any:
    return compute("cast", data, options=_compute.CastOptions.safe(to))


def empty() -> pa.Table:
    return pa.schema([]).empty_table()


# --- typing cells -------------------------------------------------------------------------

def is_mixed(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(_CELLS) == _JSON


def _mixed_field(name: str) -> pa.Field:
    return pa.field(name, TEXT, metadata={_CELLS: _JSON})


def _json_cells(values: Sequence) -> pa.Array:
    return text([None if v is None else json.dumps(v) for v in values])


def build(n: int, pieces: list[Piece]) -> tuple[pa.Array, bool]:
    """n cells from pieces, typed as pandas types the list of them; True when mixed (JSON)."""
    kinds: set[type] = set()
    covered = 0
    for _, values, types in pieces:
        kinds |= types
        covered += len(values)
    missing = covered < n or _NONE in kinds
    kinds.discard(_NONE)
    if not kinds:
        return pa.nulls(n), False
    if kinds <= _NUMBERS:
        dtype = np.int64 if kinds == {int} and not missing else np.float64
        out = np.full(n, np.nan) if missing else np.empty(n, dtype)
        try:
            for idx, values, _ in pieces:
                out[idx] = np.asarray(values).astype(dtype)   # None -> NaN, as pandas would
            # NaN is missing, as in pandas (its CSV writes it empty); +-inf stay.
            return numbers(out, ~np.isnan(out) if dtype is np.float64 else None), False
        except OverflowError:                               # an int beyond 64 bits: pandas keeps it as object
            pass
    if kinds == {str}:
        return _text(n, pieces, covered), False
    cells = _scatter(n, pieces)
    if kinds == {bool}:
        valid = cells != None  # noqa: E711 - elementwise
        return booleans(np.where(valid, cells, False).astype(bool), valid), False
    return _json_cells(cells), True


def _scatter(n: int, pieces: list[Piece]) -> np.ndarray:
    cells = np.full(n, None, dtype=object)
    for idx, values, _ in pieces:
        cells[idx] = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=object, count=len(values))
    return cells


def _text(n: int, pieces: list[Piece], covered: int) -> pa.Array:
    """Each piece converted as it is, then put in row order by one `take` in Arrow (no pass
    over the Python strings to scatter them)."""
    arrays = [text(values) for _, values, _ in pieces]
    if len(arrays) == 1 and covered == n and np.array_equal(pieces[0][0], np.arange(n)):
        return arrays[0]
    source = np.full(n, covered, dtype=np.int64)            # rows no piece has: the null appended below
    source[np.concatenate([idx for idx, _, _ in pieces])] = np.arange(covered)
    return take(pa.concat_arrays([*arrays, pa.nulls(1, TEXT)]), source)


def table(columns: dict[str, tuple[pa.Array, bool]]) -> pa.Table:
    fields = [_mixed_field(name) if mixed else pa.field(name, array.type) for name, (array, mixed) in columns.items()]
    return pa.Table.from_arrays([array for array, _ in columns.values()], schema=pa.schema(fields))


# --- many tables -> one -------------------------------------------------------------------

def _target(fields: list[pa.Field]) -> pa.Field:
    """The one field that holds every piece of a column (as pandas' concat would type it)."""
    name = fields[0].name
    if any(is_mixed(f) for f in fields):
        return _mixed_field(name)
    types = {f.type for f in fields} - {pa.null()}
    if not types:
        return pa.field(name, pa.null())
    if len(types) == 1:
        return pa.field(name, types.pop())
    if types <= {pa.int64(), pa.float64()}:
        return pa.field(name, pa.float64())
    if types <= {pa.string(), pa.large_string()}:
        return pa.field(name, TEXT)
    return _mixed_field(name)


def _conform(column: pa.ChunkedArray | pa.Array, have: pa.Field, want: pa.Field) -> pa.ChunkedArray | pa.Array:
    if have.type == want.type and is_mixed(have) == is_mixed(want):
        return column
    if is_mixed(want):
        if have.type == pa.null():
            return pa.nulls(len(column), TEXT)
        return _json_cells(column.to_pylist())
    return cast(column, want.type)


def concat(tables: list[pa.Table]) -> pa.Table:
    """Rows of every table in order; columns in first-seen order; types unified (int and
    float -> float; anything else that differs -> mixed JSON cells); absent cells null."""
    tables = [t for t in tables if t.num_rows or t.num_columns]
    if not tables:
        return empty()
    if len(tables) == 1:
        return tables[0]
    by_name: dict[str, list[pa.Field]] = {}
    for t in tables:
        for f in t.schema:
            by_name.setdefault(f.name, []).append(f)
    schema = pa.schema([_target(fields) for fields in by_name.values()])
    parts = []
    for t in tables:
        arrays = []
        for want in schema:
            i = t.schema.get_field_index(want.name)
            arrays.append(pa.nulls(t.num_rows, want.type) if i < 0 else _conform(t.column(i), t.schema.field(i), want))
        parts.append(pa.Table.from_arrays(arrays, schema=schema))
    return pa.concat_tables(parts)


def reorder(t: pa.Table, names: list[str]) -> pa.Table:
    return t if t.column_names == names else t.select(names)


# --- fixing types once, on everything -----------------------------------------------------

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


def decode(column: pa.ChunkedArray | pa.Array) -> list:
    return [None if v is None else json.loads(v) for v in column.to_pylist()]


def fix_types(t: pa.Table) -> pa.Table:
    """Drifted metric and hyperparameter columns (numbers next to numeric text) become numbers;
    whole-number id columns with gaps become integers. Done once, on all rows: a column's type
    must not depend on how files were chunked or which of them came from a cache."""
    for i, f in enumerate(t.schema):
        numeric_kind = f.name.startswith(("hp.", "results.")) or f.name in ("runtime_s",) + INT_COLUMNS
        if numeric_kind and is_mixed(f):
            values = _numeric([None if isinstance(v, float) and math.isnan(v) else v for v in decode(t.column(i))])
            if values is not None:
                floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
                t = t.set_column(i, pa.field(f.name, pa.float64()), numbers(floats, ~np.isnan(floats)))
    for name in INT_COLUMNS:
        i = t.schema.get_field_index(name)
        if i >= 0 and t.schema.field(i).type == pa.float64():
            col = t.column(i)
            whole = to_numpy(compute("drop_null", col))
            # Beyond int64 (a trial number of 2**70) no integer column holds it: it stays float.
            if len(whole) and bool(((whole % 1 == 0) & (np.abs(whole) < 2.0 ** 63)).all()):
                t = t.set_column(i, name, cast(col, pa.int64()))
    return t


# --- leaving Arrow ------------------------------------------------------------------------

def to_pandas(t: pa.Table) -> Any:
    """The pandas DataFrame of `t`: mixed columns as Python objects, whole-number id columns
    with gaps as Int64; everything else as Arrow converts it (text -> str, NaN for null numbers,
    object for booleans with gaps)."""
    import pandas as pd

    mixed = [f.name for f in t.schema if is_mixed(f)]
    plain = t.drop_columns(mixed) if mixed else t
    frame = plain.to_pandas()
    for name in mixed:
        frame.insert(t.schema.get_field_index(name), name, pd.Series(decode(t.column(name)), dtype=object))
    for name in INT_COLUMNS:
        if name in frame and t.schema.field(name).type == pa.int64() and t.column(name).null_count:
            frame[name] = pd.array(t.column(name).to_pylist(), dtype="Int64")
    return frame


def from_pandas(frame: Any) -> pa.Table:
    """Back to Arrow (for writers given a filtered or sorted DataFrame): object columns whose
    cells are not of one Arrow type become mixed."""
    import pandas as pd

    columns = {}
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object:
            kinds = {type(v) for v in col if v is not None and not (isinstance(v, float) and math.isnan(v))}
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in col]
            if kinds <= {str}:
                columns[name] = (pa.array(values, type=TEXT), False)
            elif kinds == {bool}:
                columns[name] = (pa.array(values, type=pa.bool_()), False)
            else:
                columns[name] = (_json_cells(values), True)
        elif isinstance(col.dtype, pd.Int64Dtype):
            columns[name] = (pa.array(col.astype(object).where(col.notna(), None).tolist(), type=pa.int64()), False)
        else:
            array = pa.array(col, from_pandas=True)
            columns[name] = (cast(array, TEXT) if pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
                             else array, False)
    return table(columns)


def display_text(t: pa.Table, *, bools: bool) -> pa.Table:
    """What a CSV or parquet file shows: mixed cells as their text (True, 2.5, abc), as
    pandas' str() would write them; with `bools`, booleans as True/False (pandas' spelling)."""
    for i, f in enumerate(t.schema):
        if is_mixed(f):
            cells = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in decode(t.column(i))]
            t = t.set_column(i, f.name, text(cells))
        elif bools and f.type == pa.bool_():
            words = [cast(pa.DictionaryArray.from_arrays(cast(c, pa.int8()), text(["False", "True"])), TEXT)
                     for c in t.column(i).chunks]
            t = t.set_column(i, f.name, pa.chunked_array(words, type=TEXT))
    return t
