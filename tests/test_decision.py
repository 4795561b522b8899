"""Decision threshold rules: gamma, percentile, mu + k sigma, minimum covering volume."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import stethoscope.decision  # noqa: F401  (registers the rules)
from stethoscope.decision.base import THRESHOLDS, ThresholdRule
from stethoscope.decision.gamma import GammaThreshold
from stethoscope.decision.mcv import MCVThreshold, covered_count
from stethoscope.decision.mu_k_sigma import MuKSigmaThreshold
from stethoscope.decision.percentile import PercentileThreshold


def test_all_rules_registered():
    assert {"gamma", "percentile", "mu-k-sigma", "mcv"} <= set(THRESHOLDS.names())


def test_gamma_threshold_is_fitted_ppf_and_above_median():
    scores = stats.gamma.rvs(
        2.5, loc=0.1, scale=0.4, size=500, random_state=np.random.default_rng(0)
    )
    rule = GammaThreshold()
    value = rule.fit(scores)
    a, loc, scale = stats.gamma.fit(scores)
    assert value == pytest.approx(stats.gamma.ppf(0.9, a, loc=loc, scale=scale), rel=1e-9)
    assert value > np.median(scores)
    # close to the true 90th percentile of the generating distribution (1.8 at these parameters)
    assert value == pytest.approx(stats.gamma.ppf(0.9, 2.5, loc=0.1, scale=0.4), rel=0.08)
    assert 0.85 <= np.mean(scores <= value) <= 0.95
    assert rule.get_state()["gamma_params"] == pytest.approx((a, loc, scale))
    assert GammaThreshold(percentile=99).fit(scores) > value


def test_gamma_threshold_degenerate_inputs():
    assert GammaThreshold().fit(np.full(20, 0.7)) == pytest.approx(0.7)
    assert GammaThreshold().fit(np.array([0.3])) == pytest.approx(0.3)
    two = GammaThreshold().fit(np.array([1.0, 2.0]))
    assert two == pytest.approx(np.percentile([1.0, 2.0], 90))
    # NaN marks a clip the back end could not score as unseen: left out, not an error
    assert GammaThreshold().fit(np.array([1.0, np.nan, 2.0])) == pytest.approx(two)
    with pytest.raises(ValueError, match="finite"):
        GammaThreshold().fit(np.array([1.0, np.inf, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        GammaThreshold().fit(np.array([np.nan]))


def test_percentile_threshold():
    scores = np.random.default_rng(1).normal(size=101)
    assert PercentileThreshold().fit(scores) == pytest.approx(np.sort(scores)[90])
    assert PercentileThreshold(q=50).fit(scores) == pytest.approx(np.median(scores))


def test_mu_k_sigma_is_mean_plus_k_population_std():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, population std sqrt(2)
    assert MuKSigmaThreshold().fit(scores) == pytest.approx(3.0 + 3.0 * np.sqrt(2.0))
    assert MuKSigmaThreshold(k=1.5).fit(scores) == pytest.approx(3.0 + 1.5 * np.sqrt(2.0))


def test_mcv_covers_exactly_the_requested_share():
    scores = np.random.default_rng(2).uniform(0.0, 0.3, size=100)
    rule = MCVThreshold(coverage=0.9)
    r = rule.fit(scores)
    assert int((scores <= r).sum()) == 90
    assert int((scores < r).sum()) == 89  # smallest such radius: it is a training score itself
    assert rule.decide(scores).sum() == 10
    assert MCVThreshold().fit(scores) == scores.max()  # coverage 1: the farthest normal clip
    assert (
        covered_count(0.95, 37) == 36
        and covered_count(0.7, 10) == 7
        and covered_count(0.01, 5) == 1
    )
    for cov, n in [(0.95, 37), (0.7, 10), (0.33, 300)]:
        s = np.random.default_rng(n).normal(size=n)
        assert int((s <= MCVThreshold(coverage=cov).fit(s)).sum()) == covered_count(cov, n)


def test_rules_decide_strictly_above_and_round_trip():
    scores = np.linspace(0.0, 1.0, 11)
    for name, params in [
        ("gamma", {}),
        ("percentile", {"q": 80}),
        ("mu-k-sigma", {"k": 1}),
        ("mcv", {"coverage": 0.9}),
    ]:
        rule = THRESHOLDS.get(name)(**params)
        value = rule.fit(scores)
        restored = ThresholdRule.from_state(rule.get_state())
        assert restored.value == value and restored.params == rule.params
        np.testing.assert_array_equal(restored.decide(scores), (scores > value).astype(int))
    # 11 scores, coverage 0.9 -> ceil(9.9) = 10 covered: the 10th smallest, 0.9
    assert MCVThreshold(coverage=0.9).fit(scores) == pytest.approx(0.9)
