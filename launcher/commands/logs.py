"""`sweep logs DIR TRIAL [--follow]`: a trial's own log (trial.log) and its Slurm output.

TRIAL is a trial id (or a prefix of one long enough to be unique) or a trial index, as
`sweep status` shows them. --follow keeps printing what is appended until the trial has a result.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.errors import UserError

FOLLOW_POLL_S = 1.0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("logs", help="print a trial's log and its Slurm output",
                              description=__doc__.split("\n\n")[0],
                              epilog="example: sweep logs $SCRATCH/sweeps/lr_search 3f9a --follow")
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory")
    p.add_argument("trial", metavar="TRIAL", help="trial id, unique id prefix, or index")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the trial has a result")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each log")
    p.set_defaults(run=run)


def find_trial(manifest: mf.Manifest, text: str) -> mf.Trial:
    if text.isdigit() and not any(t.id == text for t in manifest.trials):
        try:
            return manifest.trial_at(int(text))
        except KeyError:
            raise UserError(f"no trial with index {text} ({len(manifest.trials)} trials)",
                            fix="`sweep status DIR` lists the trials") from None
    matches = [t for t in manifest.trials if t.id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no trial {text!r} in {manifest.name}", fix="`sweep status DIR` lists the trial ids")
    raise UserError(f"{text!r} matches {len(matches)} trials ({', '.join(t.id for t in matches[:4])}, ...)",
                    fix="give more of the id")


def log_files(sweep_dir: Path, trial: mf.Trial) -> list[Path]:
    """The trial's own log, then every Slurm output its tasks wrote (oldest first)."""
    tdir = mf.trial_dir(sweep_dir, trial.id)
    slurm = sorted(tdir.glob("slurm-*.out"), key=lambda p: os.path.getmtime(p) if p.exists() else 0)
    return [tdir / "trial.log", *slurm]


def _show(path: Path, tail: int | None) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    text = data.decode(errors="replace")
    if tail:
        text = "\n".join(text.splitlines()[-tail:]) + "\n"
    sys.stdout.write(text)
    return len(data)


def run(args: argparse.Namespace) -> int:
    sweep_dir = Path(args.sweep_dir).absolute()
    manifest = mf.read_manifest(sweep_dir)
    trial = find_trial(manifest, args.trial)
    files = log_files(sweep_dir, trial)
    if not any(f.exists() for f in files):
        print(f"trial {trial.id} (index {trial.index}) has not started: no log yet", file=sys.stderr)
        if not args.follow:
            return 0
    seen: dict[Path, int] = {}
    for path in files:
        if path.exists():
            print(f"==> {path} <==", flush=True)
            seen[path] = _show(path, args.tail)
    if not args.follow:
        return 0
    from jobs.results import read_result
    from jobs.trial_state import TrialState

    started = time.time()

    def ended() -> bool:
        """A final result, or one written while we followed (the run we watched ended)."""
        result = read_result(sweep_dir, trial.id)
        if result is None:
            return False
        return TrialState.of_result(result).is_final() or \
            mf.result_path(sweep_dir, trial.id).stat().st_mtime >= started
    while True:
        for path in log_files(sweep_dir, trial):   # a requeue adds a Slurm output
            size = path.stat().st_size if path.exists() else 0
            if size > seen.get(path, 0):
                if path not in seen:
                    print(f"==> {path} <==", flush=True)
                with open(path, "rb") as f:
                    f.seek(seen.get(path, 0))
                    sys.stdout.write(f.read().decode(errors="replace"))
                    sys.stdout.flush()
                seen[path] = size
        if ended():
            return 0
        time.sleep(FOLLOW_POLL_S)
