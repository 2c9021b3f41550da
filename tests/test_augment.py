"""Tests of :mod:`nnh.augment`: properties, statistics, and Keras as the reference.

Independent references: Keras' own losses (label smoothing), Keras'
``RandomFlip`` (which axis is "horizontal"), brute-force window search (crops),
SciPy's Beta distribution (mixup's λ) and plain Python transcriptions of the
formulas.  Statistical tests use thresholds that a correct implementation
fails with probability below 1e-6 (and use fixed seeds, so they are
deterministic anyway).
"""

from __future__ import annotations

import nnh  # noqa: F401  (configures TensorFlow quietly before Keras is used)

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nnh import augment
from nnh.augment import (
    AugmentedBatches,
    apply_with_probability,
    cutmix_batch,
    epsilon_hot,
    fit_augmented,
    mixup_batch,
    one_hot,
    random_crop,
    random_flip,
    random_shift,
    smooth_labels,
)

PROPERTY = settings(max_examples=40, deadline=None)
FALSE_FAILURE = 1e-6  # a correct implementation fails a statistical test with at most this probability


# --- strategies -------------------------------------------------------------------


@st.composite
def distinct_images(draw, max_n=6, max_side=7, max_channels=3):
    """(N, H, W, C) images whose pixels are all different, so every flip/window is identifiable."""
    n = draw(st.integers(1, max_n))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    c = draw(st.integers(1, max_channels))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).permutation(n * h * w * c)
    dtype = draw(st.sampled_from([np.int64, np.float32, np.float64]))
    return values.reshape(n, h, w, c).astype(dtype)


SEEDS = st.integers(0, 2**32 - 1)
EPSILON = st.floats(0.0, 1.0, allow_nan=False)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def binomial_bounds(n, p):
    """Counts outside [lo, hi] have total probability < FALSE_FAILURE under Binomial(n, p)."""
    return stats.binom.ppf(FALSE_FAILURE / 2, n, p), stats.binom.isf(FALSE_FAILURE / 2, n, p)


# --- random_flip ----------------------------------------------------------------------


@PROPERTY
@given(distinct_images(), SEEDS, st.booleans(), st.booleans())
def test_flip_with_the_same_decisions_twice_is_the_identity(images, seed, horizontal, vertical):
    once = random_flip(images, np.random.default_rng(seed), horizontal, vertical)
    twice = random_flip(once, np.random.default_rng(seed), horizontal, vertical)
    np.testing.assert_array_equal(twice, images)


@PROPERTY
@given(distinct_images(), SEEDS, st.booleans(), st.booleans())
def test_flip_keeps_each_images_pixels_shape_and_dtype(images, seed, horizontal, vertical):
    before = images.copy()
    out = random_flip(images, np.random.default_rng(seed), horizontal, vertical)
    np.testing.assert_array_equal(images, before)  # input untouched
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out is not images
    for original, flipped in zip(images, out):
        np.testing.assert_array_equal(np.sort(flipped, axis=None), np.sort(original, axis=None))


@PROPERTY
@given(distinct_images(), SEEDS, st.booleans(), st.booleans())
def test_each_image_is_flipped_whole_or_not_at_all_as_the_generator_decides(
    images, seed, horizontal, vertical
):
    out = random_flip(images, np.random.default_rng(seed), horizontal, vertical)
    replay = np.random.default_rng(seed)  # the documented draws, in order
    n = len(images)
    flip_h = replay.random(n) < 0.5 if horizontal else np.zeros(n, bool)
    flip_v = replay.random(n) < 0.5 if vertical else np.zeros(n, bool)
    for i in range(n):
        expected = images[i]
        if flip_h[i]:
            expected = expected[:, ::-1]  # left-right: the width axis
        if flip_v[i]:
            expected = expected[::-1]  # up-down: the height axis
        np.testing.assert_array_equal(out[i], expected)


