"""What a report says about a sweep: the metric, the best trials, what mattered, what failed.

Pure functions over the DataFrame from results.collect (plus the manifest for commands and
submission order). numpy/pandas only: Spearman is Pearson on ranks, and importance is the
share of the metric's variance explained by each hyperparameter alone (a first-order,
fANOVA-like measure; numeric values are binned by quantiles first).
"""
from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jobs.argv import format_value, render_argv
from jobs.errors import UserError
from jobs.manifest import Manifest
from results.collect import resolve_column
from results.parse import HP_KEYS

# The first of these a sweep reports is its metric when neither --metric nor the manifest says.
DEFAULT_METRICS = ("eval/exact_accuracy", "exact_accuracy", "eval/accuracy", "accuracy")
_MINIMIZE_WORDS = ("loss", "error", "perplexity", "mse", "mae", "regret", "time", "runtime")
DEFAULT_COMMAND = ("python", "-m", "train")


@dataclass(frozen=True)
class Metric:
    column: str          # e.g. results.eval/exact_accuracy
    name: str            # e.g. eval/exact_accuracy
    goal: str            # maximize | minimize
    source: str          # how it was chosen, said in the report

    @property
    def ascending(self) -> bool:
        return self.goal == "minimize"


def normalize_goal(goal: str | None) -> str | None:
    if goal is None:
        return None
    g = str(goal).strip().lower()
    if g in ("max", "maximize", "maximise", "higher", "up"):
        return "maximize"
    if g in ("min", "minimize", "minimise", "lower", "down"):
        return "minimize"
    raise UserError(f"unknown goal '{goal}'", fix="use max or min")


def _numeric_results(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("results.") and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])]


def _find(frame: pd.DataFrame, name: str) -> str | None:
    # The sweep file may say eval/exact_accuracy where the program wrote exact_accuracy, or back.
    for candidate in (name, name.removeprefix("results."), f"eval/{name}", name.rsplit("/", 1)[-1]):
        try:
            return resolve_column(frame, candidate, what="metric")
        except UserError:
            continue
    return None


def choose_metric(frame: pd.DataFrame, manifest: Manifest | None, metric: str | None = None,
                  goal: str | None = None) -> Metric:
    """--metric, else the manifest's metric, else the first of DEFAULT_METRICS, else the first
    numeric result. The goal: --goal, else the manifest's, else a guess from the name."""
    column, source = None, ""
    sweep_metric = manifest.settings.metric if manifest else None
    if metric:
        column = _find(frame, metric)
        if column is None:
            known = ", ".join(c.removeprefix("results.") for c in _numeric_results(frame)[:12])
            raise UserError(f"--metric {metric}: no such result in this sweep", fix=f"pick one of: {known or 'none'}")
        source = "--metric"
    elif sweep_metric:
        column = _find(frame, sweep_metric)
        source = "the sweep file" if column else ""
    if column is None:
        for name in DEFAULT_METRICS:
            if f"results.{name}" in _numeric_results(frame):
                column, source = f"results.{name}", "default (first of " + ", ".join(DEFAULT_METRICS) + ")"
                break
    if column is None:
        numeric = _numeric_results(frame)
        if not numeric:
            raise UserError("no numeric result metric in this sweep's results",
                            fix="check that the trials write metrics to $SWEEP_RESULT_FILE")
        column, source = numeric[0], "default (first numeric result)"
        if sweep_metric:
            source += f"; the sweep file's metric '{sweep_metric}' is not in the results"
    name = column.removeprefix("results.")
    chosen = normalize_goal(goal) or normalize_goal(manifest.settings.goal if manifest else None)
    if chosen is None:
        chosen = "minimize" if any(w in name.lower() for w in _MINIMIZE_WORDS) else "maximize"
        source += f"; goal {chosen} guessed from the name"
    return Metric(column, name, chosen, source)


