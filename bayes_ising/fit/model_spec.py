"""Declarative model specifications (TOML): priors, likelihood, sampler.

The package ships its specs in ``bayes_ising/models/`` (:func:`packaged_models`: default,
hierarchical_blocks, horseshoe, pseudo_large); :func:`load_model_spec` takes such a name
(``"pseudo_large"`` or ``"pseudo_large.toml"``) or the path of any TOML file.

A spec file looks like::

    name = "default"
    description = "Normal priors on h and J"
    likelihood = "exact"          # "exact" (N <= 22) or "pseudo"
    adjust = "mode+curvature"     # pseudo-posterior calibration, see bayes.fit_posterior
    family = "pairwise"           # "pairwise" | "k_pairwise" (adds V(K), models/k_pairwise)

    [prior.h]
    mean = 0.0                    # h_i ~ Normal(mean, scale)
    scale = 2.0

    [prior.J]
    family = "normal"             # "normal" | "hierarchical" | "horseshoe"
    scale = 1.0                   # normal: J_ij ~ Normal(0, scale);
                                  # hierarchical: sd of each cell-type block ~ HalfNormal(scale)
    # horseshoe only: global_scale, slab_scale, slab_df (Piironen & Vehtari 2017)

    [prior.V]                     # family = "k_pairwise" only: V(0) = 0,
    scale = 1.0                   # V(K) - V(K-1) ~ Normal(0, scale) (a random walk over K)

    [sampler]
    num_chains = 4                # (the older chains / draws / warmup are still accepted)
    num_draws = 1000
    num_warmup = 200
    target_accept = 0.8
    max_tree_depth = 10
    mass_matrix = "hessian"       # "hessian" (fixed) | "hessian+adapt" | "adapt"
    float32 = false               # likelihood in float32 inside NUTS
    algorithm = "nuts"            # "nuts" | "hmc" | "split_hmc" (the last two: static, whitened)
    trajectory_length = 1.5708    # hmc, split_hmc: pi/2, a quarter period of the unit Gaussian
    max_draws = 0                 # > 0: the stop rule (draws = chunk size, see below)

Every key is optional (defaults below); unknown keys and impossible values raise
:class:`~bayes_ising.errors.ModelSpecError` naming the key and the file.
"""

import dataclasses
import json
import math
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path

from bayes_ising.core.limits import MAX_EXACT_NEURONS
from bayes_ising.errors import ModelSpecError

__all__ = [
    "ModelSpec",
    "load_model_spec",
    "default_model_spec",
    "model_spec_from_dict",
    "packaged_models",
    "model_spec_path",
    "LIKELIHOODS",
    "ADJUSTMENTS",
    "J_FAMILIES",
    "MASS_MATRICES",
    "ALGORITHMS",
    "MODEL_FAMILIES",
    "DEFAULT_ADJUST",
]

LIKELIHOODS = ("exact", "pseudo")
ADJUSTMENTS = ("none", "curvature", "mode", "mode+curvature")
J_FAMILIES = ("normal", "hierarchical", "horseshoe")
MASS_MATRICES = ("hessian", "hessian+adapt", "adapt")
ALGORITHMS = ("nuts", "hmc", "split_hmc")
#: energy families: pairwise Ising, or K-pairwise (Tkačik et al. 2014; bayes_ising.core.kpairwise)
MODEL_FAMILIES = ("pairwise", "k_pairwise")
#: the pseudo-posterior adjustment the calibration study supports (docs/calibration.md)
DEFAULT_ADJUST = "mode+curvature"


