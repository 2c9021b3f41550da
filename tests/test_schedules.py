"""Tests of :mod:`nnh.schedules` against independent implementations.

Every value the library computes is compared with something that is *not*
``nnh``: optax (float32, JAX), Keras' own schedules (float32, TensorFlow) or a
pure-Python transcription of the formula in the module's contract (float64).
"""

from __future__ import annotations

import json
import math

import nnh  # noqa: F401  (configures TensorFlow quietly before Keras is used)

import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnh import schedules
from nnh.schedules import (
    StepDecay,
    WarmupCosine,
    cosine_decay,
    linear_warmup,
    plateau_schedule,
    step_decay,
    warmup_cosine,
)
from nnh.training import LearningRateLogger

PROPERTY = settings(max_examples=60, deadline=None)
FAST_PROPERTY = settings(max_examples=100, deadline=None)

# Learning rates: normal floats only (no subnormals), over six decades.
LR = st.floats(1e-5, 10.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
LR_OR_ZERO = st.one_of(st.just(0.0), LR)
N_DRAWN_STEPS = 16  # fixed length, so JAX/TF see one array shape and do not recompile


# --- pure-Python references (the formulas of the contract, float64) ----------


def ref_step_decay(t, initial_lr, drop, every):
    return initial_lr * drop ** math.floor(t / every)


def ref_cosine_decay(t, total_steps, initial_lr, final_lr):
    progress = min(t, total_steps) / total_steps
    return final_lr + (initial_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ref_linear_warmup(t, warmup_steps, peak_lr, initial_lr):
    if warmup_steps == 0:
        return peak_lr
    return initial_lr + (peak_lr - initial_lr) * min(t, warmup_steps) / warmup_steps


def ref_warmup_cosine(t, warmup_steps, total_steps, peak_lr, final_lr, initial_lr):
    if t < warmup_steps:
        return initial_lr + (peak_lr - initial_lr) * t / warmup_steps
    if total_steps == warmup_steps:
        return final_lr
    return ref_cosine_decay(t - warmup_steps, total_steps - warmup_steps, peak_lr, final_lr)


def elementwise(ref, steps, *params):
    steps = np.asarray(steps)
    return np.array([ref(float(t), *params) for t in steps.ravel()], dtype=np.float64).reshape(
        steps.shape
    )


def assert_float32_close(actual, expected, *lrs):
    """Tolerance of a float32 computation: relative 1e-5, absolute 1e-6 of the rate scale."""
    scale = max(abs(v) for v in lrs)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * scale)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# --- strategies ---------------------------------------------------------------


def step_array(draw, limit, *boundaries):
    drawn = draw(
        st.lists(st.integers(0, limit), min_size=N_DRAWN_STEPS, max_size=N_DRAWN_STEPS)
    )
    return np.array(drawn + [max(0, b) for b in boundaries], dtype=np.int64)


@st.composite
def warmup_cosine_cases(draw):
    total = draw(st.integers(1, 400))
    warmup = draw(st.integers(0, total - 1))  # optax needs warmup < total
    peak = draw(LR)  # optax divides by peak
    final = draw(LR_OR_ZERO)
    initial = draw(LR_OR_ZERO)
    steps = step_array(
        draw, 3 * total, 0, warmup - 1, warmup, warmup + 1, total - 1, total, total + 1, 3 * total
    )
    return steps, warmup, total, peak, final, initial


@st.composite
def cosine_cases(draw):
    total = draw(st.integers(1, 400))
    initial = draw(LR)  # Keras/optax take alpha = final / initial
    final = draw(LR_OR_ZERO)
    steps = step_array(draw, 3 * total, 0, 1, total // 2, total - 1, total, total + 1, 3 * total)
    return steps, total, initial, final


@st.composite
def linear_warmup_cases(draw):
    warmup = draw(st.integers(1, 400))  # optax holds init_value for 0 transition steps
    peak = draw(LR)
    initial = draw(LR_OR_ZERO)
    steps = step_array(draw, 3 * warmup, 0, 1, warmup - 1, warmup, warmup + 1, 3 * warmup)
    return steps, warmup, peak, initial


@st.composite
def step_decay_cases(draw, integer_every=True):
    if integer_every:
        every = draw(st.integers(1, 50))
    else:
        every = draw(st.floats(1.0, 50.0, allow_nan=False, allow_infinity=False))
    initial = draw(LR)
    drop = draw(st.one_of(st.just(1.0), st.floats(0.05, 1.0, allow_subnormal=False)))
    limit = int(20 * every)
    steps = step_array(draw, limit, 0, int(every) - 1, int(every), int(every) + 1, limit)
    return steps, initial, drop, every


# --- 1. property tests against independent implementations ------------------


@PROPERTY
@given(warmup_cosine_cases())
def test_warmup_cosine_matches_optax(case):
    steps, warmup, total, peak, final, initial = case
    expected = optax.warmup_cosine_decay_schedule(
        init_value=initial,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=total,
        end_value=final,
    )(jnp.asarray(steps, dtype=jnp.int32))
    actual = warmup_cosine(steps, warmup, total, peak, final_lr=final, initial_lr=initial)
    assert_float32_close(actual, np.asarray(expected, dtype=np.float64), peak, final, initial)


@PROPERTY
@given(cosine_cases())
def test_cosine_decay_matches_optax(case):
    steps, total, initial, final = case
    expected = optax.cosine_decay_schedule(
        init_value=initial, decay_steps=total, alpha=final / initial
    )(jnp.asarray(steps, dtype=jnp.int32))
    actual = cosine_decay(steps, total, initial, final_lr=final)
    assert_float32_close(actual, np.asarray(expected, dtype=np.float64), initial, final)


@PROPERTY
@given(cosine_cases())
def test_cosine_decay_matches_keras_cosine_decay(case):
    steps, total, initial, final = case
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        initial, total, alpha=final / initial
    )
    expected = to_numpy(keras_schedule(steps.astype(np.float32)))
    actual = cosine_decay(steps, total, initial, final_lr=final)
    assert_float32_close(actual, expected.astype(np.float64), initial, final)


@PROPERTY
@given(linear_warmup_cases())
def test_linear_warmup_matches_optax(case):
    steps, warmup, peak, initial = case
    expected = optax.linear_schedule(initial, peak, warmup)(jnp.asarray(steps, dtype=jnp.int32))
    actual = linear_warmup(steps, warmup, peak, initial_lr=initial)
    assert_float32_close(actual, np.asarray(expected, dtype=np.float64), peak, initial)


@PROPERTY
@given(step_decay_cases())
def test_step_decay_matches_keras_staircase_exponential_decay(case):
    steps, initial, drop, every = case
    keras_schedule = keras.optimizers.schedules.ExponentialDecay(
        initial, every, drop, staircase=True
    )
    expected = to_numpy(keras_schedule(steps.astype(np.float32)))
    actual = step_decay(steps, initial, drop=drop, every=every)
    # float32 drop ** p loses a little more than one ulp per factor
    np.testing.assert_allclose(actual, expected.astype(np.float64), rtol=2e-5, atol=0)


@FAST_PROPERTY
@given(step_decay_cases(integer_every=False))
def test_step_decay_matches_python_formula(case):
    steps, initial, drop, every = case
    actual = step_decay(steps, initial, drop=drop, every=every)
    expected = elementwise(ref_step_decay, steps, initial, drop, every)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0)


