"""One class per distribution kind: everything the toolkit does with a `Dist` of that kind.

    check(d)            what is wrong with its parameters (message, fix), or None
    sample(d, rng)      one value, drawn with a numpy Generator (plans stay seeded and pure)
    prepared(d)         `lambda rng: sample(d, rng)` with the per-call work done once (same draws)
    in_domain(d, v)     could `sample` have returned v?
    grid(d)             the values a grid enumerates, or None where the kind is continuous
    to_optuna(d)        the Optuna distribution that searches it
    from_optuna(d, x)   the program's value for Optuna's value x
    optuna_value(d, v)  Optuna's value for a program value (to enqueue a search centre)

`KINDS[name]` is the table; `kind_of(d)` looks a Dist's up. Values come back as plain Python
ints/floats/strings: they are hashed into trial ids and written to JSON, where numpy scalars would
not round-trip. numpy and Optuna are imported by whoever calls the functions that need them.

How each kind is searched by Optuna (the "optuna value" is what the study stores):

    uniform          Float(low, high)                   value = optuna value
    loguniform       Float(low, high, log=True)         value = optuna value
    int_uniform      Int(low, high)                     value = optuna value
    int_loguniform   Int(low, high, log=True)           value = optuna value
    pow2             Int(log2 low, log2 high)           value = 2 ** k      (the GP sees the exponent)
    logit            Float(logit low, logit high)       value = sigmoid(x)  (uniform in logit space)
    choice           Categorical(values, or indices when a value is a list/dict)
    normal           Float(mu - 3 sigma, mu + 3 sigma)  intersected with low/high when given
    lognormal        Float(e^(mu - 3 sigma), e^(mu + 3 sigma), log=True)  intersected with low/high
    beta             Float(0, 1)                        intersected with low/high when given

normal / lognormal / beta become bounded uniform searches over (nearly) all of their mass: a
Bayesian optimiser needs a box, and the prior's shape only mattered for random draws. `q` and
`is_int` are applied to the value afterwards (the same rounding as random plans), and a choice's
`probabilities` are ignored by Optuna (every choice is a candidate).
"""
from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any, Callable

from search.dist import KINDS as KIND_NAMES
from search.dist import Dist

if TYPE_CHECKING:
    import numpy as np

    Draw = Callable[[np.random.Generator], Any]

# Quantised values such as 0.1 * 3 come out as 0.30000000000000004; 12 significant digits are far
# below any search resolution and print the way the user wrote the step.
_DIGITS = 12
# A grid over an integer range is enumerated; past this many points it is surely a mistake.
MAX_GRID_VALUES = 10_000
_SIGMAS = 3.0
_PRIMITIVE = (str, int, float, bool, type(None))
# numpy refuses choice probabilities off 1 by more than sqrt(eps).
_P_TOLERANCE = 0.5 * math.sqrt(2.0 ** -52)


def finish(d: Dist, v: float) -> int | float:
    """Apply q (a step) and is_int, staying inside [low, high] when bounds are given."""
    lo = -math.inf if d.low is None else d.low
    hi = math.inf if d.high is None else d.high
    if d.q is not None:
        q = d.q
        v = round(v / q) * q
        # Rounding to the step may cross a bound: step back inside.
        if v > hi:
            v = math.floor(hi / q) * q
        if v < lo:
            v = math.ceil(lo / q) * q
        v = float(f"{v:.{_DIGITS}g}")
    v = min(max(v, lo), hi)
    if d.is_int:
        v = int(round(v))
        if v > hi:
            v = math.floor(hi)
        if v < lo:
            v = math.ceil(lo)
        return int(v)
    return float(v)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _uniform_draw(low: float, high: float) -> Draw | None:
    """random() scaled as numpy's uniform does it (one double), or None where numpy would raise."""
    lo, width = float(low), float(high) - float(low)
    if not (math.isfinite(lo) and math.isfinite(width) and width >= 0):
        return None
    return lambda rng: lo + width * rng.random()


