"""One writer per sweep: an exclusive lock in the sweep directory.

Whoever submits or records anything takes it: `sweep launch`, `sweep resume`, `sweep cancel`, and
the array tasks that top the queue up or promote trials. Two `sweep resume` started together
otherwise both submit the remaining trials (seen on the test cluster: 13 of 30 trials ran twice).

How, and why two ways:
- `flock` on <sweep>/.lock where the filesystem supports it. The kernel drops the lock when its
  holder dies (a killed launcher, a preempted task), so a stale lock cannot exist. Local disks,
  NFSv4 (Linux maps flock to NFS byte-range locks) and GPFS support it.
- Where flock fails with ENOLCK/ENOSYS/EOPNOTSUPP/EINVAL (NFSv3 mounted `nolock`, Lustre without
  `-o flock`), an owner file <sweep>/.lock.owner made with O_CREAT|O_EXCL (atomic on those
  filesystems too), holding host, pid and purpose, and touched every HEARTBEAT_S while held. It is
  taken over when its holder is gone: on the same host when its pid is dead, elsewhere when it was
  not touched for STALE_S. Taking over renames it away first, so two waiters never both break it.

The holder's host, pid, purpose and start time are written into the lock file either way, so a
waiter can say what it waits for.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Iterator

from jobs.errors import UserError
from jobs.manifest import now_iso

LOCK = ".lock"
OWNER = ".lock.owner"
HEARTBEAT_S = 10.0
STALE_S = 90.0
POLL_S = 0.2
SAY_EVERY_S = 10.0
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


class LockBusy(UserError):
    """Another process holds the sweep's lock (and we were not to wait, or waited too long)."""


def _owner(what: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "what": what,
            "since": now_iso()}


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process"
    return f"`{info.get('what', '?')}` (pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('since', '?')})"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


class SweepLock:
    def __init__(self, sweep_dir: str | os.PathLike, what: str) -> None:
        self.dir = Path(sweep_dir)
        self.what = what
        self._fd: int | None = None
        self._owner_file = False
        self._beat: threading.Event | None = None

    # --- flock --------------------------------------------------------------------------------
    def _try_flock(self) -> bool | None:
        """True: held; False: someone else holds it; None: this filesystem has no flock."""
        import fcntl

        if self._fd is None:
            try:
                self._fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"cannot open the sweep's lock file {self.dir / LOCK} ({exc.strerror})",
                                fix="check that the sweep directory exists and is writable") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in _NO_FLOCK:
                os.close(self._fd)
                self._fd = None
                return None
            raise
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(_owner(self.what)).encode(), 0)
        except OSError:
            pass  # the owner note is informational; the lock is held
        return True

    # --- owner file ---------------------------------------------------------------------------
    def _try_owner_file(self) -> bool:
        path = self.dir / OWNER
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if self._stale(path):
                stale = path.with_name(f"{OWNER}.stale.{os.getpid()}.{os.urandom(3).hex()}")
                with contextlib.suppress(OSError):
                    os.rename(path, stale)      # only one waiter's rename succeeds
                    os.unlink(stale)
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(_owner(self.what), f)
        self._owner_file = True
        self._beat = threading.Event()
        threading.Thread(target=self._heartbeat, args=(path, self._beat), daemon=True,
                         name="sweep-lock-heartbeat").start()
        return True

    @staticmethod
    def _heartbeat(path: Path, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    @staticmethod
    def _stale(path: Path) -> bool:
        info = _read_json(path) or {}
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            try:
                os.kill(info["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        try:
            return time.time() - path.stat().st_mtime > STALE_S
        except OSError:
            return False

    # --- the lock -----------------------------------------------------------------------------
    def holder(self) -> dict[str, Any] | None:
        return _read_json(self.dir / OWNER) or _read_json(self.dir / LOCK)

    def try_acquire(self) -> bool:
        if not self._owner_file:
            got = self._try_flock()
            if got is not None:
                return got
        return self._try_owner_file()

    def acquire(self, timeout: float | None = None) -> None:
        """Wait for the lock (forever when timeout is None), saying on stderr what it waits for."""
        start, said_at = time.monotonic(), None
        while not self.try_acquire():
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                raise LockBusy(f"{self.dir} is busy: {_describe(self.holder())} is changing it",
                               fix="wait for it to finish and try again")
            if said_at is None or now - said_at >= SAY_EVERY_S:
                print(f"waiting for {self.dir}: {_describe(self.holder())} holds its lock", file=sys.stderr,
                      flush=True)
                said_at = now
            time.sleep(POLL_S)

    def release(self) -> None:
        if self._beat is not None:
            self._beat.set()
            self._beat = None
        if self._owner_file:
            with contextlib.suppress(OSError):
                os.unlink(self.dir / OWNER)
            self._owner_file = False
        if self._fd is not None:
            os.close(self._fd)   # closing drops the flock
            self._fd = None


@contextlib.contextmanager
def sweep_lock(sweep_dir: str | os.PathLike, what: str, *, timeout: float | None = None) -> Iterator[SweepLock]:
    """Hold the sweep's lock for the block. timeout=0: try once (LockBusy if held)."""
    lock = SweepLock(sweep_dir, what)
    lock.acquire(timeout)
    try:
        yield lock
    finally:
        lock.release()
