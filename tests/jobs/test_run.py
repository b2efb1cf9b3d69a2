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
    settings = mf.Settings(name="conspec", command=("true",), metric="success_rate",
                           logging={"wandb_project": "keydoor", "wandb_entity": "lab"})
    env = run.trial_env(Path("/s"), settings, Trial(id="t0", index=0, environment="double"), 0)
    assert (env["SWEEP_NAME"], env["SWEEP_ENVIRONMENT"]) == ("conspec", "double")
    assert env["SWEEP_METRIC"] == "success_rate"      # what the program reports to a pruner
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



def trials_of(n: int) -> list[Trial]:
    return [Trial(id=f"t{i}", index=i, params={"x": i}, overrides={"x": i}) for i in range(n)]


def test_a_pack_hands_out_every_trial_when_the_task_has_no_known_end():
    pack = run._Pack(trials_of(3), None, 85)
    taken = [pack.take() for _ in range(3)]
    assert [t.id for t in taken] == ["t0", "t1", "t2"] and pack.take() is None and pack.handed_back == []


def test_a_pack_near_its_end_starts_its_first_trial_then_hands_the_rest_back():
    # 95 s left, a margin of 85 s: the first trial always starts; after it took 10 s, a second
    # (10 s x 1.2 + 85 > 95) could still run when the warning comes, so it and the rest go back.
    pack = run._Pack(trials_of(4), time.time() + 95, 85)
    assert pack.take().id == "t0"
    assert pack.take().id == "t1"          # nothing measured yet: a second worker may start one
    pack.record("completed", 10.0)
    assert pack.take() is None and [t.id for t in pack.handed_back] == ["t2", "t3"]
    assert pack.take() is None and len(pack.handed_back) == 2


def test_a_pack_judges_its_second_slot_by_the_expected_trial_time_until_a_trial_ended():
    pack = run._Pack(trials_of(3), time.time() + 95, 85, expected=10.0)
    assert pack.take().id == "t0"          # the first always starts
    assert pack.take() is None and [t.id for t in pack.handed_back] == ["t1", "t2"]   # 10 x 1.2 + 85 > 95


@pytest.mark.parametrize("status", [run.REQUEUE, "cancelled"])
def test_a_requeue_or_a_cancel_stops_the_handing_out_without_handing_back(status):
    pack = run._Pack(trials_of(3), None, 85)
    pack.take()
    pack.record(status, 1.0)
    assert pack.take() is None and pack.handed_back == []


SLEEPS = """
import os, time
from jobs import runtime
start = time.time()
time.sleep(2)
runtime.write_metrics({"gpus": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()})
"""


def test_side_by_side_trials_near_the_end_hand_the_rest_back_too(tmp_path, monkeypatch):
    # Two GPUs, six 2-s trials, the warning due 3 s from now: the two first trials start side by side,
    # one on each GPU; no third (2 s x 1.2 > what is left), and the other four wait for the top-up.
    trials = trials_of(6)
    sweep = make_sweep(tmp_path, SLEEPS, trials)
    settings = mf.read_manifest(sweep).settings
    margin = settings.cluster.grace_s + run.stop.EARLY_WARNING_SLACK_S
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(run, "_task_end", lambda: time.time() + margin + 3)
    assert run.run_task(sweep, settings, trials) == 0
    done = {t.id: result(sweep, t.id) for t in trials if mf.result_path(sweep, t.id).exists()}
    assert sorted(done) == ["t0", "t1"] and {r["status"] for r in done.values()} == {"completed"}
    gpus = [r["results"] for r in done.values()]
    assert sorted(g["gpus"] for g in gpus) == ["0", "1"] and max(g["start"] for g in gpus) < min(g["end"] for g in gpus)
    assert mf.read_manifest(sweep).unsubmitted_indices() == [2, 3, 4, 5]


MINE = sorted(os.sched_getaffinity(0))


