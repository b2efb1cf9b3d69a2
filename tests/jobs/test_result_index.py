"""jobs/result_index.py: the sweep's append-only index of written results, which lets `sweep
collect` re-read only what changed. Real files, real concurrent appenders."""
from __future__ import annotations

import json
import multiprocessing
import os

from jobs import result_index as ri


def _index_file(sweep) -> str:
    return os.path.join(ri.index_dir(sweep), ri.host_name() + ri.SUFFIX)


def test_append_then_scan_names_the_trials_and_reads_only_what_is_new(tmp_path):
    sweep = str(tmp_path)
    assert ri.append(sweep, "t1", status="completed") and ri.append(sweep, "t2")
    first = ri.scan(sweep)
    assert first.present and not first.damaged and first.trials == {"t1", "t2"}
    [(name, (inode, end))] = first.positions.items()
    assert end == os.path.getsize(_index_file(sweep)) and inode == os.stat(_index_file(sweep)).st_ino
    ri.append(sweep, "t3")
    again = ri.scan(sweep, since=first.positions)
    assert again.trials == {"t3"} and not again.damaged
    assert ri.scan(sweep, since=again.positions).trials == set()
    records = [json.loads(line) for line in open(_index_file(sweep))]
    assert {r["trial"]: r.get("status") for r in records} == {"t1": "completed", "t2": None, "t3": None}


def test_a_sweep_without_an_index(tmp_path):
    scan = ri.scan(str(tmp_path))
    assert not scan.present and not scan.damaged and scan.trials == set()
    assert not os.path.exists(ri.index_dir(str(tmp_path)))


def test_torn_last_line_is_left_for_the_next_read(tmp_path):
    sweep = str(tmp_path)
    ri.append(sweep, "t1")
    path = _index_file(sweep)
    with open(path, "ab") as f:
        f.write(b'{"trial":"t2","sta')          # a writer still writing (or killed mid-write)
    first = ri.scan(sweep)
    assert first.trials == {"t1"} and not first.damaged
    assert ri.scan(sweep, read=False).positions == first.positions   # where complete lines end
    with open(path, "ab") as f:
        f.write(b'tus":"completed","t":1}\n')
    assert ri.scan(sweep, since=first.positions).trials == {"t2"}


def test_what_cannot_be_vouched_for_is_damaged(tmp_path):
    sweep = str(tmp_path)
    ri.append(sweep, "t1")
    before = ri.scan(sweep).positions
    path = _index_file(sweep)
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x00\n")             # what an NFS client crash can leave
    ri.append(sweep, "t2")
    scan = ri.scan(sweep, since=before)
    assert scan.damaged and "t2" in scan.trials
    # Rewritten (a new inode) or truncated: start over, and say so.
    with open(path + ".new", "w") as f:
        f.write(ri.line("t9"))
    os.replace(path + ".new", path)
    assert ri.scan(sweep, since=before).damaged
    os.truncate(path, 0)
    assert ri.scan(sweep, since=before).damaged
    os.unlink(path)
    assert ri.scan(sweep, since=before).damaged                  # a file vanished


def test_each_host_appends_to_its_own_file(tmp_path, monkeypatch):
    sweep = str(tmp_path)
    monkeypatch.setenv("SLURMD_NODENAME", "cn-a01")
    ri.append(sweep, "t1")
    monkeypatch.setenv("SLURMD_NODENAME", "cn/../b02")          # never a path
    ri.append(sweep, "t2")
    assert sorted(os.listdir(ri.index_dir(sweep))) == ["cn-a01.jsonl", "cn_.._b02.jsonl"]
    first = ri.scan(sweep)
    assert first.trials == {"t1", "t2"}
    monkeypatch.setenv("SLURMD_NODENAME", "cn-c03")            # a new host after the scan
    ri.append(sweep, "t3")
    assert ri.scan(sweep, since=first.positions).trials == {"t3"}


def test_an_unwritable_sweep_does_not_fail_the_trial(tmp_path):
    (tmp_path / ri.INDEX_DIR).write_text("a file where the directory should be")
    assert ri.append(str(tmp_path), "t1") is False


def _appender(sweep: str, worker: int, n: int) -> None:
    for i in range(n):
        ri.append(sweep, f"w{worker}-{i:04d}", status="completed")


def test_concurrent_appenders_on_one_host_lose_and_tear_nothing(tmp_path):
    sweep = str(tmp_path)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_appender, args=(sweep, w, 150)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = open(_index_file(sweep), "rb").read().splitlines()
    assert len(lines) == 900 and all(json.loads(line)["status"] == "completed" for line in lines)
    assert ri.scan(sweep).trials == {f"w{w}-{i:04d}" for w in range(6) for i in range(150)}
