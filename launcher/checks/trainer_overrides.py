"""A sweep of our trainer (`python -m train`): every override checked against the trainer's
composed Hydra config before anything is written or submitted.

    check_overrides(spec, trials, *, command_line=()) -> None        raises UserError (exit 2)

Without it a typo (`los.feudal_loss_weight=0.3`) passes `sweep launch` and every trial fails on
the cluster, three attempts each, with Hydra's "Key 'los' is not in struct" in its trial.log.

Checked when the command runs our `train` package with key=value overrides (`python -m train`,
`python3 -m train`, `/path/to/python -m train`, W&B's `/usr/bin/env python -m train
${args_no_hyphens}`, `torchrun --nproc_per_node=4 -m train`), from the trials' overrides and the
command's own key=value items:
  - a group choice (`arch=hrm_v1_gated`) names a config of the group (configs/arch/*.yaml);
  - every other key is a key of the config composed with those choices (did-you-mean over its
    dotted keys); `+key` adds a key and `++key`, `hydra.*` are left to Hydra;
  - every distinct value has the type of the config's value there: an integer key refuses 2.5
    and "abc", a float key takes 1, a boolean key only true/false; null and text keys take any;
  - every distinct text value reads on the trainer's command line as one value (not a sweep
    such as `a,b`, not a syntax error);
  - then `hydra.compose(overrides=...)` once per distinct key set (with its group choices): the
    trials of a stage share one, later stages add checkpoint_path, environments add data_path.
    What Hydra refuses beyond the above (`+lr=1` where lr exists) is refused here too.
A bayes plan's values are asked when each trial starts: its space is checked through the
bounds and choices of each distribution instead. Any other program is not checked.

Cost: importing Hydra, two compositions per distinct key set, and one pass over the trials
that groups their keys and collects distinct values; no Hydra work per trial, no torch.
"""
from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import itertools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from jobs.argv import MACROS, format_value
from jobs.errors import UserError

if TYPE_CHECKING:
    from launcher.spec import SweepSpec
    from jobs.manifest import Trial

# The trainer we know: the `train` package next to this launcher, a Hydra app on ../configs.
_TRAINER = Path(__file__).resolve().parents[2] / "train" / "__init__.py"
_CONFIG_NAME = "config"

_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Interpreter options that may stand before `-m train` (-X and -W take an argument).
_PY_FLAGS = {"-u", "-O", "-OO", "-B", "-E", "-s", "-S", "-I", "-b", "-bb", "-q", "-v", "-P"}
_PY_FLAGS_WITH_ARG = {"-X", "-W"}
_HYDRA_ARGS = "${args_no_hyphens}"
# What a later progressive stage passes as checkpoint_key: a path under the sweep directory,
# which does not exist yet; any text would do, the key is what is checked.
_CHECKPOINT = "checkpoints"
# Config value kinds, and the kinds of value each accepts (None, `null`, is accepted everywhere:
# the trainer treats null as "not set" for the keys where that means something).
_ACCEPTS = {"bool": {"bool"}, "int": {"int"}, "float": {"int", "float"},
            "str": {"str", "int", "float", "bool"}, "mapping": {"mapping"}, "list": {"list"}}
_NAMES = {"bool": "a boolean (true/false)", "int": "an integer", "float": "a number", "str": "text",
          "mapping": "a group of keys", "list": "a list"}


# --- is this our trainer? ----------------------------------------------------------------------

def trainer_items(command: Sequence[Any], *, file: str | None = None) -> list[str] | None:
    """The command's own key=value items when it runs our trainer with Hydra-style overrides;
    None for any other program (or Hydra flags such as --multirun, which change what runs)."""
    argv = [{"${env}": "/usr/bin/env", "${interpreter}": "python"}.get(str(c), str(c))
            for c in command if c is not None]
    from jobs import torchrun

    if torchrun.starts_torchrun(argv):   # torchrun [its options] -m train ...: each rank runs python -m train ...
        argv = ["python", *torchrun.program(argv)]
    if argv and os.path.basename(argv[0]) == "env":
        argv = argv[1:]
        while argv and _ENV_ASSIGNMENT.match(argv[0]):
            argv = argv[1:]
    if not argv or not _PYTHON.match(os.path.basename(argv[0])):
        return None
    i = 1
    while i < len(argv) and argv[i] != "-m":
        if argv[i] in _PY_FLAGS:
            i += 1
        elif argv[i] in _PY_FLAGS_WITH_ARG:
            i += 2
        else:
            return None  # a script, `-c`, ...: not the trainer module
    if argv[i + 1:i + 2] not in (["train"], ["train.__main__"]) or not _is_our_trainer():
        return None
    items = []
    for item in argv[i + 2:]:
        if item == _HYDRA_ARGS:
            continue
        if item in MACROS:
            raise UserError(f"the trainer reads key=value overrides, but the command passes them as {item}",
                            file=file, key="command", fix=f"use {_HYDRA_ARGS} in the command")
        if item.startswith("-") or "=" not in item:
            return None
        items.append(item)
    return items


