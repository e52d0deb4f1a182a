"""The one simple reference pseudolikelihood (for cross-checking the fast paths in
bayes_ising.core.pseudolikelihood): one dense (U×N)·(N×N) product and log σ, no blocks, no
sufficient sums, no hand-written gradient."""

import jax
import jax.numpy as jnp


def log_pseudolikelihood(h, J, patterns, counts=None):
    r""":math:`\sum_u c_u \sum_i \log\sigma(2 s_{ui} H_{ui})`, :math:`H = h + sJ`."""
    s = jnp.asarray(patterns, jnp.asarray(h).dtype)
    fields = h + s @ J
    per_pattern = jnp.sum(jax.nn.log_sigmoid(2.0 * s * fields), axis=-1)
    return jnp.sum(per_pattern) if counts is None else jnp.asarray(counts, s.dtype) @ per_pattern
