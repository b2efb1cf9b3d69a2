"""jobs.bayes: ask/tell through the journal, requeue, concurrency, the search centre; early stopping:
report() through the journal, pruners from the sweep's settings, GPU-hours saved."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobs import bayes
from jobs import manifest as mf
from jobs.manifest import Manifest, Settings, Trial
from jobs.profile import ClusterProfile
from search.dist import Dist
from search.pruner import Pruner

ROOT = Path(__file__).resolve().parents[2]


def make_manifest(space: dict[str, Dist], *, n: int = 12, sampler: str | None = "gp", method: str = "bayes",
                  goal: str = "minimize", options: dict | None = None) -> Manifest:
    settings = Settings(name="unit", command=("true",), method=method, metric="value", goal=goal, space=space,
                        sampler=sampler, search_options=options or {"n_startup": 3})
    return Manifest(settings=settings, trials=tuple(Trial(id=f"t{i:03d}", index=i, replica=i) for i in range(n)))


def write_sweep(tmp_path, manifest: Manifest):
    mf.write_manifest(tmp_path, manifest)
    return tmp_path


# --- ask / tell through the journal -----------------------------------------------------------

SMALL = {"x": Dist("uniform", low=-5.0, high=5.0), "y": Dist("uniform", low=-5.0, high=5.0)}


def objective(p: dict) -> float:
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2


def test_ask_is_stable_across_requeue_and_new_after_finish(tmp_path):
    manifest = make_manifest(SMALL)
    sweep = write_sweep(tmp_path, manifest)
    trial = manifest.trials[0]
    first = bayes.ask(sweep, manifest.settings, trial)
    number = bayes.read_trial_file(bayes.trial_file(sweep, trial.id))["number"]
    # A requeued task (same trial, new process) gets the same Optuna trial and params back.
    assert bayes.ask(sweep, manifest.settings, trial) == first
    assert bayes.read_trial_file(bayes.trial_file(sweep, trial.id))["number"] == number
    assert len(bayes.load_study(sweep, manifest.settings).trials) == 1
    # Once told failed, a resubmitted trial asks afresh.
    bayes.tell(sweep, manifest.settings, trial, "failed", None)
    bayes.ask(sweep, manifest.settings, trial)
    assert bayes.read_trial_file(bayes.trial_file(sweep, trial.id))["number"] != number


def test_tell_records_each_outcome(tmp_path):
    manifest = make_manifest(SMALL)
    sweep = write_sweep(tmp_path, manifest)
    outcomes = [("completed", 2.5), ("pruned", None), ("failed", None), ("diverged", None), ("completed", None)]
    for trial, (status, value) in zip(manifest.trials, outcomes):
        bayes.ask(sweep, manifest.settings, trial)
        bayes.tell(sweep, manifest.settings, trial, status, value)
    bayes.tell(sweep, manifest.settings, manifest.trials[0], "completed", 9.0)   # twice: no error, no change
    states = [(t.state.name, t.value) for t in bayes.load_study(sweep, manifest.settings).trials]
    assert states == [("COMPLETE", 2.5), ("PRUNED", None), ("FAIL", None), ("FAIL", None), ("FAIL", None)]
    user = bayes.load_study(sweep, manifest.settings).trials[0].user_attrs
    assert user == {"sweep_trial_id": "t000", "sweep_trial_index": 0}


def test_center_is_the_first_point(tmp_path):
    space = {"x": Dist("uniform", low=-5.0, high=5.0, center=1.25), "b": Dist("pow2", low=8, high=64, center=16)}
    manifest = make_manifest(space)
    sweep = write_sweep(tmp_path, manifest)
    first = bayes.ask(sweep, manifest.settings, manifest.trials[0])
    second = bayes.ask(sweep, manifest.settings, manifest.trials[1])
    assert first == {"x": 1.25, "b": 16}
    assert second != first


@pytest.mark.parametrize("sampler", ["gp", "tpe"])
def test_sequential_bayes_beats_its_random_start(tmp_path, sampler):
    manifest = make_manifest(SMALL, n=20, sampler=sampler, options={"n_startup": 5, "deterministic": True})
    sweep = write_sweep(tmp_path, manifest)
    values = []
    for trial in manifest.trials:
        p = bayes.ask(sweep, manifest.settings, trial)
        values.append(objective(p))
        bayes.tell(sweep, manifest.settings, trial, "completed", values[-1])
    assert min(values[5:]) < min(values[:5])
    assert min(values) < 1.0


def _ask_in_process(args):
    sweep, settings, trial = args
    return bayes.ask(sweep, settings, trial)


@pytest.mark.timeout(180)
def test_concurrent_asks_are_distinct_and_the_journal_survives(tmp_path):
    """8 tasks ask at once (separate processes) while the GP is already fitted: the ask lock
    lets each see the others' running points, and the journal replays every trial."""
    manifest = make_manifest(SMALL, n=12)
    sweep = write_sweep(tmp_path, manifest)
    for trial in manifest.trials[:4]:       # past the GP's 3 start-up trials
        bayes.tell(sweep, manifest.settings, trial, "completed", objective(bayes.ask(sweep, manifest.settings, trial)))
    jobs = [(str(sweep), manifest.settings, t) for t in manifest.trials[4:12]]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        points = pool.map(_ask_in_process, jobs)
    assert len({(p["x"], p["y"]) for p in points}) == 8
    numbers = [bayes.read_trial_file(bayes.trial_file(sweep, t.id))["number"] for t in manifest.trials]
    assert sorted(numbers) == list(range(12))
    trials = bayes.load_study(sweep, manifest.settings).trials
    assert [t.state.name for t in trials].count("RUNNING") == 8
    assert not os.path.exists(os.path.join(sweep, bayes.ASK_LOCK + ".lock"))


