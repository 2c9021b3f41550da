"""Tests of :mod:`nnh.dropout` against Keras' own ``Dropout`` and exact statistics.

Dropout is random, so most checks are statistical: a count of kept (or
dropped) entries must lie inside the central interval of its binomial
distribution that holds with probability ``1 - 1e-8`` (exact quantiles from
:mod:`scipy.stats`), so a correct implementation fails a single check with
probability below 1e-8 and this whole file (a few hundred checks) below 1e-6.
A wrong keep probability, a missing scale or a mask shared between examples
is far outside these bounds.
"""

from __future__ import annotations

import math

import nnh  # noqa: F401  (configures TensorFlow quietly before Keras is used)

import keras
import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nnh import dropout as dropout_module
from nnh import plots
from nnh.dropout import (
    InvertedDropout,
    count_subnetworks,
    dropout_mask,
    inverted_dropout,
    mc_dropout_predict,
    mc_summary,
    predictive_entropy,
)

matplotlib.use("Agg")

PROPERTY = settings(max_examples=40, deadline=None)
FAILURE = 1e-8  # two-sided probability that one correct count falls outside its interval

RATES = st.one_of(st.sampled_from([0.0, 0.1, 0.5, 0.9]), st.floats(0.0, 0.99, exclude_max=True))
SEEDS = st.integers(0, 2**32 - 1)


def assert_binomial(count, n, p, what):
    """``count ~ Binomial(n, p)``: inside the central ``1 - FAILURE`` interval."""
    low = stats.binom.ppf(FAILURE / 2, n, p)
    high = stats.binom.isf(FAILURE / 2, n, p)
    assert low <= count <= high, (
        f"{what}: {count} of {n} (expected {n * p:.1f}, allowed [{low:.0f}, {high:.0f}])"
    )


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_inverted(out, x, rate, rtol):
    """Every entry is 0 or ``x / (1 - rate)``; returns the boolean mask of dropped entries."""
    out = np.asarray(out, dtype=np.float64)
    expected = np.asarray(x, dtype=np.float64) / (1.0 - rate)
    dropped = out == 0
    kept_ok = np.isclose(out, expected, rtol=rtol, atol=0)
    assert np.all(dropped | kept_ok), f"entries neither 0 nor x/(1-rate): {out[~(dropped | kept_ok)][:5]}"
    return dropped


# --- 1. against keras.layers.Dropout --------------------------------------------------

KERAS_RATES = [0.1, 0.25, 0.5, 0.8]
FLOAT32_RTOL = 3e-7  # x * (1/(1-rate)) (Keras) vs x / (1-rate): within 2 float32 ulps


@pytest.mark.parametrize("rate", KERAS_RATES)
def test_numpy_inverted_dropout_has_the_statistics_of_keras_dropout(rate):
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(300, 200)).astype(np.float32)
    theirs = to_numpy(keras.layers.Dropout(rate, seed=1)(x, training=True))
    ours = inverted_dropout(x, rate, np.random.default_rng(1))
    for name, out in (("keras.layers.Dropout", theirs), ("nnh inverted_dropout", ours)):
        assert out.shape == x.shape and out.dtype == np.float32
        dropped = assert_inverted(out, x, rate, FLOAT32_RTOL)
        assert_binomial(int(dropped.sum()), x.size, rate, f"dropped entries of {name}({rate})")
    # at inference both are the identity
    np.testing.assert_array_equal(to_numpy(keras.layers.Dropout(rate)(x, training=False)), x)
    np.testing.assert_array_equal(inverted_dropout(x, rate, np.random.default_rng(2), training=False), x)


