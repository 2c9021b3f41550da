"""nnh.experiments: the chapters' set-ups, shared with tests/claims/."""

import dataclasses

import keras
import numpy as np
import pytest

from nnh import data, experiments, schedules


def test_make_regularizer():
    assert experiments.make_regularizer(None) is None
    l2, l1 = experiments.make_regularizer("L2"), experiments.make_regularizer("L1", 0.5)
    assert isinstance(l2, keras.regularizers.L2) and l2.get_config()["l2"] == pytest.approx(1e-3)
    assert isinstance(l1, keras.regularizers.L1) and l1.get_config()["l1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="kind must be None, 'L2' or 'L1'"):
        experiments.make_regularizer("L3")


def test_schedule_candidates_are_the_chapters_schedules():
    setup = experiments.SCHEDULES
    per_epoch = int(np.ceil(1347 / setup.batch_size))
    total, peak = setup.epochs * per_epoch, setup.learning_rate
    made = {name: make() for name, make in experiments.schedule_candidates(setup, 1347).items()}
    steps = np.arange(0, total + 1, 7)
    assert made["constant"] == peak
    rate = lambda s, t: float(keras.ops.convert_to_numpy(s(t)))  # noqa: E731
    np.testing.assert_allclose([rate(made["step"], t) for t in steps],
                               schedules.step_decay(steps, peak, drop=0.3, every=4 * per_epoch), rtol=1e-5)
    np.testing.assert_allclose([rate(made["warm-up + cosine"], t) for t in steps],
                               schedules.warmup_cosine(steps, 2 * per_epoch, total, peak), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([rate(made["cosine"], t) for t in steps],
                               schedules.cosine_decay(steps, total, peak), rtol=1e-5, atol=1e-7)


def test_penalty_report_on_a_short_run():
    split = data.digits(n_train=100)
    setup = dataclasses.replace(experiments.PENALTIES, epochs=2)
    run = experiments.train_penalized(keras.regularizers.L1(1e-3), split=split, setup=setup)
    report = experiments.penalty_report(run, split)
    assert report["gap"] == pytest.approx(report["val_ce"] - report["train_ce"])
    assert report["penalty"] > 0 and 0 <= report["exact_zero"] <= report["very_near_zero"] <= report["near_zero"] <= 1
    assert report["val_acc"] == pytest.approx(run.history["val_accuracy"][-1])


def test_calibration_report():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    report = experiments.calibration_report(probs, np.array([0, 1, 1, 1]), n_bins=10)
    assert report["accuracy"] == 0.75 and report["confidence"] == pytest.approx(0.75)
    assert report["conf − acc"] == pytest.approx(0.0)


def test_train_adam_variants_on_short_runs():
    split = data.digits(n_train=100)
    setup = dataclasses.replace(experiments.PENALTIES, epochs=2)
    run = experiments.train_adam("AdamW", split=split, setup=setup)
    optimizer = run.model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == 1.0
    decayed = {v.name: optimizer._use_weight_decay(v) for v in run.model.trainable_variables}
    assert decayed and all(decayed[name] == ("bias" not in name) for name in decayed)  # kernels only
    assert run.model.losses == []  # decoupled: no penalty in the loss
    run = experiments.train_adam("Adam + L2", split=split, setup=setup)
    assert type(run.model.optimizer) is keras.optimizers.Adam and len(run.model.losses) == 3
    with pytest.raises(ValueError, match="variant must be one of"):
        experiments.train_adam("SGDW", split=split, setup=setup)


class StopAtOnce(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def test_train_penalized_passes_callbacks_to_fit():
    setup = dataclasses.replace(experiments.PENALTIES, epochs=3)
    run = experiments.train_penalized(split=data.digits(n_train=100), setup=setup, callbacks=[StopAtOnce()])
    assert len(run.history["loss"]) == 1 and len(run.history["val_loss"]) == 1


# --- chapter "calibration" ---------------------------------------------------------------


def test_calibration_splits_are_disjoint_and_stratified():
    split, x_val, y_val = experiments.calibration_splits()
    assert (len(split.x_train), len(x_val), len(split.x_test)) == (200, 300, 450)
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    assert not rows(split.x_train) & rows(x_val) and not rows(x_val) & rows(split.x_test)
    assert not rows(split.x_train) & rows(split.x_test)
    assert np.bincount(y_val).min() >= 29 and np.bincount(split.y_train).min() >= 19
    np.testing.assert_array_equal(split.y_test, data.digits().y_test)


def test_logits_are_the_pre_softmax_outputs():
    from nnh import metrics, models

    keras.utils.set_random_seed(0)
    model = models.mlp(hidden=(16, 8))
    x = np.random.default_rng(0).random((5, 64)).astype("float32")
    z = experiments.logits(model, x)
    p = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(metrics.softmax(z), p, atol=1e-6)
    # the same as a copy of the model without the softmax
    head = keras.layers.Dense(10)
    head.build((None, 8))
    head.set_weights(model.layers[-1].get_weights())
    body = x
    for layer in model.layers[:-1]:
        body = layer(body)
    np.testing.assert_allclose(z, keras.ops.convert_to_numpy(head(body)), rtol=1e-5, atol=1e-5)


def test_calibrated_scores_draw_calibrated_labels():
    pool = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    result = experiments.calibrated_scores(pool, sizes=(20000,), repeats=2, seed=1)
    assert set(result) == {20000} and all(len(v) == 2 for v in result[20000].values())
    # the labels follow the rows, so accuracy = confidence and the ECE is near 0 at large N
    assert np.all(result[20000]["ECE"] < 0.01)
    expected_nll = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)
                     + 0.1 * np.log(0.1) + 0.1 * np.log(0.1) + 0.8 * np.log(0.8)) / 2
    np.testing.assert_allclose(result[20000]["NLL"], expected_nll, atol=0.02)


def test_error_share():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1])  # the second is wrong
    per_example = np.array([0.02, 0.72, 0.18])
    assert experiments.error_share(probs, labels) == pytest.approx(0.72 / per_example.sum())
    assert experiments.error_share(probs, np.array([0, 0, 1])) == 0.0


