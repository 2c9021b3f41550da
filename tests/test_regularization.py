"""Tests of :mod:`nnh.regularization` against Keras and against brute force.

The penalties are compared with what Keras itself computes: ``sum(model.losses)``
of real models whose ``Dense`` kernels carry ``keras.regularizers.L2/L1/L1L2``,
and the regularizer objects called on tensors (float32 and float64).  The
gradient is compared with TensorFlow's autodiff of the Keras L2 regularizer and
with central finite differences.  The rest are properties of the formulas and
the documented input rule (one array vs a list of arrays) and error paths.
"""

from __future__ import annotations

import copy
import math

import nnh  # noqa: F401  (configures TensorFlow quietly before Keras is used)

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnh import regularization
from nnh.regularization import (
    elastic_net_penalty,
    kernels,
    l1_penalty,
    l2_penalty,
    l2_penalty_grad,
    adam_l2_update,
    adamw_update,
    early_stopping,
    soft_threshold,
    sparsity,
)

KERAS = settings(max_examples=15, deadline=None)  # builds Keras models: slower examples
PROPERTY = settings(max_examples=80, deadline=None)

LAM = st.floats(1e-6, 10.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
LAM_OR_ZERO = st.one_of(st.just(0.0), LAM)
VALUE = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
ARRAY = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), elements=VALUE)
ARRAY_LIST = st.lists(ARRAY, min_size=0, max_size=4)
WEIGHTS = st.one_of(ARRAY, ARRAY_LIST)


def brute_sum(weights, f):
    """Sum of ``f(w)`` over every number in ``weights`` (nested Python loops, float64)."""
    items = weights if isinstance(weights, (list, tuple)) else [weights]
    return math.fsum(f(float(v)) for a in items for v in np.ravel(a))


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# --- against Keras ----------------------------------------------------------------


@st.composite
def dense_models(draw):
    """A random small Dense network: its input size and its layer widths."""
    n_in = draw(st.integers(1, 8))
    widths = draw(st.lists(st.integers(1, 8), min_size=1, max_size=3))
    return n_in, widths


def build(n_in, widths, regularizer, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((n_in,))]
    layers += [keras.layers.Dense(w, activation="relu", kernel_regularizer=regularizer)
               for w in widths]
    layers.append(keras.layers.Dropout(0.5))  # a layer without kernel: skipped by kernels()
    return keras.Sequential(layers)


def keras_loss(model):
    return float(sum(to_numpy(loss) for loss in model.losses))


@KERAS
@given(dense_models(), LAM, st.integers(0, 2**16))
def test_l2_penalty_equals_keras_model_losses(shapes, lam, seed):
    model = build(*shapes, keras.regularizers.L2(lam), seed)
    np.testing.assert_allclose(l2_penalty(kernels(model), lam), keras_loss(model), rtol=1e-5)


@KERAS
@given(dense_models(), LAM, st.integers(0, 2**16))
def test_l1_penalty_equals_keras_model_losses(shapes, lam, seed):
    model = build(*shapes, keras.regularizers.L1(lam), seed)
    np.testing.assert_allclose(l1_penalty(kernels(model), lam), keras_loss(model), rtol=1e-5)


@KERAS
@given(dense_models(), LAM_OR_ZERO, LAM_OR_ZERO, st.integers(0, 2**16))
def test_elastic_net_penalty_equals_keras_model_losses(shapes, l1, l2, seed):
    model = build(*shapes, keras.regularizers.L1L2(l1=l1, l2=l2), seed)
    np.testing.assert_allclose(
        elastic_net_penalty(kernels(model), l1, l2), keras_loss(model), rtol=1e-5, atol=1e-30
    )


def test_l2_penalty_of_nnh_mlp_equals_keras_model_losses():
    lam = 3e-4
    model = nnh.models.mlp(hidden=(32, 16), kernel_regularizer=keras.regularizers.L2(lam))
    assert [k.shape for k in kernels(model)] == [(64, 32), (32, 16), (16, 10)]
    np.testing.assert_allclose(l2_penalty(kernels(model), lam), keras_loss(model), rtol=1e-5)
    # the biases are not penalised: adding them changes the value
    assert l2_penalty(model.get_weights(), lam) >= l2_penalty(kernels(model), lam)


