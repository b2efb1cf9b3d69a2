"""Plans: grid order, ids, environments, repeats, variants, stages, bayes; a random plan pinned."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.errors import UserError
from jobs.manifest import Stages, Trial
from launcher.dialects.common import make_dist
from launcher.plans import expand
from launcher.plans.grid import grid_points
from launcher.spec import SweepSpec
from launcher.trial import trial_id
from search.dist import Dist
from search.kinds import in_domain

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


def dist(kind: str, **kw) -> Dist:
    return make_dist(kind, file="t.yaml", key="x", dialect="native", **kw)


# --------------------------------------------------------------------------- grid

def grid_spec(**kw) -> SweepSpec:
    space = {"a": dist("choice", values=[1, 2, 3]), "b": dist("choice", values=["x", "y"])}
    kw.setdefault("method", "grid")
    return SweepSpec(name="g", space=kw.pop("space", space), **kw)


def test_grid_is_the_cartesian_product_last_key_fastest():
    trials = expand(grid_spec(constants={"epochs": 2}))
    assert [t.params for t in trials] == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
        {"a": 2, "b": "y"}, {"a": 3, "b": "x"}, {"a": 3, "b": "y"}]
    assert [t.index for t in trials] == list(range(6))
    assert trials[3].override_args() == ["epochs=2", "a=2", "b=y"]


def test_empty_grid_is_one_run_and_sizes_multiply():
    assert [t.params for t in expand(grid_spec(space={}))] == [{}]
    space = {k: dist("choice", values=list(range(n))) for k, n in (("a", 4), ("b", 5), ("c", 3))}
    assert len(grid_points(space)) == 60


def test_grid_refuses_continuous_distributions():
    with pytest.raises(UserError, match="key 'lr'.*List the values"):
        expand(grid_spec(space={"lr": dist("loguniform", low=1e-5, high=1e-3)}))


def test_ids_are_stable_and_distinct():
    a, b = expand(grid_spec()), expand(grid_spec())
    assert [t.id for t in a] == [t.id for t in b]
    assert len({t.id for t in a}) == len(a)
    # The sweep name is part of the id.
    other = expand(SweepSpec(name="other", method="grid", space=grid_spec().space))
    assert not {t.id for t in a} & {t.id for t in other}


def test_duplicate_grid_values_are_refused():
    with pytest.raises(UserError, match="identical"):
        expand(grid_spec(space={"a": Dist("choice", values=(1, 1))}))


# --------------------------------------------------------------------------- random, environments

def random_spec(**kw) -> SweepSpec:
    space = {"lr": dist("loguniform", low=1e-5, high=1e-2), "h": dist("choice", values=[1, 2])}
    kw.setdefault("n_trials", 20)
    return SweepSpec(name="r", method="random", space=space, **kw)


def test_random_is_seeded():
    a, b = expand(random_spec(seed=7)), expand(random_spec(seed=7))
    assert [t.params for t in a] == [t.params for t in b] and [t.id for t in a] == [t.id for t in b]
    c = expand(random_spec(seed=8))
    assert [t.params for t in a] != [t.params for t in c]
    assert all(in_domain(random_spec().space["lr"], t.params["lr"]) for t in a)


def test_equal_random_samples_still_get_distinct_ids():
    spec = SweepSpec(name="r", method="random", space={"h": dist("choice", values=[1, 2])}, n_trials=30)
    trials = expand(spec)
    assert len({t.id for t in trials}) == 30
    assert len({t.params["h"] for t in trials}) == 2


def test_random_runs_per_environment_with_independent_samples():
    spec = random_spec(environments=("easy", "hard", "extreme"), env_key="data_path", n_trials=50)
    trials = expand(spec)
    assert len(trials) == 150 and len({t.id for t in trials}) == 150
    by_env = {e: [t for t in trials if t.environment == e] for e in spec.environments}
    assert all(len(ts) == 50 for ts in by_env.values())
    assert [t.index for t in trials] == list(range(150))
    assert by_env["easy"][0].overrides["data_path"] == "easy"
    assert [t.params for t in by_env["easy"]] != [t.params for t in by_env["hard"]]
    # Adding an environment leaves the others' samples and ids untouched.
    fewer = expand(random_spec(environments=("easy",), env_key="data_path", n_trials=50))
    assert [t.id for t in fewer] == [t.id for t in by_env["easy"]]


def test_overrides_order_constants_environment_params_seed_stage():
    spec = random_spec(constants={"epochs": 3}, environments=("e1",), env_key="env", repeats=2,
                       stages=Stages("arch.halt_max_steps", (4, 8)), n_trials=1)
    t = expand(spec)[0]
    assert list(t.overrides) == ["epochs", "env", "lr", "h", "seed", "arch.halt_max_steps"]


def test_repeats_set_the_seed_and_split_ids():
    trials = expand(grid_spec(repeats=3, seed=10))
    assert len(trials) == 18 and len({t.id for t in trials}) == 18
    assert [t.overrides["seed"] for t in trials[:3]] == [10, 11, 12]
    assert trials[0].params == trials[1].params
    assert "seed" not in expand(grid_spec())[0].overrides


# --------------------------------------------------------------------------- baseline, stages, bayes

def test_baseline_runs_every_variant_at_every_point():
    variants = {"off": {"loss.w": 0.0}, "on": {"loss.w": 0.1}}
    trials = expand(grid_spec(method="baseline", variants=variants))
    assert len(trials) == 12
    assert [(t.variant, t.params["loss.w"]) for t in trials[:2]] == [("off", 0.0), ("on", 0.1)]
    assert trials[0].params["a"] == trials[1].params["a"]
    assert len({t.id for t in trials}) == 12
    # Two variants with the same overrides are still two trials (the name is in the id).
    same = expand(grid_spec(method="baseline", variants={"a": {}, "b": {}}))
    assert len({t.id for t in same}) == len(same) == 12
    with pytest.raises(UserError, match="variants"):
        expand(grid_spec(method="baseline"))


def test_progressive_stages_chain_parents_with_contiguous_indices():
    stages = Stages("arch.halt_max_steps", (4, 8, 16))
    trials = expand(random_spec(stages=stages, n_trials=5))
    assert len(trials) == 15
    assert [t.index for t in trials] == list(range(15))
    assert [t.stage for t in trials] == [0] * 5 + [1] * 5 + [2] * 5
    by_id = {t.id: t for t in trials}
    for t in trials:
        assert t.overrides["arch.halt_max_steps"] == stages.values[t.stage]
        if t.stage == 0:
            assert t.parent is None
        else:
            parent = by_id[t.parent]
            assert parent.stage == t.stage - 1 and parent.index == t.index - 5
            assert parent.params == t.params
    assert len(by_id) == 15


def test_progressive_combines_with_grid():
    trials = expand(grid_spec(stages=Stages("steps", (1, 2))))
    assert len(trials) == 12 and trials[6].parent == trials[0].id


def test_bayes_trials_are_empty_slots_with_stable_ids():
    spec = SweepSpec(name="b", method="bayes", space=random_spec().space, n_trials=8, metric="acc",
                     constants={"epochs": 1}, environments=("a", "b"), env_key="env")
    trials = expand(spec)
    assert len(trials) == 16 and all(t.params == {} for t in trials)
    assert trials[0].overrides == {"epochs": 1, "env": "a"}
    assert len({t.id for t in trials}) == 16
    assert [t.id for t in trials] == [t.id for t in expand(spec)]


@pytest.mark.parametrize("kw,match", [
    (dict(method="random"), "trials"),
    (dict(method="nope"), "unknown method"),
    (dict(constants={"a": 1}), "'a' is set by both constants and space"),
    (dict(stages=Stages("b", (1, 2))), "'b' is set by both space and stages"),
    (dict(repeats=2, constants={"seed": 1}), "'seed' is set by both constants and repeats"),
])
def test_inconsistent_specs_are_user_errors(kw, match):
    with pytest.raises(UserError, match=match):
        expand(grid_spec(**kw))


def test_trial_round_trips_through_dict():
    for t in expand(grid_spec(method="baseline", variants={"v": {"z": 1}}, repeats=2,
                              stages=Stages("s", (1, 2)))):
        assert Trial.from_dict(t.to_dict()) == t


def test_random_plan_is_pinned():
    # Digest of this plan as the code before the fast path produced it (ids, params, overrides).
    space = {"lr": Dist("loguniform", low=1e-5, high=1e-2), "wd": Dist("loguniform", low=1e-6, high=1e-1, q=1e-6),
             "hidden": Dist("choice", values=(128, 256, 512)),
             "act": Dist("choice", values=("relu", "gelu"), probabilities=(0.25, 0.75)),
             "drop": Dist("uniform", low=0.0, high=0.5, q=0.05), "layers": Dist("int_uniform", low=1, high=8),
             "batch": Dist("pow2", low=16, high=256), "mom": Dist("logit", low=0.8, high=0.99),
             "noise": Dist("normal", mu=0.0, sigma=1.0), "width": Dist("uniform", low=10, high=100, is_int=True)}
    spec = SweepSpec(name="pinned", method="random", space=space, n_trials=500, environments=("easy", "hard"), seed=7)
    trials = expand(spec)
    blob = json.dumps([t.to_dict() for t in trials], sort_keys=True).encode()
    assert len(trials) == 1000
    assert hashlib.sha1(blob).hexdigest() == "2007ca19eb2117174112b977f443177efd46de60"


@pytest.mark.parametrize("params,extra", [
    ({"lr": 0.001, "arch.h": 256}, {}),
    ({"b": [1, 2.5, "x"], "a": None, "c": True}, {"environment": "easy", "replica": 3, "variant": "feudal"}),
    ({"path": Path("/tmp/x"), "u": "é"}, {"replica": 0}),
])
def test_trial_id_is_the_documented_hash(params, extra):
    key = {"sweep": "s", "stage": 1, "params": params}
    key.update({k: v for k, v in extra.items() if v})
    blob = json.dumps(key, sort_keys=True, default=str, separators=(",", ":"))
    assert trial_id("s", 1, params, extra.get("environment"), extra.get("replica", 0),
                    variant=extra.get("variant")) == hashlib.sha1(blob.encode()).hexdigest()[:10]


def test_grid_launch_path_does_not_import_numpy():
    code = ("import sys\nfrom launcher.plans import expand\nfrom launcher.spec import SweepSpec\n"
            "from search.dist import Dist\n"
            "expand(SweepSpec(name='g', space={'x': Dist('choice', values=(1, 2))}))\n"
            "print('numpy' in sys.modules)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