@pytest.mark.parametrize("rate", KERAS_RATES)
def test_inverted_dropout_layer_has_the_statistics_of_keras_dropout(rate):
    x = np.random.default_rng(3).uniform(-2.0, 2.0, size=(250, 240)).astype(np.float32)
    x[x == 0] = 1.0  # a zero input would look dropped
    theirs, ours = keras.layers.Dropout(rate, seed=4), InvertedDropout(rate, seed=4)
    for name, layer in (("keras.layers.Dropout", theirs), ("InvertedDropout", ours)):
        first = to_numpy(layer(x, training=True))
        assert first.shape == x.shape and first.dtype == np.float32
        dropped = assert_inverted(first, x, rate, FLOAT32_RTOL)
        assert_binomial(int(dropped.sum()), x.size, rate, f"dropped entries of {name}({rate})")
        # per example (row) and per unit (column) the drop counts are binomial too
        assert_binomial(int(dropped[0].sum()), x.shape[1], rate, f"{name}: dropped units of example 0")
        assert_binomial(int(dropped[:, 0].sum()), x.shape[0], rate, f"{name}: drops of unit 0")
        for training in (False, None):
            np.testing.assert_array_equal(to_numpy(layer(x, training=training)), x)


def test_both_layers_scale_ones_to_exactly_two_at_rate_one_half():
    x = np.ones((4, 64), dtype=np.float32)
    for layer in (keras.layers.Dropout(0.5, seed=0), InvertedDropout(0.5, seed=0)):
        values = set(np.unique(to_numpy(layer(x, training=True))).tolist())
        assert values == {0.0, 2.0}


# --- 2. properties of the NumPy functions ------------------------------------------------


@PROPERTY
@given(rate=RATES, seed=SEEDS)
def test_mask_keeps_each_entry_with_probability_one_minus_rate(rate, seed):
    mask = dropout_mask((200, 60), rate, np.random.default_rng(seed))
    assert_binomial(int(mask.sum()), mask.size, 1.0 - rate, f"kept entries at rate {rate}")
    if rate == 0:
        assert mask.all()


@PROPERTY
@given(rate=st.floats(0.05, 0.95), seed=SEEDS)
def test_mask_entries_are_independent(rate, seed):
    mask = dropout_mask((20_000, 2), rate, np.random.default_rng(seed))
    left, right = mask[:, 0], mask[:, 1]
    # P(both kept) = (1 - rate)^2 if the two halves are independent
    assert_binomial(int((left & right).sum()), len(left), (1 - rate) ** 2, "entries kept in both halves")
    # neighbouring examples do not share a decision either
    assert_binomial(int((left[1:] == left[:-1]).sum()), len(left) - 1,
                    rate**2 + (1 - rate) ** 2, "consecutive examples with the same decision")


@PROPERTY
@given(rate=st.floats(0.05, 0.9), seed=SEEDS,
       x=st.lists(st.floats(-5, 5).filter(lambda v: abs(v) > 1e-3), min_size=1, max_size=6))
def test_inverted_dropout_preserves_the_expectation(rate, seed, x):
    x = np.array(x)
    draws = 20_000
    out = inverted_dropout(np.broadcast_to(x, (draws, len(x))), rate, np.random.default_rng(seed))
    assert_inverted(out, np.broadcast_to(x, out.shape), rate, 1e-12)
    # the mean is x * (number kept) / (draws * (1 - rate)): check the count exactly
    kept = (out != 0).sum(axis=0)
    for k in kept:
        assert_binomial(int(k), draws, 1 - rate, "kept draws of one entry")
    std = np.abs(x) * math.sqrt(rate / (1 - rate) / draws)
    assert np.all(np.abs(out.mean(axis=0) - x) <= 6.5 * std)


@PROPERTY
@given(rate=RATES, seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64]),
       shape=st.sampled_from([(5,), (3, 4), (2, 3, 4), (0, 3), ()]))
def test_inverted_dropout_shape_dtype_and_values(rate, seed, dtype, shape):
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    before = x.copy()
    out = inverted_dropout(x, rate, np.random.default_rng(seed))
    assert isinstance(out, np.ndarray) and out.shape == x.shape and out.dtype == dtype
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)  # not modified in place
    mask = dropout_mask(shape, rate, np.random.default_rng(seed))  # the same draws
    np.testing.assert_allclose(out, np.where(mask, x.astype(np.float64) / (1 - rate), 0.0),
                               rtol=3e-7 if dtype == np.float32 else 1e-15)