@PROPERTY
@given(ARRAY, LAM, LAM)
def test_penalties_equal_keras_regularizers_on_float64_tensors(w, l1, l2):
    x = tf.constant(w, dtype=tf.float64)  # Keras computes in the input's dtype ...
    # ... but turns the coefficient into a float32 tensor first: compare with the rounded one
    l1_32, l2_32 = float(np.float32(l1)), float(np.float32(l2))
    np.testing.assert_allclose(l2_penalty(w, l2_32), to_numpy(keras.regularizers.L2(l2)(x)),
                               rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(l1_penalty(w, l1_32), to_numpy(keras.regularizers.L1(l1)(x)),
                               rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(elastic_net_penalty(w, l1_32, l2_32),
                               to_numpy(keras.regularizers.L1L2(l1, l2)(x)),
                               rtol=1e-12, atol=1e-300)


@PROPERTY
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=64),
                  elements=st.floats(-3, 3, width=32)), LAM)
def test_penalties_equal_keras_regularizers_on_float32_tensors(w, lam):
    x = keras.ops.convert_to_tensor(w)
    for ours, theirs in [(l2_penalty, keras.regularizers.L2), (l1_penalty, keras.regularizers.L1)]:
        np.testing.assert_allclose(ours(w, lam), to_numpy(theirs(lam)(x)), rtol=2e-5, atol=1e-30)


# --- the gradient -------------------------------------------------------------------


@PROPERTY
@given(ARRAY_LIST.filter(bool), LAM)
def test_l2_penalty_grad_equals_autodiff_of_keras_l2(weights, lam):
    variables = [tf.Variable(w, dtype=tf.float64) for w in weights]
    with tf.GradientTape() as tape:
        total = tf.add_n([keras.regularizers.L2(lam)(v) for v in variables])
    expected = tape.gradient(total, variables)
    actual = l2_penalty_grad(weights, float(np.float32(lam)))  # Keras rounds lam to float32
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e.numpy(), rtol=1e-12, atol=1e-300)


@PROPERTY
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
                  elements=VALUE), LAM)
