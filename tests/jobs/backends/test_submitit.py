"""The submitit backend's executor parameters: the same request as the Slurm backend's."""
from __future__ import annotations

from jobs.backends.submitit import executor_parameters
from jobs.profile import ClusterProfile


def test_the_profile_becomes_submitit_parameters() -> None:
    profile = ClusterProfile(partition="long", gres="gpu:a100l:1", cpus_per_task=4, mem="32G", time="1-02:00:00",
                             account="rrg", grace_s=300)
    params = executor_parameters(profile, "sw", max_parallel=8)
    assert params == {"name": "sw", "slurm_signal_delay_s": 300, "timeout_min": 26 * 60, "slurm_partition": "long",
                      "slurm_gres": "gpu:a100l:1", "cpus_per_task": 4, "slurm_mem": "32G", "slurm_account": "rrg",
                      "slurm_array_parallelism": 8}


def test_a_trial_of_four_processes_asks_for_four_gpus_and_four_times_the_cpus() -> None:
    profile = ClusterProfile(gres="gpu:a100l:1", cpus_per_task=4, mem="128G", gpus_per_trial=4)
    params = executor_parameters(profile, "sw", max_parallel=None)
    assert (params["slurm_gres"], params["cpus_per_task"], params["slurm_mem"]) == ("gpu:a100l:4", 16, "128G")
