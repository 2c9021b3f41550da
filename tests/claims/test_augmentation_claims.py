"""Claims of the chapter "Data augmentation, label smoothing and mixup"
(book/augmentation.ipynb), re-checked on the claim seeds (disjoint from the book's).

Seeds: the CNN runs of :func:`nnh.experiments.compare_shifts` take several seconds
each (30 epochs), so the shift claims use 6 seeds (12 runs), and the comparison at
the capstone's learning rate, whose effects are large, 4 seeds (8 runs); the MLP runs of
:func:`nnh.experiments.compare_calibration` take about a second, so the
calibration claims use 10 seeds (30 runs).
"""

import keras
import numpy as np
import pytest

from claims.stats import (
    assert_larger,
    assert_larger_on_every_seed,
    assert_smaller,
    assert_within_noise,
    column,
    seeds,
)
from nnh import data, experiments, metrics

SHIFT_SEEDS = seeds(6)
CALIBRATION_SEEDS = seeds(10)


@pytest.fixture(scope="module")
def digits():
    return data.digits(flat=False, n_train=experiments.SHIFTS.n_train)


@pytest.fixture(scope="module")
def shifts(digits):
    return experiments.compare_shifts(SHIFT_SEEDS, split=digits)


@pytest.fixture(scope="module")
def tta(shifts, digits):
    """{(name, seed): {"accuracy", "loss", "accuracy TTA", "loss TTA"}} on the test digits."""
    table = {}
    for (name, seed), run in shifts.items():
        p = keras.ops.convert_to_numpy(run.model(digits.x_test, training=False)).astype(np.float64)
        q = experiments.predict_shift_tta(run.model, digits.x_test, max_shift=1)
        table[name, seed] = {"accuracy": metrics.accuracy(p, digits.y_test),
                             "loss": metrics.negative_log_likelihood(p, digits.y_test),
                             "accuracy TTA": metrics.accuracy(q, digits.y_test),
                             "loss TTA": metrics.negative_log_likelihood(q, digits.y_test)}
    return table


@pytest.fixture(scope="module")
def calibration():
    split = data.digits(flat=True, n_train=experiments.CALIBRATION.n_train)
    probs = experiments.compare_calibration(CALIBRATION_SEEDS, split=split)
    return {key: experiments.calibration_report(p, split.y_test) for key, p in probs.items()}


def shift_col(runs, name, f):
    return np.array([f(runs[name, s]) for s in SHIFT_SEEDS])


final = lambda r: r.history["val_loss"][-1]  # noqa: E731
lowest = lambda r: min(r.history["val_loss"])  # noqa: E731
train_loss = lambda r: r.history["loss"][-1]  # noqa: E731
accuracy = lambda r: r.test_accuracy  # noqa: E731


# --- random shifts ------------------------------------------------------------------------------


def test_random_shifts_lower_the_final_test_loss_on_average(shifts):
    # "On six other seeds (the chapter's claim tests) the final test loss is also lower on average,
    # by more than the seed-to-seed noise, but not on every seed"
    assert_smaller(shift_col(shifts, "random shifts", final), shift_col(shifts, "no augmentation", final),
                   "random shifts: lower final test loss")


def test_without_augmentation_the_test_loss_grows_after_its_minimum(shifts):
    # "its test loss ends ... above the lowest value it reached during training on every seed"
    assert_larger_on_every_seed(shift_col(shifts, "no augmentation", final),
                                shift_col(shifts, "no augmentation", lowest),
                                "no augmentation: final test loss above its minimum")


def test_without_augmentation_the_training_loss_nears_zero_with_shifts_it_stays_high(shifts):
    # "Without augmentation the network memorises.  Its training loss falls to [≈ 0.01] ..."
    # "With random shifts the training loss stays high"
    plain, shifted = shift_col(shifts, "no augmentation", train_loss), shift_col(shifts, "random shifts", train_loss)
    assert np.all(plain < 0.05), plain
    assert_larger(shifted, plain, "random shifts: higher final training loss", by=0.1)


def test_random_shifts_change_the_test_accuracy_within_noise(shifts):
    # "The test accuracy gain does not survive fresh seeds ... on the six other seeds the
    # difference is within the seed noise"
    assert_within_noise(shift_col(shifts, "random shifts", accuracy), shift_col(shifts, "no augmentation", accuracy),
                        "random shifts: test accuracy within noise", tolerance=0.02)


def test_label_changing_transformations_are_real(shifts, digits):
    # "The network trained without augmentation calls [most] of the upside-down test 6s a 9 ...
    # and only [few] of the mirrored 2s a 2"
    sixes, twos = digits.x_test[digits.y_test == 6], digits.x_test[digits.y_test == 2]
    for seed in SHIFT_SEEDS:
        model = shifts["no augmentation", seed].model
        predict = lambda x: keras.ops.convert_to_numpy(model(x, training=False)).argmax(axis=1)  # noqa: E731
        six_as_nine = np.mean(predict(sixes[:, ::-1, ::-1]) == 9)
        two_as_two = np.mean(predict(twos[:, :, ::-1]) == 2)
        assert six_as_nine > 0.5 and two_as_two < 0.5, (seed, six_as_nine, two_as_two)


# --- the same set-up with the capstone's learning rate ---------------------------------------------