def test_l2_penalty_grad_matches_central_finite_differences(w, lam):
    h = 1e-5
    numeric = np.empty_like(w)
    for index in np.ndindex(w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += h
        minus[index] -= h
        numeric[index] = (l2_penalty(plus, lam) - l2_penalty(minus, lam)) / (2 * h)
    # central differences are exact for a quadratic up to rounding of the sums
    scale = lam * max(1.0, float(np.sum(w**2)))
    np.testing.assert_allclose(l2_penalty_grad(w, lam), numeric, rtol=1e-6, atol=1e-9 * scale)


@PROPERTY
@given(WEIGHTS, LAM_OR_ZERO)
def test_l2_penalty_grad_keeps_the_structure_of_weights(weights, lam):
    grad = l2_penalty_grad(weights, lam)
    if isinstance(weights, list):
        assert isinstance(grad, list) and len(grad) == len(weights)
        for g, w in zip(grad, weights):
            assert isinstance(g, np.ndarray) and g.shape == w.shape and g.dtype == np.float64
            np.testing.assert_array_equal(g, 2 * lam * w)
    else:
        assert isinstance(grad, np.ndarray) and grad.shape == weights.shape
        assert grad.dtype == np.float64
        np.testing.assert_array_equal(grad, 2 * lam * weights)


def test_l2_penalty_grad_of_a_tuple_is_a_tuple_and_of_numbers_is_an_array():
    grad = l2_penalty_grad((np.ones(2), np.full((1, 3), -1.0)), 0.25)
    assert isinstance(grad, tuple)
    np.testing.assert_array_equal(grad[0], [0.5, 0.5])
    np.testing.assert_array_equal(grad[1], [[-0.5, -0.5, -0.5]])
    np.testing.assert_array_equal(l2_penalty_grad([1.0, -2.0], 0.1), [0.2, -0.4])
    zero_d = l2_penalty_grad(3.0, 0.5)
    assert isinstance(zero_d, np.ndarray) and zero_d.shape == () and zero_d == 3.0
    assert l2_penalty_grad([], 0.1) == []


def test_one_sgd_step_on_the_l2_penalty_is_weight_decay():
    w, lam, lr = np.array([0.5, -2.0, 3.0]), 1e-3, 0.1
    np.testing.assert_allclose(w - lr * l2_penalty_grad(w, lam), (1 - 2 * lr * lam) * w, rtol=1e-15)


# --- properties of the penalties -------------------------------------------------------


@PROPERTY
@given(WEIGHTS, LAM, LAM)
def test_penalties_match_brute_force_and_return_python_floats(weights, l1, l2):
    for value in (l2_penalty(weights, l2), l1_penalty(weights, l1),
                  elastic_net_penalty(weights, l1, l2)):
        assert type(value) is float
    np.testing.assert_allclose(l2_penalty(weights, l2), l2 * brute_sum(weights, lambda v: v * v),
                               rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(l1_penalty(weights, l1), l1 * brute_sum(weights, abs),
                               rtol=1e-12, atol=1e-300)


@PROPERTY
@given(WEIGHTS, LAM, st.floats(0.0, 100.0))
def test_penalties_are_linear_in_the_coefficient(weights, lam, factor):
    for penalty in (l2_penalty, l1_penalty):
        np.testing.assert_allclose(penalty(weights, factor * lam), factor * penalty(weights, lam),
                                   rtol=1e-12, atol=1e-300)
    grad, scaled = l2_penalty_grad(weights, lam), l2_penalty_grad(weights, factor * lam)
    for g, s in zip(grad if isinstance(grad, list) else [grad],
                    scaled if isinstance(scaled, list) else [scaled]):
        np.testing.assert_allclose(s, factor * g, rtol=1e-12, atol=1e-300)


@PROPERTY
@given(WEIGHTS, LAM_OR_ZERO, LAM_OR_ZERO)
def test_elastic_net_is_the_sum_of_its_l1_and_l2_parts(weights, l1, l2):
    np.testing.assert_allclose(elastic_net_penalty(weights, l1, l2),
                               l1_penalty(weights, l1) + l2_penalty(weights, l2),
                               rtol=1e-12, atol=1e-300)
    assert elastic_net_penalty(weights, 0.0, l2) == pytest.approx(l2_penalty(weights, l2), rel=1e-12)
    assert elastic_net_penalty(weights, l1, 0.0) == pytest.approx(l1_penalty(weights, l1), rel=1e-12)


@PROPERTY
@given(ARRAY_LIST, LAM, st.randoms(use_true_random=False))
def test_a_list_is_the_sum_over_its_arrays_in_any_order(weights, lam, rnd):
    shuffled = list(weights)
    rnd.shuffle(shuffled)
    for penalty in (l2_penalty, l1_penalty, lambda w, c: elastic_net_penalty(w, c, 2 * c)):
        total = math.fsum(penalty(w, lam) for w in weights)
        np.testing.assert_allclose(penalty(weights, lam), total, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(penalty(shuffled, lam), total, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(penalty(tuple(weights), lam), total, rtol=1e-12, atol=1e-300)


@PROPERTY
@given(WEIGHTS)
def test_zero_coefficient_gives_zero(weights):
    assert l2_penalty(weights, 0.0) == 0.0
    assert l1_penalty(weights, 0) == 0.0
    assert elastic_net_penalty(weights, 0.0, 0.0) == 0.0
    grad = l2_penalty_grad(weights, 0.0)
    for g in grad if isinstance(grad, list) else [grad]:
        assert not np.any(g)


@PROPERTY
@given(WEIGHTS, LAM)
def test_inputs_are_not_modified(weights, lam):
    before = copy.deepcopy(weights)
    l2_penalty(weights, lam)
    l1_penalty(weights, lam)
    elastic_net_penalty(weights, lam, lam)
    grad = l2_penalty_grad(weights, lam)
    soft_threshold(weights, lam)
    # writing to the result must not write through to the input either
    for g in grad if isinstance(grad, list) else [grad]:
        g[...] = 123.0
    for w, b in zip(weights if isinstance(weights, list) else [weights],
                    before if isinstance(before, list) else [before]):
        np.testing.assert_array_equal(w, b)


def test_a_float32_array_is_accumulated_in_float64():
    w = np.full(10**6, 0.1, dtype=np.float32)
    assert l1_penalty(w, 1.0) == pytest.approx(10**6 * float(np.float32(0.1)), rel=1e-12)
    assert l2_penalty(w, 1.0) == pytest.approx(10**6 * float(np.float32(0.1)) ** 2, rel=1e-12)


# --- one array or a list of arrays ----------------------------------------------------


def test_a_list_of_numbers_is_one_array():
    assert l2_penalty([1.0, -2.0], 0.1) == pytest.approx(0.5)
    assert l1_penalty([[1, -2], [3, -4]], 1.0) == 10.0
    assert l2_penalty(np.float64(3.0), 1.0) == 9.0
    assert l2_penalty([np.float64(1.0), np.float64(2.0)], 1.0) == 5.0  # NumPy scalars are numbers
    assert l2_penalty([True, False], 1.0) == 1.0


def test_a_list_of_numpy_arrays_is_a_list_of_weight_arrays():
    weights = [np.ones((2, 3)), np.array([2.0]), np.array(-1.0)]
    assert l2_penalty(weights, 1.0) == 6 + 4 + 1
    assert l1_penalty(tuple(weights), 1.0) == 6 + 2 + 1
    assert l2_penalty([], 1.0) == 0.0 and l1_penalty((), 1.0) == 0.0


@pytest.mark.parametrize("ragged", [
    [[1.0, 2.0], [3.0]],
    [np.ones(2), [1.0, 2.0, 3.0]],
    [np.ones(2), 1.0],
    [[np.ones(2)], [np.ones(3)]],
])
@pytest.mark.parametrize("function", [
    lambda w: l2_penalty(w, 1.0), lambda w: l1_penalty(w, 1.0),
    lambda w: elastic_net_penalty(w, 1.0, 1.0), lambda w: l2_penalty_grad(w, 1.0),
    lambda w: sparsity(w), lambda w: soft_threshold(w, 1.0),
])
def test_a_ragged_or_mixed_sequence_is_an_error(function, ragged):
    with pytest.raises(ValueError, match=r"\bweights\b.*ragged"):
        function(ragged)


@pytest.mark.parametrize("bad", ["abc", ["a", "b"], np.array([1 + 2j]), {"w": 1.0}])
def test_non_numeric_weights_are_a_type_error(bad):
    with pytest.raises((TypeError, ValueError), match=r"\bweights\b"):
        l2_penalty(bad, 1.0)


def test_non_finite_weights_give_non_finite_penalties_as_in_keras():
    assert math.isnan(l2_penalty([1.0, np.nan], 1.0))
    assert math.isinf(l1_penalty([1.0, np.inf], 1.0))


# --- error paths: the coefficients -----------------------------------------------------

BAD_COEFFICIENTS = [-1.0, -1e-12, float("nan"), float("inf"), float("-inf"), np.float32("nan")]
CALLS = [
    ("lam", lambda c: l2_penalty([1.0], c)),
    ("lam", lambda c: l1_penalty([1.0], c)),
    ("lam", lambda c: l2_penalty_grad([1.0], c)),
    ("l1", lambda c: elastic_net_penalty([1.0], c, 0.1)),
    ("l2", lambda c: elastic_net_penalty([1.0], 0.1, c)),
    ("threshold", lambda c: soft_threshold([1.0], c)),
    ("tol", lambda c: sparsity([1.0], c)),
]


@pytest.mark.parametrize("bad", BAD_COEFFICIENTS, ids=repr)
@pytest.mark.parametrize(("name", "call"), CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CALLS)])
def test_a_negative_or_non_finite_coefficient_is_a_value_error_naming_it(name, call, bad):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(bad)


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CALLS)])
@pytest.mark.parametrize("bad", [None, "abc", [0.1]], ids=repr)
def test_a_non_numeric_coefficient_is_a_type_error_naming_it(name, call, bad):
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        call(bad)


