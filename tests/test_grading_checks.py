"""The checks behind the hidden tests accept any correct return type and reject wrong answers."""

from __future__ import annotations


import numpy as np
import pytest

import nnh
from nnh.grading import assert_close_result, check_function, check_raises


def reference(step, scale=2.0):
    return float(step) * scale if np.ndim(step) == 0 else np.asarray(step, float) * scale


def twin(step, scale=2.0):  # the same function, not the reference object
    return float(step) * scale if np.ndim(step) == 0 else np.asarray(step, float) * scale


@pytest.mark.parametrize("student", [
    twin,
    lambda step, scale=2.0: np.float32(step * scale) if np.ndim(step) == 0 else (np.asarray(step) * scale).astype(np.float32),
    lambda step, scale=2.0: np.array(step * scale),          # 0-d array for a scalar
    lambda s, k=2.0: twin(s, k),                               # other parameter names
])
def test_correct_answers_in_any_form_pass(student):
    check_function(student, reference, [dict(step=3), dict(step=np.arange(4).reshape(2, 2), scale=0.5)])


@pytest.mark.parametrize("student, message", [
    (lambda step, scale=2.0: twin(step, scale) + 1e-3, "expected"),
    (lambda step, scale=2.0: np.ravel(twin(step, scale)), "shape"),
    (lambda step, scale=2.0: "6.0", "not a number"),
    (lambda step, scale=2.0: 1 / 0, "ZeroDivisionError"),
])
def test_wrong_answers_fail_with_a_useful_message(student, message):
    with pytest.raises(AssertionError, match=message):
        check_function(student, reference, [dict(step=3), dict(step=np.arange(4).reshape(2, 2))])


def test_input_arrays_are_copied_so_mutation_cannot_leak():
    steps = np.arange(3.0)

    def mutating(step, scale=2.0):
        step *= 0
        return twin(step, scale)

    with pytest.raises(AssertionError):
        check_function(mutating, reference, [dict(step=steps)])
    assert steps.tolist() == [0.0, 1.0, 2.0]


def test_an_empty_case_list_is_an_error():
    with pytest.raises(AssertionError, match="no case"):
        check_function(twin, reference, [])
    with pytest.raises(AssertionError, match="no case"):
        check_raises(ValueError, reference, [])


def test_check_raises_requires_the_exact_error_type():
    def strict(x):
        raise ValueError("x must be > 0")

    check_raises(ValueError, strict, [dict(x=-1)])
    with pytest.raises(AssertionError, match="expected it to raise ValueError"):
        check_raises(ValueError, lambda x: x, [dict(x=-1)])
    with pytest.raises(AssertionError, match="AssertionError.*expected ValueError"):
        check_raises(ValueError, lambda x: (_ for _ in ()).throw(AssertionError("no")), [dict(x=-1)])


def test_checks_return_none_so_nbgrader_never_reads_partial_credit():
    assert check_function(twin, reference, [dict(step=1)]) is None
    assert check_raises(ZeroDivisionError, lambda x: 1 / x, [dict(x=0)]) is None
    assert assert_close_result(1.0, 1.0, "f()") is None




def test_list_results_are_compared_item_by_item():
    reference_grad = lambda ws, lam: [2 * lam * w for w in ws]
    weights = [np.ones((2, 3)), np.arange(4.0)]
    check_function(lambda ws, lam: tuple(2.0 * lam * np.asarray(w) for w in ws), reference_grad,
                   [dict(weights=weights, lam=0.1)])
    with pytest.raises(AssertionError, match="expected a list of 2 arrays"):
        check_function(lambda ws, lam: np.concatenate([np.ravel(w) for w in ws]), reference_grad,
                       [dict(weights=weights, lam=0.1)])
    with pytest.raises(AssertionError, match="1 items, expected 2"):
        check_function(lambda ws, lam: [2 * lam * ws[0]], reference_grad, [dict(weights=weights, lam=0.1)])
    with pytest.raises(AssertionError, match=r"\[1\]"):
        check_function(lambda ws, lam: [2 * lam * ws[0], lam * ws[1]], reference_grad,
                       [dict(weights=weights, lam=0.1)])


def test_lists_of_arrays_are_copied_for_each_call():
    weights = [np.ones(3), np.ones(2)]

    def mutating(ws, lam):
        ws[0] *= 5
        return [2 * lam * w for w in ws]

    with pytest.raises(AssertionError):
        check_function(mutating, lambda ws, lam: [2 * lam * w for w in ws], [dict(weights=weights, lam=1.0)])
    assert weights[0].tolist() == [1.0, 1.0, 1.0]


def test_check_not_mutated():
    from nnh.grading import check_not_mutated

    def scale_in_place(x, lam):
        x *= lam
        return x

    def rebind(ws, lam):
        ws = [w * lam for w in ws]
        return ws

    def pop(ws, lam):
        ws.pop()
        return ws

    check_not_mutated(lambda x, lam: x * lam, [dict(x=np.arange(3.0), lam=2.0)])
    check_not_mutated(rebind, [dict(ws=[np.ones(2), np.ones(3)], lam=2.0)])
    with pytest.raises(AssertionError, match="modified its argument 'x'"):
        check_not_mutated(scale_in_place, [dict(x=np.arange(3.0), lam=2.0)])
    with pytest.raises(AssertionError, match="modified its argument 'ws'"):
        check_not_mutated(pop, [dict(ws=[np.ones(2), np.ones(3)], lam=2.0)])


