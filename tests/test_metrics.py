"""Tests of :mod:`nnh.metrics` (expected calibration error, reliability curve).

The reference is a brute-force transcription of Guo et al. (2017), eq. 3: a
plain Python loop over the bins ``(edges[m], edges[m+1]]`` and over the
examples.  Perfectly calibrated predictions are constructed exactly (each bin's
accuracy equals its confidence), so their ECE must be 0.
"""

from __future__ import annotations

import nnh  # noqa: F401

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnh import metrics
from nnh.metrics import (
    accuracy,
    bin_edges,
    expected_calibration_error,
    mean_confidence,
    reliability_curve,
)

PROPERTY = settings(max_examples=80, deadline=None)


def brute_force_ece(probs, labels, n_bins):
    """Guo et al. eq. 3, one bin and one example at a time (bin 0 also takes confidence 0)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    n = len(probs)
    total = 0.0
    for m in range(n_bins):
        lo, hi = edges[m], edges[m + 1]
        members = []
        for row, label in zip(probs, labels):
            confidence = max(row)
            if lo < confidence <= hi or (m == 0 and confidence == 0):
                predicted = list(row).index(confidence)  # the first maximum, like argmax
                members.append((confidence, predicted == label))
        if members:
            acc = sum(correct for _, correct in members) / len(members)
            conf = sum(c for c, _ in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


@st.composite
def predictions(draw, max_n=60, max_k=6):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, max_k))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["dirichlet", "peaked", "rounded"]))
    if kind == "dirichlet":
        probs = rng.dirichlet(np.ones(k) * draw(st.sampled_from([0.1, 1.0, 5.0])), size=n)
    elif kind == "peaked":  # confidences near 1, as a trained network gives
        logits = rng.normal(size=(n, k)) * 6
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
    else:  # confidences on round values, many of them exactly on bin edges
        probs = rng.dirichlet(np.ones(k), size=n).round(1)
        probs = np.clip(probs, 0, 1)
    labels = rng.integers(0, k, size=n)
    return probs, labels, draw(st.integers(1, 20))


@PROPERTY
@given(predictions())
def test_ece_matches_the_brute_force_loop(case):
    probs, labels, n_bins = case
    expected = brute_force_ece(probs.tolist(), labels.tolist(), n_bins)
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(expected, abs=1e-12)


@PROPERTY
@given(predictions())
def test_ece_is_in_unit_interval_and_a_python_float(case):
    probs, labels, n_bins = case
    before = probs.copy(), labels.copy()
    ece = expected_calibration_error(probs, labels, n_bins)
    np.testing.assert_array_equal(probs, before[0])
    np.testing.assert_array_equal(labels, before[1])
    assert type(ece) is float
    assert 0.0 <= ece <= 1.0


@PROPERTY
@given(predictions())
def test_one_bin_gives_the_gap_between_accuracy_and_mean_confidence(case):
    probs, labels, _ = case
    gap = abs(accuracy(probs, labels) - mean_confidence(probs))
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(gap, abs=1e-12)


@st.composite
def calibrated(draw):
    """Predictions whose accuracy equals their confidence exactly in every bin.

    Each group holds m examples predicted with confidence c = r/m for class 0,
    r of them labelled 0 (right) and m − r labelled 1 (wrong).  With K = 10
    classes every c >= 0.1 is the maximum of [c, (1−c)/9, …].
    """
    k = 10
    groups = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1,
                           max_size=6))
    rows, labels = [], []
    for m, r in groups:
        r = min(r, m)
        c = r / m
        if c < 1 / k:
            continue
        row = [c] + [(1 - c) / (k - 1)] * (k - 1)
        rows += [row] * m
        labels += [0] * r + [1] * (m - r)
    if not rows:
        rows, labels = [[1.0] + [0.0] * (k - 1)], [0]
    return np.array(rows), np.array(labels)


@PROPERTY
@given(calibrated(), st.integers(1, 20))
def test_ece_is_zero_for_perfectly_calibrated_predictions(case, n_bins):
    # groups with different confidences may share a bin; each is calibrated, so
    # the bin's accuracy is the average of the same confidences: still a zero gap
    probs, labels = case
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(0.0, abs=1e-12)


def test_known_values():
    # one right at 0.9 (gap 0.1), one wrong at 0.8 (gap 0.8), each weighing 1/2
    assert expected_calibration_error([[0.9, 0.1], [0.8, 0.2]], [0, 1], 10) == pytest.approx(0.45)
    # always right with confidence 0.6: under-confident by 0.4
    assert expected_calibration_error([[0.6, 0.4]] * 5, [0] * 5, 15) == pytest.approx(0.4)
    # always wrong with confidence 1: ECE is 1, the maximum
    assert expected_calibration_error([[0.0, 1.0]] * 3, [0] * 3, 15) == pytest.approx(1.0)


def test_bins_are_closed_on_the_right():
    # confidence exactly 0.5 belongs to (0, 0.5], not (0.5, 1]
    curve = reliability_curve([[0.5, 0.5], [0.75, 0.25]], [0, 0], n_bins=2)
    np.testing.assert_array_equal(curve.count, [1, 1])
    np.testing.assert_allclose(curve.confidence, [0.5, 0.75])
    # 1.0 is in the last bin, and an all-zero row (confidence 0) in the first
    curve = reliability_curve([[1.0, 0.0], [0.0, 0.0]], [0, 1], n_bins=4)
    np.testing.assert_array_equal(curve.count, [1, 0, 0, 1])


@PROPERTY
@given(predictions())
def test_reliability_curve_bins(case):
    probs, labels, n_bins = case
    curve = reliability_curve(probs, labels, n_bins)
    np.testing.assert_allclose(curve.edges, np.linspace(0, 1, n_bins + 1))
    assert curve.count.sum() == len(probs) and curve.count.dtype.kind == "i"
    empty = curve.count == 0
    assert np.all(np.isnan(curve.confidence[empty])) and np.all(np.isnan(curve.accuracy[empty]))
    filled = ~empty
    lo, hi = curve.edges[:-1][filled], curve.edges[1:][filled]
    conf = curve.confidence[filled]
    assert np.all((conf > lo - 1e-12) | (lo == 0)) and np.all(conf <= hi + 1e-12)
    assert np.all((curve.accuracy[filled] >= 0) & (curve.accuracy[filled] <= 1))
    # the ECE is the count-weighted mean gap of the curve
    weighted = np.sum(curve.count[filled] * np.abs(curve.accuracy[filled] - conf)) / len(probs)
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(weighted, abs=1e-12)


def test_mean_confidence_and_accuracy():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    assert mean_confidence(probs) == pytest.approx((0.7 + 0.8 + 0.4) / 3)
    assert accuracy(probs, np.array([0, 2, 0])) == pytest.approx(2 / 3)
    assert type(mean_confidence(probs)) is float and type(accuracy(probs, [0, 1, 2])) is float


def test_bin_edges():
    np.testing.assert_allclose(bin_edges(4), [0, 0.25, 0.5, 0.75, 1])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: expected_calibration_error([[0.6, 0.4]], [0], n_bins=0), "n_bins"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [0], n_bins=-3), "n_bins"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [0], n_bins=2.5), "n_bins"),
        (lambda: reliability_curve([[0.6, 0.4]], [0], n_bins=0), "n_bins"),
        (lambda: expected_calibration_error([0.6, 0.4], [0, 1]), "probs"),
        (lambda: expected_calibration_error(np.zeros((2, 2, 2)), [0, 1]), "probs"),
        (lambda: expected_calibration_error(np.zeros((0, 3)), np.zeros(0, int)), "probs"),
        (lambda: expected_calibration_error([[1.5, -0.5]], [0]), "probs"),
        (lambda: expected_calibration_error([[np.nan, 0.5]], [0]), "probs"),
        (lambda: expected_calibration_error([[0.6, 0.4], [0.5, 0.5]], [0]), "labels"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [0, 1]), "labels"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [2]), "labels"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [-1]), "labels"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [0.0]), "labels"),
        (lambda: expected_calibration_error([[0.6, 0.4]], [[0]]), "labels"),
        (lambda: mean_confidence([0.2, 0.8]), "probs"),
    ],
)
def test_errors_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_module_exports():
    for name in metrics.__all__:
        assert hasattr(metrics, name)


def test_reliability_diagram_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50)
    labels = rng.integers(0, 3, 50)
    fig = nnh.plots.plot_reliability_diagrams({"a": (probs, labels), "b": (probs, labels)},
                                               n_bins=5, title="diagrams")
    assert fig._suptitle.get_text() == "diagrams" and len(fig.axes) == 2
    ece = expected_calibration_error(probs, labels, 5)
    assert f"ECE = {ece:.3f}" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    plt.close("all")


def test_negative_log_likelihood_matches_keras_crossentropy():
    import keras

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=64)
    labels = rng.integers(0, 10, size=64)
    expected = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs.astype("float32")))
    assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(expected, rel=1e-5)
    assert metrics.negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-12))
    with pytest.raises(ValueError, match="labels must be class ids"):
        metrics.negative_log_likelihood(probs, labels + 10)


# --- proper scoring rules and temperature scaling -----------------------------------------


@PROPERTY
@given(predictions())
def test_brier_score_matches_sklearn_and_a_direct_loop(case):
    from sklearn.metrics import brier_score_loss

    probs, labels, _ = case
    k = probs.shape[1]
    loop = sum(sum((p - (c == y)) ** 2 for c, p in enumerate(row)) for row, y in zip(probs.tolist(), labels))
    assert metrics.brier_score(probs, labels) == pytest.approx(loop / len(probs), abs=1e-12)
    if k >= 2 and np.allclose(probs.sum(axis=1), 1):  # sklearn wants probability rows
        expected = brier_score_loss(labels, probs, labels=np.arange(k), scale_by_half=False)
        assert metrics.brier_score(probs, labels) == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= metrics.brier_score(probs, labels) <= 2.0


def test_brier_score_known_values():
    assert metrics.brier_score([[1.0, 0.0]], [0]) == 0.0  # certain and right
    assert metrics.brier_score([[0.0, 1.0]], [0]) == 2.0  # certain and wrong: the maximum
    assert metrics.brier_score([[0.1] * 10], [3]) == pytest.approx(0.9 ** 2 + 9 * 0.01)  # uniform
    assert type(metrics.brier_score([[1.0, 0.0]], [0])) is float


logit_arrays = st.builds(
    lambda n, k, scale, seed: np.random.default_rng(seed).normal(size=(n, k)) * scale,
    st.integers(1, 40), st.integers(1, 8), st.sampled_from([0.01, 1.0, 10.0, 300.0]), st.integers(0, 2**32 - 1))


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")  # Keras on K = 1
@PROPERTY
@given(logit_arrays, st.floats(0.05, 20.0))
def test_softmax_matches_scipy_and_keras(z, temperature):
    import keras
    from scipy.special import softmax as scipy_softmax

    p = metrics.softmax(z, temperature)
    np.testing.assert_allclose(p, scipy_softmax(z / temperature, axis=1), rtol=1e-10, atol=1e-300)
    q = keras.ops.convert_to_numpy(keras.ops.softmax(z.astype("float32") / np.float32(temperature), axis=-1))
    np.testing.assert_allclose(p, q, rtol=2e-5, atol=1e-6)  # Keras in float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # a constant per row changes nothing, so log p is a logit vector of p
    np.testing.assert_allclose(metrics.softmax(z + np.arange(len(z))[:, None] * 7.5, temperature), p,
                               rtol=1e-9, atol=1e-300)
    # the temperature never changes the order inside a row
    np.testing.assert_array_equal(p.argmax(axis=1), z.argmax(axis=1))


def reference_nll(z, y, log_t):
    """Mean NLL of softmax(z / T), via scipy's log_softmax (independent of nnh)."""
    from scipy.special import log_softmax

    return float(-np.mean(log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(y)), y]))


