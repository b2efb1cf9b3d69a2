"""Atomic writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """tmp file in the same directory + fsync + rename (atomic on POSIX and NFS close-to-open)."""
    path = Path(path)
    # O_EXCL on a random name rather than tempfile: every array task writes here, and tempfile
    # imports shutil, random and the compression modules (milliseconds per task, times thousands).
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=indent, default=str, allow_nan=True) + "\n").encode())
