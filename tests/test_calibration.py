"""Simulation-based calibration (slow): the exact posterior covers planted parameters at the
nominal rates, and so does the default pseudo-posterior adjustment, while the unadjusted
pseudo-posterior does not (which shows the test can fail).

100 datasets with N = 6 neurons and T = 2000 bins, (h, J) drawn from the prior of the fit
(benchmarks/calibration.py: h ~ N(−1, 0.5), J ~ N(0, 0.5)), 2 chains × 200 draws each,
all fits vectorised in one NUTS program per likelihood. Tolerances: 3 cluster standard errors
(parameters of one dataset share its data) plus 1 point for Monte Carlo error of the quantiles.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibration():
    import calibration as study

    return study.run(num_sets=100, num_neurons=6, num_bins=2000, num_chains=2,
                     num_draws=200, num_warmup=100, seed=11, progress=False)


def test_exact_posterior_is_calibrated(calibration):
    for level, row in calibration["coverage"]["exact"].items():
        tolerance = 3 * row["cluster_se"] + 0.01
        assert abs(row["coverage"] - float(level)) < tolerance, (level, row)


def test_default_pseudo_posterior_is_calibrated_at_90_percent(calibration):
    from bayes_ising.fit.bayes import default_model_spec

    default = default_model_spec().adjust
    row = calibration["coverage"][f"pseudo/{default}"]["0.9"]
    assert abs(row["coverage"] - 0.9) < 0.05, row
    for level, row in calibration["coverage"][f"pseudo/{default}"].items():
        assert abs(row["coverage"] - float(level)) < 3 * row["cluster_se"] + 0.02, (level, row)


def test_unadjusted_pseudo_posterior_is_overconfident(calibration):
    row = calibration["coverage"]["pseudo/none"]["0.9"]
    assert row["coverage"] < 0.85, row
