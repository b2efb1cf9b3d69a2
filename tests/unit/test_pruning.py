"""Early stopping: pruners from the manifest, report() through the journal, GPU-hours saved."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from jobs import bayes
from jobs import manifest as mf
from jobs import runtime
from launcher.search import optuna_space as osp

ROOT = Path(__file__).resolve().parents[2]


def pruned_manifest(kind: str, n: int, **pruner) -> dict:
    trials = [{"id": f"p{i:03d}", "index": i, "stage": 0, "params": {"q": i}, "overrides": {"q": i}, "replica": i}
              for i in range(n)]
    return {"schema": 1, "name": f"prune_{kind}", "method": "random", "metric": "acc", "goal": "maximize",
            "command": ["true"], "space": {}, "trials": trials, "submissions": [],
            "pruner": {"kind": kind, "eta": 3, **pruner}}


def curve(quality: float, step: int) -> float:
    """A learning curve that rises towards `quality`."""
    return quality * (1 - 0.8 ** step)


def run_in_process(sweep: Path, manifest: dict, trial: dict, quality: float, steps: int, monkeypatch) -> int | None:
    """What a trainer does: report at every eval, stop when told. Returns the step it stopped at."""
    bayes.ask(sweep, manifest, trial)
    monkeypatch.setenv("SWEEP_DIR", str(sweep))
    monkeypatch.setenv("SWEEP_TRIAL_DIR", str(mf.trial_dir(sweep, trial["id"])))
    bayes._open.clear()
    for step in range(1, steps + 1):
        if bayes.report(step, curve(quality, step)):
            bayes.tell(sweep, manifest, trial, "pruned", None)
            return step
    bayes.tell(sweep, manifest, trial, "completed", curve(quality, steps))
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
    for trial in manifest["trials"][:8]:           # reasonable trials, qualities 0.5 .. 0.95
        stops[trial["id"]] = run_in_process(tmp_path, manifest, trial, 0.5 + 0.45 * trial["index"] / 7, 9,
                                            monkeypatch)
    hopeless = [run_in_process(tmp_path, manifest, t, 0.01, 9, monkeypatch) for t in manifest["trials"][8:]]
    pruned = [h for h in hopeless if h is not None]
    if kind == "hyperband":
        # Hyperband keeps one bracket that never stops a trial (plain random search); a trial's
        # bracket is a hash of its number, so this is deterministic.
        assert len(pruned) >= 3, hopeless
    else:
        assert len(pruned) == 4 and all(h < 9 for h in pruned), hopeless
    assert stops["p007"] is None                   # the best trial always runs to the end
    states = [t.state.name for t in bayes.load_study(tmp_path, manifest).trials]
    assert states.count("PRUNED") >= len(pruned)
    first = manifest["trials"][8 + hopeless.index(pruned[0])]
    stored = bayes.read_trial_file(bayes.trial_file(tmp_path, first["id"]))
    assert stored["pruned_at_step"] == pruned[0] and stored["params"] == {"q": first["index"]}


def test_pruner_settings_follow_wandb_hyperband():
    s = osp.pruner_settings({"pruner": {"kind": "hyperband", "max_iter": 81, "eta": 3, "s": 2}})
    assert osp.resource_bounds(s) == (9, 81)
    s = osp.pruner_settings({"pruner": {"kind": "hyperband", "min_iter": 3, "eta": 2, "s": 3}})
    assert osp.resource_bounds(s) == (3, 24)
    assert isinstance(osp.make_pruner(s), optuna.pruners.HyperbandPruner)
    assert isinstance(osp.make_pruner(osp.pruner_settings({})), optuna.pruners.NopPruner)
    assert isinstance(osp.make_pruner(osp.pruner_settings({"pruner": {"kind": "asha"}})),
                      optuna.pruners.SuccessiveHalvingPruner)
    assert mf.uses_study({"method": "random", "pruner": {"kind": "median"}})
    assert not mf.uses_study({"method": "random", "pruner": {"kind": "none"}})
    assert mf.uses_study({"method": "bayes"})


def test_gpu_hours_saved():
    manifest = {"pruner": {"kind": "asha", "max_iter": 100}, "cluster": {"gres": "gpu:2"}}
    results = [
        {"status": "pruned", "runtime_s": 3600.0, "results": {"pruned_at_step": 25}},   # 3 h more at 1 GPU
        {"status": "pruned", "runtime_s": 360.0, "results": {"pruned_at_step": 50}},    # 0.1 h more
        {"status": "completed", "runtime_s": 9999.0, "results": {"last_step": 100}},
        {"status": "pruned", "runtime_s": 100.0, "results": {}},                         # step unknown: skipped
    ]
    assert bayes.gpu_hours_saved(manifest, results) == pytest.approx(2 * 3.1)
    # Without max_iter, the longest run of the sweep is the full length.
    assert bayes.gpu_hours_saved({"pruner": {"kind": "median"}}, results) == pytest.approx(3.1)
    assert bayes.gpu_hours_saved({"pruner": {"kind": "median"}}, []) == 0.0


def test_runtime_report_outside_a_sweep_is_free(tmp_path):
    code = ("import sys; from jobs import runtime; assert runtime.report(3, 0.5) is False; "
            "assert 'optuna' not in sys.modules; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "SWEEP_TRIAL_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_write_metrics_records_the_step_it_was_pruned_at(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    monkeypatch.setenv("SWEEP_RESULT_FILE", str(target))
    monkeypatch.setenv("SWEEP_TRIAL_DIR", str(tmp_path))      # no optuna.json: report records only
    monkeypatch.setattr(runtime, "_last_step", None)
    assert runtime.report(7, 0.1) is False
    runtime.write_metrics({"acc": 0.1}, status="pruned")
    assert json.loads(target.read_text()) == {"acc": 0.1, "last_step": 7, "pruned_at_step": 7, "status": "pruned"}


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
    manifest = pruned_manifest("median", 5, min_iter=1, max_iter=9)
    qualities = [0.8, 0.9, 0.85, 0.95, 0.05]
    for trial, q in zip(manifest["trials"], qualities):
        trial["params"] = trial["overrides"] = {"quality": q}
    manifest["command"] = [sys.executable, str(program)]
    manifest["workdir"] = str(ROOT)
    mf.write_manifest(sweep, manifest)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    for trial in manifest["trials"]:
        subprocess.run([sys.executable, "-m", "jobs.run", str(sweep), str(trial["index"])], cwd=ROOT, env=env,
                       capture_output=True, check=False)
    results = [json.loads(mf.result_path(sweep, t["id"]).read_text()) for t in manifest["trials"]]
    assert [r["status"] for r in results] == ["completed"] * 4 + ["pruned"]
    assert results[4]["results"]["pruned_at_step"] < 9
    assert results[4]["hyperparameters"] == {"quality": 0.05}
    study = bayes.load_study(sweep, manifest)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4 + ["PRUNED"]
    assert study.trials[3].value == pytest.approx(0.95 * (1 - 0.7 ** 9))
    assert bayes.gpu_hours_saved(manifest, results) > 0
    # `sweep status` shows the saving beside the counts.
    from jobs.state import collect

    shown = collect(sweep, manifest).to_dict()
    assert shown["counts"]["pruned"] == 1
    assert shown["gpu_hours_saved"] == pytest.approx(bayes.gpu_hours_saved(manifest, results))