def test_horizontal_is_the_axis_keras_random_flip_calls_horizontal():
    images = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    layer = keras.layers.RandomFlip("horizontal", seed=3)
    seen_flip = False
    for _ in range(10):
        keras_out = keras.ops.convert_to_numpy(layer(images, training=True))
        for i in range(len(images)):
            if np.array_equal(keras_out[i], images[i]):
                continue
            np.testing.assert_array_equal(keras_out[i], images[i][:, ::-1])
            seen_flip = True
    assert seen_flip
    ours = random_flip(images, np.random.default_rng(2), horizontal=True)
    for i in range(len(images)):
        assert np.array_equal(ours[i], images[i]) or np.array_equal(ours[i], images[i][:, ::-1])


def test_no_axis_enabled_returns_an_equal_copy():
    images = np.arange(24).reshape(2, 3, 4, 1)
    out = random_flip(images, np.random.default_rng(0), horizontal=False, vertical=False)
    np.testing.assert_array_equal(out, images)
    assert out is not images


@pytest.mark.parametrize(("horizontal", "vertical"), [(True, False), (False, True)])
def test_flip_probability_is_one_half(horizontal, vertical):
    n = 20_000
    images = np.arange(4).reshape(1, 2, 2, 1).repeat(n, axis=0)
    out = random_flip(images, np.random.default_rng(123), horizontal, vertical)
    flipped = int(np.sum(np.any(out != images, axis=(1, 2, 3))))
    lo, hi = binomial_bounds(n, 0.5)
    assert lo <= flipped <= hi, f"{flipped} of {n} flipped"


def test_horizontal_and_vertical_flips_are_independent_coin_tosses():
    n = 20_000
    image = np.arange(4).reshape(1, 2, 2, 1)
    out = random_flip(image.repeat(n, axis=0), np.random.default_rng(7), True, True)
    variants = [image[0], image[0, :, ::-1], image[0, ::-1], image[0, ::-1, ::-1]]
    counts = [int(np.sum(np.all(out == v, axis=(1, 2, 3)))) for v in variants]
    assert sum(counts) == n
    assert stats.chisquare(counts).pvalue > FALSE_FAILURE, counts


# --- random_crop --------------------------------------------------------------------------


def find_window(window, image):
    """All offsets (top, left) where `window` sits in `image` (brute force)."""
    h, w = window.shape[:2]
    return [
        (top, left)
        for top in range(image.shape[0] - h + 1)
        for left in range(image.shape[1] - w + 1)
        if np.array_equal(image[top:top + h, left:left + w], window)
    ]


@st.composite
def crop_cases(draw):
    images = draw(distinct_images())
    _, height, width, _ = images.shape
    size = (draw(st.integers(1, height)), draw(st.integers(1, width)))
    return images, size, draw(SEEDS)


@PROPERTY
@given(crop_cases())
def test_every_crop_is_a_window_of_its_own_image(case):
    images, size, seed = case
    before = images.copy()
    crops = random_crop(images, size, np.random.default_rng(seed))
    np.testing.assert_array_equal(images, before)
    assert crops.shape == (len(images), *size, images.shape[-1])
    assert crops.dtype == images.dtype
    for crop, image in zip(crops, images):
        assert len(find_window(crop, image)) == 1  # distinct pixels: exactly one place


@PROPERTY
@given(crop_cases())
def test_crop_offsets_follow_the_documented_draws(case):
    images, (h, w), seed = case
    n, height, width, _ = images.shape
    crops = random_crop(images, (h, w), np.random.default_rng(seed))
    replay = np.random.default_rng(seed)
    top = replay.integers(0, height - h + 1, size=n)
    left = replay.integers(0, width - w + 1, size=n)
    for i in range(n):
        np.testing.assert_array_equal(crops[i], images[i, top[i]:top[i] + h, left[i]:left[i] + w])


def test_full_size_crop_is_the_image():
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1).astype(np.uint8)
    np.testing.assert_array_equal(random_crop(images, (3, 4), np.random.default_rng(0)), images)