def _clip_box(d: Dist, lo: float, hi: float) -> tuple[float, float]:
    """A prior's box, narrowed to the user's bounds when they gave any."""
    if d.low is not None:
        lo = max(lo, d.low)
    if d.high is not None:
        hi = min(hi, d.high)
    if not lo < hi:
        raise ValueError(f"empty search box [{lo}, {hi}] for {d}")
    return lo, hi


class Kind:
    """A continuous kind over [low, high] (numbers, optionally stepped by q or made ints)."""

    name = ""
    integer = False        # values are ints: bounds are read as ints
    bounded = True         # needs both low and high
    positive = False       # log scale: low > 0

    def check(self, d: Dist) -> tuple[str, str] | None:
        if self.bounded and (d.low is None or d.high is None):
            return f"a {self.name} distribution needs both min and max", "add min: and max:"
        if self.positive and d.low is not None and d.low <= 0:
            return (f"a log-scale range needs min > 0, got {d.low}",
                    "use a positive min such as 1e-6, or a uniform distribution")
        return None

    def sample(self, d: Dist, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def prepared(self, d: Dist) -> Draw:
        return lambda rng: self.sample(d, rng)

    def in_domain(self, d: Dist, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        tol = 1e-9 * max(1.0, abs(value))
        if d.low is not None and value < d.low - tol:
            return False
        if d.high is not None and value > d.high + tol:
            return False
        if d.is_int and not isinstance(value, int):
            return False
        if d.q is not None and abs(value / d.q - round(value / d.q)) > 1e-6:
            return False
        return not self.positive or value > 0

    def grid(self, d: Dist) -> list[Any] | None:
        return None

    def to_optuna(self, d: Dist) -> Any:
        raise NotImplementedError

    def from_optuna(self, d: Dist, x: Any) -> Any:
        return finish(d, float(x))

    def optuna_value(self, d: Dist, value: Any) -> Any:
        target = self.to_optuna(d)
        x = min(max(self._to_x(value), target.low), target.high)
        return int(round(x)) if self.integer else float(x)

    def _to_x(self, value: Any) -> float:
        return value


class Choice(Kind):
    name, bounded = "choice", False

    def check(self, d: Dist) -> tuple[str, str] | None:
        if not d.values:
            return "a choice needs at least one value", "list the values, e.g. `values: [1, 2]`"
        return None

    def sample(self, d: Dist, rng: np.random.Generator) -> Any:
        # Draw an index, not a value: numpy would coerce mixed-type values to one dtype.
        return d.values[int(rng.choice(len(d.values), p=d.probabilities))]

    def prepared(self, d: Dist) -> Draw:
        # numpy's scalar choice costs microseconds in argument handling; these make the same
        # draws: choice(n) = integers(0, n); choice(n, p) = searchsorted(cdf, random(), "right").
        values, n = d.values, len(d.values)
        if d.probabilities is None:
            return lambda rng: values[int(rng.integers(0, n))]
        import numpy as np

        p = np.asarray(d.probabilities, dtype=np.float64)
        if p.ndim != 1 or len(p) != n or not np.all(np.isfinite(p)) or np.any(p < 0) \
                or abs(math.fsum(p.tolist()) - 1.0) > _P_TOLERANCE:
            return lambda rng: self.sample(d, rng)  # numpy validates (and raises) as before
        cdf = p.cumsum()
        cdf /= cdf[-1]
        bounds = cdf.tolist()
        return lambda rng: values[bisect.bisect_right(bounds, rng.random())]

    def in_domain(self, d: Dist, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in d.values)

    def grid(self, d: Dist) -> list[Any]:
        return list(d.values)

    def categories(self, d: Dist) -> list[Any]:
        # Optuna's categorical holds only JSON scalars; lists or dicts are searched by index.
        if all(isinstance(v, _PRIMITIVE) for v in d.values):
            return list(d.values)
        return list(range(len(d.values)))

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.categories(d))

    def from_optuna(self, d: Dist, x: Any) -> Any:
        return d.values[x] if self.categories(d) != list(d.values) else x

    def optuna_value(self, d: Dist, value: Any) -> Any:
        return value if self.categories(d) == list(d.values) else list(d.values).index(value)


class Uniform(Kind):
    name = "uniform"

    def sample(self, d: Dist, rng: np.random.Generator) -> int | float:
        return finish(d, float(rng.uniform(d.low, d.high)))

    def prepared(self, d: Dist) -> Draw:
        draw = _uniform_draw(d.low, d.high)
        return super().prepared(d) if draw is None else (lambda rng: finish(d, draw(rng)))

    def grid(self, d: Dist) -> list[Any] | None:
        if not d.q:
            return None
        n = math.floor((d.high - d.low) / d.q + 1e-9) + 1
        values = [float(f"{d.low + i * d.q:.12g}") for i in range(min(n, MAX_GRID_VALUES + 1))]
        return [int(round(v)) for v in values] if d.is_int else values

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(d.low), float(d.high))


