"""The layout shows the flow: every import inside bayes_ising (lazy ones included) points to
an earlier subpackage or the same one, and every name it imports exists."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayes_ising"
#: each subpackage may import only those before it (and the top-level helper modules)
ORDER = ("core", "data", "fit", "analysis", "report", "pipeline", "cli")
TOP_LEVEL = ("errors", "_io", "_deprecation")


def _imports(path):
    """(line, module, names) of every bayes_ising import in a file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "bayes_ising"):
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bayes_ising"):
                    yield node.lineno, alias.name, []


def _layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_module_imports_a_later_subpackage():
    later = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for line, module, names in _imports(path):
            targets = [_layer(module)] if _layer(module) else names  # from bayes_ising import x
            for target in targets:
                if own in TOP_LEVEL and target in ORDER:
                    later.append(f"{path.name}:{line} imports {module} {target}")
                if own in ORDER and target in ORDER and ORDER.index(target) > ORDER.index(own):
                    later.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not later, "imports against the flow:\n" + "\n".join(later)


@pytest.mark.parametrize("folder", ["bayes_ising", "tests", "benchmarks", "notebooks"])
def test_every_imported_name_exists(folder):
    missing = []
    for path in sorted((PACKAGE.parent / folder).rglob("*.py")):
        for line, module, names in _imports(path):
            try:
                imported = importlib.import_module(module)
            except ImportError as err:
                missing.append(f"{path.name}:{line} {module}: {err}")
                continue
            for name in names:
                if not hasattr(imported, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        missing.append(f"{path.name}:{line} {module} has no {name}")
    assert not missing, "\n".join(missing)