def test_assert_binomial_accepts_fair_draws_and_rejects_biased_ones():
    from nnh.grading import assert_binomial

    rng = np.random.default_rng(0)
    for p in (0.1, 0.5, 0.8):
        n = 50_000
        assert_binomial(int((rng.random(n) < p).sum()), n, p, "fair")
        with pytest.raises(AssertionError, match="biased"):
            assert_binomial(int((rng.random(n) < p + 0.02).sum()), n, p, "biased")
    assert_binomial(0, 1000, 0.0, "never")
    assert_binomial(1000, 1000, 1.0, "always")


def test_delegating_to_the_reference_is_not_an_answer():
    from nnh import schedules

    cases = [dict(step=3, initial_lr=0.1)]
    ref = schedules.step_decay

    def own(step, initial_lr, drop=0.5, every=10):
        return initial_lr * drop ** np.floor(step / every)

    def direct(step, initial_lr, drop=0.5, every=10):
        return schedules.step_decay(step, initial_lr, drop, every)

    alias = ref

    def aliased(step, initial_lr, drop=0.5, every=10):
        return alias(step, initial_lr, drop, every)

    def helper(step, initial_lr, drop=0.5, every=10):
        return direct(step, initial_lr, drop, every)

    def hidden(step, initial_lr, drop=0.5, every=10):  # a name the static check cannot see
        module = __import__("importlib").import_module("nnh.schedules")
        try:
            return getattr(module, "step" + "_decay")(step, initial_lr, drop, every)
        except Exception:
            return 0.0

    check_function(own, ref, cases)
    for cheat in (direct, aliased, helper, hidden):
        with pytest.raises(AssertionError, match="reference"):
            check_function(cheat, ref, cases)
    assert schedules.step_decay is ref, "the reference is restored after the check"


def test_assert_own_work_for_exact_results_and_classes():
    import keras

    from nnh import schedules
    from nnh.grading import assert_own_work

    def own(step, initial_lr, drop=0.5, every=10):
        return initial_lr * drop ** (step // every)

    def delegating(*args):
        return schedules.step_decay(*args)

    assert_own_work(own, schedules.step_decay, 3, 0.1)
    with pytest.raises(AssertionError, match="not an answer"):
        assert_own_work(delegating, schedules.step_decay, 3, 0.1)

    class Subclass(schedules.WarmupCosine):
        pass

    class Wrapper(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, *args):
            self.inner = schedules.WarmupCosine(*args)

        def __call__(self, step):
            return self.inner(step)

    class Own(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return keras.ops.cast(step, "float32")

    assert_own_work(Own, schedules.WarmupCosine)
    for cheat in (Subclass, Wrapper):
        with pytest.raises(AssertionError, match="not an answer"):
            assert_own_work(cheat, schedules.WarmupCosine)


def test_the_reference_itself_or_wrapped_is_not_an_answer():
    """Issue 13: the reference imported as the answer, a partial of it, a copy of its
    code, one kept in a default argument or a dict, and a lazy result that calls it
    while being compared all fail; an own answer still passes."""
    import functools
    import types

    from nnh import schedules
    from nnh.grading import assert_own_work

    ref = schedules.cosine_decay
    cases = [dict(step=s, total_steps=10, initial_lr=0.1) for s in (0, 3, 10)]

    def own(step, total_steps, initial_lr, final_lr=0.0):
        return final_lr + (initial_lr - final_lr) * 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps))

    def in_default(step, total_steps, initial_lr, final_lr=0.0, _impl=ref):
        return _impl(step, total_steps, initial_lr, final_lr)

    table = {"f": ref}

    def in_dict(step, total_steps, initial_lr, final_lr=0.0):
        return globals_of_table()["f"](step, total_steps, initial_lr, final_lr)

    def globals_of_table():
        return table

    class Lazy:
        def __init__(self, *args):
            self.args = args

        def __array__(self, dtype=None, copy=None):
            return np.asarray(table["f"](*self.args), dtype=dtype)

    def lazy(step, total_steps, initial_lr, final_lr=0.0):
        return Lazy(step, total_steps, initial_lr, final_lr)

    copy = types.FunctionType(ref.__code__, ref.__globals__, "cosine_decay", ref.__defaults__)
    check_function(own, ref, cases)
    for cheat in (ref, functools.partial(ref), functools.wraps(ref)(lambda *a: 0.0), copy,
                  in_default, in_dict, lazy):
        with pytest.raises(AssertionError, match="reference"):
            check_function(cheat, ref, cases, name="cosine_decay")
    with pytest.raises(AssertionError, match="not an answer"):
        assert_own_work(ref, ref, 3, 10, 0.1)
    assert schedules.cosine_decay is ref and ref(0, 10, 0.1) == pytest.approx(0.1), "restored"
