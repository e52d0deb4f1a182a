#!/usr/bin/env bash
# GPU readiness check for bayes_ising (at most about 9 minutes on one GPU). Prepared, not yet run.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]          # from the repository root
#
# 1. Python with JAX's CUDA build: if `python3` already sees a GPU (an image with jax[cuda]),
#    a venv with --system-site-packages on top of it (nothing downloaded; bayes_ising from this
#    checkout through PYTHONPATH); otherwise a fresh venv with `pip install -e .[gpu]`
#    (jax[cuda12]; needs the network).
# 2. Gibbs sampler (gibbs.sample_moments, public API) for N = 100, 300, 500: spin updates/s on
#    the GPU and on this machine's CPU (same run, same workload), and a z-test that the GPU and
#    CPU magnetisations agree within their Monte Carlo standard errors.
# 3. Pseudolikelihood MLE (mle.fit_pseudo, float64, l2 = 1e-4) for N = 100, 300 on 20 000
#    bins drawn from a known model: wall time on GPU and CPU (the second fit, compiled; the
#    first is reported too), max |dh|, |dJ| between them (must agree to the optimiser
#    tolerance), and the error against the planted parameters.
# 4. benchmarks/bench_study.py at the study's scale, deep state (see the end of this file).
# Results: OUTDIR/gpu_check.json and OUTDIR/study_gpu.json (default benchmarks/output) and
# tables on stdout.
# Every stage checks the time left (BUDGET_S, default 270 s) and skips what would not fit.
# GPU_CHECK_DRY_RUN=1 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh: the same script on
# the CPU alone with tiny sizes (no venv, no GPU) to check the script itself before a GPU run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/output}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
VENV=${GPU_VENV:-/tmp/bayes-ising-gpu-venv}
export PYTHONUNBUFFERED=1 JAX_ENABLE_X64=1 BUDGET_S=${BUDGET_S:-270}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"

sees_gpu='import jax, sys; sys.exit(0 if any(d.platform == "gpu" for d in jax.devices()) else 1)'
if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then
    echo "== dry run on the CPU with $PY"
    VENV=$(dirname "$(dirname "$PY")")
    sees_gpu='pass'
elif "$PY" -c "$sees_gpu" 2>/dev/null; then
    echo "== JAX with CUDA already installed: venv on top of it (no download)"
    "$PY" -m venv --system-site-packages "$VENV"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "== installing the CUDA build: pip install -e .[gpu] (jax[cuda12])"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[gpu]"
fi
"$VENV/bin/python" -c "$sees_gpu" || { echo "JAX sees no GPU: stop"; exit 1; }

status=0
timeout $((BUDGET_S + 30)) "$VENV/bin/python" - "$OUTDIR" <<'PYTHON' || status=$?
import json, os, sys, time
import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
from bayes_ising.core import gibbs
from bayes_ising.fit import mle
from bayes_ising.data import synthetic
from bayes_ising._io import to_jsonable

start = time.perf_counter()
budget = float(os.environ["BUDGET_S"])
out = {"dry_run": bool(os.environ.get("GPU_CHECK_DRY_RUN")), "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
       "cpu_count": os.cpu_count(), "gibbs": {}, "pseudo": {}, "skipped": []}
dry = bool(os.environ.get("GPU_CHECK_DRY_RUN"))
cpu = jax.devices("cpu")[0]
gpu = cpu if dry else jax.devices("gpu")[0]
shrink = 16 if dry else 1  # dry run: 16x fewer chains, sweeps and bins, N / 4
print("JAX", jax.__version__, "default backend:", jax.default_backend(), "devices:", out["devices"])

def left():
    return budget - (time.perf_counter() - start)

