"""`sweep status DIR [--watch [SECONDS]] [--json] [--all] [--failed]`: every trial's state, why the
ones that did not complete ended, and a summary.

Built from manifest.json, the result files, and what the sweep's backend says (for Slurm one `sacct`
plus one `squeue` call per refresh, whatever the sweep's size). Big sweeps show the rows worth a
look (anything not completed) and say how many completed rows are hidden. Trial ids are never cut:
in a narrow terminal, columns are dropped instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.causes import cause_of
from jobs.errors import UserError
from jobs.state import SweepStatus, TrialStatus, collect, watch_delays
from jobs.trial_state import TrialState

# Above this many trials the table shows only the rows worth a look (unless --all).
FULL_TABLE_MAX = 40
INTERESTING_MAX = 60
STATE_STYLE = {
    "completed": "green", "running": "cyan", "pending": "blue", "unsubmitted": "dim",
    "failed": "bold red", "timeout": "red", "preempted": "yellow", "cancelled": "magenta",
    "lost": "bold magenta", "diverged": "yellow", "pruned": "dim yellow", "waiting": "dim cyan", "stopped": "dim",
}
# What the summary calls each state, in order of how far along a trial is.
LABELS = {"completed": "completed", "diverged": "diverged", "pruned": "pruned", "running": "running",
          "pending": "queued", "unsubmitted": "waiting for room", "preempted": "preempted", "timeout": "timeout",
          "cancelled": "cancelled", "failed": "failed", "lost": "lost", "waiting": "waiting for promotion",
          "stopped": "stopped (not promoted)"}
FAILURES = (TrialState.FAILED, TrialState.TIMEOUT, TrialState.CANCELLED, TrialState.LOST, TrialState.PREEMPTED,
            TrialState.DIVERGED)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="show every trial's state and why the failed ones failed",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (holds manifest.json)")
    p.add_argument("--watch", nargs="?", const=5.0, type=float, metavar="SECONDS",
                   help="refresh (first after SECONDS, default 5, backing off to 60) until nothing is active")
    p.add_argument("--json", action="store_true", help="machine-readable output (one object per refresh)")
    p.add_argument("--all", action="store_true", help="show every trial, not just the interesting ones")
    p.add_argument("--failed", action="store_true", help="only the trials that failed, with their causes")
    p.set_defaults(run=run)


def document(status: SweepStatus, manifest: mf.Manifest, sweep_dir: str, *, failed_only: bool = False) -> dict:
    doc = status.to_dict()
    for row, t in zip(doc["trials"], status.trials):
        cause = cause_of(t, sweep_dir)
        row["cause"] = None if cause is None else {"kind": cause.kind, "summary": cause.summary, "fix": cause.fix}
    if failed_only:
        doc["trials"] = [row for row, t in zip(doc["trials"], status.trials) if t.state in FAILURES]
    doc.update({"name": manifest.name, "sweep_dir": str(sweep_dir), "executor": manifest.settings.executor,
                "waiting_for_room": status.counts().get("unsubmitted", 0)})
    return doc


def status_document(sweep_dir: str) -> dict[str, Any]:
    """What `sweep status --json` prints (the in-process entry the benchmark times)."""
    manifest = mf.read_manifest(sweep_dir)
    return document(collect(sweep_dir, manifest), manifest, sweep_dir)


# --- rendering ------------------------------------------------------------------------------------

def _params(params: dict[str, Any], width: int = 48) -> str:
    text = " ".join(f"{k.rsplit('.', 1)[-1]}={_num(v)}" for k, v in params.items())
    return text if len(text) <= width else text[:width - 1] + "…"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _shown_metric(t: TrialStatus, metric: str | None) -> str:
    if t.metric is not None:
        return _num(t.metric)
    if metric is None and t.result:
        # No sweep metric: the first number the trial reported, with its name.
        for key, value in (t.result.get("results") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return f"{key}={_num(value)}"
    return ""


def choose_rows(status: SweepStatus, show_all: bool, failed_only: bool = False) -> tuple[list[TrialStatus], int]:
    """(rows to show, rows hidden): all of a small sweep; of a big one, what is not completed."""
    rows = status.trials
    if failed_only:
        rows = [t for t in rows if t.state in FAILURES]
    if show_all or len(rows) <= FULL_TABLE_MAX:
        return rows, len(status.trials) - len(rows) if failed_only else 0
    # Failures first (what the user must act on), then what is moving, then the rest.
    rank = {s: i for i, s in enumerate(("failed", "lost", "timeout", "cancelled", "preempted", "diverged",
                                        "running", "pending", "pruned", "unsubmitted", "waiting", "stopped"))}
    interesting = sorted((t for t in rows if t.state is not TrialState.COMPLETED),
                         key=lambda t: (rank.get(t.state.value, 99), t.trial.index))
    shown = interesting[:INTERESTING_MAX]
    return shown, len(status.trials) - len(shown)


def _note(t: TrialStatus, sweep_dir: str) -> str:
    cause = cause_of(t, sweep_dir)
    if cause is not None:
        return cause.text()
    if t.warning:
        return t.warning
    return (t.reason if t.state.is_active() or t.state is TrialState.WAITING else None) or ""


# Columns in the order they are shown, and the order they are dropped when the terminal is narrow
# (`#`, trial, state and the note always stay).
COLUMNS = ("#", "trial", "stage", "params", "state", "att", "runtime", "node", "metric", "note")
DROP_ORDER = ("node", "runtime", "att", "stage", "params", "metric")


def _cells(status: SweepStatus, rows: list[TrialStatus], sweep_dir: str) -> list[dict[str, Any]]:
    """Every column's cell of every row, computed once (a note may read the trial's Slurm log)."""
    from rich.text import Text

    return [{"#": str(t.trial.index), "trial": t.trial.id, "stage": str(t.trial.stage),
             "params": _params(t.params), "state": Text(t.state.value, style=STATE_STYLE.get(t.state.value, "")),
             "att": str(t.attempts or ""), "runtime": _duration(t.runtime_s), "node": t.node or "",
             "metric": _shown_metric(t, status.metric), "note": _note(t, sweep_dir)} for t in rows]


def _table(status: SweepStatus, cells: list[dict[str, Any]], name: str, sweep_dir: str, columns: list[str]) -> Any:
    from rich.table import Table

    metric = status.metric or "metric"
    table = Table(title=f"{name}  ({sweep_dir})", title_justify="left", show_lines=False, pad_edge=False)
    for col in columns:
        header = metric if col == "metric" else col
        if col == "trial":
            table.add_column(header, no_wrap=True, min_width=10)
        elif col == "note":
            table.add_column(header, overflow="fold", ratio=1)
        else:
            table.add_column(header, justify="right" if col in ("#", "stage", "att", "runtime", "metric") else "left",
                             no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(row[c] for c in columns))
    return table


# A note column narrower than this folds a cause over many lines: the notes then go under the table.
NOTE_MIN = 40


def _fitting_table(console: Any, status: SweepStatus, rows: list[TrialStatus], name: str, sweep_dir: str,
                   failed_only: bool = False) -> Any:
    """The table with as many columns as fit the console's width (ids whole); the note column gets
    room for its longest note up to NOTE_MIN, or the notes are printed under the table, one per row."""
    from rich.console import Group
    from rich.measure import Measurement
    from rich.text import Text

    cells = _cells(status, rows, sweep_dir)
    want = min(max((len(str(c["note"])) for c in cells), default=0), NOTE_MIN) + 3
    columns = list(COLUMNS)
    # Failed trials have no metric to show: their params are what tells them apart.
    order = (*[c for c in DROP_ORDER if c != "metric"][:4], "metric", "params") if failed_only else DROP_ORDER
    for drop in (None, *order):
        if drop is not None:
            columns.remove(drop)
        without_note = _table(status, cells, name, sweep_dir, [c for c in columns if c != "note"])
        if Measurement.get(console, console.options, without_note).maximum + want <= console.width:
            return _table(status, cells, name, sweep_dir, columns)
    notes = [Text.assemble((f"{c['#']} {c['trial']}: ", "bold"), str(c["note"])) for c in cells if c["note"]]
    return Group(without_note, *notes)


def render(console: Any, status: SweepStatus, name: str, sweep_dir: str, show_all: bool = False,
           goal: str = "maximize", failed_only: bool = False) -> Any:
    from rich.console import Group
    from rich.text import Text

    rows, hidden = choose_rows(status, show_all, failed_only)
    parts: list[Any] = [_fitting_table(console, status, rows, name, sweep_dir, failed_only)]
    counts = status.counts()
    total = len(status.trials)
    ended = status.ended()
    if hidden:
        what = "rows that did not fail" if failed_only else "completed/other rows"
        parts.append(Text(f"{hidden} {what} hidden (--all shows every trial)", style="dim"))
    width = 50
    filled = round(width * ended / total) if total else width
    parts.append(Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey23")))
    parts.append(Text.assemble((f"{ended}/{total} ended ({status.done_fraction():.0%})  ", "bold"),
                               *[(f"{LABELS[s]} {counts[s]}  ", STATE_STYLE.get(s, "")) for s in LABELS if counts.get(s)]))
    if status.rungs:
        parts.append(rung_table(status.rungs))
    parts += [Text(f"note: {n}", style="yellow") for n in status.notes]
    if counts.get("unsubmitted") and not status.active():
        # The top-up rides on the sweep's own tasks: with none left, nobody submits the rest.
        parts.append(Text(f"note: {counts['unsubmitted']} trial(s) wait for queue room and no task of the sweep is "
                          f"queued to submit them: `sweep resume {sweep_dir}`", style="yellow"))
    if status.gpu_hours_saved is not None:
        parts.append(Text(f"early stopping pruned {counts.get('pruned', 0)} trial(s), saving about "
                          f"{status.gpu_hours_saved:.2f} GPU-hours"))
    best = best_trial(status, goal)
    if best is not None:
        parts.append(Text(f"best {status.metric}: {_num(best.metric)} (trial {best.trial.id}, "
                          f"{_params(best.params, 80)})"))
    return Group(*parts)


def rung_table(rungs: list[Any]) -> Any:
    """Successive halving's ladder: per rung, the trials that entered it and what became of them."""
    from rich.table import Table

    table = Table(title="rungs (successive halving)", title_justify="left", pad_edge=False, show_edge=False)
    for col in ("rung", "budget", "trials", "completed", "running/queued", "promoted", "waiting", "stopped"):
        table.add_column(col, justify="right")
    for r in rungs:
        table.add_row(*(str(v) if v is not None else "-" for v in
                        (r.rung, r.budget, r.trials, r.completed, r.active, r.promoted, r.waiting, r.stopped)))
    return table


