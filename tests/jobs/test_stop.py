"""jobs.stop: why a task was signalled, from `scontrol show job` records captured on the test cluster
the moment the signal arrived (a plain scancel, a preemption with requeue, a time-limit warning)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from jobs import slurm, stop

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "scontrol"


def record(name: str) -> dict[str, str]:
    return slurm.parse_scontrol((DATA / f"{name}.txt").read_text())


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_plain_scancel_is_a_cancel():
    info = record("scancel")
    assert info["JobState"] == "COMPLETING"
    assert stop.classify(info, now=at(info["EndTime"]), restart_count=0, grace_s=30) == stop.CANCELLED
    info = record("scancel_early")
    assert stop.classify(info, now=at(info["EndTime"]) + 1, restart_count=0, grace_s=30) == stop.CANCELLED


def test_slurm_requeueing_a_preempted_job_is_its_own_business():
    info = record("preempted_requeue")   # Restarts is already 1 while this run (restart 0) stops
    assert stop.classify(info, now=at(info["StartTime"]), restart_count=0, grace_s=30) == stop.REQUEUED
    # The next run of the same job, preempted again: its own restart count is 1.
    assert stop.classify(dict(info, Restarts="2"), now=at(info["StartTime"]), restart_count=1,
                         grace_s=30) == stop.REQUEUED


def test_the_time_limit_warning_even_when_it_comes_early():
    info = record("time_limit_warning")   # 60 s limit, --signal=B:USR1@30, arrived 57 s before the end
    end = at(info["EndTime"])
    assert stop.classify(info, now=end - 57, restart_count=0, grace_s=30) == stop.TIME_LIMIT
    assert stop.classify(info, now=end - 29, restart_count=0, grace_s=30) == stop.TIME_LIMIT


def test_a_warning_far_from_the_limit_or_from_a_preemption_is_a_warning():
    info = record("time_limit_warning")
    end = at(info["EndTime"])
    long_job = dict(info, TimeLimit="12:00:00", EndTime=datetime.fromtimestamp(end + 12 * 3600 - 60).isoformat())
    assert stop.classify(long_job, now=end, restart_count=0, grace_s=300) == stop.WARNING   # scancel --signal
    # A grace-time preemption moves the end time and sets PreemptTime: not a time limit.
    grace = dict(info, PreemptTime=info["StartTime"])
    assert stop.classify(grace, now=end - 10, restart_count=0, grace_s=30) == stop.WARNING


@pytest.mark.parametrize("text,seconds", [("00:05:00", 300), ("1-02:00:00", 93600), ("45", 45), ("UNLIMITED", None),
                                          ("", None), ("1:30", 90)])
def test_time_limits_parse(text, seconds):
    assert stop.parse_limit_s(text) == seconds


def test_the_cancel_marker_wins_without_asking_slurm(tmp_path, monkeypatch):
    marker = tmp_path / "cancelled"
    marker.write_text("x")
    monkeypatch.setenv("SLURM_JOB_ID", "999999999")   # would fail if scontrol were asked
    assert stop.why_stopped(str(marker), grace_s=30) == (stop.CANCELLED, {})
    marker.unlink()
    monkeypatch.delenv("SLURM_JOB_ID")
    assert stop.why_stopped(str(marker), grace_s=30) == (stop.WARNING, {})   # the local pool's Ctrl-C
