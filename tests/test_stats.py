"""Empirical statistics against direct NumPy formulas and hand-worked examples."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from bayes_ising.core import stats
from bayes_ising.data import SpikeData
from bayes_ising.errors import DataError


@pytest.fixture(scope="module")
def spins():
    """Correlated sparse spins: a shared input drives 6 neurons, one never fires."""
    rng = np.random.default_rng(42)
    t, n = 3000, 6
    common = rng.random(t) < 0.2
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.15, 0.0])
    fire = (rng.random((t, n)) < p) | (common[:, None] & (rng.random((t, n)) < 0.3 * (p > 0)))
    return np.where(fire, 1, -1).astype(np.int8)


def test_moments_against_numpy(spins):
    s = spins.astype(float)
    mo = stats.moments(spins)
    assert mo.num_bins == 3000
    np.testing.assert_allclose(mo.m, s.mean(0), rtol=0, atol=1e-14)
    q_ref = np.einsum("ti,tj->ij", s, s) / len(s)
    np.testing.assert_allclose(mo.Q, q_ref, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(np.diag(mo.Q), 1.0)
    np.testing.assert_array_equal(mo.Q, mo.Q.T)
    c = stats.connected_correlations(spins)
    np.testing.assert_allclose(c, np.cov(s.T, bias=True), atol=1e-13)
    assert mo.m.dtype == np.float64 and mo.Q.dtype == np.float64
    # the never-firing neuron: m = -1 and zero connected correlation, no NaN
    assert mo.m[5] == -1 and np.all(c[5] == 0) and np.isfinite(c).all()
    # JAX input gives the same
    np.testing.assert_allclose(stats.moments(jnp.asarray(spins)).Q, mo.Q)


def test_firing_probability_and_synchrony(spins):
    x = spins == 1
    np.testing.assert_allclose(stats.firing_probability(spins), x.mean(0))
    np.testing.assert_allclose(stats.firing_probability(spins),
                               (1 + stats.moments(spins).m) / 2, atol=1e-15)
    k = stats.synchrony(spins)
    np.testing.assert_array_equal(k, x.sum(1))
    assert k.dtype == np.int64
    pk = stats.synchrony_distribution(spins)
    assert pk.shape == (7,)
    ref = np.array([(x.sum(1) == kk).mean() for kk in range(7)])
    np.testing.assert_allclose(pk, ref, atol=1e-15)
    assert pk.sum() == pytest.approx(1.0, abs=1e-14)


def test_synchrony_hand_example():
    s = np.array([[1, 1, -1], [-1, -1, -1], [1, 1, 1], [1, -1, -1]], dtype=np.int8)
    np.testing.assert_array_equal(stats.synchrony(s), [2, 0, 3, 1])
    np.testing.assert_allclose(stats.synchrony_distribution(s), [0.25, 0.25, 0.25, 0.25])


def test_unique_patterns(spins):
    patterns, counts = stats.unique_patterns(spins)
    ref_rows, ref_counts = np.unique(spins, axis=0, return_counts=True)
    assert counts.sum() == len(spins) and counts.dtype == np.int64
    assert patterns.dtype == np.int8 and patterns.shape[1] == 6
    assert len(counts) == len(ref_counts)
    assert np.all(np.diff(counts) <= 0)  # decreasing counts
    got = {tuple(p): c for p, c in zip(patterns.tolist(), counts.tolist(), strict=True)}
    ref = {tuple(p): c for p, c in zip(ref_rows.tolist(), ref_counts.tolist(), strict=True)}
    assert got == ref
    # more than 8 neurons (several packed bytes)
    rng = np.random.default_rng(3)
    wide = np.where(rng.random((500, 19)) < 0.1, 1, -1).astype(np.int8)
    wide[100:200] = wide[0]
    pw, cw = stats.unique_patterns(wide)
    assert len(cw) == len(np.unique(wide, axis=0)) and cw[0] >= 101
    np.testing.assert_array_equal(pw[0], wide[0])


def test_third_order_against_einsum(spins):
    s = spins.astype(float)
    d = s - s.mean(0)
    ref = np.einsum("ti,tj,tk->ijk", d, d, d) / len(s)
    got = stats.third_order_correlations(spins, chunk_size=7)  # several chunks
    np.testing.assert_allclose(got, ref, atol=1e-13)
    # symmetric under permutation
    for perm in itertools.permutations(range(3)):
        np.testing.assert_allclose(got, got.transpose(perm), atol=1e-14)


def test_entropy_estimators_closed_form():
    counts = np.array([5, 3, 1, 1])
    p = counts / 10
    plugin = -np.sum(p * np.log(p))
    assert stats.entropy_plugin(counts) == pytest.approx(plugin, abs=1e-14)
    assert stats.entropy_miller_madow(counts) == pytest.approx(plugin + 3 / 20, abs=1e-14)
    assert stats.entropy_plugin([4]) == 0.0
    assert stats.entropy_plugin(np.full(8, 3)) == pytest.approx(math.log(8), abs=1e-14)
    with pytest.raises(DataError, match="entropy of zero observations"):
        stats.entropy_plugin([0, 0])


def test_data_entropy_reliable_and_unreliable():
    rng = np.random.default_rng(0)
    # 3 independent fair neurons, 8000 bins: 8 patterns, no singletons -> reliable,
    # estimate within a few MCSE of 3 log 2
    small = np.where(rng.random((8000, 3)) < 0.5, 1, -1).astype(np.int8)
    est = stats.data_entropy(small)
    assert est.reliable and est.num_patterns == 8 and est.num_bins == 8000
    assert est.num_singletons == 0 and est.coverage == 1.0
    assert abs(est.miller_madow - 3 * math.log(2)) < 0.01
    assert "large enough" in est.note
    # 30 fair neurons, 1000 bins: every pattern seen once -> unreliable
    big = np.where(rng.random((1000, 30)) < 0.5, 1, -1).astype(np.int8)
    est = stats.data_entropy(big)
    assert not est.reliable and est.num_singletons == 1000 and est.coverage == 0.0
    assert est.plugin == pytest.approx(math.log(1000))
    assert est.note == (
        "1000 distinct patterns in 1000 bins, 1000 seen once (Good-Turing coverage 0.000): "
        "the sample is too small to trust the entropy estimate (more than 5% of bins hold a "
        "pattern seen once; distinct patterns exceed 10% of bins); both estimators are biased "
        "low")


def test_summary_keys_and_values(spins):
    with pytest.warns(UserWarning, match="never fire: 'f'"):
        d = SpikeData.from_raster(spins, neuron_ids=list("abcdef"),
                                  cell_types=["E", "E", "E", "E", "I", "I"],
                                  states=["wake"] * 2000 + ["deep"] * 1000)
    s = d.summary()
    assert s["num_bins"] == 3000 and s["num_neurons"] == 6
    assert s["cell_type_counts"] == {"E": 4, "I": 2}
    assert s["state_bin_counts"] == {"deep": 1000, "wake": 2000}
    assert s["never_fire"] == ["f"] and s["inactive_neurons"] == ["f"]
    p = (spins == 1).mean(0)
    assert s["firing_probability"]["per_neuron"]["c"] == pytest.approx(p[2])
    assert s["firing_probability"]["median"] == pytest.approx(np.median(p))
    r = np.corrcoef(spins[:, :5].T.astype(float))
    iu = np.triu_indices(6, 1)
    full = np.zeros((6, 6))
    full[:5, :5] = r
    assert s["mean_pairwise_correlation"] == pytest.approx(full[iu].mean(), abs=1e-12)
    assert s["num_unique_patterns"] == len(np.unique(spins, axis=0))
    assert s["synchrony"]["P_K"] == pytest.approx(stats.synchrony_distribution(spins).tolist())
    assert set(s["entropy"]) >= {"plugin_nats", "miller_madow_nats", "reliable", "note"}


def test_bad_shapes():
    with pytest.raises(DataError, match=r"spins must be 2-D \(bins x neurons\), got shape \(3,\)"):
        stats.moments(np.ones(3))
    with pytest.raises(DataError, match="spins have zero bins"):
        stats.moments(np.ones((0, 3)))


def test_independent_model_helpers_one_clip_rule():
    m = np.array([-1.0, -0.5, 0.0, 0.8, 1.0])
    np.testing.assert_allclose(stats.probability_from_mean(m), [0.0, 0.25, 0.5, 0.9, 1.0])
    h = stats.independent_fields(m, num_bins=10)
    # active neurons: the exact closed form; never/always firing: half a count, m = ∓(1 − 1/T)
    np.testing.assert_allclose(np.tanh(h), [-0.9, -0.5, 0.0, 0.8, 0.9], atol=1e-12)
