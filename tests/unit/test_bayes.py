"""Bayes plan: space mapping, ask/tell through the journal, requeue, concurrency, centre, summary."""
from __future__ import annotations

import json
import multiprocessing
import os

import optuna
import pandas as pd
import pytest

from jobs import bayes
from jobs import manifest as mf
from launcher.plans.sampling import in_domain
from launcher.search import optuna_space as osp
from launcher.spec import Dist

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


def make_manifest(space: dict[str, Dist], *, n: int = 12, sampler: str | None = "gp", method: str = "bayes",
                  goal: str = "minimize", pruner: dict | None = None, options: dict | None = None) -> dict:
    trials = [{"id": f"t{i:03d}", "index": i, "stage": 0, "params": {}, "overrides": {}, "replica": i}
              for i in range(n)]
    return {"schema": 1, "name": "unit", "method": method, "metric": "value", "goal": goal,
            "command": ["true"], "space": {k: d.to_dict() for k, d in space.items()}, "trials": trials,
            "sampler": sampler, "search_options": options or {"n_startup": 3},
            "pruner": pruner or {"kind": "none"}, "submissions": []}


def write_sweep(tmp_path, manifest: dict):
    mf.write_manifest(tmp_path, manifest)
    return tmp_path


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
        assert osp.dist_from_dict(json.loads(json.dumps(dist.to_dict()))) == dist


def test_center_round_trips():
    assert osp.center_point(SPACE) == {"batch": 8}
    d = Dist("logit", low=0.01, high=0.9, center=0.2)
    assert osp.from_optuna(d, osp.to_optuna_value(d, 0.2)) == pytest.approx(0.2)


def test_unknown_sampler_and_grid_of_continuous_are_user_errors():
    from jobs.errors import UserError

    with pytest.raises(UserError, match="unknown sampler"):
        osp.sampler_name("simplex")
    with pytest.raises(UserError, match="grid sampler"):
        osp.make_sampler("grid", {"x": Dist("uniform", low=0, high=1)}, seed=0)
    assert isinstance(osp.make_sampler(None, {}, seed=0), optuna.samplers.GPSampler)
    assert isinstance(osp.make_sampler("protein", {}, seed=0), optuna.samplers.GPSampler)
    assert osp.make_sampler("tpe", {}, seed=0)._constant_liar


# --- ask / tell through the journal -----------------------------------------------------------

SMALL = {"x": Dist("uniform", low=-5.0, high=5.0), "y": Dist("uniform", low=-5.0, high=5.0)}


def objective(p: dict) -> float:
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2


def test_ask_is_stable_across_requeue_and_new_after_finish(tmp_path):
    manifest = make_manifest(SMALL)
    sweep = write_sweep(tmp_path, manifest)
    trial = manifest["trials"][0]
    first = bayes.ask(sweep, manifest, trial)
    number = bayes.read_trial_file(bayes.trial_file(sweep, trial["id"]))["number"]
    # A requeued task (same trial, new process) gets the same Optuna trial and params back.
    assert bayes.ask(sweep, manifest, trial) == first
    assert bayes.read_trial_file(bayes.trial_file(sweep, trial["id"]))["number"] == number
    assert len(bayes.load_study(sweep, manifest).trials) == 1
    # Once told failed, a resubmitted trial asks afresh.
    bayes.tell(sweep, manifest, trial, "failed", None)
    bayes.ask(sweep, manifest, trial)
    assert bayes.read_trial_file(bayes.trial_file(sweep, trial["id"]))["number"] != number


def test_tell_records_each_outcome(tmp_path):
    manifest = make_manifest(SMALL)
    sweep = write_sweep(tmp_path, manifest)
    outcomes = [("completed", 2.5), ("pruned", None), ("failed", None), ("diverged", None), ("completed", None)]
    for trial, (status, value) in zip(manifest["trials"], outcomes):
        bayes.ask(sweep, manifest, trial)
        bayes.tell(sweep, manifest, trial, status, value)
    bayes.tell(sweep, manifest, manifest["trials"][0], "completed", 9.0)   # twice: no error, no change
    states = [(t.state.name, t.value) for t in bayes.load_study(sweep, manifest).trials]
    assert states == [("COMPLETE", 2.5), ("PRUNED", None), ("FAIL", None), ("FAIL", None), ("FAIL", None)]
    user = bayes.load_study(sweep, manifest).trials[0].user_attrs
    assert user == {"sweep_trial_id": "t000", "sweep_trial_index": 0}


def test_metric_value_reads_flat_and_nested_names():
    m = {"metric": "eval.acc"}
    assert bayes.metric_value(m, {"eval.acc": 0.5}) == 0.5
    assert bayes.metric_value(m, {"eval": {"acc": "0.25"}}) == 0.25
    assert bayes.metric_value(m, {"eval": {"acc": float("nan")}}) is None
    assert bayes.metric_value({"metric": None}, {"x": 1}) is None


def test_center_is_the_first_point(tmp_path):
    space = {"x": Dist("uniform", low=-5.0, high=5.0, center=1.25), "b": Dist("pow2", low=8, high=64, center=16)}
    manifest = make_manifest(space)
    sweep = write_sweep(tmp_path, manifest)
    first = bayes.ask(sweep, manifest, manifest["trials"][0])
    second = bayes.ask(sweep, manifest, manifest["trials"][1])
    assert first == {"x": 1.25, "b": 16}
    assert second != first


@pytest.mark.parametrize("sampler", ["gp", "tpe"])
def test_sequential_bayes_beats_its_random_start(tmp_path, sampler):
    manifest = make_manifest(SMALL, n=20, sampler=sampler, options={"n_startup": 5, "deterministic": True})
    sweep = write_sweep(tmp_path, manifest)
    values = []
    for trial in manifest["trials"]:
        p = bayes.ask(sweep, manifest, trial)
        values.append(objective(p))
        bayes.tell(sweep, manifest, trial, "completed", values[-1])
    assert min(values[5:]) < min(values[:5])
    assert min(values) < 1.0


def _ask_in_process(args):
    sweep, manifest, trial = args
    return bayes.ask(sweep, manifest, trial)


@pytest.mark.timeout(180)
def test_concurrent_asks_are_distinct_and_the_journal_survives(tmp_path):
    """8 tasks ask at once (separate processes) while the GP is already fitted: the ask lock
    lets each see the others' running points, and the journal replays every trial."""
    manifest = make_manifest(SMALL, n=12)
    sweep = write_sweep(tmp_path, manifest)
    for trial in manifest["trials"][:4]:       # past the GP's 3 start-up trials
        bayes.tell(sweep, manifest, trial, "completed", objective(bayes.ask(sweep, manifest, trial)))
    jobs = [(str(sweep), manifest, t) for t in manifest["trials"][4:12]]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        points = pool.map(_ask_in_process, jobs)
    assert len({(p["x"], p["y"]) for p in points}) == 8
    numbers = [bayes.read_trial_file(bayes.trial_file(sweep, t["id"]))["number"] for t in manifest["trials"]]
    assert sorted(numbers) == list(range(12))
    trials = bayes.load_study(sweep, manifest).trials
    assert [t.state.name for t in trials].count("RUNNING") == 8
    assert not os.path.exists(os.path.join(sweep, bayes.ASK_LOCK + ".lock"))
