"""Draw one value from a `Dist`, and check that a value lies in a Dist's domain.

One small function per kind in `launcher.spec.KINDS`. The generator is a
`numpy.random.Generator` (`numpy.random.default_rng(seed)`), so plans stay seeded and pure.
Values come back as plain Python ints/floats/strings: they are hashed into trial ids and
written to JSON, where numpy scalars would not round-trip.
"""
from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any, Callable

from launcher.spec import Dist

if TYPE_CHECKING:  # numpy is imported by whoever makes the generator (plans.random), not here
    import numpy as np

# Quantised values such as 0.1 * 3 come out as 0.30000000000000004; 12 significant digits
# are far below any search resolution and print the way the user wrote the step.
_DIGITS = 12


def _tidy(v: float) -> float:
    return float(f"{v:.{_DIGITS}g}")


def _finish(dist: Dist, v: float) -> int | float:
    """Apply q (a step) and is_int, staying inside [low, high] when bounds are given."""
    lo = -math.inf if dist.low is None else dist.low
    hi = math.inf if dist.high is None else dist.high
    if dist.q is not None:
        q = dist.q
        v = round(v / q) * q
        # Rounding to the step may cross a bound: step back inside.
        if v > hi:
            v = math.floor(hi / q) * q
        if v < lo:
            v = math.ceil(lo / q) * q
        v = _tidy(v)
    v = min(max(v, lo), hi)
    if dist.is_int:
        v = int(round(v))
        if v > hi:
            v = math.floor(hi)
        if v < lo:
            v = math.ceil(lo)
        return int(v)
    return float(v)


def _choice(dist: Dist, rng: np.random.Generator) -> Any:
    # Draw an index, not a value: numpy would coerce mixed-type values to one dtype.
    i = int(rng.choice(len(dist.values), p=dist.probabilities))
    return dist.values[i]


def _uniform(dist: Dist, rng: np.random.Generator) -> int | float:
    return _finish(dist, float(rng.uniform(dist.low, dist.high)))


def _int_uniform(dist: Dist, rng: np.random.Generator) -> int:
    v = int(rng.integers(int(dist.low), int(dist.high), endpoint=True))
    return int(_finish(dist, v)) if dist.q is not None else v


def _loguniform(dist: Dist, rng: np.random.Generator) -> int | float:
    return _finish(dist, math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))


def _int_loguniform(dist: Dist, rng: np.random.Generator) -> int:
    # Each integer k owns [k, k+1) in log space, so that the top value is as reachable as the rest.
    v = math.floor(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high + 1))))
    return int(_finish(dist, min(v, int(dist.high))))


def _pow2(dist: Dist, rng: np.random.Generator) -> int:
    k = int(rng.integers(round(math.log2(dist.low)), round(math.log2(dist.high)), endpoint=True))
    return 2 ** k


def _logit(dist: Dist, rng: np.random.Generator) -> int | float:
    def logit(p: float) -> float:
        return math.log(p / (1 - p))
    u = rng.uniform(logit(dist.low), logit(dist.high))
    return _finish(dist, 1 / (1 + math.exp(-u)))


def _normal(dist: Dist, rng: np.random.Generator) -> int | float:
    return _finish(dist, float(rng.normal(dist.mu, dist.sigma)))


def _lognormal(dist: Dist, rng: np.random.Generator) -> int | float:
    return _finish(dist, math.exp(rng.normal(dist.mu, dist.sigma)))


def _beta(dist: Dist, rng: np.random.Generator) -> int | float:
    return _finish(dist, float(rng.beta(dist.a, dist.b)))


SAMPLERS: dict[str, Callable[[Dist, np.random.Generator], Any]] = {
    "choice": _choice, "uniform": _uniform, "int_uniform": _int_uniform, "loguniform": _loguniform,
    "int_loguniform": _int_loguniform, "pow2": _pow2, "logit": _logit, "normal": _normal,
    "lognormal": _lognormal, "beta": _beta,
}


def sample(dist: Dist, rng: np.random.Generator) -> Any:
    """One value of `dist`, drawn with `rng`."""
    try:
        fn = SAMPLERS[dist.kind]
    except KeyError:
        raise ValueError(f"no sampler for distribution kind {dist.kind!r}") from None
    return fn(dist, rng)


