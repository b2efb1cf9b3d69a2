"""Helpers every dialect parser shares: number coercion, key paths, bound checks.

Each dialect reads its own layout, then builds `Dist`s through `make_dist`, which checks
the domain once for all of them, so that a bad bound gets the same clear error whatever
file it came from. Every error is a `UserError` naming file, key, dialect and fix.
"""
from __future__ import annotations

import math
import re
import shlex
from typing import Any, Iterable, Mapping

from jobs.errors import UserError
from search.dist import Dist
from search.kinds import INTEGER_KINDS, KINDS

# PyYAML implements YAML 1.1, whose float needs a dot and a signed exponent: `1e-5`, `1e5` and
# `5e-1` load as strings. Anything that reads like a number in a sweep file is a number.
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d[\d_]*")
# Hydra-style override keys: `a.b`, `+a`, `++a`, `group@pkg`, `a/b`. No spaces, no `=`, never a
# leading `-` (it would read as a flag of the swept program).
_KEY = re.compile(r"(?:\+\+|\+)?[A-Za-z_][\w.\-/@]*")

# Names other tools use for our kinds. A dialect may map its own names first.
KIND_ALIASES: dict[str, str] = {
    "categorical": "choice", "choices": "choice",
    "log_uniform": "loguniform", "log": "loguniform", "log_uniform_values": "loguniform",
    "reciprocal": "loguniform",
    "int": "int_uniform", "integer": "int_uniform", "randint": "int_uniform", "q_uniform": "uniform",
    "int_log_uniform": "int_loguniform", "uniform_pow2": "pow2", "pow_2": "pow2",
    "log_normal": "lognormal", "gaussian": "normal",
}

# --------------------------------------------------------------------------- numbers

def coerce_number(value: Any) -> Any:
    """`"1e-5"` -> 1e-05, `"3"` -> 3; anything else is returned unchanged (bools stay bools)."""
    if isinstance(value, str):
        text = value.strip()
        if _INT.fullmatch(text):
            return int(text.replace("_", ""))
        if _NUMBER.fullmatch(text) and any(c.isdigit() for c in text):
            return float(text.replace("_", ""))
    return value


def coerce_scalar(value: Any) -> Any:
    """Coerce a value from a list of choices or a constant.

    Only what PyYAML fails to read as a float is converted: numbers with an exponent (`1e-5`,
    `1.0e5`). Unquoted ints and decimals are numbers already, so a quoted `"1.10"` (a version)
    or `"007"` was quoted on purpose and stays a string.
    """
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text) and "e" in text.lower() and any(c.isdigit() for c in text):
            return float(text.replace("_", ""))
    return value


