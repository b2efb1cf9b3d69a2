"""launcher.packing: --pack N and pack: auto."""
from __future__ import annotations

import pytest

from jobs.errors import UserError
from jobs.profile import ClusterProfile
from launcher.packing import pack_size


@pytest.mark.parametrize("value,expected", [(None, 1), (1, 1), ("50", 50), (50, 50), (10 ** 6, 10_000)])
def test_numbers(value, expected):
    assert pack_size(value, ClusterProfile()) == expected


def test_auto_fills_most_of_the_time_limit():
    assert pack_size("auto", ClusterProfile(time="01:00:00", trial_time="00:02:00")) == 24     # 80% of 30
    assert pack_size("auto", ClusterProfile(time="60", trial_time="02:00")) == 24              # minutes, MM:SS
    assert pack_size("auto", ClusterProfile(time="00:10:00", trial_time="01:00:00")) == 1      # longer than the limit
    assert pack_size("auto", ClusterProfile(time="1-12", trial_time="01:00:00")) == 28         # D-H: 36 hours
    assert pack_size("auto", ClusterProfile(time="1-12:30", trial_time="01:00:00")) == 29      # D-H:M


@pytest.mark.parametrize("value,profile,match", [
    ("auto", ClusterProfile(time="01:00:00"), "needs the task's time limit and the expected time"),
    (0, ClusterProfile(), "positive whole number"), ("2.5", ClusterProfile(), "positive whole number"),
    (True, ClusterProfile(), "positive whole number"),
    ("auto", ClusterProfile(time="soon", trial_time="00:01:00"), "not a Slurm time"),
    ("auto", ClusterProfile(time="2h", trial_time="00:01:00"), "not a Slurm time"),
])
def test_bad_values(value, profile, match):
    with pytest.raises(UserError, match=match):
        pack_size(value, profile)