def ranked(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Completed trials with a finite metric, best first (ties: earlier trial first)."""
    if metric.column not in frame:
        return frame.iloc[0:0]
    values = pd.to_numeric(frame[metric.column], errors="coerce")
    ok = np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if "status" in frame:
        ok &= (frame["status"].fillna("completed") == "completed").to_numpy()
    picked = frame[ok]
    order = [metric.column] + (["index"] if "index" in picked else [])
    return picked.sort_values(order, ascending=[metric.ascending] + [True] * (len(order) - 1), kind="stable")


def best_per(frame: pd.DataFrame, metric: Metric, by: str) -> pd.DataFrame:
    good = ranked(frame, metric)
    if by not in good or good[by].nunique(dropna=False) < 1:
        return good.iloc[0:0]
    return good.groupby(by, sort=True, dropna=False).head(1).sort_values(by, kind="stable")


def hp_columns(frame: pd.DataFrame) -> list[str]:
    """Hyperparameters that vary across the sweep (constant ones explain nothing)."""
    return [c for c in frame.columns if c.startswith("hp.") and frame[c].nunique(dropna=True) > 1]


# --- what mattered -----------------------------------------------------------------------

def _as_number(col: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(float)
    if col.dropna().map(lambda v: isinstance(v, bool)).all():
        return col.map(lambda v: float(v) if isinstance(v, bool) else np.nan)
    return None


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho: Pearson correlation of the ranks (average ranks for ties)."""
    ok = x.notna() & y.notna()
    if ok.sum() < 3:
        return float("nan")
    rx, ry = x[ok].rank(), y[ok].rank()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _groups(col: pd.Series) -> pd.Series:
    numeric = _as_number(col)
    if numeric is not None and numeric.nunique() > 8:
        # Quantile bins: a log-uniform lr spread over 3 decades still gets evenly filled bins.
        return pd.qcut(numeric.rank(method="first"), q=min(8, numeric.nunique()), labels=False, duplicates="drop")
    return col.astype(str)


def variance_explained(x: pd.Series, y: pd.Series) -> float:
    """eta^2: the share of y's variance explained by the groups of x (0..1)."""
    ok = y.notna() & x.notna()
    y, g = y[ok].astype(float), _groups(x[ok])
    if len(y) < 3 or y.var() == 0:
        return float("nan")
    means = y.groupby(g).transform("mean")
    total = float(((y - y.mean()) ** 2).sum())
    between = float(((means - y.mean()) ** 2).sum())
    return between / total if total else float("nan")


def importance(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """One row per varying hyperparameter: spearman rho, variance explained, distinct values."""
    good = ranked(frame, metric)
    y = good[metric.column].astype(float)
    rows = []
    for c in hp_columns(good):
        x = good[c]
        num = _as_number(x)
        rows.append({"hyperparameter": c.removeprefix("hp."),
                     "spearman": spearman(num, y) if num is not None else float("nan"),
                     "variance_explained": variance_explained(x, y),
                     "values": int(x.nunique())})
    out = pd.DataFrame(rows, columns=["hyperparameter", "spearman", "variance_explained", "values"])
    return out.sort_values("variance_explained", ascending=False, na_position="last", kind="stable")


# --- submission order: Protein-style rollouts ---------------------------------------------

def rollout_size(manifest: Manifest | None, n: int) -> tuple[int, str]:
    """Trials per rollout: num_samples if the sweep says, else the array throttle, else ~10 rollouts."""
    options = manifest.settings.search_options if manifest else {}
    for key in ("num_samples", "rollout_size", "batch_size"):
        v = options.get(key)
        if isinstance(v, int) and v > 0:
            return v, f"{key} = {v} from the sweep"
    for sub in manifest.submissions if manifest else ():
        array = str(sub.array or "")
        if "%" in array:
            p = array.split("%", 1)[1]
            if p.isdigit() and int(p) > 0:
                return int(p), f"the array throttle %{p} (trials that ran side by side)"
    size = max(1, math.ceil(n / 10))
    return size, f"{size} trials per rollout (the sweep says no rollout size; about 10 rollouts)"


def rollouts(frame: pd.DataFrame, metric: Metric, size: int) -> pd.DataFrame:
    """Best per batch of `size` trials in submission order, and the best so far."""
    if "index" in frame and frame["index"].notna().any():
        order = frame.sort_values("index", kind="stable", na_position="last")
    elif "trial" in frame:
        order = frame.sort_values("trial", kind="stable", na_position="last")
    else:
        order = frame
    order = order.reset_index(drop=True)
    sign = -1 if metric.ascending else 1
    rows, best_so_far = [], None
    for k, start in enumerate(range(0, len(order), size)):
        batch = order.iloc[start:start + size]
        good = ranked(batch, metric)
        row = {"rollout": k, "trials": len(batch), "completed": len(good), "best_trial": "", "best": float("nan")}
        if len(good):
            top = good.iloc[0]
            row["best_trial"], row["best"] = str(top.get("trial_id", "")), float(top[metric.column])
            if best_so_far is None or sign * row["best"] > sign * best_so_far:
                best_so_far = row["best"]
        row["best_so_far"] = best_so_far if best_so_far is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def stage_summary(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Per stage: trials, completed, median/best metric, and the change from each trial's parent."""
    if "stage" not in frame:
        return pd.DataFrame()
    good = ranked(frame, metric)
    value = good.set_index("trial_id")[metric.column] if "trial_id" in good else pd.Series(dtype=float)
    value = value[~value.index.duplicated()]
    sign = -1 if metric.ascending else 1
    rows = []
    for stage, part in frame.groupby("stage", sort=True):
        ok = good[good["stage"] == stage]
        vals = ok[metric.column].astype(float)
        row = {"stage": stage, "trials": len(part), "completed": len(ok),
               "median": vals.median() if len(vals) else float("nan"),
               "best": (vals.min() if metric.ascending else vals.max()) if len(vals) else float("nan"),
               "vs_parent_mean": float("nan"), "improved": ""}
        if "parent" in ok and ok["parent"].notna().any():
            pairs = [(v, value.get(p)) for v, p in zip(vals, ok["parent"]) if isinstance(p, str) and p in value.index]
            if pairs:
                deltas = np.array([a - b for a, b in pairs], dtype=float)
                row["vs_parent_mean"] = float(deltas.mean())
                row["improved"] = f"{int((sign * deltas > 0).sum())}/{len(deltas)}"
        rows.append(row)
    return pd.DataFrame(rows)


# --- rerunning a trial -------------------------------------------------------------------

def _dotted(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_dotted(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _result_hyperparameters(row: pd.Series) -> dict[str, Any] | None:
    """The hyperparameters in a row's result file (re-read so that 256 stays an int where the
    DataFrame made the column float), or None when there is no readable file."""
    path = row.get("path")
    if isinstance(path, str) and os.path.exists(path):
        try:
            with open(path) as f:
                obj = json.load(f)
            return _dotted(next((obj[k] for k in HP_KEYS if isinstance(obj.get(k), dict)), {}))
        except (OSError, ValueError):
            pass
    return None


def trial_overrides(manifest: Manifest | None, row: pd.Series) -> dict[str, Any]:
    """The trial's exact overrides: the manifest's, with the values it ran with (a bayes trial's
    params are asked when it starts, so only its result file knows them); else its result file's
    hyperparameters; else the row's hp.* columns."""
    tid = row.get("trial_id")
    hps = _result_hyperparameters(row)
    for t in manifest.trials if manifest else ():
        if t.id == tid:
            return {**t.overrides, **(hps or t.params)}
    if hps is not None:
        return hps
    return {c.removeprefix("hp."): v for c, v in row.items()
            if c.startswith("hp.") and v is not None and not (isinstance(v, float) and math.isnan(v))}


def override_args(overrides: dict[str, Any]) -> list[str]:
    """The overrides as `key=value` strings, as Trial.override_args writes a trial's."""
    return [f"{k}={format_value(v)}" for k, v in overrides.items()]


def rerun_command(manifest: Manifest | None, sweep_dir: str, row: pd.Series,
                  json_file_dir: str | None = None) -> str:
    """The shell line that reruns a trial: the sweep's command with the trial's overrides
    (and its parent's checkpoint for a later progressive stage), quoted for pasting."""
    overrides = trial_overrides(manifest, row)
    parent = row.get("parent")
    if isinstance(parent, str) and parent:
        key = manifest.settings.checkpoint_key if manifest else "checkpoint_path"
        overrides[key] = os.path.join(sweep_dir, "trials", parent, "checkpoints")
    command = list(manifest.settings.command if manifest and manifest.settings.command else DEFAULT_COMMAND)
    try:
        argv = render_argv(command, overrides, json_file_dir=json_file_dir)
    except (ValueError, OSError):       # ${program} with no program; ${args_json_file} unwritable
        argv = [c for c in command if "${" not in c] + override_args(overrides)
    return shlex.join(argv)


def _id_from_path(path: Any) -> str | None:
    """trials/<id>/result.json -> <id>; experiments/run_3.json -> run_3."""
    if not isinstance(path, str):
        return None
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "result.json" else os.path.splitext(base)[0]


def attach_manifest(frame: pd.DataFrame, manifest: Manifest | None) -> pd.DataFrame:
    """Add the manifest's index (submission order), parent and environment to each row."""
    trials = manifest.trials if manifest else ()
    if frame.empty:
        return frame
    if "trial_id" not in frame or frame["trial_id"].isna().any():
        # Older results lack their id: the trial directory's name is the id.
        from_path = frame["path"].map(_id_from_path)
        frame = frame.assign(trial_id=frame["trial_id"].fillna(from_path) if "trial_id" in frame else from_path)
    if not trials:
        return frame
    info = pd.DataFrame([{"trial_id": t.id, "index": t.index, "parent": t.parent,
                          "m_env": t.environment, "m_stage": t.stage} for t in trials])
    info = info.drop_duplicates("trial_id")
    out = frame.drop(columns=[c for c in ("index", "parent") if c in frame]).merge(info, on="trial_id", how="left")
    if out["m_env"].notna().any():
        out["environment"] = out["environment"].fillna(out["m_env"]) if "environment" in out else out["m_env"]
    if out["m_stage"].notna().any():
        out["stage"] = out["stage"].fillna(out["m_stage"]) if "stage" in out else out["m_stage"]
    return out.drop(columns=["m_env", "m_stage"])


# --- successive halving (method asha) -----------------------------------------------------------

def is_asha(manifest: Manifest | None) -> bool:
    return manifest is not None and manifest.settings.method == "asha" and manifest.settings.stages is not None


def best_candidates(frame: pd.DataFrame, metric: Metric, manifest: Manifest | None) -> pd.DataFrame:
    """What the best is picked from (`sweep best`, the report): `ranked`, and for successive halving
    only the highest rung any ranked trial reached (a lower rung's value came from a smaller budget)."""
    good = ranked(frame, metric)
    if not is_asha(manifest) or good.empty or "stage" not in good:
        return good
    stage = pd.to_numeric(good["stage"], errors="coerce")
    return good[stage == stage.max()]


def _gpus(manifest: Manifest | None) -> int:
    from jobs.bayes import gpus_per_task

    return gpus_per_task(manifest.settings.cluster) if manifest else 1


def rung_ladder(frame: pd.DataFrame, metric: Metric, manifest: Manifest) -> pd.DataFrame:
    """Per rung: its budget, the trials that ran it, completed, promoted to the next rung, the best and
    median metric, and the GPU-hours its runs took (runtime of each result's last attempt)."""
    stages = manifest.settings.stages
    held = set(manifest.held_indices())
    good = ranked(frame, metric)
    stage = pd.to_numeric(frame["stage"], errors="coerce") if "stage" in frame else pd.Series(0, index=frame.index)
    good_stage = stage.loc[good.index]
    runtime = pd.to_numeric(frame["runtime_s"], errors="coerce") if "runtime_s" in frame else stage * 0.0
    rows = []
    for r, budget in enumerate(stages.values):
        at = stage == r
        vals = good.loc[good_stage == r, metric.column].astype(float)
        nxt = [t for t in manifest.trials if t.stage == r + 1]
        rows.append({"rung": r, stages.key: budget, "ran": int(at.sum()), "completed": len(vals),
                     "promoted": sum(t.index not in held for t in nxt) if r + 1 < len(stages.values) else None,
                     "best": (vals.min() if metric.ascending else vals.max()) if len(vals) else float("nan"),
                     "median": vals.median() if len(vals) else float("nan"),
                     "gpu_hours": float(runtime[at].sum()) * _gpus(manifest) / 3600.0})
    return pd.DataFrame(rows)


def halving_compute(frame: pd.DataFrame, manifest: Manifest) -> tuple[float, float | None, str]:
    """(GPU-hours spent, GPU-hours running every trial to the top rung would take, how the latter was
    estimated). The estimate: rung-0 trials x the sum over rungs of the median completed run of each
    rung (a promoted run's time is what climbing that rung costs, from its parent's checkpoint); None
    while a rung has no completed run to measure."""
    gpus = _gpus(manifest)
    runtime = pd.to_numeric(frame["runtime_s"], errors="coerce") if "runtime_s" in frame else pd.Series(dtype=float)
    spent = float(runtime.fillna(0).sum()) * gpus / 3600.0
    stage = pd.to_numeric(frame["stage"], errors="coerce") if "stage" in frame else pd.Series(0, index=frame.index)
    done = (frame["status"] == "completed") if "status" in frame else pd.Series(True, index=frame.index)
    points = sum(t.stage == 0 for t in manifest.trials)
    per_rung = []
    for r in range(len(manifest.settings.stages.values)):
        times = runtime[(stage == r) & done].dropna()
        if times.empty:
            return spent, None, f"not estimated yet: rung {r} has no completed run to measure"
        per_rung.append(float(times.median()))
    full = points * sum(per_rung) * gpus / 3600.0
    how = (f"{points} trials x the median completed run of each rung ("
           + " + ".join(f"{s:.3g} s" for s in per_rung) + f"){f', {gpus} GPUs per task' if gpus > 1 else ''}")
    return spent, full, how