def coerce_tree(value: Any) -> Any:
    """`coerce_scalar` applied through lists and mappings."""
    if isinstance(value, Mapping):
        return {k: coerce_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [coerce_tree(v) for v in value]
    return coerce_scalar(value)


def number(value: Any, *, file: str | None, key: str, dialect: str, integer: bool = False) -> int | float:
    """A finite number (ints kept as ints) or a UserError saying what was found."""
    v = coerce_number(value)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer and isinstance(v, float):
        ok = v.is_integer()
        v = int(v) if ok else v
    if not ok:
        want = "an integer" if integer else "a number"
        raise UserError(f"expected {want}, got {value!r}", file=file, key=key, dialect=dialect,
                        fix=f"write {want} such as {'8' if integer else '1e-4'}")
    return v


def positive_int(value: Any, *, file: str | None, key: str, dialect: str, minimum: int = 1) -> int:
    v = number(value, file=file, key=key, dialect=dialect, integer=True)
    if v < minimum:
        raise UserError(f"must be at least {minimum}, got {v}", file=file, key=key, dialect=dialect,
                        fix=f"set it to an integer >= {minimum}")
    return int(v)


# --------------------------------------------------------------------------- keys and shapes

def join_key(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def check_key(key: Any, *, file: str | None, dialect: str, where: str | None = None) -> str:
    """A key that may appear as `key=value` on the swept program's command line."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise UserError(f"{key!r} is not a valid parameter name", file=file, key=where or str(key),
                        dialect=dialect,
                        fix="use a dotted name of letters, digits and _ such as `optim.lr`")
    return key


def flatten(tree: Mapping[str, Any], prefix: str = "", *, is_leaf=None) -> dict[str, Any]:
    """Nested mappings -> dotted keys: {"a": {"b": 1}} -> {"a.b": 1}.

    `is_leaf(value)` stops the descent (e.g. at a distribution spec that is itself a mapping).
    """
    out: dict[str, Any] = {}
    for k, v in tree.items():
        path = join_key(prefix, k)
        if isinstance(v, Mapping) and v and not (is_leaf and is_leaf(v)):
            out.update(flatten(v, path, is_leaf=is_leaf))
        else:
            out[path] = v
    return out


_NAME = re.compile(r"[A-Za-z0-9_][\w.\-]*")


def plain_name(value: Any, *, file: str | None, key: str, dialect: str) -> str:
    """A name that may become a directory or a report column: letters, digits, _ . -"""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise UserError(f"{value!r} is not a plain name", file=file, key=key, dialect=dialect,
                        fix="use letters, digits, _ . or - (it names the sweep directory and reports)")
    return value


def sweep_name(doc: Mapping[str, Any], *, file: str | None, dialect: str, key: str = "name") -> str:
    """The sweep's name from the file, else the file's stem."""
    from pathlib import Path
    default = Path(file).stem if file else "sweep"
    return plain_name(doc.get(key, default), file=file, key=key, dialect=dialect)


def require_mapping(value: Any, *, file: str | None, key: str | None, dialect: str,
                    example: str = "key: value") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        where = key or "the top level"
        raise UserError(f"expected a mapping, got {type(value).__name__}", file=file, key=key,
                        dialect=dialect, fix=f"write {where} as a mapping, e.g. `{example}`")
    return value


def require_list(value: Any, *, file: str | None, key: str, dialect: str) -> list[Any]:
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, list) or not value:
        raise UserError(f"expected a non-empty list, got {value!r}", file=file, key=key, dialect=dialect,
                        fix="write a YAML list such as `[a, b]`")
    return value


def check_unknown_keys(doc: Mapping[str, Any], valid: Iterable[str], *, file: str | None, dialect: str,
                       prefix: str = "") -> None:
    """Reject typos: an unknown key names the valid ones."""
    valid = list(valid)
    for k in doc:
        if k not in valid:
            raise UserError(f"unknown key {k!r}", file=file, key=join_key(prefix, k), dialect=dialect,
                            fix="use one of: " + ", ".join(valid))


def split_command(value: Any, *, file: str | None, key: str, dialect: str) -> tuple[str, ...]:
    """A command given as a string is shlex-split (never run through a shell); a list is kept."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise UserError(f"cannot split the command ({exc})", file=file, key=key, dialect=dialect,
                            fix="balance the quotes, or write the command as a list") from None
    elif isinstance(value, (list, tuple)) and all(isinstance(a, (str, int, float)) for a in value):
        argv = [str(a) for a in value]
    else:
        raise UserError(f"expected a string or a list of strings, got {value!r}", file=file, key=key,
                        dialect=dialect, fix="write e.g. `command: python -m train`")
    if not argv:
        raise UserError("the command is empty", file=file, key=key, dialect=dialect,
                        fix="write e.g. `command: python -m train`")
    return tuple(argv)


def parse_resources(tree: Any, max_parallel: Any = None, *, file: str | None, dialect: str,
                    key: str = "resources") -> dict[str, Any]:
    """`{time: "02:00:00", gres: "gpu:1", ...}` checked for shape; `max_parallel` joins it.

    Only names and single values are checked here: the backend knows which sbatch options
    exist and passes each value as one argv element, never through a shell.
    """
    tree = require_mapping(tree or {}, file=file, key=key, dialect=dialect, example='{time: "02:00:00"}')
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z][\w\-]*", k):
            raise UserError(f"{k!r} is not a resource name", file=file, key=key, dialect=dialect,
                            fix="use sbatch option names such as `time`, `gres`, `cpus_per_task`")
        if isinstance(v, (Mapping, list, tuple)):
            raise UserError(f"expected a single value, got {v!r}", file=file, key=join_key(key, k),
                            dialect=dialect, fix="write one value")
        out[k] = coerce_scalar(v)
    if max_parallel is not None:
        out["max_parallel"] = positive_int(max_parallel, file=file, key="max_parallel", dialect=dialect)
    return out


# --------------------------------------------------------------------------- distributions

def canonical_kind(name: Any, *, file: str | None, key: str, dialect: str,
                   aliases: Mapping[str, str] | None = None) -> str:
    text = str(name).strip().lower() if isinstance(name, str) else name
    for table in (aliases or {}, KIND_ALIASES):
        if text in table:
            text = table[text]
    if text not in KINDS:
        raise UserError(f"unknown distribution {name!r}", file=file, key=key, dialect=dialect,
                        fix="use one of: " + ", ".join(KINDS))
    return text


