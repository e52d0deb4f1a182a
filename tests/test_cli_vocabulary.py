"""One vocabulary on the command line: new flag names, old ones as hidden deprecated aliases."""

import pytest

from bayes_ising.cli import build_parser


@pytest.mark.parametrize(("argv", "dest", "value", "old"), [
    (["fit", "d.npz", "--out", "p.nc", "--num-chains", "3"], "num_chains", 3, None),
    (["fit", "d.npz", "--out", "p.nc", "--chains", "2"], "num_chains", 2, "--chains"),
    (["fit", "d.npz", "--out", "p.nc", "--draws", "50"], "num_draws", 50, "--draws"),
    (["fit", "d.npz", "--out", "p.nc", "--warmup", "7"], "num_warmup", 7, "--warmup"),
    (["check", "p.nc", "d.npz", "--out", "c.json", "--posterior-draws", "9"],
     "posterior_draws", 9, None),
    (["check", "p.nc", "d.npz", "--out", "c.json", "--draws", "9"], "posterior_draws", 9,
     "--draws"),
    (["compare-mle", "p.nc", "d.npz", "--out", "c.json", "--walk-draws", "99"], "walk_draws",
     99, None),
    (["mle", "d.npz", "--out", "f.json", "--adaptive-mcmc", "20"], "walk_draws", 20,
     "--adaptive-mcmc"),
    (["diagnose", "p.nc", "--out", "g.json", "--rhat-max", "1.05"], "max_rhat", 1.05,
     "--rhat-max"),
    (["diagnose", "p.nc", "--out", "g.json", "--contraction-min", "0.3"], "min_contraction",
     0.3, "--contraction-min"),
])
def test_new_flags_and_deprecated_aliases(capsys, argv, dest, value, old):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    if old is None:
        assert err == ""
    else:
        assert err.count("\n") == 1 and f"{old} is deprecated" in err


def test_defaults_and_help_show_only_the_new_names(capsys):
    parser = build_parser()
    args = parser.parse_args(["fit", "d.npz", "--out", "p.nc"])
    assert (args.num_chains, args.num_draws, args.num_warmup) == (None, None, None)
    from bayes_ising.analysis.checks import DEFAULT_CHECK_DRAWS

    assert (parser.parse_args(["check", "p.nc", "d.npz", "--out", "c.json"]).posterior_draws
            == DEFAULT_CHECK_DRAWS)
    for verb in ("fit", "check", "compare-mle", "mle", "diagnose"):
        with pytest.raises(SystemExit):
            parser.parse_args([verb, "--help"])
        text = capsys.readouterr().out
        for old in ("--chains", "--warmup", "--adaptive-mcmc", "--rhat-max", "--ess-min"):
            assert old not in text, (verb, old)
        assert ("--draws " not in text) and ("--draws\n" not in text), verb


def test_model_spec_and_plan_keys_new_and_deprecated(tmp_path):
    from bayes_ising.errors import ModelSpecError
    from bayes_ising.fit.model_spec import load_model_spec
    from bayes_ising.pipeline import batch

    new = tmp_path / "new.toml"
    new.write_text("[sampler]\nnum_chains = 3\nnum_draws = 20\nnum_warmup = 5\n")
    spec = load_model_spec(new)
    assert (spec.num_chains, spec.num_draws, spec.num_warmup) == (3, 20, 5)
    old = tmp_path / "old.toml"
    old.write_text("[sampler]\nchains = 3\ndraws = 20\n")
    with pytest.warns(FutureWarning, match="sampler.chains is deprecated; write "
                                           "sampler.num_chains"):
        spec = load_model_spec(old)
    assert (spec.num_chains, spec.num_draws) == (3, 20)
    both = tmp_path / "both.toml"
    both.write_text("[sampler]\nchains = 3\nnum_chains = 3\n")
    with pytest.raises(ModelSpecError, match="not both"):
        load_model_spec(both)
    plan = tmp_path / "plan.toml"
    plan.write_text('[datasets]\nei = "ei_sleep"\n[defaults]\nchains = 2\n[[fits]]\n'
                    'num_draws = 30\npopulations = ["E+I"]\n')
    with pytest.warns(FutureWarning, match="defaults.chains is deprecated; write num_chains"):
        loaded = batch.load_plan(plan)
    assert loaded.fits[0]["num_chains"] == 2 and loaded.fits[0]["num_draws"] == 30


def test_the_old_population_spelling_is_announced_once_per_command_line(capsys, recwarn):
    import warnings

    from bayes_ising.cli.commands.study import settings_from_args

    args = build_parser().parse_args(["study", "d.npz", "--out", "o", "--populations", "E,I",
                                      "--compare-populations", "E,I"])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        settings = settings_from_args(args)
    assert settings.populations == settings.compare_populations == ("E+I",)
    err = capsys.readouterr().err
    assert err.count("deprecated") == 1 and "--populations and --compare-populations" in err
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
