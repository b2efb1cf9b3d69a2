"""CARBS search spaces: `space:` leaves in a parameter tree, or `${ss:...}` values in a config.

Generation 4, leaves in a nested `parameters:` tree (also accepted under `sweep.parameters`):

    parameters:
      trainer:
        learning_rate: {space: log, min: 1e-5, max: 1e-1, search_center: 3e-4}
        batch_size: {space: pow2, min: 1024, max: 65536, search_center: 16384}
        bptt_horizon: {space: linear, is_int: true, min: 8, max: 64}

Generation 5, inline values anywhere in a config tree; every other leaf is a constant
passed to every trial:

    trainer:
      learning_rate: ${ss:log, 1e-5, 1e-1, 3e-4}      # SPACE, MIN, MAX[, SEARCH_CENTER]
      gamma: ${ss:logit, 0.9, 0.999}
      batch_size: ${ss:pow2, 1024, 65536}
      update_epochs: ${ss:int, 1, 8}
      total_timesteps: 1_000_000                        # constant

Spaces: linear -> uniform (int_uniform with is_int), log -> loguniform (int_loguniform),
logit -> logit (bounds 0 and 1, CARBS's default, become 1e-6 and 1 - 1e-6), pow2 -> pow2,
int -> int_uniform. The header (metric, goal, method,
rollout_count, num_samples, protein: ...) is read as in the Metta dialect, at the root or
under `sweep:`. A value that looks like a search expression but is not one (`$pow2(1, 8)`,
`${ss:lgo, 1, 2}`) is a warning naming the key, and is passed as the literal string.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from jobs.errors import UserError
from launcher.dialects.common import coerce_tree, join_key, make_dist, number
from search.dist import Dist
from launcher.spec import SweepSpec

DIALECT = "carbs"
SPACES = {"linear": "uniform", "log": "loguniform", "logit": "logit", "pow2": "pow2", "int": "int_uniform"}
LEAF_FIELDS = ("space", "min", "max", "search_center", "is_int", "scale", "rounding_factor")
LOGIT_EPS = 1e-6

_INLINE = re.compile(r"\$\{\s*ss\s*:(?P<args>[^{}]*)\}")
# Anything that reads like a search expression: `${ss...`, `$pow2(`, `$log(`, `${uniform:`...
_LOOKALIKE = re.compile(r"\$\{\s*ss\b|\$\{?\s*(ss|pow2|log|logit|linear|int|uniform|loguniform|choice)\s*[:(]",
                        re.IGNORECASE)


def hydra_literal(text: str) -> str:
    """Quote a string for a Hydra override so it arrives verbatim (`${` escaped: no interpolation)."""
    body = text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    return f"'{body}'"


def open_logit_bounds(lo: Any, hi: Any, *, key: str, file: str, dialect: str) -> tuple[Any, Any]:
    """CARBS and Protein write a logit space as [0, 1] (their default); its ends have no logit.

    Step inside by LOGIT_EPS so the space keeps its meaning (every probability is reachable).
    """
    lo, hi = (number(v, key=key, file=file, dialect=dialect) for v in (lo, hi))
    return (LOGIT_EPS if lo == 0 else lo), (1 - LOGIT_EPS if hi == 1 else hi)


def _dist(space: str, lo: Any, hi: Any, center: Any, is_int: bool, *, key: str, file: str,
          dialect: str) -> Dist:
    kind = SPACES[space]
    if kind == "logit":
        lo, hi = open_logit_bounds(lo, hi, key=key, file=file, dialect=dialect)
    if is_int and kind == "uniform":
        kind = "int_uniform"
    elif is_int and kind == "loguniform":
        kind = "int_loguniform"
    dist = make_dist(kind, low=lo, high=hi, center=center, is_int=is_int, key=key, file=file, dialect=dialect)
    check_center(dist, key=key, file=file, dialect=dialect, name="search_center")
    return dist


def check_center(dist: Dist, *, key: str, file: str, dialect: str, name: str) -> None:
    """The search centre (Protein `mean`, CARBS `search_center`) must be a number in [min, max]."""
    if dist.center is None:
        return
    c = number(dist.center, key=join_key(key, name), file=file, dialect=dialect)
    if (dist.low is not None and c < dist.low) or (dist.high is not None and c > dist.high):
        raise UserError(f"{name} {c} lies outside [{dist.low}, {dist.high}]", key=join_key(key, name),
                        file=file, dialect=dialect, fix=f"choose a {name} between min and max")


def inline_value(value: Any, *, key: str, file: str, dialect: str, warnings: list[str]) -> Dist | Any:
    """A config leaf: `${ss:...}` -> Dist; a look-alike -> warning + quoted literal; else the value."""
    if not isinstance(value, str):
        return coerce_tree(value)
    m = _INLINE.fullmatch(value.strip())
    if m:
        args = [a.strip() for a in m.group("args").split(",")]
        space = args[0].lower() if args else ""
        if space in SPACES and len(args) in (3, 4):
            try:
                lo, hi = (number(a, key=key, file=file, dialect=dialect) for a in args[1:3])
            except UserError:
                pass  # not numbers: a look-alike, warned about below
            else:
                center = args[3] if len(args) == 4 else None
                return _dist(space, lo, hi, center, space in ("int", "pow2"), key=key, file=file,
                             dialect=dialect)
    if m or _LOOKALIKE.search(value):
        warnings.append(f"{file}: key '{key}': {value!r} looks like a search expression but is not one "
                        f"(expected ${{ss:SPACE, MIN, MAX[, CENTER]}} with SPACE one of "
                        f"{', '.join(SPACES)}); passed as the literal string")
        return hydra_literal(value)
    return coerce_tree(value)


def leaf(cfg: Mapping[str, Any], *, key: str, file: str, dialect: str, warnings: list[str]) -> Dist:
    """A `{space: log, min, max, search_center, is_int}` leaf."""
    for f in cfg:
        if f not in LEAF_FIELDS:
            warnings.append(f"{file}: key '{join_key(key, f)}': not a CARBS field ({', '.join(LEAF_FIELDS)}); "
                            "ignored")
    space = str(cfg.get("space", "")).strip().lower()
    if space not in SPACES:
        raise UserError(f"unknown space {cfg.get('space')!r}", key=join_key(key, "space"), file=file,
                        dialect=dialect, fix="use one of: " + ", ".join(SPACES))
    for bound in ("min", "max"):
        if cfg.get(bound) is None:
            raise UserError(f"a {space} space needs min and max", key=key, file=file, dialect=dialect,
                            fix=f"add `{bound}:`")
    is_int = bool(cfg.get("is_int", False)) or space in ("int", "pow2")
    return _dist(space, cfg["min"], cfg["max"], cfg.get("search_center"), is_int, key=key, file=file,
                 dialect=dialect)


def walk(tree: Mapping[str, Any], prefix: str, *, file: str, dialect: str, space: dict[str, Dist],
         constants: dict[str, Any], warnings: list[str],
         is_leaf: Callable[[Any], bool] = lambda v: isinstance(v, Mapping) and "space" in v,
         make_leaf: Callable[[Mapping[str, Any], str], Dist] | None = None) -> None:
    """Every leaf of a config tree: parameter leaves (CARBS `space:` mappings by default; Metta
    passes its own test and builder) and `${ss:}` strings are searched, the rest is constant."""
    make_leaf = make_leaf or (lambda value, key: leaf(value, key=key, file=file, dialect=dialect, warnings=warnings))
    for name, value in tree.items():
        key = join_key(prefix, name)
        if is_leaf(value):
            space[key] = make_leaf(value, key)
        elif isinstance(value, Mapping) and value:
            walk(value, key, file=file, dialect=dialect, space=space, constants=constants, warnings=warnings,
                 is_leaf=is_leaf, make_leaf=make_leaf)
        else:
            v = inline_value(value, key=key, file=file, dialect=dialect, warnings=warnings)
            (space if isinstance(v, Dist) else constants)[key] = v


def parse(doc: dict[str, Any], *, file: str) -> SweepSpec:
    from launcher.dialects import metta  # the shared Protein/CARBS header; metta never imports us at load

    header, tree, extra, warnings = metta.split_header(doc, file=file, dialect=DIALECT, tree_at_root=True)
    space: dict[str, Dist] = {}
    constants: dict[str, Any] = {}
    walk(tree, "", file=file, dialect=DIALECT, space=space, constants=constants, warnings=warnings)
    sweep = doc.get("sweep") if isinstance(doc.get("sweep"), Mapping) else {}
    for block in metta.OVERRIDE_BLOCKS:  # sweep.trainer / sweep.env override every trial, as in Metta
        if isinstance(sweep.get(block), Mapping):
            walk(sweep[block], block, file=file, dialect=DIALECT, space=space, constants=constants,
                 warnings=warnings)
    if not space:
        raise UserError("no search space: no `space:` leaf and no `${ss:...}` value", key="parameters",
                        file=file, dialect=DIALECT,
                        fix="add e.g. `lr: ${ss:log, 1e-5, 1e-2}` or `lr: {space: log, min: 1e-5, max: 1e-2}`")
    return metta.build_spec(header, space, constants, extra, warnings, file=file, dialect=DIALECT)
