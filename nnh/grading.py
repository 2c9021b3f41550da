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

import contextlib
import functools
import sys
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


class DelegationError(BaseException):
    """Raised when graded code calls the course's reference implementation.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that a student's
    ``except Exception`` cannot swallow it and fall back to another answer."""


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


def _wraps_reference(value, reference, depth: int = 0) -> bool:
    """Is ``value`` the reference itself, a copy of its code, or a wrapper around it
    (``functools.partial``, ``functools.wraps``' ``__wrapped__``, a bound method)?"""
    if depth > 6:
        return False
    if value is reference:
        return True
    code = getattr(reference, "__code__", None)
    if code is not None and getattr(value, "__code__", None) is code:
        return True
    if isinstance(value, functools.partial):
        inner = (value.func, *value.args, *value.keywords.values())
        return any(_wraps_reference(v, reference, depth + 1) for v in inner)
    for attribute in ("__wrapped__", "__func__"):
        inner = getattr(value, attribute, None) if callable(value) else None
        if inner is not None and _wraps_reference(inner, reference, depth + 1):
            return True
    return False


def _uses_reference(function, reference, depth: int = 0, seen=None) -> bool:
    """Does ``function`` (or a helper function it names, defined outside ``nnh``)
    name ``reference`` itself, or ``reference.__name__`` through an ``nnh`` module,
    or hold it in a closure or a default argument?"""
    seen = set() if seen is None else seen
    if _wraps_reference(function, reference):
        return True
    function = getattr(function, "func", function) if isinstance(function, functools.partial) else function
    code = getattr(function, "__code__", None)
    if code is None or id(function) in seen or depth > 4:
        return False
    seen.add(id(function))
    names = _code_names(code)
    scope = dict(getattr(function, "__globals__", {}))
    hidden = [cell.cell_contents for cell in getattr(function, "__closure__", None) or ()
              if _has_contents(cell)]
    hidden += list(getattr(function, "__defaults__", None) or ())
    hidden += list((getattr(function, "__kwdefaults__", None) or {}).values())
    for i, value in enumerate(hidden):
        scope[f"<hidden {i}>"] = value
        names.add(f"<hidden {i}>")
    for key in names & set(scope):
        value = scope[key]
        if _wraps_reference(value, reference):
            return True
        module_name = getattr(value, "__name__", "") if isinstance(value, type(np)) else ""
        if (module_name == "nnh" or module_name.startswith("nnh.")) and reference.__name__ in names:
            return True
        if callable(value) and not str(getattr(value, "__module__", "")).startswith(("nnh", "numpy", "keras")):
            target = getattr(value, "__func__", value)
            if _uses_reference(target, reference, depth + 1, seen):
                return True
    return False


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later)
        return False
    return True


def _materialize(value):
    """The numbers of a result, computed now: a list/tuple item by item, anything array-like
    as a NumPy copy (so an object that computes its numbers lazily does so inside the
    check); anything else unchanged."""
    if isinstance(value, list):
        return [_materialize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_materialize(v) for v in value)
    try:
        array = np.array(value)
    except Exception:  # noqa: BLE001 - reported by the comparison
        return value
    return array if array.dtype.kind in "iufb" else value


def _tripped_reference(*args, **kwargs):
    # Runs as the reference's own code (see _tripwire), so it may use only builtins.
    raise __import__("nnh.grading", fromlist=["DelegationError"]).DelegationError(
        "the answer calls the course's reference implementation")


@contextlib.contextmanager
def _tripwire(reference: Callable, name: str):
    """While the block runs, calling ``reference`` raises :class:`DelegationError`:
    through its module, and through any other name for the same function object
    (an alias kept in a dict, a default argument, a closure), whose code is swapped
    for one that raises."""
    module = sys.modules.get(getattr(reference, "__module__", ""), None)
    attribute = getattr(reference, "__name__", None)
    code = getattr(reference, "__code__", None)
    swap_code = code is not None and not code.co_freevars
    patch_module = module is not None and getattr(module, attribute, None) is reference

    def tripped(*args, **kwargs):
        raise DelegationError(f"{name} calls the course's reference {module.__name__}.{attribute}")

    if patch_module:
        setattr(module, attribute, tripped)
    if swap_code:
        reference.__code__ = _tripped_reference.__code__
    try:
        yield
    finally:
        if swap_code:
            reference.__code__ = code
        if patch_module:
            setattr(module, attribute, reference)


def assert_own_work(student: Callable, reference: Callable, *args, name: str | None = None) -> None:
    """``student`` does not use ``reference``: it does not name it (directly, through an
    ``nnh`` module or in a helper it names) and, called with ``args`` (if given),
    does not call it.  For a class, none of its bases is ``reference`` and none of its
    methods names it."""
    remote = getattr(type(student), "_nnh_own_work", None)
    if remote is not None:  # graded by nnh grade's judge: the check runs where the student's object lives
        return remote(student, reference, args, name)
    name = name or getattr(student, "__name__", "answer")
    message = (f"{name} uses the course's reference implementation "
               f"{reference.__module__}.{reference.__name__}: that is not an answer")
    if isinstance(student, type):
        if isinstance(reference, type) and issubclass(student, reference):
            raise AssertionError(message)
        methods = [v for c in student.__mro__ if c.__module__ not in ("builtins",)
                   and not c.__module__.startswith(("keras", "nnh")) for v in vars(c).values()]
        if any(_uses_reference(getattr(m, "__func__", m), reference) for m in methods if callable(m)):
            raise AssertionError(message)
        return
    if _uses_reference(student, reference):
        raise AssertionError(message)
    if args:
        try:
            with _tripwire(reference, name):
                _materialize(student(*args))
        except DelegationError as error:
            raise AssertionError(f"{error}: that is not an answer") from None
        except Exception:
            pass  # other errors are for the other checks to report


def check_function(student: Callable, reference: Callable, cases: Iterable[Mapping[str, Any]],
                   *, name: str | None = None) -> None:
    """Call both functions with each case's arguments and compare the results.

    Each case is a mapping from parameter name to value *in signature order*;
    the functions are called positionally (``f(*case.values())``), so a
    student's parameter names do not matter, only their order.  Trailing
    parameters left out of a case test the defaults.  Array arguments are
    copied, so a function that modifies its input cannot change the reference.

    The student's function must do its own work: if it names ``reference``
    (directly or through an ``nnh`` module, also in its helper functions), or
    calls it while being checked, the check fails.

    Returns ``None`` on purpose: nbgrader reads a number left as a test cell's
    last expression as *partial credit*.
    """
    name = name or getattr(student, "__name__", "function")
    assert_own_work(student, reference, name=name)
    count = 0
    for kwargs in cases:
        call = _call_text(name, kwargs)
        expected = reference(*_copies(kwargs))
        try:
            with _tripwire(reference, name):
                got = _materialize(student(*_copies(kwargs)))
        except DelegationError as error:
            raise AssertionError(f"{error}: that is not an answer") from None
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
