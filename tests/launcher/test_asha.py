"""The asha plan (launcher.plans.asha): every rung planned up front and chained like progressive stages,
only rung 0 submitted at launch; native `rungs:`/`eta:`; W&B hyperband for a program that checkpoints."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs.errors import UserError
from launcher.cli import main
from launcher.dialects import load_spec
from launcher.plans import expand

PY = sys.executable

NATIVE = """
name: a
method: asha
trials: 6
seed: 3
metric: score
space: {x: {distribution: uniform, min: 0, max: 1}}
rungs: {key: steps, values: [2, 4, 8]}
eta: 2
"""


def spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_rung_is_planned_and_chained_to_the_rung_below(tmp_path):
    spec = load_spec(spec_file(tmp_path, NATIVE))
    assert spec.method == "asha" and spec.stages.values == (2, 4, 8) and spec.search_options == {"eta": 2}
    trials = expand(spec)
    assert [t.index for t in trials] == list(range(18))
    by_id = {t.id: t for t in trials}
    for t in trials:
        assert t.overrides["steps"] == (2, 4, 8)[t.stage] and t.index // 6 == t.stage
        if t.stage:
            parent = by_id[t.parent]
            # Trial i of rung r+1 is trial i of rung r with the next budget: same point, its own id.
            assert parent.stage == t.stage - 1 and parent.index == t.index - 6 and parent.params == t.params
        else:
            assert t.parent is None
    assert len({t.id for t in trials}) == 18
    assert [t.id for t in expand(load_spec(spec_file(tmp_path, NATIVE)))] == [t.id for t in trials]   # stable


def test_without_trials_the_rung_0_points_are_a_grid(tmp_path):
    text = NATIVE.replace("trials: 6\n", "").replace("space: {x: {distribution: uniform, min: 0, max: 1}}",
                                                     "grid: {x: [0.1, 0.5, 0.9]}")
    trials = expand(load_spec(spec_file(tmp_path, text)))
    assert [t.params["x"] for t in trials] == [0.1, 0.5, 0.9] * 3


@pytest.mark.parametrize("change, message", [
    (("rungs: {key: steps, values: [2, 4, 8]}", "rungs: {key: steps, values: [2]}"), "at least two rungs"),
    (("rungs: {key: steps, values: [2, 4, 8]}", "rungs: {key: steps, values: [4, 2]}"), "numbers that grow"),
    (("eta: 2", "eta: 1"), "key 'eta'.*at least 2"),
    (("metric: score\n", ""), "needs a metric"),
    (("eta: 2", "eta: 2\nfixed: {steps: 3}"), "'steps' is set by both constants and rungs"),
    (("eta: 2", "eta: 2\npruner: {kind: median}"), "a pruner would stop them"),
    (("rungs:", "stages:"), "takes `rungs:`, not `stages:`"),
    (("method: asha", "method: random"), "`rungs:` is for method asha"),
    (("rungs: {key: steps, values: [2, 4, 8]}\n", ""), "method asha needs `rungs:`"),
    (("trials: 6\n", ""), "a grid of rung-0 points needs lists"),
])
def test_a_wrong_asha_file_gets_one_clear_error(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_spec(spec_file(tmp_path, NATIVE.replace(*change)))


WANDB = """
program: prog.py
method: random
run_cap: 8
metric: {name: score, goal: maximize}
early_terminate: {type: hyperband, min_iter: 2, max_iter: 8, eta: 2, checkpoint_key: ckpt, budget_key: steps}
parameters:
  x: {min: 0.0, max: 1.0}
"""


def test_wandb_hyperband_for_a_checkpointing_program_becomes_asha(tmp_path):
    spec = load_spec(spec_file(tmp_path, WANDB))
    assert spec.method == "asha" and not spec.pruner.active and spec.n_trials == 8
    assert (spec.stages.key, spec.stages.values, spec.stages.checkpoint_key) == ("steps", (2, 4, 8), "ckpt")
    assert spec.search_options["eta"] == 2 and len(expand(spec)) == 24
    # max_iter and s alone: W&B's brackets max_iter / eta**k; budget_key defaults to epochs.
    spec = load_spec(spec_file(tmp_path, WANDB.replace("min_iter: 2, max_iter: 8, eta: 2", "max_iter: 27, s: 2, eta: 3")
                               .replace(", budget_key: steps", "")))
    assert (spec.stages.key, spec.stages.values) == ("epochs", (3, 9, 27))


def test_wandb_hyperband_without_checkpoint_key_stays_the_in_process_pruner(tmp_path):
    spec = load_spec(spec_file(tmp_path, WANDB.replace(", checkpoint_key: ckpt, budget_key: steps", "")))
    assert spec.method == "random" and spec.pruner.kind == "hyperband" and spec.stages is None


@pytest.mark.parametrize("change, message", [
    (("method: random", "method: bayes"), "bayes search asks them"),
    (("max_iter: 8, ", ""), "needs its top budget"),
    (("min_iter: 2, max_iter: 8", "min_iter: 5, max_iter: 8"), "leaves one rung"),
    (("checkpoint_key: ckpt", "checkpoint_key: 'bad key'"), "not a valid parameter name"),
])
def test_wandb_asha_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_spec(spec_file(tmp_path, WANDB.replace(*change)))


def test_launch_submits_rung_0_only_and_holds_the_rest(tmp_path, capsys):
    spec = spec_file(tmp_path, NATIVE)
    assert main(["launch", str(spec), "--executor", "slurm", "--dir", str(tmp_path / "s"), "--dry-run", "--json",
                 "--command", f"{PY} prog.py"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["indices"] for s in doc["submissions"]] == ["0-5"] and doc["unsubmitted"] == ""
    assert len(doc["trials"]) == 18 and doc["held"] == "6-17"
    assert main(["launch", str(spec), "--executor", "slurm", "--dir", str(tmp_path / "s"), "--dry-run",
                 "--command", f"{PY} prog.py"]) == 0
    assert "12 trials of higher rungs held (trials 6-17)" in capsys.readouterr().out


def test_a_held_manifest_is_version_3_and_round_trips(tmp_path):
    from jobs.promote import hold_higher_rungs
    from launcher import sweepdir

    spec = load_spec(spec_file(tmp_path, NATIVE))
    m = hold_higher_rungs(sweepdir.build_manifest(spec, expand(spec), executor="local", cluster=None, workdir="."))
    assert m.held == "6-17" and m.unsubmitted == ""
    mf.write_manifest(tmp_path, m)
    on_disk = json.loads(mf.manifest_path(tmp_path).read_text())
    assert on_disk["version"] == mf.HELD_VERSION and on_disk["held"] == "6-17"
    assert mf.read_manifest(tmp_path) == m
    mf.write_manifest(tmp_path, m.replace(held=""))
    assert json.loads(mf.manifest_path(tmp_path).read_text())["version"] == mf.VERSION   # as before asha
