"""The subpackage move of issue 13 §4, mechanical: git mv + import rewriting (run once).

    python scripts/move_to_subpackages.py REPO     (REPO: a git checkout, clean)

Then: ruff check --fix, wrap the lines it reports as too long, run the whole suite, and
commit everything as one commit. Notebooks are rewritten as text (dotted module mentions).

Layout (data flows down the list):
    data/      spike data layer (data.py -> data/__init__.py), datasets, synthetic, provenance
    core/      ising, gibbs, stats, pseudolikelihood, kpairwise, limits, convergence
    fit/       bayes, mle, model_spec, walk, posterior, batch, kpairwise_fit
    analysis/  checks, diagnostics, thermo, comparison, analyses, validity
    pipeline/  study_plan -> plan, study_tasks -> tasks, study_outputs -> outputs,
               study_tables -> tables, demo
    report/    report.py -> report/__init__.py, report_study -> study, plots, templates/
    cli/       cli.py -> cli/__init__.py (+ __main__), commands/ -> cli/commands/
    errors.py, _io.py, _deprecation.py, models/ stay at the top. A module missing from
    MOVES stays where it is (add new modules to the table before running it).
Relative imports inside the package become absolute ones (resolved against the old layout);
dotted mentions ``bayes_ising.<old>`` in code, docs and notebooks follow the new paths;
``bi.<old name>`` keeps working through ``bayes_ising.__init__`` (a name -> module table).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

MOVES = {
    "data": "data", "datasets": "data.datasets", "synthetic": "data.synthetic",
    "provenance": "data.provenance",
    "ising": "core.ising", "gibbs": "core.gibbs", "stats": "core.stats",
    "pseudolikelihood": "core.pseudolikelihood", "kpairwise": "core.kpairwise",
    "limits": "core.limits", "convergence": "core.convergence",
    "bayes": "fit.bayes", "mle": "fit.mle", "model_spec": "fit.model_spec", "walk": "fit.walk",
    "posterior": "fit.posterior", "batch": "fit.batch", "kpairwise_fit": "fit.kpairwise_fit",
    "checks": "analysis.checks", "diagnostics": "analysis.diagnostics",
    "thermo": "analysis.thermo", "comparison": "analysis.comparison",
    "analyses": "analysis.analyses", "validity": "analysis.validity",
    "study_plan": "pipeline.plan", "study_tasks": "pipeline.tasks",
    "study_outputs": "pipeline.outputs", "study_tables": "pipeline.tables",
    "demo": "pipeline.demo",
    "report": "report", "report_study": "report.study", "plots": "report.plots",
    "cli": "cli", "errors": "errors", "_io": "_io", "_deprecation": "_deprecation",
}
PACKAGES = ["data", "core", "fit", "analysis", "pipeline", "report", "cli"]
PACKAGE_DOCS = {
    "core": "The model's core: energy, enumeration, sampling, statistics, the size limits.",
    "fit": "Fitting: posteriors (NumPyro), maximum likelihood, model specs, the walk, batches.",
    "analysis": "What a fit is checked and used for: diagnostics, predictive checks, "
                "validity, thermodynamics, the MLE comparison, the E/I and state analyses.",
    "pipeline": "The study: its plan, tasks, outputs and tables, and the demo.",
}


def old_name(path, pkg_root):
    """Old dotted module name (relative to bayes_ising) of a file in the OLD tree."""
    rel = path.relative_to(pkg_root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def new_module(old):
    """Old dotted name (below bayes_ising) -> new dotted name (below bayes_ising)."""
    if old in MOVES:
        return MOVES[old]
    head, _, rest = old.partition(".")
    if head == "commands":
        return "cli.commands" + ("." + rest if rest else "")
    if head in MOVES:
        return MOVES[head] + ("." + rest if rest else "")
    return old


def is_old_module(dotted, pkg_root):
    p = pkg_root.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def rewrite_relative(source, module_old, is_package, pkg_root):
    """Replace every relative ImportFrom by absolute ones in the new layout."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = module_old.split(".") if module_old else []
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join(base + ([node.module] if node.module else []))
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
        statements = []
        if node.module is None or (target == "" and node.module is None):
            groups = {}
            for alias in node.names:
                dotted = ".".join(filter(None, [target, alias.name]))
                if is_old_module(dotted, pkg_root):
                    new = new_module(dotted)
                    parent, _, leaf = ("bayes_ising." + new).rpartition(".")
                    text = leaf if alias.asname is None and leaf == alias.name else (
                        f"{leaf} as {alias.asname or alias.name}")
                else:
                    parent = "bayes_ising" + ("." + new_module(target) if target else "")
                    text = alias.name + (f" as {alias.asname}" if alias.asname else "")
                groups.setdefault(parent, []).append(text)
            for parent, names in groups.items():
                statements.append(f"from {parent} import {', '.join(names)}")
        else:
            new = new_module(target)
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "")
                              for a in node.names)
            statements.append(f"from bayes_ising{'.' + new if new else ''} import {names}")
        text = "".join(f"{indent}{s}\n" for s in statements)
        edits.append((node.lineno, node.end_lineno, text))
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1:end] = [text]
    return "".join(lines)


