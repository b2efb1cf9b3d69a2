"""A trial's command line: the spec's `command` plus the trial's overrides, as an argv list.

Never a shell: every value becomes exactly one argv element, whatever it contains.

Without a macro in `command`, overrides are appended Hydra-style as `key=value`.
With one, the W&B agent's macros are expanded; each macro must be a whole element,
as in W&B (`${args}` inside a longer string stays literal text):

    ${env}                   /usr/bin/env
    ${interpreter}           python
    ${program}               the `program` argument (the W&B parser resolves it at parse time)
    ${args}                  --key=value for every override (W&B formats values with str())
    ${args_no_hyphens}       key=value (what Hydra programs use)
    ${args_no_boolean_flags} --key=value, but True -> --key and False -> nothing
    ${args_json}             one element: the overrides as a JSON object
    ${args_json_file}        path of a JSON file holding that object (written here)

Stdlib only: every array task imports this module.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from jobs.atomic import write_text_atomic

MACROS = ("${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}",
          "${args_no_boolean_flags}", "${args_json}", "${args_json_file}")
JSON_FILE_NAME = "args.json"


PYTHON_NAMES = ("python", "python3")


def resolve_python(argv: list[str]) -> list[str]:
    """`python` as a command's first word means the interpreter running the sweep (the project's
    virtualenv, which the sbatch script and the local pool start), not the first python on PATH."""
    if argv and argv[0] in PYTHON_NAMES:
        return [sys.executable, *argv[1:]]
    if len(argv) > 1 and os.path.basename(argv[0]) == "env" and argv[1] in PYTHON_NAMES:
        # W&B's default `${env} ${interpreter} ...`: /usr/bin/env python, the same intent.
        return [sys.executable, *argv[2:]]
    return argv


def format_value(value: Any) -> str:
    """A value as it reads on a Hydra-style command line (`key=value`); Trial.override_args uses it too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def has_macro(command: list[str] | tuple[str, ...]) -> bool:
    return any(str(c) in MACROS for c in command)


def _wandb_text(value: Any) -> str:
    # W&B's agent renders `--key=value` with str(); argparse programs written for it expect
    # exactly that (True, not true). Floats still via repr so no precision is lost.
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested objects, as W&B nests `parameters:` blocks in a run's config.

    Falls back to the flat dict when a key is both a leaf and a prefix (`a=1`, `a.b=2`).
    """
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return dict(overrides)
            node = child
        if parts[-1] in node:
            return dict(overrides)
        node[parts[-1]] = value
    return out


def _json_file(payload: str, json_file_dir: str | os.PathLike | None, write: bool) -> str:
    """Write the args JSON where the trial can find it and return its path.

    Default place: the trial directory ($SWEEP_TRIAL_DIR, set by the runner); outside a
    sweep a content-named file in the temp dir, so the same overrides give the same path.
    """
    folder = json_file_dir or os.environ.get("SWEEP_TRIAL_DIR")
    if folder:
        path = Path(folder) / JSON_FILE_NAME
    else:
        import hashlib  # only without a trial directory to write into (OpenSSL's start is slow)
        import tempfile

        digest = hashlib.sha1(payload.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"sweep-args-{digest}.json"
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, payload + "\n")
    return str(path)


def render_argv(command: list[str] | tuple[str, ...], overrides: dict[str, Any], *,
                program: str | None = None,
                json_file_dir: str | os.PathLike | None = None, write_json_file: bool = True) -> list[str]:
    """The exact argv a trial runs: `command` with its macros expanded, or `command` plus
    `key=value` for every override when it holds none.

    `program` fills `${program}` if the spec still holds one; `json_file_dir` is where
    `${args_json_file}` writes its file (default: $SWEEP_TRIAL_DIR, else the temp dir); the
    task runner passes the trial directory, a dry run passes `write_json_file=False`.
    """
    command = [str(c) for c in command if c is not None]
    if not has_macro(command):
        return command + [f"{k}={format_value(v)}" for k, v in overrides.items()]

    argv: list[str] = []
    for element in command:
        if element == "${env}":
            argv.append("/usr/bin/env")
        elif element == "${interpreter}":
            argv.append("python")
        elif element == "${program}":
            if not program:
                raise ValueError("command holds ${program} but no program was given")
            argv.append(program)
        elif element == "${args}":
            argv += [f"--{k}={_wandb_text(v)}" for k, v in overrides.items()]
        elif element == "${args_no_hyphens}":
            argv += [f"{k}={format_value(v)}" for k, v in overrides.items()]
        elif element == "${args_no_boolean_flags}":
            for k, v in overrides.items():
                if isinstance(v, bool):
                    if v:
                        argv.append(f"--{k}")
                else:
                    argv.append(f"--{k}={_wandb_text(v)}")
        elif element == "${args_json}":
            argv.append(json.dumps(_nest(overrides), default=str))
        elif element == "${args_json_file}":
            argv.append(_json_file(json.dumps(_nest(overrides), default=str), json_file_dir, write_json_file))
        else:
            argv.append(element)
    return argv
