"""Python trials run in a fork of the task runner (jobs.inproc) see what `python prog.py` shows them.

Each behaviour is checked both ways on real processes: the runner started as the sbatch template
starts it (`python -S <root>/jobs/run.py`), once forking (the default) and once exec'ing
(SLURMSWEEP_NO_INPROC=1), and the two must agree.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import inproc
from jobs import manifest as mf
from launcher import sweepdir
from launcher.spec import SweepSpec
from jobs.manifest import Trial

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
RUNNER = str(ROOT / "jobs" / "start.py")
MODES = {"fork": {}, "exec": {inproc.ENV_OFF: "1"}}


def make_sweep(tmp_path: Path, command: tuple[str, ...], *, files: dict[str, str], overrides=None) -> Path:
    work = tmp_path / "work"
    work.mkdir(parents=True)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    trial = Trial(id="t0", index=0, params={}, overrides=overrides or {"lr": 0.1, "tag": "a b"})
    manifest = sweepdir.build_manifest(SweepSpec(name="inproc", command=command), [trial], executor="local",
                                       cluster=None, workdir=str(work), max_attempts=1)
    return sweepdir.create(tmp_path / "sweep", manifest, "name: inproc\n")


def run_task(sweep: Path, mode: str, *, start: str = "file") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "SWEEP_", "PYTHONPATH"))}
    env.update(MODES[mode])
    runner = [PY, "-S", RUNNER] if start == "file" else [PY, "-m", "jobs.run"]
    # cwd elsewhere than the workdir: the program must see the sweep's workdir, not ours
    return subprocess.run([*runner, str(sweep), "0"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=ROOT if start == "module" else "/")


def outcome(sweep: Path) -> tuple[dict, str]:
    result = json.loads(mf.result_path(sweep, "t0").read_text())
    log = (mf.trial_dir(sweep, "t0") / "trial.log").read_text()
    body = "\n".join(line for line in log.splitlines() if not line.startswith("==="))
    return result, body


def both_ways(tmp_path: Path, command: tuple[str, ...], files: dict[str, str], start: str = "file", **kw):
    """{mode: (returncode, result, trial.log without the runner's header lines)}."""
    out = {}
    for mode in MODES:
        sweep = make_sweep(tmp_path / mode, command, files=files, **kw)
        proc = run_task(sweep, mode, start=start)
        assert proc.returncode in (0, 1, 3), proc.stderr
        out[mode] = (proc.returncode, *outcome(sweep))
    return out


OBSERVE = """\
import builtins, os, signal, sys
import yaml                                  # site-packages: the runner itself starts without them
from jobs import runtime

def typed(x: int) -> int:                    # the program's own __future__ flags, not the runner's
    return x

runtime.write_metrics({
    "name": __name__, "file": __file__, "argv": sys.argv, "orig_argv": sys.orig_argv, "cwd": os.getcwd(),
    "path": sys.path, "no_site": sys.flags.no_site, "exit_builtin": hasattr(builtins, "exit"),
    "main_is_us": sys.modules["__main__"].__dict__ is globals(), "annotation": repr(typed.__annotations__["x"]),
    "stdin": sys.stdin.read(), "own_session": os.getsid(0) == os.getpid(),
    "default_handlers": [signal.getsignal(s) is signal.SIG_DFL for s in (signal.SIGUSR1, signal.SIGUSR2,
                                                                         signal.SIGTERM)],
    "sigint": repr(signal.getsignal(signal.SIGINT)), "env": os.environ["SWEEP_TRIAL_ID"],
    "yaml": yaml.safe_load("a: 1"), "forked": "jobs.inproc" in sys.modules,
})
print("to stdout", flush=False)
print("to stderr", file=sys.stderr)
"""


@pytest.mark.parametrize("start", ["file", "module"])
def test_script_sees_what_python_shows_it(tmp_path, start):
    runs = both_ways(tmp_path, (PY, "bin/prog.py"), {"bin/prog.py": OBSERVE}, start=start)
    seen = {}
    for mode, (code, result, log) in runs.items():
        assert code == 0 and result["status"] == "completed", (mode, result)
        r = dict(result["results"])
        assert r.pop("forked") is (mode == "fork")
        work = str(tmp_path / mode / "work")
        assert r["name"] == "__main__" and r["file"] == f"{work}/bin/prog.py"
        assert r["argv"] == ["bin/prog.py", "lr=0.1", "tag=a b"] and r["orig_argv"] == [PY, *r["argv"]]
        assert r["cwd"] == work and r["path"][0] == f"{work}/bin"
        assert any(p.endswith("site-packages") for p in r["path"]) and r["no_site"] == 0
        assert r["exit_builtin"] and r["main_is_us"] and r["annotation"] == "<class 'int'>"
        assert r["stdin"] == "" and r["own_session"] and r["default_handlers"] == [True] * 3
        assert r["env"] == "t0" and r["yaml"] == {"a": 1}
        assert sorted(log.splitlines()) == ["to stderr", "to stdout"]
        seen[mode] = {k: v for k, v in r.items() if k not in ("file", "cwd", "path")} | {
            "path": [p.replace(work, "WORK") for p in r["path"]]}
    assert seen["fork"] == seen["exec"]    # sys.path in the same order included


def test_module_sees_what_python_m_shows_it(tmp_path):
    files = {"pkg/__init__.py": "", "pkg/main.py": OBSERVE}
    runs = both_ways(tmp_path, ("python", "-m", "pkg.main"), files)
    seen = {}
    for mode, (code, result, _) in runs.items():
        assert code == 0, (mode, result)
        r = dict(result["results"])
        assert r.pop("forked") is (mode == "fork")
        work = str(tmp_path / mode / "work")
        assert r["name"] == "__main__" and r["argv"] == [f"{work}/pkg/main.py", "lr=0.1", "tag=a b"]
        assert r["orig_argv"] == [PY, "-m", "pkg.main", "lr=0.1", "tag=a b"]
        assert r["path"][0] == work and r["cwd"] == work and r["no_site"] == 0
        seen[mode] = json.loads(json.dumps(r).replace(work, "WORK"))
    assert seen["fork"] == seen["exec"]


EXITS = {
    "exit3": ("import sys\nsys.exit(3)\n", 3, "exit code 3"),
    "message": ("raise SystemExit('giving up: no data')\n", 1, "giving up: no data"),
    "exception": ("def load():\n    raise RuntimeError('CUDA out of memory')\nload()\n", 1,
                  "RuntimeError: CUDA out of memory"),
    "exit0_no_metrics": ("print('forgot')\n", 0, "wrote no metrics"),
}


@pytest.mark.parametrize("case", sorted(EXITS))
def test_exit_codes_and_errors_match_exec(tmp_path, case):
    program, code, text = EXITS[case]
    runs = both_ways(tmp_path, (PY, "prog.py"), {"prog.py": program})
    for mode, (rc, result, log) in runs.items():
        assert rc == 1 and result["status"] == "failed", (mode, result)
        assert result["error"].startswith(f"exit code {code}" if code else "the program wrote no metrics")
        assert text in result["error"], (mode, result["error"])
        assert "inproc" not in log and "runpy" not in log   # the traceback starts at the program
    work = lambda mode: str(tmp_path / mode / "work")  # noqa: E731
    assert runs["fork"][2].replace(work("fork"), "W") == runs["exec"][2].replace(work("exec"), "W")


ENDINGS = """\
import atexit, os, sys, threading, time
path = os.environ["SWEEP_RESULT_FILE"]
out = open(path, "w")                     # never closed: python's teardown flushes it
out.write('{"left_open": 1')
def later():                              # a non-daemon thread: python waits for it
    time.sleep(0.3)
    print("thread done")
threading.Thread(target=later).start()
atexit.register(lambda: out.write(', "atexit": 1}'))
print("main done")
"""


def test_threads_atexit_and_open_files_end_as_in_python(tmp_path):
    runs = both_ways(tmp_path, (PY, "prog.py"), {"prog.py": ENDINGS})
    for mode, (rc, result, log) in runs.items():
        assert rc == 0 and result["results"] == {"left_open": 1, "atexit": 1}, (mode, result)
        assert log.splitlines() == ["main done", "thread done"], mode


def test_keyboard_interrupt_ends_by_sigint(tmp_path):
    runs = both_ways(tmp_path, (PY, "prog.py"), {"prog.py": "raise KeyboardInterrupt\n"})
    for mode, (rc, result, log) in runs.items():
        assert result["error"].startswith("killed by signal 2 (SIGINT): KeyboardInterrupt"), (mode, result)
        assert log.rstrip().endswith("KeyboardInterrupt")


SPAWNS = """\
import multiprocessing, sys
from jobs import runtime

def child_view(_):
    import yaml                      # site-packages in the spawned interpreter too
    return [sys.flags.no_site, yaml.__name__]

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        runtime.write_metrics({"child": pool.map(child_view, [0])[0], "forked": "jobs.inproc" in sys.modules})
"""


def test_multiprocessing_spawn_gets_site_packages(tmp_path):
    # A spawned interpreter inherits the parent's flags (subprocess._args_from_interpreter_flags):
    # the runner's -S must not reach it.
    sweep = make_sweep(tmp_path, (PY, "prog.py"), files={"prog.py": SPAWNS})
    proc = run_task(sweep, "fork")
    result, log = outcome(sweep)
    assert proc.returncode == 0, (result, log)
    assert result["results"] == {"child": [0, "yaml"], "forked": True}


def test_runner_stops_before_the_program_imports_anything_heavy(tmp_path):
    # Everything in sys.modules when the program's first line runs came from the runner or site.
    program = ("import sys\nmodules = sorted(sys.modules)\n"
               "from jobs import runtime\nruntime.write_metrics({'modules': modules})\n")
    sweep = make_sweep(tmp_path, (PY, "prog.py"), files={"prog.py": program})
    assert run_task(sweep, "fork").returncode == 0
    modules = set(json.loads(mf.result_path(sweep, "t0").read_text())["results"]["modules"])
    assert "jobs.inproc" in modules
    heavy = {"yaml", "rich", "torch", "numpy", "pandas", "hydra", "omegaconf", "submitit", "optuna", "logging",
             "subprocess", "hashlib", "tempfile", "argparse"}
    assert not {m.split(".")[0] for m in modules} & heavy


@pytest.mark.parametrize("argv,expected", [
    ([PY, "prog.py", "a=1"], ("prog.py", None, ["a=1"])),
    ([PY, "-m", "train", "a=1"], (None, "train", ["a=1"])),
    ([PY, "-mtrain"], (None, "train", [])),
    ([str(Path(PY).with_name("python3")), "prog.py"], ("prog.py", None, [])),   # a sibling in the venv
    ([PY, "-u", "prog.py"], None),
    ([PY, "-X", "importtime", "prog.py"], None),
    ([PY, "-c", "print(1)"], None),
    ([PY, "-m"], None),
    ([PY, "missing.py"], None),
    ([PY], None),
    (["/bin/sh", "-c", "python prog.py"], None),
    (["python", "prog.py"], None),            # unresolved: jobs.argv.resolve_python makes it PY first
    ([PY + "-other", "prog.py"], None),
])
def test_what_runs_in_a_fork(tmp_path, argv, expected):
    (tmp_path / "prog.py").write_text("")
    if not Path(argv[0]).with_name("python3").exists() and argv[0].endswith("python3"):
        pytest.skip("no python3 next to this interpreter")
    prog = inproc.parse(argv, str(tmp_path))
    got = None if prog is None else (prog.script, prog.module, prog.args)
    assert got == expected


def test_escape_hatch(monkeypatch, tmp_path):
    (tmp_path / "prog.py").write_text("")
    monkeypatch.setenv(inproc.ENV_OFF, "1")
    assert inproc.program([PY, "prog.py"], str(tmp_path)) is None
    monkeypatch.setenv(inproc.ENV_OFF, "0")
    assert inproc.enabled()


WAITS_FOR_SIGNAL = """\
import os, sys, time
from jobs import runtime
handled = sys.argv[1] == "handled=true"
stop = runtime.StopSignal.install() if handled else None
open(os.path.join(os.environ["SWEEP_TRIAL_DIR"], "started"), "w").write(str("jobs.inproc" in sys.modules))
while stop is None or not stop.requested:
    time.sleep(0.02)
open(os.path.join(os.environ["SWEEP_CHECKPOINT_DIR"], "ckpt"), "w").write(str(stop.signum))
"""


@pytest.mark.parametrize("sig,handled", [(signal.SIGTERM, True), (signal.SIGUSR2, True), (signal.SIGTERM, False)])
def test_stop_signals_reach_a_forked_program(tmp_path, sig, handled):
    sweep = make_sweep(tmp_path, (PY, "prog.py"), files={"prog.py": WAITS_FOR_SIGNAL},
                       overrides={"handled": handled})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "SWEEP_"))}
    runner = subprocess.Popen([PY, "-S", RUNNER, str(sweep), "0"], env=env, stderr=subprocess.PIPE, text=True)
    started = mf.trial_dir(sweep, "t0") / "started"
    deadline = time.time() + 60
    while not started.exists() or not started.read_text():
        assert time.time() < deadline and runner.poll() is None, runner.stderr.read() if runner.poll() else ""
        time.sleep(0.02)
    assert started.read_text() == "True"        # the program runs in a fork of the runner
    runner.send_signal(sig)
    assert runner.wait(timeout=60) == 1
    result, _ = outcome(sweep)
    assert result["status"] == "preempted" and signal.Signals(sig).name in result["error"]
    ckpt = mf.trial_dir(sweep, "t0") / "checkpoints" / "ckpt"
    if handled:
        assert ckpt.read_text() == str(int(sig))
    else:                                        # default action: the program died of the signal
        assert not ckpt.exists() and f"exit {-sig}" in result["error"]
