"""trials/<id>/result.json: the one writer (the task runner) and the readers of result files.

    read_result(sweep_dir, trial_id)        one trial's result, or None
    read_results(sweep_dir, trial_ids)      {trial id: result} for those that have one
    write_result(sweep_dir, result)         once, atomically; then a line in the sweep's result index

Stdlib only: every array task writes its result through here.
"""
from __future__ import annotations

import json
import math
import os
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Iterable

from jobs import manifest as mf
from jobs.atomic import write_json_atomic

RESULT_SCHEMA = 1
# Keys of the metrics object a program writes that the runner treats as instructions, not results.
RESERVED_KEYS = ("status", "error")


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_result(sweep_dir: str | os.PathLike, trial_id: str) -> dict[str, Any] | None:
    return _load(os.path.join(os.fspath(sweep_dir), mf.TRIALS, trial_id, mf.RESULT))


def read_results(sweep_dir: str | os.PathLike, trial_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{trial id: result} for every trial that has one (one scandir, then one open each)."""
    # Plain string paths: at 10,000 trials pathlib's object churn costs more than the reads.
    root = os.path.join(os.fspath(sweep_dir), mf.TRIALS)
    try:
        present = {e.name for e in os.scandir(root)}
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for tid in trial_ids:
        if tid in present:
            data = _load(f"{root}{os.sep}{tid}{os.sep}{mf.RESULT}")
            if data is not None:
                out[tid] = data
    return out


def write_result(sweep_dir: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write a trial's result.json atomically, then note it in the sweep's result index (what lets
    `sweep collect` re-read only what changed)."""
    from jobs import result_index

    write_json_atomic(mf.result_path(sweep_dir, result["trial_id"]), result, indent=1)
    result_index.append(sweep_dir, result["trial_id"], status=result.get("status"))


def metric_value(results: dict[str, Any] | None, metric: str | None) -> float | None:
    """The sweep metric out of a result's "results" (a dotted name may also be nested), as a float;
    None when absent or not a number. NaN and infinities come back as they are."""
    if not metric or not isinstance(results, dict):
        return None
    value: Any = results.get(metric)
    if value is None and "." in metric:
        value = results
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finite_metric(results: dict[str, Any] | None, metric: str | None) -> float | None:
    """metric_value, or None when it is NaN or infinite (such a value never ranks a trial)."""
    value = metric_value(results, metric)
    return value if value is not None and math.isfinite(value) else None
