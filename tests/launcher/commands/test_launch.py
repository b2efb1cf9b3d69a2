"""`sweep launch --executor local`: real processes, real result files."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs.errors import UserError
from launcher.cli import main

PY = sys.executable

PROGRAM = """
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
if args.get("fail") == "true":
    sys.exit("boom")
ckpt = os.environ["SWEEP_CHECKPOINT_DIR"]
open(os.path.join(ckpt, "model.pt"), "w").write(args.get("steps", ""))
parent = args.get("checkpoint_path")
resumed = open(os.path.join(parent, "model.pt")).read() if parent else None
json.dump({"score": float(args.get("a", 0)) * 2, "argv": sys.argv[1:], "resumed_from": resumed},
          open(os.environ["SWEEP_RESULT_FILE"], "w"))
"""


@pytest.fixture()
def program(tmp_path: Path) -> str:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return f"{PY} {path}"


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def results(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("trials/*/result.json")}


def test_grid_of_four_every_trial_one_result(tmp_path, program, capsys):
    sweep = tmp_path / "sweep"
    rc = main(["launch", "--grid", "a=1,2", "b=x,y", "c=5", "--executor", "local", "--dir", str(sweep),
               "--max-parallel", "2", "--command", program, "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["trials"].values()) == {"completed"}
    manifest = mf.read_manifest(sweep)
    assert len(manifest.trials) == 4 and manifest.submissions[0].executor == "local"
    res = results(sweep)
    assert sorted(res) == sorted(t.id for t in manifest.trials)
    for t in manifest.trials:
        r = res[t.id]
        assert r["status"] == "completed" and r["hyperparameters"] == t.params
        assert r["results"]["argv"] == [f"{k}={v}" for k, v in t.overrides.items()]
    assert (sweep / "sweep.yaml").read_text().startswith("# sweep launch --grid")


def test_hostile_values_never_reach_a_shell(tmp_path, program):
    pwned = tmp_path / "pwned"
    spec = write_spec(tmp_path, f"""
name: hostile
grid:
  b: ["$(touch {pwned})", "'; touch {pwned}; echo '", "`touch {pwned}`"]
""")
    sweep = tmp_path / "sweep"
    assert main(["launch", str(spec), "--executor", "local", "--dir", str(sweep), "--command", program,
                 "--json"]) == 0
    assert not pwned.exists()
    got = sorted(r["results"]["argv"][0] for r in results(sweep).values())
    assert got == sorted(f"b={v}" for v in [f"$(touch {pwned})", f"'; touch {pwned}; echo '", f"`touch {pwned}`"])


def test_progressive_stages_run_after_parent_with_its_checkpoint(tmp_path, program, capsys):
    spec = write_spec(tmp_path, """
name: prog
grid:
  a: [1, 2]
stages:
  key: steps
  values: [4, 8]
""")
    sweep = tmp_path / "sweep"
    assert main(["launch", str(spec), "--executor", "local", "--dir", str(sweep), "--command", program,
                 "--max-parallel", "4"]) == 0
    assert "completed" in capsys.readouterr().out          # the results table
    manifest = mf.read_manifest(sweep)
    res = results(sweep)
    assert len(res) == 4
    for t in manifest.trials:
        if t.parent:
            assert res[t.id]["results"]["resumed_from"] == "4"      # parent's checkpoint, stage 0 value
    assert [s.stage for s in manifest.submissions] == [0, 1] and len({s.pid for s in manifest.submissions}) == 1


def test_child_of_failed_parent_is_skipped(tmp_path, program, capsys):
    spec = write_spec(tmp_path, """
name: failing
grid:
  fail: [true, false]
