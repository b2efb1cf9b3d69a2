"""The `sweep` command line: --help of every subcommand, and bad input of every kind ending in one
line and exit 2, never a traceback (anything raised out of main() fails these tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sweep {command}") and len(out.splitlines()) > 3


def test_the_command_list_is_what_the_parser_offers():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert tuple(sub.choices) == COMMANDS


@pytest.fixture()
def bad(tmp_path: Path) -> dict[str, str]:
    """Files and directories that are wrong in each way a user manages."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_a_sweep.yaml").write_text("name: x\ngrid: {a: [1, 2]}\n")
    (tmp_path / "broken.yaml").write_text("grid: {a: [1, 2\n")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "manifest.json").write_text("{half a manifest")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (tmp_path / "bomb.yaml").write_text(bomb)
    return {k: str(tmp_path / v) for k, v in {
        "missing": "nowhere", "empty": "empty", "file": "not_a_sweep.yaml", "broken": "broken.yaml",
        "corrupt": "corrupt", "bomb": "bomb.yaml"}.items()}


CASES = [
    ("launch", ["{missing}"]), ("launch", ["{empty}"]), ("launch", ["{broken}"]), ("launch", ["{bomb}"]),
    ("launch", ["{file}", "lr=", "--dry-run"]), ("launch", ["{file}", "--command", 'python "x', "--dry-run"]),
    ("launch", ["{file}", "--max-parallel", "0"]), ("launch", ["{file}", "--pack", "0", "--dry-run"]),
    ("launch", ["{file}", "--sbatch", "exlude=n1", "--dry-run", "--command", "true"]),
    ("launch", ["{file}", "--mem", "", "--dry-run"]), ("launch", ["--grid"]), ("launch", ["{file}", "--cluster", "moon"]),
    ("launch", ["{file}", "--dir", "{file}", "--command", "true", "--executor", "local"]),
    ("status", ["{missing}"]), ("status", ["{file}"]), ("status", ["{empty}"]), ("status", ["{corrupt}"]),
    ("resume", ["{file}"]), ("resume", ["{empty}"]), ("cancel", ["{file}"]), ("cancel", ["{missing}"]),
    ("logs", ["{file}", "0"]), ("logs", ["{empty}", "abc"]), ("list", ["{missing}"]),
    ("collect", ["{missing}"]), ("report", ["{file}"]), ("best", ["{empty}"]), ("sync", ["{file}", "--dry-run"]),
]


@pytest.mark.parametrize("command,argv", CASES, ids=[f"{c}-{'-'.join(a)[:40]}" for c, a in CASES])
def test_bad_input_is_one_line_and_exit_2(command, argv, bad, capsys):
    rc = main([command, *(a.format(**bad) for a in argv)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith(f"sweep {command}: error: ") and len(err.splitlines()) == 1, err


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`sweep launch ... --dry-run | head -1`: the reader leaves after one line."""
    spec = tmp_path / "s.yaml"
    spec.write_text("name: pipe\ngrid: {a: " + json.dumps(list(range(3000))) + "}\n")
    code = f"import sys\nfrom launcher.cli import main\nsys.exit(main(['launch', {str(spec)!r}, '--dry-run', " \
           f"'--command', 'true', '--executor', 'local', '--dir', {str(tmp_path / 'd')!r}]))"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
