"""The sweep directory: what launch writes, what it refuses, how big it is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs.errors import UserError
from launcher import sweepdir
from launcher.cluster import load_profile
from launcher.dialects import load_spec
from launcher.plans import expand
from launcher.spec import Dist, SweepSpec
from launcher.trial import Trial

RANDOM_10K = """
name: big
method: random
trials: 10000
fixed: {data_path: data/sudoku-extreme-1k-aug-1000, epochs: 20000}
space:
  lr: {distribution: loguniform, min: 1e-5, max: 1e-3}
  weight_decay: {distribution: loguniform, min: 1e-6, max: 1e-1}
  arch.hidden_size: [256, 512]
  loss.feudal_loss_weight: {distribution: uniform, min: 0.0, max: 0.5}
"""


def _manifest(trials, name="s", **kw):
    spec = SweepSpec(name=name, space={"a": Dist("choice", values=(1, 2))}, command=("python", "-m", "train"))
    return sweepdir.build_manifest(spec, trials, executor="slurm", cluster=None, workdir="/w", **kw)


def test_create_writes_spec_copy_and_manifest_only(tmp_path):
    trials = [Trial(id=f"t{i}", index=i, params={"a": i}, overrides={"a": i}) for i in range(3)]
    path = sweepdir.create(tmp_path / "s", _manifest(trials, unsubmitted=[2]), "name: s\ngrid: {a: [1, 2]}\n")
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "sweep.yaml"]
    m = mf.read_manifest(path)
    assert m["schema"] == 1 and m["name"] == "s" and m["command"] == ["python", "-m", "train"]
    assert [t["id"] for t in m["trials"]] == ["t0", "t1", "t2"] and m["submissions"] == []
    assert m["unsubmitted"] == "2" and m["max_attempts"] == 3 and m["workdir"] == "/w"
    assert (path / "sweep.yaml").read_text() == "name: s\ngrid: {a: [1, 2]}\n"


def test_existing_directory_rules(tmp_path):
    trials = [Trial(id="t0", index=0)]
    m = _manifest(trials)
    sweepdir.create(tmp_path / "s", m, "x")
    sweepdir.create(tmp_path / "s", _manifest(trials), "x")     # same sweep, nothing submitted yet: fine
    sweepdir.record_submissions(tmp_path / "s", m, [{"stage": 0, "job_id": "1", "array": "0"}])
    with pytest.raises(UserError, match="sweep resume"):
        sweepdir.create(tmp_path / "s", _manifest(trials), "x")
    with pytest.raises(UserError, match="different sweep.*--dir"):
        sweepdir.create(tmp_path / "s", _manifest([Trial(id="other", index=0)]), "x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a sweep directory"):
        sweepdir.create(tmp_path / "busy", m, "x")


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "x\ny"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(UserError, match="cannot name a directory"):
        sweepdir.check_name(name)


def test_default_dir_uses_scratch(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCH", str(tmp_path))
    assert sweepdir.default_sweep_dir("abc") == tmp_path / "sweeps" / "abc"
    monkeypatch.delenv("SCRATCH")
    assert sweepdir.default_sweep_dir("abc") == Path("sweeps/abc").absolute()


def test_ten_thousand_trials_cost_under_1kb_each(tmp_path):
    spec_file = tmp_path / "big.yaml"
    spec_file.write_text(RANDOM_10K)
    spec = load_spec(spec_file)
    trials = expand(spec)
    assert len(trials) == 10_000
    manifest = sweepdir.build_manifest(spec, trials, executor="slurm", cluster=load_profile("mila").to_dict(),
                                       workdir=str(tmp_path))
    path = sweepdir.create(tmp_path / "big", manifest, RANDOM_10K)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert size / len(trials) < 1024, f"{size / len(trials):.0f} bytes per trial"
    assert not (path / "trials").exists()
    # The runner reads the manifest with plain json: the trial is at its index.
    loaded = json.loads((path / "manifest.json").read_text())
    assert loaded["trials"][1234]["index"] == 1234
