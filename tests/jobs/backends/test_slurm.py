"""jobs.backends.slurm: the job script (golden file, shell quoting by running it), planning with tokens,
what one sacct + one squeue say about a sweep's tasks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import slurm
from jobs.backends import SweepRef
from jobs.backends import slurm as backend
from jobs.errors import SlurmError, UserError
from jobs.slurm import AccountingDisabled
from jobs.manifest import Manifest, Settings, Submission
from jobs.profile import ClusterProfile
from launcher.cluster import load_profile, with_resources
from tests.jobs.backends.support import chained_trials

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "array.sbatch"
REGEN = "SLURMSWEEP_REGEN_GOLDEN"


def golden_script() -> str:
    return backend.render_script(sweep_name="feudal grid!", sweep_dir="/scratch/u/sweeps/feudal_grid",
                                 workdir="/home/u/project", stage=1, indices=list(range(1000, 1010)),
                                 token="c0ffee42", profile=load_profile("mila"), python="/opt/venv/bin/python",
                                 runner="/opt/venv/lib/python3.11/site-packages/jobs/start.py")


def test_script_matches_golden_file():
    text = golden_script()
    if os.environ.get(REGEN):
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), f"missing {GOLDEN}: create it with `{REGEN}=1 pytest {__file__}`"
    assert text == GOLDEN.read_text(), (
        f"the rendered job script differs from {GOLDEN}. If the change to slurm_templates/array.sbatch "
        f"or jobs/backends/slurm.py is intended, regenerate it with `{REGEN}=1 .venv/bin/python -m pytest "
        f"tests/jobs/backends/test_slurm.py` and review the diff")


def test_script_is_valid_bash_and_renders_profile():
    text = golden_script()
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert "#SBATCH --signal=B:TERM@300" in text and "#SBATCH --requeue" in text
    assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --partition=long" in text
    assert "module load" in text and "$SLURM_TMPDIR" in text          # profile lines verbatim
    assert "#SBATCH --job-name=feudal_grid-s1-c0ffee42" in text       # sanitised name, the token
    assert text.rstrip().endswith('-S /opt/venv/lib/python3.11/site-packages/jobs/start.py '
                                  '/scratch/u/sweeps/feudal_grid "$SLURM_ARRAY_TASK_ID" --array c0ffee42')


def test_hostile_values_are_quoted_and_arrive_intact(tmp_path):
    """Run the rendered script with bash: a fake interpreter records its argv; nothing else runs."""
    pwned = tmp_path / "pwned"
    sweep_dir = str(tmp_path / f"dir $(touch {pwned}) '; touch {pwned}; '")
    record = tmp_path / "argv.txt"
    fake_python = tmp_path / "fake python"
    fake_python.write_text(f"#!{sys.executable}\nimport sys\nopen({str(record)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n")
    fake_python.chmod(0o755)
    profile = ClusterProfile(name="t", partition="main")
    profile = with_resources(profile, {"account": "lab $(touch " + str(pwned) + ")"})
    text = backend.render_script(sweep_name="x`touch pwned`", sweep_dir=sweep_dir, workdir=str(tmp_path),
                                 stage=0, indices=[7], token="abcd1234", profile=profile, python=str(fake_python),
                                 runner="/opt/jobs/start.py")
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0")
    subprocess.run(["bash", "-c", text], env=env, check=True, cwd=tmp_path)
    assert not pwned.exists()
    assert record.read_text().split("\n") == ["-S", "/opt/jobs/start.py", sweep_dir, "0", "--array", "abcd1234"]
    assert "--account='lab $(touch" in text


def resources_of(script: str) -> dict[str, str]:
    return dict(line[len("#SBATCH --"):].split("=", 1) for line in script.splitlines()
                if line.startswith("#SBATCH --") and "=" in line)


@pytest.mark.parametrize("gres,cpus,expected", [
    ("gpu:1", 4, ("gpu:4", "16")),                    # the Mila profile: 4 GPUs, 4 CPUs for each rank
    ("gpu:a100l:1", 2, ("gpu:a100l:4", "8")),         # the GPU type is kept
    (None, None, ("gpu:4", "4")),                     # nothing asked before: the GPUs, one CPU per rank
    ("gpu:1,tmpdisk:10G", None, ("gpu:4,tmpdisk:10G", "4")),
])
def test_a_trial_of_several_processes_asks_for_its_gpus_and_cpus(gres, cpus, expected):
    base = load_profile("mila").replace(gres=gres, cpus_per_task=cpus)
    profile = with_resources(base, {"gpus_per_trial": 4}, source="s.yaml")
    got = resources_of(backend.render_script(sweep_name="x", sweep_dir="/s", workdir="/w", stage=0, indices=[0],
                                             token="ab12", profile=profile))
    assert (got["gres"], got["cpus-per-task"]) == expected
    assert profile.gres == gres and profile.cpus_per_task == cpus   # the profile as given: a resume renders it again
    one = resources_of(backend.render_script(sweep_name="x", sweep_dir="/s", workdir="/w", stage=0, indices=[0],
                                             token="ab12", profile=with_resources(base, {"gpus_per_trial": 1})))
    assert one.get("gres") == gres and one.get("cpus-per-task") == (str(cpus) if cpus else None)


def test_control_characters_are_refused():
    with pytest.raises(UserError, match="control character"):
        backend.render_script(sweep_name="x", sweep_dir="/tmp/a\nrm -rf /", workdir="/tmp", stage=0, token="ab12",
                              indices=[0], profile=ClusterProfile())


def test_unknown_placeholder_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: job_name"):
        backend.render_script(sweep_name="x", sweep_dir="/tmp/s", workdir="/tmp", stage=0, indices=[0], token="ab12",
                              profile=ClusterProfile(), template="{{nope}} {{job_name}}")


def test_a_token_that_is_not_hex_is_refused():
    with pytest.raises(ValueError, match="hex"):
        backend.render_script(sweep_name="x", sweep_dir="/tmp/s", workdir="/tmp", stage=0, indices=[0],
                              token="$(id)", profile=ClusterProfile())


def test_plan_sets_throttle_token_and_script(tmp_path):
    trials = chained_trials(4, stages=2)
    m = Manifest(settings=Settings(name="s", command=("true",), workdir="/tmp", cluster=load_profile("local")),
                 trials=tuple(trials))
    plan = backend.BACKEND.plan(trials, SweepRef(tmp_path, m), budget=100, max_parallel=2)
    assert [a.array for a in plan.arrays] == ["0-3%2", "0-3%2"]
    assert plan.arrays[1].depends_on == 0 and len({a.token for a in plan.arrays}) == 2
    for a in plan.arrays:
        assert f"--array {a.token}" in a.script and f"-s{a.stage}-{a.token}" in a.script


# --- what Slurm says: one sacct, one squeue ------------------------------------------------------

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "sacct"


def test_query_slurm_one_call_each_and_accounting_fallback():
    calls = []

    def sacct(ids, steps=False):
        calls.append(("sacct", list(ids)))
        raise AccountingDisabled(["sacct"], "Slurm accounting storage is disabled")

    def squeue(ids, user=None):
        calls.append(("squeue", ids))
        return slurm.parse_squeue((DATA / "state_squeue_grouped.txt").read_text())

    live, accounting, notes = backend.query_slurm(["129", "130"], sacct=sacct, squeue=squeue)
    assert [c[0] for c in calls] == ["sacct", "squeue"] and calls[0][1] == ["129", "130"]
    assert not accounting and len(notes) == 1 and "sacct unavailable" in notes[0]
    assert live["129_9"].state == "PENDING" and live["130_2"].reason == "Dependency"

    def broken_squeue(ids, user=None):
        raise SlurmError(["squeue"], "slurm_load_jobs error: Unable to contact slurm controller")

    live, accounting, notes = backend.query_slurm(["129"], sacct=lambda ids, steps=False: [], squeue=broken_squeue)
    assert accounting and live == {} and "squeue failed" in notes[0]


def test_memory_and_limits_come_from_the_steps_and_the_allocation():
    text = ("7_0|FAILED|0:9|2026-12-04T14:00:00|2026-12-04T14:00:05|5|vm||256M|10\n"
            "7_0.batch|CANCELLED by 0|0:9|2026-12-04T14:00:00|2026-12-04T14:00:05|5|vm|285980K||\n")
    live = backend.live_tasks(slurm.parse_sacct(text), [])["7_0"]
    assert live.req_mem_mb == 256 and live.max_rss_mb == pytest.approx(279.3, abs=0.1)
    assert live.time_limit_s == 600 and live.exit_code == "0:9"


def test_packed_submission_maps_every_trial_of_a_task():
    from jobs.manifest import Submission

    trials = chained_trials(5)
    m = Manifest(settings=Settings(name="s", command=("true",)), trials=tuple(trials),
                 submissions=(Submission(stage=0, indices="0-4", executor="slurm", job_id="70", pack=2),))
    text = "70_0|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:05|5|n1\n"
    live = backend.slurm_live(m, sacct=lambda ids, steps=False: slurm.parse_sacct(text),
                              squeue=lambda ids, user=None: slurm.parse_squeue("70_2|RUNNING|None|n1|0:09\n"))
    assert {i: t.state for i, t in live.tasks.items()} == {0: "COMPLETED", 1: "COMPLETED", 4: "RUNNING"}
    assert m.submissions[0].task_ids()[3] == "70_1" and m.submissions[0].task_ids()[4] == "70_2"


def test_finding_old_records_looks_back_past_sacct_s_two_days():
    import time

    from jobs.backends.slurm import _sacct_since

    def record(stamp: str) -> Submission:
        return Submission(stage=0, indices="0", executor="slurm", token="t", submitted=stamp)

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert _sacct_since([record(now), record("")]) is None                       # sacct's default window
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5 * 86400))
    since = time.mktime(time.strptime(_sacct_since([record(now), record(old)]), "%Y-%m-%dT%H:%M:%S"))
    assert abs(since - (time.time() - 6 * 86400)) < 120                          # a day before it, local time
