"""jobs.manifest: the typed manifest round-trips, version 1 manifests still read, task files, errors."""
from __future__ import annotations

import json

import pytest

from jobs import manifest as mf
from jobs.errors import UserError
from jobs.manifest import Manifest, Settings, Stages, Submission, Trial
from jobs.profile import ClusterProfile
from search.dist import Dist
from search.pruner import Pruner

V1 = {
    "schema": 1, "name": "old", "created": "2026-11-23T10:00:00Z", "dialect": "native", "source": "s.yaml",
    "method": "grid", "metric": "acc", "goal": "maximize", "command": ["python", "-m", "train"], "executor": "local",
    "cluster": {"name": "local", "partition": "main", "max_array_size": 100000, "retired_key": 1},
    "max_attempts": 2, "workdir": "/w", "checkpoint_key": "init_from",
    "space": {"lr": {"distribution": "loguniform", "low": 1e-5, "high": 1e-3}}, "sampler": None,
    "pruner": {"kind": "none", "min_iter": None, "max_iter": None, "eta": 3, "s": None}, "search_options": {},
    "seed": 0, "launch": {"max_parallel": 2}, "fingerprint": "abc",
    "trials": [{"id": "a", "index": 0, "stage": 0, "params": {"lr": 1e-4}, "overrides": {"lr": 1e-4}},
               {"id": "b", "index": 1, "stage": 1, "params": {"lr": 1e-4}, "overrides": {"lr": 1e-4}, "parent": "a"}],
    "submissions": [{"stage": 0, "job_id": "local:4242", "array": "0", "offset": 0, "indices": "0",
                     "dependency": None, "executor": "local", "submitted": "2026-11-23T10:00:01Z"},
                    {"stage": 1, "job_id": "local:4242", "array": "1", "offset": 0, "indices": "1",
                     "dependency": "aftercorr:local", "executor": "local", "submitted": "2026-11-23T10:00:01Z"}],
    "unsubmitted": "",
}


def full_manifest() -> Manifest:
    settings = Settings(name="s", command=("python", "-m", "train"), executor="slurm", method="random", metric="acc",
                        goal="minimize", workdir="/w", max_attempts=4, pack=5,
                        stages=Stages("arch.halt_max_steps", (4, 8), "ckpt"),
                        space={"lr": Dist("loguniform", low=1e-5, high=1e-3), "n": Dist("pow2", low=2, high=8)},
                        sampler="tpe", pruner=Pruner(kind="asha", min_iter=1, eta=2), search_options={"n": 1},
                        seed=17, cluster=ClusterProfile(name="c", gres="gpu:2"),
                        logging={"wandb_project": "p"}, launch={"max_parallel": 3}, fingerprint="f")
    trials = (Trial(id="t0", index=0, params={"lr": 1e-4}, overrides={"lr": 1e-4}, environment="easy"),
              Trial(id="t1", index=1, stage=1, parent="t0", variant="v", replica=2))
    subs = (Submission(stage=0, indices="0", executor="slurm", token="ab", job_id="7", array="0%2"),
            Submission(stage=1, indices="1", executor="slurm", token="cd", state="pending", offset=1,
                       submitted="2026-12-04T00:00:00Z"))
    return Manifest(settings=settings, trials=trials, submissions=subs, unsubmitted="3-5")


def test_round_trip_through_the_file(tmp_path):
    m = full_manifest()
    mf.write_manifest(tmp_path, m)
    assert mf.read_manifest(tmp_path) == m
    assert json.loads(mf.manifest_path(tmp_path).read_text())["version"] == mf.VERSION
    assert mf.read_settings(tmp_path) == m.settings
    assert m.settings.checkpoint_key == "ckpt" and m.settings.uses_study and m.settings.max_parallel == 3


def test_version_1_manifests_still_read(tmp_path):
    mf.manifest_path(tmp_path).write_text(json.dumps(V1))
    m = mf.read_manifest(tmp_path)
    assert m.name == "old" and m.settings.max_attempts == 2 and m.settings.checkpoint_key == "init_from"
    assert [s.pid for s in m.submissions] == [4242, 4242] and all(s.job_id is None for s in m.submissions)
    assert [s.dependency for s in m.submissions] == [None, None]
    assert m.settings.cluster.partition == "main" and m.trials[1].parent == "a"
    assert m.settings.space["lr"] == Dist("loguniform", low=1e-5, high=1e-3)
    mf.write_manifest(tmp_path, m)                     # written back as version 2
    assert mf.read_manifest(tmp_path) == m


def test_indices_and_task_ids_of_submissions():
    m = full_manifest()
    assert m.latest_submissions() == {0: m.submissions[0], 1: m.submissions[1]}
    assert m.job_ids() == ["7"] and m.unsubmitted_indices() == [3, 4, 5]
    assert m.submissions[0].task_ids()[0] == "7_0" and m.submissions[1].task_ids() == {}   # no job id yet
    assert m.trial_at(1).id == "t1"
    with pytest.raises(KeyError):
        m.trial_at(9)


def test_array_task_files_hold_each_task_on_its_own_line(tmp_path):
    settings = full_manifest().settings
    tasks = {0: [Trial(id="a", index=10)], 1: [Trial(id="b", index=11), Trial(id="c", index=12)],
             5: [Trial(id="d", index=20)]}
    mf.write_array_file(tmp_path, "beef", settings, tasks)
    assert mf.read_array_task(tmp_path, "beef", 1) == (settings, tasks[1])
    assert mf.read_array_task(tmp_path, "beef", 5)[1] == tasks[5]
    with pytest.raises(KeyError):
        mf.read_array_task(tmp_path, "beef", 3)


@pytest.mark.parametrize("content,match", [
    (None, "is not a sweep directory"), ("{not json", "not valid JSON"), ("[1, 2]", "not a slurmsweep manifest"),
    (json.dumps({"version": 99, "trials": []}), "newer slurmsweep"),
])
def test_what_is_not_a_manifest_is_one_clear_error(tmp_path, content, match):
    if content is not None:
        mf.manifest_path(tmp_path).write_text(content)
    with pytest.raises(UserError, match=match):
        mf.read_manifest(tmp_path)


def test_a_file_given_as_the_sweep_directory(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text("name: x\n")
    with pytest.raises(UserError, match="is not a directory"):
        mf.read_manifest(f)
