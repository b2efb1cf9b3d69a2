"""launcher.cluster: profiles, and resources from a sweep file or the command line (any sbatch option)."""
from __future__ import annotations

import pytest

from jobs.errors import UserError
from jobs.profile import ClusterProfile
from launcher.cluster import available_profiles, load_profile, with_resources


def test_the_shipped_profiles_load():
    assert {"mila", "local", "generic"} <= set(available_profiles())
    mila = load_profile("mila")
    assert mila.gres == "gpu:1" and mila.max_queued_jobs == 1000 and mila.signal == "TERM"
    assert load_profile("local").mem      # the trainer does not fit the test cluster's 256 MB default


def test_known_resources_set_profile_fields_and_any_other_sbatch_option_passes_through():
    p = with_resources(ClusterProfile(), {"mem": "8G", "cpus": 4, "trial_time": "00:02:00", "mail_type": "END",
                                          "mail-user": "me@lab", "exclusive": True, "constraint": "a100"})
    assert (p.mem, p.cpus_per_task, p.trial_time, p.constraint) == ("8G", 4, "00:02:00", "a100")
    assert p.sbatch == {"mail-type": "END", "mail-user": "me@lab", "exclusive": None}
    assert with_resources(p, {"exclusive": False}).sbatch == {"mail-type": "END", "mail-user": "me@lab"}


@pytest.mark.parametrize("resources,match", [
    ({"exlude": "n1"}, "sbatch has no option --exlude. Did you mean 'exclude'"),
    ({"array": "0-3"}, "set by the task runner.*--max-parallel"),
    ({"output": "x.out"}, "set by the task runner"),
    ({"job_name": "x"}, "set by the task runner"),
    ({"mem": ["8G"]}, "single value"),
    ({"max_parallel": 0}, "positive integer"),
])
def test_what_sbatch_would_refuse_or_the_runner_owns_is_refused(resources, match):
    with pytest.raises(UserError, match=match):
        with_resources(ClusterProfile(), resources, source="s.yaml")


def test_a_command_line_resource_names_its_flag():
    with pytest.raises(UserError, match="--exlude"):
        with_resources(ClusterProfile(), {"exlude": "n1"}, source="command line")
