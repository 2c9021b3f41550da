"""Claims of the capstone chapter "Bag of tricks" (book/bag_of_tricks.ipynb), on the
chapter's own grid: every configuration of nnh.ablation from the same seeds.

The chapter calls a difference real when its two-sided 95 % interval excludes
zero, so the directional claims here use the one-sided test at 2.5 % (the same
margin), and "within noise" the two-sided test at 5 %.
"""

import pytest

from claims.stats import SEEDS, assert_larger, assert_smaller, assert_within_noise
from nnh import ablation

TWO_SIDED = 0.025  # one-sided level with the margin of the chapter's two-sided 95 % interval
SINGLE = [c for c in ablation.CONFIGS if c not in ("baseline", "all")]


@pytest.fixture(scope="module")
def runs():
    return ablation.run_grid(ablation.CONFIGS, SEEDS, ablation.Settings())


def col(runs, config, metric):
    return ablation.per_seed(runs, config, metric)


@pytest.mark.parametrize("config", SINGLE + ["all"])
def test_no_trick_changes_the_accuracy_beyond_the_noise(runs, config):
    # "No trick changed the test accuracy beyond the noise between seeds" (all: "within the large noise")
    assert_within_noise(col(runs, config, "accuracy"), col(runs, "baseline", "accuracy"),
                        f"{config}: test accuracy within noise of the baseline",
                        tolerance=0.05 if config == "all" else 0.025)


@pytest.mark.parametrize("config", ["+ label smoothing", "+ mixup"])
def test_label_smoothing_and_mixup_make_the_cnn_under_confident(runs, config):
    assert_larger(col(runs, config, "ece"), col(runs, "baseline", "ece"), f"{config}: higher ECE",
                  alpha=TWO_SIDED)
    assert_smaller(col(runs, config, "confidence"), col(runs, config, "accuracy"),
                   f"{config}: mean confidence below accuracy", alpha=TWO_SIDED)


def test_label_smoothing_raises_the_ece_more_than_mixup(runs):
    # "Mixup does the same, less"
    assert_larger(col(runs, "+ label smoothing", "ece"), col(runs, "+ mixup", "ece"),
                  "label smoothing: higher ECE than mixup", alpha=TWO_SIDED)


@pytest.mark.parametrize("config", ["+ L2", "+ dropout", "+ warm-up/cosine", "+ augmentation"])
@pytest.mark.parametrize("metric, tolerance", [("ece", 0.03), ("nll", 0.1)])
def test_l2_dropout_schedule_and_augmentation_change_nothing_measurable(runs, config, metric, tolerance):
    assert_within_noise(col(runs, config, metric), col(runs, "baseline", metric),
                        f"{config}: {metric} within noise of the baseline", tolerance=tolerance)


def test_all_together_has_the_lowest_mean_accuracy(runs):
    # "the accuracy has the lowest mean ... its differences ... are within the large noise"
    means = {c: col(runs, c, "accuracy").mean() for c in ablation.CONFIGS}
    assert min(means, key=means.get) == "all", means


def test_all_together_is_by_far_the_worst_calibrated(runs):
    for config in ablation.CONFIGS:
        if config != "all":
            assert_larger(col(runs, "all", "ece"), col(runs, config, "ece"), f"all: higher ECE than {config}",
                          alpha=TWO_SIDED)
    assert_larger(col(runs, "all", "nll"), col(runs, "baseline", "nll"), "all: higher test cross-entropy",
                  alpha=TWO_SIDED)
    assert_smaller(col(runs, "all", "confidence"), col(runs, "all", "accuracy"), "all: under-confident",
                   alpha=TWO_SIDED)


def test_no_trick_costs_noticeable_time(runs):
    # "every run trained in a few seconds": each configuration within 2× of the baseline's time
    seconds = {c: col(runs, c, "seconds").mean() for c in ablation.CONFIGS}
    assert all(s < 2 * seconds["baseline"] for s in seconds.values()), seconds
