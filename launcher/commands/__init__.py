"""One module per `sweep` subcommand, each with `add_parser(subparsers)` and `run(args) -> int`.

What several subcommands share lives here: the sbatch resource options of `launch` and `resume`.
"""
from __future__ import annotations

import argparse
from typing import Any

# --<option> on the command line -> the resource it sets (launcher.cluster.with_resources).
RESOURCE_FLAGS = (("mem", "memory per task, e.g. 8G"), ("time", "time limit per task, e.g. 02:00:00"),
                  ("partition", "partition to submit to"), ("gres", "generic resources per task, e.g. gpu:1"),
                  ("cpus-per-task", "CPUs per task (per process with --gpus-per-trial)"),
                  ("gpus-per-trial", "processes per trial, one GPU each: above 1 the trial runs under torchrun"),
                  ("cpus-per-trial", "CPUs per trial of a packed task: --cpus-per-task 8 --cpus-per-trial 2 "
                                     "runs four side by side"),
                  ("account", "account to charge"), ("qos", "quality of service"))


def add_resource_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("resources (win over the cluster profile and the sweep file)")
    for flag, help_text in RESOURCE_FLAGS:
        group.add_argument(f"--{flag}", dest=f"res_{flag.replace('-', '_')}", metavar="VALUE", help=help_text)
    group.add_argument("--sbatch", action="append", default=[], metavar="OPTION=VALUE",
                       help="any other long sbatch option, e.g. --sbatch mail-type=END (repeatable)")


def resources_from(args: argparse.Namespace) -> dict[str, Any]:
    from jobs.errors import UserError

    out: dict[str, Any] = {}
    for flag, _ in RESOURCE_FLAGS:
        value = getattr(args, f"res_{flag.replace('-', '_')}", None)
        if value is not None:
            if value == "":
                raise UserError(f"--{flag} needs a value", key=f"--{flag}")
            out[flag.replace("-", "_")] = value
    for item in getattr(args, "sbatch", None) or []:
        option, sep, value = item.partition("=")
        if not option.strip():
            raise UserError(f"--sbatch {item!r} names no option", key="--sbatch", fix="write --sbatch mail-type=END")
        out[option.strip().lstrip("-")] = value if sep else True
    return out


def exit_code(states: Any) -> int:
    """0 when every trial ended as a search means it to (completed, or stopped by the search: pruned,
    not promoted), else 1: what `launch --wait`, a local foreground launch and resume exit with."""
    from jobs.trial_state import TrialState

    ok = {TrialState.COMPLETED, TrialState.PRUNED, TrialState.STOPPED}
    return 0 if all(s in ok for s in states) else 1     # a str enum: plain status strings compare equal