def test_the_coefficient_is_checked_even_for_empty_weights():
    with pytest.raises(ValueError, match=r"\blam\b"):
        l2_penalty([], -1.0)
    with pytest.raises(ValueError, match=r"\bl2\b"):
        elastic_net_penalty([], 0.0, float("nan"))


# --- helpers ------------------------------------------------------------------------------


@PROPERTY
@given(WEIGHTS, st.floats(0.0, 5.0))
def test_soft_threshold_matches_the_formula_and_solves_the_prox_problem(weights, t):
    out = soft_threshold(weights, t)
    outs = out if isinstance(out, list) else [out]
    ins = weights if isinstance(weights, list) else [weights]
    assert len(outs) == len(ins)
    for o, w in zip(outs, ins):
        assert o.shape == np.shape(w)
        expected = np.array([math.copysign(max(abs(v) - t, 0.0), v) for v in np.ravel(w)])
        np.testing.assert_allclose(np.ravel(o), expected, rtol=0, atol=1e-12)
        assert np.all(o[np.abs(w) <= t] == 0.0)  # exact zeros, not near-zeros
        # it minimises 1/2 (v - w)^2 + t |v| better than nearby points
        objective = lambda v: 0.5 * (v - w) ** 2 + t * np.abs(v)
        for delta in (-1e-3, 1e-3):
            assert np.all(objective(o) <= objective(o + delta) + 1e-12)