def crop_offsets(n, seed):
    """Crop n copies of a 4×5 image of distinct pixels to 2×2; return (top, left) of each."""
    image = np.arange(20).reshape(1, 4, 5, 1)
    crops = random_crop(image.repeat(n, axis=0), (2, 2), np.random.default_rng(seed))
    # the top-left pixel of a window of arange(20).reshape(4, 5) is 5 * top + left
    corner = crops[:, 0, 0, 0]
    return corner // 5, corner % 5


def test_crop_offsets_are_uniform_over_every_position():
    top, left = crop_offsets(12_000, seed=11)
    assert top.min() == 0 and top.max() == 2 and left.min() == 0 and left.max() == 3  # inclusive ends
    counts = np.bincount(top * 4 + left, minlength=12)
    assert stats.chisquare(counts).pvalue > FALSE_FAILURE, counts


def test_crop_offsets_are_independent_across_images():
    top, left = crop_offsets(24_000, seed=5)
    position = top * 4 + left  # 12 positions
    pairs = position[0::2] * 12 + position[1::2]  # (image 2k, image 2k+1): 144 cells, ~83 each
    counts = np.bincount(pairs, minlength=144)
    assert stats.chisquare(counts).pvalue > FALSE_FAILURE
    assert np.mean(position[0::2] == position[1::2]) < 0.2  # one offset per batch would give 1.0


@pytest.mark.parametrize("size", [(9, 2), (2, 9), (0, 2), (2, 0), (-1, 3), (2.5, 2), (3,), "ab"])
def test_bad_crop_size_raises_naming_size(size):
    images = np.zeros((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"\bsize\b"):
        random_crop(images, size, np.random.default_rng(0))


# --- random_shift and apply_with_probability ------------------------------------------------


@PROPERTY
@given(distinct_images(), st.integers(0, 3), SEEDS)
def test_shift_is_a_window_of_the_padded_image(images, max_shift, seed):
    images = images + 1  # no pixel equals the fill value
    out = random_shift(images, max_shift, np.random.default_rng(seed), fill=0)
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = np.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)))
    for window, image in zip(out, padded):
        (top, left), = find_window(window, image) if np.any(window) else [(None, None)]
        if top is not None:
            assert 0 <= top <= 2 * max_shift and 0 <= left <= 2 * max_shift


def test_shift_zero_is_identity_and_bad_shift_names_max_shift():
    images = np.arange(32.0).reshape(2, 4, 4, 1)
    np.testing.assert_array_equal(random_shift(images, 0, np.random.default_rng(0)), images)
    with pytest.raises(ValueError, match=r"\bmax_shift\b"):
        random_shift(images, -1, np.random.default_rng(0))


def test_apply_with_probability_extremes_and_rate():
    images = np.arange(4).reshape(1, 2, 2, 1).repeat(20_000, axis=0)
    flip = lambda x, rng: x[:, :, ::-1]
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(apply_with_probability(flip, 0.0)(images, rng), images)
    np.testing.assert_array_equal(apply_with_probability(flip, 1.0)(images, rng), images[:, :, ::-1])
    out = apply_with_probability(flip, 0.3)(images, rng)
    changed = int(np.sum(np.any(out != images, axis=(1, 2, 3))))
    lo, hi = binomial_bounds(len(images), 0.3)
    assert lo <= changed <= hi
    with pytest.raises(ValueError, match=r"\bp\b"):
        apply_with_probability(flip, 1.5)


# --- label smoothing --------------------------------------------------------------------------


@st.composite
def label_rows(draw, soft=None, min_classes=1):
    n = draw(st.integers(1, 12))
    k = draw(st.integers(min_classes, 12))
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    if soft if soft is not None else draw(st.booleans()):
        return rng.dirichlet(np.ones(k), size=n)
    return np.eye(k)[rng.integers(0, k, size=n)]


def predictions_for(y, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=y.shape) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return p.astype(np.float32)


