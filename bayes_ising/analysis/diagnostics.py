r"""Convergence and per-neuron reliability of a posterior over (h, J).

Everything here reads the posterior DataTree of :func:`bayes_ising.fit.bayes.fit_posterior`
(group ``posterior`` with ``h`` (chain, draw, neuron) and ``J`` (chain, draw, pair), pair
coordinates ``neuron_i``/``neuron_j``; group ``sample_stats``; attrs ``model_spec``).

Per parameter (``arviz_stats``): rank-normalised split R-hat, bulk and tail ESS, MCSE of the
mean and of the sd (Vehtari et al. 2021). Per run: divergences, E-BFMI per chain
(Betancourt 2016) and the fraction of transitions that hit the maximum tree depth (written here:
NumPyro stores the depth, not a saturation flag). Identification: the posterior contraction

.. math:: c = 1 - \mathrm{Var}_\text{post}(\theta) / \mathrm{Var}_\text{ref}(\theta)

and the central 90% interval width.

**Reference variance.** ``contraction_prior`` uses the prior variance of the model spec:
:math:`\sigma_h^2` for h; for J, :math:`\sigma_J^2` (normal), :math:`E[\sigma_b^2] = \sigma_J^2`
for the hierarchical prior (σ_b ~ HalfNormal(σ_J), so the prior predictive variance of J_ij is
σ_J²) and a fixed-seed Monte Carlo of the regularised horseshoe's prior predictive variance.
With 10⁴–10⁵ bins every parameter contracts to ≥ 0.9 against a prior of sd 1 while couplings of
0.05 are the scale of interest — so the reliability rule measures contraction against the scale
the data show: ``contraction`` uses

.. math:: \mathrm{Var}_\text{ref} = \min\big(\mathrm{Var}_\text{prior},
          \max(s^2, s_\text{min}^2)\big),

where *s* is the robust spread (1.4826 · MAD) of the posterior means of that parameter type
across the population (neurons for h, pairs for J) and :math:`s_\text{min}` =
``min_reference_sd`` (default 0.02: a coupling of 0.02 changes the log-odds of joint firing by
4·0.02 = 0.08). A coupling whose posterior sd is as large as the spread of couplings in the
network (c ≤ 0) says nothing about the network's structure.

**Flagging rule** (:func:`neuron_reliability`). A neuron's parameters are h_i and its N−1
couplings J_i·. It is flagged

* *non-convergence*: max R-hat > ``max_rhat`` (1.01), or min bulk or tail ESS < ``min_ess``
  (400), over its parameters; or divergent transitions localised on its parameters (divergent
  draws concentrated in a tail of one of its parameters: rank test |z| > 4 with at least 5
  divergences, see :func:`divergence_localization`);
* *weak identification*: contraction of its 0/1-convention field
  a_i = 2h_i − 2Σ_j J_ij < ``min_contraction`` (0.5), or the median contraction over J_i· <
  ``min_contraction``. The rule judges a_i, not h_i: in the ±1 convention a coupling to a
  neuron that (nearly) never fires is almost a shift of h_i, so one silent neuron would make
  every h_i look unidentified (its prior width); a_i — the log-odds of firing when the others
  are silent — and the couplings are what the data constrain about neuron i. A silent neuron
  is flagged through its own a_i and couplings; a neuron with a handful of spikes through its
  couplings. Contractions below 0 (posterior wider than the reference scale) are printed with
  that explanation.

Each flag carries its reasons as strings. The run-level verdict (:func:`diagnose`) is
"converged" when no parameter breaks the R-hat/ESS cuts, there are no divergences, every
chain has E-BFMI ≥ 0.3 and fewer than 25% of transitions saturate the tree depth; otherwise the
reasons list says which. Saturation above 1% (but below 25%) is reported under ``warnings``:
it costs efficiency, and R-hat/ESS already say whether the draws are good.

**Validity** (:func:`posterior_validity`), beside mixing: a pseudo-posterior of N > 22 neurons
is *valid* only when its model check passed (:func:`bayes_ising.fit.validity.model_check`: the
centre, simulated from random and from data-row starts, reproduces the data's means and
connected correlations within the Monte Carlo and the data's sampling errors) and, when the
curvature was adjusted, the adjustment changed the median posterior sd by less than a factor
``bayes.SD_RATIO_LIMIT`` (4) either way; a missing check is not valid. Exact-likelihood
posteriors, and pseudo-posteriors of N ≤ 22 (centre and curvature by enumeration), need no
simulation. :func:`diagnose` reports ``valid`` and ``validity_reason`` and its ``verdict``
reads "converged and valid", "NOT valid: … (the chains mixed …)" or "NOT converged: …".
"""

import json

import numpy as np
import xarray as xr

from bayes_ising._deprecation import module_aliases, renamed_kwargs
from bayes_ising.core import convergence
from bayes_ising.fit import posterior as posterior_contract

__all__ = [
    "MAX_RHAT",
    "MIN_ESS",
    "MIN_CONTRACTION",
    "MIN_BFMI",
    "MAX_TREE_DEPTH_SATURATION",
    "TREE_DEPTH_SATURATION_FAIL",
    "prior_variance",
    "parameter_table",
    "sampler_diagnostics",
    "divergence_localization",
    "neuron_reliability",
    "potential_reliability",
    "lattice_gas_fields",
    "lattice_gas_summary",
    "diagnose",
    "posterior_validity",
    "compare_rules",
    "rule_recovery",
    "recovery_errors",
    "recovery_comparison",
]