@dataclass(frozen=True)
class ModelSpec:
    """Prior, likelihood and sampler settings of one Bayesian Ising fit (hashable, immutable).

    Attributes
    ----------
    h_mean, h_scale : prior h_i ~ Normal(h_mean, h_scale).
    j_family : "normal" (J_ij ~ Normal(0, j_scale)), "hierarchical" (J_ij ~ Normal(0, σ_b) with
        σ_b ~ HalfNormal(j_scale) learned per cell-type block b ∈ {E-E, E-I, I-I, ...}) or
        "horseshoe" (regularised horseshoe with global scale τ ~ HalfCauchy(global_scale),
        local λ_ij ~ HalfCauchy(1), slab c² ~ InvGamma(slab_df/2, slab_df·slab_scale²/2)).
    num_chains, num_draws, num_warmup, target_accept, max_tree_depth : NUTS settings.
    mass_matrix : "hessian" — fixed dense mass = posterior Hessian at the MAP (default);
        "hessian+adapt" — the same as a start, then adapted; "adapt" — plain NUTS.
    float32 : evaluate the likelihood in float32 inside NUTS (the MAP, Hessian and every
        exact quantity stay float64).
    algorithm : "nuts" (default), "hmc" (static HMC with ``trajectory_length`` in the
        Hessian-whitened space, where the posterior is close to N(0, I) and π/2 (a quarter
        period) decorrelates both z and z²; needs mass_matrix "hessian" or "hessian+adapt")
        or "split_hmc" (the same trajectory by split HMC, :mod:`bayes_ising.fit.split_hmc`,
        which integrates the whitened Gaussian exactly and only the rest by kicks, so its
        steps are far longer; needs mass_matrix "hessian").
    max_draws : 0 (default): exactly ``num_draws`` per chain. Otherwise the stop rule: sample
        in chunks of ``num_draws`` until every parameter has R-hat ≤ 1.01 and bulk and tail
        ESS ≥ 400 with no divergences, or ``max_draws`` per chain (must be ≥ ``num_draws``).
        It applies to fits with the spec's ``num_draws``; a fit asking for another number of
        draws gets exactly that many (so smoke runs stay short).
    family : "pairwise" (default) or "k_pairwise": E(s) gains −V(K(s)), K the number of
        active neurons, with V(0) = 0 and the random-walk prior V(K) − V(K−1) ~
        Normal(0, v_scale) (:mod:`bayes_ising.core.kpairwise`; exact likelihood, N ≤ 22, normal
        J prior, NUTS with an adapted dense mass matrix).
    source : where the spec came from (a path or "<default>").
    """

    name: str = "default"
    description: str = "Normal priors on fields and couplings"
    likelihood: str = "exact"
    adjust: str = DEFAULT_ADJUST
    h_mean: float = 0.0
    h_scale: float = 2.0
    j_family: str = "normal"
    j_scale: float = 1.0
    global_scale: float = 0.1
    slab_scale: float = 1.0
    slab_df: float = 4.0
    num_chains: int = 4
    num_draws: int = 1000
    num_warmup: int = 200
    target_accept: float = 0.8
    max_tree_depth: int = 10
    mass_matrix: str = "hessian"
    float32: bool = False
    algorithm: str = "nuts"
    trajectory_length: float = math.pi / 2
    max_draws: int = 0
    family: str = "pairwise"
    v_scale: float = 1.0
    source: str = "<default>"

    def replace(self, **changes):
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **changes)
        _validate(_spec_to_toml_dict(new), new.source)
        return new

    def to_dict(self):
        """The nested TOML layout (what :func:`model_spec_from_dict` reads)."""
        return _spec_to_toml_dict(self)

    def to_json(self):
        """JSON text of :meth:`to_dict` plus the source (stored in posterior attributes)."""
        return json.dumps({**self.to_dict(), "source": self.source}, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        source = data.pop("source", "<json>")
        return model_spec_from_dict(data, source=source)


# key path -> (ModelSpec field, kind, allowed values or None)
_SCHEMA = {
    ("name",): ("name", "str", None),
    ("description",): ("description", "str", None),
    ("likelihood",): ("likelihood", "choice", LIKELIHOODS),
    ("adjust",): ("adjust", "choice", ADJUSTMENTS),
    ("family",): ("family", "choice", MODEL_FAMILIES),
    ("prior", "V", "scale"): ("v_scale", "positive", None),
    ("prior", "h", "family"): (None, "choice", ("normal",)),
    ("prior", "h", "mean"): ("h_mean", "real", None),
    ("prior", "h", "scale"): ("h_scale", "positive", None),
    ("prior", "J", "family"): ("j_family", "choice", J_FAMILIES),
    ("prior", "J", "scale"): ("j_scale", "positive", None),
    ("prior", "J", "global_scale"): ("global_scale", "positive", None),
    ("prior", "J", "slab_scale"): ("slab_scale", "positive", None),
    ("prior", "J", "slab_df"): ("slab_df", "positive", None),
    ("sampler", "num_chains"): ("num_chains", "count", None),
    ("sampler", "num_draws"): ("num_draws", "count", None),
    ("sampler", "num_warmup"): ("num_warmup", "count0", None),
    # the old spellings, accepted with a deprecation warning (see _DEPRECATED_KEYS)
    ("sampler", "chains"): ("num_chains", "count", None),
    ("sampler", "draws"): ("num_draws", "count", None),
    ("sampler", "warmup"): ("num_warmup", "count0", None),
    ("sampler", "target_accept"): ("target_accept", "probability", None),
    ("sampler", "max_tree_depth"): ("max_tree_depth", "depth", None),
    ("sampler", "mass_matrix"): ("mass_matrix", "choice", MASS_MATRICES),
    ("sampler", "float32"): ("float32", "bool", None),
    ("sampler", "algorithm"): ("algorithm", "choice", ALGORITHMS),
    ("sampler", "trajectory_length"): ("trajectory_length", "positive", None),
    ("sampler", "max_draws"): ("max_draws", "count0", None),
}
_TABLES = {(), ("prior",), ("prior", "h"), ("prior", "J"), ("prior", "V"), ("sampler",)}
#: old key -> the key to write instead (one vocabulary: num_chains, num_draws, num_warmup)
_DEPRECATED_KEYS = {("sampler", "chains"): "num_chains", ("sampler", "draws"): "num_draws",
                    ("sampler", "warmup"): "num_warmup"}
_HORSESHOE_ONLY = ("global_scale", "slab_scale", "slab_df")


def _dotted(path):
    return ".".join(path)


def _check_value(path, kind, allowed, value, source):
    key = _dotted(path)
    where = f"{source}: {key}"
    if kind == "str":
        if not isinstance(value, str):
            raise ModelSpecError(f"{where} must be a string, got {value!r}")
    elif kind == "choice":
        if value not in allowed:
            raise ModelSpecError(
                f"{where} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
            )
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ModelSpecError(f"{where} must be true or false, got {value!r}")
    elif kind in ("count", "count0", "depth"):
        low = {"count": 1, "count0": 0, "depth": 1}[kind]
        high = 15 if kind == "depth" else None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high
        ):
            bound = f"an integer >= {low}" + (f" and <= {high}" if high else "")
            raise ModelSpecError(f"{where} must be {bound}, got {value!r}")
    else:  # real-valued kinds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise ModelSpecError(f"{where} must be a finite number, got {value!r}")
        if kind == "positive" and not value > 0:
            raise ModelSpecError(f"{where} must be a positive number, got {value!r}")
        if kind == "probability" and not 0 < value < 1:
            raise ModelSpecError(f"{where} must lie strictly between 0 and 1, got {value!r}")


