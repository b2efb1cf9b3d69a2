"""jobs.topup: which waiting trials a finishing task may submit (no Slurm: the choice is pure apart
from reading results)."""
from __future__ import annotations

import json

from jobs import manifest as mf
from jobs.backends.slurm import BACKEND
from jobs.backends import SweepRef
from jobs.manifest import Manifest, Settings, Trial
from jobs.topup import ready_to_submit


def test_a_later_stage_waits_for_a_parent_that_was_submitted_and_has_not_completed(tmp_path):
    # Three trials, two stages. Trial 1 and the three second stages wait for room; trial 0 has
    # completed, trial 2 is still running in an array submitted earlier (its child was handed back).
    first = [Trial(id=f"a{i}", index=i) for i in range(3)]
    second = [Trial(id=f"b{i}", index=3 + i, stage=1, parent=f"a{i}") for i in range(3)]
    manifest = Manifest(settings=Settings(name="s", command=("true",)), trials=tuple(first + second))
    tdir = mf.trial_dir(tmp_path, "a0")
    tdir.mkdir(parents=True)
    (tdir / mf.RESULT).write_text(json.dumps({"status": "completed", "results": {}}))
    ready, behind = ready_to_submit(tmp_path, manifest, [1, 3, 4, 5])
    # b0: its parent completed; b1 goes with a1 (same plan, chained); b2 would start without a2's checkpoint.
    assert [t.index for t in ready] == [1, 3, 4] and behind == [5]
    plan = BACKEND.plan(ready, SweepRef(tmp_path, manifest), budget=100)
    child = next(a for a in plan.arrays if 4 in a.indices)
    assert child.depends_on is not None and 1 in plan.arrays[child.depends_on].indices
