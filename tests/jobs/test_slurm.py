"""Parsing of real sacct/squeue/scontrol output captured from the test cluster (tests/fixtures/sacct/),
and sbatch's retry loop against a stand-in `sbatch` executable.  No cluster needed."""
from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from jobs.errors import SlurmError
from jobs.slurm import (AccountingDisabled, JobId, JobState, epoch_s, parse_duration, parse_job_id,
                        parse_sacct, parse_scontrol, parse_squeue, sacct, sbatch, scancel, squeue, time_spec_s)

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "sacct"


def read(name: str) -> str:
    # Hand-written files explain themselves in '#' lines; real captures have none.
    return "".join(line for line in (DATA / name).read_text().splitlines(keepends=True)
                   if not line.startswith("#"))


def by_id(rows) -> dict:
    return {str(r.job_id): r for r in rows}


# --- job ids --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("12", JobId("12")),
    ("12_4", JobId("12", task=4)),
    ("12_4.batch", JobId("12", task=4, step="batch")),
    ("12_4.extern", JobId("12", task=4, step="extern")),
    ("12.0", JobId("12", step="0")),
    ("12_[3-7%2]", JobId("12", task_range="3-7%2")),
    ("12_[1,3-5]", JobId("12", task_range="1,3-5")),
    ("907+0", JobId("907+0")),
])
def test_parse_job_id_round_trips(text, expected):
    assert parse_job_id(text) == expected
    assert str(expected) == text


def test_task_ranges_expand_and_keep_the_throttle():
    assert parse_job_id("12_[3-7%2]").tasks() == [3, 4, 5, 6, 7]
    assert parse_job_id("12_[3-7%2]").throttle == 2
    assert parse_job_id("12_[1,3-5]").tasks() == [1, 3, 4, 5]
    assert parse_job_id("12_[1,3-5]").throttle is None
    assert parse_job_id("12_4").tasks() == [4]
    assert parse_job_id("12").tasks() == []


@pytest.mark.parametrize("bad", ["", "abc", "12_", "12_[3-7", "_4"])
def test_parse_job_id_rejects_garbage(bad):
    with pytest.raises(ValueError, match="not a Slurm job id"):
        parse_job_id(bad)


# --- states ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, state", [
    ("CANCELLED by 0", JobState.CANCELLED), ("CANCELLED+", JobState.CANCELLED),
    ("OUT_OF_ME+", JobState.OUT_OF_MEMORY), ("PD", JobState.PENDING), ("CG", JobState.COMPLETING),
    ("OOM", JobState.OUT_OF_MEMORY), ("REQUEUED", JobState.REQUEUED), ("", JobState.UNKNOWN),
    ("SOMETHING_NEW", JobState.UNKNOWN), ("preempted", JobState.PREEMPTED),
])
def test_state_parse(text, state):
    assert JobState.parse(text) is state


def test_finished_and_active_do_not_overlap_and_cover_the_real_states():
    for state in JobState:
        assert not (state.is_finished() and state.is_active()), state
    assert JobState.TIMEOUT.is_finished() and JobState.PREEMPTED.is_finished()
    assert JobState.REQUEUED.is_active() and JobState.PENDING.is_active()
    assert not JobState.UNKNOWN.is_finished() and not JobState.UNKNOWN.is_active()


# --- sacct ----------------------------------------------------------------------------------

def test_sacct_terminal_states_from_the_cluster():
    rows = by_id(parse_sacct(read("sacct_states.txt")))
    assert rows["5"].state is JobState.FAILED and rows["5"].return_code == 3
    assert rows["8"].state is JobState.TIMEOUT and rows["8"].elapsed_s == 60
    assert rows["8"].signal == 15
    # Over --mem without cgroups: jobacct_gather kills it -> FAILED with SIGKILL.
    assert rows["22"].state is JobState.FAILED and rows["22"].signal == 9
    assert rows["22.batch"].state is JobState.CANCELLED and rows["22.batch"].reason == "by 0"
    assert rows["42"].state is JobState.CANCELLED and rows["42"].reason == "by 0"
    assert rows["42"].start == datetime(2026, 11, 23, 19, 18, 45)
    assert rows["42"].node == "vm"


def test_sacct_preempted_job_keeps_every_run_with_duplicates():
    runs = [r for r in parse_sacct(read("sacct_states.txt"), duplicates=True) if str(r.job_id) == "25"]
    assert [r.state for r in runs] == [JobState.PREEMPTED, JobState.PREEMPTED, JobState.RUNNING]
    assert [r.restarts for r in runs] == [0, 1, 2]
    assert runs[-1].end is None
    latest = by_id(parse_sacct(read("sacct_states.txt")))["25"]
    assert latest.state is JobState.RUNNING and latest.restarts == 2