@FAST_PROPERTY
@given(warmup_cosine_cases(), st.booleans())
def test_warmup_cosine_matches_python_formula(case, warmup_is_total):
    # float64 all the way: a much tighter check than the float32 optax one,
    # and it covers warmup_steps == total_steps, which optax cannot express.
    steps, warmup, total, peak, final, initial = case
    if warmup_is_total:
        warmup = total
    actual = warmup_cosine(steps, warmup, total, peak, final_lr=final, initial_lr=initial)
    expected = elementwise(ref_warmup_cosine, steps, warmup, total, peak, final, initial)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15 * max(peak, final, initial))


@FAST_PROPERTY
@given(cosine_cases())
def test_cosine_decay_matches_python_formula(case):
    steps, total, initial, final = case
    actual = cosine_decay(steps, total, initial, final_lr=final)
    expected = elementwise(ref_cosine_decay, steps, total, initial, final)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15 * max(initial, final))


@FAST_PROPERTY
@given(linear_warmup_cases(), st.booleans())
def test_linear_warmup_matches_python_formula(case, zero_warmup):
    steps, warmup, peak, initial = case
    if zero_warmup:
        warmup = 0
    actual = linear_warmup(steps, warmup, peak, initial_lr=initial)
    expected = elementwise(ref_linear_warmup, steps, warmup, peak, initial)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15 * max(peak, initial))


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        # the docstring examples, worked out by hand
        (step_decay, ([0, 9, 10, 25], 0.1), [0.1, 0.1, 0.05, 0.025]),
        (cosine_decay, ([0, 50, 100, 150], 100, 0.1), [0.1, 0.05, 0.0, 0.0]),
        (linear_warmup, ([0, 5, 10, 20], 10, 0.1), [0.0, 0.05, 0.1, 0.1]),
        (warmup_cosine, ([0, 5, 10, 55, 100, 120], 10, 100, 0.1), [0, 0.05, 0.1, 0.05, 0, 0]),
        # non-default keyword values
        (step_decay, ([0, 2, 3, 6, 9], 1.0, 0.1, 3), [1.0, 1.0, 0.1, 0.01, 0.001]),
        (cosine_decay, ([0, 2, 4, 9], 4, 0.5, 0.1), [0.5, 0.3, 0.1, 0.1]),
        (linear_warmup, ([0, 2, 4, 8], 4, 1.0, 0.2), [0.2, 0.6, 1.0, 1.0]),
        (linear_warmup, ([0, 3, 100], 0, 0.7, 0.1), [0.7, 0.7, 0.7]),
        (warmup_cosine, ([0, 1, 2, 4, 6, 7], 2, 6, 1.0, 0.2, 0.4), [0.4, 0.7, 1.0, 0.6, 0.2, 0.2]),
        (warmup_cosine, ([0, 2, 4, 5, 9], 4, 4, 1.0, 0.3), [0.0, 0.5, 0.3, 0.3, 0.3]),
        (warmup_cosine, ([0, 2, 4], 0, 4, 1.0), [1.0, 0.5, 0.0]),
    ],
)
def test_known_values(function, args, expected):
    np.testing.assert_allclose(function(*args), expected, rtol=1e-12, atol=1e-15)


