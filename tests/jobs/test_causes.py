"""jobs.causes: why a trial did not complete, in one line, with the fix, from what Slurm and the trial left."""
from __future__ import annotations

from jobs import slurm
from jobs.backends.slurm import live_tasks
from jobs.causes import cause_of, explain_exit, last_meaningful_line, rank_failure, rank_tail
from jobs.manifest import Trial
from jobs.state import TrialStatus
from jobs.trial_state import TrialState

HYDRA_TAIL = """=== attempt 0 job 12_0 node vm 2026-12-04T10:00:00Z ===
Could not override 'los.feudal_loss_weight'.
To append to your config use +los.feudal_loss_weight=0.3
Key 'los' is not in struct
    full_key: los
    object_type=dict

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
=== exit 1 after 2.1s ==="""
TRACEBACK = """Traceback (most recent call last):
  File "prog.py", line 3, in <module>
    raise ValueError("lr must be positive")
ValueError: lr must be positive"""


def test_the_last_line_that_says_something():
    assert last_meaningful_line(TRACEBACK) == "ValueError: lr must be positive"
    assert last_meaningful_line(HYDRA_TAIL) == "Key 'los' is not in struct"
    assert last_meaningful_line("\n\n=== exit 0 ===\n") is None


def test_exit_codes_and_signals():
    assert explain_exit(1, TRACEBACK) == "exit code 1: ValueError: lr must be positive"
    assert explain_exit(-9, "") == "killed by signal 9 (SIGKILL)"
    assert explain_exit(3, "diverged: loss is nan at step 3") == "exit code 3: diverged: loss is nan at step 3"


def status(state: TrialState, sacct: str = "", result: dict | None = None, slurm_id: str = "7_0") -> TrialStatus:
    live = live_tasks(slurm.parse_sacct(sacct), []).get(slurm_id) if sacct else None
    return TrialStatus(trial=Trial(id="t", index=0), state=state, slurm_id=slurm_id, live=live, result=result)


OVER_MEMORY = ("7_0|FAILED|0:9|2026-12-04T14:00:00|2026-12-04T14:00:05|5|vm||256M|10\n"
               "7_0.batch|CANCELLED by 0|0:9|2026-12-04T14:00:00|2026-12-04T14:00:05|5|vm|285980K||\n")


def test_out_of_memory_from_sacct_or_from_the_slurm_log(tmp_path):
    cause = cause_of(status(TrialState.FAILED, OVER_MEMORY))
    assert cause.kind == "oom" and "used 279 MB of 256 MB" in cause.summary and "mem:" in cause.fix
    oom = "7_0|OUT_OF_MEMORY|0:125|2026-11-23T10:00:00|2026-11-23T10:05:12|312|cn-a001||4096M|60\n"
    assert cause_of(status(TrialState.FAILED, oom)).kind == "oom"
    # Only the task's Slurm output says so (OverMemoryKill without cgroups, no MaxRSS recorded):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "7_0.out").write_text(
        "slurmstepd-vm: error: Job 7 exceeded memory limit (285978624 > 268435456), being killed\n")
    plain = "7_0|FAILED|0:9|2026-12-04T14:00:00|2026-12-04T14:00:05|5|vm||256M|10\n"
    assert cause_of(status(TrialState.FAILED, plain), tmp_path).kind == "oom"
    assert cause_of(status(TrialState.FAILED, plain)).kind == "program"


def test_time_limit_cancel_preemption_and_the_program_itself():
    timeout = "7_0|TIMEOUT|0:15|2026-12-04T14:00:00|2026-12-04T14:10:00|600|vm||256M|10\n"
    cause = cause_of(status(TrialState.TIMEOUT, timeout))
    assert cause.kind == "time_limit" and "00:10:00" in cause.summary and "time:" in cause.fix
    cancelled = "7_0|CANCELLED by 0|0:15|2026-12-04T14:00:00|2026-12-04T14:00:10|10|vm||256M|10\n"
    assert cause_of(status(TrialState.CANCELLED, cancelled)).summary == "cancelled by root"
    # The runner's own record cannot say who (scontrol names the job's owner): sacct's word wins.
    recorded = {"status": "cancelled", "error": "cancelled (TERM)"}
    assert cause_of(status(TrialState.CANCELLED, cancelled, result=recorded)).summary == "cancelled by root"
    assert cause_of(status(TrialState.CANCELLED, result=recorded)).summary == "cancelled (TERM)"
    failed = {"status": "failed", "error": explain_exit(1, TRACEBACK) + "\n" + TRACEBACK}
    assert cause_of(status(TrialState.FAILED, result=failed)).summary == "exit code 1: ValueError: lr must be positive"
    diverged = {"status": "diverged", "error": "non-finite loss at step 3: {'train/lm_loss': nan}"}
    assert cause_of(status(TrialState.DIVERGED, result=diverged)).summary.startswith("diverged: non-finite loss")
    assert cause_of(status(TrialState.COMPLETED, result={"status": "completed"})) is None
    assert cause_of(status(TrialState.LOST)).kind == "lost"


