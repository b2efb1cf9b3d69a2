"""`sweep report` and `sweep best` on a small synthetic sweep with stages, environments,
progress.jsonl, failures and a corrupt file."""
from __future__ import annotations

import json
import math
import os
import random
import shlex

import pytest

from launcher.cli import main
from results import analysis as an
from results.report import build_report

ENVS = ("sudoku-easy", "sudoku-hard")
COMMAND = ["python", "-m", "train", "data_path=data/sudoku extreme"]


def _score(lr: float, hidden: int, env: str, stage: int) -> float:
    # Best near lr=1e-3, bigger is better, the hard environment is harder, later stages better.
    base = 0.9 - 0.25 * abs(math.log10(lr) + 3) + 0.0002 * hidden - (0.3 if env == "sudoku-hard" else 0)
    return round(base + 0.05 * stage, 6)


def make_sweep(root, *, n: int = 8, stages: int = 2) -> str:
    """A progressive sweep: n configs x 2 environments x `stages` stages, written like the runner does."""
    sweep = os.path.join(root, "demo")
    rng = random.Random(1)
    trials, index = [], 0
    configs = [{"lr": 10 ** rng.uniform(-4.5, -1.5), "arch.hidden_size": rng.choice([128, 256, 512])}
               for _ in range(n)]
    for stage in range(stages):
        for env in ENVS:
            for k, params in enumerate(configs):
                tid = f"s{stage}{env[-4:]}{k:02d}"
                parent = f"s{stage - 1}{env[-4:]}{k:02d}" if stage else None
                overrides = {**params, "environment": env, "arch.halt_max_steps": [4, 8][stage],
                             "run_name": "it's \"quoted\""}
                t = {"id": tid, "index": index, "stage": stage, "params": params, "overrides": overrides,
                     "environment": env}
                if parent:
                    t["parent"] = parent
                trials.append(t)
                index += 1
    manifest = {"schema": 1, "name": "demo", "method": "random", "metric": "eval/exact_accuracy",
                "goal": "maximize", "command": COMMAND, "trials": trials,
                "stages": {"key": "arch.halt_max_steps", "values": [4, 8], "checkpoint_key": "checkpoint_path"},
                "submissions": [{"stage": 0, "job_id": "100", "array": f"0-{2 * n - 1}%4", "offset": 0}]}
    os.makedirs(os.path.join(sweep, "trials"))
    with open(os.path.join(sweep, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    for t in trials:
        tdir = os.path.join(sweep, "trials", t["id"])
        os.makedirs(tdir)
        score = _score(t["params"]["lr"], t["params"]["arch.hidden_size"], t["environment"], t["stage"])
        status, error, results = "completed", None, {"eval/exact_accuracy": score, "eval/accuracy": score + 0.05,
                                                      "eval/lm_loss": 2 - score, "last_step": 100}
        if t["index"] == 3:
            status, error, results = "diverged", "loss is NaN at step 40", {"eval/lm_loss": float("nan")}
        if t["index"] == 5:
            status, error, results = "failed", "Traceback (most recent call last):\nRuntimeError: CUDA error", {}
        if t["index"] == 9:   # stopped early by the pruner at step 25 of 100, after 60 s
            status, results = "pruned", {"eval/exact_accuracy": score / 4, "pruned_at_step": 25, "last_step": 25}
        if t["index"] == 6:
            continue   # still running: no result yet
        if t["index"] == 7:
            with open(os.path.join(tdir, "result.json"), "w") as f:
                f.write('{"schema": 1, "results": {"eval/exact')   # torn write
            continue
        rec = {"schema": 1, "sweep": "demo", "trial": t["index"], "trial_id": t["id"], "stage": t["stage"],
               "environment": t["environment"], "hyperparameters": t["params"], "results": results,
               "status": status, "error": error, "runtime_s": 60.0, "job": {"id": f"100_{t['index']}", "attempt": 0}}
        with open(os.path.join(tdir, "result.json"), "w") as f:
            json.dump(rec, f)
        with open(os.path.join(tdir, "progress.jsonl"), "w") as f:
            for step in range(0, 101, 20):
                f.write(json.dumps({"step": step, "epoch": step // 20,
                                    "eval/exact_accuracy": score * step / 100, "train/lm_loss": 2 - score}) + "\n")
            f.write('{"step": 120, "eval/exa')   # killed mid-line
    return sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return make_sweep(str(tmp_path_factory.mktemp("report")))


@pytest.fixture(scope="module")
def report(sweep):
    return build_report(sweep)


def _expected_best(sweep, env=None, stage=None):
    with open(os.path.join(sweep, "manifest.json")) as f:
        trials = json.load(f)["trials"]
    done = [t for t in trials if t["index"] not in (3, 5, 6, 7, 9)
            and (env is None or t["environment"] == env) and (stage is None or t["stage"] == stage)]
    return max(done, key=lambda t: _score(t["params"]["lr"], t["params"]["arch.hidden_size"],
                                          t["environment"], t["stage"]))


def test_report_writes_markdown_figures_and_csv(report, sweep):
    assert report.path == os.path.join(sweep, "reports", "report.md")
    text = open(report.path).read()
    for heading in ("## Best overall", "## Best per environment", "## Best per stage", "## Protein-style summary",
                    "## What mattered", "## Progressive stages", "## Failed, diverged and pruned trials", "## Figures"):
        assert heading in text, heading
    names = sorted(os.path.basename(p) for p in report.figures.values())
    assert names == ["best_configs.png", "hp_vs_metric.png", "learning_curves.png", "metric_by_environment.png"]
    for path in report.figures.values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{os.path.basename(path)}" in text
    assert os.path.exists(os.path.join(sweep, "reports", "results.csv"))
    assert "metric: `eval/exact_accuracy`, goal: maximize (chosen by: the sweep file)" in text


def test_report_names_the_best_trial_with_a_pasteable_command(report, sweep):
    text = open(report.path).read()
    best = _expected_best(sweep)
    assert f"Trial `{best['id']}`" in text
    # The command is the manifest command plus the trial's overrides, quoted for a shell:
    # parsing it back gives exactly that argv (values with spaces and quotes survive).
    block = text.split("Rerun the best trial:", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    argv = shlex.split(block)
    assert argv[:4] == COMMAND
    assert "run_name=it's \"quoted\"" in argv
    assert f"lr={best['params']['lr']!r}" in argv
    assert f"checkpoint_path={sweep}/trials/{best['parent']}/checkpoints" in argv   # stage 1 starts from its parent


def test_report_sections_have_the_right_content(report, sweep):
    text = open(report.path).read()
    for env in ("sudoku-easy", "sudoku-hard"):
        assert f"trial {_expected_best(sweep, env=env)['id']}" in text
    assert f"trial {_expected_best(sweep, stage=0)['id']}" in text
    assert "array throttle %4" in text                       # rollout size from the submission
    assert "RuntimeError: CUDA error" in text and "loss is NaN at step 40" in text
    assert "2 planned trial(s) have no result yet" in text
    assert "corrupt JSON" in text                             # the torn result is named
    failed = text.split("## Failed", 1)[1]
    assert "diverged" in failed and "failed" in failed
    # Pruned at step 25 of the 100 a full run reaches, after 60 s: 3 x 60 s more were saved.
    assert "Early stopping pruned 1 trial(s), saving about 0.05 GPU-hours." in failed
    # lr drives the score: it explains more variance than anything else.
    mattered = text.split("## What mattered", 1)[1].split("##", 1)[0]
    rows = [line for line in mattered.splitlines() if line.startswith("| ") and "hyperparameter" not in line]
    assert rows[0].startswith("| lr |")


def test_analysis_functions(sweep):
    from results.report import load_sweep
    manifest, frame, skipped = load_sweep(sweep)
    assert len(skipped) == 1
    metric = an.choose_metric(frame, manifest)
    assert (metric.column, metric.goal) == ("results.eval/exact_accuracy", "maximize")
    assert an.choose_metric(frame, {}, "lm_loss").goal == "minimize"          # guessed from the name
    assert an.choose_metric(frame, {}, "lm_loss", "max").goal == "maximize"
    stages = an.stage_summary(frame, metric)
    assert list(stages["stage"]) == [0, 1]
    # every stage-1 trial scores exactly 0.05 above its parent in the synthetic data
    assert stages.loc[1, "vs_parent_mean"] == pytest.approx(0.05)
    roll = an.rollouts(frame, metric, 4)
    assert roll["trials"].sum() == len(frame)
    assert list(roll["best_so_far"]) == sorted(roll["best_so_far"])             # never gets worse
    assert an.spearman(frame["hp.lr"], frame["hp.lr"] * 2) == pytest.approx(1.0)


def test_best_prints_the_overrides(sweep, capsys):
    assert main(["best", sweep]) == 0
    out = capsys.readouterr().out.strip()
    best = _expected_best(sweep)
    assert shlex.split(out) == [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in best["overrides"].items()]
    assert main(["best", sweep, "--stage", "0", "--environment", "sudoku-hard"]) == 0
    out = capsys.readouterr().out
    assert f"lr={_expected_best(sweep, env='sudoku-hard', stage=0)['params']['lr']!r}" in out


def test_best_on_lowest_loss_matches_best_accuracy(sweep, capsys):
    main(["best", sweep])
    by_acc = capsys.readouterr().out
    main(["best", sweep, "--metric", "eval/lm_loss", "--goal", "min"])
    assert capsys.readouterr().out == by_acc


def test_no_results_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    for argv in (["best", str(tmp_path / "empty")], ["report", str(tmp_path / "empty")],
                 ["collect", str(tmp_path / "empty")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "no trial results" in err and "Traceback" not in err


def test_report_cli_and_unknown_metric(sweep, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert main(["report", sweep, "--out", str(out), "--metric", "accuracy"]) == 0
    assert (out / "report.md").exists() and (out / "figures" / "hp_vs_metric.png").exists()
    assert "metric: `eval/accuracy`" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", sweep, "--out", str(out), "--metric", "nope"]) == 2
    assert "--metric nope" in capsys.readouterr().err


def test_report_of_several_sweeps_compares_them_side_by_side(tmp_path, capsys):
    first = make_sweep(str(tmp_path / "a"))
    second = str(tmp_path / "b" / "demo_v2")
    os.rename(make_sweep(str(tmp_path / "b"), n=5), second)
    out = tmp_path / "cmp"
    assert main(["report", first, second, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "compare.md"), str(out / "metric_by_sweep.png"), str(out / "results.csv")]
    text = (out / "compare.md").read_text()
    assert text.startswith("# Sweeps compared: demo, demo_v2")
    assert "metric: `eval/exact_accuracy`, goal: maximize (chosen by: the sweep file)" in text
    best = text.split("## Best per sweep", 1)[1].split("##", 1)[0]
    rows = [line for line in best.splitlines() if line.startswith("| demo")]
    assert [r.split(" | ")[0] for r in rows] == ["| demo", "| demo_v2"]
    for row, sweep in zip(rows, (first, second)):
        top = _expected_best(sweep)
        cells = row.split(" | ")
        assert top["id"] in cells and f"{_score(top['params']['lr'], top['params']['arch.hidden_size'], top['environment'], top['stage']):.4g}" in cells
    # Each best comes with the command that reruns it, from its own sweep.
    assert text.count("python -m train") == 2 and f"checkpoint_path={second}/trials/" in text
    with open(out / "metric_by_sweep.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import pandas as pd
    rows_csv = pd.read_csv(out / "results.csv")
    assert rows_csv.groupby("compared").size().to_dict() == {"demo": 30, "demo_v2": 18}


def test_comparison_labels_stay_unique():
    from results.compare import labels

    assert labels(["/s/alice/lr", "/s/bob/gating"]) == ["lr", "gating"]
    # Two sweeps of one name and one owner: the full paths tell them apart.
    assert labels(["/nonexistent/x/lr", "/nonexistent/y/lr"]) == ["/nonexistent/x/lr", "/nonexistent/y/lr"]


def test_comparing_a_sweep_with_itself_is_one_line(tmp_path, capsys):
    sweep = make_sweep(str(tmp_path / "a"))
    assert main(["report", sweep, sweep + "/"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "twice" in err


STAGED = """
import sys
from jobs import runtime
args = dict(a.split("=", 1) for a in sys.argv[1:])
runtime.write_metrics({"score": float(args["x"]) * int(args["steps"])})
"""


def test_a_launched_progressive_sweep_reports_its_stages_and_reruns_with_its_own_checkpoint_key(tmp_path, capsys):
    # End to end, from a real launch (not a hand-written manifest): the stage column is filled and the
    # rerun command of a later stage passes its parent's checkpoint under the sweep's checkpoint_key.
    import sys

    from jobs import manifest as mf

    (tmp_path / "prog.py").write_text(STAGED)
    (tmp_path / "spec.yaml").write_text("name: ckpt-key\nmetric: score\ngrid: {x: [1, 2]}\n"
                                        "stages: {key: steps, values: [2, 4], checkpoint_key: init_ckpt}\n")
    sweep = tmp_path / "sweep"
    assert main(["launch", str(tmp_path / "spec.yaml"), "--executor", "local", "--dir", str(sweep),
                 "--command", f"{sys.executable} {tmp_path / 'prog.py'}"]) == 0
    assert main(["report", str(sweep)]) == 0
    text = (sweep / "reports" / "report.md").read_text()
    by_stage = {t.stage: t for t in mf.read_manifest(sweep).trials if t.params["x"] == 2}
    assert "(stage 1," in text and "## Best per stage" in text
    rerun = f"x=2 steps=4 init_ckpt={sweep / 'trials' / by_stage[0].id / 'checkpoints'}"
    assert rerun in text and "checkpoint_path=" not in text