def test_late_loss_rises_are_epoch_over_epoch_ratios():
    history = {"loss": [4.0, 2.0, 1.0, 2.0, 1.0, 0.5, 1.0, 0.5]}
    np.testing.assert_allclose(experiments.late_loss_rises(history, start=5), [0.5, 2.0, 0.5])
    assert len(experiments.late_loss_rises({"loss": list(range(10, 0, -1))})) == 5  # the last five of ten


def test_smooth_is_a_bias_corrected_moving_average():
    np.testing.assert_allclose(experiments.smooth(np.full(7, 3.0)), 3.0)  # no bias towards 0
    values = np.array([1.0, 3.0, 2.0])
    beta = 0.9
    ema = [0.1 * 1.0, 0.9 * 0.1 + 0.1 * 3.0]
    ema.append(0.9 * ema[1] + 0.1 * 2.0)
    expected = [e / (1 - beta ** (i + 1)) for i, e in enumerate(ema)]
    np.testing.assert_allclose(experiments.smooth(values, beta), expected)


@pytest.mark.parametrize("trainer", ["fit", "fit_augmented"])
def test_several_updates_per_call_change_no_number(trainer, monkeypatch):
    """nnh trains with ``steps_per_execution=training.STEPS_PER_EXECUTION`` for speed: the
    histories, the per-update rates and the test accuracy equal those of one update per
    call (dropout, a schedule, random shifts and mixup included)."""
    from nnh import augment, models, training

    def run():
        if trainer == "fit":
            split = data.digits(n_train=150)
            return training.fit(lambda: models.mlp(hidden=(32,), dropout=0.3), split,
                                schedules.WarmupCosine(5, 20, 0.05), epochs=4, batch_size=32, seed=3,
                                test_every_epoch=True)
        split = data.digits(flat=False, n_train=150)
        return augment.fit_augmented(
            lambda: models.cnn(split.x_train.shape[1:], filters=(4,), dense=8, dropout=0.2), split, 0.01,
            epochs=3, batch_size=32, seed=3, mixup_alpha=0.2,
            transform=lambda x, rng: augment.random_shift(x, 1, rng))

    fast = run()
    monkeypatch.setattr(training, "STEPS_PER_EXECUTION", 1)
    monkeypatch.setattr(augment, "STEPS_PER_EXECUTION", 1)
    slow = run()
    assert fast.history == slow.history
    assert fast.rates == slow.rates and len(fast.rates) == len(fast.history["loss"]) * 5
    assert fast.test_accuracy == slow.test_accuracy


