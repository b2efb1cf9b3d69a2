"""`sweep collect`: many sweeps and loose files into one table, bad files named, nothing valid lost."""
from __future__ import annotations

import glob
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from jobs.errors import UserError
from launcher.cli import main
from results import collect as col
from results import columns, parse, table

ROOT = Path(__file__).resolve().parents[2]


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
    assert a.skipped == b.skipped and a.files == b.files and a.sweeps == b.sweeps and a.unreadable == b.unreadable


def test_pool_gives_the_same_frame_as_one_process(space, monkeypatch):
    serial = col.collect([space["root"], space["exp"]], workers=1)
    # Chunks of 3 files: most go to the pool as they are listed, the last few are parsed here;
    # each chunk sees different drift, and the merged types must not show it.
    monkeypatch.setattr(col, "_CHUNK_FILES", 3)
    monkeypatch.setattr(col, "_POOL_MIN", 1)
    _same_collection(serial, col.collect([space["root"], space["exp"]], workers=2))


def _collect_in_daemon(root: str, queue) -> None:
    col._CHUNK_FILES, col._POOL_MIN = 3, 1
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
    frame = columns.to_pandas(cols.table())
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
    frame = columns.to_pandas(cols.table())      # back in file order
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
    frame = columns.to_pandas(cols.table())
    expected = pd.DataFrame([parse.flatten_record(d, "s") for d in docs])
    pd.testing.assert_frame_equal(frame[list(expected.columns)], expected)
    assert frame["hp.lr"].dtype == float and frame["hp.depth"].dtype == "int64" and frame["hp.gating"].dtype == bool


# --- incremental collect: the cache and the result index -----------------------------------

from jobs import result_index  # noqa: E402
from results import cache as rcache  # noqa: E402


