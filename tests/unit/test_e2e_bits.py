"""Speed work that must not change behaviour: fast samplers (same draws as numpy's own calls),
trial ids, the runner's argument fast path and -S start, and `launch --wait`'s watch loop."""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobs import manifest as mf
from jobs import run as runner
from jobs.state import SweepStatus, TrialState, TrialStatus
from launcher import sweepdir
from launcher.commands.launch import wait_for_results
from launcher.plans import expand
from launcher.plans.sampling import sampler
from launcher.spec import Dist, SweepSpec
from launcher.trial import Trial, trial_id

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


# --- samplers: draw for draw what numpy's high-level calls give ---------------------------------

def numpy_reference(dist: Dist, rng: np.random.Generator):
    """The draws written with numpy's documented API (what the plans did before the fast path)."""
    if dist.kind == "choice":
        return dist.values[int(rng.choice(len(dist.values), p=dist.probabilities))]
    if dist.kind == "uniform":
        return float(rng.uniform(dist.low, dist.high))
    if dist.kind == "loguniform":
        return math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    raise AssertionError(dist.kind)


RAW_DISTS = [
    Dist("choice", values=(256, 512)),
    Dist("choice", values=("a", 1, 2.5, None, True)),
    Dist("choice", values=(1, 2, 3), probabilities=(0.2, 0.5, 0.3)),
    Dist("choice", values=("x", "y"), probabilities=(0.1, 0.9000000001)),
    Dist("uniform", low=0.0, high=0.5),
    Dist("uniform", low=-3, high=7),
    Dist("uniform", low=5.0, high=5.0),
    Dist("loguniform", low=1e-5, high=1e-3),
    Dist("loguniform", low=4, high=512),
]


@pytest.mark.parametrize("seed", range(8))
def test_fast_samplers_consume_the_stream_like_numpy(seed):
    # Interleaved as a random plan draws them (key after key), so any difference in how many
    # bits a draw takes from the generator would shift every later value.
    ours, ref = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 0])
    draws = [sampler(d) for d in RAW_DISTS]
    for _ in range(200):
        for dist, draw in zip(RAW_DISTS, draws):
            a, b = draw(ours), numpy_reference(dist, ref)
            assert a == b and type(a) is type(b), (dist, a, b)
    assert ours.random() == ref.random()


def test_bad_probabilities_still_raise_numpys_error():
    dist = Dist("choice", values=(1, 2, 3), probabilities=(1, 1, 2))
    with pytest.raises(ValueError, match="sum to 1"):
        sampler(dist)(np.random.default_rng(0))


def test_random_plan_is_pinned():
    # Digest of this plan as the code before the fast path produced it (ids, params, overrides).
    space = {"lr": Dist("loguniform", low=1e-5, high=1e-2), "wd": Dist("loguniform", low=1e-6, high=1e-1, q=1e-6),
             "hidden": Dist("choice", values=(128, 256, 512)),
             "act": Dist("choice", values=("relu", "gelu"), probabilities=(0.25, 0.75)),
             "drop": Dist("uniform", low=0.0, high=0.5, q=0.05), "layers": Dist("int_uniform", low=1, high=8),
             "batch": Dist("pow2", low=16, high=256), "mom": Dist("logit", low=0.8, high=0.99),
             "noise": Dist("normal", mu=0.0, sigma=1.0), "width": Dist("uniform", low=10, high=100, is_int=True)}
    spec = SweepSpec(name="pinned", method="random", space=space, n_trials=500, environments=("easy", "hard"), seed=7)
    trials = expand(spec)
    blob = json.dumps([t.to_dict() for t in trials], sort_keys=True).encode()
    assert len(trials) == 1000
    assert hashlib.sha1(blob).hexdigest() == "2007ca19eb2117174112b977f443177efd46de60"


@pytest.mark.parametrize("params,extra", [
    ({"lr": 0.001, "arch.h": 256}, {}),
    ({"b": [1, 2.5, "x"], "a": None, "c": True}, {"environment": "easy", "replica": 3, "variant": "feudal"}),
    ({"path": Path("/tmp/x"), "u": "é"}, {"replica": 0}),
])
def test_trial_id_is_the_documented_hash(params, extra):
    key = {"sweep": "s", "stage": 1, "params": params}
    key.update({k: v for k, v in extra.items() if v})
    blob = json.dumps(key, sort_keys=True, default=str, separators=(",", ":"))
    assert trial_id("s", 1, params, extra.get("environment"), extra.get("replica", 0),
                    variant=extra.get("variant")) == hashlib.sha1(blob.encode()).hexdigest()[:10]