def dotted_mentions(text):
    """``bayes_ising.<old>`` -> ``bayes_ising.<new>`` (modules that moved)."""
    moved = sorted((k for k, v in MOVES.items() if k != v), key=len, reverse=True)
    pattern = re.compile(r"\bbayes_ising\.(" + "|".join(moved + ["commands"]) + r")\b")

    def repl(m):
        return "bayes_ising." + new_module(m.group(1))
    text = pattern.sub(repl, text)
    # file paths in prose: bayes_ising/thermo.py -> bayes_ising/analysis/thermo.py
    path_pattern = re.compile(r"\bbayes_ising/(" + "|".join(moved) + r")\.py\b")
    return path_pattern.sub(lambda m: "bayes_ising/" + new_module(m.group(1)).replace(
        ".", "/") + (".py" if new_module(m.group(1)) not in PACKAGES else "/__init__.py"),
        text).replace("bayes_ising/commands/", "bayes_ising/cli/commands/")


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True)


def main(repo):
    repo = Path(repo).resolve()
    pkg = repo / "bayes_ising"
    # 1. rewrite imports in the OLD tree (names resolve against it), remember new paths
    plans = []
    for path in sorted(pkg.rglob("*.py")):
        module = old_name(path, pkg)
        source = path.read_text()
        new_source = rewrite_relative(source, module, path.name == "__init__.py", pkg)
        plans.append((path, module, dotted_mentions(new_source)))
    for path, _, text in plans:
        path.write_text(text)
    # 2. move
    for name in PACKAGES:
        (pkg / name).mkdir(exist_ok=True)
    for old, new in MOVES.items():
        src = pkg / f"{old}.py"
        if not src.exists() or old == new and old not in PACKAGES:
            continue
        dest = pkg.joinpath(*new.split("."))
        dest = dest / "__init__.py" if new in PACKAGES else dest.with_suffix(".py")
        dest.parent.mkdir(parents=True, exist_ok=True)
        git(repo, "mv", str(src), str(dest))
    git(repo, "mv", str(pkg / "commands"), str(pkg / "cli" / "commands"))
    git(repo, "mv", str(pkg / "templates"), str(pkg / "report" / "templates"))
    for name, doc in PACKAGE_DOCS.items():
        init = pkg / name / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n')
            git(repo, "add", str(init))
    main_py = pkg / "cli" / "__main__.py"
    main_py.write_text('"""``python -m bayes_ising.cli``."""\n\nimport sys\n\n'
                       'from bayes_ising.cli import main\n\nsys.exit(main())\n')
    git(repo, "add", str(main_py))
    # 3. the top-level table: bi.<old name> keeps working
    init = pkg / "__init__.py"
    text = init.read_text()
    match = re.search(r"_SUBMODULES = \((.*?)\)\n", text, re.S)
    names = re.findall(r'"([a-z_]+)"', match.group(1))
    table = "".join(f'    "{n}": "{new_module(n)}",\n' for n in names)
    text = text.replace(match.group(0), "_SUBMODULES = {\n" + table + "}\n")
    text = re.sub(r'_NAMES = \{(.*?)\n\}', lambda m: "_NAMES = {" + re.sub(
        r': "([a-z_]+)"', lambda n: f': "{new_module(n.group(1))}"', m.group(1)) + "\n}",
        text, flags=re.S)
    text = text.replace('return importlib.import_module(f".{name}", __name__)',
                        'return importlib.import_module(f".{_SUBMODULES[name]}", __name__)')
    init.write_text(text)
    # 4. outside the package: tests, benchmarks, scripts, docs, notebooks, README
    for path in [*repo.glob("tests/*.py"), *repo.glob("benchmarks/*.py"),
                 *repo.glob("scripts/*.py"), *repo.glob("docs/*.md"), repo / "README.md",
                 repo / "pyproject.toml", *repo.glob("notebooks/*.ipynb")]:
        if path.is_file():
            text = path.read_text()
            new = dotted_mentions(text)
            if path.suffix == ".py":
                new = re.sub(r"^from bayes_ising\.(\w+) import", lambda m: (
                    f"from bayes_ising.{new_module(m.group(1))} import"), new, flags=re.M)
            if new != text:
                path.write_text(new)
    spec = pkg / "fit" / "model_spec.py"
    spec.write_text(spec.read_text().replace(
        'MODELS_DIR = Path(__file__).resolve().parent / "models"',
        'MODELS_DIR = Path(__file__).resolve().parents[1] / "models"'))
    project = repo / "pyproject.toml"
    project.write_text(project.read_text().replace('"templates/', '"report/templates/'))
    print("moved; now: ruff check --fix, the long lines, run the tests")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
