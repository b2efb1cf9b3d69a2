"""`sweep report A B C`: sweeps side by side -- the best trial of each, and the same metric's
distribution per sweep in one figure -- written as compare.md, a figure and a csv of all rows.

The metric is chosen as a single sweep's report chooses it, from the first sweep's file (or
--metric/--goal); a sweep without it shows no best. Sweeps are named by their directory, with
their owner (and then the full path) added where two names would be the same.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field

import pandas as pd

from jobs.atomic import write_text_atomic
from jobs.errors import UserError
from results import analysis as an
from results import figures as fig
from results.collect import Skipped, owner
from results.report import _fmt, load_sweep
from results.table import to_markdown
from results.table import write as write_table

LABEL = "compared"       # the column naming each row's sweep in the comparison
_CSV = "results.csv"
_FIGURE = "metric_by_sweep.png"


@dataclass
class Comparison:
    path: str
    csv: str
    figure: str | None
    metric: an.Metric
    best: pd.DataFrame                  # one row per sweep
    skipped: list[Skipped] = field(default_factory=list)


def labels(sweep_dirs: list[str]) -> list[str]:
    """Short unique names: the directory's name, else owner/name, else the full path."""
    base = [os.path.basename(os.path.normpath(d)) for d in sweep_dirs]
    out = []
    for d, b in zip(sweep_dirs, base):
        if base.count(b) == 1:
            out.append(b)
        else:
            out.append(f"{owner(d) or '?'}/{b}")
    return [o if out.count(o) == 1 else os.path.abspath(d) for d, o in zip(sweep_dirs, out)]


def default_out(names: list[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "_vs_".join(names))[:80].strip("_") or "sweeps"
    return os.path.abspath(f"compare_{slug}")


def build_comparison(sweep_dirs: list[str], out_dir: str | None = None, *, metric: str | None = None,
                     goal: str | None = None) -> Comparison:
    if len(set(map(os.path.realpath, sweep_dirs))) != len(sweep_dirs):
        raise UserError("the same sweep directory is given twice", fix="name each sweep once")
    for d in sweep_dirs:
        if not os.path.isdir(d):
            raise UserError(f"{d} is not a directory", fix="pass the sweep directories `sweep launch` printed")
    names = labels(sweep_dirs)
    loaded, skipped = [], []
    for d, name in zip(sweep_dirs, names):
        manifest, frame, bad = load_sweep(d)
        loaded.append((d, name, manifest, frame.assign(**{LABEL: name})))
        skipped += bad
    everything = pd.concat([f for _, _, _, f in loaded], ignore_index=True, sort=False)
    chosen = an.choose_metric(everything, loaded[0][2], metric, goal)
    out_dir = os.path.abspath(out_dir or default_out(names))
    os.makedirs(out_dir, exist_ok=True)

    rows, commands, tops = [], [], {}
    for d, name, manifest, frame in loaded:
        good = an.ranked(frame, chosen)
        values = good[chosen.column].astype(float) if len(good) else pd.Series(dtype=float)
        # The best as `sweep report` and `sweep best` pick it (successive halving: of the highest rung reached).
        candidates = an.best_candidates(frame, chosen, manifest)
        top = candidates.iloc[0] if len(candidates) else None
        row = {"sweep": name, "user": owner(d), "results": len(frame), "completed": len(good),
               "best": float(top[chosen.column]) if top is not None else float("nan"),
               "median": values.median() if len(good) else float("nan"),
               "best_trial": top.get("trial_id") if top is not None else ""}
        if top is not None:
            tops[name] = row["best"]
            row.update({c.removeprefix("hp."): top[c] for c in an.hp_columns(frame)})
            commands += [f"# {name}: trial {top.get('trial_id')}, {chosen.name} = {_fmt(row['best'])}",
                         an.rerun_command(manifest, d, top, json_file_dir=out_dir)]
        rows.append(row)
    best = pd.DataFrame(rows)
    figure = fig.sweeps_side_by_side(everything, chosen, os.path.join(out_dir, _FIGURE), by=LABEL, best=tops)

    lines = [f"# Sweeps compared: {', '.join(names)}", "",
             f"- generated: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- metric: `{chosen.name}`, goal: {chosen.goal} (chosen by: {chosen.source})",
             f"- all results: [{_CSV}]({_CSV}) (column `{LABEL}` names the sweep)", "",
             "| sweep | directory |", "|---|---|"]
    lines += [f"| {n} | `{os.path.abspath(d)}` |" for d, n, _, _ in loaded]
    lines += ["", "## Best per sweep", "", to_markdown(best.map(_fmt)), ""]
    if commands:
        lines += ["Rerun each sweep's best trial:", "", "```bash", *commands, "```", ""]
    missing = [r["sweep"] for r in rows if not r["completed"]]
    if missing:
        lines += [f"No completed trial with a finite {chosen.name} in: {', '.join(missing)}.", ""]
    lines += ["## The metric per sweep", ""]
    lines += [f"![{chosen.name} per sweep]({_FIGURE})", ""] if figure else ["No completed trial has this metric.", ""]
    if skipped:
        lines += [f"{len(skipped)} result file(s) could not be read (see each sweep's report).", ""]

    csv = os.path.join(out_dir, _CSV)
    write_table(everything, "csv", csv)
    path = os.path.join(out_dir, "compare.md")
    write_text_atomic(path, "\n".join(lines))
    return Comparison(path=path, csv=csv, figure=figure, metric=chosen, best=best, skipped=skipped)
