r"""Split Hamiltonian Monte Carlo for a target whitened by its Laplace approximation.

In the whitened coordinates :math:`z` of :mod:`bayes_ising.fit.bayes` (:math:`\phi =
\hat\phi + Lz`, :math:`LL^\top = H^{-1}` at the MAP) the potential is

.. math:: U(z) = \tfrac12 |z|^2 + U_1(z),

a unit Gaussian plus a remainder :math:`U_1` that vanishes to second order at the MAP and is
small wherever the posterior is close to its Laplace approximation (many bins per
parameter). Split HMC (Shahbaba, Lan, Johnson & Neal 2014, *Stat. Comput.* 24:339) integrates
:math:`\tfrac12|z|^2 + \tfrac12|p|^2` exactly (a rotation of (z, p) by the step ε) and only
:math:`U_1` by kicks:

.. math:: p \leftarrow p - \tfrac\varepsilon2 \nabla U_1(z);\quad
   (z, p) \leftarrow (z\cos\varepsilon + p\sin\varepsilon,\ p\cos\varepsilon -
   z\sin\varepsilon);\quad p \leftarrow p - \tfrac\varepsilon2 \nabla U_1(z),

with :math:`\nabla U_1(z) = \nabla U(z) - z`: one gradient of U per step, as leapfrog. The map
is a symmetric composition of exact flows, so it is symplectic and reversible, and the
Metropolis test on :math:`H = U(z) + \tfrac12|p|^2` makes the chain exact for any ε. The
energy error grows with :math:`\nabla U_1` instead of :math:`\nabla U`: where the Laplace
approximation is good, the steps that keep the acceptance at its target are many times
longer than leapfrog's, and a quarter period (π/2: z' ≈ p, a near-independent draw) takes a
few gradients instead of ~10 (measured in ``docs/sampler.md``). Where it is poor (walls of
near-silent neurons), dual averaging shortens ε and the integrator becomes leapfrog.

The kernel has NumPyro's ``hmc`` interface (``init_kernel``, ``sample_kernel`` and a state
with ``z``, ``diverging``, ``num_steps``, ``accept_prob``, ``energy``, ``potential_energy``
and ``adapt_state.step_size``), so :func:`bayes_ising.fit.bayes._nuts_program` runs it like
NumPyro's HMC: vmapped over chains, in compiled chunks. Step-size adaptation during warmup:
NumPyro's dual averaging (Hoffman & Gelman 2014) on log ε; the trajectory has
:math:`n = \lceil T/\varepsilon\rceil` steps of :math:`T/n` (T the trajectory length), so
that a trajectory is exactly T: at T = π/2 the Gaussian part maps (z, p) to (p, −z), and a
draw is independent of the last one where the Laplace approximation holds (with NumPyro's
n steps of ε, nε overshoots T by up to one step: z' = −0.5 z + 0.87 p at n = 3).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SplitHMCState", "split_hmc"]

#: an energy error above this counts as a divergence (NumPyro's threshold)
MAX_DELTA_ENERGY = 1000.0
#: the most steps per trajectory (NumPyro's NUTS at max_tree_depth 10 takes up to 1023)
MAX_STEPS = 1024


class AdaptState(NamedTuple):
    step_size: object  # () ε used by the next transition
    dual_averaging: tuple  # NumPyro's dual-averaging state on log ε
    num_warmup: object  # () iterations of step-size adaptation
    target_accept: object  # () the acceptance dual averaging aims at
    trajectory_length: object  # () T; a transition has ⌈T/ε⌉ steps


class SplitHMCState(NamedTuple):
    i: object  # iteration count (warmup included)
    z: object  # (P,) position
    z_grad: object  # (P,) ∇U(z)
    potential_energy: object
    energy: object  # H at the accepted state of the last transition
    num_steps: object  # gradient evaluations of the last transition
    accept_prob: object
    diverging: object
    adapt_state: AdaptState
    rng_key: object


def _trajectory(potential, z, p, grad, step_size, num_steps):
    """``num_steps`` ≥ 1 split steps of ε from (z, p) with ∇U(z) = ``grad``; returns (z, p, U,
    ∇U) at the end. Only the last step evaluates U (the Metropolis test needs it there
    alone): the others take the gradient only, which skips a log per pattern and neuron."""
    cos, sin = jnp.cos(step_size), jnp.sin(step_size)

    def kick(z, p, grad):  # half a step of U₁ = U − |z|²/2
        return p - 0.5 * step_size * (grad - z)

    def drift(z, p, grad):  # a half kick, then the Gaussian's exact rotation
        p = kick(z, p, grad)
        return z * cos + p * sin, p * cos - z * sin

    def step(_, carry):
        z, p = drift(*carry)
        grad = jax.grad(potential)(z)
        return z, kick(z, p, grad), grad

    z, p, grad = jax.lax.fori_loop(0, num_steps - 1, step, (z, p, grad))
    z, p = drift(z, p, grad)
    value, grad = jax.value_and_grad(potential)(z)
    return z, kick(z, p, grad), value, grad


def split_hmc(potential_fn_gen):
    """(init_kernel, sample_kernel) of split HMC for the potential ``potential_fn_gen(*args)``
    (a function of z whose Laplace approximation is the unit Gaussian), with the call
    signatures of NumPyro's ``hmc`` kernels (mass-matrix and tree options are ignored)."""
    from numpyro.infer.hmc_util import dual_averaging

    da_init, da_update = dual_averaging()

    def init_kernel(z, num_warmup, step_size=1.0, *, target_accept_prob=0.8,
                    trajectory_length=jnp.pi / 2, model_args=(), rng_key=None, **_):
        value, grad = jax.value_and_grad(potential_fn_gen(*model_args))(z)
        length = jnp.asarray(trajectory_length, z.dtype)
        step = jnp.minimum(jnp.asarray(step_size, z.dtype), length)
        adapt = AdaptState(step, da_init(jnp.log(10.0 * step)),
                           jnp.asarray(num_warmup, jnp.int32),
                           jnp.asarray(target_accept_prob, z.dtype), length)
        return SplitHMCState(jnp.zeros((), jnp.int32), z, grad, value, value,
                             jnp.zeros((), jnp.int32), jnp.zeros((), z.dtype),
                             jnp.zeros((), bool), adapt, rng_key)

    def sample_kernel(state, model_args=()):
        key, key_p, key_u = jax.random.split(state.rng_key, 3)
        z0, adapt = state.z, state.adapt_state
        p0 = jax.random.normal(key_p, z0.shape, z0.dtype)
        num_steps = jnp.ceil(adapt.trajectory_length / adapt.step_size).astype(jnp.int32)
        z, p, value, grad = _trajectory(potential_fn_gen(*model_args), z0, p0, state.z_grad,
                                        adapt.trajectory_length / num_steps, num_steps)
        energy0 = state.potential_energy + 0.5 * jnp.sum(p0 * p0)
        energy = value + 0.5 * jnp.sum(p * p)
        delta = jnp.where(jnp.isnan(energy), jnp.inf, energy - energy0)
        accept_prob = jnp.exp(-jnp.maximum(delta, 0.0))
        accept = jax.random.uniform(key_u, (), z0.dtype) < accept_prob
        z, grad, value, energy = jax.tree.map(
            lambda new, old: jnp.where(accept, new, old), (z, grad, value, energy),
            (z0, state.z_grad, state.potential_energy, energy0))
        return SplitHMCState(state.i + 1, z, grad, value, energy, num_steps, accept_prob,
                             delta > MAX_DELTA_ENERGY, _adapt(state, accept_prob, da_update), key)

    return init_kernel, sample_kernel


def _adapt(state, accept_prob, da_update):
    """Dual averaging of log ε towards the target acceptance during warmup; at its last
    iteration ε becomes the averaged iterate (Hoffman & Gelman 2014, Algorithm 5); after
    warmup ε is fixed."""
    adapt = state.adapt_state
    warmup = state.i < adapt.num_warmup
    da_state = da_update(adapt.target_accept - accept_prob, adapt.dual_averaging)
    log_step = jnp.where(state.i == adapt.num_warmup - 1, da_state[1], da_state[0])
    step = jnp.clip(jnp.exp(log_step), adapt.trajectory_length / MAX_STEPS,
                    adapt.trajectory_length).astype(state.z.dtype)
    keep = jax.tree.map(lambda new, old: jnp.where(warmup, new, old), (step, da_state),
                        (adapt.step_size, adapt.dual_averaging))
    return adapt._replace(step_size=keep[0], dual_averaging=keep[1])
