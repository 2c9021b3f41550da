"""Claims of the chapter "Dropout" (book/dropout.ipynb)."""

import numpy as np
import pytest

from claims.stats import SEEDS, column, assert_larger, assert_smaller, assert_within_noise
from nnh import data, dropout, experiments


@pytest.fixture(scope="module")
def split():
    return data.digits(n_train=experiments.DROPOUT.n_train)


@pytest.fixture(scope="module")
def trained(split):
    return {seed: experiments.compare_dropout(seed, split=split) for seed in SEEDS}


@pytest.fixture(scope="module")
def rows(trained, split):
    return {(name, seed): experiments.dropout_report(run, split)
            for seed, runs in trained.items() for name, run in runs.items()}


def test_every_model_memorizes_the_training_set(rows):
    for name in experiments.DROPOUT_VARIANTS:
        assert np.all(column(rows, name, "train_acc") >= 0.99), (name, column(rows, name, "train_acc"))


def test_the_final_validation_loss_falls_with_the_dropout_rate(rows):
    # "the final validation loss falls with the rate: none, 0.2, 0.5"
    assert_smaller(column(rows, "dropout 0.2", "val_loss"), column(rows, "none", "val_loss"),
                   "dropout 0.2: lower final validation loss than none")
    assert_smaller(column(rows, "dropout 0.5", "val_loss"), column(rows, "dropout 0.2", "val_loss"),
                   "dropout 0.5: lower final validation loss than dropout 0.2")


def test_dropout_delays_and_lowers_the_minimum_of_the_validation_loss(rows):
    assert_larger(column(rows, "dropout 0.5", "best_epoch"), column(rows, "none", "best_epoch"),
                  "dropout 0.5: later minimum of the validation loss")
    assert_smaller(column(rows, "dropout 0.5", "best_val_loss"), column(rows, "none", "best_val_loss"),
                   "dropout 0.5: lower minimum of the validation loss")


def test_without_dropout_the_validation_loss_climbs_after_its_minimum(rows):
    assert_larger(column(rows, "none", "val_loss"), column(rows, "none", "best_val_loss"),
                  "none: final validation loss above its minimum")


def test_batch_norm_reaches_the_lowest_validation_loss(rows):
    for name in ("none", "dropout 0.2", "dropout 0.5"):
        assert_smaller(column(rows, "batch norm", "val_loss"), column(rows, name, "val_loss"),
                       f"batch norm: lower final validation loss than {name}")


def test_the_logged_training_loss_is_measured_with_dropout_on(rows):
    # "the dropout-0.5 network ends with a logged training loss [far above] the same weights with dropout off"
    assert_larger(np.log(column(rows, "dropout 0.5", "logged_loss")), np.log(column(rows, "dropout 0.5", "train_loss")),
                  "dropout 0.5: logged (dropout on) training loss above the inference-mode one")


@pytest.mark.parametrize("name", ["dropout 0.2", "dropout 0.5"])
def test_no_clear_gain_in_validation_accuracy_from_dropout(rows, name):
    # "dropout does not buy a clear gain in accuracy ... its accuracy differences are within noise"
    assert_within_noise(column(rows, name, "val_acc"), column(rows, "none", "val_acc"),
                        f"{name}: same validation accuracy as none", tolerance=0.015)


def test_batch_norm_raises_the_validation_accuracy(rows):
    # "Batch normalisation does better here ... the highest validation accuracy"
    assert_larger(column(rows, "batch norm", "val_acc"), column(rows, "none", "val_acc"),
                  "batch norm: higher validation accuracy than none")
    for name in ("dropout 0.2", "dropout 0.5"):
        assert column(rows, "batch norm", "val_acc").mean() > column(rows, name, "val_acc").mean(), name


def test_monte_carlo_dropout(trained, split):
    # "The mean picks the same class as the deterministic network for [nearly all] digits";
    # "the spread is [several times] larger on the misclassified digits"
    agree, ratio = [], []
    for seed in SEEDS:
        model = trained[seed]["dropout 0.5"].model
        probs = dropout.mc_dropout_predict(model, split.x_test, n_samples=30, seed=0)
        mc = dropout.mc_summary(probs)
        deterministic = model.predict(split.x_test, verbose=0).argmax(axis=1)
        agree.append(np.mean(mc.predicted == deterministic))
        wrong = mc.predicted != split.y_test
        ratio.append(mc.spread[wrong].mean() / mc.spread[~wrong].mean())
    assert_larger(agree, np.full(len(SEEDS), 0.97), "MC mean agrees with the deterministic prediction on > 97 %")
    assert_larger(np.log(ratio), np.log(np.full(len(SEEDS), 2.0)), "MC spread ≥ 2× larger on wrong digits")