# --- 2. invariants --------------------------------------------------------------


@st.composite
def ordered_warmup_cosine(draw):
    """A warm-up that rises and a decay that falls: initial, final <= peak."""
    total = draw(st.integers(2, 500))
    warmup = draw(st.integers(1, total - 1))
    peak = draw(LR)
    initial = draw(st.floats(0.0, 1.0)) * peak
    final = draw(st.floats(0.0, 1.0)) * peak
    return warmup, total, peak, final, initial


@FAST_PROPERTY
@given(ordered_warmup_cosine())
def test_warmup_cosine_rises_then_falls_within_bounds(params):
    warmup, total, peak, final, initial = params
    steps = np.arange(0, 2 * total + 1)
    values = warmup_cosine(steps, warmup, total, peak, final_lr=final, initial_lr=initial)
    tiny = 1e-12 * peak
    assert np.all(np.diff(values[: warmup + 1]) >= -tiny), "warm-up must not decrease"
    assert np.all(np.diff(values[warmup:]) <= tiny), "decay must not increase"
    assert values.min() >= min(initial, final, peak) - tiny
    assert values.max() <= max(initial, final, peak) + tiny
    assert np.argmax(values) == warmup or values[warmup] == pytest.approx(values.max(), rel=1e-12)


@FAST_PROPERTY
@given(warmup_cosine_cases())
def test_warmup_cosine_bounds_for_any_order(case):
    _, warmup, total, peak, final, initial = case
    values = warmup_cosine(np.arange(0, 2 * total + 1), warmup, total, peak, final, initial)
    tiny = 1e-12 * max(peak, final, initial)
    assert values.min() >= min(initial, final, peak) - tiny
    assert values.max() <= max(initial, final, peak) + tiny


@FAST_PROPERTY
@given(warmup_cosine_cases())
def test_warmup_cosine_is_continuous_at_the_warmup_boundary(case):
    _, warmup, total, peak, final, initial = case
    at = warmup_cosine(warmup, warmup, total, peak, final, initial)
    # float64 rounding is relative to the largest rate involved (final may dwarf peak)
    assert at == pytest.approx(peak, rel=1e-12, abs=1e-15 * max(peak, final, initial))
    if warmup > 0:
        before = warmup_cosine(warmup - 1, warmup, total, peak, final, initial)
        step_size = abs(peak - initial) / warmup
        assert abs(at - before) <= step_size * (1 + 1e-9) + 1e-15 * peak
        assert before == pytest.approx(peak - (peak - initial) / warmup, rel=1e-9, abs=1e-15)
    # one step into the decay, the rate has moved by at most the cosine's steepest slope
    after = warmup_cosine(warmup + 1, warmup, total, peak, final, initial)
    slope = abs(peak - final) * math.pi / (2 * (total - warmup))
    assert abs(after - at) <= slope * (1 + 1e-9) + 1e-15 * peak


@FAST_PROPERTY
@given(warmup_cosine_cases(), st.booleans())
def test_warmup_cosine_is_final_lr_from_total_steps_on(case, warmup_is_total):
    _, warmup, total, peak, final, initial = case
    if warmup_is_total:
        warmup = total
    tail = warmup_cosine(np.arange(total, 3 * total + 2), warmup, total, peak, final, initial)
    np.testing.assert_allclose(tail, final, rtol=1e-12, atol=1e-15 * peak)
    if total - 1 > warmup:  # strictly inside the decay the rate has not arrived yet
        before_end = warmup_cosine(total - 1, warmup, total, peak, final, initial)
        if peak != final:
            assert before_end != final


@FAST_PROPERTY
@given(st.integers(1, 500), LR, LR_OR_ZERO)
def test_cosine_decay_is_symmetric_about_half_way(half, initial, final):
    total = 2 * half
    mid = cosine_decay(half, total, initial, final)
    assert mid == pytest.approx((initial + final) / 2, rel=1e-12, abs=1e-15 * initial)
    t = np.arange(0, total + 1)
    values = cosine_decay(t, total, initial, final)
    np.testing.assert_allclose(
        values + values[::-1], initial + final, rtol=1e-12, atol=1e-14 * max(initial, final)
    )
    assert values[0] == pytest.approx(initial, rel=1e-15)
    assert values[-1] == pytest.approx(final, rel=1e-15, abs=1e-300)