@pytest.mark.parametrize("trainer", ["fit", "fit_augmented"])
def test_a_stand_in_trains_exactly_as_the_model_itself(trainer, monkeypatch):
    """training.trained_in_place_of: models compiled alike are trained by one stand-in with one
    traced training function.  Every number is what training each model itself gives (history,
    rates, test accuracy, weights, random-seed states, optimizer state, the global random state
    afterwards), whatever ran before; the models stay independent and usable."""
    import random

    from nnh import augment, models, training

    def run(seed):
        if trainer == "fit":
            split = data.digits(n_train=150)
            result = training.fit(
                lambda: models.mlp(hidden=(32,), dropout=0.3, batch_norm=True,
                                   kernel_regularizer=keras.regularizers.L2(1e-3)), split,
                schedules.WarmupCosine(5, 20, 0.05), epochs=4, batch_size=32, seed=seed, test_every_epoch=True,
                callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=2, restore_best_weights=True)])
        else:
            split = data.digits(flat=False, n_train=150)
            result = augment.fit_augmented(
                lambda: models.cnn(split.x_train.shape[1:], filters=(4,), dense=8, dropout=0.2), split, 0.01,
                epochs=3, batch_size=32, seed=seed, mixup_alpha=0.2, label_smoothing=0.1,
                transform=lambda x, rng: augment.random_shift(x, 1, rng))
        return result, [v.numpy() for v in result.model.variables + result.model.optimizer.variables], \
            (random.random(), np.random.random(), float(keras.random.uniform(())))

    def check_equal(a, b):
        assert a[0].history == b[0].history and a[0].rates == b[0].rates
        assert a[0].test_accuracy == b[0].test_accuracy
        assert len(a[1]) == len(b[1]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))
        assert a[2] == b[2]

    training._trainers.clear()
    first, second, again = run(3), run(4), run(3)  # the stand-in is made for seed 3, reused twice
    assert len(training._trainers) == 1
    trainer_model = next(iter(training._trainers.values()))[0]
    assert all(r[0].model is not trainer_model for r in (first, second, again))
    check_equal(first, again)
    assert all(np.array_equal(v.numpy(), w) for v, w in zip(first[0].model.variables, first[1]))  # untouched
    monkeypatch.setattr(training, "TRAINERS", 0)
    check_equal(first, run(3))
    check_equal(second, run(4))
    assert first[0].history != second[0].history
    # the model handed back is compiled and trained: evaluate and fit work on it
    split = data.digits(n_train=150, flat=trainer == "fit")
    labels = split.y_test if trainer == "fit" else augment.one_hot(split.y_test, 10)
    _, accuracy = again[0].model.evaluate(split.x_test, labels, verbose=0)
    assert accuracy == pytest.approx(again[0].test_accuracy, abs=1e-6)