@PROPERTY
@given(label_rows(), EPSILON)
def test_smoothed_labels_match_the_formula_and_sum_to_one(y, epsilon):
    before = y.copy()
    out = smooth_labels(y, epsilon)
    np.testing.assert_array_equal(y, before)
    k = y.shape[1]
    expected = [[v * (1 - epsilon) + epsilon / k for v in row] for row in y.tolist()]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    assert out.min() >= 0 and out.max() <= 1


@PROPERTY
@given(label_rows(min_classes=2), EPSILON, SEEDS)
def test_smooth_labels_is_what_keras_categorical_crossentropy_smoothing_does(y, epsilon, seed):
    p = predictions_for(y, seed)
    with_keras_smoothing = keras.losses.CategoricalCrossentropy(label_smoothing=epsilon)(
        y.astype(np.float32), p)
    on_smoothed_labels = keras.losses.CategoricalCrossentropy()(
        smooth_labels(y, epsilon).astype(np.float32), p)
    np.testing.assert_allclose(to_numpy(with_keras_smoothing), to_numpy(on_smoothed_labels),
                               rtol=2e-5, atol=1e-6)


def test_smooth_labels_extremes_and_dtypes():
    y = np.eye(4)[[0, 3, 1]]
    np.testing.assert_array_equal(smooth_labels(y, 0.0), y)
    np.testing.assert_allclose(smooth_labels(y, 1.0), 0.25)
    assert smooth_labels(y.astype(np.int64), 0.1).dtype == np.float64
    assert smooth_labels(y.astype(np.float32), 0.1).dtype == np.float32
    np.testing.assert_allclose(smooth_labels([[0, 1, 0, 0]], 0.2), [[0.05, 0.85, 0.05, 0.05]])


@PROPERTY
@given(st.lists(st.integers(0, 1), min_size=1, max_size=30), st.floats(0.0, 0.4999), SEEDS)
def test_epsilon_hot_is_keras_binary_smoothing_with_twice_epsilon(labels, epsilon, seed):
    y = np.array(labels)
    out = epsilon_hot(y, epsilon)
    assert out.shape == y.shape and np.issubdtype(out.dtype, np.floating)
    np.testing.assert_allclose(out, [epsilon if v == 0 else 1 - epsilon for v in labels], rtol=1e-12)
    # the K = 2 case of smooth_labels with 2ε, on the "1" column
    np.testing.assert_allclose(out, smooth_labels(one_hot(y, 2, np.float64), 2 * epsilon)[:, 1],
                               rtol=1e-12, atol=1e-15)
    p = np.random.default_rng(seed).uniform(0.02, 0.98, size=(len(labels), 1)).astype(np.float32)
    y_col = y[:, None].astype(np.float32)
    keras_smoothed = keras.losses.BinaryCrossentropy(label_smoothing=2 * epsilon)(y_col, p)
    ours = keras.losses.BinaryCrossentropy()(epsilon_hot(y_col, epsilon), p)
    np.testing.assert_allclose(to_numpy(keras_smoothed), to_numpy(ours), rtol=2e-5, atol=1e-6)


def test_epsilon_hot_keeps_shape_and_float_dtype():
    y = np.array([[0, 1], [1, 1]], dtype=np.float32)
    out = epsilon_hot(y, 0.1)
    assert out.shape == (2, 2) and out.dtype == np.float32
    assert epsilon_hot(np.array([True, False]), 0.2).dtype == np.float64
    np.testing.assert_allclose(epsilon_hot(np.array([0, 1, 1]), 0.0), [0, 1, 1])


# --- mixup --------------------------------------------------------------------------------


@st.composite
def mixup_cases(draw):
    n = draw(st.integers(1, 10))
    k = draw(st.integers(1, 6))
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    x = rng.permutation(n * 6).reshape(n, 2, 3).astype(np.float64)  # distinct values
    y = np.eye(k)[rng.integers(0, k, n)]
    alpha = draw(st.floats(0.05, 5.0))
    return x, y, alpha, draw(SEEDS)


