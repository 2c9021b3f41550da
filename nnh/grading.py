"""Checks used by the hidden tests of the graded notebooks.

A hidden test compares the student's function with the reference in
:mod:`nnh` on many inputs.  The checks test the *contract* stated in the
notebook, not one implementation: any return type that holds the right
numbers (Python float, NumPy scalar, 0-d or n-d array, float32 or float64) is
accepted, within a relative tolerance that float32 arithmetic meets.  A failed
check raises ``AssertionError`` with a message that names the call, what it
returned and what was expected, so the student's feedback is actionable.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

RTOL = 1e-5
ATOL = 1e-8


def _call_text(name: str, kwargs: Mapping[str, Any]) -> str:
    def show(value):
        if isinstance(value, np.ndarray):
            return f"np.array({value.tolist()!r})" if value.size <= 12 else f"<array {value.shape}>"
        if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
            items = ", ".join(show(v) for v in value)
            return f"[{items}]" if isinstance(value, list) else f"({items})"
        return repr(value)

    return f"{name}(" + ", ".join(f"{k}={show(v)}" for k, v in kwargs.items()) + ")"


def _as_array(value, call: str) -> np.ndarray:
    """``value`` as float64, if it holds real numbers (not strings, booleans or objects)."""
    try:
        array = np.asarray(value)
        if array.dtype.kind not in "iuf":
            raise TypeError
        return array.astype(np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{call} returned {value!r}, which is not a number or an array of numbers") from None


def assert_close_result(got, expected, call: str, *, rtol: float = RTOL, atol: float = ATOL) -> None:
    """``got`` has ``expected``'s structure and shape (a scalar for a scalar) and values
    within tolerance.  When ``expected`` is a list or tuple of arrays (a result per
    weight array), ``got`` must be a list or tuple of the same length, compared item
    by item."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            raise AssertionError(
                f"{call} returned {type(got).__name__}, expected a list of {len(expected)} arrays"
            )
        if len(got) != len(expected):
            raise AssertionError(f"{call} returned {len(got)} items, expected {len(expected)}")
        for i, (got_item, expected_item) in enumerate(zip(got, expected)):
            assert_close_result(got_item, expected_item, f"{call}[{i}]", rtol=rtol, atol=atol)
        return
    got_array = _as_array(got, call)
    expected_array = np.asarray(expected, dtype=np.float64)
    if got_array.shape != expected_array.shape:
        raise AssertionError(
            f"{call} returned shape {got_array.shape}, expected shape {expected_array.shape}"
            + (" (a single number)" if expected_array.ndim == 0 else "")
        )
    scale = float(np.max(np.abs(expected_array))) if expected_array.size else 0.0
    if not np.allclose(got_array, expected_array, rtol=rtol, atol=atol + 1e-7 * scale, equal_nan=False):
        bad = np.argwhere(~np.isclose(got_array, expected_array, rtol=rtol, atol=atol + 1e-7 * scale))
        where = tuple(bad[0]) if got_array.ndim else ()
        raise AssertionError(
            f"{call} returned {got_array[where]!r}"
            + (f" at index {where}" if where else "")
            + f", expected {expected_array[where]!r}"
        )


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


def _copies(case: Mapping[str, Any]) -> list:
    return [_copy(v) for v in case.values()]


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return a is b or a == b


def check_not_mutated(function: Callable, cases: Iterable[Mapping[str, Any]],
                      *, name: str | None = None) -> None:
    """Calling ``function`` (positionally) leaves every argument exactly as it was:
    same values, dtype and list structure."""
    name = name or getattr(function, "__name__", "function")
    count = 0
    for kwargs in cases:
        call = _call_text(name, kwargs)
        before = _copies(kwargs)
        arguments = _copies(kwargs)
        try:
            function(*arguments)
        except Exception as error:
            raise AssertionError(f"{call} raised {type(error).__name__}: {error}") from error
        for key, old, new in zip(kwargs, before, arguments):
            if not _same(old, new):
                raise AssertionError(f"{call} modified its argument {key!r} in place")
        count += 1
    if count == 0:
        raise AssertionError("no case was checked")


# Two-sided normal quantile for a false-failure probability below 1e-6 per check
# (P(|Z| > 5.5) = 3.8e-8; the margin covers the normal approximation's error).
Z_FAIL = 5.5


def assert_binomial(successes: int, trials: int, p: float, what: str) -> None:
    """``successes`` out of ``trials`` independent draws is consistent with probability
    ``p``: a correct random answer fails this with probability < 1e-6."""
    mean = trials * p
    spread = Z_FAIL * np.sqrt(trials * p * (1 - p)) + 1.0
    if abs(successes - mean) > spread:
        raise AssertionError(
            f"{what}: {successes} of {trials} ({successes / trials:.4f}), expected a fraction "
            f"close to {p:.4f} (allowed {max(mean - spread, 0) / trials:.4f} to "
            f"{min(mean + spread, trials) / trials:.4f})"
        )


def check_function(student: Callable, reference: Callable, cases: Iterable[Mapping[str, Any]],
                   *, name: str | None = None) -> None:
    """Call both functions with each case's arguments and compare the results.

    Each case is a mapping from parameter name to value *in signature order*;
    the functions are called positionally (``f(*case.values())``), so a
    student's parameter names do not matter, only their order.  Trailing
    parameters left out of a case test the defaults.  Array arguments are
    copied, so a function that modifies its input cannot change the reference.

    Returns ``None`` on purpose: nbgrader reads a number left as a test cell's
    last expression as *partial credit*.
    """
    name = name or getattr(student, "__name__", "function")
    count = 0
    for kwargs in cases:
        call = _call_text(name, kwargs)
        expected = reference(*_copies(kwargs))
        try:
            got = student(*_copies(kwargs))
        except Exception as error:  # report which call failed, with the student's error
            raise AssertionError(f"{call} raised {type(error).__name__}: {error}") from error
        assert_close_result(got, expected, call)
        count += 1
    if count == 0:
        raise AssertionError("no case was checked")


def check_raises(error: type[BaseException], function: Callable, cases: Iterable[Mapping[str, Any]],
                 *, name: str | None = None) -> None:
    """Every case (called positionally) must raise ``error`` or a subclass of it."""
    name = name or getattr(function, "__name__", "function")
    count = 0
    for kwargs in cases:
        call = _call_text(name, kwargs)
        try:
            result = function(*_copies(kwargs))
        except error:
            count += 1
            continue
        except Exception as other:
            raise AssertionError(
                f"{call} raised {type(other).__name__}: {other}; expected {error.__name__}"
            ) from other
        raise AssertionError(f"{call} returned {result!r}; expected it to raise {error.__name__}")
    if count == 0:
        raise AssertionError("no case was checked")