# --- early stopping ---------------------------------------------------------------------------

def pruned_manifest(kind: str, n: int, params: list[dict] | None = None, **pruner) -> Manifest:
    params = params or [{"q": i} for i in range(n)]
    trials = tuple(Trial(id=f"p{i:03d}", index=i, params=params[i], overrides=params[i], replica=i) for i in range(n))
    settings = Settings(name=f"prune_{kind}", command=("true",), method="random", metric="acc",
                        pruner=Pruner(kind=kind, eta=3, **pruner))
    return Manifest(settings=settings, trials=trials)


def curve(quality: float, step: int) -> float:
    """A learning curve that rises towards `quality`."""
    return quality * (1 - 0.8 ** step)


def run_in_process(sweep: Path, settings: Settings, trial: Trial, quality: float, steps: int,
                   monkeypatch) -> int | None:
    """What a trainer does: report at every eval, stop when told. Returns the step it stopped at."""
    bayes.ask(sweep, settings, trial)
    monkeypatch.setenv("SWEEP_DIR", str(sweep))
    monkeypatch.setenv("SWEEP_TRIAL_DIR", str(mf.trial_dir(sweep, trial.id)))
    bayes._open.clear()
    for step in range(1, steps + 1):
        if bayes.report(step, curve(quality, step)):
            bayes.tell(sweep, settings, trial, "pruned", None)
            return step
    bayes.tell(sweep, settings, trial, "completed", curve(quality, steps))
    return None


@pytest.mark.parametrize("kind,settings", [
    ("hyperband", {"min_iter": 1, "max_iter": 9}),
    ("asha", {"min_iter": 1}),
    ("median", {"min_iter": 2}),
])
def test_a_hopeless_trial_is_pruned(tmp_path, monkeypatch, kind, settings):
    manifest = pruned_manifest(kind, 12, **settings)
    mf.write_manifest(tmp_path, manifest)
    stops = {}
    for trial in manifest.trials[:8]:           # reasonable trials, qualities 0.5 .. 0.95
        stops[trial.id] = run_in_process(tmp_path, manifest.settings, trial, 0.5 + 0.45 * trial.index / 7, 9,
                                         monkeypatch)
    hopeless = [run_in_process(tmp_path, manifest.settings, t, 0.01, 9, monkeypatch) for t in manifest.trials[8:]]
    pruned = [h for h in hopeless if h is not None]
    if kind == "hyperband":
        # Hyperband keeps one bracket that never stops a trial (plain random search); a trial's
        # bracket is a hash of its number, so this is deterministic.
        assert len(pruned) >= 3, hopeless
    else:
        assert len(pruned) == 4 and all(h < 9 for h in pruned), hopeless
    assert stops["p007"] is None                   # the best trial always runs to the end
    states = [t.state.name for t in bayes.load_study(tmp_path, manifest.settings).trials]
    assert states.count("PRUNED") >= len(pruned)
    first = manifest.trials[8 + hopeless.index(pruned[0])]
    stored = bayes.read_trial_file(bayes.trial_file(tmp_path, first.id))
    assert stored["pruned_at_step"] == pruned[0] and stored["params"] == {"q": first.index}


