"""Hydra sweep expressions -> Dist, through hydra-core's own override parser."""
from __future__ import annotations

import pytest

from jobs.errors import UserError
from launcher.dialects.hydra_syntax import parse_assignment, parse_value
from search.dist import Dist


@pytest.mark.parametrize("text,kind,values", [
    ("1,2,3", "choice", (1, 2, 3)),
    ("0.01,0.05,0.1", "choice", (0.01, 0.05, 0.1)),
    ("choice(adam,sgd)", "choice", ("adam", "sgd")),
    ("shuffle(1,2)", "choice", (1, 2)),
    ("range(1,5)", "choice", (1, 2, 3, 4)),
    ("range(0, 1, step=0.25)", "choice", (0.0, 0.25, 0.5, 0.75)),
    ("range(0,1,0.1)", "choice", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
    ("range(5,1,-2)", "choice", (5, 3)),
    ("1,range(3,5)", "choice", (1, 3, 4)),
    ("true,false", "choice", (True, False)),
])
def test_discrete_sweeps_become_choices(text, kind, values):
    d = parse_value(text, key="k")
    assert isinstance(d, Dist) and d.kind == kind and d.values == values


@pytest.mark.parametrize("text,kind,low,high", [
    ("interval(0.1, 1.0)", "uniform", 0.1, 1.0),
    ("interval(1, 10)", "uniform", 1.0, 10.0),         # Hydra's interval is float
    ("int(interval(1, 100))", "int_uniform", 1, 100),
    ("tag(log, interval(1e-5, 1e-2))", "loguniform", 1e-5, 1e-2),
    ("tag(log, int(interval(16, 1024)))", "int_loguniform", 16, 1024),
])
def test_intervals_become_continuous_distributions(text, kind, low, high):
    d = parse_value(text, key="k")
    assert (d.kind, d.low, d.high) == (kind, low, high)
    assert type(d.low) is type(low)


@pytest.mark.parametrize("text,value", [
    ("1e-5", 1e-5), ("3", 3), ("data/sudoku-easy", "data/sudoku-easy"), ("[1,2]", [1, 2]),
    ("'a,b'", "a,b"), ("{x: 1}", {"x": 1}), ("null", None),
])
def test_plain_values_are_constants(text, value):
    assert parse_value(text) == value
    assert not isinstance(parse_assignment(f"k={text}")[1], Dist)


def test_parse_assignment_keeps_key_prefixes():
    assert parse_assignment("a.b=1,2,3") == ("a.b", Dist("choice", values=(1, 2, 3)))
    assert parse_assignment("+extra=4") == ("+extra", 4)
    key, d = parse_assignment("++opt@pkg=choice(x,y)")
    assert key == "++opt@pkg" and d.values == ("x", "y")


@pytest.mark.parametrize("text,match", [
    ("a=glob(*)", "glob"),
    ("a=range(5,1)", "empty"),
    ("a=range(0,1,0)", "step"),
    ("a=tag(log, interval(0, 1))", "min > 0"),
    ("a=interval(2, 1)", "greater than max"),
    ("a=1,", "cannot parse"),
    ("a=choice(1,null)", "cannot parse"),
    ("~a", "deletes"),
])
def test_bad_expressions_are_user_errors_naming_file_and_key(text, match):
    with pytest.raises(UserError, match=match) as info:
        parse_assignment(text, file="sweep.yaml", dialect="hydra")
    msg = str(info.value)
    assert msg.startswith("sweep.yaml: key 'a'") and "(read as the hydra dialect)" in msg
    assert info.value.fix


@pytest.mark.parametrize("text", ["lr=", "lr=  ", "+extra=", "a.b@pkg="])
def test_an_empty_value_is_refused(text):
    # Hydra itself reads `lr=` as the empty string; every trial would get it.
    with pytest.raises(UserError, match="has no value after '='") as info:
        parse_assignment(text, file="command line")
    key = text.split("=")[0]
    assert str(info.value).startswith(f"command line: key '{key}'")
    assert f"{key}=null" in str(info.value)


def test_an_explicit_empty_string_or_null_is_a_value():
    assert parse_assignment("lr=''") == ("lr", "")
    assert parse_assignment("lr=null") == ("lr", None)