def _validate(data, source):
    """Check a nested dict against the schema; return {field: value}."""
    fields = {}

    def walk(table, path):
        if not isinstance(table, dict):
            raise ModelSpecError(f"{source}: {_dotted(path)} must be a table, got {table!r}")
        for key, value in table.items():
            sub = path + (key,)
            if sub in _TABLES:
                walk(value, sub)
            elif sub in _SCHEMA:
                field, kind, allowed = _SCHEMA[sub]
                if sub in _DEPRECATED_KEYS:
                    new = _DEPRECATED_KEYS[sub]
                    if new in table:
                        raise ModelSpecError(f"{source}: give {_dotted(path + (new,))} or its "
                                             f"deprecated spelling {_dotted(sub)}, not both")
                    warnings.warn(f"{source}: {_dotted(sub)} is deprecated; write "
                                  f"{_dotted(path + (new,))}", FutureWarning, stacklevel=4)
                _check_value(sub, kind, allowed, value, source)
                if field is not None:
                    fields[field] = float(value) if kind in ("real", "positive",
                                                            "probability") else value
            else:
                siblings = sorted(
                    {p[len(path)] for p in list(_SCHEMA) + list(_TABLES)
                     if len(p) > len(path) and p[: len(path)] == path
                     and p not in _DEPRECATED_KEYS}
                )
                raise ModelSpecError(
                    f"{source}: unknown key '{_dotted(sub)}' (allowed here: {', '.join(siblings)})"
                )

    walk(data, ())
    sampler = data.get("sampler", {})
    max_draws = fields.get("max_draws", 0)
    if max_draws and max_draws < fields.get("num_draws", ModelSpec.num_draws):
        raise ModelSpecError(
            f"{source}: sampler.max_draws ({max_draws}) must be 0 (no stop rule) or at least "
            f"sampler.draws ({fields.get('num_draws', ModelSpec.num_draws)})"
        )
    if fields.get("algorithm", "nuts") == "split_hmc":
        if fields.get("mass_matrix", "hessian") != "hessian":
            raise ModelSpecError(
                f"{source}: sampler.algorithm = \"split_hmc\" integrates the Hessian-whitened "
                "Gaussian exactly, so it needs mass_matrix = \"hessian\""
            )
    elif fields.get("algorithm", "nuts") == "hmc":
        if fields.get("mass_matrix", "hessian") == "adapt":
            raise ModelSpecError(
                f"{source}: sampler.algorithm = \"hmc\" needs the whitening metric "
                "(mass_matrix = \"hessian\" or \"hessian+adapt\"), not \"adapt\""
            )
    elif "trajectory_length" in sampler:
        raise ModelSpecError(
            f"{source}: sampler.trajectory_length applies only to algorithm = \"hmc\" or "
            "\"split_hmc\""
        )
    _validate_family(data, fields, source)
    family = fields.get("j_family", "normal")
    prior_j = data.get("prior", {}).get("J", {}) if isinstance(data.get("prior", {}), dict) else {}
    if family != "horseshoe":
        for key in _HORSESHOE_ONLY:
            if key in prior_j:
                raise ModelSpecError(
                    f"{source}: prior.J.{key} applies only to family = \"horseshoe\", "
                    f"not {family!r}"
                )
    elif "scale" in prior_j:
        raise ModelSpecError(
            f"{source}: prior.J.scale does not apply to family = \"horseshoe\" "
            "(use global_scale, slab_scale, slab_df)"
        )
    return fields


