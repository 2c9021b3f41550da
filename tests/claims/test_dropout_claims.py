"""Claims of the chapter "Dropout" (book/dropout.ipynb), re-checked on fresh seeds.

Each variant of :data:`nnh.experiments.DROPOUT_VARIANTS` is trained at most once per
seed (a module-wide cache), and each claim asks for the seeds it needs: ``N`` for
every variant, ``N_SMALL`` for the smaller effects of dropout (a run takes ~5 s).
"""

import numpy as np
import pytest

from claims.stats import assert_close, assert_larger, assert_larger_on_every_seed, assert_smaller, column, seeds
from nnh import data, dropout, experiments

N = 5  # seeds for the large effects (dropout 0.5 vs none, batch norm, Monte-Carlo dropout)
N_SMALL = 8  # seeds for the effects of dropout 0.2 and the accuracy claims (none, 0.2, 0.5 only)


@pytest.fixture(scope="module")
def split():
    return data.digits(n_train=experiments.DROPOUT.n_train)


@pytest.fixture(scope="module")
def runs(split):
    """``runs(names, n)`` → ``{(name, seed): report + {"run": RunResult}}`` for ``seeds(n)``."""
    cache = {}

    def get(names, n):
        for seed in seeds(n):
            missing = [name for name in names if (name, seed) not in cache]
            for name, run in experiments.compare_dropout(seed, split=split, names=missing).items():
                cache[name, seed] = {**experiments.dropout_report(run, split), "run": run}
        return {(name, seed): cache[name, seed] for name in names for seed in seeds(n)}

    return get


def test_every_model_memorizes_the_training_set(runs):
    # "Every model memorises the training set."  (inference-mode training accuracy)
    rows = runs(experiments.DROPOUT_VARIANTS, N)
    for name in experiments.DROPOUT_VARIANTS:
        assert np.all(column(rows, name, "train_acc") >= 0.99), (name, column(rows, name, "train_acc"))


@pytest.mark.parametrize("name", ["dropout 0.2", "dropout 0.5"])
def test_dropout_delays_and_lowers_the_minimum_of_the_validation_loss(runs, name):
    # "Dropout delays and lowers that minimum — epoch ... at rate 0.2, epoch ... at rate 0.5"
    rows = runs(["none", name], N_SMALL if name == "dropout 0.2" else N)
    assert_larger(column(rows, name, "best_epoch"), column(rows, "none", "best_epoch"),
                  f"{name}: later minimum of the validation loss than none")
    assert_smaller(column(rows, name, "best_val_loss"), column(rows, "none", "best_val_loss"),
                   f"{name}: lower minimum of the validation loss than none")


def test_without_dropout_the_validation_loss_climbs_after_its_minimum(runs):
    # "Without dropout the validation loss is lowest at epoch ... and then climbs to ..."
    rows = runs(["none"], N)
    assert_larger(column(rows, "none", "val_loss"), column(rows, "none", "best_val_loss"),
                  "none: final validation loss above its minimum")


def test_the_final_validation_loss_falls_with_the_dropout_rate(runs):
    # "the final validation loss falls with the rate: none, 0.2, 0.5"
    rows = runs(["none", "dropout 0.2", "dropout 0.5"], N_SMALL)
    assert_smaller(column(rows, "dropout 0.2", "val_loss"), column(rows, "none", "val_loss"),
                   "dropout 0.2: lower final validation loss than none")
    assert_smaller(column(rows, "dropout 0.5", "val_loss"), column(rows, "dropout 0.2", "val_loss"),
                   "dropout 0.5: lower final validation loss than dropout 0.2")


def test_dropout_changes_the_validation_accuracy_little(runs):
    # "rate 0.5 raises the validation accuracy by a small but consistent amount, less than
    # 1.5 percentage points, and rate 0.2 changes it by less than one point"
    rows = runs(["none", "dropout 0.2", "dropout 0.5"], N_SMALL)
    none = column(rows, "none", "val_acc")
    assert_larger(column(rows, "dropout 0.5", "val_acc"), none, "dropout 0.5: higher validation accuracy than none")
    assert_close(column(rows, "dropout 0.5", "val_acc"), none,
                 "dropout 0.5: validation accuracy within 1.5 points of none", tolerance=0.015)
    assert_close(column(rows, "dropout 0.2", "val_acc"), none,
                 "dropout 0.2: validation accuracy within 1 point of none", tolerance=0.01)


def test_the_logged_training_loss_is_measured_with_dropout_on(runs):
    # "the dropout-0.5 network ends with a logged training loss of ... but with dropout off the
    # same weights score ... on the training set"  (logged loss several times the inference one)
    rows = runs(["dropout 0.5"], N)
    assert_larger(np.log(column(rows, "dropout 0.5", "logged_loss")),
                  np.log(column(rows, "dropout 0.5", "train_loss")) + np.log(3),
                  "dropout 0.5: logged (dropout on) training loss > 3× the inference-mode one")


