"""jobs.argv.render_argv: overrides -> argv, W&B macros, never a shell."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jobs.argv import has_macro, render_argv

NASTY = "x; rm -rf / && echo $(whoami) 'q' \"dq\" `id`"


def test_no_macro_appends_key_value_typed():
    argv = render_argv(["python", "-m", "train"],
                       {"lr": 1e-05, "n": 3, "flag": True, "off": False, "none": None, "xs": [1, 2.5], "s": "a b"})
    assert argv == ["python", "-m", "train", "lr=1e-05", "n=3", "flag=true", "off=false", "none=null",
                    "xs=[1,2.5]", "s=a b"]


def test_args_macros():
    ov = {"lr": 0.1, "amp": True, "ddp": False, "name": "run 1"}
    assert render_argv(["${env}", "${interpreter}", "train.py", "${args}"], ov) == [
        "/usr/bin/env", "python", "train.py", "--lr=0.1", "--amp=True", "--ddp=False", "--name=run 1"]
    assert render_argv(["prog", "${args_no_hyphens}"], ov) == [
        "prog", "lr=0.1", "amp=true", "ddp=false", "name=run 1"]
    assert render_argv(["prog", "${args_no_boolean_flags}"], ov) == ["prog", "--lr=0.1", "--amp", "--name=run 1"]


def test_program_macro_and_missing_program():
    assert render_argv(["${program}", "${args}"], {"a": 1}, program="fit.sh") == ["fit.sh", "--a=1"]
    with pytest.raises(ValueError):
        render_argv(["${program}"], {})


def test_args_json_is_one_element_nested():
    argv = render_argv(["prog", "--cfg", "${args_json}"], {"optim.adam.beta1": 0.9, "lr": 1e-3, "tag": NASTY})
    assert len(argv) == 3
    assert json.loads(argv[2]) == {"optim": {"adam": {"beta1": 0.9}}, "lr": 1e-3, "tag": NASTY}


def test_args_json_flat_when_a_key_is_also_a_prefix():
    argv = render_argv(["p", "${args_json}"], {"a": 1, "a.b": 2})
    assert json.loads(argv[1]) == {"a": 1, "a.b": 2}


def test_args_json_file_written(tmp_path):
    argv = render_argv(["p", "--file", "${args_json_file}"], {"lr": 0.5, "m.d": 2}, json_file_dir=tmp_path)
    assert argv[:2] == ["p", "--file"]
    assert argv[2] == str(tmp_path / "args.json")
    assert json.loads((tmp_path / "args.json").read_text()) == {"lr": 0.5, "m": {"d": 2}}


def test_args_json_file_not_written_on_a_dry_run(tmp_path):
    argv = render_argv(["p", "${args_json_file}"], {"x": 1}, json_file_dir=tmp_path, write_json_file=False)
    assert argv == ["p", str(tmp_path / "args.json")] and not (tmp_path / "args.json").exists()


def test_args_json_file_defaults_to_trial_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_TRIAL_DIR", str(tmp_path / "trial"))
    path = render_argv(["${args_json_file}"], {"x": 1})[0]
    assert path == str(tmp_path / "trial" / "args.json")
    assert json.loads(open(path).read()) == {"x": 1}


def test_macro_must_be_whole_element():
    # As in W&B: `${args}` inside a longer string is plain text; with no whole-element macro
    # the overrides are appended as key=value.
    assert not has_macro(["echo", "pre${args}"])
    assert render_argv(["echo", "pre${args}"], {"a": 1}) == ["echo", "pre${args}", "a=1"]


def test_values_never_reach_a_shell(tmp_path):
    """A hostile value arrives byte for byte as one argument when the argv is executed."""
    hostile = f"x; touch {tmp_path}/pwned; $(touch {tmp_path}/pwned2) `touch {tmp_path}/pwned3`"
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    for command in (["${env}", sys.executable, "-c", script, "${args}"],
                    [sys.executable, "-c", script]):
        argv = render_argv(command, {"tag": hostile, "n": 1})
        got = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        assert len(got) == 2 and any(a.endswith("=" + hostile) for a in got)
    assert list(tmp_path.iterdir()) == []


def test_python_means_the_sweeps_own_interpreter():
    import sys

    from jobs.argv import resolve_python

    assert resolve_python(["python", "-m", "train", "lr=1"]) == [sys.executable, "-m", "train", "lr=1"]
    assert resolve_python(["/usr/bin/env", "python", "train.py"]) == [sys.executable, "train.py"]
    assert resolve_python(["/usr/bin/env", "bash", "x.sh"]) == ["/usr/bin/env", "bash", "x.sh"]
    assert resolve_python(["/opt/py/bin/python3", "x.py"]) == ["/opt/py/bin/python3", "x.py"]
