"""jobs.lock: one writer per sweep, across processes; the owner-file fallback for filesystems without flock."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.lock import OWNER, LockBusy, SweepLock, sweep_lock

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from jobs.lock import sweep_lock
with sweep_lock(sys.argv[1], "holder in a test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(sweep: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(sweep), str(seconds)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_waits_and_says_for_whom(tmp_path, capsys):
    proc = holder(tmp_path, 1.5)
    try:
        with pytest.raises(LockBusy, match=r"`holder in a test` \(pid \d+"):
            with sweep_lock(tmp_path, "test", timeout=0):
                pass
        t0 = time.monotonic()
        with sweep_lock(tmp_path, "test"):
            waited = time.monotonic() - t0
        assert 0.5 < waited < 10
        assert "holder in a test" in capsys.readouterr().err     # what it waited for, on stderr
    finally:
        proc.wait()


def test_a_killed_holder_leaves_no_lock(tmp_path):
    proc = holder(tmp_path, 60)
    proc.kill()
    proc.wait()
    with sweep_lock(tmp_path, "after the kill", timeout=2):
        pass


def test_owner_file_fallback_is_exclusive_and_breaks_a_dead_owner(tmp_path):
    # Where flock is missing (NFSv3 `nolock`, Lustre without `-o flock`) the lock is an O_EXCL file.
    first, second = SweepLock(tmp_path, "one"), SweepLock(tmp_path, "two")
    first._owner_file = second._owner_file = False
    assert first._try_owner_file()
    assert not second._try_owner_file()
    assert json.loads((tmp_path / OWNER).read_text())["what"] == "one"
    first.release()
    assert not (tmp_path / OWNER).exists() and second._try_owner_file()
    second.release()
    # An owner file left by a process that died on this host is taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / OWNER).write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "what": "gone"}))
    lock = SweepLock(tmp_path, "three")
    assert not lock._try_owner_file()      # this try breaks it ...
    assert lock._try_owner_file()          # ... the next one takes it
    lock.release()


def test_an_owner_file_from_another_host_is_stale_only_when_it_stopped_beating(tmp_path):
    (tmp_path / OWNER).write_text(json.dumps({"host": "elsewhere", "pid": 1, "what": "remote"}))
    assert not SweepLock._stale(tmp_path / OWNER)
    old = time.time() - 3600
    os.utime(tmp_path / OWNER, (old, old))
    assert SweepLock._stale(tmp_path / OWNER)