@PROPERTY
@given(mixup_cases())
def test_mixup_is_one_convex_combination_with_the_returned_permutation(case):
    x, y, alpha, seed = case
    x_before, y_before = x.copy(), y.copy()
    x_mixed, y_mixed, lam, index = mixup_batch(x, y, alpha, np.random.default_rng(seed))
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert type(lam) is float and 0.0 <= lam <= 1.0
    np.testing.assert_array_equal(np.sort(index), np.arange(len(x)))
    assert x_mixed.shape == x.shape and y_mixed.shape == y.shape
    # the documented draws, in order
    replay = np.random.default_rng(seed)
    assert lam == replay.beta(alpha, alpha)
    np.testing.assert_array_equal(index, replay.permutation(len(x)))
    # recover λ from the outputs wherever the pair differs: the same λ for every row
    for i, j in enumerate(index):
        differs = x[i] != x[j]
        if differs.any():
            recovered = (x_mixed[i][differs] - x[j][differs]) / (x[i][differs] - x[j][differs])
            np.testing.assert_allclose(recovered, lam, rtol=1e-9, atol=1e-9)
        lo, hi = np.minimum(x[i], x[j]), np.maximum(x[i], x[j])
        assert np.all(x_mixed[i] >= lo - 1e-9) and np.all(x_mixed[i] <= hi + 1e-9)
    np.testing.assert_allclose(y_mixed, lam * y + (1 - lam) * y[index], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y_mixed.sum(axis=1), 1.0, rtol=1e-12)
    assert y_mixed.min() >= 0 and y_mixed.max() <= 1 + 1e-12


def draw_lams(alpha, n, seed):
    rng = np.random.default_rng(seed)
    x, y = np.zeros((3, 1)), np.eye(3)
    return np.array([mixup_batch(x, y, alpha, rng)[2] for _ in range(n)])


@pytest.mark.parametrize("alpha", [0.2, 0.4, 2.0])
def test_lambda_follows_beta_alpha_alpha_not_uniform(alpha):
    lams = draw_lams(alpha, 3000, seed=int(alpha * 10))
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > FALSE_FAILURE
    assert stats.kstest(lams, "uniform").pvalue < FALSE_FAILURE  # and Uniform(0, 1) is rejected
    # one λ per call, not per example: the calls give different λ
    assert len(np.unique(lams)) > 2900


def test_lambda_with_alpha_one_is_uniform():
    assert stats.kstest(draw_lams(1.0, 3000, seed=1), "uniform").pvalue > FALSE_FAILURE


def test_mixup_keeps_float32_and_promotes_integer_labels():
    x = np.ones((4, 2, 2, 1), dtype=np.float32)
    x_mixed, y_mixed, _, _ = mixup_batch(x, np.eye(4, dtype=np.int64), 0.2, np.random.default_rng(0))
    assert x_mixed.dtype == np.float32 and y_mixed.dtype == np.float64


@pytest.mark.parametrize(
    ("x", "y", "alpha", "name"),
    [
        (np.zeros((4, 2)), np.eye(4), 0.0, "alpha"),
        (np.zeros((4, 2)), np.eye(4), -1.0, "alpha"),
        (np.zeros((4, 2)), np.eye(4), float("nan"), "alpha"),
        (np.zeros((4, 2)), np.eye(3), 0.2, "x"),
        (np.zeros((4, 2)), np.eye(3), 0.2, "y"),
        (np.zeros((4, 2)), np.arange(4), 0.2, "y"),  # integer class ids, not one-hot
    ],
)
def test_mixup_errors_name_the_parameter(x, y, alpha, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        mixup_batch(x, y, alpha, np.random.default_rng(0))


# --- cutmix -------------------------------------------------------------------------------


@st.composite
def cutmix_cases(draw):
    n = draw(st.integers(1, 6))
    h, w, c = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 3))
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(SEEDS))
    dtype = draw(st.sampled_from([np.int64, np.float32, np.float64]))
    x = rng.permutation(n * h * w * c).reshape(n, h, w, c).astype(dtype)  # distinct values
    y = np.eye(k)[rng.integers(0, k, n)]
    return x, y, draw(st.floats(0.05, 5.0)), draw(SEEDS)