def test_soft_threshold_keeps_tuples_and_the_docstring_case():
    np.testing.assert_array_equal(soft_threshold([-1.5, -0.2, 0.0, 0.3, 2.0], 0.5),
                                  [-1.0, 0.0, 0.0, 0.0, 1.5])
    assert isinstance(soft_threshold((np.ones(2),), 0.5), tuple)


@PROPERTY
@given(WEIGHTS.filter(lambda w: sum(np.size(a) for a in (w if isinstance(w, list) else [w]))),
       st.floats(0.0, 10.0))
def test_sparsity_is_the_pooled_fraction_of_small_weights(weights, tol):
    values = [abs(float(v)) for a in (weights if isinstance(weights, list) else [weights])
              for v in np.ravel(a)]
    expected = sum(v <= tol for v in values) / len(values)
    assert sparsity(weights, tol) == pytest.approx(expected, abs=1e-15)
    assert type(sparsity(weights, tol)) is float


def test_sparsity_edge_cases():
    assert sparsity([0.0, 1e-4, -0.5, 2.0], tol=1e-3) == 0.5
    assert sparsity([0.0, -0.0, 1.0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\bweights\b"):
        sparsity([])
    with pytest.raises(ValueError, match=r"\bweights\b"):
        sparsity([np.zeros((0, 3))])


def test_kernels_are_copies_of_the_kernels_of_every_layer_in_order():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="inner")])
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, name="first"),
                              keras.layers.Dropout(0.1), inner, keras.layers.Dense(2)])
    found = kernels(model)
    assert [k.shape for k in found] == [(5, 3), (3, 4), (4, 2)]
    np.testing.assert_array_equal(found[0], model.layers[0].kernel.numpy())
    found[0][...] = 0.0
    assert np.any(model.layers[0].kernel.numpy() != 0.0)  # a copy, not a view




# --- the chapter's plots (nnh.plots) ------------------------------------------------------


def test_plot_weight_histograms_shows_the_near_zero_fraction_per_model():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    weights = {"dense": [rng.normal(0, 0.1, (20, 10))],
               "sparse": [np.where(rng.random((20, 10)) < 0.5, 0.0, rng.normal(0, 0.1, (20, 10)))]}
    for magnitude in (False, True):
        fig = nnh.plots.plot_weight_histograms(weights, tol=1e-3, magnitude=magnitude)
        assert [ax.get_title() for ax in fig.axes] == ["dense", "sparse"]
        legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
        assert any(f"{sparsity(weights['sparse'], 1e-3):.1%}" in text for text in legend)
        assert fig.axes[0].get_xscale() == ("log" if magnitude else "linear")
        assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel()
        plt.close(fig)


