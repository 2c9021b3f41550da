"""Claims of the chapter "Calibration and temperature scaling" (book/calibration.ipynb)."""

import numpy as np
import pytest

from claims.stats import assert_larger, assert_larger_on_every_seed, assert_smaller, assert_within_noise, seeds
from nnh import experiments, metrics

SEEDS = seeds(6)  # each seed trains two networks (~10 s); the effects are many standard errors wide
VARIANTS = ("plain", "label smoothing 0.1")


@pytest.fixture(scope="module")
def runs():
    splits = experiments.calibration_splits()
    y_test = splits[0].y_test
    out = {}
    for seed in SEEDS:
        trained = experiments.temperature_scaling(seed, splits=splits)
        for name, run in trained.items():
            report = experiments.temperature_report(run, y_test)
            report["train_accuracy"] = run["train_accuracy"]
            scaled = metrics.softmax(run["test_logits"], run["T"])
            report["error share after"] = experiments.error_share(scaled, y_test)
            if name == "plain":  # the chapter's simulation: the scaled plain network as the pool
                report["sim"] = experiments.calibrated_scores(scaled, seed=seed)
            out[name, seed] = report
    return out


def col(runs, name, key):
    return np.array([runs[name, s][key] for s in SEEDS])


def sim_col(runs, n, score, stat=np.mean):
    return np.array([stat(runs["plain", s]["sim"][n][score]) for s in SEEDS])


def test_both_networks_fit_their_training_digits(runs):
    # "Both networks classify all their training digits right"
    for name in VARIANTS:
        assert np.all(col(runs, name, "train_accuracy") == 1.0), (name, col(runs, name, "train_accuracy"))


def test_plain_is_over_confident_and_label_smoothing_under_confident(runs):
    # "mean confidence minus accuracy is +... for the plain network (...: over-confident) and
    #  -... for the label-smoothed one (...: under-confident)"
    gap = lambda name: col(runs, name, "confidence before") - col(runs, name, "accuracy before")  # noqa: E731
    assert np.all(gap("plain") > 0), gap("plain")
    assert np.all(gap("label smoothing 0.1") < 0), gap("label smoothing 0.1")


def test_the_temperature_finds_the_direction(runs):
    # "the temperature is above 1 for the plain network and below 1 for the label-smoothed one on every seed"
    assert np.all(col(runs, "plain", "T") > 1), col(runs, "plain", "T")
    assert np.all(col(runs, "label smoothing 0.1", "T") < 1), col(runs, "label smoothing 0.1", "T")


def test_accuracy_is_unchanged(runs):
    # "The accuracy did not change ... as it must."
    for name in VARIANTS:
        np.testing.assert_array_equal(col(runs, name, "accuracy after"), col(runs, name, "accuracy before"))


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("score", ["ECE", "NLL", "Brier"])
def test_scaling_lowers_every_score(runs, name, score):
    # "scaling lowers the test ECE, NLL and Brier score of both networks on average, by more than
    #  the spread between seeds"
    assert_smaller(col(runs, name, f"{score} after"), col(runs, name, f"{score} before"),
                   f"{name}: temperature scaling lowers the test {score}")


@pytest.mark.parametrize("name", VARIANTS)
def test_confidence_moves_to_the_accuracy(runs, name):
    # "Mean confidence minus accuracy is now +... and +..." (from +0.03 and -0.13 before)
    before = np.abs(col(runs, name, "confidence before") - col(runs, name, "accuracy before"))
    after = np.abs(col(runs, name, "confidence after") - col(runs, name, "accuracy after"))
    assert_larger_on_every_seed(before, after, f"{name}: |confidence − accuracy| shrinks")
    assert np.all(after < 0.02), after


@pytest.mark.parametrize("name", VARIANTS)
def test_the_brier_score_moves_least(runs, name):
    # "The Brier score moves least" (relative to its value before)
    drop = {s: 1 - col(runs, name, f"{s} after") / col(runs, name, f"{s} before") for s in ("ECE", "NLL", "Brier")}
    assert_larger_on_every_seed(drop["NLL"], drop["Brier"], f"{name}: NLL drops more than Brier")
    assert_larger_on_every_seed(drop["ECE"], drop["Brier"], f"{name}: ECE drops more than Brier")


def test_most_of_the_brier_score_comes_from_the_errors(runs):
    # "most of it (X % for the scaled plain network) comes from the misclassified digits"
    share = col(runs, "plain", "error share after")
    assert np.all(share > 0.5), share


def test_ece_of_calibrated_predictions_falls_with_n(runs):
    # "Even if the true accuracy equals the confidence ... the ECE of a perfectly calibrated model
    #  is above 0, more so the fewer examples per bin."
    sizes = experiments.ECE_SAMPLE_SIZES
    means = np.array([sim_col(runs, n, "ECE") for n in sizes])  # (sizes, seeds)
    assert np.all(np.diff(means, axis=0) < 0), means
    for small, large in zip(sizes, sizes[1:]):
        assert_larger(sim_col(runs, small, "ECE"), sim_col(runs, large, "ECE"),
                      f"calibrated ECE at N={small} above N={large}")
    # "(never below ... in 50 draws)": positive in every draw at N = 450
    assert np.all(sim_col(runs, 450, "ECE", np.min) > 0)


def test_ece_falls_roughly_as_one_over_root_n(runs):
    # "... times smaller for 100 times more data, close to the 1/sqrt(N) of a sampling error"
    ratio = sim_col(runs, 100, "ECE") / sim_col(runs, 10000, "ECE")
    assert np.all((ratio > 6) & (ratio < 15)), ratio


@pytest.mark.parametrize("score", ["NLL", "Brier"])
def test_proper_scores_have_no_small_n_bias(runs, score):
    # "their means stay at ... from N = 100 to 10,000, only their spread shrinks"
    assert_within_noise(sim_col(runs, 100, score), sim_col(runs, 10000, score),
                        f"mean {score} of calibrated predictions does not depend on N", tolerance=0.01)
    assert np.all(sim_col(runs, 100, score, np.std) > sim_col(runs, 10000, score, np.std))


@pytest.mark.parametrize("name", VARIANTS)
def test_scaled_ece_is_at_the_floor_and_unscaled_above_it(runs, name):
    # "The scaled networks' test ECEs ... are of the size of this floor"
    floor, sd = sim_col(runs, 450, "ECE"), sim_col(runs, 450, "ECE", np.std)
    after, before = col(runs, name, "ECE after"), col(runs, name, "ECE before")
    assert np.all(after < floor + 2 * sd), (after, floor, sd)
    # "The ECEs before scaling ... are well above the floor."
    assert_larger(before, floor + 2 * sd, f"{name}: ECE before scaling above the calibrated floor")