def _is_our_trainer() -> bool:
    """`python -m train` run in this directory finds our package (not a `train` of another project).

    A spec lookup, no import: the trial runs in the launch's working directory, which `-m` puts
    first on sys.path; found nowhere there, the interpreter's own path decides.
    """
    found = importlib.machinery.PathFinder.find_spec("train", [os.getcwd()])
    if found is None:
        try:
            found = importlib.util.find_spec("train")
        except (ImportError, ValueError):
            return False
    origin = getattr(found, "origin", None)
    return bool(origin) and Path(origin).resolve() == _TRAINER


# --- the trials' key sets and distinct values ---------------------------------------------------

def _samples(dist: Any) -> list[Any]:
    """Values that stand for a distribution whose points are asked at run time (bayes)."""
    if dist.kind == "choice":
        return list(dist.values)
    bounds = [x for x in (dist.low, dist.high, dist.mu, dist.center) if x is not None] or [0.5]
    return [int(x) if dist.is_int else float(x) for x in bounds]   # Dist sets is_int for the int kinds


def _group_name(key: str) -> str:
    return key.lstrip("+").split("@", 1)[0]


class _Collected:
    """One pass over the rows (one per trial): key sets with a first row, distinct values per key."""

    def __init__(self, groups: set[str]) -> None:
        self.groups = groups
        self.first_rows: dict[tuple, dict[str, Any]] = {}            # (keys, choices) -> row
        self.values: dict[tuple, dict[str, dict[Any, Any]]] = {}     # choices -> key -> values
        self._group_keys: dict[tuple[str, ...], tuple[str, ...]] = {}

    def is_group(self, key: str) -> bool:
        name = _group_name(key)
        return "/" in name or name in self.groups

    def add(self, row: dict[str, Any]) -> None:
        keys = tuple(row)
        group_keys = self._group_keys.get(keys)
        if group_keys is None:
            group_keys = self._group_keys[keys] = tuple(k for k in keys if self.is_group(k))
        choices = tuple((k, row[k]) for k in group_keys)
        self.first_rows.setdefault((keys, choices), row)
        per_key = self.values.setdefault(choices, {})
        for key, value in row.items():
            seen = per_key.setdefault(key, {})
            try:  # the type is part of the identity: 1, 1.0 and True are equal in a dict
                seen.setdefault((type(value), value), value)
            except TypeError:  # a list or mapping value
                seen.setdefault((type(value), repr(value)), value)


def _rows(spec: SweepSpec, trials: Iterable[Trial], items: list[str]) -> Iterable[dict[str, Any]]:
    """Each trial's overrides as its program gets them: the command's own items, the trial's
    overrides, the checkpoint of a later stage and (bayes) values standing for those asked later."""
    # The command's own items go to the trainer as written: their values are text to read.
    command_row = dict(item.split("=", 1) for item in items)
    checkpoint_key = spec.stages.checkpoint_key if spec.stages is not None else None
    asked: list[dict[str, Any]] = []
    if spec.method == "bayes" and spec.space:
        samples = {k: _samples(d) for k, d in spec.space.items()}
        # Enough points that every sample of every key appears in one (the rest repeat the first).
        asked = [{k: s[i] if i < len(s) else s[0] for k, s in samples.items()}
                 for i in range(max(len(s) for s in samples.values()))]
    for trial in trials:
        row = trial.overrides
        later_stage = trial.parent is not None and checkpoint_key is not None
        if command_row or later_stage:
            row = {**command_row, **row}
            if later_stage:
                row.setdefault(checkpoint_key, _CHECKPOINT)
        if not asked:
            yield row
        for point in asked:
            yield {**row, **point}


# --- checking against the composed config --------------------------------------------------------

def _kind(value: Any) -> str | None:
    from omegaconf import DictConfig, ListConfig

    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (dict, DictConfig)):
        return "mapping"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    return None