def make_dist(kind: str, *, file: str | None, key: str, dialect: str, low: Any = None, high: Any = None,
              values: Any = None, probabilities: Any = None, q: Any = None, mu: Any = None,
              sigma: Any = None, a: Any = None, b: Any = None, center: Any = None,
              is_int: bool = False) -> Dist:
    """Build a Dist and check its domain; every number may still be a string such as `1e-5`."""
    kw = dict(file=file, dialect=dialect)

    def num(v: Any, name: str, integer: bool = False) -> int | float | None:
        return None if v is None else number(v, key=f"{key}.{name}", integer=integer, **kw)

    def fail(message: str, fix: str) -> UserError:
        return UserError(message, key=key, fix=fix, **kw)

    if kind == "choice":
        vals = tuple(coerce_tree(v) for v in require_list(values, key=f"{key}.values", **kw))
        probs = None
        if probabilities is not None:
            probs = tuple(float(num(p, "probabilities")) for p in
                          require_list(probabilities, key=f"{key}.probabilities", **kw))
            if len(probs) != len(vals) or any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0,
                                                                                       abs_tol=1e-6):
                raise fail("probabilities must be one non-negative number per value, summing to 1",
                           "give as many probabilities as values, adding up to 1")
        return Dist("choice", values=vals, probabilities=probs, is_int=is_int)

    integer = kind in INTEGER_KINDS
    lo, hi = num(low, "min", integer), num(high, "max", integer)
    d = Dist(kind, low=lo, high=hi, q=num(q, "q"), mu=num(mu, "mu"), sigma=num(sigma, "sigma"),
             a=num(a, "a"), b=num(b, "b"), center=coerce_number(center), is_int=is_int or integer)
    if d.q is not None and d.q <= 0:
        raise fail(f"q must be > 0, got {d.q}", "set q to a positive step or remove it")
    if d.q is not None and lo is not None and hi is not None and math.ceil(lo / d.q - 1e-9) * d.q > hi + 1e-12:
        raise fail(f"no multiple of q = {d.q} lies in [{lo}, {hi}]", "use a smaller q or a wider range")

    if lo is not None and hi is not None and lo > hi:
        raise fail(f"min ({lo}) is greater than max ({hi})", "swap min and max")
    if lo is not None and hi is not None and lo == hi and kind not in ("int_uniform", "pow2"):
        raise fail(f"min and max are both {lo}", "widen the range, or make the key a constant")
    problem = KINDS[kind].check(d)  # what this kind needs of its parameters (search.kinds)
    if problem is not None:
        raise fail(*problem)
    return d


def dist_from_mapping(spec: Mapping[str, Any], *, file: str | None, key: str, dialect: str,
                      kind_field: str = "distribution", aliases: Mapping[str, str] | None = None) -> Dist:
    """The common `{distribution: loguniform, min: 1e-5, max: 1e-2}` form.

    Accepted fields: min/low, max/high, values, probabilities, q, mu/mean, sigma/scale/std,
    a/alpha, b/beta, center/search_center, int/is_int. Unknown fields are an error.
    """
    fields = {"min": "low", "low": "low", "max": "high", "high": "high", "values": "values",
              "probabilities": "probabilities", "q": "q", "mu": "mu", "mean": "mu", "sigma": "sigma",
              "scale": "sigma", "std": "sigma", "a": "a", "alpha": "a", "b": "b", "beta": "b",
              "center": "center", "search_center": "center", "int": "is_int", "is_int": "is_int"}
    kw: dict[str, Any] = {}
    name = None
    for k, v in spec.items():
        if k == kind_field:
            name = v
        elif k in fields:
            kw[fields[k]] = v
        else:
            raise UserError(f"unknown field {k!r}", file=file, key=join_key(key, k), dialect=dialect,
                            fix="use " + kind_field + ", " + ", ".join(sorted(set(fields))))
    if name is None:
        name = "choice" if "values" in kw else None
    if name is None:
        raise UserError(f"no {kind_field} given", file=file, key=key, dialect=dialect,
                        fix=f"add `{kind_field}: uniform` (or loguniform, choice, ...)")
    kind = canonical_kind(name, file=file, key=join_key(key, kind_field), dialect=dialect, aliases=aliases)
    if "is_int" in kw:
        kw["is_int"] = bool(kw["is_int"])
    return make_dist(kind, file=file, key=key, dialect=dialect, **kw)


def metric_and_goal(metric: Any, goal: Any, method: str, *, file: str | None, dialect: str, metric_key: str,
                    goal_key: str) -> tuple[str | None, str]:
    """The sweep's metric and goal, checked: a name, one a bayes search needs, maximize|minimize."""
    if metric is not None and not isinstance(metric, str):
        raise UserError(f"expected a metric name, got {metric!r}", file=file, key=metric_key, dialect=dialect,
                        fix=f"write e.g. `{metric_key.rsplit('.', 1)[-1]}: eval/accuracy`")
    if method == "bayes" and not metric:
        raise UserError("a bayesian search needs a metric to optimise", file=file, key=metric_key, dialect=dialect,
                        fix=f"add e.g. `{metric_key.rsplit('.', 1)[-1]}: eval/exact_accuracy` and a goal")
    goal = "maximize" if goal is None else goal
    if goal not in ("maximize", "minimize"):
        raise UserError(f"unknown goal {goal!r}", file=file, key=goal_key, dialect=dialect,
                        fix="use maximize or minimize")
    return metric, goal
