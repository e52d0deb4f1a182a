#!/usr/bin/env bash
# Create the virtual environment with a Python >= 3.12 and install bayes_ising with its extras.
# Probes interpreters on PATH first, then pyenv's installed versions; downloads nothing but
# packages from the package registry.
set -euo pipefail
venv=${1:-.venv}
extras=${2-dev,nwb,dask,notebooks}  # the package's extras to install (the demo: dask only)

works() {  # a candidate must run and be >= 3.12
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local c
    for c in "${PYTHON:-}" python3.13 python3.12 python3 python; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && works "$c"; then command -v "$c"; return 0; fi
    done
    local root
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for c in "$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3; do
        if [ -x "$c" ] && works "$c"; then echo "$c"; return 0; fi
    done
    return 1
}

if [ ! -x "$venv/bin/python" ] || ! works "$venv/bin/python"; then
    if ! py=$(find_python); then
        echo "error: bayes_ising needs Python >= 3.12 (ArviZ 1.x); none found on PATH or under pyenv." >&2
        echo "       Install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
        exit 1
    fi
    echo "Creating $venv with $py ($("$py" --version))"
    rm -rf "$venv"
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[$extras]"
echo "Installed bayes_ising [$extras] into $venv"
