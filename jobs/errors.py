"""The small family of exceptions users see. The CLI prints them as one line, exit 2."""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad sweep file, flag or directory.

    The message says what is wrong, where (file and key) and what to do.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 dialect: str | None = None, fix: str | None = None) -> None:
        self.file, self.key, self.dialect, self.fix = file, key, dialect, fix
        where = ": ".join(p for p in (str(file) if file else "", f"key '{key}'" if key else "") if p)
        text = f"{where}: {message}" if where else message
        if dialect:
            text += f" (read as the {dialect} dialect)"
        if fix:
            text += f". {fix[0].upper()}{fix[1:]}"
        super().__init__(text)


class SlurmError(UserError):
    """A Slurm command failed: names the command, what Slurm said and what to do."""

    def __init__(self, command: list[str] | str, said: str, fix: str | None = None,
                 returncode: int | None = None) -> None:
        self.command = command if isinstance(command, str) else " ".join(command)
        self.said = said.strip()
        self.returncode = returncode
        super().__init__(f"`{self.command}` failed: {self.said or 'no output'}", fix=fix)
