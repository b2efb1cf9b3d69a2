"""`sweep status|resume|cancel` against the real single-node Slurm cluster."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


from jobs import manifest as mf
from jobs import slurm
from jobs.state import collect
from launcher.cli import main
from tests.slurm.support import results, wait_for

PY = sys.executable

# The swept program: `steps` tenths of a second of work; `hold` (a file next to the sweep) keeps
# it working until the test removes it; `fail_x` crashes that trial until a `fixed` file exists.
PROGRAM = r"""
import os, sys, time
from jobs import runtime
ctx = runtime.context()
args = dict(a.split("=", 1) for a in sys.argv[1:])
root = os.path.dirname(os.environ["SWEEP_DIR"])
flag = lambda name: os.path.exists(os.path.join(root, name))
with open(os.path.join(root, "runs.log"), "a") as f:
    f.write(f"{ctx.trial_id} {ctx.attempt}\n")
if args.get("fail_x") == args.get("x") and not flag("fixed"):
    sys.exit("crash on purpose")
stop = runtime.StopSignal.install()
open(ctx.trial_dir / "started", "a").write(f"{ctx.attempt}\n")
count = 0
while flag("hold") or count < int(args.get("steps", "0")):
    if stop.requested:
        sys.exit(0)
    time.sleep(0.1)
    count += 1
runtime.write_metrics({"acc": float(args.get("x", 0)), "attempt": ctx.attempt, "job": ctx.job_id})
"""


def launch(tmp_path: Path, spec_text: str, cleanup: list, *extra: str) -> Path:
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    sweep = tmp_path / "sweep"
    assert main(["launch", str(spec), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
                 "--command", f"{PY} {tmp_path / 'prog.py'}", *extra]) == 0
    track(sweep, cleanup)
    return sweep


def track(sweep: Path, cleanup: list) -> None:
    for s in mf.read_manifest(sweep).submissions:
        if s.job_id and s.job_id not in cleanup:
            cleanup.append(s.job_id)


def status_json(sweep: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(sweep), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def resume_json(sweep: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["resume", str(sweep), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def settled(sweep: Path) -> bool:
    return not collect(sweep).active()


def test_status_makes_one_sacct_and_one_squeue_call_and_resume_relinks_a_failed_parent(
        tmp_path, slurm_cleanup, capsys, monkeypatch):
    sweep = launch(tmp_path, """
name: resume-failed-parent
metric: acc
grid: {x: [0, 1, 2, 3]}
fixed: {fail_x: 2}
stages: {key: steps, values: [1, 2]}
""", slurm_cleanup, "--max-attempts", "1")
    wait_for(lambda: settled(sweep) and len(results(sweep)) == 7, 90, "7 results and the stuck child")

    calls = Counter()
    for name in ("sacct", "squeue"):
        real = getattr(slurm, name)
        monkeypatch.setattr(slurm, name, lambda *a, _real=real, _name=name, **k: (calls.update([_name]),
                                                                                    _real(*a, **k))[1])
    doc = status_json(sweep, capsys)
    assert calls == {"sacct": 1, "squeue": 1}
    monkeypatch.undo()
    by_index = {t["index"]: t for t in doc["trials"]}
    assert doc["counts"] == {"completed": 6, "failed": 1, "pending": 1}, doc["counts"]
    assert by_index[2]["state"] == "failed" and by_index[6]["reason"] == "DependencyNeverSatisfied"
    assert doc["active"] == 0

    (tmp_path / "fixed").touch()
    plan = resume_json(sweep, capsys, "--dry-run")
    # Trial 2 failed after its attempts: left as it is, and its held child with it (blocked).
    assert plan["resubmit"] == [] and plan["kept"] == [{"index": 2, "state": "failed"}] and plan["blocked"] == [6]
    plan = resume_json(sweep, capsys, "--dry-run", "--retry-failed")
    assert [r["index"] for r in plan["resubmit"]] == [2, 6] and len(plan["cancel_stuck"]) == 1
    done = resume_json(sweep, capsys, "--retry-failed")
    track(sweep, slurm_cleanup)
    first, second = done["submissions"]
    assert (first["indices"], second["indices"]) == ("2", "6")
    assert second["dependency"] == f"aftercorr:{first['job_id']}"
    wait_for(lambda: len(results(sweep)) == 8 and settled(sweep), 60, "all 8 results")
    res = results(sweep)
    assert {r["status"] for r in res.values()} == {"completed"}
    runs = Counter(line.split()[0] for line in (tmp_path / "runs.log").read_text().splitlines())
    # Trial 2 ran twice (crash, then fixed); every other trial once, its held child included.
    assert sorted(runs.values()) == [1] * 7 + [2] and runs[by_index[2]["id"]] == 2
    assert status_json(sweep, capsys)["counts"] == {"completed": 8}
    print(f"injected: trial 2 crashes (max attempts 1); survived: {len(res)}/8 results, 0 lost, 0 duplicated")


def test_resume_links_children_to_parents_still_running(tmp_path, slurm_cleanup, capsys):
    (tmp_path / "hold").touch()
    sweep = launch(tmp_path, """