@PROPERTY
@given(rate=RATES, seed=SEEDS)
def test_inference_and_rate_zero_are_the_identity(rate, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(7, 5))
    before = x.copy()
    for out in (inverted_dropout(x, rate, rng, training=False),
                inverted_dropout(x, 0.0, rng, training=True),
                inverted_dropout(x, 0, rng)):
        np.testing.assert_array_equal(out, x)
        assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(before, x)


@PROPERTY
@given(rate=RATES, seed=SEEDS)
def test_same_seed_same_result_and_fresh_masks_per_call(rate, seed):
    x = np.ones((40, 50))
    a = inverted_dropout(x, rate, np.random.default_rng(seed))
    b = inverted_dropout(x, rate, np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dropout_mask((9, 9), rate, np.random.default_rng(seed)),
                                  dropout_mask((9, 9), rate, np.random.default_rng(seed)))
    if rate >= 0.05:  # two masks of 2,000 entries coincide with negligible probability
        rng = np.random.default_rng(seed)
        assert not np.array_equal(inverted_dropout(x, rate, rng), inverted_dropout(x, rate, rng))


def test_integer_and_list_inputs_give_float64():
    rng = np.random.default_rng(0)
    for x in ([1, 2, 3], np.arange(6).reshape(2, 3), np.array([True, False])):
        out = inverted_dropout(x, 0.5, rng)
        assert out.dtype == np.float64 and out.shape == np.shape(x)
        assert inverted_dropout(x, 0.5, rng, training=False).dtype == np.float64


def test_mask_contract_details():
    rng = np.random.default_rng(0)
    assert dropout_mask(5, 0.5, rng).shape == (5,)
    assert dropout_mask((), 0.5, rng).shape == ()
    assert dropout_mask((2, 0), 0.5, rng).shape == (2, 0)
    assert dropout_mask([np.int64(2), 3], 0.5, rng).shape == (2, 3)
    assert dropout_mask((3, 3), 0.5, rng).dtype == bool
    # the mask is rng.random(shape) >= rate: reproducible from the generator's stream
    np.testing.assert_array_equal(dropout_mask((4, 6), 0.3, np.random.default_rng(7)),
                                  np.random.default_rng(7).random((4, 6)) >= 0.3)


# --- 3. the Keras layer ------------------------------------------------------------------


def small_model(with_dropout=True, rate=0.5, seed=1):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((8,)), keras.layers.Dense(16, activation="relu")]
    if with_dropout:
        layers.append(InvertedDropout(rate, seed=seed, name="drop"))
    layers.append(keras.layers.Dense(3, activation="softmax"))
    return keras.Sequential(layers)


def toy_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)


def test_layer_trains_inside_fit_and_drops_there():
    x, y = toy_data()
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    losses = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    # with learning rate 0, a sum of 1,000 inputs is exact without dropout and noisy with it
    probe = keras.Sequential([keras.Input((1000,)), InvertedDropout(0.5, seed=2),
                              keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)])
    probe.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    ones, target = np.ones((64, 1000), np.float32), np.full((64, 1), 1000.0, np.float32)
    assert probe.fit(ones, target, epochs=1, batch_size=16, verbose=0).history["loss"][-1] > 100
    assert probe.evaluate(ones, target, verbose=0) < 1e-6


