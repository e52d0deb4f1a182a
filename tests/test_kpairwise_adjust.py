"""The curvature adjustment of the K-pairwise pseudo-posterior (issue 18), against references
built here by brute-force enumeration and autodiff of the exact log posterior."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.scipy.special import logsumexp

from bayes_ising.core import ising, kpairwise
from bayes_ising.fit import kpairwise_adjust, kpairwise_fit

N = 4
PRIOR = dict(h_mean=0.0, h_scale=2.0, j_scale=1.0, v_scale=1.0)


def _model(seed=3):
    rng = np.random.default_rng(seed)
    h = rng.normal(-0.4, 0.3, N)
    J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.3, ising.num_pairs(N)), N))
    V = np.concatenate([[0.0], np.cumsum(rng.normal(0, 0.6, N))])
    return h, J, V


def _brute(h, J, V):
    """States (2^N, N) and their probabilities by a direct numpy sum."""
    s = ising.all_states(N).astype(float)
    neg = s @ h + 0.5 * np.einsum("si,ij,sj->s", s, J, s) + V[(s > 0).sum(axis=1)]
    return s, np.exp(neg - float(logsumexp(neg)))


def _samples(h, J, V, num_bins, seed):
    states, p = _brute(h, J, V)
    rows = np.random.default_rng(seed).choice(states.shape[0], num_bins, p=p)
    return states[rows].astype(np.int8)


def _neg_log_posterior(spins):
    """θ → −log L(θ) − log prior(θ) of the exact K-pairwise model, written out directly
    (enumeration of all states, the random walk of V as differences)."""
    states = jnp.asarray(ising.all_states(N), jnp.float64)
    k_states = jnp.sum(states > 0, axis=1)
    data = jnp.asarray(spins, jnp.float64)
    k_data = jnp.sum(data > 0, axis=1)
    i, j = ising.pair_indices(N)

    def neg_energy(s, k, theta):
        h, couplings, steps = theta[:N], theta[N:-N], theta[-N:]
        V = jnp.concatenate([jnp.zeros(1), steps])
        return s @ h + (s[:, i] * s[:, j]) @ couplings + V[k]

    def value(theta):
        log_z = logsumexp(neg_energy(states, k_states, theta))
        log_lik = jnp.sum(neg_energy(data, k_data, theta)) - data.shape[0] * log_z
        steps = jnp.diff(jnp.concatenate([jnp.zeros(1), theta[-N:]]))
        log_prior = (-0.5 * jnp.sum(theta[:N] ** 2) / PRIOR["h_scale"] ** 2
                     - 0.5 * jnp.sum(theta[N:-N] ** 2) / PRIOR["j_scale"] ** 2
                     - 0.5 * jnp.sum(steps**2) / PRIOR["v_scale"] ** 2)
        return -(log_lik + log_prior)

    return value


def test_k_pairwise_fisher_information_is_the_covariance_of_the_statistics():
    h, J, V = _model()
    states, p = _brute(h, J, V)
    i, j = ising.pair_indices(N)
    k = (states > 0).sum(axis=1)
    features = np.concatenate([states, states[:, i] * states[:, j],
                               (k[:, None] == np.arange(1, N + 1)).astype(float)], axis=1)
    centred = features - p @ features
    np.testing.assert_allclose(kpairwise.fisher_information(h, J, V),
                               centred.T @ (p[:, None] * centred), atol=1e-12)
    np.testing.assert_allclose(ising.fisher_information(h, J),  # the pairwise block, V = 0
                               kpairwise.fisher_information(h, J, 0 * V)[:-N, :-N], atol=1e-12)


def test_k_pairwise_fisher_chunked_path(monkeypatch):
    h, J, V = _model(seed=4)
    whole = kpairwise.fisher_information(h, J, V)
    monkeypatch.setattr(ising, "_FISHER_CHUNK_BYTES", 4 * 14 * 8)  # 4 states per chunk
    np.testing.assert_allclose(kpairwise.fisher_information(h + 0.0, J, V), whole, atol=1e-13)


def test_k_pairwise_fisher_from_gibbs_samples_matches_enumeration():
    """The Fisher information used above 22 neurons (K-pairwise Gibbs samples of the
    statistics, :func:`bayes_ising.fit.bayes._fisher_from_samples` with V) against the exact
    one, in units of its Monte Carlo error."""
    from bayes_ising.fit import bayes

    h, J, V = _model(seed=5)
    exact = np.asarray(kpairwise.fisher_information(h, J, V))
    sampled = bayes._fisher_from_samples(jax.random.key(2), h, J, 100_000, V=V)
    assert sampled.shape == exact.shape == (2 * N + ising.num_pairs(N),) * 2
    # a covariance of ±1 / 0-1 statistics from ≳ 20,000 effective samples: MC sd < 0.01
    np.testing.assert_allclose(sampled, exact, atol=0.03)
    assert np.max(np.abs(exact[-N:, -N:] - np.asarray(  # V matters: the V = 0 model differs
        kpairwise.fisher_information(h, J, 0 * V))[-N:, -N:])) > 0.05


def test_prior_precision_is_the_random_walk_prior():
    precision = kpairwise_adjust.prior_precision(N, 2.0, 1.0, 0.5)
    theta = np.random.default_rng(0).normal(size=precision.shape[0])
    steps = np.diff(np.concatenate([[0.0], theta[-N:]]))
    direct = (np.sum(theta[:N] ** 2) / 4 + np.sum(theta[N:-N] ** 2) + np.sum(steps**2) / 0.25)
    assert theta @ precision @ theta == pytest.approx(direct)


def test_adjusted_draws_have_the_exact_posterior_mode_and_curvature():
    """Gaussian draws of the pseudo-posterior's Laplace approximation, mapped by
    mode+curvature: their mean is the exact MAP and their covariance the inverse Hessian of
    the exact negative log posterior (both computed here independently: scipy from zero,
    autodiff of the written-out posterior)."""
    h, J, V = _model()
    spins = _samples(h, J, V, 3000, seed=1)
    objective = _neg_log_posterior(spins)
    value_and_grad = jax.jit(jax.value_and_grad(objective))
    size = 2 * N + ising.num_pairs(N)
    reference = scipy.optimize.minimize(
        lambda t: tuple(np.asarray(x, np.float64) for x in value_and_grad(jnp.asarray(t))),
        np.zeros(size), jac=True, method="BFGS", options={"gtol": 1e-8})
    mode = reference.x
    covariance = np.linalg.inv(np.asarray(jax.hessian(objective)(jnp.asarray(mode))))
    precision = kpairwise_adjust.prior_precision(N, 2.0, 1.0, 1.0)
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    theta_pl, converged, neg_hess_pl = kpairwise_adjust.pseudo_map(
        patterns, counts, np.zeros(size), precision, np.zeros(size))
    assert converged
    rng = np.random.default_rng(2)
    theta = rng.multivariate_normal(theta_pl, np.linalg.inv(neg_hess_pl + precision),
                                    size=(2, 4000))
    draws = kpairwise_adjust._unflat(theta, N)
    adjusted, attrs = kpairwise_adjust.adjust_draws(jax.random.key(0), draws, spins,
                                                    adjust="mode+curvature", **PRIOR)
    flat = kpairwise_adjust._flat(adjusted).reshape(-1, size)
    sd = np.sqrt(np.diag(covariance))
    assert np.max(np.abs(flat.mean(axis=0) - mode) / sd) < 0.05  # MC error ~0.011 sd
    np.testing.assert_allclose(np.std(flat, axis=0, ddof=1) / sd, 1.0, atol=0.05)
    np.testing.assert_allclose(np.cov(flat.T), covariance, atol=0.1 * sd.max() ** 2)
    assert np.all(adjusted["V"][..., 0] == 0) and np.allclose(
        adjusted["J"], np.swapaxes(adjusted["J"], -1, -2))
    info, check = json.loads(attrs["adjust_info"]), json.loads(attrs["model_check"])
    assert attrs["intervals"] == "adjusted" and check["passed"] and check["method"] == "exact"
    assert info["centre"].startswith("exact-likelihood MAP") and info["centre_converged"]
    # the pseudo-posterior is narrower than the exact one here: the ratios say so
    pseudo_sd = np.sqrt(np.diag(np.linalg.inv(neg_hess_pl + precision)))
    assert np.max(np.abs(pseudo_sd / sd - 1)) > 0.08  # so the checks above have teeth
    assert np.max(np.abs(theta_pl - mode) / sd) > 0.1
    np.testing.assert_allclose(info["sd_ratio"]["h"]["median"],
                               np.median(sd[:N] / pseudo_sd[:N]), rtol=1e-6)


def test_the_gate_labels_a_centre_that_misses_the_data():
    from bayes_ising.analysis import diagnostics

    h, J, V = _model()
    spins = _samples(h, J, V, 3000, seed=1)
    good = kpairwise_fit.centre_model_check(jax.random.key(0), h, J, V, spins)
    assert good["passed"] and good["method"] == "exact"
    bad = kpairwise_fit.centre_model_check(jax.random.key(0), h + 0.5, J, V, spins)
    assert not bad["passed"] and "FAILED" in bad["verdict"]
    info = {"centre": "pseudo-posterior MAP", "centre_converged": True, "fisher": "exact",
            "sd_ratio_median": 1.1, "sd_ratio": {}}
    labels = kpairwise_adjust._labels("curvature", info, bad)
    assert labels["intervals"].startswith("adjusted, NOT valid: the centre fails")
    tree = kpairwise_fit.draws_tree(np.tile(h, (1, 2, 1)), np.tile(J, (1, 2, 1, 1)),
                                    np.tile(V, (1, 2, 1)), attrs=dict(
                                        family="k_pairwise", likelihood="pseudo",
                                        bayes_ising_version="test", **labels))
    validity = diagnostics.posterior_validity(tree)
    assert not validity["valid"] and "model check failed" in validity["validity_reason"]
    with pytest.raises(ValueError, match="curvature"):
        kpairwise_adjust.adjust_draws(jax.random.key(0), {}, np.ones((3, 23)),
                                      adjust="mode+curvature", **PRIOR)
    with pytest.raises(ValueError, match="adjust"):
        kpairwise_fit.fit_posterior(spins, likelihood="exact", adjust="curvature")


def test_cli_fit_adjusts_a_k_pairwise_pseudo_posterior(tmp_path, capsys):
    """`fit --model k_pairwise --likelihood pseudo --adjust mode+curvature`: the saved draws are
    the adjusted ones (their mean sits at the exact MAP, not the pseudo-MAP), the tree is
    labelled and gated, and `diagnose` reads the gate."""
    from bayes_ising import cli
    from bayes_ising.fit import bayes, posterior

    h, J, V = _model()
    spins = _samples(h, J, V, 3000, seed=1)
    data = tmp_path / "d.npz"
    np.savez(data, raster=(spins > 0).astype(np.int8))
    out = tmp_path / "kp.nc"
    assert cli.main(["fit", str(data), "--model", "k_pairwise", "--likelihood", "pseudo",
                     "--adjust", "mode+curvature", "--num-chains", "1", "--num-draws", "300",
                     "--num-warmup", "300", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Intervals adjusted (mode+curvature" in printed and "UNADJUSTED" not in printed
    tree = bayes.load_posterior(out, family="k_pairwise")
    assert tree.attrs["adjust"] == "mode+curvature" and tree.attrs["intervals"] == "adjusted"
    hd, Jd, Vd = posterior.posterior_draws(tree, potential=True)
    size = 2 * N + ising.num_pairs(N)
    mode = scipy.optimize.minimize(
        lambda t: tuple(np.asarray(x, np.float64) for x in jax.jit(jax.value_and_grad(
            _neg_log_posterior(spins)))(jnp.asarray(t))), np.zeros(size), jac=True,
        method="BFGS", options={"gtol": 1e-8}).x
    flat = kpairwise_adjust._flat({"h": hd, "J": Jd, "V": Vd})
    sd = flat.std(axis=0)
    assert np.max(np.abs(flat.mean(axis=0) - mode) / sd) < 0.3  # MC error of 300 draws
    diag = tmp_path / "diag.json"
    assert cli.main(["diagnose", str(out), "--out", str(diag)]) == 0
    capsys.readouterr()
    written = json.loads(diag.read_text())
    assert written["valid"] and "model check passed" in written["validity_reason"]
    assert cli.main(["fit", str(data), "--model", "k_pairwise", "--adjust", "curvature",
                     "--out", str(tmp_path / "x.nc")]) == 2
    assert "--likelihood pseudo only" in capsys.readouterr().err
