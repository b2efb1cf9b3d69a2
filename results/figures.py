"""The report's figures, as PNG files (matplotlib, Agg backend: no display on a login node).

Each function draws one figure from the collected DataFrame and returns the file it wrote,
or None when the sweep has nothing to show for it (one environment, no progress.jsonl, ...).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from results.analysis import Metric, hp_columns, ranked

MAX_HP_PANELS = 12
MAX_CURVES = 30
TOP_CONFIGS = 5
MAX_POINTS = 400


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _envs(frame: pd.DataFrame) -> pd.Series:
    if "environment" in frame and frame["environment"].notna().any():
        return frame["environment"].fillna("(none)").astype(str)
    return pd.Series("all", index=frame.index)


def _boxes(ax, names: list[str], data: list[np.ndarray], *, rotate: bool = False) -> None:
    """One box per group (`names`, `data` alike) and its points, jittered; a group of more than
    MAX_POINTS shows a sample of them (the box shows the distribution; the dots only texture it)."""
    ax.boxplot([d if len(d) else [np.nan] for d in data], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        if not len(values):
            continue
        if len(values) > MAX_POINTS:
            values = rng.choice(values, MAX_POINTS, replace=False)
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, alpha=0.5)


def metric_distribution(frame: pd.DataFrame, metric: Metric, path: str) -> str | None:
    """Box plot and points of the metric, one box per environment (and stage, if several)."""
    good = ranked(frame, metric)
    if good.empty:
        return None
    groups = _envs(good)
    if "stage" in good and good["stage"].nunique() > 1:
        groups = groups + " / stage " + good["stage"].map(lambda v: "-" if pd.isna(v) else str(v))
    names = sorted(groups.unique(), key=str)
    data = [good.loc[groups == g, metric.column].astype(float).to_numpy() for g in names]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) + 2), 4))
    _boxes(ax, names, data, rotate=len(names) > 3)
    ax.set_ylabel(metric.name)
    per = " per environment" if len(names) > 1 else ""
    ax.set_title(f"{metric.name}{per}\n({len(good)} completed trials)", fontsize=10)
    return _save(fig, path)


def success_by_environment(frame: pd.DataFrame, metric: Metric, path: str) -> str | None:
    """Success rate per environment (results' `success_rate`), whatever the ranking metric, with
    the random policy's (`random_success_rate`) marked where trials report it."""
    col, baseline = "results.success_rate", "results.random_success_rate"
    if col not in frame or not pd.api.types.is_numeric_dtype(frame[col]):
        return None
    done = frame[frame["status"].eq("completed")] if "status" in frame else frame
    done = done[done[col].notna()]
    if done.empty:
        return None
    groups = _envs(done)
    names = sorted(groups.unique(), key=str)
    data = [done.loc[groups == g, col].astype(float).to_numpy() for g in names]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) + 2), 4))
    _boxes(ax, names, data)
    if baseline in done and pd.api.types.is_numeric_dtype(done[baseline]) and done[baseline].notna().any():
        means = [done.loc[groups == g, baseline].astype(float).mean() for g in names]
        ax.scatter(range(1, len(names) + 1), means, marker="_", s=600, c="red", zorder=3, label="random policy")
        ax.legend(fontsize=8)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("success rate")
    ax.set_title(f"success rate per environment ({len(done)} completed trials)")
    return _save(fig, path)


def _log_scale(values: pd.Series) -> bool:
    v = values.dropna().astype(float)
    return bool(len(v) and (v > 0).all() and v.max() / v.min() >= 50)