@PROPERTY
@given(cutmix_cases())
def test_cutmix_pastes_one_box_of_the_partner_and_weights_labels_by_the_kept_area(case):
    x, y, alpha, seed = case
    x_before, y_before = x.copy(), y.copy()
    x_mixed, y_mixed, lam, index, box = cutmix_batch(x, y, alpha, np.random.default_rng(seed))
    np.testing.assert_array_equal(x, x_before)  # no mutation
    np.testing.assert_array_equal(y, y_before)
    n, height, width, _ = x.shape
    assert x_mixed.shape == x.shape and x_mixed.dtype == x.dtype and y_mixed.shape == y.shape
    np.testing.assert_array_equal(np.sort(index), np.arange(n))
    top, left, h, w = box
    assert all(type(v) is int for v in box) and type(lam) is float
    assert 0 <= top and 0 <= left and h >= 0 and w >= 0 and top + h <= height and left + w <= width
    inside = np.zeros((height, width), bool)
    inside[top:top + h, left:left + w] = True
    # inside the box: the partner's pixels; outside: the image's own
    np.testing.assert_array_equal(x_mixed[:, inside], x[index][:, inside])
    np.testing.assert_array_equal(x_mixed[:, ~inside], x[:, ~inside])
    # lam is the area kept: 1 - the fraction of pixel positions inside the box
    assert lam == pytest.approx(1 - inside.mean(), abs=1e-12) and 0.0 <= lam <= 1.0
    if (index != np.arange(n)).any():  # all values distinct: a replaced pixel differs from x
        kept = np.all(x_mixed == x, axis=(0, 3))
        assert lam == pytest.approx(kept.mean(), abs=1e-12)
    np.testing.assert_allclose(y_mixed, lam * y + (1 - lam) * y[index], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y_mixed.sum(axis=1), 1.0, rtol=1e-12)


