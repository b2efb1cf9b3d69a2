"""`sweep status|resume|cancel` on local-executor sweeps: real processes, no Slurm."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from jobs import manifest as mf
from jobs.manifest import Manifest, Settings, Trial
from launcher.cli import main

PROGRAM = """
import json, os, sys, time
from jobs import runtime
ctx = runtime.context()
args = dict(a.split("=", 1) for a in sys.argv[1:])
x = int(args["x"])
with open(os.path.join(os.environ["SWEEP_DIR"], "..", "runs.log"), "a") as f:
    f.write(f"{x}\\n")
if x == 3:
    runtime.write_metrics({"loss": float("nan")}, status="diverged")
    sys.exit(0)
if x == 2 and not os.path.exists(os.path.join(os.environ["SWEEP_DIR"], "..", "fixed")):
    sys.exit("crash on purpose")
if args.get("wait") == "true":
    stop = runtime.StopSignal.install()
    open(os.path.join(ctx.trial_dir, "started"), "w").close()
    while not stop.requested:
        time.sleep(0.05)
    sys.exit(0)
runtime.write_metrics({"acc": x / 10})
"""


def launch(tmp_path: Path, grid: str, *extra: str) -> Path:
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: local-status\nmetric: acc\ngrid:\n  {grid}\n")
    sweep = tmp_path / "sweep"
    main(["launch", str(spec), "--executor", "local", "--dir", str(sweep), "--max-attempts", "1",
          "--max-parallel", "2", "--command", f"{sys.executable} {tmp_path / 'prog.py'}", "--json", *extra])
    return sweep


def status_json(sweep: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(sweep), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_then_resume_reruns_only_what_failed(tmp_path, capsys):
    sweep = launch(tmp_path, "x: [0, 1, 2, 3]")
    doc = status_json(sweep, capsys)
    states = {t["params"]["x"]: t["state"] for t in doc["trials"]}
    assert states == {0: "completed", 1: "completed", 2: "failed", 3: "diverged"}
    assert doc["counts"] == {"completed": 2, "failed": 1, "diverged": 1} and doc["active"] == 0
    assert doc["trials"][1]["metric"] == 0.1
    # The program's own last line says why it failed, in the error and in the cause.
    assert doc["trials"][2]["error"] == "exit code 1: crash on purpose"
    assert doc["trials"][2]["cause"]["kind"] == "program" and doc["trials"][0]["cause"] is None

    # A failure that used up its attempts stays as it is, unless asked (it would likely fail again).
    assert main(["resume", str(sweep), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["resubmit"] == [] and plan["kept"] == [{"index": 2, "state": "failed"}]
    assert main(["resume", str(sweep), "--dry-run", "--json", "--retry-failed"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in plan["resubmit"]] == [2] and plan["dry_run"]
    assert len(mf.read_manifest(sweep).submissions) == 1  # dry run changed nothing

    (tmp_path / "fixed").touch()
    runs_before = (tmp_path / "runs.log").read_text().split()
    assert main(["resume", str(sweep), "--retry-failed"]) == 0
    runs_after = (tmp_path / "runs.log").read_text().split()
    assert runs_after[len(runs_before):] == ["2"]  # exactly the failed trial ran again
    doc = status_json(sweep, capsys)
    assert doc["counts"] == {"completed": 3, "diverged": 1}
    assert sum(1 for _ in sweep.glob("trials/*/result.json")) == 4

    # Nothing left to do: resume is a no-op and says so.
    capsys.readouterr()
    assert main(["resume", str(sweep)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert (tmp_path / "runs.log").read_text().split() == runs_after

    # The table: every state visible, the summary line, the best trial.
    assert main(["status", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "diverged" in out and "4/4 ended" in out and "best acc: 0.2" in out


def test_detached_resume_shows_running_and_cancel_stops_it(tmp_path, capsys):
    # A sweep directory as a killed launcher leaves it: nothing submitted; resume starts both trials.
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: local-cancel\nmetric: acc\ngrid:\n  x: [0, 1]\nfixed:\n  wait: true\n")
    sweep = tmp_path / "sweep2"
    from launcher import launching, sweepdir

    opts = launching.LaunchOptions(items=[str(spec)], command=f"{sys.executable} {tmp_path / 'prog.py'}")
    spec_obj, text = launching.load_spec(opts)
    trials = launching.plan_trials(spec_obj)
    manifest = sweepdir.build_manifest(spec_obj, trials, executor="local", cluster=None, workdir=str(tmp_path),
                                       max_attempts=1)
    sweepdir.create(sweep, manifest.replace(unsubmitted=mf.compact_ranges(t.index for t in trials)), text)
    assert {t["state"] for t in status_json(sweep, capsys)["trials"]} == {"unsubmitted"}
    assert main(["status", str(sweep)]) == 0            # nothing queued will submit them: say what will
    assert f"2 trial(s) wait for queue room and no task of the sweep is queued to submit them: `sweep resume " \
           f"{sweep}`" in " ".join(capsys.readouterr().out.split())

    assert main(["resume", str(sweep), "--detach", "--max-parallel", "2", "--json"]) == 0
    pid = json.loads(capsys.readouterr().out)["pid"]
    deadline = time.monotonic() + 30
    while len(list(sweep.glob("trials/*/started"))) < 2:
        assert time.monotonic() < deadline, "trials did not start"
        time.sleep(0.1)
    doc = status_json(sweep, capsys)
    assert [t["state"] for t in doc["trials"]] == ["running", "running"] and doc["active"] == 2
    # Running trials are never resubmitted.
    assert main(["resume", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resubmit"] == []

    assert main(["cancel", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["local_pids"] == [pid]
    deadline = time.monotonic() + 30
    while status_json(sweep, capsys)["active"]:
        assert time.monotonic() < deadline, "cancel did not stop the trials"
        time.sleep(0.1)
    doc = status_json(sweep, capsys)
    # `sweep cancel` is a cancel, not a preemption: nothing requeues, and resume leaves them alone ...
    assert [t["state"] for t in doc["trials"]] == ["cancelled", "cancelled"]
    assert all(t["cause"]["kind"] == "cancelled" for t in doc["trials"])
    assert main(["resume", str(sweep), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resubmit"] == []
    # ... unless asked.
    assert main(["resume", str(sweep), "--dry-run", "--json", "--retry-cancelled"]) == 0
    assert len(json.loads(capsys.readouterr().out)["resubmit"]) == 2


def test_big_sweep_table_hides_completed_rows(tmp_path, capsys):
    trials = tuple(Trial(id=f"t{i:05d}", index=i, params={"lr": i / 1000}) for i in range(500))
    m = Manifest(settings=Settings(name="big", command=("true",), metric="acc", goal="minimize"), trials=trials)
    mf.write_manifest(tmp_path, m)
    for i in range(0, 500, 5):  # every fifth completed; the rest unsubmitted
        d = mf.trial_dir(tmp_path, f"t{i:05d}")
        d.mkdir(parents=True)
        mf.result_path(tmp_path, f"t{i:05d}").write_text(json.dumps({"status": "completed", "results": {"acc": i}}))
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rows hidden" in out and "--all" in out and "best acc: 0 " in out
    assert "100/500 ended" in out
    assert main(["status", str(tmp_path), "--all"]) == 0
    assert "rows hidden" not in capsys.readouterr().out


def test_trial_ids_stay_whole_in_a_narrow_terminal_and_list_finds_the_sweep(tmp_path, capsys, monkeypatch):
    sweep = launch(tmp_path, "x: [0, 1, 2, 3]")
    ids = [t.id for t in mf.read_manifest(sweep).trials]
    for width in ("60", "40"):
        monkeypatch.setenv("COLUMNS", width)
        capsys.readouterr()
        assert main(["status", str(sweep)]) == 0
        out = capsys.readouterr().out
        assert all(i in out for i in ids), out                  # the one thing users copy, never cut
        assert max(len(line) for line in out.splitlines()) <= int(width)
        assert "exit code 1: crash on purpose" in " ".join(out.split())   # the cause, not cut either
    # Too narrow for a readable note column: each note goes under the table, after its trial.
    assert f"2 {ids[2]}: exit code 1" in out
    # `sweep list` under the sweep's parent: this sweep, with its progress.
    capsys.readouterr()
    assert main(["list", str(tmp_path), "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert Path(entry["sweep_dir"]) == sweep and entry["trials"] == 4, entry