def test_predict_is_the_model_without_the_layer():
    x, _ = toy_data()
    with_layer, without = small_model(True), small_model(False)
    without.set_weights(with_layer.get_weights())
    first = with_layer.predict(x, verbose=0)
    np.testing.assert_array_equal(first, with_layer.predict(x, verbose=0))
    np.testing.assert_allclose(first, without.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(to_numpy(with_layer(x)), to_numpy(with_layer(x, training=False)))


def test_training_calls_draw_fresh_masks_and_seed_reproduces_them():
    x = np.ones((30, 40), np.float32)
    layer = InvertedDropout(0.5, seed=11)
    first, second = to_numpy(layer(x, training=True)), to_numpy(layer(x, training=True))
    assert not np.array_equal(first, second)
    twin = InvertedDropout(0.5, seed=11)
    np.testing.assert_array_equal(first, to_numpy(twin(x, training=True)))
    np.testing.assert_array_equal(second, to_numpy(twin(x, training=True)))
    other = to_numpy(InvertedDropout(0.5, seed=12)(x, training=True))
    assert not np.array_equal(first, other)


def test_layer_edge_cases():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    np.testing.assert_array_equal(to_numpy(InvertedDropout(0.0)(x, training=True)), x)
    symbolic = InvertedDropout(0.3)(keras.Input((5, 7)))
    assert tuple(symbolic.shape) == (None, 5, 7)
    assert InvertedDropout(0.3).compute_output_shape((None, 4)) == (None, 4)
    out64 = InvertedDropout(0.5, seed=0, dtype="float64")(x.astype(np.float64), training=True)
    assert keras.backend.standardize_dtype(out64.dtype) == "float64"
    assert_inverted(to_numpy(out64), x, 0.5, 1e-15)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside Keras' saver
def test_get_config_from_config_and_keras_save_load(tmp_path):
    layer = InvertedDropout(0.25, seed=3, name="drop")
    config = layer.get_config()
    assert config["rate"] == 0.25 and config["seed"] == 3 and config["name"] == "drop"
    assert "trainable" in config and "dtype" in config  # the base layer's config is kept
    copy = InvertedDropout.from_config(config)
    assert (copy.rate, copy.seed, copy.name) == (0.25, 3, "drop")
    assert keras.saving.get_registered_name(InvertedDropout) == "nnh>InvertedDropout"

    x, y = toy_data()
    model = small_model(rate=0.4, seed=5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the class is registered
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    reloaded = loaded.get_layer("drop")
    assert isinstance(reloaded, InvertedDropout) and (reloaded.rate, reloaded.seed) == (0.4, 5)
    hidden = np.abs(np.random.default_rng(1).normal(size=(50, 16))).astype(np.float32) + 0.1
    dropped = assert_inverted(to_numpy(reloaded(hidden, training=True)), hidden, 0.4, FLOAT32_RTOL)
    assert 0 < dropped.sum() < dropped.size


# --- 4. count_subnetworks --------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 10, 64, 512, 1000, 4096])
def test_count_subnetworks_is_an_exact_power_of_two(n):
    count = count_subnetworks(n)
    assert type(count) is int and count == 2**n
    assert count.bit_length() == n + 1


def test_count_subnetworks_known_values_and_numpy_ints():
    assert count_subnetworks(0) == 1
    assert count_subnetworks(3) == 8
    assert count_subnetworks(np.int64(20)) == 1_048_576
    assert count_subnetworks(2**4) == 65_536
    assert count_subnetworks(1000) == int("1" + "0" * 1000, 2)
    assert type(count_subnetworks(np.int32(5))) is int


@PROPERTY
@given(st.integers(0, 3000))
def test_count_subnetworks_doubles_with_each_unit(n):
    assert count_subnetworks(n + 1) == 2 * count_subnetworks(n)
    assert count_subnetworks(n) == math.prod([2] * n)


# --- 5. Monte-Carlo dropout ---------------------------------------------------------------


def test_mc_dropout_predict_stacks_training_passes():
    x, _ = toy_data()
    model = small_model(rate=0.5, seed=9)
    probs = mc_dropout_predict(model, x[:10], n_samples=7, seed=0)
    assert probs.shape == (7, 10, 3)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-5)
    assert not np.array_equal(probs[0], probs[1])  # each pass draws its own masks
    np.testing.assert_array_equal(probs, mc_dropout_predict(model, x[:10], n_samples=7, seed=0))
    assert not np.array_equal(probs, mc_dropout_predict(model, x[:10], n_samples=7, seed=1))
    batched = mc_dropout_predict(model, x[:10], n_samples=3, seed=0, batch_size=4)
    assert batched.shape == (3, 10, 3)
    np.testing.assert_allclose(batched.sum(axis=2), 1.0, rtol=1e-5)


def test_mc_dropout_predict_uses_training_true_and_restores_the_generators():
    # a "model" that is only the dropout layer: every pass is 0 or x / (1 - rate)
    layer_model = keras.Sequential([keras.Input((50,)), InvertedDropout(0.3, seed=4)])
    x = np.full((6, 50), 2.0, np.float32)
    states = [v.numpy().copy() for v in layer_model.variables if v.name == "seed_generator_state"]
    assert states, "the layer's SeedGenerator state is a model variable"
    probs = mc_dropout_predict(layer_model, x, n_samples=20, seed=3)
    dropped = assert_inverted(probs, np.broadcast_to(x, probs.shape), 0.3, FLOAT32_RTOL)
    assert_binomial(int(dropped.sum()), dropped.size, 0.3, "entries dropped over the passes")
    after = [v.numpy() for v in layer_model.variables if v.name == "seed_generator_state"]
    for a, b in zip(states, after):
        np.testing.assert_array_equal(a, b)
    # without a seed the generators advance: two calls differ
    a = mc_dropout_predict(layer_model, x, n_samples=2)
    b = mc_dropout_predict(layer_model, x, n_samples=2)
    assert not np.array_equal(a, b)


def test_mc_dropout_without_dropout_repeats_the_deterministic_prediction():
    x, _ = toy_data()
    model = small_model(with_dropout=False)
    probs = mc_dropout_predict(model, x, n_samples=4, seed=0)
    for p in probs:
        np.testing.assert_allclose(p, model.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


@PROPERTY
@given(seed=SEEDS, t=st.integers(1, 8), n=st.integers(1, 6), k=st.integers(2, 5))
def test_mc_summary_matches_a_loop(seed, t, n, k):
    probs = np.random.default_rng(seed).dirichlet(np.ones(k), size=(t, n))
    summary = mc_summary(probs)
    for i in range(n):
        mean = [sum(probs[s, i, c] for s in range(t)) / t for c in range(k)]
        np.testing.assert_allclose(summary.mean[i], mean, rtol=1e-12)
        best = int(np.argmax(mean))
        assert summary.predicted[i] == best
        chosen = [probs[s, i, best] for s in range(t)]
        spread = math.sqrt(sum((v - sum(chosen) / t) ** 2 for v in chosen) / t)
        assert summary.spread[i] == pytest.approx(spread, rel=1e-9, abs=1e-12)
        agree = sum(int(np.argmax(probs[s, i])) == best for s in range(t)) / t
        assert summary.agreement[i] == pytest.approx(agree)


def test_mc_dropout_predict_contract_defaults_to_30_passes_with_dropout_on():
    # issue 15: mc_dropout_predict(model, x, n_samples=30) -> (n_samples, N, K) float array
    x, _ = toy_data()
    model = small_model(rate=0.5, seed=3)
    probs = mc_dropout_predict(model, x[:5])
    assert probs.shape == (30, 5, 3) and probs.dtype.kind == "f"
    assert len({p.tobytes() for p in probs}) == 30  # every pass has its own masks
    assert not np.allclose(probs[0], model.predict(x[:5], verbose=0))
    with pytest.raises(ValueError, match=r"\bn_samples\b"):
        mc_dropout_predict(model, x[:5], -3)


def test_mc_dropout_without_dropout_gives_identical_passes_equal_to_predict():
    x, _ = toy_data()
    model = small_model(with_dropout=False)
    probs = mc_dropout_predict(model, x, 5)
    for p in probs[1:]:
        np.testing.assert_array_equal(p, probs[0])
    np.testing.assert_allclose(probs[0], model.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


@PROPERTY
@given(seed=SEEDS, t=st.integers(1, 8), n=st.integers(1, 6), k=st.integers(1, 6),
       concentration=st.sampled_from([0.05, 1.0, 20.0]))
def test_predictive_entropy_is_scipy_entropy_of_the_mean_and_bounded(seed, t, n, k, concentration):
    samples = np.random.default_rng(seed).dirichlet(np.full(k, concentration), size=(t, n))
    h = predictive_entropy(samples)
    assert h.shape == (n,) and h.dtype == np.float64
    np.testing.assert_allclose(h, stats.entropy(samples.mean(axis=0), axis=1), rtol=1e-10, atol=1e-12)
    assert np.all(h >= 0) and np.all(h <= np.log(k) + 1e-12)


def test_predictive_entropy_edge_cases():
    one_hot = np.eye(4)[None, [0, 2]]  # T=1, N=2: 0·log 0 counts as 0
    np.testing.assert_array_equal(predictive_entropy(one_hot), [0.0, 0.0])
    uniform = np.full((3, 2, 5), 0.2)
    np.testing.assert_allclose(predictive_entropy(uniform), np.log(5), rtol=1e-12)
    disagree = np.stack([np.eye(4)[[0]], np.eye(4)[[1]]])  # two confident passes, two classes
    np.testing.assert_allclose(predictive_entropy(disagree), [np.log(2)], rtol=1e-12)
    assert predictive_entropy(np.eye(3)[None, [1]].astype(np.float32)).tolist() == [0.0]
    assert predictive_entropy(np.zeros((2, 0, 3))).shape == (0,)


@pytest.mark.parametrize("samples", [np.full((2, 3), 0.5), np.full((2, 1, 2, 2), 0.5), np.zeros((0, 2, 3)),
                                     np.zeros((2, 2, 0)), np.full((1, 1, 2), 0.7), np.array([[[1.5, -0.5]]]),
                                     np.array([[[np.nan, 1.0]]])],
                         ids=["2-D", "4-D", "no pass", "no class", "sum 1.4", "outside [0, 1]", "nan"])
def test_predictive_entropy_rejects_what_is_not_probabilities(samples):
    with pytest.raises(ValueError, match=r"\bsamples\b"):
        predictive_entropy(samples)


def test_mc_summary_of_identical_passes_has_no_spread():
    probs = np.tile(np.array([[0.2, 0.8], [0.6, 0.4]]), (5, 1, 1))
    summary = mc_summary(probs)
    np.testing.assert_array_equal(summary.spread, 0.0)
    np.testing.assert_array_equal(summary.agreement, 1.0)
    np.testing.assert_array_equal(summary.predicted, [1, 0])


# --- 6. errors name the offending parameter ----------------------------------------------

BAD_RATES = [-0.1, -1e-9, 1.0, 1.5, float("nan"), float("inf"), True]


@pytest.mark.parametrize("rate", BAD_RATES, ids=repr)
def test_bad_rate_raises_value_error_naming_rate(rate):
    rng = np.random.default_rng(0)
    for call in (lambda: dropout_mask((3,), rate, rng),
                 lambda: inverted_dropout(np.ones(3), rate, rng),
                 lambda: inverted_dropout(np.ones(3), rate, rng, training=False),
                 lambda: InvertedDropout(rate)):
        with pytest.raises(ValueError, match=r"\brate\b"):
            call()


@pytest.mark.parametrize("rate", ["0.5", None, [0.5]], ids=repr)
def test_non_numeric_rate_raises_type_error_naming_rate(rate):
    with pytest.raises(TypeError, match=r"\brate\b"):
        dropout_mask((3,), rate, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"\brate\b"):
        InvertedDropout(rate)


@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0), np.random],
                         ids=["None", "int", "RandomState", "numpy.random module"])