def best_trial(status: SweepStatus, goal: str = "maximize") -> TrialStatus | None:
    """The best completed trial by its (finite) metric; with rungs, of the highest rung reached."""
    done = [t for t in status.trials if t.state is TrialState.COMPLETED and t.metric is not None]
    if not done:
        return None
    if status.rungs:   # a lower rung's value came from a smaller budget: not comparable
        top = max(t.trial.stage for t in done)
        done = [t for t in done if t.trial.stage == top]
    return (min if goal == "minimize" else max)(done, key=lambda t: t.metric)


def console() -> Any:
    """A console that never cuts what a pipe receives (rich assumes 80 columns off a terminal)."""
    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=200)


def print_results(sweep_dir: str | os.PathLike) -> None:
    """The table `sweep launch` prints after a local run in the foreground."""
    sweep_dir = str(sweep_dir)
    manifest = mf.read_manifest(sweep_dir)
    out = console()
    out.print(render(out, collect(sweep_dir, manifest), manifest.name, sweep_dir, True, manifest.settings.goal))


# --- the command ----------------------------------------------------------------------------------

def _reconciled(sweep_dir: str) -> None:
    """Settle submissions recorded but never confirmed (a launcher killed mid-submit), when nobody
    else holds the sweep: `sweep status` must not show them as lost."""
    from jobs.lock import LockBusy
    from jobs.submission import open_sweep

    try:
        with open_sweep(sweep_dir, "sweep status", timeout=0):
            pass
    except LockBusy:
        pass
    except UserError as exc:
        if "cannot write" not in str(exc):   # a read-only sweep of someone else: show what is there
            raise


