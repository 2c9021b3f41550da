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
