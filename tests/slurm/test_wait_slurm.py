"""`sweep launch --executor slurm --wait` on the real test cluster: returns once every trial has
its result (exit 0), or once Slurm holds none of the missing ones (exit 1)."""
from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

from jobs import manifest as mf
from launcher.cli import main

PY = sys.executable
PROGRAM = """
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
if args.get("x") == args.get("fail", "-"):
    sys.exit("failing on purpose")
json.dump({"value": int(args["x"]) ** 2}, open(os.environ["SWEEP_RESULT_FILE"], "w"))
"""


def launch_wait(tmp_path: Path, slurm_cleanup: list, n: int, *extra: str) -> tuple[int, dict, float]:
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: wait\nmethod: grid\ngrid:\n  x: {list(range(n))}\n")
    sweep = tmp_path / "sweep"
    out = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out):
        rc = main(["launch", str(spec), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
                   "--command", f"{PY} {tmp_path / 'prog.py'}", "--wait", "--json", *extra])
    elapsed = time.monotonic() - t0
    doc = json.loads(out.getvalue())
    slurm_cleanup.extend(s["job_id"] for s in doc["submissions"] if s.get("job_id"))
    return rc, doc, elapsed


def test_wait_returns_when_every_result_is_written(tmp_path, slurm_cleanup):
    rc, doc, _ = launch_wait(tmp_path, slurm_cleanup, 20)
    assert rc == 0
    assert doc["states"] and set(doc["states"].values()) == {"completed"}
    manifest = mf.read_manifest(doc["sweep_dir"])
    for t in manifest.trials:   # on disk the moment --wait returned
        result = json.loads(mf.result_path(doc["sweep_dir"], t.id).read_text())
        assert result["results"]["value"] == t.params["x"] ** 2


def test_wait_ends_with_exit_1_when_a_trial_fails(tmp_path, slurm_cleanup):
    rc, doc, elapsed = launch_wait(tmp_path, slurm_cleanup, 4, "--max-attempts", "1", "fail=2")
    assert rc == 1
    failed = [tid for tid, state in doc["states"].items() if state != "completed"]
    assert len(failed) == 1 and doc["states"][failed[0]] == "failed"
    assert elapsed < 120