class LogUniform(Kind):
    name, positive = "loguniform", True

    def sample(self, d: Dist, rng: np.random.Generator) -> int | float:
        return finish(d, math.exp(rng.uniform(math.log(d.low), math.log(d.high))))

    def prepared(self, d: Dist) -> Draw:
        draw = _uniform_draw(math.log(d.low), math.log(d.high)) if d.low > 0 and d.high > 0 else None
        return super().prepared(d) if draw is None else (lambda rng: finish(d, math.exp(draw(rng))))

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(d.low), float(d.high), log=True)


class IntUniform(Kind):
    name, integer = "int_uniform", True

    def sample(self, d: Dist, rng: np.random.Generator) -> int:
        v = int(rng.integers(int(d.low), int(d.high), endpoint=True))
        return int(finish(d, v)) if d.q is not None else v

    def grid(self, d: Dist) -> list[Any]:
        step = int(d.q) if d.q and float(d.q).is_integer() else 1
        return list(range(int(d.low), int(d.high) + 1, step))

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(int(math.ceil(d.low)), int(math.floor(d.high)))

    def from_optuna(self, d: Dist, x: Any) -> int:
        return int(finish(d, int(x))) if d.q is not None else int(x)


class IntLogUniform(IntUniform):
    name, positive = "int_loguniform", True

    def sample(self, d: Dist, rng: np.random.Generator) -> int:
        # Each integer k owns [k, k+1) in log space, so that the top value is as reachable as the rest.
        v = math.floor(math.exp(rng.uniform(math.log(d.low), math.log(d.high + 1))))
        return int(finish(d, min(v, int(d.high))))

    def grid(self, d: Dist) -> None:
        return None

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(int(math.ceil(d.low)), int(math.floor(d.high)), log=True)


def _is_pow2(x: float) -> bool:
    return x >= 1 and float(x).is_integer() and (int(x) & (int(x) - 1)) == 0


class Pow2(Kind):
    name, integer = "pow2", True

    def check(self, d: Dist) -> tuple[str, str] | None:
        problem = super().check(d)
        for label, v in (("min", d.low), ("max", d.high)):
            if problem is None and not _is_pow2(v):
                problem = (f"pow2 bounds must be powers of two, got {label} = {v}",
                           "use bounds such as 16 and 1024")
        return problem

    def sample(self, d: Dist, rng: np.random.Generator) -> int:
        return 2 ** int(rng.integers(round(math.log2(d.low)), round(math.log2(d.high)), endpoint=True))

    def in_domain(self, d: Dist, value: Any) -> bool:
        return (super().in_domain(d, value) and isinstance(value, int) and value >= 1
                and (value & (value - 1)) == 0)

    def grid(self, d: Dist) -> list[Any]:
        return [2 ** k for k in range(round(math.log2(d.low)), round(math.log2(d.high)) + 1)]

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(round(math.log2(d.low)), round(math.log2(d.high)))

    def from_optuna(self, d: Dist, x: Any) -> int:
        return 2 ** int(x)

    def _to_x(self, value: Any) -> float:
        return math.log2(value)