def reference_minimum(z, y, lo, hi):
    """The lowest NLL that scipy.optimize.minimize_scalar finds over log T in [lo, hi]
    (unbounded Brent from the best point of a grid, and bounded search), and the grid."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(lo, hi, 401)
    values = [reference_nll(z, y, t) for t in grid]
    best = [min(values)]
    i = int(np.argmin(values))
    if 0 < i < len(grid) - 1:
        r = minimize_scalar(lambda t: reference_nll(z, y, t), bracket=(grid[i - 1], grid[i], grid[i + 1]),
                            method="brent", tol=1e-12)
        if lo <= r.x <= hi:
            best.append(r.fun)
    r = minimize_scalar(lambda t: reference_nll(z, y, t), bounds=(lo, hi), method="bounded",
                        options={"xatol": 1e-12})
    best.append(r.fun)
    return min(best)


@st.composite
def calibration_problems(draw):
    """Logits of a model that is over-confident (scale > 1), under-confident (< 1) or
    calibrated (1): labels drawn from softmax(true logits), the model's logits are
    scale × true logits plus noise, shifted by an arbitrary constant per row."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, k = draw(st.integers(2, 300)), draw(st.integers(2, 10))
    true = rng.normal(size=(n, k)) * draw(st.sampled_from([0.3, 1.0, 3.0, 8.0]))
    p = np.exp(true - true.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(k, p=row) for row in p])
    scale = draw(st.sampled_from([0.05, 0.3, 1.0, 2.5, 10.0]))
    z = scale * true + draw(st.sampled_from([0.0, 0.5])) * rng.normal(size=(n, k))
    z += rng.normal(size=(n, 1)) * 100  # a shift per row changes no probability
    return z, labels