def _validate_family(data, fields, source):
    """K-pairwise: normal J prior and plain NUTS (exact likelihood, or the pseudolikelihood
    with unadjusted intervals); prior.V only with it."""
    prior = data.get("prior", {}) if isinstance(data.get("prior", {}), dict) else {}
    if fields.get("family", "pairwise") == "pairwise":
        if "V" in prior:
            raise ModelSpecError(f"{source}: prior.V applies only to family = \"k_pairwise\"")
        return
    need = {"j_family": ("normal", "prior.J.family"),
            "algorithm": ("nuts", "sampler.algorithm"), "float32": (False, "sampler.float32"),
            "max_draws": (0, "sampler.max_draws")}
    for field, (value, key) in need.items():
        if fields.get(field, getattr(ModelSpec, field)) != value:
            raise ModelSpecError(
                f"{source}: family = \"k_pairwise\" needs {key} = {json.dumps(value)} (its "
                "posterior is plain NUTS with normal priors: exact likelihood for N <= "
                f"{MAX_EXACT_NEURONS}, likelihood = \"pseudo\" for any N)")


def model_spec_from_dict(data, source="<dict>"):
    """Validate a nested dict (the TOML layout) and return a :class:`ModelSpec`.

    Raises
    ------
    ModelSpecError
        Unknown key or impossible value; the message names the key and ``source``.
    """
    fields = _validate(data, str(source))
    return ModelSpec(**fields, source=str(source))


