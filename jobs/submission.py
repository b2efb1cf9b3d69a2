"""The one way anything is submitted: under the sweep's lock, recorded before it exists.

    with open_sweep(sweep_dir, "sweep resume") as session:   # lock, read, reconcile
        ... decide from session.manifest ...
        session.submit(plan, unsubmitted=[...])               # record, submit, confirm

`sweep launch`, `sweep resume`, `sweep cancel` and the array tasks that top the queue up or
promote trials all go through here, so none of them can submit a trial twice:

1. Record first: every planned array is written to manifest.json as a *pending* submission with a
   fresh token (and its task file, arrays/<token>.jsonl) before sbatch runs. The token is in the
   job's name, which squeue and sacct keep.
2. Submit, then confirm: right after each sbatch returns, its record becomes *submitted* with the
   job id. A launcher killed in between (SIGKILL, a closed SSH session, a full disk) leaves a
   pending record, never an array nobody knows about.
3. Reconcile before deciding: whoever takes the lock next looks the pending tokens up in Slurm
   (`Backend.find`). Found: the record is confirmed (and any second job under the same token, from
   a retried sbatch, is cancelled). Not found and older than IN_FLIGHT_S: the sbatch never went
   through (sbatch dies with its launcher); the record is dropped and its trials go back to waiting.
   Younger: perhaps still in flight; its trials count as submitted.
4. One writer at a time: jobs.lock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Iterator

from jobs import manifest as mf
from jobs.backends import Backend, SweepRef
from jobs.backends.arrays import ArrayPlan, PlannedArray
from jobs.errors import SlurmError, UserError
from jobs.lock import sweep_lock
from jobs.manifest import Manifest, Submission, now_iso

# A pending record younger than this may belong to an sbatch whose job is not visible yet: only older
# ones are dropped when Slurm does not know their token. sbatch dies with the process that runs it
# (jobs.slurm: PR_SET_PDEATHSIG), so a killed launcher leaves no sbatch that could submit later; the
# margin covers slurmctld answering a submission already sent.
IN_FLIGHT_S = 20
PENDING, SUBMITTED = "pending", "submitted"


def filesystem_error(path: str | os.PathLike, exc: OSError) -> UserError:
    """An OSError while writing the sweep directory, as one line that says what to do."""
    reason = exc.strerror or exc.__class__.__name__
    if exc.errno in (28, 27, 122):   # ENOSPC, EFBIG, EDQUOT
        fix = "free space (or quota) on that filesystem, then run the command again"
    elif exc.errno in (13, 30, 1):   # EACCES, EROFS, EPERM
        fix = "pass --dir on a writable filesystem, or fix the directory's permissions"
    else:
        fix = "check the filesystem, then run the command again"
    return UserError(f"cannot write {path} ({reason})", fix=fix)


@dataclasses.dataclass
class Reconciled:
    confirmed: int = 0
    dropped: list[int] = dataclasses.field(default_factory=list)     # trial indices back to waiting
    in_flight: list[int] = dataclasses.field(default_factory=list)
    duplicates_cancelled: list[str] = dataclasses.field(default_factory=list)


class Session:
    """The sweep directory, held by this process: its manifest as of now, and how to change it."""

    def __init__(self, sweep_dir: Path, manifest: Manifest, backend: Backend) -> None:
        self.sweep_dir = sweep_dir
        self.manifest = manifest
        self.backend = backend
        self.reconciled = Reconciled()

    @property
    def ref(self) -> SweepRef:
        return SweepRef(self.sweep_dir, self.manifest)

    def save(self, manifest: Manifest) -> None:
        """Write the manifest (atomically), and the marker that says whether trials wait for room."""
        marker = self.sweep_dir / mf.WAITING_MARKER
        try:
            mf.write_manifest(self.sweep_dir, manifest)
            if manifest.unsubmitted:
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
        except OSError as exc:
            raise filesystem_error(mf.manifest_path(self.sweep_dir), exc) from None
        self.manifest = manifest

    # --- 3. reconcile -----------------------------------------------------------------------
    def reconcile(self) -> Reconciled:
        pending = [s for s in self.manifest.submissions if s.state == PENDING]
        out = Reconciled()
        if pending:
            found = self.backend.find(self.ref, pending)
            subs, waiting = [], set(self.manifest.unsubmitted_indices())
            for sub in self.manifest.submissions:
                if sub.state != PENDING:
                    subs.append(sub)
                    continue
                ids = sorted(found.get(sub.token) or [], key=lambda j: (len(j), j))
                if ids:
                    subs.append(self._confirmed(sub, ids[0]))
                    out.confirmed += 1
                    if len(ids) > 1 and self.backend.uses_slurm:
                        from jobs import slurm

                        slurm.scancel(ids[1:])
                        out.duplicates_cancelled += ids[1:]
                elif time.time() - (mf.iso_epoch(sub.submitted) or 0.0) > IN_FLIGHT_S:
                    waiting.update(sub.index_list())
                    out.dropped += sub.index_list()
                else:
                    subs.append(sub)
                    out.in_flight += sub.index_list()
            self.save(self.manifest.replace(submissions=tuple(subs), unsubmitted=mf.compact_ranges(waiting)))
        self.reconciled = out
        return out

    def _confirmed(self, sub: Submission, job_or_pid: str) -> Submission:
        if self.backend.uses_slurm:
            dependency = sub.dependency
            return sub._replace(state=SUBMITTED, job_id=job_or_pid, dependency=dependency)
        return sub._replace(state=SUBMITTED, pid=int(job_or_pid))

    # --- 1 + 2. record, submit, confirm --------------------------------------------------------
    def submit(self, plan: ArrayPlan, *, unsubmitted: list[int] | None = None, **start_options: Any) -> Any:
        """Record every array as pending, start them, confirm each; `unsubmitted` becomes the list
        of trials still waiting for room. Returns what the backend's start returns (a local
        foreground run's outcome)."""
        waiting = mf.compact_ranges(unsubmitted if unsubmitted is not None else self.manifest.unsubmitted_indices())
        if not plan.arrays:
            if waiting != self.manifest.unsubmitted:
                self.save(self.manifest.replace(unsubmitted=waiting))
            return None
        by_index = {t.index: t for t in self.manifest.trials}
        records = []
        for array in plan.arrays:
            try:
                if self.backend.reads_task_files:
                    mf.write_array_file(self.sweep_dir, array.token, self.manifest.settings,
                                        {task: [by_index[i] for i in indices] for task, indices in array.tasks.items()})
            except OSError as exc:
                raise filesystem_error(mf.array_file(self.sweep_dir, array.token), exc) from None
            records.append(Submission(stage=array.stage, indices=mf.compact_ranges(array.indices),
                                      executor=self.backend.name, token=array.token, state=PENDING,
                                      offset=array.offset, pack=array.pack, array=array.array or None,
                                      submitted=now_iso()))
        self.save(self.manifest.replace(submissions=self.manifest.submissions + tuple(records), unsubmitted=waiting))
        def confirm(array: PlannedArray, job_id: str | None, pid: int | None, dependency: str | None = None) -> None:
            self._replace_record(array.token, state=SUBMITTED, job_id=job_id, pid=pid, dependency=dependency,
                                 submitted=now_iso())

        def touch(array: PlannedArray) -> None:
            """Before an sbatch retry: the record's time is when the latest try began (IN_FLIGHT_S)."""
            self._replace_record(array.token, submitted=now_iso())

        try:
            return self.backend.start(self.ref, plan.arrays, confirm, touch=touch, **start_options)
        except SlurmError as exc:
            self._drop_unstarted(plan, definite=exc.returncode is not None)
            raise
        except BaseException:
            self._drop_unstarted(plan, definite=False)
            raise

    def _replace_record(self, token: str, **changes: Any) -> None:
        subs = tuple(s._replace(**changes) if s.token == token and s.state == PENDING else s
                     for s in self.manifest.submissions)
        self.save(self.manifest.replace(submissions=subs))

    def _drop_unstarted(self, plan: ArrayPlan, *, definite: bool) -> None:
        """After a failed start: arrays never handed to Slurm go back to waiting. The one whose
        sbatch failed is dropped too when Slurm answered no (`definite`); after a time-out it stays
        pending, for the next reconcile to settle."""
        pending = [s for s in self.manifest.submissions if s.state == PENDING and
                   s.token in {a.token for a in plan.arrays}]
        if not pending:
            return
        keep_first = not definite and self.backend.uses_slurm
        drop = pending[1:] if keep_first else pending
        tokens = {s.token for s in drop}
        waiting = set(self.manifest.unsubmitted_indices())
        for s in drop:
            waiting.update(s.index_list())
        with contextlib.suppress(UserError):
            self.save(self.manifest.replace(submissions=tuple(s for s in self.manifest.submissions
                                                              if s.token not in tokens),
                                            unsubmitted=mf.compact_ranges(waiting)))


@contextlib.contextmanager
def open_sweep(sweep_dir: str | os.PathLike, what: str, *, timeout: float | None = None) -> Iterator[Session]:
    """Lock the sweep, read its manifest and reconcile its pending submissions."""
    from jobs import backends

    sweep_dir = Path(sweep_dir).absolute()
    if not mf.manifest_path(sweep_dir).is_file():
        mf.read_manifest(sweep_dir)  # its clear error for a directory that is not a sweep, before the lock file
    with sweep_lock(sweep_dir, what, timeout=timeout):
        manifest = mf.read_manifest(sweep_dir)
        session = Session(sweep_dir, manifest, backends.get(manifest.settings.executor))
        session.reconcile()
        yield session


def cancel_requested(sweep_dir: str | os.PathLike) -> bool:
    return os.path.exists(os.path.join(sweep_dir, mf.CANCEL_MARKER))
