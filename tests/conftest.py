"""Shared fixtures: the real single-node Slurm cluster for tests/slurm/.

`slurm_cluster` starts it through scripts/cluster.sh (idempotent, locked, so every xdist worker may
call it) and skips with the reason where that is impossible -- except under CI=true, where a missing
cluster is a failure.  Every test under tests/slurm/ is marked `slurm` and uses the fixture, and
holds a shared lock on the cluster; a test that requests `slurm_exclusive` runs alone.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The suite runs two xdist workers on two cores, each starting trainers and trials: one BLAS/OpenMP
# thread per process, or they contend (seen here: a linear layer 7x slower with 2 threads under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = ROOT / "scripts" / "cluster.sh"
SLURM_TESTS = Path(__file__).resolve().parent / "slurm"
# cluster.sh exits 3 when this machine cannot host a cluster (not root, no apt).
IMPOSSIBLE = 3
# Tests that disturb the whole node (down it, restart daemons) hold this exclusively; every other
# cluster test holds it shared.  flock works across xdist workers and across concurrent pytest runs.
TEST_LOCK = Path(os.environ.get("SLURMSWEEP_CLUSTER_STATE", "/var/lib/slurmsweep-cluster")) / "tests.lock"


@dataclass(frozen=True)
class SlurmCluster:
    """What the tests may rely on; see scripts/cluster.sh for the configuration."""

    name: str = "slurmsweep"
    node: str = ""
    partitions: tuple[str, ...] = ("main", "long", "unkillable")
    default_partition: str = "main"
    gpus: int = 4
    cpus: int = 32


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Slurm test cluster unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(f"Slurm test cluster unavailable: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    if os.name != "posix" or not CLUSTER_SCRIPT.exists():
        _unavailable(f"{CLUSTER_SCRIPT} not usable on this system")
    try:
        done = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], capture_output=True, text=True,
                              timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/cluster.sh up did not finish: {exc}")
    if done.returncode == IMPOSSIBLE:
        _unavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "exit 3")
    if done.returncode != 0:
        pytest.fail(f"scripts/cluster.sh up failed (exit {done.returncode}):\n{done.stderr}",
                    pytrace=False)
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    return SlurmCluster(node=node)


@pytest.fixture
def slurm_exclusive() -> None:
    """Request this in a test that disturbs the node for everyone (scontrol update node
    state=down, daemon restarts): it then runs alone, while no other cluster test runs."""


@pytest.fixture
def _slurm_test_lock(request: pytest.FixtureRequest, slurm_cluster: SlurmCluster):
    exclusive = "slurm_exclusive" in request.fixturenames
    TEST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    # flock has no writer preference: with shared holders overlapping, an exclusive taker could
    # wait forever.  So every taker passes a gate first; the exclusive one keeps it closed while
    # it waits for the shared holders to drain, and new shared takers queue at the gate.
    with open(f"{TEST_LOCK}.gate", "a+") as gate, open(TEST_LOCK, "a+") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.fixture
def slurm_cleanup():
    """A list: append the job ids you submit; they are scancelled when the test ends."""
    submitted: list[str] = []
    yield submitted
    if submitted:
        # Plain scancel: a failed cleanup must not hide the test's own result.
        subprocess.run(["scancel", *[str(j) for j in submitted]], capture_output=True, text=True,
                       timeout=60)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLURM_TESTS in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slurm)
            # Request the cluster (a machine without one skips them with the reason) and the
            # shared/exclusive test lock; the lock goes first so that cleanups run inside it.
            for name in ("slurm_cluster", "_slurm_test_lock"):
                if name not in item.fixturenames:
                    item.fixturenames.insert(0, name)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A test that runs the task runner in this process (jobs.run.run_task) installs its stop-signal
    forwarding here; left in place, the forked workers of a later test's multiprocessing.Pool would
    inherit a SIGTERM handler that ignores Pool.terminate(), and that test would hang."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(scope="session")
def sudoku_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Sudoku set in the trainer's format (100 puzzles, 16 test puzzles), made once per worker
    by the project's own generator; tests only read it."""
    out = tmp_path_factory.mktemp("data") / "sudoku"
    subprocess.run([sys.executable, "-m", "train.data.sudoku", "--output-dir", str(out), "--subsample-size", "100",
                    "--num-aug", "1", "--test-size", "16", "--seed", "0"],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    return out
