"""jobs.wait (`sweep launch --wait`): disk polls between backend refreshes; ends when every result is on
disk, or when nothing that could still write one is queued."""
from __future__ import annotations

import json
from pathlib import Path

from jobs import manifest as mf
from jobs.backends import Live, LiveTask
from jobs.manifest import Manifest, Settings, Submission, Trial
from jobs.wait import wait_for_results


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def wait_sweep(tmp_path: Path, n: int, submitted: int | None = None) -> Path:
    k = n if submitted is None else submitted
    m = Manifest(settings=Settings(name="w", command=("true",)), trials=tuple(Trial(id=f"t{i}", index=i)
                                                                                  for i in range(n)),
                 submissions=(Submission(stage=0, indices=f"0-{k - 1}", executor="slurm", job_id="99"),))
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    mf.write_manifest(sweep, m)
    return sweep


def write_result(sweep: Path, tid: str, status: str = "completed") -> None:
    path = mf.result_path(sweep, tid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": status}))


def slurm_holds(indices: set[int], calls: list[int], blind_for: int = 0):
    """What the backend says: these trials' tasks are running (and, for the first calls, squeue failed)."""
    def live() -> Live:
        calls.append(1)
        notes = ["squeue failed (slurmctld down)"] if len(calls) <= blind_for else []
        return Live(tasks={i: LiveTask("RUNNING", f"99_{i}") for i in indices}, notes=notes)
    return live


def test_wait_returns_when_every_result_is_on_disk(tmp_path):
    sweep = wait_sweep(tmp_path, 50)
    clock, calls, progress = Clock(), [], []

    def sleep(s: float) -> None:  # five results land per poll
        clock.sleep(s)
        for i in range(50):
            if not mf.result_path(sweep, f"t{i}").exists():
                for j in range(i, min(i + 5, 50)):
                    write_result(sweep, f"t{j}")
                break

    final = wait_for_results(sweep, live=slurm_holds(set(range(50)), calls), clock=clock, sleep=sleep,
                             on_progress=lambda d, t: progress.append(d))
    assert {t.trial.id: t.state.value for t in final.trials} == {f"t{i}": "completed" for i in range(50)}
    # ten polls of the disk at 0.25 s: no backend refresh was due before the end, plus the final one
    assert len(calls) <= 2
    assert progress[0] == 0 and progress[-1] == 50


def test_wait_ends_when_slurm_no_longer_holds_a_missing_trial(tmp_path):
    sweep = wait_sweep(tmp_path, 3)
    write_result(sweep, "t0")
    write_result(sweep, "t1", "failed")
    clock, calls = Clock(), []
    final = wait_for_results(sweep, live=slurm_holds(set(), calls), clock=clock, sleep=clock.sleep,
                             delays=iter([1.0] * 100))
    assert [t.state.value for t in final.trials] == ["completed", "failed", "lost"]
    assert clock.t <= 1.5 and len(calls) == 2   # one refresh that ended the wait, one final


def test_wait_keeps_going_while_squeue_is_blind(tmp_path):
    sweep = wait_sweep(tmp_path, 1)
    clock, calls = Clock(), []
    ask = slurm_holds(set(), calls, blind_for=2)

    def live() -> Live:
        answer = ask()
        if len(calls) >= 3:
            write_result(sweep, "t0")
        return answer

    final = wait_for_results(sweep, live=live, clock=clock, sleep=clock.sleep, delays=iter([1.0] * 100))
    assert final.trials[0].state.value == "completed" and len(calls) >= 3


def test_trials_waiting_for_room_keep_the_wait_going_while_tasks_top_up(tmp_path):
    sweep = wait_sweep(tmp_path, 4, submitted=2)
    write_result(sweep, "t0")
    write_result(sweep, "t1")
    clock, calls = Clock(), []
    m = mf.read_manifest(sweep)
    mf.write_manifest(sweep, m.replace(unsubmitted="2-3"))
    (sweep / mf.WAITING_MARKER).touch()

    def live() -> Live:
        calls.append(1)
        if len(calls) == 3:     # the sweep's own tasks submitted them and they ran
            write_result(sweep, "t2")
            write_result(sweep, "t3")
        return Live()

    final = wait_for_results(sweep, live=live, clock=clock, sleep=clock.sleep, delays=iter([1.0] * 100))
    assert [t.state.value for t in final.trials] == ["completed"] * 4 and len(calls) >= 3
    # Cancelled: nothing will top it up, so the wait ends with them still waiting.
    (tmp_path / "b").mkdir()
    sweep2 = wait_sweep(tmp_path / "b", 2, submitted=1)
    write_result(sweep2, "t0")
    mf.write_manifest(sweep2, mf.read_manifest(sweep2).replace(unsubmitted="1"))
    (sweep2 / mf.WAITING_MARKER).touch()
    (sweep2 / mf.CANCEL_MARKER).touch()
    final = wait_for_results(sweep2, live=lambda: Live(), clock=clock, sleep=clock.sleep, delays=iter([1.0] * 100))
    assert [t.state.value for t in final.trials] == ["completed", "unsubmitted"]


def test_a_task_that_wrote_its_result_but_is_still_held_keeps_the_wait_going(tmp_path):
    # Successive halving: trial t1 is held for a promotion that t0's task decides after writing its
    # result, before it exits. While Slurm still holds that task, the wait must not end.
    sweep = wait_sweep(tmp_path, 2, submitted=1)
    write_result(sweep, "t0")
    clock, calls = Clock(), []

    def live() -> Live:
        calls.append(1)
        if len(calls) < 3:
            return Live(tasks={0: LiveTask("RUNNING", "99_0")})
        if len(calls) == 3:     # the task promoted t1 and exited; t1 is queued
            return Live(tasks={1: LiveTask("PENDING", "100_0")})
        write_result(sweep, "t1")
        return Live()

    final = wait_for_results(sweep, live=live, clock=clock, sleep=clock.sleep, delays=iter([1.0] * 100))
    assert [t.state.value for t in final.trials] == ["completed", "completed"] and len(calls) >= 4
