"""`sweep report` and `sweep best` of a successive-halving sweep run for real on the local executor: the
rung ladder, the GPU-hours against running every trial to the top rung, the best of the highest rung."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from jobs import manifest as mf
from jobs.profile import ClusterProfile
from jobs.state import collect
from launcher.cli import main
from results import analysis as an
from tests.fixtures.asha_records import PROGRAM

PY = sys.executable
SPEC = """
name: ladder
method: asha
trials: 8
seed: 5
metric: score
space: {x: {distribution: uniform, min: 0, max: 1}}
fixed: {delay: 0.01}
rungs: {key: steps, values: [2, 4, 8]}
eta: 2
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("asha")
    (root / "spec.yaml").write_text(SPEC)
    sweep = root / "sweep"
    assert main(["launch", str(root / "spec.yaml"), "--executor", "local", "--dir", str(sweep), "--max-parallel", "2",
                 "--command", f"{PY} {PROGRAM}", "--json"]) == 0
    deadline = time.monotonic() + 120
    while not all(t.state.is_ended() for t in collect(sweep).trials):    # promoted runs: background pools
        assert time.monotonic() < deadline
        time.sleep(0.3)
    return sweep


@pytest.mark.slow
def test_the_report_shows_the_rung_ladder_and_the_compute_against_every_trial_to_the_top(sweep, capsys):
    assert main(["report", str(sweep)]) == 0
    capsys.readouterr()
    text = (sweep / "reports" / "report.md").read_text()
    section = text.split("## Successive halving", 1)[1].split("\n## ", 1)[0]
    assert "## Progressive stages" not in text      # the rungs are not stages of a progressive plan
    m = mf.read_manifest(sweep)
    held = set(m.held_indices())
    ran = [sum(1 for t in m.trials if t.stage == r and t.index not in held) for r in range(3)]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ") and "rung" not in line]
    assert [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows] == [(0, 2, ran[0], ran[0]), (1, 4, ran[1], ran[1]),
                                                                           (2, 8, ran[2], ran[2])]
    assert [r[4].strip() for r in rows] == [str(ran[1]), str(ran[2]), ""]
    assert "spent**; running every trial to the top rung: about **" in section and "8 trials x" in section
    assert (sweep / "reports" / "figures" / "rung_ladder.png").stat().st_size > 0
    # The failures section does not list the trials successive halving stopped.
    assert "have no result yet" not in text


@pytest.mark.slow
def test_best_comes_from_the_highest_rung_reached(sweep, capsys):
    # Ranked lowest first, rung 0's short runs would win; a smaller budget is not comparable.
    assert main(["best", str(sweep), "--goal", "min"]) == 0
    out = capsys.readouterr()
    m = mf.read_manifest(sweep)
    top = [t for t in m.trials if t.stage == 2 and mf.result_path(sweep, t.id).exists()]
    best = min(top, key=lambda t: json.loads(mf.result_path(sweep, t.id).read_text())["results"]["score"])
    assert f"trial {best.id}" in out.err and "steps=8" in out.out


def test_compute_counts_every_run_and_estimates_the_full_ladder_from_each_rungs_median():
    m = mf.Manifest(settings=mf.Settings(name="s", command=("p",), method="asha", metric="score",
                                         stages=mf.Stages(key="steps", values=(1, 2, 4))),
                    trials=tuple(mf.Trial(id=f"t{i}", index=i, stage=i // 4) for i in range(12)))
    frame = pd.DataFrame({"stage": [0, 0, 0, 0, 1, 1, 2], "status": ["completed"] * 6 + ["failed"],
                          "runtime_s": [100.0, 120, 110, 90, 200, 220, 50]})
    spent, full, how = an.halving_compute(frame, m)
    assert spent == pytest.approx(890 / 3600)
    assert full is None and "rung 2 has no completed run" in how          # nothing measured the top rung yet
    frame.loc[6, "status"] = "completed"
    spent, full, how = an.halving_compute(frame, m)
    assert full == pytest.approx(4 * (105 + 210 + 50) / 3600) and how.startswith("4 trials x")
    # Each task of a 2-process trial holds 2 GPUs (ClusterProfile.task_request), whatever gres says.
    two = m.replace(settings=m.settings._replace(cluster=ClusterProfile(gres="gpu:1", gpus_per_trial=2)))
    spent2, full2, how2 = an.halving_compute(frame, two)
    assert (spent2, full2) == pytest.approx((2 * spent, 2 * full)) and "2 GPUs per task" in how2
    ladder = an.rung_ladder(frame.assign(**{"results.score": 1.0}), an.Metric("results.score", "score", "minimize", ""), two)
    assert ladder["gpu_hours"].tolist() == pytest.approx([2 * 420 / 3600, 2 * 420 / 3600, 2 * 50 / 3600])


def _asha_sweep(path: Path, scores: dict[str, float]) -> Path:
    """Two rung-0 trials and the one successive halving promoted (from t1); `scores` by trial id."""
    m = mf.Manifest(settings=mf.Settings(name=path.name, command=("p",), method="asha", metric="score",
                                         goal="minimize", stages=mf.Stages(key="steps", values=(1, 2))),
                    trials=(mf.Trial(id="t0", index=0, stage=0, params={"x": 0}),
                            mf.Trial(id="t1", index=1, stage=0, params={"x": 1}),
                            mf.Trial(id="t2", index=2, stage=1, parent="t1", params={"x": 1})))
    path.mkdir()
    mf.write_manifest(path, m)
    for t in m.trials:
        mf.trial_dir(path, t.id).mkdir(parents=True)
        mf.result_path(path, t.id).write_text(json.dumps(
            {"schema": 1, "trial_id": t.id, "stage": t.stage, "hyperparameters": t.params,
             "results": {"score": scores[t.id]}, "status": "completed", "runtime_s": 1.0}))
    return path


def test_comparing_sweeps_takes_each_best_from_the_highest_rung_reached(tmp_path, monkeypatch):
    from results import compare
    from results import figures as fig

    # Lowest first, rung 0's short run t0 would win; the table and the figure's star show t2, of rung 1.
    first = _asha_sweep(tmp_path / "a", {"t0": 0.1, "t1": 0.5, "t2": 0.3})
    second = _asha_sweep(tmp_path / "b", {"t0": 0.2, "t1": 0.6, "t2": 0.4})
    drawn = []
    monkeypatch.setattr(fig, "_save", lambda figure, path: drawn.append(figure) or path)
    got = compare.build_comparison([str(first), str(second)], str(tmp_path / "cmp"))
    assert got.best["best_trial"].tolist() == ["t2", "t2"]
    assert got.best["best"].tolist() == pytest.approx([0.3, 0.4])
    assert got.best["completed"].tolist() == [3, 3]
    text = Path(got.path).read_text()
    assert "# a: trial t2, score = 0.3" in text and "# b: trial t2, score = 0.4" in text
    stars = [c for c in drawn[0].axes[0].collections if c.get_zorder() == 3]
    assert [float(s.get_offsets()[0][1]) for s in stars] == pytest.approx([0.3, 0.4])
    fig._plt().close(drawn[0])