def test_grid_launch_path_does_not_import_numpy():
    code = ("import sys\nfrom launcher.plans import expand\nfrom launcher.spec import Dist, SweepSpec\n"
            "expand(SweepSpec(name='g', space={'x': Dist('choice', values=(1, 2))}))\n"
            "print('numpy' in sys.modules)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


# --- the task runner -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv,expected", [
    (["/s", "3"], (Path("/s"), 3, 0)),
    (["/s", "3", "--offset", "100"], (Path("/s"), 3, 100)),
    (["/s", "3", "--offset=7"], (Path("/s"), 3, 7)),       # not the fast shape: argparse reads it
    (["--offset", "2", "/s", "5"], (Path("/s"), 5, 2)),
])
def test_runner_arguments(argv, expected):
    assert runner.parse_args(argv) == expected


def test_runner_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        runner.parse_args(["/s", "three"])
    assert exc.value.code == 2


def test_now_iso_format():
    text = runner.now_iso()
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


# --- launch --wait: disk polls, Slurm once per refresh -------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def wait_sweep(tmp_path: Path, n: int) -> tuple[Path, dict]:
    trials = [Trial(id=f"t{i}", index=i) for i in range(n)]
    manifest = sweepdir.build_manifest(SweepSpec(name="w", command=("true",)), trials, executor="slurm",
                                       cluster=None, workdir=str(tmp_path))
    manifest["submissions"] = [{"stage": 0, "job_id": "99", "array": f"0-{n - 1}", "offset": 0,
                                "indices": f"0-{n - 1}", "dependency": None, "executor": "slurm"}]
    return sweepdir.create(tmp_path / "sweep", manifest, "name: w\n"), manifest


def write_result(sweep: Path, tid: str, status: str = "completed") -> None:
    path = mf.result_path(sweep, tid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": status}))


def fake_collect(active: set[str], calls: list[int]):
    """A SweepStatus as jobs.state.collect builds it: results from disk, `active` as Slurm's view."""
    def collect(sweep_dir, manifest):
        calls.append(1)
        out = []
        for t in manifest["trials"]:
            path = mf.result_path(sweep_dir, t["id"])
            if path.exists():
                state = TrialState(json.loads(path.read_text())["status"])
            else:
                state = TrialState.RUNNING if t["id"] in active else TrialState.LOST
            out.append(TrialStatus(trial=t, state=state))
        return SweepStatus(trials=out, metric=None)
    return collect


def test_wait_returns_when_every_result_is_on_disk(tmp_path):
    sweep, manifest = wait_sweep(tmp_path, 50)
    clock, calls, progress = Clock(), [], []

    def sleep(s: float) -> None:  # five results land per poll
        clock.t += s
        for i in range(50):
            if not mf.result_path(sweep, f"t{i}").exists():
                for j in range(i, min(i + 5, 50)):
                    write_result(sweep, f"t{j}")
                break

    states = wait_for_results(sweep, manifest, collect=fake_collect({f"t{i}" for i in range(50)}, calls),
                              clock=clock, sleep=sleep, on_progress=lambda d, t: progress.append(d))
    assert states == {f"t{i}": "completed" for i in range(50)}
    # ten polls of the disk at 0.25 s: no Slurm refresh was due before the end, plus the final one
    assert len(calls) <= 2
    assert progress[0] == 0 and progress[-1] == 50


def test_wait_ends_when_slurm_no_longer_holds_a_missing_trial(tmp_path):
    sweep, manifest = wait_sweep(tmp_path, 3)
    write_result(sweep, "t0")
    write_result(sweep, "t1", "failed")
    clock, calls = Clock(), []
    states = wait_for_results(sweep, manifest, collect=fake_collect(set(), calls), clock=clock,
                              sleep=lambda s: setattr(clock, "t", clock.t + s), delays=iter([1.0] * 100))
    assert states == {"t0": "completed", "t1": "failed", "t2": "lost"}
    assert clock.t <= 1.5 and len(calls) == 2   # one refresh that ended the wait, one final


def test_wait_keeps_going_while_squeue_is_blind(tmp_path):
    sweep, manifest = wait_sweep(tmp_path, 1)
    clock, calls = Clock(), []
    inner = fake_collect(set(), calls)

    def collect(sweep_dir, m):
        status = inner(sweep_dir, m)
        if len(calls) < 3:
            status.notes.append("squeue failed (slurmctld down)")
        else:
            write_result(sweep, "t0")
        return status

    states = wait_for_results(sweep, manifest, collect=collect, clock=clock,
                              sleep=lambda s: setattr(clock, "t", clock.t + s), delays=iter([1.0] * 100))
    assert states == {"t0": "completed"} and len(calls) >= 3


def test_wait_ignores_unsubmitted_trials(tmp_path):
    sweep, manifest = wait_sweep(tmp_path, 4)
    manifest["submissions"][0].update(array="0-1", indices="0-1")
    write_result(sweep, "t0")
    write_result(sweep, "t1")
    states = wait_for_results(sweep, manifest, collect=fake_collect(set(), []), clock=Clock(), sleep=lambda s: None)
    assert states == {"t0": "completed", "t1": "completed"}
