"""Plans: a validated SweepSpec in, the list of trials out. Pure and seeded: no I/O.

    expand(spec) -> list[Trial]
    validate(spec) -> None          (what expand checks first; parsers call it to fail early)

Order: environment (outermost), point (grid order or sample number), variant, repeat; then
the whole list once per progressive stage (or ASHA rung: launcher.plans.asha). bayes trials carry no params (each array task asks
Optuna when it starts) but still get stable ids and indices from their replica number.
"""
from __future__ import annotations

from jobs.errors import UserError
from launcher.plans import asha
from launcher.plans.baseline import apply_variants
from launcher.plans.grid import grid_points
from launcher.plans.progressive import Point, build_trials
from launcher.plans.random import random_points, stream
from launcher.spec import SweepSpec
from jobs.manifest import Trial

METHODS = ("grid", "random", "bayes", "baseline", asha.METHOD)


def _fail(spec: SweepSpec, message: str, key: str | None, fix: str) -> UserError:
    return UserError(message, file=spec.source, key=key, dialect=spec.dialect, fix=fix)


def validate(spec: SweepSpec) -> None:
    """Raise UserError for a spec no plan can expand (dialect parsers call this too)."""
    if spec.method not in METHODS:
        raise _fail(spec, f"unknown method {spec.method!r}", "method", "use one of: " + ", ".join(METHODS))
    if spec.method in ("random", "bayes") and (spec.n_trials is None or spec.n_trials < 1):
        raise _fail(spec, f"method {spec.method} needs a number of trials", "trials",
                    "set the number of trials (per environment), e.g. `trials: 20`")
    if spec.method == "baseline" and not spec.variants:
        raise _fail(spec, "method baseline needs variants to compare", "variants",
                    "add e.g. `variants: {baseline: {x: 0}, treatment: {x: 1}}`")
    if spec.method in ("grid", "baseline"):
        for key, dist in spec.space.items():
            if dist.kind != "choice":
                raise _fail(spec, f"a grid needs a list of values, got a {dist.kind} distribution", key,
                            "list the values (e.g. `[1e-4, 1e-3]` or `1,2,3`), or use method: random")
    if spec.repeats < 1:
        raise _fail(spec, f"repeats must be >= 1, got {spec.repeats}", "repeats", "set repeats: 1 or more")
    # One key set two ways would reach the program twice with different values.
    owners: dict[str, str] = {}
    named = [("constants", spec.constants), ("space", spec.space)]
    if spec.environments:
        named.append(("environments", {spec.env_key: None}))
    if spec.stages is not None:
        named.append(("rungs" if spec.method == asha.METHOD else "stages", {spec.stages.key: None}))
    if spec.repeats > 1:
        named.append(("repeats", {spec.seed_key: None}))
    for section, keys in named:
        for key in keys:
            if key in owners:
                raise _fail(spec, f"{key!r} is set by both {owners[key]} and {section}", key,
                            f"keep {key!r} in one place")
            owners[key] = section
    if spec.method == asha.METHOD:
        asha.check(spec, lambda message, key, fix: _fail(spec, message, key, fix))
    if spec.stages is not None and not spec.stages.values:
        raise _fail(spec, "stages has no values", "stages.values", "list at least one stage value")
    if spec.method == "bayes":
        from search.optuna_space import sampler_name

        try:
            sampler_name(spec.sampler)
        except ValueError as exc:
            raise _fail(spec, str(exc).split(":")[0], "sampler", str(exc).split(": ", 1)[-1]) from None


def _base_points(spec: SweepSpec, env_number: int) -> list[tuple[dict, bool]]:
    """The method's points for one environment; the flag says whether they need a replica number."""
    method = asha.base_method(spec) if spec.method == asha.METHOD else spec.method
    if method in ("grid", "baseline"):
        return [(p, False) for p in grid_points(spec.space, source=spec.source, dialect=spec.dialect)]
    if method == "random":
        rng = stream(spec.seed or 0, env_number)
        return [(p, True) for p in random_points(spec.space, spec.n_trials, rng)]
    return [({}, True) for _ in range(spec.n_trials)]  # bayes: asked at run time


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of the sweep, indices unique and contiguous per stage."""
    validate(spec)
    points: list[Point] = []
    for e, env in enumerate(spec.environments or (None,)):
        for k, (base, numbered) in enumerate(_base_points(spec, e)):
            for variant, params in apply_variants(base, spec.variants):
                for r in range(spec.repeats):
                    # Random samples and bayes slots may coincide in params: their number keeps
                    # their ids apart. Grid points differ by params already.
                    replica = k * spec.repeats + r if numbered else r
                    extra = {spec.seed_key: (spec.seed or 0) + r} if spec.repeats > 1 else {}
                    points.append(Point(params=params, environment=env, variant=variant,
                                        replica=replica, extra=extra))
    trials = build_trials(spec, points)
    seen: dict[str, Trial] = {}
    for t in trials:
        if t.id in seen:
            raise _fail(spec, f"two trials are identical ({t.params})", None,
                        "remove duplicate values from the lists, variants or environments")
        seen[t.id] = t
    return trials