name: resume-running-parents
grid: {x: [0, 1, 2]}
stages: {key: steps, values: [1, 2]}
""", slurm_cleanup)
    subs = mf.read_manifest(sweep).submissions
    parents, children = subs[0].job_id, subs[1].job_id
    wait_for(lambda: len(list(sweep.glob("trials/*/started"))) == 3, 60, "stage 0 to start")
    slurm.scancel([children])  # someone cancelled the second stage's array
    wait_for(lambda: status_json(sweep, capsys)["counts"] == {"running": 3, "cancelled": 3}, 30,
             "the cancelled array to show")
    done = resume_json(sweep, capsys, "--retry-cancelled")
    track(sweep, slurm_cleanup)
    assert [r["index"] for r in done["resubmit"]] == [3, 4, 5]
    [new] = done["submissions"]
    # Each child at its parent's task id, after the parents' *existing* array.
    assert new["dependency"] == f"aftercorr:{parents}" and new["array"].split("%")[0] == "0-2"
    assert new["offset"] == 3
    assert status_json(sweep, capsys)["counts"] == {"running": 3, "pending": 3}
    (tmp_path / "hold").unlink()
    wait_for(lambda: len(results(sweep)) == 6, 60, "6 results")
    res = results(sweep)
    assert {r["status"] for r in res.values()} == {"completed"}
    assert sorted(r["job"]["id"].split("_")[0] for r in res.values()) == [parents] * 3 + [new["job_id"]] * 3


def test_cancel_then_resume_finishes_without_rerunning(tmp_path, slurm_cleanup, capsys):
    sweep = launch(tmp_path, """
name: cancel-resume
grid: {x: [0, 1, 2, 3, 4, 5]}
fixed: {steps: 15}
""", slurm_cleanup, "--max-parallel", "2")
    wait_for(lambda: len(results(sweep)) >= 2, 60, "two results")
    capsys.readouterr()
    assert main(["cancel", str(sweep)]) == 0
    assert "cancelled Slurm job(s)" in capsys.readouterr().out
    wait_for(lambda: settled(sweep), 30, "nothing active after cancel")
    before = {t: r for t, r in results(sweep).items() if r["status"] == "completed"}
    # Running trials record their cancel; squeue forgets the pending ones at once and slurmdbd
    # records them a moment later (accounting is eventually consistent).
    wait_for(lambda: sum(status_json(sweep, capsys)["counts"].get(k, 0) for k in ("completed", "cancelled")) == 6,
             30, "sacct to record the cancellation")
    doc = status_json(sweep, capsys)
    assert doc["counts"].get("completed", 0) == len(before) and doc["active"] == 0, doc["counts"]
    assert all(t["cause"]["kind"] == "cancelled" for t in doc["trials"] if t["state"] == "cancelled")
    # Cancelled means cancelled: nothing came back by itself, and plain resume leaves them alone.
    assert resume_json(sweep, capsys)["resubmit"] == []
    done = resume_json(sweep, capsys, "--retry-cancelled")
    track(sweep, slurm_cleanup)
    assert {r["id"] for r in done["resubmit"]} == {t["id"] for t in doc["trials"]} - set(before)
    wait_for(lambda: len([r for r in results(sweep).values() if r["status"] == "completed"]) == 6
             and settled(sweep), 60, "6 results")
    after = results(sweep)
    assert all(after[t] == before[t] for t in before)  # finished trials untouched
    assert {r["status"] for r in after.values()} == {"completed"}
    runs = Counter(line.split()[0] for line in (tmp_path / "runs.log").read_text().splitlines())
    assert all(runs[t] == 1 for t in before)            # a finished trial never ran again
    print(f"injected: sweep cancel after {len(before)} results; survived: 6/6 results, 0 lost, 0 duplicated")