#: the folder of the model specs shipped with the package
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def packaged_models():
    """Names of the model specs shipped with the package (``bayes_ising/models/*.toml``)."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def model_spec_path(name_or_path):
    """The file of a model spec: ``name_or_path`` itself when it is a file, else the packaged
    spec of that name (with or without ``.toml``).

    Raises
    ------
    FileNotFoundError
        Neither a file nor a packaged name (the message lists the packaged names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path("."):
        stem = path.name[:-5] if path.name.endswith(".toml") else path.name
        packaged = MODELS_DIR / f"{stem}.toml"
        if packaged.is_file():
            return packaged
    raise FileNotFoundError(
        2, f"no model spec file {str(name_or_path)!r} and no packaged model of that name "
           f"(packaged: {', '.join(packaged_models())})", str(name_or_path))


def load_model_spec(path):
    """Read and validate a model spec: a packaged name (``"pseudo_large"``, see
    :func:`packaged_models`) or a TOML file (see the module docstring for the layout).

    Raises
    ------
    ModelSpecError
        Unreadable TOML, unknown keys or impossible values (the message names key and file).
    FileNotFoundError
        No such file.
    """
    given = Path(path)
    path = model_spec_path(path)
    data = read_toml(path)
    return model_spec_from_dict(data, source=str(given if given.is_file() else path))


def default_model_spec():
    """The default spec: h ~ Normal(0, 2), J ~ Normal(0, 1), exact likelihood, 4×1000 draws.

    Identical to the packaged ``default`` spec (``bayes_ising/models/default.toml``).
    """
    return ModelSpec()


def _spec_to_toml_dict(spec):
    prior_j = {"family": spec.j_family}
    if spec.j_family == "horseshoe":
        prior_j.update(global_scale=spec.global_scale, slab_scale=spec.slab_scale,
                       slab_df=spec.slab_df)
    else:
        prior_j["scale"] = spec.j_scale
    k_pairwise = spec.family == "k_pairwise"  # pairwise specs keep their old layout (and keys)
    return {
        "name": spec.name,
        "description": spec.description,
        "likelihood": spec.likelihood,
        "adjust": spec.adjust,
        **({"family": spec.family} if k_pairwise else {}),
        "prior": {
            "h": {"family": "normal", "mean": spec.h_mean, "scale": spec.h_scale},
            "J": prior_j,
            **({"V": {"scale": spec.v_scale}} if k_pairwise else {}),
        },
        "sampler": {
            "num_chains": spec.num_chains,
            "num_draws": spec.num_draws,
            "num_warmup": spec.num_warmup,
            "target_accept": spec.target_accept,
            "max_tree_depth": spec.max_tree_depth,
            "mass_matrix": spec.mass_matrix,
            "float32": spec.float32,
            "algorithm": spec.algorithm,
            **({"trajectory_length": spec.trajectory_length}
               if spec.algorithm in ("hmc", "split_hmc") else {}),
            **({"max_draws": spec.max_draws} if spec.max_draws else {}),
        },
    }


def read_toml(path):
    """Parse a TOML file (plans, model specs); invalid TOML is a ModelSpecError naming it."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ModelSpecError(f"{path}: not valid TOML ({err})") from None
