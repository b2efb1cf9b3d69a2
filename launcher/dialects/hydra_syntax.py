"""Hydra sweep expressions -> our `Dist` (or a constant), through hydra-core's own parser.

    1,2,3                          choice(1, 2, 3)
    choice(a,b) / shuffle(...)     choice (order kept; shuffling is the plan's business)
    range(1,5) / range(0,1,step=0.25)   half-open, expanded -> choice(1,2,3,4) / (0,0.25,0.5,0.75)
    interval(0.1, 1.0)             uniform (Hydra's interval is float, even for int bounds)
    int(interval(1, 100))          int_uniform
    tag(log, interval(1e-5, 1e-2)) loguniform   (int_loguniform under int(...))
    1e-5, data/sudoku              a constant (not a sweep)

`glob(...)` selects config-group options and has no meaning for a value: it is refused.
hydra-core is imported on first use: dialects that never see Hydra syntax don't pay for it.
"""
from __future__ import annotations

import math
from typing import Any

from jobs.errors import UserError
from launcher.dialects.common import make_dist
from search.dist import Dist

_FIX = "see https://hydra.cc/docs/advanced/override_grammar/extended/ (e.g. `1,2,3`, `range(1,5)`, " \
       "`tag(log, interval(1e-5, 1e-2))`)"


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    return OverridesParser.create()


def _parse(text: str, *, file: str | None, key: str | None, dialect: str, shown: str | None = None):
    from hydra.errors import HydraException
    try:
        return _parser().parse_overrides([text])[0]
    except HydraException as exc:
        # Hydra's message repeats the override and ends with a link: keep the line in between.
        said = [ln.strip() for ln in str(exc).splitlines()
                if ln.strip() and not ln.startswith(("Error parsing override", "See https"))]
        reason = said[0] if said else "syntax error"
        raise UserError(f"cannot parse Hydra sweep syntax {shown or repr(text)}: {reason}", file=file, key=key,
                        dialect=dialect, fix=_FIX) from None


def _plain(value: Any) -> Any:
    """Hydra hands back its own container types for `[..]` / `{..}`: make them plain."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _range_values(sweep, *, file: str | None, key: str | None, dialect: str) -> list[Any]:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step == 0:
        raise UserError("range step is 0", file=file, key=key, dialect=dialect, fix="use a non-zero step")
    n = max(0, math.ceil((stop - start) / step))
    if all(isinstance(x, int) for x in (start, stop, step)):
        values: list[Any] = [start + i * step for i in range(n)]
    else:
        # Multiply, don't accumulate: range(0,1,0.1) must give 0.3, not 0.30000000000000004.
        values = [float(f"{start + i * step:.12g}") for i in range(n)]
    if not values:
        raise UserError(f"range({start}, {stop}, step={step}) is empty", file=file, key=key,
                        dialect=dialect, fix="ranges are half-open: make stop lie beyond start in the "
                                             "direction of step")
    return values


def _to_dist(value: Any, *, file: str | None, key: str | None, dialect: str) -> Dist | Any:
    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep

    k = key or "value"
    if isinstance(value, ChoiceSweep):
        values: list[Any] = []
        for item in value.list:
            # `1,range(3,5)` nests a range inside a choice.
            if isinstance(item, RangeSweep):
                values.extend(_range_values(item, file=file, key=key, dialect=dialect))
            else:
                values.append(_plain(item))
        return make_dist("choice", values=values, file=file, key=k, dialect=dialect)
    if isinstance(value, RangeSweep):
        return make_dist("choice", values=_range_values(value, file=file, key=key, dialect=dialect),
                         file=file, key=k, dialect=dialect)
    if isinstance(value, IntervalSweep):
        ints = isinstance(value.start, int) and isinstance(value.end, int)
        log = "log" in value.tags
        kind = {(False, False): "uniform", (False, True): "loguniform",
                (True, False): "int_uniform", (True, True): "int_loguniform"}[(ints, log)]
        return make_dist(kind, low=value.start, high=value.end, file=file, key=k, dialect=dialect)
    if isinstance(value, Glob):
        raise UserError("glob(...) selects config-group options and cannot sweep a value", file=file,
                        key=key, dialect=dialect, fix="list the values instead, e.g. `a,b,c`")
    return _plain(value)


def parse_value(text: str, *, key: str | None = None, file: str | None = None,
                dialect: str = "hydra") -> Dist | Any:
    """Parse the right-hand side of an override: a sweep -> Dist, anything else -> the constant."""
    override = _parse(f"x={text}", file=file, key=key, dialect=dialect, shown=repr(text))
    return _to_dist(override.value(), file=file, key=key, dialect=dialect)


def parse_assignment(text: str, *, file: str | None = None,
                     dialect: str = "hydra") -> tuple[str, Dist | Any]:
    """`"a.b=1,2,3"` -> ("a.b", Dist(choice, values=(1, 2, 3))); `"+x=4"` -> ("+x", 4)."""
    from hydra.core.override_parser.types import OverrideType

    override = _parse(text, file=file, key=text.split("=", 1)[0] or None, dialect=dialect)
    key = override.key_or_group + (f"@{override.package}" if override.package else "")
    if override.type == OverrideType.DEL:
        raise UserError(f"{text!r} deletes a key; a sweep can only set values", file=file, key=key,
                        dialect=dialect, fix="remove the `~` override")
    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++"}.get(override.type, "")
    key = prefix + key
    if not text.split("=", 1)[1].strip():
        # Hydra reads `lr=` as the empty string: a value left out by mistake (`lr=$LR` with LR
        # unset) that the program would only refuse, or misuse, once each trial runs.
        raise UserError(f"{text!r} has no value after '='", file=file, key=key, dialect=dialect,
                        fix=f"write {key}=VALUE ({key}=null means none, {key}='' the empty string)")
    return key, _to_dist(override.value(), file=file, key=key, dialect=dialect)