@FAST_PROPERTY
@given(st.integers(1, 40), LR, st.floats(0.05, 0.99), st.integers(1, 8))
def test_step_decay_is_piecewise_constant(every, initial, drop, n_pieces):
    steps = np.arange(0, every * n_pieces)
    values = step_decay(steps, initial, drop=drop, every=every).reshape(n_pieces, every)
    # constant on each block of `every` steps ...
    np.testing.assert_array_equal(values, np.repeat(values[:, :1], every, axis=1))
    # ... and multiplied by `drop` from one block to the next
    np.testing.assert_allclose(values[1:, 0] / values[:-1, 0], drop, rtol=1e-12)
    assert values[0, 0] == initial


def test_step_decay_with_drop_one_is_constant():
    np.testing.assert_array_equal(step_decay(np.arange(100), 0.3, drop=1.0, every=7), 0.3)


# --- 3. shape and type contract ----------------------------------------------------

CALLS = {
    "step_decay": (step_decay, (0.1, 0.5, 3), ref_step_decay),
    "cosine_decay": (cosine_decay, (10, 0.1, 0.01), ref_cosine_decay),
    "linear_warmup": (linear_warmup, (5, 0.1, 0.02), ref_linear_warmup),
    "warmup_cosine": (warmup_cosine, (5, 20, 0.1, 0.01, 0.02), ref_warmup_cosine),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("step", [0, 7, 4, np.int64(7), np.int32(3), 30, 7.0], ids=repr)
def test_scalar_step_gives_python_float(name, step):
    function, params, ref = CALLS[name]
    value = function(step, *params)
    assert type(value) is float
    assert value == pytest.approx(ref(float(step), *params), rel=1e-12)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    "step",
    [
        np.array([0, 3, 6, 25]),
        np.array([4], dtype=np.int32),
        np.array([[0, 1, 2], [9, 10, 40]]),
        np.arange(24).reshape(2, 3, 4),
        np.array([[0.0, 5.0], [11.0, 19.0]]),
        np.array([], dtype=np.int64),
        np.zeros((0, 3), dtype=np.int64),
        [0, 4, 5, 21],
    ],
    ids=["1d", "1d-int32", "2d", "3d", "2d-float", "empty", "empty-2d", "list"],
)
def test_array_step_gives_float64_array_of_the_same_shape(name, step):
    function, params, ref = CALLS[name]
    values = function(step, *params)
    assert isinstance(values, np.ndarray)
    assert values.dtype == np.float64
    assert values.shape == np.shape(step)
    np.testing.assert_allclose(values, elementwise(ref, step, *params), rtol=1e-12, atol=1e-16)


# --- 4. errors name the offending parameter ----------------------------------------


ERRORS = [
    # (function, args, kwargs, name in the message)
    (step_decay, (3, 0.0), {}, "initial_lr"),
    (step_decay, (3, -0.1), {}, "initial_lr"),
    (step_decay, (3, 0.1), {"drop": 0.0}, "drop"),
    (step_decay, (3, 0.1), {"drop": 1.5}, "drop"),
    (step_decay, (3, 0.1), {"drop": -0.5}, "drop"),
    (step_decay, (3, 0.1), {"every": 0.5}, "every"),
    (step_decay, (3, 0.1), {"every": 0}, "every"),
    (cosine_decay, (3, 0, 0.1), {}, "total_steps"),
    (cosine_decay, (3, -5, 0.1), {}, "total_steps"),
    (linear_warmup, (3, -1, 0.1), {}, "warmup_steps"),
    (warmup_cosine, (3, -1, 10, 0.1), {}, "warmup_steps"),
    (warmup_cosine, (3, 11, 10, 0.1), {}, "warmup_steps"),
    (warmup_cosine, (3, 0, 0, 0.1), {}, "total_steps"),
]