def test_batch_norm_099_moving_statistics_lag(runs):
    # "the same weights with their moving statistics score ... (N times more) on the same training
    # digits" [more than 10×]; "With momentum 0.9 ... the inference loss on the training digits ...
    # is no higher than the logged one"
    rows = runs(["batch norm 0.99", "batch norm 0.9"], N)
    assert_larger(np.log(column(rows, "batch norm 0.99", "train_loss")),
                  np.log(column(rows, "batch norm 0.99", "logged_loss")) + np.log(10),
                  "batch norm 0.99: inference-mode training loss > 10× the logged one")
    assert_smaller(column(rows, "batch norm 0.9", "train_loss"), column(rows, "batch norm 0.9", "logged_loss"),
                   "batch norm 0.9: inference-mode training loss below the logged one")


def test_momentum_does_not_change_batch_norm_training(runs):
    # "Momentum does not change the training at all ... both batch-norm runs train the same weights
    # (their logged training curves coincide)"
    rows = runs(["batch norm 0.99", "batch norm 0.9"], N)
    for (name, seed), row in rows.items():
        if name == "batch norm 0.99":
            other = rows["batch norm 0.9", seed]["run"].history
            np.testing.assert_allclose(row["run"].history["loss"], other["loss"], rtol=1e-5)
            np.testing.assert_allclose(row["run"].history["accuracy"], other["accuracy"], rtol=1e-5)


def test_batch_norm_099_validation_loss_is_still_falling(runs):
    # "its validation loss is still falling at the last epoch (lowest at epoch 60)"
    rows = runs(["batch norm 0.99"], N)
    last = experiments.DROPOUT.epochs
    assert np.all(column(rows, "batch norm 0.99", "best_epoch") >= last - 2), column(rows, "batch norm 0.99",
                                                                                      "best_epoch")
    earlier = np.array([r["run"].history["val_loss"][-11] for (n, _), r in sorted(rows.items())])
    assert_smaller(column(rows, "batch norm 0.99", "val_loss"), earlier,
                   "batch norm 0.99: validation loss lower at the last epoch than 10 epochs earlier")


def test_batch_norm_099_beats_no_regularisation_but_not_dropout(runs):
    # "With Keras' default momentum 0.99 it ends at ...: below no regularisation and, on fresh
    # seeds, level with dropout 0.5"; "(within 0.03 of its validation loss on fresh seeds)"
    rows = runs(["none", "dropout 0.5", "batch norm 0.99"], N)
    assert_smaller(column(rows, "batch norm 0.99", "val_loss"), column(rows, "none", "val_loss"),
                   "batch norm 0.99: lower final validation loss than none")
    assert_close(column(rows, "batch norm 0.99", "val_loss"), column(rows, "dropout 0.5", "val_loss"),
                 "batch norm 0.99 and dropout 0.5: final validation losses within 0.03", tolerance=0.03)


def test_batch_norm_09_reaches_the_lowest_validation_loss(runs):
    # "With momentum 0.9, batch normalisation reaches the lowest validation loss of the five"
    rows = runs(experiments.DROPOUT_VARIANTS, N)
    for name in ("none", "dropout 0.2", "dropout 0.5", "batch norm 0.99"):
        assert_smaller(column(rows, "batch norm 0.9", "val_loss"), column(rows, name, "val_loss"),
                       f"batch norm 0.9: lower final validation loss than {name}")



@pytest.fixture(scope="module")
def monte_carlo(runs, split):
    """Per seed: the dropout-0.5 model's MC summary, predictive entropy and deterministic prediction."""
    out = []
    for (_, seed), row in sorted(runs(["dropout 0.5"], N).items()):
        model = row["run"].model
        probs = dropout.mc_dropout_predict(model, split.x_test, n_samples=30, seed=0)
        out.append((dropout.mc_summary(probs), dropout.predictive_entropy(probs),
                    model.predict(split.x_test, verbose=0).argmax(axis=1)))
    return out


def test_monte_carlo_mean_agrees_with_the_deterministic_prediction(monte_carlo, split):
    # "The mean ... picks the same class as the deterministic network for [nearly all] of the digits"
    agree = [np.mean(mc.predicted == det) for mc, _, det in monte_carlo]
    assert_larger(agree, np.full(len(agree), 0.97), "MC mean agrees with the deterministic prediction on > 97 %")
    # "the two accuracies differ by less than two percentage points"
    mc_acc = [np.mean(mc.predicted == split.y_test) for mc, _, _ in monte_carlo]
    det_acc = [np.mean(det == split.y_test) for _, _, det in monte_carlo]
    assert_close(mc_acc, det_acc, "MC-mean and deterministic accuracy within 2 points", tolerance=0.02)


def test_monte_carlo_spread_and_entropy_are_larger_on_wrong_digits(monte_carlo, split):
    # "the spread is [several times] larger on the misclassified digits";
    # "the predictive entropy is [several times] higher on the misclassified digits"
    spread, entropy = [], []
    for mc, h, _ in monte_carlo:
        wrong = mc.predicted != split.y_test
        spread.append(mc.spread[wrong].mean() / mc.spread[~wrong].mean())
        entropy.append(h[wrong].mean() / h[~wrong].mean())
    assert_larger(np.log(spread), np.full(len(spread), np.log(2.0)), "MC spread ≥ 2× larger on wrong digits")
    assert_larger(np.log(entropy), np.full(len(entropy), np.log(2.0)), "predictive entropy ≥ 2× higher on wrong digits")
    assert_larger_on_every_seed(np.log(entropy), np.zeros(len(entropy)), "entropy higher on wrong digits, every seed")