def test_plot_sweep_marks_the_best_value():
    import matplotlib.pyplot as plt

    fig = nnh.plots.plot_sweep([1e-4, 1e-3, 1e-2], [0.90, 0.95, 0.80], best="max", baseline=0.9,
                               xlabel="λ", ylabel="accuracy", title="sweep")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "sweep"
    assert any("best: λ = 0.001" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)
    fig = nnh.plots.plot_sweep([1, 2, 3], [0.3, 0.2, 0.25], best="min", log_x=False)
    assert any("= 2 " in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\bbest\b"):
        nnh.plots.plot_sweep([1, 2], [0.1, 0.2], best="largest")


def test_plot_lines_draws_one_labelled_line_per_curve():
    import matplotlib.pyplot as plt

    x = np.linspace(-1, 1, 11)
    fig = nnh.plots.plot_lines(x, {"identity": x, "soft threshold": soft_threshold(x, 0.5)},
                               styles={"identity": ":"}, title="t", xlabel="a", ylabel="w*")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["identity", "soft threshold"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), soft_threshold(x, 0.5))
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("t", "a", "w*")
    plt.close(fig)



# --- Adam + L2 vs AdamW: one update, against Keras' optimizers -------------------------
# Keras stores the learning rate in a float32 variable, and `ops.cast` of a Python float
# (weight_decay, the L2 coefficient, beta_1 and beta_2 in the bias corrections) goes through
# float32, so the references below receive float32-representable values (betas that are
# exact binary fractions); everything else (weights, moments, arithmetic) runs in float64.
# The float32 test further down uses the default betas 0.9 and 0.999.

F32 = lambda x: float(np.float32(x))  # noqa: E731
SMALL = st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False)
VECTOR = st.integers(1, 6).flatmap(lambda n: st.tuples(
    hnp.arrays(np.float64, n, elements=SMALL),
    st.lists(hnp.arrays(np.float64, n, elements=SMALL), min_size=1, max_size=5)))
RATE = st.floats(1e-4, 0.3).map(F32)
BETA = st.sampled_from([0.0, 0.5, 0.875, 0.9921875, 0.9990234375])


def keras_run(optimizer, w0, grads, l2=None):
    """Apply ``optimizer`` to a float64 ``keras.Variable`` for every gradient in turn; with
    ``l2`` the gradient is TensorFlow's of ``sum(g·w) + L2(l2)(w)`` (so it is ``g + 2·l2·w``)."""
    var = keras.Variable(w0, dtype="float64")
    for g in grads:
        if l2 is None:
            grad = tf.constant(g)
        else:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.constant(g) * var.value) + keras.regularizers.L2(l2)(var.value)
            grad = tape.gradient(loss, var.value)
        optimizer.apply([grad], [var])
    return to_numpy(var)


def reference_run(update, w0, grads, **kwargs):
    w, m, v = w0, np.zeros_like(w0), np.zeros_like(w0)
    for step, g in enumerate(grads, start=1):
        w, m, v = update(w, g, m, v, step, **kwargs)
    return w


@KERAS
@given(VECTOR, RATE, st.floats(0.0, 5.0).map(F32), BETA, BETA, st.sampled_from([1e-7, 1e-3]))
def test_adamw_update_equals_keras_adamw(data, lr, wd, b1, b2, eps):
    w0, grads = data
    optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd, beta_1=b1, beta_2=b2,
                                       epsilon=eps)
    expected = keras_run(optimizer, w0, grads)
    actual = reference_run(adamw_update, w0, grads, learning_rate=lr, weight_decay=wd, beta_1=b1,
                           beta_2=b2, epsilon=eps)
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


@KERAS
@given(VECTOR, RATE, st.floats(0.0, 1.0).map(F32), BETA, BETA)
def test_adam_l2_update_equals_keras_adam_on_a_loss_with_an_l2_regularizer(data, lr, l2, b1, b2):
    w0, grads = data
    optimizer = keras.optimizers.Adam(learning_rate=lr, beta_1=b1, beta_2=b2)
    expected = keras_run(optimizer, w0, grads, l2=l2)
    actual = reference_run(adam_l2_update, w0, grads, learning_rate=lr, l2=l2, beta_1=b1, beta_2=b2)
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


def test_adamw_in_float32_agrees_to_float32_precision():
    w0, g = np.array([0.5, -1.5, 2.0]), np.array([0.1, 0.0, -3.0])
    var = keras.Variable(w0.astype(np.float32))
    optimizer = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.1)
    for _ in range(3):
        optimizer.apply([tf.constant(g, dtype=tf.float32)], [var])
    expected = reference_run(adamw_update, w0, [g] * 3, learning_rate=F32(0.01), weight_decay=0.1)
    np.testing.assert_allclose(to_numpy(var), expected, rtol=1e-6)