@PROPERTY
@given(cutmix_cases())
def test_cutmix_box_follows_the_documented_draws(case):
    x, y, alpha, seed = case
    _, _, _, index, box = cutmix_batch(x, y, alpha, np.random.default_rng(seed))
    _, height, width, _ = x.shape
    replay = np.random.default_rng(seed)
    lam0 = replay.beta(alpha, alpha)
    np.testing.assert_array_equal(index, replay.permutation(len(x)))
    cy, cx = replay.integers(0, height), replay.integers(0, width)
    # an independent transcription: the set of rows (columns) within the centred, clipped box
    h0 = int(np.floor(height * np.sqrt(1 - lam0) + 0.5))
    w0 = int(np.floor(width * np.sqrt(1 - lam0) + 0.5))
    rows = [r for r in range(cy - h0 // 2, cy - h0 // 2 + h0) if 0 <= r < height]
    cols = [c for c in range(cx - w0 // 2, cx - w0 // 2 + w0) if 0 <= c < width]
    top, left, h, w = box
    assert (h, w) == (len(rows), len(cols))
    if rows:
        assert top == rows[0]
    if cols:
        assert left == cols[0]


def cutmix_lams(alpha, n, seed, side=64):
    """λ0 (replayed from the generator) and the returned λ of n calls on one side × side image pair."""
    x, y = np.zeros((2, side, side, 1)), np.eye(2)
    lam0, lam = [], []
    for s in range(n):
        lam0.append(np.random.default_rng([seed, s]).beta(alpha, alpha))
        lam.append(cutmix_batch(x, y, alpha, np.random.default_rng([seed, s]))[2])
    return np.array(lam0), np.array(lam)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_cutmix_lambda0_is_beta_and_clipping_only_keeps_more(alpha):
    lam0, lam = cutmix_lams(alpha, 2000, seed=int(alpha * 10))
    assert stats.kstest(lam0, stats.beta(alpha, alpha).cdf).pvalue > FALSE_FAILURE
    # rounding the sides moves λ by at most about 2/side; clipping only removes pasted pixels
    assert np.all(lam >= lam0 - 2.5 / 64)
    # a centre near the border clips the box: often, the kept area is clearly larger than λ0
    assert np.mean(lam > lam0 + 0.05) > 0.3


def test_cutmix_lambda_spread_grows_with_alpha():
    """Small α: λ0 near 0 or 1 (whole image or nearly none pasted); α = 1: spread over [0, 1]."""
    small, _ = cutmix_lams(0.1, 1000, seed=1)
    uniform, _ = cutmix_lams(1.0, 1000, seed=2)
    middle = lambda v: np.mean((v > 0.2) & (v < 0.8))  # noqa: E731
    assert middle(small) < 0.2 < 0.5 < middle(uniform)


@pytest.mark.parametrize(
    ("x", "y", "alpha", "name"),
    [
        (np.zeros((4, 3, 3, 1)), np.eye(4), 0.0, "alpha"),
        (np.zeros((4, 3, 3, 1)), np.eye(4), -1.0, "alpha"),
        (np.zeros((4, 3, 3, 1)), np.eye(4), float("nan"), "alpha"),
        (np.zeros((4, 3, 3)), np.eye(4), 1.0, "x"),  # not 4-D
        (np.zeros((4, 3, 3, 1)), np.eye(3), 1.0, "y"),  # rows do not match
        (np.zeros((4, 3, 3, 1)), np.arange(4), 1.0, "y"),  # integer class ids, not one-hot
    ],
)
def test_cutmix_errors_name_the_parameter(x, y, alpha, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        cutmix_batch(x, y, alpha, np.random.default_rng(0))


# --- errors of the other functions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: smooth_labels(np.eye(3), -0.1), "epsilon"),
        (lambda: smooth_labels(np.eye(3), 1.1), "epsilon"),
        (lambda: smooth_labels(np.eye(3), float("nan")), "epsilon"),
        (lambda: smooth_labels(np.array([0, 1, 2]), 0.1), "y_onehot"),
        (lambda: smooth_labels(np.array([[0.5, 0.6]]), 0.1), "y_onehot"),
        (lambda: smooth_labels(np.array([[2.0, -1.0]]), 0.1), "y_onehot"),
        (lambda: epsilon_hot(np.array([0, 1]), 0.5), "epsilon"),
        (lambda: epsilon_hot(np.array([0, 1]), -0.01), "epsilon"),
        (lambda: epsilon_hot(np.array([0, 2]), 0.1), "y"),
        (lambda: epsilon_hot(np.array([0.5, 1.0]), 0.1), "y"),
        (lambda: random_flip(np.zeros((3, 4, 4)), np.random.default_rng(0)), "images"),
        (lambda: random_crop(np.zeros((4, 4, 1)), (2, 2), np.random.default_rng(0)), "images"),
        (lambda: one_hot(np.array([0, 3]), 3), "labels"),
        (lambda: AugmentedBatches(np.zeros((3, 2)), np.array([0, 1]), 2, n_classes=2), "x"),
        (lambda: AugmentedBatches(np.zeros((3, 2)), np.array([0, 1, 1]), 0, n_classes=2),
         "batch_size"),
        (lambda: AugmentedBatches(np.zeros((3, 2)), np.array([0, 1, 1]), 2, n_classes=2,
                                  mixup_alpha=0.0), "mixup_alpha"),
    ],
)
def test_errors_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match=r"\brng\b"):
        random_flip(np.zeros((1, 2, 2, 1)), 0)
    with pytest.raises(TypeError, match=r"\brng\b"):
        mixup_batch(np.zeros((2, 1)), np.eye(2), 0.2, np.random.RandomState(0))


# --- Keras side: the data feed and a training run ------------------------------------------------


def small_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4, 4, 1)).astype(np.float32), rng.integers(0, 3, n)


