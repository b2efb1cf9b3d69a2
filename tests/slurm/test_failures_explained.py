"""Every failure explained, on the real cluster (issue 17): a trial over its memory, a trial that exits 1
with a message, and `sweep logs` / `sweep status --failed` showing them."""
from __future__ import annotations

import json
import sys
import time


from jobs import manifest as mf
from launcher.cli import main

PY = sys.executable

PROGRAM = r"""
import sys
from jobs import runtime
args = dict(a.split("=", 1) for a in sys.argv[1:])
if args["x"] == "hog":
    import time
    block = bytearray(700 * 1024 * 1024)        # over the 300 MB the profile asks for
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(30)                               # Slurm samples memory every few seconds
if args["x"] == "bad":
    raise ValueError("learning rate must be positive, got -1")
runtime.write_metrics({"ok": 1})
"""
PROFILE = ("name: small\npartition: main\ncpus_per_task: 1\nmem: 300M\ntime: '00:10:00'\ngrace_s: 30\n"
           "max_array_size: 1000\nmax_queued_jobs: 1000\n")


def test_out_of_memory_and_a_program_error_are_named_with_their_fix(tmp_path, slurm_cleanup, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")   # the table's note column folds long causes in narrower consoles
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "profile.yaml").write_text(PROFILE)
    (tmp_path / "spec.yaml").write_text("name: explained\ngrid: {x: [ok, hog, bad]}\n")
    sweep = tmp_path / "sweep"
    assert main(["launch", str(tmp_path / "spec.yaml"), "--executor", "slurm", "--cluster", str(tmp_path / "profile.yaml"),
                 "--dir", str(sweep), "--command", f"{PY} {tmp_path / 'prog.py'}", "--max-attempts", "1"]) == 0
    slurm_cleanup.extend(s.job_id for s in mf.read_manifest(sweep).submissions)
    deadline = time.monotonic() + 120
    while True:
        capsys.readouterr()
        assert main(["status", str(sweep), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        if doc["active"] == 0 and doc["counts"].get("lost", 0) == 0:
            break
        assert time.monotonic() < deadline, doc["counts"]
        time.sleep(2)
    by_x = {t["params"]["x"]: t for t in doc["trials"]}
    assert by_x["ok"]["state"] == "completed" and by_x["ok"]["cause"] is None
    hog = by_x["hog"]
    assert hog["state"] == "failed" and hog["cause"]["kind"] == "oom", hog
    assert "out of memory" in hog["cause"]["summary"] and "mem:" in hog["cause"]["fix"]
    bad = by_x["bad"]
    assert bad["cause"]["summary"] == "exit code 1: ValueError: learning rate must be positive, got -1"
    # --failed lists only those two; the table says the same in words.
    capsys.readouterr()
    assert main(["status", str(sweep), "--failed", "--json"]) == 0
    assert sorted(t["params"]["x"] for t in json.loads(capsys.readouterr().out)["trials"]) == ["bad", "hog"]
    assert main(["status", str(sweep), "--failed"]) == 0
    out = capsys.readouterr().out
    assert "out of memory" in out and "learning rate must be positive" in out and "1 rows that did not fail" in out
    # sweep logs shows the program's own traceback and the task's Slurm output.
    assert main(["logs", str(sweep), bad["id"][:6]]) == 0
    out = capsys.readouterr().out
    assert "Traceback" in out and "trial.log" in out and "slurm-" in out
    assert main(["logs", str(sweep), str(hog["index"])]) == 0
    assert "exceeded memory limit" in capsys.readouterr().out
