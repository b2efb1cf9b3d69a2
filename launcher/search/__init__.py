"""Search strategies that run inside the array tasks (Optuna), and their report summary.

    optuna_space      Dist <-> optuna distributions; samplers and pruners by name
    protein_summary   best run per rollout and overall, for `sweep report`

The ask/tell side that tasks call lives in jobs.bayes (stdlib at import).
"""
from __future__ import annotations

import math
from typing import Any

from jobs import manifest as mf


def rollout_size(manifest: dict[str, Any]) -> int:
    """Trials per rollout: Protein's `num_samples` (search_options), else the array's parallelism."""
    options = manifest.get("search_options") or {}
    for value in (options.get("num_samples"), (manifest.get("launch") or {}).get("max_parallel")):
        if isinstance(value, int) and value >= 1:
            return value
    return 1


def _metric_column(frame: Any, metric: str | None) -> str | None:
    if not metric:
        return None
    for name in (f"results.{metric}", metric):
        if name in frame.columns:
            return name
    tails = [c for c in frame.columns if c.startswith("results.") and c.rsplit("/", 1)[-1] == metric]
    return tails[0] if len(tails) == 1 else None


def _row(row: Any, metric_col: str, sweep_dir: str | None) -> dict[str, Any]:
    trial_id = row.get("trial_id")
    config = str(mf.trial_dir(sweep_dir, trial_id) / "config.yaml") if sweep_dir and trial_id else None
    params = {c[3:]: row[c] for c in row.index if c.startswith("hp.") and not _missing(row[c])}
    return {"trial": int(row["trial"]), "trial_id": trial_id, "value": float(row[metric_col]),
            "params": params, "config": config, "result": row.get("path")}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def protein_summary(manifest: dict[str, Any], results_df: Any, *, sweep_dir: str | None = None) -> dict[str, Any]:
    """Protein-style summary of one sweep's results (a results.collect DataFrame).

    A rollout is a consecutive batch of `num_samples` trials (by trial index), which is what
    Protein runs between GP refits. Returns

        {"metric", "goal", "rollout_size", "completed", "pruned",
         "rollouts": [{"rollout": k, "trials": n, "best": {trial, trial_id, value, params,
                       config, result} | None}, ...],
         "best": {...} | None}

    `config` is trials/<id>/config.yaml of the sweep directory (given or taken from the
    frame's `path` column), the file to rerun the winner with.
    """
    metric, goal = manifest.get("metric"), manifest.get("goal") or "maximize"
    size = rollout_size(manifest)
    out: dict[str, Any] = {"metric": metric, "goal": goal, "rollout_size": size, "completed": 0, "pruned": 0,
                           "rollouts": [], "best": None}
    if results_df is None or len(results_df) == 0 or "trial" not in results_df.columns:
        return out
    frame = results_df
    if "status" in frame.columns:
        out["completed"] = int((frame["status"] == "completed").sum())
        out["pruned"] = int((frame["status"] == "pruned").sum())
    col = _metric_column(frame, metric)
    if sweep_dir is None and "path" in frame.columns and len(frame):
        # <sweep>/trials/<id>/result.json -> <sweep>
        from pathlib import Path

        sweep_dir = str(Path(str(frame["path"].iloc[0])).parent.parent.parent)
    scored = frame
    if col is not None:
        scored = frame[frame[col].notna()]
        if "status" in frame.columns:
            scored = scored[scored["status"] == "completed"]
    ascending = goal == "minimize"
    best_overall = None
    n_rollouts = int(frame["trial"].max()) // size + 1
    for k in range(n_rollouts):
        in_rollout = frame[(frame["trial"] // size) == k]
        entry: dict[str, Any] = {"rollout": k, "trials": int(len(in_rollout)), "best": None}
        if col is not None:
            candidates = scored[(scored["trial"] // size) == k]
            if len(candidates):
                row = candidates.sort_values(col, ascending=ascending, kind="stable").iloc[0]
                entry["best"] = _row(row, col, sweep_dir)
                v = entry["best"]["value"]
                if best_overall is None or (v < best_overall["value"] if ascending else v > best_overall["value"]):
                    best_overall = entry["best"]
        out["rollouts"].append(entry)
    out["best"] = best_overall
    return out