def test_sacct_requeued_task_shows_both_runs():
    rows = parse_sacct(read("sacct_requeue.txt"), duplicates=True)
    task1 = [r for r in rows if str(r.job_id) == "27_1"]
    assert [r.state for r in task1] == [JobState.REQUEUED, JobState.COMPLETED]
    latest = by_id(parse_sacct(read("sacct_requeue.txt")))
    assert latest["27_1"].state is JobState.COMPLETED and latest["27_1"].restarts == 1
    assert latest["27_0"].restarts == 0
    assert len(latest) == 4  # two tasks, each with its batch step


def test_sacct_running_array_with_grouped_pending_tasks():
    rows = by_id(parse_sacct(read("sacct_running_array.txt")))
    pending = rows["41_[2-7%2]"]
    assert pending.state is JobState.PENDING and pending.node is None and pending.start is None
    assert pending.job_id.tasks() == [2, 3, 4, 5, 6, 7] and pending.job_id.throttle == 2
    assert rows["41_0"].state is JobState.RUNNING and rows["41_0"].end is None


def test_sacct_finished_throttled_array_never_ran_more_than_two_at_once():
    rows = [r for r in parse_sacct(read("sacct_array_done.txt")) if r.job_id.job == "41"]
    assert sorted(t for r in rows for t in r.job_id.tasks()) == list(range(8))
    for row in rows:
        overlapping = [o for o in rows if o.start < row.end and row.start < o.end]
        assert len(overlapping) <= 2


def test_sacct_literal_states_we_cannot_cause_here():
    rows = by_id(parse_sacct(read("sacct_literal_states.txt")))
    assert rows["901_3"].state is JobState.OUT_OF_MEMORY and rows["901_3"].signal == 125
    assert rows["901_3.extern"].job_id.step == "extern"
    assert rows["902"].state is JobState.NODE_FAIL and rows["902"].node == "cn-b[002-003]"
    assert rows["902.0"].job_id.step == "0"
    assert rows["903"].state is JobState.BOOT_FAIL
    assert rows["904"].state is JobState.DEADLINE and rows["904"].start is None
    assert rows["905_[1,3-5]"].job_id.tasks() == [1, 3, 4, 5]
    assert len(rows["906_[0-9999%100]"].job_id.tasks()) == 10000
    assert rows["907+0"].state is JobState.COMPLETED


def test_sacct_short_line_is_an_error_not_a_silent_skip():
    with pytest.raises(ValueError, match="columns"):
        parse_sacct("12|COMPLETED|0:0\n")


# --- squeue / scontrol ----------------------------------------------------------------------

def test_squeue_throttled_array():
    rows = by_id(parse_squeue(read("squeue_array_throttle.txt")))
    assert rows["41_[2-7%2]"].reason == "JobArrayTaskLimit"
    assert rows["41_[2-7%2]"].state is JobState.PENDING and rows["41_[2-7%2]"].node is None
    running = [r for r in rows.values() if r.state is JobState.RUNNING]
    assert {str(r.job_id) for r in running} >= {"41_0", "41_1", "43_1", "43_3", "43_4", "43_5"}
    assert all(r.node == "vm" and r.time_s == 2 for r in running)
    assert rows["25"].reason == "BeginTime"  # a preempted job waiting to be requeued


