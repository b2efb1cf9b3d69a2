"""The Slurm job script: golden file, shell quoting (by running the script), array planning."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.errors import UserError
from launcher.backends import plan_arrays
from launcher.backends import slurm as backend
from launcher.cluster import ClusterProfile, load_profile, with_resources
from launcher.trial import Trial

GOLDEN = Path(__file__).parent / "golden" / "array.sbatch"
REGEN = "SLURMSWEEP_REGEN_GOLDEN"


def golden_script() -> str:
    return backend.render_script(sweep_name="feudal grid!", sweep_dir="/scratch/u/sweeps/feudal_grid",
                                 workdir="/home/u/project", stage=1, offset=1000, indices=list(range(1000, 1010)),
                                 profile=load_profile("mila"), python="/opt/venv/bin/python",
                                 runner="/opt/venv/lib/python3.11/site-packages/jobs/start.py")


def test_script_matches_golden_file():
    text = golden_script()
    if os.environ.get(REGEN):
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), f"missing {GOLDEN}: create it with `{REGEN}=1 pytest {__file__}`"
    assert text == GOLDEN.read_text(), (
        f"the rendered job script differs from {GOLDEN}. If the change to slurm_templates/array.sbatch "
        f"or launcher/backends/slurm.py is intended, regenerate it with `{REGEN}=1 .venv/bin/python -m pytest "
        f"tests/unit/test_slurm_template.py` and review the diff")


def test_script_is_valid_bash_and_renders_profile():
    text = golden_script()
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert "#SBATCH --signal=B:TERM@300" in text and "#SBATCH --requeue" in text
    assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --partition=long" in text
    assert "module load" in text and "$SLURM_TMPDIR" in text          # profile lines verbatim
    assert "#SBATCH --job-name=feudal_grid-s1" in text                # sanitised name
    assert text.rstrip().endswith('-S /opt/venv/lib/python3.11/site-packages/jobs/start.py '
                                  '/scratch/u/sweeps/feudal_grid "$SLURM_ARRAY_TASK_ID" --offset 1000')


def test_hostile_values_are_quoted_and_arrive_intact(tmp_path):
    """Run the rendered script with bash: a fake interpreter records its argv; nothing else runs."""
    pwned = tmp_path / "pwned"
    sweep_dir = str(tmp_path / f"dir $(touch {pwned}) '; touch {pwned}; '")
    record = tmp_path / "argv.txt"
    fake_python = tmp_path / "fake python"
    fake_python.write_text(f"#!{sys.executable}\nimport sys\nopen({str(record)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n")
    fake_python.chmod(0o755)
    profile = ClusterProfile(name="t", partition="main")
    profile = with_resources(profile, {"time": "1:00 $(touch " + str(pwned) + ")"})
    text = backend.render_script(sweep_name="x`touch pwned`", sweep_dir=sweep_dir, workdir=str(tmp_path),
                                 stage=0, offset=7, indices=[7], profile=profile, python=str(fake_python),
                                 runner="/opt/jobs/start.py")
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0")
    subprocess.run(["bash", "-c", text], env=env, check=True, cwd=tmp_path)
    assert not pwned.exists()
    assert record.read_text().split("\n") == ["-S", "/opt/jobs/start.py", sweep_dir, "0", "--offset", "7"]
    assert "--time='1:00 $(touch" in text


def test_control_characters_are_refused():
    with pytest.raises(UserError, match="control character"):
        backend.render_script(sweep_name="x", sweep_dir="/tmp/a\nrm -rf /", workdir="/tmp", stage=0, offset=0,
                              indices=[0], profile=ClusterProfile())


def test_unknown_placeholder_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: job_name"):
        backend.render_script(sweep_name="x", sweep_dir="/tmp/s", workdir="/tmp", stage=0, offset=0, indices=[0],
                              profile=ClusterProfile(), template="{{nope}} {{job_name}}")


def test_unknown_resource_lists_valid_ones():
    with pytest.raises(UserError, match="Valid resources: .*partition"):
        with_resources(ClusterProfile(), {"partitoin": "long"}, source="s.yaml")


def _trials(n: int, stages: int = 1) -> list[Trial]:
    out = []
    for s in range(stages):
        for i in range(n):
            parent = out[(s - 1) * n + i].id if s else None
            out.append(Trial(id=f"t{s}-{i}", index=s * n + i, stage=s, parent=parent))
    return out


def test_large_stage_is_split_below_max_array_size():
    arrays, left = plan_arrays(_trials(2500), max_array_size=1000, max_queued_jobs=10_000)
    assert left == []
    assert [(a.offset, len(a.indices)) for a in arrays] == [(0, 1000), (1000, 1000), (2000, 500)]
    assert all(max(a.task_ids) < 1000 and min(a.task_ids) == 0 for a in arrays)


def test_progressive_chunks_depend_chunk_to_chunk_at_same_task_ids():
    trials = _trials(1500, stages=3)
    arrays, _ = plan_arrays(trials, max_array_size=1000, max_queued_jobs=10_000)
    by_index = {t.index: t for t in trials}
    assert [a.stage for a in arrays] == [0, 0, 1, 1, 2, 2]
    for a in arrays:
        if a.depends_on is None:
            continue
        parent_array = arrays[a.depends_on]
        assert parent_array.stage == a.stage - 1
        parent_of_task = {i - parent_array.offset: i for i in parent_array.indices}
        for index in a.indices:   # aftercorr: task t waits for task t of the parent array
            assert by_index[index].parent == by_index[parent_of_task[index - a.offset]].id


def test_queue_cap_keeps_whole_chains_and_records_the_rest():
    trials = _trials(10, stages=3)
    arrays, left = plan_arrays(trials, max_array_size=100, max_queued_jobs=10)
    submitted = sorted(i for a in arrays for i in a.indices)
    assert len(submitted) == 9                      # 3 whole chains of 3
    assert submitted == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert left == sorted(set(range(30)) - set(submitted))


def test_plan_sets_throttle_and_script():
    arrays, _ = backend.plan(_trials(4, stages=2), sweep_name="s", sweep_dir="/tmp/s", workdir="/tmp",
                             profile=load_profile("local"), max_parallel=2)
    assert [a.array for a in arrays] == ["0-3%2", "0-3%2"]
    assert arrays[1].depends_on == 0 and "--offset 4" in arrays[1].script
