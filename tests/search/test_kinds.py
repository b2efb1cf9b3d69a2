"""search.kinds: every kind samples inside its domain and covers it, fast samplers make the same
draws as numpy's own calls, quantising and integer rounding, choice probabilities, grids."""
from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.errors import UserError
from launcher.dialects.common import make_dist
from search.dist import KINDS, Dist
from search.kinds import KINDS as KIND_CLASSES
from search.kinds import in_domain, kind_of, sample, sampler


def dist(kind: str, **kw) -> Dist:
    return make_dist(kind, file="t.yaml", key="x", dialect="native", **kw)


DISTS = {
    "choice": dist("choice", values=[1, "a", 2.5, True]),
    "uniform": dist("uniform", low=-2.0, high=3.0),
    "int_uniform": dist("int_uniform", low=-3, high=4),
    "loguniform": dist("loguniform", low=1e-5, high=1e-2),
    "int_loguniform": dist("int_loguniform", low=1, high=1000),
    "pow2": dist("pow2", low=16, high=1024),
    "logit": dist("logit", low=0.9, high=0.999),
    "normal": dist("normal", mu=0.0, sigma=1.0, low=-1.0, high=2.0),
    "lognormal": dist("lognormal", mu=math.log(1e-3), sigma=1.0),
    "beta": dist("beta", a=2.0, b=5.0),
}


def test_every_kind_has_a_class_and_a_test_case():
    assert tuple(KIND_CLASSES) == KINDS and set(KINDS) == set(DISTS)


@pytest.mark.parametrize("kind", KINDS)
def test_samples_stay_in_domain_and_cover_it(kind):
    d = DISTS[kind]
    rng = np.random.default_rng(123)
    xs = [sample(d, rng) for _ in range(3000)]
    bad = [x for x in xs if not in_domain(d, x)]
    assert not bad, bad[:5]
    assert all(type(x).__module__ == "builtins" for x in xs), "numpy scalars leak into trial params"
    if kind == "choice":
        assert {repr(x) for x in xs} == {repr(v) for v in d.values}
    elif kind == "pow2":
        assert set(xs) == {16, 32, 64, 128, 256, 512, 1024}
    elif kind == "int_uniform":
        assert set(xs) == set(range(-3, 5))
    elif d.low is not None and d.high is not None:
        # The sample spans most of the range, on the distribution's own scale.
        scale = math.log if kind in ("loguniform", "int_loguniform") else (lambda v: v)
        span = scale(d.high) - scale(d.low)
        assert scale(min(xs)) - scale(d.low) < 0.05 * span
        assert scale(d.high) - scale(max(xs)) < 0.05 * span


def test_loguniform_is_uniform_in_log_space():
    d = DISTS["loguniform"]
    rng = np.random.default_rng(0)
    xs = np.array([sample(d, rng) for _ in range(4000)])
    # Each decade of [1e-5, 1e-2] gets about a third of the samples.
    for lo in (1e-5, 1e-4, 1e-3):
        share = np.mean((xs >= lo) & (xs < lo * 10))
        assert 0.28 < share < 0.39


@pytest.mark.parametrize("kind,value", [
    ("uniform", 3.5), ("uniform", "1.0"), ("int_uniform", 1.5), ("int_uniform", 9),
    ("loguniform", 0.0), ("pow2", 48), ("pow2", 2048), ("logit", 0.5), ("choice", 3),
    ("choice", 1.0 + 1e-3), ("beta", 1.5), ("lognormal", -1.0), ("normal", 2.5), ("uniform", float("nan")),
])
def test_in_domain_rejects_outsiders(kind, value):
    assert not in_domain(DISTS[kind], value)


def test_quantised_samples_are_multiples_of_q_inside_bounds():
    d = dist("uniform", low=0.15, high=0.95, q=0.1)
    rng = np.random.default_rng(1)
    xs = {sample(d, rng) for _ in range(2000)}
    assert xs == {0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}


def test_q_without_a_multiple_in_range_is_refused():
    with pytest.raises(UserError, match="no multiple of q"):
        dist("uniform", low=0.11, high=0.19, q=0.1)


