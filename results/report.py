"""`sweep report`: reports/report.md, reports/figures/*.png and reports/results.csv for one sweep.

The report says which metric and goal it used and why, then: the best trial overall with the
command that reruns it, best per environment and per stage, a Protein-style summary (best per
rollout in submission order, the best so far), what each hyperparameter explained, the
progressive stages compared, successive halving's rung ladder, and the trials that failed, diverged or
were pruned.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from jobs.atomic import write_text_atomic
from jobs.errors import UserError
from jobs.manifest import MANIFEST, Manifest, Settings, read_manifest
from results import analysis as an
from results import figures as fig
from results.collect import Skipped, collect
from results.table import to_markdown
from results.table import write as write_table

if TYPE_CHECKING:
    from jobs.state import SweepStatus

MAX_FAILED_ROWS = 50
MAX_ROLLOUT_ROWS = 40
_CSV = "results.csv"


@dataclass
class Report:
    path: str
    csv: str
    figures: dict[str, str] = field(default_factory=dict)
    metric: an.Metric | None = None
    skipped: list[Skipped] = field(default_factory=list)


def load_sweep(sweep_dir: str) -> tuple[Manifest | None, pd.DataFrame, list[Skipped]]:
    """The manifest (None for a bare directory of results) and every result, joined."""
    manifest = read_manifest(sweep_dir) if os.path.exists(os.path.join(sweep_dir, MANIFEST)) else None
    got = collect([sweep_dir])
    if got.frame.empty:
        raise UserError(f"no trial results under {sweep_dir} ({got.files} file(s) read, {len(got.skipped)} skipped)",
                        fix="wait for trials to finish (they write trials/<id>/result.json), or check the path")
    return manifest, an.attach_manifest(got.frame, manifest), got.skipped


def _fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _best_table(rows: pd.DataFrame, metric: an.Metric, by: str | None = None) -> str:
    hps = [c for c in rows.columns if c.startswith("hp.") and rows[c].notna().any()]
    cols = ([by] if by else []) + ["trial_id", metric.column] + hps
    view = rows[[c for c in cols if c in rows]].rename(columns=lambda c: c.removeprefix("hp.").removeprefix("results."))
    return to_markdown(view.map(_fmt))


def _commands(rows: pd.DataFrame, manifest: Manifest | None, sweep_dir: str, out_dir: str, label: str) -> list[str]:
    lines = ["```bash"]
    for _, row in rows.iterrows():
        lines.append(f"# best for {label} {_fmt(row.get(label)) or '(none)'}: trial {row.get('trial_id')}")
        lines.append(an.rerun_command(manifest, sweep_dir, row, json_file_dir=out_dir))
    lines.append("```")
    return lines


def _config_path(sweep_dir: str, row: pd.Series) -> str:
    tdir = os.path.dirname(row["path"]) if isinstance(row.get("path"), str) else \
        os.path.join(sweep_dir, "trials", str(row.get("trial_id")))
    config = os.path.join(tdir, "config.yaml")
    return config if os.path.exists(config) else os.path.join(tdir, "result.json")


def _section_best(lines: list[str], frame: pd.DataFrame, metric: an.Metric, manifest: Manifest | None,
                  sweep_dir: str, out_dir: str) -> None:
    good = an.best_candidates(frame, metric, manifest)
    lines += ["## Best overall", ""]
    if good.empty:
        lines += ["No completed trial has a finite value of this metric yet.", ""]
        return
    top = good.iloc[0]
    lines += [f"Trial `{top.get('trial_id')}`: **{metric.name} = {_fmt(float(top[metric.column]))}** "
              f"(stage {_fmt(top.get('stage'))}, environment {_fmt(top.get('environment')) or '-'}).",
              f"Config: `{_config_path(sweep_dir, top)}`", "", _best_table(good.head(5), metric), "",
              "Rerun the best trial:", "", "```bash", an.rerun_command(manifest, sweep_dir, top, json_file_dir=out_dir),
              "```", ""]
    for by, title in (("environment", "Best per environment"), ("stage", "Best per stage")):
        if by in frame and frame[by].nunique(dropna=True) > 1:
            per = an.best_per(frame, metric, by)
            lines += [f"## {title}", "", _best_table(per, metric, by), ""]
            lines += _commands(per, manifest, sweep_dir, out_dir, by) + [""]


def _section_rollouts(lines: list[str], frame: pd.DataFrame, metric: an.Metric, manifest: Manifest | None,
                      sweep_dir: str) -> None:
    size, why = an.rollout_size(manifest, len(frame))
    table = an.rollouts(frame, metric, size)
    good = an.ranked(frame, metric)
    lines += ["## Protein-style summary", "",
              f"Rollouts are batches of trials in submission order; size: {why}.", ""]
    if len(table) > MAX_ROLLOUT_ROWS:
        # Thousands of rollouts: keep the ones that moved the best so far, and the last.
        moved = table["best_so_far"].ne(table["best_so_far"].shift())
        moved.iloc[-1] = True
        lines += [f"{len(table)} rollouts; shown: the {int(moved.sum())} that improved the best so far, and the last.", ""]
        table = table[moved]
    lines += [to_markdown(table.map(_fmt)), ""]
    if len(good):
        top = good.iloc[0]
        lines += [f"Overall best run: `{top.get('trial_id')}` with {metric.name} = {_fmt(float(top[metric.column]))}, "
                  f"config `{_config_path(sweep_dir, top)}`.", ""]


def _section_importance(lines: list[str], frame: pd.DataFrame, metric: an.Metric) -> None:
    imp = an.importance(frame, metric)
    lines += ["## What mattered", ""]
    if imp.empty:
        lines += ["No hyperparameter varied among the completed trials.", ""]
        return
    lines += ["`spearman`: rank correlation with the metric (sign: higher value, higher metric). "
              "`variance_explained`: share of the metric's variance explained by this hyperparameter "
              "alone (numeric values in up to 8 quantile bins; small sweeps overstate it).", "",
              to_markdown(imp.map(_fmt)), ""]


def _section_stages(lines: list[str], frame: pd.DataFrame, metric: an.Metric, manifest: Manifest | None) -> None:
    if "stage" not in frame or frame["stage"].nunique(dropna=True) < 2 or an.is_asha(manifest):
        return   # successive halving has its own section: the rung ladder
    table = an.stage_summary(frame, metric)
    stages = manifest.settings.stages if manifest else None
    if stages is not None and stages.key and stages.values:
        values = stages.values
        table.insert(1, stages.key, [values[int(s)] if int(s) < len(values) else "" for s in table["stage"]])
    lines += ["## Progressive stages", "",
              "`vs_parent_mean`: mean change of the metric against the same trial's previous stage; "
              "`improved`: how many trials got better.", "", to_markdown(table.map(_fmt)), ""]


def _section_rungs(lines: list[str], frame: pd.DataFrame, metric: an.Metric, manifest: Manifest | None,
                   figures: dict[str, str], figures_dir: str) -> None:
    """Successive halving: the rung ladder, and what it spent against running every trial to the top."""
    if not an.is_asha(manifest):
        return
    stages = manifest.settings.stages
    from jobs.promote import eta_of

    eta = eta_of(manifest.settings)
    table = an.rung_ladder(frame, metric, manifest)
    spent, full, how = an.halving_compute(frame, manifest)
    lines += ["## Successive halving", "",
              f"Rungs on `{stages.key}`, eta {eta}: a trial climbs a rung as soon as it ranks in the top 1/{eta} "
              "of the rung's results so far, and starts from its own checkpoint of the rung below. "
              "`ran`: trials that ran the rung; `promoted`: how many climbed to the next.", "",
              to_markdown(table.map(_fmt)), ""]
    if full:
        lines += [f"GPU-hours: **{spent:.3g} spent**; running every trial to the top rung: about **{full:.3g}** "
                  f"({how}), so successive halving used {spent / full:.0%} of that.", ""]
    else:
        lines += [f"GPU-hours spent: {spent:.3g}; every trial to the top rung: {how}.", ""]
    path = fig.rung_ladder(frame, metric, os.path.join(figures_dir, "rung_ladder.png"), stages.values, stages.key)
    if path:
        figures["Successive halving: the rung ladder"] = path


def _causes(sweep_dir: str, manifest: Manifest | None) -> tuple[dict[str, str], SweepStatus | None]:
    """({trial id: why it did not complete, with the fix}, the sweep's status) from what the sweep's
    backend and files say (one sacct + one squeue for a Slurm sweep); ({}, None) without a manifest
    or when it cannot be asked."""
    if manifest is None:
        return {}, None
    from jobs.causes import cause_of
    from jobs.state import collect

    try:
        status = collect(sweep_dir, manifest)
    except UserError:
        return {}, None
    return {t.trial.id: c.text() for t in status.trials if (c := cause_of(t, sweep_dir)) is not None}, status


def _section_failures(lines: list[str], frame: pd.DataFrame, manifest: Manifest | None,
                      skipped: list[Skipped], sweep_dir: str) -> None:
    status = frame["status"].fillna("unknown") if "status" in frame else pd.Series("completed", index=frame.index)
    bad = frame[status != "completed"]
    # Trials successive halving did not promote never run: the rung section counts them.
    held = set(manifest.held_indices()) if manifest else set()
    planned = {t.id for t in manifest.trials if t.index not in held} if manifest else set()
    missing = planned - set(frame.get("trial_id", pd.Series(dtype=str)).dropna())
    lines += ["## Failed, diverged and pruned trials", ""]
    if bad.empty and not missing and not skipped:
        lines += ["None.", ""]
        return
    causes, sweep_status = _causes(sweep_dir, manifest) if (not bad.empty or missing) else ({}, None)
    if not bad.empty:
        from jobs.causes import headline

        errors = bad["error"].map(lambda e: headline(e)[:160] if isinstance(e, str) else "") if "error" in bad \
            else pd.Series("", index=bad.index)
        view = pd.DataFrame({"trial_id": bad.get("trial_id"), "stage": bad.get("stage"),
                             "environment": bad.get("environment"), "status": bad["status"],
                             "cause": [causes.get(t) or e for t, e in zip(bad.get("trial_id", errors.index), errors)]})
        lines += [to_markdown(view.head(MAX_FAILED_ROWS).map(_fmt)), ""]
        if len(view) > MAX_FAILED_ROWS:
            lines += [f"... and {len(view) - MAX_FAILED_ROWS} more (see {_CSV}).", ""]
    pruned = bad[bad["status"] == "pruned"] if not bad.empty else bad
    if len(pruned):
        saved = sweep_status.gpu_hours_saved if sweep_status is not None else None
        lines += [f"Early stopping pruned {len(pruned)} trial(s), saving about "
                  f"{_gpu_hours_saved(frame, manifest) if saved is None else saved:.2f} GPU-hours.", ""]
    if missing:
        lines += [f"{len(missing)} planned trial(s) have no result yet:", ""]
        lines += [f"- `{t}`: {causes.get(t, 'not run yet (queued, waiting for room, or not submitted)')}"
                  for t in sorted(missing)[:MAX_FAILED_ROWS]] + [""]
    if skipped:
        lines += [f"{len(skipped)} result file(s) could not be read:", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in skipped[:MAX_FAILED_ROWS]] + [""]


def _gpu_hours_saved(frame: pd.DataFrame, manifest: Manifest | None) -> float:
    """What jobs.state.collect works out, from the rows (a bare directory of results, or a sweep whose
    backend could not be asked)."""
    from jobs.bayes import gpu_hours_saved

    steps = [c for c in ("results.pruned_at_step", "results.last_step") if c in frame]
    rows = [{"status": r.get("status"), "runtime_s": r.get("runtime_s"),
             "results": {c.split(".", 1)[1]: r[c] for c in steps if pd.notna(r[c])}}
            for r in frame.to_dict("records")]
    return gpu_hours_saved(manifest.settings if manifest else Settings(name="", command=()), rows)


def build_report(sweep_dir: str, out_dir: str | None = None, *, metric: str | None = None,
                 goal: str | None = None) -> Report:
    sweep_dir = os.path.abspath(sweep_dir)
    if not os.path.isdir(sweep_dir):
        raise UserError(f"{sweep_dir} is not a directory", fix="pass the sweep directory `sweep launch` printed")
    out_dir = os.path.abspath(out_dir or os.path.join(sweep_dir, "reports"))
    os.makedirs(out_dir, exist_ok=True)
    manifest, frame, skipped = load_sweep(sweep_dir)
    chosen = an.choose_metric(frame, manifest, metric, goal)
    figures = fig.draw_all(frame, chosen, os.path.join(out_dir, "figures"))

    name = manifest.name if manifest else os.path.basename(sweep_dir)
    counts = frame["status"].fillna("unknown").value_counts() if "status" in frame else pd.Series(dtype=int)
    lines = [f"# Sweep report: {name}", "",
             f"- sweep directory: `{sweep_dir}`",
             f"- generated: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- method: {manifest.settings.method if manifest else 'unknown'}; "
             f"trials planned: {len(manifest.trials) if manifest else 'unknown'}; "
             f"results: {len(frame)} ({', '.join(f'{k} {v}' for k, v in counts.items())})",
             f"- metric: `{chosen.name}`, goal: {chosen.goal} (chosen by: {chosen.source})",
             f"- all results: [{_CSV}]({_CSV})", ""]
    _section_best(lines, frame, chosen, manifest, sweep_dir, out_dir)
    _section_rollouts(lines, frame, chosen, manifest, sweep_dir)
    _section_importance(lines, frame, chosen)
    _section_stages(lines, frame, chosen, manifest)
    _section_rungs(lines, frame, chosen, manifest, figures, os.path.join(out_dir, "figures"))
    _section_failures(lines, frame, manifest, skipped, sweep_dir)
    lines += ["## Figures", ""]
    for title, path in figures.items():
        lines += [f"### {title}", "", f"![{title}]({os.path.relpath(path, out_dir)})", ""]
    if not figures:
        lines += ["No figure: no completed trial with this metric.", ""]

    csv = os.path.join(out_dir, _CSV)
    write_table(frame, "csv", csv)
    report = os.path.join(out_dir, "report.md")
    write_text_atomic(report, "\n".join(lines))
    return Report(path=report, csv=csv, figures=figures, metric=chosen, skipped=skipped)