@pytest.mark.parametrize("allotted, per_trial, expected", [
    ("", None, []),                                   # not asked for: one after another
    ("2", 1, [{MINE[0]}, {MINE[1]}] if len(MINE) >= 2 else None),   # pinned, one CPU each
    ("8", 2, [None] * 4),                             # Slurm allotted more than the affinity shows: not pinned
    ("3", 2, []),                                     # one trial's worth: nothing to share out
])
def test_a_packed_task_without_gpus_shares_its_cpus_out_by_cpus_per_trial(monkeypatch, allotted, per_trial, expected):
    if expected is None:
        pytest.skip("needs two CPUs")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", allotted)
    groups = run.cpu_groups(per_trial)
    assert [set(cpus) if cpus is not None else None for _, cpus in groups] == expected
    assert all(env["OMP_NUM_THREADS"] == str(per_trial) for env, _ in groups)


PINNED = """
import os, time
from jobs import runtime
start = time.time()
time.sleep(1.5)
runtime.write_metrics({"cpus": sorted(os.sched_getaffinity(0)), "threads": os.environ.get("OMP_NUM_THREADS"),
                       "start": start, "end": time.time()})
"""


@pytest.mark.skipif(len(MINE) < 2, reason="needs two CPUs")
def test_packed_cpu_trials_run_side_by_side_each_pinned_to_its_own_cpu(tmp_path, monkeypatch):
    from jobs.profile import ClusterProfile

    trials = trials_of(4)
    sweep = make_sweep(tmp_path, PINNED, trials)
    settings = mf.read_manifest(sweep).settings
    settings = settings._replace(cluster=ClusterProfile(cpus_per_trial=1))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert run.run_task(sweep, settings, trials) == 0
    res = [result(sweep, t.id)["results"] for t in trials]
    assert all(len(r["cpus"]) == 1 and r["threads"] == "1" for r in res)
    first, second = sorted(res, key=lambda r: r["start"])[:2]
    assert first["cpus"] != second["cpus"] and second["start"] < first["end"]      # two at once, apart
    assert sorted(r["cpus"][0] for r in res) == sorted([MINE[0], MINE[1]] * 2)
    assert os.sched_getaffinity(0) == set(MINE)                                  # the runner itself unpinned

# --- a trial of several processes: torchrun (jobs.torchrun) -----------------------------------------

def settings_for(command: tuple[str, ...], gpus_per_trial: int | None) -> mf.Settings:
    from jobs.profile import ClusterProfile

    return mf.Settings(name="ranks", command=command, cluster=ClusterProfile(gpus_per_trial=gpus_per_trial))


def test_a_trial_of_several_processes_runs_its_own_argv_under_torchrun_with_the_sweeps_python():
    trial = Trial(id="t0", index=0, overrides={"lr": 0.1, "tag": "a b"})
    one = run.trial_argv(Path("/s"), settings_for(("python", "-m", "train"), None), trial, write_json_file=False)
    assert one == [PY, "-m", "train", "lr=0.1", "tag=a b"]
    assert run.trial_argv(Path("/s"), settings_for(("python", "-m", "train"), 1), trial, write_json_file=False) == one
    four = run.trial_argv(Path("/s"), settings_for(("python", "-m", "train"), 4), trial, write_json_file=False)
    assert four == [PY, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=4",
                    "--tee=3", "--role=rank", "--log_dir=/s/trials/t0/torchrun", "--no_python", *one]


