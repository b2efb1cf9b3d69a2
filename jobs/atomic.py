"""Atomic writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import json
import os

TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


@contextlib.contextmanager
def replacing(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[str]:
    """Yields a fresh name beside `path` to write the new file under; when the block ends, that file
    (fsync'ed unless `fsync` is False) replaces `path` by a rename (atomic on POSIX, and on NFS with
    close-to-open), and when the block raises, it is removed and `path` is left as it was.

    A random name rather than tempfile: every array task writes this way, and tempfile imports
    shutil, random and the compression modules (milliseconds per task, times thousands)."""
    target = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(target)),
                       f".{os.path.basename(target)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:   # never written, or not ours to remove: the first error is the one to see
            pass
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with replacing(path, fsync=False) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())   # through the descriptor already open: one open() fewer


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=indent, default=str, allow_nan=True) + "\n").encode())
