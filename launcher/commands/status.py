"""`sweep status DIR [--watch [SECONDS]] [--json] [--all]`: every trial's state, and a summary.

Built from manifest.json, the result files, and one `sacct` plus one `squeue` call per refresh
(no Slurm call at all for local sweeps), whatever the sweep's size. Big sweeps show the rows
worth a look (anything not completed) and say how many completed rows are hidden.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from jobs import manifest as mf
from jobs.errors import UserError
from jobs.state import SweepStatus, TrialState, TrialStatus, collect, watch_delays

# Above this many trials the table shows only the rows worth a look (unless --all).
FULL_TABLE_MAX = 40
INTERESTING_MAX = 60
STATE_STYLE = {
    "completed": "green", "running": "cyan", "pending": "blue", "unsubmitted": "dim",
    "failed": "bold red", "timeout": "red", "preempted": "yellow", "cancelled": "magenta",
    "lost": "bold magenta", "diverged": "yellow", "pruned": "dim yellow",
}
# Summary order: how far along a trial is.
ORDER = ("completed", "diverged", "pruned", "running", "pending", "unsubmitted", "preempted",
         "timeout", "cancelled", "failed", "lost")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="show every trial's state (one sacct + one squeue call)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (holds manifest.json)")
    p.add_argument("--watch", nargs="?", const=5.0, type=float, metavar="SECONDS",
                   help="refresh (first after SECONDS, default 5, backing off to 60) until nothing is active")
    p.add_argument("--json", action="store_true", help="machine-readable output (one object per refresh)")
    p.add_argument("--all", action="store_true", help="show every trial, not just the interesting ones")
    p.set_defaults(run=run)


def status_document(sweep_dir: str) -> dict[str, Any]:
    """What `sweep status --json` prints (the in-process entry the benchmark times)."""
    manifest = mf.read_manifest(sweep_dir)
    return document(collect(sweep_dir, manifest), manifest, sweep_dir)


def document(status: SweepStatus, manifest: dict[str, Any], sweep_dir: str) -> dict[str, Any]:
    doc = status.to_dict()
    doc.update({"name": manifest.get("name"), "sweep_dir": str(sweep_dir), "executor": manifest.get("executor")})
    return doc


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


def choose_rows(status: SweepStatus, show_all: bool) -> tuple[list[TrialStatus], int]:
    """(rows to show, rows hidden): all of a small sweep; of a big one, what is not completed."""
    rows = status.trials
    if show_all or len(rows) <= FULL_TABLE_MAX:
        return rows, 0
    # Failures first (what the user must act on), then what is moving, then the rest.
    rank = {s: i for i, s in enumerate(("failed", "lost", "timeout", "cancelled", "preempted", "diverged",
                                        "running", "pending", "pruned", "unsubmitted"))}
    interesting = sorted((t for t in rows if t.state is not TrialState.COMPLETED),
                         key=lambda t: (rank.get(t.state.value, 99), t.trial["index"]))
    shown = interesting[:INTERESTING_MAX]
    return shown, len(rows) - len(shown)


def render(status: SweepStatus, name: str, sweep_dir: str, show_all: bool = False,
           goal: str = "maximize") -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows, hidden = choose_rows(status, show_all)
    metric = status.metric or "metric"
    table = Table(title=f"{name}  ({sweep_dir})", title_justify="left", show_lines=False, pad_edge=False)
    for col, justify in (("#", "right"), ("trial", "left"), ("stage", "right"), ("params", "left"),
                         ("state", "left"), ("att", "right"), ("runtime", "right"), ("node", "left"),
                         (metric, "right"), ("note", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "note", overflow="ellipsis")
    for t in rows:
        note = t.error or (t.reason if t.state.is_active() else None) or ""
        table.add_row(str(t.trial["index"]), t.trial["id"], str(t.trial.get("stage", 0)),
                      _params(t.trial.get("params", {})),
                      Text(t.state.value, style=STATE_STYLE.get(t.state.value, "")),
                      str(t.attempts or ""), _duration(t.runtime_s), t.node or "",
                      _shown_metric(t, status.metric), note[:60])
    counts = status.counts()
    total = len(status.trials)
    done = sum(counts.get(s, 0) for s in ("completed", "diverged", "pruned"))
    summary = Text.assemble(
        (f"{done}/{total} finished ({status.done_fraction():.0%})  ", "bold"),
        *[(f"{s} {counts[s]}  ", STATE_STYLE.get(s, "")) for s in ORDER if counts.get(s)])
    parts: list[Any] = [table]
    if hidden:
        parts.append(Text(f"{hidden} completed/other rows hidden (--all shows every trial)", style="dim"))
    width = 50
    filled = round(width * done / total) if total else width
    parts += [Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey23")), summary]
    parts += [Text(f"note: {n}", style="yellow") for n in status.notes]
    if status.gpu_hours_saved is not None:
        parts.append(Text(f"early stopping pruned {counts.get('pruned', 0)} trial(s), saving about "
                          f"{status.gpu_hours_saved:.2f} GPU-hours"))
    best = best_trial(status, goal)
    if best is not None:
        parts.append(Text(f"best {status.metric}: {_num(best.metric)} (trial {best.trial['id']}, "
                          f"{_params(best.trial.get('params', {}), 80)})"))
    return Group(*parts)


def best_trial(status: SweepStatus, goal: str = "maximize") -> TrialStatus | None:
    done = [t for t in status.trials if t.state is TrialState.COMPLETED and t.metric is not None]
    if not done:
        return None
    return (min if goal == "minimize" else max)(done, key=lambda t: t.metric)


# --- the command ----------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    sweep_dir = str(args.sweep_dir)
    manifest = mf.read_manifest(sweep_dir)  # a UserError here names the directory
    if args.watch is not None and args.watch <= 0:
        raise UserError("--watch needs a positive number of seconds", key="--watch")
    name = manifest.get("name", "sweep")
    goal = manifest.get("goal") or "maximize"
    said: set[str] = set()

    def refresh() -> SweepStatus:
        status = collect(sweep_dir, mf.read_manifest(sweep_dir))
        # Say each fallback once, not at every refresh.
        status.notes = [n for n in status.notes if n not in said]
        said.update(status.notes)
        return status

    if args.json:
        return _run_json(args, sweep_dir, manifest, refresh)
    from rich.console import Console

    console = Console()
    status = refresh()
    if args.watch is None:
        console.print(render(status, name, sweep_dir, args.all, goal))
        return 0
    from rich.live import Live

    delays = watch_delays(start=args.watch)
    with Live(render(status, name, sweep_dir, args.all, goal), console=console, auto_refresh=False) as live:
        while status.active():
            time.sleep(next(delays))
            status = refresh()
            live.update(render(status, name, sweep_dir, args.all, goal), refresh=True)
    console.print("nothing active any more" if status.trials else "no trials")
    return 0


def _run_json(args: argparse.Namespace, sweep_dir: str, manifest: dict[str, Any], refresh: Any) -> int:
    def emit(status: SweepStatus) -> None:
        sys.stdout.write(json.dumps(document(status, manifest, sweep_dir), default=str) + "\n")
        sys.stdout.flush()

    status = refresh()
    emit(status)
    if args.watch is not None:
        delays = watch_delays(start=args.watch)
        while status.active():
            time.sleep(next(delays))
            status = refresh()
            emit(status)
    return 0