def run(args: argparse.Namespace) -> int:
    sweep_dir = str(Path(args.sweep_dir).absolute())
    manifest = mf.read_manifest(sweep_dir)  # a UserError here names the directory
    if args.watch is not None and args.watch <= 0:
        raise UserError("--watch needs a positive number of seconds", key="--watch")
    said: set[str] = set()

    def refresh() -> tuple[mf.Manifest, SweepStatus]:
        current = mf.read_manifest(sweep_dir)
        if any(s.state == "pending" for s in current.submissions) and os.access(sweep_dir, os.W_OK):
            _reconciled(sweep_dir)
            current = mf.read_manifest(sweep_dir)
        status = collect(sweep_dir, current)
        # Say each fallback once, not at every refresh.
        status.notes = [n for n in status.notes if n not in said]
        said.update(status.notes)
        return current, status

    if args.json:
        return _run_json(args, sweep_dir, refresh)
    out = console()
    manifest, status = refresh()

    def view(status: SweepStatus) -> Any:
        return render(out, status, manifest.name, sweep_dir, args.all, manifest.settings.goal, args.failed)

    if args.watch is None:
        out.print(view(status))
        return 0
    from rich.live import Live

    delays = watch_delays(start=args.watch)
    with Live(view(status), console=out, auto_refresh=False) as live:
        while status.active():
            time.sleep(next(delays))
            manifest, status = refresh()
            live.update(view(status), refresh=True)
    out.print("nothing active any more" if status.trials else "no trials")
    return 0


def _run_json(args: argparse.Namespace, sweep_dir: str, refresh: Any) -> int:
    def emit(manifest: mf.Manifest, status: SweepStatus) -> None:
        sys.stdout.write(json.dumps(document(status, manifest, sweep_dir, failed_only=args.failed), default=str) + "\n")
        sys.stdout.flush()

    manifest, status = refresh()
    emit(manifest, status)
    if args.watch is not None:
        delays = watch_delays(start=args.watch)
        while status.active():
            time.sleep(next(delays))
            manifest, status = refresh()
            emit(manifest, status)
    return 0
