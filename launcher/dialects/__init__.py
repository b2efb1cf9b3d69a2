"""Sweep files of every dialect -> one validated `SweepSpec`.

    load_spec(path, dialect=None, *, method=None, trials=None, command=None) -> SweepSpec

The dialect is detected from the file's keys (`detect`); `dialect=` forces one. Each dialect
is a small module with `parse(doc, *, file) -> SweepSpec`; this module reads the YAML, picks
the parser, applies the caller's overrides (`--method`, `--trials`, `--command`) and only then
validates what needs the final method (a budget for random/bayes, a finite grid).

| dialect | recognised by                                                     | module          |
|---------|-------------------------------------------------------------------|-----------------|
| hydra   | `hydra.sweeper` block, or `override hydra/sweeper` in `defaults`  | hydra_sweeper   |
| metta   | a `sweep:` block (with no `${ss:}` value, unless it has `parameters:`); root `parameters:` with Protein leaves (`mean`, `scale`, `uniform_pow2`, `logit_normal`), `method: protein` or a `protein:` block; a root `trainer:`/`env:` of Protein leaves | metta |
| carbs   | `space:` leaves, or `${ss:...}` values anywhere                   | carbs           |
| conspec | `hyperparameters:`                                                | conspec         |
| wandb   | root `parameters:` (W&B leaves), or `program:` / `run_cap:` / `early_terminate:` | wandb |
| native  | anything else                                                     | native          |

Dialect modules are imported on use, so that reading a W&B file never imports Hydra.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

from jobs.errors import UserError
from launcher.plans import METHODS
from launcher.spec import SweepSpec
from search.dist import Dist
from search.kinds import MAX_GRID_VALUES, kind_of

DIALECTS = ("native", "conspec", "metta", "carbs", "wandb", "hydra")
_MODULES = {"native": "native", "conspec": "conspec", "metta": "metta", "carbs": "carbs",
            "wandb": "wandb", "hydra": "hydra_sweeper"}

# Keys that are not about the search in any dialect: kept in spec.extra, never an error.
NOT_SEARCH_KEYS = ("eval", "generation", "test", "resume", "max_observations_to_load", "project",
                   "entity", "name", "description", "controller")

# Where each dialect writes its trial budget, for the error that asks for one.
_BUDGET_KEY = {"wandb": "run_cap", "metta": "rollout_count", "carbs": "rollout_count",
               "hydra": "hydra.sweeper.n_trials", "conspec": "search.n_trials", "native": "trials"}

_SS = re.compile(r"\$\{\s*ss\s*:")
_METTA_ONLY_DISTS = ("uniform_pow2", "logit_normal")


# --------------------------------------------------------------------------- reading

def read_yaml(path: str | Path) -> dict[str, Any]:
    """The file's single YAML document as a mapping; any problem is one UserError line.

    Read through launcher.safe_yaml: a hostile file (aliases that expand into a huge tree,
    very deep nesting, a huge file) is refused within a second, like a syntax error.
    """
    from launcher import safe_yaml  # pyyaml: only the launcher reads sweep files

    file = str(path)
    doc = safe_yaml.read(path, what="sweep file")
    if doc is None:
        raise UserError("the file is empty", file=file, fix="write a sweep (see configs/sweeps/)")
    if not isinstance(doc, dict):
        raise UserError(f"expected a mapping of keys at the top level, got {type(doc).__name__}", file=file,
                        fix="write the sweep as `key: value` lines (see configs/sweeps/)")
    return doc


def slug_name(given: Any, file: str | None) -> str:
    """The sweep's name: the file's `name` if any, else the file's stem, made safe as a folder name.

    Unlike the native dialect, a name from the field (`My sweep #3`) is never an error.
    """
    text = str(given) if given not in (None, "") else (Path(file).stem if file else "sweep")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "sweep"


# --------------------------------------------------------------------------- detection

def _strings(tree: Any) -> Iterator[str]:
    if isinstance(tree, Mapping):
        for v in tree.values():
            yield from _strings(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _strings(v)
    elif isinstance(tree, str):
        yield tree


def _leaves(tree: Any) -> Iterator[Mapping[str, Any]]:
    """Mappings that look like a parameter spec anywhere in a `parameters:` tree."""
    if not isinstance(tree, Mapping):
        return
    # A key that is also a marker (a parameter named `space`) holds a mapping, not a scalar.
    if any(k in tree and not isinstance(tree[k], Mapping)
           for k in ("distribution", "space", "values", "value", "min", "max", "mean")):
        yield tree
    for v in tree.values():
        if isinstance(v, Mapping):
            yield from _leaves(v)


def _is_protein(params: Any) -> bool:
    for leaf in _leaves(params):
        if any(k in leaf and not isinstance(leaf[k], Mapping) for k in ("mean", "scale")) \
                or leaf.get("distribution") in _METTA_ONLY_DISTS:
            return True
        # Protein's log_normal has bounds; W&B's has mu/sigma.
        if leaf.get("distribution") == "log_normal" and "mu" not in leaf and "sigma" not in leaf:
            return True
    return False


def _is_nested_tree(params: Any) -> bool:
    """Metta generation 3 nests plain mappings; W&B nests only through `parameters:`."""
    if not isinstance(params, Mapping):
        return False
    for v in params.values():
        # `b: {...}` under a group is a child named b, not beta's `b:` (which holds a number).
        if isinstance(v, Mapping) and v and "parameters" not in v \
                and all(isinstance(c, Mapping) for c in v.values()):
            return True
    return False


def _has_space_leaves(params: Any) -> bool:
    return any(isinstance(leaf.get("space"), str) for leaf in _leaves(params))


def _hydra_defaults(doc: Mapping[str, Any]) -> bool:
    for item in doc.get("defaults") or []:
        if isinstance(item, Mapping) and any(str(k).replace(" ", "").startswith("overridehydra/sweeper")
                                             for k in item):
            return True
    return False


def detect(doc: Mapping[str, Any]) -> str:
    """The dialect a sweep file is written in, from its keys (see the module docstring)."""
    hydra = doc.get("hydra")
    if (isinstance(hydra, Mapping) and "sweeper" in hydra) or _hydra_defaults(doc):
        return "hydra"
    sweep = doc.get("sweep")
    if isinstance(sweep, Mapping) and isinstance(sweep.get("parameters"), Mapping):
        return "carbs" if _has_space_leaves(sweep["parameters"]) else "metta"
    if "hyperparameters" in doc:
        return "conspec"
    params = doc.get("parameters")
    if isinstance(params, Mapping):
        if _has_space_leaves(params):
            return "carbs"
        if (str(doc.get("method", "")).lower() == "protein" or "protein" in doc or _is_protein(params)
                or _is_nested_tree(params)):
            return "metta"
        return "wandb"
    if any(_SS.search(s) for s in _strings(doc)):
        return "carbs"  # inline `${ss:...}` values: the whole tree is the config
    if isinstance(sweep, Mapping):
        return "metta"
    if any(isinstance(doc.get(k), Mapping) and _is_protein(doc[k]) for k in ("trainer", "env")):
        return "metta"  # its parser says to nest these under `sweep:`
    if any(k in doc for k in ("program", "run_cap", "early_terminate")):
        return "wandb"
    return "native"


# --------------------------------------------------------------------------- loading

def _grid_values(key: str, dist: Dist, *, file: str, dialect: str) -> tuple[Any, ...]:
    """A grid needs finite lists: enumerate what is countable, refuse what is continuous."""
    values = kind_of(dist).grid(dist)
    if values is None:
        raise UserError(f"a grid needs a list of values, but this is a {dist.kind} distribution", file=file,
                        key=key, dialect=dialect,
                        fix="give `values: [...]`, or run it with --method random and --trials N")
    if len(values) > MAX_GRID_VALUES:
        raise UserError(f"the grid would hold {len(values)} values for this key", file=file, key=key,
                        dialect=dialect, fix="list the values you want, or use --method random")
    return tuple(values)


def finalize(spec: SweepSpec, *, method: str | None = None, trials: int | None = None,
             command: list[str] | tuple[str, ...] | None = None) -> SweepSpec:
    """Apply the caller's overrides, then check what depends on the final method."""
    file, dialect = spec.source, spec.dialect
    changes: dict[str, Any] = {}
    if method is not None:
        if method not in METHODS:
            raise UserError(f"unknown method {method!r}", key="--method", dialect=dialect, file=file,
                            fix="use one of: " + ", ".join(METHODS))
        changes["method"] = method
    if trials is not None:
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise UserError(f"--trials must be a positive integer, got {trials!r}", file=file,
                            dialect=dialect, fix="pass e.g. --trials 20")
        changes["n_trials"] = trials
    if command is not None:
        if isinstance(command, str) or not command:
            raise UserError("--command must be a non-empty argv list", file=file, dialect=dialect,
                            fix="pass e.g. --command 'python -m train'")
        changes["command"] = tuple(str(c) for c in command)
    spec = dataclasses.replace(spec, **changes) if changes else spec

    if spec.method in ("random", "bayes") and spec.n_trials is None and spec.space:
        budget = _BUDGET_KEY.get(dialect, "trials")
        raise UserError(f"a {spec.method} search needs a number of trials", file=file, key=budget,
                        dialect=dialect, fix=f"add `{budget}: N` to the file or pass --trials N")
    if spec.method == "grid" and any(d.kind != "choice" for d in spec.space.values()):
        space = {k: (d if d.kind == "choice" else
                     Dist("choice", values=_grid_values(k, d, file=file, dialect=dialect), is_int=d.is_int))
                 for k, d in spec.space.items()}
        spec = dataclasses.replace(spec, space=space)
    from launcher.plans import validate  # what every plan checks (keys set twice, ...), before any I/O

    validate(spec)
    return spec


def load_spec(path: str | Path, dialect: str | None = None, *, method: str | None = None,
              trials: int | None = None, command: list[str] | tuple[str, ...] | None = None) -> SweepSpec:
    """Read a sweep file of any dialect into a validated SweepSpec.

    `dialect` forces one (else `detect`); `method`, `trials` and `command` replace the file's
    (the CLI's --method, --trials, --command) before validation.
    """
    file = str(path)
    doc = read_yaml(path)
    if dialect is None:
        dialect = detect(doc)
    elif dialect not in DIALECTS:
        raise UserError(f"unknown dialect {dialect!r}", key="--dialect", file=file,
                        fix="use one of: " + ", ".join(DIALECTS))
    module = importlib.import_module(f"launcher.dialects.{_MODULES[dialect]}")
    spec = module.parse(doc, file=file)
    spec = dataclasses.replace(spec, dialect=dialect, source=file)
    return finalize(spec, method=method, trials=trials, command=command)
