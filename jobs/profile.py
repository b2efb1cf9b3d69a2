"""`ClusterProfile`: what a cluster allows and wants, as the backends read it.

Profiles are YAML files (configs/clusters/<name>.yaml) that launcher.cluster reads and checks;
the manifest keeps the profile a sweep was launched with, so that `sweep resume` and the array
tasks that top the queue up render the same jobs. Stdlib only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

# Profile fields that become `#SBATCH --<option>=<value>` lines, in this order.
RESOURCE_OPTIONS = (("partition", "partition"), ("gres", "gres"), ("cpus_per_task", "cpus-per-task"),
                    ("mem", "mem"), ("time", "time"), ("account", "account"), ("qos", "qos"),
                    ("constraint", "constraint"))


@dataclass(frozen=True)
class ClusterProfile:
    # Profile name (file stem or `name:`).
    name: str = "generic"
    # Default partition; None = the cluster's default.
    partition: str | None = None
    # Human notes on the partitions (documentation, not used to submit).
    partitions: dict[str, str] = field(default_factory=dict)
    # Generic resources per task, e.g. "gpu:1".
    gres: str | None = None
    # CPUs per task; a trial of gpus_per_trial processes asks for that many times as many.
    cpus_per_task: int | None = None
    # Processes per trial, one GPU each. Above 1 the task asks for that many GPUs (the gpu count of
    # `gres`) and the runner starts the trial with torchrun (jobs.torchrun). None or 1: one process.
    gpus_per_trial: int | None = None
    # Memory of the whole task, whatever the number of processes.
    mem: str | None = None
    # Time limit per task (Slurm syntax, e.g. "12:00:00").
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    # Warning signal before the time limit: `--signal=B:<signal>@<grace_s>`.
    signal: str = "USR1"
    grace_s: int = 120
    # Times a trial that reaches its time limit checkpoints and is requeued before it is recorded as
    # timeout (a warning that comes at the limit, unlike a preemption, would come again).
    timeout_requeues: int = 1
    # Task ids must be < max_array_size (Slurm's MaxArraySize): larger stages are split.
    max_array_size: int = 1001
    # Array tasks queued at once (every task counts); the rest waits for the top-up.
    max_queued_jobs: int = 1000
    # Tasks of one array running at once (`--array=...%N`); None = no throttle.
    max_parallel: int | None = None
    # Whether compute nodes may run sbatch: finishing tasks then top the queue up themselves.
    submit_from_tasks: bool = True
    # Expected time of one trial (Slurm syntax): what `pack: auto` sizes packs from.
    trial_time: str | None = None
    # Interpreter in the job script; None = the one running `sweep launch`.
    python: str | None = None
    # Shell lines written verbatim before the task runner starts (trusted: profile only).
    modules: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    # Any other sbatch long option, {name: value} (value None or true = a bare flag).
    sbatch: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClusterProfile:
        """A recorded profile; keys this version does not know are dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    def replace(self, **changes: Any) -> ClusterProfile:
        return dataclasses.replace(self, **changes)

    @property
    def processes(self) -> int:
        """Processes (and GPUs) per trial."""
        return self.gpus_per_trial or 1

    def task_request(self) -> list[tuple[str, Any]]:
        """[(sbatch option, value)] of RESOURCE_OPTIONS for one task, None where unset: what the
        profile says, with the GPUs and CPUs of a trial that runs `processes` processes."""
        values = {name: getattr(self, name) for name, _ in RESOURCE_OPTIONS}
        if self.processes > 1:
            values["gres"] = with_gpu_count(self.gres, self.processes)
            values["cpus_per_task"] = (self.cpus_per_task or 1) * self.processes
        return [(option, values[name]) for name, option in RESOURCE_OPTIONS]


def with_gpu_count(gres: str | None, count: int) -> str:
    """`gres` asking for `count` GPUs: 'gpu:1' -> 'gpu:4', 'gpu:a100l:1' -> 'gpu:a100l:4' (the type
    is kept), 'gpu' -> 'gpu:4'; other resources are kept and 'gpu:4' is added when none is a GPU."""
    entries = [e for e in (gres or "").split(",") if e.strip()]
    found = False
    for i, entry in enumerate(entries):
        parts = entry.strip().split(":")
        if parts[0] != "gpu":
            continue
        found = True
        if len(parts) > 1 and parts[-1].isdigit():
            parts[-1] = str(count)
        else:
            parts.append(str(count))
        entries[i] = ":".join(parts)
    if not found:
        entries.append(f"gpu:{count}")
    return ",".join(entries)
