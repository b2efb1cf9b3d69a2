"""`python -m jobs.run` on real child processes (no Slurm: the local attempt loop)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import run
from launcher import sweepdir
from launcher.spec import SweepSpec
from jobs.manifest import Trial

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


def make_sweep(tmp_path: Path, program: str, trials: list[Trial] | None = None, *, max_attempts: int = 1,
               name: str = "runner") -> Path:
    script = tmp_path / "prog.py"
    script.write_text(program)
    spec = SweepSpec(name=name, command=(PY, str(script)))
    trials = trials or [Trial(id="t0", index=0, params={"lr": 0.1}, overrides={"lr": 0.1, "tag": "a b"})]
    manifest = sweepdir.build_manifest(spec, trials, executor="local", cluster=None, workdir=str(tmp_path),
                                       max_attempts=max_attempts)
    return sweepdir.create(tmp_path / "sweep", manifest, "name: runner\n")


def run_task(sweep: Path, task: int, offset: int = 0, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SWEEP_"))}
    return subprocess.run([PY, "-m", "jobs.run", str(sweep), str(task), "--offset", str(offset)],
                          env=env, capture_output=True, text=True, timeout=60, **kw)


def result(sweep: Path, trial_id: str = "t0") -> dict:
    return json.loads(mf.result_path(sweep, trial_id).read_text())


WRITES_METRICS = """
import json, os, sys
from jobs import runtime
ctx = runtime.context()
assert ctx.in_sweep and ctx.trial_dir.name == os.environ["SWEEP_TRIAL_ID"]
runtime.write_metrics({"score": 0.5, "argv": sys.argv[1:], "attempt": ctx.attempt,
                       "env": {k: v for k, v in os.environ.items() if k.startswith("SWEEP_")}})
"""


def test_completed_trial_gets_one_result_with_schema(tmp_path):
    sweep = make_sweep(tmp_path, WRITES_METRICS)
    proc = run_task(sweep, 0)
    assert proc.returncode == 0, proc.stderr
    r = result(sweep)
    assert r["status"] == "completed" and r["error"] is None
    assert r["schema"] == 1 and r["sweep"] == "runner" and r["trial"] == 0 and r["trial_id"] == "t0"
    assert r["hyperparameters"] == {"lr": 0.1}
    assert r["results"]["score"] == 0.5
    assert r["results"]["argv"] == ["lr=0.1", "tag=a b"]            # one argv element per value
    env = r["results"]["env"]
    tdir = str(sweep / "trials" / "t0")
    assert env["SWEEP_DIR"] == str(sweep) and env["SWEEP_TRIAL_DIR"] == tdir
    assert env["SWEEP_RESULT_FILE"] == tdir + "/metrics.json" and env["SWEEP_CHECKPOINT_DIR"] == tdir + "/checkpoints"
    assert env["SWEEP_ATTEMPT"] == "0" and env["SWEEP_STAGE"] == "0"
    assert set(r["job"]) == {"id", "node", "attempt", "gpu"} and r["runtime_s"] >= 0
    assert r["timestamp"].endswith("Z")
    # A second start of the same task is a no-op: the result is written once.
    before = mf.result_path(sweep, "t0").stat().st_mtime_ns
    assert run_task(sweep, 0).returncode == 0
    assert mf.result_path(sweep, "t0").stat().st_mtime_ns == before


def test_failing_program_is_failed_with_the_log_tail(tmp_path):
    sweep = make_sweep(tmp_path, "import sys\nprint('loading data')\nraise RuntimeError('CUDA out of memory')\n",
                       max_attempts=2)
    proc = run_task(sweep, 0)
    assert proc.returncode == 1
    r = result(sweep)
    assert r["status"] == "failed"
    assert r["error"].startswith("exit code 1") and "RuntimeError: CUDA out of memory" in r["error"]
    assert r["job"]["attempt"] == 1                                  # retried once, then recorded
    log = (sweep / "trials" / "t0" / "trial.log").read_text()
    assert log.count("=== attempt") == 2 and "loading data" in log
    assert (sweep / "trials" / "t0" / "failures").read_text() == "2\n"


def test_failure_budget_counts_failed_attempts_only_across_starts(tmp_path):
    # Under Slurm each attempt is a new start of the task and SLURM_RESTART_COUNT also counts
    # preemptions: the budget is the failures recorded in the trial directory instead.
    sweep = make_sweep(tmp_path, "raise SystemExit(1)\n", max_attempts=3)
    tdir = sweep / "trials" / "t0"
    tdir.mkdir(parents=True)
    (tdir / "failures").write_text("2\n")            # two earlier starts failed
    assert run_task(sweep, 0).returncode == 1
    assert (tdir / "trial.log").read_text().count("=== attempt") == 1   # the third failure ends it
    assert (tdir / "failures").read_text() == "3\n"
    assert result(sweep)["status"] == "failed"


def test_exit_zero_without_metrics_is_failed(tmp_path):
    sweep = make_sweep(tmp_path, "print('forgot to write metrics')\n")
    assert run_task(sweep, 0).returncode == 1
    r = result(sweep)
    assert r["status"] == "failed" and "wrote no metrics" in r["error"]


def test_diverged_status_passes_through(tmp_path):
    sweep = make_sweep(tmp_path, "from jobs import runtime\n"
                                 "runtime.write_metrics({'lm_loss': float('nan'), 'step': 3}, status='diverged',"
                                 " error='loss is NaN at step 3')\n")
    assert run_task(sweep, 0).returncode == 3
    r = result(sweep)
    assert r["status"] == "diverged" and r["error"] == "loss is NaN at step 3"
    assert r["results"]["step"] == 3 and "status" not in r["results"]


def test_offset_maps_task_to_trial_and_parent_checkpoint_is_passed(tmp_path):
    trials = [Trial(id="p", index=0, overrides={"steps": 4}),
              Trial(id="c", index=1, stage=1, parent="p", overrides={"steps": 8})]
    sweep = make_sweep(tmp_path, WRITES_METRICS, trials)
    assert run_task(sweep, 0, offset=1).returncode == 1       # its earlier stage has not completed
    assert not mf.result_path(sweep, "c").exists()
    assert run_task(sweep, 0, offset=0).returncode == 0
    assert run_task(sweep, 0, offset=1).returncode == 0
    r = result(sweep, "c")
    assert r["stage"] == 1
    assert r["results"]["argv"] == ["steps=8", f"checkpoint_path={sweep}/trials/p/checkpoints"]


def test_stop_signal_is_forwarded_and_local_run_records_preempted(tmp_path):
    program = """
