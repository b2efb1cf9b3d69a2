"""The native sweep file: a full example, shorthands, and errors that name file, key and fix."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from jobs.errors import UserError
from launcher.dialects import load_spec
from launcher.dialects.common import coerce_number, coerce_scalar
from launcher.dialects.native import KEYS, parse
from launcher.plans import expand, validate
from jobs.manifest import Stages
from search.dist import Dist

FILE = "configs/sweeps/feudal.yaml"

FULL = """
name: feudal_grid
command: python -m train --quiet
method: baseline
seed: 3
metric: eval/exact_accuracy
goal: maximize
fixed:
  epochs: 20
  optim: {lr: 1e-4, betas: [0.9, 0.95]}
grid:
  loss.feudal_loss_weight: [0.01, 0.05, 0.1]
  arch.subgoal_head.manager_period: "2,4,8"
environments: {key: data_path, values: [data/sudoku-easy, data/sudoku-hard]}
stages: {key: arch.halt_max_steps, values: [4, 8, 16]}
variants:
  baseline: {arch.use_gating: false}
  gated: {arch.use_gating: true}
repeats: 2
resources: {time: "02:00:00", gres: "gpu:1", cpus_per_task: 4, mem: 16G, partition: long}
max_parallel: 8
description: gating A/B
"""


def load(text: str, file: str = FILE):
    """Parse, then check what the plans check (as `sweep launch` does before submitting)."""
    spec = parse(yaml.safe_load(textwrap.dedent(text)), file=file)
    validate(spec)
    return spec


def test_full_example():
    spec = load(FULL)
    assert spec.name == "feudal_grid" and spec.method == "baseline" and spec.dialect == "native"
    assert spec.command == ("python", "-m", "train", "--quiet")
    assert spec.constants == {"epochs": 20, "optim.lr": 1e-4, "optim.betas": [0.9, 0.95]}
    assert spec.space["arch.subgoal_head.manager_period"] == Dist("choice", values=(2, 4, 8))
    assert spec.environments == ("data/sudoku-easy", "data/sudoku-hard") and spec.env_key == "data_path"
    assert spec.stages == Stages("arch.halt_max_steps", (4, 8, 16))
    assert spec.variants == {"baseline": {"arch.use_gating": False}, "gated": {"arch.use_gating": True}}
    assert spec.resources["max_parallel"] == 8 and spec.resources["mem"] == "16G"
    assert spec.source == FILE and spec.extra == {"description": "gating A/B"}


def test_full_example_expands():
    spec = load(FULL)
    trials = expand(spec)
    # 2 envs x 9 grid points x 2 variants x 2 repeats x 3 stages
    assert len(trials) == 2 * 9 * 2 * 2 * 3
    first = trials[0]
    assert first.override_args()[:5] == ["epochs=20", "optim.lr=0.0001", "optim.betas=[0.9,0.95]",
                                         "data_path=data/sudoku-easy", "loss.feudal_loss_weight=0.01"]
    assert first.overrides["arch.halt_max_steps"] == 4 and first.overrides["seed"] == 3


def test_the_documented_example_parses_and_expands():
    import launcher.dialects.native as native
    example = native.__doc__.split("\n\n")[1]
    spec = parse(yaml.safe_load(textwrap.dedent(example)), file=FILE)
    assert spec.name == "feudal_random" and spec.constants["arch.hidden_size"] == 256
    assert spec.pruner.kind == "hyperband" and spec.sampler == "tpe"
    # 2 environments x 20 samples x 2 variants x 2 repeats x 3 stages
    assert len(expand(spec)) == 2 * 20 * 2 * 2 * 3


def test_method_defaults_and_random_space():
    spec = load("""
        trials: 5
        space:
          lr: {distribution: loguniform, min: 1e-5, max: 1e-3}
          arch.H_cycles: "choice(1,2)"
          wd: "tag(log, interval(1e-6, 1e-2))"
          arch: {L_layers: [2, 4]}
        """)
    assert spec.method == "random" and spec.n_trials == 5 and spec.name == "feudal"
    assert spec.space["lr"] == Dist("loguniform", low=1e-5, high=1e-3)
    assert spec.space["wd"].kind == "loguniform" and spec.space["arch.L_layers"].values == (2, 4)
    assert load("grid: {a: [1, 2]}").method == "grid"
    assert len(expand(spec)) == 5


def test_exponent_strings_become_numbers():
    # PyYAML reads 1e-5 and 5e-1 as strings.
    doc = yaml.safe_load("fixed: {wd: 1e-5}\nspace: {lr: {distribution: uniform, min: 1e-5, max: 5e-1}}\n"
                         "trials: 1\ngrid_like: 0")
    assert doc["fixed"]["wd"] == "1e-5"
    del doc["grid_like"]
    spec = parse(doc, file=FILE)
    assert spec.constants["wd"] == 1e-5 and spec.space["lr"].low == 1e-5 and spec.space["lr"].high == 0.5
    assert coerce_number("1_000") == 1000 and coerce_number("3") == 3 and coerce_number("x1") == "x1"
    assert coerce_scalar("42") == "42" and coerce_scalar("1E5") == 1e5 and coerce_scalar("e5") == "e5"
    assert coerce_scalar("1.10") == "1.10" and coerce_scalar("1.0e5") == 1e5


@pytest.mark.parametrize("text,key,match,fix", [
    ("space: {lr: {distribution: uniform, min: 1.0, max: 0.1}}\ntrials: 2", "space.lr",
     "min \\(1.0\\) is greater than max", "swap min and max"),
    ("space: {lr: {distribution: loguniform, min: 0, max: 0.1}}\ntrials: 2", "space.lr",
     "needs min > 0", "positive min"),
    ("space: {lr: {distribution: gaussian_mix, min: 0, max: 1}}\ntrials: 2", "space.lr.distribution",
     "unknown distribution 'gaussian_mix'", "loguniform"),
    ("space: {bs: {distribution: pow2, min: 16, max: 1000}}\ntrials: 2", "space.bs",
     "powers of two, got max = 1000", "16 and 1024"),
    ("space: {lr: {distribution: uniform, min: 0, max: 1, maxx: 2}}\ntrials: 2", "space.lr.maxx",
     "unknown field", "min"),
    ("grid: {a: [1, 2]}\ntrails: 3", "trails", "unknown key 'trails'", "trials"),
    ("grid: {a: [1, 1]}", "grid.a", "repeated values", "once"),
    ("grid: {a: 3}", "grid.a", "single value", "fixed"),
    ("grid: {a: 'interval(0, 1)'}", "grid.a", "a grid needs a list", "space"),
    ("space: {a: [1, 2]}\nmethod: bayes\ntrials: 3", "metric", "needs a metric", "goal"),
    ("grid: {a: [1, 2]}\nmethod: sweep", "method", "unknown method", "bayes"),
    ("grid: {a: [1, 2]}\ncommand: \"python -c 'x\"", "command", "cannot split", "quotes"),
    ("grid: {a: [1, 2]}\nfixed: {'-rf /': 1}", "fixed.-rf /", "not a valid parameter name", "dotted"),
    ("grid: {a: [1, 2]}\nname: ../up", "name", "not a plain name", "letters"),
    ("grid: {a: [1, 2]}\nrepeats: 0", "repeats", "at least 1", ">= 1"),
    ("grid: {a: [1, 2]}\nstages: {key: s}", "stages", "needs `key` and `values`", "halt_max_steps"),
    ("grid: {a: [1, 2]}\nenvironments: [x, x]", "environments", "repeated environments", "once"),
    ("grid: {a: [1, 2]}\nresources: {time: [1, 2]}", "resources.time", "single value", "one value"),
    ("grid: {a: [1, 2]}\npruner: {kind: magic}", "pruner.kind", "unknown pruner", "hyperband"),
    ("space: {a: 'choice(1,2)'}\ntrials: 2\ngrid: {b: [1, 2]}", "grid", "not random", "space"),
])
def test_bad_files_say_file_key_dialect_and_fix(text, key, match, fix):
    with pytest.raises(UserError, match=match) as info:
        load(text)
    err = info.value
    assert err.file == FILE and err.key == key and err.dialect == "native"
    assert fix in err.fix
    assert str(err).startswith(f"{FILE}: key '{key}': ")


@pytest.mark.parametrize("text,key,match", [
    ("space: {a: [1, 2]}\nmethod: random", "trials", "needs a number of trials"),
    ("grid: {a: [1, 2]}\nfixed: {a: 3}", "a", "set by both"),
    ("space: {a: {distribution: uniform, min: 0, max: 1}}\nmethod: grid", "a", "a grid needs a list"),
    ("grid: {a: [1, 2]}\nstages: {key: a, values: [1, 2]}", "a", "set by both"),
])
def test_plan_level_errors_name_the_file(text, key, match):
    spec = parse(yaml.safe_load(text), file=FILE)
    with pytest.raises(UserError, match=match) as info:
        expand(spec)
    assert (info.value.file, info.value.key, info.value.dialect) == (FILE, key, "native")


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(UserError) as info:
        load("grid: {a: [1]}\nsweeep: 1")
    assert all(k in str(info.value) for k in KEYS)


def test_top_level_must_be_a_mapping():
    with pytest.raises(UserError, match="expected a mapping"):
        parse(["a"], file=FILE)


def test_pack_travels_with_the_resources(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ngrid: {a: [1, 2]}\npack: 20\nresources: {trial_time: '00:02:00'}\n")
    assert load_spec(path).resources == {"pack": 20, "trial_time": "00:02:00"}
    path.write_text("name: p\ngrid: {a: [1, 2]}\npack: auto\n")
    assert load_spec(path).resources == {"pack": "auto"}
    path.write_text("name: p\ngrid: {a: [1, 2]}\npack: 0\n")
    with pytest.raises(UserError, match="key 'pack'.*positive whole number or auto"):
        load_spec(path)