SLOW_SEEDS = seeds(4)  # the effects are large (see below); 8 more CNN runs


@pytest.fixture(scope="module")
def slow(digits):
    return experiments.compare_shifts(SLOW_SEEDS, setup=experiments.SHIFTS_SLOW, split=digits)


def slow_col(runs, name, f):
    return np.array([f(runs[name, s]) for s in SLOW_SEEDS])


def test_at_rate_0003_the_plain_network_does_not_memorise_in_30_epochs(slow):
    # "with Adam at 0.003, the same 30 epochs on the same 300 digits leave the plain network short of
    # memorising — its final training loss stays above 0.05 and its test loss ends within 0.02 of its
    # lowest value on every seed"
    assert np.all(slow_col(slow, "no augmentation", train_loss) > 0.05), slow_col(slow, "no augmentation", train_loss)
    excess = slow_col(slow, "no augmentation", final) - slow_col(slow, "no augmentation", lowest)
    assert np.all(excess < 0.02), excess


def test_at_rate_0003_shifts_raise_the_test_loss_and_lower_the_accuracy(slow):
    # "and then the shifts only make the training task harder: they *raise* the final test loss and
    # lower the accuracy"
    assert_larger(slow_col(slow, "random shifts", final), slow_col(slow, "no augmentation", final),
                  "rate 0.003: random shifts raise the final test loss")
    assert_smaller(slow_col(slow, "random shifts", accuracy), slow_col(slow, "no augmentation", accuracy),
                   "rate 0.003: random shifts lower the test accuracy")


# --- test-time augmentation ---------------------------------------------------------------------


def tta_col(table, name, key):
    return np.array([table[name, s][key] for s in SHIFT_SEEDS])


def test_tta_hurts_the_network_trained_without_augmentation(tta):
    # "Averaging over shifted copies hurts the network trained without augmentation: its accuracy
    # changes by [−] percentage points and its test loss rises"
    name = "no augmentation"
    assert_smaller(tta_col(tta, name, "accuracy TTA"), tta_col(tta, name, "accuracy"),
                   "no augmentation: TTA lowers the accuracy")
    assert_larger(tta_col(tta, name, "loss TTA"), tta_col(tta, name, "loss"),
                  "no augmentation: TTA raises the test loss")


def test_tta_on_the_shift_trained_network(tta):
    # "For the network trained with shifts the accuracy changes by [..] points here and by less than
    # the seed noise on six other seeds (the claim tests), while its test loss rises"
    name = "random shifts"
    assert_within_noise(tta_col(tta, name, "accuracy TTA"), tta_col(tta, name, "accuracy"),
                        "random shifts: TTA accuracy within noise", tolerance=0.02)
    assert_larger(tta_col(tta, name, "loss TTA"), tta_col(tta, name, "loss"),
                  "random shifts: TTA raises the test loss")


# --- label smoothing and mixup: confidence and calibration ------------------------------------


@pytest.mark.parametrize("name", ["label smoothing 0.1", "mixup α=0.2"])
def test_label_smoothing_and_mixup_lower_the_confidence(calibration, name):
    # "Both tricks lower the confidence."
    assert_smaller(column(calibration, name, "confidence"), column(calibration, "plain", "confidence"),
                   f"{name}: lower mean confidence than plain")


@pytest.mark.parametrize("name", ["label smoothing 0.1", "mixup α=0.2"])
def test_here_they_make_the_model_under_confident_and_raise_the_ece(calibration, name):
    # "Label smoothing and mixup push it into under-confidence ..., so their ECE is higher"
    assert_larger(column(calibration, name, "ECE"), column(calibration, "plain", "ECE"),
                  f"{name}: higher ECE than plain at this scale")
    gap = column(calibration, name, "conf − acc")
    assert np.all(gap < 0), f"{name}: confidence below accuracy on every seed: {gap}"


def test_the_plain_model_is_almost_calibrated(calibration):
    # "The plain MLP is already almost calibrated: its mean confidence minus its accuracy is only ..."
    gap = column(calibration, "plain", "conf − acc")
    assert np.all(np.abs(gap) < 0.03), gap
    assert np.all(column(calibration, "plain", "ECE") < 0.04), column(calibration, "plain", "ECE")


@pytest.mark.parametrize("name", ["label smoothing 0.1", "mixup α=0.2"])
def test_accuracy_changes_little(calibration, name):
    # "the mean accuracies differ by at most [about one] percentage point[s].  On ten other seeds (the
    # claim tests) they also differ by less than 1.5 points"
    a, b = column(calibration, name, "accuracy"), column(calibration, "plain", "accuracy")
    assert abs(a.mean() - b.mean()) < 0.015, (name, a, b)


def test_label_smoothing_is_slightly_more_accurate_mixup_within_noise(calibration):
    # "there label smoothing is slightly but consistently more accurate than plain training, while
    # mixup is within the noise"
    plain = column(calibration, "plain", "accuracy")
    assert_larger(column(calibration, "label smoothing 0.1", "accuracy"), plain,
                  "label smoothing: higher accuracy than plain")
    assert_within_noise(column(calibration, "mixup α=0.2", "accuracy"), plain,
                        "mixup: accuracy within noise", tolerance=0.015)
