"""Issue 18: the K-pairwise pseudo-posterior against the exact one on retina15.mat.

Usage: PYTHONPATH=. python benchmarks/kpairwise_pseudo_retina.py [num_draws (= num_warmup), 300]

Fits both posteriors (2 chains, same priors and seed) and reports, over h, J and V, the ratio of
posterior sds (pseudo / exact: < 1 means the unadjusted pseudo intervals are too narrow), the
shift of the posterior means in exact sds, the P(K) band of each (exact P(K) of 100 draws),
the pseudo fit's Gibbs model check and both run times; then the same for the pseudo draws
mapped by the curvature adjustments ("curvature", "mode+curvature";
bayes_ising.fit.kpairwise_adjust); writes
benchmarks/output/kpairwise_pseudo_retina.json.
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np

import bayes_ising as bi
from bayes_ising.analysis import families
from bayes_ising.fit import kpairwise_fit
from bayes_ising.fit.posterior import posterior_draws

OUTPUT = Path(__file__).resolve().parent / "output" / "kpairwise_pseudo_retina.json"


def _flat(tree):
    h, J, V = posterior_draws(tree, potential=True)
    i, j = np.triu_indices(h.shape[1], 1)
    return np.concatenate([h, J[:, i, j], V[:, 1:]], axis=1)


def _adjusted(tree, spins, exact, groups):
    """The curvature adjustments (kpairwise_adjust.adjust_draws, what fit_posterior(...,
    adjust=) applies) of the same pseudo draws: adjusted sd / exact sd per group, the
    adjustment's own sd ratios, the gate and its time."""
    import time

    from bayes_ising.fit import kpairwise_adjust

    num_chains = tree["posterior"].sizes["chain"]
    h, J, V = posterior_draws(tree, potential=True)
    draws = {k: v.reshape((num_chains, -1) + v.shape[1:]) for k, v in
             dict(h=h, J=J, V=V).items()}
    out = {}
    for adjust in ("curvature", "mode+curvature"):
        start = time.perf_counter()
        new, attrs = kpairwise_adjust.adjust_draws(jax.random.key(1), draws, spins,
                                                   adjust=adjust, h_mean=0.0, h_scale=2.0,
                                                   j_scale=1.0, v_scale=1.0)
        seconds = time.perf_counter() - start
        flat = kpairwise_adjust._flat(new).reshape(-1, exact.shape[1])
        ratio = flat.std(axis=0) / exact.std(axis=0)
        shift = np.abs(flat.mean(axis=0) - exact.mean(axis=0)) / exact.std(axis=0)
        out[adjust] = dict(
            seconds=seconds, intervals=attrs["intervals"],
            model_check=json.loads(attrs["model_check"])["verdict"],
            adjust_info=json.loads(attrs["adjust_info"]),
            sd_ratio_to_exact={g: dict(median=float(np.median(ratio[s])),
                                       min=float(ratio[s].min()), max=float(ratio[s].max()))
                               for g, s in groups.items()},
            mean_shift_in_exact_sd={g: dict(median=float(np.median(shift[s])),
                                            max=float(shift[s].max()))
                                    for g, s in groups.items()})
    return out


def main(num_draws=300, path="/work/shared/data/retina15.mat"):
    bi.enable_x64()
    spins = np.asarray(bi.load(path).spins)
    fits = {lik: kpairwise_fit.fit_posterior(spins, rng_key=0, num_chains=2, num_draws=num_draws,
                                         num_warmup=num_draws, likelihood=lik)
            for lik in ("exact", "pseudo")}
    exact, pseudo = _flat(fits["exact"].tree), _flat(fits["pseudo"].tree)
    sd_ratio = pseudo.std(axis=0) / exact.std(axis=0)
    shift = np.abs(pseudo.mean(axis=0) - exact.mean(axis=0)) / exact.std(axis=0)
    n = spins.shape[1]
    groups = {"h": slice(0, n), "J": slice(n, n + n * (n - 1) // 2), "V": slice(-n, None)}
    bands = {lik: families.predictive_synchrony_band(
        families.synchrony_draws(f.tree, 100), spins) for lik, f in fits.items()}
    check = kpairwise_fit.pseudo_model_check(jax.random.key(0), fits["pseudo"].tree, spins)
    adjusted = _adjusted(fits["pseudo"].tree, spins, exact, groups)
    out = dict(
        num_draws=num_draws, num_chains=2, seconds={k: f.seconds for k, f in fits.items()},
        summary={k: kpairwise_fit.format_fit_summary(f) for k, f in fits.items()},
        sd_ratio={g: dict(median=float(np.median(sd_ratio[s])), min=float(sd_ratio[s].min()),
                          max=float(sd_ratio[s].max())) for g, s in groups.items()},
        mean_shift_in_exact_sd={g: dict(median=float(np.median(shift[s])),
                                        max=float(shift[s].max())) for g, s in groups.items()},
        pk_in_band={k: int(np.sum(b["seen"] & (b["observed"] >= b["lower"])
                                  & (b["observed"] <= b["upper"]))) for k, b in bands.items()},
        pk_seen=int(bands["exact"]["seen"].sum()), model_check=check["verdict"],
        adjusted=adjusted)
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "summary"}, indent=1))
    for line in out["summary"].values():
        print(line)
    return out


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