@pytest.mark.parametrize("command,expected", [
    # torchrun as the first word means the sweep's interpreter; no rendezvous named: --standalone.
    (("torchrun", "--nproc_per_node=4", "-m", "train"),
     [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "train", "lr=0.1"]),
    (("python", "-m", "torch.distributed.run", "--nproc-per-node", "2", "train.py"),
     [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "train.py", "lr=0.1"]),
    # A rendezvous of its own is kept as written.
    (("torchrun", "--standalone", "--nproc_per_node=4", "-m", "train"),
     [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "train", "lr=0.1"]),
    (("torchrun", "--rdzv-endpoint=localhost:0", "--rdzv-backend", "c10d", "--nproc_per_node=4", "x.py"),
     [PY, "-m", "torch.distributed.run", "--rdzv-endpoint=localhost:0", "--rdzv-backend", "c10d",
      "--nproc_per_node=4", "x.py", "lr=0.1"]),
    # A torchrun given by path is that torchrun.
    (("/opt/bin/torchrun", "--master_port=29600", "x.py"),
     ["/opt/bin/torchrun", "--master_port=29600", "x.py", "lr=0.1"]),
])
def test_a_command_that_starts_torchrun_is_not_wrapped_again(command, expected):
    trial = Trial(id="t0", index=0, overrides={"lr": 0.1})
    for gpus in (None, 4):   # gpus_per_trial only sizes the allocation here
        assert run.trial_argv(Path("/s"), settings_for(command, gpus), trial, write_json_file=False) == expected


def test_ranks_share_the_tasks_cpus_and_bind_their_own_ports(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")              # what the job script exports
    monkeypatch.setenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    trial = Trial(id="t0", index=0)
    env = run.trial_env(Path("/s"), settings_for(("python", "-m", "train"), 4), trial, 0)
    assert env["OMP_NUM_THREADS"] == "2" and env["PYTHONUNBUFFERED"] == "1"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in env   # torch would probe a port and let it go
    # A user's torchrun with its own --nproc_per_node: its ranks share the CPUs; its output is its own.
    own = run.trial_env(Path("/s"), settings_for(("torchrun", "--nproc_per_node=2", "x.py"), None), trial, 0)
    assert own["OMP_NUM_THREADS"] == "4" and "PYTHONUNBUFFERED" not in own
    one = run.trial_env(Path("/s"), settings_for(("python", "-m", "train"), None), trial, 0)
    assert one["OMP_NUM_THREADS"] == "8" and one["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")                # set by the user: kept
    assert run.trial_env(Path("/s"), settings_for(("python", "x.py"), 4), trial, 0)["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize("visible,per_trial,groups", [
    ("0,1,2,3", 1, ["0", "1", "2", "3"]), ("0,1,2,3", 2, ["0,1", "2,3"]), ("0,1,2,3", 4, []),
    ("0,1", 2, []), ("0,1,2", 2, []), ("", 2, []),
])
def test_packed_trials_side_by_side_get_their_gpus_in_groups(monkeypatch, visible, per_trial, groups):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert run.side_by_side(per_trial) == groups


RANKS = r"""
import os, sys, time
from jobs import runtime
stop = runtime.StopSignal.install()
rank = int(os.environ["RANK"])
print(f"rank {rank} of {os.environ['WORLD_SIZE']} up", flush=True)
open(os.path.join(os.environ["SWEEP_TRIAL_DIR"], f"up.{rank}"), "w").write(str(os.getpid()))
if sys.argv[1:] == ["mode=fail"] and rank == 1:
    raise ValueError("rank one cannot go on")
if sys.argv[1:] == ["mode=stop"]:
    while not stop.requested:
        time.sleep(0.02)
    open(os.path.join(os.environ["SWEEP_CHECKPOINT_DIR"], f"ckpt.{rank}"), "w").write(str(stop.signum))
    sys.exit(0)
go = os.path.join(os.environ["SWEEP_DIR"], "..", "..", "go")
while sys.argv[1:] == ["mode=together"] and not os.path.exists(go):
    time.sleep(0.02)
time.sleep(1 if rank == 0 else 0)
if rank == 0:
    runtime.write_metrics({"world": int(os.environ["WORLD_SIZE"]), "port": int(os.environ["MASTER_PORT"])})
"""