def _dotted_keys(tree: Any, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        out.append(dotted)
        if isinstance(value, dict):
            out += _dotted_keys(value, dotted + ".")
    return out


class _Checker:
    def __init__(self, spec: SweepSpec, config_dir: Path, command_line: Sequence[str]) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.spec = spec
        try:  # as the user would type it
            self.shown_dir = config_dir.relative_to(Path.cwd())
        except ValueError:
            self.shown_dir = config_dir
        self.parser = OverridesParser.create()
        self.cli_keys = {item.split("=", 1)[0].lstrip("+~") for item in command_line if "=" in item}

    def fail(self, key: str, message: str, fix: str) -> UserError:
        """The error names where the key was written: the command line or the sweep file."""
        file = "command line" if key.lstrip("+") in self.cli_keys else self.spec.source
        return UserError(message, file=file, key=key, fix=fix)

    def compose(self, overrides: list[str], keys: list[str]) -> Any:
        """hydra.compose; what it refuses becomes one line naming the key Hydra names (else the first)."""
        from hydra import compose
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        try:
            return compose(config_name=_CONFIG_NAME, overrides=overrides)
        except (HydraException, OmegaConfBaseException) as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            lines = list(itertools.takewhile(lambda ln: not ln.startswith("Config search path"), lines))
            said = " ".join(lines[:3]).rstrip(".") or exc.__class__.__name__
            # `+k` first: Hydra names `k` when `+k` appends to a key that exists.
            ordered = sorted(keys, key=lambda k: not k.startswith("+"))
            key = next((k for k in ordered if f"'{k.lstrip('+')}" in said), keys[0] if keys else "command")
            raise self.fail(key, f"the trainer's Hydra config refuses the overrides: {said}",
                            "fix the key or value Hydra names") from None

    def check_choices(self, loader: Any, choices: tuple[tuple[str, Any], ...]) -> None:
        for key, value in choices:
            if value is None or key.startswith("+"):
                continue  # `group=null` drops the group; `+group=x` is checked by composing
            group = _group_name(key)
            options = loader.get_group_options(group)
            if str(value) not in options:
                close = difflib.get_close_matches(str(value), options, n=1)
                hint = f"did you mean {group}={close[0]}? " if close else ""
                raise self.fail(key, f"the trainer has no {group} config {value!r}",
                                f"{hint}the {group} configs are {', '.join(options)} "
                                f"({self.shown_dir / group}/*.yaml)")

    def check_values(self, base: Any, where: str, values: dict[str, dict[Any, Any]],
                     collected: _Collected) -> None:
        from omegaconf import OmegaConf

        keys = _dotted_keys(OmegaConf.to_container(base, resolve=False))
        known = set(keys)
        for key, seen in values.items():
            if collected.is_group(key) or key.startswith("+") or key.split(".", 1)[0] == "hydra":
                # Choices were checked against the group; whether `+key` may be added and what
                # Hydra's own keys take, composing says.
                self.parse_texts(key, seen)
                continue
            if key not in known:
                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}? " if close else f"see {where} for its keys. "
                raise self.fail(key, f"not a key of the trainer's config ({where})",
                                f"{hint}To add a key of your own, write +{key}=...")
            try:
                default = OmegaConf.select(base, key, throw_on_resolution_failure=False)
            except Exception:  # noqa: BLE001 - an interpolation we cannot resolve here: any type
                default = None
            want = _kind(default) if default != "???" else None
            texts = self.parse_texts(key, seen)
            if want is None:
                continue
            for ident, value in seen.items():
                typed = texts.get(ident, value)
                got = _kind(typed)
                if typed is None or got in _ACCEPTS[want]:
                    continue
                shown = repr(value) if isinstance(value, str) else format_value(value)
                raise self.fail(key, f"the trainer's config holds {_NAMES[want]} here ({key}: "
                                     f"{format_value(default) if want not in ('mapping', 'list') else '...'}), "
                                     f"got {shown} ({_NAMES.get(got or '', type(typed).__name__)})",
                                f"give {_NAMES[want]}" + ("" if want in ("mapping", "list") else
                                                           f", e.g. {key.lstrip('+')}={format_value(default)}"))

    def parse_texts(self, key: str, seen: dict[Any, Any]) -> dict[Any, Any]:
        """Read each distinct text value as the trainer's command line will (same keys as `seen`)."""
        from hydra.errors import HydraException

        out: dict[Any, Any] = {}
        for ident, value in seen.items():
            if not isinstance(value, str):
                continue  # numbers, booleans, null: format_value writes them as Hydra reads them
            text = f"{key}={format_value(value)}"
            try:
                override = self.parser.parse_overrides([text])[0]
            except HydraException as exc:
                reason = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), "syntax error")
                raise self.fail(key, f"the trainer cannot read {text!r} on its command line: {reason}",
                                "quote the value for Hydra inside the string, e.g. \"'a b'\"") from None
            if override.is_sweep_override():
                raise self.fail(key, f"{text!r} reads as a Hydra sweep on the trainer's command line",
                                f"to pass it as one value, quote it for Hydra: \"'{value}'\"")
            out[ident] = override.value()
        return out


def check_overrides(spec: SweepSpec, trials: Sequence[Trial], *, command_line: Sequence[str] = ()) -> None:
    """Refuse (UserError) a sweep of our trainer whose overrides the trainer would refuse.

    `command_line` is what the user typed after the sweep file (the key=value items): errors
    about those keys name the command line instead of the file.
    """
    items = trainer_items(spec.command, file=spec.source)
    if items is None or not trials:
        return
    config_dir = _TRAINER.parent.parent / "configs"
    if not (config_dir / f"{_CONFIG_NAME}.yaml").is_file():
        return
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return  # inside a Hydra app already: composing here would replace its state
    checker = _Checker(spec, config_dir, command_line)
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        collected = _Collected(set(loader.list_groups("")))
        for row in _rows(spec, trials, items):
            collected.add(row)
        for choices, values in collected.values.items():
            checker.check_choices(loader, choices)
            rendered = [f"{k}={format_value(v)}" for k, v in choices]
            base = checker.compose(rendered, [k for k, _ in choices])
            where = str(checker.shown_dir / f"{_CONFIG_NAME}.yaml")
            if rendered:
                where += f" with {' '.join(rendered)}"
            checker.check_values(base, where, values, collected)
        for row in collected.first_rows.values():
            checker.compose([f"{k}={format_value(v)}" for k, v in row.items()], list(row))
