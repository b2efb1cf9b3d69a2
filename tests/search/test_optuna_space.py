"""search.optuna_space: every kind maps into Optuna and back into its domain; samplers by name."""
from __future__ import annotations

import json

import optuna
import pytest

from search import optuna_space as osp
from search.dist import Dist
from search.kinds import in_domain

SPACE = {
    "lr": Dist("loguniform", low=1e-5, high=1e-1),
    "wd": Dist("uniform", low=0.0, high=0.5, q=0.05),
    "layers": Dist("int_uniform", low=1, high=8),
    "width": Dist("int_loguniform", low=16, high=1024),
    "batch": Dist("pow2", low=32, high=4096, center=256),
    "dropout": Dist("logit", low=0.01, high=0.9),
    "opt": Dist("choice", values=("adam", "sgd", "lion")),
    "shape": Dist("choice", values=([1, 2], [3, 4])),
    "bias": Dist("normal", mu=0.0, sigma=2.0),
    "clip": Dist("normal", mu=1.0, sigma=5.0, low=0.1, high=3.0),
    "scale": Dist("lognormal", mu=0.0, sigma=1.0),
    "mom": Dist("beta", a=2.0, b=5.0),
    "steps": Dist("uniform", low=10, high=1000, is_int=True),
}


def test_every_kind_maps_into_optuna_and_back_into_its_domain():
    space = osp.search_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(300):
        t = study.ask(space)
        for key, dist in SPACE.items():
            value = osp.from_optuna(dist, t.params[key])
            assert in_domain(dist, value), (key, t.params[key], value)
        study.tell(t, 0.0)


def test_box_edges_map_into_the_domain():
    for key, dist in SPACE.items():
        target = osp.to_optuna(dist)
        if isinstance(target, optuna.distributions.CategoricalDistribution):
            continue
        for x in (target.low, target.high):
            assert in_domain(dist, osp.from_optuna(dist, x)), (key, x)


def test_special_kinds_search_in_their_own_coordinates():
    assert osp.to_optuna(SPACE["batch"]) == optuna.distributions.IntDistribution(5, 12)
    assert osp.from_optuna(SPACE["batch"], 8) == 256
    logit = osp.to_optuna(SPACE["dropout"])
    assert logit.low < 0 < logit.high and osp.from_optuna(SPACE["dropout"], 0.0) == pytest.approx(0.5)
    assert osp.to_optuna(SPACE["bias"]).low == pytest.approx(-6.0)       # mu - 3 sigma
    assert (osp.to_optuna(SPACE["clip"]).low, osp.to_optuna(SPACE["clip"]).high) == (0.1, 3.0)
    assert osp.to_optuna(SPACE["scale"]).log
    assert osp.from_optuna(SPACE["shape"], 1) == [3, 4]
    assert osp.from_optuna(SPACE["wd"], 0.123) == pytest.approx(0.1)
    assert isinstance(osp.from_optuna(SPACE["steps"], 12.7), int)


def test_manifest_round_trip_of_dists():
    for dist in SPACE.values():
        assert Dist.from_dict(json.loads(json.dumps(dist.to_dict()))) == dist


def test_center_round_trips():
    assert osp.center_point(SPACE) == {"batch": 8}
    d = Dist("logit", low=0.01, high=0.9, center=0.2)
    assert osp.from_optuna(d, osp.to_optuna_value(d, 0.2)) == pytest.approx(0.2)


def test_unknown_sampler_and_grid_of_continuous_are_refused():
    with pytest.raises(ValueError, match="unknown sampler"):
        osp.sampler_name("simplex")
    with pytest.raises(ValueError, match="grid sampler"):
        osp.make_sampler("grid", {"x": Dist("uniform", low=0, high=1)}, seed=0)
    assert isinstance(osp.make_sampler(None, {}, seed=0), optuna.samplers.GPSampler)
    assert isinstance(osp.make_sampler("protein", {}, seed=0), optuna.samplers.GPSampler)
    assert osp.make_sampler("tpe", {}, seed=0)._constant_liar