@pytest.mark.parametrize(("function", "args", "kwargs", "name"), ERRORS)
def test_invalid_parameter_raises_value_error_naming_it(function, args, kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        function(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    "step",
    [-1, np.int64(-3), -0.5, np.array([0, 5, -1]), np.array([[0, 1], [2, -7]]), [3, -2]],
    ids=["int", "np.int64", "float", "in-1d", "in-2d", "in-list"],
)
def test_negative_step_raises_value_error_naming_step(name, step):
    function, params, _ = CALLS[name]
    # \bstep\b: "step" itself, not "warmup_steps" or "total_steps"
    with pytest.raises(ValueError, match=r"\bstep\b"):
        function(step, *params)


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (StepDecay, {"initial_lr": 0.0}, "initial_lr"),
        (StepDecay, {"initial_lr": -1.0}, "initial_lr"),
        (StepDecay, {"initial_lr": 0.1, "drop": 0.0}, "drop"),
        (StepDecay, {"initial_lr": 0.1, "drop": 1.5}, "drop"),
        (StepDecay, {"initial_lr": 0.1, "every": 0.5}, "every"),
        (WarmupCosine, {"warmup_steps": -1, "total_steps": 10, "peak_lr": 0.1}, "warmup_steps"),
        (WarmupCosine, {"warmup_steps": 11, "total_steps": 10, "peak_lr": 0.1}, "warmup_steps"),
        (WarmupCosine, {"warmup_steps": 0, "total_steps": 0, "peak_lr": 0.1}, "total_steps"),
    ],
)
def test_keras_schedule_constructor_errors(cls, kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        cls(**kwargs)


def test_valid_edge_parameters_are_accepted():
    assert step_decay(25, 0.1, drop=1.0, every=1) == 0.1
    assert warmup_cosine(10, 10, 10, 0.1, final_lr=0.02) == pytest.approx(0.02)
    assert cosine_decay(0, 1, 0.1) == pytest.approx(0.1)
    assert linear_warmup(0, 0, 0.1) == pytest.approx(0.1)
    StepDecay(0.1, drop=1.0, every=1)
    WarmupCosine(10, 10, 0.1)


# --- 5. Keras adapters ------------------------------------------------------------


WARMUP_COSINE_CONFIGS = [
    {"warmup_steps": 10, "total_steps": 100, "peak_lr": 0.1, "final_lr": 0.001, "initial_lr": 0.0},
    {"warmup_steps": 0, "total_steps": 37, "peak_lr": 2.5, "final_lr": 0.0, "initial_lr": 0.0},
    {"warmup_steps": 7, "total_steps": 7, "peak_lr": 0.3, "final_lr": 0.05, "initial_lr": 0.01},
    {"warmup_steps": 1, "total_steps": 2, "peak_lr": 1e-4, "final_lr": 1e-6, "initial_lr": 5e-5},
    {"warmup_steps": 250, "total_steps": 1000, "peak_lr": 3.0, "final_lr": 0.5, "initial_lr": 0.2},
]
STEP_DECAY_CONFIGS = [
    {"initial_lr": 0.1, "drop": 0.5, "every": 10},
    {"initial_lr": 3.0, "drop": 0.9, "every": 1},
    {"initial_lr": 1e-3, "drop": 1.0, "every": 4},
    {"initial_lr": 0.2, "drop": 0.1, "every": 37},
]


def steps_for(total):
    return np.unique(np.concatenate([np.arange(0, 3 * total + 2), [0, 5_000]]))


@pytest.mark.parametrize("config", WARMUP_COSINE_CONFIGS)
def test_warmup_cosine_adapter_matches_function(config):
    schedule = WarmupCosine(**config)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    steps = steps_for(config["total_steps"])
    values = schedule(steps)
    assert keras.backend.standardize_dtype(values.dtype) == "float32"
    expected = elementwise(
        ref_warmup_cosine,
        steps,
        *(config[k] for k in ("warmup_steps", "total_steps", "peak_lr", "final_lr", "initial_lr")),
    )
    assert_float32_close(to_numpy(values), expected, config["peak_lr"], config["final_lr"])
    scalar = schedule(3)
    assert tuple(scalar.shape) == ()
    assert keras.backend.standardize_dtype(scalar.dtype) == "float32"
    assert float(scalar) == pytest.approx(expected[steps.tolist().index(3)], rel=1e-6)


@pytest.mark.parametrize("config", STEP_DECAY_CONFIGS)
def test_step_decay_adapter_matches_function_and_keras(config):
    schedule = StepDecay(**config)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    steps = steps_for(config["every"] * 5)
    steps = steps[steps <= config["every"] * 15]  # keep drop ** p far from underflow
    values = to_numpy(schedule(steps))
    assert values.dtype == np.float32
    expected = elementwise(ref_step_decay, steps, config["initial_lr"], config["drop"], config["every"])
    np.testing.assert_allclose(values, expected, rtol=2e-5)
    keras_values = to_numpy(
        keras.optimizers.schedules.ExponentialDecay(
            config["initial_lr"], config["every"], config["drop"], staircase=True
        )(steps.astype(np.float32))
    )
    np.testing.assert_allclose(values, keras_values, rtol=2e-5)


@pytest.mark.parametrize(
    ("cls", "config"),
    [(WarmupCosine, c) for c in WARMUP_COSINE_CONFIGS] + [(StepDecay, c) for c in STEP_DECAY_CONFIGS],
)
def test_get_config_from_config_round_trip(cls, config):
    schedule = cls(**config)
    got = schedule.get_config()
    assert got == config  # every constructor argument, with its value
    json.dumps(got)  # the .keras format stores it as JSON
    clone = cls.from_config(got)
    assert type(clone) is cls
    assert clone.get_config() == got
    steps = np.arange(0, 120)
    np.testing.assert_array_equal(to_numpy(clone(steps)), to_numpy(schedule(steps)))
    # and through Keras' own (de)serialisation, by registered name
    assert keras.saving.get_registered_name(cls) == f"nnh>{cls.__name__}"
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(revived) is cls
    assert revived.get_config() == got


def test_schedules_module_exports():
    assert set(schedules.__all__) == {
        "step_decay", "cosine_decay", "linear_warmup", "warmup_cosine", "plateau_schedule",
        "StepDecay", "WarmupCosine"
    }


# --- training with the adapters --------------------------------------------------------

FIT_CONFIG = {"warmup_steps": 3, "total_steps": 10, "peak_lr": 0.05, "final_lr": 0.004, "initial_lr": 0.01}
BATCH = 4


def tiny_model(learning_rate):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    return model


def tiny_data(n_batches, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_batches * BATCH, 4)).astype("float32")
    y = rng.normal(size=(n_batches * BATCH, 2)).astype("float32")
    return x, y