stages: {key: steps, values: [1, 2]}
""")
    sweep = tmp_path / "sweep"
    rc = main(["launch", str(spec), "--executor", "local", "--dir", str(sweep), "--command", program,
               "--max-attempts", "1", "--json"])
    assert rc == 1
    statuses = sorted(json.loads(capsys.readouterr().out)["trials"].values())
    assert statuses == ["completed", "completed", "failed", "skipped"]
    assert len(results(sweep)) == 3                 # the skipped child has no result: resume redoes it


def test_detach_returns_at_once_and_trials_finish(tmp_path, program, capsys):
    sweep = tmp_path / "sweep"
    slow = tmp_path / "slow.py"
    slow.write_text("import time, runpy, sys\ntime.sleep(1.0)\nsys.argv[0] = %r\nrunpy.run_path(%r)\n"
                    % (str(tmp_path / "prog.py"), str(tmp_path / "prog.py")))
    started = time.monotonic()
    assert main(["launch", "--grid", "a=1,2", "--executor", "local", "--dir", str(sweep), "--detach",
                 "--max-parallel", "2", "--command", f"{PY} {slow}", "--json"]) == 0
    assert time.monotonic() - started < 1.0
    out = json.loads(capsys.readouterr().out)
    assert out["pid"] != os.getpid()
    deadline = time.monotonic() + 30
    while len(results(sweep)) < 2:
        assert time.monotonic() < deadline, (sweep / "logs" / "local.log").read_text()
        time.sleep(0.1)
    assert {r["status"] for r in results(sweep).values()} == {"completed"}


def test_same_dir_twice_is_refused(tmp_path, program, capsys):
    sweep = tmp_path / "sweep"
    args = ["launch", "--grid", "a=1,2", "--executor", "local", "--dir", str(sweep), "--command", program, "--json"]
    assert main(args) == 0
    assert main(args) == 2
    assert "sweep resume" in capsys.readouterr().err
    assert main(["launch", "--grid", "a=3,4", "--executor", "local", "--dir", str(sweep), "--command", program]) == 2
    assert "different sweep" in capsys.readouterr().err


def test_a_launch_that_passed_its_check_before_another_submitted_is_refused_under_the_lock(tmp_path, program,
                                                                                          monkeypatch):
    from launcher import launching, sweepdir

    opts = launching.LaunchOptions(items=["a=1,2"], grid=True, command=program, executor="local",
                                   dir=tmp_path / "sweep")
    late, first = launching.prepare(opts), launching.prepare(opts)
    sweepdir.create(late.sweep_dir, late.manifest, late.spec_text)     # `late` looked: all clear ...
    launching.launch(first)                                            # ... then `first` submitted
    monkeypatch.setattr(sweepdir, "create", lambda *a: None)           # `late` goes on from its check
    with pytest.raises(UserError, match="already launched"):
        launching.launch(late)
    assert len(mf.read_manifest(tmp_path / "sweep").submissions) == 1


def test_dry_run_json_writes_nothing(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(["launch", "--grid", "lr=0.1,0.01", "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
                 "--dry-run", "--json", "--max-parallel", "3", "seed=7"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert not sweep.exists()
    assert doc["method"] == "grid" and doc["space"]["lr"]["values"] == [0.1, 0.01]
    assert [t["argv"][-2:] for t in doc["trials"]] == [["seed=7", "lr=0.1"], ["seed=7", "lr=0.01"]]
    [sub] = doc["submissions"]
    assert sub["array"] == "0-1%3" and sub["dependency"] is None and "#SBATCH --requeue" in sub["script"]


RANDOM = "name: seeded\nmethod: random\ntrials: 5\nspace:\n  lr: {distribution: loguniform, min: 1e-5, max: 1e-2}\n"


def dry_run(tmp_path: Path, capsys, *extra: str) -> dict:
    spec = tmp_path / "random.yaml"
    spec.write_text(RANDOM)
    capsys.readouterr()
    assert main(["launch", str(spec), "--executor", "local", "--command", "true", "--dry-run", "--json",
                 "--dir", str(tmp_path / "seeded"), *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_without_a_seed_one_is_drawn_recorded_and_reused(tmp_path, capsys):
    a, b = dry_run(tmp_path, capsys), dry_run(tmp_path, capsys)
    assert a["seed_drawn"] and b["seed_drawn"] and a["seed"] != b["seed"]
    assert [t["params"] for t in a["trials"]] != [t["params"] for t in b["trials"]]   # different points
    pinned = dry_run(tmp_path, capsys, "--seed", str(a["seed"]))
    assert not pinned["seed_drawn"] and [t["params"] for t in pinned["trials"]] == [t["params"] for t in a["trials"]]
    # A launch records the seed it drew; relaunching into the same (never submitted) directory reuses it.
    from launcher import launching, sweepdir

    prep = launching.prepare(launching.LaunchOptions(items=[str(tmp_path / "random.yaml")], command="true",
                                                     executor="local", dir=tmp_path / "seeded"))
    sweepdir.create(prep.sweep_dir, prep.manifest, prep.spec_text)
    again = dry_run(tmp_path, capsys)
    assert again["seed"] == prep.manifest.settings.seed and not again["seed_drawn"]
    assert mf.read_settings(tmp_path / "seeded").seed == prep.manifest.settings.seed