def model(n, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.normal(-1.0, 0.3, n)
    upper = np.triu(rng.normal(0.0, 0.5 / np.sqrt(n), (n, n)), 1)
    return h, upper + upper.T

def gibbs_run(device, h, J, chains, sweeps):
    with jax.default_device(device):
        kwargs = dict(num_chains=chains, num_sweeps=sweeps, burn_in=20)
        gibbs.sample_moments(jax.random.key(0), h, J, **kwargs)  # compile
        t = time.perf_counter()
        m, Q, info = gibbs.sample_moments(jax.random.key(1), h, J, **kwargs)
        wall = time.perf_counter() - t
    return np.asarray(m), np.asarray(info.m_mcse), len(h) * chains * (sweeps + 20) / wall, wall

print(f"\n{'Gibbs':8} {'N':>4} {'chains':>7} {'GPU Mupd/s':>11} {'CPU Mupd/s':>11} "
      f"{'GPU/CPU':>8} {'max |z| m':>10}")
for n, chains, sweeps_gpu, sweeps_cpu in ((100, 8192, 400, 40), (300, 8192, 200, 10),
                                          (500, 8192, 100, 5)):
    n, chains = (n // 4, chains // shrink) if dry else (n, chains)
    sweeps_gpu, sweeps_cpu = max(sweeps_gpu // shrink, 4), max(sweeps_cpu // shrink, 4)
    if left() < 60:
        out["skipped"].append(f"gibbs N={n}")
        continue
    h, J = model(n)
    m_g, se_g, rate_g, wall_g = gibbs_run(gpu, h, J, chains, sweeps_gpu)
    m_c, se_c, rate_c, wall_c = gibbs_run(cpu, h, J, chains, sweeps_cpu)
    z = np.abs(m_g - m_c) / np.sqrt(se_g**2 + se_c**2)
    out["gibbs"][n] = {"chains": chains, "gpu_updates_per_s": rate_g,
                       "cpu_updates_per_s": rate_c, "gpu_over_cpu": rate_g / rate_c,
                       "gpu_wall_s": wall_g, "cpu_wall_s": wall_c, "max_abs_z_m": float(z.max()),
                       "agree": bool(z.max() < 5.0)}
    print(f"{'':8} {n:>4} {chains:>7} {rate_g / 1e6:>11.1f} {rate_c / 1e6:>11.1f} "
          f"{rate_g / rate_c:>8.1f} {z.max():>10.2f}")

print(f"\n{'pseudo':8} {'N':>4} {'bins':>7} {'GPU s':>8} {'CPU s':>8} {'CPU/GPU':>8} "
      f"{'max|dJ|':>9} {'J err':>7}")
num_bins = 20_000 // shrink
for n in (100, 300):
    n = n // 4 if dry else n
    if left() < 120:
        out["skipped"].append(f"pseudo N={n}")
        continue
    h, J = model(n, seed=1)
    with jax.default_device(gpu):
        spins = synthetic.sample_ising(jax.random.key(2), h, J, num_bins, method="gibbs")
    fits = {}
    for name, device in (("gpu", gpu), ("cpu", cpu)):
        with jax.default_device(device):
            for attempt in ("first", "second"):  # the first includes compilation
                t = time.perf_counter()
                # l2 keeps pairs that never fire together finite (the plain MLE has no optimum)
                fits[name] = mle.fit_pseudo(spins, l2=1e-4, rng_key=jax.random.key(3))
                fits[f"{name}_{attempt}_s"] = time.perf_counter() - t
        fits[name + "_s"] = fits[f"{name}_second_s"]
    dh = float(np.abs(fits["gpu"].h - fits["cpu"].h).max())
    dJ = float(np.abs(fits["gpu"].J - fits["cpu"].J).max())
    err = float(np.sqrt(np.mean((fits["gpu"].J - J)[np.triu_indices(n, 1)] ** 2)))
    out["pseudo"][n] = {"bins": num_bins, "gpu_s": fits["gpu_s"], "cpu_s": fits["cpu_s"],
                        "gpu_first_s": fits["gpu_first_s"], "cpu_first_s": fits["cpu_first_s"],
                        "cpu_over_gpu": fits["cpu_s"] / fits["gpu_s"], "max_abs_dh": dh,
                        "max_abs_dJ": dJ, "rmse_J_vs_truth": err,
                        "converged": [fits["gpu"].converged, fits["cpu"].converged],
                        "agree": bool(max(dh, dJ) < 1e-3)}
    print(f"{'':8} {n:>4} {num_bins:>7} {fits['gpu_s']:>8.1f} {fits['cpu_s']:>8.1f} "
          f"{fits['cpu_s'] / fits['gpu_s']:>8.1f} {dJ:>9.1e} {err:>7.3f}")

out["wall_s"] = time.perf_counter() - start
ok = all(v["agree"] for part in ("gibbs", "pseudo") for v in out[part].values())
out["all_agree"] = ok
path = os.path.join(sys.argv[1], "gpu_check.json")
with open(path, "w") as f:
    json.dump(to_jsonable(out), f, indent=2)
print(f"\nskipped (time budget): {out['skipped'] or 'none'}; GPU and CPU agree: {ok}; "
      f"written {path} ({out['wall_s']:.0f} s)")
sys.exit(0 if ok else 1)
PYTHON

# 4. The study's scale (benchmarks/bench_study.py, issue 15): 74 E + 18 I, 50,000 bins per
#    state; the gradient cost against the two-GEMM floor and the deep state's E+I, E and I
#    posteriors (stop rule: R-hat <= 1.01, bulk and tail ESS >= 400) on the GPU, within
#    STUDY_BUDGET_S (default 240 s). Dry run: --quick on the CPU.
STUDY_BUDGET_S=${STUDY_BUDGET_S:-240}
study_args=(--stages data,gradient,fits --states deep --output "$OUTDIR/study_gpu.json")
[ -n "${GPU_CHECK_DRY_RUN:-}" ] && study_args+=(--quick)
echo "== bench_study.py ${study_args[*]} (at most ${STUDY_BUDGET_S} s)"
timeout "$STUDY_BUDGET_S" "$VENV/bin/python" benchmarks/bench_study.py "${study_args[@]}" \
    || { rc=$?; echo "bench_study.py stopped (exit $rc; 124 = out of time)"
         if [ "$status" -eq 0 ]; then status=$rc; fi; }
exit "$status"