# torchrun 2.13 when rank 1 of 2 fails (the runner's --tee=3 --role=rank): rank 0, stopped, fails in a
# collective after rank 1 has gone; the agent's report comes last.
AGENT_TRACEBACK = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
/venv/bin/python FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-04_14:53:19
  host      : cn-g001
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 28068)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-04_14:53:19
  host      : cn-g001
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 28069)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================"""
TORCHRUN_TEE = """=== attempt 0 job 12_0 node cn-g001 2026-12-04T14:53:10Z ===
[rank0]:model: hrm_tiny, 1.2M params on cpu x2; global batch 16
[rank1]:Traceback (most recent call last):
[rank1]:  File "/w/train/pretrain.py", line 388, in training_step
[rank1]:    raise ValueError("lr must be positive")
[rank1]:ValueError: lr must be positive
W1204 14:53:19.483000 27966 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 28068 closing signal SIGTERM
[rank0]:[W1204 14:53:19.5 ProcessGroupGloo.cpp:123] Warning: peer gone
[rank0]:RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer
E1204 14:53:19.680000 27966 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1) local_rank: 1 (pid: 28069) of binary: /venv/bin/python
""" + AGENT_TRACEBACK.replace("{code}", "1")
# A user's own `torchrun --nproc_per_node=2 prog.py`: no prefixes; rank 1 killed (the OOM killer).
TORCHRUN_PLAIN = """hello from 1
hello from 0
loading shard 3
W1204 14:56:00.668000 7829 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 7850 closing signal SIGTERM
E1204 14:56:00.767000 7829 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 7851) of binary: /venv/bin/python
""" + AGENT_TRACEBACK.replace("{code}", "-9")


def test_a_failed_rank_under_torchrun_is_named_with_its_own_last_line():
    assert last_meaningful_line(TORCHRUN_TEE).startswith("=====")   # what the log's last line says
    assert explain_exit(1, TORCHRUN_TEE) == "rank 1: exit code 1: ValueError: lr must be positive"
    failure = rank_failure(TORCHRUN_TEE)
    assert (failure.rank, failure.local_rank, failure.exitcode) == (1, 1, 1)
    assert explain_exit(1, TORCHRUN_PLAIN) == "rank 1: killed by signal 9 (SIGKILL): loading shard 3"
    assert rank_failure(TRACEBACK) is None and explain_exit(1, TRACEBACK).startswith("exit code 1: ValueError")


def test_the_error_tail_of_a_failed_rank_is_its_own_lines_and_the_root_cause():
    tail = rank_tail(TORCHRUN_TEE, 30).splitlines()
    assert tail[:4] == ["[rank1]:Traceback (most recent call last):",
                        '[rank1]:  File "/w/train/pretrain.py", line 388, in training_step',
                        '[rank1]:    raise ValueError("lr must be positive")',
                        "[rank1]:ValueError: lr must be positive"]
    assert tail[4] == "Root Cause (first observed failure):" and "  rank      : 1 (local_rank: 1)" in tail
    assert not any("rank0" in line or "Connection closed" in line for line in tail)
    assert len(rank_tail(TORCHRUN_TEE, 9).splitlines()) == 9            # the block, and what room is left
    plain = rank_tail(TORCHRUN_PLAIN, 30).splitlines()
    assert plain[:3] == ["hello from 1", "hello from 0", "loading shard 3"] and "exitcode  : -9" in plain[-3]
    assert rank_tail("a\nb\nc", 2) == "b\nc"                          # anything else: its last lines
