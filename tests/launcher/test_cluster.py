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
    ({"timeout_requeues": "two"}, "whole number, 0 or more"), ({"timeout_requeues": -3}, "whole number, 0 or more"),
    ({"timeout_requeues": 2.5}, "whole number, 0 or more"), ({"grace_s": "soon"}, "positive integer"),
    ({"mem": "abc"}, "not a Slurm memory size"), ({"mem_per_cpu": "4 gigs"}, "not a Slurm memory size"),
    ({"time": "abc"}, "not a Slurm time"), ({"time": "2h"}, "not a Slurm time"), ({"trial_time": "5min"}, "not a Slurm time"),
    ({"mem": "8G", "mem-per-cpu": "2G"}, "mem and mem-per-cpu both set"),
    ({"cpus_per_trial": 0}, "positive integer"),
])
def test_what_sbatch_would_refuse_or_the_runner_owns_is_refused(resources, match):
    with pytest.raises(UserError, match=match):
        with_resources(ClusterProfile(), resources, source="s.yaml")


def test_no_time_limit_requeue_is_allowed():
    assert with_resources(ClusterProfile(), {"timeout_requeues": "0"}, source="s.yaml").timeout_requeues == 0


def test_a_command_line_resource_names_its_flag():
    with pytest.raises(UserError, match="--exlude"):
        with_resources(ClusterProfile(), {"exlude": "n1"}, source="command line")


def test_processes_per_trial_from_a_sweep_file_a_profile_or_the_command_line(tmp_path):
    assert with_resources(ClusterProfile(), {"gpus_per_trial": 4}, source="s.yaml").gpus_per_trial == 4
    # The command line gives text: whole numbers are read as such (--cpus-per-task 8 as well).
    p = with_resources(ClusterProfile(), {"gpus_per_trial": "2", "cpus_per_task": "8"}, source="command line")
    assert (p.gpus_per_trial, p.cpus_per_task, p.processes) == (2, 8, 2)
    assert ClusterProfile().processes == 1
    for bad in (0, "two", 1.5, True):
        with pytest.raises(UserError, match="positive integer"):
            with_resources(ClusterProfile(), {"gpus_per_trial": bad}, source="s.yaml")
    profile = tmp_path / "lab.yaml"
    profile.write_text("gres: gpu:a100:1\ngpus_per_trial: 4\n")
    assert load_profile(str(profile)).gpus_per_trial == 4
    profile.write_text("gpus_per_trial: -1\n")
    with pytest.raises(UserError, match="gpus_per_trial"):
        load_profile(str(profile))


def test_gpus_per_trial_on_the_command_line_of_launch_and_resume():
    import argparse

    from launcher.commands import add_resource_options, resources_from

    parser = argparse.ArgumentParser()
    add_resource_options(parser)
    assert resources_from(parser.parse_args(["--gpus-per-trial", "4", "--mem", "64G"])) == {
        "mem": "64G", "gpus_per_trial": "4"}


@pytest.mark.parametrize("time", ["90", "02:00:00", "1-12", "1-12:00:00", "UNLIMITED", 120])
def test_every_slurm_time_form_is_taken(time):
    assert with_resources(ClusterProfile(), {"time": time}).time == time


def test_memory_asked_one_way_replaces_the_profiles_other_way():
    # sbatch refuses --mem with --mem-per-cpu: the request made here wins over the profile's.
    per_cpu = with_resources(ClusterProfile(mem="32G"), {"mem-per-cpu": "4G"})
    assert per_cpu.mem is None and per_cpu.sbatch == {"mem-per-cpu": "4G"}
    whole = with_resources(per_cpu, {"mem": "8G"})
    assert whole.mem == "8G" and whole.sbatch == {}
