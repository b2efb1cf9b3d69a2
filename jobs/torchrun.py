"""One trial in several processes: its command under torchrun, and stop signals to every rank.

A sweep whose profile (or `resources:`, or --gpus-per-trial) sets `gpus_per_trial: N`, N > 1, runs
each trial's argv -- the very argv a one-process trial runs, `python -m train ...` or any program --
as N ranks:

    <the sweep's python> -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=N
        --tee=3 --role=rank --log_dir=<trial>/torchrun --no_python <the trial's argv>

- The sweep's interpreter runs torchrun (no `torchrun` needed on PATH); `--no_python` starts the
  trial's argv as it is on every rank.
- `--standalone` (torch 2.13) serves its rendezvous store on localhost port 0 and the store the
  ranks share on port 0 as well: the kernel picks each free port and the agent keeps it bound, so
  two trials on one node cannot collide. TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 would make torch
  probe a free port and close it before rank 0 binds it again; the runner unsets it.
- `--tee=3 --role=rank`: every rank's lines reach trial.log prefixed `[rank<i>]:`, so a failure
  names the rank that failed and its last line (jobs.causes); each rank's own stdout and stderr
  are also kept under <trial>/torchrun/.
- Stop signals: torchrun starts every rank in a session of its own, so the Forwarder's killpg of
  the program (the agent) would reach no rank. The agent dies of SIGUSR1/SIGUSR2 (before torch
  2.9 it can handle only TERM/INT/HUP/QUIT) and SIGKILLs its ranks 30 s after a SIGTERM, saved or
  not. So `Agent.deliver` sends the signal to every rank's process group instead and leaves the
  agent alone: the ranks checkpoint and exit 0, and the agent with them.

A command that already starts torchrun (`torchrun ...`, `python -m torch.distributed.run ...`) is
not wrapped again. It runs as written -- its own --nproc_per_node decides the ranks, and
gpus_per_trial only sizes the allocation -- except that `torchrun` as its first word means the
sweep's interpreter (as `python` does), and `--standalone` is added when it names no rendezvous
(torchrun's default, a static one on port 29500, collides with the next trial on the node).

Stdlib only: the task runner imports this module.
"""
from __future__ import annotations

import os
import signal
import sys
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

MODULE = "torch.distributed.run"
LAUNCHER_MODULES = (MODULE, "torch.distributed.launch")
LOG_DIR = "torchrun"        # in the trial directory: every rank's stdout/stderr, per attempt
# torchrun options that take no value (the others take the next element when written without `=`).
_FLAGS = frozenset(("--standalone", "-m", "--module", "--no-python", "--no_python", "--run-path", "--run_path",
                    "--virtual-local-rank", "--virtual_local_rank"))
# Options (and their PET_* variables) that say where the ranks meet: without one, --standalone.
_RENDEZVOUS = ("--standalone", "--rdzv", "--master")
_RENDEZVOUS_ENV = ("PET_STANDALONE", "PET_RDZV_ENDPOINT", "PET_RDZV_BACKEND", "PET_MASTER_ADDR", "PET_MASTER_PORT")


# --- the argv ------------------------------------------------------------------------------------

def launcher_length(argv: list[str] | tuple[str, ...]) -> int:
    """How many leading elements of `argv` start torchrun (0: it does not start torchrun)."""
    argv = [str(a) for a in argv]
    if not argv:
        return 0
    first = os.path.basename(argv[0])
    if first == "torchrun":
        return 1
    if first == "env" and len(argv) > 1 and argv[1] == "torchrun":
        return 2
    if first.startswith("python") or first == "${interpreter}":
        if len(argv) > 2 and argv[1] == "-m" and argv[2] in LAUNCHER_MODULES:
            return 3
        if len(argv) > 1 and argv[1].startswith("-m") and argv[1][2:] in LAUNCHER_MODULES:
            return 2
    if first == "env" and len(argv) > 3 and argv[2] == "-m" and argv[3] in LAUNCHER_MODULES:
        return 4                                             # /usr/bin/env python -m torch.distributed.run
    return 0


def starts_torchrun(argv: list[str] | tuple[str, ...]) -> bool:
    return launcher_length(argv) > 0


def _split(argv: list[str]) -> tuple[dict[str, str | None], list[str]]:
    """(torchrun's own options, what follows them: the training script or module and its arguments)."""
    out: dict[str, str | None] = {}
    rest = list(argv[launcher_length(argv):])
    while rest and rest[0].startswith("-"):
        arg = rest.pop(0)
        if "=" in arg:
            key, _, value = arg.partition("=")
            out[key] = value
        elif arg in _FLAGS:
            out[arg] = None
        else:
            out[arg] = rest.pop(0) if rest else None
    return out, rest