def test_augmented_batches_cover_each_example_once_per_epoch_and_are_reproducible():
    x, y = small_data()
    batches = AugmentedBatches(x, y, 16, n_classes=3, seed=4)
    assert len(batches) == 4
    epoch0 = [batches[i] for i in range(len(batches))]
    assert [len(b[0]) for b in epoch0] == [16, 16, 16, 2]
    xs = np.concatenate([b[0] for b in epoch0])
    ys = np.concatenate([b[1] for b in epoch0])
    assert xs.dtype == np.float32 and ys.dtype == np.float32
    order = np.lexsort(xs.reshape(len(xs), -1).T)
    reference = np.lexsort(x.reshape(len(x), -1).T)
    np.testing.assert_array_equal(xs[order], x[reference])  # a permutation of the training set
    np.testing.assert_array_equal(ys[order], np.eye(3)[y[reference]])  # labels travel with images
    # the same batch again: identical (Keras may ask twice); next epoch: reshuffled
    np.testing.assert_array_equal(batches[2][0], epoch0[2][0])
    batches.on_epoch_end()
    assert not np.array_equal(batches[0][0], epoch0[0][0])
    with pytest.raises(IndexError):
        batches[4]


def test_augmented_batches_apply_transform_then_mixup():
    x, y = small_data()
    flip = lambda images, rng: random_flip(images, rng)
    plain = AugmentedBatches(x, y, 16, n_classes=3, seed=1)
    flipped = AugmentedBatches(x, y, 16, n_classes=3, seed=1, transform=flip)
    xb, yb = plain[0]
    xf, yf = flipped[0]
    np.testing.assert_array_equal(yf, yb)
    expected = random_flip(xb, np.random.default_rng([1, 0, 0]))
    np.testing.assert_array_equal(xf, expected)
    mixed = AugmentedBatches(x, y, 16, n_classes=3, seed=1, mixup_alpha=0.4)
    xm, ym = mixed[0]
    xe, ye, _, _ = mixup_batch(xb, yb, 0.4, np.random.default_rng([1, 0, 0]))
    np.testing.assert_allclose(xm, xe, rtol=1e-6)
    np.testing.assert_allclose(ym, ye, rtol=1e-6)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)


def test_fit_augmented_runs_mixup_and_smoothing_reproducibly():
    split = nnh.data.digits(n_train=100)
    build = lambda: nnh.models.mlp(hidden=(16,))
    runs = [fit_augmented(build, split, 1e-2, epochs=2, batch_size=32, seed=3, mixup_alpha=0.2,
                          label_smoothing=0.1, test_every_epoch=True) for _ in range(2)]
    assert runs[0].history == runs[1].history
    assert set(runs[0].history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(runs[0].history["loss"]) == 2 and len(runs[0].rates) == 2 * 4
    probs = keras.ops.convert_to_numpy(runs[0].model(split.x_test, training=False))
    assert runs[0].test_accuracy == pytest.approx(np.mean(probs.argmax(1) == split.y_test))
    with pytest.raises(ValueError, match=r"\blabel_smoothing\b"):
        fit_augmented(build, split, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"\boptimizer\b"):
        fit_augmented(build, split, optimizer="rmsprop")


def test_module_exports():
    assert set(augment.__all__) >= {"random_flip", "random_crop", "smooth_labels", "epsilon_hot",
                                    "mixup_batch", "cutmix_batch"}
    for name in augment.__all__:
        assert callable(getattr(augment, name))


def test_plots_return_titled_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = nnh.plots.plot_image_grid([np.zeros((4, 4, 1)), np.ones((4, 4, 3))], ["a", "b"],
                                    title="grid")
    assert fig._suptitle.get_text() == "grid" and fig.axes[0].get_title() == "a"
    fig2 = nnh.plots.plot_beta_densities((0.2, 1.0))
    ax = fig2.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and len(ax.get_lines()) == 2
    plt.close("all")