def hp_vs_metric(frame: pd.DataFrame, metric: Metric, path: str) -> str | None:
    """One panel per varying hyperparameter: its value against the metric."""
    good = ranked(frame, metric)
    hps = hp_columns(good)[:MAX_HP_PANELS]
    if good.empty or not hps:
        return None
    plt = _plt()
    cols = min(3, len(hps))
    rows = math.ceil(len(hps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    y = good[metric.column].astype(float)
    stages = good["stage"] if "stage" in good and good["stage"].nunique() > 1 else None
    for ax, c in zip(axes.flat, hps):
        x = good[c]
        if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            ax.scatter(x.astype(float), y, s=12, alpha=0.6,
                       c=None if stages is None else stages.astype(float), cmap=None if stages is None else "viridis")
            if _log_scale(x):
                ax.set_xscale("log")
        else:
            x = x.map(str)
            cats = sorted(x.unique())
            pos = x.map({k: i for i, k in enumerate(cats)}).astype(float)
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(pos))
            ax.scatter(pos + jitter, y, s=12, alpha=0.6)
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(c.removeprefix("hp."))
        ax.set_ylabel(metric.name)
    for ax in list(axes.flat)[len(hps):]:
        ax.set_visible(False)
    fig.suptitle(f"hyperparameters against {metric.name}" + (" (colour: stage)" if stages is not None else ""))
    return _save(fig, path)


def _scaled(col: pd.Series, value: Any) -> float:
    """Where `value` sits in the sweep's range of this hyperparameter, 0..1 (log for log-like)."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        v = col.dropna().astype(float)
        lo, hi, x = v.min(), v.max(), float(value)
        if _log_scale(col):
            lo, hi, x = math.log10(lo), math.log10(hi), math.log10(x) if x > 0 else math.log10(lo)
        return 0.5 if hi == lo else (x - lo) / (hi - lo)
    cats = sorted(col.map(str).unique())
    return cats.index(str(value)) / max(1, len(cats) - 1)


def best_configs(frame: pd.DataFrame, metric: Metric, path: str, top: int = TOP_CONFIGS) -> str | None:
    """The best `top` configurations side by side: each hyperparameter's position in its range."""
    good = ranked(frame, metric)
    hps = hp_columns(good)[:MAX_HP_PANELS]
    if good.empty or not hps:
        return None
    best = good.head(top)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(hps) * max(1, len(best)) / 2 + 2))
    height = 0.8 / len(best)
    for k, (_, row) in enumerate(best.iterrows()):
        ys = np.arange(len(hps)) + k * height
        # A sliver for the lowest value tried, so that it reads as "lowest", not as "missing".
        xs = [max(0.015, _scaled(good[c], row[c])) if pd.notna(row[c]) else 0 for c in hps]
        label = f"#{k + 1} {row.get('trial_id', '')}: {row[metric.column]:.4g}"
        ax.barh(ys, xs, height=height, label=label)
        for yy, xx, c in zip(ys, xs, hps):
            v = row[c]
            ax.text(xx + 0.01, yy, f"{v:.3g}" if isinstance(v, float) else str(v), va="center", fontsize=7)
    ax.set_yticks(np.arange(len(hps)) + 0.4 - height / 2, [c.removeprefix("hp.") for c in hps])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.25)
    ax.set_xlabel("position in the sweep's range (0 = lowest tried, 1 = highest; log for log-scaled)")
    # Beside the bars, not over them: the value labels at the right end must stay readable.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=metric.name, title_fontsize=7)
    ax.set_title(f"best {len(best)} configurations")
    return _save(fig, path)


def read_progress(path: str) -> pd.DataFrame:
    """progress.jsonl as a DataFrame; torn or foreign lines (a run killed mid-write) are skipped."""
    rows = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    rows.append(obj)
    except OSError:
        return pd.DataFrame()
    return pd.DataFrame(rows)


def _curve_key(columns: list[str], metric: Metric) -> str | None:
    for key in (metric.name, f"eval/{metric.name}"):
        if key in columns:
            return key
    tail = metric.name.rsplit("/", 1)[-1]
    tails = [c for c in columns if c.rsplit("/", 1)[-1] == tail]
    return tails[0] if tails else None


def learning_curves(frame: pd.DataFrame, metric: Metric, path: str) -> str | None:
    """The metric over training steps from progress.jsonl: the best trials and a sample of the rest."""
    if "path" not in frame:
        return None
    good = ranked(frame, metric)
    others = frame.drop(good.index[:10])
    picked = pd.concat([good.head(10), others.sample(min(len(others), MAX_CURVES - 10), random_state=0)])
    curves = []
    for _, row in picked.iterrows():
        if not isinstance(row.get("path"), str):
            continue
        prog = read_progress(os.path.join(os.path.dirname(row["path"]), "progress.jsonl"))
        if prog.empty:
            continue
        key = _curve_key(list(prog.columns), metric)
        if key is None or "step" not in prog:
            continue
        part = prog[["step", key]].apply(pd.to_numeric, errors="coerce").dropna()
        if len(part):
            curves.append((row, part["step"].to_numpy(), part[key].to_numpy()))
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    best_id = good.iloc[0].get("trial_id") if len(good) else None
    for row, x, y in curves:
        is_best = row.get("trial_id") == best_id
        ax.plot(x, y, lw=2.5 if is_best else 1, alpha=1 if is_best else 0.45,
                label=f"best: {best_id}" if is_best else None, zorder=3 if is_best else 2)
    ax.set_xlabel("step")
    ax.set_ylabel(metric.name)
    ax.set_title(f"learning curves ({len(curves)} trials)")
    if best_id is not None and any(r.get("trial_id") == best_id for r, _, _ in curves):
        ax.legend(fontsize=8)
    return _save(fig, path)


