"""The one table of size limits: up to which number of neurons N each exact method is used.

(Also the default sizes that the command line shows in ``--help``: this module imports
nothing, so building the parser does not start JAX.)

Exact methods enumerate all 2^N spin states; their cost grows as 2^N · N (moments) or
2^N · N² (correlations, Fisher information). Every module takes its limit from here, so that
"exact up to N" means the same N everywhere; modules re-export the name they use.

========================================  ====  ==============================================
name                                      N     what is enumerated
========================================  ====  ==============================================
:data:`MAX_EXACT_NEURONS`                 22    any exact routine at all (``ising.check_exact``)
:data:`MAX_EXACT_CHECK_NEURONS`           22    posterior predictive P(K) and patterns
:data:`MAX_EXACT_MOMENTS_NEURONS`         20    a model's m and C for a fit report
:data:`MAX_EXACT_SAMPLING_NEURONS`        20    drawing synthetic data from the 2^N probabilities
:data:`AUTO_EXACT_THERMO_NEURONS`         20    thermodynamic curves, per draw and temperature
:data:`MAX_EXACT_THIRD_ORDER_NEURONS`     16    third-order correlations
:data:`MAX_EXACT_FIT_NEURONS`             16    the quick choice of exact MLE in ``analyses``
:data:`MAX_EXACT_POSTERIOR_NEURONS`       16    the quick choice of exact posterior in ``analyses``
:data:`MAX_AUTODIFF_HESSIAN_NEURONS`      16    the exact-MLE Newton Hessian by ``jax.hessian``
========================================  ====  ==============================================
"""

__all__ = [
    "MAX_EXACT_NEURONS",
    "MAX_EXACT_CHECK_NEURONS",
    "MAX_EXACT_MOMENTS_NEURONS",
    "MAX_EXACT_SAMPLING_NEURONS",
    "AUTO_EXACT_THERMO_NEURONS",
    "MAX_EXACT_THIRD_ORDER_NEURONS",
    "MAX_EXACT_FIT_NEURONS",
    "MAX_EXACT_POSTERIOR_NEURONS",
    "MAX_AUTODIFF_HESSIAN_NEURONS",
    "DEFAULT_TEMPERATURES",
    "DEFAULT_POSTERIOR_DRAWS",
]

#: Largest N enumerated at all: 2^22 ≈ 4.2 million states, processed as a 2048 × 2048 float64
#: block (32 MiB) per pass; a likelihood evaluation takes about a second on 2 cores. Above it,
#: use the pseudolikelihood / Gibbs sampling. (The exact likelihood of ``fit``, the exact MLE.)
MAX_EXACT_NEURONS = 22

#: Posterior predictive checks (P(K), pattern frequencies) enumerate once per posterior draw;
#: one pass per draw is affordable up to the general limit, Gibbs sampling above.
MAX_EXACT_CHECK_NEURONS = MAX_EXACT_NEURONS

#: A fit's moment errors (m, C of the fitted model) are computed exactly up to here: one pass
#: over 2^20 ≈ 10^6 states takes well under a second, so reports stay quick; Gibbs above.
MAX_EXACT_MOMENTS_NEURONS = 20

#: ``synthetic.sample_ising`` samples exactly by drawing from the 2^N state probabilities,
#: which it holds in memory (2^20 float64 = 8 MiB, and a cumulative sum of the same size).
MAX_EXACT_SAMPLING_NEURONS = 20

#: ``thermo`` with ``method="auto"`` enumerates 2^N states per temperature *and* per posterior
#: draw (typically 100 draws × 30 temperatures = 3,000 passes): 2^20 keeps that to minutes.
AUTO_EXACT_THERMO_NEURONS = 20

#: Exact third-order correlations build a (2^N, N²) matrix: 2^16 × 256 float64 = 128 MiB.
MAX_EXACT_THIRD_ORDER_NEURONS = 16

#: ``analyses`` (E/I and state comparisons over many subsets and draws) fits the exact MLE up
#: to here (Newton steps on 2^16 states stay under a second), the pseudolikelihood above.
MAX_EXACT_FIT_NEURONS = 16

#: ... and the exact-likelihood posterior up to here (NUTS evaluates the gradient ~10^5 times
#: per fit; at 2^16 states a fit takes about a minute), the pseudo-posterior above.
MAX_EXACT_POSTERIOR_NEURONS = 16

#: Above this N the exact-MLE Newton Hessian comes from ``ising.fisher_information`` (chunked)
#: rather than ``jax.hessian``, whose forward-mode tangents need P × 2^N memory
#: (P = N(N+1)/2 parameters: 136 × 2^16 float64 = 71 MiB at N = 16).
MAX_AUTODIFF_HESSIAN_NEURONS = 16

#: Default temperature grid of the study pipeline and the ``thermo`` verb: 21 evenly spaced
#: temperatures, 0.125 apart, around the fitted model (T = 1).
DEFAULT_TEMPERATURES = "0.5:3.0:21"

#: Default posterior draws of ``thermo``. The endpoints of a central 90% band estimated from D
#: draws scatter by about 2.1 σ/√D (σ the posterior sd; normal approximation of the sample
#: 5% / 95% quantiles, √(p(1−p)/D) / φ(z_p)): ±0.26 σ at D = 64, ±0.30 σ at 50, ±0.21 σ at 100.
DEFAULT_POSTERIOR_DRAWS = 64