def ranks_sweep(tmp_path: Path, mode: str) -> Path:
    from jobs.profile import ClusterProfile

    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    spec = SweepSpec(name="ranks", command=("python", str(script)))
    trials = [Trial(id="t0", index=0, params={"mode": mode}, overrides={"mode": mode})]
    manifest = sweepdir.build_manifest(spec, trials, executor="local", cluster=ClusterProfile(gpus_per_trial=2),
                                       workdir=str(tmp_path), max_attempts=1)
    return sweepdir.create(tmp_path / "sweep", manifest, "name: ranks\n")


@pytest.mark.slow   # torchrun's agent imports torch
def test_two_ranks_complete_one_result_and_a_failed_rank_is_named(tmp_path):
    sweep = ranks_sweep(tmp_path / "ok", "ok")
    assert run_task(sweep, 0).returncode == 0
    r = result(sweep)
    assert r["status"] == "completed" and r["results"]["world"] == 2
    log = (sweep / "trials" / "t0" / "trial.log").read_text()
    assert "[rank0]:rank 0 of 2 up" in log and "[rank1]:rank 1 of 2 up" in log
    assert list((sweep / "trials" / "t0" / "torchrun").rglob("stdout.log"))   # each rank's own output too

    sweep = ranks_sweep(tmp_path / "fail", "fail")
    assert run_task(sweep, 0).returncode == 1
    r = result(sweep)
    assert r["status"] == "failed"
    # Not torchrun's last line ("=====") nor its exit code: the rank that failed and its last words.
    assert r["error"].startswith("rank 1: exit code 1: ValueError: rank one cannot go on\n"), r["error"]
    assert "[rank1]:ValueError: rank one cannot go on" in r["error"] and "exitcode  : 1" in r["error"]


@pytest.mark.slow   # torchrun's agent imports torch
def test_a_stop_signal_reaches_every_rank_and_the_agent_waits_for_them(tmp_path):
    sweep = ranks_sweep(tmp_path, "stop")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SWEEP_"))}
    proc = subprocess.Popen([PY, "-m", "jobs.run", str(sweep), "0"], env=env, stderr=subprocess.PIPE, text=True)
    tdir = sweep / "trials" / "t0"
    deadline = time.time() + 60
    while not ((tdir / "up.0").exists() and (tdir / "up.1").exists()):
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)
    # USR1 kills torchrun's agent where it is sent to the agent (the ranks would run on, orphaned).
    proc.send_signal(signal.SIGUSR1)
    try:
        assert proc.wait(timeout=60) == 1
        for rank in (0, 1):
            assert (tdir / "checkpoints" / f"ckpt.{rank}").read_text() == str(int(signal.SIGUSR1))
    finally:
        for rank in (0, 1):   # never leave an orphaned rank behind, whatever happened
            try:
                os.kill(int((tdir / f"up.{rank}").read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    log = (tdir / "trial.log").read_text()
    assert "=== exit 0 after" in log and "SignalException" not in log   # the agent ended with its ranks
    r = result(sweep)
    assert r["status"] == "preempted" and "SIGUSR1" in r["error"]


@pytest.mark.slow   # torchrun's agent imports torch
def test_two_trials_of_two_ranks_at_once_on_one_machine_meet_on_ports_of_their_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SWEEP_"))}
    sweeps = [ranks_sweep(tmp_path / name, "together") for name in ("a", "b")]
    procs = [subprocess.Popen([PY, "-m", "jobs.run", str(sweep), "0"], env=env, stderr=subprocess.PIPE, text=True)
             for sweep in sweeps]
    try:
        deadline = time.time() + 60
        while not all((sweep / "trials" / "t0" / f"up.{r}").exists() for sweep in sweeps for r in (0, 1)):
            assert time.time() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.02)
        (tmp_path / "go").touch()   # all four ranks are up: both rendezvous stores are bound now
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        (tmp_path / "go").touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
    ports = [result(sweep)["results"]["port"] for sweep in sweeps]
    assert all(r["results"]["world"] == 2 for r in map(result, sweeps)) and ports[0] != ports[1]
