"""CARBS `space:` leaves and `${ss:...}` inline values (launcher/dialects/carbs.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobs.argv import render_argv
from jobs.errors import UserError
from launcher.dialects import load_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "sweeps"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "carbs.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_generation_4_space_leaves():
    spec = load_spec(FIX / "carbs_leaves.yaml")
    assert (spec.dialect, spec.method, spec.n_trials, spec.metric) == ("carbs", "bayes", 8, "reward")
    s = spec.space
    assert (s["trainer.learning_rate"].kind, s["trainer.learning_rate"].center) == ("loguniform", 3e-4)
    assert (s["trainer.batch_size"].kind, s["trainer.batch_size"].center) == ("pow2", 16384)
    assert (s["trainer.bptt_horizon"].kind, s["trainer.bptt_horizon"].low) == ("int_uniform", 8)
    assert s["trainer.hidden"].kind == "int_loguniform"
    assert (s["trainer.gamma"].kind, s["trainer.gamma"].center) == ("logit", 0.99)
    assert s["trainer.ent_coef"].kind == "uniform"
    assert spec.search_options == {"n_startup": 3}


def test_generation_5_inline_values_and_constants():
    spec = load_spec(FIX / "carbs_inline.yaml")
    assert (spec.dialect, spec.n_trials, spec.metric, spec.goal, spec.name) == \
        ("carbs", 12, "reward", "maximize", "carbs-inline")
    s = spec.space
    assert (s["trainer.learning_rate"].kind, s["trainer.learning_rate"].low, s["trainer.learning_rate"].high,
            s["trainer.learning_rate"].center) == ("loguniform", 1e-5, 1e-1, 3e-4)
    assert s["trainer.gamma"].kind == "logit"
    assert (s["trainer.batch_size"].kind, s["trainer.batch_size"].high) == ("pow2", 65536)
    assert (s["trainer.update_epochs"].kind, s["trainer.update_epochs"].center) == ("int_uniform", 4)
    assert s["trainer.ent_coef"].kind == "uniform"
    assert s["env.game.max_steps"].kind == "int_uniform"
    assert spec.constants["trainer.total_timesteps"] == 1e6
    assert spec.constants["trainer.optimizer"] == "adam"
    assert spec.constants["env.game.layout"] == [[1, 2], [3, 4]]
    assert "name" not in spec.constants and spec.extra["name"] == "carbs-inline"


def test_look_alikes_warn_and_reach_hydra_as_literals():
    spec = load_spec(FIX / "carbs_inline.yaml")
    warned = "\n".join(spec.warnings)
    assert "trainer.weird" in warned and "env.game.typo" in warned and len(spec.warnings) == 2
    # Quoted for Hydra's override parser, with `${` escaped: the app receives the literal text.
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    argv = render_argv(("python", "-m", "train"), spec.constants)
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(argv[3:])}
    cfg = OmegaConf.create({"trainer": {"weird": parsed["trainer.weird"]}, "typo": parsed["env.game.typo"]})
    assert cfg.trainer.weird == "$pow2(1024, 32768)"
    assert cfg.typo == "${ss:lgo, 1e-5, 1e-2}"


@pytest.mark.parametrize("value, words", [
    ("${ss:log, 0, 1}", "min > 0"),
    ("${ss:log, 1e-2, 1e-5}", "greater than max"),
    ("${ss:pow2, 30, 64}", "powers of two"),
    ("${ss:logit, 0.5, 1.5}", "inside (0, 1)"),
    ("${ss:linear, 0, 1, 2}", "search_center 2 lies outside"),
])
def test_bad_inline_bounds(tmp_path, value, words):
    path = write(tmp_path, f"rollout_count: 2\ntrainer:\n  x: {value}\n")
    with pytest.raises(UserError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and "key 'trainer.x" in msg and "carbs dialect" in msg and words in msg


@pytest.mark.parametrize("leaf, key, words", [
    ("{space: loggy, min: 1, max: 2}", "p.x.space", "unknown space"),
    ("{space: log, min: 1}", "p.x", "needs min and max"),
    ("{space: linear, min: 0, max: 1, search_center: -1}", "p.x.search_center", "outside"),
    ("{space: pow2, min: 16, max: 100}", "p.x", "powers of two"),
])
def test_bad_leaves(tmp_path, leaf, key, words):
    path = write(tmp_path, f"rollout_count: 2\nparameters:\n  p:\n    x: {leaf}\n")
    with pytest.raises(UserError) as err:
        load_spec(path)
    assert f"key '{key}'" in str(err.value) and words in str(err.value)


def test_a_file_with_only_look_alikes_has_nothing_to_search(tmp_path):
    path = write(tmp_path, "rollout_count: 2\ntrainer:\n  x: ${ss:lgo, 1, 2}\n")
    with pytest.raises(UserError, match="no search space"):
        load_spec(path)


def test_inline_values_never_reach_a_shell(tmp_path):
    path = write(tmp_path, f"""
        rollout_count: 1
        trainer:
          lr: ${{ss:log, 1e-5, 1e-2}}
          note: "$(touch {tmp_path}/pwned); `touch {tmp_path}/pwned2`"
    """)
    spec = load_spec(path)
    script = "import sys, json; print(json.dumps(sys.argv[1:]))"
    argv = render_argv((sys.executable, "-c", script), {**spec.constants, "trainer.lr": 1e-3})
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert f"$(touch {tmp_path}/pwned)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carbs.yaml"]


def test_logit_zero_one_bounds_and_degenerate_pow2(tmp_path):
    path = write(tmp_path, """
        rollout_count: 2
        trainer:
          gamma: ${ss:logit, 0.0, 1.0}
          mb: ${ss:pow2, 128, 128, 128}
          steps: ${ss:log, 1e3, 1e4, 1e4}
    """)
    s = load_spec(path).space
    assert s["trainer.gamma"].kind == "logit" and 0 < s["trainer.gamma"].low and s["trainer.gamma"].high < 1
    assert (s["trainer.mb"].low, s["trainer.mb"].high) == (128, 128)
    assert s["trainer.steps"].center == 1e4