def _runner_writes(sweep: str, tid: str, rec: dict, *, index: bool = True) -> None:
    """What the task runner does: result.json renamed into place, then a line in the index."""
    tdir = os.path.join(sweep, "trials", tid)
    os.makedirs(tdir, exist_ok=True)
    tmp = os.path.join(tdir, ".result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(tmp, os.path.join(tdir, "result.json"))
    if index:
        result_index.append(sweep, tid, status=rec.get("status"))


def _make_sweep(root, n: int = 30, *, index: bool = True, name: str = "big") -> str:
    sweep = os.path.join(str(root), name)
    for i in range(n):
        _runner_writes(sweep, f"t{i:03d}", _result(name, i), index=index)
    os.makedirs(os.path.join(sweep, "trials", "pending"))          # started, no result yet
    return sweep


def _age_results(sweep: str, seconds: float = 60) -> None:
    """Results written a while ago (a file written within 2 s of the cache is always re-read)."""
    when = time.time() - seconds
    for path in glob.glob(os.path.join(sweep, "trials", "*", "result.json")):
        os.utime(path, (when, when))


def _fresh(sweep: str) -> pd.DataFrame:
    return col.collect([sweep], cache=False).frame


@pytest.fixture()
def small_sweeps_cached(monkeypatch):
    monkeypatch.setattr(rcache, "MIN_FILES", 4)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-never-written")


def test_recollect_reads_only_what_the_index_names(tmp_path, small_sweeps_cached):
    sweep = _make_sweep(tmp_path)
    first = col.collect([sweep])
    assert first.parsed == 30 and os.path.exists(os.path.join(sweep, "reports", rcache.FILE))
    again = col.collect([sweep])
    assert again.parsed == 0
    pd.testing.assert_frame_equal(again.frame, first.frame)
    # Two results rewritten, one new trial, one trial directory removed.
    _runner_writes(sweep, "t003", _result("big", 3, results={"exact_accuracy": 0.99, "eval/lm_loss": 0.5}))
    _runner_writes(sweep, "t007", _result("big", 7, status="failed", error="OOM", results={}))
    _runner_writes(sweep, "t100", _result("big", 100))
    shutil.rmtree(os.path.join(sweep, "trials", "t011"))
    third = col.collect([sweep])
    assert third.parsed == 3
    pd.testing.assert_frame_equal(third.frame, _fresh(sweep))
    by_id = third.frame.set_index("trial_id")
    assert by_id.loc["big-3", "results.exact_accuracy"] == 0.99 and by_id.loc["big-7", "status"] == "failed"
    assert "big-100" in by_id.index and "big-11" not in by_id.index
    assert col.collect([sweep]).parsed == 0
    # The trial that was running finishes (its directory was there, without a result).
    _runner_writes(sweep, "pending", _result("big", 200))
    fourth = col.collect([sweep])
    assert fourth.parsed == 1 and "big-200" in set(fourth.frame["trial_id"])
    pd.testing.assert_frame_equal(fourth.frame, _fresh(sweep))


def test_rescan_checks_every_file_the_index_does_not_name(tmp_path, small_sweeps_cached):
    sweep = _make_sweep(tmp_path)
    _age_results(sweep)
    col.collect([sweep])
    # Copied in by hand: no index line. The index is trusted (nothing re-read) until --rescan.
    _runner_writes(sweep, "t004", _result("big", 4, results={"exact_accuracy": 0.5}), index=False)
    assert col.collect([sweep]).parsed == 0
    got = col.collect([sweep], rescan=True)
    assert got.parsed == 1
    assert got.frame.set_index("trial_id").loc["big-4", "results.exact_accuracy"] == 0.5


def test_a_plain_folder_without_an_index_is_checked_by_stat(tmp_path, small_sweeps_cached):
    sweep = _make_sweep(tmp_path, index=False)
    _age_results(sweep)
    assert col.collect([sweep]).parsed == 30
    assert col.collect([sweep]).parsed == 0
    path = os.path.join(sweep, "trials", "t005", "result.json")
    with open(path, "w") as f:                                # rewritten in place, not renamed
        json.dump(_result("big", 5, results={"exact_accuracy": 0.123}), f)
    got = col.collect([sweep])
    assert got.parsed == 1
    pd.testing.assert_frame_equal(got.frame, _fresh(sweep))


def test_a_damaged_index_falls_back_to_stat(tmp_path, small_sweeps_cached):
    sweep = _make_sweep(tmp_path)
    _age_results(sweep)
    col.collect([sweep])
    [index] = glob.glob(os.path.join(sweep, result_index.INDEX_DIR, "*"))
    with open(index, "ab") as f:
        f.write(b"\x00\x00garbage\n")
    _runner_writes(sweep, "t006", _result("big", 6, results={"exact_accuracy": 0.66}), index=False)
    got = col.collect([sweep])
    assert got.frame.set_index("trial_id").loc["big-6", "results.exact_accuracy"] == 0.66
    assert got.parsed == 1                                    # by stat: only the changed file
    assert col.collect([sweep]).parsed == 0                   # and the index is trusted again


@pytest.mark.parametrize("spoil", ["garbage", "truncated", "old-version", "other-sweep"])
def test_a_cache_that_cannot_be_used_is_ignored_and_replaced(tmp_path, small_sweeps_cached, monkeypatch, spoil):
    sweep = _make_sweep(tmp_path)
    first = col.collect([sweep])
    path = os.path.join(sweep, "reports", rcache.FILE)
    if spoil == "garbage":
        with open(path, "wb") as f:
            f.write(b"not an arrow file")
    elif spoil == "truncated":
        os.truncate(path, os.path.getsize(path) // 2)
    elif spoil == "old-version":
        monkeypatch.setattr(rcache, "VERSION", rcache.VERSION + 1)
    else:                                      # copied from another sweep: its rows are not ours
        shutil.copytree(sweep, os.path.join(str(tmp_path), "copy"))
        sweep = os.path.join(str(tmp_path), "copy")
    got = col.collect([sweep])
    assert got.parsed == 30
    pd.testing.assert_frame_equal(got.frame.drop(columns="path"), first.frame.drop(columns="path"))
    assert col.collect([sweep]).parsed == 0


# --- many users: roots, unreadable directories, --user, --since ------------------------------

def _as_other_user() -> list[str]:
    """A command prefix under which permissions apply: root ignores them, so as root the command
    runs with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped (setpriv) -- then a chmod 000
    directory really cannot be listed, and a sweep owned by another uid really cannot be written."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a directory unreadable to this test")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


def _sweep_cmd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*_as_other_user(), sys.executable, "-m", "launcher", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture()
def scratch(tmp_path):
    """Several users' sweep roots in one scratch space; two of them unreadable."""
    root = tmp_path / "scratch"
    users = {"alice": "daemon", "bob": "bin"} if os.geteuid() == 0 else {}
    for who, sweep, n in (("alice", "lr", 5), ("bob", "gating", 3)):
        sdir = root / who / "sweeps" / sweep
        for i in range(n):
            _write(str(sdir / "trials" / f"t{i}" / "result.json"), json.dumps(_result(sweep, i)))
        if who in users:
            for d in [root / who, *(p for p in (root / who).rglob("*"))]:
                shutil.chown(d, user=users[who])
    hidden = root / "carol"                                    # a user who keeps her space private
    _write(str(hidden / "sweeps" / "secret" / "trials" / "t0" / "result.json"), json.dumps(_result("secret", 0)))
    locked = root / "dave" / "sweeps" / "x"                     # a sweep whose trials are private
    _write(str(locked / "trials" / "t0" / "result.json"), json.dumps(_result("x", 0)))
    os.chmod(hidden, 0)
    os.chmod(locked / "trials", 0)
    yield {"root": root, "users": users, "hidden": str(hidden), "locked": str(locked / "trials")}
    os.chmod(hidden, 0o755)
    os.chmod(locked / "trials", 0o755)


def test_many_users_roots_unreadable_directories_named_in_one_line(scratch, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = _sweep_cmd("collect", str(scratch["root"] / "*"), "--format", "csv", env=env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped 2 unreadable directories: ")
    assert scratch["hidden"] in warnings[0] and scratch["locked"] in warnings[0] and "Permission denied" in warnings[0]
    assert "Traceback" not in done.stderr
    out = pd.read_csv(io.StringIO(done.stdout))
    assert sorted(out["sweep"].unique()) == ["gating", "lr"] and len(out) == 8
    owners = scratch["users"] or {"alice": out["user"].iloc[0], "bob": out["user"].iloc[0]}
    assert dict(out.groupby("sweep")["user"].first()) == {"lr": owners["alice"], "gating": owners["bob"]}
    if scratch["users"]:
        only = _sweep_cmd("collect", str(scratch["root"] / "*"), "--format", "csv", "--user", "bin", env=env)
        assert set(pd.read_csv(io.StringIO(only.stdout))["sweep"]) == {"gating"}


def test_since_keeps_results_written_since_then(space, capsys):
    lr = os.path.join(space["root"], "alice", "sweeps", "lr", "trials")
    old = time.time() - 10 * 86400
    for path in glob.glob(os.path.join(lr, "t*", "result.json")):
        os.utime(path, (old, old))
    assert main(["collect", space["root"], "--format", "csv", "--since", "2d", "--columns", "trial_id,sweep"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert not out["trial_id"].str.startswith("lr-").any() and set(out["sweep"]) == {"lr", "gating"}
    assert (out["sweep"] == "gating").sum() == 4
    assert main(["collect", space["root"], "--since", "2026-13-45"]) == 2
    assert "--since" in capsys.readouterr().err


def test_since_parses_ages_and_dates():
    from launcher.commands.collect import parse_since

    now = 1_800_000_000.0
    assert parse_since("3d", now) == now - 3 * 86400 and parse_since("12h", now) == now - 43200
    assert parse_since("1.5w", now) == now - 1.5 * 7 * 86400 and parse_since("30m", now) == now - 1800
    assert parse_since("2026-12-01T00:00:00Z", now) == 1796083200.0
    with pytest.raises(UserError, match="neither an age nor a date"):
        parse_since("yesterday", now)


def test_an_unwritable_sweep_keeps_its_cache_in_the_users_cache_dir(tmp_path):
    sweep = _make_sweep(tmp_path, n=rcache.MIN_FILES)
    if os.geteuid() == 0:
        for d in [sweep, *glob.glob(os.path.join(sweep, "**"), recursive=True)]:
            shutil.chown(d, user="daemon")                     # another user's sweep: read-only to us
    else:
        os.chmod(sweep, 0o555)
    code = ("import json, sys; from results.collect import collect; g = collect([sys.argv[1]]); "
            "print(json.dumps([g.parsed, g.table.num_rows]))")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [subprocess.run([*_as_other_user(), sys.executable, "-c", code, sweep], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert [json.loads(r.stdout) for r in runs] == [[rcache.MIN_FILES, rcache.MIN_FILES],
                                                    [0, rcache.MIN_FILES]], [r.stderr for r in runs]
    assert not os.path.exists(os.path.join(sweep, "reports"))
    assert len(glob.glob(str(tmp_path / "cache" / "slurmsweep" / "collect" / "*-big.arrow"))) == 1


def test_csv_in_two_halves_is_the_same_file(space, tmp_path, monkeypatch):
    got = col.collect([space["root"], space["exp"]])
    table.write(got.table, "csv", tmp_path / "one.csv")
    monkeypatch.setattr(table, "_CSV_SPLIT", 2)               # two threads, even for a few rows
    table.write(got.table, "csv", tmp_path / "two.csv")
    table.write(got.frame, "csv", tmp_path / "frame.csv")     # from pandas: the same text too
    one = (tmp_path / "one.csv").read_bytes()
    assert one == (tmp_path / "two.csv").read_bytes() == (tmp_path / "frame.csv").read_bytes()
    assert one.count(b"\n") == got.table.num_rows + 1 and not list(tmp_path.glob(".*.tmp"))


def test_every_trial_that_did_not_complete_names_its_cause_in_one_line(tmp_path):
    # What `sweep status` says from a result alone: the error's headline (a bare traceback's last line).
    sweep = tmp_path / "sweeps" / "causes"
    rows = {"ok": {"status": "completed"},
            "crash": {"status": "failed", "error": "exit code 1: ValueError: lr must be positive\nTraceback ...\n"},
            "old": {"status": "failed", "error": "Traceback (most recent call last):\n  File \"x.py\"\n"
                                                 "RuntimeError: CUDA error: out of memory\n"},
            "nan": {"status": "diverged", "error": "non-finite loss at step 3"},
            "cut": {"status": "pruned"}}
    for tid, r in rows.items():
        _write(sweep / "trials" / tid / "result.json", json.dumps({"schema": 1, "results": {"acc": 0.5}, **r}))
    got = col.collect([str(tmp_path / "sweeps")])
    ids = [p.split(os.sep)[-2] for p in got.table.column("path").to_pylist()]
    causes = dict(zip(ids, got.table.column("cause").to_pylist()))
    assert causes == {"ok": None, "crash": "exit code 1: ValueError: lr must be positive",
                      "old": "RuntimeError: CUDA error: out of memory", "nan": "diverged: non-finite loss at step 3",
                      "cut": "pruned by the sweep's early stopping"}
    assert got.table.column_names.index("cause") == got.table.column_names.index("status") + 1