def test_bad_rng_raises_type_error_naming_rng(rng):
    with pytest.raises(TypeError, match=r"\brng\b"):
        dropout_mask((3,), 0.5, rng)
    with pytest.raises(TypeError, match=r"\brng\b"):
        inverted_dropout(np.ones(3), 0.5, rng)


@pytest.mark.parametrize(("shape", "error"), [(-1, ValueError), ((3, -2), ValueError),
                                              (2.5, TypeError), ((2, 1.5), TypeError),
                                              ("3", TypeError), ((True, 2), TypeError)], ids=repr)
def test_bad_shape_raises_naming_shape(shape, error):
    with pytest.raises(error, match=r"\bshape\b"):
        dropout_mask(shape, 0.5, np.random.default_rng(0))


def test_non_numeric_x_raises_naming_x():
    with pytest.raises(TypeError, match=r"\bx\b"):
        inverted_dropout(np.array(["a", "b"]), 0.5, np.random.default_rng(0))


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                             (True, TypeError)], ids=repr)
def test_bad_seed_raises_naming_seed(seed, error):
    with pytest.raises(error, match=r"\bseed\b"):
        InvertedDropout(0.5, seed=seed)


@pytest.mark.parametrize(("n_units", "error"), [(-1, ValueError), (-100, ValueError),
                                                (np.int64(-3), ValueError), (2.5, ValueError),
                                                (3.0, ValueError), (True, ValueError),
                                                (False, ValueError), ("3", TypeError),
                                                (None, TypeError)], ids=repr)
