"""Claims of the chapter "Learning-rate schedules" (book/schedules.ipynb)."""

import numpy as np
import pytest

from claims.stats import SEEDS, assert_larger, assert_larger_on_every_seed, assert_within_noise
from nnh import experiments

DECAYED = ("step", "cosine", "warm-up + cosine")


@pytest.fixture(scope="module")
def runs():
    return experiments.compare_schedules(SEEDS)


def per_seed(runs, name, what):
    return np.array([runs[name, s].history["loss"][-1] if what == "loss" else runs[name, s].test_accuracy
                     for s in SEEDS])


@pytest.mark.parametrize("name", DECAYED)
def test_decaying_the_rate_lowers_the_training_loss(runs, name):
    # "Seed by seed, the constant rate's loss is N to M times that of a decaying schedule";
    # "decaying the rate lowered the final training loss on every seed"
    constant, decayed = np.log10(per_seed(runs, "constant", "loss")), np.log10(per_seed(runs, name, "loss"))
    assert_larger(constant, decayed, f"{name}: lower final training loss than the constant rate")
    assert_larger_on_every_seed(constant, decayed, f"{name}: lower final training loss on every seed")


def test_the_constant_rate_ends_with_a_loss_several_times_the_decayed_ones(runs):
    # "a mean training loss ... at least N times higher than the mean of any of the three decaying schedules"
    constant = per_seed(runs, "constant", "loss").mean()
    assert all(constant > 3 * per_seed(runs, name, "loss").mean() for name in DECAYED)


@pytest.mark.parametrize("name", DECAYED)
def test_decaying_the_rate_raises_the_test_accuracy_on_every_seed(runs, name):
    # "A decaying schedule beats the constant rate on both loss and accuracy in N of the N pairs ...
    # the accuracy gain is consistent in sign, not in size"
    assert_larger_on_every_seed(per_seed(runs, name, "accuracy"), per_seed(runs, "constant", "accuracy"),
                                f"{name}: higher test accuracy than the constant rate")


@pytest.mark.parametrize("a, b", [("step", "cosine"), ("cosine", "warm-up + cosine"),
                                  ("step", "warm-up + cosine")])
def test_the_choice_of_decay_and_warm_up_is_within_noise(runs, a, b):
    # "Which decay, and warm-up, is within noise here": test accuracy within noise
    assert_within_noise(per_seed(runs, a, "accuracy"), per_seed(runs, b, "accuracy"),
                        f"{a} and {b}: same test accuracy within the seed noise", tolerance=0.01)