#: R-hat and ESS cuts: the package's one rule (:mod:`bayes_ising.core.convergence`)
MAX_RHAT = convergence.MAX_RHAT
MIN_ESS = convergence.MIN_ESS
#: contraction below this is weak identification (posterior sd > 0.71 of the reference sd)
MIN_CONTRACTION = 0.5
#: E-BFMI below this is poor energy exploration (Betancourt 2016)
MIN_BFMI = 0.3
#: fraction of transitions at the maximum tree depth above which the run is not trusted
MAX_TREE_DEPTH_SATURATION = 0.01
#: ... and above this the saturation alone makes the run untrusted (truncated trajectories)
TREE_DEPTH_SATURATION_FAIL = 0.25
#: smallest reference sd for contraction (a coupling of 0.02 moves joint-firing log-odds by 0.08)
MIN_REFERENCE_SD = 0.02
#: central interval probability for the interval width
INTERVAL_PROB = 0.9
_SAMPLE_DIMS = ("chain", "draw")
#: the old spellings (one release): constants and keyword arguments
_RENAMED = {"RHAT_MAX": "MAX_RHAT", "ESS_MIN": "MIN_ESS", "CONTRACTION_MIN": "MIN_CONTRACTION",
            "BFMI_MIN": "MIN_BFMI", "TREE_DEPTH_SATURATION_MAX": "MAX_TREE_DEPTH_SATURATION"}
_RENAMED_KWARGS = {k.lower(): v.lower() for k, v in _RENAMED.items()}
__getattr__ = module_aliases(__name__, globals(), _RENAMED)


# --------------------------------------------------------------------------------------------
# Prior variance
# --------------------------------------------------------------------------------------------


def _model_spec(tree):
    """The ModelSpec stored in ``tree.attrs['model_spec']`` (JSON), or the default."""
    from bayes_ising.fit.model_spec import ModelSpec, default_model_spec

    text = tree.attrs.get("model_spec")
    if text is None or text == "":  # K-pairwise fits without a spec: the default priors
        return default_model_spec()
    if isinstance(text, dict):
        text = json.dumps(text)
    return ModelSpec.from_json(text)


def _horseshoe_variance(global_scale, slab_scale, slab_df, num_samples=200_000, seed=0):
    r"""Prior predictive variance of a regularised-horseshoe coupling (fixed-seed Monte Carlo).

    J = τ λ̃ z, λ̃² = c² λ² / (c² + τ² λ²), τ ~ HalfCauchy(global_scale), λ ~ HalfCauchy(1),
    c² ~ InvGamma(ν/2, ν s²/2), z ~ Normal(0, 1)  ⇒  Var J = E[τ² λ̃²] ≤ E[c²] (finite).
    """
    rng = np.random.default_rng(seed)
    tau = np.abs(global_scale * rng.standard_cauchy(num_samples))
    lam = np.abs(rng.standard_cauchy(num_samples))
    c2 = (slab_df * slab_scale**2 / 2) / rng.gamma(slab_df / 2, 1.0, num_samples)
    lam_tilde2 = c2 * lam**2 / (c2 + tau**2 * lam**2)
    return float(np.mean(tau**2 * lam_tilde2))


def prior_variance(tree):
    r"""Prior variances of h_i and J_ij (and, for a K-pairwise posterior, of V(k), k = 1..N)
    from the model spec in ``tree.attrs``.

    If the tree has a ``prior`` group with ``h`` and ``J`` draws, their variances are used
    instead (whatever prior produced them). V has the random-walk prior of
    :func:`bayes_ising.fit.kpairwise_fit.model`, V(0) = 0, V(k) ~ N(V(k−1), v_scale), so
    :math:`\mathrm{Var}\,V(k) = k\,v_{scale}^2`.

    Returns
    -------
    dict with ``"h"`` (N,) and ``"J"`` (P,) float arrays, and ``"V"`` (N,) for k = 1..N when
    the posterior has ``V``.
    """
    posterior = tree["posterior"]
    num_neurons = posterior.sizes["neuron"]
    num_pairs = posterior.sizes["pair"]
    spec = _model_spec(tree)
    extra = ({"V": spec.v_scale**2 * np.arange(1, num_neurons + 1, dtype=float)}
             if posterior_contract.has_potential(tree) else {})
    if "prior" in tree.children and {"h", "J"} <= set(tree["prior"].data_vars):
        prior = tree["prior"]
        dims = [d for d in _SAMPLE_DIMS if d in prior["h"].dims]
        return {"h": prior["h"].var(dims).values, "J": prior["J"].var(dims).values, **extra}
    var_h = spec.h_scale**2
    if spec.j_family in ("normal", "hierarchical"):
        # hierarchical: J ~ N(0, σ_b), σ_b ~ HalfNormal(scale) ⇒ Var J = E[σ_b²] = scale²
        var_j = spec.j_scale**2
    else:
        var_j = _horseshoe_variance(spec.global_scale, spec.slab_scale, spec.slab_df)
    return {"h": np.full(num_neurons, var_h), "J": np.full(num_pairs, var_j), **extra}


# --------------------------------------------------------------------------------------------
# Per-parameter table
# --------------------------------------------------------------------------------------------


