"""Hostile YAML (alias bombs, deep nesting, huge files) is refused with one line, quickly;
ordinary files read exactly as yaml.safe_load reads them."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from jobs.errors import UserError
from launcher import safe_yaml
from launcher.cli import main

ROOT = Path(__file__).resolve().parents[2]
LOADERS = [safe_yaml.LimitedSafeLoader] + ([safe_yaml.Loader] if safe_yaml.Loader is not safe_yaml.LimitedSafeLoader
                                           else [])
# A guard against walking the expansion (which never ends), not a performance goal.
QUICK_S = 5.0


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """Nine levels of nine aliases: 9**9 (about 387 million) leaves in a 400-byte file."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def refused(text: str, loader: type, words: str) -> str:
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        safe_yaml.loads(text, file="bomb.yaml", loader=loader)
    assert time.monotonic() - started < QUICK_S
    message = str(info.value)
    assert message.startswith("bomb.yaml: refused: ") and words in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("loader", LOADERS)
def test_billion_laughs_is_refused_without_expanding(loader):
    message = refused(billion_laughs(), loader, f"more than {safe_yaml.MAX_NODES:,} values through its aliases")
    assert "(line " in message


@pytest.mark.parametrize("loader", LOADERS)
def test_merge_keys_count_like_aliases(loader):
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(10)) + "}"]
    for i in range(1, 9):
        lines.append(f"m{i}: &m{i} [" + ", ".join([f"{{<<: *m{i - 1}}}"] * 10) + "]")
    refused("\n".join(lines) + "\n", loader, "through its aliases")


@pytest.mark.parametrize("loader", LOADERS)
def test_recursive_alias_is_refused(loader):
    refused("a: &a [1, *a]\n", loader, "alias *a refers to a node that contains it")
    refused("a: &a {b: {c: *a}}\n", loader, "alias *a refers to a node that contains it")


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("depth", [safe_yaml.MAX_DEPTH + 1, 5000])
def test_deep_nesting_is_refused(loader, depth):
    flow = "x: " + "[" * depth + "]" * depth + "\n"
    block = "".join(" " * i + "- \n" for i in range(depth)) if depth < 1000 else flow
    for text in (flow, block):
        with pytest.raises(UserError) as info:
            safe_yaml.loads(text, file="deep.yaml", loader=loader)
        # libyaml stops flow nesting at 1000 levels itself, as a syntax error: one line too.
        assert "nests more than" in str(info.value) or "maximum nesting depth" in str(info.value)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("loader", LOADERS)
def test_nesting_and_aliases_within_the_limits_are_read(loader):
    depth = safe_yaml.MAX_DEPTH - 2
    assert safe_yaml.loads("[" * depth + "1" + "]" * depth, loader=loader) == \
        yaml.safe_load("[" * depth + "1" + "]" * depth)
    text = "base: &b {lr: 0.1, wd: [1, 2]}\nuse: *b\nmerged: {<<: *b, lr: 0.2}\n"
    assert safe_yaml.loads(text, loader=loader) == yaml.safe_load(text)


@pytest.mark.parametrize("loader", LOADERS)
def test_the_count_is_the_size_of_the_expanded_tree(loader):
    class Small(loader):
        max_nodes = 11

    # root 1 + key a 1 + list 1 + 3 items + key b 1 + *a (the list: 4) = 11 nodes
    text = "a: &a [1, 2, 3]\nb: *a\n"
    assert safe_yaml.loads(text, loader=Small) == {"a": [1, 2, 3], "b": [1, 2, 3]}

    class Smaller(loader):
        max_nodes = 10

    with pytest.raises(UserError, match=r"more than 10 values through its aliases \(\*name\) \(line 2\)"):
        safe_yaml.loads(text, loader=Smaller)


def test_a_huge_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:   # sparse: 50 MB on stat, nothing on disk
        f.truncate(50 << 20)
    started = time.monotonic()
    with pytest.raises(UserError, match=r"big.yaml: refused: the file is larger than 256 KiB") as info:
        safe_yaml.read(big)
    assert time.monotonic() - started < QUICK_S and "\n" not in str(info.value)


def test_an_endless_stream_is_refused_after_the_limit():
    # /dev/zero says size 0 on stat; only the bounded read stops it.
    with pytest.raises(UserError, match="refused: the file is larger than"):
        safe_yaml.read("/dev/zero")


@pytest.mark.parametrize("path", sorted(ROOT.glob("configs/**/*.yaml")), ids=lambda p: p.name)
def test_our_files_read_as_yaml_safe_load_reads_them(path):
    assert safe_yaml.read(path) == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("text, words", [
    ("a: [1, 2\n", "invalid YAML at line"),
    ("a: 1\n---\nb: 2\n", "invalid YAML"),
    ("a: *nope\n", "found undefined alias 'nope'"),
])
def test_syntax_errors_stay_one_line(text, words):
    with pytest.raises(UserError) as info:
        safe_yaml.loads(text, file="f.yaml")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_read_errors(tmp_path):
    assert safe_yaml.read(_write(tmp_path, "")) is None
    with pytest.raises(UserError, match="no such file. Check the path of the cluster profile"):
        safe_yaml.read(tmp_path / "nope.yaml", what="cluster profile")
    with pytest.raises(UserError, match="cannot read the file"):
        safe_yaml.read(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("a: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        safe_yaml.read(tmp_path / "latin1.yaml")


def _write(tmp_path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- through the CLI: a sweep file and a cluster profile ----------------------------------------

def test_sweep_launch_of_a_bomb_is_one_line_and_exit_2(tmp_path, capsys):
    bomb = _write(tmp_path, billion_laughs(), "bomb.yaml")
    started = time.monotonic()
    rc = main(["launch", str(bomb), "--dry-run", "--dir", str(tmp_path / "sweep"), "--executor", "local"])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - started < QUICK_S
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"sweep launch: error: {bomb}: refused: the YAML expands to more than")


def test_a_bomb_as_cluster_profile_is_one_line_and_exit_2(tmp_path, capsys):
    bomb = _write(tmp_path, billion_laughs(), "bomb.yaml")
    rc = main(["launch", str(ROOT / "configs/sweeps/feudal_weight.yaml"), "--cluster", str(bomb), "--dry-run",
               "--dir", str(tmp_path / "sweep"), "--executor", "slurm"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"{bomb}: refused: the YAML expands" in err


def test_sweep_launch_of_a_deep_file_is_one_line_and_exit_2(tmp_path, capsys):
    deep = _write(tmp_path, "grid:\n  x: " + "[" * 500 + "]" * 500 + "\n", "deep.yaml")
    rc = main(["launch", str(deep), "--dry-run", "--dir", str(tmp_path / "sweep"), "--executor", "local"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nests more than 100 levels" in err