@PROPERTY
@given(VECTOR, RATE, st.floats(0.0, 5.0), st.integers(1, 1000))
def test_the_two_updates_return_new_arrays_and_agree_without_decay(data, lr, wd, step):
    w0, grads = data
    g, m, v = grads[0], 0.5 * grads[0], grads[0] ** 2
    before = [a.copy() for a in (w0, g, m, v)]
    out_w = adamw_update(w0, g, m, v, step, lr, wd)
    out_l2 = adam_l2_update(w0, g, m, v, step, lr, wd / 2)
    for a, b in zip((w0, g, m, v), before):
        np.testing.assert_array_equal(a, b)  # inputs untouched
    for out in (out_w, out_l2):
        assert all(isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == w0.shape for x in out)
    # no decay: both are plain Adam, identical
    for a, b in zip(adamw_update(w0, g, m, v, step, lr, 0.0), adam_l2_update(w0, g, m, v, step, lr, 0.0)):
        np.testing.assert_array_equal(a, b)


def test_adam_normalises_the_l2_decay_away_but_not_adamws():
    # a weight whose only gradient is the penalty's: Adam's step is ≈ η whatever λ is ...
    for l2 in (1e-2, 1.0, 100.0):
        w, _, _ = adam_l2_update(1.0, 0.0, 0.0, 0.0, 1, 0.01, l2)
        assert float(w) == pytest.approx(1.0 - 0.01, rel=1e-5)
    # ... while AdamW's decay is proportional to wd
    for wd in (1e-4, 1e-2, 1.0):
        w, _, _ = adamw_update(1.0, 0.0, 0.0, 0.0, 1, 0.01, wd)
        assert float(w) == pytest.approx(1.0 - 0.01 * wd, rel=1e-12)


UPDATE_ERRORS = [
    ("step", dict(step=0)), ("step", dict(step=1.5)), ("learning_rate", dict(learning_rate=-0.1)),
    ("learning_rate", dict(learning_rate=float("inf"))), ("beta_1", dict(beta_1=1.0)),
    ("beta_2", dict(beta_2=-0.1)), ("epsilon", dict(epsilon=-1e-7)),
]


@pytest.mark.parametrize(("name", "bad"), UPDATE_ERRORS, ids=[n for n, _ in UPDATE_ERRORS])
@pytest.mark.parametrize("update", ["adamw", "adam_l2"])
def test_update_parameters_out_of_range_are_value_errors_naming_them(update, name, bad):
    args = dict(w=np.ones(2), grad=np.ones(2), m=np.zeros(2), v=np.zeros(2), step=1, learning_rate=0.1)
    args.update(bad)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        if update == "adamw":
            adamw_update(**args, weight_decay=0.1)
        else:
            adam_l2_update(**args, l2=0.1)


def test_update_coefficients_and_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\bweight_decay\b"):
        adamw_update(1.0, 0.0, 0.0, 0.0, 1, 0.1, -1.0)
    with pytest.raises(ValueError, match=r"\bl2\b"):
        adam_l2_update(1.0, 0.0, 0.0, 0.0, 1, 0.1, float("nan"))
    with pytest.raises(ValueError, match="same shape"):
        adamw_update(np.ones(2), np.ones(3), np.zeros(2), np.zeros(2), 1, 0.1, 0.1)


# --- early stopping: against the real callback, driven by hand --------------------------

_MODEL = []


def keras_early_stopping(losses, patience, min_delta):
    """``(stop_epoch, best_epoch)`` as decided by ``keras.callbacks.EarlyStopping``."""
    if not _MODEL:
        _MODEL.append(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    model = _MODEL[0]
    model.stop_training = False
    cb = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta,
                                       restore_best_weights=True)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, loss in enumerate(losses):
        cb.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            break
    stopped = cb.stopped_epoch if model.stop_training else None
    return stopped, cb.best_epoch


# (TensorFlow flushes float32 subnormals to zero: no loss is that small in practice)
F32_LOSS = st.floats(0.0, 3.0, width=32, allow_subnormal=False)
LOSS = st.one_of(F32_LOSS, st.floats(1e-30, 3.0),                        # continuous values
                 st.integers(0, 12).map(lambda k: 1.0 + k / 16))        # a grid: ties and exact deltas