def _robust_sd(values):
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def parameter_table(tree, *, min_reference_sd=MIN_REFERENCE_SD, interval_prob=INTERVAL_PROB):
    """Per-parameter diagnostics and identification of ``h``, ``J`` and, for a K-pairwise
    posterior, ``V`` (its sampled levels k = 1..N; V(0) = 0 is fixed).

    Returns
    -------
    xarray.Dataset with variables ``<stat>_h`` (neuron), ``<stat>_J`` (pair) and
    ``<stat>_V`` (k; K-pairwise only) for stat in mean, sd, rhat, ess_bulk, ess_tail,
    mcse_mean, mcse_sd, lower, upper, width (central ``interval_prob`` interval), prior_var,
    reference_var, contraction_prior, contraction.
    """
    import arviz_stats as azs

    names = ("h", "J", "V") if posterior_contract.has_potential(tree) else ("h", "J")
    posterior = posterior_contract.posterior_group(tree)[list(names)]
    prior_var = prior_variance(tree)
    out = {}
    for name in names:
        da = posterior[name]
        if name == "V":  # the sampled levels only: V(0) = 0 in every draw
            level = next(d for d in da.dims if d not in _SAMPLE_DIMS)
            da = da.isel({level: slice(1, None)})
        mean = da.mean(_SAMPLE_DIMS)
        sd = da.std(_SAMPLE_DIMS, ddof=1)
        # the package's one R-hat / bulk / tail ESS (NaN R-hat with one chain)
        rhat, ess_bulk, ess_tail = (
            xr.DataArray(v, dims=mean.dims, coords=mean.coords) for v in
            convergence.draw_statistics(da.transpose(*_SAMPLE_DIMS, ...).values))
        mcse_mean = azs.mcse(da, sample_dims=list(_SAMPLE_DIMS), method="mean")
        mcse_sd = azs.mcse(da, sample_dims=list(_SAMPLE_DIMS), method="sd")
        tail = (1 - interval_prob) / 2
        lower = da.quantile(tail, _SAMPLE_DIMS).drop_vars("quantile")
        upper = da.quantile(1 - tail, _SAMPLE_DIMS).drop_vars("quantile")
        pv = xr.DataArray(prior_var[name], dims=mean.dims, coords=mean.coords)
        spread = max(_robust_sd(mean.values), min_reference_sd)
        ref = np.minimum(pv, spread**2)
        var_post = sd**2
        for stat, value in dict(
            mean=mean, sd=sd, rhat=rhat, ess_bulk=ess_bulk, ess_tail=ess_tail,
            mcse_mean=mcse_mean, mcse_sd=mcse_sd, lower=lower, upper=upper,
            width=upper - lower, prior_var=pv, reference_var=ref,
            contraction_prior=1 - var_post / pv, contraction=1 - var_post / ref,
        ).items():
            out[f"{stat}_{name}"] = value
    ds = xr.Dataset(out)
    ds.attrs.update(interval_prob=interval_prob, min_reference_sd=min_reference_sd)
    return ds


# --------------------------------------------------------------------------------------------
# Sampler diagnostics
# --------------------------------------------------------------------------------------------


def _max_tree_depth(tree, sample_stats):
    for source in (sample_stats.attrs, tree.attrs):
        if "max_tree_depth" in source:
            return int(source["max_tree_depth"])
    try:
        return int(_model_spec(tree).max_tree_depth)
    except Exception:  # noqa: BLE001 - an unreadable spec falls back to NumPyro's default
        return 10


