"""`ClusterProfile`: what a cluster allows and wants, as the backends read it.

Profiles are YAML files (configs/clusters/<name>.yaml) that launcher.cluster reads and checks;
the manifest keeps the profile a sweep was launched with, so that `sweep resume` and the array
tasks that top the queue up render the same jobs. Stdlib only.
"""
from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

# Profile fields that become `#SBATCH --<option>=<value>` lines, in this order.
RESOURCE_OPTIONS = (("partition", "partition"), ("gres", "gres"), ("cpus_per_task", "cpus-per-task"),
                    ("mem", "mem"), ("time", "time"), ("account", "account"), ("qos", "qos"),
                    ("constraint", "constraint"))


# The fields, their defaults and what they mean. Records here are namedtuples, not dataclasses:
# every array task reads one, and `dataclasses` (with `inspect`) plus generating each class's methods
# cost an array task's start about 15 ms. Never mutated: a changed profile is a new one (`replace`).
_FIELDS = (
    ("name", "generic"),            # profile name (file stem or `name:`)
    ("partition", None),            # default partition; None = the cluster's default
    ("partitions", {}),             # human notes on the partitions (documentation, not used to submit)
    ("gres", None),                 # generic resources per task, e.g. "gpu:1"
    ("cpus_per_task", None),        # CPUs per task; a trial of gpus_per_trial processes asks for that many times as many
    # Processes per trial, one GPU each. Above 1 the task asks for that many GPUs (the gpu count of
    # `gres`) and the runner starts the trial with torchrun (jobs.torchrun). None or 1: one process.
    ("gpus_per_trial", None),
    # CPUs one trial of a packed task uses: a task of cpus_per_task CPUs (and no GPUs to share out)
    # runs cpus_per_task // cpus_per_trial of its trials side by side. None: one after another.
    ("cpus_per_trial", None),
    ("mem", None),                  # memory of the whole task, whatever the number of processes
    ("time", None),                 # time limit per task (Slurm syntax, e.g. "12:00:00")
    ("account", None),
    ("qos", None),
    ("constraint", None),
    ("signal", "USR1"),             # warning signal before the time limit: `--signal=B:<signal>@<grace_s>`
    ("grace_s", 120),
    # Times a trial that reaches its time limit checkpoints and is requeued before it is recorded as
    # timeout (a warning that comes at the limit, unlike a preemption, would come again).
    ("timeout_requeues", 1),
    ("max_array_size", 1001),       # task ids must be < max_array_size (Slurm's MaxArraySize): larger stages are split
    ("max_queued_jobs", 1000),      # array tasks queued at once (every task counts); the rest waits for the top-up
    ("max_parallel", None),         # tasks of one array running at once (`--array=...%N`); None = no throttle
    ("submit_from_tasks", True),    # whether compute nodes may run sbatch: finishing tasks then top the queue up
    ("trial_time", None),           # expected time of one trial (Slurm syntax): what `pack: auto` sizes packs from
    ("python", None),               # interpreter in the job script; None = the one running `sweep launch`
    # Shell lines written verbatim before the task runner starts (trusted: profile only).
    ("modules", []),
    ("setup", []),
    ("sbatch", {}),                 # any other sbatch long option, {name: value} (value None or true = a bare flag)
    ("source", None),
)
# Fields that hold whole numbers: "4" from the command line (or a quoted YAML value) is 4.
INT_FIELDS = frozenset({"cpus_per_task", "gpus_per_trial", "cpus_per_trial", "grace_s", "timeout_requeues", "max_array_size",
                        "max_queued_jobs", "max_parallel"})


class ClusterProfile(namedtuple("ClusterProfile", [n for n, _ in _FIELDS], defaults=[d for _, d in _FIELDS])):
    """What a cluster allows and wants (the fields above)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClusterProfile:
        """A recorded profile; keys this version does not know are dropped."""
        return cls(**{k: v for k, v in (data or {}).items() if k in cls._fields})

    def replace(self, **changes: Any) -> ClusterProfile:
        return self._replace(**changes)

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
