"""The sweep directory: what launch writes, what it refuses, how big it is."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs.errors import UserError
from launcher import sweepdir
from launcher.cluster import load_profile
from launcher.dialects import load_spec
from launcher.plans import expand
from search.dist import Dist
from launcher.spec import SweepSpec
from jobs.manifest import Submission, Trial

ROOT = Path(__file__).resolve().parents[2]
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
    path = sweepdir.create(tmp_path / "s", _manifest(trials), "name: s\ngrid: {a: [1, 2]}\n")
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "sweep.yaml"]
    m = mf.read_manifest(path)
    assert m.version == 2 and m.name == "s" and m.settings.command == ("python", "-m", "train")
    assert [t.id for t in m.trials] == ["t0", "t1", "t2"] and m.submissions == ()
    assert m.settings.max_attempts == 3 and m.settings.workdir == "/w"
    assert (path / "sweep.yaml").read_text() == "name: s\ngrid: {a: [1, 2]}\n"
    assert not list(tmp_path.glob(".s.*"))          # no staging directory left behind


def test_existing_directory_rules(tmp_path):
    trials = [Trial(id="t0", index=0)]
    m = _manifest(trials)
    sweepdir.create(tmp_path / "s", m, "x")
    sweepdir.create(tmp_path / "s", _manifest(trials), "x")     # same sweep, nothing submitted yet: fine
    mf.write_manifest(tmp_path / "s", m.replace(submissions=(Submission(stage=0, indices="0", executor="slurm",
                                                                        job_id="1"),)))
    with pytest.raises(UserError, match="sweep resume"):
        sweepdir.create(tmp_path / "s", _manifest(trials), "x")
    with pytest.raises(UserError, match="different sweep.*--dir"):
        sweepdir.create(tmp_path / "s", _manifest([Trial(id="other", index=0)]), "x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a sweep directory"):
        sweepdir.create(tmp_path / "busy", m, "x")
    # What an interrupted launch leaves (its spec copy, its lock file) does not block a retry.
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "sweep.yaml").write_text("x")
    (tmp_path / "half" / ".lock").write_text("")
    assert mf.read_manifest(sweepdir.create(tmp_path / "half", m, "x")).name == "s"


def test_a_second_launch_that_looked_before_the_first_recorded_its_array_erases_nothing(tmp_path):
    # Launch B found the directory unlaunched, then waited for the lock while launch A recorded its
    # array: B must look again under the lock and refuse, not write its empty manifest over A's record.
    import threading
    import time

    from jobs.lock import sweep_lock

    trials = [Trial(id="t0", index=0)]
    m = _manifest(trials)
    path = sweepdir.create(tmp_path / "s", m, "x")
    failed: list[BaseException] = []

    def launch_b() -> None:
        try:
            sweepdir.create(path, _manifest(trials), "x")
        except BaseException as exc:  # noqa: BLE001 - what B ran into is the assertion
            failed.append(exc)

    with sweep_lock(path, "launch A"):
        b = threading.Thread(target=launch_b)
        b.start()
        time.sleep(0.5)                 # B has looked (nothing submitted) and now waits for the lock
        mf.write_manifest(path, m.replace(submissions=(Submission(stage=0, indices="0", executor="slurm",
                                                                  token="abcd", state="pending"),)))
    b.join(30)
    assert len(failed) == 1 and isinstance(failed[0], UserError) and "sweep resume" in str(failed[0])
    assert [s.token for s in mf.read_manifest(path).submissions] == ["abcd"]

def test_a_directory_we_may_not_write_is_one_line_and_leaves_nothing(tmp_path):
    """Run as `nobody` (root writes anywhere): a sweep directory under a root-owned 0755 folder."""
    import shutil
    import subprocess
    import sys

    import tempfile

    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the launcher as another user")
    base = Path(tempfile.mkdtemp(prefix="sweep-ro-"))   # pytest's tmp_path is 0700: nobody cannot enter it
    base.chmod(0o755)
    ro = base / "ro"
    ro.mkdir(mode=0o755)
    code = ("import sys\nfrom launcher.cli import main\n"
            f"sys.exit(main(['launch', '--grid', 'a=1,2', '--executor', 'local', '--command', 'true',"
            f" '--dir', {str(ro / 'sweep')!r}]))\n")
    done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                           code], capture_output=True, text=True, cwd="/", env={"PATH": os.environ["PATH"],
                                                                                 "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write" in done.stderr and "Permission denied" in done.stderr
    assert list(ro.iterdir()) == []
    shutil.rmtree(base)


def test_a_full_disk_is_one_line_and_a_retry_works(tmp_path):
    """A filesystem that runs out of space half-way (a 64 KiB tmpfs would need root: a file size
    limit gives the same EFBIG from the kernel) leaves no directory, and a retry succeeds."""
    import subprocess
    import sys

    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
            "from launcher.cli import main\n"
            f"sys.exit(main(['launch', '--grid', 'a=' + ','.join(map(str, range(200))), '--executor', 'local',"
            f" '--command', 'true', '--dir', {str(tmp_path / 'big')!r}, '--dry-run']))\n")
    dry = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert dry.returncode == 0, dry.stderr     # a dry run writes nothing, so the limit does not matter
    code = code.replace(", '--dry-run'", "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write" in done.stderr and "File too large" in done.stderr
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".big.*"))


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
    manifest = sweepdir.build_manifest(spec, trials, executor="slurm", cluster=load_profile("mila"),
                                       workdir=str(tmp_path))
    path = sweepdir.create(tmp_path / "big", manifest, RANDOM_10K)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert size / len(trials) < 1024, f"{size / len(trials):.0f} bytes per trial"
    assert not (path / "trials").exists()
    assert mf.read_manifest(path).trial_at(1234).index == 1234