@pytest.mark.parametrize("text, seconds", [
    ("0:00", 0), ("0:02", 2), ("12:03", 723), ("1:02:03", 3723), ("2-01:02:03", 176523),
    ("INVALID", 0), ("", 0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, seconds", [
    ("45", 2700), ("1:30", 90), ("01:02:03", 3723), ("1-12", 129600), ("1-12:30", 131400),
    ("2-01:02:03", 176523), (10, 600),
])
def test_time_limits_as_users_write_them(text, seconds):
    assert time_spec_s(text) == seconds      # a bare number is minutes, D-H is days and hours


@pytest.mark.parametrize("text", ["2h", "soon", "1:2:3:4", "-5", ""])
def test_what_is_not_a_slurm_time_is_refused(text):
    with pytest.raises(ValueError):
        time_spec_s(text)


def test_time_stamps():
    assert epoch_s("2026-12-04T15:44:15") == datetime(2026, 12, 4, 15, 44, 15).timestamp()
    assert epoch_s("Unknown") is None and epoch_s(None) is None and epoch_s("garbage") is None


def test_scontrol_show_job_record():
    job = parse_scontrol(read("scontrol_show_job.txt"))
    assert job["JobId"] == "27" and job["ArrayTaskId"] == "1" and job["ArrayJobId"] == "27"
    assert job["Restarts"] == "1" and job["JobState"] == "COMPLETED"
    assert job["TRES"] == "cpu=1,mem=256M,node=1,billing=1"      # '=' inside a value
    assert job["AllocNode:Sid"] == "localhost:4027"               # ':' inside a key
    assert job["Power"] == ""


# --- the commands, with stand-in executables on PATH -----------------------------------------

def fake_tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_sbatch_backs_off_while_slurm_is_busy_then_returns_the_id(fake_bin, tmp_path, capsys):
    count = tmp_path / "count"
    fake_tool(fake_bin, "sbatch", f"""
n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}
cat > {tmp_path}/script.$n
if [ "$n" -lt 2 ]; then
  echo "sbatch: error: Batch job submission failed: Resource temporarily unavailable" >&2; exit 1
fi
echo "4242;slurmsweep"
""")
    assert sbatch("#!/bin/sh\necho hi\n", ["--array=0-3"], backoff_s=0.01) == "4242"
    assert count.read_text().strip() == "3"
    assert (tmp_path / "script.2").read_text() == "#!/bin/sh\necho hi\n"  # fed on stdin each try
    err = capsys.readouterr().err
    assert err.count("trying again") == 2 and "Resource temporarily unavailable" in err


def test_sbatch_gives_up_after_retries_with_what_to_do(fake_bin):
    fake_tool(fake_bin, "sbatch", 'echo "sbatch: error: Batch job submission failed: Job violates '
                                  'accounting/QOS policy (job submit limit, user\'s size and/or time '
                                  'limits)" >&2; exit 1\n')
    with pytest.raises(SlurmError) as info:
        sbatch("#!/bin/sh\n", retries=2, backoff_s=0.001)
    assert "job submit limit" in str(info.value) and "sweep resume" in str(info.value)
    assert info.value.command.startswith("sbatch --parsable")


def test_sbatch_does_not_retry_a_real_mistake(fake_bin, tmp_path):
    count = tmp_path / "count"
    fake_tool(fake_bin, "sbatch", f'echo x >> {count}\n'
                                  'echo "sbatch: error: invalid partition specified: nope" >&2; exit 1\n')
    with pytest.raises(SlurmError, match="invalid partition specified: nope.*sinfo"):
        sbatch("#!/bin/sh\n", ["--partition=nope"], backoff_s=0.001)
    assert count.read_text().count("x") == 1


def test_missing_slurm_tools_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="command not found.*executor local"):
        squeue(["1"])


def test_squeue_of_jobs_gone_from_the_queue_is_empty(fake_bin):
    fake_tool(fake_bin, "squeue", 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1\n')
    assert squeue(["123"]) == []


def test_squeue_and_scancel_pass_ids_in_one_call(fake_bin, tmp_path):
    log = tmp_path / "argv"
    fake_tool(fake_bin, "squeue", f'echo "$@" >> {log}; printf "12_[3-7%%2]|PENDING|Priority||0:00\\n"\n')
    fake_tool(fake_bin, "scancel", f'echo "$@" >> {log}\n')
    rows = squeue(["12", "13"], user="alice")
    assert rows[0].job_id == JobId("12", task_range="3-7%2") and rows[0].reason == "Priority"
    scancel(["12", "13_4"], signal="USR1", batch=True)
    assert log.read_text().splitlines() == [
        "--noheader -o %i|%T|%r|%N|%M -j 12,13 -u alice",
        "--signal=USR1 --batch 12 13_4",
    ]


def test_sacct_is_one_call_for_parent_ids_and_keeps_latest_runs(fake_bin, tmp_path):
    log = tmp_path / "argv"
    fake_tool(fake_bin, "sacct", f'echo "$@" >> {log}; cat {DATA / "sacct_requeue.txt"}\n')
    rows = sacct(["27", "28"])
    assert log.read_text().split() == [
        "--parsable2", "--noheader", "--duplicates", "--format",
        "JobID,State,ExitCode,Start,End,ElapsedRaw,NodeList,MaxRSS,ReqMem,TimelimitRaw", "--jobs", "27,28",
        "--allocations"]
    assert {str(r.job_id): r.state for r in rows} == {
        "27_0": JobState.COMPLETED, "27_0.batch": JobState.COMPLETED,
        "27_1": JobState.COMPLETED, "27_1.batch": JobState.COMPLETED}
    assert sacct([]) == []


def test_sacct_without_accounting_says_to_fall_back(fake_bin):
    fake_tool(fake_bin, "sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1\n')
    with pytest.raises(AccountingDisabled, match="squeue"):
        sacct(["12"])


def test_requeue_retries_a_busy_controller_but_not_a_refusal(fake_bin, tmp_path, monkeypatch):
    from jobs import slurm

    monkeypatch.setattr(slurm, "BACKOFF_S", 0.001)
    count = tmp_path / "count"
    fake_tool(fake_bin, "scontrol", f"""
n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}
if [ "$n" -lt 2 ]; then echo "slurm_requeue error: Socket timed out on send/recv operation" >&2; exit 1; fi
""")
    slurm.scontrol_requeue(["12_3"])
    assert count.read_text().strip() == "3"
    fake_tool(fake_bin, "scontrol", f'echo x >> {tmp_path}/refused\n'
                                    'echo "Requested operation is presently disabled for job 12_3" >&2; exit 1\n')
    with pytest.raises(SlurmError, match="presently disabled"):
        slurm.scontrol_requeue(["12_3"])
    assert (tmp_path / "refused").read_text().count("x") == 1
