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
    """``got`` has ``expected``'s shape (a scalar for a scalar) and values within tolerance."""
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


def _copies(case: Mapping[str, Any]) -> list:
    return [v.copy() if isinstance(v, np.ndarray) else v for v in case.values()]


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