def reference_lr(step, config=FIT_CONFIG):
    return ref_warmup_cosine(float(step), *(config[k] for k in (
        "warmup_steps", "total_steps", "peak_lr", "final_lr", "initial_lr")))


def current_lr(optimizer):
    return float(to_numpy(optimizer.learning_rate))


def test_fit_uses_the_schedule_and_logger_records_each_batch(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(WarmupCosine(**FIT_CONFIG))
    x, y = tiny_data(5)
    logger = LearningRateLogger()
    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[logger])
    k = int(to_numpy(model.optimizer.iterations))
    assert k == 15
    # rates[i] is the rate of update i, for the warm-up, the decay and the tail
    np.testing.assert_allclose(logger.rates, [reference_lr(i) for i in range(15)], rtol=1e-6)
    assert current_lr(model.optimizer) == pytest.approx(reference_lr(k), rel=1e-6)
    assert current_lr(model.optimizer) == pytest.approx(FIT_CONFIG["final_lr"], rel=1e-6)


@pytest.mark.parametrize("steps_per_execution", [2, 4, 32])
def test_logger_records_every_update_with_several_updates_per_call(steps_per_execution):
    """With ``compile(steps_per_execution=k)`` Keras calls the batch callbacks once per
    k updates (fewer at the end of an epoch); the logger still records one rate per update."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=WarmupCosine(**FIT_CONFIG)), loss="mse",
                  steps_per_execution=steps_per_execution)
    x, y = tiny_data(5)
    logger = LearningRateLogger()
    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[logger])
    np.testing.assert_allclose(logger.rates, [reference_lr(i) for i in range(15)], rtol=1e-6)



def test_logger_evaluates_each_step_of_a_library_schedule_once_and_a_custom_one_every_time(monkeypatch):
    """The logger remembers the rates of Keras' and nnh's schedules (pure functions of the
    step and their configuration) per configuration; any other schedule is called at every
    step of every fit, as it may keep state."""
    from nnh import training

    monkeypatch.setattr(training, "_RATES", {})  # what earlier tests evaluated is forgotten

    class Counting(keras.optimizers.schedules.LearningRateSchedule):
        calls = 0

        def __call__(self, step):
            Counting.calls += 1
            return 0.1 / (1.0 + Counting.calls)  # stateful: a cached rate would be wrong

        def get_config(self):
            return {}

    x, y = tiny_data(5)
    for schedule in (WarmupCosine(**FIT_CONFIG), WarmupCosine(**FIT_CONFIG), Counting(), Counting()):
        keras.utils.set_random_seed(0)
        model = tiny_model(schedule)
        logger = LearningRateLogger()
        model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[logger])
        if isinstance(schedule, WarmupCosine):
            assert logger.rates == [float(schedule(i)) for i in range(15)]
        else:
            assert len(set(logger.rates)) == 15  # every call gave a new rate
    key = next(k for k in training._RATES if "WarmupCosine" in k)
    assert sorted(training._RATES[key]) == list(range(15))
    assert not any("Counting" in k for k in training._RATES)

def test_logger_records_a_constant_rate_changed_between_epochs():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", steps_per_execution=3)
    x, y = tiny_data(5)
    logger = LearningRateLogger()
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / 2**epoch)
    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[halve, logger])
    np.testing.assert_allclose(logger.rates, [0.1] * 5 + [0.05] * 5 + [0.025] * 5, rtol=1e-6)


@pytest.mark.parametrize("n_batches", [1, 2, 5])
def test_optimizer_learning_rate_after_k_batches(n_batches):
    keras.utils.set_random_seed(1)
    model = tiny_model(WarmupCosine(**FIT_CONFIG))
    x, y = tiny_data(n_batches, seed=n_batches)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == n_batches
    assert current_lr(model.optimizer) == pytest.approx(reference_lr(n_batches), rel=1e-6)


def test_sgd_updates_use_the_scheduled_rate():
    """w_{i+1} = w_i - lr(i) * grad: checked against a NumPy gradient of the MSE."""
    keras.utils.set_random_seed(2)
    model = tiny_model(WarmupCosine(**FIT_CONFIG))
    x, y = tiny_data(6, seed=2)
    for i in range(6):
        xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        kernel, bias = (w.astype(np.float64) for w in model.get_weights())
        residual = xb.astype(np.float64) @ kernel + bias - yb
        scale = 2.0 / residual.size  # d/dpred of mean((pred - y) ** 2)
        grad_kernel = scale * xb.T.astype(np.float64) @ residual
        grad_bias = scale * residual.sum(axis=0)
        model.train_on_batch(xb, yb)
        new_kernel, new_bias = model.get_weights()
        lr = reference_lr(i)
        np.testing.assert_allclose(new_kernel, kernel - lr * grad_kernel, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new_bias, bias - lr * grad_bias, rtol=1e-5, atol=1e-6)


def test_step_decay_in_fit_matches_step_decay():
    config = {"initial_lr": 0.08, "drop": 0.5, "every": 2}
    keras.utils.set_random_seed(3)
    model = tiny_model(StepDecay(**config))
    x, y = tiny_data(7, seed=3)
    logger = LearningRateLogger()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    expected = [ref_step_decay(i, config["initial_lr"], config["drop"], config["every"]) for i in range(7)]
    np.testing.assert_allclose(logger.rates, expected, rtol=1e-6)
    assert current_lr(model.optimizer) == pytest.approx(
        ref_step_decay(7, config["initial_lr"], config["drop"], config["every"]), rel=1e-6
    )


def test_saved_model_reloads_with_the_schedule(tmp_path):
    keras.utils.set_random_seed(4)
    schedule = WarmupCosine(**FIT_CONFIG)
    model = tiny_model(schedule)
    x, y = tiny_data(4, seed=4)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = keras.models.load_model(path)
    lr_config = loaded.optimizer.get_config()["learning_rate"]
    assert lr_config["class_name"] == "WarmupCosine"
    assert lr_config["registered_name"] == "nnh>WarmupCosine"
    assert lr_config["config"] == schedule.get_config() == FIT_CONFIG
    revived = keras.saving.deserialize_keras_object(lr_config)
    assert type(revived) is WarmupCosine
    assert int(to_numpy(loaded.optimizer.iterations)) == 4
    assert current_lr(loaded.optimizer) == current_lr(model.optimizer)
    assert current_lr(loaded.optimizer) == pytest.approx(reference_lr(4), rel=1e-6)
    # training continues on the same schedule
    loaded.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert current_lr(loaded.optimizer) == pytest.approx(reference_lr(8), rel=1e-6)


# --- plateau_schedule against keras.callbacks.ReduceLROnPlateau driven by hand ---------

_PLATEAU_MODEL = {}


def keras_plateau_rates(val_losses, initial_lr, **params):
    """The rate of ``model.optimizer`` after each ``on_epoch_end`` of the real callback."""
    if "model" not in _PLATEAU_MODEL:  # one model, its rate reset for every case (fast)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
        _PLATEAU_MODEL["model"] = model
    model = _PLATEAU_MODEL["model"]
    model.optimizer.learning_rate = float(initial_lr)
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min", verbose=0, **params)
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for epoch, loss in enumerate(val_losses):
        callback.on_epoch_end(epoch, {"val_loss": float(loss)})  # fit reports Python floats
        rates.append(float(to_numpy(model.optimizer.learning_rate)))
    return np.array(rates)


def assert_plateau_matches_keras(val_losses, initial_lr, **params):
    ours = plateau_schedule(val_losses, initial_lr, **params)
    theirs = keras_plateau_rates(val_losses, initial_lr, **params)
    assert ours.dtype == np.float64 and ours.shape == (len(val_losses),)
    # The reference rounds where Keras rounds (float32 variable, float32 comparisons), so the
    # rates agree exactly; a float32-sized tolerance would only hide a missing rounding, and a
    # wrong decision (an extra or missing reduction) is a factor `factor`, far outside any tolerance.
    np.testing.assert_array_equal(ours, theirs, err_msg=f"losses={list(val_losses)} params={params}")


@st.composite
def plateau_cases(draw):
    # losses on a coarse grid (ties, and differences equal to min_delta, are frequent),
    # sometimes on a fine one, sometimes with a nan
    n = draw(st.integers(1, 40))
    grid = draw(st.sampled_from([0.05, 0.01, 1e-4]))
    losses = [grid * k for k in draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))]
    if draw(st.booleans()):
        losses = [v + d for v, d in zip(losses, draw(st.lists(
            st.floats(-1e-3, 1e-3, allow_subnormal=False), min_size=n, max_size=n)))]
    if draw(st.integers(0, 9)) == 0:
        losses[draw(st.integers(0, n - 1))] = math.nan
    initial_lr = draw(st.floats(1e-4, 1.0, allow_subnormal=False))
    factor = draw(st.one_of(st.sampled_from([0.1, 0.2, 0.5]), st.floats(0.01, 0.99)))
    min_lr = draw(st.one_of(
        st.just(0.0),
        st.floats(0.0, initial_lr, allow_subnormal=False),
        # exactly a rate the reductions reach (float32 boundary of `lr > min_lr`)
        st.integers(1, 3).map(lambda k: float(np.float32(initial_lr) * np.float32(factor) ** k)),
    ))
    params = {
        "factor": factor,
        "patience": draw(st.integers(1, 5)),
        "min_delta": draw(st.one_of(st.sampled_from([0.0, 1e-4, grid, 2 * grid]),
                                    st.floats(0.0, 0.2, allow_subnormal=False))),
        "cooldown": draw(st.integers(0, 4)),
        "min_lr": min_lr,
    }
    return losses, initial_lr, params


@settings(max_examples=200, deadline=None)
@given(plateau_cases())
def test_plateau_schedule_matches_keras_reduce_lr_on_plateau(case):
    losses, initial_lr, params = case
    assert_plateau_matches_keras(losses, initial_lr, **params)


@pytest.mark.parametrize(
    ("losses", "initial_lr", "params", "expected"),
    [
        # the docstring's case: two epochs without improvement, then /10
        ([1.0, 0.9, 0.95, 0.92, 0.91, 0.8], 0.1, {"patience": 2}, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]),
        # a difference below float32 resolution is no improvement (float64 would say it is)
        ([1.0, 1.0 - 1e-9, 1.0 - 2e-9], 0.1, {"patience": 2, "min_delta": 0.0}, [0.1, 0.1, 0.01]),
        # an improvement must beat best - min_delta strictly (0.45 ties, 0.449 beats it)
        ([1.0, 0.5, 0.45, 0.449], 0.1, {"patience": 1, "min_delta": 0.05}, [0.1, 0.1, 0.01, 0.01]),
        # cooldown=1 holds the counter at 0 for 0 epochs: same as cooldown=0
        ([1.0] * 6, 0.1, {"patience": 2, "cooldown": 1}, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
        ([1.0] * 6, 0.1, {"patience": 2, "cooldown": 0}, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
        # cooldown=2: one epoch held at 0, so the next reduction comes one epoch later
        ([1.0] * 6, 0.1, {"patience": 2, "cooldown": 2}, [0.1, 0.1, 0.01, 0.01, 0.01, 0.001]),
        # never below min_lr, and no reduction once there
        ([1.0] * 6, 0.1, {"patience": 1, "factor": 0.5, "min_lr": 0.03}, [0.1, 0.05, 0.03, 0.03, 0.03, 0.03]),
        # a first nan is the best forever: nothing improves on it
        ([math.nan, 0.1, 0.01], 0.1, {"patience": 2}, [0.1, 0.1, 0.01]),
        ([], 0.1, {}, []),
    ],
    ids=["docstring", "float32-tie", "min-delta", "cooldown-1", "cooldown-0", "cooldown-2", "min-lr",
         "nan", "empty"],
)
def test_plateau_schedule_edge_cases_against_keras(losses, initial_lr, params, expected):
    np.testing.assert_allclose(plateau_schedule(losses, initial_lr, **params), expected, rtol=1e-6)
    assert_plateau_matches_keras(losses, initial_lr, **params)


def test_plateau_schedule_equals_the_rate_a_real_fit_used():
    keras.utils.set_random_seed(5)
    x, y = tiny_data(4, seed=5)
    xv, yv = tiny_data(2, seed=6)
    model = tiny_model(0.05)
    logger = LearningRateLogger()
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.01)
    history = model.fit(x, y, batch_size=BATCH, epochs=8, shuffle=False, verbose=0,
                        validation_data=(xv, yv), callbacks=[logger, callback])
    expected = plateau_schedule(history.history["val_loss"], 0.05, factor=0.5, patience=1, min_delta=0.01)
    per_epoch = np.array(logger.rates).reshape(8, 4)[:, 0]  # rate of each epoch's batches
    np.testing.assert_array_equal(per_epoch[1:], expected[:-1])
    assert expected.min() < 0.05  # the case reduces the rate at least once


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"factor": 1.0}, "factor"), ({"factor": 0.0}, "factor"), ({"factor": -0.5}, "factor"),
        ({"factor": 1.5}, "factor"),
        ({"patience": 0}, "patience"), ({"patience": -2}, "patience"), ({"patience": 1.5}, "patience"),
        ({"min_delta": -1e-4}, "min_delta"), ({"cooldown": -1}, "cooldown"), ({"cooldown": 0.5}, "cooldown"),
        ({"min_lr": -0.1}, "min_lr"), ({"initial_lr": 0.0}, "initial_lr"), ({"initial_lr": -0.1}, "initial_lr"),
        ({"initial_lr": math.inf}, "initial_lr"), ({"factor": math.nan}, "factor"),
        ({"val_losses": [[1.0, 0.5]]}, "val_losses"),
    ],
)
def test_plateau_schedule_invalid_parameter_raises_value_error_naming_it(kwargs, name):
    args = {"val_losses": [1.0, 0.9], "initial_lr": 0.1} | kwargs
    with pytest.raises(ValueError, match=rf"\b{name}\b") as error:
        plateau_schedule(**args)
    if name in ("factor", "patience", "initial_lr"):  # the message states the allowed range
        assert any(r in str(error.value) for r in ("(0, 1)", ">= 1", "> 0"))
