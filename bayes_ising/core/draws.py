"""Which posterior draws are kept: the one thinning rule.

:func:`thin` is the rule of the posterior contract (:mod:`bayes_ising.fit.posterior`, which
exports it): ``num_draws`` of the D = chains × draws pooled draws (chain-major); evenly spaced
(``round(linspace(0, D−1, num_draws))``, deterministic) when no ``rng_key`` is given, a random
subset without replacement, kept in the pooled order, when a key is given. It lives here, below
``fit/``, so that the posteriors of :mod:`bayes_ising.core.kpairwise` are thinned by the same
rule.
"""

import numpy as np

from bayes_ising.errors import DataError

__all__ = ["thin"]


def thin(total, num_draws=None, rng_key=None):
    """Indices (D',) of the draws kept out of ``total`` pooled draws (the thinning rule)."""
    if num_draws is None or int(num_draws) >= total:
        return np.arange(total)
    if int(num_draws) < 1:
        raise DataError(f"the number of posterior draws must be at least 1, got {num_draws}")
    if rng_key is None:
        return np.round(np.linspace(0, total - 1, int(num_draws))).astype(int)
    import jax

    chosen = jax.random.choice(rng_key, total, (int(num_draws),), replace=False)
    return np.sort(np.asarray(chosen))