class Logit(Kind):
    name = "logit"

    def check(self, d: Dist) -> tuple[str, str] | None:
        problem = super().check(d)
        if problem is None and not (0 < d.low and d.high < 1):
            problem = (f"a logit range must lie strictly inside (0, 1), got [{d.low}, {d.high}]",
                       "use bounds such as 0.9 and 0.999")
        return problem

    def sample(self, d: Dist, rng: np.random.Generator) -> int | float:
        return finish(d, _sigmoid(rng.uniform(_logit(d.low), _logit(d.high))))

    def in_domain(self, d: Dist, value: Any) -> bool:
        return super().in_domain(d, value) and 0 < value < 1

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(_logit(d.low), _logit(d.high))

    def from_optuna(self, d: Dist, x: Any) -> int | float:
        return finish(d, _sigmoid(float(x)))

    def _to_x(self, value: Any) -> float:
        return _logit(value)


class Normal(Kind):
    name, bounded = "normal", False

    def check(self, d: Dist) -> tuple[str, str] | None:
        problem = super().check(d)
        if problem is None and (d.mu is None or d.sigma is None):
            problem = f"a {self.name} distribution needs mu (mean) and sigma (scale)", "add mu: and sigma:"
        if problem is None and d.sigma <= 0:
            problem = f"sigma must be > 0, got {d.sigma}", "use a positive sigma"
        return problem

    def sample(self, d: Dist, rng: np.random.Generator) -> int | float:
        return finish(d, float(rng.normal(d.mu, d.sigma)))

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(*_clip_box(d, d.mu - _SIGMAS * d.sigma, d.mu + _SIGMAS * d.sigma))


class LogNormal(Normal):
    name, positive = "lognormal", True

    def sample(self, d: Dist, rng: np.random.Generator) -> int | float:
        return finish(d, math.exp(rng.normal(d.mu, d.sigma)))

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import FloatDistribution

        lo, hi = _clip_box(d, math.exp(d.mu - _SIGMAS * d.sigma), math.exp(d.mu + _SIGMAS * d.sigma))
        return FloatDistribution(lo, hi, log=True)


class Beta(Kind):
    name, bounded = "beta", False

    def check(self, d: Dist) -> tuple[str, str] | None:
        if d.a is None or d.b is None or d.a <= 0 or d.b <= 0:
            return "a beta distribution needs a > 0 and b > 0", "add a: and b:, both positive"
        return None

    def sample(self, d: Dist, rng: np.random.Generator) -> int | float:
        return finish(d, float(rng.beta(d.a, d.b)))

    def in_domain(self, d: Dist, value: Any) -> bool:
        return super().in_domain(d, value) and 0 <= value <= 1

    def to_optuna(self, d: Dist) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(*_clip_box(d, 0.0, 1.0))


KINDS: dict[str, Kind] = {k.name: k for k in (Choice(), Uniform(), IntUniform(), LogUniform(), IntLogUniform(),
                                               Pow2(), Logit(), Normal(), LogNormal(), Beta())}
assert tuple(KINDS) == KIND_NAMES, "search.dist.KINDS and the classes here must list the same kinds"
INTEGER_KINDS = tuple(name for name, k in KINDS.items() if k.integer)


def kind_of(d: Dist) -> Kind:
    try:
        return KINDS[d.kind]
    except KeyError:
        raise ValueError(f"unknown distribution kind {d.kind!r}; known: {', '.join(KINDS)}") from None


def sample(d: Dist, rng: np.random.Generator) -> Any:
    """One value of `d`, drawn with `rng`."""
    return kind_of(d).sample(d, rng)


def sampler(d: Dist) -> Draw:
    """`lambda rng: sample(d, rng)`, with the per-call checks done once (the same values)."""
    return kind_of(d).prepared(d)


def in_domain(d: Dist, value: Any) -> bool:
    """True when `value` is something `sample(d, ...)` could have returned."""
    return kind_of(d).in_domain(d, value)
