"""Parameter checks with messages that name the parameter and the allowed range."""

from __future__ import annotations

import math

import numpy as np


def _real(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got nan")
    return number


def positive(name: str, value) -> float:
    """``value > 0`` and finite."""
    number = _real(name, value)
    if not (0 < number < math.inf):
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return number


def non_negative(name: str, value) -> float:
    """``value >= 0`` and finite."""
    number = _real(name, value)
    if not (0 <= number < math.inf):
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return number


def finite(name: str, value) -> float:
    number = _real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def in_half_open_unit(name: str, value, *, low_open: bool) -> float:
    """``value`` in (0, 1] (``low_open=True``) or [0, 1) (``low_open=False``)."""
    number = _real(name, value)
    ok = (0 < number <= 1) if low_open else (0 <= number < 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


def unit_interval(name: str, value) -> float:
    """``value`` in the closed interval [0, 1]."""
    number = _real(name, value)
    if not 0 <= number <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return number


def generator(name: str, value) -> np.random.Generator:
    """``value`` is a :class:`numpy.random.Generator` (not the legacy ``RandomState``
    or the ``np.random`` module: their draws cannot be replayed from a seed we pass)."""
    if not isinstance(value, np.random.Generator):
        raise TypeError(
            f"{name} must be a numpy.random.Generator (e.g. np.random.default_rng(0)), "
            f"got {type(value).__name__}"
        )
    return value


def integer_at_least(name: str, value, minimum: int) -> int:
    """An integer (Python or NumPy; a float with an integral value is accepted) ``>= minimum``."""
    number = _real(name, value)
    if not number.is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(number)


def steps(step) -> np.ndarray:
    """Training step(s) as a float64 array; every entry must be finite and >= 0."""
    try:
        array = np.asarray(step, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"step must be a number or an array of numbers, got {step!r}") from None
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError("step must be finite")
    if array.size and array.min() < 0:
        raise ValueError(f"step must be >= 0, got {array.min():g}")
    return array
