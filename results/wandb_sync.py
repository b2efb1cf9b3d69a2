"""`sweep sync`: upload a sweep's finished offline W&B runs from the login node, once each.

Compute nodes often have no internet, so the trainer logs W&B offline (train/metrics.py): each
attempt of a trial leaves trials/<id>/wandb/offline-run-<YYYYmmdd_HHMMSS>-<run id>/run-<id>.wandb
(a requeued attempt resumes the same run id in a new directory). This module picks the runs
that are finished and not yet uploaded, and hands them to `wandb sync`:

- finished: the trial has its result.json, and no file of the run changed in the last
  `settle_s` seconds (a run still being written is left for the next sync);
- not yet uploaded: no marker (`.slurmsweep-synced`, written in the run's directory after its
  upload) and no `.wandb.synced` of wandb's own (a run someone synced by hand);
- oldest first (by the start time in the directory's name): the attempts of one requeued run
  are replayed in the order they ran;
- `parallel` uploads at a time: the runs are dealt out to that many `wandb sync` processes
  (each process costs about 2 s to start, so one per run would be slow), the runs of one trial
  always to the same process, in order.
The server is checked once, with one TCP connection, before any upload starts: without it
(a compute node, no internet), the command fails at once with one line instead of N timeouts.
"""
from __future__ import annotations

import configparser
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field

from jobs import manifest as mf
from jobs.errors import UserError

MARKER = ".slurmsweep-synced"
DEFAULT_SERVER = "https://api.wandb.ai"
SETTLE_S = 60.0
_RUN_DIR = re.compile(r"^offline-run-(\d{8}_\d{6})-(.+)$")


@dataclass(frozen=True)
class OfflineRun:
    trial_id: str
    directory: str          # .../trials/<id>/wandb/offline-run-<time>-<run id>
    started: str            # YYYYmmdd_HHMMSS, from the directory's name
    run_id: str


@dataclass
class Selection:
    ready: list[OfflineRun] = field(default_factory=list)                 # oldest first
    skipped: list[tuple[OfflineRun, str]] = field(default_factory=list)   # and why


def find_runs(sweep_dir: str) -> list[OfflineRun]:
    """Every offline run directory under the sweep's trials (any depth below the trial)."""
    trials = os.path.join(sweep_dir, mf.TRIALS)
    if not os.path.isdir(trials):
        raise UserError(f"{sweep_dir} is not a sweep directory (no trials/)",
                        fix="pass the directory `sweep launch` printed")
    runs = []
    for trial in sorted(os.listdir(trials)):
        for root, dirs, _ in os.walk(os.path.join(trials, trial)):
            if os.path.basename(root) == "checkpoints":
                dirs[:] = []
                continue
            for d in sorted(dirs):
                m = _RUN_DIR.match(d)
                if m:
                    runs.append(OfflineRun(trial, os.path.join(root, d), m.group(1), m.group(2)))
            dirs[:] = [d for d in dirs if not _RUN_DIR.match(d)]
    return runs


def _newest_mtime(directory: str) -> float:
    newest = os.stat(directory).st_mtime
    for root, _, files in os.walk(directory):
        for f in files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, f)).st_mtime)
            except OSError:
                continue
    return newest


def _wandb_files(directory: str) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f.endswith(".wandb"))


def select(sweep_dir: str, *, settle_s: float = SETTLE_S, now: float | None = None) -> Selection:
    """The runs to upload now, oldest first, and the others with the reason they wait."""
    now = time.time() if now is None else now
    out = Selection()
    for run in find_runs(sweep_dir):
        files = _wandb_files(run.directory)
        if os.path.exists(os.path.join(run.directory, MARKER)) or (
                files and all(os.path.exists(os.path.join(run.directory, f + ".synced")) for f in files)):
            out.skipped.append((run, "already synced"))
        elif not files:
            out.skipped.append((run, "no .wandb file in it"))
        elif not mf.result_path(sweep_dir, run.trial_id).exists():
            out.skipped.append((run, "its trial has no result yet (still running, or requeued)"))
        elif (age := now - _newest_mtime(run.directory)) < settle_s:   # the walk last: it reads every file's time
            out.skipped.append((run, f"written to {age:.0f} s ago (waiting {settle_s:.0f} s for it to settle)"))
        else:
            out.ready.append(run)
    out.ready.sort(key=lambda r: (r.started, r.directory))
    return out


# --- the server ----------------------------------------------------------------------------

def server_url() -> str:
    """WANDB_BASE_URL, else the base_url of `wandb login --host` (wandb's settings file), else W&B's cloud."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    config_dir = os.environ.get("WANDB_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".config", "wandb")
    parser = configparser.ConfigParser()
    try:
        parser.read(os.path.join(config_dir, "settings"))
        return parser.get("default", "base_url", fallback=DEFAULT_SERVER) or DEFAULT_SERVER
    except (configparser.Error, OSError):
        return DEFAULT_SERVER


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """One TCP connection to the server, or a UserError saying it cannot be reached."""
    parsed = urllib.parse.urlparse(url if "://" in url else f"https://{url}")
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    if not host:
        raise UserError(f"W&B server URL {url!r} names no host", fix="set WANDB_BASE_URL to e.g. https://api.wandb.ai")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(f"cannot reach the W&B server {url} ({why}); nothing was uploaded",
                        fix="run `sweep sync` where the server can be reached (the login node, not a compute "
                            "node), or point WANDB_BASE_URL at your server") from None


# --- uploading -----------------------------------------------------------------------------

def deal(runs: list[OfflineRun], parallel: int) -> list[list[OfflineRun]]:
    """Oldest-first runs dealt to `parallel` batches, each trial's runs in one batch, in order."""
    batches: list[list[OfflineRun]] = [[] for _ in range(max(1, parallel))]
    home: dict[str, int] = {}
    for run in runs:
        if run.trial_id not in home:
            home[run.trial_id] = min(range(len(batches)), key=lambda i: len(batches[i]))
        batches[home[run.trial_id]].append(run)
    return [b for b in batches if b]


def _sync_batch(batch: list[OfflineRun], extra_args: list[str]) -> tuple[list[OfflineRun], str]:
    """One `wandb sync` process for a batch; returns the runs it uploaded and its output's tail."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}    # offline would stop the upload
    cmd = [sys.executable, "-m", "wandb", "sync", *extra_args, *(r.directory for r in batch)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    if done.returncode == 0:
        return batch, "\n".join(tail)
    # Partly done: wandb marks each file it uploaded with <file>.synced.
    uploaded = [r for r in batch if (files := _wandb_files(r.directory))
                and all(os.path.exists(os.path.join(r.directory, f + ".synced")) for f in files)]
    return uploaded, "\n".join(tail)


def upload(selection: Selection, *, parallel: int, extra_args: list[str] | None = None,
           say=print) -> tuple[int, int]:
    """Upload the selected runs, `parallel` processes at a time; mark each uploaded run.
    Returns (uploaded, failed)."""
    from concurrent.futures import ThreadPoolExecutor

    batches = deal(selection.ready, parallel)
    uploaded = failed = 0
    with ThreadPoolExecutor(len(batches) or 1) as pool:
        for batch, (done, tail) in zip(batches, pool.map(lambda b: _sync_batch(b, extra_args or []), batches)):
            for run in done:
                with open(os.path.join(run.directory, MARKER), "w") as f:
                    f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
            uploaded += len(done)
            lost = [r for r in batch if r not in done]
            failed += len(lost)
            for run in lost:
                say(f"failed: {run.directory}")
            if lost and tail:
                say("  wandb said: " + tail.replace("\n", "\n  "))
    return uploaded, failed
