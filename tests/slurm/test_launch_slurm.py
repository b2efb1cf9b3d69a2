"""`sweep launch --executor slurm` on the real single-node test cluster (short: seconds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from jobs import manifest as mf
from launcher.cli import main
from tests.slurm.support import results, wait_for

PY = sys.executable

PROGRAM = """
import json, os, sys, time
from jobs import runtime
ctx = runtime.context()
args = dict(a.split("=", 1) for a in sys.argv[1:])
open(ctx.checkpoint_dir / "model.pt", "w").write(args.get("steps", ""))
if args.get("wait_for_signal") == "true":
    stop = runtime.StopSignal.install()
    if not (ctx.checkpoint_dir / "stopped").exists():
        open(ctx.trial_dir / "started", "w").close()
        while not stop.requested:
            time.sleep(0.05)
        (ctx.checkpoint_dir / "stopped").write_text(str(stop.signum))
        sys.exit(0)                      # checkpointed; the runner requeues us
parent = args.get("checkpoint_path")
resumed = open(os.path.join(parent, "model.pt")).read() if parent else None
runtime.write_metrics({"argv": sys.argv[1:], "resumed_from": resumed, "attempt": ctx.attempt,
                       "job": ctx.job_id})
"""


def launch(tmp_path: Path, spec_text: str, slurm_cleanup: list, *extra: str) -> tuple[Path, mf.Manifest]:
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    sweep = tmp_path / "sweep"
    argv = ["launch", str(spec), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
            "--command", f"{PY} {tmp_path / 'prog.py'}", *extra]
    assert main(argv) == 0
    manifest = mf.read_manifest(sweep)
    slurm_cleanup.extend(s.job_id for s in manifest.submissions)
    return sweep, manifest


def test_progressive_grid_with_hostile_values(tmp_path, slurm_cleanup):
    pwned = tmp_path / "pwned"
    hostile = [f"$(touch {pwned})", f"'; touch {pwned}; echo '"]
    sweep, manifest = launch(tmp_path, f"""
name: prog-slurm
grid:
  b: {json.dumps(hostile)}
stages: {{key: steps, values: [4, 8]}}
""", slurm_cleanup, "--max-parallel", "4")
    subs = manifest.submissions
    assert [s.stage for s in subs] == [0, 1] and {s.state for s in subs} == {"submitted"}
    assert subs[0].dependency is None and subs[1].dependency == f"aftercorr:{subs[0].job_id}"
    assert subs[0].array == "0-1%4" and subs[1].offset == 2
    wait_for(lambda: len(results(sweep)) == 4, 60, "4 results", poll=0.2)
    res = results(sweep)
    by_id = {t.id: t for t in manifest.trials}
    for trial_id, r in res.items():
        t = by_id[trial_id]
        assert r["status"] == "completed", r
        assert r["results"]["argv"][0] in (f"b={v}" for v in hostile)     # intact, one element
        if t.stage == 1:
            assert r["results"]["resumed_from"] == "4"                   # its own parent's checkpoint
            assert r["job"]["id"].startswith(subs[1].job_id + "_")
    assert not pwned.exists()
    # The Slurm log of each task is linked into its trial directory.
    assert all(list(mf.trial_dir(sweep, t).glob("slurm-*.out")) for t in res)


def test_usr1_checkpoints_and_requeues_then_finishes(tmp_path, slurm_cleanup):
    sweep, manifest = launch(tmp_path, """
name: requeue-slurm
grid: {wait_for_signal: [true], x: [1, 2]}
""", slurm_cleanup)
    job = manifest.submissions[0].job_id
    started = [mf.trial_dir(sweep, t.id) / "started" for t in manifest.trials]
    wait_for(lambda: all(p.exists() for p in started), 60, "both tasks to start", poll=0.2)
    for task in (0, 1):
        subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job}_{task}"], check=True)
    # Slurm holds a requeued task for cred_expire seconds (15 on the test cluster; forcing an earlier
    # start races slurmd, which kills it as "Job credential revoked").
    wait_for(lambda: len(results(sweep)) == 2, 90, "the requeued tasks to finish", poll=0.5)
    for r in results(sweep).values():
        assert r["status"] == "completed"
        assert r["job"]["attempt"] == 1 and r["results"]["attempt"] == 1      # SLURM_RESTART_COUNT
    for t in manifest.trials:
        assert (mf.trial_dir(sweep, t.id) / "checkpoints" / "stopped").read_text() == "10"   # SIGUSR1
        log = (mf.trial_dir(sweep, t.id) / "trial.log").read_text()
        assert log.count("=== attempt") == 2


def test_submitit_executor_runs_the_same_runner(tmp_path, slurm_cleanup):
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: submitit-slurm\ngrid: {a: [1, 2]}\nstages: {key: steps, values: [4, 8]}\n")
    sweep = tmp_path / "sweep"
    assert main(["launch", str(spec), "--executor", "submitit", "--cluster", "local", "--dir", str(sweep),
                 "--command", f"{PY} {tmp_path / 'prog.py'}"]) == 0
    manifest = mf.read_manifest(sweep)
    subs = manifest.submissions
    slurm_cleanup.extend(s.job_id for s in subs)
    assert [s.executor for s in subs] == ["submitit", "submitit"]
    assert subs[1].dependency == f"aftercorr:{subs[0].job_id}"
    wait_for(lambda: len(results(sweep)) == 4, 60, "4 results", poll=0.2)
    res = results(sweep)
    assert {r["status"] for r in res.values()} == {"completed"}
    stage1 = [r for r in res.values() if r["stage"] == 1]
    assert [r["results"]["resumed_from"] for r in stage1] == ["4", "4"]


def test_resources_from_the_command_line_reach_slurm(tmp_path, slurm_cleanup):
    sweep, manifest = launch(tmp_path, "name: resources\ngrid: {b: [1, 2]}\nfixed: {wait_for_signal: true}\n",
                             slurm_cleanup, "--mem", "123M", "--time", "00:07:00", "--sbatch", "comment=from-cli",
                             "--sbatch", "begin=now+1hour")
    [sub] = manifest.submissions
    from jobs import slurm

    job = slurm.scontrol_show_job(sub.job_id)       # held back by --begin: still pending, nothing ran
    assert (job["MinMemoryNode"], job["TimeLimit"], job["Comment"]) == ("123M", "00:07:00", "from-cli"), job
    assert job["JobState"] == "PENDING" and job["StartTime"] > job["SubmitTime"]
