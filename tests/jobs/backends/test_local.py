"""jobs.backends.local: is a recorded pool still running, which trials it owes, finding it by token."""
from __future__ import annotations

import os
import subprocess
import sys

from jobs import manifest as mf
from jobs.backends import SweepRef
from jobs.backends.local import BACKEND, pool_alive
from jobs.manifest import Manifest, Settings, Submission, Trial
from jobs.run import now_iso
from jobs.state import combine


def manifest(pid: int, submitted: str) -> Manifest:
    return Manifest(settings=Settings(name="l", command=("true",), executor="local"),
                    trials=tuple(Trial(id=f"t{i}", index=i) for i in range(3)),
                    submissions=(Submission(stage=0, indices="0-2", executor="local", pid=pid, submitted=submitted,
                                            token="feed0001"),))


def test_a_live_pool_owes_its_trials_and_a_dead_one_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--token", "feed0001"])
    try:
        m = manifest(proc.pid, now_iso())
        mf.trial_dir(tmp_path, "t0").mkdir(parents=True)
        mf.result_path(tmp_path, "t0").write_text('{"status": "completed"}')
        os.utime(mf.result_path(tmp_path, "t0"), (1e10, 1e10))     # written after the submission
        mf.trial_dir(tmp_path, "t1").mkdir(parents=True)
        (mf.trial_dir(tmp_path, "t1") / "trial.log").write_text("=== attempt 0 ===\n")
        live = BACKEND.live(SweepRef(tmp_path, m))
        assert {i: t.state for i, t in live.tasks.items()} == {1: "RUNNING", 2: "PENDING"}
        status = combine(m, {"t0": {"status": "completed"}}, live)
        assert [t.state.value for t in status.trials] == ["completed", "running", "pending"]
        # A pool recorded as pending (its launcher died before confirming) is found by its token.
        assert BACKEND.find(SweepRef(tmp_path, m), list(m.submissions)) == {"feed0001": [str(proc.pid)]}
    finally:
        proc.kill()
        proc.wait()
    assert BACKEND.live(SweepRef(tmp_path, m)).tasks == {}
    status = combine(m, {"t0": {"status": "completed"}}, BACKEND.live(SweepRef(tmp_path, m)))
    assert [t.state.value for t in status.trials] == ["completed", "failed", "failed"]


def test_a_recycled_pid_is_not_the_pool():
    # Our own (alive) pid, recorded as a submission made long before this process started.
    sub = Submission(stage=0, indices="0", executor="local", pid=os.getpid(), submitted="2001-01-01T00:00:00Z")
    assert not pool_alive(sub)