def options(argv: list[str]) -> dict[str, str | None]:
    """torchrun's own options in a torchrun argv ({'--nproc_per_node': '4', '--standalone': None}),
    up to the training script."""
    return _split(argv)[0]


def program(argv: list[str]) -> list[str]:
    """What each rank of a torchrun argv runs, as it would follow `python`: ['-m', 'train', ...] for
    `torchrun ... -m train ...`, else the script and its arguments."""
    opts, rest = _split(argv)
    return ["-m", *rest] if "-m" in opts or "--module" in opts else rest


def nproc(argv: list[str]) -> int | None:
    """The --nproc_per_node of a torchrun argv, when it is a number."""
    opts = options(argv)
    value = opts.get("--nproc_per_node", opts.get("--nproc-per-node"))
    return int(value) if value and value.isdigit() else None


def processes(command: list[str] | tuple[str, ...], gpus_per_trial: int | None) -> int:
    """Processes one trial runs: a torchrun command's own --nproc_per_node, else gpus_per_trial."""
    own = nproc([str(c) for c in command]) if starts_torchrun(command) else None
    return own or gpus_per_trial or 1


def as_written(argv: list[str]) -> list[str]:
    """A command that starts torchrun itself: `torchrun` -> the sweep's interpreter, and
    --standalone when it names no rendezvous."""
    n = launcher_length(argv)
    launcher, rest = list(argv[:n]), list(argv[n:])
    if launcher[0] == "torchrun" or launcher[1:] == ["torchrun"]:   # a bare name, as `python` (jobs.argv)
        launcher = [sys.executable, "-m", MODULE]
    named = any(key.startswith(_RENDEZVOUS) for key in options(argv))
    if not named and not any(os.environ.get(var) for var in _RENDEZVOUS_ENV):
        rest.insert(0, "--standalone")
    return launcher + rest


def command(argv: list[str], processes: int, log_dir: str | os.PathLike) -> list[str]:
    """The argv that runs a trial of `argv` on `processes` ranks (module doc)."""
    if starts_torchrun(argv):
        return as_written(argv)
    if processes <= 1:
        return argv
    return [sys.executable, "-m", MODULE, "--standalone", "--nnodes=1", f"--nproc_per_node={processes}",
            "--tee=3", "--role=rank", f"--log_dir={os.fspath(log_dir)}", "--no_python", *argv]


def environment(env: dict[str, str], processes: int, wrapped: bool) -> dict[str, str]:
    """`env` for a trial of `processes` ranks (in place, and returned)."""
    if processes <= 1:
        return env
    # The job script gives OpenMP one thread per allocated CPU; with N ranks on those CPUs each
    # rank gets its share (torchrun's own default when nothing is set: 1, with a banner).
    cpus, omp = env.get("SLURM_CPUS_PER_TASK", ""), env.get("OMP_NUM_THREADS")
    if omp is None or (omp == cpus and cpus.isdigit()):
        env["OMP_NUM_THREADS"] = str(max(1, int(cpus) // processes)) if cpus.isdigit() else "1"
    env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)   # module doc: two trials, one port
    if wrapped:
        # --tee sends the ranks' output through files: unbuffered, lines reach trial.log as they are
        # printed (torchrun adds -u itself, but not with --no_python).
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --- the running agent ---------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc (none where there is no /proc)."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rpartition(b")")[2].split()   # the command name may hold spaces and parentheses
        if len(fields) > 1 and fields[1] == str(pid).encode():
            out.append(int(name))
    return out


class Agent:
    """torchrun's agent as the runner holds it: Popen's pid, poll() and wait(), and deliver(),
    which jobs.stop.Forwarder calls instead of signalling the agent's process group."""

    def __init__(self, child: Any) -> None:
        self.child = child
        self.pid = child.pid

    def poll(self) -> int | None:
        return self.child.poll()

    def wait(self) -> int:
        return self.child.wait()

    def deliver(self, signum: int) -> None:
        """`signum` to every rank's process group (a rank's data-loader workers get it too)."""
        ranks = children(self.pid)
        if not ranks:
            # No rank yet: the agent installs its SIGTERM handler before it starts one, so SIGTERM
            # ends it before there is anything to save, or makes it stop its ranks with SIGTERM.
            ranks, signum = [self.pid], signal.SIGTERM
        for pid in ranks:
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signum)
                else:   # a rank in the agent's group (an older torchrun): that rank only
                    os.kill(pid, signum)
            except ProcessLookupError:
                pass
