"""`sweep collect`: many sweeps and loose files into one table, bad files named, nothing valid lost."""
from __future__ import annotations

import io
import json
import math
import os

import pandas as pd
import pytest

from jobs.errors import UserError
from launcher.cli import main
from results import collect as col
from results import parse, table


def _write(path, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _result(sweep: str, i: int, **extra) -> dict:
    rec = {"schema": 1, "sweep": sweep, "trial": i, "trial_id": f"{sweep}-{i}", "stage": i % 2,
           "environment": "easy" if i % 3 else "hard",
           "hyperparameters": {"lr": 10 ** -(1 + i % 4), "arch": {"hidden_size": 128 * (1 + i % 2)}},
           "results": {"exact_accuracy": i / 100, "eval/lm_loss": 2 - i / 100},
           "status": "completed", "error": None, "runtime_s": 10.0 + i,
           "job": {"id": f"7_{i}", "node": "cn-1", "attempt": 0}}
    rec.update(extra)
    return rec


def make_space(root) -> dict:
    """A scratch space: two users' sweeps, drift, bad files, loose experiment files."""
    root = str(root)
    expected = {}
    for user, sweep, n in (("alice", "lr", 6), ("bob", "gating", 4)):
        sdir = os.path.join(root, user, "sweeps", sweep)
        _write(os.path.join(sdir, "manifest.json"), json.dumps({"name": sweep, "trials": []}))
        for i in range(n):
            _write(os.path.join(sdir, "trials", f"t{i}", "result.json"), json.dumps(_result(sweep, i)))
            expected[f"{sweep}-{i}"] = i / 100
        os.makedirs(os.path.join(sdir, "trials", "running", "checkpoints"))      # no result yet: not bad
    lr = os.path.join(root, "alice", "sweeps", "lr", "trials")
    # Drift that must be kept: NaN/Inf tokens, numbers as text, renamed sections, new keys, no job.
    _write(os.path.join(lr, "nan", "result.json"),
           '{"trial_id": "nan", "hyperparameters": {"lr": 0.5}, "results": {"exact_accuracy": NaN, '
           '"eval/lm_loss": Infinity}, "status": "diverged", "error": "loss is NaN"}')
    _write(os.path.join(lr, "text", "result.json"), json.dumps(
        {"trial_id": "text", "hyperparameters": {"lr": 0.2}, "results": {"exact_accuracy": "0.77", "eval/lm_loss": "-inf"}}))
    _write(os.path.join(lr, "renamed", "result.json"), json.dumps(
        {"trial_id": "renamed", "params": {"lr": 0.3}, "metrics": {"exact_accuracy": 0.55}, "env": "medium",
         "gpu_hours": 1.5, "schema": 2}))
    expected.update({"nan": math.nan, "text": 0.77, "renamed": 0.55})
    # Bad files: each must be named once, none may stop the rest.
    bad = {os.path.join(lr, "torn", "result.json"): '{"trial_id": "torn", "results": {"exact_acc',
           os.path.join(lr, "empty", "result.json"): "",
           os.path.join(lr, "list", "result.json"): "[1, 2, 3]",
           os.path.join(lr, "wrongtype", "result.json"): '{"results": [0.5], "hyperparameters": {}}',
           os.path.join(lr, "deep", "result.json"): '{"results": ' + "[" * 100_000,
           os.path.join(lr, "binary", "result.json"): "\udcff\udcfe"}
    for path, text in bad.items():
        if path.endswith(os.path.join("binary", "result.json")):
            os.makedirs(os.path.dirname(path))
            with open(path, "wb") as f:
                f.write(b"\xff\xfe\x00garbage")
        else:
            _write(path, text)
    # Researchers' older flat files, next to a foreign JSON file.
    exp = os.path.join(root, "experiments")
    _write(os.path.join(exp, "run_a.json"), json.dumps({"hyperparameters": {"lr": 0.01}, "results": {"exact_accuracy": 0.31},
                                                        "seed": 1, "experiment": "a"}))
    _write(os.path.join(exp, "package.json"), json.dumps({"name": "not-a-result"}))
    bad[os.path.join(exp, "package.json")] = ""
    return {"root": root, "expected": expected, "bad": sorted(bad), "exp": exp, "flat": {"run_a.json": 0.31}}


@pytest.fixture()
def space(tmp_path):
    return make_space(tmp_path)


def test_collects_everything_valid_and_names_every_bad_file(space):
    got = col.collect([space["root"], space["exp"]])
    frame = got.frame
    by_id = frame.dropna(subset=["trial_id"]).set_index("trial_id")["results.exact_accuracy"]
    assert set(by_id.index) == set(space["expected"])
    for tid, value in space["expected"].items():
        assert (math.isnan(by_id[tid]) and math.isnan(value)) or by_id[tid] == pytest.approx(value)
    assert len(frame) == len(space["expected"]) + 1          # + the flat experiment file
    assert sorted(s.path for s in got.skipped) == space["bad"]
    assert all(s.reason for s in got.skipped)
    # Types: numbers stay numbers whatever the file wrote (NaN, Infinity, "0.77", "-inf").
    assert frame["results.exact_accuracy"].dtype == float and frame["results.eval/lm_loss"].dtype == float
    assert frame.set_index("path").filter(like="text", axis=0)["results.eval/lm_loss"].iloc[0] == -math.inf
    assert frame["stage"].dtype == "Int64"
    # Drift is kept, not dropped: renamed sections, env alias, unknown keys, nested hyperparameters.
    renamed = frame[frame["trial_id"] == "renamed"].iloc[0]
    assert renamed["hp.lr"] == 0.3 and renamed["environment"] == "medium" and renamed["gpu_hours"] == 1.5
    assert frame["hp.arch.hidden_size"].notna().sum() == 10
    flat = frame[frame["path"].str.endswith("run_a.json")].iloc[0]
    assert (flat["sweep"], flat["status"], flat["seed"]) == ("experiments", "completed", 1)
    assert set(frame["sweep"]) == {"lr", "gating", "experiments"}


def test_warning_names_each_bad_file_once_without_traceback(space, capsys):
    assert main(["collect", space["root"], space["exp"], "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for path in space["bad"]:
        assert err.count(path) == 1, path
    lines = col.describe_skipped([col.Skipped(f"f{i}", "corrupt") for i in range(30)], limit=5)
    assert len(lines) == 7 and "25 more" in lines[-1]


def test_skipped_file_lists_all(space, tmp_path):
    out = tmp_path / "skipped.tsv"
    assert main(["collect", space["root"], "--skipped", str(out), "--out", str(tmp_path / "x.csv")]) == 0
    listed = [line.split("\t")[0] for line in out.read_text().splitlines()]
    assert sorted(listed) == [p for p in space["bad"] if "experiments" not in p]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_formats_round_trip(space, tmp_path, fmt):
    frame = col.collect([space["root"]]).frame
    out = tmp_path / f"all.{fmt}"
    assert main(["collect", space["root"], "--out", str(out)]) == 0          # format from the extension
    back = table.read(out)
    assert list(back.columns) == list(frame.columns)
    assert len(back) == len(frame)
    for c in ("results.exact_accuracy", "hp.lr", "runtime_s"):
        a = frame[c].astype(float).to_numpy()
        b = back[c].astype(float).to_numpy()
        if fmt == "json":   # strict JSON: NaN and +-Infinity are written as null
            a = [x if math.isfinite(x) else math.nan for x in a]
        assert a == pytest.approx(b, nan_ok=True), c
    assert list(back["trial_id"].fillna("")) == list(frame["trial_id"].fillna(""))


def test_where_and_sort(space, capsys):
    assert main(["collect", space["root"], "--format", "csv", "--where", "lr < 0.05 and stage == 1",
                 "--sort", "exact_accuracy"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(out) > 0 and (out["hp.lr"] < 0.05).all() and (out["stage"] == 1).all()
    assert list(out["results.exact_accuracy"]) == sorted(out["results.exact_accuracy"], reverse=True)
    assert main(["collect", space["root"], "--format", "csv", "--where", "`results.eval/lm_loss` < 1.97",
                 "--sort", "eval/lm_loss", "--asc"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(out["results.eval/lm_loss"]) == sorted(out["results.eval/lm_loss"])
    assert out["results.eval/lm_loss"].iloc[0] == -math.inf


@pytest.mark.parametrize("argv, says", [
    (["--where", "lr <"], "--where"),
    (["--where", "no_such_column > 1"], "no_such_column"),
    (["--sort", "no_such_metric"], "no_such_metric"),
    (["--columns", "zzz*"], "zzz*"),
])
def test_bad_flags_are_one_line_and_exit_2(space, capsys, argv, says):
    assert main(["collect", space["root"], "--format", "csv", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sweep collect: error:") and says in err[-1]
    assert not any("Traceback" in line for line in err)


def test_inputs_globs_and_missing_paths(space):
    root = space["root"]
    got = col.collect([os.path.join(root, "*", "sweeps", "*")])
    assert sorted(os.path.basename(s) for s in got.sweeps) == ["gating", "lr"]
    one = col.collect([os.path.join(root, "bob", "sweeps", "gating", "trials", "t1", "result.json")]).frame
    assert list(one["trial_id"]) == ["gating-1"] and list(one["sweep"]) == ["gating"]
    with pytest.raises(UserError, match="does not exist"):
        col.collect([os.path.join(root, "nobody")])
    with pytest.raises(UserError, match="matched nothing"):
        col.collect([os.path.join(root, "nobody*")])


def _same_collection(a: col.Collection, b: col.Collection) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.skipped == b.skipped and a.files == b.files and a.sweeps == b.sweeps


def test_pool_gives_the_same_frame_as_one_process(space, monkeypatch):
    serial = col.collect([space["root"], space["exp"]], workers=1)
    # Chunks of 3 files: most go to the pool as they are listed, the last few are parsed here;
    # each chunk sees different drift, and the merged types must not show it.
    monkeypatch.setattr(col, "_CHUNK_FILES", 3)
    _same_collection(serial, col.collect([space["root"], space["exp"]], workers=2))


def _collect_in_daemon(root: str, queue) -> None:
    col._CHUNK_FILES = 3
    queue.put(col.collect([root], workers=2))


def test_no_processes_to_be_had_parses_in_this_process(space):
    # A daemonic process may not start children (a pool inside a pool, a service's worker):
    # collect must still return everything.
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_collect_in_daemon, args=(space["root"], queue), daemon=True)
    proc.start()
    got = queue.get(timeout=60)
    proc.join(timeout=60)
    _same_collection(col.collect([space["root"]], workers=1), got)


def test_column_types_match_pandas_inference():
    # One layout (the fast path) whose values change type from file to file, next to rows that
    # take the slow path: each column gets the dtype pandas gives the same cells as a list.
    values = {"ints": [1, 2, 3, 4, 5, 6], "int_float": [1, 2.5, 3, 4, 5, 6.0], "int_none": [1, None, 3, 4, 5, 6],
              "text_none": ["a", None, "c", "d", "e", "f"], "bools": [True, False, True, True, False, True],
              "bool_none": [True, None, False, True, True, False], "text_num": ["a", 1, 2.5, "d", "e", "f"],
              "big": [2 ** 70, 1, 2, 3, 4, 5], "nan": [float("nan"), 1.0, float("inf"), 2.0, 3.0, 4.0]}
    docs = [{"hyperparameters": {k: v[i] for k, v in values.items()}, "results": {"m": float(i)}} for i in range(6)]
    docs[3]["hyperparameters"]["nested"] = {"x": 1}          # a new layout
    docs[4]["results"]["deep"] = {"y": [1, 2]}               # nested: the slow path
    cols = parse.Columns()
    for d in docs:
        assert cols.add(d, "s") is None
    frame = cols.frame()
    expected = pd.DataFrame([parse.flatten_record(d, "s") for d in docs])
    assert sorted(frame.columns) == sorted(expected.columns)
    pd.testing.assert_frame_equal(frame[list(expected.columns)], expected)


def test_fast_path_matches_flatten_record():
    # The same layout many times takes the planned fast path; drifted rows the slow one.
    docs = [_result("s", i) for i in range(5)]
    docs.insert(2, _result("s", 9, results={"exact_accuracy": 1.0, "nested": {"a": 1}}))
    docs.insert(4, _result("s", 8, hyperparameters={"lr": [1, 2]}))
    docs.append({**_result("s", 7), "status": None})
    cols = parse.Columns()
    for d in docs:
        assert cols.add(d, "fallback") is None
    frame = cols.frame()      # back in file order
    for i, d in enumerate(docs):
        row = parse.flatten_record(d, "fallback")
        for k, v in row.items():
            assert frame.loc[i, k] == v or (v is None and pd.isna(frame.loc[i, k])), (i, k)
        assert all(pd.isna(frame.loc[i, k]) for k in frame.columns if k not in row)
    assert frame.loc[4, "hp.lr"] == "[1, 2]" and frame.loc[2, "results.nested.a"] == 1


def test_table_and_markdown_render(space, capsys):
    assert main(["collect", space["root"], "--sort", "exact_accuracy", "--limit", "3"]) == 0
    out = capsys.readouterr()
    assert "hp.lr" in out.out and "showing 3 of" in out.err
    assert main(["collect", space["root"], "--format", "markdown", "--columns", "trial_id,exact_accuracy",
                 "--sort", "exact_accuracy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| trial_id | results.exact_accuracy |" and lines[2].startswith("| text | 0.77 |")


def test_terminal_table_keeps_identity_hyperparameters_and_a_few_metrics():
    import pandas as pd

    from results.table import select_columns

    frame = pd.DataFrame({"sweep": ["s", "s"], "trial_id": ["a", "b"], "stage": [0, 0], "status": ["completed"] * 2,
                          "hp.lr": [0.1, 0.2], "hp.depth": [1, 2],
                          **{f"results.train/m{i}": [1.0, 2.0] for i in range(8)},
                          "results.eval/accuracy": [0.5, 0.6], "results.eval/zeta": [1, 2]})
    cols = list(select_columns(frame, None, quiet=True, first="results.train/m7").columns)
    assert cols[:4] == ["trial_id", "status", "hp.lr", "hp.depth"]  # sweep/stage: one value, left out
    assert cols[4:7] == ["results.train/m7", "results.eval/accuracy", "results.eval/zeta"]
    assert len(cols) == 4 + 5
    # Files keep everything.
    assert list(select_columns(frame, None, quiet=False).columns) == list(frame.columns)


def test_whole_numbers_beyond_int64_stay_float(tmp_path):
    # A trial number no int64 holds used to crash the Int64 conversion with a traceback.
    for i, trial in enumerate((2 ** 70, 1, 2)):
        _write(str(tmp_path / "s" / "trials" / f"t{i}" / "result.json"),
               json.dumps({"trial": trial, "stage": i, "hyperparameters": {}, "results": {"m": 1.0}}))
    frame = col.collect([str(tmp_path / "s")]).frame
    assert frame["trial"].dtype == float and frame["trial"].tolist() == [2.0 ** 70, 1.0, 2.0]
    assert frame["stage"].tolist() == [0, 1, 2] and frame["stage"].dtype == "int64"


def test_keys_in_any_order_give_the_same_columns():
    # Files written from hash maps list their keys in any order: every order is a new layout,
    # and past 128 layouts in a chunk rows go the slow way. Both must give the same cells.
    import random

    rng = random.Random(0)
    docs = []
    for i in range(400):
        hps = [("lr", 10.0 ** -(i % 5)), ("depth", i % 7), ("gating", i % 2 == 0), ("act", "relu" if i % 3 else None),
               ("wd", 0.1), ("seed", i)]
        rng.shuffle(hps)
        docs.append({"trial_id": f"t{i}", "hyperparameters": dict(hps), "results": {"acc": i / 400},
                     "status": "completed"})
    cols = parse.Columns()
    for d in docs:
        assert cols.add(d, "s") is None
    frame = cols.frame()
    expected = pd.DataFrame([parse.flatten_record(d, "s") for d in docs])
    pd.testing.assert_frame_equal(frame[list(expected.columns)], expected)
    assert frame["hp.lr"].dtype == float and frame["hp.depth"].dtype == "int64" and frame["hp.gating"].dtype == bool
