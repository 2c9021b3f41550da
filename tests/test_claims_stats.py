"""The assertions of tests/claims/ can fail: they reject the wrong direction,
differences inside the seed noise, and separated values claimed equal."""

import numpy as np
import pytest

from claims.stats import assert_larger, assert_smaller, assert_within_noise, margin


def test_margin_is_t_times_standard_error():
    d = np.array([1.0, 2.0, 3.0])
    assert margin(d) == pytest.approx(2.919986 * 1.0 / np.sqrt(3), rel=1e-5)


def test_clear_difference_passes_both_ways():
    assert_larger([0.9, 0.92, 0.91], [0.8, 0.81, 0.79], "a > b")
    assert_smaller([0.8, 0.81, 0.79], [0.9, 0.92, 0.91], "a < b")


@pytest.mark.parametrize("a, b", [
    ([0.8, 0.81, 0.79], [0.9, 0.92, 0.91]),  # the opposite direction
    ([0.9, 0.7, 0.95], [0.8, 0.8, 0.8]),      # right on average, but within the seed spread
    ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),       # no difference at all
])
def test_unsupported_claims_fail(a, b):
    with pytest.raises(AssertionError, match="claim not supported"):
        assert_larger(a, b, "a > b")


def test_required_size_of_effect():
    assert_larger([10.0, 11.0, 12.0], [1.0, 1.0, 1.0], "a > b + 5", by=5)
    with pytest.raises(AssertionError):
        assert_larger([10.0, 11.0, 12.0], [1.0, 1.0, 1.0], "a > b + 10", by=10)


def test_within_noise():
    assert_within_noise([0.95, 0.96, 0.94], [0.96, 0.94, 0.95], "equal", tolerance=0.02)
    with pytest.raises(AssertionError, match="larger than the seed noise"):
        assert_within_noise([0.95, 0.96, 0.94], [0.90, 0.91, 0.89], "equal", tolerance=0.1)
    with pytest.raises(AssertionError, match="not below"):
        assert_within_noise([0.5, 0.9, 0.1], [0.3, 0.6, 0.0], "equal", tolerance=0.1)


def test_needs_three_seeds():
    with pytest.raises(AssertionError, match="3 paired seeds"):
        assert_larger([1.0, 2.0], [0.0, 0.0], "a > b")


def test_close_and_every_seed():
    from claims.stats import assert_close, assert_larger_on_every_seed

    assert_close([0.942, 0.947, 0.938], [0.940, 0.942, 0.933], "close", tolerance=0.015)
    with pytest.raises(AssertionError, match="not below"):
        assert_close([0.96, 0.97, 0.95], [0.94, 0.94, 0.93], "close", tolerance=0.015)
    assert_larger_on_every_seed([0.97, 0.97, 0.97], [0.96, 0.89, 0.87], "a > b")
    with pytest.raises(AssertionError, match="claim not supported"):
        assert_larger_on_every_seed([0.97, 0.88, 0.97], [0.96, 0.89, 0.87], "a > b")


def test_claim_seeds_are_disjoint_from_the_books():
    from claims.stats import BOOK_SEEDS, SEEDS, seeds

    assert not set(SEEDS) & set(BOOK_SEEDS)
    assert seeds(5) == SEEDS[:5]
    with pytest.raises(ValueError, match="n must be in"):
        seeds(2)


def test_column_reads_every_seed_of_a_name():
    from claims.stats import column

    table = {("a", 101): {"x": 2.0}, ("a", 100): {"x": 1.0}, ("b", 100): {"x": 5.0}}
    assert column(table, "a", "x").tolist() == [1.0, 2.0]
