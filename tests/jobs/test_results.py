"""jobs.results: reading result files, the sweep metric out of a result."""
from __future__ import annotations

import json

from jobs import manifest as mf
from jobs.results import finite_metric, metric_value, read_result, read_results, write_result


def test_metric_value_reads_flat_and_nested_names():
    assert metric_value({"eval.acc": 0.5}, "eval.acc") == 0.5
    assert metric_value({"eval": {"acc": "0.25"}}, "eval.acc") == 0.25
    assert metric_value({"x": True}, "x") is None and metric_value({"x": 1}, None) is None
    nan = metric_value({"eval": {"acc": float("nan")}}, "eval.acc")
    assert nan != nan and finite_metric({"eval": {"acc": float("nan")}}, "eval.acc") is None
    assert finite_metric({"a": float("inf")}, "a") is None and finite_metric({"a": 2}, "a") == 2.0


def test_write_then_read_and_damaged_files_are_skipped(tmp_path):
    mf.trial_dir(tmp_path, "a").mkdir(parents=True)
    write_result(tmp_path, {"trial_id": "a", "status": "completed", "results": {"x": 1}})
    mf.trial_dir(tmp_path, "b").mkdir(parents=True)
    mf.result_path(tmp_path, "b").write_text("{not json")
    mf.trial_dir(tmp_path, "c").mkdir(parents=True)
    mf.result_path(tmp_path, "c").write_text(json.dumps([1, 2]))
    assert read_result(tmp_path, "a")["results"] == {"x": 1}
    assert read_results(tmp_path, ["a", "b", "c", "missing"]) == {"a": read_result(tmp_path, "a")}
    assert read_results(tmp_path / "nowhere", ["a"]) == {}
    # The result index names the trial, for `sweep collect` to re-read only what changed.
    assert any("\"a\"" in p.read_text() for p in (tmp_path / "result_index").iterdir())
