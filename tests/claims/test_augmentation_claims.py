"""Claims of the chapter "Data augmentation, label smoothing and mixup"
(book/augmentation.ipynb)."""

import numpy as np
import pytest

from claims.stats import SEEDS, column, assert_larger, assert_larger_on_every_seed, assert_smaller
from nnh import data, experiments


@pytest.fixture(scope="module")
def shifts():
    return experiments.compare_shifts(SEEDS)


@pytest.fixture(scope="module")
def calibration():
    split = data.digits(flat=True, n_train=experiments.CALIBRATION.n_train)
    probs = experiments.compare_calibration(SEEDS, split=split)
    return {key: experiments.calibration_report(p, split.y_test) for key, p in probs.items()}


def shift_col(runs, name, f):
    return np.array([f(runs[name, s]) for s in SEEDS])


def test_random_shifts_lower_the_test_loss(shifts):
    # "random one-pixel shifts on 300 digits kept the test loss from growing and lowered it on every seed"
    final = lambda r: r.history["val_loss"][-1]  # noqa: E731
    assert_smaller(shift_col(shifts, "random shifts", final), shift_col(shifts, "no augmentation", final),
                   "random shifts: lower final test loss")
    assert np.all(shift_col(shifts, "random shifts", final) < shift_col(shifts, "no augmentation", final))


def test_without_augmentation_the_test_loss_grows_after_its_minimum(shifts):
    final = lambda r: r.history["val_loss"][-1]  # noqa: E731
    lowest = lambda r: min(r.history["val_loss"])  # noqa: E731
    # "its test loss ends ... above the lowest value it reached during training on every seed"
    assert_larger_on_every_seed(shift_col(shifts, "no augmentation", final),
                                shift_col(shifts, "no augmentation", lowest),
                                "no augmentation: final test loss above its minimum")


def test_random_shifts_raise_the_test_accuracy(shifts):
    # "the accuracy gain was smaller" (but a gain)
    acc = lambda r: r.test_accuracy  # noqa: E731
    assert_larger(shift_col(shifts, "random shifts", acc), shift_col(shifts, "no augmentation", acc),
                  "random shifts: higher test accuracy")


@pytest.mark.parametrize("name", ["label smoothing 0.1", "mixup α=0.2"])
def test_label_smoothing_and_mixup_lower_the_confidence(calibration, name):
    assert_smaller(column(calibration, name, "confidence"), column(calibration, "plain", "confidence"),
                   f"{name}: lower mean confidence than plain")


@pytest.mark.parametrize("name", ["label smoothing 0.1", "mixup α=0.2"])
def test_here_they_make_the_model_under_confident_and_raise_the_ece(calibration, name):
    assert_larger(column(calibration, name, "ECE"), column(calibration, "plain", "ECE"),
                  f"{name}: higher ECE than plain at this scale")
    assert np.all(column(calibration, name, "conf − acc") < 0), f"{name}: confidence below accuracy"


def test_the_plain_model_is_almost_calibrated(calibration):
    gap = column(calibration, "plain", "conf − acc")
    assert np.all(np.abs(gap) < 0.03), gap
    assert np.all(column(calibration, "plain", "ECE") < 0.04), column(calibration, "plain", "ECE")


@pytest.mark.parametrize("name", ["label smoothing 0.1", "mixup α=0.2"])
def test_accuracy_changes_little(calibration, name):
    # "the mean accuracies differ by at most [about one] percentage point[s]"
    a, b = column(calibration, name, "accuracy"), column(calibration, "plain", "accuracy")
    assert abs(a.mean() - b.mean()) < 0.02, (name, a, b)
