"""Atomic output: write to a temporary file in the target directory, then rename.

An interrupted run never leaves a half-written file under the final name, and an existing
result is never overwritten unless ``force`` is true. Results get the normal permissions of a
new file (0666 less the umask), not the 0600 of the temporary file.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from bayes_ising.errors import ExistingOutputError

__all__ = ["atomic_path", "write_json", "to_jsonable", "check_writable"]


def check_writable(path, force=False):
    """Raise :class:`ExistingOutputError` if ``path`` exists and ``force`` is false."""
    path = Path(path)
    if path.exists() and not force:
        raise ExistingOutputError(f"{path} exists; pass --force (force=True) to overwrite it")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path, force=False):
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    Example::

        with atomic_path("fit.nc", force=True) as tmp:
            tree.to_netcdf(tmp)
    """
    path = Path(path)
    check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file 0600; results get the permissions of any new file
        # (0666 less the umask), so that a lab's group can read them on a shared server
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask():
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def to_jsonable(obj):
    """Convert NumPy/JAX scalars and arrays (recursively) to plain Python for ``json``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr.tolist()]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (np.generic,)):
        return to_jsonable(obj.item())
    return obj


def write_json(path, obj, force=False):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path, force) as tmp:
        with open(tmp, "w") as f:
            json.dump(to_jsonable(obj), f, indent=2, allow_nan=False)
            f.write("\n")