# --------------------------------------------------------------------------- fast path
# A 10,000-trial random sweep draws tens of thousands of values, and numpy's scalar
# `Generator.uniform` / `Generator.choice` cost 3-15 us a call in argument handling alone.
# `sampler(dist)` checks the dist once and returns a function that consumes the generator
# exactly as `sample` does, draw for draw, so the same seed gives the same values:
#   uniform(lo, hi)      = lo + (hi - lo) * random()        (numpy: random_uniform, one double)
#   choice(n)            = integers(0, n)                   (numpy: choice without p)
#   choice(n, p)         = searchsorted(cdf, random(), "right"), cdf = cumsum(p) / its last
# tests/unit/test_e2e_bits.py checks this equality against numpy's own calls.

def _uniform_draw(low: float, high: float) -> Callable[[np.random.Generator], float] | None:
    """random() scaled like numpy's uniform; None where numpy would raise (it then gets to)."""
    lo, width = float(low), float(high) - float(low)
    if not (math.isfinite(lo) and math.isfinite(width) and width >= 0):
        return None
    return lambda rng: lo + width * rng.random()


_P_TOLERANCE = 0.5 * math.sqrt(2.0 ** -52)


def _fast_choice(dist: Dist) -> Callable[[np.random.Generator], Any]:
    values, n = dist.values, len(dist.values)
    if dist.probabilities is None:
        return lambda rng: values[int(rng.integers(0, n))]
    import numpy as np

    p = np.asarray(dist.probabilities, dtype=np.float64)
    # numpy refuses p off 1 by more than sqrt(eps); leave anything near that line to numpy.
    if p.ndim != 1 or len(p) != n or not np.all(np.isfinite(p)) or np.any(p < 0) \
            or abs(math.fsum(p.tolist()) - 1.0) > _P_TOLERANCE:
        return lambda rng: _choice(dist, rng)  # numpy validates (and raises) as before
    cdf = p.cumsum()
    cdf /= cdf[-1]
    bounds = cdf.tolist()
    return lambda rng: values[bisect.bisect_right(bounds, rng.random())]


def sampler(dist: Dist) -> Callable[[np.random.Generator], Any]:
    """`lambda rng: sample(dist, rng)`, with the per-call checks done once (same values)."""
    if dist.kind == "choice":
        return _fast_choice(dist)
    if dist.kind in ("uniform", "loguniform") and dist.low is not None and dist.high is not None:
        log = dist.kind == "loguniform"
        if not log or (dist.low > 0 and dist.high > 0):
            draw = _uniform_draw(math.log(dist.low), math.log(dist.high)) if log \
                else _uniform_draw(dist.low, dist.high)
            if draw is not None:
                if log:
                    return lambda rng: _finish(dist, math.exp(draw(rng)))
                return lambda rng: _finish(dist, draw(rng))
    fn = SAMPLERS.get(dist.kind)
    if fn is None:
        raise ValueError(f"no sampler for distribution kind {dist.kind!r}")
    return lambda rng: fn(dist, rng)


# --------------------------------------------------------------------------- domain

def in_domain(dist: Dist, value: Any) -> bool:
    """True when `value` is something `sample(dist, ...)` could have returned."""
    if dist.kind == "choice":
        return any(value == v and type(value) is type(v) for v in dist.values)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    tol = 1e-9 * max(1.0, abs(value))
    if dist.low is not None and value < dist.low - tol:
        return False
    if dist.high is not None and value > dist.high + tol:
        return False
    if dist.is_int and not isinstance(value, int):
        return False
    if dist.q is not None and abs(value / dist.q - round(value / dist.q)) > 1e-6:
        return False
    if dist.kind == "pow2":
        return value >= 1 and (value & (value - 1)) == 0
    if dist.kind in ("loguniform", "int_loguniform", "lognormal"):
        return value > 0
    if dist.kind == "logit":
        return 0 < value < 1
    if dist.kind == "beta":
        return 0 <= value <= 1
    return True
