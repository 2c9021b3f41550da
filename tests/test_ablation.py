"""nnh.ablation (the capstone experiment) and the `nnh ablation` command."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from nnh import ablation, cli

TINY = ablation.Settings(epochs=2, n_train=100, warmup_epochs=1)


def fake_runs(values: dict[str, list[float]]) -> list[ablation.Run]:
    """Runs whose every metric is the given value (per seed)."""
    return [ablation.Run(config, seed, v, v / 10, v, 1 - v, 1.0, None, None)
            for config, vs in values.items() for seed, v in enumerate(vs)]


def test_configs_are_the_baseline_each_trick_alone_and_all():
    assert list(ablation.CONFIGS) == ["baseline", "+ warm-up/cosine", "+ L2", "+ dropout", "+ augmentation",
                                      "+ label smoothing", "+ mixup", "all"]
    singles = [tricks for name, tricks in ablation.CONFIGS.items() if name not in ("baseline", "all")]
    assert sorted(t for (t,) in singles) == sorted(ablation.TRICKS)
    assert set(ablation.CONFIGS["all"]) == set(ablation.TRICKS) and ablation.CONFIGS["baseline"] == ()


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs"), ("learning_rate", -1.0, "learning_rate"), ("dropout", 1.0, "dropout"),
    ("label_smoothing", 1.5, "label_smoothing"), ("mixup_alpha", 0.0, "mixup_alpha"),
    ("warmup_epochs", 60, "warmup_epochs"), ("n_train", 5, "n_train"), ("l2", -1e-4, "l2"),
])
def test_settings_reject_bad_values_naming_the_parameter(field, value, message):
    with pytest.raises(ValueError, match=message):
        ablation.Settings(**{field: value})


def test_unknown_config_and_empty_seeds_are_errors():
    with pytest.raises(ValueError, match="configs must be"):
        ablation.run("+ batch norm", 0, TINY)
    with pytest.raises(ValueError, match="seeds"):
        ablation.run_grid(["baseline"], [], TINY)
    with pytest.raises(ValueError, match="seed"):
        ablation.run("baseline", -1, TINY)


def test_grid_trains_seed_by_seed_and_returns_config_by_config(monkeypatch):
    trained = []

    def fake_run(config, seed, settings, split):
        trained.append((config, seed))
        return dataclasses.replace(fake_runs({config: [0.5]})[0], seed=seed)

    monkeypatch.setattr(ablation, "load_data", lambda settings: None)
    monkeypatch.setattr(ablation, "run", fake_run)
    runs = ablation.run_grid(["+ L2", "baseline"], [2, 0], TINY)
    # a drift of the machine's speed falls on every configuration alike
    assert trained == [("+ L2", 2), ("baseline", 2), ("+ L2", 0), ("baseline", 0)]
    assert [(r.config, r.seed) for r in runs] == [("+ L2", 2), ("+ L2", 0), ("baseline", 2), ("baseline", 0)]


def test_summary_is_mean_and_population_std_per_config_in_config_order():
    runs = fake_runs({"+ L2": [0.9, 0.8, 0.7], "baseline": [0.5, 0.6, 0.7]})
    summary = ablation.summarize(runs)
    assert list(summary) == ["baseline", "+ L2"]
    assert summary["+ L2"]["accuracy"] == pytest.approx((0.8, np.std([0.9, 0.8, 0.7])))
    assert summary["baseline"]["ece"] == pytest.approx((0.06, np.std([0.05, 0.06, 0.07])))
    np.testing.assert_allclose(ablation.per_seed(runs, "+ L2", "accuracy"), [0.9, 0.8, 0.7])


def test_paired_difference_is_students_t_interval_of_the_differences():
    a, b = [0.93, 0.95, 0.94], [0.90, 0.91, 0.93]
    diff, half = ablation.paired_difference(fake_runs({"baseline": b, "+ mixup": a}), "+ mixup", "accuracy")
    interval = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(np.subtract(a, b)))
    assert half == pytest.approx((interval.high - interval.low) / 2)


def test_paired_difference_needs_the_same_seeds():
    runs = fake_runs({"baseline": [0.9, 0.8, 0.7], "+ L2": [0.9, 0.8]})
    with pytest.raises(ValueError, match="share their seeds"):
        ablation.paired_difference(runs, "+ L2", "accuracy")


@pytest.mark.parametrize("config", list(ablation.CONFIGS))
def test_one_short_run_of_every_config(config):
    r = ablation.run(config, 0, TINY)
    assert r.config == config and r.probs.shape == (450, 10) and r.labels.shape == (450,)
    np.testing.assert_allclose(r.probs.sum(axis=1), 1, atol=1e-5)
    assert r.accuracy == pytest.approx(np.mean(r.probs.argmax(1) == r.labels))
    assert r.confidence == pytest.approx(r.probs.max(1).mean())
    assert r.nll == pytest.approx(-np.mean(np.log(r.probs[np.arange(450), r.labels])), rel=1e-4)
    assert 0 <= r.ece <= 1 and r.seconds > 0


def test_a_run_is_reproducible_from_its_seed():
    a, b = ablation.run("+ mixup", 3, TINY), ablation.run("+ mixup", 3, TINY)
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5, atol=1e-6)


def test_cli_writes_runs_and_summary_as_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert cli.main(["ablation", "--seeds", "2", "--configs", "baseline", "+ L2", "--epochs", "2",
                     "--n-train", "100", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "+ L2" in printed and "4 runs" in printed
    result = json.loads(out.read_text())
    assert result["seeds"] == [0, 1] and result["settings"]["epochs"] == 2
    assert [(r["config"], r["seed"]) for r in result["runs"]] == [("baseline", 0), ("baseline", 1),
                                                                  ("+ L2", 0), ("+ L2", 1)]
    accs = [r["accuracy"] for r in result["runs"] if r["config"] == "+ L2"]
    assert result["summary"]["+ L2"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert set(result["summary"]["baseline"]) == set(ablation.METRICS)


def test_console_script_shows_a_progress_bar_and_rejects_bad_arguments(tmp_path, capsys):
    nnh = [sys.executable, "-m", "nnh.cli"]
    ok = subprocess.run([*nnh, "ablation", "--seeds", "1", "--configs", "baseline", "--epochs", "1",
                         "--n-train", "100"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ablation" in ok.stderr and "1/1" in ok.stderr  # tqdm's bar: done/total
    # the same entry point in this process (a new process costs a TensorFlow import each)
    for args, message in [(["--seeds", "0"], "--seeds must be at least 1"),
                          (["--configs", "+ batchnorm"], "invalid choice"),
                          (["--epochs", "0"], "epochs must be >= 1"),
                          (["--epochs", "4", "--warmup-epochs", "4"], "warmup_epochs must be in [0, epochs=4)")]:
        try:
            status = cli.main(["ablation", *args])
        except SystemExit as exit_:
            status = exit_.code
        error = capsys.readouterr().err
        assert status == 2 and message in error, (args, status, error)
