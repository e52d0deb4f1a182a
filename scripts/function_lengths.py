"""Count lines of code per function in a package (issue 13's "no function over ~80 lines").

A function's length is the number of source lines between its ``def`` and its last
statement that hold code: blank lines, comment-only lines and the docstring are not counted;
nested functions count towards their parent and are also listed on their own.

Usage: ``python scripts/function_lengths.py [PACKAGE_DIR] [--over N] [--top K]``
(defaults: ``bayes_ising``, 80, 15). Prints ``max``, the number of functions over N and the
K longest, ``lines  file:line  qualified.name``.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path


def _code_lines(source: str) -> set[int]:
    """Line numbers that carry a token other than comments, newlines and indentation."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
            tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines


def _docstring_lines(node: ast.AST) -> set[int]:
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return set(range(body[0].lineno, body[0].end_lineno + 1))
    return set()


def function_lengths(path: Path) -> list[tuple[int, str, int, str]]:
    """``(code_lines, file, lineno, qualified name)`` for every function in ``path``."""
    source = path.read_text()
    code = _code_lines(source)
    tree = ast.parse(source)
    out: list[tuple[int, str, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = set(range(child.lineno, child.end_lineno + 1))
                docs = _docstring_lines(child)
                n = len((span & code) - docs)
                name = f"{prefix}{child.name}"
                out.append((n, str(path), child.lineno, name))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="bayes_ising")
    parser.add_argument("--over", type=int, default=80)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    rows = []
    for path in sorted(Path(args.package).rglob("*.py")):
        rows.extend(function_lengths(path))
    rows.sort(reverse=True)
    over = [r for r in rows if r[0] > args.over]
    print(f"functions: {len(rows)}  max: {rows[0][0] if rows else 0}  "
          f"over {args.over}: {len(over)}")
    for n, file, line, name in rows[: max(args.top, len(over))]:
        print(f"{n:5d}  {file}:{line}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
