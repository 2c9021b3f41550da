"""Claims of the chapter "Weight penalties" (book/regularization.ipynb)."""

import keras
import numpy as np
import pytest

from claims.stats import SEEDS, column, assert_close, assert_larger, assert_smaller
from nnh import data, experiments

MODELS = ("none", "L2", "L1")


@pytest.fixture(scope="module")
def split():
    return data.digits(n_train=experiments.PENALTIES.n_train)


@pytest.fixture(scope="module")
def reports(split):
    out = {}
    for seed in SEEDS:
        for kind in MODELS:
            run = experiments.train_penalized(experiments.make_regularizer(None if kind == "none" else kind),
                                              seed=seed, split=split)
            out[kind, seed] = dict(experiments.penalty_report(run, split), val_loss=run.history["val_loss"])
    return out


def test_without_a_penalty_the_validation_loss_rises_after_its_minimum(reports):
    # "its validation loss rises by X % after epoch N"
    end = np.array([reports["none", s]["val_loss"][-1] for s in SEEDS])
    low = np.array([min(reports["none", s]["val_loss"]) for s in SEEDS])
    assert_larger(np.log(end), np.log(low), "no penalty: final validation loss above its minimum", by=0.05)


def test_the_unpenalized_network_memorizes_the_training_set(reports):
    assert_larger(column(reports, "none", "train_acc"), np.full(len(SEEDS), 0.99),
                  "no penalty: training accuracy above 99 %")


@pytest.mark.parametrize("kind", ["L2", "L1"])
def test_penalties_narrow_the_gap_between_training_and_validation(reports, kind):
    # "Both penalties narrow the gap between training and validation"
    assert_smaller(column(reports, kind, "gap"), column(reports, "none", "gap"),
                   f"{kind}: validation − training cross-entropy smaller than without a penalty")


@pytest.mark.parametrize("kind", ["L2", "L1"])
def test_penalties_lower_the_validation_cross_entropy(reports, kind):
    # "the validation cross-entropy itself falls"
    assert_smaller(column(reports, kind, "val_ce"), column(reports, "none", "val_ce"),
                   f"{kind}: lower validation cross-entropy than without a penalty")


@pytest.mark.parametrize("kind", ["L2", "L1"])
def test_accuracy_barely_moves(reports, kind):
    # "Accuracy barely moves": less than 1.5 percentage points either way
    assert_close(column(reports, kind, "val_acc"), column(reports, "none", "val_acc"),
                 f"{kind}: validation accuracy within 1.5 points of no penalty", tolerance=0.015)


def test_l2_makes_the_weights_smaller(reports):
    assert_smaller(column(reports, "L2", "rms"), column(reports, "none", "rms"), "L2: smaller RMS of the weights")


def test_l1_puts_many_times_more_weights_near_zero_than_l2(reports):
    # "L1 puts X % of the weights within 1e-3 of zero, about N times as many as L2"
    assert_larger(np.log10(column(reports, "L1", "near_zero")), np.log10(column(reports, "L2", "near_zero")),
                  "L1: ≥ 10× as many weights with |w| ≤ 1e-3 as L2", by=1.0)
    assert_larger(column(reports, "L1", "near_zero"), np.full(len(SEEDS), 0.25),
                  "L1: more than a quarter of the weights within 1e-3 of zero")


def test_l1_does_not_make_weights_exactly_zero(reports):
    # "Exactly zero, though, are [almost none] of them"
    assert np.all(column(reports, "L1", "exact_zero") < 0.01), column(reports, "L1", "exact_zero")


def test_too_large_a_coefficient_underfits(split, reports):
    # "At λ = 3e-2 the penalty dominates: training accuracy drops ... the network underfits"
    big = {s: experiments.train_penalized(keras.regularizers.L2(3e-2), seed=s, validate=False, split=split)
           for s in SEEDS}
    train_acc = np.array([big[s].history["accuracy"][-1] for s in SEEDS])
    val_ce = np.array([experiments.cross_entropy(big[s].model, split.x_test, split.y_test) for s in SEEDS])
    assert_smaller(train_acc, column(reports, "none", "train_acc"), "λ = 3e-2: lower training accuracy")
    assert_larger(val_ce, column(reports, "L2", "val_ce"), "λ = 3e-2: higher validation cross-entropy than λ = 1e-3")
