"""Golden values of the paired statistics (bootstrap over drives, Wilcoxon over drive means)."""
import numpy as np
import pytest
from scipy import stats as sps

from harness.report.stats import bootstrap_ci, drive_of, frame_values, paired_delta, pool_seeds, wilcoxon_p


def test_drive_of_frame_id():
    assert drive_of("2011_09_26/2011_09_26_drive_0040_sync/0000000012") == "2011_09_26/2011_09_26_drive_0040_sync"


def test_paired_delta_by_hand():
    method = [{"a/0": 0.2, "a/1": 0.4, "b/0": 0.3}, {"a/0": 0.4, "a/1": 0.4, "b/0": 0.5}]  # two seeds
    control = [{"a/0": 0.1, "a/1": 0.2, "b/0": 0.5, "c/0": 9.0}]  # c/0: not scored by the method
    out = paired_delta(method, control, n_boot=4000, seed=0)
    # pooled method: a/0 0.3, a/1 0.4, b/0 0.4; differences 0.2, 0.2, -0.1 on the 3 common frames
    assert out["delta"] == pytest.approx(0.1)
    assert out["per_drive"] == pytest.approx({"a": 0.2, "b": -0.1})
    assert out["method_per_drive"] == pytest.approx({"a": 0.35, "b": 0.4})
    assert (out["drives"], out["frames"]) == (2, 3)
    # two drives: resamples {a,a} -> 0.2, {b,b} -> -0.1, {a,b} -> 0.3/3; the 2.5/97.5 % quantiles
    assert out["ci"] == pytest.approx((-0.1, 0.2))
    assert paired_delta(method, [{"z/0": 1.0}]) is None


def test_bootstrap_equals_scipy_with_one_frame_per_drive():
    x = np.array([0.1, -0.02, 0.05, 0.3, 0.07, 0.01, -0.04])
    ref = sps.bootstrap((x,), np.mean, n_resamples=2000, method="percentile",
                        random_state=np.random.default_rng(3), vectorized=True, batch=None).confidence_interval
    assert bootstrap_ci(x, np.ones_like(x), n_boot=2000, seed=3) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_bootstrap_is_seeded():
    s, n = np.linspace(-1.0, 2.0, 12) ** 3, np.arange(1.0, 13.0)
    assert bootstrap_ci(s, n, seed=7) == bootstrap_ci(s, n, seed=7)
    assert bootstrap_ci(s, n, seed=7) != bootstrap_ci(s, n, seed=8)


def test_wilcoxon_exact_by_hand():
    # n = 5, every difference positive: two-sided exact p = 2 / 2^5
    assert wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    # ranks 1..5, W- = 2: subsets of ranks summing to <= 2 are {}, {1}, {2}: p = 2 * 3 / 32
    assert wilcoxon_p([1.0, -2.0, 3.0, 4.0, 5.0]) == pytest.approx(6 / 32)
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    assert wilcoxon_p([0.3]) is None


def test_frame_values_and_pooling():
    rec = {"frames": ["a/0", "a/1", "b/0"], "abs_rel": [0.1, float("nan"), 0.3]}
    assert frame_values(rec, "abs_rel") == {"a/0": 0.1, "b/0": 0.3}
    assert frame_values(rec, "a1") is None and frame_values(None, "abs_rel") is None
    assert frame_values({"frames": ["a/0"], "abs_rel": [1, 2]}, "abs_rel") is None
    assert pool_seeds([{"a/0": 1.0}, {"a/0": 3.0, "b/0": 2.0}]) == {"a/0": 2.0, "b/0": 2.0}