def _bfmi(energy):
    """E-BFMI per chain: Σ (E_t − E_{t−1})² / Σ (E_t − Ē)², energy (chains, draws)."""
    energy = np.asarray(energy, float)
    num = np.sum(np.diff(energy, axis=1) ** 2, axis=1)
    den = np.sum((energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return num / np.where(den > 0, den, np.nan)


def sampler_diagnostics(tree):
    """Divergences, E-BFMI per chain and tree-depth saturation from ``sample_stats``.

    Returns
    -------
    dict: ``num_transitions``, ``num_divergent``, ``divergent_fraction``, ``bfmi`` (list per
    chain, or None without ``energy``), ``max_tree_depth``, ``tree_depth_saturation``
    (fraction of transitions with depth ≥ max; None without ``tree_depth``/``num_steps``).
    """
    posterior = tree["posterior"]
    num_transitions = int(np.prod([posterior.sizes[d] for d in _SAMPLE_DIMS]))
    out = dict(num_transitions=num_transitions, num_divergent=0, divergent_fraction=0.0,
               bfmi=None, max_tree_depth=None, tree_depth_saturation=None)
    if "sample_stats" not in tree.children:
        # trees of bayes_ising.fit.kpairwise_fit keep only the count, as a root attribute
        num_div = int((getattr(tree, "attrs", None) or {}).get("num_divergent", 0))
        out.update(num_divergent=num_div, divergent_fraction=num_div / num_transitions)
        return out
    stats = tree["sample_stats"]
    if "diverging" in stats.data_vars:
        num_div = int(np.asarray(stats["diverging"]).astype(bool).sum())
        out.update(num_divergent=num_div, divergent_fraction=num_div / num_transitions)
    if "energy" in stats.data_vars:
        energy = stats["energy"].transpose("chain", "draw").values
        out["bfmi"] = [float(v) for v in _bfmi(energy)]
    max_depth = _max_tree_depth(tree, stats)
    if "reached_max_treedepth" in stats.data_vars:
        saturated = np.asarray(stats["reached_max_treedepth"]).astype(bool)
    elif "tree_depth" in stats.data_vars:
        saturated = np.asarray(stats["tree_depth"]) >= max_depth
    elif "num_steps" in stats.data_vars:
        # NumPyro: a tree of depth d takes up to 2^d − 1 leapfrog steps
        depth = np.ceil(np.log2(np.asarray(stats["num_steps"], float) + 1))
        saturated = depth >= max_depth
    else:
        saturated = None
    if saturated is not None:
        out.update(max_tree_depth=max_depth, tree_depth_saturation=float(np.mean(saturated)))
    return out


def divergence_localization(tree, *, min_divergences=5, z_cut=4.0):
    r"""Which parameters the divergent transitions concentrate on.

    For each parameter θ, let :math:`u_d \in (0, 1)` be the rank of divergent draw d among all
    draws. Without localisation u is uniform: :math:`\bar u` has mean 1/2 and variance
    1/(12 n), :math:`\overline{|u - 1/2|}` mean 1/4 and variance 1/(48 n), n = number of
    divergences. z = max(|z(ū)|, z(|u − ½|)) flags divergent draws piled in one tail (a
    boundary) or in both tails (a funnel's neck).

    Returns
    -------
    dict ``{"h": bool (N,), "J": bool (P,), "z_h": (N,), "z_J": (P,)}``; all False when there
    are fewer than ``min_divergences`` divergences.
    """
    posterior = tree["posterior"]
    num_neurons, num_pairs = posterior.sizes["neuron"], posterior.sizes["pair"]
    empty = {"h": np.zeros(num_neurons, bool), "J": np.zeros(num_pairs, bool),
             "z_h": np.zeros(num_neurons), "z_J": np.zeros(num_pairs)}
    if "sample_stats" not in tree.children or "diverging" not in tree["sample_stats"].data_vars:
        return empty
    diverging = tree["sample_stats"]["diverging"].transpose("chain", "draw").values
    diverging = diverging.astype(bool).reshape(-1)
    n = int(diverging.sum())
    if n < min_divergences:
        return empty
    out = {}
    for name, values in zip(("h", "J"), posterior_contract.flat_draws(tree), strict=True):
        values = values.reshape(-1, values.shape[-1])
        ranks = (np.argsort(np.argsort(values, axis=0), axis=0) + 0.5) / values.shape[0]
        u = ranks[diverging]
        z_mean = (u.mean(axis=0) - 0.5) / np.sqrt(1 / (12 * n))
        z_tail = (np.abs(u - 0.5).mean(axis=0) - 0.25) / np.sqrt(1 / (48 * n))
        z = np.maximum(np.abs(z_mean), z_tail)
        out[name], out[f"z_{name}"] = z > z_cut, z
    return out


# --------------------------------------------------------------------------------------------
# Per-neuron reliability and the run verdict
# --------------------------------------------------------------------------------------------


#: draws (evenly thinned) used for the 0/1-field identification table
_LATTICE_GAS_DRAWS = 2000


def lattice_gas_fields(tree, *, min_reference_sd=MIN_REFERENCE_SD,
                       interval_prob=INTERVAL_PROB):
    r"""Identification of the 0/1-convention fields :math:`a_i = 2h_i - 2\sum_j J_{ij}`
    (:func:`bayes_ising.core.ising.to_lattice_gas`): the log-odds of neuron i firing when the others
    are silent — what the data constrain about neuron i itself. For a K-pairwise posterior
    that log-odds also holds the potential's first step, :math:`a_i = 2h_i - 2\sum_j J_{ij}
    + V(1)` (V(0) = 0), with prior variance :math:`+\mathrm{Var}\,V(1)`.

    In the ±1 convention a coupling J_ij to a neuron j that (nearly) never fires is almost a
    shift of h_i, so every h_i inherits that coupling's prior width; a_i does not. Prior
    variance :math:`4\,\mathrm{Var}\,h_i + 4\sum_j \mathrm{Var}\,J_{ij}` (zero-mean,
    uncorrelated coupling priors); reference variance as for h (module docstring).

    Returns
    -------
    dict of (N,) arrays: ``mean``, ``sd``, ``width``, ``prior_var``, ``reference_var``,
    ``contraction_prior``, ``contraction``.
    """
    from bayes_ising.core import ising

    h, J, V = posterior_contract.posterior_draws(tree, num_draws=_LATTICE_GAS_DRAWS,
                                                 potential=True)
    a = np.asarray(ising.to_lattice_gas(h, J)[0])
    first, second = posterior_contract.pair_members(tree)
    prior = prior_variance(tree)
    incident = np.zeros(a.shape[1])
    np.add.at(incident, first, prior["J"])
    np.add.at(incident, second, prior["J"])
    prior_var = 4.0 * np.asarray(prior["h"]) + 4.0 * incident
    if V is not None:
        a = a + V[:, 1:2]
        prior_var = prior_var + prior["V"][0]
    mean, var = a.mean(axis=0), a.var(axis=0, ddof=1)
    spread = max(_robust_sd(mean), min_reference_sd)
    reference = np.minimum(prior_var, spread**2)
    tail = (1 - interval_prob) / 2
    lower, upper = np.quantile(a, [tail, 1 - tail], axis=0)
    return {"mean": mean, "sd": np.sqrt(var), "width": upper - lower, "prior_var": prior_var,
            "reference_var": reference, "contraction_prior": 1 - var / prior_var,
            "contraction": 1 - var / reference}


def _contraction_text(value):
    """A contraction as shown to users: below 0 it needs its reason."""
    text = f"{value:.2f}"
    if value < 0:
        text += (" (below 0: the posterior is wider than the reference scale, i.e. the data "
                 "do not narrow it at all)")
    return text


def _firing_probability(tree, num_neurons):
    if "observed_data" in tree.children and "firing_probability" in tree["observed_data"]:
        return np.asarray(tree["observed_data"]["firing_probability"].values, float)
    if "observed_data" in tree.children and "m" in tree["observed_data"]:
        return (1 + np.asarray(tree["observed_data"]["m"].values, float)) / 2
    return np.full(num_neurons, np.nan)


def neuron_reliability(tree, params=None, *, max_rhat=MAX_RHAT, min_ess=MIN_ESS,
                       min_contraction=MIN_CONTRACTION, localization=None, **deprecated):
    """Per-neuron reliability table (see the module docstring for the rule).

    Parameters
    ----------
    tree : posterior DataTree.
    params : the :func:`parameter_table` of ``tree`` (computed when None).
    max_rhat, min_ess, min_contraction : the cuts (old spellings ``rhat_max``, ``ess_min``,
        ``contraction_min`` are deprecated).
    localization : :func:`divergence_localization` of ``tree`` (computed when None).

    Returns
    -------
    list of dicts, one per neuron: ``id``, ``cell_type``, ``firing_probability``, ``flagged``,
    ``reasons`` (list of str), ``non_convergence``, ``weak_identification`` (bools),
    ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``contraction`` (= min of the 0/1-field
    contraction (:func:`lattice_gas_fields`) and the median J_i· contraction),
    ``contraction_a``, ``width_a``, ``contraction_h`` (±1 field: reported, not judged),
    ``contraction_J_median``,
    ``contraction_prior_h``, ``contraction_prior_J_median``, ``width_h``,
    ``width_J_median``, ``divergence_touched``.
    """
    cuts = dict(max_rhat=max_rhat, min_ess=min_ess, min_contraction=min_contraction)
    cuts.update(renamed_kwargs(deprecated, _RENAMED_KWARGS, "neuron_reliability"))
    if params is None:
        params = parameter_table(tree)
    if localization is None:
        localization = divergence_localization(tree)
    ids = posterior_contract.neuron_ids(tree).tolist()
    num_neurons = len(ids)
    first, second = posterior_contract.pair_members(tree)
    types = posterior_contract.cell_types(tree)
    cell_types = [""] * num_neurons if types is None else types.tolist()
    firing = _firing_probability(tree, num_neurons)
    get = {k: np.asarray(params[k].values, float) for k in params.data_vars}
    fields = lattice_gas_fields(tree, min_reference_sd=float(
        params.attrs.get("min_reference_sd", MIN_REFERENCE_SD)))
    rows = []
    for i in range(num_neurons):
        pairs = np.flatnonzero((first == i) | (second == i))
        row = _neuron_row(i, pairs, get, fields, localization, **cuts)
        rows.append(dict(id=ids[i], cell_type=cell_types[i] if i < len(cell_types) else "",
                         firing_probability=float(firing[i]), **row))
    return rows


def _neuron_row(i, pairs, get, fields, localization, *, max_rhat, min_ess, min_contraction):
    """Verdict and statistics of neuron i from its field's and its couplings' (``pairs``)
    entries of the parameter table ``get``."""
    rhat = np.concatenate([[get["rhat_h"][i]], get["rhat_J"][pairs]])
    ess_bulk = np.concatenate([[get["ess_bulk_h"][i]], get["ess_bulk_J"][pairs]])
    ess_tail = np.concatenate([[get["ess_tail_h"][i]], get["ess_tail_J"][pairs]])
    c_a = float(fields["contraction"][i])
    c_j = float(np.median(get["contraction_J"][pairs])) if pairs.size else np.nan
    worst_rhat = float(np.nanmax(rhat)) if np.any(np.isfinite(rhat)) else np.nan
    min_bulk, min_tail = float(np.nanmin(ess_bulk)), float(np.nanmin(ess_tail))
    touched = bool(localization["h"][i] or np.any(localization["J"][pairs]))
    rhat_over, ess_under = convergence.rule_failures(rhat, ess_bulk, ess_tail,
                                                     max_rhat=max_rhat, min_ess=min_ess)
    mixing = []
    if np.any(rhat_over):
        mixing.append(f"non-convergence: max R-hat {worst_rhat:.3f} > {max_rhat}")
    if np.any(ess_under):
        mixing.append(
            f"non-convergence: min ESS bulk {min_bulk:.0f} / tail {min_tail:.0f} < {min_ess}")
    if touched:
        mixing.append("non-convergence: divergent transitions localised on its parameters")
    weak = []
    if c_a < min_contraction:
        weak.append(f"weak identification: contraction of its 0/1 field a "
                    f"{_contraction_text(c_a)} < {min_contraction}")
    if np.isfinite(c_j) and c_j < min_contraction:
        weak.append(f"weak identification: median contraction of its couplings "
                    f"{_contraction_text(c_j)} < {min_contraction}")
    median = (lambda name: float(np.median(get[name][pairs])) if pairs.size else np.nan)
    return dict(
        flagged=bool(mixing or weak), reasons=mixing + weak, non_convergence=bool(mixing),
        weak_identification=bool(weak), max_rhat=worst_rhat, min_ess_bulk=min_bulk,
        min_ess_tail=min_tail, contraction=float(np.nanmin([c_a, c_j])),
        contraction_h=float(get["contraction_h"][i]), contraction_a=c_a,
        width_a=float(fields["width"][i]), contraction_J_median=c_j,
        contraction_prior_h=float(get["contraction_prior_h"][i]),
        contraction_prior_J_median=median("contraction_prior_J"),
        width_h=float(get["width_h"][i]), width_J_median=median("width_J"),
        divergence_touched=touched)


def lattice_gas_summary(tree, interval=0.9):
    """Mean, sd, central interval, R-hat and bulk/tail ESS of the 0/1-convention parameters
    (``a`` per neuron, ``b`` per pair; :func:`bayes_ising.fit.posterior.lattice_gas_group`)."""
    group = posterior_contract.lattice_gas_group(tree).to_dataset()
    dims = ["chain", "draw"]
    tail = (1 - interval) / 2
    out = {"convention": group.attrs["convention"], "interval": interval}
    for name in ("a", "b"):
        da = group[name]
        rhat, ess_bulk, ess_tail = convergence.draw_statistics(da.transpose(*dims, ...).values)
        out[name] = {
            "mean": da.mean(dims).values, "sd": da.std(dims, ddof=1).values,
            "lower": da.quantile(tail, dims).values, "upper": da.quantile(1 - tail, dims).values,
            "rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail}
    return out


def _attr_json(tree, name):
    raw = tree.attrs.get(name)
    if raw is None:
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


def posterior_validity(tree):
    """Does the posterior's model reproduce its data (module docstring, **Validity**)?

    Returns a JSON-able dict: ``valid`` (bool), ``validity_reason`` (one line), ``required``
    (whether a model check is needed), ``model_check`` (verdict, passed, reason, the worst
    |Δm|, |ΔC| and mean activities; None when absent), ``sd_ratio_median`` (or None).
    """
    from bayes_ising.core import ising
    from bayes_ising.fit import bayes

    num_neurons = tree["posterior"].sizes.get("neuron", 0)
    likelihood = tree.attrs.get("likelihood", "exact")
    info = _attr_json(tree, "adjust_info") or {}
    check = _attr_json(tree, "model_check")
    required = likelihood == "pseudo" and num_neurons > ising.MAX_EXACT_NEURONS
    summary = None
    if check is not None:
        passed = bool(check.get("passed", check.get("verdict") == "ok"))
        starts = [check[k] for k in ("random_start", "data_start") if k in check]
        summary = {"verdict": check.get("verdict"), "passed": passed,
                   "reason": check.get("reason", check.get("verdict")),
                   "max_abs_mean": max((r["max_abs_mean"] for r in starts), default=None),
                   "max_abs_connected": max((r["max_abs_connected"] for r in starts),
                                            default=None),
                   "mean_activity": [r["mean_activity"] for r in starts],
                   "data_mean_activity": check.get("data", {}).get("mean_activity")}
    ratio = info.get("sd_ratio_median")
    limit = float(info.get("sd_ratio_limit", bayes.SD_RATIO_LIMIT))
    if summary is not None and not summary["passed"]:
        valid, reason = False, f"model check failed: {summary['verdict']} ({summary['reason']})"
    elif summary is None and required:
        valid, reason = False, (f"model check missing (required for pseudo-posteriors of "
                                f"N > {ising.MAX_EXACT_NEURONS}); refit with this version")
    elif ratio is not None and not 1.0 / limit <= ratio <= limit:
        valid, reason = False, (f"the curvature adjustment changed the posterior sds by a "
                                f"median factor {ratio:.2f} (outside [1/{limit:g}, {limit:g}])")
    elif info.get("centre_converged") is False and not required:
        valid, reason = False, "the adjustment's centre (exact MAP) did not converge"
    elif summary is not None:
        valid, reason = True, f"model check passed: {summary['reason']}"
    else:
        valid, reason = True, ("exact likelihood" if likelihood == "exact" else
                               f"pseudo-posterior of N = {num_neurons} <= "
                               f"{ising.MAX_EXACT_NEURONS}: no simulation check needed")
    return {"valid": valid, "validity_reason": reason, "required": required,
            "model_check": summary, "sd_ratio_median": ratio}


def diagnose(tree, *, max_rhat=MAX_RHAT, min_ess=MIN_ESS, min_contraction=MIN_CONTRACTION,
             min_bfmi=MIN_BFMI, max_tree_depth_saturation=MAX_TREE_DEPTH_SATURATION,
             min_reference_sd=MIN_REFERENCE_SD, **deprecated):
    """Run-level verdict and per-neuron reliability of a posterior.

    The cuts are keyword arguments named as in the JSON ``thresholds``; the old spellings
    (``rhat_max``, ``ess_min``, ``contraction_min``, ``bfmi_min``,
    ``tree_depth_saturation_max``) still work, with a DeprecationWarning.

    Returns
    -------
    dict (JSON-able): ``converged`` (bool, mixing), ``reasons`` (list of str; empty when
    converged), ``valid`` and ``validity_reason`` (:func:`posterior_validity`, also in full
    under ``validity``), ``verdict`` (one line: mixing and validity together),
    ``sampler`` (:func:`sampler_diagnostics`), ``summary`` (max R-hat, min bulk/tail ESS,
    number of parameters over each cut; V's levels included), ``thresholds``, ``neurons``
    (:func:`neuron_reliability`: per neuron over h_i and J_i·), ``potential``
    (:func:`potential_reliability`: per level V(k) of a K-pairwise posterior; None for
    pairwise ones), ``num_flagged``, and ``parameters`` (the
    :func:`parameter_table` Dataset; drop it before writing JSON).
    """
    cuts = dict(max_rhat=max_rhat, min_ess=min_ess, min_contraction=min_contraction,
                min_bfmi=min_bfmi, max_tree_depth_saturation=max_tree_depth_saturation)
    cuts.update(renamed_kwargs(deprecated, _RENAMED_KWARGS, "diagnose"))
    max_rhat, min_ess, min_contraction, min_bfmi, max_tree_depth_saturation = cuts.values()
    params = parameter_table(tree, min_reference_sd=min_reference_sd)
    sampler = sampler_diagnostics(tree)
    localization = divergence_localization(tree)
    neurons = neuron_reliability(tree, params, max_rhat=max_rhat, min_ess=min_ess,
                                 min_contraction=min_contraction, localization=localization)
    names = [n for n in ("h", "J", "V") if f"rhat_{n}" in params]
    rhat, ess_bulk, ess_tail = (np.concatenate([params[f"{stat}_{n}"].values for n in names])
                                for stat in ("rhat", "ess_bulk", "ess_tail"))
    potential = (potential_reliability(params, max_rhat=max_rhat, min_ess=min_ess)
                 if "V" in names else None)
    num_chains = tree["posterior"].sizes.get("chain", 1)
    mixing = convergence.verdict(rhat, ess_bulk, ess_tail, sampler["num_divergent"],
                                 num_chains=num_chains,
                                 num_transitions=sampler["num_transitions"],
                                 max_rhat=max_rhat, min_ess=min_ess)
    reasons = list(mixing.reasons)
    if sampler["bfmi"] is not None:
        low = [k for k, v in enumerate(sampler["bfmi"]) if np.isfinite(v) and v < min_bfmi]
        if low:
            reasons.append(f"E-BFMI < {min_bfmi} in chain(s) {low} "
                           f"({', '.join(f'{sampler['bfmi'][k]:.2f}' for k in low)})")
    # Tree-depth saturation is an efficiency concern, not a validity one (Stan's and ArviZ's
    # reading): it becomes a reason only when it is extreme; otherwise a warning.
    warnings = []
    saturation = sampler["tree_depth_saturation"]
    if saturation is not None and saturation > max_tree_depth_saturation:
        message = (f"{100 * saturation:.1f}% of transitions hit the maximum tree depth "
                   f"{sampler['max_tree_depth']}")
        if saturation > TREE_DEPTH_SATURATION_FAIL:
            reasons.append(message + " (trajectories truncated: exploration not trusted)")
        else:
            warnings.append(message + " (inefficient, not invalid, when R-hat and ESS pass)")
    summary = dict(
        num_parameters=int(rhat.size), max_rhat=float(np.nanmax(rhat)) if num_chains > 1
        else None, min_ess_bulk=float(np.nanmin(ess_bulk)), min_ess_tail=float(np.nanmin(ess_tail)),
        num_rhat_over=mixing.num_rhat_over, num_ess_under=mixing.num_ess_under,
    )
    thresholds = dict(cuts, min_reference_sd=min_reference_sd)
    converged = not reasons
    validity = posterior_validity(tree)
    if not converged:
        verdict = "NOT converged: " + "; ".join(reasons)
        if not validity["valid"]:
            verdict += "; NOT valid: " + validity["validity_reason"]
    elif validity["valid"]:
        verdict = "converged and valid"
    else:
        # never "converged" for a model that does not reproduce the data: the word is reserved
        verdict = ("NOT valid: " + validity["validity_reason"]
                   + " (the chains mixed: R-hat, ESS and divergences pass)")
    return dict(converged=converged, reasons=reasons, warnings=warnings, sampler=sampler,
                valid=validity["valid"], validity_reason=validity["validity_reason"],
                validity=validity, verdict=verdict, summary=summary,
                thresholds=thresholds, neurons=neurons, potential=potential,
                num_flagged=int(sum(row["flagged"] for row in neurons)), parameters=params)


def potential_reliability(params, *, max_rhat=MAX_RHAT, min_ess=MIN_ESS):
    """Convergence of each level V(k), k = 1..N, of a K-pairwise posterior's potential (the
    ``*_V`` entries of :func:`parameter_table`), judged by the package's one R-hat / ESS rule
    (:func:`bayes_ising.core.convergence.rule_failures`).

    Returns
    -------
    list of dicts, one per k: ``k``, ``mean``, ``sd``, ``lower``, ``upper``, ``rhat``,
    ``ess_bulk``, ``ess_tail``, ``contraction_prior``, ``flagged`` and ``reasons``.
    """
    get = {stat: np.asarray(params[f"{stat}_V"].values, float) for stat in (
        "mean", "sd", "lower", "upper", "rhat", "ess_bulk", "ess_tail", "contraction_prior")}
    levels = params["mean_V"][params["mean_V"].dims[0]].values
    rhat_over, ess_under = convergence.rule_failures(
        get["rhat"], get["ess_bulk"], get["ess_tail"], max_rhat=max_rhat, min_ess=min_ess)
    rows = []
    for index, level in enumerate(levels):
        reasons = []
        if rhat_over[index]:
            reasons.append(f"non-convergence: R-hat {get['rhat'][index]:.3f} > {max_rhat}")
        if ess_under[index]:
            reasons.append(f"non-convergence: ESS bulk {get['ess_bulk'][index]:.0f} / tail "
                           f"{get['ess_tail'][index]:.0f} < {min_ess}")
        rows.append(dict(k=int(level), **{stat: float(values[index])
                                          for stat, values in get.items()},
                         flagged=bool(reasons), reasons=reasons))
    return rows


# --------------------------------------------------------------------------------------------
# The old way side by side, and which rule predicts bad recovery
# --------------------------------------------------------------------------------------------


def _confusion(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return dict(both=int(np.sum(a & b)), neither=int(np.sum(~a & ~b)),
                only_first=int(np.sum(a & ~b)), only_second=int(np.sum(~a & b)),
                agree=int(np.sum(a == b)), total=int(a.size))


def compare_rules(diagnosis, *, restart_flagged=None, firing_flagged=None):
    """Per-neuron verdicts of the three rules side by side, with agreement counts.

    Parameters
    ----------
    diagnosis : output of :func:`diagnose`.
    restart_flagged : bool (N,), True where the restart cosine-similarity rule rejects the
        neuron (``~restart_table["reliable"]`` of :func:`bayes_ising.fit.mle.restart_reliability`).
    firing_flagged : bool (N,), True where the firing rule rejects it
        (``~mle.firing_threshold_rule(spins)``).

    Returns
    -------
    dict: ``neurons`` (rows with id and each rule's flag), ``agreement`` (pairwise confusion
    counts: both / neither / only_first / only_second / agree / total).
    """
    diag = np.array([row["flagged"] for row in diagnosis["neurons"]])
    rules = {"diagnostics": diag}
    if restart_flagged is not None:
        rules["restarts"] = np.asarray(restart_flagged, bool)
    if firing_flagged is not None:
        rules["firing"] = np.asarray(firing_flagged, bool)
    rows = [{"id": row["id"], **{name: bool(flags[k]) for name, flags in rules.items()}}
            for k, row in enumerate(diagnosis["neurons"])]
    names = list(rules)
    agreement = {f"{a}_vs_{b}": _confusion(rules[a], rules[b])
                 for k, a in enumerate(names) for b in names[k + 1:]}
    return dict(neurons=rows, agreement=agreement)


def _auc(score, label):
    """Area under the ROC curve of ``score`` for the binary ``label`` (Mann–Whitney, ties ½)."""
    score, label = np.asarray(score, float), np.asarray(label, bool)
    pos, neg = score[label], score[~label]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def rule_recovery(errors, badly_recovered_cut, rules):
    """How well each rule predicts the neurons whose parameters are recovered badly.

    Parameters
    ----------
    errors : (N,) per-neuron recovery error against planted truth, e.g. the RMS over h_i and
        J_i· of (posterior mean − truth).
    badly_recovered_cut : a neuron is *badly recovered* when its error exceeds this.
    rules : dict name -> (flags bool (N,), score (N,) or None); a higher score means "less
        reliable" (e.g. 1 − contraction, −cosine similarity, −firing probability).

    Returns
    -------
    dict: ``cut``, ``num_bad``, and per rule ``precision``, ``recall``, ``f1`` of the flags and
    ``auc`` of the score (Mann–Whitney; 0.5 = chance).
    """
    bad = np.asarray(errors, float) > badly_recovered_cut
    out = dict(cut=float(badly_recovered_cut), num_bad=int(bad.sum()), num_neurons=int(bad.size))
    for name, (flags, score) in rules.items():
        flags = np.asarray(flags, bool)
        tp = int(np.sum(flags & bad))
        precision = tp / flags.sum() if flags.sum() else float("nan")
        recall = tp / bad.sum() if bad.sum() else float("nan")
        f1 = (2 * precision * recall / (precision + recall)
              if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0
              else float("nan"))
        out[name] = dict(precision=float(precision), recall=float(recall), f1=float(f1),
                         num_flagged=int(flags.sum()),
                         auc=_auc(score, bad) if score is not None else _auc(flags, bad))
    return out


def recovery_errors(tree, h_true, J_true):
    r"""Per-neuron recovery error: RMS over (h_i, J_i·) of posterior mean − truth, (N,).

    .. math:: e_i = \sqrt{\big[(\bar h_i - h_i)^2 + \sum_{j \ne i}
       (\bar J_{ij} - J_{ij})^2\big] / N}
    """
    h, J = posterior_contract.posterior_draws(tree)
    h_mean, J_mean = h.mean(axis=0), J.mean(axis=0)
    sq = (h_mean - np.asarray(h_true)) ** 2 + np.sum((J_mean - np.asarray(J_true)) ** 2, axis=1)
    return np.sqrt(sq / h_mean.size)


#: a neuron is badly recovered when its RMS error over (h_i, J_i·) exceeds this (couplings of
#: interest are ~0.05–0.2; an error of 0.1 is as large as the effects being measured)
BAD_RECOVERY_CUT = 0.1


def recovery_comparison(rng_key, tree, spins, h_true, J_true, *,
                        bad_cut=BAD_RECOVERY_CUT, num_restarts=5, cosine_cut=0.9,
                        firing_threshold=0.05, diagnosis=None):
    """Which rule best predicts the neurons recovered badly (planted truth known).

    Rules: the diagnostics flags (score 1 − contraction), the study's restart cosine
    similarity (:func:`bayes_ising.fit.mle.restart_reliability`; score −mean cosine) and the
    firing rule (:func:`bayes_ising.fit.mle.firing_threshold_rule`; score −firing probability).

    Returns
    -------
    dict: ``errors`` (N,), ``bad`` (N,) bool, ``rules`` (:func:`rule_recovery`: precision,
    recall, F1 of each rule's flags, AUC of its score), ``agreement``
    (:func:`compare_rules`), ``bad_cut``.
    """
    from bayes_ising.fit import mle

    if diagnosis is None:
        diagnosis = diagnose(tree)
    errors = recovery_errors(tree, h_true, J_true)
    restarts = mle.restart_reliability(rng_key, spins, num_restarts=num_restarts,
                                       cut=cosine_cut)
    kept = np.asarray(mle.firing_threshold_rule(spins, threshold=firing_threshold), bool)
    firing = np.asarray(restarts["firing_probability"], float)
    flags = np.array([row["flagged"] for row in diagnosis["neurons"]])
    contraction = np.array([row["contraction"] for row in diagnosis["neurons"]], float)
    restart_flags = ~np.asarray(restarts["reliable"], bool)
    rules = {
        "diagnostics": (flags, 1 - contraction),
        "restarts": (restart_flags, -np.asarray(restarts["mean_cosine"], float)),
        "firing": (~kept, -firing),
    }
    return dict(errors=errors, bad=errors > bad_cut, bad_cut=bad_cut,
                rules=rule_recovery(errors, bad_cut, rules),
                agreement=compare_rules(diagnosis, restart_flagged=restart_flags,
                                        firing_flagged=~kept)["agreement"],
                mean_cosine=restarts["mean_cosine"], firing_probability=firing)
