"""Atomic output files: renamed into place, with the normal permissions of a new file."""

import os
import stat

import pytest

from bayes_ising._io import atomic_path, write_json
from bayes_ising.errors import ExistingOutputError


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_normal_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / f"r{umask:o}.json"
        write_json(out, {"a": 1})
        with atomic_path(tmp_path / f"n{umask:o}.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    for path in (out, tmp_path / f"n{umask:o}.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ExistingOutputError):
        write_json(out, {"a": 2})