import os, sys, time
from jobs import runtime
stop = runtime.StopSignal.install()
open(os.path.join(os.environ["SWEEP_TRIAL_DIR"], "started"), "w").close()
while not stop.requested:
    time.sleep(0.02)
open(os.path.join(os.environ["SWEEP_CHECKPOINT_DIR"], "ckpt"), "w").write(str(stop.signum))
sys.exit(0)
"""
    sweep = make_sweep(tmp_path, program)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SWEEP_"))}
    proc = subprocess.Popen([PY, "-m", "jobs.run", str(sweep), "0"], env=env, stderr=subprocess.PIPE, text=True)
    started = sweep / "trials" / "t0" / "started"
    deadline = time.time() + 30
    while not started.exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=30) == 1
    assert (sweep / "trials" / "t0" / "checkpoints" / "ckpt").read_text() == str(int(signal.SIGUSR1))
    r = result(sweep)
    assert r["status"] == "preempted" and "SIGUSR1" in r["error"]


def test_runner_imports_no_heavy_modules():
    code = ("import sys, jobs.run, jobs.runtime\n"
            "heavy = {'yaml', 'rich', 'torch', 'numpy', 'pandas', 'hydra', 'omegaconf', 'submitit'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_args_json_file_lands_in_the_trial_directory(tmp_path):
    # W&B's ${args_json_file}: the runner writes the overrides next to the trial, not into /tmp.
    script = tmp_path / "prog.py"
    script.write_text("import json, os, sys\n"
                      "args = json.load(open(sys.argv[1]))\n"
                      "json.dump({'path': sys.argv[1], 'args': args}, open(os.environ['SWEEP_RESULT_FILE'], 'w'))\n")
    spec = SweepSpec(name="jf", command=(PY, str(script), "${args_json_file}"))
    trial = Trial(id="t0", index=0, params={"lr": 0.1}, overrides={"lr": 0.1, "m.d": 2})
    manifest = sweepdir.build_manifest(spec, [trial], executor="local", cluster=None, workdir=str(tmp_path))
    sweep = sweepdir.create(tmp_path / "sweep", manifest, "name: jf\n")
    proc = run_task(sweep, 0)
    assert proc.returncode == 0, proc.stderr
    r = result(sweep)
    assert r["status"] == "completed", r
    assert Path(r["results"]["path"]).parent == mf.trial_dir(sweep, "t0")
    assert r["results"]["args"] == {"lr": 0.1, "m": {"d": 2}}


# --- the task runner -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv,expected", [
    (["/s", "3"], (Path("/s"), 3, 0, None)),
    (["/s", "3", "--offset", "100"], (Path("/s"), 3, 100, None)),
    (["/s", "3", "--array", "ab12cd34"], (Path("/s"), 3, 0, "ab12cd34")),
    (["/s", "3", "--offset=7"], (Path("/s"), 3, 7, None)),       # not the fast shape: argparse reads it
    (["--offset", "2", "/s", "5"], (Path("/s"), 5, 2, None)),
])
def test_runner_arguments(argv, expected):
    assert run.parse_args(argv) == expected


def test_runner_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        run.parse_args(["/s", "three"])
    assert exc.value.code == 2


def test_now_iso_format():
    text = run.now_iso()
    assert len(text) == 20 and text[10] == "T" and text.endswith("Z")


def test_runner_started_as_a_file_without_site(tmp_path):
    # What a template may run to skip `site`: `python -S <root>/jobs/start.py SWEEP TASK`.
    prog = tmp_path / "prog.py"
    prog.write_text("import json, os, sys\n"
                    "json.dump({'x': sys.argv[1]}, open(os.environ['SWEEP_RESULT_FILE'], 'w'))\n")
    trial = Trial(id="t0", index=0, params={"x": 1}, overrides={"x": 1})
    manifest = sweepdir.build_manifest(SweepSpec(name="s", command=(PY, str(prog))), [trial], executor="local",
                                       cluster=None, workdir=str(tmp_path))
    sweep = sweepdir.create(tmp_path / "sweep", manifest, "name: s\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SWEEP_", "PYTHONPATH"))}
    done = subprocess.run([PY, "-S", str(ROOT / "jobs" / "start.py"), str(sweep), "0"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(mf.result_path(sweep, "t0").read_text())
    assert result["status"] == "completed" and result["results"] == {"x": "x=1"}


def test_the_program_sees_the_sweep_its_environment_and_where_its_runs_log():
    settings = mf.Settings(name="conspec", command=("true",), logging={"wandb_project": "keydoor", "wandb_entity": "lab"})
    env = run.trial_env(Path("/s"), settings, Trial(id="t0", index=0, environment="double"), 0)
    assert (env["SWEEP_NAME"], env["SWEEP_ENVIRONMENT"]) == ("conspec", "double")
    assert (env["WANDB_PROJECT"], env["WANDB_ENTITY"]) == ("keydoor", "lab")
    bare = run.trial_env(Path("/s"), mf.Settings(name="x", command=("true",)), Trial(id="t0", index=0), 0)
    assert "SWEEP_ENVIRONMENT" not in bare and bare.get("WANDB_PROJECT") == os.environ.get("WANDB_PROJECT")


def test_a_completed_run_whose_metric_is_nan_is_diverged():
    outcome = {"returncode": 0, "metrics": {"acc": float("nan")}, "problem": None, "error_tail": "", "runtime_s": 1.0}
    assert run.classify(outcome, "acc")[:2] == ("diverged", "acc is nan")
    assert run.classify(outcome, None)[0] == "completed"
    failed = {"returncode": 1, "metrics": None, "problem": None, "runtime_s": 1.0,
              "error_tail": "Traceback (most recent call last):\n  File \"x\"\nValueError: no"}
    status, error, _ = run.classify(failed)
    assert status == "failed" and error.startswith("exit code 1: ValueError: no\n")


PACKED = r"""
import os, sys
from jobs import runtime
ctx = runtime.context()
args = dict(a.split("=", 1) for a in sys.argv[1:])
with open(os.path.join(os.environ["SWEEP_DIR"], "..", "starts"), "a") as f:
    f.write(ctx.trial_id + "\n")
