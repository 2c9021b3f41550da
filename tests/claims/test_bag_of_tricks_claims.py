"""Claims of the capstone chapter "Bag of tricks" (book/bag_of_tricks.ipynb), on the
chapter's own grid: every configuration of nnh.ablation from the same seeds."""

import numpy as np
import pytest

from claims.stats import SEEDS, assert_larger, assert_smaller, assert_within_noise
from nnh import ablation


@pytest.fixture(scope="module")
def runs():
    return ablation.run_grid(ablation.CONFIGS, SEEDS, ablation.Settings())


def col(runs, config, metric):
    return ablation.per_seed(runs, config, metric)


@pytest.mark.parametrize("config", ["+ label smoothing", "+ mixup"])
def test_label_smoothing_and_mixup_raise_the_accuracy(runs, config):
    assert_larger(col(runs, config, "accuracy"), col(runs, "baseline", "accuracy"),
                  f"{config}: higher test accuracy than the baseline")


@pytest.mark.parametrize("config", ["+ label smoothing", "+ mixup"])
def test_label_smoothing_and_mixup_make_the_cnn_under_confident(runs, config):
    assert_larger(col(runs, config, "ece"), col(runs, "baseline", "ece"), f"{config}: higher ECE")
    assert_smaller(col(runs, config, "confidence"), col(runs, config, "accuracy"),
                   f"{config}: mean confidence below accuracy")


def test_augmentation_lowers_the_test_loss(runs):
    assert_smaller(col(runs, "+ augmentation", "nll"), col(runs, "baseline", "nll"),
                   "+ augmentation: lower test cross-entropy")


def test_augmentation_accuracy_gain_is_within_noise(runs):
    assert_within_noise(col(runs, "+ augmentation", "accuracy"), col(runs, "baseline", "accuracy"),
                        "+ augmentation: accuracy within noise of the baseline", tolerance=0.03)


def test_dropout_lowers_the_ece(runs):
    assert_smaller(col(runs, "+ dropout", "ece"), col(runs, "baseline", "ece"), "+ dropout: lower ECE")


@pytest.mark.parametrize("config", ["+ L2", "+ warm-up/cosine"])
@pytest.mark.parametrize("metric, tolerance", [("accuracy", 0.02), ("ece", 0.02), ("nll", 0.05)])
def test_l2_and_the_schedule_are_within_noise(runs, config, metric, tolerance):
    assert_within_noise(col(runs, config, metric), col(runs, "baseline", metric),
                        f"{config}: {metric} within noise of the baseline", tolerance=tolerance)


def test_all_together_is_below_the_best_single_trick(runs):
    assert_smaller(col(runs, "all", "accuracy"), col(runs, "+ label smoothing", "accuracy"),
                   "all: lower accuracy than label smoothing alone")
    assert col(runs, "all", "accuracy").mean() < col(runs, "baseline", "accuracy").mean()


def test_all_together_is_the_worst_calibrated(runs):
    for config in ablation.CONFIGS:
        if config != "all":
            assert_larger(col(runs, "all", "ece"), col(runs, config, "ece"), f"all: higher ECE than {config}")
    assert_larger(col(runs, "all", "nll"), col(runs, "baseline", "nll"), "all: higher test cross-entropy")
    assert_smaller(col(runs, "all", "confidence"), col(runs, "all", "accuracy"), "all: under-confident")


def test_no_trick_costs_noticeable_time(runs):
    # "every run trained in a few seconds": within 2× of the baseline's time
    seconds = {c: col(runs, c, "seconds").mean() for c in ablation.CONFIGS}
    assert all(s < 2 * seconds["baseline"] for s in seconds.values()), seconds