def test_bad_n_units_raises_naming_n_units(n_units, error):
    with pytest.raises(error, match=r"\bn_units\b"):
        count_subnetworks(n_units)


def test_mc_errors_name_the_parameter():
    model = small_model()
    x = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match=r"\bn_samples\b"):
        mc_dropout_predict(model, x, n_samples=0)
    with pytest.raises(ValueError, match=r"\bbatch_size\b"):
        mc_dropout_predict(model, x, n_samples=2, batch_size=0)
    with pytest.raises(ValueError, match=r"\bseed\b"):
        mc_dropout_predict(model, x, n_samples=2, seed=-1)
    with pytest.raises(ValueError, match=r"\bprobs\b"):
        mc_summary(np.ones((3, 4)))


# --- 7. docstring examples and plots ---------------------------------------------------------




def test_plots_return_labelled_figures():
    rng = np.random.default_rng(0)
    fig = plots.plot_dropout_masks({"rate 0.2": dropout_mask((8, 32), 0.2, rng),
                                    "rate 0.5": dropout_mask((8, 32), 0.5, rng)})
    assert len(fig.axes) == 2 and fig.get_suptitle()
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    probs = rng.dirichlet(np.ones(10), size=(12, 5))
    fig = plots.plot_mc_dropout(probs, [0, 3], labels=np.arange(5), reference=probs.mean(axis=0))
    assert len(fig.axes) == 2 and fig.get_suptitle() and fig.legends
    assert all(ax.get_title() and ax.get_xlabel() for ax in fig.axes)
    assert fig.axes[0].get_ylabel()
    matplotlib.pyplot.close("all")


def test_mlp_batch_norm_momentum_reaches_the_layers_and_is_validated():
    # the chapter's batch-norm variants (nnh.experiments.DROPOUT_VARIANTS) differ only in this momentum
    from nnh import models

    for momentum in (0.99, 0.9):
        model = models.mlp(hidden=(8, 8), batch_norm=True, batch_norm_momentum=momentum)
        bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert len(bn) == 2 and all(layer.momentum == pytest.approx(momentum) for layer in bn)
    assert models.mlp(hidden=(8,), batch_norm=True).layers[1].momentum == pytest.approx(0.99)  # Keras' default
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"\bbatch_norm_momentum\b"):
            models.mlp(batch_norm=True, batch_norm_momentum=bad)