@settings(max_examples=120, deadline=None)
@given(calibration_problems())
def test_fit_temperature_reaches_scipys_minimum(case):
    z, y = case
    lo, hi = np.log(1e-3), np.log(1e3)
    t = metrics.fit_temperature(z, y)
    assert type(t) is float and 1e-3 <= t <= 1e3
    assert reference_nll(z, y, np.log(t)) <= reference_minimum(z, y, lo, hi) + 1e-6


def test_fit_temperature_recovers_the_scale_of_a_miscalibrated_model():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(20000, 10)) * 2
    p = metrics.softmax(true)
    y = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)  # one draw per row
    for scale in (0.5, 1.0, 2.0, 4.0):  # under-confident, calibrated, over-confident
        assert metrics.fit_temperature(scale * true, y) == pytest.approx(scale, rel=0.05)
    # and the fitted temperature scales with the logits
    t = metrics.fit_temperature(true, y)
    assert metrics.fit_temperature(3 * true, y) == pytest.approx(3 * t, rel=1e-6)


def test_fit_temperature_lowers_the_nll_and_keeps_the_argmax():
    rng = np.random.default_rng(2)
    true = rng.normal(size=(2000, 10)) * 2
    y = (metrics.softmax(true).cumsum(axis=1) > rng.random((2000, 1))).argmax(axis=1)
    z = 3 * true
    t = metrics.fit_temperature(z, y)
    before, after = metrics.softmax(z), metrics.softmax(z, t)
    assert metrics.negative_log_likelihood(after, y) < metrics.negative_log_likelihood(before, y)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    assert metrics.accuracy(after, y) == metrics.accuracy(before, y)


