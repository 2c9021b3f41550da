"""Directional assertions with a margin derived from the spread between seeds.

A claim "A is larger than B" over ``n`` seeds is the one-sided paired t-test:
with ``d_s = A_s - B_s`` for each seed ``s``, the mean difference must exceed
its margin,

    mean(d) > t_(1-alpha, n-1) * sd(d) / sqrt(n),

where ``sd`` is the sample standard deviation (ddof 1) and ``t`` Student's
quantile (alpha = 0.05: the margin is 2.92 standard errors for 3 seeds).  A
claim "A and B are within noise" is the opposite: the two-sided test at the
same level must *not* separate them, and the mean difference must stay under
``tolerance``.  A claim "A barely differs from B" bounds the effect instead:
the upper end of the two-sided interval of ``|mean(d)|`` must stay under
``tolerance``.  A claim "A is larger on every seed" (a consistent sign whose
size varies too much between seeds for the t margin) checks every seed.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

BOOK_SEEDS = tuple(range(10))
"""Seeds a chapter may print (the chapters use 0, 1 and 2)."""

SEEDS = tuple(range(100, 110))
"""The claim tests' seeds: disjoint from :data:`BOOK_SEEDS`, so a claim is checked on
runs the text was not written from.  A test file takes as many as its effect needs
(:func:`seeds`)."""

ALPHA = 0.05


def seeds(n: int) -> tuple[int, ...]:
    """The first ``n`` claim seeds (``3 <= n <= len(SEEDS)``)."""
    if not 3 <= n <= len(SEEDS):
        raise ValueError(f"n must be in [3, {len(SEEDS)}], got {n}")
    return SEEDS[:n]


def column(table: dict, name: str, key: str) -> np.ndarray:
    """``table[name, seed][key]`` for every seed the table holds for ``name``
    (in increasing order), as an array."""
    present = sorted(s for (n, s) in table if n == name)
    assert present, f"no runs of {name!r} in the table"
    return np.array([table[name, s][key] for s in present])


def _diff(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape and a.ndim == 1 and len(a) >= 3, f"need ≥ 3 paired seeds, got {a.shape} and {b.shape}"
    return a - b


def margin(d: np.ndarray, alpha: float = ALPHA) -> float:
    """t_(1-alpha, n-1) × standard error of the mean of ``d``."""
    n = len(d)
    return float(stats.t.ppf(1 - alpha, n - 1) * np.std(d, ddof=1) / np.sqrt(n))


def assert_larger(a, b, claim: str, *, by: float = 0.0, alpha: float = ALPHA) -> None:
    """``a`` exceeds ``b`` (paired by seed) by more than ``by`` plus the seed margin."""
    d = _diff(a, b) - by
    m = margin(d, alpha)
    assert d.mean() > m, (
        f"claim not supported: {claim}\n  A per seed: {np.round(a, 5)}\n  B per seed: {np.round(b, 5)}\n"
        f"  mean(A - B){f' - {by}' if by else ''} = {d.mean():.5g}, margin (t × s.e.) = {m:.5g}")


def assert_smaller(a, b, claim: str, *, by: float = 0.0, alpha: float = ALPHA) -> None:
    """``a`` is below ``b`` (paired by seed) by more than ``by`` plus the seed margin."""
    assert_larger(-np.asarray(a, dtype=float), -np.asarray(b, dtype=float), claim, by=by, alpha=alpha)


def assert_within_noise(a, b, claim: str, *, tolerance: float, alpha: float = ALPHA) -> None:
    """``a`` and ``b`` (paired by seed) are not separated by the two-sided test, and
    their mean difference is below ``tolerance``."""
    d = _diff(a, b)
    m = margin(d, alpha / 2)
    assert abs(d.mean()) <= m or np.all(d == 0), (
        f"claim not supported (the difference is larger than the seed noise): {claim}\n"
        f"  A per seed: {np.round(a, 5)}\n  B per seed: {np.round(b, 5)}\n"
        f"  mean(A - B) = {d.mean():.5g}, two-sided margin = {m:.5g}")
    assert abs(d.mean()) < tolerance, (
        f"claim not supported: {claim}: mean difference {d.mean():.5g} is not below {tolerance}")


def assert_close(a, b, claim: str, *, tolerance: float, alpha: float = ALPHA) -> None:
    """``|mean(a - b)|`` plus its two-sided seed margin is below ``tolerance``."""
    d = _diff(a, b)
    m = margin(d, alpha / 2)
    assert abs(d.mean()) + m < tolerance, (
        f"claim not supported: {claim}\n  A per seed: {np.round(a, 5)}\n  B per seed: {np.round(b, 5)}\n"
        f"  |mean(A - B)| + margin = {abs(d.mean()):.5g} + {m:.5g} is not below {tolerance}")


def assert_larger_on_every_seed(a, b, claim: str) -> None:
    """``a > b`` for every seed."""
    d = _diff(a, b)
    assert np.all(d > 0), (
        f"claim not supported: {claim}\n  A per seed: {np.round(a, 5)}\n  B per seed: {np.round(b, 5)}")