def test_a_model_without_a_stand_in_is_trained_itself():
    """A model Keras cannot rebuild from its config (a lambda as the loss) or one already
    trained is yielded itself; a plain one gets a stand-in."""
    from nnh import models, training

    import warnings

    model = models.mlp(hidden=(8,))
    model.compile(optimizer="sgd", loss=lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and silently: a notebook would show a warning
        with training.trained_in_place_of(model) as trainer:
            assert trainer is model
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with training.trained_in_place_of(model) as trainer:
        assert trainer is not model and trainer.optimizer is not model.optimizer
    assert model.optimizer.built  # it took the stand-in's optimizer state: now it is trained
    with training.trained_in_place_of(model) as trainer:
        assert trainer is model


@pytest.mark.parametrize("options", [{}, {"dropout": 0.5}, {"batch_norm": True}])
def test_eager_predictions_are_what_keras_predict_and_evaluate_give(options):
    """nnh.training.predict (no traced function) in place of Model.predict / Model.evaluate:
    the same probabilities, the test accuracy and dropout_report's training loss and accuracy
    of Keras' own evaluate (dropout and batch norm in inference mode)."""
    from nnh import models, training

    split = data.digits(n_train=200)
    run = training.fit(lambda: models.mlp(hidden=(32,), **options), split, 0.01, epochs=2, seed=0,
                       test_every_epoch=True)
    keras_probs = run.model.predict(split.x_test, batch_size=64, verbose=0)
    probs = training.predict(run.model, split.x_test, batch_size=100)  # batches of other sizes
    assert probs.dtype == np.float64 and probs.shape == keras_probs.shape
    np.testing.assert_allclose(probs, keras_probs, rtol=1e-5, atol=1e-7)
    # inference mode: one batch or several give the same (up to the float32 sums' order)
    np.testing.assert_allclose(training.predict(run.model, split.x_test), probs, rtol=1e-5, atol=1e-7)
    plain = training.fit(lambda: models.mlp(hidden=(32,), **options), split, 0.01, epochs=2, seed=0)
    _, accuracy = plain.model.evaluate(split.x_test, split.y_test, verbose=0)
    assert plain.test_accuracy == pytest.approx(accuracy, abs=1e-6)
    loss, accuracy = run.model.evaluate(split.x_train, split.y_train, verbose=0)
    report = experiments.dropout_report(run, split)
    assert report["train_loss"] == pytest.approx(loss, rel=1e-5)
    assert report["train_acc"] == pytest.approx(accuracy, abs=1e-6)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        training.predict(run.model, split.x_test, batch_size=0)


@pytest.mark.parametrize("options", [{"kernel_regularizer": "L2"}, {"dropout": 0.5}, {"batch_norm": True}])
def test_eager_validation_reports_what_keras_validation_data_reports(options):
    """training.fit(test_every_epoch=True) validates with nnh.training.EagerValidation: the
    val_loss (cross-entropy plus the penalties) and val_accuracy of Keras' validation_data,
    epoch by epoch, and EarlyStopping placed after it reads them."""
    from nnh import models, training

    split = data.digits(n_train=200)
    if options.get("kernel_regularizer") == "L2":
        options = {"kernel_regularizer": keras.regularizers.L2(1e-2)}

    def build():
        return models.mlp(hidden=(32,), **options)

    ours = training.fit(build, split, 0.01, epochs=4, batch_size=64, seed=0, test_every_epoch=True,
                        callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=10)])
    training.set_seed(0)
    model = build()
    model.compile(optimizer=training.make_optimizer("sgd", 0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    theirs = model.fit(training.batches(split.x_train, split.y_train, 64, seed=0), shuffle=False, epochs=4,
                       validation_data=training.batches(split.x_test, split.y_test, 512, shuffle=False),
                       verbose=0).history
    np.testing.assert_allclose(ours.history["loss"], theirs["loss"], rtol=1e-6)  # the same training
    np.testing.assert_allclose(ours.history["val_loss"], theirs["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(ours.history["val_accuracy"], theirs["val_accuracy"], atol=1e-6)
    if "kernel_regularizer" in options:  # the penalty is in val_loss, as in Keras
        penalty = float(sum(keras.ops.convert_to_numpy(p) for p in ours.model.losses))
        assert penalty > 1e-3 and ours.history["val_loss"][-1] > experiments.cross_entropy(
            ours.model, split.x_test, split.y_test) + 0.9 * penalty
    assert ours.test_accuracy == ours.history["val_accuracy"][-1]