def test_is_int_rounds_continuous_kinds():
    d = dist("normal", mu=10, sigma=3, low=5, high=15, is_int=True)
    rng = np.random.default_rng(2)
    xs = [sample(d, rng) for _ in range(500)]
    assert all(isinstance(x, int) and 5 <= x <= 15 for x in xs)


def test_choice_probabilities_are_honoured():
    d = dist("choice", values=["a", "b"], probabilities=[0.9, 0.1])
    rng = np.random.default_rng(3)
    share = sum(sample(d, rng) == "a" for _ in range(2000)) / 2000
    assert 0.87 < share < 0.93

@pytest.mark.parametrize("kind", KINDS)
def test_dist_round_trips_through_its_dict(kind):
    assert Dist.from_dict(DISTS[kind].to_dict()) == DISTS[kind]


@pytest.mark.parametrize("kind,expected", [
    ("choice", [1, "a", 2.5, True]), ("int_uniform", list(range(-3, 5))),
    ("pow2", [16, 32, 64, 128, 256, 512, 1024]), ("uniform", None), ("loguniform", None), ("int_loguniform", None),
])
def test_grid_enumerates_what_is_countable(kind, expected):
    assert kind_of(DISTS[kind]).grid(DISTS[kind]) == expected


def test_stepped_uniform_grid_uses_its_step():
    d = dist("uniform", low=0.0, high=0.3, q=0.1)
    assert kind_of(d).grid(d) == [0.0, 0.1, 0.2, 0.3]


@pytest.mark.parametrize("kind,kw,match", [
    ("loguniform", dict(low=0, high=1), "log-scale range needs min > 0"),
    ("pow2", dict(low=3, high=16), "powers of two"),
    ("logit", dict(low=0.5, high=1.0), "strictly inside"),
    ("normal", dict(mu=0.0), "needs mu"),
    ("beta", dict(a=1.0, b=0), "a > 0 and b > 0"),
    ("uniform", dict(low=1.0), "needs both min and max"),
])
def test_each_kind_checks_its_own_parameters(kind, kw, match):
    with pytest.raises(UserError, match=match):
        dist(kind, **kw)


# --- samplers: draw for draw what numpy's high-level calls give ---------------------------------

def numpy_reference(dist: Dist, rng: np.random.Generator):
    """The draws written with numpy's documented API (what the plans did before the fast path)."""
    if dist.kind == "choice":
        return dist.values[int(rng.choice(len(dist.values), p=dist.probabilities))]
    if dist.kind == "uniform":
        return float(rng.uniform(dist.low, dist.high))
    if dist.kind == "loguniform":
        return math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    raise AssertionError(dist.kind)


RAW_DISTS = [
    Dist("choice", values=(256, 512)),
    Dist("choice", values=("a", 1, 2.5, None, True)),
    Dist("choice", values=(1, 2, 3), probabilities=(0.2, 0.5, 0.3)),
    Dist("choice", values=("x", "y"), probabilities=(0.1, 0.9000000001)),
    Dist("uniform", low=0.0, high=0.5),
    Dist("uniform", low=-3, high=7),
    Dist("uniform", low=5.0, high=5.0),
    Dist("loguniform", low=1e-5, high=1e-3),
    Dist("loguniform", low=4, high=512),
]


@pytest.mark.parametrize("seed", range(8))
def test_fast_samplers_consume_the_stream_like_numpy(seed):
    # Interleaved as a random plan draws them (key after key), so any difference in how many
    # bits a draw takes from the generator would shift every later value.
    ours, ref = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 0])
    draws = [sampler(d) for d in RAW_DISTS]
    for _ in range(200):
        for dist, draw in zip(RAW_DISTS, draws):
            a, b = draw(ours), numpy_reference(dist, ref)
            assert a == b and type(a) is type(b), (dist, a, b)
    assert ours.random() == ref.random()


def test_bad_probabilities_still_raise_numpys_error():
    dist = Dist("choice", values=(1, 2, 3), probabilities=(1, 1, 2))
    with pytest.raises(ValueError, match="sum to 1"):
        sampler(dist)(np.random.default_rng(0))