def draw_all(frame: pd.DataFrame, metric: Metric, out_dir: str) -> dict[str, str]:
    """Every figure the sweep has data for: {title: path}."""
    os.makedirs(out_dir, exist_ok=True)
    made = {}
    for title, fn, name in (("Metric per environment", metric_distribution, "metric_by_environment.png"),
                            ("Success rate per environment", success_by_environment, "success_by_environment.png"),
                            ("Hyperparameters against the metric", hp_vs_metric, "hp_vs_metric.png"),
                            ("Best configurations side by side", best_configs, "best_configs.png"),
                            ("Learning curves", learning_curves, "learning_curves.png")):
        path = fn(frame, metric, os.path.join(out_dir, name))
        if path:
            made[title] = path
    return made


def sweeps_side_by_side(frame: pd.DataFrame, metric: Metric, path: str, by: str = "compared", *,
                        best: dict[str, float]) -> str | None:
    """One box (and its points) per sweep: the same metric's distribution, sweeps side by side,
    each sweep's best (`best`, by sweep: the comparison's table's) marked with a star (`sweep report A B C`)."""
    good = ranked(frame, metric)
    if good.empty or by not in good:
        return None
    names = list(dict.fromkeys(frame[by].astype(str)))       # the order the sweeps were given in
    data = [good.loc[good[by].astype(str) == n, metric.column].astype(float).to_numpy() for n in names]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names) + 2), 4.2))
    _boxes(ax, names, data, rotate=len(names) > 3 or max(map(len, names)) > 14)
    label = "best of the sweep"
    for i, (name, values) in enumerate(zip(names, data), start=1):
        if len(values) and name in best:
            ax.scatter([i], [best[name]], marker="*", s=160, color="black", zorder=3, label=label)
            label = None
    ax.set_ylabel(f"{metric.name} ({'lower' if metric.ascending else 'higher'} is better)")
    ax.set_title(f"{metric.name} per sweep ({len(good)} completed trials)")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def rung_ladder(frame: pd.DataFrame, metric: Metric, path: str, budgets: tuple | None = None,
                key: str | None = None) -> str | None:
    """Successive halving: every completed run at its rung, each joined to its run of the rung below
    (the checkpoint it climbed from); the best run of the top rung reached is starred."""
    good = ranked(frame, metric)
    if good.empty or "stage" not in good or "parent" not in good or good["stage"].nunique() < 2:
        return None
    value = dict(zip(good["trial_id"], good[metric.column].astype(float)))
    rung = dict(zip(good["trial_id"], good["stage"].astype(int)))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for tid, parent in zip(good["trial_id"], good["parent"]):
        if isinstance(parent, str) and parent in value:
            ax.plot([rung[parent], rung[tid]], [value[parent], value[tid]], color="grey", alpha=0.4, lw=0.8)
    ax.scatter(good["stage"].astype(int), good[metric.column].astype(float), s=12, alpha=0.7, zorder=2)
    top = good[good["stage"].astype(int) == good["stage"].astype(int).max()].iloc[0]
    ax.scatter([int(top["stage"])], [float(top[metric.column])], marker="*", s=180, color="black", zorder=3,
               label=f"best: {top['trial_id']}")
    stages = sorted(int(s) for s in good["stage"].unique())
    labels = [f"{s}\n{key}={budgets[s]}" if budgets and key and s < len(budgets) else str(s) for s in stages]
    ax.set_xticks(stages, labels)
    ax.set_xlabel("rung")
    ax.set_ylabel(f"{metric.name} ({'lower' if metric.ascending else 'higher'} is better)")
    ax.set_title(f"Successive halving: {len(good)} completed runs")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