LOSSES = st.lists(LOSS, min_size=1, max_size=40)
DELTA = st.one_of(st.just(0.0), st.sampled_from([1 / 16, 1 / 8, 0.25]), st.floats(0.0, 0.5))


@settings(max_examples=300, deadline=None)
@given(LOSSES, st.integers(1, 8), DELTA)
def test_early_stopping_decides_as_the_keras_callback(losses, patience, min_delta):
    assert early_stopping(losses, patience, min_delta) == keras_early_stopping(losses, patience, min_delta)


@settings(max_examples=100, deadline=None)
@given(st.lists(F32_LOSS, min_size=1, max_size=30), st.integers(1, 5))
def test_early_stopping_on_float32_losses_with_near_ties(losses, patience):
    # values 1 ulp apart in float32 and 1e-9 apart in float64: Keras compares in float32
    losses = [x for v in losses for x in (v, v + 1e-9)]
    assert early_stopping(losses, patience) == keras_early_stopping(losses, patience, 0.0)


@PROPERTY
@given(LOSSES, st.integers(1, 8))
def test_early_stopping_properties(losses, patience):
    stop, best = early_stopping(losses, patience)
    end = len(losses) if stop is None else stop + 1
    # min_delta 0: the best loss up to the stop, compared in float32 as Keras does (two losses
    # 1 ulp apart in float64 are a tie, and the earlier one stays the best)
    assert np.float32(losses[best]) == np.float32(min(losses[:end]))
    if stop is not None:
        assert stop - best == patience and stop < len(losses)
    else:
        assert len(losses) - 1 - best < patience or len(losses) <= patience


def test_early_stopping_examples_and_edge_cases():
    assert early_stopping([1.0, 0.8, 0.7, 0.75, 0.72, 0.9, 0.6], patience=2) == (4, 2)
    assert early_stopping([1.0, 0.8, 0.7, 0.75, 0.72, 0.9, 0.6], patience=5) == (None, 6)
    assert early_stopping([0.5], patience=1) == (None, 0)
    assert early_stopping([1.0, 1.0, 1.0], patience=2) == (2, 0)       # a tie is no improvement
    assert early_stopping([2.0, 1.9999999999999996], patience=1) == (1, 0)  # a tie in float32, as in Keras
    assert early_stopping([1.0, 0.95, 0.9], patience=2, min_delta=0.1) == (2, 0)  # too small
    assert early_stopping(np.array([3.0, 2.0, 1.0]), patience=1) == (None, 2)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("patience", dict(patience=0)), ("patience", dict(patience=-1)), ("patience", dict(patience=1.5)),
    ("min_delta", dict(patience=1, min_delta=-0.1)), ("min_delta", dict(patience=1, min_delta=float("nan"))),
    ("min_delta", dict(patience=1, min_delta=float("inf"))),
])
def test_early_stopping_bad_parameters_are_value_errors_naming_them(name, kwargs):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        early_stopping([1.0, 0.5], **kwargs)


@pytest.mark.parametrize("bad", [[], np.zeros((2, 2)), 1.0])
def test_early_stopping_needs_a_non_empty_sequence_of_losses(bad):
    with pytest.raises(ValueError, match=r"\bval_losses\b"):
        early_stopping(bad, patience=1)


def test_plot_early_stopping_marks_the_restored_and_the_stopping_epoch():
    import matplotlib.pyplot as plt

    history = {"loss": [1.0, 0.5, 0.3, 0.2, 0.1, 0.05], "val_loss": [1.1, 0.7, 0.6, 0.65, 0.7, 0.8]}
    stop, best = early_stopping(history["val_loss"], patience=2)
    fig = nnh.plots.plot_early_stopping(history, stop, best, title="es")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "restored: weights after epoch 3" in labels and "stops after epoch 5" in labels
    assert (ax.get_title(), ax.get_xlabel(), ax.get_yscale()) == ("es", "epoch", "log")
    assert ax.get_ylabel()
    plt.close(fig)
    fig = nnh.plots.plot_early_stopping(history, None, 2)  # ran to the end: no stop line
    assert not any("stops" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    plt.close(fig)
