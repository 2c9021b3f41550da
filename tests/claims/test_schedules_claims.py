"""Claims of the chapter "Learning-rate schedules" (book/schedules.ipynb), on fresh seeds.

The chapter prints seeds 0-2; these tests re-run the same experiment functions
(:mod:`nnh.experiments`) on the claim seeds (:func:`claims.stats.seeds`).
"""

import numpy as np
import pytest
from scipy import stats

from claims.stats import assert_close, assert_larger, assert_larger_on_every_seed, column, seeds
from nnh import experiments

SCHEDULE_SEEDS = seeds(10)  # a run takes 1-3 s; the accuracy claims need the seed spread of 10
RANGE_SEEDS = seeds(5)  # the range test's claims hold on every seed, with a wide margin
DECAYED = ("step", "cosine", "warm-up + cosine")


@pytest.fixture(scope="module")
def runs():
    table = experiments.compare_schedules(SCHEDULE_SEEDS)
    return {key: {"loss": run.history["loss"][-1], "first_loss": run.history["loss"][0],
                  "accuracy": run.test_accuracy,
                  "max_late_rise": float(experiments.late_loss_rises(run.history).max()),
                  "late_rises": int((experiments.late_loss_rises(run.history) > 1).sum())}
            for key, run in table.items()}


@pytest.fixture(scope="module")
def sweeps():
    return [experiments.lr_range_test(seed=s, min_lr=1e-3, max_lr=10.0, steps=150) for s in RANGE_SEEDS]


@pytest.mark.parametrize("name", DECAYED)
def test_decaying_the_rate_lowers_the_training_loss(runs, name):
    # "decaying the rate lowered the final training loss on every seed"
    constant, decayed = np.log10(column(runs, "constant", "loss")), np.log10(column(runs, name, "loss"))
    assert_larger(constant, decayed, f"{name}: lower final training loss than the constant rate")
    assert_larger_on_every_seed(constant, decayed, f"{name}: lower final training loss on every seed")


def test_the_constant_rate_ends_with_a_loss_several_times_the_decayed_ones(runs):
    # "The constant rate ends with a mean training loss of ..., at least N times higher than the
    # mean of any of the three decaying schedules" (N = 16 on the book's seeds; here: at least 3)
    constant = column(runs, "constant", "loss").mean()
    ratios = {name: constant / column(runs, name, "loss").mean() for name in DECAYED}
    assert all(r > 3 for r in ratios.values()), ratios


@pytest.mark.parametrize("name", DECAYED)
def test_decaying_the_rate_raises_the_test_accuracy_on_every_seed(runs, name):
    # "a decaying schedule beats the constant rate on both loss and accuracy in N of the N pairs ...
    # the accuracy gain is consistent in sign, not in size"
    assert_larger_on_every_seed(column(runs, name, "accuracy"), column(runs, "constant", "accuracy"),
                                f"{name}: higher test accuracy than the constant rate")


@pytest.mark.parametrize("name", DECAYED)
def test_the_constant_rate_loss_spikes_late_in_training(runs, name):
    # "On ten fresh seeds every decaying schedule had fewer late rises than the constant rate,
    # and cosine decay, with or without warm-up, also a smaller largest one; for step decay ...
    # we make no claim about the size"
    assert_larger(column(runs, "constant", "late_rises"), column(runs, name, "late_rises"),
                  f"{name}: fewer late rises of the training loss than the constant rate")
    if name != "step":
        assert_larger(np.log(column(runs, "constant", "max_late_rise")), np.log(column(runs, name, "max_late_rise")),
                      f"{name}: smaller largest late rise of the training loss than the constant rate")


@pytest.mark.parametrize("name", ("step", "cosine"))
def test_the_constant_rate_accuracy_varies_more_between_seeds(runs, name):
    # "from X to Y across the three seeds (standard deviation S percentage points), against at most
    # T points for step or cosine decay": one-sided F-test of the two variances across seeds.
    # (warm-up + cosine is not claimed: on the claim seeds one of its runs is an outlier too.)
    constant, decayed = column(runs, "constant", "accuracy"), column(runs, name, "accuracy")
    ratio = np.var(constant, ddof=1) / np.var(decayed, ddof=1)
    critical = stats.f.ppf(0.95, len(constant) - 1, len(decayed) - 1)
    assert ratio > critical, (f"{name}: accuracy variance ratio {ratio:.3g} not above F critical {critical:.3g}"
                              f"\n  constant {np.round(constant, 4)}\n  {name} {np.round(decayed, 4)}")


def test_the_choice_of_decay_moves_the_accuracy_by_less_than_two_points(runs):
    # "The mean test accuracies of step and cosine decay are within two percentage points of each
    # other, seed noise included (ten fresh seeds)"
    assert_close(column(runs, "step", "accuracy"), column(runs, "cosine", "accuracy"),
                 "step and cosine: mean test accuracies within two points", tolerance=0.02)


@pytest.mark.parametrize("a", ["step", "cosine"])
def test_warm_up_matches_the_decays_on_the_median_seed(runs, a):
    # "Warm-up + cosine is within two points of either on the median seed, but its mean is not
    # pinned down that closely" (an occasional run ends several points lower: on one machine the
    # mean test of these pairs passed, on another it did not, with the same seeds)
    d = column(runs, a, "accuracy") - column(runs, "warm-up + cosine", "accuracy")
    assert abs(np.median(d)) < 0.02, (f"claim not supported: {a} and warm-up + cosine within two points on the "
                                      f"median seed: paired differences {np.round(d, 4)}")


def test_an_occasional_run_ends_several_points_lower(runs):
    # "now and then a run of step decay or warm-up + cosine ends several points below the others"
    worst = {name: column(runs, name, "accuracy").min() for name in ("step", "warm-up + cosine")}
    medians = np.median([column(runs, name, "accuracy") for name in DECAYED])
    assert min(worst.values()) < medians - 0.03, (f"claim not supported: no run of step or warm-up + cosine ended "
                                                  f"several points below the median {medians:.4f}: {worst}")


def test_warm_up_costs_early_progress(runs):
    # "Warm-up costs early progress: after the first epoch the mean training loss of warm-up + cosine
    # is X, against Y for cosine without warm-up"
    assert_larger(column(runs, "warm-up + cosine", "first_loss"), column(runs, "cosine", "first_loss"),
                  "warm-up + cosine: higher training loss after the first epoch than cosine")


def test_the_range_test_puts_the_peak_at_the_top_of_the_useful_range(sweeps):
    # "The smoothed loss is lowest at a rate of X and the test stopped (the smoothed loss had
    # quadrupled) at Y.  The experiment's peak of 0.2 is thus close to the rate at which the loss
    # stops falling, at the top of the useful range"; "a rate of 1.6 is beyond the range test's
    # stopping point at batch 32"
    best = np.array([s["rate"][np.argmin(s["smoothed"])] for s in sweeps])
    stop = np.array([s["rate"][-1] for s in sweeps])
    assert np.all((best > 0.1) & (best < 0.5)), f"rate of the lowest smoothed loss per seed: {best}"
    assert np.all(stop > 0.2), f"the range test stopped at or before the peak 0.2: {stop}"
    assert np.all(stop < 1.6), f"the loss did not diverge before a rate of 1.6 on every seed: {stop}"