def test_fit_temperature_at_the_edges():
    # every true logit strictly largest: the NLL falls as T -> 0, so the lower bound
    z = np.array([[3.0, 0.0, 1.0], [0.0, 2.0, -1.0]])
    assert metrics.fit_temperature(z, [0, 1]) == pytest.approx(1e-3)
    assert metrics.fit_temperature(z, [0, 1], bounds=(0.1, 10)) == pytest.approx(0.1)
    # true logits always the lowest: the NLL falls towards log K as T -> inf, so the upper bound
    assert metrics.fit_temperature(z, [1, 2]) == pytest.approx(1e3)
    # equal logits: every T gives log K; any T in the bounds is a minimiser
    t = metrics.fit_temperature(np.zeros((4, 3)), [0, 1, 2, 0])
    assert 1e-3 <= t <= 1e3
    # a single class: the NLL is 0 for every T
    assert 1e-3 <= metrics.fit_temperature(np.zeros((3, 1)), [0, 0, 0]) <= 1e3


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [0, 1]), "labels"),
        (lambda: metrics.fit_temperature([[0.0, 1.0], [1.0, 0.0]], [0]), "labels"),
        (lambda: metrics.fit_temperature([0.0, 1.0], [0, 1]), "logits"),
        (lambda: metrics.fit_temperature(np.zeros((2, 2, 2)), [0, 1]), "logits"),
        (lambda: metrics.fit_temperature(np.zeros((0, 3)), np.zeros(0, int)), "logits"),
        (lambda: metrics.fit_temperature([[np.inf, 0.0]], [0]), "logits"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [2]), "labels"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [-1]), "labels"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [0.5]), "labels"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [[0]]), "labels"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [0], bounds=(0, 1)), "bounds"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [0], bounds=(2, 1)), "bounds"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [0], bounds=(1, np.inf)), "bounds"),
        (lambda: metrics.fit_temperature([[0.0, 1.0]], [0], bounds=3), "bounds"),
        (lambda: metrics.softmax([[0.0, 1.0]], temperature=0), "temperature"),
        (lambda: metrics.softmax([[0.0, 1.0]], temperature=-1.0), "temperature"),
        (lambda: metrics.softmax([0.0, 1.0]), "logits"),
        (lambda: metrics.brier_score([[0.6, 0.4]], [0, 1]), "labels"),
        (lambda: metrics.brier_score([[1.5, -0.5]], [0]), "probs"),
        (lambda: metrics.brier_score([0.6, 0.4], [0]), "probs"),
    ],
)
def test_calibration_errors_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