def test_gpu_hours_saved():
    settings = Settings(name="g", command=("true",), pruner=Pruner(kind="asha", max_iter=100),
                        cluster=ClusterProfile(gres="gpu:2"))
    median = Settings(name="g", command=("true",), pruner=Pruner(kind="median"))
    results = [
        {"status": "pruned", "runtime_s": 3600.0, "results": {"pruned_at_step": 25}},   # 3 h more at 1 GPU
        {"status": "pruned", "runtime_s": 360.0, "results": {"pruned_at_step": 50}},    # 0.1 h more
        {"status": "completed", "runtime_s": 9999.0, "results": {"last_step": 100}},
        {"status": "pruned", "runtime_s": 100.0, "results": {}},                         # step unknown: skipped
    ]
    assert bayes.gpu_hours_saved(settings, results) == pytest.approx(2 * 3.1)
    # Without max_iter, the longest run of the sweep is the full length.
    assert bayes.gpu_hours_saved(median, results) == pytest.approx(3.1)
    assert bayes.gpu_hours_saved(median, []) == 0.0


def test_gpu_hours_count_the_gpus_the_task_asks_for():
    # A trial of gpus_per_trial processes asks for that many GPUs (ClusterProfile.task_request), whatever
    # the profile's gres says; the GPU entry of a gres with several resources is the one counted.
    results = [{"status": "pruned", "runtime_s": 3600.0, "results": {"pruned_at_step": 25}}]   # 3 h more at 1 GPU

    def saved(**cluster) -> float:
        settings = Settings(name="g", command=("true",), pruner=Pruner(kind="asha", max_iter=100),
                            cluster=ClusterProfile(**cluster))
        return bayes.gpu_hours_saved(settings, results)

    assert saved(gres="gpu:1", gpus_per_trial=4) == pytest.approx(4 * 3)
    assert saved(gres="gpu:a100:1,tmpfs:10G", gpus_per_trial=2) == pytest.approx(2 * 3)
    assert saved(gres="tmpfs:10G,gpu:2") == pytest.approx(2 * 3)
    assert saved(gres="gpu:a100:1") == saved(gres="gpu") == saved(gres=None) == pytest.approx(3)


PROGRAM = textwrap.dedent("""
    import sys
    from jobs import runtime
    quality = float(sys.argv[1].split("=", 1)[1])
    for step in range(1, 10):
        acc = quality * (1 - 0.7 ** step)
        if runtime.report(step, acc):
            runtime.write_metrics({"acc": acc}, status="pruned")
            sys.exit(0)
    runtime.write_metrics({"acc": acc})
""")


@pytest.mark.timeout(240)
def test_pruning_through_the_task_runner(tmp_path):
    """A random sweep with a median pruner, each trial a real `python -m jobs.run` task whose
    program reports through jobs.runtime: the hopeless last trial ends pruned."""
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    qualities = [0.8, 0.9, 0.85, 0.95, 0.05]
    manifest = pruned_manifest("median", 5, [{"quality": q} for q in qualities], min_iter=1, max_iter=9)
    manifest = manifest.replace(settings=manifest.settings._replace(command=(sys.executable, str(program)),
                                                             workdir=str(ROOT)))
    mf.write_manifest(sweep, manifest)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    for trial in manifest.trials:
        subprocess.run([sys.executable, "-m", "jobs.run", str(sweep), str(trial.index)], cwd=ROOT, env=env,
                       capture_output=True, check=False)
    results = [json.loads(mf.result_path(sweep, t.id).read_text()) for t in manifest.trials]
    assert [r["status"] for r in results] == ["completed"] * 4 + ["pruned"]
    assert results[4]["results"]["pruned_at_step"] < 9
    assert results[4]["hyperparameters"] == {"quality": 0.05}
    study = bayes.load_study(sweep, manifest.settings)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4 + ["PRUNED"]
    assert study.trials[3].value == pytest.approx(0.95 * (1 - 0.7 ** 9))
    assert bayes.gpu_hours_saved(manifest.settings, results) > 0
    # `sweep status` shows the saving beside the counts.
    from jobs.state import collect

    shown = collect(sweep, manifest).to_dict()
    assert shown["counts"]["pruned"] == 1
    assert shown["gpu_hours_saved"] == pytest.approx(bayes.gpu_hours_saved(manifest.settings, results))