if args["x"] == "2":
    sys.exit("two fails")
runtime.write_metrics({"x": int(args["x"])})
"""


def test_a_packed_task_runs_its_trials_in_turn_and_skips_finished_ones(tmp_path):
    trials = [Trial(id=f"t{i}", index=i, params={"x": i}, overrides={"x": i}) for i in range(4)]
    sweep = make_sweep(tmp_path, PACKED, trials, max_attempts=2)
    m = mf.read_manifest(sweep)
    mf.write_array_file(sweep, "feed", m.settings, {0: trials[:3], 1: trials[3:]})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SWEEP_"))}
    done = subprocess.run([PY, "-m", "jobs.run", str(sweep), "0", "--array", "feed"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr        # some of its trials completed: later stages may go on
    assert [result(sweep, f"t{i}")["status"] for i in range(3)] == ["completed", "completed", "failed"]
    assert not mf.result_path(sweep, "t3").exists()
    starts = (tmp_path / "starts").read_text().split()
    assert starts == ["t0", "t1", "t2", "t2"]      # the failing one retried in the task (max_attempts 2)
    # Run again (a requeued task): finished trials are skipped, nothing runs twice.
    subprocess.run([PY, "-m", "jobs.run", str(sweep), "0", "--array", "feed"], env=env, capture_output=True, timeout=60)
    assert (tmp_path / "starts").read_text().split() == starts
