"""`sweep`: the command researchers type. Thin: each subcommand lives in launcher/commands/."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from jobs.errors import UserError

# Subcommand modules, each with `add_parser(subparsers)` and `run(args) -> int`.
# Imported lazily by name so `sweep status` never pays for pandas or torch.
COMMANDS = ("launch", "status", "logs", "resume", "cancel", "list", "collect", "report", "best", "sync")


def _available() -> list[str]:
    found = []
    for name in COMMANDS:
        if importlib.util.find_spec(f"launcher.commands.{name}") is not None:
            found.append(name)
    return found


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` the one subcommand about to run (its module alone is
    imported: `sweep collect` pays for no other command's imports)."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Hyperparameter sweeps on Slurm job arrays: launch, watch, resume, collect.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in [only] if only else _available():
        importlib.import_module(f"launcher.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()   # inside the try: a reader that left (`| head`) is not an error
        return code
    except UserError as exc:
        print(f"sweep {args.command}: error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except BrokenPipeError:
        # `sweep ... | head`: the reader left; say nothing more (and let no flush at exit complain).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The filesystem or the system said no (permissions, a full disk, a vanished directory):
        # what the user can fix, in one line.
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"sweep {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print(f"sweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
